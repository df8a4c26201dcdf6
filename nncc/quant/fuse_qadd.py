"""Pass over the int8 graph: QConv -> QAdd(conv_out, r) becomes one QConv carrying the QAdd.

The int8 twin of nncc/passes/fuse_residual_add.py (undone before quantizing, since the float
residual Conv has no int8 form): the QConv takes r as input RESIDUAL_INDEX and the QAdd's
attributes as attribute QADD (nncc/ops/quantized.py). Its kernel computes the conv's int8 value
exactly as before, then the QAdd of it and r at the same index, so the numbers are those of the
unfused pair bit for bit, and the memory planner may write y over r when r dies there
(Op.inplace_inputs): the closing conv of a residual block holds two tensors instead of three.
Conditions: the conv output is read by that QAdd only (not a graph output), both QAdd operands
have its shape, conv and Add write the same type (int8 / int16), and the QConv carries no fused
QAdd yet. A QAdd of the usual kind (qconv_shared.qadd_inline()) brings its table of terms as
input TABLE_INDEX: 2 KB of flash that spare the shared kernels two multiplies per output.
"""
from __future__ import annotations

from ..ir import Graph, TensorInfo
from ..ops import make_op
from ..ops.qconv_shared import qadd_inline
from ..ops.quantized import QADD, RESIDUAL_INDEX, TABLE_INDEX
from ..passes._util import absorb_add, fresh_name, sole_consumer


def _pair(g: Graph, add):
    """(the QConv whose output is operand c of `add`, c) when the pair can fuse."""
    if len(add.inputs) != 2 or not all(add.inputs) or len(add.outputs) != 1:
        return None
    shape = g.tensors[add.outputs[0]].shape
    if any(g.tensors[t].shape != shape for t in add.inputs) or add.inputs[0] == add.inputs[1]:
        return None
    for c, t in enumerate(add.inputs):
        conv = g.producer(t)
        if conv is None or conv.op != "QConv" or conv.outputs != [t] or QADD in conv.attrs:
            continue
        if conv.attrs.get("y_dtype", "int8") != add.attrs.get("y_dtype", "int8"):
            continue  # an int16 conv output feeding an int8 Add stays a tensor of its own
        if len(conv.inputs) <= RESIDUAL_INDEX and sole_consumer(g, t) is add:
            return conv, c
    return None


def _add_table(g: Graph, conv, table, base: str) -> None:
    """The QAdd's table as the conv's input TABLE_INDEX, where a shared kernel reads it (the
    specialized ones compute the Add in full)."""
    name = g.add_tensor(TensorInfo(fresh_name(g, base), table.shape, "int32", table)).name
    conv.inputs = conv.inputs[:TABLE_INDEX] + [name]
    op = make_op(conv)
    ins = [g.tensors[t] if t else None for t in conv.inputs]
    if not op.context(ins, [g.tensors[t] for t in conv.outputs])["shared"]:
        conv.inputs = conv.inputs[:TABLE_INDEX]
        del g.tensors[name]


def fuse_qadd(g: Graph) -> bool:
    """Fuse every eligible QConv -> QAdd pair of `g` in place; True when any was."""
    changed = False
    for add in list(g.nodes_of("QAdd")):
        found = _pair(g, add)
        if found is None:
            continue
        conv, c = found
        conv.attrs[QADD] = {"name": add.name, "conv_first": c == 0, "attrs": dict(add.attrs)}
        qadd = make_op(add)
        absorb_add(g, conv, add, c, RESIDUAL_INDEX)
        if qadd_inline(qadd.add_params()):
            _add_table(g, conv, qadd.term_table(c == 0), f"{add.name}_table")
        changed = True
    return changed
