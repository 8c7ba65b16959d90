"""The decode-once cache: correct pixels, reuse, keys, corrupt files, locking, concurrency."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import multiprocessing as mp
import os
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from aslhpc.data import load_image, open_cache, scan_dataset
from aslhpc.data.cache import cache_paths
from aslhpc.data.synth import render


def small_dataset(root: Path, per_class: int = 3, classes: tuple[str, ...] = ("A", "B")) -> Path:
    rng = np.random.default_rng(0)
    for k, cls in enumerate(classes):
        (root / cls).mkdir(parents=True)
        for n in range(1, per_class + 1):
            Image.fromarray(render(k, (n, 0.0, 1.0, 1.0), rng, 64)).save(root / cls / f"{cls}{n}.jpg")
    return root


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def test_build_then_reuse(synth_root: Path, cache_dir: Path) -> None:
    idx = scan_dataset(synth_root)
    first = open_cache(idx, 32, "bilinear", cache_dir, workers=2, progress=False)  # 348 images: process pool
    assert first.build_s > 0 and first.meta["builds"] == 1
    assert first.images.shape == (348, 32, 32, 3) and first.images.dtype == np.uint8
    assert isinstance(first.images, np.memmap) and not first.images.flags.writeable
    assert first.ok.all() and first.bad == []
    for i in (0, 11, 200, 347):  # row i is files[i], decoded by THE preprocessing
        assert np.array_equal(first.images[i], load_image(idx.path(i), 32, "bilinear"))
    again = open_cache(idx, 32, "bilinear", cache_dir, workers=2, progress=False)
    assert again.build_s == 0.0 and again.path == first.path and again.meta["builds"] == 1
    assert digest(again.images) == digest(first.images)
    key = first.path.name
    assert idx.fingerprint()[:20] in key and "32px" in key and "bilinear" in key
    names = sorted(p.name for p in cache_dir.iterdir())
    assert names == sorted([key, key[:-4] + ".json", key[:-4] + ".lock"])


def test_default_cache_dir_from_env(tmp_path: Path, cache_dir: Path) -> None:
    idx = scan_dataset(small_dataset(tmp_path / "d"))
    d = open_cache(idx, 16, progress=False)
    assert d.path.parent == cache_dir


def test_size_and_interpolation_get_their_own_file(tmp_path: Path, cache_dir: Path) -> None:
    idx = scan_dataset(small_dataset(tmp_path / "d"))
    a = open_cache(idx, 24, "bilinear", cache_dir, progress=False)
    b = open_cache(idx, 40, "bilinear", cache_dir, progress=False)
    c = open_cache(idx, 24, "nearest", cache_dir, progress=False)
    assert len({a.path, b.path, c.path}) == 3
    assert a.build_s > 0 and b.build_s > 0 and c.build_s > 0
    assert b.images.shape[1:] == (40, 40, 3)
    assert not np.array_equal(a.images, c.images)


def test_regenerated_content_is_not_served_stale(tmp_path: Path, cache_dir: Path) -> None:
    root = small_dataset(tmp_path / "d")
    before = open_cache(scan_dataset(root), 16, "bilinear", cache_dir, progress=False)
    Image.new("RGB", (64, 64), (255, 255, 0)).save(root / "A" / "A1.jpg")  # same names, new pixels
    after = open_cache(scan_dataset(root), 16, "bilinear", cache_dir, progress=False)
    assert after.path != before.path and after.build_s > 0
    assert tuple(after.images[0, 8, 8]) == (255, 255, 0)


def test_corrupt_images_skipped_counted_listed(tmp_path: Path, cache_dir: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    root = small_dataset(tmp_path / "d", per_class=4)
    good = (root / "A" / "A1.jpg").read_bytes()
    (root / "A" / "A2.jpg").write_bytes(good[: len(good) // 3])  # truncated
    (root / "B" / "B4.jpg").write_bytes(b"\x00garbage, not a jpeg" * 10)
    idx = scan_dataset(root)
    d = open_cache(idx, 16, "bilinear", cache_dir, workers=1, progress=False)
    assert d.bad == ["A/A2.jpg", "B/B4.jpg"]
    assert d.ok.tolist() == [True, False, True, True, True, True, True, False]
    assert d.meta["n_bad"] == 2 and d.meta["n_ok"] == 6
    assert {b["file"] for b in d.meta["bad"]} == set(d.bad) and all(b["error"] for b in d.meta["bad"])
    assert not d.images[1].any() and d.images[0].any()
    err = capsys.readouterr().err
    assert "warning: 2 of 8 images could not be decoded" in err and "A/A2.jpg" in err
    again = open_cache(idx, 16, "bilinear", cache_dir, workers=1, progress=False)  # sidecar restores the mask
    assert again.build_s == 0.0 and again.bad == d.bad and np.array_equal(again.ok, d.ok)
    assert "warning: 2 of 8" in capsys.readouterr().err


def test_invalid_or_half_written_files_are_never_read(tmp_path: Path, cache_dir: Path) -> None:
    idx = scan_dataset(small_dataset(tmp_path / "d"))
    paths = cache_paths(idx, 16, "bilinear", cache_dir)
    cache_dir.mkdir()
    stale_tmp = cache_dir / f".{paths.key}.deadhost.123.tmp.npy"  # a builder killed mid-write
    stale_tmp.write_bytes(b"\x93NUMPY half")
    paths.array.write_bytes(b"\x93NUMPY truncated garbage")  # an array with no sidecar
    d = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert d.build_s > 0 and d.images.shape == (6, 16, 16, 3) and d.ok.all()
    assert not stale_tmp.exists()
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp.npy")]


def test_lock_holder_blocks_builders(tmp_path: Path, cache_dir: Path) -> None:
    idx = scan_dataset(small_dataset(tmp_path / "d"))
    paths = cache_paths(idx, 16, "bilinear", cache_dir)
    cache_dir.mkdir()
    out: list = []
    with open(paths.lock, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)  # another "job" is building
        t = threading.Thread(
            target=lambda: out.append(open_cache(idx, 16, "bilinear", cache_dir, progress=False)))
        t.start()
        time.sleep(0.4)
        assert t.is_alive() and not paths.array.exists()
        fcntl.flock(fh, fcntl.LOCK_UN)
    t.join(10)
    assert out and out[0].build_s > 0


def _open_together(idx, cache_dir: Path, barrier, queue) -> None:
    barrier.wait()
    d = open_cache(idx, 32, "bilinear", cache_dir, workers=1, progress=False)
    queue.put((os.getpid(), d.build_s, digest(d.images), d.meta["builds"], d.meta["built_by"]["pid"]))


def run_together(idx, cache_dir: Path, n: int) -> list[tuple]:
    """Start ``n`` processes that call open_cache at the same instant; return what each saw."""
    ctx = mp.get_context("fork")
    barrier, queue = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_open_together, args=(idx, cache_dir, barrier, queue)) for _ in range(n)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
        assert p.exitcode == 0
    return [queue.get(timeout=5) for _ in procs]


def test_concurrent_builders_build_once(synth_root: Path, cache_dir: Path) -> None:
    results = run_together(scan_dataset(synth_root), cache_dir, 6)
    builders = [r for r in results if r[1] > 0]
    assert len(builders) == 1  # exactly one process decoded; five waited and mapped its file
    assert len({r[2] for r in results}) == 1  # identical arrays for all
    assert {r[3] for r in results} == {1}  # the sidecar records a single build ...
    assert {r[4] for r in results} == {builders[0][0]}  # ... by the process that reported build_s > 0
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp.npy")]


def test_without_flock_builders_duplicate_work_but_stay_safe(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lustre mounted noflock: flock fails with ENOSYS; every job builds, none reads a torn file."""

    def no_flock(fd, op):
        raise OSError(errno.ENOSYS, "Function not implemented")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    idx = scan_dataset(small_dataset(tmp_path / "d", per_class=20))
    results = run_together(idx, cache_dir, 3)
    assert any(r[1] > 0 for r in results)  # usually all three build (timing decides) ...
    assert len({r[2] for r in results}) == 1  # ... and all see the same complete pixels
    assert open_cache(idx, 32, "bilinear", cache_dir, progress=False).build_s == 0.0
    assert not [p for p in cache_dir.iterdir() if p.name.endswith(".tmp.npy")]


