//! Ghost (virtual) batch norm (Hoffer et al. 2017; init2winit's `VirtualBatchNorm`, used by the
//! paper's LARS pipeline with virtual batches of 64): in training, each consecutive group of
//! `virtual_batch_size` examples is normalised with its own statistics.
//!
//! ```text
//! per virtual batch k:  mu_k = mean(x_k),  s2_k = mean((x_k - mu_k)^2)      (biased)
//!                       y = gamma (x - mu_k) / sqrt(s2_k + eps) + beta
//! running statistics:   mu = mean_k mu_k   (the whole batch's mean)
//!                       s2 = mean_k (s2_k + mu_k^2) - mu^2   (the whole batch's biased variance)
//!                       running = rho running + (1 - rho) stat
//! evaluation:           y = gamma (x - running_mean) / sqrt(running_var + eps) + beta
//! ```
//!
//! Running-statistics convention: init2winit's, which folds the mean of the virtual batches'
//! first and second moments into one running average, i.e. the whole batch's mean and *biased*
//! variance. torch's `BatchNorm2d` keeps the *unbiased* variance (`n / (n - 1)` larger) and has no
//! virtual batches; we follow init2winit because it is the paper's code base and because the
//! result does not depend on how the batch is split. With `virtual_batch_size: None` the whole
//! batch is one virtual batch (ordinary batch norm with that convention).

use burn::module::{Module, Param, RunningState};
use burn::tensor::{Device, Tensor};

/// Batch norm over `[batch, channels, height, width]` with optional virtual batches.
#[derive(Module, Debug)]
pub struct GhostBatchNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    pub running_mean: RunningState<Tensor<1>>,
    pub running_var: RunningState<Tensor<1>>,
    /// `rho` in `running = rho running + (1 - rho) batch`.
    pub rho: f64,
    pub epsilon: f64,
    /// Examples per virtual batch; `0` means the whole batch.
    pub virtual_batch_size: usize,
}

impl GhostBatchNorm {
    /// gamma = `gamma`, beta = 0, running mean 0 and variance 1.
    pub fn new(
        channels: usize,
        gamma: f64,
        rho: f64,
        epsilon: f64,
        virtual_batch_size: Option<usize>,
        device: &Device,
    ) -> Self {
        Self {
            gamma: Param::from_tensor(Tensor::full([channels], gamma, device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            rho,
            epsilon,
            virtual_batch_size: virtual_batch_size.unwrap_or(0),
        }
    }

    /// Training statistics on an autodiff device, running statistics otherwise.
    ///
    /// # Panics
    /// If the batch is not a multiple of the virtual batch size (run configs are checked for this
    /// before training starts).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        if x.device().is_autodiff() {
            self.forward_train(x)
        } else {
            self.forward_eval(x)
        }
    }

    fn affine(&self, normalised: Tensor<4>) -> Tensor<4> {
        let [c] = self.gamma.shape().dims();
        normalised * self.gamma.val().reshape([1, c, 1, 1]) + self.beta.val().reshape([1, c, 1, 1])
    }

    fn forward_eval(&self, x: Tensor<4>) -> Tensor<4> {
        let [c] = self.gamma.shape().dims();
        let device = x.device();
        // `value_sync`: `value` may lag one update behind (burn's multi-device running state).
        let mean = self
            .running_mean
            .value_sync()
            .to_device(&device)
            .reshape([1, c, 1, 1]);
        let var = self
            .running_var
            .value_sync()
            .to_device(&device)
            .reshape([1, c, 1, 1]);
        self.affine((x - mean) / var.add_scalar(self.epsilon).sqrt())
    }

    fn forward_train(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, c, h, w] = x.dims();
        let v = if self.virtual_batch_size == 0 {
            b
        } else {
            self.virtual_batch_size
        };
        assert!(
            b % v == 0,
            "batch of {b} is not a multiple of the virtual batch size {v}"
        );
        let groups = b / v;
        // [groups, examples per group, channels, pixels]
        let xg = x.reshape([groups, v, c, h * w]);
        let mean = xg.clone().mean_dim(3).mean_dim(1); // [groups, 1, c, 1]
        let centred = xg - mean.clone();
        let var = centred.clone().square().mean_dim(3).mean_dim(1);
        let normalised = centred / var.clone().add_scalar(self.epsilon).sqrt();
        let out = self.affine(normalised.reshape([b, c, h, w]));

