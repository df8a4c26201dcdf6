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
from .memory import MemoryPlan, plan_memory
from .passes import run_pipeline
from .report import build_report

MANIFEST = ".nncc-files"  # what nncc wrote into DIR, so --force removes only that


@dataclass
class Compiled:
    graph: Graph
    plan: MemoryPlan
    report: dict
    out_dir: Path | None = None


def default_name(model_path: str | Path) -> str:
    name = sanitize(Path(model_path).stem).lower()
    return name if name[0].isalpha() else "m_" + name


def load(model_path: str | Path, input_shapes: dict | None = None, opt_level: int = 2,
         name: str | None = None) -> Graph:
    model = load_model(model_path)
    g = import_onnx(model, name or default_name(model_path), input_shapes)
    return run_pipeline(g, opt_level)


def analyze(g: Graph, align: int = 4, target: str = "host") -> Compiled:
    plan = plan_memory(g, align)
    return Compiled(g, plan, build_report(g, plan, target))


def prepare_out_dir(out_dir: Path, force: bool) -> None:
    if out_dir.exists():
        if not force:
            raise UsageError(f"{out_dir} exists; pass --force to overwrite the files nncc wrote there")
        if not out_dir.is_dir():
            raise UsageError(f"{out_dir} exists and is not a directory")
        manifest = out_dir / MANIFEST
        if manifest.is_file():
            for line in manifest.read_text().splitlines():
                f = out_dir / line
                # Only plain files directly inside DIR that nncc listed: never anything outside.
                if line and "/" not in line and line not in ("..", ".") and f.is_file():
                    f.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def compile_model(model_path: str | Path, out_dir: str | Path, name: str | None = None,
                  force: bool = False, input_shapes: dict | None = None, opt_level: int = 2,
                  align: int = 4, blob_threshold: int = BLOB_THRESHOLD) -> Compiled:
    prefix = model_prefix(name) if name else default_name(model_path)
    out_dir = Path(out_dir)
    g = load(model_path, input_shapes, opt_level, prefix)
    res = analyze(g, align)
    prepare_out_dir(out_dir, force)
    files = Emitter(g, res.plan, prefix, blob_threshold=blob_threshold).write(out_dir, res.report)
    (out_dir / MANIFEST).write_text("".join(f"{f.name}\n" for f in sorted(files)))
    res.out_dir = out_dir
    return res


def read_report(out_dir: Path) -> dict:
    try:
        return json.loads((Path(out_dir) / "report.json").read_text())
    except (OSError, ValueError):
        raise UsageError(f"{out_dir} is not an nncc project (no readable report.json)") from None
