"""Experiment definitions: ``jobs/<name>.toml`` -> :class:`ExperimentSpec` -> one :class:`Cell` per job.

A TOML file has four tables (every key optional except the matrix)::

    [experiment]  name, description, data, results
    [matrix]      gpus = [1, 2], batch_sizes = [128, 256], strategy = "dp" | ["dp", "ddp"], repeats = 1,
                  splits = ["random", "blocked"] (optional; else the one train.split, never both)
    [train]       fields of TrainConfig (epochs, lr, momentum, dropout, image_size, pipeline, ...) + optimizer
    [cluster]     partition, reservation, gpu_type, gpus_per_node, cpus_per_gpu, mem, time, preamble, setup,
                  max_requeues, and site options: account, qos, wckey, constraint, exclude, mail_type,
                  mail_user, comment, additional_parameters (a table of sbatch option = value)

Command-line flags override the file through :func:`apply_overrides`. :func:`validate_spec`
returns every problem at once (one line each, naming the key and the allowed values), so
submit can report them all before it touches SLURM.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any

from aslhpc.cellfiles import cell_id as make_cell_id
from aslhpc.cellfiles import cells_dir, config_key
from aslhpc.errors import ConfigError
from aslhpc.invocation import aslhpc_command
from aslhpc.packaged import find, search_dirs, shipped_dir
from aslhpc.packaged import names as shipped_names
from aslhpc.schema.text import clean_text
from aslhpc.slurm.request import JobRequest, SiteOptions, additional_pairs, site_option_names, site_problems
from aslhpc.training.config import (
    COMPILE_DP,
    MAX_BATCH,
    MAX_GPUS,
    MAX_SEED,
    SPLITS,
    STRATEGIES,
    OverrideFlag,
    TrainConfig,
    config_problems,
    field_flag,
    field_problem,
    shared_fields,
)

OPTIMIZERS = ("sgd",)
SHIPPED_JOBS = shipped_dir("jobs")  # the experiments shipped as package data (aslhpc/jobs/)
REPO_JOBS = SHIPPED_JOBS  # the name the tests know
# Bounds checked before any cell is built: a typo (repeats = 10**9) must be one error line, not minutes of
# building cells and a MemoryError. Far above any real matrix (the 2020 one has 12 cells on 4 GPUs).
MAX_CELLS = 10_000
MAX_NAME = 100  # an experiment's name is a folder name and part of every job name

# Names that end up on an sbatch line or in a path: no shell metacharacters, no spaces (always fullmatch:
# ``$`` alone would let a trailing newline through and split the sbatch header).
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_MEM = re.compile(r"^(\d+)\s*([KMGT]?)B?$", re.IGNORECASE)
_TIME = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


class SpecErrors(ConfigError):
    """Several problems at once; ``problems`` holds one line each (the message joins them)."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _key(default: Any, help: str, **rules: Any) -> Any:
    """A [cluster] key with its help and rules (``min``/``max``/``max_why``/``hint`` for integers, as
    TrainConfig's fields; ``check`` names the rule of a string: name, optional_name, mem, time, preamble)."""
    if isinstance(default, tuple | dict):
        factory = type(default)
        return field(default_factory=factory, metadata={"help": help, **rules})
    return field(default=default, metadata={"help": help, **rules})


# [cluster]: what each cell's job asks SLURM for (defaults: the 2020 study's Discovery reservation), then
# the site options, which are SiteOptions' fields (slurm/request.py: their one definition), then the table of
# any other sbatch option.
_RESOURCES: list[tuple[str, str, Any]] = [
    ("partition", "str", _key("reservation", "SLURM partition", check="name")),
    ("reservation", "str", _key("", "SLURM reservation (\"\" for none)", check="optional_name")),
    ("gpu_type", "str", _key("v100-sxm2", "GPU type in the gres request (gpu:<type>:N)", check="name")),
    ("gpus_per_node", "int", _key(0, "GPUs a ddp cell uses per node (a wider cell spans nodes); 0 = each "
                                     "cell on one node", min=0, max=MAX_GPUS, max_why="GPUs per node",
                                  hint="(0 = each cell on one node)")),
    ("cpus_per_gpu", "int", _key(4, "CPUs per GPU (a ddp task gets this many, a dp cell this many per GPU)",
                                 min=1, max=1024, max_why="CPUs per GPU")),
    ("mem", "str", _key("16G", "memory per node, SLURM syntax: 16G, 95000M or 95000 (MB)", check="mem")),
    ("time", "str", _key("02:00:00", "time limit per job (attempt): minutes, H:MM:SS or D-HH:MM:SS",
                         check="time")),
    ("preamble", "str", _key("", "sbatch_templates/<name>.sh (yours first, then aslhpc's) or a path to a .sh "
                                 "file; \"\" for none", check="preamble")),
    ("setup", "tuple[str, ...]", _key((), "extra shell lines run before the cell, after the preamble's")),
    ("max_requeues", "int", _key(3, "timeouts a cell may be requeued after (preemptions do not count)", min=0,
                                 max=1000, max_why="requeues of one cell")),
    ("array_parallelism", "int", _key(4, "tasks of one job array running at once (sbatch --array=...%N)",
                                      min=1, max=100_000, max_why="tasks of an array",
                                      hint="(tasks of a job array running at once)")),
]


