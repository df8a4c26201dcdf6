"""Memory planner: hand-checked layouts, properties of every strategy on random lifetimes (no two
buffers live at one step overlap, all inside the arena, aligned, arena >= lower bound), the exact
search against an independent brute force, and plan_memory on small IR graphs."""
from __future__ import annotations

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nncc.ir import Graph, Node, TensorInfo
from nncc.memory import (
    STRATEGIES,
    Buffer,
    ExactPlanner,
    GreedyBySizePlanner,
    MemoryPlan,
    check_layout,
    lifetimes,
    live_bytes,
    plan_buffers,
    plan_memory,
)
from nncc.memory.exact import MAX_BUFFERS


def run(cls, specs, align=4):
    """specs: [(size, first, last)] -> (planner, buffers with offsets)."""
    p = cls(align)
    ids = [p.add_buffer(f"b{i}", *s) for i, s in enumerate(specs)]
    p.plan()
    bufs = [Buffer(f"b{i}", p.buffers[i].size, s[1], s[2], p.offset(i)) for i, s in zip(ids, specs)]
    return p, bufs


def lower_bound(bufs):
    return max(live_bytes(bufs, max(b.last for b in bufs) + 1), default=0)


# -- hand-checked cases -----------------------------------------------------------------------
def test_chain_reuses_memory():
    # a -> b -> c: a and c are never live together, so c reuses a's bytes (b, larger, goes first).
    p, bufs = run(GreedyBySizePlanner, [(100, 0, 1), (200, 1, 2), (100, 2, 3)])
    assert p.arena_size() == 300
    assert bufs[1].offset == 0 and bufs[0].offset == bufs[2].offset == 200


def test_alignment_rounds_sizes_and_offsets():
    p, bufs = run(GreedyBySizePlanner, [(10, 0, 1), (3, 0, 1), (17, 1, 2)], align=16)
    assert [b.size for b in bufs] == [16, 16, 32]
    assert all(b.offset % 16 == 0 for b in bufs)
    assert p.arena_size() == 64


# Sizes in units of 4 bytes: a=3 [2,3], b=4 [3,3], c=2 [0,2], d=6 [1,1], e=6 [1,3]. Lower bound:
# step 1 holds c+d+e = 14 units. Greedy by size puts d (largest, first) at 0, pushing the
# long-lived e to 6..12; then b takes 0..4, a fits nowhere below 12 (12..15) and c lands at
# 15..17: 17 units. The optimum is 14: e 0..6, d 6..12, c 12..14, a 6..9, b 9..13.
TRAP = [(12, 2, 3), (16, 3, 3), (8, 0, 2), (24, 1, 1), (24, 1, 3)]


def test_greedy_by_size_trap_hand_checked():
    p, bufs = run(GreedyBySizePlanner, TRAP)
    assert [b.offset for b in bufs] == [48, 0, 60, 0, 24]
    assert p.arena_size() == 68


def test_exact_finds_the_optimum_of_the_trap():
    p, bufs = run(ExactPlanner, TRAP)
    assert p.arena_size() == 56 == lower_bound(bufs)
    assert p.proven
    check_layout(bufs, p.arena_size(), 4)


def test_plan_buffers_keeps_the_smallest_and_first_on_ties():
    bufs = [Buffer(f"b{i}", s, f, l) for i, (s, f, l) in enumerate(TRAP)]
    best, arenas = plan_buffers(bufs, 4)
    assert best.arena_size() == min(arenas.values()) == 56
    assert best.name == "exact"
    chain = [Buffer("a", 8, 0, 1), Buffer("b", 8, 1, 2)]
    best, arenas = plan_buffers(chain, 4, lower=16)
    assert best.name == "greedy_by_size" and list(arenas) == ["greedy_by_size"]  # at the bound: stop


def test_empty_and_invalid():
    p = GreedyBySizePlanner(8)
    p.plan()
    assert p.arena_size() == 0
    with pytest.raises(ValueError):
        p.add_buffer("x", 4, 3, 2)
    with pytest.raises(ValueError):
        GreedyBySizePlanner(3)


# -- properties on random lifetimes ---------------------------------------------------------
@st.composite
def dag_lifetimes(draw, max_n=24):
    """Node i writes buffer i at step i; it is read by a few later nodes (a random DAG), so it
    lives from step i to its last reader. Sizes are arbitrary (not aligned)."""
    n = draw(st.integers(1, max_n))
    specs = []
    for i in range(n):
        readers = draw(st.lists(st.integers(i, min(n, i + 6)), max_size=3))
        specs.append((draw(st.integers(0, 5000)), i, max(readers, default=i)))
    return specs


