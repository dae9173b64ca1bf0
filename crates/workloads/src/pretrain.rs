//! The BERT pretraining workload: masked-LM + next-sentence loss on pretraining instances (shards
//! from `bigbatch bert-data`, or made in memory from a corpus at start).
//!
//! Evaluation, in inference mode (no dropout): masked-LM accuracy (argmax over the vocabulary
//! at the real masked positions) and next-sentence accuracy and loss on the held-out split
//! (`val_accuracy` = its MLM accuracy), and MLM accuracy on the first
//! `train.train_eval_examples` training instances (`train_accuracy`; the paper selects trials by
//! MLM accuracy on 10k training examples).

use crate::bert_data::{load_corpus, load_vocab};
use anyhow::{Result, bail};
use bigbatch_data::EpochSampler;
use bigbatch_data::bert::{PretrainingBatch, PretrainingSet, in_memory_set, make_dataset};
use bigbatch_engine::run_config::{BertDataConfig, DataSource, TrainSettings};
use bigbatch_engine::workload::{Evaluation, StepKey, Workload};
use bigbatch_models::dropout::DropoutKey;
use bigbatch_models::{BertBatch, BertConfig, BertForPretraining, LossDenominators};
use burn::module::Module;
use burn::tensor::{Device, Tensor};
use std::ops::Range;

/// Instances per evaluation batch.
const EVAL_BATCH: usize = 64;

pub struct Pretraining {
    model: BertConfig,
    train: PretrainingSet,
    eval: PretrainingSet,
    train_eval: Vec<usize>,
    sampler: EpochSampler,
}

/// Makes the in-memory training and evaluation sets of `data`.
fn in_memory(data: &BertDataConfig) -> Result<(PretrainingSet, PretrainingSet)> {
    data.creation.validate("data.source.creation.")?;
    let (mut documents, corpus) = load_corpus(&data.corpus)?;
    if let Some(n) = data.documents {
        documents.truncate(n);
    }
    let (tokenizer, vocab) = load_vocab(&data.vocab)?;
    let dataset = make_dataset(&documents, &tokenizer, &data.creation, data.eval_documents)
        .map_err(|e| anyhow::anyhow!("data.source: {e:#}"))?;
    let source = format!("{corpus}, vocabulary {vocab}");
    Ok((
        in_memory_set(&dataset.train, &data.creation, &tokenizer, &source)?,
        in_memory_set(&dataset.eval, &data.creation, &tokenizer, &source)?,
    ))
}

impl Pretraining {
    pub fn new(model: &BertConfig, source: &DataSource, t: &TrainSettings) -> Result<Self> {
        model.validate()?;
        let (train, eval) = match source {
            DataSource::BertShards(dir) => (
                PretrainingSet::open_dir(dir, "train")?,
                PretrainingSet::open_dir(dir, "eval")?,
            ),
            DataSource::Bert(data) => in_memory(data)?,
            other => bail!("data.source: {other:?} holds no BERT pretraining data"),
        };
        let h = &train.header;
        if model.vocab_size < h.vocab_size {
            bail!(
                "model.vocab_size: the data's vocabulary has {} entries, the model only {}",
                h.vocab_size,
                model.vocab_size
            );
        }
        if model.max_positions < h.seq_len {
            bail!(
                "model.max_positions: the data has sequences of {} tokens, the model at most {}",
                h.seq_len,
                model.max_positions
            );
        }
        if eval.is_empty() {
            bail!("data.source: the evaluation split is empty (hold out more documents)");
        }
        if train.len() < t.batch_size {
            bail!(
                "train.batch_size: {} is larger than the {} training instances",
                t.batch_size,
                train.len()
            );
        }
        Ok(Self {
            model: model.clone(),
            train_eval: (0..t.train_eval_examples.min(train.len())).collect(),
            sampler: EpochSampler::new(train.len(), t.batch_size, t.seed ^ 0x5eed_da7a)?,
            train,
            eval,
        })
    }
}

/// The loss denominators of instances `indices` of `set` (their masked-LM predictions and their
/// number), counted on the host.
fn denominators(set: &PretrainingSet, indices: &[usize]) -> LossDenominators {
    let predictions: usize = indices
        .iter()
        .map(|&i| set.get(i).masked_positions.len())
        .sum();
    LossDenominators {
        masked_weight: predictions as f64,
        instances: indices.len(),
    }
}

