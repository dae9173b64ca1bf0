use super::*;
use std::collections::HashSet;

const STANDARD_VOCAB: &str = include_str!("../../vocab/bert-base-uncased.txt");

fn standard() -> WordPieceTokenizer {
    WordPieceTokenizer::from_vocab_text(STANDARD_VOCAB, "bert-base-uncased.txt").unwrap()
}

/// Ids and pieces of the standard uncased vocabulary, from google-research/bert and the Hugging
/// Face documentation (`bert-base-uncased`).
#[test]
fn standard_vocabulary_tokenizes_known_strings() {
    let t = standard();
    assert_eq!(t.vocab_size(), 30_522);
    let s = t.special();
    assert_eq!(
        (s.pad, s.unk, s.cls, s.sep, s.mask),
        (0, 100, 101, 102, 103)
    );
    // "hello world" -> [CLS] 7592 2088 [SEP] in every BERT tutorial.
    assert_eq!(t.encode("Hello world").unwrap(), vec![7592, 2088]);
    assert_eq!(t.encode("the").unwrap(), vec![1996]);
    assert_eq!(t.encode(", . !").unwrap(), vec![1010, 1012, 999]);
    // Hugging Face's tokenizer summary: "I have a new GPU!" under bert-base-uncased.
    assert_eq!(
        t.tokens("I have a new GPU!").unwrap(),
        ["i", "have", "a", "new", "gp", "##u", "!"]
    );
    // Lower-casing and accent stripping (do_lower_case=True).
    assert_eq!(t.encode("CAFÉ").unwrap(), t.encode("cafe").unwrap());
    // A character the vocabulary lacks becomes [UNK].
    assert_eq!(t.encode("\u{1F600}").unwrap(), vec![100]);
}

#[test]
fn vocabulary_errors_name_the_line() {
    let err = WordPieceTokenizer::from_vocab_text("[PAD]\n[UNK]\n[PAD]\n", "v.txt")
        .err()
        .unwrap();
    assert!(
        err.to_string().contains("v.txt:3: duplicate token"),
        "{err}"
    );
    let err = WordPieceTokenizer::from_vocab_text("[PAD]\n[UNK]\n", "v.txt")
        .err()
        .unwrap();
    assert!(err.to_string().contains("no [CLS] token"), "{err}");
}

fn sample_documents(n: usize) -> Vec<Document> {
    let mut docs = corpus::sotu();
    docs.truncate(n);
    docs
}

#[test]
fn trained_vocabulary_puts_special_tokens_first_and_round_trips() {
    let docs = sample_documents(3);
    let lines = docs.iter().flatten().map(String::as_str);
    let t = WordPieceTokenizer::train(lines, 600, 2).unwrap();
    assert!(
        t.vocab_size() <= 600 && t.vocab_size() > 100,
        "{}",
        t.vocab_size()
    );
    let s = t.special();
    assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
    let again = WordPieceTokenizer::from_vocab_text(&t.vocab_text(), "again").unwrap();
    let text = "The Congress of the United States";
    assert_eq!(t.encode(text).unwrap(), again.encode(text).unwrap());
    assert!(!t.encode(text).unwrap().contains(&s.unk));
}

/// The embedded vocabularies are what `bigbatch bert-vocab --corpus sotu --size N` trains (the same
/// token set; the trainer's order of equally frequent pieces varies between runs), with the
/// special tokens at 0-4; the 1k one cuts long words into more pieces.
#[test]
fn embedded_vocabularies_are_trained_on_the_corpus() {
    let docs = corpus::sotu();
    let lines = || docs.iter().flatten().map(String::as_str);
    let sorted = |text: String| {
        let mut tokens: Vec<String> = text.lines().map(str::to_string).collect();
        tokens.sort();
        tokens
    };
    let text = "appropriations notwithstanding unconstitutional interpretations";
    let mut pieces = Vec::new();
    for (embedded, size) in [
        (WordPieceTokenizer::sotu(), 8192),
        (WordPieceTokenizer::sotu_1k(), 1024),
    ] {
        assert_eq!(embedded.vocab_size(), size);
        let s = embedded.special();
        assert_eq!((s.pad, s.unk, s.cls, s.sep, s.mask), (0, 1, 2, 3, 4));
        let trained = WordPieceTokenizer::train(lines(), size, 2).unwrap();
        assert_eq!(sorted(embedded.vocab_text()), sorted(trained.vocab_text()));
        pieces.push(embedded.tokens(text).unwrap().len());
    }
    assert!(pieces[1] > pieces[0], "{pieces:?}");
}

