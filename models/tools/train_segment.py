#!/usr/bin/python3
"""Trains the default scan segmenter (models/scan_segmenter) on synthetic scans.

Small U-Net (4 levels: 3 x 2x2 max-pool down, a bottleneck at 1/16, 4 x
2x2 transposed-conv up with skip concatenation; every block two Conv 3x3 -
BatchNorm - ReLU) on grayscale synthetic chest-like slices from synth.py,
with the generator's own masks: 0 background, 1 nodule, 2 effusion. Any
input size that is a multiple of 16; output logits at the input resolution.
Trained on 96..192-pixel scans. Fixed seeds and 2 threads: the same command
gives the same weights and a byte-identical ONNX file.

  /usr/bin/python3 models/tools/train_segment.py --out models/scan_segmenter/1/model.onnx

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

TRAIN_SEED = 1000  # synthetic training data (the scan family); held-out sets use other seeds
EVAL_SEED = 424242
TRAIN_SIZES = (96, 128, 160, 192)
EVAL_SIZES = (128, 192)
CLASSES = len(synth.SEGMENT_LABELS)


def conv_bn_relu(c1, c2):
    return nn.Sequential(nn.Conv2d(c1, c2, 3, 1, 1, bias=False), nn.BatchNorm2d(c2),
                         nn.ReLU(inplace=True))


def block(c1, c2):
    return nn.Sequential(conv_bn_relu(c1, c2), conv_bn_relu(c2, c2))


class UNet(nn.Module):
    """[N, 1, H, W] gray 0..1 -> logits [N, 3, H, W]; H, W multiples of 16.

    Exports to Conv, Relu, MaxPool, ConvTranspose and Concat only (BatchNorm
    folds into the convolutions in eval mode).
    """

    def __init__(self, widths=(12, 16, 24, 32, 48), classes=CLASSES):
        super().__init__()
        self.down = nn.ModuleList()
        c = 1
        for w in widths:
            self.down.append(block(c, w))
            c = w
        self.pool = nn.MaxPool2d(2)
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(nn.ConvTranspose2d(c, w, 2, 2))
            self.dec.append(block(2 * w, w))
            c = w
        self.head = nn.Conv2d(c, classes, 1)

    def forward(self, x):
        skips = []
        for i, down in enumerate(self.down):
            if i:
                x = self.pool(x)
            x = down(x)
            skips.append(x)
        skips.pop()
        for up, dec in zip(self.up, self.dec):
            x = dec(torch.cat((up(x), skips.pop()), 1))
        return self.head(x)


def batch_of(seed, count, size):
    images, masks = [], []
    for img, mask, _ in synth.segment_samples(seed, count, size):
        images.append(img)
        masks.append(mask)
    x = torch.from_numpy(np.stack(images)).float().unsqueeze(1) / 255.0
    return x, torch.from_numpy(np.stack(masks)).long()


def soft_dice_loss(logits, y):
    """1 - soft Dice of the nodule and effusion channels, over the whole batch."""
    p = logits.softmax(1)[:, 1:]
    t = nn.functional.one_hot(y, CLASSES).permute(0, 3, 1, 2)[:, 1:].float()
    inter = (p * t).sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (p.sum((0, 2, 3)) + t.sum((0, 2, 3)) + 1)).mean()


def evaluate(model, seed, count, size, chunk=25):
    """Per-class IoU, intersection and union summed over all pixels of the set."""
    inter = np.zeros(CLASSES)
    union = np.zeros(CLASSES)
    x, y = batch_of(seed, count, size)
    with torch.no_grad():
        for i in range(0, count, chunk):
            pred = model(x[i:i + chunk]).argmax(1)
            t = y[i:i + chunk]
            for c in range(CLASSES):
                inter[c] += int(((pred == c) & (t == c)).sum())
                union[c] += int(((pred == c) | (t == c)).sum())
    return inter / np.maximum(union, 1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--steps", type=int, default=700)
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--lr", type=float, default=4e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-count", type=int, default=150,
                   help="held-out scans per evaluation size (balanced classes)")
    return p.parse_args(argv)


def train(a):
    """The trained model, in eval mode."""
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = UNet()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps,
                                                pct_start=0.15)
    # Nodules are ~0.1 % and effusions ~0.6 % of the pixels: weight them up,
    # and add a Dice term so the small regions count by overlap, not area.
    ce = nn.CrossEntropyLoss(weight=torch.tensor([1.0, 4.0, 2.0]))
    sizes = np.random.default_rng(TRAIN_SEED + a.seed).choice(TRAIN_SIZES, a.steps)
    start = time.time()
    cpu0 = time.process_time()
    model.train()
    for step in range(a.steps):
        x, y = batch_of(TRAIN_SEED * 100003 + step, a.batch, int(sizes[step]))
        # Mirror half the batch (the generator's anatomy is near-symmetric).
        flip = torch.arange(a.batch) % 2 == 1
        x[flip] = x[flip].flip(3)
        y[flip] = y[flip].flip(2)
        logits = model(x)
        loss = ce(logits, y) + soft_dice_loss(logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step:4d} size {sizes[step]:3d} loss {loss.item():.4f} "
                  f"({time.time() - start:.0f} s)", file=sys.stderr)
    wall, cpu = time.time() - start, time.process_time() - cpu0
    model.eval()
    params = sum(t.numel() for t in model.parameters())
    print(f"training: {a.steps} steps x {a.batch} images ({'/'.join(map(str, TRAIN_SIZES))} px), "
          f"{wall:.0f} s wall, {cpu:.0f} s CPU ({a.threads} threads); {params} parameters")
    return model


def export(model, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 1, synth.SCAN_SIZE, synth.SCAN_SIZE), path,
                      opset_version=17, input_names=["image"], output_names=["logits"],
                      dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                    "logits": {0: "batch", 2: "height", 3: "width"}},
                      do_constant_folding=True)


def main():
    a = parse_args()
    model = train(a)
    print(f"held-out IoU (seed {EVAL_SEED}, {a.eval_count} scans per size; intersection and "
          f"union summed over all pixels):")
    print("size  " + " ".join(f"{n:>10}" for n in synth.SEGMENT_LABELS) + "  mean(nodule,effusion)")
    for size in EVAL_SIZES:
        iou = evaluate(model, EVAL_SEED, a.eval_count, size)
        print(f"{size:4d}  " + " ".join(f"{v:10.3f}" for v in iou) + f"  {iou[1:].mean():10.3f}")

    export(model, a.out)
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
