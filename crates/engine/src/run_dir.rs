//! The run directory on disk: one process at a time, metrics lines, checkpoints with checksums,
//! and the truncation of metrics on resume. (What a resume may change is
//! [`crate::run_config::check_resume_config`].)
//!
//! ```text
//! run.lock                  advisory lock held for the life of the run (holds the pid)
//! config.ron                the resolved config
//! metrics.jsonl             groups line, setup line(s), per-step and evaluation lines
//! diagnostics.jsonl         per-tensor norms, trust ratios and effective learning rates of the
//!                           diagnosed steps (train.diagnostics_every), one line per step
//! checkpoint-NNNNNNNN/      model.bpk + optimizer.msgpack (the newest two are kept)
//! checkpoint.json           names the newest checkpoint and the one before, with the SHA-256
//!                           of every file; replaced atomically after the files are complete
//! summary.json              written atomically at the end
//! ```

use crate::run::RunSummary;
use anyhow::{Context, Result, bail};
use bigbatch_core::ModelOptimizer;
use bigbatch_core::config::write_atomic;
use bigbatch_core::diagnostics::StepDiagnostics;
use bigbatch_core::optimizer::OptimizerState;
use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

/// An advisory lock on a run directory, held until dropped. A second process (or a second run
/// in this process) that asks for the same directory gets an error naming the holder.
pub struct RunLock {
    _file: std::fs::File,
}

impl RunLock {
    pub fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join("run.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // A few tries: `study status` probes the lock for an instant (RunLock::holder).
        let mut tries = 0;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if tries < 5 => {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(RunInUse {
                        dir: dir.to_path_buf(),
                        holder: read_holder(&mut file),
                    }
                    .into());
                }
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(e).with_context(|| format!("cannot lock {}", path.display()));
                }
            }
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Self { _file: file })
    }

    /// The process holding the lock of `dir` (its pid as written), or `None` when no live
    /// process holds it (never run, finished, or killed: the operating system releases the lock
    /// of a dead process).
    pub fn holder(dir: &Path) -> Option<String> {
        let path = dir.join("run.lock");
        let mut file = std::fs::File::open(&path).ok()?;
        match file.try_lock_shared() {
            Ok(()) => None,
            Err(_) => Some(read_holder(&mut file)),
        }
    }
}

/// The pid a lock holder wrote into `run.lock`, or "unknown" (it may not have written it yet).
fn read_holder(file: &mut std::fs::File) -> String {
    let mut holder = String::new();
    let _ = file.read_to_string(&mut holder);
    match holder.trim() {
        "" => "unknown".into(),
        pid => pid.to_string(),
    }
}

/// The error of [`RunLock::acquire`] when another process holds the directory.
#[derive(Debug)]
pub struct RunInUse {
    pub dir: std::path::PathBuf,
    /// The holder's pid as it wrote it ("unknown" when it had not).
    pub holder: String,
}

impl std::fmt::Display for RunInUse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} is in use by another run (process {}, lock {}); a run directory is never shared by two processes: wait for it or use another --out",
            self.dir.display(),
            self.holder,
            self.dir.join("run.lock").display()
        )
    }
}

impl std::error::Error for RunInUse {}

/// One checkpoint directory and the SHA-256 of each of its files.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CheckpointEntry {
    pub dir: String,
    /// Updates applied when it was written.
    pub step: u64,
    /// File name -> SHA-256 (hex).
    #[serde(default)]
    pub sha256: BTreeMap<String, String>,
    /// Wall seconds the run had taken when it was written, over every process that ran it (a
    /// resumed run counts from here, so its summary's `seconds` is the whole run's); `None` in
    /// checkpoints written before bigbatch recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
    /// The CPU's vector instruction set, for a run on the CPU backend
    /// ([`crate::backend::cpu_vector_instructions`]): a resume on another set says so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_simd: Option<String>,
}

/// `checkpoint.json`: the newest complete checkpoint and the one before it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CheckpointPointer {
    #[serde(flatten)]
    pub newest: CheckpointEntry,
    #[serde(default)]
    pub previous: Option<CheckpointEntry>,
}

const MODEL_FILE: &str = "model.bpk";
const OPTIMIZER_FILE: &str = "optimizer.msgpack";

fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(format!("{:x}", Sha256::digest(&bytes)))
}

