//! `bigbatch report`: the protocol and results of one or more studies as markdown and CSV tables,
//! shaped like the paper's Tables 2 and 3 (median validation and training accuracy over seeds, the
//! fraction of seeds reaching the target, steps to target). Every report starts with the protocol
//! (trials per study, search space, budget, seeds) so that unequal tuning effort is visible.
//! [`plots`] draws the charts beside the tables.

use crate::study::{Study, TrialResult, val_curve};
use anyhow::Result;
use bigbatch_core::config::write_atomic;
use bigbatch_core::study::{Scaling, Spread};
use bigbatch_plots::{BoxGroup, Series, box_plot, line_chart};
use std::fmt::Write;
use std::path::{Path, PathBuf};

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

fn scaling(s: &Scaling) -> String {
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

/// The markdown report and the CSV table (one row per study).
pub fn tables(studies: &[Study]) -> Result<(String, String)> {
    let mut md = String::from("# bigbatch report\n\n## Protocol\n\n");
    md += "| study | optimizer (default group) | steps | batch | trials finished | feasible | diverged | search dims | seeds rerun |\n";
    md += "|---|---|---:|---:|---:|---:|---:|---:|---:|\n";
    let mut csv = String::from(
        "study,optimizer,steps,batch_size,trials,feasible,diverged,best_trial,seeds,seeds_diverged,\
         val_median,val_q1,val_q3,val_min,val_max,train_median,target,fraction_reaching_target,\
         median_steps_to_target\n",
    );
    let mut results = String::from(
        "\n## Results over seeds (best trial rerun)\n\n\
         | study | best trial | seeds | median val | val IQR | val min - max | median train | target | reaching target | median steps to target |\n\
         |---|---:|---:|---:|---|---|---:|---:|---:|---:|\n",
    );
    let mut spaces = String::from("\n## Search spaces and best points\n");
    for study in studies {
        let n = name(study);
        let trials = study.trials()?;
        let feasible = trials.values().filter(|r| r.feasible()).count();
        let best: Option<TrialResult> = study.best()?;
        let stats = study.rerun_stats()?;
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
            .median_steps_to_target
            .map_or("-".into(), |s| format!("{s:.0}"));
        let best_index = best.as_ref().map_or("-".into(), |b| b.index.to_string());
        writeln!(
            results,
            "| {n} | {best_index} | {} | {val_med} | {val_iqr} | {val_range} | {train_med} | {target} | {reaching} | {steps} |",
            stats.seeds
        )?;
        let num = |s: &Option<Spread>, f: fn(&Spread) -> f64| {
            s.as_ref().map_or(String::new(), |s| f(s).to_string())
        };
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
        writeln!(
            csv,
            "{n},{optimizer},{},{},{},{feasible},{},{best_index},{},{},{},{},{},{},{},{},{},{},{}",
            base.train.steps,
            base.train.batch_size,
            trials.len(),
            trials.len() - feasible,
            stats.seeds,
            stats.diverged,
            num(&stats.val_accuracy, |s| s.median),
            num(&stats.val_accuracy, |s| s.q1),
            num(&stats.val_accuracy, |s| s.q3),
            num(&stats.val_accuracy, |s| s.min),
            num(&stats.val_accuracy, |s| s.max),
            num(&stats.train_accuracy, |s| s.median),
            opt(study.file.target),
            opt(stats.fraction_reaching_target),
            opt(stats.median_steps_to_target),
        )?;
        writeln!(
            spaces,
            "\n### {n}\n\nstudy file `{}`, quasi-random seed {}, selection metric {:?}\n\n| path | scaling | best trial's value |\n|---|---|---|",
            study.path.display(),
            study.file.seed,
            study.file.metric
        )?;
        for (path, s) in &study.file.search {
            let value = best
                .as_ref()
                .and_then(|b| b.point.get(path))
                .map_or("-".into(), |v| v.to_string());
            writeln!(spaces, "| `{path}` | {} | {value} |", scaling(s))?;
        }
    }
    md += &results;
    md += &spaces;
    Ok((md, csv))
}

/// Charts of the studies in `out_dir` (each as SVG and PNG): the learning-rate schedules of the
/// best points on one chart (the paper's Figure 1), final validation accuracy over seeds as box
/// plots with the target line (Figure 4), and the median validation curve over seeds. Returns the
/// files written; a chart with nothing to show (no reruns yet) is left out.
pub fn plots(studies: &[Study], out_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    let mut schedules = Vec::new();
    let mut boxes = Vec::new();
    let mut curves = Vec::new();
    for study in studies {
        let n = name(study);
        let index = study.best()?.map_or(0, |b| b.index);
        let (config, _) = study.trial_config(index)?;
        let steps = config.train.steps;
        let stride = (steps / 500).max(1);
        schedules.push(Series {
            label: format!("{n} (trial {index})"),
            points: (0..=steps)
                .step_by(stride as usize)
                .map(|t| (t as f64, config.schedule.lr(t)))
                .collect(),
        });
        let reruns = study.reruns()?;
        boxes.push(BoxGroup {
            label: n.clone(),
            values: reruns
                .values()
                .filter(|r| r.feasible())
                .filter_map(|r| r.summary.final_val_accuracy)
                .collect(),
        });
        let mut by_step: std::collections::BTreeMap<u64, Vec<f64>> = Default::default();
        for r in reruns.values().filter(|r| r.feasible()) {
            for (step, acc) in val_curve(&study.rerun_dir(r.seed))? {
                by_step.entry(step).or_default().push(acc);
            }
        }
        curves.push(Series {
            label: format!("{n} (median of {} seeds)", reruns.len()),
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
    }
    written.extend(line_chart(
        &out_dir.join("schedules"),
        "Learning-rate schedules of the best points",
        "step",
        "learning rate",
        &schedules,
    )?);
    let targets: Vec<Option<f64>> = studies.iter().map(|s| s.file.target).collect();
    let target = if targets.windows(2).all(|w| w[0] == w[1]) {
        targets.first().copied().flatten()
    } else {
        None
    };
    if boxes.iter().any(|b| !b.values.is_empty()) {
        written.extend(box_plot(
            &out_dir.join("accuracy_over_seeds"),
            "Final validation accuracy over seeds (best point of each study)",
            "validation accuracy",
            &boxes,
            target,
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
    Ok(written)
}

/// AlgoPerf-style performance profiles (Dolan & More 2002; Dahl et al. 2023): for submission `s`
/// and workload `w`, `r = t(s, w) / min_s' t(s', w)` with `t` the median steps to the target over
/// the rerun seeds (infinite when the median seed never reaches it, or without a target);
/// `rho_s(tau)` is the fraction of workloads with `r <= tau`, drawn for tau in [1, 4].
pub fn performance_profiles(studies: &[Study]) -> Result<Vec<Series>> {
    let mut entries = Vec::new();
    for study in studies {
        let t = study
            .rerun_stats()?
            .median_steps_to_target
            .unwrap_or(f64::INFINITY);
        entries.push((study.submission(), study.workload(), t));
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
    let (md, csv) = tables(studies)?;
    write_atomic(&out.join("report.md"), md.as_bytes())?;
    write_atomic(&out.join("report.csv"), csv.as_bytes())?;
    let charts = plots(studies, out)?;
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
