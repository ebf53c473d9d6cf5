#!/usr/bin/python3
"""Exports reference architectures to ONNX with fixed-seed random weights.

Run with Debian's interpreter (/usr/bin/python3: python3-torch,
python3-torchvision, python3-onnx). Same arguments give byte-identical files.

  /usr/bin/python3 models/tools/export_zoo.py resnet50 --out models/.cache/resnet50.onnx
"""
import argparse
import os
import sys

import torch
import torchvision

ARCHS = {
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(weights=None),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=sorted(ARCHS))
    parser.add_argument("--out", required=True)
    parser.add_argument("--opset", type=int, default=13)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    torch.manual_seed(args.seed)
    model = ARCHS[args.arch]().eval()
    # Random init leaves BatchNorm at identity statistics; give it realistic
    # ones so folding BN into Conv is exercised with non-trivial values.
    gen = torch.Generator().manual_seed(args.seed + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)
    dummy = torch.zeros(1, 3, args.size, args.size)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.onnx.export(model, dummy, args.out, opset_version=args.opset,
                      input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      do_constant_folding=True)
    print(f"{args.arch}: wrote {args.out} ({os.path.getsize(args.out)} bytes)", file=sys.stderr)


if __name__ == "__main__":
    main()
