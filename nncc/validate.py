"""Verification: run the compiled C on the host and compare it with the numpy reference (and
onnxruntime when installed). Shared by `nncc validate` and the tests."""
from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .compiler import Compiled, compile_model
from .host import HostModel
from .reference import run_reference


@dataclass
class Metrics:
    max_abs: float
    max_rel: float
    cosine: float
    ok: bool

    def row(self) -> list:
        return [f"{self.max_abs:.3g}", f"{self.max_rel:.3g}", f"{self.cosine:.9f}",
                "pass" if self.ok else "FAIL"]


def compare(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> Metrics:
    got = np.asarray(got, np.float64).ravel()
    want = np.asarray(want, np.float64).ravel()
    if got.shape != want.shape:
        return Metrics(np.inf, np.inf, 0.0, False)
    diff = np.abs(got - want)
    max_abs = float(diff.max(initial=0.0))
    max_rel = float((diff / np.maximum(np.abs(want), 1e-30)).max(initial=0.0))
    denom = np.linalg.norm(got) * np.linalg.norm(want)
    cosine = float(got @ want / denom) if denom > 0 else float(np.array_equal(got, want))
    ok = bool(np.all(diff <= atol + rtol * np.abs(want)) and np.all(np.isfinite(got) == np.isfinite(want)))
    return Metrics(max_abs, max_rel, cosine, ok)


def table_rows(rows: list, most: int = 8) -> list[list]:
    """The rows `nncc validate` prints, from Validation.rows (sample, output, oracle, Metrics):
    all of them for a few samples; for more, every (output, oracle) pair's worst sample (largest
    max abs error) and the failing ones, at most `most` of those, so a 1000-sample run stays
    readable."""
    samples = {r[0] for r in rows}
    if len(samples) <= most:
        return [[s, o, ref, *m.row()] for s, o, ref, m in rows]
    worst: dict = {}
    for r in rows:
        key = (r[1], r[2])
        if key not in worst or r[3].max_abs > worst[key][3].max_abs:
            worst[key] = r
    tops = list(worst.values())
    failing = [r for r in rows if not r[3].ok and r not in tops][:most]
    return ([[f"worst of {len(samples)}", o, ref, *m.row()] for _, o, ref, m in tops]
            + [[s, o, ref, *m.row()] for s, o, ref, m in failing])


def random_samples(inputs: list[dict], n: int = 3, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{t["name"]: rng.standard_normal(t["shape"]).astype(np.float32) for t in inputs}
            for _ in range(n)]


def onnxruntime_outputs(model_path: str | Path, sample: dict) -> dict | None:
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(str(model_path), opts, providers=["CPUExecutionProvider"])
    except Exception:  # noqa: BLE001  # a model onnxruntime cannot load (IR version, op) has no second oracle
        return None
    names = [o.name for o in sess.get_outputs()]
    return dict(zip(names, sess.run(None, sample)))


@dataclass
class Validation:
    rows: list  # [sample, output, oracle, Metrics]
    ok: bool
    compiled: Compiled | None = None  # the build that ran (graph, report; its out_dir is gone)
    samples: list | None = None       # the inputs it ran on, in its own types (int8 codes)
    outputs: list | None = None       # its outputs, one dict per sample


def oracle_rows(i: int, res, model_path, sample: dict, got: dict, rtol: float, atol: float,
                use_ort: bool, extra: dict | None = None) -> list:
    """Rows [sample, output, oracle, Metrics] of one sample's outputs against the oracles: `extra`
    ({name: (outputs, rtol, atol)}), the numpy reference and onnxruntime. In an int8 build the
    reference is the integer one and int8 outputs must equal it exactly (a float Softmax tail
    within rtol/atol); onnxruntime runs the float model, no oracle for int8 codes."""
    int8 = res.report.get("precision") not in (None, "float32")  # int8, int16, mixed
    oracles = dict(extra or {})
    oracles["reference (integer)" if int8 else "reference"] = (run_reference(res.graph, sample), rtol, atol)
    ort_out = onnxruntime_outputs(model_path, sample) if use_ort and not int8 else None
    if ort_out is not None:
        oracles["onnxruntime"] = (ort_out, rtol, atol)
    rows = []
    for oname, (want, rt, at) in oracles.items():
        for t in res.report["outputs"]:
            r, a = (0.0, 0.0) if t["dtype"] in ("int8", "int16") else (rt, at)
            g = got[t["name"]]
            m = compare(g, want[t["name"]], r, a) if g is not None else Metrics(np.inf, np.inf, 0.0, False)
            rows.append([i, t["name"], oname, m])
    return rows


def validate(model_path: str | Path, samples: list[dict] | None = None, rtol: float = 1e-4,
             atol: float = 1e-5, use_ort: bool = True, target: str = "host", **compile_args) -> Validation:
    """Host: compile, run the C through cffi, compare (oracle_rows). int8 builds (compile_args
    quant=...) run on int8 codes: `samples` quantized with the input scales, or random codes."""
    if target != "host":  # build the test firmware, run it in QEMU
        from .firmware import validate_on_target
        return validate_on_target(model_path, samples, rtol, atol, use_ort, target, **compile_args)
    from .firmware import project_samples
    with tempfile.TemporaryDirectory(prefix="nncc-validate-") as tmp:
        res = compile_model(model_path, Path(tmp) / "proj", **compile_args)
        host = HostModel(res.out_dir, res.report)
        try:
            samples = project_samples(res.report, samples, 3)
            rows, outputs = [], [host.run(s) for s in samples]
            for i, (s, got) in enumerate(zip(samples, outputs)):
                rows += oracle_rows(i, res, model_path, s, got, rtol, atol, use_ort)
        finally:
            host.close()
    return Validation(rows, all(r[3].ok for r in rows), res, samples, outputs)
