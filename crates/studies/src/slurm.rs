//! Studies on a Slurm cluster: one array task per trial index (`bigbatch study slurm`), and the
//! rerun and report jobs chained after the array with `afterok` dependencies (`--submit`).
//!
//! The scripts work from any directory: every path in them is absolute and shell-quoted (the
//! `#SBATCH --output` path too). A task runs `bigbatch study trial`, which skips a finished
//! trial, continues a killed or interrupted one from its checkpoint, and skips one another
//! process is running. Slurm sends SIGTERM `signal_seconds` before the time limit (and
//! `scancel --signal=TERM` does at once); the trial then checkpoints at the step in flight and
//! exits with [`EXIT_INTERRUPTED`], and the task requeues itself, appending to the same log.

use crate::study::Study;
use anyhow::{Context, Result, bail};
use bigbatch_engine::interrupt::EXIT_INTERRUPTED;
use std::path::{Path, PathBuf};

/// What `study slurm` writes and submits.
#[derive(Clone, Debug)]
pub struct SlurmOptions {
    /// `--backend` of every task (`cpu`, `wgpu`, `cuda`).
    pub backend: String,
    /// `--devices` of every task.
    pub devices: Option<Vec<usize>>,
    /// Extra `#SBATCH` arguments (e.g. `--gres=gpu:1`), one per line.
    pub sbatch: Vec<String>,
    /// The bigbatch binary on the cluster.
    pub binary: PathBuf,
    /// Seconds before the time limit at which Slurm sends SIGTERM (`--signal=B:TERM@N`).
    pub signal_seconds: u64,
}

/// `'text'` for the shell, with `'` written as `'\''`.
pub fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// `[0, 1, 2, 5, 7, 8]` -> `0-2,5,7-8` (an `--array` list).
pub fn array_ranges(indices: &[u64]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let start = indices[i];
        let mut end = start;
        while i + 1 < indices.len() && indices[i + 1] == end + 1 {
            i += 1;
            end = indices[i];
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    parts.join(",")
}

/// An absolute form of `path` (made absolute against the current directory; `..` kept).
fn absolute(path: &Path) -> Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("cannot make {} absolute", path.display()))
}

/// `0,1` for `--devices`.
fn device_list(devices: &[usize]) -> String {
    let list: Vec<String> = devices.iter().map(|d| d.to_string()).collect();
    list.join(",")
}

/// What every script of a study starts from: its directory and the binary, absolute; the job
/// name's stem; the extra `#SBATCH` lines.
struct ScriptParts {
    dir: PathBuf,
    binary: PathBuf,
    job: String,
    extra: String,
}

impl Study {
    /// The attempt budget: `requested` (`--attempts`), else the study's `max_attempts`;
    /// refused when zero or above `max_attempts`.
    pub fn slurm_attempts(&self, requested: Option<u64>) -> Result<u64> {
        let cap = self.file.max_attempts;
        let attempts = match (requested, cap) {
            (Some(n), _) => n,
            (None, Some(cap)) => cap,
            (None, None) => bail!(
                "{}: --attempts: how many trial indices to submit (the study sets no max_attempts)",
                self.path.display()
            ),
        };
        if attempts == 0 {
            bail!("--attempts 0: expected at least one trial index");
        }
        if let Some(cap) = cap
            && attempts > cap
        {
            bail!(
                "--attempts {attempts}: above the study's max_attempts {cap} ({}); a later `study run` would refuse the extra attempts",
                self.path.display()
            );
        }
        Ok(attempts)
    }

    /// Indices `0 .. attempts` without a finished result (what a submission still has to run).
    pub fn missing_indices(&self, attempts: u64) -> Result<Vec<u64>> {
        let done = self.trials()?;
        Ok((0..attempts).filter(|i| !done.contains_key(i)).collect())
    }

    fn script_parts(&self, o: &SlurmOptions) -> Result<ScriptParts> {
        Ok(ScriptParts {
            dir: absolute(&self.dir)?,
            binary: absolute(&o.binary)?,
            job: format!(
                "bigbatch-{}",
                self.path.file_stem().unwrap_or_default().to_string_lossy()
            ),
            extra: o.sbatch.iter().map(|l| format!("#SBATCH {l}\n")).collect(),
        })
    }

