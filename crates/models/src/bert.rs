//! BERT (Devlin et al. 2019; google-research/bert `modeling.py`) for pretraining: the encoder with
//! pooler, plus the masked-LM head (dense + GELU + LayerNorm, decoder tied to the word embeddings,
//! output bias) and the next-sentence head.
//!
//! As in `modeling.py`: post-LayerNorm residual blocks, LayerNorm epsilon 1e-12, GELU in its tanh
//! form (`0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`), padding masked with an additive
//! -10000 on the attention scores, dropout 0.1 on hidden states and attention weights, the pooler
//! is `tanh(dense(h[CLS]))`, and the masked-LM head is evaluated only at the masked positions
//! (`gather_indexes`). Weights are drawn from a normal with std 0.02 (the reference truncates it at
//! two standard deviations; burn has no truncated normal), biases and LayerNorm beta are 0,
//! LayerNorm gamma is 1.
//!
//! Parameter paths: `embeddings.word_embeddings.weight`, `layers.3.attention.query.weight`,
//! `layers.3.attention_norm.gamma`, `layers.3.intermediate.weight`, `layers.3.output.bias`,
//! `layers.3.output_norm.beta`, `pooler.weight`, `mlm_dense.weight`, `mlm_norm.gamma`,
//! `mlm_bias`, `nsp.weight`.

use crate::dropout::{DropoutKey, dropout};
use anyhow::{Result, bail};
use burn::module::{Module, Param};
use burn::nn::attention::{MultiHeadAttention, MultiHeadAttentionConfig};
use burn::nn::{
    Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer, LayerNorm, LayerNormConfig,
    Linear, LinearConfig,
};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

/// BERT's GELU, google-research/bert `modeling.py` `gelu`:
/// `0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))`, with `x^3` as two products (burn's
/// `gelu_approximate` takes `powf`, which costs several times more forward and backward on CPU).
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let cube = x.clone() * x.clone() * x.clone();
    let inner = (x.clone() + cube * 0.044715) * SQRT_2_OVER_PI;
    (x * (inner.tanh() + 1)) * 0.5
}

/// The form of GELU in the feed-forward layers and the masked-LM head.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Gelu {
    /// google-research/bert's tanh approximation ([`gelu`]): about nine element-wise passes
    /// forward on burn's CPU backend, each kept for the backward pass.
    #[default]
    Tanh,
    /// The exact form `x Phi(x) = x (1 + erf(x / sqrt 2)) / 2` (the GELU paper; Hugging Face's
    /// BERT): burn's `activation::gelu`, one pass forward and one backward. It differs from the
    /// tanh form by at most 5e-4 (absolute).
    Erf,
}

impl Gelu {
    pub fn apply<const D: usize>(self, x: Tensor<D>) -> Tensor<D> {
        match self {
            Gelu::Tanh => gelu(x),
            Gelu::Erf => burn::tensor::activation::gelu(x),
        }
    }
}

/// A BERT size.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    /// The feed-forward width.
    pub intermediate: usize,
    pub max_positions: usize,
    pub type_vocab: usize,
    /// LayerNorm epsilon (BERT: 1e-12).
    pub layer_norm_eps: f64,
    /// Dropout on hidden states and attention weights (BERT: 0.1).
    pub dropout: f64,
    /// Std of the initial weights (BERT: 0.02).
    pub init_std: f64,
    /// GELU form (default `Tanh`, google-research/bert's).
    #[serde(default)]
    pub gelu: Gelu,
}

impl BertConfig {
    /// BERT-Large: 24 layers, hidden 1024, 16 heads, FFN 4096, vocabulary 30,522, 512 positions,
    /// 2 token types; 335,141,888 parameters in the encoder with pooler.
    pub fn bert_large() -> Self {
        Self {
            vocab_size: 30_522,
            hidden: 1024,
            layers: 24,
            heads: 16,
            intermediate: 4096,
            max_positions: 512,
            type_vocab: 2,
            layer_norm_eps: 1e-12,
            dropout: 0.1,
            init_std: 0.02,
            gelu: Gelu::Tanh,
        }
    }

