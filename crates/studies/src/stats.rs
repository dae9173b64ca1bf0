//! Comparison statistics over seeds and trials, the building blocks of honest verdicts:
//!
//! - [`probability_of_improvement`]: `P(X_A > X_B)` for a random seed of A against a random seed
//!   of B, ties counted one half (the Mann-Whitney U statistic over `n_A n_B`; Agarwal et al.
//!   2021, "Deep RL at the Edge of the Statistical Precipice", rliable).
//! - [`bootstrap_difference`]: a seeded percentile bootstrap interval of `stat(A) - stat(B)`,
//!   each group resampled with replacement on its own (Efron & Tibshirani 1993, ch. 13); the
//!   resample count and seed are inputs, so an interval is reproducible to the digit.
//! - [`expected_max`]: the expected best of `k` trials drawn with replacement from `N` observed
//!   ones (Dodge et al. 2019, "Show Your Work"):
//!   `E[max_k] = sum_i v_(i) [(i/N)^k - ((i-1)/N)^k]` over the sorted values `v_(1) <= ... <= v_(N)`.

use anyhow::{Result, bail};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// `P(X_A > X_B) + P(X_A = X_B) / 2` over all pairs of a value of `a` and a value of `b`.
pub fn probability_of_improvement(a: &[f64], b: &[f64]) -> Result<f64> {
    if a.is_empty() || b.is_empty() {
        bail!("probability of improvement: both groups need at least one value");
    }
    let mut wins = 0.0;
    for x in a {
        for y in b {
            wins += if x > y {
                1.0
            } else if x == y {
                0.5
            } else {
                0.0
            };
        }
    }
    Ok(wins / (a.len() * b.len()) as f64)
}

/// The median (numpy's linear interpolation: the mean of the two middle values of an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// The mean.
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// A point estimate with its interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    pub estimate: f64,
    pub low: f64,
    pub high: f64,
}

/// The settings of every bootstrap a report runs, printed in the report so that it can be
/// recomputed to the digit.
#[derive(serde::Serialize, serde::Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bootstrap {
    /// Resamples per interval.
    pub resamples: usize,
    /// Seed of the ChaCha8 stream (every comparison starts from it).
    pub seed: u64,
    /// Confidence level of the intervals (two-sided).
    pub level: f64,
}

impl Default for Bootstrap {
    fn default() -> Self {
        Bootstrap {
            resamples: 10_000,
            seed: 2021,
            level: 0.95,
        }
    }
}

impl Bootstrap {
    /// The method in words, for the report.
    pub fn method(&self) -> String {
        format!(
            "{:.0}% expanded percentile bootstrap intervals (Hesterberg 2015: the percentiles \
             taken at Phi(-sqrt(n/(n-1)) t(n-1)) and its complement instead of 2.5% and 97.5%, n \
             the smaller group, which widens the interval enough to keep its level at 5 seeds), \
             {} resamples per interval, ChaCha8 seed {}; each group resampled on its own",
            100.0 * self.level,
            self.resamples,
            self.seed
        )
    }
}

/// The standard normal CDF, `Phi(x) = erfc(-x / sqrt 2) / 2`, with `erfc` by the Chebyshev fit of
/// Numerical Recipes (2nd ed., 6.2, `erfcc`; fractional error below 1.2e-7).
pub fn normal_cdf(x: f64) -> f64 {
    let z = (x / std::f64::consts::SQRT_2).abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let erfc = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 {
        1.0 - 0.5 * erfc
    } else {
        0.5 * erfc
    }
}

/// The standard normal quantile (bisection on [`normal_cdf`]).
pub fn normal_quantile(p: f64) -> f64 {
    bisect(normal_cdf, p, -40.0, 40.0)
}

/// `P(T <= t)` for Student's t with `df` degrees of freedom, by the finite series for integer
/// `df` (Abramowitz & Stegun 26.7.3 and 26.7.4), with `theta = atan(t / sqrt(df))`:
/// `A(t) = P(|T| <= t)` is `(2/pi)(theta + sin theta (cos theta + 2/3 cos^3 theta + ...))` for odd
/// `df` and `sin theta (1 + 1/2 cos^2 theta + (1 3)/(2 4) cos^4 theta + ...)` for even `df`.
pub fn t_cdf(t: f64, df: u32) -> f64 {
    assert!(df >= 1, "t distribution: df >= 1");
    let theta = (t.abs() / f64::from(df).sqrt()).atan();
    let (s, c) = theta.sin_cos();
    let a = if df % 2 == 1 {
        let (mut term, mut sum) = (c, if df > 1 { c } else { 0.0 });
        let mut k = 3;
        while k <= df.saturating_sub(2) {
            term *= c * c * f64::from(k - 1) / f64::from(k);
            sum += term;
            k += 2;
        }
        std::f64::consts::FRAC_2_PI * (theta + s * sum)
    } else {
        let (mut term, mut sum) = (1.0, 1.0);
        let mut k = 2;
        while k <= df - 2 {
            term *= c * c * f64::from(k - 1) / f64::from(k);
            sum += term;
            k += 2;
        }
        s * sum
    };
    if t >= 0.0 {
        0.5 + a / 2.0
    } else {
        0.5 - a / 2.0
    }
}

