"""The intermediate representation every pipeline stage reads and returns.

A Graph wraps a networkx.DiGraph whose vertices are operator nodes (keyed by node name) and whose
edges run from a tensor's producer to each consumer. Tensors live beside it in `Graph.tensors`
with their static shape, dtype and, for constants, their data. Iteration order is always the
deterministic topological order, so every later stage (and the generated C) is reproducible.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import networkx as nx
import numpy as np

from .errors import BadModel


@dataclass(frozen=True)
class QuantParams:
    """Affine quantization, real = scale * (q - zero_point) (nncc/quant/). One value each for a
    per-tensor tensor; one per index along `axis` for per-channel weights."""
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int | None = None


@dataclass
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"
    data: np.ndarray | None = None  # set for constants (weights, folded subgraphs)
    quant: QuantParams | None = None  # set for the integer tensors of a quantized graph

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * np.dtype(self.dtype).itemsize


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]  # "" marks an omitted optional input
    outputs: list[str]
    attrs: dict = field(default_factory=dict)
    opset: int = 13
    kernel: str = "direct"


class Graph:
    def __init__(self, name: str):
        self.name = name
        self.nx = nx.DiGraph()
        self.tensors: dict[str, TensorInfo] = {}
        self.inputs: list[str] = []
        self.outputs: list[str] = []
        self._order = 0  # insertion counter: the tie-break that makes topo order stable

    # -- construction -------------------------------------------------------------------------
    def add_tensor(self, t: TensorInfo) -> TensorInfo:
        self.tensors[t.name] = t
        return t

    def add_node(self, node: Node) -> Node:
        if node.name in self.nx:
            raise BadModel(f"duplicate node name {node.name!r}")
        self.nx.add_node(node.name, node=node, order=self._order)
        self._order += 1
        self._connect(node)
        return node

    def _connect(self, node: Node) -> None:
        for t in node.inputs:
            p = self.producer(t) if t else None
            if p is not None and p.name != node.name:
                self.nx.add_edge(p.name, node.name)
        for t in node.outputs:
            for c in self.consumers(t):
                if c.name != node.name:
                    self.nx.add_edge(node.name, c.name)

    def remove_node(self, node: Node) -> None:
        self.nx.remove_node(node.name)

    def replace_input(self, node: Node, old: str, new: str) -> None:
        node.inputs = [new if t == old else t for t in node.inputs]
        for p in list(self.nx.predecessors(node.name)):
            self.nx.remove_edge(p, node.name)
        self._connect(node)

    def bypass(self, node: Node) -> None:
        """Remove a node whose single output equals its first input (Identity, Dropout)."""
        src, dst = node.inputs[0], node.outputs[0]
        self.remove_node(node)
        if dst in self.outputs:
            # Keep the output's name (it is the C API's); rename the source instead when we can.
            prod = self.producer(src)
            if prod is not None and src not in self.outputs and not self.consumers(src):
                prod.outputs = [dst if t == src else t for t in prod.outputs]
                self.tensors.pop(src, None)
                self._connect(prod)
                return
            self.outputs = [src if t == dst else t for t in self.outputs]
        for c in self.consumers(dst):
            self.replace_input(c, dst, src)
        if dst not in self.outputs:
            self.tensors.pop(dst, None)

    # -- queries ------------------------------------------------------------------------------
    def node(self, name: str) -> Node:
        return self.nx.nodes[name]["node"]

    def nodes(self) -> list[Node]:
        """All nodes in deterministic topological order."""
        order = nx.lexicographical_topological_sort(self.nx, key=lambda n: self.nx.nodes[n]["order"])
        return [self.nx.nodes[n]["node"] for n in order]

    def nodes_of(self, op: str) -> list[Node]:
        return [n for n in self.nodes() if n.op == op]

    def producer(self, tensor: str) -> Node | None:
        for _, data in self.nx.nodes(data=True):
            if tensor in data["node"].outputs:
                return data["node"]
        return None

    def consumers(self, tensor: str) -> list[Node]:
        return [d["node"] for _, d in sorted(self.nx.nodes(data=True), key=lambda x: x[1]["order"])
                if tensor in d["node"].inputs]

    def is_const(self, tensor: str) -> bool:
        return bool(tensor) and self.tensors[tensor].is_const

    def const(self, tensor: str) -> np.ndarray:
        return self.tensors[tensor].data

    def intermediates(self) -> list[str]:
        """Tensors computed by nodes that are not graph inputs, outputs or constants."""
        seen: list[str] = []
        for n in self.nodes():
            for t in n.outputs:
                if t and t not in self.outputs and not self.is_const(t) and t not in seen:
                    seen.append(t)
        return seen

    def used_constants(self) -> list[str]:
        seen: list[str] = []
        for n in self.nodes():
            for t in n.inputs:
                if t and self.is_const(t) and t not in seen:
                    seen.append(t)
        for t in self.outputs:
            if self.is_const(t) and t not in seen:
                seen.append(t)
        return seen

    def copy(self) -> Graph:
        import copy
        return copy.deepcopy(self)


def verify(g: Graph) -> None:
    """Check the invariants every stage relies on; raise BadModel with the first violation."""
    produced: set[str] = set(g.inputs)
    for n in g.nodes():
        for t in n.inputs:
            if t and t not in g.tensors:
                raise BadModel(f"node {n.name!r} reads unknown tensor {t!r}")
            if t and not g.is_const(t) and t not in produced:
                raise BadModel(f"node {n.name!r} reads {t!r} before it is produced")
        for t in n.outputs:
            if t and t not in g.tensors:
                raise BadModel(f"node {n.name!r} writes tensor {t!r} without shape information")
            produced.add(t)
    for t in g.outputs:
        if t not in produced and not g.is_const(t):
            raise BadModel(f"graph output {t!r} is never produced")
    if not nx.is_directed_acyclic_graph(g.nx):
        raise BadModel("the graph has a cycle")