@settings(max_examples=150, deadline=None)
@given(dag_lifetimes(), st.sampled_from([4, 8, 16]))
def test_every_strategy_gives_a_valid_layout(specs, align):
    arenas = {}
    for cls in STRATEGIES:
        if cls is ExactPlanner and len(specs) > MAX_BUFFERS:
            continue
        p, bufs = run(cls, specs, align)
        check_layout(bufs, p.arena_size(), align)  # aligned, inside, no overlap when live together
        assert p.arena_size() % align == 0
        assert p.arena_size() >= lower_bound(bufs)
        assert p.arena_size() <= sum(b.size for b in bufs)
        arenas[cls.name] = p.arena_size()
    best, _ = plan_buffers([Buffer(f"b{i}", b.size, b.first, b.last) for i, b in enumerate(bufs)], align)
    assert best.arena_size() == min(arenas.values())
    if "exact" in arenas:
        assert arenas["exact"] <= min(arenas.values())


def brute_force_arena(units, spans):
    """Smallest arena (in units) with a feasible layout, trying every offset of every buffer:
    independent of the order-based reasoning of ExactPlanner. Occupancy per step is a bit mask."""
    steps = max(last for _, last in spans) + 1
    n = len(units)

    def fits(arena):
        occ = [0] * steps

        def place(i):
            if i == n:
                return True
            first, last = spans[i]
            for off in range(arena - units[i] + 1):
                mask = ((1 << units[i]) - 1) << off
                if all(not occ[s] & mask for s in range(first, last + 1)):
                    for s in range(first, last + 1):
                        occ[s] |= mask
                    if place(i + 1):
                        return True
                    for s in range(first, last + 1):
                        occ[s] &= ~mask
            return False
        return place(0)

    arena = max(sum(u for u, (f, l) in zip(units, spans) if f <= s <= l) for s in range(steps))
    while not fits(arena):
        arena += 1
    return arena


@settings(max_examples=120, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(0, 5), st.integers(0, 3)), min_size=1, max_size=8))
def test_exact_matches_brute_force(raw):
    units = [u for u, _, _ in raw]
    spans = [(f, f + d) for _, f, d in raw]
    p, bufs = run(ExactPlanner, [(4 * u, f, l) for u, (f, l) in zip(units, spans)])
    assert p.proven
    check_layout(bufs, p.arena_size(), 4)
    assert p.arena_size() == 4 * brute_force_arena(units, spans)


def test_exact_search_is_capped():
    # A 12-buffer case the search cannot close within a small node budget: it stops there and
    # keeps the best layout found so far (valid, never worse than greedy by size).
    specs = [(56, 3, 6), (104, 6, 7), (24, 6, 7), (56, 1, 3), (8, 2, 3), (40, 1, 5), (104, 4, 4),
             (48, 6, 8), (112, 1, 2), (144, 5, 5), (112, 2, 6), (28, 3, 3)]
    p = ExactPlanner(4, max_nodes=300)
    for i, s in enumerate(specs):
        p.add_buffer(f"b{i}", *s)
    t = time.perf_counter()
    p.plan()
    assert time.perf_counter() - t < 1.0
    assert not p.proven and p.nodes == 300
    check_layout(p.buffers, p.arena_size(), 4)
    greedy, _ = run(GreedyBySizePlanner, specs)
    assert p.arena_size() <= greedy.arena_size()


def test_large_problem_plans_fast():
    # ~densenet121 scale: 1000 buffers, some long-lived (concatenated feature maps).
    specs = [(4096 * (1 + i % 7), i, i + (40 if i % 10 == 0 else 2)) for i in range(1000)]
    bufs = [Buffer(f"b{i}", *s) for i, s in enumerate(specs)]
    t = time.perf_counter()
    best, _ = plan_buffers(bufs, 4)
    assert time.perf_counter() - t < 1.0
    check_layout(best.buffers, best.arena_size(), 4)


# -- plan_memory on IR graphs ----------------------------------------------------------------
def small_graph() -> Graph:
    """x -> conv(w) -> t1 -> relu -> t2 -> (t2 + t1) -> y: a residual edge keeps t1 alive."""
    g = Graph("g")
    g.add_tensor(TensorInfo("x", (1, 4, 8, 8)))
    g.add_tensor(TensorInfo("w", (4, 4, 1, 1), data=__import__("numpy").zeros((4, 4, 1, 1), "float32")))
    for t in ("t1", "t2", "y"):
        g.add_tensor(TensorInfo(t, (1, 4, 8, 8)))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_node(Node("conv", "Conv", ["x", "w"], ["t1"]))
    g.add_node(Node("relu", "Relu", ["t1"], ["t2"]))
    g.add_node(Node("add", "Add", ["t2", "t1"], ["y"]))
    return g


