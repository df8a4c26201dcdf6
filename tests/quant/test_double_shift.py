"""`--scaling double-shift` (nncc/quant/double_shift.py): the grid 2^-n * (1 +- 2^-d) and its
error bounds, scales chosen at calibration so that every conv / gemm multiplier is exactly on
the grid, and the one rounded ratio of a QAdd measured on the int8 MLPerf IC (ResNet-8). The C
kernels' bit exactness is tested with the other scalings (test_quant_ops, test_inplace_q,
test_fuse_qadd, test_fixed_point)."""
from __future__ import annotations

import numpy as np
import pytest

from nncc.ir import QuantParams, TensorInfo
from nncc.npzio import load_npz
from nncc.quant import double_shift as ds
from nncc.quant import fixed_point as fp
from nncc.quant.quantize import QuantOptions, quantize
from nncc.quant.rewrite import weight_params
from nncc.reference import run_reference
from tests.quant.qutil import accuracy, build, check_exact, float_graph, sqnr_db
from tests.quant.test_fuse_qadd import IC
from tests.util import FIXTURES, mlperf_inputs

QDIR = FIXTURES / "quant"

RNG = np.random.default_rng(21)
ALPHAS = 10.0 ** RNG.uniform(-8, 2, 20000)


def on_grid(x: float) -> bool:
    return np.isclose(ds.value(*ds.encode(x)), x, rtol=1e-9, atol=0)


def rel_errors(codes, alphas):
    return np.array([ds.value(n, e) for n, e in zip(*codes)]) / alphas - 1


def test_nearest_error_bound_is_one_eleventh():
    err = np.abs(rel_errors(ds.encode_all(ALPHAS), ALPHAS))
    assert err.max() <= ds.MAX_REL_ERROR + 1e-12
    assert err.max() > 0.085  # the bound is reached (near 1.375 * 2^k)
    worst = 1.375 * 2.0 ** -7
    assert np.isclose(abs(ds.value(*ds.encode(worst)) / worst - 1), 1 / 11)


def test_signed_second_term_beats_plus_only():
    """Plus-only grid {1, 1 + 2^-d, 2}: nearest is off by up to 1/7 (14.3 %), vs 1/11 signed."""
    plus = np.array([1.0, 2.0] + [1 + 2.0 ** -d for d in range(1, 31)])
    m = ALPHAS / 2.0 ** np.floor(np.log2(ALPHAS))
    err = np.min(np.abs(plus[None, :] - m[:, None]), axis=1) / m
    assert 0.13 < err.max() <= 1 / 7 + 1e-12


def test_ceil_and_floor():
    for a in ALPHAS[:3000]:
        c, f = ds.value(*ds.encode(a, "ceil")), ds.value(*ds.encode(a, "floor"))
        assert a <= c <= a * ds.GAP * (1 + 1e-12) and a / ds.GAP * (1 - 1e-12) <= f <= a


def test_grid_values_encode_exactly():
    for k in (-20, -3, 0, 5):
        for v in ds.MANTISSAS * 2.0 ** k:
            for mode in ("nearest", "ceil", "floor"):
                assert ds.value(*ds.encode(v, mode)) == v
    # shifts stay in the kernels' range; 0 and huge values are handled
    assert ds.encode(0.0) == (ds.N_MAX, 0) and ds.encode(1e-30)[0] == ds.N_MAX
    assert ds.encode(2.0 ** 40)[0] == ds.N_MIN
    with pytest.raises(ValueError):
        ds.encode(-1.0)


