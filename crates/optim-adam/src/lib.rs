//! The Adam family, each a composition of core transforms:
//!
//! ```text
//! m <- b1 m + (1 - b1) g        v <- b2 v + (1 - b2) g^2
//! r  = m_hat / (sqrt(v_hat + eps_root) + eps)
//! adam      (Kingma & Ba 2015; optax.adam, torch Adam): bias-corrected; L2 decay by default
//!           (g <- g + lambda w before the moments); w <- w - lr r
//! adamw     (Loshchilov & Hutter 2019; optax.adamw, torch AdamW): bias-corrected;
//!           w <- w - lr (r + lambda w)
//! bert_adam (google-research/bert optimization.py, AdamWeightDecayOptimizer): no bias
//!           correction, eps 1e-6; w <- w - lr (m / (sqrt(v) + eps) + lambda w). BERT excludes
//!           LayerNorm and bias from decay: use a group selector (kinds: [Bias, Norm]).
//! ```
//!
//! Every variant takes `bias_correction`, `eps`, `eps_root` and an optional `max_grad_norm`
//! (`g * max / max(global_norm, max)`, as BERT's `clip_by_global_norm(1.0)`). A group with
//! `trust_ratio: Some(true)` scales the final direction by `||w|| / ||u||` (then it is LAMB).
//!
//! A plugin: of bigbatch it depends on `bigbatch-core` only; it must not depend on other
//! optimizers, models or the engine.

use anyhow::Result;
use bigbatch_core::optimizer::{GroupContext, State, StepContext, TensorOptimizer};
use bigbatch_core::registry::{OptimizerPlugin, parse_config};
use bigbatch_core::transforms::{
    AdamHyper, add_l2, clip_by_global_norm, decoupled_decay, scale_by, scale_by_adam, trust_ratio,
};
use bigbatch_core::{DecayMode, inventory};
use burn::tensor::Tensor;
use serde::Deserialize;

/// The RON config shared by `adam`, `adamw` and `bert_adam` (defaults differ, see `CONFIG_DOC`).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct AdamConfig {
    #[serde(default)]
    pub beta1: Option<f64>,
    #[serde(default)]
    pub beta2: Option<f64>,
    #[serde(default)]
    pub eps: Option<f64>,
    #[serde(default)]
    pub eps_root: Option<f64>,
    #[serde(default)]
    pub bias_correction: Option<bool>,
    #[serde(default)]
    pub max_grad_norm: Option<f64>,
}

const CONFIG_DOC: &str = "beta1: f64 = 0.9; beta2: f64 = 0.999; eps: f64 = 1e-8 (bert_adam: 1e-6); \
eps_root: f64 = 0.0; bias_correction: bool = true (bert_adam: false); max_grad_norm: Option<f64> = None";

/// Resolved hyperparameters of one Adam-family group.
#[derive(Debug, Clone, PartialEq)]
pub struct Adam {
    pub hyper: AdamHyper,
    pub max_grad_norm: Option<f64>,
    pub weight_decay: f64,
    pub decay_mode: DecayMode,
    pub trust_ratio: bool,
}

impl TensorOptimizer for Adam {
    fn state_slots(&self) -> usize {
        2
    }

    fn needs_global_grad_norm(&self) -> bool {
        self.max_grad_norm.is_some()
    }
    fn max_grad_norm(&self) -> Option<f64> {
        self.max_grad_norm
    }

