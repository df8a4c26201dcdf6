"""ReduceMean: one-node models over axes (attribute before opset 18, constant input from 18),
keepdims, negative axes, the all-axes default and noop_with_empty_axes; C vs numpy reference vs
onnxruntime. Runtime (non-constant) axes are refused."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from nncc.ops.reduce import merge_axes
from tests.util import check_model, make_model, save

CASES = [
    # (shape, axes or None, keepdims)
    ((1, 8, 5, 5), [2, 3], 1),        # global average pool
    ((1, 8, 5, 5), [2, 3], 0),
    ((2, 3, 4), [1], 1),              # strided middle axis
    ((2, 3, 4), [0, 2], 0),           # two reduced loops
    ((2, 3, 4, 5), [-1, -3], 1),
    ((2, 3, 4), None, 1),             # default: all axes
    ((2, 3, 4), None, 0),
    ((3, 1, 4), [1], 0),              # reducing a size-1 axis only
    ((6,), [0], 0),                   # to a scalar
]


@pytest.mark.parametrize("opset", [13, 18])
@pytest.mark.parametrize("shape,axes,keepdims", CASES)
def test_reduce_mean(tmp_path, shape, axes, keepdims, opset):
    inits, names, attrs = {}, ["x"], {"keepdims": keepdims}
    if axes is not None and opset >= 18:
        inits["axes"] = np.array(axes, np.int64)
        names.append("axes")
    elif axes is not None:
        attrs["axes"] = axes
    node = helper.make_node("ReduceMean", names, ["y"], **attrs)
    m = make_model([node], [("x", shape)], [("y", None)], inits, opset=opset)
    check_model(save(m, tmp_path), tmp_path)


@pytest.mark.parametrize("axes", [None, []])
def test_reduce_mean_noop_with_empty_axes(tmp_path, axes):
    inits, names = {}, ["x"]
    if axes is not None:  # an empty axes tensor counts as no axes
        inits["axes"] = np.array(axes, np.int64)
        names.append("axes")
    node = helper.make_node("ReduceMean", names, ["y"], noop_with_empty_axes=1)
    m = make_model([node], [("x", (2, 3))], [("y", (2, 3))], inits, opset=18)
    check_model(save(m, tmp_path), tmp_path)


def test_reduce_mean_empty_axes_reduces_all(tmp_path):
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"], keepdims=1)
    m = make_model([node], [("x", (2, 3, 4))], [("y", (1, 1, 1))], {"axes": np.zeros(0, np.int64)},
                   opset=18)
    check_model(save(m, tmp_path), tmp_path)


def test_reduce_mean_opset1(tmp_path):
    """onnxruntime still runs opset 1; same attribute form as 13."""
    node = helper.make_node("ReduceMean", ["x"], ["y"], axes=[2], keepdims=0)
    m = make_model([node], [("x", (2, 3, 4))], [("y", None)], opset=1)
    check_model(save(m, tmp_path), tmp_path)


def test_merge_axes():
    # NCHW global pool: one kept loop (N*C) and one reduced loop (H*W).
    assert merge_axes((2, 8, 5, 5), (2, 3)) == ([(16, 25)], [(25, 1)])
    # Size-1 axes vanish; a middle reduced axis keeps its stride.
    assert merge_axes((1, 3, 1, 4), (1,)) == ([(4, 1)], [(3, 4)])
    assert merge_axes((2, 3, 4), ()) == ([(24, 1)], [])


def test_reduce_mean_refuses_runtime_axes(tmp_path):
    node = helper.make_node("ReduceMean", ["x", "axes"], ["y"])
    g = helper.make_graph(
        [node], "m", [helper.make_tensor_value_info("x", 1, (2, 3)),
                      helper.make_tensor_value_info("axes", 7, (1,))],
        [helper.make_tensor_value_info("y", 1, (1, 1))])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 18)])
    with pytest.raises(UnsupportedOp):
        compile_model(save(m, tmp_path), tmp_path / "out")
