"""Static memory planning: tensor lifetimes over the schedule -> offsets in one arena.

The planner interface is small (`add_buffer`, `offset`, `arena_size`) so strategies can be swapped
and tested alone. The report carries the arena, the lower bound (peak bytes live at any step of
the schedule) and the naive size (every intermediate in its own buffer).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .ir import Graph


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    name: str
    size: int
    first: int  # schedule step that writes it
    last: int   # last step that reads it
    offset: int = -1

    def overlaps_in_time(self, o: "Buffer") -> bool:
        return self.first <= o.last and o.first <= self.last


class GreedyBySizePlanner:
    """Largest buffer first, placed at the lowest offset that fits beside the buffers live
    at the same time (Pisarchyk & Lee, 2020, "greedy by size")."""

    def __init__(self, align: int = 4):
        self.align = align
        self.buffers: list[Buffer] = []

    def add_buffer(self, name: str, size: int, first_use: int, last_use: int) -> int:
        self.buffers.append(Buffer(name, align_up(size, self.align), first_use, last_use))
        return len(self.buffers) - 1

    def plan(self) -> None:
        placed: list[Buffer] = []
        order = sorted(self.buffers, key=lambda b: (-b.size, b.first, b.name))
        for b in order:
            conflicts = sorted((p for p in placed if p.overlaps_in_time(b)), key=lambda p: p.offset)
            off = 0
            for p in conflicts:
                if off + b.size <= p.offset:
                    break
                off = max(off, align_up(p.offset + p.size, self.align))
            b.offset = off
            placed.append(b)

    def offset(self, i: int) -> int:
        return self.buffers[i].offset

    def arena_size(self) -> int:
        return max((b.offset + b.size for b in self.buffers), default=0)


@dataclass
class MemoryPlan:
    offsets: dict[str, int] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)
    arena_bytes: int = 0
    lower_bound_bytes: int = 0
    naive_bytes: int = 0
    live_bytes_per_step: list[int] = field(default_factory=list)


def lifetimes(g: Graph, align: int = 4) -> list[Buffer]:
    """One Buffer per intermediate tensor, in schedule order."""
    order = g.nodes()
    step = {n.name: i for i, n in enumerate(order)}
    bufs = []
    for t in g.intermediates():
        first = step[g.producer(t).name]
        last = max([step[c.name] for c in g.consumers(t)], default=first)
        bufs.append(Buffer(t, align_up(g.tensors[t].nbytes, align), first, last))
    return bufs


def plan_memory(g: Graph, align: int = 4) -> MemoryPlan:
    bufs = lifetimes(g, align)
    n_steps = len(g.nodes())
    live = [sum(b.size for b in bufs if b.first <= s <= b.last) for s in range(n_steps)]
    planner = GreedyBySizePlanner(align)
    ids = [planner.add_buffer(b.name, b.size, b.first, b.last) for b in bufs]
    planner.plan()
    plan = MemoryPlan(arena_bytes=planner.arena_size(), lower_bound_bytes=max(live, default=0),
                      naive_bytes=sum(b.size for b in bufs), live_bytes_per_step=live)
    for b, i in zip(bufs, ids):
        plan.offsets[b.name] = planner.offset(i)
        plan.sizes[b.name] = b.size
    return plan
