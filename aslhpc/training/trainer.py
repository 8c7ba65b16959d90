"""Train one (GPU count, batch size) cell: the 2020 recipe, resumable, measured.

:func:`run_cell` reads top to bottom like torchvision's references/classification ``main``:
plan devices -> build data -> restore -> wrap model -> epochs -> finish. The passes themselves
are in :mod:`.loop`, the data in :mod:`.celldata`, checkpoints and the cell lock in
:mod:`.checkpoint`, rank facts and collectives in :mod:`.distributed`.

Resume contract: a checkpoint is written after every epoch (model, optimizer, scaler, torch
RNG, bookkeeping). Shuffling is seeded per epoch, so a run killed after epoch k and restarted
with the same command continues from k and ends with the same metrics as an uninterrupted run
(bit-identical on CPU with the same thread count).

Threads: CPU kernels split their reductions by thread count, so a cell's numbers depend on it
(the same cell on 1 and 2 threads differs in the last digits, and after 25 epochs by more).
Each cell sets intra-op threads from its own CPU allocation (``cpu_threads``, else
``OMP_NUM_THREADS``, else the CPUs this process may run on) and records them; set
``cpu_threads`` to the same value to compare cells run in different places bit for bit.
"""

from __future__ import annotations

import datetime as dt
import inspect
import math
import os
import platform
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn

from aslhpc import __version__
from aslhpc.atomic import append_jsonl, atomic_write_json, atomic_write_text, read_json, read_jsonl
from aslhpc.cellfiles import RESULT_SCHEMA, CellPaths
from aslhpc.data import preprocess, scan_dataset
from aslhpc.errors import CRASH_ENV, HOLD_ENV, HOLD_S, AslhpcError, DataError
from aslhpc.telemetry import Sampler, collect_provenance
from aslhpc.telemetry.cellsummary import whole_cell
from aslhpc.telemetry.provenance import run_slurm, run_versions
from aslhpc.training import models
from aslhpc.training.celldata import CellData, build_data, extra_test, skipped_images
from aslhpc.training.checkpoint import cell_lock, load_checkpoint, save_checkpoint, truncate_epochs
from aslhpc.training.config import TrainConfig
from aslhpc.training.devices import DevicePlan, Precision, choose_precision, plan_devices
from aslhpc.training.distributed import (
    Dist,
    dist_from_env,
    join_process_group,
    leave_process_group,
    merge_rank_telemetry,
    rank_digests,
    sync_buffers,
)
from aslhpc.training.hostmem import retain_freed_memory
from aslhpc.training.loop import CLOCK, AutocastForward, Log, Stats, evaluate, train_one_epoch
from aslhpc.training.memformat import FORMATS, configured_format, probe_memory_format
from aslhpc.training.modelio import model_state, save_model

TEST_PREDICTIONS = "test_predictions.csv"  # per-image test predictions of the best model (issue 25.5)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _print(msg: str) -> None:
    print(msg, flush=True)


@dataclass
class CellRun:
    """One cell's fixed facts for this attempt: what to run, where, and where its files go."""

    cfg: TrainConfig
    paths: CellPaths
    dist: Dist
    experiment: str
    cell_id: str
    log: Log
    plan: DevicePlan = field(default=None)  # type: ignore[assignment]  # set by plan_cell
    precision: Precision = field(default=None)  # type: ignore[assignment]
    setup: dict[str, Any] = field(default_factory=dict)  # what was applied: host memory, threads, backend ...

    @property
    def device(self) -> torch.device:
        return self.plan.device

    def say(self, msg: str) -> None:
        if self.dist.main:
            self.log(msg)


@dataclass
class Progress:
    """What a checkpoint carries from one attempt to the next."""

    epoch: int = 0
    best: dict[str, Any] = field(default_factory=lambda: {"val_loss": float("inf"), "epoch": 0})
    best_state: dict[str, torch.Tensor] | None = None
    exec_s: float = 0.0
    train_s: float = 0.0
    train_images: int = 0
    started_at: str = field(default_factory=_now)
    amp_observed: set[str] = field(default_factory=set)
    memory_format: str = ""  # the format the cell's epochs train in ("" = not chosen yet)


