"""LRN: one-node models over shapes and attributes; C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from tests.util import check_model, make_model, run_c, save

CASES = [
    # (input shape, attrs, opset)
    ((1, 5, 4, 4), {"size": 3}, 13),
    ((2, 7, 3, 5), {"size": 5, "alpha": 0.002, "beta": 0.5, "bias": 2.0}, 13),
    ((1, 3, 2, 2), {"size": 7, "alpha": 0.5, "beta": 1.0, "bias": 0.5}, 13),     # window wider than C
    ((1, 4, 3, 3), {"size": 1, "alpha": 1.0, "beta": 0.75}, 13),
    ((1, 5, 4, 4), {"size": 3, "alpha": 0.01, "beta": 0.75, "bias": 1.0}, 1),
]
# onnxruntime accepts only odd sizes and 4-D inputs (onnx.reference only 4-D, and it loops over
# the batch instead of the channels), so these are checked against our reference and a golden.
SPEC_ONLY = [
    ((1, 6, 3, 3), {"size": 4, "alpha": 0.1, "beta": 0.75, "bias": 1.0}),          # even: 1 below, 2 above
    ((1, 8, 3, 2, 2), {"size": 3, "alpha": 0.02}),                          # 3-D spatial
    ((2, 5, 7), {"size": 3, "alpha": 0.5, "beta": 0.6}),                       # 1-D spatial
]


@pytest.mark.parametrize("xs,attrs,opset", CASES)
def test_lrn(tmp_path, xs, attrs, opset):
    node = helper.make_node("LRN", ["x"], ["y"], **attrs)
    m = make_model([node], [("x", xs)], [("y", None)], opset=opset)
    check_model(save(m, tmp_path), tmp_path)


@pytest.mark.parametrize("xs,attrs", SPEC_ONLY)
def test_lrn_spec_only(tmp_path, xs, attrs):
    node = helper.make_node("LRN", ["x"], ["y"], **attrs)
    m = make_model([node], [("x", xs)], [("y", xs)])
    check_model(save(m, tmp_path), tmp_path, ort=False)


def test_lrn_even_size_golden(tmp_path):
    """size=2: channel c sums c and c+1. x = 1, 2, 3; alpha/size = 1, beta = 1, bias = 1."""
    node = helper.make_node("LRN", ["x"], ["y"], size=2, alpha=2.0, beta=1.0, bias=1.0)
    m = make_model([node], [("x", (1, 3, 1, 1))], [("y", (1, 3, 1, 1))])
    x = np.array([1, 2, 3], np.float32).reshape(1, 3, 1, 1)
    _, _, outs = run_c(save(m, tmp_path), tmp_path / "proj", [{"x": x}])
    want = np.array([1 / (1 + 1 + 4), 2 / (1 + 4 + 9), 3 / (1 + 9)], np.float32)
    np.testing.assert_allclose(outs[0]["y"].ravel(), want, rtol=1e-6)


def test_lrn_size_refused(tmp_path):
    node = helper.make_node("LRN", ["x"], ["y"], size=0)
    m = make_model([node], [("x", (1, 3, 2, 2))], [("y", (1, 3, 2, 2))])
    with pytest.raises(UnsupportedOp):
        compile_model(save(m, tmp_path), tmp_path / "out")
