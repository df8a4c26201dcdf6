"""ONNX names that are not C identifiers: reserved words, punctuation, unicode, names equal after
sanitising or up to case, and names that would end a C comment. They must compile warning-free
and give the right numbers; the C names stay unique."""
from __future__ import annotations

import numpy as np
import pytest
from onnx import helper

from nncc.codegen.cnames import Namer, comment_text, model_prefix, sanitize
from nncc.errors import UsageError
from tests.util import check_model, make_model, save


def test_names_that_are_not_c_identifiers(tmp_path):
    rng = np.random.default_rng(2)
    inits = {"1x": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "int": rng.standard_normal(4).astype(np.float32),
             "a-b": rng.standard_normal((4, 4, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["input:0", "1x", "int"], ["a.b"], pads=[1, 1, 1, 1], name="for"),
             helper.make_node("Relu", ["a.b"], ["a_b"], name="a.b"),
             helper.make_node("Conv", ["a_b", "a-b"], ["x y"], name="a_b"),
             helper.make_node("Relu", ["x y"], ["ñame é"], name="ünï code"),
             helper.make_node("Relu", ["a.b"], ["output"], name="int")]
    m = make_model(nodes, [("input:0", (1, 3, 8, 8))],
                   [("ñame é", None), ("output", None), ("a.b", None), ("a_b", None)], inits)
    res = check_model(save(m, tmp_path), tmp_path)
    assert [t["name"] for t in res.report["outputs"]] == ["ñame é", "output", "a.b", "a_b"]


def test_names_that_break_c_comments(tmp_path):
    nodes = [helper.make_node("Relu", ["in*/put"], ["a/*b"], name="n*/1"),
             helper.make_node("Relu", ["a/*b"], ["o\nu\\"], name="n\n2??/")]
    m = make_model(nodes, [("in*/put", (1, 3, 2))], [("o\nu\\", None)])
    check_model(save(m, tmp_path), tmp_path)


def test_names_equal_but_for_case(tmp_path):
    """`A` and `a` give distinct C names, but NAME_<OUTPUT>_SIZE macros are upper-cased."""
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Conv", ["x", "w"], ["A"])]
    w = np.ones((2, 3, 1, 1), np.float32)
    m = make_model(nodes, [("x", (1, 3, 2, 2))], [("a", None), ("A", None)], {"w": w})
    check_model(save(m, tmp_path), tmp_path)


@pytest.mark.parametrize("name", ["input:0", "1x", "a.b", "a-b", "int", "for", "x y", "ñame", "__x",
                                  "", "main", "arena", "_"])
def test_sanitize_gives_identifiers(name):
    s = sanitize(name)
    assert s.isidentifier() and s.isascii() and not s.startswith("__")
    assert s not in ("int", "for", "main", "arena", "input", "output")


def test_namer_unique_even_up_to_case():
    n = Namer()
    got = [n(x, "t") for x in ["a.b", "a_b", "a-b", "A_B", "a.b"]]
    assert got[0] == got[4]  # the same tensor keeps its name
    assert len({g.lower() for g in got[:4]}) == 4


@pytest.mark.parametrize("name", ["a*/b", "/*", "x\n*/y", "é"])
def test_comment_text(name):
    c = comment_text(name)
    assert "*/" not in c and "/*" not in c and c.isascii() and "\n" not in c


@pytest.mark.parametrize("name", ["kws", "Net_2", "a"])
def test_model_prefix_ok(name):
    assert model_prefix(name) == name


@pytest.mark.parametrize("name", ["1x", "a b", "int", "_x", "nncc", "nncc_runtime", "", "é"])
def test_model_prefix_refused(name):
    with pytest.raises(UsageError):
        model_prefix(name)
