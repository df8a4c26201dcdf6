"""ConvTranspose: one-node models over shapes and attributes; C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from tests.util import check_model, make_model, save

CASES = [
    # (input shape, weight shape, attrs, bias)
    ((1, 3, 5, 5), (3, 4, 3, 3), {}, True),
    ((1, 2, 4, 5), (2, 3, 3, 2), {"strides": [2, 3], "pads": [1, 0, 0, 1]}, False),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [3, 2], "output_padding": [1, 1]}, True),
    ((2, 4, 4, 4), (4, 1, 3, 3), {"group": 4, "strides": [2, 2], "pads": [1, 1, 1, 1]}, True),   # depthwise
    ((1, 4, 5, 4), (4, 3, 2, 3), {"group": 2, "dilations": [2, 1], "strides": [1, 2]}, True),
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "output_shape": [8, 8]}, True),          # even totals
    ((1, 2, 4, 4), (2, 3, 4, 4), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}, True),        # even totals
    ((1, 2, 4, 4), (2, 3, 3, 3), {"strides": [2, 2], "auto_pad": "VALID"}, False),
    ((1, 3, 7), (3, 2, 4), {"strides": [3], "pads": [2, 1], "dilations": [2]}, True),             # 1-D
    ((1, 2, 3, 4, 3), (2, 2, 2, 3, 2), {"strides": [2, 1, 2], "pads": [1, 0, 0, 0, 1, 1]}, True),  # 3-D
]

# Padding derived from output_shape or SAME_*: an odd total puts the odd unit at the start, except
# for SAME_UPPER (at the end); a negative total grows the output at the end.
ODD = [
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_UPPER"}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "auto_pad": "SAME_LOWER"}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [6, 5]}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 3], "output_shape": [8, 10]}),  # grows: zeros + bias
]


def _model(xs, ws, attrs, bias, opset=13, ys=None):
    rng = np.random.default_rng(1)
    inits = {"W": rng.standard_normal(ws).astype(np.float32)}
    names = ["x", "W"]
    if bias:
        inits["B"] = rng.standard_normal(ws[1] * attrs.get("group", 1)).astype(np.float32)
        names.append("B")
    node = helper.make_node("ConvTranspose", names, ["y"], **attrs)
    return make_model([node], [("x", xs)], [("y", ys)], inits, opset=opset)


@pytest.mark.parametrize("xs,ws,attrs,bias", CASES)
def test_conv_transpose(tmp_path, xs, ws, attrs, bias):
    check_model(save(_model(xs, ws, attrs, bias), tmp_path), tmp_path)


@pytest.mark.parametrize("xs,ws,attrs", ODD)
def test_conv_transpose_output_shape(tmp_path, xs, ws, attrs):
    check_model(save(_model(xs, ws, attrs, True), tmp_path), tmp_path)


def test_conv_transpose_opset10_even(tmp_path):
    m = _model((1, 2, 3, 3), (2, 2, 3, 3), {"strides": [2, 2], "output_shape": [5, 5]}, True, opset=10)
    check_model(save(m, tmp_path), tmp_path)


@pytest.mark.parametrize("attrs,opset,ws", [
    ({"strides": [2, 2], "auto_pad": "SAME_UPPER"}, 10, (2, 2, 3, 3)),  # odd: opset-1 text contradicts itself
    ({"strides": [2, 2], "output_shape": [6, 5]}, 10, (2, 2, 3, 3)),     # odd: same
    ({"output_shape": [1, 2, 3]}, 13, (2, 2, 3, 3)),                  # wrong length
    ({"output_shape": [6, 6]}, 13, (2, 2, 3, 3)),                     # grows by a stride or more
    ({"strides": [3, 3], "auto_pad": "SAME_LOWER"}, 13, (2, 2, 1, 1)),   # SAME_* that grows
    ({"pads": [1, 1, 1, 1], "output_shape": [4, 4]}, 13, (2, 2, 3, 3)),  # pads contradict output_shape
    ({"kernel_shape": [2, 2]}, 13, (2, 2, 3, 3)),                     # differs from W
])
def test_conv_transpose_refused(tmp_path, attrs, opset, ws):
    # An explicit output shape: onnx shape inference may reject a refused geometry.
    m = _model((1, 2, 3, 3), ws, attrs, False, opset=opset, ys=(1, 2, 6, 6))
    with pytest.raises(UnsupportedOp):
        compile_model(save(m, tmp_path), tmp_path / "out")


@pytest.mark.parametrize("act,params", [("Relu", {}), ("LeakyRelu", {"alpha": 0.2}), ("Sigmoid", {})])
def test_fused_activation(tmp_path, act, params):
    """-O2 fuses the activation into the ConvTranspose (applied once the scatter is done)."""
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("ConvTranspose", ["x", "W", "B"], ["t"], strides=[2, 2], pads=[1, 1, 1, 1]),
             helper.make_node(act, ["t"], ["y"], **params)]
    inits = {"W": rng.standard_normal((3, 4, 3, 3)).astype(np.float32),
             "B": rng.standard_normal(4).astype(np.float32)}
    path = save(make_model(nodes, [("x", (2, 3, 4, 4))], [("y", None)], inits), tmp_path)
    res = check_model(path, tmp_path)
    (layer,) = res.report["layers"]
    assert layer["op"] == "ConvTranspose" and layer["fused"] == [act]
