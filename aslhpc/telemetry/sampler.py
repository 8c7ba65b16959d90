"""The telemetry sampler: a daemon thread streaming GPU (NVML) and CPU figures to a CSV.

The 2020 study read GPU memory off ``nvidia-smi`` screenshots by hand; here every cell runs
a :class:`Sampler` from before the first epoch until after the test evaluation.

CSV (one header for every row; ``kind`` says which columns a row fills, the rest are empty)::

    time,elapsed_s,kind,gpu,uuid,mem_used_mib,mem_total_mib,util_gpu_pct,util_mem_pct,
    power_w,sm_clock_mhz,temp_c,proc_mem_mib,cpu_util_pct,rss_mib

* each tick writes one ``kind=cpu`` row (process-tree CPU %, main-process RSS) and, when
  NVML works, one ``kind=gpu`` row per GPU this process uses (``gpu`` = its CUDA ordinal);
* ``time`` is ISO-8601 UTC, ``elapsed_s`` counts from :meth:`Sampler.start`;
* ``proc_mem_mib`` (this process tree's memory on that GPU) is filled every
  ``process_interval_s`` only: the query takes a driver lock;
* a cell left empty was not measured (not supported by the device, an error, or not due);
* rows of a tick are written in one write and flushed, so ``pandas.read_csv`` works while the
  run goes on and a crash keeps what was measured; a resumed run appends (its ``elapsed_s``
  restarts at 0) when the header matches, otherwise the old file is moved aside.

The summary's ``per_process`` says what became of ``proc_mem_*``: ``ok``, ``unavailable: PID namespace``
(NVML lists host pids), ``unavailable: no per-process query in this driver`` (after the _v3 -> _v2
fallback), ``empty`` or ``not sampled``; ``per_process_detail`` gives the evidence in one line.

Units: memory in MiB in the CSV; every ``*_gb`` in the summary is **MiB / 1000**, the 2020
paper's convention (its 2859 MiB reads 2.859 GB), so the tables compare like with like.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aslhpc.errors import ConfigError
from aslhpc.telemetry.cpu import CpuMeter, descendants
from aslhpc.telemetry.nvml import (
    MIB,
    MappedGpu,
    Nvml,
    NvmlUnavailable,
    describe_error,
    per_process_status,
    pid_namespace_note,
    torch_visible,
)

CSV_COLUMNS = (
    "time", "elapsed_s", "kind", "gpu", "uuid", "mem_used_mib", "mem_total_mib", "util_gpu_pct",
    "util_mem_pct", "power_w", "sm_clock_mhz", "temp_c", "proc_mem_mib", "cpu_util_pct", "rss_mib",
)
_GPU_STATS = ("mem_used_mib", "util_gpu_pct", "util_mem_pct", "power_w", "sm_clock_mhz", "temp_c",
              "proc_mem_mib")
CPU_RUN_REASON = "CPU run: no GPUs requested"
_JOIN_TIMEOUT_S = 10.0
_MAX_ERROR_NOTES = 5


@dataclass
class _Stat:
    """Running peak and mean: the summary never re-reads the CSV."""

    n: int = 0
    total: float = 0.0
    peak: float | None = None

    def add(self, value: float | None) -> None:
        if value is None:
            return
        self.n += 1
        self.total += value
        self.peak = value if self.peak is None else max(self.peak, value)

    @property
    def mean(self) -> float | None:
        return self.total / self.n if self.n else None


@dataclass
class _GpuTrack:
    gpu: MappedGpu
    mem_total_mib: float | None = None
    unsupported: set[str] = field(default_factory=set)
    stats: dict[str, _Stat] = field(default_factory=lambda: {k: _Stat() for k in _GPU_STATS})
    foreign_pids: set[int] = field(default_factory=set)  # listed by NVML on this GPU, not of our tree


@dataclass(frozen=True)
class GpuSummary:
    """One entry of the summary's ``gpus`` list (the result.json ``telemetry.gpus`` row)."""

    index: int
    nvml_index: int | None
    uuid: str
    name: str
    pci_bus_id: str
    matched_by: str
    mem_total_gb: float | None
    mem_peak_gb: float | None
    mem_mean_gb: float | None
    util_mean_pct: float | None
    mem_util_mean_pct: float | None
    power_peak_w: float | None
    sm_clock_mean_mhz: float | None
    temp_peak_c: float | None
    proc_mem_peak_gb: float | None
    unsupported: list[str]

    @classmethod
    def of(cls, t: _GpuTrack) -> GpuSummary:
        s, d = t.stats, t.gpu.device
        return cls(
            index=t.gpu.index, nvml_index=d.nvml_index, uuid=d.uuid, name=d.name, pci_bus_id=d.pci_bus_id,
            matched_by=t.gpu.matched_by, mem_total_gb=_gb(t.mem_total_mib),
            mem_peak_gb=_gb(s["mem_used_mib"].peak), mem_mean_gb=_gb(s["mem_used_mib"].mean),
            util_mean_pct=_r(s["util_gpu_pct"].mean, 1), mem_util_mean_pct=_r(s["util_mem_pct"].mean, 1),
            power_peak_w=_r(s["power_w"].peak, 1), sm_clock_mean_mhz=_r(s["sm_clock_mhz"].mean, 0),
            temp_peak_c=_r(s["temp_c"].peak, 1), proc_mem_peak_gb=_gb(s["proc_mem_mib"].peak),
            unsupported=sorted(t.unsupported),
        )


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _gb(mib: float | None) -> float | None:
    """MiB -> the paper's GB (MiB / 1000)."""
    return None if mib is None else round(mib / 1000, 3)


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    return round(value, 3) if isinstance(value, float) else value


