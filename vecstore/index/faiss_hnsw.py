"""FAISS HNSW graphs over float vectors: ``faiss-hnsw`` (``IndexHNSWFlat``) and ``hnsw-sq``
(``IndexHNSWSQ``, scalar-quantized codes whose candidates the planner rescores).

Metrics: cosine is inner product on unit vectors, dot is inner product, L2 is FAISS's squared L2,
negated into vecstore's higher-is-better score. Search, filtering (an ``IDSelectorBitmap``: the
beam keeps disallowed nodes, so a selective filter may return fewer than ``k``), save and load
are :class:`~vecstore.index._faiss.FaissHnswBase`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..config import Metric
from ._faiss import FaissHnswBase, faiss_module, omp_threads, training_sample
from .base import FloatMatrix, GraphParams, LabelMatrix, check_int, params_error
from .calibration import EF_GRID, calibrate_rerank_ef, hnsw_sq_effort


@dataclass(frozen=True)
class FaissHnswParams(GraphParams):
    """Build parameters of ``IndexHNSWFlat``: ``m`` and ``ef_construction``
    (:class:`~vecstore.index.base.GraphParams`)."""


class FaissHnswIndex(FaissHnswBase):
    """FAISS ``IndexHNSWFlat`` (vectors at full precision beside the graph)."""

    kind = "faiss-hnsw"
    params_type = FaissHnswParams
    params: FaissHnswParams

    @property
    def exact_scores(self) -> bool:
        return True

    @classmethod
    def _new_graph(cls, dim: int, metric: Metric, params: FaissHnswParams) -> Any:
        return faiss_module().IndexHNSWFlat(dim, params.m, cls.faiss_metric(metric))


# --- hnsw-sq ----------------------------------------------------------------------------------

_SQ_TYPES = {4: "QT_4bit", 6: "QT_6bit", 8: "QT_8bit"}
SQ_RERANKS = (2, 4, 8, 16, 32)
SQ_CALIBRATION_QUERIES = 200
SQ_CALIBRATION_TARGET = 0.95
"""The recall@10 the calibration reaches with confidence: the lower bound of the measured recall
(:func:`~vecstore.index.calibration.recall_lower_bound`) must reach it, so the margin for the
sampling error of 200 queries is statistical, not a constant (it was 0.96 = 0.95 plus a margin
fitted on the 200,000 MiniLM vectors)."""


@dataclass(frozen=True)
class HnswSqParams(GraphParams):
    """Build parameters of ``IndexHNSWSQ``: an HNSW graph over scalar-quantized vectors.

    Attributes:
        m: links per node (the base layer keeps ``2 m``).
        ef_construction: breadth of the search that picks each new node's links.
        bits: bits per dimension of the codes kept in memory (4, 6 or 8); the float32 vectors
            stay in the table's memory-mapped files and rescore the candidates.
        rerank: candidates rescored exactly per wanted result; None: measured at build time.
        ef: unfiltered ``ef`` for ``10 x rerank`` candidates; None: measured at build time.

    The build measures both with the last 200 rows (a tenth of a small table) as queries,
    searched before they are added to the graph: for each ``rerank`` in 2, 4, 8, 16, 32 the
    smallest ef on a 1.5x grid whose ``10 x rerank`` candidates, rescored exactly, reach
    recall@10 >= 0.96 (0.95 with a margin); it keeps the pair with the smallest ef (the graph
    walk is the cost; rescoring a few hundred rows is not):
    :func:`~vecstore.index.calibration.calibrate_rerank_ef`.
    """

    bits: int = 4
    rerank: int | None = None
    ef: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bits not in _SQ_TYPES or isinstance(self.bits, bool):
            raise params_error("hnsw-sq", "bits", self.bits, "4, 6 or 8")
        if self.rerank is not None:
            check_int("rerank", self.rerank, 1, 1024)
        if self.ef is not None:
            check_int("ef", self.ef, 1, 1 << 20)


class HnswSqIndex(FaissHnswBase):
    """FAISS ``IndexHNSWSQ``: the graph and 4-bit (or 6/8-bit) codes in memory, about a fifth
    of what an HNSW index holding float32 vectors needs (384-d: 192 + ~144 bytes of links per
    vector against ~1,700). Its scores are quantized estimates: the planner takes
    ``k x rerank`` candidates and rescores them with the table's float32 vectors."""

    kind = "hnsw-sq"
    params_type = HnswSqParams
    params: HnswSqParams

    @classmethod
    def _new_graph(cls, dim: int, metric: Metric, params: HnswSqParams) -> Any:
        faiss = faiss_module()
        qtype = getattr(faiss.ScalarQuantizer, _SQ_TYPES[params.bits])
        return faiss.IndexHNSWSQ(dim, qtype, params.m, cls.faiss_metric(metric))

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: HnswSqParams,
               progress: bool, threads: int | None) -> HnswSqIndex:
        index = cls._empty_graph(vectors.shape[1], metric, params)
        n = vectors.shape[0]
        # the last rows are added after the calibration, which uses them as queries: a row
        # already in the graph would find its own neighbour list, far easier than a new query
        held = min(SQ_CALIBRATION_QUERIES, n // 10) if params.rerank is None or params.ef is None else 0
        with omp_threads(threads):
            cls._train(index, training_sample(vectors, 1024, per_list=64), progress)
            cls._add_chunks(index, vectors[: n - held], progress)
            built = cls(index, params, metric, vectors.shape[1])
            if held:
                built._calibrate(vectors[: n - held], vectors[n - held :])
            cls._add_chunks(index, vectors[n - held :], False)
            built._count = int(index.ntotal)
        return built

    def _calibrate(self, indexed: FloatMatrix, queries: FloatMatrix, k: int = 10,
                   target: float = SQ_CALIBRATION_TARGET) -> None:
        """Fill ``rerank`` and ``ef`` (those left None) from held-out ``queries``."""

        def search(q: FloatMatrix, k: int, effort: int) -> LabelMatrix:
            return self._search(q, k, None, effort)[1]

        reranks = SQ_RERANKS if self.params.rerank is None else (self.params.rerank,)
        grid = EF_GRID if self.params.ef is None else [self.params.ef]
        ef, rerank = calibrate_rerank_ef(search, queries, indexed, self.metric, reranks, grid,
                                         k=k, target=target)
        self.params = replace(self.params, ef=ef, rerank=rerank)

    def candidates_for(self, k: int) -> int:
        return k * (self.params.rerank or 2)

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``ef`` for ``k`` candidates: :func:`~vecstore.index.calibration.hnsw_sq_effort` with
        the ``ef`` and ``rerank`` measured at build time."""
        check_int("k", k, 1)
        return hnsw_sq_effort(k, selectivity, self._count, self.params.ef, self.params.rerank)

    def _node_bytes(self) -> int:
        return int(faiss_module().downcast_index(self._index.storage).code_size)
