//! The optimizer registry. Each optimizer crate submits one [`OptimizerPlugin`] with
//! `bigbatch_core::inventory::submit!`; core never names a concrete optimizer.
//!
//! `inventory` collects plugins in an order that changes between builds, so [`plugins`] sorts by
//! name and [`check`] rejects duplicate names.

use crate::plugin::{GroupContext, TensorOptimizer};
use anyhow::{Result, bail};

/// Builds a per-group optimizer from its RON configuration (as a JSON value) and the group's
/// settings. Errors name the offending field.
pub type BuildFn = fn(&serde_json::Value, &GroupContext) -> Result<Box<dyn TensorOptimizer>>;

/// A group setting that the core passes to the plugin ([`GroupContext`]) rather than applying
/// itself. (`lr_scale` is applied by the core: [`crate::StepContext::lr`] already includes it.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupSetting {
    /// `weight_decay` other than 0 ([`GroupContext::weight_decay`]).
    WeightDecay,
    /// `decay_mode: Some(..)` ([`GroupContext::decay_mode`]).
    DecayMode,
    /// `trust_ratio: Some(..)` ([`GroupContext::trust_ratio`]).
    TrustRatio,
}

impl GroupSetting {
    /// Every setting: for an optimizer that implements weight decay in both modes and the
    /// trust ratio.
    pub const ALL: &'static [GroupSetting] = &[
        GroupSetting::WeightDecay,
        GroupSetting::DecayMode,
        GroupSetting::TrustRatio,
    ];

    /// The field's name in a group's settings.
    pub fn field(self) -> &'static str {
        match self {
            GroupSetting::WeightDecay => "weight_decay",
            GroupSetting::DecayMode => "decay_mode",
            GroupSetting::TrustRatio => "trust_ratio",
        }
    }
}

/// An optimizer that registers itself.
pub struct OptimizerPlugin {
    /// The name used in configs (`optimizer: (name: "lamb", ...)`).
    pub name: &'static str,
    /// One line for `bigbatch optimizers`.
    pub description: &'static str,
    /// The fields of the plugin's config, with defaults and sources.
    pub config_doc: &'static str,
    /// The group settings its build function reads from [`GroupContext`]. A group that sets one
    /// not listed here is refused, naming the group and the optimizer, instead of being silently
    /// ignored.
    pub honours: &'static [GroupSetting],
    pub build: BuildFn,
}

inventory::collect!(OptimizerPlugin);

/// All registered plugins, sorted by name.
pub fn plugins() -> Vec<&'static OptimizerPlugin> {
    let mut all: Vec<_> = inventory::iter::<OptimizerPlugin>.into_iter().collect();
    all.sort_by_key(|p| p.name);
    all
}

/// Errors if two plugins share a name.
pub fn check() -> Result<()> {
    let all = plugins();
    for pair in all.windows(2) {
        if pair[0].name == pair[1].name {
            bail!(
                "two optimizer plugins are registered as `{}`: optimizer names must be unique",
                pair[0].name
            );
        }
    }
    Ok(())
}

/// The plugin called `name`; an unknown name is an error listing the registered ones.
pub fn find(name: &str) -> Result<&'static OptimizerPlugin> {
    check()?;
    let all = plugins();
    match all.iter().find(|p| p.name == name) {
        Some(p) => Ok(p),
        None => bail!(
            "unknown optimizer `{name}`; registered optimizers: {}",
            all.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
        ),
    }
}

/// Deserialises a plugin's config, naming the failing field in the error
/// (`PREFIX.optimizer.config.FIELD: ...`).
pub fn parse_config<T: serde::de::DeserializeOwned>(
    value: &serde_json::Value,
    ctx: &GroupContext,
) -> Result<T> {
    crate::config::parse_section(value, &format!("{}.optimizer.config", ctx.prefix))
}
