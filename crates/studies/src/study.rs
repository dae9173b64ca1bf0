//! Running a tuning study: the study file, one trial per index, the study directory, reruns over
//! seeds and the summary statistics (`bigbatch study ...`, `bigbatch report`).
//!
//! Study directory layout (every `.json` written atomically, after its run finished):
//!
//! ```text
//! DIR/trials/00007/        run directory of trial 7 (config.ron, metrics.jsonl, summary.json)
//! DIR/trials/00007.json    its result: point, status, metric (present = trial done)
//! DIR/reruns/seed-003/     the best point rerun with train.seed = 3
//! DIR/reruns/seed-003.json
//! ```
//!
//! A run directory without its `.json` is a trial that was running or was killed; the next
//! `study run` / `study trial` continues it from its newest checkpoint (bit-identically to an
//! uninterrupted run) or starts it over when it has none.

use anyhow::{Context, Result, bail};
use bigbatch_core::config::{from_json_checked, load_ron, to_ron, write_atomic};
use bigbatch_core::study::{SearchSpace, Spread, apply_point, spread, trial_point, validate_space};
use bigbatch_engine::backend::Backend;
use bigbatch_engine::run_config::RunConfig;
use bigbatch_engine::train::{self, RunOptions, RunSummary, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a study selects on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Final validation accuracy (maximised).
    FinalValAccuracy,
    /// Final training accuracy (maximised).
    FinalTrainAccuracy,
}

impl Metric {
    pub fn of(self, s: &RunSummary) -> Option<f64> {
        match self {
            Metric::FinalValAccuracy => s.final_val_accuracy,
            Metric::FinalTrainAccuracy => s.final_train_accuracy,
        }
    }
}

/// A study file (RON).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StudyFile {
    /// Run-config files composed in order, relative to the study file. Empty when `best_of`
    /// gives the base.
    #[serde(default)]
    pub base: Vec<PathBuf>,
    /// Another study file (relative to this one) whose best trial's config is this study's base:
    /// "set one hyperparameter without retuning the others" (the paper's Table 2). Its results
    /// are read from the directory beside this study's (`<parent of --dir>/<its file name>`).
    #[serde(default)]
    pub best_of: Option<PathBuf>,
    /// Dotted run-config path -> `Log(min, max)`, `Linear(min, max)`, `Discrete([...])`,
    /// `Fixed(v)`.
    pub search: SearchSpace,
    /// Seeds the quasi-random sequence (not the runs: those keep the base `train.seed`).
    pub seed: u64,
    /// Selection metric.
    pub metric: Metric,
    /// A target value of the metric (e.g. 0.759 for ResNet-50): reports give the fraction of
    /// seeds reaching it and the steps to reach it.
    #[serde(default)]
    pub target: Option<f64>,
    /// The most trials attempted in total (diverged ones included); default: 3 x the trials asked.
    #[serde(default)]
    pub max_attempts: Option<u64>,
    /// The workload for performance profiles (default: the file name of the first `base` file,
    /// e.g. `resnet`).
    #[serde(default)]
    pub workload: Option<String>,
    /// The submission for performance profiles (default: the default group's optimizer name).
    #[serde(default)]
    pub submission: Option<String>,
}

/// A loaded study: its file, where it came from, and its base config.
pub struct Study {
    pub path: PathBuf,
    pub file: StudyFile,
    pub base: RunConfig,
    pub dir: PathBuf,
}

/// The result file of one trial or rerun.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrialResult {
    pub index: u64,
    /// The searched values (path -> value).
    pub point: BTreeMap<String, Value>,
    pub seed: u64,
    pub metric: Option<f64>,
    pub summary: RunSummary,
}

impl TrialResult {
    pub fn feasible(&self) -> bool {
        self.summary.status == Status::Completed && self.metric.is_some()
    }
}

impl Study {
    /// Reads and checks a study file: the search space, the base config and that every searched
    /// path exists (by composing trial 0).
    pub fn load(path: &Path, dir: Option<PathBuf>) -> Result<Self> {
        Self::load_with(path, dir, false)
    }

