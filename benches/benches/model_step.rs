//! Forward + backward time per example of the CPU presets (no optimizer step), on the flex CPU
//! backend: `resnet-mini` (configs/models/resnet.ron: 28x28x1, 10 classes, batch 256) and
//! `bert-tiny` / `bert-mini` pretraining (sequence 128, 20 predictions, vocabulary 8,192, batch
//! 32). `benches/torch_models.py` times the same models in PyTorch eager on the same machine.
//!
//!     cargo bench -p bigbatch-benches --bench model_step
//!     python3 benches/torch_models.py

use bigbatch_models::{BertBatch, BertConfig, ResNetConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

fn resnet_mini(c: &mut Criterion) {
    let device = Device::flex().autodiff();
    // configs/models/resnet.ron: the mini preset with a stride-2 stem.
    let config = ResNetConfig {
        stem: bigbatch_models::resnet::Stem::Small { stride: 2 },
        ..ResNetConfig::resnet_mini()
    };
    let model = config.init(&device).unwrap();
    let b = 256;
    let images = Tensor::<4>::random([b, 1, 28, 28], Distribution::Normal(0.0, 1.0), &device);
    let labels: Vec<i64> = (0..b as i64).map(|i| i % 10).collect();
    let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), &device)
        .one_hot(10)
        .float();
    let mut group = c.benchmark_group("forward_backward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(b as u64));
    group.bench_function("resnet_mini_batch256", |bench| {
        bench.iter(|| {
            let loss = (log_softmax(model.forward(images.clone()), 1) * targets.clone())
                .sum_dim(1)
                .mean()
                .neg();
            std::hint::black_box(loss.backward());
        })
    });
    group.finish();
}

fn bert(c: &mut Criterion, name: &str, config: BertConfig) {
    let device = Device::flex().autodiff();
    let model = config.init(&device).unwrap();
    let (b, s, p, v) = (32usize, 128usize, 20usize, config.vocab_size);
    let ids: Vec<i64> = (0..(b * s) as i64).map(|i| (i * 7919) % v as i64).collect();
    let types: Vec<i64> = (0..b * s).map(|i| i64::from(i % s >= s / 2)).collect();
    let positions: Vec<i64> = (0..(b * p) as i64)
        .map(|i| 1 + (i * 5) % (s as i64 - 2))
        .collect();
    let labels: Vec<i64> = (0..(b * p) as i64).map(|i| (i * 31) % v as i64).collect();
    let int2 = |data: Vec<i64>, cols: usize| {
        Tensor::<2, Int>::from_data(TensorData::new(data, [b, cols]), &device)
    };
    let batch = BertBatch {
        input_ids: int2(ids, s),
        token_types: int2(types, s),
        padding: Tensor::<2, Bool>::from_data(TensorData::new(vec![false; b * s], [b, s]), &device),
    };
    let positions = int2(positions, p);
    let labels = int2(labels, p);
    let weights = Tensor::<2>::ones([b, p], &device);
    let next = Tensor::<1, Int>::from_data(
        TensorData::new((0..b as i64).map(|i| i % 2).collect::<Vec<_>>(), [b]),
        &device,
    );
    let mut group = c.benchmark_group("forward_backward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(b as u64));
    group.bench_function(format!("{name}_seq128_batch32"), |bench| {
        bench.iter(|| {
            let out = model.pretraining_loss(
                &batch,
                positions.clone(),
                labels.clone(),
                weights.clone(),
                next.clone(),
            );
            std::hint::black_box(out.loss.backward());
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    resnet_mini(c);
    let small_vocab = |c: BertConfig| BertConfig {
        vocab_size: 8192,
        ..c
    };
    bert(c, "bert_tiny", small_vocab(BertConfig::bert_tiny()));
    bert(c, "bert_mini", small_vocab(BertConfig::bert_mini()));
}

criterion_group!(model_benches, benches);
criterion_main!(model_benches);
