//! Tuning studies as data: a search space over dotted run-config paths, quasi-random points by
//! trial index, and the statistics of a set of seeds.
//!
//! Trial `i` of a study is a pure function of (study seed, `i`): any process can compute it without
//! coordination, which is what lets a cluster scheduler run a study (`bigbatch study slurm`).

use crate::config::update_path;
use anyhow::{Result, bail};
use rand::Rng;
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// How one hyperparameter is searched. `u` is the point's coordinate in `[0, 1)`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub enum Scaling {
    /// `min * exp(u ln(max / min))`; `0 < min < max`.
    Log(f64, f64),
    /// `min + u (max - min)`; `min < max`.
    Linear(f64, f64),
    /// `values[floor(u n)]` (numbers, strings, booleans, lists...).
    Discrete(Vec<Value>),
    /// Always this value (takes no dimension of the sequence).
    Fixed(Value),
    /// `1 - x` with `x` from the inner scaling: the paper searches `1 - mu`, `1 - beta1`,
    /// `1 - beta2` on a log scale, e.g. `OneMinus(Log(1e-3, 1.0))` for the momentum.
    OneMinus(Box<Scaling>),
    /// A grid sweep instead of a quasi-random draw (the paper's Tables 17-19): the sweep
    /// dimensions of a space enumerate their Cartesian product in key order, the first key
    /// varying fastest, so trials `0 .. product - 1` visit every combination once (trial `i`
    /// takes `values[i mod n]` of the first sweep, and so on; after the product it wraps around).
    Sweep(Vec<Value>),
}

impl Scaling {
    /// Whether the scaling takes a dimension of the Halton sequence.
    fn takes_dimension(&self) -> bool {
        match self {
            Scaling::Fixed(_) | Scaling::Sweep(_) => false,
            Scaling::OneMinus(inner) => inner.takes_dimension(),
            _ => true,
        }
    }

    /// Checks the bounds; errors name `field`.
    pub fn validate(&self, field: &str) -> Result<()> {
        match self {
            Scaling::Log(min, max) => {
                if !(min.is_finite() && max.is_finite() && *min > 0.0 && min < max) {
                    bail!("{field}: Log(min, max) needs 0 < min < max, got Log({min}, {max})");
                }
            }
            Scaling::Linear(min, max) => {
                if !(min.is_finite() && max.is_finite() && min < max) {
                    bail!("{field}: Linear(min, max) needs min < max, got Linear({min}, {max})");
                }
            }
            Scaling::Discrete(values) => {
                if values.is_empty() {
                    bail!("{field}: Discrete([...]) needs at least one value");
                }
            }
            Scaling::Sweep(values) => {
                if values.is_empty() {
                    bail!("{field}: Sweep([...]) needs at least one value");
                }
            }
            Scaling::OneMinus(inner) => match **inner {
                Scaling::Log(..) | Scaling::Linear(..) => inner.validate(field)?,
                _ => bail!("{field}: OneMinus(...) takes Log(min, max) or Linear(min, max)"),
            },
            Scaling::Fixed(_) => {}
        }
        Ok(())
    }

    /// The value at coordinate `u`.
    pub fn map(&self, u: f64) -> Value {
        match self {
            Scaling::Log(min, max) => Value::from(min * (u * (max / min).ln()).exp()),
            Scaling::Linear(min, max) => Value::from(min + u * (max - min)),
            Scaling::Discrete(values) => {
                let i = ((u * values.len() as f64).floor() as usize).min(values.len() - 1);
                values[i].clone()
            }
            Scaling::Fixed(v) => v.clone(),
            Scaling::OneMinus(inner) => Value::from(1.0 - inner.map(u).as_f64().unwrap_or(0.0)),
            // Sweeps are placed by `trial_point`; `u` is the position in the grid here.
            Scaling::Sweep(values) => values[(u as usize).min(values.len() - 1)].clone(),
        }
    }

