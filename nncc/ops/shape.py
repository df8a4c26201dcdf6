"""Shape and layout operators: Reshape, Flatten, Squeeze, Unsqueeze, Identity, Dropout (data is
copied unchanged, only the static shape differs), Transpose (a permuted copy) and Concat.

The parameters that decide a shape (Reshape's shape, Squeeze/Unsqueeze axes from opset 13, Dropout's
ratio/training_mode) must be compile-time constants; the frontend has already folded
Shape->Gather->Concat chains into constants. The views (`Op.view`) and Concat keep their copy
kernels only where nncc/memory/alias.py cannot make them share memory.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, register


def norm_axis(op: Op, axis: int, rank: int, allow_negative: bool = True) -> int:
    """Axis in [-rank, rank) -> [0, rank); ShapeError outside, refusal for a negative axis in
    opsets that did not define them."""
    axis = int(axis)
    if axis < 0 and not allow_negative:
        raise op.refuse(f"negative axis {axis} is not defined in opset {op.node.opset}")
    if not -rank <= axis < rank:
        raise ShapeError(f"axis {axis} out of range for rank {rank}")
    return axis + rank if axis < 0 else axis


def norm_axes(op: Op, axes, rank: int, allow_negative: bool = True) -> list[int]:
    out = [norm_axis(op, a, rank, allow_negative) for a in np.asarray(axes).ravel()]
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axes {list(np.asarray(axes).ravel())}")
    return out


class Copy(Op):
    """Base of the ops whose output is the input's data under another shape: views, whose
    copy kernel only runs when the output cannot share the input's memory."""
    template = "ops/copy.c.j2"
    view = True

    def out_shape(self, shape: tuple[int, ...], *params) -> tuple[int, ...]:
        return shape

    def infer(self, x, *rest):
        params = [None if t is None else t.data for t in rest]
        return [(self.out_shape(x.shape, *params), "float32")]

    def reference(self, x, *rest):
        return [np.array(x, dtype=np.float32).reshape(self.out_shape(x.shape, *rest))]


# -- Reshape ---------------------------------------------------------------------------------
def reshape_shape(shape: tuple[int, ...], target, allowzero: bool) -> tuple[int, ...]:
    target = [int(d) for d in np.asarray(target).ravel()]
    if not allowzero:
        for i, d in enumerate(target):
            if d == 0:
                if i >= len(shape):
                    raise ShapeError(f"shape {target}: 0 at index {i} has no input dim to copy")
                target[i] = shape[i]
    if target.count(-1) > 1 or any(d < -1 for d in target):
        raise ShapeError(f"bad target shape {target}")
    size = int(np.prod(shape, dtype=np.int64))
    known = int(np.prod([d for d in target if d != -1], dtype=np.int64))
    if -1 in target:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {shape} to {target}")
        target[target.index(-1)] = size // known
    if int(np.prod(target, dtype=np.int64)) != size:
        raise ShapeError(f"cannot reshape {shape} ({size} elements) to {target}")
    return tuple(target)


@register("Reshape")
class Reshape(Copy):
    """Opset 1-4: the target shape is the `shape` attribute."""

    def parse(self):
        if self.attr("shape") is None:
            raise self.refuse("missing `shape` attribute")

    def out_shape(self, shape, *params):
        return reshape_shape(shape, self.attr("shape"), False)


@register("Reshape", since=5)
class Reshape_5(Copy):
    """Opset 5+: the target shape is input 1 (a constant); `allowzero` from opset 14."""
    const_inputs = (1,)

    def parse(self):
        self.allowzero = int(self.attr("allowzero", 0)) != 0

    def out_shape(self, shape, target=None, *rest):
        if target is None:
            raise self.refuse("shape input must be a constant")
        return reshape_shape(shape, target, self.allowzero)


