//! BERT's pretraining data creation, a port of google-research/bert `create_pretraining_data.py`
//! (`create_training_instances`, `create_instances_from_document`,
//! `create_masked_lm_predictions`, `truncate_seq_pair`), step for step:
//!
//! 1. documents -> tokenized sentences; documents shuffled;
//! 2. `dupe_factor` passes over the documents; per document a target length `max_seq_length - 3`,
//!    or with probability `short_seq_prob` uniform in `[2, max_seq_length - 3]`; sentences are
//!    collected into a chunk until it reaches the target, then split at a uniform point into A
//!    and B; with probability 1/2 (always for a one-sentence chunk) B is replaced by text from a
//!    random other document (`is_random_next`) and the unused sentences are put back;
//! 3. the pair is truncated to `max_seq_length - 3` tokens, removing from the longer side, at the
//!    front or back with equal probability; `[CLS] A [SEP] B [SEP]`, token types 0 then 1;
//! 4. masking: `min(max_predictions_per_seq, max(1, round(len * masked_lm_prob)))` positions
//!    (never `[CLS]`/`[SEP]`; optionally whole words), each replaced by `[MASK]` with
//!    probability 0.8, kept with 0.1, a uniformly random vocabulary entry with 0.1;
//! 5. all instances shuffled.
//!
//! Randomness comes from one ChaCha8 generator seeded with `seed` (the reference uses Python's
//! `random.Random(12345)`; the draws are the same in kind and order, not in value).

use super::tokenizer::WordPieceTokenizer;
use anyhow::{Result, bail};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The flags of `create_pretraining_data.py` (its defaults: 128, 20, 0.15, 10, 0.1, 12345).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreationConfig {
    pub max_seq_length: usize,
    pub max_predictions_per_seq: usize,
    #[serde(default = "default_masked_lm_prob")]
    pub masked_lm_prob: f64,
    #[serde(default = "default_dupe_factor")]
    pub dupe_factor: usize,
    #[serde(default = "default_short_seq_prob")]
    pub short_seq_prob: f64,
    #[serde(default)]
    pub do_whole_word_mask: bool,
    #[serde(default = "default_seed")]
    pub seed: u64,
}

fn default_masked_lm_prob() -> f64 {
    0.15
}
fn default_dupe_factor() -> usize {
    10
}
fn default_short_seq_prob() -> f64 {
    0.1
}
fn default_seed() -> u64 {
    12345
}

impl CreationConfig {
    /// The paper's phase 1 (sequence length 128, 20 predictions) with the reference defaults.
    pub fn phase1() -> Self {
        Self {
            max_seq_length: 128,
            max_predictions_per_seq: 20,
            masked_lm_prob: 0.15,
            dupe_factor: 10,
            short_seq_prob: 0.1,
            do_whole_word_mask: false,
            seed: 12345,
        }
    }

    /// The paper's phase 2 (sequence length 512, 80 predictions).
    pub fn phase2() -> Self {
        Self {
            max_seq_length: 512,
            max_predictions_per_seq: 80,
            ..Self::phase1()
        }
    }

    /// Checks the numbers; errors name the field under `prefix`.
    pub fn validate(&self, prefix: &str) -> Result<()> {
        if self.max_seq_length < 5 || self.max_seq_length > u16::MAX as usize {
            bail!(
                "{prefix}max_seq_length: expected 5..=65535, got {}",
                self.max_seq_length
            );
        }
        if self.max_predictions_per_seq == 0 || self.max_predictions_per_seq > self.max_seq_length {
            bail!(
                "{prefix}max_predictions_per_seq: expected 1..={}, got {}",
                self.max_seq_length,
                self.max_predictions_per_seq
            );
        }
        for (name, p) in [
            ("masked_lm_prob", self.masked_lm_prob),
            ("short_seq_prob", self.short_seq_prob),
        ] {
            if !(0.0..=1.0).contains(&p) {
                bail!("{prefix}{name}: expected a probability in [0, 1], got {p}");
            }
        }
        if self.dupe_factor == 0 {
            bail!("{prefix}dupe_factor: expected at least 1");
        }
        Ok(())
    }
}

/// One pretraining example (unpadded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// `[CLS] A [SEP] B [SEP]` after masking.
    pub tokens: Vec<u32>,
    /// Length of `[CLS] A [SEP]`: token type 0 before, 1 from here to the end.
    pub segment_a_len: usize,
    /// The next-sentence label: B comes from a random document.
    pub is_random_next: bool,
    /// Masked positions, ascending.
    pub masked_positions: Vec<usize>,
    /// The original tokens at those positions.
    pub masked_labels: Vec<u32>,
}

impl Instance {
    /// Token type of each position (0 for `[CLS] A [SEP]`, 1 for `B [SEP]`).
    pub fn token_types(&self) -> Vec<u32> {
        (0..self.tokens.len())
            .map(|i| u32::from(i >= self.segment_a_len))
            .collect()
    }
}

/// Tokenizes every sentence of every document (documents left empty are dropped).
pub fn tokenize_documents(
    documents: &[Vec<String>],
    tokenizer: &WordPieceTokenizer,
) -> Result<Vec<Vec<Vec<u32>>>> {
    let mut out = Vec::with_capacity(documents.len());
    for document in documents {
        let sentences: Vec<&str> = document.iter().map(String::as_str).collect();
        let tokenized: Vec<Vec<u32>> = tokenizer
            .encode_all(&sentences)?
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !tokenized.is_empty() {
            out.push(tokenized);
        }
    }
    Ok(out)
}

