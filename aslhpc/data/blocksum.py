"""Block checksums of the decoded cache: recorded at build, verified at open.

Why: bytes damaged on disk (a bad block, a half-copied file, someone's stray write) would be
trained on silently; a decoded cache has no structure that would make such damage visible.
CRC-32 per 32 MiB block (zlib; it releases the GIL, so blocks are summed on several threads):
it catches accidental damage, not a deliberate forgery (who can write the cache can write the
sidecar too). Measured on the 2-core development VM, one thread: ~2 GiB/s.

``ASLHPC_CACHE_VERIFY``: ``full`` (default: every block), ``sample`` (the first, the last and
``SAMPLE_BLOCKS`` spread between: for huge caches on slow shared storage) or ``off``.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

BLOCK_BYTES = 32 << 20
SAMPLE_BLOCKS = 8
ALGO = "crc32"
MODES = ("full", "sample", "off")


def _crc(fd: int, offset: int, length: int) -> str:
    crc = 0
    done = 0
    while done < length:
        chunk = os.pread(fd, min(8 << 20, length - done), offset + done)
        if not chunk:
            raise EOFError(f"file ends {length - done} bytes early")
        crc = zlib.crc32(chunk, crc)
        done += len(chunk)
    return f"{crc:08x}"


def _spans(offset: int, nbytes: int, block: int) -> list[tuple[int, int]]:
    return [(offset + a, min(block, nbytes - a)) for a in range(0, nbytes, block)]


def _threads() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1))


def block_checksums(path: Path, offset: int, nbytes: int, block: int = BLOCK_BYTES) -> dict[str, Any]:
    """The sidecar's ``checksum`` entry for ``nbytes`` of data starting at ``offset`` in ``path``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(_threads()) as pool:
            blocks = list(pool.map(lambda s: _crc(fd, *s), _spans(offset, nbytes, block)))
    finally:
        os.close(fd)
    return {"algo": ALGO, "block_bytes": block, "offset": offset, "nbytes": nbytes, "blocks": blocks}


def verify_mode(env: Mapping[str, str] = os.environ) -> str:
    mode = env.get("ASLHPC_CACHE_VERIFY", "full").strip().lower() or "full"
    return mode if mode in MODES else "full"


def verify(path: Path, entry: Any, offset: int, nbytes: int, mode: str = "full") -> str | None:
    """None when the recorded checksums match ``path``; else what is wrong (one line, for the log)."""
    if mode == "off":
        return None
    if not isinstance(entry, dict) or entry.get("algo") != ALGO:
        return "no checksums recorded (made by an older aslhpc)"
    try:
        block, blocks = int(entry["block_bytes"]), list(entry["blocks"])
        if int(entry["offset"]) != offset or int(entry["nbytes"]) != nbytes or block <= 0:
            return "checksums recorded for another layout of the file"
    except (KeyError, TypeError, ValueError):
        return "checksum record is malformed"
    spans = _spans(offset, nbytes, block)
    if len(blocks) != len(spans):
        return f"{len(blocks)} checksums recorded for {len(spans)} blocks"
    picks = list(range(len(spans)))
    if mode == "sample" and len(spans) > SAMPLE_BLOCKS + 2:
        step = (len(spans) - 1) / (SAMPLE_BLOCKS + 1)
        picks = sorted({0, len(spans) - 1, *(round(step * k) for k in range(1, SAMPLE_BLOCKS + 1))})
    fd = os.open(path, os.O_RDONLY)
    try:
        with ThreadPoolExecutor(_threads()) as pool:
            got = list(pool.map(lambda i: (i, _crc(fd, *spans[i])), picks))
    except (OSError, EOFError) as exc:
        return f"reading it failed ({exc})"
    finally:
        os.close(fd)
    bad = [i for i, c in got if c != blocks[i]]
    if bad:
        start, length = spans[bad[0]]
        return (f"checksum mismatch in {len(bad)} of {len(got)} checked blocks "
                f"(first: bytes {start}..{start + length})")
    return None
