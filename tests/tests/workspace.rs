//! End-to-end tests through the normal CLI path (`bigbatch_cli::run_cli`), with a throwaway
//! optimizer crate (`optim-signsgd`) that registers itself without any change to core.

use bigbatch_cli::run_cli;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A test's scratch directory under the system's temporary directory: removed when the test
/// passes, kept (its path on stderr) when it fails.
struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept the failed test's directory {}", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("bigbatch-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// `bigbatch ARGS...` through the CLI library.
fn cli(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["bigbatch"];
    all.extend_from_slice(args);
    run_cli(all)
}

fn model_config() -> String {
    root()
        .join("configs/models/resnet.ron")
        .display()
        .to_string()
}

/// A tiny budget so the test runs in seconds.
const TINY: [&str; 10] = [
    "--set",
    "train.steps=3",
    "--set",
    "train.batch_size=32",
    "--set",
    "train.eval_every=3",
    "--set",
    "train.train_eval_examples=64",
    "--set",
    "model.widths=[2,2,2,2]",
];

fn train(dir: &Path, optimizer_ron: &str, extra: &[&str]) -> anyhow::Result<serde_json::Value> {
    bigbatch_optim_signsgd::link();
    let opt = dir.join("optimizer.ron");
    std::fs::write(&opt, optimizer_ron).unwrap();
    let out = dir.join("run");
    let mut args = vec![
        "bigbatch".to_string(),
        "train".into(),
        "--no-progress".into(),
        "--config".into(),
        model_config(),
        "--config".into(),
        opt.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(TINY.iter().map(|s| s.to_string()));
    args.extend(extra.iter().map(|s| s.to_string()));
    run_cli(args)?;
    let summary = std::fs::read_to_string(out.join("summary.json")).unwrap();
    Ok(serde_json::from_str(&summary).unwrap())
}

/// The main job (`cargo xtask train resnet lamb`: the CPU preset with LAMB, 400 steps at batch
/// 256) ends at the accuracies the README gives (a few minutes on one core).
#[test]
fn main_job_ends_at_the_readme_figures() {
    let dir = scratch("main-job");
    let out = dir.join("run");
    let lamb = root().join("configs/optimizers/lamb.ron");
    cli(&[
        "train",
        "--no-progress",
        "--config",
        &model_config(),
        "--config",
        lamb.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let pct = |key: &str| format!("{:.2}%", 100.0 * summary[key].as_f64().unwrap());
    // The README gives the figures per vector instruction set of the CPU (burn's CPU kernels sum
    // in vectors as wide as the CPU has); this machine's row is checked.
    let simd = summary["cpu_simd"].as_str().unwrap();
    let row = format!(
        "| {simd} | {} | {} |",
        pct("final_val_accuracy"),
        pct("final_train_accuracy")
    );
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    assert!(
        readme.lines().any(|line| line == row),
        "README.md's table of the main job's accuracies should have this machine's row {row}"
    );
}

const SIGN_SGD: &str = r#"(
    optimizer: (default: (optimizer: (name: "sign_sgd"))),
    schedule: Constant(lr: 0.001),
)"#;

#[test]
fn plugin_outside_core_trains_through_the_cli() {
    let dir = scratch("signsgd");
    let summary = train(&dir, SIGN_SGD, &[]).unwrap();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["steps"], 3);
    assert!(summary["final_val_accuracy"].as_f64().unwrap() >= 0.0);
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // groups line, setup line, 3 step lines, 1 eval line.
    assert_eq!(lines.len(), 6, "{metrics}");
    assert_eq!(
        lines[0]["groups"][0]["settings"]["optimizer"]["name"],
        "sign_sgd"
    );
    assert_eq!(lines[1]["setup"]["micro_batch_size"], 32);
    assert!(lines[2]["loss"].as_f64().unwrap().is_finite());
    assert_eq!(lines[5]["step"], 3);
    let config = std::fs::read_to_string(dir.join("run/config.ron")).unwrap();
    assert!(
        config.contains("sign_sgd") && config.contains("widths: (2, 2, 2, 2)"),
        "{config}"
    );
    assert!(bigbatch_core::registry::find("sign_sgd").is_ok());
}

#[test]
fn same_seed_same_run() {
    let a = train(&scratch("seed-a"), SIGN_SGD, &[]).unwrap();
    let b = train(&scratch("seed-b"), SIGN_SGD, &[]).unwrap();
    assert_eq!(a["final_loss"], b["final_loss"]);
    assert_eq!(a["final_val_accuracy"], b["final_val_accuracy"]);
}

/// Ghost batch norm trains with virtual batches that divide the batch (32 = 4 x 8), and a virtual
/// batch size that does not divide it is refused before training, naming both fields.
#[test]
fn ghost_batch_norm_trains_and_checks_divisibility() {
    let summary = train(
        &scratch("ghost"),
        SIGN_SGD,
        &["--set", "model.bn.virtual_batch_size=8"],
    )
    .unwrap();
    assert_eq!(summary["status"], "completed");
    let e = train(
        &scratch("ghost-bad"),
        SIGN_SGD,
        &["--set", "model.bn.virtual_batch_size=5"],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("model.bn.virtual_batch_size: 5 does not divide train.batch_size 32"),
        "{e}"
    );
}

/// A run stopped after its checkpoint at step 2 and resumed to step 4 is bit-identical to a run of
/// 4 steps: same per-step losses, evaluations and final numbers (LAMB keeps moments, so the
/// optimizer state, the model with its batch-norm statistics and the data order all matter).
#[test]
fn resumed_run_is_bit_identical() {
    let lamb = std::fs::read_to_string(root().join("configs/optimizers/lamb.ron")).unwrap();
    let budget = |steps: &'static str| ["--set", steps, "--set", "train.eval_every=2"];
    let straight_dir = scratch("resume-straight");
    let straight = train(&straight_dir, &lamb, &budget("train.steps=4")).unwrap();
    let resumed_dir = scratch("resume-stopped");
    train(&resumed_dir, &lamb, &budget("train.steps=2")).unwrap();
    let pointer = std::fs::read_to_string(resumed_dir.join("run/checkpoint.json")).unwrap();
    assert!(pointer.contains("\"step\": 2"), "{pointer}");
    let mut args = budget("train.steps=4").to_vec();
    args.push("--resume");
    let resumed = train(&resumed_dir, &lamb, &args).unwrap();
    for key in [
        "final_loss",
        "final_val_accuracy",
        "final_train_accuracy",
        "steps",
    ] {
        assert_eq!(straight[key], resumed[key], "{key}");
    }
    let metrics = |d: &Path| large_batch::numbers(&d.join("run/metrics.jsonl"));
    assert_eq!(metrics(&straight_dir), metrics(&resumed_dir));

    // The run's wall time counts every process: the checkpoint records the seconds so far (here
    // set to 1000, as if the first process had taken that long), and the resumed summary adds
    // its own to them.
    let pointer_path = resumed_dir.join("run/checkpoint.json");
    let mut p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pointer_path).unwrap()).unwrap();
    let recorded = p["seconds"].as_f64().unwrap();
    assert!(recorded > 0.0, "{p}");
    assert!(recorded <= resumed["seconds"].as_f64().unwrap(), "{p}");
    assert_eq!(p["step"], 4);
    p["seconds"] = serde_json::json!(1000.0);
    // The checkpoint records the CPU's vector instructions; a resume on another set (here made
    // up by editing the record) continues and says so in its resume line.
    assert_eq!(p["cpu_simd"], resumed["cpu_simd"], "{p}");
    assert!(p["cpu_simd"].is_string(), "{p}");
    p["cpu_simd"] = serde_json::json!("another set");
    std::fs::write(&pointer_path, p.to_string()).unwrap();
    let mut args = budget("train.steps=6").to_vec();
    args.push("--resume");
    let again = train(&resumed_dir, &lamb, &args).unwrap();
    let seconds = again["seconds"].as_f64().unwrap();
    assert!(
        seconds > 1000.0 && seconds < 1000.0 + 600.0,
        "summary seconds {seconds}: expected 1000 plus the resumed process's"
    );
    let metrics = std::fs::read_to_string(resumed_dir.join("run/metrics.jsonl")).unwrap();
    let resumed_line = metrics.lines().rfind(|l| l.contains("resumed_at")).unwrap();
    assert!(
        resumed_line.contains("\"seconds_before\":1000.0"),
        "{resumed_line}"
    );
    assert!(
        resumed_line.contains("\"cpu_simd_before\":\"another set\""),
        "{resumed_line}"
    );
    // The first resume, on the same set: no such field.
    let first = metrics.lines().find(|l| l.contains("resumed_at")).unwrap();
    assert!(!first.contains("cpu_simd_before"), "{first}");
}

