#!/usr/bin/python3
"""No generic kernels on the zoo models' hot paths (ctest engine_generic_kernels).

Compiles each zoo model (tools/parity/zoo.py, exported on demand and cached)
and each default model (models/*/1/model.onnx) with rectifier-engine at
batch 1 and 8 and reads the plan (`-p`): every step that runs oneDNN's
`ref:` / `simple:` implementations or an engine reference kernel is marked
"<- generic" there. Such a step fails the test unless it is listed in
EXCEPTIONS below with its measured cost. Exits 77 (skipped) only when
torch is missing (no zoo export possible) and no default model exists.

usage: generic_kernels_test.py path/to/rectifier-engine
"""
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
import zoo  # noqa: E402

ZOO = ["resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0", "yolo_like_320"]
BATCHES = [1, 8]

# (model name prefix, op, node) -> why it may stay generic, with the
# measurement (rectifier-engine MODEL -b B -t 2 --profile on the 2-vCPU AVX2
# development machine).
EXCEPTIONS = {
    ("yolo_like", "Transpose", "/Transpose"):
        "DFL head [N,4,16,A] -> [N,16,4,A]: 0.15 ms of 88 ms per 640x640 frame at batch 1, "
        "2.3 ms of 732 ms at batch 8 (0.2-0.3%)",
}

# Models with dynamic height and width: the input shape to plan, per batch.
SHAPES = {
    "scan_segmenter": "{batch}x1x192x192",
}

STEP = re.compile(r"^\s+\d+: (\S+) '([^']*)'.*<- generic$")


def plan_lines(engine, model, batch, name=""):
    args = [engine, model, "-b", str(batch), "-t", "1", "-n", "0", "-w", "0", "-p"]
    if name in SHAPES:
        args += ["--shape", SHAPES[name].format(batch=batch)]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"rectifier-engine failed on {model} batch {batch}:\n{proc.stdout}")
    return proc.stdout.splitlines()


def exception_for(name, op, node):
    for (prefix, e_op, e_node), why in EXCEPTIONS.items():
        if name.startswith(prefix) and op == e_op and node == e_node:
            return why
    return None


def main():
    engine = sys.argv[1]
    models = []
    try:
        import torch  # noqa: F401
        for name in ZOO:
            models.append((name, zoo.zoo_model(name)))
    except ImportError as e:
        print(f"zoo models skipped: {e}")
    for path in sorted(glob.glob(os.path.join(ROOT, "models", "*", "1", "model.onnx"))):
        models.append((path.split(os.sep)[-3], path))
    if not models:
        print("SKIP: no models")
        return 77
    failures = []
    for name, path in models:
        for batch in BATCHES:
            found = []
            for line in plan_lines(engine, path, batch, name):
                m = STEP.match(line)
                if not m:
                    continue
                why = exception_for(name, m.group(1), m.group(2))
                found.append(m.group(1))
                if why is None:
                    failures.append(f"{name} batch {batch}: {line.strip()}")
                else:
                    print(f"  allowed: {name} batch {batch}: {m.group(1)} '{m.group(2)}': {why}")
            print(f"{name} batch {batch}: {len(found)} generic step(s)")
    if failures:
        print("\nFAIL: steps on generic kernels (give them a fast layout or kernel, or list them "
              "in EXCEPTIONS with a measured reason):")
        for f in failures:
            print("  " + f)
        return 1
    print("OK")
    return 0


if __name__ == "__main__":
    sys.exit(main())
