"""A trained model plus the exact training preprocessing: images in, top-k probabilities out.

Every pixel goes through :mod:`aslhpc.data.preprocess` (``load_image`` with the model file's
image size and interpolation, ``to_tensor``, ``normalize``), so a prediction sees the numbers
training saw. Video frames arrive as BGR arrays from OpenCV; :func:`frame_to_pil` turns them
into the RGB PIL images ``load_image`` takes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from aslhpc import cellfiles
from aslhpc.atomic import read_json
from aslhpc.data.preprocess import CorruptImageError, load_image, normalize, to_tensor
from aslhpc.errors import AslhpcError
from aslhpc.training.modelio import load_model

ImageInput = str | os.PathLike | Image.Image
DATASET_FRAME = 200  # side of the Kaggle ASL Alphabet images the models are trained on


@dataclass(frozen=True)
class Prediction:
    """The ``k`` most probable classes of one image, most probable first."""

    top: tuple[tuple[str, float], ...]

    @property
    def label(self) -> str:
        return self.top[0][0]

    @property
    def prob(self) -> float:
        return self.top[0][1]

    def format(self) -> str:
        """``A 0.973  S 0.012  E 0.004``: the one-line form the CLI prints."""
        return "  ".join(f"{name} {p:.3f}" for name, p in self.top)


@dataclass(frozen=True)
class Unreadable:
    """An image file that could not be decoded, and why."""

    path: Path
    reason: str

    def format(self) -> str:
        """``path: cannot read image (reason)``: the one line the CLI prints on stderr."""
        return f"{self.path}: cannot read image ({self.reason})"


@dataclass(frozen=True)
class BestCell:
    """The cell of an experiment whose model ``--experiment`` picks."""

    cell_dir: Path
    val_acc: float
    split: str = ""  # the split kind it trained on (result.json ``split.kind``); "" when not recorded

    @property
    def model_path(self) -> Path:
        return cellfiles.CellPaths(self.cell_dir).best_model

    def describe(self, experiment: str) -> str:
        """``cell g1-b32-blocked-r0 of exp (blocked split, val_acc 91.20%): PATH``, what predict prints."""
        split = f"{self.split} split, " if self.split else ""
        return (f"cell {self.cell_dir.name} of {experiment} ({split}val_acc {self.val_acc:.2f}%): "
                f"{self.model_path}")


def _split_kind(result: dict) -> str:
    split, config = result.get("split"), result.get("config")
    kind = split.get("kind") if isinstance(split, dict) else None
    if kind is None and isinstance(config, dict):
        kind = config.get("split")
    return kind if isinstance(kind, str) else ""


def resolve_device(name: str) -> torch.device:
    """``auto`` is CUDA when a GPU is visible, else the CPU; ``cuda`` without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise AslhpcError("--device cuda but no CUDA GPU is visible; use --device cpu or auto")
    if name not in ("cpu", "cuda"):
        raise AslhpcError(f"--device {name!r} is not valid; use auto, cpu or cuda")
    return torch.device(name)


def conv_bn_pairs(model: nn.Module) -> tuple[list[tuple[str, str]], str]:
    """``(conv, batchnorm)`` module names where the BatchNorm is the only consumer of the convolution's
    output, found in the module graph (torch.fx), else in ``nn.Sequential`` adjacency; and how found."""
    modules = dict(model.named_modules())
    try:
        import torch.fx

        graph = torch.fx.symbolic_trace(model).graph
    except Exception:  # noqa: BLE001 - data-dependent control flow: fall back to Sequential adjacency
        pairs = []
        for name, seq in modules.items():
            if type(seq) is nn.Sequential:
                kids = list(seq.named_children())
                pairs += [(f"{name}.{a}".lstrip("."), f"{name}.{b}".lstrip("."))
                          for (a, m), (b, n) in zip(kids, kids[1:], strict=False)
                          if isinstance(m, nn.Conv2d) and isinstance(n, nn.BatchNorm2d)]
        return _foldable(modules, pairs, once=None), "nn.Sequential order (torch.fx could not trace it)"
    calls: dict[str, int] = {}
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module":
            continue
        calls[node.target] = calls.get(node.target, 0) + 1
        src = node.args[0] if node.args else None
        if (isinstance(modules.get(node.target), nn.BatchNorm2d) and getattr(src, "op", "") == "call_module"
                and isinstance(modules.get(src.target), nn.Conv2d) and len(src.users) == 1):
            pairs.append((str(src.target), str(node.target)))
    return _foldable(modules, pairs, once=calls), "module graph (torch.fx)"


