"""Every index backend behind a Table, against the exact oracle: filters of every selectivity,
rows added after the index, deletes and upserts. The planner must never return fewer than
min(k, matches) rows, never a deleted or stale row, and keep recall above a bound."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from vecstore._native import loader

import vecstore
from vecstore.evaluation import tie_aware_recall
from vecstore.index import INDEX_KINDS

N, DIM, K = 3000, 64, 10
SMALL_PARAMS = {
    "hnsw": {"m": 12, "ef_construction": 80},
    "faiss-hnsw": {"m": 12, "ef_construction": 80},
    "hnsw-sq": {"m": 12, "ef_construction": 80},
    "hnsw-int8": {"m": 12, "ef_construction": 80},
    "binary-hnsw": {"m": 16, "ef_construction": 80},
    "ivf": {"nlist": 32},
    "ivf-pq": {"nlist": 32},
    "ivf-rabitq": {"nlist": 32},
    "binary-ivf": {"nlist": 32},
    "ivf-binary": {"nlist": 32},
}
KINDS = sorted(INDEX_KINDS)


def clustered(rng, n, dim, centers=40):
    c = rng.normal(size=(centers, dim)).astype(np.float32)
    return (c[rng.integers(0, centers, n)] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(2024)
    x = clustered(rng, N + 400, DIM)
    return x[:N], x[N:N + 200], x[N + 200:]


NEVER_SCAN = vecstore.PlannerSettings(scan_max_matches=0)
"""Filtered queries go through the index whenever it can answer them."""


def build(tmp_path, kind, base, planner=None):
    tbl = vecstore.connect(tmp_path / kind, planner=planner).create_table("t", dim=DIM)
    tbl.add([{"id": str(i), "vector": v, "g": i % 1000, "tag": "even" if i % 2 == 0 else "odd"}
             for i, v in enumerate(base)])
    tbl.create_index(kind, progress=False, **SMALL_PARAMS.get(kind, {}))
    return tbl


def recall(tbl, queries, where=None):
    """Tie-aware recall@K of the planner's results against ``.exact()`` of the same query."""
    found, kth, want = [], [], []
    for q in queries:
        query = tbl.search(q).limit(K)
        if where:
            query = query.where(where)
        got = query.hits()
        exact = query.exact().hits()
        want_n = min(K, len(exact))
        assert len(got) >= want_n, (where, got.plan)
        assert len(set(got.ids)) == len(got)
        found.append(got.scores[:want_n])
        kth.append(exact.scores[want_n - 1] if want_n else -np.inf)
        want.append(want_n)
    return tie_aware_recall(found, kth, want)


SELECTIVE = {"g < 500": 0.5, "g < 100": 0.1, "g < 10": 0.01, "g < 1": 0.001,
             "g < 300 AND tag = 'even'": 0.15}


@pytest.mark.parametrize("kind", KINDS)
def test_backend_behind_the_planner(tmp_path, data, kind):
    base, queries, extra = data
    tbl = build(tmp_path, kind, base)
    qs = queries[:25]
    assert recall(tbl, qs) >= 0.9
    for where in SELECTIVE:
        assert recall(tbl, qs[:10], where) >= 0.9, where

    # rows added after the index are found; deleted and replaced rows never come back
    tbl.add([{"id": f"x{i}", "vector": v, "g": 5, "tag": "new"} for i, v in enumerate(extra)])
    hits = tbl.search(extra[0]).limit(3).hits()
    assert hits.ids[0] == "x0" and "scanned" in " ".join(hits.plan.notes)
    assert tbl.search(extra[1]).where("tag = 'new'").limit(3).hits().ids[0] == "x1"
    tbl.delete(ids=["x0"])
    assert "x0" not in tbl.search(extra[0]).limit(5).hits().ids
    victim = tbl.search(qs[0]).limit(1).hits().ids[0]
    tbl.upsert([{"id": victim, "vector": -qs[0], "g": 999, "tag": "moved"}])
    top = tbl.search(qs[0]).limit(20).to_list()
    assert all(h["id"] != victim for h in top)
    assert recall(tbl, qs[:10]) >= 0.9
    assert recall(tbl, qs[:10], "g < 10") >= 0.9

    # optimize folds the fresh rows in; results stay right
    assert tbl.optimize()
    view_plan = tbl.search(extra[2]).limit(3).explain()
    assert "scanned" not in " ".join(view_plan.notes)
    assert tbl.search(extra[2]).limit(1).hits().ids == ["x2"]
    assert recall(tbl, qs[:10], "g < 100") >= 0.9


