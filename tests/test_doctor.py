"""The doctor: on this CPU machine it passes with the GPU rows skipped, and each fault it exists
to find (unwritable cache dir, no flock, a torch without the GPU's kernels, bad data, a full
disk, GPUs granted but unusable) turns its row to fail and the exit code to 1."""

from __future__ import annotations

import errno
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from PIL import Image

from aslhpc import doctor
from aslhpc.preflight import FAIL, PASS, SKIP, WARN, Check, storage, versions
from aslhpc.preflight.context import Context
from aslhpc.preflight.result import guarded
from aslhpc.preflight.runner import Report, render

CUDA_ROWS = ("torch GPU kernels", "CUDA devices", "LadNet step per GPU", "bf16 / fp16", "cuDNN",
             "DataParallel")


def rows(path: Path) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(path.read_text())["checks"]}


def run(tmp_path: Path, *extra: str) -> tuple[int, dict[str, dict]]:
    """The doctor CLI with private results/cache dirs; small images unless a test asks (fast on 2 cores)."""
    out = tmp_path / "report.json"
    size = [] if "--image-size" in extra else ["--image-size", "40"]
    code = doctor.main(["--quick", "--json", str(out), "--results", str(tmp_path / "results"),
                        "--cache-dir", str(tmp_path / "cache"), *size, *extra])
    return code, rows(out)


def test_cpu_machine_passes_with_gpu_rows_skipped(tmp_path: Path, synth_root: Path, capsys) -> None:
    code, got = run(tmp_path, "--data", str(synth_root), "--image-size", "150")
    assert code == 0
    for name in CUDA_ROWS + ("NVML init",):
        assert got[name]["status"] == SKIP and got[name]["found"], name  # skipped, with the reason
    assert "no CUDA GPU" in got["CUDA devices"]["found"] or "CPU build" in got["CUDA devices"]["found"]
    for name in ("data layout", "data decodes", "cache dir", "cache room", "cache flock", "results dir"):
        assert got[name]["status"] == PASS, got[name]
    assert got["data layout"]["figures"]["images"] == 29 * 12
    assert got["cache room"]["figures"]["images"] == 29 * 12  # sized for the real data, not the paper's
    assert got["throughput probe"]["figures"]["images_per_s"] > 0
    assert "unmeasured" in got["throughput probe"]["found"]
    assert got["sampler tick"]["figures"]["median_us"] > 0
    table = capsys.readouterr().out
    assert "a cell would run here" in table


def test_unwritable_cache_dir_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")  # mkdir below it fails even for root
    code, got = run(tmp_path, "--cache-dir", str(blocker / "cache"))
    assert code == 1
    assert got["cache dir"]["status"] == FAIL and str(blocker) in got["cache dir"]["found"]
    assert "ASLHPC_CACHE_DIR" in got["cache dir"]["fix"]


def test_no_flock_fails_results_and_warns_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_locks(fd, op):  # noqa: ANN001 - Lustre mounted without -o flock
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(storage.fcntl, "flock", no_locks)
    code, got = run(tmp_path)
    assert code == 1
    assert got["results dir"]["status"] == FAIL and "No locks available" in got["results dir"]["found"]
    assert got["cache flock"]["status"] == WARN  # the cache builds without a lock: slower, still safe


