"""Normalisation operators (op stage): BatchNormalization in inference form.

y = (x - mean) / sqrt(var + epsilon) * scale + B, per channel (axis 1), for inputs of any rank
>= 2. Only the inference form is compiled: training mode (is_test=0 before opset 7,
training_mode=1 from opset 14, or any of the running/saved statistics outputs) is refused. The
per-channel factor scale / sqrt(var + eps) is computed by the C kernel itself, once per channel
per call, because scale/B/mean/var may be runtime inputs (the ONNX node tests feed them so);
a constant BatchNormalization after Conv is the fold_batchnorm pass's business, not this op's.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorInfo
from . import Op, register

PARAMS = ("scale", "B", "mean", "var")


@register("BatchNormalization")
class BatchNormalization(Op):
    """Opsets 1-6: `is_test` selects the mode (default 0 = training), `spatial` the layout of the
    parameters (1 = one value per channel), `consumed_inputs`/`momentum` do not change y."""
    template = "ops/batchnorm.c.j2"
    inplace_inputs = (0,)  # batchnorm.c.j2 reads xc[i] then writes yc[i]

    def parse(self):
        self.eps = float(self.attr("epsilon", 1e-5))
        extra = [t for t in self.node.outputs[1:] if t]
        if extra:
            raise self.refuse(f"training-mode statistics outputs ({', '.join(extra)}) are not supported")
        self.check_mode()
        self.spatial = int(self.attr("spatial", 1))

    def check_mode(self) -> None:
        # The ONNX reference computes batch statistics when is_test=0, so y differs: refuse.
        if int(self.attr("is_test", 0)) == 0:
            raise self.refuse("is_test=0 (training mode) is not supported; export with is_test=1")

    def channels(self, x: TensorInfo, params: list[TensorInfo]) -> tuple[int, int, int]:
        """(N, C, spatial size) after checking that every parameter has one value per channel."""
        if len(x.shape) < 2:
            raise ShapeError(f"input rank {len(x.shape)} < 2")
        n, c = x.shape[:2]
        spatial = int(np.prod(x.shape[2:], dtype=np.int64))
        if self.spatial == 0 and spatial != 1:
            # Per-activation parameters (C x D1 x ...): not implemented.
            raise self.refuse("spatial=0 (per-activation parameters) is not supported")
        for name, p in zip(PARAMS, params):
            if p.dtype != "float32":
                raise self.refuse(f"{name} of type {p.dtype} (only float32)")
            if p.size != c:
                raise ShapeError(f"{name} has shape {p.shape}, expected ({c},)")
        return n, c, spatial

    def infer(self, x, scale, b, mean, var):
        self.channels(x, [scale, b, mean, var])
        return [(x.shape, "float32")]

    def reference(self, x, scale, b, mean, var):
        # The ONNX formula as written, in float64, parameters broadcast along axis 1.
        shape = (-1,) + (1,) * (x.ndim - 2)
        s, bias, m, v = (np.asarray(p, np.float64).reshape(shape) for p in (scale, b, mean, var))
        y = s * (x.astype(np.float64) - m) / np.sqrt(v + self.eps) + bias
        return [y.astype(np.float32)]

    def macs(self, ins, outs):
        return outs[0].size

    def context(self, ins, outs):
        n, c, spatial = self.channels(ins[0], ins[1:5])
        return {"N": n, "C": c, "S": spatial, "eps": self.eps}


@register("BatchNormalization", since=7)
class BatchNormalization_7(BatchNormalization):
    """Opsets 7-8: no is_test; the number of outputs alone says training vs inference."""

    def check_mode(self) -> None:
        pass


@register("BatchNormalization", since=9)
class BatchNormalization_9(BatchNormalization_7):
    """Opsets 9-13: `spatial` is gone (always per channel)."""

    def parse(self):
        super().parse()
        self.spatial = 1


@register("BatchNormalization", since=14)
class BatchNormalization_14(BatchNormalization_9):
    """Opset 14+: `training_mode` attribute (15 only widens the parameter types)."""

    def check_mode(self) -> None:
        if int(self.attr("training_mode", 0)) != 0:
            raise self.refuse("training_mode=1 is not supported (inference only)")
