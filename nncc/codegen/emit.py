"""Emit: IR + memory plan -> a C project directory.

Python gathers names, shapes, offsets and constants; every line of C comes from templates/ or
runtime_c/. Files written: NAME.h, NAME.c, NAME_weights.h, nncc_runtime.h, Makefile, report.json.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..dtypes import CTYPES
from ..ir import Graph, TensorInfo
from ..memory import MemoryPlan
from ..ops import make_op
from ..quant.int16 import qrange
from ..resources import resource_dir
from .cnames import Namer, comment_text
from .consts import kernel_constants, laid_name
from .env import make_env

# Above this many weight bytes, weights are emitted as one byte-string blob: gcc parses a
# string literal ~10x faster and in a third of the memory of a list of float literals.
BLOB_THRESHOLD = 1 << 20


@dataclass
class TensorRef:
    """How generated code reaches one tensor."""
    name: str
    cname: str
    shape: tuple
    size: int
    ctype: str
    kind: str  # "input", "output", "const", "arena"
    offset: int = 0  # bytes into the arena (kind "arena"), else elements past `cname`
    data: np.ndarray | None = field(default=None, repr=False)
    slack: int = 0  # a constant's zeros after its elements: some kernel reads past its end


@dataclass
class Weights:
    tensors: list[TensorRef]
    blob: bytes | None  # raw little-endian bytes when emitted as a blob
    offsets: dict[str, int]


def merge_ranges(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Byte ranges [begin, end) sorted, overlapping or touching ones joined, empty ones left out."""
    out: list[tuple[int, int]] = []
    for b, e in sorted(r for r in ranges if r[1] > r[0]):
        if out and b <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((b, e))
    return out


