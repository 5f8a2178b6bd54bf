"""Version cleanup: old versions and the files only they used go; nothing a kept version, a
checked-out reader (in this process or another) or an index build in progress needs ever does;
what crashes leave behind is removed; readers that held a removed version move on.

The crash safety of cleanup itself is in test_crash.py (cleanup is one of its write paths)."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import vecstore
from vecstore import InvalidArgumentError, NotFoundError, ReadOnlyError
from vecstore.storage.manifest import read_manifest

from .crash_harness import orphans

DIM = 8


def rows(n: int, start: int = 0, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + start)
    return [{"id": f"r{i}", "vector": rng.normal(size=DIM).round(3).tolist(), "n": i,
             "text": f"word{i % 7} common text{i % 3}"} for i in range(start, start + n)]


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def history(tbl: vecstore.Table) -> None:
    """Writes of every kind: merging adds, upserts, deletes, an index, a compaction, keywords."""
    for i in range(12):
        tbl.add(rows(5, 5 * i))
    tbl.upsert(rows(10, 0, seed=1))
    tbl.delete("n >= ? AND n < ?", 20, 25)
    tbl.create_index("flat")
    tbl.add(rows(5, 100))
    tbl.set_keyword_columns(["text"], language="none")
    tbl.compact()
    tbl.delete(ids=["r30", "r31"])
    tbl.add(rows(3, 200))


def content(tbl: vecstore.Table) -> dict[str, Any]:
    return {r["id"]: (r["n"], tuple(np.round(r["vector"], 3))) for r in
            tbl.to_arrow(with_vectors=True).to_pylist()}


def test_cleanup_removes_old_versions_and_every_file_only_they_used(tmp_db):
    tbl = tmp_db.create_table("t", dim=DIM)
    history(tbl)
    before, versions, size = content(tbl), tbl.versions(), du(tbl.path)
    q = np.ones(DIM)
    exact = tbl.search(q).exact().limit(10).to_list()
    keyword = tbl.search("word3", mode="keyword").limit(5).to_list()
    report = tbl.cleanup(older_than=0)
    assert report.versions_removed == len(versions) - 1 and report.versions_kept == 1
    assert tbl.versions() == [versions[-1]] == [report.newest]
    assert report.files_removed > 0 and 0 < size - du(tbl.path) <= report.bytes_freed
    assert orphans(tbl.path) == []
    assert content(tbl) == before
    assert tbl.search(q).exact().limit(10).to_list() == exact
    assert tbl.search("word3", mode="keyword").limit(5).to_list() == keyword
    fresh = vecstore.connect(tmp_db.path).open_table("t")  # a new process's view
    assert content(fresh) == before and fresh.version == versions[-1]
    with pytest.raises(NotFoundError, match="removed by cleanup"):
        tbl.checkout(versions[0])
    with pytest.raises(NotFoundError, match="removed by cleanup"):
        tmp_db.open_table("t", version=versions[-2])
    with pytest.raises(NotFoundError, match="no version 999"):
        tbl.checkout(999)
    assert tbl.cleanup(older_than=0).files_removed == 0  # nothing left to do
    tbl.add(rows(2, 300))  # and the table goes on
    assert len(tbl) == len(before) + 2 and tbl.versions() == [versions[-1], versions[-1] + 1]


def test_keep_last_and_older_than(tmp_db, monkeypatch):
    import vecstore.storage.manifest as manifest_module

    clock = [1_000_000.0]
    monkeypatch.setattr(manifest_module, "time", SimpleNamespace(time=lambda: clock[0]))
    tbl = tmp_db.create_table("t", dim=DIM)
    for i in range(10):  # versions 2..11, committed an hour apart
        clock[0] += 3600
        tbl.add(rows(1, i))
    monkeypatch.undo()
    now = clock[0] + 1800  # version 11 is half an hour old, 10 was superseded then
    import vecstore.storage.cleanup as cleanup_module

    monkeypatch.setattr(cleanup_module, "time", SimpleNamespace(time=lambda: now))
    # 9 was superseded (by 10) 1.5 h ago, 8 (by 9) 2.5 h ago
    assert tbl.cleanup(older_than=2 * 3600).versions_removed == 8  # 9, 10 and 11 stay
    assert tbl.versions() == [9, 10, 11]
    assert tbl.cleanup(older_than=3600 * 10, keep_last=2).versions_removed == 0
    assert tbl.cleanup(older_than=0, keep_last=2).versions_removed == 1
    assert tbl.versions() == [10, 11] and len(tbl) == 10
    # a default cleanup keeps a week; optimize() runs it (and only it) by default
    assert tbl.cleanup().versions_removed == 0
    assert tbl.optimize() and tbl.versions()[:3] == [10, 11, 12]
    monkeypatch.setattr(cleanup_module, "time", SimpleNamespace(time=lambda: time.time() + 8 * 86400))
    tbl.add(rows(1, 50))
    tbl.optimize()
    assert tbl.versions() == [tbl.version] and len(tbl) == 11 and orphans(tbl.path) == []


def test_bad_arguments_are_refused(tmp_db):
    from datetime import timedelta

    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(3))
    for bad in (-1, float("nan"), float("inf"), "7d", None, True, timedelta(seconds=-1)):
        with pytest.raises(InvalidArgumentError, match="older_than"):
            tbl.cleanup(older_than=bad)
    for bad in (0, -2, 1.5, True, "1"):
        with pytest.raises(InvalidArgumentError, match="keep_last"):
            tbl.cleanup(keep_last=bad)
    with pytest.raises(InvalidArgumentError, match="cleanup_older_than"):
        tbl.optimize(cleanup_older_than=-5)
    assert tbl.versions() == [1, 2]
    with pytest.raises(ReadOnlyError):
        tbl.checkout(1).cleanup(older_than=0)
    assert tbl.cleanup(timedelta(0)).versions_removed == 1


def test_crash_leftovers_are_removed_and_nothing_else(tmp_db):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(20))
    tbl.create_index("flat")
    t = tbl.path
    hex_ = lambda: uuid.uuid4().hex  # noqa: E731
    planted = [f"data/{hex_()}.arrow", f"data/.tmp-{hex_()}-{hex_()}.arrow",
               f"_versions/.tmp-{hex_()}-{99:020d}.json", f"indexes/{hex_()}/hnsw.bin",
               f"indexes/{hex_()}/.hnsw.bin.0a1b2c3d.tmp"]
    index_dir = read_manifest(t, tbl.version).indexes[0].path
    planted.append(f"{index_dir}/.flat.npy.0a1b2c3d.tmp")  # a temporary file in a kept index
    for rel in planted:
        (t / rel).parent.mkdir(parents=True, exist_ok=True)
        (t / rel).write_bytes(b"x" * 100)
    foreign = ["data/notes.txt", "indexes/README", "data/ABC.arrow"]  # names vecstore never writes
    for rel in foreign:
        (t / rel).write_text("mine")
    (t / "_leases").mkdir(exist_ok=True)
    (t / "_leases" / f"{hex_()}.lease").write_text('{"paths": []}')  # its holder died: no flock
    old = time.time() - 3600
    for rel in planted:
        os.utime(t / rel, (old, old))
    os.utime(t / "indexes" / planted[3].split("/")[1], (old, old))
    # recent leftovers may be a write in progress: kept unless older_than allows
    report = tbl.cleanup(older_than=600)
    assert report.kept_recent == 1 and report.files_removed == 5  # the newest leftover stays
    report = tbl.cleanup(older_than=0)
    assert report.files_removed == 1
    assert orphans(t) == sorted(foreign)
    assert all((t / rel).read_text() == "mine" for rel in foreign)
    assert len(tbl) == 20 and len(tbl.search(np.ones(DIM)).limit(3).to_list()) == 3


def test_an_unpinned_reader_of_a_removed_version_moves_on(tmp_db):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(10))
    idle = tmp_db.open_table("t")
    assert idle.version == 2 and idle.search("word1", mode="keyword").limit(3).to_list()
    for i in range(5):
        tbl.add(rows(2, 100 + 2 * i))
    tbl.cleanup(older_than=0)
    assert tbl.versions() == [7]
    # its version (and the ones after it) are gone: it must find the newest, not stay behind
    assert len(idle) == 20 and idle.version == 7
    assert len(idle.search("word1", mode="keyword").limit(30).to_list()) == 3
    tbl.add(rows(1, 500))
    assert len(idle) == 21


def test_a_checked_out_version_keeps_its_files_while_held(tmp_db):
    tbl = tmp_db.create_table("t", dim=DIM)
    history(tbl)
    v = tbl.versions()[len(tbl.versions()) // 2]
    old = tbl.checkout(v)
    want = content(old)
    tbl.compact()
    tbl.add(rows(4, 400))
    report = tbl.cleanup(older_than=0)
    assert report.kept_held > 0 and tbl.versions() == [tbl.version]
    # the view works: every row, exact and keyword search (postings read now, after cleanup)
    assert content(old) == want and old.version == v
    assert len(old.search(np.ones(DIM)).exact().limit(5).to_list()) == 5
    assert old.search("common", mode="keyword").limit(3).to_list()
    with pytest.raises(NotFoundError, match="removed by cleanup"):
        tbl.checkout(v)  # a new checkout of it: gone
    del old
    report = tbl.cleanup(older_than=0)
    assert report.files_removed == report.kept_held or report.files_removed > 0
    assert orphans(tbl.path) == []


def test_an_index_build_in_progress_keeps_its_directory(tmp_db, monkeypatch):
    import vecstore.index.flat as flat

    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(30))
    real_save = flat.FlatIndex.save
    reports = []

    def save_then_clean(self: Any, directory: Path) -> None:
        real_save(self, directory)  # the files are written, no manifest names them yet
        other = vecstore.connect(tmp_db.path).open_table("t")
        reports.append(other.cleanup(older_than=0))

    monkeypatch.setattr(flat.FlatIndex, "save", save_then_clean)
    tbl.create_index("flat")
    assert reports[0].kept_held == 1 and reports[0].files_removed == 0
    assert tbl.list_indexes()[0]["kind"] == "flat" and orphans(tbl.path) == []
    again = vecstore.connect(tmp_db.path).open_table("t")
    assert again.search(np.ones(DIM)).limit(3).explain().index == "flat"


def _hold_checkout(store: str, version: int, ready: Any, stop: Any, out: Any) -> None:
    """A reader in another process: checks out ``version`` and reads it again and again while
    the parent writes and cleans up, until told to stop; reports what went wrong."""
    tbl = vecstore.connect(store).open_table("t").checkout(version)
    want = sorted(tbl.to_arrow(["id"]).column("id").to_pylist())
    q = np.ones(DIM)
    ready.set()
    problems: list[str] = []
    reads = 0
    while not stop.is_set() or reads < 3:
        try:
            assert sorted(tbl.to_arrow(["id"]).column("id").to_pylist()) == want
            hits = tbl.search(q).exact().limit(5).to_list()
            assert len(hits) == 5 and all(h["id"] in want for h in hits)
            kw = tbl.search("common", mode="keyword").where("n >= ?", 0).limit(5).to_list()
            assert kw and all(h["id"] in want for h in kw)
            assert tbl.count("n >= 0") == len(want)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            problems.append(f"{type(exc).__name__}: {exc}")
            break
        reads += 1
    out.put((reads, problems))


def test_cleanup_never_breaks_a_reader_pinned_in_another_process(tmp_path):
    store = tmp_path / "store"
    tbl = vecstore.connect(store).create_table("t", dim=DIM)
    history(tbl)
    pinned = tbl.versions()[len(tbl.versions()) // 2]  # before the compaction: its own files
    ctx = mp.get_context("forkserver")
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_hold_checkout, args=(str(store), pinned, ready, stop, out))
    reader.start()
    try:
        assert ready.wait(120)
        for i in range(6):
            tbl.add(rows(3, 1000 + 3 * i))
            tbl.delete(ids=[f"r{1000 + 3 * i}"])
            if i % 2:
                tbl.compact()
            report = tbl.cleanup(older_than=0)
            assert report.kept_held > 0 and tbl.versions() == [tbl.version]
        stop.set()
        reads, problems = out.get(timeout=120)
    finally:
        stop.set()
        reader.join(60)
    assert problems == [] and reads >= 3
    assert reader.exitcode == 0
    tbl.cleanup(older_than=0)  # the reader is gone: its files go too
    assert orphans(tbl.path) == []


def test_cleanup_while_threads_write_and_read(tmp_db):
    """Readers in this process keep answering while a writer commits and cleanup runs with
    older_than=0 (a read whose version is removed under it runs again on the newest)."""
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(10))
    stop = threading.Event()
    errors: list[BaseException] = []

    def guarded(fn: Any) -> Any:
        def run() -> None:
            try:
                fn()
            except BaseException as exc:  # noqa: BLE001 - fails the test below
                errors.append(exc)
                stop.set()
        return run

    @guarded
    def writer() -> None:
        for i in range(40):
            tbl.upsert(rows(3, 3 * (i % 7), seed=i))
            tbl.add(rows(1, 1000 + i))
        stop.set()

    @guarded
    def cleaner() -> None:
        other = vecstore.connect(tmp_db.path).open_table("t")
        while not stop.is_set():
            other.cleanup(older_than=0)

    @guarded
    def reader() -> None:
        r = vecstore.connect(tmp_db.path).open_table("t")
        while not stop.is_set():
            assert len(r.search(np.ones(DIM)).where("n >= 0").limit(5).to_list()) == 5
            assert r.search("common", mode="keyword").limit(3).to_list()
            assert r.count("n >= 0") >= 10

    threads = [threading.Thread(target=f) for f in (writer, cleaner, reader, reader)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(300)
    assert errors == []
    tbl.cleanup(older_than=0)
    assert len(tbl) == 21 + 40 and orphans(tbl.path) == []  # r0..r20 upserted, 40 added


def test_disk_after_optimize_and_cleanup_is_a_fresh_stores(tmp_path):
    tbl = vecstore.connect(tmp_path / "a").create_table("t", dim=64)
    rng = np.random.default_rng(3)
    data = [{"id": f"r{i}", "vector": rng.normal(size=64), "text": f"w{i % 13} x", "n": i}
            for i in range(400)]
    for i in range(0, 400, 4):
        tbl.add(data[i:i + 4])
    tbl.delete("n % 10 = 0")
    tbl.upsert(data[1:40:3])
    tbl.create_index("flat")
    grown = du(tbl.path)
    tbl.optimize(cleanup_older_than=0)
    fresh = vecstore.connect(tmp_path / "b").create_table("t", dim=64, data=tbl.to_arrow(with_vectors=True))
    fresh.create_index("flat")
    after, base = du(tbl.path), du(fresh.path)
    print(f"\n{grown:,} bytes after 100 adds, {after:,} after optimize+cleanup, fresh store {base:,}")
    assert abs(after - base) <= 0.1 * base
    assert orphans(tbl.path) == []


def test_cleanup_from_the_command_line(tmp_path):
    import json

    from click.testing import CliRunner

    from vecstore.cli import cli

    db = vecstore.connect(tmp_path / "store")
    for name in ("a", "b"):
        t = db.create_table(name, dim=DIM)
        for i in range(3):
            t.add(rows(2, 2 * i))
    runner = CliRunner()
    r = runner.invoke(cli, ["cleanup", str(tmp_path / "store"), "--older-than", "1h"])
    assert r.exit_code == 0, r.output
    assert [json.loads(x)["versions_removed"] for x in r.output.splitlines()] == [0, 0]
    r = runner.invoke(cli, ["cleanup", str(tmp_path / "store"), "a", "--older-than", "0"])
    assert r.exit_code == 0 and json.loads(r.output)["versions_removed"] == 3
    assert db.open_table("a").versions() == [4] and db.open_table("b").versions() == [1, 2, 3, 4]
    r = runner.invoke(cli, ["cleanup", str(tmp_path / "store"), "--older-than", "soon"])
    assert r.exit_code == 1 and "not a duration" in r.output


def test_cleanup_through_the_api_embedded_and_remote(any_db):
    tbl = any_db.create_table("t", dim=DIM)
    for i in range(4):
        tbl.add(rows(2, 2 * i))
    report = tbl.cleanup(older_than=0, keep_last=2)
    assert (report.versions_removed, report.versions_kept, report.newest) == (3, 2, 5)
    assert len(tbl) == 8
    with pytest.raises(InvalidArgumentError):
        tbl.cleanup(keep_last=0)


def test_a_stage_in_use_is_kept_and_a_dead_writers_stage_removed(tmp_db):
    """A staged write (the Ray sink's) leases its stage: cleanup keeps it while the writer
    lives, and removes it once no live process holds it (the kill test in test_crash.py kills
    the writer itself)."""
    from vecstore.storage import writer

    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": "a", "vector": [1, 0]}])
    stage = writer.open_stage(tbl.path)
    (writer.stage_dir(tbl.path, stage) / "data").mkdir()
    tbl.cleanup(older_than=0)
    assert writer.stage_dir(tbl.path, stage).is_dir()
    writer._STAGE_LEASES.pop((str(tbl.path), stage)).release()  # as if its process had died
    report = tbl.cleanup(older_than=0)
    assert not writer.stage_dir(tbl.path, stage).exists() and report.files_removed >= 1
    assert len(tbl) == 1
