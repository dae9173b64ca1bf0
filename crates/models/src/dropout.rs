//! Dropout whose masks do not depend on how a batch is cut: every kept-or-dropped decision is a
//! counter-based hash of (run seed, step, dropout site, the example's index in the step's whole
//! batch, the element's index within the example), so one piece, 4 micro-batches and two devices
//! draw the same masks, on every backend, and a resumed run draws what an uninterrupted one does.
//! burn's `Dropout` draws from the device's generator instead, whose stream depends on the part
//! sizes (and, on fusion backends, on when a queued random op reads the global seed).
//!
//! The masks are computed on the host (one SplitMix64 finaliser per element over a per-example
//! key) and uploaded with the activations' shape: exact everywhere, at the cost of one host pass
//! and one upload per dropout site and part.

use burn::tensor::{Tensor, TensorData};

/// Where a part of a step's batch sits: the run's seed, the step, and the index of the part's
/// first example in the step's whole batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropoutKey {
    pub seed: u64,
    pub step: u64,
    pub first_example: u64,
}

/// SplitMix64's finaliser (Steele, Lea and Flood 2014; Vigna's `splitmix64.c`).
pub fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;

/// Whether element `element` of the example whose key is `example_key` is kept at `rate`: the
/// top 24 bits of its hash, as a fraction, are at least `rate`.
fn keeps(example_key: u64, element: u64, rate: f64) -> bool {
    uniform(mix(example_key ^ element.wrapping_mul(GOLDEN))) >= rate
}

/// The key of example `example` (its index in the whole batch) at `site` of a step.
fn example_key(key: &DropoutKey, site: u64, example: u64) -> u64 {
    mix(
        mix(mix(mix(key.seed ^ GOLDEN) ^ key.step.wrapping_mul(GOLDEN)) ^ site.wrapping_mul(GOLDEN))
            ^ example.wrapping_mul(GOLDEN),
    )
}

/// The top 24 bits of `h` as a fraction in [0, 1) (exact in f32 and f64).
fn uniform(h: u64) -> f64 {
    (h >> 40) as f64 / (1u64 << 24) as f64
}

/// Inverted dropout at `rate` on `x` (`[examples, ...]`, the part's examples in batch order):
/// `x * m / (1 - rate)` with `m` from [`keeps`]. Identity without a key (evaluation), at rate 0,
/// and off the autodiff device (inference), as burn's `Dropout`.
pub fn dropout<const D: usize>(
    x: Tensor<D>,
    rate: f64,
    key: Option<&DropoutKey>,
    site: u64,
) -> Tensor<D> {
    let Some(key) = key else {
        return x;
    };
    if rate == 0.0 || !x.device().is_autodiff() {
        return x;
    }
    let dims = x.dims();
    let examples = dims[0];
    let per_example: usize = dims[1..].iter().product();
    let scale = (1.0 / (1.0 - rate)) as f32;
    let mut mask = Vec::with_capacity(examples * per_example);
    for i in 0..examples {
        let base = example_key(key, site, key.first_example + i as u64);
        mask.extend((0..per_example as u64).map(
            |j| {
                if keeps(base, j, rate) { scale } else { 0.0 }
            },
        ));
    }
    let mask = Tensor::<D>::from_data(TensorData::new(mask, dims.to_vec()), &x.device());
    x * mask
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SplitMix64's published first outputs for seed 1234567 (Vigna's `splitmix64.c`: state
    /// advanced by the golden gamma, then the finaliser): 6457827717110365317, 3203168211198807973.
    #[test]
    fn splitmix_reference_outputs() {
        let state = 1234567u64;
        assert_eq!(mix(state.wrapping_add(GOLDEN)), 6457827717110365317);
        assert_eq!(
            mix(state.wrapping_add(GOLDEN.wrapping_mul(2))),
            3203168211198807973
        );
    }

    /// About `rate` of a large mask is dropped, and a part's mask is the whole batch's rows.
    #[test]
    fn rate_and_split_independence() {
        let device = burn::tensor::Device::flex().autodiff();
        let key = DropoutKey {
            seed: 7,
            step: 3,
            first_example: 0,
        };
        let x = Tensor::<2>::ones([64, 100], &device);
        let whole: Vec<f32> = dropout(x.clone(), 0.1, Some(&key), 5)
            .into_data()
            .try_to_vec()
            .unwrap();
        let dropped = whole.iter().filter(|v| **v == 0.0).count() as f64 / whole.len() as f64;
        assert!((dropped - 0.1).abs() < 0.015, "{dropped}");
        assert!(
            whole
                .iter()
                .all(|v| *v == 0.0 || (*v - 1.0 / 0.9).abs() < 1e-6)
        );
        let part_key = DropoutKey {
            first_example: 40,
            ..key
        };
        let part: Vec<f32> = dropout(x.slice([40..64, 0..100]), 0.1, Some(&part_key), 5)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_eq!(part, whole[40 * 100..]);
        // Another site, step or seed draws another mask; no key or inference: identity.
        let other: Vec<f32> = dropout(Tensor::<2>::ones([64, 100], &device), 0.1, Some(&key), 6)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert_ne!(other, whole);
        let plain = Tensor::<2>::ones([4, 4], &burn::tensor::Device::flex());
        let same: Vec<f32> = dropout(plain, 0.5, Some(&key), 0)
            .into_data()
            .try_to_vec()
            .unwrap();
        assert!(same.iter().all(|v| *v == 1.0));
    }
}
