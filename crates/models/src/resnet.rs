//! ResNet v1.5 (He et al. 2016 with the stride on the 3x3 convolution, as in the MLPerf
//! reference), parametrised by depths, widths, stem, input channels, image size and classes.
//!
//! Parameter paths follow torchvision (`conv1.weight`, `bn1.gamma`, `layer1.0.conv2.weight`,
//! `layer1.0.bn3.gamma`, `layer1.0.downsample.conv.weight`, `fc.bias`) and stay the same across
//! versions and sizes.
//!
//! Batch norm ([`GhostBatchNorm`], virtual batches optional) follows the paper's convention:
//! running statistics are updated as `running = rho running + (1 - rho) batch`, beta starts at 0,
//! gamma at 1 except the last batch norm of each residual block, which starts at `gamma0`
//! (0.0 in MLPerf; 0.4138 in the paper's Nesterov configuration B).
//!
//! Initialisation: convolutions He-normal with fan-out (`std = sqrt(2 / (k*k*out))`, torchvision
//! and the MLPerf PyTorch reference); the classifier uses burn's default (Kaiming-uniform with gain
//! `1/sqrt(3)`, i.e. torch's `nn.Linear` default).

use crate::conv;
use crate::ghost_bn::GhostBatchNorm;
use anyhow::{Result, bail};
use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Initializer, Linear, LinearConfig, PaddingConfig2d};
use burn::tensor::activation::relu;
use burn::tensor::{Device, Tensor};
use serde::{Deserialize, Serialize};

/// Where a bottleneck block strides.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResNetVersion {
    /// Stride on the 3x3 convolution (MLPerf ResNet-50 v1.5).
    #[default]
    V1_5,
    /// Stride on the first 1x1 convolution (the original ResNet).
    V1_0,
}

/// The stem before the four stages.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// 7x7 stride-2 convolution, batch norm, ReLU, 3x3 stride-2 max pool (ImageNet).
    ImageNet,
    /// 3x3 convolution with the given stride, batch norm, ReLU, no pooling (small images such as
    /// 28x28; stride 2 quarters the cost of every later layer).
    Small { stride: usize },
}

/// Batch-norm settings.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BatchNormSettings {
    /// Added to the variance (MLPerf: 1e-5).
    pub epsilon: f64,
    /// `rho` in `running = rho running + (1 - rho) batch` (MLPerf: 0.9).
    pub momentum: f64,
    /// Initial gamma of the last batch norm of every residual block (MLPerf: 0.0).
    pub gamma0: f64,
    /// Ghost batch norm: training statistics per group of this many examples (the paper's LARS
    /// pipeline: 64; Nesterov tables: 128); `None`: the whole batch. Must divide the batch size.
    #[serde(default)]
    pub virtual_batch_size: Option<usize>,
}

/// A ResNet of bottleneck blocks.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ResNetConfig {
    /// Bottleneck blocks per stage.
    pub depths: [usize; 4],
    /// Inner width of the bottlenecks per stage (the block output is 4x this).
    pub widths: [usize; 4],
    pub stem_width: usize,
    pub stem: Stem,
    pub in_channels: usize,
    pub image_size: usize,
    pub num_classes: usize,
    pub bn: BatchNormSettings,
    #[serde(default)]
    pub version: ResNetVersion,
}

/// Output channels of a bottleneck relative to its inner width.
pub const EXPANSION: usize = 4;

impl ResNetConfig {
    /// ResNet-50 v1.5 at 224x224x3 with 1000 classes, MLPerf batch-norm settings.
    pub fn resnet50() -> Self {
        Self {
            depths: [3, 4, 6, 3],
            widths: [64, 128, 256, 512],
            stem_width: 64,
            stem: Stem::ImageNet,
            in_channels: 3,
            image_size: 224,
            num_classes: 1000,
            bn: BatchNormSettings {
                epsilon: 1e-5,
                momentum: 0.9,
                gamma0: 0.0,
                virtual_batch_size: None,
            },
            version: ResNetVersion::V1_5,
        }
    }

