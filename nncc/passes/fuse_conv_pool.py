"""Pass: Conv (+ its fused activation) followed by MaxPool, AveragePool or a global pool becomes
one ConvPool node (nncc/ops/conv_pool.py) whose kernel writes the pooled output directly.

The conv output is usually the largest tensor of a small CNN (LeNet-5: 6 x 28 x 28 before a
2 x 2 pool), so never storing it lowers the RAM peak. Only when the pool is the conv output's
sole reader (and it is not a graph output), and only when the ConvPool op accepts the pair --
anything the Conv or pool class refuses, or a shape it rejects, leaves the graph as it is.
Runs after fuse_activation, so Conv -> Relu -> MaxPool arrives here as Conv[Relu] -> MaxPool.
"""
from __future__ import annotations

from ..errors import ShapeError, UnsupportedOp
from ..ir import Graph, Node
from ..ops import FUSED_ACTIVATION, make_op
from ..ops.conv_pool import POOLS
from . import register_pass
from ._util import sole_consumer


def fused_node(g: Graph, conv: Node, pool: Node) -> Node | None:
    """The ConvPool replacing conv + pool, or None when the pair is not supported."""
    attrs = {"conv": {k: v for k, v in conv.attrs.items() if k != FUSED_ACTIVATION},
             "pool": {"op": pool.op, "opset": pool.opset, "attrs": dict(pool.attrs)}}
    if FUSED_ACTIVATION in conv.attrs:
        attrs[FUSED_ACTIVATION] = conv.attrs[FUSED_ACTIVATION]
    node = Node(conv.name, "ConvPool", list(conv.inputs), [pool.outputs[0]], attrs, conv.opset)
    try:
        op = make_op(node)
        (shape, _), = op.infer(*[g.tensors[t] if t else None for t in node.inputs])
    except (UnsupportedOp, ShapeError):
        return None
    return node if tuple(shape) == tuple(g.tensors[pool.outputs[0]].shape) else None


# Overlapping pool windows make the fused kernel recompute the conv outputs they share (2.25x
# the MACs for a 3x3 stride-2 pool): RAM bought with time. Off by default; the kernel handles it.
FUSE_OVERLAPPING = False


def windows_overlap(pool: Node) -> bool:
    if FUSE_OVERLAPPING or pool.op.startswith("Global"):
        return False
    kernel = pool.attrs.get("kernel_shape", [])
    strides = pool.attrs.get("strides") or [1] * len(kernel)
    dil = pool.attrs.get("dilations") or [1] * len(kernel)
    return any((k - 1) * d + 1 > s for k, s, d in zip(kernel, strides, dil))


@register_pass("fuse_conv_pool")
def fuse_conv_pool(g: Graph) -> bool:
    changed = False
    for pool in [n for n in g.nodes() if n.op in POOLS]:
        if any(pool.outputs[1:]):
            continue  # MaxPool's Indices output
        t = pool.inputs[0]
        conv = g.producer(t)
        if conv is None or conv.op != "Conv" or conv.outputs != [t] or sole_consumer(g, t) is not pool:
            continue
        if windows_overlap(pool):
            continue
        new = fused_node(g, conv, pool)
        if new is None:
            continue
        # The Conv node becomes the ConvPool in place (same name, same place in the order).
        conv.op, conv.attrs, conv.outputs = new.op, new.attrs, new.outputs
        g.remove_node(pool)
        for c in g.consumers(new.outputs[0]):
            g.replace_input(c, new.outputs[0], new.outputs[0])  # re-link to the new producer
        g.tensors.pop(t, None)
        changed = True
    return changed
