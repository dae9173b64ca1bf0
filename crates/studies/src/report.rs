//! `bigbatch report`: the protocol and results of one or more studies as markdown and CSV tables,
//! shaped like the paper's Tables 2 and 3 (validation and training accuracy over fresh seeds, the
//! fraction of seeds reaching the target, steps to target), and every pair of studies compared
//! with bootstrap intervals ([`Comparison`]). Every report starts with the protocol (trials per
//! study, search space, budget, seeds) so that unequal tuning effort is visible. [`plots`] draws
//! the charts beside the tables, among them the tuning-budget curves.

use crate::diagnostics::RunDiagnostics;
use crate::stats::{
    Bootstrap, Group, Interval, Statistic, difference, expected_max_band, improvement,
};
use crate::study::{Metric, Study, TrialResult, val_curve};
use anyhow::Result;
use bigbatch_core::config::write_atomic;
use bigbatch_core::study::{Scaling, Spread};
use bigbatch_engine::run_config::RunConfig;
use bigbatch_plots::{Band, BoxGroup, Series, band_chart, box_plot, line_chart};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A difference of accuracies in points, signed.
pub fn points(x: f64) -> String {
    format!("{:+.2}", 100.0 * x)
}

/// `[low, high]` in points.
pub fn interval_points(i: &Interval) -> String {
    format!("[{}, {}]", points(i.low), points(i.high))
}

/// The statistics of one comparison of two studies' fresh seeds, as reports print them.
pub struct Comparison {
    pub seeds: (usize, usize),
    pub mean: Interval,
    pub median: Interval,
    pub improvement: Interval,
    /// The difference of means with the tuning noise of both studies (when both have trials).
    pub mean_with_tuning: Option<Interval>,
}

impl Comparison {
    /// Compares `a - b` (fresh seeds' values, and the feasible trials' selection metric for the
    /// tuning noise).
    pub fn of(
        a: &[f64],
        b: &[f64],
        trials: Option<(&[f64], &[f64])>,
        boot: &Bootstrap,
    ) -> Result<Self> {
        let g = |seeds, trials| Group { seeds, trials };
        let tuned = match trials {
            Some((ta, tb)) if !ta.is_empty() && !tb.is_empty() => Some(difference(
                g(a, Some(ta)),
                g(b, Some(tb)),
                Statistic::Mean,
                true,
                boot,
            )?),
            _ => None,
        };
        Ok(Comparison {
            seeds: (a.len(), b.len()),
            mean: difference(g(a, None), g(b, None), Statistic::Mean, false, boot)?,
            median: difference(g(a, None), g(b, None), Statistic::Median, false, boot)?,
            improvement: improvement(a, b, boot)?,
            mean_with_tuning: tuned,
        })
    }

    /// A markdown table of the comparison `a - b`.
    pub fn table(&self, a: &str, b: &str, level: f64) -> String {
        let level = format!("{:.0}%", 100.0 * level);
        let mut t = format!("| {a} vs {b} | estimate | {level} interval |\n|---|---:|---|\n");
        let mut row = |what: &str, i: &Interval| {
            t += &format!(
                "| {what} | {} | {} |\n",
                points(i.estimate),
                interval_points(i)
            );
        };
        if let Some(i) = &self.mean_with_tuning {
            row("difference of means, seed and tuning noise (points)", i);
        }
        row("difference of means, seed noise (points)", &self.mean);
        row("difference of medians, seed noise (points)", &self.median);
        let p = &self.improvement;
        t += &format!(
            "| probability that a seed of {a} beats a seed of {b} | {:.2} | [{:.2}, {:.2}] |\n\
             | fresh seeds | {} and {} | |\n",
            p.estimate, p.low, p.high, self.seeds.0, self.seeds.1
        );
        t
    }
}

/// One study's numbers for comparisons: the fresh seeds' final values and the feasible trials'
/// selection metric.
pub struct StudyValues {
    pub metric: Vec<f64>,
    pub val: Vec<f64>,
    pub train: Vec<f64>,
    pub trials: Vec<f64>,
}

impl StudyValues {
    pub fn of(study: &Study) -> Result<Self> {
        let fresh = study.fresh_reruns()?;
        let done: Vec<&TrialResult> = fresh.values().filter(|r| r.feasible()).collect();
        let values =
            |f: &dyn Fn(&TrialResult) -> Option<f64>| done.iter().filter_map(|r| f(r)).collect();
        Ok(StudyValues {
            metric: values(&|r| study.file.metric.of(&r.summary)),
            val: values(&|r| r.summary.final_val_accuracy),
            train: values(&|r| r.summary.final_train_accuracy),
            trials: study
                .trials()?
                .values()
                .filter(|r| r.feasible())
                .filter_map(|r| r.metric)
                .collect(),
        })
    }
}

