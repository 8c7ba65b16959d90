"""The GPU figures in one run: ``bash benchmarks/gpu_check.sh [--budget-s N] [--quick] [--out DIR]``.

Made for a short loan of a bare GPU machine (its own Python and torch, no network, minutes of GPU time):

* ``--budget-s N`` (default 420): no step starts unless its stated estimate fits in the time left; one
  that does not is ``skipped`` with ``budget`` in its reason, and each child's time limit is the time left.
* ``DIR/gpu_check.json`` is rewritten (temp file + rename) before and after every step: a kill at any
  moment leaves every planned step listed as ``done``, ``failed`` (one-line ``error``), ``skipped``
  (``reason``), ``running`` (started, never finished) or ``not reached``, with what was measured.
* Figures are kept: each cell's result.json and epochs in gpu_check.json, its whole folder (samples.csv,
  time breakdown; no checkpoints) in ``DIR/cells.tar.gz``; every child's output in ``DIR/gpu_check.log``;
  the doctor's report in ``DIR/doctor.json``; the summary in ``DIR/gpu_check.md``. Five files at most
  (the loan brings back 8, 16 MiB each, two folders deep). Generated data, the decoded cache and the
  cells' folders live in a work folder outside DIR (``$TMPDIR``), removed at the end.
* Runs on the machine's own torch (>= 2.7) without submitit; a step whose modules do not import there
  is ``skipped`` with the reason, the other steps run.

Steps, in order (estimates are seconds on one H100/H200-class GPU; ``--quick``: a CPU, tiny sizes):
``environment``, the probes of ``benchmarks/gpu_probes.py`` (NVML and the sampler beside nvidia-smi,
fp16 + GradScaler, true fp32, a 1-rank NCCL DDP step, ...), ``data`` (the generated stand-in dataset,
3,001 images per class), ``doctor``, ``bench`` (paper vs fast pipeline, bench's default steps),
``paper_epoch_b<B>`` (one paper-pipeline epoch per study batch size) and ``bench_full_fast`` (a whole
25-epoch fast cell).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from aslhpc.atomic import atomic_write_json, atomic_write_text  # noqa: E402 - stdlib only; after the path

MAX_OUT_FILES, MAX_FILE_BYTES, MAX_DEPTH = 8, 16 * 2**20, 2  # what the loan brings back from --out
LOG_TAIL_BYTES = 256 * 1024  # per step, in gpu_check.log
CELL_FILE_MAX = 4 * 2**20  # bigger files of a cell folder stay out of cells.tar.gz
RESERVE_S = 3.0  # kept back for the last write of the summary
PROBE_START_S = {True: 2.0, False: 10.0}  # a probe process's start (torch import, CUDA context): quick, full
STUDY_BATCHES, STUDY_WORKERS = [128, 256, 512], 4  # fallback when jobs/lad2020.toml cannot be read here
STATUSES = ("done", "failed", "skipped", "running", "not reached")
_MISSING = re.compile(r"ModuleNotFoundError: No module named '([^']+)'")


@dataclass
class Step:
    """One planned step: its stated estimate, its hard cap, and what it runs."""

    name: str
    estimate_s: float
    cap_s: float
    what: str
    commands: list[list[str]] = field(default_factory=list)  # run one after another
    needs: tuple[str, ...] = ()  # modules that must import here (checked by the environment step)
    probe: str | None = None  # a gpu_probes.py probe: consecutive probe steps share one process
    like: str | None = None  # once that step has run, its time is this one's estimate


# ---- the budget (pure: tested with fake estimates) ----------------------------------------------


def decide(estimate_s: float, left_s: float) -> str | None:
    """None: start the step; else why it is skipped (the reason names the budget)."""
    if estimate_s <= left_s:
        return None
    return f"budget: needs ~{estimate_s:.0f} s, {max(left_s, 0.0):.0f} s left"


def plan_budget(estimates: Sequence[tuple[str, float]], budget_s: float,
                reserve_s: float = RESERVE_S) -> list[tuple[str, str | None]]:
    """(name, skip reason or None) for every step if each took exactly its estimate."""
    left, out = budget_s - reserve_s, []
    for name, est in estimates:
        why = decide(est, left)
        if why is None:
            left -= est
        out.append((name, why))
    return out


def estimate_of(step: Step, seconds: dict[str, float]) -> float:
    """The stated estimate, or the measured time of the step it is ``like`` (a sibling batch size)."""
    if step.like and step.like in seconds:
        return max(1.0, seconds[step.like] * 1.1)
    return step.estimate_s


# ---- gpu_check.json, written after every change ------------------------------------------------


class Record:
    """The run's JSON: every planned step from the start; ``save`` is atomic (temp + rename)."""

    def __init__(self, out: Path, head: dict[str, Any], steps: Sequence[Step]) -> None:
        self.path = out / "gpu_check.json"
        self.data: dict[str, Any] = {**head, "finished": False, "steps": [
            {"name": s.name, "what": s.what, "status": "not reached", "estimate_s": s.estimate_s,
             "seconds": None, "figures": {}} for s in steps]}
        self.t0 = time.monotonic()
        self.save()

    def step(self, name: str) -> dict[str, Any]:
        return next(s for s in self.data["steps"] if s["name"] == name)

    def update(self, name: str, **fields: Any) -> None:
        self.step(name).update(fields)
        self.save()

    def save(self) -> None:
        self.data["seconds"] = round(time.monotonic() - self.t0, 1)
        atomic_write_json(self.path, self.data)


