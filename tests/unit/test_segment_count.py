"""A table built by many adds, some rows deleted, answers like its compacted twin: the same ids in
the same order (scores within float32 rounding), filtered and not, with and without an index,
one query at a time and as a batch; and it gets there the way a one-segment table does (a batch's
first stage is one scan over every segment, a repeated filter's allow bitmap is reused).

Each query has ten planted neighbours, spread over the segments, far above every other row: any
search worth the name must return them, in exact-score order, whatever segments they sit in.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from vecstore._native import loader

import vecstore
from vecstore.config import PlannerSettings

DIM = 96
ROWS = 1200
QUERIES = 4
PLANTED = 10
FILTER = "bucket < 5"  # keeps the planted rows (bucket 0) and about half the others
DELETE = "bucket = 9 OR (bucket = 8 AND id < 'r6')"  # no planted row
# searches filtered inside the index (no scan of a small match set, no post-filter)
IN_INDEX = PlannerSettings(scan_max_matches=0, postfilter_min_selectivity=1.0)


def _data(rng: np.random.Generator) -> tuple[list[dict], np.ndarray]:
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vectors += (np.arange(ROWS) // 300)[:, None].astype(np.float32) * 0.5  # a calibration per add
    queries = rng.standard_normal((QUERIES, DIM)).astype(np.float32) * 3
    for qi, q in enumerate(queries):
        for j in range(PLANTED):
            noise = rng.standard_normal(DIM).astype(np.float32)
            vectors[qi + 113 * j] = q + noise / np.linalg.norm(noise) * (0.1 + 0.15 * j)
    planted = {qi + 113 * j for qi in range(QUERIES) for j in range(PLANTED)}
    # tags: a list column, read value by value from each hit's own segment
    rows = [{"id": f"r{i}", "vector": vectors[i], "bucket": 0 if i in planted else i % 10,
             "tags": [f"t{i % 3}", f"u{i % 7}"][: 1 + i % 2]} for i in range(ROWS)]
    return rows, queries


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, np.ndarray]:
    """Four tables in one store: "many" (four adds, rows deleted) and "one" (its live rows in one
    segment), each also with ``create_index()`` ("many_idx", "one_idx")."""
    loader.compile_all()  # the Numba kernels, not their twins
    rows, queries = _data(np.random.default_rng(2026))
    path = tmp_path_factory.mktemp("segments") / "store"
    db = vecstore.connect(path)
    for name in ("many", "many_idx"):
        tbl = db.create_table(name, dim=DIM)
        for start, stop in ((0, 600), (600, 900), (900, 1100), (1100, 1200)):  # shrinking: no merges
            tbl.add(rows[start:stop])
        tbl.delete(DELETE)
        assert len(tbl._current().segments) == 4 and tbl._current().has_deletions
    live = {h["id"] for h in db.open_table("many").search(queries[0]).limit(ROWS).exact().to_list()}
    assert PLANTED * QUERIES < len(live) < ROWS
    for name in ("one", "one_idx"):
        db.create_table(name, dim=DIM).add([r for r in rows if r["id"] in live])
    for name in ("many_idx", "one_idx"):
        db.open_table(name).create_index()
    return path, queries


def _same_answers(many: list[list[dict]], one: list[list[dict]]) -> None:
    assert len(many) == len(one) == QUERIES
    for got, want in zip(many, one, strict=True):
        assert [h["id"] for h in got] == [h["id"] for h in want]
        assert len(got) == PLANTED
        # the attributes too, read from the hits' segments
        assert [{c: h[c] for c in ("id", "bucket", "tags")} for h in got] == \
            [{c: h[c] for c in ("id", "bucket", "tags")} for h in want]
        assert all(h["tags"] == [f"t{int(h['id'][1:]) % 3}", f"u{int(h['id'][1:]) % 7}"][
            : 1 + int(h["id"][1:]) % 2] for h in got)
        np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in want],
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("where", [None, FILTER])
@pytest.mark.parametrize("index", ["none", "create_index()", "filtered inside the index"])
@pytest.mark.parametrize("batch", [False, True])
def test_many_segments_answer_like_their_compacted_twin(stores, where, index, batch) -> None:
    path, queries = stores
    db = vecstore.connect(path, planner=IN_INDEX if index == "filtered inside the index" else None)
    suffix = "" if index == "none" else "_idx"
    answers = []
    for name in (f"many{suffix}", f"one{suffix}"):
        tbl = db.open_table(name)
        if batch:
            query = tbl.search_batch(queries, threads=2).limit(PLANTED)
            answers.append((query.where(where) if where else query).to_list())
        else:
            answers.append([(tbl.search(q).limit(PLANTED).where(where) if where
                             else tbl.search(q).limit(PLANTED)).to_list() for q in queries])
    _same_answers(*answers)
    # and each is the exact answer
    exact = db.open_table("one")
    _same_answers(answers[0], [(exact.search(q).limit(PLANTED).exact().where(where) if where else
                                exact.search(q).limit(PLANTED).exact()).to_list() for q in queries])


@pytest.mark.parametrize("where", [None, FILTER])
def test_a_batch_scans_every_segment_in_one_pass(stores, where) -> None:
    """A batch's first stage on a table of several segments with deletions is one scan for all
    its queries (it used to fall back to one scan per query)."""
    path, queries = stores
    # in stages, as a table too large to scan exactly is
    tbl = vecstore.connect(path, planner=vecstore.PlannerSettings(exact_scan_rows=0)).open_table("many")
    query = tbl.search_batch(queries, threads=2).limit(PLANTED)
    for hits in (query.where(where) if where else query).hits():
        assert hits.plan.strategy.value == "two-stage-scan"
        assert hits.plan.stages[1 if where else 0].name == "binary (batch scan)"


def test_a_repeated_filter_on_a_table_with_deletions_reuses_its_allow_bitmap(stores) -> None:
    path, queries = stores
    tbl = vecstore.connect(path, planner=IN_INDEX).open_table("many_idx")
    plans = [str(tbl.search(q).limit(PLANTED).where(FILTER).explain()) for q in queries]
    assert "filtered" in plans[0]  # searched inside the index
    assert "allow bitmap (cached)" not in plans[0]
    for plan in plans[1:]:
        assert "allow bitmap (cached)" in plan


@pytest.mark.parametrize("where", [None, FILTER])
def test_few_dimensions_many_segments_answer_like_their_compacted_twin(tmp_path, where) -> None:
    """Below ``min_binary_dim`` the scan starts from the int8 codes (of every segment at once)."""
    rng = np.random.default_rng(7)
    dim = 32
    vectors = rng.standard_normal((ROWS, dim)).astype(np.float32)
    vectors += (np.arange(ROWS) // 300)[:, None].astype(np.float32) * 0.5
    q = rng.standard_normal(dim).astype(np.float32) * 3
    planted = [113 * j for j in range(PLANTED)]
    for j, row in enumerate(planted):
        noise = rng.standard_normal(dim).astype(np.float32)
        vectors[row] = q + noise / np.linalg.norm(noise) * (0.1 + 0.15 * j)
    rows = [{"id": f"r{i}", "vector": vectors[i], "bucket": 0 if i in planted else i % 10}
            for i in range(ROWS)]
    # scanned from the int8 codes, as a table too large to scan exactly is
    db = vecstore.connect(tmp_path / "store", planner=vecstore.PlannerSettings(exact_scan_rows=0))
    many = db.create_table("many", dim=dim)
    for start, stop in ((0, 600), (600, 900), (900, 1100), (1100, 1200)):
        many.add(rows[start:stop])
    many.delete(DELETE)
    live = {h["id"] for h in many.search(q).limit(ROWS).exact().to_list()}
    one = db.create_table("one", dim=dim)
    one.add([r for r in rows if r["id"] in live])
    answers = []
    for tbl in (many, one):
        query = tbl.search(q).limit(PLANTED)
        query = query.where(where) if where else query
        assert query.explain().strategy.value == "int8-scan"
        answers.append(query.to_list())
    assert [h["id"] for h in answers[0]] == [h["id"] for h in answers[1]] == [f"r{r}" for r in planted]
    np.testing.assert_allclose([h["score"] for h in answers[0]], [h["score"] for h in answers[1]],
                               rtol=1e-5, atol=1e-5)
