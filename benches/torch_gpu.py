#!/usr/bin/env python3
"""PyTorch eager twin of device-check's ResNet-50 measurement: ResNet-50 v1.5 forward + backward +
an MLPerf-style LARS step (trust coefficient 0.001, momentum 0.929, L2 1e-4 on weights; heavy-ball
momentum without decay or trust ratio on biases and batch norm) at batch 256 on random
224x224x3 images, in images/s. Plain torch (no torchvision), so one wheel is all it needs.

    python3 benches/torch_gpu.py [--batch 256] [--steps 10] [--device cuda] [--tiny]

--tiny: batch 8 at 32x32, 2 steps (a dry run on the CPU). Prints one markdown table row; exits 0
with a note when torch is not installed, so that the device check still completes.
"""
import argparse
import sys
import time


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--device", default="cuda")
    p.add_argument("--tiny", action="store_true")
    a = p.parse_args()
    try:
        import torch
        import torch.nn as nn
        import torch.nn.functional as F
    except ImportError:
        print("| PyTorch eager ResNet-50 | - | torch is not installed here (pip install torch) |")
        return 0
    if a.device == "cuda" and not torch.cuda.is_available():
        print(f"| PyTorch eager ResNet-50 | - | torch {torch.__version__} sees no CUDA device |")
        return 0
    batch, size, steps = (8, 32, 2) if a.tiny else (a.batch, 224, a.steps)
    dev = torch.device(a.device)

    class Bottleneck(nn.Module):
        # ResNet v1.5: the stride sits on the 3x3 convolution.
        def __init__(self, cin, width, stride):
            super().__init__()
            cout = 4 * width
            self.c1, self.b1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
            self.c2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
            self.b2 = nn.BatchNorm2d(width)
            self.c3, self.b3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
            self.down = None
            if stride != 1 or cin != cout:
                self.down = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            y = F.relu(self.b1(self.c1(x)))
            y = F.relu(self.b2(self.c2(y)))
            y = self.b3(self.c3(y))
            return F.relu(y + (x if self.down is None else self.down(x)))

    class ResNet50(nn.Module):
        def __init__(self, classes=1000):
            super().__init__()
            self.stem = nn.Sequential(
                nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                nn.MaxPool2d(3, 2, 1),
            )
            layers, cin = [], 64
            for width, blocks, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
                for i in range(blocks):
                    layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
                    cin = 4 * width
            self.layers = nn.Sequential(*layers)
            self.fc = nn.Linear(cin, classes)

        def forward(self, x):
            return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.layers(self.stem(x)), 1), 1))

    model = ResNet50().to(dev)
    params = [p for p in model.parameters()]
    is_weight = [p.dim() > 1 for p in params]
    moms = [torch.zeros_like(p) for p in params]
    x = torch.randn(batch, 3, size, size, device=dev)
    y = torch.arange(batch, device=dev) % 1000

    def lars_step(lr=1.0, mu=0.929, wd=1e-4, eta=0.001):
        # TensorFlow's LARSOptimizer as in the MLPerf reference: v <- mu v + lr * trust * (g + wd w)
        # on weights, v <- mu v + lr g on the rest; w <- w - v.
        with torch.no_grad():
            for p, m, w in zip(params, moms, is_weight):
                g = p.grad
                if w:
                    wn, gn = torch.linalg.vector_norm(p), torch.linalg.vector_norm(g)
                    trust = torch.where((wn > 0) & (gn > 0), eta * wn / (gn + wd * wn), 1.0)
                    m.mul_(mu).add_((g + wd * p) * (lr * trust))
                else:
                    m.mul_(mu).add_(g, alpha=lr)
                p.sub_(m)

    def train_step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        lars_step()

    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    for _ in range(1 if a.tiny else 3):
        train_step()
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        train_step()
    sync()
    secs = (time.perf_counter() - start) / steps
    label = f"PyTorch {torch.__version__} eager ResNet-50 v1.5, batch {batch}, {size}x{size}x3"
    print(f"| {label}: forward + backward + LARS step | {1e3 * secs:.1f} ms | {batch / secs:.0f} images/s |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
