"""Data-free quantization (`--calib none`): int8 without calibration samples, after Nagel et al.
2019, "Data-Free Quantization Through Weight Equalization and Bias Correction".

On a copy of the float graph (after -O2, BatchNorm folded with its statistics kept by
passes/fold_batchnorm.py):
1. cross-layer equalization (equalize.py; float function unchanged, ReLU6 pairs see there);
2. activation statistics from the BatchNorm statistics (estimate.py) give every activation's
   range, in place of calibrate.calibrate();
3. analytic bias correction: quantizing W to W + e (with the int8 weights the rewrite will use,
   rewrite.layer_weights, for the input and output scales the rewrite gives the layer: a dry
   run of the rewrite on the estimated ranges tells them, double-shift's raised output scales
   included) shifts a layer's expected output by e E[x]; subtracting that from the bias makes
   the int8 layer unbiased. Exact but for two choices the rewrite makes from the corrected bias
   itself: a packed layer whose bias does not fit its int16 has its channel scales' range
   narrowed (max_k below MAX_K) or is stored unpacked, and unpacked, a channel whose bias would
   overflow int32 gets coarser weights (Rewriter.fit_bias); the correction assumes neither.
   E[x] is the estimated mean of the layer's input; a layer whose input has none (the graph
   input) is left uncorrected. A Conv's zero padding holds 0, not E[x]: each kernel tap's
   share of the correction is weighted by the fraction of output positions where it reads
   real input (the paper ignores padding; on small late feature maps, 3x3 with pad 1, a
   corner tap reads padding for 5 of 9 outputs).
The graph inputs carry no statistics: their range is declared (`--input-range LO,HI`,
default DEFAULT_INPUT_RANGE, a common normalisation of network inputs; a note on
stderr says so). Refused with one clear error: a model without any BatchNorm statistics (the
MLPerf Tiny models, exported with BN already folded): nothing would tell the activation ranges
but the worst case, which wastes most of the int8 steps; and a model with a chain of layers
without BN statistics (estimate.py: the estimate is used for one such layer, e.g. the final
classifier, not compounded).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ..errors import UnsupportedOp, UsageError
from ..ir import Graph
from ..ops import make_op
from ..passes.fold_batchnorm import BN_STATS
from .equalize import equalize
from .estimate import SIGMAS, Estimate, Estimator, channel_values, ranges_of
from .layers import read_layer, write_layer
from .rewrite import Rewriter, layer_weights
from .rewrite_more import share_concat_ranges

DEFAULT_INPUT_RANGE = (-1.0, 1.0)


@dataclass
class DataFreeOptions:
    input_range: dict | tuple | None = None  # (lo, hi) for every input, or {name: (lo, hi)}
    equalize: bool = True         # cross-layer equalization
    bias_correction: bool = True  # analytic bias correction
    relu6: str = "keep"           # equalize.py: "keep" ReLU6 pairs unequalized, or "relu" (paper)
    sigmas: float = SIGMAS        # activation range: BN mean +- sigmas * std, clipped


def parse_input_ranges(specs: list[str] | None) -> dict | tuple | None:
    """`--input-range` values: "LO,HI" (every input) or "NAME=LO,HI", repeatable."""
    if not specs:
        return None
    named: dict = {}
    for spec in specs:
        name, _, vals = spec.rpartition("=")
        try:
            lo, hi = (float(v) for v in vals.split(","))
        except ValueError:
            raise UsageError(f"--input-range {spec!r}: expected LO,HI or NAME=LO,HI") from None
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise UsageError(f"--input-range {spec!r}: need finite LO < HI")
        named[name] = (lo, hi)
    return named.pop("") if list(named) == [""] else named


def input_ranges(g: Graph, declared) -> tuple[dict, list[str]]:
    """({input: (lo, hi)}, names of the inputs that got the default range)."""
    if isinstance(declared, dict):
        unknown = sorted(set(declared) - set(g.inputs) - {""})
        if unknown:
            raise UsageError(f"--input-range names {', '.join(unknown)}; the model's inputs are "
                             f"{', '.join(g.inputs)}")
        default = declared.get("", DEFAULT_INPUT_RANGE)
        return ({t: tuple(declared.get(t, default)) for t in g.inputs},
                [t for t in g.inputs if t not in declared and "" not in declared])
    if declared is not None:
        return {t: tuple(declared) for t in g.inputs}, []
    return {t: DEFAULT_INPUT_RANGE for t in g.inputs}, list(g.inputs)


def tap_coverage(g: Graph, node) -> np.ndarray:
    """For each kernel tap of a Conv, the fraction of output positions where it reads input
    rather than padding (shape (1, 1, *kernel))."""
    win = make_op(node).geometry(*(g.tensors[t] for t in node.inputs[:2]))
    frac = np.ones((1, 1))
    for i in range(win.rank):
        pos = (np.arange(win.out_size[i])[:, None] * win.strides[i] - win.pads_begin[i]
               + np.arange(win.kernel[i])[None, :] * win.dilations[i])
        inside = ((pos >= 0) & (pos < win.in_size[i])).mean(axis=0)
        frac = frac[..., None] * inside
    return frac


def layer_scales(g: Graph, est: dict[str, Estimate], scaling: str, packed: bool,
                 per_channel: bool = True) -> dict[str, tuple[float, float]]:
    """{QConv / QGemm name: (input scale, output scale)} of the int8 build of `g` on the
    estimated ranges (as quantize.py makes it): the rewrite run for its scales alone, which
    do not depend on the biases."""
    ranges = share_concat_ranges(g, Ranges(ranges_of(est)))
    rw = Rewriter(g, ranges, scaling, packed, per_channel)
    rw.run()
    return rw.layer_scales


def correct_biases(g: Graph, est: dict[str, Estimate], scaling: str, packed: bool,
                   per_channel: bool = True) -> list[str]:
    """Analytic bias correction of every Conv / Gemm whose input has an estimated mean, in
    place; -> the names of the corrected nodes."""
    done, scales = [], None
    for node in g.nodes():
        x = est.get(node.inputs[0]) if node.op in ("Conv", "Gemm") else None
        layer = read_layer(g, node) if x is not None and x.mean is not None else None
        if layer is None:
            continue
        if scales is None:  # before any bias changes (they change no scale)
            scales = layer_scales(g, est, scaling, packed, per_channel)
        wq, s_w, _ = layer_weights(layer.w, scaling, *scales[node.name], packed, per_channel)
        err = wq * s_w.reshape(-1, *[1] * (layer.w.ndim - 1)) - layer.w
        mean = channel_values(x.mean, g.tensors[node.inputs[0]].shape)
        if node.op == "Conv":
            err = err * tap_coverage(g, node)
        layer.b = layer.b - layer.per_output(mean, err)
        write_layer(g, layer)
        done.append(node.name)
    return done


class Ranges(dict):
    """{tensor: (lo, hi)}; a tensor the estimate could not reach is refused by name."""

    def __missing__(self, t):
        raise UnsupportedOp(f"tensor {t!r}: no data-free range estimate (its producer is not a "
                            "Conv / Gemm / pool / view / Add fed by estimated tensors)")


def datafree(g: Graph, opts: DataFreeOptions, scaling: str = "fixed", packed: bool = True,
             progress: bool = False, per_channel: bool = True) -> tuple[Graph, dict]:
    """-> (the float graph to quantize, {tensor: (lo, hi)}) without calibration data."""
    if not any(BN_STATS in n.attrs for n in g.nodes()):
        raise UsageError("--calib none: the model has no BatchNormalization statistics to estimate "
                         "activation ranges from; give calibration data (--calib CALIB.npz)")
    g = g.copy()  # the caller's float graph stays as it was
    notes = []
    ranges, defaulted = input_ranges(g, opts.input_range)
    if defaulted:
        lo, hi = DEFAULT_INPUT_RANGE
        notes.append(f"input {', '.join(defaulted)} assumed in [{lo:g}, {hi:g}] (--input-range LO,HI)")
    if opts.equalize:
        eq = equalize(g, opts.relu6)
        notes.append(f"{len(eq.pairs)} layer pair(s) equalized"
                     + (f", {len(eq.skipped)} left as they are ({eq.skipped[0]}...)" if eq.skipped else ""))
    estimator = Estimator(g, ranges, opts.sigmas)
    est = estimator.run()
    if estimator.guessed:
        names = ", ".join(estimator.guessed[:3]) + (" ..." if len(estimator.guessed) > 3 else "")
        raise UsageError(f"--calib none: {names} follow(s) another layer without BatchNormalization "
                         "statistics: their activation ranges cannot be estimated without data; give "
                         "calibration data (--calib CALIB.npz)")
    if opts.bias_correction:
        notes.append(f"bias correction on {len(correct_biases(g, est, scaling, packed, per_channel))} layer(s)")
    if progress:
        print(f"data-free quantization: {'; '.join(notes)}", file=sys.stderr)
    return g, Ranges(ranges_of(est))
