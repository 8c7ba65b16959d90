"""Package versions, and whether torch has kernels for every visible GPU (the V100/sm_70 trap)."""

from __future__ import annotations

import platform
import re
from importlib import metadata

from aslhpc.preflight.context import Context
from aslhpc.preflight.result import FAIL, PASS, SKIP, WARN, Check

PACKAGES = ("torch", "torchvision", "submitit", "nvidia-ml-py", "numpy", "pillow", "rich")


def v100_fix() -> str:
    """The same fix submit prints (exact versions, the check, constraints-v100.txt)."""
    from aslhpc.orchestration.torchfix import v100_fix as fix

    return fix()


def check_versions() -> Check:
    found = [f"Python {platform.python_version()}"]
    missing = []
    versions = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            versions[pkg] = metadata.version(pkg)
            found.append(f"{pkg} {versions[pkg]}")
        except metadata.PackageNotFoundError:
            missing.append(pkg)
    if missing:
        return Check("versions", FAIL, f"{', '.join(found)}; missing: {', '.join(missing)}",
                     f"pip install {' '.join(missing)} (or pip install -e . in the repository)", versions)
    return Check("versions", PASS, ", ".join(found), figures=versions)


def _arch(text: str) -> tuple[str, int, int] | None:
    m = re.fullmatch(r"(sm|compute)_(\d+)(\d)[a-z]?", text)
    return (m.group(1), int(m.group(2)), int(m.group(3))) if m else None


def runs_on(arch_list: list[str], major: int, minor: int) -> bool:
    """A GPU of capability major.minor runs this build: a cubin of the same major and minor <= its
    own (binary compatible), or PTX of a capability <= its own (the driver JIT-compiles it)."""
    for a in filter(None, map(_arch, arch_list)):
        kind, amaj, amin = a
        if kind == "sm" and amaj == major and amin <= minor:
            return True
        if kind == "compute" and (amaj, amin) <= (major, minor):
            return True
    return False


def arch_fix(major: int, minor: int) -> str:
    if (major, minor) == (7, 0):
        return v100_fix()
    return (f"install a torch build whose torch.cuda.get_arch_list() has sm_{major}{minor} "
            "(https://pytorch.org/get-started/locally/ lists the CUDA builds)")


def check_arch(ctx: Context) -> Check:
    """Every visible GPU's compute capability against ``torch.cuda.get_arch_list()``."""
    t = ctx.torch
    build = f"torch {t.__version__}"
    if t.version.cuda is None:
        return Check("torch GPU kernels", SKIP, f"{build} is a CPU build: no GPU kernels to check")
    from aslhpc.telemetry.provenance import cuda_arch_list

    arch = cuda_arch_list(t)  # the wheel's list where no GPU is visible (empty from get_arch_list on 2.7)
    listed = f"{build} has {' '.join(arch) or 'no arch list'}"
    n = ctx.cuda_count()
    if n == 0:
        if "v100" in ctx.gpu_type.lower() and not runs_on(arch, 7, 0):
            return Check("torch GPU kernels", WARN, f"no GPU visible here; {listed}: no sm_70 for the "
                         f"experiment's {ctx.gpu_type}", v100_fix(), {"arch_list": arch})
        return Check("torch GPU kernels", SKIP, f"{ctx.no_gpu_reason()}; {listed}",
                     figures={"arch_list": arch})
    lacking = []
    seen = []
    for i in range(n):
        major, minor = t.cuda.get_device_capability(i)
        name = t.cuda.get_device_name(i)
        seen.append(f"cuda:{i} {name} sm_{major}{minor}")
        if not runs_on(arch, major, minor):
            lacking.append((i, name, major, minor))
    if lacking:
        i, name, major, minor = lacking[0]
        return Check("torch GPU kernels", FAIL,
                     f"{listed}: no kernels for cuda:{i} {name} (sm_{major}{minor}); every cell would fail",
                     arch_fix(major, minor), {"arch_list": arch, "gpus": seen})
    return Check("torch GPU kernels", PASS, f"{'; '.join(seen)}: covered by {' '.join(arch)}",
                 figures={"arch_list": arch, "gpus": seen})
