//! `bigbatch reproduce`: the paper's findings run as studies and judged by rules fixed in advance.
//!
//! A findings file (`configs/studies/reproduction/findings.ron`) lists findings, each a claim over
//! study files. `reproduce` tunes every study it needs (quasi-random trials, then the best point
//! rerun over seeds; studies with `best_of` run their sweep over seeds after their source study),
//! then writes the report: `<out>/README.md` (a verdict per finding with its numbers, tables shaped
//! like the paper's, charts), `<out>/results.csv`, and per finding `<out>/<name>/report.md` (the
//! protocol, search spaces and best points) with its charts. Study directories live in
//! `<out>/studies/<study file name>/`; everything there except checkpoints is small and is enough
//! to write the report again without running (`--report-only`). Interrupted and run again, it
//! continues: finished trials are kept and a killed one resumes from its checkpoint.
//!
//! Verdicts, over the runs' final values of the study metric (medians and quartiles as numpy's
//! default linear interpolation):
//! - `Matches { candidate, reference }` ("A reaches the accuracy of B"): reproduced when the
//!   candidate's median is at least the reference's first quartile; not reproduced when it is
//!   below the reference's worst seed; inconclusive between.
//! - `Beats { better, worse }`: reproduced when the interquartile ranges are apart (better's first
//!   quartile above worse's third); not reproduced when better's median is not above worse's;
//!   inconclusive between.
//! - `TrainGap { higher, lower }` ("at equal validation accuracy the training accuracies differ"):
//!   reproduced when `higher`'s median training accuracy exceeds `lower`'s third quartile and the
//!   gap in median training accuracy is larger than the gap in median validation accuracy; not
//!   reproduced when `higher`'s median training accuracy is not above `lower`'s; inconclusive
//!   between.
//! - `BestValue { path, expected }` ("the best value of a hyperparameter differs between
//!   optimizers"): per study, runs are grouped by the value at `path`; a study prefers the value with
//!   the highest median when that median is above every other value's third quartile, otherwise it
//!   has no clear preference. Reproduced when every study clearly prefers the paper's value and not
//!   all preferences are the same; not reproduced when every study has a clear preference and they
//!   contradict the paper; inconclusive otherwise.

use crate::backend::Backend;
use crate::report::{name, pct, spread_cell};
use crate::study::{Metric, Study, TrialResult};
use anyhow::{Context, Result, bail};
use bigbatch_core::config::{load_ron, write_atomic};
use bigbatch_core::study::{Scaling, Spread, key_paths, spread};
use bigbatch_plots::{BoxGroup, box_plot};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// The findings file.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct FindingsFile {
    /// Shown at the top of the report: the scale and why it was chosen.
    pub preamble: String,
    pub findings: Vec<Finding>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct Finding {
    /// Short name (`--only`, the report's folder).
    pub name: String,
    /// The claim in words.
    pub title: String,
    /// Where the paper shows it.
    pub paper: String,
    pub claim: Claim,
    /// The choices made for this finding and why.
    #[serde(default)]
    pub notes: String,
}

/// A claim over study files (relative to the findings file).
#[derive(Deserialize, Debug, Clone)]
pub enum Claim {
    Matches {
        candidate: PathBuf,
        reference: PathBuf,
    },
    Beats {
        better: PathBuf,
        worse: PathBuf,
    },
    TrainGap {
        higher: PathBuf,
        lower: PathBuf,
    },
    BestValue {
        path: String,
        expected: Vec<(PathBuf, Value)>,
    },
}

impl Claim {
    fn tuned(&self) -> Vec<&PathBuf> {
        match self {
            Claim::Matches {
                candidate,
                reference,
            } => vec![candidate, reference],
            Claim::Beats { better, worse } => vec![better, worse],
            Claim::TrainGap { higher, lower } => vec![higher, lower],
            Claim::BestValue { .. } => vec![],
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Reproduced,
    NotReproduced,
    Inconclusive,
    /// Not every study has results yet.
    Pending,
}

impl Verdict {
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive at this scale",
            Verdict::Pending => "pending (studies not finished)",
        }
    }
}

