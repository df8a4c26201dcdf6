"""Helpers of the model tests: inputs drawn from realistic ranges, and a per-layer trace that,
when a whole model disagrees with its oracles, finds the first layer whose output is wrong.

The compiled IR (after every pass, so fused kernels are traced as they run) is re-emitted with
every intermediate tensor promoted to a graph output; the C then writes each layer's result into
a caller buffer instead of the arena. Each tensor, in schedule order, is compared with the numpy
reference. When the C agrees with the reference everywhere, the reference of the unoptimised
graph (whose tensors still mean what their ONNX names say) is compared with onnxruntime layer by
layer, so a wrong `reference()` is told apart from a wrong template.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from nncc.codegen.emit import Emitter
from nncc.compiler import Compiled, analyze, compile_model, load, prepare_out_dir
from nncc.host import HostModel
from nncc.reference import run_reference
from nncc.validate import compare
from tests.util import check_model


def samples_for(path: Path, ranges, seed: int = 0) -> list[dict]:
    """One sample per (low, high) range, uniform in it, or standard normal when the range is None."""
    inp = onnx.load(str(path)).graph.input[0]
    shape = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    out = []
    for r in ranges:
        x = rng.standard_normal(shape) if r is None else rng.uniform(r[0], r[1], shape)
        out.append({inp.name: x.astype(np.float32)})
    return out


def check_model_traced(model_path: Path, tmp_path: Path, samples: list[dict], rtol: float = 1e-4,
                       atol: float = 1e-5, **kw):
    """tests.util.check_model; on a numeric mismatch the message starts with the first bad layer."""
    try:
        return check_model(model_path, tmp_path, samples, rtol=rtol, atol=atol, **kw)
    except AssertionError as e:
        where = locate(model_path, Path(tmp_path), samples, rtol, atol, **kw)
        raise AssertionError(f"{where}\n{e}") from None


def locate(model_path: Path, tmp_path: Path, samples: list[dict], rtol: float, atol: float,
           **kw) -> str:
    """A one-line diagnosis: the first layer that is wrong for the first sample that shows one.
    First the C against the reference on the compiled (optimised) graph, then the reference of
    the unoptimised graph against onnxruntime, where tensor names still mean what the file says."""
    try:
        res = compile_model(model_path, tmp_path / "trace_src", force=True, **kw)
        for i, s in enumerate(samples):
            bad = first_bad_layer(res, s, tmp_path / "trace", rtol, atol)
            if bad:
                return f"first bad layer (sample {i}): {bad}"
        for i, s in enumerate(samples):
            bad = reference_vs_onnxruntime(model_path, s, rtol, atol, kw.get("input_shapes"))
            if bad:
                return f"first bad layer (sample {i}): {bad}"
        return ("per-layer trace: the C matches the reference on every layer and the unoptimised "
                "reference matches onnxruntime: a graph pass changed the numbers?")
    except Exception as e:  # noqa: BLE001 -- a diagnostic must never hide the original failure
        return f"per-layer trace failed: {type(e).__name__}: {str(e)[:300]}"


def first_bad_layer(res: Compiled, sample: dict, out_dir: Path, rtol: float, atol: float) -> str | None:
    """C vs reference, layer by layer, on the graph as compiled (fused kernels included)."""
    g = res.graph.copy()
    g.outputs = list(g.outputs) + g.intermediates()
    traced = analyze(g)
    prepare_out_dir(out_dir, force=True)
    Emitter(g, traced.plan, g.name).write(out_dir, traced.report)
    host = HostModel(out_dir, traced.report)
    try:
        got = host.run(sample)
    finally:
        host.close()
    ref = run_reference(g, sample, keep_all=True)
    for n in g.nodes():
        for t in n.outputs:
            if t and t in got:
                m = compare(got[t], ref[t], rtol, atol)
                if not m.ok:
                    return (f"node {n.name!r} ({n.op}) output {t!r} {list(g.tensors[t].shape)}: C vs "
                            f"reference max abs err {m.max_abs:.3g}, max rel err {m.max_rel:.3g}, "
                            f"|ref| max {np.abs(ref[t]).max(initial=0):.3g}")
    return None


def reference_vs_onnxruntime(model_path: Path, sample: dict, rtol: float, atol: float,
                             input_shapes: dict | None = None) -> str | None:
    """The reference of the unoptimised graph vs onnxruntime, layer by layer."""
    g = load(model_path, input_shapes, opt_level=0)
    ref = run_reference(g, sample, keep_all=True)
    ort = _ort_all(model_path, sample)
    for n in g.nodes():
        for t in n.outputs:
            if t in ort and t in ref:
                m = compare(ref[t], ort[t], rtol, atol)
                if not m.ok:
                    return (f"node {n.name!r} ({n.op}) output {t!r}: reference vs onnxruntime max "
                            f"abs err {m.max_abs:.3g}, max rel err {m.max_rel:.3g} (reference() or "
                            f"onnxruntime is wrong)")
    return None


def _ort_all(model_path: Path, sample: dict) -> dict:
    """Every float node output of the ONNX model, computed by onnxruntime ({} if unavailable)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    model = onnx.load(str(model_path))
    # Only tensors onnx's shape inference knows to be float: declaring a wrong type fails the run.
    known = onnx.shape_inference.infer_shapes(model).graph.value_info
    have = {o.name for o in model.graph.output}
    for vi in known:
        if vi.name not in have and vi.type.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            model.graph.output.append(vi)
            have.add(vi.name)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    try:
        sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        return dict(zip(names, sess.run(None, sample)))
    except Exception:  # noqa: BLE001 -- onnxruntime rejects the extra outputs: no second oracle
        return {}
