"""The planner's arena against the lower bound on real models (memory-planner issue, item 1):
arena <= 1.02 x bound on chains, <= 1.05 x on branched graphs; scheduling never raises the
bound; conv+pool fusion lowers LeNet-5's peak. Numbers: tests/bench/arena_bounds.py."""
from __future__ import annotations

import pytest

from tests.bench.arena_bounds import LIGHT, LIMIT, bounds
from tests.util import FIXTURES, MLPERF

FAST = sorted((FIXTURES / "zoo").glob("*.onnx")) + sorted(MLPERF.glob("*.onnx"))
LIGHT_MODELS = [LIGHT / f"light_{n}.onnx" for n in ("squeezenet", "inception_v1", "resnet50")]


def check(path):
    r = bounds(path)
    print(f"\n{r}")
    assert r["arena"] <= LIMIT[r["graph"]] * r["scheduled"]
    assert r["scheduled"] <= min(r["file"], r["bfs"])
    assert r["scheduled"] <= r["nofuse"] <= r["O0"]
    return r


@pytest.mark.parametrize("path", FAST + LIGHT_MODELS, ids=lambda p: p.stem)
def test_arena_within_bound(path):
    check(path)


def test_conv_pool_fusion_lowers_lenet_peak():
    r = bounds(FIXTURES / "zoo" / "lenet5_bn.onnx")
    # conv1's 6x28x28 float output (18,816 B) never exists once the pool is fused into the conv
    assert r["scheduled"] < r["nofuse"] / 3, r
    assert r["arena"] == r["scheduled"]
