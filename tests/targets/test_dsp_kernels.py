"""The DSP-extension paths of the shared int8 conv kernels (templates/ops/conv_q_shared.c.j2 under
`__ARM_FEATURE_DSP`): built for cortex-m4 and run in QEMU, every int8 output equals the host
build's (the portable path), which equals the integer reference. The model exercises what those
paths special-case: 1x1 layers widened straight from their input over an odd number of pixels
(the last pixel gathered and computed twice), in place and not, with a fused residual Add; 1x1
layers gathered (C % 4 != 0) with an odd number of output channels, a weight row of 5 taps (a
partial last word), no bias; 3x3 depthwise layers whose inside columns come in pairs (stride 1)
and alone (odd count, stride 2, vertical dilation); 3x3 layers gathered (with a fused residual;
stride 2, asymmetric pads). The portable paths' assembly sums (ARMv6-M's, RISC-V's) run the
same model on cortex-m0plus and rv32imac."""
from __future__ import annotations

import re
import shutil
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

from nncc import firmware
from nncc.compiler import compile_model
from nncc.ops.qconv_shared import FIELDS, QADD_FIELDS, mm_weights
from nncc.quant.quantize import QuantOptions
from tests.quant.qutil import build, check_exact, conv, conv_chain, samples
from tests.quant.test_inplace_q import CASES as INPLACE_CASES
from tests.quant.test_inplace_q import chain
from tests.quant.test_qconv_shared import model as shared_model
from tests.quant.test_winograd import EDGES as WINO_EDGES
from tests.quant.test_winograd import XS as WINO_XS
from tests.quant.test_winograd import model as wino_model
from tests.quant.test_winograd import one_conv
from tests.targets.test_firmware import int8_qemu_equals_host, need
from tests.util import make_model, save

pytestmark = pytest.mark.cross
RNG = np.random.default_rng(11)
XS = (1, 8, 5, 5)  # 25 pixels: 12 pairs and a last one


def model(tmp_path):
    """x -> 1x1 8->8 (in place) -> Relu -> 1x1 8->12 -> 1x1 12->12 + residual -> dw 3x3 ->
    3x3 12->12 + residual -> 1x1 12->5 (no bias, odd M) -> 1x1 5->4 (C % 4 != 0) -> dw 3x3
    stride 2, dilations 2x1 -> 3x3 4->6 stride 2, asymmetric pads -> y."""
    layers = [("a", "x", "a", (8, 8, 1, 1), {}),
              ("b", "ar", "b", (12, 8, 1, 1), {}),
              ("c", "b", "c", (12, 12, 1, 1), {}),
              ("d", "s", "d", (12, 1, 3, 3), {"group": 12, "pads": [1, 1, 1, 1]}),
              ("h", "d", "h", (12, 12, 3, 3), {"pads": [1, 1, 1, 1]}),
              ("e", "t", "e", (5, 12, 1, 1), {}, False),
              ("f", "e", "f", (4, 5, 1, 1), {}),
              ("g", "f", "g", (4, 1, 3, 3), {"group": 4, "strides": [2, 2], "dilations": [2, 1],
                                             "pads": [2, 1, 2, 1]}),
              ("k", "g", "y", (6, 4, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 1]})]
    nodes, inits = conv_chain(RNG, layers, {"a": [helper.make_node("Relu", ["a"], ["ar"])],
                                            "c": [helper.make_node("Add", ["c", "b"], ["s"])],
                                            "h": [helper.make_node("Add", ["d", "h"], ["t"])]})
    return save(make_model(nodes, [("x", XS)], [("y", None)], inits), tmp_path)


@pytest.mark.parametrize("scaling", ["fixed", "shift"])
def test_dsp_paths_equal_host_and_reference(tmp_path, scaling):
    need("cortex-m4")
    path = model(tmp_path)
    res = build(path, tmp_path / "host", samples(XS, 6, 0), scaling=scaling)
    check_exact(res, samples(XS, 3, 1))  # the host (portable path) == the integer reference
    code = next(res.out_dir.glob("*.c")).read_text()
    defined = set(re.findall(r"^(?:NNCC_[A-Z_]+ )*static void nncc_qconv_([a-z0-9]+_ob\d)_", code, re.MULTILINE))
    assert defined == {"mm_ob4", "mm_ob1", "dw3_ob1"}  # each with its DSP path and the portable one
    # fused residuals (a 1x1 layer's and a 3x3 one's: one function), a layer in place
    fused = re.findall(r"^(?:NNCC_[A-Z_]+ )*static void (nncc_qconv_\w+_qadd_\w+)\(", code, re.MULTILINE)
    assert len(fused) == 1 and len(re.findall(rf"^    {fused[0]}\(&p, &qa, ", code, re.MULTILINE)) == 2
    if scaling == "fixed":  # both fused QAdds (the conv first, the residual first) computed inline
        qa = structs(code, "qadd")
        assert [(v["conv_first"], v["fast"], v["table"].endswith("_table")) for v in qa] == [(1, 1, True), (0, 1, True)], qa
    assert ", ws);" in code
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(XS, 6, 0), scaling=scaling), samples(XS, 2, 2))


