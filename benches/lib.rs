//! Shared pieces of the benchmarks: the full-size parameter sets, the optimizers measured, the
//! memory-traffic floor each one has, and the synthetic batches of the model benchmarks.

use bigbatch_core::ParamKind;
use bigbatch_core::params::{self, ParamInfo};
use bigbatch_models::{BertBatch, BertForPretraining, ResNet, ResNetConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Device, Distribution, Int, Tensor, TensorData};

/// Random normal images `[b, channels, size, size]` with one-hot labels `i mod classes`.
pub struct SyntheticImages {
    images: Tensor<4>,
    targets: Tensor<2>,
}

impl SyntheticImages {
    pub fn new(b: usize, channels: usize, size: usize, classes: usize, device: &Device) -> Self {
        let images = Tensor::<4>::random(
            [b, channels, size, size],
            Distribution::Normal(0.0, 1.0),
            device,
        );
        let labels: Vec<i64> = (0..b as i64).map(|i| i % classes as i64).collect();
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels, [b]), device)
            .one_hot(classes)
            .float();
        Self { images, targets }
    }

    /// Mean cross-entropy of `model` on the batch (training mode on an autodiff device).
    pub fn loss(&self, model: &ResNet) -> Tensor<1> {
        (log_softmax(model.forward(self.images.clone()), 1) * self.targets.clone())
            .sum_dim(1)
            .mean()
            .neg()
    }
}

/// A deterministic pretraining batch: `b` sequences of `s` tokens (ids spread over the
/// vocabulary, segment B in the second half, no padding), `p` predictions each at spread
/// positions, alternating next-sentence labels.
pub struct SyntheticBert {
    batch: BertBatch,
    positions: Tensor<2, Int>,
    labels: Tensor<2, Int>,
    weights: Tensor<2>,
    next: Tensor<1, Int>,
}

impl SyntheticBert {
    pub fn new(b: usize, s: usize, p: usize, vocab: usize, device: &Device) -> Self {
        let v = vocab as i64;
        let int2 = |data: Vec<i64>, cols: usize| {
            Tensor::<2, Int>::from_data(TensorData::new(data, [b, cols]), device)
        };
        Self {
            batch: BertBatch {
                input_ids: int2((0..(b * s) as i64).map(|i| (i * 7919) % v).collect(), s),
                token_types: int2((0..b * s).map(|i| i64::from(i % s >= s / 2)).collect(), s),
                padding: Tensor::<2, Bool>::from_data(
                    TensorData::new(vec![false; b * s], [b, s]),
                    device,
                ),
                // Training-step dropout masks (they cost a host pass and an upload per site).
                dropout: Some(bigbatch_models::dropout::DropoutKey {
                    seed: 0,
                    step: 0,
                    first_example: 0,
                }),
            },
            positions: int2(
                (0..(b * p) as i64)
                    .map(|i| 1 + (i * 5) % (s as i64 - 2))
                    .collect(),
                p,
            ),
            labels: int2((0..(b * p) as i64).map(|i| (i * 31) % v).collect(), p),
            weights: Tensor::<2>::ones([b, p], device),
            next: Tensor::<1, Int>::from_data(
                TensorData::new((0..b as i64).map(|i| i % 2).collect::<Vec<_>>(), [b]),
                device,
            ),
        }
    }

    /// The pretraining loss (MLM + NSP) of `model` on the batch.
    pub fn loss(&self, model: &BertForPretraining) -> Tensor<1> {
        model
            .pretraining_loss(
                &self.batch,
                self.positions.clone(),
                self.labels.clone(),
                self.weights.clone(),
                self.next.clone(),
            )
            .loss
    }
}

/// ResNet-50 v1.5's trainable parameters (161 tensors, 25,557,032 values), from the model itself
/// (built on an autodiff device: only parameters that take gradients are trainable).
pub fn resnet50_params() -> Vec<ParamInfo> {
    let model = ResNetConfig::resnet50()
        .init(&Device::flex().autodiff())
        .expect("the ResNet-50 preset is valid");
    params::describe(&model)
}

/// BERT-Large's encoder with pooler (Devlin et al. 2019; google-research/bert `modeling.py`): 24
/// layers, hidden 1024, FFN 4096, vocabulary 30,522, 512 positions, 2 token types; 335,141,888
/// values in 391 tensors. Names follow the Hugging Face checkpoint layout.
pub fn bert_large_params() -> Vec<ParamInfo> {
    const H: usize = 1024;
    const FFN: usize = 4096;
    let mut out = Vec::new();
    let mut add = |path: String, kind: ParamKind, shape: &[usize]| {
        out.push(ParamInfo {
            path,
            kind,
            shape: shape.to_vec(),
        })
    };
    add(
        "embeddings.word_embeddings.weight".into(),
        ParamKind::Weight,
        &[30_522, H],
    );
    add(
        "embeddings.position_embeddings.weight".into(),
        ParamKind::Weight,
        &[512, H],
    );
    add(
        "embeddings.token_type_embeddings.weight".into(),
        ParamKind::Weight,
        &[2, H],
    );
    add("embeddings.LayerNorm.gamma".into(), ParamKind::Norm, &[H]);
    add("embeddings.LayerNorm.beta".into(), ParamKind::Norm, &[H]);
    for l in 0..24 {
        let p = format!("encoder.layer.{l}");
        for (name, fan_in, fan_out) in [
            ("attention.self.query", H, H),
            ("attention.self.key", H, H),
            ("attention.self.value", H, H),
            ("attention.output.dense", H, H),
            ("intermediate.dense", H, FFN),
            ("output.dense", FFN, H),
        ] {
            add(
                format!("{p}.{name}.weight"),
                ParamKind::Weight,
                &[fan_in, fan_out],
            );
            add(format!("{p}.{name}.bias"), ParamKind::Bias, &[fan_out]);
            if name == "attention.output.dense" {
                add(
                    format!("{p}.attention.output.LayerNorm.gamma"),
                    ParamKind::Norm,
                    &[H],
                );
                add(
                    format!("{p}.attention.output.LayerNorm.beta"),
                    ParamKind::Norm,
                    &[H],
                );
            }
        }
        add(format!("{p}.output.LayerNorm.gamma"), ParamKind::Norm, &[H]);
        add(format!("{p}.output.LayerNorm.beta"), ParamKind::Norm, &[H]);
    }
    add("pooler.dense.weight".into(), ParamKind::Weight, &[H, H]);
    add("pooler.dense.bias".into(), ParamKind::Bias, &[H]);
    out
}

