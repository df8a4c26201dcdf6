"""Helpers shared by the tests: build small ONNX models, compile them, run the C on the host
and compare with the numpy reference and onnxruntime."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from nncc.compiler import compile_model
from nncc.host import HostModel
from nncc.reference import run_reference
from nncc.validate import onnxruntime_outputs

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
MLPERF = FIXTURES / "mlperf_tiny"
# The input ranges the MLPerf Tiny models were trained on (tests/fixtures/mlperf_tiny/LICENSE.md)
MLPERF_RANGES = {"mlperf_kws_dscnn": (-123.0, 26.0), "mlperf_vww_mbv1_025": (0.0, 1.0),
                 "mlperf_ic_resnet8": (0.0, 255.0), "mlperf_ad_fcae": (-85.0, 15.0)}

CROSS = {
    "cortex-m4": ["arm-none-eabi-gcc", "-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard",
                  "-mfpu=fpv4-sp-d16", "-Os"],
    # gcc-riscv64-unknown-elf ships no libc: picolibc provides <math.h>.
    "rv32imac": ["riscv64-unknown-elf-gcc", "-march=rv32imac", "-mabi=ilp32", "-Os",
                 "--specs=picolibc.specs"],
}
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-ffp-contract=off"]


def make_model(nodes, inputs, outputs, initializers=(), opset=13, name="m") -> onnx.ModelProto:
    """inputs/outputs: [(name, shape)] float32; initializers: {name: ndarray}."""
    inits = [numpy_helper.from_array(np.asarray(v), k) for k, v in dict(initializers).items()]
    g = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8  # what onnxruntime accepts
    if any(s is None for _, s in outputs):  # let onnx fill in the output shapes
        inferred = onnx.shape_inference.infer_shapes(m, strict_mode=True)
        known = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.output)}
        for o in m.graph.output:
            if not o.type.tensor_type.HasField("shape") and o.name in known:
                o.CopyFrom(known[o.name])
    return m


def save(model: onnx.ModelProto, tmp_path: Path, name: str = "model.onnx") -> Path:
    p = Path(tmp_path) / name
    onnx.save(model, str(p))
    return p


def conv_relu(tmp_path: Path) -> Path:
    """A tiny Conv (pads, stride 2) + Relu model, the smoke test of many suites."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "W", "B"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Relu", ["c"], ["y"])]
    inits = {"W": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "B": rng.standard_normal(4).astype(np.float32)}
    return save(make_model(nodes, [("x", (1, 3, 9, 9))], [("y", None)], inits), tmp_path, "convrelu.onnx")


def random_inputs(report: dict, seed: int = 0, scale: float = 1.0) -> dict:
    rng = np.random.default_rng(seed)
    return {t["name"]: (scale * rng.standard_normal(t["shape"])).astype(np.float32)
            for t in report["inputs"]}


def model_input(path: Path) -> tuple[str, list[int]]:
    """Name and (static) shape of a model file's first input."""
    inp = onnx.load(str(path)).graph.input[0]
    return inp.name, [d.dim_value for d in inp.type.tensor_type.shape.dim]


def uniform_inputs(path: Path, n: int, seed: int, lo: float, hi: float) -> list[dict]:
    """n samples of a model's first input, uniform over [lo, hi), float32."""
    name, shape = model_input(path)
    rng = np.random.default_rng(seed)
    return [{name: rng.uniform(lo, hi, shape).astype(np.float32)} for _ in range(n)]


def mlperf_inputs(name: str, n: int, seed: int) -> list[dict]:
    """n uniform draws over an MLPerf Tiny model's documented input range (MLPERF_RANGES);
    `name`: the model file's stem."""
    return uniform_inputs(MLPERF / f"{name}.onnx", n, seed, *MLPERF_RANGES[name])


def run_c(model_path: Path, out_dir: Path, samples: list[dict] | None = None, **kw):
    """Compile, build with strict flags, run each sample -> (compiled, [outputs per sample])."""
    res = compile_model(model_path, out_dir, force=True, **kw)
    samples = samples or [random_inputs(res.report)]
    host = HostModel(res.out_dir, res.report)
    try:
        outs = [host.run(s) for s in samples]
    finally:
        host.close()
    return res, samples, outs


def check_model(model_path: Path, tmp_path: Path, samples: list[dict] | None = None,
                rtol: float = 1e-4, atol: float = 1e-5, ort: bool = True, **kw):
    """C == numpy reference == onnxruntime within tolerance, for every sample and output."""
    res, samples, outs = run_c(model_path, Path(tmp_path) / "proj", samples, **kw)
    for s, got in zip(samples, outs):
        oracles = {"reference": run_reference(res.graph, s)}
        if ort:
            o = onnxruntime_outputs(model_path, s)
            assert o is not None, "onnxruntime could not load the model"
            oracles["onnxruntime"] = o
        for oname, want in oracles.items():
            for t in res.report["outputs"]:
                np.testing.assert_allclose(got[t["name"]], want[t["name"]], rtol=rtol, atol=atol,
                                           err_msg=f"C vs {oname}, output {t['name']}")
    return res


def cross_compile(project: Path, target: str) -> None:
    """Compile the generated C for an MCU; the caller skips when the toolchain is missing."""
    cmd = CROSS[target]
    report = __import__("json").loads((project / "report.json").read_text())
    src = project / f"{report['model']}.c"
    r = subprocess.run([*cmd, *STRICT, "-c", str(src), "-o", str(project / f"{target}.o")], check=False,
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:3000]


def have(tool: str) -> bool:
    return shutil.which(tool) is not None