/// Writes `checkpoint-{step}/` (model and optimizer state), then atomically `checkpoint.json`
/// naming it (with the run's wall `seconds` so far, where known, and the CPU's vector
/// instructions on the CPU backend) and the previous checkpoint with their checksums, then
/// removes older checkpoints.
pub fn save_checkpoint<M: Module + Clone>(
    out: &Path,
    step: u64,
    seconds: Option<f64>,
    cpu_simd: Option<&str>,
    model: &M,
    optimizer: &ModelOptimizer,
) -> Result<()> {
    let name = format!("checkpoint-{step:08}");
    let dir = out.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let model_path = dir.join(MODEL_FILE);
    model
        .clone()
        .save_file(&model_path)
        .map_err(|e| anyhow::anyhow!("saving the model to {}: {e:?}", dir.display()))?;
    std::fs::File::open(&model_path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", model_path.display()))?;
    write_atomic(&dir.join(OPTIMIZER_FILE), &optimizer.state().to_bytes()?)?;
    let mut sha256 = BTreeMap::new();
    for file in [MODEL_FILE, OPTIMIZER_FILE] {
        sha256.insert(file.to_string(), sha256_file(&dir.join(file))?);
    }
    let newest = CheckpointEntry {
        dir: name,
        step,
        sha256,
        seconds,
        cpu_simd: cpu_simd.map(str::to_string),
    };
    // The checkpoint before this one: the old pointer's newest, or (when this step's directory
    // was just rewritten, after a resume from an earlier checkpoint) the one it named before.
    let previous = read_pointer(out).ok().flatten().and_then(|p| {
        if p.newest.dir != newest.dir {
            Some(p.newest)
        } else {
            p.previous
        }
    });
    let pointer = CheckpointPointer { newest, previous };
    write_atomic(
        &out.join("checkpoint.json"),
        serde_json::to_string_pretty(&pointer)?.as_bytes(),
    )?;
    // Keep the two checkpoints the pointer names; remove older ones.
    let keep: Vec<&str> = std::iter::once(pointer.newest.dir.as_str())
        .chain(pointer.previous.as_ref().map(|p| p.dir.as_str()))
        .collect();
    for old in checkpoint_dirs(out)? {
        if !keep.contains(&old.as_str()) {
            let _ = std::fs::remove_dir_all(out.join(old));
        }
    }
    Ok(())
}

/// Names of the `checkpoint-*` directories of `out`.
pub fn checkpoint_dirs(out: &Path) -> Result<Vec<String>> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(Vec::new());
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| n.starts_with("checkpoint-"))
        .collect();
    names.sort();
    Ok(names)
}

pub fn read_pointer(out: &Path) -> Result<Option<CheckpointPointer>> {
    let path = out.join("checkpoint.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: not a checkpoint pointer", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Checks the files of one checkpoint against their recorded checksums.
fn verify(out: &Path, entry: &CheckpointEntry) -> Result<()> {
    let dir = out.join(&entry.dir);
    if entry.sha256.is_empty() {
        // Written by a bigbatch from before checksums: loaded unverified.
        eprintln!(
            "warning: {}: no checksums recorded (an older checkpoint); loading it unverified",
            dir.display()
        );
        return Ok(());
    }
    for (file, want) in &entry.sha256 {
        let got = sha256_file(&dir.join(file))?;
        if &got != want {
            bail!(
                "{}: SHA-256 {got} does not match the recorded {want} (the file is corrupt)",
                dir.join(file).display()
            );
        }
    }
    Ok(())
}

/// A restored checkpoint.
pub struct Restored<M> {
    pub model: M,
    pub step: u64,
    /// [`CheckpointEntry::seconds`] of the checkpoint restored.
    pub seconds: Option<f64>,
    /// [`CheckpointEntry::cpu_simd`] of the checkpoint restored.
    pub cpu_simd: Option<String>,
}

fn load_entry<M: Module>(
    out: &Path,
    entry: &CheckpointEntry,
    model: M,
    optimizer: &mut ModelOptimizer,
    device: &Device,
) -> Result<M> {
    verify(out, entry)?;
    let dir = out.join(&entry.dir);
    let model = load_model(model, &dir)?;
    let bytes = std::fs::read(dir.join(OPTIMIZER_FILE))
        .with_context(|| format!("cannot read {}", dir.display()))?;
    optimizer
        .load_state(OptimizerState::from_bytes(&bytes)?, device)
        .with_context(|| format!("resuming from {}", dir.display()))?;
    Ok(model)
}

/// Loads the newest checkpoint whose files match their checksums: the newest one, or, when it is
/// corrupt, the one before it (saying so on stderr).
pub fn restore<M: Module + Clone>(
    out: &Path,
    pointer: &CheckpointPointer,
    model: M,
    optimizer: &mut ModelOptimizer,
    device: &Device,
) -> Result<Restored<M>> {
    match load_entry(out, &pointer.newest, model.clone(), optimizer, device) {
        Ok(model) => Ok(Restored {
            model,
            step: pointer.newest.step,
            seconds: pointer.newest.seconds,
            cpu_simd: pointer.newest.cpu_simd.clone(),
        }),
        Err(newest_error) => {
            let Some(previous) = &pointer.previous else {
                return Err(newest_error.context(format!(
                    "{}: the newest checkpoint cannot be used and there is no earlier one",
                    out.display()
                )));
            };
            eprintln!(
                "warning: {newest_error:#}; resuming from the previous checkpoint {} (step {}) instead",
                previous.dir, previous.step
            );
            let model = load_entry(out, previous, model, optimizer, device).with_context(|| {
                format!(
                    "{}: neither the newest checkpoint nor the one before it can be used",
                    out.display()
                )
            })?;
            Ok(Restored {
                model,
                step: previous.step,
                seconds: previous.seconds,
                cpu_simd: previous.cpu_simd.clone(),
            })
        }
    }
}

pub fn load_model<M: Module>(model: M, dir: &Path) -> Result<M> {
    model
        .try_load_file(dir.join(MODEL_FILE))
        .map_err(|e| anyhow::anyhow!("loading the model from {}: {e:?}", dir.display()))
}

/// Refuses to start a fresh run over an earlier one's records: with `--resume` and no
/// `checkpoint.json`, or without `--resume` in a directory that already holds a run.
pub fn check_fresh_start(out: &Path, resume: bool) -> Result<()> {
    let metrics = out.join("metrics.jsonl");
    let checkpoints = checkpoint_dirs(out)?;
    if !metrics.exists() && checkpoints.is_empty() {
        return Ok(());
    }
    if resume {
        bail!(
            "{}: --resume found no checkpoint.json, but the directory holds {}; refusing to start over and discard them (a run killed before its first evaluation has nothing to resume: remove the directory or choose another --out)",
            out.display(),
            if checkpoints.is_empty() {
                "metrics.jsonl".to_string()
            } else {
                format!("{} checkpoint directories", checkpoints.len())
            }
        );
    }
    bail!(
        "{} already holds a run (metrics.jsonl or checkpoints); continue it with --resume or choose another --out",
        out.display()
    )
}

/// Removes what a run without a checkpoint left (metrics, config, partial checkpoint
/// directories), saying so; the lock file stays.
pub fn clear_run(out: &Path) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(());
    };
    let mut removed = Vec::new();
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "run.lock" {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        }
        .with_context(|| format!("cannot remove {}", path.display()))?;
        removed.push(name);
    }
    if !removed.is_empty() {
        eprintln!(
            "{}: no checkpoint to resume from; starting over (removed {})",
            out.display(),
            removed.join(", ")
        );
    }
    Ok(())
}

