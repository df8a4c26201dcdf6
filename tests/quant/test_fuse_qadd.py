"""QConv -> QAdd fused into one QConv (nncc/quant/fuse_qadd.py): the fused kernel computes the
conv's int8 value as before, then the QAdd with the residual at the same index, so the C must
equal the integer reference bit for bit, and the fused graph's reference must equal the unfused
graph's. The output may overwrite the residual: the int8 MLPerf IC (ResNet-8) arena drops below
TFLite Micro's 49,152 B."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from nncc.ir import Node
from nncc.ops.quantized import QADD, RESIDUAL_INDEX, TABLE_INDEX, QAdd
from nncc.quant.quantize import QuantOptions, quantize
from nncc.reference import run_reference
from tests.quant.qutil import build, check_exact, float_graph, quantize_inputs
from tests.util import MLPERF, make_model, mlperf_inputs, save

RNG = np.random.default_rng(5)
IC = MLPERF / "mlperf_ic_resnet8.onnx"


def block(tmp_path, conv_first: bool, relu: bool, stride_proj: bool = False):
    """x -> Conv+Relu a -> Conv b -> Add(b, r) [-> Relu] -> y; r = x, or a strided 1x1 conv of x
    (then the first conv is strided too)."""
    c = 4
    cin = 3 if stride_proj else c
    inits = {"w0": RNG.standard_normal((c, cin, 3, 3)).astype(np.float32) * 0.4,
             "b0": RNG.standard_normal(c).astype(np.float32) * 0.1,
             "w1": RNG.standard_normal((c, c, 3, 3)).astype(np.float32) * 0.3,
             "b1": RNG.standard_normal(c).astype(np.float32) * 0.1,
             "wp": RNG.standard_normal((c, 3, 1, 1)).astype(np.float32) * 0.5}
    s = [2, 2] if stride_proj else [1, 1]
    nodes = [helper.make_node("Conv", ["x", "w0", "b0"], ["a0"], pads=[1, 1, 1, 1], strides=s),
             helper.make_node("Relu", ["a0"], ["a"]),
             helper.make_node("Conv", ["a", "w1", "b1"], ["b"], pads=[1, 1, 1, 1])]
    if stride_proj:
        nodes.append(helper.make_node("Conv", ["x", "wp"], ["r"], strides=s))
        r = "r"
    else:
        r = "x"
    nodes.append(helper.make_node("Add", ["b", r] if conv_first else [r, "b"], ["s"]))
    last = "s"
    if relu:
        nodes.append(helper.make_node("Relu", ["s"], ["sr"]))
        last = "sr"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    xs = (1, cin, 8, 8)
    return save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path), xs


def samples(shape, n, seed, lo=-1.0, hi=1.0):
    rng = np.random.default_rng(seed)
    return [{"x": rng.uniform(lo, hi, shape).astype(np.float32)} for _ in range(n)]


def fused_nodes(g):
    return [n for n in g.nodes() if n.op == "QConv" and QADD in n.attrs]


@pytest.mark.parametrize("scaling,packed", [("fixed", True), ("shift", True), ("fixed", False),
                                            ("double-shift", True), ("double-shift", False)])
@pytest.mark.parametrize("conv_first", [True, False])
@pytest.mark.parametrize("relu,proj", [(True, False), (False, False), (True, True)])
def test_block_exact(tmp_path, scaling, packed, conv_first, relu, proj):
    path, xs = block(tmp_path, conv_first, relu, proj)
    res = build(path, tmp_path / "q", samples(xs, 6, 0), scaling, packed=packed)
    check_exact(res, samples(xs, 3, 1))
    (node,) = fused_nodes(res.graph)
    assert not any(n.op == "QAdd" for n in res.graph.nodes())
    al = res.plan.alias
    r = node.inputs[RESIDUAL_INDEX]
    if proj:  # the residual (an arena tensor) dies at the conv: y is written over it
        assert al.host(node.outputs[0]) == al.host(r)
        assert res.plan.alias.how[node.name] == "inplace"


def reference_pair(model_path, calib, test, scaling="fixed"):
    """Outputs of the fused and the unfused int8 graphs' references on the quantized `test`."""
    outs = []
    for fuse in (True, False):
        g = quantize(float_graph(model_path), QuantOptions(samples=calib, scaling=scaling, fuse_add=fuse))
        outs.append((g, [run_reference(g, s) for s in test]))
    return outs


@pytest.mark.parametrize("scaling", ["fixed", "shift", "double-shift"])
def test_fused_reference_equals_unfused(tmp_path, scaling):
    path, xs = block(tmp_path, True, True)
    (gf, fused), (gu, unfused) = reference_pair(path, samples(xs, 6, 0), samples(xs, 4, 1), scaling)
    assert len(fused_nodes(gf)) == 1 and not fused_nodes(gu)
    assert any(n.op == "QAdd" for n in gu.nodes())
    # same int8 inputs for both (same calibration, so same input scale)
    for a, b in zip(fused, unfused):
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


