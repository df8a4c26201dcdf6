"""Winograd F(2x2, 3x3) for int8 3x3 convolutions: the QConv kernel "winograd" (`--winograd`,
chosen by nncc/lower.py), one shared function (templates/ops/qconv/wino.c.j2).

A 2x2 output tile is A^T [sum over ci of U (.) V] A, with V = B^T d B of its 4x4 input patch d
(x - x_zp, 0 outside the input) and U the transformed 3x3 weights. G has halves, so the weights
are transformed with G' = 2 G, which is integer: U' = G' w G'^T = 4 U, and the tile comes out
as 4 y exactly. Every step is integer and exact (sums_fit() bounds them), so y = (4 y) >> 2 is
the direct convolution's sum bit for bit, and the requantization that follows is the same.
16 products per tile and input channel instead of 36. U' needs 11 bits and V 11 (|V| <= 4 *
255), so both are int16: one SMLAD per 2 products on cores with the DSP extension, no widening
in the loop. The cost is flash: 16 int16 per channel pair and tap window instead of 9 int8
(3.6x the layer's weights), which is why the kernel is asked for, not chosen by default."""
from __future__ import annotations

import numpy as np

BT = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.int64)
G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], np.int64)
AT = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.int64)
V_MAX = 4 * 255  # |V|: two terms of |x - x_zp| <= 255 a row, two a column
MIN_CHANNELS = 8  # fewer input or output channels: the transforms cost more than they save


def _align8(n: int) -> int:
    return (n + 7) & ~7


def transform_weights(w: np.ndarray) -> np.ndarray:
    """(M, C, 3, 3) int8 -> U' = G' w G'^T, (M, C, 4, 4) int64 (4 times G w G^T)."""
    return np.einsum("ij,mcjk,lk->mcil", G2, w.astype(np.int64), G2)


def wino_weights(w: np.ndarray) -> np.ndarray:
    """The kernel's int16 weights: per output channel pair (an odd count's last paired with
    zeros), per element xi of the 4x4 tile, per input channel pair (C padded with zeros to a
    multiple of 8), the first channel's two U' then the second's: one LDRD gives a step's
    words of both channels."""
    m, c = w.shape[:2]
    u = transform_weights(w).reshape(m, c, 16)
    padded = np.zeros((m + m % 2, _align8(c), 16), np.int64)
    padded[:m, :c] = u
    laid = padded.reshape(-1, 2, padded.shape[1] // 2, 2, 16).transpose(0, 4, 2, 1, 3)
    return np.ascontiguousarray(laid).astype(np.int16)


def sums_fit(w: np.ndarray) -> bool:
    """Every partial sum the kernel forms fits int32 for any input: a tile element's sum over
    the input channels is bounded by V_MAX * sum |U'|, and the output transform adds at most
    all 16 of them."""
    u = np.abs(transform_weights(w)).reshape(w.shape[0], w.shape[1], 16)
    return int((V_MAX * u.sum(axis=1)).sum(axis=1).max(initial=0)) < 2 ** 31


def geometry_ok(ctx: dict) -> bool:
    """A 2-D 3x3 window at stride 1, dilation 1, group 1, with enough channels."""
    g = ctx["g"]
    return (ctx["group"] == 1 and g["k"] == (1, 3, 3) and g["s"] == (1, 1, 1) and g["d"] == (1, 1, 1)
            and g["i"][0] == 1 and min(ctx["C"], ctx["M"]) >= MIN_CHANNELS)


def scratch_bytes(c: int) -> int:
    """The kernel's scratch: a tile quad's V (16 elements x C/2 pairs x 4 tiles, 4 bytes each:
    128 bytes a channel, C padded to a multiple of 8), a channel pair's 16 x 8 sums and its 2 x 16
    outputs of the quad (int32)."""
    return 128 * _align8(c) + 4 * (128 + 32)


def winograd_conv(xd: np.ndarray, w: np.ndarray, pads: tuple[int, int, int, int]) -> np.ndarray:
    """The kernel's integers in numpy: xd (N, C, H, W) = x - x_zp, w (M, C, 3, 3), pads (top,
    left, bottom, right) -> the int64 sums (N, M, OH, OW), as the direct convolution's."""
    n, c, h, wd = xd.shape
    top, left, bottom, right = pads
    oh, ow = h + top + bottom - 2, wd + left + right - 2
    th, tw = (oh + 1) // 2, (ow + 1) // 2
    xp = np.zeros((n, c, 2 * th + 2, 2 * tw + 2), np.int64)  # zeros outside, as the kernel reads
    xp[:, :, top:top + h, left:left + wd] = xd[:, :, :2 * th + 2 - top, :2 * tw + 2 - left]
    u = transform_weights(w)
    y = np.zeros((n, w.shape[0], 2 * th, 2 * tw), np.int64)
    for ty in range(th):
        for tx in range(tw):
            d = xp[:, :, 2 * ty:2 * ty + 4, 2 * tx:2 * tx + 4]
            v = np.einsum("ij,ncjk,lk->ncil", BT, d, BT)
            m = np.einsum("mcil,ncil->nmil", u, v)
            y4 = np.einsum("ij,nmjk,lk->nmil", AT, m, AT)
            assert not (y4 & 3).any()  # 4 y exactly
            y[:, :, 2 * ty:2 * ty + 2, 2 * tx:2 * tx + 2] = y4 >> 2
    return y[:, :, :oh, :ow]
