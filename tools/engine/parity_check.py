#!/usr/bin/python3
"""Compares rectifier-engine with PyTorch on a model from models/tools/export_zoo.py.

Rebuilds the same fixed-seed torchvision model, runs it in PyTorch on a
random input, runs `rectifier-engine --input/--output` on the exported ONNX
file, and prints the max abs / relative error. Exit status 1 above --rtol.

  /usr/bin/python3 tools/engine/parity_check.py resnet50 models/.cache/resnet50.onnx \
      --engine build-engine/tools/engine/rectifier-engine --batch 2
"""
import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "models", "tools"))
import export_zoo  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import export_yolo_like  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("arch")
    p.add_argument("model")
    p.add_argument("--engine", default="build-engine/tools/engine/rectifier-engine")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rtol", type=float, default=1e-3)
    p.add_argument("--extra", nargs="*", default=[])
    a = p.parse_args()
    if a.arch == "yolo_like":
        model = export_yolo_like.build(0.25, a.seed)
    else:
        torch.manual_seed(a.seed)
        model = export_zoo.ARCHS[a.arch]().eval()
        gen = torch.Generator().manual_seed(a.seed + 1)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
    x = np.random.default_rng(7).standard_normal((a.batch, 3, a.size, a.size)).astype(np.float32)
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.pb"), os.path.join(d, "out.pb")
        with open(inp, "wb") as f:
            f.write(numpy_helper.from_array(x, "input").SerializeToString())
        subprocess.run([a.engine, a.model, "-i", inp, "-o", out, "-n", "1", "-w", "1"] + a.extra,
                       check=True, stdout=subprocess.DEVNULL)
        t = onnx.TensorProto()
        with open(out, "rb") as f:
            t.ParseFromString(f.read())
        got = numpy_helper.to_array(t)
    err = np.abs(got - want).max()
    rel = err / max(np.abs(want).max(), 1e-12)
    print(f"{a.arch} batch {a.batch}: shape {got.shape}, max abs err {err:.3g}, "
          f"rel to max {rel:.3g}, argmax agree {np.mean(got.argmax(1) == want.argmax(1)):.2f}")
    return 0 if rel <= a.rtol else 1


if __name__ == "__main__":
    sys.exit(main())
