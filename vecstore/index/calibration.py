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
(:class:`ExactTruth`) and a grid, the smallest effort whose tie-aware recall reaches a target.
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


CALIBRATION_QUERIES = 200
"""Held-out rows searched at build time to measure an index's effort."""

CALIBRATION_MARGIN = 0.005
"""Added to the target recall when measuring on :data:`CALIBRATION_QUERIES` queries: about one
standard error of recall@10 near 0.95 (``sqrt(0.95 * 0.05 / 2000)``), so that other queries of
the same table reach the target too rather than half of them falling short."""


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

    Holds each query's exact scores over the indexed ``vectors`` and its ``k``-th best score.
    ``own_labels``, for queries that are indexed rows themselves, gives each one's label: that
    row is excluded from its own truth and from the index's answer (finding itself is free).

    Attributes:
        k: the recall depth, ``min(k, n)``.
        scores: ``[q, n]`` exact higher-is-better scores (``-inf`` at a query's own label).
        kth: ``[q]`` the ``k``-th best score per query.
        own_labels: ``[q]`` labels excluded from each query's answer, or None.
    """

    def __init__(self, metric: Metric, queries: FloatMatrix, vectors: FloatMatrix, k: int = 10,
                 own_labels: npt.NDArray[np.int64] | None = None) -> None:
        self.k = min(k, vectors.shape[0])
        self.own_labels = own_labels
        sq = np.einsum("ij,ij->i", vectors, vectors) if metric is Metric.L2 else None
        self.scores = exact_scores(metric, np.ascontiguousarray(queries), vectors, sq)
        if own_labels is not None:
            self.scores[np.arange(own_labels.size), own_labels] = -np.inf
        self.kth = -np.partition(-self.scores, self.k - 1, axis=1)[:, self.k - 1]


def _tie_aware_recall(truth: ExactTruth, labels: LabelMatrix, rescored: bool = False) -> float:
    """Mean recall@k of ``labels`` (``-1`` a miss): a label counts when its exact score is at
    least the query's exact ``k``-th best (relative tolerance 1e-5, so ties count), among the
    first ``k`` labels of each row after dropping misses and the query's own label; with
    ``rescored``, the ``k`` best of the row by exact score (the candidates rescored)."""
    k, scores = truth.k, truth.scores
    found = []
    for i, row in enumerate(labels):
        keep = row >= 0
        if truth.own_labels is not None:
            keep &= row != truth.own_labels[i]
        row = row[keep]
        if rescored:
            row = row[np.argsort(-scores[i, row], kind="stable")]
        found.append(scores[i, row[:k]])
    return float(tie_aware_recalls(found, truth.kth, k).mean())


def smallest_effort(search: SearchFn, queries: FloatMatrix, truth: ExactTruth,
                    grid: Sequence[int], target: float = 0.95, *,
                    rescored: bool = False) -> int | None:
    """The first effort on ``grid`` (ascending) whose tie-aware recall@k reaches ``target``.

    Each effort runs ``search(queries, k, effort)`` (``k + 1`` when the queries are indexed
    rows, whose own label is dropped) and judges its labels against ``truth``; ``rescored``
    judges the ``k`` best of them by exact score. Returns None when no effort reaches the
    target, for the caller to choose its fallback.
    """
    fetch = truth.k + (truth.own_labels is not None)
    for effort in grid:
        if _tie_aware_recall(truth, search(queries, fetch, effort), rescored) >= target:
            return effort
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
) -> int:
    """The smallest effort on ``grid`` whose recall@k reaches ``target``, measured at build time.

    ``sample`` indexed vectors, drawn with a seeded generator, serve as queries; each one's
    exact top-k over ``vectors`` (itself excluded) is the truth, and ``search(queries, k + 1,
    effort)`` the index's answer with the query's own label dropped. Recall is tie-aware.
    Returns the last grid value when none reaches the target. ``truth_vectors`` (same rows)
    replaces ``vectors`` for the exact scores: +-1 sign vectors judge a Hamming index.

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
    truth = ExactTruth(metric, exact[rows], exact, k, own_labels=rows)
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
) -> tuple[int, int]:
    """``(ef, rerank)`` for an index whose candidates are rescored exactly (``hnsw-sq``).

    ``queries`` are held-out rows, not in the index (a row already in the graph would find its
    own neighbour list, far easier than a new query). For each ``rerank`` the smallest ef on
    ``grid`` (at least ``rerank * k``, or the grid's last) whose ``rerank * k`` candidates,
    rescored exactly, reach recall@k >= ``target``; the pair with the smallest ef wins (the
    graph walk is the cost; rescoring a few hundred rows is not), the first rerank on ties.
    When none reaches the target: the widest setting tried.
    """
    truth = ExactTruth(metric, queries, indexed, k)
    k, n = truth.k, indexed.shape[0]
    best: tuple[int, int] | None = None  # (ef, rerank)
    for rerank in reranks:
        wanted = rerank * k

        def candidates(q: FloatMatrix, _k: int, ef: int, wanted: int = wanted) -> LabelMatrix:
            return search(q, min(wanted, n), max(ef, wanted))

        efs = [ef for ef in grid if (ef >= wanted or ef == grid[-1])
               and (best is None or ef < best[0])]
        ef = smallest_effort(candidates, queries, truth, efs, target, rescored=True)
        if ef is not None:
            best = (ef, rerank)
    return best if best is not None else (grid[-1], reranks[-1])
