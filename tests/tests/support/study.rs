//! Tuning studies end to end on the CPU preset with a tiny budget: trials, a diverged trial that
//! does not count, a killed trial that reruns, reruns over seeds, the report, bad study files.

use super::{root, scratch};
use bigbatch_cli::run_cli;
use bigbatch_cli::study::{Study, TrialResult};
use std::path::Path;

fn write_study(dir: &Path, search_extra: &str) -> std::path::PathBuf {
    let r = root();
    let path = dir.join("tiny.ron");
    std::fs::write(
        &path,
        format!(
            r#"(
    base: ["{}", "{}"],
    seed: 5,
    metric: FinalValAccuracy,
    target: 0.12,
    max_attempts: 12,
    search: {{
        "schedule.peak": Discrete([0.01, 1e30]),
        "optimizer.default.weight_decay": Log(1e-4, 1e-2),
        "model.widths": Fixed([2, 2, 2, 2]),
        "train.steps": Fixed(3),
        "train.batch_size": Fixed(16),
        "train.eval_every": Fixed(1),
        "train.train_eval_examples": Fixed(32),
        "schedule.warmup_steps": Fixed(1),
        "schedule.total_steps": Fixed(3),
        {search_extra}
    }},
)"#,
            r.join("configs/models/resnet.ron").display(),
            r.join("configs/optimizers/lamb.ron").display(),
        ),
    )
    .unwrap();
    path
}

fn cli(args: &[&str]) -> anyhow::Result<()> {
    let mut all = vec!["bigbatch"];
    all.extend_from_slice(args);
    run_cli(all)
}

