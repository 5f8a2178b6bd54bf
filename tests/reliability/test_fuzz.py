"""Hostile and malformed input, fuzzed with Hypothesis (derandomized: the same examples on every
run, no example database written).

Filters: a filter is either refused with FilterError or evaluated exactly like a Python model of
the same expression; never another exception, never a read of a file outside the store (an
inotify watch on the test's directory sees every open). The add path: a batch either lands
whole, equal to a model, or is refused with an InvalidArgumentError that leaves the table's
version, rows and files as they were.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime as dt
import itertools
import math
import os
import re
import signal
import struct
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import vecstore
from vecstore import FilterError, InvalidArgumentError

FUZZ = settings(derandomize=True, database=None, deadline=None, print_blob=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                       HealthCheck.data_too_large, HealthCheck.large_base_example])


# -- watching the test's directory: nothing outside the store may be opened or created --------------
class DirWatch:
    """inotify on one directory: every open, read, write, create or delete of an entry in it."""

    def __init__(self, directory: Path) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if libc.inotify_add_watch(self.fd, os.fsencode(directory), 0xFFF) < 0:  # IN_ALL_EVENTS
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def events(self) -> list[tuple[int, str]]:
        out = []
        while True:
            try:
                buf = os.read(self.fd, 65536)
            except BlockingIOError:
                return out
            i = 0
            while i < len(buf):
                _, mask, _, n = struct.unpack_from("iIII", buf, i)
                out.append((mask, os.fsdecode(buf[i + 16:i + 16 + n].rstrip(b"\0"))))
                i += 16 + n

    def close(self) -> None:
        os.close(self.fd)


class Outside:
    """A file next to the store that no filter may read, and an inotify watch on the test's
    directory that proves no filter opened, read or created anything there."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path
        self.sentinel = tmp_path / "sentinel.csv"
        self.sentinel.write_text("a,b\n1,2\n")
        try:
            self.watch: DirWatch | None = DirWatch(tmp_path)
        except (OSError, AttributeError):  # not Linux, or inotify not allowed: the listing only
            self.watch = None
        self.reset()

    def reset(self) -> None:
        self.before = {p.name for p in self.dir.iterdir()}
        if self.watch is not None:
            self.watch.events()  # drop what the setup did (and the listing just above)

    def check(self) -> None:
        if self.watch is not None:
            assert self.watch.events() == [], "a filter opened, read or wrote a file outside the store"
            self.sentinel.read_text()  # a positive control: the watch does see a read
            assert any(name == self.sentinel.name for _, name in self.watch.events())
        assert {p.name for p in self.dir.iterdir()} == self.before, "a filter created or removed a file"

    def close(self) -> None:
        if self.watch is not None:
            self.watch.close()


@pytest.fixture
def outside(tmp_path):
    o = Outside(tmp_path)
    yield o
    o.close()


# -- the table the filters run on, and a Python model of it --------------------------------------
STRINGS = ["alpha", "beta", "Gamma", "it's", "ünï", "日本語", "", "a%b", "x_y", "😀", "O'Brien",
           "end", "--", "/*x*/", "a;b", "NULL", "nul\x00byte"]
ROWS = [
    {
        "id": f"r{i}",
        "vector": [1.0 + i % 5, 1.0 - i % 3, 0.5 * (i % 4), 1.0],
        "n": (i * 7) % 41 - 20,
        "m": None if i % 4 == 0 else i - 10,
        "x": (i % 9) * 0.25 - 1.0,
        "größe": i * 0.5,
        "s": STRINGS[i % len(STRINGS)],
        "b": i % 3 == 0,
        "tags": None if i % 7 == 3 else [f"t{i % 3}"] + (["common"] if i % 2 else []),
    }
    for i in range(24)
]


@pytest.fixture
def ftbl(tmp_path, outside):
    tbl = vecstore.connect(tmp_path / "store").create_table("t", dim=4)
    tbl.add(ROWS)
    outside.reset()
    return tbl


Expr = tuple[str, Callable[[dict[str, Any]], Any]]  # SQL text and its value on a row (None = NULL)


def _and(a: Any, b: Any) -> Any:
    if a is False or b is False:
        return False
    return None if a is None or b is None else True


def _or(a: Any, b: Any) -> Any:
    if a is True or b is True:
        return True
    return None if a is None or b is None else False


def _not(a: Any) -> Any:
    return None if a is None else not a


def _null(f: Callable[..., Any]) -> Callable[..., Any]:
    return lambda *v: None if any(x is None for x in v) else f(*v)