# -- Flatten ---------------------------------------------------------------------------------
@register("Flatten")
class Flatten(Copy):
    """(d0..d_{axis-1}, d_axis..) -> 2-D. Axis in [0, rank]; negative from opset 11."""
    allow_negative = False

    def out_shape(self, shape, *params):
        rank = len(shape)
        axis = int(self.attr("axis", 1))
        if axis < 0 and not self.allow_negative:
            raise self.refuse(f"negative axis {axis} is not defined before opset 11")
        if not -rank <= axis <= rank:
            raise ShapeError(f"axis {axis} out of range for rank {rank}")
        axis = axis + rank if axis < 0 else axis
        return (int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64)))


@register("Flatten", since=11)
class Flatten_11(Flatten):
    allow_negative = True


# -- Squeeze / Unsqueeze ---------------------------------------------------------------------
def squeeze_shape(op: Op, shape, axes, allow_negative: bool) -> tuple[int, ...]:
    if axes is None:
        return tuple(d for d in shape if d != 1)
    drop = norm_axes(op, axes, len(shape), allow_negative)
    for a in drop:
        if shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of size {shape[a]}")
    return tuple(d for i, d in enumerate(shape) if i not in drop)


def unsqueeze_shape(op: Op, shape, axes, allow_negative: bool) -> tuple[int, ...]:
    if axes is None:
        raise op.refuse("missing axes")
    rank = len(shape) + np.asarray(axes).size
    ins = norm_axes(op, axes, rank, allow_negative)
    it = iter(shape)
    return tuple(1 if i in ins else next(it) for i in range(rank))


@register("Squeeze")
class Squeeze(Copy):
    """Opset 1-12: `axes` attribute (optional: all size-1 dims); negative from opset 11."""

    def out_shape(self, shape, *params):
        return squeeze_shape(self, shape, self.attr("axes"), self.node.opset >= 11)


@register("Squeeze", since=13)
class Squeeze_13(Copy):
    """Opset 13+: optional constant `axes` input."""
    const_inputs = (1,)

    def out_shape(self, shape, axes=None, *rest):
        return squeeze_shape(self, shape, axes, True)


@register("Unsqueeze")
class Unsqueeze(Copy):
    """Opset 1-12: `axes` attribute, indices into the output; negative from opset 11."""

    def out_shape(self, shape, *params):
        return unsqueeze_shape(self, shape, self.attr("axes"), self.node.opset >= 11)


@register("Unsqueeze", since=13)
class Unsqueeze_13(Copy):
    """Opset 13+: constant `axes` input."""
    const_inputs = (1,)

    def out_shape(self, shape, axes=None, *rest):
        return unsqueeze_shape(self, shape, axes, True)


# -- Identity / Dropout ----------------------------------------------------------------------
@register("Identity")
class Identity(Copy):
    """y = x."""


@register("Dropout")
class Dropout(Copy):
    """Inference: y = x. Opset 1-6 run in training mode unless is_test=1, so is_test=0 is refused,
    as is the mask output (its value is meaningless at inference)."""

    def parse(self):
        if len(self.node.outputs) > 1 and self.node.outputs[1]:
            raise self.refuse("the mask output is not supported (inference only)")
        if self.node.opset < 7 and int(self.attr("is_test", 0)) == 0:
            raise self.refuse("is_test=0 (training mode) is not supported")


@register("Dropout", since=7)
class Dropout_7(Dropout):
    """Opset 7-11: always inference; ratio attribute ignored."""


@register("Dropout", since=12)
class Dropout_12(Dropout):
    """Opset 12+: ratio (ignored) and training_mode are optional constant inputs."""
    const_inputs = (1, 2)

    def out_shape(self, shape, ratio=None, training_mode=None, *rest):
        if training_mode is not None and bool(np.asarray(training_mode).ravel()[0]):
            raise self.refuse("training_mode=1 is not supported (inference only)")
        return shape


