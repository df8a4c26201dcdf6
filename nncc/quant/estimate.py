"""Data-free activation statistics: the mean, standard deviation and range of every activation
tensor, estimated without data from the BatchNorm statistics that passes/fold_batchnorm.py kept
on each folded node (as Nagel et al. 2019, "Data-Free Quantization Through Weight Equalization
and Bias Correction", do).

A node with BatchNorm statistics outputs, per channel c, x ~ N(beta_c, gamma_c^2) before its
activation; the fused activation clips that normal to [a, b] (ReLU: [0, inf), ReLU6: [0, 6]).
Its estimated range is clip(beta_c +- SIGMAS * gamma_c, a, b), its mean and standard deviation
those of the clipped normal. Elsewhere the estimates are propagated:
- Conv / Gemm without BatchNorm statistics (the classifier at the end): mean sum(W E[x]) + b
  (exact by linearity) and std at most sum(|W| std[x]) whatever the inputs' correlations; range
  mean +- BOUND_SIGMAS times that bound, never wider than the interval bound sum(max(W lo,
  W hi)) + b. (Taking the inputs as independent, sqrt(sum(W^2 Var[x])), under-estimated the
  logits' spread 5x on mnist_cnn_bn and clipped the winning logit.) When the input has no mean
  (a graph input), the interval bound alone: safe, wide. The bound is ~sqrt(fan-in) times too
  wide on real layers, so it is used once only: a layer without BN statistics whose input went
  through another one's bound (LeNet's FC-FC-FC head) is listed in `guessed`, and datafree.py
  refuses the model -- three compounded bounds made lenet5_bn's output range ~600x too wide,
  every output int8 the zero point.
- pools: the input's per-channel mean, spread and range. For MaxPool the mean is a lower bound
  of E[max]. (The max of k independent draws, an upper bound, over-estimated it 1.5-2.3x on
  mnist_cnn_bn, neighbouring values being correlated; the input's mean gave 0.6-0.85x.)
- views: the same values rearranged; Add: means add, spreads and ranges add (worst case).
- graph inputs: only the declared range (datafree.py), no mean.
Estimates are arrays broadcastable to the tensor's shape (per channel: (1, C, 1, 1)), so views
(Flatten into a Gemm) need no special case. Moments are integrated numerically on a grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir import Graph, Node
from ..passes.fold_batchnorm import BN_STATS
from .layers import Layer, read_layer
from .rewrite import POOLS, VIEWS, activation_bounds

SIGMAS = 6.0  # range = mean +- SIGMAS * std before clipping (tests/quant/test_datafree.py)
BOUND_SIGMAS = 3.0  # range of a layer without BN statistics: mean +- 3 x its std bound
_Z = np.linspace(-8.0, 8.0, 4001)  # standard normal on a grid: moments by summation
_P = np.exp(-0.5 * _Z ** 2) / np.sum(np.exp(-0.5 * _Z ** 2))


@dataclass
class Estimate:
    lo: np.ndarray
    hi: np.ndarray
    mean: np.ndarray | None = None
    std: np.ndarray | None = None
    hops: int = 0  # layers without BN statistics whose std bound this estimate went through

    def reshaped(self, shape_in, shape_out) -> Estimate:
        def r(v):
            return None if v is None else np.broadcast_to(v, shape_in).reshape(shape_out)
        return Estimate(r(self.lo), r(self.hi), r(self.mean), r(self.std), self.hops)


def clipped_normal(m, s, a, b) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of clip(N(m, s^2), a, b), elementwise."""
    m, s, a, b = (np.asarray(v, np.float64) for v in np.broadcast_arrays(m, s, a, b))
    v = np.clip(m[..., None] + s[..., None] * _Z, a[..., None], b[..., None])
    mean = (v * _P).sum(-1)
    var = np.maximum((v * v * _P).sum(-1) - mean ** 2, 0.0)
    return mean, np.sqrt(var)


def per_channel(v: np.ndarray, rank: int) -> np.ndarray:
    return np.asarray(v, np.float64).reshape(1, -1, *[1] * (rank - 2))


def channel_values(v: np.ndarray, shape, reduce=np.mean) -> np.ndarray:
    """An estimate array over a tensor of `shape` reduced to one value per channel (axis 1)."""
    full = np.broadcast_to(v, shape)
    return reduce(np.moveaxis(full, 1, 0).reshape(shape[1], -1), axis=1)


