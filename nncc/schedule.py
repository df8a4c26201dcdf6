"""Scheduling: choose the topological order of the IR that lowers the peak of live arena bytes.

Stage "schedule" of the pipeline, run by `nncc.memory.plan_memory` just before planning. Where
the graph branches (inception modules, fire modules, residual blocks) the order of the branches
decides how many tensors are alive together. Candidates, the best of which is kept (ties go to
the earlier one, so the graph's own order stays unless another is strictly better):
1. the graph's default order;
2. a greedy list scheduler: the ready node that frees the most / allocates the least bytes;
3. a dynamic program over "ready sets": the state is the set of nodes already run (the bytes
   alive after it depend on that set only), the value the lowest peak reaching it. Layer by
   layer it is exact while the states fit a budget of node steps, and a beam search (keeping
   the most promising states) beyond it, so the time stays bounded on large graphs.
Peaks count the same bytes the planner places: intermediates only (graph inputs and outputs
are caller buffers, constants live in flash), sizes rounded up to the alignment. All caps are
counts, never clocks, so the result is deterministic.
"""
from __future__ import annotations

from dataclasses import dataclass

from .ir import Graph

STEP_BUDGET = 60_000  # node steps tried by the dynamic program in all; bounds its time


@dataclass
class Schedule:
    order: list[str]  # node names in execution order
    peak: int  # max over steps of the arena bytes live at that step
    method: str  # "default", "greedy", "dp" (exact) or "beam"
    default_peak: int = 0


