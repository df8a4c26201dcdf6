"""User mistakes through the real command line: malformed files, unsupported and dynamic models,
bad options, hostile names and output directories. Every mistake must end in exactly one
`nncc: error:` line on stderr and a non-zero exit, never a traceback; awkward ONNX names must
compile and give the right numbers (tests/codegen/test_names.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from onnx import helper

from tests.util import ROOT, make_model, save


def nncc(*args, cwd=None) -> subprocess.CompletedProcess:
    """`python -m nncc ARGS` in a subprocess, finding this checkout's nncc."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "nncc", *map(str, args)], check=False, capture_output=True,
                          text=True, cwd=cwd, env=env, timeout=300)


def assert_user_error(r: subprocess.CompletedProcess, *needles: str) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0, r.stdout
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert len(lines) == 1 and lines[0].startswith("nncc: error:"), r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


def conv_relu(batch=1, name="m"):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["c"], ["y"], name="relu")]
    return make_model(nodes, [("x", (batch, 3, 8, 8))], [("y", (batch, 4, 8, 8))], {"W": w},
                      name=name)


@pytest.fixture
def model(tmp_path):
    return save(conv_relu(), tmp_path, "conv.onnx")


# -- malformed files --------------------------------------------------------------------------
@pytest.mark.parametrize("content", [os.urandom(64) + bytes(range(256)), b"hello, not a model\n",
                                     b""], ids=["random", "text", "empty"])
def test_not_onnx(tmp_path, content):
    p = tmp_path / "bad.onnx"
    p.write_bytes(content)
    assert_user_error(nncc("compile", p, "-o", tmp_path / "out"), "bad.onnx")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("frac", [0.02, 0.5, 0.99])
def test_truncated(tmp_path, model, frac):
    data = model.read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[:max(1, int(len(data) * frac))])
    assert_user_error(nncc("compile", p, "-o", tmp_path / "out"), "cut.onnx")


def test_missing_file(tmp_path):
    assert_user_error(nncc("compile", tmp_path / "nope.onnx", "-o", tmp_path / "out"), "nope.onnx")
    assert_user_error(nncc("analyze", tmp_path / "nope.onnx"), "nope.onnx")


def test_all_unsupported_ops_listed(tmp_path):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"], name="conv0"),
             helper.make_node("FancyOp", ["c"], ["d"], name="fancy1"),
             helper.make_node("OtherOp", ["d"], ["e"], name="other2"),
             helper.make_node("FancyOp", ["e"], ["y"], name="fancy3")]
    m = make_model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 4, 6, 6))],
                   {"W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32)})
    msg = assert_user_error(nncc("compile", save(m, tmp_path), "-o", tmp_path / "out"),
                            "FancyOp", "OtherOp", "fancy1", "other2", "fancy3")
    assert "conv0" not in msg


# -- shapes -----------------------------------------------------------------------------------
def test_dynamic_batch_needs_pinning(tmp_path):
    p = save(conv_relu(batch="N"), tmp_path)
    assert_user_error(nncc("compile", p, "-o", tmp_path / "out"), "--input-shape", "'x'")
    r = nncc("compile", p, "-o", tmp_path / "out", "--input-shape", "x=1,3,8,8")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "out" / "report.json").is_file()


@pytest.mark.parametrize("spec", ["x", "x=a,b,c,d", "x=1,,3,8", "x=0,3,8,8", "x=1,3,8", "y=1,3,8,8",
                                  "x=2,3,8,8"])
def test_bad_input_shape(tmp_path, spec):
    p = save(conv_relu(batch="N"), tmp_path)
    q = save(conv_relu(), tmp_path, "fixed.onnx")  # x=2,... conflicts with the model's fixed 1
    assert_user_error(nncc("compile", q if spec.startswith("x=2") else p, "-o", tmp_path / "out",
                           "--input-shape", spec), "--input-shape")


# -- names ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["1x", "a-b c", "int", "ñ", "nncc_runtime", ""])
def test_invalid_name_refused(tmp_path, model, name):
    assert_user_error(nncc("compile", model, "-o", tmp_path / "out", "--name", name), "--name")
    assert not (tmp_path / "out").exists()


# -- the output directory ---------------------------------------------------------------------
def test_existing_dir_needs_force(tmp_path, model):
    out = tmp_path / "out"
    out.mkdir()
    assert_user_error(nncc("compile", model, "-o", out), "--force")
    assert list(out.iterdir()) == []


def test_force_replaces_only_our_files(tmp_path, model):
    out, outside = tmp_path / "out", tmp_path / "outside.c"
    outside.write_text("keep me\n")
    assert nncc("compile", model, "-o", out).returncode == 0
    (out / "notes.txt").write_text("mine\n")
    (out / "link.c").symlink_to(outside)
    r = nncc("compile", model, "-o", out, "--force", "--name", "other")
    assert r.returncode == 0, r.stderr
    names = {p.name for p in out.iterdir()}
    assert "conv.c" not in names and "other.c" in names  # the old project is gone
    assert {"notes.txt", "link.c"} <= names
    assert (out / "notes.txt").read_text() == "mine\n"
    assert outside.read_text() == "keep me\n"


def test_force_never_writes_through_user_files(tmp_path, model):
    """A user's file (or a symlink leading outside DIR) where nncc would write stops the compile
    before anything is changed."""
    out, outside = tmp_path / "out", tmp_path / "victim.txt"
    outside.write_text("keep me\n")
    out.mkdir()
    (out / "conv.c").symlink_to(outside)
    (out / "Makefile").write_text("all:\n")
    assert_user_error(nncc("compile", model, "-o", out, "--force"), "conv.c", "Makefile")
    assert outside.read_text() == "keep me\n"
    assert (out / "Makefile").read_text() == "all:\n"


def test_manifest_cannot_point_outside(tmp_path, model):
    out = tmp_path / "out"
    assert nncc("compile", model, "-o", out).returncode == 0
    (tmp_path / "precious.txt").write_text("x")
    with open(out / ".nncc-files", "a") as f:
        f.write(f"../precious.txt\n{tmp_path / 'precious.txt'}\n..\n")
    assert nncc("compile", model, "-o", out, "--force").returncode == 0
    assert (tmp_path / "precious.txt").read_text() == "x"


def test_output_is_a_regular_file(tmp_path, model):
    f = tmp_path / "file"
    f.write_text("data")
    for extra in ([], ["--force"]):
        assert_user_error(nncc("compile", model, "-o", f, *extra), "not a directory")
    assert_user_error(nncc("compile", model, "-o", f / "sub"))
    assert f.read_text() == "data"
