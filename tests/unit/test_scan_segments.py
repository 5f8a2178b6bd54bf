"""The approximate scan (Hamming, then int8, then float32) over a table built by several adds
finds what it finds on its compacted twin: candidates from every segment are rescored with
their own segment's int8 calibration in one pass, and nothing is lost or mis-scored on the way.

Each query has ten planted neighbours, spread over the segments, far above every other row: the
scan must return them, in exact-score order, whatever segments they sit in."""

from __future__ import annotations

import numpy as np
import pytest
from vecstore._native import loader
from vecstore._native.reference import METRICS

import vecstore
from vecstore.query.scoring import Scorer, best_exact, scoring_queries

DIM = 96
ROWS = 1200
QUERIES = 4
PLANTED = 10


def _data(rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    # a shift per add, so that every segment's calibration differs
    vectors += (np.arange(ROWS) // 300)[:, None].astype(np.float32) * 0.5
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32) * 3
    for qi, q in enumerate(queries):
        for j in range(PLANTED):
            noise = rng.standard_normal(DIM).astype(np.float32)
            # rows qi, qi + 113, ...: every segment holds some; distinct, growing distances
            vectors[qi + 113 * j] = q + noise / np.linalg.norm(noise) * (0.1 + 0.15 * j)
    planted = {qi + 113 * j for qi in range(QUERIES) for j in range(PLANTED)}
    # the planted rows pass every filter tested (bucket 0); the others spread over ten buckets
    rows = [{"id": f"r{i}", "vector": vectors[i], "bucket": 0 if i in planted else i % 10}
            for i in range(ROWS)]
    return rows, queries


@pytest.fixture(params=["cosine", "l2", "dot"])
def twins(request, tmp_db: vecstore.Database, rng: np.random.Generator):
    loader.compile_all()  # the Numba kernels, not their twins
    rows, queries = _data(rng)
    many = tmp_db.create_table("many", dim=DIM, metric=request.param)
    for start, stop in ((0, 600), (600, 900), (900, 1100), (1100, 1200)):  # shrinking: no merges
        many.add(rows[start:stop])
    assert len(many._current().segments) == 4
    one = tmp_db.create_table("one", dim=DIM, metric=request.param)
    for start in range(0, ROWS, 300):
        one.add(rows[start:start + 300])
    one.compact()
    assert len(one._current().segments) == 1
    return many, one, queries


@pytest.mark.parametrize("where", [None, "bucket < 5", "bucket IN (0, 1, 2, 3)"])
def test_scan_over_many_segments_returns_the_compacted_twins_hits(twins, where) -> None:
    many, one, queries = twins
    for q in queries:
        results = []
        for tbl in (many, one):
            query = tbl.search(q).limit(PLANTED).rescore(16)
            hits = (query.where(where) if where else query).hits()
            assert hits.plan.strategy.value == "two-stage-scan"
            results.append(query.where(where).to_list() if where else query.to_list())
        ids = [[h["id"] for h in r] for r in results]
        assert ids[0] == ids[1]
        np.testing.assert_allclose([h["score"] for h in results[0]],
                                   [h["score"] for h in results[1]], rtol=1e-5, atol=1e-4)
        assert len(ids[0]) == PLANTED


def test_int8_rescoring_over_many_segments_is_each_segments_own(twins, rng) -> None:
    many, _, queries = twins
    snap = many._current()
    rows = np.sort(rng.choice(snap.physical_rows, size=300, replace=False)).astype(np.int64)
    for q in queries:
        scorer = Scorer(snap, q)
        got = scorer.int8_rows(rows)
        # the documented per-segment computation: each segment's calibration on its rows
        want = np.concatenate([scorer.int8(s, local) for s, local in snap.split(rows)])
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-3)


def test_exact_rescoring_over_many_segments_is_each_segments_own(twins, rng) -> None:
    many, _, queries = twins
    snap = many._current()
    rows = np.sort(rng.choice(snap.physical_rows, size=300, replace=False)).astype(np.int64)
    for q in queries:
        scorer = Scorer(snap, q)
        want = np.concatenate([scorer.exact(s, local) for s, local in snap.split(rows)])
        np.testing.assert_allclose(scorer.exact_rows(rows), want, rtol=1e-6, atol=1e-5)
        assert scorer.exact_rows(rows[:0]).size == 0


def test_a_batchs_rescoring_over_many_segments_is_each_querys_own(twins, rng) -> None:
    """A batch through an index rescores with the vector and squared norm each query's
    :class:`Scorer` scores with (bit for bit), and its kernel finds, over every segment, the
    rows and scores that query's own rescoring (``best_exact``) finds, exactly."""
    many, _, queries = twins
    snap = many._current()
    metric = snap.manifest.config.metric
    scoring, norm2 = scoring_queries(metric, queries)
    labels = np.stack([rng.choice(snap.physical_rows, size=40, replace=False) for _ in queries])
    kern = loader.get("kernels", wait=True)
    rows, scores, kept, scored = kern.rescore_labels_batch(
        labels, np.arange(snap.physical_rows, dtype=np.int64), np.zeros(0, dtype=np.bool_), scoring,
        norm2, snap.vector_addresses, np.zeros(0, dtype=np.int64), snap.bases, snap.norms_all,
        METRICS.index(metric.value), 10)
    assert (kept == 40).all() and (scored == 40).all()
    for i, q in enumerate(queries):
        scorer = Scorer(snap, q)
        want_q = scorer.q_unit if metric is vecstore.Metric.COSINE else scorer.q_raw
        np.testing.assert_array_equal(scoring[i], want_q)
        assert norm2[i] == scorer.q_norm2
        want_rows, want_scores = best_exact(scorer, np.sort(labels[i]), 10)
        np.testing.assert_array_equal(rows[i], want_rows)
        np.testing.assert_array_equal(scores[i], want_scores)
    # an index's rescoring reads the rows from the segments' files: the same rows and scores
    fds, offsets = snap.vector_files
    from_files = kern.rescore_labels_batch(
        labels, np.arange(snap.physical_rows, dtype=np.int64), np.zeros(0, dtype=np.bool_), scoring,
        norm2, offsets, fds, snap.bases, snap.norms_all, METRICS.index(metric.value), 10)
    for got, want in zip(from_files, (rows, scores, kept, scored), strict=True):
        np.testing.assert_array_equal(got, want)
    for i, q in enumerate(queries):
        want_rows, want_scores = best_exact(Scorer(snap, q), np.sort(labels[i]), 10, from_files=True)
        np.testing.assert_array_equal(rows[i], want_rows)
        np.testing.assert_array_equal(scores[i], want_scores)
