"""What the SLURM cluster offers (``scontrol show partition/node/reservation -o``) and whether a
request fits it, so submit can refuse an impossible experiment before its first sbatch instead
of failing halfway through (sbatch's own errors are terse: "Requested node configuration is not
available").
"""

from __future__ import annotations

import getpass
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field

Runner = Callable[[list[str]], subprocess.CompletedProcess]

_GRES = re.compile(r"(?P<name>[A-Za-z0-9_]+)(?::(?P<type>[^:(),]+))?:(?P<count>\d+)")


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)


def slurm_installed() -> bool:
    """True where SLURM's client commands are installed (a login node), answering or not."""
    return shutil.which("sbatch") is not None


def slurm_reachable(run: Runner = _run) -> tuple[bool, str]:
    """(True, '') when sbatch exists and the controller answers ``scontrol ping``; else (False, why)."""
    if not slurm_installed():
        return False, "sbatch is not on PATH"
    try:
        proc = run(["scontrol", "ping"])
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"scontrol ping failed: {exc}"
    if proc.returncode != 0 or " UP" not in proc.stdout:
        first = next((ln.strip() for ln in (proc.stdout + proc.stderr).splitlines() if ln.strip()), "no "
                                                                                                    "answer")
        return False, f"scontrol ping: {first}"
    return True, ""


def expand_hostlist(text: str, run: Runner | None = None) -> list[str]:
    """``rack[1-2]-n[01-02],gpu7`` -> ['rack1-n01', 'rack1-n02', 'rack2-n01', 'rack2-n02', 'gpu7'].

    With ``run``, SLURM itself expands it (``scontrol show hostnames``) when it answers; otherwise
    (recorded output, no controller) :func:`parse_hostlist` does, with the same result."""
    text = (text or "").strip()
    if not text or text in ("(null)", "None"):
        return []
    if run is not None:
        try:
            proc = run(["scontrol", "show", "hostnames", text])
        except (OSError, subprocess.SubprocessError):
            proc = None
        if proc is not None and proc.returncode == 0 and proc.stdout.strip():
            return proc.stdout.split()
    return parse_hostlist(text)


def parse_hostlist(text: str) -> list[str]:
    """SLURM hostlist syntax without SLURM: every bracket group of a name (``a[1-2]b[3,5]``), zero padding
    kept as written (``n[08-10]`` -> n08, n09, n10), comma-separated names."""
    out: list[str] = []
    for name in _split_top_level(text.strip()):
        if name and name not in ("(null)", "None"):
            out += _expand_name(name)
    return out


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += (ch == "[") - (ch == "]")
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current]


def _expand_name(name: str) -> list[str]:
    m = re.match(r"([^\[]*)\[([^\]]*)\](.*)$", name)
    if m is None:
        return [name]
    prefix, ranges, rest = m.groups()
    tails = _expand_name(rest)
    out = []
    for part in ranges.split(","):
        lo, _, hi = part.strip().partition("-")
        if not lo.isdigit() or (hi and not hi.isdigit()):
            return [name]  # not a range SLURM writes: keep the name as it is
        for i in range(int(lo), int(hi or lo) + 1):
            out += [f"{prefix}{i:0{len(lo)}d}{tail}" for tail in tails]
    return out


def parse_records(text: str) -> list[dict[str, str]]:
    """``scontrol show X -o`` lines -> dicts (values may contain spaces only in OS=, which we skip)."""
    records = []
    for line in text.splitlines():
        if not line.strip():
            continue
        rec: dict[str, str] = {}
        for token in re.split(r"\s+(?=[A-Za-z][A-Za-z0-9_/:]*=)", line.strip()):
            key, _, value = token.partition("=")
            rec[key] = value.strip()
        records.append(rec)
    return records


def parse_gres(text: str) -> dict[tuple[str, str], int]:
    """``gpu:v100-sxm2:4(S:0-1),gpu:2`` -> {('gpu', 'v100-sxm2'): 4, ('gpu', ''): 2}."""
    out: dict[tuple[str, str], int] = {}
    for entry in re.sub(r"\([^)]*\)", "", text or "").split(","):
        m = _GRES.fullmatch(entry.strip())
        if m is None:
            continue
        key = (m.group("name"), m.group("type") or "")
        out[key] = out.get(key, 0) + int(m.group("count"))
    return out