    /// [`Study::load`]; the study directory must hold trials of the same study (search space,
    /// seed and base configs, compared by fingerprint). With `force`, trials of another study
    /// found there are moved aside to `superseded-<their fingerprint>/` (said on stderr).
    pub fn load_with(path: &Path, dir: Option<PathBuf>, force: bool) -> Result<Self> {
        let file: StudyFile = load_ron(path)?;
        let origin = path.display().to_string();
        validate_space(&file.search, &origin)?;
        let here = path.parent().unwrap_or(Path::new("."));
        let dir = dir
            .unwrap_or_else(|| PathBuf::from("studies").join(path.file_stem().unwrap_or_default()));
        let base = match (&file.best_of, file.base.is_empty()) {
            (None, true) => bail!("{origin}: base: expected at least one run-config file"),
            (Some(_), false) => bail!(
                "{origin}: base and best_of: expected one of them (best_of takes its base from the other study's best trial)"
            ),
            (None, false) => {
                let base_files: Vec<PathBuf> = file.base.iter().map(|f| here.join(f)).collect();
                RunConfig::compose(&base_files, &[]).with_context(|| format!("{origin}: base"))?
            }
            (Some(other), true) => best_config_of(&here.join(other), &dir)
                .with_context(|| format!("{origin}: best_of"))?,
        };
        let study = Study {
            path: path.to_path_buf(),
            file,
            base,
            dir,
        };
        study
            .trial_config(0)
            .with_context(|| format!("{origin}: search"))?;
        study.check_fingerprint(force)?;
        Ok(study)
    }