/// What the kept metrics say about the run so far: the last loss and the last evaluation (its
/// values, and the whole line when it is the evaluation at the resumed step itself).
#[derive(Default)]
pub struct SoFar {
    pub loss: Option<f64>,
    pub val: Option<f64>,
    pub train: Option<f64>,
    pub evaluation_at_step: Option<serde_json::Value>,
}

/// Keeps the lines of `metrics.jsonl` before `step` (the groups and setup lines and what the
/// checkpoint covers), rewritten atomically. An unparseable *last* line (a write cut short by a
/// full disk or a kill) is dropped with a message; an unparseable line elsewhere is an error.
pub fn truncate_metrics(path: &Path, step: u64) -> Result<SoFar> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut kept = String::new();
    let mut so_far = SoFar::default();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) if i + 1 == lines.len() => {
                eprintln!(
                    "warning: {}: dropping its torn last line {} ({e})",
                    path.display(),
                    i + 1
                );
                continue;
            }
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1));
            }
        };
        let keep = match v["step"].as_u64() {
            None => true,
            // Per-step lines carry the step before the update; evaluations the step after it.
            Some(s) if v.get("val_accuracy").is_some() => s <= step,
            Some(s) => s < step,
        };
        if keep {
            kept.push_str(line);
            kept.push('\n');
            if let Some(l) = v["loss"].as_f64() {
                so_far.loss = Some(l);
            }
            if let (Some(val), Some(train)) =
                (v["val_accuracy"].as_f64(), v["train_accuracy"].as_f64())
            {
                so_far.val = Some(val);
                so_far.train = Some(train);
            }
            if v["step"].as_u64() == Some(step) && v.get("val_accuracy").is_some() {
                so_far.evaluation_at_step = Some(v);
            }
        }
    }
    write_atomic(path, kept.as_bytes())?;
    Ok(so_far)
}

