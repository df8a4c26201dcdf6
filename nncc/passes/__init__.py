"""Graph passes: plain functions IR -> bool (changed), run in the order of PIPELINE.

The pipeline is a straight list; a pass that needs to iterate does so inside itself.
`run_pipeline` verifies the IR after every pass.
"""
from __future__ import annotations

import importlib
import os
from collections.abc import Callable

from ..ir import Graph, verify

PASSES: dict[str, Callable[[Graph], bool]] = {}


def register_pass(name: str):
    def deco(fn):
        if name in PASSES:
            raise ValueError(f"pass {name!r} registered twice")
        PASSES[name] = fn
        return fn
    return deco


# Order matters; each entry says why where it does. Passes per optimisation level.
_CLEANUP = [
    "remove_identity",
    "dead_code",       # before the folds: they then only look at nodes that matter
    "fold_batchnorm",  # exact up to rounding; also clears the way for fuse_activation
]
PIPELINE: dict[int, list[str]] = {
    0: [],
    1: _CLEANUP,
    2: _CLEANUP + [
        "fold_constant_scale",  # after fold_batchnorm (a BN's scale+shift is folded first), before
                                # fuse_activation: a Mul/Add between Conv and Relu blocks that fusion
        "fuse_matmul_add",      # MatMul -> Add(bias) becomes Gemm, so the Relu after it can fuse
        "fuse_pad",             # Pad -> Conv: Conv pads grow; independent of the activation fusion
        "fuse_activation",      # after the folds: Conv -> BN -> Relu only becomes Conv -> Relu there
        "fuse_conv_pool",       # takes Conv[+activation] -> pool, once the activation is in
        "fuse_residual_add",    # last: Conv -> Add[+activation]; after fuse_activation put the
                                # activation on the Add, after fuse_conv_pool (no residual there)
    ],
}


def run_pipeline(g: Graph, level: int = 2) -> Graph:
    names = PIPELINE[level]
    unknown = [n for n in names if n not in PASSES]
    if unknown or len(set(names)) != len(names):
        raise ValueError(f"bad pipeline {names}")
    for name in names:
        PASSES[name](g)
        verify(g)
        if os.environ.get("NNCC_DEBUG") == "2":
            print(f"-- after {name}:", *(f"  {n.op} {n.name}" for n in g.nodes()), sep="\n")
    return g


for _m in ["remove_identity", "dead_code", "fold_batchnorm", "fold_constant_scale", "fuse_matmul_add",
           "fuse_pad", "fuse_activation", "fuse_conv_pool", "fuse_residual_add"]:
    importlib.import_module(f"{__name__}.{_m}")
