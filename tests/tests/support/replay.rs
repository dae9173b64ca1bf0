//! `bigbatch replay` against the independent reference trajectories of
//! `tests/reference/reference_optimizers.py`, optimizer state save/restore, and bad traces.

use super::{root, scratch};
use bigbatch_cli::run_cli;
use bigbatch_core::ModelOptimizer;
use bigbatch_core::optimizer::OptimizerState;
use bigbatch_core::params::ParamSlot;
use bigbatch_core::replay::{
    Precision, ReplayOutput, Trace, check_against_reference, parse_json, replay,
};
use bigbatch_engine::run_config::compose_optimizer;
use burn::tensor::{Device, Tensor};
use std::path::PathBuf;

fn reference_dir() -> PathBuf {
    root().join("tests/reference")
}

pub(super) fn trace() -> Trace {
    let path = reference_dir().join("trace.json");
    let trace: Trace = parse_json(
        &std::fs::read_to_string(&path).unwrap(),
        &path.display().to_string(),
    )
    .unwrap();
    trace.validate("trace.json").unwrap();
    trace
}

/// Every `(name, config file)` under tests/reference/cases.
pub(super) fn cases() -> Vec<(String, PathBuf)> {
    let mut out: Vec<_> = std::fs::read_dir(reference_dir().join("cases"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "ron"))
        .map(|p| (p.file_stem().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    out.sort();
    out
}

/// [`check_against_reference`], as a test assertion.
pub(super) fn compare(case: &str, got: &ReplayOutput, want: &serde_json::Value, tol: f64) {
    if let Err(e) = check_against_reference(case, got, want, tol) {
        panic!("{e:#}");
    }
}

/// The check the device check relies on fails on a reference value moved by more than the
/// tolerance, naming the value, and reports the largest deviation otherwise.
#[test]
fn reference_check_names_the_value_that_differs() {
    bigbatch_cli::link_plugins();
    let (name, path) = cases().into_iter().find(|(n, _)| n == "adam").unwrap();
    let setup = compose_optimizer(std::slice::from_ref(&path), &[]).unwrap();
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(path.with_file_name(format!("{name}.expected.json"))).unwrap(),
    )
    .unwrap();
    let got = replay(&setup, &trace(), Precision::F64, &Device::flex()).unwrap();
    let worst = check_against_reference(&name, &got, &want, 1e-12).unwrap();
    assert!(worst <= 1e-12, "{worst}");
    let mut moved = want.clone();
    let (param, values) = moved["steps"][1]["params"]
        .as_object_mut()
        .unwrap()
        .iter_mut()
        .next()
        .unwrap();
    let param = param.clone();
    values[0] = serde_json::json!(values[0].as_f64().unwrap() + 1e-3);
    let e = check_against_reference(&name, &got, &moved, 2e-5)
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("step 2 {param}[0]")), "{e}");
}

#[test]
fn every_optimizer_matches_its_reference_trajectory() {
    bigbatch_cli::link_plugins();
    let trace = trace();
    let cases = cases();
    assert!(cases.len() >= 16, "reference cases missing: {cases:?}");
    let device = Device::flex();
    for (name, path) in &cases {
        let setup = compose_optimizer(std::slice::from_ref(path), &[]).unwrap();
        let expected_path = path.with_file_name(format!("{name}.expected.json"));
        let want: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(expected_path).unwrap()).unwrap();
        let f64_run = replay(&setup, &trace, Precision::F64, &device).unwrap();
        compare(name, &f64_run, &want, 1e-12);
        let f32_run = replay(&setup, &trace, Precision::F32, &device).unwrap();
        compare(name, &f32_run, &want, 2e-5);
    }
}

fn slots(values: &[Tensor<1>], trace: &Trace, step: usize, device: &Device) -> Vec<ParamSlot> {
    trace
        .params
        .iter()
        .zip(values)
        .map(|(p, v)| ParamSlot {
            value: v.clone(),
            grad: Tensor::from_floats(
                trace.steps[step].grads[&p.name]
                    .iter()
                    .map(|&x| x as f32)
                    .collect::<Vec<_>>()
                    .as_slice(),
                device,
            ),
        })
        .collect()
}

fn bits(values: &[Tensor<1>]) -> Vec<Vec<u32>> {
    values
        .iter()
        .map(|t| {
            t.clone()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap()
                .into_iter()
                .map(f32::to_bits)
                .collect()
        })
        .collect()
}

