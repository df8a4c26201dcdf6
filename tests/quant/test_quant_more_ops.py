"""The integer kernels of nncc/ops/quantized_more.py (QConvTranspose, QConcat, QLut, QMul, QSub,
Sum as QAdd) on small models: the generated C equals the integer numpy reference bit for bit
(both scalings), the int8 output is close to the float model (SQNR), and the QConcat memory
rules hold (an input in the output's quantization is written in place, a rescaled one never)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from nncc.compiler import analyze, load
from nncc.quant import double_shift as ds
from nncc.quant.calibrate import calibrate
from nncc.quant.quantize import QuantOptions, float_source, quantize
from nncc.quant.rewrite import act_params
from tests.quant.qutil import accuracy, build, check_exact, float_graph, samples
from tests.util import make_model, save

RNG = np.random.default_rng(5)


def w(*shape, scale=0.3):
    return (RNG.standard_normal(shape) * scale).astype(np.float32)


def node(op, ins, outs, **attrs):
    return helper.make_node(op, ins, outs, **attrs)


P1 = [1, 1, 1, 1]
# name -> (nodes, input shape, initializers, opset); every model's output is "y"
MODELS = {
    "tconv_s2_outpad_relu": ([node("ConvTranspose", ["x", "W", "B"], ["t"], strides=[2, 2], pads=P1,
                                   output_padding=[1, 1]), node("Relu", ["t"], ["y"])],
                             [1, 4, 5, 5], {"W": w(4, 3, 3, 3), "B": w(3)}, 13),
    "tconv1d_group_dilation_nobias": ([node("ConvTranspose", ["x", "W"], ["y"], group=2, strides=[3],
                                            dilations=[2], pads=[1, 0])],
                                      [1, 4, 6], {"W": w(4, 3, 3)}, 13),
    "tconv_clip": ([node("ConvTranspose", ["x", "W", "B"], ["t"], strides=[1, 2]),
                    node("Clip", ["t", "lo", "hi"], ["y"])],
                   [1, 2, 4, 3], {"W": w(2, 4, 2, 3), "B": w(4), "lo": np.array(-0.5, np.float32),
                                  "hi": np.array(1.0, np.float32)}, 13),
    "concat_rescaled_input": ([node("Conv", ["x", "W", "B"], ["a"], pads=P1),
                               node("Concat", ["x", "a"], ["y"], axis=1)],
                              [1, 3, 6, 6], {"W": w(5, 3, 3, 3, scale=3.0), "B": w(5)}, 13),
    "concat_axis2": ([node("Conv", ["x", "W"], ["a"]), node("Conv", ["x", "W2"], ["b"]),
                      node("Concat", ["a", "b"], ["y"], axis=2)],
                     [1, 3, 5, 4], {"W": w(4, 3, 1, 1), "W2": w(4, 3, 1, 1, scale=0.5)}, 13),
    "sigmoid_tanh": ([node("Conv", ["x", "W"], ["c"], pads=P1), node("Sigmoid", ["c"], ["s"]),
                      node("Conv", ["s", "W2", "B2"], ["d"]), node("Tanh", ["d"], ["y"])],
                     [1, 3, 6, 6], {"W": w(4, 3, 3, 3), "W2": w(4, 4, 1, 1, scale=1.0), "B2": w(4)}, 13),
    "hardswish_leaky_elu": ([node("Conv", ["x", "W"], ["c"]), node("HardSwish", ["c"], ["h"]),
                             node("Conv", ["h", "W2"], ["d"]), node("LeakyRelu", ["d"], ["e"], alpha=0.1),
                             node("Elu", ["e"], ["y"], alpha=0.7)],
                            [1, 3, 5, 5], {"W": w(6, 3, 1, 1, scale=1.5), "W2": w(4, 6, 1, 1)}, 14),
    "se_gate_mul": ([node("Conv", ["x", "W"], ["c"], pads=P1), node("GlobalAveragePool", ["c"], ["p"]),
                     node("Conv", ["p", "W2", "B2"], ["q"]), node("Sigmoid", ["q"], ["s"]),
                     node("Mul", ["c", "s"], ["y"])],
                    [1, 3, 6, 6], {"W": w(8, 3, 3, 3), "W2": w(8, 8, 1, 1), "B2": w(8)}, 13),
    "mul_const_sub": ([node("Conv", ["x", "W"], ["c"], pads=P1), node("Mul", ["c", "K"], ["m"]),
                       node("Sub", ["m", "x"], ["y"])],
                      [1, 3, 5, 5], {"W": w(3, 3, 3, 3), "K": w(3, 1, 1, scale=2.0)}, 13),
    "mul_full_const": ([node("Conv", ["x", "W"], ["c"], pads=P1), node("Mul", ["K", "c"], ["y"])],
                       [1, 3, 4, 4], {"W": w(2, 3, 3, 3), "K": w(1, 2, 4, 4, scale=1.0)}, 13),
    "affine_bn_add_relu": ([node("BatchNormalization", ["x", "g", "b", "m", "v"], ["n"]),
                            node("Mul", ["n", "K"], ["k"]), node("Add", ["k", "A"], ["a"]),
                            node("Relu", ["a"], ["s"]), node("Sub", ["T", "s"], ["y"])],
                           [1, 4, 5, 5], {"g": w(4, scale=1.0), "b": w(4), "m": w(4),
                                          "v": np.abs(w(4)) + 0.5, "K": w(4, 1, 1, scale=1.0),
                                          "A": w(1, 4, 1, 1), "T": w(4, 1, 1)}, 13),
    "transpose_shuffle": ([node("Conv", ["x", "W"], ["c"]), node("Reshape", ["c", "s5"], ["r"]),
                           node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3, 4]),
                           node("Reshape", ["t", "s4"], ["y"])],
                          [1, 3, 4, 4], {"W": w(6, 3, 1, 1), "s5": np.array([1, 2, 3, 4, 4], np.int64),
                                         "s4": np.array([1, 6, 4, 4], np.int64)}, 13),
    "sum_relu": ([node("Conv", ["x", "W"], ["c"], pads=P1), node("Sum", ["c", "x"], ["s"]),
                  node("Relu", ["s"], ["y"])],
                 [1, 3, 5, 5], {"W": w(3, 3, 3, 3)}, 13),
}
# int8 op each model must contain
EXPECT = {"tconv": "QConvTranspose", "concat": "QConcat", "sigmoid": "QLut", "hardswish": "QLut",
          "se_gate": "QMul", "mul_const": "QSub", "mul_full": "QMul", "affine": "QConv",
          "transpose": "Transpose", "sum": "QAdd"}


def model(tmp_path, name):
    nodes, shape, inits, opset = MODELS[name]
    return save(make_model(nodes, [("x", shape)], [("y", None)], inits, opset=opset), tmp_path)


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
@pytest.mark.parametrize("name", sorted(MODELS))
def test_c_equals_integer_reference(tmp_path, name, scaling):
    path = model(tmp_path, name)
    shape = MODELS[name][1]
    calib, test = samples(shape, 8), samples(shape, 4, seed=2)
    # fuse_add off: Sum's QAdd stays a node (otherwise it is fused into the QConv before it)
    res = build(path, tmp_path / "q", calib, scaling, fuse_add=not name.startswith("sum"))
    ops = {n.op for n in res.graph.nodes()}
    assert EXPECT[next(k for k in EXPECT if name.startswith(k))] in ops, ops
    outs = check_exact(res, calib[:4] + test)
    acc = accuracy(path, res, calib[:4], outs[:4])
    print(f"\n{name} {scaling}: SQNR {acc['sqnr_db']:.1f} dB, cosine {acc['cosine']:.5f}")
    # Measured 30.8-41.2 dB (fixed), 29.5-40.4 dB (shift; power-of-two scales lose up to 3 dB).
    assert acc["sqnr_db"] > (27 if scaling == "fixed" else 26), acc
    assert acc["cosine"] > 0.99, acc


def test_tconv_absorbs_relu_as_clamp(tmp_path):
    res = build(model(tmp_path, "tconv_s2_outpad_relu"), tmp_path / "q", samples([1, 4, 5, 5], 4))
    (n,) = res.graph.nodes()
    assert n.op == "QConvTranspose" and n.attrs["act_min"] == res.report["outputs"][0]["zero_point"]


def test_table_outputs_fixed_ranges(tmp_path):
    res = build(model(tmp_path, "sigmoid_tanh"), tmp_path / "q", samples([1, 3, 6, 6], 4))
    luts = {n.attrs["function"]: res.graph.tensors[n.outputs[0]].quant for n in res.graph.nodes_of("QLut")}
    assert luts["Sigmoid"].scale == (2.0 ** -8,) and luts["Sigmoid"].zero_point == (-128,)
    assert luts["Tanh"].scale == (2.0 ** -7,) and luts["Tanh"].zero_point == (0,)


def concat_graph(tmp_path):
    """a (tiny range, also read by another conv) and b (wide range) concatenated: b takes the
    output's scale and is written in place; a is requantized by the QConcat kernel."""
    nodes = [node("Conv", ["x", "Wa"], ["a"]), node("Conv", ["x", "Wb"], ["b"]),
             node("Concat", ["a", "b"], ["y"], axis=1), node("Conv", ["a", "Wz"], ["z"])]
    inits = {"Wa": w(2, 3, 1, 1, scale=0.01), "Wb": w(4, 3, 1, 1, scale=3.0), "Wz": w(2, 2, 1, 1)}
    return save(make_model(nodes, [("x", [1, 3, 4, 4])], [("y", None), ("z", None)], inits), tmp_path)


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_concat_places_only_inputs_it_copies(tmp_path, scaling):
    path = concat_graph(tmp_path)
    calib = samples([1, 3, 4, 4], 6)
    res = build(path, tmp_path / "q", calib, scaling)
    (cat,) = res.graph.nodes_of("QConcat")
    assert cat.attrs["copy"] == [False, True]
    assert res.plan.alias.placed[cat.name] == [1] and cat.name not in res.plan.alias.skipped
    check_exact(res, calib)


