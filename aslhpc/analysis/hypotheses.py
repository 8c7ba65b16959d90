"""The 2020 study's four hypotheses and conclusions, decided from the numbers alone.

Each hypothesis is a pure function of the per-configuration summary (``tables.summarize``)
returning a :class:`Verdict`. With repeats, every comparison uses the confidence
intervals: two figures whose intervals overlap are *indistinguishable*, which counts
neither as a strict decrease nor as a counter-example, so it can only make a verdict
"inconclusive". Without repeats, an accuracy measured on n images still has a binomial
(Wilson) interval, which is used instead; a time from a single run has none, so its
comparisons say "single run" and how large the deciding gap was.
Figures that are not comparable at all (epochs capped by ``max_steps``; local cells that
shared a host at the same time) make the verdicts resting on them inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from aslhpc.analysis.stats import linear_fit, wilson_interval
from aslhpc.analysis.tables import data_wait_share, gpu_label, main_split_kind

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"

STATEMENTS = {
    "H1": "Hand signs can be recognised from images (test accuracy above {threshold:g} %).",
    "H2": "Using more GPUs always speeds up computation (time falls strictly with GPU count at every "
    "batch size).",
    "H3": "A larger batch size means a better model ({metric} rises with batch size at every GPU count).",
    "H4": "At a fixed GPU count, time falls linearly as the batch size grows (the study's \"number of "
    "batches\" is the batch size; linear fit of time on batch size, R² ≥ {r2:g}).",
}

#: how H4 is read, and the study's words that reading rests on (for the report)
H4_READING = (
    'The study writes "N batches" for batch size N throughout: "256 batches seem to be the optimal batch '
    'size" (Section 6.3, Observation 3) and "256 Batches, with 3 GPUs in data parallelism performs best" '
    '(Section 7, Conclusion 4). Its Hypothesis 4, "Keeping number of GPUs constant, there exists a linear '
    'relationship between number of batches and time taken. In short, as number of batches increases, time '
    'decreases" (Section 5), is therefore read as: at a fixed GPU count, time falls, linearly, as the batch '
    "size grows. aslhpc tests the direction (every larger batch size faster) and the linearity (a "
    "least-squares "
    "line of time on batch size with R² at least the threshold, `--h4-r2`; it needs 3 batch sizes)."
)

#: the literal reading (number of batches = steps per epoch), shown only as a labelled aside
H4_LITERAL_STATEMENT = (
    "H4 read literally (number of batches = training batches per epoch): at a fixed GPU count, time falls "
    "as the number of batches per epoch rises, i.e. as the batch size falls."
)

#: which count of images an accuracy column was measured on (for its Wilson interval)
OBSERVATIONS = {"test_acc": "n_test", "val_acc": "n_val", "train_acc": "n_train"}

#: what Lad (2020) concluded, section 6, for the report's side-by-side column
PAPER_VERDICTS = {"H1": SUPPORTED, "H2": NOT_SUPPORTED, "H3": NOT_SUPPORTED, "H4": NOT_SUPPORTED}

METRIC_NAMES = {
    "test_acc": "test accuracy",
    "val_acc": "validation accuracy",
    "train_acc": "training accuracy",
}


@dataclass(frozen=True)
class Verdict:
    """One hypothesis decided: ``verdict`` is "supported", "not supported" or "inconclusive"."""

    hypothesis: str
    statement: str
    verdict: str
    evidence: str
    #: the deciding figure(s) in a few words, for one-line summaries
    key: str = ""


@dataclass(frozen=True)
class Point:
    """A figure with its interval: a Student-t half-width over repeats (``kind`` "t"), a Wilson
    binomial interval for an accuracy from one run (``kind`` "wilson", ``lo``/``hi``), or none
    (``kind`` "", a single run)."""

    mean: float
    hw: float
    n: int
    lo: float = math.nan
    hi: float = math.nan
    kind: str = ""

    @classmethod
    def of(cls, row: pd.Series, col: str) -> Point:
        mean = float(row[col])
        hw = row.get(f"{col}_hw", math.nan)
        if hw is not None and math.isfinite(hw) and hw > 0:
            return cls(mean, float(hw), int(row["n"]), mean - hw, mean + hw, "t")
        lo, hi = row.get(f"{col}_lo", math.nan), row.get(f"{col}_hi", math.nan)
        if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
            return cls(mean, 0.0, int(row["n"]), float(lo), float(hi), "bootstrap")  # blocks of frames
        n_obs = row.get(OBSERVATIONS.get(col, ""), math.nan)
        if col in OBSERVATIONS and n_obs is not None and math.isfinite(n_obs) and n_obs > 0:
            level = row.get("ci_level", 0.95)
            level = float(level) if level is not None and math.isfinite(level) else 0.95
            lo, hi = wilson_interval(mean / 100.0, int(n_obs), level)
            return cls(mean, 0.0, int(row["n"]), lo * 100.0, hi * 100.0, "wilson")
        return cls(mean, 0.0, int(row["n"]))

    @property
    def has_interval(self) -> bool:
        return bool(self.kind) or self.hw > 0

    @property
    def low(self) -> float:
        return self.lo if self.kind else self.mean - self.hw

    @property
    def high(self) -> float:
        return self.hi if self.kind else self.mean + self.hw

    def show(self, unit: str, decimals: int = 2) -> str:
        s = f"{self.mean:.{decimals}f}"
        if self.kind in ("t", "") and self.hw > 0:
            s += f" ± {self.hw:.{decimals}f}"
        elif self.kind in ("wilson", "bootstrap"):
            return f"{s}{unit} [{self.lo:.{decimals}f}, {self.hi:.{decimals}f}]"
        return s + unit


def compare(a: Point, b: Point) -> str:
    """How ``b`` stands to ``a``: "lt", "gt", "eq" (no intervals only) or "overlap" (intervals overlap)."""
    if not a.has_interval and not b.has_interval:
        return "lt" if b.mean < a.mean else "gt" if b.mean > a.mean else "eq"
    if b.high < a.low:
        return "lt"
    if b.low > a.high:
        return "gt"
    return "overlap"


def gap_note(a: Point, b: Point, unit: str, decimals: int = 2) -> str:
    """" (single runs; gap 38.65 s = 1.7 %)" when neither figure has an interval, else ""."""
    if a.has_interval or b.has_interval:
        return ""
    gap = abs(b.mean - a.mean)
    rel = f" = {gap / abs(a.mean) * 100:.1f} %" if a.mean and unit.strip() != "%" else ""
    return f" (single runs; gap {gap:.{decimals}f}{unit}{rel})"


def _completed(summary: pd.DataFrame, col: str) -> pd.DataFrame:
    """Main-split configurations with a figure for ``col`` (holes cannot be compared)."""
    main = summary[(summary["split_kind"] == main_split_kind(summary)) & (summary["n"] > 0)]
    return main[main[col].notna()]


def _series(frame: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """Split by (strategy, pipeline) so DP and DDP, paper and fast, are judged apart."""
    groups = list(frame.groupby(["strategy", "pipeline"], sort=True))
    if len(groups) <= 1:
        return [("", g) for _, g in groups]
    return [(f"{s}/{p} ", g) for (s, p), g in groups]


@dataclass
class _Tally:
    """Counter-examples (clear violations), overlaps (indistinguishable pairs), passes."""

    # (is_tie, is_non_consecutive, series, text): clear consecutive violations sort first
    counter: list[tuple[bool, bool, str, str]] = field(default_factory=list)
    overlap: list[str] = field(default_factory=list)
    passed: int = 0
    untested: list[str] = field(default_factory=list)

    def first_counter(self) -> str:
        ordered = sorted(self.counter, key=lambda c: (c[0], c[1]))
        head_series = ordered[0][2]
        others: list[str] = []
        for _, _, series, _ in ordered:
            if series != head_series and series not in others:
                others.append(series)
        text = ordered[0][3]
        if others:
            text += f"; also at {', '.join(others)}"
        if len(ordered) > 1:
            text += f" ({len(ordered)} violating pairs in all)"
        return text


def _monotone(
    points: Sequence[tuple[str, Point]], want: str, series: str, unit: str, tally: _Tally, decimals: int = 2
) -> None:
    """Check that consecutive points move the ``want`` way ("lt": fall, "gt": rise).

    Non-consecutive pairs are also scanned for clear violations, since with CIs a series
    can drift the wrong way through a chain of overlaps.
    """
    bad = "gt" if want == "lt" else "lt"
    sym = {"gt": ">", "lt": "<", "eq": "=", "overlap": "≈"}

    def say(la: str, a: Point, lb: str, b: Point, rel: str) -> str:
        return (
            f"{series}: {lb} {b.show(unit, decimals)} {sym[rel]} {la} {a.show(unit, decimals)}"
            + gap_note(a, b, unit, decimals)
        )

    for i in range(len(points) - 1):
        (la, a), (lb, b) = points[i], points[i + 1]
        rel = compare(a, b)
        if rel == want:
            tally.passed += 1
        elif rel == "overlap":
            tally.overlap.append(say(la, a, lb, b, rel) + " (intervals overlap)")
        else:
            tally.counter.append((rel == "eq", False, series, say(la, a, lb, b, rel)))
    for i in range(len(points)):
        for j in range(i + 2, len(points)):
            (la, a), (lb, b) = points[i], points[j]
            if compare(a, b) == bad:
                tally.counter.append((False, True, series, say(la, a, lb, b, bad)))


def _decide(h: str, statement: str, tally: _Tally, what: str, needs: str) -> Verdict:
    if tally.counter:
        head = sorted(tally.counter, key=lambda c: (c[0], c[1]))[0][3]
        return Verdict(h, statement, NOT_SUPPORTED, "counter-example: " + tally.first_counter(), head)
    if tally.overlap:
        more = f" (and {len(tally.overlap) - 1} more)" if len(tally.overlap) > 1 else ""
        return Verdict(
            h,
            statement,
            INCONCLUSIVE,
            f"no clear counter-example, but {tally.overlap[0]}{more}: "
            "the difference is inside the confidence intervals",
            tally.overlap[0],
        )
    if tally.passed == 0:
        return Verdict(
            h, statement, INCONCLUSIVE, f"too few cells to test: {needs}", f"too few cells: {needs}"
        )
    note = f"; not testable: {', '.join(tally.untested)}" if tally.untested else ""
    return Verdict(
        h,
        statement,
        SUPPORTED,
        f"{what} in all {tally.passed} comparisons{note}",
        f"{what} ({tally.passed}×)",
    )


def _capped(done: pd.DataFrame) -> str:
    """Why figures cannot be compared across batch sizes: epochs capped by --max-steps ("" if not).

    A capped epoch runs the same number of batches at every batch size, so neither the
    time per epoch nor the images seen follow the batch size any more."""
    if "max_steps" not in done:
        return ""
    steps = pd.to_numeric(done["max_steps"], errors="coerce")
    capped = steps[steps > 0]
    if capped.empty:
        return ""
    caps = "/".join(str(int(v)) for v in sorted(set(capped)))
    return (
        f"{len(capped)} of {len(done)} configurations ran with max_steps={caps} (each epoch stopped after "
        f"{caps} batches at every batch size), so the number of batches did not follow the batch size and "
        "times and accuracies are not comparable across batch sizes; re-run without --max-steps"
    )


def _shared_host(done: pd.DataFrame) -> str:
    """Why times cannot be compared: cells that shared one host's cores at once ("" if none)."""
    if "concurrent" not in done:
        return ""
    notes = [str(x) for x in done["concurrent"] if isinstance(x, str) and x]
    if not notes:
        return ""
    return (
        f"{len(notes)} configuration(s) ran at the same time as other cells on the same host, e.g. "
        f"{notes[0].split('; ')[0]}: they shared its CPU/GPU, so their times are not comparable; "
        "re-run with --max-parallel 1, on SLURM GPUs, or with whole nodes (--exclusive)"
    )