def out_problems(out: Path) -> list[str]:
    """What would not come back from the loan: > 8 files, a file > 16 MiB, deeper than 2 folders."""
    files = [p for p in out.rglob("*") if p.is_file() or p.is_symlink()]
    problems = [f"{len(files)} files (at most {MAX_OUT_FILES})"] if len(files) > MAX_OUT_FILES else []
    for p in files:
        rel = p.relative_to(out)
        if p.is_symlink():
            problems.append(f"{rel} is a link")
        elif p.stat().st_size > MAX_FILE_BYTES:
            problems.append(f"{rel} is {p.stat().st_size >> 20} MiB (at most 16)")
        if len(rel.parts) - 1 > MAX_DEPTH:
            problems.append(f"{rel} is more than {MAX_DEPTH} folders down")
    return problems


# ---- children --------------------------------------------------------------------------------


def _die_with_parent() -> None:
    """In the child: SIGKILL when this script dies (a SIGKILL of it leaves no child running)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the child may outlive a killed parent
        pass


class Child:
    """The running child (its own process group, killed whole on timeout or SIGTERM)."""

    current: subprocess.Popen | None = None

    @classmethod
    def kill(cls) -> None:
        p = cls.current
        if p is not None and p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                p.kill()


def _pump(p: subprocess.Popen, lines: queue.Queue[str | None]) -> None:
    assert p.stdout is not None
    for line in p.stdout:
        lines.put(line)
    lines.put(None)


def run_child(argv: list[str], timeout_s: float, on_line: Callable[[str], None] | None = None,
              ) -> tuple[int | None, str]:
    """Run argv; stream its lines to ``on_line``; (exit code or None on timeout, output)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    p = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         errors="replace", start_new_session=True, preexec_fn=_die_with_parent)
    Child.current = p
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(p, lines), daemon=True)
    reader.start()
    deadline, text, rc = time.monotonic() + timeout_s, [], None
    while True:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            Child.kill()
            text.append(f"\n[gpu_check] killed after {timeout_s:.0f} s (its time limit)\n")
            break
        if line is None:
            rc = p.wait()
            break
        text.append(line)
        if on_line is not None:
            on_line(line)
    p.wait()
    reader.join(timeout=5)
    Child.current = None
    return rc, "".join(text)