@pytest.mark.parametrize("m", [5, 6])
def test_dsp_mm_fused_qadd(tmp_path, m):
    """Fused residual Adds computed in nncc_qconv_mm_sums()'s epilogue (q->rp): a 1x1 layer over
    its own input (the conv first) and a 3x3 one (the residual first), odd and even channel
    counts (an odd count's last channel alone reads no residual past its own) over a plane of
    35 pixels (its last quad short: 3 pixels, whose residuals and outputs go through the
    scratch); the host equals the integer reference and QEMU the host."""
    xs = (1, m, 5, 7)
    rng = np.random.default_rng(21 + m)
    n0, i0 = conv(rng, "a", "x", "a", (m, m, 1, 1), True)
    n1, i1 = conv(rng, "b", "s", "b", (m, m, 3, 3), True, pads=[1, 1, 1, 1])
    nodes = [n0, helper.make_node("Add", ["a", "x"], ["s"]), n1, helper.make_node("Add", ["s", "b"], ["y"])]
    path = save(make_model(nodes, [("x", xs)], [("y", None)], {**i0, **i1}), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    check_exact(res, samples(xs, 3, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    qa = structs(code, "qadd")
    assert [(v["conv_first"], v["fast"], v["table"].endswith("_table")) for v in qa] == [(1, 1, True), (0, 1, True)]
    assert "q.rp = rn + m * plane + px;" in code and "nncc_qadd_lut_init(qa, &q.qa);" in code
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 2, 2))


@pytest.mark.parametrize("c,hw,attrs,opt", [(4, (7, 9), {}, ""), (4, (7, 9), {}, "-O0"),
                                            (2, (6, 5), {"strides": [2, 1]}, ""),
                                            (6, (8, 8), {"dilations": [2, 1], "pads": [2, 1, 2, 1]}, ""),
                                            (4, (5, 10), {"pads": [1, 2, 1, 2]}, ""), (3, (6, 9), {}, ""),
                                            (3, (6, 9), {}, "-O0"), (1, (5, 8), {}, ""),
                                            (2, (4, 5), {"pads": [1, 2, 1, 0]}, "")])
def test_dsp_widen3(tmp_path, c, hw, attrs, opt):
    """3x3 layers of stride 1 across whose quads are widened straight from the input
    (nncc_qconv_widen3()): inside it, at the left and right edges (the pad column read from the
    input's neighbouring bytes, its terms then zeroed), quads whose pad column would fall before
    or past the input, two columns of pad, and those on two rows or at the top and bottom
    (gathered; with 2 pad columns left and none right, a quad that wraps to the next row is
    adjacent in memory, and not a row's 4 pixels); vertical stride and dilation; an odd C (its
    last channel's 5 pairs alone), one channel; unoptimized (its C form). The host equals the
    integer reference and QEMU the host."""
    xs = (1, c, *hw)
    rng = np.random.default_rng(31 + c)
    n, i = conv(rng, "a", "x", "y", (5, c, 3, 3), True, **{"pads": [1, 1, 1, 1], **attrs})
    path = save(make_model([n], [("x", xs)], [("y", None)], i), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    check_exact(res, samples(xs, 3, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert "nncc_qconv_widen3(p, xn, px, nzp, xw)" in code
    # nncc_qconv_col() divides by the dilations only where a layer has one (k.needs)
    assert ("const int dh = p->dh, dw = p->dw;" in code) == ("dilations" in attrs)
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 3, 2), opt)


@pytest.mark.parametrize("hw", [(6, 5), (3, 11)])
def test_dsp_mm_px(tmp_path, hw):
    """A plane whose last quad is short by 2 or 3 pixels (30 = 7 x 4 + 2, 33 = 8 x 4 + 1): its
    last pixels' outputs by nncc_qconv_mm_px() (1x1 layers, one in place, one widened from
    its input; a 3x3 one gathered; odd and even channel counts); a fused QAdd's layer keeps the
    quad path. The host equals the integer reference and QEMU the host."""
    xs = (1, 4, *hw)
    layers = [("a", "x", "a", (6, 4, 1, 1), {}), ("b", "a", "b", (6, 6, 1, 1), {}),
              ("c", "b", "c", (5, 6, 3, 3), {"pads": [1, 1, 1, 1]}),
              ("d", "c", "d", (5, 5, 1, 1), {})]
    nodes, inits = conv_chain(np.random.default_rng(41), layers,
                              {"d": [helper.make_node("Add", ["d", "c"], ["y"])]})
    path = save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    check_exact(res, samples(xs, 3, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert "nncc_qconv_mm_px(p, xw, x1, x2, kc, M, np, yn + px, plane);" in code
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 3, 2))


def test_dsp_mm_px_after_a_layer_without_bias(tmp_path):
    """nncc_qconv_mm_px() (a plane of 25 pixels: its last alone) is shared by the model's layers
    with a bias; a layer without one, before them, neither calls it nor decides its text (it
    reads the biases). The host equals the integer reference and QEMU the host, built with
    -Werror."""
    xs = (1, 4, 5, 5)
    layers = [("a", "x", "a", (4, 4, 3, 3), {"pads": [1, 1, 1, 1]}, False), ("b", "a", "y", (5, 4, 1, 1), {})]
    nodes, inits = conv_chain(np.random.default_rng(43), layers)
    path = save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    check_exact(res, samples(xs, 3, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert code.count("nncc_qconv_mm_px(p, xw, x1, x2, kc, M, np, yn + px, plane);") == 1
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 3, 2))


@pytest.mark.parametrize("c,hw,attrs,opt", [(4, (9, 16), {"pads": [0, 0, 1, 1]}, ""),
                                            (2, (9, 16), {"pads": [0, 0, 1, 1]}, "-O0"),
                                            (6, (7, 19), {}, ""), (4, (8, 18), {"dilations": [2, 1]}, ""),
                                            (4, (9, 15), {"pads": [0, 0, 1, 2]}, ""),
                                            (3, (9, 16), {"pads": [0, 0, 1, 1]}, ""),
                                            (3, (9, 16), {"pads": [0, 0, 1, 1]}, "-O0"),
                                            (1, (7, 19), {}, ""), (5, (8, 18), {"dilations": [2, 1]}, "")])
def test_dsp_widen3s2(tmp_path, c, hw, attrs, opt):
    """3x3 layers of stride 2 across whose quads are widened straight from the input
    (nncc_qconv_widen3s2()): inside it, at the left and right edges with one column of pad (the
    byte before or after the row read, its terms then zeroed) but not where that byte is outside
    the input, quads with two pad columns on the right, on two rows, or at the bottom (gathered);
    vertical dilation; an odd C (its last row alone: 2 tap pairs, the second with the pad tap),
    one channel; unoptimized (no assembly: all gathered). The host equals the integer reference
    and QEMU the host."""
    xs = (1, c, *hw)
    rng = np.random.default_rng(51 + c)
    n, i = conv(rng, "a", "x", "y", (5, c, 3, 3), True, **{"pads": [1, 1, 1, 1], "strides": [2, 2], **attrs})
    path = save(make_model([n], [("x", xs)], [("y", None)], i), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    check_exact(res, samples(xs, 3, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert "!direct && nncc_qconv_widen3s2(p, xn, px, nzp, xw)" in code
    # quads on two rows (outputs across not a multiple of 4) keep nncc_qconv_col()'s inside way
    assert ("if (inside)" in code) == (res.report["outputs"][0]["shape"][-1] % 4 != 0)
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 3, 2), opt)


def test_dsp_col_outside_only(tmp_path):
    """A model whose every quad inside the input is widened from it: a 1x1 layer of 4 channels
    (63 pixels: its short last quad gathered) and a 3x3 stride-2 layer of 3 channels whose quads
    are all on one row (4 outputs across; a row of pad above and below: the top and bottom
    rows' quads gathered). nncc_qconv_col() keeps only its general way; the outputs are the
    same."""
    xs = (1, 4, 7, 9)
    path = convs(tmp_path, xs, 57, [("a", "x", "a", (3, 4, 1, 1)),
                                    ("b", "a", "y", (5, 3, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 1]})])
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    check_exact(res, samples(xs, 3, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert "nncc_qconv_widen3s2(p, xn, px, nzp, xw)" in code and "if (inside)" not in code
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 3, 2))


@pytest.mark.parametrize("hw,short", [((5, 7), True), ((5, 5), False), ((6, 3), False)])
def test_dsp_mm_short_quad(tmp_path, hw, short):
    """A plane whose last quad has 3 pixels (35): nncc_qconv_mm_sums() writes its outputs to the
    scratch and they are copied out; with 1 or 2 (25, 18) nncc_qconv_mm_px() takes them and the
    scratch path is left out (k.needs "mm_short"). 1x1 and 3x3 layers; the same as the host."""
    xs = (1, 4, *hw)
    path = convs(tmp_path, xs, 59, [("a", "x", "a", (6, 4, 1, 1)),
                                    ("b", "a", "y", (5, 6, 3, 3), {"pads": [1, 1, 1, 1]})])
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    check_exact(res, samples(xs, 3, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert ("int8_t *const qo = (int8_t *)acc;" in code) == short
    assert ("nncc_qconv_mm_px(p, xw, x1, x2, kc, M, np, yn + px, plane);" in code) != short
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 3, 2))


def structs(code: str, kind: str = "qconv") -> list[dict]:
    """The values of each layer's nncc_qconv_params (or nncc_qadd_params) struct, by field (a
    QAdd's table pointer as its text: its array's name, or 0)."""
    fields = list(FIELDS) if kind == "qconv" else [f for f, _ in QADD_FIELDS.values()] + ["fast", "table"]
    rows = re.findall(rf"static const nncc_{kind}_params \w+ = \{{ ([-0-9, ]+(?:, w_\w+)?) \}};", code)
    return [dict(zip(fields, (v if v.startswith("w_") else int(v) for v in r.split(", ")), strict=True))
            for r in rows]


def m4_equals_host(tmp_path, path, quant, inputs, cflags="", target="cortex-m4"):
    """The model's int8 firmware runs in QEMU (cortex-m4, or target) and every output equals the
    host's."""
    fw = int8_qemu_equals_host(path, inputs, target, tmp_path / target, quant, cflags)
    assert [(o["name"], o["dtype"]) for o in fw.report["outputs"]] == [("y", "int8")]


@pytest.mark.parametrize("opt", ["-O0", "-Os", "-fno-omit-frame-pointer", "-ffixed-r9"])
def test_dsp_paths_other_optimization(tmp_path, opt):
    """Built unoptimized, or optimized with a frame pointer or a reserved register (too few
    registers for the assembly loops, which give way to their C forms: NNCC_NO_ASM14, which the
    firmware Makefile defines for those flags), or for size, the same outputs."""
    need("cortex-m4")
    path = model(tmp_path)
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(XS, 6, 0)), samples(XS, 2, 2), opt)


