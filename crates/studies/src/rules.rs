//! The decision rules of a comparison, on bootstrap intervals of a difference
//! ([`crate::stats::difference`]) with an equivalence margin `delta` fixed before any run:
//!
//! - *beats* (A better than B): the interval of `A - B` lies above 0 (reproduced), below 0 (not
//!   reproduced), else inconclusive.
//! - *matches* (the candidate reaches the reference): the interval of `candidate - reference`
//!   lies above `-delta` (reproduced), below `-delta` (not reproduced), else inconclusive.
//! - *training gap* (at similar validation accuracy, A trains higher than B): judged only when
//!   the validation interval lies within `(-delta, delta)`; when it lies wholly outside, the
//!   premise fails and the claim is untestable at this scale; else inconclusive. Judged, the
//!   training interval decides as *beats*.
//! - *preference* (a swept value is better than every other): every interval of
//!   `best - other` lies above 0, each at the Bonferroni level `1 - (1 - level) / (k - 1)` for
//!   `k` values, so that the chance of a preference among identical values stays at most
//!   `1 - level`.
//!
//! `tests::calibration` simulates identical groups and checks that no rule declares a difference
//! more often than 5% (plus simulation error), and that a difference of `2 delta` is found at 20
//! seeds at least 80% of the time.

use crate::stats::Interval;

/// The outcome of a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Reproduced,
    NotReproduced,
    Inconclusive,
    /// The claim's premise does not hold at this scale (a training gap "at similar validation
    /// accuracy" where the validation accuracies differ).
    Untestable,
    /// Not every study has results yet.
    Pending,
}

impl Verdict {
    pub fn words(self) -> &'static str {
        match self {
            Verdict::Reproduced => "reproduced",
            Verdict::NotReproduced => "not reproduced",
            Verdict::Inconclusive => "inconclusive at this scale",
            Verdict::Untestable => "untestable at this scale",
            Verdict::Pending => "pending (studies not finished)",
        }
    }
}

