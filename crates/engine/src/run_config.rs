//! The run config: what one training run needs, composed from one or more RON files.
//!
//! Each file may hold any subset of the five sections (`model`, `data`, `optimizer`, `schedule`,
//! `train`); later files replace whole sections of earlier ones; then each file's `set: [...]`
//! list (in file order) and finally `--set path=value` override single fields. `configs/models/*.ron` and `configs/optimizers/*.ron` are such partial files.

use crate::step::check_split;
use crate::workload::{self, WorkloadContext};
use anyhow::{Context, Result, bail};
use bigbatch_core::config::{apply_overrides, load_ron};
use bigbatch_core::{OptimizerSetup, Schedule};
use bigbatch_models::{BertConfig, ResNetConfig};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use crate::settings::{BertDataConfig, DataConfig, DataSource, ImageNetSource, TrainSettings};

/// The workload: a model family and its configuration. `ResNet(..)` and `Bert(..)` are the
/// registered workloads `resnet` and `bert` with typed configs; `Plugin(name: "mlp", config:
/// (...))` names any registered workload ([`crate::workload::WorkloadPlugin`]) and passes
/// `config` to it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ModelConfig {
    /// ResNet classification (workload `resnet`): in-memory images or ImageNet folders.
    ResNet(ResNetConfig),
    /// BERT with its pretraining heads (workload `bert`; `BertConfig::bert_large()` and the CPU
    /// presets).
    Bert(BertConfig),
    /// A workload from a plugin crate, by its registered name.
    Plugin {
        name: String,
        #[serde(default = "empty_object")]
        config: serde_json::Value,
    },
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

impl ModelConfig {
    /// The registered workload's name, its config as the plugin reads it, and the config path
    /// of that section (for errors).
    pub fn workload(&self) -> Result<(&str, serde_json::Value, &'static str)> {
        Ok(match self {
            ModelConfig::ResNet(c) => ("resnet", serde_json::to_value(c)?, "model"),
            ModelConfig::Bert(c) => ("bert", serde_json::to_value(c)?, "model"),
            ModelConfig::Plugin { name, config } => (name.as_str(), config.clone(), "model.config"),
        })
    }
}

/// Everything one run needs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub optimizer: OptimizerSetup,
    pub schedule: Schedule,
    pub train: TrainSettings,
}

/// One RON file: any subset of the sections.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RunConfigPatch {
    #[serde(default)]
    pub model: Option<ModelConfig>,
    #[serde(default)]
    pub data: Option<DataConfig>,
    #[serde(default)]
    pub optimizer: Option<OptimizerSetup>,
    #[serde(default)]
    pub schedule: Option<Schedule>,
    #[serde(default)]
    pub train: Option<TrainSettings>,
    /// Field overrides applied after all sections are composed, as `--set` (e.g.
    /// `["model.bn.gamma0=0.4138"]`): lets a file change single fields of a section another file
    /// provides.
    #[serde(default)]
    pub set: Vec<String>,
}

/// The `optimizer` section alone, for `bigbatch replay` (`--set optimizer.default.weight_decay=0`).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OptimizerOnly {
    optimizer: OptimizerSetup,
}