#[test]
fn corpus_format_separates_documents_by_blank_lines() {
    let docs = corpus::parse_corpus("a b.\nc d.\n\n\n  \ne f.\n");
    assert_eq!(docs, vec![vec!["a b.", "c d."], vec!["e f."]]);
    let sotu = corpus::sotu();
    assert_eq!(sotu.len(), 233);
    assert_eq!(sotu.iter().map(Vec::len).sum::<usize>(), 62_907);
}

fn phase1_sample() -> (WordPieceTokenizer, CreationConfig, Vec<Instance>) {
    let t = WordPieceTokenizer::sotu();
    let creation = CreationConfig {
        dupe_factor: 2,
        ..CreationConfig::phase1()
    };
    let tokenized = tokenize_documents(&sample_documents(30), &t).unwrap();
    let instances = create_instances(&tokenized, &t, &creation).unwrap();
    (t, creation, instances)
}

#[test]
fn instances_have_the_reference_layout_and_statistics() {
    let (t, creation, instances) = phase1_sample();
    assert!(instances.len() > 1000, "{}", instances.len());
    let s = t.special();
    let (mut masked, mut unchanged, mut total_predictions, mut random_next) = (0, 0, 0, 0);
    let mut short = 0;
    for inst in &instances {
        let n = inst.tokens.len();
        assert!(n <= creation.max_seq_length);
        if n < creation.max_seq_length {
            short += 1;
        }
        assert_eq!(inst.tokens[0], s.cls);
        assert_eq!(inst.tokens[inst.segment_a_len - 1], s.sep);
        assert_eq!(inst.tokens[n - 1], s.sep);
        assert!(inst.segment_a_len >= 3 && inst.segment_a_len < n - 1);
        // min(max_predictions, max(1, round(0.15 n))) predictions, ascending, never [CLS]/[SEP].
        let expected = creation
            .max_predictions_per_seq
            .min(((n as f64 * 0.15).round() as usize).max(1));
        assert_eq!(inst.masked_positions.len(), expected);
        assert!(inst.masked_positions.windows(2).all(|w| w[0] < w[1]));
        for (&pos, &label) in inst.masked_positions.iter().zip(&inst.masked_labels) {
            assert!(pos != 0 && pos != inst.segment_a_len - 1 && pos != n - 1);
            assert!(label != s.cls && label != s.sep);
            total_predictions += 1;
            if inst.tokens[pos] == s.mask {
                masked += 1;
            } else if inst.tokens[pos] == label {
                unchanged += 1;
            }
        }
        random_next += usize::from(inst.is_random_next);
    }
    let frac = |k: usize, n: usize| k as f64 / n as f64;
    let (m, u) = (
        frac(masked, total_predictions),
        frac(unchanged, total_predictions),
    );
    // 80% [MASK], 10% unchanged (+ the rare random draw of the same token), 10% random.
    assert!((m - 0.8).abs() < 0.015, "[MASK] fraction {m}");
    assert!((u - 0.1).abs() < 0.015, "unchanged fraction {u}");
    assert!(
        (1.0 - m - u - 0.1).abs() < 0.015,
        "random fraction {}",
        1.0 - m - u
    );
    let nsp = frac(random_next, instances.len());
    assert!((nsp - 0.5).abs() < 0.04, "random-next fraction {nsp}");
    // Most chunks fill the target length; documents' last chunks and short targets do not.
    let short = frac(short, instances.len());
    assert!(
        short > 0.01 && short < 0.5,
        "fraction shorter than max_seq_length {short}"
    );
}

