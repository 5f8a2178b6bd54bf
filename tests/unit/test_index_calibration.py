"""Build-time effort calibration (vecstore.index.calibration) with search callables whose quality
is known: the smallest effort reaching the target is found, ties count, a query's own label
and misses are dropped, and rescored candidates are judged by their exact order."""

from __future__ import annotations

import numpy as np
import pytest

from vecstore.config import Metric
from vecstore.index.calibration import (
    ExactTruth,
    _tie_aware_recall,
    calibrate_effort,
    calibrate_rerank_ef,
    smallest_effort,
)

# One query [1, 0] against scores 3, 2, 2, 1, 0 (dot): the best 2 are label 0 and either 2-tie.
LINE = np.array([[3, 0], [2, 0], [2, 0], [1, 0], [0, 0]], dtype=np.float32)
QUERY = np.array([[1, 0]], dtype=np.float32)


def _recall(labels: list[int], rescored: bool = False) -> float:
    # on this line label 3 sits exactly on the query: a near-duplicate, kept here (see below)
    truth = ExactTruth(Metric.DOT, QUERY, LINE, k=2, drop_duplicates=False)
    return _tie_aware_recall(truth, np.array([labels], dtype=np.int64), rescored)


def test_recall_counts_ties_and_drops_misses() -> None:
    assert _recall([0, 1]) == 1.0
    assert _recall([0, 2]) == 1.0  # the other label of the tie is as good
    assert _recall([0, 3]) == 0.5
    assert _recall([-1, 0, 1]) == 1.0  # a miss is dropped, not counted against the first k
    assert _recall([3, 0, 1]) == 0.5  # the first k as returned...
    assert _recall([3, 0, 1], rescored=True) == 1.0  # ...or the best k by exact score


def test_own_label_is_excluded_from_truth_and_answer() -> None:
    truth = ExactTruth(Metric.DOT, LINE[[0]], LINE, k=2, own_labels=np.array([0]),
                       drop_duplicates=False)
    assert np.isneginf(truth.scores[0, 0]) and truth.kth[0] == pytest.approx(6.0)
    assert _tie_aware_recall(truth, np.array([[0, 1, 2]])) == 1.0
    assert _tie_aware_recall(truth, np.array([[0, 3, 1]])) == 0.5


def test_k_is_clipped_to_the_vectors() -> None:
    assert ExactTruth(Metric.L2, QUERY, LINE, k=10).k == 5


def _ranked(vectors: np.ndarray) -> np.ndarray:
    """Exact ranking of every vector for each row of ``vectors`` (dot), best first."""
    scores = vectors @ vectors.T
    return np.argsort(-scores, axis=1, kind="stable")


def test_smallest_effort_is_the_first_reaching_the_target() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((300, 8)).astype(np.float32)
    queries = rng.standard_normal((20, 8)).astype(np.float32)
    order = np.argsort(-(queries @ vectors.T), axis=1, kind="stable")
    calls: list[tuple[int, int]] = []

    def search(q: np.ndarray, k: int, effort: int) -> np.ndarray:
        calls.append((k, effort))
        skip = 0 if effort >= 8 else k  # below effort 8, the k results after the true top k
        return order[:, skip : skip + k]

    # 8-d Gaussian rows: a true nearest neighbour can be closer than half the 10th one's
    # distance, so duplicates are not dropped here (the calls would ask for more labels)
    truth = ExactTruth(Metric.DOT, queries, vectors, k=10, drop_duplicates=False)
    assert smallest_effort(search, queries, truth, [1, 2, 4, 8, 16]) == 8
    assert calls == [(10, 1), (10, 2), (10, 4), (10, 8)]  # stops at the first reaching it
    assert smallest_effort(search, queries, truth, [1, 2, 4]) is None


def test_calibrate_effort_on_sample_rows() -> None:
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((400, 8)).astype(np.float32)
    ranked = _ranked(vectors)
    asked: list[int] = []

    def search(q: np.ndarray, k: int, effort: int) -> np.ndarray:
        asked.append(k)
        rows = [int(np.flatnonzero((vectors == v).all(axis=1))[0]) for v in q]
        # the row itself comes first (as an index finds it), then the true neighbours from
        # effort 16 on, far ones below
        start = 1 if effort >= 16 else 50
        return np.stack([np.r_[r, ranked[r][ranked[r] != r][start - 1 : start - 1 + k - 1]]
                         for r in rows])

    assert calibrate_effort(search, vectors, Metric.DOT, [4, 8, 16, 32], sample=50,
                            drop_duplicates=False) == 16
    assert set(asked) == {11}  # k + 1: the row's own label is dropped from its answer
    assert calibrate_effort(search, vectors, Metric.DOT, [4, 8]) == 8  # not reached: the last
    assert calibrate_effort(search, vectors[:11], Metric.DOT, [4, 8]) == 8  # too few rows


def test_calibrate_rerank_ef_prefers_the_smallest_ef() -> None:
    rng = np.random.default_rng(2)
    indexed = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((30, 8)).astype(np.float32)
    order = np.argsort(-(queries @ indexed.T), axis=1, kind="stable")
    seen: list[tuple[int, int]] = []

    def search(q: np.ndarray, candidates: int, ef: int) -> np.ndarray:
        # fewer than 40 candidates miss the true best 5; 40 or more, shuffled, hold the top 10
        seen.append((candidates, ef))
        if candidates < 40:
            return order[:, 5 : 5 + candidates]
        return order[:, :candidates][:, ::-1]

    grid = [16, 24, 32, 48, 64, 96]
    ef, rerank = calibrate_rerank_ef(search, queries, indexed, Metric.DOT, (2, 4, 8), grid,
                                     target=0.95)
    # rerank 2 (20 candidates) never reaches it; rerank 4 does at the first ef >= 40; rerank 8
    # would need ef >= 80, more than 48, so it is not tried
    assert (ef, rerank) == (48, 4)
    assert (20, 96) in seen and all(c != 80 for c, _ in seen)
    # unreachable: the widest setting tried
    assert calibrate_rerank_ef(search, queries, indexed, Metric.DOT, (1, 2), grid) == (96, 2)


def test_calibrate_rerank_ef_refines_a_larger_rerank_below_the_best_so_far() -> None:
    # recall grows smoothly with ef; 20 candidates (rerank 2) reach it sooner than 10 (rerank 1).
    # Rerank 1 reaches the target only between the grid's 48 and 64 (refined: 63); rerank 2 also
    # only between them, lower (62): it must be refined up to the step above 63 to be found.
    rng = np.random.default_rng(3)
    indexed = rng.standard_normal((500, 8)).astype(np.float32)
    queries = rng.standard_normal((100, 8)).astype(np.float32)
    order = np.argsort(-(queries @ indexed.T), axis=1, kind="stable")
    share = np.arange(100) / 100

    def search(q: np.ndarray, candidates: int, ef: int) -> np.ndarray:
        low, span = (40, 20) if candidates < 20 else (36, 16)
        found = share < (ef - low) / span
        return np.where(found[:, None], order[:, :candidates], order[:, 20:20 + candidates])

    grid = [16, 24, 32, 48, 64, 96]
    assert calibrate_rerank_ef(search, queries, indexed, Metric.DOT, (1,), grid, refine=True) == (63, 1)
    assert calibrate_rerank_ef(search, queries, indexed, Metric.DOT, (1, 2), grid, refine=True) == (62, 2)
    # without refining, both reach it at 64: the first rerank wins the tie
    assert calibrate_rerank_ef(search, queries, indexed, Metric.DOT, (1, 2), grid) == (64, 1)
