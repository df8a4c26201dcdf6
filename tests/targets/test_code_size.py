"""Issue 5, acceptance 3: the code of every MLPerf Tiny firmware for cortex-m4 (flash minus weights
minus the embedded test vectors: kernels, startup, harness, libc pieces) stays within 8 KB, float
and int8 -- the int8 convolutions share one kernel per kind (nncc/ops/qconv_shared.py)."""
from __future__ import annotations

import pytest

from nncc import firmware
from nncc.quant.quantize import QuantOptions
from tests.targets.test_firmware import need
from tests.util import MLPERF, MLPERF_RANGES, mlperf_inputs

pytestmark = pytest.mark.cross

CODE_BUDGET = 8192
MODELS = sorted(MLPERF_RANGES)


def calib(name: str) -> QuantOptions:
    """Two draws over the documented input range."""
    return QuantOptions(samples=mlperf_inputs(name, 2, 0))


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_mlperf_code_within_8k(tmp_path, name, precision):
    need("cortex-m4")
    kw = {"quant": calib(name)} if precision == "int8" else {}
    r = firmware.compile_firmware(MLPERF / f"{name}.onnx", tmp_path / "fw", "cortex-m4", **kw).report
    assert r["precision"] == precision
    assert 0 < r["code_bytes"] <= CODE_BUDGET, r["code_bytes"]
