"""Softmax / LogSoftmax: one-node models over shapes, axes and both opset semantics (coerced
2-D before 13, single axis from 13); C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import TensorProto, helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from tests.util import check_model, make_model, save

CASES = [
    # (shape, axis or None for the default, opset)
    ((1, 10), None, 13),
    ((2, 3, 4), None, 13),
    ((2, 3, 4), 0, 13),
    ((2, 3, 4), 1, 13),          # strided block (inner = 4)
    ((2, 3, 4, 5), -3, 13),
    ((1, 12, 5, 5), 1, 13),      # channel softmax of an NCHW map
    ((7,), 0, 13),
    ((2, 3, 4), None, 11),       # default axis 1: flattened 3x4 blocks
    ((2, 3, 4), 0, 11),          # the whole tensor is one block
    ((2, 3, 4, 5), -2, 11),
    ((3, 5), None, 1),
    ((2, 3, 4), 2, 1),
]


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
@pytest.mark.parametrize("shape,axis,opset", CASES)
def test_softmax(tmp_path, op, shape, axis, opset):
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    m = make_model([node], [("x", shape)], [("y", shape)], opset=opset)
    rng = np.random.default_rng(3)
    sample = {"x": (3 * rng.standard_normal(shape)).astype(np.float32)}
    check_model(save(m, tmp_path), tmp_path, [sample])


@pytest.mark.parametrize("op", ["Softmax", "LogSoftmax"])
def test_softmax_large_inputs(tmp_path, op):
    """exp(10000) overflows float32: the max must be subtracted first."""
    node = helper.make_node(op, ["x"], ["y"])
    m = make_model([node], [("x", (2, 4))], [("y", (2, 4))])
    x = np.array([[0, 1, 2, 3], [10000, 10001, 10002, 10003]], np.float32)
    check_model(save(m, tmp_path), tmp_path, [{"x": x}])


def test_softmax_refuses_double(tmp_path):
    node = helper.make_node("Softmax", ["x"], ["y"])
    g = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", TensorProto.DOUBLE, (2, 3))],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, (2, 3))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedOp):
        compile_model(save(m, tmp_path), tmp_path / "out")
