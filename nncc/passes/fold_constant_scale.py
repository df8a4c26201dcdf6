"""Pass: fold a multiplication or addition by a constant into the neighbouring Conv or Gemm.

After a Conv or Gemm whose weights are constants (and whose result nobody else reads), a Mul by
a scalar or per-output-channel constant s scales the weights and the bias (W s, b s), and an Add
of such a constant c moves into the bias (b + c). Before a Conv, a Mul of its input by a scalar
or per-input-channel s scales the weights along their input channels; that is exact even with
zero padding, because a padded zero times s is still zero. (An Add before a Conv is not folded:
the padding would have to become c, not zero.) Constants that would change the output's shape
by broadcasting, or that are not finite, stay where they are. Arithmetic in float64, rounded
once; new weights get fresh names (the old ones may be shared).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ops import FUSED_ACTIVATION, make_op
from . import register_pass
from ._util import add_const, const_operand, drop_unused, sole_consumer
from .fold_batchnorm import BN_STATS, affine_bn_stats


def channel_vector(c: np.ndarray, axis: int, channels: int) -> np.ndarray | None:
    """c (already padded to the output's rank) as a vector of `channels` values along `axis`,
    or None when c varies along any other axis."""
    if any(d != 1 for i, d in enumerate(c.shape) if i != axis):
        return None
    v = c.reshape(-1)
    return np.full(channels, v[0]) if v.size == 1 else v if v.size == channels else None


def weights_ok(g: Graph, node: Node, need_w: bool) -> bool:
    if FUSED_ACTIVATION in node.attrs or any(node.outputs[1:]):
        return False
    if need_w and not g.is_const(node.inputs[1]):
        return False
    return len(node.inputs) < 3 or not node.inputs[2] or g.is_const(node.inputs[2])


def bias_of(g: Graph, node: Node, channels: int) -> np.ndarray:
    if len(node.inputs) > 2 and node.inputs[2]:
        return np.asarray(g.const(node.inputs[2]), np.float64)
    return np.zeros(channels)


def set_inputs(g: Graph, node: Node, new: dict[int, np.ndarray], tag: str) -> None:
    old = list(node.inputs)
    node.inputs = old + [""] * (max(new) + 1 - len(old))
    for i, value in new.items():  # constants have no producer: no graph edge changes
        node.inputs[i] = add_const(g, (old[i] if i < len(old) and old[i] else node.name + "_bias") + tag,
                                   value)
    drop_unused(g, old)


# -- after the producer -------------------------------------------------------------------------
def fold_into_conv(g: Graph, conv: Node, kind: str, c: np.ndarray) -> bool:
    m = g.tensors[conv.outputs[0]].shape[1]
    s = channel_vector(c, 1, m)
    if s is None or not weights_ok(g, conv, kind == "Mul"):
        return False
    b = bias_of(g, conv, m)
    if kind == "Add":
        affine_bn_stats(conv, 1.0, s)
        set_inputs(g, conv, {2: b + s}, "_addfold")
    else:
        affine_bn_stats(conv, s, 0.0)
        w = np.asarray(g.const(conv.inputs[1]), np.float64)
        set_inputs(g, conv, {1: w * s.reshape(-1, *[1] * (w.ndim - 1)), 2: b * s}, "_mulfold")
    return True


def fold_into_gemm(g: Graph, gemm: Node, kind: str, c: np.ndarray) -> bool:
    """Y = alpha A'B' + beta C. Mul: B' columns and beta C scaled by s (per output column).
    Add: any constant that broadcasts to (M, N) joins C (C's shape may grow to (M, N))."""
    op = make_op(gemm)
    if not weights_ok(g, gemm, kind == "Mul"):
        return False
    has_c = len(gemm.inputs) > 2 and bool(gemm.inputs[2])
    cur = g.const(gemm.inputs[2]) if has_c else None
    cc = op.beta * np.asarray(cur, np.float64) if op.uses_c(cur) else np.zeros(1)
    cc = cc.reshape((1,) * (2 - cc.ndim) + cc.shape)
    new = {}
    if kind == "Add":
        new_c = cc + c
        gemm.attrs.pop(BN_STATS, None)  # c may vary along M: the statistics no longer apply
    else:
        s = channel_vector(c, 1, g.tensors[gemm.outputs[0]].shape[1])
        if s is None:
            return False
        w = np.asarray(g.const(gemm.inputs[1]), np.float64)
        new[1] = w * (s.reshape(-1, 1) if op.trans_b else s.reshape(1, -1))
        new_c = cc * s.reshape(1, -1)
        affine_bn_stats(gemm, s, 0.0)
    new[2] = new_c[0] if new_c.shape[0] == 1 else new_c
    gemm.attrs["beta"] = 1.0
    gemm.opset = max(gemm.opset, 7)  # C broadcasts unidirectionally from opset 7 on
    set_inputs(g, gemm, new, "_mulfold" if kind == "Mul" else "_addfold")
    return True


def fold_after(g: Graph, node: Node) -> bool:
    found = const_operand(g, node)
    if found is None:
        return False
    t, c = found
    prod = g.producer(t)
    if prod is None or prod.outputs[0] != t or sole_consumer(g, t) is not node:
        return False
    if prod.op == "Conv":
        done = fold_into_conv(g, prod, node.op, c)
    elif prod.op == "Gemm":
        done = fold_into_gemm(g, prod, node.op, c)
    else:
        return False
    if done:
        consts = [x for x in node.inputs if x != t]
        node.inputs = [t, *consts]  # bypass() keeps the first input
        g.bypass(node)
        drop_unused(g, consts)
    return done


# -- before a Conv ------------------------------------------------------------------------------
def fold_before(g: Graph, mul: Node) -> bool:
    found = const_operand(g, mul)
    if found is None:
        return False
    x, c = found
    conv = sole_consumer(g, mul.outputs[0])
    if conv is None or conv.op != "Conv" or conv.inputs[0] != mul.outputs[0]:
        return False
    if not g.is_const(conv.inputs[1]):
        return False
    w = np.asarray(g.const(conv.inputs[1]), np.float64)
    channels = g.tensors[x].shape[1]
    s = channel_vector(c, 1, channels)
    if s is None:
        return False
    group = int(conv.attrs.get("group", 1))
    # Output channel m of group grp reads input channels grp * C/group + j, j < C/group.
    per_m = s.reshape(group, 1, -1).repeat(w.shape[0] // group, axis=1).reshape(w.shape[0], -1)
    set_inputs(g, conv, {1: w * per_m.reshape(*per_m.shape, *[1] * (w.ndim - 2))}, "_mulfold")
    consts = [t for t in mul.inputs if t != x]
    g.remove_node(mul)
    g.replace_input(conv, mul.outputs[0], x)
    g.tensors.pop(mul.outputs[0], None)
    drop_unused(g, consts)
    return True


@register_pass("fold_constant_scale")
def fold_constant_scale(g: Graph) -> bool:
    changed = False
    for node in g.nodes():
        if node.name not in g.nx or node.op not in ("Mul", "Add") or FUSED_ACTIVATION in node.attrs:
            continue  # (removed by an earlier fold in this sweep; or its activation would be lost)
        if fold_after(g, node) or (node.op == "Mul" and fold_before(g, node)):
            changed = True
    return changed
