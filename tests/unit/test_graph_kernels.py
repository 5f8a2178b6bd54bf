"""The graph search kernel (Numba) against its NumPy twin, on graphs hnswlib builds: the same
nodes in the same order with the same distances (integer dot products, the rest in float32 in
the same order), with and without an allow bitmap, for inner product and L2; the batch kernel
equals one query at a time; the int16 queries lose next to nothing against float32 ones."""

from __future__ import annotations

import platform

import numba
import numpy as np
import pytest
from vecstore._native import graph, graph_reference

from vecstore.config import Metric
from vecstore.index.graph_int8 import GraphInt8Index

pytest.importorskip("hnswlib")


@pytest.fixture(scope="module", params=["cosine", "l2"])
def built(request):
    rng = np.random.default_rng(5)
    centres = rng.normal(size=(20, 24)).astype(np.float32)
    x = (centres[rng.integers(0, 20, 1500)] + 0.4 * rng.normal(size=(1500, 24))).astype(np.float32)
    index = GraphInt8Index.build(x, request.param, ef=32, ef50=64, rerank=1)
    queries = (centres[rng.integers(0, 20, 30)] + 0.4 * rng.normal(size=(30, 24))).astype(np.float32)
    if request.param == "cosine":
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return index, queries


def _call(mod, index, q, ef, allow):
    g = index.graph
    folded, qscales, consts = g.fold(q[None, :])
    return mod.graph_search(folded[0], float(qscales[0]), float(consts[0]), g.codes, g.sqnorms,
                            g.counts0, g.links0, g.up_start, g.up_counts, g.up_links, g.entry,
                            g.max_level, ef, allow)


@pytest.mark.parametrize("selectivity", [1.0, 0.2, 0.02])
def test_numba_and_numpy_agree(built, selectivity):
    index, queries = built
    rng = np.random.default_rng(9)
    n = len(index)
    allow = np.empty(0, bool) if selectivity == 1.0 else rng.random(n) < selectivity
    for q in queries:
        a_ids, a_d = _call(graph, index, q, 40, allow)
        b_ids, b_d = _call(graph_reference, index, q, 40, allow)
        assert a_ids.size > 0
        np.testing.assert_array_equal(a_ids, b_ids)
        np.testing.assert_array_equal(a_d, b_d)
        if allow.size:
            assert allow[a_ids].all()


def test_batch_equals_single_queries(built):
    index, queries = built
    g = index.graph
    folded, qscales, consts = g.fold(queries)
    for mod in (graph, graph_reference):
        for batch in (mod.graph_search_batch, mod.graph_search_rows):
            ids, dist = batch(folded, qscales, consts, g.codes, g.sqnorms, g.counts0, g.links0,
                              g.up_start, g.up_counts, g.up_links, g.entry, g.max_level, 32, 10,
                              np.empty(0, bool))
            for i, q in enumerate(queries):
                one, d1 = _call(mod, index, q, 32, np.empty(0, bool))
                assert ids[i].tolist() == one[:10].tolist()


@pytest.mark.parametrize("k", [1, 10, 40])
def test_candidate_labels_are_the_labels_of_search_prepared(built, k):
    """The planner's unfiltered path asks for labels alone: the same, in the same order."""
    index, queries = built
    for q in queries:
        one = q[None, :]
        want = index.search_prepared(one, k, None, len(index), 32)[1]
        got = index.candidate_labels(one, k, 32)
        assert got.shape[0] == 1 and got.shape[1] <= k
        np.testing.assert_array_equal(got[0], want[0, :got.shape[1]])
        assert (want[0, got.shape[1]:] == -1).all()


def test_the_scores_are_the_metric_of_the_quantised_vectors(built):
    """Scores are the metric of the int8-dequantised vectors (exact rows' squared norms for L2):
    estimates the planner rescores, close to the exact ones."""
    index, queries = built
    g = index.graph
    scores, labels = index.search(queries, 5)
    node_of = np.empty(len(index), np.int64)
    node_of[g.labels] = np.arange(len(index))
    x_hat = (g.codes.astype(np.float64) + 128.0) * g.scale + g.offset
    for q, row_s, row_l in zip(queries.astype(np.float64), scores, labels, strict=True):
        dots = x_hat[node_of[row_l]] @ q
        if index.metric is Metric.L2:
            expected = -(g.sqnorms[node_of[row_l]] - 2 * dots + q @ q)
        else:
            expected = dots
        np.testing.assert_allclose(row_s, expected, rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86 instructions")
def test_the_distance_loop_is_vectorised_into_pmaddwd():
    """The int16 x int8 dot product compiles to packed multiply-adds (an int64 sum, or one split
    in chunks, compiled to scalar code 25x slower). Compiled afresh: cached code has no asm."""
    fresh = numba.njit(graph._distance.py_func)
    codes = np.zeros((2, 64), np.int8)
    fresh(np.zeros(64, np.int16), 1.0, codes, np.empty(0, np.float32), 0.0, 1)
    asm = next(iter(fresh.inspect_asm().values()))
    assert "pmaddwd" in asm


def test_int16_queries_agree_with_float32_ones(built):
    """The folded int16 query gives the dot products of the float32 query with the dequantised
    codes to within 1e-4 of their scale: the int16 step adds next to no error to the codes'."""
    index, queries = built
    g = index.graph
    folded, qscales, consts = g.fold(queries)
    x_hat = (g.codes.astype(np.float64) + 128.0) * g.scale + g.offset
    exact = queries.astype(np.float64) @ x_hat.T
    approx = qscales[:, None] * (folded.astype(np.float64) @ g.codes.T.astype(np.float64)) + consts[:, None]
    assert np.abs(approx - exact).max() <= 1e-4 * np.abs(exact).max()
    assert np.abs(folded).max() <= graph_reference.query_max(g.codes.shape[1])


def test_the_candidates_get_the_ef_measured_for_them():
    """The planner asks for ``candidates_for(k) = k x rerank`` candidates; the build measured
    ``ef`` (``ef50``) for exactly those at k = 10 (50), so that is the ef they get (reading the
    candidates as results gave 87 for a measured 64)."""
    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 16)).astype(np.float32)
    index = GraphInt8Index.build(x, "cosine", ef=40, ef50=160, rerank=2)
    assert index.candidates_for(10) == 20 and index.effort_for(20) == 40
    assert index.candidates_for(50) == 100 and index.effort_for(100) == 160
    assert 40 < index.effort_for(40) < 160  # 20 results: between the two measured
    assert index.effort_for(1) == 40 and index.effort_for(400) >= 400


def test_fold_queries_kernel_and_twin_agree(built):
    """The same int16 queries and scales from both; the offsets to float32 rounding (summed in
    another order); a zero query folds to zeros with a finite scale."""
    index, queries = built
    scale, base, inv_max = index.graph._folding
    qs = np.vstack([queries, np.zeros((1, queries.shape[1]), np.float32)])
    a = graph.fold_queries(qs, scale, base, inv_max)
    b = graph_reference.fold_queries(qs, scale, base, inv_max)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2], rtol=1e-6, atol=1e-6)
    assert not a[0][-1].any() and np.isfinite(a[1][-1])
