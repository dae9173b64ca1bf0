//! Ghost (virtual) batch norm (Hoffer et al. 2017; init2winit's `VirtualBatchNorm`, used by the
//! paper's LARS pipeline with virtual batches of 64): in training, each consecutive group of
//! `virtual_batch_size` examples is normalised with its own statistics.
//!
//! ```text
//! per virtual batch k:  mu_k = mean(x_k),  s2_k = mean((x_k - mu_k)^2)      (biased)
//!                       y = gamma (x - mu_k) / sqrt(s2_k + eps) + beta
//! running statistics:   one pair per virtual batch position k of the optimizer's batch:
//!                       mean_k = rho mean_k + (1 - rho) mu_k
//!                       var_k  = rho var_k  + (1 - rho) s2_k
//! evaluation:           mean = avg_k mean_k,  var = avg_k var_k
//!                       y = gamma (x - mean) / sqrt(var + eps) + beta
//! ```
//!
//! Running-statistics convention: init2winit's (`init2winit/model_lib/normalization.py`): the
//! running averages have a leading axis of size batch / virtual_batch_size, virtual batch `k`
//! updates row `k` with its own mean and biased variance, and the rows are averaged before
//! evaluation (init2winit's `sync_local_batch_norm_stats`). The evaluation variance is therefore
//! the mean of the virtual batches' variances, not the whole batch's variance (which would add
//! the spread of the virtual-batch means). torch's `BatchNorm2d` keeps the *unbiased* variance
//! and has no virtual batches. With `virtual_batch_size: None` the whole batch is one virtual
//! batch and there is one row (ordinary batch norm with a biased running variance).
//!
//! Because every row belongs to one position in the batch, a batch cut into micro-batches (or
//! shared across devices) gives exactly the running statistics of the one-piece step: each part
//! passes the index of its first virtual batch ([`GhostBatchNorm::forward_from`]).

use burn::module::{Module, Param, RunningState};
use burn::tensor::module::batch_norm_train;
use burn::tensor::{Device, Tensor};

/// Batch norm over `[batch, channels, height, width]` with optional virtual batches.
#[derive(Module, Debug)]
pub struct GhostBatchNorm {
    pub gamma: Param<Tensor<1>>,
    pub beta: Param<Tensor<1>>,
    /// `[virtual batches per optimizer batch, channels]`.
    pub running_mean: RunningState<Tensor<2>>,
    /// `[virtual batches per optimizer batch, channels]`.
    pub running_var: RunningState<Tensor<2>>,
    /// `rho` in `running = rho running + (1 - rho) batch`.
    pub rho: f64,
    pub epsilon: f64,
    /// Examples per virtual batch; `0` means the whole batch.
    pub virtual_batch_size: usize,
}

impl GhostBatchNorm {
    /// gamma = `gamma`, beta = 0, running means 0 and variances 1, one pair per virtual batch of
    /// a training batch of `batch_size` examples (one pair without virtual batches).
    pub fn new(
        channels: usize,
        gamma: f64,
        rho: f64,
        epsilon: f64,
        virtual_batch_size: Option<usize>,
        batch_size: usize,
        device: &Device,
    ) -> Self {
        let rows = match virtual_batch_size {
            Some(v) if v > 0 => batch_size.div_ceil(v).max(1),
            _ => 1,
        };
        Self {
            gamma: Param::from_tensor(Tensor::full([channels], gamma, device)),
            beta: Param::from_tensor(Tensor::zeros([channels], device)),
            running_mean: RunningState::new(Tensor::zeros([rows, channels], device)),
            running_var: RunningState::new(Tensor::ones([rows, channels], device)),
            rho,
            epsilon,
            virtual_batch_size: virtual_batch_size.unwrap_or(0),
        }
    }