def _site(self: Any) -> SiteOptions:
    """The site options as the slurm package takes them."""
    return SiteOptions(**{name: getattr(self, name) for name in site_option_names()},
                       additional=additional_pairs(self.additional_parameters))


ClusterRequest = make_dataclass(
    "ClusterRequest",
    [*_RESOURCES,
     *((f.name, f.type, field(default=f.default, metadata=f.metadata)) for f in fields(SiteOptions)
       if f.name != "additional"),
     ("additional_parameters", "dict[str, str | int | bool]",
      _key({}, "a table of any other sbatch option = value, e.g. { gpu-bind = \"closest\" } (true = a bare "
               "flag); not the options above"))],
    frozen=True, namespace={"site": _site})
ClusterRequest.__module__ = __name__
ClusterRequest.__doc__ = ("The [cluster] table: what each cell's job asks SLURM for, and the site options "
                          "(SiteOptions' fields, defined once in aslhpc.slurm.request).")


# The [train] table: TrainConfig's fields that are the same for every cell of the experiment (not the
# matrix's gpus/batch_size/strategy nor the per-cell paths), with TrainConfig's defaults, plus the optimizer.
# Built from TrainConfig so the two cannot drift apart; checked by validate_spec through config_problems.
TrainSettings = make_dataclass(
    "TrainSettings", [*shared_fields(), ("optimizer", str, field(default="sgd"))], frozen=True)
TrainSettings.__module__ = __name__  # make_dataclass's module= needs Python 3.12; pickles find it here
TrainSettings.__doc__ = "The [train] table: TrainConfig's shared fields (repeat r: seed + r) + optimizer."


@dataclass(frozen=True)
class Cell:
    """One job: a (split, GPU count, batch size, strategy, repeat) point of the matrix."""

    cell_id: str
    gpus: int
    batch_size: int
    strategy: str
    repeat: int
    seed: int
    split: str = "random"  # the cell's split kind (train.split, or its value on the splits axis)


@dataclass(frozen=True)
class NodeLayout:
    """How a cell's GPUs spread over nodes: sbatch's ``--nodes``, ``--ntasks-per-node``, per-node gres."""

    nodes: int
    gpus_per_node: int
    tasks_per_node: int  # 1 for dp (one process drives every GPU), one per GPU for ddp


