"""Helpers for the pass tests: build a small graph at -O0, run one pass on a copy, and check the
numpy reference gives the same outputs before and after."""
from __future__ import annotations

from collections import Counter

import numpy as np

from nncc.compiler import load
from nncc.ir import Graph, verify
from nncc.reference import run_reference
from tests.util import make_model, save


def build(tmp_path, nodes, inputs, outputs, inits=(), opset=13) -> Graph:
    """inputs [(name, shape)], outputs [names]; the graph as the frontend gives it (-O0)."""
    m = make_model(nodes, inputs, [(o, None) for o in outputs], inits, opset)
    return load(save(m, tmp_path), opt_level=0)


def op_counts(g: Graph) -> Counter:
    return Counter(n.op for n in g.nodes())


def random_inputs(g: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t: rng.standard_normal(g.tensors[t].shape).astype(np.float32) for t in g.inputs}


def assert_same_outputs(before: Graph, after: Graph, inputs: dict, rtol=1e-4, atol=1e-5) -> None:
    want = run_reference(before, inputs)
    got = run_reference(after, inputs)
    assert list(got) == list(want)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, atol=atol, err_msg=name)


def apply(g: Graph, pass_fn, seed: int = 0) -> tuple[bool, Graph]:
    """Run pass_fn on a copy of g, verify the IR and compare the reference outputs."""
    after = g.copy()
    changed = pass_fn(after)
    verify(after)
    assert_same_outputs(g.copy(), after, random_inputs(g, seed))
    return changed, after