/// The quantile of Student's t (bisection on [`t_cdf`]).
pub fn t_quantile(p: f64, df: u32) -> f64 {
    bisect(|x| t_cdf(x, df), p, -1e4, 1e4)
}

/// `x` in `[lo, hi]` with `f(x) = p` for an increasing `f`.
fn bisect(f: impl Fn(f64) -> f64, p: f64, mut lo: f64, mut hi: f64) -> f64 {
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if f(mid) < p { lo = mid } else { hi = mid }
    }
    0.5 * (lo + hi)
}

/// The tail probability each end of an expanded percentile interval leaves out (Hesterberg
/// 2015, "What teachers should know about the bootstrap", 5.3): the percentile interval is too
/// narrow for small samples by the factors `sqrt((n-1)/n)` (the plug-in variance) and
/// `z / t(n-1)`; taking the percentiles at `Phi(-sqrt(n/(n-1)) t(1 - alpha/2; n-1))` instead of
/// `alpha/2` undoes both. `n` is the size of the smaller group; 0 (the whole range) for `n < 2`.
pub fn expanded_tail(level: f64, n: usize) -> f64 {
    if n < 2 {
        return 0.0;
    }
    let n = n as f64;
    let t = t_quantile(0.5 + level / 2.0, n as u32 - 1);
    normal_cdf(-(n / (n - 1.0)).sqrt() * t)
}

/// The linearly interpolated `q`-quantile of sorted values.
fn sorted_quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// One study's numbers for a comparison: the final metric of its fresh seeds and, for the
/// tuning noise, the selection metric of its feasible tuning trials.
#[derive(Clone, Copy, Debug)]
pub struct Group<'a> {
    pub seeds: &'a [f64],
    pub trials: Option<&'a [f64]>,
}

/// How many trials a resample of the tuning draws.
fn tuning_shift(trials: &[f64], rng: &mut ChaCha8Rng) -> f64 {
    let best = trials.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let drawn = (0..trials.len())
        .map(|_| trials[rng.random_range(0..trials.len())])
        .fold(f64::NEG_INFINITY, f64::max);
    drawn - best
}

/// The statistic a difference is taken of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Statistic {
    Mean,
    Median,
}

impl Statistic {
    pub fn of(self, values: &[f64]) -> f64 {
        match self {
            Statistic::Mean => mean(values),
            Statistic::Median => median(values),
        }
    }
}

/// The expanded percentile bootstrap interval of `stat(A) - stat(B)` over fresh seeds; with
/// `with_tuning` (and both groups' trials given), each resample also redoes each study's tuning:
/// it draws as many trials as the study ran, with replacement, keeps the best (the protocol's
/// selection) and shifts the study's statistic by how far that best falls below the best
/// actually found ("what this tuning budget buys"; a study whose best trial stands alone far
/// above the others gets a wide interval).
pub fn difference(
    a: Group,
    b: Group,
    stat: Statistic,
    with_tuning: bool,
    boot: &Bootstrap,
) -> Result<Interval> {
    if a.seeds.is_empty() || b.seeds.is_empty() {
        bail!("bootstrap: both groups need at least one fresh seed");
    }
    if !(0.0..1.0).contains(&boot.level) || boot.resamples == 0 {
        bail!("bootstrap: expected a level in [0, 1) and at least one resample");
    }
    let tuning = match (with_tuning, a.trials, b.trials) {
        (false, _, _) => None,
        (true, Some(ta), Some(tb)) if !ta.is_empty() && !tb.is_empty() => Some((ta, tb)),
        (true, _, _) => bail!("bootstrap with tuning noise: both studies need feasible trials"),
    };
    let estimate = stat.of(a.seeds) - stat.of(b.seeds);
    Ok(resampled(
        a.seeds,
        b.seeds,
        estimate,
        boot,
        |ra, rb, rng| {
            let mut d = stat.of(ra) - stat.of(rb);
            if let Some((ta, tb)) = tuning {
                d += tuning_shift(ta, rng) - tuning_shift(tb, rng);
            }
            d
        },
    ))
}

