"""Pass: remove nodes whose outputs nobody reads (no consumer, not a graph output), and the
constants only they used. Walks the graph backwards, so a dead chain goes in one sweep."""
from __future__ import annotations

from ..ir import Graph
from . import register_pass
from ._util import drop_unused


def is_dead(g: Graph, node) -> bool:
    return not any(t and (t in g.outputs or g.consumers(t)) for t in node.outputs)


@register_pass("dead_code")
def dead_code(g: Graph) -> bool:
    changed = False
    for n in reversed(g.nodes()):  # consumers before producers
        if is_dead(g, n):
            g.remove_node(n)
            for t in n.outputs:
                g.tensors.pop(t, None)
            drop_unused(g, n.inputs)
            changed = True
    return changed
