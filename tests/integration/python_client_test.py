#!/usr/bin/python3
"""Interoperability: a Python client generated from proto/ drives the real server.

Generates Python stubs from our .proto files with Debian's protoc and
grpc_python_plugin, starts rectifier-server on loopback with a repository
holding a small ONNX model written here, and calls health, ServerMetadata,
ModelMetadata, ModelInfer (raw FP32, encoded images as BYTES, an error path),
ModelStatistics, and the vision API's Classify.

With --tls, the same calls go over mutual TLS with a bearer token: the test
makes a CA, server and client certificates with the openssl command and a
tokens file, starts the server with --tls-cert/--tls-key/--tls-client-ca/
--auth-tokens, and connects with grpc.ssl_channel_credentials plus
grpc.access_token_call_credentials (which sends "authorization: Bearer").
It also checks what a client without a token, with an unknown one, or with
the infer role calling RepositoryIndex gets.

  /usr/bin/python3 tests/integration/python_client_test.py --server build/server/rectifier-server [--tls]
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
import unittest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVER = None
TLS = False
WORK = tempfile.mkdtemp(prefix="rectifier-pytest-")
ADMIN_TOKEN = "admin-" + os.urandom(16).hex()
INFER_TOKEN = "infer-" + os.urandom(16).hex()


def make_certificates(out):
    """A throwaway CA, a server certificate for 127.0.0.1 and a client one."""
    os.makedirs(out, exist_ok=True)

    def openssl(*args):
        subprocess.check_call(["openssl", *args], cwd=out, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.crt", "-days", "1", "-subj", "/CN=rectifier-test-ca")
    with open(os.path.join(out, "san.ext"), "w") as f:
        f.write("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name, ext in (("server", ["-extfile", "san.ext"]), ("client", [])):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out",
                f"{name}.csr", "-subj", f"/CN={name}")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", f"{name}.crt", "-days", "1", *ext)
    with open(os.path.join(out, "tokens"), "w") as f:
        f.write(f"# role token\nadmin {ADMIN_TOKEN}\ninfer {INFER_TOKEN}\n")
    return {name: os.path.join(out, name) for name in
            ("ca.crt", "server.crt", "server.key", "client.crt", "client.key", "tokens")}


def read(path):
    with open(path, "rb") as f:
        return f.read()


def generate_stubs(out):
    os.makedirs(out, exist_ok=True)
    proto = os.path.join(ROOT, "proto")
    plugin = "--plugin=protoc-gen-grpc_python=/usr/bin/grpc_python_plugin"
    subprocess.check_call(["protoc", "-I", proto, "--python_out", out, "--grpc_python_out", out,
                           plugin, os.path.join(proto, "grpc_service.proto"),
                           os.path.join(proto, "model_config.proto"),
                           os.path.join(proto, "rectifier", "v1", "vision.proto")])
    # health.proto by its own folder: a module path under "grpc/" would shadow
    # the grpc package itself.
    health = os.path.join(proto, "grpc", "health", "v1")
    subprocess.check_call(["protoc", "-I", health, "--python_out", out, "--grpc_python_out", out,
                           plugin, os.path.join(health, "health.proto")])
    sys.path.insert(0, out)


def write_model(repo):
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3, 2, 2])
    k = helper.make_tensor("k", TensorProto.FLOAT, [], [2.0])
    graph = helper.make_graph([helper.make_node("Mul", ["x", "k"], ["y"])], "double", [x], [y], [k])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    os.makedirs(os.path.join(repo, "double", "1"))
    onnx.save(model, os.path.join(repo, "double", "1", "model.onnx"))
    with open(os.path.join(repo, "double", "config.pbtxt"), "w") as f:
        f.write("max_batch_size: 8\n")
    # A gray-image classifier: logits = [mean - 0.5, 0.5 - mean], "bright" / "dark".
    image = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 1, 8, 8])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])
    b = helper.make_tensor("b", TensorProto.FLOAT, [1, 2], [1.0, -1.0])
    c = helper.make_tensor("c", TensorProto.FLOAT, [2], [-0.5, 0.5])
    nodes = [helper.make_node("GlobalAveragePool", ["image"], ["pooled"]),
             helper.make_node("Flatten", ["pooled"], ["flat"]),
             helper.make_node("Gemm", ["flat", "b", "c"], ["logits"])]
    graph = helper.make_graph(nodes, "brightness", [image], [logits], [b, c])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    os.makedirs(os.path.join(repo, "brightness", "1"))
    onnx.save(model, os.path.join(repo, "brightness", "1", "model.onnx"))
    with open(os.path.join(repo, "brightness", "config.pbtxt"), "w") as f:
        f.write('max_batch_size: 8\npreprocessing { color_format: COLOR_GRAY }\n'
                'postprocessing { task: TASK_CLASSIFICATION labels: ["bright", "dark"] }\n')


def pgm(width, height, value):
    """A binary PGM (P5) image of one gray value: an encoded image without any imaging library."""
    return b"P5\n%d %d\n255\n" % (width, height) + bytes([value]) * (width * height)


class PythonClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc
        generate_stubs(os.path.join(WORK, "gen"))
        repo = os.path.join(WORK, "repo")
        write_model(repo)
        cls.log = open(os.path.join(WORK, "server.log"), "w+")
        command = [SERVER, "--model-repository", repo, "--grpc-address", "127.0.0.1:0",
                   "--metrics-address", "127.0.0.1:0"]
        if not TLS:  # (with --tls-cert the plaintext HTTP port stays closed)
            command += ["--http-address", "127.0.0.1:0"]
        if TLS:
            cls.files = make_certificates(os.path.join(WORK, "tls"))
            command += ["--tls-cert", cls.files["server.crt"], "--tls-key",
                        cls.files["server.key"], "--tls-client-ca", cls.files["ca.crt"],
                        "--auth-tokens", cls.files["tokens"]]
        cls.server = subprocess.Popen(command, stdout=cls.log, stderr=subprocess.STDOUT)
        port = None
        deadline = time.time() + 60
        while port is None and time.time() < deadline and cls.server.poll() is None:
            time.sleep(0.05)
            cls.log.seek(0)
            match = re.search(r"serving gRPC on port (\d+)", cls.log.read())
            port = match and match.group(1)
        if port is None:
            cls.log.seek(0)
            raise RuntimeError("server did not start: " + cls.log.read())
        cls.target = f"127.0.0.1:{port}"
        if TLS:
            cls.channel = grpc.secure_channel(cls.target, cls.credentials(INFER_TOKEN))
        else:
            cls.channel = grpc.insecure_channel(cls.target)
        import grpc_service_pb2_grpc
        cls.stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(cls.channel)

    @classmethod
    def credentials(cls, token):
        import grpc
        channel = grpc.ssl_channel_credentials(
            root_certificates=read(cls.files["ca.crt"]),
            private_key=read(cls.files["client.key"]),
            certificate_chain=read(cls.files["client.crt"]))
        if token is None:
            return channel
        return grpc.composite_channel_credentials(
            channel, grpc.access_token_call_credentials(token))

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.send_signal(signal.SIGTERM)
        code = cls.server.wait(timeout=30)
        cls.log.close()
        shutil.rmtree(WORK, ignore_errors=True)
        assert code == 0, f"server exited {code}"

    def test_health(self):
        import health_pb2
        import health_pb2_grpc
        reply = health_pb2_grpc.HealthStub(self.channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=10)
        self.assertEqual(reply.status, health_pb2.HealthCheckResponse.SERVING)

    def test_metadata(self):
        import grpc_service_pb2 as pb
        server = self.stub.ServerMetadata(pb.ServerMetadataRequest(), timeout=10)
        self.assertEqual(server.name, "rectifier")
        self.assertIn("statistics", server.extensions)
        model = self.stub.ModelMetadata(pb.ModelMetadataRequest(name="double"), timeout=10)
        self.assertEqual(model.inputs[0].name, "x")
        self.assertEqual(model.inputs[0].datatype, "FP32")
        self.assertEqual(list(model.inputs[0].shape), [-1, 3, 2, 2])

    def test_infer_raw_fp32(self):
        import numpy as np
        import grpc_service_pb2 as pb
        x = np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2)
        request = pb.ModelInferRequest(model_name="double", id="py-1")
        request.inputs.add(name="x", datatype="FP32", shape=list(x.shape))
        request.raw_input_contents.append(x.tobytes())
        reply = self.stub.ModelInfer(request, timeout=30)
        self.assertEqual(reply.id, "py-1")
        self.assertEqual(reply.outputs[0].name, "y")
        self.assertEqual(list(reply.outputs[0].shape), [2, 3, 2, 2])
        y = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(2, 3, 2, 2)
        np.testing.assert_array_equal(y, 2 * x)
        stats = self.stub.ModelStatistics(pb.ModelStatisticsRequest(name="double"), timeout=10)
        self.assertGreaterEqual(stats.model_stats[0].inference_count, 2)

    def test_infer_error_names_the_problem(self):
        import grpc
        import grpc_service_pb2 as pb
        request = pb.ModelInferRequest(model_name="double")
        request.inputs.add(name="x", datatype="FP32", shape=[1, 3, 2, 2])
        request.raw_input_contents.append(b"\0" * 7)
        with self.assertRaises(grpc.RpcError) as caught:
            self.stub.ModelInfer(request, timeout=10)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("7 bytes", caught.exception.details())

    def test_encoded_image_as_bytes_input(self):
        import numpy as np
        import grpc_service_pb2 as pb
        request = pb.ModelInferRequest(model_name="brightness")
        image = request.inputs.add(name="image", datatype="BYTES", shape=[2])
        image.contents.bytes_contents.extend([pgm(12, 10, 204), pgm(5, 5, 51)])
        reply = self.stub.ModelInfer(request, timeout=30)
        logits = np.frombuffer(reply.raw_output_contents[0], dtype=np.float32).reshape(2, 2)
        np.testing.assert_allclose(logits[:, 0], [204 / 255 - 0.5, 51 / 255 - 0.5], rtol=1e-5)

    def test_vision_classify(self):
        from rectifier.v1 import vision_pb2, vision_pb2_grpc
        stub = vision_pb2_grpc.VisionStub(self.channel)
        request = vision_pb2.ClassifyRequest(model_name="brightness", top_k=1)
        request.images.add(data=pgm(9, 9, 230))
        reply = stub.Classify(request, timeout=30)
        self.assertEqual(reply.results[0].classes[0].label, "bright")
        self.assertEqual(reply.results[0].image.format, "pnm")

    def test_tokens_and_roles(self):
        if not TLS:
            self.skipTest("needs --tls")
        import grpc
        import grpc_service_pb2 as pb
        import grpc_service_pb2_grpc
        import health_pb2
        import health_pb2_grpc
        cases = [(None, grpc.StatusCode.UNAUTHENTICATED),
                 ("not-a-known-token-0123456789", grpc.StatusCode.UNAUTHENTICATED),
                 (INFER_TOKEN, grpc.StatusCode.PERMISSION_DENIED),
                 (ADMIN_TOKEN, grpc.StatusCode.OK)]
        for token, expected in cases:
            with grpc.secure_channel(self.target, self.credentials(token)) as channel:
                stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
                # Probes need no token.
                self.assertTrue(stub.ServerLive(pb.ServerLiveRequest(), timeout=10).live)
                self.assertTrue(stub.ServerReady(pb.ServerReadyRequest(), timeout=10).ready)
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=10)
                self.assertEqual(reply.status, health_pb2.HealthCheckResponse.SERVING)
                try:
                    stub.RepositoryIndex(pb.RepositoryIndexRequest(), timeout=10)
                    code = grpc.StatusCode.OK
                except grpc.RpcError as e:
                    code = e.code()
                self.assertEqual(code, expected, token and token[:5])

    def test_plaintext_client_is_refused(self):
        if not TLS:
            self.skipTest("needs --tls")
        import grpc
        import grpc_service_pb2 as pb
        import grpc_service_pb2_grpc
        with grpc.insecure_channel(self.target) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with self.assertRaises(grpc.RpcError) as caught:
                stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
            self.assertEqual(caught.exception.code(), grpc.StatusCode.UNAVAILABLE)
        # A client without a certificate fails the mutual TLS handshake.
        import grpc as g
        no_cert = g.ssl_channel_credentials(root_certificates=read(self.files["ca.crt"]))
        with g.secure_channel(self.target, no_cert) as channel:
            stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(channel)
            with self.assertRaises(g.RpcError) as caught:
                stub.ServerLive(pb.ServerLiveRequest(), timeout=5)
            self.assertEqual(caught.exception.code(), g.StatusCode.UNAVAILABLE)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    parser.add_argument("--tls", action="store_true")
    args, rest = parser.parse_known_args()
    SERVER = os.path.abspath(args.server)
    TLS = args.tls
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