@dataclass
class Model:
    """The bare model and what trains it; ``wrapped`` runs the training passes, ``evaluator`` the others."""

    bare: nn.Module
    classes: tuple[str, ...]
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    fused: bool
    info: dict[str, Any]  # models.model_info: spec, parameters, FLOPs per image
    wrapped: nn.Module = field(default=None)  # type: ignore[assignment]
    evaluator: nn.Module = field(default=None)  # type: ignore[assignment]
    compiled: bool = False


# --------------------------------------------------------------------------- the cell, top to bottom


def run_cell(cfg: TrainConfig, *, experiment: str = "", cell_id: str = "",
             log: Log = _print) -> dict[str, Any]:
    """Train one cell into ``cfg.out``; resume if a checkpoint is there; return the result dict.

    Writes ``error.json`` (rank r > 0: ``error.rank<r>.json``) and re-raises if anything fails.
    """
    paths = CellPaths(Path(cfg.out))
    paths.root.mkdir(parents=True, exist_ok=True)
    dist = dist_from_env(cfg)
    experiment = experiment or paths.root.parent.parent.name
    cell = CellRun(cfg, paths, dist, experiment, cell_id or paths.root.name, log)
    with cell_lock(paths.root, dist.rank):
        done = finished_result(cell)
        if done is not None:
            return done
        try:
            plan_cell(cell)
            index = scan_dataset(cfg.data)
            # the model is measured on the meta device first: a factory that cannot run at this image
            # size fails here, before the cache is built or anything trains (submit checks the same;
            # a direct train does not go through submit)
            info = models.model_info(cfg.model, len(index.classes), cfg.image_size, dropout=cfg.dropout)
            data = build_data(cfg, cell.plan, dist, log, index)
            model = build_model(cell, tuple(index.classes), info)
            progress = restore(cell, model)
            choose_memory_format(cell, data, model, progress)
            wrap_model(cell, model)
            return train_and_finish(cell, data, model, progress)
        except BaseException as exc:
            record_error(cell, exc)
            raise
        finally:
            leave_process_group(dist)


def finished_result(cell: CellRun) -> dict[str, Any] | None:
    """The cell's result.json when it is already done with this configuration (nothing to train)."""
    if not cell.paths.result.exists():
        return None
    done = read_json(cell.paths.result)
    if done.get("config") and TrainConfig.from_dict(done["config"]).identity() == cell.cfg.identity():
        cell.log(f"{cell.paths.result} exists for this configuration; nothing to do")
        return done
    raise AslhpcError(f"{cell.paths.result} holds a finished cell with a different configuration; "
                      "use another --out")


def error_path(cell: CellRun) -> Path:
    """Every rank records its own failure: under NCCL a failing rank > 0 may leave rank 0 hanging."""
    if cell.dist.main:
        return cell.paths.error
    return cell.paths.error.with_name(f"error.rank{cell.dist.rank}.json")


def record_error(cell: CellRun, exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt | SystemExit):
        return
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    atomic_write_json(error_path(cell), {"error": f"{type(exc).__name__}: {first}", "rank": cell.dist.rank,
                                         "traceback": traceback.format_exc(), "time": _now()})


# --------------------------------------------------------------------------- 1. devices and process settings