def test_waiter_trusts_a_fresh_build_marker(tmp_path: Path, cache_dir: Path) -> None:
    """NFS may hide a just-renamed file for a while: a recent "built" marker means wait, not rebuild."""
    idx = scan_dataset(small_dataset(tmp_path / "d"))
    elsewhere = tmp_path / "elsewhere"
    built = open_cache(idx, 16, "bilinear", elsewhere, progress=False)
    paths = cache_paths(idx, 16, "bilinear", cache_dir)
    cache_dir.mkdir()
    paths.lock.write_text(f"built {time.time():.3f}\n")

    def appear_late() -> None:
        time.sleep(1.2)
        os.replace(built.path.with_suffix(".json"), paths.sidecar)
        os.replace(built.path, paths.array)

    t = threading.Thread(target=appear_late)
    t.start()
    d = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    t.join()
    assert d.build_s == 0.0 and digest(d.images) == digest(built.images)
    # an old marker (the array was deleted since) does not make anyone wait
    paths.array.unlink()
    paths.lock.write_text(f"built {time.time() - 3600:.3f}\n")
    t0 = time.perf_counter()
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert again.build_s > 0 and time.perf_counter() - t0 < 5
    assert paths.lock.read_text().startswith("built ")


@pytest.mark.parametrize(("configured", "node_local", "env", "want", "rule"), [
    ("/c", True, {"ASLHPC_CACHE_DIR": "/e", "SLURM_TMPDIR": "/s"}, "/c", "configured"),
    ("", True, {"ASLHPC_CACHE_DIR": "/e", "SLURM_TMPDIR": "/s"}, "/e", "ASLHPC_CACHE_DIR"),
    ("", True, {"SLURM_TMPDIR": "/s", "TMPDIR": "/t", "HOME": "/h"}, "/s/aslhpc", "SLURM_TMPDIR"),
    ("", True, {"TMPDIR": "/t", "HOME": "/h"}, "/t/aslhpc", "TMPDIR"),
    ("", False, {"SLURM_TMPDIR": "/s", "TMPDIR": "/t", "HOME": "/h"}, "/h/.cache/aslhpc", "default"),
    ("", True, {"HOME": "/h"}, "/h/.cache/aslhpc", "default"),
])
def test_resolve_cache_dir_rules(configured: str, node_local: bool, env: dict, want: str, rule: str) -> None:
    from aslhpc.data.cache import resolve_cache_dir

    assert resolve_cache_dir(configured, node_local, env) == (Path(want), rule)


