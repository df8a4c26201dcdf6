"""A channel whose weights are tiny next to its bias (dead filters with a BatchNorm shift folded
in: MLPerf VWW has them). In accumulator steps its bias is huge: the packed form (bias in
16 - pack_bits bits) must not round it by hundreds of output steps, and the unpacked form must
not clip it to int32. The C equals the reference; the output equals float within a few steps."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.quant.qutil import build, check_exact
from tests.util import make_model, save

RNG = np.random.default_rng(11)
SHAPE = (1, 8, 6, 6)


def model(tmp_path):
    w = RNG.standard_normal((6, 8, 1, 1)).astype(np.float32) * 0.3
    w[1] *= 1e-6   # a dead filter ...
    w[4] *= 3e-4   # ... and a nearly dead one
    b = np.array([0.1, 2.0, -0.3, 0.2, -1.5, 0.05], np.float32)  # ... with large biases
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"])]
    return save(make_model(nodes, [("x", SHAPE)], [("y", None)], {"w": w, "b": b}), tmp_path)


def reference(path, s):
    import onnxruntime as ort
    return ort.InferenceSession(str(path)).run(None, s)[0]


@pytest.mark.parametrize("scaling", ["fixed", "shift", "double-shift"])
@pytest.mark.parametrize("packed", [True, False])
def test_large_bias_small_weights(tmp_path, scaling, packed):
    path = model(tmp_path)
    calib = [{"x": RNG.uniform(-1, 1, SHAPE).astype(np.float32)} for _ in range(6)]
    res = build(path, tmp_path / "q", calib, scaling, packed=packed)
    outs = check_exact(res, calib[:3])
    step = res.report["outputs"][0]["scale"]
    for s, o in zip(calib[:3], outs):
        err = np.abs(o["y"] - reference(path, s)) / step  # in output steps, per element
        # rounding (0.5) + weight rounding; the packed form's bias error <= MAX_BIAS_ERROR
        assert err.max() < 2.0, (scaling, packed, err.max(axis=(0, 2, 3)))
