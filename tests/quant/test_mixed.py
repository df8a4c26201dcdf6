"""Mixed precision (nncc/quant/mixed.py, auto.py): --keep-float, --int16 NODE and the automatic
--target-sqnr search. C == integer reference bit for bit (the float layers inside run the same
float kernels as the reference, so their float32 results agree exactly too)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import helper

from nncc.cli import main
from nncc.errors import UsageError
from nncc.quant.auto import output_sqnr
from nncc.quant.calibrate import calibrate
from nncc.quant.mixed import MixedRewriter
from nncc.reference import run_reference
from tests.quant.qutil import accuracy, build, check_exact, float_graph, samples
from tests.quant.test_quant_ops import w
from tests.util import FIXTURES, make_model, save

SHAPE = [1, 4, 8, 8]


def net(tmp_path):
    """conv-relu, conv (c2), residual add (add), maxpool, conv (c3), gemm (fc)."""
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["ar"], name="r1"),
             helper.make_node("Conv", ["ar", "W2", "B2"], ["b"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["b", "ar"], ["s"], name="add"),
             helper.make_node("MaxPool", ["s"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p", "W3", "B3"], ["c"], name="c3"),
             helper.make_node("Flatten", ["c"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W4", "B4"], ["y"], name="fc", transB=1)]
    inits = {"W1": w(6, 4, 3, 3), "B1": w(6), "W2": w(6, 6, 3, 3), "B2": w(6), "W3": w(5, 6, 1, 1),
             "B3": w(5), "W4": w(3, 80), "B4": w(3)}
    return save(make_model(nodes, [("x", SHAPE)], [("y", None)], inits), tmp_path)


def layer(report, name):
    return next(ly for ly in report["layers"] if ly["name"] == name)


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_keep_float_conv_in_the_middle(tmp_path, scaling):
    path = net(tmp_path)
    calib = samples(SHAPE, 8)
    res = build(path, tmp_path / "q", calib, scaling, keep_float=["c2"])
    rep = res.report
    assert rep["precision"] == "mixed"
    c2 = layer(rep, "c2")
    assert c2["op"] == "Conv" and c2["bits"] == 32
    assert layer(rep, "c1")["bits"] == 8 and layer(rep, "c3")["op"] == "QConv"
    ops = [ly["op"] for ly in rep["layers"]]
    assert ops.count("Dequantize") == 1 and ops.count("Quantize") == 1  # around c2 only
    outs = check_exact(res, calib[:4] + samples(SHAPE, 3, seed=5))
    full = build(path, tmp_path / "i8", calib, scaling)
    a_mixed = accuracy(path, res, calib[:4], outs[:4])
    a_int8 = accuracy(path, full, calib[:4], check_exact(full, calib[:4]))
    assert a_mixed["sqnr_db"] > 25 and a_int8["sqnr_db"] > 25


def test_keep_float_in_int16_build(tmp_path):
    path = net(tmp_path)
    calib = samples(SHAPE, 6)
    res = build(path, tmp_path / "q", calib, precision="int16", keep_float=["add"])
    assert res.report["precision"] == "mixed"
    assert {ly["bits"] for ly in res.report["layers"] if ly["op"].startswith("Q")} == {16}
    assert layer(res.report, "add")["op"] == "Add"  # float, its two operands dequantized
    assert [ly["op"] for ly in res.report["layers"]].count("Dequantize") == 2
    check_exact(res, calib[:3])


def test_keep_float_last_layer_and_chain(tmp_path):
    """Consecutive float layers pass float directly; a float graph output stays float."""
    path = net(tmp_path)
    calib = samples(SHAPE, 6)
    res = build(path, tmp_path / "q", calib, keep_float=["c3", "flat", "fc"])
    ops = [ly["op"] for ly in res.report["layers"]]
    assert ops.count("Dequantize") == 1 and "Quantize" not in ops
    assert res.report["outputs"][0]["dtype"] == "float32"
    check_exact(res, calib[:3])


def test_keep_float_unknown_names(tmp_path, capsys):
    path = net(tmp_path)
    np.savez(tmp_path / "calib.npz", x=np.stack([s["x"][0] for s in samples(SHAPE, 3)]))
    assert main(["compile", str(path), "-o", str(tmp_path / "q"), "--quantize", "int8", "--calib",
                 str(tmp_path / "calib.npz"), "--keep-float", "c2", "nope", "zz"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nncc: error: --keep-float:")
    assert "'nope'" in err[0] and "'zz'" in err[0] and "'c2'" not in err[0]


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
@pytest.mark.parametrize("wide", [["c2"], ["c1"], ["add", "fc"], ["c1", "c3"]])
def test_int16_some_layers(tmp_path, wide, scaling):
    """int8 <-> int16 where precisions meet: the consumer's own requantization is the cast
    (conv reading int16 writing int8, add of int8 + int16, pool keeping int16, ...)."""
    path = net(tmp_path)
    calib = samples(SHAPE, 8)
    res = build(path, tmp_path / "q", calib, scaling, int16=wide)
    rep = res.report
    assert rep["precision"] == "mixed"
    for ly in rep["layers"]:
        if ly["op"] in ("QConv", "QGemm", "QAdd"):
            assert ly["bits"] == (16 if ly["name"] in wide else 8), ly["name"]
    if "c1" in wide:
        assert rep["inputs"][0]["dtype"] == "int8" and layer(rep, "c2")["bits"] == 8
    check_exact(res, calib[:4] + samples(SHAPE, 3, seed=5))


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_int16_residual_of_an_int8_conv(tmp_path, scaling):
    """A residual Add (and its Relu) fused into an int8 conv whose other operand is int16: the
    conv keeps its specialized kernel (the shared ones read an int8 residual), C == reference,
    and report.json lists the Add and the Relu as fused into it."""
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["a"], name="c1", pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["x", "W2", "B2"], ["b"], name="c2", pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["b", "a"], ["s"], name="add"),
             helper.make_node("Relu", ["s"], ["y"], name="relu")]
    inits = {"W1": w(6, 4, 3, 3), "B1": w(6), "W2": w(6, 4, 3, 3), "B2": w(6)}
    path = save(make_model(nodes, [("x", SHAPE)], [("y", None)], inits), tmp_path)
    calib = samples(SHAPE, 8)
    res = build(path, tmp_path / "q", calib, scaling, int16=["c1"])
    assert layer(res.report, "c1")["bits"] == 16 and layer(res.report, "c2")["bits"] == 8
    fused = [n for n in res.graph.nodes() if n.op == "QConv" and len(n.inputs) > 5]
    assert len(fused) == 1 and res.graph.tensors[fused[0].inputs[5]].dtype == "int16"
    assert layer(res.report, "c2")["fused"] == ["Add", "Relu"]  # the report names what it absorbed
    check_exact(res, calib[:4] + samples(SHAPE, 3, seed=5))


def test_int16_pool_refused(tmp_path):
    with pytest.raises(UsageError, match="MaxPool keeps its input's precision"):
        build(net(tmp_path), tmp_path / "q", samples(SHAPE, 2), int16=["pool"])


def test_int16_flag_needs_int8_build(tmp_path):
    with pytest.raises(UsageError, match="--quantize int8"):
        build(net(tmp_path), tmp_path / "q", samples(SHAPE, 2), precision="int16", int16=["c1"])


def test_auto_target_sqnr(tmp_path, capsys):
    """lenet5_bn: a target between the int8 and the int16 build's SQNR is met with some, not
    all, layers raised; the SQNR the search reports is what the compiled graph reaches."""
    path = FIXTURES / "zoo" / "lenet5_bn.onnx"
    g = float_graph(path)
    inp = g.inputs[0]
    rng = np.random.default_rng(0)
    calib = [{inp: rng.standard_normal(g.tensors[inp].shape).astype(np.float32)} for _ in range(8)]
    refs = [run_reference(g, s) for s in calib]
    from nncc.quant.rewrite import unfuse_conv_pool
    gu = unfuse_conv_pool(g)
    r8, r16 = calibrate(gu, calib, "mse", False), calibrate(gu, calib, "minmax", False)
    lo = output_sqnr(MixedRewriter(gu, r8, r16, set()).run(), calib, refs)
    hi = output_sqnr(MixedRewriter(gu, r8, r16, True).run(), calib, refs)
    target = lo + 0.5 * (hi - lo)
    res = build(path, tmp_path / "q", calib, target_sqnr=target)
    err = capsys.readouterr().err
    assert "target met" in err
    layers = [ly for ly in res.report["layers"] if ly["op"] in ("QConv", "QGemm")]
    raised = [ly["name"] for ly in layers if ly["bits"] == 16]
    assert 0 < len(raised) < len(layers), raised
    outs = check_exact(res, calib)
    got = np.stack([o[res.report["outputs"][0]["name"]] for o in outs])
    ref = np.stack([r[g.outputs[0]] for r in refs])
    from tests.quant.qutil import sqnr_db
    assert sqnr_db(ref, got) >= target - 1e-9
    print(f"\nlenet5_bn auto: int8 {lo:.1f} dB, int16 {hi:.1f} dB, target {target:.1f} dB, "
          f"raised {raised} -> {sqnr_db(ref, got):.1f} dB")


def test_cli_mixed(tmp_path):
    path = net(tmp_path)
    np.savez(tmp_path / "calib.npz", x=np.stack([s["x"][0] for s in samples(SHAPE, 4)]))
    assert main(["compile", str(path), "-o", str(tmp_path / "q"), "--quantize", "int8", "--calib",
                 str(tmp_path / "calib.npz"), "--int16", "c2", "--keep-float", "fc"]) == 0
    rep = json.loads((tmp_path / "q" / "report.json").read_text())
    assert rep["precision"] == "mixed" and layer(rep, "c2")["bits"] == 16


def test_int16_matmul_takes_only_its_bias_add(tmp_path):
    """--int16 on a MatMul widens the Add after it only when that Add is its constant bias (one
    QGemm, rewrite.matmul_bias_add); an Add of two computed tensors is a QAdd of its own."""
    nodes = [helper.make_node("MatMul", ["x", "W"], ["m"], name="mm"),
             helper.make_node("MatMul", ["x", "W2"], ["n"], name="mm2"),
             helper.make_node("Add", ["m", "n"], ["y"], name="add")]
    g = float_graph(save(make_model(nodes, [("x", [1, 8])], [("y", None)],
                                    {"W": w(8, 4), "W2": w(8, 4)}), tmp_path))
    assert [n.op for n in g.nodes()] == ["MatMul", "MatMul", "Add"]
    assert MixedRewriter(g, {}, {}, {"mm"}).wide == {"m"}