class Emitter:
    def __init__(self, g: Graph, plan: MemoryPlan, prefix: str, target_dir: Path | None = None,
                 blob_threshold: int = BLOB_THRESHOLD, layer_marks: bool = False):
        self.g, self.plan, self.prefix = g, plan, prefix
        self.layer_marks = layer_marks  # nncc bench --per-layer: nncc_bench_mark() after each kernel
        self.env = make_env(target_dir)
        self.env.filters["comment"] = comment_text  # ONNX names are printed inside /* */ only
        self.namer = Namer()
        self.blob_threshold = blob_threshold
        self.refs: dict[str, TensorRef] = {}
        self._make_refs()

    def _make_refs(self) -> None:
        g = self.g
        for i, t in enumerate(g.inputs):
            self._ref(t, "input", self.namer(t, "in") if len(g.inputs) > 1 else "input")
        for t in g.outputs:
            if t not in self.refs and not g.is_const(t):
                self._ref(t, "output", self.namer(t, "out") if len(g.outputs) > 1 else "output")
        kc = kernel_constants(g)
        for t in g.used_constants():
            if t not in self.refs and (t in kc.passed or t in g.outputs):
                self._ref(t, "const", self.namer(t, "w"))
                self.refs[t].slack = kc.slack.get(t, 0)
        # a constant some kernel reads in an order of its own: a reordered array of its own,
        # under the constant's name where no kernel reads the constant as it is
        self.laid: dict[tuple[str, int], str] = {}
        for (node, j, t), fn in kc.layouts.items():
            key = laid_name(t, fn)
            if key not in self.refs:
                info = g.tensors[t]
                data = fn(info.data)
                cname = self.namer(key if t in self.refs else t, "w")
                self.refs[key] = TensorRef(key, cname, tuple(data.shape), int(data.size), CTYPES[str(data.dtype)],
                                           "const", data=data, slack=kc.slack.get(t, 0))
            self.laid[(node, j)] = key
        for t in g.intermediates():
            self._intermediate_ref(t)

    def _intermediate_ref(self, t: str) -> None:
        """An intermediate lives in the arena, or inside the memory of another tensor it
        aliases (nncc/memory/alias.py): a caller buffer or a constant, at some offset."""
        host, off = self.plan.alias.loc.get(t, (t, 0))
        kind = self.plan.alias.kind.get(host, "arena")
        if kind == "arena":
            self._ref(t, "arena", self.namer(t, "t"), self.plan.offsets[host] + off)
        else:
            h = self.refs[host]
            self._ref(t, h.kind, h.cname, off // np.dtype(self.g.tensors[t].dtype).itemsize)

    def _ref(self, t: str, kind: str, cname: str, offset: int = 0) -> None:
        info: TensorInfo = self.g.tensors[t]
        self.refs[t] = TensorRef(t, cname, tuple(info.shape), info.size, CTYPES[info.dtype], kind,
                                 offset, info.data)

    # -- pieces -------------------------------------------------------------------------------
    def weights(self) -> Weights:
        consts = [r for r in self.refs.values() if r.kind == "const"]
        total = sum(r.data.nbytes for r in consts)
        if total <= self.blob_threshold:
            return Weights(consts, None, {})
        offsets, chunks, pos = {}, [], 0
        for r in consts:
            raw = np.ascontiguousarray(r.data).astype(r.data.dtype.newbyteorder("<")).tobytes()
            pad = -pos % 16  # keep every tensor 16-byte aligned inside the blob
            chunks.append(b"\0" * pad + raw + b"\0" * (r.slack * r.data.itemsize))
            pos += pad
            offsets[r.name] = pos
            pos += len(raw) + r.slack * r.data.itemsize
        return Weights(consts, b"".join(chunks), offsets)

    def kernels(self) -> list[dict]:
        out, shared = [], set()
        alias = self.plan.alias
        for i, node in enumerate(self.g.nodes()):
            if node.name in alias.skipped:
                continue  # a view or a concat whose inputs were all written in place
            op = make_op(node)
            ins = [self.g.tensors[t] if t else None for t in node.inputs]
            outs = [self.g.tensors[t] for t in node.outputs if t]
            args, call = [], []
            for j, t in enumerate(node.inputs):
                if t and j not in op.const_inputs:
                    r = self.refs[self.laid.get((node.name, j), t)]
                    args.append({"name": f"x{j}", "const": True, "ctype": r.ctype})
                    call.append(r)
            for j, t in enumerate(node.outputs):
                if t:
                    args.append({"name": f"y{j}", "const": False, "ctype": self.refs[t].ctype})
                    call.append(self.refs[t])
            writes = [(self.refs[t].offset, self.refs[t].offset + self.g.tensors[t].nbytes)
                      for t in node.outputs if t and self.refs[t].kind == "arena"]
            if node.name in alias.workspace:  # scratch planned in the arena: last argument `ws`
                ws, size = alias.workspace[node.name]
                wt = outs[0].dtype  # a workspace holds elements of the kernel's output type
                ct, n = CTYPES[wt], size // np.dtype(wt).itemsize
                args.append({"name": "ws", "const": False, "ctype": ct})
                call.append(TensorRef(ws, ws, (n,), n, ct, "arena", self.plan.offsets[ws]))
                writes.append((self.plan.offsets[ws], self.plan.offsets[ws] + size))
            k = {"fn": f"node_{i}", "name": comment_text(node.name), "op": node.op, "attrs": node.attrs,
                 "ins": ins, "outs": outs, "args": args, "call": call, "kernel": node.kernel,
                 "writes": merge_ranges(writes)}
            k.update(op.context(ins, outs))
            # Inputs their producers already wrote into this node's output (concat slices).
            k["placed"] = [f"x{j}" for j in alias.placed.get(node.name, [])]
            k["template"] = op.template
            out.append(k)
        # What the shared pieces must handle for this model: each kernel's "shared_needs" (paths
        # of a shared function only some layers take), OR-ed over the model, so a piece leaves
        # out the paths no layer takes.
        needs: dict[str, bool] = {}
        for k in out:
            for key, v in k.get("shared_needs", {}).items():
                needs[key] = needs.get(key, False) or bool(v)
        for k in out:
            k["needs"] = needs
            # Pieces several kernels share (k["shared"], e.g. one int8 conv function for many
            # layers) are rendered once, before the first kernel that needs them.
            tmpl = self.env.get_template(k.pop("template"))
            pieces = []
            for part in k.get("shared", ()):
                if part not in shared:
                    shared.add(part)
                    pieces.append(tmpl.render(k=k, part=part))
            k["code"] = "\n".join([*pieces, tmpl.render(k=k, part=None)])
        return out

    # -- files --------------------------------------------------------------------------------
    def outputs_and_copies(self) -> tuple[list[TensorRef], list[dict]]:
        """One parameter per graph output. Outputs no node writes into the caller's buffer
        (a graph input, a constant, an output listed twice) are copied at the end of run()."""
        params, copies, first = [], [], {}
        for t in self.g.outputs:
            r = self.refs[t]
            if t in first or r.kind != "output":
                p = TensorRef(t, self.namer(t, "out"), r.shape, r.size, r.ctype, "output")
                copies.append({"src": first.get(t, r), "dst": p})
            else:
                p = r
            first.setdefault(t, p)
            params.append(p)
        return params, copies

    def context(self) -> dict:
        g = self.g
        outputs, copies = self.outputs_and_copies()
        return {
            "prefix": self.prefix, "PREFIX": self.prefix.upper(), "model": g.name,
            "inputs": [self.refs[t] for t in g.inputs], "outputs": outputs,
            "arena_bytes": max(self.plan.arena_bytes, 1),
            "weights": self.weights(), "kernels": self.kernels(), "copies": copies,
            "quantized": any(t.quant is not None for t in g.tensors.values()),
            "qio": self.quant_io(outputs), "layer_marks": self.layer_marks,
        }

    def quant_io(self, outputs: list[TensorRef]) -> list[dict]:
        """Scale, zero point and converter name of each quantized input and output
        (templates/model_quant.*.j2); macro names follow the *_SIZE macros'."""
        res = []
        for kind, refs in (("input", [self.refs[t] for t in self.g.inputs]), ("output", outputs)):
            for r in refs:
                q = self.g.tensors[r.name].quant
                if q is None:
                    continue
                macro = kind.upper() if len(refs) == 1 else r.cname.upper()
                fn = f"quantize_{kind}" if len(refs) == 1 else f"quantize_{r.cname}"
                dtype = self.g.tensors[r.name].dtype
                lo, hi = qrange(dtype)
                res.append({"name": r.name, "macro": macro, "size": r.size, "is_input": kind == "input",
                            "fn": fn if kind == "input" else "de" + fn, "scale": q.scale[0],
                            "zero_point": q.zero_point[0], "dtype": dtype, "ctype": CTYPES[dtype],
                            "qmin": lo, "qmax": hi})
        return res

    def render(self, report: dict) -> dict[str, bytes]:
        """{file name: contents} of the whole project, nothing written yet."""
        ctx = self.context()
        files = {
            f"{self.prefix}.h": self.env.get_template("model.h.j2").render(**ctx),
            f"{self.prefix}.c": self.env.get_template("model.c.j2").render(**ctx),
            f"{self.prefix}_weights.h": self.env.get_template("weights.h.j2").render(**ctx),
            "Makefile": self.env.get_template("Makefile.j2").render(**ctx),
            "report.json": json.dumps(report, indent=2) + "\n",
        }
        out = {name: text.encode("utf-8") for name, text in files.items()}
        for src in sorted(resource_dir("runtime_c").glob("*.h")):
            out[src.name] = src.read_bytes()
        return out

    def write(self, out_dir: Path, report: dict) -> list[Path]:
        written = []
        for name, data in self.render(report).items():
            (out_dir / name).write_bytes(data)
            written.append(out_dir / name)
        return written
