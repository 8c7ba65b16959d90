"""The schema of a cell's files: result.json, epochs.jsonl, progress.json, error.json, config.json.

pydantic models with every field optional (older and newer writers both stay readable; null is
allowed) and every figure range-checked: an accuracy outside [0, 100], a time or a memory figure that
is negative, NaN, infinite or absurd (1e308) makes the file damaged. Unknown keys are kept. What a
result needs to count as COMPLETED is :data:`RESULT_REQUIRED` (checked by
:func:`aslhpc.orchestration.cellrecord.result_problem`, with the match against its cell).
docs/result-files.md is generated from these models (``python -m aslhpc.schema.docs``).
"""

from __future__ import annotations

from dataclasses import fields
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, Strict, create_model
from pydantic_core import PydanticCustomError

from aslhpc.training.config import TrainConfig


def _scalar(value: Any) -> Any:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise PydanticCustomError("scalar_type", "must be a string, number or boolean")
    return value


Int = Annotated[int, Strict()]
Text = Annotated[str, Strict()]
Bool = Annotated[bool, Strict()]
Scalar = Annotated[Any, BeforeValidator(_scalar)]
Count = Annotated[int, Strict(), Field(ge=0, le=10**9)]
Pct = Annotated[float, Strict(), Field(ge=0, le=100, allow_inf_nan=False)]
Seconds = Annotated[float, Strict(), Field(ge=0, le=1e9, allow_inf_nan=False)]  # ~30 years
GB = Annotated[float, Strict(), Field(ge=0, le=1e6, allow_inf_nan=False)]
Rate = Annotated[float, Strict(), Field(ge=0, le=1e10, allow_inf_nan=False)]
Loss = Annotated[float, Strict(), Field(ge=0, le=1e6, allow_inf_nan=False)]
CpuPct = Annotated[float, Strict(), Field(ge=0, le=1e5, allow_inf_nan=False)]  # 100 per busy core
Number = Annotated[float, Strict()]


def opt(help: str) -> Any:
    """An optional field (absent or null is fine) with its documentation."""
    return Field(None, description=help)


class Loose(BaseModel):
    """Unknown keys are kept (a newer writer's fields), never an error."""

    model_config = ConfigDict(extra="allow")


_PY = {"int": Int, "float": Number, "str": Text, "bool": Bool}
#: result.json's ``config`` and config.json: TrainConfig's fields, each optional (older writers lack some)
ConfigFile = create_model(  # type: ignore[call-overload]
    "ConfigFile", __base__=Loose,
    **{f.name: (_PY[str(f.type)] | None, Field(None, description=f.metadata.get("help", "")))
       for f in fields(TrainConfig)})
ConfigFile.__doc__ = "config.json (and result.json's config): the cell's TrainConfig.to_dict()."


class Split(Loose):
    kind: Text | None = opt("random | blocked")
    seed: Int | None = opt("the split's seed (train.split_seed)")
    hash: Text | None = opt("sha256 of the split's index lists: cells with the same hash saw the same images")
    train: Count | None = opt("training images")
    val: Count | None = opt("validation images")
    test: Count | None = opt("test images")


class Batches(Loose):
    train: Count | None = opt("training batches per epoch at this batch size")
    val: Count | None = opt("validation batches per epoch")
    test: Count | None = opt("test batches")


class ExtraTest(Loose):
    n: Count | None = opt("images in the flat test folder")
    acc: Pct | None = opt("accuracy on them, percent")


class Ranks(Loose):
    in_sync: Bool | None = opt("DDP: every rank ended with the same weights (false: not a result)")


class GpuFigures(Loose):
    mem_total_gb: GB | None = opt("the GPU's memory, GB")
    mem_peak_gb: GB | None = opt("device-wide peak memory used, GB (NVML)")
    proc_mem_peak_gb: GB | None = opt("this cell's processes' peak memory on the GPU, GB (NVML)")
    util_mean_pct: Pct | None = opt("mean GPU utilisation, percent")


class TorchMemory(Loose):
    max_allocated_gb: GB | None = opt("torch.cuda.max_memory_allocated, GB")
    max_reserved_gb: GB | None = opt("torch.cuda.max_memory_reserved, GB")


class CpuFigures(Loose):
    util_mean_pct: CpuPct | None = opt("mean CPU utilisation of the cell's processes, percent (100 per core)")
    rss_peak_gb: GB | None = opt("peak resident memory of the cell's processes, GB")


class Telemetry(Loose):
    nvml: Bool | None = opt("whether NVML sampled the GPUs")
    reason: Text | None = opt("why not, when it did not")
    data_device_gb: GB | None = opt("the fast pipeline's dataset held on the GPU, GB")
    gpus: list[GpuFigures] | None = opt("one entry per GPU of the node")
    torch: list[TorchMemory] | None = opt("torch's own memory figures per device")
    cpu: CpuFigures | None = opt("the CPU side")


class TimeBreakdown(Loose):
    data_wait_s: Seconds | None = opt("waiting for the next batch, s")
    compute_s: Seconds | None = opt("forward + backward + step, s")
    eval_s: Seconds | None = opt("validation, s")
    other_s: Seconds | None = opt("the rest of the epochs' wall time, s")


class MemoryFormat(Loose):
    chosen: Text | None = opt("channels_last | contiguous: the format the epochs trained in")
    chosen_by: Text | None = opt("probe | checkpoint | config | paper pipeline")
    step_ms: dict[str, Number] | None = opt("probe only: one training step's mean time per format, ms")