# ---- issue 16 medium 2: a verified cache ------------------------------------------------------


def _built(tmp_path: Path, cache_dir: Path, per_class: int = 3):  # noqa: ANN202
    idx = scan_dataset(small_dataset(tmp_path / "d", per_class=per_class))
    return idx, open_cache(idx, 16, "bilinear", cache_dir, progress=False)


def test_sidecar_records_block_checksums(tmp_path: Path, cache_dir: Path) -> None:
    _, d = _built(tmp_path, cache_dir)
    c = d.meta["checksum"]
    assert d.meta["schema"] == 2 and c["algo"] == "crc32" and c["nbytes"] == 6 * 16 * 16 * 3
    assert len(c["blocks"]) == 1 and c["blocks"][0] == f"{zlib.crc32(np.asarray(d.images).tobytes()):08x}"


def test_damaged_pixels_are_rebuilt_with_a_line_saying_why(tmp_path: Path, cache_dir: Path, capsys) -> None:
    idx, d = _built(tmp_path, cache_dir)
    want = digest(d.images)
    offset, path = d.images.offset, d.path
    del d
    with open(path, "r+b") as fh:  # same size, header intact: only the pixels change
        fh.seek(offset + 100)
        fh.write(os.urandom(500))
    capsys.readouterr()
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    err = capsys.readouterr().err
    assert f"rebuilding cache {path}: checksum mismatch" in err
    assert again.build_s > 0 and digest(again.images) == want and again.meta["builds"] == 2


def test_random_bytes_of_the_same_size_are_rebuilt(tmp_path: Path, cache_dir: Path, capsys) -> None:
    idx, d = _built(tmp_path, cache_dir)
    want, path = digest(d.images), d.path
    path.write_bytes(os.urandom(path.stat().st_size))
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert "rebuilding cache" in capsys.readouterr().err and digest(again.images) == want


def test_zero_byte_cache_names_the_file(tmp_path: Path, cache_dir: Path, capsys) -> None:
    idx, d = _built(tmp_path, cache_dir)
    d.path.write_bytes(b"")
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert f"rebuilding cache {d.path}: the file is empty (0 bytes)" in capsys.readouterr().err
    assert again.build_s > 0 and again.images.shape == (6, 16, 16, 3)


def test_a_cache_without_checksums_is_rebuilt_once(tmp_path: Path, cache_dir: Path, capsys) -> None:
    from aslhpc.atomic import atomic_write_json

    idx, d = _built(tmp_path, cache_dir)
    old = {k: v for k, v in d.meta.items() if k != "checksum"} | {"schema": 1}  # what aslhpc wrote before
    atomic_write_json(d.path.with_suffix(".json"), old)
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert "does not match (schema)" in capsys.readouterr().err and again.build_s > 0
    assert open_cache(idx, 16, "bilinear", cache_dir, progress=False).build_s == 0.0


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_verify_modes_catch_damage_and_off_trusts(tmp_path: Path, mode: str) -> None:
    from aslhpc.data import blocksum

    data = np.frombuffer(os.urandom(40 * 1024), dtype=np.uint8).reshape(40, 32, 32).copy()
    entry = blocksum.block_checksums(data, block=1024)
    assert len(entry["blocks"]) == 40 and blocksum.verify(data, entry, mode) is None
    data[0, 0, 0] ^= 1  # block 0: always among the sampled ones
    assert "checksum mismatch in 1 of" in blocksum.verify(data, entry, mode)
    assert blocksum.verify(data, entry, "off") is None
    assert "another size" in blocksum.verify(data[:20], entry, mode)


