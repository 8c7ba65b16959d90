"""Two ways to feed the same model the same split: ``paper`` and ``fast``.

* paper: torchvision ImageFolder + DataLoader; every epoch every JPEG is decoded,
  resized with PIL and normalised on the CPU, then copied to the GPU as fp32.
  The most common PyTorch setup of 2020; that the study timed this is our assumption (it does
  not describe its pipeline), kept so its findings can be compared like for like.
* fast: the decode-once uint8 cache is put on the device once (or kept in host memory when it does
  not fit, each batch staged through a small pinned buffer); a batch is a gather on the device, normalisation
  happens there; the shuffle is made on the CPU and copied once per epoch. No worker processes.

Both yield ``(x, y, n)`` per batch: float NCHW input and int64 labels on the
training device, and the number of samples in the *global* batch (all ranks),
which DDP needs to weight each rank's loss.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torchvision
from torch.utils.data import DataLoader, Subset

from aslhpc.data import DatasetIndex, load_image, normalize, to_tensor

Batch = tuple[torch.Tensor, torch.Tensor, int]
STAGING_ROWS = 4096  # rows copied per chunk into pinned or device memory: ~270 MB at 150 px


class Batches(Protocol):
    """What the training loop iterates: ``len()`` is the number of steps ``epoch()`` yields."""

    skipped: list[str]  # unreadable images met so far (names relative to the dataset's class folders)

    def __len__(self) -> int: ...

    def epoch(self, epoch: int) -> Iterator[Batch]: ...

    def image_rows(self) -> np.ndarray: ...


def rank_slice(n: int, rank: int, world: int) -> slice:
    """Rank ``rank``'s contiguous share of ``n`` items, split as evenly as torch.chunk-free DP would."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return slice(start, start + base + (1 if rank < extra else 0))


def sampler_positions(sampler: GlobalBatchSampler) -> np.ndarray:
    """The positions a sampler's epoch visits on this rank, in order."""
    order = sampler.order().numpy()
    parts = [order[pos] for pos, _ in sampler.slices()]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """A fresh CPU generator per epoch: the shuffle of epoch e depends only on (seed, e), so resume is exact.

    Always on the CPU: a CUDA ``randperm`` depends on the GPU model (its SM count), so a resume on
    another GPU type, or DDP over mixed GPUs, would shuffle differently."""
    g = torch.Generator()
    g.manual_seed(seed * 100_003 + epoch)
    return g


class GlobalBatchSampler:
    """The one batching rule of both pipelines: an epoch's order cut into global batches, this rank's share.

    Under DDP every rank walks the same global batches, so ranks take equal steps (no rank waits in an
    all-reduce its peers never join) and each global batch mixes all classes, as one process would see.
    A last global batch smaller than the world is dropped (a rank would get nothing). ``len()`` is the
    loop bound: :meth:`steps` yields exactly that many. Iterating yields index lists (a DataLoader
    ``batch_sampler``).
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

    def order(self) -> torch.Tensor:
        """The epoch's order of the ``n`` items, on the CPU."""
        if self.shuffle:
            return torch.randperm(self.n, generator=epoch_generator(self.seed, self.epoch))
        return torch.arange(self.n)

    def slices(self) -> Iterator[tuple[slice, int]]:
        """Per step: ``(this rank's positions in the epoch's order, the global batch size)``."""
        for step in range(len(self)):
            start = step * self.batch_size
            global_n = min(self.batch_size, self.n - start)
            mine = rank_slice(global_n, self.rank, self.world) if self.world > 1 else slice(0, global_n)
            yield slice(start + mine.start, start + mine.stop), global_n

    def __iter__(self) -> Iterator[list[int]]:
        order = self.order()
        for pos, _ in self.slices():
            yield order[pos].tolist()

    def global_size(self, step: int) -> int:
        return min(self.batch_size, self.n - step * self.batch_size)


@dataclass
class TensorBatches:
    """Batches gathered from uint8 NHWC images held in memory (device, pinned host, or CPU).

    NHWC permuted to NCHW *is* the channels_last layout, so the gather feeds a
    channels_last model without a copy; ``channels_last=False`` makes it contiguous.
    Labels live on the training device (a few hundred KB): their gather never waits on a copy.
    """

    images: torch.Tensor  # (N, H, W, 3) uint8
    labels: torch.Tensor  # (N,) int64, on ``device``
    device: torch.device
    batch_size: int
    shuffle: bool
    seed: int
    channels_last: bool = True
    rank: int = 0
    world: int = 1
    max_steps: int = 0
    skipped: list[str] = field(default_factory=list)  # the cache found them (build_data lists them)
    rows: np.ndarray | None = None  # the dataset row of each image (test_predictions.csv names them)

    def sampler(self, epoch: int) -> GlobalBatchSampler:
        return GlobalBatchSampler(len(self.labels), self.batch_size, self.shuffle, self.seed, epoch,
                                  self.rank, self.world, self.max_steps)

    def image_rows(self) -> np.ndarray:
        """The dataset rows of the images an unshuffled pass yields, in its order (``rows`` must be set)."""
        if self.rows is None:
            raise ValueError("TensorBatches.rows is not set: the dataset rows of its images are unknown")
        return np.asarray(self.rows)[sampler_positions(self.sampler(0))]

    def __len__(self) -> int:
        return len(self.sampler(0))

    def epoch(self, epoch: int) -> Iterator[Batch]:
        sampler = self.sampler(epoch)
        order = sampler.order()  # made on the CPU, copied to the device once per epoch
        dev_order = order.to(self.labels.device, non_blocking=True)
        img_order = order if self.images.device.type == "cpu" else dev_order
        staging = None
        if self.images.device != self.device and self.device.type == "cuda":
            staging = _PinnedStaging(self.images, self.batch_size)
        for pos, global_n in sampler.slices():
            if staging is not None:
                x = staging.gather(img_order[pos], self.device)
            else:
                x = self.images.index_select(0, img_order[pos])
            y = self.labels.index_select(0, dev_order[pos])
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
        torch.index_select(self.images, 0, idx, out=buf)
        out = buf.to(device, non_blocking=True)
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(device))  # the stream the copy was queued on
        self.events[k] = event
        return out


