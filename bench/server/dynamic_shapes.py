#!/usr/bin/python3
"""Dynamic height and width through rectifier-server (docs/PERFORMANCE.md).

One model with dynamic height and width (default: LR-ASPP MobileNetV3, the
zoo's lraspp_mobilenet_v3_large_dyn) served twice, with and without warm-up
shapes, measured in one run:

1. First request at a new shape: the first ModelInfer at each of --shapes
   (which compiles its plan) against the next one at the same shape (which
   finds it), on a server whose config lists no warm-up shapes, then on one
   whose model_warmup lists them (compiled at load).
2. A stream of requests at random shapes (height and width drawn from
   --random-sides) against the same number at one fixed shape (the median
   side), back to back, one client: requests and megapixels per second, and
   the plan cache's hit rate read from the server's Prometheus metrics
   (rectifier_plan_cache_hits_total / _misses_total).

3. Batching across shapes (--batching-zoo, default MobileNetV3-small with
   dynamic height and width, `dynamic_batching { max_queue_delay_microseconds:
   2000 }`, max batch 8): --clients concurrent clients send requests whose
   shapes are 70% 224x224, 20% 192x256 and 10% drawn from 8 others, then the
   same number all at 224x224. The batcher batches identical shapes only;
   ModelStatistics' batch_stats give the mean batch size of each load.

The client is Python (grpcio): each call also carries the input and the
output over loopback, which this measures too.

  bench/server/dynamic_shapes.py --server build/server/rectifier-server
"""
import argparse
import os
import random
import re
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tools", "parity"))
sys.path.insert(0, os.path.join(ROOT, "tools", "soak"))
import zoo  # noqa: E402
from server_parity import infer  # noqa: E402
from soak import generate_stubs, import_stubs  # noqa: E402


def start(binary, repo, workdir, tag):
    import subprocess
    log = open(os.path.join(workdir, f"server-{tag}.log"), "w+")
    t0 = time.monotonic()
    server = subprocess.Popen([binary, "--model-repository", repo, "--grpc-address",
                               "127.0.0.1:0", "--metrics-address", "127.0.0.1:0",
                               "--http-address", ""], stdout=log, stderr=subprocess.STDOUT)
    grpc_port = metrics_port = None
    while time.monotonic() - t0 < 300 and server.poll() is None and grpc_port is None:
        time.sleep(0.05)
        log.seek(0)
        text = log.read()
        m = re.search(r"serving gRPC on port (\d+)", text)
        grpc_port = m and int(m.group(1))
        m = re.search(r"metrics on port (\d+)", text)
        metrics_port = m and int(m.group(1))
    if grpc_port is None:
        log.seek(0)
        raise RuntimeError("server did not start: " + log.read()[-3000:])
    return server, grpc_port, metrics_port, time.monotonic() - t0, log


def scrape(port, name, model):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    m = re.search(r'^%s\{model="%s",version="1"\} ([0-9.e+]+)$' % (name, model), text, re.M)
    return float(m.group(1)) if m else float("nan")


def write_repo(repo, model_path, warm_shapes):
    os.makedirs(os.path.join(repo, "seg", "1"))
    os.symlink(os.path.abspath(model_path), os.path.join(repo, "seg", "1", "model.onnx"))
    config = "max_batch_size: 4\nengine { max_cached_plans: 256 }\n"
    for i, shape in enumerate(warm_shapes):
        dims = ", ".join(map(str, shape[1:]))
        config += (f'model_warmup {{ name: "w{i}" batch_size: {shape[0]} inputs {{ key: "input" '
                   f'value {{ data_type: TYPE_FP32 dims: [ {dims} ] zero_data: true }} }} }}\n')
    with open(os.path.join(repo, "seg", "config.pbtxt"), "w") as f:
        f.write(config)


_INPUTS = {}


def timed(stub, pb, shape):
    return timed_model(stub, pb, "seg", shape)


def timed_model(stub, pb, model, shape):
    key = tuple(shape)
    if key not in _INPUTS:
        _INPUTS[key] = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = _INPUTS[key]
    t0 = time.perf_counter()
    infer(stub, pb, model, "input", x)
    return (time.perf_counter() - t0) * 1e3


def write_batching_repo(repo, model_path):
    os.makedirs(os.path.join(repo, "cls", "1"))
    os.symlink(os.path.abspath(model_path), os.path.join(repo, "cls", "1", "model.onnx"))
    with open(os.path.join(repo, "cls", "config.pbtxt"), "w") as f:
        f.write("max_batch_size: 8\ndynamic_batching { max_queue_delay_microseconds: 2000 }\n"
                "engine { max_cached_plans: 256 }\n")


def batch_counts(stub, pb):
    """{batch size: executions} from ModelStatistics."""
    stats = stub.ModelStatistics(pb.ModelStatisticsRequest(name="cls"), timeout=30)
    return {b.batch_size: b.compute_infer.count for b in stats.model_stats[0].batch_stats}


