//! Per-layer diagnostics: values worked by hand for heavy ball, LAMB and LARS; the same under
//! gradient accumulation; a resumed run's file equal to an uninterrupted one's; TensorBoard files
//! read back by TensorBoard's own reader.

use super::{root, scratch};
use bigbatch_cli::run_cli;
use bigbatch_core::ModelOptimizer;
use bigbatch_core::diagnostics::StepDiagnostics;
use bigbatch_core::params::{ParamInfo, ParamKind, ParamSlot};
use burn::tensor::{Device, Tensor};
use std::path::Path;

fn close(what: &str, got: f64, want: f64, rel: f64) {
    assert!(
        (got - want).abs() <= rel * want.abs().max(1e-12),
        "{what}: got {got}, expected {want}"
    );
}

/// Two tensors: a weight w = [3, 4] (norm 5) and a zero bias; gradients g_w = [0.6, 0.8]
/// (norm 1, parallel to w) and g_b = [1.2, 1.6] (norm 2). Global gradient norm sqrt(5).
fn params() -> Vec<ParamInfo> {
    vec![
        ParamInfo {
            path: "dense.weight".into(),
            kind: ParamKind::Weight,
            shape: vec![2],
        },
        ParamInfo {
            path: "dense.bias".into(),
            kind: ParamKind::Bias,
            shape: vec![2],
        },
    ]
}

fn t(v: &[f32]) -> Tensor<1> {
    Tensor::from_floats(v, &Device::flex())
}

/// `steps` updates at lr 0.1 with the same gradients; the diagnostics of each.
fn diagnose(setup: &str, steps: usize) -> Vec<StepDiagnostics> {
    bigbatch_cli::link_plugins();
    let setup: bigbatch_core::OptimizerSetup =
        bigbatch_core::config::parse_ron(setup, "test").unwrap();
    let mut optimizer = ModelOptimizer::new(&setup, params()).unwrap();
    let mut values = vec![t(&[3.0, 4.0]), t(&[0.0, 0.0])];
    let mut out = Vec::new();
    for _ in 0..steps {
        let slots = values
            .iter()
            .zip([t(&[0.6, 0.8]), t(&[1.2, 1.6])])
            .map(|(v, g)| ParamSlot {
                value: v.clone(),
                grad: g,
            })
            .collect();
        let (new, d) = optimizer.step_with_diagnostics(0.1, slots);
        values = new;
        out.push(d);
    }
    out
}

/// Heavy ball (v <- mu v + g, w <- w - lr v), mu 0.9, the bias group at lr_scale 0.5. Step 1:
/// u_w = 0.1 g_w (norm 0.1, ratio 0.1 / 5 = 0.02), u_b = 0.05 g_b (norm 0.1; zero weight: no
/// ratio). Step 2: v = 1.9 g, u_w norm 0.19 over ||w_1|| = ||4.9 g_w|| = 4.9. No trust ratio;
/// effective lr 0.1 and 0.05. No group clips.
#[test]
fn heavy_ball_by_hand() {
    let d = diagnose(
        r#"(default: (optimizer: (name: "heavy_ball", config: (momentum: 0.9))),
            groups: {"biases": (select: (kinds: [Bias]), lr_scale: 0.5)})"#,
        2,
    );
    let (w, b) = (&d[0].tensors[0], &d[0].tensors[1]);
    close("global", d[0].global_grad_norm, 5f64.sqrt(), 1e-6);
    assert!(d[0].clipping.is_empty());
    assert_eq!((w.group.as_str(), b.group.as_str()), ("default", "biases"));
    close("w norm", w.weight_norm, 5.0, 1e-6);
    close("g norm", w.grad_norm, 1.0, 1e-6);
    close("u norm", w.update_norm, 0.1, 1e-5);
    close("ratio", w.update_ratio.unwrap(), 0.02, 1e-5);
    assert_eq!(w.trust_ratio, None);
    close("lr", w.effective_lr, 0.1, 1e-12);
    assert_eq!(b.weight_norm, 0.0);
    assert_eq!(b.update_ratio, None);
    close("b u norm", b.update_norm, 0.1, 1e-5);
    close("b lr", b.effective_lr, 0.05, 1e-12);
    let w2 = &d[1].tensors[0];
    close("w norm 2", w2.weight_norm, 4.9, 1e-6);
    close("u norm 2", w2.update_norm, 0.19, 1e-5);
    close("ratio 2", w2.update_ratio.unwrap(), 0.19 / 4.9, 1e-5);
}

