"""A repeated filter reuses its match set and the index's allow bitmap, within one version
(issue 12): the same answers as a fresh evaluation, ``explain()`` says so, and any write (add,
delete, update) is seen by the next query. Through the public API."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import vecstore
from vecstore.config import PlannerSettings

DIM = 16
ROWS = 2_000


def _rows(vectors: np.ndarray, start: int, colour: str | None = None) -> pa.Table:
    n = len(vectors)
    colours = [colour] * n if colour else ["red" if i % 4 == 0 else "blue" for i in range(start, start + n)]
    return pa.table({"id": pa.array([str(i) for i in range(start, start + n)]),
                     "colour": pa.array(colours),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), DIM)})


@pytest.fixture(params=["in-search", "post-filter"])
def table(request: pytest.FixtureRequest, tmp_path, rng) -> tuple[vecstore.Table, np.ndarray]:
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vecstore.connect(tmp_path).create_table("t", dim=DIM).add(_rows(vectors, 0))
    # the index answers every filtered query: the filter passed into the search, or (a floor
    # of 0) applied to an unfiltered search's candidates
    floor = 1.0 if request.param == "in-search" else 0.0
    tbl = vecstore.connect(tmp_path, planner=PlannerSettings(
        scan_max_matches=0, postfilter_min_selectivity=floor)).open_table("t")
    tbl.create_index()
    return tbl, vectors


def _ids(tbl: vecstore.Table, q: np.ndarray, where: str = "colour = 'red'") -> list[str]:
    return [h["id"] for h in tbl.search(q).where(where).limit(10).to_list()]


def test_a_repeated_filter_is_cached_and_answers_the_same(table) -> None:
    tbl, vectors = table
    queries = vectors[:20] + 0.1
    first = str(tbl.search(queries[0]).where("colour = 'red'").limit(10).explain())
    assert "filter (cached)" not in first and "allow bitmap (cached)" not in first
    fresh = [_ids(tbl, q) for q in queries]  # the first call built the cache
    again = str(tbl.search(queries[0]).where("colour = 'red'").limit(10).explain())
    assert "filter (cached)" in again and "allow bitmap (cached)" in again
    # a filter spelled differently is evaluated afresh, and must agree with the cached one
    assert [_ids(tbl, q, "colour IN ('red')") for q in queries] == fresh
    assert [_ids(tbl, q) for q in queries] == fresh


def test_every_write_is_seen_by_the_next_filtered_query(table) -> None:
    tbl, vectors = table
    q = vectors[1] + 0.01  # row 1 is blue
    assert "1" not in _ids(tbl, q)
    _ids(tbl, q)  # now cached
    tbl.add(_rows(vectors[1:2] + 0.001, ROWS, "red"))  # a red twin of row 1
    assert _ids(tbl, q)[0] == str(ROWS)
    tbl.update({"colour": "red"}, "id = '1'")
    assert _ids(tbl, q)[:2] == ["1", str(ROWS)] or _ids(tbl, q)[:2] == [str(ROWS), "1"]
    tbl.delete(ids=[str(ROWS)])
    assert str(ROWS) not in _ids(tbl, q) and _ids(tbl, q)[0] == "1"
    tbl.update({"colour": "blue"}, "id = '1'")
    assert "1" not in _ids(tbl, q)


def test_filters_of_other_selectivities_get_their_own_plan_on_the_same_version(tmp_path, rng) -> None:
    """The index search chosen for a request is kept per version (by k, oversample and the
    filter's match count): filters of other selectivities, taking turns, each get the plan and
    effort a table object with nothing cached chooses for them, and so do those of the next
    version."""
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vecstore.connect(tmp_path).create_table("t", dim=DIM).add(_rows(vectors, 0))
    settings = PlannerSettings(scan_max_matches=0)  # the index answers every filter
    tbl = vecstore.connect(tmp_path, planner=settings).open_table("t")
    tbl.create_index()
    filters = ["colour = 'blue'", "colour = 'red'", "id < '5'", "true"]  # 75%, 25%, ~56%, all
    queries = vectors[:6] + 0.05

    def plans(table: vecstore.Table) -> list[tuple[str, str, int, list[str]]]:
        out = []
        for q in queries:
            for where in filters:
                query = table.search(q).where(where)
                for k in (3, 10):
                    plan = query.limit(k).explain()
                    out.append((plan.strategy.value, plan.reason, plan.candidates,
                                [h["id"] for h in query.limit(k).to_list()]))
        return out

    for _ in range(2):
        got = plans(tbl)
        fresh = plans(vecstore.connect(tmp_path, planner=settings).open_table("t"))
        assert got == fresh
        assert {p[0] for p in got} == {"index-then-filter", "index-filtered"}
        tbl.delete(ids=["0", "1", "2"])  # a new version: its own view and plans


def test_a_large_tables_filter_result_is_kept_too(tmp_path, rng, monkeypatch) -> None:
    """The result cache grows with the table: a filter keeping a quarter of a table larger than
    the fixed budget is kept (at 10M rows a 10% filter's 1M rows were evaluated and turned into
    an allow bitmap on every query)."""
    from vecstore.query import filters

    monkeypatch.setattr(filters, "RESULT_CACHE_ROWS", ROWS // 8)
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM)
    tbl.add(_rows(vectors, 0))
    q = vectors[0]
    first = tbl.search(q).where("colour = 'red'").limit(10)
    assert "filter (cached)" not in str(first.explain())
    again = str(tbl.search(q).where("colour = 'red'").limit(10).explain())
    assert "filter (cached)" in again, again
