"""The pipeline driver: ONNX file -> IR -> passes -> memory plan -> C project.

`nncc compile`, `analyze`, `validate` and the tests all go through `load()` and `compile_model()`
so they see the same graph.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from .codegen.cnames import model_prefix, sanitize
from .codegen.emit import BLOB_THRESHOLD, Emitter
from .errors import UsageError
from .frontend import import_onnx, load_model
from .ir import Graph
from .lower import choose_target_kernels
from .memory import MemoryPlan, plan_memory
from .passes import run_pipeline
from .report import build_report, precision

MANIFEST = ".nncc-files"  # what nncc wrote into DIR, so --force removes only that


@dataclass
class Compiled:
    graph: Graph
    plan: MemoryPlan
    report: dict
    out_dir: Path | None = None


def default_name(model_path: str | Path) -> str:
    name = sanitize(Path(model_path).stem).lower()
    # nncc* names belong to the runtime (nncc_runtime.h, NNCC_OK): see model_prefix().
    return name if name[0].isalpha() and not name.startswith("nncc") else "m_" + name


def load(model_path: str | Path, input_shapes: dict | None = None, opt_level: int = 2,
         name: str | None = None) -> Graph:
    model = load_model(model_path)
    g = import_onnx(model, name or default_name(model_path), input_shapes)
    return run_pipeline(g, opt_level)


def analyze(g: Graph, align: int = 4, target: str = "host") -> Compiled:
    plan = plan_memory(g, align)
    return Compiled(g, plan, build_report(g, plan, target, precision(g)))


def _manifest(out_dir: Path) -> set[str]:
    """Plain file names directly inside DIR that an earlier `nncc compile` wrote."""
    f = out_dir / MANIFEST
    if not f.is_file():
        return set()
    names = f.read_text(encoding="utf-8", errors="replace").splitlines()
    return {n for n in names if n and "/" not in n and "\\" not in n and n not in (".", "..")}


def prepare_out_dir(out_dir: Path, force: bool, names=()) -> None:
    """Make DIR ready for the files `names`. An existing DIR needs --force, and even then only
    what nncc listed in its manifest is removed; a user's file in the way stops us before
    anything is deleted. Never follows a path outside DIR."""
    if out_dir.exists() or out_dir.is_symlink():
        if not out_dir.is_dir():
            raise UsageError(f"{out_dir} exists and is not a directory")
        if not force:
            raise UsageError(f"{out_dir} exists; pass --force to overwrite the files nncc wrote there")
        ours = _manifest(out_dir) | {MANIFEST}
        clash = sorted(n for n in names if (out_dir / n).is_symlink() or (out_dir / n).exists()
                       and (n not in ours or not (out_dir / n).is_file()))
        if clash:
            raise UsageError(f"{out_dir}: {', '.join(clash)} not written by nncc; will not overwrite")
        for n in sorted(ours):
            f = out_dir / n
            if f.is_symlink() or f.is_file():  # unlinking a symlink never touches its target
                f.unlink()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create {out_dir}: {e.strerror or e}") from None


def compile_model(model_path: str | Path, out_dir: str | Path, name: str | None = None,
                  force: bool = False, input_shapes: dict | None = None, opt_level: int = 2,
                  align: int = 4, blob_threshold: int = BLOB_THRESHOLD, target: str = "host",
                  extra_files=None, quant=None, layer_marks: bool = False,
                  target_kernels=()) -> Compiled:
    """`extra_files(compiled, files) -> {name: bytes}` (nncc/firmware.py) adds or replaces files
    before anything is written; it may refuse the model by raising. `quant`
    (nncc.quant.quantize.QuantOptions) makes an int8 build. `layer_marks`: run() calls
    nncc_bench_mark() after every kernel (nncc/bench.py, per-layer counts; not for users).
    `target_kernels`: the kernels the target prefers (its target.json "kernels": nncc/lower.py)."""
    prefix = model_prefix(name) if name is not None else default_name(model_path)
    out_dir = Path(out_dir)
    g = load(model_path, input_shapes, opt_level, prefix)
    if quant is not None:  # nncc.quant.quantize.QuantOptions
        from .quant.quantize import quantize
        g = quantize(g, quant)
    choose_target_kernels(g, target_kernels)
    res = analyze(g, align, target)
    files = Emitter(g, res.plan, prefix, blob_threshold=blob_threshold,
                    layer_marks=layer_marks).render(res.report)
    if extra_files is not None:
        files.update(extra_files(res, files))
    files[MANIFEST] = "".join(f"{n}\n" for n in sorted(files)).encode("utf-8")
    prepare_out_dir(out_dir, force, list(files))
    try:
        for n, data in files.items():
            (out_dir / n).write_bytes(data)
    except OSError as e:
        raise UsageError(f"cannot write into {out_dir}: {e.strerror or e}") from None
    res.out_dir = out_dir
    return res


def read_report(out_dir: Path) -> dict:
    try:
        return json.loads((Path(out_dir) / "report.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"{out_dir} is not an nncc project (no readable report.json)") from None
