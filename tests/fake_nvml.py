"""A scripted stand-in for the ``pynvml`` calls aslhpc.telemetry makes; never the real driver.

Each test builds its own :class:`FakeNvml` (no module-level state leaks between tests) and
passes it as ``nvml=``. Exception classes and constants are the real pynvml ones, so the code
under test catches exactly what it would catch on a GPU node. Return types follow pynvml
13.x: str for UUID/name/driver (``convertStrBytes``), bytes for ``nvmlPciInfo_t.busId``,
bytes in memory structs, milliwatts for power, objects with ``pid``/``usedGpuMemory``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pynvml

MIB = 1024 * 1024


@dataclass
class FakeGpu:
    """One device. Sequences are scripted per call: call i returns item min(i, len-1)."""

    uuid: str
    pci_bus_id: str = "00000000:18:00.0"
    name: str = "Tesla V100-SXM2-32GB"
    total_mib: int = 32480
    used_mib: Sequence[float] = (11,)
    util_gpu: Sequence[int] = (0,)
    util_mem: Sequence[int] = (0,)
    power_mw: Sequence[int] = (45000,)
    sm_clock_mhz: Sequence[int] = (1290,)
    temp_c: Sequence[int] = (37,)
    processes: Sequence[tuple[int, float]] = ()  # (pid, MiB)
    not_supported: set[str] = field(default_factory=set)  # pynvml function names
    failing: set[str] = field(default_factory=set)  # raise NVMLError_Unknown
    mig: bool = False  # reachable by UUID only (a MIG instance), not by index
    denied: bool = False  # another job's GPU: SLURM's cgroup makes every handle call fail with NO_PERMISSION


@dataclass(frozen=True)
class FakeHandle:
    key: int


class FakeNvml:
    """The subset of the pynvml module used by aslhpc.telemetry, over scripted devices."""

    NVMLError = pynvml.NVMLError
    NVMLError_NotSupported = pynvml.NVMLError_NotSupported
    NVML_CLOCK_SM = pynvml.NVML_CLOCK_SM
    NVML_TEMPERATURE_GPU = pynvml.NVML_TEMPERATURE_GPU
    nvmlMemory_v2 = pynvml.nvmlMemory_v2

    def __init__(self, gpus: Sequence[FakeGpu], driver: str = "550.54.15",
                 init_error: type[BaseException] | None = None, memory_v2: bool = True,
                 process_queries: Sequence[int] = (2, 3), host_pid_offset: int = 0) -> None:
        """``process_queries``: the versions of ``nvmlDeviceGetComputeRunningProcesses`` this "driver" has
        (a pre-R510 one: ``(2,)``); ``host_pid_offset``: a PID namespace, where NVML lists every pid
        shifted by this much (the host's numbers), so no pid of this process matches."""
        self.gpus = list(gpus)
        self.process_queries = set(process_queries)
        self.host_pid_offset = host_pid_offset
        self.driver = driver
        self.init_error = init_error
        self.memory_v2 = memory_v2
        self.memory_versions: Counter[int | None] = Counter()
        self.calls: Counter[str] = Counter()
        self.per_gpu: Counter[tuple[str, int]] = Counter()
        self.initialised = 0

    # ---- plumbing -------------------------------------------------------------------------

    def _enter(self, fn: str, handle: FakeHandle | None = None) -> FakeGpu | None:
        self.calls[fn] += 1
        if self.initialised <= 0:
            raise pynvml.NVMLError_Uninitialized()
        if handle is None:
            return None
        gpu = self.gpus[handle.key]
        self.per_gpu[(fn, handle.key)] += 1
        if fn in gpu.not_supported:
            raise pynvml.NVMLError_NotSupported()
        if fn in gpu.failing:
            raise pynvml.NVMLError_Unknown()
        return gpu

    def _next(self, fn: str, handle: FakeHandle, values: Sequence[Any]) -> Any:
        i = self.per_gpu[(fn, handle.key)] - 1
        return values[min(i, len(values) - 1)]

    def _indexed(self) -> list[int]:
        return [i for i, g in enumerate(self.gpus) if not g.mig]

    # ---- pynvml API -----------------------------------------------------------------------

    def nvmlInit(self) -> None:
        self.calls["nvmlInit"] += 1
        if self.init_error is not None:
            raise self.init_error()
        self.initialised += 1

    def nvmlShutdown(self) -> None:
        self._enter("nvmlShutdown")
        self.initialised -= 1

    def nvmlSystemGetDriverVersion(self) -> str:
        self._enter("nvmlSystemGetDriverVersion")
        return self.driver

    def nvmlDeviceGetCount(self) -> int:
        self._enter("nvmlDeviceGetCount")
        return len(self._indexed())

    def nvmlDeviceGetHandleByIndex(self, index: int) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByIndex")
        try:
            key = self._indexed()[index]
        except IndexError:
            raise pynvml.NVMLError_InvalidArgument() from None
        if self.gpus[key].denied:
            raise pynvml.NVMLError_NoPermission()
        return FakeHandle(key)

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> FakeHandle:
        self._enter("nvmlDeviceGetHandleByUUID")
        for i, g in enumerate(self.gpus):
            if g.uuid == uuid:
                if g.denied:
                    raise pynvml.NVMLError_NoPermission()
                return FakeHandle(i)
        raise pynvml.NVMLError_NotFound()

    def nvmlDeviceGetUUID(self, handle: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetUUID", handle).uuid  # type: ignore[union-attr]

    def nvmlDeviceGetName(self, handle: FakeHandle) -> str:
        return self._enter("nvmlDeviceGetName", handle).name  # type: ignore[union-attr]

    def nvmlDeviceGetPciInfo(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetPciInfo", handle)
        assert gpu is not None
        return SimpleNamespace(busId=gpu.pci_bus_id.encode(), busIdLegacy=gpu.pci_bus_id[4:].encode())

    def nvmlDeviceGetMemoryInfo(self, handle: FakeHandle, version: int | None = None) -> SimpleNamespace:
        if version is not None and not self.memory_v2:  # an old driver lacks the _v2 entry point
            self.calls["nvmlDeviceGetMemoryInfo"] += 1
            raise pynvml.NVMLError_FunctionNotFound()
        gpu = self._enter("nvmlDeviceGetMemoryInfo", handle)
        assert gpu is not None
        self.memory_versions[version] += 1
        used = self._next("nvmlDeviceGetMemoryInfo", handle, gpu.used_mib) * MIB
        total = gpu.total_mib * MIB
        if version is None:
            return SimpleNamespace(total=total, used=used, free=total - used)
        return SimpleNamespace(version=version, total=total, reserved=0, used=used, free=total - used)

    def nvmlDeviceGetUtilizationRates(self, handle: FakeHandle) -> SimpleNamespace:
        gpu = self._enter("nvmlDeviceGetUtilizationRates", handle)
        assert gpu is not None
        fn = "nvmlDeviceGetUtilizationRates"
        return SimpleNamespace(gpu=self._next(fn, handle, gpu.util_gpu),
                               memory=self._next(fn, handle, gpu.util_mem))

    def nvmlDeviceGetPowerUsage(self, handle: FakeHandle) -> int:
        gpu = self._enter("nvmlDeviceGetPowerUsage", handle)
        assert gpu is not None
        return self._next("nvmlDeviceGetPowerUsage", handle, gpu.power_mw)

    def nvmlDeviceGetClockInfo(self, handle: FakeHandle, clock_type: int) -> int:
        gpu = self._enter("nvmlDeviceGetClockInfo", handle)
        assert gpu is not None and clock_type == pynvml.NVML_CLOCK_SM
        return self._next("nvmlDeviceGetClockInfo", handle, gpu.sm_clock_mhz)

    def nvmlDeviceGetTemperature(self, handle: FakeHandle, sensor: int) -> int:
        gpu = self._enter("nvmlDeviceGetTemperature", handle)
        assert gpu is not None and sensor == pynvml.NVML_TEMPERATURE_GPU
        return self._next("nvmlDeviceGetTemperature", handle, gpu.temp_c)

    def _processes(self, handle: FakeHandle, version: int) -> list[SimpleNamespace]:
        self.calls[f"nvmlDeviceGetComputeRunningProcesses_v{version}"] += 1
        if version not in self.process_queries:  # the driver lacks this entry point
            if self.initialised <= 0:
                raise pynvml.NVMLError_Uninitialized()
            raise pynvml.NVMLError_FunctionNotFound()
        gpu = self._enter("nvmlDeviceGetComputeRunningProcesses", handle)
        assert gpu is not None
        return [SimpleNamespace(pid=pid + self.host_pid_offset, usedGpuMemory=int(mib * MIB), gpuInstanceId=0,
                                computeInstanceId=0) for pid, mib in gpu.processes]

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes(handle, 3)

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: FakeHandle) -> list[SimpleNamespace]:
        return self._processes(handle, 2)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: FakeHandle) -> list[SimpleNamespace]:
        """pynvml 13: the plain name is ``_v3`` behind a wrapper that turns FunctionNotFound into this."""
        try:
            return self._processes(handle, 3)
        except pynvml.NVMLError_FunctionNotFound:
            raise pynvml.NVMLLibraryMismatchError("Unversioned function called ...") from None

def uuid(n: int) -> str:
    """A distinct, well-formed GPU UUID per n."""
    return f"GPU-{n:08x}-1111-2222-3333-{n:012x}"


def four_v100s(**overrides: Any) -> list[FakeGpu]:
    """The paper's node: 4 V100-SXM2 at the bus ids of its nvidia-smi screenshots."""
    buses = ("18", "3B", "86", "AF")
    return [FakeGpu(uuid=uuid(i + 1), pci_bus_id=f"00000000:{b}:00.0", **overrides)
            for i, b in enumerate(buses)]