/// The wall seconds of a finished run in `run_dir` whose summary is `summary`: the summary's
/// (which since checkpoints record the time covers every process), plus, for a run last resumed
/// from a checkpoint that did not record it (its last `resumed_at` line in `metrics.jsonl` has no
/// `seconds_before`), its earlier processes' training steps from their per-step rates (the
/// batch over `examples_per_second` of each step line before the resume; their evaluations are
/// not counted, so this is a lower bound).
pub fn run_seconds(run_dir: &Path, summary: &RunSummary) -> Result<f64> {
    let path = run_dir.join("metrics.jsonl");
    if !path.exists() {
        return Ok(summary.seconds);
    }
    let lines = read_jsonl(&path)?;
    let Some(resume) = lines.iter().rposition(|l| l.get("resumed_at").is_some()) else {
        return Ok(summary.seconds);
    };
    if lines[resume].get("seconds_before").is_some() {
        return Ok(summary.seconds);
    }
    let mut batch = summary.batch_size as f64;
    let mut earlier = 0.0;
    for line in &lines[..resume] {
        if let Some(b) = line["setup"]["batch_size"].as_f64() {
            batch = b;
        }
        if let Some(rate) = line["examples_per_second"].as_f64().filter(|r| *r > 0.0) {
            earlier += batch / rate;
        }
    }
    Ok(summary.seconds + earlier)
}

/// The lines of a JSON-lines file; an unparseable *last* line (a write cut short) is dropped with
/// a message, an unparseable line elsewhere is an error naming the file and line.
pub fn read_jsonl(path: &Path) -> Result<Vec<serde_json::Value>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(e) if i + 1 == lines.len() => eprintln!(
                "warning: {}: ignoring its torn last line {} ({e})",
                path.display(),
                i + 1
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("{}: line {} is not JSON", path.display(), i + 1));
            }
        }
    }
    Ok(out)
}

/// One line of `diagnostics.jsonl`: the 0-based step whose update was diagnosed (the step of the
/// loss line it follows in `metrics.jsonl`) and what the update did.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct DiagnosticsLine {
    pub step: u64,
    #[serde(flatten)]
    pub diagnostics: StepDiagnostics,
}

/// The diagnosed steps of a run directory (`diagnostics.jsonl`), in file order; none when the
/// run has no such file. Each line is validated: a line that is not a diagnostics record is an
/// error naming the file, the line and what was expected.
pub fn read_diagnostics(run_dir: &Path) -> Result<Vec<(u64, StepDiagnostics)>> {
    let path = run_dir.join(DIAGNOSTICS_FILE);
    if !path.exists() {
        return Ok(Vec::new());
    }
    read_jsonl(&path)?
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            let line: DiagnosticsLine = serde_json::from_value(v).with_context(|| {
                format!(
                    "{}: line {} is not a diagnostics record (expected step, lr, global_grad_norm, clipping and tensors)",
                    path.display(),
                    i + 1
                )
            })?;
            Ok((line.step, line.diagnostics))
        })
        .collect()
}

/// The per-tensor diagnostics of a run directory.
pub const DIAGNOSTICS_FILE: &str = "diagnostics.jsonl";

/// Appends JSON lines, flushed one by one so a crash loses at most the line being written.
pub struct Metrics {
    file: std::fs::File,
}

impl Metrics {
    pub fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { file })
    }

    pub fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file })
    }

    pub fn write(&mut self, line: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A summary of 10 s; step lines at 2 and 4 examples per second with batch 4 take 2 s and
    /// 1 s, so a resume that did not carry the time adds 3 s; one that did adds nothing.
    #[test]
    fn run_seconds_adds_the_steps_of_processes_a_resume_lost() {
        let dir = std::env::temp_dir().join(format!("bigbatch-run-seconds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let summary: RunSummary = serde_json::from_value(serde_json::json!({
            "status": "completed", "steps": 3, "reason": null, "final_val_accuracy": null,
            "final_train_accuracy": null, "final_loss": null, "seconds": 10.0, "batch_size": 4,
        }))
        .unwrap();
        let before = r#"{"setup":{"batch_size":4}}
{"examples_per_second":2.0,"loss":1.0,"step":0}
{"val_accuracy":0.5,"train_accuracy":0.5,"step":1}
{"examples_per_second":4.0,"loss":1.0,"step":1}
"#;
        let after = "{\"examples_per_second\":1.0,\"loss\":1.0,\"step\":2}\n";
        let metrics = dir.join("metrics.jsonl");
        let cases = [
            (String::new(), 10.0),
            (format!("{before}{after}"), 10.0),
            (
                format!("{before}{{\"resumed_at\":2,\"setup\":{{\"batch_size\":4}}}}\n{after}"),
                13.0,
            ),
            (
                format!(
                    "{before}{{\"resumed_at\":2,\"seconds_before\":7.5,\"setup\":{{\"batch_size\":4}}}}\n{after}"
                ),
                10.0,
            ),
        ];
        for (text, expected) in cases {
            if text.is_empty() {
                let _ = std::fs::remove_file(&metrics);
            } else {
                std::fs::write(&metrics, &text).unwrap();
            }
            let got = run_seconds(&dir, &summary).unwrap();
            assert!(
                (got - expected).abs() < 1e-12,
                "{text}: {got} != {expected}"
            );
        }
    }
}
