//! `bigbatch reproduce` (what `cargo xtask reproduce` runs) on a 2-trial, 5-step version of two
//! findings: a tuned pair judged by the "matches" rule and a warmup-power sweep over the best
//! point of a tuned study (`best_of`); rerun, it runs nothing new; the report regenerates from
//! the result files alone.

use super::{cli, root, scratch};
use bigbatch_engine::run_config::ModelConfig;
use bigbatch_studies::study::Study;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

fn setup(dir: &Path) -> PathBuf {
    let r = root();
    let model = r.join("configs/models/resnet.ron");
    write(
        &dir.join("tiny.ron"),
        r#"(set: [
            "model.widths=[2, 2, 2, 2]",
            "model.stem_width=2",
            "train.batch_size=16",
            "train.steps=5",
            "train.eval_every=5",
            "train.train_eval_examples=32",
            "schedule.total_steps=5",
            "schedule.t_warmup=2",
        ])"#,
    );
    for (name, optimizer, lr) in [
        ("nesterov", "nesterov_config_b.ron", "Log(0.01, 0.1)"),
        ("lars", "lars_mlperf.ron", "Log(0.5, 5.0)"),
    ] {
        write(
            &dir.join(format!("{name}.ron")),
            &format!(
                r#"(
    base: ["{}", "{}", "tiny.ron"],
    seed: 3,
    metric: FinalValAccuracy,
    target: Some(0.05),
    search: {{
        "schedule.eta_peak": {lr},
        "optimizer.default.weight_decay": Log(1e-5, 1e-3),
    }},
    refine: (initial_trials: 1, width: 0.5),
)"#,
                model.display(),
                r.join("configs/optimizers").join(optimizer).display()
            ),
        );
    }
    write(
        &dir.join("nesterov-warmup.ron"),
        r#"(
    best_of: Some("nesterov.ron"),
    seed: 3,
    metric: FinalValAccuracy,
    search: {
        "schedule.p_warmup": Sweep([1.0, 2.0]),
        "train.seed": Sweep([0, 1, 2, 3, 4]),
    },
)"#,
    );
    let findings = dir.join("findings.ron");
    write(
        &findings,
        r#"(
    preamble: "A test at 5 steps.",
    findings: [
        (
            name: "pair",
            title: "Nesterov matches LARS",
            paper: "Table 3",
            claim: Matches(candidate: "nesterov.ron", reference: "lars.ron"),
            delta: 0.01,
            target: (reference: "lars.ron", rank: 2, round_to: 0.001),
            deviations: [(what: "steps", paper: "2,512", here: "5")],
        ),
        (
            name: "warmup",
            title: "Nesterov prefers p_warmup 2",
            paper: "Table 2",
            claim: BestValue(path: "schedule.p_warmup", expected: [("nesterov-warmup.ron", 2.0)]),
            delta: 0.01,
        ),
    ],
)"#,
    );
    findings
}

