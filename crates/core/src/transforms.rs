//! Small, named gradient transforms (after optax's `transform.py`), on flat rank-1 tensors.
//! Optimizer crates are short compositions of these. Every function is pure: state goes in and
//! comes out.
//!
//! Buffers: burn's CPU backend writes an element-wise result into an operand's buffer when that
//! operand's tensor has a single reference, and allocates a new buffer otherwise. State tensors
//! are therefore moved out of their slots ([`State::take`]) rather than cloned, and the gradient
//! (which the optimizer owns) is consumed by its last use.

use crate::state::State;
use burn::tensor::{Bool, Tensor};

/// `||x||_2` as a one-element tensor (no host synchronisation).
pub fn l2_norm(x: &Tensor<1>) -> Tensor<1> {
    x.clone().square().sum().sqrt()
}

/// L2 regularisation: `g + lambda w` (optax `add_decayed_weights` applied to the gradient).
pub fn add_l2(grad: Tensor<1>, param: &Tensor<1>, lambda: f64) -> Tensor<1> {
    if lambda == 0.0 {
        grad
    } else {
        grad + param.clone().mul_scalar(lambda)
    }
}

/// Decoupled weight decay applied to the weights (Loshchilov & Hutter 2019; torch `AdamW`,
/// optax `adamw`): `w - lr lambda w`.
pub fn decoupled_decay(param: Tensor<1>, lr: f64, lambda: f64) -> Tensor<1> {
    if lambda == 0.0 {
        param
    } else {
        param.mul_scalar(1.0 - lr * lambda)
    }
}

/// Heavy-ball / Nesterov trace without dampening (Nado et al. 2021, eq. in section 2.1.1; optax
/// `trace`): `v <- mu v + g`; the update direction is `mu v + g` for Nesterov and `v` otherwise.
/// Returns `(direction, new v)`.
pub fn momentum(
    grad: Tensor<1>,
    velocity: Tensor<1>,
    mu: f64,
    nesterov: bool,
) -> (Tensor<1>, Tensor<1>) {
    let v = velocity.mul_scalar(mu) + grad.clone();
    let direction = if nesterov {
        v.clone().mul_scalar(mu) + grad
    } else {
        v.clone()
    };
    (direction, v)
}

/// Adam moments (Kingma & Ba 2015; optax `scale_by_adam`): `m <- b1 m + (1-b1) g`,
/// `v <- b2 v + (1-b2) g^2`. Returns `(new m, new v)`. Nine words per element for `v` (the
/// square needs its own buffer), seven for `m` (which then reuses the gradient's).
pub fn adam_moments(
    grad: Tensor<1>,
    m: Tensor<1>,
    v: Tensor<1>,
    beta1: f64,
    beta2: f64,
) -> (Tensor<1>, Tensor<1>) {
    let v = v.mul_scalar(beta2) + grad.clone().square().mul_scalar(1.0 - beta2);
    let m = m.mul_scalar(beta1) + grad.mul_scalar(1.0 - beta1);
    (m, v)
}

/// `scale` times the Adam direction `m_hat / (sqrt(v_hat + eps_root) + eps)` where, with bias
/// correction at 1-based step `t`, `m_hat = m / (1 - b1^t)` and `v_hat = v / (1 - b2^t)` (optax
/// `scale_by_adam`); without it `m_hat = m`, `v_hat = v` (BERT's `AdamWeightDecayOptimizer`).
/// `scale` lets a caller fold the learning rate into the same pass.
///
/// With `eps_root = 0` (every shipped config) the scalars are folded as in torch's
/// `_multi_tensor_adam`: `(scale sqrt(c2) / c1) m / (sqrt(v) + eps sqrt(c2))`, where
/// `c1 = 1 - b1^t` and `c2 = 1 - b2^t`: four passes, equal to the formula above up to f32
/// rounding.
#[allow(clippy::too_many_arguments)]
pub fn adam_direction(
    m: &Tensor<1>,
    v: &Tensor<1>,
    beta1: f64,
    beta2: f64,
    eps: f64,
    eps_root: f64,
    step: u64,
    bias_correction: bool,
    scale: f64,
) -> Tensor<1> {
    let (c1, c2) = if bias_correction {
        let t = step as i32;
        (1.0 - beta1.powi(t), 1.0 - beta2.powi(t))
    } else {
        (1.0, 1.0)
    };
    if eps_root == 0.0 {
        let root_c2 = c2.sqrt();
        let denominator = v.clone().sqrt().add_scalar(eps * root_c2);
        (m.clone() / denominator).mul_scalar(scale * root_c2 / c1)
    } else {
        let denominator = v.clone().div_scalar(c2).add_scalar(eps_root).sqrt();
        (m.clone() / denominator.add_scalar(eps)).mul_scalar(scale / c1)
    }
}

/// Adam's hyperparameters (optax `scale_by_adam`).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamHyper {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub eps_root: f64,
    pub bias_correction: bool,
}

