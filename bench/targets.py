#!/usr/bin/python3
"""The performance targets of docs/PERFORMANCE.md, measured and judged in one run.

  make bench-targets                       # everything: about 30 minutes on 2 CPUs
  bench/targets.py --build build [--json FILE] [--quick]

Runs the existing side-by-side tools one after the other and checks each
figure against its target:

  1. Engine vs ONNX Runtime (bench/compare/compare.py), 2 threads, batch 1
     and 8: engine/ORT throughput, the median over rounds of the ratio within
     a round, at least 1.2 for ResNet-50 and the YOLOv8n-sized detector, 1.3
     for MobileNetV2 and EfficientNet-B0; ResNet-50 at batch 8 at least 75% of
     the FMA ceiling measured in the same run (counting a direct
     convolution's FLOPs: Winograd layers do fewer, so the share can pass 100%).
  2. Through the server's ModelInfer at batch 8, transfer included
     (bench/server/server_vs_ort.py): server/ORT at least 1.1.
  3. The server at saturation keeps at least 90% of the engine's throughput
     (bench/server/server_vs_engine.sh) on the default models and ResNet-50.
  4. Stability at batch 1, 2 threads, over --stability-rounds consecutive
     engine processes of --stability-iters timed runs each (compare.py
     rounds): slowest / fastest process p50 at most 1.15, and the median
     process's p99/p50 at most 1.2 (the worst is printed too; with 10 runs a
     process's p99 is its slowest run).

A part that fails (a tool's error, a parity failure) shows as "failed" in
the table, the other parts still run, and the exit status is 1.

The targets are judged on a CPU without AVX-512. On an AVX-512 CPU the run
says "not judged" in every verdict's place of "met"/"missed" and gives the
figures anyway. Under ONEDNN_MAX_CPU_ISA=AVX2 both runtimes run their AVX2
kernels (the engine by oneDNN's cap, ONNX Runtime as a copy of its pinned
library whose CPU checks report no AVX-512: tools/parity/zoo.py), and the
verdicts read "not judged (AVX2 proxy: met)" or "... missed)".
RECTIFIER_ORT_ISA=native keeps ONNX Runtime's own library (AVX-512 against
the capped engine: compare.py prints both FMA ceilings).

--quick: one small model (mobilenet_v3_small, no targets of its own), short
rounds and one default model, to check that every part runs (ctest
bench_targets_smoke); its figures mean nothing.
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

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
import zoo  # noqa: E402

# Engine/ORT throughput at batch 1 and 8, 2 threads.
ENGINE_TARGETS = {"resnet50": 1.2, "yolo_like": 1.2, "mobilenet_v2": 1.3, "efficientnet_b0": 1.3}
CEILING_TARGET = ("resnet50", 8, 0.75)  # model, batch, share of the FMA ceiling
SERVER_TARGET = 1.1                     # server/ORT through ModelInfer at batch 8
SATURATION_TARGET = 0.90                # server / engine throughput
SPREAD_TARGET = 1.15                    # slowest / fastest run p50
TAIL_TARGET = 1.2                       # p99 / p50 of every run
DEFAULT_MODELS = ["resnet50", "yolo_like", "mobilenet_v2", "efficientnet_b0"]
SATURATION_MODELS = ["road_detector", "scan_classifier", "scan_segmenter", "resnet50"]
# Inputs with dynamic dimensions get this size (server_vs_engine.sh SHAPE).
SATURATION_SHAPES = {"scan_segmenter": "image:1,128,128"}


def cpu():
    """(model name from /proc/cpuinfo, has AVX-512)."""
    name = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    return name, zoo.cpu_has_avx512()


def run(cmd, log, env=None):
    """Runs `cmd`, echoing its output into `log`; returns the output."""
    print("$ " + " ".join(cmd), file=log, flush=True)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          cwd=ROOT, env=env)
    log.write(proc.stdout)
    log.flush()
    if proc.returncode != 0:
        raise zoo.ParityError(f"{' '.join(cmd)} exited with {proc.returncode}:\n{proc.stdout}")
    return proc.stdout


def round_ratio(engine_ms, ort_ms):
    """Median over rounds of ORT ms / engine ms within the round (> 1: engine faster)."""
    return statistics.median(o / e for e, o in zip(engine_ms, ort_ms))


class Verdicts:
    def __init__(self, judged, proxy=False):
        self.judged = judged
        self.proxy = proxy  # both runtimes held to AVX2 on a CPU with AVX-512
        self.rows = []

    def add(self, target, subject, measured, goal, met):
        if self.judged:
            verdict = "met" if met else "**missed**"
        elif self.proxy:
            verdict = f"not judged (AVX2 proxy: {'met' if met else 'missed'})"
        else:
            verdict = "not judged"
        self.rows.append({"target": target, "subject": subject, "measured": measured,
                          "goal": goal, "met": met, "verdict": verdict})
        print(f"| {target} | {subject} | {measured} | {goal} | {verdict} |", flush=True)


def engine_part(a, tmp, log, v):
    out = os.path.join(tmp, "compare.json")
    run(["/usr/bin/python3", os.path.join(HERE, "compare", "compare.py"), "--build", a.build,
         "--models", *a.models, "--batches", "1", "8", "--threads", "2",
         "--rounds", str(a.rounds), "--iters", str(a.iters), "--warmup", str(a.warmup),
         "--json", out], log)
    data = json.load(open(out))
    for r in data["results"]:
        ratio = round_ratio(r["engine_round_ms"], r["ort_round_ms"])
        goal = ENGINE_TARGETS.get(r["model"])
        v.add("engine vs ORT", f"{r['model']}, batch {r['batch']}", f"{ratio:.2f}",
              f">= {goal}" if goal else "(none)", goal is None or ratio >= goal)
        if (r["model"], r["batch"]) == CEILING_TARGET[:2]:
            gflops = 2.0 * r["macs_per_image"] * r["batch"] / (r["engine_ms"] * 1e-3) / 1e9
            share = gflops / r["engine_ceiling_gflops"]
            v.add("share of the FMA ceiling", f"{r['model']}, batch {r['batch']}",
                  f"{100 * share:.0f}% ({gflops:.0f} of {r['engine_ceiling_gflops']:.0f} GFLOP/s"
                  f" in direct-convolution FLOPs)",
                  f">= {100 * CEILING_TARGET[2]:.0f}%", share >= CEILING_TARGET[2])
    return data


def server_part(a, tmp, log, v):
    out = os.path.join(tmp, "server_vs_ort.json")
    run(["/usr/bin/python3", os.path.join(HERE, "server", "server_vs_ort.py"), "--build",
         a.build, "--models", *a.models, "--batch", str(a.server_batch), "--threads", "2",
         "--rounds", str(a.rounds), "--window-s", str(a.window_s), "--json", out], log)
    data = json.load(open(out))
    for r in data["results"]:
        v.add("server vs ORT (ModelInfer)", f"{r['model']}, batch {r['batch']}",
              f"{r['server_over_ort']:.2f}", f">= {SERVER_TARGET}",
              r["server_over_ort"] >= SERVER_TARGET)
    return data


def saturation_part(a, log, v):
    results = []
    for model in a.saturation_models:
        env = dict(os.environ, THREADS="2", ITERATIONS=str(a.engine_iterations),
                   SHAPE=SATURATION_SHAPES.get(model, ""))
        target = model if os.path.isdir(os.path.join(ROOT, "models", model)) else \
            zoo.zoo_model(model)
        text = run(["bash", os.path.join(HERE, "server", "server_vs_engine.sh"), a.build, target,
                    str(a.concurrency)], log, env=env)
        engine = re.search(r"engine: ([0-9.]+) img/s", text)
        best = re.search(r"server best \(c=(\d+)\): ([0-9.]+) infer/s = (\d+)% of the engine", text)
        if not engine or not best:
            raise zoo.ParityError(f"server_vs_engine.sh {model}: no summary in:\n{text}")
        share = float(best.group(2)) / float(engine.group(1))
        results.append({"model": model, "engine_ips": float(engine.group(1)),
                        "server_ips": float(best.group(2)), "concurrency": int(best.group(1)),
                        "share": share})
        v.add("server / engine at saturation",
              model + (f" ({SATURATION_SHAPES[model]})" if model in SATURATION_SHAPES else ""),
              f"{100 * share:.0f}% ({float(best.group(2)):.0f} of {float(engine.group(1)):.0f}"
              f" img/s, c={best.group(1)})", f">= {100 * SATURATION_TARGET:.0f}%",
              share >= SATURATION_TARGET)
    return results


def stability_part(a, tmp, log, v):
    out = os.path.join(tmp, "stability.json")
    run(["/usr/bin/python3", os.path.join(HERE, "compare", "compare.py"), "--build", a.build,
         "--models", *a.models, "--batches", "1", "--threads", "2",
         "--rounds", str(a.stability_rounds), "--iters", str(a.stability_iters), "--warmup", "1",
         "--json", out],
        log)
    data = json.load(open(out))
    for r in data["results"]:
        runs = r["engine_round_ms"]
        spread = max(runs) / min(runs)
        v.add("run-to-run spread (engine p50s)", f"{r['model']}, batch 1, {len(runs)} runs",
              f"{spread:.2f} (ORT {max(r['ort_round_ms']) / min(r['ort_round_ms']):.2f})",
              f"<= {SPREAD_TARGET}", spread <= SPREAD_TARGET)
        tails = r.get("engine_p99_over_p50") or [float("nan")]
        median = statistics.median(tails)
        v.add("p99/p50 (engine)", f"{r['model']}, batch 1",
              f"{median:.2f} median run, {max(tails):.2f} worst", f"<= {TAIL_TARGET}",
              median <= TAIL_TARGET)
    return data


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default="build")
    p.add_argument("--models", nargs="+", default=DEFAULT_MODELS,
                   help="zoo models for the engine, server and stability parts")
    p.add_argument("--saturation-models", nargs="+", default=SATURATION_MODELS,
                   help="default model directories under models/ or zoo names")
    p.add_argument("--rounds", type=int, default=3, help="alternating rounds, parts 1 and 2")
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--server-batch", type=int, default=8)
    p.add_argument("--window-s", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=16,
                   help="server_vs_engine.sh: concurrency 1 and this")
    p.add_argument("--engine-iterations", type=int, default=200,
                   help="server_vs_engine.sh: engine runs (ResNet-50: 40)")
    p.add_argument("--stability-rounds", type=int, default=20)
    p.add_argument("--stability-iters", type=int, default=10,
                   help="timed runs per engine process in the stability part")
    p.add_argument("--parts", nargs="+", default=["engine", "server", "saturation", "stability"],
                   choices=["engine", "server", "saturation", "stability"])
    p.add_argument("--log", help="the tools' own output (default: a file in /tmp, named at the end)")
    p.add_argument("--json", help="also write the verdicts and every figure to this file")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: mobilenet_v3_small, short rounds, scan_classifier only")
    a = p.parse_args()
    if a.quick:
        a.models, a.saturation_models = ["mobilenet_v3_small"], ["scan_classifier"]
        a.rounds, a.iters, a.warmup, a.stability_rounds, a.stability_iters = 2, 2, 1, 2, 5
        a.server_batch, a.window_s, a.concurrency, a.engine_iterations = 2, 0.5, 4, 20
    name, avx512 = cpu()
    capped = os.environ.get("ONEDNN_MAX_CPU_ISA", "")
    judged = not avx512
    try:
        ort_avx2 = zoo.ort_held_to_avx2()
    except zoo.ParityError as e:
        print(f"targets: {e}", file=sys.stderr)
        return 1
    proxy = avx512 and ort_avx2 and zoo.engine_capped_below_avx512()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"CPU: {name}, {'AVX-512' if avx512 else 'AVX2 only (no AVX-512)'}, "
          f"{os.cpu_count()} CPUs; ONEDNN_MAX_CPU_ISA={capped or 'unset'}; ONNX Runtime "
          f"{'held to AVX2' if ort_avx2 else 'as installed'}; {started}")
    print("Judged: " + ("yes (a CPU without AVX-512)" if judged else
                        "no, this CPU has AVX-512 (the targets are judged without it); "
                        + ("both runtimes held to AVX2, verdicts as a proxy" if proxy else
                           "figures only")) + "\n")
    print("| target | model | measured | goal | verdict |\n| --- | --- | --- | --- | --- |",
          flush=True)
    log_path = a.log or os.path.join(tempfile.gettempdir(), f"bench-targets-{os.getpid()}.log")
    v = Verdicts(judged, proxy)
    figures, failed = {}, []
    try:
        zoo.check_peer()
    except zoo.ParityError as e:
        print(f"targets: {e}", file=sys.stderr)
        return 1
    parts = {"engine": lambda tmp, log: engine_part(a, tmp, log, v),
             "server": lambda tmp, log: server_part(a, tmp, log, v),
             "saturation": lambda tmp, log: saturation_part(a, log, v),
             "stability": lambda tmp, log: stability_part(a, tmp, log, v)}
    with open(log_path, "w") as log, tempfile.TemporaryDirectory(prefix="targets_") as tmp:
        for part in (p for p in parts if p in a.parts):
            # A failed part (a tool's error, a parity failure) is reported and
            # the others still run: half an hour is not thrown away for one.
            try:
                figures[part] = parts[part](tmp, log)
            except zoo.ParityError as e:
                failed.append(part)
                print(f"| {part} part | failed, see below | | | |", flush=True)
                print(f"targets: {part} part: {e}", file=sys.stderr, flush=True)
    with_goal = [r for r in v.rows if r["goal"] != "(none)"]
    missed = [r for r in with_goal if not r["met"]]
    print(f"\n{len(with_goal) - len(missed)} of {len(with_goal)} figures with a target reach it"
          + ("" if judged else " (AVX2 proxy, not judged on this CPU)" if proxy
             else " (not judged on this CPU)")
          + f"; the tools' output: {log_path}; ended "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"cpu": name, "avx512": avx512, "onednn_max_cpu_isa": capped,
                       "ort_held_to_avx2": ort_avx2, "judged": judged, "proxy": proxy,
                       "started": started, "args": vars(a),
                       "verdicts": v.rows, "figures": figures, "failed_parts": failed}, f,
                      indent=1)
    if failed:
        print(f"failed parts: {', '.join(failed)} (their output: {log_path})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
