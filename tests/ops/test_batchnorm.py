"""BatchNormalization (inference): one-node models over ranks, epsilon, constant or runtime
parameters and opsets 6-15; C vs numpy reference vs onnxruntime. Training forms are refused."""
import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from tests.util import check_model, make_model, save

PARAMS = ["scale", "B", "mean", "var"]


def params(c, seed=0):
    rng = np.random.default_rng(seed)
    return {"scale": rng.standard_normal(c).astype(np.float32),
            "B": rng.standard_normal(c).astype(np.float32),
            "mean": (3 * rng.standard_normal(c)).astype(np.float32),
            "var": rng.uniform(0.2, 4.0, c).astype(np.float32)}


def bn_model(shape, attrs=None, opset=13, const=True, outputs=("y",)):
    node = helper.make_node("BatchNormalization", ["x", *PARAMS], list(outputs), **(attrs or {}))
    p = params(shape[1])
    inputs = [("x", shape)] + ([] if const else [(k, (shape[1],)) for k in PARAMS])
    m = make_model([node], inputs, [("y", shape)], p if const else {}, opset=opset)
    sample = {"x": (2 + 3 * np.random.default_rng(1).standard_normal(shape)).astype(np.float32)}
    if not const:
        sample.update(p)
    return m, sample


CASES = [
    # (shape, attrs, opset, constant parameters)
    ((1, 3, 5, 5), {}, 13, True),
    ((2, 4, 3, 6), {"epsilon": 1e-2}, 13, True),
    ((3, 5), {}, 13, True),                         # BatchNorm1d on (N, C)
    ((2, 3, 7), {}, 13, True),                      # BatchNorm1d on (N, C, L)
    ((1, 2, 3, 4, 5), {}, 13, True),                # BatchNorm3d
    ((2, 3, 4, 4), {"epsilon": 1e-3}, 13, False),   # parameters are runtime inputs
    ((1, 3, 4, 4), {"momentum": 0.8}, 9, True),
    ((1, 3, 4, 4), {"spatial": 1}, 7, True),
    ((1, 3, 4, 4), {"training_mode": 0}, 14, True),
    ((2, 3, 4), {"epsilon": 1e-4}, 15, False),
]


@pytest.mark.parametrize("shape,attrs,opset,const", CASES)
def test_batchnorm(tmp_path, shape, attrs, opset, const):
    m, sample = bn_model(shape, attrs, opset, const)
    check_model(save(m, tmp_path), tmp_path, [sample])


@pytest.mark.parametrize("attrs", [{"is_test": 1}, {"is_test": 1, "spatial": 1, "momentum": 0.9},
                                   {"is_test": 1, "spatial": 0}])
def test_batchnorm_opset6(tmp_path, attrs):
    """onnxruntime has no opset-6 kernel: C vs our reference only (spatial=0 on rank 2 is
    per channel anyway)."""
    shape = (2, 3) if attrs.get("spatial") == 0 else (1, 3, 4, 4)
    m, sample = bn_model(shape, attrs, opset=6)
    check_model(save(m, tmp_path), tmp_path, [sample], ort=False)


def test_batchnorm_reference_matches_onnx():
    """Our reference against onnx's own evaluator. Opsets 7-13 are left out: there onnx's
    evaluator mixes batch statistics in whenever `momentum` has a value (its schema default)."""
    from onnx.reference import ReferenceEvaluator

    from nncc.ir import Node
    from nncc.ops import make_op
    for opset, attrs in [(6, {"is_test": 1, "epsilon": 1e-3}), (15, {"epsilon": 1e-3})]:
        m, sample = bn_model((2, 3, 4, 5), attrs, opset, const=False)
        want = ReferenceEvaluator(m).run(None, sample)[0]
        op = make_op(Node("bn", "BatchNormalization", ["x", *PARAMS], ["y"], attrs, opset))
        got = op.reference(*(sample[k] for k in ["x", *PARAMS]))[0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("attrs,opset,outputs", [
    ({"training_mode": 1}, 14, ("y",)),
    ({}, 14, ("y", "running_mean", "running_var")),
    ({}, 9, ("y", "mean_out", "var_out", "saved_mean", "saved_var")),
    ({}, 6, ("y",)),                                 # is_test defaults to 0: training mode
    ({"is_test": 1, "spatial": 0}, 6, ("y",)),       # per-activation parameters
])
def test_batchnorm_refused(tmp_path, attrs, opset, outputs):
    # Training statistics matter only when the model reads them: make them graph outputs.
    node = helper.make_node("BatchNormalization", ["x", *PARAMS], list(outputs), **attrs)
    outs = [("y", (1, 3, 4, 4))] + [(o, (3,)) for o in outputs[1:]]
    m = make_model([node], [("x", (1, 3, 4, 4))], outs, params(3), opset=opset)
    with pytest.raises(UnsupportedOp):
        compile_model(save(m, tmp_path), tmp_path / "out")
