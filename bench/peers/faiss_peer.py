"""FAISS ``IndexHNSWFlat`` (inner product on unit vectors = cosine), ``HNSW32`` as the FAISS wiki's
index-choice guide suggests, with FAISS's default efConstruction (40); query-time ``efSearch``
through ``SearchParametersHNSW``.

Filters: an ``IDSelectorBitmap`` of the allowed rows (computed with ``pyarrow.compute`` over the
attribute columns kept beside the index). FAISS's HNSW cannot remove or replace vectors, so this
adapter does what an application must: an update appends the new vector under a new internal id
(mapped back to the row) and tombstones the old one; deletes are tombstones; every search after a
write passes the tombstones through the selector.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

from . import EF_GRID, EF_GRID_QUICK, F32, I64, Filter, Knob, Peer, reset_dir

_INDEX = "hnsw.faiss"
_ATTRS = "attrs.arrow"


class FaissHnswPeer(Peer):
    name = "faiss-hnsw"
    knob_name = "efSearch"
    knob_grid: ClassVar[list[Knob]] = EF_GRID
    knob_grid_quick: ClassVar[list[Knob] | None] = EF_GRID_QUICK
    config = (
        "`IndexHNSWFlat(d, 32, METRIC_INNER_PRODUCT)` (efConstruction 40, the default); attributes in Arrow"
    )
    filter_note = "`SearchParametersHNSW(sel=IDSelectorBitmap)`; bitmap from `pyarrow.compute`"

    def build(self, vectors: F32, attrs: pa.Table) -> dict[str, float]:
        import time

        import faiss

        reset_dir(self.path)
        faiss.omp_set_num_threads(self.threads)
        t = time.perf_counter()
        index = faiss.IndexHNSWFlat(vectors.shape[1], 32, faiss.METRIC_INNER_PRODUCT)
        index.add(np.ascontiguousarray(vectors))
        faiss.write_index(index, str(self.path / _INDEX))
        feather.write_feather(attrs, self.path / _ATTRS, compression="uncompressed")
        self.index, self.attrs = index, attrs
        return {"index_s": time.perf_counter() - t}

    def open(self) -> None:
        import faiss

        faiss.omp_set_num_threads(1)
        self.attrs = feather.read_table(self.path / _ATTRS, memory_map=True)
        self.index = faiss.read_index(str(self.path / _INDEX))
        self.rows_of: I64 = np.arange(self.index.ntotal, dtype=np.int64)  # internal id -> row
        self.internal_of: I64 = np.arange(self.index.ntotal, dtype=np.int64)  # row -> internal id
        self.live: np.ndarray | None = None  # internal ids not tombstoned (None: all)

    def set_knob(self, knob: Knob) -> None:
        self.knob = knob

    def _params(self, flt: Filter | None) -> tuple[Any, Any]:
        import faiss

        ef = int(self.knob) if self.knob is not None else self.index.hnsw.efSearch
        allowed = None
        if flt is not None:
            row_mask = flt.mask(self.attrs)
            allowed = row_mask[self.rows_of]
        if self.live is not None:
            allowed = self.live if allowed is None else allowed & self.live
        if allowed is None:
            return faiss.SearchParametersHNSW(efSearch=ef), None
        bits = np.packbits(allowed, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
        return faiss.SearchParametersHNSW(efSearch=ef, sel=sel), (bits, sel)

    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        params, _keep = self._params(flt)
        _, labels = self.index.search(query[None, :], k, params=params)
        labels = labels[0]
        return self.rows_of[labels[labels >= 0]]

    def search_batch(self, queries: F32, k: int, threads: int) -> list[I64] | None:
        import faiss

        faiss.omp_set_num_threads(threads)
        params, _keep = self._params(None)
        _, labels = self.index.search(np.ascontiguousarray(queries), k, params=params)
        faiss.omp_set_num_threads(1)
        return [self.rows_of[row[row >= 0]] for row in labels]

    def _tombstone(self, internal: I64) -> None:
        if self.live is None:
            self.live = np.ones(self.index.ntotal, dtype=bool)
        self.live[internal] = False

    def upsert(self, rows: I64, vectors: F32, attrs: pa.Table) -> None:
        import faiss

        faiss.omp_set_num_threads(self.threads)
        self._tombstone(self.internal_of[rows])
        start = self.index.ntotal
        self.index.add(np.ascontiguousarray(vectors))
        new = np.arange(start, self.index.ntotal, dtype=np.int64)
        self.rows_of = np.concatenate([self.rows_of, rows.astype(np.int64)])
        self.internal_of[rows] = new
        assert self.live is not None
        self.live = np.concatenate([self.live, np.ones(len(new), dtype=bool)])
        faiss.omp_set_num_threads(1)

    def delete(self, rows: I64) -> None:
        self._tombstone(self.internal_of[rows])