def _void(v: Verdict, capped: str = "", shared: str = "") -> Verdict:
    """``v`` made inconclusive when its figures are not comparable, saying why.

    Under a max_steps cap the figures say nothing about the hypothesis, so only the cap is
    reported; overlapping runs keep what the numbers said at face value."""
    if capped:
        return Verdict(
            v.hypothesis,
            v.statement,
            INCONCLUSIVE,
            capped + (f"; also {shared}" if shared else ""),
            "epochs capped by --max-steps: not comparable across batch sizes",
        )
    if shared:
        face = f"taken at face value: {v.verdict} ({v.evidence})" if v.verdict != INCONCLUSIVE else v.evidence
        return Verdict(
            v.hypothesis,
            v.statement,
            INCONCLUSIVE,
            f"{shared}; {face}",
            "cells shared one host at the same time: times not comparable",
        )
    return v


def h1_recognition(summary: pd.DataFrame, threshold: float = 95.0) -> Verdict:
    """H1: test accuracy above ``threshold`` % in every completed configuration.

    Chosen over "the best configuration" because the paper's claim is about the method,
    not one lucky setting; the whole interval (Student t over repeats, else Wilson on the
    test images) must clear the threshold.
    """
    statement = STATEMENTS["H1"].format(threshold=threshold)
    done = _completed(summary, "test_acc")
    if done.empty:
        return Verdict(
            "H1", statement, INCONCLUSIVE, "too few cells to test: no completed cell has a test accuracy",
            "no test accuracy yet",
        )
    below, unsure = [], []
    for _, r in done.iterrows():
        p = Point.of(r, "test_acc")
        label = f"b={int(r['batch_size'])} × {gpu_label(int(r['gpus']))}"
        if p.low > threshold:
            continue
        if p.high <= threshold or not p.has_interval:
            below.append(f"{label}: {p.show(' %')}")
        else:
            unsure.append(f"{label}: {p.show(' %')}")
    worst = done.loc[done["test_acc"].idxmin()]
    wp = Point.of(worst, "test_acc")
    where = f"b={int(worst['batch_size'])} × {gpu_label(int(worst['gpus']))}"
    scope = f"every completed configuration ({len(done)} configurations{_interval_note(wp)})"
    extra = ""
    if "extra_test_acc" in done and done["extra_test_acc"].notna().any():
        extra = f"; flat test folder: {done['extra_test_acc'].mean():.2f} % mean"
    key = f"lowest test accuracy {wp.mean:.2f} % ({where}) vs threshold {threshold:g} %"
    if below:
        return Verdict(
            "H1",
            statement,
            NOT_SUPPORTED,
            f"test accuracy ≤ {threshold:g} % in {len(below)} of {len(done)} configurations, "
            f"e.g. {below[0]}{extra}",
            key,
        )
    if unsure:
        return Verdict(
            "H1",
            statement,
            INCONCLUSIVE,
            f"interval straddles {threshold:g} % at {unsure[0]}{extra}",
            f"interval straddles {threshold:g} % at {unsure[0]}",
        )
    return Verdict(
        "H1",
        statement,
        SUPPORTED,
        f"test accuracy > {threshold:g} % in {scope}; lowest {wp.show(' %')} at {where}{extra}",
        key,
    )


