"""Tables whose rows keep several vectors: storage, writes, scoring and errors.

The oracle is NumPy over the rows as written (float64 cosines, max or weighted sum over a row's
vectors), independent of vecstore's scorers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import vecstore
from vecstore.errors import InvalidArgumentError
from vecstore.evaluation import tie_aware_recall

DIM = 16


def rows_of(rng, n, start=0, g=None):
    return [{"id": f"r{start + i}", "vector": rng.normal(size=DIM), "vector_b": rng.normal(size=DIM),
             "g": (start + i) % 7 if g is None else g} for i in range(n)]


def model_scores(rows, q, how="max"):
    """Exact scores of ``rows`` against ``q`` (float64), by row id."""
    def cos(v):
        v = np.asarray(v, np.float64)
        return float(v @ q / np.linalg.norm(v) / np.linalg.norm(q))

    out = {}
    for r in rows:
        a, b = cos(r["vector"]), cos(r["vector_b"])
        out[r["id"]] = max(a, b) if how == "max" else how[0] * a + how[1] * b
    return out


def stored(tbl):
    """{id: (vector, vector_b)} as the table holds them now."""
    t = tbl.to_arrow(with_vectors=True)
    return {i: (np.asarray(a, np.float32), np.asarray(b, np.float32)) for i, a, b in
            zip(t.column("id").to_pylist(), t.column("vector").to_pylist(),
                t.column("vector_b").to_pylist(), strict=True)}


@pytest.fixture
def tbl(tmp_path):
    return vecstore.connect(tmp_path).create_table("t", dim=DIM, vectors=["vector", "vector_b"])


def test_a_row_is_found_by_either_vector(tbl, rng):
    rows = rows_of(rng, 300)
    tbl.add(rows)
    for r in rows[:20]:
        for name in ("vector", "vector_b"):
            hits = tbl.search(r[name]).limit(1).hits()
            assert hits.ids == [r["id"]], name
            assert hits.scores[0] == pytest.approx(1.0, abs=1e-5)
        assert tbl.search(r["vector_b"]).using("vector_b").limit(1).hits().ids == [r["id"]]
        assert r["id"] not in tbl.search(r["vector_b"]).using("vector").limit(1).hits().ids


@pytest.mark.parametrize("how", ["max", (0.75, 0.25)])
def test_scores_are_the_combination_of_the_rows_vectors(tbl, rng, how):
    rows = rows_of(rng, 900)
    tbl.add(rows)
    for q in rng.normal(size=(10, DIM)):
        truth = model_scores(rows, q, how)
        best = sorted(truth.values(), reverse=True)
        query = tbl.search(q).limit(10)
        if how != "max":
            query = query.combine({"vector": how[0], "vector_b": how[1]})
        exact = query.exact().hits()
        np.testing.assert_allclose(exact.scores, best[:10], atol=1e-5)
        assert [truth[i] for i in exact.ids] == pytest.approx(list(exact.scores), abs=1e-5)
        approx = query.hits()  # the two-stage scan: each column's sign codes, then int8, float32
        assert len(set(approx.ids)) == len(approx)
        assert [truth[i] for i in approx.ids] == pytest.approx(list(approx.scores), abs=1e-5)
        assert tie_aware_recall([approx.scores], [best[9]], 10) >= 0.8
        inside = tbl.search(q).where("g = 3").limit(5).exact()
        if how != "max":
            inside = inside.combine({"vector": how[0], "vector_b": how[1]})
        want = sorted((s for i, s in truth.items() if int(i[1:]) % 7 == 3), reverse=True)[:5]
        np.testing.assert_allclose(inside.hits().scores, want, atol=1e-5)


def test_writes_keep_every_vector(tmp_path, rng):
    """Many small adds (segment merges), deletes, upserts and compaction keep both vectors of
    every live row, byte for byte, and search keeps finding rows by either."""
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM, vectors=["vector", "vector_b"])
    model = {}
    start = 0
    for n in (5, 3, 8, 2, 40, 1, 1, 300, 2):
        batch = rows_of(rng, n, start)
        start += n
        tbl.add(batch)
        model.update({r["id"]: r for r in batch})
    assert len(tbl._current().segments) < 9  # merges happened
    for victim in ("r0", "r17", "r100"):
        model.pop(victim)
    tbl.delete(ids=["r0", "r17"])
    tbl.delete("id = ?", "r100")
    new = rows_of(rng, 3, 0)  # r0 again, r1 and r2 replaced
    tbl.upsert(new)
    model.update({r["id"]: r for r in new})
    last = rows_of(rng, 2, start)
    tbl.add(last)  # a merge over segments with tombstones
    model.update({r["id"]: r for r in last})
    for step in ("before", "compacted"):
        have = stored(tbl)
        for rid, r in model.items():
            np.testing.assert_array_equal(have[rid][0], np.asarray(r["vector"], np.float32))
            np.testing.assert_array_equal(have[rid][1], np.asarray(r["vector_b"], np.float32))
        for rid in ("r0", "r1", "r50", "r300"):
            assert tbl.search(model[rid]["vector_b"]).limit(1).hits().ids == [rid], (step, rid)
        assert "r17" not in tbl.search(np.ones(DIM)).limit(len(tbl)).hits().ids
        tbl.compact()
    assert len(tbl._current().segments) == 1


def test_manifest_format_and_reopening(tmp_path, rng):
    db = vecstore.connect(tmp_path)
    multi = db.create_table("m", dim=DIM, vectors=("vector", "vector_b"),
                            combine={"vector": 2, "vector_b": 1})
    single = db.create_table("s", dim=DIM)

    def manifest(name):
        path = sorted((tmp_path / name / "_versions").glob("*.json"))[-1]
        return json.loads(path.read_text())

    # the lowest format that holds the manifest: older readers refuse a multi-vector table
    # instead of misreading it; files checksummed with XXH3 make it 3 (an empty table has none)
    assert manifest("m")["format_version"] == 2
    assert manifest("s")["format_version"] == 1 and "vectors" not in manifest("s")["config"]
    multi.add(rows_of(rng, 10))
    single.add([{"id": "a", "vector": rng.normal(size=DIM)}])
    assert manifest("m")["format_version"] == 3 and manifest("s")["format_version"] == 3
    assert "xxh3" in manifest("s")["segments"][0]["data"]
    seg = manifest("m")["segments"][0]
    assert set(seg["extra_quantizers"]) == {"vector_b"}
    again = vecstore.connect(tmp_path).open_table("m")
    assert again.config.vectors == ("vector", "vector_b")
    assert again.config.combine.mode == "sum" and again.config.combine.weights == (2.0, 1.0)
    assert [f.name for f in again.schema][-2:] == ["vector", "vector_b"]


def test_index_covers_every_vector(tbl, rng):
    rows = rows_of(rng, 400)
    tbl.add(rows)
    entry = tbl.create_index("flat")
    assert entry["count"] == 800 and entry["vectors"] == ["vector", "vector_b"]
    q = rows[5]["vector_b"]
    hits = tbl.search(q).limit(10).hits()
    assert hits.plan.strategy.uses_index and hits.ids[0] == "r5"
    truth = model_scores(rows, q)
    assert len(set(hits.ids)) == 10  # two labels of a row collapse to one hit
    np.testing.assert_allclose(hits.scores, sorted(truth.values(), reverse=True)[:10], atol=1e-5)


class _Embedder:
    model_id, dim, max_tokens = "fixed", DIM, 64

    def embed_documents(self, texts):
        return np.stack([np.random.default_rng(len(t)).normal(size=DIM) for t in texts]).astype(np.float32)

    embed_queries = embed_documents


def test_rows_embedded_from_text_fill_every_vector(tmp_path):
    tbl = vecstore.connect(tmp_path).create_table("t", embedder=_Embedder(),
                                                  vectors=["vector", "vector_late"])
    tbl.add([{"id": "a", "text": "a text with no surroundings"}])
    (v, late), = [(r["vector"], r["vector_late"]) for r in tbl.get(["a"], with_vectors=True)]
    assert v == late


def test_clear_errors(tbl, rng, tmp_path):
    with pytest.raises(InvalidArgumentError, match="'vector_b' is missing"):
        tbl.add([{"id": "a", "vector": rng.normal(size=DIM)}])
    with pytest.raises(InvalidArgumentError, match="'vector_b' has shape"):
        tbl.add([{"id": "a", "vector": rng.normal(size=DIM), "vector_b": [1.0, 2.0]}])
    with pytest.raises(InvalidArgumentError, match="field 'vector_b'"):
        tbl.add([{"id": "a", "vector": rng.normal(size=DIM), "vector_b": [np.nan] * DIM}])
    assert len(tbl) == 0
    tbl.add(rows_of(rng, 3))
    with pytest.raises(InvalidArgumentError, match="unknown vector column 'vector_c'.*'vector', 'vector_b'"):
        tbl.search(np.ones(DIM)).using("vector_c")
    with pytest.raises(InvalidArgumentError, match="positive finite"):
        tbl.search(np.ones(DIM)).combine({"vector": -1, "vector_b": 1})
    db = vecstore.connect(tmp_path / "other")
    with pytest.raises(InvalidArgumentError, match="first vector column must be 'vector'"):
        db.create_table("x", dim=DIM, vectors=["vector_b", "vector"])
    with pytest.raises(InvalidArgumentError, match="vector_<suffix>"):
        db.create_table("x", dim=DIM, vectors=["vector", "late"])
    with pytest.raises(InvalidArgumentError, match="repeat"):
        db.create_table("x", dim=DIM, vectors=["vector", "vector_b", "vector_b"])
    with pytest.raises(vecstore.SchemaError, match="only in letter case"):
        tbl.add([{"id": "z", "vector": np.ones(DIM), "vector_b": np.ones(DIM), "Vector_B": 1}])


def test_single_vector_tables_score_as_before(tmp_path, rng):
    """``.using("vector")`` on a plain table is the plain search; ``.using`` of anything else
    names the table's one column."""
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM)
    tbl.add([{"id": str(i), "vector": v} for i, v in enumerate(rng.normal(size=(200, DIM)))])
    q = rng.normal(size=DIM)
    plain, using = tbl.search(q).limit(5).hits(), tbl.search(q).using("vector").limit(5).hits()
    assert plain.ids == using.ids and np.array_equal(plain.scores, using.scores)
    with pytest.raises(InvalidArgumentError, match="the table's vector columns are: 'vector'"):
        tbl.search(q).using("vector_late")