def _quote(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _column(name: str, *spellings: str) -> st.SearchStrategy[Expr]:
    return st.sampled_from(spellings).map(lambda sql: (sql, lambda r: r[name]))


def _const(sql: str, value: Any) -> Expr:
    return sql, lambda r: value


_sep = st.sampled_from([" ", " ", "  ", "\n", "\t"])
_kw = {k: st.sampled_from([k, k.lower(), k.capitalize()]) for k in ("AND", "OR", "NOT", "IN", "BETWEEN",
                                                                     "LIKE", "IS", "NULL")}

# Numbers: integers and quarters only, so DuckDB's DECIMAL/DOUBLE arithmetic and Python's agree
# exactly; at most four leaves, so no product overflows.
_num_leaf = st.one_of(
    _column("n", "n", "N", '"n"'), _column("m", "m", "M", '"m"'), _column("x", "x", "X"),
    _column("größe", '"größe"', "größe"),
    st.integers(-30, 30).map(lambda v: _const(str(v), v)),
    st.integers(-40, 40).map(lambda k: _const(repr(k / 4), k / 4)),
)


def _num_extend(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    def binary(sql: str, f: Callable[[Any, Any], Any]) -> st.SearchStrategy[Expr]:
        return st.tuples(inner, inner).map(lambda ab: (sql.format(ab[0][0], ab[1][0]),
                                                       lambda r: f(ab[0][1](r), ab[1][1](r))))

    def unary(sql: str, f: Callable[[Any], Any]) -> st.SearchStrategy[Expr]:
        return inner.map(lambda a: (sql.format(a[0]), lambda r: f(a[1](r))))

    return st.one_of(
        binary("({} + {})", _null(lambda a, b: a + b)),
        binary("({} - {})", _null(lambda a, b: a - b)),
        binary("({} * {})", _null(lambda a, b: a * b)),
        unary("abs({})", _null(abs)),
        unary("(- {})", _null(lambda a: -a)),
        binary("coalesce({}, {})", lambda a, b: a if a is not None else b),
        binary("greatest({}, {})", lambda a, b: max((v for v in (a, b) if v is not None), default=None)),
    )


numbers = st.recursive(_num_leaf, _num_extend, max_leaves=4)

_CMP = {"=": lambda a, b: a == b, "<>": lambda a, b: a != b, "!=": lambda a, b: a != b,
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
        ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _compare(left: st.SearchStrategy[Expr], right: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.tuples(left, st.sampled_from(sorted(_CMP)), right, _sep).map(
        lambda t: (f"{t[0][0]}{t[3]}{t[1]}{t[3]}{t[2][0]}",
                   lambda r: _null(_CMP[t[1]])(t[0][1](r), t[2][1](r))))


def _like_regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern),
                      re.DOTALL)


_string_lits = st.one_of(st.sampled_from(STRINGS[:-1]), st.text(st.characters(exclude_characters="\x00"),
                                                                 max_size=6))
_patterns = st.sampled_from(["a%", "%a", "%a%", "_eta", "%'%", "日%", "%😀", "", "%", "_", "__%", "O'%",
                             "%-%", "x\\_y", "%;%"])
_s = _column("s", "s", "S", '"s"')


def _string_predicates() -> st.SearchStrategy[Expr]:
    lits = _string_lits.map(lambda v: _const(_quote(v), v))
    return st.one_of(
        _compare(_s, lits),
        st.tuples(_s, _kw["LIKE"], _patterns, st.booleans()).map(
            lambda t: (f"{t[0][0]}{' NOT' if t[3] else ''} {t[1]} {_quote(t[2])}",
                       lambda r: _null(lambda v: bool(_like_regex(t[2]).fullmatch(v)) != t[3])(t[0][1](r)))),
        st.tuples(st.sampled_from(["=", "<", ">="]), st.integers(0, 6)).map(
            lambda t: (f"length(s) {t[0]} {t[1]}", lambda r: _CMP[t[0]](len(r["s"]), t[1]))),
        _string_lits.map(lambda v: (f"lower(s) = {_quote(v)}", lambda r: r["s"].lower() == v)),
        _string_lits.map(lambda v: (f"starts_with(s, {_quote(v)})", lambda r: r["s"].startswith(v))),
        _string_lits.map(lambda v: (f"contains(s, {_quote(v)})", lambda r: v in r["s"])),
        st.lists(st.sampled_from([f"r{i}" for i in range(30)]), min_size=1, max_size=4).map(
            lambda ids: (f"id IN ({', '.join(map(_quote, ids))})", lambda r: r["id"] in ids)),
        st.sampled_from(["t0", "t1", "t2", "common", "nope"]).map(
            lambda t: (f"list_contains(tags, {_quote(t)})", lambda r: _null(lambda v: t in v)(r["tags"]))),
        st.integers(0, 3).map(
            lambda k: (f"len(tags) = {k}", lambda r: _null(lambda v: len(v) == k)(r["tags"]))),
    )


def _bool_leaves() -> st.SearchStrategy[Expr]:
    return st.one_of(
        _compare(numbers, numbers),
        _string_predicates(),
        st.tuples(numbers, numbers, numbers, _kw["BETWEEN"], _kw["AND"]).map(
            lambda t: (f"({t[0][0]} {t[3]} {t[1][0]} {t[4]} {t[2][0]})",
                       lambda r: _and(_null(lambda a, lo: a >= lo)(t[0][1](r), t[1][1](r)),
                                      _null(lambda a, hi: a <= hi)(t[0][1](r), t[2][1](r))))),
        st.tuples(numbers, st.lists(st.integers(-20, 20), min_size=1, max_size=5), st.booleans(),
                  _kw["IN"]).map(
            lambda t: (f"({t[0][0]}{' NOT' if t[2] else ''} {t[3]} ({', '.join(map(str, t[1]))}))",
                       lambda r: _null(lambda a: (a in t[1]) != t[2])(t[0][1](r)))),
        st.tuples(numbers, st.booleans(), _kw["IS"], _kw["NULL"]).map(
            lambda t: (f"({t[0][0]} {t[2]}{' NOT' if t[1] else ''} {t[3]})",
                       lambda r: (t[0][1](r) is None) != t[1])),
        _column("b", "b", "B", '"b"'),
        st.sampled_from([("TRUE", True), ("false", False), ("NULL", None)]).map(lambda c: _const(*c)),
    )


def _bool_extend(inner: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
    return st.one_of(
        st.tuples(inner, _kw["AND"], inner, _sep).map(
            lambda t: (f"({t[0][0]}){t[3]}{t[1]}{t[3]}({t[2][0]})", lambda r: _and(t[0][1](r), t[2][1](r)))),
        st.tuples(inner, _kw["OR"], inner, _sep).map(
            lambda t: (f"({t[0][0]}){t[3]}{t[1]}{t[3]}({t[2][0]})", lambda r: _or(t[0][1](r), t[2][1](r)))),
        st.tuples(inner, _kw["NOT"]).map(lambda t: (f"{t[1]} ({t[0][0]})", lambda r: _not(t[0][1](r)))),
    )


booleans = st.recursive(_bool_leaves(), _bool_extend, max_leaves=6)


def expected(expr: Expr) -> set[str]:
    return {r["id"] for r in ROWS if expr[1](r) is True}


# Fragments of SQL, hostile and not, for filters that are mostly nonsense.
FRAGMENTS = [
    "n", "m", "x", '"größe"', "größe", "s", "b", "tags", "id", "nope", "yeer", "t.n", "main.t.n", '"n"""',
    "__vecstore_row", "__vecstore_rows", "_x", "rowid", "score", "vector", "*",
    "=", "<>", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "||", "::", "->", "->>", "@", "&", "~",
    "AND", "OR", "NOT", "IS", "NULL", "IN", "BETWEEN", "LIKE", "ILIKE", "SIMILAR TO", "ESCAPE", "CASE",
    "WHEN", "THEN", "ELSE", "END", "CAST", "AS", "INTEGER", "JSON", "BLOB", "VARCHAR", "COLLATE", "nocase",
    "1", "0", "-1", "2.5", "1e308", "99999999999999999999999999", "'a'", "''", "'it''s'", "'", '"',
    "TRUE", "FALSE", "DATE '2020-01-01'", "INTERVAL 1 DAY", "[1, 2]", "{'a': 1}", "$1", "$x", "?",
    "$$x$$", "E'\\x41'", "(", ")", "(", ")", ",", ";", "--", "/*", "*/", ".", "[", "]", "{", "}", "\\",
    "SELECT", "SELECT 1", "FROM", "WHERE", "UNION", "UNION ALL SELECT 1", "DROP TABLE t", "DELETE FROM t",
    "INSERT INTO t VALUES (1)", "UPDATE t SET n = 1", "CREATE TABLE x (a INT)", "ATTACH", "DETACH", "COPY",
    "TO", "PRAGMA", "SET", "RESET", "INSTALL", "LOAD", "CALL", "EXPORT DATABASE", "IMPORT DATABASE",
    "CHECKPOINT", "WITH", "VALUES (1)", "EXPLAIN", "DESCRIBE", "SUMMARIZE", "EXISTS", "ANY", "ALL", "LATERAL",
    "read_csv(", "read_csv_auto(", "read_text(", "read_blob(", "read_json(", "read_parquet(", "glob(",
    "getenv(", "current_setting(", "getvariable(", "query(", "query_table(", "sniff_csv(",
    "parquet_metadata(",
    "duckdb_settings()", "pragma_version()", "range(", "generate_series(", "list_transform(", "x -> x",
    "lambda x: x", "unnest(", "count(*)", "sum(n)", "row_number() OVER ()", "repeat(", "lpad(", "format(",
    "printf(", "nextval(", "setseed(", "random()", "uuid()", "abs(", "length(", "list_contains(",
    "'{sentinel}'", "'/etc/passwd'", "'file:///etc/passwd'", "'http://127.0.0.1:9/x'", "'s3://b/k'",
    "'~/.duckdbrc'", "é", "日本", "😀", "\u202e", "\ufeff", "\u00a0", "\u2028",
    "\t", "\n", "\r", "\x01", "\x00",
]


def fragments(sentinel: Path) -> st.SearchStrategy[str]:
    return st.sampled_from([f.replace("{sentinel}", str(sentinel)) for f in FRAGMENTS])


def soup(sentinel: Path) -> st.SearchStrategy[str]:
    return st.lists(st.tuples(fragments(sentinel), st.sampled_from(["", " ", " ", "\n"])), max_size=14).map(
        lambda parts: "".join(f + s for f, s in parts))


def spliced(sentinel: Path) -> st.SearchStrategy[str]:
    """A valid expression with a hostile fragment inserted somewhere."""
    return st.tuples(booleans, fragments(sentinel), st.floats(0, 1)).map(
        lambda t: t[0][0][:int(t[2] * len(t[0][0]))] + t[1] + t[0][0][int(t[2] * len(t[0][0])):])


def deep() -> st.SearchStrategy[tuple[str, Expr]]:
    """A valid expression under many parentheses or NOTs: refused for depth, or counted right."""
    def wrap(t: tuple[Expr, str, int]) -> tuple[str, Expr]:
        (sql, f), how, k = t
        if how == "(":
            return "(" * k + sql + ")" * k, (sql, f)
        return "NOT (" * k + sql + ")" * k, (sql, (lambda r: f(r)) if k % 2 == 0 else (lambda r: _not(f(r))))
    return st.tuples(booleans, st.sampled_from(["(", "NOT"]), st.integers(1, 3000)).map(wrap)


def run_filter(tbl: vecstore.Table, text: Any, *params: Any) -> set[str] | None:
    """The ids the filter selects, or None if it was refused (FilterError, and nothing else).
    The count and the search path must agree."""
    try:
        n = tbl.count(text, *params)
    except FilterError:
        with pytest.raises(FilterError):
            tbl.search([1, 1, 1, 1]).where(text, *params).limit(100).to_list()
        return None
    assert isinstance(n, int) and 0 <= n <= len(ROWS)
    hits = tbl.search([1, 1, 1, 1]).where(text, *params).limit(100).to_list()
    assert len(hits) == n
    return {h["id"] for h in hits}


# -- filter fuzz tests ------------------------------------------------------------------------------
def test_valid_expressions_count_what_python_counts(ftbl, outside):
    @settings(FUZZ, max_examples=250)
    @given(booleans)
    def check(expr: Expr) -> None:
        got = run_filter(ftbl, expr[0])
        assert got == expected(expr), expr[0]

    check()
    outside.check()


def test_deeply_nested_expressions_are_refused_or_right(ftbl, outside):
    @settings(FUZZ, max_examples=60)
    @given(deep())
    def check(case: tuple[str, Expr]) -> None:
        got = run_filter(ftbl, case[0])
        assert got is None or got == expected(case[1])

    check()
    outside.check()


@pytest.mark.parametrize("kind", ["soup", "spliced", "text"])
def test_garbage_filters_are_refused_or_harmless(ftbl, outside, kind):
    strategy = {
        "soup": soup(outside.sentinel),
        "spliced": spliced(outside.sentinel),
        "text": st.text(st.characters(exclude_categories=()), max_size=40),  # lone surrogates too
    }[kind]
    outcomes = {"refused": 0, "ran": 0}

    @settings(FUZZ, max_examples=200)
    @given(strategy)
    def check(text: str) -> None:
        outcomes["refused" if run_filter(ftbl, text) is None else "ran"] += 1

    check()
    outside.check()
    assert outcomes["refused"] > 0
    print(f"\n{kind}: {outcomes}")


def test_filter_parameters_of_any_type_are_bound_or_refused(ftbl, outside):
    values = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(st.characters(
        exclude_categories=())), st.binary(max_size=8), st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=2), st.integers(), max_size=2), st.datetimes(),
        st.just(object()), st.just(10**40), st.just(float("nan")))

    @settings(FUZZ, max_examples=200)
    @given(st.sampled_from(["s = ?", "n = ?", "n > ? OR s = ?", "list_contains(tags, ?)", "?", "x < ?",
                            "s LIKE ?", "id IN (?, ?)"]), st.lists(values, max_size=3))
    def check(text: str, params: list[Any]) -> None:
        run_filter(ftbl, text, *params)

    check()
    assert ftbl.count("s = ?", "it's' OR 1=1 --") == 0  # a parameter is a value, never SQL
    assert ftbl.count("s = ?", "nul\x00byte") == 1
    outside.check()


