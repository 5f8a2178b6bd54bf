"""Search effort (HNSW ``ef``, IVF ``nprobe``): the rules, and the build-time measurements behind them.

Rules turn ``k`` and a filter's selectivity into an effort; each docstring gives the measurements
it was fitted to (``python -m bench ann-backends --calibrate``):

- :func:`hnsw_effort` (hnswlib), :func:`beam_effort` (FAISS HNSW, float or binary),
  :func:`hnsw_sq_effort` (``hnsw-sq``), :func:`ivf_effort` (the IVF kinds, float or binary),
  all anchored on :func:`graph_ef` or on an ``nprobe`` measured at build time.

Measurements at build time pick the anchor on the table's own vectors, because a fixed default is
right for one data set and wrong for the next:

- :func:`calibrate_effort` (IVF ``nprobe``): sample rows of the index serve as queries, their own
  label dropped from their answers.
- :func:`calibrate_rerank_ef` (``hnsw-sq``): held-out rows, searched before they are added.

Both rest on :func:`smallest_effort`: given a search callable, queries, their exact answers
(:class:`ExactTruth`) and a grid, the smallest effort whose tie-aware recall reaches a target
*with confidence* (the lower bound of the measured recall, :func:`recall_lower_bound`, so the
margin follows the sample size). Held-out rows are made to look like queries: each one's
near-duplicates in the table are left out of its truth and of the index's answer (a table row
often has a twin; a user's query rarely does).
Calibrating another backend on held-out rows of its table takes two lines::

    truth = ExactTruth(metric, held_out, indexed, k=10)
    ef = smallest_effort(search, held_out, truth, EF_GRID, target=0.95) or EF_GRID[-1]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

from ..config import Metric
from ..errors import InvalidArgumentError
from ..evaluation import tie_aware_recalls
from .base import FloatMatrix, LabelMatrix
from .flat import exact_scores

SearchFn = Callable[[FloatMatrix, int, int], LabelMatrix]
"""``search(queries, k, effort) -> labels [q, >= k]``, ``-1`` marking a miss: an index's
unfiltered search as calibration calls it."""

EF_GRID = [16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024]
"""HNSW ``ef`` values about 1.5x apart, tried by build-time calibration."""

_NPROBE_STEPS = [1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024,
                 1536, 2048, 3072, 4096, 6144, 8192]


# --- rules --------------------------------------------------------------------------------------


def check_recall(value: float) -> float:
    """Validate a target recall in ``(0, 1]``."""
    if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1):
        raise InvalidArgumentError(f"target_recall must be a fraction in (0, 1], got {value!r}")
    return float(value)


def clamp_effort(value: float, low: int, high: int) -> int:
    """``value`` rounded up and clipped to ``[low, high]`` (``high`` wins if ``low > high``)."""
    return int(max(1, min(high, max(low, math.ceil(value)))))


def check_selectivity(selectivity: float) -> float:
    """Validate a selectivity in ``(0, 1]``; values above 1 are clipped to 1."""
    if not (isinstance(selectivity, (int, float, np.floating)) and selectivity > 0):
        raise InvalidArgumentError(
            f"selectivity must be a fraction in (0, 1], got {selectivity!r}"
        )
    return min(1.0, float(selectivity))


def graph_ef(k: int) -> int:
    """Unfiltered ``ef`` reaching recall@k >= 0.95 on an HNSW graph (m = 16): ``200 + 2 k``.

    Anchored on real embeddings, the hardest data measured: on the 200,000 MiniLM vectors of
    PyPI summaries (``python -m bench ann-backends --calibrate``, 300 queries), the smallest ef
    on a 1.5x grid reaching recall 0.95 was 192 for k = 1, 10 and 50 with hnswlib (128 did not)
    and 192 / 128 / 192 with FAISS HNSW. Synthetic clustered vectors need far less (16-32 on
    50,000 96-d vectors), so this over-provisions easy data; the planner may pass its own.
    """
    return 200 + 2 * k


def hnsw_effort(k: int, selectivity: float, n: int, unfiltered: int | None = None) -> int:
    """``ef = unfiltered * sqrt(selectivity)``, clipped to ``[max(k, 10), n]``; ``unfiltered``
    is the ef measured for this k at build time (:func:`ef_for_k`), or :func:`graph_ef`.

    hnswlib's filtered search keeps walking until its result heap holds ``ef`` *allowed*
    labels, so a selective filter already makes it explore more of the graph; a large ef
    under a tiny filter only forces it to walk the whole graph. Measured on the 200,000
    MiniLM vectors (``python -m bench ann-backends --calibrate``, 200 filtered queries,
    uniform random filters), the smallest ef reaching recall@10 >= 0.95 *falls* as the filter
    tightens: 192 / 96 / 24 / 10 / 10 at selectivity 1 / 0.5 / 0.1 / 0.01 / 0.001 (k = 50:
    192 / 128 / 64 / 10 / 10); the rule gives 220 / 156 / 70 / 22 / 10 (k = 50: 300 / 213 /
    95 / 50 / 50). On 50,000 clustered 96-d vectors every selectivity needed ef <= 32.
    """
    sel = check_selectivity(selectivity)
    base = graph_ef(k) if unfiltered is None else unfiltered
    return clamp_effort(base * math.sqrt(sel), max(k, 10), max(k, n))


def beam_effort(k: int, selectivity: float, n: int, per_result: float = 2.0) -> int:
    """``ef`` for FAISS HNSW (float or binary) under a filter, clipped to ``[k, n]``::

        max(graph_ef(k), per_result * max(k, 2) / selectivity)

    FAISS keeps disallowed nodes in its ``ef``-wide beam and only skips them as results, so
    the beam must hold about ``per_result * k`` allowed nodes: it grows like ``1 / selectivity``
    and at 0.1% reaches a large share of the graph (the planner prefers the exact scan there).
    ``per_result`` is 2 for ``faiss-hnsw`` and 4 for ``binary-hnsw``, whose Hamming ranks tie.

    Measured: the smallest ef on a 1.5x grid reaching recall >= 0.95 under uniform random
    filters of selectivity 1 / 0.5 / 0.1 / 0.01 / 0.001 (``python -m bench ann-backends
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


def hnsw_sq_effort(k: int, selectivity: float, n: int, ef: int | None, rerank: int | None) -> int:
    """``ef`` for ``k`` candidates of ``hnsw-sq``, clipped to ``[k, n]``::

        max(ef * k / (10 rerank), 2 k / selectivity)

    ``ef`` and ``rerank`` were measured at build time (:func:`calibrate_rerank_ef`) for
    ``10 x rerank`` candidates; the first term scales that ef with the candidates wanted. Under
    a filter the beam holds about 2 allowed nodes per wanted candidate (FAISS keeps disallowed
    nodes in the beam, as for ``faiss-hnsw``: :func:`beam_effort`).
    """
    sel = check_selectivity(selectivity)
    ef = ef or graph_ef(k)
    per = 10 * (rerank or 2)
    return clamp_effort(max(ef * max(1.0, k / per), 2 * max(k, 2) / sel), k, max(k, n))


def ivf_effort(k: int, selectivity: float, n: int, nlist: int, nprobe10: int | None,
               per_result: float = 8.0) -> int:
    """``nprobe`` reaching recall@k >= 0.95 on an IVF index, clipped to ``[1, nlist]``::

        max(nprobe10 * (max(k, 10) / (10 * selectivity)) ** 0.25,
            per_result * max(k, 2) * nlist / (selectivity * n))

    ``nprobe10`` is the unfiltered nprobe for k = 10, measured at build time on the data
    itself (:func:`calibrate_effort`). Under a filter the wanted rows are roughly the
    unfiltered top ``k / selectivity``, spread over more lists: the first term grows with that
    rank (the 0.25 power fits the MiniLM vectors). The second makes the probed lists hold, on
    average, ``per_result`` allowed vectors per wanted result (tight clusters need it:
    synthetic data, tiny filters); 8 for float IVF, 12 for binary IVF, whose Hamming ranks tie
    and which filters after the search.

    Measured: the smallest nprobe on a 1.5x grid reaching recall@10 >= 0.95 under uniform
    random filters of selectivity 1 / 0.5 / 0.1 / 0.01 / 0.001 (``python -m bench ann-backends
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


CALIBRATION_QUERIES = 1000
"""Held-out rows searched at build time to measure an index's effort (at most a tenth of the
table). The standard error of recall@10 falls with the square root of this: 1,000 queries whose
recalls spread like MiniLM's (standard deviation ~0.1) put the lower bound ~0.005 under the mean."""

