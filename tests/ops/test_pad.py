"""Pad: constant/reflect/edge over ranks, negative pads (cropping), the attribute forms (opset 1
`paddings`, opsets 2-10 `pads`), the input forms (opset 11) and `axes` (opset 18)."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from tests.util import check_model, make_model, save

I64 = np.int64


def pad_input_form(tmp_path, xs, pads, mode, value=None, axes=None, opset=13, ort=True):
    inits = {"p": np.array(pads, I64)}
    names = ["x", "p"]
    if value is not None or axes is not None:
        names.append("v" if value is not None else "")
        if value is not None:
            inits["v"] = np.array(value, np.float32)
    if axes is not None:
        names.append("a")
        inits["a"] = np.array(axes, I64)
    node = helper.make_node("Pad", names, ["y"], mode=mode)
    m = make_model([node], [("x", xs)], [("y", None)], inits, opset=opset)
    return check_model(save(m, tmp_path), tmp_path, ort=ort)


@pytest.mark.parametrize("xs,pads,mode,value", [
    ((1, 3, 4, 5), [0, 0, 1, 2, 0, 0, 2, 1], "constant", None),
    ((1, 3, 4, 5), [0, 0, 1, 2, 0, 0, 2, 1], "constant", 1.5),
    ((1, 3, 4, 5), [0, 0, 1, 2, 0, 0, 2, 1], "reflect", None),
    ((1, 3, 4, 5), [0, 0, 3, 4, 0, 0, 3, 4], "reflect", None),
    ((1, 3, 4, 5), [0, 0, 1, 2, 0, 0, 2, 1], "edge", None),
    ((1, 3, 4, 5), [0, 0, 6, 7, 0, 0, 5, 8], "edge", None),
    ((2, 3, 4), [1, 0, 0, 0, 2, 1], "constant", -2.0),   # outer axes padded
    ((7,), [3, 2], "reflect", None),
    ((7,), [3, 2], "edge", None),
    ((2, 3, 4, 5, 2), [0, 1, 0, 1, 0, 0, 1, 0, 1, 1], "constant", 0.5),
    ((2, 3, 4), [0, 0, 0, 0, 0, 0], "constant", None),   # no padding at all
])
def test_pad(tmp_path, xs, pads, mode, value):
    pad_input_form(tmp_path, xs, pads, mode, value)


@pytest.mark.parametrize("xs,pads,mode", [
    ((1, 3, 6, 6), [0, 0, -1, -2, 0, 0, -2, 0], "constant"),     # crop only
    ((1, 3, 6, 6), [0, 0, -1, 2, 0, 0, 2, -1], "constant"),      # crop one side, pad the other
    ((1, 3, 6, 6), [0, -1, -1, 2, 0, 0, 2, -1], "edge"),
    ((1, 3, 6, 6), [0, 0, -1, 2, 0, 0, 2, -2], "reflect"),
])
def test_pad_negative(tmp_path, xs, pads, mode):
    pad_input_form(tmp_path, xs, pads, mode)


@pytest.mark.parametrize("axes,pads,opset", [
    ([2, 3], [1, 2, 2, 1], 18), ([-1], [2, 3], 18), ([1, -1], [1, 0, 0, 2], 21),
])
def test_pad_axes(tmp_path, axes, pads, opset):
    pad_input_form(tmp_path, (1, 3, 4, 5), pads, "constant", 0.25, axes, opset=opset)


def test_pad_axes_default_value(tmp_path):
    pad_input_form(tmp_path, (1, 3, 4, 5), [1, 1], "reflect", None, [3], opset=18)


@pytest.mark.parametrize("opset,mode,value", [(2, "constant", 1.0), (2, "reflect", None),
                                              (10, "edge", None), (1, "constant", -3.0)])
def test_pad_attribute_form(tmp_path, opset, mode, value):
    pads = [0, 0, 1, 2, 0, 0, 2, 1]
    attrs = {"mode": mode, ("paddings" if opset < 2 else "pads"): pads}
    if value is not None:
        attrs["value"] = value
    node = helper.make_node("Pad", ["x"], ["y"], **attrs)
    xs = (1, 2, 4, 5)
    ys = tuple(n + pads[i] + pads[i + 4] for i, n in enumerate(xs))
    m = make_model([node], [("x", xs)], [("y", ys)], opset=opset)
    check_model(save(m, tmp_path), tmp_path, ort=opset >= 2)  # onnxruntime has no Pad-1


def compile_pad(tmp_path, pads, mode, xs=(1, 3, 4, 5), opset=13):
    node = helper.make_node("Pad", ["x", "p"], ["y"], mode=mode)
    m = make_model([node], [("x", xs)], [("y", (1,))], {"p": np.array(pads, I64)}, opset=opset)
    return compile_model(save(m, tmp_path), tmp_path / "out")


def test_wrap_refused(tmp_path):
    with pytest.raises(UnsupportedOp, match="wrap"):
        compile_pad(tmp_path, [0, 0, 1, 1, 0, 0, 1, 1], "wrap", opset=19)


def test_reflect_too_wide_refused(tmp_path):
    with pytest.raises(UnsupportedOp, match="reflect"):
        compile_pad(tmp_path, [0, 0, 4, 0, 0, 0, 0, 0], "reflect")


def test_runtime_pads_refused(tmp_path):
    node = helper.make_node("Pad", ["x", "p"], ["y"])
    m = make_model([node], [("x", (2, 3)), ("p", (4,))], [("y", (4, 5))])
    with pytest.raises(UnsupportedOp, match="constant"):
        compile_model(save(m, tmp_path), tmp_path / "out")
