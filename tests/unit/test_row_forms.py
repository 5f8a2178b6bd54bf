"""Rows in the forms users of other vector stores write them: ``db.create_table("t", rows)`` with
the rows where ``dim`` goes (LanceDB's order), no ``dim`` at all (the first vector gives it), and
a dict of columns (``{"id": [...], "vector": matrix}``) as well as a list of row dicts."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import vecstore
from vecstore import InvalidArgumentError

RNG = np.random.default_rng(0)
VECS = RNG.standard_normal((6, 4)).astype(np.float32)
ROWS = [{"id": str(i), "vector": VECS[i], "cat": i % 2} for i in range(6)]


@pytest.fixture
def db(tmp_path):
    return vecstore.connect(tmp_path / "store")


def _ids(tbl) -> list[str]:
    return [h["id"] for h in tbl.search(VECS[0]).exact().limit(6).to_list()]


@pytest.mark.parametrize("form", ["dicts", "arrow", "columns"])
def test_rows_in_dims_place_create_the_table(db, form) -> None:
    data = {
        "dicts": ROWS,
        "arrow": pa.table({"id": [r["id"] for r in ROWS],
                           "vector": pa.FixedSizeListArray.from_arrays(pa.array(VECS.ravel()), 4),
                           "cat": [r["cat"] for r in ROWS]}),
        "columns": {"id": [r["id"] for r in ROWS], "vector": VECS, "cat": [r["cat"] for r in ROWS]},
    }[form]
    tbl = db.create_table("t", data)
    assert tbl.dim == 4 and len(tbl) == 6 and tbl.version == 1
    assert _ids(tbl)[0] == "0"
    assert sorted(tbl.search(VECS[0]).where("cat = 1").exact().limit(6).to_list(),
                  key=lambda h: h["id"])[0]["id"] == "1"


def test_data_without_dim_gives_the_dim(db) -> None:
    tbl = db.create_table("t", data=[{"id": "a", "vector": [1.0, 0.0, 0.0]}])
    assert tbl.dim == 3
    with pytest.raises(InvalidArgumentError, match="needs dim="):
        db.create_table("u", data=[{"id": "a", "text": "no vector here"}])


def test_a_dict_of_columns_is_added_as_rows(db) -> None:
    tbl = db.create_table("t", dim=4)
    tbl.add({"id": ["a", "b"], "vector": [VECS[0].tolist(), VECS[1].tolist()]})
    tbl.add({"id": np.array(["c", "d"]), "vector": VECS[2:4]})
    tbl.add({"id": "e", "vector": VECS[4]})  # one row, as before
    assert len(tbl) == 5 and _ids(tbl)[0] == "a"


def test_bad_column_dicts_and_dims_are_refused_and_short(db) -> None:
    tbl = db.create_table("t", dim=4)
    with pytest.raises(InvalidArgumentError, match=r"different lengths \('id': 3, 'vector': 2\)"):
        tbl.add({"id": ["a", "b", "c"], "vector": VECS[:2]})
    with pytest.raises(InvalidArgumentError, match="'cat' is a single int value"):
        tbl.add({"id": ["a", "b"], "vector": VECS[:2], "cat": 7})
    assert len(tbl) == 0 and tbl.version == 1
    with pytest.raises(InvalidArgumentError, match="and data= was given"):
        db.create_table("u", ROWS, data=ROWS)
    with pytest.raises(InvalidArgumentError, match="dim must be a positive integer, got 'four'"):
        db.create_table("u", "four")
    with pytest.raises(InvalidArgumentError) as err:  # a matrix is not rows: named, not printed
        db.create_table("u", np.zeros((5000, 4), np.float32))
    assert len(str(err.value)) < 200
    assert "u" not in db.table_names()