    /// A CPU-sized ResNet v1.5 for 28x28 grayscale images (Fashion-MNIST/MNIST).
    pub fn resnet_mini() -> Self {
        Self {
            depths: [1, 1, 1, 1],
            widths: [8, 16, 32, 64],
            stem_width: 16,
            stem: Stem::Small { stride: 1 },
            in_channels: 1,
            image_size: 28,
            num_classes: 10,
            bn: BatchNormSettings {
                epsilon: 1e-5,
                momentum: 0.9,
                gamma0: 0.0,
                virtual_batch_size: None,
            },
            version: ResNetVersion::V1_5,
        }
    }

    /// Checks the numbers; errors name the field under `model.`.
    pub fn validate(&self) -> Result<()> {
        if self.depths.contains(&0) {
            bail!(
                "model.depths: every stage needs at least one block, got {:?}",
                self.depths
            );
        }
        for (name, v) in [
            ("stem_width", self.stem_width),
            ("in_channels", self.in_channels),
            ("image_size", self.image_size),
            ("num_classes", self.num_classes),
        ] {
            if v == 0 {
                bail!("model.{name}: expected a positive number");
            }
        }
        if let Stem::Small { stride: 0 } = self.stem {
            bail!("model.stem: expected a positive stride");
        }
        if self.widths.contains(&0) {
            bail!(
                "model.widths: expected positive widths, got {:?}",
                self.widths
            );
        }
        if !(self.bn.epsilon > 0.0 && self.bn.epsilon.is_finite()) {
            bail!(
                "model.bn.epsilon: expected a positive number, got {}",
                self.bn.epsilon
            );
        }
        if !(0.0..=1.0).contains(&self.bn.momentum) {
            bail!(
                "model.bn.momentum: expected rho in [0, 1], got {}",
                self.bn.momentum
            );
        }
        if self.bn.virtual_batch_size == Some(0) {
            bail!("model.bn.virtual_batch_size: expected a positive number of examples or None");
        }
        if !self.bn.gamma0.is_finite() {
            bail!("model.bn.gamma0: expected a finite number");
        }
        Ok(())
    }

    /// Builds the model on `device` (use an autodiff device for training) for training batches
    /// of one virtual batch (or any size without virtual batches).
    pub fn init(&self, device: &Device) -> Result<ResNet> {
        self.init_for_batch(device, self.bn.virtual_batch_size.unwrap_or(1))
    }

    /// Builds the model for training batches of `batch_size` examples: batch norm keeps one pair
    /// of running statistics per virtual batch of such a batch ([`GhostBatchNorm`]).
    pub fn init_for_batch(&self, device: &Device, batch_size: usize) -> Result<ResNet> {
        self.validate()?;
        if let Some(v) = self.bn.virtual_batch_size
            && !batch_size.is_multiple_of(v)
        {
            bail!(
                "model.bn.virtual_batch_size: {v} does not divide the batch of {batch_size}; every virtual batch must be full"
            );
        }
        let device_batch = (device, batch_size);
        let (conv1, max_pool) = match self.stem {
            Stem::ImageNet => (
                conv(self.in_channels, self.stem_width, 7, 2, 3, device),
                Some(
                    MaxPool2dConfig::new([3, 3])
                        .with_strides([2, 2])
                        .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                        .init(),
                ),
            ),
            Stem::Small { stride } => (
                conv(self.in_channels, self.stem_width, 3, stride, 1, device),
                None,
            ),
        };
        let bn1 = batch_norm(self.stem_width, &self.bn, 1.0, device_batch);
        let mut in_channels = self.stem_width;
        let mut stages = Vec::new();
        for (i, (&depth, &width)) in self.depths.iter().zip(&self.widths).enumerate() {
            let stride = if i == 0 { 1 } else { 2 };
            let mut blocks = Vec::new();
            for b in 0..depth {
                let s = if b == 0 { stride } else { 1 };
                blocks.push(Bottleneck::new(in_channels, width, s, self, device_batch));
                in_channels = width * EXPANSION;
            }
            stages.push(blocks);
        }
        let [layer1, layer2, layer3, layer4]: [Vec<Bottleneck>; 4] =
            stages.try_into().expect("four stages");
        let fc = LinearConfig::new(in_channels, self.num_classes).init(device);
        Ok(ResNet {
            conv1,
            bn1,
            max_pool,
            layer1,
            layer2,
            layer3,
            layer4,
            fc,
        })
    }
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, device: &Device) -> Conv2d {
    Conv2dConfig::new([cin, cout], [k, k])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
        .with_bias(false)
        .with_initializer(Initializer::KaimingNormal {
            gain: std::f64::consts::SQRT_2,
            fan_out_only: true,
        })
        .init(device)
}

