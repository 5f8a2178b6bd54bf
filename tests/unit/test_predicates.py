"""The filter fast path (sorted column indexes) against DuckDB on the same rows.

``test_fast_path_agrees_with_duckdb_on_edge_values`` generates 10,000 filters (seeded) over
columns of every type the fast path compiles and some it leaves to DuckDB: float32 and float64
(0.1 as float32, -0.0, infinities, subnormals), int64 around 2^53 and at its limits, uint64
beyond 2^63, int8, decimals, dates, timestamps in s, ms, us and ns and with a time zone, strings
with case and normalisation variants (é / e + U+0301 / É, ß / ss / SS / ẞ, dotted and dotless
i, NUL, U+10FFFF), booleans, lists with NULL elements, and NULLs everywhere. Values come as
integer, decimal and double literals, strings, and parameters of Python, numpy and pyarrow
types. Wherever the fast path answers, its rows must be exactly DuckDB's (and where DuckDB
raises, the fast path must not answer); about half of the filters must be answered by it, on
every column type it compiles, so that a disagreement cannot hide behind a fallback.
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from vecstore.errors import FilterError
from vecstore.query.filters import ROW_COLUMN, FilterEngine

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
    engine = FilterEngine(_table(np.random.default_rng(1), 1))
    assert not engine.compiled(text)
    assert engine.fast_rows(text, []) is None
    assert np.array_equal(engine.rows(text, []), engine.duckdb_rows(text, []))


@pytest.mark.parametrize(("text", "params", "fast", "refused"), [
    ("n = ?", ["5"], False, False),  # DuckDB casts the string to BIGINT
    ("n = ?", ["2.5"], False, False),  # ... and rounds this one
    ("s = ?", [5], False, True),  # DuckDB casts s to INTEGER: 'abc%' does not convert
    ("n = ?", [2 ** 80], True, False),  # a HUGEINT: compared exactly
    ("x > ?", [float("nan")], False, False),
    ("s LIKE ?", ["a%b%"], False, False),
    ("ts > ?", [dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc)], False, False),
    ("d = ?", ["2020-1-1"], False, False),  # DuckDB's date parser is laxer than ISO
])
def test_parameters_of_other_types(text: str, params: list, fast: bool, refused: bool) -> None:
    engine = FilterEngine(_table(np.random.default_rng(2), 1))
    assert (engine.fast_rows(text, params) is not None) == fast
    if refused:  # DuckDB refuses the value: so does the engine, with DuckDB's message
        with pytest.raises(FilterError, match="Conversion Error") as duck:
            engine.duckdb_rows(text, params)
        with pytest.raises(FilterError) as got:
            engine.rows(text, params)
        assert str(got.value) == str(duck.value)
        return
    assert np.array_equal(engine.rows(text, params), engine.duckdb_rows(text, params))


def test_wrong_parameter_count_is_duckdbs_error() -> None:
    engine = FilterEngine(_table(np.random.default_rng(3), 1))
    from vecstore.errors import FilterError
    with pytest.raises(FilterError):
        engine.rows("n = ?", [])
    with pytest.raises(FilterError):
        engine.rows("n = ?", [1, 2])


# --- the edge-value differential test ------------------------------------------------------------

D = decimal.Decimal
F32 = np.float32
P53 = 2 ** 53
EDGE_WORDS = ["", "a", "ab", "abc", "abd", "b", "Z", "z", "é", "e\u0301", "É", "ß", "ss", "SS", "ẞ", "ı",
              "I", "i", "İ", "\u00a0", "a b", "😀", "\U0010ffff", "a\U0010ffff", "abc%", "a_b", "Ab",
              "a\x00b", "ǅ"]
INTS = [0, 1, -1, 2, 3, -5, 127, -128, P53 - 1, P53, P53 + 1, P53 + 2, 2 ** 63 - 1, -2 ** 63, 16777216,
        16777217]
U64S = [0, 1, 3, 2 ** 63 - 1, 2 ** 63, 2 ** 63 + 1, 2 ** 64 - 1, P53 + 1]
F32S = [F32(0.1), F32(0.2), F32(0.5), F32(16777216), F32(1 / 3), F32(1e-45), F32(-0.0), F32(np.inf),
        F32(-np.inf), F32(2.5), F32(-1.5), F32(3.4028235e38), F32(1e9)]
F64S = [0.1, 0.2, 0.30000000000000004, float(P53), float(P53 + 2), 1e308, -0.0, 0.0, np.inf, -np.inf, 5e-324,
        2.5, -1.5, float(F32(0.1)), 1 / 3]
BASE = dt.datetime(2020, 1, 1)
BASE_NS = (BASE - dt.datetime(1970, 1, 1)) // dt.timedelta(microseconds=1) * 1000
OFFSETS_NS = [0, 500_000_000, 1_000_000_000, 1_500_000, 123_456_789, 86_400 * 10 ** 9, -1_000_000_000,
              999_999_999, 3_600 * 10 ** 9 + 1000]
DATES = [dt.date(2020, 1, 1), dt.date(2020, 1, 2), dt.date(2019, 12, 31), dt.date(2020, 2, 29),
         dt.date(1970, 1, 1), dt.date(1, 1, 1), dt.date(9999, 12, 31)]
INT_LITERALS = ["0", "1", "-1", "3", "-5", "127", "128", "-129", "1000", str(P53), str(P53 + 1), str(P53 + 2),
                str(2 ** 63 - 1), str(-2 ** 63), str(2 ** 63), str(2 ** 64 - 1), str(2 ** 64), "16777217",
                str(2 ** 100)]
DECIMAL_LITERALS = ["0.1", "0.10", "0.2", "2.5", "-1.5", "0.5", "1.0", "-0.0", "9007199254740993.0",
                    "9007199254740992.5", "16777217.5", "16777216.0", "0.1000000000000000055511151231257827",
                    "1.00000000000000000001", "0.100000001490116119384765625", "3.0000", "127.5",
                    "12345678.99", "0.30000000000000004", "18446744073709551615.5", "922337203685477580.7"]
DOUBLE_LITERALS = ["1e-1", "0.1e0", "1.0000000149011612e-1", "9.007199254740993e15", "9.007199254740992e15",
                   "1e400", "-1e400", "5e-324", "3.4028234663852886e38", "2.5e0", "-0.0e0", "1.6777217e7",
                   "3e0", "9.223372036854775807e18", "1.8446744073709552e19"]
TIME_LITERALS = ["'2020-01-01'", "'2020-01-01 00:00:00.5'", "'2020-01-01T00:00:01'",
                 "'2020-01-01 00:00:00.123456789'", "'2020-01-01 00:00:00.123456'",
                 "'2020-01-01 00:00:00.123'", "'2020-1-1'", "'2020-01-01 12:00:00'",
                 "'2020-01-01 00:00:00+02'", "'2019-12-31 23:59:59'", "'2020-01-02'",
                 "'2020-01-01 00:00:00.0015'", "'2020-01-01 01:00:00.000001'", "'2020-02-29'",
                 "'0001-01-01'", "'9999-12-31'", "'2020-02-30'", "'1970-01-01'",
                 "'2020-01-01 00:00:00.999999999'", "'2020-01-01 00:00:01.000'"]
EDGE_COLUMNS = {"i64": "number", "i8": "number", "u64": "number", "f32": "number", "f64": "number",
                "fnan": "number", "dec": "number", "s": "string", "b": "bool", "d": "time", "ts_s": "time",
                "ts_ms": "time", "ts_us": "time", "ts_ns": "time", "tz": "time"}
FAST_COLUMNS = ["i64", "i8", "u64", "f32", "f64", "s", "b", "d", "ts_s", "ts_ms", "ts_us", "ts_ns", "tags",
                "nums"]
"""The columns the fast path compiles (``fnan`` holds NaN, ``dec`` is a decimal and ``tz`` has a
time zone: those run on DuckDB)."""


def _pick(rng: np.random.Generator, pool: list[Any]) -> Any:
    return pool[int(rng.integers(len(pool)))]


def _edge_table(rng: np.random.Generator, n: int, chunks: int) -> pa.Table:
    def column(pool: list[Any], p_null: float = 0.1) -> list[Any]:
        return [None if rng.random() < p_null else _pick(rng, pool) for _ in range(n)]

    def stamps(unit: str) -> pa.Array:
        tick = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}[unit]
        return pa.array(column(sorted({(BASE_NS + v) // tick for v in OFFSETS_NS})), pa.timestamp(unit))

    def lists(pool: list[Any]) -> list[Any]:
        return [None if rng.random() < 0.1 else
                [None if rng.random() < 0.1 else _pick(rng, pool) for _ in range(int(rng.integers(0, 4)))]
                for _ in range(n)]

    t = pa.table({
        "id": pa.array([f"r{i}" for i in range(n)]),
        "i64": pa.array(column(INTS), pa.int64()),
        "i8": pa.array(column([v for v in INTS if -128 <= v <= 127]), pa.int8()),
        "u64": pa.array(column(U64S), pa.uint64()),
        "f32": pa.array(column([float(v) for v in F32S]), pa.float32()),
        "f64": pa.array(column(F64S), pa.float64()),
        "fnan": pa.array(column([0.5, np.nan, -1.0, 2.5]), pa.float64()),
        "dec": pa.array(column([D("0.10"), D("2.50"), D("-1.00"), D("12345678.99")]), pa.decimal128(10, 2)),
        "s": pa.array(column(EDGE_WORDS), pa.string()),
        "b": pa.array(column([True, False]), pa.bool_()),
        "d": pa.array(column(DATES), pa.date32()),
        "ts_s": stamps("s"), "ts_ms": stamps("ms"), "ts_us": stamps("us"), "ts_ns": stamps("ns"),
        "tz": pa.array(column(sorted({(BASE_NS + v) // 1000 for v in OFFSETS_NS})),
                       pa.timestamp("us", tz="UTC")),
        "tags": pa.array(lists(EDGE_WORDS[:8]), pa.list_(pa.string())),
        "nums": pa.array(lists(list(range(-2, 5))), pa.list_(pa.int64())),
        ROW_COLUMN: pa.array(np.arange(n, dtype=np.int64)),
    })
    if chunks > 1:  # like a table of several segments
        cuts = np.linspace(0, n, chunks + 1).astype(int)
        t = pa.concat_tables([t.slice(a, b - a) for a, b in zip(cuts[:-1], cuts[1:], strict=True)])
    return t


def _number(rng: np.random.Generator, column: str) -> tuple[str, list[Any]]:
    r = rng.random()
    ints = {"i64": INTS, "i8": [-128, 0, 1, 3, 127], "u64": U64S}.get(column, INTS)
    int64s = [v for v in ints if -2 ** 63 <= v < 2 ** 63]
    if r < 0.15:
        return _pick(rng, INT_LITERALS), []
    if r < 0.3:
        return _pick(rng, DECIMAL_LITERALS), []
    if r < 0.42:
        return _pick(rng, DOUBLE_LITERALS), []
    param = _pick(rng, [
        lambda: _pick(rng, [*ints, 2 ** 64, -2 ** 70, 1000]),
        lambda: _pick(rng, [*F64S, float(P53 + 1), 16777217.0, np.nan]),
        lambda: D(_pick(rng, [*DECIMAL_LITERALS, "1E+2", "1.5E+3", "NaN", "1E-40", "0.000001"])),
        lambda: np.int64(_pick(rng, int64s)),
        lambda: _pick(rng, F32S),
        lambda: np.float64(_pick(rng, F64S)),
        lambda: pa.scalar(float(_pick(rng, F32S)), pa.float32()),
        lambda: pa.scalar(_pick(rng, int64s), pa.int64()),
        lambda: pa.scalar(D(_pick(rng, ["0.10", "2.50", "-1.00", "3.00"])), pa.decimal128(10, 2)),
        lambda: np.uint64(_pick(rng, U64S)),
        lambda: np.int8(_pick(rng, [-128, 0, 1, 3, 127])),
        lambda: None,
        lambda: _pick(rng, ["0.1", "3", "2.5", "x"]),
        lambda: bool(rng.integers(2)),
    ])
    return "?", [param()]


def _time(rng: np.random.Generator) -> tuple[str, list[Any]]:
    if rng.random() < 0.4:
        return _pick(rng, TIME_LITERALS), []
    when = BASE + dt.timedelta(microseconds=_pick(rng, [0, 500_000, 1_000_000, 1_500, 123_456, 86_400_000_000,
                                                        -1_000_000, 3_600_000_001]))
    param = _pick(rng, [
        lambda: _pick(rng, DATES),
        lambda: when,
        lambda: when.replace(tzinfo=dt.timezone.utc),
        lambda: when.replace(tzinfo=dt.timezone(dt.timedelta(hours=5, minutes=30))),
        lambda: np.datetime64(when, _pick(rng, ["D", "s", "ms", "us"])),
        lambda: np.datetime64(BASE_NS + _pick(rng, OFFSETS_NS), "ns"),
        lambda: pa.scalar(when, pa.timestamp("us")),
        lambda: _pick(rng, TIME_LITERALS).strip("'"),
        lambda: None,
        lambda: pa.scalar(_pick(rng, DATES), pa.date32()),
        lambda: when.isoformat(" "),
    ])
    return "?", [param()]


def _string(rng: np.random.Generator) -> tuple[str, list[Any]]:
    w = _pick(rng, EDGE_WORDS)
    r = rng.random()
    if r < 0.35 and "\x00" not in w:  # a NUL cannot be written in a filter's text
        return "'" + w.replace("'", "''") + "'", []
    if r < 0.45:
        return "?", [np.str_(w)]
    if r < 0.5:
        return "?", [pa.scalar(w)]
    if r < 0.53:
        return "?", [None]
    if r < 0.56:
        return "?", [int(rng.integers(3))]
    return "?", [w]


def _value(rng: np.random.Generator, column: str) -> tuple[str, list[Any]]:
    kind = EDGE_COLUMNS[column]
    if rng.random() < 0.03:
        return "NULL", []
    if kind == "number":
        return _number(rng, column)
    if kind == "string":
        return _string(rng)
    if kind == "bool":
        return _pick(rng, [("true", []), ("false", []), ("?", [True]), ("?", [np.bool_(False)]),
                           ("?", [None]), ("NULL", []), ("?", [1]), ("'true'", [])])
    return _time(rng)


def _edge_leaf(rng: np.random.Generator) -> tuple[str, list[Any]]:
    column = _pick(rng, list(EDGE_COLUMNS))
    form = rng.random()
    if form < 0.45:
        op = _pick(rng, ["=", "<>", "<", "<=", ">", ">="])
        v, p = _value(rng, column)
        return (f"{v} {op} {column}", p) if rng.random() < 0.1 else (f"{column} {op} {v}", p)
    if form < 0.6:
        parts = [_value(rng, column) for _ in range(int(rng.integers(1, 5)))]
        neg = "NOT " if rng.random() < 0.3 else ""
        return f"{column} {neg}IN ({', '.join(v for v, _ in parts)})", [x for _, p in parts for x in p]
    if form < 0.72:
        (lo, lo_p), (hi, hi_p) = _value(rng, column), _value(rng, column)
        neg = "NOT " if rng.random() < 0.2 else ""
        return f"{column} {neg}BETWEEN {lo} AND {hi}", lo_p + hi_p
    if form < 0.77:
        col = _pick(rng, [*EDGE_COLUMNS, "tags", "nums"])
        return f"{col} IS {'NOT ' if rng.random() < 0.5 else ''}NULL", []
    if form < 0.84:
        w = _pick(rng, EDGE_WORDS)
        if rng.random() < 0.5:
            return "starts_with(s, ?)", [w]
        return "s LIKE ?", [_pick(rng, [w + "%", w, "%", w + "_%", "a%", "É%"])]
    if form < 0.92:
        if rng.random() < 0.5:
            return "list_contains(tags, ?)", [_pick(rng, [*EDGE_WORDS[:8], None, 3])]
        return "list_contains(nums, ?)", [_pick(rng, [*range(-3, 6), None, 2 ** 70, np.int64(2), 2.5])]
    text = _pick(rng, ["b", "NOT b", "b = true", "b <> false", "b = ?", "b IS TRUE"])
    return text, [bool(rng.integers(2))] if "?" in text else []


def _edge_expr(rng: np.random.Generator, depth: int = 0) -> tuple[str, list[Any]]:
    r = rng.random()
    if depth >= 2 or r < 0.6:
        return _edge_leaf(rng)
    if r < 0.7:
        e, p = _edge_expr(rng, depth + 1)
        return f"NOT ({e})", p
    parts = [_edge_expr(rng, depth + 1) for _ in range(int(rng.integers(2, 4)))]
    joiner = " AND " if r < 0.85 else " OR "
    return joiner.join(f"({e})" for e, _ in parts), [v for _, p in parts for v in p]


FILTERS_PER_CASE = 5_000


@pytest.mark.parametrize("chunks", [1, 3])
def test_fast_path_agrees_with_duckdb_on_edge_values(chunks: int) -> None:
    rng = np.random.default_rng(100 + chunks)
    engine = FilterEngine(_edge_table(rng, 300, chunks))
    disagreements: list[str] = []
    answered: dict[str, int] = dict.fromkeys(FAST_COLUMNS, 0)
    fast = 0
    for _ in range(FILTERS_PER_CASE):
        text, params = _edge_expr(rng)
        try:
            got = engine.fast_rows(text, params)
        except FilterError:  # a parameter with no Python value: refused before either engine
            with pytest.raises(FilterError):
                engine.duckdb_rows(text, params)
            continue
        if got is None:
            continue  # DuckDB answers: nothing to compare
        fast += 1
        for column in answered:
            answered[column] += re.search(rf"\b{column}\b", text) is not None
        try:
            want = engine.duckdb_rows(text, params)
        except FilterError as exc:
            disagreements.append(f"{text!r} {params!r}: DuckDB refuses ({exc}), the fast path answers")
            continue
        if not np.array_equal(got, want):
            disagreements.append(f"{text!r} {params!r}: fast path only {np.setdiff1d(got, want)[:5]}, "
                                 f"DuckDB only {np.setdiff1d(want, got)[:5]}")
    assert not disagreements, f"{len(disagreements)} disagreements, e.g.\n" + "\n".join(disagreements[:10])
    # the comparison means something only where the fast path answered: half the filters, on
    # every column type it compiles
    assert fast >= 0.4 * FILTERS_PER_CASE, fast
    assert min(answered.values()) >= 100, answered


def test_filter_results_are_kept_per_version_and_never_for_clock_filters(tmp_db):
    """A repeated filter is answered from the version's result cache (the same read-only
    array); a filter that reads the clock is evaluated every time; a new version starts empty."""
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": str(i), "vector": [1.0, float(i)], "n": i,
              "day": dt.datetime(2020, 1, 1) + dt.timedelta(days=i)} for i in range(50)])
    engine = tbl._executor.filter_engine(tbl._current())
    first = engine.rows("n < ?", [10])
    assert engine.rows("n < ?", [10]) is first and not first.flags.writeable
    assert engine.rows("n < ?", [11]) is not first and engine.rows("n < ?", [10.0]).size == 10
    assert engine.rows("day < now() AND n < ?", [10]) is not engine.rows("day < now() AND n < ?", [10])
    assert tbl.count("n < ?", 10) == 10
    tbl.delete(ids=["0"])
    assert tbl.count("n < ?", 10) == 9
