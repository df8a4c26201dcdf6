"""Integer operators of a quantized graph (made by nncc/quant/rewrite.py, never read from ONNX).

Activations are int8 with real = scale * (q - zero_point) (TFLite's int8 scheme: asymmetric
activations, symmetric per-output-channel weights, int32 bias with scale s_in * s_w[c]).
Everything an integer kernel needs is in its attributes and constant inputs, so `reference()`
is pure integer numpy, bit-exact with the C templates (templates/ops/*_q.c.j2):
  QConv / QGemm: acc = bias + sum((x - x_zp) * w) in int32; y = requantize(acc) per channel,
    either (multiplier, shift) (`scaling` "fixed"), a shift alone ("shift") or a double-shift
    code ("double-shift": the multiplier input / attribute holds e, the shift n, of
    2^-n * (1 +- 2^-|e|), nncc/quant/double_shift.py), plus y_zp,
    clamped to [act_min, act_max] -- a fused ReLU / ReLU6 is this clamp. QConv has Conv's
    in-place variants (dw_inplace, pw_inplace): same numbers, less RAM; the kernel keeps what
    it has still to read in its workspace (a copy buffer, or the shared kernels' scratch,
    nncc/ops/qconv_shared.py).
    A QConv may carry a fused QAdd (attribute QADD, set by nncc/quant/fuse_qadd.py): input 5 is
    the residual r, y = QAdd(conv, r) read and written at the same index, so y may overwrite r;
    input 6, when there, the QAdd's table of terms (QAdd.term_table()) its kernel reads.
  QAdd: TFLite's int8 Add (both operands rescaled to a common fixed-point scale).
  QMaxPool / QAveragePool (and the global forms): output scale = input scale, no requantization.
  QView: Reshape / Flatten / Squeeze / Unsqueeze of an integer tensor.
  Quantize / Dequantize: float32 <-> int8 where a float op (the output Softmax) takes over.
Packed form (what nncc/quant/rewrite.py writes; imported QDQ models use the form above): the
bias and the per-channel requantization of a QConv / QGemm share one int16 per output channel,
p = (b << pack_bits) | k, so they cost 2 bytes per channel instead of 9. The bias is b * 2^bias_shift
and the channel's weight scale is the layer's scale times 2^-k, so its requantization is the
layer's (attribute `multiplier`, `shift_base`) with the shift moved by k (see unpack()).
Accumulator bound: |x - x_zp| <= 255 and |w| <= 127, so K = C/group * kernel taps must stay
below 2^31 / (255 * 127) = 66 311 -- checked in QConv/QGemm.infer.
int16 activations (nncc/quant/int16.py): any requantizing kernel may read and write int8 or
int16 (attribute y_dtype, default int8; a pool or view keeps its input's type); a kernel reading
int16 accumulates in int64 with an int64 bias (the bound is in int16.py) and is never packed.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import Node, TensorInfo
from ..quant import fixed_point as fp
from ..quant import int16 as q16
from . import Op, register
from .conv import Conv
from .pool import AveragePool, GlobalAveragePool, GlobalMaxPool, MaxPool, Window, tap_counts
from .qconv_shared import mm_weights, packed_slack, q8_flags, shared_context
from .qconv_wino import sums_fit, wino_weights

MAX_TERMS = (2 ** 31 - 1) // (255 * 127)
# QConv attribute of a fused QAdd: {"name", "conv_first": conv output is the Add's operand a,
# "attrs": the QAdd's attributes}; its residual operand is QConv input RESIDUAL_INDEX.
QADD = "nncc_qadd"
RESIDUAL_INDEX = 5
TABLE_INDEX = 6


def requant(op: Op, acc: np.ndarray, mult, shift, axis: int, wide: bool = False) -> np.ndarray:
    """Per-channel requantization along `axis` of acc, as the *_q.c.j2 templates do it; `wide`:
    acc is the int64 accumulator of a kernel reading int16 (quant/int16.py)."""
    shape = [1] * acc.ndim
    shape[axis] = -1
    shift = np.asarray(shift, np.int64).reshape(shape)
    zp, lo, hi = op.attr("y_zero_point"), op.attr("act_min"), op.attr("act_max")
    dt = np.dtype(op.attr("y_dtype", "int8"))
    if wide:
        if op.attr("scaling") == "shift":
            return q16.requantize64_shift(acc, shift, zp, lo, hi, dt)
        return q16.requantize64(acc, np.asarray(mult, np.int64).reshape(shape), shift, zp, lo, hi, dt)
    if op.attr("scaling") == "shift":
        return fp.requantize_shift(acc, shift, zp, lo, hi, dt)
    if op.attr("scaling") == "double-shift":
        return fp.requantize_dshift(acc, shift, np.asarray(mult, np.int64).reshape(shape), zp, lo, hi, dt)
    return fp.requantize(acc, np.asarray(mult, np.int64).reshape(shape), shift, zp, lo, hi, dt)


PACK_ATTRS = ("pack_bits", "bias_shift", "multiplier", "shift_base")


def unpack(op: Op, packed, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Packed int16 per channel (or None: all zero) -> (bias, multiplier, shift) int64 arrays of
    the unpacked form. As the C does it: k = p & mask (two's complement), b = (p - k) / 2^bits
    (exact), bias = b * 2^bias_shift; shift = shift_base - k for "fixed" (TFLite's sign: > 0
    shifts left), shift_base + k for "shift" and "double-shift" (> 0 shifts right)."""
    p = np.zeros(n, np.int64) if packed is None else np.asarray(packed, np.int64).reshape(n)
    bits, g = op.attr("pack_bits"), op.attr
    k = p & ((1 << bits) - 1)
    bias = ((p - k) >> bits) << g("bias_shift")
    shift = g("shift_base") - k if g("scaling") == "fixed" else g("shift_base") + k
    return bias, np.full(n, g("multiplier"), np.int64), shift


