"""The verdicts: the 2020 study's hypotheses, one registered class each, all knobs one :class:`Settings`.

A hypothesis reads the per-configuration summary (``tables.summarize``) and the paired per-image tests
(:class:`Evidence`, from :mod:`aslhpc.analysis.paired`) and returns a :class:`Verdict` that also says
which test decided it and its figures (verdicts.json). With repeats every comparison uses the
confidence intervals: two figures whose intervals overlap are *indistinguishable*, which counts neither
as a strict decrease nor as a counter-example, so it can only make a verdict "inconclusive". Without
repeats an accuracy measured on n images still has a binomial (Wilson) interval; two single runs on the
same test images are compared pairwise instead (McNemar's exact test) where both saved their
predictions. A time from a single run has no interval, so its comparisons say "single run" and how
large the deciding gap was. Figures that are not comparable at all (epochs capped by ``max_steps``;
local cells that shared a host at the same time) make the verdicts resting on them inconclusive.

Adding an H5 is one class here, registered where it is defined (docs/design.md, "Adding an H5")::

    @register
    class H5(Hypothesis):
        key, paper, template = "H5", "", "What H5 claims ({h5_threshold:g} ...)."
        def decide(self, summary, settings, evidence): ...  # -> Verdict(self.key, ...)

The report, the console, verdicts.json and the plots list :data:`REGISTRY` in order.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pandas as pd

from aslhpc.analysis.paired import PAIRED_COLUMNS
from aslhpc.analysis.stats import MCNEMAR, linear_fit, wilson_interval
from aslhpc.analysis.tables import data_wait_share, gpu_label, main_split_kind

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"

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

METRIC_NAMES = {
    "test_acc": "test accuracy",
    "val_acc": "validation accuracy",
    "train_acc": "training accuracy",
}

#: what verdicts.json and the report call the interval behind a comparison, by :attr:`Point.kind`
INTERVAL_TESTS = {
    "t": "Student-t interval over repeats",
    "wilson": "Wilson interval on the test images (unpaired)",
    "bootstrap": "block bootstrap interval over runs of frames (unpaired)",
    "": "single runs, no interval",
}


@dataclass(frozen=True)
class Config:
    """A configuration of the matrix (what repeats are runs of), as a summary row names it."""

    gpus: int
    batch_size: int
    strategy: str
    split_kind: str

    @classmethod
    def of(cls, row: pd.Series) -> Config:
        return cls(int(row["gpus"]), int(row["batch_size"]), str(row["strategy"]), str(row["split_kind"]))


@dataclass(frozen=True)
class Overlap:
    """Why an inconclusive verdict is open in a way more runs can settle: the intervals of ``a`` and ``b``
    overlap (``b`` None: ``a``'s interval straddles a threshold). ``runs`` and ``widths`` (interval
    high - low) are per side, for choosing which one to repeat."""

    a: Config
    b: Config | None
    runs: tuple[int, int]
    widths: tuple[float, float]


@dataclass(frozen=True)
class Verdict:
    """One hypothesis decided: ``verdict`` is "supported", "not supported" or "inconclusive"; ``test``
    names the test(s) behind it and ``figures`` holds their numbers (p-values, intervals, fits).
    ``overlaps``: an inconclusive verdict that more runs could settle says where (empty otherwise)."""

    hypothesis: str
    statement: str
    verdict: str
    evidence: str
    #: the deciding figure(s) in a few words, for one-line summaries
    key: str = ""
    test: str = ""
    figures: dict[str, Any] = field(default_factory=dict)
    overlaps: tuple[Overlap, ...] = ()


@dataclass(frozen=True)
class Point:
    """A figure with its interval: a Student-t half-width over repeats (``kind`` "t"), a Wilson
    binomial interval for an accuracy from one run (``kind`` "wilson", ``lo``/``hi``), a block bootstrap
    one (``kind`` "bootstrap") or none (``kind`` "", a single run)."""

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

    def figures(self) -> dict[str, float | str]:
        """The point as verdicts.json records it."""
        return {"mean": self.mean, "low": self.low if self.has_interval else math.nan,
                "high": self.high if self.has_interval else math.nan, "interval": self.kind, "runs": self.n}


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


def completed(summary: pd.DataFrame, col: str) -> pd.DataFrame:
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
    """Counter-examples (clear violations), overlaps (indistinguishable pairs), passes, and every
    consecutive comparison with the test that made it (for verdicts.json)."""

    # (is_tie, is_non_consecutive, -relative gap, series, text): clear consecutive violations sort first,
    # the largest first (the evidence leads with the strongest counter-example)
    counter: list[tuple[bool, bool, float, str, str]] = field(default_factory=list)
    overlap: list[str] = field(default_factory=list)
    passed: int = 0
    untested: list[str] = field(default_factory=list)
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    #: whether the first overlap came from a paired test (its wording differs)
    paired_overlap: bool = False
    #: the overlaps judged by intervals (a paired test's "no difference" is not narrowed by more repeats)
    open_pairs: list[Overlap] = field(default_factory=list)

    def first_counter(self) -> str:
        ordered = sorted(self.counter, key=lambda c: c[:3])
        head_series = ordered[0][3]
        others: list[str] = []
        for *_, series, _ in ordered:
            if series != head_series and series not in others:
                others.append(series)
        text = ordered[0][4]
        if others:
            text += f"; also at {', '.join(others)}"
        if len(ordered) > 1:
            text += f" ({len(ordered)} violating pairs in all)"
        return text

    def tests(self) -> str:
        """The tests behind the comparisons, most used first, e.g. "McNemar exact (paired) ×2"."""
        counts: dict[str, int] = {}
        for c in self.comparisons:
            counts[c["test"]] = counts.get(c["test"], 0) + 1
        return "; ".join(f"{t} ({n} comparison{'' if n == 1 else 's'})"
                         for t, n in sorted(counts.items(), key=lambda kv: -kv[1]))


def _rel_gap(a: Point, b: Point) -> float:
    """|b - a| relative to a: how strong a counter-example is (0 where a is 0 or not finite)."""
    gap = abs(b.mean - a.mean) / abs(a.mean) if a.mean else 0.0
    return gap if math.isfinite(gap) else 0.0


#: a paired test for consecutive points i, i + 1: (relation, note, figures), or None to use the intervals
PairedJudge = Callable[[int], tuple[str, str, dict[str, Any]] | None]


def _monotone(points: Sequence[tuple[str, Point]], want: str, series: str, unit: str, tally: _Tally,
              decimals: int = 2, paired: PairedJudge | None = None,
              configs: Sequence[Config] = ()) -> None:
    """Check that consecutive points move the ``want`` way ("lt": fall, "gt": rise); ``paired`` decides a
    consecutive pair where the two cells share their test images; ``configs`` (one per point) lets an
    overlap say which configurations more runs would separate.

    Non-consecutive pairs are also scanned for clear interval violations, since with CIs a series
    can drift the wrong way through a chain of overlaps.
    """
    bad = "gt" if want == "lt" else "lt"
    sym = {"gt": ">", "lt": "<", "eq": "=", "overlap": "≈"}

    def say(la: str, a: Point, lb: str, b: Point, rel: str, note: str | None = None) -> str:
        if note is not None:
            mb, ma = f"{b.mean:.{decimals}f}{unit}", f"{a.mean:.{decimals}f}{unit}"
            return f"{series}: {lb} {mb} {sym[rel]} {la} {ma}{note}"
        return (f"{series}: {lb} {b.show(unit, decimals)} {sym[rel]} {la} {a.show(unit, decimals)}"
                + gap_note(a, b, unit, decimals))

    for i in range(len(points) - 1):
        (la, a), (lb, b) = points[i], points[i + 1]
        judged = paired(i) if paired is not None else None
        if judged is not None:
            rel, note, figs = judged
            text = say(la, a, lb, b, rel, note)
        else:
            rel, note = compare(a, b), None
            figs = {"test": INTERVAL_TESTS[b.kind or a.kind], "a_figures": a.figures(),
                    "b_figures": b.figures()}
            text = say(la, a, lb, b, rel) + (" (intervals overlap)" if rel == "overlap" else "")
        tally.comparisons.append({"series": series.strip(), "a": la, "b": lb, "relation": rel, **figs})
        if rel == want:
            tally.passed += 1
        elif rel == "overlap":
            tally.paired_overlap = tally.paired_overlap or (not tally.overlap and judged is not None)
            tally.overlap.append(text)
            if judged is None and configs:
                tally.open_pairs.append(Overlap(configs[i], configs[i + 1], (a.n, b.n),
                                                (a.high - a.low, b.high - b.low)))
        else:
            tally.counter.append((rel == "eq", False, -_rel_gap(a, b), series, text))
    for i in range(len(points)):
        for j in range(i + 2, len(points)):
            (la, a), (lb, b) = points[i], points[j]
            if compare(a, b) == bad:
                tally.counter.append((False, True, -_rel_gap(a, b), series, say(la, a, lb, b, bad)))


def _decide(h: str, statement: str, tally: _Tally, what: str, needs: str) -> Verdict:
    figures = {"comparisons": tally.comparisons}
    tests = tally.tests()
    if tally.counter:
        head = sorted(tally.counter, key=lambda c: c[:3])[0][4]
        return Verdict(h, statement, NOT_SUPPORTED, "counter-example: " + tally.first_counter(), head, tests,
                       figures)
    if tally.overlap:
        more = f" (and {len(tally.overlap) - 1} more)" if len(tally.overlap) > 1 else ""
        why = ("the paired test finds no significant difference" if tally.paired_overlap
               else "the difference is inside the confidence intervals")
        return Verdict(h, statement, INCONCLUSIVE,
                       f"no clear counter-example, but {tally.overlap[0]}{more}: {why}",
                       tally.overlap[0], tests, figures, tuple(tally.open_pairs))
    if tally.passed == 0:
        return Verdict(h, statement, INCONCLUSIVE, f"too few cells to test: {needs}",
                       f"too few cells: {needs}",
                       tests, figures)
    note = f"; not testable: {', '.join(tally.untested)}" if tally.untested else ""
    return Verdict(h, statement, SUPPORTED, f"{what} in all {tally.passed} comparisons{note}",
                   f"{what} ({tally.passed}×)", tests, figures)


def capped(done: pd.DataFrame) -> str:
    """Why figures cannot be compared across batch sizes: epochs capped by --max-steps ("" if not).

    A capped epoch runs the same number of batches at every batch size, so neither the
    time per epoch nor the images seen follow the batch size any more."""
    if "max_steps" not in done:
        return ""
    steps = pd.to_numeric(done["max_steps"], errors="coerce")
    caps_used = steps[steps > 0]
    if caps_used.empty:
        return ""
    caps = "/".join(str(int(v)) for v in sorted(set(caps_used)))
    return (
        f"{len(caps_used)} of {len(done)} configurations ran with max_steps={caps} (each epoch stopped after "
        f"{caps} batches at every batch size), so the number of batches did not follow the batch size and "
        "times and accuracies are not comparable across batch sizes; re-run without --max-steps"
    )


def shared_host(done: pd.DataFrame) -> str:
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


def _void(v: Verdict, cap: str = "", shared: str = "") -> Verdict:
    """``v`` made inconclusive when its figures are not comparable, saying why.

    Under a max_steps cap the figures say nothing about the hypothesis, so only the cap is
    reported; overlapping runs keep what the numbers said at face value."""
    if cap:
        also = f"; also {shared}" if shared else ""
        return dataclasses.replace(v, verdict=INCONCLUSIVE, evidence=cap + also, overlaps=(),
                                   key="epochs capped by --max-steps: not comparable across batch sizes")
    if shared:
        face = f"taken at face value: {v.verdict} ({v.evidence})" if v.verdict != INCONCLUSIVE else v.evidence
        return dataclasses.replace(v, verdict=INCONCLUSIVE, evidence=f"{shared}; {face}", overlaps=(),
                                   key="cells shared one host at the same time: times not comparable")
    return v


def _interval_note(p: Point) -> str:
    """What the intervals behind a verdict are, for its evidence."""
    if p.kind == "wilson":
        return "; single runs: [a, b] is the Wilson binomial interval on the test images"
    if p.kind == "bootstrap":
        return "; single runs: [a, b] is a bootstrap over the blocked split's runs of consecutive frames"
    if p.kind == "t":
        return ", mean ± Student-t half-width over repeats"
    return ""


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


# --------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Settings:
    """Every knob of every hypothesis, in one place (collect's --ci/--h1-threshold/--h3-metric/--h4-r2)."""

    ci: float = 0.95
    h1_threshold: float = 95.0  # aslhpc's assumption: the study names no threshold
    h3_metric: str = "test_acc"
    h4_r2: float = 0.9
    #: a paired test's p below this counts as a difference (1 - ci by default)
    alpha: float = math.nan

    @property
    def paired_alpha(self) -> float:
        return self.alpha if math.isfinite(self.alpha) else round(1.0 - self.ci, 12)


@dataclass(frozen=True)
class Evidence:
    """What the hypotheses judge besides the summary: the per-image paired tests (may be empty)."""

    paired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIRED_COLUMNS))


