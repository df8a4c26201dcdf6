"""Arena vs lower bound per model, and what fusion and scheduling do to the bound (acceptance
item 1 of the memory-planner issue). Used by tests/test_arena_bounds.py (the assertions) and by
tests/bench/bench_table.py (section (d) of RESULTS.md).

Columns, all lower bounds = max over the steps of the arena bytes live at that step:
- `-O0`: no graph passes, no in-place execution or views, the ONNX file's node order;
- `no conv+pool`: -O2 with its fused conv+pool nodes split again (nncc.quant.rewrite.
  unfuse_conv_pool), file order (what that fusion saves);
- `BFS order`: -O2, nodes run level by level (breadth-first: every node as soon as all nodes
  one level up have run), the order a scheduler that ignores memory easily produces;
- `file order`: -O2 in the ONNX file's order, before our scheduler;
- `scheduled`: -O2 after our scheduler (nncc.schedule), the bound report.json gives;
then `arena_bytes` and arena / bound. A graph is a chain when no activation has two readers;
the issue allows 1.02 x the bound for chains and 1.05 x for branched graphs.
"""
from __future__ import annotations

from pathlib import Path

import networkx as nx
import onnx

from nncc.compiler import load
from nncc.ir import Graph
from nncc.memory import plan_memory
from nncc.quant.rewrite import unfuse_conv_pool
from nncc.schedule import apply_schedule

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
LIMIT = {"chain": 1.02, "branched": 1.05}
HEAD = ["model", "graph", "-O0", "no conv+pool", "BFS order", "file order", "scheduled",
        "arena", "arena / bound"]


def kind(g: Graph) -> str:
    branched = any(len(g.consumers(t)) > 1 for t in g.intermediates() + list(g.inputs))
    return "branched" if branched else "chain"


def bfs_order(g: Graph) -> list[str]:
    """Level-by-level order, ties by the file order within a level."""
    pos = {n.name: i for i, n in enumerate(g.nodes())}
    return [n for gen in nx.topological_generations(g.nx) for n in sorted(gen, key=pos.get)]


def _bound(g: Graph, order: list[str] | None = None, **kw) -> int:
    if order is not None:
        apply_schedule(g, order)
    return plan_memory(g, reorder=False, **kw).lower_bound_bytes


def bounds(path: Path) -> dict:
    """The row of one model (numbers, not text)."""
    g0 = load(path, opt_level=0)
    g2 = load(path, opt_level=2)
    nofuse = _bound(unfuse_conv_pool(g2.copy()))  # a new graph: g2 is left as it is
    row = {"model": path.stem, "graph": kind(g2), "O0": _bound(g0, alias=False), "nofuse": nofuse,
           "file": _bound(g2.copy())}
    row["bfs"] = _bound(g2.copy(), bfs_order(g2))
    plan = plan_memory(g2)
    row.update(scheduled=plan.lower_bound_bytes, arena=plan.arena_bytes)
    row["ratio"] = plan.arena_bytes / max(plan.lower_bound_bytes, 1)
    return row


def text_row(r: dict) -> list[str]:
    return [r["model"], r["graph"]] + [f"{r[k]:,}" for k in ("O0", "nofuse", "bfs", "file",
                                                             "scheduled", "arena")] + [f"{r['ratio']:.3f}"]