/// Every result file under `dir` with its contents.
fn results(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "json")
                && p.parent()
                    .unwrap()
                    .file_name()
                    .is_some_and(|n| n == "trials" || n == "reruns")
            {
                out.insert(p.clone(), std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    out
}

#[test]
fn reproduce_runs_resumes_and_reports() {
    let dir = scratch("reproduce");
    let findings = setup(&dir);
    let out = dir.join("out");
    let (f, o) = (findings.to_str().unwrap(), out.to_str().unwrap());
    let run = |extra: &[&str]| {
        let mut args = vec!["reproduce", "--findings", f, "--out", o];
        args.extend_from_slice(extra);
        cli(&args)
    };
    // Before anything has run, the report says what is pending (the sweep has no schedule yet).
    run(&["--report-only"]).unwrap();
    assert!(
        std::fs::read_to_string(out.join("README.md"))
            .unwrap()
            .contains("pending"),
    );
    run(&["--trials", "2", "--seeds", "2", "--workers", "2"]).unwrap();

    // The tuned pair: 2 trials each, then the best point over fresh seeds 1000 and 1001.
    for name in ["nesterov", "lars"] {
        let study = Study::load(
            &dir.join(format!("{name}.ron")),
            Some(out.join("studies").join(name)),
        )
        .unwrap();
        assert_eq!(
            study
                .trials()
                .unwrap()
                .values()
                .filter(|r| r.feasible())
                .count(),
            2
        );
        let reruns = study.reruns().unwrap();
        assert_eq!(
            reruns.keys().copied().collect::<Vec<_>>(),
            vec![1000, 1001],
            "fresh seeds: {name}"
        );
    }
    // Two stages: trial 0 over the initial ranges, trial 1 over final ranges half as wide (in
    // the log scale) centred on trial 0.
    let lars = Study::load(&dir.join("lars.ron"), Some(out.join("studies/lars"))).unwrap();
    let stage = lars.final_stage().unwrap().expect("final stage fixed");
    assert_eq!((stage.first_trial, stage.centred_on), (1, 0));
    let trials = lars.trials().unwrap();
    let (peak0, peak1) = (
        trials[&0].point["schedule.eta_peak"].as_f64().unwrap(),
        trials[&1].point["schedule.eta_peak"].as_f64().unwrap(),
    );
    // Log(0.5, 5) is one decade: the final range is half a decade around trial 0's peak.
    let (low, high) = (peak0 / 10f64.powf(0.25), peak0 * 10f64.powf(0.25));
    assert!(
        low * (1.0 - 1e-9) <= peak1 && peak1 <= high * (1.0 + 1e-9),
        "{peak1} not in [{low}, {high}]"
    );
    assert_eq!(lars.space_of(0).unwrap(), lars.file.search);
    assert_ne!(lars.space_of(1).unwrap(), lars.file.search);
    // A final-stage trial cannot be composed before its stage is fixed.
    let early = dir.join("early");
    std::fs::create_dir_all(early.join("trials")).unwrap();
    for name in ["fingerprint.txt", "trials/00000.json"] {
        std::fs::copy(out.join("studies/lars").join(name), early.join(name)).unwrap();
    }
    let e = Study::load(&dir.join("lars.ron"), Some(early))
        .unwrap()
        .trial_config(1)
        .unwrap_err()
        .to_string();
    assert!(e.contains("final stage, which is not fixed yet"), "{e}");

    // The target, fixed from the reference's trials before its reruns: the second-best trial's
    // validation accuracy rounded down to a tenth of a point.
    let mut metrics: Vec<f64> = trials.values().filter_map(|r| r.metric).collect();
    metrics.sort_by(|a, b| b.partial_cmp(a).unwrap());
    let targets: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("targets.json")).unwrap()).unwrap();
    let value = targets["pair"]["value"].as_f64().unwrap();
    assert!(
        value <= metrics[1] && metrics[1] - value < 0.001 + 1e-9,
        "{value} from {metrics:?}"
    );
    let how = targets["pair"]["how"].as_str().unwrap();
    assert!(
        how.contains("2nd best of 2 feasible tuning trials of lars.ron")
            && how.contains("before any rerun"),
        "{how}"
    );

    // The sweep: p_warmup 1 and 2 for seeds 0 and 1, on the best point of the Nesterov study.
    let tuned = Study::load(
        &dir.join("nesterov.ron"),
        Some(out.join("studies/nesterov")),
    )
    .unwrap();
    let best = tuned.best().unwrap().unwrap();
    let sweep = Study::load(
        &dir.join("nesterov-warmup.ron"),
        Some(out.join("studies/nesterov-warmup")),
    )
    .unwrap();
    let mut seen = Vec::new();
    for (i, r) in sweep.trials().unwrap() {
        let (config, _) = sweep.trial_config(i).unwrap();
        assert_eq!(
            serde_json::json!(config.schedule.lr(2)),
            serde_json::json!(best.point["schedule.eta_peak"]),
            "trial {i} must start from the best point's peak learning rate (reached at step 2)"
        );
        seen.push((r.point["schedule.p_warmup"].as_f64().unwrap(), r.seed));
    }
    seen.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(seen, vec![(1.0, 0), (1.0, 1), (2.0, 0), (2.0, 1)]);

    // The report: a verdict for both findings, each finding's protocol and charts, the CSV.
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    for title in ["Nesterov matches LARS", "Nesterov prefers p_warmup 2"] {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| [{title}]")))
            .unwrap_or_else(|| panic!("no summary row for {title}:\n{readme}"));
        assert!(
            [
                "**reproduced**",
                "**not reproduced**",
                "**inconclusive at this scale**"
            ]
            .iter()
            .any(|v| row.contains(v)),
            "{row}"
        );
    }
    assert!(
        readme.contains("cargo xtask reproduce --only pair"),
        "{readme}"
    );
    let pair = std::fs::read_to_string(out.join("pair/report.md")).unwrap();
    assert!(
        pair.contains("| path | initial range | final range | best trial's value |")
            && pair.contains("then trials from 1 over final ranges centred on trial 0"),
        "{pair}"
    );
    assert!(out.join("pair/accuracy_over_seeds.png").is_file());
    // Each pair's page shows what happened inside training at both best points.
    assert!(
        out.join("pair/diagnostics-by_kind-trust_ratio.png")
            .is_file()
    );
    assert!(
        readme.contains("Inside training, at the best points")
            && readme.contains("| lars | weights |"),
        "{readme}"
    );
    assert!(out.join("warmup/by_value.png").is_file());
    // Tidy and without duplicates: one row per study and metric (the sweep study has no reruns,
    // its runs are in the finding's table).
    let csv = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    let keys: std::collections::BTreeSet<(&str, &str)> = rows
        .iter()
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            (cells[0], cells[8])
        })
        .collect();
    assert_eq!(keys.len(), rows.len(), "{csv}");
    assert!(
        keys.contains(&("nesterov", "val_accuracy")) && keys.contains(&("lars", "val_accuracy"))
    );
    // Every verdict shows its intervals, the probability of improvement, fresh seeds, margin.
    for needle in [
        "difference of means, seed and tuning noise",
        "probability that a seed of nesterov beats a seed of lars",
        "2 and 2 fresh seeds",
        "margin delta 1.00 points",
        "tuning_budget.png",
        "| steps | 2,512 | 5 |",
        "Target: ",
        "2nd best of 2 feasible tuning trials of lars.ron",
        "halves (",
        "Robustness (half of the trials): does not apply",
        "CPU-hours in total",
    ] {
        assert!(readme.contains(needle), "{needle}:\n{readme}");
    }

    // `bigbatch report` on the two studies, without the findings file: the same comparison.
    let report = dir.join("report");
    cli(&[
        "report",
        dir.join("nesterov.ron").to_str().unwrap(),
        dir.join("lars.ron").to_str().unwrap(),
        "--dir",
        out.join("studies/nesterov").to_str().unwrap(),
        "--dir",
        out.join("studies/lars").to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ])
    .unwrap();
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for needle in [
        "## Comparisons over fresh seeds",
        "resamples per interval, ChaCha8 seed",
        "| difference of means, seed and tuning noise (points) |",
        "| probability that a seed of nesterov beats a seed of lars |",
        "| fresh seeds | 2 and 2 | |",
    ] {
        assert!(md.contains(needle), "{needle}:\n{md}");
    }
    assert!(report.join("tuning_budget.png").is_file());

    // Run again: nothing new runs, every result file is unchanged.
    let before = results(&out);
    assert_eq!(before.len(), 2 * (2 + 2) + 4);
    run(&["--trials", "2", "--seeds", "2"]).unwrap();
    assert_eq!(results(&out), before);

    // The report from the result files alone.
    std::fs::remove_file(out.join("README.md")).unwrap();
    run(&["--report-only"]).unwrap();
    assert_eq!(
        std::fs::read_to_string(out.join("README.md")).unwrap(),
        readme
    );

    let e = run(&["--only", "nope", "--report-only"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("nope") && e.contains("pair, warmup"), "{e}");
    // A target rule without a rank is refused, naming the finding.
    let bad = dir.join("bad-target.ron");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&findings)
            .unwrap()
            .replace("rank: 2,", "rank: 0,"),
    )
    .unwrap();
    let e = cli(&[
        "reproduce",
        "--findings",
        bad.to_str().unwrap(),
        "--out",
        o,
        "--report-only",
    ])
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("findings[0] (pair): target: expected rank >= 1 and a finite round_to > 0"),
        "{e}"
    );

    // A finding is judged only when its studies have the whole budget recorded for it
    // (budget.json, per finding).
    let budget = |text: &str| serde_json::from_str::<serde_json::Value>(text).unwrap();
    let two = serde_json::json!({"trials": 2, "seeds": 2});
    assert_eq!(
        budget(&std::fs::read_to_string(out.join("budget.json")).unwrap()),
        serde_json::json!({"pair": two, "warmup": two})
    );
    let pending = || {
        let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
        readme
            .lines()
            .filter(|l| l.starts_with("| [") && l.contains("**pending"))
            .map(|l| {
                l.split(']')
                    .next()
                    .unwrap()
                    .trim_start_matches("| [")
                    .to_string()
            })
            .collect::<Vec<_>>()
    };
    // An older single budget applies to every finding: with 3 seeds recorded and 2 run, both
    // findings are pending.
    std::fs::write(out.join("budget.json"), r#"{"trials": 2, "seeds": 3}"#).unwrap();
    run(&["--report-only"]).unwrap();
    assert_eq!(pending().len(), 2);
    // Running one finding records its budget only: the other keeps its own.
    std::fs::write(
        out.join("budget.json"),
        r#"{"pair": {"trials": 2, "seeds": 3}, "warmup": {"trials": 2, "seeds": 3}}"#,
    )
    .unwrap();
    run(&["--only", "warmup", "--trials", "2", "--seeds", "2"]).unwrap();
    assert_eq!(
        budget(&std::fs::read_to_string(out.join("budget.json")).unwrap()),
        serde_json::json!({"pair": {"trials": 2, "seeds": 3}, "warmup": two})
    );
    assert_eq!(pending(), ["Nesterov matches LARS"]);

    // Raising the seeds of a finding that was pending is no look; raising them once it was
    // judged records that look (`looked_at`), and its page says the verdict is a later one.
    let pair_budget =
        || budget(&std::fs::read_to_string(out.join("budget.json")).unwrap())["pair"].clone();
    run(&["--only", "pair", "--trials", "2", "--seeds", "3"]).unwrap();
    assert_eq!(pair_budget(), serde_json::json!({"trials": 2, "seeds": 3}));
    assert!(pending().is_empty());
    // The pair's row at 3 seeds: `| [title](#anchor) | paper | **verdict** | numbers |`.
    let pair_row = || {
        let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
        let row = readme
            .lines()
            .find(|l| l.starts_with("| [Nesterov matches LARS]"))
            .unwrap()
            .to_string();
        let cells: Vec<String> = row.split(" | ").map(str::to_string).collect();
        (
            cells[2].clone(),
            cells[3].trim_end_matches(" |").to_string(),
        )
    };
    let (verdict_at_3, numbers_at_3) = pair_row();
    assert!(
        numbers_at_3.contains("3 and 3 fresh seeds"),
        "{numbers_at_3}"
    );
    run(&["--only", "pair", "--trials", "2", "--seeds", "4"]).unwrap();
    assert_eq!(
        pair_budget(),
        serde_json::json!({"trials": 2, "seeds": 4, "looked_at": [3]})
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains(
            "Looks: the finding was judged at 3 fresh seeds before its seeds were raised to 4"
        ) && readme.contains("keeps the rate"),
        "{readme}"
    );
    // Raised again and not yet run: pending, and the row and page say what the last look said,
    // judged again from the reruns that look saw (the 3 lowest seeds of 4), exactly as it was.
    std::fs::write(
        out.join("budget.json"),
        r#"{"pair": {"trials": 2, "seeds": 5, "looked_at": [3]}, "warmup": {"trials": 2, "seeds": 2}}"#,
    )
    .unwrap();
    run(&["--report-only"]).unwrap();
    assert_eq!(pending(), ["Nesterov matches LARS"]);
    let (verdict_now, numbers_now) = pair_row();
    assert_eq!(verdict_now, "**pending (studies not finished)**");
    assert!(
        numbers_now.ends_with(&format!(
            ". At the earlier look (3 fresh seeds per study): {verdict_at_3}; {numbers_at_3}"
        )),
        "{numbers_now}\nexpected the look at 3 seeds: {verdict_at_3}; {numbers_at_3}"
    );
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains(&format!(
            "Earlier look: at 3 fresh seeds per study (each study's reruns of its best point with the 3 lowest seeds, judged again from the result files) the verdict was {verdict_at_3}."
        )) && readme.contains("so the verdict to come will be a later look"),
        "{readme}"
    );
}

