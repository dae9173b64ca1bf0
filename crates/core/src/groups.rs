//! Parameter groups: which optimizer, learning-rate multiplier, weight decay, decay mode and
//! trust-ratio setting each parameter gets.
//!
//! A config has `default` settings and named `groups`, each with a [`Selector`] and overrides of
//! the default. Every parameter belongs to at most one group (an overlap is an error naming both
//! groups); parameters no group selects use the defaults. A group that selects nothing is an error.
//!
//! The MLPerf ResNet split, "LARS on conv/dense weights, heavy-ball momentum without decay on
//! biases and batch-norm parameters, same schedule", reads:
//! ```ron
//! optimizer: (
//!     default: (optimizer: (name: "lars", config: (momentum: 0.9)), weight_decay: 1e-4),
//!     groups: {
//!         "bias_and_bn": (
//!             select: (kinds: [Bias, Norm]),
//!             optimizer: (name: "heavy_ball", config: (momentum: 0.9)),
//!             weight_decay: 0.0,
//!         ),
//!     },
//! )
//! ```

use crate::params::ParamInfo;
pub use crate::params::ParamKind;
use anyhow::{Context, Result, bail};
use regex::Regex;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How weight decay enters the update.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecayMode {
    /// L2 regularisation: `g <- g + lambda w` before the optimizer's own transforms.
    L2,
    /// Decoupled weight decay (Loshchilov & Hutter 2019): applied to the weights by the optimizer
    /// itself (for SGD/Adam: `w <- w - lr lambda w`; for LAMB/LARS inside the trust-ratio update).
    Decoupled,
}

/// Chooses parameters. All given criteria must hold; `kinds` matches any of its entries.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Selector {
    /// Regular expression searched in the parameter path (e.g. `"^fc\\."`, `"bn\\d\\.gamma$"`).
    #[serde(default)]
    pub path: Option<String>,
    /// Parameter kinds, e.g. `[Bias, Norm]`.
    #[serde(default)]
    pub kinds: Vec<ParamKind>,
    /// Largest tensor rank selected (1 selects vectors: biases and norm parameters).
    #[serde(default)]
    pub max_rank: Option<usize>,
}

/// An optimizer from the registry and its plugin-specific configuration (a RON struct whose
/// fields the plugin documents; `bigbatch optimizers` lists them).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerChoice {
    pub name: String,
    #[serde(default = "empty_object")]
    pub config: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// The settings every parameter ends up with.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupSettings {
    pub optimizer: OptimizerChoice,
    /// Multiplies the schedule's learning rate.
    #[serde(default = "one")]
    pub lr_scale: f64,
    #[serde(default)]
    pub weight_decay: f64,
    /// `None`: the optimizer's own convention (L2 for SGD/Adam, decoupled for LAMB/AdamW).
    #[serde(default)]
    pub decay_mode: Option<DecayMode>,
    /// Layer-wise trust-ratio adaptation; `None` leaves the optimizer's own default (on for
    /// LARS/LAMB, off for the others).
    #[serde(default)]
    pub trust_ratio: Option<bool>,
}

fn one() -> f64 {
    1.0
}

/// A named group: a selector and the settings it changes from the default.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    pub select: Selector,
    #[serde(default)]
    pub optimizer: Option<OptimizerChoice>,
    #[serde(default)]
    pub lr_scale: Option<f64>,
    #[serde(default)]
    pub weight_decay: Option<f64>,
    #[serde(default)]
    pub decay_mode: Option<DecayMode>,
    #[serde(default)]
    pub trust_ratio: Option<bool>,
}

/// The `optimizer` section of a run config.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OptimizerSetup {
    pub default: GroupSettings,
    #[serde(default)]
    pub groups: BTreeMap<String, GroupSpec>,
}

/// The name of the group of unselected parameters.
pub const DEFAULT_GROUP: &str = "default";

/// The outcome of [`OptimizerSetup::assign`]: group names with their settings, and for each
/// parameter (in the order given) the index of its group.
#[derive(Clone, Debug)]
pub struct Assignment {
    pub groups: Vec<(String, GroupSettings)>,
    pub group_of: Vec<usize>,
}

