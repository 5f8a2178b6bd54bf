"""The lean unfiltered path: what a query returns does not depend on how the rows arrived (one
write or many, with or without an index), the attributes read for its hits are those of the
rows found, whatever their segment and type, and a query sees every write committed before it
started, by this process or another, also on a table that has not changed for a while (when
a reader answers from one ``stat`` of the versions directory)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import time

import numpy as np
import pytest

import vecstore

DIM = 32
ROWS = 600


def _at(i: int) -> dt.datetime | None:
    """A timestamp column with nulls (read through NumPy's datetime64)."""
    return None if i % 7 == 0 else dt.datetime(1987, 2, 1 + i % 28, i % 24, i % 60, i % 60, i)


def _lists(i: int) -> list[str | None] | None:
    """A list column with null lists, empty lists and null values (read by global row)."""
    return None if i % 11 == 0 else [] if i % 13 == 0 else [f"l{i}", None if i % 2 else "x"]


def _rows(rng: np.random.Generator, start: int, stop: int, extra: bool) -> list[dict]:
    vectors = rng.standard_normal((stop - start, DIM)).astype(np.float32)
    out = []
    for i, v in zip(range(start, stop), vectors, strict=True):
        row = {"id": f"r{i}", "vector": v, "n": i, "x": i / 7, "flag": i % 3 == 0,
               "name": None if i % 5 == 0 else f"name-{i}-é", "day": dt.date(2024, 1, 1 + i % 28),
               "tags": [f"t{i % 4}", "all"], "lists": _lists(i), "nums": [i, i + 1][:i % 3],
               "days": None if i % 4 == 0 else [dt.date(2020, 1, 1 + j) for j in range(i % 3)],
               "at": _at(i)}
        if extra:  # a column the first writes did not have: null in their segments
            row["late"] = f"late-{i}"
        out.append(row)
    return out


@pytest.fixture
def twins(tmp_db: vecstore.Database, rng: np.random.Generator) -> tuple[vecstore.Table, vecstore.Table]:
    rows = [*_rows(rng, 0, 300, False), *_rows(rng, 300, ROWS, True)]
    for r in rows[:300]:
        r["late"] = None
    many = tmp_db.create_table("many", dim=DIM)
    for start, stop in ((0, 300), (300, 450), (450, 550), (550, ROWS)):  # shrinking: no merges
        many.add([{k: v for k, v in r.items() if start >= 300 or k != "late"}
                  for r in rows[start:stop]])
    one = tmp_db.create_table("one", dim=DIM)
    one.add(rows)
    assert len(many._current().segments) > 1 and len(one._current().segments) == 1
    return many, one


def _same_hits(a: list[dict], b: list[dict]) -> None:
    assert [h["id"] for h in a] == [h["id"] for h in b]
    np.testing.assert_allclose([h["score"] for h in a], [h["score"] for h in b], rtol=1e-5, atol=1e-5)
    for x, y in zip(a, b, strict=True):
        assert list(x) == list(y)  # the same columns, in the same order
        assert {k: v for k, v in x.items() if k != "score"} == {k: v for k, v in y.items() if k != "score"}


@pytest.mark.parametrize("indexed", [False, True])
@pytest.mark.parametrize("k", [1, 10, 100])
def test_many_writes_return_the_rows_and_attributes_of_the_one_write_twin(twins, rng, indexed, k) -> None:
    many, one = twins
    if indexed:
        for tbl in twins:
            tbl.create_index("hnsw")
    for q in rng.standard_normal((4, DIM)).astype(np.float32):
        # exact search: the same ids, order, attributes and (within rounding) scores
        _same_hits(many.search(q).limit(k).exact().to_list(), one.search(q).limit(k).exact().to_list())
        # the default path (a scan, or the index): every hit carries its own row's values and
        # exact score, and the hits are nearly the exact ones
        got = many.search(q).limit(k).to_list()
        full = {h["id"]: h for h in one.search(q).limit(ROWS).exact().to_list()}
        for h in got:
            _same_hits([h], [full[h["id"]]])
        best = {h["id"] for h in one.search(q).limit(k).exact().to_list()}
        assert len(got) == k and sum(h["id"] in best for h in got) >= 0.8 * k
        assert many.search(q).limit(k).hits().ids == [h["id"] for h in got]
        assert many.search(q).limit(k).to_arrow().to_pylist() == got


def test_the_hits_of_many_segments_carry_their_own_row_values(twins) -> None:
    many, _ = twins
    for i in (0, 5, 299, 300, 449, 450, 599):  # first and last rows of segments, null names
        q = many.get([f"r{i}"], with_vectors=True)[0]["vector"]
        hit = many.search(np.asarray(q, dtype=np.float32)).limit(1).to_list()[0]
        assert hit["id"] == f"r{i}" and hit["n"] == i and hit["x"] == pytest.approx(i / 7)
        assert hit["flag"] is (i % 3 == 0)
        assert hit["name"] == (None if i % 5 == 0 else f"name-{i}-é")
        assert hit["day"] == dt.date(2024, 1, 1 + i % 28) and hit["tags"] == [f"t{i % 4}", "all"]
        assert hit["lists"] == _lists(i) and hit["nums"] == [i, i + 1][:i % 3]
        assert hit["late"] == (None if i < 300 else f"late-{i}")
        assert hit["at"] == _at(i)


def test_an_indexed_table_with_rows_added_since_the_build_reads_their_values(twins, rng) -> None:
    many, _ = twins
    many.create_index("hnsw")
    many.add(_rows(rng, ROWS, ROWS + 20, True))  # fresh rows, searched beside the index
    for i in (ROWS, ROWS + 19):
        q = np.asarray(many.get([f"r{i}"], with_vectors=True)[0]["vector"], dtype=np.float32)
        hits = many.search(q).limit(10).to_list()
        exact = {h["id"]: h for h in many.search(q).limit(ROWS + 20).exact().to_list()}
        assert hits[0]["id"] == f"r{i}" and hits[0]["late"] == f"late-{i}"
        for h in hits:
            _same_hits([h], [exact[h["id"]]])


_COMMIT = """
import sys, numpy as np, vecstore
tbl = vecstore.connect(sys.argv[1]).open_table("t")
tbl.add([{"id": sys.argv[2], "vector": np.full(4, float(sys.argv[3]), np.float32)}])
"""


def _age(tbl: vecstore.Table, seconds: float = 3600.0) -> None:
    """Make the table's versions directory look unchanged for ``seconds``: the state in which
    a reader answers from one ``stat`` of it."""
    versions = os.path.join(str(tbl.path), "_versions")
    past = time.time() - seconds
    os.utime(versions, (past, past))


def test_a_query_sees_a_commit_of_another_process_on_a_quiet_table(tmp_path) -> None:
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0]}])
    for round_ in range(3):  # the second and third rounds start from the stamp taken before
        _age(tbl)
        q = np.ones(4, np.float32)
        before = len(tbl.search(q).limit(10).to_list())
        assert tbl.search(q).limit(10).to_list()  # a second query on the quiet table
        subprocess.run([sys.executable, "-c", _COMMIT, str(tmp_path / "store"), f"p{round_}", "1"],
                       check=True)
        found = [h["id"] for h in tbl.search(q).limit(10).to_list()]
        assert len(found) == before + 1 and f"p{round_}" in found
        assert len(tbl) == before + 1