/// LAMB (optax.lamb: Adam with bias correction, eps 1e-6, no decay) after clipping by the global
/// norm at 1: factor 1 / sqrt(5). The first Adam direction is g / (|g| + eps), 1 in every
/// coordinate up to eps / |g| (< 1e-5), so ||r|| = sqrt(2); trust ratio ||w|| / ||r|| =
/// 5 / sqrt(2) = 3.5355 for the weight and 1 for the zero bias (optax: 1 where a norm is 0). The
/// update lr * trust * r has norm lr ||w|| = 0.5 (ratio 0.1) and 0.1 sqrt(2) for the bias;
/// effective lr 0.35355 and 0.1.
#[test]
fn lamb_by_hand() {
    let d = diagnose(
        r#"(default: (optimizer: (name: "lamb", config: (max_grad_norm: Some(1.0)))))"#,
        1,
    );
    let d = &d[0];
    assert_eq!(d.clipping.len(), 1);
    assert_eq!(d.clipping[0].max_norm, 1.0);
    close("clip", d.clipping[0].factor, 1.0 / 5f64.sqrt(), 1e-6);
    let (w, b) = (&d.tensors[0], &d.tensors[1]);
    close("g norm (before clipping)", w.grad_norm, 1.0, 1e-6);
    close("trust", w.trust_ratio.unwrap(), 5.0 / 2f64.sqrt(), 1e-5);
    close("u norm", w.update_norm, 0.5, 1e-5);
    close("ratio", w.update_ratio.unwrap(), 0.1, 1e-5);
    close("lr", w.effective_lr, 0.1 * 5.0 / 2f64.sqrt(), 1e-5);
    close("b trust", b.trust_ratio.unwrap(), 1.0, 1e-6);
    close("b u norm", b.update_norm, 0.1 * 2f64.sqrt(), 1e-5);
    close("b lr", b.effective_lr, 0.1, 1e-6);
}

/// LARS as MLPerf (trust eta ||w|| / (||g|| + lambda ||w||), 1 where ||w|| or ||g|| is 0; lr
/// inside the momentum buffer), eta 0.001, no decay: trust 0.001 * 5 / 1 = 0.005 for the weight,
/// 1 for the zero bias. First update lr * trust * g: norms 0.1 * 0.005 * 1 = 5e-4 (ratio 1e-4)
/// and 0.1 * 2 = 0.2; effective lr 5e-4 and 0.1.
#[test]
fn lars_by_hand() {
    let d = diagnose(
        r#"(default: (optimizer: (name: "lars", config: (variant: "mlperf", trust_coefficient: 0.001))))"#,
        1,
    );
    let (w, b) = (&d[0].tensors[0], &d[0].tensors[1]);
    assert!(d[0].clipping.is_empty());
    close("trust", w.trust_ratio.unwrap(), 0.005, 1e-6);
    close("u norm", w.update_norm, 5e-4, 1e-4);
    close("ratio", w.update_ratio.unwrap(), 1e-4, 1e-4);
    close("lr", w.effective_lr, 5e-4, 1e-6);
    close("b trust", b.trust_ratio.unwrap(), 1.0, 1e-6);
    close("b u norm", b.update_norm, 0.2, 1e-5);
    close("b lr", b.effective_lr, 0.1, 1e-6);
}

