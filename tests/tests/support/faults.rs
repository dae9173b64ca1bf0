//! Faults and bad input, tried as a hostile user would: each is a clear error or an exact
//! recovery.

use super::large_batch::numbers;
use super::workloads::bert_args;
use super::{root, scratch, train};
use bigbatch_cli::run_cli;
use bigbatch_engine::run_dir::RunLock;
use std::path::Path;

fn lamb() -> String {
    std::fs::read_to_string(root().join("configs/optimizers/lamb.ron")).unwrap()
}

fn err(r: anyhow::Result<serde_json::Value>) -> String {
    format!("{:#}", r.unwrap_err())
}

/// A second run in a directory that a run holds is refused, naming the holder's process.
#[test]
fn a_run_directory_is_locked() {
    let dir = scratch("locked");
    let _held = RunLock::acquire(&dir.join("run")).unwrap();
    let e = err(train(&dir, &lamb(), &[]));
    assert!(
        e.contains("is in use by another run")
            && e.contains(&format!("process {}", std::process::id())),
        "{e}"
    );
}

/// `--resume` without `checkpoint.json` next to earlier records, and a fresh run over an earlier
/// one, are refused: nothing is discarded silently.
#[test]
fn earlier_records_are_never_discarded_silently() {
    let dir = scratch("no-pointer");
    train(&dir, &lamb(), &[]).unwrap();
    let e = err(train(&dir, &lamb(), &[]));
    assert!(
        e.contains("already holds a run") && e.contains("--resume"),
        "{e}"
    );
    std::fs::remove_file(dir.join("run/checkpoint.json")).unwrap();
    let e = err(train(&dir, &lamb(), &["--resume"]));
    assert!(
        e.contains("found no checkpoint.json") && e.contains("refusing to start over"),
        "{e}"
    );
    assert!(dir.join("run/metrics.jsonl").exists());
}

/// `--resume` with another optimizer setting or batch size names every differing field; a longer
/// budget is allowed.
#[test]
fn resume_refuses_a_different_config() {
    let dir = scratch("resume-config");
    train(&dir, &lamb(), &["--set", "train.eval_every=2"]).unwrap();
    let e = err(train(
        &dir,
        &lamb(),
        &[
            "--set",
            "train.batch_size=64",
            "--set",
            "optimizer.default.weight_decay=0.5",
            "--resume",
        ],
    ));
    assert!(
        e.contains("train.batch_size: 32 -> 64")
            && e.contains("optimizer.default.weight_decay: 0.01 -> 0.5")
            && e.contains("only train.steps"),
        "{e}"
    );
    let s = train(
        &dir,
        &lamb(),
        &[
            "--set",
            "train.eval_every=2",
            "--set",
            "train.steps=4",
            "--resume",
        ],
    )
    .unwrap();
    assert_eq!(s["steps"], 4);
}

/// A torn last line in metrics.jsonl (a write cut short) is dropped on resume, and the resumed
/// run still gives the numbers of an uninterrupted one.
#[test]
fn a_torn_metrics_line_does_not_block_resume() {
    let budget = |steps: &'static str| ["--set", steps, "--set", "train.eval_every=2"];
    let straight = scratch("torn-straight");
    train(&straight, &lamb(), &budget("train.steps=4")).unwrap();
    let dir = scratch("torn");
    train(&dir, &lamb(), &budget("train.steps=2")).unwrap();
    let metrics = dir.join("run/metrics.jsonl");
    let mut text = std::fs::read_to_string(&metrics).unwrap();
    text.push_str("{\"step\": 2, \"loss\": 2.30");
    std::fs::write(&metrics, text).unwrap();
    let mut args = budget("train.steps=4").to_vec();
    args.push("--resume");
    train(&dir, &lamb(), &args).unwrap();
    assert_eq!(
        numbers(&straight.join("run/metrics.jsonl")),
        numbers(&metrics)
    );
}

