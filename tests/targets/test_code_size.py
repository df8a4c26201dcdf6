"""Issue 5, acceptance 3: the code of every MLPerf Tiny firmware for cortex-m4 (flash minus weights
minus the embedded test vectors: kernels, startup, harness, libc pieces) stays within 8 KB, float
and int8 -- the int8 convolutions share one kernel per kind (nncc/ops/qconv_shared.py)."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

from nncc import firmware
from nncc.quant.quantize import QuantOptions
from tests.targets.test_firmware import need
from tests.util import MLPERF

pytestmark = pytest.mark.cross

CODE_BUDGET = 8192
# model file: documented input range (tests/fixtures/mlperf_tiny/LICENSE.md), for calibration
MODELS = {"mlperf_kws_dscnn": (-123.0, 26.0), "mlperf_vww_mbv1_025": (0.0, 1.0),
          "mlperf_ic_resnet8": (0.0, 255.0), "mlperf_ad_fcae": (-85.0, 15.0)}


def calib(name: str) -> QuantOptions:
    inp = onnx.load(str(MLPERF / f"{name}.onnx")).graph.input[0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    lo, hi = MODELS[name]
    rng = np.random.default_rng(0)
    return QuantOptions(samples=[{inp.name: rng.uniform(lo, hi, shape).astype(np.float32)}
                                 for _ in range(2)])


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_mlperf_code_within_8k(tmp_path, name, precision):
    need("cortex-m4")
    kw = {"quant": calib(name)} if precision == "int8" else {}
    r = firmware.compile_firmware(MLPERF / f"{name}.onnx", tmp_path / "fw", "cortex-m4", **kw).report
    assert r["precision"] == precision
    assert 0 < r["code_bytes"] <= CODE_BUDGET, r["code_bytes"]
