//! sign-SGD (Bernstein et al. 2018): `w <- w - lr sign(g)`. A throwaway plugin that lives outside
//! `crates/`, to prove that adding an optimizer needs no change to core or the CLI: this crate,
//! one `inventory::submit!`, and one line naming it in the binary that should carry it.

use anyhow::Result;
use bigbatch_core::inventory;
use bigbatch_core::optimizer::{GroupContext, State, StepContext, TensorOptimizer};
use bigbatch_core::registry::{OptimizerPlugin, parse_config};
use burn::tensor::Tensor;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SignSgdConfig {}

struct SignSgd;

impl TensorOptimizer for SignSgd {
    fn state_slots(&self) -> usize {
        0
    }

    fn step(
        &self,
        ctx: &StepContext,
        param: Tensor<1>,
        grad: Tensor<1>,
        _: &mut State,
    ) -> Tensor<1> {
        param - grad.sign().mul_scalar(ctx.lr)
    }
}

fn build(config: &serde_json::Value, ctx: &GroupContext) -> Result<Box<dyn TensorOptimizer>> {
    let _: SignSgdConfig = parse_config(config, ctx)?;
    Ok(Box::new(SignSgd))
}

inventory::submit! {
    OptimizerPlugin {
        name: "sign_sgd",
        description: "sign-SGD: w <- w - lr sign(g) (Bernstein et al. 2018); a test plugin",
        config_doc: "no fields",
        // No weight decay, decay mode or trust ratio: a group setting any of them is refused.
        honours: &[],
        build,
    }
}

/// Keeps this crate linked; see `bigbatch_optim_sgd::link`.
pub fn link() {}