def hostile(sentinel: Path) -> list[str]:
    tmp = sentinel.parent
    replace9 = "s"
    for _ in range(9):
        replace9 = f"replace({replace9}, 's', 'ssssssssss')"
    return [
        f"read_csv('{sentinel}') IS NOT NULL",
        f"(SELECT count(*) FROM read_csv('{sentinel}')) > 0",
        f"n IN (SELECT content FROM read_text('{sentinel}'))",
        f"read_text('{sentinel}') IS NULL",
        f"read_blob('{sentinel}') IS NULL",
        f"length(read_json_auto('{sentinel}')) > 0",
        f"read_parquet('{sentinel}') IS NULL",
        f"EXISTS (SELECT 1 FROM '{sentinel}')",
        f"EXISTS (FROM '{sentinel}')",
        f"len(glob('{tmp}/*')) > 0",
        f"sniff_csv('{sentinel}') IS NULL",
        f"n = 1) UNION ALL SELECT __vecstore_row FROM read_csv('{sentinel}') WHERE (1=1",
        f"n = 1; COPY (SELECT 1) TO '{tmp}/out.csv'",
        f"COPY __vecstore_rows TO '{tmp}/out.csv'",
        f"n = 1); COPY (SELECT 1) TO '{tmp}/out.csv'; SELECT (1",
        f"ATTACH '{tmp}/x.db' AS x",
        f"n = 1); ATTACH '{tmp}/x.db' AS x; SELECT (1",
        f"n = 1); EXPORT DATABASE '{tmp}/exp'; SELECT (1",
        "getenv('HOME') IS NOT NULL",
        "current_setting('home_directory') = ''",
        "getvariable('x') IS NULL",
        "SET enable_external_access = true",
        "n = 1); SET lock_configuration = false; SELECT (1",
        "RESET ALL",
        "PRAGMA version",
        "INSTALL httpfs",
        "LOAD httpfs",
        "read_csv('http://127.0.0.1:9/x') IS NULL",
        "CREATE MACRO m(x) AS x",
        "CALL pragma_version()",
        "query('SELECT 1') IS NOT NULL",
        "query_table('__vecstore_rows') IS NOT NULL",
        "list_transform(tags, x -> read_text(x)) IS NULL",
        "[t FOR t IN tags] IS NULL",
        "list_contains(list_filter(tags, lambda t: t = 'a'), 'a')",
        "row_number() OVER () > 0",
        "count(*) > 0",
        "sum(n) OVER () > 0",
        "nextval('seq') > 0",
        "setseed(0.5) IS NULL",
        "random() < 2",
        "uuid() IS NOT NULL",
        "__vecstore_row >= 0",
        "score > 0",
        "vector IS NULL",
        "rowid >= 0",
        "t.n > 1",
        "main.t.n > 1",
        "__vecstore_rows.n > 1",
        "{'a': n}.a > 1",
        "COLUMNS('n') > 0",
        "COLUMNS(*) > 0",
        "* > 0",
        "n > 0 ORDER BY n",
        "n > 0 LIMIT 1",
        "n > 0 GROUP BY n",
        "n > 0 /* hidden */",
        "/**/ n > 0",
        "n > 0 --",
        "n = 'unbalanced",
        'n = "unbalanced',
        "((n > 0)",
        "n > 0))",
        "n > 0 OR (",
        "n IN (1, 2",
        "n\u00a0> 1 AND ｎ > 1",
        "n > 1\x00 OR true",
        "s = 'a\x00b'",
        "s = '\udcff'",
        "\udcff",
        " \n\t ",
        "repeat(s, 1000000000) = ''",
        "lpad(s, 1000000000, 'x') = ''",
        "rpad(s, 1000000000, 'x') = ''",
        f"length({replace9}) > 0",
        "format('{:>1000000000}', s) = ''",
        "NOT " * 2000 + "b",
        "abs(" * 300 + "n" + ")" * 300 + " > 1",
        "(" * 20_000 + "b" + ")" * 20_000,
        "[" * 5000 + "1" + "]" * 5000 + " IS NOT NULL",
        " OR ".join(["n = 1"] * 20_000),
        " OR ".join(["n = 1"] * 9_000),
        # bounded per row (vecstore/query/bounds.py): quadratic functions on long operands,
        # values built from constants or many copies, thousands of arguments
        f"levenshtein(s, '{'x' * 50_000}') > 0",
        f"damerau_levenshtein('{'x' * 20_000}', s || s) > 0",
        f"jaro_winkler_similarity(s, '{'y' * 40_000}') > 0",
        f"length(s || '{'z' * 70_000}') > 0",
        f"len(list_value({', '.join(['s'] * 10_000)})) > 0",
        f"length(concat({', '.join(['s'] * 5_000)})) > 0",
        "greatest(" + ", ".join(["n"] * 1_000) + ") > 0",
        "CASE " + " ".join(f"WHEN n = {i} THEN {i}" for i in range(1_000)) + " END > 0",
        f"'{'q' * 60_000}' LIKE '%_%_b'",
    ]