    /// SHA-256 over what decides every trial: the search space, the study seed and the composed
    /// base config.
    pub fn fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let what = serde_json::json!({
            "search": serde_json::to_value(&self.file.search)?,
            "seed": self.file.seed,
            "base": serde_json::to_value(&self.base)?,
        });
        Ok(format!(
            "{:x}",
            Sha256::digest(serde_json::to_string(&what)?.as_bytes())
        ))
    }

    fn fingerprint_path(&self) -> PathBuf {
        self.dir.join("fingerprint.txt")
    }

    fn check_fingerprint(&self, force: bool) -> Result<()> {
        let path = self.fingerprint_path();
        let Ok(recorded) = std::fs::read_to_string(&path) else {
            return Ok(());
        };
        let (recorded, ours) = (recorded.trim().to_string(), self.fingerprint()?);
        if recorded == ours {
            return Ok(());
        }
        if !force {
            bail!(
                "{}: holds trials of a different study (fingerprint {} in {}; {} has {}): its search space, seed or base configs changed. Use another --dir, or --force to move the old trials aside",
                self.dir.display(),
                &recorded[..recorded.len().min(12)],
                path.display(),
                self.path.display(),
                &ours[..12]
            );
        }
        let aside = self.dir.join(format!(
            "superseded-{}",
            &recorded[..recorded.len().min(12)]
        ));
        std::fs::create_dir_all(&aside)
            .with_context(|| format!("cannot create {}", aside.display()))?;
        for name in ["trials", "reruns", "study.ron", "fingerprint.txt"] {
            let from = self.dir.join(name);
            if from.exists() {
                std::fs::rename(&from, aside.join(name))
                    .with_context(|| format!("cannot move {} aside", from.display()))?;
            }
        }
        eprintln!(
            "--force: moved the trials of the earlier study to {}",
            aside.display()
        );
        Ok(())
    }

    /// Records the fingerprint before the first trial writes anything.
    fn record_fingerprint(&self) -> Result<()> {
        let path = self.fingerprint_path();
        if !path.exists() {
            write_atomic(&path, format!("{}\n", self.fingerprint()?).as_bytes())?;
        }
        Ok(())
    }

    /// The config of trial `index`: the base with the point applied, checked like a config file.
    pub fn trial_config(&self, index: u64) -> Result<(RunConfig, BTreeMap<String, Value>)> {
        let point = trial_point(&self.file.search, self.file.seed, index);
        let mut json = serde_json::to_value(&self.base)?;
        apply_point(&mut json, &point)?;
        let config: RunConfig = from_json_checked(json, "search point")?;
        config.validate()?;
        Ok((config, point))
    }

    fn trial_dir(&self, index: u64) -> PathBuf {
        self.dir.join("trials").join(format!("{index:05}"))
    }

    /// The run directory of the rerun with `train.seed = seed`.
    pub fn rerun_dir(&self, seed: u64) -> PathBuf {
        self.dir.join("reruns").join(format!("seed-{seed:03}"))
    }

    fn result_path(run_dir: &Path) -> PathBuf {
        run_dir.with_extension("json")
    }

    /// Finished trials by index.
    pub fn trials(&self) -> Result<BTreeMap<u64, TrialResult>> {
        read_results(&self.dir.join("trials"))
    }

    /// Finished reruns by seed.
    pub fn reruns(&self) -> Result<BTreeMap<u64, TrialResult>> {
        Ok(read_results(&self.dir.join("reruns"))?
            .into_values()
            .map(|r| (r.seed, r))
            .collect())
    }

    /// Started but unfinished trials (running, or killed).
    pub fn unfinished(&self) -> Vec<u64> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("trials")) else {
            return Vec::new();
        };
        let mut out: Vec<u64> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.path().is_dir() && !Self::result_path(&e.path()).exists())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        out.sort();
        out
    }

    /// Runs trial `index` unless its result exists; returns the result.
    pub fn run_trial(&self, index: u64, backend: Backend) -> Result<TrialResult> {
        self.record_fingerprint()?;
        let run_dir = self.trial_dir(index);
        let (config, point) = self.trial_config(index)?;
        self.run_config(index, point, config, &run_dir, backend)
    }

    fn run_config(
        &self,
        index: u64,
        point: BTreeMap<String, Value>,
        config: RunConfig,
        run_dir: &Path,
        backend: Backend,
    ) -> Result<TrialResult> {
        let result_path = Self::result_path(run_dir);
        if let Some(done) = read_result(&result_path)? {
            return Ok(done);
        }
        // An unfinished run (a killed worker) continues from its newest checkpoint, which gives
        // exactly the result of an uninterrupted run; without a checkpoint it starts over.
        let options = RunOptions {
            out_dir: run_dir.to_path_buf(),
            progress: false,
            resume: true,
            restart_without_checkpoint: true,
        };
        let summary = train::run(&config, backend, &options)?;
        let result = TrialResult {
            index,
            point,
            seed: config.train.seed,
            metric: self.file.metric.of(&summary),
            summary,
        };
        write_atomic(
            &result_path,
            serde_json::to_string_pretty(&result)?.as_bytes(),
        )?;
        Ok(result)
    }

    /// Runs trials (lowest unfinished index first) until `trials` feasible ones exist, on
    /// `workers` threads; diverged trials are kept and do not count. Stops with an error when the
    /// attempt cap is reached first.
    pub fn run(&self, trials: u64, workers: usize, backend: Backend) -> Result<()> {
        self.record_fingerprint()?;
        write_atomic(&self.dir.join("study.ron"), to_ron(&self.file)?.as_bytes())?;
        let max_attempts = self.file.max_attempts.unwrap_or(3 * trials);
        let done = self.trials()?;
        struct Shared {
            next: u64,
            feasible: u64,
            in_flight: u64,
            attempted: u64,
            error: Option<anyhow::Error>,
        }
        let shared = Mutex::new(Shared {
            next: 0,
            feasible: done.values().filter(|r| r.feasible()).count() as u64,
            in_flight: 0,
            attempted: done.len() as u64,
            error: None,
        });
        let claim = || -> Option<u64> {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            if s.error.is_some() || s.feasible + s.in_flight >= trials {
                return None;
            }
            while done.contains_key(&s.next) {
                s.next += 1;
            }
            if s.attempted >= max_attempts {
                return None;
            }
            let index = s.next;
            s.next += 1;
            s.in_flight += 1;
            s.attempted += 1;
            Some(index)
        };
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    while let Some(index) = claim() {
                        let outcome = self.run_trial(index, backend);
                        let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
                        s.in_flight -= 1;
                        match outcome {
                            Ok(r) => {
                                eprintln!("{}", describe_result(&r));
                                if r.feasible() {
                                    s.feasible += 1;
                                }
                            }
                            Err(e) => {
                                s.error = Some(e.context(format!("trial {index}")));
                            }
                        }
                    }
                });
            }
        });
        let s = shared.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = s.error {
            return Err(e);
        }
        if s.feasible < trials {
            bail!(
                "{}: only {} feasible trials after {} attempts (max_attempts {max_attempts}); \
                 raise max_attempts or narrow the search space",
                self.path.display(),
                s.feasible,
                s.attempted
            );
        }
        Ok(())
    }

    /// The workload name used by performance profiles.
    pub fn workload(&self) -> String {
        self.file.workload.clone().unwrap_or_else(|| {
            self.file
                .base
                .first()
                .or(self.file.best_of.as_ref())
                .map(|p| p.as_path())
                .unwrap_or(Path::new(""))
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
    }

    /// The submission name used by performance profiles.
    pub fn submission(&self) -> String {
        self.file
            .submission
            .clone()
            .unwrap_or_else(|| self.base.optimizer.default.optimizer.name.clone())
    }

    /// The best finished feasible trial by the study metric (ties: the lower index).
    pub fn best(&self) -> Result<Option<TrialResult>> {
        Ok(self
            .trials()?
            .into_values()
            .filter(TrialResult::feasible)
            .fold(None, |best: Option<TrialResult>, r| match &best {
                Some(b) if b.metric >= r.metric => best,
                _ => Some(r),
            }))
    }

    /// Reruns the best trial's point with `train.seed` = 0, 1, ..., `seeds - 1`, on `workers`
    /// threads (finished seeds are kept, killed ones continue). Results by seed.
    pub fn rerun(&self, seeds: u64, workers: usize, backend: Backend) -> Result<Vec<TrialResult>> {
        let Some(best) = self.best()? else {
            bail!(
                "{}: no feasible trial finished yet; run `bigbatch study run` first",
                self.path.display()
            );
        };
        self.record_fingerprint()?;
        let (config, point) = self.trial_config(best.index)?;
        let next = Mutex::new(0u64);
        let results = Mutex::new(BTreeMap::new());
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    loop {
                        let seed = {
                            let mut n = next.lock().unwrap_or_else(|e| e.into_inner());
                            let seed = *n;
                            *n += 1;
                            seed
                        };
                        if seed >= seeds {
                            return;
                        }
                        let mut config = config.clone();
                        config.train.seed = seed;
                        let dir = self.rerun_dir(seed);
                        let r = self.run_config(best.index, point.clone(), config, &dir, backend);
                        if let Ok(r) = &r {
                            eprintln!("seed {seed}: {}", describe_result(r));
                        }
                        results
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(seed, r.with_context(|| format!("rerun with seed {seed}")));
                    }
                });
            }
        });
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_values()
            .collect()
    }
}

