"""Thin adapter over NVML (the ``pynvml`` module of the ``nvidia-ml-py`` distribution).

Why an adapter: NVML is initialised once and device handles are made once per sampler, the
module is injectable (tests pass ``tests/fake_nvml.FakeNvml``), and the GPUs this process
sees are mapped to NVML devices by *identity*. NVML ignores ``CUDA_VISIBLE_DEVICES`` and
numbers devices in PCI order; CUDA renumbers the visible ones from 0, and the variable may
hold indices (what SLURM hands out), ``GPU-<uuid>`` (or a unique prefix of one) or MIG ids.
Resolution order (:meth:`Nvml.map_visible`):

1. ``visible`` given (one entry per CUDA device, e.g. from :func:`torch_visible`): match the
   UUID, else the PCI bus id. An entry with neither id falls back to step 2 at its position.
2. else ``CUDA_VISIBLE_DEVICES``: UUIDs (prefixes allowed, as CUDA does), ``MIG-`` ids, or
   indices (NVML order; equal to CUDA's when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or the node's
   GPUs are all alike). Like CUDA, parsing stops at the first entry that matches nothing.
3. else (variable unset) all NVML devices in NVML order.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024

# Why NVML could not be used, by pynvml exception class: the summary's one-line ``reason``.
_REASONS = {
    "NVMLError_LibraryNotFound": "NVML library not found (no NVIDIA driver)",
    "NVMLError_DriverNotLoaded": "NVIDIA driver not loaded",
    "NVMLError_NoPermission": "no permission to use NVML",
    "NVMLError_LibRmVersionMismatch": "NVML library and kernel driver versions differ (reboot pending?)",
}


# The per-process queries, newest first (pynvml 13's plain name is the _v3 one); and the exception class
# names that mean "this driver lacks that entry point" (pynvml's wrapper turns FunctionNotFound into the
# second), by name so a test's fake module raises what the real one does.
PROCESS_QUERIES = ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetComputeRunningProcesses_v2",
                   "nvmlDeviceGetComputeRunningProcesses")
_MISSING_FUNCTION = frozenset({"NVMLError_FunctionNotFound", "NVMLLibraryMismatchError"})


class NvmlUnavailable(RuntimeError):
    """NVML cannot be used here; the message is the one-line reason for the summary."""


def describe_error(exc: BaseException) -> str:
    """``'<what it means>: <exception class>'``, e.g. the no-driver case on a CPU node."""
    name = type(exc).__name__
    return f"{_REASONS.get(name, str(exc) or 'NVML error')}: {name}"


def load_module(nvml: Any = None) -> Any:
    """The injected module, else ``import pynvml`` (from nvidia-ml-py)."""
    if nvml is not None:
        return nvml
    try:
        import pynvml
    except ImportError as exc:  # the dependency is declared; this is a broken install
        raise NvmlUnavailable(f"nvidia-ml-py is not installed: {type(exc).__name__}") from exc
    return pynvml


def _text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def norm_uuid(value: Any) -> str:
    """Lower-case hex UUID without the ``GPU-``/``MIG-`` prefix (torch prints none)."""
    text = _text(value).strip().lower()
    for prefix in ("gpu-", "mig-"):
        if text.startswith(prefix):
            return text[len(prefix) :]
    return text


_PCI = re.compile(r"^(?:([0-9a-f]+):)?([0-9a-f]+):([0-9a-f]+)(?:\.[0-9a-f]+)?$")


def norm_pci(value: Any) -> tuple[int, int, int] | None:
    """``(domain, bus, device)`` from ``'00000000:18:00.0'``, ``'0000:18:00.0'`` or ``'18:00.0'``."""
    if value is None:
        return None
    m = _PCI.match(_text(value).strip().lower())
    if not m:
        return None
    return int(m.group(1) or "0", 16), int(m.group(2), 16), int(m.group(3), 16)


def _entry_get(entry: Any, key: str) -> Any:
    return entry.get(key) if isinstance(entry, dict) else getattr(entry, key, None)


def _entry_pci(entry: Any) -> tuple[int, int, int] | None:
    """PCI key of a ``visible`` entry: a bus-id string, or torch's integer fields."""
    bus = _entry_get(entry, "pci_bus_id")
    if isinstance(bus, int):  # torch: pci_bus_id/pci_device_id/pci_domain_id are integers
        return int(_entry_get(entry, "pci_domain_id") or 0), bus, int(_entry_get(entry, "pci_device_id") or 0)
    return norm_pci(bus)