    /// The coordinate `u` in [0, 1] at which [`Scaling::map`] gives `value` (the inverse of
    /// `map`: `ln(v / min) / ln(max / min)` for `Log`, `(v - min) / (max - min)` for `Linear`,
    /// the inner scaling's at `1 - v` for `OneMinus`); `None` for the scalings without a
    /// continuous range (`Discrete`, `Fixed`, `Sweep`) and for a value that is not a number.
    pub fn position(&self, value: &Value) -> Option<f64> {
        let v = value.as_f64()?;
        match self {
            Scaling::Log(min, max) => Some((v / min).ln() / (max / min).ln()),
            Scaling::Linear(min, max) => Some((v - min) / (max - min)),
            Scaling::OneMinus(inner) => inner.position(&Value::from(1.0 - v)),
            Scaling::Discrete(_) | Scaling::Fixed(_) | Scaling::Sweep(_) => None,
        }
    }
}

/// The searched paths whose value in `point` lies within `margin` (a fraction of the range in
/// the mapped scale, e.g. 0.05) of an edge of its range: `(key, position)` with the position in
/// [0, 1]. The paper widened a range whose best point fell near its edge.
pub fn near_edges(
    space: &SearchSpace,
    point: &BTreeMap<String, Value>,
    margin: f64,
) -> Vec<(String, f64)> {
    space
        .iter()
        .filter_map(|(key, scaling)| {
            let path = key_paths(key).next()?;
            let u = scaling.position(point.get(path)?)?;
            (u < margin || u > 1.0 - margin).then(|| (key.clone(), u))
        })
        .collect()
}

/// The final range of a two-stage search (the paper's Appendix C.3: an "Initial Range", then a
/// refined "Final Range" around its best point): each continuous dimension narrowed to `width`
/// (a fraction of its range in the mapped scale, `0 < width <= 1`) centred on `point`'s value.
/// A `Log` window (also inside `OneMinus`) may extend past the initial range where the best value
/// lies near its edge, which is how the paper widened such ranges; a `OneMinus` value stays in
/// `(0, 1)` and a `Linear` window is shifted to stay inside the initial range, whose bounds are
/// usually hard limits. `Discrete`, `Fixed` and `Sweep` dimensions are kept.
pub fn refine_space(
    space: &SearchSpace,
    point: &BTreeMap<String, Value>,
    width: f64,
) -> Result<SearchSpace> {
    if !(width > 0.0 && width <= 1.0) {
        bail!("refine.width: expected a fraction in (0, 1], got {width}");
    }
    space
        .iter()
        .map(|(key, scaling)| {
            let path = key_paths(key).next().unwrap_or(key);
            let refined = match point.get(path).and_then(|v| scaling.position(v)) {
                Some(u) => refine_scaling(scaling, u, width),
                None => scaling.clone(),
            };
            Ok((key.clone(), refined))
        })
        .collect()
}

/// [`refine_space`] for one dimension whose best value lies at position `u`.
fn refine_scaling(scaling: &Scaling, u: f64, width: f64) -> Scaling {
    let (lo, hi) = (u - width / 2.0, u + width / 2.0);
    match scaling {
        Scaling::Log(min, max) => {
            let at = |t: f64| min * (t * (max / min).ln()).exp();
            Scaling::Log(at(lo), at(hi))
        }
        Scaling::Linear(min, max) => {
            let shift = if lo < 0.0 {
                -lo
            } else if hi > 1.0 {
                1.0 - hi
            } else {
                0.0
            };
            let at = |t: f64| min + (t + shift) * (max - min);
            Scaling::Linear(at(lo), at(hi))
        }
        Scaling::OneMinus(inner) => match refine_scaling(inner, u, width) {
            // 1 - x stays a fraction: the window's upper end at most 1 (a momentum of 0).
            Scaling::Log(a, b) if b > 1.0 => {
                Scaling::OneMinus(Box::new(Scaling::Log(a.min(0.5), 1.0)))
            }
            refined => Scaling::OneMinus(Box::new(refined)),
        },
        other => other.clone(),
    }
}