def plan_cell(cell: CellRun) -> None:
    """Devices, process group, precision, threads and allocator settings of this attempt."""
    cfg, dist = cell.cfg, cell.dist
    plan = plan_devices(cfg.gpus, cfg.allow_cpu, dist.local_rank if dist.world > 1 else None)
    cell.plan = plan
    paper = cfg.pipeline == "paper"
    if plan.is_cuda:
        # Each DDP rank must make its own GPU current, or NCCL collectives and CUDA events land on cuda:0.
        torch.cuda.set_device(plan.device)
    cell.setup["backend"] = join_process_group(dist, plan)  # after planning: a CPU fallback joins with gloo
    # The paper pipeline runs fp32, contiguous, without cudnn autotuning (our assumption of the 2020 setup:
    # the study names none of them); the fast one uses all three.
    cell.precision = choose_precision("fp32" if paper else cfg.amp, plan.device)
    torch.backends.cudnn.benchmark = plan.is_cuda and not paper
    cell.setup["tf32"] = set_tf32(cell.precision.name, plan.is_cuda)
    cell.setup["threads"] = set_threads(cfg)
    # Trick (fast pipeline, CPU): freed activation memory stays in the heap instead of being
    # unmapped and page-faulted back in every step (hostmem.py: 1.5x on a 2-core VM). It lasts
    # for the rest of this process, which is this cell's.
    cell.setup["host_memory"] = retain_freed_memory(cfg.reuse_host_memory and not paper and not plan.is_cuda)
    if plan.fallback:
        cell.say(plan.fallback)
    error_path(cell).unlink(missing_ok=True)
    if dist.main:
        atomic_write_json(cell.paths.config, cfg.to_dict())


def set_tf32(precision: str, is_cuda: bool) -> bool:
    """fp32 means fp32: torch lets cuDNN convolutions use TF32 on Ampere/Hopper by default, so an fp32 run
    turns TF32 off for convolutions and matmuls. Returns whether TF32 is in force for this run (never on
    a CPU; with fp16/bf16 autocast the flags are left as torch has them and recorded as they are)."""
    if precision == "fp32":
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return bool(is_cuda and (torch.backends.cudnn.allow_tf32 or torch.backends.cuda.matmul.allow_tf32))


def set_threads(cfg: TrainConfig, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Intra-op threads from the cell's own CPU allocation, applied and recorded (see the module notes)."""
    env = dict(os.environ) if env is None else env
    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        allowed = os.cpu_count() or 1
    if cfg.cpu_threads:
        n, why = cfg.cpu_threads, "cpu_threads"
    elif env.get("OMP_NUM_THREADS", "").isdigit() and int(env["OMP_NUM_THREADS"]) > 0:
        n, why = int(env["OMP_NUM_THREADS"]), "OMP_NUM_THREADS"
    else:
        n, why = allowed, "CPUs allowed (the job's CPU allocation)"
    torch.set_num_threads(n)
    return {"intra_op": torch.get_num_threads(), "inter_op": torch.get_num_interop_threads(),
            "cpus_allowed": allowed, "chosen_by": why}


# --------------------------------------------------------------------------- 2. model, restore, wrap


def sgd_options(device: torch.device) -> dict[str, Any]:
    """``fused=True`` on CUDA where torch has it: with a GradScaler, plain SGD waits for the GPU every
    step (``.item()`` on the inf check); the fused kernel takes the scale and the inf flag on the device."""
    if device.type == "cuda" and "fused" in inspect.signature(torch.optim.SGD).parameters:
        return {"fused": True}
    return {}


def build_model(cell: CellRun, classes: tuple[str, ...], info: dict[str, Any]) -> Model:
    cfg = cell.cfg
    torch.manual_seed(cfg.seed)
    model = models.build_model(cfg.model, len(classes), cfg.image_size, dropout=cfg.dropout).to(cell.device)
    if cfg.channels_last and cfg.pipeline != "paper":
        model = model.to(memory_format=torch.channels_last)
    options = sgd_options(cell.device)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, **options)
    scaler = torch.amp.GradScaler("cuda") if cell.precision.scaler else None
    return Model(model, classes, optimizer, scaler, bool(options.get("fused")), info)


