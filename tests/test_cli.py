"""The command line end to end, in subprocesses: `compile`, `run` with the npz conventions of
DESIGN.md, `validate` and `analyze` (table and --json). Models use only Conv and Relu."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from nncc.validate import onnxruntime_outputs
from tests.test_errors import assert_user_error, conv_relu, nncc
from tests.util import make_model, save


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """conv.onnx compiled once into DIR with --name kws."""
    tmp = tmp_path_factory.mktemp("cli")
    model = save(conv_relu(), tmp, "conv.onnx")
    r = nncc("compile", model, "-o", tmp / "proj", "--name", "kws")
    assert r.returncode == 0, r.stderr
    return model, tmp / "proj"


def two_branch(tmp_path):
    """Two inputs, two outputs: a -> Relu -> ra; b -> Conv -> cb."""
    w = np.random.default_rng(3).standard_normal((2, 3, 1, 1)).astype(np.float32)
    nodes = [helper.make_node("Relu", ["a"], ["ra"]), helper.make_node("Conv", ["b", "w"], ["cb"])]
    m = make_model(nodes, [("a", (1, 5)), ("b", (1, 3, 4, 4))], [("ra", None), ("cb", None)], {"w": w})
    return save(m, tmp_path, "two.onnx")


def test_compile_api_names(project):
    _, proj = project
    files = {p.name for p in proj.iterdir()}
    assert {"kws.h", "kws.c", "kws_weights.h", "report.json", "Makefile", "nncc_runtime.h"} <= files
    h = (proj / "kws.h").read_text()
    assert "int kws_run(const float *" in h
    for macro in ("KWS_ARENA_BYTES", "KWS_INPUT_SIZE 192", "KWS_OUTPUT_SIZE 256"):
        assert f"#define {macro}" in h
    assert json.loads((proj / "report.json").read_text())["model"] == "kws"


def run(proj, tmp_path, **arrays):
    np.savez(tmp_path / "in.npz", **arrays)
    r = nncc("run", proj, "--inputs", tmp_path / "in.npz", "--out", tmp_path / "out.npz")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "out.npz") as f:
        return {k: f[k] for k in f.files}


def test_run_one_sample(project, tmp_path):
    model, proj = project
    x = np.random.default_rng(0).standard_normal((1, 3, 8, 8)).astype(np.float32)
    out = run(proj, tmp_path, x=x)
    assert list(out) == ["y"] and out["y"].shape == (1, 4, 8, 8)
    np.testing.assert_allclose(out["y"], onnxruntime_outputs(model, {"x": x})["y"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("layout", ["concat", "stack"])
def test_run_n_samples(project, tmp_path, layout):
    model, proj = project
    xs = np.random.default_rng(1).standard_normal((3, 3, 8, 8)).astype(np.float32)
    out = run(proj, tmp_path, x=xs if layout == "concat" else xs[:, None])
    want = np.concatenate([onnxruntime_outputs(model, {"x": x[None]})["y"] for x in xs])
    # (N, *shape[1:]) in -> (N, *out[1:]) out; (N, *shape) in -> (N, *out) out
    assert out["y"].shape == ((3, 4, 8, 8) if layout == "concat" else (3, 1, 4, 8, 8))
    np.testing.assert_allclose(out["y"].reshape(want.shape), want, rtol=1e-4, atol=1e-5)


def test_run_several_inputs_and_outputs(tmp_path):
    proj = tmp_path / "proj"
    assert nncc("compile", two_branch(tmp_path), "-o", proj).returncode == 0
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 5)).astype(np.float32), rng.standard_normal((2, 3, 4, 4))
    out = run(proj, tmp_path, a=a, b=b)
    assert out["ra"].shape == (2, 5) and out["cb"].shape == (2, 2, 4, 4)
    np.testing.assert_array_equal(out["ra"], np.maximum(a, 0))
    # `x` is only an alias for single-input models; a missing input is named
    np.savez(tmp_path / "bad.npz", x=a, b=b)
    assert_user_error(nncc("run", proj, "--inputs", tmp_path / "bad.npz", "--out", tmp_path / "o.npz"),
                      "missing", "a (have")
    np.savez(tmp_path / "bad.npz", a=a, b=b[:1])
    assert_user_error(nncc("run", proj, "--inputs", tmp_path / "bad.npz", "--out", tmp_path / "o.npz"),
                      "number of samples")


def test_run_key_x_or_input_name(tmp_path):
    m = make_model([helper.make_node("Relu", ["data"], ["prob"])], [("data", (1, 6))], [("prob", None)])
    proj = tmp_path / "proj"
    assert nncc("compile", save(m, tmp_path), "-o", proj).returncode == 0
    x = np.linspace(-1, 1, 6, dtype=np.float32).reshape(1, 6)
    for key in ("x", "data"):
        out = run(proj, tmp_path, **{key: x})
        assert list(out) == ["prob"]
        np.testing.assert_array_equal(out["prob"], np.maximum(x, 0))


@pytest.mark.parametrize("bad", ["missing_key", "wrong_shape", "not_npz", "no_file", "not_project",
                                 "out_dir_missing"])
def test_run_errors(project, tmp_path, bad):
    _, proj = project
    inp, out = tmp_path / "in.npz", tmp_path / "out.npz"
    x = np.ones((1, 3, 8, 8), np.float32)
    needle = {"missing_key": "x", "wrong_shape": "shape", "not_npz": "in.npz", "no_file": "in.npz",
              "not_project": "report.json", "out_dir_missing": "out.npz"}[bad]
    if bad == "missing_key":
        np.savez(inp, data=x)
    elif bad == "wrong_shape":
        np.savez(inp, x=np.ones((3, 8, 8), np.float32))
    elif bad == "not_npz":
        inp.write_text("not an npz")
    else:
        np.savez(inp, x=x)
    if bad == "no_file":
        inp.unlink()
    if bad == "not_project":
        proj = tmp_path
    if bad == "out_dir_missing":
        out = tmp_path / "nowhere" / "out.npz"
    assert_user_error(nncc("run", proj, "--inputs", inp, "--out", out), needle)


def test_validate(tmp_path):
    model = save(conv_relu(), tmp_path)
    r = nncc("validate", model)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout
    np.savez(tmp_path / "in.npz", x=np.random.default_rng(5).standard_normal((2, 3, 8, 8)))
    r = nncc("validate", model, "--inputs", tmp_path / "in.npz")
    assert r.returncode == 0, r.stdout + r.stderr
    # float32 sums in C vs float64 in the reference differ in the last bits of some of the 768
    # outputs: zero tolerance must fail, with the table still printed and no traceback.
    r = nncc("validate", model, "--atol", "0", "--rtol", "0")
    assert r.returncode == 1 and "FAIL" in r.stdout and "Traceback" not in r.stderr


def test_analyze(project, tmp_path):
    model, _ = project
    r = nncc("analyze", model)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert any(ln.split()[:2] == ["conv", "Conv"] for ln in lines), r.stdout
    assert any(ln.startswith("total") for ln in lines) and "arena" in r.stdout
    r = nncc("analyze", model, "--json")
    assert r.returncode == 0, r.stderr
    # compile's report.json for the same model under its default name
    assert nncc("compile", model, "-o", tmp_path / "p").returncode == 0
    assert json.loads(r.stdout) == json.loads((tmp_path / "p" / "report.json").read_text())
    assert json.loads(r.stdout)["macs"] == 4 * 8 * 8 * 27


def test_validate_table_summarizes_many_samples():
    from nncc.validate import Metrics, table_rows
    rows = [(i, "y", oracle, Metrics(abs_err, 0.0, 1.0, abs_err < 0.5))
            for i, abs_err in enumerate([0.1] * 9 + [0.9, 0.7] + [0.2] * 9)
            for oracle in ("reference", "onnxruntime")]
    few = table_rows(rows[:8])
    assert [r[0] for r in few] == [0, 0, 1, 1, 2, 2, 3, 3]
    many = table_rows(rows)
    # one worst row per oracle (sample 9), then the other failing sample (10) for each oracle
    assert [(r[0], r[2], r[3]) for r in many] == [
        ("worst of 20", "reference", "0.9"), ("worst of 20", "onnxruntime", "0.9"),
        (10, "reference", "0.7"), (10, "onnxruntime", "0.7")]
