//! One training run: config -> model + parameter groups -> optimizer -> train loop -> metrics.
//!
//! The run directory receives `config.ron` (the resolved config), `metrics.jsonl` (one JSON
//! object per line: the parameter groups, then per step `loss` and `lr`, and at each evaluation
//! `val_accuracy` and `train_accuracy`) and `summary.json` (written atomically at the end). A
//! non-finite loss ends the run with status `diverged`, the step and the reason recorded.
//!
//! At every evaluation the run also writes a checkpoint: `checkpoint-NNNNNNNN/` (the model as a
//! burnpack file, the optimizer state, the step) and then, atomically, `checkpoint.json` naming it,
//! so a crash never leaves a half-written checkpoint in use. [`RunOptions::resume`] continues from
//! the newest checkpoint: model, optimizer state and data order are restored (the sampler is
//! replayed to the step), metrics after that step are dropped, and the run goes on exactly as if
//! it had never stopped (a test checks bit-identical results).

use crate::run_config::{DataSource, ModelConfig, RunConfig};
use anyhow::{Context, Result, bail};
use bigbatch_core::ModelOptimizer;
use bigbatch_core::config::{to_ron, write_atomic};
use bigbatch_core::optimizer::OptimizerState;
use bigbatch_core::params::{describe, gather, scatter};
use bigbatch_data::{EpochSampler, ImageDataset, idx};
use bigbatch_models::ResNet;
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};

/// How a run ended.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Completed,
    Diverged,
}

/// `summary.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct RunSummary {
    pub status: Status,
    /// Updates applied.
    pub steps: u64,
    /// For a diverged run: why (e.g. `loss is NaN`), at step `steps`.
    pub reason: Option<String>,
    pub final_val_accuracy: Option<f64>,
    pub final_train_accuracy: Option<f64>,
    pub final_loss: Option<f64>,
    pub seconds: f64,
}

/// Options that do not change the result.
pub struct RunOptions {
    pub out_dir: PathBuf,
    pub progress: bool,
    /// Continue from the run directory's newest checkpoint, if there is one.
    pub resume: bool,
}

/// `checkpoint.json`: which checkpoint directory is current.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct CheckpointPointer {
    pub dir: String,
    /// Updates applied when it was written.
    pub step: u64,
}

fn save_checkpoint(
    out: &Path,
    step: u64,
    model: &ResNet,
    optimizer: &ModelOptimizer,
) -> Result<()> {
    let name = format!("checkpoint-{step:08}");
    let dir = out.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    model
        .clone()
        .save_file(dir.join("model.bpk"))
        .map_err(|e| anyhow::anyhow!("saving the model to {}: {e:?}", dir.display()))?;
    write_atomic(
        &dir.join("optimizer.msgpack"),
        &optimizer.state().to_bytes()?,
    )?;
    let previous = read_pointer(out)?;
    let pointer = CheckpointPointer { dir: name, step };
    write_atomic(
        &out.join("checkpoint.json"),
        serde_json::to_string_pretty(&pointer)?.as_bytes(),
    )?;
    if let Some(old) = previous
        && old.dir != pointer.dir
    {
        let _ = std::fs::remove_dir_all(out.join(old.dir));
    }
    Ok(())
}

fn read_pointer(out: &Path) -> Result<Option<CheckpointPointer>> {
    let path = out.join("checkpoint.json");
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("{}: not a checkpoint pointer", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// What the kept metrics say about the run so far: the last loss and the last evaluation.
#[derive(Default)]
struct SoFar {
    loss: Option<f64>,
    val: Option<f64>,
    train: Option<f64>,
}

/// Keeps the lines of `metrics.jsonl` before `step` (the groups line and what the checkpoint
/// covers), rewritten atomically.
fn truncate_metrics(path: &Path, step: u64) -> Result<SoFar> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut kept = String::new();
    let mut so_far = SoFar::default();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: not JSON lines", path.display()))?;
        let keep = match v["step"].as_u64() {
            None => true,
            // Per-step lines carry the step before the update; evaluations the step after it.
            Some(s) if v.get("val_accuracy").is_some() => s <= step,
            Some(s) => s < step,
        };
        if keep {
            kept.push_str(line);
            kept.push('\n');
            if let Some(l) = v["loss"].as_f64() {
                so_far.loss = Some(l);
            }
            if let (Some(val), Some(train)) =
                (v["val_accuracy"].as_f64(), v["train_accuracy"].as_f64())
            {
                so_far.val = Some(val);
                so_far.train = Some(train);
            }
        }
    }
    write_atomic(path, kept.as_bytes())?;
    Ok(so_far)
}