@pytest.mark.parametrize("target,opt", [(t, o) for t in ("cortex-m0plus", "rv32imac")
                                        for o in ("", "-O0", "-O1", "-Os")]
                         + [("cortex-m0plus", "-masm-syntax-unified")])
def test_portable_asm_sums(tmp_path, target, opt):
    """The portable "mm" paths' assembly sums at any optimization level (and with GCC reading
    ARMv6-M inline assembly in either syntax): ARMv6-M's 4 channels of a pixel (the 1x1 loop and
    the gathering one), RISC-V's 4 channels of 4 pixels (a plane's last pass short: 25 pixels).
    1x1 layers in place, with a fused residual, with C % 4 != 0 (zero taps past C), 3x3 layers
    gathered with a fused residual; and a batch of 2 without bias through every shared kind.
    Every output equals the host's (layers not flagged q8: narrow_clamp)."""
    need(target)
    path = model(tmp_path)
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(XS, 6, 0)), samples(XS, 2, 2), opt,
                   target=target)
    (tmp_path / "b2").mkdir()
    path, xs = shared_model(tmp_path / "b2", batch=2, bias=False)
    draw = samples(xs, 8, 4)
    m4_equals_host(tmp_path / "b2", path, QuantOptions(samples=draw[:6]), draw[6:], opt, target=target)


