"""fuse_pad: a zero constant Pad of the spatial axes before a Conv is folded into the Conv's
pads; numerics unchanged, Pad gone, and the C of the folded model matches onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.passes.fuse_pad import fuse_pad
from tests.passes._graphs import apply, build, op_counts
from tests.util import check_model, make_model, save

W = np.random.default_rng(4).standard_normal((4, 3, 3, 3)).astype(np.float32)


def pad_conv(pads, conv_attrs, opset=13, mode="constant", value=None, x=(1, 3, 7, 6)):
    inits = {"W": W}
    if opset >= 11:
        inits["p"] = np.array(pads, np.int64)
        names = ["x", "p"]
        if value is not None:
            inits["v"] = np.array(value, np.float32)
            names.append("v")
        pad = helper.make_node("Pad", names, ["t"], mode=mode)
    else:
        pad = helper.make_node("Pad", ["x"], ["t"], mode=mode, pads=pads, value=value or 0.0)
    nodes = [pad, helper.make_node("Conv", ["t", "W"], ["y"], **conv_attrs)]
    return nodes, [("x", x)], inits


FOLD = [
    # (pads over N, C, H, W begin then end, conv attrs, opset)
    ([0, 0, 1, 1, 0, 0, 1, 1], {}, 13),
    ([0, 0, 2, 0, 0, 0, 1, 3], {"pads": [1, 1, 0, 1], "strides": [2, 2]}, 13),
    ([0, 0, 1, 0, 0, 0, 0, 1], {"auto_pad": "SAME_UPPER", "strides": [2, 1]}, 13),
    ([0, 0, 1, 2, 0, 0, 1, 0], {"auto_pad": "SAME_LOWER"}, 13),
    ([0, 0, 1, 1, 0, 0, 1, 1], {"auto_pad": "VALID", "dilations": [2, 1]}, 13),
    ([0, 0, 1, 1, 0, 0, 1, 1], {}, 2),                                # pads attribute
]


@pytest.mark.parametrize("pads,attrs,opset", FOLD)
def test_fold(tmp_path, pads, attrs, opset):
    nodes, ins, inits = pad_conv(pads, attrs, opset)
    g = build(tmp_path, nodes, ins, ["y"], inits, opset=opset)
    changed, after = apply(g, fuse_pad)
    assert changed
    assert op_counts(after) == {"Conv": 1}
    (conv,) = after.nodes()
    assert conv.inputs[0] == "x" and "auto_pad" not in conv.attrs
    assert "t" not in after.tensors and "p" not in after.tensors


def test_fold_explicit_zero_value_and_c(tmp_path):
    nodes, ins, inits = pad_conv([0, 0, 1, 2, 0, 0, 2, 1], {"pads": [1, 0, 0, 1]}, value=0.0)
    m = make_model(nodes, ins, [("y", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path, opt_level=2)
    assert [r["op"] for r in res.report["layers"]] == ["Conv"]


@pytest.mark.parametrize("pads,kw", [
    ([0, 0, 1, 1, 0, 0, 1, 1], {"value": 1.5}),             # non-zero fill
    ([0, 0, 1, 1, 0, 0, 1, 1], {"mode": "reflect"}),
    ([0, 0, 1, 1, 0, 0, 1, 1], {"mode": "edge"}),
    ([0, 1, 1, 1, 0, 0, 1, 1], {"x": (1, 2, 7, 6)}),          # channel axis padded
    ([0, 0, -1, 1, 0, 0, 1, 1], {}),                          # cropping
])
def test_not_folded(tmp_path, pads, kw):
    nodes, ins, inits = pad_conv(pads, {}, **kw)
    g = build(tmp_path, nodes, ins, ["y"], inits)
    changed, after = apply(g, fuse_pad)
    assert not changed
    assert op_counts(after) == {"Pad": 1, "Conv": 1}


def test_pad_read_twice_not_folded(tmp_path):
    nodes, ins, inits = pad_conv([0, 0, 1, 1, 0, 0, 1, 1], {})
    nodes.append(helper.make_node("Relu", ["t"], ["z"]))
    g = build(tmp_path, nodes, ins, ["y", "z"], inits)
    changed, _ = apply(g, fuse_pad)
    assert not changed