struct CompiledSelector {
    path: Option<Regex>,
    kinds: Vec<ParamKind>,
    max_rank: Option<usize>,
}

impl CompiledSelector {
    fn new(group: &str, s: &Selector) -> Result<Self> {
        let path = match &s.path {
            Some(p) => Some(Regex::new(p).with_context(|| {
                format!("optimizer.groups.{group}.select.path: invalid regular expression `{p}`")
            })?),
            None => None,
        };
        if path.is_none() && s.kinds.is_empty() && s.max_rank.is_none() {
            bail!(
                "optimizer.groups.{group}.select: expected at least one of `path`, `kinds`, `max_rank`"
            );
        }
        Ok(Self {
            path,
            kinds: s.kinds.clone(),
            max_rank: s.max_rank,
        })
    }

    fn matches(&self, p: &ParamInfo) -> bool {
        self.path.as_ref().is_none_or(|r| r.is_match(&p.path))
            && (self.kinds.is_empty() || self.kinds.contains(&p.kind))
            && self.max_rank.is_none_or(|r| p.shape.len() <= r)
    }
}

impl GroupSettings {
    /// Checks the numbers; errors name the field under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        if !self.lr_scale.is_finite() || self.lr_scale < 0.0 {
            bail!(
                "{prefix}.lr_scale: expected a finite non-negative number (a negative scale would ascend the loss), got {}",
                self.lr_scale
            );
        }
        if !self.weight_decay.is_finite() || self.weight_decay < 0.0 {
            bail!(
                "{prefix}.weight_decay: expected a finite non-negative number, got {}",
                self.weight_decay
            );
        }
        Ok(())
    }
}

impl OptimizerSetup {
    /// Assigns every parameter to a group.
    pub fn assign(&self, params: &[ParamInfo]) -> Result<Assignment> {
        self.default.validate("optimizer.default")?;
        let mut groups = vec![(DEFAULT_GROUP.to_string(), self.default.clone())];
        let mut selectors = Vec::new();
        for (name, spec) in &self.groups {
            if name == DEFAULT_GROUP {
                bail!("optimizer.groups: `{DEFAULT_GROUP}` is reserved for unselected parameters");
            }
            let settings = GroupSettings {
                optimizer: spec
                    .optimizer
                    .clone()
                    .unwrap_or(self.default.optimizer.clone()),
                lr_scale: spec.lr_scale.unwrap_or(self.default.lr_scale),
                weight_decay: spec.weight_decay.unwrap_or(self.default.weight_decay),
                decay_mode: spec.decay_mode.or(self.default.decay_mode),
                trust_ratio: spec.trust_ratio.or(self.default.trust_ratio),
            };
            settings.validate(&format!("optimizer.groups.{name}"))?;
            selectors.push(CompiledSelector::new(name, &spec.select)?);
            groups.push((name.clone(), settings));
        }
        let mut group_of = Vec::with_capacity(params.len());
        let mut used = vec![false; groups.len()];
        for p in params {
            let mut chosen = 0;
            for (i, sel) in selectors.iter().enumerate() {
                if sel.matches(p) {
                    if chosen != 0 {
                        bail!(
                            "optimizer.groups: parameter `{}` is selected by both `{}` and `{}`; make the selectors disjoint",
                            p.path,
                            groups[chosen].0,
                            groups[i + 1].0
                        );
                    }
                    chosen = i + 1;
                }
            }
            used[chosen] = true;
            group_of.push(chosen);
        }
        for (i, (name, _)) in groups.iter().enumerate().skip(1) {
            if !used[i] {
                bail!("optimizer.groups.{name}.select: matches no parameter of the model");
            }
        }
        Ok(Assignment { groups, group_of })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_ron;

    fn info(path: &str, kind: ParamKind, shape: &[usize]) -> ParamInfo {
        ParamInfo {
            path: path.into(),
            kind,
            shape: shape.to_vec(),
        }
    }

    fn params() -> Vec<ParamInfo> {
        vec![
            info("conv1.weight", ParamKind::Weight, &[8, 3, 3, 3]),
            info("bn1.gamma", ParamKind::Norm, &[8]),
            info("bn1.beta", ParamKind::Norm, &[8]),
            info("fc.weight", ParamKind::Weight, &[8, 10]),
            info("fc.bias", ParamKind::Bias, &[10]),
        ]
    }

    const MLPERF: &str = r#"(
        default: (optimizer: (name: "lars", config: (momentum: 0.9)), weight_decay: 1e-4),
        groups: {
            "bias_and_bn": (
                select: (kinds: [Bias, Norm]),
                optimizer: (name: "heavy_ball", config: (momentum: 0.9)),
                weight_decay: 0.0,
            ),
        },
    )"#;