/// Dotted run-config path -> scaling. Dimensions of the Halton sequence are assigned in key
/// order, skipping `Fixed` and `Sweep` entries. A key may name several paths separated by
/// commas, which then share one value (the paper's Table 7 ties the warmup and decay powers:
/// `"schedule.power, schedule.warmup_power"`).
pub type SearchSpace = BTreeMap<String, Scaling>;

/// The paths of one search key (`"a.b, c.d"` -> `["a.b", "c.d"]`).
pub fn key_paths(key: &str) -> impl Iterator<Item = &str> {
    key.split(',').map(str::trim)
}

/// Checks every dimension; errors read `origin: search."path": ...`.
pub fn validate_space(space: &SearchSpace, origin: &str) -> Result<()> {
    for (key, scaling) in space {
        if key_paths(key).any(str::is_empty) {
            bail!("{origin}: search.\"{key}\": empty path");
        }
        scaling.validate(&format!("{origin}: search.\"{key}\""))?;
    }
    Ok(())
}

/// Leading points dropped from every sequence (AlgoPerf `halton.py`'s default `skip = 100`).
pub const HALTON_SKIP: u64 = 100;

/// The `n`th prime (0-based): the base of dimension `n`.
pub fn nth_prime(n: usize) -> u64 {
    let mut found = 0;
    let mut candidate = 1u64;
    loop {
        candidate += 1;
        if (2..candidate)
            .take_while(|d| d * d <= candidate)
            .all(|d| !candidate.is_multiple_of(d))
        {
            if found == n {
                return candidate;
            }
            found += 1;
        }
    }
}

/// One scrambled Van der Corput coordinate: the base-`base` digits of `i` (least significant
/// first) mapped through the digit permutation `perm` (with `perm[0] = 0`) and mirrored behind the
/// radix point, then shifted by `shift` modulo 1 (AlgoPerf `halton.py`, `generate_sequence`).
pub fn van_der_corput(mut i: u64, base: u64, perm: &[u64], shift: f64) -> f64 {
    let mut num = 0.0;
    let mut denominator = base as f64;
    while i > 0 {
        num += perm[(i % base) as usize] as f64 / denominator;
        denominator *= base as f64;
        i /= base;
    }
    (num + shift).rem_euclid(1.0)
}

