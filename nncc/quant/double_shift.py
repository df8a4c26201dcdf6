"""`--scaling double-shift`: every requantization multiplier is alpha = 2^-n * (1 + t * 2^-d),
t in {-1, 0, +1}, i.e. 2^-n + 2^-m or 2^-n - 2^-m, applied with shifts and one add
(fixed_point.dshift_round, nncc_dshift_round in runtime_c/nncc_fixed.h). A code (n, e) with
e = t * d (e = 0: the single power 2^-n) is stored where `fixed` stores (shift, multiplier).

Why the signed second term: the values 2^k * {1, 1 + 2^-d, 2 - 2^-d, 2} have, within an octave,
a largest ratio between neighbours of 1.5 / 1.25 = 1.2 (plus-only: 2 / 1.5 = 1.33), so the
nearest one is off by at most (1.5 - 1.25) / (1.5 + 1.25) = 1/11 = 9.1 % (plus-only 1/7 = 14.3 %),
at the cost of a subtraction instead of an addition.

Where the scales come from: rounding a multiplier after the fact scales the whole output
channel by up to +-9.1 % (measured on the MNIST nets: -15 to -18 dB of logit SQNR,
tests/fixtures/quant/RESULTS.md). So, as `shift` does with powers of two, the scales are chosen
at calibration so that no conv / gemm multiplier is rounded. Activation scales start as
`fixed`'s (any real). raise_output then raises the output scale of every layer with weights
(QConv, QGemm, QConvTranspose, affine maps: rewrite.Rewriter.requant_consts) by < 1.2x (zero point
kept, so the range is still covered) until the layer's multiplier, with `fixed`'s weight scale
for its widest channel, is on the grid. Packed, every channel's scale is the layer's times 2^-k,
so all are exact (weight_params searches the grid values of the octave above the layer's
max/127 for the least rounding error: `fixed`'s own choice is among them). Unpacked, each other
channel's weight scale is raised (< 1.2x) to the next value on the grid. Raising the output
scale (costing <= 0.26 bit of that activation) measured better than raising only weight scales
(dsnet 31.1 vs 28.2 dB, ResNet-8 18.7 vs 16.5 dB). QAdd (add_params): the operand of the larger
scale is at exactly half the common scale, the Add's output scale is raised (< 1.2x) so its
requantization is exact; only the ratio of the two operand scales is rounded (<= 9.1 % error on
the smaller-scale branch; measured in tests/quant/test_double_shift.py).
"""
from __future__ import annotations

import math

import numpy as np

D_MAX = 20          # |e| <= 20: grid steps (>= 2^-20) far above float32 rounding (TOL)
N_MIN, N_MAX = -31, 62  # the total shift n + d is clamped to [-31, 62] by the kernels
GAP = 1.2           # the largest ratio between neighbouring grid values
MAX_REL_ERROR = 1 / 11
TOL = 2e-7  # scales are stored in float32: ratios on the grid up to ~1e-7


