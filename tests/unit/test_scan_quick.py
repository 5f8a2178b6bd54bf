"""The unfiltered scan in one kernel call (``vecstore.query.scan.scan_quick``): a plain
``search(q).limit(k)`` on a table without an index returns what the staged scan returns (the
same rows in the same order, the same scores up to float32 rounding), over one segment or many,
with rows deleted, and only where the staged scan would run the two-stage cosine scan."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore

DIM = 96


def _table(tmp_path, rng: np.random.Generator, adds: int, metric: str = "cosine"):
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM, metric=metric)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    for a in range(adds):
        x = centres[rng.integers(0, 20, 700)] + 0.7 * rng.standard_normal((700, DIM)).astype(np.float32)
        tbl.add([{"id": f"{a}-{i}", "vector": v, "g": i % 10} for i, v in enumerate(x)])
    return tbl, centres


class _Staged:
    """The same query through the staged scan (:func:`vecstore.query.scan.scan`, what a query
    runs when it is not a plain unfiltered one): its rows, scores and plan."""

    def __init__(self, tbl, q: np.ndarray, k: int, oversample: int | None = None) -> None:
        snap = tbl._current()
        rows, self.scores, self.plan = tbl._executor.search_vector(snap, q, k, None, [], oversample, False)
        self.ids = snap.take(rows, ["id"]).column("id").to_pylist()


def _staged(tbl, q: np.ndarray, k: int, oversample: int | None = None) -> _Staged:
    return _Staged(tbl, q, k, oversample)


@pytest.mark.parametrize("adds", [1, 4])
@pytest.mark.parametrize("deleted", [False, True])
@pytest.mark.parametrize("k", [1, 10, 30])
def test_one_call_returns_what_the_staged_scan_returns(tmp_path, rng, adds: int, deleted: bool, k: int) -> None:
    tbl, centres = _table(tmp_path, rng, adds)
    if deleted:
        tbl.delete(where="g = 3")
    queries = centres[:6] + 0.3 * rng.standard_normal((6, DIM)).astype(np.float32)
    for q in queries:
        quick = tbl.search(q).limit(k).hits()
        assert quick.plan.stages[-1].name == "binary -> int8 -> float32 (one kernel call)"
        staged = _staged(tbl, q, k)
        assert [s.name for s in staged.plan.stages] == ["binary (hamming)", "int8 rescore", "float32 rescore"]
        assert quick.ids == staged.ids
        np.testing.assert_allclose(quick.scores, staged.scores, rtol=1e-6, atol=1e-6)
        assert len(quick.ids) == k
        if deleted:
            assert all(h["g"] != 3 for h in tbl.search(q).limit(k).to_list())
    plan = tbl.search(queries[0]).limit(k).explain()
    assert plan.strategy is vecstore.Strategy.TWO_STAGE_SCAN and plan.oversample == 16
    assert f"k x oversample = {16 * k:,}" in plan.reason and "one kernel call" in plan.reason


def test_a_caller_oversample_is_kept(tmp_path, rng) -> None:
    tbl, centres = _table(tmp_path, rng, 2)
    quick = tbl.search(centres[0]).limit(10).rescore(4).hits()
    assert quick.plan.oversample == 4 and quick.plan.stages[0].rows_in == 1400
    assert quick.ids == _staged(tbl, centres[0], 10, 4).ids
    selected = tbl.search(centres[0]).limit(10).rescore(4).select("g").to_list()  # a selection too
    assert [h["id"] for h in selected] == quick.ids and set(selected[0]) == {"id", "score", "g"}


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_other_metrics_and_filters_take_the_staged_scan(tmp_path, rng, metric: str) -> None:
    tbl, centres = _table(tmp_path, rng, 2, metric)
    assert tbl.search(centres[0]).limit(10).explain().stages[0].name == "binary (hamming)"
    cos, _ = _table(tmp_path / "cos", rng, 2)
    assert cos.search(centres[0]).where("g < 5").limit(10).explain().stages[-1].name == "float32 rescore"
    # fewer rows than k x oversample: every row scored exactly, as before
    assert cos.search(centres[0]).limit(100).explain().strategy is vecstore.Strategy.EXACT_SCAN