#[test]
fn a_sweep_waits_for_its_source_study() {
    let dir = scratch("reproduce-waiting");
    let findings = setup(&dir);
    let out = dir.join("out");
    cli(&[
        "reproduce",
        "--findings",
        findings.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--only",
        "warmup",
        "--report-only",
    ])
    .unwrap();
    let readme = std::fs::read_to_string(out.join("README.md")).unwrap();
    assert!(
        readme.contains("pending") && readme.contains("waiting for nesterov.ron"),
        "{readme}"
    );
    // Loading the sweep study itself names what it waits for.
    let e = Study::load(
        &dir.join("nesterov-warmup.ron"),
        Some(out.join("studies/nesterov-warmup")),
    )
    .err()
    .unwrap();
    let e = format!("{e:#}");
    assert!(
        e.contains("best_of") && e.contains("no feasible trial"),
        "{e}"
    );
}

#[test]
fn shipped_findings_name_existing_studies() {
    let findings = root().join("configs/studies/reproduction/findings.ron");
    let study_dir = scratch("shipped-repro-study");
    let r =
        bigbatch_studies::reproduce::Reproduction::load(&findings, &scratch("shipped-findings"))
            .unwrap();
    assert!(r.file.findings.len() >= 5);
    for entry in std::fs::read_dir(root().join("configs/studies/reproduction")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "ron")
            && path.file_name().unwrap() != "findings.ron"
        {
            let text = std::fs::read_to_string(&path).unwrap();
            if !text.contains("best_of") {
                let study = Study::load(&path, Some(study_dir.to_path_buf()))
                    .unwrap_or_else(|e| panic!("{}: {e:#}", path.display()));
                // The ResNet findings' scale (Table 5's LAMB finding 2.4 times as long, the
                // paper's ratio), or the BERT finding's (configs/models/bert-nano.ron).
                let scale = (study.base.train.batch_size, study.base.train.steps);
                let name = path.file_name().unwrap().to_string_lossy();
                let expected = match study.base.model {
                    ModelConfig::Bert(_) => (256, 300),
                    ModelConfig::ResNet(_) if name.starts_with("f2-") => (2048, 120),
                    ModelConfig::ResNet(_) => (2048, 50),
                    ModelConfig::Plugin { .. } => panic!("the reproduction uses built-in models"),
                };
                assert_eq!(scale, expected, "{}", path.display());
                // The paper's ghost batch norm over 64 examples.
                if let ModelConfig::ResNet(resnet) = &study.base.model {
                    assert_eq!(resnet.bn.virtual_batch_size, Some(64), "{}", path.display());
                }
            }
        }
    }
}

