"""Activation range observers of nncc/quant/calibrate.py on known distributions: where the kl
(TensorRT entropy, calibrate_kl.py) and ksigma thresholds land, a ReLU'd tensor keeping lo = 0,
point masses not dragging the kl threshold down, all-zero tensors safe; then each observer
through a whole int8 build (C == integer reference)."""
from __future__ import annotations

import numpy as np
import pytest

from nncc.npzio import load_npz
from nncc.quant.calibrate import OBSERVERS, KSigma, calibrate, calibrate_both
from nncc.quant.calibrate_kl import kl_range
from nncc.quant.rewrite import act_params, unfuse_conv_pool
from tests.quant.qutil import build, check_exact, float_graph, samples
from tests.quant.test_quant_ops import model
from tests.util import FIXTURES

RNG = np.random.default_rng(3)
N = 200_000


def observe(kind: str, v: np.ndarray, chunks: int = 10) -> tuple[float, float]:
    o = OBSERVERS[kind]()
    for c in np.array_split(v, chunks):
        o.update(c)
    return o.range()


def test_kl_gaussian_and_laplace():
    """Unit variance both: KL clips the Gaussian's rare tail a little (threshold 3.5-5 sigma,
    below the max) and keeps much more of the long-tailed Laplace (> 5.5 sigma)."""
    g = RNG.standard_normal(N)
    lo, hi = observe("kl", g)
    assert 3.5 < hi <= g.max() and -5 < lo < -3.5, (lo, hi)
    assert hi < g.max() or lo > g.min()
    lap = RNG.laplace(0, 1 / np.sqrt(2), N)
    lo_l, hi_l = observe("kl", lap)
    assert hi_l > 5.5 and lo_l < -5.5 and hi_l > hi + 1, (lo_l, hi_l)


def test_kl_clips_isolated_outliers():
    v = np.concatenate([RNG.standard_normal(N), [60.0, -45.0, 80.0]])
    lo, hi = kl_range(v, v.min(), v.max())
    assert 3 < hi < 10 and -10 < lo < -3, (lo, hi)


def test_kl_asymmetric_range_clips_both_ends_alike():
    """A signed, skewed tensor: both ends scaled by one factor, so the zero point stays put."""
    v = np.concatenate([-RNG.exponential(0.5, N // 4), RNG.exponential(2.0, N)])
    lo, hi = kl_range(v, v.min(), v.max())
    assert lo < 0 < hi < v.max()
    assert np.isclose(lo / hi, v.min() / v.max())


def test_kl_point_masses_do_not_drag_the_threshold_down():
    """mnist_cnn_bn's first conv output: ~40 % zeros and, per channel, one constant (its
    response to blank background). Held exactly at any threshold, these point masses must not
    pull the threshold down; TensorRT's plain histogram did: 0.95 of 4.87, 3 dB logit SQNR."""
    g = unfuse_conv_pool(float_graph(FIXTURES / "quant" / "mnist_cnn_bn.onnx"))
    xc = load_npz(FIXTURES / "quant" / "mnist_calib.npz")["x"][:100]
    calib = [{"x": s[None]} for s in xc]
    conv = g.nodes_of("Conv")[0].outputs[0]
    (lo, hi), (_, hi_mm) = (calibrate(g, calib, k, progress=False)[conv] for k in ("kl", "minmax"))
    assert lo == 0.0 and 0.8 * hi_mm < hi <= hi_mm, (hi, hi_mm)


def test_kl_keeps_a_saturated_relu6():
    """A mass at 6 (ReLU6 saturation) lies at the top: clipping it is judged, and costs."""
    r6 = np.minimum(np.maximum(RNG.normal(3, 2, N), 0), 6)
    assert kl_range(r6, 0.0, 6.0) == (0.0, 6.0)


def test_ksigma():
    v = np.concatenate([RNG.standard_normal(N), [100.0]])
    lo, hi = observe("ksigma", v)
    nz = v[v != 0]
    assert lo == v.min()  # mean - 8 sigma is below the minimum: clipped to it
    assert np.isclose(hi, nz.mean() + KSigma.K * nz.std()) and hi < 10
    # K is the documented 8; a smaller K clips a Gaussian's tail
    k3 = KSigma(3.0)
    k3.update(v)
    assert np.isclose(k3.range()[1], nz.mean() + 3 * nz.std())


@pytest.mark.parametrize("kind", ["kl", "ksigma", "mse", "percentile", "minmax"])
def test_relu_tensor_keeps_lo_zero(kind):
    v = np.maximum(RNG.laplace(0.2, 1.0, N), 0.0)
    lo, hi = observe(kind, v)
    assert lo == 0.0 and 0 < hi <= v.max(), (lo, hi)
    assert act_params(lo, hi, "fixed").zero_point[0] == -128  # all 256 levels on [0, hi]


@pytest.mark.parametrize("kind", sorted(OBSERVERS))
def test_all_zero_tensor_is_safe(kind):
    lo, hi = observe(kind, np.zeros(5000), chunks=3)
    assert (lo, hi) == (0.0, 0.0)
    assert act_params(lo, hi, "fixed").scale[0] > 0


@pytest.mark.parametrize("kind", ["kl", "ksigma"])
def test_observer_in_a_build(tmp_path, kind):
    """Ranges within min/max; the int8 build's C equals its integer reference."""
    p = model(tmp_path, "conv_relu_maxpool")
    calib = samples([1, 3, 8, 8], 6)
    mm = calibrate(float_graph(p), calib, "minmax", progress=False)
    got = calibrate(float_graph(p), calib, kind, progress=False)
    assert all(mm[t][0] - 1e-6 <= got[t][0] <= got[t][1] <= mm[t][1] + 1e-6 for t in mm)
    check_exact(build(p, tmp_path / "q", calib, observer=kind), calib[:3] + samples([1, 3, 8, 8], 2, seed=9))


@pytest.mark.parametrize("kind", sorted(OBSERVERS))
def test_one_pass_gives_both_ranges(tmp_path, kind):
    """calibrate_both (a mixed build's single pass): the observer's ranges and the min/max
    ones, each exactly what a pass of its own gives."""
    p = model(tmp_path, "conv_relu_maxpool")
    calib = samples([1, 3, 8, 8], 4)
    got, minmax = calibrate_both(float_graph(p), calib, kind, progress=False)
    assert got == calibrate(float_graph(p), calib, kind, progress=False)
    assert minmax == calibrate(float_graph(p), calib, "minmax", progress=False)
