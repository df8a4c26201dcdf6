"""Which constants a model's kernels read at run time, and in which order: what the emitter
writes into flash and what report.json counts as weights_bytes."""
from __future__ import annotations

from collections.abc import Callable

from ..ir import Graph
from ..ops import make_op


def kernel_constants(g: Graph) -> tuple[set[str], dict[str, int], dict[tuple[str, int, str], Callable]]:
    """Constants some kernel reads at run time as they are, the elements some kernel may read
    past the end of each (Op.const_slack), and {(node, input j, constant): the order} of those a
    kernel reads in an order of its own (Op.const_layouts). Those an op needs only at compile
    time (Op.const_inputs: axes, shapes, pads) are not emitted: they would waste flash, and an
    empty one (axes=[]) is not valid C."""
    out: set[str] = set()
    slack: dict[str, int] = {}
    layouts: dict[tuple[str, int, str], Callable] = {}
    for node in g.nodes():
        op = make_op(node)
        ins = [g.tensors[t] if t else None for t in node.inputs]
        laid = op.const_layouts(ins, [g.tensors[t] for t in node.outputs if t])
        for j, t in enumerate(node.inputs):
            if t and j in laid and g.is_const(t):
                layouts[(node.name, j, t)] = laid[j]
            elif t and j not in op.const_inputs:
                out.add(t)
        for j, n in op.const_slack(ins).items():
            t = node.inputs[j]
            slack[t] = max(slack.get(t, 0), n)
    return out, slack, layouts


def laid_name(t: str, fn: Callable) -> str:
    """The name of constant t's array in the order fn gives it."""
    return f"{t} ({fn.__name__})"


def flash_bytes(g: Graph) -> tuple[int, dict[str, int]]:
    """Bytes of the constants the kernels read (each array once: a constant shared by several
    nodes, or a reordered one, is stored once), and per node the bytes of those it reads."""
    passed, _, layouts = kernel_constants(g)
    passed = {t for t in passed if g.is_const(t)}
    arrays = {t: g.tensors[t].nbytes for t in passed}
    node_bytes: dict[str, int] = {}
    for (node, _, t), fn in layouts.items():
        key = laid_name(t, fn)
        if key not in arrays:
            arrays[key] = fn(g.tensors[t].data).nbytes
        node_bytes[node] = node_bytes.get(node, 0) + arrays[key]
    for node in g.nodes():
        op = make_op(node)
        for j, t in enumerate(node.inputs):
            if t in passed and (node.name, j, t) not in layouts and j not in op.const_inputs:
                node_bytes[node.name] = node_bytes.get(node.name, 0) + arrays[t]
    return sum(arrays.values()), node_bytes
