"""A seeded sequence of writes, a Python model of what each prefix of it leaves in the table,
and a child-process runner that records each write once it has returned.

Rows carry a ``text`` and a ``tag`` so that every write also maintains the keyword index; the
model holds the keyword columns in force under :data:`KEYWORD_KEY`, and :func:`check_keyword`
compares keyword search with BM25 rebuilt from the model's rows."""

from __future__ import annotations

import bisect
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from bm25_oracle import bm25_scores, ranking_problems

import vecstore

DIM = 8
KEYWORD_KEY = "\x00keyword columns"  # the model's entry for the table's keyword columns


class ToyEmbedder:
    """A deterministic stand-in for a model (a hash of the text), so the crash test can ingest
    documents in a forked child without loading torch."""

    model_id = "toy-hash"
    dim = DIM
    max_tokens = 64

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        out = np.empty((len(texts), DIM), dtype=np.float32)
        for i, t in enumerate(texts):
            v = np.frombuffer(hashlib.sha256(t.encode()).digest()[:DIM], dtype=np.uint8)
            out[i] = (v.astype(np.float32) - 127.5).round(0)
        return out

    embed_queries = embed_documents


WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()


Row = tuple[str, tuple[float, ...], int, "str | None", "str | None"]  # id, vector, year, text, tag


def random_words(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(1, 9))))


def doc_rows(doc: dict[str, Any]) -> tuple[Row, ...]:
    """The chunk rows add_documents stores for ``doc`` (id, rounded vector, year, text, tag)."""
    from vecstore.ingest import chunk_documents

    out = chunk_documents([doc], ToyEmbedder(), chunking="naive", chunk_tokens=12, overlap=0,
                          progress=False)
    t = out.table
    return tuple((i, tuple(round(float(x), 3) for x in v), doc["year"], text, None) for i, v, text in
                 zip(t.column("id").to_pylist(), t.column("vector").to_pylist(),
                     t.column("text").to_pylist(), strict=True))


Rows = tuple[Row, ...]


@dataclass(frozen=True)
class Op:
    kind: str  # add | upsert | delete_ids | delete_where | compact | index | ingest | keywords
    #            | update | sync | cleanup | optimize | drop_index
    doc: tuple[str, str, int] = ("", "", 0)  # ingest: (doc id, text, year)
    rows: Rows = ()
    ids: tuple[str, ...] = ()
    cut: int = 0
    columns: tuple[str, ...] = ()  # keywords: the keyword columns set
    value: int = 0  # update: the new year of the rows with year < cut
    docs: tuple[tuple[str, str, int], ...] = ()  # sync: documents, in commit order
    doc_rows: tuple[Rows, ...] = ()  # sync: each document's chunk rows

    def partial_steps(self) -> list[Op]:
        """A sync commits its documents in groups, in order: the ops that each prefix of its
        documents amounts to (a kill may land between two of its commits)."""
        return [Op("ingest", doc=d, rows=r) for d, r in zip(self.docs, self.doc_rows, strict=True)]


GROUP_CHUNKS = 3
"""The child's chunks per group (vecstore.documents.GROUP_CHUNKS): a sync of a few short
documents commits several times."""


def pick_ids(rng: np.random.Generator, live: list[str], n: int) -> list[str]:
    """``n`` distinct ids of ``live`` (sorted), as ``rng.choice(live, ...)`` picks them."""
    return [live[i] for i in rng.choice(len(live), size=min(len(live), n), replace=False)]


