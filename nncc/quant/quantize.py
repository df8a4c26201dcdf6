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
    per_channel: bool = True    # weight scales per output channel; False: per tensor (--per-tensor)
    int16: list[str] = field(default_factory=list)       # nodes with int16 outputs (quant/mixed.py)
    keep_float: list[str] = field(default_factory=list)  # nodes left in float
    datafree: object = None     # datafree.DataFreeOptions: `--calib none`, no samples used
    target_sqnr: float | None = None  # raise layers to int16 until this output SQNR (quant/auto.py)
    winograd: bool = False      # int8 3x3 convolutions by Winograd F(2x2, 3x3) (nncc/lower.py)

    @property
    def mixed(self) -> bool:
        return self.precision == "int16" or bool(self.int16 or self.keep_float) \
            or self.target_sqnr is not None


def quantize(g: Graph, opts: QuantOptions) -> Graph:
    from .calibrate import calibrate_both
    from .rewrite import quantize_graph
    from .rewrite_more import share_concat_ranges
    if opts.precision not in ("int8", "int16"):
        raise UsageError(f"--quantize {opts.precision}: int8 or int16")
    if opts.precision == "int16" and (opts.int16 or opts.target_sqnr is not None):
        raise UsageError("--int16 / --target-sqnr raise layers of an int8 build: use them with "
                         "--quantize int8")
    if opts.scaling not in ("fixed", "shift", "double-shift"):
        raise UsageError(f"unknown --scaling {opts.scaling} (fixed, shift, double-shift)")
    if opts.scaling == "double-shift" and opts.mixed:
        raise UsageError("--scaling double-shift is for int8 builds (no int16 or float layers)")
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
    g = float_source(g)
    minmax = None
    if opts.datafree is not None:
        if opts.mixed:
            raise UsageError("data-free quantization makes a plain int8 build (no int16 or float layers)")
        from .datafree import datafree
        g, ranges = datafree(g, opts.datafree, opts.scaling, opts.packed, opts.progress,
                             opts.per_channel)
    else:
        if opts.mixed:
            from .mixed import check_names
            check_names(g, opts)
        # int16 tensors take min/max ranges (quant/mixed.py), from the same pass
        ranges, minmax = calibrate_both(g, samples, "minmax" if opts.precision == "int16"
                                        else opts.observer, opts.progress)
    ranges = share_concat_ranges(g, ranges)
    if opts.mixed:
        from .mixed import quantize_mixed
        q = quantize_mixed(g, samples, ranges, minmax, opts)
    else:
        q = quantize_graph(g, ranges, opts.scaling, opts.packed, opts.per_channel)
    if opts.fuse_add:
        from .fuse_qadd import fuse_qadd
        fuse_qadd(q)
    if opts.winograd:
        from ..lower import choose_kernels
        choose_kernels(q, winograd=True)
    return q


def float_source(g: Graph) -> Graph:
    """The float graph the quantizer calibrates and rewrites: the -O2 graph with residual Convs
    and Conv+pool pairs split again (the int8 kernels take no residual input), and activations
    an int8 kernel cannot clamp (Sigmoid, Tanh...) split off to become tables. The int8 graph
    keeps its activation names, so quant/fidelity.py compares it tensor by tensor with this one."""
    from ..passes.fuse_residual_add import unfuse_residual_add
    from .rewrite import unfuse_conv_pool
    from .rewrite_more import unfuse_table_activations
    return unfuse_table_activations(unfuse_conv_pool(unfuse_residual_add(g)))


def host_codec(report: dict):
    """(encode, decode) for running a compiled project on float data: an int8 / int16 project's
    inputs are quantized and its outputs dequantized with the scales in its report.json."""
    from .fixed_point import dequantize, quantize_float
    from .int16 import qrange

    def encode(sample: dict) -> dict:
        return {t["name"]: quantize_float(sample[t["name"]], t["scale"], t["zero_point"],
                                          *qrange(t["dtype"]), dtype=t["dtype"])
                if "scale" in t else sample[t["name"]] for t in report["inputs"]}

    def decode(outs: dict) -> dict:
        return {t["name"]: dequantize(outs[t["name"]], t["scale"], t["zero_point"])
                if "scale" in t else outs[t["name"]] for t in report["outputs"]}
    return encode, decode
