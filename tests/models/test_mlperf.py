"""MLPerf Tiny reference models end to end (tests/fixtures/mlperf_tiny): compiled, built with
strict flags and run on the host; C vs numpy reference vs onnxruntime. Inputs are drawn from the
ranges the models were trained on (LICENSE.md beside the fixtures); the anomaly-detection
autoencoder also gets real log-mel frames from samples.npz."""
from __future__ import annotations

import numpy as np
import pytest

from tests.models.model_check import check_model_traced, samples_for
from tests.util import MLPERF

# Training ranges: KWS MFCC features about [-123, 26]; VWW [0, 1]; IC [0, 255]; AD [-85, 15].
RANGES = {
    "mlperf_kws_dscnn": [(-123.0, 26.0), (-60.0, 10.0)],
    "mlperf_vww_mbv1_025": [(0.0, 1.0), (0.25, 0.75)],
    "mlperf_ic_resnet8": [(0.0, 255.0), (64.0, 192.0)],
    "mlperf_ad_fcae": [(-85.0, 15.0)],
}


def ad_frames(name: str, rows=(0, 39)) -> list[dict]:
    """Real log-mel frames (40 x 640 values, stored flat) for the AD autoencoder."""
    frames = np.load(MLPERF / "samples.npz")["ad"].reshape(40, 640)
    return [{name: frames[r].reshape(1, 640).astype(np.float32)} for r in rows]


@pytest.mark.parametrize("name", sorted(RANGES))
def test_mlperf_model(tmp_path, name):
    path = MLPERF / f"{name}.onnx"
    samples = samples_for(path, RANGES[name])
    if name == "mlperf_ad_fcae":
        samples += ad_frames(next(iter(samples[0])))
    check_model_traced(path, tmp_path, samples)