/// `create_training_instances` on already tokenized documents.
pub fn create_instances(
    documents: &[Vec<Vec<u32>>],
    tokenizer: &WordPieceTokenizer,
    config: &CreationConfig,
) -> Result<Vec<Instance>> {
    config.validate("")?;
    if documents.len() < 2 {
        bail!(
            "the corpus has {} non-empty document(s); next-sentence prediction needs at least 2",
            documents.len()
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut documents = documents.to_vec();
    documents.shuffle(&mut rng);
    let mut instances = Vec::new();
    for _ in 0..config.dupe_factor {
        for index in 0..documents.len() {
            instances_from_document(
                &documents,
                index,
                tokenizer,
                config,
                &mut rng,
                &mut instances,
            );
        }
    }
    instances.shuffle(&mut rng);
    Ok(instances)
}

fn instances_from_document(
    documents: &[Vec<Vec<u32>>],
    index: usize,
    tokenizer: &WordPieceTokenizer,
    config: &CreationConfig,
    rng: &mut ChaCha8Rng,
    out: &mut Vec<Instance>,
) {
    let document = &documents[index];
    let max_num_tokens = config.max_seq_length - 3;
    let target = if rng.random::<f64>() < config.short_seq_prob {
        rng.random_range(2..=max_num_tokens)
    } else {
        max_num_tokens
    };
    let special = tokenizer.special();
    let mut chunk: Vec<&Vec<u32>> = Vec::new();
    let mut chunk_len = 0;
    let mut i = 0;
    while i < document.len() {
        chunk.push(&document[i]);
        chunk_len += document[i].len();
        if i == document.len() - 1 || chunk_len >= target {
            let a_end = if chunk.len() >= 2 {
                rng.random_range(1..=chunk.len() - 1)
            } else {
                1
            };
            let mut a: Vec<u32> = chunk[..a_end]
                .iter()
                .flat_map(|s| s.iter().copied())
                .collect();
            let mut b = Vec::new();
            let is_random_next = chunk.len() == 1 || rng.random::<f64>() < 0.5;
            if is_random_next {
                let target_b = target.saturating_sub(a.len());
                let mut other = rng.random_range(0..documents.len());
                for _ in 1..10 {
                    if other != index {
                        break;
                    }
                    other = rng.random_range(0..documents.len());
                }
                let random_document = &documents[other];
                let start = rng.random_range(0..random_document.len());
                for sentence in &random_document[start..] {
                    b.extend_from_slice(sentence);
                    if b.len() >= target_b {
                        break;
                    }
                }
                // The unused sentences of the chunk go back to the document.
                i -= chunk.len() - a_end;
            } else {
                b = chunk[a_end..]
                    .iter()
                    .flat_map(|s| s.iter().copied())
                    .collect();
            }
            truncate_seq_pair(&mut a, &mut b, max_num_tokens, rng);
            if !a.is_empty() && !b.is_empty() {
                let mut tokens = Vec::with_capacity(a.len() + b.len() + 3);
                tokens.push(special.cls);
                tokens.extend_from_slice(&a);
                tokens.push(special.sep);
                let segment_a_len = tokens.len();
                tokens.extend_from_slice(&b);
                tokens.push(special.sep);
                out.push(mask_tokens(
                    tokens,
                    segment_a_len,
                    is_random_next,
                    tokenizer,
                    config,
                    rng,
                ));
            }
            chunk.clear();
            chunk_len = 0;
        }
        i += 1;
    }
}

/// `truncate_seq_pair`: drop tokens from the longer sequence, front or back with equal
/// probability, until the pair fits.
fn truncate_seq_pair(a: &mut Vec<u32>, b: &mut Vec<u32>, max: usize, rng: &mut ChaCha8Rng) {
    while a.len() + b.len() > max {
        let longer = if a.len() > b.len() { &mut *a } else { &mut *b };
        if rng.random::<f64>() < 0.5 {
            longer.remove(0);
        } else {
            longer.pop();
        }
    }
}

/// `create_masked_lm_predictions`.
fn mask_tokens(
    tokens: Vec<u32>,
    segment_a_len: usize,
    is_random_next: bool,
    tokenizer: &WordPieceTokenizer,
    config: &CreationConfig,
    rng: &mut ChaCha8Rng,
) -> Instance {
    let special = tokenizer.special();
    let mut candidates: Vec<Vec<usize>> = Vec::new();
    for (i, &t) in tokens.iter().enumerate() {
        if t == special.cls || t == special.sep {
            continue;
        }
        if config.do_whole_word_mask && !candidates.is_empty() && tokenizer.is_continuation(t) {
            candidates.last_mut().unwrap().push(i);
        } else {
            candidates.push(vec![i]);
        }
    }
    candidates.shuffle(rng);
    let num_to_predict = config
        .max_predictions_per_seq
        .min(((tokens.len() as f64 * config.masked_lm_prob).round() as usize).max(1));
    let mut output = tokens.clone();
    let mut masked: Vec<(usize, u32)> = Vec::new();
    let mut covered = vec![false; tokens.len()];
    let vocab_size = tokenizer.vocab_size();
    for set in candidates {
        if masked.len() >= num_to_predict {
            break;
        }
        if masked.len() + set.len() > num_to_predict || set.iter().any(|&i| covered[i]) {
            continue;
        }
        for index in set {
            covered[index] = true;
            output[index] = if rng.random::<f64>() < 0.8 {
                special.mask
            } else if rng.random::<f64>() < 0.5 {
                tokens[index]
            } else {
                rng.random_range(0..vocab_size) as u32
            };
            masked.push((index, tokens[index]));
        }
    }
    masked.sort_by_key(|(i, _)| *i);
    Instance {
        tokens: output,
        segment_a_len,
        is_random_next,
        masked_positions: masked.iter().map(|(i, _)| *i).collect(),
        masked_labels: masked.iter().map(|(_, t)| *t).collect(),
    }
}
