"""fuse_matmul_add: 2-D MatMul followed by the Add of a constant becomes one Gemm (then the
Relu after it fuses at -O2); numerics unchanged, and the C matches onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.passes.fuse_matmul_add import fuse_matmul_add
from tests.passes._graphs import apply, build, op_counts
from tests.util import check_model, make_model, save

RNG = np.random.default_rng(11)
W = RNG.standard_normal((6, 4)).astype(np.float32)


def mm_add(bias_shape, bias_first=False, opset=13, add_attrs=None, x=(3, 6), bias_const=True):
    b = RNG.standard_normal(bias_shape).astype(np.float32)
    inits = {"W": W}
    ins = [("x", x)]
    if bias_const:
        inits["b"] = b
    else:
        ins.append(("b", bias_shape))
    add_in = ["b", "t"] if bias_first else ["t", "b"]
    nodes = [helper.make_node("MatMul", ["x", "W"], ["t"]),
             helper.make_node("Add", add_in, ["y"], **(add_attrs or {}))]
    return nodes, ins, inits


FOLD = [
    # (bias shape, bias first, opset, legacy Add attributes)
    ((4,), False, 13, None),
    ((4,), True, 13, None),
    ((1, 4), False, 13, None),
    ((3, 1), True, 13, None),
    ((3, 4), False, 13, None),
    ((), False, 13, None),
    ((4,), False, 6, {"broadcast": 1}),        # legacy trailing alignment
    ((3,), False, 6, {"broadcast": 1, "axis": 0}),  # legacy axis: B along rows -> (3, 1)
]


@pytest.mark.parametrize("shape,first,opset,attrs", FOLD)
def test_fold(tmp_path, shape, first, opset, attrs):
    nodes, ins, inits = mm_add(shape, first, opset, attrs)
    g = build(tmp_path, nodes, ins, ["y"], inits, opset=opset)
    changed, after = apply(g, fuse_matmul_add)
    assert changed
    assert op_counts(after) == {"Gemm": 1}
    (gemm,) = after.nodes()
    assert gemm.inputs[:2] == ["x", "W"] and gemm.outputs == ["y"] and gemm.opset >= 7
    assert "t" not in after.tensors
    if attrs is None:
        assert gemm.inputs[2] == "b"  # the bias constant is reused, not copied


@pytest.mark.parametrize("shape,first,opset,attrs", [FOLD[0], FOLD[3], FOLD[7]])
def test_fc_relu_c(tmp_path, shape, first, opset, attrs):
    # The MLPerf fully connected layer: MatMul + Add + Relu -> one Gemm with the Relu fused.
    nodes, ins, inits = mm_add(shape, first, opset, attrs)
    nodes[-1].output[0] = "u"
    nodes.append(helper.make_node("Relu", ["u"], ["y"]))
    m = make_model(nodes, ins, [("y", None)], inits, opset=opset)
    # onnxruntime does not load opset 6 models: there the C is checked against the reference
    res = check_model(save(m, tmp_path), tmp_path, opt_level=2, ort=opset >= 7)
    assert [(r["op"], r["fused"]) for r in res.report["layers"]] == [("Gemm", ["Relu"])]


@pytest.mark.parametrize("kw", [
    {"bias_shape": (4,), "x": (2, 3, 6)},        # batched MatMul
    {"bias_shape": (4,), "x": (6,)},             # 1-D MatMul
    {"bias_shape": (4,), "bias_const": False},   # runtime bias
    {"bias_shape": (2, 3, 4)},                   # the Add broadcasts the output up
])
def test_not_folded(tmp_path, kw):
    nodes, ins, inits = mm_add(kw.pop("bias_shape"), **kw)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fuse_matmul_add)
    assert not changed
    assert op_counts(after) == {"MatMul": 1, "Add": 1}


def test_matmul_output_read_twice_or_graph_output(tmp_path):
    nodes, ins, inits = mm_add((4,))
    nodes.append(helper.make_node("Relu", ["t"], ["z"]))
    g = build(tmp_path, nodes, ins, ["y", "z"], inits)
    assert not apply(g, fuse_matmul_add)[0]
    nodes, ins, inits = mm_add((4,))
    g = build(tmp_path, nodes, ins, ["y", "t"], inits)
    assert not apply(g, fuse_matmul_add)[0]
