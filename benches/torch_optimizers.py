#!/usr/bin/env python3
"""PyTorch twin of `benches/benches/optimizer_step.rs`: one optimizer step over the ResNet-50 and
BERT-Large parameter sets (same tensor shapes and counts: 161 tensors / 25,557,032 parameters and
391 tensors / 335,141,888), float32 on the CPU, values and gradients random, state allocated by a
first step, weight decay 1e-4 in each optimizer's own convention (SGD and Adam: L2; AdamW:
decoupled). Each torch implementation (`for-loop`, `foreach`, `fused`) at 1 and 2 threads; the
median of the timed steps after warm-up, in milliseconds.

    pip install torch
    python3 benches/torch_optimizers.py                 # both sets (~3 min on 2 cores)
    python3 benches/torch_optimizers.py resnet50        # one set
"""
import statistics
import sys
import time

import torch


def resnet50_shapes():
    """torchvision's resnet50 (v1.5) trainable tensors: convs without bias, BN gamma/beta, fc."""
    shapes = [(64, 3, 7, 7), (64,), (64,)]
    cin = 64
    for width, blocks in zip((64, 128, 256, 512), (3, 4, 6, 3)):
        for b in range(blocks):
            shapes += [(width, cin, 1, 1), (width,), (width,)]
            shapes += [(width, width, 3, 3), (width,), (width,)]
            shapes += [(4 * width, width, 1, 1), (4 * width,), (4 * width,)]
            if b == 0:
                shapes += [(4 * width, cin, 1, 1), (4 * width,), (4 * width,)]
            cin = 4 * width
    shapes += [(1000, 2048), (1000,)]
    return shapes


def bert_large_shapes():
    """BERT-Large encoder and pooler (vocabulary 30,522, 512 positions, 2 token types)."""
    h, f = 1024, 4096
    shapes = [(30522, h), (512, h), (2, h), (h,), (h,)]
    for _ in range(24):
        for _ in range(4):  # query, key, value, attention output
            shapes += [(h, h), (h,)]
        shapes += [(h,), (h,)]  # attention LayerNorm
        shapes += [(f, h), (f,), (h, f), (h,)]
        shapes += [(h,), (h,)]  # output LayerNorm
    shapes += [(h, h), (h,)]  # pooler
    return shapes


SETS = {
    "resnet50": (resnet50_shapes, 161, 25_557_032),
    "bert_large": (bert_large_shapes, 391, 335_141_888),
}


def optimizers(params):
    """(name, torch implementation, optimizer) for every variant torch offers on the CPU, one at
    a time (each holds its own state)."""
    for nesterov in (False, True):
        for impl in ("for-loop", "foreach"):
            sgd = torch.optim.SGD(params, lr=0.1, momentum=0.9, nesterov=nesterov, weight_decay=1e-4,
                                  foreach=impl == "foreach")
            yield ("nesterov" if nesterov else "heavy_ball", impl, sgd)
    for name, cls in (("adam", torch.optim.Adam), ("adamw", torch.optim.AdamW)):
        for impl in ("for-loop", "foreach", "fused"):
            kw = {"fused": True} if impl == "fused" else {"foreach": impl == "foreach"}
            yield (name, impl, cls(params, lr=1e-3, weight_decay=1e-4, **kw))


def time_steps(opt, warmup=2, timed=7):
    for _ in range(warmup):
        opt.step()
    times = []
    for _ in range(timed):
        t0 = time.perf_counter()
        opt.step()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def main():
    names = sys.argv[1:] or list(SETS)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}; median ms per step")
    for name in names:
        shapes_of, count, numel = SETS[name]
        shapes = shapes_of()
        assert len(shapes) == count, (name, len(shapes))
        assert sum(torch.Size(s).numel() for s in shapes) == numel, name
        params = [torch.nn.Parameter(torch.randn(s) * 0.05) for s in shapes]
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        print(f"\n### {name} ({count} tensors, {numel:,} parameters)\n")
        print("| optimizer | torch implementation | 1 thread | 2 threads |")
        print("|---|---|---:|---:|")
        for opt_name, impl, opt in optimizers(params):
            row = []
            for threads in (1, 2):
                torch.set_num_threads(threads)
                row.append(time_steps(opt))
            print(f"| {opt_name} | {impl} | {row[0]:.1f} | {row[1]:.1f} |", flush=True)


if __name__ == "__main__":
    main()
