//! LARS (You et al. 2017) in two named variants, both "momentum plus a trust ratio" with the
//! learning rate inside the momentum buffer:
//!
//! ```text
//! d     = g + lambda w                                   (L2 decay, LARS's own convention)
//! mlperf: trust = eta ||w|| / (||g|| + lambda ||w|| + eps), 1 if ||g|| = 0 or ||w|| = 0
//!         (flax `optim.LARS`, the MLPerf ResNet reference; TF `LARSOptimizer`)
//! optax:  trust = eta ||w|| / (||d|| + eps),               1 if ||w|| = 0 or ||d|| = 0
//!         (optax.lars = add_decayed_weights -> scale_by_trust_ratio -> scale_by_lr -> trace)
//! u     = lr trust d
//! v    <- mu v + u
//! w    <- w - v            (Nesterov: w <- w - (mu v + u))
//! ```
//!
//! `trust_ratio: Some(false)` in a group gives plain momentum with the learning rate in the
//! buffer; `decay_mode: Some(Decoupled)` leaves `lambda` out of `d` and the trust ratio and applies
//! `w <- w - lr lambda w` after the update. Biases and batch-norm parameters are handled by group
//! selectors (MLPerf: heavy-ball momentum, no decay).
//!
//! A plugin: of bigbatch it depends on `bigbatch-core` only; it must not depend on other
//! optimizers, models or the engine.

use anyhow::Result;
use bigbatch_core::optimizer::{GroupContext, State, StepContext, TensorOptimizer};
use bigbatch_core::registry::{OptimizerPlugin, parse_config};
use bigbatch_core::transforms::{add_l2, decoupled_decay, guarded_ratio, l2_norm, momentum};
use bigbatch_core::{DecayMode, inventory};
use burn::tensor::Tensor;
use serde::Deserialize;

/// Which published LARS.
#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LarsVariant {
    Mlperf,
    Optax,
}

/// The RON config of `lars`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LarsConfig {
    /// `"mlperf"` or `"optax"`.
    #[serde(default = "mlperf")]
    pub variant: LarsVariant,
    #[serde(default = "mu")]
    pub momentum: f64,
    #[serde(default)]
    pub nesterov: bool,
    /// `eta`, the trust coefficient (MLPerf and optax: 0.001).
    #[serde(default = "eta")]
    pub trust_coefficient: f64,
    #[serde(default)]
    pub eps: f64,
}

fn mlperf() -> LarsVariant {
    LarsVariant::Mlperf
}
fn mu() -> f64 {
    0.9
}
fn eta() -> f64 {
    0.001
}

const CONFIG_DOC: &str = "variant: \"mlperf\" | \"optax\" = \"mlperf\"; momentum: f64 = 0.9; \
nesterov: bool = false; trust_coefficient: f64 = 0.001 (eta); eps: f64 = 0.0";

/// LARS for one parameter group.
pub struct Lars {
    pub config: LarsConfig,
    pub weight_decay: f64,
    pub decay_mode: DecayMode,
    pub trust_ratio: bool,
}

impl TensorOptimizer for Lars {
    fn state_slots(&self) -> usize {
        1
    }

    fn step(
        &self,
        ctx: &StepContext,
        param: Tensor<1>,
        grad: Tensor<1>,
        state: &mut State,
    ) -> Tensor<1> {
        let c = &self.config;
        let lambda = match self.decay_mode {
            DecayMode::L2 => self.weight_decay,
            DecayMode::Decoupled => 0.0,
        };
        // Only the MLPerf trust ratio needs the gradient's own norm (before the decay is added).
        let grad_norm =
            (self.trust_ratio && c.variant == LarsVariant::Mlperf).then(|| l2_norm(&grad));
        let d = add_l2(grad, &param, lambda);
        let u = if self.trust_ratio {
            let w_norm = l2_norm(&param);
            let (denominator, other_norm) = match grad_norm {
                // MLPerf
                Some(grad_norm) => (
                    grad_norm.clone() + w_norm.clone().mul_scalar(lambda),
                    grad_norm,
                ),
                // optax
                None => {
                    let d_norm = l2_norm(&d);
                    (d_norm.clone(), d_norm)
                }
            };
            let valid = w_norm
                .clone()
                .greater_elem(0.0)
                .bool_and(other_norm.greater_elem(0.0));
            let trust = guarded_ratio(
                w_norm.mul_scalar(c.trust_coefficient),
                denominator.add_scalar(c.eps),
                valid,
            );
            ctx.report_trust_ratio(&trust);
            d * trust.mul_scalar(ctx.lr)
        } else {
            d.mul_scalar(ctx.lr)
        };
        let (direction, v) = momentum(u, state.take(0), c.momentum, c.nesterov);
        state.put(0, v);
        let decayed = match self.decay_mode {
            DecayMode::Decoupled => decoupled_decay(param, ctx.lr, self.weight_decay),
            DecayMode::L2 => param,
        };
        decayed - direction
    }
}

fn build(config: &serde_json::Value, ctx: &GroupContext) -> Result<Box<dyn TensorOptimizer>> {
    let c: LarsConfig = parse_config(config, ctx)?;
    ctx.check_unit_interval("momentum", c.momentum)?;
    ctx.check_positive("trust_coefficient", c.trust_coefficient)?;
    ctx.check_non_negative("eps", c.eps)?;
    Ok(Box::new(Lars {
        config: c,
        weight_decay: ctx.weight_decay,
        decay_mode: ctx.decay_mode.unwrap_or(DecayMode::L2),
        trust_ratio: ctx.trust_ratio.unwrap_or(true),
    }))
}

inventory::submit! {
    OptimizerPlugin {
        name: "lars",
        description: "LARS: momentum (lr inside the buffer) on a layer-wise trust-ratio-scaled gradient; variants mlperf (flax/MLPerf reference) and optax (optax.lars); default decay L2",
        config_doc: CONFIG_DOC,
        honours: bigbatch_core::registry::GroupSetting::ALL,
        build,
    }
}

/// Makes the linker keep this crate (and its registration); see `bigbatch_optim_sgd::link`.
pub fn link() {}

#[cfg(test)]
mod tests;
