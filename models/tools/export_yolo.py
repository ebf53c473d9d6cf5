#!/usr/bin/python3
"""Exports a YOLOv8n-sized detector of our own (fixed-seed random weights) to ONNX.

The architecture follows Ultralytics' yolov8.yaml at scale n (depth 0.33,
width 0.25): Conv-BN-SiLU blocks, C2f, SPPF, a PAN neck (nearest Upsample ->
Resize, Concat), and the decoupled Detect head with DFL (reg_max 16: softmax
over 16 bins, expectation by a 1x1 conv with fixed weights 0..15). The graph
ends like an Ultralytics export: `output0` is [b, 4 + nc, N] with cx, cy, w, h
in input pixels and sigmoid class scores; N = 8400 at 640. ~3.16 M parameters
and ~8.7 GFLOPs at 640 with nc = 80. Batch is dynamic, opset 17.

With --dynamic, height and width are dynamic too (Ultralytics' `dynamic=True`):
the anchor grid is computed in the graph from the feature maps' shapes
(Shape -> Range -> meshgrid -> Expand/ConstantOfShape), so one file serves any
input whose sides are multiples of 32, and N follows the input.

  /usr/bin/python3 models/tools/export_yolo.py                      # -> models/.cache/yolov8n.onnx
  /usr/bin/python3 models/tools/export_yolo.py --act relu --size 320 --out /tmp/y.onnx
  /usr/bin/python3 models/tools/export_yolo.py --dynamic --size 320 --out /tmp/y_dyn.onnx

Same arguments give byte-identical files.
"""
import argparse
import math
import os
import sys

import torch
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_zoo  # noqa: E402  (ACTIVATIONS, randomize_bn_stats, export)


