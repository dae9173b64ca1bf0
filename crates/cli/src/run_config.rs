//! The run config: what one training run needs, composed from one or more RON files.
//!
//! Each file may hold any subset of the five sections (`model`, `data`, `optimizer`, `schedule`,
//! `train`); later files replace whole sections of earlier ones, then `--set path=value` overrides
//! single fields. `configs/models/*.ron` and `configs/optimizers/*.ron` are such partial files.

use anyhow::{Result, bail};
use bigbatch_core::config::{apply_overrides, load_ron};
use bigbatch_core::{OptimizerSetup, Schedule};
use bigbatch_models::ResNetConfig;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A model family and its configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ModelConfig {
    ResNet(ResNetConfig),
}

/// Where the images come from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum DataSource {
    /// The Fashion-MNIST subset compiled into the binary (10k train / 2k test).
    EmbeddedFashionMnist,
    /// A directory with the four standard MNIST / Fashion-MNIST IDX files (raw or `.gz`).
    Idx(PathBuf),
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    pub source: DataSource,
}

/// Training-loop settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    pub batch_size: usize,
    /// The step budget.
    pub steps: u64,
    /// Label smoothing `tau`: targets `(1 - tau) onehot + tau / K` (Szegedy et al. 2016).
    #[serde(default)]
    pub label_smoothing: f64,
    /// Seeds model initialisation and data order.
    #[serde(default)]
    pub seed: u64,
    /// Evaluate every this many steps (and always after the last step).
    pub eval_every: u64,
    /// Training accuracy is measured on this many fixed (first) training examples.
    #[serde(default = "default_train_eval")]
    pub train_eval_examples: usize,
}

fn default_train_eval() -> usize {
    2000
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
        for file in files {
            let patch: RunConfigPatch = load_ron(file)?;
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
        if !(0.0..1.0).contains(&t.label_smoothing) {
            bail!(
                "train.label_smoothing: expected tau in [0, 1), got {}",
                t.label_smoothing
            );
        }
        match &self.model {
            ModelConfig::ResNet(m) => {
                m.validate()?;
                if let Some(v) = m.bn.virtual_batch_size
                    && !t.batch_size.is_multiple_of(v)
                {
                    bail!(
                        "model.bn.virtual_batch_size: {v} does not divide train.batch_size {}; \
                         every virtual batch must be full",
                        t.batch_size
                    );
                }
                Ok(())
            }
        }
    }
}