    #[test]
    fn mlperf_split_is_writable() {
        let setup: OptimizerSetup = parse_ron(MLPERF, "mlperf.ron").unwrap();
        let a = setup.assign(&params()).unwrap();
        assert_eq!(a.group_of, vec![0, 1, 1, 0, 1]);
        assert_eq!(a.groups[1].1.optimizer.name, "heavy_ball");
        assert_eq!(a.groups[1].1.weight_decay, 0.0);
        assert_eq!(a.groups[0].1.weight_decay, 1e-4);
        assert_eq!(a.groups[0].1.optimizer.config["momentum"], 0.9);
    }

    #[test]
    fn selector_matching_nothing_is_an_error() {
        let mut setup: OptimizerSetup = parse_ron(MLPERF, "mlperf.ron").unwrap();
        setup.groups.get_mut("bias_and_bn").unwrap().select = Selector {
            path: Some("^layer9".into()),
            ..Default::default()
        };
        let err = setup.assign(&params()).unwrap_err().to_string();
        assert!(
            err.contains("bias_and_bn") && err.contains("matches no parameter"),
            "{err}"
        );
    }

    #[test]
    fn overlapping_groups_are_an_error() {
        let mut setup: OptimizerSetup = parse_ron(MLPERF, "mlperf.ron").unwrap();
        let rank1 = GroupSpec {
            select: Selector {
                max_rank: Some(1),
                ..Default::default()
            },
            optimizer: None,
            lr_scale: Some(2.0),
            weight_decay: None,
            decay_mode: None,
            trust_ratio: None,
        };
        setup.groups.insert("vectors".into(), rank1);
        let err = setup.assign(&params()).unwrap_err().to_string();
        assert!(err.contains("both"), "{err}");
    }

    #[test]
    fn path_and_rank_selectors() {
        let mut setup: OptimizerSetup = parse_ron(MLPERF, "mlperf.ron").unwrap();
        setup.groups.clear();
        setup.groups.insert(
            "head".into(),
            GroupSpec {
                select: Selector {
                    path: Some(r"^fc\.".into()),
                    max_rank: Some(2),
                    ..Default::default()
                },
                optimizer: None,
                lr_scale: Some(0.5),
                weight_decay: None,
                decay_mode: Some(DecayMode::Decoupled),
                trust_ratio: Some(false),
            },
        );
        let a = setup.assign(&params()).unwrap();
        assert_eq!(a.group_of, vec![0, 0, 0, 1, 1]);
        assert_eq!(a.groups[1].1.lr_scale, 0.5);
        assert_eq!(a.groups[1].1.decay_mode, Some(DecayMode::Decoupled));
        assert_eq!(a.groups[1].1.optimizer.name, "lars");
    }

    #[test]
    fn bad_regex_and_negative_decay_name_fields() {
        let mut setup: OptimizerSetup = parse_ron(MLPERF, "mlperf.ron").unwrap();
        setup.default.weight_decay = -1.0;
        let err = setup.assign(&params()).unwrap_err().to_string();
        assert!(err.contains("optimizer.default.weight_decay"), "{err}");
        let mut setup: OptimizerSetup = parse_ron(MLPERF, "mlperf.ron").unwrap();
        setup.groups.get_mut("bias_and_bn").unwrap().select.path = Some("(".into());
        let err = setup.assign(&params()).unwrap_err().to_string();
        assert!(err.contains("select.path"), "{err}");
    }
}
