#!/usr/bin/env python3
"""Markdown table from activations_bench JSON output (docs/ACTIVATIONS.md).

Usage: table.py [--cpu] run1.json [run2.json ...]
Every benchmark's time is the minimum real time (--cpu: main-thread CPU
time, meaningful with OMP_NUM_THREADS=1 on a busy machine) over all
repetitions of all given runs (the least disturbed one). Columns:
  standalone Gelem/s, and its time relative to a plain copy of the same bytes
  (memcpy over the same threads; 1.0x = at the memory-bandwidth limit);
  conv 3x3 + activation fused (post-op): time relative to the bare conv;
  conv then the activation as a separate primitive: time relative to the
  bare conv, and unfused / fused.
"""
import json
import sys


def load(paths, key):
    best = {}
    context = None
    for path in paths:
        with open(path) as f:
            data = json.load(f)
        context = context or data.get("context", {})
        for b in data["benchmarks"]:
            if b.get("run_type", "iteration") != "iteration" or "error_occurred" in b:
                continue
            name = b.get("run_name", b["name"]).replace("/real_time", "")
            b["t"] = b[key]
            if name not in best or b["t"] < best[name]["t"]:
                best[name] = b
    return best, context


def main():
    args = sys.argv[1:]
    key = "real_time"
    if args and args[0] == "--cpu":
        key = "cpu_time"
        args = args[1:]
    best, context = load(args, key)
    # Throughput from the chosen time (items per iteration / time).
    scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}
    for b in best.values():
        per_iter = b["items_per_second"] * b["real_time"] * scale[b["time_unit"]] \
            if "items_per_second" in b else 0
        b["gelem"] = per_iter / (b["t"] * scale[b["time_unit"]]) / 1e9
    copy = best["BM_Copy/memcpy"]
    bare = best.get("BM_ConvBare")
    unit = copy["time_unit"]
    print(f"Copy (memcpy) {copy['gelem']:.2f} Gelem/s, "
          f"oneDNN reorder {best['BM_Copy/reorder']['gelem']:.2f} Gelem/s; "
          f"bare conv {bare['t'] * scale[unit] * 1e3:.2f} ms ({key}). "
          f"omp_threads={context.get('omp_threads', '?')}, "
          f"host={context.get('host_name', '?')}, load_avg={context.get('load_avg', '?')}")
    print()
    print("| Activation | standalone Gelem/s | vs copy | conv+act fused vs bare conv "
          "| conv, then act separately, vs bare conv | unfused / fused |")
    print("|---|---:|---:|---:|---:|---:|")
    names = [n.split("/", 1)[1] for n in best if n.startswith("BM_Standalone/")]
    for name in names:
        s = best[f"BM_Standalone/{name}"]
        row = [name, f"{s['gelem']:.2f}",
               f"{s['t'] / copy['t']:.2f}x"]
        fused = best.get(f"BM_ConvFused/{name}")
        unfused = best.get(f"BM_ConvUnfused/{name}")
        row.append(f"{(fused['t'] / bare['t'] - 1) * 100:+.0f}%" if fused else "n/a")
        row.append(f"{(unfused['t'] / bare['t'] - 1) * 100:+.0f}%"
                   if unfused else "n/a")
        row.append(f"{unfused['t'] / fused['t']:.2f}x"
                   if fused and unfused else "n/a")
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
