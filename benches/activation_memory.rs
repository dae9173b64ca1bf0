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

use bigbatch_benches::{SyntheticBert, SyntheticImages};
use bigbatch_models::{BertConfig, ResNetConfig};
use burn::tensor::Device;

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
            let data = SyntheticImages::new(b, 3, 224, 1000, &device);
            std::hint::black_box(data.loss(&model).backward());
        }
        "bert-large" => {
            let s: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(128);
            let config = BertConfig::bert_large();
            let model = config.init(&device).unwrap();
            let data = SyntheticBert::new(b, s, 20, config.vocab_size, &device);
            std::hint::black_box(data.loss(&model).backward());
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