class Estimator:
    def __init__(self, g: Graph, input_ranges: dict, sigmas: float = SIGMAS):
        self.g, self.sigmas = g, sigmas
        self.est: dict[str, Estimate] = {}
        self.guessed: list[str] = []  # layers whose estimate would rest on another's std bound
        for t, (lo, hi) in input_ranges.items():
            one = np.ones((1,) * len(g.tensors[t].shape))
            self.est[t] = Estimate(lo * one, hi * one)

    def run(self) -> dict[str, Estimate]:
        absorbed: set[str] = set()
        for node in self.g.nodes():
            if node.name in absorbed or not node.inputs or node.inputs[0] not in self.est:
                continue
            if node.op in ("Conv", "Gemm", "MatMul"):
                layer = read_layer(self.g, node)
                if layer is not None:
                    if layer.out != node.outputs[0]:  # MatMul + bias Add: one layer
                        absorbed.add(self.g.producer(layer.out).name)
                    self.est[layer.out] = self.linear(layer, self.g.producer(layer.out))
            elif node.op in POOLS:
                self.est[node.outputs[0]] = self.pool(node)
            elif node.op in VIEWS:
                shapes = [self.g.tensors[t].shape for t in (node.inputs[0], node.outputs[0])]
                self.est[node.outputs[0]] = self.est[node.inputs[0]].reshaped(*shapes)
            elif node.op == "Add" and all(t in self.est for t in node.inputs):
                self.est[node.outputs[0]] = self.add(node)
        return self.est

    # -- ops ----------------------------------------------------------------------------------
    def linear(self, layer: Layer, last: Node) -> Estimate:
        x_shape = self.g.tensors[layer.node.inputs[0]].shape
        rank = len(self.g.tensors[layer.out].shape)
        x = self.est[layer.node.inputs[0]]
        lo_c = channel_values(x.lo, x_shape, np.min)
        hi_c = channel_values(x.hi, x_shape, np.max)
        wp, wn = np.maximum(layer.w, 0.0), np.minimum(layer.w, 0.0)
        bound_lo = layer.per_output(lo_c, wp) + layer.per_output(hi_c, wn) + layer.b
        bound_hi = layer.per_output(hi_c, wp) + layer.per_output(lo_c, wn) + layer.b
        stats = layer.node.attrs.get(BN_STATS)
        m = s = None
        hops = x.hops
        if stats is not None:
            m, s, k, hops = stats["mean"], stats["std"], self.sigmas, 0
        elif x.mean is not None and x.std is not None:
            m = layer.per_output(channel_values(x.mean, x_shape)) + layer.b
            s = layer.per_output(channel_values(x.std, x_shape), np.abs(layer.w))  # a bound
            k, hops = BOUND_SIGMAS, hops + 1
            if hops > 1:
                self.guessed.append(layer.node.name)
        pc = [per_channel(v, rank) for v in (bound_lo, bound_hi)]
        if m is not None:
            m, s = per_channel(m, rank), per_channel(s, rank)
            pc = [np.clip(m - k * s, *pc), np.clip(m + k * s, *pc)]
        e = self.activate(last, *pc, m, s)
        e.hops = hops
        return e

    def activate(self, node: Node, lo, hi, m, s) -> Estimate:
        """The estimate of node's output after its fused activation, from the one before it."""
        bounds = activation_bounds(node)
        if bounds is None:  # not a clip: the int8 rewrite refuses it; keep a wide range
            return Estimate(lo, hi)
        a, b = bounds
        lo, hi = np.clip(lo, a, b), np.clip(hi, a, b)
        if m is None:
            return Estimate(lo, np.maximum(lo, hi))
        mean, std = clipped_normal(m, s, a, b)
        return Estimate(lo, np.maximum(lo, hi), mean, std)

    def pool(self, node: Node) -> Estimate:
        """Pools keep channels; their output is reduced to per-channel estimates."""
        x = self.est[node.inputs[0]]
        shape = self.g.tensors[node.inputs[0]].shape
        rank = len(self.g.tensors[node.outputs[0]].shape)

        def pc(v, reduce=np.mean):
            return None if v is None else per_channel(channel_values(v, shape, reduce), rank)
        return Estimate(pc(x.lo, np.min), pc(x.hi, np.max), pc(x.mean), pc(x.std), x.hops)

    def add(self, node: Node) -> Estimate:
        a, b = (self.est[t] for t in node.inputs)
        lo, hi = a.lo + b.lo, a.hi + b.hi
        known = a.mean is not None and b.mean is not None
        e = self.activate(node, lo, hi, *((a.mean + b.mean, a.std + b.std) if known else (None, None)))
        e.hops = max(a.hops, b.hops)
        return e


def estimate(g: Graph, input_ranges: dict, sigmas: float = SIGMAS) -> dict[str, Estimate]:
    """{tensor: Estimate} for the graph inputs and every tensor a Conv / Gemm / pool / view /
    Add computes from them."""
    return Estimator(g, input_ranges, sigmas).run()


def ranges_of(est: dict[str, Estimate]) -> dict[str, tuple[float, float]]:
    """Per-tensor (lo, hi), as calibrate.calibrate() returns them."""
    return {t: (float(np.min(e.lo)), float(np.max(e.hi))) for t, e in est.items()}
