//! Image classification workloads for ResNet: images held in memory (Fashion-MNIST / MNIST) and
//! ImageNet streamed from JPEG folders through the MLPerf preprocessing.
//!
//! Loss: mean over the batch of `-sum_k q_k log softmax(z)_k` with label-smoothed targets
//! `q = (1 - tau) onehot + tau / K` (Szegedy et al. 2016). Accuracy: top-1 with batch norm in
//! inference mode (running statistics).

use anyhow::{Context, Result, bail};
use bigbatch_data::imagenet::{ImageBatch, ImageFolder, LoaderConfig, load_epoch};
use bigbatch_data::{EpochSampler, ImageDataset, idx};
use bigbatch_engine::run_config::{DataSource, ImageNetSource, TrainSettings};
use bigbatch_engine::workload::{Evaluation, Workload};
use bigbatch_models::{ResNet, ResNetConfig};
use burn::module::Module;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor, TensorData};
use std::ops::Range;
use std::sync::mpsc::{Receiver, sync_channel};

/// Label-smoothed one-hot targets `[batch, k]`.
fn smoothed_targets(labels: &[u32], k: usize, tau: f64, device: &Device) -> Tensor<2> {
    let off = (tau / k as f64) as f32;
    let on = (1.0 - tau) as f32 + off;
    let mut values = vec![off; labels.len() * k];
    for (row, &label) in labels.iter().enumerate() {
        values[row * k + label as usize] = on;
    }
    Tensor::from_data(TensorData::new(values, [labels.len(), k]), device)
}

/// `-sum_k q_k log softmax(z)_k` summed over the rows of a part and divided by the whole batch's
/// size, so that the parts of a batch sum to the mean over the batch.
fn cross_entropy(logits: Tensor<2>, targets: Tensor<2>, batch_size: usize) -> Tensor<1> {
    (log_softmax(logits, 1) * targets)
        .sum()
        .neg()
        .div_scalar(batch_size as f64)
}

/// Top-1 hits of `model` in inference mode on one batch.
fn hits(eval: &ResNet, images: Tensor<4>, labels: Tensor<1, Int>) -> usize {
    let n = labels.dims()[0];
    let predicted = eval.forward(images).argmax(1).reshape([n]);
    predicted.equal(labels).int().sum().into_scalar::<i64>() as usize
}

fn check_model_fits(
    m: &ResNetConfig,
    channels: usize,
    height: usize,
    width: usize,
    classes: usize,
) -> Result<()> {
    if m.in_channels != channels {
        bail!(
            "model.in_channels: the data has {channels} channel(s), the model expects {}",
            m.in_channels
        );
    }
    if m.image_size != height || m.image_size != width {
        bail!(
            "model.image_size: the data has {height}x{width} images, the model expects {}",
            m.image_size
        );
    }
    if m.num_classes < classes {
        bail!(
            "model.num_classes: the data has {classes} classes, the model only {}",
            m.num_classes
        );
    }
    Ok(())
}

/// ResNet on images held in memory, normalised by the training set's pixel mean and std.
pub struct InMemoryClassification {
    model: ResNetConfig,
    train: ImageDataset,
    val: ImageDataset,
    train_eval: ImageDataset,
    norm: (f64, f64),
    sampler: EpochSampler,
    tau: f64,
    batch_size: usize,
}

impl InMemoryClassification {
    pub fn new(model: &ResNetConfig, source: &DataSource, t: &TrainSettings) -> Result<Self> {
        let (train, val) = match source {
            DataSource::EmbeddedFashionMnist => idx::embedded_fashion_mnist()?,
            DataSource::Idx(dir) => idx::load_dir(dir).context("data.source")?,
            other => bail!("data.source: {other:?} does not hold images for a ResNet"),
        };
        check_model_fits(
            model,
            train.channels,
            train.height,
            train.width,
            train.num_classes,
        )?;
        Ok(Self {
            model: model.clone(),
            norm: train.pixel_stats(),
            train_eval: train.head(t.train_eval_examples),
            sampler: EpochSampler::new(train.len(), t.batch_size, t.seed ^ 0x5eed_da7a)?,
            train,
            val,
            tau: t.label_smoothing,
            batch_size: t.batch_size,
        })
    }

