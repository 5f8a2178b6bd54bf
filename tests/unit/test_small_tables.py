"""A scan whose oversample was never measured on its table does not guess it.

Sign codes rank some data poorly (random Gaussian rows are the worst case: on 1,000 random 384-d
rows the default oversample of 16 found 0.81 of the true top 10, on 20,000 rows 0.41). So a table
under ``PlannerSettings.exact_scan_rows`` rows that was never measured scans every row exactly,
and ``add`` measures the oversample once writes bring a table to the size where it is measured
(``SCAN_CALIBRATED_ROWS``) or grow it by half since, recording it as a version of its own."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore
from vecstore import PlannerSettings
from vecstore.query.planner import SCAN_CALIBRATED_ROWS
from vecstore.query.scoring import top_k

DIM = 96


def _truth(x: np.ndarray, q: np.ndarray, k: int) -> list[str]:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return [str(i) for i in np.argsort(-(unit @ (q / np.linalg.norm(q))), kind="stable")[:k]]


@pytest.mark.parametrize("adds", [1, 3])
def test_a_small_unmeasured_table_finds_the_true_neighbours(tmp_path, rng, adds: int) -> None:
    x = rng.standard_normal((1_500, DIM)).astype(np.float32)
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM)
    for part in np.array_split(np.arange(len(x)), adds):
        tbl.add([{"id": str(i), "vector": x[i], "g": int(i % 4)} for i in part.tolist()])
    assert tbl._current().manifest.scan is None  # too small to be measured
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    batch = tbl.search_batch(queries).limit(10).hits()
    for q, b in zip(queries, batch, strict=True):
        hits = tbl.search(q).limit(10).hits()
        assert hits.ids == _truth(x, q, 10)  # every one, in order
        assert hits.plan.strategy is vecstore.Strategy.EXACT_SCAN
        assert hits.plan.reason == "1,500 matches <= k x oversample = 1,500", hits.plan.reason
        assert b.ids == hits.ids
        np.testing.assert_allclose(b.scores, hits.scores, rtol=1e-5, atol=1e-6)
        found = tbl.search(q).where("g = 1").limit(10).to_list()
        keep = np.flatnonzero(np.arange(len(x)) % 4 == 1)
        assert [h["id"] for h in found] == [str(keep[int(i)]) for i in _truth(x[keep], q, 10)]


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_an_empty_table_and_one_whose_rows_are_all_deleted_find_nothing(tmp_path, metric: str) -> None:
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM, metric=metric)
    q = np.ones(DIM, dtype=np.float32)
    assert tbl.search(q).limit(10).to_list() == [] and tbl.search_batch([q, q]).limit(3).to_list() == [[], []]
    tbl.add([{"id": "a", "vector": q}, {"id": "b", "vector": -q}])
    tbl.delete(ids=["a", "b"])
    assert tbl.search(q).limit(10).to_list() == []
    assert tbl.search(q).where("id = 'a'").limit(1).to_list() == []


def test_the_staged_scan_is_kept_where_asked(tmp_path, rng) -> None:
    x = rng.standard_normal((1_500, DIM)).astype(np.float32)
    vecstore.connect(tmp_path).create_table("t", dim=DIM).add(
        [{"id": str(i), "vector": v} for i, v in enumerate(x)])
    staged = vecstore.connect(tmp_path, planner=PlannerSettings(exact_scan_rows=0)).open_table("t")
    plan = staged.search(x[0]).limit(10).explain()
    assert plan.strategy is vecstore.Strategy.TWO_STAGE_SCAN and plan.oversample == 16
    tbl = vecstore.connect(tmp_path).open_table("t")
    assert tbl.search(x[0]).limit(10).rescore(16).explain().strategy is vecstore.Strategy.TWO_STAGE_SCAN
    with pytest.raises(vecstore.InvalidArgumentError, match="exact_scan_rows"):
        PlannerSettings(exact_scan_rows=-1)


def test_add_measures_the_scan_when_the_table_reaches_its_size_and_when_it_grows(tmp_path, rng) -> None:
    n = SCAN_CALIBRATED_ROWS
    x = rng.standard_normal((8_251, DIM)).astype(np.float32)
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM)

    def add(lo: int, hi: int) -> None:
        tbl.add([{"id": str(i), "vector": x[i]} for i in range(lo, hi)])

    add(0, n - 1)
    assert tbl._current().manifest.scan is None and tbl.version == 2
    add(n - 1, 5_500)  # reaches the size: the add's version, then the measurement's
    first = tbl._current().manifest.scan
    assert first is not None and (first.rows, first.version, tbl.version) == (5_500, 3, 4)
    # random rows: sign codes rank them poorly, and the measured oversample says so
    assert first.oversample > PlannerSettings().oversample
    queries = rng.standard_normal((20, DIM)).astype(np.float32)
    recall = np.mean([len(set(tbl.search(q).limit(10).hits().ids) & set(_truth(x[:5_500], q, 10))) / 10
                      for q in queries])
    assert recall >= 0.9, recall
    add(5_500, 8_250)  # 1.5 times the rows measured on: not measured again, the width grows with them
    assert tbl._current().manifest.scan == first and tbl.version == 5
    plan = tbl.search(queries[0]).limit(10).explain()
    assert plan.oversample == -(-first.oversample * 8_250 // 5_500)
    add(8_250, 8_251)  # beyond: measured again
    again = tbl._current().manifest.scan
    assert again is not None and (again.rows, tbl.version) == (8_251, 7)


def test_writes_leave_a_large_table_to_create_index_and_optimize(tmp_path, rng, monkeypatch) -> None:
    from vecstore.query import executor

    monkeypatch.setattr(executor, "SCAN_AUTO_MEASURE_MAX_ROWS", 5_999)  # "large": 6,000 rows
    x = rng.standard_normal((6_000, DIM)).astype(np.float32)
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM)
    tbl.add([{"id": str(i), "vector": v} for i, v in enumerate(x)])
    assert tbl._current().manifest.scan is None and tbl.version == 2
    assert tbl.search(x[0]).limit(10).explain().oversample == PlannerSettings().oversample
    tbl.optimize()
    assert tbl._current().manifest.scan.rows == 6_000


def test_top_k_orders_ties_by_position_and_nan_last(rng) -> None:
    for size in (1, 7, 64, 65, 300, 1_024, 1_025, 5_000):
        for kind in ("plain", "ties", "nan", "zeros"):
            s = rng.standard_normal(size).astype(np.float32)
            if kind == "ties":
                s = np.round(s, 1)
            elif kind == "nan":
                s[rng.random(size) < 0.3] = np.nan
            elif kind == "zeros":
                s = np.where(rng.random(size) < 0.5, np.float32(0.0), np.float32(-0.0))
            for k in (1, 10, size + 3):
                expected = np.argsort(-s, kind="stable")[:k]
                assert top_k(s, k).tolist() == expected.tolist(), (size, kind, k)
    frozen = np.arange(50, dtype=np.float32)
    frozen.flags.writeable = False
    assert top_k(frozen, 3).tolist() == [49, 48, 47]
