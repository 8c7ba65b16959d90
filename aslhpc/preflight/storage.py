"""Storage: the decoded cache's directory (resolved as the cell resolves it) and the results directory."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from aslhpc.data.cache import resolve_cache_dir
from aslhpc.preflight.context import PAPER_IMAGES, Context
from aslhpc.preflight.result import FAIL, PASS, WARN, Check

NO_LOCK = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL)
FIX_CACHE = "export ASLHPC_CACHE_DIR=<a writable directory> (node-local scratch, or your project space)"


def _writable(d: Path) -> str | None:
    """None when ``d`` exists (made if needed) and takes a file; else why not."""
    try:
        d.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".aslhpc-doctor-", dir=d)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        return f"{d}: {exc.strerror or exc}"
    return None


def flock_error(d: Path) -> str | None:
    """None when ``flock`` works in ``d``; else the reason (e.g. Lustre mounted without -o flock)."""
    fd, name = tempfile.mkstemp(prefix=".aslhpc-doctor-", suffix=".lock", dir=d)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError as exc:
            return f"{exc.strerror or exc} (errno {exc.errno})"
        return None
    finally:
        os.close(fd)
        os.unlink(name)


def cache_need_bytes(n_images: int, size: int) -> int:
    """What the cache build reserves: the uint8 array plus 2 % and 64 MiB of slack."""
    return int(n_images * size * size * 3 * 1.02) + (64 << 20)


def check_cache_dir(ctx: Context) -> list[Check]:
    d, rule = resolve_cache_dir(ctx.cache_dir, ctx.node_local, ctx.env)
    where = f"{d} (rule: {rule})"
    why = _writable(d)
    if why:
        return [Check("cache dir", FAIL, f"not writable: {why}; chosen by rule {rule}", FIX_CACHE)]
    rows = [Check("cache dir", PASS, f"{where} writable", figures={"path": str(d), "rule": rule})]
    if ctx.index is not None:
        from aslhpc.data.cache import cache_paths

        built = cache_paths(ctx.index, ctx.image_size, ctx.interpolation, d).array
        if built.is_file():
            size = built.stat().st_size
            rows.append(Check("cache room", PASS,
                              f"this data's cache is already built: {built.name} ({size / 1e9:.2f} GB)",
                              figures={"built": str(built), "bytes": size}))
            return rows + [_flock_row(d)]
    n = ctx.n_images or PAPER_IMAGES
    basis = f"{n:,} images" + ("" if ctx.n_images else " (the paper's dataset: no --data)")
    need = cache_need_bytes(n, ctx.image_size)
    free = shutil.disk_usage(d).free
    figures = {"need_bytes": need, "free_bytes": free, "images": n, "image_size": ctx.image_size}
    found = f"{basis} at {ctx.image_size} px need {need / 1e9:.2f} GB; {free / 1e9:.2f} GB free"
    if free < need:
        rows.append(Check("cache room", FAIL, found, f"free space in {d} or {FIX_CACHE}", figures))
    else:
        rows.append(Check("cache room", PASS, found, figures=figures))
    return rows + [_flock_row(d)]


def _flock_row(d: Path) -> Check:
    lock = flock_error(d)
    if lock:
        return Check("cache flock", WARN, f"flock fails in {d}: {lock}",
                     "concurrent cells may each build the cache (slow, but safe); "
                     "or use node-local scratch: " + FIX_CACHE)
    return Check("cache flock", PASS, f"flock works in {d}")


def check_results_dir(ctx: Context) -> Check:
    d = Path(ctx.results).expanduser()
    why = _writable(d)
    if why:
        return Check("results dir", FAIL, f"not writable: {why}",
                     "pass --results DIR (or [experiment] results) on a writable shared filesystem")
    lock = flock_error(d)
    if lock:
        return Check("results dir", FAIL, f"{d.resolve()} writable, but flock fails: {lock}",
                     "submit and the cells lock files there: use a filesystem with flock "
                     "(NFSv4, Lustre -o flock) for results")
    return Check("results dir", PASS, f"{d.resolve()} writable, flock works")
