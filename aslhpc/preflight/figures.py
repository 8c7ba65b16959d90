"""Training throughput the project has measured on known GPUs, for the doctor's comparison.

Filled from ``benchmarks/gpu_check.sh`` runs (the ``probe_images_per_s`` figure) the day a GPU
machine ran it; a figure is never typed in from elsewhere. Until then this is empty and the doctor
says so: GPU figures are unmeasured (README "GPU figures").
"""

from __future__ import annotations

# GPU name as torch.cuda.get_device_name reports it -> images/s of the doctor's probe (batch 128, 150 px)
RECORDED_PROBE: dict[str, float] = {}
