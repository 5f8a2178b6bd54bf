"""Keyword search: BM25 over the table's live rows, kept up to date by every write.

Each test compares ``tbl.search(text, mode="keyword")`` with BM25 rebuilt from scratch over the
version's live rows (tests/bm25_oracle.py): after adds that merge segments, upserts, deletes,
compactions and keyword-setting changes, with rare filters, on old versions, on segments
written without postings, and on a damaged postings file.
"""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest
from bm25_oracle import bm25_scores, ranking_problems

import vecstore
from vecstore.storage import postings as postings_mod
from vecstore.storage import writer as writer_mod

WORDS = ("apple banana cherry durian elder fig grape honeydew kiwi lemon mango nectarine olive "
         "papaya quince raspberry strawberry tangerine ugli vanilla watermelon running runner runs "
         "ran quickly quick the of and").split()
DIM = 8


def rows(rng: np.random.Generator, start: int, n: int, title: bool = False) -> list[dict]:
    out = []
    for i in range(start, start + n):
        words = rng.choice(WORDS, size=int(rng.integers(0, 14)))
        r = {"id": f"r{i}", "vector": rng.normal(size=DIM).tolist(), "text": " ".join(words) or None,
             "n": int(rng.integers(0, 100))}
        if title:
            r["title"] = " ".join(rng.choice(WORDS, size=int(rng.integers(0, 4)))) or None
        out.append(r)
    return out


def check(tbl: vecstore.Table, queries: list[str], k: int = 7, where: str | None = None,
          params: tuple = ()) -> None:
    live = tbl.to_arrow().to_pylist()
    cfg = tbl.keyword_config
    allowed = None
    if where is not None:
        allowed = {r["id"] for r in tbl.to_arrow().to_pylist() if r["id"] in
                   {h["id"] for h in tbl.search(np.ones(DIM)).where(where, *params).limit(100_000).exact()
                    .to_list()}}
    for q in queries:
        query = tbl.search(q, mode="keyword").limit(k).select("id")
        if where is not None:
            query = query.where(where, *params)
        hits = query.to_list()
        want = bm25_scores(live, cfg.columns, cfg.language, q)
        problems = ranking_problems(hits, want, k, allowed)
        assert not problems, f"query {q!r} at version {tbl.version}: {problems}"


QUERIES = ["apple", "running quick", "the", "kiwi kiwi mango", "zzz", "Runner RAN apples"]


@pytest.mark.parametrize("columns", [["text"], ["title", "text"]])
def test_keyword_search_equals_bm25_rebuilt_after_every_write(tmp_db, rng, columns):
    tbl = tmp_db.create_table("t", dim=DIM, keyword_columns=columns)
    title = "title" in columns
    next_id = 0
    for step in range(14):
        op = step % 7
        if op in (0, 1, 2):  # small adds: the writer merges the trailing segments
            batch = rows(rng, next_id, int(rng.integers(1, 30)), title)
            next_id += len(batch)
            tbl.add(batch)
        elif op == 3:
            ids = [f"r{i}" for i in rng.choice(next_id, size=min(next_id, 8), replace=False)]
            tbl.upsert([{**r, "id": i} for r, i in zip(rows(rng, 0, len(ids), title), ids, strict=True)])
        elif op == 4:
            tbl.delete(ids=[f"r{i}" for i in rng.choice(next_id, size=5, replace=False)])
        elif op == 5:
            tbl.delete("n < ?", int(rng.integers(0, 15)))
        else:
            tbl.compact()
        check(tbl, QUERIES)
    assert len(tbl._current().segments) > 1 or tbl._current().has_deletions is False


def test_statistics_count_the_whole_table_not_a_segment(tmp_db):
    """Two segments with very different term counts: a per-segment IDF would score the rare
    row of the small segment differently (and lower); the whole-table IDF is the rebuild's."""
    tbl = tmp_db.create_table("t", dim=DIM)
    big = [{"id": f"b{i}", "vector": np.ones(DIM), "text": "kiwi apple" if i < 60 else "apple"}
           for i in range(200)]
    tbl.add(big)
    tbl.add([{"id": "s0", "vector": np.ones(DIM), "text": "kiwi"},
             {"id": "s1", "vector": np.ones(DIM), "text": "banana"}])
    assert len(tbl._current().segments) == 2  # a 2-row write does not merge into 200 rows
    check(tbl, ["kiwi", "apple kiwi", "banana"])
    hit = tbl.search("kiwi", mode="keyword").limit(1).to_list()[0]
    # what the small segment alone would say: df = 1 of N = 2 rows, average length 1
    n, df = 2, 1
    per_segment = math.log(1 + (n - df + 0.5) / (df + 0.5)) * 1 / (1 + 1.2)
    assert hit["id"] == "s0" and abs(hit["score"] - per_segment) > 0.1


