"""Split sizes from the paper, seeded random split, leak-free blocked split, split hash."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest

from aslhpc.data import DatasetIndex, make_split, split_sizes
from aslhpc.errors import ConfigError


def fake_index(counts: dict[str, int], shuffle_seed: int | None = None) -> DatasetIndex:
    """An index without files on disk: splitting only looks at names and labels."""
    files, labels = [], []
    for label, (cls, n) in enumerate(counts.items()):
        names = [f"{cls}/{cls}{i}.jpg" for i in range(1, n + 1)]
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(names)
        files += names
        labels += [label] * n
    return DatasetIndex(Path("/nowhere"), tuple(counts), tuple(files), tuple(labels))


def test_paper_sizes_and_batches() -> None:
    assert split_sizes(87029) == (76760, 8528, 1741)
    assert tuple(math.ceil(n / 128) for n in split_sizes(87029)) == (600, 67, 14)


@pytest.mark.parametrize(
    ("n", "expected"),
    [(0, (0, 0, 0)), (1, (1, 0, 0)), (24, (22, 2, 0)), (25, (22, 2, 1)), (50, (45, 4, 1)),
     (100, (89, 9, 2)), (348, (307, 34, 7)), (3000, (2646, 294, 60))],
)
def test_split_sizes(n: int, expected: tuple[int, int, int]) -> None:
    assert split_sizes(n) == expected


def test_split_sizes_formula_everywhere() -> None:
    for n in range(0, 5000, 7):
        train, val, test = split_sizes(n)
        assert train + val + test == n
        assert test == math.floor(0.02 * n + 0.5)  # round half up
        assert val == (n - test) // 10


def test_random_split_paper_scale() -> None:
    idx = fake_index(dict.fromkeys([*"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "del", "nothing", "space"], 3001))
    idx = DatasetIndex(idx.root, idx.classes, idx.files[:87029], idx.labels[:87029])
    s = make_split(idx, "random", seed=0)
    assert s.sizes() == (76760, 8528, 1741)
    assert s.to_dict()["train"] == 76760 and s.to_dict()["kind"] == "random"
    allrows = np.concatenate([s.train, s.val, s.test])
    assert np.array_equal(np.sort(allrows), np.arange(87029))  # disjoint and complete


def test_random_split_seeded() -> None:
    idx = fake_index({"A": 40, "B": 30, "C": 30})
    a, b, c = make_split(idx, "random", 1), make_split(idx, "random", 1), make_split(idx, "random", 2)
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part), getattr(b, part))
        assert getattr(a, part).dtype == np.int64
        assert np.all(np.diff(getattr(a, part)) > 0)  # sorted, unique
    assert a.hash == b.hash
    assert not np.array_equal(a.val, c.val) and a.hash != c.hash
    assert a.sizes() == c.sizes() == split_sizes(100)


def test_blocked_split_contiguous_frame_blocks() -> None:
    idx = fake_index({"A": 50, "B": 10, "del": 25}, shuffle_seed=3)  # index order scrambled on purpose
    s = make_split(idx, "blocked", seed=0)

    def names(rows: np.ndarray, cls: str) -> list[str]:
        return sorted((idx.files[i] for i in rows if idx.files[i].startswith(cls + "/")),
                      key=lambda f: int(f.rsplit(cls, 1)[1][:-4]))

    assert names(s.train, "A") == [f"A/A{i}.jpg" for i in range(1, 46)]
    assert names(s.val, "A") == [f"A/A{i}.jpg" for i in range(46, 50)]
    assert names(s.test, "A") == ["A/A50.jpg"]
    assert names(s.train, "B") == [f"B/B{i}.jpg" for i in range(1, 10)]  # A1..A9 style train
    assert names(s.val, "B") == ["B/B10.jpg"] and names(s.test, "B") == []
    assert names(s.train, "del") == [f"del/del{i}.jpg" for i in range(1, 23)]
    assert names(s.val, "del") == ["del/del23.jpg", "del/del24.jpg"]
    assert names(s.test, "del") == ["del/del25.jpg"]
    per_class = [split_sizes(n) for n in (50, 10, 25)]
    assert s.sizes() == tuple(sum(p[k] for p in per_class) for k in range(3))


def test_blocked_is_deterministic_and_hash_covers_everything() -> None:
    idx = fake_index({"A": 30, "B": 30})
    a, b = make_split(idx, "blocked", 0), make_split(idx, "blocked", 0)
    other_seed = make_split(idx, "blocked", 5)
    assert np.array_equal(a.train, other_seed.train)  # no randomness in blocked
    assert a.hash == b.hash
    assert len({a.hash, other_seed.hash, make_split(idx, "random", 0).hash}) == 3
    assert make_split(fake_index({"A": 30, "C": 30}), "blocked", 0).hash != a.hash  # fingerprint differs
    with pytest.raises(ValueError):
        a.train[0] = 5  # frozen arrays: nobody edits a split after it was hashed


def test_unknown_split_kind() -> None:
    with pytest.raises(ConfigError, match="'stratified'"):
        make_split(fake_index({"A": 10}), "stratified", 0)
