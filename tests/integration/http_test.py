#!/usr/bin/python3
"""The KServe v2 HTTP/REST endpoint, driven as Triton users drive it.

Starts rectifier-server (explicit control mode, a small repository written
here) and calls every route with Python's http.client and with curl:
health, server and model metadata, model readiness, config, statistics,
inference with JSON tensors and with the binary tensor data extension
(inputs and outputs, mixed), encoded images as BYTES, repository index,
unload and load, and the image routes (/v1/models/M/classify, /detect and /segment,
raw and multipart bodies). Each answer is compared with what the gRPC
endpoint of the same server returns for the same input. Then the error paths: malformed
JSON, wrong shapes and types, unknown models, inputs and routes, a wrong
method, a body over --max-message-mb, a deadline, and the request metrics
(api="kserve_http"). A second server checks bearer tokens over HTTP, a
third and fourth what --tls-cert does to the HTTP port.

  /usr/bin/python3 tests/integration/http_test.py --server build/server/rectifier-server
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import python_client_test as interop  # noqa: E402  (stubs, models, images, certificates)

shutil.rmtree(interop.WORK, ignore_errors=True)  # its scratch folder; this test has its own
SERVER = None
WORK = tempfile.mkdtemp(prefix="rectifier-httptest-")


def start_server(args, log_path):
    """Starts the server; returns (process, log, ports dict) once it logged its ports."""
    log = open(log_path, "w+")
    process = subprocess.Popen([SERVER] + args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.time() + 60
    while time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
        log.seek(0)
        match = re.search(r"serving gRPC on port (\d+).*HTTP on port (\d+).*metrics on port (\d+)",
                          log.read())
        if match:
            ports = dict(zip(("grpc", "http", "metrics"), map(int, match.groups())))
            return process, log, ports
    log.seek(0)
    raise RuntimeError("server did not start: " + log.read())


def stop_server(process, log):
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=30)
    log.close()
    return code


class HttpEndpointTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc
        interop.generate_stubs(os.path.join(WORK, "gen"))
        repo = os.path.join(WORK, "repo")
        interop.write_model(repo)
        # A real detector for the /detect route: the default model, linked in.
        for default_model in ("road_detector", "scan_classifier", "scan_segmenter"):
            os.symlink(os.path.join(interop.ROOT, "models", default_model),
                       os.path.join(repo, default_model))
        cls.server, cls.log, cls.ports = start_server(
            ["--model-repository", repo, "--model-control-mode", "explicit",
             "--load-model", "double", "--load-model", "brightness",
             "--load-model", "road_detector", "--load-model", "scan_classifier",
             "--load-model", "scan_segmenter",
             "--grpc-address", "127.0.0.1:0", "--http-address", "127.0.0.1:0",
             "--metrics-address", "127.0.0.1:0", "--max-message-mb", "1",
             "--allow-client-shm"],
            os.path.join(WORK, "server.log"))
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.ports['grpc']}")
        import grpc_service_pb2_grpc
        cls.stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        code = stop_server(cls.server, cls.log)
        assert code == 0, f"server exited {code}"

    def request(self, method, path, body=None, headers=None):
        """(status, headers dict with lower-case names, body bytes) over a fresh connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=30)
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        data = response.read()
        connection.close()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, data

    def get_json(self, path, expected=200):
        status, headers, body = self.request("GET", path)
        self.assertEqual(status, expected, body)
        self.assertEqual(headers["content-type"], "application/json")
        return json.loads(body)

    def infer(self, model, payload, binary=b"", headers=None, expected=200):
        body = json.dumps(payload).encode()
        all_headers = dict(headers or {})
        if binary:
            all_headers["Inference-Header-Content-Length"] = str(len(body))
        status, reply_headers, data = self.request("POST", f"/v2/models/{model}/infer",
                                                   body + binary, all_headers)
        self.assertEqual(status, expected, data)
        if status != 200:
            return json.loads(data)
        length = int(reply_headers.get("inference-header-content-length", len(data)))
        return json.loads(data[:length]), data[length:]

    def error(self, method, path, body=b"", headers=None):
        status, headers, data = self.request(method, path, body, headers)
        self.assertEqual(headers.get("content-type"), "application/json")
        return status, json.loads(data)["error"]

    # --- health and metadata -------------------------------------------------

    def test_health(self):
        for path in ("/v2/health/live", "/v2/health/ready"):
            status, _, body = self.request("GET", path)
            self.assertEqual((status, body), (200, b""))
            status, _, body = self.request("HEAD", path)
            self.assertEqual(status, 200)
        self.assertEqual(self.request("GET", "/v2/models/double/ready")[0], 200)
        self.assertEqual(self.request("GET", "/v2/models/double/versions/1/ready")[0], 200)
        self.assertEqual(self.request("GET", "/v2/models/double/versions/9/ready")[0], 400)
        self.assertEqual(self.request("GET", "/v2/models/nothing/ready")[0], 400)

    def test_server_metadata(self):
        import grpc_service_pb2 as pb
        metadata = self.get_json("/v2")
        grpc_metadata = self.stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
        self.assertEqual(metadata["name"], grpc_metadata.name)
        self.assertEqual(metadata["version"], grpc_metadata.version)
        self.assertEqual(metadata["extensions"],
                         list(grpc_metadata.extensions) + ["binary_tensor_data"])
        self.assertIn("system_shared_memory", metadata["extensions"])  # --allow-client-shm

    def test_model_metadata_and_config_equal_grpc(self):
        import grpc_service_pb2 as pb
        for path in ("/v2/models/double", "/v2/models/double/versions/1"):
            metadata = self.get_json(path)
            reply = self.stub.ModelMetadata(pb.ModelMetadataRequest(name="double"), timeout=10)
            self.assertEqual(metadata["name"], reply.name)
            self.assertEqual(metadata["versions"], list(reply.versions))
            self.assertEqual(metadata["platform"], reply.platform)
            self.assertEqual(metadata["inputs"],
                             [{"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
                              for t in reply.inputs])
            self.assertEqual(metadata["inputs"][0]["shape"], [-1, 3, 2, 2])  # numbers, not strings
        config = self.get_json("/v2/models/brightness/config")
        reply = self.stub.ModelConfig(pb.ModelConfigRequest(name="brightness"), timeout=10).config
        self.assertEqual(config["name"], "brightness")
        self.assertEqual(config["max_batch_size"], reply.max_batch_size)
        self.assertEqual(config["input"][0]["dims"], list(reply.input[0].dims))
        self.assertEqual(config["postprocessing"]["labels"], ["bright", "dark"])
        self.assertIn("rectifier.activations", config["parameters"])
        self.assertEqual(config["parameters"]["rectifier.preprocessing"]["string_value"],
                         "gray 8x8 NCHW, stretch (linear), x * 0.00392157, mean [0, 0, 0], "
                         "std [1, 1, 1], 16-bit min-max")
        # A model without a preprocessing block says that defaults apply, in
        # its config and once in the load log.
        defaults = self.get_json("/v2/models/double/config")["parameters"]
        self.assertTrue(defaults["rectifier.preprocessing"]["string_value"].startswith(
            "defaults (no preprocessing block): RGB 2x2 NCHW, stretch (linear), x * 0.00392157"))
        self.log.seek(0)
        log = self.log.read()
        self.assertIn("model=double version=1 has no preprocessing block in config.pbtxt", log)
        # One line per model (times, the plans warm-up compiled: one per
        # batch size, and the one-thread plans of the batches it splits),
        # then a summary.
        self.assertRegex(log, r"model=double version=1 loaded in [0-9.]+ s \(import [0-9.]+ s, "
                              r"plans and warm-up [0-9.]+ s\): .* ([89]|1[0-9]) plan\(s\) for "
                              r"batch 1,2,3,4,5,6,7,8")
        self.assertIn("models: 5 ready", log)
        # The OpenMP waiting policy and malloc mode the server re-executed
        # with (its defaults, unless this environment sets its own).
        if not any(k in os.environ for k in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")):
            self.assertIn("runtime: OMP_WAIT_POLICY=ACTIVE GOMP_SPINCOUNT=10000, ", log)
        if "glibc.malloc." not in os.environ.get("GLIBC_TUNABLES", ""):
            self.assertRegex(log, r"runtime: .*, malloc from the heap only")
        if os.environ.get("RECTIFIER_MUTEX_DEADLOCK_DETECTION") != "1":
            self.assertRegex(log, r"runtime: .*, mutex deadlock detection off")
        self.assertNotIn("model=brightness version=1 has no preprocessing block", log)
        status, message = self.error("GET", "/v2/models/nothing")
        self.assertEqual(status, 404)
        self.assertIn("nothing", message)
        self.assertEqual(self.error("GET", "/v2/models/double/versions/9/config")[0], 404)

    # --- inference -------------------------------------------------------------

    def grpc_double(self, x):
        import numpy as np
        import grpc_service_pb2 as pb
        request = pb.ModelInferRequest(model_name="double")
        request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
        request.raw_input_contents.append(x.tobytes())
        reply = self.stub.ModelInfer(request, timeout=30)
        return np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(x.shape)

    def test_infer_json_binary_and_mixed_equal_grpc(self):
        import numpy as np
        x = (np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 7.25) / 3
        expected = self.grpc_double(x)
        # JSON in, JSON out; nested data as well as flat.
        for data in (x.flatten().tolist(), x.tolist()):
            reply, tail = self.infer("double", {
                "id": "h-1",
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 2, 2], "data": data}]})
            self.assertEqual(tail, b"")
            self.assertEqual(reply["id"], "h-1")
            self.assertEqual((reply["model_name"], reply["model_version"]), ("double", "1"))
            out = reply["outputs"][0]
            self.assertEqual((out["name"], out["datatype"], out["shape"]),
                             ("y", "FP32", [2, 3, 2, 2]))
            np.testing.assert_array_equal(np.array(out["data"], np.float32).reshape(x.shape),
                                          expected)
        # Binary in, binary out.
        raw = x.tobytes()
        reply, tail = self.infer("double", {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 2, 2],
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}, binary=raw)
        self.assertEqual(reply["outputs"][0]["parameters"]["binary_data_size"], len(raw))
        self.assertNotIn("data", reply["outputs"][0])
        np.testing.assert_array_equal(np.frombuffer(tail, np.float32).reshape(x.shape), expected)
        # Binary in, JSON out; JSON in, binary out for every output.
        reply, tail = self.infer("double", {
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 2, 2],
                        "parameters": {"binary_data_size": len(raw)}}]}, binary=raw)
        np.testing.assert_array_equal(
            np.array(reply["outputs"][0]["data"], np.float32).reshape(x.shape), expected)
        reply, tail = self.infer("double", {
            "parameters": {"binary_data_output": True},
            "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 2, 2],
                        "data": x.flatten().tolist()}]})
        np.testing.assert_array_equal(np.frombuffer(tail, np.float32).reshape(x.shape), expected)

    def test_system_shared_memory_over_http_and_grpc(self):
        """Triton's system shared memory, from Python's shared_memory module:
        regions registered over one transport serve the other; the input is
        read from one region and the output written to another."""
        import numpy as np
        import grpc_service_pb2 as pb
        from multiprocessing import shared_memory
        x = (np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2) - 3) / 4
        expected = self.grpc_double(x)
        block = shared_memory.SharedMemory(create=True, size=4096)
        try:
            block.buf[256:256 + x.nbytes] = x.tobytes()
            key = "/" + block.name.lstrip("/")
            status, _, body = self.request("POST", "/v2/systemsharedmemory/region/in/register",
                                           json.dumps({"key": key, "offset": 256,
                                                       "byte_size": 1024}).encode())
            self.assertEqual(status, 200, body)
            self.stub.SystemSharedMemoryRegister(pb.SystemSharedMemoryRegisterRequest(
                name="out", key=key, offset=2048, byte_size=1024), timeout=10)
            listed = self.get_json("/v2/systemsharedmemory/status")
            self.assertEqual(sorted(r["name"] for r in listed), ["in", "out"])
            self.assertEqual(self.get_json("/v2/systemsharedmemory/region/in/status"),
                             [{"name": "in", "key": key, "offset": 256, "byte_size": 1024}])
            shm = {"shared_memory_region": "in", "shared_memory_byte_size": x.nbytes}
            out_shm = {"shared_memory_region": "out", "shared_memory_byte_size": 1024}
            reply, tail = self.infer("double", {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 2, 2],
                            "parameters": shm}],
                "outputs": [{"name": "y", "parameters": out_shm}]})
            self.assertEqual(tail, b"")
            self.assertNotIn("data", reply["outputs"][0])
            self.assertEqual(reply["outputs"][0]["parameters"]["shared_memory_byte_size"],
                             x.nbytes)
            got = np.frombuffer(bytes(block.buf[2048:2048 + x.nbytes]), np.float32)
            np.testing.assert_array_equal(got.reshape(x.shape), expected)
            # The same over gRPC, the output back in the response.
            request = pb.ModelInferRequest(model_name="double")
            tensor = request.inputs.add(name="x", datatype="FP32", shape=[2, 3, 2, 2])
            tensor.parameters["shared_memory_region"].string_param = "in"
            tensor.parameters["shared_memory_byte_size"].int64_param = x.nbytes
            reply = self.stub.ModelInfer(request, timeout=30)
            np.testing.assert_array_equal(
                np.frombuffer(reply.raw_output_contents[0], np.float32).reshape(x.shape), expected)
            # Errors name the problem: a path as key, an unknown region.
            status, message = self.error("POST", "/v2/systemsharedmemory/region/bad/register",
                                         json.dumps({"key": "/../etc/passwd",
                                                     "byte_size": 8}).encode())
            self.assertEqual(status, 400)
            self.assertIn("is not '/' followed by", message)
            message = self.infer("double", {
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 3, 2, 2],
                            "parameters": {**shm, "shared_memory_region": "nope"}}]},
                expected=400)["error"]
            self.assertIn("no shared memory region 'nope'", message)
            status, _, body = self.request("POST", "/v2/systemsharedmemory/unregister")
            self.assertEqual(status, 200, body)
            self.assertEqual(self.get_json("/v2/systemsharedmemory/status"), [])
        finally:
            block.close()
            block.unlink()

    def test_datatype_rules_are_grpc_s(self):
        # INT32 does not convert to FP32 losslessly: refused over both transports.
        import grpc
        import grpc_service_pb2 as pb
        message = self.infer("double", {"inputs": [
            {"name": "x", "datatype": "INT32", "shape": [1, 3, 2, 2], "data": list(range(12))}]},
            expected=400)["error"]
        request = pb.ModelInferRequest(model_name="double")
        request.inputs.add(name="x", datatype="INT32", shape=[1, 3, 2, 2])
        request.raw_input_contents.append(bytes(48))
        with self.assertRaises(grpc.RpcError) as caught:
            self.stub.ModelInfer(request, timeout=10)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(message, caught.exception.details())

    def test_encoded_images_as_bytes_equal_grpc(self):
        import numpy as np
        import grpc_service_pb2 as pb
        images = [interop.pgm(12, 10, 204), interop.pgm(5, 5, 51)]
        request = pb.ModelInferRequest(model_name="brightness")
        request.inputs.add(name="image", datatype="BYTES", shape=[2]).contents.bytes_contents.extend(
            images)
        grpc_logits = np.frombuffer(self.stub.ModelInfer(request, timeout=30).raw_output_contents[0],
                                    np.float32)
        raw = b"".join(struct.pack("<I", len(i)) + i for i in images)
        reply, tail = self.infer("brightness", {
            "inputs": [{"name": "image", "datatype": "BYTES", "shape": [2],
                        "parameters": {"binary_data_size": len(raw)}}],
            "outputs": [{"name": "logits", "parameters": {"binary_data": True}}]}, binary=raw)
        self.assertEqual(reply["outputs"][0]["shape"], [2, 2])
        np.testing.assert_array_equal(np.frombuffer(tail, np.float32), grpc_logits)

    def test_curl(self):
        base = f"http://127.0.0.1:{self.ports['http']}"
        out = subprocess.run(["curl", "-sS", "-f", f"{base}/v2/health/ready", "-o", "/dev/null",
                              "-w", "%{http_code}"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.stdout, "200", out.stderr)
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 2, 2],
                                       "data": [0.5] * 12}]})
        out = subprocess.run(["curl", "-sS", "-f", "-X", "POST", "-H",
                              "Content-Type: application/json", "-d", body,
                              f"{base}/v2/models/double/infer"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0, out.stderr)
        self.assertEqual(json.loads(out.stdout)["outputs"][0]["data"], [1.0] * 12)
        out = subprocess.run(["curl", "-sS", f"{base}/v2/models/double/stats"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(json.loads(out.stdout)["model_stats"][0]["name"], "double")

    def test_keep_alive_connection_serves_many_requests(self):
        connection = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=30)
        body = json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 3, 2, 2],
                                       "data": [1.0] * 12}]})
        for _ in range(20):
            connection.request("POST", "/v2/models/double/infer", body)
            response = connection.getresponse()
            self.assertEqual(response.status, 200)
            self.assertEqual(json.loads(response.read())["outputs"][0]["data"], [2.0] * 12)
        connection.close()

    # --- image routes (/v1) ---------------------------------------------------

    @staticmethod
    def without_timing(answer):
        for result in answer["results"]:
            result.pop("timing")
        return answer

    def post_images(self, route, images, query="", expected=200):
        """Raw body for one unnamed image, multipart/form-data for (name, bytes) pairs."""
        if isinstance(images, bytes):
            body, headers = images, {"Content-Type": "application/octet-stream"}
        else:
            boundary = "rectifier-" + os.urandom(8).hex()
            body = b"".join(
                f'--{boundary}\r\nContent-Disposition: form-data; name="image"; '
                f'filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
                + data + b"\r\n" for name, data in images) + f"--{boundary}--\r\n".encode()
            headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        status, _, data = self.request("POST", route + query, body, headers)
        self.assertEqual(status, expected, data)
        return json.loads(data)

    def test_classify_route_equals_grpc(self):
        from rectifier.v1 import vision_pb2, vision_pb2_grpc
        images = [("bright.pgm", interop.pgm(9, 9, 230)), ("dark.pgm", interop.pgm(6, 4, 20))]
        answer = self.post_images("/v1/models/brightness/classify", images, "?top_k=2&id=c1")
        self.assertEqual((answer["model_name"], answer["model_version"], answer["id"]),
                         ("brightness", "1", "c1"))
        self.assertEqual([r["file"] for r in answer["results"]], ["bright.pgm", "dark.pgm"])
        self.assertEqual([r["classes"][0]["label"] for r in answer["results"]], ["bright", "dark"])
        request = vision_pb2.ClassifyRequest(model_name="brightness", top_k=2, id="c1")
        for _, data in images:
            request.images.add(data=data)
        reply = vision_pb2_grpc.VisionStub(self.channel).Classify(request, timeout=30)
        for got, want in zip(answer["results"], reply.results):
            self.assertEqual([(c["label"], c["class_id"]) for c in got["classes"]],
                             [(c.label, c.class_id) for c in want.classes])
            for c, w in zip(got["classes"], want.classes):
                self.assertAlmostEqual(c["score"], w.score, places=6)
            self.assertEqual((got["image"]["width"], got["image"]["format"]),
                             (want.image.width, want.image.format))
        # One image as the raw body; the model's top_k applies.
        answer = self.post_images("/v1/models/brightness/versions/1/classify", images[0][1])
        self.assertEqual(answer["results"][0]["file"], "")
        self.assertEqual(answer["results"][0]["classes"][0]["label"], "bright")

    def test_detect_route_equals_grpc(self):
        from rectifier.v1 import vision_pb2, vision_pb2_grpc
        # A small JPEG in which the detector finds cars (a flat image has none).
        image = interop.read(os.path.join(interop.ROOT, "fuzz", "corpus", "image_decode",
                                          "ycbcr420_32x16.jpg"))
        answer = self.post_images("/v1/models/road_detector/detect", [("frame.jpg", image)],
                                  "?score_threshold=0.05&max_detections=5")
        request = vision_pb2.DetectRequest(model_name="road_detector", score_threshold=0.05,
                                           max_detections=5)
        request.images.add(data=image)
        reply = vision_pb2_grpc.VisionStub(self.channel).Detect(request, timeout=30)
        got = answer["results"][0]["detections"]
        want = reply.results[0].detections
        self.assertGreater(len(got), 0)
        self.assertEqual(len(got), len(want))
        for g, w in zip(got, want):
            self.assertEqual((g["label"], g["class_id"]), (w.label, w.class_id))
            self.assertAlmostEqual(g["score"], w.score, places=5)
            for a, b in zip(g["box"], (w.box.x1, w.box.y1, w.box.x2, w.box.y2)):
                self.assertAlmostEqual(a, b, places=3)

    def test_segment_route_equals_grpc(self):
        import base64
        import numpy as np
        from rectifier.v1 import vision_pb2, vision_pb2_grpc
        synth = os.path.join(interop.ROOT, "models", "tools", "synth.py")
        out = os.path.join(WORK, "synth-seg")
        subprocess.run(["/usr/bin/python3", synth, "scan", "--seed", "77", "--count", "3",
                        "--width", "160", "--out", out], check=True, capture_output=True,
                       timeout=120)
        images = [(f"scan_{i:04d}.png", interop.read(os.path.join(out, f"scan_{i:04d}.png")))
                  for i in range(3)]
        answer = self.post_images("/v1/models/scan_segmenter/segment", images,
                                  "?probabilities=1&id=s1")
        self.assertEqual(answer["id"], "s1")
        request = vision_pb2.SegmentRequest(model_name="scan_segmenter", probability_classes=[1])
        for _, data in images:
            request.images.add(data=data)
        reply = vision_pb2_grpc.VisionStub(self.channel).Segment(request, timeout=60)
        # The server may batch the three images differently on the two calls
        # (3, or 1 + 2, ...), and a plan for another batch size may have been
        # tuned to another layout (timed at load, so it depends on the
        # machine's load), which rounds the last float bit otherwise: the
        # 16-bit probabilities may then move by a step or two, and a pixel
        # at a near-tie may change class. As the classify and detect routes'
        # tests, compare within that; swapped or corrupted images differ in
        # thousands of pixels.
        near = 160 * 160 // 1000
        for (name, _), got, want in zip(images, answer["results"], reply.results):
            self.assertEqual(got["file"], name)
            self.assertEqual((got["width"], got["height"]), (160, 160))
            got_mask = png_pixels(base64.b64decode(got["mask_png"]))
            want_mask = png_pixels(want.mask_png)
            self.assertEqual(got_mask.shape, want_mask.shape)
            self.assertLessEqual(int((got_mask != want_mask).sum()), near, name)
            got_p = png_pixels(base64.b64decode(got["probabilities"][0]["png"]))
            want_p = png_pixels(want.probabilities[0].png)
            self.assertEqual(got_p.shape, want_p.shape)
            self.assertLessEqual(int(np.abs(got_p - want_p).max()), 4, name)
            self.assertEqual([c["label"] for c in got["classes"]], [c.label for c in want.classes])
            for c, w in zip(got["classes"], want.classes):
                self.assertLessEqual(abs(c["pixels"] - w.pixels), near, name)
        self.assertIn("probability_classes: class 7 does not exist",
                      self.post_images("/v1/models/scan_segmenter/segment", images[0][1],
                                       "?probabilities=7", expected=400)["error"])
        self.assertIn("unknown query parameter 'top_k'",
                      self.post_images("/v1/models/scan_segmenter/segment", images[0][1],
                                       "?top_k=1", expected=400)["error"])

    def test_synthetic_dicom_scans_classify_as_their_png_twins(self):
        # models/tools/synth.py --dicom writes the same scans as 16-bit DICOM.
        synth = os.path.join(interop.ROOT, "models", "tools", "synth.py")
        for kind, extra in (("png", []), ("dcm", ["--dicom"])):
            subprocess.run(["/usr/bin/python3", synth, "scan", "--seed", "9001", "--count", "4",
                            "--out", os.path.join(WORK, "synth-" + kind)] + extra,
                           check=True, capture_output=True, timeout=120)
        with open(os.path.join(WORK, "synth-dcm", "ground_truth.json")) as f:
            truth = json.load(f)["samples"]
        for i, sample in enumerate(truth):
            labels = {}
            for kind in ("png", "dcm"):
                answer = self.post_images(
                    "/v1/models/scan_classifier/classify",
                    interop.read(os.path.join(WORK, "synth-" + kind, f"scan_{i:04d}.{kind}")))
                result = answer["results"][0]
                labels[kind] = result["classes"][0]["label"]
                if kind == "dcm":
                    self.assertEqual(result["image"]["format"], "dicom")
                    self.assertEqual(result["image"]["dicom"]["modality"], "CR")
            self.assertEqual(labels["dcm"], labels["png"], sample["file"])

    def test_image_route_errors(self):
        image = interop.pgm(9, 9, 230)
        route = "/v1/models/brightness/classify"
        self.assertIn("unknown query parameter 'topk'",
                      self.post_images(route, image, "?topk=1", expected=400)["error"])
        self.assertIn("top_k", self.post_images(route, image, "?top_k=x", expected=400)["error"])
        self.assertIn("empty", self.post_images(route, b"", expected=400)["error"])
        self.assertIn("use Classify",
                      self.post_images("/v1/models/brightness/detect", image,
                                       expected=400)["error"])
        self.assertIn("PNG", self.post_images(route, b"\x89PNG\r\n\x1a\nbroken",
                                              expected=400)["error"])
        self.assertEqual(self.post_images("/v1/models/nothing/classify", image,
                                          expected=404)["error"], "unknown model 'nothing'")
        status, _, data = self.request("POST", route, b"--x\r\n\r\nabc",
                                       {"Content-Type": "multipart/form-data; boundary=x"})
        self.assertEqual(status, 400)
        self.assertIn("closing boundary", json.loads(data)["error"])

    # --- errors ---------------------------------------------------------------------

    def test_malformed_requests_get_400_naming_the_problem(self):
        path = "/v2/models/double/infer"
        good = {"name": "x", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [1.0] * 12}
        cases = [
            (b"{", "not valid JSON"),
            (json.dumps({"inputs": [dict(good, shape=[1, 3, 2, 3], data=[1.0] * 18)]}),
             "shape"),
            (json.dumps({"inputs": [dict(good, data=[1.0] * 11)]}), "11 data elements"),
            (json.dumps({"inputs": [dict(good, name="z")]}), "its inputs: 'x'"),
            (json.dumps({"inputs": [dict(good, data=["a"] * 12)]}), "expected a number"),
            (json.dumps({"inputs": [dict(good, datatype="FP16")]}), "binary data"),
            (json.dumps({"inputs": [good], "outputs": [{"name": "nope"}]}), "nope"),
            (json.dumps({"inputs": [good], "parameters": {"timeout": -1}}), "timeout"),
        ]
        for body, fragment in cases:
            status, message = self.error("POST", path, body)
            self.assertEqual(status, 400, message)
            self.assertIn(fragment, message)
        status, message = self.error("POST", path, json.dumps({"inputs": [good]}).encode(),
                                     {"Inference-Header-Content-Length": "100000"})
        self.assertEqual(status, 400)
        self.assertIn("Inference-Header-Content-Length", message)

    def test_unknown_routes_models_and_methods(self):
        status, message = self.error("GET", "/v2/modelz")
        self.assertEqual(status, 404)
        self.assertIn("/v2/modelz", message)
        status, message = self.error("POST", "/v2/models/nothing/infer", json.dumps({"inputs": [
            {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}))
        self.assertEqual(status, 404)
        self.assertIn("nothing", message)
        status, headers, data = self.request("GET", "/v2/models/double/infer")
        self.assertEqual(status, 405)
        self.assertEqual(headers["allow"], "POST")
        self.assertIn("use POST", json.loads(data)["error"])
        self.assertEqual(self.request("POST", "/v2/health/ready")[0], 405)

    def test_body_over_the_limit_is_413(self):
        # Only the headers: the server answers from Content-Length, before the body.
        with socket.create_connection(("127.0.0.1", self.ports["http"]), timeout=30) as s:
            s.sendall(b"POST /v2/models/double/infer HTTP/1.1\r\nHost: x\r\n"
                      b"Content-Length: 2097152\r\n\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply:
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
        self.assertTrue(reply.startswith(b"HTTP/1.1 413"), reply[:100])

    def test_deadline_header_and_parameter(self):
        good = {"name": "x", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [1.0] * 12}
        status, message = self.error("POST", "/v2/models/double/infer",
                                     json.dumps({"inputs": [good]}), {"Request-Timeout-Ms": "0"})
        self.assertEqual(status, 504, message)
        status, message = self.error("POST", "/v2/models/double/infer",
                                     json.dumps({"inputs": [good]}), {"Request-Timeout-Ms": "x"})
        self.assertEqual(status, 400)
        self.assertIn("Request-Timeout-Ms", message)
        reply, _ = self.infer("double", {"inputs": [good], "parameters": {"timeout": 10000000}})
        self.assertEqual(reply["outputs"][0]["data"], [2.0] * 12)

    def test_statistics_and_metrics_count_http_requests(self):
        import grpc_service_pb2 as pb
        good = {"name": "x", "datatype": "FP32", "shape": [1, 3, 2, 2], "data": [1.0] * 12}
        self.infer("double", {"inputs": [good]})
        stats = self.get_json("/v2/models/double/stats")["model_stats"]
        reply = self.stub.ModelStatistics(pb.ModelStatisticsRequest(name="double"), timeout=10)
        self.assertEqual(len(stats), 1)
        self.assertGreaterEqual(stats[0]["inference_count"], 1)
        self.assertLessEqual(stats[0]["inference_count"], reply.model_stats[0].inference_count)
        self.assertIn("count", stats[0]["inference_stats"]["fail"])
        everything = self.get_json("/v2/models/stats")["model_stats"]
        self.assertEqual(sorted(s["name"] for s in everything),
                         ["brightness", "double", "road_detector", "scan_classifier", "scan_segmenter"])
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['metrics']}/metrics",
                                    timeout=30) as response:
            text = response.read().decode()
        match = re.search(r'rectifier_requests_total\{api="kserve_http",model="double",'
                          r'outcome="success",version="1"\} (\d+)', text)
        self.assertIsNotNone(match, "no kserve_http series")
        self.assertGreaterEqual(int(match.group(1)), 1)
        self.post_images("/v1/models/brightness/classify", interop.pgm(4, 4, 9))
        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['metrics']}/metrics",
                                    timeout=30) as response:
            text = response.read().decode()
        self.assertRegex(text, r'rectifier_requests_total\{api="vision_http",model="brightness",'
                               r'outcome="success",version="1"\} [1-9]')

    # --- repository ----------------------------------------------------------

    def test_repository_index_unload_load(self):
        status, _, data = self.request("POST", "/v2/repository/index", b"")
        self.assertEqual(status, 200)
        index = json.loads(data)
        self.assertEqual(sorted(m["name"] for m in index),
                         ["brightness", "double", "road_detector", "scan_classifier", "scan_segmenter"])
        self.assertTrue(all(m["state"] == "READY" for m in index))
        status, _, _ = self.request("POST", "/v2/repository/models/brightness/unload", b"")
        self.assertEqual(status, 200)
        self.assertEqual(self.request("GET", "/v2/models/brightness/ready")[0], 400)
        status, _, data = self.request("POST", "/v2/repository/index", b'{"ready": true}')
        self.assertEqual([m["name"] for m in json.loads(data)],
                         ["double", "road_detector", "scan_classifier", "scan_segmenter"])
        status, _, _ = self.request("POST", "/v2/repository/models/brightness/load", b"{}")
        self.assertEqual(status, 200)
        self.assertEqual(self.request("GET", "/v2/models/brightness/ready")[0], 200)
        status, message = self.error("POST", "/v2/repository/models/nothing/load")
        self.assertEqual(status, 404, message)
        # While unloaded, a call names the way back (explicit mode).
        self.request("POST", "/v2/repository/models/brightness/unload", b"")
        status, message = self.error("GET", "/v2/models/brightness")
        self.assertEqual(status, 404)
        self.assertIn("is in the repository but not loaded", message)
        self.assertIn("rectifier-client load brightness", message)
        self.assertEqual(self.request("POST", "/v2/repository/models/brightness/load", b"")[0],
                         200)
        status, message = self.error("POST", "/v2/repository/models/double/load",
                                     b'{"parameters": {"config": "{}"}}')
        self.assertEqual(status, 501, message)
        status, message = self.error("POST", "/v2/repository/index", b'{"ready": 1}')
        self.assertEqual(status, 400)