/// Trains the model the config describes and records everything under `options.out_dir`.
pub fn run(config: &RunConfig, device: &Device, options: &RunOptions) -> Result<RunSummary> {
    let started = std::time::Instant::now();
    let out = &options.out_dir;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    write_atomic(&out.join("config.ron"), to_ron(config)?.as_bytes())?;

    let (train_set, val_set) = load_data(&config.data.source)?;
    let ModelConfig::ResNet(model_cfg) = &config.model;
    check_model_fits_data(model_cfg, &train_set)?;
    let norm = train_set.pixel_stats();
    let train_eval_set = train_set.head(config.train.train_eval_examples);

    let (mut model, params) = {
        // The device's random generator is global: hold a process-wide lock from seeding to the
        // end of initialisation so that concurrent runs (tests, threads) cannot interleave.
        // burn initialises parameters lazily; `describe` reads every one, which materialises them
        // inside the lock.
        static SEED_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _guard = SEED_LOCK.lock().unwrap_or_else(|e| e.into_inner());
        device.seed(config.train.seed);
        let model = model_cfg.init(device)?;
        let params = describe(&model);
        (model, params)
    };
    let mut optimizer = ModelOptimizer::new(&config.optimizer, params)?;
    let metrics_path = out.join("metrics.jsonl");
    let mut start = 0;
    let mut so_far = SoFar::default();
    let checkpoint = if options.resume {
        read_pointer(out)?
    } else {
        None
    };
    let mut metrics = match checkpoint {
        Some(pointer) => {
            let dir = out.join(&pointer.dir);
            model = model
                .try_load_file(dir.join("model.bpk"))
                .map_err(|e| anyhow::anyhow!("loading {}: {e:?}", dir.display()))?;
            let bytes = std::fs::read(dir.join("optimizer.msgpack"))
                .with_context(|| format!("cannot read {}", dir.display()))?;
            optimizer
                .load_state(OptimizerState::from_bytes(&bytes)?, device)
                .with_context(|| format!("resuming from {}", dir.display()))?;
            start = pointer.step;
            so_far = truncate_metrics(&metrics_path, start)?;
            Metrics::append(&metrics_path)?
        }
        None => {
            let mut m = Metrics::create(&metrics_path)?;
            m.write(&groups_line(&optimizer))?;
            m
        }
    };

    let t = &config.train;
    let mut sampler = EpochSampler::new(train_set.len(), t.batch_size, t.seed ^ 0x5eed_da7a)?;
    for _ in 0..start {
        sampler.next_batch();
    }
    let bar = progress_bar(t.steps, options.progress);
    bar.set_position(start);
    let mut summary = RunSummary {
        status: Status::Completed,
        steps: start,
        reason: None,
        final_val_accuracy: so_far.val,
        final_train_accuracy: so_far.train,
        final_loss: so_far.loss,
        seconds: 0.0,
    };
    for step in start..t.steps {
        let lr = config.schedule.lr(step);
        let indices = sampler.next_batch().to_vec();
        let (images, _) = train_set.batch(&indices, norm, device);
        let targets = smoothed_targets(&train_set, &indices, t.label_smoothing, device);
        let loss = cross_entropy(model.forward(images), targets);
        let loss_value = loss.clone().into_scalar::<f32>() as f64;
        if !loss_value.is_finite() {
            let reason = format!("loss is {loss_value} at step {step}");
            metrics.write(&json!({"step": step, "lr": lr, "diverged": reason}))?;
            summary.status = Status::Diverged;
            summary.reason = Some(reason);
            break;
        }
        let grads = loss.backward();
        let updated = optimizer.step(lr, gather(&model, &grads));
        model = scatter(model, updated);
        summary.steps = step + 1;
        summary.final_loss = Some(loss_value);
        metrics.write(&json!({"step": step, "loss": loss_value, "lr": lr}))?;
        bar.set_message(format!("loss {loss_value:.4} lr {lr:.4}"));
        bar.inc(1);

        if (step + 1) % t.eval_every == 0 || step + 1 == t.steps {
            let val = accuracy(&model, &val_set, norm, device);
            let train = accuracy(&model, &train_eval_set, norm, device);
            metrics
                .write(&json!({"step": step + 1, "val_accuracy": val, "train_accuracy": train}))?;
            let line = format!(
                "step {:>6}  loss {loss_value:.4}  val acc {:.2}%  train acc {:.2}%",
                step + 1,
                val * 100.0,
                train * 100.0
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
            summary.final_val_accuracy = Some(val);
            summary.final_train_accuracy = Some(train);
            save_checkpoint(out, step + 1, &model, &optimizer)?;
        }
    }
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    write_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    Ok(summary)
}

fn load_data(source: &DataSource) -> Result<(ImageDataset, ImageDataset)> {
    match source {
        DataSource::EmbeddedFashionMnist => idx::embedded_fashion_mnist(),
        DataSource::Idx(dir) => idx::load_dir(dir).context("data.source"),
    }
}

fn check_model_fits_data(m: &bigbatch_models::ResNetConfig, data: &ImageDataset) -> Result<()> {
    if m.in_channels != data.channels {
        bail!(
            "model.in_channels: the data has {} channel(s), the model expects {}",
            data.channels,
            m.in_channels
        );
    }
    if m.image_size != data.height || m.image_size != data.width {
        bail!(
            "model.image_size: the data has {}x{} images, the model expects {}",
            data.height,
            data.width,
            m.image_size
        );
    }
    if m.num_classes < data.num_classes {
        bail!(
            "model.num_classes: the data has {} classes, the model only {}",
            data.num_classes,
            m.num_classes
        );
    }
    Ok(())
}

/// Label-smoothed targets `(1 - tau) onehot + tau / K` (Szegedy et al. 2016).
fn smoothed_targets(
    data: &ImageDataset,
    indices: &[usize],
    tau: f64,
    device: &Device,
) -> Tensor<2> {
    let k = data.num_classes;
    let off = (tau / k as f64) as f32;
    let on = (1.0 - tau) as f32 + off;
    let mut values = vec![off; indices.len() * k];
    for (row, &i) in indices.iter().enumerate() {
        values[row * k + data.labels[i] as usize] = on;
    }
    Tensor::from_data(TensorData::new(values, [indices.len(), k]), device)
}

/// Mean over the batch of `-sum_k q_k log softmax(z)_k`.
fn cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let k = logits.dims()[1];
    let targets = if targets.dims()[1] == k {
        targets
    } else {
        // The model has more outputs than the data has classes: pad the targets with zeros.
        let [b, c] = targets.dims();
        Tensor::cat(
            vec![
                targets.clone(),
                Tensor::zeros([b, k - c], &targets.device()),
            ],
            1,
        )
    };
    (log_softmax(logits, 1) * targets).sum_dim(1).mean().neg()
}

