//! One optimizer step over a batch cut into micro-batches and shared across devices: forward and
//! backward on every part, the gradients reduced onto the first device, one optimizer update, the
//! parameters sent back. Knows no workload: the loss of a part comes from a closure.
//!
//! ```text
//! batch B = M micro-batches of m examples, in order; micro-batch j = D device shares of m / D
//! part p = examples [start_p, start_p + n_p) of the batch, on device d_p
//! loss(batch) = sum_p loss_p,  with each loss_p divided by the whole batch's denominator
//! grad(batch) = sum_p grad(loss_p)          (summed on device 0)
//! ```
//!
//! Because every part's loss is divided by the *whole* batch's denominator (B examples, or the
//! batch's number of masked-LM predictions), the summed gradient is the one-piece gradient up to
//! f32 rounding, and the optimizer (global-norm clipping, trust ratios) sees the whole batch.
//!
//! Devices are driven from one thread in the order above; backends queue work asynchronously, so
//! devices compute concurrently while the next part is being issued. Gradients of other devices
//! are moved to device 0 and summed there (burn-train's multi-device strategy). Batch-norm running
//! statistics are exact because each part updates the rows of its own virtual batches
//! ([`bigbatch_models::GhostBatchNorm::forward_from`]) and every device's model copy shares the
//! running-statistics state of the model on device 0.

use anyhow::{Result, bail};
use bigbatch_core::ModelOptimizer;
use bigbatch_core::diagnostics::StepDiagnostics;
use bigbatch_core::params::{ParamSlot, gather, scatter, values};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::ops::Range;

/// How a batch is cut: micro-batches processed one after the other, each shared evenly across
/// the devices.
#[derive(Clone, Debug)]
pub struct BatchSplit {
    pub batch_size: usize,
    pub micro_batch_size: usize,
    /// Training devices (with autodiff); the first holds the model and the optimizer state.
    pub devices: Vec<Device>,
}

/// One part of a batch: examples `range`, computed on device `device`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    pub device: usize,
    pub range: Range<usize>,
}

impl BatchSplit {
    /// Checks that the micro-batch divides the batch and the devices divide the micro-batch;
    /// errors name the config fields.
    pub fn new(batch_size: usize, micro_batch_size: usize, devices: Vec<Device>) -> Result<Self> {
        check_split(batch_size, micro_batch_size, devices.len())?;
        Ok(Self {
            batch_size,
            micro_batch_size,
            devices,
        })
    }

    /// The main device: model, optimizer state and reduced gradients live here.
    pub fn main_device(&self) -> &Device {
        &self.devices[0]
    }

    /// The parts of a batch in processing order: micro-batch after micro-batch, each split into
    /// consecutive device shares.
    pub fn parts(&self) -> Vec<Part> {
        let share = self.micro_batch_size / self.devices.len();
        (0..self.batch_size / share)
            .map(|k| Part {
                device: k % self.devices.len(),
                range: k * share..(k + 1) * share,
            })
            .collect()
    }
}

/// Checks a batch split (errors name the config fields): a positive batch, a micro-batch that
/// divides it, and at least one device, all of which share the micro-batch evenly.
pub fn check_split(batch_size: usize, micro_batch_size: usize, devices: usize) -> Result<()> {
    if batch_size == 0 {
        bail!("train.batch_size: expected a positive batch size");
    }
    if micro_batch_size == 0 || !batch_size.is_multiple_of(micro_batch_size) {
        bail!(
            "train.micro_batch_size: {micro_batch_size} does not divide train.batch_size {batch_size}; expected a divisor of the batch"
        );
    }
    if devices == 0 {
        bail!("train.devices: expected at least one device index (or None)");
    }
    if !micro_batch_size.is_multiple_of(devices) {
        bail!(
            "train.devices: {devices} devices do not share train.micro_batch_size {micro_batch_size} evenly"
        );
    }
    Ok(())
}

/// What one step did.
pub struct StepOutcome {
    /// The batch's loss (the sum of the parts' losses), before the update.
    pub loss: f64,
    /// What the update did to every tensor, when the step was asked to diagnose it.
    pub diagnostics: Option<StepDiagnostics>,
}

