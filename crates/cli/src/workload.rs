//! What differs between training workloads: the model, the data order, the loss and the
//! evaluation. Everything else (batch split, optimizer, schedule, metrics, checkpoints,
//! divergence) is the training loop's ([`crate::train`]).

use anyhow::Result;
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
    /// Whether the training forward pass draws random numbers (dropout): the training loop then
    /// seeds the device's generator with (seed, step, part) before each part.
    fn draws_randomness(&self) -> bool {
        false
    }
    /// Skips `n` training batches (resuming).
    fn skip(&mut self, n: u64) -> Result<()>;
    /// Evaluates in inference mode.
    fn evaluate(&mut self, model: &Self::Model, device: &Device) -> Result<Evaluation>;
}