def accumulate_requant(op: Op, acc: np.ndarray, b, mult, shift, n: int, wide: bool = False
                       ) -> np.ndarray:
    """acc (channels on axis 1) + bias, requantized: either form (unpacked or packed)."""
    if op.attr("pack_bits") is not None:
        b, mult, shift = unpack(op, b, n)
    if b is not None:
        acc = acc + np.asarray(b, np.int64).reshape(1, -1, *([1] * (acc.ndim - 2)))
    return requant(op, acc, mult, shift, 1, wide)


INT_TYPES = ("int8", "int16")


def check_widths(op: Op, x, w) -> str:
    """Refuse types and sizes the integer kernels cannot take; -> the output dtype. K terms of
    int8 x stay below MAX_TERMS (int32 accumulator), of int16 x below MAX_TERMS_16 (int64)."""
    y = op.attr("y_dtype", "int8")
    if x.dtype not in INT_TYPES or w.dtype != "int8" or y not in INT_TYPES:
        raise op.refuse(f"takes int8/int16 x and int8 w, got {x.dtype} and {w.dtype} -> {y}")
    terms = int(np.prod(w.shape[1:]))
    if terms > (MAX_TERMS if x.dtype == "int8" else q16.MAX_TERMS_16):
        raise op.refuse(f"{terms} terms per output overflow the {x.dtype} kernel's accumulator")
    if x.dtype == "int16" and op.attr("pack_bits") is not None:
        raise op.refuse("the packed form takes int8 activations only")
    return y


def type_context(ins, outs) -> dict:
    """C element types of a quantized kernel: x (input 0), y, the accumulator."""
    xt = ins[0].dtype if ins and ins[0] is not None else "int8"
    return {"xt": xt + "_t", "yt": outs[0].dtype + "_t",
            "acct": "int64_t" if xt == "int16" else "int32_t", "wide": xt == "int16",
            "qmin": q16.qrange(outs[0].dtype)[0], "qmax": q16.qrange(outs[0].dtype)[1]}


