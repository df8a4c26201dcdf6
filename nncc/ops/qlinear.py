"""ONNX's quantization operators, as they appear in already-quantized models: QuantizeLinear,
DequantizeLinear (the QDQ format of onnxruntime's quantize_static and of PyTorch QAT export),
QLinearConv, QLinearMatMul and com.microsoft's QLinearAdd (the QOperator format).

The frontend accepts them so that nncc/quant/import_qdq.py can map the model onto the integer
kernels of nncc/ops/quantized.py; they never reach code generation (no template). Their
`reference()` is the ONNX definition in numpy (float64 where it helps, round half to even as
the standard says), for the float reference executor that runs the imported model as written.
Only 8-bit tensors are implemented: int16/uint16/int4/float8 types and blocked quantization
(`block_size`, opset 21) are refused here, so every model using them gets one clear message.
"""
from __future__ import annotations

import numpy as np

from ..dtypes import int_range
from ..errors import ShapeError
from ..ir import TensorInfo
from . import Op, register
from .conv import Conv, conv_reference

QTYPES = {d: int_range(d) for d in ("int8", "uint8")}


def broadcast_param(p: np.ndarray, ndim: int, axis: int) -> np.ndarray:
    """A per-tensor (scalar) or per-axis (1-D) scale / zero point shaped to broadcast."""
    p = np.asarray(p)
    if p.size == 1:
        return p.reshape(())
    shape = [1] * ndim
    shape[axis] = -1
    return p.reshape(shape)


def quantize_even(x, scale, zp, dtype: str) -> np.ndarray:
    """ONNX QuantizeLinear: saturate(round_half_even(x / scale) + zp)."""
    lo, hi = QTYPES[dtype]
    v = np.rint(np.asarray(x, np.float32) / np.asarray(scale, np.float32)).astype(np.float64)
    return np.clip(v + np.asarray(zp, np.float64), lo, hi).astype(dtype)


def dequantize(q, scale, zp) -> np.ndarray:
    """ONNX DequantizeLinear: (q - zp) * scale in float32."""
    return ((np.asarray(q, np.int64) - np.asarray(zp, np.int64)).astype(np.float32)
            * np.asarray(scale, np.float32)).astype(np.float32)


class _QLinear(Op):
    float_only = False  # their inputs are 8-bit integers and int32 biases

    def check_type(self, t: TensorInfo | None, what: str, allowed=tuple(QTYPES)) -> str:
        dtype = "uint8" if t is None else t.dtype
        if dtype not in allowed:
            raise self.refuse(f"{what} of type {dtype} (only {'/'.join(allowed)} are implemented)")
        return dtype

    def check_param(self, t: TensorInfo | None, what: str) -> None:
        if t is not None and not t.is_const:
            raise self.refuse(f"{what} must be a constant")


class _AxisOp(_QLinear):
    def parse(self):
        if int(self.attr("block_size", 0)) != 0:
            raise self.refuse("blocked quantization (block_size) is not implemented")
        if self.attr("output_dtype", 0) not in (0, None):
            raise self.refuse("output_dtype is not implemented (the zero point gives the type)")
        if int(self.attr("saturate", 1)) != 1:
            raise self.refuse("saturate=0 (float8 only)")

    def axis(self, ndim: int) -> int:
        a = int(self.attr("axis", 1))
        return a + ndim if a < 0 else a

    def check_params(self, x: TensorInfo, scale: TensorInfo, zp: TensorInfo | None) -> None:
        self.check_param(scale, "scale")
        self.check_param(zp, "zero point")
        if scale.dtype != "float32":
            raise self.refuse(f"scale of type {scale.dtype} (only float32)")
        if scale.size != 1:
            axis = self.axis(len(x.shape))
            if len(scale.shape) != 1 or not 0 <= axis < len(x.shape) or x.shape[axis] != scale.size:
                raise self.refuse(f"scale of shape {scale.shape} for input {x.shape} along axis "
                                  f"{self.attr('axis', 1)} (per-tensor or per-axis only)")
        if zp is not None and zp.size != scale.size:
            raise ShapeError(f"{self.node.op}: zero point of shape {zp.shape}, scale {scale.shape}")


@register("QuantizeLinear", since=10)
class QuantizeLinear(_AxisOp):
    """y = saturate(round_half_even(x / y_scale) + y_zero_point), per tensor or per axis."""

    def infer(self, x, scale, zp=None):
        if x.dtype != "float32":
            raise self.refuse(f"input of type {x.dtype} (only float32)")
        self.check_params(x, scale, zp)
        return [(x.shape, self.check_type(zp, "output"))]

    def reference(self, x, scale, zp=None):
        dtype = "uint8" if zp is None else zp.dtype.name
        ax = self.axis(x.ndim)
        z = np.zeros(1, np.int64) if zp is None else zp
        return [quantize_even(x, broadcast_param(scale, x.ndim, ax), broadcast_param(z, x.ndim, ax),
                              dtype)]