#[test]
fn creation_is_deterministic_under_a_seed() {
    let t = WordPieceTokenizer::sotu();
    let tokenized = tokenize_documents(&sample_documents(6), &t).unwrap();
    let c = CreationConfig {
        dupe_factor: 1,
        ..CreationConfig::phase1()
    };
    let a = create_instances(&tokenized, &t, &c).unwrap();
    let b = create_instances(&tokenized, &t, &c).unwrap();
    assert_eq!(a, b);
    let other = CreationConfig { seed: 7, ..c };
    assert_ne!(a, create_instances(&tokenized, &t, &other).unwrap());
}

#[test]
fn whole_word_masking_masks_every_piece_of_a_word() {
    let t = WordPieceTokenizer::sotu();
    let tokenized = tokenize_documents(&sample_documents(6), &t).unwrap();
    let c = CreationConfig {
        dupe_factor: 1,
        do_whole_word_mask: true,
        ..CreationConfig::phase1()
    };
    let mut continuation_pieces = 0;
    for inst in create_instances(&tokenized, &t, &c).unwrap() {
        let covered: HashSet<usize> = inst.masked_positions.iter().copied().collect();
        for (&pos, &label) in inst.masked_positions.iter().zip(&inst.masked_labels) {
            // A masked continuation piece implies the previous piece of its word is masked too
            // (a piece right after [SEP] joins the word before it, as in the reference).
            if t.is_continuation(label) {
                continuation_pieces += 1;
                let previous = pos - 1;
                let s = t.special();
                assert!(
                    covered.contains(&previous) || previous == 0 || inst.tokens[previous] == s.sep
                );
            }
        }
    }
    assert!(continuation_pieces > 0);
}

#[test]
fn shards_round_trip_and_batch() {
    let (t, creation, instances) = phase1_sample();
    let bytes = encode_shard(&instances[..50], &creation, t.vocab_size(), 0, "test").unwrap();
    let shard = Shard::from_bytes(bytes.clone()).unwrap();
    assert_eq!(shard.len(), 50);
    for (i, inst) in instances[..50].iter().enumerate() {
        assert_eq!(&shard.get(i), inst);
    }
    // Two shards read as one set.
    let second = encode_shard(&instances[50..80], &creation, t.vocab_size(), 0, "test").unwrap();
    let set = PretrainingSet::from_shards(vec![shard, Shard::from_bytes(second).unwrap()]).unwrap();
    assert_eq!(set.len(), 80);
    assert_eq!(set.get(65), instances[65]);
    // The CPU backend: with the wgpu feature compiled in, `Device::default()` is a WGPU device.
    let device = burn::tensor::Device::flex();
    let batch = set.batch(&[3, 65], &device);
    assert_eq!(batch.input_ids.dims(), [2, 128]);
    assert_eq!(batch.masked_ids.dims(), [2, 20]);
    let ids: Vec<i64> = batch
        .input_ids
        .to_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    let inst = &instances[65];
    assert_eq!(
        ids[128..128 + inst.tokens.len()]
            .iter()
            .map(|&v| v as u32)
            .collect::<Vec<_>>(),
        inst.tokens
    );
    let pad: Vec<bool> = batch.padding.to_data().try_to_vec().unwrap();
    assert_eq!(
        pad[128..].iter().filter(|p| !**p).count(),
        inst.tokens.len()
    );
    let types: Vec<i64> = batch
        .token_types
        .to_data()
        .convert::<i64>()
        .try_to_vec()
        .unwrap();
    assert_eq!(types[128 + inst.segment_a_len - 1], 0);
    assert_eq!(types[128 + inst.segment_a_len], 1);
    let w: Vec<f32> = batch.masked_weights.to_data().try_to_vec().unwrap();
    assert_eq!(
        w[20..].iter().sum::<f32>() as usize,
        inst.masked_positions.len()
    );
    // A truncated or foreign file is refused.
    assert!(Shard::from_bytes(bytes[..bytes.len() - 3].to_vec()).is_err());
    assert!(Shard::from_bytes(b"not a shard at all".to_vec()).is_err());
}

