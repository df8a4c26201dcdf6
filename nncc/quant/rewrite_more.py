"""Quantize stage, more handlers (the rest are in rewrite.py, which registers these): ConvTranspose,
Concat, elementwise activations by table, Mul, Sub, Sum of two -- the integer kernels of
nncc/ops/quantized_more.py --, Transpose (a data move), and per-channel affine maps
(BatchNormalization that did not fold, Mul / Add / Sub by a per-channel constant) as depthwise
1x1 QConvs. Two preparations of the float graph go with them (quantize.py calls both):
- `unfuse_table_activations`, before calibration: an activation fused into a Conv / Gemm / Add
  that int8 cannot apply as a clamp (Sigmoid, Tanh, LeakyRelu, HardSwish, HardSigmoid) becomes
  its own node again, so calibration sees its input and it becomes a QLut.
- `share_concat_ranges`, after calibration: a Concat input whose producer requantizes anyway
  takes the Concat output's range, so it comes out in the output's scale and zero point and the
  Concat is a copy -- or nothing at all, when the memory planner writes it in place
  (nncc/memory/alias.py). An input with other consumers is shared only when its own range is
  within MAX_SHARE_RATIO of the output's (it would lose up to log2 of that in bits for them);
  the others are requantized by the QConcat kernel.
Activation tables: Sigmoid's output is fixed to [0, 1) (scale 2^-8, zero point -128) and Tanh's
to [-1, 1) (2^-7, 0), as TFLite's; every other activation takes its calibrated output range.
"""
from __future__ import annotations

import copy

import numpy as np

from ..errors import UnsupportedOp
from ..ir import Graph, Node, QuantParams, TensorInfo, verify
from ..ops import FUSED_ACTIVATION, make_op
from ..ops.conv_transpose import output_major
from ..passes._util import fresh_name
from ..passes.fold_batchnorm import bn_affine
from ..passes.fuse_activation import activation_params
from . import fixed_point as fp
from .rewrite import HANDLERS, QMAX, QMIN, Rewriter, round_away

TABLE_OPS = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh", "Elu")
CLAMPS = ("Relu", "Clip")  # fused activations an integer kernel applies as its clamp
FIXED_OUTPUT = {"Sigmoid": QuantParams((2.0 ** -8,), (-128,)), "Tanh": QuantParams((2.0 ** -7,), (0,))}
# float ops whose int8 output takes its quantization from the calibrated range (not from its input)
RANGED = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sum", "Sub", "Mul", "Concat",
          "BatchNormalization",
          *(op for op in TABLE_OPS if op not in FIXED_OUTPUT))
MAX_SHARE_RATIO = 4.0


# -- graph preparation ------------------------------------------------------------------------
def unfuse_table_activations(g: Graph) -> Graph:
    """Fused activations other than CLAMPS split out into their own nodes. Returns a new graph
    (or g when there are none)."""
    fused = {n.name for n in g.nodes()
             if n.attrs.get(FUSED_ACTIVATION, {"op": "Relu"})["op"] not in CLAMPS}
    if not fused:
        return g
    out = Graph(g.name)
    out.tensors = dict(g.tensors)
    out.inputs, out.outputs = list(g.inputs), list(g.outputs)
    for n in g.nodes():
        if n.name not in fused:
            out.add_node(n)
            continue
        act = n.attrs[FUSED_ACTIVATION]
        y = n.outputs[0]
        t = fresh_name(out, f"{y}_pre")
        out.add_tensor(TensorInfo(t, g.tensors[y].shape))
        attrs = {k: v for k, v in n.attrs.items() if k != FUSED_ACTIVATION}
        out.add_node(Node(n.name, n.op, list(n.inputs), [t, *n.outputs[1:]], attrs, n.opset))
        # params are the activation's attributes (alpha, beta) under their ONNX names; opset
        # >= 14, where every FUSABLE activation exists (HardSwish since 14)
        out.add_node(Node(f"{n.name}/{act['op']}", act["op"], [t], [y], dict(act["params"]),
                          max(n.opset, 14)))
    verify(out)
    return out


def share_concat_ranges(g: Graph, ranges: dict) -> dict:
    """`ranges` with Concat inputs given their Concat's output range where that is free (module
    docstring). Returns a new dict of the same type (datafree.Ranges keeps refusing by name)."""
    ranges = copy.copy(ranges)
    done: set[str] = set()
    for n in g.nodes_of("Concat"):
        lo, hi = ranges[n.outputs[0]]
        span = max(hi, 0.0) - min(lo, 0.0)
        for x in n.inputs:
            p = g.producer(x)
            if not x or x in done or not (x in g.inputs or (p is not None and p.op in RANGED)):
                continue
            xlo, xhi = ranges[x]
            xspan = max(xhi, 0.0) - min(xlo, 0.0)
            sole = len(g.consumers(x)) == 1 and x not in g.outputs
            if sole or span <= MAX_SHARE_RATIO * xspan:
                ranges[x] = (lo, hi)
                done.add(x)
    return ranges