@pytest.mark.parametrize("scaling,packed", [("fixed", True), ("fixed", False), ("shift", True),
                                            ("double-shift", True)])
@pytest.mark.parametrize("conv_first", [True, False])
def test_qadd_table(tmp_path, scaling, packed, conv_first):
    """A fused QAdd of the usual kind (fixed scaling) on a shared kernel (packed) brings its
    table as input TABLE_INDEX: int32, the conv's operand's terms (x - zp) << 20 times its
    multiplier, doubled, at x + 128, then the residual's at x + 384; any other, none."""
    path, xs = block(tmp_path, conv_first, True)
    g = quantize(float_graph(path), QuantOptions(samples=samples(xs, 6, 0), scaling=scaling,
                                                 packed=packed))
    (node,) = fused_nodes(g)
    if scaling != "fixed" or not packed:
        assert len(node.inputs) == TABLE_INDEX
        return
    table = g.const(node.inputs[TABLE_INDEX])
    assert table.dtype == np.int32 and table.shape == (512,)
    a = node.attrs[QADD]["attrs"]
    conv, res = ("a", "b") if conv_first else ("b", "a")
    for half, op in ((table[:256], conv), (table[256:], res)):
        x = np.arange(-128, 128, dtype=np.int64) - a[f"{op}_zero_point"]
        m, s = a[f"{op}_mult"], -a[f"{op}_shift"]  # a right shift (s >= 0 for this kind)
        # TFLite's SRDHM (C's division truncates), then a rounding right shift (ties away
        # from zero)
        t = (x << 20) * m + np.where(x >= 0, 1 << 30, 1 - (1 << 30))
        high = np.where(t >= 0, t // (1 << 31), -(-t // (1 << 31)))
        term = np.where(high >= 0, (high + (1 << s >> 1)) >> s, -((-high + (1 << s >> 1)) >> s))
        np.testing.assert_array_equal(half, 2 * term)
    # the Add's own op computes the same terms
    add = QAdd(Node("a", "QAdd", ["a", "b"], ["y"], dict(a)))
    np.testing.assert_array_equal(table, add.term_table(conv_first))


def test_qadd_table_in_blob(tmp_path):
    """The table read through the QAdd's static struct by name, also when the weights are one
    blob (the name then an address in it): the C still equals the reference."""
    from nncc.compiler import compile_model
    path, xs = block(tmp_path, True, True)
    res = compile_model(path, tmp_path / "q", force=True, blob_threshold=0,
                        quant=QuantOptions(samples=samples(xs, 6, 0)))
    assert "_weights.b + " in next(res.out_dir.glob("*_weights.h")).read_text()
    assert len(fused_nodes(res.graph)[0].inputs) == TABLE_INDEX + 1
    check_exact(res, samples(xs, 3, 1))


@pytest.mark.parametrize("scaling", ["fixed", "shift", "double-shift"])
def test_mlperf_ic_int8_fused(tmp_path, scaling):
    """int8 ResNet-8: every residual Add fused; C == reference; the fused graph's reference ==
    the unfused one's; arena < TFLM's 49,152 B."""
    res = build(IC, tmp_path / "q", mlperf_inputs(IC.stem, 6, 0), scaling)
    check_exact(res, mlperf_inputs(IC.stem, 2, 1))
    assert len(fused_nodes(res.graph)) == 3
    assert not any(n.op == "QAdd" for n in res.graph.nodes())
    unfused = build(IC, tmp_path / "u", mlperf_inputs(IC.stem, 6, 0), scaling, fuse_add=False)
    for s in mlperf_inputs(IC.stem, 2, 1):
        q = quantize_inputs(res.report, s)
        a, b = run_reference(res.graph, q), run_reference(unfused.graph, q)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    arena, before = res.report["arena_bytes"], unfused.report["arena_bytes"]
    print(f"\nIC int8 {scaling}: arena {arena} B (unfused {before} B, TFLM 49,152 B)")
    assert arena < 49_152 <= before


def test_residual_input_without_qadd_is_refused():
    from nncc.errors import UnsupportedOp
    from nncc.ir import Node
    from nncc.ops import make_op
    attrs = {"y_zero_point": 0, "act_min": -128, "act_max": 127, "scaling": "fixed", "x_zero_point": 0}
    with pytest.raises(UnsupportedOp):
        make_op(Node("c", "QConv", ["x", "w", "b", "m", "s", "r"], ["y"], attrs))
    with pytest.raises(UnsupportedOp):  # a fused QAdd without its residual input
        make_op(Node("c", "QConv", ["x", "w", "b", "m", "s"], ["y"],
                     {**attrs, QADD: {"name": "a", "conv_first": True, "attrs": {}}}))
