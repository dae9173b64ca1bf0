//! A multi-layer perceptron on MNIST-style images, as a workload plugin: the example of
//! "Adding a workload" in the README. It lives outside `crates/` and uses only the public API of
//! `bigbatch-engine` and `bigbatch-data`: no line of core, the engine or the CLI names it. A
//! run config selects it with
//!
//! ```ron
//! model: Plugin(name: "mlp", config: (hidden: [128], classes: 10)),
//! data: (source: EmbeddedFashionMnist),
//! ```
//!
//! Model: `flatten -> (Linear -> ReLU) per hidden width -> Linear` (burn's `Linear`, whose
//! weights start uniform in `+-1/sqrt(fan_in)`). Loss: the mean over the batch of the softmax
//! cross-entropy, each micro-batch's sum divided by the whole batch's size, so gradient
//! accumulation gives the one-piece gradient. Accuracy: top-1.

use anyhow::{Context, Result, bail};
use bigbatch_data::{EpochSampler, ImageDataset, idx};
use bigbatch_engine::run_config::DataSource;
use bigbatch_engine::workload::{Evaluation, Trainable, Workload, WorkloadContext, WorkloadPlugin};
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::{Device, Int, Tensor};
use serde::Deserialize;
use std::ops::Range;

/// The workload's config section (`model: Plugin(name: "mlp", config: (...))`).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    /// Widths of the hidden layers, in order (default one layer of 128).
    #[serde(default = "default_hidden")]
    pub hidden: Vec<usize>,
    /// Output classes (at least the data's).
    #[serde(default = "default_classes")]
    pub classes: usize,
}

fn default_hidden() -> Vec<usize> {
    vec![128]
}
fn default_classes() -> usize {
    10
}

#[derive(Module, Debug)]
pub struct Mlp {
    pub layers: Vec<Linear>,
}

impl Mlp {
    /// Logits `[n, classes]` of images `[n, c, h, w]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let mut x: Tensor<2> = images.flatten(1, 3);
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x);
            if i < last {
                x = relu(x);
            }
        }
        x
    }
}

/// The MLP on images held in memory, normalised by the training set's pixel mean and std.
pub struct MlpClassification {
    config: MlpConfig,
    inputs: usize,
    train: ImageDataset,
    val: ImageDataset,
    train_eval: ImageDataset,
    norm: (f64, f64),
    sampler: EpochSampler,
}

impl MlpClassification {
    pub fn new(config: MlpConfig, ctx: &WorkloadContext) -> Result<Self> {
        let (train, val) = match ctx.data {
            DataSource::EmbeddedFashionMnist => idx::embedded_fashion_mnist()?,
            DataSource::Idx(dir) => idx::load_dir(dir).context("data.source")?,
            other => bail!("data.source: {other:?} does not hold images for the mlp workload"),
        };
        if config.classes < train.num_classes {
            bail!(
                "{}.classes: the data has {} classes, the model only {}",
                ctx.prefix,
                train.num_classes,
                config.classes
            );
        }
        let t = ctx.train;
        Ok(Self {
            inputs: train.channels * train.height * train.width,
            norm: train.pixel_stats(),
            train_eval: train.head(t.train_eval_examples),
            sampler: EpochSampler::new(train.len(), t.batch_size, t.seed ^ 0x5eed_da7a)?,
            train,
            val,
            config,
        })
    }

    fn accuracy(&self, model: &Mlp, data: &ImageDataset, device: &Device) -> f64 {
        let model = model.valid();
        let plain = device.clone().inner();
        let all: Vec<usize> = (0..data.len()).collect();
        let correct: i64 = all
            .chunks(500)
            .map(|chunk| {
                let (images, labels) = data.batch(chunk, self.norm, &plain);
                hits(&model, images, labels)
            })
            .sum();
        correct as f64 / data.len() as f64
    }
}

fn hits(model: &Mlp, images: Tensor<4>, labels: Tensor<1, Int>) -> i64 {
    let n = labels.dims()[0];
    let predicted = model.forward(images).argmax(1).reshape([n]);
    predicted.equal(labels).int().sum().into_scalar::<i64>()
}

impl Workload for MlpClassification {
    type Model = Mlp;
    /// Example indices.
    type Batch = Vec<usize>;

    fn init(&self, device: &Device) -> Result<Mlp> {
        let mut widths = vec![self.inputs];
        widths.extend(&self.config.hidden);
        widths.push(self.config.classes);
        let layers = widths
            .windows(2)
            .map(|w| LinearConfig::new(w[0], w[1]).init(device))
            .collect();
        Ok(Mlp { layers })
    }

    fn next_batch(&mut self) -> Result<Vec<usize>> {
        Ok(self.sampler.next_batch().to_vec())
    }

    fn part_loss(
        &self,
        model: &Mlp,
        batch: &Vec<usize>,
        range: Range<usize>,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let (images, labels) = self.train.batch(&batch[range], self.norm, device);
        let n = labels.dims()[0];
        let log_p = log_softmax(model.forward(images), 1);
        // -log p(label) of each example, summed, over the whole batch's size.
        let picked = log_p.gather(1, labels.reshape([n, 1]));
        Ok(picked.sum().neg().div_scalar(batch.len() as f64))
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        self.sampler.skip(n);
        Ok(())
    }

    fn evaluate(&mut self, model: &Mlp, device: &Device) -> Result<Evaluation> {
        Ok(Evaluation {
            val_accuracy: self.accuracy(model, &self.val, device),
            train_accuracy: self.accuracy(model, &self.train_eval, device),
            extra: Vec::new(),
        })
    }
}

fn validate(config: &serde_json::Value, ctx: &WorkloadContext) -> Result<()> {
    let c: MlpConfig = ctx.parse_config(config)?;
    if c.hidden.contains(&0) {
        bail!(
            "{}.hidden: expected positive widths, got {:?}",
            ctx.prefix,
            c.hidden
        );
    }
    if c.classes < 2 {
        bail!(
            "{}.classes: expected at least 2, got {}",
            ctx.prefix,
            c.classes
        );
    }
    Ok(())
}

fn build(config: &serde_json::Value, ctx: &WorkloadContext) -> Result<Box<dyn Trainable>> {
    Ok(Box::new(MlpClassification::new(
        ctx.parse_config(config)?,
        ctx,
    )?))
}

bigbatch_engine::inventory::submit! {
    WorkloadPlugin {
        name: "mlp",
        description: "a multi-layer perceptron on MNIST-style images (an example plugin)",
        config_doc: "hidden: [usize] = [128] (hidden widths), classes: usize = 10",
        validate,
        build,
    }
}

/// Keeps this crate linked: a binary carries the `mlp` workload only if it calls this.
pub fn link() {}