impl Study {
    /// What `bigbatch study status` prints: finished, feasible, diverged and unfinished trials,
    /// and the best point so far.
    pub fn status_text(&self) -> Result<String> {
        use std::fmt::Write;
        let trials = self.trials()?;
        let feasible = trials.values().filter(|r| r.feasible()).count();
        let unfinished = self.unfinished();
        let mut out = String::new();
        writeln!(
            out,
            "study {}  (directory {})",
            self.path.display(),
            self.dir.display()
        )?;
        writeln!(
            out,
            "finished: {}  feasible: {feasible}  diverged: {}  unfinished (running or killed): {}{}",
            trials.len(),
            trials.len() - feasible,
            unfinished.len(),
            if unfinished.is_empty() {
                String::new()
            } else {
                format!(" {unfinished:?}")
            }
        )?;
        match self.best()? {
            Some(b) => {
                writeln!(out, "best: {}", describe_result(&b))?;
                for (path, value) in &b.point {
                    writeln!(out, "    {path} = {value}")?;
                }
            }
            None => writeln!(out, "best: none yet")?,
        }
        Ok(out)
    }
}

/// The config of the best trial of the study file `path`, whose directory lies beside `dir`
/// (`<parent of dir>/<file name of path>`).
fn best_config_of(path: &Path, dir: &Path) -> Result<RunConfig> {
    let other_dir = dir
        .parent()
        .unwrap_or(Path::new("."))
        .join(path.file_stem().unwrap_or_default());
    let other = Study::load(path, Some(other_dir.clone()))?;
    let Some(best) = other.best()? else {
        bail!(
            "{}: no feasible trial of {} has finished in {}; run that study first",
            path.display(),
            path.display(),
            other_dir.display()
        );
    };
    Ok(other.trial_config(best.index)?.0)
}

