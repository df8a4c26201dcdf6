"""nncc/quant/fixed_point.py (numpy) against runtime_c/nncc_fixed.h (C): exact equality on edge
values and random arrays, plus QuantizeMultiplier on hand-checked values."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nncc.quant import fixed_point as fp
from tests.quant.qutil import c_driver

HERE = Path(__file__).parent
EDGES = np.array([0, 1, -1, 2, -2, 3, -3, 127, -128, 255, -255, 2 ** 30, -(2 ** 30), 2 ** 31 - 1,
                  -(2 ** 31), 2 ** 31 - 2, -(2 ** 31) + 1, 12345, -12345], np.int64)


@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    ffi, lib = c_driver(tmp_path_factory.mktemp("fixed"), HERE / "fixed_driver.c", """
        void t_srdhm(const int32_t *, const int32_t *, int32_t *, int);
        void t_rdbpot(const int32_t *, const int32_t *, int32_t *, int);
        void t_mul_qm(const int32_t *, const int32_t *, const int32_t *, int32_t *, int);
        void t_shift_round(const int32_t *, const int32_t *, int32_t *, int);
        void t_requantize(const int32_t *, const int32_t *, const int32_t *, int32_t, int32_t,
                          int32_t, int32_t *, int);
        void t_requantize_r8(const int32_t *, const int32_t *, const int32_t *, int32_t, int32_t,
                             int32_t, int32_t *, int);
        void t_requantize_shift(const int32_t *, const int32_t *, int32_t, int32_t, int32_t,
                                int32_t *, int);
        void t_mul_r0_30(const int32_t *, const int32_t *, const int32_t *, int32_t *, int);
        void t_q8_30(const int32_t *, const int32_t *, const int32_t *, int32_t, int32_t *, int);
        void t_dshift_round(const int32_t *, const int32_t *, const int32_t *, int32_t *, int);
        void t_requantize_dshift(const int32_t *, const int32_t *, const int32_t *, int32_t,
                                 int32_t, int32_t, int32_t *, int);
        void t_div_round(const int32_t *, int32_t, int32_t *, int);
        void t_quantize(const float *, float, int32_t, int32_t *, int);
        void t_dequantize(const int32_t *, float, int32_t, float *, int);
    """)
    yield ffi, lib
    ffi.dlclose(lib)


def call(clib, name, *args, out_dtype=np.int32):
    """Call t_<name>(arrays and scalars..., y, n) with numpy arrays."""
    ffi, lib = clib
    n = next(len(a) for a in args if isinstance(a, np.ndarray))
    y = np.zeros(n, out_dtype)
    cargs = []
    for a in args:
        if isinstance(a, np.ndarray):
            a = np.ascontiguousarray(a, np.float32 if a.dtype.kind == "f" else np.int32)
            cargs.append(ffi.from_buffer("float[]" if a.dtype == np.float32 else "int32_t[]", a))
        else:
            cargs.append(a)
    getattr(lib, f"t_{name}")(*cargs, ffi.from_buffer("float[]" if y.dtype == np.float32 else "int32_t[]", y), n)
    return y


def rand_i32(rng, n):
    """Mixed magnitudes: small values, accumulator-sized values and the full int32 range."""
    bits = rng.integers(1, 32, n)
    return (rng.integers(-(2 ** 31), 2 ** 31, n, dtype=np.int64) >> (32 - bits)).astype(np.int32)


def pairs(rng, n=20000):
    e = EDGES.astype(np.int32)
    a = np.concatenate([np.repeat(e, len(e)), rand_i32(rng, n)])
    b = np.concatenate([np.tile(e, len(e)), rand_i32(rng, n)])
    return a, b


@pytest.mark.parametrize("real,expected", [
    (0.5, (1 << 30, 0)), (0.25, (1 << 30, -1)), (1.0, (1 << 30, 1)), (0.0, (0, 0)),
    (0.75, (3 << 29, 0)), (1.5, (3 << 29, 1)), (2.0 ** -40, (0, 0)), (1e12, (2 ** 31 - 1, 30)),
    (1 - 2.0 ** -33, (1 << 30, 1)),  # rounds up to 2^31: halved, shift + 1
])
def test_quantize_multiplier(real, expected):
    assert fp.quantize_multiplier(real) == expected


def test_quantize_multiplier_accuracy():
    rng = np.random.default_rng(0)
    for real in 10.0 ** rng.uniform(-8, 2, 500):
        m, s = fp.quantize_multiplier(real)
        assert 2 ** 30 <= m < 2 ** 31
        assert abs(m * 2.0 ** (s - 31) - real) <= real * 2.0 ** -30


def test_srdhm(clib):
    a, b = pairs(np.random.default_rng(1))
    np.testing.assert_array_equal(call(clib, "srdhm", a, b), fp.sat_rounding_doubling_high_mul(a, b))
    assert fp.sat_rounding_doubling_high_mul(-(2 ** 31), -(2 ** 31)) == 2 ** 31 - 1


def test_rdbpot(clib):
    rng = np.random.default_rng(2)
    x = np.concatenate([np.repeat(EDGES, 32), rand_i32(rng, 20000)]).astype(np.int32)
    e = np.concatenate([np.tile(np.arange(32), len(EDGES)), rng.integers(0, 32, 20000)]).astype(np.int32)
    np.testing.assert_array_equal(call(clib, "rdbpot", x, e), fp.rounding_divide_by_pot(x, e))
    # ties away from zero
    np.testing.assert_array_equal(fp.rounding_divide_by_pot([5, -5, 6, -6, 7, -7], 1), [3, -3, 3, -3, 4, -4])


def test_mul_qm_and_requantize(clib):
    rng = np.random.default_rng(3)
    x = rand_i32(rng, 30000)
    reals = 10.0 ** rng.uniform(-9, 3, 30000)
    m, s = fp.quantize_multipliers(reals)
    np.testing.assert_array_equal(call(clib, "mul_qm", x, m, s), fp.multiply_by_quantized_multiplier(x, m, s))
    for zp, lo, hi in [(0, -128, 127), (-128, -128, 127), (5, -128, 127), (-20, -20, 40)]:
        got = call(clib, "requantize", x, m, s, zp, lo, hi)
        np.testing.assert_array_equal(got, fp.requantize(x, m, s, zp, lo, hi, np.int32))


def test_requantize_r8(clib):
    """The int8 kernels' requantization (32-bit steps for a right shift) == requantize(), on edge
    accumulators, the whole int32 range, every right shift 0..31 and small multipliers."""
    rng = np.random.default_rng(4)
    x = np.concatenate([np.repeat(EDGES, 32), rand_i32(rng, 30000)]).astype(np.int32)
    m = np.concatenate([np.full(len(EDGES) * 32, 2 ** 31 - 1),
                        rng.integers(2 ** 30, 2 ** 31, 30000)]).astype(np.int32)
    m[:32] = -(2 ** 31)  # not a quantize_multiplier() value: the general path
    m[32:64] = 2 ** 30
    m[64:96] = 0
    m[-5000:] = rng.integers(0, 2 ** 30, 5000)  # no quantize_multiplier() value either: still exact
    s = -np.concatenate([np.tile(np.arange(32), len(EDGES)), rng.integers(0, 32, 30000)]).astype(np.int32)
    for zp, lo, hi in [(0, -128, 127), (-128, -128, 127), (5, -128, 127), (-20, -20, 40), (127, -128, 127)]:
        got = call(clib, "requantize_r8", x, m, s, zp, lo, hi)
        np.testing.assert_array_equal(got, fp.requantize(x, m, s, zp, lo, hi, np.int32))


def test_mul_r0_30(clib):
    """The shared int8 kernels' inline multiply (one rounding multiply-high for |x| < 2^30, then
    the rounding shift) == multiply_by_quantized_multiplier() for every right shift 0..31, on the
    edges of its range and random values."""
    rng = np.random.default_rng(6)
    lim = 2 ** 30 - 1
    edges = np.array([0, 1, -1, lim, -lim, lim - 1, -lim + 1, 2 ** 29, -(2 ** 29), 12345, -12345])
    x = np.concatenate([np.repeat(edges, 64), rng.integers(-lim, lim + 1, 40000)]).astype(np.int32)
    m = np.concatenate([np.tile([0, 1, 2 ** 30, 2 ** 31 - 1], len(edges) * 16),
                        rng.integers(0, 2 ** 31, 40000)]).astype(np.int32)
    r = np.concatenate([np.tile(np.arange(32), len(edges) * 2), rng.integers(0, 32, 40000)]).astype(np.int32)
    np.testing.assert_array_equal(call(clib, "mul_r0_30", x, m, r),
                                  fp.multiply_by_quantized_multiplier(x, m, -r))


def test_q8_30(clib):
    """nncc_q8_30() in portable C (the shared int8 kernels' requantization of a layer flagged q8
    off the DSP extension: the high word's rounding from the low word's bit 31, the zero point in
    the rounding term) == requantize() to the full int8 range over its whole domain: |acc| < 2^30,
    0 <= m < 2^31, right shifts 1..22, zero points at both ends and between."""
    rng = np.random.default_rng(9)
    lim = 2 ** 30 - 1
    edges = np.array([0, 1, -1, lim, -lim, 2 ** 29, -(2 ** 29), 12345, -12345])
    x = np.concatenate([np.repeat(edges, 88), rand_i32(rng, 40000) >> 2]).astype(np.int32)
    m = np.concatenate([np.tile([0, 1, 2 ** 30, 2 ** 31 - 1], len(edges) * 22),
                        rng.integers(0, 2 ** 31, 40000)]).astype(np.int32)
    r = np.concatenate([np.tile(np.arange(1, 23), len(edges) * 4), rng.integers(1, 23, 40000)]).astype(np.int32)
    for zp in (-128, -1, 0, 37, 127):
        np.testing.assert_array_equal(call(clib, "q8_30", x, m, r, zp),
                                      fp.requantize(x, m, -r, zp, -128, 127, np.int32))


def test_mul_qm_matches_real_multiplication():
    rng = np.random.default_rng(4)
    x = rng.integers(-(2 ** 20), 2 ** 20, 5000)
    reals = 10.0 ** rng.uniform(-6, 0, 5000)
    m, s = fp.quantize_multipliers(reals)
    got = fp.multiply_by_quantized_multiplier(x, m, s)
    assert np.max(np.abs(got - x * reals)) <= 1.0  # two roundings of at most 1/2 each


def test_shift_round(clib):
    rng = np.random.default_rng(5)
    x = np.concatenate([np.repeat(EDGES, 80), rand_i32(rng, 20000)]).astype(np.int32)
    s = np.concatenate([np.tile(np.arange(-40, 40), len(EDGES)), rng.integers(-12, 32, 20000)]).astype(np.int32)
    np.testing.assert_array_equal(call(clib, "shift_round", x, s), fp.shift_round(x, s))
    for zp, lo, hi in [(0, -128, 127), (-128, -128, 127), (3, 3, 100)]:
        np.testing.assert_array_equal(call(clib, "requantize_shift", x, s, zp, lo, hi),
                                      fp.requantize_shift(x, s, zp, lo, hi, np.int32))
    # a power-of-two multiplier is an exact shift: same numbers as the real product rounded
    small = rng.integers(-(2 ** 20), 2 ** 20, 1000)
    np.testing.assert_array_equal(fp.shift_round(small, 3), np.sign(small) * np.floor(np.abs(small) / 8 + 0.5))


def test_dshift_round(clib):
    rng = np.random.default_rng(8)
    x = np.concatenate([np.repeat(EDGES, 60), rand_i32(rng, 30000)]).astype(np.int32)
    n = np.concatenate([np.tile(np.arange(-35, 65, 5), 3 * len(EDGES)), rng.integers(-33, 66, 30000)])
    e = np.concatenate([np.repeat(np.arange(-31, 32, 21), 20 * len(EDGES)), rng.integers(-33, 34, 30000)])
    n, e = n.astype(np.int32), e.astype(np.int32)
    np.testing.assert_array_equal(call(clib, "dshift_round", x, n, e), fp.dshift_round(x, n, e))
    for zp, lo, hi in [(0, -128, 127), (-128, -128, 127), (3, 3, 100)]:
        np.testing.assert_array_equal(call(clib, "requantize_dshift", x, n, e, zp, lo, hi),
                                      fp.requantize_dshift(x, n, e, zp, lo, hi, np.int32))


def test_dshift_round_is_the_exact_product_rounded():
    """Against exact rational arithmetic: round(x * (2^-n + sign(e) 2^-(n+|e|))), ties away."""
    from fractions import Fraction
    rng = np.random.default_rng(9)
    x = rand_i32(rng, 3000)
    n, e = rng.integers(-3, 40, 3000), rng.integers(-30, 31, 3000)
    got = fp.dshift_round(x, n, e)
    for xi, ni, ei, g in zip(x.tolist(), n.tolist(), e.tolist(), got.tolist()):
        real = Fraction(xi) * Fraction(2) ** -ni * (1 + (Fraction(2) ** -abs(ei) * (1 if ei > 0 else -1) if ei else 0))
        want = (1 if real >= 0 else -1) * int(abs(real) + Fraction(1, 2))
        assert g == max(min(want, 2 ** 31 - 1), -(2 ** 31)), (xi, ni, ei)


def test_div_round(clib):
    rng = np.random.default_rng(6)
    x = rng.integers(-(2 ** 24), 2 ** 24, 5000).astype(np.int32)
    for d in (1, 2, 3, 9, 125, 1000):
        np.testing.assert_array_equal(call(clib, "div_round", x, d), fp.div_round(x, d))


def test_quantize_dequantize(clib):
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.standard_normal(20000) * 10, np.arange(-200, 200) * 0.05,
                        [np.inf, -np.inf, np.nan, 0.0, -0.0]]).astype(np.float32)
    for scale, zp in [(0.05, 0), (0.1, -128), (0.0234, 17), (2.0 ** -5, -3)]:
        q = call(clib, "quantize", x, scale, zp)
        np.testing.assert_array_equal(q, fp.quantize_float(x, scale, zp, dtype=np.int32))
        d = call(clib, "dequantize", q, scale, zp, out_dtype=np.float32)
        np.testing.assert_array_equal(d, fp.dequantize(q, scale, zp))


def test_pot_exponent():
    assert fp.pot_exponent(1.0) == 0 and fp.pot_exponent(0.3) == -1 and fp.pot_exponent(0.25) == -2
    with pytest.raises(ValueError):
        fp.pot_exponent(0.0)
