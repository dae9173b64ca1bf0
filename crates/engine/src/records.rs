//! What a run records as it trains, in one place: `metrics.jsonl`, `diagnostics.jsonl` and,
//! with `train.tensorboard`, TensorBoard event files. On `--resume` both JSON-lines files keep
//! only what the checkpoint covers (a torn last line dropped), and a new event file starts with
//! TensorBoard's restart marker at the resumed step.

use crate::run_dir::{DIAGNOSTICS_FILE, DiagnosticsLine, Metrics, SoFar, truncate_metrics};
use crate::tensorboard::{self, EventWriter};
use anyhow::Result;
use bigbatch_core::diagnostics::StepDiagnostics;
use std::path::{Path, PathBuf};

/// The open record files of a run.
pub struct Records {
    metrics: Metrics,
    diagnostics_path: PathBuf,
    /// Opened at the first diagnosed step.
    diagnostics: Option<Metrics>,
    /// Whether `diagnostics.jsonl` continues (a resumed run) or starts.
    resumed: bool,
    events: Option<EventWriter>,
}

impl Records {
    /// A fresh run's files in `out`: `metrics.jsonl` created, `diagnostics.jsonl` created at the
    /// first diagnosed step, a new event file in `tensorboard`.
    pub fn create(out: &Path, tensorboard: Option<&Path>) -> Result<Self> {
        let metrics_path = out.join("metrics.jsonl");
        Ok(Self {
            metrics: Metrics::create(&metrics_path)?,
            diagnostics_path: out.join(DIAGNOSTICS_FILE),
            diagnostics: None,
            resumed: false,
            events: match tensorboard {
                Some(dir) => Some(EventWriter::create(dir, None)?),
                None => None,
            },
        })
    }

    /// A run resumed at `step` (updates done): both files keep the lines before it and are
    /// appended to; the event file marks the restart and repeats the evaluation at `step` (the
    /// marker drops the earlier files' events from that step on). Returns what the kept metrics
    /// say about the run so far.
    pub fn resume(out: &Path, step: u64, tensorboard: Option<&Path>) -> Result<(Self, SoFar)> {
        let metrics_path = out.join("metrics.jsonl");
        let diagnostics_path = out.join(DIAGNOSTICS_FILE);
        let so_far = truncate_metrics(&metrics_path, step)?;
        if diagnostics_path.exists() {
            truncate_metrics(&diagnostics_path, step)?;
        }
        let events = match tensorboard {
            Some(dir) => {
                let mut events = EventWriter::create(dir, Some(step))?;
                if let Some((s, scalars)) = so_far
                    .evaluation_at_step
                    .as_ref()
                    .and_then(tensorboard::metrics_scalars)
                {
                    events.scalars(s, &scalars)?;
                }
                Some(events)
            }
            None => None,
        };
        let records = Self {
            metrics: Metrics::append(&metrics_path)?,
            diagnostics_path,
            diagnostics: None,
            resumed: true,
            events,
        };
        Ok((records, so_far))
    }

    /// Appends a line to `metrics.jsonl`; a training step's loss and lr and an evaluation's
    /// results also go to TensorBoard.
    pub fn metric(&mut self, line: &serde_json::Value) -> Result<()> {
        self.metrics.write(line)?;
        if let (Some(events), Some((step, scalars))) =
            (self.events.as_mut(), tensorboard::metrics_scalars(line))
        {
            events.scalars(step, &scalars)?;
        }
        Ok(())
    }

    /// Appends the diagnostics of the update of `step` to `diagnostics.jsonl` (and TensorBoard).
    pub fn diagnostics(&mut self, step: u64, diagnostics: StepDiagnostics) -> Result<()> {
        let file = match self.diagnostics.as_mut() {
            Some(file) => file,
            None => self
                .diagnostics
                .insert(if self.resumed && self.diagnostics_path.exists() {
                    Metrics::append(&self.diagnostics_path)?
                } else {
                    Metrics::create(&self.diagnostics_path)?
                }),
        };
        let record = DiagnosticsLine { step, diagnostics };
        file.write(&serde_json::to_value(&record)?)?;
        if let Some(events) = self.events.as_mut() {
            events.scalars(step, &tensorboard::diagnostics_scalars(&record.diagnostics))?;
        }
        Ok(())
    }
}
