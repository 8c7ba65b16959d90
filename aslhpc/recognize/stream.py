"""Turn a stream of per-frame predictions into text: a pure state machine, no I/O, no model.

Single frames flicker, so a sign counts only once it has been the confident top class for
``hold`` consecutive frames. The rules, frame by frame:

* a frame whose top probability is below ``threshold`` breaks the current run (counts as no sign);
* a frame whose top class differs from the run's class starts a new run of length 1;
* when a run reaches exactly ``hold`` frames its class fires once:
  a letter is appended, ``space`` appends a space, ``del`` removes the last character
  (nothing happens on empty text), ``nothing`` re-arms (see below);
* a class that fired is *blocked* until another class fires: holding A for 100 frames, or
  A, a blurry stretch, then A again, still writes one A. To write a double letter sign
  ``nothing`` (held ``hold`` frames) or any other sign in between.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

SPACE = "space"
DELETE = "del"
NOTHING = "nothing"


@dataclass(frozen=True)
class StreamEvent:
    """One firing of a held sign: what fired, at which frame, and the text afterwards."""

    frame: int  # 0-based index of the frame that completed the hold
    label: str
    text: str


@dataclass
class TextSmoother:
    """Feed ``update(label, prob)`` once per frame; read ``text``. Raises nothing, allocates little."""

    hold: int = 5
    threshold: float = 0.8
    space: str = SPACE
    delete: str = DELETE
    nothing: str = NOTHING
    text: str = ""
    frames: int = 0  # frames seen so far
    run_label: str | None = None  # class of the current confident run (None: no run)
    run_length: int = 0
    blocked: str | None = None  # last class that fired; cannot fire again until another does
    events: list[StreamEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.hold < 1:
            raise ValueError(f"hold={self.hold} must be at least 1 frame")
        if not 0.0 <= self.threshold <= 1.0:
            raise ValueError(f"threshold={self.threshold} must be a probability in [0, 1]")

    def update(self, label: str, prob: float) -> StreamEvent | None:
        """Account for one frame's top class and its probability; return the event if one fired."""
        frame = self.frames
        self.frames += 1
        if prob < self.threshold:
            self.run_label, self.run_length = None, 0
            return None
        if label == self.run_label:
            self.run_length += 1
        else:
            self.run_label, self.run_length = label, 1
        if self.run_length != self.hold or label == self.blocked:
            return None
        self.blocked = None if label == self.nothing else label
        if label == self.nothing:
            return None  # re-arms only; the text is unchanged, so there is nothing to report
        if label == self.delete:
            self.text = self.text[:-1]
        elif label == self.space:
            self.text += " "
        else:
            self.text += label
        event = StreamEvent(frame, label, self.text)
        self.events.append(event)
        return event

    def feed(self, predictions: Iterable[tuple[str, float]]) -> str:
        """Run :meth:`update` over ``(label, prob)`` pairs and return the text."""
        for label, prob in predictions:
            self.update(label, prob)
        return self.text

    @property
    def pending(self) -> tuple[str | None, int]:
        """The sign being held and for how many frames (for a live display)."""
        return self.run_label, self.run_length