class Hypothesis:
    """One hypothesis: ``key`` (H1..), what the 2020 study concluded (``paper``, "" if it did not test
    it), its statement (``template``, formatted with the :class:`Settings` fields) and :meth:`decide`."""

    key: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    template: ClassVar[str] = ""

    def statement(self, settings: Settings) -> str:
        values = dataclasses.asdict(settings)
        return self.template.format(**values, metric=METRIC_NAMES.get(settings.h3_metric, settings.h3_metric))

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        raise NotImplementedError

    @classmethod
    def verdict(cls, summary: pd.DataFrame, settings: Settings | None = None,
                evidence: Evidence | None = None) -> Verdict:
        """This hypothesis decided (default settings, no paired evidence unless given)."""
        return cls().decide(summary, settings or Settings(), evidence or Evidence())


#: the hypotheses in the order the report lists them
REGISTRY: list[type[Hypothesis]] = []


def register(cls: type[Hypothesis]) -> type[Hypothesis]:
    """Class decorator: add a hypothesis to :data:`REGISTRY` (once)."""
    if cls not in REGISTRY:
        REGISTRY.append(cls)
    return cls


def _configs(grp: pd.DataFrame) -> list[Config]:
    return [Config.of(r) for _, r in grp.iterrows()]


def _label(r: pd.Series) -> str:
    return f"b={int(r['batch_size'])} × {gpu_label(int(r['gpus']))}"