# -- multi-vector rows through main's later paths: keyword/hybrid, calibrated indexes ----------
WORDS = ("apple", "pear", "plum", "fig", "kiwi", "lime", "date")


def texts_of(rows):
    """Each row's text names one fruit, by its group."""
    return [{**r, "text": f"a note about {WORDS[r['g']]}"} for r in rows]


def test_hybrid_and_keyword_search_score_every_vector(tbl, rng):
    """A hybrid query's vector ranker scores rows as the query's combination says (the table's
    by default, ``.using`` when given), and keyword search works beside several vectors."""
    rows = texts_of(rows_of(rng, 300))
    tbl.add(rows[:150])
    tbl.add(rows[150:])
    kw = tbl.search("plum", mode="keyword").limit(300).hits()
    assert set(kw.ids) == {r["id"] for r in rows if r["g"] == 2}
    target = rows[10]  # g = 3: "fig"
    for query_vector, using, found in ((target["vector_b"], None, True),
                                       (target["vector_b"], "vector_b", True),
                                       (target["vector_b"], "vector", False),
                                       (target["vector"], "vector", True)):
        q = tbl.search("fig", mode="hybrid", vector=query_vector).fusion("weighted", alpha=1.0)
        if using is not None:
            q = q.using(using)
        hits = q.limit(1).hits()
        assert (hits.ids == [target["id"]]) is found, (using, hits.ids)
    # rows the keyword ranker brings are scored by the same combination as the vector ranker's
    q = tbl.search("fig", mode="hybrid", vector=target["vector_b"]).fusion("weighted", alpha=1.0)
    fused = q.using("vector").limit(len(rows)).hits()
    truth = model_scores([{**r, "vector_b": r["vector"]} for r in rows], target["vector_b"])
    order = sorted(fused.ids, key=lambda i: -truth[i])
    assert fused.ids[:5] == order[:5]