def test_hostile_filters_are_refused_and_touch_nothing(ftbl, outside):
    cases = hostile(outside.sentinel)
    for text in cases:
        with pytest.raises(FilterError) as err:
            ftbl.count(text)
        assert isinstance(err.value, ValueError) and str(err.value), text
        with pytest.raises(FilterError):
            ftbl.search([1, 1, 1, 1]).where(text)
        with pytest.raises(FilterError):
            ftbl.delete(text)
    for not_text in (5, b"n > 1", ["n > 1"], 1.5):
        with pytest.raises(FilterError):
            ftbl.count(not_text)
    assert len(ftbl) == len(ROWS) and ftbl.version == 2
    outside.check()
    print(f"\n{len(cases)} hostile filters refused")


def test_hostile_filters_sent_to_the_server_are_4xx_and_touch_nothing(ftbl, outside):
    """The same filters through every server route that takes one: each answered 400 with a
    FilterError body, nothing written, nothing outside the store opened, the server alive."""
    from server.harness import KEY, ThreadServer, request

    from vecstore.server import ServerSettings

    srv = ThreadServer(ftbl.path.parent, ServerSettings(api_key=KEY, warm=False)).start()
    cases = hostile(outside.sentinel)
    try:
        assert request(srv.url, "GET", "/tables/t", key=KEY)[0] == 200  # the server opens the table
        outside.reset()  # (which opens the store's directory)
        for text in cases:
            for route, body in (("count", {}), ("search", {"vector": [1, 1, 1, 1]}),
                                ("search_batch", {"vectors": [[1, 1, 1, 1]]}), ("delete", {})):
                status, _, payload = request(srv.url, "POST", f"/tables/t/{route}",
                                             {**body, "where": text}, key=KEY)
                assert status == 400 and payload["error"]["type"] == "FilterError", \
                    (route, text[:80], status, payload)
        outside.check()
        status, _, payload = request(srv.url, "GET", "/tables/t", key=KEY)
        assert status == 200 and payload["rows"] == len(ROWS) and payload["version"] == 2
    finally:
        srv.stop()
    assert len(ftbl) == len(ROWS) and ftbl.version == 2


