"""`nncc analyze --plot` and the RAM column: the SVG is well-formed XML with one rectangle per
arena buffer placed where the plan puts it, the arena line sits on the top of the highest
buffer, the output is byte-for-byte deterministic, bad file names are refused, and the table and
report.json carry the bytes live at every layer (whose maximum is the lower bound)."""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from onnx import helper

from nncc.compiler import analyze, load
from nncc.memory import lifetimes
from nncc.plot import fit_label, geometry, render_svg, shorten
from nncc.table import ellipsize
from tests.test_errors import assert_user_error, conv_relu, nncc
from tests.util import FIXTURES, make_model, save

SVG = "{http://www.w3.org/2000/svg}"
MODELS = [FIXTURES / "mlperf_tiny" / "mlperf_ic_resnet8.onnx", FIXTURES / "zoo" / "tconv_concat_res.onnx"]


def planned(path):
    res = analyze(load(path))
    return res.graph, res.plan


def buffers(root) -> list[ET.Element]:
    return [r for r in root.iter(SVG + "rect") if r.get("class") == "buf"]


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_svg_rect_per_buffer(path):
    g, plan = planned(path)
    root = ET.fromstring(render_svg(g, plan).encode())
    rects = buffers(root)
    assert len(rects) == len(plan.offsets) > 0
    assert [r.get("data-name") for r in rects] == [b.name for b in lifetimes(g)]
    # one scale for every buffer: height / size and width / lifetime are constants
    geo = geometry(g, plan)
    span = {b.name: (b.first, b.last) for b in lifetimes(g)}
    sy, sx = geo["plot_h"] / (plan.arena_bytes * 1.1), geo["plot_w"] / len(plan.schedule)
    for r in rects:
        name = r.get("data-name")
        size, off = plan.sizes[name], plan.offsets[name]
        first, last = span[name]
        assert float(r.get("x")) == pytest.approx(geo["left"] + first * sx, abs=0.01)
        assert float(r.get("width")) == pytest.approx((last - first + 1) * sx, abs=0.02)
        bottom = float(r.get("y")) + float(r.get("height"))
        if size * sy >= 1:  # tinier ones are drawn 1 px high to stay visible
            assert bottom == pytest.approx(geo["bottom"] - off * sy, abs=0.02)
            assert float(r.get("height")) == pytest.approx(size * sy, abs=0.02)


@pytest.mark.parametrize("path", MODELS, ids=lambda p: p.stem)
def test_svg_bound_lines(path):
    g, plan = planned(path)
    root = ET.fromstring(render_svg(g, plan).encode())
    lines = {ln.get("id"): ln for ln in root.iter(SVG + "line") if ln.get("id")}
    arena, lower = lines["arena"], lines["lower-bound"]
    assert arena.get("y1") == arena.get("y2") and "stroke-dasharray" not in arena.attrib
    assert lower.get("stroke-dasharray")
    # the arena's top is the top of the highest buffer (y grows downwards)
    assert float(arena.get("y1")) == pytest.approx(min(float(r.get("y")) for r in buffers(root)), abs=0.02)
    assert float(lower.get("y1")) >= float(arena.get("y1"))
    title = "".join(root.find(SVG + "title").itertext())
    assert g.name in title
    assert f"{plan.arena_bytes:,}" in ET.tostring(root, encoding="unicode")


def test_svg_deterministic_and_cli(tmp_path):
    model = MODELS[1]
    a, b = tmp_path / "a.svg", tmp_path / "b.svg"
    for f in (a, b):
        r = nncc("analyze", model, "--plot", f)
        assert r.returncode == 0, r.stderr
        assert f"wrote {f}" in r.stdout
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() == render_svg(*planned(model)).encode()
    ET.parse(a)


@pytest.mark.parametrize("name,needle", [("plot.png", "PNG"), ("plot.pdf", ".svg"), ("plot", ".svg")])
def test_plot_refuses_other_formats(tmp_path, name, needle):
    model = save(conv_relu(), tmp_path, "conv.onnx")
    assert_user_error(nncc("analyze", model, "--plot", tmp_path / name), needle)
    assert not (tmp_path / name).exists()


def test_plot_unwritable(tmp_path):
    model = save(conv_relu(), tmp_path, "conv.onnx")
    assert_user_error(nncc("analyze", model, "--plot", tmp_path / "no" / "such" / "p.svg"), "cannot write")


def test_svg_empty_arena_and_escaped_names(tmp_path):
    # a single node: no intermediate tensor, the arena is empty
    m = make_model([helper.make_node("Relu", ["x"], ["y"])], [("x", (1, 4))], [("y", None)])
    g = load(save(m, tmp_path, "relu.onnx"))
    res = analyze(g)
    root = ET.fromstring(render_svg(res.graph, res.plan).encode())
    assert buffers(root) == [] and "arena is empty" in ET.tostring(root, encoding="unicode")
    # markup characters in tensor names are escaped
    w = np.ones((2, 1, 1, 1), np.float32)
    nodes = [helper.make_node("Conv", ["x", "w"], ["a<&>\"b"]), helper.make_node("Softmax", ["a<&>\"b"], ["y"])]
    g = load(save(make_model(nodes, [("x", (1, 1, 4, 4))], [("y", None)], {"w": w}), tmp_path, "esc.onnx"),
             opt_level=0)  # Softmax cannot run in place: the Conv output is an arena buffer
    res = analyze(g)
    root = ET.fromstring(render_svg(res.graph, res.plan).encode())
    assert [r.get("data-name") for r in buffers(root)] == ['a<&>"b']


def test_labels_fit():
    assert shorten("conv", 10) == "conv"
    assert shorten("/features/features.3/MaxPool_output_0", 20) == "\u2026features.3/MaxPool"
    assert shorten("/features/features.3/MaxPool_output_0", 12) == "\u2026MaxPool"
    assert shorten("model/activation_1/Relu;model/batch_norm/FusedBatchNormV3", 20) == "\u2026activation_1/Relu"
    assert shorten("abcdefghij", 4) == ""
    for name in ["x" * 50, "a/b/c/d/eeeeeeeeeeeeeeeeeeee", "t"]:
        for room in range(60):
            assert len(shorten(name, room)) <= max(room, 0)
    assert fit_label("conv", 200, 30) == ("conv", False)
    assert fit_label("a_long_tensor_name_here", 30, 300) == ("a_long_tensor_name_here", True)
    assert fit_label("conv", 200, 5) == ("", False)


def test_table_ram_column_and_json(tmp_path):
    model = MODELS[0]
    r = nncc("analyze", model)
    assert r.returncode == 0, r.stderr
    header = r.stdout.splitlines()[0].split()
    assert header[-2:] == ["RAM", "B"]
    rep = json.loads(nncc("analyze", model, "--json").stdout)
    live = [ly["live_bytes"] for ly in rep["layers"]]
    assert max(live) == rep["arena_lower_bound_bytes"] <= rep["arena_bytes"]
    peak = next(ly for ly in rep["layers"] if ly["live_bytes"] == max(live))
    assert f"peak at layer {ellipsize(peak['name'], 80)} ({max(live):,} B live)" in r.stdout
    # the RAM column of each layer row is its live_bytes
    rows = r.stdout.splitlines()[2:2 + len(rep["layers"])]
    assert [row.split()[-1] for row in rows] == [f"{v:,}" for v in live]
    # --json with --plot still prints pure JSON
    r = nncc("analyze", model, "--json", "--plot", tmp_path / "p.svg")
    assert json.loads(r.stdout) == rep and (tmp_path / "p.svg").is_file()
