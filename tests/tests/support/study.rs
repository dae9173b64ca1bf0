//! Tuning studies end to end on the CPU preset with a tiny budget: trials, a diverged trial that
//! does not count, a killed trial that reruns, reruns over seeds, the report, bad study files.

use super::{cli, root, scratch};
use bigbatch_studies::study::{Study, TrialResult};
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
    // A best point near an edge of its range is flagged by status (and the report).
    let best = study.best().unwrap().unwrap();
    let near = bigbatch_core::study::near_edges(&study.file.search, &best.point, 0.05);
    let status = study.status_text().unwrap();
    assert_eq!(status.contains("warning:"), !near.is_empty(), "{status}");
    for (key, _) in &near {
        assert!(
            status.contains(&format!("the best trial's {key} =")),
            "{status}"
        );
    }
    let best_json = study_dir.join(format!("trials/{:05}.json", best.index));
    let original = std::fs::read_to_string(&best_json).unwrap();
    let mut at_edge = best.clone();
    at_edge.point.insert(
        "optimizer.default.weight_decay".into(),
        serde_json::json!(1.01e-4),
    );
    std::fs::write(&best_json, serde_json::to_string(&at_edge).unwrap()).unwrap();
    let status = study.status_text().unwrap();
    assert!(
        status.contains("warning: the best trial's optimizer.default.weight_decay = 0.000101 lies at 0% of its range (Log(0.0001, 0.01)): near the lower edge"),
        "{status}"
    );
    std::fs::write(&best_json, original).unwrap();
    cli(&["study", "trial", s, "--dir", d, "--index", "0"]).unwrap();

    cli(&["study", "rerun", s, "--dir", d, "--seeds", "3"]).unwrap();
    let stats = study.rerun_stats().unwrap();
    assert_eq!(stats.seeds, 3);
    let val = stats.val_accuracy.clone().unwrap();
    assert!(val.min <= val.q1 && val.q1 <= val.median && val.median <= val.q3 && val.q3 <= val.max);
    assert!(stats.fraction_reaching_target.is_some());
    let steps = stats.steps_to_target.clone().unwrap();
    assert_eq!(steps.seeds, 3);
    assert_eq!(steps.median.is_none(), steps.reached < 2, "{steps:?}");
    reruns_use_fresh_seeds_and_follow_the_best_point(&study, s, d);

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
    // Only the indices below 12 without a result.
    let done = study.trials().unwrap();
    let missing: Vec<u64> = (0..12).filter(|i| !done.contains_key(i)).collect();
    assert!(!missing.is_empty() && missing.len() < 12);
    assert!(
        script.contains(&format!(
            "#SBATCH --array={}\n",
            bigbatch_studies::slurm::array_ranges(&missing)
        )),
        "{script}"
    );
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
    // Diagnostics are recorded at every evaluation by default: the best point's are in the report.
    assert!(
        md.contains("## Inside training (best point)") && md.contains("| tiny | weights |"),
        "{md}"
    );
    for chart in [
        "schedules",
        "accuracy_over_seeds",
        "training_curves",
        "diagnostics-tiny-update_ratio",
        "diagnostics-global_grad_norm",
        "diagnostics-by_kind-update_ratio",
    ] {
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
    // Tidy: one row per study and metric, every row the header's width.
    let csv = std::fs::read_to_string(report_dir.join("report.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert_eq!(header, bigbatch_studies::report::CSV_HEADER);
    let metrics: Vec<&str> = csv
        .lines()
        .skip(1)
        .map(|l| {
            assert_eq!(l.split(',').count(), header.split(',').count(), "{l}");
            assert!(l.starts_with("tiny,lamb,3,16,"), "{csv}");
            l.split(',').nth(8).unwrap()
        })
        .collect();
    assert_eq!(
        metrics,
        [
            "val_accuracy",
            "train_accuracy",
            "fraction_reaching_target",
            "steps_to_target"
        ],
        "{csv}"
    );
    assert!(
        report_dir.join("tuning_budget.png").is_file()
            && report_dir.join("train_accuracy_over_seeds.png").is_file()
            && report_dir.join("schedules_normalised.png").is_file()
    );
}

/// Reruns take seeds from 1000 up (none a trial used), record the trial they reran, add seeds
/// when asked for more, and are never mixed with the reruns of a new best point.
fn reruns_use_fresh_seeds_and_follow_the_best_point(study: &Study, s: &str, d: &str) {
    let best = study.best().unwrap().unwrap();
    let fresh = study.fresh_reruns().unwrap();
    assert_eq!(
        fresh.keys().copied().collect::<Vec<_>>(),
        [1000, 1001, 1002]
    );
    for r in fresh.values() {
        assert_eq!((r.index, &r.point), (best.index, &best.point));
    }
    let first = study.rerun_dir(1000).with_extension("json");
    let written = std::fs::metadata(&first).unwrap().modified().unwrap();
    cli(&["study", "rerun", s, "--dir", d, "--seeds", "5"]).unwrap();
    let fresh = study.fresh_reruns().unwrap();
    assert_eq!(
        fresh.keys().copied().collect::<Vec<_>>(),
        [1000, 1001, 1002, 1003, 1004]
    );
    assert_eq!(
        std::fs::metadata(&first).unwrap().modified().unwrap(),
        written,
        "--seeds 5 after --seeds 3 adds two seeds and keeps the three"
    );

    // The best point changes (as more trials or a resumed search would do it): another feasible
    // trial now has the highest metric.
    let other = study
        .trials()
        .unwrap()
        .into_values()
        .find(|r| r.feasible() && r.index != best.index)
        .unwrap();
    let path = study.dir.join(format!("trials/{:05}.json", other.index));
    let mut edited = other.clone();
    edited.metric = Some(0.99);
    std::fs::write(&path, serde_json::to_string_pretty(&edited).unwrap()).unwrap();
    assert_eq!(study.best().unwrap().unwrap().index, other.index);
    // Before any rerun of the new point nothing counts: the old reruns are not its seeds.
    assert!(study.fresh_reruns().unwrap().is_empty());
    assert_eq!(study.rerun_stats().unwrap().seeds, 0);
    cli(&["study", "rerun", s, "--dir", d, "--seeds", "2"]).unwrap();
    let fresh = study.fresh_reruns().unwrap();
    assert_eq!(fresh.keys().copied().collect::<Vec<_>>(), [1000, 1001]);
    for r in fresh.values() {
        assert_eq!((r.index, &r.point), (other.index, &other.point));
    }
    assert_eq!(
        study.reruns().unwrap().len(),
        2,
        "only the new point's reruns remain"
    );
    let aside = study
        .dir
        .join(format!("superseded-reruns/trial-{:05}", best.index));
    for seed in 1000..1005 {
        let old: TrialResult = serde_json::from_str(
            &std::fs::read_to_string(aside.join(format!("seed-{seed}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(old.index, best.index);
        assert!(aside.join(format!("seed-{seed}")).is_dir());
    }
    // Back to the original results: the first point's reruns are run again (deterministic) and
    // the second point's go aside beside the first's.
    std::fs::write(&path, serde_json::to_string_pretty(&other).unwrap()).unwrap();
    cli(&["study", "rerun", s, "--dir", d, "--seeds", "3"]).unwrap();
    let again = study.fresh_reruns().unwrap();
    assert_eq!(again.len(), 3);
    for (seed, r) in &again {
        let old: TrialResult = serde_json::from_str(
            &std::fs::read_to_string(aside.join(format!("seed-{seed}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(r.metric, old.metric, "seed {seed}");
    }
    assert!(
        study
            .dir
            .join(format!(
                "superseded-reruns/trial-{:05}/seed-1000.json",
                other.index
            ))
            .is_file()
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
    // configs/studies: the CPU studies; configs/studies/paper: every search space of the paper's
    // appendix (Tables 7, 9-24). Each loads, and its first trials compose into valid run configs.
    let mut n = 0;
    let study_dir = scratch("shipped-study");
    for dir in ["configs/studies", "configs/studies/paper"] {
        for entry in std::fs::read_dir(root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "ron") {
                let study = Study::load(&path, Some(study_dir.to_path_buf()))
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                for i in 0..3 {
                    study
                        .trial_config(i)
                        .unwrap_or_else(|e| panic!("{} trial {i}: {e:#}", path.display()));
                }
                n += 1;
            }
        }
    }
    assert!(n >= 36, "{n} study files");
}

#[test]
fn shipped_run_configs_compose() {
    for files in [
        &["models/resnet.ron", "optimizers/lamb.ron"][..],
        &["models/resnet50-imagenet.ron", "optimizers/lars_mlperf.ron"],
        &[
            "models/resnet50-imagenet.ron",
            "optimizers/nesterov_config_a.ron",
        ],
        &[
            "models/resnet50-imagenet.ron",
            "optimizers/nesterov_config_b.ron",
        ],
        &["models/bert-tiny.ron", "optimizers/bert_adam.ron"],
        &["models/bert-tiny-phase2.ron", "optimizers/bert_adam.ron"],
        &[
            "models/bert-large-phase1.ron",
            "optimizers/bert_adam_table8_phase1.ron",
        ],
        &[
            "models/bert-large-phase2.ron",
            "optimizers/bert_adam_table8_phase2.ron",
        ],
        &[
            "models/bert-large-phase1.ron",
            "optimizers/bert_adam_you_phase1.ron",
        ],
        &[
            "models/bert-large-phase2.ron",
            "optimizers/bert_adam_you_phase2.ron",
        ],
    ] {
        let paths: Vec<_> = files
            .iter()
            .map(|f| root().join("configs").join(f))
            .collect();
        let config = bigbatch_engine::run_config::RunConfig::compose(&paths, &[])
            .unwrap_or_else(|e| panic!("{files:?}: {e:#}"));
        if files[1].contains("config_a") {
            // The file's `set` list reaches into the model and train sections.
            let json = serde_json::to_value(&config).unwrap();
            assert_eq!(json["model"]["ResNet"]["bn"]["gamma0"], 0.4138);
            assert_eq!(json["model"]["ResNet"]["bn"]["momentum"], 0.94);
            assert_eq!(json["train"]["label_smoothing"], 0.15);
        }
    }
}

/// The worker process `killed_worker_process_resumes` starts and kills: runs trial 0 of the study
/// named by `BIGBATCH_KILL_STUDY` / `BIGBATCH_KILL_DIR`. Ignored: only meaningful as that child.
#[test]
#[ignore]
fn study_worker_process() {
    let (Ok(study), Ok(dir)) = (
        std::env::var("BIGBATCH_KILL_STUDY"),
        std::env::var("BIGBATCH_KILL_DIR"),
    ) else {
        panic!("run by killed_worker_process_resumes, which sets BIGBATCH_KILL_STUDY/DIR");
    };
    cli(&["study", "trial", &study, "--dir", &dir, "--index", "0"]).unwrap();
}

/// A real `kill -9` of a worker process in the middle of a trial: the trial has no result, the
/// study reports it unfinished, and running it again continues from its checkpoint to the end.
#[test]
fn killed_worker_process_resumes() {
    let dir = scratch("kill9");
    let path = write_study(&dir, "");
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Discrete([0.01, 1e30])", "Fixed(0.01)")
        .replace("\"train.steps\": Fixed(3)", "\"train.steps\": Fixed(200)")
        .replace(
            "\"schedule.total_steps\": Fixed(3)",
            "\"schedule.total_steps\": Fixed(200)",
        )
        .replace(
            "\"train.eval_every\": Fixed(1)",
            "\"train.eval_every\": Fixed(4)",
        );
    std::fs::write(&path, text).unwrap();
    let study_dir = dir.join("study-dir");
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "study::study_worker_process",
            "--exact",
            "--ignored",
            "--nocapture",
        ])
        .env("BIGBATCH_KILL_STUDY", &path)
        .env("BIGBATCH_KILL_DIR", &study_dir)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pointer = study_dir.join("trials/00000/checkpoint.json");
    let started = std::time::Instant::now();
    while !pointer.exists() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the worker ended before its first checkpoint"
        );
        assert!(
            started.elapsed().as_secs() < 300,
            "no checkpoint after 300 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let study = Study::load(&path, Some(study_dir.clone())).unwrap();
    assert!(
        study.trials().unwrap().is_empty(),
        "a killed trial has no result"
    );
    assert_eq!(study.unfinished(), vec![0]);
    let killed_at: u64 =
        serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(&pointer).unwrap())
            .unwrap()["step"]
            .as_u64()
            .unwrap();
    assert!(killed_at < 200);
    cli(&[
        "study",
        "trial",
        path.to_str().unwrap(),
        "--dir",
        study_dir.to_str().unwrap(),
        "--index",
        "0",
    ])
    .unwrap();
    let trials = study.trials().unwrap();
    assert_eq!(trials[&0].summary.steps, 200);
    assert!(trials[&0].feasible());
    // Every step appears exactly once in the metrics: nothing repeated, nothing lost.
    let metrics = std::fs::read_to_string(study_dir.join("trials/00000/metrics.jsonl")).unwrap();
    let steps: Vec<u64> = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (0..200).collect::<Vec<_>>());
}

/// A study whose search space changed is refused in the directory of the old one (its trials
/// hold points outside the new space); `--force` moves the old trials aside.
#[test]
fn a_changed_search_space_is_refused_in_the_old_directory() {
    let dir = scratch("study-changed");
    let path = write_study(&dir, "");
    let (s, d) = (path.to_str().unwrap(), dir.join("d"));
    let d = d.to_str().unwrap();
    cli(&["study", "trial", s, "--dir", d, "--index", "0"]).unwrap();
    // The same study again is fine.
    cli(&["study", "status", s, "--dir", d]).unwrap();
    // The changed study also fixes gradient accumulation (2 micro-batches of 8): studies run
    // unchanged with it.
    let changed = write_study(
        &dir,
        r#""optimizer.default.optimizer.config.beta1": Linear(0.8, 0.95),
        "train.micro_batch_size": Fixed(8),
        "model.bn.virtual_batch_size": Fixed(4),"#,
    );
    let trial_1 = [
        "study",
        "trial",
        changed.to_str().unwrap(),
        "--dir",
        d,
        "--index",
        "1",
    ];
    let e = format!("{:#}", cli(&trial_1).unwrap_err());
    assert!(
        e.contains("holds trials of a different study") && e.contains("--force"),
        "{e}"
    );
    cli(&[&trial_1[..], &["--force"]].concat()).unwrap();
    let study = Study::load(&changed, Some(dir.join("d"))).unwrap();
    let trials = study.trials().unwrap();
    assert_eq!(trials.keys().copied().collect::<Vec<_>>(), vec![1]);
    assert_eq!(trials[&1].summary.micro_batch_size, 8);
    assert_eq!(trials[&1].summary.batch_size, 16);
    let aside: Vec<_> = std::fs::read_dir(dir.join("d"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("superseded-"))
        .collect();
    assert_eq!(aside.len(), 1);
    assert!(aside[0].path().join("trials/00000.json").exists());
}

/// Two processes on one study share its trials and reruns. The test holds a trial's run lock
/// (and then a rerun's) as another process running it would: `study run` leaves that trial to
/// the holder and counts it as in flight (trials 0 and 2, not a fourth), waits for it, and runs
/// it itself once the lock is free (the holder stopped without a result); `study rerun` does the
/// same with a seed.
#[test]
fn trials_and_reruns_held_by_another_process_are_waited_for() {
    use bigbatch_engine::run_dir::RunLock;
    use std::time::{Duration, Instant};
    let dir = scratch("study-shared");
    let path = write_study(&dir, "");
    // No diverging point, so every trial counts.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("Discrete([0.01, 1e30])", "Log(0.001, 0.01)");
    std::fs::write(&path, text).unwrap();
    let d = dir.join("d");
    let study = Study::load(&path, Some(d.clone())).unwrap();
    let (s, ds) = (path.display().to_string(), d.display().to_string());
    let wait_until = |what: &str, done: &dyn Fn() -> bool| {
        let started = Instant::now();
        while !done() {
            assert!(started.elapsed() < Duration::from_secs(300), "{what}");
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    let finished = |study: &Study| -> Vec<u64> { study.trials().unwrap().into_keys().collect() };

    let held = RunLock::acquire(&study.trial_run_dir(1)).unwrap();
    let runner = {
        let (s, ds) = (s.clone(), ds.clone());
        std::thread::spawn(move || cli(&["study", "run", &s, "--dir", &ds, "--trials", "3"]))
    };
    wait_until("trials 0 and 2", &|| finished(&study) == [0, 2]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(!runner.is_finished(), "study run should wait for trial 1");
    assert_eq!(
        finished(&study),
        [0, 2],
        "no trial beyond the three asked for"
    );
    drop(held);
    runner.join().unwrap().unwrap();
    assert_eq!(finished(&study), [0, 1, 2]);

    let held = RunLock::acquire(&study.rerun_dir(1000)).unwrap();
    let runner = {
        let (s, ds) = (s.clone(), ds.clone());
        std::thread::spawn(move || cli(&["study", "rerun", &s, "--dir", &ds, "--seeds", "2"]))
    };
    let fresh = |study: &Study| -> Vec<u64> { study.fresh_reruns().unwrap().into_keys().collect() };
    wait_until("seed 1001", &|| fresh(&study) == [1001]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !runner.is_finished(),
        "study rerun should wait for seed 1000"
    );
    drop(held);
    runner.join().unwrap().unwrap();
    assert_eq!(fresh(&study), [1000, 1001]);
}