@pytest.mark.parametrize("case", ["batch2_nobias", "pw_1d", "dw_1d"])
def test_dsp_paths_other_shapes(tmp_path, case):
    """The same on the shapes the portable tests cover: a batch of 2 without bias through every
    shared kind (groups, dilations, odd channel counts; tests/quant/test_qconv_shared.py), and
    1-D layers in place (tests/quant/test_inplace_q.py)."""
    need("cortex-m4")
    if case == "batch2_nobias":
        path, xs = shared_model(tmp_path, batch=2, bias=False)
    else:
        xs, c, ws, attrs, bias, act, _ = INPLACE_CASES[case]
        path = chain(tmp_path, xs, c, ws, attrs, bias, act, False)
    draw = samples(xs, 8, 4)
    m4_equals_host(tmp_path, path, QuantOptions(samples=draw[:6]), draw[6:])


def test_dsp_dw3_rows(tmp_path):
    """3x3 depthwise layers a row at a time (nncc_qconv_dw3_row() / _row2(), stride 1 / 2
    across, flagged q8): even and odd row lengths, dilation down, stride 2 down, no bias, and a
    plane of several bands (the buffer holds DW3_BUF bytes of rows) in place; the same outputs
    as the host."""
    need("cortex-m4")
    xs = (1, 4, 40, 40)
    rng = np.random.default_rng(5)
    layers = [("a", (4, 1, 3, 3), True, {"pads": [1, 1, 1, 1]}),  # 40 x 40: 2 bands
              ("b", (4, 1, 3, 3), False, {"dilations": [2, 1], "pads": [2, 1, 2, 1]}),
              ("c", (4, 1, 3, 3), True, {"strides": [2, 1], "pads": [1, 1, 1, 1]}),  # 20 x 40
              ("d", (4, 1, 3, 3), True, {"pads": [1, 0, 1, 1]}),  # 20 x 39
              ("e", (4, 1, 3, 3), True, {"strides": [2, 2], "pads": [1, 1, 1, 1]}),  # 10 x 20
              ("f", (4, 1, 3, 3), True, {"strides": [1, 2], "pads": [1, 0, 1, 1]}),  # 10 x 10
              ("g", (4, 1, 3, 3), True, {"strides": [1, 2], "pads": [1, 1, 1, 0]})]  # 10 x 5
    # every layer's last column reaches the output (an odd row's last output included)
    nodes, inits, last = [], {}, "x"
    for name, ws, bias, attrs in layers:
        n, i = conv(rng, name, last, name, ws, bias, group=4, **attrs)
        last = "y" if name == layers[-1][0] else name + "r"
        nodes += [n, helper.make_node("Relu", [name], [last])]
        inits.update(i)
    path = save(make_model(nodes, [("x", xs)], [(last, None)], inits), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    check_exact(res, samples(xs, 2, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert [v["q8"] for v in structs(code)] == [1] * 7
    assert "const int row = 1;" in code  # every layer by rows: the scalar path is left out (k.needs)
    assert "(sw == 1 ? nncc_qconv_dw3_row : nncc_qconv_dw3_row2)(q, " in code
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


@pytest.mark.parametrize("iw", [4, 7, 8, 9, 11, 16, 17])
def test_dsp_dw3_band_rows(tmp_path, iw):
    """The input rows a 3x3 depthwise layer copies into its padded buffer, by their width: 4 to 7
    (the first 4 bytes and the last 4), 8 (one 8-byte step), 9 to 17 (8-byte steps, then the last
    8 overlapping); at stride 1 and 2 across, the pad columns left as x_zp: the same outputs as
    the host."""
    need("cortex-m4")
    xs = (1, 3, 6, iw)
    path = convs(tmp_path, xs, 63, [("a", "x", "a", (3, 1, 3, 3), {"group": 3, "pads": [1, 1, 1, 1]}),
                                    ("b", "a", "y", (3, 1, 3, 3), {"group": 3, "strides": [1, 2],
                                                                   "pads": [1, 0, 1, 1]})])
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    check_exact(res, samples(xs, 2, 1))
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


def test_dsp_dw3_one_wide(tmp_path):
    """A 3x3 depthwise layer one output wide at stride 1 (nncc_qconv_dw3_row() takes two or more
    a row) goes through the scalar sums, and its rows through nncc_qconv_dw3_row() where wider
    (an odd width: its last output's step of its own): the same outputs as the host."""
    need("cortex-m4")
    xs = (1, 4, 9, 3)
    rng = np.random.default_rng(7)
    nodes, inits = [], {}
    for name, x, y, attrs in [("a", "x", "a", {"pads": [1, 1, 1, 1]}),  # 9 x 3
                              ("b", "a", "y", {"pads": [1, 0, 1, 0]})]:  # 9 x 1
        n, i = conv(rng, name, x, y, (4, 1, 3, 3), True, group=4, **attrs)
        nodes.append(n)
        inits.update(i)
    path = save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    check_exact(res, samples(xs, 2, 1))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert "const int row = sw <= 2 && p->q8 && ow > 1;" in code
    assert "nncc_qconv_dw3_row2" not in code  # no layer of stride 2 across (k.needs)
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


@pytest.mark.parametrize("pool", ["GlobalAveragePool", "AveragePool"])
def test_dsp_whole_plane_average(tmp_path, pool):
    """An int8 average pool whose one window is the whole plane (63 elements: 15 words summed 4
    at a time by nncc_sum_i8(), then 3 alone) between two convolutions: the same outputs as the
    host's, which equal the integer reference."""
    need("cortex-m4")
    xs = (1, 4, 9, 7)
    rng = np.random.default_rng(9)
    n0, i0 = conv(rng, "a", "x", "a", (6, 4, 3, 3), True, pads=[1, 1, 1, 1])
    attrs = {"kernel_shape": [9, 7]} if pool == "AveragePool" else {}
    n1, i1 = conv(rng, "b", "p", "y", (4, 6, 1, 1), True)
    path = save(make_model([n0, helper.make_node(pool, ["a"], ["p"], **attrs), n1], [("x", xs)],
                           [("y", None)], {**i0, **i1}), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    check_exact(res, samples(xs, 2, 1))
    assert "nncc_sum_i8(xp, 63)" in next(res.out_dir.glob("*.c")).read_text()
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


def convs(tmp_path, xs, seed: int, layers) -> Path:
    """A model of convolutions with bias: (name, input, output, weight shape[, attributes]) each."""
    rng = np.random.default_rng(seed)
    nodes, inits = [], {}
    for name, x, y, ws, *attrs in layers:
        n, i = conv(rng, name, x, y, ws, True, **(attrs[0] if attrs else {}))
        nodes.append(n)
        inits.update(i)
    return save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path)


def test_dsp_mm_one_step(tmp_path):
    """Weight rows of one 4-tap step (the loop entered at its second half): 1x1 layers 3 -> 4
    (3 taps padded to 4) and 4 -> 5 (an odd channel count: the last paired with zeros, its
    outputs stored once); the same as the host."""
    xs = (1, 3, 5, 4)
    path = convs(tmp_path, xs, 9, [("a", "x", "a", (4, 3, 1, 1)), ("b", "a", "y", (5, 4, 1, 1))])
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


def test_dsp_gather_3x3(tmp_path):
    """The gatherer's rows of 3 taps: inside the input at stride 1 (4 pixels on a row: a tap's
    inputs one word; 3 rows a channel, or 2), at stride 2 (a 2x3 window, 4 pixels on a row: the
    taps' words from the row's 9 bytes by UXTB16; quads that straddle output rows; a 3x3 window
    is widened by nncc_qconv_widen3s2() instead) and above and below it (pads on top and bottom
    only: whole rows); the same as the host."""
    xs = (1, 3, 13, 15)
    path = convs(tmp_path, xs, 14, [("a", "x", "a", (4, 3, 3, 3)),
                                    ("e", "a", "e", (4, 4, 2, 3)),
                                    ("b", "e", "b", (5, 4, 2, 3), {"strides": [2, 2]}),
                                    ("c", "b", "y", (4, 5, 3, 3), {"pads": [1, 0, 1, 0]})])
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert "memcpy(col + 32, r + 2 * rs + 2, 4);" in code and "whole rows of 3 taps" in code and "if (s2k3)" in code
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


def test_dsp_gather_rows_of_4(tmp_path):
    """The gatherer's rows of 4 adjacent taps at the border, a word each (KWS's first layer: a
    10x4 window at stride 2 over one channel, padded as TensorFlow's "same"; then two channels):
    pixels whose row is whole, cut by the left or right pad, or above and below the input; the
    same as the host."""
    xs = (1, 1, 21, 10)
    path = convs(tmp_path, xs, 16, [("a", "x", "a", (2, 1, 10, 4), {"strides": [2, 2], "pads": [4, 1, 5, 1]}),
                                    ("b", "a", "y", (4, 2, 4, 4), {"pads": [2, 1, 1, 2]})])
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    check_exact(res, samples(xs, 2, 1))
    assert "whole rows of 4 adjacent taps" in next(res.out_dir.glob("*.c")).read_text()
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


def test_dsp_gather_3x3_borders(tmp_path):
    """The gatherer at the border: pixel quads on one row at stride 1 (words shifted at the left
    or the right edge, rows above and below x_zp: nncc_qconv_col_row3()), at stride 2 (whole rows
    above and below; inside quads on a row from words), on an input 4 wide (both edges: the
    narrowest the shifted words read within) and 2 wide (the byte loops), quads across rows,
    and a plane's last quad short of 4 pixels; the same as the host."""
    xs = (1, 3, 9, 9)
    path = convs(tmp_path, xs, 15, [("d", "x", "d", (4, 3, 3, 3), {"pads": [1, 1, 1, 1]}),  # 9 x 9
                                    ("e", "d", "e", (4, 4, 3, 3), {"strides": [2, 2], "pads": [1, 0, 1, 0]}),  # 5 x 4
                                    ("f", "e", "f", (4, 4, 3, 3), {"pads": [1, 1, 1, 1]}),  # 5 x 4
                                    ("g", "f", "g", (4, 4, 3, 3), {"pads": [1, 0, 1, 0]}),  # 5 x 2
                                    ("h", "g", "y", (3, 4, 3, 3), {"pads": [1, 1, 1, 1]})])  # 5 x 2
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    check_exact(res, samples(xs, 2, 1))
    assert "nncc_qconv_col_row3(xn + j * iw" in next(res.out_dir.glob("*.c")).read_text()
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2))


@pytest.mark.parametrize("opt,m", [("", 5), ("-O0", 5), ("", 17), ("-O0", 17)])
def test_dsp_mm_odd_channels_in_place(tmp_path, opt, m):
    """A pair's outputs straight from its sums (flagged q8, a bias): an odd channel count's last
    channel is computed and stored alone (5 channels: after two pairs; 17: after eight, all in
    one call per quad). In place over a batch of 2 (1x1 m -> m), a store past the last channel
    of image 0 would land on image 1's inputs before they are read. Unoptimized builds store the
    sums and take the outputs helper instead (17: blocks of 8, 8 and 1)."""
    xs = (2, 3, 4, 5)
    path = convs(tmp_path, xs, 12, [("a", "x", "a", (m, 3, 1, 1)), ("b", "a", "y", (m, m, 1, 1))])
    res = build(path, tmp_path / "host", samples(xs, 4, 0))
    assert [r["kernel"] for r in res.report["layers"]] == ["direct", "pw_inplace"]
    assert [v["q8"] for v in structs(next(res.out_dir.glob("*.c")).read_text())] == [1, 1]
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 4, 0)), samples(xs, 2, 2), opt)