/// Top-1 accuracy with batch norm in inference mode (running statistics).
pub fn accuracy(model: &ResNet, data: &ImageDataset, norm: (f64, f64), device: &Device) -> f64 {
    let eval = model.valid();
    let plain = device.clone().inner();
    let mut correct = 0usize;
    let all: Vec<usize> = (0..data.len()).collect();
    for chunk in all.chunks(500) {
        let (images, labels) = data.batch(chunk, norm, &plain);
        let predicted = eval.forward(images).argmax(1).reshape([chunk.len()]);
        let hits: i64 = predicted.equal(labels).int().sum().into_scalar::<i64>();
        correct += hits as usize;
    }
    correct as f64 / data.len() as f64
}

fn groups_line(optimizer: &ModelOptimizer) -> serde_json::Value {
    let groups: Vec<_> = optimizer
        .group_summary()
        .into_iter()
        .map(|(name, settings, tensors, scalars)| {
            json!({"group": name, "settings": settings, "tensors": tensors, "parameters": scalars})
        })
        .collect();
    json!({ "groups": groups })
}

fn progress_bar(steps: u64, visible: bool) -> ProgressBar {
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}<{eta_precise}] {bar:30} {pos}/{len} {msg}",
        )
        .expect("valid template"),
    );
    bar
}

/// Appends JSON lines, flushed one by one so a crash loses at most the line being written.
struct Metrics {
    file: std::fs::File,
}

impl Metrics {
    fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { file })
    }

    fn append(path: &Path) -> Result<Self> {
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file })
    }

    fn write(&mut self, line: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        Ok(())
    }
}
