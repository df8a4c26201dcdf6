"""int16 activations (TFLite's "16x8" scheme): the parameters and the 64-bit requantization.

- int16 activations are symmetric, zero point 0: [-max|x|, max|x|] onto [-32767, 32767] (the
  type's -32768 stays reachable by saturation only), as TFLite's 16x8 quantization; an unsigned
  range would win one bit on ReLU outputs but the symmetric form keeps every int16 kernel free of
  zero-point arithmetic, and at 16 bits one bit is 6 dB below an already ~90 dB floor;
- weights stay int8 per channel with exactly the int8 build's values and scales
  (rewrite.weight_params), only stored unpacked (a kernel reading int16 is never in the packed
  form). So an int16 layer differs from its int8 form by its activations alone: the automatic
  search (auto.py) compares like with like, and int16 never loses to int8 by a luckier weight
  rounding. (Measured: TFLite's plain max|w|/127 scales move the output SQNR by -6 to +5 dB per
  model against these -- weight rounding luck, which would drown the activations' effect);
- a kernel reading int16 activations accumulates in int64 with an int64 bias. Bound (checked by
  QConv / QGemm.infer, MAX_TERMS_16): |x| <= 32768 and |w| <= 127, so K terms sum to at most
  K * 2^22 < 2^46 for K < 2^24, and the bias is clipped to +-2^46 (BIAS_LIMIT): |acc| < 2^47.
  An int32 accumulator would already overflow at K = 517 terms (one 3x3x64 conv);
- the int64 accumulator is requantized as TFLite's 16x8 kernels do it: the multiplier is rounded
  to 16 bits (rm = round(m / 2^16) <= 2^15) so acc * rm < 2^62 fits int64, then one rounding
  right shift by 15 - shift (requantize64). `--scaling shift` shifts acc directly (requantize64_shift).

Each function mirrors one in runtime_c/nncc_fixed.h bit for bit (tests/quant/test_int16.py).
"""
from __future__ import annotations

import numpy as np

from ..dtypes import int_range
from ..ir import QuantParams
from . import fixed_point as fp

RANGES = {d: int_range(d) for d in ("int8", "int16")}  # the quantized types
MAX_TERMS_16 = (1 << 24) - 1
BIAS_LIMIT = 1 << 46
ZERO_RANGE_SCALE = 2.0 ** -15


def qrange(dtype: str) -> tuple[int, int]:
    return RANGES[str(dtype)]


def sym_params(lo: float, hi: float, scaling: str) -> QuantParams:
    """Symmetric int16 parameters covering [lo, hi] and 0 (zero point 0)."""
    m = max(abs(float(lo)), abs(float(hi)))
    scale = fp.round_scale(m / 32767.0, scaling) if m > 0.0 else ZERO_RANGE_SCALE
    return QuantParams((float(np.float32(scale)),), (0,))


def _round_shift64(v: np.ndarray, total: np.ndarray) -> np.ndarray:
    """v * 2^-total: rounding half up for total > 0 (an arithmetic shift, as the C), else a left
    shift of v clamped to +-2^31 first (the result is clamped to 16 bits anyway)."""
    total = np.asarray(total, np.int64)
    right = np.clip(total, 1, 62)
    r = (v + (np.int64(1) << (right - 1))) >> right
    left = np.clip(v, -(1 << 31), 1 << 31) << np.clip(-total, 0, 31)
    return np.where(total > 0, r, left)


def requantize64(acc, multiplier, shift, zero_point: int, lo: int, hi: int, dtype) -> np.ndarray:
    """int64 accumulator * (multiplier, shift) of quantize_multiplier, + zp, clamped."""
    acc = np.asarray(acc, np.int64)
    rm = (np.asarray(multiplier, np.int64) + (1 << 15)) >> 16
    v = _round_shift64(acc * rm, 15 - np.asarray(shift, np.int64))
    return np.clip(v + zero_point, lo, hi).astype(dtype)


def requantize64_shift(acc, shift, zero_point: int, lo: int, hi: int, dtype) -> np.ndarray:
    """int64 accumulator * 2^-shift + zp, clamped (`--scaling shift`)."""
    v = _round_shift64(np.asarray(acc, np.int64), np.asarray(shift, np.int64))
    return np.clip(v + zero_point, lo, hi).astype(dtype)