    /// `bert-mini` (Turc et al. 2019's naming): 4 layers, hidden 256, 4 heads, FFN 1024.
    pub fn bert_mini() -> Self {
        Self {
            hidden: 256,
            layers: 4,
            heads: 4,
            intermediate: 1024,
            ..Self::bert_large()
        }
    }

    /// `bert-tiny`: 2 layers, hidden 128, 2 heads, FFN 512.
    pub fn bert_tiny() -> Self {
        Self {
            hidden: 128,
            layers: 2,
            heads: 2,
            intermediate: 512,
            ..Self::bert_large()
        }
    }

    /// Checks the numbers; errors name the field under `model.`.
    pub fn validate(&self) -> Result<()> {
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("hidden", self.hidden),
            ("layers", self.layers),
            ("heads", self.heads),
            ("intermediate", self.intermediate),
            ("max_positions", self.max_positions),
            ("type_vocab", self.type_vocab),
        ] {
            if v == 0 {
                bail!("model.{name}: expected a positive number");
            }
        }
        if !self.hidden.is_multiple_of(self.heads) {
            bail!(
                "model.heads: {} heads do not divide hidden size {}",
                self.heads,
                self.hidden
            );
        }
        if !(self.layer_norm_eps > 0.0 && self.layer_norm_eps.is_finite()) {
            bail!("model.layer_norm_eps: expected a positive number");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            bail!(
                "model.dropout: expected a rate in [0, 1), got {}",
                self.dropout
            );
        }
        if !(self.init_std > 0.0 && self.init_std.is_finite()) {
            bail!("model.init_std: expected a positive number");
        }
        Ok(())
    }

    fn init_normal(&self) -> Initializer {
        Initializer::Normal {
            mean: 0.0,
            std: self.init_std,
        }
    }

    fn linear(&self, d_in: usize, d_out: usize, device: &Device) -> Linear {
        zero_bias(
            LinearConfig::new(d_in, d_out)
                .with_initializer(self.init_normal())
                .init(device),
            device,
        )
    }

    fn norm(&self, device: &Device) -> LayerNorm {
        LayerNormConfig::new(self.hidden)
            .with_epsilon(self.layer_norm_eps)
            .init(device)
    }

    /// Builds BERT with its pretraining heads on `device`.
    pub fn init(&self, device: &Device) -> Result<BertForPretraining> {
        self.validate()?;
        let embedding = |n: usize| {
            EmbeddingConfig::new(n, self.hidden)
                .with_initializer(self.init_normal())
                .init(device)
        };
        let dropout = DropoutConfig::new(self.dropout).init();
        let layers = (0..self.layers)
            .map(|_| {
                let mut attention = MultiHeadAttentionConfig::new(self.hidden, self.heads)
                    .with_dropout(self.dropout)
                    .with_min_float(-10_000.0)
                    .with_initializer(self.init_normal())
                    .init(device);
                attention.query = zero_bias(attention.query, device);
                attention.key = zero_bias(attention.key, device);
                attention.value = zero_bias(attention.value, device);
                attention.output = zero_bias(attention.output, device);
                BertLayer {
                    attention,
                    attention_norm: self.norm(device),
                    intermediate: self.linear(self.hidden, self.intermediate, device),
                    output: self.linear(self.intermediate, self.hidden, device),
                    output_norm: self.norm(device),
                    dropout: dropout.clone(),
                    gelu: self.gelu,
                }
            })
            .collect();
        let bert = Bert {
            embeddings: BertEmbeddings {
                word_embeddings: embedding(self.vocab_size),
                position_embeddings: embedding(self.max_positions),
                token_type_embeddings: embedding(self.type_vocab),
                norm: self.norm(device),
                dropout: dropout.clone(),
            },
            layers,
            pooler: self.linear(self.hidden, self.hidden, device),
        };
        Ok(BertForPretraining {
            bert,
            mlm_dense: self.linear(self.hidden, self.hidden, device),
            mlm_norm: self.norm(device),
            mlm_bias: Param::from_tensor(Tensor::zeros([self.vocab_size], device)),
            nsp: self.linear(self.hidden, 2, device),
            gelu: self.gelu,
        })
    }
}

fn zero_bias(mut linear: Linear, device: &Device) -> Linear {
    if let Some(b) = &linear.bias {
        let [n] = b.shape().dims();
        linear.bias = Some(Param::from_tensor(Tensor::zeros([n], device)));
    }
    linear
}

