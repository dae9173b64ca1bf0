//! Forward + backward time per example of the CPU presets (no optimizer step), on the flex CPU
//! backend: `resnet-mini` (configs/models/resnet.ron: 28x28x1, 10 classes, batch 256) and
//! `bert-tiny` / `bert-mini` pretraining (sequence 128, 20 predictions, vocabulary 8,192, batch
//! 32). `benches/torch_models.py` times the same models in PyTorch eager on the same machine.
//!
//!     cargo bench -p bigbatch-benches --bench model_step
//!     python3 benches/torch_models.py

use bigbatch_benches::{SyntheticBert, SyntheticImages};
use bigbatch_models::{BertConfig, Gelu, ResNetConfig};
use burn::tensor::Device;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::time::Duration;

fn resnet_mini(c: &mut Criterion, name: &str, virtual_batch_size: Option<usize>) {
    let device = Device::flex().autodiff();
    // configs/models/resnet.ron: the mini preset with a stride-2 stem.
    let mut config = ResNetConfig {
        stem: bigbatch_models::resnet::Stem::Small { stride: 2 },
        ..ResNetConfig::resnet_mini()
    };
    config.bn.virtual_batch_size = virtual_batch_size;
    let b = 256;
    let model = config.init_for_batch(&device, b).unwrap();
    let data = SyntheticImages::new(b, 1, 28, 10, &device);
    let mut group = c.benchmark_group("forward_backward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(b as u64));
    group.bench_function(name, |bench| {
        bench.iter(|| {
            std::hint::black_box(data.loss(&model).backward());
        })
    });
    group.finish();
}

fn bert(c: &mut Criterion, name: &str, config: BertConfig) {
    let device = Device::flex().autodiff();
    let model = config.init(&device).unwrap();
    let b = 32;
    let data = SyntheticBert::new(b, 128, 20, config.vocab_size, &device);
    let mut group = c.benchmark_group("forward_backward");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(15));
    group.throughput(Throughput::Elements(b as u64));
    group.bench_function(format!("{name}_seq128_batch32"), |bench| {
        bench.iter(|| {
            std::hint::black_box(data.loss(&model).backward());
        })
    });
    group.finish();
}

fn benches(c: &mut Criterion) {
    // As the `bigbatch` binary does.
    bigbatch_engine::keep_freed_memory();
    resnet_mini(c, "resnet_mini_batch256", None);
    // The paper's ghost batch norm (virtual batches of 64).
    resnet_mini(c, "resnet_mini_ghost64_batch256", Some(64));
    let small_vocab = |c: BertConfig| BertConfig {
        vocab_size: 8192,
        ..c
    };
    bert(c, "bert_tiny", small_vocab(BertConfig::bert_tiny()));
    let erf = |c: BertConfig| BertConfig {
        gelu: Gelu::Erf,
        ..small_vocab(c)
    };
    bert(c, "bert_tiny_erf", erf(BertConfig::bert_tiny()));
    bert(c, "bert_mini", small_vocab(BertConfig::bert_mini()));
    bert(c, "bert_mini_erf", erf(BertConfig::bert_mini()));
}

criterion_group!(model_benches, benches);
criterion_main!(model_benches);
