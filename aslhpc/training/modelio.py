"""Saving and loading a trained model with what inference needs to preprocess exactly as training did."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from aslhpc.atomic import atomic_write_bytes
from aslhpc.data.preprocess import RESAMPLE, describe
from aslhpc.errors import AslhpcError
from aslhpc.training import models


@dataclass
class LoadedModel:
    model: nn.Module
    classes: tuple[str, ...]
    image_size: int
    interpolation: str
    meta: dict[str, Any]
    spec: str = models.LADNET  # the registry spec that rebuilt it (a file written before specs: ladnet)


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DDP / torch.compile wrappers."""
    while True:
        if hasattr(model, "module"):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the weights with wrapper prefixes stripped, loadable into the bare model."""
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def save_model(path: str | Path, model: nn.Module, classes: tuple[str, ...], *, image_size: int,
               interpolation: str, dropout: float, model_spec: str = "", **meta: Any) -> None:
    """Atomically write ``best_model.pt``: weights + model spec + classes + preprocessing + metadata.

    ``model_spec`` defaults to the spec the registry built ``model`` from, so the file always says
    which network it holds; ``preprocessing`` spells out what inference must do to an image."""
    import io

    buf = io.BytesIO()
    spec = model_spec or models.spec_of(unwrap(model))
    preprocessing = describe(image_size, interpolation)
    torch.save({"state_dict": model_state(model), "model": spec, "classes": list(classes),
                "image_size": image_size, "interpolation": interpolation, "dropout": dropout,
                "preprocessing": preprocessing, "meta": meta}, buf)
    atomic_write_bytes(path, buf.getvalue())


class _Refused(AslhpcError):
    """A model file whose network would be rebuilt by code this user does not trust."""


def _not_a_model(path: Path, reason: str) -> AslhpcError:
    return AslhpcError(f"{path} is not an aslhpc model file ({reason}); pass a cell's best_model.pt "
                       "(results/<exp>/cells/<cell>/best_model.pt)")


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model saved by :func:`save_model`, in eval mode on ``device``.

    Anything else (a missing path, a folder, a JSON file, another program's ``.pt``, a training
    ``checkpoint.pt``) raises a one-line :class:`AslhpcError` saying what the path is instead.
    """
    path = Path(path)
    if path.is_dir():
        hint = f"; did you mean {path / 'best_model.pt'}?" if (path / "best_model.pt").is_file() else ""
        raise AslhpcError(f"model {path} is a folder, expected a best_model.pt file{hint}")
    if not path.exists():
        raise AslhpcError(f"model file {path} does not exist; pass a cell's best_model.pt "
                          "(results/<exp>/cells/<cell>/best_model.pt)")
    if not path.is_file():
        raise AslhpcError(f"model {path} is not a regular file; pass a cell's best_model.pt")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch's many-line messages say nothing the user can act on
        what = "not a PyTorch file"
        if zipfile.is_zipfile(path):
            what = "a PyTorch file that holds more than plain weights"
        raise _not_a_model(path, f"{what}: {type(exc).__name__}") from exc
    needed = {"state_dict", "classes", "image_size", "interpolation"}
    if not isinstance(blob, dict) or not needed <= blob.keys():
        if isinstance(blob, dict) and {"model", "optimizer"} <= blob.keys():
            raise _not_a_model(path, "a training checkpoint.pt, which resumes training")
        raise _not_a_model(path, "no state_dict / classes / image_size / interpolation entries")
    try:
        classes = tuple(str(c) for c in blob["classes"])
        image_size, interpolation = int(blob["image_size"]), str(blob["interpolation"])
        if interpolation not in RESAMPLE or image_size < 1 or not classes:
            raise ValueError(f"classes {len(classes)}, image_size {image_size}, "
                             f"interpolation {interpolation!r}")
        dropout = float(blob.get("dropout", 0.2))
        spec = str(blob.get("model", models.LADNET))
        untrusted = models.trusted_source(spec)
        if untrusted:
            raise _Refused(f"{path} names model {spec}, which is not rebuilt: {untrusted}; train it yourself "
                           "or copy the factory into a file you own and retrain")
        model = models.build_model(spec, len(classes), image_size, dropout=dropout)
        model.load_state_dict(blob["state_dict"])
        meta = dict(blob.get("meta", {}))
    except _Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - any shape/type problem is the same user error
        reason = (str(exc).strip().splitlines() or [""])[0].rstrip(":")
        raise _not_a_model(path, f"its entries do not fit: {type(exc).__name__}: {reason}"[:200]) from exc
    model.to(device).eval()
    return LoadedModel(model, classes, image_size, interpolation, meta, spec)
