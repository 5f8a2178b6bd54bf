"""The core API end to end: tables, rows, filters, search, versions, bad input. Tests taking
``any_db`` run on an embedded store and again through ``vecstore serve`` (the remote client)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest
from helpers import assert_same_hits

import vecstore
from vecstore import (
    AlreadyExistsError,
    DuplicateIdError,
    FilterError,
    InvalidArgumentError,
    NotFoundError,
    ReadOnlyError,
    SchemaError,
    VecstoreError,
)


def rows_for(rng, n, dim=8, start=0):
    langs = ["en", "de", "fr"]
    out = []
    for i in range(start, start + n):
        out.append({
            "id": f"r{i}",
            "vector": rng.normal(size=dim).astype(np.float32),
            "year": 1990 + i % 35,
            "price": float(i) / 3.0,
            "ok": i % 2 == 0,
            "lang": langs[i % 3],
            "when": dt.datetime(2020, 1, 1) + dt.timedelta(days=i),
            "tags": ["a", "b"] if i % 5 == 0 else ["c"],
        })
    return out


def numpy_topk(vectors, q, k, metric="cosine"):
    if metric == "cosine":
        s = (vectors @ q) / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(q))
    elif metric == "dot":
        s = vectors @ q
    else:
        s = -((vectors - q) ** 2).sum(axis=1)
    order = np.argsort(-s, kind="stable")[:k]
    return order, s[order]


def test_create_add_search_reopen(tmp_db, rng, tmp_path):
    tbl = tmp_db.create_table("papers", dim=8)
    rows = rows_for(rng, 300)
    ids = tbl.add(rows)
    assert ids == [r["id"] for r in rows]
    assert len(tbl) == 300
    assert tmp_db.table_names() == ["papers"]
    q = rng.normal(size=8)
    hits = tbl.search(q).limit(5).exact().to_list()
    vectors = np.stack([r["vector"] for r in rows])
    order, scores = numpy_topk(vectors, q, 5)
    assert_same_hits(hits, ([f"r{i}" for i in order], scores))
    assert set(hits[0]) == {"id", "score", "year", "price", "ok", "lang", "when", "tags"}

    # a new connection sees exactly what was committed
    db2 = vecstore.connect(tmp_path / "store")
    tbl2 = db2.open_table("papers")
    assert len(tbl2) == 300
    assert tbl2.search(q).limit(5).exact().to_list() == hits
    assert tbl2.schema.field("when").type == pa.timestamp("us")
    assert tbl2.schema.field("tags").type == pa.list_(pa.string())


@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_metrics_match_numpy(any_db, rng, metric):
    tbl = any_db.create_table("t", dim=16, metric=metric)
    vectors = rng.normal(size=(500, 16)).astype(np.float32)
    tbl.add([{"id": str(i), "vector": v} for i, v in enumerate(vectors)])
    for _ in range(5):
        q = rng.normal(size=16).astype(np.float32)
        order, scores = numpy_topk(vectors, q, 10, metric)
        hits = tbl.search(q).limit(10).exact().hits()
        assert_same_hits(hits, ([str(i) for i in order], scores), rtol=1e-4, atol=1e-4)
        # the two-stage path with generous oversampling finds the same rows here
        approx = tbl.search(q).limit(10).rescore(oversample=40).hits()
        assert_same_hits(approx, hits)


def test_filters_on_every_type(any_db, rng):
    tbl = any_db.create_table("t", dim=8)
    rows = rows_for(rng, 200)
    tbl.add(rows)
    cases = {
        "year >= 2020": lambda r: r["year"] >= 2020,
        "price < 10.5": lambda r: r["price"] < 10.5,
        "ok": lambda r: r["ok"],
        "NOT ok AND lang = 'de'": lambda r: not r["ok"] and r["lang"] == "de",
        "lang IN ('en', 'fr')": lambda r: r["lang"] in ("en", "fr"),
        "\"when\" < TIMESTAMP '2020-02-01'": lambda r: r["when"] < dt.datetime(2020, 2, 1),
        "list_contains(tags, 'a')": lambda r: "a" in r["tags"],
        "lang LIKE 'e%' OR year BETWEEN 1990 AND 1992": lambda r: r["lang"].startswith("e")
        or 1990 <= r["year"] <= 1992,
        "id = 'r7'": lambda r: r["id"] == "r7",
    }
    for sql, pred in cases.items():
        want = {r["id"] for r in rows if pred(r)}
        assert tbl.count(sql) == len(want), sql
        got = tbl.search(rng.normal(size=8)).where(sql).limit(1000).to_list()
        assert {h["id"] for h in got} == want, sql


def test_bound_parameters_are_not_sql(any_db, rng):
    tbl = any_db.create_table("t", dim=8)
    tbl.add(rows_for(rng, 50))
    assert tbl.count("lang = ? AND year >= ?", "en", 2000) == sum(
        1 for r in rows_for(np.random.default_rng(0), 50) if r["lang"] == "en" and r["year"] >= 2000)
    assert tbl.count("lang = ?", "en' OR 1=1 --") == 0
    q = rng.normal(size=8)
    got = tbl.search(q).where("year >= ? AND lang = ?", 2020, "en").limit(100).to_list()
    want = [h for h in tbl.search(q).limit(100).exact().to_list() if h["year"] >= 2020 and h["lang"] == "en"]
    assert got
    # the filtered search scores the matching rows by position (a row-gather kernel), the exact
    # scan all rows at once (BLAS): the same cosines up to the last bits
    assert_same_hits(got, want)


@pytest.mark.parametrize("bad", [
    "yeer > 3",
    "year >",
    "1=1; DROP TABLE x",
    "read_csv('/etc/passwd') IS NOT NULL",
    "(SELECT 1) = 1",
    "year IN (SELECT 1)",
    "getenv('HOME') = ''",
    "year > 1 -- comment",
    "lang = 'unbalanced",
    "ATTACH 'x.db'",
    "COPY x TO '/tmp/x'",
    "year > 1) UNION SELECT 1 FROM (SELECT 1",
    "t.year > 1",
    "",
])
def test_hostile_and_malformed_filters_are_refused(any_db, rng, bad):
    tbl = any_db.create_table("t", dim=8)
    tbl.add(rows_for(rng, 10))
    with pytest.raises(FilterError) as err:
        tbl.count(bad)
    assert isinstance(err.value, ValueError) and isinstance(err.value, VecstoreError)
    if bad:
        assert repr(bad)[1:-1][:10] in str(err.value) or "comment" in bad
    with pytest.raises(FilterError):
        tbl.search(rng.normal(size=8)).where(bad).to_list()  # remote: checked when it runs


def test_unknown_column_message_lists_columns(any_db, rng):
    tbl = any_db.create_table("t", dim=8)
    tbl.add(rows_for(rng, 3))
    with pytest.raises(FilterError, match="unknown column 'yeer'.*year"):
        tbl.count("yeer > 3")


def test_bad_rows_are_rejected_and_nothing_is_committed(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 2, 3, 4], "year": 2020, "lang": "en"}])
    version = tbl.version
    files = sorted(p.name for p in (tbl.path / "data").iterdir())
    good = {"id": "b", "vector": [1, 2, 3, 4], "year": 2021}
    bad_batches = [
        ([good, {"id": "c", "vector": [1, 2, 3]}], InvalidArgumentError, "row 1.*'c'.*vector.*shape"),
        ([good, {"id": "c", "vector": [1, 2, float("nan"), 4]}], InvalidArgumentError, "row 1.*NaN"),
        ([good, {"id": "c", "vector": [1, 2, math.inf, 4]}], InvalidArgumentError, "row 1.*NaN or inf"),
        ([good, {"id": "c", "vector": [0, 0, 0, 0]}], InvalidArgumentError, "zeros"),
        ([good, {"id": "c", "vector": [1, 2, 3, 4], "year": "soon"}], SchemaError, "row 1.*'year'"),
        ([good, {"id": "c"}], InvalidArgumentError, "row 1.*vector.*missing"),
        ([good, {"id": "a", "vector": [1, 2, 3, 4]}], DuplicateIdError, "'a'.*upsert"),
        ([good, {"id": "b", "vector": [1, 2, 3, 4]}], DuplicateIdError, "twice"),
        ([good, {"id": "c", "vector": [1, 2, 3, 4], "_x": 1}], SchemaError, "reserved"),
        ([good, {"id": "", "vector": [1, 2, 3, 4]}], InvalidArgumentError, "empty"),
        ([good, {"id": "c", "vector": [1, 2, 3, 4], "lang": 5}], SchemaError, "'lang'"),
        ([good, {"id": "c", "vector": "abcd"}], InvalidArgumentError, "vector"),
        ("not rows", InvalidArgumentError, "list of dicts"),
    ]
    for batch, exc, pattern in bad_batches:
        with pytest.raises(exc, match=pattern):
            tbl.add(batch)
        assert tbl.version == version
        assert len(tbl) == 1
    assert sorted(p.name for p in (tbl.path / "data").iterdir()) == files


def test_types_widen_safely_and_new_columns_appear(tmp_db):
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": "a", "vector": [1, 0], "x": 1.5}])
    tbl.add([{"id": "b", "vector": [0, 1], "x": 2, "note": "new"}])  # int fits a float column
    assert tbl.schema.field("x").type == pa.float64()
    got = {r["id"]: r for r in tbl.to_arrow().to_pylist()}
    assert got["a"]["note"] is None and got["b"]["note"] == "new" and got["b"]["x"] == 2.0
    assert tbl.count("note IS NULL") == 1
    tbl2 = tmp_db.create_table("t2", dim=2)
    tbl2.add([{"id": "a", "vector": [1, 0], "n": 1}])
    with pytest.raises(SchemaError, match="n"):
        tbl2.add([{"id": "b", "vector": [1, 0], "n": 1.5}])  # would lose the fraction


def test_inputs_as_arrow_and_pandas(any_db, rng):
    pd = pytest.importorskip("pandas")
    tbl = any_db.create_table("t", dim=3)
    vecs = rng.normal(size=(4, 3)).astype(np.float32)
    at = pa.table({"id": ["a", "b"], "vector": pa.array(vecs[:2].tolist(), pa.list_(pa.float32(), 3)),
                   "n": [1, 2]})
    tbl.add(at)
    df = pd.DataFrame({"id": ["c", "d"], "vector": list(vecs[2:]), "n": [3, 4]})
    tbl.add(df)
    assert len(tbl) == 4 and tbl.count("n > 2") == 2
    assert tbl.get(["d", "a"])[0]["id"] == "d"


def test_ids_assigned_when_missing(tmp_db):
    tbl = tmp_db.create_table("t", dim=2)
    ids = tbl.add([{"vector": [1, 0]}, {"vector": [0, 1]}])
    assert len(ids) == 2 and len(set(ids)) == 2 and all(isinstance(i, str) and i for i in ids)
    assert {r["id"] for r in tbl.to_arrow().to_pylist()} == set(ids)


def test_upsert_delete_then_search(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=8)
    rows = rows_for(rng, 400)
    tbl.add(rows[:200])
    tbl.add(rows[200:])
    q = rng.normal(size=8).astype(np.float32)
    # replace one row so it becomes the best match, delete a band of years
    tbl.upsert([{"id": "r3", "vector": q, "year": 3000, "lang": "xx"}])
    assert len(tbl) == 400
    assert tbl.search(q).limit(1).to_list()[0]["id"] == "r3"
    assert tbl.search(q).limit(1).to_list()[0]["year"] == 3000
    n_old = tbl.count("year < 2000")
    assert tbl.delete("year < ?", 2000) == n_old
    assert tbl.delete(ids=["r3", "nope"]) == 1
    assert len(tbl) == 400 - n_old - 1
    live = [r for r in rows if r["year"] >= 2000 and r["id"] != "r3"]
    vectors = np.stack([r["vector"] for r in live])
    order, scores = numpy_topk(vectors, q, 10)
    want = ([live[i]["id"] for i in order], scores)
    assert_same_hits(tbl.search(q).limit(10).exact().hits(), want)
    assert_same_hits(tbl.search(q).limit(10).rescore(oversample=64).hits(), want)
    assert tbl.count("id = 'r3'") == 0
    assert tbl.compact()
    assert len(tbl) == len(live)
    assert_same_hits(tbl.search(q).limit(10).exact().hits(), want)
    assert not tbl.compact()  # nothing left to do


def test_k_larger_than_matches_and_empty_table(any_db, rng):
    tbl = any_db.create_table("t", dim=8)
    q = rng.normal(size=8)
    assert tbl.search(q).limit(10).to_list() == []
    assert tbl.search(q).limit(10).to_arrow().column_names[:2] == ["id", "score"]
    assert len(tbl) == 0 and tbl.count() == 0
    tbl.add(rows_for(rng, 30))
    assert len(tbl.search(q).limit(100).to_list()) == 30
    assert len(tbl.search(q).where("lang = 'en'").limit(100).to_list()) == 10
    assert tbl.search(q).where("lang = 'none'").limit(5).to_list() == []
    assert tbl.search(q).limit(0).to_list() == []
    tbl.delete("true")
    assert tbl.search(q).limit(3).to_list() == [] and len(tbl) == 0


def test_versions_and_checkout(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=8)
    tbl.add(rows_for(rng, 10))
    v = tbl.version
    tbl.delete(ids=["r0"])
    old = tbl.checkout(v)
    assert len(old) == 10 and len(tbl) == 9
    with pytest.raises(ReadOnlyError):
        old.add(rows_for(rng, 1, start=100))
    assert tbl.versions()[-1] == tbl.version


def test_two_handles_see_each_others_commits(tmp_path, rng):
    a = vecstore.connect(tmp_path / "s").create_table("t", dim=8)
    b = vecstore.connect(tmp_path / "s").open_table("t")
    a.add(rows_for(rng, 5))
    assert len(b) == 5
    b.add(rows_for(rng, 5, start=5))
    assert len(a) == 10


def test_table_names_and_errors(any_db):
    any_db.create_table("a", dim=2)
    with pytest.raises(AlreadyExistsError):
        any_db.create_table("a", dim=2)
    assert any_db.create_table("a", dim=2, exist_ok=True).dim == 2
    with pytest.raises(NotFoundError) as err:
        any_db.open_table("missing")
    assert isinstance(err.value, KeyError)
    for bad in ["../x", "/etc", "a/b", "..", ".", "", "a\x00b", ".hidden", "a..b", "x" * 300, 5]:
        with pytest.raises(InvalidArgumentError):
            any_db.create_table(bad, dim=2)
    any_db.drop_table("a")
    assert any_db.table_names() == []
    with pytest.raises(NotFoundError):
        any_db.drop_table("a")
    any_db.drop_table("a", missing_ok=True)
    if isinstance(any_db, vecstore.Database):
        assert not any(p.name != "a" for p in any_db.path.iterdir() if not p.name.startswith("."))


def test_bad_arguments(any_db, rng):
    with pytest.raises(InvalidArgumentError, match="metric"):
        any_db.create_table("t", dim=2, metric="hamming")
    with pytest.raises(InvalidArgumentError, match="dim"):
        any_db.create_table("t", dim=0)
    tbl = any_db.create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 2, 3, 4]}])
    with pytest.raises(InvalidArgumentError, match="shape"):
        tbl.search([1, 2, 3])
    with pytest.raises(InvalidArgumentError, match="NaN"):
        tbl.search([1, 2, 3, float("nan")])
    with pytest.raises(InvalidArgumentError, match="embedder"):
        tbl.search("a text").to_list()
    with pytest.raises(InvalidArgumentError):
        tbl.search([1, 2, 3, 4]).limit(-1)
    with pytest.raises(InvalidArgumentError):
        tbl.search([1, 2, 3, 4]).rescore(oversample=0)
    with pytest.raises(InvalidArgumentError, match="unknown column"):
        tbl.search([1, 2, 3, 4]).select("nope").to_list()
    with pytest.raises(InvalidArgumentError):
        tbl.delete()


def test_select_and_explain(any_db, rng):
    tbl = any_db.create_table("t", dim=64)
    tbl.add(rows_for(rng, 500, dim=64))
    q = rng.normal(size=64)
    hits = tbl.search(q).select("year", "vector").limit(3).to_list()
    assert set(hits[0]) == {"id", "score", "year", "vector"} and len(hits[0]["vector"]) == 64
    # a table this small scans every match exactly, unless the query sets the scan's width
    assert tbl.search(q).where("year > 2000").limit(3).explain().strategy == "exact-scan"
    plan = tbl.search(q).where("year > 2000").limit(3).rescore(16).explain()
    assert plan.strategy == "two-stage-scan"
    assert plan.matches == tbl.count("year > 2000")
    text = str(plan)
    assert "binary" in text and "int8" in text and "float32" in text and "selectivity" in text
    assert tbl.search(q).limit(3).exact().explain().strategy == "exact-scan"


def test_low_dimensional_tables_start_from_int8(any_db, rng):
    tbl = any_db.create_table("t", dim=8)
    rows = rows_for(rng, 2000)
    tbl.add(rows)
    q = rng.normal(size=8)
    plan = tbl.search(q).limit(5).rescore(16).explain()  # (unset: small, so every row exactly)
    assert plan.strategy == "int8-scan"
    assert_same_hits(tbl.search(q).limit(5).rescore(16).hits(), tbl.search(q).limit(5).exact().hits())


def test_search_batch_equals_single_searches(any_db, rng):
    tbl = any_db.create_table("t", dim=64)
    tbl.add(rows_for(rng, 600, dim=64))
    queries = rng.normal(size=(12, 64)).astype(np.float32)
    for where in (None, "year >= 2000"):
        batch = tbl.search_batch(queries, threads=2).limit(7)
        single = [tbl.search(q).limit(7) for q in queries]
        if where:
            batch = batch.where(where)
            single = [s.where(where) for s in single]
        got = batch.hits()
        assert [h.ids for h in got] == [s.hits().ids for s in single]
    table = tbl.search_batch(queries[:3]).limit(2).to_arrow()
    assert table.column("query").to_pylist() == [0, 0, 1, 1, 2, 2]
    assert tbl.search_batch(np.empty((0, 64))).to_list() == []
    with pytest.raises(InvalidArgumentError):
        tbl.search_batch(queries[:, :5])


def test_to_arrow_where_returns_the_matching_live_rows(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=4)
    tbl.add([{"id": f"r{i}", "vector": rng.normal(size=4), "n": i} for i in range(10)])
    tbl.delete(ids=["r2"])
    got = tbl.to_arrow(["id", "n"], where="n <= ? OR id = 'r9'", params=[3])
    assert got.column("id").to_pylist() == ["r0", "r1", "r3", "r9"]
    assert got.column_names == ["id", "n"]
    assert tbl.to_arrow(where="n > 100").num_rows == 0
    with pytest.raises(FilterError):
        tbl.to_arrow(where="nope = 1")
    with pytest.raises(InvalidArgumentError, match="without where"):
        tbl.to_arrow(params=[1])