class _QMixin:
    """Attributes every requantizing kernel has; their context for the templates."""

    def check_quant_attrs(self):
        for a in ("y_zero_point", "act_min", "act_max", "scaling"):
            if self.attr(a) is None:
                raise self.refuse(f"missing attribute {a} (made only by nncc/quant/rewrite.py)")
        if self.attr("scaling") not in ("fixed", "shift", "double-shift"):
            raise self.refuse(f"scaling={self.attr('scaling')!r}")
        if self.attr("pack_bits") is not None:
            if any(self.attr(a) is None for a in PACK_ATTRS):
                raise self.refuse(f"packed form needs attributes {', '.join(PACK_ATTRS)}")
            if not 0 <= self.attr("pack_bits") <= 8 or not 0 <= self.attr("bias_shift") <= 30:
                raise self.refuse(f"pack_bits={self.attr('pack_bits')}, "
                                  f"bias_shift={self.attr('bias_shift')}")

    def check_packed_input(self, p, n: int) -> None:
        if self.attr("pack_bits") is not None and p is not None and (p.dtype != "int16" or p.size != n):
            raise self.refuse(f"packed bias/shift input must be int16 x {n}, got {p.dtype} {p.shape}")

    def q_context(self) -> dict:
        ctx = {k: self.attr(k) for k in ("x_zero_point", "y_zero_point", "act_min", "act_max",
                                         "scaling")}
        ctx["packed"] = self.attr("pack_bits") is not None
        ctx.update({k: self.attr(k) for k in PACK_ATTRS})
        return ctx


