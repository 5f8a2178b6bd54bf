"""FAISS float backends: ``faiss-hnsw``, ``ivf`` (IVF-Flat), ``ivf-pq`` and ``ivf-rabitq``.

FAISS is imported when an index is built or loaded, never when this module is imported.

Metrics: cosine is inner product on unit vectors, dot is inner product, L2 is FAISS's squared L2,
negated into vecstore's higher-is-better score.

Filtering: the ``allow`` bitmap becomes an ``IDSelectorBitmap`` (``np.packbits(allow,
bitorder="little")``) handed to the C++ search through ``SearchParameters``, so no Python runs
per visited vector. None of these backends guarantees ``min(k, allowed)`` results:

- ``faiss-hnsw`` keeps disallowed nodes in its ``efSearch``-wide beam, so under a selective
  filter the beam may end with fewer than ``k`` allowed nodes. ``effort_for`` raises ef like
  ``1/selectivity`` (:func:`beam_effort`). Measured on 200,000 MiniLM vectors under a uniform
  random 0.1% filter: recall@10 0.88 at ef 4,096, 0.96 at 8,192, and at ef 20,000 one query
  in 200 still came back short; at 1%, 1.5% of queries were short at ef 768.
- the IVF backends scan ``nprobe`` lists; if those hold fewer than ``k`` allowed vectors the
  result is short. With ``effort >= nlist`` every list is scanned and the count is exact.

Threads: FAISS uses OpenMP's current setting (``faiss.omp_set_num_threads``), which is the
caller's to choose; ``threads=`` at build time applies to the build only and is restored after.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..config import Metric
from ..errors import CorruptStoreError, missing_extra
from .base import (
    AllowBitmap,
    FloatMatrix,
    IndexBase,
    IndexParams,
    LabelMatrix,
    calibrate_effort,
    check_int,
    check_selectivity,
    chunks,
    clamp_effort,
    graph_ef,
    params_error,
    progress_bar,
)


def faiss_module() -> Any:
    """Import FAISS, or raise MissingDependencyError naming the extra to install."""
    try:
        import faiss
    except ImportError:
        raise missing_extra("faiss", "ann") from None
    return faiss


@contextmanager
def omp_threads(threads: int | None) -> Iterator[None]:
    """Run with OpenMP capped at ``threads`` (restored afterwards); ``None`` changes nothing."""
    if threads is None:
        yield
        return
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class Selector:
    """An ``IDSelectorBitmap`` over an ``allow`` bitmap, keeping its buffer alive with it."""

    def __init__(self, allow: AllowBitmap) -> None:
        faiss = faiss_module()
        self.bits = np.packbits(allow, bitorder="little")
        # The first argument is the bitmap's size in *bytes*: labels past it are not members.
        self.sel = faiss.IDSelectorBitmap(self.bits.shape[0], faiss.swig_ptr(self.bits))


def auto_nlist(n: int) -> int:
    """Default number of IVF lists: ``4 sqrt(n)``, but at least 39 training points per list.

    39 points per centroid is where FAISS stops warning about k-means; 4 sqrt(n) is the usual
    rule of thumb (200,000 vectors -> 1,789 lists of ~112 vectors).
    """
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def training_sample(vectors: np.ndarray, nlist: int, per_list: int = 64) -> np.ndarray:
    """A seeded sample of ``per_list * nlist`` rows for k-means (all rows when there are fewer)."""
    size = per_list * nlist
    if vectors.shape[0] <= size:
        return vectors
    rows = np.sort(np.random.default_rng(1234).choice(vectors.shape[0], size, replace=False))
    return np.ascontiguousarray(vectors[rows])


class FaissIndexBase(IndexBase):
    """Shared search, save and load of a FAISS ``Index`` over float vectors."""

    exact_count = False

    def __init__(self, index: Any, params: IndexParams, metric: Metric, dim: int) -> None:
        super().__init__(params, metric, dim, int(index.ntotal))
        self._index = index

    @classmethod
    def file_name(cls) -> str:
        return f"{cls.kind}.faiss"

    @staticmethod
    def faiss_metric(metric: Metric) -> int:
        faiss = faiss_module()
        return faiss.METRIC_L2 if metric is Metric.L2 else faiss.METRIC_INNER_PRODUCT

    def _to_scores(self, dist: np.ndarray) -> FloatMatrix:
        if self.metric is Metric.L2:
            return np.negative(dist, dtype=np.float32)
        return np.asarray(dist, dtype=np.float32)

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        """FAISS SearchParameters carrying effort and the selector, first in the list; the
        rest are objects they point to, which must stay alive during the search."""
        raise NotImplementedError

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int) -> tuple[FloatMatrix, LabelMatrix]:
        selector = Selector(allow) if allow is not None else None
        params = self._search_params(effort, k, selector.sel if selector else None)
        dist, labels = self._index.search(queries, k, params=params[0])
        del params, selector  # the C++ search held raw pointers into these until now
        return self._to_scores(dist), labels.astype(np.int64, copy=False)

    @classmethod
    def _add_chunks(cls, index: Any, vectors: FloatMatrix, progress: bool) -> None:
        with progress_bar(vectors.shape[0], f"building {cls.kind}", progress) as bar:
            for start, stop in chunks(vectors.shape[0]):
                index.add(vectors[start:stop])
                bar.update(stop - start)

    def _writers(self) -> dict[str, Callable[[Path], None]]:
        faiss = faiss_module()
        return {self.file_name(): lambda path: faiss.write_index(self._index, str(path))}

    @classmethod
    def _read(cls, directory: Path, params: Any, metric: Metric, dim: int,
              count: int) -> FaissIndexBase:
        faiss = faiss_module()
        path = directory / cls.file_name()
        try:
            index = faiss.read_index(str(path))
        except (RuntimeError, MemoryError) as exc:
            raise CorruptStoreError(f"index file {path} is unreadable by FAISS ({exc})") from exc
        if index.d != dim:
            raise CorruptStoreError(f"index file {path} has dimension {index.d}, expected {dim}")
        return cls(index, params, metric, dim)


# --- faiss-hnsw -------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaissHnswParams(IndexParams):
    """Build parameters of ``IndexHNSWFlat``.

    Attributes:
        m: links per node (the base layer keeps ``2 m``).
        ef_construction: breadth of the search that picks each new node's links.
    """

    m: int = 16
    ef_construction: int = 200

    def __post_init__(self) -> None:
        check_int("m", self.m, 2, 512)
        check_int("ef_construction", self.ef_construction, 1, 1 << 16)


class FaissHnswIndex(FaissIndexBase):
    """FAISS ``IndexHNSWFlat`` (vectors at full precision beside the graph)."""

    kind = "faiss-hnsw"
    params_type = FaissHnswParams
    params: FaissHnswParams

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: FaissHnswParams,
               progress: bool, threads: int | None) -> FaissHnswIndex:
        faiss = faiss_module()
        index = faiss.IndexHNSWFlat(vectors.shape[1], params.m, cls.faiss_metric(metric))
        index.hnsw.efConstruction = params.ef_construction
        with omp_threads(threads):
            cls._add_chunks(index, vectors, progress)
        return cls(index, params, metric, vectors.shape[1])

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        faiss = faiss_module()
        p = faiss.SearchParametersHNSW()
        p.efSearch = max(effort, k)
        if sel is not None:
            p.sel = sel
        return [p]

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``ef`` for recall@k >= 0.95: :func:`beam_effort`."""
        check_int("k", k, 1)
        return beam_effort(k, selectivity, self._count)

    @property
    def memory_bytes(self) -> int:
        h = self._index.hnsw
        return int(
            self._count * self.dim * 4
            + h.neighbors.size() * 4
            + h.levels.size() * 4
            + h.offsets.size() * 8
        )


