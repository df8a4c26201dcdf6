"""MCU targets: turn a compiled model into a test firmware project, build it with the target's
cross compiler, run it in QEMU and read its sizes.

`nncc compile MODEL --target cortex-m4 -o DIR` writes the same portable model C as for the host,
plus the target's startup code and linker scripts (targets/common/<family>/, targets/<name>/), a
main.c holding embedded test inputs and the outputs the host build of the same C computed for
them, and a Makefile (`make`, `make run`, `make size`, `make flash`). Float results match the
host bit for bit because both sides build with -ffp-contract=off; an int8 build (--quantize int8)
embeds int8 input codes and matches exactly too, its optional final float Softmax included. A
model whose arena or weights exceed the RAM or flash of the real board a target stands for is
refused before anything is written. Each target is described by targets/<name>/target.json (see targets/README.md).
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .codegen.cnames import comment_text
from .codegen.env import make_env
from .compiler import Compiled, compile_model
from .errors import BuildError, DoesNotFit, UsageError
from .resources import resource_dir

QEMU_TIMEOUT = 300  # seconds; soft-float RISC-V runs the MLPerf Tiny models in a few seconds
# Semihosting console on a stdio chardev: program output on QEMU's stdout, exit status passed on.
QEMU_FLAGS = ["-nographic", "-monitor", "none", "-serial", "null", "-chardev", "stdio,id=sh0",
              "-semihosting-config", "enable=on,target=native,chardev=sh0"]


@dataclass
class Target:
    name: str
    dir: Path
    spec: dict

    def __getattr__(self, key):  # target.json keys read as attributes: t.cc, t.board, ...
        try:
            return self.__dict__["spec"][key]
        except KeyError:
            raise AttributeError(key) from None

    def common_dir(self) -> Path:
        return self.dir.parent / "common" / self.spec["common"]

    def tools(self) -> list[str]:
        return [self.spec["cc"], self.spec["size"], self.spec["qemu"]["command"][0]]

    def missing_tools(self) -> list[str]:
        return [t for t in self.tools() if shutil.which(t) is None]


def target_names() -> list[str]:
    root = resource_dir("targets")
    return sorted(p.parent.name for p in root.glob("*/target.json"))


def load_target(name: str) -> Target:
    path = resource_dir("targets") / name / "target.json"
    if name in ("", ".", "..", "common") or "/" in name or not path.is_file():
        raise UsageError(f"--target {name}: unknown target; available: host, {', '.join(target_names())}")
    return Target(name, path.parent, json.loads(path.read_text()))


def check_fit(report: dict, t: Target, emulator: bool = False) -> None:
    """Refuses a model whose arena (plus the stack) or weights exceed the real board, or with
    `emulator`, the machine QEMU emulates."""
    mem = t.qemu if emulator else t.board
    where = f"the QEMU {t.qemu['command'][2]} machine" if emulator else f"the {t.board['name']}"
    ram = report["arena_bytes"] + t.stack_bytes
    if ram > mem["ram_bytes"]:
        raise DoesNotFit(f"model {report['model']} needs {ram:,} B of RAM (arena {report['arena_bytes']:,} B "
                         f"+ stack {t.stack_bytes:,} B) but {where} ({t.name}) has "
                         f"{mem['ram_bytes']:,} B")
    if report["weights_bytes"] > mem["flash_bytes"]:
        raise DoesNotFit(f"model {report['model']} has {report['weights_bytes']:,} B of weights but "
                         f"{where} ({t.name}) has {mem['flash_bytes']:,} B of flash")


def default_samples(inputs: list[dict], n: int = 1, seed: int = 0) -> list[dict]:
    """Seeded test inputs in the project's own types: standard normal floats; for an int8 input,
    codes drawn uniformly over [-128, 127], which is exactly the calibrated input range."""
    rng = np.random.default_rng(seed)
    from .quant.int16 import RANGES
    return [{t["name"]: rng.integers(RANGES[t["dtype"]][0], RANGES[t["dtype"]][1] + 1,
                                     t["shape"]).astype(t["dtype"]) if t["dtype"] in RANGES
             else rng.standard_normal(t["shape"]).astype(np.float32) for t in inputs}
            for _ in range(n)]


def project_samples(report: dict, samples: list[dict] | None, n: int = 1) -> list[dict]:
    """The inputs the firmware embeds: `samples` (float data; quantized with the project's input
    scales when the input is int8, unless already int8), or default_samples()."""
    if samples is None:
        return default_samples(report["inputs"], n)
    from .quant.fixed_point import quantize_float
    from .quant.int16 import RANGES
    out = []
    for s in samples:
        one = {}
        for t in report["inputs"]:
            a = np.asarray(s[t["name"]])
            if t["dtype"] in RANGES and a.dtype != np.dtype(t["dtype"]):
                a = quantize_float(a.astype(np.float32), t["scale"], t["zero_point"],
                                   *RANGES[t["dtype"]], dtype=t["dtype"])
            one[t["name"]] = np.asarray(a, t["dtype"]).reshape(t["shape"])
        out.append(one)
    return out


def host_outputs(files: dict[str, bytes], report: dict, samples: list[dict]) -> list[dict]:
    """Runs the rendered (not yet written) project on the host: the expected outputs."""
    from .host import HostModel
    with tempfile.TemporaryDirectory(prefix="nncc-fw-host-") as tmp:
        for n, data in files.items():
            (Path(tmp) / n).write_bytes(data)
        host = HostModel(tmp, report)
        try:
            return [host.run(s) for s in samples]
        finally:
            host.close()


def main_c(res: Compiled, files: dict[str, bytes], samples: list[dict], target: str) -> tuple[bytes, int]:
    """The test harness main.c with `samples` and their host outputs embedded, and the bytes of
    those test vectors. It also builds on the host (stdio instead of semihosting), for `nncc bench`."""
    report = res.report
    bad = [io for io in report["inputs"] + report["outputs"] if io["dtype"] not in ("float32", "int8")]
    if bad:
        raise UsageError(f"the test firmware (--target, nncc bench) handles float32 and int8 inputs and "
                         f"outputs, not {bad[0]['dtype']} ({bad[0]['name']!r})")
    expected = host_outputs(files, report, samples)
    env = make_env()
    env.filters["comment"] = comment_text
    ios = [{**io, "size": int(np.prod(io["shape"]))} for io in report["inputs"] + report["outputs"]]
    ins, outs = ios[:len(report["inputs"])], ios[len(report["inputs"]):]
    embedded = [{"inputs": [np.asarray(s[io["name"]], io["dtype"]) for io in ins],
                 "outputs": [e[io["name"]] for io in outs]} for s, e in zip(samples, expected)]
    text = env.get_template("firmware/main.c.j2").render(
        model=report["model"], prefix=report["model"], target=target, inputs=ins, outputs=outs,
        samples=embedded, int8=any(io["dtype"] == "int8" for io in ins),  # int8 codes embedded
        has_float=any(io["dtype"] == "float32" for io in outs),
        has_int8=any(io["dtype"] == "int8" for io in outs))
    return text.encode(), sum(a.nbytes for s in embedded for a in s["inputs"] + s["outputs"])


def firmware_files(res: Compiled, files: dict[str, bytes], t: Target, samples: list[dict]) -> dict:
    """main.c, Makefile, startup code and linker scripts of the test firmware."""
    report = res.report
    prefix = report["model"]
    common = sorted(p for p in t.common_dir().iterdir() if p.is_file())
    own = [t.dir / t.qemu["linker_script"], t.dir / t.board["linker_script"]]
    out = {p.name: p.read_bytes() for p in [*common, t.dir.parent / "common" / "semihost.h"]}
    out["qemu.ld"], out["board.ld"] = (p.read_bytes() for p in own)
    out["main.c"], test_bytes = main_c(res, files, samples, t.name)
    startup = [p.name for p in common if p.suffix in (".c", ".S")]
    flash = t.board["flash_command"].format(elf=f"{prefix}_board.elf", name=prefix)
    env = make_env()
    out["Makefile"] = env.get_template("firmware/Makefile.j2").render(
        model=report["model"], prefix=prefix, t=t, machine=" ".join(t.qemu["command"][1:]),
        startup=startup, qemu=t.qemu["command"], qemu_flags=QEMU_FLAGS, flash_command=flash).encode()
    report["board"] = {k: t.board[k] for k in ("name", "mcu", "flash_bytes", "ram_bytes")}
    report["test_samples"] = len(samples)
    report["test_data_bytes"] = test_bytes
    out["report.json"] = (json.dumps(report, indent=2) + "\n").encode()
    return out


def _make(project: Path, goal: str | None, timeout: float, *args: str) -> subprocess.CompletedProcess:
    cmd = ["make", "-s", "-C", str(project), *args] + ([goal] if goal else [])
    try:
        return subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise BuildError(f"`make {goal or ''}` in {project} took longer than {timeout:g} s") from None


def build(project: Path, t: Target, *make_args: str) -> Path:
    """Builds NAME.elf (the QEMU image) with the project's own Makefile."""
    missing = t.missing_tools()
    if missing:
        raise BuildError(f"target {t.name} needs {', '.join(missing)}: apt-get install "
                         f"--no-install-recommends {' '.join(t.apt)}")
    r = _make(project, None, 600, *make_args)
    if r.returncode != 0:
        raise BuildError(f"building the {t.name} firmware in {project} failed: {r.stderr.strip()[-2000:]}")
    report = json.loads((project / "report.json").read_text())
    return project / f"{report['model']}.elf"


