"""The NNCC_GUARD build (templates/model.c.j2, runtime_c/nncc_runtime.h): run() checks after each
layer that it wrote nothing in the arena outside its outputs and scratch, and the harnesses check
that nothing was written past an output buffer. A write is injected into the generated C after a
layer's call: outside the layer's ranges it is reported with the layer's position, inside them it
is not; past the output buffer it is reported by the host harness and by the firmware."""
from __future__ import annotations

import re

import numpy as np
import pytest
from onnx import helper

from nncc import firmware
from nncc.codegen.emit import merge_ranges
from nncc.compiler import compile_model
from nncc.errors import BuildError
from nncc.host import HostModel
from tests.targets.test_firmware import need
from tests.util import make_model, save

RNG = np.random.default_rng(5)


def chain(tmp_path):
    """x -> Conv 3->4 -> Relu -> Conv 4->4 -> Relu -> Conv 4->2 -> y: two intermediates in the arena."""
    nodes, inits = [], {}
    for i, (m, c) in enumerate([(4, 3), (4, 4), (2, 4)]):
        inits[f"w{i}"] = RNG.standard_normal((m, c, 3, 3)).astype(np.float32)
        src = "x" if i == 0 else f"r{i - 1}"
        nodes.append(helper.make_node("Conv", [src, f"w{i}"], [f"c{i}"], pads=[1, 1, 1, 1]))
        nodes.append(helper.make_node("Relu", [f"c{i}"], ["y" if i == 2 else f"r{i}"]))
    return save(make_model(nodes, [("x", (1, 3, 6, 6))], [("y", None)], inits), tmp_path)


def ranges(code: str) -> list[list[tuple[int, int]]]:
    """Each layer's ranges from the generated guard table, in run()'s order."""
    table = re.search(r"_guard_ranges\[\] = \{\n(.*?)\n\};", code, re.DOTALL).group(1)
    out = []
    for line in table.splitlines():
        v = [int(n) for n in re.findall(r"(\d+)u", line)]
        assert v[-2:] == [0, 0]
        out.append(list(zip(v[:-2:2], v[1:-2:2])))
    return out


def inject(project, layer: int, statement: str) -> None:
    """Adds `statement` to run() right after the call of the layer at position `layer`."""
    f = next(project.glob("*.c"))
    code = f.read_text()
    calls = list(re.finditer(r"^    NNCC_GUARD_LAYER\((\d+), \d+\);$", code, re.MULTILINE))
    at = calls[layer].start()
    f.write_text(code[:at] + f"    {statement}\n" + code[at:])


def out_size(res) -> int:
    return int(np.prod(res.report["outputs"][0]["shape"]))


def run_host(res, sample):
    host = HostModel(res.out_dir, res.report)
    try:
        return host.run(sample)
    finally:
        host.close()


def test_merge_ranges():
    assert merge_ranges([(8, 12), (0, 4), (4, 6), (20, 20), (10, 16)]) == [(0, 6), (8, 16)]
    assert merge_ranges([]) == []


def test_guard_table_covers_outputs_and_scratch(tmp_path):
    res = compile_model(chain(tmp_path), tmp_path / "p")
    code = next(res.out_dir.glob("*.c")).read_text()
    r = ranges(code)
    assert len(r) == len(re.findall(r"^    NNCC_GUARD_LAYER", code, re.MULTILINE)) == 3
    # the two intermediates (4x6x6 floats) each in the arena; the last layer writes the caller's buffer
    assert [sum(e - b for b, e in x) for x in r] == [4 * 36 * 4, 4 * 36 * 4, 0]
    assert all(e <= res.report["arena_bytes"] for x in r for _, e in x)


def test_guard_reports_a_write_outside(tmp_path):
    path = chain(tmp_path)
    sample = {"x": RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    res = compile_model(path, tmp_path / "clean")
    want = run_host(res, sample)["y"]
    (b0, e0), = ranges(next(res.out_dir.glob("*.c")).read_text())[0]
    outside = e0 if e0 < res.report["arena_bytes"] else b0 - 1
    assert 0 <= outside < res.report["arena_bytes"]

    res = compile_model(path, tmp_path / "out", force=True)
    inject(res.out_dir, 0, f"arena[{outside}] ^= 1u;")
    with pytest.raises(BuildError, match=r"layer 0 \(in run\(\)'s order\) wrote outside"):
        run_host(res, sample)

    # inside the layer's own output: allowed, and the next layers' checks start from it
    res = compile_model(path, tmp_path / "in")
    inject(res.out_dir, 0, f"arena[{e0 - 1}] ^= 0x40u;")
    assert not np.array_equal(run_host(res, sample)["y"], want)

    res = compile_model(path, tmp_path / "past")
    inject(res.out_dir, 2, f"output[{out_size(res)}] = 1.0f;")
    with pytest.raises(BuildError, match="wrote past the end of output y"):
        run_host(res, sample)


@pytest.mark.cross
@pytest.mark.parametrize("where,message", [("arena", "returned an error: 1001"),
                                           ("output", "wrote past output 0")])
def test_guard_in_firmware(tmp_path, where, message):
    """The firmware built with -DNNCC_GUARD fails, saying why: run()'s error (the layer's position
    printed) or an output's canary overwritten. Built without it, the same firmware passes."""
    t = need("cortex-m4")
    res = firmware.compile_firmware(chain(tmp_path), tmp_path / "p", "cortex-m4", build_elf=False)
    r = ranges(next(res.out_dir.glob("model.c")).read_text())
    if where == "arena":
        (b1, e1), = r[1]
        inject(res.out_dir, 1, f"arena[{e1 if e1 < res.report['arena_bytes'] else b1 - 1}] ^= 1u;")
    else:
        inject(res.out_dir, 2, f"output[{out_size(res)}] = 1.0f;")
    firmware.build(res.out_dir, t, "EXTRA_CFLAGS=-Werror -DNNCC_GUARD")
    rr = firmware.run(res.out_dir, res.report)
    assert rr.status != 0 and message in rr.stdout, rr.stdout[-2000:]
    if where == "arena":  # the write changes no output: only the guard sees it
        firmware.build(res.out_dir, t, "-B", "EXTRA_CFLAGS=-Werror")
        rr = firmware.run(res.out_dir, res.report)
        assert rr.status == 0 and "nncc: OK" in rr.stdout, rr.stdout[-2000:]


@pytest.mark.cross
def test_validate_on_target_guards(tmp_path, monkeypatch):
    """`nncc validate --target` builds with NNCC_GUARD: a layer that writes outside its bytes is
    named (here injected into the project just before it is built)."""
    t = need("cortex-m4")
    path = chain(tmp_path)
    build = firmware.build

    def faulty_build(project, target, *make_args):
        r = ranges(next(project.glob("model.c")).read_text())
        (b1, e1), = r[1]
        inject(project, 1, f"arena[{b1 - 1 if b1 else e1}] ^= 1u;")
        assert "EXTRA_CFLAGS=-DNNCC_GUARD" in make_args
        return build(project, target, *make_args)

    monkeypatch.setattr(firmware, "build", faulty_build)
    sample = {"x": RNG.standard_normal((1, 3, 6, 6)).astype(np.float32)}
    with pytest.raises(BuildError, match=r"on cortex-m4, layer 1 \(in run\(\)'s order\) wrote outside"):
        firmware.validate_on_target(path, [sample], 1e-4, 1e-5, False, t.name)
