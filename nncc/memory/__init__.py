"""Static memory planning: schedule -> tensor lifetimes -> offsets in one arena.

Stage "schedule + memory plan" of the pipeline. `plan_memory` first lets `nncc.schedule` pick a
topological order with a lower peak of live bytes (it rewrites the graph's node order when that
helps), lets `nncc.memory.alias` decide which tensors share memory (views, concat slices,
in-place elementwise ops), then turns every arena buffer into one live from the first step that
writes it to the last step that reads it, runs every strategy of `STRATEGIES` and keeps the smallest arena
(ties go to the earlier strategy, so the result is deterministic). Graph inputs and outputs are
caller buffers and constants live in flash: none of them is in the arena. The plan reports the
arena, the lower bound (peak bytes live at one step, aliased tensors counted once) and the
naive size (every intermediate tensor in its own buffer: no reuse, no aliasing).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Graph
from .alias import Aliasing, analyze_aliases, chosen_kernel
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
    "Aliasing",
    "Buffer",
    "ExactPlanner",
    "GreedyBySizePlanner",
    "MemoryPlan",
    "Planner",
    "align_up",
    "analyze_aliases",
    "check_layout",
    "lifetimes",
    "live_bytes",
    "plan_buffers",
    "plan_memory",
]

# Fixed order: on equal arenas the earlier strategy wins. The exact search runs last and only on
# small problems (<= MAX_BUFFERS buffers); it starts from the best greedy layout.
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
    alias: Aliasing = field(default_factory=Aliasing)  # where every tensor lives (nncc.memory.alias)

    def arena_offset(self, t: str) -> int:
        """Byte offset in the arena of tensor `t`, whose host must be an arena buffer."""
        host, off = self.alias.loc[t]
        return self.offsets[host] + off


def lifetimes(g: Graph, align: int = 4, alias: Aliasing | bool = True) -> list[Buffer]:
    """One Buffer per arena buffer, in schedule order of first write. A buffer holds one
    tensor, or several that share memory (`alias`: an Aliasing, True to compute it for the
    current order, False for none); it lives from the first step writing any of them to the
    last step reading any of them. A tensor no node reads lives only at the step that writes
    it (the kernel still needs somewhere to put it). A node's workspace (`alias.workspace`) is
    a buffer of its own, live at that node's step only."""
    if not isinstance(alias, Aliasing):
        alias = analyze_aliases(g, enable=bool(alias))
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    size: dict[str, int] = {}
    for i, n in enumerate(g.nodes()):
        if n.name in alias.workspace:  # a kernel's scratch: live while the node runs, no longer
            ws, size[ws] = alias.workspace[n.name]
            first[ws] = last[ws] = i
        for t in n.outputs:
            if t and alias.kind.get(alias.host(t)) == "arena":
                first.setdefault(alias.host(t), i)
        for t in n.inputs:
            if t and t in alias.loc and alias.kind.get(alias.host(t)) == "arena":
                last[alias.host(t)] = i  # nodes come in schedule order: the last reader wins
    return [Buffer(h, align_up(size.get(h) or g.tensors[h].nbytes, align), s, max(s, last.get(h, s)))
            for h, s in first.items()]


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


def _peak(g: Graph, align: int, alias: bool) -> int:
    return max(live_bytes(lifetimes(g, align, alias), len(g.nx)), default=0)


def plan_memory(g: Graph, align: int = 4, reorder: bool = True, alias: bool = True) -> MemoryPlan:
    """Plan the arena of `g`. With `reorder`, first apply the schedule of `nncc.schedule`
    (this rewrites the node order of `g` in place when it lowers the peak live bytes, counted
    with aliasing). With `alias`, tensors share memory where nncc.memory.alias allows it."""
    default_peak = _peak(g, align, alias)
    scheduler = "default"
    if reorder:
        from ..schedule import apply_schedule, best_schedule
        sched = best_schedule(g, align)
        before = [n.name for n in g.nodes()]
        apply_schedule(g, sched.order)
        if _peak(g, align, alias) < default_peak:
            scheduler = sched.method
        else:
            apply_schedule(g, before)
    al = analyze_aliases(g, enable=alias)
    for n in g.nodes():  # the kernel variants the aliasing chose; earlier plans' choices undone
        n.kernel = chosen_kernel(n, al)
    bufs = lifetimes(g, align, al)
    live = live_bytes(bufs, len(g.nx))
    lower = max(live, default=0)
    planner, arenas = plan_buffers(bufs, align, lower)
    plan = MemoryPlan(arena_bytes=planner.arena_size() if bufs else 0, lower_bound_bytes=lower,
                      naive_bytes=sum(b.size for b in lifetimes(g, align, False)), live_bytes_per_step=live,
                      strategy=planner.name if bufs else "", strategy_arenas=arenas,
                      schedule=[n.name for n in g.nodes()], default_lower_bound_bytes=default_peak,
                      scheduler=scheduler, alias=al)
    for i, b in enumerate(planner.buffers if bufs else []):
        plan.offsets[b.name] = planner.offset(i)
        plan.sizes[b.name] = b.size
    return plan