# -- handlers ---------------------------------------------------------------------------------
def int8_operand(rw: Rewriter, node: Node, t: str) -> str:
    """An int8 activation as is; a float constant quantized symmetric per tensor (power of two
    with `--scaling shift`)."""
    if not rw.src.is_const(t):
        rw.need_int8(node, t)
        return t
    v = np.asarray(rw.src.const(t), np.float64)
    m = float(np.abs(v).max()) or 1.0
    s = fp.round_scale(m / QMAX, rw.scaling)
    name = rw.const(f"{t}_q", np.clip(round_away(v / s), -QMAX, QMAX), "int8")
    rw.g.tensors[name].quant = QuantParams((float(np.float32(s)),), (0,))
    return name


def conv_transpose(rw: Rewriter, node: Node) -> None:
    """QConvTranspose; a fused Relu / Clip (passes/fuse_activation.py) is its clamp."""
    src = rw.src
    x, w, b = (node.inputs + ["", ""])[:3]
    if not src.is_const(w) or (b and not src.is_const(b)):
        raise UnsupportedOp(f"ConvTranspose (node {node.name!r}): weights computed at run time")
    rw.need_int8(node, x)
    attrs = dict(node.attrs)
    group = int(attrs.get("group", 1))
    wm = output_major(np.asarray(src.const(w), np.float64), group)  # QConvTranspose's layout
    out = node.outputs[0]
    wname, extra, pack, qp_out = rw.requant_consts(node.name, w, x, wm, rw.act(out),
                                                   src.const(b) if b else None)
    q = rw.quant_attrs(node, x, qp_out)
    attrs = {k: v for k, v in attrs.items() if k != FUSED_ACTIVATION}
    attrs.update(q, **pack)
    rw.emit(Node(node.name, "QConvTranspose", [x, wname, *extra], [out], attrs, node.opset), qp_out)


def concat(rw: Rewriter, node: Node) -> None:
    """QConcat: a copy of inputs quantized as the output, a requantization of the others."""
    xs = [t for t in node.inputs if t]
    if len(xs) != len(node.inputs):
        raise UnsupportedOp(f"Concat (node {node.name!r}): omitted inputs")
    for t in xs:
        rw.need_int8(node, t)
    out = node.outputs[0]
    qp_out = rw.act(out)
    sy, zy = qp_out.scale[0], qp_out.zero_point[0]
    zps, mults, shifts, copy = [], [], [], []
    for t in xs:
        sx, zx = rw.qp(t).scale[0], rw.qp(t).zero_point[0]
        zps.append(zx)
        copy.append(sx == sy and zx == zy)
        m, s = fp.requant_code(sx / sy, rw.scaling)
        mults.append(int(m))
        shifts.append(int(s))
    # double-shift builds raise each conv's output scale on its own, so Concat inputs rarely
    # share a scale: QConcat rescales them with the fixed-point multiplier (integer, one multiply
    # per element), which is exact to 2^-31 where a double-shift would be up to 9 % off.
    scaling = "fixed" if rw.scaling == "double-shift" else rw.scaling
    attrs = dict(node.attrs, y_zero_point=zy, scaling=scaling, x_zero_points=zps, mults=mults,
                 shifts=shifts, copy=copy)
    rw.emit(Node(node.name, "QConcat", xs, [out], attrs, node.opset), qp_out)


def table(rw: Rewriter, node: Node) -> None:
    """QLut: f at each of the 256 int8 inputs, in float64, quantized to the output."""
    x, out = node.inputs[0], node.outputs[0]
    rw.need_int8(node, x)
    params = activation_params(rw.src, node)
    if params is None:
        raise UnsupportedOp(f"{node.op} (node {node.name!r}): bounds computed at run time")
    qx = rw.qp(x)
    qp_out = FIXED_OUTPUT.get(node.op) or rw.act(out)
    real = qx.scale[0] * (np.arange(QMIN, QMAX + 1, dtype=np.float64) - qx.zero_point[0])
    with np.errstate(all="ignore"):
        f = np.asarray(make_op(node).fn(real, **params), np.float64)
    q = np.clip(round_away(f / qp_out.scale[0]) + qp_out.zero_point[0], QMIN, QMAX)
    tab = rw.const(f"{node.name}_table", q, "int8")
    rw.emit(Node(node.name, "QLut", [x, tab], [out], {"function": node.op}), qp_out)


def mul(rw: Rewriter, node: Node) -> None:
    """Mul by a per-channel constant: affine; else QMul of two int8 tensors (or one and a
    constant), broadcasting."""
    legacy_broadcast(node)
    for x, c in (node.inputs, node.inputs[::-1]):
        v = per_channel(rw, x, c)
        if v is not None:
            return affine(rw, node, x, v, 0.0)
    if rw.scaling == "double-shift":
        raise UnsupportedOp(f"Mul (node {node.name!r}) of two tensors under --scaling double-shift "
                            "(fixed or shift only)")
    a, b = (int8_operand(rw, node, t) for t in node.inputs)
    out = node.outputs[0]
    qp_out = rw.act(out)
    sa, sb, so = rw.qp(a).scale[0], rw.qp(b).scale[0], qp_out.scale[0]
    m, s = fp.requant_code(sa * sb / so, rw.scaling)
    attrs = rw.quant_attrs(node, a, qp_out)
    attrs.update(a_zero_point=rw.qp(a).zero_point[0], b_zero_point=rw.qp(b).zero_point[0],
                 y_mult=int(m), y_shift=int(s))
    rw.emit(Node(node.name, "QMul", [a, b], [out], attrs), qp_out)


