"""Seeded random int8 models through the shared conv and fully connected kernels: for each, the
host build equals the integer reference and the cortex-m4 firmware in QEMU (with -O2, and some
with -Os or -O0, where the assembly gives way to C) equals the host, bit for bit. The shapes lean
towards the edges the DSP paths special-case: odd and small channel counts, planes whose pixel
count is not a multiple of 4, asymmetric pads, strides and dilations, 3x3 depthwise layers,
residual Adds, layers without bias, fully connected rows of any K. A campaign of this kind found
three bugs the fixed-case tests had missed (test_dsp_kernels.py keeps each as its own case)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from nncc.errors import ShapeError
from nncc.ops._spatial import _out_len
from nncc.quant.quantize import QuantOptions
from tests.quant.qutil import build, check_exact, conv, samples
from tests.targets.test_dsp_kernels import gemm_chain, m4_equals_host
from tests.targets.test_firmware import need
from tests.util import make_model, save

pytestmark = [pytest.mark.cross, pytest.mark.slow]

KERNELS = [(3, 3)] * 4 + [(1, 1)] * 3 + [(2, 2), (5, 5), (1, 3), (3, 1), (10, 4)]
CHANNELS = [1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 24, 33]


def _layer(rng, c: int, h: int, w: int, depthwise: bool):
    """(weight shape, attributes, output channels, oh, ow) of a random conv of a c x h x w
    input, or None when its window does not fit."""
    k = (3, 3) if depthwise and rng.random() < 0.7 else KERNELS[rng.integers(len(KERNELS))]
    s = [int(v) for v in rng.choice([1, 1, 2], 2)]
    d = [int(v) for v in rng.choice([1, 1, 1, 2], 2)]
    pads = [int(v) for v in rng.integers(0, 3, 4)] if rng.random() < 0.6 else \
        [(k[0] - 1) // 2, (k[1] - 1) // 2, k[0] // 2, k[1] // 2]
    if max(pads[0], pads[2]) >= d[0] * (k[0] - 1) + 1 or max(pads[1], pads[3]) >= d[1] * (k[1] - 1) + 1:
        return None
    try:
        oh = _out_len(h, k[0], s[0], d[0], pads[0], pads[2], False)
        ow = _out_len(w, k[1], s[1], d[1], pads[1], pads[3], False)
    except ShapeError:  # the window does not fit the padded input
        return None
    m = c if depthwise else int(rng.choice(CHANNELS))
    attrs = {"pads": pads, "strides": s, "dilations": d, **({"group": c} if depthwise else {})}
    return (m, 1 if depthwise else c, *k), attrs, m, oh, ow


def conv_model(tmp_path, seed: int):
    """A chain of 1 to 3 random convolutions (depthwise or not, with or without bias, a Relu
    after some, a residual Add where a layer keeps its input's shape) -> (path, input shape)."""
    rng = np.random.default_rng(seed)
    for _ in range(100):
        c, h, w = int(rng.choice(CHANNELS)), int(rng.integers(1, 15)), int(rng.integers(1, 24))
        xs, nodes, inits, x = (1, c, h, w), [], {}, "x"
        for i in range(int(rng.integers(1, 4))):
            spec = _layer(rng, c, h, w, rng.random() < 0.35)
            if spec is None:
                break
            ws, attrs, m, oh, ow = spec
            n, init = conv(rng, f"l{i}", x, f"c{i}", ws, bool(rng.random() < 0.85), **attrs)
            nodes.append(n)
            inits.update(init)
            y = f"c{i}"
            if (m, oh, ow) == (c, h, w) and rng.random() < 0.5:
                nodes.append(helper.make_node("Add", [y, x], [f"s{i}"]))
                y = f"s{i}"
            if rng.random() < 0.6:
                nodes.append(helper.make_node("Relu", [y], [f"r{i}"]))
                y = f"r{i}"
            x, c, h, w = y, m, oh, ow
        else:
            nodes[-1].output[0] = "y"  # the last tensor, read by nothing else
            return save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path), xs
    raise AssertionError(f"seed {seed}: no valid model")


@pytest.mark.parametrize("seed", range(24))
def test_random_convs(tmp_path, seed):
    need("cortex-m4")
    path, xs = conv_model(tmp_path, 1000 + seed)
    scaling = "shift" if seed % 4 == 3 else "fixed"
    res = build(path, tmp_path / "host", samples(xs, 6, 0), scaling=scaling)
    check_exact(res, samples(xs, 2, 1))
    quant = QuantOptions(samples=samples(xs, 6, 0), scaling=scaling)
    m4_equals_host(tmp_path, path, quant, samples(xs, 2, 2), ["", "-Os", "-O0"][seed % 3])


@pytest.mark.parametrize("seed", range(8))
def test_random_fully_connected(tmp_path, seed):
    need("cortex-m4")
    rng = np.random.default_rng(2000 + seed)
    dims = [int(4 * rng.integers(1, 50)) if rng.random() < 0.6 else int(rng.integers(1, 90))
            for _ in range(int(rng.integers(2, 5)))]
    dims[0] = int(4 * rng.integers(16, 80))  # a first layer large enough for the shared loop
    path = gemm_chain(tmp_path, dims, seed)
    xs = (1, dims[0])
    scaling = "shift" if seed % 2 else "fixed"
    res = build(path, tmp_path / "host", samples(xs, 6, 0), scaling=scaling)
    check_exact(res, samples(xs, 2, 1))
    quant = QuantOptions(samples=samples(xs, 6, 0), scaling=scaling)
    m4_equals_host(tmp_path, path, quant, samples(xs, 2, 2), ["", "-Os"][seed // 2 % 2])
