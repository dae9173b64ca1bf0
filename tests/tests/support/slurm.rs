//! Leaving one machine: a run stopped by SIGTERM checkpoints and resumes exactly; a trial another
//! process holds is skipped; `study slurm` scripts; and a tiny study through a real Slurm
//! (Debian's `slurmctld` and `slurmd` started here on a generated configuration): the array, a
//! task stopped with `scancel --signal=TERM` mid-run and requeued, the chained rerun and report,
//! the same numbers as the study run locally.

use super::{cli, root, scratch};
use bigbatch_studies::study::Study;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `bigbatch` binary of this build (tests/bin/bigbatch.rs).
fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_bigbatch-test-cli"))
}

/// Lines of `metrics.jsonl` that are training steps.
fn steps_done(metrics: &Path) -> usize {
    std::fs::read_to_string(metrics)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("\"loss\""))
        .count()
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < limit, "{what}: not after {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn signal(pid: u32, name: &str) {
    let ok = Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill -{name} {pid}");
}

const LONG_TINY: [&str; 12] = [
    "--set",
    "train.steps=300",
    "--set",
    "train.batch_size=16",
    "--set",
    "train.eval_every=150",
    "--set",
    "train.train_eval_examples=32",
    "--set",
    "model.widths=[2,2,2,2]",
    "--set",
    "model.stem_width=2",
];

/// SIGTERM in the middle of `bigbatch train`: the step in flight finishes, a checkpoint is
/// written at it, the summary says `interrupted`, the exit code is 75; `--resume` then ends
/// exactly where an uninterrupted run does.
#[test]
fn sigterm_checkpoints_and_resume_is_exact() {
    let dir = scratch("sigterm");
    let model = root().join("configs/models/resnet.ron");
    let opt = root().join("configs/optimizers/nesterov.ron");
    let args = |out: &Path| -> Vec<String> {
        let mut a: Vec<String> = [
            "train",
            "--no-progress",
            "--config",
            model.to_str().unwrap(),
            "--config",
            opt.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        a.extend(LONG_TINY.iter().map(|s| s.to_string()));
        a
    };
    let stopped = dir.join("stopped");
    let mut child = Command::new(binary())
        .args(args(&stopped))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = stopped.join("metrics.jsonl");
    wait_for("30 steps", Duration::from_secs(300), || {
        steps_done(&metrics) >= 30
    });
    signal(child.id(), "TERM");
    let code = child.wait().unwrap().code();
    assert_eq!(code, Some(75), "the exit code of an interrupted run");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stopped.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["status"], "interrupted");
    let at = summary["steps"].as_u64().unwrap();
    assert!((30..300).contains(&at), "{at}");
    let pointer: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(stopped.join("checkpoint.json")).unwrap())
            .unwrap();
    assert_eq!(
        pointer["step"].as_u64(),
        Some(at),
        "a checkpoint at the step it stopped"
    );
    assert_eq!(
        steps_done(&metrics) as u64,
        at,
        "every finished step recorded"
    );

    let run =
        |a: Vec<String>| bigbatch_cli::run_cli(std::iter::once("bigbatch".to_string()).chain(a));
    let mut resume = args(&stopped);
    resume.push("--resume".into());
    run(resume).unwrap();
    let straight = dir.join("straight");
    run(args(&straight)).unwrap();
    let read = |d: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(d.join("summary.json")).unwrap()).unwrap()
    };
    let (a, b) = (read(&stopped), read(&straight));
    assert_eq!(a["status"], "completed");
    for key in [
        "steps",
        "final_loss",
        "final_val_accuracy",
        "final_train_accuracy",
    ] {
        assert_eq!(a[key], b[key], "{key}");
    }
}

