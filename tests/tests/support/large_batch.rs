//! Large batches: gradient accumulation over micro-batches and data parallelism across devices
//! give the one-piece step (parameters, batch-norm running statistics, losses), resume exactly,
//! and refuse splits that would change the mathematics.

use super::workloads::lines;
use super::{root, scratch, train};
use bigbatch_core::ModelOptimizer;
use bigbatch_engine::run_config::{ModelConfig, RunConfig};
use bigbatch_engine::step::{self, BatchSplit};
use bigbatch_engine::workload::{StepKey, Workload};
use bigbatch_workloads::classify::InMemoryClassification;
use bigbatch_workloads::pretrain::Pretraining;
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use std::path::Path;

/// Every float the module holds (trainable parameters and running statistics), in visiting order.
struct AllFloats(Vec<f32>);

impl ModuleVisitor for AllFloats {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let v: Vec<f32> = param
            .val()
            .into_data()
            .convert::<f32>()
            .try_to_vec()
            .unwrap();
        self.0.extend(v);
    }
}

/// Every float of the model in inference form (`valid()` folds the running statistics' pending
/// update in, as evaluation and checkpoints see them).
fn floats<M: Module>(model: &M) -> Vec<f32> {
    let mut all = AllFloats(Vec::new());
    model.valid().visit(&mut all);
    all.0
}

fn config(model: &str, optimizer: &str, sets: &[String]) -> RunConfig {
    let files = [
        root().join("configs/models").join(model),
        root().join("configs/optimizers").join(optimizer),
    ];
    RunConfig::compose(&files, sets).unwrap()
}

/// Runs `steps` optimizer steps of `workload` with the given split and returns the per-step
/// losses and every float of the final model.
pub(super) fn run_steps<W: Workload>(
    mut workload: W,
    config: &RunConfig,
    micro: usize,
    devices: Vec<Device>,
    steps: u64,
) -> (Vec<f64>, Vec<f32>) {
    let split = BatchSplit::new(config.train.batch_size, micro, devices).unwrap();
    let main = split.main_device().clone();
    let (mut model, params) =
        bigbatch_engine::train::init_model(&workload, config.train.seed, &main).unwrap();
    let mut optimizer = ModelOptimizer::new(&config.optimizer, params).unwrap();
    let mut losses = Vec::new();
    for s in 0..steps {
        let batch = workload.next_batch().unwrap();
        let lr = config.schedule.lr(s);
        let at = StepKey {
            seed: config.train.seed,
            step: s,
        };
        let (m, outcome) = step::step(model, &mut optimizer, &split, lr, false, |m, part, d| {
            workload.part_loss_at(m, &batch, part.range.clone(), d, at)
        })
        .unwrap();
        model = m;
        losses.push(outcome.loss);
    }
    (losses, floats(&model))
}

pub(super) fn assert_close(what: &str, a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs() / (1.0 + x.abs()))
        .fold(0.0f32, f32::max);
    assert!(worst < tol, "{what}: largest relative difference {worst}");
}

/// resnet-mini narrowed for tests (`--set` overrides of configs/models/resnet.ron): batch 32,
/// every width 4, ghost batch norm over 4. The WGPU tests' CLI runs use it too, so that WGPU
/// autotunes one set of kernel shapes.
pub(super) const SMALL_RESNET: [&str; 4] = [
    "train.batch_size=32",
    "model.widths=[4,4,4,4]",
    "model.stem_width=4",
    "model.bn.virtual_batch_size=4",
];

pub(super) fn resnet_config(extra: &[&str]) -> RunConfig {
    let mut sets: Vec<String> = SMALL_RESNET
        .iter()
        .chain(&["train.train_eval_examples=64"])
        .map(|s| s.to_string())
        .collect();
    sets.extend(extra.iter().map(|s| s.to_string()));
    config("resnet.ron", "lamb.ron", &sets)
}

pub(super) fn resnet_workload(config: &RunConfig) -> InMemoryClassification {
    let ModelConfig::ResNet(model) = &config.model else {
        unreachable!()
    };
    InMemoryClassification::new(model, &config.data.source, &config.train).unwrap()
}

/// ResNet (resnet-mini shape, ghost batch norm over 4 examples), LAMB: 3 steps of batch 32 in one
/// piece and as 4 micro-batches of 8 give the same losses, parameters and running statistics
/// (each micro-batch's virtual batches update their own rows).
#[test]
fn resnet_micro_batches_equal_one_piece() {
    let c = resnet_config(&[]);
    let cpu = || vec![Device::flex().autodiff()];
    let (l1, p1) = run_steps(resnet_workload(&c), &c, 32, cpu(), 3);
    let (l4, p4) = run_steps(resnet_workload(&c), &c, 8, cpu(), 3);
    assert_close(
        "losses",
        &l1.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        &l4.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        1e-5,
    );
    assert_close("parameters and running statistics", &p1, &p4, 1e-4);
    // The check can fail: another batch split of the batch-norm statistics (virtual batches of
    // 8 instead of 4) changes the result.
    let c8 = resnet_config(&["model.bn.virtual_batch_size=8"]);
    let (l8, _) = run_steps(resnet_workload(&c8), &c8, 8, cpu(), 3);
    assert!((l8[2] - l1[2]).abs() > 1e-4, "{l8:?} vs {l1:?}");
}