def test_a_quiet_table_dropped_by_another_process_is_gone_for_its_readers(tmp_path) -> None:
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0]}])
    _age(tbl)
    assert tbl.search(np.ones(4, np.float32)).to_list()
    code = "import sys, vecstore; vecstore.connect(sys.argv[1]).drop_table('t')"
    subprocess.run([sys.executable, "-c", code, str(tmp_path / "store")], check=True)
    with pytest.raises(vecstore.NotFoundError):
        tbl.search(np.ones(4, np.float32)).to_list()


def test_a_checked_out_version_stays_what_it_was_on_a_quiet_table(tmp_path) -> None:
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0]}])
    old = tbl.checkout(tbl.version)
    _age(tbl)
    tbl.add([{"id": "b", "vector": [1, 1, 0, 0]}])
    assert [h["id"] for h in old.search(np.ones(4, np.float32)).to_list()] == ["a"]
    assert sorted(h["id"] for h in tbl.search(np.ones(4, np.float32)).to_list()) == ["a", "b"]


@pytest.mark.parametrize("indexed", [False, True])
def test_a_batch_returns_what_each_query_alone_returns(twins, rng, indexed) -> None:
    many, _ = twins
    if indexed:
        many.create_index("hnsw")
    queries = rng.standard_normal((7, DIM)).astype(np.float32)
    for k in (1, 10):
        batch = many.search_batch(queries, threads=2).limit(k)
        lists = batch.to_list()
        assert len(lists) == len(queries)
        for q, got, hits in zip(queries, lists, batch.hits(), strict=True):
            alone = many.search(q).limit(k).to_list()
            _same_hits(got, alone)
            assert hits.ids == [h["id"] for h in alone]
    assert many.search_batch(queries[:0].reshape(0, DIM)).to_list() == []


def test_reading_hits_with_dates_does_not_import_pandas(tmp_path) -> None:
    """A cold process's first query reads its hits' dates without pandas (``Array.to_numpy``
    imports it for temporal types: half a second of the first query)."""
    import subprocess
    import sys

    tbl = vecstore.connect(tmp_path).create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0], "day": dt.date(2024, 1, 2),
              "at": dt.datetime(1987, 2, 1, 3, 4, 5)},
             {"id": "b", "vector": [0, 1, 0, 0], "day": None, "at": None}])
    code = ("import sys, vecstore; t = vecstore.connect(sys.argv[1]).open_table('t'); "
            "hits = t.search([1, 0, 0, 0]).limit(2).to_list(); "
            "print(repr([(h['day'], h['at']) for h in hits]), 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out[-1] == "False"
    assert "datetime.date(2024, 1, 2)" in " ".join(out) and "None" in " ".join(out)
