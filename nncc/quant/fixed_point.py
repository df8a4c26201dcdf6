"""Fixed-point arithmetic of the quantized kernels: real scale -> (int32 multiplier, shift), and a
numpy mirror of runtime_c/nncc_fixed.h that is bit-exact with it.

The formulas are TFLite's (`QuantizeMultiplier`, `SaturatingRoundingDoublingHighMul`,
`RoundingDivideByPOT`, `MultiplyByQuantizedMultiplier`), which CMSIS-NN's `arm_nn_requantize`
also implements, so our int8 numbers can be compared with theirs. One deliberate difference:
the left shift of a multiplier > 1 saturates instead of overflowing (undefined in TFLite).

`--scaling shift` does not round multipliers after the fact (that costs tens of accuracy points):
calibration picks every weight and activation scale as a power of two, so that
s_in * s_w / s_out = 2^-n exactly and requantization is one rounding shift, no multiply.
`--scaling double-shift` (quant/double_shift.py): multipliers 2^-n * (1 +- 2^-d), applied as
((x << d) +- x) rounded-shifted right by n + d in int64 (dshift_round): shifts and one add.
"""
from __future__ import annotations

import math

import numpy as np

INT32_MIN, INT32_MAX = -(2 ** 31), 2 ** 31 - 1