def test_deleted_rows_are_never_returned_and_leave_the_statistics(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 300))
    holding = [h["id"] for h in tbl.search("mango", mode="keyword").limit(1000).to_list()]
    tbl.delete(ids=holding[: len(holding) // 2])
    got = [h["id"] for h in tbl.search("mango", mode="keyword").limit(1000).to_list()]
    assert set(got) == set(holding[len(holding) // 2:])
    check(tbl, ["mango", "mango apple"])
    tbl.upsert([{"id": holding[-1], "vector": np.ones(DIM), "text": "no fruit here"}])
    assert holding[-1] not in {h["id"] for h in tbl.search("mango", mode="keyword").limit(1000).to_list()}
    check(tbl, ["mango", "fruit"])


def test_a_rare_filter_applies_before_ranking(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    data = rows(rng, 0, 1500)
    for i, r in enumerate(data):  # three rare rows, each with a single weak match
        r["rare"] = i in (10, 700, 1400)
        if r["rare"]:
            r["text"] = "apple " + " ".join(["filler"] * 40)
    tbl.add(data)
    hits = tbl.search("apple", mode="keyword").where("rare").limit(10).to_list()
    assert sorted(h["id"] for h in hits) == ["r10", "r1400", "r700"]  # never short, never outside
    check(tbl, ["apple", "apple kiwi", "filler"], k=10, where="rare")
    check(tbl, ["apple", "running"], k=5, where="n >= ? AND n < ?", params=(40, 42))
    assert tbl.search("apple", mode="keyword").where("n > 1000").to_list() == []


def test_old_versions_answer_with_their_own_rows_and_statistics(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 100))
    v = tbl.version
    before = tbl.search("kiwi apple", mode="keyword").limit(5).to_list()
    tbl.add(rows(rng, 100, 100))
    tbl.delete("n < 50")
    old = tbl.checkout(v)
    assert old.search("kiwi apple", mode="keyword").limit(5).to_list() == before
    check(old, QUERIES)
    check(tbl, QUERIES)


def test_set_keyword_columns_indexes_existing_rows_in_one_commit(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 60, title=True))
    tbl.add(rows(rng, 60, 10, title=True))
    v = tbl.version
    assert tbl.set_keyword_columns(["title", "text"], language="none") is True
    assert tbl.version == v + 1
    assert tbl.keyword_config == vecstore.config.KeywordConfig(("title", "text"), "none")
    check(tbl, QUERIES)
    check(tbl.checkout(v), QUERIES)  # the old version keeps its settings and postings
    assert tbl.checkout(v).keyword_config.columns == ("text",)
    assert tbl.set_keyword_columns(["title", "text"], language="none") is False
    reopened = vecstore.connect(tmp_db.path).open_table("t")
    assert reopened.keyword_config.language == "none"
    tbl.add(rows(rng, 70, 5, title=True))  # new writes index the new columns
    check(tbl, QUERIES)
    with pytest.raises(vecstore.ReadOnlyError):
        tbl.checkout(v).set_keyword_columns(["text"])


def test_keyword_settings_are_checked(tmp_db):
    with pytest.raises(vecstore.InvalidArgumentError, match="unknown keyword language 'klingon'.*'english'"):
        tmp_db.create_table("a", dim=DIM, language="klingon")
    with pytest.raises(vecstore.InvalidArgumentError, match="non-empty list"):
        tmp_db.create_table("b", dim=DIM, keyword_columns=[])
    with pytest.raises(vecstore.InvalidArgumentError, match="not 'id'"):
        tmp_db.create_table("c", dim=DIM, keyword_columns=["id"])
    with pytest.raises(vecstore.SchemaError, match="keyword column 'n' holds int64"):
        tmp_db.create_table("d", dim=DIM, keyword_columns=["n"], schema=pa.schema([("n", pa.int64())]))
    tbl = tmp_db.create_table("e", dim=DIM, keyword_columns="body", language="German")
    assert tbl.keyword_config.columns == ("body",) and tbl.keyword_config.language == "german"
    tbl.add([{"id": "a", "vector": np.ones(DIM), "body": "Die Häuser", "n": 1}])
    assert [h["id"] for h in tbl.search("Haus", mode="keyword").to_list()] == ["a"]
    with pytest.raises(vecstore.SchemaError, match="keyword column 'n'"):
        tbl.set_keyword_columns(["n"])


def test_segments_without_postings_are_indexed_from_their_text(tmp_db, rng, monkeypatch):
    """Segments written before keyword search (no postings file) are analyzed on first use."""
    tbl = tmp_db.create_table("t", dim=DIM)
    monkeypatch.setattr(writer_mod, "keyword_postings", lambda *a: None)
    tbl.add(rows(rng, 0, 80))
    tbl.add(rows(rng, 80, 7))
    assert all(e.postings is None for e in tbl._current().manifest.segments)
    check(tbl, QUERIES)
    monkeypatch.undo()
    tbl.add(rows(rng, 87, 3))  # a mix of old and new segments
    assert any(e.postings is not None for e in tbl._current().manifest.segments)
    check(tbl, QUERIES)


def test_a_damaged_postings_file_is_detected(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 50))
    ref = tbl._current().manifest.segments[0].postings
    path = tbl.path / ref.path
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(vecstore.CorruptStoreError, match=ref.path):
        tbl.search("apple", mode="keyword").to_list()
    assert len(tbl.search(np.ones(DIM)).limit(3).to_list()) == 3  # vector search is unaffected


def test_postings_of_other_settings_are_refused(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 10))
    snap = tbl._current()
    entry = snap.manifest.segments[0]
    with pytest.raises(vecstore.CorruptStoreError, match="indexes"):
        postings_mod.segment_postings(snap.table_dir, entry.postings, entry.data.path,
                                      snap.segments[0].table,
                                      vecstore.config.KeywordConfig(("text",), "none"))


def test_the_query_text_is_never_sql(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 40))
    for q in ("'; DROP TABLE t; --", "apple' OR 1=1 --", "read_csv('/etc/passwd')", "\x00 kiwi"):
        check(tbl, [q])
    assert len(tbl) == 40
    with pytest.raises(vecstore.InvalidArgumentError, match="empty"):
        tbl.search("  ", mode="keyword")