def one_line(text: str, rc: int | None) -> str:
    """The error line of a failed child: its last exception line, else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    err = next((ln for ln in reversed(lines) if re.match(r"^[\w.]+(Error|Exception|Interrupt)\b", ln)), None)
    last = err or (lines[-1] if lines else "no output")
    return ("timed out: " if rc is None else f"exit {rc}: ") + last[:300]


# ---- the plan ---------------------------------------------------------------------------------

# probe name -> (estimate s, cap s, modules it needs, what it measures); the order is the run's
PROBES = {
    "nvml_vs_smi": (10, 60, ("aslhpc.telemetry.nvml",), "NVML per-process memory beside nvidia-smi"),
    "sampler_vs_smi": (10, 60, ("aslhpc.telemetry",), "the sampler's per-process memory beside nvidia-smi"),
    "fp16_scaler": (20, 90, (), "LadNet steps in fp16 autocast with a GradScaler"),
    "fp32_true": (15, 90, (), "true fp32 (TF32 off) against float64; TF32 flags as found"),
    "arch": (3, 30, ("aslhpc.preflight.versions",), "compute capability against torch's arch list"),
    "dp_autocast": (5, 30, (), "autocast dtype inside DataParallel's replica threads"),
    "pinned_peak": (5, 30, (), "pinned host memory torch reserves for a request"),
    "fused_sgd": (3, 30, (), "SGD(fused=True) with a GradScaler"),
    "nvml_devices": (3, 30, (), "NVML handles by index and by torch's UUID"),
    "ddp_nccl": (25, 120, ("torch.distributed",), "a 1-rank NCCL DDP step (gloo on a CPU)"),  # last: may hang
}
CELL_NEEDS = ("aslhpc.bench", "aslhpc.training.trainer")


def study_settings() -> tuple[list[int], int, str]:
    """Batch sizes and DataLoader workers of the study's experiment file (and where they came from)."""
    try:
        from aslhpc.orchestration.experiment import load_spec

        spec = load_spec(ROOT / "jobs" / "lad2020.toml")
        return list(spec.batch_sizes), int(spec.train.workers), "jobs/lad2020.toml"
    except Exception as exc:  # noqa: BLE001 - the schema does not load here: the file's values as of 3295eb7
        return STUDY_BATCHES, STUDY_WORKERS, f"fallback ({type(exc).__name__}: {exc})"


def cell_step(name: str, est: float, cap: float, what: str, work: Path, pipelines: list[str],
              bench_args: list[str], like: str | None = None) -> Step:
    """A step of one or more cells, each in its own process, into ``work/cells/<name>/<pipeline>``."""
    me, py = str(Path(__file__).resolve()), sys.executable
    data, cache = str(work / "data"), str(work / "cache")
    commands = [[py, me, "--cell", p, str(work / "cells" / name), data, cache, "--", *bench_args,
                 "--data", data, "--pipelines", p] for p in pipelines]
    return Step(name, est, cap, what, commands, CELL_NEEDS, like=like)


def build_steps(quick: bool, work: Path, out: Path) -> tuple[list[Step], str]:
    """Every step of the run, in order, with its estimate (full: a GPU; quick: tiny sizes on a CPU)."""
    py, me = sys.executable, str(Path(__file__).resolve())
    batches, workers, source = study_settings()
    needs = sorted({*CELL_NEEDS, "aslhpc.doctor", "aslhpc.data.synth",
                    *(m for p in PROBES.values() for m in p[2])})
    steps = [Step("environment", 8 if quick else 20, 60 if quick else 120,
                  "torch, CUDA, driver, GPUs, imports", probe="environment", needs=())]
    steps[0].commands = [[py, str(ROOT / "benchmarks" / "gpu_probes.py"), "--imports", ",".join(needs)]]
    for name, (est, cap, mods, what) in PROBES.items():
        steps.append(Step(name, 1.5 if quick else est, cap, what, needs=mods, probe=name))
    steps.append(Step("data", 3 if quick else 60, 60 if quick else 240, "the generated stand-in dataset",
                      [[py, me, "--make-data", str(work / "data"), "4" if quick else "3001"]],
                      ("aslhpc.data.synth",)))
    if quick:
        small = ["--steps", "1", "--batch-size", "16"]
        steps.append(cell_step("bench", 14, 60, "bench: paper vs fast pipeline, 1 step each", work,
                               ["paper", "fast"], [*small, "--workers", "0"]))
        steps.append(cell_step("paper_epoch_b16", 7, 60, "the paper pipeline at batch 16 (quick)", work,
                               ["paper"], [*small, "--workers", "0"]))
        steps.append(cell_step("bench_full_fast", 7, 60, "the fast pipeline, 1 step (quick)", work,
                               ["fast"], small))
        return [*steps, doctor_step(quick, work, out)], source
    steps.append(cell_step("bench", 60, 180, "bench: paper vs fast pipeline, its default steps, batch 128",
                           work, ["paper", "fast"], ["--workers", str(workers)]))
    first = f"paper_epoch_b{batches[0]}"
    epochs = [cell_step(f"paper_epoch_b{b}", 60, 180, f"one paper-pipeline epoch at batch {b} (76,760 "
                        "images)", work, ["paper"], ["--full", "--epochs", "1", "--batch-size", str(b),
                                                     "--workers", str(workers)],
                        like=None if i == 0 else first)
              for i, b in enumerate(batches)]
    full = cell_step("bench_full_fast", 90, 240, "a whole 25-epoch fast cell (bench --full, batch 128)", work,
                     ["fast"], ["--full"])
    steps += [epochs[0], full, *epochs[1:], doctor_step(quick, work, out)]
    return steps, source