# -- scale -> multiplier ---------------------------------------------------------------------
def quantize_multiplier(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier: real = m * 2^(shift - 31), m in [2^30, 2^31) (or 0).
    shift > 0 means a left shift (real >= 1)."""
    if real < 0 or not math.isfinite(real):
        raise ValueError(f"requantization scale {real} must be finite and >= 0")
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)  # real = q * 2^shift, q in [0.5, 1)
    # std::round (ties away from zero); q * 2^31 + 0.5 is exact in a double.
    m = math.floor(q * (1 << 31) + 0.5)
    if m == 1 << 31:
        m //= 2
        shift += 1
    if shift < -31:  # too small to matter: everything rounds to 0
        return 0, 0
    if shift > 30:   # as TFLite: saturate the multiplier rather than overflow
        return INT32_MAX, 30
    return int(m), int(shift)


def quantize_multipliers(reals) -> tuple[np.ndarray, np.ndarray]:
    """quantize_multiplier over an array -> (int32 multipliers, int32 shifts)."""
    pairs = [quantize_multiplier(float(r)) for r in np.asarray(reals, np.float64).ravel()]
    return (np.array([p[0] for p in pairs], np.int32), np.array([p[1] for p in pairs], np.int32))


def pot_exponent(real: float) -> int:
    """The n with 2^n >= real > 2^(n-1): the smallest power-of-two scale covering `real`."""
    if real <= 0 or not math.isfinite(real):
        raise ValueError(f"scale {real} must be finite and > 0")
    return math.ceil(math.log2(real))


def round_scale(real: float, scaling: str) -> float:
    """The scale `scaling` gives a quantity needing `real` per step: with "shift" the power of
    two at or above it (so every requantization is a shift), else `real` itself (fixed:
    any real; double-shift puts its grid in the weight and output scales, double_shift.py)."""
    return 2.0 ** pot_exponent(real) if scaling == "shift" else real


def requant_code(real: float, scaling: str) -> tuple[int, int]:
    """(multiplier, shift) of one requantization by `real`: with "shift" (real a power of two)
    (0, -log2 real) clamped to the kernels' [-31, 31]; else quantize_multiplier's."""
    if scaling == "shift":
        return 0, int(np.clip(np.rint(-np.log2(real)), -31, 31))
    return quantize_multiplier(real)


# -- the integer primitives (mirror of runtime_c/nncc_fixed.h) -------------------------------
def _i64(x) -> np.ndarray:
    return np.asarray(x).astype(np.int64)


def _trunc_div_pow2(v: np.ndarray, n: int) -> np.ndarray:
    """C's `v / 2^n` on int64 (truncates toward zero), not Python's floor."""
    return np.where(v >= 0, v >> n, -((-v) >> n))


def sat_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """round(a * b / 2^31) with ties away from zero; INT32_MIN * INT32_MIN saturates."""
    a, b = _i64(a), _i64(b)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    res = _trunc_div_pow2(ab + nudge, 31)
    res = np.where((a == INT32_MIN) & (b == INT32_MIN), INT32_MAX, res)
    return res.astype(np.int32)


def _rdbpot64(x, exponent) -> np.ndarray:
    """int64 x / 2^exponent rounded to nearest, ties away from zero; exponent in [0, 62]."""
    x, e = _i64(x), _i64(exponent)
    mask = (np.int64(1) << e) - 1
    return (x >> e) + ((x & mask) > (mask >> 1) + (x < 0))


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """x / 2^exponent rounded to nearest, ties away from zero; exponent in [0, 31]."""
    return _rdbpot64(x, exponent).astype(np.int32)


def saturating_left_shift(x, shift) -> np.ndarray:
    """x * 2^shift clamped to int32 (shift in [0, 31])."""
    v = _i64(x) << _i64(shift)
    return np.clip(v, INT32_MIN, INT32_MAX).astype(np.int32)


def multiply_by_quantized_multiplier(x, multiplier, shift) -> np.ndarray:
    """x * real where (multiplier, shift) = quantize_multiplier(real): TFLite / CMSIS-NN."""
    shift = _i64(shift)
    left = np.maximum(shift, 0)
    right = np.maximum(-shift, 0)
    return rounding_divide_by_pot(
        sat_rounding_doubling_high_mul(saturating_left_shift(x, left), multiplier), right)


def shift_round(x, shift) -> np.ndarray:
    """x * 2^-shift: a rounding right shift (ties away from zero) for shift > 0, a saturating
    left shift for shift < 0. The whole requantization of `--scaling shift`."""
    shift = _i64(shift)
    right = rounding_divide_by_pot(x, np.clip(shift, 0, 31))
    left = saturating_left_shift(x, np.clip(-shift, 0, 31))
    return np.where(shift >= 0, right, left).astype(np.int32)


def dshift_round(x, n, e) -> np.ndarray:
    """x * 2^-n * (1 + sign(e) 2^-|e|) rounded to nearest, ties away from zero, saturated to
    int32 (e = 0: x * 2^-n): v = (x << d) + sign(e) x exactly in int64 (d = |e| <= 31), then a
    rounding right shift by n + d (clamped to 62), or a saturating left shift below 0."""
    x, n, e = _i64(x), _i64(n), _i64(e)
    d = np.minimum(np.abs(e), 31)
    v = (x << d) + np.sign(e) * x
    r = np.clip(n + d, -31, 62)
    right = _rdbpot64(v, np.maximum(r, 0))
    left = np.clip(v, INT32_MIN, INT32_MAX) << np.maximum(-r, 0)
    return np.clip(np.where(r >= 0, right, left), INT32_MIN, INT32_MAX).astype(np.int32)


def div_round(n, d) -> np.ndarray:
    """n / d rounded to nearest, ties away from zero (d > 0), as C's nncc_div_round()."""
    n, d = _i64(n), _i64(d)
    return np.where(n >= 0, (n + d // 2) // d, -((-n + d // 2) // d)).astype(np.int32)


def div_round_even(n, d) -> np.ndarray:
    """n / d rounded to nearest, ties to even (d > 0), as C's nncc_div_round_even()."""
    n, d = _i64(n), _i64(d)
    q = np.floor_divide(n, d)
    r2 = 2 * (n - q * d)
    return (q + ((r2 > d) | ((r2 == d) & (q % 2 == 1)))).astype(np.int32)


def clamp(x, lo: int, hi: int) -> np.ndarray:
    return np.clip(_i64(x), lo, hi)


def requantize(acc, multiplier, shift, zero_point: int, lo: int, hi: int,
               dtype=np.int8) -> np.ndarray:
    """int32 accumulator -> output integer: scale by the fixed-point multiplier, add the output
    zero point (saturating) and clamp to [lo, hi] (the type's range narrowed by a fused ReLU)."""
    v = _i64(multiply_by_quantized_multiplier(acc, multiplier, shift)) + zero_point
    return clamp(v, lo, hi).astype(dtype)


def requantize_shift(acc, shift, zero_point: int, lo: int, hi: int, dtype=np.int8) -> np.ndarray:
    v = _i64(shift_round(acc, shift)) + zero_point
    return clamp(v, lo, hi).astype(dtype)


def requantize_dshift(acc, n, e, zero_point: int, lo: int, hi: int, dtype=np.int8) -> np.ndarray:
    v = _i64(dshift_round(acc, n, e)) + zero_point
    return clamp(v, lo, hi).astype(dtype)


# -- float <-> integer at the graph boundary --------------------------------------------------
def quantize_float(x, scale: float, zero_point: int, lo: int = -128, hi: int = 127,
                   dtype=np.int8) -> np.ndarray:
    """q = clamp(round(x / scale) + zp), in float32 with ties away from zero: the same float
    operations, in the same order, as nncc_quantize_f32() in nncc_fixed.h."""
    v = np.asarray(x, np.float32) / np.float32(scale)
    v = np.where(v >= 0, np.floor(v + np.float32(0.5)), np.ceil(v - np.float32(0.5))).astype(np.float32)
    v = v + np.float32(zero_point)
    v = np.minimum(np.maximum(v, np.float32(lo)), np.float32(hi))
    return np.nan_to_num(v, nan=float(zero_point)).astype(dtype)


def dequantize(q, scale: float, zero_point: int) -> np.ndarray:
    """x = (q - zp) * scale in float32, as nncc_dequantize_f32()."""
    return (np.asarray(q, np.int32) - np.int32(zero_point)).astype(np.float32) * np.float32(scale)
