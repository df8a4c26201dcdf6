"""int8 conv kernels that write their output over their input (QConv.inplace_kernel in
nncc/ops/quantized.py, templates/ops/conv_q.c.j2): "dw_inplace" (one int8 output plane of
workspace) and "pw_inplace" (Cout int8 of workspace). The integer reference is unchanged -- only
memory placement changes -- so the C must equal it bit for bit; also checked: the variant chosen
(report layers[].kernel), the output sharing the input's memory, the int8 workspace, and the int8
MLPerf KWS arena (half of TFLite Micro's 16,000 B)."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from tests.quant.qutil import build, check_exact, min_scratch, samples
from tests.util import MLPERF, make_model, mlperf_inputs, save

RNG = np.random.default_rng(11)


def weights(name, shape, bias=True):
    inits = {f"{name}_w": (RNG.standard_normal(shape) * 0.5).astype(np.float32)}
    if bias:
        inits[f"{name}_b"] = (RNG.standard_normal(shape[0]) * 0.1).astype(np.float32)
    return list(inits), inits


def chain(tmp_path, xs, c, conv_ws, attrs, bias=True, act=None, tail=False, read_again=False):
    """x -> 1x1 Conv to c channels (a, an arena tensor) -> the conv under test -> [act] -> y,
    or with `tail` -> MaxPool 2x2 stride 1 -> y (the conv then writes the arena, not the caller's
    buffer). With read_again, a is also read after the conv (then it cannot be overwritten)."""
    i0, init0 = weights("c0", (c, xs[1]) + (1,) * (len(xs) - 2))
    i1, init1 = weights("c1", conv_ws, bias)
    nodes = [helper.make_node("Conv", ["x", *i0], ["a"]),
             helper.make_node("Conv", ["a", *i1], ["b"], **attrs)]
    last = "b"
    if act:
        nodes.append(helper.make_node(act, [last], ["ba"]))
        last = "ba"
    if read_again:
        nodes.append(helper.make_node("Add", [last, "a"], ["s"]))
        last = "s"
    if tail:
        k = [2] * (len(xs) - 2)
        nodes.append(helper.make_node("MaxPool", [last], ["p"], kernel_shape=k, strides=[1] * len(k)))
        last = "p"
    nodes.append(helper.make_node("Identity", [last], ["y"]))
    return save(make_model(nodes, [("x", xs)], [("y", None)], {**init0, **init1}), tmp_path)


CASES = {
    # name: (x shape, channels, W shape, attrs, bias, activation, expected kernel)
    "dw3x3_relu": ((1, 2, 6, 5), 4, (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, True, "Relu", "dw_inplace"),
    "dw_batch2_nobias": ((2, 2, 5, 5), 3, (3, 1, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}, False, None,
                         "dw_inplace"),
    "dw_dil_asym": ((1, 1, 7, 6), 3, (3, 1, 3, 2), {"group": 3, "dilations": [2, 1], "pads": [2, 1, 2, 0]}, True,
                    None, "dw_inplace"),
    "dw_1d": ((1, 2, 9), 4, (4, 1, 3), {"group": 4, "pads": [1, 1]}, True, None, "dw_inplace"),
    "pw_relu": ((1, 3, 4, 5), 6, (6, 6, 1, 1), {}, True, "Relu", "pw_inplace"),
    "pw_batch2_nobias": ((2, 2, 3, 3), 4, (4, 4, 1, 1), {}, False, None, "pw_inplace"),
    "pw_1d": ((1, 2, 7), 5, (5, 5, 1), {}, True, None, "pw_inplace"),
}
# the cases whose shared kernel kind (nncc/ops/qconv_shared.py) has a scratch: "mm" (the 1x1
# layers) and "dw3" (3x3 depthwise); the shared "dw" kind (dw_1d, dw_dil_asym) has a copy buffer
SCRATCH = {"dw3x3_relu", "dw_batch2_nobias", "pw_relu", "pw_batch2_nobias", "pw_1d"}


def conv_under_test(res):
    """The QConv reading the first conv's output (the conv under test)."""
    nodes = res.graph.nodes()
    first = next(n for n in nodes if n.op == "QConv")
    (node,) = [n for n in nodes if n.op == "QConv" and n.inputs[0] == first.outputs[0]]
    return node


