"""benchmarks/gpu_check.py: the budget, the record a kill leaves, the files that come back from a loan.

The GPU machine is lent for minutes and brings back at most 8 files of 16 MiB: a step that does not
fit is skipped, the JSON is whole after every step, and --out stays inside the limits.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.sh"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules["gpu_check"] = mod
    spec.loader.exec_module(mod)
    return mod


gc = _load()


def test_planner_starts_only_steps_that_fit_the_time_left() -> None:
    fake = [("env", 10), ("big", 50), ("small", 15), ("exact", 5)]
    planned = gc.plan_budget(fake, budget_s=30, reserve_s=0)
    assert [n for n, why in planned if why is None] == ["env", "small", "exact"]  # 10 + 15 + 5 = 30: fits
    why = dict(planned)["big"]
    assert why is not None and why.startswith("budget") and "50 s" in why and "20 s left" in why
    assert gc.decide(5.0, 5.0) is None and gc.decide(5.0, 4.9) is not None
    assert gc.plan_budget([("a", 10)], budget_s=10, reserve_s=3) == [("a", "budget: needs ~10 s, 7 s left")]


def test_a_sibling_batch_size_is_estimated_from_the_measured_one() -> None:
    step = gc.Step("paper_epoch_b256", 60, 180, "x", like="paper_epoch_b128")
    assert gc.estimate_of(step, {}) == 60
    assert gc.estimate_of(step, {"paper_epoch_b128": 100.0}) == pytest.approx(110.0)


def test_record_lists_every_planned_step_and_is_replaced_whole(tmp_path: Path) -> None:
    steps = [gc.Step(n, 1, 2, "w") for n in ("a", "b", "c")]
    rec = gc.Record(tmp_path, {"budget_s": 10}, steps)
    first = json.loads((tmp_path / "gpu_check.json").read_text())
    assert [s["status"] for s in first["steps"]] == ["not reached"] * 3 and first["finished"] is False
    inode = (tmp_path / "gpu_check.json").stat().st_ino
    rec.update("a", status="done", figures={"images_per_s": 12.5})
    assert (tmp_path / "gpu_check.json").stat().st_ino != inode  # a new file renamed over the old
    rec.update("b", status="skipped", reason="budget: needs ~9 s, 1 s left")
    got = {s["name"]: s for s in json.loads((tmp_path / "gpu_check.json").read_text())["steps"]}
    assert got["a"]["figures"] == {"images_per_s": 12.5} and got["b"]["reason"].startswith("budget")
    assert got["c"]["status"] == "not reached"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpu_check.json"]  # no temp file left


def test_out_folder_limits_of_the_loan(tmp_path: Path) -> None:
    for i in range(8):
        (tmp_path / f"f{i}.json").write_text("{}")
    assert gc.out_problems(tmp_path) == []
    (tmp_path / "f8.json").write_text("{}")
    assert any("9 files" in p for p in gc.out_problems(tmp_path))
    for i in range(6):
        (tmp_path / f"f{i}.json").unlink()
    with open(tmp_path / "big.bin", "wb") as fh:
        fh.truncate(17 * 2**20)
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "ok.txt").write_text("2 folders down comes back")
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("3 down does not")
    problems = gc.out_problems(tmp_path)
    assert any("big.bin is 17 MiB" in p for p in problems)
    assert any("deep.txt" in p for p in problems) and not any("ok.txt" in p for p in problems)


def _run(tmp_path: Path, budget: float) -> object:
    out, work = tmp_path / "out", tmp_path / "work"
    out.mkdir(exist_ok=True)
    rec = gc.Record(out, {}, [])
    return gc.Run(rec, out, work, budget)


def test_a_step_whose_module_is_missing_skips_and_the_rest_run_on(tmp_path: Path) -> None:
    run = _run(tmp_path, 60)
    py = sys.executable
    steps = [gc.Step("needs_lib", 1, 30, "w", [[py, "-c", "import aslhpc_no_such_module_xyz"]]),
             gc.Step("broken", 1, 30, "w", [[py, "-c", "raise ValueError('bad figure')"]]),
             gc.Step("fine", 1, 30, "w", [[py, "-c", "print('hello')"]]),
             gc.Step("unimportable", 1, 30, "w", [[py, "-c", "print(1)"]], needs=("aslhpc.bench",)),
             gc.Step("no_python", 1, 30, "w", [[str(tmp_path / "no-such-python"), "-c", "1"]]),
             gc.Step("too_long", 10_000, 30, "w", [[py, "-c", "print(1)"]])]
    run.rec = gc.Record(run.out, {}, steps)
    run.imports = {"aslhpc.bench": "ModuleNotFoundError: No module named 'pydantic'"}
    gc.execute(run, steps)
    got = {s["name"]: s for s in json.loads((run.out / "gpu_check.json").read_text())["steps"]}
    assert got["needs_lib"]["status"] == "skipped"
    assert "aslhpc_no_such_module_xyz" in got["needs_lib"]["reason"]
    assert got["broken"]["status"] == "failed" and got["broken"]["error"] == "exit 1: ValueError: bad figure"
    assert got["fine"]["status"] == "done" and got["fine"]["seconds"] is not None
    assert got["unimportable"]["status"] == "skipped" and "pydantic" in got["unimportable"]["reason"]
    assert got["no_python"]["status"] == "failed" and "FileNotFoundError" in got["no_python"]["error"]
    assert got["too_long"]["status"] == "skipped" and got["too_long"]["reason"].startswith("budget")
    assert "hello" in (run.out / "gpu_check.log").read_text()


def test_a_child_past_its_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    code = ("import subprocess, sys, time\n"
            "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
            f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
            "print('started', flush=True)\n"
            "time.sleep(120)\n")
    rc, text = gc.run_child([sys.executable, "-c", code], timeout_s=5)
    assert rc is None and "started" in text and "killed after 5 s" in text
    grandchild = int(pidfile.read_text())
    for _ in range(50):  # the kill is a signal: give the kernel a moment to reap it
        try:
            os.kill(grandchild, 0)
        except ProcessLookupError:
            break
        if Path(f"/proc/{grandchild}/stat").read_text().split()[2] == "Z":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the step's own child outlived the time limit")
    assert gc.one_line(text, rc).startswith("timed out: ")


def _steps(out: Path) -> dict[str, dict]:
    data = json.loads((out / "gpu_check.json").read_text())
    return {s["name"]: s for s in data["steps"]}


def test_quick_run_in_25_seconds_lists_every_step(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    p = subprocess.run(["bash", str(SCRIPT), "--quick", "--budget-s", "25", "--out", str(out)], env=env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode in (0, 1), p.stdout[-3000:] + p.stderr[-3000:]
    data = json.loads((out / "gpu_check.json").read_text())
    planned = [s["name"] for s in data["plan"]]
    steps = _steps(out)
    assert list(steps) == planned and {"environment", "ddp_nccl", "data", "bench", "doctor"} <= set(steps)
    assert data["finished"] is True and data["quick"] is True and data["budget_s"] == 25
    for s in steps.values():
        assert s["status"] in ("done", "failed", "skipped"), s
        assert s["status"] != "skipped" or s["reason"], s
        assert s["status"] != "failed" or s["error"], s
    assert steps["environment"]["status"] == "done" and steps["environment"]["figures"]["torch"]
    assert gc.out_problems(out) == [] and len(list(out.iterdir())) <= 8
    assert not any(tmp_path.glob("aslhpc-gpu-check-*"))  # the work folder (data, cache) is gone
    assert "## Figures for the README" in p.stdout  # the summary is printed last


@pytest.mark.slow
def test_sigkill_leaves_a_valid_record_of_the_steps_done(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    p = subprocess.Popen(["bash", str(SCRIPT), "--quick", "--budget-s", "300", "--out", str(out)], env=env,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait for a finished cell, then kill mid-run
            try:
                if _steps(out).get("bench", {}).get("status") == "done":
                    break
            except (OSError, ValueError):
                pass  # not written yet: a reader never sees half a file, only no file
            time.sleep(0.3)
        os.killpg(p.pid, signal.SIGKILL)
    finally:
        p.wait(timeout=30)
    data = json.loads((out / "gpu_check.json").read_text())
    steps = _steps(out)
    assert data["finished"] is False and list(steps) == [s["name"] for s in data["plan"]]
    assert steps["bench"]["status"] == "done" and steps["bench"]["figures"]["fast_images_per_s"] > 0
    assert steps["bench"]["cells"]["paper"]["result"]["pipeline"] == "paper"
    assert {s["status"] for s in steps.values()} <= {"done", "failed", "skipped", "running", "not reached"}
    assert steps["doctor"]["status"] in ("running", "not reached")
    assert gc.out_problems(out) == []