/// An optimizer as benchmarked: every tensor in one group, weight decay 1e-4 in the optimizer's
/// own convention.
pub struct BenchOptimizer {
    pub name: &'static str,
    /// The `optimizer` section (RON).
    pub ron: &'static str,
    /// The optimizer it is compared with for the 1.15x target (`None` for base optimizers).
    pub base: Option<&'static str>,
    /// f32 words each parameter must be read or written per step by the best possible (fused)
    /// implementation; see `floor_words`.
    pub words: u32,
}

/// Minimal memory traffic per parameter and step, in f32 words, for a fused implementation:
///
/// - heavy_ball, nesterov: read w, g, v; write w, v = 5.
/// - adam, adamw, bert_adam: read w, g, m, v; write w, m, v = 7.
/// - lars (both variants): the trust ratio needs ||w|| and ||g|| (or ||g + lambda w||) before any
///   update, one extra read of w and g: 5 + 2 = 7.
/// - lamb: the trust ratio needs ||r|| of the Adam direction, which depends on the new moments:
///   pass 1 reads w, g, m, v and writes m, v (6); pass 2 reads w, m, v and writes w (4) = 10.
pub const OPTIMIZERS: &[BenchOptimizer] = &[
    BenchOptimizer {
        name: "heavy_ball",
        ron: r#"(default: (optimizer: (name: "heavy_ball"), weight_decay: 1e-4))"#,
        base: None,
        words: 5,
    },
    BenchOptimizer {
        name: "nesterov",
        ron: r#"(default: (optimizer: (name: "nesterov"), weight_decay: 1e-4))"#,
        base: None,
        words: 5,
    },
    BenchOptimizer {
        name: "lars_mlperf",
        ron: r#"(default: (optimizer: (name: "lars", config: (variant: "mlperf", nesterov: true)), weight_decay: 1e-4))"#,
        base: Some("nesterov"),
        words: 7,
    },
    BenchOptimizer {
        name: "lars_optax",
        ron: r#"(default: (optimizer: (name: "lars", config: (variant: "optax", nesterov: true)), weight_decay: 1e-4))"#,
        base: Some("nesterov"),
        words: 7,
    },
    BenchOptimizer {
        name: "adam",
        ron: r#"(default: (optimizer: (name: "adam"), weight_decay: 1e-4))"#,
        base: None,
        words: 7,
    },
    BenchOptimizer {
        name: "adamw",
        ron: r#"(default: (optimizer: (name: "adamw"), weight_decay: 1e-4))"#,
        base: None,
        words: 7,
    },
    BenchOptimizer {
        name: "bert_adam",
        ron: r#"(default: (optimizer: (name: "bert_adam"), weight_decay: 1e-4))"#,
        base: None,
        words: 7,
    },
    BenchOptimizer {
        name: "lamb",
        ron: r#"(default: (optimizer: (name: "lamb"), weight_decay: 1e-4))"#,
        base: Some("adamw"),
        words: 10,
    },
];

/// Copies `src` into `dst` on all available cores (STREAM "copy": 2 words per element).
pub fn parallel_copy(src: &[f32], dst: &mut [f32]) {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = src.len().div_ceil(threads);
    std::thread::scope(|s| {
        for (d, c) in dst.chunks_mut(chunk).zip(src.chunks(chunk)) {
            s.spawn(move || d.copy_from_slice(c));
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_sets_have_the_published_sizes() {
        let bert = bert_large_params();
        assert_eq!(
            bert.iter().map(ParamInfo::numel).sum::<usize>(),
            335_141_888
        );
        assert_eq!(bert.len(), 391);
        let resnet = resnet50_params();
        assert_eq!(resnet.len(), 161);
        assert_eq!(
            resnet.iter().map(ParamInfo::numel).sum::<usize>(),
            25_557_032
        );
    }

    #[test]
    fn every_benchmarked_optimizer_config_builds() {
        bigbatch_cli::link_plugins();
        for o in OPTIMIZERS {
            let setup = bigbatch_core::config::parse_ron(o.ron, o.name).unwrap();
            bigbatch_core::ModelOptimizer::new(&setup, bert_large_params()).unwrap();
        }
    }
}
