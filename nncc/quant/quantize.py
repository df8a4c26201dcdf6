"""Quantize stage driver: float IR after the passes -> calibrated -> integer IR. Called by
compiler.compile_model when `--quantize` is given; the options mirror the command line."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UsageError
from ..ir import Graph


@dataclass
class QuantOptions:
    precision: str = "int8"
    samples: list[dict] = field(default_factory=list)  # calibration inputs (npzio.split_samples)
    arrays: dict | None = None  # or the raw arrays of a CALIB.npz, split against the model's inputs
    scaling: str = "fixed"      # fixed | shift | double-shift
    observer: str = "mse"       # calibrate.OBSERVERS (mse the most robust: fixtures/quant/RESULTS.md)
    progress: bool = False      # a progress bar on stderr while calibrating
    packed: bool = True         # QConv / QGemm bias + requantization in 2 bytes per channel
    fuse_add: bool = True       # QConv -> QAdd fused into one QConv (quant/fuse_qadd.py)


def quantize(g: Graph, opts: QuantOptions) -> Graph:
    from .calibrate import calibrate
    from .rewrite import quantize_graph, unfuse_conv_pool
    if opts.precision != "int8":
        raise UsageError(f"--quantize {opts.precision} is not available yet (int8 only)")
    if opts.scaling not in ("fixed", "shift", "double-shift"):
        raise UsageError(f"unknown --scaling {opts.scaling} (fixed, shift, double-shift)")
    if any(t.quant is not None for t in g.tensors.values()):  # imported by quant/import_qdq.py
        raise UsageError("the model is already quantized (QDQ / QLinear nodes): compile it "
                         "without --quantize; its own scales are used")
    samples = opts.samples
    if opts.arrays is not None:
        from ..npzio import split_samples
        specs = [{"name": t, "shape": list(g.tensors[t].shape)} for t in g.inputs]
        try:
            samples, _ = split_samples(opts.arrays, specs)
        except UsageError as e:
            raise UsageError(f"calibration data: {e}") from None
    from ..passes.fuse_residual_add import unfuse_residual_add
    g = unfuse_conv_pool(unfuse_residual_add(g))  # the int8 kernels take no residual input
    ranges = calibrate(g, samples, opts.observer, opts.progress)
    q = quantize_graph(g, ranges, opts.scaling, opts.packed)
    if opts.fuse_add:
        from .fuse_qadd import fuse_qadd
        fuse_qadd(q)
    return q


def host_codec(report: dict):
    """(encode, decode) for running a compiled project on float data: an int8 project's inputs
    are quantized and its outputs dequantized with the scales in its report.json."""
    from .fixed_point import dequantize, quantize_float

    def encode(sample: dict) -> dict:
        return {t["name"]: quantize_float(sample[t["name"]], t["scale"], t["zero_point"])
                if "scale" in t else sample[t["name"]] for t in report["inputs"]}

    def decode(outs: dict) -> dict:
        return {t["name"]: dequantize(outs[t["name"]], t["scale"], t["zero_point"])
                if "scale" in t else outs[t["name"]] for t in report["outputs"]}
    return encode, decode
