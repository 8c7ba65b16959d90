"""The verdicts layer: each hypothesis is one class, all their settings one :class:`Settings` object.

A hypothesis reads the summary frame (and the paired per-image tests, :mod:`aslhpc.analysis.paired`)
and returns a :class:`~aslhpc.analysis.hypotheses.Verdict`; the numbers behind it come from
:mod:`aslhpc.analysis.stats`, the wording of the four study hypotheses from
:mod:`aslhpc.analysis.hypotheses`. Adding an H5 is one class here:

    @register
    class H5(Hypothesis):
        key = "H5"
        paper = ""  # the 2020 study did not test it
        def decide(self, summary, settings, evidence):
            ...  # return Verdict("H5", statement, SUPPORTED / NOT_SUPPORTED / INCONCLUSIVE, evidence_text)

(plus a field on :class:`Settings` if it has a threshold, and a ``--h5-...`` flag in collect).
The report, the console, verdicts.json and the plots' captions list the registry in order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import pandas as pd

from aslhpc.analysis.hypotheses import (
    INCONCLUSIVE,
    METRIC_NAMES,
    NOT_SUPPORTED,
    PAPER_VERDICTS,
    STATEMENTS,
    SUPPORTED,
    Verdict,
    h1_recognition,
    h2_more_gpus_faster,
    h3_larger_batch_better,
    h4_batch_size_faster,
)
from aslhpc.analysis.paired import PAIRED_COLUMNS
from aslhpc.analysis.stats import MCNEMAR
from aslhpc.analysis.tables import gpu_label


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
        return self.alpha if math.isfinite(self.alpha) else 1.0 - self.ci


@dataclass(frozen=True)
class Evidence:
    """What the hypotheses judge besides the summary: the per-image paired tests (may be empty)."""

    paired: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=PAIRED_COLUMNS))


class Hypothesis:
    """One hypothesis: ``key`` (H1..), what the 2020 study concluded (``paper``), and :meth:`decide`."""

    key: ClassVar[str] = ""
    paper: ClassVar[str] = ""

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        raise NotImplementedError


#: the hypotheses in the order the report lists them
REGISTRY: list[type[Hypothesis]] = []


def register(cls: type[Hypothesis]) -> type[Hypothesis]:
    """Class decorator: add a hypothesis to :data:`REGISTRY` (once)."""
    if cls not in REGISTRY:
        REGISTRY.append(cls)
    return cls


@register
class H1(Hypothesis):
    key = "H1"
    paper = PAPER_VERDICTS["H1"]

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        return h1_recognition(summary, settings.h1_threshold)


@register
class H2(Hypothesis):
    key = "H2"
    paper = PAPER_VERDICTS["H2"]

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        return h2_more_gpus_faster(summary)


def _pair_text(r: pd.Series) -> str:
    return (f"{gpu_label(int(r['gpus']))} b={int(r['batch_a'])}→{int(r['batch_b'])}: "
            f"{r['acc_a']:.2f} → {r['acc_b']:.2f} %, {int(r['only_a'])}/{int(r['only_b'])} images only one "
            f"got right, p = {r['p_value']:.3g}")


@register
class H3(Hypothesis):
    """Larger batch, better model. On the same test images the comparison is paired: where every
    consecutive pair of a series saved predictions, McNemar's exact test decides it (a significant
    fall is a counter-example, a rise inside the noise is not a rise); otherwise the interval rule."""

    key = "H3"
    paper = PAPER_VERDICTS["H3"]

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        base = h3_larger_batch_better(summary, settings.h3_metric)
        pairs = evidence.paired
        if settings.h3_metric != "test_acc" or pairs.empty:
            return base
        alpha = settings.paired_alpha
        falls = pairs[(pairs["p_value"] < alpha) & (pairs["acc_b"] < pairs["acc_a"])]
        rises = pairs[(pairs["p_value"] < alpha) & (pairs["acc_b"] > pairs["acc_a"])]
        name = METRIC_NAMES["test_acc"]
        statement = STATEMENTS["H3"].format(metric=name)
        head = f"judged on {name}, paired ({MCNEMAR}, α = {alpha:g}, same test images): "
        if len(falls):
            worst = falls.sort_values("p_value").iloc[0]
            return Verdict("H3", statement, NOT_SUPPORTED, head + "counter-example: " + _pair_text(worst),
                           f"{MCNEMAR}: fell at {gpu_label(int(worst['gpus']))}")
        if len(rises) == len(pairs):
            shown = "; ".join(_pair_text(r) for _, r in pairs.iterrows())
            return Verdict("H3", statement, SUPPORTED, head + shown, f"{MCNEMAR}: every rise significant")
        flat = pairs[pairs["p_value"] >= alpha].sort_values("p_value")
        shown = "; ".join(_pair_text(r) for _, r in flat.iterrows())
        return Verdict("H3", statement, INCONCLUSIVE, head + "no significant difference at " + shown,
                       f"{MCNEMAR}: differences inside the noise")


@register
class H4(Hypothesis):
    key = "H4"
    paper = PAPER_VERDICTS["H4"]

    def decide(self, summary: pd.DataFrame, settings: Settings, evidence: Evidence) -> Verdict:
        return h4_batch_size_faster(summary, settings.h4_r2)


def evaluate(summary: pd.DataFrame, settings: Settings | None = None,
             evidence: Evidence | None = None) -> list[Verdict]:
    """Every registered hypothesis decided, in registry order."""
    settings = settings or Settings()
    evidence = evidence or Evidence()
    return [cls().decide(summary, settings, evidence) for cls in REGISTRY]


def paper_verdicts() -> dict[str, str]:
    """What the 2020 study concluded, per registered hypothesis it tested."""
    return {cls.key: cls.paper for cls in REGISTRY if cls.paper}
