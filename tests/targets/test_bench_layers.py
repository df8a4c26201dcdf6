"""`nncc bench --per-layer` (nncc/bench.py bench_layers): instructions per layer from marks between
the kernel calls, counted by callgrind on the host and by the QEMU plugin on MCU targets. Counts
repeat exactly, the layers plus the glue add up to the unmarked build's total with little glue,
and a conv with more MACs costs proportionally more."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from nncc.bench import bench_layers, layer_rows
from nncc.cli import main
from nncc.quant.quantize import QuantOptions
from tests.targets.test_firmware import need
from tests.util import have, make_model, save

pytestmark = pytest.mark.cross

# conv a: 4 -> 8 channels, conv b: 8 -> 16 on the same 8x8 plane, both 3x3, pads 1:
# b has exactly 4x the MACs of a.
SMALL, BIG = 4 * 8 * 9 * 64, 8 * 16 * 9 * 64


def two_convs(tmp_path):
    rng = np.random.default_rng(3)
    nodes = [helper.make_node("Conv", ["x", "Wa", "Ba"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "Wb", "Bb"], ["y"], pads=[1, 1, 1, 1])]
    inits = {"Wa": rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.3,
             "Ba": rng.standard_normal(8).astype(np.float32),
             "Wb": rng.standard_normal((16, 8, 3, 3)).astype(np.float32) * 0.3,
             "Bb": rng.standard_normal(16).astype(np.float32)}
    return save(make_model(nodes, [("x", (1, 4, 8, 8))], [("y", None)], inits), tmp_path, "two.onnx")


def quant():
    rng = np.random.default_rng(0)
    return QuantOptions(samples=[{"x": rng.standard_normal((1, 4, 8, 8)).astype(np.float32)}
                                 for _ in range(3)])


def need_tools(target: str) -> None:
    if target == "host":
        if not have("valgrind"):
            pytest.skip("valgrind not installed (apt-get install valgrind)")
    else:
        need(target)


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("target", ["host", "cortex-m4", "rv32imac"])
def test_per_layer(tmp_path, target, precision):
    need_tools(target)
    kw = {"quant": quant()} if precision == "int8" else {}
    model = two_convs(tmp_path)
    lb = bench_layers(model, target, **kw)
    assert [r.op for r in lb.layers] == (["QConv", "QConv"] if kw else ["Conv", "Conv"])
    assert [r.macs for r in lb.layers] == [SMALL, BIG]
    again = bench_layers(model, target, **kw)
    assert [r.instructions for r in again.layers] == [r.instructions for r in lb.layers]
    assert again.total.instructions == lb.total.instructions
    assert again.marked == lb.marked
    # the layers account for the whole inference but a little glue (run() entry/exit); the marks
    # change gcc's register allocation a little, no more
    assert sum(r.instructions for r in lb.layers) + lb.glue == lb.marked
    assert 0 <= lb.glue < 0.01 * lb.marked
    assert abs(lb.total.instructions - lb.marked) < 0.05 * lb.total.instructions
    a, b = (r.instructions for r in lb.layers)
    # at least a multiply and an add per MAC; on cortex-m4 int8, a SMLAD per 2 MACs
    least = 0.5 if kw and target == "cortex-m4" else 2
    assert a > least * SMALL and b > least * BIG
    # 4x the MACs: between 2x and 5x the instructions (per-pixel overheads weigh more in a: an
    # int8 DSP kernel gathers each pixel's window once, 2x the taps in b for 4x the MACs)
    assert 2 * a < b < 5 * a, (a, b)
    # cortex-m4's timing model: cycles per layer, repeatable, at least one per instruction
    if target == "cortex-m4":
        assert [r.cycles for r in again.layers] == [r.cycles for r in lb.layers]
        assert all(r.instructions <= r.cycles < 3 * r.instructions for r in lb.layers)
        assert sum(r.cycles for r in lb.layers) <= lb.marked_cycles
        assert lb.total.instructions <= lb.total.cycles
    else:
        assert lb.marked_cycles is None and lb.total.cycles is None


def test_cli_per_layer(tmp_path, capsys):
    need_tools("cortex-m4")
    assert main(["bench", str(two_convs(tmp_path)), "--target", "cortex-m4", "--per-layer"]) == 0
    out = capsys.readouterr().out
    _, rows = layer_rows(bench_layers(two_convs(tmp_path), "cortex-m4"))
    assert "instr/MAC" in out and "% of total" in out and "glue" in out and "unmarked build" in out
    assert "cycles/MAC" in out and "cycles per inference" in out
    assert rows[-1][4] in out  # the total, as the table prints it