/// Two steps, save (through bytes), restore into a fresh optimizer, three more steps: bit-identical
/// to five uninterrupted steps, for every reference configuration; so are five steps with the
/// tensors updated on several threads.
#[test]
fn restored_optimizer_state_continues_bit_identically() {
    bigbatch_cli::link_plugins();
    let trace = trace();
    let device = Device::flex();
    let infos = trace.param_infos();
    let initial: Vec<Tensor<1>> = trace
        .params
        .iter()
        .map(|p| {
            let v: Vec<f32> = p.values.iter().map(|&x| x as f32).collect();
            Tensor::from_floats(v.as_slice(), &device)
        })
        .collect();
    for (name, path) in cases() {
        let setup = compose_optimizer(std::slice::from_ref(&path), &[]).unwrap();
        // Steps `range` of the trace, from `values`.
        let run = |optimizer: &mut ModelOptimizer,
                   mut values: Vec<Tensor<1>>,
                   range: std::ops::Range<usize>| {
            for s in range {
                values = optimizer.step(trace.steps[s].lr, slots(&values, &trace, s, &device));
            }
            values
        };
        let steps = trace.steps.len();
        let mut straight = ModelOptimizer::new(&setup, infos.clone()).unwrap();
        let values = run(&mut straight, initial.clone(), 0..steps);

        // Tensors stepped on several threads: the same bits.
        let mut parallel = ModelOptimizer::new(&setup, infos.clone())
            .unwrap()
            .with_parallel_steps(true);
        let parallel_values = run(&mut parallel, initial.clone(), 0..steps);
        assert_eq!(
            bits(&values),
            bits(&parallel_values),
            "{name}: parallel steps differ"
        );

        let mut first = ModelOptimizer::new(&setup, infos.clone()).unwrap();
        let resumed_values = run(&mut first, initial.clone(), 0..2);
        let bytes = first.state().to_bytes().unwrap();
        drop(first);
        let mut second = ModelOptimizer::new(&setup, infos.clone()).unwrap();
        second
            .load_state(OptimizerState::from_bytes(&bytes).unwrap(), &device)
            .unwrap();
        assert_eq!(second.steps_done(), 2, "{name}");
        let resumed_values = run(&mut second, resumed_values, 2..steps);
        assert_eq!(
            bits(&values),
            bits(&resumed_values),
            "{name}: resumed run differs"
        );
    }
}

/// A state saved under one configuration does not load into a configuration whose optimizer keeps
/// a different number of state tensors; the error names the parameter and the group.
#[test]
fn state_of_another_optimizer_is_rejected() {
    bigbatch_cli::link_plugins();
    let trace = trace();
    let device = Device::flex();
    let infos = trace.param_infos();
    let case = |n: &str| reference_dir().join(format!("cases/{n}.ron"));
    let adam = compose_optimizer(&[case("adam")], &[]).unwrap();
    let nesterov = compose_optimizer(&[case("nesterov")], &[]).unwrap();
    let mut a = ModelOptimizer::new(&adam, infos.clone()).unwrap();
    let values: Vec<Tensor<1>> = trace
        .params
        .iter()
        .map(|p| Tensor::zeros([p.values.len()], &device))
        .collect();
    a.step(0.1, slots(&values, &trace, 0, &device));
    let mut n = ModelOptimizer::new(&nesterov, infos).unwrap();
    let err = n.load_state(a.state(), &device).unwrap_err().to_string();
    assert!(
        err.contains("dense.weight") && err.contains("has 2 tensors") && err.contains("keeps 1"),
        "{err}"
    );
}