def test_concat_shared_scales_cost_no_copy(tmp_path):
    """tconv_concat_res's Concat: both inputs take its output's quantization, both are written
    in place, and the Concat kernel disappears."""
    from tests.util import FIXTURES
    path = FIXTURES / "zoo" / "tconv_concat_res.onnx"
    g = load(path)
    calib = [{"input": np.random.default_rng(0).standard_normal((1, 3, 16, 16)).astype(np.float32)}]
    q = quantize(g, QuantOptions(samples=calib))
    (cat,) = q.nodes_of("QConcat")
    assert cat.attrs["copy"] == [True, True]
    assert cat.name in analyze(q).plan.alias.skipped


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_tconv_unpacked_form(tmp_path, scaling):
    """QConvTranspose with QConv's unpacked bias / multiplier / shift inputs (packed=False)."""
    calib = samples([1, 2, 4, 3], 6)
    res = build(model(tmp_path, "tconv_clip"), tmp_path / "q", calib, scaling, packed=False)
    (n,) = res.graph.nodes()
    assert n.op == "QConvTranspose" and "pack_bits" not in n.attrs and len(n.inputs) == 5
    outs = check_exact(res, calib)
    assert accuracy(model(tmp_path, "tconv_clip"), res, calib, outs)["sqnr_db"] > 35


@pytest.mark.parametrize("name", ["tconv_s2_outpad_relu", "tconv_clip", "affine_bn_add_relu"])
def test_double_shift_layers(tmp_path, name):
    """--scaling double-shift: QConvTranspose and the per-channel affine QConvs raise their
    output scale (by < GAP) as every QConv / QGemm does, so their layer multiplier is on the
    grid with `fixed`'s weight scales (double_shift.raise_output); C == reference."""
    path = model(tmp_path, name)
    shape = MODELS[name][1]
    calib = samples(shape, 8)
    res = build(path, tmp_path / "q", calib, "double-shift", observer="minmax", fuse_add=False)
    check_exact(res, calib[:3] + samples(shape, 3, seed=2))
    ranges = calibrate(float_source(float_graph(path)), calib, "minmax", False)
    layers = [n for n in res.graph.nodes() if n.op in ("QConv", "QConvTranspose")]
    assert layers
    for n in layers:
        out = n.outputs[0]
        raised = res.graph.tensors[out].quant.scale[0] / act_params(*ranges[out], "fixed").scale[0]
        assert 1 + 1e-6 < raised < ds.GAP, (n.name, raised)
