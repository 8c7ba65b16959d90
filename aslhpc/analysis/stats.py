"""The statistics layer: intervals, tests and fits, each a thin call into scipy/numpy.

Nothing here knows a frame, a hypothesis or a file: numbers in, numbers out. The verdicts
(:mod:`aslhpc.analysis.verdicts`) and tables decide with these; the renderers print them.

What a single run's interval covers (said in the report, :data:`SINGLE_RUN_NOTE`): the Wilson
interval of one accuracy is the binomial noise of the test images it was measured on, assuming
the images are independent; it does not cover seed-to-seed variance (initialisation, shuffling,
non-deterministic kernels), which only repeats measure. On the blocked split the images are runs
of consecutive frames, so :func:`block_bootstrap_interval` resamples whole runs instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

#: the name verdicts.json and the report give the paired test
MCNEMAR = "McNemar exact"
#: how many bootstrap resamples the block interval draws, and its seed (results are reproducible)
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 2020


def t_cdf(t: float, df: float) -> float:
    """Student-t CDF."""
    return float(stats.t.cdf(t, df))


def t_quantile(p: float, df: float) -> float:
    """Student-t quantile; ValueError outside 0 < p < 1, df > 0 (a caller's bug, not a user's)."""
    if not 0.0 < p < 1.0 or df <= 0:
        raise ValueError(f"t_quantile needs 0 < p < 1 and df > 0, got p={p}, df={df}")
    return float(stats.t.ppf(p, df))


def ci_halfwidth(std: float, n: int, level: float = 0.95) -> float:
    """Half-width of the two-sided Student-t interval for a mean of ``n`` runs; NaN for n < 2."""
    if n < 2 or not math.isfinite(std):
        return math.nan
    return t_quantile(0.5 + level / 2.0, n - 1) * std / math.sqrt(n)


def wilson_interval(p: float, n: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ``p`` observed on ``n`` trials (a test accuracy on n
    images): the binomial noise of one run, sensible at p = 0 or 1.

    With a whole number of successes this is scipy's ``binomtest(k, n).proportion_ci("wilson")``; a
    proportion transcribed from a paper (k not whole) gets the same closed form with scipy's z."""
    if n <= 0 or not math.isfinite(p):
        return (math.nan, math.nan)
    k = p * n
    if abs(k - round(k)) < 1e-9 and 0 <= round(k) <= n:
        ci = stats.binomtest(int(round(k)), n).proportion_ci(confidence_level=level, method="wilson")
        return (float(ci.low), float(ci.high))
    z = float(stats.norm.ppf(0.5 + level / 2.0))
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def newcombe(p1: float, n1: int, p2: float, n2: int, level: float = 0.95) -> tuple[float, float]:
    """Newcombe's interval (method 10) for p1 - p2 from two independent samples, from their Wilson
    intervals: the gap between two single runs on *different* test images."""
    l1, u1 = wilson_interval(p1, n1, level)
    l2, u2 = wilson_interval(p2, n2, level)
    d = p1 - p2
    return (d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2))


def linear_fit(x: Sequence[float], y: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares line ``y = a + b x``: (a, b, R²); R² is NaN when y does not vary, all NaN when
    x does not (or fewer than two points)."""
    if len(x) < 2 or len(x) != len(y):
        return (math.nan, math.nan, math.nan)
    xs, ys = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.ptp(xs) == 0:
        return (math.nan, math.nan, math.nan)
    b, a = np.polyfit(xs, ys, 1)
    if np.ptp(ys) == 0:
        return (float(a), float(b), math.nan)
    r = float(np.corrcoef(xs, ys)[0, 1])
    return (float(a), float(b), r * r)


@dataclass(frozen=True)
class Paired:
    """McNemar's exact test of two classifiers on the same images: ``b`` images only the first got right,
    ``c`` only the second; ``p`` the two-sided exact p-value (binomial on the b + c discordant pairs)."""

    b: int
    c: int
    n: int
    p: float
    test: str = MCNEMAR

    @property
    def diff_pp(self) -> float:
        """Accuracy of the first minus the second, in percentage points."""
        return 100.0 * (self.b - self.c) / self.n if self.n else math.nan

    def differs(self, alpha: float) -> bool:
        return math.isfinite(self.p) and self.p < alpha


def mcnemar_exact(first: Sequence[bool], second: Sequence[bool]) -> Paired:
    """McNemar's exact test of two 0/1 "correct" vectors over the same images, in the same order."""
    a, b2 = np.asarray(first, dtype=bool), np.asarray(second, dtype=bool)
    if a.shape != b2.shape:
        raise ValueError("McNemar needs the same images on both sides")
    b = int(np.sum(a & ~b2))
    c = int(np.sum(~a & b2))
    p = 1.0 if b + c == 0 else float(stats.binomtest(b, b + c, 0.5).pvalue)
    return Paired(b, c, int(a.size), p)


def frame_blocks(labels: Sequence[object], index: Sequence[int]) -> np.ndarray:
    """Block id per image: consecutive frames of one class (same label, contiguous index) form a block,
    the unit the blocked split holds out, so images inside one are not independent."""
    order = sorted(range(len(labels)), key=lambda i: (str(labels[i]), int(index[i])))
    ids = np.empty(len(labels), dtype=int)
    block, prev = -1, None
    for i in order:
        key = (str(labels[i]), int(index[i]))
        if prev is None or key[0] != prev[0] or key[1] != prev[1] + 1:
            block += 1
        ids[i] = block
        prev = key
    return ids


def block_bootstrap_interval(correct: Sequence[bool], blocks: Sequence[int], level: float = 0.95,
                             resamples: int = BOOTSTRAP_RESAMPLES,
                             seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of an accuracy (0..1), resampling whole blocks with replacement
    (seeded: the same files give the same interval). NaN with fewer than two blocks."""
    ok = np.asarray(correct, dtype=float)
    ids = np.asarray(blocks)
    uniq, inverse = np.unique(ids, return_inverse=True)
    if len(uniq) < 2:
        return (math.nan, math.nan)
    hits = np.bincount(inverse, weights=ok)
    sizes = np.bincount(inverse).astype(float)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(uniq), size=(resamples, len(uniq)))
    acc = hits[draw].sum(axis=1) / sizes[draw].sum(axis=1)
    lo, hi = np.quantile(acc, [0.5 - level / 2.0, 0.5 + level / 2.0])
    return (float(lo), float(hi))


SINGLE_RUN_NOTE = (
    "What a single run's interval covers: the Wilson interval of one accuracy is the binomial noise of "
    "the test images it was measured on, assuming they are independent; on the blocked split, where the "
    "test images are runs of consecutive frames, the interval is a bootstrap over those runs (blocks) "
    "instead. Neither covers seed-to-seed variance (initialisation, shuffling, non-deterministic GPU "
    "kernels), which only repeats measure: an interval from one run is narrower than the run-to-run "
    "noise. Comparisons of two configurations on the same test images use McNemar's exact test on the "
    "images only one of them got right. Run repeats (`repeats = 3` or more in the experiment file) "
    "before reading a difference of a few tenths of a point as real."
)
