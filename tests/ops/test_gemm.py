"""Gemm and MatMul: one-node models over shapes, transposes, alpha/beta, C broadcasting, 1-D and
batched operands, constant or runtime B; C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import ShapeError
from tests.util import check_model, make_model, save

GEMM = [
    # (A shape, B shape, C shape or None, attrs)
    ((3, 5), (5, 4), (4,), {}),
    ((3, 5), (5, 4), None, {}),
    ((5, 3), (5, 4), (3, 4), {"transA": 1}),
    ((3, 5), (4, 5), (1, 4), {"transB": 1}),
    ((5, 3), (4, 5), (3, 1), {"transA": 1, "transB": 1, "alpha": 0.25, "beta": 0.35}),
    ((3, 5), (5, 4), (), {"beta": 2.0}),
    ((3, 5), (5, 4), (1,), {"alpha": -1.5}),
    ((3, 5), (5, 4), (3, 4), {"beta": 0.0}),
    ((1, 64), (10, 64), (10,), {"transB": 1}),   # a Linear layer
    ((1, 1), (1, 1), (1, 1), {}),
]


@pytest.mark.parametrize("a,b,c,attrs", GEMM)
@pytest.mark.parametrize("const_b", [True, False])
def test_gemm(tmp_path, a, b, c, attrs, const_b):
    rng = np.random.default_rng(2)
    inits = {}
    inputs = [("A", a)]
    if const_b:
        inits["B"] = rng.standard_normal(b).astype(np.float32)
    else:
        inputs.append(("B", b))
    names = ["A", "B"]
    if c is not None:
        inits["C"] = rng.standard_normal(c).astype(np.float32)
        names.append("C")
    node = helper.make_node("Gemm", names, ["y"], **attrs)
    m = make_model([node], inputs, [("y", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path)
    mm, kk = (a[1], a[0]) if attrs.get("transA") else a
    nn = b[0] if attrs.get("transB") else b[1]
    assert res.report["layers"][0]["macs"] == mm * nn * kk


def test_gemm_runtime_c(tmp_path):
    node = helper.make_node("Gemm", ["A", "B", "C"], ["y"], transB=1)
    m = make_model([node], [("A", (2, 3)), ("B", (4, 3)), ("C", (2, 4))], [("y", None)])
    check_model(save(m, tmp_path), tmp_path)


@pytest.mark.parametrize("opset,c,broadcast", [(6, (3, 4), 0), (6, (4,), 1), (9, (4,), None),
                                               (11, None, None)])
def test_gemm_opsets(tmp_path, opset, c, broadcast):
    rng = np.random.default_rng(3)
    inits = {"B": rng.standard_normal((5, 4)).astype(np.float32)}
    names = ["A", "B"]
    if c is not None:
        inits["C"] = rng.standard_normal(c).astype(np.float32)
        names.append("C")
    attrs = {} if broadcast is None else {"broadcast": broadcast}
    node = helper.make_node("Gemm", names, ["y"], **attrs)
    m = make_model([node], [("A", (3, 5))], [("y", (3, 4))], inits, opset=opset)
    check_model(save(m, tmp_path), tmp_path, ort=opset >= 7)  # onnxruntime has no Gemm-6


def test_gemm_old_broadcast_required(tmp_path):
    inits = {"B": np.ones((5, 4), np.float32), "C": np.ones((4,), np.float32)}
    node = helper.make_node("Gemm", ["A", "B", "C"], ["y"])
    m = make_model([node], [("A", (3, 5))], [("y", (3, 4))], inits, opset=6)
    with pytest.raises(ShapeError, match="broadcast"):
        compile_model(save(m, tmp_path), tmp_path / "out")


MATMUL = [
    ((3, 4), (4, 5)),
    ((4,), (4,)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (2, 4, 5)),
    ((2, 3, 4, 5), (5,)),
    ((2, 3, 4), (2, 4, 5)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (1, 3, 4, 2)),
    ((1, 3, 4), (1, 4, 2)),
    ((1, 64), (64, 10)),
]


@pytest.mark.parametrize("a,b", MATMUL)
@pytest.mark.parametrize("const_b", [True, False])
def test_matmul(tmp_path, a, b, const_b):
    rng = np.random.default_rng(4)
    inits, inputs = {}, [("A", a)]
    if const_b:
        inits["B"] = rng.standard_normal(b).astype(np.float32)
    else:
        inputs.append(("B", b))
    node = helper.make_node("MatMul", ["A", "B"], ["y"])
    m = make_model([node], inputs, [("y", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path)
    want = np.matmul(np.zeros(a), np.zeros(b)).shape
    assert tuple(res.report["layers"][0]["output_shape"]) == want
    ea, eb = (1, *a) if len(a) == 1 else a, (*b, 1) if len(b) == 1 else b
    batch = np.broadcast_shapes(ea[:-2], eb[:-2])
    assert res.report["layers"][0]["macs"] == int(np.prod(batch)) * ea[-2] * eb[-1] * ea[-1]


def test_matmul_bad_batch(tmp_path):
    node = helper.make_node("MatMul", ["A", "B"], ["y"])
    m = make_model([node], [("A", (2, 3, 4)), ("B", (3, 4, 5))], [("y", (3, 3, 5))])
    with pytest.raises(ShapeError):
        compile_model(save(m, tmp_path), tmp_path / "out")