# -- Transpose -------------------------------------------------------------------------------
@register("Transpose")
class Transpose(Op):
    """y = x.transpose(perm); perm defaults to reversing the axes."""
    template = "ops/transpose.c.j2"

    def perm(self, rank: int) -> list[int]:
        perm = self.attr("perm")
        perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
        if sorted(perm) != list(range(rank)):
            raise ShapeError(f"perm {perm} is not a permutation of {rank} axes")
        return perm

    def infer(self, x):
        # any dtype: a data move (int8 in quantized graphs, nncc/quant/rewrite_more.py)
        return [(tuple(x.shape[p] for p in self.perm(len(x.shape))), x.dtype)]

    def reference(self, x):
        return [np.ascontiguousarray(np.transpose(x, self.perm(x.ndim)))]

    def context(self, ins, outs):
        x = ins[0]
        perm = self.perm(len(x.shape))
        in_strides = [int(np.prod(x.shape[i + 1:], dtype=np.int64)) for i in range(len(x.shape))]
        # Output axis d walks input axis perm[d]: its input stride drives the offset.
        loops = [{"n": x.shape[p], "stride": in_strides[p]} for p in perm]
        return {"loops": merge_loops(loops)}


def merge_loops(loops: list[dict]) -> list[dict]:
    """Fuse consecutive loops where the outer stride equals inner stride * inner count (the
    two walk one contiguous run), and drop size-1 loops: fewer, longer loops."""
    out: list[dict] = []
    for lp in loops:
        if lp["n"] == 1:
            continue
        if out and out[-1]["stride"] == lp["stride"] * lp["n"]:
            out[-1] = {"n": out[-1]["n"] * lp["n"], "stride": lp["stride"]}
        else:
            out.append(dict(lp))
    return out or [{"n": 1, "stride": 0}]


# -- Concat ----------------------------------------------------------------------------------
@register("Concat")
class Concat(Op):
    """y = concatenate(inputs, axis). `axis` defaults to 1 in opset 1, is required from 4,
    negative from 11. Constant inputs are read from flash like any other pointer."""
    template = "ops/concat.c.j2"
    places_inputs = True

    def axis(self, rank: int) -> int:
        axis = self.attr("axis", 1 if self.node.opset < 4 else None)
        if axis is None:
            raise self.refuse("missing `axis` attribute")
        return norm_axis(self, axis, rank, self.node.opset >= 11)

    def infer(self, *ins):
        xs = [x for x in ins if x is not None]
        if not xs:
            raise ShapeError("no inputs")
        rank = len(xs[0].shape)
        axis = self.axis(rank)
        for x in xs:
            if len(x.shape) != rank or any(x.shape[i] != xs[0].shape[i] for i in range(rank) if i != axis):
                raise ShapeError(f"shapes {[t.shape for t in xs]} differ off axis {axis}")
            if x.is_const and x.dtype != "float32":
                raise self.refuse(f"constant input {x.name!r} of type {x.dtype}")
        shape = list(xs[0].shape)
        shape[axis] = sum(x.shape[axis] for x in xs)
        return [(tuple(shape), "float32")]

    def reference(self, *xs):
        xs = [x for x in xs if x is not None]
        return [np.concatenate(xs, axis=self.axis(xs[0].ndim)).astype(np.float32)]

    def context(self, ins, outs):
        y = outs[0]
        axis = self.axis(len(y.shape))
        outer = int(np.prod(y.shape[:axis], dtype=np.int64))
        inner = int(np.prod(y.shape[axis + 1:], dtype=np.int64))
        parts, offset = [], 0
        for j, x in enumerate(ins):
            if x is None:
                continue
            chunk = x.shape[axis] * inner
            if chunk:  # an empty input contributes nothing
                parts.append({"arg": f"x{j}", "index": j, "chunk": chunk, "offset": offset})
            offset += chunk
        return {"outer": outer, "row": offset, "parts": parts,
                "unused": [f"x{j}" for j, x in enumerate(ins) if x is not None and not x.size]}

