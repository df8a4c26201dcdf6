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
    scaling: str = "fixed"      # fixed | shift
    observer: str = "minmax"    # calibrate.OBSERVERS
    progress: bool = False      # a progress bar on stderr while calibrating


def quantize(g: Graph, opts: QuantOptions) -> Graph:
    from .calibrate import calibrate
    from .rewrite import quantize_graph, unfuse_conv_pool
    if opts.precision != "int8":
        raise UsageError(f"--quantize {opts.precision} is not available yet (int8 only)")
    if opts.scaling not in ("fixed", "shift"):
        raise UsageError(f"--scaling {opts.scaling} is not available yet (fixed, shift)")
    samples = opts.samples
    if opts.arrays is not None:
        from ..npzio import split_samples
        specs = [{"name": t, "shape": list(g.tensors[t].shape)} for t in g.inputs]
        try:
            samples, _ = split_samples(opts.arrays, specs)
        except UsageError as e:
            raise UsageError(f"calibration data: {e}") from None
    g = unfuse_conv_pool(g)
    ranges = calibrate(g, samples, opts.observer, opts.progress)
    return quantize_graph(g, ranges, opts.scaling)


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
