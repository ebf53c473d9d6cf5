#!/usr/bin/python3
"""Trains the default road-scene detector (models/road_detector) on synthetic frames.

A small anchor-free YOLO-style detector for 320x320 letterboxed RGB input:
Conv-BN-SiLU backbone to strides 8/16/32, an FPN neck (nearest Upsample +
Concat), one head per level predicting (box, class) per grid cell, decoded
in the graph into the Ultralytics layout [b, 4 + nc, 2100]: cx, cy, w, h in
input pixels, then sigmoid class scores (car, pedestrian, traffic_sign).

Assignment (documented in models/road_detector/MODEL_CARD.md): each object
goes to one level by its longer side (< 36 px: stride 8, < 84 px: stride 16,
else 32) and there to the cell holding its centre plus the two nearest
neighbouring cells (as YOLOv5), whose centre offsets (-0.5..1.5 cells) reach
the object's centre. Loss: BCE on every cell's class scores (target 1 for
the object's class at its assigned cells, 0 elsewhere) normalised by the
number of positives, plus (1 - GIoU) and an L1 term on the decoded box at
the positives.

  /usr/bin/python3 models/tools/train_road.py --out models/road_detector/1/model.onnx

Fixed seeds and 2 threads: the same command gives the same ONNX file.
Not for driving use: the data are drawings, not camera frames.
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402

TRAIN_SEED = 2000
EVAL_SEED = 525252
SIZE = 320
STRIDES = (8, 16, 32)
LEVEL_LIMITS = (36.0, 84.0)  # longer side (input px) below which an object goes to P3 / P4
WH_GAIN = 4.0  # w = (2 sigmoid(t))^2 * WH_GAIN * stride: 0 .. 16 strides
NC = len(synth.ROAD_LABELS)


class Conv(nn.Module):
    def __init__(self, c1, c2, k=3, s=1, p=None):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2 if p is None else p, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class RoadNet(nn.Module):
    """3x320x320 -> [b, 4 + nc, 2100]. ~0.3 M parameters, ~0.23 GFLOPs."""

    def __init__(self, nc=NC, size=SIZE):
        super().__init__()
        self.nc = nc
        self.stem = Conv(3, 16, 4, 4, 0)                                         # /4
        self.s3 = nn.Sequential(Conv(16, 32, 3, 2), Conv(32, 32))                # /8
        self.s4 = nn.Sequential(Conv(32, 64, 3, 2), Conv(64, 64))                # /16
        self.s5 = nn.Sequential(Conv(64, 96, 3, 2), Conv(96, 96))                # /32
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.n4 = nn.Sequential(Conv(96 + 64, 64, 1), Conv(64, 64))
        self.n3 = nn.Sequential(Conv(64 + 32, 32, 1), Conv(32, 32))
        self.heads = nn.ModuleList(nn.Conv2d(c, 4 + nc, 1) for c in (32, 64, 96))
        # Class-score bias so that training starts from ~1% foreground.
        for h in self.heads:
            h.bias.data[4:] = -4.6
        for i, s in enumerate(STRIDES):
            n = size // s
            gy, gx = torch.meshgrid(torch.arange(n, dtype=torch.float32),
                                    torch.arange(n, dtype=torch.float32), indexing="ij")
            self.register_buffer(f"grid{i}", torch.stack((gx, gy)).unsqueeze(0), persistent=False)

    def raw(self, x):
        """Undecoded head outputs, one [b, 4 + nc, h, w] per level."""
        p3 = self.s3(self.stem(x))
        p4 = self.s4(p3)
        p5 = self.s5(p4)
        n4 = self.n4(torch.cat((self.up(p5), p4), 1))
        n3 = self.n3(torch.cat((self.up(n4), p3), 1))
        return [h(f) for h, f in zip(self.heads, (n3, n4, p5))]

    def decode(self, raws):
        """Per level [b, 4 + nc, h*w] with cx, cy, w, h (input px) and class probabilities."""
        outs = []
        for i, (r, s) in enumerate(zip(raws, STRIDES)):
            t = r.sigmoid()
            xy = (t[:, 0:2] * 2.0 - 0.5 + getattr(self, f"grid{i}")) * s
            wh2 = t[:, 2:4] * 2.0
            wh = wh2 * wh2 * (WH_GAIN * s)
            outs.append(torch.cat((xy, wh, t[:, 4:]), 1).flatten(2))
        return outs

    def forward(self, x):
        return torch.cat(self.decode(self.raw(x)), 2)


# ---------------------------------------------------------------- data
def letterbox(img, size=SIZE, pad=114):
    """Ultralytics LetterBox(auto=False, center=True), bilinear like cv::resize INTER_LINEAR.

    img: HxWx3 uint8. Returns (float tensor 3xSxS in 0..1, scale_x, scale_y, left, top).
    """
    h, w = img.shape[:2]
    r = min(size / h, size / w)
    nw, nh = int(round(w * r)), int(round(h * r))
    dw, dh = (size - nw) / 2, (size - nh) / 2
    top, left = int(round(dh - 0.1)), int(round(dw - 0.1))
    x = torch.from_numpy(img).permute(2, 0, 1).float().unsqueeze(0)
    if (nw, nh) != (w, h):
        x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False)
        x = x.clamp(0, 255).round()  # the server resizes 8-bit images
    out = torch.full((1, 3, size, size), float(pad))
    out[:, :, top:top + nh, left:left + nw] = x
    return out[0] / 255.0, nw / w, nh / h, left, top


def make_batch(seed, count):
    """`count` letterboxed frames (float 0..1) and their boxes in input pixels."""
    rng = np.random.default_rng(seed)
    xs, targets = [], []
    for _ in range(count):
        img, objects = synth.render_road(rng)
        x, sx, sy, left, top = letterbox(img)
        xs.append(x)
        targets.append([(c, (b[0] * sx + left, b[1] * sy + top, b[2] * sx + left,
                             b[3] * sy + top)) for c, b in objects])
    return torch.stack(xs), targets


def make_pool(seed, count):
    """The training set: uint8 [count, 3, S, S] and per-frame targets, built in chunks."""
    images = torch.empty(count, 3, SIZE, SIZE, dtype=torch.uint8)
    targets = []
    for start in range(0, count, 64):
        x, t = make_batch(seed * 1000 + start, min(64, count - start))
        images[start:start + len(t)] = (x * 255).round().to(torch.uint8)
        targets.extend(t)
    return images, targets


def flip_targets(objects):
    return [(c, (SIZE - x2, y1, SIZE - x1, y2)) for c, (x1, y1, x2, y2) in objects]


def assign(targets, batch):
    """Per level: (mask [b,h,w] bool, cls [b,h,w] long, boxes [b,4,h,w] cx,cy,w,h)."""
    out = []
    for s in STRIDES:
        n = SIZE // s
        out.append((torch.zeros(batch, n, n, dtype=torch.bool), torch.zeros(batch, n, n,
                                                                            dtype=torch.long),
                    torch.zeros(batch, 4, n, n)))
    for bi, objects in enumerate(targets):
        # Larger objects last, so they win a shared cell.
        for c, (x1, y1, x2, y2) in sorted(objects, key=lambda o: (o[1][2] - o[1][0]) *
                                          (o[1][3] - o[1][1])):
            side = max(x2 - x1, y2 - y1)
            level = 0 if side < LEVEL_LIMITS[0] else 1 if side < LEVEL_LIMITS[1] else 2
            s, (mask, cls, boxes) = STRIDES[level], out[level]
            n = SIZE // s
            cx, cy = (x1 + x2) / 2 / s, (y1 + y2) / 2 / s
            gx, gy = min(int(cx), n - 1), min(int(cy), n - 1)
            nx = gx - 1 if cx - gx < 0.5 else gx + 1
            ny = gy - 1 if cy - gy < 0.5 else gy + 1
            for ix, iy in ((gx, gy), (nx, gy), (gx, ny)):
                if 0 <= ix < n and 0 <= iy < n:
                    mask[bi, iy, ix] = True
                    cls[bi, iy, ix] = c
                    boxes[bi, :, iy, ix] = torch.tensor(
                        [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    return out


def giou(a, b):
    """a, b: [n, 4] cx, cy, w, h -> [n] generalised IoU."""
    ax1, ay1, ax2, ay2 = a[:, 0] - a[:, 2] / 2, a[:, 1] - a[:, 3] / 2, a[:, 0] + a[:, 2] / 2, \
        a[:, 1] + a[:, 3] / 2
    bx1, by1, bx2, by2 = b[:, 0] - b[:, 2] / 2, b[:, 1] - b[:, 3] / 2, b[:, 0] + b[:, 2] / 2, \
        b[:, 1] + b[:, 3] / 2
    iw = (torch.min(ax2, bx2) - torch.max(ax1, bx1)).clamp(min=0)
    ih = (torch.min(ay2, by2) - torch.max(ay1, by1)).clamp(min=0)
    inter = iw * ih
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter + 1e-9
    cw = torch.max(ax2, bx2) - torch.min(ax1, bx1)
    ch = torch.max(ay2, by2) - torch.min(ay1, by1)
    hull = cw * ch + 1e-9
    iou = inter / union
    return iou - (hull - union) / hull


def loss_fn(model, x, targets):
    raws = model.raw(x)
    decoded = model.decode(raws)
    assigned = assign(targets, x.shape[0])
    npos = max(1, sum(int(m.sum()) for m, _, _ in assigned))
    cls_loss, box_loss = 0.0, 0.0
    for r, d, (mask, cls, boxes), s in zip(raws, decoded, assigned, STRIDES):
        logits = r[:, 4:]  # [b, nc, h, w]
        target = torch.zeros_like(logits)
        target.permute(0, 2, 3, 1)[mask] = F.one_hot(cls[mask], NC).float()
        cls_loss = cls_loss + F.binary_cross_entropy_with_logits(logits, target, reduction="sum")
        if mask.any():
            b, _, h, w = r.shape
            pred = d[:, :4].view(b, 4, h, w).permute(0, 2, 3, 1)[mask]  # [n, 4]
            gt = boxes.permute(0, 2, 3, 1)[mask]
            box_loss = box_loss + (1 - giou(pred, gt)).sum()
            box_loss = box_loss + 0.5 * ((pred[:, :2] - gt[:, :2]).abs().sum(1) / s +
                                         (torch.log(pred[:, 2:] + 1e-6) -
                                          torch.log(gt[:, 2:])).abs().sum(1)).sum()
    return (cls_loss + 5.0 * box_loss) / npos


# ---------------------------------------------------------------- evaluation
def nms(boxes, scores, iou_threshold):
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        rest = order[1:]
        ix = np.clip(np.minimum(boxes[i, 2], boxes[rest, 2]) - np.maximum(boxes[i, 0],
                                                                          boxes[rest, 0]), 0, None)
        iy = np.clip(np.minimum(boxes[i, 3], boxes[rest, 3]) - np.maximum(boxes[i, 1],
                                                                          boxes[rest, 1]), 0, None)
        inter = ix * iy
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(boxes[i]) + area(boxes[rest]) - inter + 1e-9)
        order = rest[iou <= iou_threshold]
    return keep


def detect(output, score_threshold, iou_threshold):
    """One item [4 + nc, N] -> [(class, score, (x1, y1, x2, y2)) in input px]."""
    scores = output[4:].max(0)
    classes = output[4:].argmax(0)
    keep = scores > score_threshold
    cx, cy, w, h = output[:4, keep]
    boxes = np.stack((cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), 1)
    scores, classes = scores[keep], classes[keep]
    result = []
    for c in range(NC):
        idx = np.nonzero(classes == c)[0]
        for k in nms(boxes[idx], scores[idx], iou_threshold):
            result.append((c, float(scores[idx[k]]), boxes[idx[k]]))
    return result


def box_iou(a, b):
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def evaluate(model, seed, count, score_threshold=0.4, iou_threshold=0.45):
    """Recall and precision at IoU >= 0.5 with the right class (greedy matching by score)."""
    tp = n_gt = n_det = 0
    for start in range(0, count, 16):
        x, targets = make_batch(seed * 1000 + start, min(16, count - start))
        with torch.no_grad():
            out = model(x).numpy()
        for item, gt in zip(out, targets):
            dets = sorted(detect(item, score_threshold, iou_threshold), key=lambda d: -d[1])
            used = [False] * len(gt)
            for c, _, box in dets:
                best, best_iou = -1, 0.5
                for j, (gc, gbox) in enumerate(gt):
                    if not used[j] and gc == c and box_iou(box, gbox) >= best_iou:
                        best, best_iou = j, box_iou(box, gbox)
                if best >= 0:
                    used[best] = True
                    tp += 1
            n_gt += len(gt)
            n_det += len(dets)
    return tp / max(n_gt, 1), tp / max(n_det, 1), n_gt


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--frames", type=int, default=800, help="training frames (rendered once)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--eval-count", type=int, default=200)
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    start, cpu0 = time.time(), time.process_time()
    pool, pool_targets = make_pool(TRAIN_SEED, a.frames)
    print(f"rendered {a.frames} training frames ({time.time() - start:.0f} s)", file=sys.stderr)
    model = RoadNet()
    steps_per_epoch = a.frames // a.batch
    a.steps = steps_per_epoch * a.epochs
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=a.steps,
                                                pct_start=0.1)
    gen = torch.Generator().manual_seed(a.seed)
    model.train()
    for step in range(a.steps):
        if step % steps_per_epoch == 0:
            order = torch.randperm(a.frames, generator=gen)
            flips = torch.rand(a.frames, generator=gen) < 0.5
        idx = order[(step % steps_per_epoch) * a.batch:(step % steps_per_epoch + 1) * a.batch]
        x = pool[idx].float() / 255.0
        targets = []
        for k, i in enumerate(idx.tolist()):
            if flips[i]:
                x[k] = x[k].flip(2)
                targets.append(flip_targets(pool_targets[i]))
            else:
                targets.append(pool_targets[i])
        loss = loss_fn(model, x, targets)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == a.steps - 1:
            print(f"step {step:4d} loss {loss.item():.4f} ({time.time() - start:.0f} s)",
                  file=sys.stderr, flush=True)
    wall, cpu = time.time() - start, time.process_time() - cpu0
    model.eval()
    recall, precision, n_gt = evaluate(model, EVAL_SEED, a.eval_count)
    print(f"training: {a.frames} frames, {a.epochs} epochs, {a.steps} steps x {a.batch} frames, {wall:.0f} s wall, {cpu:.0f} s CPU "
          f"({a.threads} threads)")
    print(f"held-out (seed {EVAL_SEED}, {a.eval_count} frames, {n_gt} objects), IoU >= 0.5 and "
          f"right class, score > 0.4: recall {recall:.4f} precision {precision:.4f}")

    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    torch.onnx.export(model, torch.zeros(1, 3, SIZE, SIZE), a.out, opset_version=17,
                      input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
                      do_constant_folding=True)
    print(f"wrote {a.out} ({os.path.getsize(a.out)} bytes)")


if __name__ == "__main__":
    main()