def restore(cell: CellRun, model: Model) -> Progress:
    """Load ``checkpoint.pt`` into the model and optimizer; a fresh Progress when there is none."""
    state = load_checkpoint(cell.paths.checkpoint, cell.cfg.identity())
    if state is None:
        # No checkpoint covers any epoch: lines left by a death before the first checkpoint would be
        # counted again (epochs [1, 1, 2]), so keep none of them.
        if cell.dist.main and cell.paths.epochs.exists():
            truncate_epochs(cell.paths.epochs, 0)
        return Progress()
    model.bare.load_state_dict(state["model"])
    model.optimizer.load_state_dict(state["optimizer"])
    if model.scaler is not None and state.get("scaler"):
        model.scaler.load_state_dict(state["scaler"])
    torch.set_rng_state(state["rng_cpu"])
    if cell.device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], cell.device)
    progress = Progress(state["epoch"], state["best"], state["best_state"], state["exec_s"], state["train_s"],
                        state["train_images"], state["started_at"], set(state.get("amp_observed") or ()),
                        str(state.get("memory_format") or ""))
    if cell.dist.main:
        truncate_epochs(cell.paths.epochs, progress.epoch)
        cell.log(f"resuming {cell.cell_id} from {cell.paths.checkpoint} "
                 f"after epoch {progress.epoch}/{cell.cfg.epochs}")
    return progress


def choose_memory_format(cell: CellRun, data: CellData, model: Model, progress: Progress) -> None:
    """channels_last or contiguous for the model and the fast pipeline's batches: the checkpoint's choice
    when resuming, else the probe's (``probe_memory_format``), else the configured one."""
    cfg = cell.cfg
    if cfg.pipeline == "paper":
        info = configured_format(cfg.channels_last, cfg.pipeline)
    elif progress.memory_format:
        info = {"chosen": progress.memory_format, "chosen_by": "checkpoint"}
    elif cfg.probe_memory_format and not cfg.compile:
        x, y, _ = next(iter(data.train.epoch(0)))
        info = probe_memory_format(model.bare, (x, y), cell.device, cell.precision.dtype, cell.dist.all_sum)
        ms = ", ".join(f"{k} {v:.1f} ms" for k, v in info["step_ms"].items())
        cell.say(f"memory format: {info['chosen']} (a training step: {ms})")
    else:
        why = "config (compile: not probed)" if cfg.probe_memory_format else "config"
        info = configured_format(cfg.channels_last, cfg.pipeline, why)
    progress.memory_format = info["chosen"] if cfg.pipeline != "paper" else ""
    if cfg.pipeline != "paper":
        model.bare.to(memory_format=FORMATS[info["chosen"]])
        for part in (data.train, data.val, data.test):
            part.channels_last = info["chosen"] == "channels_last"
    cell.setup["memory_format"] = info


def wrap_model(cell: CellRun, model: Model) -> None:
    """Autocast inside the forward, then DDP / DataParallel / torch.compile around it."""
    cfg, dist, plan = cell.cfg, cell.dist, cell.plan
    inner = AutocastForward(model.bare, cell.device.type, cell.precision.dtype)
    wrapped: nn.Module = inner
    if cfg.strategy == "ddp" and dist.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(inner, device_ids=list(plan.device_ids) or None)
    elif plan.gpus_used > 1:
        wrapped = nn.DataParallel(inner, device_ids=list(plan.device_ids))
    if cfg.compile and not isinstance(wrapped, nn.DataParallel):  # TrainConfig refuses compile with dp
        wrapped = torch.compile(wrapped)
        model.compiled = True
    model.wrapped = wrapped
    # DDP's forward may broadcast buffers (a collective): ranks whose evaluation shards hold different
    # numbers of batches would then wait on each other. Evaluate without DDP; buffers are synced first.
    model.evaluator = inner if dist.world > 1 else wrapped


# --------------------------------------------------------------------------- 3. epochs


