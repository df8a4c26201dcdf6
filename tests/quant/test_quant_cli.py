"""`nncc compile --quantize int8 --calib` and `nncc run` on an int8 project (float in, float out),
and the one-line errors for bad calibration data."""
from __future__ import annotations

import json

import numpy as np
import pytest

from nncc.cli import main
from tests.quant.test_quant_ops import model


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    p = model(tmp_path, "conv_relu_maxpool")
    np.savez(tmp_path / "calib.npz", x=rng.standard_normal((6, 3, 8, 8)).astype(np.float32))
    np.savez(tmp_path / "in.npz", x=rng.standard_normal((2, 3, 8, 8)).astype(np.float32))
    return tmp_path, p


@pytest.mark.parametrize("scaling,observer", [("fixed", "mse"), ("shift", "mse"), ("double-shift", "mse"),
                                             ("fixed", "kl"), ("double-shift", "ksigma")])
def test_compile_and_run(files, capsys, scaling, observer):
    tmp, p = files
    assert main(["compile", str(p), "-o", str(tmp / "q"), "--quantize", "int8", "--calib",
                 str(tmp / "calib.npz"), "--scaling", scaling, "--observer", observer]) == 0
    assert "calibrating" in capsys.readouterr().err
    rep = json.loads((tmp / "q" / "report.json").read_text())
    assert rep["precision"] == "int8" and rep["inputs"][0]["dtype"] == "int8"
    assert rep["inputs"][0]["scale"] > 0 and "zero_point" in rep["outputs"][0]
    header = (tmp / "q" / "model.h").read_text()
    for s in ("MODEL_INPUT_SCALE", "MODEL_OUTPUT_ZERO_POINT", "model_quantize_input",
              "model_dequantize_output", "int model_run(const int8_t *input, int8_t *output)"):
        assert s in header
    assert main(["run", str(tmp / "q"), "--inputs", str(tmp / "in.npz"), "--out", str(tmp / "out.npz")]) == 0
    out = np.load(tmp / "out.npz")["y"]
    assert out.dtype == np.float32 and out.shape == (2, 8, 4, 4)
    assert main(["compile", str(p), "-o", str(tmp / "f")]) == 0
    assert main(["run", str(tmp / "f"), "--inputs", str(tmp / "in.npz"), "--out", str(tmp / "fo.npz")]) == 0
    ref = np.load(tmp / "fo.npz")["y"]
    assert np.max(np.abs(out - ref)) < 0.1 * np.max(np.abs(ref))


@pytest.mark.parametrize("arrays,args,msg", [
    ({"x": np.zeros((4, 3, 8, 5), np.float32)}, [], "calibration data: input 'x': array shape"),
    ({"x": np.zeros((0, 3, 8, 8), np.float32)}, [], "zero samples"),
    ({"x": np.full((2, 3, 8, 8), np.nan, np.float32)}, [], "NaN"),
    ({"x": np.array([["a"]])}, [], "not numeric"),
    ({}, [], "missing"),
])
def test_bad_calibration(files, capsys, arrays, args, msg):
    tmp, p = files
    np.savez(tmp / "bad.npz", **arrays)
    assert main(["compile", str(p), "-o", str(tmp / "q"), "--quantize", "int8", "--calib",
                 str(tmp / "bad.npz"), *args]) == 1
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("nncc: error:") and msg in err


def test_calib_needed(files, capsys):
    tmp, p = files
    assert main(["compile", str(p), "-o", str(tmp / "q"), "--quantize", "int8"]) == 1
    assert main(["compile", str(p), "-o", str(tmp / "q"), "--calib", str(tmp / "calib.npz")]) == 1
    assert "--calib" in capsys.readouterr().err
