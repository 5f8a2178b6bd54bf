"""The store's own files and commits cannot be turned against it (issue 10).

An attacker who can write into the store directory (or a crash, or a second process) tries to
make vecstore read or write outside the table, resurrect a dropped table, mix two tables'
settings, or roll a table back silently. Each test goes through the public API; the damage is
what a person or a crash could leave on disk.

Children that race the parent are started from a "forkserver" (as in test_concurrency.py);
children that are SIGKILLed are forked (as in test_crash.py).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time
import traceback
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import vecstore
from vecstore import AlreadyExistsError, CorruptStoreError, NotFoundError
from vecstore.storage.locks import write_lock

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork and flock")

DIM = 4


def _ctx() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["vecstore", __name__])
    return ctx


def rows(n: int, start: int = 0, dim: int = DIM, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed + start)
    return [{"id": f"r{i}", "vector": rng.normal(size=dim) + 0.1, "n": i}
            for i in range(start, start + n)]


def leftovers(store: Path) -> list[str]:
    """Hidden entries a drop or a create leaves while it runs (or after a crash)."""
    return sorted(p.name for p in store.iterdir() if p.name.startswith("."))


def rewrite_manifest(path: Path, edit: Any) -> None:
    """Change a manifest and recompute its checksum, as an attacker who read the format would."""
    body = json.loads(path.read_text())
    body.pop("checksum")
    edit(body)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    body["checksum"] = f"crc32:{zlib.crc32(canonical):08x}"
    path.write_text(json.dumps(body, indent=1, sort_keys=True))


def newest_manifest(table_dir: Path) -> Path:
    return sorted((table_dir / "_versions").glob("*.json"))[-1]


# -- item 2: drop_table against writers and readers ------------------------------------------------
def _write_until_dropped(store: str, started: Any, dropped: Any, out: Any) -> None:
    """Add rows until a write fails; count writes *started* after the parent's drop returned
    (each of them must fail)."""
    try:
        tbl = vecstore.connect(store, lock_timeout=60).open_table("t")
        n = acked_after_drop = 0
        error = ""
        while n < 100_000 and acked_after_drop < 3:
            after = dropped.is_set()
            try:
                tbl.add([{"id": f"w{n}", "vector": [1.0, 2.0, 3.0, float(n % 7 + 1)]}])
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                break
            n += 1
            if n == 3:
                started.set()
            acked_after_drop += after
        out.put((n, acked_after_drop, error))
    except Exception:
        started.set()
        out.put((-1, -1, traceback.format_exc()))


def check_dropped(store: Path) -> None:
    db = vecstore.connect(store)  # also removes what an interrupted drop left
    assert "t" not in db.table_names()
    assert not (store / "t").exists(), f"the dropped table came back: {sorted(os.listdir(store / 't'))}"
    with pytest.raises(NotFoundError):
        db.open_table("t")
    assert leftovers(store) == []


@pytest.mark.parametrize("trial", range(4))
def test_drop_table_while_another_process_writes(tmp_path, trial):
    store = tmp_path / "store"
    vecstore.connect(store).create_table("t", dim=DIM)
    ctx = _ctx()
    started, dropped, out = ctx.Event(), ctx.Event(), ctx.Queue()
    writer = ctx.Process(target=_write_until_dropped, args=(str(store), started, dropped, out))
    writer.start()
    try:
        assert started.wait(60)
        time.sleep(0.005 * trial)  # land the drop at different points of the writer's commits
        vecstore.connect(store).drop_table("t")
        dropped.set()
        n, acked_after_drop, error = out.get(timeout=120)
    finally:
        writer.join(60)
    assert n >= 3, error
    assert acked_after_drop == 0, f"{acked_after_drop} writes were acknowledged after the drop"
    assert error.startswith("NotFoundError") and "dropped" in error, error
    check_dropped(store)


def _busy_writer(store: str, started: Any, stop: Any) -> None:
    tbl = vecstore.connect(store, lock_timeout=120).open_table("t")
    n = 0
    while not stop.is_set():
        tbl.add([{"id": f"busy{n}", "vector": [1.0, 2.0, 3.0, 4.0]}])
        n += 1
        if n == 3:
            started.set()


def test_a_waiting_writer_is_not_starved_by_a_busy_one(tmp_path):
    """flock is not fair: without the queue in front of the lock, a writer committing in a loop
    kept retaking the lock before a polling waiter (5 adds against a busy writer waited up to
    1.1-32 s; with the queue 0.1-0.9 s), and a drop_table once timed out after 30 s. This test
    fails only when a wait passes 10 s, so it catches starvation often, not always."""
    store = tmp_path / "store"
    vecstore.connect(store).create_table("t", dim=DIM)
    ctx = _ctx()
    started, stop = ctx.Event(), ctx.Event()
    busy = ctx.Process(target=_busy_writer, args=(str(store), started, stop))
    busy.start()
    try:
        assert started.wait(60)
        # with the queue a waiter waits for at most the commit in progress (tens of ms); 10 s
        # is a margin for a loaded machine, not a measurement
        tbl = vecstore.connect(store, lock_timeout=10).open_table("t")
        for i in range(20):
            tbl.add([{"id": f"mine{i}", "vector": [4.0, 3.0, 2.0, 1.0]}])
        assert tbl.count("id LIKE 'mine%'") == 20
    finally:
        stop.set()
        busy.join(60)
    assert busy.exitcode == 0


def test_drop_table_while_writer_threads_write(tmp_path):
    store = tmp_path / "store"
    db = vecstore.connect(store)
    db.create_table("t", dim=DIM)
    dropped = threading.Event()
    started = [threading.Event(), threading.Event()]
    results: list[tuple[int, int, str]] = []

    def write(w: int) -> None:
        tbl = vecstore.connect(store).open_table("t")
        n = after_drop = 0
        while after_drop < 3:
            if n == 3:
                started[w].set()
            after = dropped.is_set()
            try:
                tbl.add([{"id": f"{w}-{n}", "vector": [1.0, 2.0, 3.0, 4.0]}])
            except Exception as exc:
                results.append((n, after_drop, f"{type(exc).__name__}: {exc}"))
                return
            n += 1
            after_drop += after
        results.append((n, after_drop, ""))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    assert all(e.wait(60) for e in started)
    db.drop_table("t")
    dropped.set()
    for t in threads:
        t.join(60)
    assert len(results) == 2
    for n, after_drop, error in results:
        assert after_drop == 0 and error.startswith("NotFoundError"), (n, after_drop, error)
    check_dropped(store)


def _hold_lock(table_dir: str, locked: Any, release: Any) -> None:
    with write_lock(Path(table_dir), timeout=30):
        locked.set()
        release.wait(60)


@pytest.mark.parametrize("trial", range(3))
def test_a_writer_waiting_for_the_lock_of_a_dropped_table_does_not_write(tmp_path, trial):
    """The writer waits on the flock of ``_lock`` while the table is dropped (its directory, lock
    file included, renamed away): on acquiring it, it must see that its table is gone."""
    store = tmp_path / "store"
    db = vecstore.connect(store, lock_timeout=60)
    tbl = db.create_table("t", dim=DIM)
    tbl.add(rows(5))
    ctx = _ctx()
    locked, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tbl.path), locked, release))
    holder.start()
    outcome: list[str] = []
    try:
        assert locked.wait(60)

        def add() -> None:
            try:
                tbl.add(rows(1, start=100))
                outcome.append("ok")
            except Exception as exc:
                outcome.append(f"{type(exc).__name__}: {exc}")

        writer = threading.Thread(target=add)
        writer.start()
        dropper = threading.Thread(target=db.drop_table, args=("t",))
        time.sleep(0.1)  # the writer is waiting on the flock now
        dropper.start()
        time.sleep(0.05 * trial)
        release.set()
        writer.join(60)
        dropper.join(60)
    finally:
        release.set()
        holder.join(60)
    assert outcome and (outcome[0] == "ok" or outcome[0].startswith("NotFoundError")), outcome
    check_dropped(store)
    with pytest.raises(NotFoundError, match="dropped"):
        tbl.add(rows(1, start=200))


def test_a_reader_of_a_dropped_table_is_told_so(tmp_db):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(10))
    old = tbl.checkout(tbl.version)
    tmp_db.drop_table("t")
    for op in (len, lambda t: t.count("n > 1"), lambda t: t.search([1, 2, 3, 4]).to_list(),
               lambda t: t.to_arrow(), lambda t: t.versions(), lambda t: t.add(rows(1, 50))):
        with pytest.raises(NotFoundError, match="dropped"):
            op(tbl)
    with pytest.raises(NotFoundError, match="dropped"):
        len(old)


def test_a_handle_of_a_dropped_table_does_not_write_into_its_successor(tmp_db):
    tbl = tmp_db.create_table("t", dim=DIM)
    for i in range(3):
        tbl.add(rows(2, start=2 * i))
    tmp_db.drop_table("t")
    new = tmp_db.create_table("t", dim=DIM)
    for i in range(5):
        new.add(rows(1, start=100 + i))
    with pytest.raises(NotFoundError, match="dropped"):
        tbl.add(rows(1, start=500))
    with pytest.raises(NotFoundError, match="dropped"):
        len(tbl)
    assert len(new) == 5 and new.version == 6


def _drop(store: str) -> None:
    vecstore.connect(store).drop_table("t")


def test_sigkill_during_drop_leaves_the_table_whole_or_gone(tmp_path):
    """A drop killed between its rename and the removal of the files leaves a hidden directory
    that is never listed as a table and is removed at the next connect."""
    rng = np.random.default_rng(3)
    ctx = mp.get_context("fork")
    outcomes = {"whole": 0, "gone": 0}
    for trial in range(16):
        store = tmp_path / f"s{trial}"
        tbl = vecstore.connect(store).create_table("t", dim=DIM)
        for i in range(20):
            tbl.add(rows(5, start=5 * i))
        p = ctx.Process(target=_drop, args=(str(store),))
        p.start()
        time.sleep(float(rng.uniform(0.0, 0.03)))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        db = vecstore.connect(store)
        assert leftovers(store) == []
        if "t" in db.table_names():
            assert len(db.open_table("t")) == 100
            outcomes["whole"] += 1
        else:
            check_dropped(store)
            outcomes["gone"] += 1
    print(outcomes)


# -- item 4: links are never followed out of the store ----------------------------------------------
@pytest.fixture
def table(tmp_path):
    tbl = vecstore.connect(tmp_path / "store").create_table("t", dim=DIM)
    tbl.add(rows(20))
    tbl.add(rows(5, start=20))
    return tbl


def test_a_lock_owner_symlink_is_not_written_through(table, tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("do not overwrite\n")
    owner = table.path / "_lock.owner"
    owner.unlink()
    owner.symlink_to(precious)
    with pytest.raises(CorruptStoreError, match="_lock.owner"):
        table.add(rows(1, start=100))
    assert precious.read_text() == "do not overwrite\n"
    assert len(table) == 25


def test_a_lock_symlink_creates_nothing_outside(table, tmp_path):
    lock = table.path / "_lock"
    lock.unlink()
    outside = tmp_path / "created-by-vecstore"
    lock.symlink_to(outside)
    with pytest.raises(CorruptStoreError, match="_lock"):
        table.add(rows(1, start=100))
    assert not outside.exists()


def _point_at_copy(path: Path, elsewhere: Path) -> None:
    """Replace ``path`` by a symlink to an identical copy outside the store (checksums pass)."""
    elsewhere.parent.mkdir(parents=True, exist_ok=True)
    os.replace(path, elsewhere)
    path.symlink_to(elsewhere, target_is_directory=elsewhere.is_dir())


@pytest.mark.parametrize("what", ["table directory", "_versions", "manifest", "data directory",
                                  "data file"])
def test_links_in_a_table_are_refused(table, tmp_path, what):
    store = table.path.parent
    target = {
        "table directory": table.path,
        "_versions": table.path / "_versions",
        "manifest": newest_manifest(table.path),
        "data directory": table.path / "data",
        "data file": next((table.path / "data").iterdir()),
    }[what]
    _point_at_copy(target, tmp_path / "elsewhere" / target.name)
    with pytest.raises(CorruptStoreError, match="link") as err:
        vecstore.connect(store).open_table("t").to_arrow()
    assert target.name in str(err.value)
    if what == "table directory":
        assert vecstore.connect(store).table_names() == []


@pytest.mark.parametrize("what", ["index directory", "index file", "sidecar"])
def test_links_to_index_files_are_refused(table, tmp_path, what):
    table.create_index("flat")
    index_dir = table.path / table.list_indexes()[0]["path"]
    target = {
        "index directory": index_dir,
        "index file": next(p for p in index_dir.iterdir() if not p.name.endswith(".json")),
        "sidecar": index_dir / "flat.json",
    }[what]
    _point_at_copy(target, tmp_path / "elsewhere" / target.name)
    tbl = vecstore.connect(table.path.parent).open_table("t")
    # the link is never followed: the index is refused (it is derived data, so the query scans
    # and says so) and verify() reports it
    want = tbl.search([1, 2, 3, 4]).limit(3).exact().hits().ids
    with pytest.warns(RuntimeWarning, match="link") as warned:
        got = tbl.search([1, 2, 3, 4]).limit(3).to_list()
    assert target.name in str(warned[0].message)
    assert [h["id"] for h in got] == list(want)
    with pytest.raises(CorruptStoreError, match="link") as err:
        tbl.verify()
    assert target.name in str(err.value)


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
def test_an_open_table_holds_no_descriptor_per_segment(tmp_path):
    """Segments are checked through a descriptor and mapped from it; the map must not keep the
    descriptor (Python's mmap does: one per segment, until the process ran out of them)."""
    tbl = vecstore.connect(tmp_path / "s").create_table("t", dim=DIM)
    for i in range(60):
        tbl.add(rows(1, start=i))
    before = len(os.listdir("/proc/self/fd"))
    other = vecstore.connect(tmp_path / "s").open_table("t")
    assert len(other) == 60
    assert len(os.listdir("/proc/self/fd")) - before < 10


# -- item 5: manifest paths stay in the table --------------------------------------------------------
def _set_segment_path(path: str) -> Any:
    def edit(body: dict[str, Any]) -> None:
        body["segments"][0]["data"]["path"] = path
    return edit


@pytest.mark.parametrize("kind", ["parent", "absolute", "dot-dot inside", "subdirectory",
                                  "not a segment name", "wrong directory"])
def test_manifest_segment_paths_outside_the_table_are_refused(table, tmp_path, kind):
    manifest = newest_manifest(table.path)
    real = table.path / json.loads(manifest.read_text())["segments"][0]["data"]["path"]
    copy = tmp_path / "elsewhere" / real.name
    copy.parent.mkdir()
    copy.write_bytes(real.read_bytes())  # same bytes: size and CRC would pass
    (table.path / "data" / "sub").mkdir()
    (table.path / "data" / "sub" / real.name).write_bytes(real.read_bytes())
    (table.path / "_versions" / real.name).write_bytes(real.read_bytes())
    bad = {
        "parent": f"../../elsewhere/{real.name}",
        "absolute": str(copy),
        "dot-dot inside": f"data/../data/{real.name}",
        "subdirectory": f"data/sub/{real.name}",
        "not a segment name": "data/segment.arrow",
        "wrong directory": f"_versions/{real.name}",
    }[kind]
    rewrite_manifest(manifest, _set_segment_path(bad))
    with pytest.raises(CorruptStoreError) as err:
        vecstore.connect(table.path.parent).open_table("t")
    assert manifest.name in str(err.value) and bad in str(err.value)


def _open_dev_zero_manifest(store: str, out: Any) -> None:
    try:
        vecstore.connect(store).open_table("t")
        out.put("opened")
    except Exception as exc:
        out.put(f"{type(exc).__name__}: {exc}")


def test_a_manifest_pointing_at_dev_zero_is_refused_not_read_forever(table):
    manifest = newest_manifest(table.path)

    def edit(body: dict[str, Any]) -> None:
        body["segments"][0]["data"] = {"path": "/dev/zero", "bytes": 0, "crc32": 0}

    rewrite_manifest(manifest, edit)
    ctx = _ctx()
    out = ctx.Queue()
    p = ctx.Process(target=_open_dev_zero_manifest, args=(str(table.path.parent), out))
    p.start()
    p.join(60)
    if p.is_alive():
        p.kill()
        p.join()
        pytest.fail("opening the table hangs reading /dev/zero")
    result = out.get(timeout=10)
    assert result.startswith("CorruptStoreError") and "/dev/zero" in result, result


def test_a_segment_path_naming_a_directory_is_refused(table):
    manifest = newest_manifest(table.path)
    name = "0" * 32 + ".arrow"
    (table.path / "data" / name).mkdir()
    rewrite_manifest(manifest, _set_segment_path(f"data/{name}"))
    with pytest.raises(CorruptStoreError, match="regular file"):
        vecstore.connect(table.path.parent).open_table("t")


@pytest.mark.parametrize("bad", ["../../elsewhere", "/tmp", "indexes/../indexes/x", "data",
                                 "indexes/not-hex"])
def test_manifest_index_paths_outside_the_table_are_refused(table, tmp_path, bad):
    table.create_index("flat")
    index_dir = table.path / table.list_indexes()[0]["path"]
    elsewhere = tmp_path / "elsewhere"
    import shutil
    shutil.copytree(index_dir, elsewhere)
    manifest = newest_manifest(table.path)

    def edit(body: dict[str, Any]) -> None:
        body["indexes"][0]["path"] = bad

    rewrite_manifest(manifest, edit)
    with pytest.raises(CorruptStoreError) as err:
        vecstore.connect(table.path.parent).open_table("t").search([1, 2, 3, 4]).to_list()
    assert manifest.name in str(err.value) and bad in str(err.value)


# -- item 9: creating a table is one step, and a race never mixes settings ---------------------------
def test_create_table_with_data_is_one_commit(tmp_db):
    tbl = tmp_db.create_table("t", dim=DIM, data=rows(30))
    assert tbl.versions() == [1]
    assert len(tbl.checkout(1)) == 30


class _Competitor:
    """Wraps os.rename and os.link so that, just before this process publishes table ``t``,
    another connection creates ``t`` with ``dim``: the publish then loses the race."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, store: Path, dim: int) -> None:
        self.ran = False
        table_dir = os.path.realpath(store / "t")
        rename, link = os.rename, os.link

        def racing(real: Any) -> Any:
            def wrapper(src: Any, dst: Any, *args: Any, **kwargs: Any) -> Any:
                target = os.path.realpath(dst) if isinstance(dst, (str, os.PathLike)) else ""
                if not self.ran and (target == table_dir or target.startswith(table_dir + os.sep)):
                    self.ran = True
                    monkeypatch.setattr(os, "rename", rename)
                    monkeypatch.setattr(os, "link", link)
                    vecstore.connect(store).create_table("t", dim=dim)
                return real(src, dst, *args, **kwargs)
            return wrapper

        monkeypatch.setattr(os, "rename", racing(rename))
        monkeypatch.setattr(os, "link", racing(link))


@pytest.mark.parametrize("data", [None, "rows"])
def test_create_table_race_with_another_dim_is_refused(tmp_path, monkeypatch, data):
    store = tmp_path / "store"
    db = vecstore.connect(store)
    race = _Competitor(monkeypatch, store, dim=8)
    with pytest.raises(AlreadyExistsError, match="dim"):
        db.create_table("t", dim=DIM, exist_ok=True, data=rows(3) if data else None)
    assert race.ran
    monkeypatch.undo()
    assert db.open_table("t").dim == 8 and len(db.open_table("t")) == 0


def test_create_table_race_with_the_same_settings_opens_it(tmp_path, monkeypatch):
    store = tmp_path / "store"
    db = vecstore.connect(store)
    race = _Competitor(monkeypatch, store, dim=DIM)
    tbl = db.create_table("t", dim=DIM, exist_ok=True)
    assert race.ran and tbl.dim == DIM
    monkeypatch.undo()
    race = _Competitor(monkeypatch, tmp_path / "other", dim=DIM)
    with pytest.raises(AlreadyExistsError):
        vecstore.connect(tmp_path / "other").create_table("t", dim=DIM)
    assert race.ran


def test_create_table_exist_ok_opens_a_table_created_between_its_two_looks(tmp_path, monkeypatch):
    """The interleaving four threads calling ``create_table(exist_ok=True)`` at once hit: this
    caller lists the versions (none yet), another creates the table (renamed into place whole),
    then this caller sees the directory. It opens the table; it used to call it "not a vecstore
    table"."""
    import vecstore.db as db_module

    store = tmp_path / "store"
    db = vecstore.connect(store)
    real = db_module.latest_version
    looks = []

    def stale_first_look(path, *args, **kwargs):
        looks.append(path)
        if len(looks) == 1:  # the other creator wins right after this caller's first look
            vecstore.connect(store).create_table("t", dim=DIM)
            return 0
        return real(path, *args, **kwargs)

    monkeypatch.setattr(db_module, "latest_version", stale_first_look)
    assert db.create_table("t", dim=DIM, exist_ok=True).dim == DIM
    assert len(looks) >= 2
    monkeypatch.undo()
    (store / "junk").mkdir()  # a directory that is no table is still refused
    with pytest.raises(AlreadyExistsError, match="not a vecstore table"):
        db.create_table("junk", dim=DIM, exist_ok=True)


def test_create_table_exist_ok_checks_the_declared_schema(tmp_db):
    import pyarrow as pa

    tmp_db.create_table("t", dim=DIM, schema=pa.schema([("year", pa.int64())]))
    assert tmp_db.create_table("t", dim=DIM, exist_ok=True,
                               schema=pa.schema([("year", pa.int64())])).dim == DIM
    with pytest.raises(AlreadyExistsError, match="year"):
        tmp_db.create_table("t", dim=DIM, exist_ok=True, schema=pa.schema([("year", pa.string())]))


def _create(store: str, dim: int, exist_ok: bool, go: Any, out: Any) -> None:
    try:
        db = vecstore.connect(store)
        data = rows(400, dim=dim)
        go.wait(60)
        tbl = db.create_table("t", dim=dim, exist_ok=exist_ok, data=data)
        out.put(("ok", dim, tbl.dim, len(tbl)))
    except Exception as exc:
        out.put((type(exc).__name__, dim, str(exc), 0))


@pytest.mark.parametrize("exist_ok", [False, True])
def test_two_processes_create_the_same_table_at_once(tmp_path, exist_ok):
    ctx = _ctx()
    for trial in range(4):
        store = tmp_path / f"s{trial}"
        vecstore.connect(store)
        go, out = ctx.Event(), ctx.Queue()
        dims = (DIM, DIM) if trial % 2 else (DIM, 8)
        procs = [ctx.Process(target=_create, args=(str(store), d, exist_ok, go, out)) for d in dims]
        for p in procs:
            p.start()
        time.sleep(0.3)
        go.set()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(60)
        tbl = vecstore.connect(store).open_table("t")
        assert tbl.versions() == [1] and len(tbl) == 400
        winners = [r for r in results if r[0] == "ok" and r[1] == r[2]]
        assert winners, results
        for status, asked, got, n in results:
            if status == "ok":
                assert got == asked == tbl.dim and n == 400, results  # never another dim
            else:
                assert status == "AlreadyExistsError", results
                assert exist_ok is False or asked != tbl.dim, results
        if not exist_ok:
            assert sorted(r[0] for r in results) == ["AlreadyExistsError", "ok"], results
        assert leftovers(store) == []


def _create_big(store: str, out: Any) -> None:
    try:
        tbl = vecstore.connect(store).create_table("big", dim=32, data=rows(60_000, dim=32))
        out.put(("ok", len(tbl)))
    except Exception as exc:
        out.put((type(exc).__name__, str(exc)))


def test_connect_never_removes_a_creation_in_progress(tmp_path):
    """connect() removes the hidden directories of creations whose process died, never the
    one another process is building right now."""
    store = tmp_path / "store"
    vecstore.connect(store)
    ctx = _ctx()
    out = ctx.Queue()
    p = ctx.Process(target=_create_big, args=(str(store), out))
    p.start()
    seen = 0
    while p.is_alive() and out.empty():
        vecstore.connect(store)  # cleans leftovers each time
        seen += any(n.startswith(".creating-") for n in leftovers(store))
        time.sleep(0.002)
    result = out.get(timeout=120)
    p.join(60)
    assert result == ("ok", 60_000), result
    assert seen, "the creation was never caught in progress; make it bigger"
    assert len(vecstore.connect(store).open_table("big")) == 60_000 and leftovers(store) == []


def _create_with_data(store: str) -> None:
    vecstore.connect(store).create_table("t", dim=DIM, data=rows(3000))


def test_sigkill_during_create_table_with_data(tmp_path):
    """Killed at any moment, create_table(data=...) leaves no table or the whole table; a retry
    with exist_ok=True then always holds the data."""
    ctx = mp.get_context("fork")
    started = time.perf_counter()
    _create_with_data(str(tmp_path / "timing"))
    full = time.perf_counter() - started
    rng = np.random.default_rng(5)
    outcomes = {"none": 0, "whole": 0}
    for trial in range(16):
        store = tmp_path / f"s{trial}"
        p = ctx.Process(target=_create_with_data, args=(str(store),))
        p.start()
        time.sleep(float(rng.uniform(0.0, 1.5 * full)))
        os.kill(p.pid, signal.SIGKILL)
        p.join()
        db = vecstore.connect(store)
        # a kill in the ~0.1 ms between making a creation's directory and locking it leaves a
        # .new-* directory that connect removes only once it is a minute old
        assert [n for n in leftovers(store) if not n.startswith(".new-")] == []
        if "t" in db.table_names():
            assert len(db.open_table("t")) == 3000
            outcomes["whole"] += 1
        else:
            outcomes["none"] += 1
        tbl = db.create_table("t", dim=DIM, data=rows(3000), exist_ok=True)
        assert len(tbl) == 3000
    print(outcomes)


# -- item 10: wrong file types, rollbacks, index sidecars ---------------------------------------------
def test_versions_that_is_a_file_is_reported(table):
    store = table.path.parent
    import shutil
    shutil.rmtree(table.path / "_versions")
    (table.path / "_versions").write_text("not a directory")
    with pytest.raises(CorruptStoreError, match="_versions"):
        vecstore.connect(store).open_table("t")
    assert vecstore.connect(store).table_names() == ["t"]  # listed, so it can be seen and dropped
    vecstore.connect(store).drop_table("t")
    assert vecstore.connect(store).table_names() == [] and not table.path.exists()


def test_lock_that_is_a_directory_is_reported(table):
    (table.path / "_lock").unlink()
    (table.path / "_lock").mkdir()
    with pytest.raises(CorruptStoreError, match="_lock"):
        table.add(rows(1, start=100))
    assert len(table) == 25


def test_deleting_the_newest_manifest_is_detected(table):
    stale = vecstore.connect(table.path.parent).open_table("t")  # read the version before
    table.add(rows(5, start=50))
    newest = newest_manifest(table.path)
    version = int(newest.stem)
    newest.unlink()
    db = vecstore.connect(table.path.parent)
    with pytest.raises(CorruptStoreError, match=f"version {version}"):
        db.open_table("t")
    assert len(db.open_table("t", version=version - 1)) == 25  # older versions stay readable
    # a writer that last saw the version before must not publish its number a second time
    with pytest.raises(CorruptStoreError, match=f"version {version}"):
        stale.add(rows(1, start=100))
    assert not newest.exists()
    # a handle that had read the lost version builds on it: no number is reused
    table.add(rows(1, start=200))
    assert table.version == version + 1 and len(table) == 31


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
@pytest.mark.parametrize("field,value", [("dim", 8), ("metric", "l2"), ("count", 3)])
def test_an_edited_index_sidecar_is_refused(tmp_path, kind, field, value):
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=16)
    tbl.add(rows(200, dim=16))
    tbl.create_index(kind)
    side = tbl.path / tbl.list_indexes()[0]["path"] / f"{kind}.json"
    meta = json.loads(side.read_text())
    meta[field] = value
    side.write_text(json.dumps(meta))
    other = vecstore.connect(tmp_path / "store").open_table("t")
    with pytest.warns(RuntimeWarning, match=field) as warned:  # never used: the query scans
        got = other.search(np.ones(16)).limit(3).to_list()
    assert side.name in str(warned[0].message)
    assert [h["id"] for h in got] == list(other.search(np.ones(16)).limit(3).exact().hits().ids)
    with pytest.raises(CorruptStoreError, match=field) as err:
        other.verify()
    assert side.name in str(err.value)


def test_a_writer_waiting_while_the_table_is_removed_is_told_it_was_dropped(tmp_path, monkeypatch):
    """A writer that opened the table's directory and then waited for the lock while a
    drop_table removed the directory got a bare FileNotFoundError for '_lock' (seen in
    test_drop_table_while_another_process_writes); it must say the table was dropped."""
    import shutil

    import vecstore.storage.locks as locks

    tbl = vecstore.connect(tmp_path / "store").create_table("t", dim=DIM)
    tbl.add(rows(2))
    real_flock = locks._flock

    def removed_meanwhile(fd: int, *args: Any) -> None:
        monkeypatch.setattr(locks, "_flock", real_flock)
        shutil.rmtree(tbl.path)  # what drop_table does once it renamed the table away
        real_flock(fd, *args)

    monkeypatch.setattr(locks, "_flock", removed_meanwhile)
    with pytest.raises(vecstore.NotFoundError, match="dropped"):
        tbl.add(rows(1, start=10))