    /// The `sbatch --array` script over `indices` (see the module documentation).
    pub fn slurm_script(&self, indices: &[u64], o: &SlurmOptions) -> Result<String> {
        if indices.is_empty() {
            bail!("{}: no trial index left to run", self.path.display());
        }
        let ScriptParts {
            dir,
            binary,
            job,
            extra,
        } = self.script_parts(o)?;
        let study = absolute(&self.path)?;
        let mut args = format!(
            "study trial {} --dir {} --index \"$SLURM_ARRAY_TASK_ID\" --backend {}",
            shell_quote(&study.display().to_string()),
            shell_quote(&dir.display().to_string()),
            shell_quote(&o.backend)
        );
        if let Some(devices) = &o.devices {
            args += &format!(" --devices {}", device_list(devices));
        }
        Ok(format!(
            "#!/bin/bash\n\
             # Generated by `bigbatch study slurm`: one array task per trial index still missing\n\
             # when it was written. Finished trials are skipped, killed or interrupted ones continue\n\
             # from their checkpoints, trials running elsewhere are skipped; results meet in\n\
             # {dir_text}.\n\
             #SBATCH --job-name={job}\n\
             #SBATCH --array={array}\n\
             #SBATCH --output={log}\n\
             #SBATCH --open-mode=append\n\
             #SBATCH --signal=B:TERM@{signal}\n\
             #SBATCH --requeue\n\
             {extra}\
             set -uo pipefail\n\
             # Thread pools follow the allocation: bigbatch reads SLURM_CPUS_PER_TASK.\n\
             {binary} {args} &\n\
             child=$!\n\
             # SIGTERM (time limit, scancel --signal=TERM) goes to the trial, which checkpoints at\n\
             # the step in flight and exits with {code}.\n\
             trap 'kill -TERM \"$child\" 2>/dev/null' TERM INT\n\
             wait \"$child\"\n\
             status=$?\n\
             while kill -0 \"$child\" 2>/dev/null; do\n\
             \x20   wait \"$child\"\n\
             \x20   status=$?\n\
             done\n\
             if [ \"$status\" -eq {code} ]; then\n\
             \x20   echo \"bigbatch: trial $SLURM_ARRAY_TASK_ID interrupted (checkpoint written); requeueing\"\n\
             \x20   scontrol requeue \"${{SLURM_ARRAY_JOB_ID}}_${{SLURM_ARRAY_TASK_ID}}\"\n\
             fi\n\
             exit \"$status\"\n",
            dir_text = dir.display(),
            job = shell_quote(&job),
            array = array_ranges(indices),
            log = shell_quote(&dir.join("slurm-%A_%a.log").display().to_string()),
            signal = o.signal_seconds,
            binary = shell_quote(&binary.display().to_string()),
            code = EXIT_INTERRUPTED,
        ))
    }

    /// The chained rerun job: `bigbatch study rerun` of the best point over `seeds` fresh
    /// seeds, with the array's backend and devices.
    pub fn slurm_rerun_script(&self, seeds: u64, o: &SlurmOptions) -> Result<String> {
        let mut command = vec![
            "study".to_string(),
            "rerun".into(),
            absolute(&self.path)?.display().to_string(),
            "--dir".into(),
            absolute(&self.dir)?.display().to_string(),
            "--seeds".into(),
            seeds.to_string(),
            "--backend".into(),
            o.backend.clone(),
        ];
        if let Some(devices) = &o.devices {
            command.extend(["--devices".into(), device_list(devices)]);
        }
        self.slurm_step_script("rerun", &command, o)
    }

    /// The chained report job: `bigbatch report` of the study into `out`.
    pub fn slurm_report_script(&self, out: &Path, o: &SlurmOptions) -> Result<String> {
        let command = vec![
            "report".to_string(),
            absolute(&self.path)?.display().to_string(),
            "--dir".into(),
            absolute(&self.dir)?.display().to_string(),
            "--out".into(),
            absolute(out)?.display().to_string(),
        ];
        self.slurm_step_script("report", &command, o)
    }

    /// A one-task script running `bigbatch <command>` (the chained rerun or report job).
    fn slurm_step_script(
        &self,
        what: &str,
        command: &[String],
        o: &SlurmOptions,
    ) -> Result<String> {
        let ScriptParts {
            dir,
            binary,
            job,
            extra,
        } = self.script_parts(o)?;
        let args: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
        Ok(format!(
            "#!/bin/bash\n\
             # Generated by `bigbatch study slurm --submit`: the {what} of {study}.\n\
             #SBATCH --job-name={job}\n\
             #SBATCH --output={log}\n\
             #SBATCH --open-mode=append\n\
             {extra}\
             set -euo pipefail\n\
             exec {binary} {args}\n",
            study = self.path.display(),
            job = shell_quote(&format!("{job}-{what}")),
            log = shell_quote(
                &dir.join(format!("slurm-{what}-%j.log"))
                    .display()
                    .to_string()
            ),
            binary = shell_quote(&binary.display().to_string()),
            args = args.join(" "),
        ))
    }
}

/// `sbatch --parsable [--dependency=afterok:<after>] <script>`: the job id.
pub fn submit(script: &Path, after: Option<&str>) -> Result<String> {
    let mut cmd = std::process::Command::new("sbatch");
    cmd.arg("--parsable");
    if let Some(id) = after {
        cmd.arg(format!("--dependency=afterok:{id}"));
    }
    cmd.arg(script);
    let out = cmd
        .output()
        .with_context(|| "cannot run sbatch (is Slurm's client installed and on PATH?)")?;
    if !out.status.success() {
        bail!(
            "sbatch {} failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    // `--parsable` prints `<id>` or `<id>;<cluster>`.
    let id = text
        .trim()
        .split(';')
        .next()
        .unwrap_or_default()
        .to_string();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "sbatch {}: expected a job id, got {text:?}",
            script.display()
        );
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_quotes() {
        assert_eq!(array_ranges(&[0, 1, 2, 5, 7, 8]), "0-2,5,7-8");
        assert_eq!(array_ranges(&[4]), "4");
        assert_eq!(shell_quote("a b'c"), r"'a b'\''c'");
    }
}
