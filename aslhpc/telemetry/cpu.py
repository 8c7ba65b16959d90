"""Process CPU utilisation and resident memory of a process tree (psutil).

Why these definitions:

* ``cpu_util_pct`` follows top/htop: CPU seconds per wall second x 100 for this process
  *and its live descendants* (DataLoader workers, DDP ranks spawned from it) plus reaped
  children, so 400 means four cores busy. The list of descendants is refreshed at most once a
  second. ``n_cpus`` (the CPUs this process may run on,
  i.e. what SLURM granted) is reported beside it so it can be normalised.
* ``rss_mib`` is the main process's resident set (statm); the peak is the kernel's high-water
  mark (VmHWM), which catches spikes between samples. Workers are left out of RSS: forked
  workers share copy-on-write pages, so summing them would count the same memory many times.

The RSS peak is read from /proc (VmHWM, which psutil does not expose); without /proc it falls
back to ``resource.getrusage``.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import psutil

MIB = 1024 * 1024
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


def descendants(pid: int) -> list[int]:
    """All live descendants of ``pid`` (psutil walks the parent pids); [] if ``pid`` is gone."""
    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.Error:
        return []


def _tree_seconds(proc: psutil.Process, reaped: bool) -> float | None:
    """User + system seconds of ``proc`` (+ reaped children's if ``reaped``); None once it is gone."""
    try:
        t = proc.cpu_times()
    except psutil.Error:
        return None
    return t.user + t.system + ((t.children_user + t.children_system) if reaped else 0.0)


def cpu_seconds(pid: int) -> float | None:
    """utime+stime+cutime+cstime of ``pid`` in seconds, None if unreadable (e.g. exited)."""
    try:
        return _tree_seconds(psutil.Process(pid), reaped=True)
    except psutil.Error:
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
        try:
            self._proc: psutil.Process | None = psutil.Process(self.pid)
        except psutil.Error:
            self._proc = None
        self._kids: dict[int, psutil.Process] = {}
        self._scanned = -RESCAN_S
        self._t0 = self._t = time.monotonic()
        self._c0 = self._c = self._tree_cpu(self._t)
        self._rss_peak: float | None = None
        self._sampled = False

    def _tree_cpu(self, now: float) -> float:
        """CPU seconds of the process, its reaped children and its live descendants (else process_time())."""
        own = _tree_seconds(self._proc, reaped=True) if self._proc is not None else None
        if own is None:
            return time.process_time()
        if now - self._scanned >= RESCAN_S:
            self._scanned = now
            try:
                found = self._proc.children(recursive=True)
            except psutil.Error:
                found = []
            # keep the Process objects already known: psutil checks each one's start time, so a reused pid
            # is never mistaken for the worker that had it
            self._kids = {p.pid: self._kids.get(p.pid, p) for p in found}
        kids = (_tree_seconds(p, reaped=False) for p in self._kids.values())
        return own + sum(s for s in kids if s is not None)

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
