#!/usr/bin/env python3
"""The ImageNet training preprocessing with PIL + numpy, one process (one core), on the JPEGs the
Rust bench writes (target/bench-jpegs): decode, MLPerf-style distorted bounding box (area
[0.05, 1], aspect [0.75, 1.33], 100 attempts, whole image as fallback), crop, bilinear resize to
224x224, random horizontal flip, float32 and mean/std normalisation. Prints images/s.

    pip install pillow numpy
    python3 benches/pil_pipeline.py target/bench-jpegs
"""
import glob
import io
import math
import random
import sys
import time

import numpy as np
from PIL import Image

MEAN = np.array([0.485 * 255, 0.456 * 255, 0.406 * 255], dtype=np.float32)
STD = np.array([0.229 * 255, 0.224 * 255, 0.225 * 255], dtype=np.float32)


def crop_box(w, h, rng):
    for _ in range(100):
        area = rng.uniform(0.05, 1.0) * w * h
        aspect = rng.uniform(0.75, 1.33)
        cw = int(round(math.sqrt(area * aspect)))
        ch = int(round(math.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h and cw * ch >= 0.1 * w * h:
            x = rng.randint(0, w - cw)
            y = rng.randint(0, h - ch)
            return (x, y, x + cw, y + ch)
    return (0, 0, w, h)


def transform(data, rng):
    img = Image.open(io.BytesIO(data)).convert("RGB")
    box = crop_box(img.width, img.height, rng)
    img = img.crop(box).resize((224, 224), Image.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    a = np.asarray(img, dtype=np.float32)
    return ((a - MEAN) / STD).transpose(2, 0, 1).copy()


def main(folder):
    files = [open(p, "rb").read() for p in sorted(glob.glob(f"{folder}/*.jpg"))]
    if not files:
        sys.exit(f"no .jpg files in {folder}: run the Rust bench first")
    rng = random.Random(1)
    for data in files[:20]:
        transform(data, rng)
    best = 0.0
    for _ in range(5):
        start = time.perf_counter()
        for data in files:
            transform(data, rng)
        best = max(best, len(files) / (time.perf_counter() - start))
    print(f"PIL {Image.__version__ if hasattr(Image, '__version__') else ''} numpy {np.__version__}: "
          f"{best:.1f} images/s on one core (best of 5 passes over {len(files)} JPEGs)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-jpegs")
