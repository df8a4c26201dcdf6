"""Weight bytes of int8 builds against the float build (report.json `weights_bytes`) for the zoo
and MLPerf Tiny models: at most 0.26 x, every scaling. int8 weights are 1/4 of float; what
pushes past 1/4 is the per-output-channel data, which the packed QConv / QGemm form
(nncc/ops/quantized.py) keeps to 2 bytes (int16: bias and the channel's scale exponent) instead
of 9 (int32 bias, int32 multiplier, int8 shift) -- DS-CNN's depthwise layers, 9 weights per
channel, made that 0.30 x. A fused QAdd's table of terms (2 KB: nncc/quant/fuse_qadd.py) is
flash the kernels read too, but no weight's: it is counted apart, exactly. Sizes do not depend
on the calibration data: two uniform samples. The table is printed (pytest -s)."""
from __future__ import annotations

import numpy as np
import pytest

from nncc.compiler import analyze, load
from nncc.ops.quantized import TABLE_INDEX
from nncc.quant.quantize import QuantOptions, quantize
from tests.util import FIXTURES, MLPERF

MODELS = [*sorted((FIXTURES / "zoo").glob("*.onnx")), *sorted(MLPERF.glob("*.onnx")),
          *sorted((FIXTURES / "quant").glob("*.onnx"))]
MAX_RATIO = 0.26


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_int8_weights_at_most_026_of_float(path):
    g = load(path)
    fl = analyze(g).report["weights_bytes"]
    rng = np.random.default_rng(0)
    calib = [{t: rng.uniform(-1, 1, g.tensors[t].shape).astype(np.float32) for t in g.inputs}
             for _ in range(2)]
    ratios, tables = {}, {}
    for scaling in ("fixed", "shift", "double-shift"):
        q = quantize(load(path), QuantOptions(samples=calib, scaling=scaling, observer="minmax"))
        fused = [n for n in q.nodes() if n.op == "QConv" and len(n.inputs) > TABLE_INDEX]
        tables[scaling] = 2048 * len(fused)
        assert all(q.tensors[n.inputs[TABLE_INDEX]].nbytes == 2048 for n in fused)
        ratios[scaling] = (analyze(q).report["weights_bytes"] - tables[scaling]) / fl
    print(f"\n{path.stem}: float {fl:,} B, int8/float fixed {ratios['fixed']:.4f}, "
          f"shift {ratios['shift']:.4f}, double-shift {ratios['double-shift']:.4f}; "
          f"QAdd tables (fixed) {tables['fixed']:,} B")
    assert tables["shift"] == tables["double-shift"] == 0
    assert max(ratios.values()) <= MAX_RATIO, ratios
