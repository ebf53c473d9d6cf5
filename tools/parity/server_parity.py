#!/usr/bin/python3
"""Parity of the whole server with ONNX Runtime 1.30, through KServe ModelInfer.

Starts rectifier-server on loopback with a repository holding the given models
(config: `max_batch_size: 8`, plus --config lines), sends seeded random inputs
at each --shapes shape through ModelInfer (raw FP32), and compares output 0 with
ONNX Runtime's on the same input:
    rel = max|server - ort| / max(max|ort|, 1e-6)   (fails above --rtol, 1e-4)
Each shape is sent twice, the second time after the other shapes, so a plan
that another shape's compile disturbed would show. Models with dynamic height
and width compile one plan per shape on the server.

  tools/parity/server_parity.py --server build/server/rectifier-server \\
      --zoo lraspp_mobilenet_v3_large_dyn --shapes 1x3x160x224 2x3x96x128 1x3x224x160

Exit status: 0 all within tolerance, 1 a parity failure or error.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "soak"))
import zoo  # noqa: E402
from soak import generate_stubs, import_stubs  # noqa: E402


def start_server(binary, repo, workdir):
    log = open(os.path.join(workdir, "server.log"), "w+")
    cmd = [binary, "--model-repository", repo, "--grpc-address", "127.0.0.1:0",
           "--metrics-address", "127.0.0.1:0", "--http-address", ""]
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    port, deadline = None, time.time() + 300
    while port is None and time.time() < deadline and server.poll() is None:
        time.sleep(0.05)
        log.seek(0)
        match = re.search(r"serving gRPC on port (\d+)", log.read())
        port = match and match.group(1)
    if port is None:
        log.seek(0)
        server.kill()
        raise zoo.ParityError(f"server did not start: {log.read()[-4000:]}")
    return server, int(port), log


def infer(stub, pb, model, name, array):
    request = pb.ModelInferRequest(model_name=model)
    request.inputs.add(name=name, datatype="FP32", shape=list(array.shape))
    request.raw_input_contents.append(np.ascontiguousarray(array).tobytes())
    reply = stub.ModelInfer(request, timeout=300)
    out = reply.outputs[0]
    if out.datatype != "FP32":
        raise zoo.ParityError(f"{model}: output {out.name} is {out.datatype}, not FP32")
    return np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(list(out.shape))


def check(stub, pb, name, model_path, shapes, seed, rtol, tmp):
    """[(line, ok)] for one model over the shapes."""
    cases = []
    for i, shape in enumerate(shapes):
        workdir = os.path.join(tmp, f"{name}-{i}")
        os.makedirs(workdir)
        inputs = zoo.make_inputs(model_path, shape[0], seed + i, shape)
        cases.append((shape, workdir, inputs))
    t0 = time.monotonic()
    got = [infer(stub, pb, name, inputs[0][0], inputs[0][1]) for _, _, inputs in cases]
    again = [infer(stub, pb, name, inputs[0][0], inputs[0][1]) for _, _, inputs in cases]
    t1 = time.monotonic()
    want = zoo.run_ort(model_path, [(w, inputs) for _, w, inputs in cases])
    lines = []
    for (shape, _, _), first, second, ort in zip(cases, got, again, want):
        r = zoo.compare(first, ort[0])
        repeat = np.array_equal(first, second)
        ok = r["shape_ok"] and r["rel"] <= rtol and repeat
        lines.append((f"{name} input {'x'.join(map(str, shape))} -> {list(first.shape)}: "
                      f"max abs {r['max_abs']:.3g}, rel {r['rel']:.3g} (tol {rtol:g}), "
                      f"repeat {'identical' if repeat else 'DIFFERS'} {r['detail']}"
                      f"{'OK' if ok else 'FAIL'}", ok))
    lines.append((f"{name}: server {t1 - t0:.1f} s for {2 * len(cases)} calls", True))
    return lines


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--server", required=True, help="rectifier-server binary")
    p.add_argument("--zoo", nargs="*", default=[], help="zoo names (tools/parity/zoo.py)")
    p.add_argument("--model", nargs="*", default=[], help="ONNX files")
    p.add_argument("--shapes", nargs="+", required=True, help="full input shapes: 1x3x160x224 ...")
    p.add_argument("--config", default="", help="extra config.pbtxt text for every model")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=2026)
    a = p.parse_args()
    try:
        shapes = [[int(d) for d in s.split("x")] for s in a.shapes]
    except ValueError:
        p.error(f"--shapes: expected dims like 1x3x160x224, got {a.shapes}")
    tmp = tempfile.mkdtemp(prefix="server_parity_")
    server = log = None
    failed = 0
    try:
        import grpc
        zoo.check_peer()
        models = [(n, zoo.zoo_model(n)) for n in a.zoo]
        models += [(re.sub(r"\W", "_", os.path.splitext(os.path.basename(m))[0]), m)
                   for m in a.model]
        if not models:
            p.error("nothing to check: give --zoo or --model")
        repo = os.path.join(tmp, "repo")
        for name, path in models:
            os.makedirs(os.path.join(repo, name, "1"))
            os.symlink(os.path.abspath(path), os.path.join(repo, name, "1", "model.onnx"))
            with open(os.path.join(repo, name, "config.pbtxt"), "w") as f:
                f.write(f"max_batch_size: 8\n{a.config}\n")
        generate_stubs(os.path.join(tmp, "gen"))
        pb, pb_grpc, _, _ = import_stubs(os.path.join(tmp, "gen"))
        server, port, log = start_server(a.server, repo, tmp)
        with grpc.insecure_channel(f"127.0.0.1:{port}",
                                   options=[("grpc.max_receive_message_length", -1),
                                            ("grpc.max_send_message_length", -1)]) as channel:
            stub = pb_grpc.GRPCInferenceServiceStub(channel)
            for name, path in models:
                for line, ok in check(stub, pb, name, path, shapes, a.seed, a.rtol, tmp):
                    print(line, flush=True)
                    failed += not ok
    except (zoo.ParityError, RuntimeError) as e:
        print(f"server_parity: {e}", file=sys.stderr)
        failed += 1
    except Exception as e:  # grpc.RpcError and friends: report with the server's log
        print(f"server_parity: {type(e).__name__}: {e}", file=sys.stderr)
        if log:
            log.seek(0)
            print(log.read()[-4000:], file=sys.stderr)
        failed += 1
    finally:
        if server:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=60)
        if log:
            log.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{'FAILED' if failed else 'passed'}: {failed} failure(s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