/// Word + position + token-type embeddings, LayerNorm, dropout.
#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    pub token_type_embeddings: Embedding,
    pub norm: LayerNorm,
    pub dropout: Dropout,
}

/// One post-LayerNorm transformer layer.
#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: MultiHeadAttention,
    pub attention_norm: LayerNorm,
    pub intermediate: Linear,
    pub output: Linear,
    pub output_norm: LayerNorm,
    pub dropout: Dropout,
    #[module(skip)]
    pub gelu: Gelu,
}

impl BertLayer {
    /// Layer `index`'s dropout sites are `3 index + 1` (attention weights), `+ 2` (attention
    /// output) and `+ 3` (feed-forward output); the embeddings' is 0.
    fn forward(
        &self,
        x: Tensor<3>,
        pad: &Tensor<2, Bool>,
        key: Option<&DropoutKey>,
        index: u64,
    ) -> Tensor<3> {
        let site = 3 * index;
        let rate = self.dropout.prob;
        let attended = self.attention(x.clone(), pad, key, site + 1);
        let x = self
            .attention_norm
            .forward(x + dropout(attended, rate, key, site + 2));
        let h = self.gelu.apply(self.intermediate.forward(x.clone()));
        self.output_norm
            .forward(x + dropout(self.output.forward(h), rate, key, site + 3))
    }

    /// burn's `MultiHeadAttention::forward` (burn-nn 0.22, `mha.rs`) with the same operations in
    /// the same order, its dropout on the attention weights taken by [`dropout`] at `site`:
    /// `softmax(q k^T / sqrt(d_k) masked at padding) v`, heads concatenated, output projection.
    fn attention(
        &self,
        x: Tensor<3>,
        pad: &Tensor<2, Bool>,
        key: Option<&DropoutKey>,
        site: u64,
    ) -> Tensor<3> {
        let a = &self.attention;
        let [b, s, d] = x.dims();
        let heads = |linear: &Linear, x: Tensor<3>| {
            linear
                .forward(x)
                .reshape([b, s, a.n_heads, a.d_k])
                .swap_dims(1, 2)
        };
        let q = heads(&a.query, x.clone());
        let k = heads(&a.key, x.clone());
        let v = heads(&a.value, x);
        let scores = q
            .matmul(k.transpose())
            .div_scalar((a.d_k as f32).sqrt())
            .mask_fill(pad.clone().reshape([b, 1, 1, s]), a.min_float);
        let weights = dropout(softmax(scores, 3), a.dropout.prob, key, site);
        let context = weights.matmul(v).swap_dims(1, 2).reshape([b, s, d]);
        a.output.forward(context)
    }
}

/// The encoder with pooler.
#[derive(Module, Debug)]
pub struct Bert {
    pub embeddings: BertEmbeddings,
    pub layers: Vec<BertLayer>,
    pub pooler: Linear,
}

/// One batch of pretraining inputs.
#[derive(Clone, Debug)]
pub struct BertBatch {
    /// `[batch, seq]` token ids.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]` segment ids (0 for sentence A, 1 for B).
    pub token_types: Tensor<2, Int>,
    /// `[batch, seq]`, true at padding positions.
    pub padding: Tensor<2, Bool>,
    /// Where these examples sit in a training step (their dropout masks); `None` in evaluation.
    pub dropout: Option<DropoutKey>,
}

impl Bert {
    /// The sequence output `[batch, seq, hidden]` and the pooled `[CLS]` output `[batch, hidden]`.
    pub fn forward(&self, batch: &BertBatch) -> (Tensor<3>, Tensor<2>) {
        let [b, s] = batch.input_ids.dims();
        let device = batch.input_ids.device();
        let positions = Tensor::<1, Int>::arange(0..s as i64, &device)
            .reshape([1, s])
            .expand([b, s]);
        let e = &self.embeddings;
        let x = e.word_embeddings.forward(batch.input_ids.clone())
            + e.position_embeddings.forward(positions)
            + e.token_type_embeddings.forward(batch.token_types.clone());
        let key = batch.dropout.as_ref();
        let mut x = dropout(e.norm.forward(x), e.dropout.prob, key, 0);
        for (i, layer) in self.layers.iter().enumerate() {
            x = layer.forward(x, &batch.padding, key, i as u64);
        }
        let [_, _, h] = x.dims();
        let cls = x.clone().slice([0..b, 0..1, 0..h]).reshape([b, h]);
        let pooled = self.pooler.forward(cls).tanh();
        (x, pooled)
    }
}

