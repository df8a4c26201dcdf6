"""Activations: every op and attribute form on random data plus edge values (0, tiny, large +/-,
exp overflow range); Clip in its attribute (opset 6) and input (opset 11+) forms; PRelu with
broadcast slopes. C vs numpy reference vs onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from tests.util import check_model, make_model, save

EDGES = np.array([0.0, -0.0, 1e-7, -1e-7, 0.5, -0.5, 3.0, -3.0, 2.5, -2.5, 20.0, -20.0,
                  88.0, -88.0, 89.0, -89.0, 100.0, -100.0, 1e4, -1e4, 3e38, -3e38],
                 dtype=np.float32)
SHAPE = (2, 3, 4, 5)


def samples(shape=SHAPE) -> list[dict]:
    """One random sample, and one whose first values are the edge cases."""
    rng = np.random.default_rng(0)
    rand = (3 * rng.standard_normal(shape)).astype(np.float32)
    edge = rand.copy().ravel()
    edge[:EDGES.size] = EDGES
    return [{"x": rand}, {"x": edge.reshape(shape)}]


UNARY = [
    ("Relu", {}, 13),
    ("LeakyRelu", {}, 13),
    ("LeakyRelu", {"alpha": 0.3}, 6),
    ("Sigmoid", {}, 13),
    ("Sigmoid", {}, 6),
    ("Tanh", {}, 13),
    ("HardSigmoid", {}, 13),
    ("HardSigmoid", {"alpha": 0.4, "beta": 0.3}, 6),
    ("HardSwish", {}, 14),
    ("Elu", {}, 13),
    ("Elu", {"alpha": 2.5}, 6),
    ("Clip", {"min": -0.5, "max": 0.7}, 6),
    ("Clip", {"min": 0.0}, 6),
    ("Clip", {}, 6),
]


@pytest.mark.parametrize("op,attrs,opset", UNARY)
def test_unary(tmp_path, op, attrs, opset):
    node = helper.make_node(op, ["x"], ["y"], **attrs)
    m = make_model([node], [("x", SHAPE)], [("y", None)], opset=opset)
    check_model(save(m, tmp_path), tmp_path, samples())


@pytest.mark.parametrize("bounds,opset", [
    ((-1.0, 2.0), 13),
    ((None, 6.0), 13),   # ReLU6-style: min omitted
    ((0.0, None), 11),
    ((None, None), 12),
    ((1.0, -1.0), 13),   # min > max: everything becomes max
])
def test_clip_inputs(tmp_path, bounds, opset):
    inits, names = {}, ["x"]
    for key, v in zip(("min", "max"), bounds):
        if v is None:
            names.append("")
        else:
            inits[key] = np.array(v, dtype=np.float32)
            names.append(key)
    while names[-1] == "":
        names.pop()
    node = helper.make_node("Clip", names, ["y"])
    m = make_model([node], [("x", SHAPE)], [("y", None)], inits, opset=opset)
    check_model(save(m, tmp_path), tmp_path, samples())


def test_clip_runtime_bound_is_refused(tmp_path):
    node = helper.make_node("Clip", ["x", "lo"], ["y"])
    m = make_model([node], [("x", (2, 3)), ("lo", ())], [("y", (2, 3))])
    with pytest.raises(UnsupportedOp, match="must be a constant"):
        compile_model(save(m, tmp_path), tmp_path / "p")


@pytest.mark.parametrize("x_shape,slope_shape,const", [
    ((1, 3, 4, 5), (3, 1, 1), True),     # per channel, as exported by PyTorch
    ((1, 3, 4, 5), (1,), True),          # one shared slope
    ((3, 4, 5), (5,), False),            # trailing broadcast, slope at run time
    ((2, 3, 4), (2, 3, 4), False),       # full shape
])
def test_prelu(tmp_path, x_shape, slope_shape, const):
    rng = np.random.default_rng(2)
    slope = rng.uniform(-0.5, 0.5, slope_shape).astype(np.float32)
    node = helper.make_node("PRelu", ["x", "s"], ["y"])
    if const:
        m = make_model([node], [("x", x_shape)], [("y", None)], {"s": slope})
        feeds = [{"x": s["x"]} for s in samples(x_shape)]
    else:
        m = make_model([node], [("x", x_shape), ("s", slope_shape)], [("y", None)])
        feeds = [{**s, "s": slope} for s in samples(x_shape)]
    check_model(save(m, tmp_path), tmp_path, feeds)


def test_prelu_legacy_channel_slope(tmp_path):
    """Opset 6 (pytorch-converted): a (C,) slope applies along axis 1, not the last axis."""
    slope = np.array([0.1, -0.2, 0.3], dtype=np.float32)
    node = helper.make_node("PRelu", ["x", "s"], ["y"])
    m = make_model([node], [("x", (2, 3, 4))], [("y", (2, 3, 4))], {"s": slope}, opset=6)
    res = check_model(save(m, tmp_path), tmp_path, samples((2, 3, 4)), ort=False)
    x = samples((2, 3, 4))[0]["x"]
    from nncc.reference import run_reference
    want = np.where(x < 0, x * slope.reshape(1, 3, 1), x)
    np.testing.assert_allclose(run_reference(res.graph, {"x": x})["y"], want, rtol=1e-6)


def test_prelu_bad_slope_shape(tmp_path):
    node = helper.make_node("PRelu", ["x", "s"], ["y"])
    m = make_model([node], [("x", (2, 3))], [("y", (2, 3))],
                   {"s": np.ones((2, 3, 1), np.float32)})
    with pytest.raises(Exception, match="slope"):
        compile_model(save(m, tmp_path), tmp_path / "p")
