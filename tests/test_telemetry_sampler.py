"""The NVML sampler against a scripted fake NVML (never the real driver), plus the no-NVML path."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pynvml
import pytest
import torch
from fake_nvml import FakeGpu, FakeNvml, four_v100s, uuid

from aslhpc.telemetry import CPU_RUN_REASON, CSV_COLUMNS, Sampler, torch_memory
from aslhpc.telemetry.nvml import Nvml, norm_pci

HOUR = 3600.0  # an interval that never fires: ticks come from start/sample_now/stop only


@pytest.fixture(autouse=True)
def _no_cvd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)


def read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path)


def gpu_rows(path: Path) -> pd.DataFrame:
    df = read(path)
    return df[df.kind == "gpu"]


def test_cadence_and_prompt_stop(tmp_path: Path) -> None:
    fake = FakeNvml(four_v100s()[:1])
    s = Sampler(tmp_path / "s.csv", interval_s=0.05, nvml=fake)
    s.start()
    time.sleep(0.5)
    t = time.monotonic()
    summary = s.stop()
    assert time.monotonic() - t < 1.0
    # ~10 ticks + the start and stop samples; generous bounds, this is not a timing test
    assert 5 <= summary["n_samples"] <= 16
    assert len(gpu_rows(tmp_path / "s.csv")) == summary["n_samples"]


def test_stop_does_not_wait_for_the_interval_and_is_idempotent(tmp_path: Path) -> None:
    s = Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s()[:1]))
    s.start()
    t = time.monotonic()
    first = s.stop()
    assert time.monotonic() - t < 1.0 and not s.running
    assert s.stop() is first
    assert first["n_samples"] == 2  # one at start, one at stop: short runs still get a peak


def test_peaks_and_means_from_scripted_values(tmp_path: Path) -> None:
    pid = os.getpid()
    gpus = [
        FakeGpu(uuid(1), used_mib=(1000, 2859, 2000, 1500), util_gpu=(10, 30, 20, 40),
                util_mem=(5, 5, 15, 15),
                power_mw=(60000, 125000, 70000, 45000), sm_clock_mhz=(1290, 1530, 1530, 1290),
                temp_c=(40, 48, 45, 44), processes=((pid, 2848), (pid + 10**6, 500))),
        FakeGpu(uuid(2), pci_bus_id="00000000:3B:00.0", used_mib=(11,)),
    ]
    fake = FakeNvml(gpus)
    s = Sampler(tmp_path / "s.csv", interval_s=HOUR, process_interval_s=0.0, nvml=fake)
    s.start()
    s.sample_now()
    s.sample_now()
    summary = s.stop()
    assert summary["nvml"] is True and summary["reason"] is None and summary["errors"] == 0
    assert summary["n_samples"] == 4
    g0, g1 = summary["gpus"]
    assert g0["index"] == 0 and g0["uuid"] == uuid(1) and g0["name"] == "Tesla V100-SXM2-32GB"
    assert g0["pci_bus_id"] == "00000000:18:00.0"
    assert g0["mem_total_gb"] == 32.48  # 32480 MiB / 1000, the paper's convention
    assert g0["mem_peak_gb"] == 2.859
    assert g0["mem_mean_gb"] == pytest.approx((1000 + 2859 + 2000 + 1500) / 4 / 1000, abs=1e-3)
    assert g0["util_mean_pct"] == 25.0 and g0["mem_util_mean_pct"] == 10.0
    assert g0["power_peak_w"] == 125.0
    assert g0["sm_clock_mean_mhz"] == 1410.0
    assert g0["temp_peak_c"] == 48.0
    assert g0["proc_mem_peak_gb"] == 2.848  # only this process's entry, not the other pid's
    assert g1["mem_peak_gb"] == g1["mem_mean_gb"] == 0.011 and g1["proc_mem_peak_gb"] is None
    rows = gpu_rows(tmp_path / "s.csv")
    assert rows[rows.gpu == 0].mem_used_mib.tolist() == [1000, 2859, 2000, 1500]
    assert rows[rows.gpu == 0].power_w.tolist() == [60.0, 125.0, 70.0, 45.0]
    assert summary["cpu"]["n_cpus"] >= 1 and summary["cpu"]["rss_peak_gb"] > 0


@pytest.mark.parametrize("v2", [True, False])
def test_memory_query_prefers_v2_and_falls_back_on_old_drivers(tmp_path: Path, v2: bool) -> None:
    fake = FakeNvml([FakeGpu(uuid(1), used_mib=(1000, 2000, 3000))], memory_v2=v2)
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=fake) as s:
        s.sample_now()
    assert gpu_rows(tmp_path / "s.csv").mem_used_mib.tolist() == [1000, 2000, 3000]
    assert s.summary["errors"] == 0
    assert set(fake.memory_versions) == ({pynvml.nvmlMemory_v2} if v2 else {None})


def test_process_memory_sampled_only_every_process_interval(tmp_path: Path) -> None:
    fake = FakeNvml(four_v100s(processes=((os.getpid(), 1300),))[:2])
    s = Sampler(tmp_path / "s.csv", interval_s=HOUR, process_interval_s=HOUR, nvml=fake)
    s.start()
    for _ in range(5):
        s.sample_now()
    s.stop()
    # at start and at stop only, per GPU, although 7 ticks read everything else
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses"] == 2 * 2
    assert sum(fake.memory_versions.values()) == 7 * 2
    rows = gpu_rows(tmp_path / "s.csv")
    filled = rows[rows.gpu == 0].proc_mem_mib.notna().tolist()
    assert filled == [True, False, False, False, False, False, True]


def test_process_memory_cadence_on_the_thread(tmp_path: Path) -> None:
    fake = FakeNvml(four_v100s(processes=((os.getpid(), 1300),))[:1])
    with Sampler(tmp_path / "s.csv", interval_s=0.02, process_interval_s=0.2, nvml=fake) as s:
        time.sleep(0.5)
    ticks = s.summary["n_samples"]
    proc = fake.calls["nvmlDeviceGetComputeRunningProcesses"]
    assert ticks >= 8
    assert 2 <= proc <= 0.5 / 0.2 + 3 < ticks


def test_renumbered_cuda_visible_devices_maps_by_physical_index(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    fake = FakeNvml(four_v100s())
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=fake) as s:
        pass
    mapping = s.summary["mapping"]
    assert [(m["index"], m["nvml_index"], m["uuid"]) for m in mapping] == [(0, 2, uuid(3)), (1, 0, uuid(1))]
    rows = gpu_rows(tmp_path / "s.csv")
    assert dict(zip(rows.gpu, rows.uuid, strict=False)) == {0: uuid(3), 1: uuid(1)}
    assert [g["pci_bus_id"] for g in s.summary["gpus"]] == ["00000000:86:00.0", "00000000:18:00.0"]


@pytest.mark.parametrize("cvd", [f"{uuid(4)},{uuid(2)}", "GPU-00000004,GPU-00000002"])  # full and prefix
def test_uuid_cuda_visible_devices(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cvd: str) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", cvd)
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s())) as s:
        pass
    got = [(m["index"], m["nvml_index"], m["matched_by"]) for m in s.summary["mapping"]]
    assert got == [(0, 3, "CUDA_VISIBLE_DEVICES uuid"), (1, 1, "CUDA_VISIBLE_DEVICES uuid")]


def test_cuda_visible_devices_stops_at_first_unknown_entry(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,0")  # like CUDA: 7 does not exist, so 0 is hidden
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s())) as s:
        pass
    assert [m["nvml_index"] for m in s.summary["mapping"]] == [1]


def test_visible_properties_win_over_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1")  # deliberately misleading
    visible = [
        {"uuid": uuid(3)[4:]},  # torch prints the UUID without the GPU- prefix
        {"uuid": "deadbeef-0000-0000-0000-000000000000", "pci_bus_id": 0xAF, "pci_domain_id": 0,
         "pci_device_id": 0},  # unknown UUID: torch-style integer PCI fields decide
    ]
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s()), visible=visible) as s:
        pass
    got = [(m["index"], m["nvml_index"], m["matched_by"]) for m in s.summary["mapping"]]
    assert got == [(0, 2, "uuid"), (1, 3, "pci_bus_id")]


def test_unmatched_visible_device_is_reported_not_guessed(tmp_path: Path) -> None:
    visible = [{"uuid": uuid(2)}, {"uuid": uuid(99)}]
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s()), visible=visible) as s:
        pass
    assert [m["nvml_index"] for m in s.summary["mapping"]] == [1]
    assert "visible GPU 1" in s.summary["mapping_problems"][0]


def test_mig_instance_by_uuid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mig = "MIG-5c1d0000-aaaa-bbbb-cccc-000000000001"
    fake = FakeNvml([*four_v100s()[:1], FakeGpu(mig, used_mib=(700,), mig=True,
                                                 not_supported={"nvmlDeviceGetUtilizationRates"})])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", mig)
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=fake) as s:
        pass
    (g,) = s.summary["gpus"]
    assert g["uuid"] == mig and g["nvml_index"] is None and g["mem_peak_gb"] == 0.7
    assert g["unsupported"] == ["utilization"] and s.summary["errors"] == 0


def test_devices_subset_and_cpu_run(tmp_path: Path) -> None:
    with Sampler(tmp_path / "a.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s()), devices=[1, 3]) as s:
        pass
    assert [g["index"] for g in s.summary["gpus"]] == [1, 3]
    fake = FakeNvml(four_v100s())
    with Sampler(tmp_path / "b.csv", interval_s=HOUR, nvml=fake, devices=[]) as s:
        pass
    assert s.summary["nvml"] is False and s.summary["reason"] == CPU_RUN_REASON
    assert fake.calls["nvmlInit"] == 0 and set(read(tmp_path / "b.csv").kind) == {"cpu"}


def test_one_init_and_handles_made_once(tmp_path: Path) -> None:
    fake = FakeNvml(four_v100s())
    with Sampler(tmp_path / "s.csv", interval_s=0.02, nvml=fake):
        time.sleep(0.15)
    assert fake.calls["nvmlInit"] == 1 and fake.calls["nvmlShutdown"] == 1
    assert fake.calls["nvmlDeviceGetHandleByIndex"] == 4 and fake.calls["nvmlDeviceGetUUID"] == 4
    assert fake.initialised == 0


def test_not_supported_fields_stay_empty_and_are_not_retried(tmp_path: Path) -> None:
    fake = FakeNvml([FakeGpu(uuid(1), not_supported={"nvmlDeviceGetPowerUsage", "nvmlDeviceGetTemperature"})])
    s = Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=fake)
    s.start()
    for _ in range(3):
        s.sample_now()
    summary = s.stop()
    assert fake.calls["nvmlDeviceGetPowerUsage"] == 1 and fake.calls["nvmlDeviceGetTemperature"] == 1
    rows = gpu_rows(tmp_path / "s.csv")
    assert rows.power_w.isna().all() and rows.temp_c.isna().all() and rows.mem_used_mib.notna().all()
    (g,) = summary["gpus"]
    assert g["power_peak_w"] is None and g["temp_peak_c"] is None and g["mem_peak_gb"] == 0.011
    assert g["unsupported"] == ["power", "temperature"] and summary["errors"] == 0


def test_other_errors_are_counted_and_do_not_kill_the_thread(tmp_path: Path) -> None:
    fake = FakeNvml([FakeGpu(uuid(1), failing={"nvmlDeviceGetClockInfo"})])
    s = Sampler(tmp_path / "s.csv", interval_s=0.02, nvml=fake)
    s.start()
    time.sleep(0.2)
    assert s.running
    summary = s.stop()
    assert summary["errors"] == summary["n_samples"] == fake.calls["nvmlDeviceGetClockInfo"] >= 3
    assert summary["error_notes"] == ["sm_clock on GPU 0: Unknown Error: NVMLError_Unknown"]
    assert summary["gpus"][0]["sm_clock_mean_mhz"] is None and summary["gpus"][0]["mem_peak_gb"] == 0.011


def test_clean_stop_when_the_run_raises(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    s = Sampler(path, interval_s=0.02, nvml=FakeNvml(four_v100s()[:2]))
    with pytest.raises(RuntimeError, match="diverged"), s:
        time.sleep(0.1)
        raise RuntimeError("loss diverged")
    assert not s.running and not any(t.name == "aslhpc-telemetry" for t in threading.enumerate())
    assert s.summary is not None and s.summary["n_samples"] >= 2
    text = path.read_text()
    assert text.endswith("\n")
    df = read(path)
    assert list(df.columns) == list(CSV_COLUMNS)
    assert len(df) == s.summary["n_samples"] * (1 + 2)  # one cpu row + one row per GPU per tick


def test_no_nvml_here_with_the_real_pynvml(tmp_path: Path) -> None:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        pass
    else:  # pragma: no cover - only on a machine with an NVIDIA driver
        pynvml.nvmlShutdown()
        pytest.skip("an NVIDIA driver is present")
    w = torch.zeros(8, 2, requires_grad=True)
    with Sampler(tmp_path / "s.csv", interval_s=0.05) as s:  # nvml=None: the real pynvml
        for _ in range(20):  # training goes on (plain SGD: torch.optim costs seconds to import)
            (torch.randn(4, 8) @ w).square().mean().backward()
            with torch.no_grad():
                w -= 0.1 * w.grad
                w.grad = None
            time.sleep(0.005)
    summary = s.summary
    assert summary["nvml"] is False and summary["gpus"] == []
    assert summary["reason"] == "NVML library not found (no NVIDIA driver): NVMLError_LibraryNotFound"
    assert summary["errors"] == 0
    assert summary["cpu"]["util_mean_pct"] is not None and summary["cpu"]["rss_peak_gb"] > 0
    df = read(tmp_path / "s.csv")
    assert set(df.kind) == {"cpu"} and df.rss_mib.notna().all() and df.cpu_util_pct.iloc[1:].notna().all()


def test_csv_readable_by_pandas_while_running(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    with Sampler(path, interval_s=0.02, nvml=FakeNvml(four_v100s(used_mib=(1366,)))) as s:
        time.sleep(0.15)
        live = pd.read_csv(path)
        assert s.running
    assert list(live.columns) == list(CSV_COLUMNS) and len(live) >= 5
    assert set(live.kind) == {"cpu", "gpu"} and (live[live.kind == "gpu"].mem_used_mib == 1366).all()


def test_resumed_run_appends_to_the_same_csv(tmp_path: Path) -> None:
    path = tmp_path / "s.csv"
    for _ in range(2):
        with Sampler(path, interval_s=HOUR, nvml=FakeNvml(four_v100s()[:1])):
            pass
    df = read(path)
    assert len(df) == 2 * 2 * 2 and (df.elapsed_s >= 0).all()
    path.write_text("something,else\n1,2\n")
    with Sampler(path, interval_s=HOUR, nvml=FakeNvml(four_v100s()[:1])):
        pass
    assert len(read(path)) == 4 and len(list(tmp_path.glob("s.*.csv"))) == 1  # foreign file moved aside


def test_bad_interval_is_a_user_error(tmp_path: Path) -> None:
    from aslhpc.errors import ConfigError

    with pytest.raises(ConfigError):
        Sampler(tmp_path / "s.csv", interval_s=0)


def test_torch_memory_is_empty_without_cuda() -> None:
    if torch.cuda.is_available():  # pragma: no cover
        pytest.skip("CUDA present")
    assert torch_memory([0, 1]) == []


def test_pci_bus_id_forms() -> None:
    assert norm_pci("00000000:3B:00.0") == norm_pci("0000:3b:00.0") == norm_pci("3B:00.0") == (0, 0x3B, 0)
    assert norm_pci("garbage") is None


def test_nvml_adapter_reports_no_gpus(tmp_path: Path) -> None:
    from aslhpc.telemetry.nvml import NvmlUnavailable

    with pytest.raises(NvmlUnavailable, match="no GPUs"):
        Nvml.open(FakeNvml([]))


def test_cpu_meter_counts_child_processes_and_catches_the_rss_peak(monkeypatch: pytest.MonkeyPatch) -> None:
    from aslhpc.telemetry import cpu

    monkeypatch.setattr(cpu, "RESCAN_S", 0.0)  # rescan descendants every sample
    meter = cpu.CpuMeter()
    assert meter.sample().cpu_util_pct is None  # nothing to compare with yet
    busy = "import time\nt = time.time()\nwhile time.time() - t < 0.6: pass"
    child = subprocess.Popen([sys.executable, "-c", busy])
    try:
        time.sleep(0.45)  # the parent sleeps: only the child burns CPU
        assert meter.sample().cpu_util_pct > 10
    finally:
        child.wait()
    import mmap

    rss0 = cpu.rss_mib(os.getpid())
    # Fresh pages straight from the kernel (malloc may be told to keep freed memory: hostmem.py),
    # written, so resident; unmapped before the summary.
    blob = mmap.mmap(-1, 150 * 2**20)
    blob.write(b"\x01" * (150 * 2**20))
    blob.close()
    summary = meter.summary()
    assert summary["rss_peak_gb"] * 1000 >= rss0 + 140  # VmHWM saw the spike between samples
    assert summary["n_cpus"] >= 1 and summary["util_mean_pct"] > 0


def test_a_gpu_nvml_may_not_open_leaves_telemetry_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19.5: on a shared 4-GPU node SLURM's cgroup denies the other jobs' GPUs (NO_PERMISSION)."""
    gpus = four_v100s()
    for g in (gpus[0], gpus[1]):
        g.denied = True  # another job holds GPUs 0 and 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=FakeNvml(gpus)) as s:
        pass
    assert s.summary["nvml"] is True and s.summary["reason"] is None
    assert [(m["index"], m["nvml_index"]) for m in s.summary["mapping"]] == [(0, 2), (1, 3)]
    # the same through torch's UUIDs alone (no PCI fields, as on torch 2.7.1)
    visible = [{"index": 0, "uuid": uuid(4)[4:], "pci_bus_id": None}]
    with Sampler(tmp_path / "t.csv", interval_s=HOUR, nvml=FakeNvml(gpus), visible=visible) as s:
        pass
    assert [(m["index"], m["nvml_index"], m["matched_by"]) for m in s.summary["mapping"]] == [(0, 3, "uuid")]