def test_index_survives_reopen_and_is_listed(tmp_path, data):
    base, queries, _ = data
    tbl = build(tmp_path, "hnsw", base)
    entry = tbl.list_indexes()[0]
    assert entry["kind"] == "hnsw" and entry["count"] == N
    again = vecstore.connect(tmp_path / "hnsw").open_table("t")
    plan = again.search(queries[0]).limit(K).explain()
    assert plan.index == "hnsw" and plan.strategy == "index"
    assert again.drop_index() and again.list_indexes() == []
    assert again.search(queries[0]).limit(K).explain().index is None


def test_bad_index_requests(tmp_path, data):
    tbl = vecstore.connect(tmp_path / "s").create_table("t", dim=DIM)
    with pytest.raises(vecstore.InvalidArgumentError, match="empty"):
        tbl.create_index("hnsw")
    tbl.add([{"id": str(i), "vector": v} for i, v in enumerate(data[0][:100])])
    with pytest.raises(vecstore.InvalidArgumentError, match="unknown index kind"):
        tbl.create_index("annoy")
    with pytest.raises(vecstore.InvalidArgumentError):
        tbl.create_index("hnsw", m=-3)


@pytest.mark.parametrize("kind", KINDS)
def test_index_strategies_under_filters(tmp_path, data, kind):
    """With the scan threshold at 0, filtered queries go through the index (inside the search,
    or unfiltered then filtered when the filter keeps most rows); recall holds and no query
    comes back short. Binary indexes always scan filtered queries."""
    from vecstore.query.planner import BINARY_KINDS

    base, queries, _ = data
    tbl = build(tmp_path, kind, base, NEVER_SCAN)
    for where, selectivity in SELECTIVE.items():
        plan = tbl.search(queries[0]).where(where).limit(K).explain()
        if kind in BINARY_KINDS:
            assert not plan.strategy.uses_index and "sign codes" in plan.reason, (where, plan)
        elif selectivity >= NEVER_SCAN.postfilter_min_selectivity:
            assert plan.strategy is vecstore.Strategy.INDEX_THEN_FILTER, (where, plan)
        else:
            assert plan.strategy is vecstore.Strategy.INDEX_FILTERED, (where, plan)
        assert recall(tbl, queries[:10], where) >= 0.9, (kind, where)


def test_concurrent_searches_with_different_ef_agree_with_serial(tmp_path, data):
    """hnswlib keeps one ef per index: queries needing different ef (filters of different
    selectivity) run from many threads must give what they give one at a time."""
    from concurrent.futures import ThreadPoolExecutor

    base, queries, _ = data
    tbl = build(tmp_path, "hnsw", base, NEVER_SCAN)
    jobs = [(q, where) for q in queries[:12] for where in (None, "g < 500", "g < 100", "g < 10")]

    def run(job):
        q, where = job
        query = tbl.search(q).limit(K)
        return (query.where(where) if where else query).hits().ids

    serial = [run(j) for j in jobs]
    with ThreadPoolExecutor(max_workers=6) as pool:
        parallel = list(pool.map(run, jobs * 3))
    assert parallel == serial * 3


def test_plan_candidates_and_filtered_oversample(tmp_path, data):
    base, queries, _ = data
    # scans in stages, as on a measured table (this one is too small to be measured)
    tbl = build(tmp_path, "hnsw", base, vecstore.PlannerSettings(exact_scan_rows=0))
    plan = tbl.search(queries[0]).limit(K).explain()
    index_stage = next(s for s in plan.stages if s.name.startswith("hnsw"))
    assert plan.candidates == index_stage.rows_out <= 2 * K
    scan = tbl.search(queries[0]).where("g < 500").limit(K).explain()  # 1,500 matches: a scan
    assert scan.strategy is vecstore.Strategy.TWO_STAGE_SCAN and scan.index == "hnsw"
    assert scan.oversample == 32  # filtered scans take k x 32
    assert scan.candidates == scan.matches == 1500
    chosen = tbl.search(queries[0]).where("g < 500").limit(K).rescore(8).explain()
    assert chosen.oversample == 8  # the caller's choice is kept


