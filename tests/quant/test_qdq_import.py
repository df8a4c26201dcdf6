"""Import of already-quantized ONNX models (nncc/quant/import_qdq.py): models quantized by
onnxruntime's quantize_static (QDQ and QOperator formats, per-channel int8 weights, int8 and
uint8 activations) compile onto the integer kernels; the C equals the integer reference bit for
bit and agrees with onnxruntime running the quantized model within one quantization step."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

from nncc.compiler import compile_model
from nncc.errors import UnsupportedOp
from nncc.host import HostModel
from nncc.quant.quantize import host_codec
from nncc.reference import run_reference
from tests.util import MLPERF, make_model, save

INT_OPS = {"QConv", "QGemm", "QAdd", "QMaxPool", "QAveragePool", "QView"}


class Reader(CalibrationDataReader):
    def __init__(self, name, samples):
        self.it = iter([{name: s} for s in samples])

    def get_next(self):
        return next(self.it, None)


def rand(rng, *shape, scale=0.3):
    return (scale * rng.standard_normal(shape)).astype(np.float32)


def cnn(rng, gemm: bool, window: int = 3):
    """Conv -> Relu -> 1x1 Conv, residual Add, MaxPool, AveragePool, Flatten, Gemm / MatMul."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Conv", ["r", "w2"], ["c2"]),
             helper.make_node("Add", ["r", "c2"], ["a"]),
             helper.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2])]
    if gemm:
        # An odd window: with an even one, the mean's ties are decided by float noise in ORT's
        # QLinearAveragePool (not by a rounding rule), which can add a step downstream.
        nodes += [helper.make_node("AveragePool", ["p"], ["p2"], kernel_shape=[window] * 2,
                                   strides=[4 - window] * 2),
                  helper.make_node("Flatten", ["p2"], ["f"]),
                  helper.make_node("Gemm", ["f", "g"], ["y"], transB=1)]
        g = rand(rng, 5, 16)
    else:  # QOperator: com.microsoft QLinearAveragePool / QGemm are not imported
        nodes += [helper.make_node("Flatten", ["p"], ["f"]),
                  helper.make_node("MatMul", ["f", "g"], ["y"])]
        g = rand(rng, 64, 5)
    inits = {"w": rand(rng, 4, 3, 3, 3), "b": rand(rng, 4, scale=0.1), "w2": rand(rng, 4, 4, 1, 1),
             "g": g}
    return make_model(nodes, [("x", (1, 3, 8, 8))], [("y", (1, 5))], inits)


def clip_net(rng):
    """Conv -> Clip(0, 6) (ReLU6 as a clamp), Gemm with its bias, a standalone Relu."""
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], strides=[2, 2]),
             helper.make_node("Clip", ["c", "lo", "hi"], ["r"]),
             helper.make_node("GlobalAveragePool", ["r"], ["p"]),
             helper.make_node("Flatten", ["p"], ["f"]),
             helper.make_node("Gemm", ["f", "g", "gb"], ["y"], transB=1)]
    inits = {"w": rand(rng, 6, 3, 3, 3, scale=1.0), "b": rand(rng, 6), "lo": np.float32(0),
             "hi": np.float32(6), "g": rand(rng, 4, 6), "gb": rand(rng, 4)}
    return make_model(nodes, [("x", (1, 3, 9, 9))], [("y", (1, 4))], inits)


def quantize(tmp_path, model, fmt: str, act: str, n_calib=6, seed=0, lohi=None):
    src = model if not isinstance(model, onnx.ModelProto) else save(model, tmp_path, "float.onnx")
    m = onnx.load(str(src))
    vi = m.graph.input[0]
    shape = [d.dim_value for d in vi.type.tensor_type.shape.dim]
    rng = np.random.default_rng(seed)
    lo, hi = lohi or (-2.0, 2.0)
    samples = [rng.uniform(lo, hi, shape).astype(np.float32) for _ in range(n_calib)]
    out = tmp_path / f"q_{fmt}_{act}.onnx"
    quantize_static(str(src), str(out), Reader(vi.name, samples),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    per_channel=True, weight_type=QuantType.QInt8,
                    activation_type=QuantType.QInt8 if act == "s8" else QuantType.QUInt8)
    return out, vi.name, shape


def compare(tmp_path, path, iname, shape, n=8, lohi=(-2.0, 2.0), seed=1, per_session=False):
    """C == integer reference; -> max |C - onnxruntime| in output quantization steps (both
    with graph optimizations, i.e. ORT's fused integer kernels, and without: float QDQ; or
    the two separately with per_session)."""
    res = compile_model(path, tmp_path / "proj", force=True)
    assert {n.op for n in res.graph.nodes()} & INT_OPS
    encode, _ = host_codec(res.report)
    host = HostModel(res.out_dir, res.report)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sessions = [ort.InferenceSession(str(path)), ort.InferenceSession(str(path), opts)]
    out = res.report["outputs"][0]
    rng, worst = np.random.default_rng(seed), [0, 0]
    try:
        for _ in range(n):
            x = rng.uniform(*lohi, shape).astype(np.float32)
            q = encode({iname: x})
            got = host.run(q)
            np.testing.assert_array_equal(got[out["name"]], run_reference(res.graph, q)[out["name"]])
            for i, sess in enumerate(sessions):
                want = sess.run(None, {iname: x})[0]
                steps = np.rint(want / out["scale"]) + out["zero_point"] - got[out["name"]]
                worst[i] = max(worst[i], int(np.abs(steps).max()))
    finally:
        host.close()
    return worst if per_session else max(worst)


