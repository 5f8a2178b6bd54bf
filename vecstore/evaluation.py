"""Retrieval evaluation: tie-aware recall for ANN search, nDCG/recall/MRR for judged queries, a
paired bootstrap, and loaders for BEIR's ``queries.jsonl`` and ``qrels.tsv``.

Pure NumPy and the standard library: importing this module loads no model, index or database.

**Nearest-neighbour recall, tie-aware.** An approximate search is judged against the exact
answer. Comparing row ids would punish a search for returning one of several rows that tie
with the exact k-th best, so a returned row counts as found when its *exact* score reaches the
exact k-th best score, less a tolerance:

    score >= kth - tolerance * max(1, |kth|)

The tolerance is absolute for scores of magnitude up to 1 (cosine, dot products of unit
vectors) and relative beyond (raw dot products, negative squared L2 distances). Its default,
:data:`DEFAULT_TIE_TOLERANCE` = 1e-5, is about 80 float32 steps at 1.0: above the rounding
differences between two float32 computations of the same score (a BLAS matrix product against a
vector dot product, 1e-7 to 1e-6 for 384 dimensions), and below the gaps between neighbours in
real embeddings. Scores must be higher-is-better.

**Judged queries** (BEIR / pytrec_eval conventions). ``relevance`` maps a document id to its
grade; grades <= 0 count as not relevant. With ``ranked`` the ids a system returned, best first:

- nDCG@k: ``DCG = sum(grade / log2(rank + 1))`` over the first k ranks (rank 1 is the best), over
  the ideal DCG of the k highest grades in ``relevance``; 0 when nothing is relevant;
- recall@k: relevant documents among the first k over all relevant documents; 0 when nothing
  is relevant;
- MRR@k: the reciprocal rank of the first relevant document within the first k, else 0 (this
  is one query's reciprocal rank; MRR@k is its mean over queries).

An id repeated in ``ranked`` counts at its first rank only.

>>> qrels = {"q1": {"d1": 2, "d3": 1}}
>>> scores = evaluate_rankings({"q1": ["d1", "d2", "d3"]}, qrels, k=10)
>>> round(scores.mean("ndcg"), 4), scores.mean("recall"), scores.mean("mrr")
(0.9502, 1.0, 1.0)

**Comparing two systems** on the same queries: :func:`paired_bootstrap` resamples queries (or
whole groups of queries) with replacement and gives the mean difference with a percentile
interval.

>>> c = paired_bootstrap([0.5, 0.7, 0.9, 0.4], [0.4, 0.5, 0.9, 0.3], resamples=1000, seed=0)
>>> round(c.delta, 3), c.ci_low >= 0.0, c.ci_high <= 0.2
(0.1, True, True)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from .errors import InvalidArgumentError

__all__ = [
    "DEFAULT_TIE_TOLERANCE",
    "Comparison",
    "Qrels",
    "RetrievalScores",
    "evaluate_rankings",
    "kth_best",
    "load_qrels",
    "load_queries",
    "mrr_at_k",
    "ndcg_at_k",
    "ndcg_from_gains",
    "paired_bootstrap",
    "recall_at_k",
    "reciprocal_rank",
    "tie_aware_recall",
    "tie_aware_recalls",
]

DEFAULT_TIE_TOLERANCE = 1e-5
"""Tolerance of tie-aware recall: a row counts when ``score >= kth - tol * max(1, |kth|)``."""

Qrels = Mapping[str, Mapping[str, int]]
"""Judgements: query id -> document id -> grade (BEIR's ``qrels.tsv``)."""

FloatArray = npt.NDArray[np.float64]

# Bootstrap resamples drawn per block: bounds the memory of the index matrix (block x n) and
# fixes the order of the random draws, so a seed gives the same interval whatever the total.
_BOOTSTRAP_BLOCK = 200


# --- nearest-neighbour recall ---------------------------------------------------------------------


def kth_best(
    scores: npt.ArrayLike, k: int, *, allow: npt.ArrayLike | None = None
) -> FloatArray:
    """The exact k-th best score of each query, from exact scores ``[queries, rows]``.

    With ``allow`` (a boolean mask over the rows) only allowed rows compete. When fewer than
    ``k`` rows are there (or allowed), the worst of them is returned, so the result pairs with
    ``k = min(k, rows)`` in :func:`tie_aware_recall`; with none, ``-inf``.

    >>> kth_best([[0.9, 0.1, 0.5, 0.5]], 2).tolist()
    [0.5]
    >>> kth_best([[0.9, 0.1, 0.5, 0.5]], 3, allow=[False, True, True, False]).tolist()
    [0.1]
    """
    _check_k(k)
    s = np.array(scores, dtype=np.float64, ndmin=2)
    if s.ndim != 2:
        raise InvalidArgumentError(f"scores has shape {s.shape}: expected [queries, rows]")
    if allow is not None:
        mask = np.asarray(allow, dtype=bool).reshape(-1)
        if mask.shape[0] != s.shape[1]:
            raise InvalidArgumentError(
                f"allow has {mask.shape[0]} entries but scores has {s.shape[1]} rows: expected one per row"
            )
        s = s[:, mask]
    if s.shape[1] == 0:
        return np.full(s.shape[0], -np.inf)
    kk = min(k, s.shape[1])
    return -np.partition(-s, kk - 1, axis=1)[:, kk - 1]


def tie_aware_recalls(
    found_scores: Sequence[npt.ArrayLike] | npt.NDArray[np.floating],
    kth_scores: npt.ArrayLike,
    k: int | Sequence[int] | npt.NDArray[np.integer],
    *,
    tolerance: float = DEFAULT_TIE_TOLERANCE,
) -> FloatArray:
    """Tie-aware recall@k of each query (see the module docstring for the rule).

    ``found_scores[i]`` holds the *exact* scores of the rows returned for query ``i``, in any
    order (a ``[queries, m]`` array or a sequence of per-query arrays of any length). Give
    ``-inf`` (or NaN) for a returned row that does not exist or should not have been returned
    (outside the filter, deleted): non-finite scores never count. ``kth_scores[i]`` is the exact
    k-th best score. ``k`` is one int or one per query, e.g. ``min(k, matches)`` under a filter
    with fewer than ``k`` matches; a query with ``k == 0`` has nothing to find and scores 1.

    Query ``i`` scores ``min(k_i, hits_i) / k_i``. Rows are not deduplicated: a row returned
    twice counts twice, so deduplicate ids first where a system may repeat them.

    >>> tie_aware_recalls([[0.9, 0.8, 0.3], [0.7]], [0.8, 0.6], 2).tolist()
    [1.0, 0.5]
    """
    if tolerance < 0 or not math.isfinite(tolerance):
        raise InvalidArgumentError(f"tolerance={tolerance!r}: expected a finite number >= 0")
    kth = np.asarray(kth_scores, dtype=np.float64).reshape(-1)
    n = kth.shape[0]
    if len(found_scores) != n:
        raise InvalidArgumentError(
            f"{len(found_scores)} result rows but {n} k-th scores: expected one of each per query"
        )
    ks = np.broadcast_to(np.asarray(k), (n,)) if np.ndim(k) == 0 else np.asarray(k).reshape(-1)
    if ks.shape[0] != n:
        raise InvalidArgumentError(f"{ks.shape[0]} values of k for {n} queries: expected one per query")
    if ks.size and (not np.issubdtype(ks.dtype, np.integer) or int(ks.min()) < 0):
        raise InvalidArgumentError(f"k={k!r}: expected integers >= 0")
    out = np.ones(n, dtype=np.float64)
    for i in range(n):
        ki = int(ks[i])
        if ki == 0:
            continue
        t = kth[i]
        if np.isnan(t):
            raise InvalidArgumentError(f"query {i}: the k-th score is NaN, expected a number or -inf")
        s = np.asarray(found_scores[i], dtype=np.float64).reshape(-1)
        threshold = t - tolerance * max(1.0, abs(t)) if math.isfinite(t) else t
        hits = int(np.count_nonzero(np.isfinite(s) & (s >= threshold)))
        out[i] = min(ki, hits) / ki
    return out


def tie_aware_recall(
    found_scores: Sequence[npt.ArrayLike] | npt.NDArray[np.floating],
    kth_scores: npt.ArrayLike,
    k: int | Sequence[int] | npt.NDArray[np.integer],
    *,
    tolerance: float = DEFAULT_TIE_TOLERANCE,
) -> float:
    """Mean tie-aware recall@k over the queries: :func:`tie_aware_recalls`, averaged.

    >>> exact = np.array([[0.9, 0.5, 0.5, 0.1]])  # rows 1 and 2 tie for second place
    >>> tie_aware_recall([exact[0, [0, 2]]], kth_best(exact, 2), 2)
    1.0
    >>> tie_aware_recall([exact[0, [0, 3]]], kth_best(exact, 2), 2)
    0.5
    """
    per_query = tie_aware_recalls(found_scores, kth_scores, k, tolerance=tolerance)
    if per_query.size == 0:
        raise InvalidArgumentError("no queries: expected at least one")
    return float(per_query.mean())


# --- judged queries -------------------------------------------------------------------------------


def ndcg_from_gains(gains: Iterable[float], ideal_gains: Iterable[float], k: int) -> float:
    """nDCG@k of a ranking given the gain at each rank (best first) and the gains available.

    ``ideal_gains`` are the gains of every relevant item (in any order; the best k make the
    ideal ranking). Returns 0 when the ideal DCG is 0. For rankings judged by something other
    than document ids, e.g. a chunk is relevant when it overlaps an evidence span.

    >>> round(ndcg_from_gains([0, 1], [1], 10), 4)  # the one relevant item at rank 2
    0.6309
    """
    _check_k(k)
    dcg = _dcg(list(gains)[:k])
    ideal = _dcg(sorted((g for g in ideal_gains if g > 0), reverse=True)[:k])
    return dcg / ideal if ideal > 0 else 0.0


def reciprocal_rank(gains: Iterable[float], k: int) -> float:
    """1 / the rank of the first positive gain within the first ``k`` ranks, else 0.

    >>> reciprocal_rank([0, 0, 1, 1], 10), reciprocal_rank([0, 0, 1], 2)
    (0.3333333333333333, 0.0)
    """
    _check_k(k)
    for rank, g in enumerate(gains, start=1):
        if rank > k:
            break
        if g > 0:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """nDCG@k of one query's ranking against its graded judgements (BEIR / pytrec_eval).

    >>> round(ndcg_at_k(["d2", "d1"], {"d1": 1}, 10), 4)
    0.6309
    >>> ndcg_at_k(["d1"], {}, 10)  # nothing relevant
    0.0
    """
    return ndcg_from_gains(_gains(ranked, relevance), relevance.values(), k)


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """Relevant documents (grade > 0) in the first ``k`` of ``ranked`` over all relevant ones.

    >>> recall_at_k(["d1", "d2", "d3"], {"d1": 1, "d3": 2, "d9": 1}, 2)
    0.3333333333333333
    """
    _check_k(k)
    relevant = {d for d, g in relevance.items() if g > 0}
    if not relevant:
        return 0.0
    found = set(ranked[:k]) & relevant
    return len(found) / len(relevant)


def mrr_at_k(ranked: Sequence[str], relevance: Mapping[str, float], k: int) -> float:
    """One query's reciprocal rank at k: 1 / rank of the first relevant document, 0 past ``k``.

    >>> mrr_at_k(["d4", "d1"], {"d1": 1}, 10)
    0.5
    """
    return reciprocal_rank(_gains(ranked, relevance), k)


@dataclass(frozen=True, eq=False)
class RetrievalScores:
    """Per-query nDCG@k, recall@k and reciprocal rank at k of one run, in ``query_ids`` order."""

    k: int
    query_ids: tuple[str, ...]
    ndcg: FloatArray
    recall: FloatArray
    mrr: FloatArray
    """Reciprocal rank at k of each query: its mean is MRR@k."""

    def mean(self, metric: str) -> float:
        """The mean of ``"ndcg"``, ``"recall"`` or ``"mrr"`` over the queries."""
        if metric not in ("ndcg", "recall", "mrr"):
            raise InvalidArgumentError(f"unknown metric {metric!r}; expected 'ndcg', 'recall' or 'mrr'")
        values: FloatArray = getattr(self, metric)
        return float(values.mean()) if values.size else float("nan")


def evaluate_rankings(run: Mapping[str, Sequence[str]], qrels: Qrels, k: int = 10) -> RetrievalScores:
    """Score every judged query: those of ``qrels`` with at least one relevant document.

    ``run`` maps a query id to the document ids returned, best first. A judged query missing
    from ``run`` scores 0 (as BEIR counts it); queries of ``run`` without judgements, or whose
    judgements are all <= 0, are left out. Query ids are kept in the order of ``qrels``.
    """
    _check_k(k)
    ids = tuple(q for q, rels in qrels.items() if any(g > 0 for g in rels.values()))
    ndcg = np.empty(len(ids))
    recall = np.empty(len(ids))
    mrr = np.empty(len(ids))
    for i, q in enumerate(ids):
        ranked = run.get(q, ())
        ndcg[i] = ndcg_at_k(ranked, qrels[q], k)
        recall[i] = recall_at_k(ranked, qrels[q], k)
        mrr[i] = mrr_at_k(ranked, qrels[q], k)
    return RetrievalScores(k, ids, ndcg, recall, mrr)


def _gains(ranked: Sequence[str], relevance: Mapping[str, float]) -> list[float]:
    seen: set[str] = set()
    out = []
    for d in ranked:
        out.append(0.0 if d in seen else max(0.0, float(relevance.get(d, 0))))
        seen.add(d)
    return out


def _dcg(gains: Sequence[float]) -> float:
    return sum(g / math.log2(rank + 1) for rank, g in enumerate(gains, start=1) if g > 0)


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise InvalidArgumentError(f"k={k!r}: expected an integer >= 1")


# --- paired bootstrap -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Two systems on the same queries: means, their difference ``a - b`` and its interval."""

    mean_a: float
    mean_b: float
    delta: float
    """``mean_a - mean_b``."""
    ci_low: float
    ci_high: float
    """The percentile bootstrap interval of ``delta`` at the requested confidence."""

    @property
    def excludes_zero(self) -> bool:
        """Whether the interval lies wholly on one side of 0 (the difference is significant)."""
        return self.ci_low > 0 or self.ci_high < 0


def paired_bootstrap(
    a: npt.ArrayLike,
    b: npt.ArrayLike,
    *,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = 0,
    groups: Sequence[str] | None = None,
) -> Comparison:
    """Mean difference of per-query scores ``a - b`` and its bootstrap confidence interval.

    ``a[i]`` and ``b[i]`` are the two systems' scores on query ``i``. Each resample draws the
    queries with replacement (the same draw for both systems: the test is paired) and takes the
    mean difference; the interval is the ``(1 - confidence) / 2`` and ``(1 + confidence) / 2``
    percentiles of those means. With ``groups`` (one label per query) whole groups are drawn
    instead, for queries that are not independent (several questions about one document); a
    resample's mean is then over the queries of the groups drawn. Seeded: the same inputs and
    seed give the same interval.

    >>> paired_bootstrap([1.0, 1.0], [0.0, 0.0], resamples=100)
    Comparison(mean_a=1.0, mean_b=0.0, delta=1.0, ci_low=1.0, ci_high=1.0)
    """
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape:
        raise InvalidArgumentError(f"{x.size} scores for a but {y.size} for b: expected one each per query")
    if x.size == 0:
        raise InvalidArgumentError("no queries: expected at least one score per system")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise InvalidArgumentError("scores must be finite numbers (a NaN or inf was given)")
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise InvalidArgumentError(f"resamples={resamples!r}: expected an integer >= 1")
    if not 0 < confidence < 1:
        raise InvalidArgumentError(f"confidence={confidence!r}: expected a number between 0 and 1")
    diff = x - y
    # One unit per query, or per group: a resample's mean is its units' sum over their size.
    sums: FloatArray = diff
    counts: FloatArray = np.ones_like(diff)
    if groups is not None:
        labels = np.asarray(list(groups))
        if labels.shape != diff.shape:
            raise InvalidArgumentError(
                f"{labels.size} groups for {diff.size} queries: expected one per query"
            )
        names, inverse = np.unique(labels, return_inverse=True)
        sums = np.bincount(inverse, weights=diff, minlength=len(names)).astype(np.float64)
        counts = np.bincount(inverse, minlength=len(names)).astype(np.float64)
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    units = len(sums)
    for start in range(0, resamples, _BOOTSTRAP_BLOCK):
        idx = rng.integers(0, units, size=(min(_BOOTSTRAP_BLOCK, resamples - start), units))
        means[start : start + len(idx)] = sums[idx].sum(axis=1) / counts[idx].sum(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    mean_a, mean_b = float(x.mean()), float(y.mean())
    return Comparison(mean_a, mean_b, mean_a - mean_b, float(lo), float(hi))


# --- BEIR files -----------------------------------------------------------------------------------


def load_queries(path: str | Path) -> dict[str, str]:
    """Read a BEIR ``queries.jsonl``: one JSON object a line with ``_id`` (or ``id``) and ``text``.

    Returns query id -> text, in file order; ids are returned as strings. Blank lines are
    skipped; other fields are ignored. Raises :class:`~vecstore.InvalidArgumentError` naming the
    line for a missing file, a line that is not a JSON object, a missing id or text, or an id
    given twice.
    """
    p = _existing(path, "queries.jsonl")
    out: dict[str, str] = {}
    with open(p, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{p}, line {line_no}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InvalidArgumentError(
                    f"{where}: not valid JSON ({exc.msg}): expected one object a line"
                ) from None
            if not isinstance(obj, dict):
                raise InvalidArgumentError(f"{where}: expected a JSON object, got {type(obj).__name__}")
            qid = obj.get("_id", obj.get("id"))
            if qid is None or isinstance(qid, (dict, list, bool)) or str(qid) == "":
                raise InvalidArgumentError(f"{where}: no query id: expected an '_id' or 'id' field")
            text = obj.get("text")
            if not isinstance(text, str):
                raise InvalidArgumentError(f"{where}: query {qid!r} has no 'text' string (got {text!r})")
            qid = str(qid)
            if qid in out:
                raise InvalidArgumentError(f"{where}: query id {qid!r} given twice: expected unique ids")
            out[qid] = text
    return out


def load_qrels(path: str | Path, *, split: str | None = None) -> dict[str, dict[str, int]]:
    """Read a BEIR ``qrels.tsv``: a header ``query-id corpus-id score``, then one judgement a line.

    Columns are separated by tabs (or, in a file without tabs, by white space); further
    columns are allowed. With ``split``, only rows whose ``split`` column equals it are kept
    (for files that hold several splits). Returns query id -> document id -> grade (int), in
    file order. Raises :class:`~vecstore.InvalidArgumentError` naming the line for a missing
    file or header, a short row, a grade that is not an integer, or one pair judged twice with
    different grades.
    """
    p = _existing(path, "qrels.tsv")
    out: dict[str, dict[str, int]] = {}
    with open(p, encoding="utf-8") as f:
        lines = enumerate(f, start=1)
        header: list[str] | None = None
        for _, line in lines:
            if line.strip():
                header = _fields(line)
                break
        required = ("query-id", "corpus-id", "score")
        if header is None or not all(c in header for c in required):
            raise InvalidArgumentError(
                f"{p}: the first line is {header!r}: expected a header with the columns "
                "'query-id', 'corpus-id' and 'score' (tab-separated)"
            )
        if split is not None and "split" not in header:
            raise InvalidArgumentError(
                f"{p}: split={split!r} was asked for but the file has no 'split' column"
            )
        iq, idoc, iscore = (header.index(c) for c in required)
        isplit = header.index("split") if split is not None else -1
        for line_no, line in lines:
            if not line.strip():
                continue
            row = _fields(line)
            where = f"{p}, line {line_no}"
            if len(row) < len(header):
                raise InvalidArgumentError(
                    f"{where}: {len(row)} columns, expected {len(header)} as in the header"
                )
            if split is not None and row[isplit] != split:
                continue
            try:
                grade = int(row[iscore])
            except ValueError:
                raise InvalidArgumentError(f"{where}: score {row[iscore]!r} is not an integer") from None
            rels = out.setdefault(row[iq], {})
            if rels.get(row[idoc], grade) != grade:
                raise InvalidArgumentError(
                    f"{where}: query {row[iq]!r}, document {row[idoc]!r} judged twice "
                    f"({rels[row[idoc]]} and {grade}): expected one grade per pair"
                )
            rels[row[idoc]] = grade
    return out


def _existing(path: str | Path, what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise InvalidArgumentError(f"{p} is not a file: expected the path of a BEIR {what}")
    return p


def _fields(line: str) -> list[str]:
    line = line.rstrip("\r\n")
    return [c.strip() for c in line.split("\t")] if "\t" in line else line.split()
