"""Pad: constant, reflect and edge padding of any rank, with negative pads (cropping).

Opset 1 names the pads `paddings`, opsets 2-10 `pads` (attributes, with a `value` attribute);
from opset 11 pads and the optional constant value are constant inputs, and opset 18 adds an
optional constant `axes` input. Negative pads crop first, then the remaining (positive) pads are
applied to the cropped tensor, as onnxruntime does. 'wrap' is refused.
"""
from __future__ import annotations

import numpy as np

from ..errors import ShapeError
from . import Op, register
from .shape import norm_axes

MODES = ("constant", "reflect", "edge")


class PadBase(Op):
    template = "ops/pad.c.j2"

    def parse(self):
        self.mode = self.attr("mode", "constant")
        if self.mode not in MODES:
            raise self.refuse(f"mode {self.mode!r} is not supported (only {', '.join(MODES)})")

    # Subclasses return (pads as [begin..., end...] over `axes`, axes or None, constant value).
    def params(self, *consts) -> tuple[list[int], list[int] | None, float]:
        raise NotImplementedError

    def pads(self, rank: int, *consts) -> tuple[list[tuple[int, int]], float]:
        """Per-axis (begin, end) pads over all `rank` axes and the fill value."""
        raw, axes, value = self.params(*consts)
        axes = list(range(rank)) if axes is None else norm_axes(self, axes, rank)
        if len(raw) != 2 * len(axes):
            raise ShapeError(f"{len(raw)} pads for {len(axes)} axes")
        pw = [(0, 0)] * rank
        for i, a in enumerate(axes):
            pw[a] = (int(raw[i]), int(raw[len(axes) + i]))
        return pw, value

    def geometry(self, shape, *consts) -> tuple[list[tuple[int, int]], list[tuple[int, int]], float]:
        """-> (crop (begin, end) per axis, pads after cropping per axis, fill value)."""
        pw, value = self.pads(len(shape), *consts)
        crop = [(max(-b, 0), max(-e, 0)) for b, e in pw]
        pads = [(max(b, 0), max(e, 0)) for b, e in pw]
        for n, (cb, ce), (pb, pe) in zip(shape, crop, pads):
            kept = n - cb - ce
            if kept < 0 or (kept == 0 and (pb or pe)):
                raise ShapeError(f"pads {pw} crop more than the input shape {tuple(shape)}")
            # One reflection only: onnxruntime and numpy differ beyond it.
            if self.mode == "reflect" and max(pb, pe) > kept - 1:
                raise self.refuse(f"reflect pads {pw} need pads smaller than the dimension")
        return crop, pads, value

    def infer(self, x, *rest):
        crop, pads, _ = self.geometry(x.shape, *[None if t is None else t.data for t in rest])
        return [(tuple(n - cb - ce + pb + pe for n, (cb, ce), (pb, pe) in zip(x.shape, crop, pads)),
                 "float32")]

    def reference(self, x, *consts):
        crop, pads, value = self.geometry(x.shape, *consts)
        x = x[tuple(slice(cb, n - ce) for n, (cb, ce) in zip(x.shape, crop))]
        if self.mode == "constant":
            return [np.pad(x, pads, mode="constant", constant_values=value).astype(np.float32)]
        return [np.pad(x, pads, mode=self.mode).astype(np.float32)]

    def context(self, ins, outs):
        x = ins[0]
        crop, pads, value = self.geometry(x.shape, *[None if t is None else t.data for t in ins[1:]])
        strides = [int(np.prod(x.shape[i + 1:], dtype=np.int64)) for i in range(len(x.shape))]
        axes = []
        for n, s, (cb, ce), (pb, pe) in zip(x.shape, strides, crop, pads):
            # Input index i = o - pb + cb must stay in [lo, hi], the kept (cropped) range.
            axes.append({"out": n - cb - ce + pb + pe, "shift": cb - pb, "lo": cb, "hi": n - ce - 1,
                         "stride": s, "padded": bool(pb or pe)})
        return {"axes": merge_axes(axes), "mode": self.mode, "value": value}


def merge_axes(axes: list[dict]) -> list[dict]:
    """Fuse an unpadded, uncropped axis into the previous one when that one is also unpadded and
    uncropped: together they are one contiguous run. Fewer loops, same element order."""
    out: list[dict] = []
    for a in axes:
        plain = not a["padded"] and a["shift"] == 0 and a["lo"] == 0
        prev = out[-1] if out else None
        if plain and prev is not None and not prev["padded"] and prev["shift"] == 0 and prev["lo"] == 0:
            n = prev["out"] * a["out"]
            out[-1] = {"out": n, "shift": 0, "lo": 0, "hi": n - 1, "stride": a["stride"],
                       "padded": False}
        else:
            out.append(dict(a))
    return out or [{"out": 1, "shift": 0, "lo": 0, "hi": 0, "stride": 0, "padded": False}]


def _scalar(v, default: float = 0.0) -> float:
    if v is None:
        return default
    v = np.asarray(v).ravel()
    return float(v[0]) if v.size else default


@register("Pad")
class Pad(PadBase):
    """Opset 1: `paddings` attribute, `value` attribute."""
    pads_attr = "paddings"

    def params(self, *consts):
        raw = self.attr(self.pads_attr)
        if raw is None:
            raise self.refuse(f"missing `{self.pads_attr}` attribute")
        return [int(p) for p in raw], None, float(self.attr("value", 0.0))


@register("Pad", since=2)
class Pad_2(Pad):
    """Opsets 2-10: `pads` attribute."""
    pads_attr = "pads"


@register("Pad", since=11)
class Pad_11(PadBase):
    """Opsets 11+: constant `pads` input, optional constant `constant_value` input."""
    const_inputs = (1, 2)

    def params(self, pads=None, value=None, axes=None, *rest):
        if pads is None:
            raise self.refuse("pads input must be a constant")
        return [int(p) for p in np.asarray(pads).ravel()], None, _scalar(value)


@register("Pad", since=18)
class Pad_18(Pad_11):
    """Opset 18+: optional constant `axes` input (negative axes allowed)."""
    const_inputs = (1, 2, 3)

    def params(self, pads=None, value=None, axes=None, *rest):
        raw, _, v = super().params(pads, value)
        return raw, (None if axes is None else [int(a) for a in np.asarray(axes).ravel()]), v
