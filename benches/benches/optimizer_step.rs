//! One optimizer step (`ModelOptimizer::step`) over the full ResNet-50 v1.5 and BERT-Large
//! parameter sets on the CPU backend, beside the machine's measured copy bandwidth.
//!
//! `cargo bench -p bigbatch-benches --bench optimizer_step` (add `-- resnet50` or `-- bert_large` to
//! run one set). After measuring, it prints a markdown table (ms/step, the bandwidth floor, the
//! ratios the targets are stated in) built from criterion's estimates, and writes it to
//! `target/criterion/optimizer_step.md`.

use bigbatch_benches::{OPTIMIZERS, bert_large_params, parallel_copy, resnet50_params};
use bigbatch_core::config::parse_ron;
use bigbatch_core::params::{ParamInfo, ParamSlot};
use bigbatch_core::{ModelOptimizer, OptimizerSetup};
use burn::tensor::{Device, Distribution, Tensor};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Duration;

fn random(info: &ParamInfo, scale: f64, device: &Device) -> Tensor<1> {
    Tensor::random([info.numel()], Distribution::Normal(0.0, scale), device)
}

fn bench_set(c: &mut Criterion, set: &str, infos: Vec<ParamInfo>) {
    let device = Device::flex();
    let numel: usize = infos.iter().map(ParamInfo::numel).sum();
    let mut group = c.benchmark_group(format!("optimizer_step/{set}"));
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(if numel > 100_000_000 {
            40
        } else {
            8
        }));

    // The floor: STREAM-style copy of one f32 array of the same size (2 words per element).
    group.throughput(Throughput::Bytes(8 * numel as u64));
    let src = vec![1.0f32; numel];
    let mut dst = vec![0.0f32; numel];
    group.bench_function("copy", |b| {
        b.iter(|| parallel_copy(black_box(&src), black_box(&mut dst)))
    });
    drop((src, dst));

    let values: Vec<Tensor<1>> = infos.iter().map(|i| random(i, 0.05, &device)).collect();
    let grads: Vec<Tensor<1>> = infos.iter().map(|i| random(i, 0.001, &device)).collect();
    for o in OPTIMIZERS {
        group.throughput(Throughput::Bytes(4 * u64::from(o.words) * numel as u64));
        let setup: OptimizerSetup = parse_ron(o.ron, o.name).expect("benchmark config parses");
        // As `bigbatch train` on the CPU backend.
        let mut optimizer = ModelOptimizer::new(&setup, infos.clone())
            .expect("config builds")
            .with_parallel_steps(true);
        // As in training: the model holds the values (shared), the optimizer owns the summed
        // gradients (one reference each, so they can be overwritten); fresh copies every
        // iteration, made outside the measurement.
        let slots = || -> Vec<ParamSlot> {
            values
                .iter()
                .zip(&grads)
                .map(|(v, g)| ParamSlot {
                    value: v.clone(),
                    grad: g.clone().mul_scalar(1.0),
                })
                .collect()
        };
        // Allocate the state outside the measurement.
        drop(optimizer.step(0.1, slots()));
        group.bench_function(o.name, |b| {
            b.iter_batched(
                slots,
                |s| black_box(optimizer.step(0.1, s)),
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn criterion_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("criterion")
}

/// Mean time in ms of one benchmark from criterion's `estimates.json`, if it ran.
fn mean_ms(set: &str, id: &str) -> Option<f64> {
    let path = criterion_dir()
        .join(format!("optimizer_step_{set}"))
        .join(id)
        .join("new/estimates.json");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    Some(json["mean"]["point_estimate"].as_f64()? / 1e6)
}

fn report(sets: &[(&str, usize)]) -> String {
    let mut md = String::new();
    for &(set, numel) in sets {
        let Some(copy_ms) = mean_ms(set, "copy") else {
            continue;
        };
        let bandwidth = 8.0 * numel as f64 / (copy_ms / 1e3) / 1e9;
        md += &format!(
            "\n### {set} ({numel} parameters)\n\nMeasured copy bandwidth: {bandwidth:.1} GB/s \
             ({copy_ms:.1} ms to copy {:.0} MB).\n\n\
             | optimizer | ms/step | floor (ms) | x floor | base | x base |\n\
             |---|---:|---:|---:|---|---:|\n",
            4.0 * numel as f64 / 1e6
        );
        for o in OPTIMIZERS {
            let Some(ms) = mean_ms(set, o.name) else {
                continue;
            };
            let floor = f64::from(o.words) * 4.0 * numel as f64 / (bandwidth * 1e9) * 1e3;
            let (base, vs_base) = match o.base.and_then(|b| Some((b, mean_ms(set, b)?))) {
                Some((b, base_ms)) => (b.to_string(), format!("{:.2}", ms / base_ms)),
                None => ("-".into(), "-".into()),
            };
            md += &format!(
                "| {} | {ms:.1} | {floor:.1} | {:.2} | {base} | {vs_base} |\n",
                o.name,
                ms / floor
            );
        }
    }
    md
}

fn main() {
    // As the `bigbatch` binary does.
    bigbatch_engine::keep_freed_memory();
    bigbatch_cli::link_plugins();
    let mut c = Criterion::default().configure_from_args();
    let resnet = resnet50_params();
    let bert = bert_large_params();
    let sets = [
        (
            "resnet50",
            resnet.iter().map(ParamInfo::numel).sum::<usize>(),
        ),
        (
            "bert_large",
            bert.iter().map(ParamInfo::numel).sum::<usize>(),
        ),
    ];
    bench_set(&mut c, "resnet50", resnet);
    bench_set(&mut c, "bert_large", bert);
    c.final_summary();
    let md = report(&sets);
    if !md.is_empty() {
        println!("{md}");
        let path = criterion_dir().join("optimizer_step.md");
        if std::fs::write(&path, &md).is_ok() {
            println!("(written to {})", path.display());
        }
    }
}
