"""hnswlib (the library vecstore's ``hnsw`` index wraps), configured as its README does:
``space="ip"`` on unit vectors, ``M=16``, ``ef_construction=200``, query-time ``ef``.

Filters go through hnswlib's ``filter`` callback (a Python call per visited node); the allowed rows
come from ``pyarrow.compute`` over the attribute columns, kept beside the index in an Arrow file.
Updates re-add a label (hnswlib replaces the vector and relinks it); deletes are
``mark_deleted``.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from . import EF_GRID, EF_GRID_QUICK, F32, I64, Filter, Knob, Peer, reset_dir

_INDEX = "hnsw.bin"
_ATTRS = "attrs.arrow"


class HnswlibPeer(Peer):
    name = "hnswlib"
    knob_name = "ef"
    knob_grid: ClassVar[list[Knob]] = EF_GRID
    knob_grid_quick: ClassVar[list[Knob] | None] = EF_GRID_QUICK
    config = '`Index(space="ip")`, M=16, ef_construction=200; attributes in an Arrow file beside it'
    filter_note = "`knn_query(filter=callback)`; allowed rows from `pyarrow.compute` over the attributes"

    def build(self, vectors: F32, attrs: pa.Table) -> dict[str, float]:
        import time

        import hnswlib

        reset_dir(self.path)
        t = time.perf_counter()
        n, dim = vectors.shape
        index = hnswlib.Index(space="ip", dim=dim)
        index.init_index(max_elements=n, ef_construction=200, M=16, random_seed=100)
        index.add_items(np.ascontiguousarray(vectors), np.arange(n), num_threads=self.threads)
        index.save_index(str(self.path / _INDEX))
        feather.write_feather(attrs, self.path / _ATTRS, compression="uncompressed")
        self.index, self.attrs = index, attrs
        return {"index_s": time.perf_counter() - t}

    def open(self) -> None:
        import hnswlib

        self.attrs = feather.read_table(self.path / _ATTRS, memory_map=True)
        self.index = hnswlib.Index(space="ip", dim=384)
        self.index.load_index(str(self.path / _INDEX), max_elements=self.attrs.num_rows)
        self.index.set_num_threads(1)

    def set_knob(self, knob: Knob) -> None:
        self.knob = knob
        self.index.set_ef(int(knob))

    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        callback = None
        if flt is not None:
            allowed = flt.mask(self.attrs)

            def callback(label: int) -> bool:
                return bool(allowed[label])

        while k > 0:
            try:
                labels, _ = self.index.knn_query(query, k=k, num_threads=1, filter=callback)
                return labels[0].astype(np.int64)
            except RuntimeError:  # fewer than k reachable allowed labels: hnswlib refuses
                k //= 2
        return np.empty(0, dtype=np.int64)

    def search_batch(self, queries: F32, k: int, threads: int) -> list[I64] | None:
        labels, _ = self.index.knn_query(queries, k=k, num_threads=threads)
        return [row.astype(np.int64) for row in labels]

    def upsert(self, rows: I64, vectors: F32, attrs: pa.Table) -> None:
        self.index.add_items(np.ascontiguousarray(vectors), rows, num_threads=self.threads)

    def delete(self, rows: I64) -> None:
        for r in rows:
            self.index.mark_deleted(int(r))
