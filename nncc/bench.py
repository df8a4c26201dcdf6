"""`nncc bench`: instructions executed per inference, and per MAC. On the host the project's test
harness (firmware/main.c.j2, which also builds with gcc) runs under valgrind's callgrind, which
counts the instructions inside NAME_run(). On an MCU target the test firmware is built with
-DNNCC_BENCH and runs in QEMU with a small TCG plugin (targets/common/qemu_plugin/insn_marks.c)
that logs the instruction total each time nncc_bench_mark() runs; the firmware calls it twice
empty (the cost of the calls) and then around the first inference. Both counts are exact and
deterministic; instructions are not cycles (no pipeline, cache or flash wait states).

Where target.json names a `timing_model` (cortex-m4), the same plugin also sums the cycles of a
static model of that core (targets/common/qemu_plugin/m4_timing.c: the vendor's published
instruction timings at zero wait states, a taken branch's refill decided at run time). It is an
estimate, deterministic like the count, not a measurement on a board.

`--per-layer` (bench_layers) builds the project a second time with a mark after every kernel call
in NAME_run() (compile_model(layer_marks=True)): QEMU logs the total at each mark as before, on the
host callgrind dumps its counts before each one (--dump-before). A layer's count is the difference
between its two marks less the cost of one mark (the empty pair in main()); the rest of NAME_run()
(prologue, epilogue, output copies) is glue, so layers + glue = the marked build's total, marks
excluded. The calls to the marks may change how gcc allocates registers around the inlined
kernels: the unmarked build's total (what `nncc bench` prints) is reported beside it."""
from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from .compiler import compile_model
from .errors import BuildError
from .firmware import QEMU_FLAGS, QEMU_TIMEOUT, build, compile_firmware, default_samples, load_target, main_c
from .host import compiler
from .resources import resource_dir
from .table import ellipsize


@dataclass
class Bench:
    target: str
    instructions: int
    macs: int
    method: str
    cycles: int | None = None  # the target's timing model, where it has one

    @property
    def per_mac(self) -> float:
        return self.instructions / self.macs if self.macs else float("nan")

    @property
    def cycles_per_mac(self) -> float:
        return self.cycles / self.macs if self.macs and self.cycles is not None else float("nan")


@dataclass
class LayerCount:
    name: str
    op: str
    kernel: str
    macs: int
    instructions: int
    cycles: int | None = None


@dataclass
class LayerBench:
    total: Bench  # the unmarked build, as `nncc bench` counts it
    layers: list[LayerCount]  # the kernels NAME_run() calls, in order
    marked: int  # NAME_run() of the marked build, the marks' own cost excluded
    marked_cycles: int | None = None  # the same, by the target's timing model

    @property
    def glue(self) -> int:
        return self.marked - sum(r.instructions for r in self.layers)


def bench(model_path, target: str = "host", **compile_args) -> Bench:
    with tempfile.TemporaryDirectory(prefix="nncc-bench-") as tmp:
        if target == "host":
            return _bench_host(model_path, Path(tmp), **compile_args)
        return _bench_qemu(model_path, Path(tmp), target, **compile_args)


def bench_layers(model_path, target: str = "host", **compile_args) -> LayerBench:
    """Instructions per layer (see the module docstring) and the whole inference's count."""
    total = bench(model_path, target, **compile_args)
    with tempfile.TemporaryDirectory(prefix="nncc-bench-") as tmp:
        if target == "host":
            res, totals = _marks_host(model_path, Path(tmp), layer_marks=True, **compile_args)
        else:
            res, totals = _marks_qemu(model_path, Path(tmp), target, layer_marks=True, **compile_args)
    skipped = res.plan.alias.skipped  # views and in-place concats: no kernel, no mark
    rows = [r for r in res.report["layers"] if r["name"] not in skipped]
    if len(totals) != len(rows) + 4:
        raise BuildError(f"{len(totals)} marks logged for {len(rows)} layers, expected {len(rows) + 4}")
    counts, marked = _layer_counts([t[0] for t in totals])
    cycles, marked_cycles = ([None] * len(rows), None) if totals[0][1] is None else \
        _layer_counts([t[1] for t in totals])
    return LayerBench(total, [LayerCount(r["name"], r["op"], r["kernel"], r["macs"], n, c)
                              for r, n, c in zip(rows, counts, cycles)], marked, marked_cycles)


def _layer_counts(totals: list[int]) -> tuple[list[int], int]:
    """(each layer's count, the marked run's total) from the running totals at the marks: two
    empty marks, then one before the first layer and one after each."""
    mark = totals[1] - totals[0]
    counts = [totals[i + 3] - totals[i + 2] - mark for i in range(len(totals) - 3)]
    return counts, totals[-1] - totals[2] - (len(totals) - 3) * mark


def layer_rows(lb: LayerBench) -> tuple[list[str], list[list]]:
    """(header, rows) of the per-layer table; the last two rows are the glue and the total of the
    marked build (the unmarked build's is lb.total)."""
    total = lb.marked

    def row(name, op, kernel, macs, n):
        per = f"{n / macs:.2f}" if macs else ""
        return [name, op, kernel, f"{macs:,}", f"{n:,}", per, f"{100 * n / total:.1f}"]

    head = ["layer", "op", "kernel", "MACs", "instructions", "instr/MAC", "% of total"]
    rows = [row(ellipsize(r.name, 40), r.op, r.kernel, r.macs, r.instructions) for r in lb.layers]
    if lb.layers and lb.layers[0].cycles is not None:  # the timing model's cycles per MAC
        head.append("cycles/MAC")
        for out, r in zip(rows, lb.layers):
            out.append(f"{r.cycles / r.macs:.2f}" if r.macs else "")
    rows.append(row("(glue: run() entry/exit, copies)", "", "", 0, lb.glue))
    rows.append(row("total (marked build)", "", "", lb.total.macs, total))
    for out in rows[len(lb.layers):]:
        out += [""] * (len(head) - len(out))
    if lb.marked_cycles is not None and lb.total.macs:
        rows[-1][-1] = f"{lb.marked_cycles / lb.total.macs:.2f}"
    return head, rows


