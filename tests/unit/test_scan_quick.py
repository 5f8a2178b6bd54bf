"""The two-stage scan of one query in one kernel call (``two_stage_cosine_scan``): a plain
``search(q).limit(k)`` on a cosine table, filtered or not, without an index (or scanning beside
one), returns what the batch path's kernels return for the same query (its binary candidates
from one batch scan, the int8 and float32 stages in ``two_stage_cosine_batch``): the same rows
in the same order, the same scores up to float32 rounding, over one segment or many, with rows
deleted; and it runs only where the two-stage cosine scan would."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore
from vecstore.query.scan import ONE_CALL_STAGE

DIM = 96


def _table(tmp_path, rng: np.random.Generator, adds: int, metric: str = "cosine"):
    # scanned in stages, as a measured table is (these are too small to be measured)
    staged = vecstore.PlannerSettings(exact_scan_rows=0)
    tbl = vecstore.connect(tmp_path, planner=staged).create_table("t", dim=DIM, metric=metric)
    centres = rng.standard_normal((20, DIM)).astype(np.float32)
    for a in range(adds):
        x = centres[rng.integers(0, 20, 700)] + 0.7 * rng.standard_normal((700, DIM)).astype(np.float32)
        tbl.add([{"id": f"{a}-{i}", "vector": v, "g": i % 10} for i, v in enumerate(x)])
    return tbl, centres


@pytest.mark.parametrize("adds", [1, 4])
@pytest.mark.parametrize("deleted", [False, True])
@pytest.mark.parametrize("where", [None, "g < 6"])
@pytest.mark.parametrize("k", [1, 5, 10])
def test_one_call_returns_what_the_batch_kernels_return(tmp_path, rng, adds: int, deleted: bool,
                                                        where: str | None, k: int) -> None:
    tbl, centres = _table(tmp_path, rng, adds)
    if deleted:
        tbl.delete(where="g = 3")
    queries = centres[:6] + 0.3 * rng.standard_normal((6, DIM)).astype(np.float32)
    batch = tbl.search_batch(queries).limit(k)
    batch = (batch.where(where) if where else batch).hits()
    for q, b in zip(queries, batch, strict=True):
        one = tbl.search(q).limit(k)
        one = (one.where(where) if where else one).hits()
        assert one.plan.stages[-1].name == ONE_CALL_STAGE
        assert b.plan.stages[-1].name == "int8 + float32 rescore (batch kernel)"
        assert one.plan.strategy is b.plan.strategy is vecstore.Strategy.TWO_STAGE_SCAN
        assert one.plan.reason == b.plan.reason and one.plan.oversample == b.plan.oversample
        assert one.ids == b.ids
        np.testing.assert_allclose(one.scores, b.scores, rtol=1e-6, atol=1e-6)
        assert len(one.ids) == k
        for hit in tbl.search(q).where(where or "g >= 0").limit(k).to_list():
            assert hit["g"] != 3 or not deleted
            assert where is None or hit["g"] < 6
    plan = tbl.search(queries[0]).limit(k).explain()
    assert plan.oversample == 16 and plan.reason.endswith(f"k x oversample = {16 * k:,}")


def test_a_caller_oversample_and_a_selection_are_kept(tmp_path, rng) -> None:
    tbl, centres = _table(tmp_path, rng, 2)
    quick = tbl.search(centres[0]).limit(10).rescore(4).hits()
    assert quick.plan.oversample == 4 and quick.plan.stages[0].rows_in == 1400
    assert quick.ids == tbl.search_batch(centres[:2]).limit(10).rescore(4).hits()[0].ids
    selected = tbl.search(centres[0]).limit(10).rescore(4).select("g").to_list()
    assert [h["id"] for h in selected] == quick.ids and set(selected[0]) == {"id", "score", "g"}


@pytest.mark.parametrize("metric", ["dot", "l2"])
def test_other_metrics_take_the_staged_scan(tmp_path, rng, metric: str) -> None:
    tbl, centres = _table(tmp_path, rng, 2, metric)
    names = [s.name for s in tbl.search(centres[0]).limit(10).explain().stages]
    assert names == ["binary (hamming)", "int8 rescore", "float32 rescore"]
    cos, _ = _table(tmp_path / "cos", rng, 2)
    # fewer matches than k x oversample: each scored exactly, as before
    assert cos.search(centres[0]).limit(100).explain().strategy is vecstore.Strategy.EXACT_SCAN
    assert cos.search(centres[0]).where("g = 1").limit(10).explain().strategy is vecstore.Strategy.EXACT_SCAN