/// A plugin written against `TensorOptimizer` without knowing of diagnostics (tests/optim-signsgd:
/// w <- w - lr sign(g)) gets them: update norms lr sqrt(2) = 0.1414 for both tensors (every
/// gradient coordinate is non-zero), no trust ratio, no clipping, effective lr = lr.
#[test]
fn an_outside_plugin_gets_diagnostics() {
    bigbatch_optim_signsgd::link();
    let d = diagnose(r#"(default: (optimizer: (name: "sign_sgd")))"#, 1);
    let (w, b) = (&d[0].tensors[0], &d[0].tensors[1]);
    assert!(d[0].clipping.is_empty());
    close("w u", w.update_norm, 0.1 * 2f64.sqrt(), 1e-6);
    close(
        "w ratio",
        w.update_ratio.unwrap(),
        0.1 * 2f64.sqrt() / 5.0,
        1e-6,
    );
    close("b u", b.update_norm, 0.1 * 2f64.sqrt(), 1e-6);
    assert_eq!((w.trust_ratio, b.trust_ratio), (None, None));
    close("lr", w.effective_lr, 0.1, 1e-12);
}

/// resnet-mini narrowed (ghost batch norm over 8), LAMB, every update diagnosed.
fn train(out: &Path, extra: &[&str]) {
    let mut args: Vec<String> = vec![
        "bigbatch".into(),
        "train".into(),
        "--no-progress".into(),
        "--config".into(),
        root()
            .join("configs/models/resnet.ron")
            .display()
            .to_string(),
        "--config".into(),
        root()
            .join("configs/optimizers/lamb.ron")
            .display()
            .to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    for set in [
        "train.batch_size=32",
        "train.eval_every=3",
        "train.train_eval_examples=64",
        "model.widths=[2,2,2,2]",
        "train.diagnostics_every=1",
        // Ghost batch norm over 8 examples: the same statistics whatever the micro-batch.
        "model.bn.virtual_batch_size=8",
    ] {
        args.push("--set".into());
        args.push(set.into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    run_cli(args).unwrap();
}

fn lines(path: &Path) -> Vec<serde_json::Value> {
    bigbatch_engine::run_dir::read_jsonl(path).unwrap()
}

/// A run's diagnostics: one line per diagnosed step with every tensor; the same (to f32
/// rounding) when the batch is cut into 4 micro-batches; and after a crash past the last
/// checkpoint and `--resume`, the file equals an uninterrupted run's byte for byte. LAMB's update
/// norm is lr * ||w|| for a tensor whose trust ratio is applied (by hand from
/// u = lr * (||w|| / ||r||) * r), which every moving tensor of every line satisfies.
#[test]
fn diagnostics_survive_accumulation_and_resume() {
    let dir = scratch("diagnostics");
    let straight = dir.join("straight");
    train(&straight, &["--set", "train.steps=6"]);
    let text = std::fs::read_to_string(straight.join("diagnostics.jsonl")).unwrap();
    let ds = bigbatch_engine::run_dir::read_diagnostics(&straight).unwrap();
    assert_eq!(
        ds.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        (0..6).collect::<Vec<_>>()
    );
    let metrics = lines(&straight.join("metrics.jsonl"));
    for (step, d) in &ds {
        let lr = metrics
            .iter()
            .find(|l| l["step"].as_u64() == Some(*step) && l.get("loss").is_some())
            .unwrap()["lr"]
            .as_f64()
            .unwrap();
        close("lr", d.lr, lr, 1e-12);
        assert_eq!(d.tensors.len(), 53, "every tensor of resnet-mini");
        let sum: f64 = d.tensors.iter().map(|t| t.grad_norm.powi(2)).sum();
        close("global", d.global_grad_norm, sum.sqrt(), 1e-9);
        for t in &d.tensors {
            // (A zero direction, as a dead unit's, gets the guarded trust ratio 1 and no update.)
            if let Some(trust) = t.trust_ratio
                && t.weight_norm > 0.0
                && t.update_norm > 0.0
            {
                close(&t.path, t.update_norm, lr * t.weight_norm, 1e-3);
                close(&t.path, t.effective_lr, lr * trust, 1e-9);
            }
        }
    }

    // Four micro-batches: the summed gradient is the one-piece gradient up to f32 rounding.
    let pieces = dir.join("pieces");
    train(
        &pieces,
        &[
            "--set",
            "train.steps=6",
            "--set",
            "train.micro_batch_size=8",
        ],
    );
    let dp = bigbatch_engine::run_dir::read_diagnostics(&pieces).unwrap();
    assert_eq!(dp.len(), ds.len());
    for ((s, a), (_, b)) in ds.iter().zip(&dp) {
        close(
            &format!("global at {s}"),
            b.global_grad_norm,
            a.global_grad_norm,
            1e-3,
        );
        for (x, y) in a.tensors.iter().zip(&b.tensors) {
            close(&x.path, y.grad_norm, x.grad_norm, 2e-3);
            close(&x.path, y.weight_norm, x.weight_norm, 1e-4);
        }
    }

    // `bigbatch diagnostics`: both runs side by side.
    let charts = dir.join("charts");
    run_cli([
        "bigbatch",
        "diagnostics",
        straight.to_str().unwrap(),
        pieces.to_str().unwrap(),
        "--out",
        charts.to_str().unwrap(),
    ])
    .unwrap();
    for chart in [
        "straight-update_ratio",
        "straight-trust_ratio",
        "pieces-update_ratio",
        "global_grad_norm",
        "by_kind-trust_ratio",
        "by_kind-update_ratio",
        "by_kind-grad_norm",
    ] {
        for ext in ["svg", "png"] {
            let p = charts.join(format!("{chart}.{ext}"));
            assert!(
                std::fs::metadata(&p).is_ok_and(|m| m.len() > 1000),
                "{}",
                p.display()
            );
        }
    }
    let md = std::fs::read_to_string(charts.join("diagnostics.md")).unwrap();
    assert!(
        md.contains("| straight | batch_norm | 5 |") && md.contains("| pieces | weights | 5 |"),
        "{md}"
    );
    let e = run_cli(["bigbatch", "diagnostics", dir.to_str().unwrap()]).unwrap_err();
    assert!(format!("{e:#}").contains("no diagnostics.jsonl"), "{e:#}");

    // A run killed after step 5 whose newest usable checkpoint is step 3: its files hold lines
    // past the checkpoint and a torn last line. `--resume` drops them and continues.
    let resumed = dir.join("resumed");
    train(&resumed, &["--set", "train.steps=5"]);
    let pointer = resumed.join("checkpoint.json");
    let mut p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pointer).unwrap()).unwrap();
    let previous = p["previous"].take();
    assert_eq!(previous["step"], 3);
    std::fs::write(&pointer, serde_json::to_string(&previous).unwrap()).unwrap();
    let diagnostics = resumed.join("diagnostics.jsonl");
    let mut torn = std::fs::read_to_string(&diagnostics).unwrap();
    torn.push_str("{\"step\": 5, \"lr\": 0.0");
    std::fs::write(&diagnostics, torn).unwrap();
    train(&resumed, &["--set", "train.steps=6", "--resume"]);
    assert_eq!(std::fs::read_to_string(&diagnostics).unwrap(), text);
}

/// `python3` with the `tensorboard` package: a virtual environment under the tests' target
/// directory, made (pip install tensorboard) on first use. `None` with a message where Python
/// cannot provide it, unless `BIGBATCH_REQUIRE_TENSORBOARD` is set (`cargo xtask test`).
fn tensorboard_python() -> Option<std::path::PathBuf> {
    let required = std::env::var_os("BIGBATCH_REQUIRE_TENSORBOARD").is_some();
    let skip = |why: String| {
        assert!(!required, "BIGBATCH_REQUIRE_TENSORBOARD is set, but {why}");
        eprintln!("SKIPPED tensorboard_files_read_back_with_tensorboard: {why}");
        None
    };
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tensorboard-venv");
    let python = venv.join("bin/python");
    let ready = |p: &Path| {
        std::process::Command::new(p)
            .args([
                "-c",
                "import tensorboard.backend.event_processing.event_accumulator",
            ])
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ready(&python) {
        return Some(python);
    }
    let made = std::process::Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status();
    match made {
        Err(e) => return skip(format!("python3 cannot be run ({e})")),
        Ok(s) if !s.success() => return skip("python3 -m venv failed".into()),
        Ok(_) => {}
    }
    let pip = std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "-q", "tensorboard"])
        .status();
    if !pip.is_ok_and(|s| s.success()) || !ready(&python) {
        return skip("pip install tensorboard failed".into());
    }
    Some(python)
}

/// Every scalar TensorBoard's reader (`EventAccumulator`) finds in `dir`, by tag: (step, value).
fn read_events(python: &Path, dir: &Path) -> serde_json::Value {
    let script = r#"
import json, sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
ea = EventAccumulator(sys.argv[1], size_guidance={"scalars": 0})
ea.Reload()
print(json.dumps({t: [[e.step, e.value] for e in ea.Scalars(t)] for t in ea.Tags()["scalars"]}))
"#;
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The event files of a live run, of a run resumed after a crash past its checkpoint (TensorBoard
/// drops the first file's steps from the resumed step on), and of `bigbatch tensorboard` from a
/// run directory, all read back by TensorBoard's reader with the steps and values of
/// metrics.jsonl and diagnostics.jsonl (as f32).
#[test]
fn tensorboard_files_read_back_with_tensorboard() {
    let Some(python) = tensorboard_python() else {
        return;
    };
    let dir = scratch("tensorboard");
    let (live, resumed_tb) = (dir.join("tb-live"), dir.join("tb-resumed"));
    let tb = |d: &Path| format!("train.tensorboard={}", d.display());
    let straight = dir.join("straight");
    train(&straight, &["--set", "train.steps=6", "--set", &tb(&live)]);
    let resumed = dir.join("resumed");
    train(
        &resumed,
        &["--set", "train.steps=5", "--set", &tb(&resumed_tb)],
    );
    let pointer = resumed.join("checkpoint.json");
    let mut p: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&pointer).unwrap()).unwrap();
    std::fs::write(
        &pointer,
        serde_json::to_string(&p["previous"].take()).unwrap(),
    )
    .unwrap();
    train(
        &resumed,
        &[
            "--set",
            "train.steps=6",
            "--set",
            &tb(&resumed_tb),
            "--resume",
        ],
    );
    let exported = dir.join("tb-exported");
    run_cli([
        "bigbatch",
        "tensorboard",
        straight.to_str().unwrap(),
        "--out",
        exported.to_str().unwrap(),
    ])
    .unwrap();

    // What the run directory says, as TensorBoard stores it (f32).
    let mut want: std::collections::BTreeMap<String, Vec<(u64, f32)>> = Default::default();
    for line in lines(&straight.join("metrics.jsonl")) {
        if let Some((step, scalars)) = bigbatch_engine::tensorboard::metrics_scalars(&line) {
            for (tag, v) in scalars {
                want.entry(tag).or_default().push((step, v as f32));
            }
        }
    }
    let ds = bigbatch_engine::run_dir::read_diagnostics(&straight).unwrap();
    for (step, d) in &ds {
        for (tag, v) in bigbatch_engine::tensorboard::diagnostics_scalars(d) {
            want.entry(tag).or_default().push((*step, v as f32));
        }
    }
    assert!(want["loss"].len() == 6 && want["val_accuracy"].len() == 2);
    assert!(want.contains_key("trust_ratio/layer1.0.bn1.gamma"));
    assert!(want.contains_key("grad_norm/global"));
    for (name, events) in [
        ("live", &live),
        ("resumed", &resumed_tb),
        ("exported", &exported),
    ] {
        let got = read_events(&python, events);
        let got = got.as_object().unwrap();
        assert_eq!(got.len(), want.len(), "{name}: tags");
        for (tag, values) in &want {
            let read: Vec<(u64, f32)> = got[tag]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| (e[0].as_u64().unwrap(), e[1].as_f64().unwrap() as f32))
                .collect();
            assert_eq!(&read, values, "{name}: {tag}");
        }
    }
}

/// docs/diagnostics-table5/diagnostics.md is what `bigbatch diagnostics` writes from the run files
/// committed beside it.
#[test]
fn published_table5_diagnostics_are_current() {
    let dir = scratch("table5");
    let docs = root().join("docs/diagnostics-table5");
    let runs = ["f2-lamb", "f2-lamb-adam"].map(|r| docs.join("runs").join(r));
    run_cli([
        "bigbatch",
        "diagnostics",
        runs[0].to_str().unwrap(),
        runs[1].to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ])
    .unwrap();
    let made = std::fs::read_to_string(dir.join("diagnostics.md"))
        .unwrap()
        .replace(&format!("{}/", root().display()), "");
    let published = std::fs::read_to_string(docs.join("diagnostics.md")).unwrap();
    assert_eq!(made, published);
}