/// Copies a tree of result files, leaving out checkpoints (not committed; a local run in
/// progress has them) and run locks.
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let target = to.join(&name);
        if p.is_dir() {
            if !name.starts_with("checkpoint-") {
                copy_dir(&p, &target);
            }
        } else if name != "run.lock" && name != "checkpoint.json" {
            std::fs::copy(&p, &target).unwrap();
        }
    }
}

/// The published reproduction is what the committed result files give: its report written
/// again from them (`--report-only` over a copy of `studies/`, `budget.json` and `targets.json`)
/// equals docs/reproduction/README.md and results.csv, and the README's Results table is its
/// summary (`--summary-into` over a copy of the README leaves it as it is).
#[test]
fn published_reproduction_is_current() {
    let published = root().join("docs/reproduction");
    let out = scratch("published-reproduction");
    copy_dir(&published.join("studies"), &out.join("studies"));
    for file in ["budget.json", "targets.json"] {
        std::fs::copy(published.join(file), out.join(file)).unwrap();
    }
    let readme = out.join("workspace-README.md");
    std::fs::copy(root().join("README.md"), &readme).unwrap();
    cli(&[
        "reproduce",
        "--findings",
        root()
            .join("configs/studies/reproduction/findings.ron")
            .to_str()
            .unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--report-only",
        "--summary-into",
        readme.to_str().unwrap(),
    ])
    .unwrap();
    let stale = "docs/reproduction is stale: run `cargo xtask reproduce --report-only`";
    let same = |again: &Path, published: &Path| {
        let (a, b) = (
            std::fs::read_to_string(again).unwrap(),
            std::fs::read_to_string(published).unwrap(),
        );
        if let Some((i, (x, y))) = a
            .lines()
            .zip(b.lines())
            .enumerate()
            .find(|(_, (x, y))| x != y)
        {
            panic!(
                "{stale}: {} line {}:\n  written again: {x}\n  committed:     {y}",
                published.display(),
                i + 1
            );
        }
        assert_eq!(
            a,
            b,
            "{stale}: {} (lines added or lost)",
            published.display()
        );
    };
    // Paths in the page are relative to it, so the two are the same text.
    same(&out.join("README.md"), &published.join("README.md"));
    same(&out.join("results.csv"), &published.join("results.csv"));
    same(&readme, &root().join("README.md"));
    let summary = std::fs::read_to_string(&readme).unwrap();
    // One row per finding of the findings file.
    let rows = summary
        .lines()
        .skip_while(|l| !l.starts_with("<!-- reproduction summary"))
        .take_while(|l| !l.starts_with("<!-- end of the reproduction summary"))
        .filter(|l| l.starts_with("| ") && !l.starts_with("| finding (paper)"))
        .count();
    assert_eq!(rows, 5);
}
