#!/usr/bin/python3
"""Soak: a long mixed load on one rectifier-server on loopback, every answer checked.

Starts its own rectifier-server (free 127.0.0.1 ports, `--model-control-mode
explicit`) on a temporary repository holding copies of the default models
(`models/scan_classifier`, `models/road_detector`) plus `soak_extra`, a copy of
`scan_classifier` that the load/unload kind loads, infers on and unloads.
Inputs are a fixed small set generated at start with models/tools/synth.py
(PNG and, when PIL is present, JPEG); the answer to each input is computed
once at start (the reference) and every answer of the soak must equal it
(floats within --rtol/--atol, class ids and box classes equal, boxes within
--box-tol pixels).

Kinds (--kinds, comma-separated; `all`, `unary`, `streams` are groups):
  infer_tensor   KServe ModelInfer, raw FP32 tensors (batch 1, 2 or 4)
  infer_bytes    KServe ModelInfer, encoded PNG/JPEG as a BYTES input
                 (bytes_contents or length-prefixed raw_input_contents)
  classify       vision Classify (1 or 2 images)
  detect         vision Detect
  stream_infer   ModelStreamInfer: 3-8 requests written, some answers read,
                 then cancelled (one stream in four is half-closed and read
                 to the end instead, which must end OK with every answer)
  detect_stream  DetectStream: the same, frames answered in order (one in
                 four with drop_stale: each frame answered or skipped once)
  load_unload    RepositoryModelLoad soak_extra, ModelInfer on it,
                 RepositoryModelUnload (concurrent cycles race: NOT_FOUND /
                 UNAVAILABLE from them are counted as expected errors)

One request = one unary call, one stream or one load/unload cycle. The load
runs in --processes client processes (asyncio + grpc.aio each), --concurrency
requests in flight in all. A warm-up (--warmup requests, same mix) runs first;
the server's RSS (VmRSS) is read after it, at 10% of the run, at the end (and
its peak in between).

Exit status 1 when any request was lost (sent and never answered: the RPC
deadline passed or the connection broke), any answer was wrong, any error was
unexpected, the server died or did not exit 0 on SIGTERM, the RSS grew more
than --max-rss-growth percent after the warm-up, or the --time-limit cut the
run short; 2 on a usage or setup error.

  /usr/bin/python3 tools/soak/soak.py --build build --requests 20000 --concurrency 64
  /usr/bin/python3 tools/soak/soak.py --build build --requests 20000 --kinds unary
"""
import argparse
import asyncio
import collections
import json
import multiprocessing
import os
import pickle
import random
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
KINDS = ["infer_tensor", "infer_bytes", "classify", "detect", "stream_infer", "detect_stream",
         "load_unload"]
GROUPS = {"all": KINDS, "unary": ["infer_tensor", "infer_bytes", "classify", "detect",
                                  "load_unload"],
          "streams": ["stream_infer", "detect_stream"]}
# Share of each kind in the mix, per mille (renormalised over --kinds).
WEIGHTS = {"infer_tensor": 300, "infer_bytes": 200, "classify": 250, "detect": 100,
           "stream_infer": 72, "detect_stream": 72, "load_unload": 6}
SCAN, ROAD, EXTRA = "scan_classifier", "road_detector", "soak_extra"
# Codes a load/unload cycle may meet when it races another cycle.
RACE_CODES = {"NOT_FOUND", "UNAVAILABLE"}
# Transport failures (no answer from the server) among UNAVAILABLE errors.
TRANSPORT = re.compile(r"socket closed|connection reset|connection refused|failed to connect|"
                       r"broken pipe|connection aborted|goaway|end of tcp stream|"
                       r"unavailable to connect|connect failed", re.I)


# ------------------------------------------------------------------ setup
def generate_stubs(out):
    """Python stubs from proto/ with Debian's protoc and grpc_python_plugin."""
    os.makedirs(out, exist_ok=True)
    proto = os.path.join(ROOT, "proto")
    plugin = "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"
    subprocess.check_call(["protoc", "-I", proto, "--python_out", out, "--grpc_python_out", out,
                           plugin, os.path.join(proto, "grpc_service.proto"),
                           os.path.join(proto, "model_config.proto"),
                           os.path.join(proto, "rectifier", "v1", "vision.proto")])


def import_stubs(gen):
    if gen not in sys.path:
        sys.path.insert(0, gen)
    import grpc_service_pb2 as pb
    import grpc_service_pb2_grpc as pb_grpc
    from rectifier.v1 import vision_pb2 as vpb
    from rectifier.v1 import vision_pb2_grpc as vpb_grpc
    return pb, pb_grpc, vpb, vpb_grpc


def make_repository(models, repo):
    """Copies of the default models plus soak_extra (scan_classifier renamed)."""
    for name in (SCAN, ROAD):
        shutil.copytree(os.path.join(models, name), os.path.join(repo, name))
    shutil.copytree(os.path.join(models, SCAN), os.path.join(repo, EXTRA))
    config = os.path.join(repo, EXTRA, "config.pbtxt")
    with open(config) as f:
        text = f.read()
    with open(config, "w") as f:
        f.write(re.sub(r'(?m)^name:\s*"%s"' % SCAN, f'name: "{EXTRA}"', text))


def start_server(binary, repo, workdir, extra_args):
    log_path = os.path.join(workdir, "server.log")
    log = open(log_path, "w+")
    cmd = [binary, "--model-repository", repo, "--model-control-mode", "explicit",
           "--load-model", SCAN, "--load-model", ROAD, "--grpc-address", "127.0.0.1:0",
           "--metrics-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0"] + extra_args
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    port = None
    while port is None and time.time() < deadline and server.poll() is None:
        time.sleep(0.05)
        log.seek(0)
        match = re.search(r"serving gRPC on port (\d+)", log.read())
        port = match and match.group(1)
    if port is None:
        log.seek(0)
        raise RuntimeError("server did not start (%s): %s" % (" ".join(cmd), log.read()[-4000:]))
    return server, int(port), log, log_path, cmd


