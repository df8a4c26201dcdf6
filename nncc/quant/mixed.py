"""Mixed precision: int16 activations (all, or the outputs of chosen layers) and layers kept in
float, on top of the int8 rewrite (rewrite.py).

- `--quantize int16`: every activation int16 (int16.py: symmetric, zero point 0), int8 weights;
- `--int16 NODE...`: those nodes' outputs int16 in an int8 graph. Requantizing kernels (QConv,
  QGemm, QAdd) read and write either type, so where precisions meet the consumer's own
  requantization is the cast -- no extra node. A pool or view keeps its input's type, so naming
  one is refused (name the layer that produces its input);
- `--keep-float NODE...`: those nodes run their float kernel between a Dequantize of each integer
  input (the float Softmax fallback's, rewrite.Rewriter.dequantized) and a Quantize of the output
  (none when it is a graph output); consecutive float nodes pass float tensors directly.
int16 tensors take min/max calibration ranges: the clipping observers (mse, percentile) trade
range for resolution, which pays at 256 steps, not at 65536.
A node is named by its name in the ONNX file; a fused pair (ConvPool) also answers to
NAME/conv, NAME/pool.
"""
from __future__ import annotations

from ..errors import UnsupportedOp, UsageError
from ..ir import Graph, Node, TensorInfo
from ..ops import KEEP_FLOAT
from ..passes._util import fresh_name
from .int16 import qrange, sym_params
from .rewrite import POOLS, VIEWS, Rewriter, clamp_bounds, matmul_bias_add

REQUANTIZING = ("Conv", "Gemm", "MatMul", "Add")


def resolve_nodes(g: Graph, names, flag: str) -> set[str]:
    """IR node names for the user's names; unknown ones refused in one error listing them."""
    have = {n.name for n in g.nodes()}
    found, unknown = set(), []
    for name in names or ():
        hits = {h for h in have if h == name or h.startswith(name + "/")}
        if not hits:
            unknown.append(name)
        found |= hits
    if unknown:
        raise UsageError(f"{flag}: no node named {', '.join(map(repr, unknown))} in the model "
                         "after its passes (BatchNorm and activations are folded into their conv) "
                         f"(nodes: {', '.join(sorted(have)[:20])}{', ...' if len(have) > 20 else ''})")
    return found


class MixedRewriter(Rewriter):
    def __init__(self, g: Graph, ranges: dict, ranges16: dict, int16: set[str] | bool,
                 keep_float: set[str] = frozenset(), scaling: str = "fixed", packed: bool = True,
                 per_channel: bool = True):
        """int16: True (every activation) or the names of the nodes whose outputs are int16."""
        super().__init__(g, ranges, scaling, packed, per_channel)
        self.ranges16, self.keep = ranges16, set(keep_float)
        self.floats: dict[str, str] = {}  # integer tensor -> its float copy
        if int16 is True:
            self.wide = None
        else:
            for n in int16:
                if g.node(n).op in POOLS + VIEWS:
                    raise UsageError(f"--int16 {n}: a {g.node(n).op} keeps its input's precision; "
                                     "name the layer that produces its input")
            self.wide = set()
            for n in int16:
                node = g.node(n)
                self.wide |= set(node.outputs)
                add = matmul_bias_add(g, node)
                if add is not None:  # MatMul + bias Add: one QGemm
                    self.wide |= set(add.outputs)

    def dtype(self, t: str) -> str:
        return "int16" if self.wide is None or t in self.wide else "int8"

    def act(self, t: str):
        if self.dtype(t) == "int16":
            return sym_params(*self.ranges16[t], self.scaling)
        return super().act(t)

    def quant_attrs(self, node: Node, x: str, qp_out) -> dict:
        attrs = super().quant_attrs(node, x, qp_out)
        dt = self.dtype(node.outputs[0])
        if dt != "int8":
            attrs["act_min"], attrs["act_max"] = clamp_bounds(node, qp_out, *qrange(dt))
            attrs["y_dtype"] = dt
        return attrs

    def handler(self, node: Node):
        return MixedRewriter.keep_float if node.name in self.keep else super().handler(node)

    def keep_float(self, node: Node) -> None:
        """The float node between Dequantize(s) and a Quantize (module docstring)."""
        if len([o for o in node.outputs if o]) != 1:
            raise UnsupportedOp(f"{node.op} (node {node.name!r}): kept float with several outputs")
        ins = []
        for t in node.inputs:
            if t and self.src.is_const(t):
                self.g.tensors.setdefault(t, self.src.tensors[t])
            elif t and t in self.floats:
                t = self.floats[t]
            elif t:
                self.floats[t] = t = self.dequantized(node, t)
            ins.append(t)
        out = node.outputs[0]
        info = self.src.tensors[out]
        attrs = {**node.attrs, KEEP_FLOAT: True}
        users = self.src.consumers(out)
        if out in self.src.outputs and not users:
            self.g.add_tensor(TensorInfo(out, info.shape, "float32"))
            self.g.add_node(Node(node.name, node.op, ins, [out], attrs, node.opset))
            return
        of = fresh_name(self.g, fresh_name(self.src, f"{out}_float"))
        self.g.add_tensor(TensorInfo(of, info.shape, "float32"))
        self.g.add_node(Node(node.name, node.op, ins, [of], attrs, node.opset))
        self.floats[out] = of
        if out not in self.src.outputs and all(u.name in self.keep for u in users):
            return  # read by float nodes only
        qp = self.act(out)
        self.emit(Node(f"{node.name}/quantize", "Quantize", [of], [out],
                       {"scale": qp.scale[0], "zero_point": qp.zero_point[0],
                        "dtype": self.dtype(out)}), qp)


def check_names(g: Graph, opts) -> None:
    """Refuse unknown node names before calibrating (which may take a while)."""
    both = resolve_nodes(g, opts.keep_float, "--keep-float") & resolve_nodes(g, opts.int16, "--int16")
    if both:
        raise UsageError(f"nodes both --keep-float and --int16: {', '.join(sorted(both))}")


def quantize_mixed(g: Graph, samples: list[dict], ranges: dict, ranges16: dict, opts) -> Graph:
    """The integer graph of `g` for QuantOptions `opts` asking for int16 or float layers;
    `ranges` from the observer of opts (min/max for an all-int16 build), `ranges16` the
    min/max ones of the same calibration (calibrate.calibrate_both) for int16 tensors."""
    keep = resolve_nodes(g, opts.keep_float, "--keep-float")
    if opts.precision == "int16":
        return MixedRewriter(g, ranges, ranges, True, keep, opts.scaling, opts.packed,
                             opts.per_channel).run()
    wide = resolve_nodes(g, opts.int16, "--int16")
    # NAME also matched NAME/pool of a ConvPool: its conv's output is what gets wider
    wide = {n for n in wide if g.node(n).op not in POOLS + VIEWS or n in opts.int16}
    if opts.target_sqnr is not None:
        from .auto import raise_to_int16
        wide = raise_to_int16(g, samples, ranges, ranges16, wide, keep, opts)
    return MixedRewriter(g, ranges, ranges16, wide, keep, opts.scaling, opts.packed,
                         opts.per_channel).run()
