"""Shape/layout ops (Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout, Transpose, Concat):
one-node models over shapes, attributes and opsets; C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import ShapeError, UnsupportedOp
from tests.util import check_model, make_model, save

I64 = np.int64


def run(tmp_path, node, xs, inits=None, opset=13, opt_level=0, ort=True):
    """One-node model with input "x" of shape xs; opt_level 0 keeps Identity/Dropout kernels."""
    m = make_model([node], [("x", xs)], [("y", None)], inits or {}, opset=opset)
    return check_model(save(m, tmp_path), tmp_path, opt_level=opt_level, ort=ort)


def refused(tmp_path, node, xs, inits=None, opset=13, match=None, err=UnsupportedOp):
    """Outputs get a dummy shape: onnx shape inference would reject some of these models."""
    m = make_model([node], [("x", xs)], [(o, (1,)) for o in node.output], inits or {}, opset=opset)
    with pytest.raises(err, match=match):
        compile_model(save(m, tmp_path), tmp_path / "out")


@pytest.mark.parametrize("xs,shape,allowzero,opset", [
    ((2, 3, 4), [4, 6], 0, 13),
    ((2, 3, 4), [-1], 0, 13),
    ((2, 3, 4), [0, -1], 0, 13),
    ((2, 3, 4), [0, 0, 2, 2], 0, 13),
    ((1, 8, 1, 1), [1, -1], 0, 5),
    ((2, 3, 4), [3, 8], 1, 14),
])
def test_reshape(tmp_path, xs, shape, allowzero, opset):
    attrs = {"allowzero": allowzero} if opset >= 14 else {}
    node = helper.make_node("Reshape", ["x", "s"], ["y"], **attrs)
    res = run(tmp_path, node, xs, {"s": np.array(shape, I64)}, opset=opset)
    assert res.report["layers"][0]["op"] == "Reshape"


def test_reshape_opset1_attribute(tmp_path):
    node = helper.make_node("Reshape", ["x"], ["y"], shape=[3, 8])
    m = make_model([node], [("x", (2, 3, 4))], [("y", (3, 8))], opset=4)
    check_model(save(m, tmp_path), tmp_path)


def test_reshape_runtime_shape_refused(tmp_path):
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    m = make_model([node], [("x", (2, 3)), ("s", (2,))], [("y", (3, 2))])
    with pytest.raises(UnsupportedOp, match="constant"):
        compile_model(save(m, tmp_path), tmp_path / "out")


def test_reshape_bad_size(tmp_path):
    node = helper.make_node("Reshape", ["x", "s"], ["y"])
    m = make_model([node], [("x", (2, 3))], [("y", (5,))], {"s": np.array([5], I64)})
    with pytest.raises(ShapeError):
        compile_model(save(m, tmp_path), tmp_path / "out")


@pytest.mark.parametrize("xs,axis,opset", [
    ((2, 3, 4, 5), 1, 13), ((2, 3, 4, 5), 0, 13), ((2, 3, 4, 5), 4, 13),
    ((2, 3, 4, 5), -2, 13), ((2, 3, 4), 2, 9), ((3, 4), None, 1),
])
def test_flatten(tmp_path, xs, axis, opset):
    attrs = {} if axis is None else {"axis": axis}
    run(tmp_path, helper.make_node("Flatten", ["x"], ["y"], **attrs), xs, opset=opset)


def test_flatten_negative_axis_before_11_refused(tmp_path):
    refused(tmp_path, helper.make_node("Flatten", ["x"], ["y"], axis=-1), (2, 3), opset=9,
            match="negative axis")


@pytest.mark.parametrize("xs,axes,opset", [
    ((1, 3, 1, 4), [0, 2], 13), ((1, 3, 1, 4), [-2], 13), ((1, 3, 1, 4), None, 13),
    ((1, 3, 1, 4), [0], 11), ((1, 3, 1, 4), [-4], 11), ((1, 3, 1, 4), None, 1),
])
def test_squeeze(tmp_path, xs, axes, opset):
    if opset >= 13:
        ins, inits = (["x", "a"], {"a": np.array(axes, I64)}) if axes else (["x"], {})
        node = helper.make_node("Squeeze", ins, ["y"])
    else:
        inits = {}
        node = helper.make_node("Squeeze", ["x"], ["y"], **({"axes": axes} if axes else {}))
    run(tmp_path, node, xs, inits, opset=opset)


def test_squeeze_non_unit_axis(tmp_path):
    node = helper.make_node("Squeeze", ["x"], ["y"], axes=[1])
    m = make_model([node], [("x", (1, 3))], [("y", (1,))], opset=11)
    with pytest.raises(ShapeError):
        compile_model(save(m, tmp_path), tmp_path / "out")


@pytest.mark.parametrize("xs,axes,opset", [
    ((3, 4), [0], 13), ((3, 4), [2, 0], 13), ((3, 4), [-1, 1], 13), ((3, 4), [1], 1), ((3, 4), [-1], 11),
])
def test_unsqueeze(tmp_path, xs, axes, opset):
    if opset >= 13:
        node = helper.make_node("Unsqueeze", ["x", "a"], ["y"])
        run(tmp_path, node, xs, {"a": np.array(axes, I64)}, opset=opset)
    else:
        run(tmp_path, helper.make_node("Unsqueeze", ["x"], ["y"], axes=axes), xs, opset=opset)


def test_unsqueeze_negative_axis_opset1_refused(tmp_path):
    refused(tmp_path, helper.make_node("Unsqueeze", ["x"], ["y"], axes=[-1]), (3,), opset=9,
            match="negative axis")


@pytest.mark.parametrize("opt_level", [0, 2])
def test_identity(tmp_path, opt_level):
    res = run(tmp_path, helper.make_node("Identity", ["x"], ["y"]), (2, 5), opt_level=opt_level)
    assert [t["name"] for t in res.report["outputs"]] == ["y"]


@pytest.mark.parametrize("opt_level", [0, 2])
def test_identity_after_transpose(tmp_path, opt_level):
    nodes = [helper.make_node("Transpose", ["x"], ["t"]), helper.make_node("Identity", ["t"], ["y"]),
             helper.make_node("Identity", ["t"], ["z"])]
    m = make_model(nodes, [("x", (2, 3))], [("y", None), ("z", None)])
    res = check_model(save(m, tmp_path), tmp_path, opt_level=opt_level)
    assert [t["name"] for t in res.report["outputs"]] == ["y", "z"]


@pytest.mark.parametrize("opset,attrs,inputs", [
    (6, {"is_test": 1, "ratio": 0.3}, 1), (7, {"ratio": 0.3}, 1), (12, {}, 1), (12, {}, 2), (13, {}, 3),
])
def test_dropout(tmp_path, opset, attrs, inputs):
    inits = {"r": np.array(0.4, np.float32), "t": np.array(False)}
    names = ["x", "r", "t"][:inputs]
    node = helper.make_node("Dropout", names, ["y"], **attrs)
    # onnxruntime has no Dropout kernel before opset 7.
    run(tmp_path, node, (2, 6), {k: v for k, v in inits.items() if k in names}, opset=opset,
        ort=opset >= 7)


def test_dropout_training_refused(tmp_path):
    node = helper.make_node("Dropout", ["x", "r", "t"], ["y"])
    refused(tmp_path, node, (2, 3), {"r": np.array(0.5, np.float32), "t": np.array(True)},
            match="training_mode")


def test_dropout_mask_refused(tmp_path):
    refused(tmp_path, helper.make_node("Dropout", ["x"], ["y", "mask"]), (2, 3), match="mask")


def test_dropout_old_training_refused(tmp_path):
    refused(tmp_path, helper.make_node("Dropout", ["x"], ["y"]), (2, 3), opset=6, match="is_test")


@pytest.mark.parametrize("xs,perm", [
    ((2, 3), None), ((2, 3, 4), [1, 0, 2]), ((2, 3, 4), [2, 0, 1]), ((1, 3, 4, 5), [0, 2, 3, 1]),
    ((2, 3, 4, 5), [3, 2, 1, 0]), ((2, 1, 4, 5), [0, 1, 3, 2]), ((2, 3, 4, 5, 2), [0, 4, 1, 2, 3]),
    ((2, 3, 4), [0, 1, 2]),
])
def test_transpose(tmp_path, xs, perm):
    attrs = {} if perm is None else {"perm": perm}
    run(tmp_path, helper.make_node("Transpose", ["x"], ["y"], **attrs), xs)


def test_transpose_bad_perm(tmp_path):
    node = helper.make_node("Transpose", ["x"], ["y"], perm=[0, 0])
    m = make_model([node], [("x", (2, 3))], [("y", (2, 2))])
    with pytest.raises((ShapeError, Exception)):
        compile_model(save(m, tmp_path), tmp_path / "out")


@pytest.mark.parametrize("shapes,axis,opset", [
    ([(2, 3), (2, 5)], 1, 13), ([(2, 3), (4, 3), (1, 3)], 0, 13), ([(2, 3, 4), (2, 1, 4)], -2, 13),
    ([(1, 2, 3, 3), (1, 4, 3, 3)], 1, 11), ([(5,), (3,)], 0, 4), ([(2, 2), (2, 2)], None, 1),
    ([(3, 4)], 1, 13),
])
def test_concat(tmp_path, shapes, axis, opset):
    names = [f"x{i}" for i in range(len(shapes))]
    attrs = {} if axis is None else {"axis": axis}
    node = helper.make_node("Concat", names, ["y"], **attrs)
    out = np.concatenate([np.zeros(s) for s in shapes], axis=1 if axis is None else axis).shape
    m = make_model([node], list(zip(names, shapes)), [("y", out)], opset=opset)
    check_model(save(m, tmp_path), tmp_path, ort=opset >= 4)  # onnxruntime has no Concat-1


def test_concat_constant_input(tmp_path):
    w = np.arange(6, dtype=np.float32).reshape(2, 3)
    node = helper.make_node("Concat", ["x", "w", "x"], ["y"], axis=0)
    run(tmp_path, node, (2, 3), {"w": w})


def test_concat_negative_axis_before_11_refused(tmp_path):
    refused(tmp_path, helper.make_node("Concat", ["x", "x"], ["y"], axis=-1), (2, 3), opset=4,
            match="negative axis")
