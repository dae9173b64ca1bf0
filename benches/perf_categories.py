#!/usr/bin/env python3
"""Sums a `perf report` flat profile into the categories of docs/benchmarks.md ("Where the time
goes"): which share of the samples is inside burn's kernels and which is element-wise passes,
allocation and the rest.

    perf record -F 499 -o step.data target/release/deps/model_step-HASH --bench --profile-time 12 NAME
    perf report -i step.data --stdio --sort symbol | python3 benches/perf_categories.py
"""
import re
import sys

CATEGORIES = [
    ("GEMM (burn's gemm crate)", r"gemm_f32|gemm_common|gemm::"),
    ("convolution kernels (direct conv, transposed conv for the backward)", r"conv3d|conv2d|conv_transpose|im2col|col2im"),
    ("layout copies (transposes, reshapes of non-contiguous tensors)", r"copy_2d_tiled|memmove|memcpy|strided|permute"),
    ("transcendental functions (tanh, exp, erf: GELU, softmax)", r"tanhf|expm1f|expf|exp_|erf|logf|log1p"),
    ("random numbers (dropout masks)", r"random|sampler|chacha|rng"),
    ("element-wise passes (burn's flex element-wise and reduction loops)", r"zip_|binary_op|unary_op|scalar_op|macerator|call_mut|reduce|sum_|mean|mask|compare|clamp|select|gather|scatter|softmax|layer_norm|relu|cat|slice|FnMut|filled_typed"),
    ("allocation, zero-filling and page faults", r"memset|malloc|free|page|mm_fault|clear_page|alloc|mmap|munmap|brk|lru|memcg|folio|pte|tlb|unmap"),
]


def main():
    totals = {name: 0.0 for name, _ in CATEGORIES}
    other = 0.0
    others = []
    for line in sys.stdin:
        m = re.match(r"\s*([\d.]+)%\s+\[(.)\]\s+(.*)", line)
        if not m:
            continue
        share, symbol = float(m.group(1)), m.group(3).strip()
        for name, pattern in CATEGORIES:
            if re.search(pattern, symbol):
                totals[name] += share
                break
        else:
            other += share
            others.append((share, symbol))
    print("| where | share of samples |")
    print("|---|---:|")
    for name, _ in CATEGORIES:
        print(f"| {name} | {totals[name]:.1f}% |")
    top = ", ".join(s[:40] for _, s in sorted(others, reverse=True)[:3])
    print(f"| other (scheduler, threads; largest: {top}) | {other:.1f}% |")


if __name__ == "__main__":
    main()