#[test]
fn huge_learning_rate_is_recorded_as_diverged() {
    let dir = scratch("diverge");
    let summary = train(&dir, SIGN_SGD, &["--set", "schedule.lr=1e30"]).unwrap();
    assert_eq!(summary["status"], "diverged");
    assert!(
        summary["reason"].as_str().unwrap().contains("loss is"),
        "{summary}"
    );
    let metrics = std::fs::read_to_string(dir.join("run/metrics.jsonl")).unwrap();
    assert!(metrics.contains("\"diverged\""));
}

#[test]
fn unknown_optimizer_lists_registered_ones() {
    let dir = scratch("unknown");
    let ron =
        r#"(optimizer: (default: (optimizer: (name: "adagrad"))), schedule: Constant(lr: 0.1))"#;
    let err = format!("{:#}", train(&dir, ron, &[]).unwrap_err());
    assert!(err.contains("unknown optimizer `adagrad`"), "{err}");
    for name in ["heavy_ball", "lamb", "nesterov", "sign_sgd"] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn ron_errors_name_file_line_and_column() {
    let dir = scratch("badron");
    let ron = "(\n  optimizer: (default: (optimizer: (name: \"lamb\"))),\n  schedule: Constant(lr: 0.1, warmup: 3),\n)";
    let err = format!("{:#}", train(&dir, ron, &[]).unwrap_err());
    assert!(err.contains("optimizer.ron:3:"), "{err}");
    assert!(err.contains("warmup"), "{err}");
    let ron = r#"(optimizer: (default: (optimizer: (name: "lamb", config: (beta3: 0.5)))), schedule: Constant(lr: 0.1))"#;
    let err = format!("{:#}", train(&dir, ron, &[]).unwrap_err());
    assert!(
        err.contains("optimizer.default.optimizer.config") && err.contains("beta3"),
        "{err}"
    );
}

#[test]
fn missing_backend_feature_is_a_clear_error() {
    let dir = scratch("backend");
    let err = format!(
        "{:#}",
        train(&dir, SIGN_SGD, &["--backend", "cuda"]).unwrap_err()
    );
    assert!(err.contains("cuda") && err.contains("feature"), "{err}");
}

#[test]
fn schedule_command_and_composition_errors() {
    let dir = scratch("schedule");
    let opt = dir.join("o.ron");
    std::fs::write(&opt, SIGN_SGD).unwrap();
    // The CSV itself is checked by core's schedule tests; here: the command path works.
    run_cli([
        "bigbatch",
        "schedule",
        "--config",
        &model_config(),
        "--config",
        opt.to_str().unwrap(),
        "--steps",
        "4",
    ])
    .unwrap();
    let err = format!(
        "{:#}",
        run_cli(["bigbatch", "schedule", "--config", opt.to_str().unwrap()]).unwrap_err()
    );
    assert!(err.contains("no model, data, train section"), "{err}");
}

/// Every shipped optimizer config composes with the model config, validates, and its groups each
/// select parameters of the model.
#[test]
fn shipped_configs_compose_and_assign_groups() {
    bigbatch_cli::link_plugins();
    let dir = root().join("configs/optimizers");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "ron") {
            continue;
        }
        let config = bigbatch_engine::run_config::RunConfig::compose(
            &[PathBuf::from(model_config()), path.clone()],
            &[],
        )
        .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        let bigbatch_engine::run_config::ModelConfig::ResNet(model) = &config.model else {
            panic!("configs/models/resnet.ron is a ResNet");
        };
        let model = model
            .init(&burn::tensor::Device::flex().autodiff())
            .unwrap();
        let params = bigbatch_core::params::describe(&model);
        bigbatch_core::ModelOptimizer::new(&config.optimizer, params)
            .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} optimizer configs found");
}