def test_huge_and_deep_filters_are_answered_or_refused_never_a_crash(ftbl):
    ors = " OR ".join(f"n={i % 30 - 20}" for i in range(1000))
    assert ftbl.count(ors) == sum(1 for r in ROWS if r["n"] <= 9)
    # Regression: 9,000 ORs (72,000 characters, under the length limit) overflowed DuckDB's
    # stack and killed the process with SIGSEGV.
    for n in (1001, 9000, 10_000):
        with pytest.raises(FilterError, match="AND/OR.*IN"):
            ftbl.count(" OR ".join(f"n={i % 30 - 20}" for i in range(n)))
    with pytest.raises(FilterError, match="AND/OR"):
        ftbl.count(" AND ".join(f"n>{-30 - i % 5}" for i in range(9000)))
    ins = f"n IN ({', '.join(str(i) for i in range(-20, 15_000))})"
    assert ftbl.count(ins) == len(ROWS)
    nested = "(" * 500 + "n > 3" + ")" * 500
    assert ftbl.count(nested) == sum(1 for r in ROWS if r["n"] > 3)
    nots = "NOT (" * 100 + "n > 3" + ")" * 100
    assert ftbl.count(nots) == sum(1 for r in ROWS if r["n"] > 3)
    with pytest.raises(FilterError, match="100,000"):
        ftbl.count(" OR ".join(["n = 1"] * 20_000))


