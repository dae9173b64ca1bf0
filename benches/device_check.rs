//! `device-check`: what a GPU machine runs, prepared by `cargo xtask gpu-check` (which carries this
//! binary, the configs and the reference trajectories there; no Rust toolchain or network is
//! needed on that machine). One markdown report:
//!
//! 1. the reference optimizer trajectories (`tests/reference/`) replayed on the device in f32,
//!    against the float64 references at the CPU's f32 tolerance (2e-5 relative);
//! 2. three training steps of resnet-mini (ghost batch norm) and bert-tiny on the device and on
//!    the CPU backend from the same seed: losses within 1e-4 relative;
//! 3. throughput: ResNet-50 v1.5 forward + backward + MLPerf LARS step at batch 256 on synthetic
//!    ImageNet-shaped data (images/s), a BERT-Large phase-1 step (sequence 128, 20 predictions,
//!    BERT-Adam), and one optimizer step of every benchmarked optimizer on the ResNet-50 and
//!    BERT-Large parameter sets beside the device's measured copy bandwidth.
//!
//! `--tiny` shrinks part 3 to the CPU presets (resnet-mini at batch 8, bert-tiny at batch 4, the
//! resnet-mini parameter set) so that a dry run finishes in seconds on the CPU or on Mesa's software
//! Vulkan. Exit status 1 when a check of parts 1-2 fails (the report says which).
//!
//!     device-check --backend cuda|wgpu|cpu [--tiny] [--root DIR] [--out FILE.md]

use anyhow::{Context, Result, bail};
use bigbatch_benches::{
    OPTIMIZERS, SyntheticBert, SyntheticImages, bert_large_params, resnet50_params,
};
use bigbatch_core::config::{parse_ron, write_atomic};
use bigbatch_core::params::{self, ParamInfo, ParamSlot};
use bigbatch_core::replay::{Precision, Trace, check_against_reference, parse_json, replay};
use bigbatch_core::{ModelOptimizer, OptimizerSetup};
use bigbatch_engine::backend::{self, Backend};
use bigbatch_engine::run_config::{RunConfig, compose_optimizer};
use bigbatch_engine::step::{BatchSplit, step};
use bigbatch_engine::train::{self, RunOptions};
use bigbatch_models::{BertConfig, ResNetConfig};
use burn::module::Module;
use burn::tensor::{Device, Distribution, Tensor};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

struct Args {
    backend: Backend,
    tiny: bool,
    root: PathBuf,
    out: PathBuf,
}

fn args() -> Result<Args> {
    let mut a = Args {
        backend: Backend::Cpu,
        tiny: false,
        root: PathBuf::from("."),
        out: PathBuf::from("device-check.md"),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => {
                a.backend = match value()?.as_str() {
                    "cpu" => Backend::Cpu,
                    "wgpu" => Backend::Wgpu,
                    "cuda" => Backend::Cuda,
                    other => bail!("--backend {other}: expected cpu, wgpu or cuda"),
                }
            }
            "--tiny" => a.tiny = true,
            "--root" => a.root = PathBuf::from(value()?),
            "--out" => a.out = PathBuf::from(value()?),
            other => bail!(
                "unknown argument {other}; usage: device-check --backend cuda|wgpu|cpu [--tiny] [--root DIR] [--out FILE.md]"
            ),
        }
    }
    Ok(a)
}

fn main() {
    bigbatch_cli::link_plugins();
    match args().and_then(|a| run(&a)) {
        Ok(true) => {}
        Ok(false) => std::process::exit(1),
        Err(e) => {
            eprintln!("device-check: {e:#}");
            std::process::exit(2);
        }
    }
}

