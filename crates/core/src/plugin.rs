//! What an optimizer plugin implements ([`TensorOptimizer`]) and what it is given: the settings of
//! its group ([`GroupContext`], at build time) and the per-step inputs ([`StepContext`]).

use crate::groups::DecayMode;
use crate::state::State;
use crate::transforms::AdamHyper;
use anyhow::{Result, bail};
use burn::tensor::Tensor;
use std::cell::RefCell;

/// What a plugin knows about the group it optimizes.
#[derive(Clone, Debug)]
pub struct GroupContext {
    /// Config path of the group (`optimizer.default` or `optimizer.groups.NAME`), for errors.
    pub prefix: String,
    pub weight_decay: f64,
    /// `None`: the optimizer's own convention.
    pub decay_mode: Option<DecayMode>,
    /// `None`: the optimizer's own default.
    pub trust_ratio: Option<bool>,
}

impl GroupContext {
    /// The config path of a plugin field: `PREFIX.optimizer.config.NAME`.
    pub fn field(&self, name: &str) -> String {
        format!("{}.optimizer.config.{name}", self.prefix)
    }

    /// Errors unless `0 <= value < 1` (momentum, Adam betas).
    pub fn check_unit_interval(&self, name: &str, value: f64) -> Result<()> {
        if !(0.0..1.0).contains(&value) {
            bail!(
                "{}: expected a value in [0, 1), got {value}",
                self.field(name)
            );
        }
        Ok(())
    }

    /// Errors unless `value` is finite and `>= 0` (epsilons).
    pub fn check_non_negative(&self, name: &str, value: f64) -> Result<()> {
        if !(value >= 0.0 && value.is_finite()) {
            bail!(
                "{}: expected a finite non-negative number, got {value}",
                self.field(name)
            );
        }
        Ok(())
    }

    /// Errors unless `value` is finite and `> 0`.
    pub fn check_positive(&self, name: &str, value: f64) -> Result<()> {
        if !(value > 0.0 && value.is_finite()) {
            bail!(
                "{}: expected a positive number, got {value}",
                self.field(name)
            );
        }
        Ok(())
    }

    /// Checks Adam hyperparameters (betas in `[0, 1)`, epsilons non-negative).
    pub fn check_adam(&self, h: &AdamHyper) -> Result<()> {
        self.check_unit_interval("beta1", h.beta1)?;
        self.check_unit_interval("beta2", h.beta2)?;
        self.check_non_negative("eps", h.eps)?;
        self.check_non_negative("eps_root", h.eps_root)
    }
}

/// Per-step inputs shared by all tensors.
pub struct StepContext<'a> {
    /// The schedule's learning rate times the group's `lr_scale`.
    pub lr: f64,
    /// The 1-based index of this update (for bias correction).
    pub step: u64,
    /// `sqrt(sum over all parameters of ||g||^2)`, present when any group asked for it.
    pub global_grad_norm: Option<&'a Tensor<1>>,
    /// Where an optimizer reports the layer-wise trust ratio it applied (for `bigbatch replay`);
    /// `None` when nobody is listening.
    pub trust_ratio_out: Option<&'a RefCell<Option<Tensor<1>>>>,
}

impl StepContext<'_> {
    /// A context with no global gradient norm and no trust-ratio listener.
    pub fn new(lr: f64, step: u64) -> Self {
        StepContext {
            lr,
            step,
            global_grad_norm: None,
            trust_ratio_out: None,
        }
    }

    /// Reports the one-element trust ratio applied to this tensor (cheap: a handle clone).
    pub fn report_trust_ratio(&self, ratio: &Tensor<1>) {
        if let Some(out) = self.trust_ratio_out {
            *out.borrow_mut() = Some(ratio.clone());
        }
    }
}

/// A per-tensor optimizer: the composition of transforms one group applies.
pub trait TensorOptimizer: Send + Sync {
    /// How many state tensors (each shaped like the parameter, zero at start) it keeps.
    fn state_slots(&self) -> usize;
    /// Whether [`StepContext::global_grad_norm`] is needed.
    fn needs_global_grad_norm(&self) -> bool {
        false
    }
    /// The global-norm clip this optimizer applies to the gradient (its `max_grad_norm`), if any:
    /// only read for diagnostics (the clipping factor of a step). A plugin that clips and does not
    /// say so still trains correctly; its steps are recorded without a clipping factor.
    fn max_grad_norm(&self) -> Option<f64> {
        None
    }
    /// Returns the new parameter value and updates `state` in place.
    fn step(
        &self,
        ctx: &StepContext,
        param: Tensor<1>,
        grad: Tensor<1>,
        state: &mut State,
    ) -> Tensor<1>;
}
