"""``vecstore serve`` as its own process: many clients at once, reads while the table's write
lock is held, and SIGKILL in the middle of writes (every acknowledged row is there after a
restart, no batch is torn)."""

from __future__ import annotations

import os
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import vecstore
from vecstore import RemoteError

from .harness import KEY, ProcessServer

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX processes and signals")
DIM = 16


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    pytest.importorskip("fastapi")
    base = tmp_path_factory.mktemp("process_server")
    srv = ProcessServer(base / "store", base / "server.log", env={"VECSTORE_API_KEY": KEY}).start()
    yield srv
    srv.stop()


def vec(rng: np.random.Generator) -> list[float]:
    return rng.normal(size=DIM).astype(np.float32).tolist()


def test_eight_writers_and_four_readers_lose_nothing(server):
    """8 writer threads (adds, upserts, deletes of their own ids) and 4 reader threads (search,
    count, get) on one table, each with its own connection: no error of any kind (so no 5xx),
    every reader's view consistent, and the final table exactly the writers' model."""
    db = vecstore.connect(server.url, api_key=KEY)
    tbl = db.create_table("busy", dim=DIM)
    tbl.add([{"id": "seed", "vector": vec(np.random.default_rng(99)), "writer": -1, "gen": 0}])
    done = threading.Event()
    errors: list[BaseException] = []
    models: list[dict[str, int]] = [{} for _ in range(8)]

    def writer(w: int) -> None:
        rng = np.random.default_rng(w)
        t = vecstore.connect(server.url, api_key=KEY).open_table("busy")
        model = models[w]
        try:
            for b in range(8):
                rows = [{"id": f"w{w}-{b}-{i}", "vector": vec(rng), "writer": w, "gen": 0} for i in range(10)]
                assert t.add(rows) == [r["id"] for r in rows]
                model.update({r["id"]: 0 for r in rows})
                if b % 3 == 2:  # replace an earlier batch
                    ids = [f"w{w}-{b - 1}-{i}" for i in range(10)]
                    t.upsert([{"id": i, "vector": vec(rng), "writer": w, "gen": b} for i in ids])
                    model.update({i: b for i in ids})
                if b % 4 == 3:  # delete an earlier batch, half by ids and half by filter
                    ids = [f"w{w}-{b - 3}-{i}" for i in range(10)]
                    assert t.delete(ids=ids[:5]) == 5
                    assert t.delete("id IN (?, ?, ?, ?, ?)", *ids[5:]) == 5
                    for i in ids:
                        model.pop(i)
        except BaseException as exc:  # noqa: BLE001 - any error fails the test below
            errors.append(exc)

    def reader(r: int) -> None:
        rng = np.random.default_rng(100 + r)
        t = vecstore.connect(server.url, api_key=KEY).open_table("busy")
        try:
            while not done.is_set():
                hits = t.search(vec(rng)).where("writer >= ?", r % 4).limit(20).hits()
                assert len(set(hits.ids)) == len(hits.ids)
                assert all(h["writer"] >= r % 4 for h in hits.to_list())
                n = len(t)
                assert 1 <= n <= 1 + 8 * 80
                got = [x["id"] for x in t.get(hits.ids[:3])]  # a row may be deleted meanwhile
                assert got == [i for i in hits.ids[:3] if i in got]
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    readers = [threading.Thread(target=reader, args=(r,)) for r in range(4)]
    for th in readers:
        th.start()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(writer, range(8)))
    done.set()
    for th in readers:
        th.join()
    assert not errors, errors[:3]
    want = {"seed": 0, **{i: g for m in models for i, g in m.items()}}
    assert len(tbl) == len(want)
    got = {r["id"]: r["gen"] for r in tbl.get(sorted(want))}
    assert got == want