@pytest.mark.parametrize("act", ["s8", "u8"])
@pytest.mark.parametrize("net", ["cnn", "clip"])
def test_qdq_matches_onnxruntime(tmp_path, net, act):
    rng = np.random.default_rng(0)
    model = cnn(rng, gemm=True) if net == "cnn" else clip_net(rng)
    path, iname, shape = quantize(tmp_path, model, "qdq", act)
    assert compare(tmp_path, path, iname, shape) <= 1


def test_qdq_even_average_pool(tmp_path):
    """A 2x2 mean has exact ties: rounded to even, as DequantizeLinear -> AveragePool ->
    QuantizeLinear defines it (ORT unoptimized); ORT's fused QLinearAveragePool decides them by
    float noise, which (through the Gemm after it) can make two steps."""
    path, iname, shape = quantize(tmp_path, cnn(np.random.default_rng(0), True, window=2), "qdq", "s8")
    optimized, float_qdq = compare(tmp_path, path, iname, shape, n=24, per_session=True)
    assert float_qdq <= 1 and optimized <= 2


@pytest.mark.parametrize("act", ["s8", "u8"])
def test_qoperator_matches_onnxruntime(tmp_path, act):
    path, iname, shape = quantize(tmp_path, cnn(np.random.default_rng(2), gemm=False), "qop", act)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QLinearConv", "QLinearMatMul", "QLinearAdd"} <= ops
    assert compare(tmp_path, path, iname, shape) <= 1


@pytest.mark.parametrize("act", ["s8", "u8"])
def test_mlperf_kws_qdq(tmp_path, act):
    """Calibration and test inputs: uniform over the documented input range."""
    lohi = (-123.0, 26.0)
    path, iname, shape = quantize(tmp_path, MLPERF / "mlperf_kws_dscnn.onnx", "qdq", act, 4, lohi=lohi)
    assert compare(tmp_path, path, iname, shape, n=4, lohi=lohi) <= 1


def test_qoperator_contrib_refused(tmp_path):
    path, _, _ = quantize(tmp_path, cnn(np.random.default_rng(3), gemm=True), "qop", "s8")
    with pytest.raises(UnsupportedOp, match="QLinearAveragePool"):
        compile_model(path, tmp_path / "p")


# -- hand-made QDQ models: what is refused ----------------------------------------------------
def qdq_model(tmp_path, dq_attrs=None, dtype=TensorProto.INT8, x_scale=(0.05,), opset=13,
              w_zp=0):
    """x -> Q -> DQ -> Conv(DQ(w)) -> Q -> DQ -> y, with the activation parameters given."""
    npdt = helper.tensor_dtype_to_np_dtype(dtype)
    s = np.array(x_scale, np.float32).reshape(() if len(x_scale) == 1 else (-1,))
    inits = [numpy_helper.from_array(s, "xs"), numpy_helper.from_array(np.zeros(s.shape, npdt), "xz"),
             numpy_helper.from_array(np.full((2, 2, 1, 1), 3, np.int8), "wq"),
             numpy_helper.from_array(np.full(2, 0.1, np.float32), "ws"),
             numpy_helper.from_array(np.full(2, w_zp, np.int8), "wz"),
             numpy_helper.from_array(np.float32(0.1), "ys"),
             numpy_helper.from_array(np.zeros((), npdt), "yz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], axis=1),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], **(dq_attrs or {"axis": 1})),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=0),
             helper.make_node("Conv", ["xd", "w"], ["c"]),
             helper.make_node("QuantizeLinear", ["c", "ys", "yz"], ["cq"]),
             helper.make_node("DequantizeLinear", ["cq", "ys", "yz"], ["y"])]
    g = helper.make_graph(nodes, "m", [helper.make_tensor_value_info("x", TensorProto.FLOAT, (1, 2, 3, 3))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, (1, 2, 3, 3))], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8 if opset < 21 else 10  # what onnxruntime accepts
    return save(m, tmp_path)


def test_handmade_qdq_compiles(tmp_path):
    assert compare(tmp_path, qdq_model(tmp_path), "x", (1, 2, 3, 3)) <= 1


@pytest.mark.parametrize("kw, match", [
    ({"x_scale": (0.05, 0.1)}, "per-channel scales"),
    ({"dtype": TensorProto.INT16, "opset": 21}, "int16"),
    ({"dtype": TensorProto.UINT16, "opset": 21}, "uint16"),
    ({"dq_attrs": {"axis": 1, "block_size": 2}, "opset": 21, "x_scale": (0.05,) * 2}, "block"),
    ({"w_zp": -127}, "asymmetric weights"),
])
def test_unsupported_qdq_refused(tmp_path, kw, match):
    with pytest.raises(UnsupportedOp, match=match):
        compile_model(qdq_model(tmp_path, **kw), tmp_path / "p")


def test_div_round_even():
    from fractions import Fraction

    from nncc.quant.fixed_point import div_round_even
    n = np.arange(-40, 41)
    for d in (1, 2, 3, 4, 9):
        want = [round(Fraction(int(v), d)) for v in n]  # Python rounds half to even
        assert div_round_even(n, d).tolist() == want