/// BERT with its masked-LM and next-sentence heads.
#[derive(Module, Debug)]
pub struct BertForPretraining {
    pub bert: Bert,
    pub mlm_dense: Linear,
    pub mlm_norm: LayerNorm,
    pub mlm_bias: Param<Tensor<1>>,
    pub nsp: Linear,
    #[module(skip)]
    pub gelu: Gelu,
}

/// Pretraining losses and accuracies of one batch.
pub struct PretrainingOutput {
    /// MLM + NSP (the paper's objective).
    pub loss: Tensor<1>,
    pub mlm_loss: Tensor<1>,
    pub nsp_loss: Tensor<1>,
    /// `[batch, predictions, vocab]`.
    pub mlm_logits: Tensor<3>,
    /// `[batch, 2]`.
    pub nsp_logits: Tensor<2>,
}

impl BertForPretraining {
    /// Masked-LM logits `[batch, predictions, vocab]` at `masked_positions` `[batch, predictions]`
    /// (the decoder is the word-embedding matrix, transposed) and next-sentence logits `[batch, 2]`.
    pub fn forward(
        &self,
        batch: &BertBatch,
        masked_positions: Tensor<2, Int>,
    ) -> (Tensor<3>, Tensor<2>) {
        let (sequence, pooled) = self.bert.forward(batch);
        let [b, _, h] = sequence.dims();
        let [_, p] = masked_positions.dims();
        let index = masked_positions.reshape([b, p, 1]).expand([b, p, h]);
        let picked = sequence.gather(1, index);
        let t = self
            .mlm_norm
            .forward(self.gelu.apply(self.mlm_dense.forward(picked)));
        let words = self.bert.embeddings.word_embeddings.weight.val(); // [vocab, hidden]
        let [v, _] = words.dims();
        // One [b p, h] x [h, v] product (not a batched one against an expanded [b, h, v] copy of
        // the embedding matrix).
        let logits = t
            .reshape([b * p, h])
            .matmul(words.transpose())
            .reshape([b, p, v])
            + self.mlm_bias.val().reshape([1, 1, v]);
        (logits, self.nsp.forward(pooled))
    }

    /// The pretraining loss: mean masked-LM cross-entropy over the real predictions (weight 1;
    /// padding predictions have weight 0, as `masked_lm_weights` in the reference) plus the
    /// next-sentence cross-entropy:
    /// `-sum(w log p) / (sum(w) + 1e-5) - mean(log p_nsp)` (google-research/bert
    /// `get_masked_lm_output`, `get_next_sentence_output`).
    pub fn pretraining_loss(
        &self,
        batch: &BertBatch,
        masked_positions: Tensor<2, Int>,
        masked_ids: Tensor<2, Int>,
        masked_weights: Tensor<2>,
        next_sentence: Tensor<1, Int>,
    ) -> PretrainingOutput {
        let [b] = next_sentence.dims();
        let weight: f64 = masked_weights.clone().sum().into_scalar::<f32>().into();
        let denominators = LossDenominators {
            masked_weight: weight,
            instances: b,
        };
        self.pretraining_loss_part(
            batch,
            masked_positions,
            masked_ids,
            masked_weights,
            next_sentence,
            denominators,
        )
    }

