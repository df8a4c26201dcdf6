"""Pass: fold an inference BatchNormalization into the Conv, ConvTranspose or Gemm before it.

BN computes y = (x - mean) * s + beta per channel, with s = scale / sqrt(var + eps). When x comes
from a linear op whose weights and bias are constants, scaling the weights of output channel c by
s[c] and replacing the bias b by (b - mean) * s + beta gives the same y with one node less. The
arithmetic is done in float64 and rounded once. New weights get fresh tensor names: the old ones
may be shared with other nodes.

The BN's own statistics are kept on the folded node (`attrs[BN_STATS]`): its output (before any
activation) has per-channel mean beta and standard deviation |scale| over the data BN was trained
on. Data-free quantization (nncc/quant/datafree.py) estimates activation ranges from them; a
later pass that changes the node's output (fold_constant_scale) updates them (`affine_bn_stats`).
"""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node
from ..ops import make_op
from . import register_pass
from ._util import add_const, drop_unused, sole_consumer

PRODUCERS = ("Conv", "ConvTranspose", "Gemm")
BN_STATS = "nncc_bn_stats"  # {"mean": float64 (C,), "std": float64 (C,)} of the node's output


def affine_bn_stats(node: Node, s, t) -> None:
    """The node's output became y * s + t (s, t per channel or scalar): so do its BN statistics."""
    stats = node.attrs.get(BN_STATS)
    if stats is not None:
        node.attrs[BN_STATS] = {"mean": stats["mean"] * s + t, "std": stats["std"] * np.abs(s)}


def bn_affine(g: Graph, bn: Node, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(s, t) with BN(x) = x * s + t per channel, or None when BN is not a constant affine map."""
    params = bn.inputs[1:5]
    if len(params) != 4 or not all(g.is_const(t) for t in params) or any(bn.outputs[1:]):
        return None
    scale, beta, mean, var = (np.asarray(g.const(t), np.float64).ravel() for t in params)
    if any(p.size != channels for p in (scale, beta, mean, var)):
        return None  # per-activation (spatial=0) parameters: not a per-channel map
    s = scale / np.sqrt(var + make_op(bn).eps)
    return s, beta - mean * s


def _fold_conv(g: Graph, node: Node, s: np.ndarray, t: np.ndarray) -> None:
    w = np.asarray(g.const(node.inputs[1]), np.float64)
    if node.op == "Conv":  # W: M x C/group x k...
        w2 = w * s.reshape(-1, *[1] * (w.ndim - 1))
    else:  # ConvTranspose W: C x M/group x k...; output channel = grp * M/group + j
        group = int(node.attrs.get("group", 1))
        wg = w.reshape(group, w.shape[0] // group, w.shape[1], *w.shape[2:])
        w2 = (wg * s.reshape(group, 1, w.shape[1], *[1] * (w.ndim - 2))).reshape(w.shape)
    b = _bias(g, node, 2, s.size)
    _set_inputs(g, node, {1: add_const(g, node.inputs[1] + "_bnfold", w2),
                          2: add_const(g, node.name + "_bias_bnfold", b * s + t)})


def _fold_gemm(g: Graph, node: Node, s: np.ndarray, t: np.ndarray) -> None:
    # Y = alpha * A' B' + beta * C: scale B's output columns; C becomes (beta * C) * s + t.
    w = np.asarray(g.const(node.inputs[1]), np.float64)
    w2 = w * (s.reshape(-1, 1) if int(node.attrs.get("transB", 0)) else s.reshape(1, -1))
    c = float(node.attrs.get("beta", 1.0)) * _bias(g, node, 2, s.size)
    node.attrs["beta"] = 1.0
    _set_inputs(g, node, {1: add_const(g, node.inputs[1] + "_bnfold", w2),
                          2: add_const(g, node.name + "_bias_bnfold", c * s + t)})


def _bias(g: Graph, node: Node, idx: int, channels: int) -> np.ndarray:
    if len(node.inputs) > idx and node.inputs[idx]:
        return np.asarray(g.const(node.inputs[idx]), np.float64)
    return np.zeros(channels)


def _set_inputs(g: Graph, node: Node, new: dict[int, str]) -> None:
    old = list(node.inputs)
    node.inputs = old + [""] * (max(new) + 1 - len(old))
    for i, t in new.items():
        node.inputs[i] = t  # constants have no producer, so no graph edge changes
    drop_unused(g, old)


def foldable(g: Graph, node: Node | None, bn: Node) -> bool:
    if node is None or node.op not in PRODUCERS or sole_consumer(g, node.outputs[0]) is not bn:
        return False
    if any(node.outputs[1:]) or not g.is_const(node.inputs[1]):
        return False
    if len(node.inputs) > 2 and node.inputs[2] and not g.is_const(node.inputs[2]):
        return False
    if node.op == "Gemm":  # C must broadcast along the output's channel axis (last)
        n = g.tensors[node.outputs[0]].shape[-1]
        c = g.tensors[node.inputs[2]].shape if len(node.inputs) > 2 and node.inputs[2] else ()
        return len(c) <= 2 and (not c or c[-1] in (1, n))
    return True


@register_pass("fold_batchnorm")
def fold_batchnorm(g: Graph) -> bool:
    """Conv/ConvTranspose/Gemm -> BatchNormalization  ==>  the same op with rescaled weights."""
    changed = False
    for bn in g.nodes_of("BatchNormalization"):
        node = g.producer(bn.inputs[0])
        if not foldable(g, node, bn):
            continue
        affine = bn_affine(g, bn, g.tensors[node.outputs[0]].shape[1])
        if affine is None:
            continue
        (_fold_gemm if node.op == "Gemm" else _fold_conv)(g, node, *affine)
        scale, beta = (np.asarray(g.const(t), np.float64).ravel() for t in bn.inputs[1:3])
        node.attrs[BN_STATS] = {"mean": beta, "std": np.abs(scale)}
        params = bn.inputs[1:]
        g.bypass(bn)  # node's output now holds BN's result
        drop_unused(g, params)
        changed = True
    return changed
