"""Memory planning strategies: buffers with lifetimes -> offsets in one arena.

Every planner has the same small interface (`add_buffer(name, size, first_use, last_use)` -> id,
`plan()`, `offset(id)`, `arena_size()`), so strategies swap and are tested alone. Two buffers
conflict when their lifetimes [first_use, last_use] (inclusive schedule steps) intersect; they
must then occupy disjoint byte ranges. Sizes are rounded up to `align` and offsets are sums of
sizes, so every offset is aligned too. The greedy strategies follow Pisarchyk & Lee 2020
("Efficient memory management for deep neural net inference") and TFLite Micro's greedy planner.
"""
from __future__ import annotations

from dataclasses import dataclass


def align_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


@dataclass
class Buffer:
    name: str
    size: int
    first: int  # schedule step that writes it
    last: int   # last step that reads it
    offset: int = -1

    def overlaps_in_time(self, o: Buffer) -> bool:
        return self.first <= o.last and o.first <= self.last


def conflict_lists(bufs: list[Buffer]) -> list[list[int]]:
    """For each buffer, the ids of the buffers whose lifetimes intersect its own.

    A sweep by start step: a new buffer conflicts exactly with the active buffers that have not
    ended before it starts, so the cost is O(n log n + number of conflicts), not O(n^2)."""
    out: list[list[int]] = [[] for _ in bufs]
    active: list[int] = []
    for i in sorted(range(len(bufs)), key=lambda k: (bufs[k].first, k)):
        b = bufs[i]
        active = [j for j in active if bufs[j].last >= b.first]
        for j in active:
            out[i].append(j)
            out[j].append(i)
        active.append(i)
    return out


def find_offset(size: int, taken: list[tuple[int, int]], align: int, best_fit: bool) -> int:
    """Lowest (first fit) or tightest (best fit) gap of `size` bytes among the byte ranges
    `taken` = [(start, end)]; above all of them when no gap fits."""
    off, best = 0, None
    for lo, hi in sorted(taken):
        if lo - off >= size:
            if not best_fit:
                return off
            if best is None or lo - off < best[0]:
                best = (lo - off, off)
        off = max(off, align_up(hi, align))
    return best[1] if best is not None else off


class Planner:
    """Base class. Subclasses choose the placement order (`order()`) and the gap policy."""
    name = "base"
    best_fit = False

    def __init__(self, align: int = 4):
        if align <= 0 or align & (align - 1):
            raise ValueError(f"alignment must be a power of two, got {align}")
        self.align = align
        self.buffers: list[Buffer] = []

    def add_buffer(self, name: str, size: int, first_use: int, last_use: int) -> int:
        if size < 0 or last_use < first_use:
            raise ValueError(f"buffer {name!r}: bad size {size} or lifetime [{first_use}, {last_use}]")
        self.buffers.append(Buffer(name, align_up(size, self.align), first_use, last_use))
        return len(self.buffers) - 1

    def order(self, conflicts: list[list[int]]) -> list[int]:
        raise NotImplementedError

    def plan(self) -> None:
        conflicts = conflict_lists(self.buffers)
        for b in self.buffers:
            b.offset = -1
        for i in self.order(conflicts):
            b = self.buffers[i]
            if b.offset >= 0:  # orders built from steps may list a buffer twice
                continue
            taken = [(p.offset, p.offset + p.size) for p in (self.buffers[j] for j in conflicts[i])
                     if p.offset >= 0]
            b.offset = find_offset(b.size, taken, self.align, self.best_fit)

    def offset(self, i: int) -> int:
        return self.buffers[i].offset

    def arena_size(self) -> int:
        return max((b.offset + b.size for b in self.buffers), default=0)


class GreedyBySizePlanner(Planner):
    """Largest buffer first, at the lowest offset that fits beside the buffers live at the
    same time (TFLite Micro's GreedyMemoryPlanner)."""
    name = "greedy_by_size"

    def order(self, conflicts):
        b = self.buffers
        return sorted(range(len(b)), key=lambda i: (-b[i].size, b[i].first, b[i].name, i))


class GreedyBySizeBestFitPlanner(GreedyBySizePlanner):
    """Pisarchyk & Lee's "greedy by size": largest first, into the smallest gap that fits."""
    name = "greedy_by_size_best_fit"
    best_fit = True


class GreedyByBreadthPlanner(Planner):
    """Pisarchyk & Lee's "greedy by breadth": visit schedule steps from the one with the most
    live bytes down; at each, place its still unplaced buffers largest first, best fit. The
    widest step is laid out compactly first, and it is the one that sets the lower bound."""
    name = "greedy_by_breadth"
    best_fit = True

    def order(self, conflicts):
        b = self.buffers
        steps: dict[int, list[int]] = {}
        for i, x in enumerate(b):
            for s in range(x.first, x.last + 1):
                steps.setdefault(s, []).append(i)
        breadth = {s: sum(b[i].size for i in ids) for s, ids in steps.items()}
        out = []
        for s in sorted(steps, key=lambda s: (-breadth[s], s)):
            out += sorted(steps[s], key=lambda i: (-b[i].size, b[i].first, i))
        return out


class GreedyByConflictPlanner(Planner):
    """Buffers under the most memory pressure first: ordered by the bytes of all the buffers
    they conflict with (their own included), then by size; first fit."""
    name = "greedy_by_conflict"

    def order(self, conflicts):
        b = self.buffers
        pressure = [b[i].size + sum(b[j].size for j in conflicts[i]) for i in range(len(b))]
        return sorted(range(len(b)), key=lambda i: (-pressure[i], -b[i].size, b[i].first, i))


class FirstFitByStartPlanner(Planner):
    """Buffers in the order the schedule creates them (larger first among equals), each at
    the lowest free offset: what a linear-scan allocator would do at run time."""
    name = "first_fit_by_start"

    def order(self, conflicts):
        b = self.buffers
        return sorted(range(len(b)), key=lambda i: (b[i].first, -b[i].size, i))