@dataclass(frozen=True)
class Node:
    name: str
    cpus: int
    memory_mb: int
    gres: dict[tuple[str, str], int]
    partitions: tuple[str, ...]
    state: str

    def gpus(self, gpu_type: str) -> int:
        """GPUs of ``gpu_type`` ('' = any type) on this node."""
        return sum(n for (name, typ), n in self.gres.items()
                   if name == "gpu" and (not gpu_type or typ == gpu_type))


@dataclass(frozen=True)
class Reservation:
    name: str
    state: str
    nodes: tuple[str, ...]
    users: tuple[str, ...]
    accounts: tuple[str, ...]
    partition: str
    start: str
    end: str


@dataclass
class ClusterInfo:
    partitions: dict[str, str] = field(default_factory=dict)  # name -> State
    nodes: dict[str, Node] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    #: partition -> its MaxTime as scontrol writes it (``UNLIMITED``, ``2-00:00:00``): what a retry may ask
    max_time: dict[str, str] = field(default_factory=dict)

    def nodes_of(self, partition: str) -> list[Node]:
        return [n for n in self.nodes.values() if partition in n.partitions]

    def max_memory_mb(self, partition: str, gpu_type: str = "") -> int:
        """The most memory one node of ``partition`` has (with GPUs of ``gpu_type`` where any do); 0 if
        unknown. A retry that doubles a cell's memory stops there: sbatch refuses more."""
        nodes = self.nodes_of(partition)
        with_gpus = [n for n in nodes if n.gpus(gpu_type)]
        return max((n.memory_mb for n in with_gpus or nodes), default=0)


def _int(text: str) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _names(text: str) -> tuple[str, ...]:
    if not text or text in ("(null)", "None"):
        return ()
    return tuple(x for x in text.split(",") if x)


def query_cluster(run: Runner = _run) -> ClusterInfo:
    """Partitions, nodes and reservations in three scontrol calls."""
    info = ClusterInfo()
    for rec in parse_records(_checked(run, ["scontrol", "show", "partition", "-o"])):
        info.partitions[rec.get("PartitionName", "")] = rec.get("State", "")
        info.max_time[rec.get("PartitionName", "")] = rec.get("MaxTime", "")
    for rec in parse_records(_checked(run, ["scontrol", "show", "node", "-o"])):
        name = rec.get("NodeName", "")
        info.nodes[name] = Node(name, _int(rec.get("CPUTot", "0")), _int(rec.get("RealMemory", "0")),
                                parse_gres(rec.get("Gres", "")), _names(rec.get("Partitions", "")),
                                rec.get("State", ""))
    proc = run(["scontrol", "show", "reservation", "-o"])
    if proc.returncode == 0:
        for rec in parse_records(proc.stdout):
            if "ReservationName" not in rec:
                continue  # "No reservations in the system"
            name = rec["ReservationName"]
            info.reservations[name] = Reservation(
                name, rec.get("State", ""), tuple(expand_hostlist(rec.get("Nodes", ""), run)),
                _names(rec.get("Users", "")), _names(rec.get("Accounts", "")),
                "" if rec.get("PartitionName") == "(null)" else rec.get("PartitionName", ""),
                rec.get("StartTime", ""), rec.get("EndTime", ""))
    return info


def _checked(run: Runner, cmd: list[str]) -> str:
    proc = run(cmd)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


@dataclass(frozen=True)
class JobShape:
    """One cell's job per node (every node of a job gets the same), as the checks need it."""

    cell_id: str
    gpus: int  # per node
    cpus: int  # per node, all tasks together
    mem_mb: int  # per node
    nodes: int = 1

    @property
    def label(self) -> str:
        if self.nodes == 1:
            return f"a {self.gpus}-GPU cell"
        return f"a cell with {self.gpus} GPUs on each of {self.nodes} nodes"


