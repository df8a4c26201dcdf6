"""Helpers of the quantization tests: compile an int8 build, run the C on int8 inputs and
compare with the integer numpy reference (exactly) and with the float model (SQNR, cosine);
the small models' inputs and conv layers."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper

from nncc.codegen.emit import Emitter
from nncc.compiler import Compiled, analyze, compile_model, load
from nncc.host import HostModel
from nncc.quant import fixed_point as fp
from nncc.quant.int16 import qrange
from nncc.quant.quantize import QuantOptions, quantize
from nncc.reference import run_reference


def samples(shape, n: int, seed: int = 1) -> list[dict]:
    """n standard-normal samples of the input "x" of the small test models."""
    rng = np.random.default_rng(seed)
    return [{"x": rng.standard_normal(shape).astype(np.float32)} for _ in range(n)]


def conv(rng, name: str, x: str, y: str, w_shape, bias: bool = True, **attrs):
    """(Conv node, its initializers): weights `{name}_w` (and bias `{name}_b`) drawn from rng."""
    inits = {f"{name}_w": (rng.standard_normal(w_shape) * 0.4).astype(np.float32)}
    if bias:
        inits[f"{name}_b"] = (rng.standard_normal(w_shape[0]) * 0.2).astype(np.float32)
    return helper.make_node("Conv", [x, *inits], [y], **attrs), inits


def conv_chain(rng, layers, after=None, bias: bool = True) -> tuple[list, dict]:
    """Conv nodes and their initializers (conv()) of layers (name, input, output, weight shape,
    attributes[, bias]); after[name]: the nodes that follow that conv (an activation, an Add)."""
    nodes, inits = [], {}
    for name, x, y, ws, attrs, *b in layers:
        n, i = conv(rng, name, x, y, ws, b[0] if b else bias, **attrs)
        nodes += [n, *(after or {}).get(name, [])]
        inits.update(i)
    return nodes, inits


def quantize_inputs(report: dict, sample: dict) -> dict:
    return {t["name"]: fp.quantize_float(sample[t["name"]], t["scale"], t["zero_point"],
                                         *qrange(t["dtype"]), dtype=t["dtype"])
            for t in report["inputs"]}


def dequantize_outputs(report: dict, outs: dict) -> dict:
    return {t["name"]: (fp.dequantize(outs[t["name"]], t["scale"], t["zero_point"])
                        if "scale" in t else outs[t["name"]]) for t in report["outputs"]}


def sqnr_db(ref: np.ndarray, got: np.ndarray) -> float:
    ref, got = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    noise = np.sum((ref - got) ** 2)
    return float("inf") if noise == 0 else float(10 * np.log10(np.sum(ref ** 2) / noise))


def cosine(a, b) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))


def compile_graph(g, out_dir: Path, prefix: str) -> Compiled:
    """Emit a graph already in memory (for tests that edit the float graph first)."""
    res = analyze(g)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, data in Emitter(g, res.plan, prefix).render(res.report).items():
        (out_dir / name).write_bytes(data)
    res.out_dir = out_dir
    return res


def float_graph(model_path: Path, strip_softmax: bool = False):
    """The float IR after -O2; with strip_softmax, ending at the logits (the final Softmax
    runs in float in int8 builds, so only the stripped graph is integer end to end)."""
    g = load(model_path, name="m")
    last = g.producer(g.outputs[0])
    if strip_softmax and last.op == "Softmax":
        g.remove_node(last)
        g.outputs = [last.inputs[0]]
    return g


def build(model_path: Path, out_dir: Path, calib: list[dict], scaling: str = "fixed",
          strip_softmax: bool = False, **kw) -> Compiled:
    opts = QuantOptions(samples=calib, scaling=scaling, **kw)
    if not strip_softmax:
        return compile_model(model_path, out_dir, force=True, quant=opts)
    return compile_graph(quantize(float_graph(model_path, True), opts), out_dir, "m")


def check_exact(res: Compiled, samples: list[dict]) -> list[dict]:
    """C == integer reference bit for bit on every sample -> the C outputs, dequantized."""
    host = HostModel(res.out_dir, res.report)
    got_all = []
    try:
        for s in samples:
            q = quantize_inputs(res.report, s)
            got = host.run(q)
            want = run_reference(res.graph, q)
            for t in res.report["outputs"]:
                if t["dtype"] == "float32":  # the float Softmax tail: float tolerance
                    np.testing.assert_allclose(got[t["name"]], want[t["name"]], rtol=1e-5, atol=1e-6)
                else:
                    np.testing.assert_array_equal(got[t["name"]], want[t["name"]], err_msg=t["name"])
            got_all.append(dequantize_outputs(res.report, got))
    finally:
        host.close()
    return got_all


def accuracy(model_path: Path, res: Compiled, samples: list[dict], outs: list[dict],
             strip_softmax: bool = False) -> dict:
    """Output SQNR (dB, over all samples) and mean cosine of the int8 build vs the float model."""
    g = float_graph(model_path, strip_softmax)
    name = res.report["outputs"][0]["name"]
    ref = [run_reference(g, s)[g.outputs[0]] for s in samples]
    got = [o[name] for o in outs]
    return {"sqnr_db": sqnr_db(np.stack(ref), np.stack(got)),
            "cosine": float(np.mean([cosine(r, o) for r, o in zip(ref, got)]))}


def c_driver(tmp_dir: Path, source: Path, cdef: str):
    """(ffi, lib): a C test driver over runtime_c/ built as a shared library with the strict
    flags. Close with ffi.dlclose(lib)."""
    import subprocess

    import cffi

    from nncc.host import compiler
    from tests.util import ROOT, STRICT
    so = tmp_dir / f"lib{source.stem}.so"
    cmd = [compiler(), *STRICT, "-O2", "-shared", "-fPIC", f"-I{ROOT / 'runtime_c'}",
           str(source), "-o", str(so), "-lm"]
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    return ffi, ffi.dlopen(str(so))


def min_scratch(g, node) -> int:
    """The least scratch the shared kernel path of a QConv node uses, from its shapes: group 1
    ("mm"): a pixel quad's windows widened to int16 (kc taps up to a multiple of 4, 8 bytes a
    tap) and the int32 sums of a block of up to 8 channels at 4 pixels (an odd block's last
    channel paired with a zero row); the 3x3 depthwise kernel: a row's sums (up to 44) and a
    spare one, three padded input rows and 4 spare bytes; 0 for the others."""
    x, w, y = (g.tensors[t] for t in (node.inputs[0], node.inputs[1], node.outputs[0]))
    c, m, group = x.shape[1], w.shape[0], int(node.attrs.get("group", 1))
    taps = w.shape[2:]
    strides = tuple(node.attrs.get("strides") or (1,) * len(taps))
    if group == 1:
        kc4 = (c * int(np.prod(taps)) + 3) // 4 * 4
        block = min(m, 8)
        return 8 * kc4 + 4 * (4 * block + 4 * (block % 2)) if kc4 <= 576 else 0
    if group == c == m and tuple(taps) == (3, 3):
        ow = y.shape[3]
        return 4 * (min(ow, 44) + 1) + 3 * ((ow - 1) * strides[1] + 3) + 4
    return 0
