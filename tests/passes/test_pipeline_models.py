"""The -O2 pipeline on every fixture model (MLPerf Tiny, zoo): the numpy reference gives the
same outputs before and after, and the passes did fire where the model has something to fold.
A model whose ops are not all implemented yet is skipped with the UnsupportedOp message."""
from __future__ import annotations

import numpy as np
import pytest

from nncc.compiler import load
from nncc.errors import UnsupportedOp
from nncc.ir import verify
from nncc.passes import PASSES, PIPELINE, run_pipeline
from tests.passes._graphs import assert_same_outputs, op_counts
from tests.util import FIXTURES

MODELS = sorted(p for d in ("mlperf_tiny", "zoo") for p in (FIXTURES / d).glob("*.onnx"))


def inputs_for(g, seed: int, uniform: bool) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t: (rng.uniform(0, 1, g.tensors[t].shape) if uniform else
                rng.standard_normal(g.tensors[t].shape)).astype(np.float32) for t in g.inputs}


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_o2_keeps_numerics(path):
    try:
        g0 = load(path, opt_level=0)
    except UnsupportedOp as e:
        pytest.skip(str(e))
    g2 = run_pipeline(g0.copy(), 2)
    for seed, uniform in ((0, False), (1, True)):
        assert_same_outputs(g0.copy(), g2, inputs_for(g0, seed, uniform), rtol=1e-4, atol=1e-5)
    before, after = op_counts(g0), op_counts(g2)
    assert after.get("BatchNormalization", 0) <= before.get("BatchNormalization", 0)
    if before.get("Conv") and (before.get("Relu") or before.get("Clip")):
        assert any("nncc_activation" in n.attrs for n in g2.nodes()), "no activation was fused"
    assert sum(after.values()) <= sum(before.values())


@pytest.mark.parametrize("path", MODELS, ids=[p.stem for p in MODELS])
def test_each_pass_keeps_numerics(path):
    """Pass by pass, so a numeric change points at the pass that made it."""
    try:
        g = load(path, opt_level=0)
    except UnsupportedOp as e:
        pytest.skip(str(e))
    inputs = inputs_for(g, 2, False)
    for name in PIPELINE[2]:
        before = g.copy()
        PASSES[name](g)
        verify(g)
        assert_same_outputs(before, g, inputs, rtol=1e-4, atol=1e-5)


# What -O2 must have removed or made, per model (counts of op types after the pipeline).
EXPECTED = {
    "mlperf_ad_fcae": {"MatMul": 0, "Add": 0, "Relu": 0, "Gemm": 10},  # MatMul+Add+Relu -> Gemm
    "mlperf_ic_resnet8": {"Relu": 0, "MatMul": 0},                     # Relu fused into Add too
    "mlperf_kws_dscnn": {"Relu": 0, "AveragePool": 0, "ConvPool": 1},
    "lenet5_bn": {"BatchNormalization": 0, "Relu": 0, "MaxPool": 0, "ConvPool": 2},
    "mobilenetv2_035_96": {"BatchNormalization": 0, "Clip": 0, "GlobalAveragePool": 0},
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_o2_structure(name):
    path = next(p for p in MODELS if p.stem == name)
    counts = op_counts(load(path, opt_level=2))
    assert {op: counts.get(op, 0) for op in EXPECTED[name]} == EXPECTED[name]
