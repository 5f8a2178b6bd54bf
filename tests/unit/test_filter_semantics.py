"""Filters give one answer whichever engine runs them, and name columns exactly (issue 10).

Every test goes through the public API. A filter the fast path answers (sorted column indexes)
is compared with the same filter forced onto DuckDB by ``OR lower('a') = 'b'`` (a function the
fast path does not compile, false on every row): the two must select the same rows.
"""

from __future__ import annotations

import datetime as dt
import decimal

import numpy as np
import pyarrow as pa
import pytest

import vecstore
from vecstore import FilterError, SchemaError
from vecstore.storage import batch as batch_module

ON_DUCKDB = " OR lower('a') = 'b'"
P53 = 2 ** 53
D = decimal.Decimal


def _duckdb(where: str) -> str:
    return f"({where}){ON_DUCKDB}"


# --- 1. column names that differ only in case --------------------------------------------------


@pytest.mark.parametrize(("schema", "match"), [
    (pa.schema({"ID": pa.string()}), "'ID' differs from the row's 'id'"),
    (pa.schema({"Vector": pa.float32()}), "'Vector' differs from the row's 'vector'"),
    (pa.schema({"cc": pa.int64(), "CC": pa.int64()}), "'CC' differs from the column 'cc'"),
    (pa.schema([("n", pa.int64()), ("n", pa.int64())]), "'n' appears twice"),
])
def test_create_table_refuses_names_that_differ_only_in_case(tmp_db, schema, match) -> None:
    with pytest.raises(SchemaError, match=match):
        tmp_db.create_table("t", dim=2, schema=schema)
    assert tmp_db.table_names() == []


def test_create_table_keeps_names_duckdb_tells_apart(tmp_db) -> None:
    # DuckDB folds only ASCII letters: 'é' and 'É' are two columns to it, and to filters
    t = tmp_db.create_table("t", dim=2, schema=pa.schema({"é": pa.int64(), "É": pa.int64()}))
    t.add([{"id": "a", "vector": [1, 0], "é": 1, "É": 2}])
    assert t.count('"é" = 1') == t.count(_duckdb('"é" = 1')) == 1
    assert t.count('"É" = 1') == t.count(_duckdb('"É" = 1')) == 0


@pytest.mark.parametrize("rows", [
    [{"id": "doc-1", "vector": [1, 0], "ID": "doc-2"}],  # shadows the row id
    [{"id": "a", "vector": [1, 0], "cc": 1, "CC": 2}],  # two new columns
    [{"id": "a", "vector": [1, 0], "Year": 2020}],  # against the existing 'year'
    pa.table({"id": ["a"], "vector": [[1.0, 0.0]], "YEAR": [2020]}),
    pa.table({"id": ["a"], "vector": [[1.0, 0.0]], "VECTOR": [2020]}),
])
def test_rows_that_add_a_colliding_column_are_refused_and_nothing_is_written(tmp_db, rows) -> None:
    t = tmp_db.create_table("t", dim=2)
    t.add([{"id": "first", "vector": [0, 1], "year": 1999}])
    version = t.version
    with pytest.raises(SchemaError, match="only in letter case"):
        t.add(rows)
    with pytest.raises(SchemaError, match="only in letter case"):
        t.upsert(rows)
    assert t.version == version and t.count() == 1
    assert [f.name for f in t.schema] == ["id", "year", "vector"]


def test_existing_columns_may_be_written_with_their_exact_names(tmp_db) -> None:
    t = tmp_db.create_table("t", dim=2, schema=pa.schema({"Year": pa.int64()}))
    t.add([{"id": "a", "vector": [1, 0], "Year": 2020}])
    assert t.count("Year = 2020") == t.count("year = 2020") == 1  # one column: case is free


@pytest.fixture
def legacy_table(tmp_db, monkeypatch) -> vecstore.Table:
    """A table written before colliding names were refused: ``ID`` beside the row id, ``cc``
    beside ``CC``."""
    monkeypatch.setattr(batch_module, "check_new_names", lambda new, existing: None, raising=False)
    t = tmp_db.create_table("t", dim=2)
    t.add([
        {"id": "doc-1", "vector": [1, 0], "ID": "x", "cc": 1, "CC": 2, "n": 5},
        {"id": "doc-2", "vector": [0, 1], "ID": "doc-1", "cc": 2, "CC": 1, "n": 6},
    ])
    monkeypatch.undo()
    return tmp_db.open_table("t")


