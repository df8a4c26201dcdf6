"""Exact memory planning for small problems: branch and bound over placement orders.

Why orders suffice: take an optimal layout and place its buffers in increasing offset order,
each at the lowest offset that fits (first fit). Every buffer lands at or below its optimal
offset (the buffers placed before it only moved down), so the arena is optimal too. Repeating
until nothing moves gives an optimal layout whose first-fit offsets are non-decreasing along its
own order; the search therefore only extends an order with a buffer whose first-fit offset (then
id) is not below the previous one -- one canonical order per left-justified layout. The number
of search nodes is capped, so the planning time stays bounded; `proven` says whether the search
finished (the result is then optimal).
"""
from __future__ import annotations

from .planners import (
    FirstFitByStartPlanner,
    GreedyByBreadthPlanner,
    GreedyByConflictPlanner,
    GreedyBySizeBestFitPlanner,
    GreedyBySizePlanner,
    Planner,
    conflict_lists,
    find_offset,
)

# The search starts from the best of these layouts, so it is never worse than any of them,
# even when the node cap stops it early.
SEEDS = [GreedyBySizePlanner, GreedyBySizeBestFitPlanner, GreedyByBreadthPlanner, GreedyByConflictPlanner,
         FirstFitByStartPlanner]

MAX_BUFFERS = 12
MAX_NODES = 4_000


class ExactPlanner(Planner):
    name = "exact"

    def __init__(self, align: int = 4, max_nodes: int = MAX_NODES):
        super().__init__(align)
        self.max_nodes = max_nodes
        self.proven = False
        self.nodes = 0

    def plan(self) -> None:
        seed = None
        for cls in SEEDS:
            p = cls(self.align)
            for b in self.buffers:
                p.add_buffer(b.name, b.size, b.first, b.last)
            p.plan()
            if seed is None or p.arena_size() < seed.arena_size():
                seed = p
        self.best = seed.arena_size()
        self.best_offsets = [b.offset for b in seed.buffers]
        self.conf = conflict_lists(self.buffers)
        steps = sorted({s for b in self.buffers for s in range(b.first, b.last + 1)})
        self.live_at = [[i for i, b in enumerate(self.buffers) if b.first <= s <= b.last] for s in steps]
        self.lower = max((sum(self.buffers[i].size for i in ids) for ids in self.live_at), default=0)
        self.offsets = [-1] * len(self.buffers)
        self.nodes = 0
        if self.best > self.lower:
            self._search((-1, -1), 0, len(self.buffers))
        self.proven = self.nodes < self.max_nodes
        for b, off in zip(self.buffers, self.best_offsets):
            b.offset = off

    def _first_fit(self, i: int) -> int:
        taken = [(self.offsets[j], self.offsets[j] + self.buffers[j].size)
                 for j in self.conf[i] if self.offsets[j] >= 0]
        return find_offset(self.buffers[i].size, taken, self.align, best_fit=False)

    def _bound(self, last_off: int, peak: int, ff: dict[int, int]) -> int:
        """Arena any completion must reach: later buffers sit at or above both their current
        first-fit offset and the last offset placed, so at each step the unplaced buffers stack
        above `last_off` next to the placed bytes already there."""
        b, base = self.buffers, max(last_off, 0)
        bound = max([peak] + [max(o, base) + b[i].size for i, o in ff.items()])
        for ids in self.live_at:
            need = 0
            for i in ids:
                o = self.offsets[i]
                need += b[i].size if o < 0 else max(0, o + b[i].size - max(o, base))
            bound = max(bound, base + need)
        return bound

    def _search(self, last: tuple[int, int], peak: int, left: int) -> None:
        if left == 0:
            if peak < self.best:
                self.best, self.best_offsets = peak, list(self.offsets)
            return
        self.nodes += 1
        ff = {i: self._first_fit(i) for i, o in enumerate(self.offsets) if o < 0}
        if self.nodes >= self.max_nodes or self._bound(last[0], peak, ff) >= self.best:
            return
        # Try the placements that keep the arena low first, so good bounds come early.
        kids = sorted((i for i, o in ff.items() if (o, i) > last),
                      key=lambda i: (ff[i] + self.buffers[i].size, -self.buffers[i].size, i))
        for i in kids:
            self.offsets[i] = ff[i]
            self._search((ff[i], i), max(peak, ff[i] + self.buffers[i].size), left - 1)
            self.offsets[i] = -1
            if self.best <= self.lower or self.nodes >= self.max_nodes:
                return