def _mantissas() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Grid values in [1, 2] with their codes (octave shift o, e): value = 2^o * (1 + sgn 2^-|e|)."""
    vals = [(1.0, (0, 0)), (2.0, (1, 0))]
    vals += [(1.0 + 2.0 ** -d, (0, d)) for d in range(1, D_MAX + 1)]
    vals += [(2.0 - 2.0 ** -d, (1, -(d + 1))) for d in range(2, D_MAX)]
    vals.sort()
    return np.array([v for v, _ in vals]), [c for _, c in vals]


MANTISSAS, CODES = _mantissas()


def value(n: int, e: int) -> float:
    """The multiplier of code (n, e)."""
    return 2.0 ** -n * (1.0 + (np.sign(e) * 2.0 ** -abs(e) if e else 0.0))


def encode(alpha: float, mode: str = "nearest") -> tuple[int, int]:
    """Code (n, e) of the grid value nearest alpha (absolute distance: relative error <= 1/11),
    or of the smallest grid value >= alpha ("ceil"), or the largest <= alpha ("floor")."""
    if alpha < 0 or not math.isfinite(alpha):
        raise ValueError(f"requantization scale {alpha} must be finite and >= 0")
    if alpha == 0.0:
        return N_MAX, 0
    q, exp = math.frexp(alpha)  # alpha = (2q) * 2^(exp - 1), 2q in [1, 2)
    m, k = 2.0 * q, exp - 1
    if mode == "ceil":  # a value on the grid up to float rounding is that value
        i = int(np.searchsorted(MANTISSAS, m * (1 - TOL), side="left"))
    elif mode == "floor":
        i = int(np.searchsorted(MANTISSAS, m * (1 + TOL), side="right")) - 1
    else:
        i = int(np.argmin(np.abs(MANTISSAS - m)))
    octave, e = CODES[i]
    n = -(k + octave)
    if n > N_MAX:  # below 2^-62: every int32 rounds to 0
        return N_MAX, 0
    return max(n, N_MIN), e


def encode_all(reals, mode: str = "nearest") -> tuple[np.ndarray, np.ndarray]:
    """encode over an array -> (n, e) int64 arrays."""
    codes = [encode(float(r), mode) for r in np.asarray(reals, np.float64).ravel()]
    return np.array([c[0] for c in codes], np.int64), np.array([c[1] for c in codes], np.int64)


def grid_values(lo: float, hi: float) -> np.ndarray:
    """All grid values in [lo, hi) (lo > 0)."""
    k = math.floor(math.log2(lo))
    out = np.concatenate([MANTISSAS * 2.0 ** (k + j) for j in range(int(math.log2(hi / lo)) + 2)])
    return np.unique(out[(out >= lo) & (out < hi)])


def grid_scale(scale: float, to_alpha: float) -> float:
    """The smallest weight scale >= `scale` whose multiplier scale * to_alpha (to_alpha =
    s_in / s_out) is on the grid."""
    return value(*encode(scale * to_alpha, "ceil")) / to_alpha


def weight_params(w: np.ndarray, s_in: float, s_out: float, packed: bool, per_channel: bool = True,
                  max_k: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """rewrite.weight_params for double-shift: (int8 weights, scales, k) with every channel's
    s_in * s_w / s_out exactly a grid value (module docstring)."""
    from .rewrite import MAX_K, channel_ranges, int8_weights, packed_scales
    flat, maxabs, layer = channel_ranges(w, per_channel)
    to_alpha = s_in / s_out
    if packed:
        base = layer / 127.0 * to_alpha
        factors = grid_values(base, 2.0 * base) / base
        scales, k = packed_scales(flat, maxabs, layer, factors, MAX_K if max_k is None else max_k)
    else:
        scales = np.array([grid_scale(m / 127.0, to_alpha) for m in maxabs])
        k = np.zeros(len(maxabs), np.int64)
    return int8_weights(flat, scales).reshape(w.shape), scales, k.astype(np.int64)


def raise_output(qp_out, w: np.ndarray, qp_in, packed: bool, per_channel: bool = True):
    """The output's QuantParams with its scale raised (by < GAP, zero point kept: the range
    still covered) so that the layer's multiplier s_in * s_layer / s_out is on the grid, s_layer
    the scale `fixed` gives the layer's widest channel. Packed, every channel is then exact with
    `fixed`'s own weight scales; unpacked, the other channels' remainders go to their weights."""
    from ..ir import QuantParams
    from .rewrite import weight_params as fixed_weight_params
    _, s_w, k = fixed_weight_params(w, "fixed", packed, per_channel)
    s_in, s_layer = qp_in.scale[0], float(np.max(s_w * 2.0 ** k))
    s_out = s_in * s_layer / value(*encode(s_in * s_layer / qp_out.scale[0], "floor"))
    return QuantParams((float(np.float32(s_out)),), qp_out.zero_point)


def add_params(sa: float, sb: float, so: float) -> tuple[dict, float]:
    """(QAdd attributes, output scale) of a double-shift QAdd (nncc/ops/quantized.py): operands
    (x - zp) << 20 times a_* / b_* codes into a common scale, the sum times the y_* code. The
    returned output scale (>= so, at most GAP x so) makes the y requantization exact."""
    twice = 2.0 * max(sa, sb)
    na, ea = encode(sa / twice)
    nb, eb = encode(sb / twice)
    ny, ey = encode(twice / ((1 << 20) * so), "floor")
    so_exact = twice / ((1 << 20) * value(ny, ey))
    return ({"a_mult": ea, "a_shift": na, "b_mult": eb, "b_shift": nb, "y_mult": ey,
             "y_shift": ny}, so_exact)
