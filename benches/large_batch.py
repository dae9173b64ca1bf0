#!/usr/bin/env python3
"""Gradient accumulation on the CPU: time per example and peak memory of resnet-mini
(configs/models/resnet.ron + configs/optimizers/lamb.ron, ghost batch norm over 256 examples) at

  - batch 256 in one piece (plain training),
  - batch 4,096 as 16 micro-batches of 256 (accumulation),
  - batch 4,096 in one piece (memory only),

each run by the release `bigbatch` binary under `/usr/bin/time` (peak resident set) in a fresh
process, with training throughput read from the run's summary.json (evaluation excluded).

    cargo build --release -p bigbatch-cli
    python3 benches/large_batch.py [--steps-256 32] [--steps-4096 2]

Prints a markdown table (the figures in docs/benchmarks.md).
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "target", "release", "bigbatch")


def run(batch, micro, steps, out):
    cmd = [
        "/usr/bin/time", "-v", BIN, "train", "--no-progress",
        "--config", os.path.join(ROOT, "configs/models/resnet.ron"),
        "--config", os.path.join(ROOT, "configs/optimizers/lamb.ron"),
        "--out", out,
        "--set", f"train.batch_size={batch}",
        "--set", f"train.micro_batch_size={micro}",
        "--set", "model.bn.virtual_batch_size=256",
        "--set", f"train.steps={steps}",
        "--set", f"train.eval_every={steps}",
        "--set", "train.train_eval_examples=256",
    ]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{p.stderr}")
    peak_kb = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr).group(1))
    with open(os.path.join(out, "summary.json")) as f:
        summary = json.load(f)
    return summary["examples_per_second"], peak_kb / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps-256", type=int, default=32)
    ap.add_argument("--steps-4096", type=int, default=2)
    a = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build first: cargo build --release -p bigbatch-cli")
    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("256 in one piece", *run(256, 256, a.steps_256, os.path.join(tmp, "a"))),
            ("4,096 as 16 x 256", *run(4096, 256, a.steps_4096, os.path.join(tmp, "b"))),
            ("4,096 in one piece", *run(4096, 4096, 1, os.path.join(tmp, "c"))),
        ]
    base = rows[0][1]
    print("| batch | examples/s | time per example vs batch 256 | peak RSS (MiB) |")
    print("|---|---:|---:|---:|")
    for name, rate, peak in rows:
        print(f"| {name} | {rate:.0f} | {base / rate:.3f} | {peak:.0f} |")


if __name__ == "__main__":
    main()
