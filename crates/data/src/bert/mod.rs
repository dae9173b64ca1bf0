//! BERT pretraining data: WordPiece tokenization ([`tokenizer`]), corpora in BERT's input format
//! ([`corpus`], with the embedded State of the Union corpus), the reference data creation
//! ([`create`]) and shard files ([`shard`]).
//!
//! A dataset is a directory of shards: `train-NNNNN.bbpt` and `eval-NNNNN.bbpt`, the evaluation
//! split made of whole held-out documents (never seen in training), plus `dataset.json`
//! describing how it was made. Phases 1 and 2 are two such directories made from the same corpus
//! with different `max_seq_length` / `max_predictions_per_seq`.

pub mod corpus;
pub mod create;
pub mod shard;
pub mod tokenizer;

pub use corpus::Document;
pub use create::{CreationConfig, Instance, create_instances, tokenize_documents};
pub use shard::{PretrainingBatch, PretrainingSet, Shard, ShardHeader, encode_shard};
pub use tokenizer::WordPieceTokenizer;

use anyhow::{Context, Result, bail};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// A dataset made from a corpus: training and held-out evaluation instances.
pub struct Dataset {
    pub train: Vec<Instance>,
    pub eval: Vec<Instance>,
}

/// Splits off `eval_documents` whole documents (chosen by the creation seed) for evaluation,
/// then runs the reference creation on each part (evaluation with `dupe_factor` 1).
pub fn make_dataset(
    documents: &[Document],
    tokenizer: &WordPieceTokenizer,
    creation: &CreationConfig,
    eval_documents: usize,
) -> Result<Dataset> {
    creation.validate("")?;
    let tokenized = tokenize_documents(documents, tokenizer)?;
    if tokenized.len() < eval_documents + 2 {
        bail!(
            "eval_documents: {eval_documents} held out of {} documents leaves fewer than 2 for training",
            tokenized.len()
        );
    }
    let mut order: Vec<usize> = (0..tokenized.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(creation.seed ^ 0xe7a1));
    let pick = |ids: &[usize]| {
        ids.iter()
            .map(|&i| tokenized[i].clone())
            .collect::<Vec<_>>()
    };
    let eval_docs = pick(&order[..eval_documents]);
    let train_docs = pick(&order[eval_documents..]);
    let train = create_instances(&train_docs, tokenizer, creation)?;
    let eval = if eval_documents >= 2 {
        let eval_creation = CreationConfig {
            dupe_factor: 1,
            ..creation.clone()
        };
        create_instances(&eval_docs, tokenizer, &eval_creation)?
    } else {
        Vec::new()
    };
    Ok(Dataset { train, eval })
}

/// `dataset.json`: how a shard directory was made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct DatasetInfo {
    pub source: String,
    pub creation: CreationConfig,
    pub eval_documents: usize,
    pub train_instances: usize,
    pub eval_instances: usize,
    pub vocab_size: usize,
}

/// Writes `dataset` into `dir` as shards of at most `per_shard` instances (each file written
/// atomically: a temporary name, then renamed) and `dataset.json`.
pub fn write_dataset(
    dir: &Path,
    dataset: &Dataset,
    info: &DatasetInfo,
    pad_id: u32,
    per_shard: usize,
) -> Result<()> {
    if per_shard == 0 {
        bail!("instances per shard: expected at least 1");
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (split, instances) in [("train", &dataset.train), ("eval", &dataset.eval)] {
        for (k, chunk) in instances.chunks(per_shard).enumerate() {
            let bytes = encode_shard(chunk, &info.creation, info.vocab_size, pad_id, &info.source)?;
            write_file_atomic(&dir.join(format!("{split}-{k:05}.bbpt")), &bytes)?;
        }
    }
    write_file_atomic(
        &dir.join("dataset.json"),
        serde_json::to_string_pretty(info)?.as_bytes(),
    )
}

fn write_file_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename to {}", path.display()))
}

/// Instances held in memory as one shard (the embedded default needs no files).
pub fn in_memory_set(
    instances: &[Instance],
    creation: &CreationConfig,
    tokenizer: &WordPieceTokenizer,
    source: &str,
) -> Result<PretrainingSet> {
    let bytes = encode_shard(
        instances,
        creation,
        tokenizer.vocab_size(),
        tokenizer.special().pad,
        source,
    )?;
    PretrainingSet::from_shards(vec![Shard::from_bytes(bytes)?])
}

#[cfg(test)]
mod tests;