fn batch_norm(
    channels: usize,
    s: &BatchNormSettings,
    gamma: f64,
    (device, batch_size): (&Device, usize),
) -> GhostBatchNorm {
    GhostBatchNorm::new(
        channels,
        gamma,
        s.momentum,
        s.epsilon,
        s.virtual_batch_size,
        batch_size,
        device,
    )
}

/// The projection shortcut: 1x1 convolution with the block's stride, then batch norm.
#[derive(Module, Debug)]
pub struct Downsample {
    pub conv: Conv2d,
    pub bn: GhostBatchNorm,
}

/// A bottleneck block: 1x1 -> 3x3 -> 1x1 (x4 channels), each followed by batch norm, plus the
/// shortcut; ReLU after the first two and after the sum.
#[derive(Module, Debug)]
pub struct Bottleneck {
    pub conv1: Conv2d,
    pub bn1: GhostBatchNorm,
    pub conv2: Conv2d,
    pub bn2: GhostBatchNorm,
    pub conv3: Conv2d,
    pub bn3: GhostBatchNorm,
    pub downsample: Option<Downsample>,
}

impl Bottleneck {
    fn new(
        cin: usize,
        width: usize,
        stride: usize,
        cfg: &ResNetConfig,
        (device, batch_size): (&Device, usize),
    ) -> Self {
        let at = (device, batch_size);
        let out = width * EXPANSION;
        let (s1, s2) = match cfg.version {
            ResNetVersion::V1_5 => (1, stride),
            ResNetVersion::V1_0 => (stride, 1),
        };
        let downsample = (stride != 1 || cin != out).then(|| Downsample {
            conv: conv(cin, out, 1, stride, 0, device),
            bn: batch_norm(out, &cfg.bn, 1.0, at),
        });
        Self {
            conv1: conv(cin, width, 1, s1, 0, device),
            bn1: batch_norm(width, &cfg.bn, 1.0, at),
            conv2: conv(width, width, 3, s2, 1, device),
            bn2: batch_norm(width, &cfg.bn, 1.0, at),
            conv3: conv(width, out, 1, 1, 0, device),
            bn3: batch_norm(out, &cfg.bn, cfg.bn.gamma0, at),
            downsample,
        }
    }

    /// The block on a part of the batch starting at example `first` (see
    /// [`GhostBatchNorm::forward_from`]).
    pub fn forward_from(&self, x: Tensor<4>, first: usize) -> Tensor<4> {
        let shortcut = match &self.downsample {
            Some(d) => d.bn.forward_from(conv::forward(&d.conv, x.clone()), first),
            None => x.clone(),
        };
        let y = relu(self.bn1.forward_from(conv::forward(&self.conv1, x), first));
        let y = relu(self.bn2.forward_from(conv::forward(&self.conv2, y), first));
        let y = self.bn3.forward_from(conv::forward(&self.conv3, y), first);
        relu(y + shortcut)
    }
}