    fn step(
        &self,
        ctx: &StepContext,
        param: Tensor<1>,
        grad: Tensor<1>,
        state: &mut State,
    ) -> Tensor<1> {
        let mut g = grad;
        if let (Some(max), Some(norm)) = (self.max_grad_norm, ctx.global_grad_norm) {
            g = clip_by_global_norm(g, norm, max);
        }
        if self.decay_mode == DecayMode::L2 {
            g = add_l2(g, &param, self.weight_decay);
        }
        if !self.trust_ratio {
            // The learning rate is folded into the direction's last pass; decoupled decay is
            // `w (1 - lr lambda) - lr r`.
            let step = scale_by_adam(g, state, &self.hyper, ctx.step, ctx.lr);
            return match self.decay_mode {
                DecayMode::Decoupled => decoupled_decay(param, ctx.lr, self.weight_decay) - step,
                DecayMode::L2 => param - step,
            };
        }
        let mut u = scale_by_adam(g, state, &self.hyper, ctx.step, 1.0);
        if self.decay_mode == DecayMode::Decoupled {
            u = add_l2(u, &param, self.weight_decay);
        }
        let ratio = trust_ratio(&param, &u);
        ctx.report_trust_ratio(&ratio);
        param - scale_by(u, ratio.mul_scalar(ctx.lr))
    }
}

/// Defaults of one variant: (eps, bias correction, decay mode).
fn build_variant(
    config: &serde_json::Value,
    ctx: &GroupContext,
    defaults: (f64, bool, DecayMode),
) -> Result<Box<dyn TensorOptimizer>> {
    let c: AdamConfig = parse_config(config, ctx)?;
    let hyper = AdamHyper {
        beta1: c.beta1.unwrap_or(0.9),
        beta2: c.beta2.unwrap_or(0.999),
        eps: c.eps.unwrap_or(defaults.0),
        eps_root: c.eps_root.unwrap_or(0.0),
        bias_correction: c.bias_correction.unwrap_or(defaults.1),
    };
    let adam = Adam {
        hyper,
        max_grad_norm: c.max_grad_norm,
        weight_decay: ctx.weight_decay,
        decay_mode: ctx.decay_mode.unwrap_or(defaults.2),
        trust_ratio: ctx.trust_ratio.unwrap_or(false),
    };
    ctx.check_adam(&adam.hyper)?;
    if let Some(m) = adam.max_grad_norm {
        ctx.check_positive("max_grad_norm", m)?;
    }
    Ok(Box::new(adam))
}

fn build_adam(config: &serde_json::Value, ctx: &GroupContext) -> Result<Box<dyn TensorOptimizer>> {
    build_variant(config, ctx, (1e-8, true, DecayMode::L2))
}

fn build_adamw(config: &serde_json::Value, ctx: &GroupContext) -> Result<Box<dyn TensorOptimizer>> {
    build_variant(config, ctx, (1e-8, true, DecayMode::Decoupled))
}

fn build_bert_adam(
    config: &serde_json::Value,
    ctx: &GroupContext,
) -> Result<Box<dyn TensorOptimizer>> {
    build_variant(config, ctx, (1e-6, false, DecayMode::Decoupled))
}

inventory::submit! {
    OptimizerPlugin {
        name: "adam",
        description: "Adam with bias correction; L2 decay added to the gradient (Kingma & Ba 2015; optax.adam, torch Adam); no momentum buffer; default decay L2",
        config_doc: CONFIG_DOC,
        honours: bigbatch_core::registry::GroupSetting::ALL,
        build: build_adam,
    }
}

inventory::submit! {
    OptimizerPlugin {
        name: "adamw",
        description: "AdamW: w <- w - lr (r + lambda w) (Loshchilov & Hutter 2019; optax.adamw, torch AdamW); no momentum buffer; default decay decoupled",
        config_doc: CONFIG_DOC,
        honours: bigbatch_core::registry::GroupSetting::ALL,
        build: build_adamw,
    }
}

inventory::submit! {
    OptimizerPlugin {
        name: "bert_adam",
        description: "BERT's AdamWeightDecayOptimizer: no bias correction, eps 1e-6, w <- w - lr (m/(sqrt(v)+eps) + lambda w); no momentum buffer; default decay decoupled",
        config_doc: CONFIG_DOC,
        honours: bigbatch_core::registry::GroupSetting::ALL,
        build: build_bert_adam,
    }
}

/// Makes the linker keep this crate (and its registrations); see `bigbatch_optim_sgd::link`.
pub fn link() {}

#[cfg(test)]
mod tests;
