"""Checks of a submission's request against where its cells will run, before anything is written.

A backend's :meth:`~aslhpc.orchestration.backend.Backend.check` picks its own: SLURM's partition,
reservation, GPUs, CPUs and memory from sinfo (:func:`cluster_checks`), the host memory a node's ranks
need (:func:`host_memory_warnings`); this machine's GPUs and requests (:func:`local_machine_problems`);
and the torch build against a V100 ``gpu_type`` (:func:`v100_check`). Below the backends, so that
submission and each backend share them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aslhpc.errors import ConfigError
from aslhpc.orchestration.experiment import ExperimentSpec, job_request, parse_mem_mb
from aslhpc.slurm.cluster import ClusterInfo, JobShape, check_request
from aslhpc.slurm.local import local_problems, visible_gpus


@dataclass(frozen=True)
class TorchBuild:
    """The torch the jobs will run (the submitting interpreter's): version, CUDA version (None: a CPU
    build) and the GPU architectures it has kernels for (:func:`~aslhpc.telemetry.provenance.cuda_arch_list`:
    read from the wheel where no GPU is visible, as on a login node)."""

    version: str
    cuda: str | None
    arch_list: tuple[str, ...]


def torch_build() -> TorchBuild | None:
    """This interpreter's torch build; None if torch cannot be imported."""
    try:
        import torch

        from aslhpc.telemetry.provenance import cuda_arch_list

        return TorchBuild(str(torch.__version__), torch.version.cuda, tuple(cuda_arch_list(torch)))
    except Exception:  # noqa: BLE001 - no torch here: nothing to check against
        return None


def v100_check(gpu_type: str, allow_cpu: bool, build: TorchBuild | None) -> tuple[str, str] | None:
    """("problem" | "warning", line) when cells on a V100 ``gpu_type`` would run a torch without sm_70.

    The pinned CUDA 13 torch has no Volta kernels, so on the paper's V100s every cell would queue, start
    and fail (or, with ``allow_cpu``, fall back to the CPU). CPU builds and arch lists that say nothing
    are not judged."""
    from aslhpc.telemetry.provenance import v100_supported

    if "v100" not in gpu_type.lower() or build is None or build.cuda is None:
        return None
    if v100_supported(list(build.arch_list)) is not False:
        return None
    head = f"torch {build.version} has no sm_70 (V100) kernels"
    from aslhpc.orchestration.torchfix import v100_fix

    fix = v100_fix()
    if allow_cpu:
        return "warning", (f"{head}: on {gpu_type} the cells will fall back to the CPU (allow_cpu); "
                           f"{fix} to train on the GPUs")
    return "problem", f"{head}: the cells would fail on {gpu_type}; {fix} or request another --gpu-type"


def cluster_checks(spec: ExperimentSpec, problems: list[str],
                   query: Callable[[], ClusterInfo]) -> tuple[list[str], list[str]]:
    """(problems, warnings) of the request against what sinfo says: partition, reservation, GPUs, CPUs,
    memory. Malformed GPU counts or CPUs cannot be sized, but partition and reservation are still checked."""
    c = spec.cluster
    sizes = ("matrix.gpus", "matrix.repeats", "cluster.cpus_per_gpu", "cluster.gpus_per_node")
    malformed = any(p.startswith(sizes) for p in problems)
    shapes = [] if malformed else job_shapes(spec)
    try:
        info = query()
    except (RuntimeError, OSError) as exc:
        return [f"cannot query SLURM ({exc}); check `scontrol ping` or use --cluster local"], []
    return check_request(info, partition=c.partition, reservation=c.reservation, gpu_type=c.gpu_type,
                         jobs=shapes, account=c.account)


def local_machine_problems(spec: ExperimentSpec, problems: list[str]) -> list[str]:
    """What this machine lacks to run the cells itself: the cells' GPUs (unless allow_cpu) and their
    requests (only judged when nothing else is wrong)."""
    found = []
    if not problems:
        found += local_problems([(c.cell_id, job_request(spec, c)) for c in spec.cells()], visible_gpus())
    if not spec.train.allow_cpu:
        have = _local_gpus()
        need = max(spec.gpus, default=0)
        if need > have:
            found.append(f"cells need up to {need} GPUs but this machine has {have}; "
                         f"pass --allow-cpu to run them on the CPU, or use --gpus up to {have}")
    return found


def job_shapes(spec: ExperimentSpec) -> list[JobShape]:
    """Each cell's per-node request, for the cluster checks; cells that cannot be laid out are left out
    (validate_spec reports them)."""
    c = spec.cluster
    shapes = []
    for cell in spec.cells():
        try:
            layout = spec.layout(cell)
        except ConfigError:
            continue
        shapes.append(JobShape(cell.cell_id, layout.gpus_per_node, c.cpus_per_gpu * layout.gpus_per_node,
                               _mem_mb(c.mem), layout.nodes))
    return shapes


def host_memory_warnings(spec: ExperimentSpec, n_images: int) -> list[str]:
    """Warn when a node's ranks would hold more decoded images in host memory than ``cluster.mem`` grants.

    The fast pipeline keeps each rank's decoded split in host memory (pinned) when it does not fit on its
    GPU, and every DDP rank holds its own copy: 4 ranks of the full set at 150 px need ~21 GB against the
    default 16G. Only a warning: on GPUs with room the data lives on the device instead."""
    from aslhpc.training.pipelines import host_bytes_per_rank

    mem_mb = _mem_mb(spec.cluster.mem)
    if spec.train.pipeline != "fast" or not mem_mb:
        return []
    per_rank = host_bytes_per_rank(n_images, spec.train.image_size)
    worst = 0
    for cell in spec.cells():
        try:
            worst = max(worst, spec.layout(cell).tasks_per_node)
        except ConfigError:
            continue
    need_mb = per_rank * worst / 2**20
    if need_mb <= 0.9 * mem_mb:
        return []
    want_gb = int(-(-need_mb * 1.25 // 1024))  # a quarter more for the process itself, rounded up
    return [f"cells with {worst} rank(s) per node may hold {need_mb / 1024:.1f} GB of decoded images in host "
            f"memory (fast pipeline, {n_images} images at {spec.train.image_size} px, one copy per rank) but "
            f"cluster.mem={spec.cluster.mem}; use --mem {want_gb}G if the data does not fit on the GPUs"]


def _mem_mb(mem: str) -> int:
    try:
        return parse_mem_mb(mem)
    except ConfigError:
        return 0


def _local_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - no torch / no driver: no GPUs
        return 0
