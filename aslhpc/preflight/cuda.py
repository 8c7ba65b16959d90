"""CUDA: the devices, one tiny training step of the configured model (LadNet by default) on each,
precision, cuDNN, DataParallel over every visible GPU, and DDP over two local processes."""

from __future__ import annotations

import time

from aslhpc.invocation import aslhpc_command
from aslhpc.preflight.context import Context
from aslhpc.preflight.result import FAIL, PASS, SKIP, WARN, Check

FIX_DRIVER = ("check nvidia-smi on this node and that the job requests GPUs (--gres); "
              "see the fix of 'torch GPU kernels'")


def _no_gpu(ctx: Context, name: str) -> Check | None:
    """A skip when there is no GPU; a fail when a cell needs GPUs it cannot fall back from."""
    if ctx.cuda_count():
        return None
    why = ctx.no_gpu_reason()
    if ctx.gpus and not ctx.allow_cpu:
        if ctx.granted_gpus():
            return Check(name, FAIL, f"{why}; the experiment's cells need GPUs and do not allow the CPU",
                         FIX_DRIVER)
        # a login node: the cells would not run *here*; say where to check instead
        return Check(name, FAIL, f"{why}; the experiment's cells need up to {ctx.gpus} GPUs and do not "
                     "allow the CPU",
                     f"check a node of the job's shape: {aslhpc_command('doctor --submit -e JOB')} "
                     "(or run this inside a GPU job)")
    return Check(name, SKIP, why)


def check_devices(ctx: Context) -> Check:
    skip = _no_gpu(ctx, "CUDA devices")
    if skip:
        return skip
    t = ctx.torch
    rows, figures = [], []
    for i in range(ctx.cuda_count()):
        p = t.cuda.get_device_properties(i)
        gib = p.total_memory / 2**30
        rows.append(f"cuda:{i} {p.name} {gib:.1f} GiB sm_{p.major}{p.minor}")
        figures.append({"index": i, "name": p.name, "memory_gib": round(gib, 2),
                        "capability": f"{p.major}.{p.minor}"})
    status = PASS
    fix = ""
    if ctx.gpus and len(rows) < ctx.gpus:
        status, fix = WARN, f"the widest cell asks for {ctx.gpus} GPUs: submit it where that many are visible"
    return Check("CUDA devices", status, f"{len(rows)} visible: {'; '.join(rows)}", fix,
                 {"cuda": t.version.cuda, "devices": figures})


def _step(ctx: Context, model, device, batch: int = 4, dtype=None) -> float:  # noqa: ANN001
    """One forward/backward/SGD step of the configured model at the cell's image size; returns the loss."""
    t = ctx.torch
    x = t.randn(batch, 3, ctx.image_size, ctx.image_size, device=device)
    y = t.randint(0, ctx.class_count(), (batch,), device=device)
    opt = t.optim.SGD(model.parameters(), lr=0.005)
    with t.autocast(device_type=t.device(device).type, dtype=dtype, enabled=dtype is not None):
        loss = t.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    value = float(loss)
    if not value == value or value in (float("inf"), float("-inf")):
        raise FloatingPointError(f"loss {value} on {device}")
    return value


def check_step(ctx: Context) -> Check:
    """A tiny forward/backward of the configured model on each GPU: kernels load and compute."""
    name = f"{ctx.model_name()} step per GPU"
    skip = _no_gpu(ctx, name)
    if skip:
        return skip
    done, bad = [], []
    for i in range(ctx.cuda_count()):
        try:
            t0 = time.perf_counter()
            _step(ctx, ctx.build_model().to(f"cuda:{i}"), f"cuda:{i}")
            ctx.torch.cuda.synchronize(i)
            done.append(f"cuda:{i} {time.perf_counter() - t0:.2f} s")
        except Exception as exc:  # noqa: BLE001 - "no kernel image" and driver errors are what this finds
            bad.append(f"cuda:{i}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
    if bad:
        return Check(name, FAIL, "; ".join(bad + done), FIX_DRIVER)
    return Check(name, PASS, f"forward+backward at {ctx.image_size} px: {'; '.join(done)}")


def check_precision(ctx: Context) -> Check:
    """bf16 (Ampere+) and fp16 autocast: what ``amp = auto`` would choose and whether it computes."""
    skip = _no_gpu(ctx, "bf16 / fp16")
    if skip:
        return skip
    t = ctx.torch
    major, _ = t.cuda.get_device_capability(0)
    ok, bad = [], []
    for name, dtype in (("fp16", t.float16), ("bf16", t.bfloat16)):
        if name == "bf16" and not t.cuda.is_bf16_supported():
            continue
        try:
            _step(ctx, ctx.build_model().to("cuda:0"), "cuda:0", dtype=dtype)
            ok.append(name)
        except Exception as exc:  # noqa: BLE001
            bad.append(f"{name}: {type(exc).__name__}")
    auto = "bf16" if major >= 8 else "fp16"
    found = f"autocast works in {', '.join(ok) or 'nothing'}; amp=auto picks {auto} (sm_{major}x)"
    if bad or auto not in ok:
        return Check("bf16 / fp16", FAIL, f"{found}; failed: {', '.join(bad) or auto}",
                     "set amp = \"fp32\" in [train] until this node's driver/torch work")
    return Check("bf16 / fp16", PASS, found)


def check_cudnn(ctx: Context) -> Check:
    t = ctx.torch
    if t.version.cuda is None or not ctx.cuda_count():
        return Check("cuDNN", SKIP, ctx.no_gpu_reason())
    if not t.backends.cudnn.is_available():
        return Check("cuDNN", FAIL, "torch cannot load cuDNN", "reinstall torch (its wheel bundles cuDNN)")
    return Check("cuDNN", PASS, f"cuDNN {t.backends.cudnn.version()}, enabled={t.backends.cudnn.enabled}")


def check_dataparallel(ctx: Context) -> Check:
    """The paper's strategy: DataParallel over every visible GPU, a few steps."""
    skip = _no_gpu(ctx, "DataParallel")
    if skip:
        return skip
    t = ctx.torch
    n = ctx.cuda_count()
    model = t.nn.DataParallel(ctx.build_model().to("cuda:0"), device_ids=list(range(n)))
    t0 = time.perf_counter()
    for _ in range(3):
        _step(ctx, model, "cuda:0", batch=max(2 * n, 8))
    t.cuda.synchronize()
    return Check("DataParallel", PASS, f"3 steps over {n} GPU(s) in {time.perf_counter() - t0:.2f} s")
