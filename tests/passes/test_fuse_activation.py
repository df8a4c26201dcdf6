"""fuse_activation: Conv -> activation becomes one Conv with attrs["nncc_activation"]; the
reference is unchanged, the activation node is gone, and the fused C kernel matches onnxruntime."""
import numpy as np
import pytest
from onnx import helper

from nncc.ops import FUSED_ACTIVATION
from nncc.passes.fuse_activation import fuse_activation
from tests.passes._graphs import apply, build, op_counts
from tests.util import check_model, make_model, save

# (op, attrs, extra constant inputs, opset, expected params)
ACTS = [
    ("Relu", {}, {}, 13, {}),
    ("Clip", {}, {"lo": 0.0, "hi": 6.0}, 13, {"lo": 0.0, "hi": 6.0}),     # Relu6
    ("Clip", {}, {"lo": None, "hi": 0.5}, 13, {"lo": None, "hi": 0.5}),   # max only
    ("Clip", {"min": -1.0, "max": 1.0}, {}, 6, {"lo": -1.0, "hi": 1.0}),    # attribute form
    ("LeakyRelu", {"alpha": 0.2}, {}, 13, {"alpha": 0.2}),
    ("HardSigmoid", {"alpha": 0.3, "beta": 0.4}, {}, 13, None),
    ("HardSwish", {}, {}, 14, None),
    ("Sigmoid", {}, {}, 13, {}),
    ("Tanh", {}, {}, 13, {}),
]
IDS = [f"{a[0]}-{i}" for i, a in enumerate(ACTS)]


def conv_act_model(op, attrs, bounds, opset):
    rng = np.random.default_rng(5)
    inits = {"W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "B": rng.standard_normal(4).astype(np.float32)}
    names = ["t"]
    for key in ("lo", "hi"):
        if key in bounds:
            if bounds[key] is None:
                names.append("")
            else:
                inits[key] = np.float32(bounds[key])
                names.append(key)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["t"], pads=[1, 1, 1, 1]),
             helper.make_node(op, names, ["y"], **attrs)]
    return nodes, [("x", (1, 3, 6, 6))], inits


@pytest.mark.parametrize("op,attrs,bounds,opset,params", ACTS, ids=IDS)
def test_fuse(tmp_path, op, attrs, bounds, opset, params):
    nodes, ins, inits = conv_act_model(op, attrs, bounds, opset)
    g = build(tmp_path, nodes, ins, ["y"], inits, opset=opset)
    changed, after = apply(g, fuse_activation)
    assert changed
    assert op_counts(after) == {"Conv": 1}
    (conv,) = after.nodes()
    fused = conv.attrs[FUSED_ACTIVATION]
    assert fused["op"] == op and conv.outputs == ["y"]
    if params is not None:
        assert fused["params"] == pytest.approx(params)
    assert not {"lo", "hi"} & set(after.tensors)


@pytest.mark.parametrize("op,attrs,bounds,opset,params", ACTS, ids=IDS)
def test_fused_c(tmp_path, op, attrs, bounds, opset, params):
    nodes, ins, inits = conv_act_model(op, attrs, bounds, opset)
    m = make_model(nodes, ins, [("y", None)], inits, opset=opset)
    res = check_model(save(m, tmp_path), tmp_path, opt_level=2)
    assert [(r["op"], r["fused"]) for r in res.report["layers"]] == [("Conv", [op])]


