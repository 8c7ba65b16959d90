"""Train / validation / test splits: a seeded random split and a leak-free blocked one.

Sizes reproduce the 2020 paper's counts with a rule inferred from them (the study does not state
it): test = round(2 % of N), validation = floor(10 % of the rest), train = the remainder, so
87,029 images give 76,760 / 8,528 / 1,741 (the Kaggle download's 87,000 give 76,734 / 8,526 / 1,740).

``random`` shuffles all images with a seeded generator (the study does not say how, or with which
seed, it split: this is our assumption). The Kaggle images are consecutive
video frames, so a random split puts near-duplicates of every test image into training
and inflates accuracy. ``blocked`` therefore cuts each class, ordered by frame number,
into contiguous blocks: train first, then validation, then test. Files without frame numbers
(an ImageFolder of one's own) are blocked in their sorted file order; ``Split.order`` says which.

``group`` (``split_group``, a regex) names a group key in each file name (its first capture group,
else the whole match; files it does not match are each their own group): all files of one key go
to the same side, in both kinds, so near-duplicates (one recording, one patient) never straddle it.
The cut then falls on the group boundary nearest each target size.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np

from aslhpc.data.layout import DatasetIndex, file_number, file_sort_key
from aslhpc.errors import ConfigError

SPLIT_KINDS = ("random", "blocked")
FRAME_ORDER = "frame numbers"
FILE_ORDER = "file order"
SHUFFLED = "seeded shuffle"


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
    order: str = FRAME_ORDER  # blocked: what "contiguous" followed (FRAME_ORDER/FILE_ORDER); random: SHUFFLED
    group: str = ""  # the group-key regex ("" = none)

    def sizes(self) -> tuple[int, int, int]:
        return len(self.train), len(self.val), len(self.test)

    def to_dict(self) -> dict:
        """The ``split`` block of result.json: {kind, seed, hash, train, val, test (counts), order, group}."""
        train, val, test = self.sizes()
        return {"kind": self.kind, "seed": self.seed, "hash": self.hash, "train": train, "val": val,
                "test": test, "order": self.order, "group": self.group}


def split_hash(kind: str, seed: int, fingerprint: str, train: np.ndarray, val: np.ndarray,
               test: np.ndarray, group: str = "") -> str:
    """sha256 hex over (kind, seed, index fingerprint, group regex when set, the three index arrays)."""
    h = hashlib.sha256()
    identity = {"kind": kind, "seed": int(seed), "fingerprint": fingerprint}
    if group:  # absent when unset: splits made before groups existed keep their hash
        identity["group"] = group
    h.update(json.dumps(identity, sort_keys=True).encode())
    for name, arr in (("train", train), ("val", val), ("test", test)):
        data = np.ascontiguousarray(arr, dtype="<i8")
        h.update(f"{name}:{len(data)}:".encode())
        h.update(data.tobytes())
    return h.hexdigest()


def _random_rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n_train, n_val, n_test = split_sizes(n)
    perm = np.random.default_rng(seed).permutation(n).astype(np.int64)
    test = perm[:n_test]
    val = perm[n_test : n_test + n_val]
    train = perm[n_test + n_val :]
    assert len(train) == n_train
    return np.sort(train), np.sort(val), np.sort(test)


def _cut(rows: np.ndarray, keys: list[str] | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``rows`` (in order) cut into train / val / test at the split sizes; with ``keys`` (one per row,
    equal keys adjacent), each group goes where its middle falls, so no group is cut."""
    n_train, n_val, _ = split_sizes(len(rows))
    if keys is None:
        return rows[:n_train], rows[n_train:n_train + n_val], rows[n_train + n_val:]
    part = np.empty(len(rows), dtype=np.int64)
    start = 0
    while start < len(rows):
        end = start
        while end < len(rows) and keys[end] == keys[start]:
            end += 1
        middle = (start + end) / 2
        part[start:end] = 0 if middle <= n_train else (1 if middle <= n_train + n_val else 2)
        start = end
    return rows[part == 0], rows[part == 1], rows[part == 2]


