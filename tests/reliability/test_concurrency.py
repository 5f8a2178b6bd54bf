"""Concurrency: writers in several processes and threads never lose an update, readers in other
processes and threads always see one consistent version, and a writer that cannot get the lock
fails with a clear ConcurrencyError naming the holder, leaving the table unchanged. Readers also
check that keyword search on each version they see equals BM25 rebuilt from its rows.

Children are started from a "forkserver" (a clean process that imported vecstore once): they
are as cheap as fork but inherit no DuckDB connection, Numba thread pool or lock of the pytest
process. Every vecstore object a child uses is created inside the child.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
import traceback
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from bm25_oracle import bm25_scores, ranking_problems

import vecstore
from vecstore.query.filters import FilterEngine
from vecstore.storage.locks import write_lock

DIM = 4
SEEDS = 5  # rows added before the writers start, never touched again
K = 7  # the readers' search limit
READER_PAUSE = 0.01
TEXT_WORDS = "amber basil cedar dune ember fern grove heath iris juniper kelp larch".split()


@dataclass(frozen=True)
class Load:
    writers: int
    batches: int  # upserts per writer
    disjoint: int  # ids only one writer touches
    shared: int  # ids every writer touches
    reader_procs: int
    reader_threads: int
    pause: float  # seconds between a writer's batches, so readers see many versions

    @property
    def final_rows(self) -> int:
        return SEEDS + self.writers * self.disjoint + self.shared


DEFAULT = Load(writers=4, batches=6, disjoint=12, shared=8, reader_procs=2, reader_threads=2, pause=0.02)
HEAVY = Load(writers=6, batches=25, disjoint=40, shared=30, reader_procs=3, reader_threads=3, pause=0.0)


def _ctx() -> Any:
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["vecstore", __name__])
    return ctx


# -- the data every writer writes: a deterministic function of (id, writer, batch) -----------------
def payload(rid: str, writer: int, batch: int) -> tuple[list[float], int]:
    h = zlib.crc32(f"{rid}|{writer}|{batch}".encode())
    return [1.0 + ((h >> s) & 0xFF) / 64.0 for s in (0, 8, 16, 24)], h  # exact in float32, never 0


def batch_ids(load: Load, writer: int, batch: int) -> list[str]:
    """A writer's batch b rewrites a growing prefix of its own ids and of the shared ids; its last
    batch writes all of them."""
    nd = load.disjoint * (batch + 1) // load.batches
    ns = load.shared * (batch + 1) // load.batches
    return [f"w{writer}-{i}" for i in range(nd)] + [f"shared-{j}" for j in range(ns)]


def text_of(h: int) -> str:
    """A row's text, a function of its payload: 2-5 words, so keyword statistics change with
    every batch."""
    return " ".join(TEXT_WORDS[(h >> s) % len(TEXT_WORDS)] for s in range(0, 4 * (2 + h % 4), 4))


def rows_of(ids: list[str], writer: int, batch: int) -> list[dict[str, Any]]:
    rows = []
    for rid in ids:
        vec, h = payload(rid, writer, batch)
        rows.append({"id": rid, "vector": vec, "writer": writer, "batch": batch, "check": h,
                     "text": text_of(h)})
    return rows


def seed_table(path: Path) -> vecstore.Table:
    tbl = vecstore.connect(path).create_table("t", dim=DIM)
    tbl.add(rows_of([f"seed-{i}" for i in range(SEEDS)], -1, 0))
    return tbl


def write_batches(tbl: vecstore.Table, load: Load, writer: int) -> None:
    for b in range(load.batches):
        tbl.upsert(rows_of(batch_ids(load, writer, b), writer, b))
        if load.pause:
            time.sleep(load.pause)


# -- what a reader checks on one pinned version ---------------------------------------------------
def row_problems(row: dict[str, Any], load: Load) -> list[str]:
    rid, w, b = row["id"], row["writer"], row["batch"]
    vec, h = payload(rid, w, b)
    if w == -1:
        allowed = rid.startswith("seed-") and b == 0
    else:
        allowed = 0 <= w < load.writers and 0 <= b < load.batches and rid in batch_ids(load, w, b)
    out = []
    if not allowed:
        out.append(f"row {rid!r} claims writer {w} batch {b}, which never wrote it")
    if row["check"] != h:
        out.append(f"row {rid!r}: payload {row['check']} is not the one writer {w} wrote in batch {b}")
    if "vector" in row and list(row["vector"]) != vec:
        out.append(f"row {rid!r}: vector {row['vector']} is not the one writer {w} wrote in batch {b}")
    if row.get("text") != text_of(h):
        out.append(f"row {rid!r}: text {row.get('text')!r} is not the one writer {w} wrote in batch {b}")
    return out


def check_version(tbl: vecstore.Table, load: Load, rng: np.random.Generator) -> tuple[int, list[str]]:
    """Check one version (pinned, so every call below reads the same one)."""
    view = tbl.checkout(tbl.version)
    v = view.version
    bad: list[str] = []
    rows = view.to_arrow(with_vectors=True).to_pylist()
    by_id = {r["id"]: r for r in rows}
    if len(by_id) != len(rows):
        bad.append(f"duplicate ids among {len(rows)} live rows")
    if len(view) != len(rows):
        bad.append(f"len() is {len(view)} but to_arrow() returned {len(rows)} rows")
    if view.count("true") != len(rows):
        bad.append(f"count('true') is {view.count('true')} but to_arrow() returned {len(rows)} rows")
    if not SEEDS <= len(rows) <= load.final_rows:
        bad.append(f"{len(rows)} rows, outside {SEEDS}..{load.final_rows}")
    for r in rows:
        bad.extend(row_problems(r, load))
    w = int(rng.integers(-1, load.writers))
    want = sum(1 for r in rows if r["writer"] == w)
    got = view.count("writer = ?", w)
    if got != want:
        bad.append(f"count('writer = {w}') is {got}, the rows say {want}")
    q = rng.uniform(0.5, 5.0, size=DIM).astype(np.float32)
    query = view.search(q).limit(K)
    query = [query, query.where("batch >= ?", 0), query.exact()][int(rng.integers(3))]
    hits = query.to_list()
    if len(hits) != min(K, len(rows)):
        bad.append(f"search(...).limit({K}) returned {len(hits)} of {len(rows)} rows")
    for h in hits:
        live = by_id.get(h["id"])
        if live is None:
            bad.append(f"search returned {h['id']!r}, which is not live in this version")
        elif (h["writer"], h["batch"], h["check"]) != (live["writer"], live["batch"], live["check"]):
            bad.append(f"search returned {h['id']!r} with a payload other than its live row's")
    # keyword search on this version equals BM25 rebuilt from its rows
    text = " ".join(rng.choice(TEXT_WORDS, size=int(rng.integers(1, 3))))
    kq = view.search(text, mode="keyword").limit(K).select("id")
    allowed = None
    if rng.random() < 0.5:
        kq = kq.where("writer = ?", w)
        allowed = [r["id"] for r in rows if r["writer"] == w]
    problems = ranking_problems(kq.to_list(), bm25_scores(rows, ["text"], "english", text), K, allowed)
    bad.extend(f"keyword search {text!r}: {p}" for p in problems)
    return v, [f"version {v}: {b}" for b in bad]


class ReaderStats:
    def __init__(self) -> None:
        self.iterations = 0
        self.versions: set[int] = set()
        self.violations: list[str] = []
        self._last_len = 0
        self._last_version = 0

    def run_once(self, tbl: vecstore.Table, load: Load, rng: np.random.Generator) -> None:
        """One round: a pinned version's invariants, then unpinned reads, which may each see a
        newer version but never an older one (upserts only ever add ids)."""
        try:
            v, bad = check_version(tbl, load, rng)
            self.versions.add(v)
            self.violations.extend(bad)
            a = len(tbl)
            c = tbl.count("true")
            z = len(tbl)
            version = tbl.version
            if not self._last_len <= a <= c <= z:
                self.violations.append(f"unpinned counts went backwards: {self._last_len}, {a}, {c}, {z}")
            if version < max(v, self._last_version):
                self.violations.append(f"the table went back from version {self._last_version} to {version}")
            self._last_len, self._last_version = z, version
        except Exception:
            self.violations.append(traceback.format_exc())
        self.iterations += 1

    def to_json(self) -> dict[str, Any]:
        return {"iterations": self.iterations, "versions": sorted(self.versions),
                "violations": self.violations}


def reader_loop(open_table: Any, load: Load, seed: int, ready: Any, done: Any) -> ReaderStats:
    stats = ReaderStats()
    rng = np.random.default_rng(seed)
    stats.run_once(open_table(), load, rng)  # warm up (Numba, DuckDB) before the writers start
    ready.set()
    while True:
        finished = done.is_set()  # read first: one more round then sees the final version
        stats.run_once(open_table(), load, rng)
        if finished:
            return stats
        time.sleep(READER_PAUSE)  # leave the 2 cores of CI some time for the writers
        if stats.iterations > 100_000:
            stats.violations.append("the writers never finished")
            return stats


# -- child processes (module-level so the forkserver can import them) -----------------------------
def _reader_proc(path: str, load: dict[str, Any], seed: int, ready: Any, done: Any, out: str) -> None:
    spec = Load(**load)
    stats = reader_loop(lambda: vecstore.connect(path).open_table("t"), spec, seed, ready, done)
    Path(out).write_text(json.dumps(stats.to_json()))


def _writer_proc(path: str, load: dict[str, Any], writer: int, go: Any, out: str) -> None:
    try:
        tbl = vecstore.connect(path).open_table("t")
        if not go.wait(120):
            raise TimeoutError("the readers never got ready")
        write_batches(tbl, Load(**load), writer)
        Path(out).write_text("ok")
    except BaseException:
        Path(out).write_text(traceback.format_exc())
        raise


def _hold_lock(table_dir: str, locked: Any, release: Any) -> None:
    with write_lock(Path(table_dir), timeout=30):
        locked.set()
        release.wait(60)


# -- the final state against the serial model ----------------------------------------------------
def replay_versions(tbl: vecstore.Table, load: Load, writers: int) -> None:
    """Each version after the seed is exactly one writer's next batch applied to the version
    before it: the history is a serial order of all the batches, each writer's in program order,
    with nothing lost, duplicated or half-applied."""
    first = 3  # 1: create_table, 2: the seed rows
    assert tbl.versions() == list(range(1, first + writers * load.batches))
    model = {r["id"]: (r["writer"], r["batch"]) for r in tbl.checkout(first - 1).to_arrow().to_pylist()}
    next_batch = dict.fromkeys(range(writers), 0)
    for v in tbl.versions()[first - 1:]:
        rows = tbl.checkout(v).to_arrow().to_pylist()
        now = {r["id"]: (r["writer"], r["batch"]) for r in rows}
        assert len(now) == len(rows), f"version {v} holds duplicate ids"
        new = {(i, wb) for i, wb in now.items() if model.get(i) != wb}
        authors = {wb for _, wb in new}
        assert len(authors) == 1, f"version {v} mixes the batches {sorted(authors)}"
        (w, b), = authors
        assert b == next_batch[w], f"version {v} holds writer {w}'s batch {b}, expected {next_batch[w]}"
        next_batch[w] += 1
        for i in batch_ids(load, w, b):
            model[i] = (w, b)
        assert now == model, f"version {v} differs from the serial model"
    assert next_batch == dict.fromkeys(range(writers), load.batches)


def check_final(tbl: vecstore.Table, load: Load, writers: int) -> None:
    rows = tbl.to_arrow(with_vectors=True).to_pylist()
    assert len(tbl) == len(rows) == SEEDS + writers * load.disjoint + load.shared
    by_id = {r["id"]: r for r in rows}
    assert len(by_id) == len(rows)
    for r in rows:
        assert row_problems(r, load) == []
    for w in range(writers):
        for i in range(load.disjoint):
            r = by_id[f"w{w}-{i}"]
            assert (r["writer"], r["batch"]) == (w, load.batches - 1)
    last = {(by_id[f"shared-{j}"]["writer"], by_id[f"shared-{j}"]["batch"]) for j in range(load.shared)}
    # every writer's last batch writes every shared id, so they all hold the last commit's values
    assert len(last) == 1 and next(iter(last))[1] == load.batches - 1
    assert tbl.version == 2 + writers * load.batches
    replay_versions(tbl, load, writers)


# -- the tests -----------------------------------------------------------------------------------
def run_stress(tmp_path: Path, load: Load) -> dict[str, Any]:
    path = tmp_path / "store"
    seed_table(path)
    ctx = _ctx()
    go, done = ctx.Event(), ctx.Event()
    ready = [ctx.Event() for _ in range(load.reader_procs)]
    spec = asdict(load)
    readers = [ctx.Process(target=_reader_proc, args=(str(path), spec, 100 + i, ready[i], done,
                                                      str(tmp_path / f"reader-{i}.json")))
               for i in range(load.reader_procs)]
    writers = [ctx.Process(target=_writer_proc,
                           args=(str(path), spec, w, go, str(tmp_path / f"writer-{w}.txt")))
               for w in range(load.writers)]
    # reader threads in this process: two of them share one Table object
    shared = vecstore.connect(path).open_table("t")
    thread_ready = [threading.Event() for _ in range(load.reader_threads)]
    thread_stats: list[ReaderStats] = []

    def thread_reader(i: int) -> None:
        def open_table() -> vecstore.Table:
            return shared if i < 2 else vecstore.connect(path).open_table("t")

        thread_stats.append(reader_loop(open_table, load, 200 + i, thread_ready[i], done))

    threads = [threading.Thread(target=thread_reader, args=(i,)) for i in range(load.reader_threads)]
    for p in readers + writers:
        p.start()
    try:
        for t in threads:
            t.start()
        for e in ready + thread_ready:
            assert e.wait(120), "a reader never got ready"
        started = time.perf_counter()
        go.set()
        for p in writers:
            p.join(300)
        write_seconds = time.perf_counter() - started
        done.set()
        for p in readers:
            p.join(120)
        for t in threads:
            t.join(120)
    finally:
        done.set()
        for p in readers + writers:
            if p.is_alive():
                p.kill()
                p.join()
    for w, p in enumerate(writers):
        report = tmp_path / f"writer-{w}.txt"
        assert p.exitcode == 0, report.read_text() if report.exists() else f"writer {w} died"
    assert [p.exitcode for p in readers] == [0] * len(readers), "a reader process died"
    stats = [json.loads((tmp_path / f"reader-{i}.json").read_text()) for i in range(load.reader_procs)]
    stats += [s.to_json() for s in thread_stats]
    assert len(stats) == load.reader_procs + load.reader_threads
    violations = [v for s in stats for v in s["violations"]]
    assert violations == [], "\n".join(violations[:20])
    check_final(vecstore.connect(path).open_table("t"), load, load.writers)
    versions_seen = set().union(*(s["versions"] for s in stats))
    # every reader saw the version before the writers started and the final one
    assert {2, 2 + load.writers * load.batches} <= versions_seen
    return {"reads": sum(s["iterations"] for s in stats), "versions_seen": len(versions_seen),
            "write_seconds": write_seconds, "upserts": load.writers * load.batches}


def test_writer_processes_with_reader_processes_and_threads(tmp_path):
    report = run_stress(tmp_path, DEFAULT)
    print(f"\n{DEFAULT}: {report}")


@pytest.mark.slow
def test_writer_processes_with_reader_processes_and_threads_heavy(tmp_path):
    report = run_stress(tmp_path, HEAVY)
    print(f"\n{HEAVY}: {report}")


@pytest.mark.parametrize("handles", ["one shared Table", "a Table each"])
def test_two_writer_threads_lose_nothing(tmp_path, handles):
    load = Load(writers=2, batches=8, disjoint=10, shared=10, reader_procs=0, reader_threads=0, pause=0.0)
    tbl = seed_table(tmp_path / "store")
    errors: list[str] = []

    def writer(w: int) -> None:
        try:
            own = handles == "a Table each"
            mine = vecstore.connect(tmp_path / "store").open_table("t") if own else tbl
            write_batches(mine, load, w)
        except Exception:
            errors.append(traceback.format_exc())

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    check_final(tbl, load, 2)


def test_a_held_lock_times_out_naming_the_holder_and_changes_nothing(tmp_path):
    tbl = seed_table(tmp_path / "store")
    ctx = _ctx()
    locked, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(tbl.path), locked, release))
    holder.start()
    try:
        assert locked.wait(60)
        impatient = vecstore.connect(tmp_path / "store", lock_timeout=0.5).open_table("t")
        before = (impatient.version, len(impatient), sorted(p.name for p in tbl.path.rglob("*")))
        for write in (lambda: impatient.add(rows_of(["new"], 0, 0)),
                      lambda: impatient.upsert(rows_of(["seed-0"], 0, 0)),
                      lambda: impatient.delete(ids=["seed-1"]),
                      lambda: impatient.compact()):
            started = time.perf_counter()
            with pytest.raises(vecstore.ConcurrencyError) as err:
                write()
            waited = time.perf_counter() - started
            assert isinstance(err.value, TimeoutError)
            assert f"pid {holder.pid}" in str(err.value) and "0.5s" in str(err.value)
            # it waited out its timeout rather than failing at once (a lower bound only:
            # how much longer a loaded machine takes says nothing about vecstore)
            assert waited >= 0.45
        after = (impatient.version, len(impatient), sorted(p.name for p in tbl.path.rglob("*")))
        assert after == before
        # readers never take the lock: they go on while it is held
        assert len(tbl) == SEEDS and tbl.count("writer = -1") == SEEDS
        assert len(tbl.search([1, 2, 3, 4]).limit(3).to_list()) == 3
    finally:
        release.set()
        holder.join(60)
    assert holder.exitcode == 0
    impatient.add(rows_of(["new"], 0, 0))  # the lock is free again
    assert len(impatient) == SEEDS + 1


def test_a_lock_held_by_another_thread_times_out(tmp_path):
    tbl = seed_table(tmp_path / "store")
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        with write_lock(tbl.path, timeout=30):
            locked.set()
            release.wait(60)

    t = threading.Thread(target=hold)
    t.start()
    try:
        assert locked.wait(60)
        impatient = vecstore.connect(tmp_path / "store", lock_timeout=0.2).open_table("t")
        with pytest.raises(vecstore.ConcurrencyError, match="another thread of this process"):
            impatient.add(rows_of(["new"], 0, 0))
        assert len(impatient) == SEEDS and impatient.version == 2
    finally:
        release.set()
        t.join(60)


def test_a_filter_engine_closed_by_another_thread_still_answers():
    """Regression: a reader thread holding a table version's FilterEngine while another thread,
    seeing a newer version, closed it got 'Connection already closed' as a FilterError."""
    import pyarrow as pa

    engine = FilterEngine(pa.table({"n": [1, 2, 3], "__vecstore_row": pa.array([0, 1, 2], pa.int64())}))
    assert engine.rows("n > ?", [1]).tolist() == [1, 2]
    engine.close()
    assert engine.rows("n > ?", [2]).tolist() == [2]
    engine.close()
    engine.close()


FORK_WHILE_LOCKED = """
import os, sys, threading, time
from pathlib import Path
from vecstore.storage.locks import write_lock

