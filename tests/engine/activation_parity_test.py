#!/usr/bin/python3
"""End-to-end activation parity with PyTorch (ctest engine_activation_parity).

For every activation of the catalog, a small Conv-BN-act-Conv-add-act network
is exported with torch.onnx.export at opsets 13 and 17 (so the exporter's own
node patterns are what the engine sees: x*Sigmoid(x), the erf and tanh GELU
chains, HardSigmoid*x at opset 13, Relu->Clip(0,6), ...), run through
rectifier-engine -i/-o and compared with PyTorch's output (max error
relative to the output's max <= 1e-5). It also checks from the load summary
that the exporter patterns were recognized. Exits 77 (skipped) only when
torch/onnx are not importable.

usage: activation_parity_test.py path/to/rectifier-engine
"""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import onnx
    import onnx.numpy_helper as nh
    import torch
    import torch.nn as nn
except ImportError as e:  # pragma: no cover
    print(f"SKIP: {e}")
    sys.exit(77)


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.5 * x)


def activations():
    return {
        "relu": (nn.ReLU(), "Relu"),
        "leaky": (nn.LeakyReLU(0.1), "LeakyRelu"),
        "prelu": (nn.PReLU(16), "PRelu"),
        "relu6": (nn.ReLU6(), "Relu6"),
        "sigmoid": (nn.Sigmoid(), "Sigmoid"),
        "tanh": (nn.Tanh(), "Tanh"),
        "hardsigmoid": (nn.Hardsigmoid(), "HardSigmoid"),
        "hardswish": (nn.Hardswish(), "HardSwish"),
        "elu": (nn.ELU(0.7), "Elu"),
        "selu": (nn.SELU(), "Selu"),
        "softplus": (nn.Softplus(), "Softplus"),
        "mish": (nn.Mish(), "Mish"),
        "silu": (nn.SiLU(), "SiLU"),
        "swish": (Swish(), "Swish"),
        "gelu": (nn.GELU(), "Gelu(erf)"),
        "gelu_tanh": (nn.GELU(approximate="tanh"), "Gelu(tanh)"),
    }


class Net(nn.Module):
    def __init__(self, act):
        super().__init__()
        self.c1 = nn.Conv2d(3, 16, 3, padding=1)
        self.b1 = nn.BatchNorm2d(16)
        self.c2 = nn.Conv2d(16, 16, 3, padding=1)
        self.act = act

    def forward(self, x):
        y = self.act(self.b1(self.c1(x)))
        return self.act(self.c2(y) + y)


def main():
    engine = sys.argv[1]
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16)).astype(np.float32) * 2
    failures = []
    with tempfile.TemporaryDirectory() as d:
        inp, out = os.path.join(d, "in.pb"), os.path.join(d, "out.pb")
        with open(inp, "wb") as f:
            f.write(nh.from_array(x, "x").SerializeToString())
        for opset in (13, 17):
            for name, (act, label) in activations().items():
                net = Net(act).eval()
                with torch.no_grad():
                    for p in net.b1.parameters():
                        p.uniform_(-1, 1)
                    net.b1.running_var.uniform_(0.5, 1.5)
                    net.b1.running_mean.uniform_(-0.5, 0.5)
                    want = net(torch.from_numpy(x)).numpy()
                path = os.path.join(d, f"{name}_{opset}.onnx")
                torch.onnx.export(net, torch.from_numpy(x), path, opset_version=opset,
                                  input_names=["x"])
                r = subprocess.run([engine, path, "-i", inp, "-o", out, "-n", "1", "-w", "0",
                                    "-t", "1"], capture_output=True, text=True)
                if r.returncode != 0:
                    failures.append(f"opset {opset} {name}: engine failed: {r.stderr[-300:]}")
                    continue
                summary = next((l.strip() for l in r.stdout.splitlines()
                                if "activations:" in l), "")
                t = onnx.TensorProto()
                with open(out, "rb") as f:
                    t.ParseFromString(f.read())
                got = nh.to_array(t)
                rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-12))
                ok = rel <= 1e-5 and f"activations: {label} x2" in summary
                print(f"opset {opset} {name:12s} rel err {rel:.2e} {'ok' if ok else 'FAIL'}  "
                      f"{summary}")
                if not ok:
                    failures.append(f"opset {opset} {name}: rel {rel:.2e}, summary '{summary}'")
    for f in failures:
        print("FAILED:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
