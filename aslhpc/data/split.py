"""Train / validation / test splits: a seeded random split and a leak-free blocked one.

Sizes reproduce the 2020 paper's counts with a rule inferred from them (the study does not state
it): test = round(2 % of N), validation = floor(10 % of the rest), train = the remainder, so
87,029 images give 76,760 / 8,528 / 1,741 (the Kaggle download's 87,000 give 76,734 / 8,526 / 1,740).

``random`` shuffles all images with a seeded generator (the study does not say how, or with which
seed, it split: this is our assumption). The Kaggle images are consecutive
video frames, so a random split puts near-duplicates of every test image into training
and inflates accuracy. ``blocked`` therefore cuts each class, ordered by frame number,
into contiguous blocks: train first, then validation, then test.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

import numpy as np

from aslhpc.data.layout import DatasetIndex, file_sort_key
from aslhpc.errors import ConfigError

SPLIT_KINDS = ("random", "blocked")


def split_sizes(n: int) -> tuple[int, int, int]:
    """(train, val, test) for ``n`` images; exact integer arithmetic, rounding half up."""
    if n < 0:
        raise ValueError(f"n={n} must be >= 0")
    test = (2 * n + 50) // 100
    val = (n - test) // 10
    return n - test - val, val, test


@dataclass(frozen=True, eq=False)
class Split:
    """Row indices into ``DatasetIndex.files`` (sorted int64) and a hash proving which rows."""

    kind: str
    seed: int
    train: np.ndarray
    val: np.ndarray
    test: np.ndarray
    hash: str

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)

    def to_dict(self) -> dict:
        """The ``split`` block of result.json: {kind, seed, hash, train, val, test} (counts)."""
        train, val, test = self.sizes()
        return {"kind": self.kind, "seed": self.seed, "hash": self.hash, "train": train, "val": val,
                "test": test}


def split_hash(kind: str, seed: int, fingerprint: str, train: np.ndarray, val: np.ndarray,
               test: np.ndarray) -> str:
    """sha256 hex over (kind, seed, index fingerprint, the three index arrays)."""
    h = hashlib.sha256()
    identity = {"kind": kind, "seed": int(seed), "fingerprint": fingerprint}
    h.update(json.dumps(identity, sort_keys=True).encode())
    for name, arr in (("train", train), ("val", val), ("test", test)):
        data = np.ascontiguousarray(arr, dtype="<i8")
        h.update(f"{name}:{len(data)}:".encode())
        h.update(data.tobytes())
    return h.hexdigest()


def _random(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_train, n_val, n_test = split_sizes(n)
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    test = perm[:n_test]
    val = perm[n_test : n_test + n_val]
    train = perm[n_test + n_val :]
    assert len(train) == n_train
    return np.sort(train), np.sort(val), np.sort(test)


def _blocked(index: DatasetIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(index.labels, dtype=np.int64)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in range(len(index.classes)):
        rows = np.flatnonzero(labels == label)
        # Frame order, even if the index was built by hand in another order.
        def frame(i: int) -> tuple:
            return file_sort_key(index.files[i].rsplit("/", 1)[-1])

        rows = np.array(sorted(rows, key=frame), dtype=np.int64)
        n_train, n_val, _ = split_sizes(len(rows))
        parts[0].append(rows[:n_train])
        parts[1].append(rows[n_train : n_train + n_val])
        parts[2].append(rows[n_train + n_val :])
    empty = np.zeros(0, dtype=np.int64)
    return tuple(np.sort(np.concatenate(p)) if p else empty for p in parts)  # type: ignore[return-value]


def make_split(index: DatasetIndex, kind: str = "random", seed: int = 0) -> Split:
    """The seeded, deterministic split of ``index`` (``blocked`` ignores the seed's randomness)."""
    if kind == "random":
        train, val, test = _random(len(index.files), seed)
    elif kind == "blocked":
        train, val, test = _blocked(index)
    else:
        raise ConfigError(f"split={kind!r} is not valid; use one of {', '.join(SPLIT_KINDS)}")
    for arr in (train, val, test):
        arr.flags.writeable = False
    digest = split_hash(kind, seed, index.fingerprint(), train, val, test)
    return Split(kind, int(seed), train, val, test, digest)