/// *beats*: the interval of `better - worse` wholly above 0, or wholly below.
pub fn beats(diff: &Interval) -> Verdict {
    if diff.low > 0.0 {
        Verdict::Reproduced
    } else if diff.high < 0.0 {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// *matches*: the interval of `candidate - reference` wholly above `-delta`, or wholly below.
pub fn matches(diff: &Interval, delta: f64) -> Verdict {
    if diff.low > -delta {
        Verdict::Reproduced
    } else if diff.high < -delta {
        Verdict::NotReproduced
    } else {
        Verdict::Inconclusive
    }
}

/// *training gap*: the validation interval within `(-delta, delta)` makes the claim testable,
/// then the training interval decides as [`beats`]; a validation interval wholly outside makes it
/// untestable.
pub fn train_gap(val: &Interval, train: &Interval, delta: f64) -> Verdict {
    if val.low > -delta && val.high < delta {
        beats(train)
    } else if val.low >= delta || val.high <= -delta {
        Verdict::Untestable
    } else {
        Verdict::Inconclusive
    }
}

/// The interval level of each of the `k - 1` comparisons of a preference among `k` values.
pub fn preference_level(level: f64, k: usize) -> f64 {
    1.0 - (1.0 - level) / (k.max(2) - 1) as f64
}

/// A clear preference: every interval of `best - other` lies above 0.
pub fn preferred(diffs: &[Interval]) -> bool {
    !diffs.is_empty() && diffs.iter().all(|d| d.low > 0.0)
}

/// Which side an undecided interval leans to, in words.
pub fn lean(diff: &Interval, boundary: f64) -> &'static str {
    if diff.estimate > boundary {
        "above"
    } else if diff.estimate < boundary {
        "below"
    } else {
        "on"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{Bootstrap, Group, Statistic, difference};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn at(estimate: f64, low: f64, high: f64) -> Interval {
        Interval {
            estimate,
            low,
            high,
        }
    }

    #[test]
    fn rules_on_hand_made_intervals() {
        assert_eq!(beats(&at(0.02, 0.001, 0.03)), Verdict::Reproduced);
        assert_eq!(beats(&at(0.02, -0.001, 0.03)), Verdict::Inconclusive);
        assert_eq!(beats(&at(-0.02, -0.03, -0.001)), Verdict::NotReproduced);
        let delta = 0.01;
        assert_eq!(
            matches(&at(-0.002, -0.009, 0.01), delta),
            Verdict::Reproduced
        );
        assert_eq!(
            matches(&at(-0.002, -0.011, 0.01), delta),
            Verdict::Inconclusive
        );
        assert_eq!(
            matches(&at(-0.03, -0.04, -0.011), delta),
            Verdict::NotReproduced
        );
        let similar = at(0.0, -0.009, 0.009);
        let apart = at(0.03, 0.011, 0.05);
        let straddling = at(0.0, -0.02, 0.009);
        let gap = at(0.02, 0.01, 0.03);
        assert_eq!(train_gap(&similar, &gap, delta), Verdict::Reproduced);
        assert_eq!(train_gap(&apart, &gap, delta), Verdict::Untestable);
        assert_eq!(train_gap(&straddling, &gap, delta), Verdict::Inconclusive);
        assert_eq!(
            train_gap(&similar, &at(-0.02, -0.03, -0.01), delta),
            Verdict::NotReproduced
        );
        assert_eq!(preference_level(0.95, 2), 0.95);
        assert!((preference_level(0.95, 3) - 0.975).abs() < 1e-12);
        assert!(preferred(&[at(0.02, 0.001, 0.03), at(0.05, 0.01, 0.07)]));
        assert!(!preferred(&[at(0.02, 0.001, 0.03), at(0.05, -0.01, 0.07)]));
    }

    /// The two distributions of the calibration: a normal with standard deviation 1, and a
    /// skewed one with the same spread, `-(Exp(1) - 1)` (a long tail of bad seeds, as accuracy
    /// over seeds has).
    #[derive(Clone, Copy, Debug)]
    enum Shape {
        Normal,
        Skewed,
    }

    fn sample(shape: Shape, n: usize, shift: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
        (0..n)
            .map(|_| {
                shift
                    + match shape {
                        Shape::Normal => {
                            // Box-Muller.
                            let (u, v): (f64, f64) = (rng.random(), rng.random());
                            (-2.0 * (1.0 - u).ln()).sqrt() * (std::f64::consts::TAU * v).cos()
                        }
                        Shape::Skewed => 1.0 + (1.0 - rng.random::<f64>()).ln(),
                    }
            })
            .collect()
    }

    const SIMULATIONS: usize = 1000;
    const BOOT: Bootstrap = Bootstrap {
        resamples: 2000,
        seed: 11,
        level: 0.95,
    };
    const TRIAL_SPREAD: f64 = 1.0;
    /// The margin of the simulations: one seed standard deviation.
    const DELTA: f64 = 1.0;

    /// 5% plus two binomial standard errors of a rate of 5% over [`SIMULATIONS`].
    fn ceiling() -> f64 {
        0.05 + 2.0 * (0.05 * 0.95 / SIMULATIONS as f64).sqrt()
    }

    /// How often `rule` says each verdict over simulated pairs of groups of `n` seeds whose
    /// true difference is `shift`; `tuning` adds 20 tuning trials per study (the same
    /// distribution for both, spread 3 seed standard deviations).
    fn rates(
        shape: Shape,
        n: usize,
        shift: f64,
        tuning: bool,
        stat: Statistic,
        rule: impl Fn(&Interval) -> Verdict,
    ) -> [f64; 3] {
        let mut rng = ChaCha8Rng::seed_from_u64(n as u64 * 1000 + shift.to_bits() % 997);
        let mut counts = [0usize; 3];
        for i in 0..SIMULATIONS {
            let a = sample(shape, n, shift, &mut rng);
            let b = sample(shape, n, 0.0, &mut rng);
            let (ta, tb): (Vec<f64>, Vec<f64>) = (
                sample(shape, 20, 0.0, &mut rng)
                    .iter()
                    .map(|x| TRIAL_SPREAD * x)
                    .collect(),
                sample(shape, 20, 0.0, &mut rng)
                    .iter()
                    .map(|x| TRIAL_SPREAD * x)
                    .collect(),
            );
            let boot = Bootstrap {
                seed: i as u64,
                ..BOOT
            };
            let d = difference(
                Group {
                    seeds: &a,
                    trials: Some(&ta),
                },
                Group {
                    seeds: &b,
                    trials: Some(&tb),
                },
                stat,
                tuning,
                &boot,
            )
            .unwrap();
            counts[match rule(&d) {
                Verdict::Reproduced => 0,
                Verdict::NotReproduced => 1,
                _ => 2,
            }] += 1;
        }
        counts.map(|c| c as f64 / SIMULATIONS as f64)
    }

    /// Identical groups: *beats* declares a difference (either way) at most 5% of the time
    /// (plus simulation error); *matches* says "not reproduced" at most 5% of the time, and
    /// "reproduced" at most 5% of the time when the candidate is worse by exactly `delta` (the
    /// margin's edge). A preference between two identical values is *beats* either way. The
    /// verdicts use the difference of means: the median's interval (also reported) is
    /// conservative at these sizes and found a difference of `2 delta` at 20 seeds in only 64% of
    /// the simulations of *matches* (measured with this harness).
    fn check_false_positives(tuning: bool, report: &mut String) {
        let ceiling = ceiling();
        for shape in [Shape::Normal, Shape::Skewed] {
            for n in [5, 10, 20] {
                let stat = Statistic::Mean;
                let same = rates(shape, n, 0.0, tuning, stat, beats);
                let edge = rates(shape, n, -DELTA, tuning, stat, |d| matches(d, DELTA));
                let same_m = rates(shape, n, 0.0, tuning, stat, |d| matches(d, DELTA));
                *report += &format!(
                    "{shape:?} n {n}: beats, identical {same:?}; matches, at -delta {edge:?}; matches, identical {same_m:?} ([reproduced, not reproduced, neither])\n"
                );
                assert!(same[0] + same[1] <= ceiling, "{report}");
                assert!(edge[0] <= ceiling, "{report}");
                assert!(same_m[1] <= ceiling, "{report}");
            }
        }
    }

    /// At 20 seeds: how often *beats* finds a difference of `2 delta`, and how often an identical
    /// candidate is found to match (its distance to the margin is `delta`, as a candidate
    /// `2 delta` below the reference is from it), per shape: `[(beats, matches); 2]`.
    fn power(tuning: bool, report: &mut String) -> [([f64; 3], [f64; 3]); 2] {
        [Shape::Normal, Shape::Skewed].map(|shape| {
            let found = rates(shape, 20, 2.0 * DELTA, tuning, Statistic::Mean, beats);
            let same = rates(shape, 20, 0.0, tuning, Statistic::Mean, |d| {
                matches(d, DELTA)
            });
            *report += &format!(
                "{shape:?} n 20: beats at 2 delta {found:?}; matches, identical {same:?}\n"
            );
            (found, same)
        })
    }

    /// Seed noise alone: calibrated at 5, 10 and 20 seeds, and at 20 seeds a difference of
    /// `2 delta` is found by *beats*, and an identical candidate found to match, in at least 80%
    /// of simulations.
    #[test]
    fn calibration_over_seeds() {
        let mut report = String::new();
        check_false_positives(false, &mut report);
        for (found, same) in power(false, &mut report) {
            assert!(found[0] >= 0.8 && same[0] >= 0.8, "{report}");
        }
        eprintln!("{report}");
    }

    /// The composite rules on identical groups (normal, 5, 10 and 20 seeds): a training gap is
    /// declared (either way) at most 5% of the time, and so is a preference among three
    /// identical values (the best of three against each other at the Bonferroni level).
    #[test]
    fn calibration_of_training_gap_and_preference() {
        let ceiling = ceiling();
        let mut report = String::new();
        for n in [5, 10, 20] {
            let mut rng = ChaCha8Rng::seed_from_u64(77 + n as u64);
            let (mut gap, mut preference) = (0usize, 0usize);
            let interval = |a: &[f64], b: &[f64], level: f64, seed: u64| {
                let g = |seeds| Group {
                    seeds,
                    trials: None,
                };
                let boot = Bootstrap {
                    seed,
                    level,
                    ..BOOT
                };
                difference(g(a), g(b), Statistic::Mean, false, &boot).unwrap()
            };
            for i in 0..SIMULATIONS as u64 {
                let [va, vb, ta, tb] = [0; 4].map(|_| sample(Shape::Normal, n, 0.0, &mut rng));
                let verdict = train_gap(
                    &interval(&va, &vb, 0.95, i),
                    &interval(&ta, &tb, 0.95, i + 1),
                    DELTA,
                );
                if matches!(verdict, Verdict::Reproduced | Verdict::NotReproduced) {
                    gap += 1;
                }
                let groups = [0; 3].map(|_| sample(Shape::Normal, n, 0.0, &mut rng));
                let best = (0..3)
                    .max_by(|&x, &y| {
                        crate::stats::mean(&groups[x]).total_cmp(&crate::stats::mean(&groups[y]))
                    })
                    .unwrap();
                let diffs: Vec<Interval> = (0..3)
                    .filter(|&j| j != best)
                    .map(|j| interval(&groups[best], &groups[j], preference_level(0.95, 3), i))
                    .collect();
                if preferred(&diffs) {
                    preference += 1;
                }
            }
            let (gap, preference) = (
                gap as f64 / SIMULATIONS as f64,
                preference as f64 / SIMULATIONS as f64,
            );
            report +=
                &format!("n {n}: training gap declared {gap}, preference among 3 {preference}\n");
            assert!(gap <= ceiling && preference <= ceiling, "{report}");
        }
        eprintln!("{report}");
    }

    /// Seed and tuning noise (20 trials per study, their top as noisy as a seed): calibrated
    /// too, and *beats* finds a difference of `2 delta` at 20 seeds at least 80% of the time.
    /// The tuning noise costs power: an identical candidate is found to match in only 38%
    /// (normal) and 84% (skewed) of simulations at 20 seeds here (printed), against about 85% on
    /// seed noise alone.
    #[test]
    fn calibration_with_tuning_noise() {
        let mut report = String::new();
        check_false_positives(true, &mut report);
        for (found, _) in power(true, &mut report) {
            assert!(found[0] >= 0.8, "{report}");
        }
        eprintln!("{report}");
    }

    /// Raising the seeds of an undecided finding is a second look at the data: the procedure
    /// "judge at 10 seeds; if undecided, add seeds and judge again at 20 or 30", on identical
    /// groups (normal, seed noise, the first look's seeds kept in the second). *matches* at the
    /// margin's edge says reproduced, and the training gap is declared, at either look at most 5%
    /// of the time (plus simulation error; measured 2.7% and 3.4%, 2.7% and 4.0%): a second look
    /// keeps them calibrated. *beats* declares a difference in 6.1% (10 then 20) and 7.9% (10
    /// then 30): above 5%, within the 10% bound of two looks at 5% each, which the report states
    /// beside a *beats* verdict after raised seeds (`budget.json`'s `looked_at`).
    #[test]
    fn calibration_with_a_second_look() {
        let ceiling = ceiling();
        let mut report = String::new();
        for second in [20, 30] {
            let mut rng = ChaCha8Rng::seed_from_u64(4242 + second as u64);
            let mut declared = [0usize; 3];
            let interval = |a: &[f64], b: &[f64], seed: u64| {
                let g = |seeds| Group {
                    seeds,
                    trials: None,
                };
                let boot = Bootstrap { seed, ..BOOT };
                difference(g(a), g(b), Statistic::Mean, false, &boot).unwrap()
            };
            let decided = |v: Verdict| matches!(v, Verdict::Reproduced | Verdict::NotReproduced);
            for i in 0..SIMULATIONS as u64 {
                let [a, b, va, vb, ta, tb] =
                    [0; 6].map(|_| sample(Shape::Normal, second, 0.0, &mut rng));
                // The candidate of *matches* is worse by exactly delta.
                let edge: Vec<f64> = a.iter().map(|x| x - DELTA).collect();
                let looks = |n: usize, seed: u64| {
                    let d = interval(&a[..n], &b[..n], seed);
                    let e = interval(&edge[..n], &b[..n], seed);
                    (
                        beats(&d),
                        matches(&e, DELTA),
                        train_gap(
                            &interval(&va[..n], &vb[..n], seed),
                            &interval(&ta[..n], &tb[..n], seed + 1),
                            DELTA,
                        ),
                    )
                };
                let (b1, m1, g1) = looks(10, 2 * i);
                let (b2, m2, g2) = looks(second, 2 * i + 1);
                declared[0] += usize::from(decided(b1) || decided(b2));
                declared[1] += usize::from(
                    m1 == Verdict::Reproduced
                        || (m1 == Verdict::Inconclusive && m2 == Verdict::Reproduced),
                );
                declared[2] += usize::from(decided(g1) || (!decided(g1) && decided(g2)));
            }
            let rates = declared.map(|c| c as f64 / SIMULATIONS as f64);
            report += &format!(
                "10 then {second} seeds: beats declared {}, matches at -delta reproduced {}, training gap declared {}\n",
                rates[0], rates[1], rates[2]
            );
            assert!(rates[1] <= ceiling && rates[2] <= ceiling, "{report}");
            assert!(rates[0] <= 2.0 * ceiling, "{report}");
        }
        eprintln!("{report}");
    }
}
