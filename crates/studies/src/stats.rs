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

/// The percentile bootstrap interval at `level` (e.g. 0.95) of `stat(A) - stat(B)`: `resamples`
/// times, draw `|A|` values of A and `|B|` of B with replacement (ChaCha8 seeded by `seed`),
/// take the difference of the statistic; the interval's ends are the `(1 - level)/2` and
/// `(1 + level)/2` quantiles of those differences (linear interpolation).
pub fn bootstrap_difference(
    a: &[f64],
    b: &[f64],
    stat: fn(&[f64]) -> f64,
    level: f64,
    resamples: usize,
    seed: u64,
) -> Result<Interval> {
    if a.is_empty() || b.is_empty() {
        bail!("bootstrap: both groups need at least one value");
    }
    if !(0.0..1.0).contains(&level) || resamples == 0 {
        bail!("bootstrap: expected a level in [0, 1) and at least one resample");
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |values: &[f64], into: &mut Vec<f64>| {
        into.clear();
        into.extend((0..values.len()).map(|_| values[rng.random_range(0..values.len())]));
    };
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    let mut diffs: Vec<f64> = (0..resamples)
        .map(|_| {
            draw(a, &mut ra);
            draw(b, &mut rb);
            stat(&ra) - stat(&rb)
        })
        .collect();
    diffs.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let pos = q * (diffs.len() - 1) as f64;
        let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
        diffs[lo] + (diffs[hi] - diffs[lo]) * (pos - lo as f64)
    };
    Ok(Interval {
        estimate: stat(a) - stat(b),
        low: quantile((1.0 - level) / 2.0),
        high: quantile((1.0 + level) / 2.0),
    })
}

/// The expected maximum of `k` values drawn with replacement from `values` (exact, no sampling).
pub fn expected_max(values: &[f64], k: u32) -> Result<f64> {
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
            x * ((i / n).powi(k as i32) - ((i - 1.0) / n).powi(k as i32))
        })
        .sum())
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
    /// A = {0, 1} and B = {0}, the median of a resample of A is 0, 0.5 or 1 with probabilities
    /// 1/4, 1/2, 1/4, so the 95% interval runs from 0 to 1 and about half the resamples give 0.5.
    /// The same seed gives the same interval.
    #[test]
    fn bootstrap_by_hand_and_reproducible() {
        let i = bootstrap_difference(&[2.0], &[0.5], median, 0.95, 100, 1).unwrap();
        assert_eq!((i.estimate, i.low, i.high), (1.5, 1.5, 1.5));
        let i = bootstrap_difference(&[0.0, 1.0], &[0.0], median, 0.95, 4000, 7).unwrap();
        assert_eq!((i.estimate, i.low, i.high), (0.5, 0.0, 1.0));
        let again = bootstrap_difference(&[0.0, 1.0], &[0.0], median, 0.95, 4000, 7).unwrap();
        assert_eq!(i, again);
        let narrow = bootstrap_difference(&[0.0, 1.0], &[0.0], median, 0.4, 4000, 7).unwrap();
        assert_eq!((narrow.low, narrow.high), (0.5, 0.5));
    }
}
