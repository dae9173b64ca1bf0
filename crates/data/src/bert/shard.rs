//! Pretraining shards: instances of one sequence length in fixed-size little-endian records, so
//! that training reads a shard once into memory and indexes it without parsing.
//!
//! File layout (`*.bbpt`), all integers little-endian:
//!
//! ```text
//! magic      8 bytes  "BBPRETR2" ("BBPRETR1": older shards, without a checksum)
//! header_len u32      length of the JSON header that follows
//! header     JSON     ShardHeader: seq_len S, max_predictions P, vocab_size, instances N,
//!                     record_bytes, creation (the CreationConfig), source (corpus description),
//!                     records_crc32 (CRC-32 of all record bytes; required by BBPRETR2)
//! records    N x record_bytes:
//!   input_ids        S x u32   [CLS] A [SEP] B [SEP], then [PAD] (id 0 of the header's vocab)
//!   num_tokens       u16       unpadded length
//!   segment_a_len    u16       length of [CLS] A [SEP] (token type 1 from here to num_tokens)
//!   num_predictions  u16
//!   masked_positions P x u16   ascending, zero-padded
//!   masked_ids       P x u32   original tokens, zero-padded (weight 0 past num_predictions)
//!   next_sentence    u8        1 when B is a random sentence (BERT's `next_sentence_labels`)
//! ```
//!
//! Reading checks the checksum (bit rot) and every record (one pass): token counts within S,
//! segment A within the tokens, predictions within P, token and label ids below the vocabulary
//! size, masked positions ascending and inside the tokens, next_sentence 0 or 1. Errors name the
//! file and the record.

use super::create::{CreationConfig, Instance};
use anyhow::{Context, Result, bail};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 8] = b"BBPRETR2";
const MAGIC_V1: &[u8; 8] = b"BBPRETR1";

/// The JSON header of a shard.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ShardHeader {
    pub seq_len: usize,
    pub max_predictions: usize,
    pub vocab_size: usize,
    /// Id written at padding positions.
    pub pad_id: u32,
    pub instances: usize,
    pub record_bytes: usize,
    pub creation: CreationConfig,
    /// Where the text came from (corpus and vocabulary).
    pub source: String,
    /// CRC-32 (IEEE) of the record bytes.
    #[serde(default)]
    pub records_crc32: Option<u32>,
}

fn record_bytes(seq_len: usize, max_predictions: usize) -> usize {
    seq_len * 4 + 6 + max_predictions * 6 + 1
}

/// Encodes `instances` as one shard file's bytes.
pub fn encode_shard(
    instances: &[Instance],
    creation: &CreationConfig,
    vocab_size: usize,
    pad_id: u32,
    source: &str,
) -> Result<Vec<u8>> {
    let (s, p) = (creation.max_seq_length, creation.max_predictions_per_seq);
    let mut out = Vec::with_capacity(instances.len() * record_bytes(s, p));
    for (n, inst) in instances.iter().enumerate() {
        if inst.tokens.len() > s || inst.masked_positions.len() > p {
            bail!(
                "instance {n}: {} tokens / {} predictions do not fit {s} / {p}",
                inst.tokens.len(),
                inst.masked_positions.len()
            );
        }
        for i in 0..s {
            let id = inst.tokens.get(i).copied().unwrap_or(pad_id);
            out.extend_from_slice(&id.to_le_bytes());
        }
        for v in [
            inst.tokens.len(),
            inst.segment_a_len,
            inst.masked_positions.len(),
        ] {
            out.extend_from_slice(&(v as u16).to_le_bytes());
        }
        for i in 0..p {
            let pos = inst.masked_positions.get(i).copied().unwrap_or(0);
            out.extend_from_slice(&(pos as u16).to_le_bytes());
        }
        for i in 0..p {
            let id = inst.masked_labels.get(i).copied().unwrap_or(0);
            out.extend_from_slice(&id.to_le_bytes());
        }
        out.push(u8::from(inst.is_random_next));
    }
    let header = ShardHeader {
        seq_len: s,
        max_predictions: p,
        vocab_size,
        pad_id,
        instances: instances.len(),
        record_bytes: record_bytes(s, p),
        creation: creation.clone(),
        source: source.to_string(),
        records_crc32: Some(crc32fast::hash(&out)),
    };
    let json = serde_json::to_vec(&header)?;
    let mut file = Vec::with_capacity(12 + json.len() + out.len());
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&(json.len() as u32).to_le_bytes());
    file.extend_from_slice(&json);
    file.extend_from_slice(&out);
    Ok(file)
}