def run(tmp_path, path, xs, **kw):
    res = build(path, tmp_path / "q", samples(xs, 6, 0), **kw)
    check_exact(res, samples(xs, 3, 1))
    return res


@pytest.mark.parametrize("tail", [False, True])
@pytest.mark.parametrize("scaling,packed", [("fixed", True), ("shift", True), ("fixed", False),
                                            ("double-shift", True), ("double-shift", False)])
@pytest.mark.parametrize("name", sorted(CASES))
def test_inplace_q_equals_integer_reference(tmp_path, name, scaling, packed, tail):
    xs, c, ws, attrs, bias, act, kernel = CASES[name]
    res = run(tmp_path, chain(tmp_path, xs, c, ws, attrs, bias, act, tail), xs, scaling=scaling, packed=packed)
    node = conv_under_test(res)
    row = next(r for r in res.report["layers"] if r["name"] == node.name)
    assert node.kernel == row["kernel"] == kernel
    al = res.plan.alias
    assert al.host(node.outputs[0]) == al.host(node.inputs[0])
    assert al.kind[al.host(node.inputs[0])] == ("arena" if tail else "output")
    ws_name, ws_bytes = al.workspace[node.name]
    y = res.graph.tensors[node.outputs[0]]
    code = (res.out_dir / "m.c").read_text() if (res.out_dir / "m.c").exists() else \
        next(res.out_dir.glob("*.c")).read_text()
    # int8: a copy buffer of one output plane (dw) or one pixel's channels (pw); none for the
    # shared kernels with a scratch ("mm", "dw3": tests/quant/test_qconv_scratch.py), which write
    # straight over their input (the scratch holds what is still to be read), just the scratch
    # (the unpacked and double-shift forms keep their own kernels, with the copy buffer)
    shared = packed and scaling in ("fixed", "shift")  # the shared kernels, else the specialized ones
    assert ("static const nncc_qconv_params p = " in code) == shared
    copy = int(np.prod(y.shape[2:])) if kernel == "dw_inplace" else y.shape[1]
    need = min_scratch(res.graph, node)
    if shared and name in SCRATCH:
        assert ws_bytes >= need > 0, (ws_bytes, need)
    else:
        assert ws_bytes == copy, (ws_bytes, copy)
    assert ws_name in res.plan.offsets
    assert "int8_t *ws)" in code and "float *ws" not in code


@pytest.mark.parametrize("name", ["dw3x3_relu", "pw_relu"])
def test_direct_when_the_input_is_read_later(tmp_path, name):
    xs, c, ws, attrs, bias, act, _ = CASES[name]
    res = run(tmp_path, chain(tmp_path, xs, c, ws, attrs, bias, act, read_again=True), xs)
    node = conv_under_test(res)
    assert node.kernel == "direct"
    # no copy buffer: a workspace only for a shared kernel's scratch
    size = res.plan.alias.workspace.get(node.name, ("", 0))[1]
    need = min_scratch(res.graph, node)
    assert (size == 0) == (need == 0) and size >= need, (size, need)


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_mlperf_kws_int8_inplace(tmp_path, scaling):
    """int8 DS-CNN: every depthwise and pointwise conv in place; arena = one 64 x 25 x 5 int8 map
    plus the largest workspace, a 1x1 conv's scratch: a pixel quad's 64 channels widened to int16
    (512 B) and a block of 8 channels' sums at the 4 pixels (128 B): 8,000 + 640 = 8,640 B <
    TFLM's 16,000 B."""
    path = MLPERF / "mlperf_kws_dscnn.onnx"
    res = build(path, tmp_path / "q", mlperf_inputs("mlperf_kws_dscnn", 8, 0), scaling, strip_softmax=True)
    check_exact(res, mlperf_inputs("mlperf_kws_dscnn", 3, 1))
    r = res.report
    kernels = [row["kernel"] for row in r["layers"] if row["op"] == "QConv"]
    assert kernels.count("dw_inplace") == 4 and kernels.count("pw_inplace") >= 3, kernels
    assert r["arena_bytes"] == r["arena_lower_bound_bytes"] == 8_000 + 8 * 64 + 16 * 8 < 16_000
