"""Accuracy, per-class hits and confusions of a model over a folder of labelled images.

Counts are kept per class name so the report reads in letters; only the confusions that
happened are listed, because a 29x29 matrix of mostly zeros says less than "M -> N x3".
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from aslhpc.recognize.classifier import Classifier, Unreadable
from aslhpc.recognize.sources import ImageFile


@dataclass(frozen=True)
class FolderReport:
    """How a model did on labelled images; ``accuracy`` in percent like result.json."""

    classes: tuple[str, ...]
    n: int
    correct: int
    per_class: dict[str, tuple[int, int]]  # class -> (hits, images), classes that had images only
    # (true, predicted) -> count, true != predicted
    confusion: dict[tuple[str, str], int] = field(default_factory=dict)
    unreadable: tuple[Unreadable, ...] = ()  # labelled files that could not be decoded: not in n

    @property
    def accuracy(self) -> float:
        return 100.0 * self.correct / self.n if self.n else 0.0

    def format(self) -> str:
        """A short human report: accuracy, hits per class, then the confusions, most frequent first."""
        lines = [f"accuracy {self.accuracy:.2f}% ({self.correct}/{self.n})"]
        if self.unreadable:
            lines[0] += f", {len(self.unreadable)} unreadable not scored: " + ", ".join(
                str(u.path) for u in self.unreadable)
        cells = [f"{c} {h}/{t}" for c, (h, t) in self.per_class.items()]
        lines.append("per class: " + "  ".join(cells))
        if self.confusion:
            pairs = sorted(self.confusion.items(), key=lambda kv: (-kv[1], self.classes.index(kv[0][0])))
            lines.append("confusions (true -> predicted): "
                         + ", ".join(f"{t} -> {p} x{n}" for (t, p), n in pairs))
        else:
            lines.append("confusions: none")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-friendly, with the same ``n``/``acc``/``per_class`` keys as result.json's ``extra_test``."""
        return {"n": self.n, "correct": self.correct, "acc": self.accuracy,
                "per_class": {c: {"hits": h, "n": t} for c, (h, t) in self.per_class.items()},
                "confusion": [{"true": t, "pred": p, "count": n} for (t, p), n in self.confusion.items()],
                "unreadable": [{"path": str(u.path), "reason": u.reason} for u in self.unreadable]}


def score(classes: tuple[str, ...], truth: Sequence[str], predicted: Sequence[str]) -> FolderReport:
    """Tally true vs predicted labels (pure; the model is not needed)."""
    if len(truth) != len(predicted):
        raise ValueError(f"{len(truth)} labels but {len(predicted)} predictions")
    totals = Counter(truth)
    hits = Counter(t for t, p in zip(truth, predicted, strict=True) if t == p)
    confusion = Counter((t, p) for t, p in zip(truth, predicted, strict=True) if t != p)
    order = {c: i for i, c in enumerate(classes)}
    per_class = {c: (hits[c], totals[c]) for c in sorted(totals, key=lambda c: order.get(c, len(order)))}
    return FolderReport(classes, len(truth), sum(hits.values()), per_class, dict(confusion))


def evaluate_images(classifier: Classifier, images: Sequence[ImageFile],
                    batch_size: int = 64) -> FolderReport:
    """Classify labelled images in batches and score the top-1 class against each label.

    A file that cannot be decoded is left out of the score and listed in ``unreadable``.
    """
    labelled = [im for im in images if im.label is not None]
    truth: list[str] = []
    predicted: list[str] = []
    unreadable: list[Unreadable] = []
    for start in range(0, len(labelled), batch_size):
        chunk = labelled[start:start + batch_size]
        for im, pred in zip(chunk, classifier.predict_files([im.path for im in chunk], k=1), strict=True):
            if isinstance(pred, Unreadable):
                unreadable.append(pred)
            else:
                truth.append(str(im.label))
                predicted.append(pred.label)
    return replace(score(classifier.classes, truth, predicted), unreadable=tuple(unreadable))
