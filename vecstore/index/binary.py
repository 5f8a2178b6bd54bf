"""Binary first-stage backends over sign codes: ``binary-hnsw`` and ``binary-ivf``.

They are built from (and queried with) float vectors, which they reduce to sign codes: bit ``j``
of a vector is ``x[j] > 0``, packed with ``np.packbits(..., bitorder="little")`` (dimensions
padded with zero bits to a multiple of 8, which adds no distance). They return *candidates*
ranked by Hamming distance, scored ``-hamming``; the caller rescores them (int8, then float32)
and should ask for ``k * oversample`` of them. A query ends up compared with 1 bit per
dimension, so 384-d MiniLM vectors take 48 bytes each.

Filtering: ``binary-hnsw`` passes the ``allow`` bitmap to FAISS as an ``IDSelectorBitmap`` (same
caveat as ``faiss-hnsw``: fewer than ``k`` may come back under selective filters).
``IndexBinaryIVF`` rejects selectors (FAISS 1.15: "IDSelector is not supported for
IndexBinaryIVF"), so ``binary-ivf`` fetches ``ceil(2 k / selectivity)`` candidates and filters
them; under selective filters that can also come back short. Neither sets ``exact_count``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import Metric
from ..errors import CorruptStoreError, InvalidArgumentError
from .base import (
    AllowBitmap,
    FloatMatrix,
    IndexBase,
    IndexParams,
    LabelMatrix,
    as_matrix,
    calibrate_effort,
    check_int,
    chunks,
    params_error,
    progress_bar,
)
from .faiss_index import (
    Selector,
    auto_nlist,
    beam_effort,
    faiss_module,
    ivf_effort,
    nprobe_grid,
    omp_threads,
    training_sample,
)

CodeMatrix = npt.NDArray[np.uint8]


def sign_codes(vectors: FloatMatrix) -> CodeMatrix:
    """``[n, ceil(d / 8)]`` uint8 sign codes: bit ``j`` (little-endian within a byte) is ``x[j] > 0``."""
    return np.packbits(np.asarray(vectors) > 0, axis=1, bitorder="little")


class BinaryIndexBase(IndexBase):
    """Shared search, save and load of a FAISS ``IndexBinary`` over sign codes."""

    exact_count = False

    def __init__(self, index: Any, params: IndexParams, metric: Metric, dim: int) -> None:
        super().__init__(params, metric, dim, int(index.ntotal))
        self._index = index

    @classmethod
    def file_name(cls) -> str:
        return f"{cls.kind}.faissbin"

    @property
    def code_bytes(self) -> int:
        """Bytes per sign code."""
        return -(-self.dim // 8)

    def prepare_queries(self, queries: npt.ArrayLike) -> FloatMatrix:
        # Signs do not change under normalisation: skip it.
        q = np.asarray(queries)
        q = as_matrix(q.reshape(1, -1) if q.ndim == 1 else q, "queries")
        if q.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"queries have dimension {q.shape[1]}, the index has {self.dim}"
            )
        return q

    @staticmethod
    def _to_scores(dist: np.ndarray, labels: np.ndarray) -> FloatMatrix:
        scores = np.negative(dist, dtype=np.float32)
        scores[labels < 0] = -np.inf
        return scores

    @classmethod
    def _add_chunks(cls, index: Any, codes: CodeMatrix, progress: bool) -> None:
        with progress_bar(codes.shape[0], f"building {cls.kind}", progress) as bar:
            for start, stop in chunks(codes.shape[0]):
                index.add(codes[start:stop])
                bar.update(stop - start)

    def _writers(self) -> dict[str, Callable[[Path], None]]:
        faiss = faiss_module()
        return {self.file_name(): lambda path: faiss.write_index_binary(self._index, str(path))}

    @classmethod
    def _read(cls, directory: Path, params: Any, metric: Metric, dim: int,
              count: int) -> BinaryIndexBase:
        faiss = faiss_module()
        path = directory / cls.file_name()
        try:
            index = faiss.read_index_binary(str(path))
        except (RuntimeError, MemoryError) as exc:
            raise CorruptStoreError(f"index file {path} is unreadable by FAISS ({exc})") from exc
        if index.d != 8 * (-(-dim // 8)):
            raise CorruptStoreError(f"index file {path} has {index.d} bits per code, expected {dim}")
        return cls(index, params, metric, dim)


@dataclass(frozen=True)
class BinaryHnswParams(IndexParams):
    """Build parameters of ``IndexBinaryHNSW``.

    Attributes:
        m: links per node (the base layer keeps ``2 m``).
        ef_construction: breadth of the search that picks each new node's links.
    """

    m: int = 16
    ef_construction: int = 200

    def __post_init__(self) -> None:
        check_int("m", self.m, 2, 512)
        check_int("ef_construction", self.ef_construction, 1, 1 << 16)


class BinaryHnswIndex(BinaryIndexBase):
    """FAISS ``IndexBinaryHNSW`` over sign codes: candidates by Hamming distance."""

    kind = "binary-hnsw"
    params_type = BinaryHnswParams
    params: BinaryHnswParams

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: BinaryHnswParams,
               progress: bool, threads: int | None) -> BinaryHnswIndex:
        faiss = faiss_module()
        codes = sign_codes(vectors)
        index = faiss.IndexBinaryHNSW(codes.shape[1] * 8, params.m)
        index.hnsw.efConstruction = params.ef_construction
        with omp_threads(threads):
            cls._add_chunks(index, codes, progress)
        return cls(index, params, metric, vectors.shape[1])

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int) -> tuple[FloatMatrix, LabelMatrix]:
        faiss = faiss_module()
        selector = Selector(allow) if allow is not None else None
        p = faiss.SearchParametersHNSW()
        p.efSearch = max(effort, k)
        if selector is not None:
            p.sel = selector.sel
        dist, labels = self._index.search(sign_codes(queries), k, params=p)
        del p, selector
        return self._to_scores(dist, labels), labels.astype(np.int64, copy=False)

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``ef`` as for ``faiss-hnsw`` with 4 allowed nodes per result in the beam:
        :func:`~vecstore.index.faiss_index.beam_effort`."""
        check_int("k", k, 1)
        return beam_effort(k, selectivity, self._count, per_result=4.0)

    @property
    def memory_bytes(self) -> int:
        h = self._index.hnsw
        return int(self._count * self.code_bytes + h.neighbors.size() * 4
                   + h.levels.size() * 4 + h.offsets.size() * 8)


