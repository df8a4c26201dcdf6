"""Quantize stage, step 2: float IR (after the -O2 passes) + calibrated ranges -> integer IR.

The scheme is TFLite's int8 one, so our numbers can be compared with TFLite / CMSIS-NN:
- activations int8, asymmetric: the range [min(lo, 0), max(hi, 0)] onto [-128, 127] with an
  integer zero point (0.0 exact). A ReLU output (lo = 0) gets zero point -128: all 256 steps
  hold non-negative values, no bit is wasted;
- weights int8, symmetric [-127, 127], one scale per output channel (Conv and Gemm/MatMul);
- bias int32 with scale s_in * s_w[c]; requantization per channel by fixed point
  (`scaling="fixed"`: multiplier + shift) or, with `scaling="shift"`, by a shift alone: every
  activation and weight scale is then chosen here as a power of two, so s_in * s_w / s_out is
  exactly 2^-n (choosing the scales, not rounding multipliers afterwards, is what keeps accuracy);
  `scaling="double-shift"` raises output (and, unpacked, weight) scales by < 1.2x so that it
  is exactly 2^-n +- 2^-m (quant/double_shift.py);
- by default (packed=True) a QConv / QGemm stores bias and requantization in one int16 per
  output channel (nncc/ops/quantized.py): channel weight scales are the layer's times 2^-k
  (packed_scales), the layer's multiplier is an attribute, the bias keeps 12-16 bits -- 2 bytes
  per channel instead of 9, which keeps int8 weights <= 0.26 x float on depthwise nets;
- a fused ReLU / ReLU6 / Clip becomes the [act_min, act_max] clamp of the kernel;
- MatMul by a constant followed by Add of a constant bias becomes one QGemm;
- pools and views keep their input's scale and zero point (as TFLite's);
- a Softmax producing a graph output runs in float: Dequantize, then the float Softmax, whose
  output stays float32 (documented in the generated header);
- ConvTranspose, Concat, activation tables, Mul, Sub, Transpose and per-channel affine maps:
  nncc/quant/rewrite_more.py.
Anything else is refused with UnsupportedOp naming the nodes.

A tensor whose calibrated range is all zeros gets scale 2^-7 (documented safe behaviour: no
division by zero; the tensor stays exactly 0); a weight channel of zeros gets its layer's scale.
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOp
from ..ir import Graph, Node, QuantParams, TensorInfo, verify
from ..ops import FUSED_ACTIVATION, make_op
from ..passes._util import fresh_name, sole_consumer
from . import double_shift
from . import fixed_point as fp
from .int16 import BIAS_LIMIT

QMIN, QMAX = -128, 127
ZERO_RANGE_SCALE = 2.0 ** -7
MAX_K = 15  # packed form: channel weight scales span at most 2^15 within a layer (4 bits)
# Packed form: the most a channel's bias may be off after its 16 - pack_bits bit rounding, in
# output steps. Past it the layer's k range is narrowed, and at k = 0 the layer is unpacked: a
# channel with tiny weights and a large bias (MLPerf VWW) would otherwise be off by hundreds.
MAX_BIAS_ERROR = 0.25
VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
POOLS = ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")


def round_away(x) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return np.sign(x) * np.floor(np.abs(x) + 0.5)


def act_params(lo: float, hi: float, scaling: str) -> QuantParams:
    """Per-tensor asymmetric int8 parameters covering [lo, hi] and 0."""
    rmin, rmax = min(float(lo), 0.0), max(float(hi), 0.0)
    span = rmax - rmin
    scale = fp.round_scale(span / (QMAX - QMIN), scaling) if span > 0.0 else ZERO_RANGE_SCALE
    zp = int(np.clip(round_away(QMIN - rmin / scale), QMIN, QMAX))
    return QuantParams((float(np.float32(scale)),), (zp,))


def weight_params(w: np.ndarray, scaling: str, packed: bool = False, per_channel: bool = True,
                  max_k: int = MAX_K) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric per-output-channel (axis 0) int8 weights -> (int8 weights, float64 scales,
    k). Unpacked, each channel's scale fits its range (a power of two with "shift"). Packed,
    channel c's scale is the layer's scale (that of its widest channel) times 2^-k[c], k[c] in
    [0, max_k]: the largest such that the channel's range still fits, so at most one bit of
    the channel's int8 range is lost, and its requantization is the layer's shifted by k[c].
    per_channel=False: every channel takes the layer's range (one scale per tensor)."""
    flat, maxabs, layer = channel_ranges(w, per_channel)
    if scaling == "shift":
        exps = np.array([fp.pot_exponent(m / 127.0) for m in maxabs])
        k = np.clip(exps.max() - exps, 0, max_k) if packed else np.zeros(len(exps), np.int64)
        scales = 2.0 ** (exps.max() - k) if packed else 2.0 ** exps
    elif packed:
        scales, k = packed_scales(flat, maxabs, layer, max_k=max_k)
    else:
        k, scales = np.zeros(len(maxabs), np.int64), maxabs / 127.0
    return int8_weights(flat, scales).reshape(w.shape), scales, k.astype(np.int64)


