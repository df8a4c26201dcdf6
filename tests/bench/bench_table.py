"""`make bench`: writes tests/bench/RESULTS.md, the benchmark table of the MLPerf Tiny models.

(a) each model x target x float/int8: ELF sizes (flash, code, RAM) of the test firmware, the arena,
and instructions per inference and per MAC (`nncc bench`: QEMU TCG plugin on MCU targets,
callgrind on the host); (b) host instructions at -O0 vs -O2 for the zoo and MLPerf models; (c) the
arena against TFLite Micro's; (d) the arena against its lower bound, and the bound before and
after fusion and scheduling (tests/bench/arena_bounds.py); (e) one model's per-layer counts. int8
builds calibrate on a few seeded uniform draws over each
model's documented input range (tests/fixtures/mlperf_tiny/LICENSE.md). Every count is exact and
repeatable. Not a test (no test_ prefix): run `make bench` or `python tests/bench/bench_table.py`.
"""
from __future__ import annotations

import argparse
import datetime
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from nncc import firmware
from nncc.bench import bench, bench_layers, layer_rows
from nncc.compiler import compile_model
from nncc.errors import DoesNotFit
from nncc.quant.quantize import QuantOptions
from tests.bench.arena_bounds import HEAD as BOUND_HEAD
from tests.bench.arena_bounds import LIGHT, bounds, text_row
from tests.util import mlperf_inputs

MLPERF = ROOT / "tests" / "fixtures" / "mlperf_tiny"
ZOO = ROOT / "tests" / "fixtures" / "zoo"
# name: (file, TFLite Micro arenas (float, int8) from the models' README); the documented input
# ranges: tests.util.MLPERF_RANGES
MODELS = {
    "KWS": ("mlperf_kws_dscnn.onnx", 64000, 16000),
    "VWW": ("mlperf_vww_mbv1_025.onnx", 294912, 73728),
    "IC": ("mlperf_ic_resnet8.onnx", 196608, 49152),
    "AD": ("mlperf_ad_fcae.onnx", 3072, 768),
}
# (d): the per-layer breakdown of one model
PER_LAYER = ("KWS", "int8", "cortex-m4")
TARGETS = {"float32": ["host", "cortex-m4", "cortex-m7", "rv32imac"],
           "int8": ["host", "cortex-m4", "cortex-m7", "rv32imac", "cortex-m0plus", "cortex-m33"]}
# int8 with `--winograd`: only for the models it changes (3x3 stride-1 layers of 8+ channels)
WINOGRAD = ("int8 winograd", ("IC",))
N_CALIB = 4
# the cells of a row of table (a), after model, precision, target
COLS = ("flash", "code", "ram", "arena", "insns", "per_mac", "cycles", "cycles_per_mac")
BOUND_MODELS = (sorted(ZOO.glob("*.onnx")) + [MLPERF / m[0] for m in MODELS.values()]
                + [LIGHT / f"light_{n}.onnx" for n in ("squeezenet", "inception_v1", "resnet50", "densenet121")])


def calib(model: str, winograd: bool = False) -> QuantOptions:
    return QuantOptions(samples=mlperf_inputs(Path(MODELS[model][0]).stem, N_CALIB, 0), winograd=winograd)


def quant_kw(model: str, precision: str) -> dict:
    return {"quant": calib(model, precision == WINOGRAD[0])} if precision.startswith("int8") else {}


def short(e: Exception) -> str:
    return " ".join(str(e).split()).replace("|", "/")


def cell_row(model: str, precision: str, target: str, skip: set) -> dict:
    """One row of table (a); every value a string."""
    path, kw = MLPERF / MODELS[model][0], quant_kw(model, precision)
    row = dict.fromkeys(COLS, "-")
    with tempfile.TemporaryDirectory(prefix="nncc-benchtab-") as tmp:
        if target == "host":
            rep = compile_model(path, Path(tmp) / "p", **kw).report
        else:
            t = firmware.load_target(target)
            if t.missing_tools():
                return {**row, "flash": f"not measured: {', '.join(t.missing_tools())} not installed"}
            try:
                res = firmware.compile_firmware(path, Path(tmp) / "p", target, build_elf=False, **kw)
            except DoesNotFit as e:
                return {**row, "flash": f"does not fit: {short(e)}"}
            rep = res.report
            # Sizes of the board image (same sections as the QEMU one, the board's memory map):
            # measurable also where only the emulated machine is too small.
            board_elf = f"{rep['model']}_board.elf"
            firmware.build(res.out_dir, t, board_elf)
            rep = firmware.add_sizes(res.out_dir, res.out_dir / board_elf, t)
            row.update(flash=f"{rep['flash_bytes']:,}", code=f"{rep['code_bytes']:,}",
                       ram=f"{rep['ram_bytes']:,}")
        row["arena"] = f"{rep['arena_bytes']:,}"
    if (model, target) in skip:
        row["insns"] = "skipped (see notes)"
        return row
    try:
        b = bench(path, target, **kw)
    except DoesNotFit as e:
        row["insns"] = f"does not fit: {short(e)}"
        return row
    row.update(insns=f"{b.instructions:,}", per_mac=f"{b.per_mac:.2f}")
    if b.cycles is not None:
        row.update(cycles=f"{b.cycles:,}", cycles_per_mac=f"{b.cycles_per_mac:.3f}")  # 3 places: near 1.4, 2 hide which side
    return row