    /// The terms of [`pretraining_loss`](Self::pretraining_loss) that belong to a part of a
    /// larger batch (a micro-batch or a device's share), divided by the *whole* batch's
    /// denominators, so that the parts of a batch sum to its loss even when they hold different
    /// numbers of masked positions: `-sum_part(w log p) / (W + 1e-5) - sum_part(log p_nsp) / B`.
    pub fn pretraining_loss_part(
        &self,
        batch: &BertBatch,
        masked_positions: Tensor<2, Int>,
        masked_ids: Tensor<2, Int>,
        masked_weights: Tensor<2>,
        next_sentence: Tensor<1, Int>,
        whole: LossDenominators,
    ) -> PretrainingOutput {
        let (mlm_logits, nsp_logits) = self.forward(batch, masked_positions);
        let [b, p, _] = mlm_logits.dims();
        let log_probs = log_softmax(mlm_logits.clone(), 2);
        let picked = log_probs
            .gather(2, masked_ids.reshape([b, p, 1]))
            .reshape([b, p]);
        let mlm_loss = (picked * masked_weights)
            .sum()
            .neg()
            .div_scalar(whole.masked_weight + 1e-5);
        let nsp_log_probs = log_softmax(nsp_logits.clone(), 1);
        let nsp_loss = nsp_log_probs
            .gather(1, next_sentence.reshape([b, 1]))
            .sum()
            .neg()
            .div_scalar(whole.instances as f64);
        PretrainingOutput {
            loss: mlm_loss.clone() + nsp_loss.clone(),
            mlm_loss,
            nsp_loss,
            mlm_logits,
            nsp_logits,
        }
    }
}