def _foldable(modules: dict[str, nn.Module], pairs: list[tuple[str, str]],
              once: dict[str, int] | None) -> list[tuple[str, str]]:
    """Pairs whose BatchNorm keeps running statistics and whose modules run once (shared ones cannot fold)."""
    return [(c, b) for c, b in pairs
            if modules[b].track_running_stats and modules[b].running_mean is not None
            and (once is None or (once.get(c) == 1 and once.get(b) == 1))]


def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold each eval-mode BatchNorm into the convolution feeding it: same outputs, one op less per pair.

    Works on the module in place (a forward that looks its layers up by attribute keeps working) and
    returns it; a model with no foldable pair is returned unchanged, with one line on stderr.
    """
    model.eval()
    pairs, how = conv_bn_pairs(model)
    for conv, norm in pairs:
        _replace(model, conv, fuse_conv_bn_eval(model.get_submodule(conv), model.get_submodule(norm)))
        _replace(model, norm, nn.Identity())
    if not pairs:
        print(f"aslhpc: note: BatchNorm folding skipped: no Conv2d -> BatchNorm2d pair found by {how}",
              file=sys.stderr, flush=True)
    return model


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def frame_to_pil(frame_bgr: np.ndarray, frame_size: int | None = DATASET_FRAME) -> Image.Image:
    """An OpenCV BGR frame as an RGB PIL image: the largest centred square, at most ``frame_size`` px.

    Training images are square 200x200 camera frames; squashing a 4:3 frame to a square would
    change the hand's proportions, so it is cropped. A large frame is first brought down to the
    dataset's frame size in OpenCV (integer-factor area averaging, then a small linear step:
    about 10x cheaper than one non-integer resize), so ``load_image`` then performs the very
    resize training did (200 -> 150 px).
    """
    from aslhpc.recognize.sources import opencv

    cv2 = opencv()
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.dtype != np.uint8:
        raise AslhpcError(f"expected a uint8 colour (H, W, 3) frame, got {frame_bgr.dtype} {frame_bgr.shape}")
    h, w = frame_bgr.shape[:2]
    factor = min(h, w) // frame_size if frame_size else 1
    side = min(h, w) - min(h, w) % max(factor, 1)  # a multiple of the factor: OpenCV's fast area path
    top, left = (h - side) // 2, (w - side) // 2
    square = frame_bgr[top:top + side, left:left + side]
    if factor >= 2:  # integer-factor averaging: cheap and alias-free (480 -> 240)
        square = cv2.resize(square, (side // factor, side // factor), interpolation=cv2.INTER_AREA)
    if frame_size and square.shape[0] > frame_size:  # the small rest (240 -> 200)
        square = cv2.resize(square, (frame_size, frame_size), interpolation=cv2.INTER_LINEAR)
    return Image.fromarray(cv2.cvtColor(square, cv2.COLOR_BGR2RGB))


@dataclass
class Classifier:
    """A model in eval mode with the preprocessing it was trained with."""

    model: nn.Module
    classes: tuple[str, ...]
    image_size: int = 150
    interpolation: str = "bilinear"
    device: torch.device = torch.device("cpu")
    channels_last: bool = False

    @classmethod
    def from_file(cls, path: str | os.PathLike, device: str = "auto", fuse: bool = True,
                  channels_last: bool = True) -> Classifier:
        """Load ``best_model.pt``, tuned for inference without changing its outputs.

        ``fuse`` folds BatchNorm into the convolutions; ``channels_last`` lets oneDNN skip layout
        reorders. Both measured faster at batch 1 on CPU (benchmarks/inference_fps.py).
        """
        dev = resolve_device(device)
        loaded = load_model(path, device="cpu")
        model = fuse_batchnorm(loaded.model) if fuse else loaded.model
        model = model.to(dev).eval()
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return cls(model, loaded.classes, loaded.image_size, loaded.interpolation, dev, channels_last)

    def pixels(self, image: ImageInput) -> np.ndarray:
        """Decode + resize exactly as training did: uint8 (size, size, 3)."""
        return load_image(image, self.image_size, self.interpolation)

    @torch.inference_mode()
    def probabilities(self, pixels: Sequence[np.ndarray]) -> torch.Tensor:
        """Softmax over classes for a batch of ``pixels()`` arrays: float (N, classes) on the CPU."""
        batch = torch.stack([to_tensor(p) for p in pixels]).to(self.device, non_blocking=True)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        logits = self.model(normalize(batch))
        return torch.softmax(logits.float(), dim=1).cpu()

    def top_k(self, probs: torch.Tensor, k: int) -> list[Prediction]:
        """Rows of class probabilities -> :class:`Prediction` with the ``k`` best (clamped to the class
        count)."""
        values, indices = probs.topk(max(1, min(k, len(self.classes))), dim=1)
        return [Prediction(tuple((self.classes[i], float(v)) for v, i in zip(vs, ix, strict=True)))
                for vs, ix in zip(values.tolist(), indices.tolist(), strict=True)]

    def predict(self, images: Sequence[ImageInput], k: int = 3) -> list[Prediction]:
        """Top-``k`` for images given as paths or PIL images (one batch)."""
        if not images:
            return []
        return self.top_k(self.probabilities([self.pixels(im) for im in images]), k)

    def predict_files(self, paths: Sequence[str | os.PathLike], k: int = 3) -> list[Prediction | Unreadable]:
        """Top-``k`` per image file (one batch), in order; a file that cannot be decoded gets an
        :class:`Unreadable` in its place instead of failing the others."""
        results: dict[int, Prediction | Unreadable] = {}
        decoded: list[int] = []
        pixels: list[np.ndarray] = []
        for i, path in enumerate(paths):
            try:
                pixels.append(self.pixels(path))
            except CorruptImageError as exc:
                cause = exc.__cause__
                reason = ((str(cause).splitlines() or [type(cause).__name__])[0] if cause is not None
                          else str(exc))
                results[i] = Unreadable(Path(path), reason)
            else:
                decoded.append(i)
        if pixels:
            results.update(zip(decoded, self.top_k(self.probabilities(pixels), k), strict=True))
        return [results[i] for i in range(len(paths))]

    def predict_frames(self, frames: Iterable[np.ndarray], k: int = 1,
                       batch_size: int = 1) -> Iterator[Prediction]:
        """Top-``k`` per BGR video frame, in order; frames are grouped ``batch_size`` at a time.

        A camera wants ``batch_size=1`` (latency); a video file can batch for throughput.
        """
        chunk: list[np.ndarray] = []
        for frame in frames:
            chunk.append(self.pixels(frame_to_pil(frame, max(DATASET_FRAME, self.image_size))))
            if len(chunk) >= batch_size:
                yield from self.top_k(self.probabilities(chunk), k)
                chunk = []
        if chunk:
            yield from self.top_k(self.probabilities(chunk), k)


def find_best_cell(results: str | os.PathLike, experiment: str, split: str | None = None) -> BestCell:
    """The completed cell with the highest ``val_acc`` that kept a ``best_model.pt`` (ties: lower id);
    with ``split``, the best of the cells trained on that split kind."""
    best = best_cells_by_split(results, experiment)
    if split is None:
        candidates = sorted(best.values(), key=lambda b: b.cell_dir.name)
        if candidates:
            return max(candidates, key=lambda b: b.val_acc)  # the first (lowest id) of equal ones
    elif split in best:
        return best[split]
    cells = cellfiles.cells_dir(results, experiment)
    if split is not None and best:
        raise AslhpcError(f"no completed {split}-split cell with a {cellfiles.BEST_MODEL} in {cells} (it has "
                          f"{', '.join(sorted(k or 'unrecorded' for k in best))}); pick another --split")
    raise AslhpcError(f"no completed cell with a {cellfiles.BEST_MODEL} in {cells}; "
                      "wait for a cell to finish or pass --model PATH")


def best_cells_by_split(results: str | os.PathLike, experiment: str) -> dict[str, BestCell]:
    """Split kind -> its completed cell with the highest ``val_acc`` and a ``best_model.pt`` (ties: lower
    id); cells whose result does not record the split are under ""."""
    cells = cellfiles.cells_dir(results, experiment)
    if Path(results).exists() and not Path(results).is_dir():
        raise AslhpcError(f"--results {results} is a file, expected the results folder "
                          "(results/<exp>/cells/...)")
    if cells.exists() and not cells.is_dir():
        raise AslhpcError(f"{cells} is a file, expected a folder of cells; check --experiment and --results")
    if not cells.is_dir():
        raise AslhpcError(f"no experiment {experiment!r} under {results} ({cells} missing); "
                          "check --experiment and --results")
    best: dict[str, BestCell] = {}
    for cell in sorted(p for p in cells.iterdir() if p.is_dir()):
        paths = cellfiles.CellPaths(cell)
        if not (paths.result.is_file() and paths.best_model.is_file()):
            continue
        try:
            result = read_json(paths.result)
            val_acc = float(result["val_acc"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a torn or foreign result.json is not a candidate
        kind = _split_kind(result)
        if kind not in best or val_acc > best[kind].val_acc:
            best[kind] = BestCell(cell, val_acc, kind)
    return best