def guarded(fn, *args):
    """fn(*args), or the error as text: one broken cell must not lose a 15-minute table."""
    try:
        return fn(*args), None
    except Exception as e:  # noqa: BLE001 -- reported in the table and the exit status
        return None, f"error: {type(e).__name__}: {short(e)[:300]}"


def opt_row(path: Path) -> list[str]:
    i0, i2 = (bench(path, "host", opt_level=o).instructions for o in (0, 2))
    return [path.stem, f"{i0:,}", f"{i2:,}", f"{i0 / i2:.2f}"]


def arena_row(model: str) -> list[str]:
    file, tfl_f, tfl_q = MODELS[model]
    out = [model]
    with tempfile.TemporaryDirectory(prefix="nncc-benchtab-") as tmp:
        for precision, tfl in (("float32", tfl_f), ("int8", tfl_q)):
            r = compile_model(MLPERF / file, Path(tmp) / precision, **quant_kw(model, precision)).report
            out += [f"{r['arena_bytes']:,}", f"{r['arena_lower_bound_bytes']:,}", f"{tfl:,}",
                    f"{r['arena_bytes'] / tfl:.3f}"]
    return out


def per_layer_rows() -> tuple[list[str], list[list[str]], str]:
    """(header, rows, the line under the table) of `nncc bench --per-layer` for PER_LAYER."""
    model, precision, target = PER_LAYER
    lb = bench_layers(MLPERF / MODELS[model][0], target, **quant_kw(model, precision))
    head, rows = layer_rows(lb)
    note = (f"The unmarked build (table (a)) runs {lb.total.instructions:,} instructions "
            f"({lb.total.instructions - lb.marked:+,} against the marked one).")
    return head, [[c.replace("|", "/") for c in r] for r in rows], note


