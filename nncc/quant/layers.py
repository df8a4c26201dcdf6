"""Conv / Gemm weights in one canonical form, for the data-free steps that rescale weights
(equalize.py) or correct biases (datafree.py).

A Layer holds W as float64 with the output channel first -- a Conv's (M, C/group, k...) as
stored, a Gemm's alpha * B as (N, K) -- and its bias as (M,). `input_channels()` tells which
input channel each weight reads, so "the weights reading input channel c" is one mask for
dense, grouped and depthwise Conv and for Gemm alike. write_layer() stores a Layer back as new
constants (a Gemm as transB=1, alpha=1, beta=1, C of shape (N,)); the old constants are left
to whoever else reads them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedOp
from ..ir import Graph, Node
from ..ops.conv import FUSED_RESIDUAL
from ..passes._util import add_const, drop_unused


@dataclass
class Layer:
    node: Node
    w: np.ndarray   # float64, output channel first
    b: np.ndarray   # float64 (M,)
    group: int = 1
    out: str = ""   # the tensor holding the result (a MatMul's absorbed bias Add's output)

    def input_channels(self) -> np.ndarray:
        """Input channel read by each weight, broadcastable to w's shape."""
        m, cpg = self.w.shape[:2]
        per_m = (np.arange(m) // (m // self.group))[:, None] * cpg + np.arange(cpg)[None, :]
        return per_m.reshape(m, cpg, *[1] * (self.w.ndim - 2))

    def per_output(self, v: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """sum over the weights of output channel m of weights * v[input channel]: (M,)."""
        weights = self.w if weights is None else weights
        vin = np.asarray(v, np.float64)[self.input_channels()]
        return (weights * vin).reshape(weights.shape[0], -1).sum(axis=1)


def read_layer(g: Graph, node: Node) -> Layer | None:
    """The node as a Layer, or None for one with weights computed at run time, a residual input,
    a transposed A, or a Gemm bias that varies along M. A MatMul (with the Add of a constant
    bias after it, as the int8 rewrite takes it) is read, but write_layer() refuses it."""
    if node.op not in ("Conv", "Gemm", "MatMul") or FUSED_RESIDUAL in node.attrs:
        return None
    if not all(g.is_const(t) for t in node.inputs[1:] if t):
        return None
    if node.op == "Conv":
        w = np.asarray(g.const(node.inputs[1]), np.float64)
        b = np.asarray(g.const(node.inputs[2]), np.float64) if len(node.inputs) > 2 and \
            node.inputs[2] else np.zeros(w.shape[0])
        return Layer(node, w, b.reshape(-1), int(node.attrs.get("group", 1)), node.outputs[0])
    from .rewrite import gemm_operands
    try:
        _, w, bias, last = gemm_operands(g, node)
    except UnsupportedOp:
        return None
    return Layer(node, w, np.zeros(w.shape[0]) if bias is None else bias, 1, last.outputs[0])


def write_layer(g: Graph, layer: Layer) -> None:
    node = layer.node
    if node.op not in ("Conv", "Gemm"):
        raise UnsupportedOp(f"{node.op} (node {node.name!r}): weights cannot be rewritten")
    old = list(node.inputs)
    node.inputs = old[:1] + [add_const(g, f"{old[1]}_dfq", layer.w),
                             add_const(g, f"{node.name}_bias_dfq", layer.b)]
    if node.op == "Gemm":
        node.attrs.update(alpha=1.0, beta=1.0, transB=1)
        node.opset = max(node.opset, 7)  # C of shape (N,) broadcasts from opset 7 on
    drop_unused(g, old)
