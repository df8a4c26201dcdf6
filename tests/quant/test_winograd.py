"""The Winograd F(2x2, 3x3) kernel of int8 3x3 convolutions (`--winograd`, nncc/ops/qconv_wino.py,
templates/ops/qconv/wino.c.j2): its integer transforms equal the direct convolution (numpy), the
layers it takes, its weights' order and flash bytes, and its C equal to the integer reference bit
for bit on the host (the portable path; tests/targets/test_dsp_kernels.py runs the DSP one)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from nncc.cli import main
from nncc.ops._spatial import Window
from nncc.ops.qconv_wino import sums_fit, transform_weights, wino_weights, winograd_conv
from nncc.ops.quantized import int_conv
from nncc.quant.quantize import QuantOptions
from tests.quant.qutil import build, check_exact, conv_chain, samples
from tests.targets.test_firmware import int8_qemu_equals_host, need
from tests.util import make_model, save

XS = (1, 9, 7, 9)


def model(tmp_path, seed: int = 5):
    """x (9 channels, 7x9) -> 3x3 9->12 pads 1 -> Relu -> 3x3 12->9 pads (0, 1, 1, 0) -> 3x3 9->9
    pads 1 + residual (a fused QAdd, odd output rows and columns: tiles cut at both edges) ->
    3x3 9->4 (too few output channels: direct) -> 3x3 stride 2 4->8 (direct) -> y."""
    rng = np.random.default_rng(seed)
    layers = [("a", "x", "a", (12, 9, 3, 3), {"pads": [1, 1, 1, 1]}),
              ("b", "ar", "b", (9, 12, 3, 3), {"pads": [0, 1, 1, 0]}),
              ("c", "b", "c", (9, 9, 3, 3), {"pads": [1, 1, 1, 1]}),
              ("d", "s", "d", (4, 9, 3, 3), {}),
              ("e", "d", "y", (8, 4, 3, 3), {"strides": [2, 2], "pads": [1, 1, 1, 1]})]
    nodes, inits = conv_chain(rng, layers, {"a": [helper.make_node("Relu", ["a"], ["ar"])],
                                            "c": [helper.make_node("Add", ["c", "b"], ["s"])]})
    return save(make_model(nodes, [("x", XS)], [("y", None)], inits), tmp_path)


@pytest.mark.parametrize("hw,pads", [((7, 9), (1, 1, 1, 1)), ((8, 8), (0, 0, 0, 0)),
                                     ((5, 6), (1, 0, 0, 1)), ((4, 4), (2, 1, 0, 2)), ((3, 3), (0, 0, 0, 0))])
def test_transforms_equal_direct_convolution(hw, pads):
    """U' = G' w G'^T (G' = 2 G), V = B^T d B, (A^T sum(U' V) A) >> 2: the direct sums exactly,
    for the extreme values of x - x_zp and w too."""
    rng = np.random.default_rng(1)
    xd = rng.integers(-255, 256, (2, 5, *hw))
    xd[0, 0] = 255
    w = rng.integers(-127, 128, (3, 5, 3, 3))
    w[0] = -127
    top, left, bottom, right = pads
    out = (hw[0] + top + bottom - 2, hw[1] + left + right - 2)
    win = Window((3, 3), (1, 1), (1, 1), (top, left), (bottom, right), hw, out)
    np.testing.assert_array_equal(winograd_conv(xd, w, pads), int_conv(xd, w, win, 1))


def test_weights_order():
    """Per channel pair, per tile element, per input channel pair (C padded to a multiple of 8),
    the first channel's two then the second's; an odd M's last channel paired with zeros."""
    w = np.random.default_rng(2).integers(-127, 128, (3, 5, 3, 3)).astype(np.int8)
    u = transform_weights(w).reshape(3, 5, 16)
    laid = wino_weights(w)
    assert laid.dtype == np.int16 and laid.shape == (2, 16, 4, 2, 2)
    for pair, xi, cp, j, i in [(0, 0, 0, 0, 0), (0, 7, 1, 1, 0), (0, 15, 2, 0, 0), (1, 3, 1, 0, 1)]:
        assert laid[pair, xi, cp, j, i] == u[2 * pair + j, 2 * cp + i, xi]
    assert not laid[0, :, 2, :, 1].any() and not laid[0, :, 3].any()  # channels 5..7: zeros
    assert not laid[1, :, :, 1].any()  # channel 3: zeros
    assert np.abs(laid).max() <= 9 * 127


def test_sums_bound():
    """U' grows a weight up to 9x: with 128 input channels of weights at the limit the sums
    fit int32, with 300 they might not (the layer keeps the direct kernel)."""
    w = np.full((2, 128, 3, 3), 127, np.int8)
    assert sums_fit(w)
    assert not sums_fit(np.full((2, 300, 3, 3), 127, np.int8))
    assert sums_fit(np.zeros((2, 256, 3, 3), np.int8))


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_winograd_equals_reference(tmp_path, scaling):
    """The eligible layers take the kernel (not one of 4 output channels, not stride 2), its
    outputs equal the integer reference bit for bit, and the same as the direct build's."""
    path = model(tmp_path)
    res = build(path, tmp_path / "w", samples(XS, 4, 0), scaling=scaling, winograd=True)
    kernels = {ly["name"]: ly["kernel"] for ly in res.report["layers"]}
    assert list(kernels.values()) == ["winograd"] * 3 + ["direct"] * 2, kernels
    code = next(res.out_dir.glob("*.c")).read_text()
    assert code.count("static void nncc_qconv_wino_ob1_") == 2  # with and without the QAdd
    got = check_exact(res, samples(XS, 3, 1))
    plain = check_exact(build(path, tmp_path / "d", samples(XS, 4, 0), scaling=scaling), samples(XS, 3, 1))
    for a, b in zip(got, plain):
        np.testing.assert_array_equal(a["y"], b["y"])


# (input shape, output channels, pads): a batch of 2; outputs of 2x2, 1x1 and 1 row (tile rows
# cut); pads of 2 (tiles wholly outside the input's columns); C 17 (3 loop steps of 8 channels
# and a lone 17th), 3 quads a row, asymmetric pads
EDGES = [((2, 8, 4, 4), 8, [1, 1, 1, 1]), ((1, 8, 2, 2), 9, [1, 1, 1, 1]), ((1, 10, 3, 5), 8, [2, 2, 2, 2]),
         ((1, 8, 3, 3), 8, [0, 0, 0, 0]), ((1, 17, 5, 18), 11, [1, 0, 2, 1]), ((1, 8, 1, 12), 8, [1, 1, 1, 1])]


def one_conv(tmp_path, xs, m: int, pads, seed: int = 0):
    nodes, inits = conv_chain(np.random.default_rng(seed), [("a", "x", "y", (m, xs[1], 3, 3), {"pads": pads})])
    return save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path)


@pytest.mark.parametrize("xs,m,pads", EDGES)
def test_winograd_edge_shapes(tmp_path, xs, m, pads):
    res = build(one_conv(tmp_path, xs, m, pads), tmp_path / "w", samples(xs, 3, 0), winograd=True)
    assert [ly["kernel"] for ly in res.report["layers"]] == ["winograd"]
    check_exact(res, samples(xs, 2, 1))


def test_weights_bytes_are_the_flash_arrays(tmp_path):
    """report.json counts the arrays the C holds: a Winograd layer's transformed int16 weights
    (and its packed int16 per channel), not the int8 tensor."""
    path = model(tmp_path)
    res = build(path, tmp_path / "w", samples(XS, 4, 0), winograd=True)
    plain = build(path, tmp_path / "d", samples(XS, 4, 0))
    first = res.report["layers"][0]
    assert first["weights_bytes"] == 2 * (6 * 16 * 8 * 2 * 2) + 2 * 12  # 6 pairs x 16 x 8 ci pairs (C 9 -> 16)
    assert res.report["weights_bytes"] - plain.report["weights_bytes"] == sum(
        a["weights_bytes"] - b["weights_bytes"] for a, b in zip(res.report["layers"], plain.report["layers"]))
    weights_h = next(res.out_dir.glob("*_weights.h")).read_text()
    assert "static const int16_t" in weights_h and "(wino_weights)" in weights_h


def test_cli_winograd(tmp_path, capsys):
    path = model(tmp_path)
    np.savez(tmp_path / "calib.npz", x=np.stack([s["x"][0] for s in samples(XS, 3, 0)]))
    assert main(["compile", str(path), "-o", str(tmp_path / "p"), "--quantize", "int8",
                 "--calib", str(tmp_path / "calib.npz"), "--winograd"]) == 0
    report = json.loads((tmp_path / "p" / "report.json").read_text())
    assert [ly["kernel"] for ly in report["layers"]].count("winograd") == 3
    assert main(["compile", str(path), "-o", str(tmp_path / "q"), "--winograd"]) != 0
    assert "--winograd need --quantize" in capsys.readouterr().err


@pytest.mark.cross
@pytest.mark.parametrize("target", ["rv32imac", "cortex-m0plus"])
def test_winograd_on_cores_without_dsp(tmp_path, target):
    """Built for cores without the DSP extension (the portable transform and sums), run in
    QEMU: the same outputs as the host build."""
    path = model(tmp_path)
    need(target)
    fw = int8_qemu_equals_host(path, samples(XS, 2, 2), target, tmp_path / target,
                               QuantOptions(samples=samples(XS, 4, 0), winograd=True), "")
    assert [ly["kernel"] for ly in fw.report["layers"]].count("winograd") == 3
