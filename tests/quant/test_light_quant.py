"""int8 builds of the `light_*` models in the onnx wheel (tests/models/test_light.py): which
quantize, and for those the generated C equals the integer numpy reference bit for bit. Their
weights are constant (ConstantOfShape), so the float outputs are uniform and SQNR says nothing:
these are exactness and coverage tests (Transpose, Concat, unfolded BatchNormalization, Sum,
activation tables at ImageNet scale). Calibration: onnx's ramp input and two noisy copies.
Refused: LRN (alexnet, zfnet512, inception_v1) has no int8 kernel."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from nncc.compiler import load
from nncc.errors import UnsupportedOp
from nncc.quant.quantize import QuantOptions, quantize
from tests.models.test_light import LIGHT, ramp_input
from tests.quant.qutil import build, check_exact


def calibration(path) -> list[dict]:
    x = ramp_input(onnx.load(str(path)))
    rng = np.random.default_rng(0)
    return [x] + [{k: (v + rng.normal(0, 0.05, v.shape)).astype(np.float32) for k, v in x.items()}
                  for _ in range(2)]


def test_lrn_refused():
    path = LIGHT / "light_inception_v1.onnx"
    with pytest.raises(UnsupportedOp, match="LRN"):
        quantize(load(path), QuantOptions(samples=calibration(path)[:1], observer="minmax"))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["shufflenet", "squeezenet", "densenet121", "inception_v2"])
def test_light_int8_c_equals_reference(tmp_path, name):
    path = LIGHT / f"light_{name}.onnx"
    calib = calibration(path)
    res = build(path, tmp_path / "q", calib, "fixed")
    check_exact(res, calib[:2])