def node_layout(gpus: int, strategy: str, gpus_per_node: int = 0, cell: str = "") -> NodeLayout:
    """The layout of a ``gpus``-GPU cell when nodes hold ``gpus_per_node`` of its GPUs (0 = one node).

    A cell that fits on one node stays there. A larger one needs ddp (DataParallel is one
    process, which cannot span nodes) and a GPU count that fills whole nodes, because SLURM
    gives every node of a job the same ``--ntasks-per-node`` and gres. Raises a one-line
    ConfigError naming the cell (``cell`` labels it), the key, the values and the fix.
    """
    ddp = strategy == "ddp"
    if gpus_per_node <= 0 or gpus <= gpus_per_node:
        return NodeLayout(1, gpus, gpus if ddp else 1)
    who = cell or f"a {gpus}-GPU {strategy} cell"
    if not ddp:
        raise ConfigError(f"{who}: strategy {strategy} runs its {gpus} GPUs in one process, which cannot "
                          f"span nodes of cluster.gpus_per_node={gpus_per_node}; use strategy ddp "
                          f"(--strategy ddp) or at most {gpus_per_node} GPUs (--gpus)")
    if gpus % gpus_per_node:
        fits = " or ".join(str(d) for d in range(1, gpus + 1) if gpus % d == 0)
        raise ConfigError(f"{who}: cluster.gpus_per_node={gpus_per_node} does not divide its {gpus} GPUs "
                          f"(every node of a job gets the same share); use --gpus-per-node {fits}, GPU "
                          f"counts that are multiples of {gpus_per_node}, or --gpus-per-node 0 for one node "
                          "per cell")
    return NodeLayout(gpus // gpus_per_node, gpus_per_node, gpus_per_node)


@dataclass(frozen=True)
class ExperimentSpec:
    name: str
    gpus: tuple[int, ...]
    batch_sizes: tuple[int, ...]
    strategies: tuple[str, ...] = ("dp",)
    repeats: int = 1
    # The split as an axis ([matrix] splits / --splits): () = one split, train.split, and ids without it.
    splits: tuple[str, ...] = ()
    #: more runs of some configurations only: (configuration key, how many beyond ``repeats``), sorted.
    #: Added by ``submit --until-conclusive`` rounds (not an experiment-file key); later submits keep them.
    extra_repeats: tuple[tuple[str, int], ...] = ()
    description: str = ""
    data: str = "data/asl-alphabet"
    results: str = "results"
    train: TrainSettings = field(default_factory=TrainSettings)
    cluster: ClusterRequest = field(default_factory=ClusterRequest)
    source: str = ""  # the TOML file it came from

    @property
    def experiment_dir(self) -> Path:
        return Path(self.results) / self.name

    def split_kinds(self) -> tuple[str, ...]:
        """The splits the cells train on: the axis, else the one ``train.split``."""
        return tuple(self.splits) or (self.train.split,)

    def cells(self) -> list[Cell]:
        """Every cell, in matrix order (split, strategy, GPUs, batch size, repeat); ids are stable.

        The id names the split only on a splits axis and only when it is not ``random`` (like ``ddp``
        for strategy), so an experiment without the axis keeps the ids it always had."""
        problem = size_problem(self)
        if problem:
            raise ConfigError(problem)
        extra = dict(self.extra_repeats)
        out = []
        for split in self.split_kinds():
            id_split = split if self.splits else "random"
            for strategy in self.strategies:
                for gpus in self.gpus:
                    for batch in self.batch_sizes:
                        runs = self.repeats + extra.get(config_key(gpus, batch, strategy, id_split), 0)
                        for repeat in range(runs):
                            cid = make_cell_id(gpus, batch, repeat, strategy, id_split)
                            out.append(Cell(cid, gpus, batch, strategy, repeat, self.train.seed + repeat,
                                            split))
        return out

    def config_keys(self) -> dict[tuple[int, int, str, str], str]:
        """(GPUs, batch size, strategy, split) -> the configuration's key (its cell ids without ``-rN``)."""
        return {(g, b, st, sp): config_key(g, b, st, sp if self.splits else "random")
                for sp in self.split_kinds() for st in self.strategies for g in self.gpus
                for b in self.batch_sizes}

    def with_extra_repeats(self, more: Mapping[str, int]) -> ExperimentSpec:
        """This spec with ``more`` runs added to the named configurations (on top of any it already has)."""
        extra = dict(self.extra_repeats)
        for key, n in more.items():
            extra[key] = extra.get(key, 0) + n
        return replace(self, extra_repeats=tuple(sorted((k, n) for k, n in extra.items() if n > 0)))

    def layout(self, cell: Cell) -> NodeLayout:
        """The cell's nodes / tasks / GPUs per node (ConfigError if it cannot be laid out)."""
        return node_layout(cell.gpus, cell.strategy, self.cluster.gpus_per_node, f"cell {cell.cell_id}")

    def cell_dir(self, cell: Cell) -> Path:
        return cells_dir(self.results, self.name) / cell.cell_id

    def train_config(self, cell: Cell) -> TrainConfig:
        """The cell's TrainConfig with absolute paths, so the job does not depend on its working directory."""
        known = {f.name for f in fields(TrainConfig)}
        values = {k: v for k, v in asdict(self.train).items() if k in known}
        values.update(data=str(Path(self.data).expanduser().resolve()),
                      out=str(self.cell_dir(cell).resolve()), gpus=cell.gpus, batch_size=cell.batch_size,
                      strategy=cell.strategy, seed=cell.seed, split=cell.split)
        return TrainConfig(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExperimentSpec:
        """Inverse of :meth:`to_dict` (what the manifest stores); unknown keys are ignored."""
        top = _known(cls, data)
        train = _known(TrainSettings, data.get("train", {}))
        cluster = _known(ClusterRequest, data.get("cluster", {}))
        cluster["setup"] = tuple(cluster.get("setup", ()))
        for key in ("gpus", "batch_sizes", "strategies", "splits"):
            if key in top:
                top[key] = tuple(top[key])
        if isinstance(top.get("extra_repeats"), list | tuple):
            top["extra_repeats"] = tuple(tuple(p) if isinstance(p, list | tuple) else p
                                         for p in top["extra_repeats"])
        top.update(train=TrainSettings(**train), cluster=ClusterRequest(**cluster))
        return cls(**top)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


# --------------------------------------------------------------------------- loading


#: [experiment] and [matrix] keys: (key, type, default, allowed values, help); docs/experiment-file.md's rows
#: ([train] and [cluster] come from their dataclasses' fields)
TOP_KEYS: dict[str, tuple[tuple[str, str, str, str, str], ...]] = {
    "experiment": (
        ("name", "str", "the file's name", f"at most {MAX_NAME} of A-Z a-z 0-9 . _ -",
         "the experiment's name: its folder under results/ and part of every job name"),
        ("description", "str", '""', "", "one line about it"),
        ("data", "str", '"data/asl-alphabet"', "",
         "dataset root: the Kaggle ASL Alphabet layout or any ImageFolder (<root>/<class>/<image>)"),
        ("results", "str", '"results"', "", "results directory (the experiment's folder goes inside)"),
    ),
    "matrix": (
        ("gpus", "list[int]", "(required)", f"1..{MAX_GPUS}, each once", "GPU counts: one cell per count"),
        ("batch_sizes", "list[int]", "(required)", f"1..{MAX_BATCH}, each once",
         "global batch sizes: one cell per size"),
        ("strategy", "str or list[str]", '"dp"', ", ".join(STRATEGIES) + ", each once",
         "dp = nn.DataParallel, ddp = one process per GPU; a list is a third axis"),
        ("repeats", "int", "1", f">= 1, at most {MAX_CELLS} cells in all",
         "runs per cell; repeat r uses seed + r"),
        ("splits", "list[str]", "(none: the one train.split)", ", ".join(SPLITS) + ", each once",
         "the split as an axis (both use train.split_seed); not together with train.split"),
    ),
}
_TABLES = {
    **{table: tuple(k[0] for k in keys) for table, keys in TOP_KEYS.items()},
    "train": tuple(f.name for f in fields(TrainSettings)),
    "cluster": tuple(f.name for f in fields(ClusterRequest)),
}


def find_job_file(name_or_path: str, search: tuple[Path, ...] = ()) -> Path:
    """``lad2020`` -> ``./jobs/lad2020.toml`` if you have one, else the one shipped with aslhpc
    (:mod:`aslhpc.packaged`); a path is taken as is. ``search`` folders are tried first."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        if not p.is_file():
            hint = (f" (or name a shipped one: --experiment {p.stem})"
                    if p.suffix == ".toml" and find("experiment", p.stem) is not None else "")
            raise ConfigError(f"experiment file {p} does not exist; pass an existing .toml file{hint}, or "
                              f"see {aslhpc_command('submit --list')}")
        return p
    for d in search:
        if (d / f"{name_or_path}.toml").is_file():
            return d / f"{name_or_path}.toml"
    found = find("experiment", name_or_path)
    if found is not None:
        return found
    where = " or ".join(str(d) for d in (*search, *(d for d, _ in search_dirs("experiment"))))
    raise ConfigError(f"no experiment named {name_or_path!r} in {where}; use one of: "
                      f"{shipped_names('experiment')} ({aslhpc_command('submit --list')} shows where each "
                      "is), "
                      "or pass a path to a .toml file")


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a jobs/*.toml file; unknown tables/keys and wrong types are reported all at once."""
    path = Path(path)
    raw = read_toml(path)
    problems: list[str] = []
    for table, body in raw.items():
        if table not in _TABLES:
            problems.append(f"{path.name}: unknown table [{clean_text(table, 60)}]; use "
                            f"{', '.join(f'[{t}]' for t in _TABLES)}")
        elif not isinstance(body, dict):
            problems.append(f"{path.name}: {table} must be a table ([{table}])")
        else:
            for key in body:
                if key not in _TABLES[table]:
                    problems.append(f"{path.name}: unknown key {table}.{clean_text(key, 60)}; allowed: "
                                    f"{', '.join(_TABLES[table])}")
    if raw.get("matrix", {}).get("splits", None) in ([], ""):
        problems.append(f"{path.name}: matrix.splits is empty; list the splits, e.g. splits = [\"random\", "
                        "\"blocked\"], or leave it out for the one train.split")
    if "splits" in raw.get("matrix", {}) and "split" in raw.get("train", {}):
        problems.append(f"{path.name}: both matrix.splits and train.split are set; keep matrix.splits for "
                        "an experiment over several splits, or train.split for one")
    if problems:
        raise SpecErrors(problems)

    exp, matrix = raw.get("experiment", {}), raw.get("matrix", {})
    strategy = matrix.get("strategy", "dp")
    values: dict[str, Any] = {
        "name": exp.get("name", path.stem),
        "description": exp.get("description", ""),
        "gpus": _as_tuple(matrix.get("gpus", ())),
        "batch_sizes": _as_tuple(matrix.get("batch_sizes", ())),
        "strategies": _as_tuple(strategy),
        "repeats": matrix.get("repeats", 1),
        "splits": _as_tuple(matrix["splits"]) if "splits" in matrix else (),
        "source": str(path),
    }
    for key in ("data", "results"):
        if key in exp:
            values[key] = exp[key]
    cluster = dict(raw.get("cluster", {}))
    if "setup" in cluster:
        cluster["setup"] = _as_tuple(cluster["setup"])
    if "time" in cluster:
        cluster["time"] = str(cluster["time"])
    if "mem" in cluster:
        cluster["mem"] = str(cluster["mem"])
    if "additional_parameters" in cluster and isinstance(cluster["additional_parameters"], dict):
        cluster["additional_parameters"] = dict(cluster["additional_parameters"])
    spec = ExperimentSpec(**values, train=TrainSettings(**raw.get("train", {})),
                          cluster=ClusterRequest(**cluster))
    problems = validate_spec(spec)
    if problems:
        raise SpecErrors([f"{path.name}: {p}" for p in problems])
    return spec


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file's tables; every way it cannot be read is one ConfigError line (a UTF-8 byte-order mark,
    which some editors write, is dropped first)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError as exc:
        raise ConfigError(f"experiment file {path} does not exist; pass an existing jobs/*.toml") from exc
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise ConfigError(f"{path} cannot be read ({why}); pass a readable UTF-8 .toml file") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from exc
    except RecursionError:
        raise ConfigError(f"{path} nests arrays or tables too deeply to parse; an experiment file needs at "
                          "most two levels: fix the file") from None


def _as_tuple(value: Any) -> tuple[Any, ...]:
    if isinstance(value, list | tuple):
        return tuple(value)
    return (value,)


# --------------------------------------------------------------------------- overrides


@dataclass(frozen=True)
class Overrides:
    """Flags that win over the file; None = keep the file's value."""

    data: str | None = None
    results: str | None = None
    epochs: int | None = None
    gpus: tuple[int, ...] | None = None
    batch_sizes: tuple[int, ...] | None = None
    strategies: tuple[str, ...] | None = None
    repeats: int | None = None
    allow_cpu: bool | None = None
    pipeline: str | None = None
    split: str | None = None
    splits: tuple[str, ...] | None = None
    split_seed: int | None = None
    max_steps: int | None = None
    partition: str | None = None
    reservation: str | None = None
    gpu_type: str | None = None
    time: str | None = None
    mem: str | None = None
    cpus_per_gpu: int | None = None
    gpus_per_node: int | None = None
    preamble: str | None = None
    constraint: str | None = None
    exclude: str | None = None
    account: str | None = None
    qos: str | None = None
    #: any other [train] / [cluster] key -> value (what train_override_flags / cluster_override_flags make)
    train: Mapping[str, Any] = field(default_factory=dict)
    cluster: Mapping[str, Any] = field(default_factory=dict)


_CLUSTER_OVERRIDES = ("partition", "reservation", "gpu_type", "time", "mem", "cpus_per_gpu", "gpus_per_node",
                      "preamble", "constraint", "exclude", "account", "qos")


def cluster_override_flags() -> list[OverrideFlag]:
    """submit's flags for the [cluster] keys that take one value (``--cpus-per-gpu``, ``--mail-type``, ...),
    built from ClusterRequest's fields as train's flags are from TrainConfig's: a new key is a new flag."""
    return [field_flag(f) for f in fields(ClusterRequest) if str(f.type) in ("str", "int")]


def _overridden(table: Any, named: dict[str, Any], extra: Mapping[str, Any], what: str) -> Any:
    values = {**{k: v for k, v in named.items() if v is not None}, **extra}
    known = {f.name for f in fields(table)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} override {', '.join(unknown)}; use one of "
                          f"{', '.join(sorted(known))}")
    return replace(table, **values)


