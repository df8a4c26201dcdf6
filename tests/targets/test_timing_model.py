"""The Cortex-M4 cycle model of `nncc bench` (targets/common/qemu_plugin/m4_timing.c) against the
cycle counts of the Cortex-M4 Technical Reference Manual (ARM 100166, 3.3 "Processor instruction
set summary" and "Load/store timings", zero wait states, the refill P of a taken branch taken as
2, unaligned accesses split as the manual describes): instruction sequences (c/timing_cases.c)
run in QEMU between two marks."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from onnx import helper

from nncc import firmware
from nncc.bench import bench, qemu_marks
from tests.targets.test_firmware import need
from tests.util import MLPERF, make_model, save

pytestmark = pytest.mark.cross

# (sequence, cycles by the manual), in the order of c/timing_cases.c
CASES = [
    ("4 ADD", 4),
    ("3 LDR, independent: the 2nd and 3rd pipelined", 2 + 1 + 1),  # the manual's own example
    ("MOV, STR imm, LDR after a store, LDR of an address just loaded", 1 + 1 + 2 + 2),
    ("ADD then LDR from its result: a stall", 1 + 2 + 1),
    ("LDRD (1 + N), then 2 LDR: the first not pipelined after LDRD", 3 + 2 + 1),
    ("2 STR imm", 1 + 1),
    ("PUSH and POP of 4 (1 + N each)", 5 + 5),
    ("SMLAD, SMULL, SXTB16, SSAT", 4),
    ("a loop of 4 turns: MOVS, SUBS, BNE taken 3 times (1 + P)", 1 + 4 + 3 * 3 + 1),
    ("MOVS, CMP, BEQ not taken, NOP", 4),
    ("CMP, IT, MOVEQ (no folding)", 3),
    ("MOVS, MOVS, SDIV (the worst case)", 1 + 1 + 12),
    ("VADD, VMLA, VLDR", 1 + 3 + 2),
    ("VPUSH and VPOP of 2 single registers (1 + N each)", 3 + 3),
    ("LDR at an odd address, LDR at 2 mod 4, LDRH and LDRB at an odd one: +2, +1, +1, none",
     2 + 2 + 1 + 1 + 1 + 1 + 1),
    # runs too long for one translated block: QEMU cuts them where the core sees no break
    ("400 LDR, independent: all but the first pipelined", 2 + 399),
    ("200 times ADD then LDR from its result: a stall each", 200 * (1 + 2 + 1)),
]


def project(tmp_path) -> Path:
    """A cortex-m4 firmware project of a one-node model, its main.c replaced by the cases."""
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", (1, 4))], [("y", (1, 4))])
    res = firmware.compile_firmware(save(m, tmp_path), tmp_path / "p", "cortex-m4", build_elf=False)
    shutil.copy(Path(__file__).parent / "c" / "timing_cases.c", res.out_dir / "main.c")
    return res.out_dir


def test_cycles_follow_the_manual(tmp_path):
    t = need("cortex-m4")
    proj = project(tmp_path)
    marks = qemu_marks(firmware.build(proj, t, "EXTRA_CFLAGS=-Werror"), t, tmp_path)
    assert len(marks) == 2 * (len(CASES) + 1)
    diffs = [(marks[i + 1][0] - marks[i][0], marks[i + 1][1] - marks[i][1])
             for i in range(0, len(marks), 2)]
    (n0, c0), cases = diffs[0], diffs[1:]
    got = {name: c - c0 for (name, _), (_, c) in zip(CASES, cases)}
    assert got == dict(CASES)
    # the instruction counts of the same runs: the model saw every instruction
    assert [n - n0 for n, _ in cases] == [4, 3, 4, 2, 3, 2, 2, 4, 1 + 4 * 2, 4, 3, 3, 3, 2, 4, 400, 400]


def test_cycles_only_where_a_model_exists(tmp_path):
    """cortex-m4 reports cycles (deterministic, and at least one per instruction); a target
    without a timing model reports none."""
    need("cortex-m4")
    need("cortex-m7")
    path = MLPERF / "mlperf_ad_fcae.onnx"
    a, b = bench(path, "cortex-m4"), bench(path, "cortex-m4")
    assert a.cycles == b.cycles and a.instructions == b.instructions
    assert a.instructions < a.cycles < 3 * a.instructions
    assert bench(path, "cortex-m7").cycles is None
