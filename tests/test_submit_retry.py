"""Retries that learn (issue 24): --retry-failed doubles an OUT_OF_MEMORY cell's memory and a TIMEOUT cell's
time, capped at the partition's limits, records each request, and stops retrying a cell that failed the same
way twice with the same request. Driven against the fake SLURM of tests/slurm_fakes.py (the golden
partition: nodes of 12000 MB, MaxTime UNLIMITED)."""

from __future__ import annotations

from pathlib import Path

import pytest
from slurm_fakes import run_submit, smoke_args

from aslhpc.orchestration.experiment import REPO_JOBS, job_request, load_spec
from aslhpc.orchestration.manifest import Attempt, load_manifest
from aslhpc.orchestration.retry import Caps, partition_caps, plan_retry
from aslhpc.slurm.cluster import query_cluster


def _sacct(bin_dir: Path, states: dict[int, str]) -> None:
    (bin_dir / "sacct.txt").write_text("".join(
        f"{j}|{j}|{s}|n1|00:00:09|0:0|t|t|2026-01-01T00:00:00|None\n" for j, s in sorted(states.items())))


def _script(bin_dir: Path, job: int) -> str:
    return (bin_dir / f"script_{job}.sh").read_text()


def test_oom_doubles_memory_up_to_the_nodes_then_stops(fake_slurm: Path, dataset: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    args = smoke_args(dataset, results, "--mem", "4G")
    assert run_submit(capsys, *args)[0] == 0  # jobs 101..104
    states = {101: "OUT_OF_MEMORY", 102: "TIMEOUT", 103: "RUNNING", 104: "RUNNING"}
    _sacct(fake_slurm, states)
    rc, out, err = run_submit(capsys, *args, "--retry-failed")
    assert rc == 0, err
    assert "g1-b32-r0        resubmitted job 105 (was OUT_OF_MEMORY (job 101); memory 4G -> 8G)" in out
    assert "g1-b64-r0        resubmitted job 106 (was TIMEOUT (job 102); time limit 15 -> 30 min)" in out
    assert "#SBATCH --mem=8G" in _script(fake_slurm, 105) and "#SBATCH --time=15" in _script(fake_slurm, 105)
    assert "#SBATCH --time=30" in _script(fake_slurm, 106) and "#SBATCH --mem=4G" in _script(fake_slurm, 106)
    m = load_manifest(results / "smoke" / "manifest.json")
    reqs = [a.request for a in m.cells["g1-b32-r0"].attempts]
    assert reqs[0]["mem"] == "4G" and "retry_of" not in reqs[0]
    assert reqs[1] == {**reqs[0], "mem": "8G", "retry_of": "OUT_OF_MEMORY"}
    assert m.cells["g1-b64-r0"].attempts[1].request["time_min"] == 30

    states |= {105: "OUT_OF_MEMORY", 106: "RUNNING"}
    _sacct(fake_slurm, states)
    rc, out, _ = run_submit(capsys, *args, "--retry-failed")
    assert ("resubmitted job 107 (was OUT_OF_MEMORY (job 105); memory 8G -> 12000M, the most a node of "
            "partition 'reservation' has: at the cap)") in " ".join(out.split())
    assert "#SBATCH --mem=12000M" in _script(fake_slurm, 107)

    states[107] = "OUT_OF_MEMORY"  # once at the cap: not yet twice with the same request
    _sacct(fake_slurm, states)
    rc, out, _ = run_submit(capsys, *args, "--retry-failed")
    assert "resubmitted job 108" in out and "#SBATCH --mem=12000M" in _script(fake_slurm, 108)

    states[108] = "OUT_OF_MEMORY"  # twice at 12000M: no blind third try
    _sacct(fake_slurm, states)
    rc, out, _ = run_submit(capsys, *args, "--retry-failed")
    line = " ".join(next(ln for ln in out.splitlines() if ln.startswith("g1-b32-r0")).split())
    assert line.startswith("g1-b32-r0 skipped OUT_OF_MEMORY (job 108): OUT_OF_MEMORY twice with the same "
                           "request (mem 12000M, time 15 min): not retried again; raise --mem"), line
    assert not (fake_slurm / "script_109.sh").exists()
    assert len(load_manifest(results / "smoke" / "manifest.json").cells["g1-b32-r0"].attempts) == 4


def test_the_caps_come_from_scontrol(fake_slurm: Path) -> None:
    caps = partition_caps(query_cluster(), "reservation", "v100-sxm2")
    assert caps == Caps("reservation", 12000, 0)  # MaxTime=UNLIMITED: no time cap


def _attempt(mem: str, time_min: int, retry_of: str = "") -> Attempt:
    request: dict[str, str | int] = {"mem": mem, "time_min": time_min}
    if retry_of:
        request["retry_of"] = retry_of
    return Attempt("1", "slurm", "t", "jobs/x", request=request)


def test_timeout_doubles_time_capped_at_maxtime_then_stops() -> None:
    spec = load_spec(REPO_JOBS / "smoke.toml")
    base = job_request(spec, spec.cells()[0])  # 15 min
    caps = Caps("gpu", 0, 40)
    plan = plan_retry("TIMEOUT", [_attempt("1G", 15)], base, caps)
    assert plan.time_min == 30 and not plan.refused
    plan = plan_retry("TIMEOUT", [_attempt("1G", 15), _attempt("1G", 30, "TIMEOUT")], base, caps)
    assert plan.time_min == 40 and "MaxTime: at the cap" in plan.note
    twice = [_attempt("1G", 40, "TIMEOUT"), _attempt("1G", 40, "TIMEOUT")]
    refused = plan_retry("TIMEOUT", twice, base, caps).refused
    assert "TIMEOUT twice with the same request" in refused and "raise --time" in refused
    assert "allows 40 min" in refused
    # a failure a bigger request does not cure: a plain retry, no request of its own
    assert plan_retry("FAILED", twice, base, caps) == type(plan)()


def test_a_raised_flag_overrides_the_stop() -> None:
    """Twice OUT_OF_MEMORY at 8G, but the user now asks for 16G (--mem): retried with that."""
    spec = load_spec(REPO_JOBS / "smoke.toml")
    from dataclasses import replace

    base = replace(job_request(spec, spec.cells()[0]), mem="32G")
    twice = [_attempt("8G", 15, "OUT_OF_MEMORY"), _attempt("8G", 15, "OUT_OF_MEMORY")]
    plan = plan_retry("OUT_OF_MEMORY", twice, base, Caps("gpu", 12000 * 4))
    assert not plan.refused and plan.mem == "32G"