CALIBRATION_MARGIN = 0.0
"""Kept for callers that add it to their target: the margin is now statistical, the lower
confidence bound of the measured recall (:func:`recall_lower_bound`), so this is 0. It was a
constant 0.005, which on 200 held-out rows let the bench's real queries fall to recall 0.941
at a target of 0.95."""


def duplicate_counts(dist: npt.ArrayLike, k: int = 10) -> npt.NDArray[np.int64]:
    """How many of a calibration query's nearest rows are its near-duplicates, per query.

    ``dist`` is ``[q, m]`` (or one row of ``m``): each query's Euclidean distances to its ``m``
    nearest rows, ascending. The count is the largest ``c`` such that the ``c``-th nearest row is
    closer than :data:`DUPLICATE_RATIO` times the distance of the ``(c + k)``-th, i.e. of the
    ``k``-th nearest row that is not a copy (0 when there is none): the nearest ``c`` rows form a
    tight group of copies around the query, away from its neighbourhood. With one or two copies
    this is the rule "closer than half the ``k``-th neighbour"; unlike it, it also sees a row
    with more than ``k`` copies (a boilerplate paragraph, a re-sent story, a corpus derived by
    perturbing its rows), whose ``k`` nearest are all copies at one distance. Look ``m`` deep
    enough (:data:`DUPLICATE_DEPTH`) for the copies a table may hold.
    """
    d = np.atleast_2d(np.asarray(dist, dtype=np.float64))
    m = d.shape[1]
    if m <= k:
        return np.zeros(d.shape[0], dtype=np.int64)
    copies = d[:, :m - k] < DUPLICATE_RATIO * d[:, k:]
    last = (m - k) - np.argmax(copies[:, ::-1], axis=1)  # 1 + the last position that is a copy
    return np.where(copies.any(axis=1), last, 0).astype(np.int64)


