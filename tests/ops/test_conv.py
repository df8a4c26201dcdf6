"""Conv: one-node models over shapes and attributes; C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from tests.util import check_model, make_model, save

CASES = [
    # (input shape, weight shape, attrs, bias)
    ((1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    ((1, 3, 9, 7), (4, 3, 3, 2), {"strides": [2, 1], "pads": [0, 1, 2, 0]}, False),
    ((2, 4, 8, 8), (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, True),       # depthwise
    ((1, 2, 8, 8), (6, 1, 3, 3), {"group": 2, "strides": [2, 2]}, True),         # multiplier 3
    ((1, 4, 10, 10), (6, 2, 3, 3), {"group": 2, "dilations": [2, 2]}, True),
    ((1, 3, 7, 7), (2, 3, 3, 3), {"auto_pad": "SAME_UPPER", "strides": [2, 2]}, True),
    ((1, 3, 7, 7), (2, 3, 2, 2), {"auto_pad": "SAME_LOWER"}, True),
    ((1, 3, 7, 7), (2, 3, 3, 3), {"auto_pad": "VALID"}, True),
    ((1, 3, 20), (5, 3, 4), {"strides": [3], "pads": [2, 1], "dilations": [2]}, True),  # 1-D
    ((1, 2, 5, 6, 7), (3, 2, 2, 3, 2), {"pads": [1, 0, 1, 0, 1, 1]}, True),    # 3-D
    # 8 input channels, 4 outputs at once: pixels in pairs (nncc_dot4x2 over the taps both
    # windows reach, one pixel's own taps alone), including pairs clamped differently at the
    # edges, an odd width, and a pair whose windows share no tap (the gap between them skipped)
    ((1, 8, 7, 9), (4, 8, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    ((1, 8, 6, 5), (8, 8, 3, 5), {"pads": [0, 2, 1, 2], "strides": [1, 2], "dilations": [1, 2]}, False),
    ((1, 8, 3, 2), (4, 8, 3, 5), {"pads": [1, 3, 1, 3], "strides": [1, 3]}, True),
]


@pytest.mark.parametrize("xs,ws,attrs,bias", CASES)
def test_conv(tmp_path, xs, ws, attrs, bias):
    rng = np.random.default_rng(1)
    inits = {"W": rng.standard_normal(ws).astype(np.float32)}
    names = ["x", "W"]
    if bias:
        inits["B"] = rng.standard_normal(ws[0]).astype(np.float32)
        names.append("B")
    node = helper.make_node("Conv", names, ["y"], **attrs)
    m = make_model([node], [("x", xs)], [("y", None)], inits)
    check_model(save(m, tmp_path), tmp_path)
