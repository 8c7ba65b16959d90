"""Decode once: every image decoded and resized a single time into a uint8 ``.npy`` memmap.

Decoding 87k JPEGs costs minutes of CPU per epoch; a SLURM sweep runs dozens of cells over
the same data. So the first job to need a (dataset, size, interpolation) decodes it, in
parallel, into ``<cache_dir>/<key>.npy`` and every later job maps that file.

Concurrency protocol (twelve array tasks may start at the same second on a shared
filesystem; none may build twice or read half a file):

1. Fast path: if ``<key>.npy`` exists and its sidecar ``<key>.json`` validates, map it. No lock.
2. Otherwise take ``fcntl.flock(LOCK_EX)`` on ``<key>.lock`` (released by the kernel if the
   holder dies, so no stale locks), then look again: another job may have just finished.
3. Build into a hidden temp file in the same directory, msync + fsync it, write the sidecar
   atomically, then ``os.replace`` the temp file onto ``<key>.npy``. That rename is the
   commit point: readers only open the final name, and the sidecar always exists first.

A waiter that gets the lock and still sees no array, although the lock file says a build
finished moments ago, polls for up to ``NFS_VISIBILITY_S`` instead of rebuilding: an NFS
client may cache "no such file" for a directory for up to a minute (acdirmax).

flock works across nodes on NFSv4 and on Lustre mounted with ``-o flock`` (Linux emulates it
with POSIX locks on NFS). Where the filesystem refuses locks (Lustre ``noflock``), a warning is
printed and jobs build without one: work may be duplicated, but the rename keeps every
reader safe. Point ``ASLHPC_CACHE_DIR`` at node-local scratch to avoid the question.

The key holds the index fingerprint (class and file names) plus a content probe (a hash of
the first, middle and last file of each class), so regenerating a dataset under the same
names does not silently reuse stale pixels.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import math
import multiprocessing as mp
import os
import shutil
import socket
import stat
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aslhpc.atomic import atomic_write_json, read_json
from aslhpc.data import blocksum
from aslhpc.data.layout import DatasetIndex
from aslhpc.data.preprocess import RESAMPLE, CorruptImageError, load_image
from aslhpc.errors import DataError
from aslhpc.slurmenv import SCRATCH_VARS, node_scratch

SCHEMA = 2  # 2: per-block checksums ("checksum"); a schema-1 cache is rebuilt once
_SMALL = 256  # below this many images a process pool costs more than it saves
NFS_VISIBILITY_S = 90.0  # > the default NFS acdirmax (60 s): how long a fresh build may stay unseen


@dataclass(frozen=True, eq=False)
class DecodedImages:
    """The decoded dataset: row i of ``images`` is ``index.files[i]``; bad rows are zeros."""

    images: np.ndarray  # read-only memmap, uint8 (N, size, size, 3)
    ok: np.ndarray  # bool (N,), False where the file could not be decoded
    bad: list[str]  # relative paths of the files that could not be decoded
    path: Path  # the .npy file
    build_s: float  # seconds spent building; 0.0 when an existing cache was reused
    meta: dict[str, Any] = field(default_factory=dict)  # the sidecar JSON

    def __len__(self) -> int:
        return len(self.images)


@dataclass(frozen=True)
class CachePaths:
    array: Path
    sidecar: Path
    lock: Path

    @property
    def key(self) -> str:
        return self.array.stem


def default_workers() -> int:
    """CPUs this process may use (SLURM's cgroup/affinity), not the whole node's count."""
    if hasattr(os, "process_cpu_count"):
        return os.process_cpu_count() or 1
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def content_probe(index: DatasetIndex) -> str:
    """sha256 over the bytes of the first, middle and last file of each class (cheap: ~90 reads)."""
    h = hashlib.sha256()
    labels = index.labels
    starts = [i for i in range(len(labels)) if i == 0 or labels[i] != labels[i - 1]] + [len(labels)]
    for a, b in zip(starts, starts[1:], strict=False):
        for i in sorted({a, (a + b - 1) // 2, b - 1}):
            h.update(index.files[i].encode())
            try:
                h.update(index.path(i).read_bytes())
            except OSError as exc:
                h.update(f"unreadable:{exc.errno}".encode())
    return h.hexdigest()


def cache_paths(index: DatasetIndex, size: int, interpolation: str,
                cache_dir: str | os.PathLike) -> CachePaths:
    """File names carry the whole key: fingerprint, content probe, size and interpolation."""
    stem = f"asl-{index.fingerprint()[:20]}-{content_probe(index)[:10]}-{size}px-{interpolation}"
    d = Path(cache_dir).expanduser()
    return CachePaths(d / f"{stem}.npy", d / f"{stem}.json", d / f"{stem}.lock")


CACHE_RULES = ("configured", "ASLHPC_CACHE_DIR", *SCRATCH_VARS, "default")


def resolve_cache_dir(configured: str = "", node_local: bool = False,
                      env: Mapping[str, str] = os.environ) -> tuple[Path, str]:
    """Where a cell's decoded cache lives, and which rule chose it (one of :data:`CACHE_RULES`).

    Resolved on the node at run time, so the doctor and the trainer agree. In order: the cell's
    ``cache_dir`` when set; ``$ASLHPC_CACHE_DIR``; with ``node_local``, node-local scratch
    (``$SLURM_TMPDIR/aslhpc``, else ``$TMPDIR/aslhpc``); else ``~/.cache/aslhpc``, shared by every
    cell of the user. Node-local scratch is opt-in: each node then decodes the dataset once.
    """
    if configured:
        return Path(configured).expanduser(), "configured"
    if env.get("ASLHPC_CACHE_DIR"):
        return Path(env["ASLHPC_CACHE_DIR"]).expanduser(), "ASLHPC_CACHE_DIR"
    scratch = node_scratch(env) if node_local else None
    if scratch:
        return Path(scratch[0]).expanduser() / "aslhpc", scratch[1]
    home = env.get("HOME") or str(Path.home())
    return Path(home) / ".cache" / "aslhpc", "default"


def _default_cache_dir() -> str:
    return str(resolve_cache_dir("", False)[0])


def _say(msg: str) -> None:
    print(f"aslhpc: {msg}", file=sys.stderr, flush=True)


def _try_open(paths: CachePaths, index: DatasetIndex, size: int, interpolation: str, build_s: float = 0.0,
              verify: str | None = None) -> DecodedImages | str | None:
    """Map a finished cache; None when it is absent, else a one-line reason it cannot be used.

    ``verify`` is the checksum mode (default ``$ASLHPC_CACHE_VERIFY``, full): a cache whose bytes
    changed since it was built is rebuilt, never trained on.
    """
    try:
        st = paths.array.stat()
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot stat it ({exc.strerror})"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file"
    if st.st_size == 0:
        return "the file is empty (0 bytes)"
    expect = {"schema": SCHEMA, "fingerprint": index.fingerprint(), "n": len(index.files),
              "size": size, "interpolation": interpolation}
    try:
        meta = read_json(paths.sidecar)
        if not isinstance(meta, dict):
            return f"sidecar {paths.sidecar.name} is not a JSON object"
        wrong = [k for k, v in expect.items() if meta.get(k) != v]
        if wrong:
            return f"sidecar {paths.sidecar.name} does not match ({', '.join(wrong)})"
        bad_rows = [int(b["row"]) for b in meta.get("bad", [])]
        bad = [str(b["file"]) for b in meta.get("bad", [])]
        images = np.load(paths.array, mmap_mode="r")
    except FileNotFoundError:
        return f"its sidecar {paths.sidecar.name} is missing"
    except RecursionError:  # a sidecar nested deeper than the parser's stack
        return f"sidecar {paths.sidecar.name} is nested too deep to be ours"
    except (OSError, ValueError, TypeError, AttributeError, KeyError, EOFError) as exc:
        return f"it cannot be read ({type(exc).__name__}: {str(exc)[:160]})"
    if images.dtype != np.uint8 or images.shape != (len(index.files), size, size, 3):
        return f"it holds {images.dtype} {images.shape}, expected uint8 {(len(index.files), size, size, 3)}"
    if any(not 0 <= r < len(index.files) for r in bad_rows):
        return "its sidecar lists rows outside the array"
    try:
        mode = blocksum.verify_mode() if verify is None else verify
        why = blocksum.verify(images, meta.get("checksum"), mode)
    except OSError as exc:  # an I/O error while reading the mapped pages
        return f"reading it failed ({exc.strerror or exc})"
    if why:
        return why
    ok = np.ones(len(index.files), dtype=bool)
    ok[bad_rows] = False
    return DecodedImages(images, ok, bad, paths.array, build_s, meta)


@dataclass
class _Lock:
    """An flock'ed lock file. Its content, "built <unix time>", tells waiters a build just finished."""

    fd: int
    locked: bool

    def mark_built(self) -> None:
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"built {time.time():.3f}\n".encode(), 0)
        os.fsync(self.fd)  # NFS also flushes on unlock; a waiter that gets the lock reads this

    def built_at(self) -> float | None:
        try:
            word, stamp = os.pread(self.fd, 64, 0).decode().split()
            return float(stamp) if word == "built" else None
        except (OSError, ValueError, UnicodeDecodeError):
            return None