def nearest_distances(queries: FloatMatrix, vectors: FloatMatrix, depth: int,
                      out: npt.NDArray[np.int64] | None = None
                      ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
    """Each query's ``depth`` nearest rows of ``vectors`` by Euclidean distance (whatever the
    metric: "near" means near in space), ascending: ``(distances, rows)``; ``out[i]`` (a row per
    query, or -1) is left out of query ``i``'s answer (its own row)."""
    n = vectors.shape[0]
    depth = min(depth, n - (out is not None))
    sq = np.einsum("ij,ij->i", vectors, vectors)
    q_sq = np.einsum("ij,ij->i", queries, queries)
    dist = np.empty((queries.shape[0], depth), dtype=np.float32)
    rows = np.empty((queries.shape[0], depth), dtype=np.int64)
    step = max(1, (1 << 24) // max(n, 1))  # [step, n] distances at a time
    for start in range(0, queries.shape[0], step):
        stop = min(start + step, queries.shape[0])
        d2 = q_sq[start:stop, None] + sq[None, :] - 2 * (queries[start:stop] @ vectors.T)
        if out is not None:
            own = out[start:stop]
            d2[np.flatnonzero(own >= 0), own[own >= 0]] = np.inf
        top = np.argpartition(d2, depth - 1, axis=1)[:, :depth] if depth < n else \
            np.broadcast_to(np.arange(n), d2.shape).copy()
        top_d = np.take_along_axis(d2, top, axis=1)
        order = np.argsort(top_d, axis=1, kind="stable")
        rows[start:stop] = np.take_along_axis(top, order, axis=1)
        dist[start:stop] = np.sqrt(np.maximum(np.take_along_axis(top_d, order, axis=1), 0))
    return dist, rows


def near_duplicates(metric: Metric, vectors: FloatMatrix, rows: npt.NDArray[np.int64],
                    k: int = 10, budget: int | None = None
                    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``(rows kept, their near-duplicates)``: the rows of ``vectors`` outside ``rows`` that are
    near-duplicates of some row in ``rows`` (:func:`duplicate_counts` over its
    :data:`DUPLICATE_DEPTH` nearest rows).

    A build holds these out of the graph with the calibration rows: a held-out row whose twin
    is in the graph reaches the twin's neighbour list, which is its own answer, at almost no
    effort, where a user's query, which rarely has such a twin, needs far more. With ``budget``,
    rows are kept in a seeded random order only while they and their near-duplicates number at
    most ``budget``: in a table where every row has dozens of copies, holding out 1,000 rows
    with all their copies would take most of the table out of the graph being measured.
    """
    n = vectors.shape[0]
    if rows.size == 0 or n <= k + 1:
        return rows, np.empty(0, dtype=np.int64)
    dist, near = nearest_distances(np.ascontiguousarray(vectors[rows]), vectors,
                                   DUPLICATE_DEPTH, out=rows)
    counts = duplicate_counts(dist, k)
    keep = np.ones(rows.size, dtype=bool)
    if budget is not None and rows.size + counts.sum() > budget:
        # a seeded random order (rows come sorted), each row costing itself and its copies
        order = np.random.default_rng(0).permutation(rows.size)
        keep[:] = False
        keep[order[np.cumsum(1 + counts[order]) <= budget]] = True
        keep[order[0]] = True  # at least one query
    dups = np.unique(near[keep][np.arange(near.shape[1])[None, :] < counts[keep, None]])
    return rows[keep], np.setdiff1d(dups.astype(np.int64), rows[keep])


def held_out_rows(n: int, seed: int = 0) -> npt.NDArray[np.int64]:
    """Rows to hold out of a graph build and search as calibration queries: a seeded random
    tenth of the table, at most :data:`CALIBRATION_QUERIES` (none below 200 rows, where an
    exhaustive ``ef`` costs nothing). Random, not the last rows: tables are often added in an
    order (time, source) that the last rows do not represent."""
    held = min(CALIBRATION_QUERIES, n // 10) if n >= 200 else 0
    if held == 0:
        return np.empty(0, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, held, replace=False)).astype(np.int64)


def measured_hnsw_effort(k: int, selectivity: float, n: int, ef10: int | None, ef50: int | None) -> int:
    """:func:`hnsw_effort` anchored on the ``ef`` measured at build time for k = 10 and 50
    (:func:`graph_ef` when they were not measured: an index built before calibration existed)."""
    measured = ef_for_k(k, ef10, ef50) if ef10 is not None and ef50 is not None else None
    return hnsw_effort(k, selectivity, n, measured)


FILTER_SELECTIVITIES = (0.5, 0.1, 0.02)
"""Selectivities of the random filters under which a build measures the filtered ``ef``
(:func:`filtered_hnsw_effort` interpolates between them on a log scale)."""

FILTER_QUERIES = 300
"""Held-out rows searched per filter selectivity (fewer than for the unfiltered efforts: a
filtered hnswlib search calls back into Python for every node it visits, and three selectivities
are measured)."""


def check_filtered_ef(value: object) -> tuple[tuple[float, int], ...] | None:
    """Normalise a measured filtered-effort curve (``[[selectivity, ef], ...]``, as a manifest
    stores it) to a tuple of ``(selectivity, ef)`` pairs sorted by falling selectivity."""
    if value is None:
        return None
    try:
        pairs = [(float(sel), ef) for sel, ef in value]  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"filtered_ef must be a list of [selectivity, ef] pairs, got {value!r}") from None
    for sel, ef in pairs:
        ok_ef = isinstance(ef, (int, np.integer)) and not isinstance(ef, bool) and 1 <= ef <= 1 << 20
        if not (0 < sel < 1 and ok_ef):
            raise InvalidArgumentError(
                f"filtered_ef must pair a selectivity in (0, 1) with an integer ef in [1, 2**20], "
                f"got [{sel!r}, {ef!r}]")
    return tuple(sorted(((sel, int(ef)) for sel, ef in pairs), reverse=True))


def filtered_hnsw_effort(k: int, selectivity: float, n: int, ef10: int, ef50: int,
                         curve: Sequence[tuple[float, int]]) -> tuple[int, str]:
    """``ef`` for ``k`` results under a filter of ``selectivity`` from the efforts measured at
    build time under random filters (``curve``: ``(selectivity, ef for k = 10)`` pairs, the
    unfiltered ``ef10`` at selectivity 1), and where it came from.

    Between two measured selectivities the ef is interpolated linearly in ``log(selectivity)``
    (log ef); below the tightest one measured its ef is kept (measured on MiniLM vectors, the ef
    hnswlib's filtered search needs falls as the filter tightens: :func:`hnsw_effort`); then it
    is scaled for ``k`` as the unfiltered one is (:func:`ef_for_k`). Clipped to
    ``[max(k, 10), max(k, n)]``.
    """
    sel = check_selectivity(selectivity)
    points = [(1.0, int(ef10)), *sorted(curve, reverse=True)]
    if sel >= 1:
        ef, how = float(ef10), "unfiltered"
    elif sel <= points[-1][0]:
        ef, how = float(points[-1][1]), f"measured at {points[-1][0]:.0%} (ef={points[-1][1]})"
    else:
        (s_hi, e_hi), (s_lo, e_lo) = next(
            (points[i], points[i + 1]) for i in range(len(points) - 1) if points[i + 1][0] <= sel)
        share = math.log(s_hi / sel) / math.log(s_hi / s_lo)
        ef = math.exp(math.log(e_hi) + share * (math.log(e_lo) - math.log(e_hi)))
        hi = "unfiltered" if s_hi >= 1 else f"{s_hi:.0%}"
        how = f"interpolated between {hi} (ef={e_hi}) and {s_lo:.0%} (ef={e_lo})"
    scaled = ef * ef_for_k(k, ef10, ef50) / ef10
    return clamp_effort(scaled, max(k, 10), max(k, n)), how


def ef_for_k(k: int, ef10: int, ef50: int) -> int:
    """The ``ef`` for recall@k from the two measured at build time (k = 10 and 50): the same
    for k <= 10, log-linear between, proportional to ``k`` beyond 50; never below ``k``."""
    if k <= 10:
        ef = float(ef10)
    elif k <= 50:
        ef = ef10 * (ef50 / ef10) ** (math.log(k / 10) / math.log(5))
    else:
        ef = ef50 * k / 50
    return max(k, math.ceil(ef))


def nprobe_grid(nlist: int) -> list[int]:
    """Candidate nprobe values, about 1.5x apart, up to ``nlist``."""
    return [p for p in _NPROBE_STEPS if p < nlist] + [nlist]


# --- measurements -------------------------------------------------------------------------------


class ExactTruth:
    """The exact answers to calibration queries, against which an index's answers are judged.

    Holds each query's ``k``-th best exact score over the indexed ``vectors`` and the rows left
    out of its answer. ``own_labels``, for queries that are indexed rows themselves, gives each
    one's label: that row is excluded from its own truth and from the index's answer (finding
    itself is free). With ``drop_duplicates`` (the default), each query's *near-duplicates* are
    excluded the same way (:func:`duplicate_counts`: the tight group of rows around it, closer
    than :data:`DUPLICATE_RATIO` times the distance of its ``k``-th nearest row beyond them). A
    held-out row of a table often has such a twin (a re-sent story, a copied summary) that an
    index finds at once, while a user's query rarely does; judging without them measures the
    effort real queries need.

    Attributes:
        k: the recall depth, ``min(k, n)``.
        kth: ``[q]`` the ``k``-th best score per query, excluded rows left out.
        excluded: per query, the labels left out of its truth and answer (own label, duplicates).
        scores: ``[q, n]`` exact higher-is-better scores, ``-inf`` at excluded labels (computed
            on first use: ``q x n`` floats).
    """

    def __init__(self, metric: Metric, queries: FloatMatrix, vectors: FloatMatrix, k: int = 10,
                 own_labels: npt.NDArray[np.int64] | None = None, *,
                 drop_duplicates: bool = True) -> None:
        self.metric = metric
        self.k = min(k, vectors.shape[0])
        self.own_labels = own_labels
        self._queries = np.ascontiguousarray(queries, dtype=np.float32)
        self._vectors = vectors
        self._sq = np.einsum("ij,ij->i", vectors, vectors) if metric is Metric.L2 else None
        self._scores: FloatMatrix | None = None
        q = self._queries.shape[0]
        self.kth = np.empty(q, dtype=np.float32)
        self.excluded: list[npt.NDArray[np.int64]] = []
        vq = np.einsum("ij,ij->i", self._queries, self._queries)
        vsq = self._sq if self._sq is not None else np.einsum("ij,ij->i", vectors, vectors)
        # in blocks of queries: [q, n] at once is gigabytes on a large table
        step = max(1, (1 << 24) // max(1, vectors.shape[0]))
        for start in range(0, q, step):
            block = exact_scores(metric, self._queries[start:start + step], vectors, self._sq)
            for j, row in enumerate(block):
                i = start + j
                out = [int(own_labels[i])] if own_labels is not None else []
                row[out] = -np.inf
                if drop_duplicates and self.k < row.size - len(out):
                    # Euclidean distances whatever the metric: "near" means near in space
                    depth = min(DUPLICATE_DEPTH, row.size - len(out))
                    top = np.argpartition(-row, depth - 1)[:depth]
                    dot = self._vectors[top] @ self._queries[i]
                    dist = np.sqrt(np.maximum(vq[i] + vsq[top] - 2 * dot, 0))
                    order = np.argsort(dist, kind="stable")
                    dups = top[order[: duplicate_counts(dist[order], self.k)[0]]]
                    if dups.size:
                        out += dups.tolist()
                        row[dups] = -np.inf
                self.excluded.append(np.asarray(out, dtype=np.int64))
                kk = min(self.k, row.size - len(out))
                self.kth[i] = -np.partition(-row, kk - 1)[kk - 1] if kk > 0 else -np.inf

    @property
    def scores(self) -> FloatMatrix:
        if self._scores is None:
            s = exact_scores(self.metric, self._queries, self._vectors, self._sq)
            for i, out in enumerate(self.excluded):
                s[i, out] = -np.inf
            self._scores = s
        return self._scores

    @property
    def extra(self) -> int:
        """Labels to fetch beyond ``k`` so that ``k`` remain once the excluded ones are dropped."""
        return max((e.size for e in self.excluded), default=0)

    def scores_of(self, i: int, labels: npt.NDArray[np.int64]) -> FloatMatrix:
        """Exact scores of query ``i`` against ``labels`` (all valid)."""
        rows = self._vectors[labels]
        s = rows @ self._queries[i]
        if self.metric is Metric.L2:
            assert self._sq is not None
            s = 2 * s - self._queries[i] @ self._queries[i] - self._sq[labels]
        return s.astype(np.float32, copy=False)


DUPLICATE_RATIO = 0.5
"""A row closer to a calibration query than this fraction of the distance to the query's k-th
nearest row is its near-duplicate (:class:`ExactTruth`). On unit vectors, 0.5 of a typical
10th-neighbour distance (~0.9, cosine 0.6) is cosine 0.9: a copy or a light rewording."""

DUPLICATE_DEPTH = 1024
"""Nearest rows examined for a calibration query's near-duplicates (:func:`duplicate_counts`):
a row with more copies than this keeps the rest in its truth."""

CONFIDENCE_Z = 1.645
"""One-sided 95%: the measured recall's lower confidence bound (mean minus ``z`` standard
errors of the per-query recalls) must reach the target, so the margin follows the sample size and
the spread of the queries rather than a constant."""


def _recalls(truth: ExactTruth, labels: LabelMatrix, rescored: bool = False) -> npt.NDArray[np.float64]:
    """Per-query tie-aware recall@k of ``labels`` (``-1`` a miss): a label counts when its exact
    score is at least the query's exact ``k``-th best (relative tolerance 1e-5, so ties count),
    among the first ``k`` labels of each row after dropping misses and the query's excluded
    labels (own label, near-duplicates); with ``rescored``, the ``k`` best of the row by exact
    score (the candidates rescored)."""
    k = truth.k
    found = []
    for i, row in enumerate(labels):
        row = row[row >= 0]
        if truth.excluded[i].size:
            row = row[~np.isin(row, truth.excluded[i])]
        scores = truth.scores_of(i, row)
        if rescored:
            scores = -np.sort(-scores, kind="stable")
        found.append(scores[:k])
    return np.asarray(tie_aware_recalls(found, truth.kth, k), dtype=np.float64)


def _tie_aware_recall(truth: ExactTruth, labels: LabelMatrix, rescored: bool = False) -> float:
    """Mean of :func:`_recalls`."""
    return float(_recalls(truth, labels, rescored).mean())


def recall_lower_bound(recalls: npt.ArrayLike, z: float = CONFIDENCE_Z) -> float:
    """Mean per-query recall minus ``z`` standard errors: a lower confidence bound on the
    recall of other queries like these (one-sided 95% at the default ``z``)."""
    r = np.asarray(recalls, dtype=np.float64)
    if r.size < 2:
        return float(r.mean()) if r.size else 0.0
    return float(r.mean() - z * r.std(ddof=1) / math.sqrt(r.size))


def smallest_effort(search: SearchFn, queries: FloatMatrix, truth: ExactTruth,
                    grid: Sequence[int], target: float = 0.95, *,
                    rescored: bool = False, z: float = CONFIDENCE_Z,
                    refine: bool = False) -> int | None:
    """The first effort on ``grid`` (ascending) whose recall@k reaches ``target`` with
    confidence: its lower bound (:func:`recall_lower_bound`, ``z`` standard errors below the
    mean of the per-query tie-aware recalls) must reach it; ``z=0`` asks for the mean only.

    Each effort runs ``search(queries, k + extra, effort)`` (``extra`` the most labels any
    query has excluded: its own, its near-duplicates; see :class:`ExactTruth`) and judges its
    labels against ``truth``; ``rescored`` judges the ``k`` best of them by exact score. With
    ``refine``, an effort between the last grid value that fell short and the first that
    reached the target, interpolated on the measured bounds (log scale), is tried as well and
    kept if it reaches the target (measured, not assumed). Returns None when no effort reaches
    the target, for the caller to choose its fallback.
    """
    fetch = truth.k + truth.extra
    previous: tuple[int, float] | None = None
    for effort in grid:
        bound = recall_lower_bound(_recalls(truth, search(queries, fetch, effort), rescored), z)
        if bound >= target:
            if refine and previous is not None and effort > previous[0] + 1:
                low, low_bound = previous
                share = (target - low_bound) / max(bound - low_bound, 1e-9)
                mid = math.ceil(math.exp(math.log(low) + share * (math.log(effort) - math.log(low))))
                if low < mid < effort:
                    mid_bound = recall_lower_bound(
                        _recalls(truth, search(queries, fetch, mid), rescored), z)
                    if mid_bound >= target:
                        return mid
            return effort
        previous = (effort, bound)
    return None


def calibrate_effort(
    search: SearchFn,
    vectors: FloatMatrix,
    metric: Metric,
    grid: list[int],
    *,
    k: int = 10,
    target: float = 0.95,
    sample: int = 200,
    seed: int = 0,
    truth_vectors: FloatMatrix | None = None,
    drop_duplicates: bool = True,
) -> int:
    """The smallest effort on ``grid`` whose recall@k reaches ``target``, measured at build time.

    ``sample`` indexed vectors, drawn with a seeded generator, serve as queries; each one's
    exact top-k over ``vectors`` (itself and its near-duplicates excluded: :class:`ExactTruth`)
    is the truth, and ``search(queries, k + 1 + duplicates, effort)`` the index's answer with the
    excluded labels dropped. Recall is tie-aware; its lower confidence bound must reach
    ``target`` (:func:`smallest_effort`).
    Returns the last grid value when none reaches the target. ``truth_vectors`` (same rows)
    replaces ``vectors`` for the exact scores: +-1 sign vectors judge a Hamming index.
    ``drop_duplicates=False`` keeps the sample rows' near-duplicates in their truth.

    For IVF backends this replaces a fixed default ``nprobe``, which would be right for one
    data set and wrong for the next: measured, 3 of 102 lists reach 0.95 on 4,000 clustered
    48-d vectors, 64 of 102 are needed on Gaussian noise of the same shape.
    """
    n = vectors.shape[0]
    if n <= k + 1 or not grid:
        return grid[-1] if grid else 1
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(n, min(sample, n), replace=False))
    exact = vectors if truth_vectors is None else truth_vectors
    truth = ExactTruth(metric, exact[rows], exact, k, own_labels=rows, drop_duplicates=drop_duplicates)
    found = smallest_effort(search, np.ascontiguousarray(vectors[rows]), truth, grid, target)
    return grid[-1] if found is None else found


def calibrate_rerank_ef(
    search: SearchFn,
    queries: FloatMatrix,
    indexed: FloatMatrix,
    metric: Metric,
    reranks: Sequence[int],
    grid: Sequence[int],
    *,
    k: int = 10,
    target: float = 0.95,
    drop_duplicates: bool = True,
    refine: bool = False,
) -> tuple[int, int]:
    """``(ef, rerank)`` for an index whose candidates are rescored exactly (``hnsw-sq``).

    ``queries`` are held-out rows, not in the index (a row already in the graph would find its
    own neighbour list, far easier than a new query). For each ``rerank`` the smallest ef on
    ``grid`` (at least ``rerank * k``, or the grid's last) whose ``rerank * k`` candidates,
    rescored exactly, reach recall@k >= ``target``; the pair with the smallest ef wins (the
    graph walk is the cost; rescoring a few hundred rows is not), the first rerank on ties.
    When none reaches the target: the widest setting tried. ``drop_duplicates=False`` (real
    queries, not held-out rows) keeps every row in their truth. ``refine``: an ef between two
    grid steps, measured to reach the target, may win (:func:`smallest_effort`).
    """
    truth = ExactTruth(metric, queries, indexed, k, drop_duplicates=drop_duplicates)
    k, n = truth.k, indexed.shape[0]
    best: tuple[int, int] | None = None  # (ef, rerank)
    for rerank in reranks:
        wanted = rerank * k

        def candidates(q: FloatMatrix, _k: int, ef: int, wanted: int = wanted) -> LabelMatrix:
            return search(q, min(wanted, n), max(ef, wanted))

        efs = [ef for ef in grid if ef >= wanted or ef == grid[-1]]
        if best is not None:
            # up to the first grid step at or above the best ef so far: refining between the
            # step below and that one may land under it (a grid cut at the best ef would never
            # refine, and a larger rerank lost to a refined smaller one it would have beaten)
            above = [ef for ef in efs if ef >= best[0]][:1 if refine else 0]
            efs = [ef for ef in efs if ef < best[0]] + above
        ef = smallest_effort(candidates, queries, truth, efs, target, rescored=True, refine=refine)
        if ef is not None and (best is None or ef < best[0]):
            best = (ef, rerank)
    return best if best is not None else (grid[-1], reranks[-1])
