"""dead_code: unused nodes (and the constants only they read) go; numerics unchanged."""
import numpy as np
from onnx import helper

from nncc.passes.dead_code import dead_code
from tests.passes._graphs import apply, build, op_counts


def test_dead_chain_removed(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["y"]),
             helper.make_node("Add", ["x", "k"], ["a"]),      # dead chain: a -> b -> nobody
             helper.make_node("Sigmoid", ["a"], ["b"]),
             helper.make_node("Tanh", ["y"], ["c"])]           # dead leaf reading a live tensor
    g = build(tmp_path, nodes, [("x", (2, 3))], ["y"], {"k": np.ones((2, 3), np.float32)})
    assert op_counts(g) == {"Relu": 1, "Add": 1, "Sigmoid": 1, "Tanh": 1}
    changed, after = apply(g, dead_code)
    assert changed
    assert op_counts(after) == {"Relu": 1}
    assert not {"a", "b", "c", "k"} & set(after.tensors)
    assert not dead_code(after)  # idempotent


def test_live_graph_untouched(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["r"]), helper.make_node("Tanh", ["r"], ["y"]),
             helper.make_node("Sigmoid", ["r"], ["z"])]
    g = build(tmp_path, nodes, [("x", (4,))], ["y", "z"])
    changed, after = apply(g, dead_code)
    assert not changed
    assert op_counts(after) == op_counts(g)