def versions() -> list[str]:
    def first(cmd):
        try:
            return subprocess.run(cmd, check=False, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            return "not installed"
    return [f"host: `{first(['gcc', '--version'])}`", f"`{first(['arm-none-eabi-gcc', '--version'])}`",
            f"`{first(['riscv64-unknown-elf-gcc', '--version'])}`",
            f"`{first(['qemu-system-arm', '--version'])}`", f"`{first(['valgrind', '--version'])}`"]


def md_table(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A markdown table: the first `left` columns are labels, the others right-aligned numbers."""
    rule = "|" + "|".join("---" if i < left else "---:" for i in range(len(head))) + "|"
    lines = ["| " + " | ".join(head) + " |", rule]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--output", default=str(ROOT / "tests" / "bench" / "RESULTS.md"))
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--skip", action="append", default=[], metavar="MODEL:TARGET",
                    help="leave out the instruction count of one model on one target (slow ones)")
    ap.add_argument("--models", default=",".join(MODELS), help="a subset, for a quick look")
    a = ap.parse_args()
    skip = {tuple(s.split(":")) for s in a.skip}
    models = a.models.split(",")
    if shutil.which("valgrind") is None:
        ap.error("needs valgrind for the host counts (apt-get install valgrind)")
    t0 = time.time()
    cells = [(m, p, t) for m in models
             for p in [*TARGETS, *[WINOGRAD[0]] * (m in WINOGRAD[1])]
             for t in TARGETS[p if p in TARGETS else "int8"]]
    zoo = sorted(ZOO.glob("*.onnx")) + [MLPERF / MODELS[m][0] for m in models]
    with ProcessPoolExecutor(a.jobs) as pool:
        fa = [pool.submit(guarded, cell_row, m, p, t, skip) for m, p, t in cells]
        fb = [pool.submit(guarded, opt_row, path) for path in zoo]
        fc = [pool.submit(guarded, arena_row, m) for m in models]
        fd = pool.submit(guarded, per_layer_rows)
        rows_a, errors = [], 0
        for (m, p, t), f in zip(cells, fa):
            r, err = f.result()
            r = r or {k: err if k == "flash" else "-" for k in COLS}
            print(f"[{time.time() - t0:6.0f} s] {m} {p} {t}: {err or r['insns']}", file=sys.stderr)
            rows_a.append([m, p, t, *(r[k] for k in COLS)])
            errors += err is not None
        rows_b, rows_c = [], []
        for rows, futures, names, width in ((rows_b, fb, [z.stem for z in zoo], 4),
                                             (rows_c, fc, models, 9)):
            for name, f in zip(names, futures):
                r, err = f.result()
                if err:
                    print(f"{name}: {err}", file=sys.stderr)
                rows.append(r or [name, err] + ["-"] * (width - 2))
                errors += err is not None
        per_layer, err = fd.result()
        if err:
            print(f"per layer: {err}", file=sys.stderr)
            per_layer = (["error"], [[err]], "")
        errors += err is not None
    rows_d = [text_row(bounds(path)) for path in BOUND_MODELS]  # seconds, no C build
    minutes = (time.time() - t0) / 60
    text = render(rows_a, rows_b, rows_c, rows_d, per_layer, skip, minutes)
    Path(a.output).write_text(text)
    print(f"wrote {a.output} in {minutes:.1f} min; {errors} error(s)", file=sys.stderr)
    return 1 if errors else 0


def render(rows_a, rows_b, rows_c, rows_d, per_layer, skip, minutes) -> str:
    skipped = ", ".join(f"{m} on {t}" for m, t in sorted(skip)) or "none"
    return f"""# Benchmark results (`make bench`)

Written by `tests/bench/bench_table.py` on {datetime.date.today().isoformat()} in {minutes:.1f} minutes.
Toolchains: {"; ".join(versions())}.

All counts are exact and deterministic (the same build gives the same count): **instructions
executed, not cycles**. MCU targets: the test firmware built with `-O2 -ffp-contract=off`, run in
QEMU with the TCG plugin `targets/common/qemu_plugin/insn_marks.c` (QEMU models no pipeline,
caches or flash wait states). The cycles of cortex-m4 are an **estimate**: the same plugin sums the
Cortex-M4's published instruction timings over the executed instructions at zero wait states, with
load pipelining, address stalls, taken-branch refills and the extra cycles of unaligned accesses
(`targets/common/qemu_plugin/m4_timing.c`,
checked against the manual's numbers by `tests/targets/test_timing_model.py`). A board running
from flash adds wait states the model does not see. Host: the same `main.c` built with gcc `-O2`, counted by valgrind's
callgrind inside `NAME_run()`. One inference on one seeded random input (int8: random int8 codes,
i.e. uniform over the calibrated input range); MACs are those of each build's report (an int8
build adds its input quantization). int8 builds calibrate on {N_CALIB} seeded uniform draws over
each model's documented input range (`tests/fixtures/mlperf_tiny/LICENSE.md`); a final Softmax
stays float in int8 builds (KWS, VWW, IC).

## (a) MLPerf Tiny models x targets x float/int8

flash = text + data of the ELF linked for the board the target stands for (targets/README.md),
including the embedded test vectors; code = flash - weights - test vectors (kernels, startup,
harness, libc/libgcc pieces); RAM = data + bss including the reserved stack; arena = the
activation arena inside RAM. "does not fit" is the compile-time refusal (board) or, for the
instruction count, the emulated machine (targets/README.md lists both). "-" = not applicable (no ELF on the host; cortex-m0plus
and cortex-m33 are benchmarked int8 only). "int8 winograd" is the int8 build with `--winograd`
(its 3x3 stride-1 layers by Winograd F(2x2, 3x3), nncc/ops/qconv_wino.py), for the models it
changes: {", ".join(WINOGRAD[1])}. Instruction counts left out: {skipped}.

{md_table(["model", "precision", "target", "flash B", "code B", "RAM B", "arena B", "instructions",
           "instr/MAC", "cycles (model)", "cycles/MAC"], rows_a, left=3)}

## (b) Host instructions per inference, -O0 (no graph passes) vs -O2 (all passes)

Float builds, gcc -O2 for the C in both cases; callgrind, `NAME_run()` inclusive.

{md_table(["model", "-O0", "-O2", "-O0 / -O2"], rows_b)}

## (c) Arena vs TFLite Micro

TFLite Micro: the activation arena its planner reaches ("head", excluding persistent data; from
`pip tflite-micro`, host build, reference kernels). nncc: `arena_bytes` and
`arena_lower_bound_bytes` of report.json (-O2, 4-byte alignment); ratio = nncc / TFLite Micro.

{md_table(["model", "float arena", "float lower bound", "float TFLM", "ratio", "int8 arena",
           "int8 lower bound", "int8 TFLM", "ratio"], rows_c)}

## (d) Arena vs lower bound; what fusion and scheduling do to the bound

Float builds, 4-byte alignment; bytes. Column meanings: `tests/bench/arena_bounds.py`. Bounds
allowed: arena <= 1.02 x the scheduled bound on chains, <= 1.05 x on branched graphs
(`tests/test_arena_bounds.py` asserts it).

{md_table(BOUND_HEAD, rows_d, left=2)}

## (e) Per layer: {" ".join(PER_LAYER)} (`nncc bench --per-layer`)

A second build of the same firmware with a mark after every kernel call in `NAME_run()`; a
layer's count is the instructions between its two marks less the cost of one mark, the glue is
the rest of `NAME_run()` (entry, exit, output copies), so layers + glue = the marked total.
Layer names are shortened to 40 characters (head ... tail).

{md_table(per_layer[0], per_layer[1], left=3)}

{per_layer[2]}
"""


if __name__ == "__main__":
    sys.exit(main())