# --- hnsw-sq ----------------------------------------------------------------------------------

_SQ_TYPES = {4: "QT_4bit", 6: "QT_6bit", 8: "QT_8bit"}
SQ_EF_GRID = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]


@dataclass(frozen=True)
class HnswSqParams(IndexParams):
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
    recall@10 >= 0.96 (0.95 with a margin); it keeps the pair with the smallest ef (the graph walk is the cost;
    rescoring a few hundred rows is not).
    """

    m: int = 16
    ef_construction: int = 200
    bits: int = 4
    rerank: int | None = None
    ef: int | None = None

    def __post_init__(self) -> None:
        check_int("m", self.m, 2, 512)
        check_int("ef_construction", self.ef_construction, 1, 1 << 16)
        if self.bits not in _SQ_TYPES or isinstance(self.bits, bool):
            raise params_error("hnsw-sq", "bits", self.bits, "4, 6 or 8")
        if self.rerank is not None:
            check_int("rerank", self.rerank, 1, 1024)
        if self.ef is not None:
            check_int("ef", self.ef, 1, 1 << 20)


SQ_RERANKS = (2, 4, 8, 16, 32)
SQ_CALIBRATION_QUERIES = 200
SQ_CALIBRATION_TARGET = 0.96
"""0.95 plus a margin for the sampling error of 200 queries (a standard error of about 0.005
in recall@10): on the 200,000 MiniLM vectors, calibrating to 0.95 chose ef 64, which gave
0.943 on 300 other queries."""


class HnswSqIndex(FaissHnswIndex):
    """FAISS ``IndexHNSWSQ``: the graph and 4-bit (or 6/8-bit) codes in memory, about a fifth
    of what an HNSW index holding float32 vectors needs (384-d: 192 + ~144 bytes of links per
    vector against ~1,700). Its scores are quantized estimates: the planner takes
    ``k x rerank`` candidates and rescores them with the table's float32 vectors."""

    kind = "hnsw-sq"
    params_type = HnswSqParams  # type: ignore[assignment]
    params: HnswSqParams  # type: ignore[assignment]

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: HnswSqParams,  # type: ignore[override]
               progress: bool, threads: int | None) -> HnswSqIndex:
        faiss = faiss_module()
        qtype = getattr(faiss.ScalarQuantizer, _SQ_TYPES[params.bits])
        index = faiss.IndexHNSWSQ(vectors.shape[1], qtype, params.m, cls.faiss_metric(metric))
        index.hnsw.efConstruction = params.ef_construction
        n = vectors.shape[0]
        # the last rows are added after the calibration, which uses them as queries: a row
        # already in the graph would find its own neighbour list, far easier than a new query
        held = min(SQ_CALIBRATION_QUERIES, n // 10) if params.rerank is None or params.ef is None else 0
        with omp_threads(threads):
            sample = training_sample(vectors, 1024, per_list=64)
            with progress_bar(sample.shape[0], f"training {cls.kind}", progress) as bar:
                index.train(sample)
                bar.update(sample.shape[0])
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
        from .flat import exact_scores

        sq = np.einsum("ij,ij->i", indexed, indexed) if self.metric is Metric.L2 else None
        truth = exact_scores(self.metric, queries, indexed, sq)
        k = min(k, indexed.shape[0])
        kth = -np.partition(-truth, k - 1, axis=1)[:, k - 1]
        tol = 1e-5 * np.maximum(1.0, np.abs(kth))

        def recall(rerank: int, ef: int) -> float:
            labels = self._search(queries, min(rerank * k, indexed.shape[0]), None, max(ef, rerank * k))[1]
            hits = 0
            for i, row in enumerate(labels):
                row = row[row >= 0]
                best = row[np.argsort(-truth[i, row], kind="stable")[:k]]
                hits += int(np.count_nonzero(truth[i, best] >= kth[i] - tol[i]))
            return hits / (k * queries.shape[0])

        reranks = SQ_RERANKS if self.params.rerank is None else (self.params.rerank,)
        grid = SQ_EF_GRID if self.params.ef is None else [self.params.ef]
        best: tuple[int, int] | None = None  # (ef, rerank)
        for rerank in reranks:
            for ef in grid:
                if ef < rerank * k and ef != grid[-1]:
                    continue
                if best is not None and ef >= best[0]:
                    break
                if recall(rerank, ef) >= target:
                    best = (ef, rerank)
                    break
        if best is None:  # never reached: the widest setting tried
            best = (grid[-1], reranks[-1])
        self.params = replace(self.params, ef=best[0], rerank=best[1])

    def candidates_for(self, k: int) -> int:
        return k * (self.params.rerank or 2)

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``max(ef * k / (10 rerank), 2 k / selectivity)``, clipped to ``[k, n]``, for ``k``
        candidates: the measured unfiltered ef scaled with the candidates wanted, and under a
        filter a beam holding about 2 allowed nodes per wanted candidate (FAISS keeps
        disallowed nodes in the beam, as for ``faiss-hnsw``)."""
        check_int("k", k, 1)
        sel = check_selectivity(selectivity)
        ef = self.params.ef or graph_ef(k)
        per = 10 * (self.params.rerank or 2)
        return clamp_effort(max(ef * max(1.0, k / per), 2 * max(k, 2) / sel), k, max(k, self._count))

    @property
    def memory_bytes(self) -> int:
        faiss = faiss_module()
        h = self._index.hnsw
        code_size = int(faiss.downcast_index(self._index.storage).code_size)
        return int(self._count * code_size + h.neighbors.size() * 4
                   + h.levels.size() * 4 + h.offsets.size() * 8)


# --- IVF family -------------------------------------------------------------------------------


def _check_nlist(nlist: int | None) -> None:
    check_int("nlist", nlist, 1, 1 << 20, optional=True)


class IvfIndexBase(FaissIndexBase):
    """Shared effort rule, search parameters and memory accounting of the IVF backends."""

    params: IvfParams | IvfPqParams | IvfRabitqParams

    @property
    def nlist(self) -> int:
        return int(self._ivf().nlist)

    def _ivf(self) -> Any:
        faiss = faiss_module()
        return faiss.downcast_index(faiss.extract_index_ivf(self._index))

    def _ivf_params(self, effort: int, sel: Any) -> Any:
        faiss = faiss_module()
        p = faiss.SearchParametersIVF()
        p.nprobe = min(effort, self.nlist)
        if sel is not None:
            p.sel = sel
        return p

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        return [self._ivf_params(effort, sel)]

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``nprobe`` for recall@k >= 0.95 under a filter of this selectivity: see
        :func:`ivf_effort`; the unfiltered ``nprobe`` was measured at build time."""
        check_int("k", k, 1)
        return ivf_effort(k, selectivity, self._count, self.nlist,
                          self.params.nprobe)

    def _with_measured_nprobe(self, vectors: FloatMatrix) -> None:
        """Fill ``params.nprobe`` (when None) with the unfiltered nprobe reaching recall@10 >=
        0.95 on sample rows used as queries (see :func:`~vecstore.index.base.calibrate_effort`)."""
        if self.params.nprobe is not None:
            return

        def search(q: FloatMatrix, k: int, effort: int) -> LabelMatrix:
            return self._search(q, k, None, effort)[1]

        measured = calibrate_effort(search, vectors, self.metric, nprobe_grid(self.nlist))
        self.params = replace(self.params, nprobe=measured)

    @property
    def memory_bytes(self) -> int:
        ivf = self._ivf()
        lists = int(ivf.ntotal) * (int(ivf.code_size) + 8)  # codes + int64 ids
        quantizer = int(ivf.nlist) * self.dim * 4
        return lists + quantizer + self._extra_bytes()

    def _extra_bytes(self) -> int:
        return 0

    @classmethod
    def _train_and_add(cls, index: Any, vectors: FloatMatrix, nlist: int, progress: bool,
                       threads: int | None) -> None:
        with omp_threads(threads):
            sample = training_sample(vectors, nlist)
            with progress_bar(sample.shape[0], f"training {cls.kind}", progress) as bar:
                index.train(sample)
                bar.update(sample.shape[0])
            cls._add_chunks(index, vectors, progress)


def nprobe_grid(nlist: int) -> list[int]:
    """Candidate nprobe values, about 1.5x apart, up to ``nlist``."""
    grid = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
            1536, 2048, 3072, 4096, 6144, 8192]
    return [p for p in grid if p < nlist] + [nlist]


