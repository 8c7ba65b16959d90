"""Configuration of one training cell, as a dataclass that round-trips through JSON."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from aslhpc.errors import ConfigError

SPLITS = ("random", "blocked")
PIPELINES = ("paper", "fast")
STRATEGIES = ("dp", "ddp")
AMP_MODES = ("auto", "fp32", "fp16", "bf16")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
MIN_INPUT_SIZE = 30  # the network's conv k7, pool, conv k5, pool, conv k3, pool: 30 px -> 1x1
# Fields that do not change what a cell computes: a checkpoint or result written under other values still counts.
NOT_IDENTITY = frozenset({"out", "cache_dir", "log_every", "sample_interval_s", "process_sample_interval_s",
                          "workers", "allow_cpu", "reuse_host_memory"})


def default_cache_dir() -> str:
    """Where decoded-image caches live: $ASLHPC_CACHE_DIR, else ~/.cache/aslhpc (shared by all cells)."""
    return os.environ.get("ASLHPC_CACHE_DIR") or str(Path.home() / ".cache" / "aslhpc")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one cell's training run. Defaults follow the 2020 paper."""

    data: str
    out: str
    gpus: int = 1
    batch_size: int = 128
    epochs: int = 25
    lr: float = 0.005
    momentum: float = 0.0
    dropout: float = 0.2
    image_size: int = 150
    interpolation: str = "bilinear"
    split: str = "random"
    split_seed: int = 0  # fixed across repeats, so every cell of an experiment sees the same split
    seed: int = 0  # model init, shuffling and dropout; repeats vary this
    pipeline: str = "fast"
    strategy: str = "dp"
    amp: str = "auto"
    channels_last: bool = True
    compile: bool = False
    reuse_host_memory: bool = True  # fast pipeline on CPU: keep freed activation memory (hostmem.py)
    allow_cpu: bool = False
    workers: int = 2
    cache_dir: str = ""
    log_every: int = 50
    sample_interval_s: float = 1.0
    process_sample_interval_s: float = 10.0
    max_steps: int = 0  # >0 stops each epoch after this many batches (benchmarks, smoke tests)

    def __post_init__(self) -> None:
        if not self.cache_dir:
            object.__setattr__(self, "cache_dir", default_cache_dir())
        self.validate()

    def validate(self) -> None:
        def choice(name: str, allowed: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"{name}={value!r} is not valid; use one of {', '.join(allowed)}")

        choice("split", SPLITS)
        choice("pipeline", PIPELINES)
        choice("strategy", STRATEGIES)
        choice("amp", AMP_MODES)
        choice("interpolation", INTERPOLATIONS)
        for name in ("batch_size", "epochs"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name}={getattr(self, name)} must be a positive integer")
        if self.image_size < MIN_INPUT_SIZE:
            raise ConfigError(f"image_size={self.image_size} is too small for the network's three conv+pool "
                              f"stages; use at least {MIN_INPUT_SIZE} (the paper: 150)")
        if self.gpus < 0:
            raise ConfigError(f"gpus={self.gpus} must be 0 (CPU) or more")
        if self.lr <= 0:
            raise ConfigError(f"lr={self.lr} must be positive")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout={self.dropout} must be in [0, 1)")
        if self.workers < 0:
            raise ConfigError(f"workers={self.workers} must be 0 or more")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys so older result files stay readable."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a checkpoint to be resumed (not paths or logging)."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_IDENTITY}
