//! One training run: config -> model + parameter groups -> optimizer -> train loop -> metrics.
//!
//! The run directory receives `config.ron` (the resolved config), `metrics.jsonl` (one JSON
//! object per line: the parameter groups, then per step `loss` and `lr`, and at each evaluation
//! `val_accuracy` and `train_accuracy`) and `summary.json` (written atomically at the end). A
//! non-finite loss ends the run with status `diverged`, the step and the reason recorded.

use crate::run_config::{DataSource, ModelConfig, RunConfig};
use anyhow::{Context, Result, bail};
use bigbatch_core::ModelOptimizer;
use bigbatch_core::config::{to_ron, write_atomic};
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
    let mut metrics = Metrics::create(&out.join("metrics.jsonl"))?;
    metrics.write(&groups_line(&optimizer))?;

    let t = &config.train;
    let mut sampler = EpochSampler::new(train_set.len(), t.batch_size, t.seed ^ 0x5eed_da7a)?;
    let bar = progress_bar(t.steps, options.progress);
    let mut summary = RunSummary {
        status: Status::Completed,
        steps: 0,
        reason: None,
        final_val_accuracy: None,
        final_train_accuracy: None,
        final_loss: None,
        seconds: 0.0,
    };
    for step in 0..t.steps {
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

    fn write(&mut self, line: &serde_json::Value) -> Result<()> {
        let mut text = serde_json::to_string(line)?;
        text.push('\n');
        self.file.write_all(text.as_bytes())?;
        Ok(())
    }
}
