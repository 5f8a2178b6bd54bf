"""The filtered search effort is measured at build time, not scaled by a rule (issue 12).

``create_index("hnsw")`` measures, on held-out rows, the ``ef`` that reaches the target recall
under random filters of a few selectivities passed into the search, and the planner interpolates
it for a query's selectivity; ``hnsw-int8`` (the default) scales its measured ef by the square
root of the selectivity, and must reach the target as well. Through the public API: a seeded
table, filters that keep about 50%, 20% and 5% of the rows, queries that are fresh points (no
twin in the table).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import vecstore
from vecstore.config import PlannerSettings
from vecstore.evaluation import tie_aware_recalls

DIM = 64
ROWS = 6_000
QUERIES = 200
# 200 queries measure recall with a standard error of ~0.007: the check allows about two
NOISE = 0.015
# every filtered query searches the index with the filter passed in (no scan, no post-filter)
IN_SEARCH = PlannerSettings(scan_max_matches=0, postfilter_min_selectivity=1.0)


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module", params=["hnsw", "hnsw-int8"])
def table(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[vecstore.Table, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(31)
    centres = rng.standard_normal((60, DIM))
    # loose clusters in 64 dimensions: hard enough that the unfiltered ef is ~90, so the
    # effort matters (tight clusters reach the target at ef=10 under any filter)
    rows = _unit(centres[rng.integers(0, 60, ROWS)] + 3 * rng.standard_normal((ROWS, DIM)))
    queries = _unit(centres[rng.integers(0, 60, QUERIES)] + 3 * rng.standard_normal((QUERIES, DIM)))
    path = tmp_path_factory.mktemp("filtered_effort")
    tbl = vecstore.connect(path).create_table("t", dim=DIM)
    bucket = rng.permutation(ROWS) % 100
    tbl.add(pa.table({"id": pa.array([str(i) for i in range(ROWS)]),
                      "bucket": pa.array(bucket, pa.int32()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(rows.ravel()), DIM)}))
    tbl.create_index(request.param)
    return vecstore.connect(path, planner=IN_SEARCH).open_table("t"), rows, queries, bucket


@pytest.mark.parametrize("keep", [50, 20, 5])
def test_filtered_recall_reaches_the_target_at_each_selectivity(table, keep: int) -> None:
    tbl, rows, queries, bucket = table
    allowed = np.flatnonzero(bucket < keep)
    scores = queries @ rows[allowed].T
    kth = -np.partition(-scores, 9, axis=1)[:, 9]
    found = []
    for q in queries:
        q_hits = tbl.search(q).where("bucket < ?", keep).limit(10).to_list()
        found.append(rows[[int(h["id"]) for h in q_hits]] @ q)
    plan = tbl.search(queries[0]).where("bucket < ?", keep).limit(10).explain()
    assert plan.strategy.value == "index-filtered", plan
    assert float(np.mean(tie_aware_recalls(found, kth, 10))) >= 0.95 - NOISE


def test_explain_names_the_filtered_effort_source(table) -> None:
    tbl, _, queries, _ = table
    entry = tbl.list_indexes()[0]
    if entry["kind"] == "hnsw-int8":
        # its filtered efforts are not measured yet (measured like hnsw's, the 20% filter got
        # recall 0.92 here): the sqrt rule, which explain() names
        reason = tbl.search(queries[0]).where("bucket < 20").limit(10).explain().reason
        assert entry["params"]["filtered_ef"] is None
        assert "selectivity 20.0% (x sqrt(selectivity): no filtered effort measured)" in reason, reason
        return
    curve = entry["params"]["filtered_ef"]
    assert [sel for sel, _ in curve] == [0.5, 0.1, 0.02]
    reason = tbl.search(queries[0]).where("bucket < 20").limit(10).explain().reason
    ten, fifty = dict(curve)[0.1], dict(curve)[0.5]
    assert (f"filtered ef for selectivity 20.0% interpolated between 50% (ef={fifty}) and 10% "
            f"(ef={ten})") in reason, reason
    assert "measured at build time under random filters passed into the search" in reason


def test_a_broad_filter_filters_an_index_search_instead_of_scanning(tmp_path, rng) -> None:
    vectors = _unit(rng.standard_normal((2_000, 16)))
    tbl = vecstore.connect(tmp_path).create_table("t", dim=16)
    tbl.add(pa.table({"id": pa.array([str(i) for i in range(2_000)]),
                      "n": pa.array(np.arange(2_000), pa.int32()),
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 16)}))
    tbl.create_index("hnsw")

    def strategy(where: str, **settings: int) -> str:
        # a scan in stages, as on a measured table (this one is too small to be measured)
        t = vecstore.connect(tmp_path, planner=PlannerSettings(exact_scan_rows=0, **settings)).open_table("t")
        return t.search(vectors[0]).where(where).limit(10).explain().strategy.value

    # 1,200 matches (60%): more than postfilter_scan_max_matches, a share the index post-filters
    assert strategy("n < 1200", postfilter_scan_max_matches=1_000) == "index-then-filter"
    assert strategy("n < 1200", postfilter_scan_max_matches=1_500) in ("two-stage-scan", "int8-scan")
    # 800 matches (40%) would be passed into the search: scan_max_matches still decides (16
    # dimensions: the scan starts from the int8 codes)
    assert strategy("n < 800", postfilter_scan_max_matches=100) in ("two-stage-scan", "int8-scan")
