"""A tiny classifier whose answer can be worked out by hand, for the SDK
tests: Conv (3x3, identity at the centre tap) -> Relu -> GlobalAveragePool
-> Flatten -> Gemm (SCALE x identity). For an image normalised with mean
and std 0.5, a solid red image gives logits (SCALE, 0, 0), green (0,
SCALE, 0), blue (0, 0, SCALE).

    python3 tiny_model.py OUT.onnx SCALE SIZE
"""

import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main(out, scale, size):
    conv_w = np.zeros((3, 3, 3, 3), np.float32)
    for c in range(3):
        conv_w[c, c, 1, 1] = 1.0
    fc_w = (scale * np.eye(3)).astype(np.float32)
    fc_b = np.zeros(3, np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 3])],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(fc_w, "fc_w"),
            numpy_helper.from_array(fc_b, "fc_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, out)


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[2]), int(sys.argv[3]))
