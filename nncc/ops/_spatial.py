"""Sliding-window geometry shared by Conv, ConvTranspose and the pools: kernel, strides,
dilations, pads (explicit or auto_pad) and output sizes, for 1 to 3 spatial dimensions.

Templates always see three spatial dimensions (D, H, W): a 1-D op is (1, 1, W), a 2-D op
(1, H, W), so one C loop nest serves every rank.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..errors import ShapeError

MAX_SPATIAL = 3


@dataclass
class Window:
    kernel: tuple[int, ...]
    strides: tuple[int, ...]
    dilations: tuple[int, ...]
    pads_begin: tuple[int, ...]
    pads_end: tuple[int, ...]
    in_size: tuple[int, ...]
    out_size: tuple[int, ...]

    @property
    def rank(self) -> int:
        return len(self.kernel)

    def as3d(self) -> dict:
        """The geometry padded to (D, H, W) for the C templates."""
        pad = MAX_SPATIAL - self.rank

        def p(v, fill):
            return (fill,) * pad + tuple(v)
        return {"k": p(self.kernel, 1), "s": p(self.strides, 1), "d": p(self.dilations, 1),
                "pb": p(self.pads_begin, 0), "pe": p(self.pads_end, 0),
                "i": p(self.in_size, 1), "o": p(self.out_size, 1)}


def _ints(v, n, default, what, op) -> tuple[int, ...]:
    if v is None:
        return (default,) * n
    v = tuple(int(x) for x in v)
    if len(v) != n:
        raise op.refuse(f"{what} has {len(v)} values for {n} spatial dims")
    return v


def _out_len(size: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: bool) -> int:
    span = (k - 1) * d + 1
    num = size + pb + pe - span
    if num < 0:
        raise ShapeError(f"kernel extent {span} exceeds padded input {size + pb + pe}")
    if not ceil_mode:
        return num // s + 1
    out = -(-num // s) + 1
    # A window may not start inside the end padding (ONNX and PyTorch agree on this rule).
    if (out - 1) * s >= size + pb:
        out -= 1
    return out


def window(op, in_size: tuple[int, ...], kernel: tuple[int, ...], ceil_mode: bool = False,
           allow_dilations: bool = True) -> Window:
    """Geometry of `op` (reads auto_pad, pads, strides, dilations) over `in_size`."""
    n = len(kernel)
    if not 1 <= n <= MAX_SPATIAL:
        raise op.refuse(f"{n} spatial dimensions (1 to {MAX_SPATIAL} supported)")
    strides = _ints(op.attr("strides"), n, 1, "strides", op)
    dil = _ints(op.attr("dilations"), n, 1, "dilations", op)
    if not allow_dilations and any(d != 1 for d in dil):
        raise op.refuse("dilations other than 1")
    if min(strides) < 1 or min(dil) < 1 or min(kernel) < 1:
        raise op.refuse("strides, dilations and kernel sizes must be >= 1")
    auto_pad = op.attr("auto_pad", "NOTSET")
    if auto_pad in ("NOTSET", ""):
        pads = _ints(op.attr("pads"), 2 * n, 0, "pads", op)
        pb, pe = pads[:n], pads[n:]
        if min(pads) < 0:
            raise op.refuse("negative pads")
    elif auto_pad == "VALID":
        pb = pe = (0,) * n
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pb_l, pe_l = [], []
        for i in range(n):
            out = math.ceil(in_size[i] / strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dil[i] + 1 - in_size[i])
            small, big = total // 2, total - total // 2
            pb_l.append(small if auto_pad == "SAME_UPPER" else big)
            pe_l.append(big if auto_pad == "SAME_UPPER" else small)
        pb, pe = tuple(pb_l), tuple(pe_l)
    else:
        raise op.refuse(f"auto_pad={auto_pad!r}")
    out = tuple(_out_len(in_size[i], kernel[i], strides[i], dil[i], pb[i], pe[i], ceil_mode)
                for i in range(n))
    if min(out) < 1:
        raise ShapeError(f"empty output {out}")
    return Window(tuple(kernel), strides, dil, pb, pe, tuple(in_size), out)


def _transpose_split(total: int, auto_pad: str, modern: bool) -> tuple[int, int] | None:
    """Split ConvTranspose's total padding into (begin, end), or None when the spec is ambiguous.

    Opset 11+ puts the odd unit at the end for SAME_UPPER and at the beginning otherwise. The
    opset 1-10 formula says the opposite while its auto_pad text (and onnxruntime) agree with
    opset 11: odd totals before opset 11 (`modern=False`) have no single right answer."""
    small, big = total // 2, total - total // 2
    if small == big:
        return small, big
    if not modern:
        return None
    return (small, big) if auto_pad == "SAME_UPPER" else (big, small)


def _pads_for_output(op, want, full, strides, auto_pad, modern, from_same):
    """(pads_begin, pads_end) that crop the full ConvTranspose output to the size `want`."""
    n = len(full)
    totals = [full[i] - want[i] for i in range(n)]
    # A negative total grows the output at the end (zeros + bias), like output_padding does;
    # onnxruntime and the ONNX node case test_convtranspose_output_shape agree, as long as
    # the growth stays below the stride and comes from output_shape, not from SAME_*.
    if any(t < 0 and (from_same or -t >= strides[i]) for i, t in enumerate(totals)):
        raise op.refuse(f"output size {want} beyond the full output {full} by a stride or more, "
                        "or from auto_pad SAME_*")
    if auto_pad == "VALID" and any(totals):  # VALID promises no padding at all
        raise op.refuse("auto_pad=VALID with an output_shape that needs padding")
    split = [(0, t) if t < 0 else _transpose_split(t, auto_pad, modern) for t in totals]
    if None in split:
        raise op.refuse("odd total padding before opset 11 (the spec contradicts itself)")
    return tuple(s[0] for s in split), tuple(s[1] for s in split)


def transposed_window(op, in_size: tuple[int, ...], kernel: tuple[int, ...],
                      modern: bool = True) -> Window:
    """Geometry of a ConvTranspose: reads strides, dilations, pads, auto_pad, output_padding
    and output_shape. `in_size` is the input's spatial size, `out_size` the (larger) output's;
    pads are cropped from the full output, as the ONNX spec defines them."""
    n = len(kernel)
    if not 1 <= n <= MAX_SPATIAL:
        raise op.refuse(f"{n} spatial dimensions (1 to {MAX_SPATIAL} supported)")
    strides = _ints(op.attr("strides"), n, 1, "strides", op)
    dil = _ints(op.attr("dilations"), n, 1, "dilations", op)
    opad = _ints(op.attr("output_padding"), n, 0, "output_padding", op)
    if min(strides) < 1 or min(dil) < 1 or min(kernel) < 1 or min(opad) < 0:
        raise op.refuse("strides, dilations and kernel sizes must be >= 1, output_padding >= 0")
    full = tuple(strides[i] * (in_size[i] - 1) + opad[i] + (kernel[i] - 1) * dil[i] + 1
                 for i in range(n))
    auto_pad = op.attr("auto_pad", "NOTSET") or "NOTSET"
    if auto_pad not in ("NOTSET", "VALID", "SAME_UPPER", "SAME_LOWER"):
        raise op.refuse(f"auto_pad={auto_pad!r}")
    explicit = _ints(op.attr("pads"), 2 * n, 0, "pads", op) if auto_pad == "NOTSET" else (0,) * 2 * n
    if min(explicit) < 0:
        raise op.refuse("negative pads")
    want = op.attr("output_shape")
    from_same = want is None and auto_pad in ("SAME_UPPER", "SAME_LOWER")
    if want is not None and len(want) not in (n, n + 2):
        raise op.refuse(f"output_shape has {len(want)} values for {n} spatial dims")
    if want is not None:
        want = tuple(int(v) for v in want)[-n:]  # N and C, when given, are not padding's business
    elif from_same:
        want = tuple(in_size[i] * strides[i] for i in range(n))
    if want is not None:
        pb, pe = _pads_for_output(op, want, full, strides, auto_pad, modern, from_same)
        if any(explicit) and (pb, pe) != (explicit[:n], explicit[n:]):
            # The spec says output_shape overrides pads; runtimes disagree, so do not guess.
            raise op.refuse("pads that contradict output_shape")
    else:
        pb, pe = explicit[:n], explicit[n:]
    out = tuple(full[i] - pb[i] - pe[i] for i in range(n))
    if min(out) < 1:
        raise ShapeError(f"empty output {out}")
    return Window(tuple(kernel), strides, dil, pb, pe, tuple(in_size), out)
