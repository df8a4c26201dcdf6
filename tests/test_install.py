"""Packaging: a regular (non-editable) `pip install` of the project into a temporary target
must carry every subpackage and every file of templates/, runtime_c/ and targets/, and the
installed nncc must find them (not the checkout's) when compiling from another directory.

The project is copied first so the build leaves no build/ or *.egg-info in the checkout; pip
runs offline with the already-installed setuptools (--no-build-isolation --no-index)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from tests.util import ROOT, make_model, save

DATA_DIRS = ["templates", "runtime_c", "targets"]


def shipped(base: Path) -> set[str]:
    """Relative paths of the files a user needs (no caches, no dotfiles such as .keep)."""
    return {str(p.relative_to(base)) for p in base.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")}


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    src.mkdir()
    for name in ["pyproject.toml", "README.md", "nncc", *DATA_DIRS]:
        f = ROOT / name
        if f.is_dir():
            shutil.copytree(f, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif f.exists():
            shutil.copy(f, src / name)
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-index",
                        "--no-deps", "--quiet", "--target", str(tmp / "site"), str(src)],
                       capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return tmp / "site"


def test_every_module_and_data_file_installed(site):
    got = shipped(site / "nncc")
    want = {p for p in shipped(ROOT / "nncc") if p.endswith(".py")}
    assert want - got == set(), "modules missing from the install (pyproject.toml packages?)"
    for d in DATA_DIRS:
        missing = {f"{d}/{p}" for p in shipped(ROOT / d)} - got
        assert not missing, f"data files missing from the install (package-data?): {sorted(missing)}"


def test_installed_nncc_compiles_from_elsewhere(site, tmp_path):
    w = np.random.default_rng(0).standard_normal((2, 3, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "W"], ["c"]), helper.make_node("Relu", ["c"], ["y"])]
    model = save(make_model(nodes, [("x", (1, 3, 5, 5))], [("y", None)], {"W": w}), tmp_path, "tiny.onnx")
    work = tmp_path / "work"
    work.mkdir()
    env = dict(os.environ, PYTHONPATH=str(site))
    probe = ("import nncc.resources as r; print(r.__file__); "
             f"print(*[r.resource_dir(d) for d in {[d for d in DATA_DIRS if shipped(ROOT / d)]}], sep='\\n')")
    r = subprocess.run([sys.executable, "-c", probe], cwd=work, env=env, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stderr
    for line in r.stdout.split():
        assert Path(line).resolve().is_relative_to(site.resolve()), f"{line} is not the installed copy"
    r = subprocess.run([sys.executable, "-m", "nncc", "compile", str(model), "-o", "out"], cwd=work,
                       env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    assert {"tiny.c", "tiny.h", "nncc_runtime.h", "report.json"} <= {p.name for p in (work / "out").iterdir()}
    r = subprocess.run([sys.executable, "-m", "nncc", "validate", str(model)], cwd=work, env=env,
                       capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stdout + r.stderr
