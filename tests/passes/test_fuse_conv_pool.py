"""fuse_conv_pool: Conv (+ fused activation) -> MaxPool / AveragePool / global pool becomes one
ConvPool whose kernel never stores the conv output. Numerics unchanged (reference before and
after), structure checked, the C matches onnxruntime over pads, ceil_mode, count_include_pad,
dilations, strides, groups and the conv kernel's paired and 1x1 paths; LeNet-5's RAM lower bound
drops at -O2."""
import importlib

import numpy as np
import pytest
from onnx import helper

from nncc.compiler import analyze, load
from nncc.errors import UnsupportedOp
from nncc.ir import Node
from nncc.ops import FUSED_ACTIVATION, make_op
from nncc.passes.fuse_activation import fuse_activation
from nncc.passes.fuse_conv_pool import fuse_conv_pool
from tests.passes._graphs import apply, build, op_counts
from tests.util import FIXTURES, check_model, make_model, save

FCP = importlib.import_module("nncc.passes.fuse_conv_pool")
RNG = np.random.default_rng(31)

# (x shape, W shape, conv attrs, activation or None, pool op, pool attrs)
CASES = {
    "lenet": ((1, 1, 12, 12), (3, 1, 5, 5), {"pads": [2, 2, 2, 2]}, "Relu", "MaxPool",
              {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "avg_pad": ((1, 2, 9, 8), (4, 2, 3, 3), {}, "Relu", "AveragePool",
                {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "avg_incl_pad": ((1, 2, 9, 8), (4, 2, 3, 3), {"pads": [1, 0, 1, 0]}, None, "AveragePool",
                     {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 1, 0, 1],
                      "count_include_pad": 1}),
    "max_ceil": ((1, 3, 10, 10), (2, 3, 3, 3), {}, "LeakyRelu", "MaxPool",
                 {"kernel_shape": [3, 3], "strides": [2, 2], "ceil_mode": 1}),
    "overlap_dw": ((1, 4, 11, 11), (8, 1, 3, 3), {"group": 4, "strides": [2, 2], "dilations": [1, 2]},
                   "Relu", "MaxPool", {"kernel_shape": [3, 3], "strides": [1, 1]}),
    "pool_dil": ((1, 2, 12, 12), (3, 2, 3, 3), {"pads": [1, 1, 1, 1]}, "Tanh", "MaxPool",
                 {"kernel_shape": [2, 2], "dilations": [2, 2], "strides": [2, 2]}),
    "sigmoid_avg": ((1, 2, 8, 8), (3, 2, 3, 3), {"bias": False}, "Sigmoid", "AveragePool",
                    {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "gap_relu6": ((1, 3, 7, 7), (5, 3, 3, 3), {"pads": [1, 1, 1, 1]}, "Clip", "GlobalAveragePool", {}),
    "gmp": ((1, 3, 6, 5), (4, 3, 2, 2), {}, None, "GlobalMaxPool", {}),
    "conv1d": ((1, 3, 20), (4, 3, 3), {"pads": [1, 1]}, "Relu", "MaxPool",
               {"kernel_shape": [2], "strides": [2]}),
    # 8 input channels, 4 outputs at once, 3x3: conv pixels in pairs (nncc_dot4x2), the edge
    # ones alone, and a ceil_mode window cut by the conv map's edge
    "pairs": ((1, 8, 11, 11), (4, 8, 3, 3), {"pads": [1, 1, 1, 1]}, "Relu", "MaxPool",
              {"kernel_shape": [2, 2], "strides": [2, 2], "ceil_mode": 1}),
    # 1x1 with 4 outputs at once (nncc_dot4) under a whole-map AveragePool, as in KWS and VWW
    "pw_avg": ((1, 8, 5, 3), (8, 8, 1, 1), {}, "Relu", "AveragePool", {"kernel_shape": [5, 3]}),
}


def model(name, extra_out=False):
    xs, ws, conv_attrs, act, pool, pool_attrs = CASES[name]
    conv_attrs = dict(conv_attrs)
    inits = {"W": RNG.standard_normal(ws).astype(np.float32)}
    ins = ["x", "W"]
    if conv_attrs.pop("bias", True):
        inits["B"] = RNG.standard_normal(ws[0]).astype(np.float32)
        ins.append("B")
    nodes = [helper.make_node("Conv", ins, ["t"], **conv_attrs)]
    if act == "Clip":
        inits.update(lo=np.float32(0.0), hi=np.float32(6.0))
        nodes.append(helper.make_node("Clip", ["t", "lo", "hi"], ["a"]))
    elif act:
        nodes.append(helper.make_node(act, ["t"], ["a"]))
    nodes.append(helper.make_node(pool, ["a" if act else "t"], ["y"], **pool_attrs))
    return nodes, [("x", xs)], inits


@pytest.fixture(autouse=True)
def fuse_overlapping(monkeypatch):
    """The kernel handles overlapping windows; the default pipeline skips them (see the pass)."""
    monkeypatch.setattr(FCP, "FUSE_OVERLAPPING", True)


def test_overlapping_windows_not_fused_by_default(tmp_path, monkeypatch):
    monkeypatch.setattr(FCP, "FUSE_OVERLAPPING", False)
    nodes, ins, inits = model("overlap_dw")
    g = build(tmp_path, nodes, ins, ["y"], inits)
    fuse_activation(g)
    changed, after = apply(g, fuse_conv_pool)
    assert not changed and "ConvPool" not in op_counts(after)


@pytest.mark.parametrize("name", sorted(CASES))
def test_fuse(tmp_path, name):
    nodes, ins, inits = model(name)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    fuse_activation(g)  # as in the pipeline: the activation is inside the Conv first
    changed, after = apply(g, fuse_conv_pool)
    assert changed
    assert op_counts(after) == {"ConvPool": 1}
    (node,) = after.nodes()
    assert node.outputs == ["y"] and node.inputs[0] == "x"
    assert set(after.tensors) == {"x", "y", *[t for t in node.inputs if t]}  # no conv map left
    act = CASES[name][3]
    assert node.attrs.get(FUSED_ACTIVATION, {}).get("op") == act
    assert node.attrs["pool"]["op"] == CASES[name][4]


@pytest.mark.parametrize("name", sorted(CASES))
def test_c_matches_onnxruntime(tmp_path, name):
    nodes, ins, inits = model(name)
    m = make_model(nodes, ins, [("y", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path, opt_level=2)
    (layer,) = res.report["layers"]
    assert layer["op"] == "ConvPool" and layer["fused"] == ([CASES[name][3]] if CASES[name][3] else [])


def test_not_fused(tmp_path):
    nodes, ins, inits = model("lenet")
    nodes.append(helper.make_node("Relu", ["t"], ["z"]))  # conv output read twice
    g = build(tmp_path, nodes, ins, ["y", "z"], inits)
    assert not apply(g, fuse_conv_pool)[0]
    nodes, ins, inits = model("gmp")
    g = build(tmp_path, nodes, ins, ["y", "t"], inits)  # conv output is a graph output
    assert not apply(g, fuse_conv_pool)[0]
    # A Conv's output pooled after a non-fusable op in between stays as it is.
    nodes, ins, inits = model("avg_pad")
    nodes.insert(2, helper.make_node("Sigmoid", ["a"], ["a2"]))
    nodes[-1].input[0] = "a2"
    g = build(tmp_path, nodes, ins, ["y"], inits)
    fuse_activation(g)
    changed, after = apply(g, fuse_conv_pool)
    assert not changed and "ConvPool" not in op_counts(after)


def test_convpool_refused_without_its_attributes():
    with pytest.raises(UnsupportedOp):
        make_op(Node("n", "ConvPool", ["x", "w"], ["y"], {}))
    with pytest.raises(UnsupportedOp):
        make_op(Node("n", "ConvPool", ["x", "w"], ["y"], {"conv": {}, "pool": {"op": "LpPool"}}))


def test_lenet5_lower_bound_drops():
    path = FIXTURES / "zoo" / "lenet5_bn.onnx"
    bounds = {lvl: analyze(load(path, opt_level=lvl)).report["arena_lower_bound_bytes"] for lvl in (1, 2)}
    g2 = load(path, opt_level=2)
    assert op_counts(g2)["ConvPool"] == 2 and "MaxPool" not in op_counts(g2)
    # The 6 x 28 x 28 conv map (18816 bytes) no longer exists.
    assert bounds[2] < bounds[1] - 6 * 28 * 28 * 4 // 2, bounds