def batching(stub, pb, clients, requests):
    """Mean batch size of a mixed-shape load and of a one-shape load, same clients."""
    import concurrent.futures
    rng = random.Random(7)
    others = [[1, 3, h, w] for h, w in ((160, 160), (160, 224), (224, 160), (256, 256),
                                        (192, 192), (256, 192), (224, 288), (288, 224))]

    def mixed():
        r = rng.random()
        return [1, 3, 224, 224] if r < 0.7 else [1, 3, 192, 256] if r < 0.9 else rng.choice(others)

    results = []
    for name, picks in (("mixed shapes", [mixed() for _ in range(requests)]),
                        ("one shape", [[1, 3, 224, 224]] * requests)):
        for shape in {tuple(p) for p in picks}:  # compile first: this measures batching
            timed_model(stub, pb, "cls", list(shape))
        before = batch_counts(stub, pb)
        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda shape: timed_model(stub, pb, "cls", shape), picks))
        took = time.perf_counter() - t0
        after = batch_counts(stub, pb)
        runs = {b: after.get(b, 0) - before.get(b, 0) for b in after}
        executions = sum(runs.values())
        images = sum(b * n for b, n in runs.items())
        histogram = ", ".join(f"{b}: {n}" for b, n in sorted(runs.items()) if n)
        results.append(f"  {name}: {requests} requests from {clients} clients in {took:.2f} s "
                       f"({requests / took:.1f} req/s), {executions} executions, mean batch "
                       f"{images / max(executions, 1):.2f} (batch size: executions {histogram})")
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True)
    p.add_argument("--zoo", default="lraspp_mobilenet_v3_large_dyn")
    p.add_argument("--shapes", nargs="+", default=["1x3x224x224", "1x3x256x320", "1x3x320x256"])
    p.add_argument("--random-sides", nargs="+", type=int, default=[160, 192, 224, 256])
    p.add_argument("--requests", type=int, default=60)
    p.add_argument("--batching-zoo", default="mobilenet_v3_small_dyn")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--batching-requests", type=int, default=400)
    a = p.parse_args()
    shapes = [[int(d) for d in s.split("x")] for s in a.shapes]
    import grpc
    model = zoo.zoo_model(a.zoo)
    tmp = tempfile.mkdtemp(prefix="dynamic_shapes_")
    try:
        generate_stubs(os.path.join(tmp, "gen"))
        pb, pb_grpc, _, _ = import_stubs(os.path.join(tmp, "gen"))
        for tag, warm in (("no warm-up shapes", []), ("warm-up shapes", shapes)):
            repo = os.path.join(tmp, f"repo-{len(warm)}")
            write_repo(repo, model, warm)
            server, port, metrics_port, ready_s, log = start(a.server, repo, tmp, len(warm))
            try:
                with grpc.insecure_channel(f"127.0.0.1:{port}", options=[
                        ("grpc.max_receive_message_length", -1)]) as channel:
                    stub = pb_grpc.GRPCInferenceServiceStub(channel)
                    # Connect first: the first call on a channel also pays the
                    # connection, which is not what this measures.
                    stub.ModelMetadata(pb.ModelMetadataRequest(name="seg"), timeout=30)
                    print(f"== {tag}: server ready in {ready_s:.1f} s")
                    for shape in shapes:
                        first = timed(stub, pb, shape)
                        second = statistics.median(timed(stub, pb, shape) for _ in range(3))
                        print(f"  {'x'.join(map(str, shape))}: first request {first:.1f} ms, "
                              f"then {second:.1f} ms (median of 3)")
                    if warm:
                        continue
                    rng = random.Random(1)
                    mid = sorted(a.random_sides)[len(a.random_sides) // 2]
                    fixed = [1, 3, mid, mid]
                    h0 = scrape(metrics_port, "rectifier_plan_cache_hits_total", "seg")
                    m0 = scrape(metrics_port, "rectifier_plan_cache_misses_total", "seg")
                    for name, pick in (
                            ("random shapes", lambda: [1, 3, rng.choice(a.random_sides),
                                                       rng.choice(a.random_sides)]),
                            ("fixed shape", lambda: fixed)):
                        picks = [pick() for _ in range(a.requests)]
                        t0 = time.perf_counter()
                        for shape in picks:
                            timed(stub, pb, shape)
                        took = time.perf_counter() - t0
                        mpix = sum(s[2] * s[3] for s in picks) / 1e6
                        print(f"  {name}: {a.requests} requests in {took:.2f} s, "
                              f"{a.requests / took:.1f} req/s, {mpix / took:.2f} Mpixel/s")
                    h1 = scrape(metrics_port, "rectifier_plan_cache_hits_total", "seg")
                    m1 = scrape(metrics_port, "rectifier_plan_cache_misses_total", "seg")
                    compiles = scrape(metrics_port, "rectifier_plan_compiles_total", "seg")
                    hits, misses = h1 - h0, m1 - m0
                    print(f"  plan cache over both streams: {hits:.0f} hits, {misses:.0f} misses "
                          f"(hit rate {hits / max(hits + misses, 1):.2f}), {compiles:.0f} plans "
                          f"compiled since load")
            finally:
                server.send_signal(signal.SIGTERM)
                server.wait(timeout=60)
                log.close()
        repo = os.path.join(tmp, "repo-batching")
        write_batching_repo(repo, zoo.zoo_model(a.batching_zoo))
        server, port, _, _, log = start(a.server, repo, tmp, "batching")
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = pb_grpc.GRPCInferenceServiceStub(channel)
                print(f"== batching across shapes ({a.batching_zoo})")
                for line in batching(stub, pb, a.clients, a.batching_requests):
                    print(line)
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
            log.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
