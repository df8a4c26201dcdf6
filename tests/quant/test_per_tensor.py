"""Per-tensor weight scales (`--per-tensor`, QuantOptions(per_channel=False)): one scale for the
whole weight tensor, in every scaling and in both the packed and unpacked forms. The C must equal
the integer reference, and the accuracy cost on the trained depthwise net is measured against
per-channel (the default) on real held-out digits."""
from __future__ import annotations

import numpy as np
import pytest

from nncc.cli import main
from nncc.npzio import split_samples
from nncc.quant.rewrite import weight_params
from tests.quant.qutil import build, check_exact, sqnr_db
from tests.quant.test_accuracy import QDIR, c_logits, data

RNG = np.random.default_rng(3)


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
@pytest.mark.parametrize("packed", [True, False])
def test_one_scale_per_tensor(scaling, packed):
    w = RNG.standard_normal((6, 3, 3, 3)) * np.array([1, 0.1, 3, 0.01, 1, 0])[:, None, None, None]
    q, scales, k = weight_params(w, scaling, packed, per_channel=False)
    eff = scales * 2.0 ** k if packed else scales  # packed: channel scale = layer's x 2^-k
    assert np.all(k == 0) and np.allclose(scales, scales[0])
    # the widest channel spans the int8 range; at least half of it with a power-of-two scale
    # (shift) or, packed, with the layer's max / 127 times the factor in [1, 2) that rounds the
    # weights best (packed_scales(): 122 for some draws)
    assert np.abs(q).max() >= (127 if scaling == "fixed" and not packed else 64)
    assert np.abs(q[3]).max() <= 1  # a narrow channel keeps only a few steps
    np.testing.assert_allclose(q * eff[:, None, None, None], w, atol=eff[0] / 2 + 1e-12)
    _, per_ch, _ = weight_params(w, scaling, packed)
    assert not np.allclose(per_ch, per_ch[0])


@pytest.mark.parametrize("scaling", ["fixed", "shift", "double-shift"])
def test_per_tensor_accuracy_and_exact(tmp_path, scaling):
    """mnist_dsnet (depthwise, ReLU6) on 1000 held-out digits: per-tensor weights cost SQNR
    against per-channel, the C still equals the reference."""
    x, y = data("mnist_heldout")
    xc, _ = data("mnist_calib")
    path = QDIR / "mnist_dsnet.onnx"
    tops, sq = {}, {}
    ref = None
    for per_channel in (True, False):
        res = build(path, tmp_path / str(per_channel), [], scaling, per_channel=per_channel,
                    arrays={"x": xc})
        check_exact(res, split_samples({"x": x[:4]}, res.report["inputs"])[0])
        logits = c_logits(res.out_dir, res.report, x)
        tops[per_channel] = 100.0 * np.mean(logits.argmax(1) == y)
        if ref is None:
            from nncc.compiler import compile_model
            f = compile_model(path, tmp_path / "float", force=True)
            ref = c_logits(f.out_dir, f.report, x)
        sq[per_channel] = sqnr_db(ref, logits)
    print(f"\nmnist_dsnet {scaling}: top-1 per-channel {tops[True]:.1f} %, per-tensor "
          f"{tops[False]:.1f} %; logit SQNR {sq[True]:.1f} / {sq[False]:.1f} dB")
    assert sq[False] < sq[True]
    assert tops[False] > 90.0


def test_cli_per_tensor_needs_quantize(capsys):
    assert main(["compile", str(QDIR / "mnist_dsnet.onnx"), "-o", "/nonexistent/x", "--per-tensor"]) != 0
    assert "need --quantize" in capsys.readouterr().err
