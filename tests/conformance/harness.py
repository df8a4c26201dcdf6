"""ONNX conformance cases replayed through nncc: compile, build, run, compare to the stored output.

Sources: the node cases of the installed onnx (built in-process), and the `pytorch-converted`
and `pytorch-operator` folders shipped in the onnx wheel. A case is in scope when every operator
it uses is listed in ops.txt and all its tensors are float32; every other case must be refused
with a clear UnsupportedOp. Inputs that nncc needs at compile time (Reshape shapes, Pad pads,
Clip bounds...) are turned into initializers from the case's data: nncc compiles them as constants.

`python -m tests.conformance.harness [--op Conv] [-k name]` prints the pass table per operator.
"""
from __future__ import annotations

import argparse
import functools
import glob
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
DATA = Path(onnx.__file__).parent / "backend" / "test" / "data"
RTOL, ATOL = 1e-4, 1e-5


@dataclass
class Case:
    name: str
    source: str
    model: onnx.ModelProto
    data_sets: list  # [(inputs, outputs)] as numpy arrays, in graph order

    @property
    def ops(self) -> set[str]:
        return {n.op_type for n in self.model.graph.node}


def supported_ops() -> set[str]:
    return {ln.split("#")[0].strip() for ln in (HERE / "ops.txt").read_text().splitlines()} - {""}


def known_bad() -> dict[str, str]:
    """Cases whose stored output disagrees with both onnxruntime and onnx.reference."""
    return _listing("known_bad.txt")


def refused() -> dict[str, str]:
    """Cases of supported operators that nncc refuses on purpose (training-mode semantics)."""
    return _listing("refused.txt")


def _listing(file: str) -> dict[str, str]:
    out = {}
    for ln in (HERE / file).read_text().splitlines():
        if ln.strip() and not ln.startswith("#"):
            name, _, why = ln.partition("#")
            out[name.strip()] = why.strip()
    return out


@functools.lru_cache(maxsize=1)
def node_cases() -> dict[str, Case]:
    from onnx.backend.test.case.node import collect_testcases
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = collect_testcases(None)
    return {c.name: Case(c.name, "node", c.model, [(list(i), list(o)) for i, o in c.data_sets])
            for c in cases if c.model is not None and c.data_sets}


def _read_pb(path: str) -> np.ndarray:
    t = onnx.TensorProto()
    t.ParseFromString(Path(path).read_bytes())
    return numpy_helper.to_array(t)


def _dir_case(d: Path, source: str) -> Case:
    sets = []
    for ds in sorted(glob.glob(str(d / "test_data_set_*"))):
        ins = [_read_pb(p) for p in sorted(glob.glob(f"{ds}/input_*.pb"), key=_pb_index)]
        outs = [_read_pb(p) for p in sorted(glob.glob(f"{ds}/output_*.pb"), key=_pb_index)]
        sets.append((ins, outs))
    return Case(d.name, source, onnx.load(str(d / "model.onnx")), sets)


def _pb_index(p: str) -> int:
    return int(Path(p).stem.split("_")[-1])


@functools.lru_cache(maxsize=1)
def dir_cases() -> dict[str, Case]:
    out = {}
    for source in ("pytorch-converted", "pytorch-operator"):
        for d in sorted((DATA / source).iterdir()):
            if (d / "model.onnx").is_file():
                out[f"{source}/{d.name}"] = _dir_case(d, source)
    return out


def all_cases() -> dict[str, Case]:
    return {**{f"node/{k}": v for k, v in node_cases().items()}, **dir_cases()}


def _all_float(case: Case) -> bool:
    """Float32 data in and out; int64 inputs only where nncc takes them as compile-time
    parameters (shapes, axes, pads)."""
    g = case.model.graph
    const = _const_input_names(case.model, int64_inputs=False)
    for vi in list(g.input) + list(g.output):
        t = vi.type
        if not t.HasField("tensor_type"):
            return False
        if t.tensor_type.elem_type == onnx.TensorProto.FLOAT:
            continue
        if not (_compile_time_type(t) and vi.name in const):
            return False
    return True


def _compile_time_type(t) -> bool:
    return t.HasField("tensor_type") and t.tensor_type.elem_type == onnx.TensorProto.INT64