@register
class H1(Hypothesis):
    """Test accuracy above the threshold in every completed configuration.

    Chosen over "the best configuration" because the paper's claim is about the method, not one lucky
    setting; the whole interval (Student t over repeats, else Wilson on the test images) must clear it."""

    key = "H1"
    paper = SUPPORTED
    template = "Hand signs can be recognised from images (test accuracy above {h1_threshold:g} %)."

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        threshold = settings.h1_threshold
        statement = self.statement(settings)
        done = completed(summary, "test_acc")
        if done.empty:
            return Verdict("H1", statement, INCONCLUSIVE,
                           "too few cells to test: no completed cell has a test accuracy",
                           "no test accuracy yet")
        below, unsure, figs, straddle = [], [], [], []
        for _, r in done.iterrows():
            p = Point.of(r, "test_acc")
            figs.append({"configuration": _label(r), **p.figures()})
            if p.low > threshold:
                continue
            clear = p.high <= threshold or not p.has_interval
            (below if clear else unsure).append(f"{_label(r)}: {p.show(' %')}")
            if not clear:
                straddle.append(Overlap(Config.of(r), None, (p.n, 0), (p.high - p.low, 0.0)))
        worst = done.loc[done["test_acc"].idxmin()]
        wp = Point.of(worst, "test_acc")
        test = f"every interval against the threshold: {INTERVAL_TESTS[wp.kind]}"
        figures = {"threshold": threshold, "configurations": figs}
        extra = ""
        if "extra_test_acc" in done and done["extra_test_acc"].notna().any():
            extra = f"; flat test folder: {done['extra_test_acc'].mean():.2f} % mean"
        key = f"lowest test accuracy {wp.mean:.2f} % ({_label(worst)}) vs threshold {threshold:g} %"
        if below:
            return Verdict("H1", statement, NOT_SUPPORTED,
                           f"test accuracy ≤ {threshold:g} % in {len(below)} of "
                           f"{len(done)} configurations, e.g. {below[0]}{extra}", key, test, figures)
        if unsure:
            return Verdict("H1", statement, INCONCLUSIVE,
                           f"interval straddles {threshold:g} % at {unsure[0]}{extra}",
                           f"interval straddles {threshold:g} % at {unsure[0]}", test, figures,
                           tuple(straddle))
        scope = f"every completed configuration ({len(done)} configurations{_interval_note(wp)})"
        return Verdict("H1", statement, SUPPORTED, f"test accuracy > {threshold:g} % in {scope}; lowest "
                       f"{wp.show(' %')} at {_label(worst)}{extra}", key, test, figures)