fn read_result(path: &Path) -> Result<Option<TrialResult>> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            Ok(Some(serde_json::from_str(&text).with_context(|| {
                format!("{}: not a trial result", path.display())
            })?))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn read_results(dir: &Path) -> Result<BTreeMap<u64, TrialResult>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Some(r) = read_result(&path)?
        {
            // `trials/00007.json` -> 7, `reruns/seed-003.json` -> 3.
            let key = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.trim_start_matches("seed-").parse().ok())
                .unwrap_or(r.index);
            out.insert(key, r);
        }
    }
    Ok(out)
}

pub fn describe_result(r: &TrialResult) -> String {
    match r.summary.status {
        Status::Completed => format!(
            "trial {}: metric {}",
            r.index,
            r.metric.map_or("-".into(), |m| format!("{m:.4}"))
        ),
        Status::Diverged => format!(
            "trial {}: diverged at step {} ({})",
            r.index,
            r.summary.steps,
            r.summary.reason.as_deref().unwrap_or("non-finite loss")
        ),
    }
}

/// Statistics of a rerun set (Table 2/3/5 of the paper).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RerunStats {
    pub seeds: usize,
    pub diverged: usize,
    pub val_accuracy: Option<Spread>,
    pub train_accuracy: Option<Spread>,
    /// Fraction of seeds whose final validation accuracy reaches the study target.
    pub fraction_reaching_target: Option<f64>,
    /// Median over seeds of the first evaluated step whose validation accuracy reaches the target
    /// (seeds that never reach it are left out; `None` if none does).
    pub median_steps_to_target: Option<f64>,
}

/// Validation accuracy at every evaluation step of a run directory's `metrics.jsonl`.
pub fn val_curve(run_dir: &Path) -> Result<Vec<(u64, f64)>> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}: not JSON lines", path.display()))?;
        if let (Some(step), Some(acc)) = (v["step"].as_u64(), v["val_accuracy"].as_f64()) {
            out.push((step, acc));
        }
    }
    Ok(out)
}

/// The first evaluation step of a run whose validation accuracy is at least `target`.
pub fn steps_to_target(run_dir: &Path, target: f64) -> Result<Option<u64>> {
    Ok(val_curve(run_dir)?
        .into_iter()
        .find(|&(_, acc)| acc >= target)
        .map(|(step, _)| step))
}

impl Study {
    pub fn rerun_stats(&self) -> Result<RerunStats> {
        let reruns = self.reruns()?;
        let completed: Vec<&TrialResult> = reruns.values().filter(|r| r.feasible()).collect();
        let val: Vec<f64> = completed
            .iter()
            .filter_map(|r| r.summary.final_val_accuracy)
            .collect();
        let train: Vec<f64> = completed
            .iter()
            .filter_map(|r| r.summary.final_train_accuracy)
            .collect();
        let (fraction, steps) = match self.file.target {
            Some(t) if !reruns.is_empty() => {
                let reached = completed
                    .iter()
                    .filter(|r| self.file.metric.of(&r.summary).is_some_and(|m| m >= t))
                    .count();
                let mut steps = Vec::new();
                for r in &completed {
                    if let Some(s) = steps_to_target(&self.rerun_dir(r.seed), t)? {
                        steps.push(s as f64);
                    }
                }
                (
                    Some(reached as f64 / reruns.len() as f64),
                    spread(&steps)?.map(|s| s.median),
                )
            }
            _ => (None, None),
        };
        Ok(RerunStats {
            seeds: reruns.len(),
            diverged: reruns.len() - completed.len(),
            val_accuracy: spread(&val)?,
            train_accuracy: spread(&train)?,
            fraction_reaching_target: fraction,
            median_steps_to_target: steps,
        })
    }
}