@register("DequantizeLinear", since=10)
class DequantizeLinear(_AxisOp):
    """y = (x - x_zero_point) * x_scale in float32; x int8, uint8 or int32 (biases)."""

    def infer(self, x, scale, zp=None):
        self.check_type(x, "input", ("int8", "uint8", "int32"))
        if zp is not None and zp.dtype != x.dtype:
            raise ShapeError(f"DequantizeLinear: zero point {zp.dtype}, input {x.dtype}")
        self.check_params(x, scale, zp)
        return [(x.shape, "float32")]

    def reference(self, x, scale, zp=None):
        ax = self.axis(x.ndim)
        z = np.zeros(1, np.int64) if zp is None else zp
        return [dequantize(x, broadcast_param(scale, x.ndim, ax), broadcast_param(z, x.ndim, ax))]


def _qlinear_params(op: _QLinear, ins: list[TensorInfo | None], scalar: tuple[int, ...]) -> None:
    """Scales and zero points must be constants; those at indices `scalar` per tensor."""
    for i in scalar:
        t = ins[i]
        if t is not None:
            op.check_param(t, f"input {i}")
            if t.size != 1:
                raise op.refuse(f"input {i} of shape {t.shape}: per-channel activation "
                                "quantization is not implemented")


@register("QLinearConv", since=10)
class QLinearConv(_QLinear, Conv):
    """Conv of x (8-bit) and w (8-bit, per output channel scales) with int32 bias, requantized to
    y_scale / y_zero_point. Inputs: x, x_scale, x_zp, w, w_scale, w_zp, y_scale, y_zp[, B]."""

    def parse(self):
        Conv.parse(self)

    def infer(self, x, xs, xz, w, ws, wz, ys, yz, b=None):
        _qlinear_params(self, [x, xs, xz, w, ws, wz, ys, yz], (1, 2, 6, 7))
        self.check_param(ws, "w_scale")
        self.check_param(wz, "w_zero_point")
        dtype = self.check_type(x, "x")
        self.check_type(w, "w")
        if yz.dtype != dtype:
            raise self.refuse(f"x of type {dtype} and y of type {yz.dtype}")
        win = self.geometry(x, w)
        return [((x.shape[0], w.shape[0], *win.out_size), dtype)]

    def reference(self, x, xs, xz, w, ws, wz, ys, yz, b=None):
        xf = dequantize(x, xs, xz).astype(np.float64)
        m = w.shape[0]
        wf = dequantize(w, broadcast_param(ws, w.ndim, 0), broadcast_param(wz, w.ndim, 0))
        bf = None if b is None else b.astype(np.float64) * (np.float64(xs) * ws.astype(np.float64)
                                                             * np.ones(m))
        win = self.geometry(TensorInfo("x", x.shape), TensorInfo("w", w.shape))
        y = conv_reference(xf, wf.astype(np.float64), bf, win, self.group)
        return [quantize_even(np.asarray(y, np.float64), ys, yz, yz.dtype.name)]


@register("QLinearMatMul", since=10)
class QLinearMatMul(_QLinear):
    """a (M x K) @ b (K x N), 8-bit, requantized. Inputs: a, a_scale, a_zp, b, b_scale, b_zp,
    y_scale, y_zp; b's scale may be per column (N)."""

    def infer(self, a, as_, az, b, bs, bz, ys, yz):
        _qlinear_params(self, [a, as_, az, b, bs, bz, ys, yz], (1, 2, 6, 7))
        self.check_param(bs, "b_scale")
        self.check_param(bz, "b_zero_point")
        dtype = self.check_type(a, "a")
        self.check_type(b, "b")
        if len(a.shape) != 2 or len(b.shape) != 2 or a.shape[1] != b.shape[0]:
            raise self.refuse(f"a {a.shape} @ b {b.shape} (2-D operands only)")
        return [((a.shape[0], b.shape[1]), yz.dtype if yz.dtype in QTYPES else dtype)]

    def reference(self, a, as_, az, b, bs, bz, ys, yz):
        af = dequantize(a, as_, az).astype(np.float64)
        bf = dequantize(b, broadcast_param(bs, 2, 1), broadcast_param(bz, 2, 1)).astype(np.float64)
        return [quantize_even(af @ bf, ys, yz, yz.dtype.name)]


@register("QLinearAdd", since=1)
class QLinearAdd(_QLinear):
    """com.microsoft QLinearAdd: C = quantize(dequantize(A) + dequantize(B)), broadcasting.
    Inputs: A, A_scale, A_zp, B, B_scale, B_zp, C_scale, C_zp."""

    def infer(self, a, as_, az, b, bs, bz, cs, cz):
        _qlinear_params(self, [a, as_, az, b, bs, bz, cs, cz], (1, 2, 4, 5, 6, 7))
        dtype = self.check_type(a, "A")
        self.check_type(b, "B")
        try:
            shape = np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ShapeError(f"QLinearAdd: {a.shape} + {b.shape}") from None
        return [(tuple(shape), dtype)]

    def reference(self, a, as_, az, b, bs, bz, cs, cz):
        s = dequantize(a, as_, az).astype(np.float64) + dequantize(b, bs, bz)
        return [quantize_even(s, cs, cz, cz.dtype.name)]
