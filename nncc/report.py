"""report.json: per-layer costs and the memory plan, as DESIGN.md fixes it (keys may be added,
never renamed). `nncc analyze --json` prints the same dictionary."""
from __future__ import annotations

import numpy as np

from . import __version__
from .codegen.consts import KernelConstants, kernel_constants, weight_bytes
from .ir import Graph
from .memory import MemoryPlan
from .ops import KEEP_FLOAT, make_op


def layer_bits(g: Graph, node) -> int:
    """Bit width of a layer: that of its output tensor's dtype (8, 16, 32)."""
    outs = [t for t in node.outputs if t]
    return 8 * np.dtype(g.tensors[outs[0]].dtype).itemsize if outs else 32


def precision(g: Graph) -> str:
    """float32, int8, int16 or mixed: the types the quantized kernels write (the float Softmax
    at the output of an int8 build does not make it mixed; a --keep-float node does)."""
    if not any(t.quant is not None for t in g.tensors.values()):
        return "float32"
    kinds = {g.tensors[n.outputs[0]].dtype for n in g.nodes() if n.op.startswith("Q") and n.outputs}
    if any(n.attrs.get(KEEP_FLOAT) for n in g.nodes()):
        kinds.add("float32")
    return "mixed" if len(kinds) > 1 else (kinds.pop() if kinds else "int8")


def layer_rows(g: Graph, kc: KernelConstants, node_bytes: dict[str, int]) -> list[dict]:
    """kc: the constants each kernel reads (params: their elements); node_bytes: each layer's
    weights_bytes, their bytes in flash as the emitter writes them (an order of the kernel's
    own may pad or transform them)."""
    rows = []
    for n in g.nodes():
        op = make_op(n)
        outs = [g.tensors[t] for t in n.outputs if t]
        params = sum(g.tensors[t].size for t in kc.weights[n.name])
        wbytes = node_bytes.get(n.name, 0)
        rows.append({
            "name": n.name, "op": n.op, "kernel": n.kernel,
            "inputs": [t for t in n.inputs if t], "outputs": [t for t in n.outputs if t],
            "output_shape": list(outs[0].shape) if outs else [],
            "macs": int(op.macs([g.tensors[t] if t else None for t in n.inputs], outs)),
            "params": params, "weights_bytes": wbytes,
            "out_bytes": sum(t.nbytes for t in outs),
            "bits": layer_bits(g, n),
            # Ops folded into this node's kernel, e.g. ["Relu"], ["Add", "Relu"] (Op.fused_ops)
            "fused": op.fused_ops(),
        })
    return rows


def build_report(g: Graph, plan: MemoryPlan, target: str = "host",
                 precision: str = "float32") -> dict:
    kc = kernel_constants(g)
    wbytes, node_bytes = weight_bytes(g, kc)
    layers = layer_rows(g, kc, node_bytes)
    # plan_memory left the nodes in schedule order, so layer i runs at step i.
    live = plan.live_bytes_per_step
    for i, row in enumerate(layers):
        row["live_bytes"] = live[i] if i < len(live) else 0  # arena bytes in use at this layer
        # the kernel's scratch and in-place copy buffer, planned in the arena (part of live_bytes)
        row["workspace_bytes"] = plan.alias.workspace.get(row["name"], ("", 0))[1]
    # Weights shared by several nodes are stored once.
    weight_tensors = {t for ts in kc.weights.values() for t in ts}
    return {
        "nncc_version": __version__, "model": g.name, "target": target, "precision": precision,
        "macs": sum(r["macs"] for r in layers),
        "params": sum(g.tensors[t].size for t in weight_tensors),
        "weights_bytes": wbytes,
        "arena_bytes": plan.arena_bytes,
        "arena_lower_bound_bytes": plan.lower_bound_bytes,
        "arena_naive_bytes": plan.naive_bytes,
        "inputs": [_io(g, t) for t in g.inputs],
        "outputs": [_io(g, t) for t in g.outputs],
        "layers": layers,
    }


def _io(g: Graph, t: str) -> dict:
    from .dtypes import CTYPES
    info = g.tensors[t]
    io = {"name": t, "shape": list(info.shape), "dtype": info.dtype, "ctype": CTYPES[info.dtype]}
    if info.quant is not None:  # int8 builds: real = scale * (q - zero_point)
        io["scale"], io["zero_point"] = info.quant.scale[0], info.quant.zero_point[0]
    return io
