"""``submit --until-conclusive``: rounds of extra repeats until the verdicts more runs can settle are decided.

A round is submit as usual. Once its cells have ended, :func:`decide` reads the experiment once, decides the
verdicts, asks :func:`aslhpc.analysis.conclusive.plan_repeats` which configurations one more run each would
settle the open ones with, and records the round in the manifest (``rounds``): what was still open, the
GPU-hours it spent, and either the next round (its cells, in the same write as the spec's ``extra_repeats``
that make them) or why it stops: every verdict decided, the rest not fixable by repeats, ``--max-rounds``
spent, or the next round would pass ``--budget-gpu-hours``. The next round is then an ordinary submit of the
grown matrix (completed cells are skipped), so a round killed anywhere resumes on the next call without
running a cell twice: an undecided round is decided only once all of the experiment's cells have ended.

Locally (or with ``--wait``) :func:`run_rounds` loops in the foreground. On SLURM without ``--wait`` the
dependent collect job runs ``python -m aslhpc.submit --next-round``, i.e. :func:`next_round`: it decides,
writes the round's report, and submits the next round with another such job after it, so the chain walks on
with the user's shell closed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aslhpc.analysis.analyze import CollectOutput
from aslhpc.analysis.conclusive import RepeatPlan, plan_repeats
from aslhpc.analysis.outputs import write_outputs
from aslhpc.collecting import analyze_snapshot
from aslhpc.errors import AslhpcError
from aslhpc.orchestration.actions import crash_point
from aslhpc.orchestration.cellstate import experiment_status
from aslhpc.orchestration.experiment import ExperimentSpec
from aslhpc.orchestration.manifest import MANIFEST, Manifest, Round, Rounds, load_manifest, now_iso
from aslhpc.orchestration.submission import (
    SubmitOptions,
    SubmitResult,
    experiment_lock,
    submit_experiment,
)
from aslhpc.slurmenv import outside_this_job
from aslhpc.snapshot import load_snapshot
from aslhpc.states import LIVE, CellState

Out = Callable[[str], None]
#: one round's submit: returns once its cells ended (at once with a chain on SLURM); None: interrupted
Submitter = Callable[[ExperimentSpec, SubmitOptions], SubmitResult | None]

#: what :class:`Decision.kind` says: a new round was planned, the study stopped, or cells are still to end
NEXT, STOPPED, WAITING = "next", "stopped", "waiting"


@dataclass(frozen=True)
class Decision:
    """What :func:`decide` found after round ``round``: ``kind`` (:data:`NEXT`, :data:`STOPPED`,
    :data:`WAITING`), the plan, the next round's spec and cells, and a sentence for the user."""

    kind: str
    round: int
    text: str
    plan: RepeatPlan | None = None
    spec: ExperimentSpec | None = None
    added: tuple[str, ...] = ()
    output: CollectOutput | None = None


def _spent(out: CollectOutput, cells: list[str]) -> float:
    """GPU-hours of ``cells``: exec time x GPUs of each completed one (the training clock, not the queue)."""
    frame = out.analysis.cells
    mine = frame[frame["cell_id"].isin(cells)]
    hours = [float(h) for h in mine["gpu_hours"] if h is not None and math.isfinite(h)]
    return sum(hours)


def _next_cost(out: CollectOutput, plan: RepeatPlan) -> float:
    """The next round's GPU-hours, estimated: each configuration's mean measured GPU-hours per run."""
    frame = out.analysis.cells
    cost = 0.0
    for c in plan.repeat:
        rows = frame[(frame["gpus"] == c.gpus) & (frame["batch_size"] == c.batch_size)
                     & (frame["strategy"] == c.strategy) & (frame["split_kind"] == c.split_kind)]
        hours = rows["gpu_hours"].dropna()
        cost += float(hours.mean()) if len(hours) else 0.0
    return cost


def _stop_reason(rounds: Rounds, plan: RepeatPlan, spent: float, next_cost: float) -> str:
    """Why no further round ('' when there should be one)."""
    if plan.conclusive:
        if plan.unfixable:
            rest = "; ".join(f"{h}: {why}" for h, why in plan.unfixable)
            return f"every verdict more runs could settle is decided; not fixable by repeats: {rest}"
        return "conclusive: every verdict is decided"
    still = ", ".join(plan.open)
    if len(rounds.rounds) >= rounds.max_rounds:
        return f"--max-rounds {rounds.max_rounds} spent; still open: {still}"
    budget = rounds.budget_gpu_hours
    if budget is not None and spent + next_cost > budget:
        return (f"the next round (about {next_cost:.3g} GPU-hours) would pass --budget-gpu-hours {budget:g} "
                f"({spent:.3g} spent); still open: {still}")
    return ""


def _keys(spec: ExperimentSpec, plan: RepeatPlan) -> dict[str, int]:
    """The plan's configurations as the spec names them (a configuration the spec lacks is left out)."""
    keys = spec.config_keys()
    found = (keys.get((c.gpus, c.batch_size, c.strategy, c.split_kind)) for c in plan.repeat)
    return {k: 1 for k in found if k}