@pytest.mark.parametrize("target", ["cortex-m4", "rv32imac", "cortex-m0plus"])
def test_dsp_paths_narrow_clamp(tmp_path, target):
    """Layers whose clamp is narrower than int8's (a Relu whose output shares a Concat's range:
    act_min > -128) are not flagged q8 and take the general requantization on the DSP paths (and
    on the portable loops where a q8 layer's requantization is inline: rv32imac's "mm" loop, 4
    channels of 4 pixels a step there, and ARMv6-M's 1x1 and gathering loops): a 1x1 ("mm"), a
    3x3 ("mm", gathered) and a 3x3 depthwise ("dw3") layer of each flag, the same outputs as the
    host."""
    need(target)
    xs = (1, 8, 6, 6)
    rng = np.random.default_rng(3)
    nodes, inits = [], {}
    for name, ws, attrs in [("a", (8, 8, 1, 1), {}), ("b", (8, 8, 1, 1), {}),
                            ("c", (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
                            ("d", (8, 1, 3, 3), {"group": 8, "pads": [1, 1, 1, 1]}),
                            ("e", (8, 8, 3, 3), {"pads": [1, 1, 1, 1]}), ("f", (8, 8, 3, 3), {"pads": [1, 1, 1, 1]})]:
        n, i = conv(rng, name, "x", name, ws, True, **attrs)
        nodes.append(n)
        inits.update(i)
    nodes += [helper.make_node("Relu", ["a"], ["ar"]), helper.make_node("Relu", ["c"], ["cr"]),
              helper.make_node("Relu", ["e"], ["er"]),
              helper.make_node("Concat", ["ar", "b", "cr", "d", "er", "f"], ["y"], axis=1)]
    path = save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 6, 0))
    code = next(res.out_dir.glob("*.c")).read_text()
    assert sorted(v["q8"] for v in structs(code)) == [0, 0, 0, 1, 1, 1]
    # both paths kept (k.needs): the dw3 rows where flagged, the scalar sums and the general
    # requantization for the others
    assert "const int row = sw <= 2 && p->q8 && ow > 1;" in code and "any other layer" in code
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0)), samples(xs, 2, 2), target=target)