@pytest.mark.parametrize(("where", "expected"), [
    ("id = 'doc-1'", ["doc-1"]), ("ID = 'doc-1'", ["doc-2"]), ('"ID" = \'doc-1\'', ["doc-2"]),
    ("cc = 1", ["doc-1"]), ("CC = 1", ["doc-2"]), ("cc = 1 AND CC = 2", ["doc-1"]),
    ("lower(ID) = 'doc-1'", ["doc-2"]), ("cc + 1 = 2", ["doc-1"]), ("CC IN (1, 5)", ["doc-2"]),
    ("N = 6", ["doc-2"]),  # no collision for 'n': case is free
])
def test_filters_on_a_store_with_colliding_columns_resolve_exactly(legacy_table, where, expected) -> None:
    t = legacy_table
    q = np.array([1, 0], dtype=np.float32)
    for text in (where, _duckdb(where)):
        assert sorted(h["id"] for h in t.search(q).where(text).limit(10).to_list()) == expected, text
        assert t.count(text) == len(expected)


@pytest.mark.parametrize("where", ["Cc = 1", "iD = 'x'", "cC IS NULL OR lower('a') = 'b'"])
def test_a_reference_matching_colliding_columns_only_ignoring_case_is_refused(legacy_table, where) -> None:
    with pytest.raises(FilterError, match="ambiguous.*differ only in letter case"):
        legacy_table.count(where)


def test_delete_by_id_deletes_the_row_with_that_id(legacy_table) -> None:
    # the report: this deleted doc-2 (whose 'ID' is doc-1) and kept doc-1
    t = legacy_table
    assert t.delete("id = ?", "doc-1") == 1
    assert t.to_arrow().column("id").to_pylist() == ["doc-2"]
    assert t.delete(_duckdb("ID = ?"), "doc-1") == 1
    assert t.count() == 0


# --- 2. the fast path compares the way DuckDB does ---------------------------------------------

EDGE_ROWS = 8
T0 = dt.datetime(2020, 1, 1)


@pytest.fixture(scope="module")
def edges(tmp_path_factory) -> vecstore.Table:
    db = vecstore.connect(tmp_path_factory.mktemp("edges") / "store")
    f32 = np.array([0.1, 0.2, 0.5, 16777216, 16777217, -0.0, np.inf, 0.3], dtype=np.float32)
    ts = [T0 + dt.timedelta(milliseconds=ms) for ms in (0, 500, 1000, 1500, 999, 86_400_000, 1, 2000)]
    rows = pa.table({
        "id": [f"r{i}" for i in range(EDGE_ROWS)],
        "vector": pa.array([[1.0, float(i)] for i in range(EDGE_ROWS)], pa.list_(pa.float32())),
        "price": pa.array(f32, pa.float32()),
        "x": pa.array([0.1, 0.2, 0.30000000000000004, float(P53), 1e308, -0.0, float(np.float32(0.1)), 2.5]),
        "n": pa.array([P53 - 1, P53, P53 + 1, P53 + 2, 2 ** 63 - 1, -2 ** 63, 1, 100], pa.int64()),
        "u": pa.array([0, 1, 2 ** 63 - 1, 2 ** 63, 2 ** 64 - 1, P53 + 1, 5, 100], pa.uint64()),
        "i8": pa.array([-128, 127, 0, 1, 2, 3, -1, 100], pa.int8()),
        "ts_s": pa.array([T0 + dt.timedelta(seconds=s) for s in (0, 1, 2, 59, 86_400, -1, 3600, 1)],
                         pa.timestamp("s")),
        "ts_ms": pa.array(ts, pa.timestamp("ms")),
        "ts_us": pa.array([t + dt.timedelta(microseconds=1) for t in ts], pa.timestamp("us")),
        "ts_ns": pa.array([np.datetime64(t) + np.timedelta64(k, "ns") for k, t in enumerate(ts)],
                          pa.timestamp("ns")),
        "tz": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "d": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=k) for k in (0, 1, 2, -1, 58, 59, 365, 0)]),
        "s": pa.array(["é", "e\u0301", "É", "ß", "ss", "a", "A", "\U0010ffff"]),
        "dec": pa.array([D("0.10"), D("0.20"), D("2.50"), None, D("1.00"), D("-1.00"), D("0.30"),
                         D("100.00")], pa.decimal128(10, 2)),
        "nums": pa.array([[1, None], [2], [], None, [P53 + 1], [-1, 1], [100], [3]], pa.list_(pa.int64())),
    })
    t = db.create_table("edges", dim=2)
    t.add(rows)
    return t


