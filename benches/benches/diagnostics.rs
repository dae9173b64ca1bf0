//! The cost of per-layer diagnostics in training: ten resnet-mini training steps (batch 256,
//! LAMB as configs/optimizers/lamb.ron, the engine's `step::step` on the flex CPU backend) with
//! the tenth diagnosed (`train.diagnostics_every: Some(10)`) beside the same ten steps with none
//! (`Some(0)`), in one run. The ratio is the slow-down of training with diagnostics every 10
//! steps (evaluation and data loading, which diagnostics do not touch, would only lower it).
//! Then the diagnosed optimizer step alone (`ModelOptimizer::step_with_diagnostics`, one
//! read-back) beside the plain `step` on the same parameters and gradients: its extra time over
//! ten training steps is the overhead with less noise than the difference of two 3 s samples.
//!
//!     cargo bench -p bigbatch-benches --bench diagnostics

use bigbatch_benches::SyntheticImages;
use bigbatch_core::ModelOptimizer;
use bigbatch_core::params::{ParamSlot, describe};
use bigbatch_engine::run_config::compose_optimizer;
use bigbatch_engine::step::{BatchSplit, step};
use bigbatch_models::ResNetConfig;
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::Path;
use std::time::Duration;

fn benches(c: &mut Criterion) {
    bigbatch_engine::keep_freed_memory();
    bigbatch_cli::link_plugins();
    let device = Device::flex().autodiff();
    let config = ResNetConfig {
        stem: bigbatch_models::resnet::Stem::Small { stride: 2 },
        ..ResNetConfig::resnet_mini()
    };
    let b = 256;
    let lamb = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs/optimizers/lamb.ron");
    let setup = compose_optimizer(&[lamb], &[]).unwrap();
    let split = BatchSplit::new(b, b, vec![device.clone()]).unwrap();
    let data = SyntheticImages::new(b, 1, 28, 10, &device);
    let mut group = c.benchmark_group("diagnostics");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(8))
        .measurement_time(Duration::from_secs(60));
    group.throughput(Throughput::Elements(10 * b as u64));
    for (name, every) in [("ten_steps_off", 0u64), ("ten_steps_every_10", 10)] {
        let model = config.init_for_batch(&device, b).unwrap();
        let mut optimizer = ModelOptimizer::new(&setup, describe(&model))
            .unwrap()
            .with_parallel_steps(true);
        let mut model = Some(model);
        group.bench_function(name, |bench| {
            bench.iter(|| {
                for s in 1..=10u64 {
                    let diagnose = every > 0 && s % every == 0;
                    let (m, outcome) = step(
                        model.take().unwrap(),
                        &mut optimizer,
                        &split,
                        1e-3,
                        diagnose,
                        |m, _, _| Ok(data.loss(m)),
                    )
                    .unwrap();
                    assert_eq!(outcome.diagnostics.is_some(), diagnose);
                    model = Some(m);
                }
            })
        });
    }
    group.finish();

    // The optimizer step alone, plain and diagnosed, on resnet-mini's parameters.
    // (As in training: the parameters of the autodiff model, their values without the graph.)
    let model = config.init_for_batch(&device, b).unwrap();
    let infos = describe(&model);
    let values: Vec<Tensor<1>> = bigbatch_core::params::values(&model)
        .into_iter()
        .map(|v| v.inner())
        .collect();
    let grads: Vec<Tensor<1>> = values
        .iter()
        .map(|v| v.random_like(Distribution::Normal(0.0, 1e-2)))
        .collect();
    let slots = || -> Vec<ParamSlot> {
        values
            .iter()
            .zip(&grads)
            .map(|(v, g)| ParamSlot {
                value: v.clone(),
                grad: g.clone(),
            })
            .collect()
    };
    let mut group = c.benchmark_group("diagnostics_optimizer_step");
    group.sample_size(30);
    let mut plain = ModelOptimizer::new(&setup, infos.clone())
        .unwrap()
        .with_parallel_steps(true);
    group.bench_function("step", |bench| {
        bench.iter(|| {
            let new = plain.step(1e-3, slots());
            // Wait for the values, as the next training step would.
            std::hint::black_box(new.last().unwrap().clone().into_data());
        })
    });
    let mut diagnosed = ModelOptimizer::new(&setup, infos)
        .unwrap()
        .with_parallel_steps(true);
    group.bench_function("step_with_diagnostics", |bench| {
        bench.iter(|| {
            let (new, d) = diagnosed.step_with_diagnostics(1e-3, slots());
            std::hint::black_box(new.last().unwrap().clone().into_data());
            std::hint::black_box(d);
        })
    });
    group.finish();
}

criterion_group!(diagnostics_benches, benches);
criterion_main!(diagnostics_benches);
