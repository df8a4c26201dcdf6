"""Add/Sub/Mul/Div/Sum: broadcasting shapes, constant operands, the legacy opset-6 attributes;
C vs numpy reference vs onnxruntime, plus the loop-collapsing helper on its own."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import ShapeError, UnsupportedOp
from nncc.ops.elementwise import broadcast_shape, loop_nest
from tests.util import check_model, make_model, save

SHAPES = [
    ((3, 4, 5), (3, 4, 5)),           # same shape: one flat loop
    ((3, 4, 5), (5,)),                # trailing vector
    ((1, 3, 8, 8), (1, 3, 1, 1)),     # per-channel bias
    ((2, 3, 1, 5), (4, 1)),           # both sides broadcast
    ((4, 1), (1, 5)),                 # outer product
    ((2, 1, 4), (1, 3, 1)),
    ((), (2, 3)),                     # scalar
    ((1,), (2, 3)),
    ((2, 3), (5, 1, 3)),             # rank and dims differ
]


# Every shape with Add; the other ops share the same loops, so a few shapes each suffice.
CASES = ([("Add", a, b) for a, b in SHAPES]
         + [(op, *SHAPES[i]) for op in ("Sub", "Mul", "Div") for i in (1, 3)])


def samples(shapes: dict, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{k: np.asarray(rng.standard_normal(s), np.float32) for k, s in shapes.items()}]


@pytest.mark.parametrize("op,a,b", CASES)
def test_binary(tmp_path, op, a, b):
    node = helper.make_node(op, ["a", "b"], ["y"])
    m = make_model([node], [("a", a), ("b", b)], [("y", None)])
    check_model(save(m, tmp_path), tmp_path, samples({"a": a, "b": b}))


@pytest.mark.parametrize("op,const_first", [("Add", False), ("Div", True), ("Sub", True)])
def test_binary_constant_operand(tmp_path, op, const_first):
    w = np.random.default_rng(3).uniform(0.5, 2.0, (3, 1, 1)).astype(np.float32)
    names = ["W", "x"] if const_first else ["x", "W"]
    node = helper.make_node(op, names, ["y"])
    m = make_model([node], [("x", (1, 3, 4, 4))], [("y", None)], {"W": w})
    check_model(save(m, tmp_path), tmp_path)


def test_same_input_twice(tmp_path):
    m = make_model([helper.make_node("Mul", ["x", "x"], ["y"])], [("x", (2, 5))], [("y", None)])
    check_model(save(m, tmp_path), tmp_path)


@pytest.mark.parametrize("shapes", [
    [(3,)],                            # one input: a copy
    [(2, 3), (2, 3)],
    [(2, 3, 4), (3, 1), (4,), ()],     # opset 8+: multidirectional
])
def test_sum(tmp_path, shapes):
    names = [f"x{i}" for i in range(len(shapes))]
    node = helper.make_node("Sum", names, ["y"])
    m = make_model([node], list(zip(names, shapes)), [("y", None)])
    check_model(save(m, tmp_path), tmp_path, samples(dict(zip(names, shapes))))


@pytest.mark.parametrize("op,a,b,attrs", [
    ("Add", (2, 3, 4, 5), (3, 4), {"broadcast": 1, "axis": 1}),
    ("Sub", (2, 3, 4, 5), (2,), {"broadcast": 1, "axis": 0}),
    ("Mul", (2, 3, 4, 5), (4, 5), {"broadcast": 1}),      # no axis: trailing alignment
    ("Div", (2, 3), (2, 1), {"broadcast": 1, "axis": 0}),    # size-1 dims of B broadcast too
    ("Add", (2, 3, 4), (2, 3, 4), {}),
])
def test_legacy_broadcast(tmp_path, op, a, b, attrs):
    node = helper.make_node(op, ["a", "b"], ["y"], **attrs)
    m = make_model([node], [("a", a), ("b", b)], [("y", a)], opset=6)
    # onnxruntime no longer loads opset 6 binary ops: the numpy reference is the oracle here.
    check_model(save(m, tmp_path), tmp_path, ort=False)


def test_legacy_refusals(tmp_path):
    node = helper.make_node("Add", ["a", "b"], ["y"], broadcast=2)
    m = make_model([node], [("a", (2, 3)), ("b", (3,))], [("y", (2, 3))], opset=6)
    with pytest.raises(UnsupportedOp, match="broadcast=2"):
        compile_model(save(m, tmp_path), tmp_path / "p1")
    node = helper.make_node("Mul", ["a", "b"], ["y"])  # broadcast=0 needs equal shapes
    m = make_model([node], [("a", (2, 3)), ("b", (3,))], [("y", (2, 3))], opset=6)
    with pytest.raises(ShapeError):
        compile_model(save(m, tmp_path, "m2.onnx"), tmp_path / "p2")


def test_incompatible_shapes(tmp_path):
    node = helper.make_node("Add", ["a", "b"], ["y"])
    m = make_model([node], [("a", (2, 3)), ("b", (4,))], [("y", (2, 3))])
    with pytest.raises(ShapeError):
        compile_model(save(m, tmp_path), tmp_path / "p")


def test_broadcast_shape():
    assert broadcast_shape((2, 1, 4), (3, 1), ()) == (2, 3, 4)
    with pytest.raises(ShapeError):
        broadcast_shape((2, 3), (3, 2))


def test_loop_nest_collapses():
    same = loop_nest((3, 4, 5), [(3, 4, 5), (3, 4, 5)])
    assert same["dims"] == [60] and same["ins"] == [[(0, 1)], [(0, 1)]]
    bias = loop_nest((1, 3, 8, 8), [(1, 3, 8, 8), (1, 3, 1, 1)])
    assert bias["dims"] == [3, 64]
    assert bias["ins"] == [[(0, 64), (1, 1)], [(0, 1)]]
    scalar = loop_nest((2, 3), [(2, 3), ()])
    assert scalar["dims"] == [6] and scalar["ins"][1] == []
    one = loop_nest((), [(), ()])
    assert one["dims"] == [1] and one["out"] == []


def test_same_shape_is_one_flat_loop(tmp_path):
    node = helper.make_node("Add", ["a", "b"], ["y"])
    m = make_model([node], [("a", (2, 3, 4)), ("b", (2, 3, 4))], [("y", None)])
    res = compile_model(save(m, tmp_path), tmp_path / "p", name="flat")
    code = (tmp_path / "p" / "flat.c").read_text()
    assert "for (i0 = 0; i0 < 24; ++i0)" in code and "i1" not in code
    assert res.report["outputs"][0]["shape"] == [2, 3, 4]
