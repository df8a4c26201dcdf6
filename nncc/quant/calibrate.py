"""Calibration (quantize stage, step 1): run the float numpy reference over calibration samples
and record the range of every activation tensor.

The graph is the one the float build compiles (after -O2: BatchNorm folded, activations fused),
so a Conv's recorded range is that of its output *after* its fused ReLU -- the range the int8
tensor must hold. Observers see each sample's tensor in turn and give a (lo, hi) range:
`minmax` (TFLite's default), `percentile` (clips the rare outliers that waste int8 steps on
long-tailed activations), `mse` (the clipping that minimises the int8 rounding + clipping
error over the values seen), `kl` (TensorRT's entropy calibration, calibrate_kl.py) or `ksigma`
(mean +- k standard deviations). Bad calibration data is refused with one clear error naming
the input or tensor at fault.
"""
from __future__ import annotations

import sys

import numpy as np

from ..errors import UsageError
from ..ir import Graph
from ..reference import run_reference
from .calibrate_kl import kl_range


class MinMax:
    """The exact range seen over all samples. Every observer tracks it (minmax()): a mixed
    build's int16 tensors take it from the same calibration pass (quant/mixed.py)."""

    def __init__(self):
        self.lo, self.hi = np.inf, -np.inf

    def update(self, x: np.ndarray) -> None:
        self.lo = min(self.lo, float(x.min()))
        self.hi = max(self.hi, float(x.max()))

    def range(self) -> tuple[float, float]:
        return self.lo, self.hi

    def minmax(self) -> tuple[float, float]:
        return self.lo, self.hi


class Percentile(MinMax):
    """The `pct` and `100 - pct` percentiles of all values seen. Values are kept (subsampled
    with a fixed seed past `keep` per sample) so the percentile is over the whole set."""

    def __init__(self, pct: float = 99.99, keep: int = 1 << 16):
        super().__init__()
        self.pct, self.keep = pct, keep
        self.values: list[np.ndarray] = []
        self.rng = np.random.default_rng(0)

    def update(self, x: np.ndarray) -> None:
        super().update(x)
        v = np.asarray(x, np.float32).ravel()
        if v.size > self.keep:
            v = self.rng.choice(v, self.keep, replace=False)
        self.values.append(v)

    def range(self) -> tuple[float, float]:
        v = np.concatenate(self.values)
        return float(np.percentile(v, 100.0 - self.pct)), float(np.percentile(v, self.pct))


class MSE(Percentile):
    """The clipping range minimising the mean squared error of int8 fake quantization (range
    [lo, hi] onto 256 steps, values outside clipped) over the values seen: the min/max range
    scaled by the best of a grid of factors in [0.3, 1]. Long tails get clipped when rounding
    the bulk of the values more finely pays for it (the "MSE" calibrator of TensorRT / ORT)."""

    FACTORS = np.linspace(0.3, 1.0, 71)

    def __init__(self, keep: int = 1 << 13):
        super().__init__(keep=keep)

    def range(self) -> tuple[float, float]:
        lo, hi = min(self.lo, 0.0), max(self.hi, 0.0)
        if hi - lo <= 0:
            return self.lo, self.hi
        v = np.concatenate(self.values).astype(np.float64)
        if v.size > 1 << 18:
            v = self.rng.choice(v, 1 << 18, replace=False)
        errs = [mse_int8(v, f * lo, f * hi) for f in self.FACTORS]
        f = float(self.FACTORS[int(np.argmin(errs))])
        return f * lo, f * hi


def mse_int8(v: np.ndarray, lo: float, hi: float) -> float:
    """Mean squared error of quantizing v to 256 steps over [lo, hi] (lo <= 0 <= hi)."""
    scale = (hi - lo) / 255.0
    zp = np.round(-128 - lo / scale)
    q = np.clip(np.round(v / scale) + zp, -128, 127)
    return float(np.mean(((q - zp) * scale - v) ** 2))


