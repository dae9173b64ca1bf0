//! What one optimizer step did to each parameter tensor, for per-layer diagnostics: norms of the
//! weight, of its summed batch gradient before any clipping and of the update (the change of the
//! parameter), the trust ratio the tensor's optimizer applied, the effective learning rate, and per
//! step the global gradient norm and each clipping group's factor.
//!
//! ```text
//! weight_norm   ||w_t||                         (before the step)
//! grad_norm     ||g_t||                         (summed over the whole batch, before clipping)
//! update_norm   ||w_{t+1} - w_t||
//! update_ratio  update_norm / weight_norm       (None where weight_norm is 0)
//! trust_ratio   what the optimizer reported through StepContext::report_trust_ratio
//! effective_lr  lr * lr_scale * trust_ratio      (trust_ratio 1 where none is applied)
//! global_grad_norm  sqrt(sum_i grad_norm_i^2)
//! clip factor   max / max(global_grad_norm, max) (optax clip_by_global_norm), for a group whose
//!               optimizer declares a global-norm clip (TensorOptimizer::max_grad_norm)
//! ```
//!
//! The squared norms are reduced on the device and read back, with the trust ratios, in one
//! transfer per diagnosed step ([`crate::ModelOptimizer::step_with_diagnostics`]).

use crate::params::ParamKind;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// One parameter tensor at one diagnosed step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TensorDiagnostics {
    /// Dotted parameter path, e.g. `layer1.0.bn3.gamma`.
    pub path: String,
    /// The optimizer group it belongs to.
    pub group: String,
    /// Weight, bias or normalisation parameter.
    pub kind: ParamKind,
    pub weight_norm: f64,
    pub grad_norm: f64,
    pub update_norm: f64,
    /// `update_norm / weight_norm`; `None` where the weight is all zero.
    pub update_ratio: Option<f64>,
    /// The layer-wise trust ratio applied; `None` where the tensor's optimizer applies none.
    pub trust_ratio: Option<f64>,
    pub effective_lr: f64,
}

/// The global-norm clip of one optimizer group at one step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct GroupClip {
    pub group: String,
    /// The group optimizer's `max_grad_norm`.
    pub max_norm: f64,
    /// `max / max(global_grad_norm, max)`: 1 when the gradient is not clipped.
    pub factor: f64,
}

/// Everything recorded for one diagnosed step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StepDiagnostics {
    /// The schedule's learning rate of the step (before any group's `lr_scale`).
    pub lr: f64,
    /// `sqrt(sum over every tensor of grad_norm^2)`, before clipping.
    pub global_grad_norm: f64,
    /// One entry per group whose optimizer clips by the global norm.
    pub clipping: Vec<GroupClip>,
    /// In parameter order.
    pub tensors: Vec<TensorDiagnostics>,
}

/// The squared norms `[||w||^2, ||g||^2, ||w' - w||^2]` of one tensor, as a three-element device
/// tensor (reduced where the tensor lives; nothing is read back here).
pub fn squared_norms(before: &Tensor<1>, grad: &Tensor<1>, after: &Tensor<1>) -> Tensor<1> {
    Tensor::cat(
        vec![
            before.clone().square().sum(),
            grad.clone().square().sum(),
            (after.clone() - before.clone()).square().sum(),
        ],
        0,
    )
}

/// The clipping factor `max / max(norm, max)` of optax's `clip_by_global_norm`.
pub fn clip_factor(global_norm: f64, max_norm: f64) -> f64 {
    max_norm / global_norm.max(max_norm)
}