#[test]
fn replay_command_writes_json_and_rejects_bad_traces() {
    let dir = scratch("replay");
    let trace_path = reference_dir().join("trace.json");
    let case = reference_dir().join("cases/lars_mlperf.ron");
    let out = dir.join("out.json");
    run_cli([
        "bigbatch",
        "replay",
        "--optimizer",
        case.to_str().unwrap(),
        "--trace",
        trace_path.to_str().unwrap(),
        "--dtype",
        "f64",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let got: ReplayOutput = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(got.dtype, Precision::F64);
    assert_eq!(got.steps.len(), 5);
    // MLPerf LARS on `dense.weight` at step 3 (zero gradient on a non-zero weight): trust 1.
    assert_eq!(got.steps[2].trust_ratios["dense.weight"], 1.0);

    let replay_err = |trace_text: &str, optimizer: &str| -> String {
        let t = dir.join("bad.json");
        std::fs::write(&t, trace_text).unwrap();
        let o = dir.join("opt.ron");
        std::fs::write(&o, optimizer).unwrap();
        run_cli([
            "bigbatch",
            "replay",
            "--optimizer",
            o.to_str().unwrap(),
            "--trace",
            t.to_str().unwrap(),
        ])
        .unwrap_err()
        .to_string()
    };
    let sgd = r#"(optimizer: (default: (optimizer: (name: "nesterov", config: ()))))"#;
    let one = |grad: &str| {
        format!(
            r#"{{"params": [{{"name": "w", "kind": "Weight", "shape": [2, 3], "values": [1,2,3,4,5,6]}}],
                "steps": [{{"lr": 0.1, "grads": {{{grad}}}}}]}}"#
        )
    };
    let e = replay_err(&one(r#""w": [1, 2, 3, 4, 5]"#), sgd);
    assert!(
        e.contains("bad.json: steps[0].grads.w: expected 6 values (shape [2, 3]), got 5"),
        "{e}"
    );
    let e = replay_err(&one(r#""v": [1, 2, 3, 4, 5, 6]"#), sgd);
    assert!(
        e.contains("steps[0].grads.v: no tensor of that name"),
        "{e}"
    );
    let e = replay_err(&one(""), sgd);
    assert!(e.contains("missing the gradient of `w`"), "{e}");
    let e = replay_err(
        r#"{"params": [{"name": "w", "kind": "Kernel", "shape": [1], "values": [1]}], "steps": []}"#,
        sgd,
    );
    assert!(
        e.contains("bad.json:1:") && e.contains("params[0].kind"),
        "{e}"
    );
    let e = replay_err(
        &one(r#""w": [1, 2, 3, 4, 5, 6]"#),
        r#"(optimizer: (default: (optimizer: (name: "lars", config: (variant: "keras")))))"#,
    );
    assert!(
        e.contains("optimizer.default.optimizer.config") && e.contains("keras"),
        "{e}"
    );
    let e = replay_err(
        &one(r#""w": [1, 2, 3, 4, 5, 6]"#),
        r#"(optimizer: (default: (optimizer: (name: "adam", config: (eps: -1e-8)))))"#,
    );
    assert!(
        e.contains("optimizer.default.optimizer.config.eps: expected a finite non-negative"),
        "{e}"
    );
    let e = replay_err(
        &one(r#""w": [1, 2, 3, 4, 5, 6]"#),
        "(schedule: Constant(lr: 0.1))",
    );
    assert!(e.contains("opt.ron has an `optimizer` section"), "{e}");
}

/// The MLPerf LARS preset's bias/batch-norm group puts the learning rate inside the momentum
/// buffer, as TensorFlow's LARSOptimizer does for every tensor (`apply_momentum(var, mom, 1.0,
/// grad * lr, momentum)`: v <- mu v + lr g, w <- w - v). By hand, mu = 0.929, w0 = 0.5, gradients
/// 0.2, -0.1, 0.4 at learning rates 0.1, 0.3, 0.2:
///   v1 = 0.1 * 0.2 = 0.02                         w1 = 0.48
///   v2 = 0.929 * 0.02 - 0.3 * 0.1 = -0.01142      w2 = 0.49142
///   v3 = 0.929 * -0.01142 + 0.2 * 0.4 = 0.06939082  w3 = 0.42202918
/// (the learning rate outside the buffer would give w2 = 0.48 - 0.3 * 0.0858 = 0.45426).
#[test]
fn mlperf_lars_preset_keeps_the_learning_rate_inside_the_bias_buffer() {
    use bigbatch_core::ParamKind;
    use bigbatch_core::params::ParamInfo;
    bigbatch_cli::link_plugins();
    let setup =
        compose_optimizer(&[root().join("configs/optimizers/lars_mlperf.ron")], &[]).unwrap();
    let params = vec![
        ParamInfo {
            path: "fc.weight".into(),
            kind: ParamKind::Weight,
            shape: vec![2],
        },
        ParamInfo {
            path: "fc.bias".into(),
            kind: ParamKind::Bias,
            shape: vec![1],
        },
    ];
    let mut opt = ModelOptimizer::new(&setup, params).unwrap();
    assert_eq!(opt.group_of(1), "bias_and_bn");
    let device = Device::flex();
    let mut values = vec![
        Tensor::<1>::from_floats([1.0, -2.0], &device),
        Tensor::<1>::from_floats([0.5], &device),
    ];
    let want = [0.48, 0.49142, 0.42202918];
    for (step, (lr, g)) in [(0.1, 0.2f32), (0.3, -0.1), (0.2, 0.4)]
        .into_iter()
        .enumerate()
    {
        let slots = values
            .iter()
            .zip([
                Tensor::<1>::from_floats([0.3, 0.1], &device),
                Tensor::<1>::from_floats([g], &device),
            ])
            .map(|(v, grad)| ParamSlot {
                value: v.clone(),
                grad,
            })
            .collect();
        values = opt.step(lr, slots);
        let b: Vec<f32> = values[1].clone().into_data().try_to_vec().unwrap();
        assert!(
            (f64::from(b[0]) - want[step]).abs() < 1e-6,
            "step {step}: {} vs {}",
            b[0],
            want[step]
        );
    }
}
