import os

import pytest

from aslhpc.atomic import append_jsonl, atomic_write_bytes, atomic_write_json, read_json, read_jsonl


def test_atomic_write_replaces_whole_file_with_normal_permissions(tmp_path):
    p = tmp_path / "sub" / "r.json"
    atomic_write_json(p, {"a": 1})
    atomic_write_json(p, {"a": 2})
    assert read_json(p) == {"a": 2}
    assert oct(os.stat(p).st_mode & 0o777) == oct(0o666 & ~_umask())
    assert [f.name for f in p.parent.iterdir()] == ["r.json"]  # no temp files left


def test_a_failed_write_keeps_the_old_file(tmp_path):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_bytes(p, "not bytes")  # fails half-way, after the temp file exists
    assert read_json(p) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]


def test_jsonl_reader_ignores_a_torn_last_line(tmp_path):
    p = tmp_path / "e.jsonl"
    append_jsonl(p, {"epoch": 1})
    with open(p, "a") as fh:
        fh.write('{"epoch": 2, "trunc')
    assert read_jsonl(p) == [{"epoch": 1}]


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
