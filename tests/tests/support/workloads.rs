//! BERT pretraining (phase 1 -> phase 2 at a new sequence length) and ResNet on ImageNet-layout
//! JPEG folders, through the CLI.

use super::{root, scratch};
use bigbatch_cli::run_cli;
use std::path::Path;

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

pub(super) fn lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// `bert-tiny.ron` shrunk to seconds: 12 documents, a 1-layer hidden-32 model.
pub(super) fn bert_args(
    config: &str,
    out: &Path,
    seq: usize,
    predictions: usize,
    extra: &[&str],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "bigbatch".into(),
        "train".into(),
        "--no-progress".into(),
        "--config".into(),
        root()
            .join("configs/models")
            .join(config)
            .display()
            .to_string(),
        "--config".into(),
        root()
            .join("configs/optimizers/bert_adam.ron")
            .display()
            .to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    for set in [
        "data.source.Bert.documents=12".to_string(),
        "data.source.Bert.eval_documents=2".into(),
        format!("data.source.Bert.creation.max_seq_length={seq}"),
        format!("data.source.Bert.creation.max_predictions_per_seq={predictions}"),
        "model.hidden=32".into(),
        "model.heads=2".into(),
        "model.layers=1".into(),
        "model.intermediate=64".into(),
        "train.batch_size=8".into(),
        "train.steps=4".into(),
        "train.eval_every=2".into(),
        "train.train_eval_examples=16".into(),
        "schedule.total_steps=4".into(),
        "schedule.warmup_steps=1".into(),
    ] {
        args.push("--set".into());
        args.push(set);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

#[test]
fn bert_phase_one_then_phase_two_at_a_new_sequence_length() {
    let dir = scratch("bert-phases");
    let phase1 = dir.join("phase1");
    run_cli(bert_args("bert-tiny.ron", &phase1, 32, 5, &[])).unwrap();
    let summary = json(&phase1.join("summary.json"));
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["steps"], 4);
    let evals: Vec<_> = lines(&phase1.join("metrics.jsonl"))
        .into_iter()
        .filter(|l| l.get("val_accuracy").is_some())
        .collect();
    assert_eq!(evals.len(), 2);
    for e in &evals {
        for key in ["val_accuracy", "train_accuracy", "val_nsp_accuracy"] {
            let v = e[key].as_f64().unwrap();
            assert!((0.0..=1.0).contains(&v), "{key} = {v}");
        }
        assert!(e["val_loss"].as_f64().unwrap().is_finite());
    }

    // Phase 2: sequence length 64 and 10 predictions, from phase 1's weights (fresh optimizer).
    let from = format!("train.init_from=\"{}\"", phase1.display());
    let phase2 = dir.join("phase2");
    run_cli(bert_args(
        "bert-tiny-phase2.ron",
        &phase2,
        64,
        10,
        &["--set", &from],
    ))
    .unwrap();
    let scratch2 = dir.join("phase2-from-scratch");
    run_cli(bert_args(
        "bert-tiny-phase2.ron",
        &scratch2,
        64,
        10,
        &["--set", "train.init_from=null"],
    ))
    .unwrap();
    let first_loss = |d: &Path| {
        lines(&d.join("metrics.jsonl"))
            .into_iter()
            .find_map(|l| l["loss"].as_f64())
            .unwrap()
    };
    // Same data, seed and optimizer: only the starting weights differ.
    assert_ne!(first_loss(&phase2), first_loss(&scratch2));
    assert_eq!(json(&phase2.join("summary.json"))["status"], "completed");

    // A phase-2 model of another size cannot take phase 1's weights: a clear error.
    let err = run_cli(bert_args(
        "bert-tiny-phase2.ron",
        &dir.join("bad"),
        64,
        10,
        &["--set", &from, "--set", "model.intermediate=48"],
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("train.init_from"), "{err:#}");
    let err = run_cli(bert_args(
        "bert-tiny-phase2.ron",
        &dir.join("bad2"),
        64,
        10,
        &["--set", "train.init_from=\"/nonexistent/run\""],
    ))
    .unwrap_err();
    assert!(format!("{err:#}").contains("no checkpoint.json"), "{err:#}");
    // A sequence longer than the model's positions is refused before training.
    let err = run_cli(bert_args(
        "bert-tiny.ron",
        &dir.join("bad3"),
        64,
        5,
        &["--set", "model.max_positions=32"],
    ))
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("model.max_positions"),
        "{err:#}"
    );
}

#[test]
fn bert_trains_from_shards_written_by_bert_data() {
    let dir = scratch("bert-shards");
    let corpus = dir.join("corpus.txt");
    let mut text = String::new();
    for d in 0..6 {
        for s in 0..12 {
            text.push_str(&format!(
                "The congress of document {d} met on day {s} and the people were informed.\n"
            ));
        }
        text.push('\n');
    }
    std::fs::write(&corpus, text).unwrap();
    let shards = dir.join("shards");
    let a = |s: &str| s.to_string();
    run_cli([
        a("bigbatch"),
        a("bert-data"),
        a("--corpus"),
        corpus.display().to_string(),
        a("--max-seq-length"),
        a("32"),
        a("--max-predictions-per-seq"),
        a("5"),
        a("--dupe-factor"),
        a("3"),
        a("--eval-documents"),
        a("2"),
        a("--per-shard"),
        a("16"),
        a("--out"),
        shards.display().to_string(),
    ])
    .unwrap();
    let info = json(&shards.join("dataset.json"));
    assert!(info["train_instances"].as_u64().unwrap() > 16);
    assert!(shards.join("train-00001.bbpt").exists());
    let source = format!("data.source={{\"BertShards\": \"{}\"}}", shards.display());
    let out = dir.join("run");
    run_cli(bert_args("bert-tiny.ron", &out, 32, 5, &["--set", &source])).unwrap();
    assert_eq!(json(&out.join("summary.json"))["status"], "completed");
}

/// A tiny ImageNet layout: 3 classes of 6 JPEGs of different sizes in train/ and 2 per class in
/// a flat val/ with a labels file, and one corrupt training file.
fn imagenet_fixture(dir: &Path) {
    for c in 0..3u8 {
        let wnid = format!("n0000000{c}");
        let train = dir.join("train").join(&wnid);
        std::fs::create_dir_all(&train).unwrap();
        for i in 0..6u32 {
            let img = image::RgbImage::from_fn(48 + i * 4, 40, |x, y| {
                image::Rgb([c * 100, (x * 4) as u8, (y * 5) as u8])
            });
            img.save(train.join(format!("{wnid}_{i}.JPEG"))).unwrap();
        }
    }
    std::fs::write(dir.join("train/n00000001/broken.JPEG"), b"not a jpeg").unwrap();
    std::fs::create_dir_all(dir.join("val")).unwrap();
    let mut labels = String::new();
    for c in 0..3u8 {
        for i in 0..2u32 {
            let name = format!("val_{c}_{i}.JPEG");
            image::RgbImage::from_fn(50, 44 + i, |x, _| image::Rgb([c * 100, x as u8, 7]))
                .save(dir.join("val").join(&name))
                .unwrap();
            labels.push_str(&format!("{name} n0000000{c}\n"));
        }
    }
    std::fs::write(dir.join("val_labels.txt"), labels).unwrap();
}

/// `bigbatch train` on the tiny ImageNet layout: ResNet-50's config shrunk to seconds.
fn imagenet_args(
    out: &Path,
    source: &str,
    steps: u64,
    resume: bool,
    extra: &[&str],
) -> Vec<String> {
    let mut v: Vec<String> = vec![
        "bigbatch".into(),
        "train".into(),
        "--no-progress".into(),
        "--config".into(),
        root()
            .join("configs/models/resnet50-imagenet.ron")
            .display()
            .to_string(),
        "--config".into(),
        root()
            .join("configs/optimizers/lars_mlperf.ron")
            .display()
            .to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    for set in [
        source.to_string(),
        "model.depths=[1,1,1,1]".into(),
        "model.widths=[2,2,2,2]".into(),
        "model.stem_width=4".into(),
        "model.image_size=32".into(),
        "model.num_classes=3".into(),
        "model.bn.virtual_batch_size=2".into(),
        "train.batch_size=4".into(),
        format!("train.steps={steps}"),
        "train.eval_every=2".into(),
        "train.train_eval_examples=5".into(),
        "schedule.t_warmup=1".into(),
        "schedule.total_steps=6".into(),
        "schedule.eta_peak=0.5".into(),
    ]
    .into_iter()
    .chain(extra.iter().map(|s| s.to_string()))
    {
        v.push("--set".into());
        v.push(set);
    }
    if resume {
        v.push("--resume".into());
    }
    v
}

fn imagenet_source(dir: &Path) -> String {
    format!(
        "data.source={{\"ImageNet\": {{\"dir\": \"{}\", \"val_labels\": \"{}\", \"workers\": 2, \"prefetch\": 2}}}}",
        dir.display(),
        dir.join("val_labels.txt").display()
    )
}

/// Too few decodable training images for one batch, and a validation set where nothing decodes,
/// are errors naming the folder and the counts (not an endless loop, not 0% accuracy).
#[test]
fn undecodable_imagenet_folders_are_errors() {
    let dir = scratch("imagenet-undecodable");
    imagenet_fixture(&dir);
    let source = imagenet_source(&dir);
    // 19 files, 18 decodable after breaking one more: a batch of 19 cannot be filled.
    std::fs::write(dir.join("train/n00000002/n00000002_0.JPEG"), b"broken").unwrap();
    let e = run_cli(imagenet_args(
        &dir.join("few"),
        &source,
        2,
        false,
        &["train.batch_size=19", "model.bn.virtual_batch_size=1"],
    ))
    .unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("only 17 of 19 training images could be decoded, fewer than one batch of 19"),
        "{e}"
    );
    // Every validation image broken: evaluation is an error, not 0%.
    for entry in std::fs::read_dir(dir.join("val")).unwrap() {
        std::fs::write(entry.unwrap().path(), b"broken").unwrap();
    }
    let e = run_cli(imagenet_args(&dir.join("noval"), &source, 2, false, &[])).unwrap_err();
    let e = format!("{e:#}");
    assert!(
        e.contains("no image of") && e.contains("val") && e.contains("could be decoded"),
        "{e}"
    );
}

#[test]
fn resnet_trains_on_imagenet_folders_and_resumes() {
    let dir = scratch("imagenet");
    imagenet_fixture(&dir);
    let source = imagenet_source(&dir);
    let args = |out: &Path, source: &str, steps: u64, resume: bool| {
        imagenet_args(out, source, steps, resume, &[])
    };
    // 6 steps of batch 4 span two epochs of the 17 readable images.
    let full = dir.join("full");
    run_cli(args(&full, &source, 6, false)).unwrap();
    let summary = json(&full.join("summary.json"));
    assert_eq!(summary["status"], "completed");
    assert_eq!(summary["steps"], 6);
    // Stopped after step 2 and resumed: the data order continues exactly.
    let part = dir.join("part");
    run_cli(args(&part, &source, 2, false)).unwrap();
    run_cli(args(&part, &source, 6, true)).unwrap();
    let losses = |d: &Path| -> Vec<f64> {
        lines(&d.join("metrics.jsonl"))
            .iter()
            .filter_map(|l| l["loss"].as_f64())
            .collect()
    };
    assert_eq!(losses(&full), losses(&part));
    assert_eq!(
        json(&part.join("summary.json"))["final_val_accuracy"],
        summary["final_val_accuracy"]
    );
    // A missing directory is a clear error naming the field.
    let missing = "data.source={\"ImageNet\": {\"dir\": \"/nonexistent/imagenet\"}}";
    let err = run_cli(args(&dir.join("bad"), missing, 6, false)).unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("data.source") && msg.contains("/nonexistent/imagenet"),
        "{msg}"
    );
}