/// Every pair of studies with fresh seeds compared on their metric (the first study's when they
/// differ): a markdown section, empty for fewer than two such studies.
pub fn comparisons(studies: &[Study], boot: &Bootstrap) -> Result<String> {
    let values: Vec<(String, StudyValues, Metric)> = studies
        .iter()
        .map(|s| Ok((name(s), StudyValues::of(s)?, s.file.metric)))
        .collect::<Result<_>>()?;
    let mut md = String::new();
    for i in 0..values.len() {
        for j in i + 1..values.len() {
            let ((na, a, metric), (nb, b, _)) = (&values[i], &values[j]);
            let (x, y) = match metric {
                Metric::FinalValAccuracy => (&a.val, &b.val),
                Metric::FinalTrainAccuracy => (&a.train, &b.train),
            };
            if x.is_empty() || y.is_empty() {
                continue;
            }
            let c = Comparison::of(x, y, Some((&a.trials, &b.trials)), boot)?;
            writeln!(
                md,
                "\n### {na} - {nb} ({})\n\n{}",
                metric_words(*metric),
                c.table(na, nb, boot.level)
            )?;
        }
    }
    if md.is_empty() {
        return Ok(md);
    }
    Ok(format!(
        "\n## Comparisons over fresh seeds\n\nMethod: {}. The seed-and-tuning interval also \
         redoes each study's tuning in every resample (as many trials as it ran, drawn with \
         replacement, the best kept), so it shows what the tuning budget buys; the probability \
         of improvement counts ties as one half.\n{md}",
        boot.method()
    ))
}

/// What a metric measures, in words.
pub fn metric_name(metric: Metric) -> &'static str {
    match metric {
        Metric::FinalValAccuracy => "validation accuracy",
        Metric::FinalTrainAccuracy => "training accuracy",
    }
}

/// The final value a metric is of, in words.
pub fn metric_words(metric: Metric) -> String {
    format!("final {}", metric_name(metric))
}

/// A fraction as a percentage with two decimals.
pub fn pct(x: f64) -> String {
    format!("{:.2}%", 100.0 * x)
}

/// Median, interquartile range and range as percentages (`-` for no runs).
pub fn spread_cell(s: &Option<Spread>) -> (String, String, String) {
    match s {
        Some(s) => (
            pct(s.median),
            format!("{} - {}", pct(s.q1), pct(s.q3)),
            format!("{} - {}", pct(s.min), pct(s.max)),
        ),
        None => ("-".into(), "-".into(), "-".into()),
    }
}

