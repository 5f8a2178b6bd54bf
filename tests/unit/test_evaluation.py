"""vecstore.evaluation: tie-aware recall, nDCG / recall / MRR on judged queries, the paired
bootstrap and the BEIR loaders, on hand-computed cases and against plain reference code."""

from __future__ import annotations

import doctest
import math
from pathlib import Path

import numpy as np
import pytest

import vecstore
from vecstore import evaluation as ev
from vecstore.evaluation import (
    DEFAULT_TIE_TOLERANCE,
    evaluate_rankings,
    kth_best,
    load_qrels,
    load_queries,
    mrr_at_k,
    ndcg_at_k,
    ndcg_from_gains,
    paired_bootstrap,
    recall_at_k,
    tie_aware_recall,
    tie_aware_recalls,
)

SCIFACT = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "scifact"


def test_doctests_run() -> None:
    result = doctest.testmod(ev, optionflags=doctest.ELLIPSIS)
    assert result.attempted >= 10 and result.failed == 0


# --- tie-aware recall -----------------------------------------------------------------------------


def test_a_row_tied_with_the_kth_counts() -> None:
    exact = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])  # rows 1, 2 and 3 tie for 2nd-4th place
    kth = kth_best(exact, 2)
    assert kth.tolist() == [0.5]
    for other in (1, 2, 3):  # whichever of the tied rows came back, recall is perfect
        assert tie_aware_recall([exact[0, [0, other]]], kth, 2) == 1.0
    assert tie_aware_recall([exact[0, [0, 4]]], kth, 2) == 0.5
    # more tied rows than k: still at most k count
    assert tie_aware_recall([exact[0, [1, 2, 3]]], kth, 2) == 1.0


def test_tolerance_is_absolute_below_one_and_relative_above() -> None:
    tol = DEFAULT_TIE_TOLERANCE
    assert tie_aware_recalls([[0.5 - 0.9 * tol]], [0.5], 1).tolist() == [1.0]
    assert tie_aware_recalls([[0.5 - 2 * tol]], [0.5], 1).tolist() == [0.0]
    # negative squared L2 distances of magnitude 1000: the tolerance scales with them
    assert tie_aware_recalls([[-1000.0 - 900 * tol]], [-1000.0], 1).tolist() == [1.0]
    assert tie_aware_recalls([[-1000.0 - 2000 * tol]], [-1000.0], 1).tolist() == [0.0]
    assert tie_aware_recalls([[0.5 - 0.1]], [0.5], 1, tolerance=0.2).tolist() == [1.0]
    assert tie_aware_recalls([[0.5 - 1e-12]], [0.5], 1, tolerance=0.0).tolist() == [0.0]


def test_short_results_missing_rows_and_per_query_k() -> None:
    # k larger than what came back: the missing rows are misses
    assert tie_aware_recalls([[0.9, 0.8]], [0.1], 5).tolist() == [0.4]
    # -inf (no such row, or outside the filter) and NaN never count, even against kth = -inf
    assert tie_aware_recalls([[0.9, -np.inf, np.nan]], [-np.inf], 3).tolist() == [pytest.approx(1 / 3)]
    # k per query, e.g. min(k, matches) under a filter; k = 0: nothing to find
    got = tie_aware_recalls([[0.7], [0.9, 0.2], []], [0.7, 0.2, -np.inf], [1, 2, 0])
    assert got.tolist() == [1.0, 1.0, 1.0]
    # rows are not deduplicated (documented): a repeated row counts twice
    assert tie_aware_recalls([[0.9, 0.9]], [0.8], 2).tolist() == [1.0]
    # a [queries, m] array works as well as a list of rows
    assert tie_aware_recall(np.array([[0.9, 0.1], [0.8, 0.7]]), [0.5, 0.7], 2) == 0.75


def test_kth_best_with_filters_and_few_rows() -> None:
    scores = np.array([[0.1, 0.4, 0.3, 0.2], [0.4, 0.3, 0.2, 0.1]])
    assert kth_best(scores, 2).tolist() == [0.3, 0.3]
    allow = np.array([True, False, False, True])
    assert kth_best(scores, 1, allow=allow).tolist() == [0.2, 0.4]
    assert kth_best(scores, 10, allow=allow).tolist() == [0.1, 0.1]  # fewer allowed than k
    assert np.isneginf(kth_best(scores, 3, allow=np.zeros(4, bool))).all()