def elf_sizes(elf: Path, t: Target) -> dict:
    """Berkeley sizes: text (code + rodata), data, bss (bss includes the reserved .stack)."""
    r = subprocess.run([t.size, "-B", str(elf)], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        raise BuildError(f"{t.size} failed on {elf}: {r.stderr.strip()}")
    text, data, bss = (int(v) for v in r.stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss}


def add_sizes(project: Path, elf: Path, t: Target) -> dict:
    """Adds flash_bytes, ram_bytes and code_bytes of the built ELF to report.json."""
    path = project / "report.json"
    report = json.loads(path.read_text())
    s = elf_sizes(elf, t)
    report["flash_bytes"] = s["text"] + s["data"]
    report["ram_bytes"] = s["data"] + s["bss"]
    # What remains besides the model's weights and the embedded test vectors: kernels, startup,
    # the test harness and the libc/libgcc pieces they pull in.
    report["code_bytes"] = report["flash_bytes"] - report["weights_bytes"] - report["test_data_bytes"]
    report["stack_bytes"] = t.stack_bytes
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report


@dataclass
class RunResult:
    status: int
    stdout: str
    outputs: list[dict]  # per sample: {output name: array}


def run(project: Path, report: dict, timeout: float = QEMU_TIMEOUT) -> RunResult:
    """`make run`: the firmware in QEMU; parses the raw output bits it prints."""
    r = _make(project, "run", timeout + 30)
    return RunResult(r.returncode, r.stdout, parse_outputs(r.stdout, report))


_OUT = re.compile(r"^@out (\d+) (\d+) (\d+)((?: [0-9a-f]{8})+)$")


def parse_outputs(text: str, report: dict) -> list[dict]:
    words: dict[tuple[int, int], dict[int, list[int]]] = {}
    for ln in text.splitlines():
        m = _OUT.match(ln.strip())
        if m:
            s, j, i = (int(v) for v in m.groups()[:3])
            words.setdefault((s, j), {})[i] = [int(w, 16) for w in m.group(4).split()]
    n = 1 + max((s for s, _ in words), default=-1)
    outs = []
    for s in range(n):
        got = {}
        for j, io in enumerate(report["outputs"]):
            chunks = words.get((s, j), {})
            flat = [w for i in sorted(chunks) for w in chunks[i]]
            if len(flat) != int(np.prod(io["shape"])):
                got[io["name"]] = None
                continue
            words32 = np.array(flat, np.uint32)  # int8 values come sign-extended
            vals = words32.view(np.int32).astype(np.int8) if io["dtype"] == "int8" else words32.view(np.float32)
            got[io["name"]] = vals.reshape(io["shape"])
        outs.append(got)
    return outs


def compile_firmware(model_path, out_dir, target: str, samples: list[dict] | None = None,
                     build_elf: bool = True, check: bool = True, n_samples: int = 1,
                     check_emulator: bool = False, **compile_args) -> Compiled:
    """`nncc compile --target`: the project, and (when the toolchain is installed) its ELF and sizes.
    `check_emulator`: also refuse what will not fit the QEMU machine (to run it there)."""
    t = load_target(target)

    def extra(res: Compiled, files: dict[str, bytes]) -> dict:
        if check:
            check_fit(res.report, t)
        if check_emulator:
            check_fit(res.report, t, emulator=True)
        embedded.extend(project_samples(res.report, samples, n_samples))
        return firmware_files(res, files, t, embedded)

    embedded: list[dict] = []
    res = compile_model(model_path, out_dir, target=t.name, extra_files=extra,
                        target_kernels=tuple(t.spec.get("kernels", ())), **compile_args)
    res.test_samples = embedded  # the inputs main.c embeds, in the project's input types
    if build_elf and not t.missing_tools():
        res.report = add_sizes(res.out_dir, build(res.out_dir, t), t)
    return res


def run_on_target(model_path, samples: list[dict] | None, target: str, project: Path,
                  make_args: tuple[str, ...] = (), guard: bool = False,
                  **compile_args) -> tuple[Compiled, list[dict], RunResult]:
    """Compiles with `samples` embedded, builds (`make_args`: e.g. EXTRA_CFLAGS=...; `guard`:
    with NNCC_GUARD, templates/model.c.j2, where the QEMU machine has room for the arena's
    copy), runs in QEMU: (compiled, samples, run result)."""
    t = load_target(target)
    n = 3  # as many seeded random samples as the host's `nncc validate`
    res = compile_firmware(model_path, project, target, samples, build_elf=False, check=False,
                           n_samples=n, check_emulator=True, **compile_args)
    if guard and 2 * res.report["arena_bytes"] + t.stack_bytes <= t.qemu["ram_bytes"]:
        make_args = (*make_args, "EXTRA_CFLAGS=-DNNCC_GUARD")
    build(res.out_dir, t, *make_args)
    res.report = add_sizes(res.out_dir, res.out_dir / f"{res.report['model']}.elf", t)
    return res, res.test_samples, run(res.out_dir, res.report)


def summary(res: Compiled) -> str:
    """The line `nncc compile --target` prints after the usual one."""
    r, b = res.report, res.report["board"]
    head = f"target {r['target']} ({b['name']}: flash {b['flash_bytes']:,} B, RAM {b['ram_bytes']:,} B): "
    if "flash_bytes" not in r:
        missing = ", ".join(load_target(r["target"]).missing_tools())
        return head + f"ELF not built ({missing} not installed); `make -C {res.out_dir}` builds it"
    return head + (f"ELF flash {r['flash_bytes']:,} B (code {r['code_bytes']:,} B, weights "
                   f"{r['weights_bytes']:,} B, test data {r['test_data_bytes']:,} B), "
                   f"RAM {r['ram_bytes']:,} B "
                   f"(stack {r['stack_bytes']:,} B); `make -C {res.out_dir} run` runs it in QEMU")


# the firmware's line when run() returned an error (templates/firmware/main.c.j2, NNCC_GUARD)
RUN_ERROR = re.compile(r"_run returned an error: (\d+)")


def validate_on_target(model_path, samples, rtol: float, atol: float, use_ort: bool, target: str,
                       **compile_args):
    """`nncc validate --target`: the outputs from QEMU against the host build of the same C (must
    be equal bit for bit), the numpy reference and onnxruntime (within rtol/atol; for an int8
    build the integer reference, exactly, and no onnxruntime)."""
    from .validate import Validation, oracle_rows
    with tempfile.TemporaryDirectory(prefix="nncc-validate-") as tmp:
        res, samples, rr = run_on_target(model_path, samples, target, Path(tmp) / "proj", guard=True,
                                         **compile_args)
        from .host import HostModel, guard_failure
        err = RUN_ERROR.search(rr.stdout)
        failure = guard_failure(int(err.group(1))) if err else None
        if failure:
            raise BuildError(f"on {target}, {failure}")
        if " wrote past output " in rr.stdout:
            raise BuildError(f"on {target}, the model wrote past an output buffer (NNCC_GUARD)")
        host = HostModel(res.out_dir, res.report)
        try:
            expected = [host.run(s) for s in samples]
        finally:
            host.close()
    if len(rr.outputs) != len(samples):
        tail = "\n".join(rr.stdout.splitlines()[-5:])
        raise BuildError(f"the {target} firmware exited with status {rr.status} before printing "
                         f"all outputs: {tail}")
    rows = []
    for i, (s, got) in enumerate(zip(samples, rr.outputs)):
        rows += oracle_rows(i, res, model_path, s, got, rtol, atol, use_ort,
                            {"host C (exact)": (expected[i], 0.0, 0.0)})
    return Validation(rows, all(r[3].ok for r in rows) and rr.status == 0, res, samples, rr.outputs)