def test_plan_memory_only_intermediates():
    g = small_graph()
    plan = plan_memory(g, 8, alias=False)
    assert isinstance(plan, MemoryPlan)
    assert set(plan.offsets) == {"t1", "t2"}  # x, y are caller buffers; w lives in flash
    assert plan.arena_bytes == plan.lower_bound_bytes == plan.naive_bytes == 2 * 1024
    assert plan.live_bytes_per_step == [1024, 2048, 2048]
    assert plan.schedule == ["conv", "relu", "add"]
    assert all(o % 8 == 0 for o in plan.offsets.values())


def test_lifetimes_follow_the_schedule():
    bufs = {b.name: b for b in lifetimes(small_graph(), alias=False)}
    assert (bufs["t1"].first, bufs["t1"].last) == (0, 2)
    assert (bufs["t2"].first, bufs["t2"].last) == (1, 2)


# -- aliasing (nncc/memory/alias.py) ---------------------------------------------------------
def test_aliasing_in_place_and_into_the_output():
    # relu cannot overwrite t1 (the add still reads it); the add overwrites t2 in place, and as
    # y is a caller buffer, t2's buffer moves into y: only t1 is left in the arena.
    g = small_graph()
    plan = plan_memory(g, 8)
    assert plan.alias.how == {"add": "inplace"}
    assert plan.alias.loc["t2"] == ("y", 0) and plan.alias.kind["y"] == "output"
    assert set(plan.offsets) == {"t1"} and plan.arena_bytes == plan.lower_bound_bytes == 1024
    assert plan.naive_bytes == 2048  # every intermediate in its own buffer


def view_concat_graph() -> Graph:
    """x -> relu a -> reshape r -> relu b ; x -> flatten f -> relu c ; concat(b, c) k -> softmax y."""
    g = Graph("g")
    for t, s in [("x", (1, 4, 4)), ("a", (1, 4, 4)), ("r", (1, 16)), ("b", (1, 16)), ("c", (1, 16)),
                 ("k", (1, 32)), ("y", (1, 32))]:
        g.add_tensor(TensorInfo(t, s))
    g.add_tensor(TensorInfo("shape", (2,), "int64", __import__("numpy").array([1, 16])))
    g.inputs, g.outputs = ["x"], ["y"]
    g.add_node(Node("relu_a", "Relu", ["x"], ["a"]))
    g.add_node(Node("reshape", "Reshape", ["a", "shape"], ["r"]))
    g.add_node(Node("relu_b", "Relu", ["r"], ["b"]))
    g.add_node(Node("flat", "Flatten", ["x"], ["f"]))
    g.add_tensor(TensorInfo("f", (1, 16)))
    g.add_node(Node("relu_c", "Relu", ["f"], ["c"]))
    g.add_node(Node("concat", "Concat", ["b", "c"], ["k"], {"axis": 1}))
    g.add_node(Node("softmax", "Softmax", ["k"], ["y"]))
    return g


def test_aliasing_views_concat_slices_and_lifetimes():
    g = view_concat_graph()
    plan = plan_memory(g, 4, reorder=False)
    al = plan.alias
    assert al.how["reshape"] == al.how["flat"] == "view" and al.how["concat"] == "concat"
    assert {"reshape", "flat", "concat"} <= al.skipped
    assert al.loc["f"] == ("x", 0) and al.kind["x"] == "input"  # a view of the caller's input
    assert al.loc["r"] == al.loc["a"] and al.how["relu_b"] == "inplace"  # b over a (dead after)
    assert al.host("b") == al.host("k") and al.loc["c"][1] - al.loc["b"][1] == 64  # slices of k
    bufs = lifetimes(g, 4, al)
    check_layout([Buffer(b.name, b.size, b.first, b.last, plan.offsets[b.name]) for b in bufs],
                 plan.arena_bytes, 4)
    # The concat buffer lives from the first slice's producer (relu_a) to its reader (softmax).
    (k,) = [b for b in bufs if b.name == al.host("k")]
    assert (k.first, k.last) == (0, len(g.nx) - 1) and plan.lower_bound_bytes == 128
    assert plan.arena_bytes == 128 and set(plan.offsets) == {al.host("k")}


def test_aliasing_off_gives_one_buffer_per_tensor():
    g = view_concat_graph()
    plan = plan_memory(g, 4, reorder=False, alias=False)
    assert not plan.alias.skipped and not plan.alias.how
    assert set(plan.offsets) == {"a", "r", "b", "f", "c", "k"}
