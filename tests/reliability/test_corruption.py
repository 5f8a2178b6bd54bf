"""Damaged files are detected and named, never trusted: CorruptStoreError, not a segfault or
wrong results; older versions stay readable."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import vecstore
from vecstore import CorruptStoreError
from vecstore.storage import segments


@pytest.fixture
def store(tmp_path, rng):
    db = vecstore.connect(tmp_path / "s")
    tbl = db.create_table("t", dim=16)
    tbl.add([{"id": f"a{i}", "vector": rng.normal(size=16), "n": i} for i in range(300)])
    tbl.add([{"id": f"b{i}", "vector": rng.normal(size=16), "n": i} for i in range(50)])
    segments._verified.clear()  # each test opens the files afresh, as a new process would
    return tmp_path / "s"


def latest_manifest(store):
    return sorted((store / "t" / "_versions").glob("*.json"))[-1]


def segment_files(store):
    data = json.loads(latest_manifest(store).read_text())
    return [store / "t" / s["data"]["path"] for s in data["segments"]]


def reopen(store):
    segments._verified.clear()
    return vecstore.connect(store).open_table("t")


@pytest.mark.parametrize("where", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_bit_flip_in_a_segment(store, where):
    path = segment_files(store)[0]
    raw = bytearray(path.read_bytes())
    raw[int(len(raw) * where)] ^= 0x10
    path.write_bytes(bytes(raw))
    with pytest.raises(CorruptStoreError, match=path.name):
        reopen(store)


@pytest.mark.parametrize("keep", [0, 8, 100, -1])
def test_truncated_segment(store, keep):
    path = segment_files(store)[1]
    raw = path.read_bytes()
    path.write_bytes(raw[:keep] if keep >= 0 else raw[:-1])
    with pytest.raises(CorruptStoreError, match=path.name):
        reopen(store)


def test_missing_segment(store):
    path = segment_files(store)[0]
    path.unlink()
    with pytest.raises(CorruptStoreError, match="missing"):
        reopen(store)


@pytest.mark.parametrize("damage", ["flip", "truncate", "empty", "garbage", "future"])
def test_damaged_manifest_older_versions_stay_readable(store, damage):
    path = latest_manifest(store)
    version = int(path.stem)
    raw = path.read_bytes()
    if damage == "flip":
        i = raw.index(b'"rows"') + 9
        raw = raw[:i] + bytes([raw[i] ^ 0x01]) + raw[i + 1:]
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "empty":
        raw = b""
    elif damage == "garbage":
        raw = b"\x00\xff" * 100
    else:
        body = json.loads(raw)
        body["format_version"] = 999
        raw = json.dumps(body).encode()
    path.write_bytes(raw)
    with pytest.raises(CorruptStoreError, match=path.name if damage != "future" else "format"):
        reopen(store)
    old = vecstore.connect(store).open_table("t", version=version - 1)
    assert len(old) == 300


def test_whole_file_replaced_by_another_segment(store):
    a, b = segment_files(store)
    shutil.copyfile(a, b)
    with pytest.raises(CorruptStoreError):
        reopen(store)


def test_intact_store_reads_back(store, rng):
    tbl = reopen(store)
    assert len(tbl) == 350
    q = rng.normal(size=16)
    assert len(tbl.search(q).limit(10).to_list()) == 10
    assert np.isfinite(tbl.search(q).limit(10).hits().scores).all()
