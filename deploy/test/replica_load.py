#!/usr/bin/python3
"""Load through nginx in front of two replicas, killing one mid-load, with the
documented client retry policy; then accounts for every request.

Started by deploy/test/replicas-nginx.sh, which runs replica A (serving model
`double` as version 1) and replica B (the same model as version 2) behind
nginx. Both compute y = 2x, so every answer says which replica computed it
(its model_version) and whether it is the answer to this request (each
request i sends x = i + 0.25, so y must be 2i + 0.5 everywhere).

Client retry policy (docs/DEPLOYMENT.md, "Two replicas behind nginx"): a call
that fails with UNAVAILABLE got no response, so it is sent again through
nginx (which routes it to a live replica), up to 8 attempts with 50 ms x
attempt back-off; any other error is final. Nothing is retried after a
response arrived.

Accounting (asserted):
  - every request i got exactly one answer, and it is 2x its own input;
  - no request failed for good, and every retried attempt failed UNAVAILABLE;
  - both replicas answered before the kill, and every attempt sent after A
    was dead (SIGKILL delivered, /proc shows it gone or a zombie) was answered
    by B;
  - B, alive at the end, executed exactly the requests it answered: its
    ModelStatistics inference_count (direct to B) and its
    rectifier_inferences_total both equal the answers that came from B;
  - A's inference count read just before the SIGKILL is at most the answers
    that came from A (it cannot have answered what it had not computed), and
    A computed at most (answers from A) + (attempts that failed on A) requests:
    only those could have run twice (once on A with the answer lost, once on B).
Prints a JSON summary on the last line.
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def generate_stubs(out):
    proto = os.path.join(ROOT, "proto")
    subprocess.check_call(["protoc", "-I", proto, "--python_out", out, "--grpc_python_out", out,
                           "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin",
                           os.path.join(proto, "grpc_service.proto"),
                           os.path.join(proto, "model_config.proto")])
    sys.path.insert(0, out)


def scrape_inferences(metrics_url, version):
    text = urllib.request.urlopen(metrics_url, timeout=5).read().decode()
    pattern = r'^rectifier_inferences_total\{model="double",version="%s"\} (\S+)$' % version
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else None


def wait_dead(pid, timeout=10.0):
    """Returns once `pid` no longer runs (gone, or a zombie awaiting its parent)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return
        except (FileNotFoundError, ProcessLookupError):
            # Gone between the open and the read: the kernel answers ESRCH.
            return
        time.sleep(0.001)
    raise RuntimeError(f"process {pid} still runs {timeout} s after SIGKILL")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--nginx", required=True, help="host:port of nginx")
    parser.add_argument("--b-grpc", required=True, help="host:port of replica B (statistics)")
    parser.add_argument("--a-metrics", required=True)
    parser.add_argument("--b-metrics", required=True)
    parser.add_argument("--a-pid", type=int, required=True)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--kill-after", type=int, default=1000, help="answers before the kill")
    args = parser.parse_args()

    import grpc
    gen = tempfile.mkdtemp(prefix="rectifier-replica-stubs-")
    generate_stubs(gen)
    import grpc_service_pb2 as pb
    import grpc_service_pb2_grpc as pb_grpc

    channel = grpc.insecure_channel(args.nginx)
    stub = pb_grpc.GRPCInferenceServiceStub(channel)
    lock = threading.Lock()
    next_index = [0]
    answers = {}          # request -> (version, attempts)
    failures = {}         # request -> final error
    retry_codes = {}      # status code name -> failed attempts that were retried
    retry_messages = {}   # their status messages
    answered = [0]
    kill = {}             # what was known at the kill
    killed = threading.Event()

    def infer(i):
        x = np.full((1, 3, 2, 2), i + 0.25, np.float32)
        request = pb.ModelInferRequest(model_name="double", id=f"r{i}")
        tensor = request.inputs.add()
        tensor.name, tensor.datatype = "x", "FP32"
        tensor.shape.extend([1, 3, 2, 2])
        request.raw_input_contents.append(x.tobytes())
        return stub.ModelInfer(request, timeout=20)

    def worker():
        while True:
            with lock:
                i = next_index[0]
                if i >= args.requests:
                    return
                next_index[0] += 1
            attempt = 0
            while True:
                attempt += 1
                # Classified by when the answered attempt was sent: one sent
                # after A was dead can only be answered by B.
                sent_after_kill = killed.is_set()
                try:
                    response = infer(i)
                except grpc.RpcError as e:
                    code = e.code()
                    if code == grpc.StatusCode.UNAVAILABLE and attempt < 8:
                        with lock:
                            retry_codes[code.name] = retry_codes.get(code.name, 0) + 1
                            retry_messages[e.details()] = retry_messages.get(e.details(), 0) + 1
                            if killed.is_set() and not kill.get("first_retry_after_kill"):
                                kill["first_retry_after_kill"] = True
                        time.sleep(0.05 * attempt)
                        continue
                    with lock:
                        failures[i] = f"{code.name}: {e.details()}"
                    break
                y = np.frombuffer(response.raw_output_contents[0], np.float32)
                ok = response.id == f"r{i}" and np.all(y == np.float32(2 * (i + 0.25)))
                with lock:
                    if not ok:
                        failures[i] = f"wrong answer {y[:3]} id {response.id}"
                    elif i in answers:
                        failures[i] = "answered twice"
                    else:
                        answers[i] = (response.model_version, attempt,
                                      "after" if sent_after_kill else "before")
                    answered[0] += 1
                    do_kill = answered[0] == args.kill_after
                if do_kill:
                    # A's count first, then the kill: A can only have computed more.
                    kill["a_inferences_before"] = scrape_inferences(args.a_metrics, "1")
                    os.kill(args.a_pid, signal.SIGKILL)
                    wait_dead(args.a_pid)
                    killed.set()
                    with lock:
                        kill["answered_at_kill"] = answered[0]
                        kill["from_a_at_kill"] = sum(1 for v in answers.values() if v[0] == "1")
                break

    start = time.time()
    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start

    from_a = sum(1 for v in answers.values() if v[0] == "1")
    from_b = sum(1 for v in answers.values() if v[0] == "2")
    from_a_after = sum(1 for v in answers.values() if v[0] == "1" and v[2] == "after")
    from_b_before = sum(1 for v in answers.values() if v[0] == "2" and v[2] == "before")
    from_b_after = sum(1 for v in answers.values() if v[0] == "2" and v[2] == "after")
    retried_requests = sum(1 for v in answers.values() if v[1] > 1)
    failed_attempts = sum(retry_codes.values())

    # B's own count, straight from B (not through nginx).
    b_stub = pb_grpc.GRPCInferenceServiceStub(grpc.insecure_channel(args.b_grpc))
    stats = b_stub.ModelStatistics(pb.ModelStatisticsRequest(name="double", version="2"), timeout=10)
    b_stat_inferences = stats.model_stats[0].inference_count if stats.model_stats else None
    b_metric_inferences = scrape_inferences(args.b_metrics, "2")

    summary = {
        "requests": args.requests, "concurrency": args.concurrency, "seconds": round(elapsed, 2),
        "answered": len(answers), "failed": len(failures),
        "from_a": from_a, "from_b": from_b, "from_b_before_kill": from_b_before,
        "from_b_after_kill": from_b_after, "from_a_after_kill": from_a_after,
        "retried_requests": retried_requests, "failed_attempts_by_code": retry_codes,
        "failed_attempt_messages": retry_messages,
        "a_inferences_read_before_kill": kill.get("a_inferences_before"),
        "answered_at_kill": kill.get("answered_at_kill"),
        "b_modelstatistics_inference_count": b_stat_inferences,
        "b_metrics_inferences_total": b_metric_inferences,
        "max_computed_twice": failed_attempts,
    }
    problems = []
    if failures:
        problems.append(f"{len(failures)} requests failed, e.g. {list(failures.items())[:3]}")
    if len(answers) != args.requests:
        problems.append(f"{len(answers)} answers for {args.requests} requests")
    if set(retry_codes) - {"UNAVAILABLE"}:
        problems.append(f"retried non-UNAVAILABLE codes {retry_codes}")
    if not killed.is_set():
        problems.append("replica A was never killed")
    if kill.get("from_a_at_kill", 0) == 0 or from_b_before == 0:
        problems.append("both replicas must answer before the kill")
    if from_a_after:
        problems.append(f"{from_a_after} answers from A after it was killed")
    if from_b_after == 0:
        problems.append("B answered nothing after the kill")
    if b_stat_inferences != from_b:
        problems.append(f"B ModelStatistics inference_count {b_stat_inferences} != answers from B {from_b}")
    if b_metric_inferences != from_b:
        problems.append(f"B rectifier_inferences_total {b_metric_inferences} != answers from B {from_b}")
    a_before = kill.get("a_inferences_before")
    if a_before is None or a_before > from_a + failed_attempts:
        problems.append(f"A computed {a_before} before the kill, more than it answered ({from_a}) "
                        f"plus failed attempts ({failed_attempts})")
    for p in problems:
        print("FAIL " + p)
    if not problems:
        print(f"ok   {args.requests} requests answered exactly once (A {from_a}, B {from_b}; "
              f"{retried_requests} retried after UNAVAILABLE), B computed exactly what it answered")
    print(json.dumps(summary))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
