//! A run's resolved settings ([`Run`]), the options that do not change its result
//! ([`RunOptions`]) and how it ended ([`RunSummary`], `summary.json`).

use crate::run_dir::CheckpointPointer;
use crate::settings::TrainSettings;
use crate::step::BatchSplit;
use bigbatch_core::{OptimizerSetup, Schedule};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How a run ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Diverged,
    /// Stopped by SIGTERM or SIGINT after a step, with a checkpoint at that step
    /// ([`crate::interrupt`]); `--resume` continues it exactly.
    Interrupted,
}

/// `summary.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub status: Status,
    /// Updates applied.
    pub steps: u64,
    /// For a diverged run: why (e.g. `loss is NaN`), at step `steps`; for an interrupted one,
    /// where it stopped.
    pub reason: Option<String>,
    pub final_val_accuracy: Option<f64>,
    pub final_train_accuracy: Option<f64>,
    pub final_loss: Option<f64>,
    /// Wall seconds of the run over every process that ran it (a resumed run adds those its
    /// checkpoint recorded; see `run_dir::run_seconds` for runs resumed before they were).
    pub seconds: f64,
    /// Examples per optimizer step.
    #[serde(default)]
    pub batch_size: usize,
    /// Examples per forward/backward pass (gradients accumulated over batch / micro-batch passes).
    #[serde(default)]
    pub micro_batch_size: usize,
    /// The backend and its device indices the batch was shared across.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Training examples per second over the steps of this invocation (evaluations excluded).
    #[serde(default)]
    pub examples_per_second: Option<f64>,
    /// Threads of the CPU thread pool (rayon's global pool, which burn's CPU backend uses) in
    /// this invocation: the machine's cores, `RAYON_NUM_THREADS`, or a Slurm allocation's
    /// `SLURM_CPUS_PER_TASK`.
    #[serde(default)]
    pub cpu_threads: Option<usize>,
    /// The vector instruction set of burn's CPU kernels on this machine, for a run on the CPU
    /// backend ([`crate::backend::cpu_vector_instructions`]): CPU runs repeat exactly where it is
    /// the same.
    #[serde(default)]
    pub cpu_simd: Option<String>,
}

/// Options that do not change the result.
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub progress: bool,
    /// Continue from the run directory's newest checkpoint.
    pub resume: bool,
    /// With `resume` and no checkpoint yet (a study trial killed before its first evaluation):
    /// clear the directory and start over instead of refusing.
    pub restart_without_checkpoint: bool,
}

/// A run's settings, resolved.
pub struct Run<'a> {
    pub optimizer: &'a OptimizerSetup,
    pub schedule: &'a Schedule,
    pub train: &'a TrainSettings,
    pub split: BatchSplit,
    /// Device names for the records (`Cpu`, `Cuda:0`, ...).
    pub names: Vec<String>,
    pub options: &'a RunOptions,
    /// The checkpoint to resume from.
    pub checkpoint: Option<CheckpointPointer>,
    /// Optimizer steps on several threads ([`backend::parallel_optimizer_steps`]).
    pub parallel_optimizer: bool,
    /// The CPU's vector instruction set, on the CPU backend ([`backend::run_vector_instructions`]).
    pub cpu_simd: Option<String>,
}
