"""Elementwise activations. Each has a numpy reference and a C expression in
templates/ops/_activation.j2, which fused kernels reuse as an epilogue."""
from __future__ import annotations

import numpy as np

from . import Op, register


class Activation(Op):
    template = "ops/activation.c.j2"

    def infer(self, x):
        return [(x.shape, "float32")]

    def context(self, ins, outs):
        return {"act": self.op_type, "params": self.params()}

    def params(self) -> dict:
        return {}


@register("Relu")
class Relu(Activation):
    """y = max(x, 0)."""

    def reference(self, x):
        return [np.maximum(x, 0).astype(np.float32)]
