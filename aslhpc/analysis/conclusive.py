"""Which configurations one more run each would settle the open verdicts (``submit --until-conclusive``).

Pure: verdicts in, a :class:`RepeatPlan` out. A verdict is *open* when it is inconclusive because two
intervals overlap (or one straddles a threshold) — the one reason more runs can fix. An inconclusive
verdict for another reason (a CPU fallback, epochs capped by ``--max-steps``, cells that shared a host,
too few cells, a paired test that finds no difference on the same test images) is *not fixable by
repeats* and is listed with its reason instead: more runs of the same cells would not change it.

Which side of an overlap to repeat: the one with fewer runs (its interval shrinks most: the Student-t
factor falls fast at small n), then the wider interval, then the one needing fewer GPUs (cheaper). Each
configuration is named once however many overlaps it is part of.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from aslhpc.analysis.verdicts import INCONCLUSIVE, Config, Overlap, Verdict


@dataclass(frozen=True)
class RepeatPlan:
    """``repeat``: the configurations to run once more; ``open``: the hypotheses they should settle;
    ``unfixable``: (hypothesis, why more runs cannot settle it)."""

    repeat: tuple[Config, ...]
    open: tuple[str, ...]
    unfixable: tuple[tuple[str, str], ...]

    @property
    def conclusive(self) -> bool:
        """Nothing left that repeats could settle (every verdict decided, or open for other reasons)."""
        return not self.open


def _pick(o: Overlap) -> Config:
    """The side of ``o`` whose extra run narrows it most: fewer runs, then the wider interval, then fewer
    GPUs."""
    if o.b is None:
        return o.a
    key_a = (o.runs[0], -o.widths[0], o.a.gpus)
    key_b = (o.runs[1], -o.widths[1], o.b.gpus)
    return o.a if key_a <= key_b else o.b


def _why_not(v: Verdict) -> str:
    """Why more runs of the same cells would not settle ``v``, in a few words."""
    comparisons = v.figures.get("comparisons", [])
    if any("p_value" in c and c.get("relation") == "overlap" for c in comparisons):
        return ("the paired test on the same test images finds no difference (more test images could "
                "settle it, not more runs)")
    return v.key or v.evidence


def plan_repeats(verdicts: Sequence[Verdict]) -> RepeatPlan:
    """What one more round should run, from the verdicts of the rounds so far."""
    repeat: list[Config] = []
    open_: list[str] = []
    unfixable: list[tuple[str, str]] = []
    for v in verdicts:
        if v.verdict != INCONCLUSIVE:
            continue
        if not v.overlaps:
            unfixable.append((v.hypothesis, _why_not(v)))
            continue
        open_.append(v.hypothesis)
        for o in v.overlaps:
            if (c := _pick(o)) not in repeat:
                repeat.append(c)
    return RepeatPlan(tuple(repeat), tuple(open_), tuple(unfixable))
