"""The shared int8 conv kernels' scratch (widened inputs, padded rows, sums) is planned in the
arena as the node's workspace (nncc/ops/qconv_shared.py), not declared on the C stack: the
generated C of the int8 MLPerf Tiny models has no local array above a few bytes, and every
workspace lies 4-byte aligned inside the arena report.json states, at least as large as the
scratch its layer's kernel path reads (sizes derived here from the layer shapes, qutil.min_scratch),
and is the layer's `workspace_bytes` in report.json."""
from __future__ import annotations

import json
import re

import pytest

from nncc.compiler import compile_model
from tests.quant.qutil import min_scratch
from tests.targets.test_code_size import MODELS, calib
from tests.util import MLPERF

MAX_LOCAL = 64  # bytes: small fixed arrays (a few sums) may stay on the stack
SIZES = {"char": 1, "int8_t": 1, "uint8_t": 1, "int16_t": 2, "uint16_t": 2, "int32_t": 4,
         "uint32_t": 4, "float": 4, "int64_t": 8, "uint64_t": 8, "double": 8}
DECL = re.compile(r"^(?:static\s+)?(?:const\s+)?(?:unsigned\s+)?(" + "|".join(SIZES) + r")\s+(.*)$", re.DOTALL)


def function_bodies(c: str) -> list[str]:
    """The bodies of the functions defined in C text c (comments and # lines dropped, so both
    branches of an #if count)."""
    c = re.sub(r"/\*.*?\*/", "", c, flags=re.DOTALL)
    c = re.sub(r"^\s*#.*$", "", c, flags=re.MULTILINE)
    bodies, depth, start = [], 0, None
    for m in re.finditer(r"[{}]", c):
        if m.group() == "{":
            if depth == 0:
                head = c[max(c.rfind(";", 0, m.start()), c.rfind("}", 0, m.start())) + 1:m.start()]
                start = m.start() if head.rstrip().endswith(")") else None
            depth += 1
        else:
            depth -= 1
            if depth == 0 and start is not None:
                bodies.append(c[start:m.end()])
    return bodies


def declarators(text: str) -> list[str]:
    """A declaration's declarators without their initializers (split at top-level commas)."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [d.split("=")[0] for d in out + [cur]]


def local_arrays(c: str) -> list[tuple[str, int]]:
    """(declarator, bytes) of every array declared inside a function of C text c."""
    found = []
    for body in function_bodies(c):
        for stmt in re.split(r"[;{}]", body):
            m = DECL.match(stmt.strip())
            if not m:
                continue
            for d in declarators(m.group(2)):
                dims = re.findall(r"\[([^\]]*)\]", d)
                if dims:
                    n = 1
                    for v in dims:
                        n *= int(v)  # a size that is not a number fails loudly
                    found.append((f"{m.group(1)} {d.strip()}", n * SIZES[m.group(1)]))
    return found


def test_local_arrays_finds_stack_buffers():
    c = ("static const int8_t w[3] = {1, 2, 3};\nstatic union { unsigned char b[4096]; } a;\n"
         "static void f(int8_t *y)\n{\n    int32_t xw[256], r[4];\n    int32_t q = w[2], s[2] = {0, 0};\n"
         "#if defined(X)\n    int16_t col[576];\n#endif\n    { int8_t buf[1024]; }\n}\n")
    assert local_arrays(c) == [("int32_t xw[256]", 1024), ("int32_t r[4]", 16), ("int32_t s[2]", 8),
                               ("int16_t col[576]", 1152), ("int8_t buf[1024]", 1024)]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_mlperf_int8_scratch_in_the_arena(tmp_path, name):
    res = compile_model(MLPERF / f"{name}.onnx", tmp_path / "p", quant=calib(name))
    rep = json.loads((tmp_path / "p" / "report.json").read_text())
    assert rep["precision"] == "int8"
    c = (tmp_path / "p" / f"{rep['model']}.c").read_text()
    big = [a for a in local_arrays(c) if a[1] > MAX_LOCAL]
    assert not big, big
    plan, scratched = res.plan, 0
    for node in res.graph.nodes():
        need = min_scratch(res.graph, node) if node.op == "QConv" else 0
        if node.name not in plan.alias.workspace:
            assert need == 0, node.name
            continue
        ws, size = plan.alias.workspace[node.name]
        off = plan.offsets[ws]
        assert off % 4 == 0 and off + size <= rep["arena_bytes"], (node.name, off, size)
        assert size >= need, (node.name, size, need)
        row = next(r for r in rep["layers"] if r["name"] == node.name)
        assert row["workspace_bytes"] == size and row["live_bytes"] >= size, row
        scratched += need > 0
    assert scratched > 0 or name == "mlperf_ad_fcae"  # AD: fully connected only