#[test]
fn study_runs_resumes_reruns_and_reports() {
    let dir = scratch("study");
    let study_path = write_study(&dir, "");
    let study_dir = dir.join("study-dir");
    let s = study_path.to_str().unwrap();
    let d = study_dir.to_str().unwrap();

    cli(&[
        "study",
        "run",
        s,
        "--dir",
        d,
        "--trials",
        "4",
        "--workers",
        "2",
    ])
    .unwrap();
    let study = Study::load(&study_path, Some(study_dir.clone())).unwrap();
    let trials = study.trials().unwrap();
    let feasible: Vec<&TrialResult> = trials.values().filter(|r| r.feasible()).collect();
    let diverged: Vec<&TrialResult> = trials.values().filter(|r| !r.feasible()).collect();
    assert_eq!(feasible.len(), 4, "{trials:?}");
    assert!(
        !diverged.is_empty(),
        "the 1e30 learning rate must diverge in some trial"
    );
    for r in &diverged {
        assert_eq!(r.point["schedule.peak"], serde_json::json!(1e30));
        assert!(r.summary.reason.is_some());
    }
    for r in &feasible {
        assert_eq!(r.point["schedule.peak"], serde_json::json!(0.01));
    }
    // Trial points depend on the index alone: a fresh computation agrees with what ran.
    for (i, r) in &trials {
        assert_eq!(study.trial_config(*i).unwrap().1, r.point);
    }

    // A killed worker leaves a run directory without a result; a lost result is recomputed too.
    let victim = feasible[1].index;
    let victim_json = study_dir.join(format!("trials/{victim:05}.json"));
    let before = std::fs::read_to_string(&victim_json).unwrap();
    std::fs::remove_file(&victim_json).unwrap();
    assert_eq!(study.unfinished(), vec![victim]);
    let first_done = feasible[0].index;
    let first_json = study_dir.join(format!("trials/{first_done:05}.json"));
    let untouched = std::fs::metadata(&first_json).unwrap().modified().unwrap();
    cli(&["study", "run", s, "--dir", d, "--trials", "4"]).unwrap();
    assert!(study.unfinished().is_empty());
    let after: TrialResult =
        serde_json::from_str(&std::fs::read_to_string(&victim_json).unwrap()).unwrap();
    let before: TrialResult = serde_json::from_str(&before).unwrap();
    assert_eq!(
        after.metric, before.metric,
        "a rerun trial is deterministic"
    );
    assert_eq!(
        std::fs::metadata(&first_json).unwrap().modified().unwrap(),
        untouched,
        "finished trials are kept"
    );

    cli(&["study", "status", s, "--dir", d]).unwrap();
    cli(&["study", "trial", s, "--dir", d, "--index", "0"]).unwrap();

    cli(&["study", "rerun", s, "--dir", d, "--seeds", "3"]).unwrap();
    let stats = study.rerun_stats().unwrap();
    assert_eq!(stats.seeds, 3);
    let val = stats.val_accuracy.clone().unwrap();
    assert!(val.min <= val.q1 && val.q1 <= val.median && val.median <= val.q3 && val.q3 <= val.max);
    assert!(stats.fraction_reaching_target.is_some());

    let slurm = dir.join("slurm.sh");
    cli(&[
        "study",
        "slurm",
        s,
        "--dir",
        d,
        "--attempts",
        "12",
        "--sbatch",
        "--gres=gpu:1",
        "--out",
        slurm.to_str().unwrap(),
    ])
    .unwrap();
    let script = std::fs::read_to_string(&slurm).unwrap();
    assert!(script.contains("#SBATCH --array=0-11"), "{script}");
    assert!(script.contains("#SBATCH --gres=gpu:1"), "{script}");
    assert!(script.contains("study trial") && script.contains("$SLURM_ARRAY_TASK_ID"));

    let report_dir = dir.join("report");
    cli(&[
        "report",
        s,
        "--dir",
        d,
        "--out",
        report_dir.to_str().unwrap(),
    ])
    .unwrap();
    let md = std::fs::read_to_string(report_dir.join("report.md")).unwrap();
    assert!(
        md.contains("## Protocol") && md.contains("| tiny | lamb |"),
        "{md}"
    );
    assert!(
        md.contains("`schedule.peak` | Discrete([0.01, 1e+30])"),
        "{md}"
    );
    for chart in ["schedules", "accuracy_over_seeds", "training_curves"] {
        for ext in ["svg", "png"] {
            let p = report_dir.join(format!("{chart}.{ext}"));
            assert!(
                std::fs::metadata(&p)
                    .map(|m| m.len() > 1000)
                    .unwrap_or(false),
                "{}",
                p.display()
            );
        }
    }
    let csv = std::fs::read_to_string(report_dir.join("report.csv")).unwrap();
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(
        csv.lines().nth(1).unwrap().starts_with("tiny,lamb,3,16,"),
        "{csv}"
    );
}

#[test]
fn bad_study_files_name_the_field() {
    let dir = scratch("bad-study");
    let err = |extra: &str| {
        let p = write_study(&dir, extra);
        Study::load(&p, Some(dir.join("d")))
            .err()
            .map(|e| format!("{e:#}"))
            .unwrap_or_default()
    };
    let e = err(r#""schedule.nope": Linear(0.0, 1.0),"#);
    assert!(
        e.contains("search") && e.contains("unknown field `nope`"),
        "{e}"
    );
    let e = err(r#""schedule.eta_final": Log(1.0, 0.1),"#);
    assert!(
        e.contains(r#"search."schedule.eta_final": Log(min, max) needs 0 < min < max"#),
        "{e}"
    );
    let e = err(r#""train.seed": Discrete([]),"#);
    assert!(
        e.contains(r#"search."train.seed": Discrete([...]) needs at least one value"#),
        "{e}"
    );
    let e = err(r#""train.batch_size": Fixed("big"),"#);
    assert!(e.contains("train.batch_size"), "{e}");
}

#[test]
fn shipped_study_files_load() {
    let dir = root().join("configs/studies");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ron") {
            Study::load(&path, Some(scratch("shipped-study")))
                .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
            n += 1;
        }
    }
    assert!(n >= 2);
}
