"""The patterns of nncc/quant/import_qdq.py: one handler per ONNX op, `handler(importer, node)
-> bool`. True: the node (and the Relu / Clip / QuantizeLinear it absorbed) became an integer
kernel; False: the pattern does not match and the importer runs the node in float.

QDQ form: DQ(x) -> op [-> Relu | Clip] -> Q(y); QOperator form: QLinearConv / QLinearMatMul /
QLinearAdd with their parameters as inputs, and MaxPool / AveragePool / views straight on 8-bit
tensors (which keep their input's scale and zero point).
"""
from __future__ import annotations

import numpy as np

from ..errors import UnsupportedOp
from ..ir import Node
from ..passes._util import sole_consumer
from . import fixed_point as fp

QMIN, QMAX = -128, 127
VIEWS = ("Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Dropout")
POOLS = ("MaxPool", "AveragePool", "GlobalMaxPool", "GlobalAveragePool")
CONV_ATTRS = ("auto_pad", "dilations", "group", "kernel_shape", "pads", "strides")


# -- the DQ -> op [-> activation] -> Q chain -------------------------------------------------
def act_bounds(src, node: Node):
    """(lo, hi) of a Relu / Clip with constant bounds (None for an open side), else None."""
    if node.op == "Relu":
        return 0.0, None
    if node.opset < 11:
        lo, hi = node.attrs.get("min"), node.attrs.get("max")
    else:
        ins = (node.inputs + ["", ""])[1:3]
        if any(t and not src.is_const(t) for t in ins):
            return None
        lo, hi = (float(np.asarray(src.const(t)).reshape(())) if t else None for t in ins)
    return lo, hi


def out_chain(imp, node: Node, allow_act: bool = True):
    """(Q node, activation bounds or None, names to absorb) when node's output goes, alone,
    through an optional Relu / Clip into one QuantizeLinear."""
    src, act, names = imp.src, None, []
    c = sole_consumer(src, node.outputs[0])
    if c is not None and c.op in ("Relu", "Clip") and allow_act:
        act = act_bounds(src, c)
        if act is None:
            return None
        names.append(c.name)
        c = sole_consumer(src, c.outputs[0])
    if c is None or c.op != "QuantizeLinear":
        return None
    return c, act, names + [c.name]


def clamp_bounds(act, s: float, z: int) -> tuple[int, int]:
    """A float Relu / Clip before QuantizeLinear(s, z) as an integer clamp: exact, since
    rounding is monotonic (round(max(y, lo) / s) = max(round(y / s), round(lo / s)))."""
    if act is None:
        return QMIN, QMAX
    lo_r, hi_r = act
    lo = QMIN if lo_r is None else int(np.clip(z + np.rint(np.float32(lo_r) / np.float32(s)), QMIN, QMAX))
    hi = QMAX if hi_r is None else int(np.clip(z + np.rint(np.float32(hi_r) / np.float32(s)), QMIN, QMAX))
    return lo, max(lo, hi)


def dq_input(imp, t: str):
    """The int8 tensor behind DQ output t, with its (scale, zero point); else None."""
    if t not in imp.dq:
        return None
    x = imp.int_of(t)
    qp = imp.qp(x)
    return x, qp.scale[0], qp.zero_point[0]


def bias_of(imp, b: str):
    """(values, their scales or None for real values) of a Conv / Gemm bias, None if absent."""
    if not b:
        return None
    if b in imp.cdq:
        c = imp.cdq[b]
        return c.centered(0).reshape(-1), c.scale
    if imp.src.is_const(b):
        return np.asarray(imp.src.const(b), np.float64).reshape(-1), None
    raise UnsupportedOp(f"bias {b!r} computed at run time")


# -- emission --------------------------------------------------------------------------------
def emit_mac(imp, node: Node, op: str, x, w8: np.ndarray, s_w: np.ndarray, bias, out: str,
             y_params, act, attrs: dict) -> None:
    """A QConv / QGemm: x = (int8 tensor, s_x, z_x), y_params = (s_y, z_y)."""
    xi, s_x, z_x = x
    s_y, z_y = y_params
    extra = imp.requant_consts(node.name, s_x, s_w, s_y, bias)
    lo, hi = clamp_bounds(act, s_y, z_y)
    attrs = dict(attrs, x_zero_point=int(z_x), y_zero_point=int(z_y), act_min=lo, act_max=hi,
                 scaling="fixed")
    wname = imp.const(f"{node.name}_w_q", w8, "int8")
    y = imp.new_int(out, imp.src.tensors[out].shape, s_y, z_y)
    imp.add(Node(node.name, op, [xi, wname, *extra], [y], attrs, node.opset))