        let mean = mean.detach();
        let batch_mean = mean.clone().mean_dim(0); // [1, 1, c, 1]
        let batch_var = (var.detach() + mean.square()).mean_dim(0) - batch_mean.clone().square();
        let device = batch_mean.device();
        let running_mean = self.running_mean.value_sync().to_device(&device);
        let running_var = self.running_var.value_sync().to_device(&device);
        self.running_mean.update(
            running_mean.mul_scalar(self.rho) + batch_mean.reshape([c]).mul_scalar(1.0 - self.rho),
        );
        self.running_var.update(
            running_var.mul_scalar(self.rho) + batch_var.reshape([c]).mul_scalar(1.0 - self.rho),
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain-f64 reference of the formula in the module docs, for one channel.
    fn reference(x: &[f64], v: usize, eps: f64) -> (Vec<f64>, f64, f64) {
        let mut y = Vec::new();
        let (mut m1, mut m2) = (0.0, 0.0);
        for group in x.chunks(v) {
            let mu = group.iter().sum::<f64>() / v as f64;
            let s2 = group.iter().map(|a| (a - mu).powi(2)).sum::<f64>() / v as f64;
            y.extend(group.iter().map(|a| (a - mu) / (s2 + eps).sqrt()));
            m1 += mu;
            m2 += s2 + mu * mu;
        }
        let k = (x.len() / v) as f64;
        let mu = m1 / k;
        (y, mu, m2 / k - mu * mu)
    }

    /// 8 examples, 1 channel, 1x2 pixels; virtual batches of 4 and 2 (and the whole batch), with
    /// gamma 2, beta 0 after one training step; rho 0.9 from running (0, 1).
    #[test]
    fn virtual_batches_of_4_and_2() {
        let _guard = crate::rng_guard();
        let device = Device::flex().autodiff();
        let values: Vec<f32> = vec![
            1.0, 2.0, 0.5, -1.0, 3.0, 3.5, -2.0, 0.0, 4.0, 1.0, 2.5, 2.0, -0.5, 6.0, 1.5, 0.25,
        ];
        // Per virtual batch the statistics run over examples *and* pixels: per example 2 values.
        for v in [4usize, 2, 8] {
            let vbs = if v == 8 { None } else { Some(v) };
            let bn = GhostBatchNorm::new(1, 2.0, 0.9, 1e-5, vbs, &device);
            let x = Tensor::<1>::from_floats(values.as_slice(), &device).reshape([8, 1, 1, 2]);
            let y: Vec<f32> = bn.forward(x).into_data().try_to_vec().unwrap();
            let x64: Vec<f64> = values.iter().map(|&a| f64::from(a)).collect();
            let (want, mu, var) = reference(&x64, 2 * v, 1e-5);
            for (got, want) in y.iter().zip(&want) {
                assert!(
                    (f64::from(*got) - 2.0 * want).abs() < 1e-5,
                    "v={v}: {y:?} vs {want:?}"
                );
            }
            let rm: Vec<f32> = bn
                .running_mean
                .value_sync()
                .into_data()
                .try_to_vec()
                .unwrap();
            let rv: Vec<f32> = bn
                .running_var
                .value_sync()
                .into_data()
                .try_to_vec()
                .unwrap();
            assert!(
                (f64::from(rm[0]) - 0.1 * mu).abs() < 1e-6,
                "v={v}: {rm:?} vs {}",
                0.1 * mu
            );
            assert!(
                (f64::from(rv[0]) - (0.9 + 0.1 * var)).abs() < 1e-5,
                "v={v}: {rv:?} vs {}",
                0.9 + 0.1 * var
            );
        }
    }

    /// The running statistics do not depend on the split; the normalised outputs do.
    #[test]
    fn split_changes_outputs_not_running_statistics() {
        let _guard = crate::rng_guard();
        let device = Device::flex().autodiff();
        let x = Tensor::<4>::random(
            [8, 3, 2, 2],
            burn::tensor::Distribution::Normal(1.0, 2.0),
            &device,
        );
        let run = |v: Option<usize>| {
            let bn = GhostBatchNorm::new(3, 1.0, 0.5, 1e-5, v, &device);
            let y: Vec<f32> = bn.forward(x.clone()).into_data().try_to_vec().unwrap();
            let rv: Vec<f32> = bn
                .running_var
                .value_sync()
                .into_data()
                .try_to_vec()
                .unwrap();
            (y, rv)
        };
        let (y_whole, rv_whole) = run(None);
        let (y_ghost, rv_ghost) = run(Some(2));
        for (a, b) in rv_whole.iter().zip(&rv_ghost) {
            assert!((a - b).abs() < 1e-5);
        }
        assert!(
            y_whole
                .iter()
                .zip(&y_ghost)
                .any(|(a, b)| (a - b).abs() > 1e-3)
        );
    }

    /// Evaluation (no autodiff) uses the running statistics: fresh ones are (0, 1), so the output
    /// is gamma x / sqrt(1 + eps) + beta.
    #[test]
    fn evaluation_uses_running_statistics() {
        let _guard = crate::rng_guard();
        let device = Device::flex();
        let bn = GhostBatchNorm::new(1, 3.0, 0.9, 1e-5, Some(2), &device);
        let x = Tensor::<1>::from_floats([1.0, -2.0, 4.0], &device).reshape([3, 1, 1, 1]);
        let y: Vec<f32> = bn.forward(x).into_data().try_to_vec().unwrap();
        let s = 3.0 / (1.0f64 + 1e-5).sqrt();
        for (got, want) in y.iter().zip([s, -2.0 * s, 4.0 * s]) {
            assert!((f64::from(*got) - want).abs() < 1e-5);
        }
    }
}