@pytest.mark.parametrize("kind", ["hnsw", "hnsw-int8", "hnsw-sq", "faiss-hnsw", "ivf"])
def test_batch_through_an_index_equals_single_searches(tmp_path, data, kind):
    """search_batch runs the first index search of all its queries in one call; the results
    (and the strategies) are those of one query at a time, with and without a filter, with rows
    added and deleted since the index was built."""
    base, queries, extra = data
    tbl = build(tmp_path, kind, base, NEVER_SCAN)
    tbl.add([{"id": f"x{i}", "vector": v, "g": 5, "tag": "new"} for i, v in enumerate(extra[:20])])
    tbl.delete(ids=[str(i) for i in range(0, 300, 7)])
    qs = np.concatenate([queries[:8], extra[:2]])
    for where in (None, "g < 500", "g < 100"):
        batch = tbl.search_batch(qs, threads=2).limit(K)
        if where:
            batch = batch.where(where)
        got = batch.hits()
        for q, h in zip(qs, got, strict=True):
            one = tbl.search(q).limit(K)
            one = one.where(where).hits() if where else one.hits()
            assert h.ids == one.ids, (where, h.plan, one.plan)
            assert h.plan.strategy == one.plan.strategy



def _int8_table(tmp_path, data, metric):
    """An ``hnsw-int8`` table of 1,500 rows (``near = 1``: the first query's 20 nearest) and
    24 queries."""
    base, queries, _ = data
    rows, qs = base[:1500], queries[:24]
    scores = {"cosine": rows @ qs[0] / np.linalg.norm(rows, axis=1), "dot": rows @ qs[0],
              "l2": -((rows - qs[0]) ** 2).sum(axis=1)}[metric]
    near = set(np.argsort(-scores)[:20].tolist())
    tbl = vecstore.connect(tmp_path / metric, planner=NEVER_SCAN).create_table(
        "t", dim=DIM, metric=metric)
    tbl.add([{"id": str(i), "vector": v, "g": i % 1000, "near": int(i in near)}
             for i, v in enumerate(rows)])
    tbl.create_index("hnsw-int8", m=8, ef_construction=40, ef=32, ef50=80, rerank=2)
    return tbl, qs


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_one_unfiltered_query_through_hnsw_int8_is_the_planners_answer(tmp_path, data, metric):
    """The lean path of one unfiltered query through ``hnsw-int8`` (one search, its candidates
    rescored in one kernel call) finds the rows and scores the planner's index path
    (``search_index``) finds from the same query, exactly, with the same strategy, for k = 1,
    10 and 200."""
    loader.compile_all()  # both paths on the Numba kernels, not one on the twins
    tbl, qs = _int8_table(tmp_path, data, metric)
    snap = tbl._current()
    lean = set()
    for k in (1, K, 200):
        for q in qs:
            hits = tbl.search(q).limit(k).hits()
            rows, scores, plan = tbl._executor.search_vector(snap, q, k, None, [], None, False)
            np.testing.assert_array_equal(hits._rows, rows)
            np.testing.assert_array_equal(hits.scores, scores)
            assert hits.plan.strategy is plan.strategy is vecstore.Strategy.INDEX
            names = [s.name for s in hits.plan.stages]
            if names[-1] == "float32 rescore" and len(names) == 2:
                lean.add(k)
    assert lean == {1, K, 200}


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_a_batch_rescores_hnsw_int8_candidates_in_one_kernel_call(tmp_path, data, metric):
    """Where no row was added since the build, a batch through ``hnsw-int8`` rescores every
    query's candidates in one kernel call per part of the batch: the rows, scores and
    strategies each query alone finds (ids and order exactly), unfiltered, with deleted rows
    and through the index with a filter (inside the search, or after it). A query whose
    candidates the filter after the search left short (``near = 0`` drops the first query's
    20 nearest rows: it keeps more than k candidates, fewer than the 20 it wants) goes on on
    its own, widened as it would be alone."""
    tbl, qs = _int8_table(tmp_path, data, metric)
    kernel_answered, widened = set(), set()
    for deleted in (False, True):
        if deleted:
            tbl.delete(ids=[str(i) for i in range(0, 1500, 7)])
        for where in (None, "g < 500", "g < 20", "near = 0"):
            batch = tbl.search_batch(qs, threads=2).limit(K)
            got = (batch.where(where) if where else batch).hits()
            for i, (q, h) in enumerate(zip(qs, got, strict=True)):
                one = tbl.search(q).limit(K)
                one = one.where(where).hits() if where else one.hits()
                assert h.ids == one.ids, (where, deleted, h.plan, one.plan)
                np.testing.assert_allclose(h.scores, one.scores, rtol=1e-6, atol=1e-6)
                assert h.plan.strategy == one.plan.strategy
                if h.plan.stages[-1].name == "float32 rescore (batch kernel)":
                    kernel_answered.add((where, deleted, h.plan.strategy))
                if any("widened" in note for note in h.plan.notes):
                    widened.add((where, i))
    assert {s for _, _, s in kernel_answered} == {
        vecstore.Strategy.INDEX, vecstore.Strategy.INDEX_FILTERED, vecstore.Strategy.INDEX_THEN_FILTER}
    assert {(w, d) for w, d, _ in kernel_answered} == {
        (w, d) for w in (None, "g < 500", "g < 20", "near = 0") for d in (False, True)}
    assert ("near = 0", 0) in widened

