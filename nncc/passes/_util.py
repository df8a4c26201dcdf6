"""Small graph queries and edits shared by the passes (not passes themselves)."""
from __future__ import annotations

import numpy as np

from ..ir import Graph, Node, TensorInfo
from ..ops import make_op


def sole_consumer(g: Graph, tensor: str) -> Node | None:
    """The one node reading `tensor`, when it is its only use (not a graph output, read once)."""
    if tensor in g.outputs:
        return None
    users = g.consumers(tensor)
    if len(users) != 1 or users[0].inputs.count(tensor) != 1:
        return None
    return users[0]


def absorb_add(g: Graph, conv: Node, add: Node, c: int, index: int) -> None:
    """Fold a two-input Add into the conv producing its operand `c`: the other operand becomes
    the conv's input `index` (absent optional inputs before it filled with ""), the Add's output
    the conv's, and the conv's own output tensor disappears. The caller records the Add's
    attributes on the conv and has checked the conv's output is read by this Add only."""
    t, r, out = add.inputs[c], add.inputs[1 - c], add.outputs[0]
    g.remove_node(add)
    conv.inputs = (conv.inputs + [""] * index)[:index] + [r]
    conv.outputs = [out]
    g.replace_input(conv, r, r)  # re-link: r's producer now feeds the conv
    for user in g.consumers(out):
        g.replace_input(user, out, out)
    g.tensors.pop(t, None)


def fresh_name(g: Graph, base: str) -> str:
    name, k = base, 1
    while name in g.tensors:
        name, k = f"{base}_{k}", k + 1
    return name


def add_const(g: Graph, base: str, value: np.ndarray) -> str:
    """A new float32 constant tensor under a fresh name; the originals may be shared, so passes
    never rewrite a constant in place."""
    value = np.ascontiguousarray(value, dtype=np.float32)
    name = fresh_name(g, base)
    g.add_tensor(TensorInfo(name, tuple(value.shape), "float32", value))
    return name


def drop_unused(g: Graph, tensors) -> None:
    """Forget constants no node reads any more (they would only clutter g.tensors)."""
    for t in tensors:
        if t and t in g.tensors and g.is_const(t) and t not in g.outputs and not g.consumers(t):
            del g.tensors[t]


def const_operand(g: Graph, node: Node) -> tuple[str, np.ndarray] | None:
    """For a two-input elementwise node (Add, Mul) with one runtime and one constant operand,
    where the constant only broadcasts into the runtime operand (the output has its shape):
    (runtime tensor, constant as float64 padded with leading 1s to the output's rank)."""
    if len(node.inputs) != 2 or not all(node.inputs) or any(node.outputs[1:]):
        return None
    consts = [g.is_const(t) for t in node.inputs]
    if consts.count(True) != 1:
        return None
    shapes = make_op(node).aligned([g.tensors[t].shape for t in node.inputs])
    x, c = (1, 0) if consts[0] else (0, 1)
    out = g.tensors[node.outputs[0]].shape
    if tuple(shapes[x]) != tuple(out) or len(shapes[c]) > len(out):
        return None
    if g.tensors[node.inputs[c]].dtype != "float32":
        return None
    value = np.asarray(g.const(node.inputs[c]), np.float64)
    if not np.all(np.isfinite(value)):
        return None  # inf * 0 or nan would not survive being moved into the weights
    return node.inputs[x], value.reshape((1,) * (len(out) - len(shapes[c])) + tuple(shapes[c]))