    /// Training statistics on an autodiff device, running statistics otherwise; `x` is the whole
    /// batch (or its first part).
    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        self.forward_from(x, 0)
    }

    /// As [`forward`](Self::forward) for a part of the batch that starts at example
    /// `first_example`: in training, its virtual batches update the running-statistics rows of
    /// their positions in the whole batch.
    ///
    /// # Panics
    /// If the part is not a multiple of the virtual batch size, starts inside a virtual batch,
    /// or reaches past the rows the module was built for (run configs are checked for all of
    /// this before training starts).
    pub fn forward_from(&self, x: Tensor<4>, first_example: usize) -> Tensor<4> {
        if x.device().is_autodiff() {
            self.forward_train(x, first_example)
        } else {
            self.forward_eval(x)
        }
    }

    /// Virtual batches per training batch this module keeps running statistics for.
    pub fn rows(&self) -> usize {
        self.running_mean.value().dims()[0]
    }

    fn affine(&self, normalised: Tensor<4>) -> Tensor<4> {
        let [c] = self.gamma.shape().dims();
        normalised * self.gamma.val().reshape([1, c, 1, 1]) + self.beta.val().reshape([1, c, 1, 1])
    }

    fn forward_eval(&self, x: Tensor<4>) -> Tensor<4> {
        let [c] = self.gamma.shape().dims();
        let device = x.device();
        // `value_sync`: `value` may lag one update behind (burn's multi-device running state).
        // The rows are averaged (init2winit's `sync_local_batch_norm_stats`).
        let mean = self
            .running_mean
            .value_sync()
            .to_device(&device)
            .mean_dim(0)
            .reshape([1, c, 1, 1]);
        let var = self
            .running_var
            .value_sync()
            .to_device(&device)
            .mean_dim(0)
            .reshape([1, c, 1, 1]);
        self.affine((x - mean) / var.add_scalar(self.epsilon).sqrt())
    }

    /// Normalises each virtual batch with its own statistics through burn's `batch_norm_train`
    /// (one autodiff operation with its own backward, about a third fewer passes over memory
    /// than the formula written as tensor operations): the virtual batches become channels,
    /// `[v, groups * c, h w]`, with gamma and beta repeated per group. Returns the output and the
    /// per-virtual-batch mean and biased variance, `[groups, 1, c, 1]`.
    fn normalise_train(
        &self,
        x: Tensor<4>,
        groups: usize,
        v: usize,
    ) -> (Tensor<4>, Tensor<4>, Tensor<4>) {
        let [b, c, h, w] = x.dims();
        let (gamma, beta) = (self.gamma.val(), self.beta.val());
        let (out, mean, var) = if groups == 1 {
            let r = batch_norm_train(x, gamma, beta, self.epsilon);
            (r.output, r.mean, r.variance)
        } else {
            let per_group =
                |t: Tensor<1>| t.reshape([1, c]).expand([groups, c]).reshape([groups * c]);
            let channels_by_group =
                x.reshape([groups, v, c, h * w])
                    .swap_dims(0, 1)
                    .reshape([v, groups * c, h * w]);
            let r = batch_norm_train(
                channels_by_group,
                per_group(gamma),
                per_group(beta),
                self.epsilon,
            );
            let out = r
                .output
                .reshape([v, groups, c, h * w])
                .swap_dims(0, 1)
                .reshape([b, c, h, w]);
            (out, r.mean, r.variance)
        };
        (
            out,
            mean.reshape([groups, 1, c, 1]),
            var.reshape([groups, 1, c, 1]),
        )
    }

    fn forward_train(&self, x: Tensor<4>, first_example: usize) -> Tensor<4> {
        let [b, c, _, _] = x.dims();
        let v = if self.virtual_batch_size == 0 {
            b
        } else {
            self.virtual_batch_size
        };
        assert!(
            b.is_multiple_of(v) && first_example.is_multiple_of(v),
            "a part of {b} examples starting at example {first_example} does not consist of whole virtual batches of {v}"
        );
        let groups = b / v;
        let first = first_example / v;
        let rows = self.rows();
        assert!(
            first + groups <= rows,
            "virtual batches {first}..{} of a batch that has {rows}: the model was built for a smaller batch",
            first + groups
        );
        let (out, mean, var) = self.normalise_train(x, groups, v);

        let device = mean.device();
        let update = |state: &RunningState<Tensor<2>>, stat: Tensor<4>| {
            let all = state.value_sync().to_device(&device);
            let range = [first..first + groups, 0..c];
            let old = all.clone().slice(range.clone());
            let new =
                old.mul_scalar(self.rho) + stat.reshape([groups, c]).mul_scalar(1.0 - self.rho);
            state.update(all.slice_assign(range, new));
        };
        update(&self.running_mean, mean.detach());
        update(&self.running_var, var.detach());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows_of(state: &RunningState<Tensor<2>>) -> Vec<f32> {
        state.value_sync().into_data().try_to_vec().unwrap()
    }

    fn close(got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{got:?} vs {want:?}");
        for (g, w) in got.iter().zip(want) {
            assert!((f64::from(*g) - w).abs() < tol, "{got:?} vs {want:?}");
        }
    }

    /// One channel, one pixel, examples (1, 3 | 10, 14) in virtual batches of 2, rho 0.9, from
    /// running (0, 1). By hand (init2winit's formula): batch 0 has mean 2 and biased variance
    /// ((1-2)^2 + (3-2)^2)/2 = 1, batch 1 mean 12 and variance (4 + 4)/2 = 4. Row 0 becomes
    /// mean 0.1*2 = 0.2, variance 0.9 + 0.1*1 = 1.0; row 1 mean 1.2, variance 0.9 + 0.4 = 1.3.
    /// Evaluation uses their averages 0.7 and 1.15 (the whole batch's biased variance, 27.5, would
    /// give 0.9 + 2.75 = 3.65).
    #[test]
    fn one_running_average_per_virtual_batch() {
        let device = Device::flex().autodiff();
        let bn = GhostBatchNorm::new(1, 1.0, 0.9, 1e-5, Some(2), 4, &device);
        assert_eq!(bn.rows(), 2);
        let x = Tensor::<1>::from_floats([1.0, 3.0, 10.0, 14.0], &device).reshape([4, 1, 1, 1]);
        let y: Vec<f32> = bn.forward(x).into_data().try_to_vec().unwrap();
        let (a, b) = (1.0 / (1.0f64 + 1e-5).sqrt(), 2.0 / (4.0f64 + 1e-5).sqrt());
        close(&y, &[-a, a, -b, b], 1e-6);
        close(&rows_of(&bn.running_mean), &[0.2, 1.2], 1e-6);
        close(&rows_of(&bn.running_var), &[1.0, 1.3], 1e-6);

        // Evaluation: (x - 0.7) / sqrt(1.15 + eps).
        let eval = bn.valid();
        let x = Tensor::<1>::from_floats([1.85, 0.7], &Device::flex()).reshape([2, 1, 1, 1]);
        let y: Vec<f32> = eval.forward(x).into_data().try_to_vec().unwrap();
        close(&y, &[1.15 / (1.15f64 + 1e-5).sqrt(), 0.0], 1e-6);
    }

    /// The same batch in two parts, the second first: each part updates the rows of its own
    /// virtual batches, so the result equals the one-piece step.
    #[test]
    fn parts_update_the_rows_of_their_positions() {
        let device = Device::flex().autodiff();
        let bn = GhostBatchNorm::new(1, 1.0, 0.9, 1e-5, Some(2), 4, &device);
        let part = |v: [f32; 2]| Tensor::<1>::from_floats(v, &device).reshape([2, 1, 1, 1]);
        bn.forward_from(part([10.0, 14.0]), 2);
        close(&rows_of(&bn.running_mean), &[0.0, 1.2], 1e-6);
        close(&rows_of(&bn.running_var), &[1.0, 1.3], 1e-6);
        bn.forward_from(part([1.0, 3.0]), 0);
        close(&rows_of(&bn.running_mean), &[0.2, 1.2], 1e-6);
        close(&rows_of(&bn.running_var), &[1.0, 1.3], 1e-6);
    }

    /// Without virtual batches: one row, the whole batch's mean and biased variance; two channels
    /// with two pixels each. Channel 0 holds (1, 2 | 3, 6): mean 3, variance (4+1+0+9)/4 = 3.5;
    /// channel 1 holds (0, 0 | 2, 2): mean 1, variance 1. Rho 0.5: means (1.5, 0.5), variances
    /// (2.25, 1.0).
    #[test]
    fn whole_batch_statistics_without_virtual_batches() {
        let device = Device::flex().autodiff();
        let bn = GhostBatchNorm::new(2, 1.0, 0.5, 1e-5, None, 2, &device);
        assert_eq!(bn.rows(), 1);
        let x = Tensor::<1>::from_floats([1.0, 2.0, 0.0, 0.0, 3.0, 6.0, 2.0, 2.0], &device)
            .reshape([2, 2, 1, 2]);
        let y: Vec<f32> = bn.forward(x).into_data().try_to_vec().unwrap();
        let s0 = (3.5f64 + 1e-5).sqrt();
        let s1 = (1.0f64 + 1e-5).sqrt();
        close(
            &y,
            &[
                -2.0 / s0,
                -1.0 / s0,
                -1.0 / s1,
                -1.0 / s1,
                0.0,
                3.0 / s0,
                1.0 / s1,
                1.0 / s1,
            ],
            1e-6,
        );
        close(&rows_of(&bn.running_mean), &[1.5, 0.5], 1e-6);
        close(&rows_of(&bn.running_var), &[2.25, 1.0], 1e-6);
    }

    /// The training path's gradients (burn's `batch_norm_train` backward) equal those of the
    /// formula in the module docs written as tensor operations and differentiated by autodiff:
    /// random input and affine parameters, virtual batches of 2 and none, a weighted sum as the
    /// loss so that every output element has a different gradient.
    #[test]
    fn gradients_match_the_formula() {
        let device = Device::flex().autodiff();
        let (b, c, h, w) = (4, 3, 2, 2);
        let input = || {
            let values: Vec<f32> = (0..b * c * h * w)
                .map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0 + (i % 3) as f32)
                .collect();
            Tensor::<1>::from_floats(values.as_slice(), &device)
                .reshape([b, c, h, w])
                .require_grad()
        };
        let weights: Vec<f32> = (0..b * c * h * w).map(|i| (i % 7) as f32 - 2.5).collect();
        let weights = Tensor::<1>::from_floats(weights.as_slice(), &device).reshape([b, c, h, w]);
        for virtual_batch in [Some(2), None] {
            let mut bn = GhostBatchNorm::new(c, 1.0, 0.9, 1e-5, virtual_batch, b, &device);
            bn.gamma = Param::from_tensor(Tensor::from_floats([0.5, -1.5, 2.0], &device));
            bn.beta = Param::from_tensor(Tensor::from_floats([0.1, 0.0, -0.3], &device));
            let v = virtual_batch.unwrap_or(b);
            // The formula: per virtual batch, (x - mean) / sqrt(biased var + eps) * gamma + beta.
            let x = input();
            let xg = x.clone().reshape([b / v, v, c, h * w]);
            let mean = xg.clone().mean_dim(3).mean_dim(1);
            let centred = xg - mean;
            let var = centred.clone().square().mean_dim(3).mean_dim(1);
            let formula = bn.affine((centred / var.add_scalar(1e-5).sqrt()).reshape([b, c, h, w]));
            let grads = (formula.clone() * weights.clone()).sum().backward();
            let want_x = x.grad(&grads).unwrap();
            let want_gamma = bn.gamma.val().grad(&grads).unwrap();
            let want_beta = bn.beta.val().grad(&grads).unwrap();

            let x = input();
            let out = bn.forward(x.clone());
            let grads = (out.clone() * weights.clone()).sum().backward();
            let values = |t: Tensor<4>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
            let flat = |t: Tensor<1>| -> Vec<f32> { t.into_data().try_to_vec().unwrap() };
            let close = |what: &str, got: Vec<f32>, want: Vec<f32>| {
                for (g, w) in got.iter().zip(&want) {
                    assert!(
                        (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                        "{what} ({virtual_batch:?}): {got:?} vs {want:?}"
                    );
                }
            };
            close("output", values(out.inner()), values(formula.inner()));
            close("x grad", values(x.grad(&grads).unwrap()), values(want_x));
            close(
                "gamma grad",
                flat(bn.gamma.val().grad(&grads).unwrap()),
                flat(want_gamma),
            );
            close(
                "beta grad",
                flat(bn.beta.val().grad(&grads).unwrap()),
                flat(want_beta),
            );
        }
    }

    /// Evaluation (no autodiff) uses the running statistics: fresh ones are (0, 1), so the output
    /// is gamma x / sqrt(1 + eps) + beta.
    #[test]
    fn evaluation_uses_running_statistics() {
        let device = Device::flex();
        let bn = GhostBatchNorm::new(1, 3.0, 0.9, 1e-5, Some(2), 4, &device);
        let x = Tensor::<1>::from_floats([1.0, -2.0, 4.0], &device).reshape([3, 1, 1, 1]);
        let y: Vec<f32> = bn.forward(x).into_data().try_to_vec().unwrap();
        let s = 3.0 / (1.0f64 + 1e-5).sqrt();
        close(&y, &[s, -2.0 * s, 4.0 * s], 1e-5);
    }
}