def make_ops(seed: int, n: int) -> list[Op]:
    rng = np.random.default_rng(seed)
    ops: list[Op] = []
    live: list[str] = []  # sorted: picks index into it (sorting a set per op made this quadratic)
    next_id = 0
    for _ in range(n):
        r = rng.random()
        if r < 0.35 or not live:
            rows = []
            for _ in range(int(rng.integers(1, 40))):
                rows.append((f"id{next_id}", tuple(rng.normal(size=DIM).round(3).tolist()),
                             int(rng.integers(0, 100)), random_words(rng), str(rng.choice(WORDS))))
                bisect.insort(live, f"id{next_id}")
                next_id += 1
            ops.append(Op("add", rows=tuple(rows)))
        elif r < 0.6:
            pick = pick_ids(rng, live, int(rng.integers(1, 10)))
            rows = [(str(i), tuple(rng.normal(size=DIM).round(3).tolist()), int(rng.integers(0, 100)),
                     random_words(rng), None) for i in pick]
            rows.append((f"id{next_id}", tuple(rng.normal(size=DIM).round(3).tolist()), 1, None,
                         str(rng.choice(WORDS))))
            bisect.insort(live, f"id{next_id}")
            next_id += 1
            ops.append(Op("upsert", rows=tuple(rows)))
        elif r < 0.75:
            pick = pick_ids(rng, live, int(rng.integers(1, 6)))
            for i in pick:
                del live[bisect.bisect_left(live, i)]
            ops.append(Op("delete_ids", ids=tuple(pick)))
        elif r < 0.86:
            ops.append(Op("delete_where", cut=int(rng.integers(0, 12))))
            # the model decides which ids go; `live` is only a hint for picking ids
        elif r < 0.87:
            ops.append(Op("compact"))
        elif r < 0.89:
            ops.append(Op("keywords", columns=(("text",), ("text", "tag"), ("tag",))[int(rng.integers(3))]))
        elif r < 0.92:
            words = rng.choice(WORDS, size=int(rng.integers(5, 60)))
            doc = (f"doc{int(rng.integers(0, 6))}", " ".join(words), int(rng.integers(0, 100)))
            ops.append(Op("ingest", doc=doc, rows=doc_rows({"id": doc[0], "text": doc[1], "year": doc[2]})))
        elif r < 0.935:
            ops.append(Op("update", cut=int(rng.integers(0, 30)), value=int(rng.integers(0, 100))))
        elif r < 0.95:  # an incremental ingest of several documents, committed group by group
            picked = rng.choice(8, size=int(rng.integers(2, 6)), replace=False)
            docs = tuple((f"sync{int(k)}", " ".join(rng.choice(WORDS, size=int(rng.integers(5, 40)))),
                          int(rng.integers(0, 3))) for k in picked)
            ops.append(Op("sync", docs=docs, doc_rows=tuple(
                doc_rows({"id": d[0], "text": d[1], "year": d[2]}) for d in docs)))
        elif r < 0.965:
            ops.append(Op("index"))  # build (or rebuild) an hnsw index: contents unchanged
        elif r < 0.98:
            ops.append(Op("cleanup"))  # remove every old version and unneeded file: contents unchanged
        elif r < 0.99:
            ops.append(Op("optimize"))  # compact, rebuild the index, clean up: contents unchanged
        else:
            ops.append(Op("drop_index"))
    return ops


Model = dict[str, Any]  # id -> (vector, year, text, tag); KEYWORD_KEY -> keyword columns


def new_model() -> Model:
    return {KEYWORD_KEY: ("text",)}


def apply(model: Model, op: Op) -> Model:
    m = dict(model)
    if op.kind in ("add", "upsert"):
        for i, v, y, text, tag in op.rows:
            m[i] = (v, y, text, tag)
    elif op.kind == "delete_ids":
        for i in op.ids:
            m.pop(i, None)
    elif op.kind == "delete_where":
        m = {i: r for i, r in m.items() if i == KEYWORD_KEY or not r[1] < op.cut}
    elif op.kind == "ingest":  # the document's old chunks go, its new ones come
        m = {i: r for i, r in m.items() if not i.startswith(op.doc[0] + "#")}
        for i, v, y, text, tag in op.rows:
            m[i] = (v, y, text, tag)
    elif op.kind == "keywords":
        m[KEYWORD_KEY] = op.columns
    elif op.kind == "update":
        m = {i: r if i == KEYWORD_KEY or not r[1] < op.cut else (r[0], op.value, *r[2:])
             for i, r in m.items()}
    elif op.kind == "sync":
        for step in op.partial_steps():
            m = apply(m, step)
    return m


def partial_models(model: Model, op: Op) -> list[Model]:
    """The states a kill during ``op`` may leave besides before and after: for a sync, each
    prefix of its documents applied (it commits them in groups, in order)."""
    if op.kind != "sync":
        return []
    out, m = [], model
    for step in op.partial_steps()[:-1]:
        m = apply(m, step)
        out.append(m)
    return out


def model_rows(model: Model) -> list[dict[str, Any]]:
    return [{"id": i, "year": r[1], "text": r[2], "tag": r[3]} for i, r in model.items() if i != KEYWORD_KEY]


REMOTE_KINDS = frozenset({"add", "upsert", "delete_ids", "delete_where", "cleanup"})
"""The writes a child in server mode sends over HTTP (the others have no route, or need the
toy embedder the server does not have, and run embedded in the same process)."""