def group_keys(index: DatasetIndex, group: str) -> list[str]:
    """Each file's group key under the regex ``group`` (first capture group, else the whole match)."""
    try:
        pattern = re.compile(group)
    except re.error as exc:
        raise ConfigError(f"split_group={group!r} is not a regular expression ({exc}); fix it, e.g. "
                          r"'^(.+?)_\d+' for <recording>_<n>.png") from exc
    keys = []
    for name in index.files:
        m = pattern.search(name.rsplit("/", 1)[-1])
        keys.append((m.group(1) if m.groups() and m.group(1) is not None else m.group(0)) if m else name)
    return keys


def _grouped_order(rows: np.ndarray, keys: list[str] | None) -> np.ndarray:
    """``rows`` reordered so equal keys are adjacent, each group where its first row was."""
    if keys is None:
        return rows
    first: dict[str, int] = {}
    for pos, r in enumerate(rows):
        first.setdefault(keys[r], pos)
    return np.array(sorted(rows, key=lambda r: first[keys[r]]), dtype=np.int64).reshape(-1)


def _random(n: int, seed: int, keys: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if keys is None:
        return _random_rows(n, seed)
    # Shuffle the groups, not the files, then cut at the group boundaries nearest the sizes.
    names = sorted(set(keys))
    perm = np.random.default_rng(seed).permutation(len(names))
    rank = {names[p]: i for i, p in enumerate(perm)}
    rows = np.array(sorted(range(n), key=lambda r: (rank[keys[r]], r)), dtype=np.int64).reshape(-1)
    rows = rows[::-1]  # _cut fills train first; test takes the shuffle's first groups, as ungrouped
    train, val, test = _cut(rows, [keys[r] for r in rows])
    return np.sort(train), np.sort(val), np.sort(test)


def _blocked(index: DatasetIndex, keys: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    labels = np.asarray(index.labels, dtype=np.int64)
    parts: tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]] = ([], [], [])
    for label in range(len(index.classes)):
        rows = np.flatnonzero(labels == label)
        # Frame order, even if the index was built by hand in another order.
        def frame(i: int) -> tuple:
            return file_sort_key(index.files[i].rsplit("/", 1)[-1])

        rows = _grouped_order(np.array(sorted(rows, key=frame), dtype=np.int64).reshape(-1), keys)
        cut = _cut(rows, [keys[r] for r in rows] if keys is not None else None)
        for k in range(3):
            parts[k].append(cut[k])
    empty = np.zeros(0, dtype=np.int64)
    return tuple(np.sort(np.concatenate(p)) if p else empty for p in parts)  # type: ignore[return-value]


def file_order(index: DatasetIndex) -> str:
    """FRAME_ORDER when every file name ends in a number (Kaggle's frames), else FILE_ORDER."""
    numbered = all(file_number(name.rsplit("/", 1)[-1]) is not None for name in index.files)
    return FRAME_ORDER if numbered else FILE_ORDER


def make_split(index: DatasetIndex, kind: str = "random", seed: int = 0, group: str = "") -> Split:
    """The seeded, deterministic split of ``index`` (``blocked`` ignores the seed's randomness);
    ``group`` keeps each group key's files on one side."""
    keys = group_keys(index, group) if group else None
    if kind == "random":
        train, val, test = _random(len(index.files), seed, keys)
    elif kind == "blocked":
        train, val, test = _blocked(index, keys)
    else:
        raise ConfigError(f"split={kind!r} is not valid; use one of {', '.join(SPLIT_KINDS)}")
    for arr in (train, val, test):
        arr.flags.writeable = False
    digest = split_hash(kind, seed, index.fingerprint(), train, val, test, group)
    order = file_order(index) if kind == "blocked" else SHUFFLED
    return Split(kind, int(seed), train, val, test, digest, order, group)
