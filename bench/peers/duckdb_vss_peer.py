"""DuckDB with the ``vss`` extension (loaded from the ``duckdb-extension-vss`` package: ``INSTALL``
needs the internet). As its docs show: ``CREATE INDEX ... USING HNSW (vec) WITH (metric =
'cosine')`` (defaults M=16, ef_construction=128), ``ORDER BY array_cosine_distance(vec, q) LIMIT
k``, ``SET hnsw_ef_search``. A disk-backed database needs ``SET
hnsw_enable_experimental_persistence = true`` (the docs warn that WAL recovery of the index is
not implemented).

Filters: a plain ``WHERE``. The planner keeps the HNSW index scan and applies the ``WHERE`` to the
k rows it returns (``EXPLAIN`` shows ``HNSW_INDEX_SCAN`` under the filter), so a selective filter
returns fewer than k rows; this adapter reports what DuckDB returns.
"""

from __future__ import annotations

import os
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from bench.common import arrow_rows

from . import EF_GRID, EF_GRID_QUICK, F32, I64, Filter, Knob, Peer, attr_columns, reset_dir

_DB = "bench.duckdb"


def _connect(path: Any, threads: int) -> Any:
    import duckdb
    import duckdb_extension_vss

    ext_dir = os.path.join(
        os.path.dirname(duckdb_extension_vss.__file__), "extensions", f"v{duckdb.__version__}"
    )
    con = duckdb.connect(str(path / _DB))
    con.execute(f"LOAD '{os.path.join(ext_dir, 'vss.duckdb_extension')}'")
    con.execute("SET hnsw_enable_experimental_persistence = true")
    con.execute(f"SET threads = {int(threads)}")
    return con


def _arrow(rows: I64, vectors: F32, attrs: pa.Table) -> pa.Table:
    columns = {"row": pa.array(rows, pa.int64()), **attr_columns(attrs)}
    return arrow_rows(columns, vectors, vector_name="vec")


class DuckdbVssPeer(Peer):
    name = "duckdb-vss"
    knob_name = "hnsw_ef_search"
    knob_grid: ClassVar[list[Knob]] = EF_GRID
    knob_grid_quick: ClassVar[list[Knob] | None] = EF_GRID_QUICK
    config = (
        "`CREATE INDEX .. USING HNSW (vec) WITH (metric='cosine')` (M=16, ef_construction=128), persisted"
    )
    filter_note = "`WHERE` in the same SQL; applied after the HNSW index scan returns k rows"

    def build(self, vectors: F32, attrs: pa.Table) -> dict[str, float]:
        import time

        reset_dir(self.path)
        self.con = _connect(self.path, self.threads)
        data = _arrow(np.arange(len(vectors)), vectors, attrs)  # noqa: F841 - read by DuckDB
        t = time.perf_counter()
        dim = vectors.shape[1]
        self.con.execute(
            f"CREATE TABLE items AS SELECT row, name, month, download_rank, vec::FLOAT[{dim}] AS vec "
            "FROM data"
        )
        out = {"insert_s": time.perf_counter() - t}
        t = time.perf_counter()
        self.con.execute("CREATE INDEX items_hnsw ON items USING HNSW (vec) WITH (metric = 'cosine')")
        self.con.execute("CHECKPOINT")
        out["index_s"] = time.perf_counter() - t
        self.dim = dim
        return out

    def open(self) -> None:
        self.con = _connect(self.path, 1)
        self.dim = 384

    def close(self) -> None:
        self.con.close()

    def set_knob(self, knob: Knob) -> None:
        self.knob = knob
        self.con.execute(f"SET hnsw_ef_search = {int(knob)}")

    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        where, params = ("", []) if flt is None else flt.sql()
        sql = (
            f"SELECT row FROM items {'WHERE ' + where if where else ''} "
            f"ORDER BY array_cosine_distance(vec, ?::FLOAT[{self.dim}]) LIMIT {int(k)}"
        )
        rows = self.con.execute(sql, [*params, query.tolist()]).fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def upsert(self, rows: I64, vectors: F32, attrs: pa.Table) -> None:
        upd = _arrow(rows, vectors, attrs)  # noqa: F841 - read by DuckDB
        self.con.execute(
            f"UPDATE items SET vec = upd.vec::FLOAT[{self.dim}] FROM upd WHERE items.row = upd.row"
        )

    def delete(self, rows: I64) -> None:
        gone = pa.table({"row": pa.array(rows, pa.int64())})  # noqa: F841 - read by DuckDB
        self.con.execute("DELETE FROM items WHERE row IN (SELECT row FROM gone)")