@pytest.mark.parametrize("packed", [False, True])
def test_weight_scales_put_every_multiplier_on_the_grid(packed):
    w = RNG.standard_normal((24, 3, 3, 3)) * RNG.uniform(0.01, 2.0, (24, 1, 1, 1))
    w[5] = 0.0  # an all-zero channel
    s_in, s_out = 0.0123, 0.0871
    q, scales, k = ds.weight_params(w, s_in, s_out, packed)
    maxabs = np.abs(w.reshape(24, -1)).max(axis=1)
    covered = np.where(maxabs > 0, maxabs, maxabs.max()) / 127
    assert np.all(scales >= covered * (1 - 1e-9))  # ranges still fit in [-127, 127]
    assert all(on_grid(s_in * s / s_out) for s in scales)
    if packed:
        assert np.allclose(scales * 2.0 ** k, scales[0] * 2.0 ** k[0])  # one layer scale
    else:
        assert np.all(scales <= covered * ds.GAP * (1 + 1e-9))
    err = np.abs(q.astype(np.float64) * scales[:, None, None, None] - w).max()
    assert err <= scales.max() / 2 + 1e-12


def test_raise_output_makes_the_layer_exact():
    w = RNG.standard_normal((8, 4, 3, 3))
    for s_in, s_out in [(0.01, 0.05), (0.3, 0.0021), (2.0 ** -7, 2.0 ** -5)]:
        qp = ds.raise_output(QuantParams((s_out,), (-128,)), w, QuantParams((s_in,), (3,)), True)
        assert qp.zero_point == (-128,) and s_out <= qp.scale[0] * (1 + 1e-7) <= s_out * ds.GAP
        _, s_w, k = weight_params(w, "fixed", True)  # fixed's own weight scales stay exact
        assert np.isclose(ds.value(*ds.encode(s_in * s_w[0] * 2.0 ** k[0] / qp.scale[0])),
                          s_in * s_w[0] * 2.0 ** k[0] / qp.scale[0], rtol=1e-6)


def test_qadd_rounding_on_resnet8(tmp_path):
    """Each residual Add (unfused, to see its operands): the larger-scale operand and the
    output exactly on the grid, the other operand's ratio rounded (<= 1/11; printed). C ==
    reference; output SQNR vs float within 6.5 dB of the fixed build's (printed with shift's)."""
    calib, test = mlperf_inputs(IC.stem, 6, 0), mlperf_inputs(IC.stem, 10, 1)
    res = build(IC, tmp_path / "ds", calib, "double-shift", fuse_add=False)
    outs = check_exact(res, test)
    g, errs = res.graph, []
    for node in g.nodes_of("QAdd"):
        p = node.attrs
        sa, sb, so = (g.tensors[t].quant.scale[0] for t in (*node.inputs, node.outputs[0]))
        twice = 2 * max(sa, sb)
        a_val, b_val = ds.value(p["a_shift"], p["a_mult"]), ds.value(p["b_shift"], p["b_mult"])
        assert (a_val if sa >= sb else b_val) == 0.5
        assert np.isclose(ds.value(p["y_shift"], p["y_mult"]) * (1 << 20) * so, twice, rtol=1e-6)
        errs.append((b_val if sa >= sb else a_val) / (min(sa, sb) / twice) - 1)
    print(f"\nresnet8 double-shift QAdd operand ratio errors: {np.round(errs, 4).tolist()}")
    assert len(errs) == 3 and max(abs(e) for e in errs) <= ds.MAX_REL_ERROR + 1e-9
    sqnr = {"double-shift": accuracy(IC, res, test, outs)["sqnr_db"]}
    for scaling in ("fixed", "shift"):
        r = build(IC, tmp_path / scaling, calib, scaling, fuse_add=False)
        sqnr[scaling] = accuracy(IC, r, test, check_exact(r, test))["sqnr_db"]
    print("resnet8 output SQNR (dB):", {k: round(v, 1) for k, v in sqnr.items()})
    # measured double-shift / fixed / shift 16.2 / 19.9 / 15.7 dB on these 10 random images
    # (each residual block ~1.5 dB below fixed, every output scale raised by up to 1.2x). The
    # order of the three is noise: on 40 other images (seeds 1, 2, 9) 16.7 / 18.7 / 16.3,
    # 17.4 / 21.3 / 20.8, 18.9 / 18.1 / 20.1 dB; so only the gap to fixed is asserted.
    assert sqnr["fixed"] - 6.5 < sqnr["double-shift"]


