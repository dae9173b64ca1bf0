//! The verdict rules: each finding's claim judged on its studies' reruns and sweeps.

use super::findings::{Budget, Claim, Finding, Verdict};
use crate::report::{name, pct, spread_cell};
use crate::study::{Metric, Study, TrialResult};
use anyhow::{Result, bail};
use bigbatch_core::study::{Scaling, Spread, key_paths, spread};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

/// Judges a finding on its studies (in the order of [`Reproduction::studies_of`]).
pub(super) fn judge(f: &Finding, studies: &[Study], budget: &Budget) -> Result<Judged> {
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

pub(super) struct Judged {
    pub(super) verdict: Verdict,
    pub(super) numbers: String,
    pub(super) table: String,
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
pub(super) fn sweep_values(study: &Study, key: &str) -> Result<Vec<Value>> {
    match study.file.search.get(key) {
        Some(Scaling::Sweep(values)) => Ok(values.clone()),
        _ => bail!(
            "{}: search: expected a Sweep([...]) at \"{key}\" (the hyperparameter a BestValue finding compares)",
            study.path.display()
        ),
    }
}

/// The study's finished runs grouped by the value at `key`, in sweep order.
pub(super) fn by_value(study: &Study, key: &str) -> Result<Vec<(Value, Vec<TrialResult>)>> {
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
pub(super) fn metric_values(runs: &[TrialResult], metric: Metric) -> Vec<f64> {
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
