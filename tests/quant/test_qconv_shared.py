"""Shared int8 convolution kernels (nncc/ops/qconv_shared.py, templates/ops/conv_q_shared.c.j2):
layers of one kind call one C function with their numbers in a `static const` struct. The C must
equal the integer reference bit for bit for every geometry the struct carries (strides,
asymmetric pads, dilations, groups, 1-D, batch 2, no bias, 1 or 4 output channels at once, both
scalings), each kind's function is emitted once, and the unpacked form keeps its own kernels."""
from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper

from nncc.ops import make_op
from nncc.quant.quantize import QuantOptions, quantize
from tests.quant.qutil import build, check_exact, compile_graph, conv, conv_chain, float_graph, samples
from tests.util import make_model, save

RNG = np.random.default_rng(5)


def model(tmp_path, batch=1, bias=True):
    """x (4 ch) -> dw 3x3 -> dw 3x3 stride 2, asymmetric pads -> Relu -> 2 groups of 2 -> 4,
    3x2 window, dilations 2 -> 1x1 to 8 (4 at once) -> 1x1 to 6 (1 at once) -> dw 2x3,
    dilations 1x2 -> 3x3 to 3 (1 at once) -> y."""
    layers = [("a", "x", "a", (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}),
              ("b", "a", "b", (4, 1, 3, 3), {"group": 4, "strides": [2, 2], "pads": [0, 1, 1, 0]}),
              ("c", "br", "c", (8, 2, 3, 2), {"group": 2, "dilations": [2, 2], "pads": [2, 1, 1, 1]}),
              ("d", "c", "d", (8, 8, 1, 1), {}),
              ("e", "d", "e", (6, 8, 1, 1), {}),
              ("f", "e", "f", (6, 1, 2, 3), {"group": 6, "dilations": [1, 2], "pads": [1, 2, 0, 1]}),
              ("g", "f", "y", (3, 6, 3, 3), {"pads": [1, 1, 1, 1]})]
    nodes, inits = conv_chain(RNG, layers, {"b": [helper.make_node("Relu", ["b"], ["br"])]}, bias)
    xs = (batch, 4, 9, 8)
    return save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path), xs


def c_code(res) -> str:
    return next(res.out_dir.glob("*.c")).read_text()


@pytest.mark.parametrize("batch,bias", [(1, True), (2, False)])
@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_shared_equals_integer_reference(tmp_path, scaling, batch, bias):
    path, xs = model(tmp_path, batch, bias)
    res = build(path, tmp_path / "q", samples(xs, 6, 0), scaling=scaling)
    check_exact(res, samples(xs, 3, 1))
    code = c_code(res)
    # every QConv is a struct and a call; each kind's function is defined once
    assert code.count("static const nncc_qconv_params p = ") == 7
    defined = re.findall(r"^(?:NNCC_[A-Z_]+ )*static void (nncc_qconv_\w+)\(", code, re.MULTILINE)
    # (_b: the layer has a packed int16 per channel; "" when all of them would be 0)
    assert len(defined) == len(set(defined))
    kinds = {re.sub(rf"_{scaling}(_b)?$", "", f) for f in defined}
    # group 1 (1x1 and 3x3 alike): "mm" (its helpers are NNCC_KERNEL functions)
    assert kinds == {f"nncc_qconv_{k}" for k in ("dw3_ob1", "dw_ob1", "direct_ob4", "mm_ob4", "mm_ob1")}
    # the two depthwise layers (one in place) call the same function
    calls = re.findall(r"^    (nncc_qconv_\w+)\(&p, ", code, re.MULTILINE)
    assert len(calls) == 7 and len(set(calls)) == len(defined)
    assert calls[0].startswith("nncc_qconv_dw3_ob1_") and calls[1].startswith("nncc_qconv_dw3_ob1_")
    if bias:  # both have a packed int16 per channel: one function
        assert calls[0] == calls[1]
    assert "(int8_t *)0);" in code and ", ws);" in code  # d writes over its input, the rest not

def test_unpacked_form_keeps_its_kernels(tmp_path):
    path, xs = model(tmp_path)
    res = build(path, tmp_path / "q", samples(xs, 6, 0), packed=False)
    check_exact(res, samples(xs, 3, 1))
    assert "nncc_qconv_params" not in c_code(res)


def test_weight_read_in_two_orders(tmp_path):
    """An int8 weight read both by a group-1 1x1 layer (the "mm" kind, which reads its weights
    in channel pairs: mm_weights()) and as it is (a grouped layer): both arrays are emitted,
    each kernel is passed its own, and the C equals the integer reference."""
    rng = np.random.default_rng(5)
    xs = (1, 8, 5, 5)
    a, ia = conv(rng, "a", "x", "a", (4, 8, 1, 1))
    b, ib = conv(rng, "b", "c", "b", (4, 8, 1, 1), group=2)
    nodes = [a, helper.make_node("Concat", ["x", "x"], ["c"], axis=1), b,
             helper.make_node("Concat", ["a", "b"], ["y"], axis=1)]
    path = save(make_model(nodes, [("x", xs)], [("y", None)], {**ia, **ib}), tmp_path)
    g = quantize(float_graph(path), QuantOptions(samples=samples(xs, 4)))
    qa, qb = [n for n in g.nodes() if n.op == "QConv"]
    qb.inputs[1] = qa.inputs[1]  # b reads a's weights
    res = compile_graph(g, tmp_path / "p", "m")
    kinds = [make_op(n).context([g.tensors[t] if t else None for t in n.inputs],
                                [g.tensors[t] for t in n.outputs])["shared_kind"] for n in (qa, qb)]
    assert kinds == ["mm", "direct"]
    text = (res.out_dir / "m_weights.h").read_text()
    assert len(re.findall(r"/\* \S+ \(mm_weights\): 2x8x2 \*/", text)) == 1
    assert len(re.findall(r"/\* \S+: 4x8x1x1 \*/", text)) == 1
    check_exact(res, samples(xs, 3, 7))