def test_a_batch_scanning_beside_an_index_scans_its_matches_once(tmp_path, data):
    """Where the planner scans a filter's matches rather than search the index, a batch picks
    every query's binary candidates in one parallel scan (as it does on a table without an
    index) and rescores them in one parallel kernel call, and answers what each query alone
    answers, with rows added and deleted since the index was built."""
    base, queries, extra = data
    # scans in stages, as on a measured table (this one is too small to be measured)
    tbl = build(tmp_path, "hnsw", base, vecstore.PlannerSettings(exact_scan_rows=0))
    tbl.add([{"id": f"x{i}", "vector": v, "g": 5, "tag": "new"} for i, v in enumerate(extra[:20])])
    tbl.delete(ids=[str(i) for i in range(0, 300, 7)])
    qs = np.concatenate([queries[:8], extra[:2]])
    got = tbl.search_batch(qs, threads=2).where("g < 500").limit(K).hits()
    for q, h in zip(qs, got, strict=True):
        one = tbl.search(q).where("g < 500").limit(K).hits()
        assert h.ids == one.ids
        assert h.plan.strategy is one.plan.strategy is vecstore.Strategy.TWO_STAGE_SCAN
        assert [s.name for s in h.plan.stages][1:] == ["binary (batch scan)",
                                                       "int8 + float32 rescore (batch kernel)"]
        assert h.plan.index == "hnsw" and h.plan.reason == one.plan.reason


class _RecordingHnswlib:
    """hnswlib's own index, recording the ``num_threads`` of every ``knn_query`` it answers and
    the thread that called it."""

    def __init__(self, inner):
        self.inner = inner
        self.calls = []

    def knn_query(self, *args, **kwargs):
        self.calls.append((kwargs.get("num_threads"), threading.get_ident()))
        return self.inner.knn_query(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.inner, name)


def test_a_batchs_threads_reach_hnswlib(tmp_path, data):
    """``search_batch(threads=n)`` searches hnswlib on at most ``n`` threads (it was given
    ``num_threads=-1``, every core, whatever the caller asked): one call on one thread, or
    parts of the batch each searched on one thread by ``n`` threads; a search filtered by
    hnswlib's Python callback stays one call on one thread."""
    base, queries, _ = data
    tbl = build(tmp_path, "hnsw", base, NEVER_SCAN)
    index = tbl._executor.index_view(tbl._current()).index
    index._index = recording = _RecordingHnswlib(index._index)
    tbl.search_batch(queries[:40], threads=1).limit(K).hits()
    assert [n for n, _ in recording.calls] == [1]
    for threads in (2, 3):
        recording.calls.clear()
        tbl.search_batch(queries[:40], threads=threads).limit(K).hits()
        assert [n for n, _ in recording.calls] == [1] * (4 * threads)
        assert 1 <= len({ident for _, ident in recording.calls}) <= threads
    recording.calls.clear()
    got = tbl.search_batch(queries[:40], threads=2).where("g < 100").limit(K).hits()
    assert got[0].plan.strategy is vecstore.Strategy.INDEX_FILTERED
    assert [n for n, _ in recording.calls] == [1]



WORKQUEUE_BATCH = """
import sys, numpy as np, vecstore
from vecstore._native import loader
loader.compile_all()
rng = np.random.default_rng(0)
tbl = vecstore.connect(sys.argv[1]).create_table("t", dim=16)
tbl.add([{"id": str(i), "vector": v} for i, v in enumerate(rng.standard_normal((1500, 16)))])
tbl.create_index("hnsw-int8", m=8, ef_construction=40)
for _ in range(20):
    tbl.search_batch(rng.standard_normal((100, 16)), threads=2).limit(10).hits()
import numba
print(numba.threading_layer())
"""


