"""LanceDB (embedded, ``lancedb.connect(dir)``), two of the index types its docs describe:

- ``IVF_PQ`` (``metric="cosine"``, default partitions and sub-vectors), which the docs recommend
  when searches carry ``where(...)`` filters; knob ``(nprobes, refine_factor)``;
- ``IVF_HNSW_SQ`` (defaults m=20, ef_construction=300); knob ``ef``.

Both with BTREE scalar indexes on ``month``, ``download_rank`` and ``name``, as the docs advise
for filtered search, and ``where(sql, prefilter=True)``. Single-threaded runs set
``LANCE_CPU_THREADS`` in the process environment before LanceDB starts.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from bench.common import arrow_rows

from . import EF_GRID, EF_GRID_QUICK, F32, I64, Filter, Knob, Peer, as_rows, attr_columns, reset_dir

_TABLE = "bench"


def _arrow(rows: I64, vectors: F32, attrs: pa.Table) -> pa.Table:
    return arrow_rows({"id": pa.array(rows, pa.int64()), **attr_columns(attrs)}, vectors)


class LanceIvfPqPeer(Peer):
    name = "lancedb-ivf-pq"
    knob_name = "(nprobes, refine_factor)"
    knob_grid: ClassVar[list[Knob]] = [(10, 1), (20, 5), (20, 10), (40, 10), (40, 30), (80, 30), (160, 50)]
    knob_grid_quick: ClassVar[list[Knob] | None] = [(10, 1), (20, 10), (80, 30)]
    index_type = "IVF_PQ"
    config = '`create_index(metric="cosine", index_type="IVF_PQ")` (defaults) + BTREE on the filter columns'
    filter_note = "`.where(sql, prefilter=True)` (DataFusion SQL), BTREE scalar indexes"

    def build(self, vectors: F32, attrs: pa.Table) -> dict[str, float]:
        import time

        import lancedb

        reset_dir(self.path)
        t = time.perf_counter()
        self.db = lancedb.connect(self.path)
        self.tbl = self.db.create_table(_TABLE, data=_arrow(np.arange(len(vectors)), vectors, attrs))
        out = {"insert_s": time.perf_counter() - t}
        t = time.perf_counter()
        self._create_vector_index()
        out["index_s"] = time.perf_counter() - t
        t = time.perf_counter()
        for col in ("month", "download_rank", "name"):
            self.tbl.create_scalar_index(col, index_type="BTREE")
        out["scalar_index_s"] = time.perf_counter() - t
        return out

    def _create_vector_index(self) -> None:
        self.tbl.create_index(metric="cosine", index_type=self.index_type)

    def index_info(self) -> str:
        try:
            stats = self.tbl.index_stats("vector_idx")
            return (
                f"{stats.index_type}, {stats.num_indices} index, {stats.num_indexed_rows} rows indexed"
                if stats is not None
                else ""
            )
        except Exception as exc:  # noqa: BLE001 - informational only
            return f"({exc})"

    def open(self) -> None:
        import lancedb

        self.db = lancedb.connect(self.path)
        self.tbl = self.db.open_table(_TABLE)

    def _tune(self, q: Any) -> Any:
        nprobes, refine = self.knob
        q = q.nprobes(int(nprobes))
        return q.refine_factor(int(refine)) if refine and refine > 1 else q

    def _query(self, query: Any, k: int, flt: Filter | None) -> Any:
        q = self.tbl.search(query).distance_type("cosine").limit(k).select(["id", "_distance"])
        if self.knob is not None:
            q = self._tune(q)
        if flt is not None:
            sql, _ = flt.sql(placeholders=False)
            q = q.where(sql, prefilter=True)
        return q

    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        return as_rows(self._query(query, k, flt).to_arrow().column("id").to_numpy())

    def search_batch(self, queries: F32, k: int, threads: int) -> list[I64] | None:
        t = self._query(list(queries), k, None).with_row_id(False).to_arrow()
        qi = t.column("query_index").to_numpy()
        ids = t.column("id").to_numpy()
        return [ids[qi == i].astype(np.int64) for i in range(len(queries))]

    def upsert(self, rows: I64, vectors: F32, attrs: pa.Table) -> None:
        (
            self.tbl.merge_insert("id")
            .when_matched_update_all()
            .when_not_matched_insert_all()
            .execute(_arrow(rows, vectors, attrs))
        )

    def delete(self, rows: I64) -> None:
        for s in range(0, len(rows), 5000):
            self.tbl.delete("id IN (" + ",".join(str(int(r)) for r in rows[s : s + 5000]) + ")")

    # text
    def ingest_texts(self, ids: list[str], texts: list[str], model_path: str, batch: int) -> None:
        import lancedb
        from lancedb.embeddings import get_registry
        from lancedb.pydantic import LanceModel, Vector

        reset_dir(self.path)
        func = (
            get_registry().get("sentence-transformers").create(name=model_path, device="cpu", normalize=True)
        )

        class Doc(LanceModel):
            id: str
            text: str = func.SourceField()
            vector: Vector(func.ndims()) = func.VectorField()  # type: ignore[valid-type]

        self.db = lancedb.connect(self.path)
        self.tbl = self.db.create_table("docs", schema=Doc)
        for s in range(0, len(texts), batch):
            self.tbl.add(
                [{"id": i, "text": t} for i, t in zip(ids[s : s + batch], texts[s : s + batch], strict=True)]
            )

    def search_text(self, text: str, k: int) -> list[str]:
        return self.tbl.search(text).limit(k).select(["id", "_distance"]).to_arrow().column("id").to_pylist()


class LanceHnswSqPeer(LanceIvfPqPeer):
    name = "lancedb-ivf-hnsw-sq"
    knob_name = "ef"
    knob_grid: ClassVar[list[Knob]] = EF_GRID
    knob_grid_quick: ClassVar[list[Knob] | None] = EF_GRID_QUICK
    index_type = "IVF_HNSW_SQ"
    config = '`create_index(metric="cosine", index_type="IVF_HNSW_SQ")` (m=20, ef_construction=300) + BTREE'

    def _tune(self, q: Any) -> Any:
        return q.ef(int(self.knob))
