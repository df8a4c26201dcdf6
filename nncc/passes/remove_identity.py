"""Pass: remove Identity and (inference-mode) Dropout nodes, which copy their input."""
from __future__ import annotations

from ..ir import Graph
from . import register_pass


@register_pass("remove_identity")
def remove_identity(g: Graph) -> bool:
    changed = False
    for n in g.nodes():
        if n.op in ("Identity", "Dropout") and not any(n.outputs[1:]):
            g.bypass(n)
            changed = True
    return changed
