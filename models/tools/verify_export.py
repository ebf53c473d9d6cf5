#!/usr/bin/python3
"""Checks an exported zoo model: rectifier-engine output vs PyTorch, and export reproducibility.

Rebuilds the fixed-seed torch model the exporter wrote (same arch, --act,
seed, size), runs it on a random input, runs `rectifier-engine --input
--output` on the ONNX file, and prints max abs / relative error (relative to
the largest reference magnitude; for the detector also for the class scores
on their own). Exit status 1 above --rtol.

  /usr/bin/python3 models/tools/verify_export.py resnet50 models/.cache/resnet50.onnx \
      --engine build/tools/engine/rectifier-engine
  /usr/bin/python3 models/tools/verify_export.py yolov8n models/.cache/yolov8n_relu.onnx \
      --act relu --size 640

--reexport also exports the model a second time to a temporary file and
checks that the bytes (sha256) are identical.
"""
import argparse
import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import onnx
from onnx import numpy_helper
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import export_yolo  # noqa: E402
import export_zoo  # noqa: E402


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch", choices=sorted(export_zoo.ARCHS) + ["yolov8n"])
    p.add_argument("model")
    p.add_argument("--act", choices=sorted(export_zoo.ACTIVATIONS))
    p.add_argument("--engine", default="build/tools/engine/rectifier-engine")
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--size", type=int, default=0, help="default 224 (640 for yolov8n)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--reexport", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    yolo = a.arch == "yolov8n"
    size = a.size or (640 if yolo else 224)
    model = export_yolo.build(a.act, a.seed, size=size) if yolo else export_zoo.build(
        a.arch, a.act, a.seed)

    status = 0
    if a.reexport:
        with tempfile.TemporaryDirectory() as d:
            again = os.path.join(d, "again.onnx")
            if yolo:
                export_zoo.export(model, again, size, 17, "images", "output0")
            else:
                export_zoo.export(model, again, size, 17)
            same = sha256(again) == sha256(a.model)
            print(f"re-export: sha256 {sha256(a.model)} {'identical' if same else 'DIFFERS'}")
            status |= 0 if same else 1

    x = np.random.default_rng(7).standard_normal((a.batch, 3, size, size)).astype(np.float32)
    if yolo:
        x = np.abs(x) * 0.5  # image-like range
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.pb"), os.path.join(d, "out.pb")
        with open(inp, "wb") as f:
            f.write(numpy_helper.from_array(x, "input").SerializeToString())
        subprocess.run([a.engine, a.model, "-i", inp, "-o", out, "-n", "1", "-w", "0", "-t",
                        str(a.threads)], check=True, stdout=subprocess.DEVNULL)
        t = onnx.TensorProto()
        with open(out, "rb") as f:
            t.ParseFromString(f.read())
        got = numpy_helper.to_array(t)
    if got.shape != want.shape:
        print(f"{a.arch}: engine output shape {got.shape} != torch {want.shape}")
        return 1
    err = float(np.abs(got - want).max())
    rel = err / max(float(np.abs(want).max()), 1e-12)
    name = a.arch + (f" --act {a.act}" if a.act else "")
    line = f"{name} batch {a.batch} size {size}: output {list(got.shape)}, max abs err {err:.3g}, " \
           f"rel {rel:.3g}"
    if yolo:
        s_err = float(np.abs(got[:, 4:] - want[:, 4:]).max())
        b_rel = float(np.abs(got[:, :4] - want[:, :4]).max()) / float(np.abs(want[:, :4]).max())
        line += f" (boxes rel {b_rel:.3g}, scores abs {s_err:.3g})"
        rel = max(b_rel, s_err)
    else:
        line += f", argmax agree {np.mean(got.argmax(1) == want.argmax(1)):.2f}"
    print(line)
    status |= 0 if rel <= a.rtol else 1
    return status


if __name__ == "__main__":
    sys.exit(main())
