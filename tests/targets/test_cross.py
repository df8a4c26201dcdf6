"""The generated C compiles warning-free with the MCU cross compilers (arm-none-eabi-gcc for a
Cortex-M4F, riscv64-unknown-elf-gcc for rv32imac), float lists and weight blobs alike.

riscv64-unknown-elf-gcc (Debian package) ships no C library; picolibc-riscv64-unknown-elf
provides <math.h> through `--specs=picolibc.specs` (`make toolchains` installs it)."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from tests.util import CROSS, FIXTURES, conv_relu, cross_compile, have, make_model, save

pytestmark = pytest.mark.cross


def depthwise_names(tmp_path):
    """Depthwise + pointwise with awkward ONNX names and two outputs."""
    rng = np.random.default_rng(1)
    nodes = [helper.make_node("Conv", ["in:0", "dw.w"], ["a.b"], group=4, pads=[1, 1, 1, 1], name="for"),
             helper.make_node("Relu", ["a.b"], ["a_b"], name="a*/b"),
             helper.make_node("Conv", ["a_b", "int"], ["out put"])]
    inits = {"dw.w": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
             "int": rng.standard_normal((6, 4, 1, 1)).astype(np.float32)}
    m = make_model(nodes, [("in:0", (1, 4, 6, 6))], [("out put", None), ("a.b", None)], inits)
    return save(m, tmp_path, "dwnames.onnx")


MODELS = {"conv_relu": (conv_relu, {}), "conv_relu_blob": (conv_relu, {"blob_threshold": 0}),
          "depthwise_names": (depthwise_names, {})}


def toolchain(target: str) -> None:
    tool = CROSS[target][0]
    if not have(tool):
        pytest.skip(f"{tool} not installed (make toolchains)")
    if not has_header(CROSS[target], "math.h"):
        pytest.skip(f"{tool} has no <math.h>: install picolibc-riscv64-unknown-elf (make toolchains)")


def has_header(cmd: list[str], header: str) -> bool:
    r = subprocess.run([*cmd, "-x", "c", "-fsyntax-only", "-"], input=f"#include <{header}>\n",
                       capture_output=True, text=True, check=False)
    return r.returncode == 0


@pytest.mark.parametrize("target", sorted(CROSS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_cross_compile(tmp_path, target, model):
    toolchain(target)
    make, kw = MODELS[model]
    res = compile_model(make(tmp_path), tmp_path / "proj", **kw)
    cross_compile(res.out_dir, target)
    assert (res.out_dir / f"{target}.o").stat().st_size > 0


FIXTURE_MODELS = sorted(str(p.relative_to(FIXTURES)) for p in FIXTURES.glob("*/*.onnx"))


@pytest.mark.parametrize("target", sorted(CROSS))
@pytest.mark.parametrize("model", FIXTURE_MODELS)
def test_cross_compile_fixture_models(tmp_path, target, model):
    """Every model fixture of the repository (MLPerf Tiny, zoo, ...), at -O2."""
    toolchain(target)
    res = compile_model(FIXTURES / model, tmp_path / "proj")
    cross_compile(res.out_dir, target)
