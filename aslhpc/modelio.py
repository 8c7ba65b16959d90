"""Saving and loading a trained model with what inference needs to preprocess exactly as training did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .atomic import atomic_write_bytes
from .errors import AslhpcError
from .model import LadNet


@dataclass
class LoadedModel:
    model: LadNet
    classes: tuple[str, ...]
    image_size: int
    interpolation: str
    meta: dict[str, Any]


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
    """A CPU copy of the weights with wrapper prefixes stripped, loadable into a plain LadNet."""
    return {k: v.detach().to("cpu", copy=True) for k, v in unwrap(model).state_dict().items()}


def save_model(path: str | Path, model: nn.Module, classes: tuple[str, ...], *, image_size: int,
               interpolation: str, dropout: float, **meta: Any) -> None:
    """Atomically write ``best_model.pt``: weights + classes + preprocessing + free-form metadata."""
    import io

    buf = io.BytesIO()
    torch.save({"state_dict": model_state(model), "classes": list(classes), "image_size": image_size,
                "interpolation": interpolation, "dropout": dropout, "meta": meta}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_model(path: str | Path, device: str | torch.device = "cpu") -> LoadedModel:
    """Load a model saved by :func:`save_model`, in eval mode on ``device``."""
    path = Path(path)
    if not path.is_file():
        raise AslhpcError(f"model file {path} does not exist; pass a cell's best_model.pt (results/<exp>/cells/<cell>/best_model.pt)")
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        classes = tuple(blob["classes"])
        model = LadNet(num_classes=len(classes), dropout=float(blob.get("dropout", 0.2)))
        model.load_state_dict(blob["state_dict"])
    except Exception as exc:  # noqa: BLE001 - any unpickling/shape problem is the same user error
        raise AslhpcError(f"{path} is not an aslhpc model ({type(exc).__name__}: {exc}); pass a best_model.pt written by aslhpc.train") from exc
    model.to(device).eval()
    return LoadedModel(model, classes, int(blob["image_size"]), str(blob["interpolation"]), dict(blob.get("meta", {})))