pub(super) fn bert_config() -> RunConfig {
    let sets: Vec<String> = [
        "data.source.Bert.documents=12",
        "data.source.Bert.eval_documents=2",
        "data.source.Bert.creation.max_seq_length=128",
        "data.source.Bert.creation.max_predictions_per_seq=20",
        "data.source.Bert.creation.short_seq_prob=0.5",
        "model.hidden=32",
        "model.heads=2",
        "model.layers=1",
        "model.intermediate=64",
        "model.dropout=0.0",
        "train.batch_size=16",
        "train.train_eval_examples=16",
        "schedule.total_steps=3",
        "schedule.warmup_steps=1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    config("bert-tiny.ron", "bert_adam.ron", &sets)
}

pub(super) fn bert_workload(config: &RunConfig) -> Pretraining {
    let ModelConfig::Bert(model) = &config.model else {
        unreachable!()
    };
    Pretraining::new(model, &config.data.source, &config.train).unwrap()
}

/// bert-tiny (1 layer, no dropout), BERT-Adam with global-norm clipping: 3 steps of batch 16 in one piece and as 4 micro-batches
/// of 4 whose numbers of masked positions differ give the same losses and parameters (the MLM
/// loss is divided by the whole batch's prediction count, not averaged per micro-batch).
#[test]
fn bert_micro_batches_with_uneven_predictions_equal_one_piece() {
    let c = bert_config();
    // The micro-batches of the first batch hold different numbers of predictions.
    let mut probe = bert_workload(&c);
    let batch = probe.next_batch().unwrap();
    let counts: Vec<usize> = batch
        .indices
        .chunks(4)
        .map(|chunk| probe.predictions(chunk))
        .collect();
    assert!(
        counts.iter().any(|&n| n != counts[0]),
        "micro-batch prediction counts {counts:?} should differ"
    );
    let cpu = || vec![Device::flex().autodiff()];
    let (l1, p1) = run_steps(bert_workload(&c), &c, 16, cpu(), 3);
    let (l4, p4) = run_steps(bert_workload(&c), &c, 4, cpu(), 3);
    assert_close(
        "losses",
        &l1.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        &l4.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        1e-5,
    );
    assert_close("parameters", &p1, &p4, 1e-4);
}

/// BERT with dropout 0.1 (bert-tiny narrowed to 1 layer): its masks are keyed by (seed, step,
/// site, the example's index in the batch, element), so 3 steps of batch 16 in one piece, as 4
/// micro-batches of 4 and shared by two device handles give the same losses and parameters.
/// The check can fail: without dropout the losses differ.
#[test]
fn bert_dropout_is_the_same_under_any_split() {
    let mut c = bert_config();
    let ModelConfig::Bert(model) = &mut c.model else {
        unreachable!()
    };
    model.dropout = 0.1;
    let cpu = || Device::flex().autodiff();
    let (l1, p1) = run_steps(bert_workload(&c), &c, 16, vec![cpu()], 3);
    let (l4, p4) = run_steps(bert_workload(&c), &c, 4, vec![cpu()], 3);
    let (l2, p2) = run_steps(bert_workload(&c), &c, 16, vec![cpu(), cpu()], 3);
    let f = |l: &[f64]| l.iter().map(|&x| x as f32).collect::<Vec<_>>();
    assert_close("losses, 4 micro-batches", &f(&l1), &f(&l4), 1e-5);
    assert_close("parameters, 4 micro-batches", &p1, &p4, 1e-4);
    assert_close("losses, two devices", &f(&l1), &f(&l2), 1e-5);
    assert_close("parameters, two devices", &p1, &p2, 1e-4);
    let (l0, _) = run_steps(
        bert_workload(&bert_config()),
        &bert_config(),
        16,
        vec![cpu()],
        3,
    );
    assert!(
        (l0[1] - l1[1]).abs() > 1e-4,
        "dropout in effect: {l0:?} vs {l1:?}"
    );
}

/// Each micro-batch of 16 shared by two devices (8 examples each, ghost batch norm over 4) gives
/// the parameters and running statistics of one device (the first) computing the batch of 32 as
/// micro-batches of 8, which equals the whole batch at once (the accumulation tests).
pub(super) fn assert_data_parallel_equals_one_device(devices: [Device; 2]) {
    let c = resnet_config(&[]);
    let main = devices[0].clone();
    let (l1, p1) = run_steps(resnet_workload(&c), &c, 8, vec![main], 3);
    let (l2, p2) = run_steps(resnet_workload(&c), &c, 16, devices.to_vec(), 3);
    assert_close(
        "losses",
        &l1.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        &l2.iter().map(|&x| x as f32).collect::<Vec<_>>(),
        1e-5,
    );
    assert_close("parameters and running statistics", &p1, &p2, 1e-4);
}

/// Two handles of the CPU device: the whole data-parallel path (replicas, per-device parts,
/// gradients moved to the main device and summed, each part updating the running statistics of
/// its own virtual batches). Two WGPU devices:
/// `wgpu::data_parallel_on_two_wgpu_devices`.
#[test]
fn data_parallel_equals_one_device() {
    assert_data_parallel_equals_one_device([Device::flex().autodiff(), Device::flex().autodiff()]);
}

/// The numbers of a metrics file: every line but the setup lines, without wall-clock fields.
pub fn numbers(path: &Path) -> Vec<serde_json::Value> {
    lines(path)
        .into_iter()
        .filter(|l| l.get("setup").is_none())
        .map(|mut l| {
            if let Some(o) = l.as_object_mut() {
                o.remove("examples_per_second");
            }
            l
        })
        .collect()
}

/// With accumulation (4 micro-batches of 8, ghost batch norm over 8), a run stopped at step 2
/// and resumed to 4 is bit-identical to a straight run; summary and metrics record the split
/// and the throughput.
#[test]
fn accumulated_run_resumes_bit_identically_and_records_the_split() {
    let lamb = std::fs::read_to_string(root().join("configs/optimizers/lamb.ron")).unwrap();
    let split = [
        "--set",
        "train.micro_batch_size=8",
        "--set",
        "model.bn.virtual_batch_size=8",
        "--set",
        "train.eval_every=2",
    ];
    let with = |steps: &'static str, resume: bool| {
        let mut v = split.to_vec();
        v.extend(["--set", steps]);
        if resume {
            v.push("--resume");
        }
        v
    };
    let straight_dir = scratch("accumulate-straight");
    let straight = train(&straight_dir, &lamb, &with("train.steps=4", false)).unwrap();
    let resumed_dir = scratch("accumulate-resumed");
    train(&resumed_dir, &lamb, &with("train.steps=2", false)).unwrap();
    let resumed = train(&resumed_dir, &lamb, &with("train.steps=4", true)).unwrap();
    for key in ["final_loss", "final_val_accuracy", "final_train_accuracy"] {
        assert_eq!(straight[key], resumed[key], "{key}");
    }
    let metrics = |d: &Path| numbers(&d.join("run/metrics.jsonl"));
    assert_eq!(metrics(&straight_dir), metrics(&resumed_dir));

    assert_eq!(straight["batch_size"], 32);
    assert_eq!(straight["micro_batch_size"], 8);
    assert_eq!(straight["devices"], serde_json::json!(["Cpu"]));
    assert!(straight["examples_per_second"].as_f64().unwrap() > 0.0);
    let all = lines(&straight_dir.join("run/metrics.jsonl"));
    let setup = all.iter().find_map(|l| l.get("setup")).unwrap();
    assert_eq!(setup["micro_batch_size"], 8);
    let step = all.iter().find(|l| l.get("loss").is_some()).unwrap();
    assert!(step["examples_per_second"].as_f64().unwrap() > 0.0);
}