/// Record offsets of a shard written with seq_len 128 and 20 predictions (the layout in
/// `shard.rs`), the start of the records, and the bytes with the header's CRC-32 recomputed
/// after `corrupt` changed them (what a buggy writer would produce).
fn corrupted(bytes: &[u8], corrupt: impl Fn(&mut [u8])) -> Vec<u8> {
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    let mut header: serde_json::Value =
        serde_json::from_slice(&bytes[12..12 + header_len]).unwrap();
    let mut records = bytes[12 + header_len..].to_vec();
    corrupt(&mut records);
    header["records_crc32"] = serde_json::json!(crc32fast::hash(&records));
    let json = serde_json::to_vec(&header).unwrap();
    let mut out = bytes[..8].to_vec();
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(&json);
    out.extend_from_slice(&records);
    out
}

/// Same-size corruption is caught: a flipped byte by the checksum, and records that a writer got
/// wrong (recomputed checksum) by the record checks, with the record named.
#[test]
fn corrupt_shards_are_refused_naming_the_record() {
    let (t, creation, instances) = phase1_sample();
    let bytes = encode_shard(&instances[..10], &creation, t.vocab_size(), 0, "test").unwrap();
    let (s, p) = (128usize, 20usize);
    let record = s * 4 + 6 + p * 6 + 1;
    let header_len = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
    // Bit rot in record 3's first token id.
    let mut flipped = bytes.clone();
    flipped[12 + header_len + 3 * record] ^= 0x40;
    let e = format!("{:#}", Shard::from_bytes(flipped).err().unwrap());
    assert!(e.contains("CRC-32") && e.contains("corrupt"), "{e}");
    let err = |corrupt: &dyn Fn(&mut [u8])| {
        format!(
            "{:#}",
            Shard::from_bytes(corrupted(&bytes, corrupt)).err().unwrap()
        )
    };
    // Record 2: token count 0xffff.
    let e = err(&|r| r[2 * record + s * 4..2 * record + s * 4 + 2].copy_from_slice(&[0xff, 0xff]));
    assert!(e.contains("record 2") && e.contains("65535 tokens"), "{e}");
    // Record 4: a token id beyond the vocabulary (8,192 entries).
    let e = err(&|r| r[4 * record + 4..4 * record + 8].copy_from_slice(&9000u32.to_le_bytes()));
    assert!(e.contains("record 4") && e.contains("id 9000"), "{e}");
    // Record 7: the first masked position beyond the tokens.
    let at = 7 * record + s * 4 + 6;
    let e = err(&|r| r[at..at + 2].copy_from_slice(&500u16.to_le_bytes()));
    assert!(
        e.contains("record 7") && e.contains("masked position 0 is 500"),
        "{e}"
    );
    // Untouched bytes still read.
    assert_eq!(
        Shard::from_bytes(corrupted(&bytes, |_| {})).unwrap().len(),
        10
    );
}

#[test]
fn datasets_hold_out_whole_documents_and_write_shards() {
    let t = WordPieceTokenizer::sotu();
    let creation = CreationConfig {
        dupe_factor: 1,
        ..CreationConfig::phase1()
    };
    let docs = sample_documents(8);
    let dataset = make_dataset(&docs, &t, &creation, 2).unwrap();
    assert!(!dataset.train.is_empty() && !dataset.eval.is_empty());
    let dir = std::env::temp_dir().join(format!("bigbatch-shards-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let info = DatasetInfo {
        source: "test".into(),
        creation: creation.clone(),
        eval_documents: 2,
        train_instances: dataset.train.len(),
        eval_instances: dataset.eval.len(),
        vocab_size: t.vocab_size(),
    };
    write_dataset(&dir, &dataset, &info, t.special().pad, 100).unwrap();
    let train = PretrainingSet::open_dir(&dir, "train").unwrap();
    assert_eq!(train.len(), dataset.train.len());
    assert_eq!(train.get(train.len() - 1), *dataset.train.last().unwrap());
    let eval = PretrainingSet::open_dir(&dir, "eval").unwrap();
    assert_eq!(eval.len(), dataset.eval.len());
    let err = PretrainingSet::open_dir(&dir, "phase3").err().unwrap();
    assert!(err.to_string().contains("no phase3-*.bbpt shards"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(make_dataset(&docs, &t, &creation, 7).is_err());
}
