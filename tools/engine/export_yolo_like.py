#!/usr/bin/python3
"""Exports a small YOLOv8-style detector (Conv-BN-SiLU, C2f, SPPF, PAN, DFL head)
with fixed-seed random weights, to exercise the engine's detector path.

  /usr/bin/python3 tools/engine/export_yolo_like.py --out models/.cache/yolo_like.onnx [--width 0.25]
"""
import argparse

import torch
from torch import nn


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, k // 2, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Bottleneck(nn.Module):
    def __init__(self, c, shortcut=True):
        super().__init__()
        self.cv1, self.cv2, self.add = Conv(c, c, 3), Conv(c, c, 3), shortcut

    def forward(self, x):
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C2f(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=False):
        super().__init__()
        self.c = c2 // 2
        self.cv1 = Conv(c1, 2 * self.c)
        self.cv2 = Conv((2 + n) * self.c, c2)
        self.m = nn.ModuleList(Bottleneck(self.c, shortcut) for _ in range(n))

    def forward(self, x):
        y = list(self.cv1(x).chunk(2, 1))
        y.extend(m(y[-1]) for m in self.m)
        return self.cv2(torch.cat(y, 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2):
        super().__init__()
        c = c1 // 2
        self.cv1, self.cv2 = Conv(c1, c), Conv(c * 4, c2)
        self.m = nn.MaxPool2d(5, 1, 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class YoloLike(nn.Module):
    def __init__(self, w=0.25, nc=80, reg=16):
        super().__init__()
        c = [int(x * w) for x in (64, 128, 256, 512, 1024)]
        self.b0, self.b1 = Conv(3, c[0], 3, 2), Conv(c[0], c[1], 3, 2)
        self.b2, self.b3 = C2f(c[1], c[1], 1, True), Conv(c[1], c[2], 3, 2)
        self.b4, self.b5 = C2f(c[2], c[2], 2, True), Conv(c[2], c[3], 3, 2)
        self.b6, self.b7 = C2f(c[3], c[3], 2, True), Conv(c[3], c[4], 3, 2)
        self.b8, self.b9 = C2f(c[4], c[4], 1, True), SPPF(c[4], c[4])
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.h12, self.h15 = C2f(c[4] + c[3], c[3]), C2f(c[3] + c[2], c[2])
        self.d16, self.h18 = Conv(c[2], c[2], 3, 2), C2f(c[2] + c[3], c[3])
        self.d19, self.h21 = Conv(c[3], c[3], 3, 2), C2f(c[3] + c[4], c[4])
        self.nc, self.reg, self.strides = nc, reg, (8, 16, 32)
        c2, c3 = max(16, c[2] // 4, reg * 4), max(c[2], min(nc, 100))
        self.box = nn.ModuleList(nn.Sequential(Conv(x, c2, 3), Conv(c2, c2, 3), nn.Conv2d(c2, 4 * reg, 1))
                                 for x in (c[2], c[3], c[4]))
        self.cls = nn.ModuleList(nn.Sequential(Conv(x, c3, 3), Conv(c3, c3, 3), nn.Conv2d(c3, nc, 1))
                                 for x in (c[2], c[3], c[4]))
        self.dfl = nn.Conv2d(reg, 1, 1, bias=False).requires_grad_(False)
        self.dfl.weight.data[:] = torch.arange(reg, dtype=torch.float).view(1, reg, 1, 1)

    def forward(self, x):
        x = self.b1(self.b0(x))
        p3 = self.b4(self.b3(self.b2(x)))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h12 = self.h12(torch.cat((self.up(p5), p4), 1))
        h15 = self.h15(torch.cat((self.up(h12), p3), 1))
        h18 = self.h18(torch.cat((self.d16(h15), h12), 1))
        h21 = self.h21(torch.cat((self.d19(h18), p5), 1))
        feats = [h15, h18, h21]
        b = x.shape[0]
        outs, anchors, strides = [], [], []
        for i, f in enumerate(feats):
            outs.append(torch.cat((self.box[i](f), self.cls[i](f)), 1).view(b, 4 * self.reg + self.nc, -1))
            h, w = f.shape[2], f.shape[3]
            sy, sx = torch.meshgrid(torch.arange(h) + 0.5, torch.arange(w) + 0.5, indexing="ij")
            anchors.append(torch.stack((sx, sy), -1).view(-1, 2))
            strides.append(torch.full((h * w, 1), float(self.strides[i])))
        y = torch.cat(outs, 2)
        anchors = torch.cat(anchors).transpose(0, 1).unsqueeze(0)
        stride = torch.cat(strides).transpose(0, 1)
        box, cls = y.split((4 * self.reg, self.nc), 1)
        a = box.shape[2]
        d = self.dfl(box.view(b, 4, self.reg, a).transpose(2, 1).softmax(1)).view(b, 4, a)
        lt, rb = d.chunk(2, 1)
        x1y1, x2y2 = anchors - lt, anchors + rb
        xywh = torch.cat(((x1y1 + x2y2) / 2, x2y2 - x1y1), 1) * stride
        return torch.cat((xywh, cls.sigmoid()), 1)


def build(width, seed=0):
    torch.manual_seed(seed)
    model = YoloLike(width).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
    return model


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--size", type=int, default=640)
    p.add_argument("--opset", type=int, default=13)
    a = p.parse_args()
    model = build(a.width)
    torch.onnx.export(model, torch.zeros(1, 3, a.size, a.size), a.out, opset_version=a.opset,
                      input_names=["images"], output_names=["output0"],
                      dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}})
    print("wrote", a.out)