def run(tbl: Any, op: Op) -> None:
    """Apply ``op`` through ``tbl`` (a Table, or a RemoteTable for :data:`REMOTE_KINDS`)."""
    if op.kind == "add":
        tbl.add([{"id": i, "vector": v, "year": y, "text": t, "tag": g} for i, v, y, t, g in op.rows])
    elif op.kind == "upsert":
        tbl.upsert([{"id": i, "vector": v, "year": y, "text": t, "tag": g} for i, v, y, t, g in op.rows])
    elif op.kind == "delete_ids":
        tbl.delete(ids=list(op.ids))
    elif op.kind == "delete_where":
        tbl.delete("year < ?", op.cut)
    elif op.kind == "compact":
        tbl.compact()
    elif op.kind == "ingest":
        tbl.add_documents([{"id": op.doc[0], "text": op.doc[1], "year": op.doc[2]}], chunking="naive",
                          chunk_tokens=12, overlap=0, progress=False)
    elif op.kind == "keywords":
        tbl.set_keyword_columns(list(op.columns))
    elif op.kind == "update":
        tbl.update({"year": op.value}, "year < ?", op.cut)
    elif op.kind == "sync":
        tbl.add_documents([{"id": d, "text": t, "year": y} for d, t, y in op.docs], chunking="naive",
                          chunk_tokens=12, overlap=0, progress=False, commit_every=0)
    elif op.kind == "index" and len(tbl) > 0:
        tbl.create_index("hnsw", m=8, ef_construction=40, progress=False)
    elif op.kind == "cleanup":
        tbl.cleanup(older_than=0)
    elif op.kind == "optimize":
        tbl.optimize(progress=False, cleanup_older_than=0)
    elif op.kind == "drop_index":
        tbl.drop_index()


RAY_KINDS = frozenset({"add", "upsert"})
"""The writes a child in Ray mode makes through the Ray sink's stage-and-publish path."""