def fill_rows(dst: torch.Tensor, images: np.ndarray, rows: np.ndarray, chunk: int = STAGING_ROWS) -> None:
    """``dst[i] = images[rows[i]]``, a chunk at a time: never a whole split's copy in host memory."""
    for start in range(0, len(rows), chunk):
        part = torch.from_numpy(np.ascontiguousarray(images[rows[start:start + chunk]]))
        dst[start:start + len(part)].copy_(part)


def tensor_data(images: np.ndarray, rows: np.ndarray, labels: np.ndarray, device: torch.device,
                on_device: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """A split's decoded images (``images[rows]``) in one tensor: on the device, or in host memory.

    Filled in chunks straight from the (memory-mapped) cache, so a split is never held twice. A split
    left in host memory for a CUDA run is not page-locked: each batch is gathered into one of two small
    pinned staging buffers (:class:`_PinnedStaging`) and copied from there, so locking gigabytes of host
    memory (which can fail, and takes it from every other process on the node) would buy nothing.
    Labels go to the device in every case.
    """
    shape = (len(rows), *images.shape[1:])
    y = torch.from_numpy(np.asarray(labels[rows], dtype=np.int64)).to(device)
    on_gpu = device.type == "cuda" and on_device
    x = torch.empty(shape, dtype=torch.uint8, device=device if on_gpu else "cpu")
    fill_rows(x, images, rows)
    return x, y


def host_bytes_per_rank(n_images: int, image_size: int) -> int:
    """Host memory one rank's fast pipeline holds for its decoded splits when they stay in host memory."""
    return n_images * image_size * image_size * 3


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
        self.index = index
        self._index = index
        self._size = size
        self._interpolation = interpolation
        super().__init__(str(index.root), loader=self._load)

    def find_classes(self, directory: str | Path) -> tuple[list[str], dict[str, int]]:
        classes = list(self._index.classes)
        return classes, {c: i for i, c in enumerate(classes)}

    def make_dataset(self, directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False):  # noqa: ANN001
        index = self._index
        return [(str(index.root / f), label) for f, label in zip(index.files, index.labels, strict=True)]

    def _load(self, path: str) -> torch.Tensor | str:
        """Decode + resize + normalise on the CPU, every epoch (the assumed 2020 pipeline).

        A corrupt file comes back as its path relative to the dataset root, so the batch can name it."""
        try:
            hwc = load_image(path, self._size, self._interpolation)
        except Exception:  # noqa: BLE001 - a corrupt image is skipped and named, not fatal
            return str(Path(path).relative_to(self._index.root))
        return normalize(to_tensor(hwc).unsqueeze(0))[0]


def _skip_corrupt(batch: list[tuple[torch.Tensor | str, int]],
                  ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    good = [(x, y) for x, y in batch if isinstance(x, torch.Tensor)]
    xs = torch.stack([x for x, _ in good]) if good else torch.empty(0)
    ys = torch.tensor([y for _, y in good], dtype=torch.int64)
    return xs, ys, [x for x, _ in batch if isinstance(x, str)]


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
    log: Callable[[str], None] | None = field(default=None, repr=False)  # names each unreadable image once
    _logged: set[str] = field(default_factory=set, repr=False)

    def sampler(self, epoch: int) -> GlobalBatchSampler:
        return GlobalBatchSampler(len(self.indices), self.batch_size, self.shuffle, self.seed, epoch,
                                  self.rank, self.world, self.max_steps)

    def __len__(self) -> int:
        return len(self.sampler(0))

    def image_rows(self) -> np.ndarray:
        """The dataset rows of the images the last unshuffled pass yielded, in its order (this rank's)."""
        rows = np.asarray(self.indices)[sampler_positions(self.sampler(0))]
        bad = set(self.skipped)
        files = self.dataset.index.files
        return np.asarray([r for r in rows if files[r] not in bad], dtype=np.int64)

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
            for name in skipped:
                if self.log is not None and name not in self._logged:
                    self._logged.add(name)
                    self.log(f"skipped unreadable image {name} (the paper pipeline decodes it every epoch)")
            if len(y) == 0:
                if self.world > 1:  # a rank with nothing to train on would leave its peers waiting
                    raise RuntimeError(f"every image of a training batch was unreadable on rank {self.rank}")
                continue
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            yield x, y, sampler.global_size(step)
