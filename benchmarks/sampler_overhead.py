"""What the telemetry sampler costs: time per tick, and LadNet training-step time with it on.

    .venv/bin/python benchmarks/sampler_overhead.py [--batch N] [--steps 15] [--rounds 3] [--json out.json]

Part 1 times one sampler tick (``Sampler.sample_now``: all queries + one CSV write) with the
real NVML when a driver is present, else with the fake NVML of the tests (4 V100s, the
paper's node: this measures our Python cost only, not the driver's), with and without the
per-process memory query, and on the CPU-only path.

Part 2 trains the 2020 CNN (``aslhpc.training.model.LadNet``, 150x150 input, SGD lr 0.005) with no
sampler, the sampler at 1 s, and at an aggressive 0.01 s, interleaved round by round so drift
hits all three alike, and prints median step times and their ratio to the no-sampler run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from aslhpc.telemetry import Sampler
from aslhpc.training.model import LadNet

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
HOUR = 3600.0


def nvml_backend() -> tuple[Callable[[], Any], str]:
    """(factory of the ``nvml=`` argument, label): the real driver if it answers, else the fake."""
    try:
        import pynvml

        pynvml.nvmlInit()
        n = pynvml.nvmlDeviceGetCount()
        pynvml.nvmlShutdown()
        return (lambda: None), f"real NVML ({n} GPU(s))"
    except Exception:
        from fake_nvml import FakeNvml, four_v100s  # the tests' fake: no driver here

        return (lambda: FakeNvml(four_v100s())), "fake NVML (4 GPUs; Python cost only)"


def tick_cost(out: Path, n: int, **kw: Any) -> dict[str, float]:
    """Median/mean microseconds of one ``sample_now`` tick."""
    s = Sampler(out, interval_s=HOUR, **kw)
    s.start()
    times = []
    for _ in range(n):
        t = time.perf_counter()
        s.sample_now()
        times.append((time.perf_counter() - t) * 1e6)
    summary = s.stop()
    return {"median_us": statistics.median(times), "mean_us": statistics.fmean(times),
            "gpus": len(summary["gpus"]), "errors": summary["errors"]}


def make_step(device: torch.device, batch: int) -> Callable[[], None]:
    model = LadNet(num_classes=29, dropout=0.2).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.005)
    x = torch.randn(batch, 3, 150, 150, device=device)
    y = torch.randint(0, 29, (batch,), device=device)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return step


def timed_steps(step: Callable[[], None], steps: int, sampler: Sampler | None) -> list[tuple[float, float]]:
    """(wall s, process CPU s) per step; CPU time includes the sampler thread and is robust to
    other processes on a shared machine, wall time is what a run pays."""
    if sampler is not None:
        sampler.start()
    try:
        out = []
        for _ in range(steps):
            t, c = time.perf_counter(), time.process_time()
            step()
            out.append((time.perf_counter() - t, time.process_time() - c))
        return out
    finally:
        if sampler is not None:
            sampler.stop()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=0, help="batch size (default 128 on GPU, 32 on CPU)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per configuration and round")
    p.add_argument("--rounds", type=int, default=16, help="rounds; the order of the configurations rotates")
    p.add_argument("--ticks", type=int, default=300, help="ticks timed in part 1")
    p.add_argument("--json", type=Path, help="also write the figures here")
    a = p.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    batch = a.batch or (128 if device.type == "cuda" else 32)
    fresh, label = nvml_backend()
    gpu_name = torch.cuda.get_device_name(0) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"machine: {platform.node()} | device: {device} ({gpu_name}) | torch {torch.__version__} | "
          f"threads {torch.get_num_threads()} | sampler backend: {label}")

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        ticks = {
            "gpu_path": tick_cost(d / "a.csv", a.ticks, nvml=fresh(), process_interval_s=HOUR),
            "gpu_path_with_process_query": tick_cost(d / "b.csv", a.ticks, nvml=fresh(),
                                                     process_interval_s=0.0),
            "cpu_path": tick_cost(d / "c.csv", a.ticks, devices=[]),
        }
        print("\nper tick (one sample: all queries + one CSV write)")
        for k, v in ticks.items():
            print(f"  {k:30s} median {v['median_us']:8.1f} us   mean {v['mean_us']:8.1f} us   "
                  f"gpus {v['gpus']}  errors {v['errors']}")

        step = make_step(device, batch)
        for _ in range(5):
            step()  # warm-up: allocator, cuDNN autotune, thread pools
        configs: dict[str, Callable[[], Sampler | None]] = {
            "no sampler": lambda: None,
            "sampler 1 s": lambda: Sampler(d / "t1.csv", interval_s=1.0, nvml=fresh()),
            "sampler 0.01 s": lambda: Sampler(d / "t2.csv", interval_s=0.01, process_interval_s=0.1,
                                              nvml=fresh()),
        }
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in configs}
        names = list(configs)
        for r in range(a.rounds):
            for name in names[r % 3 :] + names[: r % 3]:
                times[name] += timed_steps(step, a.steps, configs[name]())

    def med(name: str, i: int) -> float:
        return statistics.median(x[i] for x in times[name])

    steps = {k: {"wall_median_ms": med(k, 0) * 1e3, "wall_ratio": med(k, 0) / med("no sampler", 0),
                 "cpu_median_ms": med(k, 1) * 1e3, "cpu_ratio": med(k, 1) / med("no sampler", 1),
                 "n": len(v)} for k, v in times.items()}
    print(f"\nLadNet training step, batch {batch}, input 3x150x150, {device} "
          f"({a.rounds} rounds x {a.steps} steps, interleaved, order rotated; medians)")
    for k, v in steps.items():
        print(f"  {k:15s} wall {v['wall_median_ms']:8.2f} ms  (x{v['wall_ratio']:.3f})   "
              f"process CPU {v['cpu_median_ms']:8.2f} ms  (x{v['cpu_ratio']:.3f})")
    tick = ticks["gpu_path"]["median_us"] * 1e-6
    busy = {f"{i} s": tick / i for i in (1.0, 0.01)}
    print("  sampler thread busy time from the tick cost: "
          + ", ".join(f"{k}: {v * 100:.3f}% of one core" for k, v in busy.items()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"  load average during the run: {load} on {os.cpu_count()} CPUs")
    report = {"machine": platform.node(), "device": str(device), "device_name": gpu_name, "backend": label,
              "torch": torch.__version__, "batch": batch, "ticks": ticks, "steps": steps,
              "thread_busy_fraction": busy, "loadavg_1min": load}
    if a.json:
        a.json.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