# (filter, params, expected count): the count is checked too where DuckDB's answer is known
EDGE_FILTERS = [
    ("price = 0.1", [], 1), ("price = 0.2", [], 1), ("price BETWEEN 0.1 AND 0.2", [], 2),
    ("price IN (0.1, 0.3)", [], 2), ("price = 1e-1", [], 0), ("price = 0.1e0", [], 0),
    ("price = ?", [0.1], 0), ("price = ?", [D("0.1")], 1), ("price > 0.1", [], None),
    ("price = 16777217", [], 2), ("price = ?", [16777217], 2), ("price >= 0.30000001", [], None),
    ("price BETWEEN 0.1 AND 1e0", [], None), ("price = 0", [], 1), ("price IN (0, 0.5)", [], None),
    ("price = 100000000000000000000", [], None),
    ("x = 0.1", [], 1), ("x = ?", [float(np.float32(0.1))], 1), ("x = 0.30000000000000004", [], 1),
    ("x = 0.3", [], 0), ("x = 9007199254740993", [], 1), ("x < 1.7976931348623157e308", [], None),
    ("n = 9007199254740993.0", [], 1), ("n = 9007199254740992.5", [], 0),
    ("n > 9007199254740992.5", [], None),
    ("n = ?", [float(P53 + 1)], 2), ("n = ?", [D("9007199254740993.0")], 1), ("n = ?", [P53 + 1], 1),
    ("n BETWEEN 9007199254740992.5 AND 9007199254740993.5", [], 1), ("n IN (9007199254740993.0, 1)", [], 2),
    ("n = 9.007199254740993e15", [], 2), ("n >= 9223372036854775807.5", [], 0),
    ("n = 1.00000000000000000001", [], "error"),  # DECIMAL(38,20): 2^63 - 1 overflows it
    ("n < 18446744073709551615.5", [], EDGE_ROWS), ("n < -9223372036854775808.5", [], 0),
    ("u = 9223372036854775808", [], 1), ("u > ?", [2 ** 63 - 1], None), ("u = ?", [-1], 0),
    ("u IN (9223372036854775807, 18446744073709551615)", [], "error"),  # DuckDB 1.5.5: OverflowError
    ("u NOT IN (9223372036854775807, 18446744073709551615)", [], EDGE_ROWS - 2),
    ("u = 9.007199254740993e15", [], 1),
    ("i8 = 1000", [], 0), ("i8 < 1000", [], EDGE_ROWS), ("i8 = 2.5", [], 0), ("i8 BETWEEN 1 AND 2.5", [], 2),
    ("ts_s = '2020-01-01 00:00:00.5'", [], 2),  # DuckDB rounds the string to 00:00:01
    ("ts_s = '2020-01-01 00:00:01'", [], 2), ("ts_s > '2020-01-01 00:00:00.4'", [], None),
    ("ts_s = ?", [T0 + dt.timedelta(milliseconds=500)], 0),
    ("ts_s < ?", [T0 + dt.timedelta(microseconds=1)], None),
    ("ts_s = ?", [dt.date(2020, 1, 1)], 1),
    ("ts_ms = '2020-01-01 00:00:00.5'", [], 1), ("ts_ms = '2020-01-01 00:00:00.0005'", [], None),
    ("ts_ms BETWEEN '2020-01-01' AND ?", [T0 + dt.timedelta(microseconds=999_500)], None),
    ("ts_us = '2020-01-01 00:00:00.000001'", [], 1), ("ts_us > ?", [T0], None),
    ("ts_ns = '2020-01-01 00:00:00.000000000'", [], 1), ("ts_ns = '2020-01-01 00:00:00.500000001'", [], 1),
    ("ts_ns IN ('2020-01-01 00:00:00.500000001', '2020-01-01')", [], None),  # DuckDB 1.5.5: sub-µs IN misses
    ("ts_ns > ?", [T0], None), ("ts_ns < '0001-01-01'", [], "error"),
    ("tz = '2020-01-01 00:00:00'", [], None), ("tz > ?", [T0.replace(tzinfo=dt.timezone.utc)], None),
    ("d = '2020-01-02'", [], 1), ("d = ?", [dt.datetime(2020, 1, 2, 12)], 0), ("d < ?", [T0], 1),
    ("d = '2020-01-02 12:00:00'", [], 1), ("d BETWEEN '2020-01-01' AND ?", [dt.datetime(2020, 1, 3)], None),
    ("s = 'é'", [], 1), ("s = ?", ["e\u0301"], 1), ("s > 'e'", [], None), ("s < 'É'", [], None),
    ("s IN ('ß', 'SS')", [], 1), ("starts_with(s, 'e')", [], 1), ("s LIKE 'É%'", [], 1),
    ("dec = 0.1", [], 1), ("dec = ?", [0.1], 1), ("dec > 0.15", [], None),
    ("list_contains(nums, ?)", [P53 + 1], 1), ("list_contains(nums, 2.5)", [], 0),
    ("list_contains(nums, ?)", [2 ** 70], 0),
]


