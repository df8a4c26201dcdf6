"""Memory aliasing (nncc/memory/alias.py): views, in-place elementwise ops and concat slices.

Two kinds of checks. A property test builds random graphs of views, in-place candidates,
concats and opaque ops, plans them and replays the schedule on a simulated memory (one arena
laid out by the planner, one array per caller buffer and constant): every tensor a node reads
must still hold its value. Then end-to-end models (reshape chains, residual adds, inception-like
concats, views at graph inputs and outputs) whose C must match the reference and onnxruntime.
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import helper

from nncc.ir import Graph, Node, TensorInfo
from nncc.memory import check_layout, lifetimes, plan_memory
from nncc.ops.conv import FUSED_RESIDUAL
from tests.util import check_model, make_model, save


# -- replaying a plan on simulated memory ------------------------------------------------------
@st.composite
def alias_graphs(draw):
    """Tensors of shape (1, C, 4); ops: Relu/Add (in place), Identity (a view), Concat (axis
    1, slices), Softmax (opaque), Conv (its variants over x, in place over a residual).
    Outputs: a random non-empty subset of the tensors."""
    g = Graph("r")
    ins = draw(st.integers(1, 2))
    chans: dict[str, int] = {}
    for i in range(ins):
        chans[f"in{i}"] = draw(st.integers(1, 3))
        g.add_tensor(TensorInfo(f"in{i}", (1, chans[f"in{i}"], 4)))
    g.inputs = list(chans)
    for i in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["Relu", "Add", "Identity", "Concat", "Softmax", "Conv"]))
        names = list(chans)
        a = draw(st.sampled_from(names))
        attrs = {"axis": 1} if kind == "Concat" else {}
        if kind == "Add":
            same = [t for t in names if chans[t] == chans[a]]
            srcs, c = [a, draw(st.sampled_from(same))], chans[a]
        elif kind == "Conv":  # depthwise k3 or pointwise k1, same shape, maybe with a residual
            srcs, c, attrs = conv_node(draw, g, i, a, chans)
        elif kind == "Concat":
            srcs = draw(st.lists(st.sampled_from(names), min_size=1, max_size=3))
            c = sum(chans[t] for t in srcs)
        else:
            srcs, c = [a], chans[a]
        y = f"t{i}"
        chans[y] = c
        g.add_tensor(TensorInfo(y, (1, c, 4)))
        g.add_node(Node(f"n{i}", kind, srcs, [y], attrs))
    made = [t for t in chans if t not in g.inputs]
    g.outputs = draw(st.lists(st.sampled_from(made), min_size=1, max_size=3, unique=True))
    return g


def conv_node(draw, g: Graph, i: int, a: str, chans: dict):
    """Inputs, channels and attributes of a random same-shape Conv reading a: depthwise (kernel
    3, pad 1) or pointwise (kernel 1), with or without bias and a residual of a's shape."""
    c = chans[a]
    dw = draw(st.booleans())
    w = np.ones((c, 1, 3) if dw else (c, c, 1), np.float32)
    g.add_tensor(TensorInfo(f"w{i}", w.shape, "float32", w))
    attrs = {"group": c, "pads": [1, 1]} if dw else {}
    srcs = [a, f"w{i}", ""]
    same = [t for t in chans if chans[t] == c]
    if draw(st.booleans()):
        srcs.append(draw(st.sampled_from(same)))
        attrs[FUSED_RESIDUAL] = {"add": f"add{i}", "opset": 13, "conv_first": True}
    return srcs, c, attrs


def content(g: Graph, plan, t: str, memo: dict) -> list:
    """What t's elements must be: symbols (tensor, index); a view's or concat's output is made
    of its inputs' symbols (a view: the same; a concat: side by side), copied or not."""
    if t not in memo:
        prod = g.producer(t)
        if prod is not None and prod.op in ("Identity", "Concat"):
            memo[t] = [s for x in prod.inputs for s in content(g, plan, x, memo)]
        else:
            memo[t] = [(t, k) for k in range(g.tensors[t].size)]
    return memo[t]


