"""`nncc validate --quantize int8`: the int8-vs-float report (nncc/quant/fidelity.py). Per-layer
SQNR equals an independent computation over the two numpy reference executors; a layer forced
to a tiny range shows up at that layer and fails validate; top-1 on the MNIST held-out digits
equals what test_accuracy.py measures on the C builds; bad labels are one-line errors; and
report.json carries precision and per-layer bits."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import nncc.quant.calibrate as calibrate_mod
from nncc.cli import main
from nncc.compiler import compile_model, load
from nncc.npzio import load_npz, split_samples
from nncc.quant.fidelity import measure
from nncc.quant.quantize import QuantOptions, float_source
from nncc.reference import run_reference
from nncc.table import ellipsize
from nncc.validate import validate
from tests.quant.qutil import samples
from tests.quant.test_accuracy import QDIR, c_logits
from tests.quant.test_quant_ops import MODELS, model


def int8_run(tmp_path, name, scaling="fixed"):
    path = model(tmp_path, name)
    shape = MODELS[name][1]
    calib, test = samples(shape, 32), samples(shape, 3, seed=2)
    v = validate(path, test, quant=QuantOptions(samples=calib, scaling=scaling))
    assert v.ok  # C == integer reference, bit for bit
    return path, test, v


def independent_sqnr(f_vals: list, q_vals: list, scale: float, zp: int) -> float:
    f = np.concatenate([np.asarray(a, np.float64).ravel() for a in f_vals])
    q = np.concatenate([(np.asarray(a, np.float64).ravel() - zp) * scale for a in q_vals])
    return 10 * np.log10(np.sum(f * f) / np.sum((f - q) ** 2))


# name -> (tensors of the int8 graph without a float namesake, {tensor: op} expected)
LAYOUT = {
    "residual_add_relu": (set(), {"x": "Quantize", "a": "QConv", "y": "QConv+QAdd"}),
    "reshape_softmax": ({"r_float"}, {"x": "Quantize", "c": "QConv", "r": "QView", "r_float": "Dequantize",
                                      "y": "Softmax"}),
    "gemm_transb_relu": (set(), {"x": "Quantize", "f": "QView", "y": "QGemm"}),
}


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
@pytest.mark.parametrize("name", sorted(LAYOUT))
def test_layer_sqnr_equals_independent(tmp_path, name, scaling):
    path, test, v = int8_run(tmp_path, name, scaling)
    fid = measure(v, float_source(load(path)), test)
    missing, ops = LAYOUT[name]
    assert {ly.tensor: ly.op for ly in fid.layers} == ops
    assert {ly.tensor for ly in fid.layers if ly.sqnr_db is None} == missing
    # The oracle: the float model with no passes at all (ONNX tensor names), and the integer
    # graph's own activations, dequantized here.
    f0 = load(path, opt_level=0)
    q = v.compiled.graph
    f_env = [run_reference(f0, s, keep_all=True) for s in test]
    q_env = [run_reference(q, c, keep_all=True) for c in v.samples]
    for ly in fid.layers:
        if ly.sqnr_db is None:
            continue
        qp = q.tensors[ly.tensor].quant
        scale, zp = (qp.scale[0], qp.zero_point[0]) if qp is not None else (1.0, 0)
        want = independent_sqnr([e[ly.tensor] for e in f_env], [e[ly.tensor] for e in q_env], scale, zp)
        assert ly.sqnr_db == pytest.approx(want, rel=1e-9, abs=1e-9), ly
        assert 15 < ly.sqnr_db < 80, ly  # a real quantization error, not an identity
    # Output errors: the C outputs (dequantized) against the pass-free float model.
    (out,) = fid.outputs
    t = q.tensors[out.name]
    qp = t.quant
    got = np.concatenate([(np.asarray(o[out.name], np.float64).ravel() - (qp.zero_point[0] if qp else 0))
                          * (qp.scale[0] if qp else 1.0) for o in v.outputs])
    want = np.concatenate([np.asarray(e[out.name], np.float64).ravel() for e in f_env])
    assert out.max_abs == pytest.approx(np.max(np.abs(got - want)), rel=1e-9)
    assert out.mean_abs == pytest.approx(np.mean(np.abs(got - want)), rel=1e-9)
    assert out.cosine == pytest.approx(got @ want / np.linalg.norm(got) / np.linalg.norm(want), rel=1e-9)
    assert out.sqnr_db == pytest.approx(10 * np.log10(want @ want / np.sum((got - want) ** 2)), rel=1e-9)
    assert fid.ok and fid.top1 is None


def table_sqnr(stdout: str) -> dict[str, str]:
    """{tensor: SQNR cell} from the per-layer table `nncc validate --quantize` prints."""
    body = stdout.split("int8 vs float on", 1)[1].split("\n\n", 1)[0].splitlines()[4:]
    return {cells[2]: cells[4] for cells in (ln.split() for ln in body)}


def stacked(ss: list[dict]) -> np.ndarray:
    """Samples of a batch-1 input as one (N, ...) npz array."""
    return np.concatenate([s["x"] for s in ss])


@pytest.fixture
def residual(tmp_path):
    """residual_add_relu with calibration and test npz files (with labels)."""
    path = model(tmp_path, "residual_add_relu")
    shape = MODELS["residual_add_relu"][1]
    np.savez(tmp_path / "calib.npz", x=stacked(samples(shape, 32)))
    np.savez(tmp_path / "in.npz", x=stacked(samples(shape, 3, seed=2)), y=np.array([3, 0, 99]))
    return tmp_path, path


def cli(tmp, path, *args):
    return main(["validate", str(path), "--quantize", "int8", "--calib", str(tmp / "calib.npz"), *args])


def test_tiny_range_layer_fails(residual, capsys, monkeypatch):
    tmp, path = residual
    assert cli(tmp, path, "--inputs", str(tmp / "in.npz")) == 0
    good = capsys.readouterr().out
    assert "int8 vs float: PASS (output SQNR >= 20 dB, top-1 drop <= 1 points)" in good
    calibrate_both = calibrate_mod.calibrate_both  # what the quantize stage calls

    def squeezed(g, samples, *args, **kw):  # conv "a" calibrated to 1/100 of its range
        ranges, minmax = calibrate_both(g, samples, *args, **kw)
        ranges["a"] = tuple(v / 100 for v in ranges["a"])
        return ranges, minmax
    monkeypatch.setattr(calibrate_mod, "calibrate_both", squeezed)
    assert cli(tmp, path, "--inputs", str(tmp / "in.npz")) == 1
    bad = capsys.readouterr().out
    before, after = table_sqnr(good), table_sqnr(bad)
    assert before["x"] == after["x"]  # untouched upstream
    assert float(before["a"]) > 30 and float(after["a"]) < 5, (before, after)
    assert float(after["y"]) < 20
    assert "reference (integer)" in bad and "\nPASS (rtol" in bad  # the C still equals the reference
    assert re.search(r"int8 vs float: FAIL .*: output 'y' SQNR -?[0-9.]+ dB < 20 dB", bad), bad


def test_thresholds_decide_exit(residual, capsys):
    tmp, path = residual
    assert cli(tmp, path, "--min-sqnr", "200") == 1  # default inputs: the calibration data
    out = capsys.readouterr().out
    assert "on 32 sample(s) from" in out and "< 200 dB" in out
    # Labelled with the float model's own classes: float top-1 is 100 %, so the drop is >= 0
    # and a threshold below zero must fail.
    x = load_npz(tmp / "in.npz")["x"]
    g = load(path)
    y = [run_reference(g, {"x": s[None]})[g.outputs[0]].argmax() for s in x]
    labelled = tmp / "lab.npz"
    np.savez(labelled, x=x, y=np.array(y))
    assert cli(tmp, path, "--inputs", str(labelled), "--max-top1-drop", "-1") == 1
    assert re.search(r"FAIL .*top-1 drop [-+0-9.]+ points > -1", capsys.readouterr().out)


@pytest.mark.parametrize("y,msg", [
    (np.array([1, 2]), "labels 'y': shape (2,) for 3 sample(s)"),
    (np.array([1, 2, 3, 4]), "labels 'y': shape (4,) for 3 sample(s)"),
    (np.zeros((3, 10), np.int64), "labels 'y': shape (3, 10) for 3 sample(s)"),
    (np.array([0.0, 1.0, 2.0]), "want one integer class per sample"),
    (np.array([0, 1, 100]), "classes 0..100 outside [0, 100)"),
])
def test_bad_labels(residual, capsys, y, msg):
    tmp, path = residual
    np.savez(tmp / "bad.npz", x=load_npz(tmp / "in.npz")["x"], y=y)
    assert cli(tmp, path, "--inputs", str(tmp / "bad.npz")) == 1
    captured = capsys.readouterr()
    err = captured.err.strip().splitlines()
    assert err[-1].startswith("nncc: error:") and msg in err[-1], err
    assert "Traceback" not in captured.err and "int8 vs float" not in captured.out


N_TOP1 = 200  # the first held-out digits


@pytest.mark.parametrize("name,scaling", [("mnist_dsnet", "fixed"), ("mnist_cnn_bn", "shift")])
def test_top1_equals_test_accuracy(tmp_path, capsys, name, scaling):
    """The top-1 `nncc validate` reports on the held-out digits is what test_accuracy.py
    measures (float C build, int8 C build with the same calibration digits and options)."""
    path = QDIR / f"{name}.onnx"
    held = load_npz(QDIR / "mnist_heldout.npz")
    x, y = held["x"][:N_TOP1], held["y"][:N_TOP1]
    np.savez(tmp_path / "in.npz", x=x, y=y)
    assert main(["validate", str(path), "--quantize", "int8", "--calib", str(QDIR / "mnist_calib.npz"),
                 "--scaling", scaling, "--inputs", str(tmp_path / "in.npz")]) == 0
    out = capsys.readouterr().out
    m = re.search(rf"top-1 on {N_TOP1} labelled sample\(s\): float ([0-9.]+) %, int8 ([0-9.]+) %", out)
    assert m, out
    # test_accuracy.measure's way
    fl = compile_model(path, tmp_path / "float", force=True)
    calib, _ = split_samples({"x": load_npz(QDIR / "mnist_calib.npz")["x"]}, fl.report["inputs"])
    q = compile_model(path, tmp_path / scaling, force=True, quant=QuantOptions(samples=calib, scaling=scaling))
    want_float = np.sum(c_logits(fl.out_dir, fl.report, x).argmax(1) == y)
    want_int8 = np.sum(c_logits(q.out_dir, q.report, x).argmax(1) == y)
    assert float(m.group(1)) == pytest.approx(100.0 * want_float / N_TOP1, abs=1e-9)
    assert float(m.group(2)) == pytest.approx(100.0 * want_int8 / N_TOP1, abs=1e-9)
    assert want_float > 0.9 * N_TOP1  # a trained model on real digits


def test_report_precision_and_bits(tmp_path):
    path = model(tmp_path, "reshape_softmax")
    shape = MODELS["reshape_softmax"][1]
    assert main(["compile", str(path), "-o", str(tmp_path / "f")]) == 0
    np.savez(tmp_path / "calib.npz", x=stacked(samples(shape, 4)))
    assert main(["compile", str(path), "-o", str(tmp_path / "q"), "--quantize", "int8", "--calib",
                 str(tmp_path / "calib.npz")]) == 0
    fl = json.loads((tmp_path / "f" / "report.json").read_text())
    q = json.loads((tmp_path / "q" / "report.json").read_text())
    assert fl["precision"] == "float32" and {ly["bits"] for ly in fl["layers"]} == {32}
    assert q["precision"] == "int8"
    assert {ly["op"]: ly["bits"] for ly in q["layers"]} == {"QConv": 8, "QView": 8, "Dequantize": 32,
                                                           "Softmax": 32}


def test_long_names_are_ellipsized():
    name = "model/activation_1/Relu;" + "x" * 200 + ";model/conv2d_1/Conv2D1"
    short = ellipsize(name)
    assert len(short) == 44 and short.startswith("model/activation_1/R") and short.endswith("conv2d_1/Conv2D1")
    assert "..." in short and ellipsize("conv1") == "conv1"