def test_unicode_and_awkward_column_names(tmp_db):
    names = ["größe", 'a "quoted" name', "select", "naïve column", "日本", "x-y", "1st", "Größe2"]
    tbl = tmp_db.create_table("u", dim=2)
    tbl.add([{"id": str(i), "vector": [1, i + 1], **{c: i + j for j, c in enumerate(names)}}
             for i in range(10)])
    assert tbl.count('"größe" > 3') == 6
    assert tbl.count("größe > 3") == 6
    assert tbl.count('"a ""quoted"" name" >= 5') == 6
    assert tbl.count('"select" = 4') == 1
    assert tbl.count('"naïve column" < 5') == 2
    assert tbl.count('"日本" BETWEEN 4 AND 6') == 3
    assert tbl.count('"x-y" = 5 OR "1st" = 7') == 2
    for bad in ["x-y = 5", "select = 4", '"a "quoted" name" > 1', "grösse > 1", "1st = 7"]:
        with pytest.raises(FilterError):
            tbl.count(bad)
    assert {h["id"] for h in tbl.search([1, 1]).where('"größe" > ?', 7).limit(10).to_list()} == {"8", "9"}
    # the names are stored and come back as given
    assert set(names) <= set(tbl.schema.names)


def test_lone_surrogates_and_nul_bytes_are_clear_errors(tmp_db):
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": "a", "vector": [1, 0], "s": "nul\x00byte"}])
    for call in (lambda: tbl.count("s = '\udcff'"), lambda: tbl.count("s = ?", "\udcff"),
                 lambda: tbl.count("s = 'x'\x00"), lambda: tbl.search([1, 0]).where("\ud800 = 1")):
        with pytest.raises(FilterError):
            call()
    for row in ({"id": "\udcff", "vector": [1, 0]}, {"id": "b\x00", "vector": [1, 0]},
                {"id": "b", "vector": [1, 0], "\udcff": 1}, {"id": "b", "vector": [1, 0], "a\x00": 1}):
        with pytest.raises(InvalidArgumentError):
            tbl.add([row])
    assert tbl.count("s = ?", "nul\x00byte") == 1 and len(tbl) == 1 and tbl.version == 2
    assert tbl.get(["a"])[0]["s"] == "nul\x00byte"


def test_a_pattern_filter_cannot_stall_the_process(tmp_path):
    child = textwrap.dedent(f"""
        import signal, vecstore
        tbl = vecstore.connect({str(tmp_path / "store")!r}).create_table("t", dim=2)
        tbl.add([{{"id": "a", "vector": [1, 0], "s": "a" * 100}}])
        signal.alarm(2)  # default action: the process dies if the filter is still running
        print(tbl.count("s LIKE '%_%_%_%_%_%_%_%_b'"))
    """)
    proc = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=120)
    assert proc.returncode != -signal.SIGALRM, "the filter was still running after 2 s"
    refused = proc.returncode != 0 and "FilterError" in proc.stderr
    assert refused and "regexp_matches" in proc.stderr, proc.stderr


# -- the add path ----------------------------------------------------------------------------------
DIM = 3
BAD = object()  # a kind that no column accepts
MISSING = object()


def _value(kind: str, strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[tuple[Any, Any]]:
    return strategy.map(lambda v: (v, kind))


good_values = st.one_of(
    st.just((None, None)),
    _value("int", st.integers(-(2**53), 2**53)),
    _value("int", st.sampled_from([0, -1, 2**53])),
    _value("float", st.floats(allow_nan=True, allow_infinity=True)),
    _value("bool", st.booleans()),
    _value("str", st.text(max_size=12)),
    _value("str", st.sampled_from(["", "nul\x00", "😀", "--", "'; DROP TABLE t; --"])),
    _value("list_int", st.lists(st.integers(-5, 5), min_size=1, max_size=3)),
    _value("list_str", st.lists(st.text(max_size=3), min_size=1, max_size=3)),
    _value("list_null", st.just([])),
    _value("ts", st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1))),
)
bad_values = st.sampled_from([{"k": 1}, b"\x00\xff", 1j, [[1]], [1, "a"], 2**64, -(2**63) - 1, "\udcff",
                              dt.time(1, 2), object(), {1, 2}]).map(lambda v: (v, BAD))