def decide(exp_dir: str | Path) -> Decision:
    """After the last round: read the experiment once, decide, record the decision in the manifest."""
    exp_dir = Path(exp_dir)
    path = exp_dir / MANIFEST
    report = experiment_status(path)
    # Waiting means a job will still act: one queued or running, or a cell the next submit will send. A cell
    # SLURM cannot tell about (UNKNOWN) is no reason to wait: it counts as a hole, or the chain would
    # resubmit its own step forever with nothing to wait for.
    todo = [r.cell_id for r in report.rows if r.state in LIVE or r.state == CellState.NOT_SUBMITTED]
    manifest = _rounds_manifest(path)
    rounds = manifest.rounds
    assert rounds is not None
    last = rounds.rounds[-1]
    if last.decided:
        return Decision(STOPPED, last.round, last.outcome or f"round {last.round} was the last")
    if todo:
        return Decision(WAITING, last.round, f"round {last.round}: {len(todo)} cell(s) not ended yet "
                        f"({', '.join(todo[:4])}{', ...' if len(todo) > 4 else ''})")
    states = {r.cell_id: (r.state, r.error) for r in report.rows if r.state != CellState.COMPLETED}
    out = analyze_snapshot(load_snapshot(exp_dir, states, accounting=False))
    plan = plan_repeats(out.analysis.verdicts)
    with experiment_lock(exp_dir):
        manifest = _rounds_manifest(path)  # re-read under the lock: nothing else changed it meanwhile
        rounds = manifest.rounds
        assert rounds is not None
        last = rounds.rounds[-1]
        if last.decided:  # another process decided this round while we read
            return Decision(STOPPED, last.round, last.outcome or f"round {last.round} was decided elsewhere")
        last.gpu_hours = _spent(out, last.cells)
        last.open = list(plan.open)
        last.decided = True
        spec = ExperimentSpec.from_dict({**manifest.spec, "name": manifest.experiment})
        stop = _stop_reason(rounds, plan, rounds.spent, _next_cost(out, plan))
        added: tuple[str, ...] = ()
        grown = spec
        if not stop:
            grown = spec.with_extra_repeats(_keys(spec, plan))
            added = tuple(c.cell_id for c in grown.cells() if c.cell_id not in manifest.cells)
            if not added:
                stop = f"no configuration to repeat is in the matrix; still open: {', '.join(plan.open)}"
        if stop:
            last.outcome = stop
        else:
            rounds.rounds.append(Round(last.round + 1, now_iso(), list(added)))
            manifest.spec = grown.to_dict()
            manifest.ensure_cells(grown.cells())
        manifest.save(path)
    crash_point("round-decided")  # decision recorded, its cells not submitted yet: the next call submits them
    out.rounds = [r.record() for r in rounds.rounds]
    if stop:
        return Decision(STOPPED, last.round, f"round {last.round}: stopped: {stop}", plan, output=out)
    text = (f"round {last.round}: open: {', '.join(plan.open)}; round {last.round + 1} runs "
            f"{len(added)} configuration(s) once more: {', '.join(added)}")
    return Decision(NEXT, last.round, text, plan, grown, added, out)


def _rounds_manifest(path: Path) -> Manifest:
    manifest = load_manifest(path)
    if manifest is None or manifest.rounds is None or not manifest.rounds.rounds:
        raise AslhpcError(f"{path.parent} was not submitted with --until-conclusive (its manifest has no "
                          "rounds); submit it with --until-conclusive first")
    return manifest


def next_round(exp_dir: str | Path, options: SubmitOptions, out: Out = print) -> Decision:
    """One step of the chain: decide after the last round, write its report, submit what comes next (the
    new round, or the cells a killed round left unsubmitted); nothing after the last."""
    exp_dir = Path(exp_dir)
    decision = decide(exp_dir)
    out(decision.text)
    if decision.output is not None:
        write_outputs(decision.output, plots=True)
        if decision.output.report_path is not None:
            out(f"report: {decision.output.report_path}")
    if decision.kind == STOPPED:
        return decision
    manifest = _rounds_manifest(exp_dir / MANIFEST)
    spec = ExperimentSpec.from_dict({**manifest.spec, "name": manifest.experiment})
    with outside_this_job():  # run as the chain's job: what it submits must not inherit its allocation
        submit_experiment(spec, options, out)
    return decision


def run_rounds(spec: ExperimentSpec, options: SubmitOptions, out: Out = print,
               submit: Submitter | None = None) -> Decision:
    """The rounds from here: ``submit`` each (default :func:`submit_experiment`; it returns once the cells
    have ended, as a local submit or one that waits on SLURM does; None: interrupted), decide, and again
    until the study stops. With ``options.chain`` a SLURM submit returns at once: its dependent job takes
    the next step (:func:`next_round`)."""
    if options.until is None:
        raise AslhpcError("run_rounds needs SubmitOptions.until (the --until-conclusive limits)")
    submit = submit or (lambda s, o: submit_experiment(s, o, out))
    decision = Decision(WAITING, 0, "")
    for _ in range(2 * options.until.max_rounds + 2):  # each round: one submit, at most one resumed one
        result = submit(spec, options)
        if result is None:
            return Decision(STOPPED, decision.round, "interrupted: submit again with --until-conclusive to "
                            "go on")
        if result.backend.queued and options.chain:
            return Decision(WAITING, decision.round, "the rounds go on on the cluster: the dependent job "
                            "decides after this round and submits the next")
        decision = decide(spec.experiment_dir)
        out(decision.text)
        if decision.output is not None:
            write_outputs(decision.output, plots=True)
        if decision.kind == STOPPED:
            return decision
        if decision.spec is not None:
            spec = replace(decision.spec, data=spec.data, results=spec.results)
    return decision
