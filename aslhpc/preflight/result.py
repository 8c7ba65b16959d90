"""The result of one check: what was found and, when it is not fine, how to fix it."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table. ``figures`` holds measured numbers for the JSON report."""

    name: str
    status: str  # pass | warn | fail | skip
    found: str
    fix: str = ""
    figures: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {', '.join(STATUSES)}")


def guarded(name: str, fn: Callable[[], Check | Iterable[Check]]) -> list[Check]:
    """Run one check; a check that raises is a failed check (the doctor itself never crashes)."""
    t0 = time.perf_counter()
    try:
        out = fn()
    except Exception as exc:  # noqa: BLE001 - an unexpected error is exactly what a preflight reports
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return [Check(name, FAIL, f"{type(exc).__name__}: {exc} (at {where.filename}:{where.lineno})",
                      "report this with the JSON output (--json)",
                      {"seconds": round(time.perf_counter() - t0, 3)})]
    return [out] if isinstance(out, Check) else list(out)
