"""Train one (GPU count, batch size) cell: the 2020 recipe, resumable, measured.

The loop is deliberately plain (torchvision's references/classification style):
``train_one_epoch`` and ``evaluate`` do the work; ``run_cell`` wires data, devices,
telemetry, checkpoints and the cell's files (see :mod:`aslhpc.cellfiles`).

Resume contract: a checkpoint is written after every epoch (model, optimizer,
scaler, torch RNG, bookkeeping). Shuffling is seeded per epoch, so a run killed
after epoch k and restarted with the same command continues from k and ends with
the same metrics as an uninterrupted run (bit-identical on CPU).
"""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as torch_dist
from torch import nn

from aslhpc import __version__
from aslhpc.atomic import append_jsonl, atomic_write_bytes, atomic_write_json, read_json, read_jsonl
from aslhpc.cellfiles import RESULT_SCHEMA, CellPaths
from aslhpc.data import DatasetIndex, load_image, make_split, normalize, open_cache, scan_dataset, to_tensor
from aslhpc.errors import AslhpcError, DataError
from aslhpc.telemetry import Sampler, collect_provenance
from aslhpc.training.config import TrainConfig, resolve_cache_dir
from aslhpc.training.devices import DevicePlan, Precision, choose_precision, plan_devices
from aslhpc.training.hostmem import retain_freed_memory
from aslhpc.training.model import LadNet
from aslhpc.training.modelio import model_state, save_model, unwrap
from aslhpc.training.pipelines import (
    LoaderBatches,
    PaperImageFolder,
    TensorBatches,
    fits_on_device,
    rank_slice,
    tensor_data,
)

Log = Callable[[str], None]


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _print(msg: str) -> None:
    print(msg, flush=True)


# --------------------------------------------------------------------------- distributed