def test_reads_are_not_blocked_by_a_held_write_lock(server):
    """While another process holds the table's write lock, 12 writes wait (more than the
    server's write threads) and reads still answer, before the lock is released."""
    from vecstore.storage.locks import write_lock

    db = vecstore.connect(server.url, api_key=KEY)
    tbl = db.create_table("locked", dim=DIM)
    rng = np.random.default_rng(7)
    tbl.add([{"id": f"r{i}", "vector": vec(rng)} for i in range(50)])
    released = threading.Event()
    finished_while_locked: list[bool] = []
    writes = []
    with write_lock(server.store / "locked", timeout=10):

        def write(i: int) -> None:
            t = vecstore.connect(server.url, api_key=KEY).open_table("locked")
            t.add([{"id": f"new{i}", "vector": vec(np.random.default_rng(i))}])
            writes.append(released.is_set())

        threads = [threading.Thread(target=write, args=(i,)) for i in range(12)]
        for th in threads:
            th.start()
        for _ in range(20):
            assert len(tbl.search(vec(rng)).limit(5).to_list()) == 5
            assert len(tbl) == 50
            finished_while_locked.append(not released.is_set())
        assert not writes  # every write is still waiting for the lock
        released.set()
    for th in threads:
        th.join()
    assert all(finished_while_locked) and len(finished_while_locked) == 20
    assert writes == [True] * 12 and len(tbl) == 62


@pytest.mark.parametrize("kills", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_sigkill_during_writes_loses_no_acknowledged_row(tmp_path, kills):
    """Writers add batches of 20 rows through the server; the server is SIGKILLed at a random
    moment and restarted, ``kills`` times. Every batch a client saw acknowledged is there whole;
    any other batch is there whole or not at all."""
    pytest.importorskip("fastapi")
    store = tmp_path / "store"
    vecstore.connect(store).create_table("t", dim=DIM)
    acked: set[str] = set()
    unexpected: list[BaseException] = []
    rng = np.random.default_rng(2024)
    for cycle in range(kills):
        srv = ProcessServer(store, tmp_path / "server.log").start()
        stop = threading.Event()

        def writer(w: int, cycle: int = cycle, srv: ProcessServer = srv,
                   stop: threading.Event = stop) -> None:
            t = vecstore.connect(srv.url).open_table("t")
            local_rng = np.random.default_rng(1000 * cycle + w)
            for b in range(10_000):
                batch = f"{cycle}-{w}-{b}"
                rows = [{"id": f"{batch}-{i}", "vector": vec(local_rng), "batch": batch} for i in range(20)]
                try:
                    t.add(rows)
                except RemoteError:
                    return  # the server died under this request
                except BaseException as exc:  # noqa: BLE001 - fails the test below
                    unexpected.append(exc)
                    return
                acked.add(batch)
                if stop.is_set():
                    return

        threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
        for th in threads:
            th.start()
        # let some writes land, then kill in the middle of others
        while len([b for b in acked if b.startswith(f"{cycle}-")]) < 3:
            assert any(th.is_alive() for th in threads) and not unexpected, unexpected
            threads[0].join(timeout=0.05)
        threading.Event().wait(float(rng.uniform(0.05, 0.6)))
        srv.kill()
        stop.set()
        for th in threads:
            th.join()
        table = vecstore.connect(store).open_table("t").to_arrow(["batch"])
        sizes = Counter(table.column("batch").to_pylist())
        assert not unexpected, unexpected
        torn = {b: n for b, n in sizes.items() if n != 20}
        missing = acked - set(sizes)
        assert not torn, f"torn batches after kill {cycle}: {torn}"
        assert not missing, f"acknowledged batches lost after kill {cycle}: {sorted(missing)[:5]}"
    assert len(acked) >= 3 * kills
    # the store is still writable and searchable through a new server
    srv = ProcessServer(store, tmp_path / "server.log").start()
    try:
        t = vecstore.connect(srv.url).open_table("t")
        t.add([{"id": "after", "vector": vec(rng), "batch": "after"}])
        assert t.count("batch = 'after'") == 1 and len(t.search(vec(rng)).limit(3).to_list()) == 3
    finally:
        srv.stop()
