"""Command line: `nncc compile|run|validate|analyze`. Parses arguments, calls the pipeline and
turns every NnccError into one line on stderr with a non-zero exit status."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from . import __version__
from .errors import NnccError, UsageError
from .frontend import parse_input_shapes
from .table import ellipsize, format_table


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input-shape", action="append", metavar="NAME=DIMS",
                   help="pin an input's shape, e.g. input=1,3,96,96 (repeatable)")
    p.add_argument("-O", dest="opt", type=int, choices=[0, 1, 2], default=2,
                   help="optimisation level: -O0 no passes, -O2 all (default)")


def _quant_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quantize", choices=["int8", "int16"])
    p.add_argument("--calib", metavar="CALIB.npz", help="calibration inputs for --quantize, or "
                   "`none`: data-free, ranges from the BatchNorm statistics")
    p.add_argument("--input-range", action="append", metavar="[NAME=]LO,HI",
                   help="with --calib none: the inputs' value range (default -1,1)")
    p.add_argument("--scaling", choices=["fixed", "shift", "double-shift"], default="fixed",
                   help="requantization: int32 multiplier + shift, power-of-two scales, or "
                        "multipliers 2^-n +- 2^-m (shifts and adds only)")
    p.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of one per output channel")
    p.add_argument("--observer", choices=["mse", "minmax", "percentile", "kl", "ksigma"],
                   default="mse",
                   help="activation range observer used while calibrating (default: mse)")
    p.add_argument("--int16", nargs="+", action="extend", default=[], metavar="NODE",
                   help="these nodes' outputs int16 in an int8 build")
    p.add_argument("--keep-float", nargs="+", action="extend", default=[], metavar="NODE",
                   help="these nodes run in float in a quantized build")
    p.add_argument("--target-sqnr", type=float, metavar="DB",
                   help="raise layers of an int8 build to int16 until the output SQNR on the "
                        "calibration data reaches DB")
    p.add_argument("--winograd", action="store_true",
                   help="int8 3x3 convolutions (stride 1, 8+ channels) by Winograd F(2x2, 3x3): "
                        "fewer multiplies, 3.6x their weights' flash")


VALIDATE_DOC = """\
Compile, run the C and compare it with the numpy reference (and onnxruntime). Exit status 1
when outside tolerance.
- float build: every output within --rtol/--atol of the reference and of onnxruntime.
- --quantize build: the C equals the integer reference bit for bit, and against the float model
  on the same inputs (IN.npz, else CALIB.npz) every output's SQNR is >= --min-sqnr dB and,
  when that npz holds labels y, the top-1 accuracy is at most --max-top1-drop points below
  float's. The per-layer SQNR table is informative; it does not decide the exit status."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="nncc", description="ONNX to portable C for microcontrollers")
    ap.add_argument("--version", action="version", version=f"nncc {__version__}")
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("compile", help="compile an ONNX model into a C project")
    p.add_argument("model")
    p.add_argument("-o", "--output", required=True, metavar="DIR")
    p.add_argument("--force", action="store_true", help="overwrite what nncc wrote in DIR")
    p.add_argument("--name", help="C prefix of every generated symbol (default: file name)")
    p.add_argument("--target", default="host")
    p.add_argument("--align", type=int, default=4, choices=[4, 8, 16])
    _quant_args(p)
    _common(p)

    p = sub.add_parser("run", help="run a compiled project on the host")
    p.add_argument("project")
    p.add_argument("--inputs", required=True, metavar="IN.npz")
    p.add_argument("--out", required=True, metavar="OUT.npz")

    p = sub.add_parser("validate", help="compile, run on the host and compare with the reference",
                       description=VALIDATE_DOC, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--inputs", metavar="IN.npz", help="default: 3 seeded random samples (with "
                   "--quantize: CALIB.npz); with --quantize, a key y (one integer class per sample) "
                   "adds top-1 accuracy")
    p.add_argument("--target", default="host")
    p.add_argument("--rtol", type=float, default=1e-4)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--min-sqnr", type=float, default=20.0, metavar="DB",
                   help="with --quantize: least output SQNR vs the float model (default 20)")
    p.add_argument("--max-top1-drop", type=float, default=1.0, metavar="POINTS",
                   help="with --quantize and labels: most top-1 points lost vs float (default 1)")
    _quant_args(p)
    _common(p)

    p = sub.add_parser("bench", help="instructions executed per inference (valgrind / QEMU); "
                       "on cortex-m4 also a cycle estimate")
    p.add_argument("model")
    p.add_argument("--target", default="host")
    p.add_argument("--per-layer", action="store_true", help="also the instructions (and cycles) of each layer")
    _quant_args(p)
    _common(p)

    p = sub.add_parser("analyze", help="per-layer MACs, parameters, weights and activations")
    p.add_argument("model")
    p.add_argument("--json", action="store_true", help="print report.json instead of a table")
    p.add_argument("--plot", metavar="FILE", help="write the memory plan as an SVG picture")
    _common(p)
    return ap