def region(plan, mem: dict, t: str, n: int):
    host, off = plan.alias.loc[t]
    if plan.alias.kind[host] == "arena":
        return mem["arena"], (plan.offsets[host] + off) // 4, n
    return mem.setdefault(host, {}), off // 4, n


def replay(g: Graph, plan) -> None:
    mem, memo = {"arena": {}}, {}

    def read(t):
        buf, base, n = region(plan, mem, t, g.tensors[t].size)
        want = content(g, plan, t, memo)
        assert [buf.get(base + k) for k in range(n)] == want, f"{t} clobbered"

    def write(t, values):
        buf, base, _ = region(plan, mem, t, len(values))
        for k, v in enumerate(values):
            buf[base + k] = v

    def read_at(t, idx):
        buf, base, _ = region(plan, mem, t, 0)
        want = content(g, plan, t, memo)
        assert all(buf.get(base + k) == want[k] for k in idx), f"{t} clobbered"

    def write_at(t, idx):
        buf, base, _ = region(plan, mem, t, 0)
        want = content(g, plan, t, memo)
        for k in idx:
            buf[base + k] = want[k]

    def scratch(n):  # the kernel may write anything into its workspace
        if n.name in plan.alias.workspace:
            ws, size = plan.alias.workspace[n.name]
            for k in range(size // 4):
                mem["arena"][plan.offsets[ws] // 4 + k] = ("junk", n.name)

    for t in g.inputs:
        write(t, content(g, plan, t, memo))
    for n in g.nodes():
        if n.op == "Conv":
            run_conv(g, n, read_at, write_at, scratch)
            continue
        for x in n.inputs:
            if x:
                read(x)
        if n.name in plan.alias.skipped:
            continue
        y = n.outputs[0]
        if n.op == "Concat" and n.name in plan.alias.placed:
            off = 0
            for j, x in enumerate(n.inputs):  # only the inputs not written in place are copied
                if j not in plan.alias.placed[n.name]:
                    buf, base, _ = region(plan, mem, y, 0)
                    for k, v in enumerate(content(g, plan, x, memo)):
                        buf[base + off + k] = v
                off += g.tensors[x].size
        else:
            write(y, content(g, plan, y, memo))
    for t in g.outputs:
        read(t)


def run_conv(g: Graph, n, read_at, write_at, scratch) -> None:
    """Replay a Conv of shape (1, C, L) in the order its kernel variant reads and writes: each
    output element (direct), channel (dw_inplace) or pixel (pw_inplace) is stored only after
    everything it needs was read intact; the residual (input 3) is read where it is stored."""
    x, r, y = n.inputs[0], (n.inputs + ["", ""])[3], n.outputs[0]
    c, length = g.tensors[y].shape[1:]
    everything = range(c * length)
    if n.kernel == "dw_inplace":
        units = [range(ch * length, (ch + 1) * length) for ch in range(c)]
    elif n.kernel == "pw_inplace":
        units = [range(p, c * length, length) for p in range(length)]
    else:
        units = [[k] for k in everything]
    for unit in units:
        read_at(x, unit if n.kernel != "direct" else everything)
        if r:
            read_at(r, unit)
        scratch(n)
        write_at(y, unit)


@settings(max_examples=200, deadline=None)
@given(alias_graphs(), st.booleans())
def test_aliased_plans_never_clobber_a_live_value(g, reorder):
    plan = plan_memory(g, 4, reorder=reorder)
    bufs = lifetimes(g, 4, plan.alias)
    for b in bufs:
        b.offset = plan.offsets[b.name]
    check_layout(bufs, plan.arena_bytes, 4)
    assert plan.lower_bound_bytes <= plan.arena_bytes <= plan.naive_bytes or not bufs
    replay(g, plan)


# -- end to end: C vs reference vs onnxruntime -------------------------------------------------
def conv(name, x, y, cin, cout, rng, k=3):
    w = rng.standard_normal((cout, cin, k, k)).astype(np.float32) * 0.3
    b = rng.standard_normal(cout).astype(np.float32) * 0.1
    node = helper.make_node("Conv", [x, f"{name}_w", f"{name}_b"], [y], pads=[k // 2] * 4)
    return node, {f"{name}_w": w, f"{name}_b": b}


def const_shape(name, shape):
    return {name: np.array(shape, np.int64)}


def build(tmp_path, nodes, inits, ins, outs, opset=13):
    return save(make_model(nodes, ins, outs, inits, opset=opset), tmp_path)


def compile_and_check(tmp_path, path, **kw):
    res = check_model(path, tmp_path, **kw)
    return res.plan


def test_reshape_chain(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Reshape", ["a", "s1"], ["b"]),
             helper.make_node("Flatten", ["b"], ["c"], axis=1),
             helper.make_node("Unsqueeze", ["c", "ax"], ["d"]),
             helper.make_node("Squeeze", ["d", "ax"], ["e"]),
             helper.make_node("Sigmoid", ["e"], ["f"]),
             helper.make_node("Reshape", ["f", "s2"], ["y"])]
    inits = {**const_shape("s1", [1, 8, 16]), **const_shape("ax", [2]), **const_shape("s2", [1, 2, 64])}
    plan = compile_and_check(tmp_path, build(tmp_path, nodes, inits, [("x", (1, 2, 8, 8))], [("y", (1, 2, 64))]))
    assert sum(h == "view" for h in plan.alias.how.values()) == 5
    assert plan.arena_bytes == 0  # every tensor lives in the caller's output, sigmoid in place


def test_residual_adds(tmp_path):
    rng = np.random.default_rng(0)
    c1, i1 = conv("c1", "x", "a", 4, 8, rng)
    c2, i2 = conv("c2", "r", "b", 8, 8, rng)
    c3, i3 = conv("c3", "s", "d", 8, 8, rng)
    nodes = [c1, helper.make_node("Relu", ["a"], ["r"]), c2,
             helper.make_node("Add", ["b", "r"], ["s"]), c3,
             helper.make_node("Add", ["s", "d"], ["t"]), helper.make_node("Relu", ["t"], ["u"]),
             helper.make_node("GlobalAveragePool", ["u"], ["y"])]
    path = build(tmp_path, nodes, {**i1, **i2, **i3}, [("x", (1, 4, 8, 8))], [("y", (1, 8, 1, 1))])
    plan = compile_and_check(tmp_path, path, opt_level=0)
    assert list(plan.alias.how.values()).count("inplace") >= 3
    assert plan.arena_bytes <= 2 * 8 * 64 * 4 + 8  # two 8x8x8 maps at most, never three


@pytest.mark.parametrize("out_is_concat", [False, True])
def test_inception_concat_of_convs(tmp_path, out_is_concat):
    rng = np.random.default_rng(1)
    b1, i1 = conv("b1", "x", "p", 3, 4, rng, k=1)
    b2, i2 = conv("b2", "x", "q", 3, 6, rng, k=3)
    b3, i3 = conv("b3", "q", "r", 6, 2, rng, k=3)
    nodes = [b1, b2, b3, helper.make_node("MaxPool", ["x"], ["m"], kernel_shape=[3, 3], pads=[1] * 4,
                                          strides=[1, 1]),
             helper.make_node("Concat", ["p", "r", "m", "p"], ["k"], axis=1)]
    inits = {**i1, **i2, **i3}
    if out_is_concat:
        outs = [("k", (1, 13, 6, 6))]
    else:
        tail, i4 = conv("t", "k", "y", 13, 5, rng, k=1)
        nodes.append(tail)
        inits.update(i4)
        outs = [("y", (1, 5, 6, 6))]
    plan = compile_and_check(tmp_path, build(tmp_path, nodes, inits, [("x", (1, 3, 6, 6))], outs))
    (name,) = [n for n, h in plan.alias.how.items() if h == "concat"]
    assert len(plan.alias.placed[name]) == 2  # r and m; p appears twice, so it is copied


def test_concat_with_rows_and_graph_input_is_copied(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]),
             helper.make_node("Concat", ["a", "x"], ["k"], axis=2),  # outer dims 2: not contiguous
             helper.make_node("Concat", ["k", "x2"], ["y"], axis=1)]
    plan = compile_and_check(tmp_path, build(tmp_path, nodes, {}, [("x", (1, 2, 3)), ("x2", (1, 3, 6))],
                                             [("y", (1, 5, 6))]))
    assert "concat" in plan.alias.how.values()  # k into the output; x2 (a caller input) copied


@pytest.mark.parametrize("case", ["input_view", "view_to_output", "input_to_output", "two_outputs",
                                  "output_also_read"])
def test_views_at_graph_inputs_and_outputs(tmp_path, case):
    s = const_shape("s", [1, 16])
    relu = helper.make_node("Relu", ["x"], ["a"])
    if case == "input_view":  # the reshape is a pointer into the caller's input
        nodes, outs = [helper.make_node("Reshape", ["x", "s"], ["r"]),
                       helper.make_node("Sigmoid", ["r"], ["y"])], [("y", (1, 16))]
    elif case == "view_to_output":  # relu writes straight into the output
        nodes, outs = [relu, helper.make_node("Reshape", ["a", "s"], ["y"])], [("y", (1, 16))]
    elif case == "input_to_output":  # input -> output: the copy kernel stays
        nodes, outs = [helper.make_node("Reshape", ["x", "s"], ["y"])], [("y", (1, 16))]
    elif case == "two_outputs":  # one of the two views must copy
        nodes = [relu, helper.make_node("Reshape", ["a", "s"], ["y"]),
                 helper.make_node("Flatten", ["a"], ["y2"])]
        outs = [("y", (1, 16)), ("y2", (1, 16))]
    else:  # a graph output that a later node also reads
        nodes = [relu, helper.make_node("Reshape", ["a", "s"], ["y"]),
                 helper.make_node("Tanh", ["y"], ["y2"])]
        outs = [("y", (1, 16)), ("y2", (1, 16))]
    plan = compile_and_check(tmp_path, build(tmp_path, nodes, s, [("x", (1, 4, 4))], outs))
    assert plan.arena_bytes == 0


def test_identity_and_dropout_views_at_O0(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Identity", ["a"], ["b"]),
             helper.make_node("Dropout", ["b"], ["c"]), helper.make_node("Softmax", ["c"], ["y"])]
    plan = compile_and_check(tmp_path, build(tmp_path, nodes, {}, [("x", (1, 10))], [("y", (1, 10))]),
                             opt_level=0)
    assert sorted(plan.alias.how.values()) == ["view", "view"] and plan.arena_bytes == 40


def test_broadcast_operand_is_never_overwritten(tmp_path):
    rng = np.random.default_rng(2)
    c1, i1 = conv("c1", "x", "a", 2, 4, rng, k=1)
    nodes = [c1, helper.make_node("GlobalAveragePool", ["a"], ["m"]),
             helper.make_node("Sub", ["m", "a"], ["d"]),  # d has a's shape: over a, never over m
             helper.make_node("Mul", ["d", "m"], ["y"])]
    plan = compile_and_check(tmp_path, build(tmp_path, nodes, i1, [("x", (1, 2, 4, 4))], [("y", (1, 4, 4, 4))]))
    assert plan.alias.how.get("Sub_2", plan.alias.how.get("Sub")) in (None, "inplace")