class Versions(Loose):
    python: Scalar = opt("Python version")
    torch: Scalar = opt("torch version")
    cuda: Scalar = opt("CUDA version torch was built with")
    cudnn: Scalar = opt("cuDNN version")
    aslhpc: Scalar = opt("aslhpc version")


class SlurmJob(Loose):
    job_id: Scalar = opt("SLURM job id")
    partition: Text | None = opt("partition")
    nodelist: Text | None = opt("node(s) the job ran on")
    restarts: Count | None = opt("requeues SLURM counted")


class Provenance(Loose):
    hostname: Scalar = opt("host name")
    driver_version: Scalar = opt("NVIDIA driver")
    python: Scalar = opt("Python version")
    torch: Scalar = opt("torch version")
    cuda: Scalar = opt("CUDA version")
    cudnn: Scalar = opt("cuDNN version")
    gpu_models: list[Text] | None = opt("GPU model names")
    slurm: SlurmJob | None = opt("the SLURM environment (older writers)")


class ResultFile(Loose):
    """result.json: written last and atomically by the trainer; its presence means the cell is done."""

    schema_: Int | None = Field(None, alias="schema", description="result schema version (1)")
    status: Text | None = opt("\"completed\"")
    experiment: Text | None = opt("the experiment's name")
    cell_id: Text | None = opt("the cell's id: must be its folder's name")
    epochs: Count | None = opt("epochs completed")
    best_epoch: Count | None = opt("best validation epoch (1-based)")
    gpus_requested: Count | None = opt("GPUs the cell asked for")
    gpus_used: Count | None = opt("GPUs that really ran (0 = CPU fallback)")
    world_size: Count | None = opt("processes (DDP ranks)")
    device: Text | None = opt("cpu | cuda")
    device_names: list[Text] | None = opt("the devices' names")
    data_parallel: Bool | None = opt("DataParallel or DDP over more than one device")
    strategy: Text | None = opt("dp | ddp")
    pipeline: Text | None = opt("paper | fast")
    amp: Text | None = opt("the precision that ran")
    host: Text | None = opt("the host that finished the cell")
    train_acc: Pct | None = opt("training accuracy, percent")
    val_acc: Pct | None = opt("validation accuracy, percent")
    test_acc: Pct | None = opt("test accuracy, percent")
    train_loss: Loss | None = opt("mean cross-entropy")
    val_loss: Loss | None = opt("mean cross-entropy")
    test_loss: Loss | None = opt("mean cross-entropy")
    exec_time_s: Seconds | None = opt("all epochs incl. validation, s (the study's Exec. Time)")
    data_prep_s: Seconds | None = opt("cache build/open, s")
    images_per_s: Rate | None = opt("training images per second over all epochs")
    config: ConfigFile | None = opt("TrainConfig.to_dict(): must match the manifest's cell")
    split: Split | None = opt("the split the cell trained on")
    batches: Batches | None = opt("batches per epoch")
    extra_test: ExtraTest | None = opt("the flat test folder's figures (null without one)")
    ranks: Ranks | None = opt("DDP self-check")
    telemetry: Telemetry | None = opt("NVML / CPU figures")
    time_breakdown: TimeBreakdown | None = opt("summed over epochs")
    memory_format: MemoryFormat | None = opt("the memory format and why (train.probe_memory_format)")
    versions: Versions | None = opt("software versions")
    slurm: SlurmJob | None = opt("the SLURM job (null outside SLURM)")
    provenance: Provenance | None = opt("machine, GPU, driver, CUDA/cuDNN, CPU, SLURM environment")
    started_at: Text | None = opt("ISO-8601 UTC, the first attempt's start")
    attempt_started_at: Text | None = opt("ISO-8601 UTC, the start of the attempt that finished")
    finished_at: Text | None = opt("ISO-8601 UTC")


#: what a result.json must hold to count as a result (else the cell is DAMAGED)
RESULT_REQUIRED = ("status", "cell_id", "config", "epochs", "train_acc", "val_acc", "test_acc", "exec_time_s")


class EpochLine(Loose):
    """One line of epochs.jsonl, appended after each epoch."""

    epoch: Count = Field(description="1-based epoch number (required)")
    train_loss: Number | None = opt("mean training cross-entropy")
    train_acc: Pct | None = opt("training accuracy, percent")
    val_loss: Number | None = opt("mean validation cross-entropy")
    val_acc: Pct | None = opt("validation accuracy, percent")
    epoch_s: Seconds | None = opt("the epoch's wall time incl. validation, s")
    train_s: Seconds | None = opt("its training part, s")
    images_per_s: Rate | None = opt("training images per second")
    lr: Number | None = opt("learning rate")
    data_wait_s: Seconds | None = opt("waiting for batches, s")
    compute_s: Seconds | None = opt("forward + backward + step, s")
    eval_s: Seconds | None = opt("validation, s")
    time: Text | None = opt("ISO-8601 UTC")


class ProgressFile(Loose):
    """progress.json: where a running cell is, rewritten atomically every few batches."""

    epoch: Count | None = opt("current epoch (1-based)")
    epochs: Count | None = opt("epochs in all")
    batch: Count | None = opt("current batch")
    batches: Count | None = opt("batches per epoch")
    phase: Text | None = opt("training | validation | ...")
    time: Text | None = opt("ISO-8601 UTC")


class ErrorFile(Loose):
    """error.json (error.rank<r>.json for a DDP rank r > 0): why the cell failed."""

    error: Scalar = opt("one line: what went wrong")
    traceback: Text | None = opt("the Python traceback")
    time: Text | None = opt("ISO-8601 UTC; an error older than the live attempt is a previous attempt's")