def _interval_note(p: Point) -> str:
    """What the intervals behind a verdict are, for its evidence."""
    if p.kind == "wilson":
        return "; single runs: [a, b] is the Wilson binomial interval on the test images"
    if p.kind == "bootstrap":
        return "; single runs: [a, b] is a bootstrap over the blocked split's runs of consecutive frames"
    if p.kind == "t":
        return ", mean ± Student-t half-width over repeats"
    return ""


def h2_more_gpus_faster(summary: pd.DataFrame) -> Verdict:
    """H2: at every batch size, exec time falls strictly as the GPU count rises."""
    statement = STATEMENTS["H2"]
    done = _completed(summary, "exec_time_s")
    if "gpus_used" in done:
        fallback = done[(done["gpus"] > 0) & (done["gpus_used"] < done["gpus"])]
        if len(fallback):
            # A cell that asked for N GPUs but ran on fewer (e.g. the CPU fallback) says nothing about N GPUs.
            r = fallback.iloc[0]
            return Verdict(
                "H2",
                statement,
                INCONCLUSIVE,
                f"{len(fallback)} configuration(s) ran on fewer GPUs than requested, e.g. "
                f"b={int(r['batch_size'])} × {gpu_label(int(r['gpus']))} ran on {int(r['gpus_used'])} "
                "GPU(s): GPU counts were not compared",
                f"{len(fallback)} configuration(s) ran on fewer GPUs than requested (CPU fallback)",
            )
    tally = _Tally()
    for prefix, ser in _series(done):
        for bs, grp in ser.groupby("batch_size", sort=True):
            grp = grp[grp["gpus"] > 0].sort_values("gpus")
            if len(grp) < 2:
                tally.untested.append(f"{prefix}b={bs} (one GPU count)")
                continue
            pts = [(gpu_label(int(r["gpus"])), Point.of(r, "exec_time_s")) for _, r in grp.iterrows()]
            _monotone(pts, "lt", f"{prefix}b={bs}", " s", tally)
    v = _decide(
        "H2", statement, tally, "time fell with every added GPU", "need two GPU counts at one batch size"
    )
    if why := scaling_limit(done):
        v = Verdict(v.hypothesis, v.statement, v.verdict, f"{v.evidence}; {why}", f"{v.key}; {why}")
    return _void(v, shared=_shared_host(done))