def _check_target(target: str) -> None:
    if target != "host":
        from .firmware import load_target
        load_target(target)  # UsageError listing the targets for an unknown name


def cmd_compile(a) -> int:
    from .compiler import compile_model
    _check_target(a.target)
    kw = {"name": a.name, "force": a.force, "opt_level": a.opt,
          "input_shapes": parse_input_shapes(a.input_shape), "align": a.align}
    kw.update(_quant_kw(a))
    if a.target != "host":
        from .firmware import compile_firmware, summary
        res = compile_firmware(a.model, a.output, a.target, **kw)
    else:
        res = compile_model(a.model, a.output, **kw)
    r = res.report
    print(f"wrote {res.out_dir}/{r['model']}.c: {len(r['layers'])} layers, {r['macs']:,} MACs, "
          f"weights {r['weights_bytes']:,} B, arena {r['arena_bytes']:,} B "
          f"(lower bound {r['arena_lower_bound_bytes']:,} B, naive {r['arena_naive_bytes']:,} B)")
    if a.target != "host":
        print(summary(res))
    return 0


def _quant_kw(a) -> dict:
    asked = (a.int16 or a.keep_float or a.target_sqnr is not None or a.input_range or a.per_tensor
             or a.winograd)
    return {"quant": _quant_options(a)} if a.quantize or a.calib or asked else {}


def _quant_options(a):
    from .npzio import load_npz
    from .quant.quantize import QuantOptions
    if not a.quantize:
        raise UsageError("--calib, --input-range, --per-tensor, --int16, --keep-float, "
                         "--target-sqnr and --winograd need --quantize int8|int16")
    if not a.calib:
        raise UsageError("--quantize needs --calib CALIB.npz (or --calib none: data-free)")
    if a.input_range and a.calib != "none":
        raise UsageError("--input-range is for --calib none (calibration data shows the range)")
    common = {"scaling": a.scaling, "per_channel": not a.per_tensor, "winograd": a.winograd}
    if a.calib == "none":
        if a.quantize != "int8" or a.int16 or a.keep_float or a.target_sqnr is not None:
            raise UsageError("--calib none (data-free) makes a plain int8 build: no int16, "
                             "--int16, --keep-float or --target-sqnr")
        from .quant.datafree import DataFreeOptions, parse_input_ranges
        return QuantOptions(a.quantize, **common, progress=True, datafree=DataFreeOptions(
            input_range=parse_input_ranges(a.input_range)))
    return QuantOptions(a.quantize, arrays=load_npz(a.calib), observer=a.observer, int16=a.int16,
                        keep_float=a.keep_float, target_sqnr=a.target_sqnr, **common, progress=True)


def cmd_run(a) -> int:
    from .compiler import read_report
    from .host import HostModel
    from .npzio import join_samples, load_npz, split_samples
    from .quant.quantize import host_codec
    report = read_report(Path(a.project))
    samples, batched = split_samples(load_npz(a.inputs), report["inputs"])
    host = HostModel(a.project, report)
    encode, decode = host_codec(report)  # float <-> int8 with the project's scales
    try:
        outs = [decode(host.run(encode(s))) for s in samples]
    finally:
        host.close()
    try:
        np.savez(a.out, **join_samples(outs, report["outputs"], batched))
    except OSError as e:
        raise UsageError(f"cannot write {a.out}: {e.strerror or e}") from None
    print(f"ran {len(samples)} sample(s); wrote {a.out}")
    return 0