good_names = st.sampled_from(["a", "b", "c", "größe", "tags", "when"])
bad_names = st.sampled_from(["_x", "score", "", "bad\x01", "\udcff", 5]).map(lambda n: (n,))  # (n,): invalid
good_vectors = st.lists(st.integers(-3, 3), min_size=DIM, max_size=DIM).filter(any)
good_vecs = st.one_of(good_vectors.map(lambda v: (v, v)),
                      good_vectors.map(lambda v: (np.array(v, dtype=np.float64), v)))
bad_vecs = st.sampled_from([MISSING, None, [1, 2], [1, 2, 3, 4], [0, 0, 0], [1, float("nan"), 1],
                            [math.inf, 1, 1], "abc", [[1, 2, 3]], {"a": 1}, [1, None, 1], [1e39, 1, 1],
                            ["a", "b", "c"]]).map(lambda v: (v, None))
good_ids = st.one_of(
    st.just((MISSING, "auto")), st.just((None, "auto")),
    st.sampled_from([f"k{i}" for i in range(40)] + ["größe", "😀", "a'b", "--"]).map(lambda i: (i, i)),
    st.integers(0, 30).map(lambda i: (i, str(i))),
)
bad_ids = st.sampled_from(["", "x\x00", True, 1.5, b"id", "x" * 1025, "\udcff"]).map(lambda i: (i, None))


def _row(ids: Any, vecs: Any, attrs: Any) -> st.SearchStrategy[Any]:
    return st.tuples(ids, vecs, st.lists(attrs, max_size=4, unique_by=lambda t: str(t[0])))


# Good rows give each column one kind, so whole batches of them are often valid; any_row mixes
# kinds and invalid names and values freely (across batches too: "a" may hold ints, then strings).
_when = st.datetimes(min_value=dt.datetime(1970, 1, 1), max_value=dt.datetime(2100, 1, 1))
_typed = {
    "a": _value("int", st.integers(-(2**53), 2**53)),
    "b": _value("str", st.text(max_size=12)),
    "c": _value("float", st.floats(allow_nan=True, allow_infinity=True)),
    "größe": _value("int", st.integers(0, 100)),
    "tags": _value("list_str", st.lists(st.text(max_size=3), min_size=1, max_size=3)),
    "when": _value("ts", _when),
}
good_attrs = st.sampled_from(sorted(_typed)).flatmap(
    lambda name: st.tuples(st.just(name), st.one_of(_typed[name], st.just((None, None)))))
good_row = _row(good_ids, good_vecs, good_attrs)
any_row = _row(st.one_of(good_ids, bad_ids), st.one_of(good_vecs, bad_vecs),
               st.tuples(st.one_of(good_names, bad_names), st.one_of(good_values, bad_values)))
batches = st.one_of(st.lists(good_row, min_size=1, max_size=6),
                    st.lists(st.one_of(good_row, good_row, any_row), min_size=1, max_size=6))


def _merge(kinds: set[Any]) -> Any:
    """The kind of a column holding values of these kinds, or BAD."""
    kinds = kinds - {None}
    if BAD in kinds:
        return BAD
    if kinds <= {"list_int", "list_null"} or kinds <= {"list_str", "list_null"}:
        return max(kinds, key=lambda k: k != "list_null") if kinds else None
    if kinds == {"int", "float"}:
        return "float"
    return next(iter(kinds)) if len(kinds) == 1 else BAD


def _fits(existing: Any, new: Any) -> bool:
    return (existing in (None, new) or new is None or (existing, new) in {("float", "int")}
            or (existing == "list_null" and new in ("list_int", "list_str"))
            or (existing in ("list_int", "list_str") and new == "list_null"))


