"""Pass: MatMul followed by the Add of a constant bias becomes one Gemm.

TensorFlow and Keras export a fully connected layer as MatMul(x, W) -> Add(b) -> Relu (all of
the MLPerf Tiny models end that way, the anomaly detection autoencoder is nothing else). Gemm
computes A B + C in one kernel with C broadcast to the output, so when both MatMul operands are
2-D (where MatMul and Gemm agree exactly) the pair becomes Gemm(x, W, b): one loop nest, one
buffer less, and the Relu after it then fuses too (fuse_activation runs later). Batched or 1-D
MatMuls keep their Add.
"""
from __future__ import annotations

from ..ir import Graph, Node
from ..ops import FUSED_ACTIVATION
from . import register_pass
from ._util import add_const, const_operand, drop_unused, sole_consumer

GEMM_OPSET = 7  # unidirectional broadcasting of C; opsets 1-6 needed broadcast=1


def matmul_before(g: Graph, add: Node) -> tuple[Node, str, object] | None:
    """(the MatMul, its output, the bias as a 2-D float64 array) when `add` folds into it."""
    found = const_operand(g, add)
    if found is None:
        return None
    t, bias = found
    mm = g.producer(t)
    if mm is None or mm.op != "MatMul" or FUSED_ACTIVATION in mm.attrs or sole_consumer(g, t) is not add:
        return None
    if any(len(g.tensors[x].shape) != 2 for x in mm.inputs) or bias.ndim != 2:
        return None
    return mm, t, bias


def bias_tensor(g: Graph, add: Node, bias) -> str:
    """The Add's constant itself when Gemm can read it as it is, else a reshaped copy (legacy
    Add aligned B at an `axis`, or B had leading unit dims beyond 2)."""
    name = next(x for x in add.inputs if g.is_const(x))
    shape = g.tensors[name].shape
    if len(shape) <= 2 and (1,) * (2 - len(shape)) + tuple(shape) == bias.shape:
        return name
    return add_const(g, name + "_gemm", bias[0] if bias.shape[0] == 1 else bias)


@register_pass("fuse_matmul_add")
def fuse_matmul_add(g: Graph) -> bool:
    changed = False
    for add in g.nodes_of("Add"):
        found = matmul_before(g, add)
        if found is None:
            continue
        mm, t, bias = found
        c = bias_tensor(g, add, bias)
        old = list(add.inputs)
        mm.op, mm.opset, mm.attrs = "Gemm", max(mm.opset, GEMM_OPSET), {}
        mm.inputs = [*mm.inputs, c]  # a constant: no graph edge to add
        add.inputs = [t, c]  # bypass() keeps the first input
        g.bypass(add)  # mm's output now holds the sum
        drop_unused(g, old)
        changed = True
    return changed
