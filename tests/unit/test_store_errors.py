"""Bad arguments to the store's entry points raise vecstore's errors with a clear message, never a
raw ValueError/KeyError from inside (issue 10, item 10)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

import vecstore
from vecstore import InvalidArgumentError, NotFoundError, SchemaError


@pytest.mark.parametrize("timeout", [float("inf"), float("nan"), -1.0, "5", True, None])
def test_connect_refuses_a_bad_lock_timeout(tmp_path, timeout):
    with pytest.raises(InvalidArgumentError, match="lock_timeout") as err:
        vecstore.connect(tmp_path / "s", lock_timeout=timeout)
    assert repr(timeout) in str(err.value) or str(timeout) in str(err.value)


@pytest.mark.parametrize("timeout", [0, 0.0, 2, 30.5])
def test_connect_takes_a_finite_lock_timeout(tmp_path, timeout):
    db = vecstore.connect(tmp_path / "s", lock_timeout=timeout)
    tbl = db.create_table("t", dim=2)
    tbl.add([{"id": "a", "vector": [1, 2]}])
    assert len(tbl) == 1


@pytest.fixture
def tbl(tmp_db):
    t = tmp_db.create_table("t", dim=2)
    t.add([{"id": "a", "vector": [1, 2]}])
    t.add([{"id": "b", "vector": [2, 1]}])
    return t


@pytest.mark.parametrize("version", ["1", True, False, 1.0, -1, 0, None])
def test_checkout_refuses_what_is_not_a_version_number(tbl, version):
    with pytest.raises(InvalidArgumentError, match="version") as err:
        tbl.checkout(version)
    assert repr(version) in str(err.value)
    with pytest.raises(InvalidArgumentError, match="version"):
        vecstore.connect(tbl.path.parent).open_table("t", version=version if version is not None else "x")


def test_checkout_of_a_missing_version_names_the_existing_ones(tbl):
    with pytest.raises(NotFoundError, match=r"version 9 .*1 to 3"):
        tbl.checkout(9)
    assert len(tbl.checkout(np.int64(2))) == 1  # NumPy integers are integers


@pytest.mark.parametrize("names", [["id", "n", "n", "vector"], ["id", "id", "vector"],
                                   ["id", "vector", "vector"]])
def test_add_refuses_duplicate_columns(tbl, names):
    arrays = {"id": pa.array(["c"]), "n": pa.array([1]),
              "vector": pa.array([[1.0, 2.0]], pa.list_(pa.float32(), 2))}
    table = pa.Table.from_arrays([arrays[n] for n in names], names=names)
    dup = next(n for n in names if names.count(n) > 1)
    with pytest.raises(SchemaError, match=f"'{dup}'"):
        tbl.add(table)
    with pytest.raises(SchemaError, match=f"'{dup}'"):
        tbl.add(table.to_batches()[0])
    assert len(tbl) == 2
