"""Operator registry: one class per ONNX operator (suffixed per opset where semantics changed).

Each class owns everything nncc knows about its operator: attribute parsing (refusing what it
cannot compile), shape inference (`infer`), the numpy reference (`reference`), the cost model
(`macs`) and the data its C template needs (`context`). No other module does shape math.
"""
from __future__ import annotations

import importlib

import numpy as np

from ..errors import UnsupportedOp
from ..ir import Node, TensorInfo

# op type -> list of (since_opset, class), ascending
OPS: dict[str, list[tuple[int, type[Op]]]] = {}

Out = tuple[tuple[int, ...], str]  # (shape, dtype) of one output


def register(op_type: str, since: int = 1):
    def deco(cls):
        variants = OPS.setdefault(op_type, [])
        if any(s == since for s, _ in variants):
            raise ValueError(f"{op_type} registered twice for opset {since}")
        variants.append((since, cls))
        variants.sort(key=lambda v: v[0])
        cls.op_type = op_type
        return cls
    return deco


def op_class(op_type: str, opset: int) -> type[Op] | None:
    found = None
    for since, cls in OPS.get(op_type, []):
        if since <= opset:
            found = cls
    return found


def make_op(node: Node) -> Op:
    cls = op_class(node.op, node.opset)
    if cls is None:
        raise UnsupportedOp(f"{node.op} (node {node.name!r})")
    return cls(node)


class Op:
    """Base class. Subclasses set `template` and override what applies."""

    op_type = ""
    template: str | None = None
    # Indices of inputs whose value must be known at compile time (shapes, pads, axes...).
    const_inputs: tuple[int, ...] = ()
    # Inputs of these dtypes are accepted; activations are float32 in the float path.
    float_only = True
    # True when reference() ends with self.epilogue(y) and the template applies
    # `node.attrs[FUSED_ACTIVATION]` before its store (passes/fuse_activation.py relies on it).
    accepts_activation = False
    # Memory aliasing (nncc/memory/alias.py). `view`: the output is the input's bytes under
    # another shape, so it may share the input's memory and the kernel may be skipped.
    # `inplace_inputs`: inputs the output may overwrite when they have the output's shape --
    # only for kernels that read every element before writing the same index.
    view = False
    inplace_inputs: tuple[int, ...] = ()
    # `places_inputs` (Concat): an input j with `placeable(j)` may be written by its producer
    # straight into its slice of the output, so the kernel skips it.
    places_inputs = False

    def placeable(self, j: int) -> bool:
        return self.places_inputs

    def __init__(self, node: Node):
        self.node = node
        self.parse()
        if FUSED_ACTIVATION in node.attrs and not self.accepts_activation:
            raise self.refuse("a fused activation on an op whose kernel cannot apply it")

    # -- attributes ---------------------------------------------------------------------------
    def attr(self, name: str, default=None):
        return self.node.attrs.get(name, default)

    def refuse(self, why: str) -> UnsupportedOp:
        return UnsupportedOp(f"{self.node.op} (node {self.node.name!r}): {why}")

    def parse(self) -> None:
        """Validate attributes; raise self.refuse(...) for anything not implemented."""

    # -- semantics ----------------------------------------------------------------------------
    def infer(self, *ins: TensorInfo) -> list[Out]:
        raise NotImplementedError

    def reference(self, *xs: np.ndarray | None) -> list[np.ndarray]:
        raise NotImplementedError

    def macs(self, ins: list[TensorInfo], outs: list[TensorInfo]) -> int:
        return 0

    def context(self, ins: list[TensorInfo], outs: list[TensorInfo]) -> dict:
        """Extra template variables (loop bounds, strides...) computed from the static shapes."""
        return {}

    def workspace_bytes(self, ins: list[TensorInfo], outs: list[TensorInfo], kernel: str = "direct") -> int:
        """Scratch bytes the kernel variant `kernel` needs while it runs (planned in the arena,
        live only at this node's step, passed to the kernel as its last argument `ws`)."""
        return 0

    def const_slack(self, ins: list[TensorInfo]) -> dict[int, int]:
        """{input j: elements} the kernel may read past the end of constant input j (a
        word-wide loop's last word): the emitted array carries that many zeros more."""
        return {}

    def const_layouts(self, ins: list[TensorInfo], outs: list[TensorInfo]) -> dict:
        """{input j: function of its data} for constant inputs the kernel reads in an order of
        its own: the emitted array is that function's result (the IR, the reference and the
        shapes keep the tensor's order)."""
        return {}

    def inplace_kernel(self, ins: list[TensorInfo], outs: list[TensorInfo]) -> tuple[int, str] | None:
        """(input index j, kernel variant) when a variant of the kernel can write output 0 over
        input j (not elementwise, so not `inplace_inputs`: it may use a workspace). The memory
        planner picks it only when input j dies at this node; None: no such variant."""
        return None

    def fused_ops(self) -> list[str]:
        """The ops folded into this node's kernel, in the order they apply (report.json
        `fused`): here the fused activation, if any."""
        fused = self.node.attrs.get(FUSED_ACTIVATION)
        return [fused["op"]] if fused else []

    def epilogue(self, y: np.ndarray) -> np.ndarray:
        """The fused activation (if any) applied to a reference result."""
        return apply_fused_activation(self.node, y)


# Node attribute set by passes/fuse_activation.py: {"op": "Relu", "params": {...}}, where params
# are the activation's `params()` -- the same dict templates/ops/_activation.j2's act() reads.
FUSED_ACTIVATION = "nncc_activation"
# Node attribute set on a node the quantizer left in float on request (quant/mixed.py,
# --keep-float); report.precision() reads it.
KEEP_FLOAT = "nncc_keep_float"


def apply_fused_activation(node: Node, y: np.ndarray) -> np.ndarray:
    """y with node's fused activation applied, by the activation op's own numpy formula."""
    fused = node.attrs.get(FUSED_ACTIVATION)
    if fused is None:
        return y
    # The earliest variant computes from params() alone (Clip before opset 11 takes no inputs).
    kind = fused["op"]
    since, cls = OPS[kind][0] if kind in OPS else (0, None)
    if getattr(cls, "fn", None) is None:
        raise UnsupportedOp(f"fused activation {kind} (node {node.name!r})")
    act = cls(Node(f"{node.name}/{kind}", kind, ["y"], ["y"], {}, since))
    with np.errstate(all="ignore"):
        out = act.fn(np.asarray(y, np.float64), **fused["params"])
    return np.asarray(out).astype(np.float32)


def input_value(x: TensorInfo, what: str, op: Op) -> np.ndarray:
    """The constant value of an input that must be known at compile time."""
    if x.data is None:
        raise op.refuse(f"{what} must be a constant (it is computed at run time)")
    return x.data


# Importing the op modules fills OPS; the list is explicit so a broken module fails loudly.
_MODULES = ["activation", "conv", "conv_transpose", "elementwise", "gemm", "lrn", "norm", "pad",
            "pool", "reduce", "shape", "softmax", "conv_pool", "quantized",
            "quantized_more", "qlinear"]
for _m in _MODULES:
    importlib.import_module(f"{__name__}.{_m}")
