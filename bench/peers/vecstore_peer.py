"""vecstore, four ways: no index (binary -> int8 -> float32 scan), an hnswlib graph, a FAISS HNSW
graph over 4-bit codes, a FAISS binary HNSW graph over the sign codes. Filters are SQL with bound
parameters."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from . import F32, I64, Filter, Knob, Peer, as_rows, reset_dir

DEFAULT_OVERSAMPLE = 16


def _rows_table(rows: I64, vectors: F32, attrs: pa.Table) -> pa.Table:
    dim = vectors.shape[1]
    return pa.table(
        {
            "id": pa.array([str(int(r)) for r in rows], pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.ascontiguousarray(vectors).reshape(-1)), dim
            ),
            "name": attrs.column("name"),
            "month": attrs.column("month"),
            "download_rank": attrs.column("download_rank"),
        }
    )


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
        self.tbl.add(_rows_table(np.arange(len(vectors)), vectors, attrs))
        out = {"insert_s": time.perf_counter() - t}
        if self.index_kind is not None:
            t = time.perf_counter()
            self.tbl.create_index(self.index_kind, progress=False, **self.index_params)
            out["index_s"] = time.perf_counter() - t
        return out

    def open(self) -> None:
        import vecstore

        self.tbl = vecstore.connect(self.path).open_table("bench")

    def set_knob(self, knob: Knob) -> None:
        self.knob = knob

    def _query(self, q: Any, k: int, flt: Filter | None) -> Any:
        query = q.limit(k).select()
        if self.knob is not None:
            query = query.rescore(oversample=int(self.knob))
        if flt is not None:
            sql, params = flt.sql()
            query = query.where(sql, *params)
        return query

    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        return as_rows(self._query(self.tbl.search(query), k, flt).hits().ids)

    def search_batch(self, queries: F32, k: int, threads: int) -> list[I64] | None:
        if not hasattr(self.tbl, "search_batch"):
            return None
        hits = self._query(self.tbl.search_batch(queries, threads=threads), k, None).hits()
        return [as_rows(h.ids) for h in hits]

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
    index_params: ClassVar[dict[str, Any]] = {"m": 16, "ef_construction": 200}


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
    index_params: ClassVar[dict[str, Any]] = {"m": 16, "ef_construction": 200}


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


__all__ = ["VecstoreBinaryHnswPeer", "VecstoreHnswPeer", "VecstoreHnswSqPeer", "VecstorePeer"]
