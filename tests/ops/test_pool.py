"""MaxPool, AveragePool, GlobalMaxPool, GlobalAveragePool: one-node models over shapes and
attributes; C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import TensorProto, helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from tests.util import check_model, make_model, save


def k(*kernel, **attrs) -> dict:
    """Pool attributes: kernel_shape plus the rest."""
    return {"kernel_shape": list(kernel), **attrs}


MAX = [
    # (input shape, attrs, opset)
    ((1, 3, 8, 8), k(3, 3, strides=[2, 2], pads=[1, 1, 1, 1]), 13),
    ((2, 2, 7, 7), k(2, 2, strides=[2, 2], ceil_mode=1), 13),
    ((1, 2, 6, 6), k(3, 3, strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), 13),
    ((1, 2, 5, 7), k(2, 3, auto_pad="SAME_UPPER", strides=[2, 2]), 13),
    ((1, 2, 5, 7), k(2, 3, auto_pad="SAME_LOWER", strides=[2, 2]), 13),
    ((1, 2, 5, 7), k(3, 3, auto_pad="VALID", strides=[1, 2]), 13),
    ((1, 2, 9, 9), k(2, 3, dilations=[2, 2], strides=[2, 1], ceil_mode=1), 13),
    ((1, 3, 11), k(3, dilations=[3], pads=[2, 1]), 13),  # 1-D
    ((1, 2, 5, 6, 4), k(2, 3, 2, strides=[2, 2, 1], pads=[0, 1, 0, 1, 1, 1]), 13),
    ((1, 2, 6, 6), k(3, 3, strides=[2, 2], storage_order=1), 8),
    ((1, 2, 6, 6), k(2, 2, pads=[1, 0, 0, 1]), 7),
    ((1, 2, 6, 6), k(3, 3, strides=[2, 2], ceil_mode=1), 22),
]

AVG = [
    ((1, 3, 8, 8), k(3, 3, pads=[1, 1, 1, 1]), 13),
    ((1, 3, 8, 8), k(3, 3, pads=[1, 1, 1, 1], count_include_pad=1), 13),
    ((1, 2, 6, 6), k(3, 3, strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1), 13),
    # ceil_mode windows that run past the padded input: those taps never count.
    ((1, 2, 6, 6), k(3, 3, strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1, count_include_pad=1), 13),
    ((1, 2, 7, 5), k(2, 2, strides=[2, 2], ceil_mode=1, count_include_pad=1), 13),
    ((1, 2, 5, 7), k(2, 3, auto_pad="SAME_UPPER", strides=[2, 2]), 13),
    ((1, 2, 5, 7), k(3, 3, auto_pad="SAME_LOWER", count_include_pad=1), 13),
    ((1, 3, 11), k(4, strides=[3], pads=[2, 1], count_include_pad=1), 13),  # 1-D
    ((1, 2, 5, 6, 4), k(2, 3, 2, strides=[2, 2, 1], pads=[0, 1, 0, 1, 1, 1]), 13),
    ((1, 8, 25, 5), k(25, 5, strides=[25, 5]), 13),  # MLPerf KWS DS-CNN
    ((1, 16, 8, 8), k(8, 8, strides=[8, 8]), 13),    # MLPerf IC ResNet-8
    ((1, 8, 3, 3), k(3, 3, strides=[3, 3]), 13),     # MLPerf VWW MobileNet-v1
    ((1, 2, 6, 6), k(3, 3, strides=[3, 3], pads=[1, 0, 0, 1]), 7),
    ((1, 2, 9, 9), k(2, 3, dilations=[2, 2], strides=[2, 1], pads=[1, 1, 1, 1]), 19),
    ((1, 2, 9, 9), k(3, 2, dilations=[2, 3], strides=[2, 2], pads=[1, 1, 1, 1], ceil_mode=1,
                     count_include_pad=1), 19),
]

GLOBAL = [(1, 3, 5, 4), (2, 3, 7), (1, 2, 3, 4, 2)]


def _check(tmp_path, op, xs, attrs, opset=13):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    m = make_model([node], [("x", xs)], [("y", None)], opset=opset)
    check_model(save(m, tmp_path), tmp_path)


@pytest.mark.parametrize("xs,attrs,opset", MAX)
def test_maxpool(tmp_path, xs, attrs, opset):
    _check(tmp_path, "MaxPool", xs, attrs, opset)


@pytest.mark.parametrize("xs,attrs,opset", AVG)
def test_averagepool(tmp_path, xs, attrs, opset):
    _check(tmp_path, "AveragePool", xs, attrs, opset)


@pytest.mark.parametrize("op", ["GlobalAveragePool", "GlobalMaxPool"])
@pytest.mark.parametrize("xs", GLOBAL)
def test_global_pool(tmp_path, op, xs):
    _check(tmp_path, op, xs, {})


def test_maxpool_indices_refused(tmp_path):
    node = helper.make_node("MaxPool", ["x"], ["y", "i"], kernel_shape=[2, 2])
    g = helper.make_graph([node], "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 1, 4, 4))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 1, 3, 3)),
                           helper.make_tensor_value_info("i", TensorProto.INT64, (1, 1, 3, 3))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    with pytest.raises(UnsupportedOp, match="Indices"):
        compile_model(save(m, tmp_path), tmp_path / "out")


@pytest.mark.parametrize("op,attrs", [
    ("MaxPool", k(2, 2, pads=[2, 0, 0, 0])),        # a window of padding only
    ("AveragePool", k(2, 2, pads=[0, 0, 0, 2])),
    ("AveragePool", k(2, 2, ceil_mode=2)),
])
def test_pool_refused(tmp_path, op, attrs):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    m = make_model([node], [("x", (1, 1, 4, 4))], [("y", (1, 1, 5, 3))])
    with pytest.raises(UnsupportedOp):
        compile_model(save(m, tmp_path), tmp_path / "out")


def test_maxpool_negative_inputs(tmp_path):
    """Padding must never win against negative data."""
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    m = make_model([node], [("x", (1, 1, 4, 4))], [("y", None)])
    x = -np.abs(np.random.default_rng(0).standard_normal((1, 1, 4, 4))).astype(np.float32) - 1
    check_model(save(m, tmp_path), tmp_path, samples=[{"x": x}])
