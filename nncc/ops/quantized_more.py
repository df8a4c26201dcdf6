"""More integer operators of a quantized graph (made by nncc/quant/rewrite_more.py): the ones
beyond conv / gemm / add / pools (nncc/ops/quantized.py, whose conventions they follow: int8
activations real = scale * (q - zero_point), integer-only `reference()`, bit-exact with the
templates).
  QConvTranspose: per-output-channel int8 weights stored M x C/group x k (as QConv's, so the
    same weight quantization and packed bias / requantization apply), gathered per output
    (no int32 scratch): acc = bias + sum over the taps that land on it; requantized and clamped
    (a fused ReLU) exactly as QConv.
  QConcat: inputs whose (scale, zero point) equal the output's are copied -- or written in place
    by their producers (nncc/memory/alias.py); the others are requantized on the way
    (not `placeable`): fixed y = requantize(x - x_zp, m, s), shift y = shift_round(x - x_zp, s).
  QLut: y = table[x + 128], a 256-entry int8 table computed at compile time from the float
    activation and the input / output quantization (Sigmoid, Tanh, HardSwish, LeakyRelu, ...).
  QMul: y = requantize((a - a_zp) * (b - b_zp)), scale s_a * s_b / s_y; numpy broadcasting.
  QSub: y = a - b, QAdd's arithmetic with b's offset negated; numpy broadcasting.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorInfo
from ..quant import fixed_point as fp
from . import Op, register
from .conv_transpose import ConvTranspose, conv_transpose_sum, input_major
from .elementwise import broadcast_shape, loop_nest
from .quantized import QAdd, _QMixin, accumulate_requant, check_widths, requant
from .shape import Concat


@register("QConvTranspose")
class QConvTranspose(_QMixin, ConvTranspose):
    """Inputs: x int8, w int8 (M x C/group x k...: output channel first), then QConv's bias /
    requantization inputs (unpacked or packed form, nncc/ops/quantized.py)."""
    template = "ops/conv_transpose_q.c.j2"
    accepts_activation = True  # realised as the [act_min, act_max] clamp

    def parse(self):
        super().parse()
        self.modern_split = self.node.opset >= 11  # as ConvTranspose_11
        self.check_quant_attrs()

    def onnx_weight(self, w: TensorInfo) -> TensorInfo:
        """The float op's weight shape (C x M/group x k) for its geometry."""
        m, cg = w.shape[:2]
        return TensorInfo("w", (cg * self.group, m // self.group, *w.shape[2:]))

    def qgeometry(self, x: TensorInfo, w: TensorInfo):
        if w.shape[0] % self.group:
            raise ShapeError(f"QConvTranspose: {w.shape[0]} output channels, group {self.group}")
        return self.geometry(x, self.onnx_weight(w))

    def infer(self, x, w, b=None, mult=None, shift=None):
        win = self.qgeometry(x, w)
        if check_widths(self, x, w) != "int8" or x.dtype != "int8":
            raise self.refuse(f"QConvTranspose takes int8 x and y, got {x.dtype} -> {self.attr('y_dtype')}")
        self.check_packed_input(b, w.shape[0])
        return [((x.shape[0], w.shape[0], *win.out_size), "int8")]

    def reference(self, x, w, b=None, mult=None, shift=None):
        win = self.qgeometry(TensorInfo("x", x.shape), TensorInfo("w", w.shape))
        wo = input_major(w.astype(np.int64), self.group)  # for the scatter (exact in int64)
        acc = conv_transpose_sum(x.astype(np.int64) - self.attr("x_zero_point"), wo, win, self.group)
        return [accumulate_requant(self, acc, b, mult, shift, w.shape[0]).astype(np.int8)]

    def macs(self, ins, outs):
        return super().macs([ins[0], self.onnx_weight(ins[1]), *ins[2:]], outs)

    def context(self, ins, outs):
        self.qgeometry(ins[0], ins[1])  # its own checks of the M x C/group x k weights
        return {**super().context([ins[0], self.onnx_weight(ins[1]), *ins[2:]], outs), **self.q_context()}


@register("QConcat")
class QConcat(Concat):
    """Concat of int8 tensors. Attributes: y_zero_point, scaling, and per input x_zero_points,
    mults, shifts, copy (True: same quantization as the output, a plain copy)."""
    template = "ops/concat_q.c.j2"
    float_only = False

    def parse(self):
        n = len(self.node.inputs)
        for a in ("x_zero_points", "mults", "shifts", "copy"):
            if len(self.attr(a) or ()) != n:
                raise self.refuse(f"attribute {a} needs one entry per input")
        if self.attr("scaling") not in ("fixed", "shift") or self.attr("y_zero_point") is None:
            raise self.refuse("missing y_zero_point / scaling (made only by nncc/quant)")

    def placeable(self, j: int) -> bool:
        """Only a copied input: one the kernel requantizes must stay where its producer wrote it."""
        return bool(self.attr("copy")[j])

    def infer(self, *ins):
        if any(x is not None and x.dtype != "int8" for x in ins):
            raise self.refuse("QConcat of a non-int8 input")
        (shape, _), = super().infer(*ins)
        return [(shape, "int8")]

    def rescale(self, j: int, x: np.ndarray) -> np.ndarray:
        g = self.attr
        if g("copy")[j]:
            return x.astype(np.int8)
        v = x.astype(np.int64) - g("x_zero_points")[j]
        if g("scaling") == "shift":
            return fp.requantize_shift(v, g("shifts")[j], g("y_zero_point"), -128, 127)
        return fp.requantize(v, g("mults")[j], g("shifts")[j], g("y_zero_point"), -128, 127)

    def reference(self, *xs):
        parts = [self.rescale(j, x) for j, x in enumerate(xs) if x is not None]
        return [np.concatenate(parts, axis=self.axis(parts[0].ndim))]

    def context(self, ins, outs):
        ctx = super().context(ins, outs)
        for p in ctx["parts"]:
            j = p["index"]
            p.update(requant=not self.attr("copy")[j], x_zero_point=self.attr("x_zero_points")[j],
                     mult=self.attr("mults")[j], shift=self.attr("shifts")[j])
        ctx.update(y_zero_point=self.attr("y_zero_point"), scaling=self.attr("scaling"),
                   act_min=-128, act_max=127)
        return ctx


@register("QLut")
class QLut(Op):
    """y = table[x + 128]: x int8, table int8 (256,), a constant (attribute `function` names
    the float activation it was computed from, for the report)."""
    template = "ops/lut_q.c.j2"
    float_only = False
    inplace_inputs = (0,)  # lut_q.c.j2: y0[i] = x1[x0[i] + 128], one flat loop

    def infer(self, x, table):
        if x.dtype != "int8" or table.dtype != "int8" or tuple(table.shape) != (256,):
            raise self.refuse(f"QLut takes int8 x and an int8 (256,) table, got {x.dtype}, "
                              f"{table.dtype} {table.shape}")
        return [(x.shape, "int8")]

    def reference(self, x, table):
        return [np.asarray(table, np.int8)[x.astype(np.int64) + 128]]

    def context(self, ins, outs):
        return {"size": outs[0].size}


class _QBinary(Op):
    """Broadcasting int8 binary ops (templates/ops/binary_q.c.j2)."""
    template = "ops/binary_q.c.j2"
    float_only = False
    inplace_inputs = (0, 1)  # binary_q.c.j2 reads both operands at an index before writing it

    def infer(self, a, b):
        if a.dtype != "int8" or b.dtype != "int8":
            raise self.refuse(f"int8 operands expected, got {a.dtype} and {b.dtype}")
        return [(broadcast_shape(a.shape, b.shape), "int8")]

    def context(self, ins, outs):
        ctx = {k: self.attr(k) for k in ("a_zero_point", "b_zero_point", "y_zero_point", "act_min",
                                         "act_max", "scaling", "y_mult", "y_shift")}
        return {**ctx, "kind": self.op_type, "nest": loop_nest(outs[0].shape, [x.shape for x in ins])}


@register("QMul")
class QMul(_QMixin, _QBinary):
    """y = requantize((a - a_zp) * (b - b_zp)) with (y_mult, y_shift) of s_a * s_b / s_y (shift:
    y_shift alone). |product| <= 255 * 255: no overflow."""
    accepts_activation = True  # realised as the [act_min, act_max] clamp

    def parse(self):
        self.check_quant_attrs()

    def reference(self, a, b):
        g = self.attr
        p = (a.astype(np.int64) - g("a_zero_point")) * (b.astype(np.int64) - g("b_zero_point"))
        return [requant(self, p, g("y_mult"), g("y_shift"), 0)]  # as the template's q.requant()


@register("QSub")
class QSub(QAdd, _QBinary):
    """y = a - b: QAdd's attributes and arithmetic with b's offset (b - b_zp) negated."""
    template = _QBinary.template

    def infer(self, a, b):
        return _QBinary.infer(self, a, b)

    def reference(self, a, b):
        neg_b = 2 * self.attr("b_zero_point") - b.astype(np.int64)  # neg_b - b_zp = b_zp - b
        return QAdd.reference(self, a, neg_b)

    def context(self, ins, outs):
        return {**_QBinary.context(self, ins, outs), **self.add_params()}
