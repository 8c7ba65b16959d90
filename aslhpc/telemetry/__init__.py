"""Telemetry for one training cell: NVML sampler thread, CPU fallback, provenance.

``Sampler`` streams GPU/CPU figures to ``samples.csv`` and returns the result.json
``telemetry`` block; ``torch_memory`` adds torch's own allocator peaks; ``collect_provenance``
records the machine. NVML comes from ``nvidia-ml-py`` (``import pynvml``), never from the
deprecated PyPI package named ``pynvml``.
"""

from aslhpc.telemetry.nvml import torch_visible
from aslhpc.telemetry.provenance import collect_provenance
from aslhpc.telemetry.sampler import CPU_RUN_REASON, CSV_COLUMNS, Sampler, torch_memory

__all__ = ["CPU_RUN_REASON", "CSV_COLUMNS", "Sampler", "collect_provenance", "torch_memory", "torch_visible"]
