"""Elementwise arithmetic with broadcasting: Add, Sub, Mul, Div and the variadic Sum.

Shapes follow numpy (multidirectional) broadcasting from opset 7 on; opsets 1-6 of the binary
ops use the legacy `broadcast`/`axis` attributes (B broadcast to A's shape, aligned at `axis`).
The C kernel (templates/ops/binary.c.j2) walks the output in order with nested loops; the
per-input strides are computed here (0 along broadcast dimensions) and dimensions that are
contiguous for every operand are merged, so the common same-shape case is one flat loop.
`loop_nest()` is shared with PRelu, which uses the same template.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, register


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    """Numpy broadcasting of several shapes; ShapeError when they are incompatible."""
    rank = max((len(s) for s in shapes), default=0)
    out = []
    for d in range(rank):
        dims = {s[d - rank + len(s)] for s in shapes if d - rank + len(s) >= 0}
        big = dims - {1}
        if len(big) > 1:
            raise ShapeError(f"shapes {', '.join(str(tuple(s)) for s in shapes)} do not broadcast")
        out.append(big.pop() if big else 1)
    return tuple(out)


def _strides(shape: tuple[int, ...], out_shape: tuple[int, ...]) -> list[int]:
    """Element strides of a right-aligned input over the output dims; 0 where it broadcasts."""
    pad = len(out_shape) - len(shape)
    full = (1,) * pad + tuple(shape)
    strides, step = [0] * len(full), 1
    for d in reversed(range(len(full))):
        strides[d] = step if full[d] != 1 else 0
        step *= full[d]
    return strides


def loop_nest(out_shape: tuple[int, ...], in_shapes: list[tuple[int, ...]]) -> dict:
    """Loop bounds and per-operand index terms for the binary template.

    Output dims of size 1 are dropped, then a dim is merged into the next one when every input
    (and the contiguous output) steps through both as one run: stride[d] == stride[d+1] * n[d+1].
    Returns {"dims": [n...], "ins": [[(loop, stride)...] per input], "out": [(loop, stride)...]}
    where only non-zero strides are listed (an empty list indexes element 0).
    """
    all_strides = [_strides(s, out_shape) for s in in_shapes]
    dims: list[int] = []
    cols: list[list[int]] = []  # per kept dim: the stride of each input
    for d, n in enumerate(out_shape):
        if n == 1:
            continue
        col = [s[d] for s in all_strides]
        if dims and all(prev == cur * n for prev, cur in zip(cols[-1], col)):
            dims[-1] *= n
            cols[-1] = col
        else:
            dims.append(n)
            cols.append(col)
    if not dims:  # a single element (scalar or all-ones shape)
        dims, cols = [1], [[0] * len(in_shapes)]
    out_strides = [int(np.prod(dims[d + 1:], dtype=np.int64)) for d in range(len(dims))]
    ins = [[(d, cols[d][j]) for d in range(len(dims)) if cols[d][j]] for j in range(len(in_shapes))]
    out = [(d, s) for d, s in enumerate(out_strides) if dims[d] > 1]
    return {"dims": dims, "ins": ins, "out": out}


class Elementwise(Op):
    """Base of the broadcasting n-ary kernels. Subclasses define `compute` (numpy, float32 in)."""
    template = "ops/binary.c.j2"
    accepts_activation = True  # binary.c.j2 applies it before the store (Add -> Relu in ResNets)
    # binary.c.j2 loads every operand at the current index before storing y0 there, and an
    # operand of the output's shape is indexed exactly like y0: y0 may overwrite it.
    inplace_inputs = (0, 1)

    def aligned(self, shapes: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """Input shapes as numpy should broadcast them (legacy axis alignment overrides this)."""
        return list(shapes)

    def out_shape(self, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
        return broadcast_shape(*self.aligned(shapes))

    def infer(self, *ins):
        bad = [x.name for x in ins if x is not None and x.dtype != "float32"]
        if bad:
            raise self.refuse(f"non-float32 input(s) {', '.join(bad)}")
        if any(x is None for x in ins) or not ins:
            raise self.refuse("omitted inputs")
        return [(self.out_shape([x.shape for x in ins]), "float32")]

    def reference(self, *xs):
        shapes = self.aligned([x.shape for x in xs])
        arrays = [np.asarray(x, np.float32).reshape(s) for x, s in zip(xs, shapes)]
        with np.errstate(all="ignore"):  # x/0 -> inf, like the C
            y = self.compute(*arrays)
        y = np.broadcast_to(y, self.out_shape([x.shape for x in xs])).astype(np.float32)
        return [self.epilogue(y)]

    def compute(self, *xs: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def context(self, ins, outs):
        shapes = self.aligned([x.shape for x in ins])
        return {"kind": self.op_type, "nest": loop_nest(outs[0].shape, shapes)}


class Binary(Elementwise):
    """Opset >= 7: multidirectional (numpy) broadcasting, no attributes."""

    def parse(self):
        if len(self.node.inputs) != 2:
            raise self.refuse(f"expected 2 inputs, got {len(self.node.inputs)}")


class LegacyBinary(Binary):
    """Opsets 1-6: B is broadcast to A's shape only when broadcast=1, aligned at `axis`
    (default: trailing dimensions). `consumed_inputs` (opset < 6) is an allocation hint: ignored."""

    def parse(self):
        super().parse()
        self.broadcast = int(self.attr("broadcast", 0))
        if self.broadcast not in (0, 1):
            raise self.refuse(f"broadcast={self.broadcast}")
        self.axis = self.attr("axis")

    def aligned(self, shapes):
        a, b = tuple(shapes[0]), tuple(shapes[1])
        if not self.broadcast:
            if a != b:
                raise ShapeError(f"shapes {a} and {b} differ and broadcast=0")
            return [a, b]
        axis = len(a) - len(b) if self.axis is None else int(self.axis)
        if axis < 0:
            axis += len(a)
        if axis < 0 or axis + len(b) > len(a):
            raise ShapeError(f"B {b} does not fit in A {a} at axis {self.axis}")
        full = (1,) * axis + b + (1,) * (len(a) - axis - len(b))
        if any(fb not in (1, fa) for fa, fb in zip(a, full)):
            raise ShapeError(f"B {b} does not broadcast to A {a} at axis {axis}")
        return [a, full]


def _binary(op_type: str, fn):
    """Register the legacy (opset 1) and numpy-broadcasting (opset 7) classes of one op."""
    def compute(self, a, b):
        return fn(a, b)
    doc = f"y = {fn.__name__}(a, b) elementwise, float32."
    legacy = type(op_type, (LegacyBinary,), {"compute": compute, "__doc__": doc})
    modern = type(f"{op_type}_7", (Binary,), {"compute": compute, "__doc__": doc})
    register(op_type, since=1)(legacy)
    register(op_type, since=7)(modern)
    return legacy, modern


Add, Add_7 = _binary("Add", np.add)
Sub, Sub_7 = _binary("Sub", np.subtract)
Mul, Mul_7 = _binary("Mul", np.multiply)
Div, Div_7 = _binary("Div", np.divide)


@register("Sum")
class Sum(Elementwise):
    """y = x0 + x1 + ... (left to right, float32 in C). Opsets 1-6 require equal shapes, which
    numpy broadcasting accepts too; opset 8 made it multidirectional. One input: a copy."""

    def parse(self):
        if not self.node.inputs:
            raise self.refuse("no inputs")

    def compute(self, *xs):
        acc = xs[0].astype(np.float64)
        for x in xs[1:]:
            acc = acc + x  # float64: the sum of a few float32 rounds to the C result or next to it
        return acc
