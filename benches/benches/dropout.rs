//! BERT's dropout masks, side by side on the flex CPU backend: burn's `Dropout` (a Bernoulli draw
//! from the device generator, the anchor) against `bigbatch_models::dropout::dropout` (a
//! SplitMix64 hash per element on the host, uploaded; the same masks under any batch split), on
//! bert-nano's shapes at batch 256: hidden states `[256, 32, 64]` and attention weights
//! `[256, 2, 32, 32]`, forward only (the backward of both is one multiplication by the mask).
//!
//!     cargo bench -p bigbatch-benches --bench dropout

use bigbatch_models::dropout::{DropoutKey, dropout};
use burn::nn::DropoutConfig;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, criterion_group, criterion_main};
use std::time::Duration;

fn benches(c: &mut Criterion) {
    bigbatch_engine::keep_freed_memory();
    let device = Device::flex().autodiff();
    device.seed(0);
    let burn_dropout = DropoutConfig::new(0.1).init();
    let key = DropoutKey {
        seed: 0,
        step: 0,
        first_example: 0,
    };
    let mut group = c.benchmark_group("dropout");
    group
        .sample_size(30)
        .measurement_time(Duration::from_secs(5));
    let hidden = Tensor::<3>::random([256, 32, 64], Distribution::Default, &device);
    let weights = Tensor::<4>::random([256, 2, 32, 32], Distribution::Default, &device);
    group.bench_function("hidden [256,32,64]: burn Dropout (anchor)", |b| {
        b.iter(|| burn_dropout.forward(hidden.clone()).into_data())
    });
    group.bench_function("hidden [256,32,64]: keyed hash", |b| {
        b.iter(|| dropout(hidden.clone(), 0.1, Some(&key), 1).into_data())
    });
    group.bench_function("attention [256,2,32,32]: burn Dropout (anchor)", |b| {
        b.iter(|| burn_dropout.forward(weights.clone()).into_data())
    });
    group.bench_function("attention [256,2,32,32]: keyed hash", |b| {
        b.iter(|| dropout(weights.clone(), 0.1, Some(&key), 1).into_data())
    });
    group.finish();
}

criterion_group!(dropout_benches, benches);
criterion_main!(dropout_benches);