/// The expanded percentile interval around `estimate` of `value(resample of a, resample of b)`
/// over `boot.resamples` resamples, each group drawn with replacement on its own (ChaCha8 seeded
/// by `boot.seed`; `value` may draw from the same stream).
fn resampled(
    a: &[f64],
    b: &[f64],
    estimate: f64,
    boot: &Bootstrap,
    mut value: impl FnMut(&[f64], &[f64], &mut ChaCha8Rng) -> f64,
) -> Interval {
    let mut rng = ChaCha8Rng::seed_from_u64(boot.seed);
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut values: Vec<f64> = (0..boot.resamples.max(1))
        .map(|_| {
            draw(a, &mut ra, &mut rng);
            draw(b, &mut rb, &mut rng);
            value(&ra, &rb, &mut rng)
        })
        .collect();
    values.sort_by(f64::total_cmp);
    let tail = expanded_tail(boot.level, a.len().min(b.len()));
    Interval {
        estimate,
        low: sorted_quantile(&values, tail),
        high: sorted_quantile(&values, 1.0 - tail),
    }
}

fn draw(values: &[f64], into: &mut Vec<f64>, rng: &mut ChaCha8Rng) {
    into.clear();
    into.extend((0..values.len()).map(|_| values[rng.random_range(0..values.len())]));
}

/// The probability of improvement with its expanded percentile bootstrap interval (groups
/// resampled on their own, as [`difference`]).
pub fn improvement(a: &[f64], b: &[f64], boot: &Bootstrap) -> Result<Interval> {
    let estimate = probability_of_improvement(a, b)?;
    Ok(resampled(a, b, estimate, boot, |ra, rb, _| {
        probability_of_improvement(ra, rb).expect("resamples are not empty")
    }))
}

