"""Conv kernels that write their output over their input (nncc/ops/conv.py, chosen by
nncc/memory/alias.py): "dw_inplace" (depthwise, same shape; one output plane in a workspace) and
"pw_inplace" (1x1 stride 1 unpadded, Cin == Cout; one pixel's outputs in a workspace). Each
case: the C matches the reference and onnxruntime, the variant is the one expected, the output
shares the input's memory and the workspace is an arena buffer of its own."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from nncc.compiler import analyze, load
from tests.util import check_model, make_model, save

RNG = np.random.default_rng(7)


def weights(name, shape, bias=True):
    inits = {f"{name}_w": RNG.standard_normal(shape).astype(np.float32) * 0.5}
    ins = [f"{name}_w"]
    if bias:
        inits[f"{name}_b"] = RNG.standard_normal(shape[0]).astype(np.float32) * 0.1
        ins.append(f"{name}_b")
    return ins, inits


def chain(tmp_path, xs, c, conv_ws, conv_attrs, bias=True, act=None, read_again=False):
    """x -> 1x1 Conv (to c channels: an arena tensor a) -> the conv under test -> b -> Softmax(axis
    1) -> y. With read_again, a is also read after the conv (then it cannot be overwritten)."""
    i0, init0 = weights("c0", (c, xs[1]) + (1,) * (len(xs) - 2))
    i1, init1 = weights("c1", conv_ws, bias)
    nodes = [helper.make_node("Conv", ["x", *i0], ["a"]),
             helper.make_node("Conv", ["a", *i1], ["b"], **conv_attrs)]
    last = "b"
    if act:
        nodes.append(helper.make_node(act, ["b"], ["ba"]))
        last = "ba"
    if read_again:
        nodes.append(helper.make_node("Add", [last, "a"], ["s"]))
        last = "s"
    nodes.append(helper.make_node("Softmax", [last], ["y"], axis=1))
    m = make_model(nodes, [("x", xs)], [("y", None)], {**init0, **init1})
    return save(m, tmp_path)


CASES = {
    # name: (x shape, channels, W shape, attrs, bias, activation, expected kernel)
    "dw3x3": ((1, 2, 6, 5), 4, (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1]}, True, "Relu", "dw_inplace"),
    "dw_batch2": ((2, 2, 5, 5), 3, (3, 1, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}, False, None, "dw_inplace"),
    "dw_dil_asym": ((1, 1, 7, 6), 3, (3, 1, 3, 2), {"group": 3, "dilations": [2, 1], "pads": [2, 1, 2, 0]}, True,
                    None, "dw_inplace"),
    "dw_same": ((1, 3, 5, 5), 5, (5, 1, 5, 5), {"group": 5, "auto_pad": "SAME_UPPER"}, True, "Sigmoid",
                "dw_inplace"),
    "dw_1d": ((1, 2, 9), 4, (4, 1, 3), {"group": 4, "pads": [1, 1]}, True, None, "dw_inplace"),
    "dw_3d": ((1, 2, 3, 4, 4), 2, (2, 1, 3, 3, 3), {"group": 2, "pads": [1] * 6}, True, None, "dw_inplace"),
    "pw": ((1, 3, 4, 5), 6, (6, 6, 1, 1), {}, True, "Relu", "pw_inplace"),
    "pw_batch2_nobias": ((2, 2, 3, 3), 4, (4, 4, 1, 1), {}, False, None, "pw_inplace"),
    "pw_1d": ((1, 2, 7), 5, (5, 5, 1), {}, True, "Tanh", "pw_inplace"),
}
# No variant: these keep the direct kernel (already tested in tests/ops/test_conv.py).
DIRECT = {
    "dw_stride2": ((1, 2, 6, 6), 4, (4, 1, 3, 3), {"group": 4, "pads": [1, 1, 1, 1], "strides": [2, 2]}, True,
                   None, "direct"),
    "dw_multiplier": ((1, 2, 5, 5), 2, (4, 1, 3, 3), {"group": 2, "pads": [1, 1, 1, 1]}, True, None, "direct"),
    "pw_padded": ((1, 2, 4, 4), 3, (3, 3, 1, 1), {"pads": [1, 1, 1, 1]}, True, None, "direct"),
    "pw_widens": ((1, 2, 4, 4), 3, (5, 3, 1, 1), {}, True, None, "direct"),
    "grouped": ((1, 2, 4, 4), 4, (4, 2, 1, 1), {"group": 2}, True, None, "direct"),
    "full3x3": ((1, 2, 5, 5), 3, (3, 3, 3, 3), {"pads": [1, 1, 1, 1]}, True, None, "direct"),
}


def conv_node(res):
    (node,) = [n for n in res.graph.nodes() if n.op == "Conv" and n.inputs[0] == "a"]
    return node


@pytest.mark.parametrize("name", sorted(DIRECT))
def test_no_variant(tmp_path, name):
    xs, c, ws, attrs, bias, act, _kernel = DIRECT[name]
    res = analyze(load(chain(tmp_path, xs, c, ws, attrs, bias, act)))
    assert conv_node(res).kernel == "direct" and not res.plan.alias.workspace


@pytest.mark.parametrize("name", sorted(CASES))
def test_inplace_variants_match_onnxruntime(tmp_path, name):
    xs, c, ws, attrs, bias, act, kernel = CASES[name]
    res = check_model(chain(tmp_path, xs, c, ws, attrs, bias, act), tmp_path)
    node = conv_node(res)
    assert node.kernel == kernel
    assert res.report["layers"][[n.name for n in res.graph.nodes()].index(node.name)]["kernel"] == kernel
    al = res.plan.alias
    assert al.kernel[node.name] == kernel and al.host(node.outputs[0]) == al.host("a")
    ws_name, ws_bytes = al.workspace[node.name]
    y = res.graph.tensors[node.outputs[0]]
    assert ws_bytes == 4 * (int(np.prod(y.shape[2:])) if kernel == "dw_inplace" else y.shape[1])
    assert ws_name in res.plan.offsets


@pytest.mark.parametrize("name", ["dw3x3", "pw"])
def test_no_overwrite_when_the_input_is_read_later(tmp_path, name):
    xs, c, ws, attrs, bias, _act, _ = CASES[name]
    res = check_model(chain(tmp_path, xs, c, ws, attrs, bias, None, read_again=True), tmp_path, opt_level=0)
    assert conv_node(res).kernel == "direct"


def test_graph_input_is_never_overwritten(tmp_path):
    ins, inits = weights("c", (3, 1, 3, 3))
    nodes = [helper.make_node("Conv", ["x", *ins], ["b"], group=3, pads=[1, 1, 1, 1]),
             helper.make_node("Softmax", ["b"], ["y"], axis=1)]
    res = check_model(save(make_model(nodes, [("x", (1, 3, 4, 4))], [("y", None)], inits), tmp_path),
                      tmp_path)
    assert all(n.kernel == "direct" for n in res.graph.nodes()) and not res.plan.alias.workspace


def test_output_buffer_hosts_the_inplace_conv(tmp_path):
    """The depthwise conv writes the graph output: its input moves into the caller's buffer."""
    i0, init0 = weights("c0", (4, 2, 1, 1))
    i1, init1 = weights("c1", (4, 1, 3, 3))
    nodes = [helper.make_node("Conv", ["x", *i0], ["a"]),
             helper.make_node("Conv", ["a", *i1], ["y"], group=4, pads=[1, 1, 1, 1])]
    path = save(make_model(nodes, [("x", (1, 2, 5, 5))], [("y", None)], {**init0, **init1}), tmp_path)
    res = check_model(path, tmp_path)
    assert conv_node(res).kernel == "dw_inplace"
    assert res.plan.alias.kind[res.plan.alias.host("a")] == "output"
    assert res.plan.arena_bytes == 4 * 25  # the workspace only