def run_ray(tbl: Any, op: Op) -> None:
    """``op`` written as ``vecstore.ray.write_table`` writes it, without starting Ray: the sink is
    made on the driver (it opens the stage), each of up to three blocks is staged by the sink's
    ``write`` (a worker's task: one segment each), ``on_write_complete`` publishes them all in
    one commit, and the stage is removed as ``write_table`` does. A SIGKILL lands anywhere in
    that; starting a Ray session per kill would cost seconds each on two cores."""
    import pyarrow as pa
    from ray.data.datasource.datasink import WriteResult

    from vecstore.ray.sink import VecstoreDatasink
    from vecstore.storage.writer import remove_stage

    sink = VecstoreDatasink(tbl.path.parent, tbl.name, mode="append" if op.kind == "add" else "upsert")
    rows = pa.Table.from_pylist([{"id": i, "vector": list(v), "year": y, "text": t, "tag": g}
                                 for i, v, y, t, g in op.rows])
    step = -(-rows.num_rows // 3)
    returns = [sink.write([rows.slice(at, step)], None) for at in range(0, rows.num_rows, step)]
    try:
        sink.on_write_complete(WriteResult(num_rows=rows.num_rows, size_bytes=int(rows.nbytes),
                                           write_returns=returns))
    finally:
        remove_stage(sink.table_dir, sink.stage)


def serve_in_thread(store: str) -> Any:
    """Serve ``store`` with uvicorn in a daemon thread of this process; a RemoteTable of ``t``."""
    import socket
    import time

    import uvicorn

    from vecstore.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(store), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    return vecstore.connect(f"http://127.0.0.1:{port}").open_table("t")


def child(store: str, ops: list[Op], start: int, done_file: str, server: bool = False,
          ready: Any = None, ray: bool = False) -> None:
    """Apply ops[start:], appending each op's index to ``done_file`` (fsynced) once it returned.
    With ``server``, the writes of :data:`REMOTE_KINDS` go through a server running in this
    process (killed with it). ``ready`` (an event) is set once the writes start. With ``ray``,
    the writes of :data:`RAY_KINDS` go through the Ray sink (:func:`run_ray`)."""
    import vecstore.documents

    vecstore.documents.GROUP_CHUNKS = GROUP_CHUNKS
    # A forked child shares tqdm's multiprocessing lock (a semaphore) with the parent: killed
    # while an index build held it (tqdm takes it even for a disabled bar), it left the parent's
    # next tqdm call waiting for ever (seen: the full suite hung in a later create_index). A lock
    # of the child's own cannot be left held in the parent.
    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())
    tbl = vecstore.connect(store).open_table("t", embedder=ToyEmbedder())
    remote = serve_in_thread(store) if server else None
    fd = os.open(done_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    if ready is not None:
        ready.set()
    for i in range(start, len(ops)):
        if ray and ops[i].kind in RAY_KINDS:
            run_ray(tbl, ops[i])
            os.write(fd, f"{i}\n".encode())
            os.fsync(fd)
            continue
        run(remote if remote is not None and ops[i].kind in REMOTE_KINDS else tbl, ops[i])
        os.write(fd, f"{i}\n".encode())
        os.fsync(fd)
    os.close(fd)
    os._exit(0)


def table_content(path: Path) -> Model:
    tbl = vecstore.connect(path).open_table("t")
    rows = tbl.to_arrow(with_vectors=True).to_pylist()
    out: Model = {KEYWORD_KEY: tbl.keyword_config.columns}
    for r in rows:
        assert r["id"] not in out, f"duplicate id {r['id']}"
        out[r["id"]] = (tuple(round(float(x), 3) for x in r["vector"]), r["year"], r.get("text"),
                        r.get("tag"))
    return out


def same(a: Model, b: Model) -> bool:
    if a.keys() != b.keys() or a[KEYWORD_KEY] != b[KEYWORD_KEY]:
        return False
    return all(a[k][1:] == b[k][1:] and np.allclose(a[k][0], b[k][0], atol=1e-3)
               for k in a if k != KEYWORD_KEY)


def check_keyword(path: Path, model: Model, rng: np.random.Generator) -> None:
    """Keyword search over the reopened store equals BM25 rebuilt from the model's rows, with
    the keyword columns the model says are in force (with and without a filter)."""
    tbl = vecstore.connect(path).open_table("t")
    rows = model_rows(model)
    columns = model[KEYWORD_KEY]
    for _ in range(3):
        q = " ".join(rng.choice(WORDS, size=int(rng.integers(1, 4))))
        cut = int(rng.integers(0, 100))
        want = bm25_scores(rows, columns, "english", q)
        for where in (None, "year >= ?") if "year" in tbl.schema.names else (None,):
            query = tbl.search(q, mode="keyword").limit(5)
            allowed = None
            if where is not None:
                query = query.where(where, cut)
                allowed = [r["id"] for r in rows if r["year"] >= cut]
            problems = ranking_problems(query.to_list(), want, 5, allowed)
            assert not problems, f"keyword search for {q!r} ({where}, {cut}): {problems}"


def check_search(path: Path, model: Model, rng: np.random.Generator) -> None:
    tbl = vecstore.connect(path).open_table("t")
    if len(model) == 1:  # only the keyword columns: no row
        assert tbl.search(rng.normal(size=DIM)).limit(5).to_list() == []
        return
    q = rng.normal(size=DIM).astype(np.float32)
    ids = [i for i in model if i != KEYWORD_KEY]
    x = np.array([model[i][0] for i in ids], dtype=np.float32)
    s = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
    want = np.sort(s)[::-1][:5]
    hits = tbl.search(q).limit(5).exact().hits()
    np.testing.assert_allclose(hits.scores, want, atol=2e-3)
    # the approximate path: the right number of rows, all live, each with its true score
    got: Any = tbl.search(q).limit(5).hits()
    assert len(got) == len(want)
    for hit_id, score in zip(got.ids, got.scores, strict=True):
        v = np.array(model[hit_id][0], dtype=np.float32)
        assert abs(float(v @ q / (np.linalg.norm(v) * np.linalg.norm(q))) - score) < 2e-3


def orphans(table_dir: Path) -> list[str]:
    """Entries of data/, indexes/ and _versions/ that no version on disk names (temporary
    files included), leases left by dead processes and stages of Ray writes (``_staging/``,
    never needed once their writer is gone): what cleanup must leave none of."""
    from vecstore.storage.cleanup import manifest_files
    from vecstore.storage.manifest import list_versions, read_manifest

    needed: set[str] = set()
    for v in list_versions(table_dir):
        needed |= manifest_files(read_manifest(table_dir, v))
    out = []
    for sub in ("data", "indexes"):
        d = table_dir / sub
        if d.is_dir():
            out += [f"{sub}/{n}" for n in os.listdir(d) if f"{sub}/{n}" not in needed]
    out += [f"_versions/{n}" for n in os.listdir(table_dir / "_versions") if not n.endswith(".json")
            or n.startswith(".")]
    for sub in ("_leases", "_staging"):
        if (table_dir / sub).is_dir():
            out += [f"{sub}/{n}" for n in os.listdir(table_dir / sub)]
    return sorted(out)
