"""The generated C compiles warning-free with the MCU cross compilers (arm-none-eabi-gcc for a
Cortex-M4F, riscv64-unknown-elf-gcc for rv32imac), float lists and weight blobs alike.

riscv64-unknown-elf-gcc (Debian/Ubuntu package) ships no C library, so <math.h>, which
nncc_runtime.h includes, is missing; picolibc-riscv64-unknown-elf provides it through
`--specs=picolibc.specs`. Without picolibc the RISC-V case is an expected failure."""
from __future__ import annotations

import subprocess

import numpy as np
import pytest
from onnx import helper

from nncc.compiler import compile_model
from nncc.errors import NnccError
from tests import util
from tests.util import CROSS, MLPERF, cross_compile, have, make_model, save

pytestmark = pytest.mark.cross


def conv_relu(tmp_path):
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["y"])]
    inits = {"W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "B": rng.standard_normal(4).astype(np.float32)}
    return save(make_model(nodes, [("x", (1, 3, 9, 9))], [("y", None)], inits), tmp_path, "convrelu.onnx")


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


def toolchain(target: str, monkeypatch) -> None:
    tool = CROSS[target][0]
    if not have(tool):
        pytest.skip(f"{tool} not installed (apt-get install gcc-arm-none-eabi / gcc-riscv64-unknown-elf)")
    if target == "rv32imac" and not has_header(CROSS[target], "math.h"):
        specs = [*CROSS[target], "--specs=picolibc.specs"]
        if not has_header(specs, "math.h"):
            pytest.xfail(f"{tool} has no <math.h> (no libc); install picolibc-riscv64-unknown-elf")
        monkeypatch.setitem(util.CROSS, target, specs)


def has_header(cmd: list[str], header: str) -> bool:
    r = subprocess.run([*cmd, "-x", "c", "-fsyntax-only", "-"], input=f"#include <{header}>\n",
                       capture_output=True, text=True, check=False)
    return r.returncode == 0


@pytest.mark.parametrize("target", sorted(CROSS))
@pytest.mark.parametrize("model", sorted(MODELS))
def test_cross_compile(tmp_path, monkeypatch, target, model):
    toolchain(target, monkeypatch)
    make, kw = MODELS[model]
    res = compile_model(make(tmp_path), tmp_path / "proj", **kw)
    cross_compile(res.out_dir, target)
    assert (res.out_dir / f"{target}.o").stat().st_size > 0


@pytest.mark.parametrize("target", sorted(CROSS))
def test_cross_compile_mlperf(tmp_path, monkeypatch, target):
    """A real model (when all its ops are supported)."""
    toolchain(target, monkeypatch)
    try:
        res = compile_model(MLPERF / "mlperf_kws_dscnn.onnx", tmp_path / "proj")
    except NnccError as e:
        pytest.skip(f"not compilable yet: {str(e)[:200]}")
    cross_compile(res.out_dir, target)