def scaling_limit(done: pd.DataFrame) -> str:
    """What limited scaling, in numbers, at the largest GPU count ("" without a recorded time breakdown):
    the share of the training loop spent waiting for the next batch, and mean GPU utilisation. Cells
    that ran on the CPU say nothing about GPUs and are left out."""
    if "time_data_wait_s" not in done or not done["time_data_wait_s"].notna().any():
        return ""
    rows = done[done["time_data_wait_s"].notna() & (done["gpus"] > 0)]
    if "gpus_used" in rows:
        rows = rows[~(rows["gpus_used"] == 0)]
    if rows.empty:
        return ""
    top = rows[rows["gpus"] == rows["gpus"].max()]
    several = top["pipeline"].nunique() > 1 or top["strategy"].nunique() > 1
    parts = []
    for _, r in top.sort_values(["batch_size", "strategy", "pipeline"]).iterrows():
        share = data_wait_share(r)
        if not math.isfinite(share):
            continue
        util = r.get("gpu_util_pct", math.nan)
        util_s = f", GPU utilisation {util:.0f} %" if util is not None and math.isfinite(util) else ""
        series = f" {r['strategy']}/{r['pipeline']}" if several else ""
        parts.append(f"b={int(r['batch_size'])}{series}: {share * 100:.0f} % waiting for data{util_s}")
    if not parts:
        return ""
    g = int(top["gpus"].iloc[0])
    return f"where the time went at {gpu_label(g)} (share of the training loop): " + "; ".join(parts)


