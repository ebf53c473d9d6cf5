#!/usr/bin/python3
"""Side-by-side benchmark: rectifier-engine vs ONNX Runtime 1.30 (CPU EP).

For each model, batch size and thread count, both runtimes get the same model
file and the same seeded random input and run alternately: ROUNDS rounds, each
one rectifier-engine process and one ONNX Runtime process (bench/peer/
ort_bench.js) doing WARMUP untimed then ITERS timed runs (the order flips every
round). A side's time is the median of its round medians (ROUNDS x ITERS timed
runs in all). The table gives ms, images/s, GF/s (2 x MACs of Conv/Gemm/MatMul
from ONNX shape inference x batch / time), the fraction of the FMA ceiling
measured by bench/compare/fma_peak.cc at the same thread count in this run
(for the engine under ONEDNN_MAX_CPU_ISA below AVX-512, the AVX2 loop's),
the throughput ratio engine/ORT (> 1: the engine is faster) and the parity
error of the last round's outputs (max|engine - ort| / max|ort|).

AVX2 on a CPU with AVX-512: ONEDNN_MAX_CPU_ISA=AVX2 holds the engine to AVX2
and, unless RECTIFIER_ORT_ISA=native, ONNX Runtime too (a copy of its pinned
library whose CPU checks report no AVX-512, tools/parity/zoo.py); the
ceilings follow. RECTIFIER_ORT_ISA=avx2 holds ONNX Runtime alone.

  make bench-compare                                   # everything (slow)
  bench/compare/compare.py --build build --models mobilenet_v2 --batches 1 \\
      --threads 2 --rounds 1 --iters 20                # a quick subset

Per-layer comparison (one model, batch and thread count):

  bench/compare/compare.py --build build --layers yolo_like --batches 1 --threads 2

runs rectifier-engine --profile and ONNX Runtime with enableProfiling on the
same input and prints the engine's steps next to the ORT nodes they cover,
matched by ONNX node name (each engine step names its node and the nodes
fused into it; ORT's renamed nodes, such as "<conv>_output_0_nchwc" or
"<mul>/QuickGeluFusion/", are mapped back to theirs), losing steps first,
then the ORT nodes no engine step names (layout reorders of its own, ...).

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


def engine_round(engine, model, inp, out, batch, threads, iters, warmup, env=None, tails=None,
                 extra=()):
    """p50 ms of one rectifier-engine process; its p99/p50 is appended to `tails`.
    `extra`: more rectifier-engine arguments."""
    proc = subprocess.run([engine, model, "-i", inp, "-o", out, "-b", str(batch), "-t",
                           str(threads), "-n", str(iters), "-w", str(warmup), *extra],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)
    m = re.search(r"p50 ([0-9.]+) ms", proc.stdout)
    if proc.returncode != 0 or not m:
        raise zoo.ParityError(f"rectifier-engine failed on {model}:\n{proc.stdout}")
    p99 = re.search(r"p99 ([0-9.]+) ms", proc.stdout)
    if tails is not None and p99:
        tails.append(float(p99.group(1)) / float(m.group(1)))
    return float(m.group(1))


def ort_round(model, inp, out_dir, batch, threads, iters, warmup, chw):
    info = zoo.ort_bench(model, ["--batch", str(batch), "--threads", str(threads), "--iters",
                                 str(iters), "--warmup", str(warmup), "--input", inp,
                                 "--output-dir", out_dir, "--shape", ",".join(map(str, chw))])
    return info["median_ms"], info["outputs"]


def write_input(model, batch, seed, tmp):
    """The model's seeded input in `tmp`, for both runtimes: returns (array,
    TensorProto path for rectifier-engine -i, raw float32 path for ORT)."""
    inputs = zoo.make_inputs(model, batch, seed)
    if len(inputs) != 1 or inputs[0][1].dtype != np.float32:
        raise zoo.ParityError(f"{model}: the benchmark handles one float32 input only")
    name, array = inputs[0]
    inp_pb, inp_bin = os.path.join(tmp, "input.pb"), os.path.join(tmp, "input.bin")
    zoo.write_pb(inp_pb, name, array)
    array.tofile(inp_bin)
    return array, inp_pb, inp_bin


def measure(engine, model, batch, threads, a, tmp, variant=None):
    """Alternating rounds; returns (engine, ort, variant) round medians and parity.
    variant: (binary, environment, arguments) of a third side, an engine experiment."""
    array, inp_pb, inp_bin = write_input(model, batch, a.seed, tmp)
    eng_out = os.path.join(tmp, "engine_output0.pb")
    var_out = os.path.join(tmp, "variant_output0.pb")
    engine_ms, ort_ms, variant_ms, ort_outputs = [], [], [], None
    tails = []
    base = ["engine", "ort"] + (["variant"] if variant else [])
    for r in range(a.rounds):
        sides = base[r % len(base):] + base[:r % len(base)]  # rotate the order
        for side in sides:
            if side == "engine":
                # One tuning per measurement (the server's --tuning-cache-dir):
                # the first round times the conv layouts, later rounds reuse.
                engine_ms.append(engine_round(engine, model, inp_pb, eng_out, batch, threads,
                                              a.iters, a.warmup, tails=tails,
                                              extra=("--tuning-cache",
                                                     os.path.join(tmp, "tuning"))))
            elif side == "variant":
                variant_ms.append(engine_round(variant[0], model, inp_pb, var_out, batch,
                                               threads, a.iters, a.warmup, variant[1],
                                               extra=variant[2]))
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
    parity["engine_tail"] = statistics.median(tails) if tails else float("nan")
    parity["engine_tails"] = tails
    return engine_ms, ort_ms, variant_ms, parity


def spread(round_medians):
    """Slowest / fastest round median ("-" with one round)."""
    if len(round_medians) < 2:
        return "-"
    return f"{max(round_medians) / min(round_medians):.2f}"


def ort_base_name(event_name):
    """ONNX node name behind an ORT profile event ("<node>_kernel_time")."""
    n = event_name[:-len("_kernel_time")] if event_name.endswith("_kernel_time") else event_name
    for suffix in ("_output_0_nchwc", "_nchwc"):
        if n.endswith(suffix):
            n = n[:-len(suffix)]
    n = re.sub(r"/[A-Za-z]+Fusion/?$", "", n)
    return n


def layers(engine, model, batch, threads, a, tmp):
    """Per-step engine profile next to ORT's per-node profile (see the module doc)."""
    array, inp_pb, inp_bin = write_input(model, batch, a.seed, tmp)
    eng_json = os.path.join(tmp, "engine_profile.json")
    proc = subprocess.run([engine, model, "-i", inp_pb, "-b", str(batch), "-t", str(threads),
                           "-n", str(a.iters), "-w", str(a.warmup), "--profile",
                           "--profile-json", eng_json],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise zoo.ParityError(f"rectifier-engine --profile failed on {model}:\n{proc.stdout}")
    eng = json.load(open(eng_json))[0]
    info = zoo.ort_bench(model, ["--batch", str(batch), "--threads", str(threads), "--iters",
                                 str(a.iters), "--warmup", str(a.warmup), "--input", inp_bin,
                                 "--shape", ",".join(map(str, array.shape[1:])),
                                 "--profile", os.path.join(tmp, "ort_profile")])
    events = json.load(open(info["profile"]))
    runs = max(1, sum(1 for e in events if e.get("cat") == "Session" and e["name"] == "model_run"))
    ort = {}
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            key = (ort_base_name(e["name"]), e.get("args", {}).get("op_name", "?"))
            ort[key] = ort.get(key, 0.0) + e["dur"] / 1000.0 / runs
    # Engine step -> the ONNX nodes it names (its own and the fused ones).
    owner = {}
    for st in eng["steps"]:
        for node in re.findall(r"'([^']*)'", st["label"]):
            owner.setdefault(node, st["step"])
        if st["node"]:
            owner.setdefault(st["node"], st["step"])
    covered = {st["step"]: [] for st in eng["steps"]}
    unmatched = []
    for (node, op), ms in ort.items():
        if node in owner:
            covered[owner[node]].append((node, op, ms))
        else:
            unmatched.append((node, op, ms))
    rows = []
    for st in eng["steps"]:
        o_ms = sum(ms for _, _, ms in covered[st["step"]])
        ops = sorted({op for _, op, _ in covered[st["step"]]})
        rows.append((st["ms"] - o_ms, st, o_ms, ops))
    eng_total = sum(st["ms"] for st in eng["steps"])
    ort_total = sum(ort.values())
    print(f"{os.path.basename(model)}, batch {batch}, {threads} thread(s): engine steps "
          f"{eng_total:.2f} ms per run ({eng['runs']} timed runs), ORT nodes {ort_total:.2f} ms "
          f"per run ({runs} runs, warm-up included; session median {info['median_ms']:.2f} ms)")
    print(f"{'engine ms':>10} {'ORT ms':>8} {'diff':>8}  step (engine implementation) <- ORT ops")
    for diff, st, o_ms, ops in sorted(rows, key=lambda r: -r[0])[:a.top]:
        print(f"{st['ms']:10.3f} {o_ms:8.3f} {diff:+8.3f}  {st['step']}: {st['op']} "
              f"'{st['node']}' [{st['impl']}] <- {','.join(ops) or '-'}")
    if unmatched:
        u_total = sum(ms for _, _, ms in unmatched)
        print(f"ORT nodes no engine step names: {len(unmatched)}, {u_total:.3f} ms per run; "
              f"largest:")
        for node, op, ms in sorted(unmatched, key=lambda r: -r[2])[:10]:
            print(f"{'':10} {ms:8.3f}           {op} '{node}'")
    by_op = {}
    for _, st, o_ms, _ in rows:
        k = (st["op"], st["impl"])
        e, o, n = by_op.get(k, (0.0, 0.0, 0))
        by_op[k] = (e + st["ms"], o + o_ms, n + 1)
    print("by engine op and implementation (ORT time of the nodes those steps cover):")
    for (op, impl), (e, o, n) in sorted(by_op.items(), key=lambda kv: -(kv[1][0] - kv[1][1])):
        print(f"{e:10.3f} {o:8.3f} {e - o:+8.3f}  {n:3d} x {op} [{impl}]")


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
    p.add_argument("--variant-args", default="", metavar="ARGS",
                   help="experiment: more rectifier-engine arguments for the third side, "
                   "e.g. '--conv-layout any'")
    p.add_argument("--layers", metavar="MODEL",
                   help="per-layer comparison of MODEL at the first --batches and --threads "
                   "value instead of the table")
    p.add_argument("--top", type=int, default=40, help="--layers: steps to print")
    a = p.parse_args()
    if a.rounds < 1 or a.iters < 1 or a.warmup < 0:
        p.error("--rounds and --iters must be >= 1, --warmup >= 0")

    engine = os.path.join(a.build, "tools", "engine", "rectifier-engine")
    try:
        if not os.path.exists(engine):
            raise zoo.ParityError(f"{engine} not found: build it (make build, or --build DIR)")
        zoo.check_peer()
        if a.layers:
            with tempfile.TemporaryDirectory() as tmp:
                layers(engine, zoo.zoo_model(a.layers), a.batches[0], a.threads[0], a, tmp)
            return 0
        variant = None
        if a.variant_build or a.variant_env or a.variant_args:
            binary = os.path.join(a.variant_build or a.build, "tools", "engine",
                                  "rectifier-engine")
            if not os.path.exists(binary):
                raise zoo.ParityError(f"{binary} not found")
            env = dict(os.environ)
            for kv in a.variant_env:
                if "=" not in kv:
                    raise zoo.ParityError(f"--variant-env wants NAME=VALUE, got '{kv}'")
                env[kv.split("=", 1)[0]] = kv.split("=", 1)[1]
            variant = (binary, env, a.variant_args.split())
        fma = build_fma_peak(a.build)
        ceilings, engine_ceilings = {}, {}
        isa = "?"
        capped = zoo.engine_capped_below_avx512()
        ort_avx2 = zoo.ort_held_to_avx2()
        if ort_avx2:
            print(f"ONNX Runtime held to AVX2: {zoo.ort_avx2_library()} (a copy of the pinned "
                  f"build whose CPU checks report no AVX-512; {zoo.ORT_ISA_VARIABLE}=native "
                  f"runs the package's own)", flush=True)
        for t in sorted(set(a.threads)):
            info, widest = fma_ceiling(fma, t)
            ceilings[t] = info["avx2_gflops"] if ort_avx2 else widest
            engine_ceilings[t] = info["avx2_gflops"] if capped else widest
            isa = "AVX-512" if info["avx512_gflops"] > 0 else "AVX2 only (no AVX-512)"
            print(f"FMA ceiling, {t} thread(s): AVX2 {info['avx2_gflops']:.1f} GFLOP/s, "
                  f"AVX-512 {info['avx512_gflops']:.1f} GFLOP/s -> engine {engine_ceilings[t]:.1f},"
                  f" ONNX Runtime {ceilings[t]:.1f}", flush=True)
            high, low = sorted((ceilings[t], engine_ceilings[t]), reverse=True)
            if high > 1.15 * low:
                # Zen 5 and Intel: AVX-512 at full width. (Zen 4 runs it as
                # two halves: the same ceiling, a fair proxy.)
                print(f"  one runtime is held to AVX2 and the other is not (ONEDNN_MAX_CPU_ISA, "
                      f"{zoo.ORT_ISA_VARIABLE}): engine/ORT compares unequal peaks on this CPU",
                      flush=True)
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()
        rows, records = [], []
        header = ("| model (GMAC/img) | batch | threads | engine ms | ORT ms | engine img/s | "
                  "ORT img/s | engine GF/s (% ceiling) | ORT GF/s (% ceiling) | "
                  "engine/ORT img/s | parity rel err | engine spread | ORT spread | "
                  "engine p99/p50 |")
        if variant:
            header += " variant ms | variant/engine img/s | variant parity |"
        print(header + "\n" + "| --- " * (17 if variant else 14) + "|", flush=True)
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
                    ceil, e_ceil = ceilings[threads], engine_ceilings[threads]
                    row = (f"| {name} ({macs / 1e9:.2f}) | {batch} | {threads} | {e_ms:.2f} | "
                           f"{o_ms:.2f} | {batch * 1000 / e_ms:.1f} | {batch * 1000 / o_ms:.1f} | "
                           f"{gf(e_ms):.1f} ({100 * gf(e_ms) / e_ceil:.0f}%) | "
                           f"{gf(o_ms):.1f} ({100 * gf(o_ms) / ceil:.0f}%) | "
                           f"{o_ms / e_ms:.2f} | {parity['rel']:.2g} | "
                           f"{spread(eng)} | {spread(ort)} | {parity['engine_tail']:.2f} |")
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
                                    "ceiling_gflops": ceil, "engine_ceiling_gflops": e_ceil,
                                    "parity_rel": parity["rel"],
                                    "parity_max_abs": parity["max_abs"],
                                    "engine_p99_over_p50": parity["engine_tails"],
                                    "load_after": os.getloadavg()[0]})
        end_load = os.getloadavg()
        if a.rounds >= 2:
            # Each round runs the sides back to back, so their ratio within a
            # round cancels the machine's drift between rounds.
            print("\nper-round ratios (median over rounds of the ratio within a round):")
            for r in records:
                e, o, v = r["engine_round_ms"], r["ort_round_ms"], r["variant_round_ms"]
                line = (f"  {r['model']} batch {r['batch']} threads {r['threads']}: engine/ORT "
                        f"{statistics.median(y / x for x, y in zip(e, o)):.2f}")
                if v:
                    line += (f", variant/engine "
                             f"{statistics.median(x / y for x, y in zip(e, v)):.2f}, "
                             f"variant/ORT {statistics.median(y / x for x, y in zip(v, o)):.2f}")
                print(line)
        print(f"\nISA: {isa}. Spread = slowest / fastest round median of a side (run-to-run "
              f"stability; needs --rounds >= 2). Engine p99/p50: the median over its rounds "
              f"(ORT's bench reports no p99).")
        print(f"{started}, load average {load[0]:.1f} at start, {end_load[0]:.1f} at end; "
              f"{a.rounds} alternating "
              f"round(s) x {a.iters} timed runs ({a.warmup} warm-up) per side; ceilings: "
              f"engine {', '.join(f'{t}T {c:.0f}' for t, c in engine_ceilings.items())} "
              f"GFLOP/s ({'the AVX2 loop, ONEDNN_MAX_CPU_ISA' if capped else 'the widest FMA loop'}"
              f"), ONNX Runtime {', '.join(f'{t}T {c:.0f}' for t, c in ceilings.items())} "
              f"GFLOP/s ({'the AVX2 loop, held to AVX2' if ort_avx2 else 'the widest FMA loop'})")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"started": started, "load_at_start": load, "load_at_end": end_load,
                           "isa": isa, "engine_capped": capped, "ort_held_to_avx2": ort_avx2,
                           "ceilings": ceilings, "engine_ceilings": engine_ceilings,
                           "args": vars(a), "results": records}, f, indent=1)
    except zoo.ParityError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
