//! Running a tuning study: the study file, one trial per index, the study directory, reruns over
//! seeds and the summary statistics (`bigbatch study ...`, `bigbatch report`).
//!
//! Study directory layout (every `.json` written atomically, after its run finished):
//!
//! ```text
//! DIR/trials/00007/        run directory of trial 7 (config.ron, metrics.jsonl, summary.json)
//! DIR/trials/00007.json    its result: point, status, metric (present = trial done)
//! DIR/reruns/seed-1000/    the best point rerun with train.seed = 1000 (a fresh seed)
//! DIR/reruns/seed-1000.json   its result: the trial it reran (index and point), seed, metric
//! DIR/superseded-reruns/trial-00003/   reruns of an earlier best point, moved aside
//! ```
//!
//! Reruns use fresh seeds, [`FRESH_SEEDS`] upward, never one a trial of the search used: the
//! selected trial is not a rerun of itself. Statistics count only the fresh reruns of the current
//! best point ([`Study::fresh_reruns`]).
//!
//! A run directory without its `.json` is a trial that was running or was killed; the next
//! `study run` / `study trial` continues it from its newest checkpoint (bit-identically to an
//! uninterrupted run) or starts it over when it has none.

use anyhow::{Context, Result, bail};
use bigbatch_core::config::{from_json_checked, load_ron, to_ron, write_atomic};
use bigbatch_core::study::{
    SearchSpace, Spread, apply_point, near_edges, spread, trial_point, validate_space,
};
use bigbatch_engine::backend::Backend;
use bigbatch_engine::run_config::RunConfig;
use bigbatch_engine::run_dir::{RunInUse, RunLock, run_seconds};
use bigbatch_engine::train::{self, RunOptions, RunSummary, Status};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The first seed of the reruns; seeds below it belong to the search (each trial keeps its base
/// config's `train.seed`).
pub const FRESH_SEEDS: u64 = 1000;

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
    /// The submission for performance profiles (default: the study file's name).
    #[serde(default)]
    pub submission: Option<String>,
    /// A second stage of the search (the paper's Appendix C.3: an "Initial Range" searched first,
    /// then a refined "Final Range"): after `initial_trials` feasible trials, later trials draw
    /// from ranges narrowed around the best of them ([`bigbatch_core::study::refine_space`]).
    /// The best point is chosen among the trials of both stages.
    #[serde(default)]
    pub refine: Option<Refine>,
}

/// The second stage of a two-stage search.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Refine {
    /// Feasible trials over the study's `search` (the initial ranges) before the second stage.
    pub initial_trials: u64,
    /// Each final range's width as a fraction of its initial range in the mapped scale (e.g.
    /// 0.5), centred on the best initial trial's value.
    pub width: f64,
}

/// The final stage of a two-stage search as fixed when its first trial started
/// (`DIR/final-stage.json`): trials from `first_trial` on draw from `search`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct FinalStage {
    pub first_trial: u64,
    /// The initial trial the ranges are centred on.
    pub centred_on: u64,
    pub search: SearchSpace,
}

/// A loaded study: its file, where it came from, and its base config.
pub struct Study {
    pub path: PathBuf,
    pub file: StudyFile,
    pub base: RunConfig,
    pub dir: PathBuf,
    /// Device indices every trial and rerun shares its batch across (`--devices`; unset: the
    /// config's). How the batch is cut does not change a run's mathematics.
    pub devices: Option<Vec<usize>>,
    /// For a `best_of` study: the seeds the source study's trials ran with (its runs with those
    /// seeds repeat a tuning run, so they are not fresh).
    source_seeds: BTreeSet<u64>,
    /// [`Study::as_at_look`]: only the reruns of the best point with the `n` lowest seeds count.
    look: Option<usize>,
}