class KSigma(MinMax):
    """mean +- K standard deviations, clipped to the observed min/max. The statistics leave out
    exact zeros (a ReLU's output is mostly zeros, which the zero point holds exactly; counting
    them shrinks the mean and sigma and clips the informative values). A ReLU output keeps
    lo = 0 (mean - K sigma < 0 is clipped to its minimum, and act_params always covers 0).
    K = 8: the MSE-optimal 8-bit clip of a Laplace distribution (Banner et al., ACIQ, 2019:
    11.16 b = 7.9 sigma); post-ReLU activations are long-tailed like it, and the Gaussian optimum
    (~4 sigma) clips them badly. Measured on the MNIST fixtures, logit SQNR (cnn_bn / dsnet):
    K = 4: 24.4 / 19.2 dB, 6: 38.6 / 29.7, 7: 38.8 / 27.9, 8: 39.0 / 32.2, 10 and up: min/max's
    39.0 / 29.9. Streaming float64 sums: no values kept."""

    K = 8.0

    def __init__(self, k: float | None = None):
        super().__init__()
        self.k = self.K if k is None else k
        self.n, self.s1, self.s2 = 0, 0.0, 0.0

    def update(self, x: np.ndarray) -> None:
        super().update(x)
        v = np.asarray(x, np.float64).ravel()
        v = v[v != 0]
        self.n += v.size
        self.s1 += float(v.sum())
        self.s2 += float(v @ v)

    def range(self) -> tuple[float, float]:
        if self.n == 0:
            return self.lo, self.hi
        mean = self.s1 / self.n
        sigma = np.sqrt(max(self.s2 / self.n - mean * mean, 0.0))
        return max(self.lo, mean - self.k * sigma), min(self.hi, mean + self.k * sigma)


class KL(MSE):
    """TensorRT's entropy calibration (calibrate_kl.kl_range) over the values seen (kept as MSE
    keeps them, with the exact min/max)."""

    def __init__(self, keep: int = 1 << 14):
        super().__init__(keep=keep)

    def range(self) -> tuple[float, float]:
        return kl_range(np.concatenate(self.values), self.lo, self.hi)


OBSERVERS = {"minmax": MinMax, "percentile": Percentile, "mse": MSE, "kl": KL,
             "ksigma": KSigma}


def check_samples(g: Graph, samples: list[dict]) -> None:
    """Refuse calibration data that cannot describe the model's inputs."""
    if not samples:
        raise UsageError("calibration data holds no samples")
    for i, s in enumerate(samples):
        for t in g.inputs:
            if t not in s:
                raise UsageError(f"calibration sample {i} lacks input {t!r}")
            a = np.asarray(s[t])
            want = tuple(g.tensors[t].shape)
            if a.dtype.kind not in "fiu":
                raise UsageError(f"calibration input {t!r}: dtype {a.dtype} is not numeric")
            if a.size != int(np.prod(want)) or a.squeeze().shape != np.empty(want).squeeze().shape:
                raise UsageError(f"calibration input {t!r}: shape {a.shape}, the model takes {want}")
            if not np.all(np.isfinite(a)):
                raise UsageError(f"calibration input {t!r} (sample {i}) contains NaN or infinity")


def _progress(i: int, n: int, enabled: bool) -> None:
    # a redrawn bar for a terminal; a log or a pipe gets the finished bar only
    if not enabled or (i != n and not sys.stderr.isatty()):
        return
    width = 30
    done = width * i // n
    end = "\n" if i == n else ""
    print(f"\rcalibrating [{'#' * done}{'.' * (width - done)}] {i}/{n}", end=end, file=sys.stderr,
          flush=True)


def calibrate(g: Graph, samples: list[dict], observer: str = "mse",
              progress: bool = True) -> dict[str, tuple[float, float]]:
    """{tensor name: (lo, hi)} for every graph input and every tensor a node computes."""
    return calibrate_both(g, samples, observer, progress)[0]


def calibrate_both(g: Graph, samples: list[dict], observer: str = "mse", progress: bool = True
                   ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]]:
    """(calibrate()'s ranges, the min/max ranges) from one pass over the samples."""
    if observer not in OBSERVERS:
        raise UsageError(f"unknown observer {observer!r} (have: {', '.join(OBSERVERS)})")
    check_samples(g, samples)
    obs: dict[str, object] = {}
    for i, s in enumerate(samples):
        env = run_reference(g, {t: np.asarray(s[t], np.float32) for t in g.inputs}, keep_all=True)
        for name, v in env.items():
            if g.is_const(name) or g.tensors[name].dtype != "float32":
                continue
            if not np.all(np.isfinite(v)):
                raise UsageError(f"tensor {name!r} is not finite on calibration sample {i}: the "
                                 "float model overflows on these inputs")
            # A graph output keeps its whole range: clipping the largest logits would merge
            # exactly the scores that decide the class.
            kind = "minmax" if name in g.outputs else observer
            obs.setdefault(name, OBSERVERS[kind]()).update(v)
        _progress(i + 1, len(samples), progress)
    return {name: o.range() for name, o in obs.items()}, {name: o.minmax() for name, o in obs.items()}
