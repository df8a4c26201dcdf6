"""ConvTranspose (1-D to 3-D): groups, strides, dilations, pads, output_padding, output_shape and
auto_pad, optional bias. The geometry lives in `_spatial.transposed_window`; the C kernel
scatters each input pixel through the kernel into the output (no zero-stuffed copy)."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorInfo
from . import Op, register
from ._spatial import transposed_window


def output_major(w: np.ndarray, group: int) -> np.ndarray:
    """ONNX's C x M/group x k weights as M x C/group x k (output channel first: the int8 layout,
    QConvTranspose, so per-channel quantization runs along axis 0 as for Conv)."""
    c, mg = w.shape[:2]
    wm = np.swapaxes(w.reshape(group, c // group, mg, *w.shape[2:]), 1, 2)
    return wm.reshape(group * mg, c // group, *w.shape[2:])


def input_major(w: np.ndarray, group: int) -> np.ndarray:
    """The inverse of output_major: M x C/group x k back to C x M/group x k."""
    m, cg = w.shape[:2]
    wo = np.swapaxes(w.reshape(group, m // group, cg, *w.shape[2:]), 1, 2)
    return wo.reshape(cg * group, m // group, *w.shape[2:])


def conv_transpose_sum(x, w, win, group: int) -> np.ndarray:
    """The transposed convolution without bias, in x's dtype (float64 or int64: exact), scattered
    onto the full (uncropped) output, one strided slice per tap, then cropped. w: C x M/group x k."""
    n, c = x.shape[:2]
    mg = w.shape[1]
    nd = win.rank
    # The full output, grown when output_shape asks for more (negative pads_end).
    full = [win.out_size[i] + win.pads_begin[i] + max(win.pads_end[i], 0) for i in range(nd)]
    xg = x.reshape(n, group, c // group, *x.shape[2:])
    wg = w.astype(x.dtype).reshape(group, c // group, mg, *w.shape[2:])
    y = np.zeros((n, group, mg, *full), x.dtype)
    for tap in np.ndindex(*win.kernel):
        sl = tuple(slice(tap[i] * win.dilations[i],
                         tap[i] * win.dilations[i] + (win.in_size[i] - 1) * win.strides[i] + 1,
                         win.strides[i]) for i in range(nd))
        y[(slice(None),) * 3 + sl] += np.einsum("ngc...,gcm->ngm...", xg,
                                                 wg[(slice(None),) * 3 + tap])
    crop = tuple(slice(win.pads_begin[i], win.pads_begin[i] + win.out_size[i]) for i in range(nd))
    return y.reshape(n, group * mg, *full)[(slice(None),) * 2 + crop]


def conv_transpose_reference(x, w, b, win, group: int) -> np.ndarray:
    """Float64 sum plus bias, rounded once to float32."""
    y = conv_transpose_sum(x.astype(np.float64), w, win, group)
    if b is not None:
        y = y + b.astype(np.float64).reshape(1, y.shape[1], *([1] * win.rank))
    return y.astype(np.float32)


@register("ConvTranspose")
class ConvTranspose(Op):
    """y = conv_transpose(x, W) + B. Weights C x M/group x k...; output has M channels.
    Opset 1-10: total padding from output_shape is split by the older formula."""
    template = "ops/conv_transpose.c.j2"
    modern_split = False
    accepts_activation = True  # conv_transpose.c.j2 applies it once the scatter is done

    def parse(self):
        self.group = int(self.attr("group", 1))
        if self.group < 1:
            raise self.refuse(f"group={self.group}")

    def geometry(self, x: TensorInfo, w: TensorInfo):
        if len(x.shape) < 3 or len(w.shape) != len(x.shape):
            raise ShapeError(f"input rank {len(x.shape)} and weight rank {len(w.shape)}")
        ks = self.attr("kernel_shape")
        if ks is not None and tuple(ks) != tuple(w.shape[2:]):
            raise self.refuse(f"kernel_shape {tuple(ks)} differs from the weight shape {w.shape[2:]}")
        if x.shape[1] != w.shape[0] or x.shape[1] % self.group:
            raise ShapeError(f"channels {x.shape[1]} / weight {w.shape} / group {self.group}")
        return transposed_window(self, x.shape[2:], w.shape[2:], self.modern_split)

    def infer(self, x, w, b=None):
        win = self.geometry(x, w)
        m = w.shape[1] * self.group
        if b is not None and b.shape != (m,):
            raise ShapeError(f"bias shape {b.shape}, expected ({m},)")
        return [((x.shape[0], m, *win.out_size), "float32")]

    def reference(self, x, w, b=None):
        win = self.geometry(TensorInfo("x", x.shape), TensorInfo("w", w.shape))
        return [self.epilogue(conv_transpose_reference(x, w, b, win, self.group))]

    def macs(self, ins, outs):
        x, w = ins[0], ins[1]
        return x.size * int(np.prod(w.shape[1:]))

    def context(self, ins, outs):
        x, w = ins[0], ins[1]
        win = self.geometry(x, w)
        return {"g": win.as3d(), "N": x.shape[0], "C": x.shape[1], "M": w.shape[1] * self.group,
                "group": self.group, "has_bias": len(ins) > 2 and ins[2] is not None}


@register("ConvTranspose", since=11)
class ConvTranspose_11(ConvTranspose):
    """Opset 11+: the odd padding unit goes to the end for SAME_UPPER, to the start otherwise."""
    modern_split = True