def emit_add(imp, node: Node, a, b, out: str, y_params, act) -> None:
    """QAdd (TFLite's int8 Add, as nncc/quant/rewrite.py sets it up) of a, b = (tensor, s, z)."""
    (ta, sa, za), (tb, sb, zb), (so, zo) = a, b, y_params
    twice = 2.0 * max(sa, sb)
    (ma, sha), (mb, shb) = fp.quantize_multiplier(sa / twice), fp.quantize_multiplier(sb / twice)
    my, shy = fp.quantize_multiplier(twice / ((1 << 20) * so))
    lo, hi = clamp_bounds(act, so, zo)
    attrs = {"a_zero_point": int(za), "b_zero_point": int(zb), "x_zero_point": int(za),
             "y_zero_point": int(zo), "act_min": lo, "act_max": hi, "scaling": "fixed",
             "a_mult": ma, "a_shift": sha, "b_mult": mb, "b_shift": shb, "y_mult": my, "y_shift": shy}
    y = imp.new_int(out, imp.src.tensors[out].shape, so, zo)
    imp.add(Node(node.name, "QAdd", [ta, tb], [y], attrs))


def absorb(imp, chain) -> tuple:
    qn, act, names = chain
    imp.absorbed.update(names)
    return qn.outputs[0], imp.tensor_params(qn, "activations"), act


# -- QDQ handlers ----------------------------------------------------------------------------
def conv(imp, node: Node) -> bool:
    x, w, b = (node.inputs + ["", ""])[:3]
    xin, wc = dq_input(imp, x), imp.cdq.get(w)
    chain = out_chain(imp, node)
    if xin is None or wc is None or chain is None or (b and b not in imp.cdq and not imp.src.is_const(b)):
        return False
    m = imp.src.tensors[w].shape[0]
    w8, s_w = imp.int8_weights(node, wc, 0, m)
    out, yp, act = absorb(imp, chain)
    attrs = {k: v for k, v in node.attrs.items() if k in CONV_ATTRS}
    emit_mac(imp, node, "QConv", xin, w8, s_w, bias_of(imp, b), out, yp, act, attrs)
    return True


def gemm(imp, node: Node) -> bool:
    """Gemm (alpha 1, transA 0, beta 1) or MatMul of a 2-D activation by quantized weights."""
    a, bname = node.inputs[:2]
    c = node.inputs[2] if len(node.inputs) > 2 else ""
    xin, wc = dq_input(imp, a), imp.cdq.get(bname)
    chain = out_chain(imp, node)
    if xin is None or wc is None or chain is None or len(imp.src.tensors[a].shape) != 2:
        return False
    trans_b = node.op == "Gemm" and int(node.attrs.get("transB", 0)) == 1
    if node.op == "Gemm" and (int(node.attrs.get("transA", 0)) or float(node.attrs.get("alpha", 1.0)) != 1.0
                              or (c and float(node.attrs.get("beta", 1.0)) != 1.0)):
        return False
    n = imp.src.tensors[bname].shape[0 if trans_b else 1]
    w8, s_w = imp.int8_weights(node, wc, 0 if trans_b else 1, n)
    if c and (imp.src.tensors[c].size != n and c not in imp.cdq or c in imp.cdq and imp.cdq[c].q.size != n):
        return False
    out, yp, act = absorb(imp, chain)
    emit_mac(imp, node, "QGemm", xin, w8 if trans_b else w8.T, s_w, bias_of(imp, c), out, yp, act, {})
    return True


def add_operand(imp, t: str, shape):
    """(int8 tensor, scale, zero point) of one Add operand of the output's shape: a DQ output,
    or a quantized constant broadcast to that shape (QAdd takes no broadcasting)."""
    if t in imp.dq:
        x = dq_input(imp, t)
        return x if imp.g.tensors[x[0]].shape == tuple(shape) else None
    c = imp.cdq.get(t)
    if c is None or c.axis is not None or c.q.min() < QMIN or c.q.max() > QMAX:
        return None
    try:
        q = np.broadcast_to(c.q, shape)
    except ValueError:
        return None
    return imp.const(f"{t}_q", q, "int8"), float(c.scale[0]), int(c.zp[0])


def add(imp, node: Node) -> bool:
    shape = imp.src.tensors[node.outputs[0]].shape
    ops = [add_operand(imp, t, shape) for t in node.inputs]
    chain = out_chain(imp, node)
    if None in ops or chain is None or not any(t in imp.dq for t in node.inputs):
        return False
    out, yp, act = absorb(imp, chain)
    emit_add(imp, node, ops[0], ops[1], out, yp, act)
    return True