def test_torch_without_pci_properties_is_matched_by_uuid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 19.4: torch 2.7.1's device properties have ``uuid`` but no ``pci_*``: match on the UUID."""
    from types import SimpleNamespace

    from aslhpc.telemetry.nvml import torch_visible

    props = SimpleNamespace(uuid="00000004-1111-2222-3333-000000000004", name="Tesla V100-SXM2-32GB")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    assert torch_visible() == [{"index": 0, "uuid": props.uuid, "name": props.name, "pci_bus_id": None}]
    full = SimpleNamespace(**vars(props), pci_domain_id=0, pci_bus_id=0xAF, pci_device_id=0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: full)
    assert torch_visible()[0]["pci_bus_id"] == "00000000:af:00.0"


def test_descendants_are_found_without_the_proc_children_files(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 12: /proc/<pid>/task/<tid>/children needs CONFIG_PROC_CHILDREN; the tree comes from psutil."""
    from aslhpc.telemetry import cpu

    real = cpu._read
    monkeypatch.setattr(cpu, "_read", lambda path: None if path.endswith("/children") else real(path))
    script = ("import subprocess, sys, time\n"
              "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(5)'])\n"
              "print(p.pid, flush=True)\ntime.sleep(5)")
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        grandchild = int(child.stdout.readline())
        assert {child.pid, grandchild} <= set(cpu.descendants(os.getpid()))
    finally:
        child.kill()
        child.wait()
        try:
            os.kill(grandchild, 9)
        except (OSError, UnboundLocalError):
            pass


def test_whole_cell_summary_covers_every_attempt(tmp_path: Path) -> None:
    """Issue 16: a resumed cell's GPU peak may have happened in an earlier attempt."""
    from aslhpc.telemetry.cellsummary import whole_cell

    csv_path = tmp_path / "samples.csv"
    first = FakeNvml([FakeGpu(uuid(1), used_mib=(9000, 12000))])
    with Sampler(csv_path, interval_s=HOUR, nvml=first) as s:
        s.sample_now()
    second = FakeNvml([FakeGpu(uuid(1), used_mib=(3000,))])
    with Sampler(csv_path, interval_s=HOUR, nvml=second) as s:
        pass
    last = s.summary
    assert last["gpus"][0]["mem_peak_gb"] == 3.0 and last["n_samples"] == 2
    cell = whole_cell(last, csv_path)
    assert cell["n_samples"] == 5 and [a["n_samples"] for a in cell["attempts"]] == [3, 2]
    assert cell["gpus"][0]["mem_peak_gb"] == 12.0 and cell["attempts"][0]["gpus"][0]["mem_peak_gb"] == 12.0
    assert cell["attempts"][1]["gpus"][0]["mem_peak_gb"] == 3.0 and cell["scope"] == "cell (all attempts)"
    assert cell["cpu"]["rss_peak_gb"] >= last["cpu"]["rss_peak_gb"]


def test_pre_r510_driver_falls_back_to_v2_once_and_says_so(tmp_path: Path) -> None:
    """pynvml 13's per-process query is _v3; a driver without it gets _v2, asked for _v3 only once."""
    fake = FakeNvml(four_v100s(processes=((os.getpid(), 1300),))[:2], process_queries=(2,))
    s = Sampler(tmp_path / "s.csv", interval_s=HOUR, process_interval_s=0.0, nvml=fake)
    s.start()
    s.sample_now()
    summary = s.stop()
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v3"] == 1  # 2 GPUs x 3 ticks, one try
    assert fake.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 2 * 3
    assert [g["proc_mem_peak_gb"] for g in summary["gpus"]] == [1.3, 1.3]
    assert summary["errors"] == 0 and summary["per_process"] == "ok"
    assert "_v2" in summary["per_process_detail"] and "FunctionNotFound" in summary["per_process_detail"]


def test_driver_without_any_per_process_query_stops_asking(tmp_path: Path) -> None:
    fake = FakeNvml(four_v100s(processes=((os.getpid(), 1300),))[:1], process_queries=())
    s = Sampler(tmp_path / "s.csv", interval_s=HOUR, process_interval_s=0.0, nvml=fake)
    s.start()
    for _ in range(3):
        s.sample_now()
    summary = s.stop()
    tries = sum(fake.calls[f"nvmlDeviceGetComputeRunningProcesses_v{v}"] for v in (2, 3))
    assert tries == 3  # v3, v2 and the plain (v3) name: once each over five ticks
    assert summary["errors"] == 0 and summary["gpus"][0]["proc_mem_peak_gb"] is None
    assert summary["per_process"] == "unavailable: no per-process query in this driver"
    assert "process_memory" in summary["gpus"][0]["unsupported"]
    assert gpu_rows(tmp_path / "s.csv").mem_used_mib.notna().all()  # the rest of the row is still sampled


def test_pid_namespace_is_named_when_nvml_lists_only_foreign_pids(tmp_path: Path) -> None:
    fake = FakeNvml(four_v100s(processes=((os.getpid(), 1300),))[:1], host_pid_offset=40_000)
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, process_interval_s=0.0, nvml=fake) as s:
        pass
    summary = s.summary
    assert summary is not None and summary["gpus"][0]["proc_mem_peak_gb"] is None
    assert summary["per_process"] == "unavailable: PID namespace"
    assert str(os.getpid() + 40_000) in summary["per_process_detail"]


