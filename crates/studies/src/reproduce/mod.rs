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
//!
//! Split by concern: [`findings`] (the findings file and the budget), [`judge`] (the verdict
//! rules), [`page`] (the report pages); this module runs what the findings need.

pub mod findings;
pub mod judge;
mod page;

pub use findings::{
    Budget, Claim, Deviation, Finding, FindingsFile, FixedTarget, TargetRule, Verdict,
};
pub use judge::best_value_verdict;

use crate::study::Study;
use anyhow::{Context, Result, bail};
use bigbatch_core::config::{load_ron, write_atomic};
use bigbatch_engine::backend::Backend;
use judge::sweep_values;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
            if let Some(rule) = &f.target
                && (rule.rank == 0 || !(rule.round_to.is_finite() && rule.round_to > 0.0))
            {
                bail!(
                    "{origin}: findings[{i}] ({}): target: expected rank >= 1 and a finite round_to > 0, got rank {} and round_to {}",
                    f.name,
                    rule.rank,
                    rule.round_to
                );
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
        {
            // Two reproductions of different findings may share the output folder.
            let _lock = self.lock_shared_files()?;
            let mut budgets = self.budgets()?;
            for f in &findings {
                let old = budgets.get(&f.name).cloned().unwrap_or_default();
                let mut new = Budget {
                    looked_at: old.looked_at.clone(),
                    ..budget.clone()
                };
                if new.seeds > old.seeds && self.judged_under(f, &old)? {
                    new.looked_at.push(old.seeds);
                }
                budgets.insert(f.name.clone(), new);
            }
            write_atomic(
                &self.budget_path(),
                serde_json::to_string_pretty(&budgets)?.as_bytes(),
            )?;
        }
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
        // The trials of every study first, then the targets (fixed from the references' trials
        // before any rerun), then the reruns: as the paper, which fixed its target in advance.
        for (path, _) in &tuned {
            let study = self.study(path)?;
            eprintln!("== {}: {} trials", path.display(), budget.trials);
            study.run(budget.trials, budget.workers, backend)?;
        }
        for f in &findings {
            if let Some(fixed) = self.fix_target(f)? {
                eprintln!("== {}: target {} ({})", f.name, fixed.value, fixed.how);
            }
        }
        for (path, rerun) in &tuned {
            if *rerun {
                let study = self.study(path)?;
                eprintln!(
                    "== {}: the best point over {} fresh seeds",
                    path.display(),
                    budget.seeds
                );
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

    /// An exclusive lock on `<out>/reproduce.lock` (waiting for it), held while `budget.json`
    /// or `targets.json` is read and rewritten: reproductions of different findings run at the
    /// same time on one output folder (each study's own directory is locked by its runs) must
    /// not lose each other's entries.
    fn lock_shared_files(&self) -> Result<std::fs::File> {
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("cannot create {}", self.out.display()))?;
        let path = self.out.join("reproduce.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock()
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }

    fn targets_path(&self) -> PathBuf {
        self.out.join("targets.json")
    }

    /// The targets fixed so far (`<out>/targets.json`), by finding name.
    pub fn targets(&self) -> Result<BTreeMap<String, FixedTarget>> {
        let path = self.targets_path();
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| {
                format!(
                    "{}: expected {{\"<finding>\": {{\"value\": x, \"how\": \"...\"}}, ...}}",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// Fixes the finding's target by its rule from the reference study's trials, once, and
    /// records it; a target already recorded is never recomputed. `None` without a rule.
    pub fn fix_target(&self, f: &Finding) -> Result<Option<FixedTarget>> {
        let Some(rule) = &f.target else {
            return Ok(None);
        };
        let _lock = self.lock_shared_files()?;
        let mut targets = self.targets()?;
        if let Some(fixed) = targets.get(&f.name) {
            return Ok(Some(fixed.clone()));
        }
        let reference = self.study(&rule.reference)?;
        let mut feasible: Vec<_> = reference
            .trials()?
            .into_values()
            .filter(|r| r.feasible())
            .collect();
        // Best first; ties by the lower index, as `Study::best`.
        feasible.sort_by(|a, b| {
            b.metric
                .partial_cmp(&a.metric)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then(a.index.cmp(&b.index))
        });
        let Some(trial) = feasible.get(rule.rank - 1) else {
            bail!(
                "{}: target: {} has {} feasible trials, fewer than rank {}",
                f.name,
                rule.reference.display(),
                feasible.len(),
                rule.rank
            );
        };
        let metric = trial.metric.unwrap_or(0.0);
        let value = (metric / rule.round_to + 1e-9).floor() * rule.round_to;
        let value = (value * 1e9).round() / 1e9;
        let reruns = reference.reruns()?.len();
        let fixed = FixedTarget {
            value,
            how: format!(
                "the {} best of {} feasible tuning trials of {} (trial {}, {}) rounded down to a multiple of {}; fixed when those trials had finished, {}",
                ordinal(rule.rank),
                feasible.len(),
                rule.reference.display(),
                trial.index,
                crate::report::pct(metric),
                rule.round_to,
                if reruns == 0 {
                    "before any rerun".to_string()
                } else {
                    format!("after {reruns} reruns of the reference had run")
                }
            ),
        };
        targets.insert(f.name.clone(), fixed.clone());
        write_atomic(
            &self.targets_path(),
            serde_json::to_string_pretty(&targets)?.as_bytes(),
        )?;
        Ok(Some(fixed))
    }

    fn budget_path(&self) -> PathBuf {
        self.out.join("budget.json")
    }

    /// The budget of each finding as recorded by the runs (`budget.json`: finding name ->
    /// `{"trials": N, "seeds": K}`; an older file holding one `{"trials": N, "seeds": K}` applies
    /// it to every finding). Findings never run get the default.
    pub fn budgets(&self) -> Result<BTreeMap<String, Budget>> {
        let path = self.budget_path();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let expected = || {
            format!(
                "{}: expected {{\"<finding>\": {{\"trials\": N, \"seeds\": K}}, ...}}",
                path.display()
            )
        };
        let mut out: BTreeMap<String, Budget> = BTreeMap::new();
        if !text.trim().is_empty() {
            let value: serde_json::Value = serde_json::from_str(&text).with_context(expected)?;
            if value.get("trials").is_some() {
                let one: Budget = serde_json::from_value(value).with_context(expected)?;
                for f in &self.file.findings {
                    out.insert(f.name.clone(), one.clone());
                }
            } else {
                out = serde_json::from_value(value).with_context(expected)?;
            }
        }
        Ok(out)
    }

    /// The budget a finding is judged against.
    pub fn budget(&self, finding: &str) -> Result<Budget> {
        Ok(self.budgets()?.get(finding).cloned().unwrap_or_default())
    }

    /// Whether the finding's runs are complete under `budget`, i.e. its report gave a verdict
    /// (anything but pending) that one could have looked at.
    fn judged_under(&self, f: &Finding, budget: &Budget) -> Result<bool> {
        if self.waiting_for(f)?.is_some() {
            return Ok(false);
        }
        let studies = self.studies_of(f)?;
        let judged = judge::judge(f, &studies, budget, &self.file.bootstrap)?;
        Ok(judged.verdict != Verdict::Pending)
    }

    /// For a pending pair finding whose seeds were raised after a look (`looked_at`): that last
    /// look judged again from the reruns it saw (each study's reruns of its best point with the
    /// lowest seeds, [`Study::as_at_look`]), with the seeds of that look. `None` for other
    /// findings, and for sweeps (`BestValue`), whose looks are not restored.
    fn earlier_look(
        &self,
        f: &Finding,
        budget: &Budget,
        verdict: &Verdict,
    ) -> Result<Option<(u64, judge::Judged)>> {
        let Some(&seeds) = budget.looked_at.last() else {
            return Ok(None);
        };
        if *verdict != Verdict::Pending || matches!(f.claim, Claim::BestValue { .. }) {
            return Ok(None);
        }
        let studies: Vec<Study> = self
            .studies_of(f)?
            .into_iter()
            .map(|s| s.as_at_look(seeds as usize))
            .collect();
        let then = Budget {
            seeds,
            ..budget.clone()
        };
        let judged = judge::judge(f, &studies, &then, &self.file.bootstrap)?;
        Ok((judged.verdict != Verdict::Pending).then_some((seeds, judged)))
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
        let target = self.targets()?.get(&f.name).map(|t| t.value);
        paths
            .into_iter()
            .map(|p| {
                let mut study = self.study(p)?;
                if f.target.is_some() {
                    study.file.target = target;
                }
                Ok(study)
            })
            .collect()
    }
}

/// "1st", "2nd", "3rd", "4th", ...
pub(super) fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// `bigbatch reproduce`: run the selected findings (unless `report_only`), then write the report
/// of all of them (`--only` limits what runs, not what the report shows), and its summary table
/// into `summary_into` ([`write_summary_into`]).
pub fn reproduce(
    findings: &Path,
    out: &Path,
    only: &[String],
    budget: Option<Budget>,
    backend: Backend,
    summary_into: Option<&Path>,
) -> Result<()> {
    let r = Reproduction::load(findings, out)?;
    r.selected(only)?; // an unknown name is an error, also with --report-only
    if let Some(file) = summary_into {
        // Checked before anything runs: a missing marker should not wait for hours of studies.
        replace_summary(file, "")?;
    }
    if let Some(budget) = budget {
        r.run(only, &budget, backend)
            .with_context(|| format!("reproducing {}", findings.display()))?;
    }
    let report = r.report()?;
    for path in &report.files {
        println!("written: {}", path.display());
    }
    if let Some(file) = summary_into {
        write_summary_into(file, &report.summary)?;
        println!("written: the summary table in {}", file.display());
    }
    Ok(())
}

/// The line after which `--summary-into` writes the summary table.
pub const SUMMARY_BEGIN: &str =
    "<!-- reproduction summary: written by `bigbatch reproduce --summary-into` -->";
/// The line before which the summary table ends.
pub const SUMMARY_END: &str = "<!-- end of the reproduction summary -->";

/// Replaces what lies between the lines [`SUMMARY_BEGIN`] and [`SUMMARY_END`] of the markdown
/// file `file` with `summary` (written atomically, only when it changes); an error naming the
/// file when either line is missing, repeated or out of order.
pub fn write_summary_into(file: &Path, summary: &str) -> Result<()> {
    let (text, replaced) = replace_summary(file, summary)?;
    if text != replaced {
        write_atomic(file, replaced.as_bytes())?;
    }
    Ok(())
}

/// The text of `file` and the text with `summary` between the markers.
fn replace_summary(file: &Path, summary: &str) -> Result<(String, String)> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("--summary-into: cannot read {}", file.display()))?;
    let lines: Vec<&str> = text.lines().collect();
    let find = |marker: &str| -> Result<usize> {
        let at: Vec<usize> = (0..lines.len())
            .filter(|&i| lines[i].trim() == marker)
            .collect();
        match at.as_slice() {
            [i] => Ok(*i),
            [] => bail!(
                "{}: no line `{marker}`; the summary table is written between the lines `{SUMMARY_BEGIN}` and `{SUMMARY_END}`",
                file.display()
            ),
            more => bail!(
                "{}: the line `{marker}` appears {} times (lines {}); expected once",
                file.display(),
                more.len(),
                more.iter()
                    .map(|i| (i + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    let (begin, end) = (find(SUMMARY_BEGIN)?, find(SUMMARY_END)?);
    if end < begin {
        bail!(
            "{}: `{SUMMARY_END}` (line {}) comes before `{SUMMARY_BEGIN}` (line {})",
            file.display(),
            end + 1,
            begin + 1
        );
    }
    let mut replaced = lines[..=begin].join("\n");
    replaced += "\n\n";
    replaced += summary.trim_end();
    replaced += "\n\n";
    replaced += &lines[end..].join("\n");
    if text.ends_with('\n') {
        replaced.push('\n');
    }
    Ok((text, replaced))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("bigbatch-summary-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn summary_goes_between_the_markers_and_nowhere_else() {
        let path = file(
            "readme.md",
            &format!("# Title\n\nbefore\n{SUMMARY_BEGIN}\n\n| old |\n\n{SUMMARY_END}\nafter\n"),
        );
        write_summary_into(&path, "| a | b |\n|---|---|\n| 1 | 2 |\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!(
                "# Title\n\nbefore\n{SUMMARY_BEGIN}\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n{SUMMARY_END}\nafter\n"
            )
        );
        // Written again with the same table: the same text.
        write_summary_into(&path, "| a | b |\n|---|---|\n| 1 | 2 |").unwrap();
        assert!(
            std::fs::read_to_string(&path)
                .unwrap()
                .contains("| 1 | 2 |\n\n<!-- end")
        );
    }

    #[test]
    fn missing_repeated_or_swapped_markers_are_errors_naming_the_file() {
        let cases = [
            ("none.md", "# no markers\n".to_string(), "no line"),
            (
                "twice.md",
                format!("{SUMMARY_BEGIN}\n{SUMMARY_BEGIN}\n{SUMMARY_END}\n"),
                "appears 2 times (lines 1, 2)",
            ),
            (
                "swapped.md",
                format!("{SUMMARY_END}\n{SUMMARY_BEGIN}\n"),
                "comes before",
            ),
        ];
        for (name, text, expected) in cases {
            let path = file(name, &text);
            let e = format!("{:#}", write_summary_into(&path, "| x |").unwrap_err());
            assert!(e.contains(name) && e.contains(expected), "{name}: {e}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), text, "{name}");
        }
        let e = format!(
            "{:#}",
            write_summary_into(Path::new("/nonexistent/README.md"), "").unwrap_err()
        );
        assert!(e.contains("/nonexistent/README.md"), "{e}");
    }
}
