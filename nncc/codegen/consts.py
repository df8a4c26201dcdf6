"""Which constants a model's kernels read at run time, and in which order: what the emitter
writes into flash and what report.json counts as weights_bytes."""
from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from ..ir import Graph
from ..ops import make_op


class KernelConstants(NamedTuple):
    passed: set[str]  # tensors some kernel reads at run time as they are (constants among them)
    slack: dict[str, int]  # elements some kernel may read past a constant's end (Op.const_slack)
    layouts: dict[tuple[str, int, str], Callable]  # (node, input j, constant): its order (Op.const_layouts)
    reads: dict[str, list[str]]  # node -> the constant arrays it reads (laid_name() for a reordered one)
    weights: dict[str, list[str]]  # node -> the constants it reads, as the graph holds them


def laid_name(t: str, fn: Callable) -> str:
    """The name of constant t's array in the order fn gives it."""
    return f"{t} ({fn.__name__})"


def kernel_constants(g: Graph) -> KernelConstants:
    """What the kernels read at run time. Inputs an op needs only at compile time
    (Op.const_inputs: axes, shapes, pads) are not emitted: they would waste flash, and an empty
    one (axes=[]) is not valid C."""
    kc = KernelConstants(set(), {}, {}, {}, {})
    for node in g.nodes():
        op = make_op(node)
        ins = [g.tensors[t] if t else None for t in node.inputs]
        laid = op.const_layouts(ins, [g.tensors[t] for t in node.outputs if t])
        reads, weights = kc.reads.setdefault(node.name, []), kc.weights.setdefault(node.name, [])
        for j, t in enumerate(node.inputs):
            if t and j in laid and g.is_const(t):
                kc.layouts[(node.name, j, t)] = laid[j]
                reads.append(laid_name(t, laid[j]))
                weights.append(t)
            elif t and j not in op.const_inputs:
                kc.passed.add(t)
                if g.is_const(t):
                    reads.append(t)
                    weights.append(t)
        for j, n in op.const_slack(ins).items():
            t = node.inputs[j]
            kc.slack[t] = max(kc.slack.get(t, 0), n)
    return kc


def weight_bytes(g: Graph, kc: KernelConstants) -> tuple[int, dict[str, int]]:
    """Bytes of the constant arrays the kernels read (kc: kernel_constants(g); each array once:
    a constant shared by several nodes, or a reordered one, is stored once), and per node the
    bytes of those it reads."""
    arrays = {t: g.tensors[t].nbytes for t in kc.passed if g.is_const(t)}
    for (_, _, t), fn in kc.layouts.items():
        arrays.setdefault(laid_name(t, fn), fn(g.tensors[t].data).nbytes)
    return sum(arrays.values()), {n: sum(arrays[a] for a in names) for n, names in kc.reads.items()}
