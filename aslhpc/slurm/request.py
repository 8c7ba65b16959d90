"""What one job asks SLURM for, in SLURM's terms: the only thing the ``slurm`` package is handed.

The orchestration layer builds a :class:`JobRequest` from its experiment spec and a cell
(:func:`aslhpc.orchestration.experiment.job_request`); the executors render and submit it without
knowing what an experiment is (submitit's rule: backends know the core, not the caller's domain).
Site values are checked here, once, so nothing that reaches an ``#SBATCH`` line can split it or
run in a shell.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MAIL_TYPES = ("NONE", "BEGIN", "END", "FAIL", "REQUEUE", "ALL", "INVALID_DEPEND", "STAGE_OUT", "TIME_LIMIT",
              "TIME_LIMIT_90", "TIME_LIMIT_80", "TIME_LIMIT_50", "ARRAY_TASKS")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# SLURM's feature expressions (a100&ib, [rack1|rack2], gpu*2) and hostlists (n[01-04],gpu7); submitit quotes
# every value, and none of these characters can end a line or expand in bash inside single quotes
_VALUE = re.compile(r"[A-Za-z0-9_.,:=/+@%\-\[\]*&|!()]+")
_COMMENT = re.compile(r"[A-Za-z0-9_.,:=/+@%\- ]*")
_HOSTLIST = re.compile(r"[A-Za-z0-9_.\-\[\],]+")
_MAIL_USER = re.compile(r"[A-Za-z0-9._%+\-]+(@[A-Za-z0-9.\-]+)?")
_MAIL_TYPE = re.compile(r"(?i) *(" + "|".join(MAIL_TYPES) + r") *(, *(" + "|".join(MAIL_TYPES) + r") *)*")
_OPTION = re.compile(r"[a-z][a-z0-9_-]*")
_SAFE_WORDS = "letters, digits, '.', '_' or '-'"


def site_option(help: str, pattern: re.Pattern[str], allowed: str, example: str = "") -> Any:
    """A first-class sbatch option: "" = no line in the script; any other value must fullmatch ``pattern``.

    The field's name is the sbatch option (``mail_type`` -> ``--mail-type``) and submitit's parameter; its
    metadata feeds the [cluster] key, its validation, ``additional_parameters``' reserved names, the
    submit flag and docs/experiment-file.md."""
    word = {_NAME: "a safe SLURM name", _MAIL_TYPE: "valid"}.get(pattern, "a safe value")
    return field(default="", metadata={"help": help, "pattern": pattern, "allowed": allowed,
                                       "example": example, "word": word})


@dataclass(frozen=True)
class SiteOptions:
    """Per-site sbatch options beyond the resources: empty = not in the script. ``wckey`` is empty by
    default, so no ``--wckey`` line is written (submitit's default ``submitit`` is refused by some sites).

    The one definition of these options: ``[cluster]`` (``ClusterRequest``) has exactly these keys (plus
    ``additional_parameters``, the table behind ``additional``). Adding a first-class sbatch option is one
    field here."""

    account: str = site_option("sbatch --account to charge", _NAME, _SAFE_WORDS, "myproject")
    qos: str = site_option("sbatch --qos", _NAME, _SAFE_WORDS, "high")
    wckey: str = site_option("sbatch --wckey (none by default: some sites refuse submitit's)", _NAME,
                             _SAFE_WORDS)
    constraint: str = site_option("sbatch --constraint: node features", _VALUE,
                                  "a SLURM feature expression such as v100&ib or [rack1|rack2]", "v100&ib")
    exclude: str = site_option("sbatch --exclude: nodes to avoid", _HOSTLIST,
                               "a hostlist such as node[01-04],gpu7", "node[01-02]")
    mail_type: str = site_option("sbatch --mail-type", _MAIL_TYPE,
                                 f"a comma-separated list of {', '.join(MAIL_TYPES)}", "END,FAIL")
    mail_user: str = site_option("sbatch --mail-user", _MAIL_USER, "an e-mail address or user name")
    comment: str = site_option("a site's own sbatch --comment (after aslhpc's tag)", _COMMENT,
                               "letters, digits, spaces and _.,:=/+@%-")
    additional: tuple[tuple[str, str | int | bool], ...] = ()  # (sbatch option, value); True = a bare flag

    def sbatch_parameters(self) -> dict[str, Any]:
        """submitit SlurmExecutor parameters for the options that are set (``wckey`` None when empty, so
        submitit writes no ``--wckey`` line); ``additional_parameters`` holds ``additional``."""
        params: dict[str, Any] = {"wckey": self.wckey or None}
        params.update({name: getattr(self, name) for name in site_option_names()
                       if name != "wckey" and getattr(self, name)})
        if self.additional:
            params["additional_parameters"] = dict(self.additional)
        return params


def site_option_names() -> tuple[str, ...]:
    """The first-class site options, in order (every SiteOptions field but ``additional``)."""
    return tuple(f.name for f in fields(SiteOptions) if f.name != "additional")


# sbatch options that aslhpc sets itself (or that have a first-class [cluster] key): additional_parameters
# may not override them, since that would silently change what a cell asks for or where its logs go
RESERVED_OPTIONS = {
    "job_name": "", "partition": "cluster.partition", "reservation": "cluster.reservation",
    "time": "cluster.time", "mem": "cluster.mem", "gres": "cluster.gpu_type",
    "nodes": "cluster.gpus_per_node",
    "ntasks_per_node": "", "cpus_per_task": "cluster.cpus_per_gpu", "gpus_per_node": "cluster.gpu_type",
    "gpus": "cluster.gpu_type", "output": "", "error": "", "open_mode": "", "signal": "", "array": "",
    "no_requeue": "", **{name: f"cluster.{name}" for name in site_option_names()},
}


@dataclass(frozen=True)
class JobRequest:
    """Everything one job asks for (the sbatch header, in submitit's terms), and the lines run before it."""

    name: str
    partition: str
    reservation: str
    gres: str  # gpu:<type>:<N> per node
    gpus: int  # the job's total, over all nodes
    nodes: int  # > 1 only for ddp cells wider than the GPUs per node
    tasks_per_node: int  # 1 for dp, one per GPU on the node for ddp
    cpus_per_task: int
    mem: str  # sbatch --mem value, per node (e.g. 16G)
    time_min: int
    setup: tuple[str, ...]
    max_requeues: int
    site: SiteOptions = field(default_factory=SiteOptions)

    @property
    def account(self) -> str:
        return self.site.account

    @property
    def qos(self) -> str:
        return self.site.qos


def site_problems(values: Mapping[str, object], prefix: str = "cluster.") -> list[str]:
    """One line per bad site value (``values`` maps a SiteOptions field to its value), naming key and fix."""
    problems = []
    for f in fields(SiteOptions):
        if f.name == "additional":
            continue
        v = values.get(f.name, "")
        if not isinstance(v, str) or (v and not f.metadata["pattern"].fullmatch(v)):
            meta = f.metadata
            problems.append(f"{prefix}{f.name}={v!r:.60} is not {meta['word']}; use {meta['allowed']} "
                            "(or \"\" for none)")
    return problems + additional_problems(values.get("additional", ()), prefix)


def additional_problems(pairs: object, prefix: str = "cluster.") -> list[str]:
    """Problems with ``additional_parameters`` (a table of sbatch option -> value)."""
    key = f"{prefix}additional_parameters"
    items = list(pairs.items()) if isinstance(pairs, Mapping) else pairs
    pairs_ok = isinstance(items, list | tuple) and all(isinstance(p, list | tuple) and len(p) == 2
                                                       for p in items)
    if not pairs_ok:
        return [f"{key} must be a table of sbatch option = value, e.g. {{ gpu-bind = \"closest\" }}"]
    problems = []
    for option, value in items:
        norm = str(option).replace("-", "_")
        if not isinstance(option, str) or not _OPTION.fullmatch(option):
            problems.append(f"{key}: {option!r} is not an sbatch option name; use its long name without "
                            "dashes in front, e.g. gpu-bind")
        elif norm in RESERVED_OPTIONS:
            use = RESERVED_OPTIONS[norm]
            problems.append(f"{key}: {option} is set by aslhpc; " + (f"use {use} "
                                                                     "instead" if use else "remove it"))
        elif isinstance(value, bool):
            if not value:
                problems.append(f"{key}.{option} = false is not an option; remove the key (true = a bare "
                                "flag)")
        elif not isinstance(value, int | str) or (isinstance(value, str) and not _VALUE.fullmatch(value)):
            problems.append(f"{key}.{option}={value!r} is not a safe value; use letters, digits and "
                            "_.,:=/+@%-[]*&|!() only (no spaces, quotes, $, ;, or newlines)")
    return problems


def additional_pairs(table: Mapping[str, object] | None) -> tuple[tuple[str, str | int | bool], ...]:
    """The [cluster] table as sorted (option, value) pairs, for a hashable :class:`SiteOptions`."""
    return tuple(sorted((str(k), v) for k, v in (table or {}).items()))  # type: ignore[misc]