def doctor_step(quick: bool, work: Path, out: Path) -> Step:
    """The doctor's checks on this machine (its JSON report is DIR/doctor.json)."""
    doctor = [sys.executable, "-m", "aslhpc.doctor", "--data", str(work / "data"), "--results",
              str(work / "results"), "--cache-dir", str(work / "cache"), "--json", str(out / "doctor.json"),
              "--quick"]
    return Step("doctor", 8 if quick else 60, 60 if quick else 180, "python -m aslhpc.doctor --quick",
                [doctor], ("aslhpc.doctor",))


# ---- running the plan -------------------------------------------------------------------------


class Stopped(Exception):
    """SIGTERM: the current step is marked, the record saved, the run ends."""


@dataclass
class Run:
    """The state the step runners share."""

    rec: Record
    out: Path
    work: Path
    budget_s: float
    quick: bool = False
    t0: float = field(default_factory=time.monotonic)
    seconds: dict[str, float] = field(default_factory=dict)  # measured, per step
    imports: dict[str, str] = field(default_factory=dict)  # module -> "ok" | error (from environment)

    def left(self) -> float:
        return self.budget_s - RESERVE_S - (time.monotonic() - self.t0)

    def log(self, name: str, argv: list[str], text: str) -> None:
        tail = text[-LOG_TAIL_BYTES:]
        cut = f"[... {len(text) - len(tail)} characters cut ...]\n" if len(tail) < len(text) else ""
        with open(self.out / "gpu_check.log", "a", encoding="utf-8") as fh:
            fh.write(f"===== {name} =====\n$ {' '.join(argv)}\n{cut}{tail}\n")

    def unavailable(self, needs: Sequence[str]) -> str | None:
        bad = [f"{m} ({self.imports[m]})" for m in needs if self.imports.get(m, "ok") != "ok"]
        return f"does not import here: {'; '.join(bad)}" if bad else None

    def begin(self, name: str) -> None:
        self.rec.update(name, status="running", started_s=round(time.monotonic() - self.t0, 1))

    def end(self, name: str, began: float, **fields: Any) -> None:
        self.seconds[name] = time.monotonic() - began
        self.rec.update(name, seconds=round(self.seconds[name], 1), **fields)


def child_outcome(rc: int | None, text: str, ok_codes: Sequence[int] = (0,)) -> dict[str, Any]:
    """status + error/reason of a finished child (a missing module skips the step, never fails the run)."""
    if rc in ok_codes:
        return {"status": "done"}
    if rc is not None and (m := _MISSING.search(text)):
        return {"status": "skipped", "reason": f"module {m[1]} is not installed here"}
    return {"status": "failed", "error": one_line(text, rc)}


def run_probes(run: Run, group: list[Step]) -> None:
    """Consecutive probe steps in one process (one torch import); each recorded as its line arrives."""
    chosen, left = [], run.left() - PROBE_START_S[run.quick]  # the process and its torch import first
    for s in group:
        why = run.unavailable(s.needs) or decide(s.estimate_s, left)
        if why:
            run.rec.update(s.name, status="skipped", reason=why)
        else:
            chosen.append(s)
            left -= s.estimate_s
    if not chosen:
        return
    names = [s.name for s in chosen]
    argv = [*group[0].commands[0]] if group[0].commands else [sys.executable,
                                                              str(ROOT / "benchmarks" / "gpu_probes.py")]
    argv += names
    began, seen = time.monotonic(), set()
    for s in chosen:
        run.begin(s.name)

    def on_line(line: str) -> None:
        try:
            got = json.loads(line)
        except ValueError:
            return
        if not isinstance(got, dict) or got.get("probe") not in names:
            return
        verdict, name = got.get("status"), got["probe"]
        status = {"skip": "skipped", "fail": "failed"}.get(verdict, "done")
        extra = {"reason": got.get("saw")} if status == "skipped" else (
            {"error": got.get("saw")} if status == "failed" else {})
        seen.add(name)
        run.seconds[name] = float(got.get("seconds") or 0)
        run.rec.update(name, status=status, verdict=verdict, saw=got.get("saw"),
                       figures=got.get("figures", {}), seconds=got.get("seconds"), **extra)
        if name == "environment":
            run.imports = dict(got.get("figures", {}).get("imports", {}))

    cap = min(sum(s.cap_s for s in chosen), max(1.0, run.left()))
    rc, text = run_child(argv, cap, on_line)
    run.log("+".join(names), argv, text)
    for s in chosen:
        if s.name not in seen:
            got = child_outcome(None if rc is None else (rc or 1), text)
            if got["status"] == "failed":
                got["error"] = f"the probe process ended before it ({got['error']})"
            run.end(s.name, began, **got)


