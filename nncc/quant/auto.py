"""Automatic mixed precision (`--target-sqnr DB`): quantize every layer to int8, then raise to
int16, one at a time, the layer whose raising improves the output SQNR on the calibration data
most, until the target is met or every layer is int16 (a greedy search: each round compiles one
candidate graph per remaining layer and runs the integer reference on the samples)."""
from __future__ import annotations

import sys

import numpy as np

from ..ir import Graph
from ..reference import run_reference
from . import fixed_point as fp
from .int16 import qrange

MAX_SAMPLES = 16  # the search's cost is rounds x layers x samples reference runs


def output_sqnr(q: Graph, samples: list[dict], refs: list[dict]) -> float:
    """SQNR (dB) of integer graph q's dequantized outputs against the float outputs `refs`,
    over all samples and outputs together."""
    from .fidelity import SQNR, real_values
    acc = SQNR()
    for s, ref in zip(samples, refs):
        qin = {}
        for t in q.inputs:
            info = q.tensors[t]
            qp = info.quant
            qin[t] = fp.quantize_float(s[t], qp.scale[0], qp.zero_point[0], *qrange(info.dtype),
                                       dtype=np.dtype(info.dtype))
        outs = run_reference(q, qin)
        for t in q.outputs:
            acc.add(np.asarray(ref[t], np.float64), real_values(q.tensors[t], outs[t]))
    return acc.db()


def raise_to_int16(g: Graph, samples: list[dict], ranges: dict, ranges16: dict, start: set[str],
                   keep: set[str], opts, log=None) -> set[str]:
    """The node names whose outputs go int16 (a superset of `start`) for opts.target_sqnr;
    each step printed on `log` (stderr)."""
    log = log or sys.stderr
    from .mixed import REQUANTIZING, MixedRewriter
    samples = [{t: np.asarray(s[t], np.float32).reshape(g.tensors[t].shape) for t in g.inputs}
               for s in samples[:MAX_SAMPLES]]
    refs = [run_reference(g, s) for s in samples]

    def score(wide: set[str]) -> float:
        q = MixedRewriter(g, ranges, ranges16, wide, keep, opts.scaling, opts.packed,
                          opts.per_channel).run()
        return output_sqnr(q, samples, refs)

    chosen = set(start)
    todo = [n.name for n in g.nodes() if n.op in REQUANTIZING and n.name not in keep | chosen]
    cur = score(chosen)
    best = (cur, set(chosen))
    print(f"int8 output SQNR {cur:.1f} dB, target {opts.target_sqnr:.1f} dB", file=log)
    while cur < opts.target_sqnr and todo:
        trials = [(score(chosen | {n}), n) for n in todo]
        cur, name = max(trials, key=lambda t: t[0])  # first in graph order among equals
        chosen.add(name)
        todo.remove(name)
        print(f"  int16 {name}: {cur:.1f} dB", file=log)
        if cur > best[0]:
            best = (cur, set(chosen))
    if cur < opts.target_sqnr:
        # not met with every layer int16: int16 layers keep TFLite's plain weight scales, so
        # the best set seen may hold fewer layers than all
        cur, chosen = best
        print(f"target NOT met: best {cur:.1f} dB", file=log)
    else:
        print("target met", file=log)
    print(f"{len(chosen)} layer(s) int16: {', '.join(sorted(chosen)) or '-'}", file=log)
    return chosen