def check_request(info: ClusterInfo, *, partition: str, reservation: str, gpu_type: str, jobs: list[JobShape],
                  account: str = "", user: str | None = None) -> tuple[list[str], list[str]]:
    """(problems, warnings) for submitting ``jobs`` there; problems are one line each, with the fix."""
    problems: list[str] = []
    warnings: list[str] = []
    user = user or getpass.getuser()
    if partition not in info.partitions:
        known = ", ".join(sorted(info.partitions)) or "(none)"
        problems.append(f"partition {partition!r} does not exist; use --partition with one of: {known}")
        nodes: list[Node] = []
    else:
        nodes = info.nodes_of(partition)
        if info.partitions[partition].upper() not in ("UP", ""):
            warnings.append(f"partition {partition!r} is {info.partitions[partition]}; jobs will wait until "
                            "it is UP")
    where = f"partition {partition!r}"
    if reservation:
        res = info.reservations.get(reservation)
        if res is None:
            known = ", ".join(sorted(info.reservations)) or "(none)"
            problems.append(f"reservation {reservation!r} does not exist; use --reservation with one of: "
                            f"{known} (or --reservation '' for none)")
        else:
            allowed = _listed(user, res.users) or (account and _listed(account, res.accounts))
            if res.users and not allowed:
                problems.append(f"reservation {reservation!r} is for users {', '.join(res.users)}, not "
                                f"{user}; ask its owner to add you or drop --reservation")
            if res.partition and partition in info.partitions and res.partition != partition:
                problems.append(f"reservation {reservation!r} is on partition {res.partition!r}, not "
                                f"{partition!r}; use --partition {res.partition}")
            if res.state.upper() != "ACTIVE":
                warnings.append(f"reservation {reservation!r} is {res.state or 'not active'} (starts "
                                f"{res.start}); jobs will wait for it")
            inside = [n for n in nodes if n.name in res.nodes]
            if nodes and not inside:
                problems.append(f"reservation {reservation!r} holds no node of partition {partition!r} "
                                f"(it has {', '.join(res.nodes) or 'none'}); use the reservation's partition")
            elif inside:
                nodes = inside
                where = f"partition {partition!r} in reservation {reservation!r}"
    if not nodes or not jobs:
        return problems, warnings

    max_gpus = max(n.gpus(gpu_type) for n in nodes)
    if max_gpus == 0:
        types = sorted({t for n in nodes for (name, t), c in n.gres.items() if name == "gpu" and c})
        problems.append(f"no node of {where} has gpu:{gpu_type} GPUs; set cluster.gpu_type to one of: "
                        f"{', '.join(types) or '(no GPUs there)'}")
        return problems, warnings
    problems += _gpu_problems(nodes, where, gpu_type, jobs, max_gpus)
    max_cpus = max(n.cpus for n in nodes)
    cpu_heavy = sorted({j for j in jobs if j.gpus <= max_gpus and j.cpus > max_cpus},
                       key=lambda j: (j.cpus, j.nodes))
    if cpu_heavy:
        j = cpu_heavy[-1]
        problems.append(f"cluster.cpus_per_gpu: {j.label} asks {j.cpus} CPUs per node but the nodes of "
                        f"{where} have at most {max_cpus}; lower --cpus-per-gpu to "
                        f"{max(1, max_cpus // max(j.gpus, 1))} or less")
    max_mem = max(n.memory_mb for n in nodes)
    if max_mem and any(j.mem_mb > max_mem for j in jobs):
        problems.append(f"cluster.mem {max(j.mem_mb for j in jobs)}M is more than the nodes of {where} have "
                        f"({max_mem}M); use --mem {max_mem}M or less")
    return problems, warnings


