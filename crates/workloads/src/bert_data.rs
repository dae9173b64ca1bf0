//! `bigbatch bert-vocab` and `bigbatch bert-data`: a WordPiece vocabulary trained on a corpus,
//! and pretraining shards made from a corpus by the reference data creation.

use anyhow::{Result, bail};
use bigbatch_core::config::write_atomic;
use bigbatch_data::bert::corpus::{self, Document};
use bigbatch_data::bert::{
    CreationConfig, DatasetInfo, WordPieceTokenizer, make_dataset, write_dataset,
};
use std::path::{Path, PathBuf};

/// A corpus argument: `sotu` (the embedded corpus) or a file in BERT's input format.
pub fn load_corpus(corpus: &str) -> Result<(Vec<Document>, String)> {
    if corpus == "sotu" {
        return Ok((
            corpus::sotu(),
            "embedded State of the Union corpus".to_string(),
        ));
    }
    let path = PathBuf::from(corpus);
    Ok((corpus::read_corpus(&path)?, path.display().to_string()))
}

/// A vocabulary argument: `sotu` or `sotu-1k` (the embedded trained vocabularies, 8,192 and
/// 1,024 entries) or a `vocab.txt` file.
pub fn load_vocab(vocab: &str) -> Result<(WordPieceTokenizer, String)> {
    Ok(match vocab {
        "sotu" => (
            WordPieceTokenizer::sotu(),
            "embedded sotu vocabulary".to_string(),
        ),
        "sotu-1k" => (
            WordPieceTokenizer::sotu_1k(),
            "embedded sotu-1k vocabulary".to_string(),
        ),
        path => (
            WordPieceTokenizer::from_vocab_file(Path::new(path))?,
            path.to_string(),
        ),
    })
}

/// Trains a vocabulary on `corpus` and writes it to `out` as `vocab.txt`.
pub fn vocab(corpus: &str, size: usize, min_frequency: u64, out: &Path) -> Result<()> {
    let (documents, source) = load_corpus(corpus)?;
    let lines = documents.iter().flatten().map(String::as_str);
    let tokenizer = WordPieceTokenizer::train(lines, size, min_frequency)?;
    write_atomic(out, tokenizer.vocab_text().as_bytes())?;
    println!(
        "{}: {} entries trained on {source}",
        out.display(),
        tokenizer.vocab_size()
    );
    Ok(())
}

/// Makes pretraining shards from `corpus` with `vocab` into `out`.
pub fn data(
    corpus: &str,
    vocab: &str,
    creation: &CreationConfig,
    eval_documents: usize,
    per_shard: usize,
    out: &Path,
) -> Result<()> {
    creation.validate("--")?;
    let (documents, corpus_source) = load_corpus(corpus)?;
    let (tokenizer, vocab_source) = load_vocab(vocab)?;
    if tokenizer.vocab_size() > u32::MAX as usize {
        bail!("{vocab_source}: too many entries");
    }
    let started = std::time::Instant::now();
    let dataset = make_dataset(&documents, &tokenizer, creation, eval_documents)?;
    let info = DatasetInfo {
        source: format!("{corpus_source}, vocabulary {vocab_source}"),
        creation: creation.clone(),
        eval_documents,
        train_instances: dataset.train.len(),
        eval_instances: dataset.eval.len(),
        vocab_size: tokenizer.vocab_size(),
    };
    write_dataset(out, &dataset, &info, tokenizer.special().pad, per_shard)?;
    println!(
        "{}: {} training and {} evaluation instances of length {} in {:.1}s",
        out.display(),
        info.train_instances,
        info.eval_instances,
        creation.max_seq_length,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
