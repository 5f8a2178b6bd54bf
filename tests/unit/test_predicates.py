"""The filter fast path (sorted column indexes) against DuckDB on the same rows: generated
filters over data with NULLs, NaN, infinities, duplicates, non-ASCII strings, dates, timestamps
and lists must give exactly the rows DuckDB gives, and the common filters must take the fast path."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa
import pytest

from vecstore.query.filters import ROW_COLUMN, VIEW, FilterEngine, _parse, connect_sandboxed

N = 3_000
WORDS = ["", "a", "ab", "abc", "abd", "b", "ba", "z", "Z", "é", "éa", "ü", "\U0010ffff", "a\U0010ffff",
         "abc%", "a_b", "Ab"]


def _table(rng: np.random.Generator, chunks: int) -> pa.Table:
    def nulls(values: list, p: float = 0.1) -> list:
        return [None if rng.random() < p else v for v in values]

    ints = nulls([int(x) for x in rng.integers(-20, 20, N)])
    floats = nulls([float(x) for x in rng.choice(
        [-1.5, 0.0, -0.0, 0.5, 2.5, 3.0, 1e9, np.inf, -np.inf], N)])
    with_nan = nulls([float(x) for x in rng.choice([-1.0, 0.0, 2.5, np.nan], N)])
    strings = nulls([WORDS[i] for i in rng.integers(0, len(WORDS), N)])
    bools = nulls([bool(b) for b in rng.integers(0, 2, N)])
    base = dt.date(2020, 1, 1)
    dates = nulls([base + dt.timedelta(days=int(d)) for d in rng.integers(0, 60, N)])
    stamps = nulls([dt.datetime(2020, 1, 1) + dt.timedelta(hours=int(h)) for h in rng.integers(0, 100, N)])
    tags = nulls([[WORDS[i] for i in rng.integers(0, 6, rng.integers(0, 4))] for _ in range(N)])
    nums = nulls([[int(i) for i in rng.integers(0, 5, rng.integers(0, 3))] for _ in range(N)])
    t = pa.table({
        "id": pa.array([f"r{i}" for i in range(N)]),
        "n": pa.array(ints, pa.int64()), "x": pa.array(floats, pa.float64()),
        "xn": pa.array(with_nan, pa.float64()),
        "s": pa.array(strings, pa.string()), "b": pa.array(bools, pa.bool_()),
        "d": pa.array(dates, pa.date32()), "ts": pa.array(stamps, pa.timestamp("us")),
        "tags": pa.array(tags, pa.list_(pa.string())), "nums": pa.array(nums, pa.list_(pa.int64())),
        ROW_COLUMN: pa.array(np.arange(N, dtype=np.int64)),
    })
    if chunks > 1:  # like a table of several segments
        cuts = np.linspace(0, N, chunks + 1).astype(int)
        t = pa.concat_tables([t.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    return t


def _leaf(rng: np.random.Generator) -> tuple[str, list]:
    op = ["=", "<>", "<", "<=", ">", ">="][rng.integers(6)]
    kind = rng.integers(14)
    if kind == 0:
        return f"n {op} {int(rng.integers(-22, 22))}", []
    if kind == 1:
        return f"n {op} ?", [[int(rng.integers(-22, 22)), float(rng.choice([2.5, -0.5, 7.0]))][rng.integers(2)]]
    if kind == 2:
        return f"x {op} {str(rng.choice(['2.5', '0', '-1.5', '1e9', '3']))}", []
    if kind == 3:
        return f"s {op} ?", [WORDS[rng.integers(len(WORDS))]]
    if kind == 4:
        lo, hi = sorted(int(v) for v in rng.integers(-22, 22, 2))
        return ("n BETWEEN ? AND ?", [lo, hi]) if rng.random() < 0.8 else ("n BETWEEN ? AND ?", [hi, lo])
    if kind == 5:
        return f"starts_with(s, ?)", [WORDS[rng.integers(len(WORDS))]]
    if kind == 6:
        return "s LIKE ?", [str(rng.choice(["a%", "ab%", "%", "é%", "abc", "a_%", "\U0010ffff%"]))]
    if kind == 7:
        vals = ", ".join(str(int(v)) for v in rng.integers(-5, 5, rng.integers(1, 4)))
        null = ", NULL" if rng.random() < 0.3 else ""
        return f"n {'NOT ' if rng.random() < 0.4 else ''}IN ({vals}{null})", []
    if kind == 8:
        return f"{str(rng.choice(['n', 's', 'x', 'b', 'd', 'tags']))} IS {'NOT ' if rng.random() < 0.5 else ''}NULL", []
    if kind == 9:
        text = str(rng.choice(["b", "NOT b", "b = true", "b <> false", "b = ?"]))
        return text, [bool(rng.integers(2))] if "?" in text else []
    if kind == 10:
        day = (dt.date(2020, 1, 1) + dt.timedelta(days=int(rng.integers(0, 60))))
        return f"d {op} ?", [[day, day.isoformat()][rng.integers(2)]]
    if kind == 11:
        t = dt.datetime(2020, 1, 1) + dt.timedelta(hours=int(rng.integers(0, 100)))
        return f"ts {op} ?", [[t, t.isoformat(" "), t.date()][rng.integers(3)]]
    if kind == 12:
        return "list_contains(tags, ?)", [WORDS[rng.integers(6)]]
    return "list_contains(nums, ?)", [int(rng.integers(0, 6))]


def _expr(rng: np.random.Generator, depth: int = 0) -> tuple[str, list]:
    r = rng.random()
    if depth >= 3 or r < 0.45:
        return _leaf(rng)
    if r < 0.6:
        e, p = _expr(rng, depth + 1)
        return f"NOT ({e})", p
    parts = [_expr(rng, depth + 1) for _ in range(rng.integers(2, 4))]
    joiner = " AND " if r < 0.8 else " OR "
    return joiner.join(f"({e})" for e, _ in parts), [v for _, p in parts for v in p]


def _duckdb_rows(con, engine: FilterEngine, text: str, params: list) -> np.ndarray:
    sql = _parse(text, engine.columns, con).sql
    return np.sort(con.execute(sql, params).fetchnumpy()[ROW_COLUMN].astype(np.int64))


@pytest.mark.parametrize("chunks", [1, 3])
def test_fast_path_agrees_with_duckdb(chunks: int) -> None:
    rng = np.random.default_rng(chunks)
    table = _table(rng, chunks)
    engine = FilterEngine(table)
    con = connect_sandboxed()
    con.register(VIEW, table)
    fast = 0
    for _ in range(400):
        text, params = _expr(rng)
        expected = _duckdb_rows(con, engine, text, params)
        got = engine.rows(text, params)
        assert np.array_equal(got, expected), (text, params, np.setxor1d(got, expected)[:5])
        fast += engine.compiled(text)
    assert fast >= 380  # the generated filters are all of the fast kinds


@pytest.mark.parametrize(("text", "params"), [
    ("n = 1", []), ("n BETWEEN ? AND ?", [1, 5]), ("starts_with(s, 'a') AND n >= 0", []),
    ("s LIKE 'ab%'", []), ("n IN (1, 2, 3) OR s IS NULL", []), ("NOT (x > 2.5)", []),
    ("list_contains(tags, ?)", ["a"]), ("d >= '2020-01-15'", []), ("b", []),
])
def test_common_filters_take_the_fast_path(text: str, params: list) -> None:
    engine = FilterEngine(_table(np.random.default_rng(0), 1))
    assert engine.compiled(text)


@pytest.mark.parametrize("text", [
    "lower(s) = 'a'", "n + 1 > 2", "s ILIKE 'a%'", "regexp_matches(s, 'a.')", "n::VARCHAR = '1'",
    "coalesce(n, 0) = 0", "year(d) = 2020", "x = 'nan'::DOUBLE",
    "xn >= 0", "NOT (xn >= 0)", "xn < 1 OR n = 3", "xn IN (0, 2.5)",
])
def test_other_filters_run_on_duckdb_with_the_same_answer(text: str) -> None:
    table = _table(np.random.default_rng(1), 1)
    engine = FilterEngine(table)
    con = connect_sandboxed()
    con.register(VIEW, table)
    assert not engine.compiled(text)
    assert np.array_equal(engine.rows(text, []), _duckdb_rows(con, engine, text, []))


@pytest.mark.parametrize(("text", "params"), [
    ("n = ?", ["5"]),  # DuckDB casts the string
    ("s = ?", [5]),
    ("n = ?", [2 ** 80]),
    ("x > ?", [float("nan")]),
    ("s LIKE ?", ["a%b%"]),
    ("ts > ?", [dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)]),
])
def test_parameters_that_need_duckdb_fall_back(text: str, params: list) -> None:
    table = _table(np.random.default_rng(2), 1)
    engine = FilterEngine(table)
    con = connect_sandboxed()
    con.register(VIEW, table)
    try:
        expected = _duckdb_rows(con, engine, text, params)
    except Exception as exc:  # DuckDB refuses it: so must the engine
        with pytest.raises(Exception, match="."):
            engine.rows(text, params)
        assert type(exc)
        return
    assert np.array_equal(engine.rows(text, params), expected)


def test_wrong_parameter_count_is_duckdbs_error() -> None:
    engine = FilterEngine(_table(np.random.default_rng(3), 1))
    from vecstore.errors import FilterError
    with pytest.raises(FilterError):
        engine.rows("n = ?", [])
    with pytest.raises(FilterError):
        engine.rows("n = ?", [1, 2])
