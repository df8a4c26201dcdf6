"""LRN: local response normalization across channels, as the ONNX spec defines it:
y = x / (bias + alpha / size * sum of x^2 over channels [c - floor((size-1)/2), c + ceil((size-1)/2)])^beta,
the channel window clipped to [0, C-1]."""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, register


@register("LRN")
class LRN(Op):
    """Normalizes each element by the squared sum of its channel neighbours (AlexNet, GoogLeNet)."""
    template = "ops/lrn.c.j2"

    def parse(self):
        size = self.attr("size")
        if size is None or int(size) < 1:
            raise self.refuse(f"size={size} (a positive size is required)")
        self.size = int(size)
        self.alpha = float(self.attr("alpha", 1e-4))
        self.beta = float(self.attr("beta", 0.75))
        self.bias = float(self.attr("bias", 1.0))
        self.before = (self.size - 1) // 2        # channels below c: floor((size-1)/2)
        self.after = self.size - 1 - self.before  # channels above c: ceil((size-1)/2)

    def infer(self, x):
        if len(x.shape) < 3:
            raise ShapeError(f"input rank {len(x.shape)}, expected N x C x D1 ...")
        return [(x.shape, "float32")]

    def reference(self, x):
        x64 = x.astype(np.float64)
        sq = x64 * x64
        c = x.shape[1]
        total = np.zeros_like(x64)
        for i in range(c):
            lo, hi = max(0, i - self.before), min(c - 1, i + self.after)
            total[:, i] = sq[:, lo:hi + 1].sum(axis=1)
        return [(x64 / (self.bias + self.alpha / self.size * total) ** self.beta).astype(np.float32)]

    def macs(self, ins, outs):
        return outs[0].size * self.size

    def context(self, ins, outs):
        x = ins[0]
        return {"N": x.shape[0], "C": x.shape[1], "S": int(np.prod(x.shape[2:])),
                "before": self.before, "after": self.after, "scale": self.alpha / self.size,
                "bias": self.bias, "beta": self.beta}