/// One shard, read into memory.
pub struct Shard {
    pub header: ShardHeader,
    records: Vec<u8>,
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Shard {
    /// Reads and checks a shard file; errors name the file.
    pub fn open(path: &Path) -> Result<Self> {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        Self::from_bytes(bytes).with_context(|| format!("{}: not a valid shard", path.display()))
    }

    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Self> {
        let v2 = bytes.len() >= 8 && &bytes[..8] == MAGIC;
        if bytes.len() < 12 || !(v2 || &bytes[..8] == MAGIC_V1) {
            bail!("missing the BBPRETR2 (or BBPRETR1) magic");
        }
        let header_len = u32_at(&bytes, 8) as usize;
        let Some(json) = 12usize
            .checked_add(header_len)
            .and_then(|end| bytes.get(12..end))
        else {
            bail!("truncated header");
        };
        let header: ShardHeader = serde_json::from_slice(json).context("header")?;
        if header.record_bytes != record_bytes(header.seq_len, header.max_predictions) {
            bail!("header: record_bytes does not match seq_len and max_predictions");
        }
        if header.seq_len < 2 || header.seq_len > usize::from(u16::MAX) {
            bail!("header: seq_len {} is outside 2..=65535", header.seq_len);
        }
        if header.pad_id as usize >= header.vocab_size {
            bail!(
                "header: pad_id {} is not below vocab_size {}",
                header.pad_id,
                header.vocab_size
            );
        }
        let records = bytes.split_off(12 + header_len);
        let expected = header.instances.checked_mul(header.record_bytes);
        if expected != Some(records.len()) {
            bail!(
                "{} bytes of records, the header announces {} instances of {} bytes",
                records.len(),
                header.instances,
                header.record_bytes
            );
        }
        match header.records_crc32 {
            Some(want) => {
                let got = crc32fast::hash(&records);
                if got != want {
                    bail!(
                        "the records' CRC-32 is {got:08x}, the header records {want:08x}: the file is corrupt"
                    );
                }
            }
            None if v2 => bail!("header: records_crc32 missing"),
            None => {}
        }
        let shard = Self { header, records };
        for i in 0..shard.len() {
            shard
                .check_record(i)
                .with_context(|| format!("record {i}"))?;
        }
        Ok(shard)
    }

    /// Checks one record's counts, ids and positions against the header.
    fn check_record(&self, i: usize) -> Result<()> {
        let (s, p, v) = (
            self.header.seq_len,
            self.header.max_predictions,
            self.header.vocab_size,
        );
        let r = &self.records[i * self.header.record_bytes..(i + 1) * self.header.record_bytes];
        let n = u16_at(r, s * 4);
        let segment_a_len = u16_at(r, s * 4 + 2);
        let k = u16_at(r, s * 4 + 4);
        if n > s {
            bail!("{n} tokens, more than the sequence length {s}");
        }
        if segment_a_len > n {
            bail!("segment A of {segment_a_len} tokens is longer than the {n} tokens");
        }
        if k > p {
            bail!("{k} predictions, more than max_predictions {p}");
        }
        for t in 0..n {
            let id = u32_at(r, t * 4) as usize;
            if id >= v {
                bail!("token {t} has id {id}, not below the vocabulary size {v}");
            }
        }
        let pos_at = s * 4 + 6;
        let ids_at = pos_at + p * 2;
        let mut last = None;
        for j in 0..k {
            let pos = u16_at(r, pos_at + j * 2);
            if pos >= n || last.is_some_and(|l| pos <= l) {
                bail!(
                    "masked position {j} is {pos}: expected ascending positions inside the {n} tokens"
                );
            }
            last = Some(pos);
            let id = u32_at(r, ids_at + j * 4) as usize;
            if id >= v {
                bail!("masked label {j} has id {id}, not below the vocabulary size {v}");
            }
        }
        let next = r[ids_at + p * 4];
        if next > 1 {
            bail!("next_sentence is {next}, expected 0 or 1");
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.header.instances
    }

    pub fn is_empty(&self) -> bool {
        self.header.instances == 0
    }

    /// Instance `i`, unpadded.
    pub fn get(&self, i: usize) -> Instance {
        let (s, p) = (self.header.seq_len, self.header.max_predictions);
        let r = &self.records[i * self.header.record_bytes..(i + 1) * self.header.record_bytes];
        let n = u16_at(r, s * 4);
        let segment_a_len = u16_at(r, s * 4 + 2);
        let k = u16_at(r, s * 4 + 4);
        let pos_at = s * 4 + 6;
        let ids_at = pos_at + p * 2;
        Instance {
            tokens: (0..n).map(|t| u32_at(r, t * 4)).collect(),
            segment_a_len,
            is_random_next: r[ids_at + p * 4] == 1,
            masked_positions: (0..k).map(|j| u16_at(r, pos_at + j * 2)).collect(),
            masked_labels: (0..k).map(|j| u32_at(r, ids_at + j * 4)).collect(),
        }
    }
}

/// Tensors of one pretraining batch (the inputs of `BertForPretraining::pretraining_loss`).
pub struct PretrainingBatch {
    /// `[batch, seq]`.
    pub input_ids: Tensor<2, Int>,
    /// `[batch, seq]`.
    pub token_types: Tensor<2, Int>,
    /// `[batch, seq]`, true at padding.
    pub padding: Tensor<2, Bool>,
    /// `[batch, predictions]`.
    pub masked_positions: Tensor<2, Int>,
    /// `[batch, predictions]`.
    pub masked_ids: Tensor<2, Int>,
    /// `[batch, predictions]`: 1 for a real prediction, 0 for padding.
    pub masked_weights: Tensor<2>,
    /// `[batch]`: 1 when B is random.
    pub next_sentence: Tensor<1, Int>,
}

/// The instances of one or more shards of one sequence length, e.g. `train-*.bbpt` of a
/// directory written by `bigbatch bert-data`.
pub struct PretrainingSet {
    shards: Vec<Shard>,
    /// Cumulative instance counts (`starts[k]` = first index of shard `k`).
    starts: Vec<usize>,
    pub header: ShardHeader,
}

impl PretrainingSet {
    /// All `{split}-*.bbpt` files of `dir`, in name order; they must agree on sequence length,
    /// predictions and vocabulary size.
    pub fn open_dir(dir: &Path, split: &str) -> Result<Self> {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .with_context(|| format!("cannot read the shard directory {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().is_some_and(|e| e == "bbpt")
                    && p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with(&format!("{split}-")))
            })
            .collect();
        paths.sort();
        if paths.is_empty() {
            bail!(
                "{}: no {split}-*.bbpt shards (write them with `bigbatch bert-data`)",
                dir.display()
            );
        }
        let shards = paths
            .iter()
            .map(|p| Shard::open(p))
            .collect::<Result<Vec<_>>>()?;
        Self::from_shards(shards).with_context(|| format!("{}", dir.display()))
    }

    pub fn from_shards(shards: Vec<Shard>) -> Result<Self> {
        let Some(first) = shards.first() else {
            bail!("no shards");
        };
        let header = first.header.clone();
        let mut starts = Vec::with_capacity(shards.len());
        let mut total = 0;
        for (k, shard) in shards.iter().enumerate() {
            let h = &shard.header;
            if (h.seq_len, h.max_predictions, h.vocab_size)
                != (header.seq_len, header.max_predictions, header.vocab_size)
            {
                bail!(
                    "shard {k} has seq_len {} / max_predictions {} / vocab_size {}, shard 0 {} / {} / {}",
                    h.seq_len,
                    h.max_predictions,
                    h.vocab_size,
                    header.seq_len,
                    header.max_predictions,
                    header.vocab_size
                );
            }
            starts.push(total);
            total += shard.len();
        }
        let header = ShardHeader {
            instances: total,
            ..header
        };
        Ok(Self {
            shards,
            starts,
            header,
        })
    }

    pub fn len(&self) -> usize {
        self.header.instances
    }

    pub fn is_empty(&self) -> bool {
        self.header.instances == 0
    }

    pub fn get(&self, i: usize) -> Instance {
        let k = self.starts.partition_point(|&s| s <= i) - 1;
        self.shards[k].get(i - self.starts[k])
    }

    /// The padded tensors of instances `indices`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> PretrainingBatch {
        let (s, p) = (self.header.seq_len, self.header.max_predictions);
        let b = indices.len();
        let mut ids = vec![self.header.pad_id as i64; b * s];
        let mut types = vec![0i64; b * s];
        let mut padding = vec![true; b * s];
        let mut positions = vec![0i64; b * p];
        let mut labels = vec![0i64; b * p];
        let mut weights = vec![0f32; b * p];
        let mut next = vec![0i64; b];
        for (row, &i) in indices.iter().enumerate() {
            let inst = self.get(i);
            for (t, &id) in inst.tokens.iter().enumerate() {
                ids[row * s + t] = id as i64;
                types[row * s + t] = i64::from(t >= inst.segment_a_len);
                padding[row * s + t] = false;
            }
            for (j, (&pos, &label)) in inst
                .masked_positions
                .iter()
                .zip(&inst.masked_labels)
                .enumerate()
            {
                positions[row * p + j] = pos as i64;
                labels[row * p + j] = label as i64;
                weights[row * p + j] = 1.0;
            }
            next[row] = i64::from(inst.is_random_next);
        }
        let int2 = |v: Vec<i64>, cols: usize| {
            Tensor::<2, Int>::from_data(TensorData::new(v, [b, cols]), device)
        };
        PretrainingBatch {
            input_ids: int2(ids, s),
            token_types: int2(types, s),
            padding: Tensor::from_data(TensorData::new(padding, [b, s]), device),
            masked_positions: int2(positions, p),
            masked_ids: int2(labels, p),
            masked_weights: Tensor::from_data(TensorData::new(weights, [b, p]), device),
            next_sentence: Tensor::from_data(TensorData::new(next, [b]), device),
        }
    }
}
