#!/usr/bin/python3
"""Checks ONNX Runtime held to AVX2 (tools/parity/zoo.py, RECTIFIER_ORT_ISA).

  tools/parity/ort_isa_check.py [--model models/scan_classifier/1/model.onnx]

1. The copy differs from the pinned library in exactly the patched bytes.
2. A library that is not the pinned build is refused (SHA-256), and so is an
   unknown RECTIFIER_ORT_ISA value.
3. Which runtime the tools choose: native unless RECTIFIER_ORT_ISA=avx2, or
   unset under ONEDNN_MAX_CPU_ISA=AVX2, and never on a CPU without AVX-512.
4. On a CPU with AVX-512: ort_bench.js loads the copy when held and the
   package's library when not, and both give the model's outputs within
   1e-4 (relative to the largest output) on the same input.

Exit status 0 when every check passes; 1 with the failures named.
"""
import argparse
import os
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import zoo  # noqa: E402

failures = []


def check(ok, what):
    print(f"{'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        failures.append(what)


def raises_parity_error(fn):
    try:
        fn()
    except zoo.ParityError:
        return True
    return False


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=os.path.join(zoo.ROOT, "models", "scan_classifier", "1",
                                                   "model.onnx"))
    a = p.parse_args()
    zoo.check_peer()
    src = os.path.join(zoo.peer_dir(), zoo.ORT_LIBRARY)
    with tempfile.TemporaryDirectory(prefix="ort_isa_") as tmp:
        # 1. Exactly the patched bytes differ.
        copy = zoo.ort_avx2_library(out_dir=os.path.join(tmp, "held"))
        original = np.fromfile(src, dtype=np.uint8)
        patched = np.fromfile(copy, dtype=np.uint8)
        differing = set(np.flatnonzero(original != patched).tolist())
        expected = set()
        for offset, old, new in zoo.ORT_AVX2_PATCHES:
            old, new = bytes.fromhex(old), bytes.fromhex(new)
            expected |= {offset + i for i in range(len(old)) if old[i] != new[i]}
        check(original.size == patched.size and differing == expected,
              f"the copy differs from the package's library in exactly the {len(expected)} "
              f"patched bytes (found {len(differing)})")
        # 2. Not the pinned build: refused.
        tampered = os.path.join(tmp, "tampered.so")
        shutil.copyfile(src, tampered)
        with open(tampered, "r+b") as f:
            f.seek(0x1000)
            byte = f.read(1)
            f.seek(0x1000)
            f.write(bytes([byte[0] ^ 0xFF]))
        check(raises_parity_error(lambda: zoo.ort_avx2_library(
            src=tampered, out_dir=os.path.join(tmp, "tampered"))),
            "a library that is not the pinned build is refused")
        check(raises_parity_error(lambda: zoo.ort_held_to_avx2({"RECTIFIER_ORT_ISA": "sse4"})),
              "RECTIFIER_ORT_ISA=sse4 is refused")
    # 3. The choice.
    avx512 = zoo.cpu_has_avx512()
    cases = [({}, False), ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, avx512),
             ({"ONEDNN_MAX_CPU_ISA": "avx512_core"}, False),
             ({"ONEDNN_MAX_CPU_ISA": "AVX2", "RECTIFIER_ORT_ISA": "native"}, False),
             ({"RECTIFIER_ORT_ISA": "avx2"}, avx512)]
    for env, want in cases:
        check(zoo.ort_held_to_avx2(env) == want,
              f"held to AVX2 under {env or 'no variables'}: {want}")
    # 4. The runtime.
    if not avx512:
        print("skipped: this CPU has no AVX-512, the package's library already runs AVX2")
    else:
        with tempfile.TemporaryDirectory(prefix="ort_isa_run_") as tmp:
            inputs = zoo.make_inputs(a.model, 1, 2026)
            array = inputs[0][1]
            inp = os.path.join(tmp, "input.bin")
            array.tofile(inp)
            outs = {}
            for isa in ("native", "avx2"):
                out_dir = os.path.join(tmp, isa)
                os.makedirs(out_dir)
                env = dict(os.environ, RECTIFIER_ORT_ISA=isa)
                # zoo.ort_bench checks the library this process loaded.
                info = zoo.ort_bench(a.model, ["--batch", "1", "--threads", "1", "--iters", "1",
                                               "--warmup", "0", "--input", inp, "--output-dir",
                                               out_dir, "--shape",
                                               ",".join(map(str, array.shape[1:]))], env=env)
                check(bool(info.get("library")), f"{isa}: ort_bench.js loaded {info['library']}")
                outs[isa] = {n: np.fromfile(os.path.join(out_dir, n), dtype=np.float32)
                             for n in sorted(os.listdir(out_dir))}
            same_names = outs["native"].keys() == outs["avx2"].keys() and outs["native"]
            check(bool(same_names), f"both wrote the outputs {sorted(outs['native'])}")
            for n in sorted(outs["native"]) if same_names else []:
                want, got = outs["native"][n], outs["avx2"][n]
                rel = float(np.max(np.abs(want - got)) / max(np.max(np.abs(want)), zoo.REL_EPS))
                check(want.shape == got.shape and rel <= 1e-4,
                      f"output {n}: AVX2-held against native, relative difference {rel:.2g}")
    if failures:
        print(f"FAILED: {len(failures)} check(s)")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except zoo.ParityError as e:
        print(f"ort_isa_check: {e}", file=sys.stderr)
        sys.exit(1)
