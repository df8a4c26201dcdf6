"""Model zoo end to end: the three PyTorch-built fixtures of tests/fixtures/zoo (LeNet-5 with
BatchNorm, MobileNetV2-0.35, ConvTranspose/Concat/residual net) compiled, built with strict
flags and run on the host; C vs numpy reference vs onnxruntime on three inputs each."""
from __future__ import annotations

import pytest

from tests.models.model_check import check_model_traced, samples_for
from tests.util import FIXTURES

ZOO = FIXTURES / "zoo"


# Images in [0, 1] as the models would see them after the usual scaling, plus a normalised
# (zero mean, unit variance) input and a wider one that drives the ReLU6 clips into saturation.
CASES = {
    "lenet5_bn": [(0.0, 1.0), None, (-3.0, 3.0)],
    "mobilenetv2_035_96": [(0.0, 1.0), None, (-3.0, 3.0)],
    "tconv_concat_res": [(0.0, 1.0), None, (-3.0, 3.0)],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_zoo_model(tmp_path, name):
    path = ZOO / f"{name}.onnx"
    check_model_traced(path, tmp_path, samples_for(path, CASES[name]))
