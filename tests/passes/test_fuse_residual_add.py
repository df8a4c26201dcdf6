"""fuse_residual_add: Conv -> Add(conv_out, r) (+ the Add's fused activation) becomes one Conv
with a residual input; the reference is unchanged, the C matches onnxruntime, the output is
planned over r when r dies there, and unfuse_residual_add (for nncc/quant) restores the pair."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import analyze, load
from nncc.ops import FUSED_ACTIVATION
from nncc.ops.conv import FUSED_RESIDUAL
from nncc.passes.fuse_activation import fuse_activation
from nncc.passes.fuse_residual_add import fuse_residual_add, unfuse_residual_add
from tests.passes._graphs import apply, assert_same_outputs, build, op_counts, random_inputs
from tests.util import MLPERF, check_model, make_model, save

RNG = np.random.default_rng(11)
C, HW = 4, (5, 5)


def conv(name, x, y, cin=C, cout=C, k=3, **attrs):
    inits = {f"{name}_w": RNG.standard_normal((cout, cin, k, k)).astype(np.float32) * 0.4,
             f"{name}_b": RNG.standard_normal(cout).astype(np.float32) * 0.1}
    node = helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [y], pads=[k // 2] * 4, **attrs)
    return node, inits


def block(conv_first=True, act="Relu", r="a", stem=True):
    """x -> [stem Conv+Relu -> a] -> Conv+Relu -> h -> Conv -> c -> Add(c, r) -> act -> y."""
    nodes, inits = [], {}
    src = "x"
    if stem:
        n0, i0 = conv("c0", "x", "a0", cin=2)
        nodes += [n0, helper.make_node("Relu", ["a0"], ["a"])]
        inits.update(i0)
        src = "a"
    n1, i1 = conv("c1", src, "h0")
    n2, i2 = conv("c2", "h", "c")
    nodes += [n1, helper.make_node("Relu", ["h0"], ["h"]), n2]
    inits.update(i1)
    inits.update(i2)
    operands = ["c", r] if conv_first else [r, "c"]
    if act:
        nodes += [helper.make_node("Add", operands, ["s"]), helper.make_node(act, ["s"], ["y"])]
    else:
        nodes.append(helper.make_node("Add", operands, ["y"]))
    return nodes, inits, [("x", (1, 2 if stem else C, *HW))]


def fuse_both(g):
    return fuse_activation(g) | fuse_residual_add(g)


@pytest.mark.parametrize("conv_first", [True, False])
@pytest.mark.parametrize("act", ["Relu", None])
def test_fuse_structure_and_numerics(tmp_path, conv_first, act):
    nodes, inits, ins = block(conv_first, act)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fuse_both)
    assert changed and op_counts(after) == {"Conv": 3}
    last = [n for n in after.nodes() if FUSED_RESIDUAL in n.attrs]
    stem = after.nodes()[0].outputs[0]  # "a" (fuse_activation keeps one of the two names)
    assert len(last) == 1 and last[0].inputs[3] == stem and last[0].outputs == ["y"]
    assert (FUSED_ACTIVATION in last[0].attrs) == (act is not None)
    back = unfuse_residual_add(after)
    assert op_counts(back) == {"Conv": 3, "Add": 1}
    assert_same_outputs(g, back, random_inputs(g))


def test_not_fused(tmp_path):
    # the conv output is also read elsewhere
    nodes, inits, ins = block()
    nodes.append(helper.make_node("Sigmoid", ["c"], ["y2"]))
    g = build(tmp_path, nodes, ins, ["y", "y2"], inits)
    assert not apply(g, fuse_both)[1].nodes_of("Conv")[-1].attrs.get(FUSED_RESIDUAL)
    # r broadcasts (1 x C x 1 x 1)
    nodes, inits, ins = block(r="m")
    nodes.insert(2, helper.make_node("GlobalAveragePool", ["a"], ["m"]))
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fuse_residual_add)
    assert not changed and op_counts(after)["Add"] == 1
    # the conv already has its own activation
    nodes, inits, ins = block()
    nodes.insert(-2, helper.make_node("Relu", ["c"], ["cr"]))
    nodes[-2] = helper.make_node("Add", ["cr", "a"], ["s"])
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fuse_both)
    assert op_counts(after)["Add"] == 1


@pytest.mark.parametrize("case", ["block", "r_is_conv_input", "r_is_graph_input", "add_first"])
def test_c_matches_onnxruntime_and_output_over_r(tmp_path, case):
    if case == "r_is_conv_input":  # y = conv(h) + h: never planned over h, which the conv reads around
        n1, i1 = conv("c1", "x", "h0")
        n2, i2 = conv("c2", "h", "c")
        nodes = [n1, helper.make_node("Relu", ["h0"], ["h"]), n2, helper.make_node("Add", ["c", "h"], ["s"]),
                 helper.make_node("Relu", ["s"], ["y"])]
        inits, ins = {**i1, **i2}, [("x", (1, C, *HW))]
    else:
        nodes, inits, ins = block(conv_first=case != "add_first", r="x" if case == "r_is_graph_input" else "a",
                                  stem=case != "r_is_graph_input")
    nodes.append(helper.make_node("Softmax", ["y"], ["z"], axis=1))
    path = save(make_model(nodes, ins, [("z", None)], inits), tmp_path)
    res = check_model(path, tmp_path)
    (node,) = [n for n in res.graph.nodes() if FUSED_RESIDUAL in n.attrs]
    al = res.plan.alias
    over_r = al.host(node.outputs[0]) == al.host(node.inputs[3])
    assert over_r == (case in ("block", "add_first"))
    if case == "block":  # peak: two maps (a and h), never three
        assert res.plan.lower_bound_bytes == 2 * C * HW[0] * HW[1] * 4
        unfused = analyze(load(path, opt_level=1))
        assert unfused.plan.lower_bound_bytes == 3 * C * HW[0] * HW[1] * 4


def test_o0_does_not_fuse(tmp_path):
    nodes, inits, ins = block()
    g = load(save(make_model(nodes, ins, [("y", None)], inits), tmp_path), opt_level=0)
    assert op_counts(g)["Add"] == 1 and not any(FUSED_RESIDUAL in n.attrs for n in g.nodes())


def test_mlperf_ic_arena_below_tflm():
    r = analyze(load(MLPERF / "mlperf_ic_resnet8.onnx")).report
    assert r["arena_bytes"] == r["arena_lower_bound_bytes"] == 2 * 65_536 < 196_608
    assert not [row for row in r["layers"] if row["op"] == "Add"]
    assert [row["fused"] for row in r["layers"] if "Add" in row["fused"]] == [["Add", "Relu"]] * 3
