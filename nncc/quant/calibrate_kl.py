"""KL-divergence clipping threshold (TensorRT's entropy calibration), for asymmetric int8.

TensorRT histograms |x| (2048 bins) and, for each candidate threshold (a bin edge), compares
the reference distribution P (the bins below the threshold, the outliers above it folded into
the last bin) with Q, the same bins merged onto the 128 int8 levels and spread back evenly over
their non-empty bins; the threshold of minimal KL(P || Q) wins.

Our activations are asymmetric (rewrite.act_params): the range [lo, hi] spans all 256 levels,
the zero point in between. So each side of zero gets its own histogram (`bins` bins over
[0, hi] and [0, -lo]) and its share of the levels (256 * hi / (hi - lo) for the positive side);
a candidate keeps the first i bins of both sides, i.e. clips both ends by the same factor, as
the zero point then stays where it was; KL is taken over both sides at once. A ReLU output
(lo = 0) is the one-sided case with all 256 levels on [0, hi] and keeps lo = 0. A side given
fewer than 2 levels (a tiny tail on the other side of zero) is clipped along but not judged.
Point masses are left out of P and Q: values repeated exactly in more than 1/ATOM of the values
(a ReLU's zeros, a channel's constant response to blank background, ReLU6's 6). int8 holds each
within half a step at any threshold, but TensorRT's Q, spreading each level's count over its
non-empty bins, charges a point mass log(bins per level), which pulls the threshold down to one
bin per level: measured, the first conv of mnist_cnn_bn was clipped at 0.95 of 4.87 and the
net fell to 3 dB logit SQNR. A point mass beyond a candidate threshold still counts, in the
folded outlier bin: clipping it is judged. The smallest threshold tried keeps as many bins as the
busier side has levels (1/8 of the range for a ReLU output, 1/16 for a symmetric one, as
TensorRT's 128 of 2048). Few values per tensor (a sparse histogram) make it clip too much: it
wants hundreds of calibration samples (RESULTS.md: 13 samples of the MLPerf AD model, 21 dB).
"""
from __future__ import annotations

import numpy as np

BINS = 2048
LEVELS = 256
EPS = 1e-10  # stands in for Q = 0 where P > 0 (only the folded outlier bin can be so)
ATOM = 1000  # a value repeated in more than 1/ATOM of the values is a point mass


def _side(h: np.ndarray, atoms: np.ndarray, i: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    """(P, Q) unnormalised of one side's histogram h (point masses apart: atoms, per bin)
    clipped to its first i bins."""
    p = h[:i].astype(np.float64)
    kept = p.copy()
    p[-1] += h[i:].sum() + atoms[i:].sum()
    idx = (np.arange(i) * levels) // i  # level of each bin: `levels` levels over i bins
    sums = np.bincount(idx, weights=kept, minlength=levels)
    nz = np.bincount(idx, weights=kept > 0, minlength=levels)
    q = np.where(kept > 0, sums[idx] / np.maximum(nz[idx], 1), 0.0)
    return p, q


def kl_divergence(p: np.ndarray, q: np.ndarray) -> float:
    p, q = p / p.sum(), q / max(q.sum(), 1e-300)
    m = p > 0
    return float(np.sum(p[m] * np.log(p[m] / np.maximum(q[m], EPS))))


def kl_range(v: np.ndarray, lo: float, hi: float, bins: int = BINS,
             levels: int = LEVELS) -> tuple[float, float]:
    """The (lo, hi) clipping of values v (observed min lo, max hi) of minimal KL divergence."""
    rmin, rmax = min(lo, 0.0), max(hi, 0.0)
    if rmax - rmin <= 0:
        return lo, hi
    v = np.asarray(v, np.float64)
    vals, counts = np.unique(v, return_counts=True)
    atom = counts * ATOM > v.size
    sides = []  # (histogram, point masses per bin, levels) of the sides judged
    for sign, extent in ((1.0, rmax), (-1.0, -rmin)):
        share = round(levels * extent / (rmax - rmin))
        side = sign * vals > 0
        if share >= 2 and np.any(side & ~atom):
            hist = [np.histogram(sign * vals[side & a], bins, (0.0, extent), weights=counts[side & a])[0]
                    for a in (~atom, atom)]
            sides.append((*hist, share))
    if not sides:
        return lo, hi
    best_i, best = bins, np.inf
    for i in range(min(bins, max(s for *_, s in sides)), bins + 1):
        pq = [_side(h, a, i, s) for h, a, s in sides]
        kl = kl_divergence(np.concatenate([p for p, _ in pq]), np.concatenate([q for _, q in pq]))
        if kl < best:
            best_i, best = i, kl
    f = best_i / bins
    return (lo if lo >= 0 else rmin * f), (hi if hi <= 0 else rmax * f)
