"""Two ways to feed the same model the same split: ``paper`` (as in 2020) and ``fast``.

* paper: torchvision ImageFolder + DataLoader; every epoch every JPEG is decoded,
  resized with PIL and normalised on the CPU, then copied to the GPU as fp32.
  This is what the study timed; it is kept so its findings can be reproduced.
* fast: the decode-once uint8 cache is put on the device once (or in pinned host
  memory when it does not fit); a batch is a gather on the device, normalisation
  happens there, shuffling is a device-side permutation. No worker processes.

Both yield ``(x, y, n)`` per batch: float NCHW input and int64 labels on the
training device, and the number of samples in the *global* batch (all ranks),
which DDP needs to weight each rank's loss.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Subset

from aslhpc.data import DatasetIndex, load_image, normalize, to_tensor

Batch = tuple[torch.Tensor, torch.Tensor, int]


def rank_slice(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items, split as evenly as torch.chunk-free DP would."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def epoch_generator(seed: int, epoch: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A fresh generator per epoch: the shuffle of epoch e depends only on (seed, e), so resume is exact."""
    g = torch.Generator(device=device)
    g.manual_seed(seed * 100_003 + epoch)
    return g


@dataclass
class TensorBatches:
    """Batches gathered from uint8 NHWC images held in memory (device, pinned host, or CPU).

    NHWC permuted to NCHW *is* the channels_last layout, so the gather feeds a
    channels_last model without a copy; ``channels_last=False`` makes it contiguous.
    """

    images: torch.Tensor  # (N, H, W, 3) uint8
    labels: torch.Tensor  # (N,) int64, same device as images
    device: torch.device
    batch_size: int
    shuffle: bool
    seed: int
    channels_last: bool = True
    rank: int = 0
    world: int = 1
    max_steps: int = 0

    def __len__(self) -> int:
        n = -(-len(self.labels) // self.batch_size)
        return min(n, self.max_steps) if self.max_steps else n

    def epoch(self, epoch: int) -> Iterator[Batch]:
        n = len(self.labels)
        on_device = self.images.device == self.device
        if self.shuffle:
            order = torch.randperm(n, generator=epoch_generator(self.seed, epoch, self.images.device), device=self.images.device)
        else:
            order = torch.arange(n, device=self.images.device)
        staging = _PinnedStaging(self.images, self.batch_size) if not on_device and self.device.type == "cuda" else None
        for step in range(len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            global_n = len(idx)
            if self.world > 1:
                if global_n < self.world:
                    break  # every DDP rank must see at least one sample per step
                idx = idx[rank_slice(global_n, self.rank, self.world)]
            if staging is not None:
                x = staging.gather(idx, self.device)
            else:
                x = self.images.index_select(0, idx)
            y = self.labels.index_select(0, idx).to(self.device, non_blocking=True)
            x = normalize(x.permute(0, 3, 1, 2))
            if not self.channels_last:
                x = x.contiguous()
            yield x, y, global_n


class _PinnedStaging:
    """Two pinned host buffers used in turn, so the copy of batch k overlaps the gather of batch k+1."""

    def __init__(self, images: torch.Tensor, batch_size: int) -> None:
        shape = (batch_size, *images.shape[1:])
        self.images = images
        self.buffers = [torch.empty(shape, dtype=images.dtype).pin_memory() for _ in range(2)]
        self.events: list[torch.cuda.Event | None] = [None, None]
        self.turn = 0

    def gather(self, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
        k, self.turn = self.turn, 1 - self.turn
        if self.events[k] is not None:
            self.events[k].synchronize()  # the previous copy out of this buffer is finished
        buf = self.buffers[k][: len(idx)]
        torch.index_select(self.images, 0, idx.cpu(), out=buf)
        out = buf.to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self.events[k] = event
        return out


def tensor_data(images: np.ndarray, labels: np.ndarray, device: torch.device, on_device: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy a split's decoded images into one tensor: on the device, pinned host memory, or plain CPU memory."""
    x = torch.from_numpy(np.ascontiguousarray(images))
    y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
    if device.type == "cuda":
        if on_device:
            return x.to(device), y.to(device)
        return x.pin_memory(), y.pin_memory()
    return x, y


def fits_on_device(nbytes: int, device: torch.device, fraction: float = 0.5) -> bool:
    """Keep the data on the GPU only when it takes at most ``fraction`` of the free memory."""
    if device.type != "cuda":
        return True
    free, _total = torch.cuda.mem_get_info(device)
    return nbytes <= fraction * free


class PaperImageFolder(torchvision.datasets.ImageFolder):
    """torchvision's ImageFolder, but with the canonical class order and the scanned file list.

    ImageFolder sorts class folders with ``sorted()`` and files by name (A1, A10, A100, A2);
    the split indices refer to :class:`DatasetIndex` order (canonical classes, files by
    number), so classes and samples are taken from the index.
    """

    def __init__(self, index: DatasetIndex, size: int, interpolation: str) -> None:
        self._index = index
        self._size = size
        self._interpolation = interpolation
        super().__init__(str(index.root), loader=self._load)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = list(self._index.classes)
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):  # noqa: ANN001
        return [(str(self._index.root / f), label) for f, label in zip(self._index.files, self._index.labels, strict=True)]

    def _load(self, path: str) -> torch.Tensor | str:
        """Decode + resize + normalise on the CPU, every epoch, as in 2020.

        A corrupt file comes back as its path relative to the dataset root, so the batch can name it."""
        try:
            hwc = load_image(path, self._size, self._interpolation)
        except Exception:  # noqa: BLE001 - a corrupt image is skipped and named, not fatal
            return str(Path(path).relative_to(self._index.root))
        return normalize(to_tensor(hwc).unsqueeze(0))[0]


def _skip_corrupt(batch: list[tuple[torch.Tensor | str, int]]) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    good = [(x, y) for x, y in batch if isinstance(x, torch.Tensor)]
    xs = torch.stack([x for x, _ in good]) if good else torch.empty(0)
    ys = torch.tensor([y for _, y in good], dtype=torch.int64)
    return xs, ys, [x for x, _ in batch if isinstance(x, str)]


class GlobalBatchSampler:
    """One epoch's order cut into global batches; yields this rank's share of each (a batch_sampler).

    Under DDP every rank walks the same global batches, so ranks take equal steps (no rank waits in an
    all-reduce its peers never join) and each global batch mixes all classes, as one process would see.
    """

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, epoch: int, rank: int = 0,
                 world: int = 1, max_steps: int = 0) -> None:
        self.n, self.batch_size, self.shuffle, self.seed, self.epoch = n, batch_size, shuffle, seed, epoch
        self.rank, self.world, self.max_steps = rank, world, max_steps

    def __len__(self) -> int:
        steps = -(-self.n // self.batch_size)
        if self.world > 1 and self.n % self.batch_size and self.n % self.batch_size < self.world:
            steps -= 1  # a last global batch smaller than the world would leave a rank empty
        return min(steps, self.max_steps) if self.max_steps else steps

    def __iter__(self) -> Iterator[list[int]]:
        order = torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch)) if self.shuffle \
            else torch.arange(self.n)
        for step in range(len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            if self.world > 1:
                idx = idx[rank_slice(len(idx), self.rank, self.world)]
            yield idx.tolist()

    def global_size(self, step: int) -> int:
        return min(self.batch_size, self.n - step * self.batch_size)


@dataclass
class LoaderBatches:
    """The 2020 pipeline: a DataLoader over :class:`PaperImageFolder`, fp32, decoded every epoch."""

    dataset: PaperImageFolder
    indices: np.ndarray
    device: torch.device
    batch_size: int
    shuffle: bool
    seed: int
    workers: int = 2
    rank: int = 0
    world: int = 1
    max_steps: int = 0
    skipped: list[str] = field(default_factory=list)  # unreadable images met in the last epoch (this rank's)

    def sampler(self, epoch: int) -> GlobalBatchSampler:
        return GlobalBatchSampler(len(self.indices), self.batch_size, self.shuffle, self.seed, epoch,
                                  self.rank, self.world, self.max_steps)

    def __len__(self) -> int:
        return len(self.sampler(0))

    def epoch(self, epoch: int) -> Iterator[Batch]:
        sampler = self.sampler(epoch)
        loader = DataLoader(
            Subset(self.dataset, np.asarray(self.indices).tolist()),
            batch_sampler=sampler,
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            collate_fn=_skip_corrupt,
        )
        self.skipped = []
        for step, (x, y, skipped) in enumerate(loader):
            self.skipped += skipped
            if len(y) == 0:
                if self.world > 1:  # a rank with nothing to train on would leave its peers waiting
                    raise RuntimeError(f"every image of a training batch was unreadable on rank {self.rank}")
                continue
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True), sampler.global_size(step)