/// The sample standard deviation (divisor `n - 1`; 0 for fewer than two values).
pub fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    (values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// Seeds per study that would decide a difference `distance` away from a decision boundary
/// with 80% power at the two-sided 5% level, by the normal approximation for two groups of
/// equal size with the pooled standard deviation `sd`: `n = 2 (z_0.975 + z_0.8)^2 sd^2 /
/// distance^2` (rounded up, at least 2). `None` when the distance is 0.
pub fn seeds_needed(sd: f64, distance: f64) -> Option<u64> {
    if distance.abs() < 1e-12 {
        return None;
    }
    let z = normal_quantile(0.975) + normal_quantile(0.8);
    Some(((2.0 * (z * sd / distance).powi(2)).ceil() as u64).max(2))
}

/// `E[f(max of k)]` for `k` values drawn with replacement from `values`: the sorted values
/// `v_(1) <= ... <= v_(N)` weighted by `(i/N)^k - ((i-1)/N)^k`, the chance that `v_(i)` is the
/// maximum.
fn expected_of_max(values: &[f64], k: u32, f: impl Fn(f64) -> f64) -> Result<f64> {
    if values.is_empty() || k == 0 {
        bail!("expected maximum: expected at least one value and k >= 1");
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    Ok(v.iter()
        .enumerate()
        .map(|(i, x)| {
            let i = i as f64 + 1.0;
            f(*x) * ((i / n).powi(k as i32) - ((i - 1.0) / n).powi(k as i32))
        })
        .sum())
}

/// The expected maximum of `k` values drawn with replacement from `values` (exact, no sampling).
pub fn expected_max(values: &[f64], k: u32) -> Result<f64> {
    expected_of_max(values, k, |x| x)
}

/// The expected maximum of `k` of `values` (drawn with replacement) and its standard deviation,
/// `sqrt(E[max^2] - E[max]^2)` by the same order-statistic weights (Dodge et al. 2019 draw this
/// band around their expected validation performance).
pub fn expected_max_band(values: &[f64], k: u32) -> Result<(f64, f64)> {
    let m = expected_max(values, k)?;
    let second = expected_of_max(values, k, |x| x * x)?;
    Ok((m, (second - m * m).max(0.0).sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probability_of_improvement_by_hand() {
        // Pairs of [1, 3] x [2]: 1 < 2, 3 > 2.
        assert_eq!(
            probability_of_improvement(&[1.0, 3.0], &[2.0]).unwrap(),
            0.5
        );
        // [2, 4] x [2, 3]: (2,2) tie 1/2, (2,3) 0, (4,2) 1, (4,3) 1 -> 2.5 / 4.
        assert_eq!(
            probability_of_improvement(&[2.0, 4.0], &[2.0, 3.0]).unwrap(),
            0.625
        );
        assert!(probability_of_improvement(&[], &[1.0]).is_err());
    }

    /// Dodge et al.'s formula on [1, 2, 3]: k = 1 is the mean (2); k = 2 is
    /// 1 (1/9) + 2 (4/9 - 1/9) + 3 (1 - 4/9) = 22/9 (the 9 equally likely ordered pairs have
    /// maxima 1, 2, 3, 2, 2, 3, 3, 3, 3: sum 22); large k tends to the maximum.
    #[test]
    fn expected_max_by_hand() {
        let v = [3.0, 1.0, 2.0];
        assert!((expected_max(&v, 1).unwrap() - 2.0).abs() < 1e-12);
        assert!((expected_max(&v, 2).unwrap() - 22.0 / 9.0).abs() < 1e-12);
        assert!((expected_max(&v, 200).unwrap() - 3.0).abs() < 1e-9);
    }

    #[test]
    fn medians_as_numpy() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(mean(&[1.0, 2.0, 6.0]), 3.0);
    }

    /// With one value per group every resample is that value: the interval is the point. With
    /// A = {0, 1} and B = {0} (the smaller group has one value, so the interval is the whole
    /// range of resamples), the median of a resample of A is 0, 0.5 or 1 with probabilities
    /// 1/4, 1/2, 1/4: the interval runs from 0 to 1. The same seed gives the same interval.
    #[test]
    fn bootstrap_by_hand_and_reproducible() {
        let boot = Bootstrap {
            resamples: 4000,
            seed: 7,
            level: 0.95,
        };
        let g = |v: &'static [f64]| Group {
            seeds: v,
            trials: None,
        };
        let i = difference(g(&[2.0]), g(&[0.5]), Statistic::Median, false, &boot).unwrap();
        assert_eq!((i.estimate, i.low, i.high), (1.5, 1.5, 1.5));
        let i = difference(g(&[0.0, 1.0]), g(&[0.0]), Statistic::Median, false, &boot).unwrap();
        assert_eq!((i.estimate, i.low, i.high), (0.5, 0.0, 1.0));
        let again = difference(g(&[0.0, 1.0]), g(&[0.0]), Statistic::Median, false, &boot).unwrap();
        assert_eq!(i, again);
        // Tuning noise: B's trials {0, 1} drawn twice keep the best (1) with probability 3/4,
        // else fall 1 below it; A has one trial (no shift). So about a quarter of the resamples
        // of 0 - 0 become +1.
        let trials_a: &[f64] = &[0.5];
        let trials_b: &[f64] = &[0.0, 1.0];
        let a = Group {
            seeds: &[0.0],
            trials: Some(trials_a),
        };
        let b = Group {
            seeds: &[0.0],
            trials: Some(trials_b),
        };
        let i = difference(a, b, Statistic::Mean, true, &boot).unwrap();
        assert_eq!((i.estimate, i.low, i.high), (0.0, 0.0, 1.0));
        assert!(difference(a, g(&[0.0]), Statistic::Mean, true, &boot).is_err());
    }

    /// Published values: Phi(1.959964) = 0.975, Phi(-1) = 0.158655; Student's t 97.5% points
    /// for 1, 2, 4, 9 and 19 degrees of freedom 12.7062, 4.3027, 2.7764, 2.2622, 2.0930 (any t
    /// table); 80% point of the normal 0.841621.
    #[test]
    fn normal_and_t_against_tables() {
        assert!((normal_cdf(1.959964) - 0.975).abs() < 1e-6);
        assert!((normal_cdf(-1.0) - 0.158655).abs() < 1e-6);
        assert!((normal_quantile(0.8) - 0.841621).abs() < 1e-5);
        for (df, t) in [
            (1, 12.7062),
            (2, 4.3027),
            (4, 2.7764),
            (9, 2.2622),
            (19, 2.0930),
        ] {
            assert!((t_quantile(0.975, df) - t).abs() < 1e-3, "df {df}");
        }
        assert!((t_cdf(0.0, 5) - 0.5).abs() < 1e-12);
        // The tail of the expanded interval at 5 seeds: Phi(-sqrt(5/4) 2.7764) = Phi(-3.1042),
        // between Phi(-3.10) = 0.000968 and Phi(-3.11) = 0.000935 (normal table).
        let tail = expanded_tail(0.95, 5);
        assert!(tail > 0.000935 && tail < 0.000968, "{tail}");
        assert_eq!(expanded_tail(0.95, 1), 0.0);
    }

    /// On [1, 2, 3] with k = 2 the maxima of the 9 ordered pairs are 1, 2, 2, 2, 3, 3, 3, 3, 3:
    /// E[max] = 22/9, E[max^2] = (1 + 12 + 45)/9 = 58/9, so the variance is 58/9 - 484/81 =
    /// 38/81. Two groups of 16 detect a one-SD difference at 80% power (Lehr's 16 / d^2).
    #[test]
    fn expected_max_band_and_seeds_needed_by_hand() {
        let (m, sd) = expected_max_band(&[3.0, 1.0, 2.0], 2).unwrap();
        assert!((m - 22.0 / 9.0).abs() < 1e-12);
        assert!((sd - 38f64.sqrt() / 9.0).abs() < 1e-12);
        assert_eq!(seeds_needed(1.0, 1.0), Some(16));
        assert_eq!(seeds_needed(1.0, 0.5), Some(63));
        assert_eq!(seeds_needed(1.0, 0.0), None);
    }
}
