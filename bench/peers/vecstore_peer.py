"""vecstore, four ways: no index (binary -> int8 -> float32 scan), an hnswlib graph, a FAISS HNSW
graph over 4-bit codes, a FAISS binary HNSW graph over the sign codes. Filters are SQL with bound
parameters.

Built as applications build tables, with ``tbl.add`` calls of ``options.add_batch`` rows, and
asked as ``options.query_path`` says: by default ``tbl.search(q).where(...).limit(k).to_list()``
(:data:`bench.common.QUERY_PATHS`)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from bench.common import add_in_batches, arrow_rows, search_ids

from . import F32, I64, Filter, Knob, Peer, as_rows, attr_columns, reset_dir

DEFAULT_OVERSAMPLE = 16
HNSW_PARAMS: dict[str, Any] = {"m": 16, "ef_construction": 200}


def _rows_table(rows: I64, vectors: F32, attrs: pa.Table) -> pa.Table:
    ids = pa.array([str(int(r)) for r in rows], pa.string())
    return arrow_rows({"id": ids, **attr_columns(attrs)}, vectors)


class VecstorePeer(Peer):
    name = "vecstore"
    knob_name = "oversample"
    knob_grid: ClassVar[list[Knob]] = [1, 2, 4, 8, 16, 32, 64]
    knob_grid_quick: ClassVar[list[Knob] | None] = [2, 8, 16, 64]
    config = "no index: binary scan -> int8 -> float32 rescoring (`.rescore(oversample=..)`)"
    filter_note = (
        "`.where(sql, *params)`, answered from vecstore's sorted column indexes (DuckDB for other "
        "expressions); the planner scans the matches or uses the index"
    )
    index_kind: ClassVar[str | None] = None
    index_params: ClassVar[dict[str, Any]] = {}

    def build(self, vectors: F32, attrs: pa.Table) -> dict[str, float]:
        import time

        import vecstore

        reset_dir(self.path)
        t = time.perf_counter()
        self.tbl = vecstore.connect(self.path).create_table("bench", dim=vectors.shape[1])
        add_in_batches(self.tbl, _rows_table(np.arange(len(vectors)), vectors, attrs), self.options.add_batch)
        out = {"insert_s": time.perf_counter() - t}
        if self.index_kind is not None:
            t = time.perf_counter()
            # "": create_index() with no kind, the index the project recommends
            kind = (self.index_kind,) if self.index_kind else ()
            self.tbl.create_index(*kind, progress=False, **self.index_params)
            out["index_s"] = time.perf_counter() - t
        return out

    def open(self) -> None:
        import vecstore

        self.tbl = vecstore.connect(self.path).open_table("bench")

    def set_knob(self, knob: Knob) -> None:
        self.knob = knob

    def _query(self, q: Any, k: int, flt: Filter | None) -> Any:
        query = q.limit(k)
        if self.knob is not None:
            query = query.rescore(oversample=int(self.knob))
        if flt is not None:
            sql, params = flt.sql()
            query = query.where(sql, *params)
        return query

    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        ids, _ = search_ids(self._query(self.tbl.search(query), k, flt), self.options.query_path)
        return as_rows(ids)

    def search_batch(self, queries: F32, k: int, threads: int) -> list[I64] | None:
        batch = self._query(self.tbl.search_batch(queries, threads=threads), k, None)
        if self.options.query_path == "user":
            return [as_rows([row["id"] for row in rows]) for rows in batch.to_list()]
        return [as_rows(h.ids) for h in batch.select().hits()]

    def upsert(self, rows: I64, vectors: F32, attrs: pa.Table) -> None:
        self.tbl.upsert(_rows_table(rows, vectors, attrs))

    def delete(self, rows: I64) -> None:
        self.tbl.delete(ids=[str(int(r)) for r in rows])

    # text
    def ingest_texts(self, ids: list[str], texts: list[str], model_path: str, batch: int) -> None:
        import vecstore

        reset_dir(self.path)
        self.tbl = vecstore.connect(self.path).create_table("docs", embedder="default")
        for start in range(0, len(texts), batch):
            self.tbl.add(
                [
                    {"id": i, "text": t}
                    for i, t in zip(ids[start : start + batch], texts[start : start + batch], strict=True)
                ]
            )

    def search_text(self, text: str, k: int) -> list[str]:
        return list(self.tbl.search(text).limit(k).select().hits().ids)


class VecstoreDefaultPeer(VecstorePeer):
    name = "vecstore-default"
    knob_grid: ClassVar[list[Knob]] = [None, 32, 64]
    knob_grid_quick: ClassVar[list[Knob] | None] = [None, 64]
    config = (
        "`create_index()` with no arguments: the index the project recommends (`hnsw-int8`: a graph "
        "over int8 codes, ef and rescoring depth measured at build time); `.rescore(oversample)` above "
        "16 widens the candidates, rescored with float32"
    )
    index_kind = ""
    index_params: ClassVar[dict[str, Any]] = {}


class VecstoreHnswPeer(VecstorePeer):
    name = "vecstore-hnsw"
    knob_name = "(planner)"
    knob_grid: ClassVar[list[Knob]] = [None]
    knob_grid_quick: ClassVar[list[Knob] | None] = None
    config = (
        '`create_index("hnsw", m=16, ef_construction=200)` (hnswlib); ef chosen by the planner '
        "(no query-time knob), candidates rescored with float32"
    )
    index_kind = "hnsw"
    index_params: ClassVar[dict[str, Any]] = HNSW_PARAMS


class VecstoreHnswSqPeer(VecstorePeer):
    name = "vecstore-hnsw-sq"
    knob_grid: ClassVar[list[Knob]] = [None, 32, 64, 128]
    knob_grid_quick: ClassVar[list[Knob] | None] = [None, 64]
    config = (
        '`create_index("hnsw-sq", m=16, ef_construction=200)` (FAISS IndexHNSWSQ, 4-bit codes; ef and '
        "rescoring depth measured at build time); `.rescore(oversample)` above 16 widens the candidates, "
        "rescored with float32"
    )
    index_kind = "hnsw-sq"
    index_params: ClassVar[dict[str, Any]] = HNSW_PARAMS


class VecstoreBinaryHnswPeer(VecstorePeer):
    name = "vecstore-binary-hnsw"
    knob_grid: ClassVar[list[Knob]] = [2, 4, 8, 16, 32, 64]
    knob_grid_quick: ClassVar[list[Knob] | None] = [4, 16, 64]
    config = (
        '`create_index("binary-hnsw")` (FAISS IndexBinaryHNSW on the 48-byte sign codes), '
        "k x oversample candidates rescored int8 -> float32"
    )
    index_kind = "binary-hnsw"
    index_params: ClassVar[dict[str, Any]] = {}


__all__ = ["VecstoreBinaryHnswPeer", "VecstoreDefaultPeer", "VecstoreHnswPeer", "VecstoreHnswSqPeer",
           "VecstorePeer"]
