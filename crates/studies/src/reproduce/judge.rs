//! Each finding's claim judged on its studies by the calibrated rules of [`crate::rules`], over
//! bootstrap intervals ([`crate::stats`]) of the fresh seeds, with the tuning noise where the
//! claim compares optimizers tuned with the same budget.

use super::findings::{Budget, Claim, Finding, Verdict};
use crate::report::{
    Comparison, StudyValues, interval_points, metric_name, metric_words, name, pct, points,
    spread_cell,
};
use crate::rules;
use crate::stats::{
    Bootstrap, Group, Interval, Statistic, difference, mean, seeds_needed, std_dev,
};
use crate::study::{Metric, RerunStats, Study, TrialResult};

use anyhow::{Result, bail};
use bigbatch_core::study::{Scaling, key_paths, spread};
use serde_json::Value;
use std::fmt::Write;
use std::path::PathBuf;

/// Judges a finding on its studies (in the order of [`super::Reproduction::studies_of`]).
pub(super) fn judge(
    f: &Finding,
    studies: &[Study],
    budget: &Budget,
    boot: &Bootstrap,
) -> Result<Judged> {
    let pair = |kind| judge_pair(&studies[0], &studies[1], kind, f.delta, budget, boot);
    match &f.claim {
        Claim::Matches { .. } => pair(Pair::Matches),
        Claim::Beats { .. } => pair(Pair::Beats),
        Claim::TrainGap { .. } => pair(Pair::TrainGap),
        Claim::BestValue { path, expected } => {
            judge_best_value(path, studies, expected, budget, boot)
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Pair {
    Matches,
    Beats,
    TrainGap,
}

pub(super) struct Judged {
    pub(super) verdict: Verdict,
    /// One line for the summary table.
    pub(super) numbers: String,
    /// The intervals and the rule applied (markdown).
    pub(super) details: String,
    pub(super) table: String,
    /// The half-trials check: how many of the halves gave the same verdict, of how many
    /// ([`half_trials_agreement`]); where it does not apply, the reason.
    pub(super) robustness: Result<(usize, usize), String>,
}

impl Judged {
    fn pending(table: String, progress: String) -> Self {
        Judged {
            verdict: Verdict::Pending,
            numbers: progress,
            details: String::new(),
            table,
            robustness: Err("not judged yet".into()),
        }
    }
}

/// Halves drawn by the half-trials check.
pub const HALVES: usize = 20;

/// The verdict's robustness to the tuning: for each of [`HALVES`] random halves of every study's
/// feasible trials (ChaCha8 seeded by the bootstrap seed), the study's fresh-seed values shifted
/// by (best of the half - best of all), the tuning effect a search with half the trials would
/// have had (as the tuning noise of [`crate::stats::difference`]), and the verdict taken again.
/// Returns how many halves agree with `full`.
fn half_trials_agreement(
    a: &StudyValues,
    b: &StudyValues,
    full: Verdict,
    boot: &Bootstrap,
    verdict_of: &dyn Fn(&StudyValues, &StudyValues) -> Result<Verdict>,
) -> Result<(usize, usize)> {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(boot.seed ^ 0x4841_4c46);
    let best = |t: &[f64]| t.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let half = |v: &StudyValues, rng: &mut rand_chacha::ChaCha8Rng| {
        let mut trials = v.trials.clone();
        trials.shuffle(rng);
        trials.truncate(v.trials.len().div_ceil(2));
        let shift = best(&trials) - best(&v.trials);
        let moved = |x: &[f64]| x.iter().map(|y| y + shift).collect::<Vec<f64>>();
        StudyValues {
            metric: moved(&v.metric),
            val: moved(&v.val),
            train: moved(&v.train),
            trials,
        }
    };
    let mut agree = 0;
    for _ in 0..HALVES {
        let (ha, hb) = (half(a, &mut rng), half(b, &mut rng));
        if verdict_of(&ha, &hb)? == full {
            agree += 1;
        }
    }
    Ok((agree, HALVES))
}

/// One study's numbers: its rerun statistics, the fresh seeds' final values and the feasible
/// trials' metric.
struct Sample {
    name: String,
    stats: RerunStats,
    values: StudyValues,
}

impl Sample {
    fn of(study: &Study) -> Result<Self> {
        Ok(Sample {
            name: name(study),
            stats: study.rerun_stats()?,
            values: StudyValues::of(study)?,
        })
    }

    fn feasible_trials(&self) -> u64 {
        self.values.trials.len() as u64
    }

    /// Reruns of the best point, fresh or not (what the budget counts).
    fn reruns_of_best(&self) -> u64 {
        (self.stats.seeds + self.stats.searched_seeds_left_out) as u64
    }
}

/// What would decide an inconclusive pair verdict whose interval with tuning noise lies
/// `distance` from the rule's boundary. `decided_on_seeds`: the seed-noise interval, where the
/// rule already decides on it, so more seeds cannot (the tuning noise keeps the verdict open);
/// otherwise "about N fresh seeds per study": the seeds at which the observed difference would be
/// found with 80% power given the observed spread.
fn seeds_to_decide(
    a: &[f64],
    b: &[f64],
    distance: f64,
    decided_on_seeds: Option<&Interval>,
) -> String {
    if let Some(seed_only) = decided_on_seeds {
        return format!(
            "on seed noise alone the interval ({}) is already clear of the boundary, so more \
             fresh seeds would not decide it",
            interval_points(seed_only)
        );
    }
    let sd = ((std_dev(a).powi(2) + std_dev(b).powi(2)) / 2.0).sqrt();
    match seeds_needed(sd, distance) {
        Some(n) if n <= 10_000 => format!(
            "if the observed difference and spread hold, about {n} fresh seeds per study would \
             decide it on seed noise (80% power)"
        ),
        _ => "the estimate sits on the boundary: no number of seeds is likely to decide it".into(),
    }
}

fn judge_pair(
    sa: &Study,
    sb: &Study,
    kind: Pair,
    delta: f64,
    budget: &Budget,
    boot: &Bootstrap,
) -> Result<Judged> {
    let (a, b) = (Sample::of(sa)?, Sample::of(sb)?);
    let complete = [&a, &b]
        .iter()
        .all(|s| s.feasible_trials() >= budget.trials && s.reruns_of_best() >= budget.seeds);
    let table = pair_table(&[(sa, &a), (sb, &b)])?;
    let (na, nb) = (&a.name, &b.name);
    let progress = format!(
        "so far: {na} {} feasible trials, {} fresh seeds; {nb} {} feasible trials, {} fresh seeds",
        a.feasible_trials(),
        a.stats.seeds,
        b.feasible_trials(),
        b.stats.seeds
    );
    let usable = |x: &[f64], y: &[f64]| !x.is_empty() && !y.is_empty();
    if !complete || !usable(&a.values.metric, &b.values.metric) {
        return Ok(Judged::pending(table, progress));
    }
    let margin = format!("margin delta {:.2} points", 100.0 * delta);
    let fresh = format!("{} and {} fresh seeds", a.stats.seeds, b.stats.seeds);
    let level = format!("{:.0}%", 100.0 * boot.level);
    let judged = match kind {
        Pair::Matches | Pair::Beats => {
            let c = Comparison::of(
                &a.values.metric,
                &b.values.metric,
                Some((&a.values.trials, &b.values.trials)),
                boot,
            )?;
            let decisive = c.mean_with_tuning.unwrap_or(c.mean);
            let rule_of = |i: &crate::stats::Interval| {
                if kind == Pair::Matches {
                    rules::matches(i, delta)
                } else {
                    rules::beats(i)
                }
            };
            let verdict = rule_of(&decisive);
            let (boundary, rule) = if kind == Pair::Matches {
                (
                    -delta,
                    format!(
                        "*matches*: reproduced when the {level} interval of the difference of \
                         means ({na} - {nb}, seed and tuning noise) lies above -delta, not \
                         reproduced when it lies below"
                    ),
                )
            } else {
                (
                    0.0,
                    format!(
                        "*beats*: reproduced when the {level} interval of the difference of means \
                         ({na} - {nb}, seed and tuning noise) lies above 0, not reproduced when \
                         it lies below"
                    ),
                )
            };
            let metric = metric_name(sa.file.metric);
            let mut details = format!(
                "Difference of {}, {na} - {nb}:\n\n{}\n{rule}. The interval is \
                 {} points against a boundary of {} points: **{}**.",
                metric_words(sa.file.metric),
                c.table(na, nb, boot.level),
                interval_points(&decisive),
                points(boundary),
                verdict.words()
            );
            if verdict == Verdict::Inconclusive {
                write!(
                    details,
                    " The estimate lies {} the boundary; {}.",
                    rules::lean(&decisive, boundary),
                    seeds_to_decide(
                        &a.values.metric,
                        &b.values.metric,
                        decisive.estimate - boundary,
                        (rule_of(&c.mean) != Verdict::Inconclusive).then_some(&c.mean)
                    )
                )?;
                let width = |i: &crate::stats::Interval| i.high - i.low;
                if width(&decisive) > 2.0 * width(&c.mean) {
                    write!(
                        details,
                        " Most of the interval's width ({:.2} points against {:.2} on seed noise \
                         alone) is tuning noise: the best trial of a study stands well above its \
                         next ones, so a re-run of the search could pick a much worse point. More \
                         seeds do not narrow that part; more trials per study do.",
                        100.0 * width(&decisive),
                        100.0 * width(&c.mean)
                    )?;
                }
            }
            let pair_verdict = |x: &StudyValues, y: &StudyValues| -> Result<Verdict> {
                let i = difference(
                    Group {
                        seeds: &x.metric,
                        trials: Some(&x.trials),
                    },
                    Group {
                        seeds: &y.metric,
                        trials: Some(&y.trials),
                    },
                    Statistic::Mean,
                    true,
                    boot,
                )?;
                Ok(rule_of(&i))
            };
            let robustness = Ok(half_trials_agreement(
                &a.values,
                &b.values,
                verdict,
                boot,
                &pair_verdict,
            )?);
            Judged {
                robustness,
                verdict,
                numbers: format!(
                    "mean {metric} {na} - {nb}: {} points, {level} interval {} with tuning noise \
                     ({} seeds only); P({na} > {nb}) {:.2}; {fresh}; {margin}",
                    points(decisive.estimate),
                    interval_points(&decisive),
                    interval_points(&c.mean),
                    c.improvement.estimate
                ),
                details,
                table,
            }
        }
        Pair::TrainGap => {
            if !usable(&a.values.val, &b.values.val) || !usable(&a.values.train, &b.values.train) {
                return Ok(Judged::pending(table, progress));
            }
            let val = Comparison::of(&a.values.val, &b.values.val, None, boot)?;
            let train = Comparison::of(&a.values.train, &b.values.train, None, boot)?;
            let verdict = rules::train_gap(&val.mean, &train.mean, delta);
            let mut details = format!(
                "Validation accuracy, {na} - {nb}:\n\n{}\nTraining accuracy, {na} - {nb}:\n\n{}\n\
                 *training gap*: judged only when the {level} interval of the validation \
                 difference lies within (-delta, delta) (untestable when it lies wholly outside); \
                 then reproduced when the interval of the training difference lies above 0, not \
                 reproduced when below (seed noise: the claim is about the two tuned points). \
                 Validation {} and training {} points: **{}**.",
                val.table(na, nb, boot.level),
                train.table(na, nb, boot.level),
                interval_points(&val.mean),
                interval_points(&train.mean),
                verdict.words()
            );
            if verdict == Verdict::Inconclusive {
                let (what, i, boundary, x, y) = if val.mean.low > -delta && val.mean.high < delta {
                    (
                        "training difference",
                        &train.mean,
                        0.0,
                        &a.values.train,
                        &b.values.train,
                    )
                } else {
                    let edge = if val.mean.estimate >= 0.0 {
                        delta
                    } else {
                        -delta
                    };
                    (
                        "validation difference",
                        &val.mean,
                        edge,
                        &a.values.val,
                        &b.values.val,
                    )
                };
                write!(
                    details,
                    " The {what} leans {} {}; {}.",
                    rules::lean(i, boundary),
                    points(boundary),
                    seeds_to_decide(x, y, i.estimate - boundary, None)
                )?;
            }
            let gap_verdict = |x: &StudyValues, y: &StudyValues| -> Result<Verdict> {
                let g = |v| Group {
                    seeds: v,
                    trials: None,
                };
                let val = difference(g(&x.val), g(&y.val), Statistic::Mean, false, boot)?;
                let train = difference(g(&x.train), g(&y.train), Statistic::Mean, false, boot)?;
                Ok(rules::train_gap(&val, &train, delta))
            };
            let robustness = Ok(half_trials_agreement(
                &a.values,
                &b.values,
                verdict,
                boot,
                &gap_verdict,
            )?);
            Judged {
                robustness,
                verdict,
                numbers: format!(
                    "mean train {na} - {nb}: {} points {level} {}; mean validation {} points {}; \
                     {fresh}; {margin}",
                    points(train.mean.estimate),
                    interval_points(&train.mean),
                    points(val.mean.estimate),
                    interval_points(&val.mean)
                ),
                details,
                table,
            }
        }
    };
    Ok(judged)
}

/// The per-study table of a pair finding.
fn pair_table(studies: &[(&Study, &Sample)]) -> Result<String> {
    let mut table = String::from(
        "| study | optimizer | feasible trials | fresh seeds | mean val | median val | val IQR | mean train | median train | train IQR | reaching target | median steps to target |\n\
         |---|---|---:|---:|---:|---:|---|---:|---:|---|---:|---:|\n",
    );
    for (s, x) in studies {
        let r = &x.stats;
        let (vm, vi, _) = spread_cell(&r.val_accuracy);
        let (tm, ti, _) = spread_cell(&r.train_accuracy);
        let m = |v: &[f64]| {
            if v.is_empty() {
                "-".to_string()
            } else {
                pct(mean(v))
            }
        };
        writeln!(
            table,
            "| {} | {} | {} | {}{} | {} | {vm} | {vi} | {} | {tm} | {ti} | {} | {} |",
            x.name,
            optimizers(s),
            x.feasible_trials(),
            r.seeds,
            if r.searched_seeds_left_out > 0 {
                format!(" ({} tuning seed left out)", r.searched_seeds_left_out)
            } else {
                String::new()
            },
            m(&x.values.val),
            m(&x.values.train),
            r.fraction_reaching_target
                .map_or("-".into(), |x| format!("{:.0}%", 100.0 * x)),
            r.steps_to_target.as_ref().map_or("-".into(), |s| s.cell())
        )?;
    }
    Ok(table)
}

fn judge_best_value(
    path: &str,
    studies: &[Study],
    expected: &[(PathBuf, Value)],
    budget: &Budget,
    boot: &Bootstrap,
) -> Result<Judged> {
    let mut table = format!(
        "| study | `{path}` | fresh runs | mean | median | IQR | min - max |\n|---|---:|---:|---:|---:|---|---|\n"
    );
    let mut preferences = Vec::new();
    let mut numbers = Vec::new();
    let mut details = String::new();
    let mut pending = false;
    for (study, (_, paper_value)) in studies.iter().zip(expected) {
        let groups = by_value(study, path)?;
        let fresh = fresh_by_value(study, &groups)?;
        let mut means = Vec::new();
        for ((value, runs), values) in groups.iter().zip(&fresh) {
            if (runs.len() as u64) < budget.seeds {
                pending = true;
            }
            let s = spread(values)?;
            let (median, iqr, range) = spread_cell(&s);
            writeln!(
                table,
                "| {} | {value} | {} | {} | {median} | {iqr} | {range} |",
                name(study),
                values.len(),
                if values.is_empty() {
                    "-".into()
                } else {
                    pct(mean(values))
                }
            )?;
            if !values.is_empty() {
                means.push((value.clone(), values.clone()));
            }
        }
        if means.len() < 2 || pending {
            pending = true;
            numbers.push(format!(
                "{}: {} runs so far",
                name(study),
                study.trials()?.len()
            ));
            continue;
        }
        let best = means
            .iter()
            .enumerate()
            .max_by(|x, y| mean(&x.1.1).total_cmp(&mean(&y.1.1)))
            .map(|(i, _)| i)
            .expect("two or more values");
        let per_pair = Bootstrap {
            level: rules::preference_level(boot.level, means.len()),
            ..*boot
        };
        let mut diffs = Vec::new();
        for (i, (value, values)) in means.iter().enumerate() {
            if i == best {
                continue;
            }
            let d = difference(
                Group {
                    seeds: &means[best].1,
                    trials: None,
                },
                Group {
                    seeds: values,
                    trials: None,
                },
                Statistic::Mean,
                false,
                &per_pair,
            )?;
            writeln!(
                details,
                "- {}: {} {} - {value}: {} points, {:.1}% interval {}",
                name(study),
                path,
                means[best].0,
                points(d.estimate),
                100.0 * per_pair.level,
                interval_points(&d)
            )?;
            diffs.push(d);
        }
        let clear = rules::preferred(&diffs);
        let best_value = means[best].0.clone();
        numbers.push(format!(
            "{}: {} best by {} points {} ({}), paper {}",
            name(study),
            best_value,
            points(diffs[0].estimate),
            interval_points(&diffs[0]),
            if clear { "clear" } else { "not clear" },
            paper_value
        ));
        preferences.push((clear, same_value(&best_value, paper_value), best_value));
    }
    if pending {
        return Ok(Judged::pending(table, numbers.join("; ")));
    }
    let verdict = best_value_verdict(&preferences);
    details = format!(
        "Difference of mean final validation accuracy between the best value and each other \
         (fresh runs only: runs with a seed the source study's search used are left out, so \
         the tuned run itself is not among them; intervals at the Bonferroni level for the \
         values compared):\n\n{details}\n*best value*: a study clearly prefers a value when \
         every such interval lies above 0; reproduced when every study clearly prefers the \
         paper's value and the preferences differ, not reproduced when every preference is \
         clear and one contradicts the paper: **{}**.",
        verdict.words()
    );
    Ok(Judged {
        verdict,
        numbers: numbers.join("; "),
        details,
        table,
        robustness: Err(
            "does not apply: the sweep runs the source study's best point only; a half of its \
             trials could select another point, whose sweep was not run"
                .into(),
        ),
    })
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

/// The metric of each group's fresh runs (seeds the search of the study's source never used).
pub(super) fn fresh_by_value(
    study: &Study,
    groups: &[(Value, Vec<TrialResult>)],
) -> Result<Vec<Vec<f64>>> {
    let searched = study.searched_seeds()?;
    Ok(groups
        .iter()
        .map(|(_, runs)| {
            let fresh: Vec<TrialResult> = runs
                .iter()
                .filter(|r| !searched.contains(&r.seed))
                .cloned()
                .collect();
            metric_values(&fresh, study.file.metric)
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

    /// Seed noise alone clear of the boundary: seeds cannot decide it. Straddling: seeds at 80%
    /// power for {0.80, 0.82} against {0.79, 0.81} (standard deviations 0.01414 each), 0.01 from
    /// the boundary: 2 (1.95996 + 0.84162)^2 (0.01414 / 0.01)^2 = 31.4, so 32.
    #[test]
    fn what_would_decide_an_inconclusive_pair() {
        let i = |low, high| Interval {
            estimate: (low + high) / 2.0,
            low,
            high,
        };
        let (a, b) = ([0.80, 0.82], [0.79, 0.81]);
        // As `judge_pair` passes it: the seed-noise interval where its rule decides on it.
        let decided = |seed_only: &Interval, verdict: Verdict| {
            (verdict != Verdict::Inconclusive).then_some(*seed_only)
        };
        let above = i(0.001, 0.019);
        let clear = seeds_to_decide(&a, &b, 0.01, decided(&above, rules::beats(&above)).as_ref());
        assert!(
            clear.contains("[+0.10, +1.90]) is already clear of the boundary")
                && clear.contains("would not decide it"),
            "{clear}"
        );
        let under = i(-0.019, -0.011);
        let below = seeds_to_decide(
            &a,
            &b,
            -0.01,
            decided(&under, rules::matches(&under, 0.01)).as_ref(),
        );
        assert!(below.contains("already clear"), "{below}");
        let straddling = i(-0.01, 0.03);
        let open = seeds_to_decide(
            &a,
            &b,
            0.01,
            decided(&straddling, rules::beats(&straddling)).as_ref(),
        );
        assert!(
            open.contains("about 32 fresh seeds per study would decide it"),
            "{open}"
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
        // One preference not clear.
        assert_eq!(
            best_value_verdict(&[p(true, true, 2.0), p(false, true, 1.0)]),
            Verdict::Inconclusive
        );
    }

    /// A comparison of {0.80, 0.82, 0.84} against {0.80}: the difference of means is 0.02
    /// (0.82 - 0.80), of medians 0.02, and A beats B in 2 of 3 pairs with one tie: P = 2.5/3.
    #[test]
    fn comparison_estimates_by_hand() {
        let c = Comparison::of(&[0.80, 0.82, 0.84], &[0.80], None, &Bootstrap::default()).unwrap();
        assert!((c.mean.estimate - 0.02).abs() < 1e-12);
        assert!((c.median.estimate - 0.02).abs() < 1e-12);
        assert!((c.improvement.estimate - 2.5 / 3.0).abs() < 1e-12);
        assert!(c.mean_with_tuning.is_none());
        // B has one seed: the interval spans every resample (0.80 - 0.80 to 0.84 - 0.80).
        assert!((c.mean.low - 0.0).abs() < 1e-12 && (c.mean.high - 0.04).abs() < 1e-12);
    }
}