/// The digit permutation and shift of dimension `dim` of a study. As in AlgoPerf's `halton.py`,
/// digit 0 stays 0 and the other digits are shuffled, and a uniform shift is drawn per dimension;
/// unlike it (numpy's MT19937 seeded by the base) the generator is ChaCha8 seeded by
/// `(study seed, dim)`, so different studies get different scramblings.
pub fn scrambling(study_seed: u64, dim: usize) -> (Vec<u64>, f64) {
    let base = nth_prime(dim);
    let mut rng = ChaCha8Rng::seed_from_u64(
        study_seed ^ (dim as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    let mut digits: Vec<u64> = (1..base).collect();
    digits.shuffle(&mut rng);
    let mut perm = vec![0];
    perm.extend(digits);
    let shift = rng.random::<f64>();
    (perm, shift)
}

/// Point `index` of a study's scrambled Halton sequence in `[0, 1)^dims`: sequence element
/// `HALTON_SKIP + index + 1`, dimension `d` in base `nth_prime(d)`. The AlgoPerf generator also
/// shuffles the order of a finite batch of points; we do not, so that a point depends on its index
/// alone.
pub fn halton_point(study_seed: u64, index: u64, dims: usize) -> Vec<f64> {
    (0..dims)
        .map(|d| {
            let (perm, shift) = scrambling(study_seed, d);
            van_der_corput(HALTON_SKIP + index + 1, nth_prime(d), &perm, shift)
        })
        .collect()
}

/// The hyperparameters of trial `index`: search key -> value.
pub fn trial_point(space: &SearchSpace, study_seed: u64, index: u64) -> BTreeMap<String, Value> {
    let dims = space.values().filter(|s| s.takes_dimension()).count();
    let u = halton_point(study_seed, index, dims);
    let mut next = u.into_iter();
    let mut grid_index = index;
    space
        .iter()
        .map(|(key, scaling)| {
            let coordinate = match scaling {
                Scaling::Sweep(values) => {
                    let n = values.len() as u64;
                    let position = grid_index % n;
                    grid_index /= n;
                    position as f64
                }
                s if s.takes_dimension() => {
                    next.next().expect("one coordinate per searched dimension")
                }
                _ => 0.0,
            };
            (key.clone(), scaling.map(coordinate))
        })
        .collect()
}

/// Trials in one pass over a space's sweep grid (1 without sweeps).
pub fn grid_size(space: &SearchSpace) -> u64 {
    space
        .values()
        .map(|s| match s {
            Scaling::Sweep(values) => values.len() as u64,
            _ => 1,
        })
        .product()
}

/// Writes a point into the JSON form of a run config. A number replacing an integer field is
/// rounded to the nearest integer (e.g. a `Log` search over `warmup_steps`).
pub fn apply_point(config: &mut Value, point: &BTreeMap<String, Value>) -> Result<()> {
    for (key, value) in point {
        for path in key_paths(key) {
            update_path(config, path, |current| {
                Ok(match (current, value.as_f64()) {
                    (Value::Number(n), Some(x))
                        if (n.is_u64() || n.is_i64()) && !value.is_i64() =>
                    {
                        Value::from(x.round() as i64)
                    }
                    _ => value.clone(),
                })
            })
            .map_err(|e| anyhow::anyhow!("search.\"{key}\": {path}: {e}"))?;
        }
    }
    Ok(())
}

/// The spread of one metric over a set of runs (e.g. seeds).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Spread {
    pub n: usize,
    pub min: f64,
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub max: f64,
}

/// Quantile `q` of sorted `xs` by linear interpolation between closest ranks (numpy's default,
/// `np.quantile(..., method="linear")`).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Min, quartiles, median and max of `values` (`None` when empty; non-finite values are errors).
pub fn spread(values: &[f64]) -> Result<Option<Spread>> {
    if values.is_empty() {
        return Ok(None);
    }
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        bail!("cannot summarise a non-finite value ({bad})");
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    Ok(Some(Spread {
        n: sorted.len(),
        min: sorted[0],
        q1: quantile(&sorted, 0.25),
        median: quantile(&sorted, 0.5),
        q3: quantile(&sorted, 0.75),
        max: sorted[sorted.len() - 1],
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Final ranges worked by hand: half of a two-decade log range is one decade centred on the
    /// best value (9 -> [9 / sqrt 10, 9 sqrt 10], past the initial edge 10); a linear window is
    /// shifted back inside; 1 - momentum 0.1 in `OneMinus(Log(0.01, 0.3))` gets
    /// [0.1 / 30^(1/4), 0.1 * 30^(1/4)].
    #[test]
    fn refined_ranges_by_hand() {
        let space: SearchSpace = [
            ("lr".to_string(), Scaling::Log(0.1, 10.0)),
            ("wd".to_string(), Scaling::Log(1e-4, 1e-2)),
            ("p".to_string(), Scaling::Linear(0.0, 1.0)),
            (
                "m".to_string(),
                Scaling::OneMinus(Box::new(Scaling::Log(0.01, 0.3))),
            ),
            (
                "d".to_string(),
                Scaling::Discrete(vec![Value::from(1), Value::from(2)]),
            ),
        ]
        .into_iter()
        .collect();
        let point: BTreeMap<String, Value> = [
            ("lr", Value::from(9.0)),
            ("wd", Value::from(1e-3)),
            ("p", Value::from(0.9)),
            ("m", Value::from(0.9)),
            ("d", Value::from(2)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let refined = refine_space(&space, &point, 0.5).unwrap();
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs().max(1.0);
        let Scaling::Log(a, b) = refined["lr"] else {
            panic!("{:?}", refined["lr"])
        };
        assert!(
            close(a, 9.0 / 10f64.sqrt()) && close(b, 9.0 * 10f64.sqrt()),
            "{a} {b}"
        );
        let Scaling::Log(a, b) = refined["wd"] else {
            panic!()
        };
        assert!(
            close(a, 1e-4 * 10f64.sqrt()) && close(b, 1e-3 * 10f64.sqrt()),
            "{a} {b}"
        );
        let Scaling::Linear(a, b) = refined["p"] else {
            panic!()
        };
        assert!(close(a, 0.5) && close(b, 1.0), "{a} {b}");
        let Scaling::OneMinus(inner) = &refined["m"] else {
            panic!()
        };
        let Scaling::Log(a, b) = **inner else {
            panic!()
        };
        let q = 30f64.powf(0.25);
        assert!(close(a, 0.1 / q) && close(b, 0.1 * q), "{a} {b}");
        assert_eq!(refined["d"], space["d"]);
        assert!(refine_space(&space, &point, 0.0).is_err());
        assert!(refine_space(&space, &point, 1.5).is_err());
    }

    #[test]
    fn primes() {
        let p: Vec<u64> = (0..8).map(nth_prime).collect();
        assert_eq!(p, vec![2, 3, 5, 7, 11, 13, 17, 19]);
    }

    /// Unscrambled base-2 Van der Corput: 1 -> 0.5, 2 -> 0.25, 3 -> 0.75, 6 = 110b -> 0.375.
    #[test]
    fn van_der_corput_by_hand() {
        let id = [0, 1];
        let v: Vec<f64> = [1, 2, 3, 6]
            .iter()
            .map(|&i| van_der_corput(i, 2, &id, 0.0))
            .collect();
        assert_eq!(v, vec![0.5, 0.25, 0.75, 0.375]);
        // Base 3 with digits 1 <-> 2 swapped: 1 -> 2/3; 5 = 12_3 has digits (2, 1) from the
        // least significant, mapped to (1, 2): 1/3 + 2/9.
        let perm = [0, 2, 1];
        assert!((van_der_corput(1, 3, &perm, 0.0) - 2.0 / 3.0).abs() < 1e-15);
        assert!((van_der_corput(5, 3, &perm, 0.0) - (1.0 / 3.0 + 2.0 / 9.0)).abs() < 1e-15);
        // The shift wraps around 1.
        assert!((van_der_corput(1, 2, &id, 0.75) - 0.25).abs() < 1e-15);
    }

    /// Low discrepancy: any b^k consecutive indices starting at a multiple of b^k fill each of the
    /// b^k circular intervals [shift + j/b^k, shift + (j+1)/b^k) exactly once, in every dimension,
    /// whatever the scrambling.
    #[test]
    fn each_dimension_stratifies() {
        for dim in 0..5 {
            let base = nth_prime(dim);
            let (perm, shift) = scrambling(7, dim);
            let n = base.pow(if base < 5 { 4 } else { 2 });
            let start = 3 * n;
            let mut seen = vec![0; n as usize];
            for i in start..start + n {
                let u = van_der_corput(i, base, &perm, shift);
                let cell = ((u - shift).rem_euclid(1.0) * n as f64 + 1e-9).floor() as usize;
                seen[cell.min(n as usize - 1)] += 1;
            }
            assert!(seen.iter().all(|&c| c == 1), "dim {dim}: {seen:?}");
        }
    }

    /// 2-D: 400 consecutive points on a 10 x 10 grid leave no cell empty and none with more than
    /// twice the expected 4 (independent uniform points would leave ~2 cells empty on average).
    #[test]
    fn two_dimensions_cover_the_square() {
        let mut counts = [[0u32; 10]; 10];
        for i in 0..400 {
            let p = halton_point(3, i, 2);
            counts[(p[0] * 10.0) as usize][(p[1] * 10.0) as usize] += 1;
        }
        let flat: Vec<u32> = counts.iter().flatten().copied().collect();
        assert!(flat.iter().all(|&c| (1..=8).contains(&c)), "{counts:?}");
    }

    #[test]
    fn points_depend_on_seed_and_index_only() {
        assert_eq!(halton_point(1, 17, 4), halton_point(1, 17, 4));
        assert_ne!(halton_point(1, 17, 4), halton_point(2, 17, 4));
        assert_ne!(halton_point(1, 17, 4), halton_point(1, 18, 4));
        assert!(halton_point(9, 5, 6).iter().all(|u| (0.0..1.0).contains(u)));
    }

    #[test]
    fn mappings() {
        let log = Scaling::Log(1e-4, 1.0);
        assert!((log.map(0.5).as_f64().unwrap() - 1e-2).abs() < 1e-15);
        assert!((log.map(0.0).as_f64().unwrap() - 1e-4).abs() < 1e-18);
        assert_eq!(Scaling::Linear(2.0, 4.0).map(0.25), Value::from(2.5));
        let d = Scaling::Discrete(vec![Value::from(1), Value::from("a"), Value::from(true)]);
        assert_eq!(d.map(0.0), Value::from(1));
        assert_eq!(d.map(0.34), Value::from("a"));
        assert_eq!(d.map(0.999), Value::from(true));
        assert_eq!(Scaling::Fixed(Value::from(3)).map(0.7), Value::from(3));
    }

    #[test]
    fn fixed_entries_take_no_dimension() {
        let mut space = SearchSpace::new();
        space.insert("a".into(), Scaling::Linear(0.0, 1.0));
        space.insert("b".into(), Scaling::Fixed(Value::from(5)));
        space.insert("c".into(), Scaling::Linear(0.0, 1.0));
        let p = trial_point(&space, 4, 2);
        let u = halton_point(4, 2, 2);
        assert_eq!(p["a"], Value::from(u[0]));
        assert_eq!(p["b"], Value::from(5));
        assert_eq!(p["c"], Value::from(u[1]));
    }

    #[test]
    fn bad_spaces_name_the_field() {
        let check = |s: Scaling| {
            s.validate("study.ron: search.\"x\"")
                .unwrap_err()
                .to_string()
        };
        assert!(check(Scaling::Log(1.0, 0.1)).contains("search.\"x\": Log(min, max) needs"));
        assert!(check(Scaling::Log(0.0, 1.0)).contains("0 < min"));
        assert!(check(Scaling::Linear(2.0, 2.0)).contains("min < max"));
        assert!(check(Scaling::Discrete(vec![])).contains("at least one value"));
    }

    #[test]
    fn integer_fields_are_rounded() {
        let mut config =
            serde_json::json!({"schedule": {"Cosine": {"warmup_steps": 40, "peak": 0.1}}});
        let mut point = BTreeMap::new();
        point.insert("schedule.warmup_steps".to_string(), Value::from(52.7));
        point.insert("schedule.peak".to_string(), Value::from(0.25));
        apply_point(&mut config, &point).unwrap();
        assert_eq!(
            config["schedule"]["Cosine"]["warmup_steps"],
            Value::from(53)
        );
        assert_eq!(config["schedule"]["Cosine"]["peak"], Value::from(0.25));
        point.insert("schedule.nope".to_string(), Value::from(1));
        let e = apply_point(&mut config, &point).unwrap_err().to_string();
        assert!(
            e.contains("search.\"schedule.nope\": schedule.nope: unknown field `nope`"),
            "{e}"
        );
    }

    /// `1 - mu` on a log scale, sweeps enumerating their grid, and tied paths.
    #[test]
    fn one_minus_sweeps_and_tied_paths() {
        let m = Scaling::OneMinus(Box::new(Scaling::Log(1e-3, 1e-1)));
        assert!((m.map(0.5).as_f64().unwrap() - 0.99).abs() < 1e-15);
        assert!(
            Scaling::OneMinus(Box::new(Scaling::Fixed(Value::from(1))))
                .validate("f")
                .is_err()
        );
        let mut space = SearchSpace::new();
        space.insert(
            "a".into(),
            Scaling::Sweep(vec![1.into(), 2.into(), 3.into()]),
        );
        space.insert("b".into(), Scaling::Linear(0.0, 1.0));
        space.insert("c".into(), Scaling::Sweep(vec!["x".into(), "y".into()]));
        assert_eq!(grid_size(&space), 6);
        let grid: Vec<(Value, Value)> = (0..6)
            .map(|i| {
                let p = trial_point(&space, 3, i);
                (p["a"].clone(), p["c"].clone())
            })
            .collect();
        let distinct: std::collections::BTreeSet<String> =
            grid.iter().map(|(a, c)| format!("{a}{c}")).collect();
        assert_eq!(distinct.len(), 6, "{grid:?}");
        assert_eq!(grid[4], (Value::from(2), Value::from("y")));
        // The quasi-random dimension is the first Halton dimension (sweeps take none).
        assert_eq!(
            trial_point(&space, 3, 4)["b"],
            Value::from(halton_point(3, 4, 1)[0])
        );
        let mut config = serde_json::json!({"s": {"p": 1.0, "q": 1.0}});
        let mut point = BTreeMap::new();
        point.insert("s.p, s.q".to_string(), Value::from(2.0));
        apply_point(&mut config, &point).unwrap();
        assert_eq!(config, serde_json::json!({"s": {"p": 2.0, "q": 2.0}}));
        let mut bad = SearchSpace::new();
        bad.insert("s.p,".into(), Scaling::Fixed(Value::from(1)));
        assert!(
            validate_space(&bad, "f")
                .unwrap_err()
                .to_string()
                .contains("empty path")
        );
    }

    /// numpy: np.quantile([1, 2, 3, 4, 10], [0.25, 0.5, 0.75]) = [2, 3, 4];
    /// np.quantile([1, 2, 3, 4], 0.25) = 1.75.
    #[test]
    fn quantiles_match_numpy() {
        let s = spread(&[10.0, 2.0, 4.0, 1.0, 3.0]).unwrap().unwrap();
        assert_eq!(
            (s.min, s.q1, s.median, s.q3, s.max),
            (1.0, 2.0, 3.0, 4.0, 10.0)
        );
        assert_eq!(quantile(&[1.0, 2.0, 3.0, 4.0], 0.25), 1.75);
        assert!(spread(&[]).unwrap().is_none());
        assert!(spread(&[1.0, f64::NAN]).is_err());
    }

    /// Positions worked by hand: 1e-3 in Log(1e-4, 1e-2) is halfway (ln 10 / ln 100); 0.9 in
    /// Linear(0, 1) is 0.9; a momentum of 0.99 under OneMinus(Log(1e-3, 1.0)) is 1 - 0.99 = 0.01,
    /// at ln 10 / ln 1000 = 1/3. Near an edge (5%): 0.99 in Linear(0, 1) and 1.1e-4 in Log(1e-4,
    /// 1e-2) (position ln 1.1 / ln 100 = 0.0207).
    #[test]
    fn positions_in_the_range_and_edges() {
        let close =
            |a: Option<f64>, b: f64| assert!((a.unwrap() - b).abs() < 1e-12, "{a:?} vs {b}");
        close(Scaling::Log(1e-4, 1e-2).position(&Value::from(1e-3)), 0.5);
        close(Scaling::Linear(0.0, 1.0).position(&Value::from(0.9)), 0.9);
        close(
            Scaling::OneMinus(Box::new(Scaling::Log(1e-3, 1.0))).position(&Value::from(0.99)),
            1.0 / 3.0,
        );
        assert_eq!(
            Scaling::Discrete(vec![Value::from(1)]).position(&Value::from(1)),
            None
        );
        let mut space = SearchSpace::new();
        space.insert("a".into(), Scaling::Linear(0.0, 1.0));
        space.insert("b".into(), Scaling::Log(1e-4, 1e-2));
        space.insert("c".into(), Scaling::Linear(0.0, 1.0));
        let point: BTreeMap<String, Value> = [
            ("a".to_string(), Value::from(0.99)),
            ("b".to_string(), Value::from(1.1e-4)),
            ("c".to_string(), Value::from(0.5)),
        ]
        .into_iter()
        .collect();
        let edges = near_edges(&space, &point, 0.05);
        assert_eq!(
            edges.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!((edges[1].1 - 1.1f64.ln() / 100f64.ln()).abs() < 1e-12);
    }
}