def test_depthwise_separable_stack_peak(tmp_path):
    """A DS-CNN-like stack: dw -> pw -> dw -> pw at 8 x 6 x 5. Peak: one map + one plane."""
    c, hw = 8, (6, 5)
    i0, init = weights("c0", (c, 1, 1, 1))
    nodes, last = [helper.make_node("Conv", ["x", *i0], ["t0"])], "t0"
    for k in range(4):
        shape = (c, 1, 3, 3) if k % 2 == 0 else (c, c, 1, 1)
        attrs = {"group": c, "pads": [1, 1, 1, 1]} if k % 2 == 0 else {}
        ins, more = weights(f"c{k + 1}", shape)
        init.update(more)
        nodes += [helper.make_node("Conv", [last, *ins], [f"u{k}"], **attrs),
                  helper.make_node("Relu", [f"u{k}"], [f"t{k + 1}"])]
        last = f"t{k + 1}"
    nodes.append(helper.make_node("GlobalAveragePool", [last], ["y"]))
    path = save(make_model(nodes, [("x", (1, 1, *hw))], [("y", None)], init), tmp_path)
    res = check_model(path, tmp_path)
    kernels = [n.kernel for n in res.graph.nodes() if n.op == "Conv"]
    assert kernels == ["direct", "dw_inplace", "pw_inplace", "dw_inplace"]  # the last pw is in a ConvPool
    fmap = c * hw[0] * hw[1] * 4
    assert res.plan.lower_bound_bytes == fmap + hw[0] * hw[1] * 4
    assert res.plan.arena_bytes == res.plan.lower_bound_bytes
    # -O0 (no fusion: every Relu its own node, in place) still uses the conv variants.
    g0 = analyze(load(path, opt_level=0))
    assert g0.plan.arena_bytes == res.plan.arena_bytes


def test_mlperf_kws_arena_below_tflm():
    from tests.util import MLPERF
    r = analyze(load(MLPERF / "mlperf_kws_dscnn.onnx")).report
    assert r["arena_bytes"] == r["arena_lower_bound_bytes"] == 32_000 + 25 * 5 * 4 < 64_000
    kernels = {row["kernel"] for row in r["layers"]}
    assert {"dw_inplace", "pw_inplace"} <= kernels