def test_conv_bn_relu_at_o2(tmp_path):
    # fold_batchnorm runs first, so BN no longer separates the Relu from the Conv.
    rng = np.random.default_rng(2)
    inits = {"W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "s": rng.standard_normal(4).astype(np.float32), "b": np.zeros(4, np.float32),
             "m": rng.standard_normal(4).astype(np.float32), "v": np.ones(4, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "W"], ["t"]),
             helper.make_node("BatchNormalization", ["t", "s", "b", "m", "v"], ["u"]),
             helper.make_node("Relu", ["u"], ["y"])]
    m = make_model(nodes, [("x", (1, 3, 5, 5))], [("y", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path, opt_level=2)
    assert [(r["op"], r["fused"]) for r in res.report["layers"]] == [("Conv", ["Relu"])]


def test_not_fused(tmp_path):
    # Conv output also a graph output; conv output read by two activations; Relu after Relu.
    w = np.ones((2, 3, 1, 1), np.float32)
    nodes = [helper.make_node("Conv", ["x", "W"], ["a"]), helper.make_node("Relu", ["a"], ["y1"]),
             helper.make_node("Conv", ["x", "W"], ["b"]), helper.make_node("Relu", ["b"], ["y2"]),
             helper.make_node("Sigmoid", ["b"], ["y3"]), helper.make_node("Relu", ["y3"], ["y4"])]
    g = build(tmp_path, nodes, [("x", (1, 3, 4, 4))], ["a", "y1", "y2", "y4"], {"W": w})
    changed, after = apply(g, fuse_activation)
    assert not changed
    assert op_counts(after) == op_counts(g)


# -- producers besides Conv: Gemm, MatMul (2-D and batched), the broadcasting elementwise ops ----
def producer_model(kind):
    rng = np.random.default_rng(7)
    if kind == "Gemm":
        inits = {"W": rng.standard_normal((5, 6)).astype(np.float32),
                 "C": rng.standard_normal(5).astype(np.float32)}
        return [helper.make_node("Gemm", ["x", "W", "C"], ["t"], transB=1, alpha=0.5)], \
            [("x", (3, 6))], inits
    if kind == "MatMul":
        inits = {"W": rng.standard_normal((6, 4)).astype(np.float32)}
        return [helper.make_node("MatMul", ["x", "W"], ["t"])], [("x", (2, 3, 6))], inits
    if kind == "MatMul2":  # both runtime
        return [helper.make_node("MatMul", ["x", "x2"], ["t"])], [("x", (3, 6)), ("x2", (6, 4))], {}
    # Add / Sub / Mul with broadcasting between two runtime inputs
    return [helper.make_node(kind, ["x", "x2"], ["t"])], [("x", (1, 4, 3, 3)), ("x2", (4, 1, 1))], {}


PRODUCERS = ["Gemm", "MatMul", "MatMul2", "Add", "Sub", "Mul"]
PROD_ACTS = [ACTS[0], ACTS[1], ACTS[4], ACTS[6], ACTS[7]]  # Relu, Relu6, LeakyRelu, HardSwish, Sigmoid


def with_activation(kind, act):
    op, attrs, bounds, opset, _ = act
    nodes, ins, inits = producer_model(kind)
    names = ["t"]
    for key in ("lo", "hi"):
        if key in bounds:
            inits[key] = np.float32(bounds[key])
            names.append(key)
    return nodes + [helper.make_node(op, names, ["y"], **attrs)], ins, inits, opset


@pytest.mark.parametrize("kind", PRODUCERS)
@pytest.mark.parametrize("act", PROD_ACTS, ids=[a[0] for a in PROD_ACTS])
def test_fuse_into_producer(tmp_path, kind, act):
    nodes, ins, inits, opset = with_activation(kind, act)
    g = build(tmp_path, nodes, ins, ["y"], inits, opset=opset)
    changed, after = apply(g, fuse_activation)
    assert changed
    (node,) = after.nodes()
    assert node.op == kind.rstrip("2") and node.attrs[FUSED_ACTIVATION]["op"] == act[0]
    assert node.outputs == ["y"]


@pytest.mark.parametrize("kind", PRODUCERS)
def test_fused_producer_c(tmp_path, kind):
    for i, act in enumerate(PROD_ACTS):
        nodes, ins, inits, opset = with_activation(kind, act)
        m = make_model(nodes, ins, [("y", None)], inits, opset=opset)
        (tmp_path / str(i)).mkdir()
        res = check_model(save(m, tmp_path / str(i)), tmp_path / str(i), opt_level=2)
        assert [(r["op"], r["fused"]) for r in res.report["layers"]] == [(kind.rstrip("2"), [act[0]])]