def train_and_finish(cell: CellRun, data: CellData, model: Model, progress: Progress) -> dict[str, Any]:
    """Epochs, the test pass, telemetry of the whole cell, then result.json (rank 0)."""
    attempt_started_at = _now()  # this process's run: a resumed cell's other attempts did not share its host
    # Every rank samples the GPU it drives (rank 0 into samples.csv, rank r into samples.rank<r>.csv),
    # so a DDP cell measures all its GPUs, on every node.
    csv = cell.paths.samples
    if not cell.dist.main:
        csv = csv.with_name(f"samples.rank{cell.dist.rank}.csv")
    sampler = Sampler(csv, interval_s=cell.cfg.sample_interval_s, devices=list(cell.plan.device_ids),
                      process_interval_s=cell.cfg.process_sample_interval_s)
    sampler.start()
    writer = ProgressWriter(cell.paths.progress) if cell.dist.main else None
    try:
        for epoch in range(progress.epoch + 1, cell.cfg.epochs + 1):
            run_epoch(cell, data, model, progress, epoch, writer)
        test, extra, digests = final_evaluation(cell, data, model, progress)
    finally:
        if writer is not None:
            writer.close()
        telemetry = sampler.stop()
    telemetry = whole_cell(telemetry, csv)
    if cell.plan.fallback and not telemetry.get("nvml"):
        telemetry["reason"] = f"no GPU sampled: {cell.plan.fallback}"
    telemetry["data_device_gb"] = data_device_gb(data.data_device_bytes)  # this rank's copy
    telemetry = merge_rank_telemetry(telemetry, cell.dist)
    if not cell.dist.main:
        return {}
    result = result_record(cell, data, model, progress, test, extra, digests, telemetry)
    result["attempt_started_at"] = attempt_started_at
    atomic_write_json(cell.paths.result, result)
    cell.paths.progress.unlink(missing_ok=True)
    cell.log(f"Test Acc: {test.acc:.4f}% (best epoch {progress.best['epoch']}), "
             f"Exec. Time: {progress.exec_s:.2f}s, {result['images_per_s']:.0f} images/s "
             f"-> {cell.paths.result}")
    return result


def data_device_gb(nbytes: int) -> float:
    """The dataset's bytes on the GPU in the unit of every other memory figure: MiB / 1000 (NVML's and
    torch's MiB, as cellsummary writes them), so training and data memory can be compared and added."""
    return round(nbytes / 2**20 / 1000, 3)


def run_epoch(cell: CellRun, data: CellData, model: Model, progress: Progress, epoch: int,
              writer: ProgressWriter | None = None) -> None:
    """Train, evaluate, keep the best, write the epoch line and the checkpoint (in that order)."""
    cfg, dist = cell.cfg, cell.dist
    cell.say(f"Epoch: {epoch}/{cfg.epochs}")
    tr = train_one_epoch(model.wrapped, data.train, model.optimizer, model.scaler, cell.device, epoch, dist,
                         cfg.log_every, cell.log, _progress_writer(cell, epoch, writer))
    if writer is not None:
        writer.flush()  # progress.json is current at the end of every epoch
    sync_buffers(model.bare, dist)
    va = evaluate(model.evaluator, data.val, cell.device, dist)
    if tr.n == 0 or va.n == 0:  # every image unreadable: 0 % from no data is not a result
        raise DataError(f"epoch {epoch} had no readable {'training' if tr.n == 0 else 'validation'} images "
                        f"in {cfg.data}; check the dataset (see the skipped images in the log)")
    if not math.isfinite(va.loss) or not math.isfinite(tr.loss):
        raise AslhpcError(f"training diverged at epoch {epoch} (train loss {tr.loss}, "
                          f"validation loss {va.loss}); lower --lr, or use --amp fp32")
    epoch_s = tr.seconds + va.seconds
    progress.epoch = epoch
    progress.exec_s += epoch_s
    progress.train_s += tr.seconds
    progress.train_images += tr.n
    progress.amp_observed.add(tr.out_dtype)
    improved = va.loss < progress.best["val_loss"]
    if improved:
        progress.best_state = model_state(model.bare)  # every rank keeps it: no shared file to re-read
        progress.best = {"val_loss": va.loss, "val_acc": va.acc, "train_loss": tr.loss, "train_acc": tr.acc,
                         "epoch": epoch}
    if dist.main:
        record_epoch(cell, model, progress, tr, va, improved)
    dist.barrier()