def h3_larger_batch_better(summary: pd.DataFrame, metric: str = "test_acc") -> Verdict:
    """H3: at every GPU count, ``metric`` (test accuracy by default) rises with batch size.

    The paper judged "model approximation" by overall accuracy; test accuracy is the
    held-out figure, so it is the default (``metric="val_acc"`` is the alternative).
    """
    name = METRIC_NAMES.get(metric, metric)
    statement = STATEMENTS["H3"].format(metric=name)
    tally = _Tally()
    done = _completed(summary, metric)
    for prefix, ser in _series(done):
        for g, grp in ser.groupby("gpus", sort=True):
            grp = grp.sort_values("batch_size")
            if len(grp) < 2:
                tally.untested.append(f"{prefix}{gpu_label(int(g))} (one batch size)")
                continue
            pts = [(f"b={int(r['batch_size'])}", Point.of(r, metric)) for _, r in grp.iterrows()]
            _monotone(pts, "gt", f"{prefix}{gpu_label(int(g))}", " %", tally)
    v = _decide(
        "H3",
        statement,
        tally,
        f"{name} rose with every larger batch",
        "need two batch sizes at one GPU count",
    )
    v = Verdict(v.hypothesis, v.statement, v.verdict, f"judged on {name}: {v.evidence}", v.key)
    return _void(v, capped=_capped(done))


