//! The run config: what one training run needs, composed from one or more RON files.
//!
//! Each file may hold any subset of the five sections (`model`, `data`, `optimizer`, `schedule`,
//! `train`); later files replace whole sections of earlier ones; then each file's `set: [...]`
//! list (in file order) and finally `--set path=value` override single fields. `configs/models/*.ron` and `configs/optimizers/*.ron` are such partial files.

use anyhow::{Context, Result, bail};
use bigbatch_core::config::{apply_overrides, load_ron};
use bigbatch_core::{OptimizerSetup, Schedule};
use bigbatch_data::bert::CreationConfig;
use bigbatch_models::{BertConfig, ResNetConfig};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A model family and its configuration.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum ModelConfig {
    ResNet(ResNetConfig),
    /// BERT with its pretraining heads (`BertConfig::bert_large()` and the CPU presets).
    Bert(BertConfig),
}

/// Where the data comes from.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum DataSource {
    /// The Fashion-MNIST subset compiled into the binary (10k train / 2k test).
    EmbeddedFashionMnist,
    /// A directory with the four standard MNIST / Fashion-MNIST IDX files (raw or `.gz`).
    Idx(PathBuf),
    /// ImageNet JPEG folders with the MLPerf preprocessing.
    ImageNet(ImageNetSource),
    /// BERT pretraining shards written by `bigbatch bert-data` (`train-*.bbpt`, `eval-*.bbpt`).
    BertShards(PathBuf),
    /// BERT pretraining data made in memory at start by the same creation as `bigbatch bert-data`
    /// (the embedded default: corpus and vocabulary `"sotu"`).
    Bert(BertDataConfig),
}

/// ImageNet in the standard layout: `dir/train/<wnid>/*.JPEG` (label = sorted wnid order) and
/// `dir/val/<wnid>/*.JPEG`, or a flat `dir/val/` with `val_labels` (`<file> <wnid>` lines).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ImageNetSource {
    pub dir: PathBuf,
    #[serde(default)]
    pub val_labels: Option<PathBuf>,
    /// Decoding threads.
    #[serde(default = "default_workers")]
    pub workers: usize,
    /// Batches decoded ahead of training.
    #[serde(default = "default_prefetch")]
    pub prefetch: usize,
}

fn default_workers() -> usize {
    4
}
fn default_prefetch() -> usize {
    2
}

/// BERT pretraining data made at start (see `bigbatch bert-data` for the fields).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BertDataConfig {
    /// `"sotu"` (embedded) or a corpus file in BERT's format.
    pub corpus: String,
    /// `"sotu"` (embedded, 8,192 entries), `"sotu-1k"` (embedded, 1,024 entries) or a
    /// `vocab.txt`.
    pub vocab: String,
    pub creation: CreationConfig,
    /// Whole documents held out for evaluation.
    pub eval_documents: usize,
    /// Use only the first this many documents of the corpus.
    #[serde(default)]
    pub documents: Option<usize>,
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
    /// The optimizer's batch: examples per update (what schedules, studies and reports mean by
    /// batch size).
    pub batch_size: usize,
    /// Examples per forward/backward pass; the gradients of `batch_size / micro_batch_size`
    /// passes are summed before one update (the loss is the mean over the whole batch). `None`:
    /// the whole batch in one pass.
    #[serde(default)]
    pub micro_batch_size: Option<usize>,
    /// Device indices of the chosen backend; each micro-batch is shared evenly across them and
    /// their gradients are summed on the first. `None`: the backend's default device.
    #[serde(default)]
    pub devices: Option<Vec<usize>>,
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
    /// Start from the weights of the newest checkpoint of this run directory, with a fresh
    /// optimizer (phase 2 of BERT pretraining after phase 1).
    #[serde(default)]
    pub init_from: Option<PathBuf>,
}

fn default_train_eval() -> usize {
    2000
}

impl TrainSettings {
    /// Examples per forward/backward pass (over all devices).
    pub fn micro_batch_size(&self) -> usize {
        self.micro_batch_size.unwrap_or(self.batch_size)
    }

    /// Devices the batch is shared across.
    pub fn device_count(&self) -> usize {
        self.devices.as_ref().map_or(1, Vec::len)
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
        crate::step::check_split(t.batch_size, t.micro_batch_size(), t.device_count())?;
        match &self.model {
            ModelConfig::ResNet(m) => {
                m.validate()?;
                let share = t.micro_batch_size() / t.device_count();
                match m.bn.virtual_batch_size {
                    Some(v) if !t.batch_size.is_multiple_of(v) => bail!(
                        "model.bn.virtual_batch_size: {v} does not divide train.batch_size {}; \
                         every virtual batch must be full",
                        t.batch_size
                    ),
                    Some(v) if !share.is_multiple_of(v) => bail!(
                        "model.bn.virtual_batch_size: {v} does not divide the {share} examples each \
                         device computes at once (train.micro_batch_size {} over {} device(s)); \
                         batch-norm statistics must come from whole virtual batches",
                        t.micro_batch_size(),
                        t.device_count()
                    ),
                    None if share < t.batch_size => bail!(
                        "model.bn.virtual_batch_size is None (statistics over the whole batch) but \
                         each forward pass sees only {share} of the {} examples \
                         (train.micro_batch_size {} over {} device(s)): batch-norm statistics would \
                         silently become per micro-batch. Set model.bn.virtual_batch_size to a \
                         divisor of {share} (the paper uses 64 for ResNet-50) to make that explicit",
                        t.batch_size,
                        t.micro_batch_size(),
                        t.device_count()
                    ),
                    _ => Ok(()),
                }
            }
            ModelConfig::Bert(m) => {
                m.validate()?;
                if let DataSource::Bert(d) = &self.data.source {
                    d.creation.validate("data.source.creation.")?;
                }
                Ok(())
            }
        }
    }
}