@pytest.mark.parametrize(
    "call",
    [
        lambda: tie_aware_recall([[0.5]], [0.5, 0.4], 1),
        lambda: tie_aware_recall([], [], 1),
        lambda: tie_aware_recall([[0.5]], [0.5], -1),
        lambda: tie_aware_recall([[0.5]], [0.5], [1, 2]),
        lambda: tie_aware_recall([[0.5]], [0.5], 1.5),
        lambda: tie_aware_recall([[0.5]], [np.nan], 1),
        lambda: tie_aware_recall([[0.5]], [0.5], 1, tolerance=-1.0),
        lambda: kth_best([[0.5]], 0),
        lambda: kth_best([[0.5, 0.1]], 1, allow=[True]),
    ],
)
def test_recall_argument_errors(call) -> None:
    with pytest.raises(vecstore.InvalidArgumentError):
        call()


def _reference_recall(scores: np.ndarray, found: np.ndarray, k: int) -> float:
    """Tolerance 0, written the long way: a found row counts when fewer than k rows score
    strictly better; at most k count per query."""
    total = 0.0
    for s, rows in zip(scores, found, strict=True):
        good = sum(1 for r in rows if sum(1 for x in s if x > s[r]) < k)
        total += min(good, k) / k
    return total / len(scores)


def test_recall_matches_a_reference_with_and_without_ties(rng) -> None:
    k = 10
    for levels in (None, 6):  # continuous scores, then scores from 6 values (ties everywhere)
        raw = rng.standard_normal((40, 300))
        scores = raw if levels is None else np.floor(raw * levels / 4) / levels
        best = np.argsort(-scores, axis=1, kind="stable")[:, :5]  # some right answers, then others
        others = [rng.choice(np.setdiff1d(np.arange(300), top), 7, replace=False) for top in best]
        found = np.concatenate([best, np.stack(others)], axis=1)
        found_scores = np.take_along_axis(scores, found, axis=1)
        got = tie_aware_recall(found_scores, kth_best(scores, k), k, tolerance=0.0)
        assert got == pytest.approx(_reference_recall(scores, found, k), abs=1e-12)
        if levels is None:  # without ties it is plain id overlap with the exact top k
            top = np.argsort(-scores, axis=1)[:, :k]
            overlap = np.mean([len(set(f) & set(t)) / k for f, t in zip(found, top, strict=True)])
            assert got == pytest.approx(overlap, abs=1e-12)


# --- judged queries -------------------------------------------------------------------------------

# Three queries whose figures were computed with pytrec_eval 0.5 (ndcg_cut, recall, recip_rank)
# and by hand: graded relevance, a negative grade, an id never judged, k beyond the ranking.
QRELS = {
    "a": {"d1": 3, "d2": 2, "d3": 1, "d4": 2},
    "b": {"d5": 1, "d6": 1, "d7": 0, "d8": -1},
    "c": {"x": 2},
}
RUN = {
    "a": ["d3", "d1", "d9", "d2", "d8", "d7", "d6", "d5", "d0", "d10", "d4"],
    "b": ["d7", "d8", "d6"],
    "c": ["y", "z"],
}
PYTREC = {  # query: (ndcg@3, ndcg@10, recall@3, recall@10, reciprocal rank)
    "a": (0.5497655832101642, 0.6594850403848089, 0.5, 0.75, 1.0),
    "b": (0.3065735963827292, 0.3065735963827292, 0.5, 0.5, 1 / 3),
    "c": (0.0, 0.0, 0.0, 0.0, 0.0),
}


@pytest.mark.parametrize("q", sorted(PYTREC))
def test_judged_metrics_agree_with_pytrec_eval(q: str) -> None:
    n3, n10, r3, r10, rr = PYTREC[q]
    assert ndcg_at_k(RUN[q], QRELS[q], 3) == pytest.approx(n3, abs=1e-12)
    assert ndcg_at_k(RUN[q], QRELS[q], 10) == pytest.approx(n10, abs=1e-12)
    assert recall_at_k(RUN[q], QRELS[q], 3) == r3
    assert recall_at_k(RUN[q], QRELS[q], 10) == r10
    assert mrr_at_k(RUN[q], QRELS[q], 10) == pytest.approx(rr)


def test_ndcg_by_hand() -> None:
    # query a at k = 3: gains 1, 3, 0 against the ideal 3, 2, 2
    dcg = 1 / math.log2(2) + 3 / math.log2(3)
    ideal = 3 / math.log2(2) + 2 / math.log2(3) + 2 / math.log2(4)
    assert ndcg_at_k(RUN["a"], QRELS["a"], 3) == pytest.approx(dcg / ideal, abs=1e-12)
    # the ideal comes from the judgements, not from what was retrieved: one of two found
    assert ndcg_at_k(["d1"], {"d1": 1, "d2": 1}, 10) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # k larger than the ranking, the relevant document last
    assert ndcg_at_k(["x", "y", "z"], {"z": 1}, 50) == pytest.approx(1 / math.log2(4))
    assert ndcg_from_gains([0, 2, 1], [1, 2], 10) == pytest.approx(
        (2 / math.log2(3) + 1 / math.log2(4)) / (2 + 1 / math.log2(3)))


