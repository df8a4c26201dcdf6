"""How far an int8 build is from the float model it was made from (`nncc validate --quantize`).

Both numpy reference executors run on the same samples: the float one over the float graph the
quantizer started from (quantize.float_source), the integer one over the int8 graph on the
quantized inputs. validate.py has already checked that the C equals the integer reference bit for
bit, so the integer activations are those of the C.
- per layer: SQNR (dB, over all samples) of each node's output, dequantized with its scale and
  zero point, against the float tensor of the same name: the quantizer keeps activation names. A
  QConv carrying a fused QAdd (quant/fuse_qadd.py) writes the Add's output and is compared with it
  (the conv's own int8 output no longer exists). A tensor with no float namesake (the Dequantize
  before a float Softmax) shows "-".
- per output: max / mean abs error, cosine and SQNR of the C outputs, dequantized, against the
  float reference, over all samples;
- with labels (`y` in IN.npz, one integer class per sample): top-1 of float and int8, the class
  being the argmax of the first output.
Pass criterion (Criteria): every output's SQNR >= min_sqnr_db and, with labels, the top-1 drop
(float minus int8, in percentage points) <= max_top1_drop.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import UsageError
from ..ir import Graph, TensorInfo
from ..ops.quantized import QADD
from ..reference import run_reference
from ..report import layer_bits
from ..table import ellipsize, format_table
from ..validate import Validation, compare

LABELS = "y"  # the IN.npz key holding one integer class per sample


@dataclass
class Criteria:
    min_sqnr_db: float = 20.0    # every output, int8 vs float
    max_top1_drop: float = 1.0   # percentage points, when labels are given


@dataclass
class LayerError:
    layer: str
    op: str
    tensor: str
    bits: int
    sqnr_db: float | None  # None: no float tensor of that name


@dataclass
class OutputError:
    name: str
    max_abs: float
    mean_abs: float
    cosine: float
    sqnr_db: float


@dataclass
class Top1:
    samples: int
    float_correct: int
    quant_correct: int

    @property
    def drop(self) -> float:
        """Percentage points lost by the int8 build (negative: it gained)."""
        return 100.0 * (self.float_correct - self.quant_correct) / self.samples


@dataclass
class Fidelity:
    precision: str  # report.json's: "int8", ...
    samples: int
    layers: list[LayerError]
    outputs: list[OutputError]
    top1: Top1 | None
    criteria: Criteria
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def real_values(info: TensorInfo, v: np.ndarray) -> np.ndarray:
    """The real numbers an activation stands for, float64: scale * (q - zero_point)."""
    v = np.asarray(v, np.float64)
    if info.quant is None:
        return v
    scale, zp = np.asarray(info.quant.scale, np.float64), np.asarray(info.quant.zero_point, np.float64)
    if scale.size > 1:  # per-channel along quant.axis
        shape = [1] * v.ndim
        shape[info.quant.axis] = -1
        scale, zp = scale.reshape(shape), zp.reshape(shape)
    return (v - zp) * scale


class SQNR:
    """Signal and noise energies summed over samples."""

    def __init__(self):
        self.signal = self.noise = 0.0

    def add(self, ref: np.ndarray, got: np.ndarray) -> None:
        ref, got = np.ravel(ref), np.ravel(got)
        self.signal += float(np.dot(ref, ref))
        self.noise += float(np.dot(ref - got, ref - got))

    def db(self) -> float:
        if self.noise == 0.0:
            return float("inf")
        return float(10.0 * np.log10(self.signal / self.noise)) if self.signal > 0 else float("-inf")


def _layers(q: Graph) -> list[LayerError]:
    """Rows (no SQNR yet) for the int8 graph's inputs and every node output, in schedule order."""
    rows = [LayerError("(input)", "Quantize", t, np.dtype(q.tensors[t].dtype).itemsize * 8, None)
            for t in q.inputs]
    for n in q.nodes():
        op = f"{n.op}+QAdd" if QADD in n.attrs else n.op
        rows += [LayerError(n.name, op, t, layer_bits(q, n), None) for t in n.outputs if t]
    return rows


def _counterpart(q: Graph, f: Graph, t: str) -> bool:
    return t in f.tensors and not f.is_const(t) and f.tensors[t].shape == q.tensors[t].shape


def labels_from(arrays: dict | None, g: Graph, n_samples: int) -> np.ndarray | None:
    """The labels in IN.npz (key `y`, unless a model input has that name), checked against the
    number of samples and the size of `g`'s first output (the classes); None without labels."""
    if arrays is None or LABELS not in arrays or LABELS in g.inputs:
        return None
    y = np.asarray(arrays[LABELS])
    if y.dtype.kind not in "iu":
        raise UsageError(f"labels {LABELS!r}: dtype {y.dtype}; want one integer class per sample")
    if y.ndim == 0 or (y.ndim == 2 and y.shape[1] == 1):  # one sample's label; a column
        y = y.reshape(-1)
    if y.ndim != 1 or len(y) != n_samples:
        raise UsageError(f"labels {LABELS!r}: shape {np.shape(arrays[LABELS])} for {n_samples} "
                         f"sample(s); want one integer class per sample ({n_samples},)")
    classes = g.tensors[g.outputs[0]].size
    if y.min() < 0 or y.max() >= classes:
        raise UsageError(f"labels {LABELS!r}: classes {int(y.min())}..{int(y.max())} outside "
                         f"[0, {classes}) (output {g.outputs[0]!r} has {classes} values)")
    return y.astype(np.int64)