@pytest.mark.slow
def test_a_batch_split_over_threads_never_launches_parallel_kernels_at_once(tmp_path):
    """``hnsw-int8`` searches a batch split over the batch's threads with its one-thread kernel
    (``graph_search_rows``): two calls of the parallel kernel at once abort the process under
    Numba's workqueue threading layer (where neither TBB nor OpenMP is available)."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_THREADING_LAYER": "workqueue"}
    out = subprocess.run([sys.executable, "-c", WORKQUEUE_BATCH, str(tmp_path / "db")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "workqueue"


# -- multi-vector rows: every backend indexes every vector of every row -------------------------

N_MULTI = 1500


@pytest.fixture(scope="module")
def multi_data():
    rng = np.random.default_rng(77)
    x = clustered(rng, 2 * N_MULTI + 300, DIM)
    return x[:N_MULTI], x[N_MULTI:2 * N_MULTI], x[2 * N_MULTI:2 * N_MULTI + 100], x[2 * N_MULTI + 100:]


def build_multi(tmp_path, kind, first, second, planner=None):
    tbl = vecstore.connect(tmp_path / kind, planner=planner).create_table(
        "t", dim=DIM, vectors=["vector", "vector_b"])
    pairs = enumerate(zip(first, second, strict=True))
    tbl.add([{"id": str(i), "vector": a, "vector_b": b, "g": i % 1000,
              "tag": "even" if i % 2 == 0 else "odd"} for i, (a, b) in pairs])
    tbl.create_index(kind, progress=False, **SMALL_PARAMS.get(kind, {}))
    return tbl


@pytest.mark.parametrize("kind", KINDS)
def test_backend_behind_the_planner_with_multi_vector_rows(tmp_path, multi_data, kind):
    """An index over a table whose rows keep two vectors holds both (labels map two-to-one to
    rows); the planner returns rows by the max of their two scores, each row once, as
    ``.exact()`` does, through every strategy, after adds, deletes, upserts and optimize."""
    first, second, queries, extra = multi_data
    tbl = build_multi(tmp_path, kind, first, second)
    assert tbl.list_indexes()[0]["count"] == 2 * N_MULTI
    assert recall(tbl, queries[:20]) >= 0.9
    for where in ("g < 500", "g < 10", "g < 300 AND tag = 'even'"):
        assert recall(tbl, queries[:8], where) >= 0.9, where
    # a row is found by either of its vectors
    for i in (3, 700):
        assert tbl.search(first[i]).limit(1).hits().ids == [str(i)]
        assert tbl.search(second[i]).limit(1).hits().ids == [str(i)]
    # rows added after the build are scanned beside it; deleted and replaced rows never return
    tbl.add([{"id": f"x{i}", "vector": -v, "vector_b": v, "g": 5, "tag": "new"} for i, v in enumerate(extra)])
    assert tbl.search(extra[0]).limit(3).hits().ids[0] == "x0"
    tbl.delete(ids=["x0", "3"])
    assert "x0" not in tbl.search(extra[0]).limit(5).hits().ids
    assert "3" not in tbl.search(second[3]).limit(5).hits().ids
    tbl.upsert([{"id": "700", "vector": -queries[0], "vector_b": -queries[0], "g": 999, "tag": "moved"}])
    assert "700" not in tbl.search(second[700]).limit(5).hits().ids
    assert recall(tbl, queries[:8]) >= 0.9
    assert recall(tbl, queries[:8], "g < 10") >= 0.9
    assert tbl.optimize()
    assert tbl.search(extra[2]).limit(1).hits().ids == ["x2"]
    assert tbl.search(-extra[2]).limit(1).hits().ids == ["x2"]
    assert recall(tbl, queries[:8], "g < 100") >= 0.9


@pytest.mark.parametrize("kind", ["hnsw", "hnsw-int8", "ivf"])
def test_multi_vector_index_strategies_under_filters(tmp_path, multi_data, kind):
    """Filtered queries through a multi-vector index (inside the search, or after it) keep
    recall against the exact max-of-vectors answer, and never return a row twice."""
    first, second, queries, _ = multi_data
    tbl = build_multi(tmp_path, kind, first, second, NEVER_SCAN)
    for where in SELECTIVE:
        plan = tbl.search(queries[0]).where(where).limit(K).explain()
        assert plan.strategy.uses_index or plan.fallback_from is not None, (where, plan)
        assert recall(tbl, queries[:8], where) >= 0.9, (kind, where)
    # a query that scores one of the two vectors cannot use an index over both: it scans
    plan = tbl.search(queries[0]).using("vector_b").limit(K).explain()
    assert not plan.strategy.uses_index and "index covers" in plan.reason