@register
class H2(Hypothesis):
    """At every batch size, exec time falls strictly as the GPU count rises."""

    key = "H2"
    paper = NOT_SUPPORTED
    template = ("Using more GPUs always speeds up computation (time falls strictly with GPU count at every "
                "batch size).")

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        statement = self.statement(settings)
        done = completed(summary, "exec_time_s")
        if "gpus_used" in done:
            fallback = done[(done["gpus"] > 0) & (done["gpus_used"] < done["gpus"])]
            if len(fallback):
                # A cell that asked for N GPUs but ran on fewer (e.g. the CPU fallback) says nothing about N.
                r = fallback.iloc[0]
                return Verdict("H2", statement, INCONCLUSIVE,
                               f"{len(fallback)} configuration(s) ran on fewer GPUs than requested, e.g. "
                               f"{_label(r)} ran on {int(r['gpus_used'])} GPU(s): GPU counts were not "
                               "compared",
                               f"{len(fallback)} configuration(s) ran on fewer GPUs than requested "
                               "(CPU fallback)")
        tally = _Tally()
        for prefix, ser in _series(done):
            for bs, grp in ser.groupby("batch_size", sort=True):
                grp = grp[grp["gpus"] > 0].sort_values("gpus")
                if len(grp) < 2:
                    tally.untested.append(f"{prefix}b={bs} (one GPU count)")
                    continue
                pts = [(gpu_label(int(r["gpus"])), Point.of(r, "exec_time_s")) for _, r in grp.iterrows()]
                _monotone(pts, "lt", f"{prefix}b={bs}", " s", tally, configs=_configs(grp))
        v = _decide("H2", statement, tally, "time fell with every added GPU",
                    "need two GPU counts at one batch size")
        if why := scaling_limit(done):
            v = dataclasses.replace(v, evidence=f"{v.evidence}; {why}", key=f"{v.key}; {why}")
        return _void(v, shared=shared_host(done))