/// A model's own optimizer presets (`configs/optimizers/<model>/<optimizer>.ron`, picked by
/// `cargo xtask train <model> <optimizer>`) name the study trial they were tuned by
/// (`// tuned: <study file> <study dir> trial <N>`), and composed over the model they are that
/// trial's whole config (optimizer, schedule, model, data, training settings): a preset cannot
/// drift from its stated source, and a run of it repeats the trial.
#[test]
fn model_presets_are_their_tuned_trials() {
    bigbatch_cli::link_plugins();
    let presets = root().join("configs/optimizers");
    let mut checked = 0;
    for model_dir in std::fs::read_dir(&presets).unwrap() {
        let model_dir = model_dir.unwrap().path();
        if !model_dir.is_dir() {
            continue;
        }
        let model = model_dir.file_name().unwrap().to_str().unwrap().to_string();
        let model_file = root().join("configs/models").join(format!("{model}.ron"));
        assert!(
            model_file.is_file(),
            "{}: no model {model}",
            model_dir.display()
        );
        for preset in std::fs::read_dir(&model_dir).unwrap() {
            let preset = preset.unwrap().path();
            let text = std::fs::read_to_string(&preset).unwrap();
            let tuned = text
                .lines()
                .find_map(|l| l.strip_prefix("// tuned: "))
                .unwrap_or_else(|| panic!("{}: no `// tuned:` line", preset.display()));
            let words: Vec<&str> = tuned.split_whitespace().collect();
            let [study_file, study_dir, "trial", index] = words.as_slice() else {
                panic!(
                    "{}: expected `// tuned: <study file> <study dir> trial <N>`, got {tuned}",
                    preset.display()
                );
            };
            let study = bigbatch_studies::study::Study::load(
                &root().join(study_file),
                Some(root().join(study_dir)),
            )
            .unwrap();
            let index: u64 = index.parse().unwrap();
            let trial = &study.trials().unwrap()[&index];
            assert!(trial.feasible(), "{}", preset.display());
            let quoted = format!("{:.2}%", 100.0 * trial.metric.unwrap());
            assert!(
                text.contains(&quoted),
                "{}: should quote its trial's accuracy {quoted}",
                preset.display()
            );
            let (trial, _) = study.trial_config(index).unwrap();
            let composed = bigbatch_engine::run_config::RunConfig::compose(
                &[model_file.clone(), preset.clone()],
                &[],
            )
            .unwrap();
            assert_eq!(
                serde_json::to_value(&composed.optimizer).unwrap(),
                serde_json::to_value(&trial.optimizer).unwrap(),
                "{}: optimizer",
                preset.display()
            );
            assert_eq!(
                serde_json::to_value(&composed.schedule).unwrap(),
                serde_json::to_value(&trial.schedule).unwrap(),
                "{}: schedule",
                preset.display()
            );
            // Model, data and training settings too: a run of the preset repeats its trial.
            assert_eq!(
                serde_json::to_value(&composed).unwrap(),
                serde_json::to_value(&trial).unwrap(),
                "{}: the whole config",
                preset.display()
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} model presets found");
}

#[path = "support/diagnostics.rs"]
mod diagnostics;

#[path = "support/faults.rs"]
mod faults;

#[path = "support/large_batch.rs"]
mod large_batch;

#[path = "support/plugins.rs"]
mod plugins;

#[path = "support/replay.rs"]
mod replay;

#[path = "support/reproduce.rs"]
mod reproduce;

#[path = "support/slurm.rs"]
mod slurm;

#[path = "support/study.rs"]
mod study;

#[cfg(feature = "wgpu")]
#[path = "support/wgpu.rs"]
mod wgpu;

#[path = "support/workloads.rs"]
mod workloads;
