"""fold_batchnorm: Conv / ConvTranspose / Gemm followed by a constant BatchNormalization become
one node; numerics unchanged, BN gone, and the C of the folded model matches onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import load
from nncc.errors import UnsupportedOp
from nncc.passes.fold_batchnorm import BN_STATS, fold_batchnorm
from tests.passes._graphs import apply, build, op_counts
from tests.util import check_model, make_model, save

RNG = np.random.default_rng(3)


def rand(*shape, positive=False):
    v = RNG.standard_normal(shape).astype(np.float32)
    return np.abs(v) + 0.1 if positive else v


def bn_inits(c):
    return {"s": rand(c), "beta": rand(c), "mean": rand(c), "var": rand(c, positive=True)}


def bn_node(x="t", y="y", **attrs):
    return helper.make_node("BatchNormalization", [x, "s", "beta", "mean", "var"], [y], **attrs)


CONV_CASES = [
    # (op, x shape, W shape, attrs, bias)
    ("Conv", (1, 3, 8, 8), (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True),
    ("Conv", (1, 3, 8, 8), (4, 3, 3, 3), {}, False),
    ("Conv", (1, 4, 6, 6), (8, 1, 3, 3), {"group": 4}, True),      # depthwise, multiplier 2
    ("Conv", (1, 3, 12), (5, 3, 3), {"strides": [2]}, False),      # 1-D
    ("ConvTranspose", (1, 4, 5, 5), (4, 3, 3, 3), {"strides": [2, 2]}, True),
    ("ConvTranspose", (1, 4, 5, 5), (4, 2, 2, 2), {"group": 2}, False),  # M = 4 = 2 groups x 2
]


def conv_model(op, xs, ws, attrs, bias, opset=13, bn_attrs=None):
    inits = {"W": rand(*ws)}
    m = ws[0] if op == "Conv" else ws[1] * attrs.get("group", 1)
    if bias:
        inits["B"] = rand(m)
    inits.update(bn_inits(m))
    nodes = [helper.make_node(op, ["x", "W"] + (["B"] if bias else []), ["t"], **attrs),
             bn_node(**(bn_attrs or {"epsilon": 1e-3}))]
    return nodes, [("x", xs)], inits


@pytest.mark.parametrize("op,xs,ws,attrs,bias", CONV_CASES)
def test_fold_conv(tmp_path, op, xs, ws, attrs, bias):
    nodes, ins, inits = conv_model(op, xs, ws, attrs, bias)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fold_batchnorm)
    assert changed
    assert op_counts(after) == {op: 1}
    (node,) = after.nodes()
    assert node.outputs == ["y"] and len(node.inputs) == 3
    assert "W" not in after.tensors and "s" not in after.tensors  # no stale constants left


def test_fold_conv_c_matches_onnxruntime(tmp_path):
    nodes, ins, inits = conv_model(*CONV_CASES[0])
    m = make_model(nodes, ins, [("y", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path, opt_level=1)
    assert [r["op"] for r in res.report["layers"]] == ["Conv"]


@pytest.mark.parametrize("opset,bn_attrs", [(6, {"is_test": 1, "epsilon": 1e-4}), (9, {}), (15, {})])
def test_fold_conv_bn_opsets(tmp_path, opset, bn_attrs):
    nodes, ins, inits = conv_model(*CONV_CASES[0], bn_attrs=bn_attrs)
    g = build(tmp_path, nodes, ins, ["y"], inits, opset=opset)
    changed, after = apply(g, fold_batchnorm)
    assert changed and op_counts(after) == {"Conv": 1}


@pytest.mark.parametrize("trans_b,c_shape,alpha,beta", [
    (0, (6,), 1.0, 1.0), (1, (1, 6), 0.5, 2.0), (1, None, 1.0, 1.0), (0, (3, 6), 1.5, -1.0),
    (0, (1,), 1.0, 3.0),
])
def test_fold_gemm(tmp_path, trans_b, c_shape, alpha, beta):
    inits = {"W": rand(*((6, 5) if trans_b else (5, 6)))}
    names = ["x", "W"]
    if c_shape is not None:
        inits["C"] = rand(*c_shape)
        names.append("C")
    inits.update(bn_inits(6))
    nodes = [helper.make_node("Gemm", names, ["t"], transB=trans_b, alpha=alpha, beta=beta),
             bn_node()]
    try:
        g = build(tmp_path, nodes, [("x", (3, 5))], ["y"], inits)
    except UnsupportedOp as e:
        pytest.skip(f"Gemm not implemented yet: {e}")
    changed, after = apply(g, fold_batchnorm)
    assert changed and op_counts(after) == {"Gemm": 1}


def test_shared_weights_folded_separately(tmp_path):
    # Two convs share W; each BN has its own statistics, so W must not be rewritten in place.
    inits = {"W": rand(4, 3, 3, 3), **bn_inits(4), "s2": rand(4), "m2": rand(4)}
    nodes = [helper.make_node("Conv", ["x", "W"], ["t"]), bn_node(y="y"),
             helper.make_node("Conv", ["x", "W"], ["t2"]),
             helper.make_node("BatchNormalization", ["t2", "s2", "beta", "m2", "var"], ["y2"])]
    g = build(tmp_path, nodes, [("x", (1, 3, 6, 6))], ["y", "y2"], inits)
    changed, after = apply(g, fold_batchnorm)
    assert changed and op_counts(after) == {"Conv": 2}
    w = [n.inputs[1] for n in after.nodes()]
    assert len(set(w)) == 2


def test_not_folded(tmp_path):
    # BN statistics computed at run time, and a conv output read twice: both stay.
    inits = {"W": rand(4, 3, 1, 1), "s": rand(4), "beta": rand(4), "var": rand(4, positive=True)}
    nodes = [helper.make_node("Conv", ["x", "W"], ["t"]),
             helper.make_node("BatchNormalization", ["t", "s", "beta", "mean", "var"], ["y"]),
             helper.make_node("Conv", ["x", "W"], ["u"]),
             helper.make_node("BatchNormalization", ["u", "s", "beta", "s", "var"], ["z"]),
             helper.make_node("Relu", ["u"], ["r"])]
    consts = {k: v for k, v in bn_inits(4).items() if k != "mean"}
    g = build(tmp_path, nodes, [("x", (1, 3, 4, 4)), ("mean", (4,))], ["y", "z", "r"],
              {**consts, **inits})
    changed, after = apply(g, fold_batchnorm)
    assert not changed
    assert op_counts(after)["BatchNormalization"] == 2


def test_bn_statistics_kept(tmp_path):
    """The folded node keeps the BN's output statistics (mean beta, std |scale|) for data-free
    quantization; a Mul and Add folded after it later (fold_constant_scale) update them."""
    nodes, ins, inits = conv_model("Conv", (1, 3, 8, 8), (4, 3, 3, 3), {}, True)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    _, after = apply(g, fold_batchnorm)
    stats = after.nodes()[0].attrs[BN_STATS]
    np.testing.assert_array_equal(stats["mean"], inits["beta"].astype(np.float64))
    np.testing.assert_array_equal(stats["std"], np.abs(inits["s"]).astype(np.float64))
    mul, add = rand(1, 4, 1, 1), rand(1, 4, 1, 1)
    nodes[-1] = bn_node(y="u")
    nodes += [helper.make_node("Mul", ["u", "m"], ["v"]), helper.make_node("Add", ["v", "a"], ["y"])]
    g2 = load(save(make_model(nodes, ins, [("y", None)], {**inits, "m": mul, "a": add}), tmp_path),
              opt_level=2)
    (node,) = g2.nodes()
    stats2 = node.attrs[BN_STATS]
    np.testing.assert_allclose(stats2["mean"], inits["beta"] * mul.ravel() + add.ravel(), rtol=1e-6)
    np.testing.assert_allclose(stats2["std"], np.abs(inits["s"] * mul.ravel()), rtol=1e-6)
