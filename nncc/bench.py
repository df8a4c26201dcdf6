"""`nncc bench`: instructions executed per inference, and per MAC. On the host the project's test
harness (firmware/main.c.j2, which also builds with gcc) runs under valgrind's callgrind, which
counts the instructions inside NAME_run(). On an MCU target the test firmware is built with
-DNNCC_BENCH and runs in QEMU with a small TCG plugin (targets/common/qemu_plugin/insn_marks.c)
that logs the instruction total each time nncc_bench_mark() runs; the firmware calls it twice
empty (the cost of the calls) and then around the first inference. Both counts are exact and
deterministic; instructions are not cycles (no pipeline, cache or flash wait states)."""
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


@dataclass
class Bench:
    target: str
    instructions: int
    macs: int
    method: str

    @property
    def per_mac(self) -> float:
        return self.instructions / self.macs if self.macs else float("nan")


def bench(model_path, target: str = "host", **compile_args) -> Bench:
    with tempfile.TemporaryDirectory(prefix="nncc-bench-") as tmp:
        if target == "host":
            return _bench_host(model_path, Path(tmp), **compile_args)
        return _bench_qemu(model_path, Path(tmp), target, **compile_args)


def _run(cmd: list[str], what: str, timeout: float = QEMU_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        r = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BuildError(f"{what} took longer than {timeout:g} s") from None
    if r.returncode != 0:
        raise BuildError(f"{what} failed (status {r.returncode}): {(r.stderr or r.stdout).strip()[-1500:]}")
    return r


def _bench_host(model_path, tmp: Path, **compile_args) -> Bench:
    if shutil.which("valgrind") is None:
        raise BuildError("nncc bench --target host needs valgrind (apt-get install valgrind)")

    def extra(res, files):
        return {"main.c": main_c(res, files, default_samples(res.report["inputs"]), "host")[0]}

    res = compile_model(model_path, tmp / "proj", extra_files=extra, **compile_args)
    prefix, proj = res.report["model"], res.out_dir
    exe = tmp / "bench"
    _run([compiler(), "-O2", "-std=c99", "-ffp-contract=off", "-DNNCC_BENCH", str(proj / "main.c"),
          str(proj / f"{prefix}.c"), "-o", str(exe), "-lm"], "building the host benchmark")
    r = _run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp / 'callgrind.out'}",
              f"--toggle-collect={prefix}_run", str(exe)], "valgrind")
    m = re.search(r"Collected\s*:\s*(\d+)", r.stderr)
    if not m:
        raise BuildError(f"no instruction count in valgrind's output: {r.stderr[-500:]}")
    return Bench("host", int(m.group(1)), res.report["macs"], f"callgrind, {prefix}_run inclusive")


def _plugin(tmp: Path) -> Path:
    src = resource_dir("targets") / "common" / "qemu_plugin" / "insn_marks.c"
    so = tmp / "libinsn_marks.so"
    _run([compiler(), "-O2", "-shared", "-fPIC", str(src), "-o", str(so)], "building the QEMU plugin")
    return so


def _bench_qemu(model_path, tmp: Path, target: str, **compile_args) -> Bench:
    t = load_target(target)
    res = compile_firmware(model_path, tmp / "proj", target, build_elf=False, check=False,
                           check_emulator=True, **compile_args)
    elf = build(res.out_dir, t, "EXTRA_CFLAGS=-DNNCC_BENCH")
    nm = re.sub(r"size$", "nm", t.size)
    syms = _run([nm, str(elf)], nm).stdout
    m = re.search(r"^([0-9a-f]+) T nncc_bench_mark$", syms, re.MULTILINE)
    if not m:
        raise BuildError(f"nncc_bench_mark not found in {elf.name}")
    addr = int(m.group(1), 16) & ~1  # Thumb symbols carry bit 0
    log = tmp / "marks.log"
    cmd = [*t.qemu["command"], *QEMU_FLAGS, "-plugin", f"{_plugin(tmp)},mark={addr:#x}",
           "-d", "plugin", "-D", str(log), "-kernel", str(elf)]
    _run(cmd, f"QEMU ({target})")
    totals = [int(v) for v in re.findall(r"pc=0x[0-9a-f]+ total=(\d+)", log.read_text())]
    if len(totals) < 4:
        raise BuildError(f"the QEMU plugin logged {len(totals)} marks, expected 4 (QEMU without "
                         "plugin API v1?)")
    insns = (totals[3] - totals[2]) - (totals[1] - totals[0])
    return Bench(target, insns, res.report["macs"], f"QEMU {t.qemu['command'][2]} TCG plugin, exact")