def cmd_validate(a) -> int:
    from .compiler import analyze, load
    from .npzio import load_npz, split_samples
    from .validate import table_rows, validate
    _check_target(a.target)
    shapes = parse_input_shapes(a.input_shape)
    quant = _quant_kw(a)
    # An int8 build is judged on the calibration data unless --inputs is given: random inputs
    # are outside the calibrated ranges, and clipping them says nothing of the model's data.
    data = a.inputs or (a.calib if quant and a.calib != "none" else None)
    samples = arrays = labels = None
    if data or quant:
        g = load(a.model, shapes, a.opt)
    if data:
        arrays = load_npz(data)
        try:
            samples, _ = split_samples(arrays, analyze(g).report["inputs"])
        except UsageError as e:
            raise UsageError(f"{data}: {e}") from None
    if quant:
        from .quant.fidelity import labels_from
        labels = labels_from(arrays, g, len(samples) if samples else 0)
    v = validate(a.model, samples, rtol=a.rtol, atol=a.atol, input_shapes=shapes, opt_level=a.opt,
                 target=a.target, **quant)
    rows = table_rows(v.rows)
    print(format_table(["sample", "output", "oracle", "max abs", "max rel", "cosine", "result"], rows))
    print(f"{'PASS' if v.ok else 'FAIL'} (rtol {a.rtol:g}, atol {a.atol:g})")
    if not quant:
        return 0 if v.ok else 1
    from .quant.fidelity import Criteria, format_fidelity, measure
    from .quant.quantize import float_source
    fid = measure(v, float_source(g), samples, labels, Criteria(a.min_sqnr, a.max_top1_drop))
    print()
    print(format_fidelity(fid, data))
    return 0 if v.ok and fid.ok else 1


def cmd_analyze(a) -> int:
    from .compiler import analyze, load
    if a.plot:
        from .plot import check_plot_path
        check_plot_path(a.plot)  # refuse a bad name before the (slow) planning
    g = load(a.model, parse_input_shapes(a.input_shape), a.opt)
    res = analyze(g)
    r = res.report
    if a.plot:
        from .plot import write_plot
        write_plot(a.plot, res.graph, res.plan)
    if a.json:
        print(json.dumps(r, indent=2))
        return 0
    rows = [[ellipsize(ly["name"]), ly["op"], "x".join(map(str, ly["output_shape"])), f"{ly['macs']:,}",
             f"{ly['params']:,}", f"{ly['weights_bytes']:,}", f"{ly['out_bytes']:,}",
             f"{ly['live_bytes']:,}"] for ly in r["layers"]]
    rows.append(["total", "", "", f"{r['macs']:,}", f"{r['params']:,}", f"{r['weights_bytes']:,}",
                 f"{sum(ly['out_bytes'] for ly in r['layers']):,}", ""])
    print(format_table(["layer", "op", "output", "MACs", "params", "weight B", "activation B", "RAM B"],
                       rows, total_row=True))
    print(f"arena {r['arena_bytes']:,} B (lower bound {r['arena_lower_bound_bytes']:,} B, "
          f"naive {r['arena_naive_bytes']:,} B)")
    if r["layers"]:
        # RAM B: arena bytes live while the layer runs; the first maximum is the lower bound.
        peak = max(r["layers"], key=lambda ly: ly["live_bytes"])
        print(f"peak at layer {ellipsize(peak['name'], 80)} ({peak['live_bytes']:,} B live)")
    if a.plot:
        print(f"wrote {a.plot}")
    return 0


def cmd_bench(a) -> int:
    from .bench import bench, bench_layers, layer_rows
    _check_target(a.target)
    kw = {"input_shapes": parse_input_shapes(a.input_shape), "opt_level": a.opt, **_quant_kw(a)}
    if a.per_layer:
        lb = bench_layers(a.model, a.target, **kw)
        print(format_table(*layer_rows(lb), total_row=True))
        b = lb.total
        print(f"the unmarked build runs {b.instructions:,} instructions "
              f"({b.instructions - lb.marked:+,} against the marked one)")
    else:
        b = bench(a.model, a.target, **kw)
    print(f"{b.target}: {b.instructions:,} instructions per inference, {b.macs:,} MACs, "
          f"{b.per_mac:.2f} instructions per MAC ({b.method})")
    if b.cycles is not None:
        print(f"{b.target}: about {b.cycles:,} cycles per inference, {b.cycles_per_mac:.2f} per MAC "
              "(the core's published instruction timings at zero wait states; an estimate)")
    return 0


COMMANDS = {"compile": cmd_compile, "run": cmd_run, "validate": cmd_validate,
            "analyze": cmd_analyze, "bench": cmd_bench}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.cmd](args)
    except NnccError as e:
        msg = " ".join(str(e).split())
        print(f"nncc: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