def test_empty_judgements_repeats_and_cut_offs() -> None:
    for fn in (ndcg_at_k, recall_at_k, mrr_at_k):
        assert fn(["d1", "d2"], {}, 10) == 0.0
        assert fn(["d1", "d2"], {"d1": 0, "d2": -1}, 10) == 0.0
        assert fn([], {"d1": 1}, 10) == 0.0
    # a repeated id counts at its first rank only
    assert ndcg_at_k(["d1", "d1"], {"d1": 1, "d2": 1}, 10) == ndcg_at_k(["d1"], {"d1": 1, "d2": 1}, 10)
    assert mrr_at_k(["x", "d1"], {"d1": 1}, 1) == 0.0
    assert recall_at_k(["x", "d1"], {"d1": 1}, 1) == 0.0
    with pytest.raises(vecstore.InvalidArgumentError):
        ndcg_at_k(["d1"], {"d1": 1}, 0)


def test_evaluate_rankings_follows_beir() -> None:
    qrels = {**QRELS, "unjudged": {"d1": 0}, "missing": {"d1": 1}}
    run = {**RUN, "not-in-qrels": ["d1"]}
    scores = evaluate_rankings(run, qrels, k=10)
    assert scores.query_ids == ("a", "b", "c", "missing")  # judged queries, in qrels order
    assert scores.ndcg.tolist() == pytest.approx([PYTREC[q][1] for q in "abc"] + [0.0])
    assert scores.recall.tolist() == [0.75, 0.5, 0.0, 0.0]
    assert scores.mean("mrr") == pytest.approx((1 + 1 / 3) / 4)
    with pytest.raises(vecstore.InvalidArgumentError, match="unknown metric"):
        scores.mean("map")


def _reference_ndcg(ranked: list[str], rels: dict[str, int], k: int) -> float:
    dcg, seen = 0.0, set()
    for i, d in enumerate(ranked[:k]):
        if d not in seen and rels.get(d, 0) > 0:
            dcg += rels[d] / math.log2(i + 2)
        seen.add(d)
    ideal = sorted((g for g in rels.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def test_ndcg_matches_a_reference_on_random_runs(rng) -> None:
    docs = [f"d{i}" for i in range(40)]
    for _ in range(200):
        rels = {str(d): int(rng.integers(-1, 4)) for d in rng.choice(docs, rng.integers(0, 9), replace=False)}
        ranked = [str(d) for d in rng.choice(docs, rng.integers(0, 30))]  # with repeats
        k = int(rng.integers(1, 25))
        assert ndcg_at_k(ranked, rels, k) == pytest.approx(_reference_ndcg(ranked, rels, k), abs=1e-12)


# --- paired bootstrap ------------------------------------------------------------------------------


def test_bootstrap_degenerate_cases() -> None:
    same = paired_bootstrap([0.2, 0.5, 0.9], [0.2, 0.5, 0.9], resamples=500)
    assert (same.delta, same.ci_low, same.ci_high) == (0.0, 0.0, 0.0) and not same.excludes_zero
    shifted = paired_bootstrap([0.3, 0.6, 1.0], [0.2, 0.5, 0.9], resamples=500)
    assert shifted.mean_a == pytest.approx(19 / 30) and shifted.mean_b == pytest.approx(16 / 30)
    assert shifted.ci_low == pytest.approx(0.1) and shifted.ci_high == pytest.approx(0.1)
    assert shifted.excludes_zero
    # one group holding every query: each resample is the whole set
    grouped = paired_bootstrap([1.0, 0.0, 0.5], [0.0, 0.0, 0.0], groups=["m"] * 3, resamples=50)
    assert grouped.ci_low == pytest.approx(0.5) and grouped.ci_high == pytest.approx(0.5)


def test_bootstrap_is_seeded_and_agrees_with_the_normal_approximation(rng) -> None:
    a = rng.normal(0.55, 0.2, 2000)
    b = a - rng.normal(0.02, 0.1, 2000)
    c1 = paired_bootstrap(a, b, resamples=4000, seed=7)
    assert c1 == paired_bootstrap(a, b, resamples=4000, seed=7)
    assert c1 != paired_bootstrap(a, b, resamples=4000, seed=8)
    d = a - b
    half = 1.959964 * d.std(ddof=1) / math.sqrt(d.size)
    assert c1.delta == pytest.approx(d.mean())
    assert c1.ci_low == pytest.approx(d.mean() - half, abs=0.15 * half)
    assert c1.ci_high == pytest.approx(d.mean() + half, abs=0.15 * half)
    wider = paired_bootstrap(a, b, resamples=4000, seed=7, confidence=0.99)
    assert wider.ci_low < c1.ci_low and wider.ci_high > c1.ci_high


def test_bootstrap_by_group_is_wider_when_groups_are_correlated(rng) -> None:
    """Queries about one document move together: resampling groups widens the interval."""
    groups = np.repeat([f"m{i}" for i in range(20)], 25)
    d = np.repeat(rng.normal(0.0, 0.2, 20), 25) + rng.normal(0.0, 0.02, 500)
    by_query = paired_bootstrap(d, np.zeros(500), resamples=2000)
    by_group = paired_bootstrap(d, np.zeros(500), resamples=2000, groups=list(groups))
    assert by_group.delta == pytest.approx(by_query.delta)
    assert (by_group.ci_high - by_group.ci_low) > 3 * (by_query.ci_high - by_query.ci_low)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"a": [0.1, 0.2], "b": [0.1]},
        {"a": [], "b": []},
        {"a": [np.nan], "b": [0.1]},
        {"a": [0.1], "b": [0.1], "resamples": 0},
        {"a": [0.1], "b": [0.1], "confidence": 1.0},
        {"a": [0.1, 0.2], "b": [0.1, 0.2], "groups": ["g"]},
    ],
)
def test_bootstrap_argument_errors(kwargs) -> None:
    with pytest.raises(vecstore.InvalidArgumentError):
        paired_bootstrap(**kwargs)