def ivf_effort(k: int, selectivity: float, n: int, nlist: int, nprobe10: int | None,
               per_result: float = 8.0) -> int:
    """``nprobe`` reaching recall@k >= 0.95 on an IVF index, clipped to ``[1, nlist]``::

        max(nprobe10 * (max(k, 10) / (10 * selectivity)) ** 0.25,
            per_result * max(k, 2) * nlist / (selectivity * n))

    ``nprobe10`` is the unfiltered nprobe for k = 10, measured at build time on the data
    itself. Under a filter the wanted rows are roughly the unfiltered top ``k / selectivity``,
    spread over more lists: the first term grows with that rank (the 0.25 power fits the
    MiniLM vectors). The second makes the probed lists hold, on average, ``per_result``
    allowed vectors per wanted result (tight clusters need it: synthetic data, tiny filters);
    8 for float IVF, 12 for binary IVF, whose Hamming ranks tie and which filters after the
    search.

    Measured: the smallest nprobe on a 1.5x grid reaching recall@10 >= 0.95 under uniform
    random filters of selectivity 1 / 0.5 / 0.1 / 0.01 / 0.001 (``python -m bench.ann_backends
    --calibrate``, 200 queries):

    - 200,000 MiniLM vectors, 1,789 lists, measured nprobe10 = 192: ivf needed 128 / 192 /
      192 / 384 / 1,024, the rule gives 192 / 229 / 342 / 608 / 1,080; binary-ivf (nprobe10
      = 128) needed 96 / 96 / 192 / 384 / 1,024, the rule gives 128 / 153 / 228 / 405 / 1,074.
      (A first rule without the rank term, ``max(nprobe10, 8 k nlist / (sel n))``, gave 192 at
      1%, half of what was needed.)
    - 50,000 clustered 96-d vectors (``--random --n 50000 --dim 96``), 894 lists, nprobe10
      = 8: ivf needed 8 / 8 / 8 / 128 / 512 (k = 50: 8 / 8 / 16 / 384 / 894; k = 1: 6 / 6 /
      8 / 12 / 192); the rule gives 8 / 10 / 15 / 144 / 894 (k = 50: 12 / 15 / 72 / 716 /
      894; k = 1: 8 / 10 / 15 / 29 / 287).
    """
    sel = check_selectivity(selectivity)
    rank = (nprobe10 or max(1, nlist // 16)) * (max(k, 10) / (10 * sel)) ** 0.25
    spread = per_result * max(k, 2) * nlist / (sel * max(n, 1))
    return clamp_effort(max(rank, spread), 1, nlist)


def beam_effort(k: int, selectivity: float, n: int, per_result: float = 2.0) -> int:
    """``ef`` for FAISS HNSW (float or binary) under a filter, clipped to ``[k, n]``::

        max(graph_ef(k), per_result * max(k, 2) / selectivity)

    FAISS keeps disallowed nodes in its ``ef``-wide beam and only skips them as results, so
    the beam must hold about ``per_result * k`` allowed nodes: it grows like ``1 / selectivity``
    and at 0.1% reaches a large share of the graph (the planner prefers the exact scan there).
    ``per_result`` is 2 for ``faiss-hnsw`` and 4 for ``binary-hnsw``, whose Hamming ranks tie.

    Measured: the smallest ef on a 1.5x grid reaching recall >= 0.95 under uniform random
    filters of selectivity 1 / 0.5 / 0.1 / 0.01 / 0.001 (``python -m bench.ann_backends
    --calibrate``, 200 queries):

    - 200,000 MiniLM vectors, faiss-hnsw, k = 10: 128 / 128 / 192 / 1,024 / 8,192 (rule: 220 /
      220 / 220 / 2,000 / 20,000); k = 1: 192 / 192 / 192 / 256 / 1,536 (rule: 202 / 202 /
      202 / 400 / 4,000); k = 50: 192 / 192 / 768 / 4,096 / not reached at 12,288 (rule: 300
      / 300 / 1,000 / 10,000 / 100,000). binary-hnsw against exact Hamming ranks, k = 10: 96 / 128 /
      384 / 1,536 / 8,192 (rule with 4: 220 / 220 / 400 / 4,000 / 40,000; with 2 it fell
      short at 10%).
    - 50,000 clustered 96-d vectors, k = 10: faiss-hnsw 24 / 32 / 48 / 1,536 / 8,192,
      binary-hnsw 10 / 16 / 24 / 1,024 / 6,144.
    """
    sel = check_selectivity(selectivity)
    return clamp_effort(max(graph_ef(k), per_result * max(k, 2) / sel), k, max(k, n))


@dataclass(frozen=True)
class IvfParams(IndexParams):
    """Build parameters of ``IndexIVFFlat``.

    Attributes:
        nlist: number of inverted lists (k-means centroids); ``None``: :func:`auto_nlist`.
        nprobe: lists probed for k = 10 without a filter, the anchor of :meth:`effort_for`.
            ``None``: measured at build time, the smallest reaching recall@10 >= 0.95 with 200
            sample rows as queries.
    """

    nlist: int | None = None
    nprobe: int | None = None

    def __post_init__(self) -> None:
        _check_nlist(self.nlist)
        check_int("nprobe", self.nprobe, 1, 1 << 20, optional=True)


class IvfFlatIndex(IvfIndexBase):
    """FAISS ``IndexIVFFlat``: k-means lists of full-precision vectors."""

    kind = "ivf"
    params_type = IvfParams
    params: IvfParams

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: IvfParams,
               progress: bool, threads: int | None) -> IvfFlatIndex:
        faiss = faiss_module()
        n, d = vectors.shape
        nlist = params.nlist or auto_nlist(n)
        if nlist > n:
            raise params_error(cls.kind, "nlist", nlist, f"at most the number of vectors ({n})")
        fm = cls.faiss_metric(metric)
        quantizer = faiss.IndexFlat(d, fm)
        index = faiss.IndexIVFFlat(quantizer, d, nlist, fm)
        cls._train_and_add(index, vectors, nlist, progress, threads)
        index.own_fields = True
        quantizer.this.disown()
        built = cls(index, replace(params, nlist=nlist), metric, d)
        built._with_measured_nprobe(vectors)
        return built


@dataclass(frozen=True)
class IvfPqParams(IndexParams):
    """Build parameters of ``IndexIVFPQ`` (optionally refined with exact distances).

    Attributes:
        nlist: inverted lists; ``None``: :func:`auto_nlist`.
        nprobe: lists probed for k = 10 without a filter, the anchor of :meth:`effort_for`.
            ``None``: measured at build time, the smallest reaching recall@10 >= 0.95 with 200
            sample rows as queries.
        pq_m: sub-quantizers (bytes per vector at 8 bits); must divide the dimension.
            ``None``: the largest divisor of ``d`` not above ``d / 4`` (384 -> 96).
        pq_bits: bits per sub-quantizer code, 1..12. ``None``: 8, fewer when there are too
            few vectors to train 256 centroids (``floor(log2(n / 39))``).
        refine: keep the float vectors too and re-rank ``refine_factor * k`` PQ candidates
            with exact scores. Without it scores are PQ estimates, for a caller that rescores.
        refine_factor: ``refine`` re-ranks ``refine_factor * max(k, 10)`` candidates. With
            10, recall@10 at nprobe = nlist is 0.98 on 20,000 64-d Gaussian vectors (4: 0.87)
            and 1.0 on clustered ones.
    """

    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    pq_bits: int | None = None
    refine: bool = True
    refine_factor: int = 10

    def __post_init__(self) -> None:
        _check_nlist(self.nlist)
        check_int("nprobe", self.nprobe, 1, 1 << 20, optional=True)
        check_int("pq_m", self.pq_m, 1, 4096, optional=True)
        check_int("pq_bits", self.pq_bits, 1, 12, optional=True)
        if not isinstance(self.refine, bool):
            raise params_error("ivf-pq", "refine", self.refine, "True or False")
        check_int("refine_factor", self.refine_factor, 1, 1024)


def _auto_pq_m(d: int) -> int:
    return max(m for m in range(1, max(1, d // 4) + 1) if d % m == 0)


class _RefinedIvf(IvfIndexBase):
    """An IVF index, possibly wrapped in ``IndexRefineFlat``."""

    params: IvfPqParams | IvfRabitqParams

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        base = self._ivf_params(effort, sel)
        if not self.params.refine:
            return [base]
        faiss = faiss_module()
        # The selector must sit in the *base* parameters: IndexRefine ignores a top-level sel
        # (and would return disallowed labels).
        p = faiss.IndexRefineSearchParameters()
        # Re-rank refine_factor * max(k, 10) candidates: with k = 1 and 4 candidates the
        # quantization error alone loses the true neighbour too often.
        factor = self.params.refine_factor * max(k, 10) / k
        p.k_factor = float(factor)
        p.base_index_params = base
        return [p, base]

    def _extra_bytes(self) -> int:
        return self._count * self.dim * 4 if self.params.refine else 0

    @staticmethod
    def _wrap(index: Any, refine: bool) -> Any:
        if not refine:
            return index
        faiss = faiss_module()
        refined = faiss.IndexRefineFlat(index)
        refined.own_fields = True
        index.this.disown()
        return refined


class IvfPqIndex(_RefinedIvf):
    """FAISS ``IndexIVFPQ`` (residual product quantization), refined by default."""

    kind = "ivf-pq"
    params_type = IvfPqParams
    params: IvfPqParams

    @classmethod
    def min_rows(cls) -> int:
        return 100

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: IvfPqParams,
               progress: bool, threads: int | None) -> IvfPqIndex:
        faiss = faiss_module()
        n, d = vectors.shape
        nlist = params.nlist or auto_nlist(n)
        if nlist > n:
            raise params_error(cls.kind, "nlist", nlist, f"at most the number of vectors ({n})")
        pq_m = params.pq_m or _auto_pq_m(d)
        if d % pq_m:
            divisors = [m for m in range(1, d + 1) if d % m == 0]
            raise params_error(cls.kind, "pq_m", pq_m, f"a divisor of the dimension {d}: {divisors}")
        pq_bits = params.pq_bits or max(1, min(8, int(math.log2(max(2, n / 39)))))
        if 2**pq_bits > n:
            raise params_error(cls.kind, "pq_bits", pq_bits,
                               f"at most log2(n) = {int(math.log2(n))} for {n} vectors")
        fm = cls.faiss_metric(metric)
        quantizer = faiss.IndexFlat(d, fm)
        ivf = faiss.IndexIVFPQ(quantizer, d, nlist, pq_m, pq_bits, fm)
        ivf.own_fields = True
        quantizer.this.disown()
        index = cls._wrap(ivf, params.refine)
        cls._train_and_add(index, vectors, nlist, progress, threads)
        built = cls(index, replace(params, nlist=nlist, pq_m=pq_m, pq_bits=pq_bits), metric, d)
        built._with_measured_nprobe(vectors)
        return built

    def _extra_bytes(self) -> int:
        pq = self._ivf().pq
        return super()._extra_bytes() + int(pq.centroids.size()) * 4


@dataclass(frozen=True)
class IvfRabitqParams(IndexParams):
    """Build parameters of ``IndexIVFRaBitQ`` (FAISS >= 1.11; multi-bit codes in 1.13+).

    Attributes:
        nlist: inverted lists; ``None``: :func:`auto_nlist`.
        nprobe: lists probed for k = 10 without a filter, the anchor of :meth:`effort_for`.
            ``None``: measured at build time, the smallest reaching recall@10 >= 0.95 with 200
            sample rows as queries.
        bits: bits per dimension of the RaBitQ code, 1..9. The default 4 keeps recall@10 >=
            0.99 after refining on Gaussian noise, where 1 bit reaches 0.26 (0.79 re-ranking
            50 candidates per result); on clustered vectors 1 bit with ``refine_factor`` 10
            suffices (20,000 64-d vectors, bench/ann_backends.py).
        query_bits: bits the query is quantized to when comparing (FAISS ``qb``; 0 = float).
        refine: keep float vectors and re-rank ``refine_factor * k`` candidates exactly.
        refine_factor: ``refine`` re-ranks ``refine_factor * max(k, 10)`` candidates.
    """

    nlist: int | None = None
    nprobe: int | None = None
    bits: int = 4
    query_bits: int = 8
    refine: bool = True
    refine_factor: int = 4

    def __post_init__(self) -> None:
        _check_nlist(self.nlist)
        check_int("nprobe", self.nprobe, 1, 1 << 20, optional=True)
        check_int("bits", self.bits, 1, 9)
        check_int("query_bits", self.query_bits, 0, 8)
        if not isinstance(self.refine, bool):
            raise params_error("ivf-rabitq", "refine", self.refine, "True or False")
        check_int("refine_factor", self.refine_factor, 1, 1024)


class IvfRabitqIndex(_RefinedIvf):
    """FAISS ``IndexIVFRaBitQ``: about ``bits`` bit(s) per dimension, refined by default."""

    kind = "ivf-rabitq"
    params_type = IvfRabitqParams
    params: IvfRabitqParams

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: IvfRabitqParams,
               progress: bool, threads: int | None) -> IvfRabitqIndex:
        faiss = faiss_module()
        if not hasattr(faiss, "IndexIVFRaBitQ"):
            raise missing_extra("faiss>=1.11 (IndexIVFRaBitQ)", "ann")
        n, d = vectors.shape
        nlist = params.nlist or auto_nlist(n)
        if nlist > n:
            raise params_error(cls.kind, "nlist", nlist, f"at most the number of vectors ({n})")
        fm = cls.faiss_metric(metric)
        quantizer = faiss.IndexFlat(d, fm)
        ivf = faiss.IndexIVFRaBitQ(quantizer, d, nlist, fm, True, params.bits)
        ivf.qb = params.query_bits
        ivf.own_fields = True
        quantizer.this.disown()
        index = cls._wrap(ivf, params.refine)
        cls._train_and_add(index, vectors, nlist, progress, threads)
        built = cls(index, replace(params, nlist=nlist), metric, d)
        built._with_measured_nprobe(vectors)
        return built

    def _ivf_params(self, effort: int, sel: Any) -> Any:
        faiss = faiss_module()
        p = faiss.IVFRaBitQSearchParameters()
        p.nprobe = min(effort, self.nlist)
        p.qb = self.params.query_bits
        if sel is not None:
            p.sel = sel
        return p
