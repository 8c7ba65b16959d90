"""Crash-safe, idempotent submit against a stateful fake SLURM: sbatch queues the job with its --comment,
squeue --me lists it (id, state, name, comment), sacct reports it. Submit is killed at each step (the
ASLHPC_TEST_CRASH_AT hook) or its manifest write fails with ENOSPC; re-running submit must adopt the
job it left rather than submit the cell again. The same runs end to end in tests/e2e/test_crash_safety.py."""

from __future__ import annotations

import errno
import json
import os
import stat
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from slurm_fakes import FAKE_SCONTROL

from aslhpc.orchestration.experiment import REPO_JOBS
from aslhpc.orchestration.manifest import Attempt, Intent, Manifest, load_manifest
from aslhpc.orchestration.reconcile import (
    find_local_controllers,
    reconcile,
    reconcile_manifest,
    submit_lock,
)
from aslhpc.slurm.accounting import job_comment, parse_comment, queued_jobs_named
from aslhpc.slurm.executor import UUID_PICKLE

GOLDEN = Path(__file__).parent / "golden"
REPO = Path(__file__).resolve().parents[1]
CELLS = ["g1-b32-r0", "g1-b64-r0", "g2-b32-r0", "g2-b64-r0"]  # smoke.toml, in submission order

# sbatch appends "id|name|script|comment" to jobs.txt; squeue prints them (PENDING) in the asked format;
# sacct prints the status header and PENDING rows. Fails (rc 1) when the file "down" exists.
FAKE = r'''#!{python}
import os, re, sys
d = os.path.dirname(os.path.abspath(__file__)); tool = os.path.basename(sys.argv[0]); args = sys.argv[1:]
if os.path.exists(os.path.join(d, "down")) and tool in ("squeue", "sacct"):
    print(tool + ": error: Unable to contact slurm controller", file=sys.stderr); sys.exit(1)
jobs_file = os.path.join(d, "jobs.txt")
jobs = [ln.rstrip("\n").split("|", 3) for ln in open(jobs_file)] if os.path.exists(jobs_file) else []
if tool == "sbatch":
    text = open(args[-1]).read()
    head = dict(m.groups() for m in re.finditer(r"^#SBATCH --([\w-]+)=(.*)$", text, re.M))
    limit = os.path.join(d, "max_submit")  # MaxSubmitJobs: refuse while this many jobs are queued
    if os.path.exists(limit):
        tasks = int(head["array"].split("%")[0].split("-")[1]) + 1 if "array" in head else 1
        if len(jobs) - len(open(os.path.join(d, "done")).read().split()) + tasks > int(open(limit).read()):
            print("sbatch: error: AssocMaxSubmitJobLimit", file=sys.stderr)
            print("sbatch: error: Batch job submission failed: Job violates accounting/QOS policy "
                  "(job submit limit, user's size and/or time limits)", file=sys.stderr)
            sys.exit(1)
    n = 101 + len({{j[0].split("_")[0] for j in jobs}})
    ids = [str(n)]
    if "array" in head:  # --array=0-K%P: one queued task per index, all with the array's comment
        ids = [f"{{n}}_{{t}}" for t in range(int(head["array"].split("%")[0].split("-")[1]) + 1)]
    with open(jobs_file, "a") as fh:
        script = os.path.abspath(args[-1])
        for i in ids:
            fh.write(f"{{i}}|{{head.get('job-name', '')}}|{{script}}|{{head.get('comment', '')}}\n")
    print(f"Submitted batch job {{n}}")
elif tool == "squeue":
    fmt = args[args.index("-o") + 1]
    names = next((a.split("=", 1)[1].split(",") for a in args if a.startswith("--name=")), None)
    for i, name, script, comment in jobs:
        if names is None or name in names:
            tagged = f"{{i}}|PENDING|{{name}}|{{script}}|{{comment}}"
            print(tagged if fmt == "%i|%T|%j|%o|%k" else f"{{i}}|PENDING||0:00|None|{{name}}")
elif tool == "sacct":
    if "-X" in args:  # the tag search: ended jobs only, none here unless ended.txt says so
        p = os.path.join(d, "ended.txt")
        print(open(p).read() if os.path.exists(p) else "", end="")
    else:
        print("JobID|JobIDRaw|State|NodeList|Elapsed|ExitCode|Start|End|Submit|Reason|JobName")
        for i, name, _, _ in jobs:
            print(f"{{i}}|{{i}}|PENDING|None assigned|00:00:00|0:0|Unknown|Unknown|2026-01-01T00:00:00|None|"
                  f"{{name}}")
'''
SCONTROL = FAKE_SCONTROL  # the one fake scontrol of the unit tests (tests/slurm_fakes.py)


