"""Table.update: the named attributes change, everything else (vectors included) stays bit for
bit, in one commit; bad values are refused before anything is written."""

from __future__ import annotations

import datetime

import numpy as np
import pyarrow as pa
import pytest
from bm25_oracle import bm25_scores, ranking_problems

import vecstore
from vecstore.errors import InvalidArgumentError, SchemaError


@pytest.fixture
def tbl(tmp_db, rng):
    t = tmp_db.create_table("t", dim=8)
    rows = [{"id": f"r{i}", "vector": rng.normal(size=8).astype(np.float32) * 10 ** rng.uniform(-3, 3),
             "year": 2000 + i % 5, "tag": None if i % 3 == 0 else f"t{i % 4}", "score_f": float(i) / 7,
             "when": datetime.datetime(2020, 1, 1, 12, 0, 0, 123456) + datetime.timedelta(days=i),
             "labels": [f"l{i % 2}", "x"]} for i in range(120)]
    for k in range(0, 120, 30):  # several segments
        t.add(rows[k:k + 30])
    t.delete(ids=["r5", "r77"])
    return t


def by_id(table: pa.Table) -> dict[str, dict]:
    return {r["id"]: r for r in table.to_pylist()}


def vectors_by_id(t) -> dict[str, bytes]:
    a = t.to_arrow(["id"], with_vectors=True)
    vec = np.asarray(a.column("vector").to_pylist(), dtype=np.float32)
    return {i: v.tobytes() for i, v in zip(a.column("id").to_pylist(), vec, strict=True)}


def test_update_changes_only_the_named_columns_bit_for_bit(tbl):
    before, vec_before, version = by_id(tbl.to_arrow()), vectors_by_id(tbl), tbl.version
    n = tbl.update({"tag": "new", "labels": ["z"]}, "year = ? OR id = ?", 2001, "r2")
    want = {i for i, r in before.items() if r["year"] == 2001} | {"r2"}
    assert n == len(want) == 25  # 24 rows of 2001, and r2 (2002)
    assert tbl.version == version + 1 and len(tbl) == len(before)
    after, vec_after = by_id(tbl.to_arrow()), vectors_by_id(tbl)
    assert vec_after == vec_before  # every vector, updated rows included, byte for byte
    for i, row in after.items():
        expect = dict(before[i])
        if i in want:
            expect.update(tag="new", labels=["z"])
        assert row == expect, i
    assert tbl.count("tag = 'new'") == n
    # the rows are found by search with their stored vectors, the new attributes visible
    q = np.frombuffer(vec_after["r2"], dtype=np.float32)
    hit = tbl.search(q).where("tag = ?", "new").limit(1).exact().to_list()[0]
    assert hit["id"] == "r2" and hit["score"] == pytest.approx(1.0, abs=1e-5)


def test_update_by_ids_and_no_match(tbl):
    version = tbl.version
    assert tbl.update({"year": 1999}, ids=["r1", "r5", "missing"]) == 1  # r5 is deleted
    assert tbl.get(["r1"])[0]["year"] == 1999
    assert tbl.update({"year": 1}, "year > 5000") == 0
    assert tbl.version == version + 1  # nothing to change: no new version
    assert tbl.update({"tag": None}, ids="r1") == 1 and tbl.get(["r1"])[0]["tag"] is None


def test_values_are_checked_like_rows(tbl):
    version, content = tbl.version, tbl.to_arrow()
    cases = [
        ({"year": "2021"}, SchemaError, "does not fit column 'year' of type int64"),
        ({"year": 1.5}, SchemaError, "does not fit"),
        ({"yaer": 2021}, SchemaError, "has no column 'yaer'"),
        ({"id": "x"}, InvalidArgumentError, "cannot change 'id'"),
        ({"vector": [0.0] * 8}, InvalidArgumentError, "cannot change 'vector'"),
        ({}, InvalidArgumentError, "non-empty dict"),
        ({"when": "yesterday"}, SchemaError, "does not fit"),
    ]
    for values, error, match in cases:
        with pytest.raises(error, match=match):
            tbl.update(values, ids=["r1"])
    with pytest.raises(InvalidArgumentError, match="needs where= or ids="):
        tbl.update({"year": 1})
    with pytest.raises(vecstore.FilterError):
        tbl.update({"year": 1}, "nope = 1")
    assert tbl.version == version and tbl.to_arrow().equals(content)
    # an integer into a float column is fine, as in a row
    assert tbl.update({"score_f": 3}, ids=["r1"]) == 1 and tbl.get(["r1"])[0]["score_f"] == 3.0


def test_text_of_an_embedded_table_is_not_updated(tmp_path, tiny_embedder_rows):
    db = vecstore.connect(tmp_path)
    t = db.create_table("e", embedder=tiny_embedder_rows)
    t.add([{"id": "a", "text": "the meeting", "n": 1}])
    with pytest.raises(InvalidArgumentError, match="cannot change 'text'"):
        t.update({"text": "other"}, ids=["a"])
    assert t.update({"n": 2}, ids=["a"]) == 1
    assert t.get(["a"])[0] == {"id": "a", "text": "the meeting", "n": 2}


@pytest.fixture
def tiny_embedder_rows():
    class Fixed:
        model_id, dim, max_tokens = "fixed", 4, 16

        def embed_documents(self, texts):
            return np.ones((len(texts), 4), np.float32)

        embed_queries = embed_documents

    return Fixed()


def test_update_with_an_index_keeps_search_exact(tbl, rng):
    tbl.create_index("hnsw", m=8, ef_construction=40, progress=False)
    tbl.update({"tag": "hot"}, "year = 2003")
    q = rng.normal(size=8).astype(np.float32)
    got = tbl.search(q).where("tag = 'hot'").limit(5).to_list()
    want = tbl.search(q).where("tag = 'hot'").limit(5).exact().to_list()
    assert [h["id"] for h in got] == [h["id"] for h in want] and len(got) == 5
    assert all(h["year"] == 2003 for h in got)
    assert len(tbl.search(q).limit(200).to_list()) == len(tbl)  # nothing duplicated or lost


def test_update_of_a_keyword_column_is_searched_with_its_new_terms(tmp_db, rng):
    """update() writes its segment through the writer's segment path, keyword postings
    included: keyword search afterwards equals BM25 rebuilt from the live rows."""
    words = "alpha beta gamma delta epsilon zeta".split()
    t = tmp_db.create_table("k", dim=4, keyword_columns=["text", "tag"])
    rows = [{"id": f"r{i}", "vector": rng.normal(size=4).astype(np.float32),
             "text": " ".join(rng.choice(words, size=5)), "tag": "old", "year": i % 4} for i in range(60)]
    for k in range(0, 60, 20):
        t.add(rows[k:k + 20])
    assert t.update({"text": "omega omega alpha", "tag": "fresh"}, "year = ?", 1) == 15
    live = t.to_arrow(["id", "text", "tag", "year"]).to_pylist()
    for q in ("omega", "fresh", "old alpha", "beta gamma"):
        got = t.search(q, mode="keyword").limit(10).to_list()
        want = bm25_scores(live, ["text", "tag"], "english", q)
        assert not ranking_problems(got, want, 10), (q, ranking_problems(got, want, 10))
    assert {h["id"] for h in t.search("omega", mode="keyword").limit(100).to_list()} == \
        {r["id"] for r in live if r["year"] == 1}
    assert t.search("old", mode="keyword").where("year = 1").limit(5).to_list() == []