def test_mm_weights_order():
    """mm_weights(): per channel pair its taps in order, each tap's byte of the first channel,
    then of the second; rows zero-padded to a multiple of 4 taps, an odd count's last row paired
    with zeros (5 channels of 3x1x3 = 9 taps: 3 pairs of 12)."""
    w = np.arange(1, 46, dtype=np.int8).reshape(5, 3, 1, 3)
    got = mm_weights(w).reshape(-1)
    want = []
    for pair in range(3):
        for t in range(12):
            want += [int(w[c].reshape(-1)[t]) if c < 5 and t < 9 else 0 for c in (2 * pair, 2 * pair + 1)]
    assert got.tolist() == want


@pytest.mark.parametrize("blob", [False, True])
def test_mm_weights_emitted(tmp_path, blob):
    """The "mm" kind's weights are emitted in that order (f: 1x1 5 -> 4, rows of 5 padded to 8,
    2 pairs: 32 bytes, each pair's last 3 taps zeros), in a list and in the blob."""
    res = compile_model(model(tmp_path), tmp_path / "p", force=True, **({"blob_threshold": 0} if blob else {}),
                        quant=QuantOptions(samples=samples(XS, 2, 0)))
    text = next(res.out_dir.glob("*_weights.h")).read_text()
    if not blob:
        decl = re.findall(r"/\* \S+ \(mm_weights\): 2x8x2 \*/\nstatic const int8_t \w+\[(\d+)\] = \{\n([^}]*)\}", text)
        assert [d[0] for d in decl] == ["32"]
        emitted = [int(v) for v in decl[0][1].replace("\n", " ").split(",") if v.strip()]
        assert len(emitted) == 32 and emitted[10:16] == emitted[26:32] == [0] * 6  # rows' padding
        return
    size = int(re.search(r"unsigned char b\[(\d+)\];", text).group(1))
    offsets = sorted(int(v) for v in re.findall(r"_weights\.b \+ (\d+)\)\)", text))
    f = int(re.search(r"_weights\.b \+ (\d+)\)\) /\* 2x8x2 \*/", text).group(1))
    after = [o for o in offsets if o > f]
    assert (after[0] if after else size) >= f + 32