/// A corrupt model file in the newest checkpoint is detected by its checksum and the run resumes
/// from the checkpoint before it, giving the numbers of an uninterrupted run.
#[test]
fn a_corrupt_checkpoint_falls_back_to_the_previous_one() {
    let budget = |steps: &'static str| ["--set", steps, "--set", "train.eval_every=1"];
    let straight = scratch("corrupt-straight");
    let s = train(&straight, &lamb(), &budget("train.steps=4")).unwrap();
    let dir = scratch("corrupt");
    train(&dir, &lamb(), &budget("train.steps=2")).unwrap();
    let pointer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("run/checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(pointer["step"], 2);
    assert_eq!(pointer["previous"]["step"], 1);
    let model = dir
        .join("run")
        .join(pointer["dir"].as_str().unwrap())
        .join("model.bpk");
    let mut bytes = std::fs::read(&model).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n - 200..n - 100] {
        *b ^= 0x5a;
    }
    std::fs::write(&model, bytes).unwrap();
    let mut args = budget("train.steps=4").to_vec();
    args.push("--resume");
    let r = train(&dir, &lamb(), &args).unwrap();
    assert_eq!(s["final_loss"], r["final_loss"]);
    assert_eq!(
        numbers(&straight.join("run/metrics.jsonl")),
        numbers(&dir.join("run/metrics.jsonl"))
    );
    // Only the two newest checkpoints are kept.
    let kept = std::fs::read_dir(dir.join("run"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("checkpoint-")
        })
        .count();
    assert_eq!(kept, 2);
}

/// Settings that would record NaN or climb the loss are refused before training.
#[test]
fn meaningless_settings_are_refused() {
    let dir = scratch("meaningless");
    let e = err(train(
        &dir,
        &lamb(),
        &["--set", "train.train_eval_examples=0"],
    ));
    assert!(e.contains("train.train_eval_examples"), "{e}");
    let e = err(train(&dir, &lamb(), &["--set", "schedule.peak=-0.1"]));
    assert!(
        e.contains("schedule.peak: expected a finite non-negative learning rate"),
        "{e}"
    );
    let e = err(train(
        &dir,
        &lamb(),
        &["--set", "optimizer.groups.no_decay.lr_scale=-1"],
    ));
    assert!(
        e.contains("lr_scale: expected a finite non-negative number"),
        "{e}"
    );
}

fn bert_numbers(out: &Path) -> Vec<serde_json::Value> {
    numbers(&out.join("metrics.jsonl"))
}

/// BERT with dropout: a run stopped at step 2 and resumed to 4 gives exactly the numbers of a
/// straight 4-step run (dropout masks are keyed by seed, step, site, example and element), also
/// when the resumed part is cut into micro-batches.
#[test]
fn bert_with_dropout_resumes_bit_identically() {
    let dir = scratch("bert-dropout-resume");
    let args = |out: &Path, extra: &[&str]| {
        let mut all = vec!["--set", "model.dropout=0.3"];
        all.extend_from_slice(extra);
        bert_args("bert-tiny.ron", out, 32, 5, &all)
    };
    let straight = dir.join("straight");
    run_cli(args(&straight, &[])).unwrap();
    let part = dir.join("part");
    run_cli(args(&part, &["--set", "train.steps=2"])).unwrap();
    run_cli(args(&part, &["--resume"])).unwrap();
    assert_eq!(bert_numbers(&straight), bert_numbers(&part));
    // Resumed with another split (4 micro-batches of 8), it continues the same trajectory: the
    // masks do not depend on the split (f32 tolerance: the sums run in another order).
    let resplit = dir.join("resplit");
    run_cli(args(&resplit, &["--set", "train.steps=2"])).unwrap();
    run_cli(args(
        &resplit,
        &["--resume", "--set", "train.micro_batch_size=8"],
    ))
    .unwrap();
    let (a, b) = (bert_numbers(&straight), bert_numbers(&resplit));
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        if let (Some(p), Some(q)) = (x["loss"].as_f64(), y["loss"].as_f64()) {
            assert!((p - q).abs() <= 1e-4 * (1.0 + p.abs()), "{x} vs {y}");
        }
    }
    // Dropout is in effect: without it the numbers differ.
    let plain = dir.join("plain");
    run_cli(args(&plain, &["--set", "model.dropout=0.0"])).unwrap();
    assert_ne!(bert_numbers(&straight), bert_numbers(&plain));
}
