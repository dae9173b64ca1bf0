//! BERT's WordPiece tokenization, by Hugging Face `tokenizers`: `BertNormalizer` (clean text,
//! split CJK characters, lower-case, strip accents), `BertPreTokenizer` (whitespace and
//! punctuation) and greedy longest-match-first `WordPiece` with `##` continuation pieces and
//! `[UNK]` for words over 100 characters or without a match, as google-research/bert's
//! `tokenization.py` (`FullTokenizer`, `do_lower_case=True`).

use anyhow::{Context, Result, anyhow, bail};
use std::collections::HashMap;
use std::path::Path;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::wordpiece::{WordPiece, WordPieceTrainer};
use tokenizers::normalizers::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, Model, TokenizerImpl};

type Inner = TokenizerImpl<
    WordPiece,
    BertNormalizer,
    BertPreTokenizer,
    PostProcessorWrapper,
    DecoderWrapper,
>;

/// The special tokens every BERT vocabulary needs, in the order a trained vocabulary puts them
/// first (the standard vocabulary has them at 0, 100, 101, 102, 103).
pub const SPECIAL_TOKENS: [&str; 5] = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];

/// The vocabulary trained on the embedded corpus (`bigbatch bert-vocab`, 8,192 entries); see
/// `crates/data/vocab/README.md`.
pub const SOTU_VOCAB: &str = include_str!("../../vocab/sotu-uncased-8k.txt");

/// A 1,024-entry vocabulary trained on the embedded corpus the same way (`bert-nano`): longer words
/// split into several pieces, so a masked piece is predictable from its neighbours.
pub const SOTU_VOCAB_1K: &str = include_str!("../../vocab/sotu-uncased-1k.txt");

/// The ids of the special tokens in one vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpecialIds {
    pub pad: u32,
    pub unk: u32,
    pub cls: u32,
    pub sep: u32,
    pub mask: u32,
}

/// An uncased BERT WordPiece tokenizer over one vocabulary (one token per line, id = line).
pub struct WordPieceTokenizer {
    inner: Inner,
    vocab: Vec<String>,
    special: SpecialIds,
}

fn pipeline(model: WordPiece) -> Inner {
    let mut inner = TokenizerImpl::new(model);
    inner
        .with_normalizer(Some(BertNormalizer::new(true, true, None, true)))
        .with_pre_tokenizer(Some(BertPreTokenizer));
    inner
}

impl WordPieceTokenizer {
    /// Reads a `vocab.txt` (e.g. the standard uncased BERT vocabulary, 30,522 entries).
    pub fn from_vocab_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the vocabulary {}", path.display()))?;
        Self::from_vocab_text(&text, &path.display().to_string())
    }

    /// The vocabulary trained on the embedded State of the Union corpus.
    pub fn sotu() -> Self {
        Self::from_vocab_text(SOTU_VOCAB, "embedded sotu vocabulary")
            .expect("the embedded vocabulary is valid")
    }

    /// The 1,024-entry vocabulary trained on the embedded corpus.
    pub fn sotu_1k() -> Self {
        Self::from_vocab_text(SOTU_VOCAB_1K, "embedded sotu-1k vocabulary")
            .expect("the embedded vocabulary is valid")
    }

    /// One token per line; `origin` names the source in errors.
    pub fn from_vocab_text(text: &str, origin: &str) -> Result<Self> {
        let vocab: Vec<String> = text.lines().map(|l| l.trim_end().to_string()).collect();
        let mut map = HashMap::with_capacity(vocab.len());
        for (i, token) in vocab.iter().enumerate() {
            if token.is_empty() {
                bail!("{origin}:{}: empty token", i + 1);
            }
            if map.insert(token.clone(), i as u32).is_some() {
                bail!("{origin}:{}: duplicate token {token:?}", i + 1);
            }
        }
        let id = |t: &str| {
            map.get(t)
                .copied()
                .ok_or_else(|| anyhow!("{origin}: the vocabulary has no {t} token"))
        };
        let special = SpecialIds {
            pad: id("[PAD]")?,
            unk: id("[UNK]")?,
            cls: id("[CLS]")?,
            sep: id("[SEP]")?,
            mask: id("[MASK]")?,
        };
        let model = WordPiece::builder()
            .vocab(WordPiece::read_bytes(text.as_bytes()).map_err(|e| anyhow!("{origin}: {e}"))?)
            .unk_token("[UNK]".into())
            .continuing_subword_prefix("##".into())
            .max_input_chars_per_word(100)
            .build()
            .map_err(|e| anyhow!("{origin}: {e}"))?;
        Ok(Self {
            inner: pipeline(model),
            vocab,
            special,
        })
    }

    /// Trains a WordPiece vocabulary of `vocab_size` entries on `lines` (`tokenizers`'
    /// `WordPieceTrainer`: BPE merges over the normalised, pre-tokenised words, continuation
    /// pieces prefixed `##`), the special tokens first.
    pub fn train<'a>(
        lines: impl Iterator<Item = &'a str> + Send,
        vocab_size: usize,
        min_frequency: u64,
    ) -> Result<Self> {
        if vocab_size <= SPECIAL_TOKENS.len() {
            bail!(
                "vocab_size: expected more than {} entries",
                SPECIAL_TOKENS.len()
            );
        }
        let mut trainer = WordPieceTrainer::builder()
            .vocab_size(vocab_size)
            .min_frequency(min_frequency)
            .special_tokens(
                SPECIAL_TOKENS
                    .iter()
                    .map(|t| AddedToken::from(t.to_string(), true))
                    .collect(),
            )
            .continuing_subword_prefix("##".into())
            .show_progress(false)
            .build();
        let mut inner = pipeline(WordPiece::default());
        inner
            .train(&mut trainer, lines)
            .map_err(|e| anyhow!("training the vocabulary: {e}"))?;
        let mut entries: Vec<(String, u32)> = inner.get_model().get_vocab().into_iter().collect();
        entries.sort_by_key(|(_, id)| *id);
        let text: String = entries.iter().map(|(t, _)| format!("{t}\n")).collect();
        Self::from_vocab_text(&text, "trained vocabulary")
    }

    /// The vocabulary as `vocab.txt` text.
    pub fn vocab_text(&self) -> String {
        self.vocab.iter().map(|t| format!("{t}\n")).collect()
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    pub fn special(&self) -> SpecialIds {
        self.special
    }

    /// The token of `id`.
    pub fn token(&self, id: u32) -> &str {
        &self.vocab[id as usize]
    }

    /// Whether `id` is a continuation piece (`##...`).
    pub fn is_continuation(&self, id: u32) -> bool {
        self.vocab[id as usize].starts_with("##")
    }

    /// The ids of `text`, without special tokens.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(|e| anyhow!("tokenizing {text:?}: {e}"))?
            .get_ids()
            .to_vec())
    }

    /// The ids of many texts (in parallel), without special tokens.
    pub fn encode_all(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>> {
        let encodings = self
            .inner
            .encode_batch(texts.to_vec(), false)
            .map_err(|e| anyhow!("tokenizing: {e}"))?;
        Ok(encodings.iter().map(|e| e.get_ids().to_vec()).collect())
    }

    /// The tokens of `text`, without special tokens.
    pub fn tokens(&self, text: &str) -> Result<Vec<String>> {
        Ok(self
            .encode(text)?
            .into_iter()
            .map(|id| self.token(id).to_string())
            .collect())
    }
}
