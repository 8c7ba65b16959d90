"""Run every check in order, and render the result: a table that fits 80 columns, or JSON."""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aslhpc.preflight import cuda, data, ddp, nvmlcheck, storage, throughput, versions
from aslhpc.preflight.context import Context
from aslhpc.preflight.result import FAIL, Check, guarded
from aslhpc.slurmenv import node_name

DoctorOptions = Context  # the options of a run are the context the checks read

# (name for a crash row, check) in table order; data runs before storage (it counts the images)
CHECKS: tuple[tuple[str, Callable[[Context], Any]], ...] = (
    ("versions", lambda c: versions.check_versions()),
    ("torch GPU kernels", versions.check_arch),
    ("CUDA devices", cuda.check_devices),
    ("LadNet step per GPU", cuda.check_step),
    ("bf16 / fp16", cuda.check_precision),
    ("cuDNN", cuda.check_cudnn),
    ("NVML", nvmlcheck.check_nvml),
    ("sampler tick", nvmlcheck.check_sampler_overhead),
    ("DataParallel", cuda.check_dataparallel),
    ("DDP (2 processes)", ddp.check_ddp),
    ("data", data.check_data),
    ("cache dir", storage.check_cache_dir),
    ("results dir", storage.check_results_dir),
    ("throughput probe", throughput.check_throughput),
)


@dataclass
class Report:
    checks: list[Check]
    host: str = field(default_factory=node_name)
    at: str = field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def ok(self) -> bool:
        """A cell would run here: nothing failed (warnings and skips do not stop a cell)."""
        return not any(c.status == FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, "at": self.at, "python": platform.python_version(), "ok": self.ok,
                "exit_code": self.exit_code, "checks": [asdict(c) for c in self.checks]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Report:
        return cls([Check(**c) for c in d["checks"]], d.get("host", "?"), d.get("at", ""))


def run_checks(ctx: Context, progress: Callable[[str], None] | None = None) -> Report:
    rows: list[Check] = []
    for name, fn in CHECKS:
        if progress:
            progress(name)
        rows += guarded(name, lambda fn=fn: fn(ctx))
    return Report(rows)


_STYLE = {"pass": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


def render(report: Report, width: int = 80, title: str = "") -> str:
    """The table as text, wrapped to ``width`` (headers never truncated: they are short words)."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or f"aslhpc doctor on {report.host}", show_lines=True, expand=False)
    table.add_column("check", overflow="fold", ratio=2, min_width=5, max_width=16)
    table.add_column("result", no_wrap=True, min_width=6)
    table.add_column("found", overflow="fold", ratio=5, min_width=5)
    table.add_column("fix", overflow="fold", ratio=3, min_width=3)
    for c in report.checks:
        table.add_row(c.name, f"[{_STYLE[c.status]}]{c.status}[/]", c.found, c.fix)
    console = Console(width=width, force_terminal=False, color_system=None)
    with console.capture() as out:
        console.print(table)
        verdict = "a cell would run here" if report.ok else "a cell would NOT run here: fix the failed rows"
        console.print(f"{sum(c.status == 'fail' for c in report.checks)} failed, "
                      f"{sum(c.status == 'warn' for c in report.checks)} warnings: {verdict}")
    return out.get()


def write_json(report: Report, path: str | Path) -> Path:
    from aslhpc.atomic import atomic_write_json

    return atomic_write_json(path, report.to_dict())