@pytest.mark.parametrize(("where", "params", "expected"), EDGE_FILTERS,
                         ids=[f"{w} {p}" for w, p, _ in EDGE_FILTERS])
def test_edge_values_give_duckdbs_rows_on_both_paths(edges, where, params, expected) -> None:
    if expected == "error":
        for text in (where, _duckdb(where)):
            with pytest.raises(FilterError):
                edges.count(text, *params)
        return
    fast = edges.count(where, *params)
    assert fast == edges.count(_duckdb(where), *params)
    if expected is not None:
        assert fast == expected


def test_delete_price_equal_to_a_decimal_deletes_the_float32_row(tmp_db) -> None:
    # the report: delete("price = 0.1") deleted 0 rows
    t = tmp_db.create_table("t", dim=2)
    t.add(pa.table({"id": ["a", "b"], "vector": [[1.0, 0.0], [0.0, 1.0]],
                    "price": pa.array([0.1, 0.25], pa.float32())}))
    assert t.count("price = 0.1") == t.count(_duckdb("price = 0.1")) == 1
    assert t.delete("price = 0.1") == 1
    assert t.to_arrow().column("id").to_pylist() == ["b"]


# --- 3. numpy and pyarrow parameters -----------------------------------------------------------


@pytest.mark.parametrize(("where", "param", "expected"), [
    ("n = ?", np.int64(6), 1), ("n = ?", np.int8(5), 1), ("n = ?", np.uint64(7), 0),
    ("n = ?", pa.scalar(6, pa.int64()), 1), ("n = ?", pa.scalar(None, pa.int64()), 0),
    ("price = ?", np.float32(0.1), 1),  # the float32 value itself: matches the float32 row
    ("x = ?", np.float32(0.1), 0),  # ... not the float64 0.1
    ("x = ?", np.float64(0.1), 1), ("price = ?", pa.scalar(0.1, pa.float32()), 1),
    ("x = ?", pa.scalar(D("0.10"), pa.decimal128(4, 2)), 1), ("n = ?", D("6E+0"), 1),
    ("n = ?", D("1E+2"), 1),  # DuckDB alone binds Decimal('1E+2') as 1.00
    ("ok = ?", np.bool_(True), 1), ("s = ?", np.str_("b"), 1), ("s = ?", pa.scalar("a"), 1),
    ("d = ?", np.datetime64("2020-01-02"), 1), ("ts = ?", np.datetime64("2020-01-01T00:00:00.5"), 1),
    ("ts = ?", pa.scalar(T0 + dt.timedelta(milliseconds=500), pa.timestamp("ms")), 1),
    ("ts > ?", np.datetime64("NaT"), 0), ("list_contains(?, n)", np.array([5, 100]), 2),
    ("list_contains(?, s)", pa.scalar(["a", "z"]), 1),
])
def test_numpy_and_pyarrow_parameters_work_on_both_paths(tmp_db, where, param, expected) -> None:
    t = tmp_db.create_table("t", dim=2)
    t.add(pa.table({
        "id": ["a", "b", "c"], "vector": [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]],
        "n": pa.array([5, 6, 100], pa.int64()), "s": ["a", "b", "c"], "ok": [True, False, None],
        "price": pa.array([0.1, 0.2, 0.5], pa.float32()), "x": [0.1, 0.2, 0.5],
        "d": pa.array([dt.date(2020, 1, 1), dt.date(2020, 1, 2), None]),
        "ts": pa.array([T0, T0 + dt.timedelta(milliseconds=500), None], pa.timestamp("ms")),
    }))
    assert t.count(where, param) == t.count(_duckdb(where), param) == expected


@pytest.mark.parametrize(("param", "match"), [
    (np.datetime64("2020-01-01T00:00:00.000000001"), "sub-microsecond"),  # DuckDB bound it as an INTEGER
    (pa.scalar(np.datetime64(1500, "ns")), "sub-microsecond"),
    (np.complex64(1), "not supported"),
])
def test_parameters_without_a_python_value_are_refused_clearly(tmp_db, param, match) -> None:
    t = tmp_db.create_table("t", dim=2)
    t.add([{"id": "a", "vector": [1, 0], "n": 1}])
    for where in ("n = ?", _duckdb("n = ?")):
        with pytest.raises(FilterError, match=match):
            t.count(where, param)