/// Splits that would change the mathematics, and devices that are not there, are refused before
/// training with errors naming the fields.
#[test]
fn bad_splits_and_devices_are_clear_errors() {
    let lamb = std::fs::read_to_string(root().join("configs/optimizers/lamb.ron")).unwrap();
    let err = |extra: &[&str]| {
        format!(
            "{:#}",
            train(&scratch("bad-split"), &lamb, extra).unwrap_err()
        )
    };
    let e = err(&["--set", "train.micro_batch_size=12"]);
    assert!(
        e.contains("train.micro_batch_size: 12 does not divide train.batch_size 32"),
        "{e}"
    );
    // Whole-batch statistics with micro-batches: refused, with the fix.
    let e = err(&["--set", "train.micro_batch_size=8"]);
    assert!(
        e.contains("virtual_batch_size is None")
            && e.contains("per micro-batch")
            && e.contains("Set model.bn.virtual_batch_size"),
        "{e}"
    );
    // A virtual batch that does not fit the micro-batch.
    let e = err(&[
        "--set",
        "train.micro_batch_size=8",
        "--set",
        "model.bn.virtual_batch_size=16",
    ]);
    assert!(
        e.contains("model.bn.virtual_batch_size: 16 does not divide the 8 examples"),
        "{e}"
    );
    // Devices that do not share the micro-batch evenly.
    let e = err(&[
        "--set",
        "model.bn.virtual_batch_size=1",
        "--set",
        "train.micro_batch_size=16",
        "--devices",
        "0,1,2",
    ]);
    assert!(e.contains("3 devices do not share"), "{e}");
    // The CPU backend has one device.
    let e = err(&["--set", "model.bn.virtual_batch_size=8", "--devices", "0,1"]);
    assert!(
        e.contains("the cpu backend (burn's flex) has one device, 0"),
        "{e}"
    );
}