@dataclass(frozen=True)
class BinaryIvfParams(IndexParams):
    """Build parameters of ``IndexBinaryIVF``.

    Attributes:
        nlist: inverted lists (binary k-means centroids); ``None``: ``4 sqrt(n)``, at least 39
            vectors per list.
        nprobe: lists probed for k = 10 without a filter; ``None``: measured at build time,
            the smallest reaching recall@10 >= 0.95 against exact Hamming ranks.
    """

    nlist: int | None = None
    nprobe: int | None = None

    def __post_init__(self) -> None:
        check_int("nlist", self.nlist, 1, 1 << 20, optional=True)
        check_int("nprobe", self.nprobe, 1, 1 << 20, optional=True)


class BinaryIvfIndex(BinaryIndexBase):
    """FAISS ``IndexBinaryIVF`` over sign codes: candidates by Hamming distance."""

    kind = "binary-ivf"
    params_type = BinaryIvfParams
    params: BinaryIvfParams

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: BinaryIvfParams,
               progress: bool, threads: int | None) -> BinaryIvfIndex:
        faiss = faiss_module()
        n = vectors.shape[0]
        nlist = params.nlist or auto_nlist(n)
        if nlist > n:
            raise params_error(cls.kind, "nlist", nlist, f"at most the number of vectors ({n})")
        codes = sign_codes(vectors)
        bits = codes.shape[1] * 8
        quantizer = faiss.IndexBinaryFlat(bits)
        index = faiss.IndexBinaryIVF(quantizer, bits, nlist)
        index.own_fields = True
        quantizer.this.disown()
        with omp_threads(threads):
            sample = training_sample(codes, nlist)
            with progress_bar(sample.shape[0], f"training {cls.kind}", progress) as bar:
                index.train(sample)
                bar.update(sample.shape[0])
            cls._add_chunks(index, codes, progress)
        built = cls(index, replace(params, nlist=nlist), metric, vectors.shape[1])
        if params.nprobe is None:
            # On +-1 vectors, dot = bits - 2 * hamming: the exact dot ranking is the Hamming one.
            signs = np.where(vectors > 0, np.float32(1), np.float32(-1))

            def search(q: FloatMatrix, k: int, effort: int) -> LabelMatrix:
                return built._search(q, k, None, effort)[1]

            measured = calibrate_effort(search, vectors, Metric.DOT, nprobe_grid(nlist),
                                        truth_vectors=signs)
            built.params = replace(built.params, nprobe=measured)
        return built

    @property
    def nlist(self) -> int:
        return int(self._index.nlist)

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int) -> tuple[FloatMatrix, LabelMatrix]:
        faiss = faiss_module()
        p = faiss.SearchParametersIVF()
        p.nprobe = min(effort, self.nlist)
        codes = sign_codes(queries)
        if allow is None:
            dist, labels = self._index.search(codes, k, params=p)
            return self._to_scores(dist, labels), labels.astype(np.int64, copy=False)
        # No selector support: over-fetch, then keep the allowed candidates in order. Among
        # `fetch` candidates about fetch * selectivity are allowed; ask for enough that fewer
        # than k is a > 4-sigma event, plus slack for the allowed top-k ranking lower.
        selectivity = np.count_nonzero(allow) / self._count
        fetch = min(self._count, math.ceil((2 * k + 4 * math.sqrt(k) + 8) / selectivity))
        dist, labels = self._index.search(codes, fetch, params=p)
        ok = (labels >= 0) & allow[np.maximum(labels, 0)]
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_l = np.full((queries.shape[0], k), -1, dtype=np.int64)
        for i in range(queries.shape[0]):
            keep = np.flatnonzero(ok[i])[:k]
            out_l[i, : keep.size] = labels[i, keep]
            out_s[i, : keep.size] = -dist[i, keep]
        return out_s, out_l

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``nprobe`` as for the float IVF backends, with 12 allowed vectors per result
        (:func:`~vecstore.index.faiss_index.ivf_effort`, which gives the measurements)."""
        check_int("k", k, 1)
        return ivf_effort(k, selectivity, self._count, self.nlist, self.params.nprobe,
                          per_result=12.0)

    @property
    def memory_bytes(self) -> int:
        return int(self._count * (self.code_bytes + 8) + self.nlist * self.code_bytes)
