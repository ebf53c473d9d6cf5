#!/usr/bin/env python3
"""Through the server vs ONNX Runtime: a zoo model served by rectifier-server,
driven over KServe ModelInfer by rectifier-perf (closed loop, concurrency 1,
one batch of B random FP32 images per request, loopback transfer included),
alternated round by round with ONNX Runtime 1.30 in-process
(bench/peer/ort_bench.js) at the same batch and thread count.

  bench/server/server_vs_ort.py [--build build] [--models resnet50 ...]
      [--batch 8] [--threads 2] [--rounds 3] [--window-s 3] [--shared-memory]
      [--json FILE]

--shared-memory adds a third side each round: the same server with the
inputs passed through client shared memory (rectifier-server
--allow-client-shm, rectifier-perf --shared-memory system).

The server gets a one-model repository per model: max_batch_size B, no
dynamic batching (each request is one batch), intra_op_threads T, a warm-up
at batch B (the plan, and its conv layout tuning, compile at load) and a
tuning cache in a scratch folder. Prints images/s per side and the
per-round ratio server/ORT (median over rounds), the target of
docs/PERFORMANCE.md being >= 1.1 at batch 8. Under ONEDNN_MAX_CPU_ISA=AVX2
(the server's engine) ONNX Runtime is held to AVX2 too, as in
bench/compare/compare.py (RECTIFIER_ORT_ISA).
"""
import argparse
import csv
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "compare"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools", "parity"))
import compare  # noqa: E402  (ort_round, write_input)
import zoo  # noqa: E402

import onnx  # noqa: E402


def repository(tmp, name, model, batch, threads):
    """A one-model repository for `model` in `tmp`; returns its root."""
    root = os.path.join(tmp, "repo")
    os.makedirs(os.path.join(root, name, "1"))
    os.symlink(os.path.abspath(model), os.path.join(root, name, "1", "model.onnx"))
    (in_name, _, dims), = zoo.graph_inputs(onnx.load(model, load_external_data=False))
    per_image = ", ".join(str(d) for d in dims[1:])
    with open(os.path.join(root, name, "config.pbtxt"), "w") as f:
        f.write(f'max_batch_size: {batch}\n'
                f'parameters {{ key: "intra_op_threads" value {{ string_value: "{threads}" }} }}\n'
                f'model_warmup [ {{ name: "batch" batch_size: {batch} inputs {{ key: "{in_name}" '
                f'value {{ data_type: TYPE_FP32 dims: [ {per_image} ] random_data: true }} }} }} ]\n')
    return root


def start_server(build, root, tmp, shm=False):
    log_path = os.path.join(tmp, "server.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([os.path.join(build, "server", "rectifier-server"),
                             "--model-repository", root, "--grpc-address", "127.0.0.1:0",
                             "--http-address", "", "--metrics-address", "",
                             "--tuning-cache-dir", os.path.join(tmp, "tuning")] +
                            (["--allow-client-shm"] if shm else []),
                            stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        m = re.search(r"serving gRPC on port (\d+)", open(log_path).read())
        if m:
            return proc, int(m.group(1))
    proc.kill()
    raise zoo.ParityError("server did not start:\n" + open(log_path).read())


def server_round(build, port, name, batch, window_s, tmp, shm=False):
    """Images/s and p50 ms of one rectifier-perf level (concurrency 1);
    `shm`: the inputs through client shared memory."""
    out = os.path.join(tmp, "perf.csv")
    proc = subprocess.run([os.path.join(build, "tools", "perf", "rectifier-perf"), "-m", name,
                           "-u", f"127.0.0.1:{port}", "-b", str(batch), "--concurrency", "1",
                           "--window-s", str(window_s), "--max-windows", "4", "--csv", out] +
                          (["--shared-memory", "system"] if shm else []),
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0 or not os.path.exists(out):
        raise zoo.ParityError(f"rectifier-perf failed on {name}:\n{proc.stdout}")
    row = list(csv.DictReader(open(out)))[-1]
    # infer/s counts inferences (images), as perf_analyzer does, not requests.
    return float(row["throughput_infer_per_s"]), float(row["p50_ms"])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--build", default="build")
    p.add_argument("--models", nargs="+",
                   default=["resnet50", "mobilenet_v2", "efficientnet_b0", "yolo_like"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--window-s", type=float, default=3.0)
    p.add_argument("--iters", type=int, default=6, help="ONNX Runtime timed runs per round")
    p.add_argument("--shared-memory", action="store_true",
                   help="also a round with the inputs through client shared memory "
                        "(rectifier-perf --shared-memory system) per round")
    p.add_argument("--json", help="also write every round's figures to this file")
    a = p.parse_args()
    records = []
    try:
        zoo.check_peer()
        shm_cols = " shm img/s (median) | shm/ORT (per-round median) |" if a.shared_memory else ""
        print("| model | batch | threads | server img/s (median) | server p50 ms | ORT img/s "
              "(median) | server/ORT (per-round median) |" + shm_cols)
        print("| --- " * (9 if a.shared_memory else 7) + "|", flush=True)
        for name in a.models:
            model = zoo.zoo_model(name)
            with tempfile.TemporaryDirectory(prefix="server_vs_ort_") as tmp:
                root = repository(tmp, name, model, a.batch, a.threads)
                server, port = start_server(a.build, root, tmp, a.shared_memory)
                try:
                    array, _, inp_bin = compare.write_input(model, a.batch, 2026, tmp)
                    srv, ort, p50s, shm = [], [], [], []
                    for _ in range(a.rounds):
                        ips, p50 = server_round(a.build, port, name, a.batch, a.window_s, tmp)
                        srv.append(ips)
                        p50s.append(p50)
                        if a.shared_memory:
                            shm.append(server_round(a.build, port, name, a.batch, a.window_s,
                                                    tmp, shm=True)[0])
                        ms, _ = compare.ort_round(model, inp_bin, tmp, a.batch, a.threads,
                                                  a.iters, 2, array.shape[1:])
                        ort.append(a.batch * 1000.0 / ms)
                finally:
                    server.terminate()
                    server.wait(timeout=60)
            ratio = statistics.median(s / o for s, o in zip(srv, ort))
            records.append({"model": name, "batch": a.batch, "threads": a.threads,
                            "server_round_ips": srv, "server_round_p50_ms": p50s,
                            "ort_round_ips": ort, "shm_round_ips": shm,
                            "server_over_ort": ratio})
            extra = ""
            if a.shared_memory:
                extra = (f" {statistics.median(shm):.1f} | "
                         f"{statistics.median(s / o for s, o in zip(shm, ort)):.2f} |")
            print(f"| {name} | {a.batch} | {a.threads} | {statistics.median(srv):.1f} | "
                  f"{statistics.median(p50s):.1f} | {statistics.median(ort):.1f} | "
                  f"{ratio:.2f} |" + extra, flush=True)
        print(f"\n{a.rounds} alternating round(s); server: rectifier-perf windows of "
              f"{a.window_s:g} s at concurrency 1 (ModelInfer, random FP32, loopback); "
              f"ORT: {a.iters} timed runs in process"
              + (", held to AVX2" if zoo.ort_held_to_avx2() else "")
              + f". {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        if a.json:
            with open(a.json, "w") as f:
                json.dump({"args": vars(a), "results": records}, f, indent=1)
    except zoo.ParityError as e:
        print(f"server_vs_ort: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