def apply_overrides(spec: ExperimentSpec, o: Overrides) -> ExperimentSpec:
    """``spec`` with the flags that were given; --split on an experiment with a splits axis is an error."""
    if o.split is None and o.train.get("split") is not None:
        o = replace(o, split=o.train["split"])
    if o.split is not None and (o.splits or (o.splits is None and spec.splits)):
        axis = ",".join(o.splits or spec.splits)
        raise ConfigError(f"--split {o.split} conflicts with the experiment's splits axis ({axis}); use "
                          f"--splits {o.split} to train on one split only, or drop --split")
    if o.splits and spec.train.split != "random" and not spec.splits:
        # its cells' ids (g1-b32-r0) already mean that split; on the axis they would mean random
        where = Path(spec.source).name or "the experiment"
        raise ConfigError(f"--splits {','.join(o.splits)} conflicts with train.split = {spec.train.split!r} "
                          f"in {where}; remove train.split from the file to make the split an axis, or drop "
                          "--splits")
    top = {k: getattr(o, k) for k in ("data", "results", "gpus", "batch_sizes", "strategies", "repeats",
                                      "splits")}
    train = {k: getattr(o, k) for k in ("epochs", "allow_cpu", "pipeline", "split", "split_seed",
                                        "max_steps")}
    cluster = {k: getattr(o, k) for k in _CLUSTER_OVERRIDES}
    return replace(
        spec,
        **{k: v for k, v in top.items() if v is not None},
        train=_overridden(spec.train, train, {k: v for k, v in o.train.items() if v is not None}, "[train]"),
        cluster=_overridden(spec.cluster, cluster, {k: v for k, v in o.cluster.items() if v is not None},
                            "[cluster]"),
    )


