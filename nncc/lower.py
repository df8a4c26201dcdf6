"""The pipeline's kernel choice where a node has more than one (DESIGN: lower). The memory
planner picks the in-place variants itself (nncc/memory/alias.py); this picks the kernels that
trade flash for speed, which the user asks for: "winograd" (`--winograd`) for the int8 3x3
convolutions its kernel computes (nncc/ops/qconv_wino.py); and the kernels a target lists in its
target.json ("kernels"), which are faster there and slower elsewhere: "gemm4" for int8 fully
connected layers (weights interleaved by 4 rows: nncc/ops/quantized.py gemm4_weights), and
"gemm4dsp", the same with the input row widened into a workspace for the DSP cores' loop."""
from __future__ import annotations

from .ir import Graph
from .ops import make_op


def choose_kernels(g: Graph, winograd: bool = False) -> list[str]:
    """Set the chosen nodes' kernel; -> their names."""
    if not winograd:
        return []
    chosen = []
    for n in g.nodes():
        if n.op != "QConv":
            continue
        ins = [g.tensors[t] if t else None for t in n.inputs]
        outs = [g.tensors[t] for t in n.outputs if t]
        if make_op(n).winograd_fits(ins, outs):
            n.kernel = "winograd"
            chosen.append(n.name)
    return chosen


def choose_target_kernels(g: Graph, kernels=()) -> list[str]:
    """Set the kernel of the nodes a target's listed kernels compute; -> their names."""
    chosen = []
    gemm = next((k for k in ("gemm4dsp", "gemm4") if k in kernels), None)
    if gemm:
        for n in g.nodes():
            if n.op == "QGemm" and make_op(n).gemm4_fits([g.tensors[t] if t else None for t in n.inputs]):
                n.kernel = gemm
                chosen.append(n.name)
    return chosen
