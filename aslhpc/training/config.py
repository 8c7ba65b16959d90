"""``TrainConfig``: the one definition of a cell's training settings.

Everything else is built from its fields: the train CLI's flags (name, type, default and help
from each field), the experiment TOML's ``[train]`` table (``TrainSettings``, the fields shared
by every cell of an experiment) and their validation (:func:`config_problems`, which
constructing a ``TrainConfig`` runs). The dataclass round-trips through JSON (result.json's
``config``, the manifest, the job's command line).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import Field, asdict, dataclass, field, fields
from typing import Any, NamedTuple

from aslhpc.errors import ConfigError

SPLITS = ("random", "blocked")
PIPELINES = ("paper", "fast")
STRATEGIES = ("dp", "ddp")
AMP_MODES = ("auto", "fp32", "fp16", "bf16")
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")
MIN_INPUT_SIZE = 30  # the network's conv k7, pool, conv k5, pool, conv k3, pool: 30 px -> 1x1
# Fields that do not change what a cell computes: a checkpoint or result written under other values
# still counts.
NOT_IDENTITY = frozenset({"out", "cache_dir", "node_local_cache", "log_every", "sample_interval_s",
                          "process_sample_interval_s", "workers", "allow_cpu", "reuse_host_memory",
                          "cpu_threads"})
# Fields added after cells were written, left out of identity() at their default so those cells' checkpoints
# and results still match (an old config.json lacks them: it meant the default).
IDENTITY_IF_SET = {"model": "ladnet", "split_group": "", "probe_memory_format": False}
# Fields that differ per cell of an experiment (the matrix and its paths): not part of the [train] table.
PER_CELL = ("data", "out", "gpus", "batch_size", "strategy", "cache_dir")
# Upper bounds, each far above any real cell: a typo (epochs = 10**14, seed = 10**20) is one error line
# before anything is submitted, not a cell that dies on the node after its cluster time is spent.
MAX_GPUS = 1024
MAX_BATCH = 1 << 20
MAX_EPOCHS = 100_000
MAX_SEED = 2**32 - 1
MAX_WORKERS = 256
MAX_THREADS = 4096
MAX_IMAGE = 4096
MAX_COUNT = 10**9
COMPILE_DP = ("compile=true cannot apply to a {gpus}-GPU DataParallel cell (its replicas are re-made "
              "every step, uncompiled); use strategy ddp, or compile=false")


def _opt(default: Any, help: str, **rules: Any) -> Any:
    """A field with its CLI help and validation rules in metadata.

    Rules: ``choices`` (allowed strings), ``min`` / ``max`` (int bounds; ``max_why`` says why the upper one),
    ``positive`` (finite float > 0), ``unit`` (float in [0, 1)), ``hint`` (appended to a range error),
    ``flag`` (CLI flag when not ``--field-name``), ``experiment_default`` (the [train] table's default
    where it differs). A new setting is one such field: the train flag, the submit override, the
    [train] key, its validation and its line in docs/experiment-file.md all follow from it.
    """
    return field(default=default, metadata={"help": help, **rules})


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines one cell's training run.

    Defaults are the study's stated settings (lr, epochs, dropout, image size) and, where it is silent,
    our assumptions (docs/reproducing-2020.md lists which is which).
    """

    data: str = field(metadata={"help": "dataset root: the Kaggle ASL Alphabet layout or any ImageFolder "
                                "(<root>/<class>/<image>)"})
    out: str = field(metadata={"help": "cell directory for result.json, epochs.jsonl, checkpoints"})
    gpus: int = _opt(1, "0 = CPU, 1 = one GPU, N > 1 = DataParallel (or DDP) over N", min=0, max=MAX_GPUS,
                     max_why="GPUs per cell")
    batch_size: int = _opt(128, "global batch size (all GPUs together)", min=1, max=MAX_BATCH,
                           max_why="far more images than one batch of this dataset can hold")
    epochs: int = _opt(25, "epochs (the study: 25; no early stopping, which the study does not mention: our "
                       "assumption)", min=1, max=MAX_EPOCHS, max_why="epochs of one cell")
    lr: float = _opt(0.005, "SGD learning rate (the study: 0.005)", positive=True)
    momentum: float = _opt(0.0, "SGD momentum (the study names none: 0 is our assumption)", unit=True)
    dropout: float = _opt(0.2, "dropout before fc1", unit=True)
    model: str = _opt("ladnet", "ladnet (the 2020 CNN), torchvision:NAME (no downloaded weights), or "
                      "MODULE:CALLABLE / path/to/file.py:CALLABLE called as CALLABLE(num_classes=K, "
                      "image_size=S) -> nn.Module (aslhpc.training.models)")
    image_size: int = _opt(150, "input side in pixels (the model sets the floor: ladnet needs "
                           f"{MIN_INPUT_SIZE}; the paper: 150)", min=1, max=MAX_IMAGE,
                           max_why="pixels a side")
    interpolation: str = _opt("bilinear", "resize filter", choices=INTERPOLATIONS)
    split: str = _opt("random", "random = one seeded shuffle (the study does not say how it split: our "
                      "assumption); blocked = contiguous frame blocks per class "
                      "(no near-duplicate leak)", choices=SPLITS)
    split_group: str = _opt("", "regex whose match in a file name (its first group, if any) is a group key "
                            "kept on one side of the split, e.g. a recording id; empty = none")
    split_seed: int = _opt(0, "seed of the split (keep it fixed across repeats)", min=0, max=MAX_SEED,
                           max_why="numpy and torch take 32-bit seeds")
    seed: int = _opt(0, "seed of init, shuffling and dropout (an experiment's repeat r uses seed + r)", min=0,
                     max=MAX_SEED, max_why="numpy and torch take 32-bit seeds")
    pipeline: str = _opt("fast", "paper = ImageFolder+DataLoader, fp32, decode every epoch (our assumption "
                         "of the 2020 setup: the study does not describe its input pipeline); "
                         "fast = cached data on the device", choices=PIPELINES,
                         # An experiment reproduces the study unless it says otherwise; the train CLI is
                         # for trying things, where the fast pipeline is what one wants.
                         experiment_default="paper")
    strategy: str = _opt("dp", "dp = nn.DataParallel, ddp = one process per GPU", choices=STRATEGIES)
    amp: str = _opt("auto", "auto = bf16 on Ampere+, fp16 on V100, fp32 on CPU", choices=AMP_MODES)
    channels_last: bool = _opt(True, "channels_last memory format (fast pipeline)")
    probe_memory_format: bool = _opt(False, "fast pipeline: time a few steps in channels_last and in "
                                     "contiguous format at the cell's start and train in the faster "
                                     "(result.json memory_format); costs bit-for-bit reproducibility "
                                     "between runs")
    compile: bool = _opt(False, "torch.compile the model (not with --strategy dp over several GPUs: "
                         "DataParallel re-makes its replicas every step)")
    reuse_host_memory: bool = _opt(True, "fast pipeline on CPU: keep freed activation memory in the heap "
                                   "instead of letting glibc return it to the OS every step")
    allow_cpu: bool = _opt(False, "fall back to the CPU when the GPUs are not usable here")
    workers: int = _opt(2, "DataLoader workers (paper pipeline)", min=0, max=MAX_WORKERS,
                        max_why="DataLoader processes per cell")
    cpu_threads: int = _opt(0, "intra-op CPU threads; 0 = $OMP_NUM_THREADS, else the CPUs the job was given "
                            "(the same value makes CPU numerics comparable across machines)", min=0,
                            max=MAX_THREADS, max_why="threads per process")
    cache_dir: str = _opt("", "decoded-image cache; empty = chosen where the cell runs: $ASLHPC_CACHE_DIR, "
                          "node-local scratch (--node-local-cache), else ~/.cache/aslhpc")
    node_local_cache: bool = _opt(False, "without --cache-dir/$ASLHPC_CACHE_DIR, cache in the job's "
                                  "$SLURM_TMPDIR or $TMPDIR (node-local scratch)")
    log_every: int = _opt(50, "print a batch line every N batches (0 = never)", min=0, max=MAX_COUNT,
                          max_why="batches")
    sample_interval_s: float = _opt(1.0, "telemetry interval, s", positive=True, flag="--sample-interval")
    process_sample_interval_s: float = _opt(10.0, "CPU process-tree telemetry interval, s", positive=True,
                                            flag="--process-sample-interval")
    max_steps: int = _opt(0, "stop each epoch after N batches (smoke runs; 0 = whole epochs)", min=0,
                          max=MAX_COUNT, max_why="batches")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        problems = config_problems(self.to_dict())
        if not problems and self.compile and self.strategy == "dp" and self.gpus > 1:
            problems.append(COMPILE_DP.format(gpus=self.gpus))
        if problems:
            raise ConfigError("; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict, ignoring unknown keys so older result files stay readable."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def identity(self) -> dict[str, Any]:
        """The fields that must match for a checkpoint to be resumed (not paths or logging)."""
        return {k: v for k, v in self.to_dict().items()
                if k not in NOT_IDENTITY and not (k in IDENTITY_IF_SET and IDENTITY_IF_SET[k] == v)}


def field_problem(f: Field, value: Any) -> str | None:
    """What is wrong with ``value`` for field ``f`` (its type and metadata rules, see :func:`_opt`), or None.

    Any dataclass field with this metadata is checked the same way ([cluster]'s resources too)."""
    meta, kind = f.metadata, str(f.type)
    if kind == "bool":
        return None if isinstance(value, bool) else f"{f.name}={value!r} must be true or false"
    if "choices" in meta and value not in meta["choices"]:
        return f"{f.name}={value!r} is not valid; use one of {', '.join(meta['choices'])}"
    if kind == "str":
        return None if isinstance(value, str) else f"{f.name}={value!r} must be a string"
    if kind == "int":
        if not isinstance(value, int) or isinstance(value, bool) or value < meta.get("min", value):
            hint = f" {meta['hint']}" if "hint" in meta else ""
            return f"{f.name}={value!r:.40} must be an integer >= {meta.get('min', 0)}{hint}"
        if "max" in meta and value > meta["max"]:
            why = meta.get("max_why", "the upper bound")
            return f"{f.name}={value!r:.40} is more than {meta['max']} ({why}); use a smaller value"
        return None
    if not isinstance(value, int | float) or isinstance(value, bool):
        return f"{f.name}={value!r:.40} must be a number"
    if meta.get("positive") and not (math.isfinite(value) and value > 0):
        return f"{f.name}={value!r} must be a positive finite number"
    if meta.get("unit") and not 0 <= value < 1:
        return f"{f.name}={value!r} must be in [0, 1)"
    return None


def config_problems(values: Mapping[str, Any]) -> list[str]:
    """One line per invalid value among ``values`` (any subset of the fields), naming key and fix."""
    problems = []
    for f in fields(TrainConfig):
        if f.name in values:
            problem = field_problem(f, values[f.name])
            if problem:
                problems.append(problem)
    if values.get("model", "ladnet") == "ladnet" and isinstance(values.get("image_size"), int) \
            and 1 <= values["image_size"] < MIN_INPUT_SIZE:  # other models' floors: training.models
        problems.append(f"image_size={values['image_size']!r} must be an integer >= {MIN_INPUT_SIZE} for "
                        f"model ladnet (its three conv+pool stages need at least {MIN_INPUT_SIZE}; "
                        "the paper: 150)")
    return problems


def shared_fields() -> list[tuple[str, Any, Any]]:
    """``(name, type, field)`` of the settings every cell of an experiment shares (``[train]``).

    For ``dataclasses.make_dataclass``; defaults and help are TrainConfig's (``experiment_default``
    where an experiment defaults otherwise)."""
    out = []
    for f in fields(TrainConfig):
        if f.name not in PER_CELL:
            default = f.metadata.get("experiment_default", f.default)
            out.append((f.name, f.type, field(default=default, metadata=f.metadata)))
    return out


def resolve_cache_dir(cfg: TrainConfig, env: Mapping[str, str] | None = None) -> tuple[str, str]:
    """``(directory, chosen_by)`` for the cell's decoded-image cache, decided where the cell runs.

    One rule for the trainer and the doctor: :func:`aslhpc.data.cache.resolve_cache_dir` (an explicit
    ``cache_dir``, then ``$ASLHPC_CACHE_DIR``, then node-local scratch when ``node_local_cache`` asks
    for it, then ``~/.cache/aslhpc``).
    """
    from aslhpc.data.cache import resolve_cache_dir as rule

    path, chosen_by = rule(cfg.cache_dir, cfg.node_local_cache, os.environ if env is None else env)
    return str(path), chosen_by


def cli_flag(f: Field) -> str:
    """The train CLI's flag for a field: ``--batch-size`` for ``batch_size`` unless metadata names one."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


_PY_TYPES = {"int": int, "float": float, "str": str, "bool": bool}


class OverrideFlag(NamedTuple):
    """One setting as a command-line flag: ``(name, flag, type, help, choices, default)``."""

    name: str  # the field (and argparse dest)
    flag: str  # e.g. --batch-size
    type: type  # int, float, str or bool (bool: --x / --no-x)
    help: str
    choices: tuple[str, ...] | None = None
    default: Any = None  # the experiment file's default (shown by add_field_flags(defaults=True))


def field_flag(f: Field) -> OverrideFlag:
    """The flag of a dataclass field carrying :func:`_opt` metadata."""
    return OverrideFlag(f.name, cli_flag(f), _PY_TYPES[str(f.type)], f.metadata.get("help", ""),
                        f.metadata.get("choices"), f.metadata.get("experiment_default", f.default))


def train_override_flags() -> list[OverrideFlag]:
    """The flags ``submit`` offers to override the ``[train]`` table: one per shared TrainConfig field, named
    and typed as the train CLI's (:func:`cli_flag`), so a new field is a new flag of both with no edit."""
    return [field_flag(f) for f in fields(TrainConfig) if f.name not in PER_CELL]


def add_field_flags(parser: Any, flags: list[OverrideFlag], defaults: bool = False) -> None:
    """Add ``flags`` to an argparse parser (or group): bools as ``--x/--no-x``, choices from the field.

    ``defaults=False`` (submit's overrides): every default is None, so a flag not given keeps the file's
    value; True: the field's default, shown in the help."""
    import argparse

    for fl in flags:
        kw: dict[str, Any] = {"dest": fl.name, "help": fl.help, "default": None}
        if defaults:
            kw["default"] = fl.default
            kw["help"] += f" (default: {fl.default!r})" if fl.default != "" else ""
        if fl.type is bool:
            kw["action"] = argparse.BooleanOptionalAction
        else:
            kw.update(type=fl.type, choices=fl.choices,
                      metavar=None if fl.choices else fl.flag[2:].upper().replace("-", "_"))
        parser.add_argument(fl.flag, **kw)
