"""Cross-layer equalization (Nagel et al. 2019), a float-graph rewrite before data-free
quantization.

For two layers joined by a positively homogeneous function f (f(s x) = s f(x) for s > 0: no
activation, ReLU, LeakyRelu; max / average pooling and views between them are homogeneous
too), output channel i of the first layer can be divided by s_i > 0 and the weights reading
that channel in the second multiplied by s_i without changing the float function. With r1_i the
range (max |w|) of the first layer's output channel i and r2_i that of the second layer's
weights reading it, s_i = sqrt(r1_i / r2_i) makes both sqrt(r1_i r2_i): every channel then uses
the int8 range of its layer equally well. Pairs are swept until the scales settle, since a
layer in the middle of a chain belongs to two pairs.

ReLU6 (Clip to [0, 6]) is not positively homogeneous: the clip at 6 would have to become 6 / s_i
per channel. The paper replaces ReLU6 by ReLU before equalizing, which changes the float model.
Here that is an explicit choice: relu6="keep" (default) leaves pairs joined by ReLU6 unequalized
(the float function is exactly kept), relu6="relu" replaces the ReLU6 of each equalized pair by
ReLU -- the paper's method; its float accuracy is measured in tests/fixtures/quant/RESULTS.md.
The BatchNorm statistics of a rescaled layer are rescaled with it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..ir import Graph, Node
from ..ops import FUSED_ACTIVATION
from ..passes._util import sole_consumer
from ..passes.fold_batchnorm import affine_bn_stats
from .layers import Layer, read_layer, write_layer
from .rewrite import POOLS, VIEWS, activation_bounds

HOMOGENEOUS = ("Relu", "LeakyRelu")
MAX_SWEEPS, TOLERANCE = 200, 1e-6


@dataclass
class Equalized:
    pairs: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # why a candidate pair was left alone


@dataclass
class Pair:
    first: Layer
    second: Layer
    channel: np.ndarray  # the first layer's channel read by each of the second layer's inputs
    relu6: bool = False  # joined by ReLU6 (replaced by ReLU when equalized)


def joint(node: Node) -> str | None:
    """'ok', 'relu6' or None (not homogeneous) for the node's fused activation."""
    fused = node.attrs.get(FUSED_ACTIVATION)
    if fused is None or fused["op"] in HOMOGENEOUS:
        return "ok"
    lo, hi = activation_bounds(node) or (None, None)  # a Clip, or not homogeneous
    if lo == 0.0:
        return "ok" if hi == np.inf else "relu6" if hi > 0 else None
    return None


def follow(g: Graph, first: Layer) -> tuple[Node, np.ndarray] | None:
    """The layer reading `first`'s output through pools and views only, and which channel of
    `first` each of its input channels (Conv) or features (Gemm) holds."""
    t = first.out
    shape = g.tensors[t].shape
    chan = np.broadcast_to(np.arange(shape[1]).reshape(1, -1, *[1] * (len(shape) - 2)), shape)
    while True:
        c = sole_consumer(g, t)
        if c is None or c.inputs[0] != t:
            return None
        out = g.tensors[c.outputs[0]].shape
        if c.op in ("Conv", "Gemm"):
            per_in = np.moveaxis(chan, 1, 0).reshape(chan.shape[1], -1)
            if chan.shape[0] != 1 or np.any(per_in != per_in[:, :1]):
                return None
            return c, per_in[:, 0]
        if FUSED_ACTIVATION in c.attrs:
            return None
        if c.op in POOLS:
            per_in = np.moveaxis(chan, 1, 0).reshape(chan.shape[1], -1)
            if np.any(per_in != per_in[:, :1]):
                return None
            chan = np.broadcast_to(per_in[:, 0].reshape(1, -1, *[1] * (len(out) - 2)), out)
        elif c.op in VIEWS:
            chan = chan.reshape(out)
        else:
            return None
        t = c.outputs[0]


def find_pairs(g: Graph, relu6: str, skipped: list[str]) -> list[Pair]:
    layers: dict[str, Layer] = {}

    def layer(node: Node) -> Layer | None:
        if node.name not in layers:
            found = read_layer(g, node)
            if found is None or node.op == "MatMul":
                return None
            layers[node.name] = found
        return layers[node.name]

    pairs = []
    for node in g.nodes():
        first = layer(node) if node.op in ("Conv", "Gemm") else None
        nxt = follow(g, first) if first is not None else None
        second = layer(nxt[0]) if nxt is not None else None
        if second is None:
            continue
        kind = joint(node)
        if kind is None or kind == "relu6" and relu6 != "relu":
            why = "ReLU6 is not positively homogeneous" if kind else "its activation is not homogeneous"
            skipped.append(f"{node.name} -> {second.node.name}: {why}")
            continue
        pairs.append(Pair(first, second, nxt[1], kind == "relu6"))
    return pairs


def channel_range(w: np.ndarray) -> np.ndarray:
    return np.abs(w).reshape(w.shape[0], -1).max(axis=1)


def equalize_pair(p: Pair) -> np.ndarray:
    """Rescale one pair in place; -> the scales s (first layer's channels divided by s)."""
    r1 = channel_range(p.first.w)
    src = np.broadcast_to(p.channel[p.second.input_channels()], p.second.w.shape)
    r2 = np.zeros_like(r1)
    np.maximum.at(r2, src.ravel(), np.abs(p.second.w).ravel())
    ok = (r1 > 0) & (r2 > 0)
    s = np.where(ok, np.sqrt(np.where(ok, r1, 1.0) / np.where(ok, r2, 1.0)), 1.0)
    p.first.w = p.first.w / s.reshape(-1, *[1] * (p.first.w.ndim - 1))
    p.first.b = p.first.b / s
    p.second.w = p.second.w * s[src]
    return s


def equalize(g: Graph, relu6: str = "keep") -> Equalized:
    """Cross-layer equalization of every eligible pair of `g`, in place."""
    if relu6 not in ("keep", "relu"):
        raise ValueError(f"relu6={relu6!r}")
    res = Equalized()
    pairs = find_pairs(g, relu6, res.skipped)
    total = {p.first.node.name: np.ones(p.first.w.shape[0]) for p in pairs}
    for _ in range(MAX_SWEEPS):
        change = 0.0
        for p in pairs:
            s = equalize_pair(p)
            total[p.first.node.name] *= s
            change = max(change, float(np.max(np.abs(np.log(s)))))
        if change < TOLERANCE:
            break
    written = set()
    for p in pairs:
        res.pairs.append((p.first.node.name, p.second.node.name))
        affine_bn_stats(p.first.node, 1.0 / total[p.first.node.name], 0.0)
        if p.relu6:
            p.first.node.attrs[FUSED_ACTIVATION] = {"op": "Relu", "params": {}}
        for la in (p.first, p.second):
            if la.node.name not in written:
                written.add(la.node.name)
                write_layer(g, la)
    return res
