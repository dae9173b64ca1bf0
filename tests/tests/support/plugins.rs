//! The plugin APIs as an outside crate uses them: the example workload crate `workload-mlp`
//! (outside `crates/`, linked here with one `link()` call and named nowhere else) trained, cut
//! into micro-batches, resumed and studied through the CLI; optimizer plugins refused for group
//! settings they do not honour; the warning when the step budget and the schedule disagree.

use super::large_batch::numbers;
use super::{cli, root, scratch};
use bigbatch_engine::run_config::RunConfig;
use bigbatch_studies::study::Study;
use std::path::{Path, PathBuf};

fn mlp_config() -> PathBuf {
    root().join("tests/workload-mlp/mlp.ron")
}

/// `bigbatch train` on the mlp workload with LAMB over 4 steps of batch 64; returns the run
/// directory's per-step numbers.
fn train_mlp(out: &Path, extra: &[&str]) -> anyhow::Result<Vec<serde_json::Value>> {
    bigbatch_workload_mlp::link();
    let (mlp, lamb) = (mlp_config(), root().join("configs/optimizers/lamb.ron"));
    let out_s = out.display().to_string();
    let mut args = vec![
        "train",
        "--no-progress",
        "--config",
        mlp.to_str().unwrap(),
        "--config",
        lamb.to_str().unwrap(),
        "--out",
        &out_s,
        "--set",
        "train.batch_size=64",
        "--set",
        "train.train_eval_examples=128",
        "--set",
        "schedule.warmup_steps=1",
        "--set",
        "schedule.total_steps=4",
        "--set",
        "train.eval_every=2",
        "--set",
        "train.steps=4",
    ];
    args.extend_from_slice(extra);
    cli(&args)?;
    Ok(numbers(&out.join("metrics.jsonl")))
}

#[test]
fn workload_plugin_trains_accumulates_and_resumes_through_the_cli() {
    let dir = scratch("mlp");
    let straight = train_mlp(&dir.join("straight"), &[]).unwrap();
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("straight/summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["steps"], 4);
    // It learns: after 4 LAMB steps a 784-128-10 perceptron is far above chance (10%).
    let val = summary["final_val_accuracy"].as_f64().unwrap();
    assert!(val > 0.3, "validation accuracy {val}");
    let config = std::fs::read_to_string(dir.join("straight/config.ron")).unwrap();
    assert!(
        config.contains("Plugin") && config.contains("mlp"),
        "{config}"
    );

    // Gradient accumulation: 4 micro-batches of 16 give the one-piece losses (f32 rounding).
    let micro = train_mlp(&dir.join("micro"), &["--set", "train.micro_batch_size=16"]).unwrap();
    assert_eq!(micro.len(), straight.len());
    let mut losses = 0;
    for (a, b) in straight.iter().zip(&micro) {
        assert_eq!(a.get("step"), b.get("step"));
        if let (Some(a), Some(b)) = (a["loss"].as_f64(), b["loss"].as_f64()) {
            assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "{a} vs {b}");
            losses += 1;
        }
    }
    assert_eq!(losses, 4);

    // Resume: 2 steps, then --resume to 4, gives the uninterrupted run's numbers exactly.
    let resumed = dir.join("resumed");
    train_mlp(&resumed, &["--set", "train.steps=2"]).unwrap();
    let after = train_mlp(&resumed, &["--resume"]).unwrap();
    assert_eq!(after, straight);
}

#[test]
fn workload_plugin_runs_a_study() {
    bigbatch_workload_mlp::link();
    let dir = scratch("mlp-study");
    let study_path = dir.join("mlp-study.ron");
    std::fs::write(
        &study_path,
        format!(
            r#"(
    base: ["{}", "{}"],
    seed: 3,
    metric: FinalValAccuracy,
    search: {{
        "schedule.peak": Log(0.001, 0.1),
        "model.config.hidden": Discrete([[16], [32]]),
        "train.steps": Fixed(2),
        "train.batch_size": Fixed(32),
        "train.eval_every": Fixed(2),
        "train.train_eval_examples": Fixed(64),
        "schedule.warmup_steps": Fixed(1),
        "schedule.total_steps": Fixed(2),
    }},
)"#,
            mlp_config().display(),
            root().join("configs/optimizers/lamb.ron").display()
        ),
    )
    .unwrap();
    let study_dir = dir.join("dir");
    let (s, d) = (study_path.to_str().unwrap(), study_dir.to_str().unwrap());
    cli(&["study", "run", s, "--dir", d, "--trials", "2"]).unwrap();
    let study = Study::load(&study_path, Some(study_dir.clone())).unwrap();
    let trials = study.trials().unwrap();
    assert_eq!(trials.values().filter(|r| r.feasible()).count(), 2);
    for (i, r) in &trials {
        let hidden = &r.point["model.config.hidden"];
        assert!(hidden == &serde_json::json!([16]) || hidden == &serde_json::json!([32]));
        let config =
            std::fs::read_to_string(study_dir.join(format!("trials/{i:05}/config.ron"))).unwrap();
        assert!(config.contains("mlp"), "{config}");
    }
    assert!(study.best().unwrap().is_some());
}

