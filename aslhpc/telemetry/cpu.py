"""Process CPU utilisation and resident memory from /proc (no psutil).

Why these definitions:

* ``cpu_util_pct`` follows top/htop: CPU seconds per wall second x 100 for this process
  *and its live descendants* (DataLoader workers, DDP ranks spawned from it) plus reaped
  children, so 400 means four cores busy. The list of descendants is refreshed at most once a
  second. ``n_cpus`` (the CPUs this process may run on,
  i.e. what SLURM granted) is reported beside it so it can be normalised.
* ``rss_mib`` is the main process's resident set (statm); the peak is the kernel's high-water
  mark (VmHWM), which catches spikes between samples. Workers are left out of RSS: forked
  workers share copy-on-write pages, so summing them would count the same memory many times.

Without /proc (not Linux) the figures fall back to ``time.process_time`` and
``resource.getrusage``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

MIB = 1024 * 1024
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
RESCAN_S = 1.0  # how often the list of descendants is refreshed (it costs a read per thread)


def _read(path: str) -> str | None:
    """A small /proc file, None if it is gone; raw os calls keep a tick cheap."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return os.read(fd, 65536).decode(errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def n_cpus() -> int:
    """CPUs this process may use (its affinity mask: the SLURM allocation), else all."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (all its threads'), [] where the kernel lacks the file."""
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    out: list[int] = []
    for tid in tasks:
        text = _read(f"/proc/{pid}/task/{tid}/children")
        if text:
            out.extend(int(c) for c in text.split() if c.isdigit())
    return out


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (breadth first)."""
    seen: list[int] = []
    queue = children(pid)
    while queue:
        p = queue.pop()
        if p not in seen:
            seen.append(p)
            queue.extend(children(p))
    return seen


def cpu_seconds(pid: int) -> float | None:
    """utime+stime+cutime+cstime of ``pid`` in seconds, None if unreadable (e.g. exited)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()  # the command name may hold spaces
    try:
        return sum(int(x) for x in fields[11:15]) / _TICK  # fields 14-17 of proc(5)
    except (ValueError, IndexError):
        return None


def rss_mib(pid: int) -> float | None:
    """Resident set of ``pid`` in MiB (statm), None without /proc."""
    statm = _read(f"/proc/{pid}/statm")
    try:
        return int(statm.split()[1]) * _PAGE / MIB if statm else None
    except (ValueError, IndexError):
        return None


def peak_rss_mib(pid: int) -> float | None:
    """The kernel's RSS high-water mark (VmHWM): exact, whatever happened between samples."""
    for line in (_read(f"/proc/{pid}/status") or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    if pid != os.getpid():
        return None
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    except (ImportError, OSError):
        return None


@dataclass(frozen=True)
class CpuSample:
    cpu_util_pct: float | None  # since the previous sample; None for the first
    rss_mib: float | None


class CpuMeter:
    """Samples one process tree; the summary's mean is exact (total CPU / total wall time)."""

    def __init__(self, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self._kids: list[int] = []
        self._scanned = -RESCAN_S
        self._t0 = self._t = time.monotonic()
        self._c0 = self._c = self._tree_cpu(self._t)
        self._rss_peak: float | None = None
        self._sampled = False

    def _tree_cpu(self, now: float) -> float:
        """CPU seconds of the process and its live descendants; process_time() without /proc."""
        own = cpu_seconds(self.pid)
        if own is None:
            return time.process_time()
        if now - self._scanned >= RESCAN_S:
            self._kids, self._scanned = descendants(self.pid), now
        return own + sum(s for s in (cpu_seconds(c) for c in self._kids) if s is not None)

    def sample(self) -> CpuSample:
        t = time.monotonic()
        c = self._tree_cpu(t)
        dt = t - self._t
        util = max(0.0, (c - self._c) / dt * 100.0) if self._sampled and dt > 1e-6 else None
        self._t, self._c, self._sampled = t, c, True
        rss = rss_mib(self.pid)
        if rss is not None and (self._rss_peak is None or rss > self._rss_peak):
            self._rss_peak = rss
        return CpuSample(util, rss)

    def summary(self) -> dict[str, float | int | None]:
        """``{util_mean_pct, rss_peak_gb, n_cpus}``; GB = MiB / 1000 as in the 2020 paper."""
        wall = self._t - self._t0
        mean = max(0.0, (self._c - self._c0) / wall * 100.0) if wall > 1e-6 else None
        peaks = [v for v in (self._rss_peak, peak_rss_mib(self.pid)) if v is not None]
        return {
            "util_mean_pct": None if mean is None else round(mean, 1),
            "rss_peak_gb": round(max(peaks) / 1000, 3) if peaks else None,
            "n_cpus": n_cpus(),
        }
