"""A seeded sequence of writes, a Python model of what each prefix of it leaves in the table,
and a child-process runner that records each write once it has returned."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import vecstore

DIM = 8


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


def doc_rows(doc: dict[str, Any]) -> tuple[tuple[str, tuple[float, ...], int], ...]:
    """The chunk rows add_documents stores for ``doc`` (id, rounded vector, year)."""
    from vecstore.ingest import chunk_documents

    out = chunk_documents([doc], ToyEmbedder(), chunking="naive", chunk_tokens=12, overlap=0,
                          progress=False)
    t = out.table
    return tuple((i, tuple(round(float(x), 3) for x in v), doc["year"]) for i, v in
                 zip(t.column("id").to_pylist(), t.column("vector").to_pylist(), strict=True))


Rows = tuple[tuple[str, tuple[float, ...], int], ...]


@dataclass(frozen=True)
class Op:
    kind: str  # add | upsert | delete_ids | delete_where | compact | index | ingest | update | sync
    doc: tuple[str, str, int] = ("", "", 0)  # ingest: (doc id, text, year)
    rows: Rows = ()
    ids: tuple[str, ...] = ()
    cut: int = 0
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


def make_ops(seed: int, n: int) -> list[Op]:
    rng = np.random.default_rng(seed)
    ops: list[Op] = []
    live: set[str] = set()
    next_id = 0
    for _ in range(n):
        r = rng.random()
        if r < 0.35 or not live:
            rows = []
            for _ in range(int(rng.integers(1, 40))):
                rows.append((f"id{next_id}", tuple(rng.normal(size=DIM).round(3).tolist()),
                             int(rng.integers(0, 100))))
                live.add(f"id{next_id}")
                next_id += 1
            ops.append(Op("add", rows=tuple(rows)))
        elif r < 0.6:
            pick = rng.choice(sorted(live), size=min(len(live), int(rng.integers(1, 10))), replace=False)
            rows = [(str(i), tuple(rng.normal(size=DIM).round(3).tolist()), int(rng.integers(0, 100)))
                    for i in pick]
            rows.append((f"id{next_id}", tuple(rng.normal(size=DIM).round(3).tolist()), 1))
            live.add(f"id{next_id}")
            next_id += 1
            ops.append(Op("upsert", rows=tuple(rows)))
        elif r < 0.75:
            pick = rng.choice(sorted(live), size=min(len(live), int(rng.integers(1, 6))), replace=False)
            live -= set(map(str, pick))
            ops.append(Op("delete_ids", ids=tuple(map(str, pick))))
        elif r < 0.86:
            ops.append(Op("delete_where", cut=int(rng.integers(0, 12))))
            # the model decides which ids go; `live` is only a hint for picking ids
        elif r < 0.90:
            ops.append(Op("compact"))
        elif r < 0.94:
            words = rng.choice(WORDS, size=int(rng.integers(5, 60)))
            doc = (f"doc{int(rng.integers(0, 6))}", " ".join(words), int(rng.integers(0, 100)))
            ops.append(Op("ingest", doc=doc, rows=doc_rows({"id": doc[0], "text": doc[1], "year": doc[2]})))
        elif r < 0.965:
            ops.append(Op("update", cut=int(rng.integers(0, 30)), value=int(rng.integers(0, 100))))
        elif r < 0.985:  # an incremental ingest of several documents, committed group by group
            picked = rng.choice(8, size=int(rng.integers(2, 6)), replace=False)
            docs = tuple((f"sync{int(k)}", " ".join(rng.choice(WORDS, size=int(rng.integers(5, 40)))),
                          int(rng.integers(0, 3))) for k in picked)
            ops.append(Op("sync", docs=docs, doc_rows=tuple(
                doc_rows({"id": d[0], "text": d[1], "year": d[2]}) for d in docs)))
        else:
            ops.append(Op("index"))  # build (or rebuild) an hnsw index: contents unchanged
    return ops


Model = dict[str, tuple[tuple[float, ...], int]]


def apply(model: Model, op: Op) -> Model:
    m = dict(model)
    if op.kind in ("add", "upsert"):
        for i, v, y in op.rows:
            m[i] = (v, y)
    elif op.kind == "delete_ids":
        for i in op.ids:
            m.pop(i, None)
    elif op.kind == "delete_where":
        m = {i: (v, y) for i, (v, y) in m.items() if not y < op.cut}
    elif op.kind == "ingest":  # the document's old chunks go, its new ones come
        m = {i: vy for i, vy in m.items() if not i.startswith(op.doc[0] + "#")}
        for i, v, y in op.rows:
            m[i] = (v, y)
    elif op.kind == "update":
        m = {i: (v, op.value if y < op.cut else y) for i, (v, y) in m.items()}
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


def run(tbl: vecstore.Table, op: Op) -> None:
    if op.kind == "add":
        tbl.add([{"id": i, "vector": v, "year": y} for i, v, y in op.rows])
    elif op.kind == "upsert":
        tbl.upsert([{"id": i, "vector": v, "year": y} for i, v, y in op.rows])
    elif op.kind == "delete_ids":
        tbl.delete(ids=list(op.ids))
    elif op.kind == "delete_where":
        tbl.delete("year < ?", op.cut)
    elif op.kind == "compact":
        tbl.compact()
    elif op.kind == "ingest":
        tbl.add_documents([{"id": op.doc[0], "text": op.doc[1], "year": op.doc[2]}], chunking="naive",
                          chunk_tokens=12, overlap=0, progress=False)
    elif op.kind == "update":
        tbl.update({"year": op.value}, "year < ?", op.cut)
    elif op.kind == "sync":
        tbl.add_documents([{"id": d, "text": t, "year": y} for d, t, y in op.docs], chunking="naive",
                          chunk_tokens=12, overlap=0, progress=False, commit_every=0)
    elif op.kind == "index" and len(tbl) > 0:
        tbl.create_index("hnsw", m=8, ef_construction=40, progress=False)


def child(store: str, ops: list[Op], start: int, done_file: str) -> None:
    """Apply ops[start:], appending each op's index to ``done_file`` (fsynced) once it returned."""
    import vecstore.documents

    vecstore.documents.GROUP_CHUNKS = GROUP_CHUNKS
    tbl = vecstore.connect(store).open_table("t", embedder=ToyEmbedder())
    fd = os.open(done_file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for i in range(start, len(ops)):
        run(tbl, ops[i])
        os.write(fd, f"{i}\n".encode())
        os.fsync(fd)
    os.close(fd)
    os._exit(0)


def table_content(path: Path) -> Model:
    tbl = vecstore.connect(path).open_table("t")
    rows = tbl.to_arrow(with_vectors=True).to_pylist()
    out: Model = {}
    for r in rows:
        assert r["id"] not in out, f"duplicate id {r['id']}"
        out[r["id"]] = (tuple(round(float(x), 3) for x in r["vector"]), r["year"])
    return out


def same(a: Model, b: Model) -> bool:
    if a.keys() != b.keys():
        return False
    return all(a[k][1] == b[k][1] and np.allclose(a[k][0], b[k][0], atol=1e-3) for k in a)


def check_search(path: Path, model: Model, rng: np.random.Generator) -> None:
    tbl = vecstore.connect(path).open_table("t")
    if not model:
        assert tbl.search(rng.normal(size=DIM)).limit(5).to_list() == []
        return
    q = rng.normal(size=DIM).astype(np.float32)
    ids = list(model)
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