table_dir, out = Path(sys.argv[1]), sys.argv[2]
locked = threading.Event()

def hold():
    with write_lock(table_dir, timeout=30):
        locked.set()
        time.sleep(600)

threading.Thread(target=hold, daemon=True).start()
locked.wait(60)
pid = os.fork()  # a fork without exec (as multiprocessing does) while another thread holds the lock
if pid == 0:
    try:  # the parent's thread still holds the lock: the child must wait for it like anyone
        with write_lock(table_dir, timeout=0):
            pass
        os.write(1, b"child took the lock\\n")
    except Exception as exc:
        os.write(1, f"child could not take the lock: {exc}\\n".encode())
    time.sleep(600)
    os._exit(0)
Path(out).write_text(str(pid))
time.sleep(600)
"""


def test_a_child_forked_while_the_lock_is_held_does_not_keep_it(tmp_path):
    """flock belongs to the open file description, which fork shares: without the at-fork
    handler of storage/locks.py a child forked while another thread held the write lock kept
    it after the parent died, and every writer timed out for as long as the child lived."""
    import os
    import signal
    import subprocess
    import sys

    tbl = seed_table(tmp_path / "store")
    pid_file = tmp_path / "child.pid"
    parent = subprocess.Popen([sys.executable, "-c", FORK_WHILE_LOCKED, str(tbl.path), str(pid_file)],
                              stdout=subprocess.PIPE, text=True)
    child = None
    try:
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert parent.poll() is None and time.monotonic() < deadline, "the parent did not fork"
            time.sleep(0.05)
        child = int(pid_file.read_text())
        impatient = vecstore.connect(tmp_path / "store", lock_timeout=0.3).open_table("t")
        with pytest.raises(vecstore.ConcurrencyError):  # the parent's thread holds it
            impatient.add(rows_of(["x"], 0, 0))
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(30)
        # the parent is gone and the child lives on: the lock must be free
        writer = vecstore.connect(tmp_path / "store", lock_timeout=5).open_table("t")
        writer.add(rows_of(["after"], 0, 0))
        assert len(writer) == SEEDS + 1
        os.kill(child, 0)  # (the child is still alive)
    finally:
        for pid in (parent.pid, child):
            if pid is not None:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        parent.wait(30)
    out = parent.stdout.read() if parent.stdout else ""
    # while the parent's thread held it, the child could not take it either: it holds no copy
    # of it that would count as its own
    assert "child could not take the lock" in out, out


def test_create_index_while_upserts_replace_every_row_it_was_built_over(tmp_db, monkeypatch):
    """Under heavy upserts every row an index build started from can be replaced (and its
    segment merged away) before the build is recorded: create_index was then refused with "was
    compacted" though nothing had compacted. It now builds again on the newest version, and
    after INDEX_ATTEMPTS - 1 such races builds holding the write lock."""
    import vecstore.index as index_package
    from vecstore.table import INDEX_ATTEMPTS

    def batch(seed: int) -> list[dict[str, Any]]:
        rng = np.random.default_rng(seed)
        return [{"id": f"r{i}", "vector": rng.normal(size=8).tolist(), "n": i} for i in range(40)]

    tbl = tmp_db.create_table("t", dim=8)
    tbl.add(batch(0))
    other = vecstore.connect(tmp_db.path).open_table("t")
    real_build = index_package.build_index
    builds: list[int] = []

    def racing_build(*args: Any, **kwargs: Any) -> Any:
        builds.append(len(other))
        if len(builds) < INDEX_ATTEMPTS:  # the last build holds the lock: no writer can race it
            for k in range(3):  # each upsert replaces every row; the merges drop the old segments
                other.upsert(batch(10 * len(builds) + k))
        return real_build(*args, **kwargs)

    monkeypatch.setattr(index_package, "build_index", racing_build)
    entry = tbl.create_index("flat")
    assert entry["kind"] == "flat" and len(builds) >= 2
    # the index recorded covers the live rows: an exact search and the index agree
    q = np.ones(8)
    assert (tbl.search(q).limit(5).explain().index == "flat"
            and [h["id"] for h in tbl.search(q).limit(5).to_list()]
            == [h["id"] for h in tbl.search(q).exact().limit(5).to_list()])
    assert len(tbl) == 40
