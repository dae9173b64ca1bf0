//! Peak memory of one forward + backward pass of the paper's models at a small batch, on the CPU
//! (flex): the per-example slope between two batch sizes is the activation memory that sizes
//! `train.micro_batch_size` on a GPU (see the comments of `configs/models/resnet50-imagenet.ron`
//! and `bert-large-phase*.ron`).
//!
//!     cargo run --release -p bigbatch-benches --bin activation-memory -- resnet50 2
//!     cargo run --release -p bigbatch-benches --bin activation-memory -- bert-large 2 128
//!
//! Prints the process's peak resident set (VmHWM) after the pass, in MiB. Run it once per batch
//! size (a fresh process each time, so the peak belongs to that batch alone).

use bigbatch_models::{BertBatch, BertConfig, ResNetConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: activation-memory resnet50|bert-large BATCH [SEQ]";
    let (Some(model), Some(batch)) = (args.first(), args.get(1)) else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let b: usize = batch.parse().unwrap_or_else(|_| {
        eprintln!("{usage}");
        std::process::exit(2)
    });
    let device = Device::flex().autodiff();
    let before = peak_rss_mib();
    match model.as_str() {
        "resnet50" => {
            let model = ResNetConfig::resnet50().init(&device).unwrap();
            let images =
                Tensor::<4>::random([b, 3, 224, 224], Distribution::Normal(0.0, 1.0), &device);
            let labels: Vec<i64> = (0..b as i64).map(|i| i % 1000).collect();
            let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), &device)
                .one_hot(1000)
                .float();
            let loss = (log_softmax(model.forward(images), 1) * targets)
                .sum_dim(1)
                .mean()
                .neg();
            std::hint::black_box(loss.backward());
        }
        "bert-large" => {
            let s: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
            let config = BertConfig::bert_large();
            let model = config.init(&device).unwrap();
            let (p, v) = (20usize, config.vocab_size as i64);
            let int2 = |data: Vec<i64>, cols: usize| {
                Tensor::<2, Int>::from_data(TensorData::new(data, [b, cols]), &device)
            };
            let batch = BertBatch {
                input_ids: int2((0..(b * s) as i64).map(|i| (i * 7919) % v).collect(), s),
                token_types: int2((0..b * s).map(|i| i64::from(i % s >= s / 2)).collect(), s),
                padding: Tensor::<2, Bool>::from_data(
                    TensorData::new(vec![false; b * s], [b, s]),
                    &device,
                ),
            };
            let positions = int2(
                (0..(b * p) as i64)
                    .map(|i| 1 + (i * 5) % (s as i64 - 2))
                    .collect(),
                p,
            );
            let labels = int2((0..(b * p) as i64).map(|i| (i * 31) % v).collect(), p);
            let next = Tensor::<1, Int>::from_data(
                TensorData::new((0..b as i64).map(|i| i % 2).collect::<Vec<_>>(), [b]),
                &device,
            );
            let out = model.pretraining_loss(
                &batch,
                positions,
                labels,
                Tensor::<2>::ones([b, p], &device),
                next,
            );
            std::hint::black_box(out.loss.backward());
        }
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    }
    println!(
        "{model} batch {b}: peak RSS {:.0} MiB (before the model: {before:.0} MiB)",
        peak_rss_mib()
    );
}