def _paired_judge(pairs: pd.DataFrame, grp: pd.DataFrame, alpha: float) -> PairedJudge:
    """McNemar's verdict on consecutive batch sizes i, i + 1 of one series (``grp`` sorted by batch size):
    a difference only where every repeat's test is significant the same way; None (use the intervals)
    where a repeat of either side lacks predictions on the shared test images."""
    sizes = [int(b) for b in grp["batch_size"]]
    runs = [int(n) for n in grp["n"]]
    first = grp.iloc[0]
    mine = pairs[(pairs["gpus"] == first["gpus"]) & (pairs["strategy"] == first["strategy"])
                 & (pairs["pipeline"] == first["pipeline"]) & (pairs["split_kind"] == first["split_kind"])]

    def judge(i: int) -> tuple[str, str, dict[str, Any]] | None:
        rows = mine[(mine["batch_a"] == sizes[i]) & (mine["batch_b"] == sizes[i + 1])]
        if rows.empty or len(rows) < max(runs[i], runs[i + 1]):
            return None
        significant = bool((rows["p_value"] < alpha).all())
        up, down = bool((rows["acc_b"] > rows["acc_a"]).all()), bool((rows["acc_b"] < rows["acc_a"]).all())
        rel = "gt" if significant and up else "lt" if significant and down else "overlap"
        p = float(rows["p_value"].max())
        only = f"{int(rows['only_a'].sum())}/{int(rows['only_b'].sum())}"
        reps = f" over {len(rows)} repeats, largest" if len(rows) > 1 else ""
        note = (f" ({MCNEMAR} on the same {int(rows['n'].iloc[0])} test images{reps} p = {p:.3g}, "
                f"α = {alpha:g}; "
                f"{only} images only the smaller/larger batch got right)")
        figs = {"test": f"{MCNEMAR} (paired)", "alpha": alpha, "p_value": p,
                "pairs": rows.drop(columns=["test"]).to_dict(orient="records")}
        return rel, note, figs

    return judge