@pytest.fixture
def slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    b = tmp_path / "fakebin"
    b.mkdir()
    for name in ("sbatch", "squeue", "sacct"):
        (b / name).write_text(FAKE.format(python=sys.executable))
    (b / "scontrol").write_text(SCONTROL)
    (b / "srun").write_text("#!/bin/bash\nexit 0\n")
    (b / "sacctmgr").write_text("#!/bin/bash\nexit 0\n")  # no association limit shown
    for p in b.iterdir():
        p.chmod(0o755 | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{b}:/usr/bin:/bin")
    return b


def submit(dataset: Path, results: Path, crash: str = "", *extra: str, arrays: bool = False,
           ) -> subprocess.CompletedProcess:
    """submit in a fresh process; one job per cell unless ``arrays`` (the array tests say so)."""
    extra = extra if arrays else (*extra, "--no-array")
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    env.pop("ASLHPC_TEST_CRASH_AT", None)
    if crash:
        env["ASLHPC_TEST_CRASH_AT"] = crash
    return subprocess.run([sys.executable, "-m", "aslhpc.submit", str(REPO_JOBS / "smoke.toml"), "--data",
                           str(dataset), "--results", str(results), *extra], env=env, capture_output=True,
                          text=True, timeout=120)


def sbatch_per_cell(slurm: Path) -> Counter[str]:
    """How many jobs SLURM got per cell (by the tag in their comment)."""
    lines = (slurm / "jobs.txt").read_text().splitlines() if (slurm / "jobs.txt").exists() else []
    return Counter(parse_comment(ln.split("|", 3)[3])[1] for ln in lines)


def test_every_job_carries_its_tag_and_the_manifest_its_token(slurm: Path, dataset: Path,
                                                              tmp_path: Path) -> None:
    p = submit(dataset, tmp_path / "r")
    assert p.returncode == 0, p.stderr
    m = load_manifest(tmp_path / "r" / "smoke" / "manifest.json")
    jobs = {ln.split("|")[0]: ln.split("|", 3)[3] for ln in (slurm / "jobs.txt").read_text().splitlines()}
    for cid, entry in m.cells.items():
        a = entry.last
        assert entry.intent is None and len(a.token) == 16
        assert jobs[a.job_id] == job_comment("smoke", cid, a.token) == f"aslhpc:smoke:{cid}:{a.token}"
    assert len({e.last.token for e in m.cells.values()}) == 4


@pytest.mark.parametrize("step", ["after-intent", "after-sbatch", "after-record"])
def test_killed_at_any_step_then_resubmitted_runs_every_cell_once(slurm: Path, dataset: Path, tmp_path: Path,
                                                                  step: str) -> None:
    results = tmp_path / "r"
    p = submit(dataset, results, f"{step}:2")  # dies at the 2nd cell
    assert p.returncode == 99, (p.stdout, p.stderr)
    manifest = results / "smoke" / "manifest.json"
    m = load_manifest(manifest)
    left = {cid: e.intent is not None for cid, e in m.cells.items()}
    assert left["g1-b64-r0"] == (step != "after-record")  # the intent is on disk before sbatch
    assert sum(sbatch_per_cell(slurm).values()) == (1 if step == "after-intent" else 2)

    p = submit(dataset, results)
    assert p.returncode == 0, p.stderr
    if step == "after-sbatch":  # the job sbatch made is found by its tag, not submitted again
        assert "g1-b64-r0        adopted     job 102 (PENDING)" in p.stdout
    assert sbatch_per_cell(slurm) == Counter(CELLS)  # one job per cell, ever
    m = load_manifest(manifest)
    assert m.pending() == {} and all(len(e.attempts) == 1 for e in m.cells.values())
    assert [m.cells[c].last.job_id for c in CELLS] == ["101", "102", "103", "104"]
    p = submit(dataset, results)  # and a third run submits nothing
    assert p.returncode == 0 and sum(sbatch_per_cell(slurm).values()) == 4


def test_status_after_a_crash_right_after_sbatch_shows_the_job_not_a_missing_cell(slurm: Path, dataset: Path,
                                                                                tmp_path: Path) -> None:
    """Someone looks from another shell before re-running submit: status finds the tagged job and shows it,
    writing nothing (status is read-only); the next submit adopts it instead of submitting again."""
    results = tmp_path / "r"
    assert submit(dataset, results, "after-sbatch:2").returncode == 99
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    p = subprocess.run([sys.executable, "-m", "aslhpc.status", "--results", str(results)], env=env,
                       capture_output=True, text=True, timeout=120)
    row = next(ln for ln in p.stdout.splitlines() if "g1-b64-r0" in ln)
    assert "102" in row and "NOT_SUBMITTED" not in row, (p.stdout, p.stderr)
    before = load_manifest(results / "smoke" / "manifest.json")
    assert before.cells["g1-b64-r0"].last is None and "g1-b64-r0" in before.pending()  # status wrote nothing
    assert submit(dataset, results).returncode == 0
    assert sbatch_per_cell(slurm) == Counter(CELLS)  # still one job per cell


def test_full_disk_is_one_line_saying_what_was_and_was_not_submitted(slurm: Path, dataset: Path,
                                                                     tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     capsys: pytest.CaptureFixture) -> None:
    from aslhpc import submit as submit_cli

    results = tmp_path / "r"
    args = [str(REPO_JOBS / "smoke.toml"), "--data", str(dataset), "--results", str(results), "--no-array"]
    real = Manifest.save
    calls = Counter()

    def save(self: Manifest, path: str | Path) -> None:
        calls["n"] += 1
        if calls["n"] == 5:  # 1 initial, 2 intent+id of cell 1, 4 intent of cell 2, 5: id of cell 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(self, path)

    monkeypatch.setattr(Manifest, "save", save)
    assert submit_cli.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: cannot write "), err
    assert "(No space left on device): submitted and recorded: g1-b32-r0 (job 101); submitted but not " \
           "recorded: g1-b64-r0 (job 102;" in err
    assert "not submitted: g2-b32-r0, g2-b64-r0; free space and run submit again" in err
    assert not list((results / "smoke").glob(".manifest.json.*"))  # no temp file left

    monkeypatch.setattr(Manifest, "save", real)  # space freed
    assert submit_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "g1-b64-r0        adopted     job 102" in out
    assert sbatch_per_cell(slurm) == Counter(CELLS)


def test_full_disk_before_the_first_sbatch_submits_nothing(slurm: Path, dataset: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture) -> None:
    from aslhpc import submit as submit_cli

    def full(self: Manifest, path: str | Path) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(Manifest, "save", full)
    rc = submit_cli.main([str(REPO_JOBS / "smoke.toml"), "--data", str(dataset), "--results",
                          str(tmp_path / "r"), "--no-array"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "nothing was submitted; not submitted: g1-b32-r0, g1-b64-r0, g2-b32-r0, g2-b64-r0" in err
    assert not (slurm / "jobs.txt").exists()


def test_an_interrupted_submit_is_not_retried_while_squeue_cannot_answer(slurm: Path, dataset: Path,
                                                                         tmp_path: Path) -> None:
    results = tmp_path / "r"
    assert submit(dataset, results, "after-sbatch:1").returncode == 99
    (slurm / "down").write_text("")
    p = submit(dataset, results)
    assert p.returncode == 2 and sum(sbatch_per_cell(slurm).values()) == 1
    assert "cannot tell whether the interrupted submission of g1-b32-r0 started a job" in p.stderr
    assert "(squeue: error: Unable to contact slurm controller)" in p.stderr
    assert p.stderr.strip().count("\n") == 0


def _manifest_with_intent(tmp_path: Path, cluster: str = "slurm", since: str = "2026-11-30T08:00:00+00:00",
                          ) -> tuple[Manifest, Path]:
    from aslhpc.orchestration.experiment import load_spec

    spec = load_spec(REPO_JOBS / "smoke.toml")
    m = Manifest.new(spec)
    m.ensure_cells(spec.cells())
    m.cells["g1-b32-r0"].intent = Intent("tok", cluster, since)
    exp = tmp_path / "smoke"
    exp.mkdir()
    return m, exp


def _runner(squeue: str = "", sacct: str = "", squeue_rc: int = 0):  # noqa: ANN202
    calls = []

    def run(cmd: list[str]) -> subprocess.CompletedProcess:
        calls.append(cmd)
        out, rc = (squeue, squeue_rc) if cmd[0] == "squeue" else (sacct, 0)
        return subprocess.CompletedProcess(cmd, rc, out, "boom" if rc else "")

    run.calls = calls  # type: ignore[attr-defined]
    return run


def test_a_job_that_already_ended_is_adopted_from_sacct_by_name_time_and_folder(tmp_path: Path) -> None:
    m, exp = _manifest_with_intent(tmp_path)
    # accounting keeps no comments here: the job is ours if named for the cell, submitted after the
    # intent and its files are in the attempt's own folder (jobs/<cell>/<token>/); an older job is not
    sacct = ("7|aslhpc-smoke-g1-b32-r0|COMPLETED|2026-11-30T07:00:00|\n"
             "9|aslhpc-smoke-g1-b32-r0|FAILED|2099-01-01T00:00:00|\n")
    (exp / "jobs" / "g1-b32-r0" / "tok").mkdir(parents=True)
    (exp / "jobs" / "g1-b32-r0" / "tok" / "9_0_log.out").write_text("Could not open ...")
    run = _runner(sacct=sacct)
    done = reconcile_manifest(m, exp, run=run)
    assert done.adopted == [("g1-b32-r0", "9", "FAILED")] and m.pending() == {}
    want = Attempt("9", "slurm", "2026-11-30T08:00:00+00:00", "jobs/g1-b32-r0/tok", "tok")
    assert m.cells["g1-b32-r0"].last == want
    assert run.calls[0][:3] == ["squeue", "--me", "-h"] and "--name=aslhpc-smoke-g1-b32-r0" in run.calls[0]
    assert "-X" in run.calls[1] and "--starttime" in run.calls[1]


def test_a_foreign_token_or_missing_folder_is_not_adopted_and_the_intent_is_dropped(tmp_path: Path) -> None:
    m, exp = _manifest_with_intent(tmp_path)
    # same name, another results dir
    squeue = ("5|RUNNING|aslhpc-smoke-g1-b32-r0|/elsewhere/smoke/jobs/g1-b32-r0/s.sh|"
              "aslhpc:smoke:g1-b32-r0:other\n")
    sacct = "9|aslhpc-smoke-g1-b32-r0|FAILED|2099-01-01T00:00:00|\n"  # no folder of ours
    done = reconcile_manifest(m, exp, run=_runner(squeue, sacct))
    assert done.adopted == [] and done.dropped == ["g1-b32-r0"] and m.cells["g1-b32-r0"].attempts == []


def test_without_comments_an_older_attempts_job_is_never_adopted_nor_listed_twice(tmp_path: Path) -> None:
    """Issue 27 item 10: sacct without comments (AccountingStoreFlags unset); a killed --retry-failed left
    an intent; the cell's older CANCELLED job (submitted just before, inside the 60 s slack, its files in
    the older attempt's folder) must not be adopted onto it."""
    m, exp = _manifest_with_intent(tmp_path, since="2026-11-30T08:00:19+00:00")
    old = Attempt("8", "slurm", "2026-11-30T08:00:00+00:00", "jobs/g1-b32-r0/older", "older")
    m.cells["g1-b32-r0"].attempts.append(old)
    (exp / "jobs" / "g1-b32-r0" / "older").mkdir(parents=True)
    (exp / "jobs" / "g1-b32-r0" / "older" / "8_submitted.pkl").write_bytes(b"x")
    (exp / "jobs" / "g1-b32-r0" / "tok").mkdir()  # this attempt's folder: nothing of job 8 in it
    sacct = "8|aslhpc-smoke-g1-b32-r0|CANCELLED by 0|2026-11-30T08:00:00|\n"
    done = reconcile_manifest(m, exp, run=_runner(sacct=sacct))
    assert done.adopted == [] and done.dropped == ["g1-b32-r0"]
    assert [a.job_id for a in m.cells["g1-b32-r0"].attempts] == ["8"]
    # even with its files planted in this attempt's folder, a job an attempt records is not adopted twice
    (exp / "jobs" / "g1-b32-r0" / "tok" / "8_0_log.out").write_text("")
    m.cells["g1-b32-r0"].intent = Intent("tok", "slurm", "2026-11-30T08:00:19+00:00")
    assert reconcile_manifest(m, exp, run=_runner(sacct=sacct)).adopted == []
    assert [a.job_id for a in m.cells["g1-b32-r0"].attempts] == ["8"]


def test_queued_jobs_named_reads_the_tag_and_fails_loudly() -> None:
    text = ("12|RUNNING|aslhpc-e-c|/r/e/jobs/c/s.sh|aslhpc:e:c:abc\n"
            "13|PENDING|aslhpc-e-c|/r/e/jobs/c/t.sh|(null)\n"
            "14|PENDING|someone-else|/x.sh|aslhpc:e:c:abc\n")
    jobs = queued_jobs_named(["aslhpc-e-c"], _runner(text))
    assert [(j.job_id, j.state, j.token) for j in jobs] == [("12", "RUNNING", "abc"), ("13", "PENDING", "")]
    with pytest.raises(RuntimeError, match="boom"):
        queued_jobs_named(["aslhpc-e-c"], _runner(squeue_rc=1))
    assert parse_comment("aslhpc:e:c") is None and parse_comment("x:e:c:t") is None
    # a site's own cluster.comment rides after the tag, which still finds the job
    tagged = job_comment("e", "c", "abc", "project=asl: grant 42")
    assert tagged == "aslhpc:e:c:abc project=asl: grant 42" and parse_comment(tagged) == ("e", "c", "abc")


def test_a_local_job_left_running_is_adopted_by_its_controller_process(tmp_path: Path) -> None:
    m, exp = _manifest_with_intent(tmp_path, cluster="local")
    folder = str((exp / "jobs" / "g1-b32-r0" / "%j").resolve())
    seen = []
    done = reconcile_manifest(m, exp, local_jobs=lambda f: seen.append(f) or [4242])
    assert seen == [folder] and done.adopted == [("g1-b32-r0", "4242", "RUNNING")]
    assert m.cells["g1-b32-r0"].last.folder == "jobs/g1-b32-r0/4242"
    m.cells["g1-b64-r0"].intent = Intent("t2", "local", "x")
    assert reconcile_manifest(m, exp, local_jobs=lambda f: []).dropped == ["g1-b64-r0"]


def test_find_local_controllers_reads_proc_and_takes_the_outermost(tmp_path: Path) -> None:
    folder = "/r/smoke/jobs/g1-b32-r0/%j"
    for pid, ppid, cmd in ((10, 1, f"/bin/sh\0-c\0export X && python -m submitit.local._local {folder}"),
                           (11, 10, f"python\0-m\0submitit.local._local\0{folder}"),
                           (12, 1, "python\0-m\0submitit.local._local\0/r/smoke/jobs/g1-b64-r0/%j"),
                           (13, 1, f"vim\0{folder}")):
        d = tmp_path / str(pid)
        d.mkdir()
        (d / "cmdline").write_bytes(cmd.encode())
        (d / "stat").write_text(f"{pid} (py thon) S {ppid} 0 0\n")
    (tmp_path / "self").mkdir()
    assert find_local_controllers(folder, tmp_path) == [10]


def test_status_reconcile_adopts_and_saves_but_never_while_a_submit_runs(tmp_path: Path) -> None:
    m, exp = _manifest_with_intent(tmp_path)
    path = exp / "manifest.json"
    m.save(path)
    run = _runner("101|PENDING|aslhpc-smoke-g1-b32-r0|/r/s.sh|aslhpc:smoke:g1-b32-r0:tok\n")
    with submit_lock(exp) as held:
        assert held
        assert reconcile(path, run=run).busy and load_manifest(path).pending()
    done = reconcile(path, run=run)
    assert done.adopted == [("g1-b32-r0", "101", "PENDING")]
    assert load_manifest(path).cells["g1-b32-r0"].last.job_id == "101" and not load_manifest(path).pending()
    assert reconcile(path, run=_runner(squeue_rc=1)).changed is False  # nothing pending: SLURM not asked
    assert json.loads(path.read_text())["cells"]["g1-b32-r0"]["attempts"][0]["token"] == "tok"


@pytest.mark.parametrize("after_sbatch", [True, False])
def test_job_files_unwritable_says_whether_sbatch_happened(slurm: Path, dataset: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          capsys: pytest.CaptureFixture,
                                                          after_sbatch: bool) -> None:
    """submitit writes files around its sbatch; an OSError there is looked up in squeue by the token."""
    import submitit

    from aslhpc import submit as submit_cli

    real = submitit.SlurmExecutor.submit

    def submit_(self: submitit.SlurmExecutor, fn, *a, **k):  # noqa: ANN001, ANN202
        if fn.cell_id == "g1-b64-r0":
            if after_sbatch:
                real(self, fn, *a, **k)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/x/jobs/g1-b64-r0/tmp.pkl")
        return real(self, fn, *a, **k)

    monkeypatch.setattr(submitit.SlurmExecutor, "submit", submit_)
    args = [str(REPO_JOBS / "smoke.toml"), "--data", str(dataset), "--results", str(tmp_path / "r"),
            "--no-array"]
    assert submit_cli.main(args) == 2
    err = capsys.readouterr().err
    assert "cannot write /x/jobs/g1-b64-r0/tmp.pkl (No space left on device): submitted and recorded: " \
           "g1-b32-r0 (job 101); " in err
    said = "submitted but not recorded: g1-b64-r0 (job 102;" if after_sbatch else "not submitted: g1-b64-r0, "
    assert said in err, err
    monkeypatch.setattr(submitit.SlurmExecutor, "submit", real)
    assert submit_cli.main(args) == 0
    assert sbatch_per_cell(slurm) == Counter(CELLS)


def test_a_live_job_the_manifest_lost_is_adopted_but_not_one_from_another_results_dir(
        slurm: Path, dataset: Path, tmp_path: Path) -> None:
    assert submit(dataset, tmp_path / "r").returncode == 0
    manifest = tmp_path / "r" / "smoke" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["cells"]["g2-b32-r0"]["attempts"] = []  # e.g. a manifest restored from an older backup
    manifest.write_text(json.dumps(data))
    p = submit(dataset, tmp_path / "r")
    assert p.returncode == 0 and "g2-b32-r0        adopted     job 103 (PENDING)" in p.stdout
    assert sbatch_per_cell(slurm) == Counter(CELLS)
    # the same experiment name under another --results is another experiment: its own four jobs
    assert submit(dataset, tmp_path / "other").returncode == 0
    assert sbatch_per_cell(slurm) == Counter(CELLS * 2)


def test_out_of_disk_inside_submitit_after_sbatch_still_hands_the_job_its_pickle(
        slurm: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """Seen on a real full tmpfs: submitit's symlink after sbatch fails, its pickle is never moved and the
    job would wait 60 s for it and fail. Submit names the job and moves the pickle itself."""
    import submitit

    from aslhpc import submit as submit_cli

    real = submitit.core.utils.JobPaths.move_temporary_file

    def move(self, tmp_path_, name, keep_as_symlink=False):  # noqa: ANN001, ANN202
        if "g1-b64-r0" in str(tmp_path_) and name == "submission_file":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path_))
        return real(self, tmp_path_, name, keep_as_symlink)

    monkeypatch.setattr(submitit.core.utils.JobPaths, "move_temporary_file", move)
    results = tmp_path / "r"
    args = [str(REPO_JOBS / "smoke.toml"), "--data", str(dataset), "--results", str(results), "--no-array"]
    assert submit_cli.main(args) == 2
    assert "submitted but not recorded: g1-b64-r0 (job 102;" in capsys.readouterr().err
    [jobs] = (results / "smoke" / "jobs" / "g1-b64-r0").iterdir()  # the attempt's own folder
    assert (jobs / "102_submitted.pkl").is_file()
    assert [p.name for p in jobs.glob("*.pkl")] == ["102_submitted.pkl"]


def test_adopting_a_queued_job_moves_the_pickle_a_killed_submit_left(tmp_path: Path) -> None:
    m, exp = _manifest_with_intent(tmp_path)
    folder = exp / "jobs" / "g1-b32-r0" / "tok"
    folder.mkdir(parents=True)
    (folder / f"{'a' * 32}.pkl").write_bytes(b"the cell's call")
    (folder / "notes.pkl").write_bytes(b"not submitit's")
    run = _runner("101|PENDING|aslhpc-smoke-g1-b32-r0|/r/s.sh|aslhpc:smoke:g1-b32-r0:tok\n")
    assert reconcile_manifest(m, exp, run=run).adopted == [("g1-b32-r0", "101", "PENDING")]
    assert (folder / "101_submitted.pkl").read_bytes() == b"the cell's call"
    assert (folder / "notes.pkl").exists()


# --------------------------------------------------------------------------- job arrays

def queued(slurm: Path) -> dict[str, str]:
    """job id -> comment of every job the fake SLURM queued (array tasks as <array>_<task>)."""
    lines = (slurm / "jobs.txt").read_text().splitlines() if (slurm / "jobs.txt").exists() else []
    return {ln.split("|")[0]: ln.split("|", 3)[3] for ln in lines}


def assert_one_task_per_cell(slurm: Path, results: Path) -> Manifest:
    m = load_manifest(results / "smoke" / "manifest.json")
    jobs = queued(slurm)
    assert m.pending() == {} and all(len(e.attempts) == 1 for e in m.cells.values())
    assert sorted(e.last.job_id for e in m.cells.values()) == sorted(jobs)  # every task is one cell's
    for e in m.cells.values():
        a = e.last
        assert a.job_id == f"{a.array_id}_{a.task_id}" and jobs[a.job_id] == f"aslhpc:smoke:array:{a.token}"
        assert a.folder == f"jobs/array-{a.token}"
        assert (results / "smoke" / a.folder / f"{a.job_id}_submitted.pkl").is_file()  # its own call
    return m


def test_cells_of_one_shape_go_into_one_array_with_its_task_ids_in_the_manifest(slurm: Path, dataset: Path,
                                                                                tmp_path: Path) -> None:
    p = submit(dataset, tmp_path / "r", "", "--array-parallelism", "3", arrays=True)
    assert p.returncode == 0, p.stderr
    assert "4 job(s) submitted (as 2 job array(s): 101, 102)" in p.stdout
    m = assert_one_task_per_cell(slurm, tmp_path / "r")
    by_gpus = {g: sorted(e.last.job_id for e in m.cells.values() if e.gpus == g) for g in (1, 2)}
    assert by_gpus == {1: ["101_0", "101_1"], 2: ["102_0", "102_1"]}  # one array per GPU count
    array_dir = (tmp_path / "r" / "smoke" / m.cells["g1-b32-r0"].last.folder).parent
    script = next(array_dir.glob("*/101_submission.sh")).read_text()
    assert "#SBATCH --array=0-1%2" in script and "#SBATCH --job-name=aslhpc-smoke-array" in script
    st = subprocess.run([sys.executable, "-m", "aslhpc.status", "--results", str(tmp_path / "r")],
                        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}, capture_output=True,
                        text=True, timeout=120)
    row = next(ln for ln in st.stdout.splitlines() if "g1-b64-r0" in ln)
    assert "101_1" in row and "PENDING" in row, st.stdout


@pytest.mark.parametrize("step", ["after-intent", "after-sbatch", "after-record"])
def test_killed_around_an_arrays_sbatch_then_resubmitted_runs_every_cell_once(
        slurm: Path, dataset: Path, tmp_path: Path, step: str) -> None:
    results = tmp_path / "r"
    assert submit(dataset, results, f"{step}:1", arrays=True).returncode == 99
    m = load_manifest(results / "smoke" / "manifest.json")
    intents = {cid: e.intent for cid, e in m.cells.items() if e.intent is not None}
    if step != "after-record":  # both cells of the first array, one token, their task indices
        assert {cid: i.task for cid, i in intents.items()} == {"g1-b32-r0": 0, "g1-b64-r0": 1}
        assert len({i.token for i in intents.values()}) == 1
    assert len(queued(slurm)) == (0 if step == "after-intent" else 2)
    p = submit(dataset, results, arrays=True)
    assert p.returncode == 0, p.stderr
    if step == "after-sbatch":
        assert "g1-b64-r0        adopted     job 101_1 (PENDING)" in p.stdout
    assert_one_task_per_cell(slurm, results)
    assert len(queued(slurm)) == 4


def test_a_submit_limit_is_waited_out_and_the_submission_finishes(slurm: Path, dataset: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  capsys: pytest.CaptureFixture) -> None:
    from aslhpc import submit as submit_cli
    from aslhpc.orchestration import arrays

    (slurm / "max_submit").write_text("2")  # MaxSubmitJobs=2: the second array is refused ...
    (slurm / "done").write_text("")
    slept = []

    def sleep(s: float) -> None:  # ... until the first one's tasks end
        slept.append(s)
        if len(slept) == 2:
            (slurm / "done").write_text("101_0 101_1")

    monkeypatch.setattr(arrays, "_sleep", sleep)
    args = smoke_cli_args(dataset, tmp_path / "r")
    assert submit_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "waiting: sbatch refused for AssocMaxSubmitJobLimit" in out
    assert "2 of 4 cell(s) submitted so far, 2 to go" in out and slept == [5.0, 10.0]
    assert "4 job(s) submitted (as 2 job array(s): 101, 102)" in out
    assert_one_task_per_cell(slurm, tmp_path / "r")


def test_a_submit_limit_that_never_lifts_ends_within_the_timeout_saying_what_was_submitted(
        slurm: Path, dataset: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from aslhpc import submit as submit_cli
    from aslhpc.orchestration import arrays

    (slurm / "max_submit").write_text("2")
    (slurm / "done").write_text("")
    monkeypatch.setattr(arrays, "_sleep", lambda s: None)
    assert submit_cli.main([*smoke_cli_args(dataset, tmp_path / "r"), "--submit-timeout", "20"]) == 2
    captured = capsys.readouterr()
    assert captured.out.count("waiting: sbatch refused") == 3  # 5 + 10 + 5 (the rest of the 20 s)
    assert "sbatch refused the job array of cells g2-b32-r0, g2-b64-r0: " in captured.err
    m = load_manifest(tmp_path / "r" / "smoke" / "manifest.json")
    assert m.pending() == {}  # the refused array left no intent behind
    assert [cid for cid, e in m.cells.items() if e.attempts] == ["g1-b32-r0", "g1-b64-r0"]
    jobs = tmp_path / "r" / "smoke" / "jobs"
    strays = [p for p in jobs.glob("array-*/*.pkl") if UUID_PICKLE.fullmatch(p.name)]
    assert not strays  # refused tries' pickles (an attempt's folder keeps only <id>_submitted.pkl)


def smoke_cli_args(dataset: Path, results: Path) -> list[str]:
    return [str(REPO_JOBS / "smoke.toml"), "--data", str(dataset), "--results", str(results)]


def test_reconcile_finds_array_tasks_by_the_arrays_tag_and_hands_them_their_pickles(tmp_path: Path) -> None:
    m, exp = _manifest_with_intent(tmp_path)
    m.cells["g1-b32-r0"].intent = Intent("tok", "slurm", "2026-11-30T08:00:00+00:00", task=0)
    m.cells["g1-b64-r0"].intent = Intent("tok", "slurm", "2026-11-30T08:00:00+00:00", task=1)
    folder = exp / "jobs" / "array-tok"
    folder.mkdir(parents=True)
    for i, data in enumerate((b"task 0", b"task 1")):
        p = folder / f"{str(i) * 32}.pkl"
        p.write_bytes(data)
        os.utime(p, ns=(10**18 + i, 10**18 + i))
    run = _runner("301_1|PENDING|aslhpc-smoke-array|/x|aslhpc:smoke:array:tok\n"
                  "301_0|RUNNING|aslhpc-smoke-array|/x|aslhpc:smoke:array:tok\n"
                  "302_0|RUNNING|aslhpc-smoke-array|/x|aslhpc:smoke:array:other\n")
    done = reconcile_manifest(m, exp, run=run)
    assert sorted(done.adopted) == [("g1-b32-r0", "301_0", "RUNNING"), ("g1-b64-r0", "301_1", "PENDING")]
    a = m.cells["g1-b64-r0"].last
    assert (a.job_id, a.array_id, a.task_id, a.folder) == ("301_1", "301", 1, "jobs/array-tok")
    assert (folder / "301_1_submitted.pkl").read_bytes() == b"task 1"
    assert (folder / "301_0_submitted.pkl").read_bytes() == b"task 0"
    again = Manifest.from_dict(json.loads(json.dumps(m.to_dict())))
    assert again.cells["g1-b64-r0"].last == a  # the array fields survive the file


def test_collect_job_depends_on_every_live_cell_job_and_is_recorded_not_as_a_cell(slurm: Path, dataset: Path,
                                                                                  tmp_path: Path) -> None:
    from aslhpc.orchestration.collectjob import dependency

    assert dependency(["101_0", "101_1", "7", ""]) == "afterany:7:101" and dependency([]) == ""
    p = submit(dataset, tmp_path / "r", "", "--collect", arrays=True)
    assert p.returncode == 0, p.stderr
    m = load_manifest(tmp_path / "r" / "smoke" / "manifest.json")
    assert m.collect is not None and m.collect.job_id == "103" and "collect" not in m.cells
    assert "collect          submitted   job 103 (runs collect after 101, 102)" in p.stdout
    script = next((tmp_path / "r" / "smoke" / "jobs" / "collect").glob("*/103_submission.sh")).read_text()
    assert "#SBATCH --dependency=afterany:101:102" in script and "--gres" not in script
    assert "#SBATCH --job-name=aslhpc-smoke-collect" in script and "#SBATCH --cpus-per-task=1" in script


def test_the_collect_job_is_private_and_checks_its_pickle_whatever_the_umask(slurm: Path, dataset: Path,
                                                                              tmp_path: Path) -> None:
    """Issue 27.3 for the collect job (and a round's next step): it waits on its dependency, PENDING, with a
    pickle it will load; under a group-writable umask its folder and files stay the owner's, and the
    job goes through the guard that refuses a pickle others could have replaced."""
    old = os.umask(0o002)  # submit inherits it
    try:
        p = submit(dataset, tmp_path / "r", "", "--collect", arrays=True)
    finally:
        os.umask(old)
    assert p.returncode == 0, p.stderr
    jobs = tmp_path / "r" / "smoke" / "jobs"
    script = next((jobs / "collect").glob("*/*_submission.sh")).read_text()
    assert "-m aslhpc.slurm.safe_submit" in script
    for path in [jobs, *(jobs / "collect").rglob("*")]:
        if not path.is_symlink():  # submitit's link to the submission file: a link's mode means nothing
            assert stat.S_IMODE(path.stat().st_mode) & 0o022 == 0, path
