"""DDP over two local processes: NCCL when two GPUs are visible, gloo on the CPU (``--ddp``).

Why two real processes: a rendezvous that cannot bind, a blocked loopback or an NCCL that
cannot start show only when ranks meet; a single-process test would pass on a node where
every ddp cell hangs until its time limit.
"""

from __future__ import annotations

import multiprocessing as mp
import queue
import socket
import time

from aslhpc.preflight.context import Context
from aslhpc.preflight.result import FAIL, PASS, SKIP, Check

TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, backend: str, port: int, image_size: int, out: mp.Queue,
          model_spec: str = "ladnet", num_classes: int = 29) -> None:
    """One rank: join the group, one DDP step of the configured model, an all_reduce; report what happened."""
    try:
        import torch
        import torch.distributed as dist

        from aslhpc.training.models import build_model

        torch.set_num_threads(1)
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                                timeout=__import__("datetime").timedelta(seconds=60))
        device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        model = torch.nn.parallel.DistributedDataParallel(
            build_model(model_spec, num_classes, image_size).to(device),
            device_ids=[rank] if device.type == "cuda" else None)
        x = torch.randn(2, 3, image_size, image_size, device=device)
        labels = torch.tensor([rank % num_classes, 1], device=device)
        loss = torch.nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        total = torch.tensor([rank + 1.0], device=device)
        dist.all_reduce(total)
        dist.destroy_process_group()
        out.put((rank, "ok", float(total.item())))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as the check's finding
        out.put((rank, "error", f"{type(exc).__name__}: {exc}"))


def check_ddp(ctx: Context) -> Check:
    n = ctx.cuda_count()
    if n < 2 and not ctx.ddp:
        return Check("DDP (2 processes)", SKIP, f"{n} GPU(s) visible: needs 2 (or --ddp for gloo on the CPU)")
    backend = "nccl" if n >= 2 else "gloo"
    spawn = mp.get_context("spawn")
    out: mp.Queue = spawn.Queue()
    port = _free_port()
    t0 = time.perf_counter()
    procs = [spawn.Process(target=_rank, args=(r, 2, backend, port, ctx.image_size, out, ctx.model,
                                                        ctx.class_count()), daemon=True)
             for r in range(2)]
    for p in procs:
        p.start()
    got: dict[int, tuple[str, object]] = {}
    deadline = time.monotonic() + TIMEOUT_S
    while len(got) < 2 and time.monotonic() < deadline:
        try:
            rank, status, value = out.get(timeout=1.0)
            got[rank] = (status, value)
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and out.empty():
                break
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.kill()
    took = time.perf_counter() - t0
    errors = [f"rank {r}: {v}" for r, (s, v) in sorted(got.items()) if s != "ok"]
    missing = [str(r) for r in range(2) if r not in got]
    if errors or missing:
        why = "; ".join(errors + ([f"rank(s) {', '.join(missing)} gave no answer in {TIMEOUT_S:.0f} s"]
                                  if missing else []))
        fix = ("set NCCL_DEBUG=INFO and rerun; check NCCL_SOCKET_IFNAME / the GPUs' peer access"
               if backend == "nccl" else "check that processes may bind 127.0.0.1 ports (MASTER_ADDR)")
        return Check("DDP (2 processes)", FAIL, f"{backend}: {why}", fix)
    sums = {v for _, v in got.values()}
    if sums != {3.0}:
        return Check("DDP (2 processes)", FAIL, f"{backend}: all_reduce gave {sorted(sums)} instead of 3.0",
                     "the collective computes wrong sums: report the node to the admins")
    return Check("DDP (2 processes)", PASS,
                 f"{backend}: 2 ranks, one DDP step and an all_reduce in {took:.1f} s",
                 figures={"backend": backend, "seconds": round(took, 2)})
