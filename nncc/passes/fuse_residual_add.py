"""Pass: Conv followed by Add(conv_out, r), r of the same shape, becomes one Conv that adds r
before its activation: y = act(conv(x) + b + r) (the Conv's residual input, index 3; see
nncc/ops/conv.py).

This is the closing conv of a residual block. Unfused, the block input, the conv input and the
conv output are all live at that conv: three tensors. Fused, the kernel reads r[i] only just
before writing y[i], so the memory planner may put y over r when r dies there (Op.inplace_inputs):
two tensors. Conditions: the conv output is read by the Add only (not a graph output), the Conv
has no activation of its own (the Add's fused activation moves onto the Conv), and both Add
operands have the output's shape (no broadcasting). Runs after fuse_activation (the Add's Relu
is fused by then) and after fuse_conv_pool (a ConvPool takes no residual).
`unfuse_residual_add` undoes it, for nncc/quant, whose int8 kernels take no residual.
"""
from __future__ import annotations

from ..ir import Graph, Node, TensorInfo
from ..ops import FUSED_ACTIVATION, make_op
from ..ops.conv import FUSED_RESIDUAL, Conv
from . import register_pass
from ._util import absorb_add, fresh_name, sole_consumer


def _residual_conv(g: Graph, add: Node) -> tuple[Node, int] | None:
    """(the Conv whose output is operand c of `add`, c) when the pair can fuse."""
    if len(add.inputs) != 2 or not all(add.inputs) or len(add.outputs) != 1:
        return None
    y = g.tensors[add.outputs[0]]
    if any(g.tensors[t].shape != y.shape or g.tensors[t].dtype != "float32" for t in add.inputs):
        return None
    for c, t in enumerate(add.inputs):
        conv = g.producer(t)
        if conv is None or conv.op != "Conv" or conv.outputs != [t] or len(conv.inputs) > 3:
            continue
        if FUSED_ACTIVATION in conv.attrs or FUSED_RESIDUAL in conv.attrs or sole_consumer(g, t) is not add:
            continue
        if type(make_op(conv)) is Conv:
            return conv, c
    return None


@register_pass("fuse_residual_add")
def fuse_residual_add(g: Graph) -> bool:
    changed = False
    for add in g.nodes_of("Add"):
        found = _residual_conv(g, add)
        if found is None:
            continue
        conv, c = found
        conv.attrs[FUSED_RESIDUAL] = {"add": add.name, "opset": add.opset, "conv_first": c == 0}
        if FUSED_ACTIVATION in add.attrs:
            conv.attrs[FUSED_ACTIVATION] = add.attrs[FUSED_ACTIVATION]
        absorb_add(g, conv, add, c, 3)
        changed = True
    return changed


def unfuse_residual_add(g: Graph) -> Graph:
    """The graph with every residual Conv split back into Conv -> Add (the activation back on
    the Add). Returns `g` itself when there is none, else a new graph."""
    if not any(FUSED_RESIDUAL in n.attrs for n in g.nodes()):
        return g
    g = g.copy()
    for conv in [n for n in g.nodes() if FUSED_RESIDUAL in n.attrs]:
        info = conv.attrs.pop(FUSED_RESIDUAL)
        act = conv.attrs.pop(FUSED_ACTIVATION, None)
        r, out = conv.inputs[3], conv.outputs[0]
        t = fresh_name(g, f"{out}_conv")
        g.add_tensor(TensorInfo(t, g.tensors[out].shape, g.tensors[out].dtype))
        conv.inputs = conv.inputs[:3] if conv.inputs[2] else conv.inputs[:2]
        conv.outputs = [t]
        users = g.consumers(out)
        g.replace_input(conv, conv.inputs[0], conv.inputs[0])  # drop the edge from r's producer
        for u, v in list(g.nx.out_edges(conv.name)):
            g.nx.remove_edge(u, v)
        ins = [t, r] if info["conv_first"] else [r, t]
        g.add_node(Node(info["add"], "Add", ins, [out], {FUSED_ACTIVATION: act} if act else {},
                        info["opset"]))
        for user in users:
            g.replace_input(user, out, out)
    return g
