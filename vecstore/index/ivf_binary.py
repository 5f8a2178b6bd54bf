"""``ivf-binary``: a coarse inverted file over centred sign codes, for tables too large to scan.

Built for the one-box scale path (docs/scale.md): at 10M rows a scan of every binary code costs
~0.5 s a query, and a graph over 10M float vectors does not fit in 2 GB. This index keeps in RAM
only what picks candidates:

- ``centroids``: ``nlist`` coarse centroids (FAISS k-means on a seeded sample of the float32
  vectors, spherical for cosine); every row is assigned to its nearest one (its *list*);
- ``codes``: each row's sign code, the bits of ``x - center`` (``center`` the indexed vectors'
  mean, as the storage layer centres its own codes: the bits of a non-zero-mean embedding are
  uninformative otherwise), packed little-endian into 64-bit words, **stored in list order**, so
  a probed list is one contiguous run of codes (48 bytes per row at 384 dimensions);
- ``labels``: the label of each code (int32 below 2**31 rows) and ``offsets``, where each list
  starts.

A search ranks the centroids for the query, takes the ``nprobe`` best lists, and scans their
codes in one compiled Hamming top-k kernel (``vecstore._native.kernels.hamming_topk_rows``,
nogil; the ``allow`` bitmap drops labels before the scan), keeping :data:`HAMMING_EXPAND` times
the candidates wanted. Those are ranked again by their *sign score*, the float query's inner
product with each code's bits (an asymmetric distance: only the table's side is quantized;
``sign_scores_rows``, a byte lookup table per query, still in RAM), and the best are the
*candidates*, scored by it. The planner takes ``candidates_for(k)`` of them, ranks them by the
table's int8 codes (``int8_first``) and rescores the best quarter exactly with the float32
vectors, both read from the segments on disk, a row at a time (so neither enters RAM whole).
The sign score ranks far better than the Hamming distance (measured at 10M rows, docs/scale.md:
its best 800 held the true top 10 as often as the Hamming best 5,120), and every candidate
it saves is a row not read from disk: at 10M rows the reads were 71% of a query.

Calibration (at build time, on the table's own vectors): a seeded random 1,000 rows (at most a
tenth) are held out (:func:`~vecstore.index.calibration.held_out_rows`; they stay in the index but
are masked out of the searches), their exact top 10 among the other rows is computed in one
chunked pass, and for each candidate count per result (``rerank`` in :data:`RERANKS`) the
smallest ``nprobe`` whose rescored recall@10 reaches ``target_recall`` (+ the calibration margin)
is found; the pair with the lowest estimated cost (codes scanned + :data:`CANDIDATE_COST` per
candidate rescored) wins. :meth:`IvfBinaryIndex.effort_for` scales that ``nprobe`` with ``k`` and
the filter's selectivity by :func:`~vecstore.index.calibration.ivf_effort`. Held-out rows are easy
queries when the table holds copies of them (they sit in the same list, a few bits away), so each
one's near-duplicates (:func:`~vecstore.index.calibration.duplicate_counts`: the tight group
around it, however many) leave its truth and its answers, and the recall that must reach the
target is the lower confidence bound over the held-out rows, not their mean. Before, on the
derived corpus of docs/scale.md, the measured settings (nprobe 2 of 2,000, rerank 2) gave recall
0.47 on real queries; with ~156 copies of each source at 10M rows, the earlier rule (closer than
half the 10th neighbour) saw none of them and nprobe 2 of 6,325 gave 0.49.

Files: the arrays as ``.npy`` (loaded into memory) and the checksum sidecar.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._native import loader
from ..config import Metric
from ..errors import CorruptStoreError, InvalidArgumentError
from ..evaluation import tie_aware_recalls
from .base import (
    AllowBitmap,
    FloatMatrix,
    IndexBase,
    IndexParams,
    LabelMatrix,
    VectorBlocks,
    as_matrix,
    build_device,
    building_on_gpu,
    check_int,
    chunks,
    normalized,
    params_error,
    progress_bar,
)
from .calibration import (
    CALIBRATION_MARGIN,
    DUPLICATE_DEPTH,
    check_recall,
    check_selectivity,
    duplicate_counts,
    held_out_rows,
    ivf_effort,
    nprobe_grid,
    recall_lower_bound,
)
from .flat import exact_scores

CodeMatrix = npt.NDArray[np.uint64]

RERANKS = (2, 4, 8, 16, 32)
"""Candidates rescored per wanted result, tried at build time (and doubled beyond while none
reaches the target recall)."""

HAMMING_EXPAND = 8
"""Hamming candidates kept per candidate returned, for the sign score to rank. Measured on 10M
derived rows with 100 real queries (nprobe 128 to 512, 800 and 1,600 candidates): the best by
sign score of 8x as many Hamming candidates held the true top 10 as often as the sign score over
every probed code (within 0.003); 4x lost 0.005-0.015. Scoring them costs ~50 table lookups a
code, some 5% of the Hamming scan of the probed lists at the settings calibration picks."""

CANDIDATE_COST = 200
"""Codes whose Hamming scan costs about as much as rescoring one candidate from the memory-mapped
float32 vectors (~5 ns a code against ~1 us a candidate row from the page cache): the exchange
rate calibration uses to weigh a wider probe against more rescoring."""

KMEANS_POINTS_PER_LIST = 64
"""Sample rows per list for k-means: FAISS's default is 256; 64 keeps the build of a 10M-row
index within minutes on two cores at a small cost in list balance."""

CALIBRATION_GATHER_BYTES = 256 << 20
"""The most memory calibration's candidates (labels, scores, gathered vectors) take at once: a
wide rerank on a large table (up to ``2**20`` candidates a query) over 1,000 held-out rows would
otherwise need tens of GB (random 384-d vectors at 300,000 rows asked for 29 GB)."""

_ARRAYS = ("codes", "labels", "offsets", "centroids", "center")


@dataclass(frozen=True)
class IvfBinaryParams(IndexParams):
    """Build parameters of ``ivf-binary``.

    Attributes:
        nlist: coarse lists; ``None``: ``2 sqrt(n)``, at most ``n / 39`` (k-means needs ~39
            sample rows per centroid), at least 1.
        nprobe: lists probed for recall@10 without a filter; ``None``: measured at build time.
        rerank: candidates rescored exactly per wanted result; ``None``: measured with nprobe.
        target_recall: the recall@10 the measured ``nprobe`` and ``rerank`` reach.
        niter: k-means iterations.
        seed: seeds the k-means sample, k-means and the held-out calibration rows.
    """

    nlist: int | None = None
    nprobe: int | None = None
    rerank: int | None = None
    target_recall: float = 0.95
    niter: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        check_int("nlist", self.nlist, 1, 1 << 24, optional=True)
        check_int("nprobe", self.nprobe, 1, 1 << 24, optional=True)
        check_int("rerank", self.rerank, 1, 1 << 20, optional=True)
        check_int("niter", self.niter, 1, 1000)
        check_int("seed", self.seed, 0)
        check_recall(self.target_recall)
        if self.nlist is not None and self.nprobe is not None and self.nprobe > self.nlist:
            raise params_error("ivf-binary", "nprobe", self.nprobe, f"at most nlist = {self.nlist}")


def auto_nlist(n: int) -> int:
    """``2 sqrt(n)`` lists, at most ``n / 39``, at least 1 (2,000 at 1M rows, 6,325 at 10M)."""
    return max(1, min(round(2 * math.sqrt(n)), n // 39))


def code_words(dim: int) -> int:
    """64-bit words per sign code of a ``dim``-dimensional vector."""
    return -(-dim // 64)


_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1,
                           bitorder="little").astype(np.float32)
"""``[256, 8]``: bit ``i`` (little-endian) of each byte value, as 0/1."""


def sign_score_table(query: npt.NDArray[np.float32], words: int) -> npt.NDArray[np.float32]:
    """``float32[8 words, 256]``, the lookup table of ``sign_scores_rows``: entry ``[b, v]`` is
    the sum of ``query[8 b + i]`` over the set bits ``i`` of the byte value ``v``, so a code's
    score is the query's inner product with its bits (dimensions past the query's end, a code's
    zero padding, count 0)."""
    padded = np.zeros(64 * words, dtype=np.float32)
    padded[:query.shape[0]] = query
    return np.ascontiguousarray(padded.reshape(8 * words, 8) @ _BYTE_BITS.T, dtype=np.float32)


def centred_codes(vectors: FloatMatrix, center: npt.NDArray[np.float32]) -> CodeMatrix:
    """``[n, words]`` uint64 codes: bit ``j`` (little-endian) is ``x[j] > center[j]``, padded
    with zero bits to whole 64-bit words (zero bits add no distance)."""
    bits = np.packbits(vectors > center, axis=1, bitorder="little")
    width = 8 * code_words(vectors.shape[1])
    if bits.shape[1] < width:
        bits = np.pad(bits, ((0, 0), (0, width - bits.shape[1])))
    return np.ascontiguousarray(bits).view(np.uint64)


class _Rows:
    """The vectors an index is built over, as one matrix or as blocks (a table's segments,
    memory-mapped), read a chunk at a time, validated (finite, in range) and made unit length
    for cosine as they are read: a 10M-row build never holds a second copy of its 15 GB of
    float32 vectors."""

    def __init__(self, blocks: list[npt.NDArray[Any]], unit: bool) -> None:
        dims = {b.shape[1] if b.ndim == 2 else -1 for b in blocks}
        if len(dims) != 1 or -1 in dims or 0 in dims or not blocks:
            shapes = ", ".join(str(b.shape) for b in blocks)
            raise InvalidArgumentError(f"vectors must be 2-D blocks [n, d] of one dimension d >= 1, "
                                       f"got {shapes or 'none'}")
        self.blocks = blocks
        self.unit = unit
        self.starts = np.zeros(len(blocks) + 1, dtype=np.int64)
        np.cumsum([b.shape[0] for b in blocks], out=self.starts[1:])
        self.n, self.dim = int(self.starts[-1]), dims.pop()

    def _finish(self, x: npt.NDArray[Any], where: int) -> FloatMatrix:
        x = as_matrix(x, f"vectors (from row {where})")
        return normalized(x) if self.unit else x

    def rows(self, start: int, stop: int) -> FloatMatrix:
        """Rows ``start..stop``, validated (and unit length for cosine)."""
        parts = []
        for b, block in enumerate(self.blocks):
            lo, hi = max(start, int(self.starts[b])), min(stop, int(self.starts[b + 1]))
            if lo < hi:
                parts.append(block[lo - self.starts[b]:hi - self.starts[b]])
        return self._finish(parts[0] if len(parts) == 1 else np.concatenate(parts), start)

    def take(self, rows: npt.NDArray[np.int64]) -> FloatMatrix:
        """The given rows, in that order (validated, unit length for cosine)."""
        out = np.empty((rows.size, self.dim), dtype=np.float32)
        which = np.searchsorted(self.starts, rows, side="right") - 1
        for b in np.unique(which):
            at = np.flatnonzero(which == b)
            out[at] = self.blocks[b][rows[at] - self.starts[b]]
        return self._finish(out, 0)

    def mean(self) -> npt.NDArray[np.float32]:
        total = np.zeros(self.dim, dtype=np.float64)
        for start, stop in chunks(self.n, 262_144):
            total += self.rows(start, stop).sum(axis=0, dtype=np.float64)
        return (total / max(self.n, 1)).astype(np.float32)


class IvfBinaryIndex(IndexBase):
    """Coarse lists over sign codes held in list order; see the module docstring."""

    reads_damaged_files_safely = True  # plain .npy arrays, shapes and offsets checked on read

    kind = "ivf-binary"
    params_type = IvfBinaryParams
    params: IvfBinaryParams
    exact_count = False
    builds_from_blocks = True
    calibrates_on_queries = True
    int8_first = True  # hundreds of Hamming candidates per result: int8 codes rank them first
    gpu_build = True  # k-means and the assignment of rows to lists on CUDA devices

    def __init__(self, codes: CodeMatrix, labels: npt.NDArray[np.integer], offsets: npt.NDArray[np.int64],
                 centroids: FloatMatrix, center: npt.NDArray[np.float32], params: IvfBinaryParams,
                 metric: Metric) -> None:
        super().__init__(params, metric, int(centroids.shape[1]), int(codes.shape[0]))
        for a in (codes, labels, offsets):
            a.flags.writeable = False  # as when loaded (memory-mapped): the kernels' one variant
        self.codes = codes
        self.labels = labels
        self.offsets = offsets
        self.centroids = centroids
        self.center = center
        # -|c|^2 / 2 turns an inner product with the centroids into an L2 ranking
        self._c_half_sq = (-0.5 * np.einsum("ij,ij->i", centroids, centroids)).astype(np.float32)

    @property
    def nlist(self) -> int:
        """Number of coarse lists."""
        return int(self.centroids.shape[0])

    # --- building ---------------------------------------------------------------------------

    @classmethod
    def build(cls, vectors: npt.ArrayLike | VectorBlocks, metric: Metric | str = Metric.COSINE, *,
              progress: bool = False, threads: int | None = None,
              sample_queries: npt.ArrayLike | None = None, gpu: bool | None = None,
              **params: Any) -> IvfBinaryIndex:
        """:meth:`IndexBase.build`, also from :class:`~vecstore.index.base.VectorBlocks`; the
        vectors are validated and normalised a chunk at a time, never copied whole."""
        metric = Metric.parse(metric)
        check_int("threads", threads, 1, optional=True)
        on_gpu = cls.resolve_gpu(gpu)
        parsed = cls.params_type.from_json(params)
        raw = list(vectors.blocks) if isinstance(vectors, VectorBlocks) else [vectors]
        try:
            blocks = [np.asarray(b) for b in raw]
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"vectors must be a 2-D array of numbers ({exc})") from exc
        rows = _Rows(blocks, metric is Metric.COSINE)
        if rows.n < cls.min_rows():
            raise InvalidArgumentError(f"a {cls.kind!r} index needs at least {cls.min_rows()} "
                                       f"vectors, got {rows.n}")
        queries = cls.check_sample_queries(sample_queries, rows.dim, metric)
        with build_device(on_gpu):
            return cls._build_rows(rows, metric, parsed, progress, threads, queries)

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: IvfBinaryParams,
               progress: bool, threads: int | None, queries: FloatMatrix | None = None) -> IvfBinaryIndex:
        return cls._build_rows(_Rows([vectors], False), metric, params, progress, threads, queries)

    @classmethod
    def _build_rows(cls, vectors: _Rows, metric: Metric, params: IvfBinaryParams,
                    progress: bool, threads: int | None,
                    queries: FloatMatrix | None = None) -> IvfBinaryIndex:
        n, d = vectors.n, vectors.dim
        nlist = params.nlist or auto_nlist(n)
        if nlist > n:
            raise params_error(cls.kind, "nlist", nlist, f"at most the number of vectors, {n}")
        center = vectors.mean()
        centroids = _kmeans(vectors, nlist, metric, params, progress, threads)
        nearest = cls._nearest_centroid(metric, centroids)
        assign = np.empty(n, dtype=np.int64)
        codes = np.empty((n, code_words(d)), dtype=np.uint64)
        with progress_bar(n, f"{cls.kind} assign", progress) as bar:
            for start, stop in chunks(n, 65_536):
                block = vectors.rows(start, stop)
                assign[start:stop] = nearest(block)
                codes[start:stop] = centred_codes(block, center)
                bar.update(stop - start)
        offsets = np.zeros(nlist + 1, dtype=np.int64)
        np.cumsum(np.bincount(assign, minlength=nlist), out=offsets[1:])
        order = np.argsort(assign, kind="stable")
        del assign
        labels: npt.NDArray[np.integer] = order.astype(np.int32 if n < 2**31 else np.int64)
        del order
        codes = codes[labels]  # list order: a probed list is one run of codes
        index = cls(codes, labels, offsets, centroids, center, replace(params, nlist=nlist), metric)
        if params.nprobe is None or params.rerank is None:
            index.params = index._calibrated(vectors, queries)
        return index

    @classmethod
    def _nearest_centroid(cls, metric: Metric, centroids: FloatMatrix
                          ) -> Callable[[FloatMatrix], npt.NDArray[np.int64]]:
        """Each row's list: its closest centroid as the metric ranks them. Building on GPUs
        (:func:`~vecstore.index.base.building_on_gpu`), a flat index of the centroids copied to
        them answers; on the CPU, a BLAS product."""
        if not building_on_gpu():
            probe = cls._probe_scores_for(metric, centroids)
            return lambda x: np.argmax(probe(x), axis=1)
        from ._faiss import faiss_module, on_gpus

        faiss = faiss_module()
        cpu = faiss.IndexFlatL2(centroids.shape[1]) if metric is Metric.L2 \
            else faiss.IndexFlatIP(centroids.shape[1])
        cpu.add(centroids)
        flat = on_gpus(cpu)
        return lambda x: flat.search(np.ascontiguousarray(x, dtype=np.float32), 1)[1][:, 0]

    @staticmethod
    def _probe_scores_for(metric: Metric, centroids: FloatMatrix) -> Callable[[FloatMatrix], FloatMatrix]:
        """Higher-is-better closeness of vectors to each centroid, as the metric ranks them."""
        half_sq = (-0.5 * np.einsum("ij,ij->i", centroids, centroids)).astype(np.float32)
        if metric is Metric.L2:
            return lambda x: x @ centroids.T + half_sq  # -|x - c|^2 / 2 + const(x)
        return lambda x: x @ centroids.T

    def _calibrated(self, vectors: _Rows, sample: FloatMatrix | None = None) -> IvfBinaryParams:
        """``nprobe`` and ``rerank`` (those left None) measured on held-out rows (see module), or
        on the ``sample`` queries given (nothing held out, nothing left out of their truth)."""
        n = self._count
        held = held_out_rows(n, self.params.seed) if sample is None else np.empty(0, np.int64)
        if held.size == 0 and sample is None:  # too few rows to measure: probe everything
            return replace(self.params, nprobe=self.params.nprobe or self.nlist,
                           rerank=self.params.rerank or 4)
        loader.get("kernels", wait=True)  # calibration runs hundreds of searches
        k = 10
        queries = vectors.take(held) if sample is None else sample
        allow = np.ones(n, dtype=bool)
        allow[held] = False
        # a held-out row's near-duplicates answer it at almost no effort, where a user's query
        # rarely has such a twin: they leave its truth and its answers as well
        kth, excluded = _held_out_truth(self.metric, queries, vectors, allow, k,
                                        duplicates=sample is None)
        extra = max((e.size for e in excluded), default=0)
        target = min(1.0, self.params.target_recall + CALIBRATION_MARGIN)
        q_sq = np.einsum("ij,ij->i", queries, queries)
        per_list = n / self.nlist
        d = vectors.dim

        def rescored(cand: LabelMatrix, rows: slice) -> FloatMatrix:
            """The exact scores of the candidates of queries ``rows``."""
            # every candidate's vector read once, in row order (from the segments' pages)
            unique, where = np.unique(np.maximum(cand, 0), return_inverse=True)
            x = vectors.take(unique)
            s = np.einsum("qcd,qd->qc", x[where.reshape(cand.shape)], queries[rows])
            if self.metric is Metric.L2:
                x_sq = np.einsum("ij,ij->i", x, x)[where.reshape(cand.shape)]
                s = 2 * s - q_sq[rows, None] - x_sq
            s[cand < 0] = -np.inf
            return s

        def answers(cand: LabelMatrix, first: int, want: int) -> LabelMatrix:
            """Each query's first ``want`` candidates once its near-duplicates are dropped: what
            the table without them would have given (-1 pads)."""
            out = np.full((cand.shape[0], want), -1, dtype=np.int64)
            for j, row in enumerate(cand):
                dups = excluded[first + j]
                row = row[~np.isin(row, dups)][:want] if dups.size else row[:want]
                out[j, :row.size] = row
            return out

        def recall(nprobe: int, rerank: int) -> float:
            want = min(n, rerank * k)
            fetch = min(n, want + extra)
            # a few queries at a time: at most CALIBRATION_GATHER_BYTES of candidates (labels,
            # scores and gathered vectors) at once, however many candidates a query has
            per_chunk = max(1, CALIBRATION_GATHER_BYTES // ((4 * d + 12) * fetch))
            parts = []
            for i in range(0, len(queries), per_chunk):
                rows = slice(i, i + per_chunk)
                _, cand = self._search(queries[rows], fetch, allow if held.size else None, nprobe)
                cand = answers(cand, i, want)
                parts.append(-np.sort(-rescored(cand, rows), axis=1)[:, :k])
            found = np.concatenate(parts)
            # with confidence: the lower bound over these queries must reach the target
            return recall_lower_bound(tie_aware_recalls(found, kth, k))

        nprobes = nprobe_grid(self.nlist) if self.params.nprobe is None else [self.params.nprobe]
        # beyond RERANKS only when they fall short (few bits: Hamming ranks too coarsely),
        # up to rescoring every row
        reranks = [*RERANKS, *(2**i for i in range(6, 21) if 2**(i - 1) * k < n)]
        reranks = reranks if self.params.rerank is None else [self.params.rerank]
        best: tuple[float, int, int] | None = None  # (cost, nprobe, rerank)
        for rerank in reranks:
            # only settings cheaper than the best so far; recall grows with nprobe, so the
            # smallest one reaching the target is found by bisection over the grid
            cheaper = [p for p in nprobes if best is None
                       or p * per_list + CANDIDATE_COST * rerank * k < best[0]]
            lo, hi = 0, len(cheaper)  # the answer's position in `cheaper` lies in [lo, hi]
            while lo < hi:
                mid = (lo + hi) // 2
                if recall(cheaper[mid], rerank) >= target:
                    hi = mid
                else:
                    lo = mid + 1
            if lo < len(cheaper):
                best = (cheaper[lo] * per_list + CANDIDATE_COST * rerank * k, cheaper[lo], rerank)
            if best is not None and rerank >= RERANKS[-1]:
                break
        nprobe, rerank = (best[1], best[2]) if best is not None else (nprobes[-1], reranks[-1])
        return replace(self.params, nprobe=nprobe, rerank=rerank)

    # --- searching --------------------------------------------------------------------------

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int, *, threads: int | None = None) -> tuple[FloatMatrix, LabelMatrix]:
        kern = loader.get("kernels", wait=queries.shape[0] > 1)  # a batch waits for Numba
        nprobe = min(effort, self.nlist)
        q_codes = centred_codes(queries, self.center)
        closeness = queries @ self.centroids.T
        if self.metric is Metric.L2:
            closeness += self._c_half_sq
        if nprobe < self.nlist:
            probed = np.argpartition(-closeness, nprobe - 1, axis=1)[:, :nprobe]
        else:
            probed = np.broadcast_to(np.arange(self.nlist), (queries.shape[0], self.nlist))
        out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
        out_l = np.full((queries.shape[0], k), -1, dtype=np.int64)
        words = self.codes.shape[1]
        for i in range(queries.shape[0]):
            lists = np.sort(probed[i])  # ascending positions: runs of codes read in order
            starts, stops = self.offsets[lists], self.offsets[lists + 1]
            if allow is None:  # the lists' runs of codes as they lie
                pos, _ = kern.hamming_topk_spans(self.codes, starts, stops, q_codes[i],
                                                 HAMMING_EXPAND * k)
            else:
                pos, _ = kern.hamming_topk_spans_allowed(self.codes, starts, stops, self.labels,
                                                         allow, q_codes[i], HAMMING_EXPAND * k)
            scores = kern.sign_scores_rows(self.codes, pos, sign_score_table(queries[i], words))
            best = kern.topk_scores(scores, k)
            out_l[i, :best.size] = self.labels[pos[best]]
            out_s[i, :best.size] = scores[best]
        return out_s, out_l

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``nprobe`` for ``k`` *candidates* (the planner asks for ``candidates_for(results)``):
        :func:`~vecstore.index.calibration.ivf_effort` for ``k / rerank`` results from the
        ``nprobe`` measured at build time, with the probed lists holding on average twice the
        candidates wanted among the rows the filter allows."""
        check_int("k", k, 1)
        sel = check_selectivity(selectivity)
        rerank = self.params.rerank or 4
        results = max(1, math.ceil(k / rerank))
        return ivf_effort(results, sel, self._count, self.nlist, self.params.nprobe,
                          per_result=2.0 * rerank)

    def candidates_for(self, k: int) -> int:
        """``k x rerank`` candidates, rescored exactly by the planner (rerank measured at build)."""
        return k * (self.params.rerank or 4)

    @property
    def memory_bytes(self) -> int:
        return int(sum(getattr(self, name).nbytes for name in _ARRAYS))

    # --- files ------------------------------------------------------------------------------

    def _writers(self) -> dict[str, Callable[[Path], None]]:
        def writer(name: str) -> Callable[[Path], None]:
            def write(path: Path) -> None:
                with open(path, "wb") as f:
                    np.save(f, np.ascontiguousarray(getattr(self, name)), allow_pickle=False)
            return write

        return {f"{name}.npy": writer(name) for name in _ARRAYS}

    @classmethod
    def _read(cls, directory: Path, params: IvfBinaryParams, metric: Metric, dim: int,
              count: int) -> IvfBinaryIndex:
        arrays: dict[str, Any] = {}
        for name in _ARRAYS:
            path = directory / f"{name}.npy"
            try:
                arrays[name] = np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise CorruptStoreError(f"index file {path} is unreadable ({exc})") from exc
        codes, labels, offsets = arrays["codes"], arrays["labels"], arrays["offsets"]
        centroids, center = arrays["centroids"], arrays["center"]
        ok = (codes.dtype == np.uint64 and codes.shape == (count, code_words(dim))
              and labels.dtype in (np.int32, np.int64) and labels.shape == (count,)
              and offsets.dtype == np.int64 and offsets.ndim == 1 and offsets.size >= 2
              and centroids.dtype == np.float32 and centroids.shape == (offsets.size - 1, dim)
              and center.dtype == np.float32 and center.shape == (dim,))
        ok = ok and offsets[0] == 0 and offsets[-1] == count and bool(np.all(np.diff(offsets) >= 0))
        ok = ok and (count == 0 or (int(labels.min()) >= 0 and int(labels.max()) < count))
        ok = ok and params.nlist in (None, centroids.shape[0])
        if not ok:
            raise CorruptStoreError(
                f"index files in {directory} do not describe an ivf-binary index of {count} "
                f"{dim}-d vectors (codes {codes.dtype} {codes.shape}, labels {labels.shape}, "
                f"offsets {offsets.shape}, centroids {centroids.shape}); rebuild the index")
        return cls(codes, labels, offsets, centroids, center, params, metric)