class ProgressWriter:
    """``progress.json`` written off the training thread: the loop hands over the latest progress (no I/O),
    a daemon thread writes it (atomic, fsync'd) at most every ``interval_s``; ``flush`` writes what is
    pending now (end of each epoch), ``close`` flushes and stops. On Lustre/NFS an fsync every 50 steps
    would otherwise be a visible share of a short GPU epoch."""

    def __init__(self, path: Path, interval_s: float = 5.0) -> None:
        self.path, self.interval_s = path, interval_s
        self._lock = threading.Lock()
        self._pending: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="aslhpc-progress", daemon=True)
        self._thread.start()

    def update(self, progress: dict[str, Any]) -> None:
        with self._lock:
            self._pending = progress

    def flush(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is not None:  # under the lock: the thread never writes an older one after it
                atomic_write_json(self.path, pending)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()


def _progress_writer(cell: CellRun, epoch: int, writer: ProgressWriter | None) -> Callable[[int, int], None]:
    def write(step: int, total: int) -> None:
        if writer is not None:
            writer.update({"epoch": epoch, "epochs": cell.cfg.epochs, "batch": step, "batches": total,
                           "phase": "train", "time": _now()})
    return write


def record_epoch(cell: CellRun, model: Model, progress: Progress, tr: Stats, va: Stats,
                 improved: bool) -> None:
    """Rank 0: the epoch's log lines, best_model.pt when it improved, epochs.jsonl, then checkpoint.pt."""
    cfg, epoch, paths = cell.cfg, progress.epoch, cell.paths
    epoch_s = tr.seconds + va.seconds
    cell.log(f"Epoch: {epoch:03d}, Train Loss: {tr.loss:.4f}, Train Acc: {tr.acc:.4f}%, "
             f"Valid Loss : {va.loss:.4f}, Valid Acc: {va.acc:.4f}%, Time: {epoch_s:.4f}s")
    if improved:
        cell.log(f"New best validation loss {va.loss:.4f} at epoch {epoch}: saving {paths.best_model.name}")
        save_model(paths.best_model, model.bare, model.classes, image_size=cfg.image_size,
                   interpolation=cfg.interpolation, dropout=cfg.dropout, epoch=epoch,
                   val_loss=va.loss, val_acc=va.acc, cell_id=cell.cell_id, experiment=cell.experiment)
    # Epoch line first, checkpoint second: a crash in between leaves a line that restore() drops (with or
    # without an earlier checkpoint: it keeps exactly the epochs the checkpoint covers).
    append_jsonl(paths.epochs, {
        "epoch": epoch, "train_loss": tr.loss, "train_acc": tr.acc, "val_loss": va.loss, "val_acc": va.acc,
        "epoch_s": epoch_s, "train_s": tr.seconds, "images_per_s": tr.n / max(tr.seconds, 1e-9), "lr": cfg.lr,
        "time": _now(), "data_wait_s": tr.data_wait_s, "compute_s": tr.compute_s, "eval_s": va.seconds})
    _test_crash_before_first_checkpoint(paths.checkpoint)
    save_checkpoint(paths.checkpoint, {
        "identity": cfg.identity(), "epoch": epoch, "model": model_state(model.bare),
        "optimizer": model.optimizer.state_dict(),
        "scaler": model.scaler.state_dict() if model.scaler else None,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(cell.device) if cell.device.type == "cuda" else None,
        "best": progress.best, "best_state": progress.best_state, "exec_s": progress.exec_s,
        "train_s": progress.train_s, "train_images": progress.train_images, "started_at": progress.started_at,
        "amp_observed": sorted(progress.amp_observed), "memory_format": progress.memory_format})
    _test_hold_after_first_checkpoint(cell.cell_id, epoch)


def _test_hold_after_first_checkpoint(cell_id: str, epoch: int) -> None:
    """Wait after epoch 1's checkpoint (at most :data:`aslhpc.errors.HOLD_S`) when a preemption test names
    this cell in :data:`aslhpc.errors.HOLD_ENV`: its signals then interrupt this sleep, whatever the load. A
    resumed attempt starts after epoch 1 and never waits."""
    if epoch != 1 or cell_id not in os.environ.get(HOLD_ENV, "").split(","):
        return
    deadline = time.monotonic() + HOLD_S
    while time.monotonic() < deadline:
        time.sleep(0.1)


def _test_crash_before_first_checkpoint(checkpoint: Path) -> None:
    """Die as a SIGKILL would between the first epoch line and the first checkpoint, when a reliability
    test asks for it (:data:`aslhpc.errors.CRASH_ENV`): the cell's next attempt must not count that epoch
    twice (issue 27.1, tests/e2e/test_crash_safety.py)."""
    if os.environ.get(CRASH_ENV) == "cell-before-first-checkpoint" and not checkpoint.exists():
        os.kill(os.getpid(), signal.SIGKILL)


# --------------------------------------------------------------------------- 4. finish


def final_evaluation(cell: CellRun, data: CellData, model: Model,
                     progress: Progress) -> tuple[Stats, dict[str, Any] | None, list[str]]:
    """Check the ranks agree, then the test split (and the flat test folder) with the best model."""
    digests = rank_digests(model.bare, cell.dist)
    if len(set(digests)) > 1:
        raise AslhpcError(f"DDP ranks ended with different weights ({len(set(digests))} distinct digests "
                          f"over {cell.dist.world} ranks); this cell's numbers are not trustworthy: "
                          "report it with its logs")
    model.bare.load_state_dict(progress.best_state)
    predicted: list[torch.Tensor] = []
    test = evaluate(model.evaluator, data.test, cell.device, cell.dist, predicted)
    write_test_predictions(cell, data, predicted)
    extra = None
    if cell.dist.main:
        extra = extra_test(AutocastForward(model.bare, cell.device.type, cell.precision.dtype), data.index,
                           cell.cfg, cell.device)
    return test, extra, digests


def write_test_predictions(cell: CellRun, data: CellData, predicted: list[torch.Tensor]) -> None:
    """``test_predictions.csv`` (image,label,predicted,correct): every readable image of the test split,
    gathered from all ranks' shards, written once by rank 0 at the end, atomically (paired tests such as
    McNemar's compare two cells on the same images)."""
    rows = data.test.image_rows()
    preds = torch.cat(predicted).numpy() if predicted else np.zeros(0, dtype=np.int64)
    if len(rows) != len(preds):
        raise AslhpcError(f"test predictions do not line up with the test images ({len(preds)} predictions, "
                          f"{len(rows)} images); report it with this cell's logs")
    pairs = list(zip(rows.tolist(), preds.tolist(), strict=True))
    if cell.dist.world > 1:
        shards: list[Any] = [None] * cell.dist.world
        torch_dist.all_gather_object(shards, pairs)
        pairs = [p for shard in shards for p in shard]
    if not cell.dist.main:
        return
    files, labels = data.index.files, data.index.labels
    lines = ["image,label,predicted,correct"]
    for row, pred in sorted(pairs):
        label = int(labels[row])
        lines.append(f"{csv_field(files[row])},{label},{int(pred)},{int(label == pred)}")
    atomic_write_text(cell.paths.root / TEST_PREDICTIONS, "\n".join(lines) + "\n")


def csv_field(text: str) -> str:
    """A CSV field quoted when it needs to be (a file name with a comma or a quote)."""
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n\r') else text


def time_breakdown(epochs: list[dict[str, Any]], exec_s: float) -> dict[str, Any]:
    """Where the cell's epochs spent their time, summed over the epoch lines the checkpoint covers.

    Every part is measured on one clock (:data:`.loop.CLOCK`) and the parts are disjoint intervals inside
    each epoch, so ``other_s`` (logging, loss bookkeeping, progress writes) is ``exec_time_s`` minus the
    rest, >= 0 by construction, and the four add up to ``exec_time_s``. Not rounded: rounding would break
    the sum. ``data_wait_share`` is ``data_wait_s / exec_time_s`` (the wall time's share, not compute's)."""
    keys = ("data_wait_s", "compute_s", "eval_s")
    if not epochs or not all(all(k in e for k in keys) for e in epochs):
        return {**dict.fromkeys((*keys, "other_s", "data_wait_share")), "clock": None}
    sums = {k: sum(float(e[k]) for e in epochs) for k in keys}
    other = exec_s - sum(sums.values())
    if -1e-9 * max(exec_s, 1.0) < other < 0.0:  # float rounding of the sums only; overlap stays visible
        other = 0.0
    return {**sums, "other_s": other, "data_wait_share": sums["data_wait_s"] / exec_s if exec_s > 0 else None,
            "clock": CLOCK}


def result_record(cell: CellRun, data: CellData, model: Model, progress: Progress, test: Stats,
                  extra: dict[str, Any] | None, digests: list[str],
                  telemetry: dict[str, Any]) -> dict[str, Any]:
    """result.json (see docs/design.md); provenance is read once; the versions/slurm blocks come from it."""
    cfg, plan, dist, best = cell.cfg, cell.plan, cell.dist, progress.best
    provenance = collect_provenance()
    skipped = skipped_images(cfg, data)
    return {
        "schema": RESULT_SCHEMA, "status": "completed", "experiment": cell.experiment,
        "cell_id": cell.cell_id,
        "config": cfg.to_dict(),
        "gpus_requested": cfg.gpus, "gpus_used": plan.gpus_used * (dist.world if dist.world > 1 else 1),
        "device": plan.device.type, "device_names": list(plan.names), "fallback": plan.fallback,
        "data_parallel": (plan.gpus_used > 1) or dist.world > 1,
        "strategy": cfg.strategy, "pipeline": cfg.pipeline, "amp": cell.precision.name,
        "amp_observed": sorted(progress.amp_observed), "tf32": cell.setup["tf32"],
        "channels_last": cell.setup["memory_format"]["chosen"] == "channels_last", "compile": model.compiled,
        "memory_format": cell.setup["memory_format"],
        "optimizer": {"name": "sgd", "fused": model.fused},
        "host_memory": cell.setup["host_memory"], "threads": cell.setup["threads"],
        "backend": cell.setup["backend"], "world_size": dist.world,
        "ranks": {"weight_digests": digests, "in_sync": len(set(digests)) == 1},
        "split": data.split.to_dict(),
        "model": {**model.info, "classes": list(model.classes),
                  "preprocessing": preprocess.describe(cfg.image_size, cfg.interpolation)},
        "batches": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        "skipped_images": skipped, "skipped_count": len(skipped), "cache": data.cache,
        "epochs": cfg.epochs, "best_epoch": best["epoch"],
        "train_acc": best["train_acc"], "val_acc": best["val_acc"], "test_acc": test.acc,
        "train_loss": best["train_loss"], "val_loss": best["val_loss"], "test_loss": test.loss,
        "extra_test": extra,
        "test_predictions": {"file": TEST_PREDICTIONS, "images": "every readable image of the test split"},
        "exec_time_s": progress.exec_s, "data_prep_s": data.prep_s, "train_time_s": progress.train_s,
        "time_breakdown": time_breakdown(read_jsonl(cell.paths.epochs), progress.exec_s),
        "images_per_s": progress.train_images / max(progress.train_s, 1e-9),
        "data_location": data.data_location,
        "telemetry": telemetry, "provenance": provenance,
        "versions": run_versions(provenance, __version__), "slurm": run_slurm(provenance.get("slurm")),
        "host": platform.node(), "argv": sys.argv,
        "started_at": progress.started_at, "finished_at": _now(),
    }
