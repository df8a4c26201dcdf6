"""Numpy reference executor over the IR: the oracle for tests and `nncc validate`.

Runs each node's `reference()` in schedule order. It shares no code with the C path beyond the
IR itself, so a wrong template cannot make the two agree by accident.
"""
from __future__ import annotations

import numpy as np

from .ir import Graph
from .ops import make_op


def run_reference(g: Graph, inputs: dict[str, np.ndarray], keep_all: bool = False
                  ) -> dict[str, np.ndarray]:
    env: dict[str, np.ndarray] = {}
    for t in g.inputs:
        env[t] = np.asarray(inputs[t], dtype=g.tensors[t].dtype).reshape(g.tensors[t].shape)
    for n in g.nodes():
        op = make_op(n)
        args = [None if not t else (g.const(t) if g.is_const(t) else env[t]) for t in n.inputs]
        outs = op.reference(*args)
        for t, v in zip(n.outputs, outs):
            if t:
                env[t] = np.asarray(v).reshape(g.tensors[t].shape).astype(g.tensors[t].dtype)
    if keep_all:
        return env
    return {t: (g.const(t) if g.is_const(t) else env[t]) for t in g.outputs}
