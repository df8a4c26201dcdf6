"""ConvPool: a Conv (with its fused activation) and the MaxPool / AveragePool / global pool that
reads it, as one kernel. Not an ONNX operator: passes/fuse_conv_pool.py makes it.

The kernel computes each pooled output straight from the convolution windows under its pool
window, so the full-resolution conv output never exists in RAM (on LeNet-5 that buffer is the
peak). The node keeps the two original operators' attributes:
    attrs["conv"] = the Conv's attributes, attrs["pool"] = {"op", "opset", "attrs"} of the pool,
    attrs[FUSED_ACTIVATION] = the activation applied to each conv value before pooling.
Both halves are the registry's own Conv and pool classes: they parse and refuse as they always
do, and the reference is literally Conv's reference followed by the pool's.
"""
from __future__ import annotations

import numpy as np

from ..ir import Node, TensorInfo
from . import FUSED_ACTIVATION, Op, op_class, register
from ._spatial import Window
from .conv import clamped
from .pool import tap_counts

POOLS = ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")


def commutes_with_max(fused: dict | None) -> bool:
    """Whether max(act(a), act(b)) == act(max(a, b)) exactly: a non-decreasing piecewise-linear
    activation, which a max pool then applies once per pooled output, not once per conv value."""
    if not fused:
        return False
    return fused["op"] in ("Relu", "Clip") or (fused["op"] == "LeakyRelu" and fused["params"]["alpha"] >= 0)


@register("ConvPool")
class ConvPool(Op):
    """y = pool(act(conv(x, W) + B)) without storing conv(x, W) + B."""
    template = "ops/conv_pool.c.j2"
    # Its activation sits between conv and pool, not before the store: fuse_activation must
    # not add one after the pool, so the base class' check is replaced in __init__.
    accepts_activation = False

    def __init__(self, node: Node):
        self.node = node
        self.parse()

    def parse(self):
        conv, pool = self.attr("conv"), self.attr("pool")
        if not isinstance(conv, dict) or not isinstance(pool, dict) or pool.get("op") not in POOLS:
            raise self.refuse("not made by fuse_conv_pool (needs the conv and pool attributes)")
        name = self.node.name
        conv_attrs = dict(conv)
        if FUSED_ACTIVATION in self.node.attrs:
            conv_attrs[FUSED_ACTIVATION] = self.node.attrs[FUSED_ACTIVATION]
        self.conv = op_class("Conv", self.node.opset)(
            Node(f"{name}/conv", "Conv", ["x", "w", "b"], ["t"], conv_attrs, self.node.opset))
        self.pool = op_class(pool["op"], int(pool["opset"]))(
            Node(f"{name}/pool", pool["op"], ["t"], ["y"], dict(pool["attrs"]), int(pool["opset"])))

    def conv_out(self, x, w, b=None) -> TensorInfo:
        (shape, dtype), = self.conv.infer(x, w, b)
        return TensorInfo("t", shape, dtype)

    def pool_window(self, t: TensorInfo) -> Window:
        """The pool's window over the conv output, in the conv's own rank (a global pool is
        one window as large as the feature map)."""
        if self.pool.op_type.startswith("Global"):
            sp = tuple(t.shape[2:])
            ones, zeros = (1,) * len(sp), (0,) * len(sp)
            return Window(sp, ones, ones, zeros, zeros, sp, ones)
        return self.pool.geometry(t)

    def infer(self, x, w, b=None):
        return self.pool.infer(self.conv_out(x, w, b))

    def reference(self, x, w, b=None):
        (t,) = self.conv.reference(x, w, b)  # with the activation: Conv.reference's epilogue
        return self.pool.reference(t)

    def macs(self, ins, outs):
        """Conv MACs actually executed: one conv window per valid pool tap (overlapping pool
        windows recompute the shared conv values)."""
        t = self.conv_out(*ins)
        win = self.pool_window(t)
        taps = int(np.prod([sum(tap_counts(win, i, False)) for i in range(win.rank)]))
        return t.shape[0] * t.shape[1] * taps * int(np.prod(ins[1].shape[1:]))

    def context(self, ins, outs):
        t = self.conv_out(*ins)
        ctx = self.conv.context(ins, [t])  # g, N, C, M, group, has_bias
        win = self.pool_window(t)
        p = win.as3d()
        # pclamp: per dim, whether a pool window can reach past the conv map (its taps' range
        # is then computed in the C, as kernel_plan's clamp does for the conv's taps)
        ctx.update({"p": p, "pclamp": [clamped(p, i) for i in range(3)], "kind": self.pool.kind,
                    "lowest": -np.inf,
                    "act_after_max": self.pool.kind == "max" and commutes_with_max(self.attr(FUSED_ACTIVATION))})
        if self.pool.kind == "avg":
            counts = [tap_counts(win, i, self.pool.include_pad) for i in range(win.rank)]
            counts = [[1]] * (3 - win.rank) + counts
            full = all(len(set(c)) == 1 for c in counts)
            ctx["divisor"] = int(np.prod([c[0] for c in counts])) if full else None
            ctx["counts"] = counts
        return ctx