@pytest.mark.parametrize("kind", ["hnsw", "hnsw-int8"])
def test_calibrated_indexes_over_every_vector(tbl, rng, kind):
    """The plain query (the executor's lean lane on single-vector tables) and the calibrated
    index kinds find a row by either of its vectors, one hit per row, combined scores."""
    rows = rows_of(rng, 600)
    tbl.add(rows)
    tbl.create_index(kind)
    for r in rows[:15]:
        for name in ("vector", "vector_b"):
            hits = tbl.search(r[name]).limit(10).hits()
            assert hits.ids[0] == r["id"] and hits.plan.strategy.uses_index, (kind, name)
            assert len(set(hits.ids)) == len(hits.ids)
            truth = model_scores(rows, np.asarray(r[name], np.float64))
            assert [truth[i] for i in hits.ids] == pytest.approx(list(hits.scores), abs=1e-5)


def test_keyword_columns_change_keeps_every_vector(tbl, rng):
    rows = texts_of(rows_of(rng, 40))
    rows = [{**r, "title": f"title {WORDS[(r['g'] + 1) % 7]}"} for r in rows]
    tbl.add(rows)
    before = stored(tbl)
    assert tbl.set_keyword_columns(["title"])
    assert {i: (a.tobytes(), b.tobytes()) for i, (a, b) in stored(tbl).items()} == \
        {i: (a.tobytes(), b.tobytes()) for i, (a, b) in before.items()}
    assert set(tbl.search("pear", mode="keyword").limit(40).hits().ids) == \
        {r["id"] for r in rows if r["g"] == 0}
    assert tbl.search(rows[7]["vector_b"]).limit(1).hits().ids == [rows[7]["id"]]


def test_exist_ok_compares_the_vector_columns(tmp_path):
    db = vecstore.connect(tmp_path)
    db.create_table("t", dim=DIM, vectors=["vector", "vector_b"])
    assert db.create_table("t", dim=DIM, vectors=["vector", "vector_b"], exist_ok=True).config.multi
    with pytest.raises(vecstore.AlreadyExistsError, match="vectors="):
        db.create_table("t", dim=DIM, exist_ok=True)


def test_group_by_refuses_every_vector_column(tbl, rng):
    tbl.add(texts_of(rows_of(rng, 5)))
    for name in ("vector", "vector_b"):
        with pytest.raises(InvalidArgumentError, match=f"attribute column, got '{name}'"):
            tbl.search("apple", mode="keyword").group_by(name)