def layer_weights(w: np.ndarray, scaling: str, s_in: float, s_out: float, packed: bool,
                  per_channel: bool = True, max_k: int = MAX_K
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(int8 weights, float64 scales, k) of a QConv / QGemm reading scale s_in and writing
    s_out: weight_params, or for double-shift its grid-exact form (double_shift.weight_params,
    which needs s_in / s_out). What the rewrite stores and bias correction (datafree.py) uses."""
    if scaling == "double-shift":
        return double_shift.weight_params(w, s_in, s_out, packed, per_channel, max_k)
    return weight_params(w, scaling, packed, per_channel, max_k)


def int8_weights(flat: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Channels x rest float weights on per-channel scales -> symmetric int8 in [-127, 127]."""
    return np.clip(round_away(flat / np.asarray(scales)[:, None]), -127, 127).astype(np.int8)


def channel_ranges(w: np.ndarray, per_channel: bool = True) -> tuple[np.ndarray, np.ndarray, float]:
    """(w as float64 channels x rest, each channel's max |w| (a zero channel, or every channel
    when not per_channel: the layer's), the layer's max |w| (127 when all zero))."""
    flat = np.asarray(w, np.float64).reshape(w.shape[0], -1)
    maxabs = np.abs(flat).max(axis=1)
    layer = maxabs.max() if maxabs.max() > 0 else 127.0
    return flat, np.where((maxabs > 0) & per_channel, maxabs, layer), layer


def packed_scales(flat: np.ndarray, maxabs: np.ndarray, layer: float, factors=None,
                  max_k: int = MAX_K):
    """-> (scales, k) of the packed form for `fixed`: the layer scale is layer / 127 times the
    factor in [1, 2) (16 candidates, or `factors`) that minimises the layer's weight rounding
    error; each channel then takes the finest scale 2^-k below it that still covers its range."""
    best = None
    for t in 2.0 ** (np.arange(16) / 16) if factors is None else factors:
        s_layer = layer / 127.0 * t
        k = np.clip(np.floor(np.log2(s_layer * 127.0 / maxabs)), 0, max_k).astype(np.int64)
        scales = s_layer * 2.0 ** -k
        q = int8_weights(flat, scales).astype(np.float64)
        err = float(np.sum((flat - q * scales[:, None]) ** 2))
        if best is None or err < best[0]:
            best = (err, scales, k)
    return best[1], best[2]


def activation_bounds(node: Node) -> tuple[float, float] | None:
    """[a, b] of the node's fused activation as a clip (-inf / inf where it has no bound; no
    activation: both); None for one that is not a clip (Relu and Clip are)."""
    fused = node.attrs.get(FUSED_ACTIVATION)
    if fused is None:
        return -np.inf, np.inf
    if fused["op"] == "Relu":
        return 0.0, np.inf
    if fused["op"] == "Clip":
        lo, hi = fused["params"].get("lo"), fused["params"].get("hi")
        return (-np.inf if lo is None else lo), (np.inf if hi is None else hi)
    return None


def clamp_bounds(node: Node, qp: QuantParams, qmin: int = QMIN, qmax: int = QMAX
                 ) -> tuple[int, int]:
    """The fused activation of `node` as an integer clamp in the output's quantized domain
    (whose type's range is [qmin, qmax]: int8 unless given)."""
    bounds = activation_bounds(node)
    if bounds is None:
        fused = node.attrs[FUSED_ACTIVATION]["op"]
        raise UnsupportedOp(f"{node.op} (node {node.name!r}): fused {fused} has no int8 form yet")
    s, z = qp.scale[0], qp.zero_point[0]
    lo, hi = (int(np.clip(z + round_away(r / s), qmin, qmax)) if np.isfinite(r) else q
              for r, q in zip(bounds, (qmin, qmax)))
    return lo, max(lo, hi)


def matmul_bias_add(g: Graph, node: Node) -> Node | None:
    """The Add that a MatMul by constant weights takes as its bias -- the sole consumer of its
    output, adding a constant of one value per output column without broadcasting the result
    any wider -- or None. The int8 rewrite makes the pair one QGemm (so int16, data-free and
    bias correction see them as one layer)."""
    if node.op != "MatMul" or len(node.inputs) != 2 or not g.is_const(node.inputs[1]):
        return None
    y = node.outputs[0]
    add = sole_consumer(g, y)
    if add is None or add.op != "Add":
        return None
    other = [t for t in add.inputs if t != y]
    n = g.tensors[node.inputs[1]].shape[-1]
    if len(other) == 1 and g.is_const(other[0]) and g.const(other[0]).size == n \
            and g.tensors[add.outputs[0]].shape == g.tensors[y].shape:
        return add
    return None


def gemm_operands(g: Graph, node: Node):
    """-> (a, W as float N x K, bias (N,) or None, node whose output and activation the
    QGemm takes) for Gemm, or MatMul (+ the Add of its constant bias, matmul_bias_add)."""
    a, bname = node.inputs[0], node.inputs[1]
    if not g.is_const(bname) or g.is_const(a) or len(g.tensors[a].shape) != 2:
        raise UnsupportedOp(f"{node.op} (node {node.name!r}): int8 needs a 2-D activation "
                            "times constant weights")
    B = np.asarray(g.const(bname), np.float64)
    if node.op == "MatMul":
        w = B.T
        add = matmul_bias_add(g, node)
        if add is None:
            return a, w, None, node
        bias = next(t for t in add.inputs if t != node.outputs[0])
        return a, w, np.asarray(g.const(bias), np.float64).reshape(w.shape[0]), add
    op = make_op(node)
    if op.trans_a:
        raise UnsupportedOp(f"Gemm (node {node.name!r}): transA=1 in int8")
    w = op.alpha * (B if op.trans_b else B.T)
    c = node.inputs[2] if len(node.inputs) > 2 else ""
    bias = None
    if c and op.beta != 0.0:
        if not g.is_const(c):
            raise UnsupportedOp(f"Gemm (node {node.name!r}): C computed at run time")
        m = g.tensors[a].shape[0]
        cv = np.broadcast_to(np.asarray(g.const(c), np.float64), (m, w.shape[0]))
        if np.any(cv != cv[:1]):
            raise UnsupportedOp(f"Gemm (node {node.name!r}): C varies along M")
        bias = op.beta * cv[0]
    return a, w, bias, node


class Rewriter:
    def __init__(self, g: Graph, ranges: dict, scaling: str = "fixed", packed: bool = True,
                 per_channel: bool = True):
        if scaling not in ("fixed", "shift", "double-shift"):
            raise UnsupportedOp(f"--scaling {scaling} (fixed, shift, double-shift are implemented)")
        self.src, self.ranges, self.scaling, self.packed = g, ranges, scaling, packed
        self.per_channel = per_channel  # weight scales per output channel, else per tensor
        self.g = Graph(g.name)
        self.absorbed: set[str] = set()
        self.refused: list[str] = []
        # QConv / QGemm name -> (input scale, output scale) its weights were chosen for
        self.layer_scales: dict[str, tuple[float, float]] = {}

    # -- tensors ------------------------------------------------------------------------------
    def qp(self, t: str) -> QuantParams:
        return self.g.tensors[t].quant

    def act(self, t: str) -> QuantParams:
        lo, hi = self.ranges[t]
        return act_params(lo, hi, self.scaling)

    def const(self, base: str, value: np.ndarray, dtype: str) -> str:
        name = fresh_name(self.g, fresh_name(self.src, base))
        value = np.ascontiguousarray(value, dtype)
        self.g.add_tensor(TensorInfo(name, tuple(value.shape), dtype, value))
        return name

    def emit(self, node: Node, qp: QuantParams | None) -> None:
        """Add `node`, its output tensor from infer() (checked against the float shape)."""
        op = make_op(node)
        (shape, dtype), = op.infer(*[self.g.tensors[t] if t else None for t in node.inputs])
        out = node.outputs[0]
        if tuple(shape) != tuple(self.src.tensors[out].shape):
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): shape {shape} differs from float")
        self.g.add_tensor(TensorInfo(out, tuple(shape), dtype, quant=qp if dtype != "float32" else None))
        self.g.add_node(node)

    # -- driver -------------------------------------------------------------------------------
    def run(self) -> Graph:
        for t in self.src.inputs:
            info = self.src.tensors[t]
            self.g.add_tensor(TensorInfo(t, info.shape, self.dtype(t), quant=self.act(t)))
            self.g.inputs.append(t)
        for node in self.src.nodes():
            if node.name in self.absorbed:
                continue
            handler = self.handler(node)
            if handler is None:
                self.refused.append(f"{node.op} (node {node.name!r})")
                continue
            try:
                handler(self, node)
            except UnsupportedOp as e:
                self.refused.append(str(e))
        if self.refused:
            raise UnsupportedOp("cannot quantize to int8: " + "; ".join(self.refused))
        self.g.outputs = list(self.src.outputs)
        verify(self.g)
        return self.g

    # -- hooks of nncc/quant/mixed.py (int16 and float layers) ---------------------------------
    def dtype(self, t: str) -> str:
        return "int8"

    def handler(self, node: Node):
        return HANDLERS.get(node.op)

    # -- handlers -----------------------------------------------------------------------------
    def requant_inputs(self, name: str, s_in: float, s_w: np.ndarray, s_out: float,
                       bias: np.ndarray | None, wide: bool = False) -> list[str]:
        """[bias int32 or "", multiplier int32 or "", shift int8] constants of a QConv/QGemm;
        `wide` (int16 input): the bias is int64 (quant/int16.py)."""
        bias_in = ""
        if bias is not None:
            b = round_away(np.asarray(bias, np.float64) / (s_in * s_w))
            lim = (-BIAS_LIMIT, BIAS_LIMIT) if wide else (fp.INT32_MIN, fp.INT32_MAX)
            bias_in = self.const(f"{name}_bias_q", np.clip(b, *lim), "int64" if wide else "int32")
        if self.scaling == "shift":
            e_in, e_out = np.log2(s_in), np.log2(s_out)
            shift = np.rint(e_out - e_in - np.log2(s_w)).astype(np.int64)  # exact: all powers of 2
            return [bias_in, "", self.const(f"{name}_shift", np.clip(shift, -31, 31), "int8")]
        if self.scaling == "double-shift":  # exact: scales chosen on the grid
            n, e = double_shift.encode_all(s_in * s_w / s_out)
            return [bias_in, self.const(f"{name}_mult", e, "int8"), self.const(f"{name}_shift", n, "int8")]
        mult, shift = fp.quantize_multipliers(s_in * s_w / s_out)
        return [bias_in, self.const(f"{name}_mult", mult, "int32"),
                self.const(f"{name}_shift", shift, "int8")]

    def packed_values(self, s_in: float, s_w: np.ndarray, k: np.ndarray, s_out: float,
                      bias: np.ndarray | None) -> tuple[np.ndarray, dict, float]:
        """(one int16 per channel holding the bias and k, attributes, the largest bias rounding
        error of a channel in output steps) of the packed form (ops/quantized.py): the layer's
        requantization in attributes."""
        bits = int(k.max()).bit_length()
        s_layer = float(s_w[0] * 2.0 ** k[0])  # the same for every channel
        if self.scaling == "shift":
            mult, base = 0, int(np.rint(np.log2(s_out) - np.log2(s_in) - np.log2(s_layer)))
        elif self.scaling == "double-shift":
            base, mult = double_shift.encode(s_in * s_layer / s_out)
        else:
            mult, base = fp.quantize_multiplier(s_in * s_layer / s_out)
            k = np.minimum(k, base + 31)  # channels this small are 0 anyway; keep the shift legal
        b = np.zeros(len(k)) if bias is None else np.asarray(bias, np.float64) / (s_in * s_w)
        lim = 1 << (15 - bits)
        bias_shift = 0  # the smallest that fits the bias in 16 - bits: error <= 2^(bias_shift-1)
        while bias_shift < 30 and np.any(np.abs(round_away(b / 2.0 ** bias_shift)) > lim - 1):
            bias_shift += 1
        bq = np.clip(round_away(b / 2.0 ** bias_shift), -lim, lim - 1).astype(np.int64)
        err = float(np.max(np.abs(bq * 2.0 ** bias_shift - b) * s_in * s_w / s_out))
        attrs = {"pack_bits": bits, "bias_shift": bias_shift, "multiplier": int(mult),
                 "shift_base": int(base)}
        return bq * (1 << bits) + k, attrs, err

    def fit_bias(self, w: np.ndarray, wq: np.ndarray, s_w: np.ndarray, s_in: float, s_out: float,
                 bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Unpacked form: a channel whose weights are so small that its bias in accumulator
        steps would pass 2^30 (int32, with room for the sum) gets the coarsest weight scale that
        keeps it there, chosen as the scaling requires (a power of two, a double-shift value).
        Its weights are ~0 next to its bias anyway; clipping the bias would be far worse."""
        need = np.abs(np.asarray(bias, np.float64)) / (s_in * 2.0 ** 30)
        low = np.flatnonzero(s_w < need)
        if not len(low):
            return wq, s_w
        s_w, wq = s_w.copy(), wq.copy()
        for c in low:
            s_w[c] = (double_shift.grid_scale(need[c], s_in / s_out) if self.scaling == "double-shift"
                      else fp.round_scale(need[c], self.scaling))
            wq[c] = int8_weights(np.asarray(w[c], np.float64).reshape(1, -1), s_w[c:c + 1]
                                 ).reshape(wq[c].shape)
        return wq, s_w

    def requant_consts(self, name: str, w_name: str, x: str, w: np.ndarray, qp_out: QuantParams,
                       bias: np.ndarray | None) -> tuple[str, list[str], dict, QuantParams]:
        """(int8 weights, [bias / requantization constants], extra attributes, output
        parameters) of a QConv / QGemm (QConvTranspose too) writing `qp_out`, which double-shift
        raises (double_shift.raise_output). Packed unless its bias would be off by more than
        MAX_BIAS_ERROR output steps even with the channel scales' range narrowed to 2^0 (then
        the per-channel constants are stored)."""
        wide = self.g.tensors[x].dtype == "int16"  # int16 input: never packed (ops/quantized.py)
        if self.scaling == "double-shift":
            qp_out = double_shift.raise_output(qp_out, w, self.qp(x), self.packed, self.per_channel)
        s_in, s_out = self.qp(x).scale[0], qp_out.scale[0]
        self.layer_scales[name] = (s_in, s_out)

        def weights(packed: bool, max_k: int = MAX_K):
            return layer_weights(w, self.scaling, s_in, s_out, packed, self.per_channel, max_k)
        if wide:  # unpacked int64 bias: the int8 build's weight scales keep all their range
            wq, s_w, _ = weights(self.packed)
            return (self.const(f"{w_name}_q", wq, "int8"),
                    self.requant_inputs(name, s_in, s_w, s_out, bias, wide), {}, qp_out)
        for max_k in range(MAX_K, -1, -1) if self.packed else ():
            wq, s_w, k = weights(True, max_k)
            packed, attrs, err = self.packed_values(s_in, s_w, k, s_out, bias)
            if err <= MAX_BIAS_ERROR:
                break
        else:
            wq, s_w, k = weights(False)
            if bias is not None:
                wq, s_w = self.fit_bias(w, wq, s_w, s_in, s_out, bias)
            packed = None
        wname = self.const(f"{w_name}_q", wq, "int8")
        if packed is None:
            return wname, self.requant_inputs(name, s_in, s_w, s_out, bias), {}, qp_out
        if bias is None and attrs["pack_bits"] == 0:
            return wname, [""], attrs, qp_out
        return wname, [self.const(f"{name}_bias_k", packed, "int16")], attrs, qp_out

    def quant_attrs(self, node: Node, x: str, qp_out: QuantParams) -> dict:
        lo, hi = clamp_bounds(node, qp_out)
        attrs = {"x_zero_point": self.qp(x).zero_point[0], "y_zero_point": qp_out.zero_point[0],
                 "act_min": lo, "act_max": hi, "scaling": self.scaling}
        if FUSED_ACTIVATION in node.attrs:
            attrs[FUSED_ACTIVATION] = node.attrs[FUSED_ACTIVATION]  # for the report's "fused"
        return attrs

    def conv(self, node: Node) -> None:
        x, w, b = (node.inputs + ["", ""])[:3]
        if not self.src.is_const(w) or (b and not self.src.is_const(b)):
            raise UnsupportedOp(f"Conv (node {node.name!r}): weights computed at run time")
        self.need_int8(node, x)
        out = node.outputs[0]
        wname, extra, pack, qp_out = self.requant_consts(node.name, w, x, self.src.const(w),
                                                         self.act(out),
                                                         self.src.const(b) if b else None)
        attrs = {k: v for k, v in node.attrs.items() if k != FUSED_ACTIVATION}
        attrs.update(self.quant_attrs(node, x, qp_out), **pack)
        inputs = [x, wname, *extra]
        self.emit(Node(node.name, "QConv", inputs, [out], attrs, node.opset), qp_out)

    def gemm(self, node: Node) -> None:
        a, w, bias, last = gemm_operands(self.src, node)
        if last is not node:
            self.absorbed.add(last.name)
        self.need_int8(node, a)
        out = last.outputs[0]
        wname, extra, pack, qp_out = self.requant_consts(node.name, node.inputs[1], a, w,
                                                         self.act(out), bias)
        attrs = {**self.quant_attrs(last, a, qp_out), **pack}
        self.emit(Node(node.name, "QGemm", [a, wname, *extra], [out], attrs), qp_out)

    def add(self, node: Node) -> None:
        a, b = node.inputs
        for t in (a, b):
            self.need_int8(node, t)
        out = node.outputs[0]
        qp_out = self.act(out)
        attrs, qp_out = self.add_attrs(node, a, b, qp_out)
        self.emit(Node(node.name, "QAdd", [a, b], [out], attrs), qp_out)

    def add_attrs(self, node: Node, a: str, b: str, qp_out: QuantParams
                  ) -> tuple[dict, QuantParams]:
        """QAdd's attributes (also QSub's, nncc/quant/rewrite_more.py) and its output's
        parameters (double-shift raises the output scale)."""
        sa, sb, so = self.qp(a).scale[0], self.qp(b).scale[0], qp_out.scale[0]
        if self.scaling == "double-shift":  # output scale raised so its requantization is exact
            ds_attrs, so = double_shift.add_params(sa, sb, so)
            qp_out = QuantParams((float(np.float32(so)),), qp_out.zero_point)
        attrs = self.quant_attrs(node, a, qp_out)
        attrs.update(a_zero_point=self.qp(a).zero_point[0], b_zero_point=self.qp(b).zero_point[0])
        # operands << left_shift in int32: 20 for int8 (TFLite's), 15 when one is int16
        ls = 15 if "int16" in (self.g.tensors[a].dtype, self.g.tensors[b].dtype) else 20
        if ls != 20:
            attrs["left_shift"] = ls
        if self.scaling == "double-shift":
            attrs.update(ds_attrs)
        elif self.scaling == "shift":
            ea, eb, eo = (int(np.rint(np.log2(s))) for s in (sa, sb, so))
            e = min(ea, eb)
            attrs.update(a_mult=0, a_shift=ea - e, b_mult=0, b_shift=eb - e, y_mult=0,
                         y_shift=int(np.clip(eo - e, -31, 31)))
        else:
            twice = 2.0 * max(sa, sb)
            (ma, sha), (mb, shb) = fp.quantize_multiplier(sa / twice), fp.quantize_multiplier(sb / twice)
            my, shy = fp.quantize_multiplier(twice / ((1 << ls) * so))
            attrs.update(a_mult=ma, a_shift=sha, b_mult=mb, b_shift=shb, y_mult=my, y_shift=shy)
        return attrs, qp_out

    def pool(self, node: Node) -> None:
        x = node.inputs[0]
        self.need_int8(node, x)
        attrs = dict(node.attrs, x_zero_point=self.qp(x).zero_point[0])
        self.emit(Node(node.name, "Q" + node.op, [x], node.outputs[:1], attrs, node.opset), self.qp(x))

    def view(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        self.need_int8(node, x)
        attrs = {"shape": list(self.src.tensors[out].shape)}
        self.emit(Node(node.name, "QView", [x], [out], attrs), self.qp(x))

    def softmax(self, node: Node) -> None:
        x, out = node.inputs[0], node.outputs[0]
        if out not in self.src.outputs or self.src.consumers(out):
            raise UnsupportedOp(f"Softmax (node {node.name!r}) inside the graph (only a final "
                                "Softmax runs in float)")
        self.emit(Node(node.name, node.op, [self.dequantized(node, x)], [out], dict(node.attrs),
                       node.opset), None)

    def dequantized(self, node: Node, x: str) -> str:
        """A float copy of integer tensor x (a Dequantize node named after `node`) for a float op."""
        self.need_int8(node, x)
        qp = self.qp(x)
        xf = fresh_name(self.g, fresh_name(self.src, f"{x}_float"))
        self.g.add_tensor(TensorInfo(xf, self.g.tensors[x].shape, "float32"))
        dq = f"{node.name}/dequantize"
        dq = f"{dq}_{x}" if dq in self.g.nx else dq  # a float op with two integer inputs
        self.g.add_node(Node(dq, "Dequantize", [x], [xf],
                             {"scale": qp.scale[0], "zero_point": qp.zero_point[0]}))
        return xf

    def need_int8(self, node: Node, t: str) -> None:
        info = self.g.tensors.get(t)
        if info is None or info.dtype not in ("int8", "int16") or info.quant is None:
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): input {t!r} is not an int8 tensor")


HANDLERS = {"Conv": Rewriter.conv, "Gemm": Rewriter.gemm, "MatMul": Rewriter.gemm,
            "Add": Rewriter.add, "Softmax": Rewriter.softmax,
            **{op: Rewriter.pool for op in POOLS}, **{op: Rewriter.view for op in VIEWS}}
from . import rewrite_more  # noqa: F401  (adds ConvTranspose, Concat, tables, Mul, Sub)


def unfuse_conv_pool(g: Graph) -> Graph:
    """ConvPool nodes (passes/fuse_conv_pool.py) back into Conv + pool, so calibration sees the
    conv output and each half gets its own int8 kernel. Returns a new graph."""
    if not g.nodes_of("ConvPool"):
        return g
    out = Graph(g.name)
    out.tensors = dict(g.tensors)
    out.inputs, out.outputs = list(g.inputs), list(g.outputs)
    for n in g.nodes():
        if n.op != "ConvPool":
            out.add_node(n)
            continue
        op = make_op(n)
        t = fresh_name(out, f"{n.outputs[0]}_conv")
        conv_attrs = dict(n.attrs["conv"])
        if FUSED_ACTIVATION in n.attrs:
            conv_attrs[FUSED_ACTIVATION] = n.attrs[FUSED_ACTIVATION]
        ins = [g.tensors[i] if i else None for i in n.inputs]
        out.add_tensor(TensorInfo(t, op.conv_out(*ins).shape))
        out.add_node(Node(f"{n.name}/conv", "Conv", list(n.inputs), [t], conv_attrs, n.opset))
        pool = n.attrs["pool"]
        out.add_node(Node(f"{n.name}/pool", pool["op"], [t], list(n.outputs), dict(pool["attrs"]),
                          int(pool["opset"])))
    verify(out)
    return out


def quantize_graph(g: Graph, ranges: dict, scaling: str = "fixed", packed: bool = True,
                   per_channel: bool = True) -> Graph:
    """The int8 graph of float graph `g` given calibrated `ranges` (see calibrate.py); packed:
    QConv / QGemm in the packed form (2 bytes per output channel, see weight_params);
    per_channel: weight scales per output channel (default), else one per tensor."""
    return Rewriter(g, ranges, scaling, packed, per_channel).run()