def parse_int_list(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4), for --gpus / --batch-sizes."""
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigError(f"{text!r} is not a comma-separated list of integers; e.g. 1,2,4") from exc


def parse_splits(text: str) -> tuple[str, ...]:
    """``"random,blocked"`` -> ("random", "blocked"), for --splits (argparse shows the error as one line)."""
    import argparse

    found = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [s for s in found if s not in SPLITS]
    if bad or not found or len(set(found)) != len(found):
        raise argparse.ArgumentTypeError(f"{text!r}: use {', '.join(SPLITS)} or a comma list of them, each "
                                         "once")
    return found


# --------------------------------------------------------------------------- validation


def parse_mem_mb(mem: str) -> int:
    """SLURM memory (``16G``, ``95000M``, ``95000`` = MB) -> MB; ConfigError if malformed."""
    m = _MEM.match(str(mem).strip())
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"cluster.mem={mem!r} is not a SLURM memory size; use e.g. 16G, 95000M or 95000 "
                          "(MB)")
    scale = {"K": 1 / 1024, "": 1, "M": 1, "G": 1024, "T": 1024 * 1024}[m.group(2).upper()]
    return max(1, int(int(m.group(1)) * scale))


def sbatch_mem(mem: str) -> str:
    """The value passed to ``--mem``: the user's size without a trailing B (``16GB`` -> ``16G``)."""
    m = _MEM.match(str(mem).strip())
    if not m:
        raise ConfigError(f"cluster.mem={mem!r} is not a SLURM memory size; use e.g. 16G, 95000M or 95000 "
                          "(MB)")
    return f"{int(m.group(1))}{m.group(2).upper()}"


