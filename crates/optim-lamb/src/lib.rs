//! LAMB (You et al. 2019), as composed by optax.lamb (`optax/_src/alias.py`):
//! `scale_by_adam -> add_decayed_weights -> scale_by_trust_ratio -> scale_by_learning_rate`.
//!
//! ```text
//! m <- b1 m + (1 - b1) g            v <- b2 v + (1 - b2) g^2
//! r  = m_hat / (sqrt(v_hat + eps_root) + eps)     (m_hat, v_hat bias-corrected unless disabled)
//! u  = r + lambda w                 (decoupled decay, LAMB's own convention)
//! trust = ||w|| / ||u||, or 1 when either norm is 0   (skipped where trust_ratio is off)
//! w <- w - lr trust u
//! ```
//!
//! Options: `bias_correction: false` (NVIDIA/BERT-style LAMB without it), `trust_clip: true`
//! (`min(trust, 1)`), `max_grad_norm: Some(1.0)` (clip by the global gradient norm first, as the
//! BERT and NVIDIA LAMB implementations do: `g * max / max(global_norm, max)`). With
//! `decay_mode: Some(L2)` the decay is added to the gradient before the moments instead.
//!
//! A plugin: of bigbatch it depends on `bigbatch-core` only; it must not depend on other
//! optimizers, models or the engine.

use anyhow::Result;
use bigbatch_core::optimizer::{GroupContext, State, StepContext, TensorOptimizer};
use bigbatch_core::registry::{OptimizerPlugin, parse_config};
use bigbatch_core::transforms::{
    AdamHyper, add_l2, clip_by_global_norm, scale_by, scale_by_adam, trust_ratio,
};
use bigbatch_core::{DecayMode, inventory};
use burn::tensor::Tensor;
use serde::Deserialize;

/// The RON config of `lamb`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct LambConfig {
    #[serde(default = "b1")]
    pub beta1: f64,
    #[serde(default = "b2")]
    pub beta2: f64,
    #[serde(default = "eps")]
    pub eps: f64,
    #[serde(default)]
    pub eps_root: f64,
    #[serde(default = "yes")]
    pub bias_correction: bool,
    #[serde(default)]
    pub trust_clip: bool,
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
}

impl LambConfig {
    /// The Adam part of LAMB.
    pub fn hyper(&self) -> AdamHyper {
        AdamHyper {
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            eps_root: self.eps_root,
            bias_correction: self.bias_correction,
        }
    }
}

fn b1() -> f64 {
    0.9
}
fn b2() -> f64 {
    0.999
}
fn eps() -> f64 {
    1e-6
}
fn yes() -> bool {
    true
}

const CONFIG_DOC: &str = "beta1: f64 = 0.9; beta2: f64 = 0.999; eps: f64 = 1e-6; eps_root: f64 = 0.0 \
(optax.lamb defaults); bias_correction: bool = true; trust_clip: bool = false (min(trust, 1)); \
max_grad_norm: Option<f64> = None (global-norm clipping, BERT/NVIDIA use Some(1.0))";

/// LAMB for one parameter group.
pub struct Lamb {
    pub config: LambConfig,
    pub weight_decay: f64,
    pub decay_mode: DecayMode,
    pub trust_ratio: bool,
}

impl TensorOptimizer for Lamb {
    fn state_slots(&self) -> usize {
        2
    }

    fn needs_global_grad_norm(&self) -> bool {
        self.config.max_grad_norm.is_some()
    }
    fn max_grad_norm(&self) -> Option<f64> {
        self.config.max_grad_norm
    }

    fn step(
        &self,
        ctx: &StepContext,
        param: Tensor<1>,
        grad: Tensor<1>,
        state: &mut State,
    ) -> Tensor<1> {
        let c = &self.config;
        let mut g = grad;
        if let (Some(max), Some(norm)) = (c.max_grad_norm, ctx.global_grad_norm) {
            g = clip_by_global_norm(g, norm, max);
        }
        if self.decay_mode == DecayMode::L2 {
            g = add_l2(g, &param, self.weight_decay);
        }
        let mut u = scale_by_adam(g, state, &c.hyper(), ctx.step, 1.0);
        if self.decay_mode == DecayMode::Decoupled {
            u = add_l2(u, &param, self.weight_decay);
        }
        // `w - lr trust u`, both scalars in one pass.
        let step = if self.trust_ratio {
            let mut ratio = trust_ratio(&param, &u);
            if c.trust_clip {
                ratio = ratio.clamp_max(1.0);
            }
            ctx.report_trust_ratio(&ratio);
            scale_by(u, ratio.mul_scalar(ctx.lr))
        } else {
            u.mul_scalar(ctx.lr)
        };
        param - step
    }
}

fn build(config: &serde_json::Value, ctx: &GroupContext) -> Result<Box<dyn TensorOptimizer>> {
    let c: LambConfig = parse_config(config, ctx)?;
    ctx.check_adam(&c.hyper())?;
    if let Some(m) = c.max_grad_norm {
        ctx.check_positive("max_grad_norm", m)?;
    }
    Ok(Box::new(Lamb {
        config: c,
        weight_decay: ctx.weight_decay,
        decay_mode: ctx.decay_mode.unwrap_or(DecayMode::Decoupled),
        trust_ratio: ctx.trust_ratio.unwrap_or(true),
    }))
}

inventory::submit! {
    OptimizerPlugin {
        name: "lamb",
        description: "LAMB: bias-corrected Adam direction plus decoupled decay, scaled by the layer-wise trust ratio ||w||/||u|| (You et al. 2019; optax.lamb); no momentum buffer; default decay decoupled",
        config_doc: CONFIG_DOC,
        honours: bigbatch_core::registry::GroupSetting::ALL,
        build,
    }
}

/// Makes the linker keep this crate (and its registration); see `bigbatch_optim_sgd::link`.
pub fn link() {}

#[cfg(test)]
mod tests;