@register("QConv")
class QConv(_QMixin, Conv):
    """Inputs: x int8 (or int16: nncc/quant/int16.py), w int8 (M x C/group x k...), bias int32
    (M), multiplier int32 (M) or "" with scaling "shift", shift int8 (M; > 0 shifts right);
    packed form: x, w, packed int16 (M) or "" (module docstring); with a fused QAdd, the
    residual as input RESIDUAL_INDEX and maybe its table as input TABLE_INDEX."""
    template = "ops/conv_q.c.j2"

    def parse(self):
        super().parse()
        self.check_quant_attrs()
        self.qadd = None
        info = self.attr(QADD)
        if info:
            ins = self.node.inputs
            if len(ins) not in (RESIDUAL_INDEX + 1, TABLE_INDEX + 1) or not ins[RESIDUAL_INDEX]:
                raise self.refuse(f"a fused QAdd needs its residual as input {RESIDUAL_INDEX} "
                                  f"(and at most its table after it)")
            # the Add's own op: its checks, and its reference is reused as is
            self.qadd = QAdd(Node(info["name"], "QAdd", ["a", "b"], ["y"], dict(info["attrs"])))
            self.conv_first = bool(info["conv_first"])
            self.inplace_inputs = (RESIDUAL_INDEX,)  # conv_q.c.j2 reads r[i] just before y[i]
        elif len(self.node.inputs) > RESIDUAL_INDEX:
            raise self.refuse(f"{len(self.node.inputs)} inputs without a fused QAdd")

    def infer(self, x, w, b=None, mult=None, shift=None, r=None, table=None):
        win = self.geometry(x, w)
        ydt = check_widths(self, x, w)
        self.check_packed_input(b, w.shape[0])
        shape = (x.shape[0], w.shape[0], *win.out_size)
        if self.qadd is not None and (tuple(r.shape) != shape or r.dtype not in INT_TYPES):
            raise ShapeError(f"QConv residual {r.dtype} {r.shape}, expected int8/int16 {shape}")
        if table is not None and (table.dtype != "int32" or tuple(table.shape) != (512,)):
            raise ShapeError(f"QConv QAdd table {table.dtype} {table.shape}, expected int32 (512,)")
        return [(shape, self.qadd.attr("y_dtype", "int8") if self.qadd is not None else ydt)]

    def reference(self, x, w, b=None, mult=None, shift=None, r=None, table=None):
        """The unfused arithmetic: a fused QAdd's table (only a kernel's shortcut) is not read."""
        win = self.geometry(TensorInfo("x", x.shape), TensorInfo("w", w.shape))
        acc = int_conv(x.astype(np.int64) - self.attr("x_zero_point"), w.astype(np.int64), win,
                       self.group)
        # Exact in int64; the C's int32 accumulator cannot overflow (MAX_TERMS; int64 for int16
        # x, MAX_TERMS_16), so they agree.
        y = accumulate_requant(self, acc, b, mult, shift, w.shape[0], x.dtype == np.int16)
        if self.qadd is None:
            return [y]
        return self.qadd.reference(*((y, r) if self.conv_first else (r, y)))

    def fused_ops(self) -> list[str]:
        """The conv's own activation, then a fused QAdd and its activation."""
        own = super().fused_ops()
        return own if self.qadd is None else own + ["Add", *self.qadd.fused_ops()]

    def context(self, ins, outs, kernel=None):
        """The template's variables for the kernel variant `kernel` (default the node's)."""
        ctx = super().context(ins, outs)
        ctx.update(self.q_context(), **type_context(ins, outs))
        if self.qadd is not None:
            ctx["res_t"] = ins[RESIDUAL_INDEX].dtype + "_t"  # the residual's C type
        ctx["qadd"] = None if self.qadd is None else self.qadd.add_params()
        ctx["conv_first"] = self.qadd is not None and self.conv_first
        ctx["residual_index"] = RESIDUAL_INDEX
        ctx["qadd_table"] = len(ins) > TABLE_INDEX and ins[TABLE_INDEX] is not None
        ctx["table_index"] = TABLE_INDEX
        ctx.update(shared_context(self, ctx, ins, outs, kernel))  # one kernel for many layers, or none
        return ctx

    def const_slack(self, ins):
        w = ins[1]
        if w.dtype != "int8" or len(ins) < 3 or ins[2] is None:
            return {}
        return {2: packed_slack(w.shape, self.group)}

    def const_layouts(self, ins, outs):
        """The "mm" kind reads its weights by channel pairs (mm_weights), the Winograd kernel
        transformed (qconv_wino.wino_weights)."""
        ctx = self.context(ins, outs)
        kind = ctx["shared_kind"] if ctx["shared"] else None
        return {1: mm_weights} if kind == "mm" else {1: wino_weights} if kind == "wino" else {}

    def winograd_fits(self, ins, outs) -> bool:
        """The "winograd" kernel can compute this layer: it is shared as that kind (geometry,
        types: qconv_shared.py) and its integer sums fit int32 (qconv_wino.sums_fit)."""
        ctx = self.context(ins, outs, "winograd")
        return (bool(ctx["shared"]) and ctx["shared_kind"] == "wino" and ins[1].data is not None
                and sums_fit(ins[1].data))

    def inplace_kernel(self, ins, outs) -> tuple[int, str] | None:
        """Conv's two variants writing y over x (nncc/ops/conv.py), in conv_q.c.j2: the
        specialized kernels requantize into a copy buffer, then copy over x; the shared ones
        (qconv_shared.py) keep the inputs still to be read in their scratch instead."""
        return None if self.qadd is not None else self.inplace_variant(ins, outs)

    def workspace_bytes(self, ins, outs, kernel="direct"):
        shared = self.context(ins, outs, kernel)
        if shared["shared"]:  # a copy buffer or a scratch, as nncc/ops/qconv_shared.py sizes it
            return shared["ws_bytes"]
        return super().workspace_bytes(ins, outs, kernel)