@register
class H3(Hypothesis):
    """At every GPU count, the metric (test accuracy by default) rises with batch size.

    The paper judged "model approximation" by overall accuracy; test accuracy is the held-out figure, so it
    is the default. Two cells tested on the same images are compared pairwise (McNemar's exact test: the
    right test for two classifiers on one test set); otherwise by their intervals."""

    key = "H3"
    paper = NOT_SUPPORTED
    template = "A larger batch size means a better model ({metric} rises with batch size at every GPU count)."

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        metric = settings.h3_metric
        name = METRIC_NAMES.get(metric, metric)
        pairs = evidence.paired if metric == "test_acc" else evidence.paired[:0]
        tally = _Tally()
        done = completed(summary, metric)
        for prefix, ser in _series(done):
            for g, grp in ser.groupby("gpus", sort=True):
                grp = grp.sort_values("batch_size")
                if len(grp) < 2:
                    tally.untested.append(f"{prefix}{gpu_label(int(g))} (one batch size)")
                    continue
                pts = [(f"b={int(r['batch_size'])}", Point.of(r, metric)) for _, r in grp.iterrows()]
                judge = _paired_judge(pairs, grp, settings.paired_alpha) if len(pairs) else None
                _monotone(pts, "gt", f"{prefix}{gpu_label(int(g))}", " %", tally, paired=judge,
                          configs=_configs(grp))
        v = _decide("H3", self.statement(settings), tally, f"{name} rose with every larger batch",
                    "need two batch sizes at one GPU count")
        paired = [c for c in tally.comparisons if "p_value" in c]
        said = "; ".join(f"{c['series']} {c['a']}→{c['b']} p = {c['p_value']:.3g}" for c in paired)
        tail = f"; {MCNEMAR} on the same test images: {said}" if paired and v.verdict == SUPPORTED else ""
        v = dataclasses.replace(v, evidence=f"judged on {name}: {v.evidence}{tail}")
        return _void(v, cap=capped(done))


@dataclass(frozen=True)
class LineFit:
    """Time against batch size at one GPU count: least-squares slope (s per image of batch) and R²."""

    series: str
    slope: float
    r2: float
    points: int


def _fits_text(fits: Sequence[LineFit], r2_threshold: float) -> str:
    if not fits:
        return ""
    parts = [f"{f.series} R² = {f.r2:.3f}, slope {f.slope:+.3f} s per image" for f in fits]
    return f"; linear fits of time on batch size (threshold R² ≥ {r2_threshold:g}): " + "; ".join(parts)


def _h4_linearity(v: Verdict, fits: Sequence[LineFit], short: Sequence[str], r2: float) -> Verdict:
    """H4's direction verdict ``v`` completed by the linearity of each series' fit."""
    fit_text = _fits_text(fits, r2)
    v = dataclasses.replace(v, test=f"{v.test}; least-squares line, R² ≥ {r2:g}".lstrip("; "),
                            figures={**v.figures, "fits": [dataclasses.asdict(f) for f in fits]})
    if v.verdict == NOT_SUPPORTED:
        return dataclasses.replace(v, evidence=v.evidence + fit_text)
    if v.verdict != SUPPORTED:
        return v
    bent = [f for f in fits if not (f.slope < 0 and math.isfinite(f.r2) and f.r2 >= r2)]
    if bent:
        f = min(bent, key=lambda x: x.r2 if math.isfinite(x.r2) else -1.0)
        return dataclasses.replace(v, verdict=NOT_SUPPORTED,
                                   evidence=f"time fell as the batch size grew, but not linearly: "
                                   f"at {f.series} R² = {f.r2:.3f} < {r2:g}{fit_text}",
                                   key=f"not linear: {f.series} R² = {f.r2:.3f} < {r2:g}")
    if not fits:
        return dataclasses.replace(v, verdict=INCONCLUSIVE,
                                   evidence=f"{v.evidence}, but linearity needs three batch sizes "
                                   f"at a GPU count (only two at {', '.join(short)})",
                                   key="direction holds; linearity needs 3 batch sizes")
    lo = min(f.r2 for f in fits)
    return dataclasses.replace(v, evidence=v.evidence + fit_text, key=f"{v.key}; R² ≥ {lo:.3f}")