/// What the pretraining loss of a whole batch divides by: its total masked-LM weight (the number
/// of real predictions) and its number of instances.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossDenominators {
    pub masked_weight: f64,
    pub instances: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::{ModuleVisitor, Param};
    use burn::tensor::TensorData;

    /// `form` at x = -3, -1, 0, 0.5, 1, 2.5 against `want` (within 1e-6).
    fn assert_gelu_values(form: Gelu, want: [f64; 6]) {
        let x = Tensor::<1>::from_data(
            TensorData::from([-3.0f32, -1.0, 0.0, 0.5, 1.0, 2.5]),
            &Device::flex(),
        );
        let got: Vec<f32> = form.apply(x).into_data().try_to_vec().unwrap();
        for (g, w) in got.iter().zip(want) {
            assert!((*g as f64 - w).abs() < 1e-6, "{form:?}: {g} vs {w}");
        }
    }

    /// Values of the reference formula computed in f64 (Python `math`).
    #[test]
    fn gelu_matches_the_reference_formula() {
        assert_gelu_values(
            Gelu::Tanh,
            [
                -0.0036373920817729943,
                -0.15880800939172324,
                0.0,
                0.34571400982514394,
                0.8411919906082768,
                2.484915733910001,
            ],
        );
    }

    /// The exact form is `x Phi(x)`; Phi from the standard normal table: Phi(-3) = 0.0013498980,
    /// Phi(-1) = 0.1586552539, Phi(0.5) = 0.6914624613, Phi(1) = 0.8413447461,
    /// Phi(2.5) = 0.9937903347.
    #[test]
    fn exact_gelu_is_x_times_the_normal_cdf() {
        assert_gelu_values(
            Gelu::Erf,
            [
                -3.0 * 0.001_349_898_0,
                -0.158_655_253_9,
                0.0,
                0.5 * 0.691_462_461_3,
                0.841_344_746_1,
                2.5 * 0.993_790_334_7,
            ],
        );
    }

    struct Count(usize);
    impl ModuleVisitor for Count {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if p.is_require_grad() {
                self.0 += p.lazy_shape().num_elements();
            }
        }
    }

    /// BERT-Large's encoder with pooler has 335,141,888 parameters; the heads add the MLM dense
    /// (1024^2 + 1024), its LayerNorm (2048), the output bias (30,522) and NSP (2 x 1024 + 2).
    #[test]
    fn bert_large_parameter_count() {
        let _guard = crate::rng_guard();
        let device = Device::flex().autodiff();
        let model = BertConfig::bert_large().init(&device).unwrap();
        let mut encoder = Count(0);
        model.bert.visit(&mut encoder);
        assert_eq!(encoder.0, 335_141_888);
        let mut all = Count(0);
        model.visit(&mut all);
        assert_eq!(all.0, 335_141_888 + 1_049_600 + 2048 + 30_522 + 2050);
    }

    fn ids(rows: &[&[i64]], device: &Device) -> Tensor<2, Int> {
        let s = rows[0].len();
        let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(TensorData::new(flat, [rows.len(), s]), device)
    }

    fn batch(input: &[&[i64]], pad_from: usize, device: &Device) -> BertBatch {
        let s = input[0].len();
        let b = input.len();
        let pads: Vec<bool> = (0..b * s).map(|i| i % s >= pad_from).collect();
        BertBatch {
            input_ids: ids(input, device),
            token_types: Tensor::zeros([b, s], device),
            padding: Tensor::from_data(TensorData::new(pads, [b, s]), device),
            dropout: None,
        }
    }

    /// Seeds, builds and materialises (burn initialises parameters lazily) under one lock, so
    /// that tests running in parallel cannot interleave on the device's random generator.
    fn seeded_tiny(seed: u64, device: &Device) -> BertForPretraining {
        struct Touch;
        impl ModuleVisitor for Touch {
            fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
                let _ = p.val();
            }
        }
        let _guard = crate::rng_guard();
        device.seed(seed);
        let model = tiny().init(device).unwrap();
        model.visit(&mut Touch);
        model
    }

    fn tiny() -> BertConfig {
        BertConfig {
            vocab_size: 50,
            max_positions: 16,
            ..BertConfig::bert_tiny()
        }
    }

    /// Padding does not change unpadded outputs: the same 5 tokens padded to 8 with two different
    /// pad ids, and unpadded, give the same first 5 output vectors.
    #[test]
    fn padding_is_masked() {
        let device = Device::flex();
        let model = seeded_tiny(3, &device);
        let (short, _) = model.bert.forward(&batch(&[&[2, 7, 9, 11, 3]], 5, &device));
        let (pad_a, _) = model
            .bert
            .forward(&batch(&[&[2, 7, 9, 11, 3, 0, 0, 0]], 5, &device));
        let (pad_b, _) = model
            .bert
            .forward(&batch(&[&[2, 7, 9, 11, 3, 42, 17, 5]], 5, &device));
        let first5 = |t: Tensor<3>| -> Vec<f32> {
            let [_, _, h] = t.dims();
            t.slice([0..1, 0..5, 0..h])
                .into_data()
                .try_to_vec()
                .unwrap()
        };
        let (s, a, b) = (first5(short), first5(pad_a), first5(pad_b));
        for ((x, y), z) in s.iter().zip(&a).zip(&b) {
            assert!((x - y).abs() < 1e-5 && (y - z).abs() < 1e-5, "{x} {y} {z}");
        }
        // Without the mask the pad tokens would matter.
        let mut unmasked = batch(&[&[2, 7, 9, 11, 3, 42, 17, 5]], 8, &device);
        unmasked.padding = Tensor::from_data(TensorData::new(vec![false; 8], [1, 8]), &device);
        let (c, _) = model.bert.forward(&unmasked);
        assert!(first5(c).iter().zip(&a).any(|(x, y)| (x - y).abs() > 1e-4));
    }

    #[test]
    fn shapes_loss_and_determinism() {
        let device = Device::flex();
        let run = || {
            let model = seeded_tiny(11, &device);
            let input = batch(&[&[2, 7, 9, 11, 3, 0], &[2, 5, 6, 3, 8, 3]], 6, &device);
            let positions = ids(&[&[1, 3], &[2, 4]], &device);
            let out = model.pretraining_loss(
                &input,
                positions,
                ids(&[&[7, 11], &[6, 8]], &device),
                Tensor::from_floats([[1.0, 1.0], [1.0, 0.0]], &device),
                Tensor::from_data(TensorData::new(vec![0i64, 1], [2]), &device),
            );
            assert_eq!(out.mlm_logits.dims(), [2, 2, 50]);
            assert_eq!(out.nsp_logits.dims(), [2, 2]);
            out.loss.into_scalar::<f32>()
        };
        let (a, b) = (run(), run());
        assert_eq!(a, b);
        // Untrained: the MLM loss is near ln(50) and NSP near ln(2).
        assert!(a > 3.0 && a < 6.0, "{a}");
    }

    #[test]
    fn presets_and_errors() {
        BertConfig::bert_mini().validate().unwrap();
        let mut c = BertConfig::bert_tiny();
        c.heads = 3;
        let e = c.validate().unwrap_err().to_string();
        assert!(
            e.contains("model.heads: 3 heads do not divide hidden size 128"),
            "{e}"
        );
    }
}
