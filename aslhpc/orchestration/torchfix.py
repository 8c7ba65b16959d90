"""What to run when the installed torch cannot drive the study's V100s (no sm_70 kernels).

The pinned torch (constraints.txt) is a CUDA 13 build: CUDA 13 dropped Volta, and PyPI's CUDA 12.8+
builds omit sm_70. PyPI's torch 2.7.x wheels are CUDA 12.6 builds that still carry sm_70, and 2.7.1 /
torchvision 0.22.1 are the oldest pair pyproject.toml admits, which CI tests (.ci/run's oldest-torch job,
with constraints-v100.txt). So the fix is to install that pair into the environment the jobs run;
aslhpc itself need not be reinstalled (its range admits it). The README's "On V100 nodes" section
gives the same commands.
"""

from __future__ import annotations

import shlex
import sys

V100_TORCH = "2.7.1"
V100_TORCHVISION = "0.22.1"


def v100_fix_commands(python: str | None = None) -> list[str]:
    """The commands, for the interpreter the jobs run (default: this one). The check prints the architectures
    the build was compiled for; ``torch.cuda.get_arch_list()`` is empty on a node without a GPU in torch
    2.7."""
    py = shlex.quote(python or sys.executable)
    return [f"{py} -m pip install torch=={V100_TORCH} torchvision=={V100_TORCHVISION}",
            f"{py} -c 'import torch; print(torch._C._cuda_getArchFlags())'"]


def v100_fix(python: str | None = None) -> str:
    """One line for submit's V100 refusal: the exact commands, and how to reinstall aslhpc without
    replacing that torch (constraints-v100.txt, never constraints.txt, which pins the CUDA 13 torch)."""
    install, check = v100_fix_commands(python)
    return (f"install a CUDA 12.6 torch with sm_70 kernels into the jobs' environment: `{install}` (PyPI's "
            f"{V100_TORCH} wheels are CUDA 12.6 builds), check that `{check}` lists sm_70, then submit "
            "again; to reinstall aslhpc keep that torch with `pip install -c constraints-v100.txt .` in the "
            "clone (README 'On V100 nodes')")
