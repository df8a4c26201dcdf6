"""Elementwise activations. Each has a numpy reference and a C expression in
templates/ops/_activation.j2, which fused kernels reuse as an epilogue.

References compute in float64 and round once to float32. Attributes that carry values are
turned into `params()` (floats, None for an absent Clip bound) that the template bakes in.
PRelu takes its slope as a second, broadcast input, so it uses the elementwise machinery
(templates/ops/binary.c.j2) rather than the unary template.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, input_value, register
from .elementwise import Elementwise, broadcast_shape


class Activation(Op):
    template = "ops/activation.c.j2"
    inplace_inputs = (0,)  # activation.c.j2: y0[i] = f(x0[i]), one flat loop

    def infer(self, x, *rest):
        if x.dtype != "float32":
            raise self.refuse(f"non-float32 input {x.name}")
        return [(x.shape, "float32")]

    def context(self, ins, outs):
        return {"act": self.op_type, "params": self.params()}

    def params(self) -> dict:
        return {}

    def reference(self, x, *rest):
        with np.errstate(all="ignore"):
            y = self.fn(np.asarray(x, np.float64), **self.params())
        return [np.asarray(y).astype(np.float32)]

    def fn(self, x: np.ndarray, **p) -> np.ndarray:
        raise NotImplementedError


@register("Relu")
class Relu(Activation):
    """y = max(x, 0)."""

    def fn(self, x):
        return np.maximum(x, 0)


@register("LeakyRelu")
class LeakyRelu(Activation):
    """y = x for x >= 0, alpha * x below (alpha defaults to 0.01)."""

    def params(self):
        return {"alpha": float(self.attr("alpha", 0.01))}

    def fn(self, x, alpha):
        return np.where(x >= 0, x, alpha * x)


@register("Sigmoid")
class Sigmoid(Activation):
    """y = 1 / (1 + exp(-x))."""

    def fn(self, x):
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # the same function, without exp overflow


@register("Tanh")
class Tanh(Activation):
    """y = tanh(x)."""

    def fn(self, x):
        return np.tanh(x)


@register("HardSigmoid")
class HardSigmoid(Activation):
    """y = max(0, min(1, alpha * x + beta)), alpha 0.2 and beta 0.5 by default."""

    def params(self):
        return {"alpha": float(self.attr("alpha", 0.2)), "beta": float(self.attr("beta", 0.5))}

    def fn(self, x, alpha, beta):
        return np.clip(alpha * x + beta, 0.0, 1.0)


@register("HardSwish")
class HardSwish(Activation):
    """y = x * HardSigmoid(x) with alpha = 1/6, beta = 0.5 (opset 14, no attributes)."""

    def params(self):
        return {"alpha": 1.0 / 6.0, "beta": 0.5}

    def fn(self, x, alpha, beta):
        return x * np.clip(alpha * x + beta, 0.0, 1.0)


@register("Elu")
class Elu(Activation):
    """y = x for x >= 0, alpha * (exp(x) - 1) below (alpha defaults to 1)."""

    def params(self):
        return {"alpha": float(self.attr("alpha", 1.0))}

    def fn(self, x, alpha):
        return np.where(x >= 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _clip(x, lo, hi):
    # max first, then min: with lo > hi every value becomes hi, as the ONNX spec says.
    if lo is not None:
        x = np.maximum(x, lo)
    if hi is not None:
        x = np.minimum(x, hi)
    return x


@register("Clip")
class Clip(Activation):
    """Opsets 1-10: bounds are the `min`/`max` attributes; an absent one is not applied."""

    def params(self):
        lo, hi = self.attr("min"), self.attr("max")
        return {"lo": None if lo is None else float(lo), "hi": None if hi is None else float(hi)}

    def fn(self, x, lo, hi):
        return _clip(x, lo, hi)


@register("Clip", since=11)
class Clip_11(Activation):
    """Opset 11+: bounds are optional inputs 1 and 2. They must be constants: their values are
    baked into the C, so the kernel only takes x."""
    const_inputs = (1, 2)

    def infer(self, x, lo=None, hi=None):
        self.bounds = {"lo": self._bound(lo, "min"), "hi": self._bound(hi, "max")}
        return super().infer(x)

    def _bound(self, t, what):
        if t is None:
            return None
        v = np.asarray(input_value(t, what, self))
        if v.size != 1:
            raise ShapeError(f"Clip {what} must be a scalar, got shape {v.shape}")
        return float(v.reshape(()))

    def params(self):
        if not hasattr(self, "bounds"):  # the values come from the tensors, not the node
            raise RuntimeError("Clip_11.params() needs infer() on the node's inputs first")
        return self.bounds

    def context(self, ins, outs):
        self.infer(*ins)
        return super().context(ins, outs)

    def reference(self, x, lo=None, hi=None):
        b = [None if v is None else float(np.asarray(v).reshape(())) for v in (lo, hi)]
        return [_clip(np.asarray(x, np.float64), *b).astype(np.float32)]


@register("PRelu")
class PRelu(Elementwise):
    """y = x for x >= 0, slope * x below. Opsets 1-6: the slope is numpy-broadcast to x, or,
    when that fails, a 1-D slope of C values applies along the channel axis 1 (Caffe2 style,
    as in the pytorch-converted cases). The output always has x's shape."""

    def aligned(self, shapes):
        x, s = tuple(shapes[0]), tuple(shapes[1])
        if self._unidirectional(x, s):
            return [x, s]
        if len(s) == 1 and len(x) >= 2 and s[0] == x[1]:
            return [x, (1, s[0]) + (1,) * (len(x) - 2)]
        raise ShapeError(f"slope {s} does not broadcast to x {x}")

    @staticmethod
    def _unidirectional(x, s) -> bool:
        try:
            return len(s) <= len(x) and broadcast_shape(x, s) == x
        except ShapeError:
            return False

    def infer(self, *ins):
        if len(ins) != 2 or ins[1] is None:
            raise self.refuse("expected 2 inputs (x, slope)")
        return super().infer(*ins)

    def compute(self, x, slope):
        return np.where(x < 0, x.astype(np.float64) * slope, x)


@register("PRelu", since=7)
class PRelu_7(PRelu):
    """Opset 7+: the slope is unidirectionally (numpy) broadcast to x."""

    def aligned(self, shapes):
        x, s = tuple(shapes[0]), tuple(shapes[1])
        if not self._unidirectional(x, s):
            raise ShapeError(f"slope {s} does not broadcast to x {x}")
        return [x, s]
