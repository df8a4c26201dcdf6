"""Static memory planning: schedule -> tensor lifetimes -> offsets in one arena.

Stage "schedule + memory plan" of the pipeline. `plan_memory` first lets `nncc.schedule` pick a
topological order with a lower peak of live bytes (it rewrites the graph's node order when that
helps), then turns every intermediate tensor into a buffer live from the step that writes it to
the last step that reads it, runs every strategy of `STRATEGIES` and keeps the smallest arena
(ties go to the earlier strategy, so the result is deterministic). Graph inputs and outputs are
caller buffers and constants live in flash: none of them is in the arena. The plan reports the
arena, the lower bound (peak bytes live at one step) and the naive size (no reuse).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph
from .exact import MAX_BUFFERS, ExactPlanner
from .planners import (
    Buffer,
    FirstFitByStartPlanner,
    GreedyByBreadthPlanner,
    GreedyByConflictPlanner,
    GreedyBySizeBestFitPlanner,
    GreedyBySizePlanner,
    Planner,
    align_up,
    conflict_lists,
)

__all__ = [
    "STRATEGIES",
    "Buffer",
    "ExactPlanner",
    "GreedyBySizePlanner",
    "MemoryPlan",
    "Planner",
    "align_up",
    "check_layout",
    "lifetimes",
    "live_bytes",
    "plan_buffers",
    "plan_memory",
]

# Fixed order: on equal arenas the earlier strategy wins. The exact search runs last and only on
# small problems (<= MAX_BUFFERS buffers); it starts from the greedy-by-size layout.
STRATEGIES: list[type[Planner]] = [GreedyBySizePlanner, GreedyBySizeBestFitPlanner, GreedyByBreadthPlanner,
                                   GreedyByConflictPlanner, FirstFitByStartPlanner, ExactPlanner]


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    arena_bytes: int = 0
    lower_bound_bytes: int = 0
    naive_bytes: int = 0
    live_bytes_per_step: list[int] = field(default_factory=list)
    strategy: str = ""  # the planner whose layout was kept
    strategy_arenas: dict[str, int] = field(default_factory=dict)  # arena of every strategy tried
    schedule: list[str] = field(default_factory=list)  # node names in execution order
    default_lower_bound_bytes: int = 0  # the lower bound with the graph's order before scheduling
    scheduler: str = "default"  # which candidate order was kept (see nncc.schedule)


def lifetimes(g: Graph, align: int = 4) -> list[Buffer]:
    """One Buffer per intermediate tensor, in schedule order. A tensor no node reads lives
    only at the step that writes it (the kernel still needs somewhere to put it)."""
    order = g.nodes()
    step = {n.name: i for i, n in enumerate(order)}
    last: dict[str, int] = {}
    for n in order:
        for t in n.inputs:
            if t:
                last[t] = step[n.name]  # nodes come in schedule order: the last reader wins
    skip = set(g.outputs)
    bufs, seen = [], set()
    for n in order:
        for t in n.outputs:
            if t and t not in skip and t not in seen and not g.is_const(t):
                seen.add(t)
                first = step[n.name]
                size = align_up(g.tensors[t].nbytes, align)
                bufs.append(Buffer(t, size, first, max(first, last.get(t, first))))
    return bufs


def live_bytes(bufs: list[Buffer], n_steps: int) -> list[int]:
    """Bytes live at each step (a difference array: O(steps + buffers))."""
    delta = [0] * (n_steps + 1)
    for b in bufs:
        delta[b.first] += b.size
        delta[b.last + 1] -= b.size
    out, acc = [], 0
    for s in range(n_steps):
        acc += delta[s]
        out.append(acc)
    return out


def check_layout(bufs: list[Buffer], arena: int, align: int) -> None:
    """Raise AssertionError unless every buffer is aligned, inside the arena and disjoint in
    memory from every buffer live at the same step."""
    conf = conflict_lists(bufs)
    for i, b in enumerate(bufs):
        assert b.offset >= 0 and b.offset % align == 0 and b.size % align == 0, b
        assert b.offset + b.size <= arena, (b, arena)
        for j in conf[i]:
            o = bufs[j]
            apart = b.offset + b.size <= o.offset or o.offset + o.size <= b.offset
            assert apart or 0 in (b.size, o.size), (b, o)


def plan_buffers(bufs: list[Buffer], align: int = 4, lower: int = 0) -> tuple[Planner, dict[str, int]]:
    """Run the strategies in order; keep the first smallest arena. Stop early once one reaches
    `lower` (nothing can beat a proven lower bound, so the choice is unchanged)."""
    best, arenas = None, {}
    for cls in STRATEGIES:
        if cls is ExactPlanner and len(bufs) > MAX_BUFFERS:
            continue
        p = cls(align)
        for b in bufs:
            p.add_buffer(b.name, b.size, b.first, b.last)
        p.plan()
        arenas[cls.name] = p.arena_size()
        if best is None or p.arena_size() < best.arena_size():
            best = p
        if best.arena_size() <= lower:
            break
    return best, arenas


def plan_memory(g: Graph, align: int = 4, reorder: bool = True) -> MemoryPlan:
    """Plan the arena of `g`. With `reorder`, first apply the schedule of `nncc.schedule`
    (this rewrites the node order of `g` in place when it lowers the peak live bytes)."""
    default_peak = max(live_bytes(lifetimes(g, align), len(g.nx)), default=0)
    scheduler = "default"
    if reorder:
        from ..schedule import apply_schedule, best_schedule
        sched = best_schedule(g, align)
        if sched.peak < default_peak:
            apply_schedule(g, sched.order)
            scheduler = sched.method
    bufs = lifetimes(g, align)
    live = live_bytes(bufs, len(g.nx))
    lower = max(live, default=0)
    planner, arenas = plan_buffers(bufs, align, lower)
    plan = MemoryPlan(arena_bytes=planner.arena_size() if bufs else 0, lower_bound_bytes=lower,
                      naive_bytes=sum(b.size for b in bufs), live_bytes_per_step=live,
                      strategy=planner.name if bufs else "", strategy_arenas=arenas,
                      schedule=[n.name for n in g.nodes()], default_lower_bound_bytes=default_peak,
                      scheduler=scheduler)
    for i, b in enumerate(planner.buffers if bufs else []):
        plan.offsets[b.name] = planner.offset(i)
        plan.sizes[b.name] = b.size
    return plan