def float_inputs(v: Validation, samples: list[dict] | None) -> list[dict]:
    """The float samples the float model runs on: the user's, or else the build's int8 input
    codes dequantized (so both models see the same numbers)."""
    if samples is not None:
        return samples
    q = v.compiled.graph
    return [{t: real_values(q.tensors[t], s[t]).astype(np.float32) for t in q.inputs} for s in v.samples]


def measure(v: Validation, float_graph: Graph, samples: list[dict] | None = None,
            labels: np.ndarray | None = None, criteria: Criteria | None = None) -> Fidelity:
    """Compare the int8 build that `v` ran (validate.validate with quant=...) with
    `float_graph` (quantize.float_source of the float IR) on the same inputs: `samples`, the float
    data its int8 inputs were quantized from, or None when it ran on generated int8 codes."""
    criteria = criteria or Criteria()
    q, f = v.compiled.graph, float_graph
    floats = float_inputs(v, samples)
    layers = _layers(q)
    energy = {ly.tensor: SQNR() for ly in layers if _counterpart(q, f, ly.tensor)}
    outs = {t: ([], []) for t in q.outputs}  # (int8 build dequantized, float), per sample
    for codes, x, got in zip(v.samples, floats, v.outputs):
        qenv = run_reference(q, codes, keep_all=True)
        fenv = run_reference(f, x, keep_all=True)
        for t, acc in energy.items():
            acc.add(fenv[t].astype(np.float64), real_values(q.tensors[t], qenv[t]))
        for t, (mine, ref) in outs.items():
            mine.append(real_values(q.tensors[t], got[t]).ravel())
            ref.append(np.asarray(fenv[t], np.float64).ravel())
    for ly in layers:
        ly.sqnr_db = energy[ly.tensor].db() if ly.tensor in energy else None
    fid = Fidelity(v.compiled.report["precision"], len(floats), layers, [], None, criteria)
    for t, (mine, ref) in outs.items():
        got, want = np.concatenate(mine), np.concatenate(ref)
        m = compare(got, want, 0.0, 0.0)
        acc = SQNR()
        acc.add(want, got)
        fid.outputs.append(OutputError(t, m.max_abs, float(np.mean(np.abs(got - want))), m.cosine, acc.db()))
        if not acc.db() >= criteria.min_sqnr_db:
            fid.failures.append(f"output {t!r} SQNR {acc.db():.1f} dB < {criteria.min_sqnr_db:g} dB")
    if labels is not None:
        first = q.outputs[0]
        mine, ref = outs[first]
        fid.top1 = Top1(len(labels), int(np.sum(np.argmax(ref, axis=1) == labels)),
                        int(np.sum(np.argmax(mine, axis=1) == labels)))
        if fid.top1.drop > criteria.max_top1_drop:
            fid.failures.append(f"top-1 drop {fid.top1.drop:.2f} points > {criteria.max_top1_drop:g}")
    return fid


def _db(x: float | None) -> str:
    return "-" if x is None else "inf" if x == float("inf") else f"{x:.1f}"


def format_fidelity(fid: Fidelity, data: str | None = None) -> str:
    """The tables and verdict `nncc validate --quantize` prints; `data`: where the samples came from."""
    c = fid.criteria
    src = f" from {data}" if data else " (generated int8 inputs)"
    out = [f"{fid.precision} vs float on {fid.samples} sample(s){src}",
           "per layer: SQNR of its output, dequantized, against the float tensor of that name (-: none)",
           format_table(["layer", "op", "tensor", "bits", "SQNR dB"],
                        [[ellipsize(ly.layer), ly.op, ellipsize(ly.tensor), ly.bits, _db(ly.sqnr_db)]
                         for ly in fid.layers]),
           "",
           format_table(["output", "max abs", "mean abs", "cosine", "SQNR dB"],
                        [[ellipsize(o.name), f"{o.max_abs:.4g}", f"{o.mean_abs:.4g}", f"{o.cosine:.6f}",
                          _db(o.sqnr_db)] for o in fid.outputs])]
    t = fid.top1
    if t is not None:
        out.append(f"top-1 on {t.samples} labelled sample(s): float {100.0 * t.float_correct / t.samples:.2f} %"
                   f", {fid.precision} {100.0 * t.quant_correct / t.samples:.2f} % (drop {t.drop:+.2f} points)")
    rule = f"output SQNR >= {c.min_sqnr_db:g} dB" + (
        f", top-1 drop <= {c.max_top1_drop:g} points" if t is not None else "")
    out.append(f"{fid.precision} vs float: {'PASS' if fid.ok else 'FAIL'} ({rule})"
               + ("" if fid.ok else ": " + "; ".join(fid.failures)))
    return "\n".join(out)