/// Forward and backward over every part of a batch, then one optimizer update with the summed
/// gradients at learning rate `lr`. `loss_of(model, part, device)` returns the part's loss
/// divided by the whole batch's denominator. Returns the updated model (on the main device) and
/// the batch's loss; a non-finite loss leaves the model unchanged and is returned as is, for the
/// caller to record. With `diagnose`, the outcome also holds the update's per-tensor diagnostics
/// ([`ModelOptimizer::step_with_diagnostics`]: norms of the summed gradient before clipping).
pub fn step<M, F>(
    model: M,
    optimizer: &mut ModelOptimizer,
    split: &BatchSplit,
    lr: f64,
    diagnose: bool,
    mut loss_of: F,
) -> Result<(M, StepOutcome)>
where
    M: Module + Clone,
    F: FnMut(&M, &Part, &Device) -> Result<Tensor<1>>,
{
    let main = split.main_device();
    let main_plain = main.clone().inner();
    // The model on every other device: the same parameters (no gradient history), and the same
    // running-statistics state (a module clone shares it).
    let replicas: Vec<M> = split.devices[1..]
        .iter()
        .map(|d| model.clone().fork(d))
        .collect();
    let mut grads: Option<Vec<Tensor<1>>> = None;
    let mut losses: Vec<Tensor<1>> = Vec::new();
    for part in split.parts() {
        let (replica, device) = match part.device {
            0 => (&model, main),
            d => (&replicas[d - 1], &split.devices[d]),
        };
        let loss = loss_of(replica, &part, device)?;
        losses.push(loss.clone().inner().to_device(&main_plain));
        let part_grads = gather(replica, &loss.backward());
        grads = Some(match grads {
            None => part_grads
                .into_iter()
                .map(|s| s.grad.to_device(&main_plain))
                .collect(),
            Some(sum) => sum
                .into_iter()
                .zip(part_grads)
                .map(|(a, s)| a + s.grad.to_device(&main_plain))
                .collect(),
        });
    }
    let loss: f64 = Tensor::cat(losses, 0).sum().into_scalar::<f32>().into();
    if !loss.is_finite() {
        return Ok((
            model,
            StepOutcome {
                loss,
                diagnostics: None,
            },
        ));
    }
    let slots = values(&model)
        .into_iter()
        .zip(grads.expect("a batch has at least one part"))
        .map(|(value, grad)| ParamSlot { value, grad })
        .collect();
    let (updated, diagnostics) = if diagnose {
        let (values, d) = optimizer.step_with_diagnostics(lr, slots);
        (values, Some(d))
    } else {
        (optimizer.step(lr, slots), None)
    };
    Ok((scatter(model, updated), StepOutcome { loss, diagnostics }))
}

/// Runs `work` (a training step); a backend panic that reports device memory exhaustion becomes
/// an error naming the sizes to lower, any other panic continues unwinding.
pub fn guard_memory<T>(split: &BatchSplit, work: impl FnOnce() -> Result<T>) -> Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)) {
        Ok(result) => result,
        Err(panic) => {
            let message = crate::backend::panic_message(panic.as_ref());
            match out_of_memory(&message, split) {
                Some(error) => Err(error),
                None => std::panic::resume_unwind(panic),
            }
        }
    }
}

/// The error for a backend message that reports device memory exhaustion (cubecl: "out of device
/// memory allocating N bytes", "An out-of-memory error happened during launch"), or `None`.
fn out_of_memory(message: &str, split: &BatchSplit) -> Option<anyhow::Error> {
    let lower = message.to_lowercase();
    if !["out of device memory", "out-of-memory", "out of memory"]
        .iter()
        .any(|m| lower.contains(m))
    {
        return None;
    }
    let devices = split.devices.len();
    let share = split.micro_batch_size / devices;
    let first_line = message.lines().next().unwrap_or_default();
    Some(anyhow::anyhow!(
        "the device ran out of memory in a training step with train.batch_size {}, train.micro_batch_size {} over {devices} device(s) ({share} examples per device at once): lower train.micro_batch_size (accumulation keeps the optimizer batch at {}); the backend said: {first_line}",
        split.batch_size,
        split.micro_batch_size,
        split.batch_size
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split() -> BatchSplit {
        BatchSplit::new(64, 16, vec![Device::flex(), Device::flex()]).unwrap()
    }

    #[test]
    fn device_memory_exhaustion_names_the_sizes_to_lower() {
        let e = guard_memory(&split(), || -> Result<()> {
            panic!("out of device memory allocating 1073741824 bytes\nbacktrace...")
        })
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("train.batch_size 64, train.micro_batch_size 16 over 2 device(s) (8 examples per device at once)")
                && e.contains("lower train.micro_batch_size")
                && e.contains("allocating 1073741824 bytes"),
            "{e}"
        );
    }

    #[test]
    fn other_panics_keep_unwinding() {
        let caught = std::panic::catch_unwind(|| {
            let _ = guard_memory(&split(), || -> Result<()> { panic!("index out of bounds") });
        });
        assert!(caught.is_err());
    }

    #[test]
    fn parts_cover_the_batch_in_micro_batch_then_device_order() {
        let parts = split().parts();
        assert_eq!(parts.len(), 8);
        assert_eq!(
            parts[0],
            Part {
                device: 0,
                range: 0..8
            }
        );
        assert_eq!(
            parts[1],
            Part {
                device: 1,
                range: 8..16
            }
        );
        assert_eq!(
            parts[7],
            Part {
                device: 1,
                range: 56..64
            }
        );
    }
}