# --- BEIR loaders ----------------------------------------------------------------------------------


def test_load_queries(tmp_path: Path) -> None:
    p = tmp_path / "queries.jsonl"
    p.write_text('{"_id": "q1", "text": "first", "metadata": {}}\n\n{"id": 7, "text": "second"}\n')
    assert load_queries(p) == {"q1": "first", "7": "second"}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"_id": "q1", "text": "a"}\n{"_id": "q1", "text": "b"}\n', "line 2: query id 'q1' given twice"),
        ('{"_id": "q1", "text": "a"}\nnot json\n', "line 2: not valid JSON"),
        ('["q1", "a"]\n', "line 1: expected a JSON object"),
        ('{"text": "a"}\n', "line 1: no query id"),
        ('{"_id": "q1", "title": "a"}\n', "line 1: query 'q1' has no 'text'"),
    ],
)
def test_load_queries_errors(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "queries.jsonl"
    p.write_text(content)
    with pytest.raises(vecstore.InvalidArgumentError, match=message):
        load_queries(p)
    with pytest.raises(ValueError, match="not a file"):  # also the builtin it derives from
        load_queries(tmp_path / "absent.jsonl")


def test_load_qrels(tmp_path: Path) -> None:
    p = tmp_path / "qrels.tsv"
    p.write_text("query-id\tcorpus-id\tscore\tsplit\nq1\td1\t1\ttest\nq1\td2\t2\ttest\nq2\td1\t0\ttrain\n"
                 "q1\td1\t1\ttest\n\n")
    assert load_qrels(p) == {"q1": {"d1": 1, "d2": 2}, "q2": {"d1": 0}}
    assert load_qrels(p, split="test") == {"q1": {"d1": 1, "d2": 2}}
    spaced = tmp_path / "spaced.tsv"
    spaced.write_text("score query-id corpus-id\n1 q1 d1\n")  # any column order; white space
    assert load_qrels(spaced) == {"q1": {"d1": 1}}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1\td1\t1\n", "expected a header"),
        ("", "expected a header"),
        ("query-id\tcorpus-id\tscore\nq1\td1\n", "line 2: 2 columns, expected 3"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t0.5\n", "line 2: score '0.5' is not an integer"),
        ("query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td1\t2\n", "line 3: .* judged twice"),
    ],
)
def test_load_qrels_errors(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "qrels.tsv"
    p.write_text(content)
    with pytest.raises(vecstore.InvalidArgumentError, match=message):
        load_qrels(p)


def test_load_qrels_split_needs_a_split_column(tmp_path: Path) -> None:
    p = tmp_path / "qrels.tsv"
    p.write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    with pytest.raises(vecstore.InvalidArgumentError, match="no 'split' column"):
        load_qrels(p, split="test")


@pytest.mark.skipif(not (SCIFACT / "qrels.tsv").is_file(), reason="shared SciFact data not present")
def test_loaders_read_the_shared_scifact_files() -> None:
    qrels = load_qrels(SCIFACT / "qrels.tsv", split="test")
    queries = load_queries(SCIFACT / "queries.jsonl")
    assert len(qrels) == 300 and set(qrels) <= set(queries)
    assert all(g > 0 for rels in qrels.values() for g in rels.values())
