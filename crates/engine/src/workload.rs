//! What differs between training workloads: the model, the data order, the loss and the
//! evaluation ([`Workload`]). Everything else (batch split, optimizer, schedule, metrics,
//! checkpoints, divergence) is the training loop's ([`crate::train`]).
//!
//! Workloads register themselves like optimizers ([`WorkloadPlugin`], collected with
//! `inventory`); a run config names one (`model: Plugin(name: "mlp", config: (...))`, or the
//! built-in `ResNet(..)` and `Bert(..)`, which are the workloads `resnet` and `bert`).

use crate::run::{Run, RunSummary};
use crate::settings::{DataSource, TrainSettings};
use anyhow::{Result, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::ops::Range;

/// One evaluation: validation and training accuracy (top-1 for classification, masked-LM
/// accuracy for BERT) and workload-specific extras (e.g. `val_nsp_accuracy`).
pub struct Evaluation {
    pub val_accuracy: f64,
    pub train_accuracy: f64,
    pub extra: Vec<(&'static str, f64)>,
}

/// A training workload.
pub trait Workload {
    type Model: Module + Clone;
    /// One training batch as the host holds it (indices or decoded examples).
    type Batch;
    /// Builds the model for the configured batch (called with the device's generator seeded).
    fn init(&self, device: &Device) -> Result<Self::Model>;
    /// The next training batch in data order.
    fn next_batch(&mut self) -> Result<Self::Batch>;
    /// The loss terms of examples `range` of `batch` on `device`, divided by the whole batch's
    /// denominator, so that the parts of a batch sum to the batch's mean loss.
    fn part_loss(
        &self,
        model: &Self::Model,
        batch: &Self::Batch,
        range: Range<usize>,
        device: &Device,
    ) -> Result<Tensor<1>>;
    /// [`Workload::part_loss`] of a training step: part `range` of the batch of step `at.step`
    /// of a run seeded by `at.seed`. A workload whose forward pass drops out derives its masks
    /// from these and the examples' indices in the batch (e.g.
    /// `bigbatch_models::dropout::DropoutKey`), so that they do not depend on how the batch is
    /// cut into micro-batches and devices. The training loop calls this; by default it is
    /// `part_loss`.
    fn part_loss_at(
        &self,
        model: &Self::Model,
        batch: &Self::Batch,
        range: Range<usize>,
        device: &Device,
        at: StepKey,
    ) -> Result<Tensor<1>> {
        let _ = at;
        self.part_loss(model, batch, range, device)
    }
    /// Whether the training forward pass draws from the device's random generator: the training
    /// loop then seeds it with (seed, step, part) before each part. Those draws depend on how the
    /// batch is cut; draws that must not should come from [`Workload::part_loss_at`]'s key.
    fn draws_randomness(&self) -> bool {
        false
    }
    /// Skips `n` training batches (resuming).
    fn skip(&mut self, n: u64) -> Result<()>;
    /// Evaluates in inference mode.
    fn evaluate(&mut self, model: &Self::Model, device: &Device) -> Result<Evaluation>;
}

/// Which training step a part belongs to ([`Workload::part_loss_at`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepKey {
    /// The run's `train.seed`.
    pub seed: u64,
    /// The step (updates applied before it).
    pub step: u64,
}

/// What a workload plugin is given beside its own config section: the run's `data` and `train`
/// sections, and the config path of its section for errors (`model` for `ResNet(..)`/`Bert(..)`,
/// `model.config` for `Plugin(..)`).
pub struct WorkloadContext<'a> {
    pub prefix: &'a str,
    pub data: &'a DataSource,
    pub train: &'a TrainSettings,
}

impl WorkloadContext<'_> {
    /// Deserialises the workload's config section, naming the failing field in the error
    /// (`model.config.hidden: invalid type ...`).
    pub fn parse_config<T: serde::de::DeserializeOwned>(
        &self,
        config: &serde_json::Value,
    ) -> Result<T> {
        bigbatch_core::config::parse_section(config, self.prefix)
    }
}

/// A workload ready to train, its types erased: every [`Workload`] is one (the training loop
/// is [`crate::train::train_loop`]), so a plugin's build function returns `Box::new(workload)`.
pub trait Trainable {
    fn train(self: Box<Self>, run: &Run) -> Result<RunSummary>;
}

/// Checks a workload's config section against the rest of the run config (called when a config
/// is composed); errors name the field.
pub type ValidateFn = fn(&serde_json::Value, &WorkloadContext) -> Result<()>;
/// Builds the workload (loads or makes its data) from its checked config section.
pub type BuildFn = fn(&serde_json::Value, &WorkloadContext) -> Result<Box<dyn Trainable>>;

/// A workload that registers itself, as optimizers do:
/// `bigbatch_core::inventory::submit! { WorkloadPlugin { name, description, config_doc, validate, build } }`.
pub struct WorkloadPlugin {
    /// The name in configs: `model: Plugin(name: "mlp", config: (...))`.
    pub name: &'static str,
    /// One line for `bigbatch workloads`.
    pub description: &'static str,
    /// The fields of its config section, with defaults.
    pub config_doc: &'static str,
    pub validate: ValidateFn,
    pub build: BuildFn,
}

inventory::collect!(WorkloadPlugin);

/// All registered workloads, sorted by name; two with one name are an error.
pub fn plugins() -> Result<Vec<&'static WorkloadPlugin>> {
    let mut all: Vec<_> = inventory::iter::<WorkloadPlugin>.into_iter().collect();
    all.sort_by_key(|p| p.name);
    for pair in all.windows(2) {
        if pair[0].name == pair[1].name {
            bail!(
                "two workload plugins are registered as `{}`: workload names must be unique",
                pair[0].name
            );
        }
    }
    Ok(all)
}

/// The workload called `name`; an unknown name is an error listing the registered ones.
pub fn find(name: &str) -> Result<&'static WorkloadPlugin> {
    let all = plugins()?;
    match all.iter().find(|p| p.name == name) {
        Some(p) => Ok(p),
        None => bail!(
            "unknown workload `{name}`; registered workloads: {} (a binary keeps a workload crate \
             only if it names it: call the crate's `link()`)",
            if all.is_empty() {
                "none".to_string()
            } else {
                all.iter().map(|p| p.name).collect::<Vec<_>>().join(", ")
            }
        ),
    }
}