@pytest.mark.parametrize("opts", [{}, {"scaling": "shift"}, {"scaling": "double-shift"},
                                  {"packed": False, "per_channel": False}])
def test_gemm_8_outputs_rv32(tmp_path, opts):
    """The portable Gemm's form of 8 outputs per loaded input (N % 8 == 0; their requantization in
    a loop; RISC-V and x86-64), in every requantization form: on the host equal to the integer
    reference, on rv32imac to the host. The rows' scales spread over 2^7, so the channels'
    shifts differ."""
    rng = np.random.default_rng(16)
    w = rng.standard_normal((16, 12)) * 0.4 * 2.0 ** (np.arange(16) % 8 - 4)[:, None]
    inits = {"W": w.astype(np.float32), "B": rng.standard_normal(16).astype(np.float32)}
    nodes = [helper.make_node("Gemm", ["x", "W", "B"], ["y"], transB=1)]
    xs = (1, 12)
    path = save(make_model(nodes, [("x", xs)], [("y", None)], inits), tmp_path)
    res = build(path, tmp_path / "host", samples(xs, 6, 0), **opts)
    check_exact(res, samples(xs, 3, 2))
    need("rv32imac")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(xs, 6, 0), **opts), samples(xs, 3, 2), target="rv32imac")


def test_packed_slack(tmp_path):
    """nncc_qconv_mm_sums() reads a channel pair's two packed int16 together: a group-1 layer
    with an odd channel count (1x1 3 -> 5) carries one zero more; an even one (5 -> 4) none."""
    xs = (1, 3, 4, 4)
    path = convs(tmp_path, xs, 12, [("a", "x", "a", (5, 3, 1, 1)), ("b", "a", "y", (4, 5, 1, 1))])
    res = compile_model(path, tmp_path / "p", force=True, quant=QuantOptions(samples=samples(xs, 2, 0)))
    text = next(res.out_dir.glob("*_weights.h")).read_text()
    decl = re.findall(r"/\* \S+: (\d+)(, and 1 zeros a kernel may read past its end)? \*/\n"
                      r"static const int16_t \w+\[(\d+)\]", text)
    assert sorted(decl) == [("4", "", "4"), ("5", ", and 1 zeros a kernel may read past its end", "6")]


@pytest.mark.parametrize("target", ["cortex-m4", "cortex-m0plus"])
@pytest.mark.parametrize("opt", ["", "-O0"])
def test_q8_requantization_equals_general(tmp_path, target, opt):
    """nncc_q8_30() (nncc_fixed.h), the requantization of the layers flagged q8 (qconv_shared.py),
    in its DSP form (SMMLAR, SSAT: cortex-m4) and its ARMv6-M form (the high word from 16 x 16
    products in assembly: cortex-m0plus; the portable form: test_fixed_point.py), equals
    nncc_requantize() on 200,000 draws over its whole domain, and nncc_smmlar() the 64-bit
    product over the whole int32 range (its edges, 200,000 uniform draws): the check
    (c/q8_check.c) replaces the project's main.c and runs in QEMU, at -O2 and -O0."""
    t = need(target)
    res = firmware.compile_firmware(model(tmp_path), tmp_path / "p", target, build_elf=False,
                                    quant=QuantOptions(samples=samples(XS, 2, 0)))
    shutil.copy(Path(__file__).parent / "c" / "q8_check.c", res.out_dir / "main.c")
    firmware.build(res.out_dir, t, f"EXTRA_CFLAGS=-Werror {opt}")
    rr = firmware.run(res.out_dir, res.report)
    assert rr.status == 0 and "q8_check: OK" in rr.stdout, rr.stdout[-500:]