def in_scope(case: Case, ops: set[str] | None = None) -> bool:
    ops = supported_ops() if ops is None else ops
    return case.ops <= ops and _all_float(case)


def _const_input_names(model: onnx.ModelProto, int64_inputs: bool = True) -> set[str]:
    """Graph inputs that feed an operator input nncc needs at compile time."""
    from nncc.ops import op_class
    opset = next((i.version for i in model.opset_import if i.domain in ("", "ai.onnx")), 1)
    names = set()
    for n in model.graph.node:
        cls = op_class(n.op_type, opset)
        for idx in getattr(cls, "const_inputs", ()):
            if idx < len(n.input) and n.input[idx]:
                names.add(n.input[idx])
    if int64_inputs:  # shapes, axes and pads: parameters, not data
        names |= {vi.name for vi in model.graph.input if _compile_time_type(vi.type)}
    return names


def freeze_inputs(case: Case, inputs: list) -> tuple[onnx.ModelProto, dict]:
    """-> (model with compile-time inputs as initializers, runtime feeds by name)."""
    m = onnx.ModelProto()
    m.CopyFrom(case.model)
    const = _const_input_names(m)
    inits = {t.name for t in m.graph.initializer}
    data_inputs = [vi for vi in m.graph.input if vi.name not in inits]
    feeds, drop = {}, set()
    for vi, value in zip(data_inputs, inputs):
        if vi.name in const:
            m.graph.initializer.append(numpy_helper.from_array(np.asarray(value), vi.name))
            if m.ir_version >= 4:  # older IR lists every initializer as a graph input too
                drop.add(vi.name)
        else:
            feeds[vi.name] = value
    keep = [vi for vi in m.graph.input if vi.name not in drop]
    del m.graph.input[:]
    m.graph.input.extend(keep)
    return m, feeds


def run_case(case: Case, workdir: Path | None = None) -> None:
    """Compile the case, run every data set and assert the outputs match (raises otherwise)."""
    from nncc.compiler import compile_model
    from nncc.host import HostModel
    with tempfile.TemporaryDirectory(prefix="nncc-conf-") as tmp:
        tmp = Path(workdir or tmp)
        for i, (inputs, expected) in enumerate(case.data_sets):
            model, feeds = freeze_inputs(case, inputs)
            path = tmp / f"model_{i}.onnx"
            onnx.save(model, str(path))
            res = compile_model(path, tmp / f"proj_{i}", force=True, name="conf")
            host = HostModel(res.out_dir, res.report)
            try:
                got = host.run(feeds)
            finally:
                host.close()
            for t, want in zip(res.report["outputs"], expected):
                np.testing.assert_allclose(got[t["name"]], np.asarray(want).reshape(t["shape"]),
                                           rtol=RTOL, atol=ATOL, err_msg=f"{case.name} output {t['name']}")


def refusal(case: Case) -> str | None:
    """The UnsupportedOp message nncc gives for an out-of-scope case (None if it compiled)."""
    from nncc.errors import NnccError
    from nncc.frontend import import_onnx
    try:
        model, _ = freeze_inputs(case, case.data_sets[0][0]) if case.data_sets else (case.model, {})
        import_onnx(model, "conf")
    except NnccError as e:
        return str(e)
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--op", help="only cases using this operator")
    ap.add_argument("-k", help="only cases whose name contains this")
    a = ap.parse_args()
    ops, bad = supported_ops(), known_bad()
    table: dict[str, list[int]] = {}
    failures = []
    for name, case in sorted(all_cases().items()):
        if (a.op and a.op not in case.ops) or (a.k and a.k not in name):
            continue
        if not in_scope(case, ops) or name in bad:
            continue
        try:
            run_case(case)
            ok = True
        except Exception as e:  # noqa: BLE001  # report every failure, keep going
            ok = False
            failures.append((name, " ".join(str(e).split())[:300]))
        for op in case.ops:
            row = table.setdefault(op, [0, 0])
            row[0 if ok else 1] += 1
    for name, msg in failures:
        print(f"FAIL {name}: {msg}")
    print(f"{'op':24} pass fail")
    for op, (p, f) in sorted(table.items()):
        print(f"{op:24} {p:4} {f:4}")
    print(f"{len(failures)} failed cases")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    raise SystemExit(main())