def test_nested_pid_namespace_from_nspid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aslhpc.telemetry import nvml, sampler

    nested, flat = tmp_path / "nested", tmp_path / "flat"
    nested.write_text("Name:\tpython\nNSpid:\t81234\t17\n")
    flat.write_text("Name:\tpython\nNSpid:\t81234\n")
    assert nvml.pid_namespace_note(str(flat)) is None
    assert "81234 17" in (nvml.pid_namespace_note(str(nested)) or "")
    # NVML lists nothing at all (our host pid is unknown to us): NSpid alone names the namespace
    monkeypatch.setattr(sampler, "pid_namespace_note", lambda: nvml.pid_namespace_note(str(nested)))
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s()[:1])) as s:
        pass
    assert s.summary is not None and s.summary["per_process"] == "unavailable: PID namespace"
    monkeypatch.setattr(sampler, "pid_namespace_note", lambda: None)
    with Sampler(tmp_path / "t.csv", interval_s=HOUR, nvml=FakeNvml(four_v100s()[:1])) as s:
        pass
    assert s.summary is not None and s.summary["per_process"] == "empty"


def test_cpu_run_says_per_process_was_not_sampled(tmp_path: Path) -> None:
    with Sampler(tmp_path / "s.csv", interval_s=HOUR, devices=[]) as s:
        pass
    assert s.summary is not None and s.summary["per_process"] == "not sampled"
    assert s.summary["per_process_detail"] == CPU_RUN_REASON


def test_the_real_pynvml_has_the_queries_the_fallback_names() -> None:
    """The chain is written against nvidia-ml-py's names: a rename there must fail here, not on a node."""
    from aslhpc.telemetry.nvml import PROCESS_QUERIES

    assert all(callable(getattr(pynvml, n, None)) for n in PROCESS_QUERIES)
    assert issubclass(pynvml.NVMLError_FunctionNotFound, pynvml.NVMLError)
    assert hasattr(pynvml, "NVMLLibraryMismatchError")