def test_full_disk_is_one_error_and_leaves_no_temp_file(tmp_path: Path, cache_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from aslhpc.errors import DataError

    def enospc(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", enospc)
    idx = scan_dataset(small_dataset(tmp_path / "d"))
    with pytest.raises(DataError) as err:
        open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    msg = str(err.value)
    assert "\n" not in msg and "cannot reserve" in msg and str(cache_dir) in msg and "ASLHPC_CACHE_DIR" in msg
    assert not [p for p in cache_dir.iterdir() if p.suffix == ".npy"]


def _die(*args: object) -> None:
    os._exit(9)


def test_a_dead_decoding_worker_is_one_error_and_cleans_up(synth_root: Path, cache_dir: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from aslhpc.data import cache
    from aslhpc.errors import DataError

    monkeypatch.setattr(cache, "_decode_rows", _die)  # a worker killed (the OOM killer)
    with pytest.raises(DataError, match="a decoding worker died"):
        open_cache(scan_dataset(synth_root), 20, "bilinear", cache_dir, workers=2, progress=False)
    assert not [p for p in cache_dir.iterdir() if p.suffix in (".npy", ".json")]


def test_any_failure_after_decoding_removes_the_temp_file(tmp_path: Path, cache_dir: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from aslhpc.data import blocksum

    def interrupted(*a, **k) -> None:  # noqa: ANN002, ANN003 - e.g. Ctrl-C or a read error while summing
        raise KeyboardInterrupt

    monkeypatch.setattr(blocksum, "block_checksums", interrupted)
    idx = scan_dataset(small_dataset(tmp_path / "d"))
    with pytest.raises(KeyboardInterrupt):
        open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert [p.suffix for p in cache_dir.iterdir()] == [".lock"]


def test_invalid_soon_after_a_build_is_rebuilt_without_waiting(tmp_path: Path, cache_dir: Path,
                                                               capsys) -> None:
    idx, d = _built(tmp_path, cache_dir)
    paths = cache_paths(idx, 16, "bilinear", cache_dir)
    want, path = digest(d.images), d.path
    paths.lock.write_text(f"built {time.time():.3f}\n")  # another node finished a build just now ...
    path.write_bytes(b"")  # ... and what we see of it is damaged
    t0 = time.perf_counter()
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert time.perf_counter() - t0 < 10  # not NFS_VISIBILITY_S (90 s)
    assert digest(again.images) == want and "rebuilding cache" in capsys.readouterr().err


@pytest.mark.parametrize("which", ["array", "sidecar"])
def test_a_directory_in_place_of_a_cache_file_is_rebuilt_with_a_line(tmp_path: Path, cache_dir: Path, capsys,
                                                                     which: str) -> None:
    """Issue 27.7: the rebuild's rename onto a directory raised IsADirectoryError and crashed the cell."""
    idx, d = _built(tmp_path, cache_dir)
    want = digest(d.images)
    paths = cache_paths(idx, 16, "bilinear", cache_dir)
    del d
    target = paths.array if which == "array" else paths.sidecar
    target.unlink()
    (target / "inside").mkdir(parents=True)
    capsys.readouterr()
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    err = capsys.readouterr().err
    assert f"rebuilding cache {paths.array}:" in err and f"removing {target}: a directory" in err
    assert target.is_file() and digest(again.images) == want


def test_a_sidecar_nested_too_deep_is_rebuilt_with_a_line(tmp_path: Path, cache_dir: Path, capsys) -> None:
    """Issue 27.7: a 200k-deep sidecar JSON raised RecursionError out of the cache."""
    idx, d = _built(tmp_path, cache_dir)
    want = digest(d.images)
    paths = cache_paths(idx, 16, "bilinear", cache_dir)
    del d
    paths.sidecar.write_text("[" * 200_000 + "]" * 200_000)
    capsys.readouterr()
    again = open_cache(idx, 16, "bilinear", cache_dir, progress=False)
    assert f"rebuilding cache {paths.array}: sidecar" in capsys.readouterr().err
    assert digest(again.images) == want and again.meta["builds"] == 1