def _same(stored: Any, given: Any) -> bool:
    if given is None or stored is None:
        return stored is None and given is None
    if isinstance(given, float) and math.isnan(given):
        return isinstance(stored, float) and math.isnan(stored)
    if isinstance(given, list):
        return list(stored) == given
    if isinstance(given, bool) or isinstance(stored, bool):
        return type(stored) is type(given) and stored == given
    return bool(stored == given)  # an int stored in a float column compares equal


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
def test_add_path_state_machine(tmp_path):
    counter = itertools.count()
    tally = {"batches": 0, "accepted": 0, "refused": 0, "rows": 0}

    class AddPath(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            self.tbl = vecstore.connect(tmp_path / f"s{next(counter)}").create_table("t", dim=DIM)
            self.model: dict[str, tuple[list[int], dict[str, Any]]] = {}
            self.kinds: dict[str, Any] = {}

        def predict(self, batch: list[Any],
                    replace: bool) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
            """The rows to pass, and the column kinds after the batch (None: it must be refused)."""
            out, ok, seen = [], True, set()
            columns: dict[str, set[Any]] = {}
            for (rid, rid_str), (vec, vec_ok), attrs in batch:
                row: dict[str, Any] = {}
                if rid is not MISSING:
                    row["id"] = rid
                if vec is not MISSING:
                    row["vector"] = vec
                ok &= rid_str is not None and vec_ok is not None
                if rid_str not in ("auto", None):
                    ok &= rid_str not in seen and (replace or rid_str not in self.model)
                    seen.add(rid_str)
                for name, (value, kind) in attrs:
                    if isinstance(name, tuple):
                        name, ok = name[0], False
                    row[name] = value
                    columns.setdefault(name, set()).add(kind)
                out.append(row)
            kinds = dict(self.kinds)
            for name, ks in columns.items():
                if len(out) > sum(1 for r in out if name in r):
                    ks = ks | {None}
                new = _merge(ks)
                if new is BAD or not _fits(kinds.get(name), new):
                    ok = False
                elif name not in kinds or (new is not None and kinds[name] in (None, "list_null")):
                    kinds[name] = new
            return out, (kinds if ok else None)

        def write(self, batch: list[Any], replace: bool) -> None:
            rows_in, kinds = self.predict(batch, replace)
            files = sorted(os.listdir(self.tbl.path / "data")) if (self.tbl.path / "data").exists() else []
            version, count = self.tbl.version, len(self.tbl)
            tally["batches"] += 1
            try:
                got = (self.tbl.upsert if replace else self.tbl.add)(rows_in)
            except InvalidArgumentError:
                assert kinds is None, f"a valid batch was refused: {rows_in!r}"
                tally["refused"] += 1
                assert (self.tbl.version, len(self.tbl)) == (version, count)
                now = sorted(os.listdir(self.tbl.path / "data")) if (self.tbl.path / "data").exists() else []
                assert now == files, "a refused batch left files behind"
                return
            assert kinds is not None, f"an invalid batch was accepted: {rows_in!r}"
            tally["accepted"] += 1
            tally["rows"] += len(got)
            assert len(got) == len(rows_in) and len(set(got)) == len(got)
            assert self.tbl.version == version + (1 if rows_in else 0)
            self.kinds = kinds
            for rid, row, (_, (_, vec), _) in zip(got, rows_in, batch, strict=True):
                self.model[rid] = (vec, {k: v for k, v in row.items() if k not in ("id", "vector")})

        @rule(batch=batches)
        def add(self, batch: list[Any]) -> None:
            self.write(batch, replace=False)

        @rule(batch=batches)
        def upsert(self, batch: list[Any]) -> None:
            self.write(batch, replace=True)

        @rule()
        def nothing(self) -> None:
            version = self.tbl.version
            assert self.tbl.add([]) == [] and self.tbl.upsert([]) == []
            assert self.tbl.version == version

        @invariant()
        def table_equals_model(self) -> None:
            stored = self.tbl.to_arrow(with_vectors=True).to_pylist()
            assert len(self.tbl) == len(stored) == len(self.model)
            assert set(self.tbl.schema.names) == {"id", "vector", *self.kinds}
            for row in stored:
                vec, attrs = self.model[row["id"]]
                assert row["vector"] == [float(v) for v in vec]
                for name in self.kinds:
                    assert _same(row[name], attrs.get(name)), (row["id"], name, row[name], attrs.get(name))

    run_state_machine_as_test(AddPath, settings=settings(FUZZ, max_examples=30, stateful_step_count=8))
    assert tally["accepted"] >= 30 and tally["refused"] >= 20 and tally["rows"] >= 100, tally
    print(f"\nadd path: {tally}")


def test_a_10_mb_string_round_trips(tmp_path):
    doc = ("vecstore 🧪 größe\n\t'quoted' \"double\" -- /* ;\x00" * 300_000)[: 10 * 2**20]
    assert len(doc.encode()) > 10 * 2**20
    tbl = vecstore.connect(tmp_path / "store").create_table("t", dim=2)
    tbl.add([{"id": "big", "vector": [1, 0], "doc": doc}, {"id": "small", "vector": [0, 1], "doc": "x"}])
    assert tbl.get(["big"])[0]["doc"] == doc
    assert tbl.count("length(doc) = ?", len(doc)) == 1
    assert tbl.search([1, 0]).limit(1).to_list()[0]["doc"] == doc
    tbl.delete(ids=["small"])
    tbl.compact()
    again = vecstore.connect(tmp_path / "store").open_table("t")
    assert again.to_arrow().column("doc").to_pylist() == [doc]


def test_a_column_of_empty_lists_takes_its_type_from_later_rows(tmp_db):
    """Regression: a column first seen holding only [] became list<null> for good, and every
    later non-empty list was refused."""
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": "a", "vector": [1, 0], "tags": []}])
    tbl.add([{"id": "b", "vector": [0, 1], "tags": ["x", "y"]}])
    tbl.add([{"id": "c", "vector": [1, 1], "tags": []}])
    with pytest.raises(vecstore.SchemaError):
        tbl.add([{"id": "d", "vector": [1, 1], "tags": [1]}])
    with pytest.raises(vecstore.SchemaError):
        tbl.add([{"id": "d", "vector": [1, 1], "tags": "x"}])
    assert {r["id"]: r["tags"] for r in tbl.to_arrow().to_pylist()} == {"a": [], "b": ["x", "y"], "c": []}
    assert tbl.count("list_contains(tags, 'x')") == 1 and tbl.count("len(tags) = 0") == 2