@dataclass(frozen=True)
class NvmlDevice:
    """Static facts about one NVML device, read once."""

    nvml_index: int | None  # None for a MIG instance reached by UUID
    uuid: str
    name: str
    pci_bus_id: str
    handle: Any = field(compare=False, repr=False)


@dataclass(frozen=True)
class MappedGpu:
    """A GPU as this process numbers it (``index``), tied to its NVML device."""

    index: int
    device: NvmlDevice
    matched_by: str

    def mapping(self) -> dict[str, Any]:
        d = self.device
        return {"index": self.index, "nvml_index": d.nvml_index, "uuid": d.uuid,
                "pci_bus_id": d.pci_bus_id, "matched_by": self.matched_by}


def torch_visible(devices: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """``visible`` entries from torch (uuid + PCI ids per CUDA ordinal); [] without CUDA.

    torch 2.14's ``get_device_properties(i)`` has ``uuid`` (str() prints the bare hex form,
    a MIG instance's own UUID under MIG) and integer ``pci_domain_id/pci_bus_id/pci_device_id``.
    """
    try:
        import torch

        if not torch.cuda.is_available():
            return []
        ordinals = list(range(torch.cuda.device_count())) if devices is None else list(devices)
        out = []
        for i in ordinals:
            p = torch.cuda.get_device_properties(i)
            out.append({"index": i, "uuid": str(p.uuid), "name": p.name, "pci_bus_id": _torch_pci(p)})
        return out
    except Exception:  # telemetry must never stop training; the sampler falls back to the env
        return []


def _torch_pci(props: Any) -> str | None:
    """The bus id from torch's device properties; None where torch lacks them (2.7.1 has no ``pci_*``)."""
    ids = [getattr(props, k, None) for k in ("pci_domain_id", "pci_bus_id", "pci_device_id")]
    if not all(isinstance(v, int) for v in ids):
        return None  # matched on the UUID alone
    return f"{ids[0]:08x}:{ids[1]:02x}:{ids[2]:02x}.0"


class Nvml:
    """One initialised NVML session: devices enumerated and handles made once, then queries."""

    def __init__(self, module: Any) -> None:
        self.m = module
        self.not_supported: type[BaseException] = module.NVMLError_NotSupported
        self.error: type[BaseException] = module.NVMLError
        self.devices: list[NvmlDevice] = []  # the ones this process may open, in NVML order
        self.count = 0  # devices on the node, openable or not
        self.denied: list[str] = []  # one note per device NVML lists but will not open (another job's GPU)
        self._mem_v2: int | None = getattr(module, "nvmlMemory_v2", None)
        # per-process queries still to try (see running_processes); the one that answered; the missing ones
        self._proc_queries = [n for n in PROCESS_QUERIES if callable(getattr(module, n, None))]
        self.process_query: str | None = None
        self.process_notes: list[str] = []
        self._open = False

    @classmethod
    def open(cls, nvml: Any = None) -> Nvml:
        """``nvmlInit`` + enumerate; raises :class:`NvmlUnavailable` with the reason."""
        module = load_module(nvml)
        session = cls(module)
        try:
            module.nvmlInit()
        except Exception as exc:
            raise NvmlUnavailable(describe_error(exc)) from exc
        session._open = True
        try:
            session.count = module.nvmlDeviceGetCount()
        except Exception as exc:
            session.close()
            raise NvmlUnavailable(describe_error(exc)) from exc
        for i in range(session.count):
            # One by one: NVML lists every GPU of the node, but SLURM's cgroup lets this job open only its
            # own (NO_PERMISSION for the others); one closed device must not turn off telemetry for all.
            try:
                session.devices.append(session._describe(module.nvmlDeviceGetHandleByIndex(i), i))
            except Exception as exc:
                session.denied.append(f"NVML device {i}: {describe_error(exc)}")
        if not session.devices:
            session.close()
            why = f" ({'; '.join(session.denied)})" if session.denied else ""
            raise NvmlUnavailable(f"NVML works but reports no GPUs this process may open on this node{why}")
        return session

    def close(self) -> None:
        """``nvmlShutdown`` once; safe to call twice."""
        if self._open:
            self._open = False
            try:
                self.m.nvmlShutdown()
            except Exception:
                pass

    def _static(self, fn: str, handle: Any, default: Any) -> Any:
        try:
            return getattr(self.m, fn)(handle)
        except Exception:  # MIG handles lack some queries; a name is not worth failing over
            return default

    def _describe(self, handle: Any, index: int | None) -> NvmlDevice:
        pci = self._static("nvmlDeviceGetPciInfo", handle, None)
        return NvmlDevice(
            nvml_index=index,
            uuid=_text(self.m.nvmlDeviceGetUUID(handle)),
            name=_text(self._static("nvmlDeviceGetName", handle, "")),
            pci_bus_id=_text(getattr(pci, "busId", "")) if pci is not None else "",
            handle=handle,
        )

    def total_mib(self, device: NvmlDevice) -> float | None:
        """Total memory, or None where even that is not available."""
        try:
            return self.memory(device.handle)[1]
        except Exception:
            return None

    def driver_version(self) -> str | None:
        try:
            return _text(self.m.nvmlSystemGetDriverVersion())
        except Exception:
            return None

    # ---- mapping -------------------------------------------------------------------------

    def _by_uuid(self, uuid: Any, prefix_ok: bool = False) -> NvmlDevice | None:
        key = norm_uuid(uuid)
        if not key:
            return None
        exact = [d for d in self.devices if norm_uuid(d.uuid) == key]
        if exact:
            return exact[0]
        if prefix_ok:
            hits = [d for d in self.devices if norm_uuid(d.uuid).startswith(key)]
            if len(hits) == 1:
                return hits[0]
        return self._mig(uuid)

    def _mig(self, uuid: Any) -> NvmlDevice | None:
        """A device not in the index enumeration (a MIG instance, or a GPU that could not be opened by
        index): ask NVML for it by its UUID."""
        text = _text(uuid).strip()
        for candidate in (text, "MIG-" + norm_uuid(text), "GPU-" + norm_uuid(text)):
            if "/" in candidate:  # legacy MIG-GPU-<uuid>/gi/ci: resolved by the caller
                continue
            try:
                return self._describe(self.m.nvmlDeviceGetHandleByUUID(candidate), None)
            except Exception:
                continue
        return None

    def _by_pci(self, key: tuple[int, int, int] | None) -> NvmlDevice | None:
        if key is None:
            return None
        hits = [d for d in self.devices if norm_pci(d.pci_bus_id) == key]
        return hits[0] if hits else None

    def map_visible(self, visible: Sequence[Any] | None = None, env: Mapping[str, str] | None = None,
                    ) -> tuple[list[MappedGpu], list[str]]:
        """Map this process's GPUs to NVML devices; returns (mapped, problems).

        ``env`` (default ``os.environ``) supplies ``CUDA_VISIBLE_DEVICES``. ``problems`` lists
        the entries that matched nothing (reported in the summary, never guessed by position).
        """
        env = os.environ if env is None else env
        from_env = self._map_env(env.get("CUDA_VISIBLE_DEVICES"))
        if visible is None:
            return from_env, []
        mapped: list[MappedGpu] = []
        problems: list[str] = []
        for pos, entry in enumerate(visible):
            index = _entry_get(entry, "index")
            index = pos if index is None else int(index)
            uuid, pci = _entry_get(entry, "uuid"), _entry_pci(entry)
            dev = self._by_uuid(uuid) if uuid else None
            if dev is not None:
                mapped.append(MappedGpu(index, dev, "uuid"))
                continue
            dev = self._by_pci(pci)
            if dev is not None:
                mapped.append(MappedGpu(index, dev, "pci_bus_id"))
                continue
            if uuid or pci:
                problems.append(f"visible GPU {index} (uuid={uuid}, pci={pci}) matches no NVML device")
            elif pos < len(from_env):
                mapped.append(MappedGpu(index, from_env[pos].device, from_env[pos].matched_by))
            else:
                problems.append(f"visible GPU {index} has no uuid/pci_bus_id and no CUDA_VISIBLE_DEVICES "
                                "entry")
        return mapped, problems

    def _map_env(self, cvd: str | None) -> list[MappedGpu]:
        if cvd is None:
            how = "nvml order (CUDA_VISIBLE_DEVICES unset)"
            return [MappedGpu(i, d, how) for i, d in enumerate(self.devices)]
        mapped: list[MappedGpu] = []
        for token in (t.strip() for t in cvd.split(",")):
            dev, how = self._env_token(token)
            if dev is None:
                break  # CUDA ignores this entry and all after it
            mapped.append(MappedGpu(len(mapped), dev, how))
        return mapped

    def _env_token(self, token: str) -> tuple[NvmlDevice | None, str]:
        low = token.lower()
        if re.fullmatch(r"\d+", token):
            hits = [d for d in self.devices if d.nvml_index == int(token)]
            return (hits[0] if hits else None), "CUDA_VISIBLE_DEVICES index"
        if low.startswith("mig-gpu-"):  # legacy MIG-GPU-<uuid>/<gi>/<ci>: the parent GPU
            parent = self._by_uuid(token[4:].split("/")[0], prefix_ok=True)
            return parent, "CUDA_VISIBLE_DEVICES MIG parent uuid"
        if low.startswith("mig-"):
            return self._mig(token), "CUDA_VISIBLE_DEVICES MIG uuid"
        if low.startswith("gpu-"):
            return self._by_uuid(token, prefix_ok=True), "CUDA_VISIBLE_DEVICES uuid"
        return None, ""

    # ---- per-tick queries (each may raise the module's NVMLError subclasses) ---------------

    def memory(self, handle: Any) -> tuple[float, float]:
        """(used MiB, total MiB): whole-device used memory, as nvidia-smi shows it.

        The v2 query leaves out memory the driver reserves for itself (hundreds of MiB on
        recent GPUs), as nvidia-smi does since R510; drivers without it get the v1 query.
        """
        if self._mem_v2 is not None:
            try:
                m = self.m.nvmlDeviceGetMemoryInfo(handle, version=self._mem_v2)
                return m.used / MIB, m.total / MIB
            except self.not_supported:
                raise
            except self.error:
                self._mem_v2 = None  # FunctionNotFound / ArgumentVersionMismatch: old driver
        m = self.m.nvmlDeviceGetMemoryInfo(handle)
        return m.used / MIB, m.total / MIB

    def utilization(self, handle: Any) -> tuple[float, float]:
        """(GPU %, memory-controller %) over the driver's last sample period."""
        u = self.m.nvmlDeviceGetUtilizationRates(handle)
        return float(u.gpu), float(u.memory)

    def power_w(self, handle: Any) -> float:
        return self.m.nvmlDeviceGetPowerUsage(handle) / 1000.0  # NVML reports milliwatts

    def sm_clock_mhz(self, handle: Any) -> float:
        return float(self.m.nvmlDeviceGetClockInfo(handle, self.m.NVML_CLOCK_SM))

    def temperature_c(self, handle: Any) -> float:
        return float(self.m.nvmlDeviceGetTemperature(handle, self.m.NVML_TEMPERATURE_GPU))

    def running_processes(self, handle: Any) -> list[Any]:
        """NVML's compute processes on this device, through the newest query this driver has.

        pynvml 13 maps the plain name to ``_v3``, which drivers before R510 lack (FunctionNotFound,
        re-raised by pynvml's wrapper as NVMLLibraryMismatchError): ``_v2`` is tried next, once; the
        choice is kept for the session (every device shares the driver). With none left this raises
        the module's NotSupported, so the sampler stops asking; :attr:`process_notes` says why.
        """
        while self._proc_queries:
            name = self._proc_queries[0]
            try:
                procs = getattr(self.m, name)(handle)
            except self.not_supported:
                raise
            except Exception as exc:
                if type(exc).__name__ not in _MISSING_FUNCTION:
                    raise
                self.process_notes.append(f"{name}: {type(exc).__name__}")
                self._proc_queries.pop(0)
                continue
            self.process_query = name
            return list(procs)
        raise self.not_supported()

    def process_memory(self, handle: Any, pids: set[int]) -> ProcessMemory:
        """MiB used on this device by ``pids`` (None when none of them is listed) and every pid listed.

        Costly (it takes a driver lock), hence sampled rarely. In a container with its own PID
        namespace NVML reports host PIDs: nothing matches, and ``listed`` shows the foreign ones.
        """
        running = self.running_processes(handle)
        found = [p.usedGpuMemory for p in running if p.pid in pids]
        known = [b for b in found if b is not None]
        return ProcessMemory(sum(known) / MIB if known else None, tuple(int(p.pid) for p in running))

    def process_memory_mib(self, handle: Any, pids: set[int]) -> float | None:
        """:meth:`process_memory`'s MiB alone."""
        return self.process_memory(handle, pids).mib


@dataclass(frozen=True)
class ProcessMemory:
    """One per-process query of one device: our pids' MiB (None: not listed) and every pid NVML listed."""

    mib: float | None
    listed: tuple[int, ...]


def pid_namespace_note(status_path: str = "/proc/self/status") -> str | None:
    """A one-line note when this process runs in a nested PID namespace (``NSpid`` lists >1 pid), else None.

    NVML reports the driver's (host) PIDs, so a nested namespace's per-process figures stay empty.
    Docker mounts its own /proc, where ``NSpid`` shows one entry: the sampler then also tells a PID
    namespace by NVML listing processes on our GPU but never ours (:func:`per_process_status`).
    """
    try:
        with open(status_path, encoding="utf-8") as fh:
            line = next((ln for ln in fh if ln.startswith("NSpid:")), "")
    except OSError:
        return None
    pids = line.split()[1:]
    if len(pids) > 1:
        return f"NSpid {' '.join(pids)}: this process runs in a nested PID namespace"
    return None


def per_process_status(matched: bool, unsupported: bool, foreign: set[int], notes: Sequence[str],
                       query: str | None, ns_note: str | None, pid: int) -> tuple[str, str]:
    """(status, detail) of the per-process memory column: ``ok``, ``unavailable: PID namespace``, ...

    ``matched``: some query listed one of our pids; ``unsupported``: no query works on this driver;
    ``foreign``: pids NVML listed that were not ours; ``notes``: the queries that were missing.
    """
    tried = f" (after {'; '.join(notes)})" if notes else ""
    if matched:
        return "ok", f"{query}{tried}"
    if unsupported:
        why = "; ".join(notes) or "NotSupported"
        what = "no per-process query in this driver" if notes else "not supported by this device"
        return f"unavailable: {what}", f"{why}; proc_mem_mib stays empty"
    if ns_note or foreign:
        seen = (f"NVML listed pid(s) {', '.join(map(str, sorted(foreign)[:8]))} but not this process "
                f"(pid {pid})") if foreign else f"this process (pid {pid}) was never listed"
        return "unavailable: PID namespace", "; ".join(filter(None, [seen, ns_note])) + (
            "; NVML reports host pids: run with the host's PID namespace (e.g. docker --pid=host)")
    return "empty", f"NVML listed no process on the sampled GPU(s) via {query}{tried}"
