"""Pass: fold a zero constant Pad of the spatial axes into the Conv that reads it.

Conv already pads with zeros, so Pad(x) -> Conv becomes Conv(x) with pads grown by the Pad's
amounts. The Conv's current padding (explicit or from auto_pad, which depends on the padded
input's size) is turned into explicit pads first, so every auto_pad mode folds exactly.
"""
from __future__ import annotations

from ..errors import ShapeError, UnsupportedOp
from ..ir import Graph, Node
from ..ops import make_op
from . import register_pass
from ._util import drop_unused, sole_consumer

CONSUMERS = ("Conv",)


def spatial_pads(g: Graph, pad: Node) -> list[tuple[int, int]] | None:
    """Per spatial axis (begin, end) of a foldable Pad, or None."""
    op = make_op(pad)
    if op.mode != "constant" or not all(not t or g.is_const(t) for t in pad.inputs[1:]):
        return None
    rank = len(g.tensors[pad.inputs[0]].shape)
    try:
        pw, value = op.pads(rank, *[g.const(t) if t else None for t in pad.inputs[1:]])
    except (UnsupportedOp, ShapeError):
        return None
    if value != 0.0 or rank < 3 or any(pw[0]) or any(pw[1]) or min(min(p) for p in pw) < 0:
        return None
    return pw[2:]


@register_pass("fuse_pad")
def fuse_pad(g: Graph) -> bool:
    changed = False
    for pad in g.nodes_of("Pad"):
        conv = sole_consumer(g, pad.outputs[0])
        if conv is None or conv.op not in CONSUMERS or conv.inputs[0] != pad.outputs[0]:
            continue
        extra = spatial_pads(g, pad)
        if extra is None:
            continue
        ins = [g.tensors[t] if t else None for t in conv.inputs]
        win = make_op(conv).geometry(ins[0], ins[1])  # padding as the Conv sees it now
        begin = [p + e[0] for p, e in zip(win.pads_begin, extra)]
        end = [p + e[1] for p, e in zip(win.pads_end, extra)]
        conv.attrs.pop("auto_pad", None)
        conv.attrs["pads"] = begin + end
        src, consts = pad.inputs[0], pad.inputs[1:]
        g.remove_node(pad)
        g.replace_input(conv, pad.outputs[0], src)
        g.tensors.pop(pad.outputs[0], None)
        drop_unused(g, consts)
        changed = True
    return changed