    fn accuracy(&self, model: &ResNet, data: &ImageDataset, device: &Device) -> f64 {
        let eval = model.valid();
        let plain = device.clone().inner();
        let all: Vec<usize> = (0..data.len()).collect();
        let correct: usize = all
            .chunks(500)
            .map(|chunk| {
                let (images, labels) = data.batch(chunk, self.norm, &plain);
                hits(&eval, images, labels)
            })
            .sum();
        correct as f64 / data.len() as f64
    }
}

impl Workload for InMemoryClassification {
    type Model = ResNet;
    /// Example indices.
    type Batch = Vec<usize>;

    fn init(&self, device: &Device) -> Result<ResNet> {
        self.model.init_for_batch(device, self.batch_size)
    }

    fn next_batch(&mut self) -> Result<Vec<usize>> {
        Ok(self.sampler.next_batch().to_vec())
    }

    fn part_loss(
        &self,
        model: &ResNet,
        batch: &Vec<usize>,
        range: Range<usize>,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let indices = &batch[range.clone()];
        let (images, _) = self.train.batch(indices, self.norm, device);
        let labels: Vec<u32> = indices
            .iter()
            .map(|&i| u32::from(self.train.labels[i]))
            .collect();
        let targets = smoothed_targets(&labels, self.model.num_classes, self.tau, device);
        let logits = model.forward_from(images, range.start);
        Ok(cross_entropy(logits, targets, batch.len()))
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        self.sampler.skip(n);
        Ok(())
    }

    fn evaluate(&mut self, model: &ResNet, device: &Device) -> Result<Evaluation> {
        Ok(Evaluation {
            val_accuracy: self.accuracy(model, &self.val, device),
            train_accuracy: self.accuracy(model, &self.train_eval, device),
            extra: Vec::new(),
        })
    }
}

/// ResNet on ImageNet folders: training batches decoded and augmented by the parallel loader on
/// a background thread, epoch after epoch (epoch `e` shuffled by (seed, e)), at most `prefetch`
/// batches ahead; evaluation on the whole validation folder and on the first
/// `train.train_eval_examples` training files, both with the evaluation transform.
pub struct ImageNetClassification {
    model: ResNetConfig,
    dir: std::path::PathBuf,
    val: ImageFolder,
    train_eval: ImageFolder,
    loader: LoaderConfig,
    batches: Receiver<Result<ImageBatch, String>>,
    tau: f64,
}

impl ImageNetClassification {
    pub fn new(model: &ResNetConfig, source: &ImageNetSource, t: &TrainSettings) -> Result<Self> {
        let train = ImageFolder::scan(&source.dir.join("train")).context("data.source")?;
        let val = match &source.val_labels {
            Some(labels) => ImageFolder::flat(&source.dir.join("val"), labels, &train.classes),
            None => ImageFolder::scan(&source.dir.join("val")).and_then(|v| {
                if v.classes != train.classes {
                    bail!(
                        "{}: the validation classes differ from the training classes",
                        source.dir.join("val").display()
                    );
                }
                Ok(v)
            }),
        }
        .context("data.source")?;
        check_model_fits(
            model,
            3,
            model.image_size,
            model.image_size,
            train.classes.len(),
        )?;
        if train.files.len() < t.batch_size {
            bail!(
                "train.batch_size: {} is larger than the {} training images",
                t.batch_size,
                train.files.len()
            );
        }
        let loader = LoaderConfig {
            batch_size: t.batch_size,
            workers: source.workers,
            prefetch: source.prefetch,
            seed: t.seed,
            image_size: model.image_size as u32,
            train: true,
        };
        let (tx, rx) = sync_channel(source.prefetch.max(1));
        let (folder, cfg) = (train.clone(), loader.clone());
        let train_dir = source.dir.join("train");
        std::thread::spawn(move || {
            for epoch in 0.. {
                let mut delivered = 0usize;
                let sent = load_epoch(&folder, &cfg, epoch, |batch| {
                    delivered += 1;
                    tx.send(Ok(batch))
                        .map_err(|_| anyhow::anyhow!("the training loop has stopped"))
                });
                match sent {
                    Ok(report) => {
                        let skipped = report.skipped.len();
                        for (path, reason) in report.skipped {
                            eprintln!("epoch {epoch}: skipped {}: {reason}", path.display());
                        }
                        // An epoch that cannot fill one batch would make the loader cycle
                        // forever without training.
                        if delivered == 0 {
                            let _ = tx.send(Err(format!(
                                "{}: only {} of {} training images could be decoded, fewer than one batch of {}",
                                train_dir.display(),
                                folder.files.len() - skipped,
                                folder.files.len(),
                                cfg.batch_size
                            )));
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(format!("{e:#}")));
                        return;
                    }
                }
            }
        });
        let mut train_eval = train.clone();
        train_eval.files.truncate(t.train_eval_examples);
        Ok(Self {
            model: model.clone(),
            dir: source.dir.clone(),
            val,
            train_eval,
            loader,
            batches: rx,
            tau: t.label_smoothing,
        })
    }