/// How much to run. `reproduce` records it in `<out>/budget.json`; the report judges a finding
/// only once its studies have all of it (defaults when none is recorded: 10 trials, 5 seeds).
#[derive(serde::Serialize, Deserialize, Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Feasible quasi-random trials per tuned study.
    pub trials: u64,
    /// Seeds of each rerun (and of each value of a `BestValue` sweep).
    pub seeds: u64,
    /// Trials or seeds run at the same time (not recorded).
    #[serde(skip, default = "one")]
    pub workers: usize,
}

fn one() -> usize {
    1
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            trials: 10,
            seeds: 5,
            workers: 1,
        }
    }
}

pub struct Reproduction {
    pub file: FindingsFile,
    /// The findings file's folder (study paths are relative to it).
    pub here: PathBuf,
    /// Output folder: the report, and the studies in `studies/`.
    pub out: PathBuf,
}

impl Reproduction {
    pub fn load(findings: &Path, out: &Path) -> Result<Self> {
        let file: FindingsFile = load_ron(findings)?;
        let origin = findings.display();
        if file.findings.is_empty() {
            bail!("{origin}: findings: expected at least one finding");
        }
        for (i, f) in file.findings.iter().enumerate() {
            if file.findings[..i].iter().any(|g| g.name == f.name) {
                bail!("{origin}: findings[{i}].name: \"{}\" appears twice", f.name);
            }
            if let Claim::BestValue { expected, .. } = &f.claim
                && expected.is_empty()
            {
                bail!(
                    "{origin}: findings[{i}] ({}): BestValue.expected: expected at least one study",
                    f.name
                );
            }
        }
        Ok(Self {
            file,
            here: findings.parent().unwrap_or(Path::new(".")).to_path_buf(),
            out: out.to_path_buf(),
        })
    }

    fn selected(&self, only: &[String]) -> Result<Vec<&Finding>> {
        for name in only {
            if !self.file.findings.iter().any(|f| &f.name == name) {
                let names: Vec<&str> = self.file.findings.iter().map(|f| f.name.as_str()).collect();
                bail!(
                    "--only {name}: no such finding (there are: {})",
                    names.join(", ")
                );
            }
        }
        Ok(self
            .file
            .findings
            .iter()
            .filter(|f| only.is_empty() || only.contains(&f.name))
            .collect())
    }

    fn study_dir(&self, study: &Path) -> PathBuf {
        self.out
            .join("studies")
            .join(study.file_stem().unwrap_or_default())
    }

    /// Loads a study of the findings file with its directory under `<out>/studies/`.
    pub fn study(&self, path: &Path) -> Result<Study> {
        let full = self.here.join(path);
        Study::load(&full, Some(self.study_dir(&full)))
    }

    /// Runs what the selected findings need: tuned studies (trials, then reruns), then the
    /// `BestValue` sweeps (each value over seeds `0 .. seeds`).
    pub fn run(&self, only: &[String], budget: &Budget, backend: Backend) -> Result<()> {
        let findings = self.selected(only)?;
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        write_atomic(
            &self.budget_path(),
            serde_json::to_string_pretty(budget)?.as_bytes(),
        )?;
        let mut tuned: Vec<(PathBuf, bool)> = Vec::new();
        let mut add = |path: PathBuf, rerun: bool| match tuned.iter_mut().find(|(p, _)| *p == path)
        {
            Some(entry) => entry.1 |= rerun,
            None => tuned.push((path, rerun)),
        };
        let mut sweeps: Vec<(PathBuf, String)> = Vec::new();
        for f in &findings {
            for p in f.claim.tuned() {
                add(p.clone(), true);
            }
            if let Claim::BestValue { path, expected } = &f.claim {
                for (study_path, _) in expected {
                    // The source of a `best_of` study is tuned first (trials only).
                    if let Some(source) = self.best_of_source(study_path)? {
                        add(source, false);
                    }
                    sweeps.push((study_path.clone(), path.clone()));
                }
            }
        }
        for (path, rerun) in &tuned {
            let study = self.study(path)?;
            eprintln!(
                "== {}: {} trials{}",
                path.display(),
                budget.trials,
                if *rerun {
                    format!(", then the best point over {} seeds", budget.seeds)
                } else {
                    String::new()
                }
            );
            study.run(budget.trials, budget.workers, backend)?;
            if *rerun {
                study.rerun(budget.seeds, budget.workers, backend)?;
            }
        }
        for (path, key) in &sweeps {
            let study = self.study(path)?;
            let values = sweep_values(&study, key)?;
            let trials = values.len() as u64 * budget.seeds;
            eprintln!(
                "== {}: {key} in {} over {} seeds ({trials} runs)",
                path.display(),
                values.len(),
                budget.seeds
            );
            study.run(trials, budget.workers, backend)?;
        }
        Ok(())
    }

