"""Pooling: MaxPool and AveragePool (1-D to 3-D; kernel_shape, strides, pads, auto_pad, dilations,
ceil_mode, count_include_pad) and GlobalAveragePool / GlobalMaxPool, which are the same kernel
with one window covering the whole (flattened) spatial extent.

AveragePool's divisor is the number of taps that fall inside the real input (count_include_pad=0)
or inside the padded input (count_include_pad=1); with ceil_mode the last window may run past the
padded input and those taps never count. The divisors are separable, so Python hands the C one
small table per spatial dimension (or a single constant when every window is full).
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from ..ir import TensorInfo
from . import Op, register
from ._spatial import Window, window


def tap_counts(win: Window, i: int, include_pad: bool) -> list[int]:
    """Per output position along dimension i: taps inside the input (or the padded input)."""
    lo = -win.pads_begin[i] if include_pad else 0
    hi = win.in_size[i] + (win.pads_end[i] if include_pad else 0)
    counts = []
    for o in range(win.out_size[i]):
        start = o * win.strides[i] - win.pads_begin[i]
        taps = (start + k * win.dilations[i] for k in range(win.kernel[i]))
        counts.append(sum(lo <= t < hi for t in taps))
    return counts


def pool_reference(x: np.ndarray, win: Window, kind: str, include_pad: bool) -> np.ndarray:
    """Max or average over strided window slices of a padded copy, in float64."""
    nd = win.rank
    span = [(win.kernel[i] - 1) * win.dilations[i] + 1 for i in range(nd)]
    # Extend the end so ceil_mode windows that run past the padded input can still be sliced.
    end = [max(win.pads_end[i], (win.out_size[i] - 1) * win.strides[i] + span[i]
               - win.pads_begin[i] - win.in_size[i]) for i in range(nd)]
    widths = [(0, 0), (0, 0)] + [(win.pads_begin[i], end[i]) for i in range(nd)]
    fill = -np.inf if kind == "max" else 0.0
    xp = np.pad(x.astype(np.float64), widths, constant_values=fill)
    valid = np.pad(np.ones(win.in_size), widths[2:])
    inside = np.zeros(valid.shape)
    inside[tuple(slice(0, win.pads_begin[i] + win.in_size[i] + win.pads_end[i]) for i in range(nd))] = 1
    mask = inside if include_pad else valid
    acc = np.full((*x.shape[:2], *win.out_size), fill)
    count = np.zeros(win.out_size)
    for tap in np.ndindex(*win.kernel):
        sl = tuple(slice(tap[i] * win.dilations[i],
                         tap[i] * win.dilations[i] + (win.out_size[i] - 1) * win.strides[i] + 1,
                         win.strides[i]) for i in range(nd))
        patch = xp[(slice(None),) * 2 + sl]
        acc = np.maximum(acc, patch) if kind == "max" else acc + patch * mask[sl]
        count += mask[sl]
    if kind == "avg":
        acc = acc / count
    return acc.astype(np.float32)


class _Pool(Op):
    """Shared by the windowed and the global pools: geometry -> reference, context."""
    template = "ops/pool.c.j2"
    kind = "max"
    include_pad = False

    def parse(self):
        if len(self.node.outputs) > 1 and self.node.outputs[1]:
            raise self.refuse("the Indices output")

    def geometry(self, x: TensorInfo) -> Window:
        raise NotImplementedError

    def infer(self, x):
        win = self.geometry(x)
        return [((*x.shape[:2], *self.out_spatial(x, win)), "float32")]

    def out_spatial(self, x: TensorInfo, win: Window) -> tuple[int, ...]:
        return win.out_size

    def reference(self, x):
        win = self.geometry(TensorInfo("x", x.shape))
        y = pool_reference(x.reshape(*x.shape[:2], *win.in_size), win, self.kind, self.include_pad)
        return [y.reshape(*x.shape[:2], *self.out_spatial(TensorInfo("x", x.shape), win))]

    def macs(self, ins, outs):
        return outs[0].size * int(np.prod(self.geometry(ins[0]).kernel))

    def context(self, ins, outs):
        win = self.geometry(ins[0])
        # "whole": one window that is the whole input (a global pool), each plane in one run
        whole = win.kernel == win.in_size and not any(win.pads_begin + win.pads_end) and set(win.dilations) == {1}
        ctx = {"g": win.as3d(), "planes": ins[0].shape[0] * ins[0].shape[1], "kind": self.kind,
               "lowest": -np.inf, "whole": whole}
        if self.kind == "avg":
            counts = [tap_counts(win, i, self.include_pad) for i in range(win.rank)]
            counts = [[1]] * (3 - win.rank) + counts  # as3d: leading dims hold one tap
            full = all(len(set(c)) == 1 for c in counts)
            ctx["divisor"] = int(np.prod([c[0] for c in counts])) if full else None
            ctx["counts"] = counts
        return ctx


class _WindowPool(_Pool):
    """MaxPool / AveragePool: kernel_shape, strides, pads, auto_pad, dilations, ceil_mode."""

    def parse(self):
        super().parse()
        self.kernel = tuple(int(v) for v in self.attr("kernel_shape") or ())
        if not self.kernel:
            raise self.refuse("missing kernel_shape")
        self.ceil_mode = int(self.attr("ceil_mode", 0))
        if self.ceil_mode not in (0, 1):
            raise self.refuse(f"ceil_mode={self.ceil_mode}")

    def geometry(self, x):
        if len(x.shape) != len(self.kernel) + 2:
            raise ShapeError(f"input rank {len(x.shape)} for kernel_shape {self.kernel}")
        win = window(self, x.shape[2:], self.kernel, bool(self.ceil_mode))
        for i in range(win.rank):
            if min(tap_counts(win, i, include_pad=False)) == 0:
                # Max of nothing / average over zero elements: the spec leaves it undefined.
                raise self.refuse(f"a window that covers only padding (pads {win.pads_begin}, "
                                  f"{win.pads_end})")
        return win


@register("MaxPool")
class MaxPool(_WindowPool):
    """y = max over each window; padding never wins. storage_order only affects Indices."""
    kind = "max"


@register("AveragePool")
class AveragePool(_WindowPool):
    """y = mean over each window; count_include_pad picks the divisor."""
    kind = "avg"

    def parse(self):
        super().parse()
        cip = int(self.attr("count_include_pad", 0))
        if cip not in (0, 1):
            raise self.refuse(f"count_include_pad={cip}")
        self.include_pad = bool(cip)


class _GlobalPool(_Pool):
    """One window over all spatial positions, flattened to one dimension."""

    def geometry(self, x):
        if len(x.shape) < 3:
            raise ShapeError(f"input rank {len(x.shape)}, expected N x C x spatial...")
        n = int(np.prod(x.shape[2:]))
        return Window((n,), (1,), (1,), (0,), (0,), (n,), (1,))

    def out_spatial(self, x, win):
        return (1,) * (len(x.shape) - 2)


@register("GlobalMaxPool")
class GlobalMaxPool(_GlobalPool):
    """y[n, c] = max over all spatial positions."""
    kind = "max"


@register("GlobalAveragePool")
class GlobalAveragePool(_GlobalPool):
    """y[n, c] = mean over all spatial positions."""
    kind = "avg"