def rounded_after_the_fact(q, mode: str) -> float:
    """Replace every multiplier of an unpacked `fixed` graph q (in place) by its nearest
    double-shift or power of two -> the largest relative error made."""
    worst = 0.0
    for node in q.nodes():
        if node.op not in ("QConv", "QGemm"):
            continue
        m_t, s_t = node.inputs[3], node.inputs[4]
        real = q.const(m_t).astype(np.float64) * 2.0 ** (q.const(s_t).astype(np.float64) - 31)
        if mode == "double-shift":
            n, e = ds.encode_all(real)
        else:
            n, e = -np.floor(np.log2(real) + 0.5).astype(np.int64), np.zeros(len(real), np.int64)
        worst = max(worst, float(np.max(np.abs(rel_errors((n, e), real)))))
        q.tensors[m_t] = TensorInfo(m_t, e.shape, "int8", e.astype(np.int8))
        q.tensors[s_t] = TensorInfo(s_t, n.shape, "int8", n.astype(np.int8))
        node.attrs["scaling"] = mode
    return worst


@pytest.mark.slow
@pytest.mark.parametrize("name", ["mnist_cnn_bn", "mnist_dsnet"])
def test_rounding_after_the_fact_costs_accuracy(name):
    """The issue's point, measured on the trained MNIST nets (integer reference, 1000 held-out
    digits): rounding `fixed`'s multipliers to double-shifts after the fact (<= 9.1 % off) costs
    far more logit SQNR than choosing the scales at calibration; to single shifts (<= 41 %)
    more still. Printed for RESULTS.md."""
    path = QDIR / f"{name}.onnx"
    g = float_graph(path)
    xc, x, y = (load_npz(QDIR / f)[k] for f, k in [("mnist_calib.npz", "x"), ("mnist_heldout.npz", "x"),
                                                   ("mnist_heldout.npz", "y")])
    calib = [{"x": s[None]} for s in xc]
    ref = np.stack([run_reference(g, {"x": s[None]})[g.outputs[0]][0] for s in x])
    rows = {}
    for label, scaling, after in [("fixed, unpacked", "fixed", None),
                                  ("double-shift chosen at calibration", "double-shift", None),
                                  ("fixed rounded to double-shift", "fixed", "double-shift"),
                                  ("fixed rounded to shift", "fixed", "shift")]:
        q = quantize(g, QuantOptions(samples=calib, scaling=scaling, packed=after is None and
                                     scaling != "fixed"))
        err = rounded_after_the_fact(q, after) if after else 0.0
        qi, qo = q.tensors["x"].quant, q.tensors[q.outputs[0]].quant
        out = np.stack([fp.dequantize(run_reference(q, {"x": fp.quantize_float(
            s[None], qi.scale[0], qi.zero_point[0])})[q.outputs[0]], qo.scale[0], qo.zero_point[0])[0]
            for s in x])
        rows[label] = (100 * np.mean(out.argmax(1) == y), sqnr_db(ref, out), err)
    print(f"\n{name}: float top-1 {100 * np.mean(ref.argmax(1) == y):.1f}")
    for k, (top1, sq, err) in rows.items():
        print(f"  {k:36s} top-1 {top1:.1f}  logit SQNR {sq:.1f} dB  max multiplier error {err:.3f}")
    assert rows["fixed rounded to double-shift"][2] <= ds.MAX_REL_ERROR + 1e-9
    calibrated = rows["double-shift chosen at calibration"][1]
    assert rows["fixed rounded to double-shift"][1] < calibrated - 5
    assert rows["fixed rounded to shift"][1] < rows["fixed rounded to double-shift"][1]