    fn receive(&mut self) -> Result<ImageBatch> {
        match self.batches.recv() {
            Ok(Ok(batch)) => Ok(batch),
            Ok(Err(e)) => bail!("data.source: {e}"),
            Err(_) => bail!("data.source: the ImageNet loader stopped"),
        }
    }

    fn accuracy(
        &self,
        model: &ResNet,
        folder: &ImageFolder,
        dir: &std::path::Path,
        device: &Device,
    ) -> Result<f64> {
        let eval = model.valid();
        let plain = device.clone().inner();
        let cfg = LoaderConfig {
            train: false,
            batch_size: self.loader.batch_size.min(folder.files.len()).max(1),
            ..self.loader.clone()
        };
        let s = self.model.image_size;
        let (mut correct, mut seen) = (0, 0);
        load_epoch(folder, &cfg, 0, |batch| {
            let n = batch.labels.len();
            let images = Tensor::from_data(TensorData::new(batch.images, [n, 3, s, s]), &plain);
            let labels: Vec<i64> = batch.labels.iter().map(|&l| l as i64).collect();
            let labels = Tensor::from_data(TensorData::new(labels, [n]), &plain);
            correct += hits(&eval, images, labels);
            seen += n;
            Ok(())
        })?;
        if seen == 0 {
            bail!(
                "data.source: no image of {} ({} files) could be decoded, so accuracy cannot be measured",
                dir.display(),
                folder.files.len()
            );
        }
        Ok(correct as f64 / seen as f64)
    }
}

impl Workload for ImageNetClassification {
    type Model = ResNet;
    type Batch = ImageBatch;

    fn init(&self, device: &Device) -> Result<ResNet> {
        self.model.init_for_batch(device, self.loader.batch_size)
    }

    fn next_batch(&mut self) -> Result<ImageBatch> {
        self.receive()
    }

    fn part_loss(
        &self,
        model: &ResNet,
        batch: &ImageBatch,
        range: Range<usize>,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let (n, s) = (range.len(), self.model.image_size);
        let pixels = 3 * s * s;
        let values = batch.images[range.start * pixels..range.end * pixels].to_vec();
        let images = Tensor::from_data(TensorData::new(values, [n, 3, s, s]), device);
        let labels = &batch.labels[range.clone()];
        let targets = smoothed_targets(labels, self.model.num_classes, self.tau, device);
        let logits = model.forward_from(images, range.start);
        Ok(cross_entropy(logits, targets, batch.labels.len()))
    }

    /// Resuming decodes and drops the batches already trained on, so the data order continues
    /// exactly.
    fn skip(&mut self, n: u64) -> Result<()> {
        for _ in 0..n {
            self.receive()?;
        }
        Ok(())
    }

    fn evaluate(&mut self, model: &ResNet, device: &Device) -> Result<Evaluation> {
        Ok(Evaluation {
            val_accuracy: self.accuracy(model, &self.val, &self.dir.join("val"), device)?,
            train_accuracy: self.accuracy(
                model,
                &self.train_eval,
                &self.dir.join("train"),
                device,
            )?,
            extra: Vec::new(),
        })
    }
}