def vm_rss_kb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def cpu_seconds(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def settle(pid, timeout=15.0):
    """Waits until the server is idle (under 4% of a CPU over 0.5 s): frames of
    cancelled streams may still be computing when the client is done."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        before = cpu_seconds(pid)
        time.sleep(0.5)
        after = cpu_seconds(pid)
        if before is None or after is None or after - before < 0.02:
            return


def png_bytes(image, tmp, name):
    sys.path.insert(0, os.path.join(ROOT, "models", "tools"))
    import synth
    path = os.path.join(tmp, name)
    synth.write_png(path, image)
    with open(path, "rb") as f:
        return f.read()


def jpeg_bytes(image):
    try:
        from PIL import Image
    except ImportError:
        return None
    import io
    out = io.BytesIO()
    Image.fromarray(image).save(out, format="JPEG", quality=90)
    return out.getvalue()


def make_inputs(tmp, seed):
    """A fixed small set of images: (name, uint8 array, encoded bytes)."""
    sys.path.insert(0, os.path.join(ROOT, "models", "tools"))
    import synth
    scans, roads = [], []
    for i, (img, _) in enumerate(synth.scan_samples(seed, 6)):
        scans.append((f"scan{i}.png", img, png_bytes(img, tmp, f"scan{i}.png")))
    for i, (img, _) in enumerate(synth.scan_samples(seed + 1, 2, 200)):  # resized by the server
        scans.append((f"scan200_{i}.png", img, png_bytes(img, tmp, f"scan200_{i}.png")))
    for i, (img, _) in enumerate(synth.road_samples(seed + 2, 3)):
        roads.append((f"road{i}.png", img, png_bytes(img, tmp, f"road{i}.png")))
    for i, (img, _) in enumerate(synth.road_samples(seed + 3, 1, 320, 240)):
        roads.append((f"road320_{i}.png", img, png_bytes(img, tmp, f"road320_{i}.png")))
    for images, count in ((scans, 2), (roads, 1)):
        for name, img, _ in list(images[:count]):
            data = jpeg_bytes(img)
            if data is not None:
                images.append((name.replace(".png", ".jpg"), img, data))
    return scans, roads


def scan_tensor(img):
    return (img.astype(np.float32) / 255.0)[None, None, :, :]  # [1, 1, 128, 128]


def road_tensor(img):
    """Letterboxed like the model's preprocessing would, roughly: content does not matter."""
    out = np.full((320, 320, 3), 114, np.uint8)
    h, w = img.shape[:2]
    step = max(1, int(np.ceil(max(h, w) / 320)))
    small = img[::step, ::step][:320, :320]
    out[:small.shape[0], :small.shape[1]] = small
    return (out.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]  # [1, 3, 320, 320]


def build_cases(pb, vpb, scans, roads):
    """Serialized requests per kind; the references are added by compute_references."""
    cases = {k: [] for k in KINDS}
    scan_128 = [img for name, img, _ in scans if img.shape == (128, 128) and name.endswith(".png")]
    # infer_tensor: scan batches 1, 2, 4 and road batch 1.
    tensors = [(SCAN, "image", scan_tensor(img)) for img in scan_128[:4]]
    tensors.append((SCAN, "image", np.concatenate([scan_tensor(i) for i in scan_128[:2]])))
    tensors.append((SCAN, "image", np.concatenate([scan_tensor(i) for i in scan_128[2:6]])))
    tensors.append((ROAD, "images", road_tensor(roads[0][1])))
    for model, input_name, x in tensors:
        request = pb.ModelInferRequest(model_name=model)
        request.inputs.add(name=input_name, datatype="FP32", shape=list(x.shape))
        request.raw_input_contents.append(np.ascontiguousarray(x).tobytes())
        cases["infer_tensor"].append({"model": model, "request": request.SerializeToString()})
    # infer_bytes: one or two images, typed bytes_contents or length-prefixed raw.
    groups = [(SCAN, "image", [s[2]]) for s in scans]
    groups.append((SCAN, "image", [scans[0][2], scans[-1][2]]))
    groups += [(ROAD, "images", [r[2]]) for r in roads[:2]]
    for j, (model, input_name, images) in enumerate(groups):
        request = pb.ModelInferRequest(model_name=model)
        tensor = request.inputs.add(name=input_name, datatype="BYTES", shape=[len(images)])
        if j % 2 == 0:
            tensor.contents.bytes_contents.extend(images)
        else:
            request.raw_input_contents.append(
                b"".join(struct.pack("<I", len(b)) + b for b in images))
        cases["infer_bytes"].append({"model": model, "request": request.SerializeToString()})
    # classify: each scan, and one pair.
    for images in [[s[2]] for s in scans] + [[scans[1][2], scans[-2][2]]]:
        request = vpb.ClassifyRequest(model_name=SCAN)
        for data in images:
            request.images.add(data=data)
        cases["classify"].append({"request": request.SerializeToString()})
    for _, _, data in roads:
        request = vpb.DetectRequest(model_name=ROAD)
        request.images.add(data=data)
        cases["detect"].append({"request": request.SerializeToString()})
    # Streams reuse the scan infer cases and the road images (their references).
    cases["stream_infer"] = [("infer_tensor", i) for i, c in enumerate(cases["infer_tensor"])
                             if c["model"] == SCAN]
    cases["stream_infer"] += [("infer_bytes", i) for i, c in enumerate(cases["infer_bytes"])
                              if c["model"] == SCAN]
    cases["detect_stream"] = [{"image": data} for _, _, data in roads]
    # load_unload: the first scan tensor case, on soak_extra.
    request = pb.ModelInferRequest.FromString(cases["infer_tensor"][0]["request"])
    request.model_name = EXTRA
    cases["load_unload"] = [{"request": request.SerializeToString(), "same_as": 0}]
    return cases


def infer_reference(pb, response):
    return [(o.name, o.datatype, tuple(o.shape),
             np.frombuffer(raw, np.float32).copy())
            for o, raw in zip(response.outputs, response.raw_output_contents)]


def classify_reference(response):
    return [[(c.class_id, c.score) for c in r.classes] for r in response.results]


def detect_reference(result):
    return [(d.class_id, d.score, (d.box.x1, d.box.y1, d.box.x2, d.box.y2))
            for d in result.detections]


def compute_references(pb, pb_grpc, vpb, vpb_grpc, address, cases):
    import grpc
    options = [("grpc.max_receive_message_length", 256 << 20),
               ("grpc.max_send_message_length", 256 << 20)]
    with grpc.insecure_channel(address, options=options) as channel:
        grpc.channel_ready_future(channel).result(timeout=30)
        kserve, vision = pb_grpc.GRPCInferenceServiceStub(channel), vpb_grpc.VisionStub(channel)
        for model in (SCAN, ROAD):
            deadline = time.time() + 120
            while not kserve.ModelReady(pb.ModelReadyRequest(name=model), timeout=10).ready:
                if time.time() > deadline:
                    raise RuntimeError(f"model {model} not ready after 120 s")
                time.sleep(0.1)
        for kind in ("infer_tensor", "infer_bytes"):
            for case in cases[kind]:
                reply = kserve.ModelInfer(pb.ModelInferRequest.FromString(case["request"]),
                                          timeout=120)
                case["ref"] = infer_reference(pb, reply)
        for case in cases["classify"]:
            reply = vision.Classify(vpb.ClassifyRequest.FromString(case["request"]), timeout=120)
            case["ref"] = classify_reference(reply)
        for case in cases["detect"]:
            reply = vision.Detect(vpb.DetectRequest.FromString(case["request"]), timeout=120)
            case["ref"] = [detect_reference(r) for r in reply.results]
        for case, detect in zip(cases["detect_stream"], cases["detect"]):
            case["ref"] = detect["ref"][0]
        cases["load_unload"][0]["ref"] = cases["infer_tensor"][0]["ref"]


# ------------------------------------------------------------------ checks
class Tolerance:
    def __init__(self, rtol, atol, box):
        self.rtol, self.atol, self.box = rtol, atol, box


def check_infer(response, ref, tol):
    """(ok, max abs diff, detail)."""
    if len(response.outputs) != len(ref) or len(response.raw_output_contents) != len(ref):
        return False, None, f"{len(response.outputs)} outputs, expected {len(ref)}"
    worst = 0.0
    for out, raw, (name, dtype, shape, values) in zip(response.outputs,
                                                      response.raw_output_contents, ref):
        if out.name != name or out.datatype != dtype or tuple(out.shape) != shape:
            return False, None, (f"output {out.name} {out.datatype} {list(out.shape)}, expected "
                                 f"{name} {dtype} {list(shape)}")
        got = np.frombuffer(raw, np.float32)
        if got.shape != values.shape:
            return False, None, f"output {name}: {got.size} values, expected {values.size}"
        diff = np.abs(got - values)
        worst = max(worst, float(diff.max()) if diff.size else 0.0)
        if not np.all(diff <= tol.atol + tol.rtol * np.abs(values)):
            i = int(np.argmax(diff - tol.rtol * np.abs(values)))
            return False, worst, f"output {name}[{i}] = {got[i]!r}, expected {values[i]!r}"
    return True, worst, ""


def check_classify(response, ref, tol):
    got = classify_reference(response)
    if [[c for c, _ in r] for r in got] != [[c for c, _ in r] for r in ref]:
        return False, None, f"classes {got}, expected {ref}"
    worst = 0.0
    for r, e in zip(got, ref):
        for (_, s), (_, t) in zip(r, e):
            worst = max(worst, abs(s - t))
            if abs(s - t) > tol.atol + tol.rtol * abs(t):
                return False, worst, f"scores {got}, expected {ref}"
    return True, worst, ""


def check_detections(got, ref, tol):
    if [c for c, _, _ in got] != [c for c, _, _ in ref]:
        return False, None, f"detections {got}, expected {ref}"
    worst = 0.0
    for (_, s, box), (_, t, rbox) in zip(got, ref):
        box_diff = max(abs(a - b) for a, b in zip(box, rbox))
        worst = max(worst, abs(s - t))
        if abs(s - t) > tol.atol + tol.rtol * abs(t) or box_diff > tol.box:
            return False, worst, f"detections {got}, expected {ref}"
    return True, worst, ""


# ------------------------------------------------------------------ client worker
class Stats:
    def __init__(self):
        self.sent = collections.Counter()        # kind -> requests sent
        self.answered = collections.Counter()    # kind -> requests answered (OK or an error)
        self.ok = collections.Counter()
        self.wrong = collections.Counter()
        self.lost = collections.Counter()
        self.errors = collections.Counter()      # (kind, code, expected) -> RPC errors
        self.latency = collections.defaultdict(list)
        self.max_diff = collections.defaultdict(float)
        self.messages = collections.Counter()    # stream messages: (kind, "written"/"read")
        self.examples = []                       # first problems, for the report

    def example(self, text):
        if len(self.examples) < 20:
            self.examples.append(text)

    def merge(self, other):
        for name in ("sent", "answered", "ok", "wrong", "lost", "errors", "messages"):
            getattr(self, name).update(getattr(other, name))
        for kind, values in other.latency.items():
            self.latency[kind].extend(values)
        for kind, value in other.max_diff.items():
            self.max_diff[kind] = max(self.max_diff[kind], value)
        self.examples.extend(other.examples[:max(0, 20 - len(self.examples))])


class Lost(Exception):
    pass


class Wrong(Exception):
    pass


class Client:
    def __init__(self, cfg, stubs, cases, stats, server_dead):
        import grpc
        self.grpc = grpc
        self.pb, self.pb_grpc, self.vpb, self.vpb_grpc = stubs
        self.cfg, self.cases, self.stats, self.server_dead = cfg, cases, stats, server_dead
        self.tol = Tolerance(cfg["rtol"], cfg["atol"], cfg["box_tol"])
        self.timeout = cfg["rpc_timeout"]
        options = [("grpc.max_receive_message_length", 256 << 20),
                   ("grpc.max_send_message_length", 256 << 20)]
        self.channels = [grpc.aio.insecure_channel(cfg["address"], options=options +
                                                   [("grpc.channel_id", i)])
                         for i in range(cfg["channels"])]
        self.kserve = [self.pb_grpc.GRPCInferenceServiceStub(c) for c in self.channels]
        self.vision = [self.vpb_grpc.VisionStub(c) for c in self.channels]
        # Requests parsed once.
        self.infer_requests = {k: [self.pb.ModelInferRequest.FromString(c["request"])
                                   for c in cases[k]]
                               for k in ("infer_tensor", "infer_bytes", "load_unload")}
        self.classify_requests = [self.vpb.ClassifyRequest.FromString(c["request"])
                                  for c in cases["classify"]]
        self.detect_requests = [self.vpb.DetectRequest.FromString(c["request"])
                                for c in cases["detect"]]

    async def close(self):
        for channel in self.channels:
            await channel.close()

    def classify_error(self, kind, error, expected_codes=()):
        """An RPC error: raises Lost when there was no answer, else counts the code."""
        code = error.code()
        name = code.name if code is not None else "UNKNOWN"
        details = error.details() or ""
        if code == self.grpc.StatusCode.DEADLINE_EXCEEDED:
            raise Lost(f"{kind}: no answer within {self.timeout} s")
        # UNAVAILABLE the server sent (a full queue, a model not ready) is an
        # answer; a broken or refused connection is not.
        debug = error.debug_error_string() or ""
        if code == self.grpc.StatusCode.UNAVAILABLE and (
                self.server_dead.is_set() or TRANSPORT.search(details) or
                (debug and "received from peer" not in debug)):
            raise Lost(f"{kind}: {name}: {details}")
        expected = name in expected_codes
        self.stats.errors[(kind, name, expected)] += 1
        if not expected:
            self.stats.example(f"{kind}: unexpected {name}: {details}")
        return expected

    def verdict(self, kind, ok, diff, detail):
        if diff is not None:
            self.stats.max_diff[kind] = max(self.stats.max_diff[kind], diff)
        if not ok:
            raise Wrong(detail)

    async def run(self, kind, i, rng):
        stats = self.stats
        stats.sent[kind] += 1
        start = time.monotonic()
        try:
            ok = await getattr(self, "do_" + kind)(i, rng)
        except Lost as e:
            stats.lost[kind] += 1
            stats.example(f"lost: {e}")
            return
        except Wrong as e:
            stats.answered[kind] += 1
            stats.wrong[kind] += 1
            stats.example(f"wrong {kind}: {e}")
            return
        except self.grpc.aio.AioRpcError as e:
            try:
                self.classify_error(kind, e)
            except Lost as lost:
                stats.lost[kind] += 1
                stats.example(f"lost: {lost}")
                return
            stats.answered[kind] += 1
            return
        stats.answered[kind] += 1
        stats.latency[kind].append(time.monotonic() - start)
        if ok:
            stats.ok[kind] += 1

    # Unary kinds: return True when the answer matched (mismatches raise Wrong).
    async def do_infer_tensor(self, i, rng, kind="infer_tensor"):
        j = rng.randrange(len(self.infer_requests[kind]))
        reply = await self.kserve[i % len(self.kserve)].ModelInfer(
            self.infer_requests[kind][j], timeout=self.timeout)
        self.verdict(kind, *check_infer(reply, self.cases[kind][j]["ref"], self.tol))
        return True

    async def do_infer_bytes(self, i, rng):
        return await self.do_infer_tensor(i, rng, "infer_bytes")

    async def do_classify(self, i, rng):
        j = rng.randrange(len(self.classify_requests))
        reply = await self.vision[i % len(self.vision)].Classify(self.classify_requests[j],
                                                                 timeout=self.timeout)
        self.verdict("classify", *check_classify(reply, self.cases["classify"][j]["ref"],
                                                 self.tol))
        return True

    async def do_detect(self, i, rng):
        j = rng.randrange(len(self.detect_requests))
        reply = await self.vision[i % len(self.vision)].Detect(self.detect_requests[j],
                                                               timeout=self.timeout)
        ref = self.cases["detect"][j]["ref"]
        if len(reply.results) != len(ref):
            raise Wrong(f"{len(reply.results)} results, expected {len(ref)}")
        for result, expected in zip(reply.results, ref):
            self.verdict("detect", *check_detections(detect_reference(result), expected,
                                                     self.tol))
        return True

    async def do_load_unload(self, i, rng):
        kind, stub = "load_unload", self.kserve[i % len(self.kserve)]
        pb = self.pb
        try:
            await stub.RepositoryModelLoad(pb.RepositoryModelLoadRequest(model_name=EXTRA),
                                           timeout=self.timeout)
        except self.grpc.aio.AioRpcError as e:
            self.classify_error(kind, e)
        try:
            reply = await stub.ModelInfer(self.infer_requests[kind][0], timeout=self.timeout)
            self.verdict(kind, *check_infer(reply, self.cases[kind][0]["ref"], self.tol))
        except self.grpc.aio.AioRpcError as e:
            self.classify_error(kind, e, RACE_CODES)  # another cycle unloaded it
        try:
            await stub.RepositoryModelUnload(pb.RepositoryModelUnloadRequest(model_name=EXTRA),
                                             timeout=self.timeout)
        except self.grpc.aio.AioRpcError as e:
            self.classify_error(kind, e, RACE_CODES)  # another cycle unloaded it first
        return True

    # Streams: n messages written from a task while answers are read. Modes:
    # "complete" half-closes and reads to the end (must end OK with every
    # answer); "read" cancels after `want` (>= 1) answers; "written" cancels
    # once every message is written, nothing read; "early" cancels right after
    # the first write, the rest still being written.
    def stream_mode(self, rng, n):
        ends = self.cfg["stream_ends"]
        while True:
            x = rng.random()
            mode = ("complete" if x < 0.25 else "read" if x < 0.70 else
                    "written" if x < 0.85 else "early")
            if mode in ends:
                break
        return mode, (n if mode == "complete" else rng.randint(1, n - 1) if mode == "read"
                      else 0)

    async def stream(self, kind, call, messages, mode, want, check):
        written = 0
        first_written = asyncio.Event()
        complete = mode == "complete"

        async def writer():
            nonlocal written
            for m in messages:
                await call.write(m)
                written += 1
                first_written.set()
            if complete:
                await call.done_writing()

        task = asyncio.ensure_future(writer())
        got = 0
        try:
            if mode == "written":
                await task
            elif mode == "early":
                waiter = asyncio.ensure_future(first_written.wait())
                await asyncio.wait([waiter, task], return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if task.done():
                    task.result()  # raises the write's error, if any
            while complete or got < want:
                reply = await call.read()
                if reply is self.grpc.aio.EOF:
                    break
                got += check(reply)
            if complete:
                await task
                code = await call.code()
                if code != self.grpc.StatusCode.OK:
                    raise self.grpc.aio.AioRpcError(code, None, None, await call.details())
                if got != len(messages):
                    raise Lost(f"{kind}: stream ended OK after {got} of {len(messages)} answers")
            elif got < want:
                code = await call.code()
                if code != self.grpc.StatusCode.OK:
                    raise self.grpc.aio.AioRpcError(code, None, None, await call.details())
                raise Lost(f"{kind}: stream ended after {got} answers, {want} wanted")
        finally:
            if not complete:
                call.cancel()
            if not task.done():
                task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
            self.stats.messages[(kind, "written")] += written
            self.stats.messages[(kind, "read")] += got
            self.stats.messages[(kind, "mode " + mode)] += 1
        return True

    async def do_stream_infer(self, i, rng):
        kind = "stream_infer"
        n = rng.randint(3, 8)
        mode, want = self.stream_mode(rng, n)
        picks = [rng.choice(self.cases[kind]) for _ in range(n)]
        messages, refs = [], {}
        for k, (source, j) in enumerate(picks):
            request = pb_copy(self.pb.ModelInferRequest, self.infer_requests[source][j])
            request.id = f"{i}-{k}"
            messages.append(request)
            refs[request.id] = self.cases[source][j]["ref"]
        seen = set()

        def check(reply):
            if reply.error_message:
                self.stats.errors[(kind, "IN_STREAM_ERROR", False)] += 1
                self.stats.example(f"{kind}: in-stream error: {reply.error_message}")
                return 1
            rid = reply.infer_response.id
            if rid not in refs or rid in seen:
                raise Wrong(f"answer with id {rid!r} (sent {sorted(refs)}, seen {sorted(seen)})")
            seen.add(rid)
            self.verdict(kind, *check_infer(reply.infer_response, refs[rid], self.tol))
            return 1

        call = self.kserve[i % len(self.kserve)].ModelStreamInfer(timeout=self.timeout)
        return await self.stream(kind, call, messages, mode, want, check)

    async def do_detect_stream(self, i, rng):
        kind = "detect_stream"
        n = rng.randint(3, 8)
        mode, want = self.stream_mode(rng, n)
        drop_stale = rng.random() < 0.25
        picks = [rng.randrange(len(self.cases[kind])) for _ in range(n)]
        messages = []
        for k, j in enumerate(picks):
            request = self.vpb.DetectStreamRequest(model_name=ROAD, frame_id=k)
            request.image.data = self.cases[kind][j]["image"]
            if k == 0:
                request.options.max_in_flight = 2 if drop_stale else 4
                request.options.drop_stale = drop_stale
            messages.append(request)
        answered, accounted = [], set()  # frames answered (in order); answered or skipped

        def check(reply):
            frames = [reply.frame_id] + list(reply.skipped_frame_ids)
            if reply.skipped_frame_ids and not drop_stale:
                raise Wrong(f"frames {list(reply.skipped_frame_ids)} skipped without drop_stale")
            if accounted.intersection(frames) or len(set(frames)) != len(frames):
                raise Wrong(f"frame answered or skipped twice: {frames} after {sorted(accounted)}")
            if answered and reply.frame_id <= answered[-1]:
                raise Wrong(f"frame {reply.frame_id} answered after {answered[-1]}")
            answered.append(reply.frame_id)
            accounted.update(frames)
            if max(frames) >= n:
                raise Wrong(f"answer for frame {reply.frame_id}, {n} sent")
            if reply.error_code or not reply.HasField("result"):
                self.stats.errors[(kind, f"IN_STREAM_{reply.error_code}", False)] += 1
                self.stats.example(f"{kind}: frame error {reply.error_code}: "
                                   f"{reply.error_message}")
                return 1
            ok, diff, detail = check_detections(detect_reference(reply.result),
                                                self.cases[kind][picks[reply.frame_id]]["ref"],
                                                self.tol)
            self.verdict(kind, ok, diff, f"frame {reply.frame_id}: {detail}")
            return 1 + len(reply.skipped_frame_ids)

        call = self.vision[i % len(self.vision)].DetectStream(timeout=self.timeout)
        return await self.stream(kind, call, messages, mode, want, check)


def pb_copy(cls, message):
    copy = cls()
    copy.CopyFrom(message)
    return copy


async def worker_async(cfg, progress, stop, server_dead, stats):
    stubs = import_stubs(cfg["gen"])
    with open(cfg["cases"], "rb") as f:
        cases = pickle.load(f)
    client = Client(cfg, stubs, cases, stats, server_dead)
    schedule = cfg["schedule"]
    indices = iter(range(cfg["first"], cfg["total"], cfg["step"]))
    end = cfg["end_time"]
    pending = [0]

    async def loop(slot):
        rng = random.Random(cfg["seed"] * 1000003 + cfg["first"] * 1009 + slot)
        for i in indices:
            if stop.is_set() or time.time() > end:
                break
            await client.run(schedule[i % len(schedule)], i, rng)
            pending[0] += 1
            if pending[0] >= 20:
                with progress.get_lock():
                    progress.value += pending[0]
                pending[0] = 0

    await asyncio.gather(*(loop(s) for s in range(cfg["concurrency"])))
    with progress.get_lock():
        progress.value += pending[0]
    await client.close()


def worker_main(cfg, progress, stop, server_dead):
    stats = Stats()
    try:
        asyncio.run(worker_async(cfg, progress, stop, server_dead, stats))
    except Exception as e:  # reported, and makes the run fail
        stats.example(f"client process {cfg['first']} failed: {e!r}")
        stats.errors[("client", type(e).__name__, False)] += 1
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats.client_cpu = usage.ru_utime + usage.ru_stime
    stats.latency = {k: np.array(v, np.float64) for k, v in stats.latency.items()}
    with open(cfg["result"], "wb") as f:
        pickle.dump(stats, f)


# ------------------------------------------------------------------ driver
def make_schedule(kinds, seed):
    slots = []
    for kind in kinds:
        slots += [kind] * WEIGHTS[kind]
    random.Random(seed).shuffle(slots)
    return slots


def run_phase(name, total, args, base_cfg, server, on_progress):
    """Runs `total` requests in args.processes client processes; returns (Stats, seconds)."""
    ctx = multiprocessing.get_context("spawn")
    progress, stop, server_dead = ctx.Value("q", 0), ctx.Event(), ctx.Event()
    processes = min(args.processes, max(1, total))
    per_process = [args.concurrency // processes + (1 if p < args.concurrency % processes else 0)
                   for p in range(processes)]
    workers = []
    for p in range(processes):
        cfg = dict(base_cfg, first=p, step=processes, total=total, concurrency=max(1, per_process[p]),
                   result=os.path.join(base_cfg["workdir"], f"{name}-{p}.pkl"))
        proc = ctx.Process(target=worker_main, args=(cfg, progress, stop, server_dead))
        proc.start()
        workers.append((proc, cfg))
    start = time.time()
    crashed = False
    while any(proc.is_alive() for proc, _ in workers):
        time.sleep(0.2)
        if server.poll() is not None and not crashed:
            crashed = True
            server_dead.set()
            stop.set()
        if time.time() > base_cfg["end_time"] + args.rpc_timeout + 30:
            stop.set()
        on_progress(progress.value, time.time() - start)
    elapsed = time.time() - start
    stats, client_cpu = Stats(), 0.0
    for proc, cfg in workers:
        proc.join()
        try:
            with open(cfg["result"], "rb") as f:
                part = pickle.load(f)
        except OSError:
            part = Stats()
            part.examples.append(f"client process {cfg['first']} left no result "
                                 f"(exit code {proc.exitcode})")
            part.errors[("client", "NO_RESULT", False)] += 1
            part.client_cpu = 0.0
        client_cpu += part.client_cpu
        stats.merge(part)
    stats.client_cpu = client_cpu
    return stats, elapsed


def percentile_ms(values, q):
    return float(np.percentile(values, q) * 1000) if len(values) else None


def summarize(stats, kinds, elapsed):
    total = lambda c: sum(c.values())  # noqa: E731
    expected = collections.Counter()
    unexpected = collections.Counter()
    for (kind, code, is_expected), n in stats.errors.items():
        (expected if is_expected else unexpected)[f"{kind}:{code}"] += n
    per_kind = {}
    for kind in kinds:
        lat = stats.latency.get(kind, [])
        per_kind[kind] = {
            "sent": stats.sent[kind], "answered": stats.answered[kind], "ok": stats.ok[kind],
            "wrong": stats.wrong[kind], "lost": stats.lost[kind],
            "p50_ms": percentile_ms(lat, 50), "p99_ms": percentile_ms(lat, 99),
            "max_ms": float(np.max(lat) * 1000) if len(lat) else None,
            "max_abs_diff": stats.max_diff.get(kind, 0.0)}
        for what in ("written", "read"):
            if (kind, what) in stats.messages:
                per_kind[kind][f"stream_messages_{what}"] = stats.messages[(kind, what)]
        modes = {m[5:]: n for (k, m), n in stats.messages.items()
                 if k == kind and m.startswith("mode ")}
        if modes:
            per_kind[kind]["stream_modes"] = modes
    return {"sent": total(stats.sent), "answered": total(stats.answered),
            "ok": total(stats.ok), "wrong": total(stats.wrong), "lost": total(stats.lost),
            "errors_expected": dict(expected), "errors_unexpected": dict(unexpected),
            "seconds": round(elapsed, 2),
            "requests_per_s": round(total(stats.answered) / elapsed, 1) if elapsed else None,
            "client_cpu_s": round(stats.client_cpu, 1), "kinds": per_kind,
            "examples": stats.examples}


def print_summary(title, s):
    print(f"== {title}: {s['sent']} sent, {s['answered']} answered, {s['lost']} lost, "
          f"{s['wrong']} wrong, {s['seconds']} s, {s['requests_per_s']} answered/s, "
          f"client CPU {s['client_cpu_s']} s")
    print(f"   errors expected: {s['errors_expected'] or 'none'}; "
          f"unexpected: {s['errors_unexpected'] or 'none'}")
    print("   %-14s %8s %8s %6s %6s %9s %9s %9s %10s" % (
        "kind", "sent", "answered", "wrong", "lost", "p50 ms", "p99 ms", "max ms", "max diff"))
    fmt = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    for kind, k in s["kinds"].items():
        print("   %-14s %8d %8d %6d %6d %9s %9s %9s %10.2g" % (
            kind, k["sent"], k["answered"], k["wrong"], k["lost"], fmt(k["p50_ms"]),
            fmt(k["p99_ms"]), fmt(k["max_ms"]), k["max_abs_diff"]))
        if "stream_messages_written" in k:
            print(f"   {'':14} stream messages written {k['stream_messages_written']}, "
                  f"read {k.get('stream_messages_read', 0)}; streams by end: "
                  f"{k.get('stream_modes', {})}")
    for line in s["examples"][:10]:
        print("   ! " + line[:400])


def parse_kinds(text):
    kinds = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        for kind in GROUPS.get(item, [item]):
            if kind not in KINDS:
                raise argparse.ArgumentTypeError(f"unknown kind '{kind}' (kinds: "
                                                 f"{', '.join(KINDS)}; groups: {', '.join(GROUPS)})")
            if kind not in kinds:
                kinds.append(kind)
    if not kinds:
        raise argparse.ArgumentTypeError("no kinds")
    return kinds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[1:]))
    parser.add_argument("--build", default="build", help="build folder (server/rectifier-server)")
    parser.add_argument("--server", help="server binary (default BUILD/server/rectifier-server)")
    parser.add_argument("--models", default=os.path.join(ROOT, "models"),
                        help="repository holding scan_classifier and road_detector")
    parser.add_argument("--requests", type=int, default=1000000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--channels", type=int, default=1,
                        help="gRPC channels (connections) per client process")
    parser.add_argument("--kinds", type=parse_kinds, default=KINDS,
                        help="comma-separated kinds or groups (all, unary, streams)")
    parser.add_argument("--stream-ends", default="complete,read,written,early",
                        help="how streams end (comma-separated subset of "
                             "complete,read,written,early)")
    parser.add_argument("--warmup", type=int, default=-1,
                        help="warm-up requests before the RSS baseline "
                             "(default: 5%% of --requests, 2000..50000)")
    parser.add_argument("--time-limit", type=float, default=0,
                        help="seconds for the measured run (default: 300 + requests/40)")
    parser.add_argument("--rpc-timeout", type=float, default=60,
                        help="deadline of each RPC/stream; past it the request counts as lost")
    parser.add_argument("--rtol", type=float, default=1e-4)
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--box-tol", type=float, default=0.01, help="pixels")
    parser.add_argument("--max-rss-growth", type=float, default=5.0, help="percent")
    parser.add_argument("--seed", type=int, default=71001, help="synth.py seed of the inputs")
    parser.add_argument("--server-arg", action="append", default=[],
                        help="extra rectifier-server argument (repeatable)")
    parser.add_argument("--json", help="write the report as JSON to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--corrupt-reference", action="store_true",
                        help="perturb one reference (checks that wrong answers fail the run)")
    args = parser.parse_args()
    if args.requests < 1 or args.concurrency < 1 or args.processes < 1 or args.channels < 1:
        parser.error("--requests, --concurrency, --processes and --channels must be >= 1")
    binary = os.path.abspath(args.server or os.path.join(args.build, "server", "rectifier-server"))
    if not os.access(binary, os.X_OK):
        print(f"soak: no server binary at {binary} (build first: make build)", file=sys.stderr)
        return 2
    stream_ends = [e.strip() for e in args.stream_ends.split(",") if e.strip()]
    if not stream_ends or set(stream_ends) - {"complete", "read", "written", "early"}:
        parser.error("--stream-ends: a subset of complete,read,written,early")
    warmup = args.warmup if args.warmup >= 0 else min(50000, max(2000, args.requests // 20))
    time_limit = args.time_limit or 300 + args.requests / 40

    workdir = tempfile.mkdtemp(prefix="rectifier-soak-")
    server = log = None
    report = {"command": " ".join([os.path.basename(sys.argv[0])] + sys.argv[1:]),
              "requests": args.requests, "concurrency": args.concurrency,
              "processes": args.processes, "kinds": args.kinds, "warmup": warmup}
    failures = []
    try:
        gen = os.path.join(workdir, "gen")
        generate_stubs(gen)
        pb, pb_grpc, vpb, vpb_grpc = import_stubs(gen)
        repo = os.path.join(workdir, "repo")
        make_repository(args.models, repo)
        t0 = time.time()
        server, port, log, log_path, cmd = start_server(binary, repo, workdir, args.server_arg)
        address = f"127.0.0.1:{port}"
        print(f"soak: server pid {server.pid} on {address} ({' '.join(cmd[1:])}); "
              f"log {log_path}", flush=True)
        scans, roads = make_inputs(workdir, args.seed)
        cases = build_cases(pb, vpb, scans, roads)
        compute_references(pb, pb_grpc, vpb, vpb_grpc, address, cases)
        if args.corrupt_reference:
            values = cases["infer_tensor"][0]["ref"][0][3]
            values[0] += 1.0
        print(f"soak: {len(scans)} scans, {len(roads)} road frames "
              f"({sum(n.endswith('.jpg') for n, _, _ in scans + roads)} JPEG), references in "
              f"{time.time() - t0:.1f} s from server start", flush=True)
        cases_path = os.path.join(workdir, "cases.pkl")
        with open(cases_path, "wb") as f:
            pickle.dump(cases, f)
        schedule = make_schedule(args.kinds, args.seed)
        base_cfg = {"gen": gen, "cases": cases_path, "address": address, "schedule": schedule,
                    "seed": args.seed, "rtol": args.rtol, "atol": args.atol,
                    "box_tol": args.box_tol, "rpc_timeout": args.rpc_timeout,
                    "channels": args.channels, "workdir": workdir,
                    "stream_ends": stream_ends}

        rss = {}
        samples = []  # (requests done, seconds, VmRSS kB) every 5 s of the run
        peak = [0]
        server_cpu0 = [None]
        last_print = [0.0]

        def watch(total, track):
            def on_progress(done, elapsed):
                kb = vm_rss_kb(server.pid)
                if kb and track:
                    peak[0] = max(peak[0], kb)
                    if elapsed - samples[-1][1] >= 5 if samples else True:
                        samples.append((done, round(elapsed, 1), kb))
                    if "at_10pct_kb" not in rss and done >= total // 10:
                        rss["at_10pct_kb"] = kb
                if elapsed - last_print[0] >= 10:
                    last_print[0] = elapsed
                    print(f"soak: {done}/{total} done, {elapsed:.0f} s, "
                          f"{done / max(elapsed, 1e-9):.0f}/s, server RSS "
                          f"{(kb or 0) / 1024:.1f} MiB", flush=True)
            return on_progress

        if warmup:
            base_cfg["end_time"] = time.time() + time_limit
            stats, elapsed = run_phase("warmup", warmup, args, base_cfg, server,
                                       watch(warmup, False))
            report["warmup_result"] = summarize(stats, args.kinds, elapsed)
            print_summary("warm-up", report["warmup_result"])
        if server.poll() is None:
            settle(server.pid)
            rss["start_kb"] = vm_rss_kb(server.pid)
            peak[0] = rss["start_kb"]
            server_cpu0[0] = cpu_seconds(server.pid)
            last_print[0] = 0.0
            base_cfg["end_time"] = time.time() + time_limit
            stats, elapsed = run_phase("run", args.requests, args, base_cfg, server,
                                       watch(args.requests, True))
            result = summarize(stats, args.kinds, elapsed)
            if server.poll() is None:
                cpu_end = cpu_seconds(server.pid)
                settle(server.pid)
                rss["end_kb"] = vm_rss_kb(server.pid)
                if cpu_end is not None and server_cpu0[0] is not None:
                    result["server_cpu_s"] = round(cpu_end - server_cpu0[0], 1)
            rss["peak_kb"] = peak[0]
            rss["samples"] = samples
            if rss.get("start_kb") and rss.get("end_kb"):
                rss["growth_pct"] = round(100.0 * (rss["end_kb"] - rss["start_kb"]) /
                                          rss["start_kb"], 2)
            result["rss"] = rss
            report["result"] = result
            print_summary("run", result)
            if "end_kb" in rss:
                print(f"   server RSS: start (after warm-up) {rss['start_kb'] / 1024:.1f} MiB, "
                      f"at 10% {rss.get('at_10pct_kb', 0) / 1024:.1f} MiB, end "
                      f"{rss['end_kb'] / 1024:.1f} MiB, peak {rss['peak_kb'] / 1024:.1f} MiB, "
                      f"growth {rss.get('growth_pct', 'n/a')}%; server CPU "
                      f"{result.get('server_cpu_s', 'n/a')} s")
            if result["sent"] < args.requests:
                failures.append(f"only {result['sent']} of {args.requests} requests sent "
                                f"(time limit {time_limit:.0f} s, or the server died)")
            if rss.get("growth_pct", 0) > args.max_rss_growth:
                failures.append(f"server RSS grew {rss['growth_pct']}% after the warm-up "
                                f"(limit {args.max_rss_growth}%)")
        for phase, label in (("warmup_result", "warm-up"), ("result", "run")):
            s = report.get(phase)
            if not s:
                continue
            if s["lost"]:
                failures.append(f"{label}: {s['lost']} requests lost")
            if s["wrong"]:
                failures.append(f"{label}: {s['wrong']} wrong answers")
            if s["errors_unexpected"]:
                failures.append(f"{label}: unexpected errors {s['errors_unexpected']}")
    except Exception as e:
        failures.append(f"setup: {e!r}")
    finally:
        if server is not None:
            code = server.poll()
            if code is not None:
                failures.append(f"server died during the soak (exit code {code}, signal "
                                f"{-code if code < 0 else 'none'}); log {log_path}")
                report["server_exit"] = code
            else:
                server.send_signal(signal.SIGTERM)
                try:
                    code = server.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    server.kill()
                    code = server.wait()
                report["server_exit"] = code
                if code != 0:
                    failures.append(f"server exited {code} after SIGTERM")
            if failures and log is not None:
                log.seek(0)
                tail = log.read().splitlines()[-15:]
                print("soak: server log tail:\n  " + "\n  ".join(tail), file=sys.stderr)
        if log is not None:
            log.close()
        report["failures"] = failures
        if args.json:
            with open(args.json, "w") as f:
                json.dump(report, f, indent=1)
        if args.keep or (failures and server is not None and report.get("server_exit") not in (0,)):
            print(f"soak: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if failures:
        print("soak: FAILED:\n  " + "\n  ".join(failures))
        return 1
    print("soak: PASSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