class Conv(nn.Module):
    """Conv2d (no bias) + BatchNorm + activation, 'same' padding."""

    def __init__(self, c1, c2, k=1, s=1, act="silu"):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = export_zoo.ACTIVATIONS[act]()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut, act):
        super().__init__()
        self.cv1, self.cv2 = Conv(c, c, 3, act=act), Conv(c, c, 3, act=act)
        self.add = shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    """CSP bottleneck with 2 convolutions: split, n bottlenecks, concat all."""

    def __init__(self, c1, c2, n, shortcut, act):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c, 1, act=act)
        self.cv2 = Conv((2 + n) * self.c, c2, 1, act=act)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut, act) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, act, k=5):
        super().__init__()
        c = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c, 1, act=act), Conv(c * 4, c2, 1, act=act)
        self.m = nn.MaxPool2d(k, 1, k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class YoloV8(nn.Module):
    STRIDES = (8, 16, 32)

    def __init__(self, nc=80, size=640, width=0.25, depth=0.33, reg_max=16, act="silu",
                 dynamic=False):
        super().__init__()
        ch = [min(c, 1024) for c in (64, 128, 256, 512, 1024)]
        c = [max(8, int(math.ceil(x * width / 8) * 8)) for x in ch]  # 16 32 64 128 256
        d = [max(round(n * depth), 1) for n in (3, 6, 6, 3)]      # 1 2 2 1
        self.b0, self.b1 = Conv(3, c[0], 3, 2, act), Conv(c[0], c[1], 3, 2, act)
        self.b2 = C2f(c[1], c[1], d[0], True, act)
        self.b3, self.b4 = Conv(c[1], c[2], 3, 2, act), C2f(c[2], c[2], d[1], True, act)
        self.b5, self.b6 = Conv(c[2], c[3], 3, 2, act), C2f(c[3], c[3], d[2], True, act)
        self.b7, self.b8 = Conv(c[3], c[4], 3, 2, act), C2f(c[4], c[4], d[3], True, act)
        self.b9 = SPPF(c[4], c[4], act)
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h12 = C2f(c[4] + c[3], c[3], d[3], False, act)
        self.h15 = C2f(c[3] + c[2], c[2], d[3], False, act)
        self.h16, self.h18 = Conv(c[2], c[2], 3, 2, act), C2f(c[2] + c[3], c[3], d[3], False, act)
        self.h19, self.h21 = Conv(c[3], c[3], 3, 2, act), C2f(c[3] + c[4], c[4], d[3], False, act)
        # Detect head (Ultralytics Detect): box branch cv2, class branch cv3, DFL.
        self.nc, self.reg_max = nc, reg_max
        feats = (c[2], c[3], c[4])
        c2, c3 = max(16, feats[0] // 4, reg_max * 4), max(feats[0], min(nc, 100))
        self.cv2 = nn.ModuleList(
            nn.Sequential(Conv(x, c2, 3, act=act), Conv(c2, c2, 3, act=act),
                          nn.Conv2d(c2, 4 * reg_max, 1)) for x in feats)
        self.cv3 = nn.ModuleList(
            nn.Sequential(Conv(x, c3, 3, act=act), Conv(c3, c3, 3, act=act),
                          nn.Conv2d(c3, nc, 1)) for x in feats)
        self.dfl = nn.Conv2d(reg_max, 1, 1, bias=False).requires_grad_(False)
        self.dfl.weight.data[:] = torch.arange(reg_max, dtype=torch.float32).view(
            1, reg_max, 1, 1)
        # Anchor points (cell centres, in grid units) and strides, fixed for `size`.
        anchors, strides = [], []
        for s in self.STRIDES:
            n = size // s
            sy, sx = torch.meshgrid(torch.arange(n, dtype=torch.float32) + 0.5,
                                    torch.arange(n, dtype=torch.float32) + 0.5, indexing="ij")
            anchors.append(torch.stack((sx, sy), 0).view(2, -1))
            strides.append(torch.full((1, n * n), float(s)))
        self.register_buffer("anchors", torch.cat(anchors, 1).unsqueeze(0), persistent=False)
        self.register_buffer("strides", torch.cat(strides, 1).unsqueeze(0), persistent=False)
        self.num_anchors = self.anchors.shape[2]
        self.dynamic = dynamic

    def grid(self, feats):
        """Anchor points and strides for the feature maps' own sizes, traced from their
        shapes (what an Ultralytics export with dynamic=True computes in the graph)."""
        anchors, strides = [], []
        for f, s in zip(feats, self.STRIDES):
            h, w = f.shape[2], f.shape[3]
            sy, sx = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5,
                                    torch.arange(w, dtype=torch.float32) + 0.5, indexing="ij")
            anchors.append(torch.stack((sx, sy), 0).view(2, -1))
            strides.append(torch.full((1, h * w), float(s)))
        return torch.cat(anchors, 1).unsqueeze(0), torch.cat(strides, 1).unsqueeze(0)

    def forward(self, x):
        x = self.b2(self.b1(self.b0(x)))
        p3 = self.b4(self.b3(x))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h12 = self.h12(torch.cat((self.up(p5), p4), 1))
        h15 = self.h15(torch.cat((self.up(h12), p3), 1))
        h18 = self.h18(torch.cat((self.h16(h15), h12), 1))
        h21 = self.h21(torch.cat((self.h19(h18), p5), 1))
        no = 4 * self.reg_max + self.nc
        y = torch.cat([torch.cat((self.cv2[i](f), self.cv3[i](f)), 1).flatten(2)
                       for i, f in enumerate((h15, h18, h21))], 2)  # [b, no, N]
        box, cls = y.split((4 * self.reg_max, self.nc), 1)
        if self.dynamic:
            anchors, strides = self.grid((h15, h18, h21))
            a = y.shape[2]
        else:
            anchors, strides, a = self.anchors, self.strides, self.num_anchors
            assert y.shape[1] == no and y.shape[2] == a, "input size differs from the export size"
        # DFL: softmax over the 16 bins of each side, expectation via the arange conv.
        dist = self.dfl(box.reshape(-1, 4, self.reg_max, a).transpose(2, 1).softmax(1))
        lt, rb = dist.reshape(-1, 4, a).chunk(2, 1)
        x1y1, x2y2 = anchors - lt, anchors + rb
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * strides
        return torch.cat((xywh, cls.sigmoid()), 1)


def build(act="silu", seed=0, nc=80, size=640, dynamic=False):
    """The eval-mode torch model export writes (also used by verify_export.py)."""
    torch.manual_seed(seed)
    model = YoloV8(nc=nc, size=size, act=act or "silu", dynamic=dynamic).eval()
    export_zoo.randomize_bn_stats(model, seed)
    return model


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", help="default: models/.cache/yolov8n[_<act>][_<size>].onnx")
    p.add_argument("--act", choices=sorted(export_zoo.ACTIVATIONS),
                   help="activation of every Conv block (default silu, as YOLOv8)")
    p.add_argument("--size", type=int, default=640, help="input side, a multiple of 32")
    p.add_argument("--nc", type=int, default=80, help="number of classes")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dynamic", action="store_true",
                   help="dynamic height and width (anchors computed in the graph)")
    a = p.parse_args()
    if a.size % 32:
        p.error("--size must be a multiple of 32")
    out = a.out
    if not out:
        name = "yolov8n" + (f"_{a.act}" if a.act else "") + (f"_{a.size}" if a.size != 640 else "")
        name += "_dynamic" if a.dynamic else ""
        out = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                            ".cache", name + ".onnx"))
    model = build(a.act, a.seed, a.nc, a.size, a.dynamic)
    export_zoo.export(model, out, a.size, a.opset, input_name="images", output_name="output0",
                      dynamic_hw=a.dynamic,
                      output_dynamic={0: "batch", 2: "anchors"} if a.dynamic else None)
    params = sum(t.numel() for t in model.parameters())
    print(f"yolov8n{' --act ' + a.act if a.act else ''} at {a.size}: {params} parameters, "
          f"output [b, {4 + a.nc}, {model.num_anchors}]; wrote {out} "
          f"({os.path.getsize(out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