/// optax `scale_by_adam` followed by a scaling by `scale` (1, or the learning rate): updates the
/// moments held in state slots 0 (m) and 1 (v) with [`adam_moments`] and returns
/// [`adam_direction`] at 1-based `step`.
pub fn scale_by_adam(
    grad: Tensor<1>,
    state: &mut State,
    h: &AdamHyper,
    step: u64,
    scale: f64,
) -> Tensor<1> {
    let (m, v) = adam_moments(grad, state.take(0), state.take(1), h.beta1, h.beta2);
    let direction = adam_direction(
        &m,
        &v,
        h.beta1,
        h.beta2,
        h.eps,
        h.eps_root,
        step,
        h.bias_correction,
        scale,
    );
    state.put(0, m);
    state.put(1, v);
    direction
}

/// Clipping by the global norm (optax `clip_by_global_norm`, BERT's `tf.clip_by_global_norm`):
/// `g max / max(global_norm, max)`.
pub fn clip_by_global_norm(grad: Tensor<1>, global_norm: &Tensor<1>, max_norm: f64) -> Tensor<1> {
    grad * global_norm
        .clone()
        .clamp_min(max_norm)
        .recip()
        .mul_scalar(max_norm)
}

/// The layer-wise trust ratio `||w|| / ||u||`, and 1 where either norm is 0 (optax
/// `scale_by_trust_ratio`, You et al. 2019). A one-element tensor.
pub fn trust_ratio(param: &Tensor<1>, update: &Tensor<1>) -> Tensor<1> {
    let w = l2_norm(param);
    let u = l2_norm(update);
    let both_positive = w
        .clone()
        .greater_elem(0.0)
        .bool_and(u.clone().greater_elem(0.0));
    let ratio = w / u.clone().mask_fill(u.equal_elem(0.0), 1.0);
    ratio.ones_like().mask_where(both_positive, ratio)
}

/// `numerator / denominator` where `valid` holds, else 1: the guarded ratio behind every
/// layer-wise trust ratio. All three are one-element tensors.
pub fn guarded_ratio(
    numerator: Tensor<1>,
    denominator: Tensor<1>,
    valid: Tensor<1, Bool>,
) -> Tensor<1> {
    let safe_denominator = denominator
        .clone()
        .mask_fill(denominator.equal_elem(0.0), 1.0);
    let ratio = numerator / safe_denominator;
    ratio.ones_like().mask_where(valid, ratio)
}

/// Scales a direction by a one-element trust ratio.
pub fn scale_by(direction: Tensor<1>, ratio: Tensor<1>) -> Tensor<1> {
    direction * ratio
}

/// The global norm `sqrt(sum_i ||g_i||^2)` over all gradients, as a one-element tensor.
pub fn global_norm<'a>(grads: impl IntoIterator<Item = &'a Tensor<1>>) -> Option<Tensor<1>> {
    grads
        .into_iter()
        .map(|g| g.clone().square().sum())
        .reduce(|a, b| a + b)
        .map(|s| s.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn t(v: &[f32]) -> Tensor<1> {
        Tensor::from_floats(v, &Device::flex())
    }
    fn vals(x: Tensor<1>) -> Vec<f32> {
        x.into_data().try_to_vec().unwrap()
    }

    #[test]
    fn trust_ratio_values() {
        // ||(3,4)|| = 5, ||(0,1)|| = 1 -> 5
        assert_eq!(
            vals(trust_ratio(&t(&[3.0, 4.0]), &t(&[0.0, 1.0]))),
            vec![5.0]
        );
        assert_eq!(
            vals(trust_ratio(&t(&[0.0, 0.0]), &t(&[0.0, 1.0]))),
            vec![1.0]
        );
        assert_eq!(
            vals(trust_ratio(&t(&[3.0, 4.0]), &t(&[0.0, 0.0]))),
            vec![1.0]
        );
    }

    #[test]
    fn momentum_forms() {
        let (d, v) = momentum(t(&[1.0]), t(&[2.0]), 0.5, false);
        assert_eq!((vals(d), vals(v.clone())), (vec![2.0], vec![2.0]));
        let (d, _) = momentum(t(&[1.0]), t(&[2.0]), 0.5, true);
        assert_eq!(vals(d), vec![2.0]); // v = 2, 0.5*2 + 1
    }

    /// BERT/optax clipping: (3, 4) has norm 5; max 1 -> (0.6, 0.8); max 10 leaves it unchanged.
    #[test]
    fn clip_by_global_norm_values() {
        let g = t(&[3.0, 4.0]);
        let norm = t(&[5.0]);
        let clipped = vals(clip_by_global_norm(g.clone(), &norm, 1.0));
        assert!((clipped[0] - 0.6).abs() < 1e-6 && (clipped[1] - 0.8).abs() < 1e-6);
        assert_eq!(vals(clip_by_global_norm(g, &norm, 10.0)), vec![3.0, 4.0]);
    }

    #[test]
    fn global_norm_of_two() {
        let a = t(&[3.0]);
        let b = t(&[4.0]);
        assert_eq!(vals(global_norm([&a, &b]).unwrap()), vec![5.0]);
    }
}