@dataclass(frozen=True)
class LineFit:
    """Time against batch size at one GPU count: least-squares slope (s per image of batch) and R²."""

    series: str
    slope: float
    r2: float
    points: int


def h4_batch_size_faster(summary: pd.DataFrame, r2_threshold: float = 0.9) -> Verdict:
    """H4 as the study meant it (:data:`H4_READING`): at every GPU count, time falls as the batch size
    grows (every consecutive pair, interval-aware) and linearly (least-squares R² ≥ ``r2_threshold``
    with a negative slope; needs three batch sizes, two points always fit a line)."""
    statement = STATEMENTS["H4"].format(r2=r2_threshold)
    tally = _Tally()
    fits: list[LineFit] = []
    short: list[str] = []
    done = _completed(summary, "exec_time_s")
    for prefix, ser in _series(done):
        for g, grp in ser.groupby("gpus", sort=True):
            grp = grp.sort_values("batch_size")
            series = f"{prefix}{gpu_label(int(g))}"
            if len(grp) < 2:
                tally.untested.append(f"{series} (one batch size)")
                continue
            pts = [(f"b={int(r['batch_size'])}", Point.of(r, "exec_time_s")) for _, r in grp.iterrows()]
            _monotone(pts, "lt", series, " s", tally)
            if len(grp) < 3:
                short.append(series)
                continue
            xs = [float(b) for b in grp["batch_size"]]
            _, slope, r2 = linear_fit(xs, [float(t) for t in grp["exec_time_s"]])
            fits.append(LineFit(series, slope, r2, len(grp)))
    fit_text = _fits_text(fits, r2_threshold)
    v = _decide(
        "H4", statement, tally, "time fell as the batch size grew", "need two batch sizes at one GPU count"
    )
    if v.verdict == NOT_SUPPORTED:
        v = Verdict(v.hypothesis, v.statement, v.verdict, v.evidence + fit_text, v.key)
    elif v.verdict == SUPPORTED:
        bent = [f for f in fits if not (f.slope < 0 and math.isfinite(f.r2) and f.r2 >= r2_threshold)]
        if bent:
            f = min(bent, key=lambda x: x.r2 if math.isfinite(x.r2) else -1.0)
            v = Verdict(
                "H4",
                statement,
                NOT_SUPPORTED,
                f"time fell as the batch size grew, but not linearly: at {f.series} R² = {f.r2:.3f} < "
                f"{r2_threshold:g}{fit_text}",
                f"not linear: {f.series} R² = {f.r2:.3f} < {r2_threshold:g}",
            )
        elif not fits:
            v = Verdict(
                "H4",
                statement,
                INCONCLUSIVE,
                f"{v.evidence}, but linearity needs three batch sizes at a GPU count (only two at "
                f"{', '.join(short)})",
                "direction holds; linearity needs 3 batch sizes",
            )
        else:
            lo = min(f.r2 for f in fits)
            v = Verdict("H4", statement, SUPPORTED, v.evidence + fit_text, f"{v.key}; R² ≥ {lo:.3f}")
    return _void(v, capped=_capped(done), shared=_shared_host(done))


def _fits_text(fits: Sequence[LineFit], r2_threshold: float) -> str:
    if not fits:
        return ""
    parts = [f"{f.series} R² = {f.r2:.3f}, slope {f.slope:+.3f} s per image" for f in fits]
    return f"; linear fits of time on batch size (threshold R² ≥ {r2_threshold:g}): " + "; ".join(parts)


