"""A short throughput probe of the fast pipeline's loop on generated images (images/s).

What it times: batches gathered from uint8 images held on the device, normalised, and one SGD
step of the configured model (LadNet by default) each, in the precision ``amp = auto`` picks (bf16
on sm_80+, fp16 before, fp32 on the CPU): the fast pipeline's per-step work without its cache build.
"""

from __future__ import annotations

import time

from aslhpc.preflight.context import Context
from aslhpc.preflight.figures import RECORDED_PROBE
from aslhpc.preflight.result import PASS, WARN, Check

BATCH = 128


def probe(ctx: Context, steps: int, batch: int = BATCH) -> dict:
    """images/s over ``steps`` timed steps after 2 warm-up steps, on cuda:0 or the CPU."""
    from aslhpc.data.preprocess import normalize

    t = ctx.torch
    cuda = ctx.cuda_count() > 0
    device = t.device("cuda", 0) if cuda else t.device("cpu")
    dtype = None
    if cuda:
        dtype = t.bfloat16 if t.cuda.get_device_capability(0)[0] >= 8 else t.float16
    s = ctx.image_size
    images = t.randint(0, 256, (batch * 4, s, s, 3), dtype=t.uint8, device=device)
    labels = t.randint(0, ctx.class_count(), (batch * 4,), device=device)
    model = ctx.build_model().to(device).to(memory_format=t.channels_last)
    opt = t.optim.SGD(model.parameters(), lr=0.005)
    scaler = t.amp.GradScaler("cuda", enabled=dtype == t.float16)

    def step(k: int) -> None:
        idx = t.randint(0, len(labels), (batch,), device=device)
        x = normalize(images.index_select(0, idx).permute(0, 3, 1, 2))
        opt.zero_grad(set_to_none=True)
        with t.autocast(device_type=device.type, dtype=dtype, enabled=dtype is not None):
            loss = t.nn.functional.cross_entropy(model(x), labels.index_select(0, idx))
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    for k in range(2):
        step(k)
    if cuda:
        t.cuda.synchronize()
    t0 = time.perf_counter()
    for k in range(steps):
        step(k)
    if cuda:
        t.cuda.synchronize()
    took = time.perf_counter() - t0
    name = t.cuda.get_device_name(0) if cuda else "CPU"
    return {"device": name, "images_per_s": round(batch * steps / took, 1), "steps": steps, "batch": batch,
            "image_size": s, "model": ctx.model,
            "precision": {None: "fp32", t.bfloat16: "bf16", t.float16: "fp16"}[dtype],
            "threads": t.get_num_threads()}


def check_throughput(ctx: Context) -> Check:
    cuda = ctx.cuda_count() > 0
    steps = 3 if ctx.quick else (30 if cuda else 5)
    fig = probe(ctx, steps, batch=16 if ctx.quick else BATCH)
    found = (f"{fig['images_per_s']:,.0f} images/s on {fig['device']} ({fig['precision']}, "
             f"batch {fig['batch']}, {fig['image_size']} px, {steps} steps)")
    recorded = RECORDED_PROBE.get(fig["device"])
    if recorded is None:
        note = "no recorded figure for this device (GPU figures are unmeasured so far: README 'GPU figures')"
        return Check("throughput probe", PASS, f"{found}; {note}", figures=fig)
    fig["recorded_images_per_s"] = recorded
    if fig["images_per_s"] < 0.5 * recorded:
        return Check("throughput probe", WARN, f"{found}; recorded for this GPU: {recorded:,.0f}",
                     "less than half the recorded speed: another job on the GPU, throttling, "
                     "or a slow PCIe link",
                     fig)
    return Check("throughput probe", PASS, f"{found}; recorded: {recorded:,.0f}", figures=fig)