/// The result file of one trial or rerun.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct TrialResult {
    /// The trial's index; for a rerun, the index of the trial it reran.
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
        let (base, source_seeds) = match (&file.best_of, file.base.is_empty()) {
            (None, true) => bail!("{origin}: base: expected at least one run-config file"),
            (Some(_), false) => bail!(
                "{origin}: base and best_of: expected one of them (best_of takes its base from the other study's best trial)"
            ),
            (None, false) => {
                let base_files: Vec<PathBuf> = file.base.iter().map(|f| here.join(f)).collect();
                let base = RunConfig::compose(&base_files, &[])
                    .with_context(|| format!("{origin}: base"))?;
                (base, BTreeSet::new())
            }
            (Some(other), true) => best_config_of(&here.join(other), &dir)
                .with_context(|| format!("{origin}: best_of"))?,
        };
        let study = Study {
            path: path.to_path_buf(),
            file,
            base,
            dir,
            devices: None,
            source_seeds,
            look: None,
        };
        study
            .trial_config(0)
            .with_context(|| format!("{origin}: search"))?;
        study.check_fingerprint(force)?;
        Ok(study)
    }

    /// SHA-256 over what decides every trial: the search space, the study seed and the composed
    /// base config, less the settings that only choose what is recorded
    /// (`train.diagnostics_every`, `train.tensorboard`: turning them on keeps the trials).
    pub fn fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut base = serde_json::to_value(&self.base)?;
        if let Some(train) = base["train"].as_object_mut() {
            train.remove("diagnostics_every");
            train.remove("tensorboard");
        }
        let mut what = serde_json::json!({
            "search": serde_json::to_value(&self.file.search)?,
            "seed": self.file.seed,
            "base": base,
        });
        if let Some(refine) = &self.file.refine {
            what["refine"] = serde_json::to_value(refine)?;
        }
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
        for name in [
            "trials",
            "reruns",
            "superseded-reruns",
            "study.ron",
            "fingerprint.txt",
        ] {
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

    fn final_stage_path(&self) -> PathBuf {
        self.dir.join("final-stage.json")
    }

    /// The final stage of a two-stage search once fixed (`None` before, and for one stage).
    pub fn final_stage(&self) -> Result<Option<FinalStage>> {
        if self.file.refine.is_none() {
            return Ok(None);
        }
        let path = self.final_stage_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let stage: FinalStage = serde_json::from_str(&text).with_context(|| {
                    format!(
                        "{}: expected {{\"first_trial\": N, \"centred_on\": I, \"search\": {{...}}}}",
                        path.display()
                    )
                })?;
                validate_space(&stage.search, &path.display().to_string())?;
                Ok(Some(stage))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The search space trial `index` draws from: the final stage's from its first trial on.
    pub fn space_of(&self, index: u64) -> Result<SearchSpace> {
        match self.final_stage()? {
            Some(stage) if index >= stage.first_trial => Ok(stage.search),
            _ => Ok(self.file.search.clone()),
        }
    }

    /// Fixes the final stage of a two-stage search once its initial stage is complete (said on
    /// stderr); returns it. An error while the initial stage is unfinished.
    fn fix_final_stage(&self) -> Result<FinalStage> {
        if let Some(stage) = self.final_stage()? {
            return Ok(stage);
        }
        let Some(refine) = self.file.refine else {
            bail!("{}: no refine stage", self.path.display());
        };
        let trials = self.trials()?;
        let feasible = trials.values().filter(|r| r.feasible()).count() as u64;
        let unfinished = self.unfinished();
        if feasible < refine.initial_trials || !unfinished.is_empty() {
            bail!(
                "{}: the final stage starts after {} feasible initial trials ({feasible} so far{}); run the initial stage first",
                self.path.display(),
                refine.initial_trials,
                if unfinished.is_empty() {
                    ""
                } else {
                    ", some unfinished"
                }
            );
        }
        let best = self.best()?.expect("feasible trials exist");
        let stage = FinalStage {
            first_trial: trials.keys().next_back().map_or(0, |i| i + 1),
            centred_on: best.index,
            search: bigbatch_core::study::refine_space(
                &self.file.search,
                &best.point,
                refine.width,
            )
            .with_context(|| format!("{}: refine", self.path.display()))?,
        };
        write_atomic(
            &self.final_stage_path(),
            serde_json::to_string_pretty(&stage)?.as_bytes(),
        )?;
        eprintln!(
            "{}: final stage from trial {}, ranges centred on trial {}",
            self.path.display(),
            stage.first_trial,
            stage.centred_on
        );
        Ok(stage)
    }

    /// The config of trial `index`: the base with the point applied, checked like a config file.
    /// In a two-stage study a trial of the final stage needs the stage fixed first.
    pub fn trial_config(&self, index: u64) -> Result<(RunConfig, BTreeMap<String, Value>)> {
        let space = match (&self.file.refine, self.final_stage()?) {
            (Some(refine), None) if index >= refine.initial_trials && index > 0 => {
                let done = self.trials()?;
                if !done.contains_key(&index) && !self.trial_run_dir(index).exists() {
                    // Beyond the initial trials only when some of them diverged.
                    let feasible = done.values().filter(|r| r.feasible()).count() as u64;
                    if feasible >= refine.initial_trials {
                        bail!(
                            "{}: trial {index} belongs to the final stage, which is not fixed yet (`bigbatch study run` fixes it when the initial stage is complete)",
                            self.path.display()
                        );
                    }
                }
                self.file.search.clone()
            }
            _ => self.space_of(index)?,
        };
        let point = trial_point(&space, self.file.seed, index);
        let mut json = serde_json::to_value(&self.base)?;
        apply_point(&mut json, &point)?;
        let config: RunConfig = from_json_checked(json, "search point")?;
        config.validate()?;
        Ok((config, point))
    }

    /// The run directory of trial `index`.
    pub fn trial_run_dir(&self, index: u64) -> PathBuf {
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

    /// The seeds the search used: every finished trial's, the base config's, and for a `best_of`
    /// study the source study's trials'. A run with one of them may repeat a tuning run.
    pub fn searched_seeds(&self) -> Result<BTreeSet<u64>> {
        if self.file.best_of.is_some() {
            return Ok(self.source_seeds.clone());
        }
        let mut own: BTreeSet<u64> = self.trials()?.values().map(|r| r.seed).collect();
        own.insert(self.base.train.seed);
        Ok(own)
    }

    /// The study as it stood at an earlier look at `seeds` reruns of its best point: only the
    /// reruns of the best point with the `seeds` lowest seeds count (reruns run in seed order,
    /// so these are the ones the look saw). Trials are unchanged.
    pub fn as_at_look(mut self, seeds: usize) -> Self {
        self.look = Some(seeds);
        self
    }

    /// The reruns that count: those of the current best trial (same index and point) with a
    /// seed the search never used, by seed.
    pub fn fresh_reruns(&self) -> Result<BTreeMap<u64, TrialResult>> {
        Ok(self.split_reruns_of_best()?.0)
    }

    /// The reruns of the current best trial (same index and point), split by seed into the fresh
    /// ones and how many used a seed of the search.
    fn split_reruns_of_best(&self) -> Result<(BTreeMap<u64, TrialResult>, usize)> {
        let Some(best) = self.best()? else {
            return Ok((BTreeMap::new(), 0));
        };
        let searched = self.searched_seeds()?;
        let (fresh, tuned): (BTreeMap<u64, TrialResult>, BTreeMap<u64, TrialResult>) = self
            .reruns()?
            .into_iter()
            .filter(|(_, r)| r.index == best.index && r.point == best.point)
            .take(self.look.unwrap_or(usize::MAX))
            .partition(|(seed, _)| !searched.contains(seed));
        Ok((fresh, tuned.len()))
    }

    /// Wall seconds of every finished trial, rerun and superseded rerun of the study, each over
    /// all the processes that ran it ([`run_seconds`]).
    pub fn compute_seconds(&self) -> Result<f64> {
        let mut dirs = vec![self.dir.join("trials"), self.dir.join("reruns")];
        if let Ok(entries) = std::fs::read_dir(self.dir.join("superseded-reruns")) {
            dirs.extend(
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.path())
                    .filter(|p| p.is_dir()),
            );
        }
        let mut seconds = 0.0;
        for dir in dirs {
            for (run_dir, r) in read_runs(&dir)?.values() {
                seconds += run_seconds(run_dir, &r.summary)?;
            }
        }
        Ok(seconds)
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
        let run_dir = self.trial_run_dir(index);
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
        let mut config = config;
        if let Some(devices) = &self.devices {
            config.train.devices = Some(devices.clone());
            config.validate().context("--devices")?;
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
        if summary.status == Status::Interrupted {
            // No result: the run is unfinished and continues from its checkpoint next time.
            return Err(bigbatch_engine::interrupt::Interrupted {
                what: format!(
                    "{} {}; the next `study run`, `study trial` or `study rerun` continues it",
                    run_dir.display(),
                    summary.reason.as_deref().unwrap_or("stopped")
                ),
            }
            .into());
        }
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
    /// A two-stage study runs its initial stage first, then fixes the final ranges and runs the
    /// rest of the `trials` there.
    pub fn run(&self, trials: u64, workers: usize, backend: Backend) -> Result<()> {
        self.record_fingerprint()?;
        write_atomic(&self.dir.join("study.ron"), to_ron(&self.file)?.as_bytes())?;
        let max_attempts = self.file.max_attempts.unwrap_or(3 * trials);
        if let Some(refine) = self.file.refine
            && trials > refine.initial_trials
            && self.final_stage()?.is_none()
        {
            self.run_until(refine.initial_trials, max_attempts, workers, backend)?;
            self.fix_final_stage()?;
        }
        self.run_until(trials, max_attempts, workers, backend)
    }

    /// Runs trials until `trials` feasible ones exist. Trials another process is running (a
    /// second `study run` or `reproduce` on the same study, or a Slurm task) are left to it and
    /// count as in flight; once this process has nothing left to claim it waits for them, then
    /// looks again (a trial of theirs that diverged or stopped is claimed anew).
    fn run_until(
        &self,
        trials: u64,
        max_attempts: u64,
        workers: usize,
        backend: Backend,
    ) -> Result<()> {
        loop {
            let elsewhere = self.run_until_once(trials, max_attempts, workers, backend)?;
            if elsewhere.is_empty() {
                return Ok(());
            }
            let dirs: Vec<PathBuf> = elsewhere.iter().map(|&i| self.trial_run_dir(i)).collect();
            wait_for_other_processes(
                &dirs,
                &format!("{}: trials {elsewhere:?}", self.path.display()),
            )?;
        }
    }

    /// One pass of [`Self::run_until`]: the trials another process holds, to wait for (none when
    /// the study has its trials).
    fn run_until_once(
        &self,
        trials: u64,
        max_attempts: u64,
        workers: usize,
        backend: Backend,
    ) -> Result<Vec<u64>> {
        let done = self.trials()?;
        struct Shared {
            next: u64,
            feasible: u64,
            in_flight: u64,
            attempted: u64,
            error: Option<anyhow::Error>,
            /// Trials another process is running (their run directory is locked): skipped.
            elsewhere: Vec<u64>,
        }
        let shared = Mutex::new(Shared {
            next: 0,
            feasible: done.values().filter(|r| r.feasible()).count() as u64,
            in_flight: 0,
            attempted: done.len() as u64,
            error: None,
            elsewhere: Vec::new(),
        });
        let claim = || -> Option<u64> {
            let mut s = shared.lock().unwrap_or_else(|e| e.into_inner());
            if s.error.is_some()
                || s.feasible + s.in_flight + s.elsewhere.len() as u64 >= trials
                || bigbatch_engine::interrupt::requested()
            {
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
                            Err(e) => match e.downcast::<RunInUse>() {
                                Ok(in_use) => {
                                    eprintln!(
                                        "trial {index}: running in another process ({}); skipped",
                                        in_use.holder
                                    );
                                    s.attempted -= 1;
                                    s.elsewhere.push(index);
                                }
                                Err(e) => {
                                    s.error = Some(e.context(format!("trial {index}")));
                                }
                            },
                        }
                    }
                });
            }
        });
        let s = shared.into_inner().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = s.error {
            return Err(e);
        }
        if s.feasible < trials && bigbatch_engine::interrupt::requested() {
            return Err(bigbatch_engine::interrupt::Interrupted {
                what: format!(
                    "{}: {} feasible trials of {trials} when the signal came; the next `study run` or `reproduce` continues",
                    self.path.display(),
                    s.feasible
                ),
            }
            .into());
        }
        if s.feasible < trials && !s.elsewhere.is_empty() {
            return Ok(s.elsewhere);
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
        Ok(Vec::new())
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

    /// The submission name used by performance profiles: the study file's `submission`, else
    /// the file's name (two studies of one optimizer are two submissions).
    pub fn submission(&self) -> String {
        self.file.submission.clone().unwrap_or_else(|| {
            self.path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
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

    /// Reruns the best trial's point until it has `seeds` fresh reruns ([`Study::fresh_reruns`];
    /// new ones take the lowest unused seeds from [`FRESH_SEEDS`] up, so `--seeds 10` after
    /// `--seeds 5` adds five), on `workers` threads (killed ones continue). Reruns of an earlier
    /// best point are first moved aside to `superseded-reruns/trial-<index>/` (said on stderr), so
    /// they are never mixed with the new point's. Returns the fresh reruns by seed.
    pub fn rerun(
        &self,
        seeds: u64,
        workers: usize,
        backend: Backend,
    ) -> Result<BTreeMap<u64, TrialResult>> {
        let Some(best) = self.best()? else {
            bail!(
                "{}: no feasible trial finished yet; run `bigbatch study run` first",
                self.path.display()
            );
        };
        // The best point of an unfinished search may not be its best: refuse until every
        // started trial has its result (a killed one: `study run` or `study trial` finishes it).
        let unfinished = self.unfinished();
        if !unfinished.is_empty() {
            bail!(
                "{}: trials {unfinished:?} of the search are unfinished (running, or killed and waiting to resume): rerunning now could rerun a point that is not the search's best; finish them first (`study status` shows which are running)",
                self.path.display()
            );
        }
        self.record_fingerprint()?;
        let (config, point) = self.trial_config(best.index)?;
        self.move_stale_reruns(&best, &config)?;
        let searched = self.searched_seeds()?;
        let existing = self.fresh_reruns()?;
        let mut todo: Vec<u64> = existing.keys().copied().collect();
        let mut candidate = FRESH_SEEDS;
        while (todo.len() as u64) < seeds {
            if !searched.contains(&candidate) && !existing.contains_key(&candidate) {
                todo.push(candidate);
            }
            candidate += 1;
        }
        let next = Mutex::new(todo.into_iter());
        let results = Mutex::new(BTreeMap::new());
        // Seeds another process is rerunning (a second `study rerun` or `reproduce`).
        let elsewhere = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers.max(1) {
                scope.spawn(|| {
                    loop {
                        if bigbatch_engine::interrupt::requested() {
                            return;
                        }
                        let Some(seed) = next.lock().unwrap_or_else(|e| e.into_inner()).next()
                        else {
                            return;
                        };
                        let mut config = config.clone();
                        config.train.seed = seed;
                        let dir = self.rerun_dir(seed);
                        let r = self.run_config(best.index, point.clone(), config, &dir, backend);
                        if let Err(e) = &r
                            && let Some(in_use) = e.downcast_ref::<RunInUse>()
                        {
                            eprintln!(
                                "seed {seed}: running in another process ({}); left to it",
                                in_use.holder
                            );
                            elsewhere
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(seed);
                            continue;
                        }
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
        let left = next.into_inner().unwrap_or_else(|e| e.into_inner()).count();
        if left > 0 && bigbatch_engine::interrupt::requested() {
            return Err(bigbatch_engine::interrupt::Interrupted {
                what: format!(
                    "{}: {left} reruns not started when the signal came; the next `study rerun` or `reproduce` continues",
                    self.path.display()
                ),
            }
            .into());
        }
        let elsewhere = elsewhere.into_inner().unwrap_or_else(|e| e.into_inner());
        if !elsewhere.is_empty() {
            let dirs: Vec<PathBuf> = elsewhere.iter().map(|&s| self.rerun_dir(s)).collect();
            wait_for_other_processes(
                &dirs,
                &format!("{}: reruns with seeds {elsewhere:?}", self.path.display()),
            )?;
            // Their results are read (or, for one stopped there, the run continued) here.
            return self.rerun(seeds, workers, backend);
        }
        results
            .into_inner()
            .unwrap_or_else(|e| e.into_inner())
            .into_iter()
            .map(|(seed, r)| r.map(|r| (seed, r)))
            .collect()
    }

    /// Moves reruns of another point than `best` aside: finished ones by the trial their result
    /// names, unfinished ones (a run directory without a result) when their `config.ron` is not
    /// `config` with their seed.
    fn move_stale_reruns(&self, best: &TrialResult, config: &RunConfig) -> Result<()> {
        let reruns = self.dir.join("reruns");
        let Ok(entries) = std::fs::read_dir(&reruns) else {
            return Ok(());
        };
        let mut moved = BTreeMap::<String, Vec<String>>::new();
        for entry in entries {
            let path = entry?.path();
            if !path.is_dir() {
                continue;
            }
            let name = path
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned();
            let result = read_result(&Self::result_path(&path))?;
            let stale_trial = match &result {
                Some(r) if r.index != best.index || r.point != best.point => {
                    Some(format!("trial-{:05}", r.index))
                }
                Some(_) => None,
                None => {
                    let ours = |seed: u64| {
                        let mut c = config.clone();
                        c.train.seed = seed;
                        serde_json::to_value(&c).ok()
                    };
                    let theirs: Option<RunConfig> = load_ron(&path.join("config.ron")).ok();
                    match theirs {
                        Some(t) if serde_json::to_value(&t).ok() == ours(t.train.seed) => None,
                        Some(_) => Some("unfinished".to_string()),
                        None => None,
                    }
                }
            };
            if let Some(mut folder) = stale_trial {
                // A point that was best twice: its second set goes beside the first.
                let base = folder.clone();
                let mut n = 1;
                while self
                    .dir
                    .join("superseded-reruns")
                    .join(&folder)
                    .join(&name)
                    .exists()
                {
                    n += 1;
                    folder = format!("{base}-{n}");
                }
                let aside = self.dir.join("superseded-reruns").join(&folder);
                std::fs::create_dir_all(&aside)
                    .with_context(|| format!("cannot create {}", aside.display()))?;
                let json = Self::result_path(&path);
                if json.exists() {
                    std::fs::rename(&json, aside.join(format!("{name}.json")))
                        .with_context(|| format!("cannot move {} aside", json.display()))?;
                }
                std::fs::rename(&path, aside.join(&name))
                    .with_context(|| format!("cannot move {} aside", path.display()))?;
                moved.entry(folder).or_default().push(name);
            }
        }
        for (folder, names) in moved {
            eprintln!(
                "the best point is now trial {}: moved {} reruns of an earlier point ({}) to {}",
                best.index,
                names.len(),
                names.join(", "),
                self.dir.join("superseded-reruns").join(folder).display()
            );
        }
        Ok(())
    }
}

/// How close to an edge of its range (in the mapped scale) a best point's value may lie before
/// it is flagged.
pub const EDGE_MARGIN: f64 = 0.05;

impl Study {
    /// A warning per searched value of the best trial within [`EDGE_MARGIN`] of an edge of its
    /// range: the optimum may lie outside it, and the paper widened such ranges.
    pub fn edge_warnings(&self) -> Result<Vec<String>> {
        let Some(best) = self.best()? else {
            return Ok(Vec::new());
        };
        let space = self.space_of(best.index)?;
        Ok(near_edges(&space, &best.point, EDGE_MARGIN)
            .into_iter()
            .map(|(key, u)| {
                format!(
                    "the best trial's {key} = {} lies at {:.0}% of its range ({}): near the {} edge; widen the range",
                    best.point
                        .get(bigbatch_core::study::key_paths(&key).next().unwrap_or(&key))
                        .map_or("-".into(), |v| v.to_string()),
                    100.0 * u,
                    crate::report::scaling(&space[&key]),
                    if u < 0.5 { "lower" } else { "upper" }
                )
            })
            .collect())
    }

    /// What `bigbatch study status` prints: finished, feasible, diverged and unfinished trials,
    /// and the best point so far.
    pub fn status_text(&self) -> Result<String> {
        use std::fmt::Write;
        let trials = self.trials()?;
        let feasible = trials.values().filter(|r| r.feasible()).count();
        let unfinished = self.unfinished();
        let (running, killed): (Vec<u64>, Vec<u64>) = unfinished
            .iter()
            .partition(|i| RunLock::holder(&self.trial_run_dir(**i)).is_some());
        let list = |v: &[u64]| {
            if v.is_empty() {
                String::new()
            } else {
                format!(" {v:?}")
            }
        };
        let mut out = String::new();
        writeln!(
            out,
            "study {}  (directory {})",
            self.path.display(),
            self.dir.display()
        )?;
        writeln!(
            out,
            "finished: {}  feasible: {feasible}  diverged: {}  running: {}{}  killed or interrupted (resume from their checkpoints): {}{}",
            trials.len(),
            trials.len() - feasible,
            running.len(),
            list(&running),
            killed.len(),
            list(&killed)
        )?;
        match self.best()? {
            Some(b) => {
                writeln!(out, "best: {}", describe_result(&b))?;
                for (path, value) in &b.point {
                    writeln!(out, "    {path} = {value}")?;
                }
                for warning in self.edge_warnings()? {
                    writeln!(out, "warning: {warning}")?;
                }
            }
            None => writeln!(out, "best: none yet")?,
        }
        Ok(out)
    }
}

/// The config of the best trial of the study file `path`, whose directory lies beside `dir`
/// (`<parent of dir>/<file name of path>`), and the seeds its search used.
fn best_config_of(path: &Path, dir: &Path) -> Result<(RunConfig, BTreeSet<u64>)> {
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
    Ok((other.trial_config(best.index)?.0, other.searched_seeds()?))
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

/// Waits until no other process holds the run directories `dirs` (their `run.lock`), saying so
/// once on stderr; SIGTERM or SIGINT ends the wait with [`bigbatch_engine::interrupt::Interrupted`].
/// A holder that dies releases its lock, so the wait ends with it.
fn wait_for_other_processes(dirs: &[PathBuf], what: &str) -> Result<()> {
    let holders = || -> Vec<String> { dirs.iter().filter_map(|d| RunLock::holder(d)).collect() };
    let held = holders();
    if held.is_empty() {
        return Ok(());
    }
    eprintln!(
        "{what}: running in other processes (pid {}); waiting for them",
        held.join(", ")
    );
    while !holders().is_empty() {
        if bigbatch_engine::interrupt::requested() {
            return Err(bigbatch_engine::interrupt::Interrupted {
                what: format!(
                    "{what}: stopped while waiting for other processes; the next run continues"
                ),
            }
            .into());
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
    Ok(())
}

fn read_results(dir: &Path) -> Result<BTreeMap<u64, TrialResult>> {
    Ok(read_runs(dir)?
        .into_iter()
        .map(|(key, (_, r))| (key, r))
        .collect())
}

/// The finished runs under `dir` by key (`trials/00007.json` -> 7, `reruns/seed-003.json` -> 3),
/// each with its run directory (the result file's path without `.json`).
fn read_runs(dir: &Path) -> Result<BTreeMap<u64, (PathBuf, TrialResult)>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "json")
            && let Some(r) = read_result(&path)?
        {
            let key = path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.trim_start_matches("seed-").parse().ok())
                .unwrap_or(r.index);
            out.insert(key, (path.with_extension(""), r));
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
        Status::Interrupted => {
            format!("trial {}: interrupted at step {}", r.index, r.summary.steps)
        }
    }
}

/// Statistics of a rerun set (Table 2/3/5 of the paper), over the fresh reruns of the best
/// point.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RerunStats {
    /// Fresh seeds behind the numbers.
    pub seeds: usize,
    pub diverged: usize,
    /// Reruns left out: their seed was used by the search (the selected trial itself).
    pub searched_seeds_left_out: usize,
    pub val_accuracy: Option<Spread>,
    pub train_accuracy: Option<Spread>,
    /// Fraction of seeds whose final value of the study metric reaches the study target.
    pub fraction_reaching_target: Option<f64>,
    /// Steps to the target (with a target).
    pub steps_to_target: Option<StepsToTarget>,
}

/// How fast the seeds reach the target validation accuracy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct StepsToTarget {
    /// The median over seeds of the first evaluated step whose validation accuracy reaches the
    /// target, a seed that never does counting as infinitely many steps; `None` ("never") when
    /// the median seed does not reach it.
    pub median: Option<f64>,
    /// Seeds that reached it.
    pub reached: usize,
    /// Seeds run.
    pub seeds: usize,
}

impl StepsToTarget {
    /// `120 (4 of 5 seeds)` or `never (2 of 5 seeds)`.
    pub fn cell(&self) -> String {
        format!(
            "{} ({} of {} seeds)",
            self.median.map_or("never".into(), |m| format!("{m:.0}")),
            self.reached,
            self.seeds
        )
    }
}

/// The median of step counts where `None` is infinitely many (numpy's rule: the mean of the two
/// middle values of an even count, infinite when either is).
pub fn median_steps(steps: &[Option<u64>]) -> Option<f64> {
    if steps.is_empty() {
        return None;
    }
    let v: Vec<f64> = steps
        .iter()
        .map(|s| s.map_or(f64::INFINITY, |s| s as f64))
        .collect();
    Some(crate::stats::median(&v)).filter(|m| m.is_finite())
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
        let (fresh, searched_seeds_left_out) = self.split_reruns_of_best()?;
        let completed: Vec<&TrialResult> = fresh.values().filter(|r| r.feasible()).collect();
        let val: Vec<f64> = completed
            .iter()
            .filter_map(|r| r.summary.final_val_accuracy)
            .collect();
        let train: Vec<f64> = completed
            .iter()
            .filter_map(|r| r.summary.final_train_accuracy)
            .collect();
        let (fraction, steps) = match self.file.target {
            Some(t) if !fresh.is_empty() => {
                let reached = completed
                    .iter()
                    .filter(|r| self.file.metric.of(&r.summary).is_some_and(|m| m >= t))
                    .count();
                let mut steps = Vec::new();
                for r in fresh.values() {
                    steps.push(if r.feasible() {
                        steps_to_target(&self.rerun_dir(r.seed), t)?
                    } else {
                        None
                    });
                }
                (
                    Some(reached as f64 / fresh.len() as f64),
                    Some(StepsToTarget {
                        median: median_steps(&steps),
                        reached: steps.iter().filter(|s| s.is_some()).count(),
                        seeds: steps.len(),
                    }),
                )
            }
            _ => (None, None),
        };
        Ok(RerunStats {
            seeds: fresh.len(),
            diverged: fresh.len() - completed.len(),
            searched_seeds_left_out,
            val_accuracy: spread(&val)?,
            train_accuracy: spread(&train)?,
            fraction_reaching_target: fraction,
            steps_to_target: steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seeds reaching at 20, 30 and 40 steps and two that never do: sorted 20, 30, 40, inf,
    /// inf, the median seed reaches at 40. With four: 20, 30, inf, inf: the middle two are 30
    /// and inf, so never.
    #[test]
    fn median_steps_count_seeds_that_never_reach_the_target() {
        assert_eq!(
            median_steps(&[Some(30), None, Some(20), None, Some(40)]),
            Some(40.0)
        );
        assert_eq!(median_steps(&[Some(30), None, Some(20), None]), None);
        assert_eq!(median_steps(&[Some(30), Some(20)]), Some(25.0));
        assert_eq!(median_steps(&[]), None);
    }
}
