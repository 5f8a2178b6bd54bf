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


def flip(path, where, mask):
    """Flip bits of one byte in place, as a disk would (no truncation: a file truncated under
    a live memory map is SIGBUS territory, which is not what these tests are about)."""
    with open(path, "r+b") as fh:
        size = fh.seek(0, 2)
        at = min(int(size * where), size - 1)
        fh.seek(at)
        byte = fh.read(1)[0]
        fh.seek(at)
        fh.write(bytes([byte ^ mask]))


def reopen(store):
    segments._verified.clear()
    return vecstore.connect(store).open_table("t")


def reopen_and_use(store):
    """Open as a new process would and read every row: sizes and headers are checked at open,
    checksums before the first use of a file's bytes."""
    tbl = reopen(store)
    tbl.search(np.ones(16)).limit(5).to_list()
    return tbl


@pytest.mark.parametrize("where", [0.0, 0.3, 0.5, 0.9, 0.999])
def test_bit_flip_in_a_segment(store, where):
    path = segment_files(store)[0]
    flip(path, where, 0x10)
    with pytest.raises(CorruptStoreError, match=path.name):
        reopen_and_use(store)


@pytest.mark.parametrize("where", [0.0, 0.3, 0.6])  # not the footer: that fails the open
def test_bit_flip_is_found_by_verify_and_check(store, where):
    """The open stays cheap, yet verify() and `vecstore check` read everything and name the
    file, and the table refuses to answer from it."""
    import subprocess
    import sys

    path = segment_files(store)[1]
    flip(path, where, 0x01)
    tbl = reopen(store)
    with pytest.raises(CorruptStoreError, match=path.name):
        tbl.verify()
    with pytest.raises(CorruptStoreError, match=path.name):
        tbl.to_arrow()
    with pytest.raises(CorruptStoreError, match=path.name):  # every use, not just the first
        tbl.search(np.ones(16)).limit(3).to_list()
    run = subprocess.run([sys.executable, "-m", "vecstore", "check", str(store), "t"],
                         capture_output=True, text=True)
    assert run.returncode == 1
    assert path.name in run.stdout and "damaged" in run.stderr


def test_verify_rereads_files_checked_before(store):
    """A file damaged after this process checked it is found by verify(), which never trusts
    the per-process cache."""
    tbl = reopen_and_use(store)
    assert tbl.verify()["files"] == 2
    path = segment_files(store)[0]
    flip(path, 0.5, 0x04)
    with pytest.raises(CorruptStoreError, match=path.name):
        tbl.verify()


def test_damaged_index_file_is_never_used_and_is_rebuilt(store, rng):
    """The index is derived data: a damaged index file is never searched (its checksum fails
    before use); queries scan instead, with a warning naming the file; verify() fails on it;
    optimize() rebuilds it."""
    tbl = reopen(store)
    tbl.create_index("hnsw")
    data = json.loads(latest_manifest(store).read_text())
    index_dir = store / "t" / data["indexes"][0]["path"]
    path = next(p for p in index_dir.iterdir() if not p.name.endswith(".json"))
    flip(path, 0.5, 0x20)
    fresh = reopen(store)
    q = rng.normal(size=16)
    want = fresh.search(q).limit(5).exact().hits().ids  # exact search never loads the index
    with pytest.warns(RuntimeWarning, match=path.name):
        got = fresh.search(q).limit(5).to_list()
    assert [h["id"] for h in got] == list(want)
    assert [h["id"] for h in fresh.search(q).limit(5).where("n >= ?", 0).to_list()] == list(want)
    with pytest.raises(CorruptStoreError, match=path.name):
        fresh.verify()
    assert fresh.optimize()  # rebuilds the index from the rows
    assert fresh.verify()["files"] >= 2  # a segment and the new index file, all checked
    assert fresh.list_indexes()[0]["path"] != data["indexes"][0]["path"]


@pytest.mark.parametrize("keep", [0, 8, 100, -1])
def test_truncated_segment(store, keep):
    path = segment_files(store)[1]
    raw = path.read_bytes()
    path.write_bytes(raw[:keep] if keep >= 0 else raw[:-1])
    with pytest.raises(CorruptStoreError, match=path.name):
        reopen(store)  # sizes are checked at open


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
        reopen_and_use(store)


def test_intact_store_reads_back(store, rng):
    tbl = reopen(store)
    assert len(tbl) == 350
    q = rng.normal(size=16)
    assert len(tbl.search(q).limit(10).to_list()) == 10
    assert np.isfinite(tbl.search(q).limit(10).hits().scores).all()
