"""Pass: fuse an elementwise activation into the op that produces its input.

Conv -> Relu (or Clip with constant bounds, LeakyRelu, HardSigmoid, HardSwish, Sigmoid, Tanh)
becomes one Conv whose kernel applies the activation to each result before storing it; the same
for Gemm, MatMul and the broadcasting elementwise ops (Add -> Relu closes every ResNet block,
MatMul+Add -> Relu, once fuse_matmul_add made it a Gemm, is the fully connected layer): one
pass over the output instead of two, and no intermediate buffer. The activation is recorded as
`node.attrs[FUSED_ACTIVATION] = {"op": ..., "params": ...}` with the activation op's own
`params()`, which the numpy reference (`Op.epilogue`) and the C (`_activation.j2` act()) read.
Only producers whose Op sets `accepts_activation` qualify.
"""
from __future__ import annotations

from ..errors import UnsupportedOp
from ..ir import Graph, Node
from ..ops import FUSED_ACTIVATION, make_op
from ..ops.activation import Activation
from . import register_pass
from ._util import drop_unused, sole_consumer

FUSABLE = ("Relu", "Clip", "LeakyRelu", "HardSigmoid", "HardSwish", "Sigmoid", "Tanh")


def activation_params(g: Graph, act: Node) -> dict | None:
    """The activation's params() (Clip's bounds read from its constant inputs), or None."""
    op = make_op(act)
    if not isinstance(op, Activation):
        return None
    try:
        op.infer(*[g.tensors[t] if t else None for t in act.inputs])  # Clip_11 reads its bounds here
    except UnsupportedOp:  # e.g. Clip bounds computed at run time
        return None
    return dict(op.params())


def producer_accepts(g: Graph, act: Node) -> Node | None:
    prod = g.producer(act.inputs[0])
    if prod is None or FUSED_ACTIVATION in prod.attrs or any(prod.outputs[1:]):
        return None
    if prod.outputs[0] != act.inputs[0] or sole_consumer(g, prod.outputs[0]) is not act:
        return None
    return prod if make_op(prod).accepts_activation else None


@register_pass("fuse_activation")
def fuse_activation(g: Graph) -> bool:
    changed = False
    for act in g.nodes():
        if act.op not in FUSABLE or not act.inputs or any(act.outputs[1:]):
            continue
        prod = producer_accepts(g, act)
        params = activation_params(g, act) if prod is not None else None
        if params is None:
            continue
        prod.attrs[FUSED_ACTIVATION] = {"op": act.op, "params": params}
        extra = act.inputs[1:]
        g.bypass(act)  # prod's output now holds the activation's result
        drop_unused(g, extra)
        changed = True
    return changed