def _run(cmd: list[str], what: str, timeout: float = QEMU_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} took longer than {timeout:g} s") from None
    if r.returncode != 0:
        raise BuildError(f"{what} failed (status {r.returncode}): {(r.stderr or r.stdout).strip()[-1500:]}")
    return r


def _host_exe(model_path, tmp: Path, **compile_args):
    """The test harness and the model built for the host with -DNNCC_BENCH: (compiled, exe)."""
    if shutil.which("valgrind") is None:
        raise BuildError("nncc bench --target host needs valgrind (apt-get install valgrind)")

    def extra(res, files):
        return {"main.c": main_c(res, files, default_samples(res.report["inputs"]), "host")[0]}

    res = compile_model(model_path, tmp / "proj", extra_files=extra, **compile_args)
    prefix, proj = res.report["model"], res.out_dir
    exe = tmp / "bench"
    _run([compiler(), "-O2", "-std=c99", "-ffp-contract=off", "-DNNCC_BENCH", str(proj / "main.c"),
          str(proj / f"{prefix}.c"), "-o", str(exe), "-lm"], "building the host benchmark")
    return res, exe


def _bench_host(model_path, tmp: Path, **compile_args) -> Bench:
    res, exe = _host_exe(model_path, tmp, **compile_args)
    prefix = res.report["model"]
    r = _run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp / 'callgrind.out'}",
              f"--toggle-collect={prefix}_run", str(exe)], "valgrind")
    m = re.search(r"Collected\s*:\s*(\d+)", r.stderr)
    if not m:
        raise BuildError(f"no instruction count in valgrind's output: {r.stderr[-500:]}")
    return Bench("host", int(m.group(1)), res.report["macs"], f"callgrind, {prefix}_run inclusive")


def _marks_host(model_path, tmp: Path, **compile_args):
    """(compiled, running instruction total at each nncc_bench_mark() call) under callgrind:
    one dump before each call, each holding the count since the previous one."""
    res, exe = _host_exe(model_path, tmp, **compile_args)
    out = tmp / "cg" / "callgrind.out"
    out.parent.mkdir()
    _run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
          "--dump-before=nncc_bench_mark", str(exe)], "valgrind")
    dumps = sorted(out.parent.glob("callgrind.out.*"), key=lambda p: int(p.suffix[1:]))
    running, totals = 0, []
    for d in dumps:
        m = re.search(r"^totals:\s*(\d+)", d.read_text(), re.MULTILINE)
        if not m:
            raise BuildError(f"no totals in {d.name}")
        running += int(m.group(1))
        totals.append((running, None))
    return res, totals


def _plugin(tmp: Path) -> Path:
    src = resource_dir("targets") / "common" / "qemu_plugin"
    so = tmp / "libinsn_marks.so"
    _run([compiler(), "-O2", "-shared", "-fPIC", str(src / "insn_marks.c"), str(src / "m4_timing.c"),
          "-o", str(so)], "building the QEMU plugin")
    return so


def _bench_qemu(model_path, tmp: Path, target: str, **compile_args) -> Bench:
    res, totals = _marks_qemu(model_path, tmp, target, **compile_args)
    if len(totals) < 4:
        raise BuildError(f"the QEMU plugin logged {len(totals)} marks, expected 4 (QEMU without "
                         "plugin API v1?)")
    insns, cycles = ((v[3] - v[2]) - (v[1] - v[0]) if v[0] is not None else None
                     for v in zip(*totals[:4]))
    t = load_target(target)
    return Bench(target, insns, res.report["macs"], f"QEMU {t.qemu['command'][2]} TCG plugin, exact",
                 cycles)


def _marks_qemu(model_path, tmp: Path, target: str, **compile_args):
    """(compiled, running (instructions, cycles or None) at each nncc_bench_mark() call) in QEMU."""
    t = load_target(target)
    res = compile_firmware(model_path, tmp / "proj", target, build_elf=False, check=False,
                           check_emulator=True, **compile_args)
    elf = build(res.out_dir, t, "EXTRA_CFLAGS=-DNNCC_BENCH")
    return res, qemu_marks(elf, t, tmp)


def qemu_marks(elf: Path, t, tmp: Path) -> list[tuple[int, int | None]]:
    """Run elf in QEMU under the plugin: (instructions, model cycles or None) at each
    nncc_bench_mark() call."""
    nm = re.sub(r"size$", "nm", t.size)
    syms = _run([nm, str(elf)], nm).stdout
    m = re.search(r"^([0-9a-f]+) T nncc_bench_mark$", syms, re.MULTILINE)
    if not m:
        raise BuildError(f"nncc_bench_mark not found in {elf.name}")
    addr = int(m.group(1), 16) & ~1  # Thumb symbols carry bit 0
    log = tmp / "marks.log"
    model = t.spec.get("timing_model")
    args = f"{_plugin(tmp)},mark={addr:#x}" + (f",timing={model}" if model else "")
    cmd = [*t.qemu["command"], *QEMU_FLAGS, "-plugin", args, "-d", "plugin", "-D", str(log),
           "-kernel", str(elf)]
    _run(cmd, f"QEMU ({t.name})")
    return [(int(n), int(c) if model else None)
            for n, c in re.findall(r"pc=0x[0-9a-f]+ total=(\d+) cycles=(\d+)", log.read_text())]