def parse_time_min(text: str) -> int:
    """SLURM time (``90``, ``1:30:00``, ``2-00:00:00``, ``MM:SS``) -> whole minutes (rounded up)."""
    s = str(text).strip()
    m = _TIME.match(s)
    bad = ConfigError(f"cluster.time={text!r} is not a SLURM time; use minutes (90), H:MM:SS (1:30:00) "
                      "or D-HH:MM:SS (1-00:00:00)")
    if not m:
        raise bad
    days, a, b, c = (int(g) if g is not None else None for g in m.groups())
    if days is None:
        if b is None:
            seconds = a * 60  # minutes
        elif c is None:
            seconds = a * 60 + b  # minutes:seconds
        else:
            seconds = a * 3600 + b * 60 + c
    else:  # days-hours[:minutes[:seconds]]
        seconds = days * 86400 + a * 3600 + (b or 0) * 60 + (c or 0)
    for part in (b, c):
        if part is not None and part >= 60:
            raise bad
    if seconds <= 0:
        raise bad
    return -(-seconds // 60)


def validate_spec(spec: ExperimentSpec) -> list[str]:
    """Every problem with the spec itself (no filesystem or SLURM), one line each."""
    problems = matrix_problems(spec) + train_problems(spec) + cluster_problems(spec.cluster)
    layout_ok = not any(p.startswith(("matrix.", "cluster.gpus_per_node")) for p in problems)
    return problems + (layout_problems(spec) if layout_ok else [])


def _axis_problems(key: str, values: Any, choices: tuple[str, ...] = (), maximum: int = 0,
                   why: str = "") -> list[str]:
    """A matrix axis: a non-empty list of integers >= 1 (at most ``maximum``) or of ``choices``, each once."""
    if not isinstance(values, tuple):
        return [f"{key}={values!r:.60} must be a list, e.g. {key} = [1]"]
    if not values:
        return [f"{key} is empty; give at least one value, e.g. {key} = [1]"]
    problems = []
    if choices:
        problems += [f"{key}={v!r:.40} is not valid; use one of {', '.join(choices)}" for v in values
                     if v not in choices]
    else:
        bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < 1]
        if bad:
            problems.append(f"{key} has {bad!r:.60}; use integers >= 1")
        big = [v for v in values if isinstance(v, int) and maximum and v > maximum]
        if big:
            problems.append(f"{key} has {big!r:.60}; at most {maximum} ({why}): use smaller values")
    shown = [repr(v) for v in values]  # lists ([[1]]) are not hashable: compare as written
    if len(set(shown)) != len(shown):
        problems.append(f"{key} lists a value twice ({', '.join(shown)[:80]}); list each once (a "
                        "duplicate would submit one cell twice)")
    return problems


def matrix_problems(spec: ExperimentSpec) -> list[str]:
    """[experiment] and [matrix]: a safe name, axes of valid values each listed once, a bounded size."""
    problems: list[str] = []
    name = spec.name
    if not isinstance(name, str) or not _SAFE_NAME.fullmatch(name) or len(name) > MAX_NAME:
        problems.append(f"experiment.name={name!r:.60} is not a safe name; use at most {MAX_NAME} letters, "
                        "digits, '.', '_' or '-'")
    for key in ("description", "data", "results"):
        if not isinstance(getattr(spec, key), str):
            problems.append(f"experiment.{key}={getattr(spec, key)!r:.60} must be a string")
    problems += _axis_problems("matrix.gpus", spec.gpus)
    problems += _axis_problems("matrix.batch_sizes", spec.batch_sizes, maximum=MAX_BATCH,
                               why="far more images than one batch of this dataset can hold")
    problems += _axis_problems("matrix.strategy", spec.strategies, STRATEGIES)
    if spec.splits != ():  # () = no axis: the one train.split
        problems += _axis_problems("matrix.splits", spec.splits, SPLITS)
    if not isinstance(spec.repeats, int) or isinstance(spec.repeats, bool) or spec.repeats < 1:
        problems.append(f"matrix.repeats={spec.repeats!r:.40} must be an integer >= 1")
    problems += _extra_repeats_problems(spec) if not problems else []
    return problems + [p for p in (size_problem(spec),) if p]


