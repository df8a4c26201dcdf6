"""int8 builds of the MLPerf Tiny models: C == integer reference bit for bit, output SQNR /
cosine vs the float model, weight bytes vs the float build. Calibration and test inputs are
uniform draws over the documented input ranges (tests/fixtures/mlperf_tiny/LICENSE.md); the AD
autoencoder is also tested on its real log-mel frames. The table is printed (pytest -s)."""
from __future__ import annotations

import numpy as np
import pytest

from nncc.compiler import compile_model
from tests.quant.qutil import accuracy, build, check_exact
from tests.util import MLPERF, mlperf_inputs, model_input

MODELS = ("mlperf_kws_dscnn", "mlperf_ad_fcae")
# Measured with these seeds (int8 output SQNR in dB, fixed / shift / double-shift): KWS logits
# 29.6 / 28.7 / 30.3, AD 37.6 / 33.0 / 35.7 (packed QConv / QGemm, mse observer). Floors a few
# dB below.
MIN_SQNR = {("mlperf_kws_dscnn", "fixed"): 25, ("mlperf_kws_dscnn", "shift"): 22,
            ("mlperf_kws_dscnn", "double-shift"): 25,
            ("mlperf_ad_fcae", "fixed"): 33, ("mlperf_ad_fcae", "shift"): 27,
            ("mlperf_ad_fcae", "double-shift"): 32}


def inputs(name: str, n: int, seed: int) -> list[dict]:
    """mlperf_inputs; for AD also 5 of its real log-mel frames."""
    out = mlperf_inputs(name, n, seed)
    if name == "mlperf_ad_fcae":
        iname, shape = model_input(MLPERF / f"{name}.onnx")
        frames = np.load(MLPERF / "samples.npz")["ad"].reshape(40, 640)
        out += [{iname: frames[i].reshape(shape).astype(np.float32)} for i in range(0, 40, 8)]
    return out


@pytest.mark.parametrize("scaling", ["fixed", "shift", "double-shift"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_mlperf_int8(tmp_path, name, scaling):
    path = MLPERF / f"{name}.onnx"
    calib, test = inputs(name, 8, 0), inputs(name, 4, 1)
    strip = name == "mlperf_kws_dscnn"  # its final Softmax runs in float: compare the logits
    res = build(path, tmp_path / "q", calib, scaling, strip_softmax=strip)
    outs = check_exact(res, test)
    acc = accuracy(path, res, test, outs, strip_softmax=strip)
    if strip:  # and the full model, Softmax included, compiles and runs
        check_exact(build(path, tmp_path / "full", calib, scaling), test[:1])
    fl = compile_model(path, tmp_path / "float", force=True).report["weights_bytes"]
    ratio = res.report["weights_bytes"] / fl
    print(f"\n{name} {scaling}: SQNR {acc['sqnr_db']:.1f} dB, cosine {acc['cosine']:.5f}, "
          f"weights {res.report['weights_bytes']} B / float {fl} B = {ratio:.4f}")
    assert acc["sqnr_db"] > MIN_SQNR[name, scaling], acc
    # int8 weights are 1/4 of float, plus 2 bytes per output channel (packed bias + scale
    # exponent; tests/quant/test_weight_bytes.py).
    assert ratio <= 0.26