/// The pretraining loss of `b` divided by `whole`'s denominators, with the labels the evaluation
/// needs.
fn loss_parts(
    model: &BertForPretraining,
    b: PretrainingBatch,
    whole: LossDenominators,
    dropout: Option<DropoutKey>,
) -> (
    bigbatch_models::PretrainingOutput,
    Tensor<2, burn::tensor::Int>,
    Tensor<2>,
    Tensor<1, burn::tensor::Int>,
) {
    let inputs = BertBatch {
        input_ids: b.input_ids,
        token_types: b.token_types,
        padding: b.padding,
        dropout,
    };
    let out = model.pretraining_loss_part(
        &inputs,
        b.masked_positions,
        b.masked_ids.clone(),
        b.masked_weights.clone(),
        b.next_sentence.clone(),
        whole,
    );
    (out, b.masked_ids, b.masked_weights, b.next_sentence)
}

/// Totals over a set: MLM hits and predictions, NSP hits, instances, summed loss.
#[derive(Default)]
struct Totals {
    mlm_hits: f64,
    predictions: f64,
    nsp_hits: f64,
    instances: f64,
    loss: f64,
}

fn evaluate_set(
    model: &BertForPretraining,
    set: &PretrainingSet,
    indices: &[usize],
    device: &Device,
) -> Totals {
    let eval = model.valid();
    let mut t = Totals::default();
    for chunk in indices.chunks(EVAL_BATCH) {
        let whole = denominators(set, chunk);
        let (out, ids, weights, next) = loss_parts(&eval, set.batch(chunk, device), whole, None);
        let [b, p, _] = out.mlm_logits.dims();
        let predicted = out.mlm_logits.argmax(2).reshape([b, p]);
        let mlm_hits = predicted.equal(ids).float() * weights;
        t.mlm_hits += mlm_hits.sum().into_scalar::<f32>() as f64;
        t.predictions += whole.masked_weight;
        let nsp = out.nsp_logits.argmax(1).reshape([b]).equal(next);
        t.nsp_hits += nsp.int().sum().into_scalar::<i64>() as f64;
        t.loss += out.loss.into_scalar::<f32>() as f64 * b as f64;
        t.instances += b as f64;
    }
    t
}

/// A training batch: instance indices and the batch's loss denominators.
pub struct InstanceBatch {
    pub indices: Vec<usize>,
    pub whole: LossDenominators,
}

impl Pretraining {
    /// Masked-LM predictions (real masked positions) of training instances `indices`.
    pub fn predictions(&self, indices: &[usize]) -> usize {
        denominators(&self.train, indices).masked_weight as usize
    }
}

impl Workload for Pretraining {
    type Model = BertForPretraining;
    type Batch = InstanceBatch;

    fn init(&self, device: &Device) -> Result<BertForPretraining> {
        self.model.init(device)
    }

    fn next_batch(&mut self) -> Result<InstanceBatch> {
        let indices = self.sampler.next_batch().to_vec();
        let whole = denominators(&self.train, &indices);
        Ok(InstanceBatch { indices, whole })
    }

    fn part_loss(
        &self,
        model: &BertForPretraining,
        batch: &InstanceBatch,
        range: Range<usize>,
        device: &Device,
    ) -> Result<Tensor<1>> {
        let b = self.train.batch(&batch.indices[range], device);
        let (out, ..) = loss_parts(model, b, batch.whole, None);
        Ok(out.loss)
    }

    /// The training loss with dropout masks keyed by (seed, step, the examples' indices in the
    /// step's batch): the same masks for any micro-batch size and device count.
    fn part_loss_at(
        &self,
        model: &BertForPretraining,
        batch: &InstanceBatch,
        range: Range<usize>,
        device: &Device,
        at: StepKey,
    ) -> Result<Tensor<1>> {
        let key = DropoutKey {
            seed: at.seed,
            step: at.step,
            first_example: range.start as u64,
        };
        let b = self.train.batch(&batch.indices[range], device);
        let (out, ..) = loss_parts(model, b, batch.whole, Some(key));
        Ok(out.loss)
    }

    fn skip(&mut self, n: u64) -> Result<()> {
        self.sampler.skip(n);
        Ok(())
    }

    fn evaluate(&mut self, model: &BertForPretraining, device: &Device) -> Result<Evaluation> {
        let plain = device.clone().inner();
        let all: Vec<usize> = (0..self.eval.len()).collect();
        let v = evaluate_set(model, &self.eval, &all, &plain);
        let t = evaluate_set(model, &self.train, &self.train_eval, &plain);
        Ok(Evaluation {
            val_accuracy: v.mlm_hits / v.predictions.max(1.0),
            train_accuracy: t.mlm_hits / t.predictions.max(1.0),
            extra: vec![
                ("val_nsp_accuracy", v.nsp_hits / v.instances),
                ("val_loss", v.loss / v.instances),
            ],
        })
    }
}
