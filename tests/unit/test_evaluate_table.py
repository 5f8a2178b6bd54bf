"""vecstore.evaluation on a table: ``search_run`` / ``evaluate_table`` run the judged queries
through ``table.search`` (any mode, local or remote) and score documents, not chunks;
``compare_scores`` pairs two runs. The same figures from an embedded and a served table."""

from __future__ import annotations

import pytest

from vecstore import InvalidArgumentError
from vecstore.evaluation import compare_scores, evaluate_rankings, evaluate_table, search_run

# Document "a" has three chunks that match "apples" better than document "b"'s one chunk.
ROWS = [
    {"id": "a#0", "doc_id": "a", "vector": [1.0, 0.0], "text": "apples apples"},
    {"id": "a#1", "doc_id": "a", "vector": [0.9, 0.1], "text": "apples apples apples"},
    {"id": "a#2", "doc_id": "a", "vector": [0.8, 0.2], "text": "apples"},
    {"id": "b#0", "doc_id": "b", "vector": [0.5, 0.5], "text": "apples in an orchard with tall old trees"},
    {"id": "c#0", "doc_id": "c", "vector": [0.0, 1.0], "text": "green pears"},
]
QUERIES = {"q1": "apples", "q2": "pears", "q3": "plums", "q5": "unjudged apples"}
QRELS = {"q1": {"a": 1, "b": 1}, "q2": {"c": 2, "a": 0}, "q3": {"z": 1}, "q4": {"a": 1}, "q6": {"a": 0}}


@pytest.fixture
def chunks(any_db):
    tbl = any_db.create_table("chunks", dim=2)
    tbl.add(ROWS)
    return tbl


def test_a_document_counts_once_at_the_rank_of_its_best_chunk(chunks):
    run = search_run(chunks, QUERIES, mode="keyword", k=2)
    # grouped by doc_id: the two hits are two documents; ungrouped they would be a, a
    assert run["q1"] == ["a", "b"]
    assert run["q2"] == ["c"] and run["q3"] == []
    ungrouped = search_run(chunks, QUERIES, mode="keyword", k=2, id_column="id")
    assert ungrouped["q1"] == ["a#1", "a#0"]


def test_evaluate_table_scores_every_judged_query(chunks):
    s = evaluate_table(chunks, QUERIES, QRELS, mode="keyword", k=2)
    # q4 is judged but has no text: it scores 0; q5 (unjudged) and q6 (nothing relevant) are not run
    assert s.query_ids == ("q1", "q2", "q3", "q4")
    assert s.recall.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert s.mrr.tolist() == [1.0, 1.0, 0.0, 0.0]
    assert s.summary() == {"ndcg@2": pytest.approx(0.5), "recall@2": 0.5, "mrr@2": 0.5, "queries": 4}
    same = evaluate_rankings({"q1": ["a", "b"], "q2": ["c"], "q3": []}, QRELS, k=2)
    assert s.ndcg.tolist() == same.ndcg.tolist()


def test_the_filter_and_the_refinement_reach_every_query(chunks):
    run = search_run(chunks, QUERIES, mode="keyword", k=5, where="doc_id <> ?", params=["a"])
    assert run["q1"] == ["b"]
    seen = []

    def refine(q):
        seen.append(q)
        return q.limit(1)

    # the k of search_run is applied last: refine cannot widen it, but it runs on every query
    assert search_run(chunks, QUERIES, mode="keyword", k=1, refine=refine)["q1"] == ["a"]
    assert len(seen) == len(QUERIES)


def test_vector_mode_on_a_table_without_an_embedder_says_what_is_missing(chunks):
    with pytest.raises(InvalidArgumentError, match="no embedder"):
        evaluate_table(chunks, QUERIES, QRELS, mode="vector")


def test_bad_arguments_say_what_is_expected(chunks):
    with pytest.raises(InvalidArgumentError, match="id column 'nope' is not a column of the table"):
        search_run(chunks, QUERIES, mode="keyword", id_column="nope")
    with pytest.raises(InvalidArgumentError, match="k=0: expected an integer >= 1"):
        evaluate_table(chunks, QUERIES, QRELS, mode="keyword", k=0)
    with pytest.raises(InvalidArgumentError, match="unknown search mode 'fuzzy'"):
        evaluate_table(chunks, QUERIES, QRELS, mode="fuzzy")


def test_compare_scores_pairs_the_same_queries(chunks):
    a = evaluate_table(chunks, QUERIES, QRELS, mode="keyword", k=2)
    b = evaluate_table(chunks, QUERIES, QRELS, mode="keyword", k=1)
    c = evaluate_table(chunks, QUERIES, {"q1": QRELS["q1"]}, mode="keyword", k=2)
    same = compare_scores(a, a, resamples=200)
    assert set(same) == {"ndcg", "recall", "mrr"}
    assert all(cmp.delta == 0.0 and cmp.ci_low == cmp.ci_high == 0.0 for cmp in same.values())
    for other in (b, c):
        with pytest.raises(InvalidArgumentError, match="compare runs of the same judged queries"):
            compare_scores(a, other)
