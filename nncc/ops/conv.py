"""Convolutions: Conv (1-D to 3-D, groups, depthwise with channel multiplier, strides,
dilations, pads, auto_pad) and ConvTranspose."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorInfo
from . import Op, register
from ._spatial import window


def conv_reference(x, w, b, win, group: int) -> np.ndarray:
    """Direct convolution in float64, one strided slice per kernel tap."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    nd = win.rank
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + list(zip(win.pads_begin, win.pads_end)))
    xg = xp.reshape(n, group, c // group, *xp.shape[2:])
    wg = w.astype(np.float64).reshape(group, m // group, cg, *w.shape[2:])
    y = np.zeros((n, group, m // group, *win.out_size))
    for tap in np.ndindex(*win.kernel):
        sl = tuple(slice(tap[i] * win.dilations[i],
                         tap[i] * win.dilations[i] + (win.out_size[i] - 1) * win.strides[i] + 1,
                         win.strides[i]) for i in range(nd))
        patch = xg[(slice(None),) * 3 + sl]
        y += np.einsum("ngc...,gmc->ngm...", patch, wg[(slice(None),) * 3 + tap])
    y = y.reshape(n, m, *win.out_size)
    if b is not None:
        y += b.astype(np.float64).reshape(1, m, *([1] * nd))
    return y.astype(np.float32)


@register("Conv")
class Conv(Op):
    """y = conv(x, W) + B. Weights M x C/group x k..., direct loops over (D, H, W)."""
    template = "ops/conv.c.j2"
    accepts_activation = True  # conv.c.j2 applies it before the store

    def parse(self):
        self.group = int(self.attr("group", 1))

    def geometry(self, x: TensorInfo, w: TensorInfo):
        if len(x.shape) < 3 or len(w.shape) != len(x.shape):
            raise ShapeError(f"input rank {len(x.shape)} and weight rank {len(w.shape)}")
        ks = self.attr("kernel_shape")
        if ks is not None and tuple(ks) != tuple(w.shape[2:]):
            raise ShapeError(f"kernel_shape {tuple(ks)} != weight shape {w.shape[2:]}")
        if x.shape[1] != w.shape[1] * self.group or w.shape[0] % self.group:
            raise ShapeError(f"channels {x.shape[1]} / weight {w.shape} / group {self.group}")
        return window(self, x.shape[2:], w.shape[2:])

    def infer(self, x, w, b=None):
        win = self.geometry(x, w)
        if b is not None and b.shape != (w.shape[0],):
            raise ShapeError(f"bias shape {b.shape}, expected ({w.shape[0]},)")
        return [((x.shape[0], w.shape[0], *win.out_size), "float32")]

    def reference(self, x, w, b=None):
        win = self.geometry(TensorInfo("x", x.shape), TensorInfo("w", w.shape))
        return [self.epilogue(conv_reference(x, w, b, win, self.group))]

    def macs(self, ins, outs):
        w = ins[1]
        return outs[0].size * int(np.prod(w.shape[1:]))

    def context(self, ins, outs):
        x, w = ins[0], ins[1]
        win = self.geometry(x, w)
        return {"g": win.as3d(), "N": x.shape[0], "C": x.shape[1], "M": w.shape[0],
                "group": self.group, "has_bias": len(ins) > 2 and ins[2] is not None}
