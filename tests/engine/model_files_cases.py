#!/usr/bin/python3
"""Writes the two model files of docs/DEPLOYMENT.md "Model files".

  declared_4gib.onnx  an initializer declaring [1073741824] FLOAT (4 GiB)
                      with no data at all: a file of a few dozen bytes
  shared_weight.onnx  one 4 MiB initializer (1024x1024) read by 160 chained
                      1x1 convolutions (input [N,1024,1,1])

Usage: model_files_cases.py OUT_DIR, then e.g.
  /usr/bin/time -v build/tools/engine/rectifier-engine OUT_DIR/shared_weight.onnx -n 1 -w 0
"""
import os
import sys

import numpy as np
from onnx import TensorProto, helper, numpy_helper


def model(nodes, inputs, outputs, initializers):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializers)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 7
    m.ClearField("producer_name")
    return m.SerializeToString()


def declared_4gib():
    w = TensorProto(name="W", data_type=TensorProto.FLOAT, dims=[1073741824])
    return model([helper.make_node("Add", ["x", "W"], ["y"])],
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                 [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], [w])


def shared_weight(consumers=160, channels=1024):
    rng = np.random.default_rng(1)
    a = np.sqrt(3.0 / channels)
    w = rng.uniform(-a, a, (channels, channels, 1, 1)).astype(np.float32)
    nodes, prev = [], "x"
    for i in range(consumers):
        nodes.append(helper.make_node("Conv", [prev, "W"], [f"y{i}"], name=f"conv{i}"))
        prev = f"y{i}"
    return model(nodes,
                 [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", channels, 1, 1])],
                 [helper.make_tensor_value_info(prev, TensorProto.FLOAT, None)],
                 [numpy_helper.from_array(w, "W")])


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else "."
    os.makedirs(out, exist_ok=True)
    for name, data in (("declared_4gib.onnx", declared_4gib()),
                       ("shared_weight.onnx", shared_weight())):
        path = os.path.join(out, name)
        with open(path, "wb") as f:
            f.write(data)
        print(f"{path}: {len(data)} bytes")


if __name__ == "__main__":
    main()