class _Problem:
    """The graph reduced to integers: nodes 0..n-1 in default order, bit masks of nodes."""

    def __init__(self, g: Graph, align: int):
        nodes = g.nodes()
        self.names = [n.name for n in nodes]
        self.n = len(nodes)
        idx = {name: i for i, name in enumerate(self.names)}
        self.preds = [0] * self.n
        self.succs: list[list[int]] = [[] for _ in nodes]
        for u, v in g.nx.edges:
            self.preds[idx[v]] |= 1 << idx[u]
            self.succs[idx[u]].append(idx[v])
        tid: dict[str, int] = {}
        self.size: list[int] = []
        self.outs: list[list[int]] = [[] for _ in nodes]
        skip = set(g.outputs)
        for i, n in enumerate(nodes):
            for t in n.outputs:
                if t and t not in skip and t not in tid and not g.is_const(t):
                    tid[t] = len(self.size)
                    self.size.append((g.tensors[t].nbytes + align - 1) // align * align)
                    self.outs[i].append(tid[t])
        self.cons = [0] * len(self.size)
        self.ins: list[list[int]] = [[] for _ in nodes]
        for i, n in enumerate(nodes):
            for t in dict.fromkeys(n.inputs):  # a node reading a tensor twice frees it once
                if t in tid:
                    self.cons[tid[t]] |= 1 << i
                    self.ins[i].append(tid[t])
        self.out_bytes = [sum(self.size[t] for t in o) for o in self.outs]
        # Outputs no node reads are live only while their producer runs.
        self.out_kept = [sum(self.size[t] for t in o if self.cons[t]) for o in self.outs]

    def step(self, done: int, live: int, v: int) -> tuple[int, int, int]:
        """Run node v after the set `done`: (bytes live during v, new set, bytes live after)."""
        done2 = done | (1 << v)
        freed = sum(self.size[t] for t in self.ins[v] if not self.cons[t] & ~done2)
        return live + self.out_bytes[v], done2, live + self.out_kept[v] - freed

    def newly_ready(self, done: int, v: int) -> list[int]:
        return [w for w in self.succs[v] if not self.preds[w] & ~done]

    def peak(self, order: list[int]) -> int:
        done = live = peak = 0
        for v in order:
            during, done, live = self.step(done, live, v)
            peak = max(peak, during)
        return peak

    def initial(self) -> list[int]:
        return [v for v in range(self.n) if not self.preds[v]]


def greedy_order(p: _Problem) -> list[int]:
    """Run next the ready node with the smallest change of live bytes (frees the most,
    allocates the least), then the smallest bytes during its step, then the default order."""
    done = live = 0
    ready, order = set(p.initial()), []
    while ready:
        best = min(ready, key=lambda v: _greedy_key(p, done, live, v))
        _, done, live = p.step(done, live, best)
        ready.discard(best)
        ready.update(p.newly_ready(done, best))
        order.append(best)
    return order


def _greedy_key(p: _Problem, done: int, live: int, v: int) -> tuple[int, int, int]:
    during, _, after = p.step(done, live, v)
    return after - live, during, v


def dp_order(p: _Problem, budget: int = STEP_BUDGET) -> tuple[list[int], bool]:
    """Forward dynamic program over the sets of nodes already run; returns (order, exact).
    Each layer may try about budget / n steps (a state costs one step per ready node)."""
    per_layer = max(1, budget // max(p.n, 1))
    # state: done-mask -> (peak so far, live after, ready nodes, path as nested (v, prev) pairs)
    states = {0: (0, 0, tuple(p.initial()), None)}
    exact = True
    for _ in range(p.n):
        nxt: dict[int, tuple] = {}
        for done, (peak, live, ready, path) in states.items():
            for v in ready:
                during, done2, live2 = p.step(done, live, v)
                peak2 = max(peak, during)
                old = nxt.get(done2)
                if old is None or peak2 < old[0]:
                    ready2 = tuple(sorted([w for w in ready if w != v] + p.newly_ready(done2, v)))
                    nxt[done2] = (peak2, live2, ready2, (v, path))
        states = _prune(nxt, per_layer)
        exact = exact and len(states) == len(nxt)
    (_, _, _, path), = states.values()
    order = []
    while path is not None:
        order.append(path[0])
        path = path[1]
    return order[::-1], exact


def _prune(states: dict[int, tuple], steps: int) -> dict[int, tuple]:
    """Keep the most promising states whose ready nodes add up to about `steps` (at least one):
    ordered by max(peak so far, bytes still live), a bound on the peak at the end."""
    if sum(len(s[2]) for s in states.values()) <= steps:
        return states
    out, used = {}, 0
    for d in sorted(states, key=lambda d: (max(states[d][0], states[d][1]), states[d][0], states[d][1], d)):
        if out and used + len(states[d][2]) > steps:
            break
        out[d] = states[d]
        used += len(states[d][2])
    return out


def best_schedule(g: Graph, align: int = 4, budget: int = STEP_BUDGET) -> Schedule:
    """The candidate order with the lowest peak (ties: default, greedy, dynamic program)."""
    p = _Problem(g, align)
    default = list(range(p.n))
    cands = [(p.peak(default), 0, default, "default")]
    if p.n > 1:
        g_order = greedy_order(p)
        cands.append((p.peak(g_order), 1, g_order, "greedy"))
        d_order, exact = dp_order(p, budget)
        cands.append((p.peak(d_order), 2, d_order, "dp" if exact else "beam"))
    peak, _, order, method = min(cands, key=lambda c: (c[0], c[1]))
    return Schedule([p.names[v] for v in order], peak, method, cands[0][0])


def apply_schedule(g: Graph, names: list[str]) -> None:
    """Make `g.nodes()` return `names`: rewrite each node's "order" attribute (the tie-break of
    the IR's lexicographic topological sort) after checking `names` is a topological order."""
    if len(names) != len(g.nx) or set(names) != set(g.nx.nodes):
        raise ValueError("a schedule must list every node of the graph exactly once")
    pos = {n: i for i, n in enumerate(names)}
    for u, v in g.nx.edges:
        if pos[u] >= pos[v]:
            raise ValueError(f"schedule is not topological: {u!r} must run before {v!r}")
    for n, i in pos.items():
        g.nx.nodes[n]["order"] = i