@pytest.mark.parametrize("opt", ["", "-O0"])
def test_dsp_winograd(tmp_path, opt):
    """The Winograd kernel's DSP paths (the sums' assembly loop, over 2 loop steps; the input
    transform on int16 halves, 4 columns a word from each channel, an odd C's last channel
    alone) and, unoptimized, the sums' C form: the same outputs as the host."""
    path = wino_model(tmp_path)
    need("cortex-m4")
    m4_equals_host(tmp_path, path, QuantOptions(samples=samples(WINO_XS, 4, 0), winograd=True),
                   samples(WINO_XS, 2, 2), opt)


@pytest.mark.parametrize("case", [0, 4])
def test_dsp_winograd_edge_shapes(tmp_path, case):
    """A batch of 2; C 17 over 3 quads a row: the same outputs as the host."""
    xs, m, pads = WINO_EDGES[case]
    need("cortex-m4")
    m4_equals_host(tmp_path, one_conv(tmp_path, xs, m, pads), QuantOptions(samples=samples(xs, 3, 0), winograd=True),
                   samples(xs, 2, 2))


def gemm_chain(tmp_path, dims, seed):
    """x (1 x dims[0]) -> Gemm -> Relu -> ... -> y: one fully connected layer per pair of dims."""
    rng = np.random.default_rng(seed)
    nodes, inits, x = [], {}, "x"
    for i, (k, n) in enumerate(pairwise(dims)):
        inits[f"w{i}"] = (rng.standard_normal((n, k)) / np.sqrt(k)).astype(np.float32)
        inits[f"b{i}"] = (0.1 * rng.standard_normal(n)).astype(np.float32)
        y = "y" if i == len(dims) - 2 else f"r{i}"
        nodes.append(helper.make_node("Gemm", [x, f"w{i}", f"b{i}"], [f"g{i}"], transB=1))
        nodes.append(helper.make_node("Relu", [f"g{i}"], [y]))
        x = y
    return save(make_model(nodes, [("x", (1, dims[0]))], [("y", None)], inits), tmp_path)


@pytest.mark.parametrize("opt", ["", "-Os"])
def test_gemm4_sums_past_a_call(tmp_path, opt):
    """A "gemm4dsp" layer of shift scaling, whose requantization GCC calls rather than inlines
    at -Os: the 4 sums nncc_qgemm4_loop leaves in r0..r3 are read before that call (it clobbers
    r1..r3). QEMU equals the host."""
    need("cortex-m4")
    path = gemm_chain(tmp_path, (84, 96), 5)
    quant = QuantOptions(samples=samples((1, 84), 6, 0), scaling="shift")
    m4_equals_host(tmp_path, path, quant, samples((1, 84), 2, 2), opt)


@pytest.mark.parametrize("dims,loop", [((36, 64, 64, 28, 24, 20, 16, 12, 8, 4, 6), True), ((20, 12, 8, 16, 6), False)])
@pytest.mark.parametrize("target,opt", [("cortex-m4", ""), ("cortex-m4", "-Os"), ("cortex-m4", "-O0"),
                                        ("cortex-m4", "-fno-omit-frame-pointer"), ("cortex-m0plus", "")])
def test_gemm4(tmp_path, dims, loop, target, opt):
    """Fully connected layers with the "gemm4" kernels (weights interleaved by 4 rows: the Arm
    targets' choice; "gemm4dsp" on DSP cores, the input row widened into its workspace) over
    K = 32 t + 4 s for every s (nncc_qgemm4_loop entered at each of its 8 steps, a turn of 32
    inputs after) and N = 6 (not a whole block: the rows as they are). With a layer of 4,096 MACs the model has
    the shared loop and every gemm4 layer calls it (also built for size); without, they run the C
    2-output loop, as they do unoptimized or with a frame pointer (NNCC_NO_ASM14). The target's project built on the host
    equals the integer reference, and QEMU equals the host."""
    path = gemm_chain(tmp_path, dims, 61)
    xs = (1, dims[0])
    quant = QuantOptions(samples=samples(xs, 6, 0))
    need(target)
    res = firmware.compile_firmware(path, tmp_path / "fw", target, build_elf=False, quant=quant)
    kernel = "gemm4" if target == "cortex-m0plus" else "gemm4dsp"  # DSP cores: a widened row
    layers = res.report["layers"]
    assert [r["kernel"] for r in layers] == [kernel] * (len(dims) - 2) + ["direct"], layers
    assert [r["workspace_bytes"] for r in layers] == [2 * k if kernel == "gemm4dsp" else 0
                                                      for k in dims[:-2]] + [0]
    code = next(res.out_dir.glob(f"{res.report['model']}.c")).read_text()
    loop = loop and kernel == "gemm4dsp"
    assert ("static void nncc_qgemm4_loop(void)" in code) == loop
    if loop:
        calls = re.findall(r'"bl (nncc_qgemm4_loop\w*)"', code)
        assert calls == ["nncc_qgemm4_loop_1", "nncc_qgemm4_loop", "nncc_qgemm4_loop"] + [
            f"nncc_qgemm4_loop_{s}" for s in range(7, 1, -1)], calls
    check_exact(res, samples(xs, 3, 1))  # the portable gemm4 loops, compiled for the host
    m4_equals_host(tmp_path, path, quant, samples(xs, 3, 2), opt, target)
