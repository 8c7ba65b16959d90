"""Provenance: runs on this GPU-less machine, reads SLURM from the environment, never raises."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_nvml import FakeNvml, four_v100s, uuid

from aslhpc.telemetry import collect_provenance
from aslhpc.telemetry import provenance as prov

KEYS = {
    "hostname", "slurmd_nodename", "python", "platform", "torch", "cuda", "cudnn", "arch_list",
    "v100_supported",
    "gpu_count", "gpu_models", "gpu_memory_gb", "gpus", "driver_version", "cpu_model", "cpu_sockets",
    "cpu_cores_per_socket", "cpu_threads_per_core", "cpu_logical", "cpus_allowed", "slurm",
    "cuda_visible_devices", "errors",
}

SLURM = {
    "SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2",
    "SLURM_JOB_PARTITION": "reservation", "SLURM_JOB_RESERVATION": "CSYE7374_GPU", "SLURMD_NODENAME": "d1004",
    "SLURM_JOB_NODELIST": "d1004", "SLURM_RESTART_COUNT": "1", "SLURM_JOB_GPUS": "0,1,2,3",
    "SLURM_GPUS_ON_NODE": "4", "SLURM_MEM_PER_NODE": "95000", "CUDA_VISIBLE_DEVICES": "0,1,2,3",
}


def test_runs_here_and_reads_slurm_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SLURM.items():
        monkeypatch.setenv(k, v)
    p = collect_provenance()  # the real pynvml: no driver on this machine
    assert KEYS <= set(p) and p["errors"] == []
    assert p["slurmd_nodename"] == "d1004" and p["cuda_visible_devices"] == "0,1,2,3"
    s = p["slurm"]
    assert (s["job_id"], s["array_job_id"], s["array_task"]) == ("4242", "4240", "2")
    assert (s["partition"], s["reservation"], s["nodename"]) == ("reservation", "CSYE7374_GPU", "d1004")
    assert (s["job_gpus"], s["gpus_on_node"], s["gres"], s["restarts"]) == ("0,1,2,3", "4", "gpu:4", 1)
    assert s["mem_per_node_mb"] == "95000"
    assert p["python"].count(".") == 2 and p["torch"] and p["hostname"]
    assert p["cpu_logical"] and p["cpus_allowed"]
    if p["cuda"]:
        assert isinstance(p["v100_supported"], bool) and p["arch_list"]


def test_outside_slurm_the_block_is_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    assert collect_provenance()["slurm"] is None


def test_gpu_facts_come_from_nvml_for_the_visible_gpus() -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3,1", "SLURM_JOB_ID": "7"}
    p = collect_provenance(nvml=FakeNvml(four_v100s()), env=env)
    assert p["gpu_source"] == "nvml" and p["gpu_count"] == 2 and p["gpu_count_node"] == 4
    assert p["gpu_models"] == ["Tesla V100-SXM2-32GB"] * 2 and p["gpu_memory_gb"] == [32.48, 32.48]
    assert [g["uuid"] for g in p["gpus"]] == [uuid(4), uuid(2)] and p["driver_version"] == "550.54.15"
    assert p["slurm"]["job_id"] == "7" and p["slurm"]["restarts"] == 0


def test_never_raises_when_everything_is_missing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import pynvml

    monkeypatch.setattr(prov, "CPUINFO", tmp_path / "no-cpuinfo")
    monkeypatch.setenv("PATH", str(tmp_path))  # no lscpu

    def no_hostname() -> str:
        raise OSError("no hostname")

    monkeypatch.setattr(prov.socket, "gethostname", no_hostname)
    p = collect_provenance(nvml=FakeNvml(four_v100s(), init_error=pynvml.NVMLError_DriverNotLoaded), env={})
    assert KEYS <= set(p)
    assert p["cpu_model"] is None and p["cpu_sockets"] is None and p["cpus_allowed"]
    assert p["gpu_count"] == 0 and p["gpu_reason"] == "NVIDIA driver not loaded: NVMLError_DriverNotLoaded"
    assert p["hostname"] is None and p["errors"] and p["errors"][0].startswith("host: OSError")


def test_cpu_topology_parsing() -> None:
    # two sockets x 14 cores, one thread each: the paper's Xeon Gold 6132 node
    block = "processor : {n}\nmodel name : Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz\nphysical id : {s}\n" \
            "siblings : 14\ncore id : {c}\ncpu cores : 14\n\n"
    text = "".join(block.format(n=n, s=n // 14, c=n % 14) for n in range(28))
    got = prov._parse_cpuinfo(text)
    assert got == {"cpu_model": "Intel(R) Xeon(R) Gold 6132 CPU @ 2.60GHz", "cpu_logical": 28,
                   "cpu_sockets": 2,
                   "cpu_cores_per_socket": 14, "cpu_threads_per_core": 1}
    lscpu = "CPU(s):   28\nModel name:  Intel(R) Xeon(R) Gold 6132\nThread(s) per core:  1\nSocket(s):  2\n"
    assert prov._parse_lscpu(lscpu)["cpu_sockets"] == 2


@pytest.mark.parametrize(("arch", "ok"), [
    (["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"], True),  # e.g. a cu126 build
    (["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"], False),  # torch 2.14.1+cu130
    (["sm_80", "sm_90", "compute_70"], True),  # PTX the driver can JIT for Volta
    (["sm_80", "compute_80"], False),
    ([], None),
])
def test_v100_support_from_the_arch_list(arch: list[str], ok: bool | None) -> None:
    assert prov.v100_supported(arch) is ok


def test_the_given_environment_is_used_not_the_process_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    p = collect_provenance(nvml=FakeNvml(four_v100s()), env={})  # no CUDA_VISIBLE_DEVICES: all GPUs
    assert p["gpu_count"] == 4 and p["cuda_visible_devices"] is None


def _fake_torch(arch: list[str], flags: str | None, cuda: str | None = "12.6"):
    from types import SimpleNamespace

    c = SimpleNamespace(_cuda_getArchFlags=lambda: flags) if flags is not None else SimpleNamespace()
    cuda_module = SimpleNamespace(get_arch_list=lambda: arch)
    return SimpleNamespace(version=SimpleNamespace(cuda=cuda), cuda=cuda_module, _C=c)


def test_the_arch_list_is_read_from_the_wheel_when_no_gpu_is_visible() -> None:
    """Issue 19.3: torch 2.7.1: get_arch_list() is [] without a GPU; the compiled-in flags know."""
    old = _fake_torch([], "sm_50 sm_60 sm_70 sm_75 sm_80 sm_86 sm_90")
    assert prov.cuda_arch_list(old) == ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]
    assert prov.v100_supported(prov.cuda_arch_list(old)) is True
    cu130 = _fake_torch([], "sm_75 sm_80 sm_86 sm_90 sm_100 sm_120")
    assert prov.v100_supported(prov.cuda_arch_list(cu130)) is False  # the login-node check now refuses
    assert prov.cuda_arch_list(_fake_torch(["sm_80"], "sm_50")) == ["sm_80"]  # the documented call wins
    assert prov.cuda_arch_list(_fake_torch([], None, cuda=None)) == []  # a CPU build


@pytest.mark.parametrize(("arch", "cap", "ok"), [
    (["sm_80"], (8, 6), True),  # same major, newer minor: the cubin runs
    (["sm_86"], (8, 0), False),
    (["sm_90a"], (9, 0), True), (["sm_90a"], (9, 1), False),  # arch-specific: exactly that GPU
    (["sm_75", "sm_80"], (7, 0), False),
    (["compute_70"], (9, 0), True),  # PTX: JIT for anything newer
    (["sm_90"], (10, 0), False),
])
def test_arch_supports_a_gpu_capability(arch: list[str], cap: tuple[int, int], ok: bool) -> None:
    assert prov.arch_supports(arch, cap) is ok