CELL_MARK = "GPU_CHECK_CELL "
HEADLINE = ("images_per_s", "train_time_s", "exec_time_s", "data_prep_s", "amp", "tf32", "data_location",
            "host_memory", "val_acc", "test_acc", "batch_size", "gpus", "device")


def cell_record(info: dict[str, Any]) -> dict[str, Any]:
    """A finished cell: its printed headline, its result.json and epochs.jsonl as written."""
    folder = Path(info["dir"])
    rec: dict[str, Any] = {"headline": {k: info[k] for k in HEADLINE if k in info}, "dir": folder.name}
    try:
        rec["result"] = json.loads((folder / "result.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        rec["result_error"] = f"{type(exc).__name__}: {exc}"
    try:
        lines = (folder / "epochs.jsonl").read_text(encoding="utf-8").splitlines()
        rec["epochs"] = [json.loads(ln) for ln in lines if ln.strip()]
    except (OSError, ValueError):
        rec["epochs"] = []
    return rec


def pack_cells(run: Run) -> None:
    """Every cell folder so far into DIR/cells.tar.gz (atomically); checkpoints and big files left out."""
    cells = run.work / "cells"
    if not cells.is_dir():
        return
    target = run.out / "cells.tar.gz"
    tmp = run.out / ".cells.tar.gz.tmp"
    with tarfile.open(tmp, "w:gz") as tar:
        for f in sorted(cells.rglob("*")):
            if f.is_file() and f.suffix not in (".pt", ".pth", ".lock") and f.stat().st_size <= CELL_FILE_MAX:
                tar.add(f, arcname=str(f.relative_to(cells)))
    if tmp.stat().st_size > MAX_FILE_BYTES:
        tmp.unlink()
        run.rec.data["cells_tar"] = "left out: over 16 MiB"
        return
    os.replace(tmp, target)
    run.rec.data["cells_tar"] = target.name


def run_commands(run: Run, step: Step) -> None:
    """A non-probe step: its commands in turn, each limited by the time left; figures by kind."""
    run.begin(step.name)
    began, cells, outcome = time.monotonic(), {}, {"status": "done"}
    for argv in step.commands:
        found: list[dict[str, Any]] = []

        def on_line(line: str, found: list[dict[str, Any]] = found) -> None:
            if line.startswith(CELL_MARK):
                found.append(json.loads(line[len(CELL_MARK):]))

        rc, text = run_child(argv, min(step.cap_s, max(1.0, run.left())), on_line)
        run.log(step.name, argv, text)
        outcome = child_outcome(rc, text, (0, 1) if step.name == "doctor" else (0,))
        if found:
            cells[found[-1].get("pipeline", "cell")] = cell_record(found[-1])
        if step.name == "data" and rc == 0:
            run.rec.step(step.name)["saw"] = text.strip().splitlines()[-1] if text.strip() else ""
        if step.name == "doctor" and outcome["status"] == "done":
            run.rec.step(step.name).update(doctor_figures(run.out, rc))
        if outcome["status"] != "done":
            break
    if cells:
        figs = cell_figures(cells)
        run.rec.step(step.name).update(cells=cells, figures=figs, saw=cell_saw(cells, figs))
        pack_cells(run)
    run.end(step.name, began, **outcome)


def cell_figures(cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """images/s per pipeline and, for bench, the fast/paper ratio."""
    figs: dict[str, Any] = {}
    for pipeline, c in cells.items():
        for k, v in c["headline"].items():
            figs[f"{pipeline}_{k}"] = v
    paper, fast = figs.get("paper_images_per_s"), figs.get("fast_images_per_s")
    if paper and fast:
        figs["ratio_fast_over_paper"] = round(fast / paper, 3)
    return figs


def _num(v: Any, fmt: str) -> str:
    return format(v, fmt) if isinstance(v, int | float) and not isinstance(v, bool) else str(v)


def cell_saw(cells: dict[str, dict[str, Any]], figs: dict[str, Any]) -> str:
    """One line per step: each cell's images/s, times, precision and what its per-process memory says."""
    parts = []
    for pipeline, c in cells.items():
        h, tel = c["headline"], (c.get("result") or {}).get("telemetry") or {}
        parts.append(f"{pipeline} {_num(h.get('images_per_s'), '.1f')} images/s (train "
                     f"{_num(h.get('train_time_s'), '.1f')} s, exec {_num(h.get('exec_time_s'), '.1f')} s, "
                     f"amp {h.get('amp')}, tf32 {h.get('tf32', 'not recorded')}, per-process memory "
                     f"{tel.get('per_process', 'not recorded')})")
    if "ratio_fast_over_paper" in figs:
        parts.append(f"ratio fast/paper {figs['ratio_fast_over_paper']:.2f}")
    return "; ".join(parts)


def doctor_figures(out: Path, rc: int | None) -> dict[str, Any]:
    """The doctor's verdict per check (exit 1 = it found a problem: a figure, not a crash)."""
    try:
        report = json.loads((out / "doctor.json").read_text(encoding="utf-8"))
        rows = {c["name"]: c for c in report["checks"]}
    except (OSError, ValueError, KeyError, TypeError):
        return {"saw": "no doctor report (see gpu_check.log)"}
    figures: dict[str, Any] = {"ok": report.get("ok"), **{k: v.get("status") for k, v in rows.items()}}
    probe = rows.get("throughput probe", {}).get("figures", {})
    figures["probe_images_per_s"], figures["probe_device"] = probe.get("images_per_s"), probe.get("device")
    figures["sampler_tick_us"] = rows.get("sampler tick", {}).get("figures", {}).get("median_us")
    figures["per_process"] = rows.get("NVML per-process memory", {}).get("figures", {}).get("per_process")
    bad = [f"{k}: {v.get('status')} ({v.get('found', '')})" for k, v in rows.items()
           if v.get("status") in ("fail", "warn")]
    return {"figures": figures, "verdict": "ok" if rc == 0 else "problems found",
            "saw": f"exit {rc}; " + ("; ".join(bad) if bad else "no failures or warnings")}


def execute(run: Run, steps: list[Step]) -> None:
    """The plan, in order: probe groups in one process each, the rest one by one; budget checked first."""
    i = 0
    while i < len(steps):
        step = steps[i]
        if step.probe and step.name != "environment":
            j = i
            while j < len(steps) and steps[j].probe and steps[j].name != "environment":
                j += 1
            guarded(run, run_probes, steps[i:j])
            i = j
            continue
        why = run.unavailable(step.needs) or decide(estimate_of(step, run.seconds), run.left())
        if why:
            run.rec.update(step.name, status="skipped", reason=why)
        else:
            guarded(run, run_probes if step.probe else run_commands, [step] if step.probe else step)
        i += 1


def guarded(run: Run, fn: Callable[[Run, Any], None], arg: Any) -> None:
    """A bug or an OS error of this script while it runs a step fails that step, not the run."""
    try:
        fn(run, arg)
    except (Stopped, KeyboardInterrupt):
        raise
    except Exception as exc:  # noqa: BLE001 - recorded as the step's one-line error
        for s in run.rec.data["steps"]:
            if s["status"] == "running":
                s.update(status="failed", error=f"gpu_check itself: {type(exc).__name__}: {exc}"[:300])
        run.rec.save()


# ---- child modes ------------------------------------------------------------------------------


def cell_main(argv: list[str]) -> int:
    """``--cell PIPELINE OUT DATA CACHE -- BENCH_ARGS``: one of bench's cells, kept in OUT/PIPELINE.

    Uses bench's own parser and config, so the cell is the one ``python -m aslhpc.bench`` would time,
    but its folder (result.json, epochs.jsonl, samples.csv) stays for the record.
    """
    import multiprocessing

    import torch

    from aslhpc import bench

    pipeline, out, data, cache = argv[:4]
    args = bench.build_parser().parse_args(argv[5:])
    gpus = args.gpus if args.gpus is not None else (1 if torch.cuda.is_available() else 0)  # as bench does
    try:
        cfg = bench.pipeline_config(pipeline, Path(data), Path(out), Path(cache), args, gpus)
    except TypeError:  # bench's helper changed its shape: the same settings, straight into TrainConfig
        from aslhpc.training.config import TrainConfig

        cfg = TrainConfig(data=data, out=str(Path(out) / pipeline), gpus=gpus,
                          batch_size=args.batch_size,
                          epochs=args.epochs if args.full else 2, pipeline=pipeline, workers=args.workers,
                          cache_dir=cache, log_every=0, max_steps=0 if args.full else args.steps,
                          sample_interval_s=5.0, amp=args.amp)
    result = bench.run_pipeline(cfg, multiprocessing.get_start_method())
    info = {k: result.get(k) for k in HEADLINE if k in result}
    line = json.dumps({"pipeline": pipeline, "dir": str(cfg.out), **info}, default=str)
    print(CELL_MARK + line, flush=True)
    return 0


def _write_class(root: str, k: int, per_class: int) -> int:
    """Class k exactly as ``aslhpc.data.synth.write_dataset(seed=0)`` writes it (its RNG is per class)."""
    import numpy as np

    from aslhpc.data.layout import CANONICAL_CLASSES, TRAIN_DIR
    from aslhpc.data.synth import _save, _Walk, render

    rng = np.random.default_rng([0, k])
    walk = _Walk(rng, 200)
    d = Path(root) / TRAIN_DIR / TRAIN_DIR / CANONICAL_CLASSES[k]
    d.mkdir(parents=True, exist_ok=True)
    for n in range(1, per_class + 1):
        _save(render(k, walk.step(), rng, 200), d / f"{CANONICAL_CLASSES[k]}{n}.jpg")
    return per_class


def make_data(argv: list[str]) -> int:
    """``--make-data DIR PER_CLASS``: the generated dataset, one process per class (29 at most).

    write_dataset is serial (~2 minutes for 87,029 images); its classes are independent, so this
    writes the same files in parallel and leaves more of the loan to the measurements.
    """
    from concurrent.futures import ProcessPoolExecutor

    root, per_class = Path(argv[0]), int(argv[1])
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    workers = min(29, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)
    try:
        with ProcessPoolExecutor(max(1, workers)) as pool:
            n = sum(pool.map(_write_class, [str(root)] * 29, range(29), [per_class] * 29))
    except ImportError:  # synth's helpers moved: its public, serial writer
        from aslhpc.data.synth import write_dataset

        write_dataset(root, per_class=per_class, seed=0, test_folder=False, overwrite=True)
        n, workers = 29 * per_class, 1
    print(f"wrote {n} images (29 classes x {per_class}) to {root} in {time.perf_counter() - t0:.1f} s "
          f"with {workers} processes")
    return 0


# ---- the summary ------------------------------------------------------------------------------


def device_name(rec: dict[str, Any]) -> str:
    env = next((s for s in rec["steps"] if s["name"] == "environment"), {}).get("figures", {})
    gpus = env.get("gpus") or []
    if gpus:
        return f"{len(gpus)}x {gpus[0]['name']}" if len(gpus) > 1 else gpus[0]["name"]
    return f"CPU: {env.get('cpu') or platform.processor() or 'unknown'} (no CUDA GPU)"


def markdown(rec: dict[str, Any]) -> str:
    """README-ready: which machine, every step's outcome, and the cells' figures as table rows."""
    env = next((s for s in rec["steps"] if s["name"] == "environment"), {}).get("figures", {})
    lines = [f"# GPU check: {device_name(rec)}", "",
             f"{rec['started']} | host {rec['host']} | {'quick (tiny sizes)' if rec['quick'] else 'full'} | "
             f"torch {env.get('torch')} CUDA {env.get('cuda')} driver {env.get('driver')} | budget "
             f"{rec['budget_s']:.0f} s, took {rec['seconds']} s", "",
             "| step | status | s (estimate) | what it saw |", "|---|---|---|---|"]
    for s in rec["steps"]:
        saw = s.get("saw") or s.get("error") or s.get("reason") or ""
        took = "-" if s["seconds"] is None else s["seconds"]
        cell = [s["name"], s["status"], f"{took} ({s['estimate_s']})", str(saw)[:300]]
        lines.append("| " + " | ".join(c.replace("|", "/").replace("\n", " ") for c in cell) + " |")
    lines += ["", f"## Figures for the README's \"GPU figures\" section ({device_name(rec)})", "",
              "| step | pipeline | batch | images/s | train s | exec s | data prep s | amp | tf32 |",
              "|---|---|---|---|---|---|---|---|---|"]
    for s in rec["steps"]:
        for pipeline, c in (s.get("cells") or {}).items():
            h, cfg = c["headline"], (c.get("result") or {}).get("config", {})
            row = [s["name"], pipeline, cfg.get("batch_size", h.get("batch_size", "")), h.get("images_per_s"),
                   h.get("train_time_s"), h.get("exec_time_s"), h.get("data_prep_s"), h.get("amp"),
                   h.get("tf32")]
            lines.append("| " + " | ".join("" if v is None else _num(v, ".2f") for v in row) + " |")
    return "\n".join(lines) + "\n"


# ---- main -------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="bash benchmarks/gpu_check.sh", description=__doc__.splitlines()[0])
    p.add_argument("--budget-s", type=float, default=420.0,
                   help="seconds for the whole run (default 420): a step that would not fit is skipped")
    p.add_argument("--quick", action="store_true", default=os.environ.get("ASLHPC_GPU_CHECK_QUICK") == "1",
                   help="tiny sizes: runs on a CPU in well under a minute (CI)")
    p.add_argument("--out", type=Path, default=None, help="where the <= 5 result files go "
                   "(default results/gpu_check/<host>-<time>)")
    p.add_argument("--work", type=Path, default=None, help="generated data, cache and cell folders "
                   "(default: a new folder under $TMPDIR, removed at the end)")
    p.add_argument("--keep-work", action="store_true", help="leave the work folder in place")
    a = p.parse_args(argv)
    if not a.budget_s > 0:
        p.error(f"--budget-s {a.budget_s}: give a positive number of seconds, e.g. 420")
    return a


def setup(a: argparse.Namespace, stamp: str) -> tuple[Path, Path]:
    """--out (fresh) and the work folder outside it."""
    out = (a.out or ROOT / "results" / "gpu_check" / f"{socket.gethostname()}-{stamp}").resolve()
    out.mkdir(parents=True, exist_ok=True)
    for old in ("gpu_check.json", "gpu_check.md", "gpu_check.log", "cells.tar.gz", "doctor.json"):
        (out / old).unlink(missing_ok=True)  # a rerun into the same folder starts clean
    work = (a.work or Path(tempfile.mkdtemp(prefix="aslhpc-gpu-check-"))).resolve()
    if work == out or out in work.parents or work in out.parents:
        sys.exit(f"error: --work {work} and --out {out} overlap; give folders side by side")
    work.mkdir(parents=True, exist_ok=True)
    return out, work


def _sigterm(signum: int, frame: Any) -> None:
    Child.kill()
    raise Stopped(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--make-data"]:
        return make_data(argv[1:])
    if argv[:1] == ["--cell"]:
        return cell_main(argv[1:])
    a = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out, work = setup(a, stamp)
    steps, source = build_steps(a.quick, work, out)
    estimates = [(s.name, s.estimate_s) for s in steps]
    head = {"host": socket.gethostname(), "started": stamp, "quick": a.quick, "budget_s": a.budget_s,
            "python": platform.python_version(), "executable": sys.executable, "out": str(out),
            "work": str(work), "study_settings": source,
            "plan": [{"name": n, "estimate_s": e, "would_skip": w} for (n, e), (_, w) in zip(
                estimates, plan_budget(estimates, a.budget_s), strict=True)]}
    run = Run(Record(out, head, steps), out, work, a.budget_s, a.quick)
    signal.signal(signal.SIGTERM, _sigterm)
    rc = 0
    try:
        execute(run, steps)
    except (Stopped, KeyboardInterrupt) as exc:
        for s in run.rec.data["steps"]:
            if s["status"] == "running":
                s.update(status="failed", error=f"stopped by {exc or 'an interrupt'} while it ran")
        rc = 143
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        if not a.keep_work:
            shutil.rmtree(work, ignore_errors=True)
    return finish(run, rc)


def finish(run: Run, rc: int) -> int:
    """The last record, the summary file and the printed summary; exit 1 if a step failed."""
    rec = run.rec.data
    rec["finished"], rec["device"] = rc == 0, device_name(rec)
    run.rec.save()
    text = markdown(rec)
    atomic_write_text(run.out / "gpu_check.md", text)
    rec["out_files"] = sorted(str(p.relative_to(run.out)) for p in run.out.rglob("*") if p.is_file())
    rec["out_problems"] = out_problems(run.out)
    run.rec.save()
    print(text)
    print(f"figures in {run.out / 'gpu_check.json'} (+ gpu_check.md, gpu_check.log, cells.tar.gz, "
          "doctor.json)")
    counts = {k: sum(s["status"] == k for s in rec["steps"]) for k in STATUSES}
    print("steps: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v))
    return rc or (1 if counts["failed"] or rec["out_problems"] else 0)


if __name__ == "__main__":
    sys.exit(main())