def _kmeans(vectors: _Rows, nlist: int, metric: Metric, params: IvfBinaryParams,
            progress: bool, threads: int | None) -> FloatMatrix:
    """``[nlist, d]`` coarse centroids: FAISS k-means on a seeded sample of the vectors."""
    n, d = vectors.n, vectors.dim
    if nlist == 1:
        return vectors.mean()[None, :]
    from ._faiss import faiss_module, omp_threads

    faiss = faiss_module()
    rng = np.random.default_rng(params.seed)
    take = min(n, KMEANS_POINTS_PER_LIST * nlist)
    sample = vectors.take(np.sort(rng.choice(n, take, replace=False)) if take < n
                          else np.arange(n, dtype=np.int64))
    km = faiss.Kmeans(d, nlist, niter=params.niter, seed=params.seed, verbose=progress,
                      spherical=metric is Metric.COSINE, max_points_per_centroid=KMEANS_POINTS_PER_LIST,
                      min_points_per_centroid=1, gpu=building_on_gpu())
    with omp_threads(threads):
        km.train(sample)
    return np.ascontiguousarray(km.centroids, dtype=np.float32)


def _rows_per_chunk(n_queries: int) -> int:
    """Rows per chunk of an exact pass of ``n_queries`` queries over the table: the chunk's
    score matrix and its merge with the running top k (~32 bytes per query and row) within
    :data:`CALIBRATION_GATHER_BYTES`."""
    return int(np.clip(CALIBRATION_GATHER_BYTES // (32 * max(n_queries, 1)), 1_024, 262_144))


def _held_out_truth(metric: Metric, queries: FloatMatrix, vectors: _Rows, allow: AllowBitmap,
                    k: int, duplicates: bool = True
                    ) -> tuple[npt.NDArray[np.float32], list[npt.NDArray[np.int64]]]:
    """Each held-out query's exact ``k``-th best score among the allowed rows and its
    near-duplicates, which are left out of that score and of the query's answers: one pass over
    the rows in chunks (the full ``[q, n]`` score matrix would take 8 GB at 10M rows) keeping
    each query's :data:`~vecstore.index.calibration.DUPLICATE_DEPTH` best rows, whose Euclidean
    distances (whatever the metric) :func:`~vecstore.index.calibration.duplicate_counts` reads.

    Per query, not for all at once: at 10M rows derived from real vectors (~156 noisy copies of
    each), leaving every held-out row's copies out of every search would have removed the copies
    of most sources from the table the calibration searched. ``duplicates=False`` (real queries
    given as a sample) leaves nothing out."""
    depth = min(DUPLICATE_DEPTH if duplicates else k, int(allow.sum()))
    best = np.full((queries.shape[0], depth), -np.inf, dtype=np.float32)
    rows = np.full((queries.shape[0], depth), -1, dtype=np.int64)
    for start, stop in chunks(vectors.n, _rows_per_chunk(queries.shape[0])):
        block = vectors.rows(start, stop)
        sq = np.einsum("ij,ij->i", block, block) if metric is Metric.L2 else None
        scores = exact_scores(metric, queries, block, sq)
        scores[:, ~allow[start:stop]] = -np.inf
        merged_s = np.concatenate([best, scores], axis=1)
        merged_r = np.concatenate([rows, np.broadcast_to(np.arange(start, stop), scores.shape)], axis=1)
        top = np.argpartition(-merged_s, depth - 1, axis=1)[:, :depth]
        best = np.take_along_axis(merged_s, top, axis=1)
        rows = np.take_along_axis(merged_r, top, axis=1)
    if not duplicates:
        return best.min(axis=1), [np.empty(0, dtype=np.int64)] * queries.shape[0]
    kth = np.full(queries.shape[0], -np.inf, dtype=np.float32)
    excluded: list[npt.NDArray[np.int64]] = []
    for i in range(queries.shape[0]):
        found = rows[i] >= 0
        near, scores = rows[i][found], best[i][found]
        dist = np.linalg.norm(vectors.take(near) - queries[i], axis=1)
        order = np.argsort(dist, kind="stable")
        dups = near[order[:duplicate_counts(dist[order], k)[0]]] if duplicates and near.size > k \
            else near[:0]
        kept = np.sort(scores[~np.isin(near, dups)])[::-1]
        kth[i] = kept[min(k, kept.size) - 1] if kept.size else -np.inf
        excluded.append(np.sort(dups))
    return kth, excluded
