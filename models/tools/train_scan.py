#!/usr/bin/python3
"""Trains the default scan classifier (models/scan_classifier) on synthetic scans.

Small CNN (4 Conv-BN-ReLU stages, global average + max pooling, one linear
layer) on 128x128 grayscale synthetic chest-like slices from synth.py
(normal / nodule / effusion). Fixed seeds and 2 threads: the same command
gives the same weights and a byte-identical ONNX file.

  /usr/bin/python3 models/tools/train_scan.py --out models/scan_classifier/1/model.onnx

Not for clinical use: the data are drawings, not scans.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402

TRAIN_SEED = 1000  # synthetic training data; held-out sets use other seeds
EVAL_SEED = 424242


def conv_bn_relu(c1, c2, stride):
    return nn.Sequential(nn.Conv2d(c1, c2, 3, stride, 1, bias=False), nn.BatchNorm2d(c2),
                         nn.ReLU(inplace=True))


class ScanNet(nn.Module):
    """1x128x128 -> logits[3]. ~52 k parameters, ~20 MFLOPs."""

    def __init__(self, classes=len(synth.SCAN_LABELS)):
        super().__init__()
        self.features = nn.Sequential(
            conv_bn_relu(1, 12, 2),   # 64
            conv_bn_relu(12, 24, 2),  # 32
            conv_bn_relu(24, 32, 2),  # 16
            conv_bn_relu(32, 48, 1),
            conv_bn_relu(48, 64, 2),  # 8
        )
        self.fc = nn.Linear(2 * 64, classes)

    def forward(self, x):
        f = self.features(x)
        pooled = torch.cat((f.mean((2, 3)), f.amax((2, 3))), 1)
        return self.fc(pooled)


def batch_of(seed, count):
    images, labels = [], []
    for img, label in synth.scan_samples(seed, count):
        images.append(img)
        labels.append(label)
    x = torch.from_numpy(np.stack(images)).float().unsqueeze(1) / 255.0
    return x, torch.tensor(labels)


def evaluate(model, seed, count):
    x, y = batch_of(seed, count)
    with torch.no_grad():
        pred = model(x).argmax(1)
    per_class = {synth.SCAN_LABELS[c]: float((pred[y == c] == c).float().mean())
                 for c in range(len(synth.SCAN_LABELS))}
    return float((pred == y).float().mean()), per_class


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch", type=int, default=48)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-count", type=int, default=600)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = ScanNet()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps,
                                                pct_start=0.15)
    loss_fn = nn.CrossEntropyLoss()
    start = time.time()
    cpu0 = time.process_time()
    model.train()
    for step in range(a.steps):
        x, y = batch_of(TRAIN_SEED * 100003 + step, a.batch)
        # Mirror half the batch (the generator's anatomy is near-symmetric).
        flip = torch.arange(a.batch) % 2 == 1
        x[flip] = x[flip].flip(3)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} ({time.time() - start:.0f} s)",
                  file=sys.stderr)
    wall, cpu = time.time() - start, time.process_time() - cpu0
    model.eval()
    acc, per_class = evaluate(model, EVAL_SEED, a.eval_count)
    print(f"training: {a.steps} steps x {a.batch} images, {wall:.0f} s wall, {cpu:.0f} s CPU "
          f"({a.threads} threads)")
    print(f"held-out accuracy (seed {EVAL_SEED}, {a.eval_count} scans): {acc:.4f} "
          + " ".join(f"{k}={v:.3f}" for k, v in per_class.items()))

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 1, synth.SCAN_SIZE, synth.SCAN_SIZE), a.out,
                      opset_version=17, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True)
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
