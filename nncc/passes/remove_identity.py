"""Pass: remove Identity and (inference-mode) Dropout nodes, which copy their input."""
from __future__ import annotations

from ..ir import Graph, Node
from . import register_pass


def _would_rename_output(g: Graph, n: Node) -> bool:
    """Bypassing n would rename a graph output (its source is a graph input, a constant, another
    output or read elsewhere): the output names are the C API's, so keep the copy instead."""
    src, dst = n.inputs[0], n.outputs[0]
    if dst not in g.outputs:
        return False
    return g.producer(src) is None or src in g.outputs or len(g.consumers(src)) > 1


@register_pass("remove_identity")
def remove_identity(g: Graph) -> bool:
    changed = False
    for n in g.nodes():
        if n.op in ("Identity", "Dropout") and not any(n.outputs[1:]) and not _would_rename_output(g, n):
            g.bypass(n)
            changed = True
    return changed