def test_full_disk_fails_cache_room(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.disk_usage
    monkeypatch.setattr(storage.shutil, "disk_usage", lambda p: real(p)._replace(free=10 << 20))
    code, got = run(tmp_path, "--image-size", "64")
    assert code == 1
    room = got["cache room"]
    assert room["status"] == FAIL and room["figures"]["image_size"] == 64
    assert room["figures"]["need_bytes"] == storage.cache_need_bytes(87_029, 64)


def test_bad_data_fails(tmp_path: Path) -> None:
    (tmp_path / "data" / "Q7").mkdir(parents=True)  # not one of the 29 classes
    code, got = run(tmp_path, "--data", str(tmp_path / "data"))
    assert code == 1
    assert got["data layout"]["status"] == FAIL and "Q7" in got["data layout"]["found"]


def test_damaged_images_fail_the_decode_sample(tmp_path: Path) -> None:
    for cls in ("A", "B"):
        (tmp_path / "data" / cls).mkdir(parents=True)
        for n in range(1, 4):
            Image.new("RGB", (40, 40)).save(tmp_path / "data" / cls / f"{cls}{n}.jpg")
    (tmp_path / "data" / "B" / "B2.jpg").write_bytes(b"\xff\xd8 truncated")
    code, got = run(tmp_path, "--data", str(tmp_path / "data"))
    assert got["data decodes"]["status"] == FAIL and "B/B2.jpg" in got["data decodes"]["found"]
    assert got["data layout"]["status"] == WARN  # 2 of 29 classes: said, not fatal
    assert code == 1


class FakeCuda:
    """The ``torch.cuda`` calls the arch check makes, for one scripted GPU."""

    def __init__(self, arch: list[str], capability: tuple[int, int], name: str) -> None:
        self.arch, self.capability, self.name = arch, capability, name

    def is_available(self) -> bool:
        return True

    def device_count(self) -> int:
        return 1

    def get_arch_list(self) -> list[str]:
        return self.arch

    def get_device_capability(self, i: int) -> tuple[int, int]:
        return self.capability

    def get_device_name(self, i: int) -> str:
        return self.name


def fake_torch(arch: list[str], capability: tuple[int, int],
               name: str = "Tesla V100-SXM2-32GB") -> SimpleNamespace:
    return SimpleNamespace(__version__="2.14.1+cu130", version=SimpleNamespace(cuda="13.0"),
                           cuda=FakeCuda(arch, capability, name))


CU130 = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120"]


def test_torch_without_the_gpus_arch_fails_with_the_exact_fix() -> None:
    got = versions.check_arch(Context(torch=fake_torch(CU130, (7, 0))))
    assert got.status == FAIL and "sm_70" in got.found and "V100" in got.found
    # the same exact fix submit prints: the versions, the check, how to reinstall aslhpc around them
    assert "torch==2.7.1 torchvision==0.22.1" in got.fix and "constraints-v100.txt" in got.fix


@pytest.mark.parametrize(("arch", "cap", "ok"), [
    (CU130, (8, 6), True),  # exact cubin
    (["sm_80"], (8, 9), True),  # same major, lower minor: binary compatible
    (["sm_90"], (8, 0), False),  # a newer cubin never runs on an older GPU
    (["sm_75", "compute_70"], (7, 0), True),  # PTX the driver JIT-compiles
    (["sm_80", "compute_80"], (7, 0), False),
])
def test_arch_coverage_rules(arch: list[str], cap: tuple[int, int], ok: bool) -> None:
    assert versions.check_arch(Context(torch=fake_torch(arch, cap))).status == (PASS if ok else FAIL)


def test_v100_experiment_warns_on_a_node_without_gpus() -> None:
    import torch

    from aslhpc.telemetry.provenance import cuda_arch_list

    # the wheel's list (torch 2.7's get_arch_list() is empty without a GPU, though its wheel has sm_70)
    if torch.version.cuda is None or versions.runs_on(cuda_arch_list(torch), 7, 0):
        pytest.skip("this torch is a CPU build or has sm_70: nothing to warn about")
    got = versions.check_arch(Context(gpu_type="v100-sxm2"))
    assert got.status == WARN and "torch==2.7.1" in got.fix


def test_granted_gpus_torch_cannot_see(tmp_path: Path) -> None:
    from aslhpc.preflight import cuda

    env = {"CUDA_VISIBLE_DEVICES": "0,1"}  # what slurmd exports on the mini cluster's dummy devices
    strict = cuda.check_devices(Context(env=env, gpus=2, allow_cpu=False))
    lenient = cuda.check_devices(Context(env=env, gpus=2, allow_cpu=True))
    assert strict.status == FAIL and "dummy" in strict.found
    assert lenient.status == SKIP and "granted" in lenient.found


def test_gpu_cells_on_a_machine_without_gpus_would_not_run_here() -> None:
    """A login node checked against the 2020 experiment (GPUs, no CPU fallback): not "a cell would run here"
    but a failed row that says where to check instead; with allow_cpu, or no GPUs asked, a skip."""
    from aslhpc.preflight import cuda

    no_gpu = SimpleNamespace(__version__="2.14.1+cu130", version=SimpleNamespace(cuda="13.0"),
                             cuda=SimpleNamespace(is_available=lambda: False, device_count=lambda: 0))
    login = cuda.check_devices(Context(env={}, gpus=4, allow_cpu=False, torch=no_gpu))
    assert login.status == FAIL and "4 GPUs" in login.found and "doctor --submit" in login.fix
    assert cuda.check_devices(Context(env={}, gpus=4, allow_cpu=True, torch=no_gpu)).status == SKIP
    assert cuda.check_devices(Context(env={}, gpus=0, torch=no_gpu)).status == SKIP


def test_a_crashing_check_is_a_failed_row_not_a_traceback() -> None:
    def broken() -> Check:
        raise KeyError("surprise")

    [row] = guarded("broken", broken)
    assert row.status == FAIL and "KeyError" in row.found and "--json" in row.fix


def test_table_fits_80_columns_and_keeps_its_headers() -> None:
    long = "z" * 200
    report = Report([Check("a rather long check name", FAIL, long, long), Check("ok", PASS, "fine")])
    text = render(report, width=80)
    lines = text.splitlines()
    assert max(len(ln) for ln in lines) <= 80
    header = next(ln for ln in lines if "check" in ln)
    for word in ("check", "result", "found", "fix"):
        assert f" {word} " in header
    assert text.count("z") == 400  # wrapped, never cut
    assert "would NOT run" in text


def test_json_is_written_atomically_and_reads_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import aslhpc.atomic as atomic

    out = tmp_path / "r.json"
    out.write_text('{"old": true}')

    def crash(*a, **k):  # noqa: ANN002, ANN003
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", crash)
    from aslhpc.preflight.runner import write_json

    with pytest.raises(OSError):
        write_json(Report([Check("ok", PASS, "fine")]), out)
    assert json.loads(out.read_text()) == {"old": True}  # never half a report
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_bad_experiment_is_one_error_line(tmp_path: Path, capsys) -> None:
    assert doctor.main(["-e", str(tmp_path / "missing.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "missing.toml" in err and len(err.splitlines()) == 1


def test_cache_room_knows_an_already_built_cache(tmp_path: Path, synth_root: Path) -> None:
    from aslhpc.data import open_cache, scan_dataset

    open_cache(scan_dataset(synth_root), 40, "bilinear", tmp_path / "cache", progress=False)
    code, got = run(tmp_path, "--data", str(synth_root))
    assert code == 0 and "already built" in got["cache room"]["found"]


def test_nvml_rows_with_a_driver_but_no_cuda_gpu() -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_nvml import FakeNvml, four_v100s

    from aslhpc.preflight import nvmlcheck

    cpu_torch = SimpleNamespace(__version__="2.14.1", version=SimpleNamespace(cuda=None),
                                cuda=SimpleNamespace(is_available=lambda: False))
    init, uuids, proc = nvmlcheck.check_nvml(Context(torch=cpu_torch, nvml=FakeNvml(four_v100s())))
    assert init.status == PASS and "550.54.15" in init.found and "4 GPU(s)" in init.found
    assert uuids.status == SKIP and proc.status == SKIP and "CPU build" in uuids.found


def test_nvml_missing_where_torch_sees_gpus_warns() -> None:
    import sys

    import pynvml

    sys.path.insert(0, str(Path(__file__).parent))
    from fake_nvml import FakeNvml, four_v100s

    from aslhpc.preflight import nvmlcheck

    nv = FakeNvml(four_v100s(), init_error=pynvml.NVMLError_DriverNotLoaded)
    init, *_ = nvmlcheck.check_nvml(Context(torch=fake_torch(CU130, (8, 0)), nvml=nv))
    assert init.status == WARN and "driver not loaded" in init.found and "no GPU memory" in init.fix


def test_ddp_over_two_gloo_processes(tmp_path: Path) -> None:
    from aslhpc.preflight import ddp

    got = ddp.check_ddp(Context(ddp=True, image_size=40))
    assert got.status == PASS and got.figures["backend"] == "gloo", got


def test_submit_checks_one_job_per_distinct_shape() -> None:
    from dataclasses import replace

    from aslhpc.orchestration.experiment import find_job_file, load_spec
    from aslhpc.preflight.remote import shapes

    spec = load_spec(find_job_file("lad2020"))  # 12 cells: GPUs 1-4 x batch 128/256/512
    assert list(shapes(spec)) == ["g1-dp", "g2-dp", "g3-dp", "g4-dp"]
    wide = replace(spec, gpus=(2, 4), strategies=("ddp",), cluster=replace(spec.cluster, gpus_per_node=2))
    assert list(shapes(wide)) == ["g2-ddp", "g2-ddp-n2"]  # 4 GPUs at 2 per node: checked on one node


def test_submit_without_an_experiment_is_one_error_line(capsys) -> None:
    assert doctor.main(["--submit"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --submit needs an experiment") and len(err.splitlines()) == 1
