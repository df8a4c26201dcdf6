"""fold_constant_scale: Mul / Add by a per-channel or scalar constant after a Conv or Gemm, and
Mul by a per-input-channel constant before a Conv, fold into the weights and bias; numerics
unchanged, the Mul/Add gone, and the C of the folded model matches onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.passes.fold_constant_scale import fold_constant_scale
from tests.passes._graphs import apply, build, op_counts
from tests.util import check_model, make_model, save

RNG = np.random.default_rng(21)


def rand(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def conv_then(kind, c_shape, c_first=False, bias=True, group=1, x=(1, 3, 6, 6)):
    m = 6 if group > 1 else 4
    inits = {"W": rand(m, x[1] // group, 3, 3), "c": rand(*c_shape)}
    if bias:
        inits["B"] = rand(m)
    nodes = [helper.make_node("Conv", ["x", "W"] + (["B"] if bias else []), ["t"], pads=[1, 1, 1, 1],
                              group=group),
             helper.make_node(kind, ["c", "t"] if c_first else ["t", "c"], ["y"])]
    return nodes, [("x", x)], inits


def gemm_then(kind, c_shape, gemm_c=(5,), trans_b=1, beta=1.0):
    inits = {"W": rand(5, 6) if trans_b else rand(6, 5), "c": rand(*c_shape)}
    ins = ["x", "W"]
    if gemm_c is not None:
        inits["C"] = rand(*gemm_c)
        ins.append("C")
    nodes = [helper.make_node("Gemm", ins, ["t"], transB=trans_b, beta=beta, alpha=0.75),
             helper.make_node(kind, ["t", "c"], ["y"])]
    return nodes, [("x", (3, 6))], inits


AFTER = [
    ("conv", ("Mul", (1, 4, 1, 1))),
    ("conv", ("Mul", (4, 1, 1), True)),
    ("conv", ("Mul", ())),
    ("conv", ("Add", (4, 1, 1))),
    ("conv", ("Add", (1,), True, False)),           # scalar-like, no conv bias: one is created
    ("conv", ("Mul", (1, 6, 1, 1), False, True, 3)),  # depthwise, channel multiplier 2
    ("gemm", ("Mul", (5,))),
    ("gemm", ("Mul", (1, 5), (3, 1), 0, 0.5)),      # C (M, 1) scaled to (M, N); B not transposed
    ("gemm", ("Add", (3, 5))),                      # C grows to (M, N)
    ("gemm", ("Add", (5,), None)),                  # no C yet
    ("gemm", ("Mul", (), (5,), 1, 0.0)),            # beta 0: C is ignored, stays ignored
]


@pytest.mark.parametrize("prod,args", AFTER)
def test_fold_after(tmp_path, prod, args):
    nodes, ins, inits = (conv_then if prod == "conv" else gemm_then)(*args)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fold_constant_scale)
    assert changed
    assert op_counts(after) == {"Conv" if prod == "conv" else "Gemm": 1}
    (node,) = after.nodes()
    assert node.outputs == ["y"] and "c" not in after.tensors and "t" not in after.tensors


def mul_conv(s_shape, pads=(1, 1, 1, 1), group=1, kind="Mul"):
    inits = {"s": rand(*s_shape), "W": rand(6, 3 // group, 3, 3), "B": rand(6)}
    nodes = [helper.make_node(kind, ["x", "s"], ["u"]),
             helper.make_node("Conv", ["u", "W", "B"], ["y"], pads=list(pads), group=group)]
    return nodes, [("x", (1, 3, 5, 5))], inits


@pytest.mark.parametrize("s_shape,pads,group", [
    ((1, 3, 1, 1), (1, 1, 1, 1), 1),   # zero padding is fine for a Mul: 0 * s == 0
    ((3, 1, 1), (0, 0, 0, 0), 1),
    ((), (1, 0, 1, 2), 1),
    ((3, 1, 1), (1, 1, 1, 1), 3),      # depthwise: each output channel reads one input channel
])
def test_fold_mul_before_conv(tmp_path, s_shape, pads, group):
    nodes, ins, inits = mul_conv(s_shape, pads, group)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fold_constant_scale)
    assert changed
    assert op_counts(after) == {"Conv": 1}
    (conv,) = after.nodes()
    assert conv.inputs[0] == "x" and "u" not in after.tensors and "s" not in after.tensors


def test_not_folded(tmp_path):
    cases = [
        conv_then("Mul", (1, 1, 6, 6)),       # varies over space: not a per-channel scale
        conv_then("Add", (2, 4, 1, 1)),       # broadcasts the output up (batch 2)
        mul_conv((3, 1, 1), kind="Add"),      # Add before a Conv: padding would need c, not 0
        mul_conv((1, 3, 5, 5)),               # per-pixel scale before a Conv
    ]
    for i, (nodes, ins, inits) in enumerate(cases):
        (tmp_path / str(i)).mkdir()
        g = build(tmp_path / str(i), nodes, ins, ["y"], inits)
        changed, after = apply(g, fold_constant_scale)
        assert not changed, i
        assert op_counts(after) == op_counts(g)


def test_not_folded_shared_or_special(tmp_path):
    nodes, ins, inits = conv_then("Mul", (4, 1, 1))
    nodes.append(helper.make_node("Relu", ["t"], ["z"]))  # conv output read twice
    g = build(tmp_path, nodes, ins, ["y", "z"], inits)
    assert not apply(g, fold_constant_scale)[0]
    nodes, ins, inits = conv_then("Mul", (4, 1, 1))
    inits["c"][1] = np.inf  # inf * 0 in the weights would become nan
    g = build(tmp_path, nodes, ins, ["y"], inits)
    assert not fold_constant_scale(g)
    nodes = [helper.make_node("Conv", ["x", "W"], ["t"]), helper.make_node("Mul", ["t", "x2"], ["y"])]
    g = build(tmp_path, nodes, [("x", (1, 3, 4, 4)), ("x2", (1, 4, 1, 1))], ["y"],
              {"W": rand(4, 3, 1, 1)})  # runtime scale
    assert not apply(g, fold_constant_scale)[0]


def test_chain_c_matches_onnxruntime(tmp_path):
    # x * s -> Conv -> * s2 -> + c -> Relu and Gemm -> * s3 -> + c3 -> Relu: one Conv[Relu] and
    # one Gemm[Relu] at -O2.
    inits = {"s": rand(1, 3, 1, 1), "W": rand(4, 3, 3, 3), "B": rand(4), "s2": rand(4, 1, 1),
             "c": rand(1, 4, 1, 1), "G": rand(4 * 6 * 6, 5), "s3": rand(5), "c3": rand(1, 5)}
    nodes = [helper.make_node("Mul", ["x", "s"], ["a"]),
             helper.make_node("Conv", ["a", "W", "B"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Mul", ["s2", "b"], ["d"]), helper.make_node("Add", ["d", "c"], ["e"]),
             helper.make_node("Relu", ["e"], ["f"]), helper.make_node("Flatten", ["f"], ["h"]),
             helper.make_node("Gemm", ["h", "G"], ["i"]), helper.make_node("Mul", ["i", "s3"], ["j"]),
             helper.make_node("Add", ["j", "c3"], ["k"]), helper.make_node("Relu", ["k"], ["y"])]
    m = make_model(nodes, [("x", (1, 3, 6, 6))], [("y", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path, opt_level=2)
    assert [(r["op"], r["fused"]) for r in res.report["layers"]] == [
        ("Conv", ["Relu"]), ("Flatten", []), ("Gemm", ["Relu"])]