    fn budget_path(&self) -> PathBuf {
        self.out.join("budget.json")
    }

    /// The budget recorded by the last run (the default when none was recorded).
    pub fn budget(&self) -> Result<Budget> {
        let path = self.budget_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected {{\"trials\": N, \"seeds\": K}}",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Budget::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Writes the report of every finding (those whose studies are not finished as pending);
    /// returns the files written.
    pub fn report(&self) -> Result<Vec<PathBuf>> {
        let findings = self.selected(&[])?;
        let budget = self.budget()?;
        let mut written = Vec::new();
        let mut md = String::from("# The paper's findings at CPU scale\n\n");
        md += "Written by `cargo xtask reproduce` (`bigbatch reproduce`); every number below comes \
               from the per-trial result files in `studies/`, from which `cargo xtask reproduce \
               --report-only` writes this page again.\n\n";
        md += self.file.preamble.trim();
        md += "\n\n## Summary\n\n| finding | paper | verdict | numbers |\n|---|---|---|---|\n";
        let mut sections = String::new();
        let mut csv = String::new();
        for f in &findings {
            if let Some(waiting) = self.waiting_for(f)? {
                writeln!(
                    md,
                    "| {} | {} | **{}** | waiting for {waiting} |",
                    f.title,
                    f.paper,
                    Verdict::Pending.words()
                )?;
                continue;
            }
            let studies = self.studies_of(f)?;
            let judged = judge(f, &studies, &budget)?;
            writeln!(
                md,
                "| [{}](#{}) | {} | **{}** | {} |",
                f.title,
                anchor(&f.title),
                f.paper,
                judged.verdict.words(),
                judged.numbers
            )?;
            writeln!(sections, "\n## {}\n", f.title)?;
            writeln!(
                sections,
                "Paper: {}. Verdict: **{}**. {}\n",
                f.paper,
                judged.verdict.words(),
                judged.numbers
            )?;
            if !f.notes.trim().is_empty() {
                writeln!(sections, "{}\n", f.notes.trim())?;
            }
            sections += &judged.table;
            // Protocol, search spaces, best points and charts of the finding's studies.
            let folder = self.out.join(&f.name);
            let (study_md, study_csv) = crate::report::tables(&studies)?;
            let report_md = folder.join("report.md");
            write_atomic(&report_md, study_md.as_bytes())?;
            written.push(report_md);
            append_csv(&mut csv, &study_csv);
            let mut charts = crate::report::plots(&studies, &folder)?;
            if let Claim::BestValue { path, .. } = &f.claim {
                let mut groups = Vec::new();
                for study in &studies {
                    for (value, runs) in by_value(study, path)? {
                        groups.push(BoxGroup {
                            label: format!("{} {}", name(study), value),
                            values: metric_values(&runs, study.file.metric),
                        });
                    }
                }
                if groups.iter().any(|g| !g.values.is_empty()) {
                    charts.extend(box_plot(
                        &folder.join("by_value"),
                        &format!("Final validation accuracy over seeds by {path}"),
                        "validation accuracy",
                        &groups,
                        None,
                    )?);
                }
            }
            writeln!(
                sections,
                "\nProtocol, search spaces and best points: [{0}/report.md]({0}/report.md).\n",
                f.name
            )?;
            for chart in charts
                .iter()
                .filter(|c| c.extension().is_some_and(|e| e == "png"))
            {
                let rel = chart.strip_prefix(&self.out).unwrap_or(chart);
                let stem = chart.file_stem().unwrap_or_default().to_string_lossy();
                writeln!(sections, "![{stem}]({})\n", rel.display())?;
            }
            written.extend(charts);
            writeln!(sections, "Commands:\n\n```sh\n{}```", self.commands(f))?;
        }
        md += "\nVerdict rules, fixed before any study ran (`crates/cli/src/reproduce.rs`): \
               *matches*: the candidate's median is at least the reference's first quartile \
               (reproduced) or below its worst seed (not reproduced); *beats*: the interquartile \
               ranges are apart (reproduced) or the better one's median is not above (not \
               reproduced); *training gap*: the higher one's median training accuracy is above \
               the other's third quartile and the training gap exceeds the validation gap \
               (reproduced) or it is not above the other's median (not reproduced); *best value*: \
               every optimizer clearly prefers (median above every other value's third quartile) \
               the paper's value (reproduced) or they all clearly prefer values against the paper \
               (not reproduced). Anything between is inconclusive at this scale.\n";
        md += &sections;
        let readme = self.out.join("README.md");
        write_atomic(&readme, md.as_bytes())?;
        written.push(readme);
        let results = self.out.join("results.csv");
        write_atomic(&results, csv.as_bytes())?;
        written.push(results);
        Ok(written)
    }

    /// A `best_of` source study of the finding with no feasible trial yet (its studies cannot
    /// be composed before it has one).
    fn waiting_for(&self, f: &Finding) -> Result<Option<String>> {
        let Claim::BestValue { expected, .. } = &f.claim else {
            return Ok(None);
        };
        for (p, _) in expected {
            if let Some(source) = self.best_of_source(p)?
                && self.study(&source)?.best()?.is_none()
            {
                return Ok(Some(source.display().to_string()));
            }
        }
        Ok(None)
    }

    /// The study a `best_of` study takes its base from (both relative to the findings file).
    fn best_of_source(&self, study: &Path) -> Result<Option<PathBuf>> {
        let file: crate::study::StudyFile = load_ron(&self.here.join(study))?;
        Ok(file
            .best_of
            .map(|source| study.parent().unwrap_or(Path::new("")).join(source)))
    }

    /// The finding's studies in the order of its claim (`Matches`: candidate, reference; ...;
    /// `BestValue`: the order of `expected`).
    fn studies_of(&self, f: &Finding) -> Result<Vec<Study>> {
        let paths: Vec<&PathBuf> = match &f.claim {
            Claim::BestValue { expected, .. } => expected.iter().map(|(p, _)| p).collect(),
            claim => claim.tuned(),
        };
        paths.into_iter().map(|p| self.study(p)).collect()
    }

    fn commands(&self, f: &Finding) -> String {
        format!(
            "cargo xtask reproduce --only {name}                # runs what is missing, then the report\n\
             cargo xtask reproduce --only {name} --report-only  # the report from the result files\n",
            name = f.name
        )
    }
}

/// Judges a finding on its studies (in the order of [`Reproduction::studies_of`]).
fn judge(f: &Finding, studies: &[Study], budget: &Budget) -> Result<Judged> {
    let pair = |kind| judge_pair(&studies[0], &studies[1], kind, budget);
    match &f.claim {
        Claim::Matches { .. } => pair(Pair::Matches),
        Claim::Beats { .. } => pair(Pair::Beats),
        Claim::TrainGap { .. } => pair(Pair::TrainGap),
        Claim::BestValue { path, expected } => judge_best_value(path, studies, expected, budget),
    }
}

fn judge_pair(sa: &Study, sb: &Study, kind: Pair, budget: &Budget) -> Result<Judged> {
    let (ra, rb) = (sa.rerun_stats()?, sb.rerun_stats()?);
    let (ta, tb) = (sa.trials()?, sb.trials()?);
    let feasible =
        |t: &BTreeMap<u64, TrialResult>| t.values().filter(|r| r.feasible()).count() as u64;
    let complete = feasible(&ta) >= budget.trials
        && feasible(&tb) >= budget.trials
        && ra.seeds as u64 >= budget.seeds
        && rb.seeds as u64 >= budget.seeds;
    let mut table = String::from(
        "| study | optimizer | seeds | median val | val IQR | median train | train IQR | reaching target | median steps to target |\n\
         |---|---|---:|---:|---|---:|---|---:|---:|\n",
    );
    for (s, r) in [(sa, &ra), (sb, &rb)] {
        let (vm, vi, _) = spread_cell(&r.val_accuracy);
        let (tm, ti, _) = spread_cell(&r.train_accuracy);
        writeln!(
            table,
            "| {} | {} | {} | {vm} | {vi} | {tm} | {ti} | {} | {} |",
            name(s),
            optimizers(s),
            r.seeds,
            r.fraction_reaching_target
                .map_or("-".into(), |x| format!("{:.0}%", 100.0 * x)),
            r.median_steps_to_target
                .map_or("-".into(), |x| format!("{x:.0}"))
        )?;
    }
    let metric = |s: &Study, r: &crate::study::RerunStats| match s.file.metric {
        Metric::FinalValAccuracy => r.val_accuracy.clone(),
        Metric::FinalTrainAccuracy => r.train_accuracy.clone(),
    };
    let (na, nb) = (name(sa), name(sb));
    let progress = format!(
        "so far: {na} {} trials, {} seeds; {nb} {} trials, {} seeds",
        ta.len(),
        ra.seeds,
        tb.len(),
        rb.seeds
    );
    let judged = match kind {
        _ if !complete => Judged::pending(table, progress),
        Pair::Matches | Pair::Beats => match (metric(sa, &ra), metric(sb, &rb)) {
            (Some(x), Some(y)) => {
                let verdict = if kind == Pair::Matches {
                    matches_verdict(&x, &y)
                } else {
                    beats_verdict(&x, &y)
                };
                let name = metric_name(sa.file.metric);
                Judged {
                    verdict,
                    numbers: format!(
                        "median {name} {na} {} (IQR {} - {}, {} seeds) vs {nb} {} (IQR {} - {}, worst {}, {} seeds)",
                        pct(x.median),
                        pct(x.q1),
                        pct(x.q3),
                        x.n,
                        pct(y.median),
                        pct(y.q1),
                        pct(y.q3),
                        pct(y.min),
                        y.n
                    ),
                    table,
                }
            }
            _ => Judged::pending(table, progress),
        },
        Pair::TrainGap => match (
            &ra.val_accuracy,
            &rb.val_accuracy,
            &ra.train_accuracy,
            &rb.train_accuracy,
        ) {
            (Some(va), Some(vb), Some(ta), Some(tb)) => {
                let (val_gap, train_gap) = (va.median - vb.median, ta.median - tb.median);
                let verdict = train_gap_verdict(va, vb, ta, tb);
                Judged {
                    verdict,
                    numbers: format!(
                        "median train {na} {} vs {nb} {} (gap {:+.2} points); median validation {} vs {} (gap {:+.2} points)",
                        pct(ta.median),
                        pct(tb.median),
                        100.0 * train_gap,
                        pct(va.median),
                        pct(vb.median),
                        100.0 * val_gap
                    ),
                    table,
                }
            }
            _ => Judged::pending(table, progress),
        },
    };
    Ok(judged)
}

fn judge_best_value(
    path: &str,
    studies: &[Study],
    expected: &[(PathBuf, Value)],
    budget: &Budget,
) -> Result<Judged> {
    let mut table = format!(
        "| study | `{path}` | runs | median | IQR | min - max |\n|---|---:|---:|---:|---|---|\n"
    );
    let mut preferences = Vec::new();
    let mut numbers = Vec::new();
    let mut pending = false;
    for (study, (_, paper_value)) in studies.iter().zip(expected) {
        let groups = by_value(study, path)?;
        let mut spreads = Vec::new();
        for (value, runs) in &groups {
            if (runs.len() as u64) < budget.seeds {
                pending = true;
            }
            let s = spread(&metric_values(runs, study.file.metric))?;
            match &s {
                Some(x) => {
                    let (median, iqr, range) = spread_cell(&s);
                    writeln!(
                        table,
                        "| {} | {value} | {} | {median} | {iqr} | {range} |",
                        name(study),
                        x.n
                    )?
                }
                None => pending = true,
            }
            spreads.extend(s.map(|s| (value.clone(), s)));
        }
        if spreads.len() < 2 || pending {
            pending = true;
            numbers.push(format!(
                "{}: {} runs so far",
                name(study),
                study.trials()?.len()
            ));
            continue;
        }
        let (best_value, best) = spreads
            .iter()
            .max_by(|a, b| a.1.median.total_cmp(&b.1.median))
            .expect("two or more values");
        let clear = clear_preference(
            best,
            spreads
                .iter()
                .filter(|(v, _)| v != best_value)
                .map(|(_, s)| s),
        );
        let best_value = best_value.clone();
        numbers.push(format!(
            "{}: {} best ({}), paper {}",
            name(study),
            best_value,
            if clear { "clear" } else { "within the spread" },
            paper_value
        ));
        preferences.push((clear, same_value(&best_value, paper_value), best_value));
    }
    if pending {
        return Ok(Judged::pending(table, numbers.join("; ")));
    }
    let verdict = best_value_verdict(&preferences);
    Ok(Judged {
        verdict,
        numbers: numbers.join("; "),
        table,
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pair {
    Matches,
    Beats,
    TrainGap,
}

struct Judged {
    verdict: Verdict,
    numbers: String,
    table: String,
}

impl Judged {
    fn pending(table: String, progress: String) -> Self {
        Judged {
            verdict: Verdict::Pending,
            numbers: progress,
            table,
        }
    }
}

/// "A reaches the accuracy of B": A's median at least B's first quartile (reproduced), below B's
/// worst run (not reproduced), else inconclusive.
pub fn matches_verdict(a: &Spread, b: &Spread) -> Verdict {
    if a.median >= b.q1 {
        Verdict::Reproduced
    } else if a.median < b.min {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// "A beats B": interquartile ranges apart (reproduced), A's median not above B's (not
/// reproduced), else inconclusive.
pub fn beats_verdict(a: &Spread, b: &Spread) -> Verdict {
    if a.q1 > b.q3 {
        Verdict::Reproduced
    } else if a.median <= b.median {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// "At similar validation accuracy, A trains to a higher accuracy than B": A's median training
/// accuracy above B's third quartile and a training gap larger than the validation gap
/// (reproduced); A's median training accuracy not above B's (not reproduced); else inconclusive.
pub fn train_gap_verdict(
    val_a: &Spread,
    val_b: &Spread,
    train_a: &Spread,
    train_b: &Spread,
) -> Verdict {
    let (val_gap, train_gap) = (val_a.median - val_b.median, train_a.median - train_b.median);
    if train_a.median > train_b.q3 && train_gap > val_gap.abs() {
        Verdict::Reproduced
    } else if train_a.median <= train_b.median {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// A value is clearly preferred when its median is above every other value's third quartile.
pub fn clear_preference<'a>(best: &Spread, others: impl IntoIterator<Item = &'a Spread>) -> bool {
    others.into_iter().all(|s| best.median > s.q3)
}

/// Per study: (clear preference, preferred value is the paper's, preferred value). Reproduced
/// when every study clearly prefers the paper's value and the preferences are not all the same;
/// not reproduced when every preference is clear and one contradicts the paper; else
/// inconclusive.
pub fn best_value_verdict(preferences: &[(bool, bool, Value)]) -> Verdict {
    let all_clear = preferences.iter().all(|p| p.0);
    let all_as_paper = preferences.iter().all(|p| p.1);
    let all_same = preferences.windows(2).all(|w| same_value(&w[0].2, &w[1].2));
    if all_clear && all_as_paper && !all_same {
        Verdict::Reproduced
    } else if all_clear && preferences.iter().any(|p| !p.1) {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// The values a study sweeps at `key` (a `Sweep` entry of its search space).
fn sweep_values(study: &Study, key: &str) -> Result<Vec<Value>> {
    match study.file.search.get(key) {
        Some(Scaling::Sweep(values)) => Ok(values.clone()),
        _ => bail!(
            "{}: search: expected a Sweep([...]) at \"{key}\" (the hyperparameter a BestValue finding compares)",
            study.path.display()
        ),
    }
}

/// The study's finished runs grouped by the value at `key`, in sweep order.
fn by_value(study: &Study, key: &str) -> Result<Vec<(Value, Vec<TrialResult>)>> {
    let values = sweep_values(study, key)?;
    let path = key_paths(key).next().unwrap_or(key).to_string();
    let trials = study.trials()?;
    Ok(values
        .into_iter()
        .map(|v| {
            let runs = trials
                .values()
                .filter(|r| r.point.get(&path).is_some_and(|x| same_value(x, &v)))
                .cloned()
                .collect();
            (v, runs)
        })
        .collect())
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

/// The metric of every run that completed (diverged runs have none).
fn metric_values(runs: &[TrialResult], metric: Metric) -> Vec<f64> {
    runs.iter()
        .filter(|r| r.feasible())
        .filter_map(|r| metric.of(&r.summary))
        .collect()
}

fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::FinalValAccuracy => "validation accuracy",
        Metric::FinalTrainAccuracy => "training accuracy",
    }
}

/// The default group's optimizer, and the other groups' where they differ.
fn optimizers(study: &Study) -> String {
    let o = &study.base.optimizer;
    let mut out = o.default.optimizer.name.clone();
    for (name, group) in &o.groups {
        if let Some(opt) = &group.optimizer
            && opt.name != o.default.optimizer.name
        {
            write!(out, " ({name}: {})", opt.name).expect("writing to a String");
        }
    }
    out
}

/// GitHub's heading anchor: lower case, spaces to dashes, other punctuation dropped.
fn anchor(title: &str) -> String {
    title
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// Appends a CSV table, keeping one header line.
fn append_csv(all: &mut String, table: &str) {
    let mut lines = table.lines();
    let header = lines.next().unwrap_or_default();
    if all.is_empty() {
        all.push_str(header);
        all.push('\n');
    }
    for line in lines {
        all.push_str(line);
        all.push('\n');
    }
}

/// `bigbatch reproduce`: run the selected findings (unless `report_only`), then write the report
/// of all of them: `--only` limits what runs, not what the report shows.
pub fn reproduce(
    findings: &Path,
    out: &Path,
    only: &[String],
    budget: Option<Budget>,
    backend: Backend,
) -> Result<()> {
    let r = Reproduction::load(findings, out)?;
    r.selected(only)?; // an unknown name is an error, also with --report-only
    if let Some(budget) = budget {
        r.run(only, &budget, backend)
            .with_context(|| format!("reproducing {}", findings.display()))?;
    }
    for path in r.report()? {
        println!("written: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The spread of five values, quartiles by numpy's linear rule worked by hand: for sorted
    /// x0..x4, q1 = x1, median = x2, q3 = x3.
    fn five(v: [f64; 5]) -> Spread {
        spread(&v).unwrap().unwrap()
    }

    #[test]
    fn quartiles_of_five_by_hand() {
        let s = five([0.80, 0.70, 0.90, 0.60, 0.75]);
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (0.60, 0.70, 0.75, 0.80, 0.90)
        );
    }

    #[test]
    fn matches_rule() {
        let reference = five([0.80, 0.82, 0.84, 0.86, 0.88]); // q1 0.82, min 0.80
        let at_q1 = five([0.70, 0.75, 0.82, 0.90, 0.95]);
        let between = five([0.70, 0.75, 0.81, 0.90, 0.95]);
        let below_all = five([0.70, 0.75, 0.79, 0.90, 0.95]);
        assert_eq!(matches_verdict(&at_q1, &reference), Verdict::Reproduced);
        assert_eq!(matches_verdict(&between, &reference), Verdict::Inconclusive);
        assert_eq!(
            matches_verdict(&below_all, &reference),
            Verdict::NotReproduced
        );
    }

    #[test]
    fn beats_rule() {
        let worse = five([0.20, 0.25, 0.30, 0.35, 0.90]); // median 0.30, q3 0.35
        let apart = five([0.30, 0.36, 0.70, 0.75, 0.80]); // q1 0.36 > 0.35
        let overlapping = five([0.10, 0.34, 0.70, 0.75, 0.80]); // q1 0.34
        let not_above = five([0.10, 0.20, 0.30, 0.95, 0.99]); // median 0.30
        assert_eq!(beats_verdict(&apart, &worse), Verdict::Reproduced);
        assert_eq!(beats_verdict(&overlapping, &worse), Verdict::Inconclusive);
        assert_eq!(beats_verdict(&not_above, &worse), Verdict::NotReproduced);
    }

    #[test]
    fn train_gap_rule() {
        let val_a = five([0.84, 0.85, 0.86, 0.87, 0.88]);
        let val_b = five([0.84, 0.85, 0.85, 0.87, 0.88]); // val gap +0.01
        let train_b = five([0.86, 0.87, 0.88, 0.89, 0.90]); // median 0.88, q3 0.89
        let clear = five([0.88, 0.89, 0.92, 0.93, 0.94]); // gap +0.04 > 0.01, above q3
        let small = five([0.86, 0.87, 0.885, 0.93, 0.94]); // above median, not q3
        let lower = five([0.80, 0.81, 0.87, 0.93, 0.94]);
        assert_eq!(
            train_gap_verdict(&val_a, &val_b, &clear, &train_b),
            Verdict::Reproduced
        );
        assert_eq!(
            train_gap_verdict(&val_a, &val_b, &small, &train_b),
            Verdict::Inconclusive
        );
        assert_eq!(
            train_gap_verdict(&val_a, &val_b, &lower, &train_b),
            Verdict::NotReproduced
        );
        // A training gap of 0.04 with a validation gap of 0.05 is not "at similar validation
        // accuracy": inconclusive.
        let val_far = five([0.75, 0.78, 0.80, 0.82, 0.84]); // median 0.80 vs 0.85
        assert_eq!(
            train_gap_verdict(&val_far, &val_b, &clear, &train_b),
            Verdict::Inconclusive
        );
    }

    #[test]
    fn best_value_rule() {
        let p = |clear, as_paper, v: f64| (clear, as_paper, json!(v));
        // Nesterov clearly prefers 2, LARS clearly prefers 1, as the paper.
        assert_eq!(
            best_value_verdict(&[p(true, true, 2.0), p(true, true, 1.0)]),
            Verdict::Reproduced
        );
        // Both clearly prefer 2: LARS contradicts the paper.
        assert_eq!(
            best_value_verdict(&[p(true, true, 2.0), p(true, false, 2.0)]),
            Verdict::NotReproduced
        );
        // One preference within the spread.
        assert_eq!(
            best_value_verdict(&[p(true, true, 2.0), p(false, true, 1.0)]),
            Verdict::Inconclusive
        );
        let best = five([0.80, 0.82, 0.84, 0.86, 0.88]);
        assert!(clear_preference(
            &best,
            [&five([0.70, 0.75, 0.80, 0.83, 0.90])]
        ));
        assert!(!clear_preference(
            &best,
            [&five([0.70, 0.75, 0.80, 0.84, 0.90])]
        ));
    }
}
