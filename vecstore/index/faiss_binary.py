"""Binary first-stage backends over sign codes: ``binary-hnsw`` and ``binary-ivf`` (FAISS).

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

The graph and IVF machinery is :mod:`vecstore.index._faiss`'s, shared with the float backends;
:class:`BinaryIndexBase` turns it to sign codes and FAISS's binary index files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import Metric
from ..errors import InvalidArgumentError
from ._faiss import (
    FaissHnswBase,
    FaissIndexBase,
    FaissIvfBase,
    check_ivf_params,
    faiss_module,
    omp_threads,
)
from .base import (
    AllowBitmap,
    FloatMatrix,
    GraphParams,
    IndexParams,
    LabelMatrix,
    as_matrix,
)

CodeMatrix = npt.NDArray[np.uint8]


def sign_codes(vectors: FloatMatrix) -> CodeMatrix:
    """``[n, ceil(d / 8)]`` uint8 sign codes: bit ``j`` (little-endian within a byte) is ``x[j] > 0``."""
    return np.packbits(np.asarray(vectors) > 0, axis=1, bitorder="little")


def _code_bits(dim: int) -> int:
    """Bits of a sign code of a ``dim``-dimensional vector (padded to whole bytes)."""
    return 8 * (-(-dim // 8))


class BinaryIndexBase(FaissIndexBase):
    """A FAISS ``IndexBinary`` over sign codes: what changes from a float FAISS index.

    Mixed in before :class:`~vecstore.index._faiss.FaissHnswBase` or
    :class:`~vecstore.index._faiss.FaissIvfBase`, which hold the search and build.
    """

    binary = True

    @property
    def code_bytes(self) -> int:
        """Bytes per sign code."""
        return _code_bits(self.dim) // 8

    @property
    def vector_bytes(self) -> int:
        return self.code_bytes

    def prepare_queries(self, queries: npt.ArrayLike) -> FloatMatrix:
        # Signs do not change under normalisation: skip it.
        q = np.asarray(queries)
        q = as_matrix(q.reshape(1, -1) if q.ndim == 1 else q, "queries")
        if q.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"queries have dimension {q.shape[1]}, the index has {self.dim}"
            )
        return q

    @classmethod
    def _encode(cls, vectors: FloatMatrix) -> CodeMatrix:
        return sign_codes(vectors)

    def _to_scores(self, dist: np.ndarray, labels: np.ndarray) -> FloatMatrix:
        scores = np.negative(dist, dtype=np.float32)
        scores[labels < 0] = -np.inf
        return scores

    @classmethod
    def _stored_dim(cls, dim: int) -> int:
        return _code_bits(dim)


@dataclass(frozen=True)
class BinaryHnswParams(GraphParams):
    """Build parameters of ``IndexBinaryHNSW``: ``m`` and ``ef_construction``
    (:class:`~vecstore.index.base.GraphParams`)."""


class BinaryHnswIndex(BinaryIndexBase, FaissHnswBase):
    """FAISS ``IndexBinaryHNSW`` over sign codes: candidates by Hamming distance.

    ``effort_for`` is :func:`~vecstore.index.calibration.beam_effort` with 4 allowed nodes per
    result in the beam (Hamming ranks tie)."""

    kind = "binary-hnsw"
    params_type = BinaryHnswParams
    params: BinaryHnswParams
    beam_per_result = 4.0

    @classmethod
    def _new_graph(cls, dim: int, metric: Metric, params: BinaryHnswParams) -> Any:
        return faiss_module().IndexBinaryHNSW(_code_bits(dim), params.m)


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
        check_ivf_params(self.nlist, self.nprobe)


class BinaryIvfIndex(BinaryIndexBase, FaissIvfBase):
    """FAISS ``IndexBinaryIVF`` over sign codes: candidates by Hamming distance.

    ``effort_for`` is :func:`~vecstore.index.calibration.ivf_effort` with 12 allowed vectors
    per result (Hamming ranks tie, and the filter is applied after the search)."""

    kind = "binary-ivf"
    params_type = BinaryIvfParams
    params: BinaryIvfParams
    ivf_per_result = 12.0
    gpu_assigns = False

    @classmethod
    def _quantizer(cls, dim: int, metric: Metric) -> Any:
        return faiss_module().IndexBinaryFlat(_code_bits(dim))

    @classmethod
    def _clustering_flat(cls, ivf: Any, metric: Metric) -> Any:
        # IndexBinaryIVF's k-means runs on the codes decoded to 0/1 floats, by L2
        return faiss_module().IndexFlatL2(ivf.d)

    @classmethod
    def _new_ivf(cls, quantizer: Any, dim: int, metric: Metric, params: BinaryIvfParams) -> Any:
        return faiss_module().IndexBinaryIVF(quantizer, _code_bits(dim), params.nlist)

    def _ivf(self) -> Any:
        return self._index

    def _truth_space(self, vectors: FloatMatrix) -> tuple[Metric, FloatMatrix | None]:
        # On +-1 vectors, dot = bits - 2 * hamming: the exact dot ranking is the Hamming one.
        return Metric.DOT, np.where(vectors > 0, np.float32(1), np.float32(-1))

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int, *, threads: int | None = None) -> tuple[FloatMatrix, LabelMatrix]:
        if allow is None:
            return super()._search(queries, k, None, effort, threads=threads)
        # No selector support: over-fetch, then keep the allowed candidates in order. Among
        # `fetch` candidates about fetch * selectivity are allowed; ask for enough that fewer
        # than k is a > 4-sigma event, plus slack for the allowed top-k ranking lower.
        selectivity = np.count_nonzero(allow) / self._count
        fetch = min(self._count, math.ceil((2 * k + 4 * math.sqrt(k) + 8) / selectivity))
        p = self._ivf_params(effort, None)
        with omp_threads(threads):
            dist, labels = self._index.search(sign_codes(queries), fetch, params=p)
        ok = (labels >= 0) & allow[np.maximum(labels, 0)]
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_l = np.full((queries.shape[0], k), -1, dtype=np.int64)
        for i in range(queries.shape[0]):
            keep = np.flatnonzero(ok[i])[:k]
            out_l[i, : keep.size] = labels[i, keep]
            out_s[i, : keep.size] = -dist[i, keep]
        return out_s, out_l