def passthrough(imp, node: Node) -> bool:
    """Pools and views keep their input's scale and zero point: QDQ with equal parameters on
    both sides, or QOperator form (the op applied straight to an 8-bit tensor)."""
    x = node.inputs[0]
    if x in imp.q and x not in imp.dq:
        xi = imp.q[x]
        out = node.outputs[0]
    else:
        xin, chain = dq_input(imp, x), out_chain(imp, node, allow_act=False)
        if xin is None or chain is None:
            return False
        xi = xin[0]
        if imp.tensor_params(chain[0], "activations") != (xin[1], xin[2]):
            return False  # a rescaling pool: runs in float
        out = absorb(imp, chain)[0]
    qp = imp.qp(xi)
    y = imp.new_int(out, imp.src.tensors[node.outputs[0]].shape, qp.scale[0], qp.zero_point[0])
    if node.op in VIEWS:
        imp.add(Node(node.name, "QView", [xi], [y], {"shape": list(imp.g.tensors[y].shape)}))
    else:
        attrs = dict(node.attrs, x_zero_point=int(qp.zero_point[0]))
        if "Average" in node.op:
            attrs["rounding"] = "half_even"  # as onnxruntime's QuantizeLinear of the float mean
        imp.add(Node(node.name, "Q" + node.op, [xi], [y], attrs, node.opset))
    return True


# -- QOperator handlers ----------------------------------------------------------------------
def given(imp, node: Node, i: int) -> tuple[float, int]:
    """(scale, zero point in the int8 domain) from inputs i (scale), i + 1 (zero point) of a
    QLinear* node."""
    return imp.tensor_params(Node(node.name, node.op, ["", node.inputs[i], node.inputs[i + 1]], []),
                             f"input {i}")


def qlinear_operand(imp, node: Node, i: int, shape=None):
    """(int8 tensor, scale, zp) of a QLinear* runtime input i (or an 8-bit constant)."""
    from .import_qdq import to_int8_domain
    t, (s, z) = node.inputs[i], given(imp, node, i + 1)
    if t in imp.q:
        return imp.q[t], s, z
    if imp.src.is_const(t) and shape is not None:
        q = to_int8_domain(imp.src.const(t), imp.src.tensors[t].dtype)
        try:
            return imp.const(f"{t}_q", np.broadcast_to(q, shape), "int8"), s, z
        except ValueError:
            pass
    raise UnsupportedOp(f"{node.op} (node {node.name!r}): input {t!r} is not an 8-bit tensor")


def const_q(imp, node: Node, i: int, axis: int):
    from .import_qdq import ConstQ, to_int8_domain
    t = node.inputs[i]
    if not imp.src.is_const(t):
        raise UnsupportedOp(f"{node.op} (node {node.name!r}): weights computed at run time")
    s, z = imp.params(Node(node.name, node.op, ["", node.inputs[i + 1], node.inputs[i + 2]], []))
    q = to_int8_domain(imp.src.const(t), imp.src.tensors[t].dtype)
    return ConstQ(q, s, z, None if s.size == 1 else axis)


def qlinear_conv(imp, node: Node) -> bool:
    x = qlinear_operand(imp, node, 0)
    wc = const_q(imp, node, 3, 0)
    m = imp.src.tensors[node.inputs[3]].shape[0]
    w8, s_w = imp.int8_weights(node, wc, 0, m)
    b = node.inputs[8] if len(node.inputs) > 8 else ""
    bias = (np.asarray(imp.src.const(b), np.int64), x[1] * s_w.astype(np.float32)) if b else None
    attrs = {k: v for k, v in node.attrs.items() if k in CONV_ATTRS}
    emit_mac(imp, node, "QConv", x, w8, s_w, bias, node.outputs[0], given(imp, node, 6), None, attrs)
    return True


def qlinear_matmul(imp, node: Node) -> bool:
    a = qlinear_operand(imp, node, 0)
    if len(imp.g.tensors[a[0]].shape) != 2:
        raise UnsupportedOp(f"QLinearMatMul (node {node.name!r}): only 2-D a")
    wc = const_q(imp, node, 3, 1)
    n = imp.src.tensors[node.inputs[3]].shape[1]
    w8, s_w = imp.int8_weights(node, wc, 1, n)
    emit_mac(imp, node, "QGemm", a, w8.T, s_w, None, node.outputs[0], given(imp, node, 6), None, {})
    return True


def qlinear_add(imp, node: Node) -> bool:
    shape = imp.src.tensors[node.outputs[0]].shape
    a, b = qlinear_operand(imp, node, 0, shape), qlinear_operand(imp, node, 3, shape)
    for t in (a, b):
        if imp.g.tensors[t[0]].shape != tuple(shape):
            raise UnsupportedOp(f"QLinearAdd (node {node.name!r}): broadcasting of run-time inputs")
    emit_add(imp, node, a, b, node.outputs[0], given(imp, node, 6), None)
    return True


HANDLERS = {
    "QuantizeLinear": lambda imp, n: imp.quantize_linear(n),
    "DequantizeLinear": lambda imp, n: imp.dequantize_linear(n),
    "Conv": conv, "Gemm": gemm, "MatMul": gemm, "Add": add,
    "QLinearConv": qlinear_conv, "QLinearMatMul": qlinear_matmul, "QLinearAdd": qlinear_add,
    **{op: passthrough for op in POOLS + VIEWS},
}
