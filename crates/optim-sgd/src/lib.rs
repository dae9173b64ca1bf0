//! Heavy-ball and Nesterov momentum, exactly as in Nado et al. (2021), section 2.1.1, with no
//! dampening:
//!
//! ```text
//! v <- mu v + g
//! heavy ball: w <- w - lr v
//! Nesterov:   w <- w - lr (mu v + g)
//! ```
//!
//! `lr_inside_buffer: true` selects the Sutskever et al. (2013) / tf.keras / flax form, where the
//! learning rate enters the buffer (`v <- mu v + lr g`; `w <- w - v`, or `w - (mu v + lr g)` for
//! Nesterov); it differs from the default only while the learning rate changes.
//!
//! Group settings: `L2` decay adds `lambda w` to the gradient; `Decoupled` decay applies
//! `w <- w - lr lambda w` after the update. `trust_ratio: Some(true)` scales the (decayed)
//! gradient by `||w|| / ||g||` before the momentum trace, as optax.lars composes it.
//!
//! A plugin: of bigbatch it depends on `bigbatch-core` only; it must not depend on other
//! optimizers, models or the engine.

use anyhow::Result;
use bigbatch_core::optimizer::{GroupContext, State, StepContext, TensorOptimizer};
use bigbatch_core::registry::{OptimizerPlugin, parse_config};
use bigbatch_core::transforms::{add_l2, decoupled_decay, momentum, scale_by, trust_ratio};
use bigbatch_core::{DecayMode, inventory};
use burn::tensor::Tensor;
use serde::Deserialize;

/// The RON config of `heavy_ball` and `nesterov`.
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MomentumConfig {
    /// `mu`, in `[0, 1)`.
    #[serde(default = "default_momentum")]
    pub momentum: f64,
    /// Learning rate inside the buffer (Sutskever / tf.keras / flax convention).
    #[serde(default)]
    pub lr_inside_buffer: bool,
}

fn default_momentum() -> f64 {
    0.9
}

const CONFIG_DOC: &str = "momentum: f64 = 0.9 (mu, in [0, 1)); \
lr_inside_buffer: bool = false (v <- mu v + lr g as in Sutskever et al. 2013 / tf.keras / flax)";

/// Heavy-ball or Nesterov momentum for one parameter group.
pub struct Momentum {
    pub mu: f64,
    pub nesterov: bool,
    pub lr_inside_buffer: bool,
    pub weight_decay: f64,
    pub decay_mode: DecayMode,
    pub trust_ratio: bool,
}

impl TensorOptimizer for Momentum {
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
        let mut g = match self.decay_mode {
            DecayMode::L2 => add_l2(grad, &param, self.weight_decay),
            DecayMode::Decoupled => grad,
        };
        if self.trust_ratio {
            let ratio = trust_ratio(&param, &g);
            ctx.report_trust_ratio(&ratio);
            g = scale_by(g, ratio);
        }
        // The step subtracted from the weights: `v` (lr inside the buffer) or `lr v`.
        let step = if self.lr_inside_buffer {
            let (direction, v) =
                momentum(g.mul_scalar(ctx.lr), state.take(0), self.mu, self.nesterov);
            state.put(0, v);
            direction
        } else {
            let (direction, v) = momentum(g, state.take(0), self.mu, self.nesterov);
            state.put(0, v);
            direction.mul_scalar(ctx.lr)
        };
        // Decoupled decay: w - lr lambda w, with w the value before this update.
        let decayed = match self.decay_mode {
            DecayMode::Decoupled => decoupled_decay(param, ctx.lr, self.weight_decay),
            DecayMode::L2 => param,
        };
        decayed - step
    }
}

fn build(
    config: &serde_json::Value,
    ctx: &GroupContext,
    nesterov: bool,
) -> Result<Box<dyn TensorOptimizer>> {
    let c: MomentumConfig = parse_config(config, ctx)?;
    ctx.check_unit_interval("momentum", c.momentum)?;
    Ok(Box::new(Momentum {
        mu: c.momentum,
        nesterov,
        lr_inside_buffer: c.lr_inside_buffer,
        weight_decay: ctx.weight_decay,
        decay_mode: ctx.decay_mode.unwrap_or(DecayMode::L2),
        trust_ratio: ctx.trust_ratio.unwrap_or(false),
    }))
}

fn build_heavy_ball(
    config: &serde_json::Value,
    ctx: &GroupContext,
) -> Result<Box<dyn TensorOptimizer>> {
    build(config, ctx, false)
}

fn build_nesterov(
    config: &serde_json::Value,
    ctx: &GroupContext,
) -> Result<Box<dyn TensorOptimizer>> {
    build(config, ctx, true)
}

inventory::submit! {
    OptimizerPlugin {
        name: "heavy_ball",
        description: "Heavy-ball momentum, no dampening: v <- mu v + g; w <- w - lr v (Nado et al. 2021, 2.1.1); lr outside the buffer unless lr_inside_buffer; default decay L2",
        config_doc: CONFIG_DOC,
        honours: bigbatch_core::registry::GroupSetting::ALL,
        build: build_heavy_ball,
    }
}

inventory::submit! {
    OptimizerPlugin {
        name: "nesterov",
        description: "Nesterov momentum, no dampening: v <- mu v + g; w <- w - lr (mu v + g) (Nado et al. 2021, 2.1.1); lr outside the buffer unless lr_inside_buffer; default decay L2",
        config_doc: CONFIG_DOC,
        honours: bigbatch_core::registry::GroupSetting::ALL,
        build: build_nesterov,
    }
}

/// Makes the linker keep this crate (and its registrations) in binaries that only need it for
/// its `inventory` items: call it, or `use bigbatch_optim_sgd as _;`.
pub fn link() {}

#[cfg(test)]
mod tests;