/// The ResNet: stem, four stages, global average pooling, classifier.
#[derive(Module, Debug)]
pub struct ResNet {
    pub conv1: Conv2d,
    pub bn1: GhostBatchNorm,
    pub max_pool: Option<MaxPool2d>,
    pub layer1: Vec<Bottleneck>,
    pub layer2: Vec<Bottleneck>,
    pub layer3: Vec<Bottleneck>,
    pub layer4: Vec<Bottleneck>,
    pub fc: Linear,
}

impl ResNet {
    /// Images `[batch, channels, height, width]` to logits `[batch, classes]`.
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        self.forward_from(images, 0)
    }

    /// As [`forward`](Self::forward) for a part of the training batch that starts at example
    /// `first` (a micro-batch or a device's share): batch norm updates the running statistics of
    /// the part's virtual batches ([`GhostBatchNorm::forward_from`]).
    pub fn forward_from(&self, images: Tensor<4>, first: usize) -> Tensor<2> {
        let mut x = relu(
            self.bn1
                .forward_from(conv::forward(&self.conv1, images), first),
        );
        if let Some(pool) = &self.max_pool {
            x = pool.forward(x);
        }
        for block in self
            .layer1
            .iter()
            .chain(&self.layer2)
            .chain(&self.layer3)
            .chain(&self.layer4)
        {
            x = block.forward_from(x, first);
        }
        let [b, c, _, _] = x.dims();
        let pooled = x.mean_dim(3).mean_dim(2).reshape([b, c]);
        self.fc.forward(pooled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};

    /// torchvision's resnet50 has 25,557,032 parameters (conv + BN gamma/beta + fc).
    #[test]
    fn resnet50_parameter_count() {
        let _guard = crate::rng_guard();
        let device = Device::flex().autodiff();
        let model = ResNetConfig::resnet50().init(&device).unwrap();
        // num_params counts running statistics too (they are module state): subtract them.
        struct Trainable(usize);
        impl ModuleVisitor for Trainable {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                if p.is_require_grad() {
                    self.0 += p.lazy_shape().num_elements();
                }
            }
        }
        let mut count = Trainable(0);
        model.visit(&mut count);
        assert_eq!(count.0, 25_557_032);
    }

    #[test]
    fn mini_forward_shape_and_gamma0() {
        let _guard = crate::rng_guard();
        let device = Device::flex();
        let mut cfg = ResNetConfig::resnet_mini();
        cfg.bn.gamma0 = 0.25;
        let model = cfg.init(&device).unwrap();
        let out = model.forward(Tensor::zeros([2, 1, 28, 28], &device));
        assert_eq!(out.dims(), [2, 10]);
        let g: Vec<f32> = model.layer2[0]
            .bn3
            .gamma
            .val()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert!(g.iter().all(|&v| v == 0.25));
        let g: Vec<f32> = model.layer2[0]
            .bn2
            .gamma
            .val()
            .into_data()
            .try_to_vec()
            .unwrap();
        assert!(g.iter().all(|&v| v == 1.0));
    }

    #[test]
    fn stride_placement_by_version() {
        let _guard = crate::rng_guard();
        let device = Device::flex();
        let mut cfg = ResNetConfig::resnet_mini();
        let m = cfg.init(&device).unwrap();
        assert_eq!(m.layer2[0].conv2.stride, [2, 2]);
        assert_eq!(m.layer2[0].conv1.stride, [1, 1]);
        cfg.version = ResNetVersion::V1_0;
        let m = cfg.init(&device).unwrap();
        assert_eq!(m.layer2[0].conv1.stride, [2, 2]);
        assert_eq!(m.layer2[0].conv2.stride, [1, 1]);
    }

    #[test]
    fn invalid_config_names_field() {
        let mut cfg = ResNetConfig::resnet_mini();
        cfg.depths[2] = 0;
        let err = cfg.init(&Device::flex()).unwrap_err().to_string();
        assert!(err.contains("model.depths"), "{err}");
    }
}