@contextlib.contextmanager
def _exclusive_lock(path: Path, say: Callable[[str], None]) -> Iterator[_Lock]:
    """flock the lock file; ``locked`` is False where the filesystem has no flock."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o664)
    except OSError as exc:
        raise DataError(f"cannot create cache lock {path}: {exc.strerror}; "
                        "set ASLHPC_CACHE_DIR to a writable directory") from exc
    try:
        locked = True
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                say(f"waiting for another job to finish building {path.with_suffix('.npy').name}")
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                raise
            say(f"warning: {path.parent} does not support flock ({exc.strerror}); building without a lock")
            locked = False
        yield _Lock(fd, locked)
    finally:
        os.close(fd)  # releases the lock


def _await_visible(paths: CachePaths, index: DatasetIndex, size: int, interpolation: str,
                   lock: _Lock) -> DecodedImages | str | None:
    """After another node's build, NFS may cache "no such file" for up to a minute: wait, do not rebuild.

    Only an absent file is waited for: a file that is there but invalid is returned at once
    (its reason), so the caller rebuilds now instead of after the whole visibility delay.
    """
    built = lock.built_at()
    if not lock.locked or built is None:
        return None
    deadline = built + NFS_VISIBILITY_S
    while time.time() < deadline:
        with contextlib.suppress(OSError):
            os.listdir(paths.array.parent)  # a READDIR refreshes the client's view of the directory
        found = _try_open(paths, index, size, interpolation)
        if found is not None:
            return found
        time.sleep(0.5)
    return None


def _decode_rows(tmp: str, root: str, files: list[str], start: int, size: int,
                 interpolation: str) -> list[tuple[int, str]]:
    """Decode ``files`` into rows ``start..`` of the temp array; return (row, error) of failures."""
    arr = np.load(tmp, mmap_mode="r+")
    bad: list[tuple[int, str]] = []
    base = Path(root)
    for j, rel in enumerate(files):
        try:
            arr[start + j] = load_image(base / rel, size, interpolation)
        except CorruptImageError as exc:
            bad.append((start + j, str(exc)))
    arr.flush()
    del arr
    return bad


def _progress_bar(enabled: bool, total: int, label: str):
    if not enabled:
        return contextlib.nullcontext(None)
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), console=Console(stderr=True), transient=True)
    bar.add_task(label, total=total)
    return bar


def _fsync_path(path: Path, directory: bool = False) -> None:
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # some filesystems refuse fsync on directories; harmless there
            raise
    finally:
        os.close(fd)


def _reserve(tmp: Path, n: int, size: int) -> None:
    """Create the temp array with its space allocated (``posix_fallocate``).

    Without the reservation the array is a sparse file written through an mmap, and a disk that
    fills mid-build kills the process with SIGBUS; reserved, a full disk is one error here.
    """
    arr = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    offset, nbytes = int(arr.offset), int(arr.nbytes)
    arr.flush()
    del arr
    fd = os.open(tmp, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, offset + nbytes)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            free = shutil.disk_usage(tmp.parent).free
            raise DataError(f"cannot reserve {nbytes / 1e9:.2f} GB for the cache in {tmp.parent} "
                            f"({exc.strerror}; {free / 1e9:.2f} GB free); free space there or set "
                            f"ASLHPC_CACHE_DIR to a larger filesystem") from exc
    finally:
        os.close(fd)


def _decode_all(tmp: Path, index: DatasetIndex, size: int, interpolation: str, workers: int,
                bar_on: bool) -> list[tuple[int, str]]:
    """Decode every image into the reserved temp array; (row, error) of the images that failed."""
    n = len(index.files)
    chunk = max(16, min(512, math.ceil(n / (workers * 8))))
    chunks = [(i, list(index.files[i : i + chunk])) for i in range(0, n, chunk)]
    args = (str(tmp), str(index.root))
    bad: list[tuple[int, str]] = []
    with _progress_bar(bar_on, n, f"decoding {size}px") as bar:
        def advance(k: int) -> None:
            if bar is not None:
                bar.advance(bar.task_ids[0], k)

        if workers == 1 or n < _SMALL:
            for start, files in chunks:
                bad += _decode_rows(*args, files, start, size, interpolation)
                advance(len(files))
            return bad
        ctx = mp.get_context("fork") if "fork" in mp.get_all_start_methods() else None
        try:
            with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
                futures = {pool.submit(_decode_rows, *args, files, start, size, interpolation): len(files)
                           for start, files in chunks}
                for fut in as_completed(futures):
                    bad += fut.result()
                    advance(futures[fut])
        except BrokenProcessPool as exc:
            raise DataError(f"a decoding worker died while building the cache in {tmp.parent} (killed, or "
                            "out of memory?); rerun it, or give the job more memory") from exc
    return bad


def _clear_non_file(path: Path) -> None:
    """Remove what stands at a cache file's name when it is not a file (a directory, a FIFO): the rename
    of the rebuilt file onto it would fail (``IsADirectoryError``). Only ever our own key's names."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
        return  # os.replace replaces a file or a symlink itself, never its target
    _say(f"removing {path}: a {'directory' if stat.S_ISDIR(st.st_mode) else 'special file'} "
         "where the cache keeps a file")
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _build(paths: CachePaths, index: DatasetIndex, size: int, interpolation: str, workers: int,
           progress: bool, locked: bool = True) -> float:
    t0 = time.perf_counter()
    n = len(index.files)
    nbytes = n * size * size * 3
    d = paths.array.parent
    free = shutil.disk_usage(d).free
    if free < nbytes * 1.02 + (64 << 20):
        raise DataError(f"cache needs {nbytes / 1e9:.2f} GB but {d} has {free / 1e9:.2f} GB free; "
                        f"set ASLHPC_CACHE_DIR to a larger filesystem")
    if locked:  # then any temp file of this key was left by a killed builder
        for stale in d.glob(f".{paths.key}.*.tmp.npy"):
            stale.unlink(missing_ok=True)
    tmp = d / f".{paths.key}.{socket.gethostname()}.{os.getpid()}.tmp.npy"
    previous = 0
    with contextlib.suppress(OSError, ValueError, TypeError, AttributeError, RecursionError):
        previous = int(read_json(paths.sidecar).get("builds", 0))
    for final in (paths.sidecar, paths.array):
        _clear_non_file(final)
    workers = max(1, min(workers, math.ceil(n / 64)))
    if progress:
        _say(f"decoding {n} images to {size}x{size} ({interpolation}) into {paths.array} "
             f"with {workers} workers")
    try:
        _reserve(tmp, n, size)
        bad = sorted(_decode_all(tmp, index, size, interpolation, workers, progress and sys.stderr.isatty()))
        _fsync_path(tmp)
        checksum = blocksum.block_checksums(np.load(tmp, mmap_mode="r"))
        build_s = time.perf_counter() - t0
        meta = {
            "schema": SCHEMA, "key": paths.key, "fingerprint": index.fingerprint(), "n": n,
            "size": size, "interpolation": interpolation, "dtype": "uint8", "shape": [n, size, size, 3],
            "root": str(index.root), "n_ok": n - len(bad), "n_bad": len(bad),
            "bad": [{"row": row, "file": index.files[row], "error": err} for row, err in bad],
            "build_s": round(build_s, 3), "builds": previous + 1, "workers": workers,
            "built_by": {"host": socket.gethostname(), "pid": os.getpid()},
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"), "checksum": checksum,
        }
        atomic_write_json(paths.sidecar, meta)  # sidecar first: the rename below is the commit
        os.chmod(paths.sidecar, stat.S_IMODE(tmp.stat().st_mode))  # shareable like the array, not 0600
        os.replace(tmp, paths.array)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_path(d, directory=True)
    if progress:
        _say(f"decoded {n} images in {build_s:.1f} s ({n / max(build_s, 1e-9):.0f} img/s)")
    return build_s