#[test]
fn unknown_workload_lists_the_registered_ones() {
    bigbatch_workload_mlp::link();
    let dir = scratch("unknown-workload");
    let file = dir.join("w.ron");
    let text = std::fs::read_to_string(mlp_config())
        .unwrap()
        .replace("name: \"mlp\"", "name: \"transformer\"");
    std::fs::write(&file, text).unwrap();
    let lamb = root().join("configs/optimizers/lamb.ron");
    let err = format!("{:#}", RunConfig::compose(&[file, lamb], &[]).unwrap_err());
    assert!(err.contains("unknown workload `transformer`"), "{err}");
    for name in ["bert", "mlp", "resnet"] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn workload_config_errors_name_the_field() {
    bigbatch_workload_mlp::link();
    let lamb = root().join("configs/optimizers/lamb.ron");
    let err = format!(
        "{:#}",
        RunConfig::compose(
            &[mlp_config(), lamb.clone()],
            &["model.config.hidden=[0]".to_string()]
        )
        .unwrap_err()
    );
    assert!(
        err.contains("model.config.hidden: expected positive widths"),
        "{err}"
    );
    let err = format!(
        "{:#}",
        RunConfig::compose(&[mlp_config(), lamb], &["model.config.depth=3".to_string()])
            .unwrap_err()
    );
    assert!(
        err.contains("model.config") && err.contains("depth"),
        "{err}"
    );
}

/// sign-SGD declares that it honours no group setting: a group that sets weight decay, a decay
/// mode or the trust ratio for it is refused, naming the group, the field and the optimizer.
#[test]
fn optimizer_plugin_refuses_group_settings_it_does_not_honour() {
    bigbatch_optim_signsgd::link();
    bigbatch_cli::link_plugins();
    let resnet = root().join("configs/models/resnet.ron");
    let model = {
        let config =
            RunConfig::compose(&[resnet, root().join("configs/optimizers/lamb.ron")], &[]).unwrap();
        let bigbatch_engine::run_config::ModelConfig::ResNet(m) = config.model else {
            panic!("resnet.ron is a ResNet")
        };
        m.init(&burn::tensor::Device::flex().autodiff()).unwrap()
    };
    let params = bigbatch_core::params::describe(&model);
    for (setting, ron) in [
        ("optimizer.default.weight_decay", "weight_decay: 0.01"),
        ("optimizer.default.decay_mode", "decay_mode: Some(L2)"),
        ("optimizer.groups.bn.trust_ratio", ""),
    ] {
        let setup = if ron.is_empty() {
            r#"(default: (optimizer: (name: "sign_sgd")), groups: {"bn": (select: (kinds: [Norm]), trust_ratio: Some(true))})"#.to_string()
        } else {
            format!(r#"(default: (optimizer: (name: "sign_sgd"), {ron}))"#)
        };
        let setup: bigbatch_core::OptimizerSetup =
            bigbatch_core::config::parse_ron(&setup, "test").unwrap();
        let err = format!(
            "{:#}",
            bigbatch_core::ModelOptimizer::new(&setup, params.clone())
                .err()
                .unwrap()
        );
        assert!(
            err.contains(setting) && err.contains("`sign_sgd` does not honour it"),
            "{setting}: {err}"
        );
    }
}

/// A step budget that stops before the schedule's end (or runs past it) is warned about.
#[test]
fn step_budget_and_schedule_disagreeing_is_warned() {
    bigbatch_cli::link_plugins();
    let files = [
        root().join("configs/models/resnet.ron"),
        root().join("configs/optimizers/lamb.ron"),
    ];
    let same = RunConfig::compose(&files, &[]).unwrap();
    assert_eq!(same.schedule_warning(), None);
    let short = RunConfig::compose(&files, &["train.steps=100".to_string()]).unwrap();
    let w = short.schedule_warning().unwrap();
    assert!(
        w.contains("train.steps is 100")
            && w.contains("total_steps is 400")
            && w.contains("before the schedule ends"),
        "{w}"
    );
    let long = RunConfig::compose(&files, &["train.steps=450".to_string()]).unwrap();
    let w = long.schedule_warning().unwrap();
    assert!(w.contains("the last 50 steps run past"), "{w}");
}
