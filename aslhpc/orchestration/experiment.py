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
from dataclasses import asdict, dataclass, field, fields, make_dataclass, replace
from pathlib import Path
from typing import Any

from aslhpc.cellfiles import cell_id as make_cell_id
from aslhpc.cellfiles import cells_dir
from aslhpc.errors import ConfigError
from aslhpc.packaged import find, search_dirs, shipped_dir
from aslhpc.packaged import names as shipped_names
from aslhpc.slurm.request import JobRequest, SiteOptions, additional_pairs, site_problems
from aslhpc.training.config import (
    COMPILE_DP,
    SPLITS,
    STRATEGIES,
    TrainConfig,
    config_problems,
    shared_fields,
)

OPTIMIZERS = ("sgd",)
SHIPPED_JOBS = shipped_dir("jobs")  # the experiments shipped as package data (aslhpc/jobs/)
REPO_JOBS = SHIPPED_JOBS  # the name the tests know
# Bounds checked before any cell is built: a typo (repeats = 10**9) must be one error line, not minutes of
# building cells and a MemoryError. Far above any real matrix (the 2020 one has 12 cells on 4 GPUs).
MAX_CELLS = 10_000
MAX_GPUS = 1024

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


@dataclass(frozen=True)
class ClusterRequest:
    """What each cell's job asks SLURM for. Defaults are the 2020 study's Discovery reservation."""

    partition: str = "reservation"
    reservation: str = ""
    gpu_type: str = "v100-sxm2"
    gpus_per_node: int = 0  # GPUs a ddp cell uses per node (more GPUs = more nodes); 0 = all on one node
    cpus_per_gpu: int = 4
    mem: str = "16G"  # per node, SLURM syntax (e.g. 16G, 95000M, 95000)
    time: str = "02:00:00"  # per job (attempt), SLURM syntax: minutes, H:MM:SS, D-HH:MM:SS
    preamble: str = ""  # sbatch_templates/<preamble>.sh (yours first, then aslhpc's) or a path to a .sh file
    setup: tuple[str, ...] = ()  # extra setup lines, after the preamble's
    max_requeues: int = 3  # timeouts a cell may be requeued after (preemptions do not count)
    array_parallelism: int = 4  # tasks of one job array running at once (sbatch --array=...%N)
    # site options: "" = no line in the script (wckey too: submitit's default --wckey=submitit is refused by
    # some sites)
    account: str = ""
    qos: str = ""
    wckey: str = ""
    constraint: str = ""  # --constraint, e.g. "v100&ib"
    exclude: str = ""  # --exclude hostlist, e.g. "node[01-02]"
    mail_type: str = ""  # e.g. "END,FAIL"
    mail_user: str = ""
    comment: str = ""
    additional_parameters: dict[str, str | int | bool] = field(default_factory=dict)  # other sbatch options

    def site(self) -> SiteOptions:
        """The site options as the slurm package takes them."""
        return SiteOptions(self.account, self.qos, self.wckey, self.constraint, self.exclude, self.mail_type,
                           self.mail_user, self.comment, additional_pairs(self.additional_parameters))


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
        out = []
        for split in self.split_kinds():
            id_split = split if self.splits else "random"
            for strategy in self.strategies:
                for gpus in self.gpus:
                    for batch in self.batch_sizes:
                        for repeat in range(self.repeats):
                            cid = make_cell_id(gpus, batch, repeat, strategy, id_split)
                            out.append(Cell(cid, gpus, batch, strategy, repeat, self.train.seed + repeat,
                                            split))
        return out

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
        top.update(train=TrainSettings(**train), cluster=ClusterRequest(**cluster))
        return cls(**top)


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


# --------------------------------------------------------------------------- loading


