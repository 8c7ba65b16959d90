"""``submit --until-conclusive`` (issue 24): the planner names the configurations whose overlapping intervals
keep a verdict open (and only those more runs can settle), extra repeats grow the matrix and survive a
plain resubmit, and the round chain walks on through ``submit --next-round`` against the fake SLURM of
tests/slurm_fakes.py: each round recorded in the manifest and verdicts.json, no cell submitted twice, a
round killed between its decision and its submit resumed, and it stops at --max-rounds saying so."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from experiment_builders import complete_result, write_cell
from slurm_fakes import run_submit, smoke_args

from aslhpc.analysis.conclusive import plan_repeats
from aslhpc.analysis.verdicts import H2, H4, Config, evaluate
from aslhpc.errors import CRASH_ENV, ConfigError
from aslhpc.orchestration.experiment import REPO_JOBS, ExperimentSpec, load_spec, spec_problems
from aslhpc.orchestration.manifest import load_manifest
from aslhpc.orchestration.submission import kept_extra_repeats

REPO = Path(__file__).resolve().parents[1]


def _summary(rows: list[tuple[int, int, float, float, int]], **extra: object) -> pd.DataFrame:
    """Main-split summary rows (gpus, batch, mean time, half-width, runs), as tables.summarize makes them."""
    return pd.DataFrame([{"gpus": g, "batch_size": b, "strategy": "dp", "pipeline": "fast",
                          "split_kind": "random", "n": n, "exec_time_s": t, "exec_time_s_hw": hw,
                          "test_acc": 99.0, **extra} for g, b, t, hw, n in rows])


def test_an_overlap_names_the_side_with_fewer_runs_then_the_wider_interval() -> None:
    # b=32: 1 GPU 100 s ± 30 (3 runs) vs 2 GPUs 90 s ± 5 (2 runs): overlap, the 2-run side is repeated
    # b=64: 1 GPU 80 s ± 30 vs 2 GPUs 70 s ± 5, both 2 runs: the wider interval (1 GPU) is repeated
    summary = _summary([(1, 32, 100.0, 30.0, 3), (2, 32, 90.0, 5.0, 2), (1, 64, 80.0, 30.0, 2),
                        (2, 64, 70.0, 5.0, 2)])
    v = H2.verdict(summary)
    assert v.verdict == "inconclusive" and len(v.overlaps) == 2
    plan = plan_repeats([v])
    assert plan.open == ("H2",) and not plan.conclusive
    assert plan.repeat == (Config(2, 32, "dp", "random"), Config(1, 64, "dp", "random"))


def test_clear_verdicts_and_reasons_repeats_cannot_fix_plan_nothing() -> None:
    clear = _summary([(1, 32, 100.0, 1.0, 3), (2, 32, 50.0, 1.0, 3)])
    assert plan_repeats([H2.verdict(clear)]) == plan_repeats([])  # supported: nothing to run
    cpu = _summary([(1, 32, 100.0, 30.0, 2), (2, 32, 90.0, 30.0, 2)], gpus_used=0)
    capped = _summary([(1, 32, 100.0, 30.0, 2), (1, 64, 90.0, 30.0, 2)], max_steps=5)
    plan = plan_repeats([H2.verdict(cpu), H4.verdict(capped)])
    assert plan.conclusive and plan.repeat == ()
    assert [h for h, _ in plan.unfixable] == ["H2", "H4"]
    assert "fewer GPUs than requested" in plan.unfixable[0][1] and "max-steps" in plan.unfixable[1][1]


def test_every_registered_verdict_can_be_planned_from_a_real_summary() -> None:
    summary = _summary([(1, 32, 100.0, 30.0, 2), (2, 32, 90.0, 30.0, 2), (1, 64, 95.0, 30.0, 2),
                        (2, 64, 85.0, 30.0, 2)])
    plan = plan_repeats(evaluate(summary))
    assert set(plan.open) == {"H2", "H4"}  # times overlap; H3's equal accuracies are a clear tie
    assert len(plan.repeat) == len(set(plan.repeat)) > 0  # each configuration named once


def test_extra_repeats_grow_only_their_configuration_and_survive_the_manifest() -> None:
    spec = load_spec(REPO_JOBS / "smoke.toml")
    grown = spec.with_extra_repeats({"g2-b64": 1}).with_extra_repeats({"g2-b64": 1, "g1-b32": 1})
    assert grown.extra_repeats == (("g1-b32", 1), ("g2-b64", 2))
    ids = [c.cell_id for c in grown.cells()]
    assert ids == ["g1-b32-r0", "g1-b32-r1", "g1-b64-r0", "g2-b32-r0", "g2-b64-r0", "g2-b64-r1", "g2-b64-r2"]
    assert [c.seed for c in grown.cells() if c.cell_id.startswith("g2-b64")] == [0, 1, 2]
    data = json.loads(json.dumps(grown.to_dict()))
    assert ExperimentSpec.from_dict(data) == grown and spec_problems(data) == []
    data["extra_repeats"] = [["g4-b32", 1]]
    assert spec_problems(data) == ["spec.matrix.extra_repeats names 'g4-b32', not a configuration of the "
                                   "matrix"]
    data["extra_repeats"] = [["g1-b32", 0]]
    assert "must be [configuration, count >= 1]" in spec_problems(data)[0]


def _complete(results: Path, times: dict[str, float]) -> None:
    """Write a completed result.json for each cell id -> exec time (smoke.toml's cells)."""
    for cid, t in times.items():
        g, b = int(cid.split("-")[0][1:]), int(cid.split("-")[1][1:])
        write_cell(results / "smoke", complete_result(cid, g, b, seed=int(cid.rsplit("-r", 1)[1]),
                                                      exec_time_s=t, test_acc=90.0))


def _sacct_all(bin_dir: Path, state: str = "COMPLETED", **others: str) -> None:
    """sacct: every job the fake sbatch handed out so far in ``state``, but ``others`` (id -> state)."""
    last = int((bin_dir / "next").read_text())
    states = {**{str(j): state for j in range(101, last)}, **others}
    (bin_dir / "sacct.txt").write_text("".join(
        f"{j}|{j}|{s}|n1|00:01:00|0:0|t|t|2026-01-01T00:00:00|None\n" for j, s in states.items()))


def _job_command(results: Path, job: str) -> list[str]:
    """The command the chain's job runs: this test's own pickle, written by the submit just above."""
    with open(results / "smoke" / "jobs" / "collect" / job / f"{job}_submitted.pkl", "rb") as fh:
        return list(pickle.load(fh).function.command)


def _attempts(results: Path) -> dict[str, int]:
    m = load_manifest(results / "smoke" / "manifest.json")
    assert m is not None
    return {cid: len(e.attempts) for cid, e in m.cells.items()}


ROUND1 = {"g1-b32-r0": 60.0, "g1-b32-r1": 70.0, "g1-b64-r0": 62.0, "g1-b64-r1": 66.0,
          "g2-b32-r0": 61.0, "g2-b32-r1": 69.0, "g2-b64-r0": 63.0, "g2-b64-r1": 65.0}


def test_the_round_chain_on_slurm_records_each_round_and_stops_at_max_rounds(
        fake_slurm: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    args = smoke_args(dataset, results, "--repeats", "2", "--until-conclusive", "--max-rounds", "2")
    rc, out, err = run_submit(capsys, *args)
    assert rc == 0, err
    chain = (fake_slurm / "script_109.sh").read_text()  # 8 cells (101..108), then the chain's job
    assert "--dependency=afterany:101:102:103:104:105:106:107:108" in chain
    assert _job_command(results, "109")[-6:] == ["aslhpc.submit", "--next-round", "--experiment", "smoke",
                                                 "--results", str(results.resolve())]
    m = load_manifest(results / "smoke" / "manifest.json")
    assert m.rounds.max_rounds == 2 and [r.cells for r in m.rounds.rounds] == [list(ROUND1)]

    _complete(results, ROUND1)
    _sacct_all(fake_slurm)
    next_args = ["--next-round", "--experiment", "smoke", "--results", str(results)]
    rc, out, err = run_submit(capsys, *next_args)
    assert rc == 0, err
    flat = " ".join(out.split())
    # every interval overlaps (two runs: the t factor is 12.7); the wider side of each pair runs again
    assert ("round 1: open: H2, H4; round 2 runs 3 configuration(s) once more: g1-b32-r2, g1-b64-r2, "
            "g2-b32-r2") in flat
    assert _attempts(results) == {**dict.fromkeys(ROUND1, 1), "g1-b32-r2": 1, "g1-b64-r2": 1, "g2-b32-r2": 1}
    chain_job = load_manifest(results / "smoke" / "manifest.json").collect.job_id
    assert chain_job == "112" and "--next-round" in _job_command(results, chain_job)  # after round 2's cells
    m = load_manifest(results / "smoke" / "manifest.json")
    first, second = m.rounds.rounds
    assert first.decided and first.open == ["H2", "H4"] and first.gpu_hours == pytest.approx(774 / 3600)
    assert second.cells == ["g1-b32-r2", "g1-b64-r2", "g2-b32-r2"] and not second.decided
    assert dict(ExperimentSpec.from_dict({**m.spec, "name": "smoke"}).extra_repeats) == {
        "g1-b32": 1, "g1-b64": 1, "g2-b32": 1}
    report = json.loads((results / "smoke" / "verdicts.json").read_text())
    assert [r["round"] for r in report["rounds"]] == [1, 2]  # GPU-hours above: 258 s at 1 GPU + 258 s at 2

    # the chain job starting again before round 2 ended decides nothing and submits no cell twice
    _sacct_all(fake_slurm, **{"110_0": "PENDING", "110_1": "PENDING", "111": "RUNNING", "112": "PENDING"})
    rc, out, _ = run_submit(capsys, *next_args)
    assert "round 2: 3 cell(s) not ended yet" in out
    assert max(_attempts(results).values()) == 1

    _complete(results, {"g1-b32-r2": 65.0, "g1-b64-r2": 64.0, "g2-b32-r2": 65.0})
    _sacct_all(fake_slurm)
    before = sorted(fake_slurm.glob("script_*.sh"))
    rc, out, err = run_submit(capsys, *next_args)
    assert rc == 0, err
    assert "round 2: stopped: --max-rounds 2 spent; still open: H2, H4" in " ".join(out.split())
    assert sorted(fake_slurm.glob("script_*.sh")) == before  # nothing more submitted
    m = load_manifest(results / "smoke" / "manifest.json")
    assert m.rounds.rounds[-1].outcome.startswith("--max-rounds 2 spent")
    report = json.loads((results / "smoke" / "verdicts.json").read_text())
    assert report["rounds"][-1]["outcome"].startswith("--max-rounds 2 spent")
    md = (results / "smoke" / "report.md").read_text()
    assert "| 2 | g1-b32-r2, g1-b64-r2, g2-b32-r2 | H2, H4 |" in md
    assert "Stopped after round 2: --max-rounds 2 spent; still open: H2, H4" in md
    rc, out, _ = run_submit(capsys, *next_args)  # the chain ended: calling it again changes nothing
    assert "--max-rounds 2 spent" in out and sorted(fake_slurm.glob("script_*.sh")) == before

    # a plain resubmit of the file keeps the cells the rounds added (nothing dropped, nothing resubmitted)
    kept = kept_extra_repeats(load_spec(REPO_JOBS / "smoke.toml", ))
    assert kept.extra_repeats == ()  # another results folder: nothing to keep
    rc, out, _ = run_submit(capsys, *smoke_args(dataset, results, "--repeats", "2"))
    assert rc == 0 and "0 job(s) submitted" in out
    assert len(_attempts(results)) == 11


def test_a_round_killed_after_its_decision_resumes_without_double_runs(
        fake_slurm: Path, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    rc, _, err = run_submit(capsys, *smoke_args(dataset, results, "--repeats", "2", "--until-conclusive"))
    assert rc == 0, err
    _complete(results, ROUND1)
    _sacct_all(fake_slurm)
    cmd = [sys.executable, "-m", "aslhpc.submit", "--next-round", "--experiment", "smoke", "--results",
           str(results)]
    killed = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300,
                            env={**os.environ, CRASH_ENV: "round-decided"})
    assert killed.returncode != 0
    m = load_manifest(results / "smoke" / "manifest.json")
    assert len(m.rounds.rounds) == 2 and m.rounds.rounds[0].decided  # decided once, recorded
    assert not (fake_slurm / "script_110.sh").exists()  # the kill came before round 2's sbatch

    resumed = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "round 2: 3 cell(s) not ended yet" in resumed.stdout  # not decided again: its cells submitted
    assert _attempts(results) == {**dict.fromkeys(ROUND1, 1), "g1-b32-r2": 1, "g1-b64-r2": 1, "g2-b32-r2": 1}
    assert len(load_manifest(results / "smoke" / "manifest.json").rounds.rounds) == 2


@pytest.mark.parametrize("flags, message", [
    (["--max-rounds", "2"], "error: --max-rounds only applies to --until-conclusive"),
    (["--budget-gpu-hours", "1"], "error: --budget-gpu-hours only applies to --until-conclusive"),
    (["--until-conclusive", "--budget-gpu-hours", "0"], "must be a positive number"),
])
def test_round_flags_without_their_mode_are_one_error_line(
        flags: list[str], message: str, dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    try:
        rc, _, err = run_submit(capsys, *smoke_args(dataset, tmp_path / "r", "--cluster", "local", *flags))
    except SystemExit as exc:  # argparse's own usage error
        rc, err = int(exc.code or 0), capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()


def test_next_round_on_an_experiment_without_rounds_says_so(fake_slurm: Path, dataset: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    results = tmp_path / "results"
    assert run_submit(capsys, *smoke_args(dataset, results))[0] == 0
    rc, _, err = run_submit(capsys, "--next-round", "--experiment", "smoke", "--results", str(results))
    assert rc != 0 and "was not submitted with --until-conclusive" in err
    with pytest.raises(ConfigError):
        spec = load_spec(REPO_JOBS / "smoke.toml")
        ExperimentSpec.cells(spec.with_extra_repeats({"g1-b32": 10**6}))


def test_a_local_smoke_run_until_conclusive_exits_0_and_lists_its_rounds(synth_root: Path, tmp_path: Path,
                                                                         cache_dir: Path) -> None:
    results = tmp_path / "results"
    cmd = [sys.executable, "-m", "aslhpc.submit", "jobs/smoke.toml", "--data", str(synth_root), "--results",
           str(results), "--cluster", "local", "--gpus", "1", "--batch-sizes", "16,32", "--epochs", "1",
           "--max-parallel", "1", "--until-conclusive", "--max-rounds", "3", "--wait"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=600)
    assert p.returncode == 0, p.stdout + p.stderr
    rounds = json.loads((results / "smoke" / "verdicts.json").read_text())["rounds"]
    assert rounds[0]["cells_added"] == ["g1-b16-r0", "g1-b32-r0"] and rounds[-1]["decided"]
    assert rounds[-1]["outcome"] and rounds[-1]["outcome"] in " ".join(p.stdout.split())  # says why
    assert len(rounds) <= 3


def test_a_chain_step_submits_without_its_own_jobs_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    from aslhpc.slurmenv import outside_this_job

    monkeypatch.setenv("SLURM_MEM_PER_CPU", "4000")
    monkeypatch.setenv("SLURM_JOB_ID", "77")
    monkeypatch.setenv("SBATCH_PARTITION", "debug")
    with outside_this_job():
        assert not [k for k in os.environ if k.startswith(("SLURM_", "SBATCH_"))]
        assert "PATH" in os.environ
    assert os.environ["SLURM_MEM_PER_CPU"] == "4000" and os.environ["SBATCH_PARTITION"] == "debug"