/// Runs every part; returns whether parts 1-2 passed.
fn run(a: &Args) -> Result<bool> {
    let device = backend::devices(a.backend, None)?.remove(0).inner();
    let mut md = format!(
        "# device-check: {:?} backend ({device:?}){}\n\n",
        a.backend,
        if a.tiny { ", tiny sizes" } else { "" }
    );
    let mut ok = true;
    let started = Instant::now();
    let mut section = |md: &mut String, name: &str, r: Result<(String, bool)>| {
        match r {
            Ok((text, passed)) => {
                ok &= passed;
                md.push_str(&text);
            }
            Err(e) => {
                ok = false;
                let _ = writeln!(md, "**{name} failed**: {e:#}\n");
            }
        }
        eprintln!(
            "device-check: {name} done ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    };
    section(&mut md, "reference trajectories", references(a, &device));
    section(&mut md, "training against the CPU", training(a));
    section(
        &mut md,
        "throughput",
        throughput(a, &device).map(|t| (t, true)),
    );
    write_atomic(&a.out, md.as_bytes())?;
    println!("{md}");
    Ok(ok)
}

/// Part 1: every reference case replayed in f32 on the device.
fn references(a: &Args, device: &Device) -> Result<(String, bool)> {
    let dir = a.root.join("tests/reference");
    let trace_path = dir.join("trace.json");
    let text = std::fs::read_to_string(&trace_path)
        .with_context(|| format!("cannot read {}", trace_path.display()))?;
    let trace: Trace = parse_json(&text, &trace_path.display().to_string())?;
    trace.validate(&trace_path.display().to_string())?;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(dir.join("cases"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .collect();
    cases.sort();
    let mut md = String::from(
        "## Reference optimizer trajectories (f32 on the device vs float64 references, tolerance 2e-5)\n\n\
         | case | largest relative deviation | result |\n|---|---:|---|\n",
    );
    let mut passed = !cases.is_empty();
    for path in &cases {
        let name = path.file_stem().unwrap_or_default().to_string_lossy();
        let want_path = path.with_file_name(format!("{name}.expected.json"));
        let outcome = (|| -> Result<f64> {
            let setup = compose_optimizer(std::slice::from_ref(path), &[])?;
            let want: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(&want_path)
                    .with_context(|| format!("cannot read {}", want_path.display()))?,
            )?;
            let got = replay(&setup, &trace, Precision::F32, device)?;
            check_against_reference(&name, &got, &want, 2e-5)
        })();
        match outcome {
            Ok(dev) => writeln!(md, "| {name} | {dev:.2e} | pass |")?,
            Err(e) => {
                passed = false;
                writeln!(md, "| {name} | - | **fail**: {e:#} |")?;
            }
        }
    }
    md.push('\n');
    Ok((md, passed))
}

/// Part 2: three steps on the device and on the CPU from the same seed.
fn training(a: &Args) -> Result<(String, bool)> {
    let scratch = std::env::temp_dir().join(format!("device-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    let configs = a.root.join("configs");
    // 256 training and 64 test images, so that evaluation takes seconds on a software renderer.
    let idx = scratch.join("idx");
    bigbatch_data::idx::write_embedded_subset(&idx, 256, 64)?;
    let cases: [(&str, [&str; 2], Vec<String>); 2] = [
        (
            "resnet-mini, ghost BN 16, LAMB, batch 32",
            ["models/resnet.ron", "optimizers/lamb.ron"],
            vec![
                "train.batch_size=32".into(),
                "model.bn.virtual_batch_size=16".into(),
                format!("data.source={{\"Idx\":\"{}\"}}", idx.display()),
                "train.train_eval_examples=32".into(),
            ],
        ),
        (
            "bert-tiny, BERT-Adam, batch 16",
            ["models/bert-tiny.ron", "optimizers/bert_adam.ron"],
            vec![
                "train.batch_size=16".into(),
                "data.source.eval_documents=2".into(),
                "train.train_eval_examples=16".into(),
            ],
        ),
    ];
    let mut md = String::from(
        "## Training steps against the CPU backend (same seed; losses within 1e-4 relative)\n\n\
         | run | CPU losses | device losses | largest relative difference | result |\n|---|---|---|---:|---|\n",
    );
    let mut passed = true;
    for (i, (label, files, sets)) in cases.into_iter().enumerate() {
        let mut sets = sets;
        sets.extend(
            [
                "train.steps=3",
                "train.eval_every=3",
                "schedule.total_steps=3",
                "schedule.warmup_steps=1",
            ]
            .map(String::from),
        );
        let files: Vec<PathBuf> = files.iter().map(|f| configs.join(f)).collect();
        let config = RunConfig::compose(&files, &sets)?;
        let mut losses = Vec::new();
        for (b, backend) in [Backend::Cpu, a.backend].into_iter().enumerate() {
            let options = RunOptions {
                out_dir: scratch.join(format!("run-{i}-{b}")),
                progress: false,
                resume: false,
                restart_without_checkpoint: false,
            };
            train::run(&config, backend, &options)?;
            losses.push(step_losses(&options.out_dir)?);
        }
        let worst = losses[0]
            .iter()
            .zip(&losses[1])
            .map(|(c, d)| (c - d).abs() / c.abs().max(1e-12))
            .fold(0.0f64, f64::max);
        let ok = losses[0].len() == 3 && losses[1].len() == 3 && worst <= 1e-4;
        passed &= ok;
        let show = |v: &[f64]| {
            v.iter()
                .map(|x| format!("{x:.5}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(
            md,
            "| {label} | {} | {} | {worst:.2e} | {} |",
            show(&losses[0]),
            show(&losses[1]),
            if ok { "pass" } else { "**fail**" }
        )?;
    }
    let _ = std::fs::remove_dir_all(&scratch);
    md.push('\n');
    Ok((md, passed))
}

fn step_losses(run_dir: &Path) -> Result<Vec<f64>> {
    let path = run_dir.join("metrics.jsonl");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["loss"].as_f64())
        .collect())
}

/// Blocks until the device has finished everything queued before `t` (reads one value back).
fn sync(t: &Tensor<1>) -> f32 {
    t.clone().narrow(0, 0, 1).into_scalar::<f32>()
}

/// Seconds per call of `f` after `warmup` calls, over `n` calls.
fn time(warmup: usize, n: usize, mut f: impl FnMut() -> Result<f32>) -> Result<f64> {
    for _ in 0..warmup {
        f()?;
    }
    let start = Instant::now();
    for _ in 0..n {
        f()?;
    }
    Ok(start.elapsed().as_secs_f64() / n as f64)
}

/// Seconds per training step (forward, backward and optimizer update of the whole batch in one
/// piece on `device`) of `model` under `optimizer`, after `warmup` steps, over `n` steps.
fn time_training_steps<M: Module + Clone>(
    model: M,
    optimizer: &OptimizerSetup,
    batch: usize,
    device: &Device,
    lr: f64,
    (warmup, n): (usize, usize),
    loss: impl Fn(&M) -> Tensor<1>,
) -> Result<f64> {
    let mut optimizer = ModelOptimizer::new(optimizer, params::describe(&model))?;
    let split = BatchSplit::new(batch, batch, vec![device.clone()])?;
    let mut model = Some(model);
    time(warmup, n, || {
        let (m, out) = step(
            model
                .take()
                .expect("the model is put back after every step"),
            &mut optimizer,
            &split,
            lr,
            false,
            |m, _, _| Ok(loss(m)),
        )?;
        model = Some(m);
        Ok(out.loss as f32)
    })
}

fn setup(ron: &str, origin: &str) -> Result<OptimizerSetup> {
    parse_ron(ron, origin)
}

/// Part 3: model steps and optimizer steps.
fn throughput(a: &Args, device: &Device) -> Result<String> {
    let train_device = device.clone().autodiff();
    let (n, warmup) = if a.tiny { (2, 1) } else { (10, 3) };
    let mut md =
        String::from("## Throughput\n\n| measurement | time per step | rate |\n|---|---:|---:|\n");

    // ResNet-50 (or resnet-mini) forward + backward + MLPerf LARS step.
    let lars = setup(
        r#"(default: (optimizer: (name: "lars", config: (variant: "mlperf", momentum: 0.929, trust_coefficient: 0.001)), weight_decay: 1e-4),
            groups: {"bias_and_bn": (select: (kinds: [Bias, Norm]), optimizer: (name: "heavy_ball", config: (momentum: 0.929, lr_inside_buffer: true)), weight_decay: 0.0)})"#,
        "lars_mlperf",
    )?;
    let (label, config, b, size, channels, classes) = if a.tiny {
        (
            "resnet-mini, batch 8, 28x28x1",
            ResNetConfig::resnet_mini(),
            8,
            28,
            1,
            10,
        )
    } else {
        (
            "ResNet-50 v1.5, batch 256, 224x224x3",
            ResNetConfig::resnet50(),
            256,
            224,
            3,
            1000,
        )
    };
    let model = config.init(&backend::init_device())?.fork(&train_device);
    let data = SyntheticImages::new(b, channels, size, classes, &train_device);
    let secs = time_training_steps(model, &lars, b, &train_device, 1.0, (warmup, n), |m| {
        data.loss(m)
    })?;
    writeln!(
        md,
        "| {label}: forward + backward + LARS step | {:.1} ms | {:.0} images/s |",
        1e3 * secs,
        b as f64 / secs
    )?;

    // BERT-Large (or bert-tiny) phase-1 step.
    let adam = setup(
        r#"(default: (optimizer: (name: "bert_adam", config: (eps: 1e-11, max_grad_norm: Some(1.0))), weight_decay: 0.01, decay_mode: Decoupled),
            groups: {"no_decay": (select: (kinds: [Bias, Norm]), weight_decay: 0.0)})"#,
        "bert_adam",
    )?;
    let (label, config, b) = if a.tiny {
        (
            "bert-tiny, batch 4",
            BertConfig {
                vocab_size: 8192,
                ..BertConfig::bert_tiny()
            },
            4,
        )
    } else {
        ("BERT-Large phase 1, batch 64", BertConfig::bert_large(), 64)
    };
    let vocab = config.vocab_size;
    let model = config.init(&backend::init_device())?.fork(&train_device);
    let data = SyntheticBert::new(b, 128, 20, vocab, &train_device);
    let secs = time_training_steps(
        model,
        &adam,
        b,
        &train_device,
        1e-4,
        (warmup.min(2), n.min(5)),
        |m| data.loss(m),
    )?;
    writeln!(
        md,
        "| {label}, sequence 128: forward + backward + BERT-Adam step | {:.1} ms | {:.0} sequences/s |",
        1e3 * secs,
        b as f64 / secs
    )?;

    // Optimizer steps beside the device's copy bandwidth.
    let sets: Vec<(&str, Vec<ParamInfo>)> = if a.tiny {
        let mini = ResNetConfig::resnet_mini().init(&backend::init_device())?;
        vec![("resnet-mini", params::describe(&mini))]
    } else {
        vec![
            ("ResNet-50", resnet50_params()),
            ("BERT-Large", bert_large_params()),
        ]
    };
    md += "\n| parameter set | optimizer | ms per step | GB/s moved (words x 4 B x parameters / time) | ratio to the copy floor |\n|---|---|---:|---:|---:|\n";
    for (set, infos) in sets {
        let numel: usize = infos.iter().map(ParamInfo::numel).sum();
        let x = Tensor::<1>::random([numel], Distribution::Normal(0.0, 1.0), device);
        let copy = time(warmup, n, || Ok(sync(&x.clone().add_scalar(1.0))))?;
        let copy_gbs = 8.0 * numel as f64 / copy / 1e9;
        writeln!(
            md,
            "| {set} ({numel} values) | copy (read + write) | {:.2} | {copy_gbs:.0} | 1.00 |",
            1e3 * copy
        )?;
        drop(x);
        let random = |i: &ParamInfo, s: f64| {
            Tensor::<1>::random([i.numel()], Distribution::Normal(0.0, s), device)
        };
        let values: Vec<Tensor<1>> = infos.iter().map(|i| random(i, 0.05)).collect();
        let grads: Vec<Tensor<1>> = infos.iter().map(|i| random(i, 0.001)).collect();
        for o in OPTIMIZERS {
            let mut optimizer = ModelOptimizer::new(&setup(o.ron, o.name)?, infos.clone())?;
            let mut current = values.clone();
            let secs = time(warmup, n, || {
                let slots = current
                    .iter()
                    .zip(&grads)
                    .map(|(v, g)| ParamSlot {
                        value: v.clone(),
                        grad: g.clone(),
                    })
                    .collect();
                current = optimizer.step(1e-3, slots);
                Ok(sync(current.last().expect("a parameter")))
            })?;
            let floor = copy * f64::from(o.words) / 2.0;
            writeln!(
                md,
                "| {set} | {} | {:.2} | {:.0} | {:.2} |",
                o.name,
                1e3 * secs,
                4.0 * f64::from(o.words) * numel as f64 / secs / 1e9,
                secs / floor
            )?;
        }
    }
    md.push('\n');
    Ok(md)
}

/// The GPU check's dry run on the CPU backend at tiny sizes, as part of `cargo test` (so CI
/// executes every part of the script without building it separately): parts 1-2 pass and part
/// 3 measures every row.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dry_run_on_the_cpu() {
        bigbatch_cli::link_plugins();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let out = std::env::temp_dir().join(format!("device-check-dry-{}.md", std::process::id()));
        let a = Args {
            backend: Backend::Cpu,
            tiny: true,
            root: root.to_path_buf(),
            out: out.clone(),
        };
        assert!(run(&a).unwrap(), "a check failed: {}", out.display());
        let md = std::fs::read_to_string(&out).unwrap();
        for heading in [
            "## Reference optimizer trajectories",
            "## Training steps against the CPU backend",
            "## Throughput",
        ] {
            assert!(md.contains(heading), "{heading} missing:\n{md}");
        }
        assert!(!md.contains("failed"), "{md}");
        std::fs::remove_file(&out).unwrap();
    }
}