def per_channel(rw: Rewriter, x: str, c: str) -> np.ndarray | None:
    """Constant c as one value per channel (axis 1) of the activation x (rank >= 3), or None
    when it is anything else."""
    if not rw.src.is_const(c) or rw.src.is_const(x):
        return None
    shape = rw.src.tensors[x].shape
    v = np.asarray(rw.src.const(c), np.float64)
    if len(shape) < 3 or v.ndim > len(shape):
        return None
    v = v.reshape((1,) * (len(shape) - v.ndim) + v.shape)
    if any(d != 1 for i, d in enumerate(v.shape) if i != 1) or v.shape[1] not in (1, shape[1]):
        return None
    return np.broadcast_to(v.reshape(-1), (shape[1],)).copy()


def affine(rw: Rewriter, node: Node, x: str, s, t) -> None:
    """y = x * s + t per channel (BatchNormalization that did not fold, Mul / Add / Sub by a
    per-channel constant) as a depthwise 1x1 QConv: per-channel int8 weights s, bias t."""
    rw.need_int8(node, x)
    shape = rw.src.tensors[x].shape
    c, nd = shape[1], len(shape) - 2
    w = np.broadcast_to(np.asarray(s, np.float64), (c,)).reshape(c, 1, *([1] * nd))
    t = np.broadcast_to(np.asarray(t, np.float64), (c,))
    out = node.outputs[0]
    wname, extra, pack, qp_out = rw.requant_consts(node.name, f"{node.name}_scale", x, w,
                                                   rw.act(out), t if np.any(t) else None)
    attrs = {"group": c, "kernel_shape": [1] * nd, **rw.quant_attrs(node, x, qp_out), **pack}
    rw.emit(Node(node.name, "QConv", [x, wname, *extra], [out], attrs), qp_out)


def legacy_broadcast(node: Node) -> None:
    if node.opset < 7 and node.attrs.get("broadcast"):
        raise UnsupportedOp(f"{node.op} (node {node.name!r}): legacy broadcast in int8")


def batchnorm(rw: Rewriter, node: Node) -> None:
    x = node.inputs[0]
    st = bn_affine(rw.src, node, rw.src.tensors[x].shape[1])
    if st is None:
        raise UnsupportedOp(f"BatchNormalization (node {node.name!r}): not a constant per-channel map")
    affine(rw, node, x, *st)


def add(rw: Rewriter, node: Node) -> None:
    """Add of a per-channel constant: affine; of two int8 tensors of one shape: QAdd."""
    legacy_broadcast(node)
    a, b = node.inputs
    for x, c in ((a, b), (b, a)):
        v = per_channel(rw, x, c)
        if v is not None:
            return affine(rw, node, x, 1.0, v)
    rw.add(node)


def sub(rw: Rewriter, node: Node) -> None:
    """Sub with a per-channel constant: affine; else QSub (QAdd's scales, Rewriter.add_attrs,
    b's offset negated in the kernel)."""
    legacy_broadcast(node)
    a, b = node.inputs
    v = per_channel(rw, a, b)
    if v is not None:
        return affine(rw, node, a, 1.0, -v)
    v = per_channel(rw, b, a)
    if v is not None:
        return affine(rw, node, b, -1.0, v)
    a, b = (int8_operand(rw, node, t) for t in node.inputs)
    out = node.outputs[0]
    qp_out = rw.act(out)
    attrs, qp_out = rw.add_attrs(node, a, b, qp_out)
    rw.emit(Node(node.name, "QSub", [a, b], [out], attrs), qp_out)


def transpose(rw: Rewriter, node: Node) -> None:
    """A data move: the output keeps the input's quantization."""
    x = node.inputs[0]
    rw.need_int8(node, x)
    rw.emit(Node(node.name, node.op, [x], node.outputs[:1], dict(node.attrs), node.opset), rw.qp(x))


def sum_of_two(rw: Rewriter, node: Node) -> None:
    """Sum with two inputs is Add (ResNet-50, ShuffleNet in onnx's test data)."""
    if len(node.inputs) != 2:
        raise UnsupportedOp(f"Sum (node {node.name!r}) of {len(node.inputs)} inputs in int8")
    rw.add(node)


HANDLERS.update({"ConvTranspose": conv_transpose, "Concat": concat, "Mul": mul, "Sub": sub,
                 "Add": add, "Sum": sum_of_two, "BatchNormalization": batchnorm,
                 "Transpose": transpose, **{op: table for op in TABLE_OPS}})
