"""Small writes are merged into fewer, larger segments inside their own commit (a binary
counter: sizes fall by half from oldest to newest), so a table built by many adds reads like
one built by a single add."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

import vecstore
from vecstore.storage.writer import merge_count


def segments(tbl):
    return tbl._current().manifest.segments


@pytest.mark.parametrize("sizes, expected", [
    ([5], 1), ([5, 5], 2), ([10, 5], 1), ([10, 5, 5], 3), ([20, 10, 5, 5], 4),
    ([100, 1], 1), ([1, 100], 2), ([3, 2, 1], 1),
])
def test_merge_count_is_a_binary_counter(sizes, expected):
    assert merge_count(sizes) == expected


def test_many_small_adds_keep_log_segments_and_the_same_rows(tmp_db, rng):
    x = rng.standard_normal((1300, 32)).astype(np.float32)
    many = tmp_db.create_table("many", dim=32)
    for i in range(13):
        many.add([{"id": str(j), "vector": x[j], "n": j, "s": f"v{j % 7}"}
                  for j in range(i * 100, i * 100 + 100)])
        assert len(segments(many)) <= math.floor(math.log2(i + 1)) + 1
    one = tmp_db.create_table("one", dim=32)
    one.add([{"id": str(j), "vector": x[j], "n": j, "s": f"v{j % 7}"} for j in range(1300)])
    a = many.to_arrow(with_vectors=True).sort_by("n")
    b = one.to_arrow(with_vectors=True).sort_by("n")
    assert a.equals(b)
    assert [e.rows for e in segments(many)] == [800, 400, 100]
    for q in x[:20]:
        assert many.search(q).limit(5).hits().ids == one.search(q).limit(5).hits().ids


def test_merges_follow_the_schema_as_it_grows(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=8)
    tbl.add([{"id": "a", "vector": rng.standard_normal(8), "tags": [], "note": None}])
    tbl.add([{"id": "b", "vector": rng.standard_normal(8), "tags": ["x"], "note": "hi", "year": 2020}])
    assert len(segments(tbl)) == 1  # merged
    rows = {r["id"]: r for r in tbl.to_arrow().to_pylist()}
    assert rows["a"] == {"id": "a", "tags": [], "note": None, "year": None}
    assert rows["b"] == {"id": "b", "tags": ["x"], "note": "hi", "year": 2020}
    assert tbl.schema.field("tags").type == pa.list_(pa.string())
    assert tbl.count("list_contains(tags, 'x')") == 1


def test_a_merge_drops_deleted_rows_when_no_index_needs_them(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=8)
    tbl.add([{"id": str(i), "vector": rng.standard_normal(8)} for i in range(10)])
    tbl.delete(ids=["1", "2"])
    tbl.upsert([{"id": "3", "vector": rng.standard_normal(8)}] + [
        {"id": f"n{i}", "vector": rng.standard_normal(8)} for i in range(9)])
    (seg,) = segments(tbl)
    assert seg.rows == 17 and seg.deleted == 0
    assert sorted(tbl.to_arrow().column("id").to_pylist()) == sorted(
        ["0", *map(str, range(3, 10)), *(f"n{i}" for i in range(9))])


def test_rows_an_index_covers_keep_their_labels_through_merges(tmp_db, rng):
    x = rng.standard_normal((800, 32)).astype(np.float32)
    tbl = tmp_db.create_table("t", dim=32)
    tbl.add([{"id": str(j), "vector": x[j]} for j in range(400)])
    tbl.add([{"id": str(j), "vector": x[j]} for j in range(400, 600)])
    tbl.create_index("flat")
    tbl.delete(ids=["450"])
    tbl.add([{"id": str(j), "vector": x[j]} for j in range(600, 800)])  # merges everything
    (seg,) = segments(tbl)
    assert seg.rows == 800 and seg.deleted == 1 and len(seg.merged_from) == 2
    for j in (10, 420, 599, 700):
        hits = tbl.search(x[j]).limit(1).hits()
        assert hits.ids == [str(j)] and hits.plan.strategy is vecstore.Strategy.INDEX
        fresh = next((s for s in hits.plan.stages if s.name.startswith("fresh")), None)
        assert fresh is not None and fresh.rows_in == 200  # only rows added after the build
    assert "450" not in tbl.search(x[450]).limit(5).hits().ids
    assert tbl.optimize() and segments(tbl)[0].deleted == 0 and len(tbl) == 799
