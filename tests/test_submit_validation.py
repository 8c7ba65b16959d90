"""submit without a cluster: validation reports every problem and submits nothing; the real submission
path (submitit, manifest updates, idempotent re-runs, --retry-failed) runs against fake SLURM commands
that replay text recorded on the mini cluster (tests/golden/, tests/slurm_fakes.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from experiment_builders import complete_result, write_cell
from slurm_fakes import run_submit, scripts, smoke_args

from aslhpc.errors import ClusterError
from aslhpc.orchestration.cellstate import CellRow, StatusReport
from aslhpc.orchestration.experiment import REPO_JOBS, load_spec
from aslhpc.orchestration.manifest import load_manifest
from aslhpc.orchestration.submission import plan_cells, resolve_cluster


def test_valid_submission_then_each_bad_request_submits_nothing(
        fake_slurm: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    rc, out, err = run_submit(capsys, *smoke_args(dataset, results))
    assert rc == 0, err
    assert len(scripts(fake_slurm)) == 4
    manifest = results / "smoke" / "manifest.json"
    before = manifest.read_bytes()

    bad = {
        "--reservation NOPE": ["--reservation", "NOPE"],
        "--partition nopart": ["--partition", "nopart"],
        "--gpus 5": ["--gpus", "5"],
        "missing dataset": ["--data", str(tmp_path / "missing")],
    }
    expect = {
        "--reservation NOPE": "reservation 'NOPE' does not exist",
        "--partition nopart": "partition 'nopart' does not exist",
        "--gpus 5": "at most 4 gpu:v100-sxm2",
        "missing dataset": "does not exist",
    }
    for name, extra in bad.items():
        args = smoke_args(dataset, results)
        if extra[0] == "--data":
            args[args.index("--data") + 1] = extra[1]
        else:
            args += extra
        rc, out, err = run_submit(capsys, *args)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2, name
        assert len(lines) == 1 and lines[0].startswith("error: ") and expect[name] in lines[0], (name, err)
        assert len(scripts(fake_slurm)) == 4, name  # no sbatch call
        assert manifest.read_bytes() == before, name


def test_all_problems_at_once_and_no_files_written(fake_slurm: Path, dataset: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    rc, _, err = run_submit(capsys, *smoke_args(tmp_path / "nodata", results, "--reservation", "NOPE",
                                                "--gpus", "1,5", "--mem", "lots", "--time", "soon"))
    lines = err.strip().splitlines()
    assert rc == 2 and all(ln.startswith("error: ") for ln in lines)
    text = "\n".join(lines)
    for needle in ("does not exist", "cluster.mem='lots'", "cluster.time='soon'", "reservation 'NOPE'",
                   "at most 4 gpu"):
        assert needle in text, needle
    assert scripts(fake_slurm) == [] and not results.exists()


@pytest.mark.parametrize("flag", [["--reservation", "CSYE;rm -rf ~"], ["--partition", "a b"],
                                  ["--preamble", "x;rm -rf ~"], ["--constraint", "v100\nSBATCH"]])
def test_shell_metacharacters_are_refused(fake_slurm: Path, dataset: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture, flag: list[str]) -> None:
    rc, _, err = run_submit(capsys, *smoke_args(dataset, tmp_path / "r", *flag))
    assert rc == 2 and "not a safe" in err and scripts(fake_slurm) == []


def test_no_slurm_with_cluster_slurm_is_an_error(tmp_path: Path, dataset: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch anywhere
    rc, _, err = run_submit(capsys, *smoke_args(dataset, tmp_path / "r", "--cluster", "slurm"))
    assert rc == 2 and "SLURM is not reachable" in err and "--cluster local" in err
    assert resolve_cluster("auto", lambda: (False, "sbatch is not on PATH"), lambda: False) == (
        "local", "no SLURM here (sbatch is not on PATH)")
    # Installed but the controller is down (a login node): never fall back to training here.
    with pytest.raises(ClusterError, match="installed here but not answering .*--cluster local"):
        resolve_cluster("auto", lambda: (False, "scontrol ping: Slurmctld(primary) at c1 is "
                                                "DOWN"), lambda: True)
    assert resolve_cluster("local", lambda: (True, ""))[0] == "local"


def test_local_mode_without_gpus_asks_for_allow_cpu(tmp_path: Path, dataset: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture) -> None:
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has GPUs")
    spec_args = [str(REPO_JOBS / "lad2020.toml"), "--data", str(dataset), "--results", str(tmp_path / "r"),
                 "--cluster", "local"]
    rc, _, err = run_submit(capsys, *spec_args)
    assert rc == 2 and "--allow-cpu" in err and not (tmp_path / "r").exists()


def test_one_job_per_cell_recorded_after_each_sbatch(fake_slurm: Path, dataset: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    rc, out, err = run_submit(capsys, *smoke_args(dataset, results, "--strategy", "dp,ddp"))
    assert rc == 0, err
    for cell, job in (("g1-b32-r0", 101), ("g2-b64-ddp-r0", 108)):
        assert f"{cell}" in out and f"job {job}" in out
    assert "aslhpc status --experiment smoke" in out  # the status command, as the user can paste it
    m = load_manifest(results / "smoke" / "manifest.json")
    assert m is not None and len(m.cells) == 8
    ids = {cid: [a.job_id for a in e.attempts] for cid, e in m.cells.items()}
    assert sorted(sum(ids.values(), [])) == [str(i) for i in range(101, 109)]
    a = m.cells["g2-b64-ddp-r0"].last
    assert a.cluster == "slurm" and a.folder == f"jobs/g2-b64-ddp-r0/{a.token}"
    assert (results / "smoke" / a.folder / "108_submitted.pkl").exists()

    texts = {p.name: p.read_text() for p in scripts(fake_slurm)}
    by_name = {next(ln.split("=", 1)[1] for ln in t.splitlines() if "--job-name" in ln): t
               for t in texts.values()}
    dp2 = by_name["aslhpc-smoke-g2-b32-r0"]
    assert "#SBATCH --gres=gpu:v100-sxm2:2" in dp2 and "--gpus-per-node" not in dp2
    assert "#SBATCH --cpus-per-task=2" in dp2 and "#SBATCH --ntasks-per-node=1" in dp2
    assert "#SBATCH --reservation=CSYE7374_GPU" in dp2 and "#SBATCH --partition=reservation" in dp2
    dp2_token = load_manifest(results / "smoke" / "manifest.json").cells["g2-b32-r0"].last.token
    assert f"#SBATCH --output={results.resolve()}/smoke/jobs/g2-b32-r0/{dp2_token}/%j_0_log.out" in dp2
    assert "#SBATCH --time=15" in dp2 and "#SBATCH --mem=1G" in dp2
    assert "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-1}" in dp2  # the minislurm preamble
    ddp2 = by_name["aslhpc-smoke-g2-b64-ddp-r0"]
    assert "#SBATCH --gres=gpu:v100-sxm2:2" in ddp2 and "#SBATCH --ntasks-per-node=2" in ddp2
    assert "#SBATCH --cpus-per-task=1" in ddp2
    one = by_name["aslhpc-smoke-g1-b32-r0"]
    assert "#SBATCH --gres=gpu:v100-sxm2:1" in one  # a fresh executor per cell: nothing leaks from g2


def test_rerun_skips_live_and_completed_and_retries_only_failed(fake_slurm: Path, dataset: Path,
                                                                 tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    assert run_submit(capsys, *smoke_args(dataset, results))[0] == 0  # jobs 101..104
    manifest = results / "smoke" / "manifest.json"
    (fake_slurm / "sacct.txt").write_text(
        "101|101|RUNNING|n1|00:00:05|0:0|t|Unknown|2026-01-01T00:00:00|None\n"
        "102|102|CANCELLED by 0|n1|00:00:01|0:0|t|t|2026-01-01T00:00:00|None\n"
        "103|103|PENDING|None assigned|00:00:00|0:0|Unknown|Unknown|2026-01-01T00:00:00|Resources\n"
        "104|104|FAILED|n2|00:00:09|1:0|t|t|2026-01-01T00:00:00|None\n")
    # 104 has a result.json: files win over sacct
    write_cell(results / "smoke", complete_result("g2-b64-r0", 2, 64))

    before = manifest.read_bytes()
    rc, out, _ = run_submit(capsys, *smoke_args(dataset, results))
    assert rc == 0
    assert "g1-b32-r0        skipped     RUNNING (job 101)" in out
    assert "g1-b64-r0        skipped     CANCELLED (job 102); resubmit with --retry-failed" in out
    assert "g2-b32-r0        skipped     PENDING (job 103)" in out
    assert "g2-b64-r0        skipped     completed (job 104)" in out
    assert len(scripts(fake_slurm)) == 4
    assert json.loads(manifest.read_bytes())["cells"] == json.loads(before)["cells"]

    rc, out, _ = run_submit(capsys, *smoke_args(dataset, results, "--retry-failed"))
    assert rc == 0 and "g1-b64-r0        resubmitted job 105 (was CANCELLED (job 102))" in out
    assert len(scripts(fake_slurm)) == 5
    m = load_manifest(manifest)
    assert [a.job_id for a in m.cells["g1-b64-r0"].attempts] == ["102", "105"]
    assert [len(e.attempts) for cid, e in sorted(m.cells.items()) if cid != "g1-b64-r0"] == [1, 1, 1]


def test_crash_mid_submit_keeps_what_was_submitted(fake_slurm: Path, dataset: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture) -> None:
    (fake_slurm / "fail_at").write_text("103")
    results = tmp_path / "results"
    rc, _, err = run_submit(capsys, *smoke_args(dataset, results))
    assert rc == 2 and "sbatch refused cell g2-b32-r0" in err and "Requested node configuration" in err
    m = load_manifest(results / "smoke" / "manifest.json")
    assert {cid: [a.job_id for a in e.attempts] for cid, e in m.cells.items()} == {
        "g1-b32-r0": ["101"], "g1-b64-r0": ["102"], "g2-b32-r0": [], "g2-b64-r0": []}
    # re-running submits the rest only
    (fake_slurm / "fail_at").unlink()
    (fake_slurm / "sacct.txt").write_text("101|101|RUNNING|n1|0|0:0|t|t|2026|None\n"
                                          "102|102|PENDING|n1|0|0:0|t|t|2026|None\n")
    rc, out, _ = run_submit(capsys, *smoke_args(dataset, results))
    assert rc == 0 and "g2-b32-r0        submitted   job 103" in out and "g1-b32-r0        skipped" in out


def test_plan_never_gives_a_cell_two_live_jobs() -> None:
    spec = load_spec(REPO_JOBS / "smoke.toml")
    ids = [c.cell_id for c in spec.cells()]

    def report(states: list[str], source: str = "sacct") -> StatusReport:
        rows = [CellRow(cid, 1, 32, "dp", 0, state=s, job_id=str(i))
                for i, (cid, s) in enumerate(zip(ids, states, strict=True))]
        return StatusReport("smoke", Path("m"), rows, source)

    acts = plan_cells(spec, report(["REQUEUED", "TIMEOUT", "OUT_OF_MEMORY", "UNKNOWN"]), retry_failed=True)
    assert [a.action for a in acts] == ["skip", "retry", "retry", "skip"]
    squeue = report(["NODE_FAIL", "COMPLETING", "NOT_SUBMITTED", "UNKNOWN"], source="squeue")
    acts = plan_cells(spec, squeue, True)
    assert [a.action for a in acts] == ["retry", "skip", "submit", "retry"]  # squeue: not queued = ended
    assert [a.action for a in plan_cells(spec, None, False)] == ["submit"] * 4


def test_two_node_ddp_submission_and_bad_layouts_submit_nothing(fake_slurm: Path, dataset: Path,
                                                                tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    one_per_node = ["--gpus", "2", "--batch-sizes", "32", "--strategy", "ddp", "--gpus-per-node", "1"]
    rc, out, err = run_submit(capsys, *smoke_args(dataset, results, *one_per_node))
    assert rc == 0, err
    [script] = [p.read_text() for p in scripts(fake_slurm)]
    for line in ("--nodes=2", "--ntasks-per-node=1", "--gres=gpu:v100-sxm2:1", "--cpus-per-task=1"):
        assert f"#SBATCH {line}\n" in script, line
    assert load_manifest(results / "smoke" / "manifest.json").spec["cluster"]["gpus_per_node"] == 1

    bad = {
        "3 nodes on a 2-node partition": (["--gpus", "3", "--strategy", "ddp", "--gpus-per-node", "1"],
                                          "3 GPUs at 1 per node need 3 nodes but partition 'reservation' in "
                                          "reservation 'CSYE7374_GPU' has 2"),
        "5 GPUs on a 4-GPU node": (["--gpus", "5", "--strategy", "ddp"], "at most 4 gpu:v100-sxm2"),
        "dp across "
        "nodes": (["--gpus", "2", "--gpus-per-node", "1"], "cells g2-b32-r0, g2-b64-r0: strategy dp"),
        "uneven nodes": (["--gpus", "3", "--strategy", "ddp", "--gpus-per-node", "2"],
                         "cluster.gpus_per_node=2 does not divide its 3 GPUs"),
        "more per node than a node has": (["--gpus", "8", "--strategy", "ddp", "--gpus-per-node", "8"],
                                          "at most 4 gpu:v100-sxm2"),
    }
    for name, (extra, needle) in bad.items():
        rc, _, err = run_submit(capsys, *smoke_args(dataset, tmp_path / "other", *extra))
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1, (name, err)
        assert lines[0].startswith("error: ") and needle in lines[0], (name, err)
        assert len(scripts(fake_slurm)) == 1, name
    assert not (tmp_path / "other").exists()


def test_split_flags_reach_every_cell_and_a_bad_split_is_one_line(dataset: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    rc, out, err = run_submit(capsys, *smoke_args(dataset, results, "--cluster", "local", "--dry-run",
                                                  "--split", "blocked", "--split-seed", "3"))
    assert rc == 0, err
    scripts_ = sorted((results / "smoke" / "dry-run").glob("*.sbatch"))
    assert len(scripts_) == 4
    for script in scripts_:
        text = script.read_text()
        assert '"split":"blocked"' in text and '"split_seed":3' in text, script.name
    other = smoke_args(dataset, tmp_path / "other", "--cluster", "local", "--split", "rand")
    with pytest.raises(SystemExit) as exc:  # a usage error: one line naming the flag, exit 2
        run_submit(capsys, *other)
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.strip().splitlines() == [
        "error: --split: 'rand' is not valid; use one of random, blocked (see aslhpc submit --help)"]
    assert not (tmp_path / "other").exists()
    # the same value in a TOML file is one line naming the key
    job = tmp_path / "rand.toml"
    job.write_text((REPO_JOBS / "smoke.toml").read_text().replace("[train]", '[train]\nsplit = "rand"', 1))
    rc, _, err = run_submit(capsys, str(job), "--data", str(dataset), "--results", str(tmp_path / "other"),
                            "--cluster", "local")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2
    assert lines == ["error: rand.toml: train.split='rand' is not valid; use one of random, blocked"]
    assert not (tmp_path / "other").exists()


def test_resubmitting_refuses_exactly_the_changes_a_resumed_cell_would_refuse(tmp_path: Path) -> None:
    """submit's "already holds experiment ... with other settings" check and TrainConfig.identity() (what a
    checkpoint must match to be resumed) skip the same fields, so neither lets through what the other
    refuses."""
    from dataclasses import fields, replace

    from aslhpc.orchestration.experiment import TrainSettings
    from aslhpc.orchestration.submission import spec_conflicts
    from aslhpc.training.config import TrainConfig

    spec = load_spec(REPO_JOBS / "lad2020.toml")
    changed = {"epochs": 3, "lr": 0.1, "momentum": 0.5, "dropout": 0.3, "optimizer": "adam", "image_size": 64,
               "interpolation": "nearest", "split": "blocked", "split_seed": 4, "seed": 9, "pipeline": "fast",
               "amp": "fp16", "channels_last": False, "compile": True, "reuse_host_memory": False,
               "allow_cpu": True, "workers": 9, "node_local_cache": True, "cpu_threads": 3,
               "log_every": 1, "sample_interval_s": 0.5, "process_sample_interval_s": 2.0, "max_steps": 5,
               "model": "torchvision:resnet18", "split_group": r"^(rec\d+)_", "probe_memory_format": True}
    assert set(changed) == {f.name for f in fields(TrainSettings)}, "a new [train] key: add it here"
    for key, value in changed.items():
        new = replace(spec, train=replace(spec.train, **{key: value}))
        refused = bool(spec_conflicts(spec.to_dict(), new))
        assert getattr(new.train, key) != getattr(spec.train, key), key
        if key in {f.name for f in fields(TrainConfig)}:
            old_id = spec.train_config(spec.cells()[0]).identity()
            resumable = old_id == new.train_config(new.cells()[0]).identity()
            assert refused != resumable, key
        else:
            assert refused, key  # not a TrainConfig field (optimizer): still part of what was run

CU130 = ("sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120")  # torch 2.14.1+cu130's get_arch_list()

CU126 = ("sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90")

def _no_sm70() -> str:
    """The refusal names the exact fix: the torch to install for this interpreter, how to check it, and how to
    reinstall aslhpc without replacing it."""
    from aslhpc.orchestration.torchfix import v100_fix

    fix = v100_fix()
    assert "torch==2.7.1 torchvision==0.22.1" in fix and "constraints-v100.txt" in fix
    assert sys.executable in fix
    return (f"torch 2.14.1+cu130 has no sm_70 (V100) kernels: the cells would fail on v100-sxm2; {fix} or "
            "request another --gpu-type")


NO_SM70 = _no_sm70()


def test_v100_cells_need_a_torch_with_sm_70(fake_slurm: Path, dataset: Path, tmp_path: Path) -> None:
    from aslhpc.orchestration.experiment import Overrides, apply_overrides
    from aslhpc.orchestration.submission import TorchBuild, check_submission, v100_check

    spec = apply_overrides(load_spec(REPO_JOBS / "smoke.toml"),
                           Overrides(data=str(dataset), results=str(tmp_path / "r"), allow_cpu=False))
    cu130 = lambda: TorchBuild("2.14.1+cu130", "13.0", CU130)  # noqa: E731
    problems, warnings = check_submission(spec, "slurm", torch_info=cu130)
    assert problems == [NO_SM70]
    # with CPU fallback allowed the cells still run: a warning, nothing refused
    problems, warnings = check_submission(replace_allow_cpu(spec, True), "slurm", torch_info=cu130)
    assert problems == [] and any(w.startswith("torch 2.14.1+cu130 has no "
                                               "sm_70") and "CPU" in w for w in warnings)
    # a dry run starts nothing: a warning too
    problems, warnings = check_submission(spec, "local", dry_run=True, torch_info=cu130)
    assert problems == [] and any("has no sm_70" in w for w in warnings)
    # a torch with Volta kernels, a CPU-only build, or another GPU type: nothing to say
    for info in (lambda: TorchBuild("2.9.1+cu126", "12.6", CU126),
                 lambda: TorchBuild("2.14.1+cpu", None, ())):
        problems, warnings = check_submission(spec, "slurm", torch_info=info)
        assert problems == [] and not any("sm_70" in w for w in warnings)
    assert v100_check("a100", False, cu130()) is None
    assert v100_check("Tesla-V100", False, cu130()) == ("problem", NO_SM70.replace("v100-sxm2", "Tesla-V100"))


def replace_allow_cpu(spec, allow_cpu: bool):  # noqa: ANN001, ANN201
    from dataclasses import replace

    return replace(spec, train=replace(spec.train, allow_cpu=allow_cpu))


def test_submitting_the_v100_matrix_with_a_cuda_13_torch(fake_slurm: Path, dataset: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture) -> None:
    """jobs/lad2020.toml targets v100-sxm2: with the pinned cu130 torch nothing is submitted, unless the
    cells may fall back to the CPU (then a warning, as on the mini cluster)."""
    from aslhpc.orchestration.submission import TorchBuild

    monkeypatch.setattr("aslhpc.orchestration.submission.torch_build",
                        lambda: TorchBuild("2.14.1+cu130", "13.0", CU130))
    args = [str(REPO_JOBS / "lad2020.toml"), "--data", str(dataset), "--results", str(tmp_path / "r"),
            "--cpus-per-gpu", "1", "--mem", "1G"]
    rc, _, err = run_submit(capsys, *args)
    assert rc == 2 and err.strip().splitlines() == [f"error: {NO_SM70}"]
    assert scripts(fake_slurm) == [] and not (tmp_path / "r").exists()
    rc, out, err = run_submit(capsys, *args, "--allow-cpu")
    assert rc == 0, err
    assert "warning: torch 2.14.1+cu130 has no sm_70 (V100) kernels" in " ".join(out.split())
    # the 12 cells go out as 4 job arrays, one per GPU count, 3 tasks each, at most 3 running at once
    arrays = [p.read_text() for p in scripts(fake_slurm)]
    assert len(arrays) == 4 and all("#SBATCH --array=0-2%3" in a for a in arrays)
    assert sorted(a.count("--gres=gpu:v100-sxm2:") for a in arrays) == [1, 1, 1, 1]
    assert "4 job array(s)" in out and "12 job(s) submitted" in out


def test_controller_down_refuses_to_run_here_but_a_dry_run_still_writes_its_scripts(
        fake_slurm: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (fake_slurm / "scontrol").write_text("#!/bin/bash\necho 'Slurmctld(primary) at vm is DOWN'; exit 1\n")
    rc, out, err = run_submit(capsys, *smoke_args(dataset, tmp_path / "r"))
    assert rc == 2 and "installed here but not answering" in err and "--cluster local" in err
    assert not (tmp_path / "r" / "smoke" / "manifest.json").exists()
    rc, out, err = run_submit(capsys, *smoke_args(dataset, tmp_path / "r", "--dry-run"))
    assert rc == 0, err
    assert "not checked against the cluster" in out
    assert len(list((tmp_path / "r" / "smoke" / "dry-run").glob("*.sbatch"))) == 4


def test_a_cell_finished_outside_submit_is_not_submitted_again(tmp_path: Path) -> None:
    """Run by hand from its --dry-run script (or with aslhpc.train): its result.json is there, no manifest."""
    from dataclasses import replace

    spec = replace(load_spec(REPO_JOBS / "smoke.toml"), results=str(tmp_path / "res"))
    first, second = spec.cells()[:2]
    # the second is someone else's run (other settings)
    for cell, config in ((first, spec.train_config(first).to_dict()),
                         (second, {**spec.train_config(second).to_dict(), "epochs": 7})):
        d = spec.experiment_dir / "cells" / cell.cell_id
        d.mkdir(parents=True)
        (d / "result.json").write_text(json.dumps({"status": "completed", "config": config}))
    acts = plan_cells(spec, None, False)
    assert [a.action for a in acts] == ["skip", "submit", "submit", "submit"]
    assert "result.json" in acts[0].reason