def _open_or_build(paths: CachePaths, index: DatasetIndex, size: int, interpolation: str,
                   workers: int | None, progress: bool) -> DecodedImages:
    """Under the lock: map what another job just built, or (re)build it, saying why when rebuilding."""
    try:
        paths.array.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create cache directory {paths.array.parent}: {exc.strerror}; "
                        f"set ASLHPC_CACHE_DIR to a writable directory") from exc
    with _exclusive_lock(paths.lock, _say) as lock:
        # Another job may have just built it (and on NFS it may take a moment to show).
        found = _try_open(paths, index, size, interpolation)
        if found is None:
            found = _await_visible(paths, index, size, interpolation, lock)
        if isinstance(found, DecodedImages):
            return found
        if isinstance(found, str):
            _say(f"rebuilding cache {paths.array}: {found}")
        build_s = _build(paths, index, size, interpolation, workers or default_workers(), progress,
                         lock.locked)
        if lock.locked:
            lock.mark_built()
        found = _try_open(paths, index, size, interpolation, build_s, verify="off")  # summed while built
    if not isinstance(found, DecodedImages):
        raise DataError(f"cache {paths.array} was built but cannot be read back ({found or 'missing'}); "
                        f"delete it and retry")
    return found


def open_cache(
    index: DatasetIndex,
    size: int = 150,
    interpolation: str = "bilinear",
    cache_dir: str | os.PathLike | None = None,
    workers: int | None = None,
    progress: bool = True,
) -> DecodedImages:
    """Map the decoded cache of ``index``, building it first (once, under a lock) if needed.

    ``cache_dir`` defaults to ``$ASLHPC_CACHE_DIR`` or ``~/.cache/aslhpc``; ``workers`` to the
    CPUs this process may use. Unreadable images are zero rows with ``ok`` False; a warning
    with their count is printed every time the cache is opened.
    """
    if interpolation not in RESAMPLE:
        raise ValueError(f"interpolation={interpolation!r}; use one of {', '.join(RESAMPLE)}")
    if size < 1:
        raise ValueError(f"size={size} must be positive")
    paths = cache_paths(index, size, interpolation, cache_dir or _default_cache_dir())
    found = _try_open(paths, index, size, interpolation)
    if not isinstance(found, DecodedImages):
        found = _open_or_build(paths, index, size, interpolation, workers, progress)
    if found.bad:
        shown = ", ".join(found.bad[:3]) + (", ..." if len(found.bad) > 3 else "")
        _say(f"warning: {len(found.bad)} of {len(found)} images could not be decoded and are skipped "
             f"({shown}); full list in {paths.sidecar}")
    return found
