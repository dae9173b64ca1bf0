//! The `data` and `train` sections of a run config: where the data comes from and the training
//! loop's settings. Plain serde structs; [`crate::run_config`] composes and checks them.

use bigbatch_data::bert::CreationConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

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
    /// Record per-tensor diagnostics (`diagnostics.jsonl`: weight, gradient and update norms,
    /// trust ratios, effective learning rates; [`bigbatch_core::diagnostics`]) at the step before
    /// every `k`-th update; `Some(0)`: never. `None` (the default): at every evaluation, where the
    /// run already stops to read results back, so the default costs one reduction over the
    /// parameters per evaluation and a run that goes wrong has its diagnostics.
    #[serde(default)]
    pub diagnostics_every: Option<u64>,
    /// Also write TensorBoard event files into this directory while training: loss, learning
    /// rate, accuracies and the diagnostics.
    #[serde(default)]
    pub tensorboard: Option<PathBuf>,
}

fn default_train_eval() -> usize {
    2000
}

impl TrainSettings {
    /// Examples per forward/backward pass (over all devices).
    pub fn micro_batch_size(&self) -> usize {
        self.micro_batch_size.unwrap_or(self.batch_size)
    }

    /// Whether the update of step `step` (0-based) is diagnosed ([`TrainSettings::diagnostics_every`]).
    pub fn diagnoses(&self, step: u64) -> bool {
        match self.diagnostics_every {
            None => (step + 1).is_multiple_of(self.eval_every) || step + 1 == self.steps,
            Some(0) => false,
            Some(k) => (step + 1).is_multiple_of(k),
        }
    }

    /// Devices the batch is shared across.
    pub fn device_count(&self) -> usize {
        self.devices.as_ref().map_or(1, Vec::len)
    }
}
