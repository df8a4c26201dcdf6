"""Weight emission: number lists below the blob threshold, one aligned byte-string blob above
it. Both must build with strict flags and give the same numbers; a 16 MB model must build in
reasonable time and memory (measured, see test_large_blob_builds)."""
from __future__ import annotations

import os
import subprocess
import time

import numpy as np
import pytest
from onnx import helper

from nncc.codegen.emit import BLOB_THRESHOLD
from nncc.host import STRICT_CFLAGS, compiler
from tests.util import check_model, make_model, save


def two_convs(tmp_path, c=4):
    """Conv(3x3, bias of odd size) -> Relu -> Conv(1x1): tensors of sizes that need padding."""
    rng = np.random.default_rng(7)
    inits = {"W1": rng.standard_normal((c + 1, 3, 3, 3)).astype(np.float32),
             "B1": rng.standard_normal(c + 1).astype(np.float32),
             "W2": rng.standard_normal((c, c + 1, 1, 1)).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "W1", "B1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["r"]),
             helper.make_node("Conv", ["r", "W2"], ["y"])]
    m = make_model(nodes, [("x", (1, 3, 6, 6))], [("y", None)], inits)
    return save(m, tmp_path), sum(v.nbytes for v in inits.values())


def is_blob(res) -> bool:
    name = res.report["model"]
    return f"{name}_weights.b +" in (res.out_dir / f"{name}_weights.h").read_text()


def test_blob_matches_lists(tmp_path):
    model, _ = two_convs(tmp_path)
    lists = check_model(model, tmp_path / "lists")
    blob = check_model(model, tmp_path / "blob", blob_threshold=0)
    assert not is_blob(lists) and is_blob(blob)


def test_threshold_boundary(tmp_path):
    model, nbytes = two_convs(tmp_path)
    assert not is_blob(check_model(model, tmp_path / "at", blob_threshold=nbytes, ort=False))
    assert is_blob(check_model(model, tmp_path / "above", blob_threshold=nbytes - 1, ort=False))


def test_default_threshold(tmp_path):
    """A model just over BLOB_THRESHOLD uses the blob by default."""
    c = int(np.sqrt(BLOB_THRESHOLD / 4)) + 1
    w = np.random.default_rng(0).standard_normal((c, c, 1, 1)).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "W"], ["y"])], [("x", (1, c, 1, 1))], [("y", None)],
                   {"W": w})
    assert w.nbytes > BLOB_THRESHOLD
    assert is_blob(check_model(save(m, tmp_path), tmp_path))


def gcc_usage(src, out) -> tuple[float, float]:
    """(seconds, peak MB) of one strict `gcc -c`, cc1 included (wait4 reports reaped children)."""
    t = time.perf_counter()
    p = subprocess.Popen([compiler(), *STRICT_CFLAGS, "-c", str(src), "-o", str(out)],
                         stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, p.stderr.read().decode()[:2000]
    return time.perf_counter() - t, ru.ru_maxrss / 1024


@pytest.mark.slow
def test_large_blob_builds(tmp_path):
    """1x1 Conv 2048 -> 2048: 16.8 MB of weights. On the development machine: emit 1.6 s,
    gcc -O2 2.3 s and 340 MB peak (as number lists: emit 22 s, gcc 19-37 s, 1.25 GB)."""
    from nncc.compiler import compile_model
    c = 2048
    w = np.random.default_rng(0).standard_normal((c, c, 1, 1)).astype(np.float32)
    m = make_model([helper.make_node("Conv", ["x", "W"], ["y"])], [("x", (1, c, 1, 1))], [("y", None)],
                   {"W": w})
    t = time.perf_counter()
    res = compile_model(save(m, tmp_path), tmp_path / "proj")
    emit_s = time.perf_counter() - t
    secs, mb = gcc_usage(res.out_dir / f"{res.report['model']}.c", tmp_path / "m.o")
    print(f"16 MB weights: emit {emit_s:.1f} s, gcc {secs:.1f} s, peak {mb:.0f} MB")
    assert is_blob(res) and emit_s < 30 and secs < 60 and mb < 1500
