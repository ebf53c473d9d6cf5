#!/usr/bin/python3
"""Side-by-side benchmark: rectifier-engine vs ONNX Runtime 1.30 (CPU EP).

For each model, batch size and thread count, both runtimes get the same model
file and the same seeded random input and run alternately: ROUNDS rounds, each
one rectifier-engine process and one ONNX Runtime process (bench/peer/
ort_bench.js) doing WARMUP untimed then ITERS timed runs (the order flips every
round). A side's time is the median of its round medians (ROUNDS x ITERS timed
runs in all). The table gives ms, images/s, GF/s (2 x MACs of Conv/Gemm/MatMul
from ONNX shape inference x batch / time), the fraction of the FMA ceiling
measured by bench/compare/fma_peak.cc at the same thread count in this run,
the throughput ratio engine/ORT (> 1: the engine is faster) and the parity
error of the last round's outputs (max|engine - ort| / max|ort|).

  make bench-compare                                   # everything (slow)
  bench/compare/compare.py --build build --models mobilenet_v2 --batches 1 \\
      --threads 2 --rounds 1 --iters 20                # a quick subset

Models: tools/parity/zoo.py names (exported on demand, cached in models/.cache/zoo).
"""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "parity"))
import zoo  # noqa: E402

DEFAULT_MODELS = ["resnet50", "mobilenet_v2", "mobilenet_v3_small", "efficientnet_b0",
                  "yolo_like"]


def build_fma_peak(build_dir):
    src = os.path.join(HERE, "fma_peak.cc")
    out_dir = os.path.join(build_dir, "bench", "compare")
    exe = os.path.join(out_dir, "fma_peak")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(out_dir, exist_ok=True)
        subprocess.run(["g++", "-O2", "-std=c++17", "-pthread", src, "-o", exe], check=True)
    return exe


def fma_ceiling(exe, threads):
    """GFLOP/s of the widest FMA the CPU has, at `threads` threads (best of 5)."""
    out = subprocess.run([exe, str(threads), "0.3"], check=True, stdout=subprocess.PIPE,
                         text=True).stdout
    info = json.loads(out)
    return info, max(info["avx2_gflops"], info["avx512_gflops"])