def h4_literal_steps(summary: pd.DataFrame) -> Verdict:
    """The literal reading of H4, kept only as a labelled aside: time falls as the number of training
    batches per epoch (ceil(train / batch size)) rises, i.e. as the batch size falls."""
    tally = _Tally()
    done = _completed(summary, "exec_time_s")
    for prefix, ser in _series(done):
        for g, grp in ser.groupby("gpus", sort=True):
            grp = grp.sort_values("batch_size", ascending=False)  # fewest batches first
            if len(grp) < 2:
                tally.untested.append(f"{prefix}{gpu_label(int(g))} (one batch size)")
                continue
            pts = []
            for _, r in grp.iterrows():
                nb = r.get("n_batches")
                nb_s = (
                    f"{int(nb)} batches (b={int(r['batch_size'])})"
                    if nb is not None and math.isfinite(nb)
                    else f"b={int(r['batch_size'])}"
                )
                pts.append((nb_s, Point.of(r, "exec_time_s")))
            _monotone(pts, "lt", f"{prefix}{gpu_label(int(g))}", " s", tally)
    v = _decide(
        "H4 (literal)",
        H4_LITERAL_STATEMENT,
        tally,
        "time fell as the number of batches rose",
        "need two batch sizes at one GPU count",
    )
    return _void(v, capped=_capped(done), shared=_shared_host(done))


def evaluate(
    summary: pd.DataFrame, h1_threshold: float = 95.0, h3_metric: str = "test_acc", h4_r2: float = 0.9
) -> list[Verdict]:
    """All four verdicts, in the paper's order."""
    return [
        h1_recognition(summary, h1_threshold),
        h2_more_gpus_faster(summary),
        h3_larger_batch_better(summary, h3_metric),
        h4_batch_size_faster(summary, h4_r2),
    ]


# --------------------------------------------------------------------------- conclusions


@dataclass(frozen=True)
class Conclusions:
    """The paper's section-7 conclusions, computed: fastest, most accurate, their memory."""

    fastest: str | None
    fastest_time_s: float
    fastest_time_hw: float
    fastest_mem_total_gb: float
    fastest_mem_per_gpu_gb: tuple[float, ...]
    most_accurate: str | None
    most_accurate_test_acc: float
    most_accurate_mem_total_gb: float
    most_accurate_mem_per_gpu_gb: tuple[float, ...]
    text: str


def _label(r: pd.Series, multi: bool) -> str:
    s = f"{int(r['batch_size'])} × {gpu_label(int(r['gpus']))}"
    return s + (f" ({r['strategy']}/{r['pipeline']})" if multi else "")


def _memory(r: pd.Series) -> tuple[float, tuple[float, ...], str]:
    """(total, per GPU, "per-process" | "device-wide"): the per-process peaks the study compared, else
    the device-wide ones, labelled."""
    n = int(r["gpus"])
    proc = tuple(float(r.get(f"gpu{i}_proc_gb", math.nan)) for i in range(n))
    if any(math.isfinite(v) for v in proc):
        return float(r.get("total_proc_gb", math.nan)), proc, "per-process"
    dev = tuple(float(r.get(f"gpu{i}_gb", math.nan)) for i in range(n))
    return float(r.get("total_gpu_gb", math.nan)), dev, "device-wide"


def _mem_text(total: float, per: tuple[float, ...], kind: str) -> str:
    if not math.isfinite(total):
        return "memory not measured"
    return (
        f"{total:.3f} GB {kind} in total ("
        + " + ".join("n/m" if not math.isfinite(v) else f"{v:.3f}" for v in per)
        + " GB per GPU)"
    )