def test_keyword_mode_needs_no_embedder_and_other_modes_say_so(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 30))
    q = tbl.search("kiwi", mode="keyword")
    assert q.explain().mode == "keyword" and q.explain().strategy is vecstore.Strategy.KEYWORD
    for mode in (None, "vector", "hybrid"):
        with pytest.raises(vecstore.InvalidArgumentError, match="no embedder.*mode=\"keyword\".*vector="):
            tbl.search("kiwi", mode=mode)
    assert tbl.search("kiwi", mode="hybrid", vector=np.ones(DIM)).explain().mode == "hybrid"
    with pytest.raises(vecstore.InvalidArgumentError, match="unknown search mode 'fuzzy'"):
        tbl.search("kiwi", mode="fuzzy")
    with pytest.raises(vecstore.InvalidArgumentError, match="takes a text query"):
        tbl.search(np.ones(DIM), mode="keyword")
    # a table of plain vectors, no text column: keyword search finds nothing, and says why
    plain = tmp_db.create_table("plain", dim=DIM)
    plain.add([{"id": "a", "vector": np.ones(DIM)}])
    assert plain.search("kiwi", mode="keyword").to_list() == []


def test_explain_shows_the_terms_and_their_statistics(tmp_db, rng):
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add(rows(rng, 0, 100))
    plan = tbl.search("the Running apples", mode="keyword").where("n < 50").limit(3).explain()
    text = str(plan)
    assert "mode: keyword" in text and "strategy: keyword" in text and "filter: n < 50" in text
    df_run = sum(1 for r in tbl.to_arrow().to_pylist() if r["text"] and
                 any(w in ("running", "runner", "runs", "ran") and w != "runner" and w != "ran"
                     for w in r["text"].split()))
    assert f"run(df={df_run}" in text and "appl(df=" in text and "the(" not in text
    assert plan.rankers[0].name == "keyword (bm25)" and plan.matches == tbl.count("n < 50")


def test_merged_postings_equal_postings_built_from_the_text(tmp_db, rng):
    """Merges and compactions reuse their segments' postings instead of analyzing the text
    again: what they write must equal what analyzing the merged rows writes."""
    from vecstore.storage.postings import build_postings

    tbl = tmp_db.create_table("t", dim=DIM, keyword_columns=["title", "text"])
    for i in range(12):
        tbl.add(rows(rng, i * 30, int(rng.integers(1, 25)), title=i % 3 != 0))
        if i % 4 == 3:
            tbl.delete("n < ?", int(rng.integers(0, 30)))
    for step in range(2):
        snap = tbl._current()
        assert any(e.postings is not None for e in snap.manifest.segments)
        for s in range(len(snap.segments)):
            got = snap.postings(s)
            want = build_postings(snap.segments[s].table, snap.manifest.config.keyword)
            assert got.terms.to_pylist() == want.terms.to_pylist(), (step, s)
            for name in ("offsets", "rows", "tf", "lengths"):
                np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        tbl.compact()
    check(tbl, QUERIES)


def test_tables_without_attributes_merge_and_compact(tmp_db, rng):
    """Regression: a batch of ids and vectors alone has an attribute table of no columns (and
    so of no rows, to Arrow): the merged postings must still count the batch's rows."""
    tbl = tmp_db.create_table("t", dim=DIM)
    tbl.add([{"id": str(i), "vector": rng.standard_normal(DIM)} for i in range(10)])
    tbl.delete(ids=["1", "2"])
    tbl.upsert([{"id": "3", "vector": rng.standard_normal(DIM)}] +
               [{"id": f"n{i}", "vector": rng.standard_normal(DIM)} for i in range(9)])
    tbl.add([{"id": "t", "vector": rng.standard_normal(DIM), "text": "kiwi"}])
    tbl.compact()
    assert len(tbl) == 18 and [h["id"] for h in tbl.search("kiwi", mode="keyword").to_list()] == ["t"]
    check(tbl, ["kiwi"])