def int_conv(x, w, win: Window, group: int) -> np.ndarray:
    """Direct convolution in int64; padding contributes 0 (x is already offset by its zp)."""
    n, c = x.shape[:2]
    m, cg = w.shape[:2]
    xp = np.pad(x, [(0, 0), (0, 0)] + list(zip(win.pads_begin, win.pads_end)))
    xg = xp.reshape(n, group, c // group, *xp.shape[2:])
    wg = w.reshape(group, m // group, cg, *w.shape[2:])
    y = np.zeros((n, group, m // group, *win.out_size), np.int64)
    for tap in np.ndindex(*win.kernel):
        sl = tuple(slice(tap[i] * win.dilations[i],
                         tap[i] * win.dilations[i] + (win.out_size[i] - 1) * win.strides[i] + 1,
                         win.strides[i]) for i in range(win.rank))
        patch = xg[(slice(None),) * 3 + sl]
        y += np.einsum("ngc...,gmc->ngm...", patch, wg[(slice(None),) * 3 + tap])
    return y.reshape(n, m, *win.out_size)


@register("QGemm")
class QGemm(_QMixin, Op):
    """y (M x N) = requantize(bias + (a - a_zp) @ w^T): a int8 M x K, w int8 N x K (one row per
    output channel), bias int32 (N) or "", multiplier int32 (N) or "", shift int8 (N); packed
    form: a, w, packed int16 (N) or ""."""
    template = "ops/gemm_q.c.j2"
    accepts_activation = True  # realised as the [act_min, act_max] clamp

    def parse(self):
        self.check_quant_attrs()

    def infer(self, a, w, b=None, mult=None, shift=None):
        if len(a.shape) != 2 or len(w.shape) != 2 or a.shape[1] != w.shape[1]:
            raise ShapeError(f"QGemm: a {a.shape}, w {w.shape}")
        ydt = check_widths(self, a, w)
        self.check_packed_input(b, w.shape[0])
        return [((a.shape[0], w.shape[0]), ydt)]

    def reference(self, a, w, b=None, mult=None, shift=None):
        acc = (a.astype(np.int64) - self.attr("x_zero_point")) @ w.astype(np.int64).T
        return [accumulate_requant(self, acc, b, mult, shift, w.shape[0], a.dtype == np.int16)]

    def macs(self, ins, outs):
        return ins[0].shape[0] * ins[1].shape[0] * ins[1].shape[1]

    def context(self, ins, outs):
        ctx = {"M": ins[0].shape[0], "N": ins[1].shape[0], "K": ins[1].shape[1],
               "has_bias": len(ins) > 2 and ins[2] is not None, **self.q_context(),
               **type_context(ins, outs)}
        # int8 with the packed form, flagged q8: the DSP path requantizes by nncc_q8_30()
        int8 = ins[0].dtype == ins[1].dtype == outs[0].dtype == "int8"
        ctx["q8"] = int8 and ctx["packed"] and bool(q8_flags(ctx, ctx["K"])[1])
        # the "gemm4" kernels (chosen for the target: nncc/lower.py) read their weights as
        # gemm4_weights(); "gemm4dsp" also widens each input row into its workspace (int16,
        # 2 K bytes), which DSP cores sum in the shared loop nncc_qgemm4_loop when some layer
        # of the model is large enough to pay for its ~350 bytes of code (the emitter ORs the
        # needs)
        ctx["w4"] = self.node.kernel in GEMM4_KERNELS and self.gemm4_fits(ins)
        ctx["widened"] = ctx["w4"] and self.node.kernel == "gemm4dsp"
        ctx["shared"] = ["nncc_qgemm4_loop"] if ctx["widened"] else []
        ctx["shared_needs"] = {"qgemm4_loop": ctx["widened"] and ctx["K"] * ctx["N"] >= GEMM4_LOOP_MACS}
        return ctx

    def const_layouts(self, ins, outs):
        return {1: gemm4_weights} if self.context(ins, outs)["w4"] else {}

    def workspace_bytes(self, ins, outs, kernel="direct"):
        if kernel == "gemm4dsp" and self.gemm4_fits(ins):
            return 2 * ins[1].shape[1]  # one input row widened to int16 pairs
        return super().workspace_bytes(ins, outs, kernel)

    @staticmethod
    def gemm4_fits(ins) -> bool:
        """The "gemm4" kernel can compute the layer: constant int8 weights of whole words (K % 4)
        and whole 4-row blocks (N % 4), an int8 input."""
        a, w = ins[0], ins[1]
        return (a.dtype == w.dtype == "int8" and w.data is not None
                and w.shape[1] % 4 == 0 and w.shape[0] % 4 == 0)


# Multiply-accumulates (per row of the input) from which a QGemm layer brings nncc_qgemm4_loop
# into its model (and every QGemm layer of the model then uses it) rather than running its own
# 2-output loop in C: KWS's 64 x 12 layer alone would gain ~700 cycles for ~200 bytes of code.
GEMM4_LOOP_MACS = 4096
# QGemm kernels that read gemm4_weights(): "gemm4" (ARMv6-M: 4 rows at a time in C) and
# "gemm4dsp" (DSP cores: the input row widened into the workspace, nncc_qgemm4_loop)
GEMM4_KERNELS = ("gemm4", "gemm4dsp")


def gemm4_weights(w: np.ndarray) -> np.ndarray:
    """QGemm's weights (N x K, K and N multiples of 4) as its kernels read them: per block of 4
    rows (output channels), per word of 4 inputs, the 4 rows' words one after another (row n's
    inputs 4t..4t+3 at 16 t + 4 (n % 4) in block n // 4), so 4 outputs' next 4 weights are one
    run of 16 bytes at fixed offsets, whatever K."""
    n, k = w.shape
    return np.ascontiguousarray(w.reshape(n // 4, 4, k // 4, 4).transpose(0, 2, 1, 3)).reshape(n, k)


@register("QAdd")
class QAdd(_QMixin, Op):
    """y = a + b for int8 operands of one shape and their own scales (TFLite int8 Add).
    fixed: a' = mul_qm((a - za) << 20, m_a, s_a), the same for b, y = mul_qm(a' + b', m_y, s_y).
    shift: a' = (a - za) << l_a, b' = (b - zb) << l_b, y = shift_round(a' + b', s_y).
    double-shift: as fixed, each mul_qm(v, m, s) a dshift_round(v, s, m)."""
    template = "ops/add_q.c.j2"
    accepts_activation = True
    inplace_inputs = (0, 1)  # add_q.c.j2 reads both operands at i before writing y0[i]

    def parse(self):
        self.check_quant_attrs()
        for a in ("a_zero_point", "b_zero_point", "a_mult", "a_shift", "b_mult", "b_shift",
                  "y_mult", "y_shift"):
            if self.attr(a) is None:
                raise self.refuse(f"missing attribute {a}")

    def infer(self, a, b):
        if a.shape != b.shape:
            raise self.refuse(f"broadcasting int8 Add ({a.shape} + {b.shape})")
        if a.dtype not in INT_TYPES or b.dtype not in INT_TYPES:
            raise self.refuse(f"operands {a.dtype} and {b.dtype}")
        return [(a.shape, self.attr("y_dtype", "int8"))]

    def reference(self, a, b):
        g = self.attr
        va = a.astype(np.int64) - g("a_zero_point")
        vb = b.astype(np.int64) - g("b_zero_point")
        if g("scaling") == "shift":
            s = fp.saturating_left_shift(va, g("a_shift")).astype(np.int64) + \
                fp.saturating_left_shift(vb, g("b_shift"))
            return [fp.requantize_shift(fp.clamp(s, fp.INT32_MIN, fp.INT32_MAX), g("y_shift"),
                                        g("y_zero_point"), g("act_min"), g("act_max"),
                                        np.dtype(g("y_dtype", "int8")))]
        ls = g("left_shift", 20)  # 15 with an int16 operand: |v| <= 2^16 stays in int32
        if g("scaling") == "double-shift":
            sa = fp.dshift_round(va << ls, g("a_shift"), g("a_mult"))
            sb = fp.dshift_round(vb << ls, g("b_shift"), g("b_mult"))
            s = fp.clamp(sa.astype(np.int64) + sb, fp.INT32_MIN, fp.INT32_MAX)
            return [fp.requantize_dshift(s, g("y_shift"), g("y_mult"), g("y_zero_point"),
                                         g("act_min"), g("act_max"), np.dtype(g("y_dtype", "int8")))]
        s = fp.clamp(self.fixed_term(a, "a").astype(np.int64) + self.fixed_term(b, "b"),
                     fp.INT32_MIN, fp.INT32_MAX)
        return [fp.requantize(s, g("y_mult"), g("y_shift"), g("y_zero_point"), g("act_min"),
                              g("act_max"), np.dtype(g("y_dtype", "int8")))]

    def fixed_term(self, x, operand: str) -> np.ndarray:
        """With fixed scaling, operand `operand`'s ("a" or "b") term of the sum for its integer
        values x: (x - zp) << left_shift (as reference()) times its multiplier."""
        g = self.attr
        v = np.asarray(x, np.int64) - g(f"{operand}_zero_point")
        return fp.multiply_by_quantized_multiplier(v << g("left_shift", 20), g(f"{operand}_mult"),
                                                   g(f"{operand}_shift"))

    def term_table(self, conv_first: bool) -> np.ndarray:
        """A fused QAdd's terms at every int8 value, doubled (int32: the kernels requantize the
        sum's double): the conv's operand's at 0..255, then the residual's at 256..511, value
        v at v + 128."""
        x = np.arange(-128, 128)
        conv, res = ("a", "b") if conv_first else ("b", "a")
        t = 2 * np.concatenate([self.fixed_term(x, conv), self.fixed_term(x, res)])
        assert np.abs(t).max() < 2 ** 31
        return t.astype(np.int32)

    def add_params(self) -> dict:
        """What the _quant.j2 macro qadd() reads."""
        keys = ("a_zero_point", "b_zero_point", "a_mult", "a_shift", "b_mult", "b_shift", "y_mult",
                "y_shift")
        return {**{k: self.attr(k) for k in keys}, **self.q_context(),
                "left_shift": self.attr("left_shift", 20)}

    def context(self, ins, outs):
        return {"size": outs[0].size, **self.add_params(), **type_context(ins, outs)}


class _QPool:
    """Integer pooling; the output keeps the input's scale and zero point (attr x_zero_point)."""
    template = "ops/pool_q.c.j2"

    def infer(self, x):
        if x.dtype not in INT_TYPES:
            raise self.refuse(f"integer pooling of a {x.dtype} tensor")
        win = self.geometry(x)
        if int(np.prod(win.kernel)) >= 1 << 15:  # the int32 sum of (x - zp) <= taps * 65535
            raise self.refuse(f"{int(np.prod(win.kernel))} taps overflow the int32 sum")
        return [((*x.shape[:2], *self.out_spatial(x, win)), x.dtype)]

    def reference(self, x):
        info = TensorInfo("x", x.shape)
        win = self.geometry(info)
        xs = x.reshape(*x.shape[:2], *win.in_size).astype(np.int64)
        if self.kind == "max":
            y = window_reduce(xs, win, "max")
        else:
            total = window_reduce(xs - self.attr("x_zero_point"), win, "sum")
            counts = [np.array(tap_counts(win, i, self.include_pad)) for i in range(win.rank)]
            div = np.ones(win.out_size, np.int64)
            for i, c in enumerate(counts):
                div = div * c.reshape([-1 if j == i else 1 for j in range(win.rank)])
            rnd = fp.div_round_even if self.attr("rounding") == "half_even" else fp.div_round
            y = fp.clamp(rnd(total, div).astype(np.int64) + self.attr("x_zero_point"),
                         *q16.qrange(x.dtype))
        return [y.astype(x.dtype).reshape(*x.shape[:2], *self.out_spatial(info, win))]

    def context(self, ins, outs):
        ctx = super().context(ins, outs)
        ctx["x_zero_point"] = self.attr("x_zero_point", 0)
        ctx.update(type_context(ins, outs))
        # "half_even": ties to even, as onnxruntime (nncc/quant/import_qdq.py sets it)
        ctx["div"] = "nncc_div_round_even" if self.attr("rounding") == "half_even" else "nncc_div_round"
        return ctx


def window_reduce(x: np.ndarray, win: Window, kind: str) -> np.ndarray:
    """Max or sum over each window of taps inside the input (padding never counts)."""
    nd = win.rank
    big = np.iinfo(np.int64).min if kind == "max" else 0
    ends = [max(win.pads_end[i], (win.out_size[i] - 1) * win.strides[i]
                + (win.kernel[i] - 1) * win.dilations[i] + 1 - win.pads_begin[i] - win.in_size[i])
            for i in range(nd)]
    xp = np.pad(x, [(0, 0), (0, 0)] + [(win.pads_begin[i], ends[i]) for i in range(nd)],
                constant_values=big)
    acc = np.full((*x.shape[:2], *win.out_size), big, np.int64)
    for tap in np.ndindex(*win.kernel):
        sl = tuple(slice(tap[i] * win.dilations[i],
                         tap[i] * win.dilations[i] + (win.out_size[i] - 1) * win.strides[i] + 1,
                         win.strides[i]) for i in range(nd))
        patch = xp[(slice(None),) * 2 + sl]
        acc = np.maximum(acc, patch) if kind == "max" else acc + patch
    return acc


@register("QMaxPool")
class QMaxPool(_QPool, MaxPool):
    pass


@register("QAveragePool")
class QAveragePool(_QPool, AveragePool):
    pass


@register("QGlobalMaxPool")
class QGlobalMaxPool(_QPool, GlobalMaxPool):
    pass


@register("QGlobalAveragePool")
class QGlobalAveragePool(_QPool, GlobalAveragePool):
    pass


@register("QView")
class QView(Op):
    """The input's data under attrs["shape"] (Reshape, Flatten, Squeeze... of an integer
    tensor): a view, so nncc/memory/alias.py usually removes the copy."""
    template = "ops/copy.c.j2"
    view = True
    float_only = False

    def infer(self, x):
        shape = tuple(int(d) for d in self.attr("shape"))
        if int(np.prod(shape)) != x.size:
            raise ShapeError(f"QView of {x.shape} as {shape}")
        return [(shape, x.dtype)]

    def reference(self, x):
        return [np.array(x).reshape(tuple(self.attr("shape")))]


@register("Quantize")
class Quantize(Op):
    """float32 -> int8 (or attribute dtype "int16"): q = clamp(round(x / scale) + zero_point),
    ties away from zero."""
    template = "ops/quantize_q.c.j2"

    def infer(self, x):
        return [(x.shape, self.attr("dtype", "int8"))]

    def reference(self, x):
        dt = self.attr("dtype", "int8")
        return [fp.quantize_float(x, self.attr("scale"), self.attr("zero_point"), *q16.qrange(dt),
                                  dtype=np.dtype(dt))]

    def context(self, ins, outs):
        return {"size": outs[0].size, "to_float": False, "scale": self.attr("scale"),
                "zero_point": self.attr("zero_point"), **type_context(ins, outs)}


@register("Dequantize")
class Dequantize(Op):
    """int8 -> float32: x = (q - zero_point) * scale."""
    template = "ops/quantize_q.c.j2"
    float_only = False

    def infer(self, x):
        return [(x.shape, "float32")]

    def reference(self, x):
        return [fp.dequantize(x, self.attr("scale"), self.attr("zero_point"))]

    def context(self, ins, outs):
        return {"size": outs[0].size, "to_float": True, "scale": self.attr("scale"),
                "zero_point": self.attr("zero_point")}
