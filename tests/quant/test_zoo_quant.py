"""The zoo models (tests/fixtures/zoo: LeNet-5 with BatchNorm, MobileNetV2-0.35, the
ConvTranspose / Concat / residual net) quantized to int8 with both scalings: the generated C
equals the integer numpy reference bit for bit on every input, and the output SQNR against the
float model is printed (pytest -s; the table is in tests/fixtures/quant/RESULTS.md, "zoo int8")
and bounded. Calibration: 8 inputs drawn like tests/models/test_zoo.py's; the test inputs are 3
others (seed 1), one of each kind."""
from __future__ import annotations

import pytest

from tests.models.model_check import samples_for
from tests.quant.qutil import accuracy, build, check_exact
from tests.util import FIXTURES

ZOO = FIXTURES / "zoo"
KINDS = [(0.0, 1.0), None, (-3.0, 3.0)]  # images in [0, 1], normalised, wide (ReLU6 saturates)
# Measured on the test inputs (RESULTS.md "zoo int8"): 28.2 / 29.7 dB (LeNet, fixed / shift),
# 42.1 / 37.1 (MobileNetV2), 38.1 / 35.4 (tconv_concat_res); double-shift 30.3, 40.6, 37.5;
# bounds about 3 dB lower.
FLOOR = {("lenet5_bn", "fixed"): 25, ("lenet5_bn", "shift"): 26, ("lenet5_bn", "double-shift"): 27,
         ("mobilenetv2_035_96", "fixed"): 39, ("mobilenetv2_035_96", "shift"): 34,
         ("mobilenetv2_035_96", "double-shift"): 37,
         ("tconv_concat_res", "fixed"): 35, ("tconv_concat_res", "shift"): 32,
         ("tconv_concat_res", "double-shift"): 34}


@pytest.mark.parametrize("scaling", ["fixed", "shift", "double-shift"])
@pytest.mark.parametrize("name", ["lenet5_bn", "mobilenetv2_035_96", "tconv_concat_res"])
def test_zoo_int8(tmp_path, name, scaling):
    path = ZOO / f"{name}.onnx"
    calib = samples_for(path, KINDS * 3)[:8]
    test = samples_for(path, KINDS, seed=1)
    res = build(path, tmp_path / "q", calib, scaling)
    assert res.report["precision"] == "int8"
    outs = check_exact(res, test + calib[:2])
    acc = accuracy(path, res, test, outs[:len(test)])
    print(f"\n| {name} | {scaling} | {acc['sqnr_db']:.1f} | {acc['cosine']:.5f} | "
          f"{res.report['weights_bytes']:,} | {res.report['arena_bytes']:,} |")
    assert acc["sqnr_db"] > FLOOR[name, scaling], acc
    assert acc["cosine"] > 0.999, acc