class _CsvSink:
    """Append-only CSV writer: one write + flush per tick; fsync at close."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        header = ",".join(CSV_COLUMNS)
        append = False
        if path.exists() and path.stat().st_size > 0:
            with open(path, encoding="utf-8", errors="replace") as fh:
                append = fh.readline().rstrip("\r\n") == header
            if not append:  # never overwrite foreign data: move it aside
                path.rename(path.with_name(f"{path.stem}.{int(time.time())}{path.suffix}"))
        self.fh = open(path, "a" if append else "w", newline="", encoding="utf-8")
        if append:
            with open(path, "rb") as fh:
                fh.seek(-1, os.SEEK_END)
                torn = fh.read(1) != b"\n"
            if torn:  # a crash mid-line: end it so the new rows parse
                self.fh.write("\n")
        else:
            self.fh.write(header + "\n")
        self.fh.flush()

    def write(self, rows: list[dict[str, Any]]) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in rows:
            writer.writerow([_cell(row.get(c)) for c in CSV_COLUMNS])
        self.fh.write(buf.getvalue())
        self.fh.flush()

    def close(self) -> None:
        try:
            self.fh.flush()
            os.fsync(self.fh.fileno())
        except OSError:
            pass
        self.fh.close()


class Sampler:
    """Samples the GPUs this process uses (or only the CPU) on a daemon thread.

    ``visible``: one entry per CUDA device (dicts or objects with ``uuid`` and/or
    ``pci_bus_id``, optional ``index``), e.g. :func:`aslhpc.telemetry.nvml.torch_visible`;
    matched by UUID, then PCI bus id (see :mod:`aslhpc.telemetry.nvml`). ``devices``: the CUDA
    ordinals the cell trains on; ``[]`` marks a CPU run (NVML is not even initialised), and
    when ``visible`` is omitted the ordinals are resolved through torch, else the environment.
    ``nvml``: the pynvml module to use (tests inject a fake); default ``import pynvml``.

    One sample is taken in :meth:`start` and one in :meth:`stop`, so even a run shorter than
    one interval has a peak. Use as a context manager so a raising run still stops it; the
    summary is then on ``.summary``.
    """

    def __init__(self, out_csv: str | os.PathLike, interval_s: float = 1.0, process_interval_s: float = 10.0,
                 nvml: Any = None, visible: list[Any] | None = None,
                 devices: list[int] | None = None) -> None:
        if not interval_s > 0:
            raise ConfigError(f"sample interval {interval_s!r} s is not positive; use e.g. 1.0")
        if not process_interval_s >= 0:
            raise ConfigError(f"process sample interval {process_interval_s!r} s is negative; use e.g. 10.0")
        self.out_csv = Path(out_csv)
        self.interval_s = float(interval_s)
        self.process_interval_s = float(process_interval_s)
        self.visible = visible
        self.devices = None if devices is None else list(devices)
        self.summary: dict[str, Any] | None = None
        self._module = nvml
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._stop_evt = threading.Event()
        self._thread: threading.Thread | None = None
        self._nvml: Nvml | None = None
        self._tracks: list[_GpuTrack] = []
        self._problems: list[str] = []
        self._reason: str | None = None
        self._sink: _CsvSink | None = None
        self._cpu: CpuMeter | None = None
        self._started = False
        self._n = 0
        self._errors = 0
        self._notes: list[str] = []
        self._t0 = self._last_proc = 0.0

    # ---- lifecycle --------------------------------------------------------------------------

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Open NVML (or record why not), take the first sample, start the thread."""
        if self._started:
            raise RuntimeError("Sampler.start() called twice; make a new Sampler per run")
        self._started = True
        self._t0 = time.monotonic()
        self._cpu = CpuMeter(self._pid)
        self._sink = _CsvSink(self.out_csv)
        try:
            self._open_nvml()
            self._tick(force_proc=True)
        except BaseException:
            self._close()
            raise
        self._thread = threading.Thread(target=self._run, name="aslhpc-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> dict[str, Any]:
        """Stop promptly (no wait for the interval), take a last sample, return the summary.

        Idempotent: later calls return the same summary.
        """
        if self.summary is not None:
            return self.summary
        if not self._started:
            raise RuntimeError("Sampler.stop() before start()")
        self._stop_evt.set()
        hung = False
        if self._thread is not None:
            self._thread.join(timeout=_JOIN_TIMEOUT_S)
            hung = self._thread.is_alive()
        if hung:
            self._error(f"sampler thread still busy after {_JOIN_TIMEOUT_S:.0f} s; last sample skipped")
        else:
            self._tick(force_proc=True)
        self.summary = self._summary()
        self._close(shutdown_nvml=not hung)
        return self.summary

    def _close(self, shutdown_nvml: bool = True) -> None:
        if self._lock.acquire(timeout=_JOIN_TIMEOUT_S):
            try:
                if self._sink is not None:
                    self._sink.close()
                    self._sink = None
            finally:
                self._lock.release()
        if self._nvml is not None and shutdown_nvml:
            self._nvml.close()

    def _open_nvml(self) -> None:
        if self.devices == [] or self.visible == []:
            self._reason = CPU_RUN_REASON
            return
        try:
            nv = Nvml.open(self._module)
        except NvmlUnavailable as exc:
            self._reason = str(exc)
            return
        try:
            visible = self.visible
            if visible is None and self.devices is not None:
                visible = torch_visible(self.devices) or None
            mapped, self._problems = nv.map_visible(visible)
        except Exception as exc:  # a surprise in the mapping must not stop training
            nv.close()
            self._reason = f"mapping GPUs to NVML devices failed: {describe_error(exc)}"
            return
        if self.devices is not None:
            mapped = [g for g in mapped if g.index in self.devices]
        if not mapped:
            nv.close()
            why = "; ".join(self._problems) or "CUDA_VISIBLE_DEVICES leaves no GPU visible"
            self._reason = f"no GPU of this process matched an NVML device: {why}"
            return
        self._nvml = nv
        self._tracks = [_GpuTrack(g) for g in mapped]

    # ---- sampling ---------------------------------------------------------------------------

    def _run(self) -> None:
        next_t = time.monotonic() + self.interval_s
        while not self._stop_evt.wait(max(0.0, next_t - time.monotonic())):
            try:
                self._tick()
            except Exception as exc:  # the thread must outlive any one bad tick
                self._error(f"tick: {type(exc).__name__}: {exc}")
            next_t += self.interval_s
            now = time.monotonic()
            if next_t <= now:  # fell behind (slow driver call): skip, do not burst
                next_t = now + self.interval_s

    def sample_now(self) -> None:
        """Take one sample in the caller's thread (e.g. at an epoch end)."""
        if not self._started or self.summary is not None:
            raise RuntimeError("Sampler.sample_now() outside start()/stop()")
        self._tick()

    def _tick(self, force_proc: bool = False) -> None:
        with self._lock:
            if self._sink is None or self._cpu is None:
                return
            now = time.monotonic()
            base = {"time": datetime.now(UTC).isoformat(timespec="milliseconds"),
                    "elapsed_s": round(now - self._t0, 3)}
            cpu = self._cpu.sample()
            rows = [{**base, "kind": "cpu", "cpu_util_pct": cpu.cpu_util_pct, "rss_mib": cpu.rss_mib}]
            pids: set[int] | None = None
            if self._tracks and (force_proc or now - self._last_proc >= self.process_interval_s):
                self._last_proc = now
                pids = {self._pid, *descendants(self._pid)}
            rows += [self._gpu_row(t, base, pids) for t in self._tracks]
            self._n += 1
            try:
                self._sink.write(rows)
            except (OSError, ValueError) as exc:
                self._error(f"writing {self.out_csv.name}: {exc}")

    def _gpu_row(self, t: _GpuTrack, base: dict[str, Any], pids: set[int] | None) -> dict[str, Any]:
        assert self._nvml is not None
        nv = self._nvml
        row: dict[str, Any] = {**base, "kind": "gpu", "gpu": t.gpu.index, "uuid": t.gpu.device.uuid}
        mem = self._query(t, "memory", nv.memory)
        if mem is not None:
            row["mem_used_mib"], row["mem_total_mib"] = mem
            t.mem_total_mib = mem[1]
        util = self._query(t, "utilization", nv.utilization)
        if util is not None:
            row["util_gpu_pct"], row["util_mem_pct"] = util
        row["power_w"] = self._query(t, "power", nv.power_w)
        row["sm_clock_mhz"] = self._query(t, "sm_clock", nv.sm_clock_mhz)
        row["temp_c"] = self._query(t, "temperature", nv.temperature_c)
        if pids is not None:
            found = self._query(t, "process_memory", nv.process_memory, pids)
            if found is not None:
                row["proc_mem_mib"] = found.mib
                t.foreign_pids.update(p for p in found.listed if p not in pids)
        for key in _GPU_STATS:
            t.stats[key].add(row.get(key))
        return row

    def _query(self, t: _GpuTrack, name: str, fn: Any, *args: Any) -> Any:
        """One NVML query: NotSupported is remembered (never asked again), other errors counted."""
        if name in t.unsupported:
            return None
        assert self._nvml is not None
        try:
            return fn(t.gpu.device.handle, *args)
        except self._nvml.not_supported:
            t.unsupported.add(name)
        except Exception as exc:
            self._error(f"{name} on GPU {t.gpu.index}: {describe_error(exc)}")
        return None

    def _error(self, note: str) -> None:
        self._errors += 1
        if len(self._notes) < _MAX_ERROR_NOTES and note not in self._notes:
            self._notes.append(note)

    # ---- summary ----------------------------------------------------------------------------

    def _summary(self) -> dict[str, Any]:
        """The result.json ``telemetry`` block (see docs/design.md)."""
        assert self._cpu is not None
        indices = [t.gpu.index for t in self._tracks] if self.devices is None else self.devices
        return {
            "nvml": self._nvml is not None,
            "reason": self._reason,
            "interval_s": self.interval_s,
            "process_interval_s": self.process_interval_s,
            "n_samples": self._n,
            "duration_s": round(time.monotonic() - self._t0, 3),
            "errors": self._errors,
            "error_notes": list(self._notes),
            "mapping": [t.gpu.mapping() for t in self._tracks],
            "mapping_problems": list(self._problems),
            "gpus": [asdict(GpuSummary.of(t)) for t in self._tracks],
            **self._per_process(),
            "cpu": self._cpu.summary(),
            "torch": _torch_block(indices),
            "csv": self.out_csv.name,
        }

    def _per_process(self) -> dict[str, str]:
        """``per_process`` (``ok``, ``unavailable: PID namespace``, ...) and its one-line
        ``per_process_detail``: why the ``proc_mem_*`` figures are there or empty (issue 25 #10)."""
        if self._nvml is None or not self._tracks:
            return {"per_process": "not sampled", "per_process_detail": self._reason or "no GPU sampled"}
        nv = self._nvml
        status, detail = per_process_status(
            matched=any(t.stats["proc_mem_mib"].n for t in self._tracks),
            unsupported=all("process_memory" in t.unsupported for t in self._tracks),
            foreign=set().union(*(t.foreign_pids for t in self._tracks)), notes=nv.process_notes,
            query=nv.process_query, ns_note=pid_namespace_note(), pid=self._pid)
        return {"per_process": status, "per_process_detail": detail}


def _torch_block(devices: list[int]) -> list[dict[str, Any]]:
    """torch's own peaks, only where this process already uses CUDA (never creates a context)."""
    torch = sys.modules.get("torch")
    try:
        if torch is None or not torch.cuda.is_initialized():
            return []
    except Exception:
        return []
    return torch_memory(devices)


def torch_memory(devices: list[int]) -> list[dict[str, Any]]:
    """Per CUDA device: torch's ``max_memory_allocated`` / ``max_memory_reserved``; [] without CUDA.

    These are *not* the figure NVML (and the paper's nvidia-smi screenshots) report:

    * NVML ``used`` / per-process memory: everything on the device -- the CUDA context
      (~300-500 MiB with cuDNN/cuBLAS loaded), cuDNN/cuBLAS workspaces, the caching
      allocator's reserved-but-free blocks, and (device-wide) other processes;
    * torch ``max_allocated``: peak bytes of live tensors only;
    * torch ``max_reserved``: peak size of the caching allocator's pool (allocated + cached).

    So allocated <= reserved < NVML process memory <= NVML device used. The 2020 table's
    GB columns correspond to NVML's per-process figure (``proc_mem_peak_gb``).
    ``*_gb`` = MiB / 1000, the paper's convention.
    """
    try:
        import torch

        if not devices or not torch.cuda.is_available():
            return []
        return [{"device": d,
                 "max_allocated_gb": _gb(torch.cuda.max_memory_allocated(d) / MIB),
                 "max_reserved_gb": _gb(torch.cuda.max_memory_reserved(d) / MIB)} for d in devices]
    except Exception:  # telemetry never fails a run
        return []