def _gpu_problems(nodes: list[Node], where: str, gpu_type: str, jobs: list[JobShape],
                  max_gpus: int) -> list[str]:
    """GPUs per node against the nodes' GRES, then the node count against the nodes that can hold a share."""
    problems = []
    one_node = sorted({j.gpus for j in jobs if j.nodes == 1 and j.gpus > max_gpus})
    if one_node:
        problems.append(f"matrix.gpus {','.join(map(str, one_node))}: the nodes of {where} have at most "
                        f"{max_gpus} gpu:{gpu_type} each; use --gpus with counts from 1 to {max_gpus}, or "
                        "strategy ddp with --gpus-per-node to span nodes")
    per_node = sorted({j.gpus for j in jobs if j.nodes > 1 and j.gpus > max_gpus})
    if per_node:
        problems.append(f"cluster.gpus_per_node={per_node[-1]}: the nodes of {where} have at most {max_gpus} "
                        f"gpu:{gpu_type} each; use --gpus-per-node from 1 to {max_gpus}")
    wide: dict[tuple[int, int], list[str]] = {}
    for j in jobs:
        if j.nodes > 1 and j.gpus <= max_gpus:
            wide.setdefault((j.nodes, j.gpus), []).append(j.cell_id)
    for (n_nodes, gpus), ids in sorted(wide.items()):
        have = sum(1 for n in nodes if n.gpus(gpu_type) >= gpus)
        if n_nodes > have:
            problems.append(f"cell{'s' * (len(ids) > 1)} {', '.join(ids)}: {n_nodes * gpus} GPUs at {gpus} "
                            f"per node need {n_nodes} nodes but {where} has {have} with {gpus} "
                            f"gpu:{gpu_type}; use --gpus up to {have * gpus} or a larger --gpus-per-node (at "
                            f"most {max_gpus})")
    return problems


def _listed(name: str, allowed: tuple[str, ...]) -> bool:
    """SLURM reservation lists may negate (``-bob``): listed = in a positive list or not in a negative one."""
    negative = [a[1:] for a in allowed if a.startswith("-")]
    if negative:
        return name not in negative
    return name in allowed


@dataclass(frozen=True)
class SubmitLimits:
    """What the site lets one user queue: ``MaxArraySize`` (an array's indices stay below it) and the
    association's ``MaxSubmitJobs`` (each array task counts as one job); 0 = not known / no limit."""

    max_array_size: int = 0
    max_submit_jobs: int = 0

    def chunk(self) -> int:
        """The most cells one array may hold here (0 = no limit known)."""
        sizes = [n for n in (self.max_array_size, self.max_submit_jobs) if n > 0]
        return min(sizes, default=0)


def parse_config_value(text: str, key: str) -> str:
    """``Key = value`` from ``scontrol show config`` output ('' where absent)."""
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == key:
            return value.strip()
    return ""


def query_submit_limits(account: str = "", run: Runner = _run, user: str = "") -> SubmitLimits:
    """The site's MaxArraySize and the MaxSubmitJobs of the association the jobs are charged to (``account``;
    '' = the user's default account), where SLURM shows them.

    A limit on another of the user's accounts does not bind these jobs, so it does not shrink their arrays.
    Either query that does not answer (no slurmdbd, sacctmgr not allowed) is simply unknown: the arrays are
    then sized by MaxArraySize alone, and a refusal for submit limits is waited out (see submission)."""
    size = 0
    try:
        proc = run(["scontrol", "show", "config"])
        if proc.returncode == 0:
            size = _int(parse_config_value(proc.stdout, "MaxArraySize"))
    except (OSError, subprocess.SubprocessError):
        pass
    limits: list[int] = []
    try:
        who = user or getpass.getuser()
        proc = run(["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={who}",
                    "format=Account,MaxSubmit"])
        if proc.returncode == 0:
            rows = [ln.split("|") + [""] for ln in proc.stdout.split()]
            charged = account or _default_account(run, who)
            limits = [_int(r[1]) for r in rows if _int(r[1]) > 0 and (not charged or r[0] == charged)]
    except (OSError, subprocess.SubprocessError, KeyError):
        pass
    return SubmitLimits(size, min(limits, default=0))


def _default_account(run: Runner, user: str) -> str:
    """The account sbatch charges without ``--account`` ('' where sacctmgr does not say: then every one of
    the user's associations counts, the cautious reading)."""
    proc = run(["sacctmgr", "-n", "-P", "show", "user", user, "format=DefaultAccount"])
    return proc.stdout.strip().splitlines()[0].strip() if proc.returncode == 0 and proc.stdout.strip() else ""