def engine_round(engine, model, inp, out, batch, threads, iters, warmup, env=None):
    proc = subprocess.run([engine, model, "-i", inp, "-o", out, "-b", str(batch), "-t",
                           str(threads), "-n", str(iters), "-w", str(warmup)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)
    m = re.search(r"p50 ([0-9.]+) ms", proc.stdout)
    if proc.returncode != 0 or not m:
        raise zoo.ParityError(f"rectifier-engine failed on {model}:\n{proc.stdout}")
    return float(m.group(1))


def ort_round(model, inp, out_dir, batch, threads, iters, warmup, chw):
    proc = subprocess.run(["node", os.path.join(zoo.peer_dir(), "ort_bench.js"), model,
                           "--batch", str(batch), "--threads", str(threads), "--iters",
                           str(iters), "--warmup", str(warmup), "--input", inp,
                           "--output-dir", out_dir, "--shape", ",".join(map(str, chw))],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise zoo.ParityError(f"ort_bench.js failed on {model}:\n{proc.stderr}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    return info["median_ms"], info["outputs"]


def measure(engine, model, batch, threads, a, tmp, variant=None):
    """Alternating rounds; returns (engine, ort, variant) round medians and parity.
    variant: (binary, environment) of a third side, an engine experiment."""
    inputs = zoo.make_inputs(model, batch, a.seed)
    if len(inputs) != 1 or inputs[0][1].dtype != np.float32:
        raise zoo.ParityError(f"{model}: the benchmark handles one float32 input only")
    name, array = inputs[0]
    inp_pb, inp_bin = os.path.join(tmp, "input.pb"), os.path.join(tmp, "input.bin")
    zoo.write_pb(inp_pb, name, array)
    array.tofile(inp_bin)
    eng_out = os.path.join(tmp, "engine_output0.pb")
    var_out = os.path.join(tmp, "variant_output0.pb")
    engine_ms, ort_ms, variant_ms, ort_outputs = [], [], [], None
    base = ["engine", "ort"] + (["variant"] if variant else [])
    for r in range(a.rounds):
        sides = base[r % len(base):] + base[:r % len(base)]  # rotate the order
        for side in sides:
            if side == "engine":
                engine_ms.append(engine_round(engine, model, inp_pb, eng_out, batch, threads,
                                              a.iters, a.warmup))
            elif side == "variant":
                variant_ms.append(engine_round(variant[0], model, inp_pb, var_out, batch,
                                               threads, a.iters, a.warmup, variant[1]))
            else:
                ms, ort_outputs = ort_round(model, inp_bin, tmp, batch, threads, a.iters,
                                            a.warmup, array.shape[1:])
                ort_ms.append(ms)
    first = zoo.output_names(model)[0]
    dims = ort_outputs[first]
    want = np.fromfile(os.path.join(tmp, re.sub(r"[^A-Za-z0-9_.-]", "_", first) + ".bin"),
                       dtype=np.float32).reshape(dims)
    parity = zoo.compare(zoo.read_pb(eng_out), want)
    if variant:
        parity["variant_rel"] = zoo.compare(zoo.read_pb(var_out), want)["rel"]
    return engine_ms, ort_ms, variant_ms, parity


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default="build", help="build directory with rectifier-engine")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--threads", nargs="+", type=int, default=[1, 2])
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds per side")
    p.add_argument("--iters", type=int, default=20, help="timed runs per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed runs per round")
    p.add_argument("--seed", type=int, default=2026)
    p.add_argument("--json", help="also write every measurement to this file")
    p.add_argument("--variant-build", help="experiment: a second engine build directory, "
                   "run as a third alternating side")
    p.add_argument("--variant-env", nargs="*", default=[], metavar="NAME=VALUE",
                   help="experiment: environment of the third side (binary: --variant-build "
                   "or the engine's)")
    a = p.parse_args()
    if a.rounds < 1 or a.iters < 1 or a.warmup < 0:
        p.error("--rounds and --iters must be >= 1, --warmup >= 0")

    engine = os.path.join(a.build, "tools", "engine", "rectifier-engine")
    try:
        if not os.path.exists(engine):
            raise zoo.ParityError(f"{engine} not found: build it (make build, or --build DIR)")
        zoo.check_peer()
        variant = None
        if a.variant_build or a.variant_env:
            binary = os.path.join(a.variant_build or a.build, "tools", "engine",
                                  "rectifier-engine")
            if not os.path.exists(binary):
                raise zoo.ParityError(f"{binary} not found")
            env = dict(os.environ)
            for kv in a.variant_env:
                if "=" not in kv:
                    raise zoo.ParityError(f"--variant-env wants NAME=VALUE, got '{kv}'")
                env[kv.split("=", 1)[0]] = kv.split("=", 1)[1]
            variant = (binary, env)
        fma = build_fma_peak(a.build)
        ceilings = {}
        for t in sorted(set(a.threads)):
            info, ceilings[t] = fma_ceiling(fma, t)
            print(f"FMA ceiling, {t} thread(s): AVX2 {info['avx2_gflops']:.1f} GFLOP/s, "
                  f"AVX-512 {info['avx512_gflops']:.1f} GFLOP/s -> {ceilings[t]:.1f}", flush=True)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()
        rows, records = [], []
        header = ("| model (GMAC/img) | batch | threads | engine ms | ORT ms | engine img/s | "
                  "ORT img/s | engine GF/s (% ceiling) | ORT GF/s (% ceiling) | "
                  "engine/ORT img/s | parity rel err |")
        if variant:
            header += " variant ms | variant/engine img/s | variant parity |"
        print(header + "\n" + "| --- " * (14 if variant else 11) + "|", flush=True)
        for name in a.models:
            model = zoo.zoo_model(name)
            macs = zoo.macs_per_image(model)
            for batch in a.batches:
                if not zoo.supports_batch(model, batch):
                    print(f"{name}: batch {batch} not supported by the model, skipped")
                    continue
                for threads in a.threads:
                    with tempfile.TemporaryDirectory(prefix="compare_") as tmp:
                        eng, ort, var, parity = measure(engine, model, batch, threads, a, tmp,
                                                        variant)
                    e_ms, o_ms = statistics.median(eng), statistics.median(ort)
                    gf = lambda ms: 2.0 * macs * batch / (ms * 1e-3) / 1e9  # noqa: E731
                    ceil = ceilings[threads]
                    row = (f"| {name} ({macs / 1e9:.2f}) | {batch} | {threads} | {e_ms:.2f} | "
                           f"{o_ms:.2f} | {batch * 1000 / e_ms:.1f} | {batch * 1000 / o_ms:.1f} | "
                           f"{gf(e_ms):.1f} ({100 * gf(e_ms) / ceil:.0f}%) | "
                           f"{gf(o_ms):.1f} ({100 * gf(o_ms) / ceil:.0f}%) | "
                           f"{o_ms / e_ms:.2f} | {parity['rel']:.2g} |")
                    if variant:
                        v_ms = statistics.median(var)
                        row += (f" {v_ms:.2f} | {e_ms / v_ms:.2f} | "
                                f"{parity['variant_rel']:.2g} |")
                    print(row, flush=True)
                    rows.append(row)
                    records.append({"model": name, "file": os.path.relpath(model, zoo.ROOT),
                                    "macs_per_image": macs, "batch": batch,
                                    "threads": threads, "engine_round_ms": eng,
                                    "ort_round_ms": ort, "variant_round_ms": var,
                                    "engine_ms": e_ms, "ort_ms": o_ms,
                                    "ceiling_gflops": ceil, "parity_rel": parity["rel"],
                                    "parity_max_abs": parity["max_abs"],
                                    "load_after": os.getloadavg()[0]})
        end_load = os.getloadavg()
        print(f"\n{started}, load average {load[0]:.1f} at start, {end_load[0]:.1f} at end; "
              f"{a.rounds} alternating "
              f"round(s) x {a.iters} timed runs ({a.warmup} warm-up) per side; ceiling = best "
              f"FMA loop ({', '.join(f'{t}T {c:.0f}' for t, c in ceilings.items())} GFLOP/s)")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"started": started, "load_at_start": load, "load_at_end": end_load,
                           "ceilings": ceilings,
                           "args": vars(a), "results": records}, f, indent=1)
    except zoo.ParityError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