/// Composes the `optimizer` sections of `files` (any run-config files; other sections are
/// ignored), then applies `sets` (paths start with `optimizer.`).
pub fn compose_optimizer(files: &[PathBuf], sets: &[String]) -> Result<OptimizerSetup> {
    let mut setup = None;
    for file in files {
        let patch: RunConfigPatch = load_ron(file)?;
        setup = patch.optimizer.or(setup);
    }
    let Some(optimizer) = setup else {
        bail!(
            "none of {} has an `optimizer` section",
            files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    Ok(apply_overrides(&OptimizerOnly { optimizer }, sets)?.optimizer)
}

impl RunConfig {
    /// Composes `files` in order, then applies `sets`. Missing sections are errors naming them.
    pub fn compose(files: &[PathBuf], sets: &[String]) -> Result<Self> {
        if files.is_empty() {
            bail!("no config given: pass --config FILE.ron (several compose in order)");
        }
        let mut merged = RunConfigPatch::default();
        let mut sources: [Option<&Path>; 5] = [None; 5];
        let mut file_sets: Vec<(&Path, Vec<String>)> = Vec::new();
        for file in files {
            let patch: RunConfigPatch = load_ron(file)?;
            if !patch.set.is_empty() {
                file_sets.push((file, patch.set.clone()));
            }
            let slots = [
                patch.model.is_some(),
                patch.data.is_some(),
                patch.optimizer.is_some(),
                patch.schedule.is_some(),
                patch.train.is_some(),
            ];
            for (i, present) in slots.into_iter().enumerate() {
                if present {
                    sources[i] = Some(file);
                }
            }
            merged.model = patch.model.or(merged.model);
            merged.data = patch.data.or(merged.data);
            merged.optimizer = patch.optimizer.or(merged.optimizer);
            merged.schedule = patch.schedule.or(merged.schedule);
            merged.train = patch.train.or(merged.train);
        }
        let names = ["model", "data", "optimizer", "schedule", "train"];
        let missing: Vec<_> = names
            .iter()
            .zip(&sources)
            .filter(|(_, s)| s.is_none())
            .map(|(n, _)| *n)
            .collect();
        if !missing.is_empty() {
            bail!(
                "the composed config ({}) has no {} section(s)",
                files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + "),
                missing.join(", ")
            );
        }
        let config = RunConfig {
            model: merged.model.unwrap(),
            data: merged.data.unwrap(),
            optimizer: merged.optimizer.unwrap(),
            schedule: merged.schedule.unwrap(),
            train: merged.train.unwrap(),
        };
        let mut config = config;
        for (file, file_set) in file_sets {
            config = apply_overrides(&config, &file_set)
                .with_context(|| format!("{}: set", file.display()))?;
        }
        let config = apply_overrides(&config, sets)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot; errors name the field.
    pub fn validate(&self) -> Result<()> {
        self.schedule.validate()?;
        let t = &self.train;
        if t.steps == 0 {
            bail!("train.steps: expected a positive step budget");
        }
        if t.eval_every == 0 {
            bail!("train.eval_every: expected a positive number of steps");
        }
        if t.train_eval_examples == 0 {
            bail!(
                "train.train_eval_examples: expected a positive number of training examples to measure training accuracy on"
            );
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            bail!(
                "train.label_smoothing: expected tau in [0, 1), got {}",
                t.label_smoothing
            );
        }
        check_split(t.batch_size, t.micro_batch_size(), t.device_count())?;
        let (name, config, prefix) = self.model.workload()?;
        let plugin = workload::find(name).context("model")?;
        (plugin.validate)(&config, &self.workload_context(prefix))
    }

    /// What a workload plugin is given beside its own config section.
    pub fn workload_context<'a>(&'a self, prefix: &'a str) -> WorkloadContext<'a> {
        WorkloadContext {
            prefix,
            data: &self.data.source,
            train: &self.train,
        }
    }

    /// A warning when `train.steps` and the schedule's `total_steps` differ: the run then stops
    /// before the schedule ends (or runs past it at its final rate), which is rarely meant.
    pub fn schedule_warning(&self) -> Option<String> {
        let total = self.schedule.total_steps()?;
        let steps = self.train.steps;
        (total != steps).then(|| {
            if steps < total {
                format!(
                    "train.steps is {steps} but the schedule's total_steps is {total}: the run stops \
                     at learning rate {:.6}, before the schedule ends (set both to change the budget)",
                    self.schedule.lr(steps - 1)
                )
            } else {
                format!(
                    "train.steps is {steps} but the schedule's total_steps is {total}: the last {} \
                     steps run past the schedule's end (set both to change the budget)",
                    steps - total
                )
            }
        })
    }
}

/// The config fields a resumed run may change: the budget and evaluation cadence, and how the
/// batch is cut (micro-batches, devices) and loaded, none of which changes the mathematics of a
/// step.
const MAY_CHANGE_ON_RESUME: &[&str] = &[
    "train.steps",
    "train.eval_every",
    "train.micro_batch_size",
    "train.devices",
    "train.diagnostics_every",
    "train.tensorboard",
    "data.source.ImageNet.workers",
    "data.source.ImageNet.prefetch",
];

fn leaves(prefix: &str, v: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match v {
        serde_json::Value::Object(map) if !map.is_empty() => {
            for (k, child) in map {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(&path, child, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// With `--resume`: the run directory's `config.ron` and the new config may differ only in
/// [`MAY_CHANGE_ON_RESUME`]; otherwise an error lists every differing field.
pub fn check_resume_config(out: &Path, config: &RunConfig) -> Result<()> {
    let path = out.join("config.ron");
    if !path.exists() {
        return Ok(());
    }
    let old: RunConfig = load_ron(&path)
        .with_context(|| format!("{}: the config of the run being resumed", path.display()))?;
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves("", &serde_json::to_value(&old)?, &mut a);
    leaves("", &serde_json::to_value(config)?, &mut b);
    let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    let differing: Vec<String> = keys
        .into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .filter(|k| !MAY_CHANGE_ON_RESUME.iter().any(|m| k.starts_with(m)))
        .map(|k| {
            let show = |v: Option<&serde_json::Value>| v.map_or("absent".into(), |v| v.to_string());
            format!("{k}: {} -> {}", show(a.get(k)), show(b.get(k)))
        })
        .collect();
    if !differing.is_empty() {
        bail!(
            "--resume: the config differs from the run's {} in {}; only {} may change when resuming (start a new run with another --out)",
            path.display(),
            differing.join(", "),
            MAY_CHANGE_ON_RESUME.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bigbatch_core::config::{parse_ron, to_ron};

    /// A plugin workload's section goes through `config.ron` (written at start, compared on
    /// `--resume`) unchanged, and reaches the plugin as the JSON object it was written as.
    #[test]
    fn plugin_model_config_round_trips_through_ron() {
        let text = r#"Plugin(name: "mlp", config: (hidden: [16, 8], classes: 10, scale: 0.5))"#;
        let model: ModelConfig = parse_ron(text, "test").unwrap();
        let (name, config, prefix) = model.workload().unwrap();
        assert_eq!(name, "mlp");
        assert_eq!(prefix, "model.config");
        assert_eq!(
            config,
            serde_json::json!({"hidden": [16, 8], "classes": 10, "scale": 0.5})
        );
        let again: ModelConfig = parse_ron(&to_ron(&model).unwrap(), "test").unwrap();
        assert_eq!(again, model);
        let bare: ModelConfig = parse_ron(r#"Plugin(name: "mlp")"#, "test").unwrap();
        assert_eq!(bare.workload().unwrap().1, serde_json::json!({}));
    }

    fn config(schedule: &str, steps: u64) -> RunConfig {
        parse_ron(
            &format!(
                r#"(
                    model: Plugin(name: "any"),
                    data: (source: EmbeddedFashionMnist),
                    optimizer: (default: (optimizer: (name: "heavy_ball"))),
                    schedule: {schedule},
                    train: (batch_size: 8, steps: {steps}, eval_every: 1),
                )"#
            ),
            "test",
        )
        .unwrap()
    }

    #[test]
    fn schedule_warning_when_the_budget_and_the_schedule_differ() {
        let cosine = "Cosine(peak: 1.0, warmup_steps: 0, total_steps: 10)";
        assert_eq!(config(cosine, 10).schedule_warning(), None);
        // Constant rates fit any budget.
        assert_eq!(config("Constant(lr: 0.1)", 3).schedule_warning(), None);
        // Cosine from 1 to 0 over 10 steps stopped after 5: the last rate used is lr(4) =
        // (1 + cos(pi 4/10)) / 2 = 0.654508.
        let short = config(cosine, 5).schedule_warning().unwrap();
        assert!(short.contains("train.steps is 5"), "{short}");
        assert!(short.contains("total_steps is 10"), "{short}");
        assert!(short.contains("learning rate 0.654508"), "{short}");
        let long = config(cosine, 12).schedule_warning().unwrap();
        assert!(long.contains("the last 2 steps run past"), "{long}");
    }

    #[test]
    fn unknown_workload_is_named() {
        let err = format!(
            "{:#}",
            config("Constant(lr: 0.1)", 1).validate().unwrap_err()
        );
        assert!(err.contains("unknown workload `any`"), "{err}");
    }
}