def _most_accurate(
    acc: pd.DataFrame, multi: bool
) -> tuple[pd.Series | None, float, float, tuple[float, ...], list[str]]:
    """The most accurate configuration, its test accuracy and memory, and the sentences about it."""
    if acc.empty:
        return None, math.nan, math.nan, (), ["No test accuracy was recorded."]
    ranked = acc.sort_values(["test_acc", "val_acc", "exec_time_s"], ascending=[False, False, True])
    a = ranked.iloc[0]
    ap = Point.of(a, "test_acc")
    atotal, aper, akind = _memory(a)
    parts = [
        f"The most accurate is batch size {_label(a, multi)} with {ap.show(' %')} test accuracy, using "
        f"{_mem_text(atotal, aper, akind)}."
    ]
    bp = Point.of(ranked.iloc[1], "test_acc") if len(ranked) > 1 else None
    if bp is not None and compare(ap, bp) in ("overlap", "eq"):
        if ap.has_interval or bp.has_interval:
            why = "the difference is inside the intervals" + (
                " (Wilson, on the test images)" if ap.kind == "wilson" else ""
            )
        else:
            why = "a single run per configuration: no interval to tell them apart"
        runner = _label(ranked.iloc[1], multi)
        parts.append(f"It is not clearly ahead of {runner} ({bp.show(' %')}): {why}.")
    return a, ap.mean, atotal, aper, parts


def conclusions(summary: pd.DataFrame) -> Conclusions:
    """Fastest configuration (lowest mean exec time), most accurate (highest mean test
    accuracy; ties broken by validation accuracy, then time), and the memory each used."""
    done = _completed(summary, "exec_time_s")
    if done.empty:
        nan = math.nan
        return Conclusions(
            None,
            nan,
            nan,
            nan,
            (),
            None,
            nan,
            nan,
            (),
            "No configuration has completed yet, so nothing can be concluded.",
        )
    multi = done.groupby(["strategy", "pipeline"]).ngroups > 1
    by_time = done.sort_values(["exec_time_s", "gpus"])
    f = by_time.iloc[0]
    fp = Point.of(f, "exec_time_s")
    ftotal, fper, fkind = _memory(f)
    parts = [
        f"The fastest configuration is batch size {_label(f, multi)} at {fp.show(' s')}, using "
        f"{_mem_text(ftotal, fper, fkind)}."
    ]
    cap = float(f.get("gpu_mem_total_gb", math.nan))
    if math.isfinite(cap) and cap > 0 and fper and all(math.isfinite(v) for v in fper):
        share = max(fper) / cap
        idle = ", so most of each GPU's memory sat idle, as the paper concluded" if share < 0.5 else ""
        parts.append(f"Its busiest GPU peaked at {share * 100:.0f} % of the {cap:.1f} GB each GPU has{idle}.")
    if len(by_time) > 1:
        s = by_time.iloc[1]
        sp = Point.of(s, "exec_time_s")
        if compare(fp, sp) == "overlap":
            parts.append(
                f"Its interval overlaps the runner-up {_label(s, multi)} ({sp.show(' s')}), so the ranking "
                "is not certain."
            )
        else:
            parts.append(f"The runner-up is {_label(s, multi)} at {sp.show(' s')}.")
    acc = done[done["test_acc"].notna()]
    a, aacc, atotal, aper, more = _most_accurate(acc, multi)
    parts += more
    slowest = by_time.iloc[-1]
    parts.append(
        f"Across the {len(done)} completed configurations execution time spans "
        f"{fp.mean:.2f}–{float(slowest['exec_time_s']):.2f} s and test accuracy "
        f"{float(acc['test_acc'].min()) if not acc.empty else math.nan:.2f}–{aacc:.2f} %."
    )
    for caveat in (_shared_host(done), _capped(done)):
        if caveat:
            parts.append(f"Caveat: {caveat[0].upper()}{caveat[1:]}.")
    return Conclusions(
        fastest=_label(f, multi),
        fastest_time_s=fp.mean,
        fastest_time_hw=fp.hw,
        fastest_mem_total_gb=ftotal,
        fastest_mem_per_gpu_gb=fper,
        most_accurate=_label(a, multi) if a is not None else None,
        most_accurate_test_acc=aacc,
        most_accurate_mem_total_gb=atotal,
        most_accurate_mem_per_gpu_gb=aper,
        text=" ".join(parts),
    )
