"""Softmax and LogSoftmax (op stage: attributes, shapes, numpy reference, template data).

Both normalise over a block of `n` elements, repeated for `outer` x `inner` positions with the
block's elements `inner` apart. Before opset 13 the input is coerced to 2-D at `axis` (default
1), so the block is the whole flattened tail (inner = 1); from opset 13 the block is the single
axis `axis` (default -1). The template subtracts the block maximum before exp so large inputs
do not overflow, the same trick the reference uses.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, register


def _axis(axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis % rank


@register("Softmax")
class Softmax(Op):
    """Opsets 1-12: softmax over the flattened trailing block x.reshape(outer, -1)."""
    template = "ops/softmax.c.j2"
    default_axis = 1
    log = False

    def parse(self):
        self.axis = int(self.attr("axis", self.default_axis))

    def blocks(self, shape: tuple[int, ...]) -> tuple[int, int, int]:
        """(outer, n, inner): `outer` blocks of `n` elements, consecutive elements `inner` apart."""
        if not shape:
            raise ShapeError("softmax of a scalar")
        a = _axis(self.axis, len(shape))
        return int(np.prod(shape[:a], dtype=np.int64)), int(np.prod(shape[a:], dtype=np.int64)), 1

    def infer(self, x):
        self.blocks(x.shape)
        return [(x.shape, "float32")]

    def reference(self, x):
        outer, n, inner = self.blocks(x.shape)
        v = x.astype(np.float64).reshape(outer, n, inner)
        v = v - v.max(axis=1, keepdims=True)
        lse = np.log(np.exp(v).sum(axis=1, keepdims=True))
        y = v - lse if self.log else np.exp(v - lse)
        return [y.reshape(x.shape).astype(np.float32)]

    def macs(self, ins, outs):
        return ins[0].size

    def context(self, ins, outs):
        outer, n, inner = self.blocks(ins[0].shape)
        return {"outer": outer, "n": n, "inner": inner, "log": self.log}


@register("Softmax", since=13)
class Softmax_13(Softmax):
    """Opset 13+: softmax along one axis (default -1); the other axes are independent."""
    default_axis = -1

    def blocks(self, shape):
        if not shape:
            raise ShapeError("softmax of a scalar")
        a = _axis(self.axis, len(shape))
        return (int(np.prod(shape[:a], dtype=np.int64)), int(shape[a]),
                int(np.prod(shape[a + 1:], dtype=np.int64)))


@register("LogSoftmax")
class LogSoftmax(Softmax):
    """log(softmax(x)) computed as x - max - log(sum(exp(x - max))): never log(0)."""
    log = True


@register("LogSoftmax", since=13)
class LogSoftmax_13(Softmax_13):
    """Opset 13+ LogSoftmax: single axis, like Softmax_13."""
    log = True
