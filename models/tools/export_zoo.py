#!/usr/bin/python3
"""Exports reference architectures to ONNX with fixed-seed random weights.

Run with Debian's interpreter (/usr/bin/python3: python3-torch,
python3-torchvision, python3-onnx). Same arguments give byte-identical files.

  /usr/bin/python3 models/tools/export_zoo.py resnet50 --out models/.cache/resnet50.onnx
  /usr/bin/python3 models/tools/export_zoo.py mobilenet_v2 --act gelu   # -> models/.cache/mobilenet_v2_gelu.onnx
  /usr/bin/python3 models/tools/export_zoo.py lraspp_mobilenet_v3_large --dynamic-hw --size 224
  /usr/bin/python3 models/tools/export_zoo.py mobilenet_v3_small --out R/m/1/model.onnx --labels R/m/labels.txt

The segmentation nets (lraspp_mobilenet_v3_large, fcn_resnet50; 21 classes, their
`out` map only) are exported with their upsampling to the input size computed
from the input's shape; with --dynamic-hw height and width are dynamic, as for
any model served at native resolution.

--act replaces every activation module of the network (ReLU, ReLU6, SiLU,
Hardswish, GELU, LeakyReLU, including the one inside squeeze-excite blocks)
with the chosen one; the squeeze-excite gates (Sigmoid, Hardsigmoid) stay.
Without --act each architecture keeps its own activations.
"""
import argparse
import os
import sys

import torch
import torchvision
from torch import nn

ARCHS = {
    "resnet50": lambda: torchvision.models.resnet50(weights=None),
    "mobilenet_v2": lambda: torchvision.models.mobilenet_v2(weights=None),
    "mobilenet_v3_small": lambda: torchvision.models.mobilenet_v3_small(weights=None),
    "efficientnet_b0": lambda: torchvision.models.efficientnet_b0(weights=None),
    "lraspp_mobilenet_v3_large": lambda: SegmentationOut(
        torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None,
                                                                  weights_backbone=None)),
    "fcn_resnet50": lambda: SegmentationOut(
        torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None,
                                                     aux_loss=False)),
    "attention_net": lambda: AttentionNet(),
}


class AttentionNet(nn.Module):
    """A small conv net with one self-attention block over the feature map's pixels (the
    4-D MatMuls of a vision transformer, sequence length H*W/16) and a ShuffleNet channel
    shuffle (a 5-D Transpose): the graph shapes that dynamic height and width must carry
    through Reshape and MatMul. Output: a [N, 10] classification."""

    def __init__(self, channels=32, heads=4, groups=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, 4, 1), nn.BatchNorm2d(channels),
                                  nn.ReLU())
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        self.mix = nn.Conv2d(channels, channels, 3, 1, 1, groups=groups)
        self.head = nn.Linear(channels, 10)
        self.heads, self.groups = heads, groups

    def forward(self, x):
        x = self.stem(x)
        b, c, h, w = x.shape
        q, k, v = self.qkv(x).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        attn = (q.transpose(-2, -1) @ k) * (c // self.heads) ** -0.5  # [b, heads, hw, hw]
        y = (v @ attn.softmax(-1).transpose(-2, -1)).reshape(b, c, h, w)
        x = x + self.proj(y)
        # Channel shuffle: [b, groups, c/groups, h, w] -> swap the two channel axes.
        x = x.reshape(b, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(b, c, h, w)
        x = torch.relu(self.mix(x))
        return self.head(x.mean((2, 3)))


class SegmentationOut(nn.Module):
    """torchvision's segmentation models answer a dict; export its 'out' map."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x)["out"]

SEGMENTATION = ("lraspp_mobilenet_v3_large", "fcn_resnet50")

# --act choices: module constructors. LeakyReLU uses Ultralytics' / YOLO's slope 0.1.
ACTIVATIONS = {
    "relu": lambda: nn.ReLU(inplace=True),
    "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True),
    "silu": lambda: nn.SiLU(inplace=True),
    "hardswish": lambda: nn.Hardswish(inplace=True),
    "gelu": lambda: nn.GELU(),
}
# The modules --act replaces (gates such as Sigmoid/Hardsigmoid are not activations here).
REPLACEABLE = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU, nn.LeakyReLU)


def replace_activations(module, act):
    """Replaces every REPLACEABLE submodule with a fresh ACTIVATIONS[act](); returns the count."""
    count = 0
    for name, child in module.named_children():
        if isinstance(child, REPLACEABLE):
            setattr(module, name, ACTIVATIONS[act]())
            count += 1
        else:
            count += replace_activations(child, act)
    return count


def randomize_bn_stats(model, seed):
    """Random init leaves BatchNorm at identity statistics; give it realistic ones
    so folding BN into Conv is exercised with non-trivial values."""
    gen = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) * 0.5 + 0.75)


def build(arch, act=None, seed=0):
    """The eval-mode torch model export() writes (also used by verify_export.py)."""
    torch.manual_seed(seed)
    model = ARCHS[arch]()
    if act:
        if replace_activations(model, act) == 0:
            raise ValueError(f"{arch}: no activation modules to replace")
    model.eval()
    randomize_bn_stats(model, seed)
    return model


def default_out(arch, act):
    here = os.path.dirname(os.path.abspath(__file__))
    name = arch + (f"_{act}" if act else "")
    return os.path.normpath(os.path.join(here, "..", ".cache", f"{name}.onnx"))


def export(model, out, size, opset, input_name="input", output_name="logits", dynamic_hw=False,
           output_dynamic=None):
    """Dynamic batch; with dynamic_hw also dynamic input height and width, and the output
    axes in `output_dynamic` ({axis: name}, default: batch only)."""
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    in_axes = {0: "batch", 2: "height", 3: "width"} if dynamic_hw else {0: "batch"}
    out_axes = output_dynamic or {0: "batch"}
    with torch.no_grad():
        torch.onnx.export(model, torch.zeros(1, 3, size, size), out, opset_version=opset,
                          input_names=[input_name], output_names=[output_name],
                          dynamic_axes={input_name: in_axes, output_name: out_axes},
                          do_constant_folding=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("arch", choices=sorted(ARCHS))
    parser.add_argument("--out", help="default: models/.cache/<arch>[_<act>].onnx")
    parser.add_argument("--act", choices=sorted(ACTIVATIONS),
                        help="replace the activations (default: the architecture's own)")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dynamic-hw", action="store_true",
                        help="dynamic input height and width (and output spatial dims)")
    parser.add_argument("--labels", help="also write the 1000 ImageNet class names, one per line "
                        "(torchvision's list; the classifiers' output order) to this file")
    args = parser.parse_args()

    out = args.out or default_out(args.arch, args.act)
    segmentation = args.arch in SEGMENTATION
    out_axes = None
    if args.dynamic_hw:
        out_axes = {0: "batch", 2: "height", 3: "width"} if segmentation else {0: "batch"}
    export(build(args.arch, args.act, args.seed), out, args.size, args.opset,
           output_name="out" if segmentation else "logits", dynamic_hw=args.dynamic_hw,
           output_dynamic=out_axes)
    print(f"{args.arch}{' --act ' + args.act if args.act else ''}: wrote {out} "
          f"({os.path.getsize(out)} bytes)", file=sys.stderr)
    if args.labels:
        from torchvision.models._meta import _IMAGENET_CATEGORIES
        with open(args.labels, "w") as f:
            f.write("".join(f"{name}\n" for name in _IMAGENET_CATEGORIES))
        print(f"wrote {len(_IMAGENET_CATEGORIES)} labels to {args.labels}", file=sys.stderr)


if __name__ == "__main__":
    main()
