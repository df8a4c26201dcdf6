"""Convolutions: Conv (1-D to 3-D, groups, depthwise with channel multiplier, strides,
dilations, pads, auto_pad) and ConvTranspose.

Two nncc extensions of Conv, both for RAM. A residual input (index 3, only when
`attrs[FUSED_RESIDUAL]` is set by passes/fuse_residual_add.py): y = act(conv(x) + b + r), read at
the index written, so y may overwrite r. Kernel variants writing y over x itself, chosen by the
memory planner (nncc/memory/alias.py, via `inplace_kernel`) when x dies at this node, each with a
small arena workspace: "dw_inplace" (depthwise, same shape: channel c's output plane goes to the
workspace, then over input channel c, which nothing reads any more) and "pw_inplace" (1x1
stride-1 unpadded, Cin == Cout: one pixel's outputs go to the workspace, then over that pixel).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorInfo
from . import Op, register
from ._spatial import window

# Node attribute set by passes/fuse_residual_add.py: input 3 is a residual added before the
# activation. Its value records the Add it replaced ({"add": name, "opset": n, "conv_first": bool})
# so nncc/quant can undo the fusion.
FUSED_RESIDUAL = "nncc_residual"


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


def clamped(g: dict, i: int) -> bool:
    """Whether some output along spatial dim i has a window reaching into the padding (its
    valid taps then differ from 0..k-1, computed in the C)."""
    s, pb, span, size, out = g["s"][i], g["pb"][i], (g["k"][i] - 1) * g["d"][i], g["i"][i], g["o"][i]
    return pb > 0 or (out - 1) * s + span > size - 1


def kernel_plan(g: dict, c: int, m: int, group: int) -> dict:
    """How conv.c.j2 / conv_pool.c.j2 compute: `ob` output channels at once, so each loaded
    input feeds ob MACs; per output pixel, the taps inside the input (`clamp`: per dim, whether
    their range must be computed) outside, input channels inside, so no MAC checks bounds.
    Code stays one path per kernel (the 8 KB code budget of the MCU targets)."""
    ob = next(b for b in (4, 2, 1) if m // group % b == 0)
    # Pixels ow, ow + 1 go together (nncc_dot4x2 over the taps both windows reach, templates/ops/
    # _conv.j2); only where it pays for its code: kernels wider than 1x1, input channels enough
    # to amortize a call.
    pair = ob == 4 and c // group >= 8 and g["k"] != (1, 1, 1)
    return {"ob": ob, "clamp": [clamped(g, i) for i in range(3)], "pair": pair}


@register("Conv")
class Conv(Op):
    """y = conv(x, W) + B. Weights M x C/group x k..., direct loops over (D, H, W)."""
    template = "ops/conv.c.j2"
    accepts_activation = True  # conv.c.j2 applies it before the store

    def parse(self):
        self.group = int(self.attr("group", 1))
        n_in = len(self.node.inputs)
        self.residual = bool(self.attr(FUSED_RESIDUAL)) and n_in == 4 and bool(self.node.inputs[3])
        if type(self) is Conv and n_in > 3 and not self.residual:
            raise self.refuse(f"{n_in} inputs (X, W, B expected)")
        if self.residual:
            self.inplace_inputs = (3,)  # conv.c.j2 reads r[i] just before storing y[i]

    def fused_ops(self) -> list[str]:
        return ["Add", *super().fused_ops()] if self.residual else super().fused_ops()  # act after the add

    def geometry(self, x: TensorInfo, w: TensorInfo):
        if len(x.shape) < 3 or len(w.shape) != len(x.shape):
            raise ShapeError(f"input rank {len(x.shape)} and weight rank {len(w.shape)}")
        ks = self.attr("kernel_shape")
        if ks is not None and tuple(ks) != tuple(w.shape[2:]):
            raise ShapeError(f"kernel_shape {tuple(ks)} != weight shape {w.shape[2:]}")
        if x.shape[1] != w.shape[1] * self.group or w.shape[0] % self.group:
            raise ShapeError(f"channels {x.shape[1]} / weight {w.shape} / group {self.group}")
        return window(self, x.shape[2:], w.shape[2:])

    def infer(self, x, w, b=None, r=None):
        win = self.geometry(x, w)
        if b is not None and b.shape != (w.shape[0],):
            raise ShapeError(f"bias shape {b.shape}, expected ({w.shape[0]},)")
        shape = (x.shape[0], w.shape[0], *win.out_size)
        if r is not None and tuple(r.shape) != shape:
            raise ShapeError(f"residual shape {r.shape}, expected {shape}")
        return [(shape, "float32")]

    def reference(self, x, w, b=None, r=None):
        win = self.geometry(TensorInfo("x", x.shape), TensorInfo("w", w.shape))
        y = conv_reference(x, w, b, win, self.group)
        if r is not None:
            y = (y.astype(np.float64) + r.astype(np.float64)).astype(np.float32)
        return [self.epilogue(y)]

    def macs(self, ins, outs):
        w = ins[1]
        return outs[0].size * int(np.prod(w.shape[1:]))

    def context(self, ins, outs):
        x, w = ins[0], ins[1]
        win = self.geometry(x, w)
        g = win.as3d()
        return {"g": g, "N": x.shape[0], "C": x.shape[1], "M": w.shape[0],
                "group": self.group, "has_bias": len(ins) > 2 and ins[2] is not None,
                "has_residual": self.residual, **kernel_plan(g, x.shape[1], w.shape[0], self.group)}

    def inplace_kernel(self, ins, outs) -> tuple[int, str] | None:
        """(0, variant) when a kernel can write y over x (see the module docstring)."""
        if self.template != Conv.template:
            return None  # subclasses (QConv) have their own templates, without these variants
        return self.inplace_variant(ins, outs)

    def inplace_variant(self, ins, outs) -> tuple[int, str] | None:
        """(0, "dw_inplace" or "pw_inplace") when the shapes let y go over x, else None."""
        x, w, y = ins[0], ins[1], outs[0]
        if tuple(x.shape) != tuple(y.shape) or x.dtype != y.dtype:
            return None
        win = self.geometry(x, w)
        c, m = x.shape[1], w.shape[0]
        if self.group == c == m:
            return 0, "dw_inplace"
        unit = all(v == 1 for v in win.kernel + win.strides) and not any(win.pads_begin + win.pads_end)
        if self.group == 1 and c == m and unit:
            return 0, "pw_inplace"
        return None

    def workspace_bytes(self, ins, outs, kernel="direct"):
        y = outs[0]
        item = np.dtype(y.dtype).itemsize
        if kernel == "dw_inplace":
            return item * int(np.prod(y.shape[2:]))  # one output plane
        return item * y.shape[1] if kernel == "pw_inplace" else 0  # one pixel's output channels