/// A scaling as the study file writes it.
pub fn scaling(s: &Scaling) -> String {
    let list = |v: &[serde_json::Value]| {
        v.iter()
            .map(|x| x.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match s {
        Scaling::Log(a, b) => format!("Log({a}, {b})"),
        Scaling::Linear(a, b) => format!("Linear({a}, {b})"),
        Scaling::Discrete(v) => format!("Discrete([{}])", list(v)),
        Scaling::Sweep(v) => format!("Sweep([{}])", list(v)),
        Scaling::OneMinus(inner) => format!("OneMinus({})", scaling(inner)),
        Scaling::Fixed(v) => format!("Fixed({v})"),
    }
}

/// A study's name: its file name without extension.
pub fn name(study: &Study) -> String {
    study
        .path
        .file_stem()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// The header of the tidy CSV table: one row per study and metric.
pub const CSV_HEADER: &str = "study,optimizer,steps,batch_size,feasible_trials,diverged_trials,best_trial,fresh_seeds,metric,n,mean,median,q1,q3,min,max";

/// The markdown report and the tidy CSV table ([`CSV_HEADER`]: one row per study and metric:
/// `val_accuracy`, `train_accuracy`, `fraction_reaching_target`, `steps_to_target`, the last
/// with its median only, `inf` when the median seed never reaches the target). `inside` is the
/// studies' best-point diagnostics ([`best_point_diagnostics`], read once for tables and charts).
pub fn tables(studies: &[Study], inside: &[RunDiagnostics]) -> Result<(String, String)> {
    let mut md = String::from("# bigbatch report\n\n## Protocol\n\n");
    md += "| study | optimizer (default group) | steps | batch | trials finished | feasible | diverged | search dims | fresh seeds |\n";
    md += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    let mut csv = format!("{CSV_HEADER}\n");
    let mut results = String::from(
        "\n## Results over fresh seeds (best trial rerun)\n\n\
         | study | best trial | fresh seeds | mean val | median val | val IQR | val min - max | median train | target | reaching target | median steps to target |\n\
         |---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|\n",
    );
    let mut spaces = String::from("\n## Search spaces and best points\n");
    for study in studies {
        let n = name(study);
        let trials = study.trials()?;
        let feasible = trials.values().filter(|r| r.feasible()).count();
        let best: Option<TrialResult> = study.best()?;
        let stats = study.rerun_stats()?;
        let values = StudyValues::of(study)?;
        // The budget as trials ran it (the base with `Fixed` entries and trial 0's point).
        let (base, _) = study.trial_config(0)?;
        let base = &base;
        let optimizer = &base.optimizer.default.optimizer.name;
        let dims = study
            .file
            .search
            .values()
            .filter(|s| !matches!(s, Scaling::Fixed(_)))
            .count();
        writeln!(
            md,
            "| {n} | {optimizer} | {} | {} | {} | {feasible} | {} | {dims} | {} |",
            base.train.steps,
            base.train.batch_size,
            trials.len(),
            trials.len() - feasible,
            stats.seeds
        )?;
        let (val_med, val_iqr, val_range) = spread_cell(&stats.val_accuracy);
        let (train_med, _, _) = spread_cell(&stats.train_accuracy);
        let target = study.file.target.map_or("-".into(), pct);
        let reaching = stats
            .fraction_reaching_target
            .map_or("-".into(), |f| format!("{:.0}%", 100.0 * f));
        let steps = stats
            .steps_to_target
            .as_ref()
            .map_or("-".into(), |s| s.cell());
        let best_index = best.as_ref().map_or("-".into(), |b| b.index.to_string());
        let val_mean = if values.val.is_empty() {
            "-".into()
        } else {
            pct(crate::stats::mean(&values.val))
        };
        writeln!(
            results,
            "| {n} | {best_index} | {} | {val_mean} | {val_med} | {val_iqr} | {val_range} | {train_med} | {target} | {reaching} | {steps} |",
            stats.seeds
        )?;
        let prefix = format!(
            "{n},{optimizer},{},{},{feasible},{},{best_index},{}",
            base.train.steps,
            base.train.batch_size,
            trials.len() - feasible,
            stats.seeds
        );
        for (metric, v, s) in [
            ("val_accuracy", &values.val, &stats.val_accuracy),
            ("train_accuracy", &values.train, &stats.train_accuracy),
        ] {
            if let Some(s) = s {
                writeln!(
                    csv,
                    "{prefix},{metric},{},{},{},{},{},{},{}",
                    s.n,
                    crate::stats::mean(v),
                    s.median,
                    s.q1,
                    s.q3,
                    s.min,
                    s.max
                )?;
            }
        }
        if let Some(f) = stats.fraction_reaching_target {
            writeln!(
                csv,
                "{prefix},fraction_reaching_target,{},{f},,,,,",
                stats.seeds
            )?;
        }
        if let Some(t) = &stats.steps_to_target {
            let median = t.median.map_or("inf".into(), |m| m.to_string());
            writeln!(csv, "{prefix},steps_to_target,{},,{median},,,,", t.seeds)?;
        }
        writeln!(
            spaces,
            "\n### {n}\n\nstudy file `{}`, quasi-random seed {}, selection metric {:?}",
            study.path.display(),
            study.file.seed,
            study.file.metric
        )?;
        let stage = study.final_stage()?;
        if let Some(stage) = &stage {
            writeln!(
                spaces,
                "\nTwo stages: trials 0-{} over the initial ranges, then trials from {} over final ranges centred on trial {} ({} of each initial range's width); the best point is the best trial of both stages.\n\n| path | initial range | final range | best trial's value |\n|---|---|---|---|",
                stage.first_trial.saturating_sub(1),
                stage.first_trial,
                stage.centred_on,
                study.file.refine.map_or(1.0, |r| r.width),
            )?;
        } else {
            writeln!(
                spaces,
                "\n| path | scaling | best trial's value |\n|---|---|---|"
            )?;
        }
        for (path, s) in &study.file.search {
            let value = best
                .as_ref()
                .and_then(|b| {
                    b.point
                        .get(bigbatch_core::study::key_paths(path).next().unwrap_or(path))
                })
                .map_or("-".into(), |v| v.to_string());
            match &stage {
                Some(stage) => writeln!(
                    spaces,
                    "| `{path}` | {} | {} | {value} |",
                    scaling(s),
                    stage.search.get(path).map_or("-".into(), scaling)
                )?,
                None => writeln!(spaces, "| `{path}` | {} | {value} |", scaling(s))?,
            }
        }
        for warning in study.edge_warnings()? {
            writeln!(spaces, "\n**Warning**: {warning}.")?;
        }
    }
    md += &results;
    md += &comparisons(studies, &Bootstrap::default())?;
    md += &spaces;
    if !inside.is_empty() {
        md += "
## Inside training (best point)

";
        md += "Per-layer diagnostics of each study's best point (the fresh rerun that recorded them at the most steps, else the best trial), at the first and last diagnosed steps; the charts `diagnostics-*` show them over steps.

";
        md += &crate::diagnostics::summary_table(inside)?;
        for r in inside {
            writeln!(
                md,
                "
{}: `{}`",
                r.label,
                r.dir.display()
            )?;
        }
    }
    Ok((md, csv))
}

/// Each study's best-point run that recorded diagnostics ([`crate::diagnostics::best_point_run`]).
pub fn best_point_diagnostics(studies: &[Study]) -> Result<Vec<RunDiagnostics>> {
    let mut runs = Vec::new();
    for study in studies {
        if let Some(r) = crate::diagnostics::best_point_run(study, &name(study))? {
            runs.push(r);
        }
    }
    Ok(runs)
}

/// The configs whose schedules a study's charts show: the best trial's, or for a study that
/// sweeps values (a `Sweep` entry other than `train.seed`) one per swept combination of its
/// finished runs, labelled with the swept values.
fn schedule_configs(study: &Study) -> Result<Vec<(String, RunConfig)>> {
    let n = name(study);
    let swept: Vec<&String> = study
        .file
        .search
        .iter()
        .filter(|(k, v)| matches!(v, Scaling::Sweep(_)) && k.as_str() != "train.seed")
        .map(|(k, _)| k)
        .collect();
    if swept.is_empty() {
        let index = study.best()?.map_or(0, |b| b.index);
        return Ok(vec![(
            format!("{n} (trial {index})"),
            study.trial_config(index)?.0,
        )]);
    }
    let mut seen = BTreeMap::new();
    for (index, r) in study.trials()? {
        let label: Vec<String> = swept
            .iter()
            .map(|k| {
                let path = bigbatch_core::study::key_paths(k).next().unwrap_or(k);
                let v = r.point.get(path).map_or("-".into(), |v| v.to_string());
                format!("{path}={v}")
            })
            .collect();
        seen.entry(label.join(", ")).or_insert(index);
    }
    seen.into_iter()
        .map(|(label, index)| Ok((format!("{n} {label}"), study.trial_config(index)?.0)))
        .collect()
}

/// Charts of the studies in `out_dir` (each as SVG and PNG): the learning-rate schedules of the
/// best points (or of each swept value) on one chart, raw and normalised by their peak (the
/// paper's Figure 1); final validation and training accuracy over fresh seeds as box plots with
/// the target line (Figure 4); the median validation curve over fresh seeds; the tuning-budget
/// curves (the expected best of k trials with one standard deviation either side, Dodge et al.
/// 2019); performance profiles; the best points' diagnostics (`inside`, as for [`tables`]).
/// Returns the files written; a chart with nothing to show is left out.
pub fn plots(studies: &[Study], inside: &[RunDiagnostics], out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let (mut schedules, mut normalised) = (Vec::new(), Vec::new());
    let (mut boxes, mut train_boxes) = (Vec::new(), Vec::new());
    let mut curves = Vec::new();
    let mut budget = Vec::new();
    for study in studies {
        let n = name(study);
        for (label, config) in schedule_configs(study)? {
            let steps = config.train.steps;
            let stride = (steps / 500).max(1);
            let points: Vec<(f64, f64)> = (0..=steps)
                .step_by(stride as usize)
                .map(|t| (t as f64, config.schedule.lr(t)))
                .collect();
            let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
            if peak > 0.0 {
                normalised.push(Series {
                    label: label.clone(),
                    points: points.iter().map(|&(t, lr)| (t, lr / peak)).collect(),
                });
            }
            schedules.push(Series { label, points });
        }
        let values = StudyValues::of(study)?;
        boxes.push(BoxGroup {
            label: n.clone(),
            values: values.val.clone(),
        });
        train_boxes.push(BoxGroup {
            label: n.clone(),
            values: values.train.clone(),
        });
        let fresh = study.fresh_reruns()?;
        let mut by_step: BTreeMap<u64, Vec<f64>> = Default::default();
        for r in fresh.values().filter(|r| r.feasible()) {
            for (step, acc) in val_curve(&study.rerun_dir(r.seed))? {
                by_step.entry(step).or_default().push(acc);
            }
        }
        curves.push(Series {
            label: format!("{n} (median of {} fresh seeds)", fresh.len()),
            points: by_step
                .into_iter()
                .filter_map(|(step, accs)| {
                    bigbatch_core::study::spread(&accs)
                        .ok()
                        .flatten()
                        .map(|s| (step as f64, s.median))
                })
                .collect(),
        });
        let sweeps = study
            .file
            .search
            .values()
            .any(|v| matches!(v, Scaling::Sweep(_)));
        if !values.trials.is_empty() && !sweeps {
            budget.push(Band {
                label: format!("{n} ({} trials)", values.trials.len()),
                points: tuning_curve(&values.trials)?,
            });
        }
    }
    // (A sweep study shows one schedule per swept value of its finished runs: none before any.)
    if !schedules.is_empty() {
        written.extend(line_chart(
            &out_dir.join("schedules"),
            "Learning-rate schedules of the best points",
            "step",
            "learning rate",
            &schedules,
        )?);
    }
    if !normalised.is_empty() {
        written.extend(line_chart(
            &out_dir.join("schedules_normalised"),
            "Learning-rate schedules, each divided by its peak",
            "step",
            "learning rate / peak",
            &normalised,
        )?);
    }
    let targets: Vec<Option<f64>> = studies.iter().map(|s| s.file.target).collect();
    let target = if targets.windows(2).all(|w| w[0] == w[1]) {
        targets.first().copied().flatten()
    } else {
        None
    };
    if boxes.iter().any(|b| !b.values.is_empty()) {
        written.extend(box_plot(
            &out_dir.join("accuracy_over_seeds"),
            "Final validation accuracy over fresh seeds (best point of each study)",
            "validation accuracy",
            &boxes,
            target,
        )?);
    }
    if train_boxes.iter().any(|b| !b.values.is_empty()) {
        let train_target = if studies
            .iter()
            .all(|s| s.file.metric == Metric::FinalTrainAccuracy)
        {
            target
        } else {
            None
        };
        written.extend(box_plot(
            &out_dir.join("train_accuracy_over_seeds"),
            "Final training accuracy over fresh seeds (best point of each study)",
            "training accuracy",
            &train_boxes,
            train_target,
        )?);
    }
    if !budget.is_empty() {
        written.extend(band_chart(
            &out_dir.join("tuning_budget"),
            "Expected best selection metric of k trials (band: one standard deviation)",
            "trials k",
            "expected best of k trials",
            &budget,
        )?);
    }
    let profiles = performance_profiles(studies)?;
    if profiles
        .iter()
        .any(|p| p.points.iter().any(|&(_, rho)| rho > 0.0))
    {
        written.extend(line_chart(
            &out_dir.join("performance_profiles"),
            "Performance profiles (median steps to target, ratio to the best)",
            "tau (ratio to the fastest submission on a workload)",
            "fraction of workloads within tau",
            &profiles,
        )?);
    }
    if curves.iter().any(|c| !c.points.is_empty()) {
        written.extend(line_chart(
            &out_dir.join("training_curves"),
            "Validation accuracy during training",
            "step",
            "validation accuracy",
            &curves,
        )?);
    }
    if !inside.is_empty() {
        written.extend(crate::diagnostics::plot(inside, out_dir, "diagnostics-")?);
    }
    Ok(written)
}

/// The tuning-budget curve of a study's trial values: `(k, E[max of k], E - sd, E + sd)` for
/// k = 1..N (exact, [`expected_max_band`]).
pub fn tuning_curve(trials: &[f64]) -> Result<Vec<(f64, f64, f64, f64)>> {
    (1..=trials.len() as u32)
        .map(|k| {
            let (m, sd) = expected_max_band(trials, k)?;
            Ok((f64::from(k), m, m - sd, m + sd))
        })
        .collect()
}

/// AlgoPerf-style performance profiles (Dolan & More 2002; Dahl et al. 2023): for submission `s`
/// (by default the study file's name, so two studies of one optimizer stay apart) and workload
/// `w`, `r = t(s, w) / min_s' t(s', w)` with `t` the median steps to the target over the fresh
/// seeds (infinite when the median seed never reaches it, or without a target);
/// `rho_s(tau)` is the fraction of workloads with `r <= tau`, drawn for tau in [1, 4].
pub fn performance_profiles(studies: &[Study]) -> Result<Vec<Series>> {
    let mut entries: Vec<(String, String, f64)> = Vec::new();
    for study in studies {
        let t = study
            .rerun_stats()?
            .steps_to_target
            .and_then(|s| s.median)
            .unwrap_or(f64::INFINITY);
        let (mut submission, workload) = (study.submission(), study.workload());
        if entries
            .iter()
            .any(|(s, w, _)| *s == submission && *w == workload)
        {
            // Two studies of one submission on one workload: keep both, by file.
            submission = format!("{submission} ({})", study.path.display());
        }
        entries.push((submission, workload, t));
    }
    Ok(profile_series(&entries))
}

/// The profile of each submission from `(submission, workload, time)` entries.
pub fn profile_series(entries: &[(String, String, f64)]) -> Vec<Series> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut times: BTreeMap<&str, BTreeMap<&str, f64>> = BTreeMap::new();
    for (s, w, t) in entries {
        times.entry(s).or_default().insert(w, *t);
    }
    let workloads: BTreeSet<&str> = entries.iter().map(|(_, w, _)| w.as_str()).collect();
    let best: BTreeMap<&str, f64> = workloads
        .iter()
        .map(|&w| {
            let b = times
                .values()
                .filter_map(|ts| ts.get(w))
                .fold(f64::INFINITY, |a, &b| a.min(b));
            (w, b)
        })
        .collect();
    let taus: Vec<f64> = (0..=300).map(|i| 1.0 + i as f64 / 100.0).collect();
    times
        .iter()
        .map(|(submission, ts)| {
            let ratios: Vec<f64> = workloads
                .iter()
                .map(|w| match ts.get(w) {
                    Some(&t) if t.is_finite() && best[w].is_finite() => t / best[w],
                    _ => f64::INFINITY,
                })
                .collect();
            Series {
                label: submission.to_string(),
                points: taus
                    .iter()
                    .map(|&tau| {
                        let within = ratios.iter().filter(|&&r| r <= tau + 1e-12).count();
                        (tau, within as f64 / workloads.len() as f64)
                    })
                    .collect(),
            }
        })
        .collect()
}

/// Writes `report.md`, `report.csv` and the charts of `studies` into `out` (`bigbatch report`);
/// returns the markdown and the charts written.
pub fn write(studies: &[Study], out: &Path) -> Result<(String, Vec<PathBuf>)> {
    let inside = best_point_diagnostics(studies)?;
    let (md, csv) = tables(studies, &inside)?;
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    write_atomic(&out.join("report.csv"), csv.as_bytes())?;
    let charts = plots(studies, &inside, out)?;
    Ok((md, charts))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rho(series: &[Series], label: &str, tau: f64) -> f64 {
        let s = series.iter().find(|s| s.label == label).unwrap();
        s.points
            .iter()
            .find(|p| (p.0 - tau).abs() < 1e-9)
            .unwrap()
            .1
    }

    /// x: A 100, B 300; y: A 200, B 150; z reaches only A, at 400. Best: A 100, B 150, so
    /// r_x = (1, 2), r_y = (2, 1), r_z = (4, inf).
    #[test]
    fn performance_profile_by_hand() {
        let e = |s: &str, w: &str, t: f64| (s.to_string(), w.to_string(), t);
        let series = profile_series(&[
            e("x", "A", 100.0),
            e("x", "B", 300.0),
            e("y", "A", 200.0),
            e("y", "B", 150.0),
            e("z", "A", 400.0),
            e("z", "B", f64::INFINITY),
        ]);
        assert_eq!(rho(&series, "x", 1.0), 0.5);
        assert_eq!(rho(&series, "x", 1.99), 0.5);
        assert_eq!(rho(&series, "x", 2.0), 1.0);
        assert_eq!(rho(&series, "y", 1.0), 0.5);
        assert_eq!(rho(&series, "z", 3.99), 0.0);
        assert_eq!(rho(&series, "z", 4.0), 0.5);
    }
}
