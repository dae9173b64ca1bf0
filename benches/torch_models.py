#!/usr/bin/env python3
"""PyTorch eager equivalents of the CPU presets timed by `benches/benches/model_step.rs`:
forward + backward per example (no optimizer step), float32, all cores, best of 10 timed
iterations after 3 warm-up iterations.

  resnet-mini: ResNet v1.5 bottlenecks, depths (1,1,1,1), widths (8,16,32,64) x4, 3x3 stride-2 stem
               of 16, 28x28x1 inputs, 10 classes, batch 256, batch norm in training mode.
  bert-tiny / bert-mini: post-LN BERT (hidden 128 / 256, 2 / 4 layers, heads 2 / 4, FFN 4x,
               tanh GELU (`_erf`: the exact erf form), dropout 0.1, LayerNorm eps 1e-12), vocabulary 8,192, sequence 128, masked
               LM head (dense + GELU + LayerNorm, tied decoder, bias) at 20 positions, NSP head,
               batch 32.

    pip install torch
    python3 benches/torch_models.py            # every model
    python3 benches/torch_models.py resnet     # only those whose name contains a given word
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Bottleneck(nn.Module):
    def __init__(self, cin, width, stride):
        super().__init__()
        out = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.down = None
        if stride != 1 or cin != out:
            self.down = nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        s = x if self.down is None else self.down(x)
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        return F.relu(self.bn3(self.conv3(y)) + s)


class ResNetMini(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for i, w in enumerate((8, 16, 32, 64)):
            blocks.append(Bottleneck(cin, w, 1 if i == 0 else 2))
            cin = w * 4
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(cin, 10)

    def forward(self, x):
        x = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.fc(x.mean(dim=(2, 3)))


class Bert(nn.Module):
    def __init__(self, hidden, layers, heads, vocab=8192, positions=512, gelu="tanh"):
        super().__init__()
        self.gelu = gelu
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(positions, hidden)
        self.token_type = nn.Embedding(2, hidden)
        self.norm = nn.LayerNorm(hidden, eps=1e-12)
        self.drop = nn.Dropout(0.1)
        layer = nn.TransformerEncoderLayer(hidden, heads, 4 * hidden, 0.1,
                                           activation=lambda x: F.gelu(x, approximate=gelu),
                                           layer_norm_eps=1e-12, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.pooler = nn.Linear(hidden, hidden)
        self.mlm_dense = nn.Linear(hidden, hidden)
        self.mlm_norm = nn.LayerNorm(hidden, eps=1e-12)
        self.mlm_bias = nn.Parameter(torch.zeros(vocab))
        self.nsp = nn.Linear(hidden, 2)

    def loss(self, ids, types, padding, positions, labels, next_sentence):
        b, s = ids.shape
        pos = torch.arange(s).unsqueeze(0).expand(b, s)
        x = self.drop(self.norm(self.word(ids) + self.pos(pos) + self.token_type(types)))
        x = self.encoder(x, src_key_padding_mask=padding)
        pooled = torch.tanh(self.pooler(x[:, 0]))
        picked = x.gather(1, positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
        t = self.mlm_norm(F.gelu(self.mlm_dense(picked), approximate=self.gelu))
        logits = t @ self.word.weight.t() + self.mlm_bias
        mlm = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))
        return mlm + F.cross_entropy(self.nsp(pooled), next_sentence)


def timed(name, batch, step):
    for _ in range(3):
        step()
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - start)
    print(f"{name}: {best * 1e3:.1f} ms per batch of {batch}, {best / batch * 1e6:.0f} us per example")


def main():
    only = sys.argv[1:]
    wanted = lambda name: not only or any(word in name for word in only)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    model = ResNetMini()
    x = torch.randn(256, 1, 28, 28)
    y = torch.arange(256) % 10

    def resnet_step():
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()

    if wanted("resnet_mini_batch256"):
        timed("resnet_mini_batch256", 256, resnet_step)
    for name, hidden, layers, heads, gelu in (
        ("bert_tiny", 128, 2, 2, "tanh"),
        ("bert_tiny_erf", 128, 2, 2, "none"),
        ("bert_mini", 256, 4, 4, "tanh"),
        ("bert_mini_erf", 256, 4, 4, "none"),
    ):
        if not wanted(f"{name}_seq128_batch32"):
            continue
        bert = Bert(hidden, layers, heads, gelu=gelu)
        b, s, p, v = 32, 128, 20, 8192
        ids = (torch.arange(b * s) * 7919 % v).reshape(b, s)
        types = (torch.arange(b * s).reshape(b, s) % s >= s // 2).long()
        padding = torch.zeros(b, s, dtype=torch.bool)
        positions = (1 + torch.arange(b * p) * 5 % (s - 2)).reshape(b, p)
        labels = (torch.arange(b * p) * 31 % v).reshape(b, p)
        nxt = torch.arange(b) % 2

        def bert_step():
            bert.zero_grad(set_to_none=True)
            bert.loss(ids, types, padding, positions, labels, nxt).backward()

        timed(f"{name}_seq128_batch32", b, bert_step)


if __name__ == "__main__":
    main()
