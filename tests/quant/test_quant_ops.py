"""Integer kernels on one- to three-node models: the generated C equals the integer numpy
reference bit for bit (both scalings), the int8 result is close to the float model (SQNR), and
what has no int8 kernel yet is refused with UnsupportedOp."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from nncc.errors import UnsupportedOp, UsageError
from nncc.quant.calibrate import calibrate
from nncc.quant.quantize import QuantOptions
from nncc.quant.rewrite import act_params
from tests.quant.qutil import accuracy, build, check_exact, float_graph, samples
from tests.util import make_model, save

RNG = np.random.default_rng(0)


def w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def conv(x, y, W, B=None, **attrs):
    return helper.make_node("Conv", [x, W] + ([B] if B else []), [y], **attrs)


def clip6(x, y):
    return helper.make_node("Clip", [x, "lo", "hi"], [y])


CLIP = {"lo": np.array(0.0, np.float32), "hi": np.array(6.0, np.float32)}

# name -> (nodes, input shape, initializers)
MODELS = {
    "conv_relu_maxpool": ([conv("x", "c", "W", "B", pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c"], ["r"]),
                           helper.make_node("MaxPool", ["r"], ["y"], kernel_shape=[2, 2], strides=[2, 2])],
                          [1, 3, 8, 8], {"W": w(8, 3, 3, 3), "B": w(8)}),
    "conv_stride_dilation_nobias": ([conv("x", "y", "W", strides=[2, 1], dilations=[1, 2], pads=[0, 2, 1, 1])],
                                    [1, 4, 9, 7], {"W": w(5, 4, 3, 3)}),
    "depthwise_relu6": ([conv("x", "c", "W", "B", group=6, pads=[1, 1, 1, 1]), clip6("c", "y")],
                        [1, 6, 7, 7], {"W": w(6, 1, 3, 3, scale=1.0), "B": w(6), **CLIP}),
    "grouped_conv1d": ([conv("x", "y", "W", "B", group=2, pads=[1, 1])], [1, 4, 11], {"W": w(6, 2, 3), "B": w(6)}),
    "avgpool_pads": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[3, 3], strides=[2, 2],
                                       pads=[1, 1, 1, 1], count_include_pad=0)], [1, 2, 7, 7], {}),
    "avgpool_include_pad_ceil": ([helper.make_node("AveragePool", ["x"], ["y"], kernel_shape=[2, 2],
                                                   strides=[2, 2], pads=[1, 1, 0, 0], count_include_pad=1,
                                                   ceil_mode=1)], [1, 2, 6, 5], {}),
    "global_pools": ([helper.make_node("GlobalAveragePool", ["x"], ["a"]),
                      helper.make_node("GlobalMaxPool", ["a"], ["y"])], [1, 5, 4, 6], {}),
    "gemm_transb_relu": ([helper.make_node("Flatten", ["x"], ["f"]),
                          helper.make_node("Gemm", ["f", "W", "C"], ["g"], transB=1, alpha=0.5, beta=2.0),
                          helper.make_node("Relu", ["g"], ["y"])], [1, 2, 3, 4], {"W": w(10, 24), "C": w(10)}),
    "matmul_add": ([helper.make_node("MatMul", ["x", "W"], ["m"]), helper.make_node("Add", ["m", "B"], ["y"])],
                   [1, 32], {"W": w(32, 16), "B": w(16)}),
    "matmul_nobias": ([helper.make_node("MatMul", ["x", "W"], ["y"])], [1, 20], {"W": w(20, 7)}),
    "residual_add_relu": ([conv("x", "a", "W", "B", pads=[1, 1, 1, 1]), conv("a", "b", "W2", "B2", pads=[0, 0, 0, 0]),
                           helper.make_node("Add", ["b", "x"], ["s"]), helper.make_node("Relu", ["s"], ["y"])],
                          [1, 4, 5, 5], {"W": w(4, 4, 3, 3), "B": w(4), "W2": w(4, 4, 1, 1, scale=2.0), "B2": w(4)}),
    "reshape_softmax": ([conv("x", "c", "W", "B"), helper.make_node("Reshape", ["c", "shape"], ["r"]),
                         helper.make_node("Softmax", ["r"], ["y"], axis=1)],
                        [1, 3, 4, 4], {"W": w(2, 3, 3, 3), "B": w(2), "shape": np.array([1, 8], np.int64)}),
}


def model(tmp_path, name):
    nodes, shape, inits = MODELS[name]
    return save(make_model(nodes, [("x", shape)], [("y", None)], inits), tmp_path)


@pytest.mark.parametrize("scaling", ["fixed", "shift", "double-shift"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_c_equals_integer_reference(tmp_path, name, scaling):
    path = model(tmp_path, name)
    shape = MODELS[name][1]
    calib, test = samples(shape, 8), samples(shape, 4, seed=2)
    res = build(path, tmp_path / "q", calib, scaling)
    assert res.report["precision"] == "int8"
    outs = check_exact(res, calib[:4] + test)  # test inputs may fall outside the ranges: saturation
    acc = accuracy(path, res, calib[:4], outs[:4])
    # Measured on the calibration inputs (no clipping). Pools keep their input's scale, as
    # TFLite's do, which costs the global pools ~10 dB; power-of-two scales lose up to 6 dB more.
    floor = (30 if scaling == "fixed" else 28) - (6 if name == "global_pools" else 0)
    assert acc["sqnr_db"] > floor, acc
    assert acc["cosine"] > 0.99, acc


def test_relu_output_uses_all_steps(tmp_path):
    res = build(model(tmp_path, "conv_relu_maxpool"), tmp_path / "q", samples([1, 3, 8, 8], 4))
    out = res.report["outputs"][0]
    assert out["zero_point"] == -128 and out["dtype"] == "int8"  # unsigned range: no bit wasted


def test_all_zero_range_is_safe(tmp_path):
    """A layer whose calibrated range is all zeros gets a fixed small scale, no error."""
    nodes = [conv("x", "c", "W", "B"), helper.make_node("Relu", ["c"], ["y"])]
    p = save(make_model(nodes, [("x", [1, 2, 4, 4])], [("y", None)],
                        {"W": np.zeros((3, 2, 1, 1), np.float32), "B": -np.ones(3, np.float32)}), tmp_path)
    calib = samples([1, 2, 4, 4], 3)
    res = build(p, tmp_path / "q", calib)
    outs = check_exact(res, calib)
    assert all(np.all(o["y"] == 0) for o in outs)
    assert act_params(0.0, 0.0, "fixed").scale[0] > 0


@pytest.mark.parametrize("nodes,inits,what", [
    ([conv("x", "c", "W"), helper.make_node("LRN", ["c"], ["y"], size=3)], {"W": w(2, 2, 1, 1)}, "LRN"),
    ([helper.make_node("Div", ["x", "x"], ["y"])], {}, "Div"),
    ([conv("x", "c", "W"), helper.make_node("Softmax", ["c"], ["s"], axis=1), conv("s", "y", "W")],
     {"W": w(2, 2, 1, 1)}, "Softmax"),
])
def test_refused(tmp_path, nodes, inits, what):
    p = save(make_model(nodes, [("x", [1, 2, 3, 3])], [("y", None)], inits), tmp_path)
    with pytest.raises(UnsupportedOp, match=what):
        build(p, tmp_path / "q", samples([1, 2, 3, 3], 2))


@pytest.mark.parametrize("bad,match", [
    ([], "no samples"),
    ([{"x": np.zeros((1, 3, 8, 9), np.float32)}], "shape"),
    ([{"x": np.full((1, 3, 8, 8), np.nan, np.float32)}], "NaN"),
    ([{"y": np.zeros((1, 3, 8, 8), np.float32)}], "lacks input"),
    ([{"x": np.array(["a"] * 192).reshape(1, 3, 8, 8)}], "not numeric"),
])
def test_bad_calibration_samples(tmp_path, bad, match):
    g = float_graph(model(tmp_path, "conv_relu_maxpool"))
    with pytest.raises(UsageError, match=match):
        calibrate(g, bad, progress=False)


def test_bad_calibration_arrays(tmp_path):
    p = model(tmp_path, "conv_relu_maxpool")
    for arrays, match in [({"x": np.zeros((2, 3, 8, 7), np.float32)}, "shape"), ({}, "missing"),
                          ({"x": np.zeros((0, 3, 8, 8), np.float32)}, "zero samples")]:
        with pytest.raises(UsageError, match=f"calibration data: .*{match}"):
            from nncc.compiler import compile_model
            compile_model(p, tmp_path / "q", force=True, quant=QuantOptions(arrays=arrays))


def test_percentile_observer_narrows_ranges(tmp_path):
    g = float_graph(model(tmp_path, "conv_relu_maxpool"))
    calib = samples([1, 3, 8, 8], 6)
    mm = calibrate(g, calib, "minmax", progress=False)
    pc = calibrate(g, calib, "percentile", progress=False)
    assert all(pc[t][1] <= mm[t][1] + 1e-6 and pc[t][0] >= mm[t][0] - 1e-6 for t in mm)
    res = build(model(tmp_path, "conv_relu_maxpool"), tmp_path / "q", calib, observer="percentile")
    check_exact(res, calib)


def test_progress_on_stderr(tmp_path, capsys):
    g = float_graph(model(tmp_path, "conv_relu_maxpool"))
    calibrate(g, samples([1, 3, 8, 8], 3), progress=True)
    assert "calibrating" in capsys.readouterr().err and "3/3" in capsys.readouterr().err + "3/3"