_TABLES = {
    "experiment": ("name", "description", "data", "results"),
    "matrix": ("gpus", "batch_sizes", "strategy", "repeats", "splits"),
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
                              "see python -m aslhpc.submit --list")
        return p
    for d in search:
        if (d / f"{name_or_path}.toml").is_file():
            return d / f"{name_or_path}.toml"
    found = find("experiment", name_or_path)
    if found is not None:
        return found
    where = " or ".join(str(d) for d in (*search, *(d for d, _ in search_dirs("experiment"))))
    raise ConfigError(f"no experiment named {name_or_path!r} in {where}; use one of: "
                      f"{shipped_names('experiment')} (python -m aslhpc.submit --list shows where each is), "
                      "or pass a path to a .toml file")


def load_spec(path: str | Path) -> ExperimentSpec:
    """Read a jobs/*.toml file; unknown tables/keys and wrong types are reported all at once."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"experiment file {path} does not exist; pass an existing jobs/*.toml") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc}); fix the file") from exc
    problems: list[str] = []
    for table, body in raw.items():
        if table not in _TABLES:
            problems.append(f"{path.name}: unknown table [{table}]; use "
                            f"{', '.join(f'[{t}]' for t in _TABLES)}")
        elif not isinstance(body, dict):
            problems.append(f"{path.name}: {table} must be a table ([{table}])")
        else:
            for key in body:
                if key not in _TABLES[table]:
                    problems.append(f"{path.name}: unknown key {table}.{key}; allowed: "
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


_CLUSTER_OVERRIDES = ("partition", "reservation", "gpu_type", "time", "mem", "cpus_per_gpu", "gpus_per_node",
                      "preamble", "constraint", "exclude", "account", "qos")


def apply_overrides(spec: ExperimentSpec, o: Overrides) -> ExperimentSpec:
    """``spec`` with the flags that were given; --split on an experiment with a splits axis is an error."""
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
        train=replace(spec.train, **{k: v for k, v in train.items() if v is not None}),
        cluster=replace(spec.cluster, **{k: v for k, v in cluster.items() if v is not None}),
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
    problems: list[str] = []
    t, c = spec.train, spec.cluster

    def choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
        if value not in allowed:
            problems.append(f"{key}={value!r} is not valid; use one of {', '.join(allowed)}")

    def positive_ints(key: str, values: tuple[Any, ...], minimum: int = 1) -> None:
        if not values:
            problems.append(f"{key} is empty; give at least one value, e.g. {key} = [1]")
        bad = [v for v in values if not isinstance(v, int) or isinstance(v, bool) or v < minimum]
        if bad:
            problems.append(f"{key} has {bad}; use integers >= {minimum}")
        if len(set(values)) != len(values):
            problems.append(f"{key} lists a value twice ({list(values)}); list each once")

    if not isinstance(spec.name, str) or not _SAFE_NAME.fullmatch(spec.name):
        problems.append(f"experiment.name={spec.name!r} is not a safe name; use letters, digits, '.', '_' or "
                        "'-'")
    positive_ints("matrix.gpus", spec.gpus)
    positive_ints("matrix.batch_sizes", spec.batch_sizes)
    for s in spec.strategies:
        choice("matrix.strategy", s, STRATEGIES)
    if not isinstance(spec.splits, tuple):  # () = no axis: the one train.split
        problems.append(f"matrix.splits={spec.splits!r} must be a list, e.g. [\"random\", \"blocked\"]")
    else:
        for s in spec.splits:
            choice("matrix.splits", s, SPLITS)
        if len(set(spec.splits)) != len(spec.splits):
            problems.append(f"matrix.splits lists a value twice ({list(spec.splits)}); list each once")
    if not isinstance(spec.repeats, int) or isinstance(spec.repeats, bool) or spec.repeats < 1:
        problems.append(f"matrix.repeats={spec.repeats!r} must be an integer >= 1")
    problems += [p for p in (size_problem(spec),) if p]

    choice("train.optimizer", t.optimizer, OPTIMIZERS)
    problems += [f"train.{p}" for p in config_problems(asdict(t))]
    dp_gpus = sorted({g for g in spec.gpus if isinstance(g, int) and g > 1})
    if t.compile is True and dp_gpus and "dp" in spec.strategies:
        problems.append(f"train.{COMPILE_DP.format(gpus=dp_gpus[0])}")

    problems += cluster_problems(c)
    if not isinstance(c.cpus_per_gpu, int) or isinstance(c.cpus_per_gpu, bool) or c.cpus_per_gpu < 1:
        problems.append(f"cluster.cpus_per_gpu={c.cpus_per_gpu!r} must be an integer >= 1")
    if not isinstance(c.gpus_per_node, int) or isinstance(c.gpus_per_node, bool) or c.gpus_per_node < 0:
        problems.append(f"cluster.gpus_per_node={c.gpus_per_node!r} must be an integer >= 0 (0 = each cell "
                        "on one node)")
    elif not any(p.startswith("matrix.") for p in problems):  # a malformed matrix has no cells to lay out
        problems += layout_problems(spec)
    if not isinstance(c.max_requeues, int) or c.max_requeues < 0:
        problems.append(f"cluster.max_requeues={c.max_requeues!r} must be an integer >= 0")
    if not isinstance(c.array_parallelism, int) or isinstance(c.array_parallelism, bool) \
            or c.array_parallelism < 1:
        problems.append(f"cluster.array_parallelism={c.array_parallelism!r} must be an integer >= 1 "
                        "(tasks of a job array running at once)")
    if not all(isinstance(x, str) for x in c.setup):
        problems.append("cluster.setup must be a list of shell lines (strings)")
    for parse in (parse_mem_mb, parse_time_min):
        try:
            parse(c.mem if parse is parse_mem_mb else c.time)
        except ConfigError as exc:
            problems.append(str(exc))
    return problems


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
    if n > MAX_CELLS:
        return (f"matrix.repeats={repeats}: {axes[0]} GPU counts x {axes[1]} batch sizes x {axes[2]} "
                f"strategies x {axes[4]} splits x {repeats} repeats = {n} cells, more than {MAX_CELLS}; "
                "lower matrix.repeats or shorten the lists")
    return ""


def cluster_problems(c: ClusterRequest) -> list[str]:
    """Names and site options of [cluster], one line each (validate_spec checks the resources)."""
    problems = []
    for key in ("partition", "gpu_type"):
        v = getattr(c, key)
        if not isinstance(v, str) or not _SAFE_NAME.fullmatch(v):
            problems.append(f"cluster.{key}={v!r} is not a safe SLURM name; use letters, digits, '.', '_' or "
                            "'-'")
    v = c.reservation
    if not isinstance(v, str) or (v and not _SAFE_NAME.fullmatch(v)):
        problems.append(f"cluster.reservation={v!r} is not a safe name; use letters, digits, '.', '_' or '-' "
                        "(or \"\" for none)")
    v = c.preamble
    is_path = isinstance(v, str) and ("/" in v or v.endswith(".sh"))
    if not isinstance(v, str) or (v and not is_path and not _SAFE_NAME.fullmatch(v)) or (
            is_path and any(ch in v for ch in "\n\r\0")):
        problems.append(f"cluster.preamble={v!r} is not a safe preamble name or .sh path; use a name from "
                        "sbatch_templates/ (letters, digits, '.', '_' or '-'), a path to a .sh file, or "
                        "\"\" for none")
    if not isinstance(c.additional_parameters, dict):
        problems.append("cluster.additional_parameters must be a table of sbatch option = value, "
                        "e.g. additional_parameters = { gpu-bind = \"closest\" }")
        extra: object = ()
    else:
        extra = c.additional_parameters
    values = {k: getattr(c, k) for k in ("account", "qos", "wckey", "constraint", "exclude", "mail_type",
                                         "mail_user", "comment")}
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