@dataclass(frozen=True)
class Dist:
    """This process's place in a DDP job; ``world == 1`` means no process group."""

    rank: int = 0
    world: int = 1
    local_rank: int | None = None

    @property
    def main(self) -> bool:
        return self.rank == 0

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        if self.world > 1:
            torch_dist.all_reduce(t, op=torch_dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        if self.world > 1:
            torch_dist.barrier()


def init_dist(cfg: TrainConfig) -> Dist:
    """Join the process group described by RANK/WORLD_SIZE/MASTER_ADDR (set by submitit's helper or torchrun)."""
    if cfg.strategy != "ddp":
        return Dist()
    if "WORLD_SIZE" not in os.environ and cfg.gpus > 1:
        raise AslhpcError(f"--strategy ddp with {cfg.gpus} GPUs needs one process per GPU; run it under "
                          f"torchrun --nproc-per-node {cfg.gpus} or srun (submit does this), or use --strategy dp")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    if world > 1 and not torch_dist.is_initialized():
        backend = "nccl" if cfg.gpus and torch.cuda.is_available() else "gloo"
        torch_dist.init_process_group(backend=backend, timeout=dt.timedelta(minutes=10))
    return Dist(rank, world, local_rank)


def sync_buffers(model: nn.Module, dist: Dist) -> None:
    """BatchNorm running stats drift apart per rank; make every rank use rank 0's before evaluating."""
    if dist.world > 1:
        for buf in unwrap(model).buffers():
            torch_dist.broadcast(buf, src=0)


def merge_rank_telemetry(mine: dict[str, Any], dist: Dist) -> dict[str, Any]:
    """Rank 0's summary with every rank's GPUs in global-rank order (GPU i of the tables = rank i's GPU)."""
    if dist.world == 1:
        return mine
    summaries: list[Any] = [None] * dist.world
    torch_dist.all_gather_object(summaries, {**mine, "node": platform.node(), "rank": dist.rank})
    merged = dict(summaries[0])
    merged["gpus"] = [{**g, "index": i, "rank": s["rank"], "node": s["node"]}
                      for i, (s, g) in enumerate((s, g) for s in summaries for g in s.get("gpus", []))]
    merged["torch"] = [t for s in summaries for t in s.get("torch", [])]
    merged["ranks"] = [{"rank": s["rank"], "node": s["node"], "nvml": s.get("nvml"), "cpu": s.get("cpu"),
                        "csv": s.get("csv")} for s in summaries]
    return merged


def rank_digests(model: nn.Module, dist: Dist) -> list[str]:
    """A hash of every rank's final weights and buffers: DDP is only right if they are all equal."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model_state(model).items()):
        h.update(name.encode())
        h.update(t.numpy().tobytes())
    if dist.world == 1:
        return [h.hexdigest()]
    out: list[Any] = [None] * dist.world
    torch_dist.all_gather_object(out, h.hexdigest())
    return out


# --------------------------------------------------------------------------- the loop


@dataclass
class Stats:
    loss: float
    acc: float  # percent
    n: int
    seconds: float


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def train_one_epoch(model: nn.Module, batches: Any, optimizer: torch.optim.Optimizer, scaler: torch.amp.GradScaler | None,
                    precision: Precision, device: torch.device, epoch: int, dist: Dist, log_every: int,
                    log: Log, on_progress: Callable[[int, int], None] | None = None) -> Stats:
    """One pass over the training batches; returns mean loss and accuracy over all ranks."""
    model.train()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.int64)
    seen = torch.zeros((), device=device, dtype=torch.int64)
    total = len(batches)
    _sync(device)
    t0 = time.perf_counter()
    for step, (x, y, global_n) in enumerate(batches.epoch(epoch)):
        with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
            out = model(x)
            batch_loss = criterion(out.float(), y)
        # Sum / global batch size * world: after DDP averages gradients over ranks this is
        # exactly the mean over the global batch, even when ranks hold unequal shares.
        loss = batch_loss * (dist.world / global_n)
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        loss_sum += batch_loss.detach()
        correct += (out.argmax(1) == y).sum()
        seen += len(y)
        if log_every and step % log_every == 0:
            if dist.main:
                n = max(int(seen), 1)
                log(f"Batch: {step:03d}/{total:03d}, Training Loss: {float(loss_sum) / n:.4f}, "
                    f"Training Acc: {100.0 * float(correct) / n:.4f}")
            if on_progress is not None:
                on_progress(step, total)
    _sync(device)
    seconds = time.perf_counter() - t0
    sums = dist.all_sum(torch.stack([loss_sum.float(), correct.float(), seen.float()]))
    n = int(sums[2])
    return Stats(float(sums[0]) / max(n, 1), 100.0 * float(sums[1]) / max(n, 1), n, seconds)


@torch.inference_mode()
def evaluate(model: nn.Module, batches: Any, precision: Precision, device: torch.device, dist: Dist) -> Stats:
    """Mean cross-entropy and accuracy over a split, summed over ranks."""
    model.eval()
    criterion = nn.CrossEntropyLoss(reduction="sum")
    sums = torch.zeros(3, device=device)
    _sync(device)
    t0 = time.perf_counter()
    for x, y, _ in batches.epoch(0):
        with torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
            out = model(x)
        sums[0] += criterion(out.float(), y)
        sums[1] += (out.argmax(1) == y).sum()
        sums[2] += len(y)
    _sync(device)
    seconds = time.perf_counter() - t0
    sums = dist.all_sum(sums)
    n = int(sums[2])
    return Stats(float(sums[0]) / max(n, 1), 100.0 * float(sums[1]) / max(n, 1), n, seconds)


# --------------------------------------------------------------------------- data


@dataclass
class CellData:
    index: DatasetIndex
    split: Any
    train: Any
    val: Any
    test: Any
    prep_s: float
    data_device_bytes: int
    data_location: str
    skipped: list[str]


def build_data(cfg: TrainConfig, plan: DevicePlan, dist: Dist, log: Log) -> CellData:
    """Scan, split and load the data for the chosen pipeline; the time spent is reported apart."""
    t0 = time.perf_counter()
    index = scan_dataset(cfg.data)
    split = make_split(index, cfg.split, cfg.split_seed)
    labels = np.asarray(index.labels, dtype=np.int64)
    common = dict(device=plan.device, batch_size=cfg.batch_size, seed=cfg.seed, rank=dist.rank, world=dist.world)
    if cfg.pipeline == "paper":
        ds = PaperImageFolder(index, cfg.image_size, cfg.interpolation)
        parts = [LoaderBatches(ds, idx, shuffle=shuffle, workers=cfg.workers, max_steps=cfg.max_steps if shuffle else 0, **common)
                 for idx, shuffle in ((split.train, True), (split.val, False), (split.test, False))]
        return CellData(index, split, *parts, time.perf_counter() - t0, 0, "decoded every epoch (DataLoader)", [])

    cache = open_cache(index, cfg.image_size, cfg.interpolation, resolve_cache_dir(cfg)[0], progress=dist.main)
    parts_idx = [idx[cache.ok[idx]] for idx in (split.train, split.val, split.test)]
    for name, idx, total in zip(("training", "validation"), parts_idx, (split.train, split.val), strict=False):
        if len(idx) == 0:
            raise DataError(f"no readable {name} images in {cfg.data} ({len(total)} of {len(total)} unreadable, "
                            f"e.g. {', '.join(cache.bad[:3])}); check or replace the dataset")
    nbytes = sum(len(i) for i in parts_idx) * int(np.prod(cache.images.shape[1:]))
    on_device = fits_on_device(nbytes, plan.device)
    location = {True: str(plan.device), False: "pinned host memory"}[on_device] if plan.is_cuda else "host memory"
    parts = []
    for k, idx in enumerate(parts_idx):
        if dist.world > 1 and k > 0:  # evaluation shards are contiguous per rank
            idx = idx[rank_slice(len(idx), dist.rank, dist.world)]
        idx = np.sort(idx)  # ascending rows read the memory-mapped cache sequentially
        x, y = tensor_data(cache.images[idx], labels[idx], plan.device, on_device)
        eval_common = dict(common, rank=0, world=1) if k > 0 else common
        parts.append(TensorBatches(x, y, shuffle=k == 0, channels_last=cfg.channels_last,
                                   max_steps=cfg.max_steps if k == 0 else 0, **eval_common))
    if cache.bad and dist.main:
        log(f"skipped {len(cache.bad)} unreadable image(s): {', '.join(cache.bad[:5])}{' ...' if len(cache.bad) > 5 else ''}")
    return CellData(index, split, *parts, time.perf_counter() - t0, nbytes if on_device and plan.is_cuda else 0,
                    location, list(cache.bad))


# --------------------------------------------------------------------------- checkpoints


def _save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def _load_checkpoint(paths: CellPaths, cfg: TrainConfig) -> dict[str, Any] | None:
    if not paths.checkpoint.exists():
        return None
    state = torch.load(paths.checkpoint, map_location="cpu", weights_only=False)
    if state.get("identity") != cfg.identity():
        raise AslhpcError(f"{paths.checkpoint} was written by a different configuration; "
                          f"use another --out, or delete the checkpoint to start this cell over")
    return state


def _slurm_env() -> dict[str, Any] | None:
    env = os.environ
    if "SLURM_JOB_ID" not in env:
        return None
    gpus = env.get("SLURM_STEP_GPUS") or env.get("SLURM_JOB_GPUS") or ""
    granted = int(env["SLURM_GPUS_ON_NODE"]) if env.get("SLURM_GPUS_ON_NODE", "").isdigit() else len([g for g in gpus.split(",") if g])
    return {
        "job_id": env.get("SLURM_ARRAY_JOB_ID") or env.get("SLURM_JOB_ID"),
        "array_task": env.get("SLURM_ARRAY_TASK_ID"),
        "partition": env.get("SLURM_JOB_PARTITION"),
        "reservation": env.get("SLURM_JOB_RESERVATION"),
        "nodelist": env.get("SLURM_JOB_NODELIST"),
        "node": env.get("SLURMD_NODENAME"),
        "gpus_granted": granted,
        "job_gpus": env.get("SLURM_JOB_GPUS"),
        "ntasks": env.get("SLURM_NTASKS"),
        "restarts": int(env.get("SLURM_RESTART_COUNT", "0") or 0),
    }


def _versions() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "aslhpc": __version__,
    }


def _extra_test(model: nn.Module, index: DatasetIndex, cfg: TrainConfig, device: torch.device,
                precision: Precision) -> dict[str, Any] | None:
    """The flat Kaggle test folder (28 images, no ``del``), evaluated with the best model."""
    if not index.test_files:
        return None
    xs, labels, unreadable = [], [], []
    for path, label in index.test_files:
        try:
            xs.append(to_tensor(load_image(path, cfg.image_size, cfg.interpolation)))
            labels.append(label)
        except Exception:  # noqa: BLE001 - an unreadable test image is reported, not fatal
            unreadable.append(Path(path).name)
    per_class: dict[str, Any] = {}
    if xs:
        model.eval()
        with torch.inference_mode(), torch.autocast(device.type, dtype=precision.dtype, enabled=precision.dtype is not None):
            pred = model(normalize(torch.stack(xs).to(device))).argmax(1).cpu().tolist()
        for label, p in zip(labels, pred, strict=True):
            per_class[index.classes[label]] = {"predicted": index.classes[p], "correct": p == label}
    hits = sum(1 for v in per_class.values() if v["correct"])
    acc = 100.0 * hits / len(xs) if xs else None
    return {"n": len(xs), "acc": acc, "per_class": per_class, "unreadable": unreadable}


# --------------------------------------------------------------------------- one cell


def run_cell(cfg: TrainConfig, *, experiment: str = "", cell_id: str = "", log: Log = _print) -> dict[str, Any]:
    """Train one cell into ``cfg.out``; resume if a checkpoint is there; return the result dict.

    Writes ``error.json`` and re-raises if anything fails, so status can show why.
    """
    paths = CellPaths(Path(cfg.out))
    paths.root.mkdir(parents=True, exist_ok=True)
    if paths.result.exists():
        done = read_json(paths.result)
        if done.get("config") and TrainConfig.from_dict(done["config"]).identity() == cfg.identity():
            log(f"{paths.result} exists for this configuration; nothing to do")
            return done
        raise AslhpcError(f"{paths.result} holds a finished cell with a different configuration; use another --out")
    dist = init_dist(cfg)
    try:
        plan = plan_devices(cfg.gpus, cfg.allow_cpu, dist.local_rank if dist.world > 1 else None)
        # Trick (fast pipeline, CPU): freed activation memory stays in the heap instead of being
        # unmapped and page-faulted back in every step (hostmem.py: 1.5x on a 2-core VM). It lasts
        # for the rest of this process, which is this cell's.
        host_memory = retain_freed_memory(cfg.reuse_host_memory and cfg.pipeline == "fast" and plan.device.type == "cpu")
        return _run(cfg, plan, host_memory, paths, dist, experiment or paths.root.parent.parent.name,
                    cell_id or paths.root.name, log)
    except BaseException as exc:
        if dist.main and not isinstance(exc, KeyboardInterrupt | SystemExit):
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            atomic_write_json(paths.error, {"error": f"{type(exc).__name__}: {first}",
                                            "traceback": traceback.format_exc(), "time": _now()})
        raise
    finally:
        if dist.world > 1 and torch_dist.is_initialized():
            torch_dist.destroy_process_group()


def _run(cfg: TrainConfig, plan: DevicePlan, host_memory: str, paths: CellPaths, dist: Dist, experiment: str,
         cell_id: str, log: Log) -> dict[str, Any]:
    paper = cfg.pipeline == "paper"
    device = plan.device
    # The 2020 pipeline ran fp32, contiguous, without cudnn autotuning; the fast one uses all three.
    if device.type == "cuda":
        # Each DDP rank must make its own GPU current, or NCCL collectives and CUDA events land on cuda:0.
        torch.cuda.set_device(device)
    precision = choose_precision("fp32" if paper else cfg.amp, device)
    channels_last = cfg.channels_last and not paper
    torch.backends.cudnn.benchmark = device.type == "cuda" and not paper
    if plan.fallback and dist.main:
        log(plan.fallback)
    if dist.main:
        paths.error.unlink(missing_ok=True)
        atomic_write_json(paths.config, cfg.to_dict())

    data = build_data(cfg, plan, dist, log)
    classes = data.index.classes
    torch.manual_seed(cfg.seed)
    model = LadNet(len(classes), cfg.dropout, cfg.image_size).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)
    scaler = torch.amp.GradScaler("cuda") if precision.scaler else None

    state = _load_checkpoint(paths, cfg)
    start_epoch, best, exec_s, train_s, train_images = 1, {"val_loss": float("inf"), "epoch": 0}, 0.0, 0.0, 0
    best_state: dict[str, torch.Tensor] | None = None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng_cpu"])
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"], device)
        best_state = state["best_state"]
        start_epoch = state["epoch"] + 1
        best, exec_s, train_s, train_images = state["best"], state["exec_s"], state["train_s"], state["train_images"]
        if dist.main:
            _truncate_epochs(paths, state["epoch"])
            log(f"resuming {cell_id} from {paths.checkpoint} after epoch {state['epoch']}/{cfg.epochs}")

    wrapped: nn.Module = model
    if cfg.strategy == "ddp" and dist.world > 1:
        wrapped = nn.parallel.DistributedDataParallel(model, device_ids=list(plan.device_ids) or None)
    elif plan.gpus_used > 1:
        wrapped = nn.DataParallel(model, device_ids=list(plan.device_ids))
    if cfg.compile and not isinstance(wrapped, nn.DataParallel):
        wrapped = torch.compile(wrapped)
    # DDP's forward may broadcast buffers (a collective): ranks whose evaluation shards hold different
    # numbers of batches would then wait on each other. Evaluate the bare model; buffers are synced first.
    evaluator = model if dist.world > 1 else wrapped

    def progress(epoch: int) -> Callable[[int, int], None]:
        def write(step: int, total: int) -> None:
            if dist.main:
                atomic_write_json(paths.progress, {"epoch": epoch, "epochs": cfg.epochs, "batch": step,
                                                   "batches": total, "phase": "train", "time": _now()})
        return write

    started_at = state["started_at"] if state else _now()
    attempt_started_at = _now()  # this process's run: a resumed cell's other attempts did not share its host
    # Every rank samples the GPU it drives (rank 0 into samples.csv, rank r into samples.rank<r>.csv),
    # so a DDP cell measures all its GPUs, on every node.
    samples = paths.samples if dist.main else paths.samples.with_name(f"samples.rank{dist.rank}.csv")
    sampler = Sampler(samples, interval_s=cfg.sample_interval_s, process_interval_s=cfg.process_sample_interval_s,
                      devices=list(plan.device_ids))
    sampler.start()
    telemetry: dict[str, Any] = {}
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            if dist.main:
                log(f"Epoch: {epoch}/{cfg.epochs}")
            tr = train_one_epoch(wrapped, data.train, optimizer, scaler, precision, device, epoch, dist,
                                 cfg.log_every, log, progress(epoch))
            sync_buffers(model, dist)
            va = evaluate(evaluator, data.val, precision, device, dist)
            if tr.n == 0 or va.n == 0:  # every image unreadable: 0 % from no data is not a result
                raise DataError(f"epoch {epoch} had no readable {'training' if tr.n == 0 else 'validation'} images "
                                f"in {cfg.data}; check the dataset (see the skipped images in the log)")
            epoch_s = tr.seconds + va.seconds
            exec_s += epoch_s
            train_s += tr.seconds
            train_images += tr.n
            if not np.isfinite(va.loss) or not np.isfinite(tr.loss):
                raise AslhpcError(f"training diverged at epoch {epoch} (train loss {tr.loss}, validation loss {va.loss}); "
                                  f"lower --lr, or use --amp fp32")
            improved = va.loss < best["val_loss"]
            if improved:
                best_state = model_state(model)  # every rank keeps it: no re-reading a shared file at the end
                best = {"val_loss": va.loss, "val_acc": va.acc, "train_loss": tr.loss, "train_acc": tr.acc, "epoch": epoch}
            if dist.main:
                line = {"epoch": epoch, "train_loss": tr.loss, "train_acc": tr.acc, "val_loss": va.loss, "val_acc": va.acc,
                        "epoch_s": epoch_s, "train_s": tr.seconds, "images_per_s": tr.n / max(tr.seconds, 1e-9),
                        "lr": cfg.lr, "time": _now()}
                log(f"Epoch: {epoch:03d}, Train Loss: {tr.loss:.4f}, Train Acc: {tr.acc:.4f}%, Valid Loss : {va.loss:.4f}, "
                    f"Valid Acc: {va.acc:.4f}%, Time: {epoch_s:.4f}s")
                if improved:
                    log(f"New best validation loss {va.loss:.4f} at epoch {epoch}: saving {paths.best_model.name}")
                    save_model(paths.best_model, model, classes, image_size=cfg.image_size,
                               interpolation=cfg.interpolation, dropout=cfg.dropout, epoch=epoch,
                               val_loss=va.loss, val_acc=va.acc, cell_id=cell_id, experiment=experiment)
                # Epoch line first, checkpoint second: a crash in between leaves a line that resume drops.
                append_jsonl(paths.epochs, line)
                _save_checkpoint(paths.checkpoint, {
                    "identity": cfg.identity(), "epoch": epoch, "model": model_state(model),
                    "optimizer": optimizer.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "best": best, "best_state": best_state, "exec_s": exec_s, "train_s": train_s,
                    "train_images": train_images, "started_at": started_at})
            dist.barrier()

        digests = rank_digests(model, dist)
        if len(set(digests)) > 1:
            raise AslhpcError(f"DDP ranks ended with different weights ({len(set(digests))} distinct digests over "
                              f"{dist.world} ranks); this cell's numbers are not trustworthy: report it with its logs")
        # Test split with the best-validation model, as the paper did.
        model.load_state_dict(best_state)
        te = evaluate(evaluator, data.test, precision, device, dist)
        extra = _extra_test(model, data.index, cfg, device, precision) if dist.main else None
    finally:
        telemetry = sampler.stop()
    if plan.fallback and not telemetry.get("nvml"):
        telemetry["reason"] = f"no GPU sampled: {plan.fallback}"
    telemetry = merge_rank_telemetry(telemetry, dist)
    if not dist.main:
        return {}
    telemetry["data_device_gb"] = data.data_device_bytes / 1e9
    result = {
        "schema": RESULT_SCHEMA, "status": "completed", "experiment": experiment, "cell_id": cell_id,
        "config": cfg.to_dict(),
        "gpus_requested": cfg.gpus, "gpus_used": plan.gpus_used * (dist.world if dist.world > 1 else 1),
        "device": device.type, "device_names": list(plan.names), "fallback": plan.fallback,
        "data_parallel": (plan.gpus_used > 1) or dist.world > 1,
        "strategy": cfg.strategy, "pipeline": cfg.pipeline, "amp": precision.name, "channels_last": channels_last,
        "host_memory": host_memory, "world_size": dist.world,
        "ranks": {"weight_digests": digests, "in_sync": len(set(digests)) == 1},
        "split": {"kind": data.split.kind, "seed": cfg.split_seed, "hash": data.split.hash,
                  "train": len(data.split.train), "val": len(data.split.val), "test": len(data.split.test)},
        "batches": {"train": len(data.train), "val": len(data.val), "test": len(data.test)},
        # fast: found while building the cache; paper: met in the last pass over each split (rank 0's share)
        "skipped_images": (skipped := data.skipped if cfg.pipeline == "fast"
                           else sorted({name for b in (data.train, data.val, data.test) for name in b.skipped})),
        "skipped_count": len(skipped),
        "epochs": cfg.epochs, "best_epoch": best["epoch"],
        "train_acc": best["train_acc"], "val_acc": best["val_acc"], "test_acc": te.acc,
        "train_loss": best["train_loss"], "val_loss": best["val_loss"], "test_loss": te.loss,
        "extra_test": extra,
        "exec_time_s": exec_s, "data_prep_s": data.prep_s, "train_time_s": train_s,
        "images_per_s": train_images / max(train_s, 1e-9),
        "data_location": data.data_location,
        "telemetry": telemetry, "provenance": collect_provenance(), "versions": _versions(),
        "slurm": _slurm_env(), "host": platform.node(), "argv": sys.argv,
        "started_at": started_at, "attempt_started_at": attempt_started_at, "finished_at": _now(),
    }
    atomic_write_json(paths.result, result)
    paths.progress.unlink(missing_ok=True)
    log(f"Test Acc: {te.acc:.4f}% (best epoch {best['epoch']}), Exec. Time: {exec_s:.2f}s, "
        f"{result['images_per_s']:.0f} images/s -> {paths.result}")
    return result


def _truncate_epochs(paths: CellPaths, last_epoch: int) -> None:
    """Drop epoch lines written after the checkpoint being resumed (a crash between the two writes)."""
    keep = [r for r in read_jsonl(paths.epochs) if r.get("epoch", 0) <= last_epoch]
    atomic_write_bytes(paths.epochs, "".join(json.dumps(r, sort_keys=True) + "\n" for r in keep).encode())