@register
class H4(Hypothesis):
    """H4 as the study meant it (:data:`H4_READING`): at every GPU count, time falls as the batch size grows
    (every consecutive pair, interval-aware) and linearly (least-squares R² ≥ the threshold with a negative
    slope; needs three batch sizes, two points always fit a line)."""

    key = "H4"
    paper = NOT_SUPPORTED
    template = ("At a fixed GPU count, time falls linearly as the batch size grows (the study's \"number of "
                "batches\" is the batch size; linear fit of time on batch size, R² ≥ {h4_r2:g}).")

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        tally = _Tally()
        fits: list[LineFit] = []
        short: list[str] = []
        done = completed(summary, "exec_time_s")
        for prefix, ser in _series(done):
            for g, grp in ser.groupby("gpus", sort=True):
                grp = grp.sort_values("batch_size")
                series = f"{prefix}{gpu_label(int(g))}"
                if len(grp) < 2:
                    tally.untested.append(f"{series} (one batch size)")
                    continue
                pts = [(f"b={int(r['batch_size'])}", Point.of(r, "exec_time_s")) for _, r in grp.iterrows()]
                _monotone(pts, "lt", series, " s", tally, configs=_configs(grp))
                if len(grp) < 3:
                    short.append(series)
                    continue
                xs, ys = [float(b) for b in grp["batch_size"]], [float(t) for t in grp["exec_time_s"]]
                _, slope, r2 = linear_fit(xs, ys)
                fits.append(LineFit(series, slope, r2, len(grp)))
        v = _decide("H4", self.statement(settings), tally, "time fell as the batch size grew",
                    "need two batch sizes at one GPU count")
        v = _h4_linearity(v, fits, short, settings.h4_r2)
        return _void(v, cap=capped(done), shared=shared_host(done))


def h4_literal_steps(summary: pd.DataFrame) -> Verdict:
    """The literal reading of H4, kept only as a labelled aside (not registered): time falls as the number
    of training batches per epoch (ceil(train / batch size)) rises, i.e. as the batch size falls."""
    tally = _Tally()
    done = completed(summary, "exec_time_s")
    for prefix, ser in _series(done):
        for g, grp in ser.groupby("gpus", sort=True):
            grp = grp.sort_values("batch_size", ascending=False)  # fewest batches first
            if len(grp) < 2:
                tally.untested.append(f"{prefix}{gpu_label(int(g))} (one batch size)")
                continue
            pts = []
            for _, r in grp.iterrows():
                nb = r.get("n_batches")
                known = nb is not None and math.isfinite(nb)
                b = f"b={int(r['batch_size'])}"
                nb_s = f"{int(nb)} batches ({b})" if known else b
                pts.append((nb_s, Point.of(r, "exec_time_s")))
            _monotone(pts, "lt", f"{prefix}{gpu_label(int(g))}", " s", tally)
    v = _decide("H4 (literal)", H4_LITERAL_STATEMENT, tally, "time fell as the number of batches rose",
                "need two batch sizes at one GPU count")
    return _void(v, cap=capped(done), shared=shared_host(done))


def evaluate(summary: pd.DataFrame, settings: Settings | None = None,
             evidence: Evidence | None = None) -> list[Verdict]:
    """Every registered hypothesis decided, in registry order."""
    return [cls.verdict(summary, settings, evidence) for cls in REGISTRY]


def paper_verdicts() -> dict[str, str]:
    """What the 2020 study concluded, per registered hypothesis it tested."""
    return {cls.key: cls.paper for cls in REGISTRY if cls.paper}


#: what Lad (2020) concluded, section 6, for the report's side-by-side column (from the registry)
PAPER_VERDICTS = paper_verdicts()
