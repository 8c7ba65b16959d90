"""A cell's data: scan, split, and the batches of the chosen pipeline; plus the flat Kaggle test folder."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aslhpc.data import DatasetIndex, load_image, make_split, normalize, open_cache, to_tensor
from aslhpc.errors import DataError
from aslhpc.training.config import TrainConfig, resolve_cache_dir
from aslhpc.training.devices import DevicePlan
from aslhpc.training.distributed import Dist
from aslhpc.training.loop import Log
from aslhpc.training.pipelines import (
    Batches,
    LoaderBatches,
    PaperImageFolder,
    TensorBatches,
    fits_on_device,
    rank_slice,
    tensor_data,
)


@dataclass
class CellData:
    index: DatasetIndex
    split: Any
    train: Batches
    val: Batches
    test: Batches
    prep_s: float
    data_device_bytes: int
    data_location: str
    skipped: list[str]
    cache: dict[str, Any] = field(default_factory=dict)  # result.json's ``cache``: where and why there


def build_data(cfg: TrainConfig, plan: DevicePlan, dist: Dist, log: Log, index: DatasetIndex) -> CellData:
    """Split and load the scanned dataset for the chosen pipeline; the time spent (``data_prep_s``: the
    split and the cache build/open, not the scan) is reported apart."""
    t0 = time.perf_counter()
    split = make_split(index, cfg.split, cfg.split_seed, group=cfg.split_group)
    common = dict(device=plan.device, batch_size=cfg.batch_size, seed=cfg.seed, rank=dist.rank,
                  world=dist.world)
    if cfg.pipeline == "paper":
        ds = PaperImageFolder(index, cfg.image_size, cfg.interpolation)
        parts = [LoaderBatches(ds, idx, shuffle=shuffle, workers=cfg.workers,
                               max_steps=cfg.max_steps if shuffle else 0, log=log, **common)
                 for idx, shuffle in ((split.train, True), (split.val, False), (split.test, False))]
        return CellData(index, split, *parts, time.perf_counter() - t0, 0, "decoded every epoch (DataLoader)",
                        [], {"dir": None, "chosen_by": "not used: the paper pipeline decodes every epoch"})
    cache_dir, chosen_by = resolve_cache_dir(cfg)
    cache = open_cache(index, cfg.image_size, cfg.interpolation, cache_dir, progress=dist.main)
    parts_idx = [idx[cache.ok[idx]] for idx in (split.train, split.val, split.test)]
    for name, idx, total in zip(("training", "validation"), parts_idx, (split.train, split.val),
                                strict=False):
        if len(idx) == 0:
            raise DataError(f"no readable {name} images in {cfg.data} ({len(total)} of {len(total)} "
                            f"unreadable, e.g. {', '.join(cache.bad[:3])}); check or replace the dataset")
    nbytes = sum(len(i) for i in parts_idx) * int(np.prod(cache.images.shape[1:]))
    on_device = fits_on_device(nbytes, plan.device)
    location = "host memory"
    if plan.is_cuda:
        location = str(plan.device) if on_device else "host memory (batches staged through pinned buffers)"
    labels = np.asarray(index.labels, dtype=np.int64)
    parts = []
    for k, idx in enumerate(parts_idx):
        if dist.world > 1 and k > 0:  # evaluation shards are contiguous per rank
            idx = idx[rank_slice(len(idx), dist.rank, dist.world)]
        rows = np.sort(idx)  # ascending rows read the memory-mapped cache sequentially
        x, y = tensor_data(cache.images, rows, labels, plan.device, on_device)
        split_common = dict(common, rank=0, world=1) if k > 0 else common
        parts.append(TensorBatches(x, y, shuffle=k == 0, channels_last=cfg.channels_last,
                                   max_steps=cfg.max_steps if k == 0 else 0, rows=rows, **split_common))
    if cache.bad and dist.main:
        more = " ..." if len(cache.bad) > 5 else ""
        log(f"skipped {len(cache.bad)} unreadable image(s): {', '.join(cache.bad[:5])}{more}")
    device_bytes = nbytes if on_device and plan.is_cuda else 0
    return CellData(index, split, *parts, time.perf_counter() - t0, device_bytes, location, list(cache.bad),
                    {"dir": str(Path(cache_dir)), "chosen_by": chosen_by})


def skipped_images(cfg: TrainConfig, data: CellData) -> list[str]:
    """fast: found while building the cache; paper: met in the last pass over each split (this rank's)."""
    if cfg.pipeline == "fast":
        return list(data.skipped)
    return sorted({name for b in (data.train, data.val, data.test) for name in b.skipped})


def extra_test(model: nn.Module, index: DatasetIndex, cfg: TrainConfig,
               device: torch.device) -> dict[str, Any] | None:
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
        with torch.inference_mode():
            pred = model(normalize(torch.stack(xs).to(device))).argmax(1).cpu().tolist()
        for label, p in zip(labels, pred, strict=True):
            per_class[index.classes[label]] = {"predicted": index.classes[p], "correct": p == label}
    hits = sum(1 for v in per_class.values() if v["correct"])
    acc = 100.0 * hits / len(xs) if xs else None
    return {"n": len(xs), "acc": acc, "per_class": per_class, "unreadable": unreadable}
