"""Reductions (op stage): ReduceMean, built on a Reduce base class that ReduceSum/Max/Min can
subclass by giving a numpy function and a C `kind` (the C init/combine/finalize expressions live
in templates/ops/reduce.c.j2, keyed by kind).

Axes come from the `axes` attribute before opset 18 and from an optional constant second input
from 18 on (with `noop_with_empty_axes`). For the C loops the input shape is simplified: size-1
axes are dropped and neighbouring axes that are both kept or both reduced are merged, so an
NCHW global average pool is one kept and one reduced loop whatever the rank.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, input_value, register


def merge_axes(shape: tuple[int, ...], axes: tuple[int, ...]) -> tuple[list, list]:
    """-> (kept, reduced): lists of (size, input stride) in input order, outermost first."""
    strides = [int(np.prod(shape[i + 1:], dtype=np.int64)) for i in range(len(shape))]
    groups: list[list] = []  # [is_reduced, size, stride]
    for i, d in enumerate(shape):
        if d == 1:
            continue
        red = i in axes
        if groups and groups[-1][0] == red and groups[-1][2] == d * strides[i]:
            groups[-1][1] *= d  # contiguous with the previous axis of the same kind
            groups[-1][2] = strides[i]
        else:
            groups.append([red, d, strides[i]])
    kept = [(s, st) for red, s, st in groups if not red]
    reduced = [(s, st) for red, s, st in groups if red]
    return kept, reduced


class Reduce(Op):
    """Reduce over `axes` (all axes when none are given); keepdims keeps them as size 1."""
    template = "ops/reduce.c.j2"
    kind = ""  # selects the C expressions in the template

    def parse(self):
        self.keepdims = int(self.attr("keepdims", 1))
        self.noop_empty = int(self.attr("noop_with_empty_axes", 0))
        axes = self.attr("axes")
        self.attr_axes = None if axes is None else tuple(int(a) for a in axes)

    def given_axes(self, axes_input) -> tuple[int, ...] | None:
        """The axes as written in the model (None: not given)."""
        return self.attr_axes

    def axes(self, rank: int, axes_input=None) -> tuple[int, ...] | None:
        """Normalised sorted axes; None means identity (noop_with_empty_axes with no axes)."""
        given = self.given_axes(axes_input)
        if not given:
            return None if self.noop_empty else tuple(range(rank))
        out = set()
        for a in given:
            if not -rank <= a < rank:
                raise ShapeError(f"axis {a} out of range for rank {rank}")
            out.add(a % rank)
        if len(out) != len(given):
            raise ShapeError(f"repeated axes {given}")
        return tuple(sorted(out))

    def out_shape(self, shape, axes) -> tuple[int, ...]:
        if axes is None:
            return tuple(shape)
        if self.keepdims:
            return tuple(1 if i in axes else d for i, d in enumerate(shape))
        return tuple(d for i, d in enumerate(shape) if i not in axes)

    def infer(self, x, axes_input=None):
        return [(self.out_shape(x.shape, self.axes(len(x.shape), axes_input)), "float32")]

    def reference(self, x, axes_input=None):
        axes = self.axes(x.ndim, axes_input)
        if axes is None:
            return [x.copy()]
        y = self.np_reduce(x.astype(np.float64), axes)
        return [y.reshape(self.out_shape(x.shape, axes)).astype(np.float32)]

    def np_reduce(self, x: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        raise NotImplementedError

    def macs(self, ins, outs):
        return ins[0].size

    def context(self, ins, outs):
        x = ins[0]
        axes = self.axes(len(x.shape), ins[1] if len(ins) > 1 else None)
        kept, reduced = merge_axes(x.shape, () if axes is None else axes)
        count = int(np.prod([s for s, _ in reduced], dtype=np.int64))
        return {"kind": self.kind, "kept": kept, "reduced": reduced, "count": count}


class AxesFromInput:
    """Mixin for the forms that take axes as an optional second input (ReduceSum from opset 13,
    the others from 18); nncc needs its value at compile time."""
    const_inputs = (1,)

    def given_axes(self, axes_input):
        if axes_input is None:
            return None
        if not isinstance(axes_input, np.ndarray):  # a TensorInfo at compile time
            axes_input = input_value(axes_input, "axes", self)
        return tuple(int(a) for a in axes_input.ravel())


@register("ReduceMean")
class ReduceMean(Reduce):
    """Arithmetic mean over the axes (float64 in the reference, float32 sum / count in C)."""
    kind = "mean"

    def np_reduce(self, x, axes):
        return x.mean(axis=axes)


@register("ReduceMean", since=18)
class ReduceMean_18(AxesFromInput, ReduceMean):
    """Opset 18+: axes from the optional input, `noop_with_empty_axes`."""