def _extra_repeats_problems(spec: ExperimentSpec) -> list[str]:
    """extra_repeats (written by --until-conclusive rounds): (configuration of the matrix, count >= 1)."""
    extra = spec.extra_repeats
    ok = isinstance(extra, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) and isinstance(p[1], int)
        and not isinstance(p[1], bool) and p[1] >= 1 for p in extra)
    if not ok:
        return [f"matrix.extra_repeats={extra!r:.60} must be [configuration, count >= 1] pairs"]
    known = set(spec.config_keys().values()) if spec.gpus and spec.batch_sizes else set()
    unknown = [k for k, _ in extra if k not in known]
    if unknown:
        return [f"matrix.extra_repeats names {unknown[0]!r:.60}, not a configuration of the matrix"]
    return []


def max_runs(spec: ExperimentSpec) -> int:
    """The most runs any configuration gets: repeats plus its extra ones (its last seed: seed + this - 1)."""
    repeats = spec.repeats if isinstance(spec.repeats, int) else 1
    extra = [n for p in spec.extra_repeats if isinstance(p, tuple) and len(p) == 2
             for n in (p[1],) if isinstance(n, int)] if isinstance(spec.extra_repeats, tuple) else []
    return repeats + max(extra, default=0)


def train_problems(spec: ExperimentSpec) -> list[str]:
    """[train]: TrainConfig's own validation of every value, the optimizer, compile vs DataParallel, and the
    last repeat's seed (seed + repeats - 1) within what numpy and torch take."""
    t = spec.train
    problems = []
    if t.optimizer not in OPTIMIZERS:
        problems.append(f"train.optimizer={t.optimizer!r:.40} is not valid; use one of "
                        f"{', '.join(OPTIMIZERS)}")
    problems += [f"train.{p}" for p in config_problems(asdict(t))]
    gpus = spec.gpus if isinstance(spec.gpus, tuple) else ()
    dp_gpus = sorted({g for g in gpus if isinstance(g, int) and not isinstance(g, bool) and g > 1})
    if t.compile is True and dp_gpus and "dp" in spec.strategies:
        problems.append(f"train.{COMPILE_DP.format(gpus=dp_gpus[0])}")
    repeats = max_runs(spec)
    if not problems and t.seed + repeats - 1 > MAX_SEED:
        problems.append(f"train.seed={t.seed} with matrix.repeats={repeats}: the last repeat's seed "
                        f"{t.seed + repeats - 1} is more than {MAX_SEED} (numpy and torch take 32-bit "
                        "seeds); use a smaller seed")
    return problems


def spec_problems(data: Any) -> list[str]:
    """A manifest's ``spec`` checked as a whole, one line each (``spec.train.epochs='x' must be ...``).

    Every key it records must have a valid type and value; keys it lacks (an older writer) take today's
    defaults and unknown ones (a newer writer) are ignored, as :meth:`ExperimentSpec.from_dict` reads it."""
    if not isinstance(data, dict):
        return [f"spec is {type(data).__name__}, expected an object"]
    for key in ("train", "cluster"):
        if not isinstance(data.get(key, {}), dict):
            return [f"spec.{key} is {type(data[key]).__name__}, expected an object"]
    try:
        spec = ExperimentSpec.from_dict({"name": "unnamed", "gpus": (), "batch_sizes": (), **data})
    except (TypeError, ValueError) as exc:
        return [f"spec does not describe an experiment ({clean_text(exc, 80)})"]
    matrix = [p for p in matrix_problems(spec) if " is empty;" not in p]
    return [f"spec.{p}" for p in matrix + train_problems(spec) + cluster_problems(spec.cluster)]


def size_problem(spec: ExperimentSpec) -> str:
    """Why the matrix is too large to build (a typo like ``repeats = 10**9``), or ""; builds no cell."""
    def count(values: object) -> int:
        return len(values) if isinstance(values, tuple | list) else 1

    gpus = spec.gpus if isinstance(spec.gpus, tuple) else ()
    big = [g for g in gpus if isinstance(g, int) and g > MAX_GPUS]
    if big:
        return f"matrix.gpus has {big}; at most {MAX_GPUS} GPUs per cell: use smaller GPU counts"
    repeats = spec.repeats if isinstance(spec.repeats, int) else 1
    axes = (count(spec.gpus), count(spec.batch_sizes), count(spec.strategies), max(repeats, 1),
            max(count(spec.splits), 1))
    n = axes[0] * axes[1] * axes[2] * axes[3] * axes[4]
    if isinstance(spec.extra_repeats, tuple):
        n += sum(p[1] for p in spec.extra_repeats if isinstance(p, tuple) and len(p) == 2
                 and isinstance(p[1], int) and p[1] > 0)
    if n > MAX_CELLS:
        return (f"matrix.repeats={repeats}: {axes[0]} GPU counts x {axes[1]} batch sizes x {axes[2]} "
                f"strategies x {axes[4]} splits x {repeats} repeats = {n} cells, more than {MAX_CELLS}; "
                "lower matrix.repeats or shorten the lists")
    return ""


