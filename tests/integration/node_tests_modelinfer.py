#!/usr/bin/python3
"""ONNX backend node tests whose weights, biases, scales, sizes or pads are
graph inputs, served as they are: through rectifier-server's KServe
ModelInfer, from a repository without any config.pbtxt.

Each selected test directory of Debian's libonnx-testdata becomes one model
(its model.onnx, as is). Every test_data_set's inputs are sent as one
ModelInfer request (raw contents, the ONNX element types), and every output
is compared with the expected one (|got - want| <= 1e-5 + 1e-4 |want|, the
engine conformance test's tolerance). The selection is every test of Conv,
ConvTranspose, Resize, Upsample and Pad with a FLOAT input after the first
(the inputs a CNN engine used to need as compile-time constants), less
those the engine does not support for another reason, listed with it.

  /usr/bin/python3 tests/integration/node_tests_modelinfer.py --server build/server/rectifier-server
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import python_client_test as interop  # noqa: E402  (stub generation)

shutil.rmtree(interop.WORK, ignore_errors=True)  # its scratch folder; this test has its own
DATA = "/usr/share/libonnx-testdata/data/node"
SERVER = None
WORK = tempfile.mkdtemp(prefix="rectifier-nodetests-")
SELECTED = re.compile(r"^test_(basic_conv|conv_|convtranspose|resize_|upsample_|constant_pad)")
# Not supported for reasons other than runtime inputs (docs/ENGINE.md).
UNSUPPORTED = {
    "cubic": "Resize mode 'cubic'",
    "tf_crop_and_resize": "Resize coordinate_transformation_mode 'tf_crop_and_resize'",
}
TYPES = {1: ("FP32", "float32"), 6: ("INT32", "int32"), 7: ("INT64", "int64")}


def runtime_inputs(model):
    initializers = {t.name for t in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def selected_tests():
    import onnx
    tests = []
    for name in sorted(os.listdir(DATA)):
        if not SELECTED.match(name) or any(k in name for k in UNSUPPORTED):
            continue
        model = onnx.load(os.path.join(DATA, name, "model.onnx"))
        inputs = runtime_inputs(model)
        if any(i.type.tensor_type.elem_type == 1 for i in inputs[1:]):
            tests.append(name)
    return tests


def read_tensor(path):
    import onnx
    from onnx import numpy_helper
    tensor = onnx.TensorProto()
    with open(path, "rb") as f:
        tensor.ParseFromString(f.read())
    return numpy_helper.to_array(tensor)


class NodeTestsThroughModelInfer(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        import grpc
        interop.generate_stubs(os.path.join(WORK, "gen"))
        import grpc_service_pb2_grpc
        cls.tests = selected_tests()
        repo = os.path.join(WORK, "repo")
        for name in cls.tests:
            os.makedirs(os.path.join(repo, name, "1"))
            shutil.copy(os.path.join(DATA, name, "model.onnx"), os.path.join(repo, name, "1"))
        cls.log = open(os.path.join(WORK, "server.log"), "w+")
        cls.server = subprocess.Popen(
            [SERVER, "--model-repository", repo, "--grpc-address", "127.0.0.1:0",
             "--http-address", "", "--metrics-address", ""],
            stdout=cls.log, stderr=subprocess.STDOUT)
        port = None
        deadline = time.time() + 120
        while port is None and time.time() < deadline and cls.server.poll() is None:
            time.sleep(0.1)
            cls.log.seek(0)
            match = re.search(r"serving gRPC on port (\d+)", cls.log.read())
            port = int(match.group(1)) if match else None
        if port is None:
            cls.log.seek(0)
            raise RuntimeError("server did not start: " + cls.log.read())
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        cls.stub = grpc_service_pb2_grpc.GRPCInferenceServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.send_signal(signal.SIGTERM)
        code = cls.server.wait(timeout=30)
        cls.log.close()
        assert code == 0, f"server exited {code}"

    def test_selection_covers_the_ops(self):
        # Fails loudly if the test data moved or the selection went empty.
        for prefix in ("test_basic_conv", "test_convtranspose", "test_resize_", "test_upsample"):
            self.assertTrue(any(t.startswith(prefix) for t in self.tests), prefix)
        self.assertGreaterEqual(len(self.tests), 20)
        print(f"\n{len(self.tests)} node tests through ModelInfer", file=sys.stderr)

    def test_every_selected_node_test_passes(self):
        import numpy as np
        import onnx
        import grpc_service_pb2 as pb
        failures = []
        for name in self.tests:
            model = onnx.load(os.path.join(DATA, name, "model.onnx"))
            inputs = runtime_inputs(model)
            outputs = [o.name for o in model.graph.output]
            sets = sorted(d for d in os.listdir(os.path.join(DATA, name))
                          if d.startswith("test_data_set_"))
            for data_set in sets:
                folder = os.path.join(DATA, name, data_set)
                request = pb.ModelInferRequest(model_name=name)
                for k, info in enumerate(inputs):
                    value = read_tensor(os.path.join(folder, f"input_{k}.pb"))
                    kind = TYPES[info.type.tensor_type.elem_type]
                    value = value.astype(kind[1])
                    request.inputs.add(name=info.name, datatype=kind[0], shape=list(value.shape))
                    request.raw_input_contents.append(value.tobytes())
                try:
                    reply = self.stub.ModelInfer(request, timeout=60)
                except Exception as e:  # grpc.RpcError: keep going, report all
                    failures.append(f"{name}/{data_set}: {e.code()}: {e.details()}")
                    continue
                got = {o.name: (o, reply.raw_output_contents[i])
                       for i, o in enumerate(reply.outputs)}
                for k, out_name in enumerate(outputs):
                    want = read_tensor(os.path.join(folder, f"output_{k}.pb"))
                    tensor, raw = got[out_name]
                    value = np.frombuffer(raw, dtype=want.dtype).reshape(list(tensor.shape))
                    if value.shape != want.shape or not np.allclose(value, want, rtol=1e-4,
                                                                    atol=1e-5):
                        failures.append(f"{name}/{data_set}: output '{out_name}' differs")
        self.assertEqual(failures, [])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", required=True)
    args, rest = parser.parse_known_args()
    SERVER = os.path.abspath(args.server)
    try:
        unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