class BusyPortTest(unittest.TestCase):
    """A port in use stops the start at once, before any model compiles."""

    def test_busy_http_port_fails_before_loading(self):
        repo = os.path.join(WORK, "repo-busy")
        interop.write_model(repo)
        with socket.socket() as busy:
            busy.bind(("127.0.0.1", 0))
            busy.listen(1)
            port = busy.getsockname()[1]
            out = subprocess.run([SERVER, "--model-repository", repo, "--grpc-address",
                                  "127.0.0.1:0", "--metrics-address", "", "--http-address",
                                  f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        text = out.stdout + out.stderr
        self.assertIn(f"--http-address '127.0.0.1:{port}' cannot be bound", text)
        self.assertNotIn("loaded", text)


def png_pixels(data):
    """A grayscale PNG (8 or 16 bits) as an int32 numpy array."""
    import io
    import numpy as np
    from PIL import Image
    with Image.open(io.BytesIO(data)) as image:
        return np.array(image, dtype=np.int32)


def resident_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def double_server(name, max_message_mb):
    """A server of its own for the `double` model with HTTP on and a body
    limit of `max_message_mb`: (process, log, ports)."""
    repo = os.path.join(WORK, f"repo-{name}")
    interop.write_model(repo)
    return start_server(
        ["--model-repository", repo, "--grpc-address", "127.0.0.1:0", "--http-address",
         "127.0.0.1:0", "--metrics-address", "", "--max-message-mb", str(max_message_mb)],
        os.path.join(WORK, f"server-{name}.log"))


class AnnouncedBodiesTest(unittest.TestCase):
    """A Content-Length alone costs no memory: bodies grow with what arrives."""

    def test_announced_but_unsent_bodies_do_not_allocate(self):
        process, log, ports = double_server("bodies", 1024)
        sockets = []
        try:
            before = resident_mb(process.pid)
            for _ in range(12):  # fewer than --http-threads: each one is being read
                s = socket.create_connection(("127.0.0.1", ports["http"]), timeout=30)
                s.sendall(b"POST /v2/models/double/infer HTTP/1.1\r\nHost: x\r\n"
                          b"Content-Length: 1000000000\r\n\r\n{\"inputs\"")
                sockets.append(s)
            time.sleep(1.5)
            grown = resident_mb(process.pid) - before
            # 12 x 1 GB announced; before the bodies grew with the data, each
            # connection allocated (and zeroed) its whole announced size.
            self.assertLess(grown, 200, f"RSS grew {grown:.0f} MB")
        finally:
            for s in sockets:
                s.close()
            self.assertEqual(stop_server(process, log), 0)


class LargeBodiesTest(unittest.TestCase):
    """Bodies past the server's first 1 MiB reservation."""

    def test_bodies_past_the_first_reservation_arrive_whole(self):
        # The server reserves 1 MiB for a body, then grows 8x at a time up to
        # its Content-Length: a 9.5 MB body (a long id ahead of the binary
        # tensor) crosses both steps, and every byte must arrive in order.
        import numpy as np
        process, log, ports = double_server("large-bodies", 64)
        try:
            x = (np.arange(96, dtype=np.float32).reshape(8, 3, 2, 2) - 40) / 7
            raw = x.tobytes()
            long_id = "".join(chr(ord("a") + i % 26) for i in range(9_500_000))
            header = json.dumps({
                "id": long_id,
                "inputs": [{"name": "x", "datatype": "FP32", "shape": [8, 3, 2, 2],
                            "parameters": {"binary_data_size": len(raw)}}],
                "outputs": [{"name": "y", "parameters": {"binary_data": True}}]}).encode()
            connection = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=60)
            connection.request("POST", "/v2/models/double/infer", body=header + raw,
                               headers={"Inference-Header-Content-Length": str(len(header))})
            response = connection.getresponse()
            data = response.read()
            connection.close()
            self.assertEqual(response.status, 200, data[:200])
            length = int(response.getheader("Inference-Header-Content-Length"))
            reply = json.loads(data[:length])
            self.assertEqual(reply["id"], long_id)
            np.testing.assert_array_equal(np.frombuffer(data[length:], np.float32), 2 * x.ravel())
        finally:
            self.assertEqual(stop_server(process, log), 0)


class HttpTokensTest(unittest.TestCase):
    """--auth-tokens applies to HTTP as to gRPC; probes stay open."""

    def test_tokens_and_roles(self):
        repo = os.path.join(WORK, "repo-tokens")
        interop.write_model(repo)
        tokens = os.path.join(WORK, "tokens")
        with open(tokens, "w") as f:
            f.write(f"admin {interop.ADMIN_TOKEN}\ninfer {interop.INFER_TOKEN}\n")
        process, log, ports = start_server(
            ["--model-repository", repo, "--grpc-address", "127.0.0.1:0",
             "--http-address", "127.0.0.1:0", "--metrics-address", "", "--auth-tokens", tokens],
            os.path.join(WORK, "server-tokens.log"))
        try:
            def status(method, path, token=None):
                connection = http.client.HTTPConnection("127.0.0.1", ports["http"], timeout=30)
                headers = {"Authorization": f"Bearer {token}"} if token else {}
                connection.request(method, path, body=b"" if method == "POST" else None,
                                   headers=headers)
                response = connection.getresponse()
                response.read()
                connection.close()
                return response.status
            self.assertEqual(status("GET", "/v2/health/ready"), 200)
            self.assertEqual(status("GET", "/v2/health/live"), 200)
            self.assertEqual(status("GET", "/v2/models/double"), 401)
            self.assertEqual(status("GET", "/v2/models/double", "not-a-known-token-0123456789"), 401)
            self.assertEqual(status("GET", "/v2/models/double", interop.INFER_TOKEN), 200)
            self.assertEqual(status("POST", "/v2/repository/index", interop.INFER_TOKEN), 403)
            self.assertEqual(status("POST", "/v2/repository/index", interop.ADMIN_TOKEN), 200)
        finally:
            self.assertEqual(stop_server(process, log), 0)


class HttpWithTlsTest(unittest.TestCase):
    """HTTP has no TLS: off by default with --tls-cert, refused when asked for."""

    def test_off_by_default_and_refused_when_asked(self):
        files = interop.make_certificates(os.path.join(WORK, "tls"))
        repo = os.path.join(WORK, "repo-tls")
        interop.write_model(repo)
        os.makedirs(os.path.join(repo, "broken", "1"))
        with open(os.path.join(repo, "broken", "1", "model.onnx"), "wb") as f:
            f.write(b"not an onnx model")
        base = [SERVER, "--model-repository", repo, "--grpc-address", "127.0.0.1:0",
                "--metrics-address", "", "--tls-cert", files["server.crt"], "--tls-key",
                files["server.key"]]
        process, log, ports = start_server(base[1:], os.path.join(WORK, "server-tls.log"))
        self.assertEqual(ports["http"], 0)
        log.seek(0)
        text = log.read()
        self.assertIn("HTTP/REST is off", text)
        # The start-up summary names the model that failed and why.
        self.assertRegex(text, r"models: 2 ready, 1 failed: broken \(version 1: .*not a valid "
                               r"ONNX model")
        self.assertEqual(stop_server(process, log), 0)
        out = subprocess.run(base + ["--http-address", "127.0.0.1:0"], capture_output=True,
                             text=True, timeout=60)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("HTTP/REST endpoint is plaintext only", out.stdout + out.stderr)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    args, rest = parser.parse_known_args()
    SERVER = os.path.abspath(args.server)
    try:
        unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