def _string_problem(key: str, check: str, v: Any) -> str:
    """Why a [cluster] string is not what its ``check`` allows ('' when it is)."""
    safe = "letters, digits, '.', '_' or '-'"
    if check == "name" and (not isinstance(v, str) or not _SAFE_NAME.fullmatch(v)):
        return f"cluster.{key}={v!r:.60} is not a safe SLURM name; use {safe}"
    if check == "optional_name" and (not isinstance(v, str) or (v and not _SAFE_NAME.fullmatch(v))):
        return f"cluster.{key}={v!r:.60} is not a safe name; use {safe} (or \"\" for none)"
    if check == "preamble":
        is_path = isinstance(v, str) and ("/" in v or v.endswith(".sh"))
        if not isinstance(v, str) or (v and not is_path and not _SAFE_NAME.fullmatch(v)) or (
                is_path and any(ch in v for ch in "\n\r\0")):
            return (f"cluster.{key}={v!r:.60} is not a safe preamble name or .sh path; use a name from "
                    f"sbatch_templates/ ({safe}), a path to a .sh file, or \"\" for none")
    if check in ("mem", "time"):
        try:
            (parse_mem_mb if check == "mem" else parse_time_min)(v)
        except ConfigError as exc:
            return str(exc)
    return ""


def cluster_problems(c: ClusterRequest) -> list[str]:
    """Every [cluster] key, one line each: the resources by their field's rules, the site options by
    :func:`aslhpc.slurm.request.site_problems`."""
    problems = []
    for f in fields(ClusterRequest):
        value = getattr(c, f.name)
        if str(f.type) == "int":
            problem = field_problem(f, value)
            problems += [f"cluster.{problem}"] if problem else []
        elif "check" in f.metadata:
            problems += [p for p in (_string_problem(f.name, f.metadata["check"], value),) if p]
    if not isinstance(c.setup, tuple) or not all(isinstance(x, str) for x in c.setup):
        problems.append("cluster.setup must be a list of shell lines (strings)")
    if not isinstance(c.additional_parameters, dict):
        problems.append("cluster.additional_parameters must be a table of sbatch option = value, "
                        "e.g. additional_parameters = { gpu-bind = \"closest\" }")
        extra: object = ()
    else:
        extra = c.additional_parameters
    values = {name: getattr(c, name) for name in site_option_names()}
    return problems + site_problems({**values, "additional": extra})


def job_request(spec: ExperimentSpec, cell: Cell, templates: Path | None = None) -> JobRequest:
    """The cell's sbatch request for :mod:`aslhpc.slurm`: nodes, tasks and gres per node follow
    :meth:`ExperimentSpec.layout`; the preamble (``templates``, else the usual lookup) becomes setup lines."""
    from aslhpc.slurm.executor import job_name, read_preamble

    c = spec.cluster
    layout = spec.layout(cell)
    return JobRequest(
        name=job_name(spec.name, cell.cell_id),
        partition=c.partition,
        reservation=c.reservation,
        gres=f"gpu:{c.gpu_type}:{layout.gpus_per_node}",
        gpus=cell.gpus,
        nodes=layout.nodes,
        tasks_per_node=layout.tasks_per_node,
        cpus_per_task=c.cpus_per_gpu if cell.strategy == "ddp" else c.cpus_per_gpu * cell.gpus,
        mem=sbatch_mem(c.mem),
        time_min=parse_time_min(c.time),
        setup=read_preamble(c.preamble, templates) + tuple(c.setup),
        max_requeues=c.max_requeues,
        site=c.site(),
    )


def layout_problems(spec: ExperimentSpec) -> list[str]:
    """One line per (strategy, GPU count) that cannot be laid out on nodes, naming its cells."""
    by_shape: dict[tuple[str, int], list[str]] = {}
    for cell in spec.cells():
        by_shape.setdefault((cell.strategy, cell.gpus), []).append(cell.cell_id)
    problems = []
    for (strategy, gpus), ids in by_shape.items():
        try:
            node_layout(gpus, strategy, spec.cluster.gpus_per_node, f"cell{'s' * (len(ids) > 1)} "
                                                                    f"{', '.join(ids)}")
        except ConfigError as exc:
            problems.append(str(exc))
    return problems