/// SIGTERM to `bigbatch study run` (a trial in flight, or between two trials): the process stops
/// claiming trials, exits 75 and says it was interrupted (not that the attempts ran out); the
/// next `study run` finishes the study.
#[test]
fn a_study_stopped_by_sigterm_says_so_and_continues() {
    let dir = scratch("study-sigterm");
    let path = write_study(&dir, 2);
    // Many short trials, so the signal comes with most of them left.
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("max_attempts: 3", "max_attempts: 20");
    std::fs::write(&path, text).unwrap();
    let d = dir.join("d");
    let (s, ds) = (path.to_str().unwrap(), d.to_str().unwrap());
    let child = Command::new(binary())
        .args(["study", "run", s, "--dir", ds, "--trials", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let study = Study::load(&path, Some(d.clone())).unwrap();
    wait_for("a finished trial", Duration::from_secs(300), || {
        !study.trials().unwrap_or_default().is_empty()
    });
    signal(child.id(), "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("interrupted") && !stderr.contains("raise max_attempts"),
        "{stderr}"
    );
    let done = study.trials().unwrap().len();
    assert!(done < 10, "stopped early: {done}");
    cli(&["study", "run", s, "--dir", ds, "--trials", "10"]).unwrap();
    assert_eq!(study.trials().unwrap().len(), 10);
}

fn write_study(dir: &Path, steps: u64) -> PathBuf {
    let path = dir.join("tiny study.ron");
    std::fs::write(
        &path,
        format!(
            r#"(
    base: ["{}", "{}"],
    seed: 3,
    metric: FinalValAccuracy,
    max_attempts: 3,
    search: {{
        "schedule.eta_peak": Log(0.01, 0.1),
        "model.widths": Fixed([2, 2, 2, 2]),
        "model.stem_width": Fixed(2),
        "train.steps": Fixed({steps}),
        "schedule.total_steps": Fixed({steps}),
        "schedule.t_warmup": Fixed(1),
        "train.batch_size": Fixed(16),
        "train.eval_every": Fixed({eval}),
        "train.train_eval_examples": Fixed(32),
    }},
)"#,
            root().join("configs/models/resnet.ron").display(),
            root()
                .join("configs/optimizers/nesterov_config_b.ron")
                .display(),
            eval = steps / 2,
        ),
    )
    .unwrap();
    path
}

/// A trial whose run directory another process holds is skipped, by `study trial` (a duplicate
/// array task) and by `study run` (which runs the others, counts it as in flight and waits for
/// it); `study status` reports it running, `study rerun` refuses meanwhile, and a run directory
/// whose holder is gone without a result is reported killed.
#[test]
fn a_trial_held_elsewhere_is_skipped() {
    let dir = scratch("held");
    let path = write_study(&dir, 4);
    let d = dir.join("d");
    let (s, ds) = (path.to_str().unwrap(), d.to_str().unwrap());
    let held = bigbatch_engine::run_dir::RunLock::acquire(&d.join("trials/00000")).unwrap();
    cli(&["study", "trial", s, "--dir", ds, "--index", "0"]).unwrap();
    let study = Study::load(&path, Some(d.clone())).unwrap();
    assert!(study.trials().unwrap().is_empty(), "skipped, not run");
    let runner = {
        let (s, ds) = (s.to_string(), ds.to_string());
        std::thread::spawn(move || cli(&["study", "run", &s, "--dir", &ds, "--trials", "3"]))
    };
    let done = || -> Vec<u64> { study.trials().unwrap().keys().copied().collect() };
    wait_for("trials 1 and 2", Duration::from_secs(300), || {
        done() == [1, 2]
    });
    assert!(study.status_text().unwrap().contains("running: 1 [0]"));
    let e = cli(&["study", "rerun", s, "--dir", ds, "--seeds", "1"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("trials [0] of the search are unfinished"), "{e}");
    assert!(!runner.is_finished(), "study run waits for trial 0");
    drop(held);
    runner.join().unwrap().unwrap();
    assert_eq!(done(), [0, 1, 2], "trial 0 run once its holder let go");
    drop(bigbatch_engine::run_dir::RunLock::acquire(&d.join("trials/00005")).unwrap());
    let status = study.status_text().unwrap();
    assert!(
        status.contains("running: 0")
            && status.contains("killed or interrupted (resume from their checkpoints): 1 [5]"),
        "{status}"
    );
}

/// `study slurm` scripts: absolute quoted paths (a space in every path), logs appended, the
/// backend and devices passed, the signal ahead of the time limit, only missing indices, the
/// attempt budget respected, printed on request.
#[test]
fn slurm_scripts_work_from_anywhere() {
    let dir = scratch("slurm script");
    let path = write_study(&dir, 4);
    let d = dir.join("study dir");
    let (s, ds) = (path.to_str().unwrap(), d.to_str().unwrap());
    cli(&["study", "trial", s, "--dir", ds, "--index", "1"]).unwrap();
    let script_path = dir.join("job.sh");
    cli(&[
        "study",
        "slurm",
        s,
        "--dir",
        ds,
        "--backend",
        "wgpu",
        "--devices",
        "0,1",
        "--sbatch",
        "--time=10",
        "--binary",
        "/opt/big batch/bigbatch",
        "--out",
        script_path.to_str().unwrap(),
    ])
    .unwrap();
    let script = std::fs::read_to_string(&script_path).unwrap();
    let abs_dir = std::path::absolute(&d).unwrap().display().to_string();
    for needle in [
        "#SBATCH --array=0,2\n".to_string(),
        format!("#SBATCH --output='{abs_dir}/slurm-%A_%a.log'\n"),
        "#SBATCH --open-mode=append\n".into(),
        "#SBATCH --signal=B:TERM@120\n".into(),
        "#SBATCH --requeue\n".into(),
        "#SBATCH --time=10\n".into(),
        format!(
            "'/opt/big batch/bigbatch' study trial '{}' --dir '{abs_dir}' --index \"$SLURM_ARRAY_TASK_ID\" --backend 'wgpu' --devices 0,1 &",
            std::path::absolute(&path).unwrap().display()
        ),
        "if [ \"$status\" -eq 75 ]; then".into(),
    ] {
        assert!(script.contains(&needle), "{needle}\n---\n{script}");
    }
    let e = cli(&["study", "slurm", s, "--dir", ds, "--attempts", "0"]).unwrap_err();
    assert!(e.to_string().contains("--attempts 0"), "{e}");
    let e = cli(&["study", "slurm", s, "--dir", ds, "--attempts", "4"]).unwrap_err();
    assert!(
        e.to_string().contains("above the study's max_attempts 3"),
        "{e}"
    );
    // `--out` onto something that is not a regular file writes through it, never replaces it.
    let fifo_target = dir.join("target.sh");
    std::fs::write(&fifo_target, "").unwrap();
    let link = dir.join("link.sh");
    std::os::unix::fs::symlink(&fifo_target, &link).unwrap();
    cli(&[
        "study",
        "slurm",
        s,
        "--dir",
        ds,
        "--out",
        link.to_str().unwrap(),
    ])
    .unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        std::fs::read_to_string(&fifo_target)
            .unwrap()
            .starts_with("#!/bin/bash")
    );
    // `--out /dev/stdout` in a process: the script on standard output.
    let out = Command::new(binary())
        .args(["study", "slurm", s, "--dir", ds, "--out", "/dev/stdout"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("#SBATCH --array=0,2"));
}

/// Slurm's daemons started by this test, stopped (by their pids) when dropped.
struct Slurm {
    conf: PathBuf,
    daemons: Vec<Child>,
}

impl Drop for Slurm {
    fn drop(&mut self) {
        for d in &mut self.daemons {
            signal(d.id(), "TERM");
        }
        for d in &mut self.daemons {
            let started = Instant::now();
            while d.try_wait().ok().flatten().is_none()
                && started.elapsed() < Duration::from_secs(10)
            {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = d.kill();
            let _ = d.wait();
        }
    }
}

impl Slurm {
    /// A client command with this cluster's configuration; its standard output.
    fn run(&self, program: &str, args: &[&str]) -> String {
        let out = Command::new(program)
            .args(args)
            .env("SLURM_CONF", &self.conf)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e}"));
        assert!(
            out.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Why Slurm cannot run here, or `None`.
fn slurm_missing() -> Option<String> {
    for program in [
        "slurmctld",
        "slurmd",
        "sbatch",
        "squeue",
        "scancel",
        "scontrol",
        "sinfo",
    ] {
        let found = std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths)
                .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
                .any(|p| p.join(program).is_file())
        });
        if !found {
            return Some(format!(
                "`{program}` is not installed (Debian: slurmctld slurmd slurm-client slurm-wlm-basic-plugins; `cargo xtask test` installs them)"
            ));
        }
    }
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("the daemons of this minimal configuration (SlurmUser=root) need root".into());
    }
    None
}

fn daemon(name: &str) -> Command {
    let path = ["/usr/sbin", "/sbin", "/usr/bin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(name));
    Command::new(path)
}

/// Starts `slurmctld` and `slurmd` on free ports with their state, spool, logs and pid files
/// under `dir`; waits until the node is idle.
fn start_slurm(dir: &Path) -> Slurm {
    let host = String::from_utf8(Command::new("hostname").arg("-s").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_string();
    for sub in ["state", "spool", "log"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    let conf = dir.join("slurm.conf");
    std::fs::write(
        &conf,
        format!(
            "ClusterName=bigbatchtest\nSlurmctldHost={host}(127.0.0.1)\nSlurmctldPort={ctld}\nSlurmdPort={slurmd}\n\
             AuthType=auth/none\nCredType=cred/none\nSlurmUser=root\nSlurmdUser=root\n\
             ProctrackType=proctrack/pgid\nTaskPlugin=task/none\nMpiDefault=none\n\
             SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\nSchedulerType=sched/builtin\n\
             ReturnToService=2\nJobRequeue=1\n\
             StateSaveLocation={d}/state\nSlurmdSpoolDir={d}/spool\n\
             SlurmctldPidFile={d}/slurmctld.pid\nSlurmdPidFile={d}/slurmd.pid\n\
             SlurmctldLogFile={d}/log/slurmctld.log\nSlurmdLogFile={d}/log/slurmd.log\n\
             NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} State=UNKNOWN\n\
             PartitionName=test Nodes={host} Default=YES MaxTime=INFINITE State=UP\n",
            ctld = free_port(),
            slurmd = free_port(),
            cpus = std::thread::available_parallelism().map_or(1, |n| n.get()),
        ),
    )
    .unwrap();
    let quiet = |mut c: Command| {
        c.stdout(Stdio::null()).stderr(Stdio::null());
        c
    };
    let mut ctld = daemon("slurmctld");
    ctld.args(["-D", "-i", "-f"]).arg(&conf);
    let mut slurmd = daemon("slurmd");
    slurmd.args(["-D", "-N", &host, "-f"]).arg(&conf);
    let mut slurm = Slurm {
        conf: conf.clone(),
        daemons: Vec::new(),
    };
    slurm.daemons.push(quiet(ctld).spawn().unwrap());
    std::thread::sleep(Duration::from_millis(500));
    slurm.daemons.push(quiet(slurmd).spawn().unwrap());
    wait_for("the Slurm node idle", Duration::from_secs(60), || {
        Command::new("sinfo")
            .args(["-h", "-o", "%T"])
            .env("SLURM_CONF", &conf)
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "idle")
    });
    slurm
}

/// A tiny study through a real Slurm, as a cluster user runs it: `study slurm --submit
/// --then-rerun 2 --then-report`, one task stopped by `scancel --signal=TERM` mid-trial (it
/// checkpoints, requeues, resumes; its log keeps both attempts), the chained rerun and report;
/// every result equals the same study run locally.
#[test]
fn study_on_a_real_slurm() {
    if let Some(why) = slurm_missing() {
        assert!(
            std::env::var_os("BIGBATCH_REQUIRE_SLURM").is_none(),
            "BIGBATCH_REQUIRE_SLURM is set but {why}"
        );
        eprintln!("SKIPPED study_on_a_real_slurm: {why}");
        return;
    }
    let dir = scratch("slurm-cluster");
    let slurm = start_slurm(&dir.join("daemons"));
    let work = dir.join("my work");
    std::fs::create_dir_all(&work).unwrap();
    let path = write_study(&work, 600);
    let d = work.join("study dir");
    let report = work.join("the report");
    // Submitted from another directory than the study's.
    let out = Command::new(binary())
        .current_dir(&*dir)
        .env("SLURM_CONF", &slurm.conf)
        .args([
            "study",
            "slurm",
            path.to_str().unwrap(),
            "--dir",
            d.to_str().unwrap(),
            "--sbatch",
            "--cpus-per-task=1",
            "--submit",
            "--then-rerun",
            "2",
            "--then-report",
            report.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let job = text
        .lines()
        .find_map(|l| l.strip_prefix("submitted the trials: job "))
        .unwrap_or_else(|| panic!("{text}"))
        .to_string();
    assert!(
        text.contains("submitted the rerun over 2 fresh seeds")
            && text.contains("submitted the report"),
        "{text}"
    );

    // Trial 0 stopped mid-run as at a time limit.
    let metrics = d.join("trials/00000/metrics.jsonl");
    wait_for("trial 0 at step 30", Duration::from_secs(300), || {
        steps_done(&metrics) >= 30
    });
    let task = format!("{job}_0");
    slurm.run("scancel", &["--signal=TERM", "--batch", &task]);
    // Slurm holds a requeued job for two minutes before it may start again: start it now.
    wait_for("trial 0 requeued", Duration::from_secs(120), || {
        let show = slurm.run("scontrol", &["show", "job", &task]);
        show.contains("Restarts=1") && show.contains("JobState=PENDING")
    });
    slurm.run(
        "scontrol",
        &["update", &format!("JobId={task}"), "StartTime=now"],
    );
    wait_for("every job done", Duration::from_secs(900), || {
        slurm.run("squeue", &["-h"]).trim().is_empty()
    });

    let log = std::fs::read_to_string(d.join(format!("slurm-{job}_0.log"))).unwrap();
    assert!(
        log.contains("requeueing") && log.contains("trial 0: metric"),
        "both attempts in the appended log:\n{log}"
    );
    let lines = std::fs::read_to_string(&metrics).unwrap();
    assert!(
        lines.contains("interrupted_at") && lines.contains("resumed_at"),
        "{lines}"
    );
    assert!(report.join("report.md").is_file(), "the chained report");
    // `--cpus-per-task=1`: every task's CPU thread pool had one thread.
    for (i, r) in Study::load(&path, Some(d.clone()))
        .unwrap()
        .trials()
        .unwrap()
    {
        assert_eq!(r.summary.cpu_threads, Some(1), "trial {i}");
    }

    // The same study, locally.
    let local = work.join("local");
    let (s, l) = (path.to_str().unwrap(), local.to_str().unwrap());
    cli(&["study", "run", s, "--dir", l, "--trials", "3"]).unwrap();
    cli(&["study", "rerun", s, "--dir", l, "--seeds", "2"]).unwrap();
    let (cluster, here) = (
        Study::load(&path, Some(d.clone())).unwrap(),
        Study::load(&path, Some(local.clone())).unwrap(),
    );
    let metric = |m: std::collections::BTreeMap<u64, bigbatch_studies::study::TrialResult>| {
        m.into_iter()
            .map(|(k, r)| (k, r.metric, r.summary.final_loss))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        metric(cluster.trials().unwrap()),
        metric(here.trials().unwrap())
    );
    assert_eq!(
        metric(cluster.reruns().unwrap()),
        metric(here.reruns().unwrap())
    );
    assert_eq!(cluster.reruns().unwrap().len(), 2);
}
