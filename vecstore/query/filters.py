"""``where`` filters: a boolean SQL expression over the table's columns, evaluated by DuckDB.

A filter is checked before it runs. DuckDB parses it (``json_serialize_sql``) inside a fixed
``SELECT _row FROM <view> WHERE (...)`` and the parse tree must be exactly that statement, with
a WHERE clause built only from allowed nodes: column references to the table's own columns,
constants, bound parameters, comparisons, AND/OR/NOT, IN, BETWEEN, IS NULL, CASE, CAST and an
allow-listed set of scalar functions. Subqueries, table functions, lambdas, window functions,
statements and comments never reach execution. As a second wall, the DuckDB connection runs
with external access disabled and its configuration locked, so even a function we missed can
read no file and reach no network. Parameters are bound by DuckDB, never pasted into the SQL;
numpy and pyarrow scalars among them become the Python values they hold first
(:func:`.sqltypes.bind_parameter`), for both DuckDB and the fast path.

Column names resolve exactly: a reference names the column spelled the same way, or else the
one column whose name differs from it only in ASCII case (DuckDB's rule). Tables written before
such pairs were refused may hold two columns that differ only in case (``cc`` and ``CC``); for
those, DuckDB sees the pair under internal aliases and each reference is rewritten to its own
column's alias, and a reference that matches the pair only ignoring case is refused.
"""

from __future__ import annotations

import functools
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..errors import FilterError
from ..storage.batch import column_key
from . import deadline as _deadline
from .bounds import SizeChecker
from .predicates import Node, Predicates
from .sqltypes import bind_parameters

RESULT_CACHE_ROWS = 4_000_000
"""Rows (8 bytes each) of filter results a table version keeps: 32 MB, or as many rows as the
table holds when it holds more (8 bytes a row beside the ~2 kB each row keeps on disk), so that a
filter keeping a tenth of a 10M-row table is kept too. One result may take a quarter."""
RESULT_CACHE_ENTRIES = 512

VIEW = "__vecstore_rows"
ROW_COLUMN = "__vecstore_row"
MAX_FILTER_CHARS = 100_000
MAX_DEPTH = 200
MAX_OPERANDS = 1000
"""AND/OR operands in one filter. DuckDB's optimizer recurses once per OR operand (about 800
bytes of stack each): 9,000 ORs overflow an 8 MB stack and crash the process. ``IN (...)``
lists have no such limit."""

ALLOWED_FUNCTIONS = frozenset({
    # operators DuckDB spells as functions
    "+", "-", "*", "/", "//", "%", "^", "**", "||", "~~", "!~~", "~~*", "!~~*", "~~~", "!~~~",
    "&", "|", "<<", ">>", "@>", "<@", "&&",
    # strings
    "lower", "upper", "lcase", "ucase", "length", "strlen", "char_length", "character_length",
    "trim", "ltrim", "rtrim", "starts_with", "ends_with", "prefix", "suffix", "contains",
    # (not repeat, lpad, rpad, replace or format: a 30-character filter such as
    # repeat(s, 1000000000) or nested replace() makes DuckDB allocate gigabytes per row)
    "substring", "substr", "left", "right", "concat", "concat_ws", "strpos",
    "instr", "position", "regexp_matches", "regexp_full_match", "like_escape", "ilike_escape",
    "reverse", "string_split", "split_part", "nfc_normalize",
    "strip_accents", "jaccard", "md5", "hash", "ascii", "chr", "hamming", "mismatches",
    # (quadratic per row: allowed on values whose sizes bound the cost, see bounds.py)
    "levenshtein", "editdist3", "damerau_levenshtein", "jaro_similarity", "jaro_winkler_similarity",
    # numbers
    "abs", "round", "floor", "ceil", "ceiling", "sign", "sqrt", "pow", "power", "exp", "ln",
    "log", "log2", "log10", "greatest", "least", "mod", "isnan", "isinf", "isfinite",
    # lists
    "list_contains", "list_has", "array_contains", "array_has", "list_has_any", "array_has_any",
    "list_has_all", "array_has_all", "len", "array_length", "list_value", "list_position",
    "list_indexof", "list_extract", "array_extract", "list_element", "list_distinct",
    "list_unique", "list_sort", "list_min", "list_max", "list_sum", "list_count", "array_value",
    "list_intersect", "list_concat", "array_concat", "list_slice", "array_slice",
    # dates and times
    "year", "month", "day", "dayofmonth", "dayofweek", "dayofyear", "week", "weekofyear",
    "quarter", "hour", "minute", "second", "epoch", "epoch_ms", "date_part", "datepart",
    "date_trunc", "datetrunc", "date_diff", "datediff", "date_sub", "datesub", "date_add",
    "strftime", "strptime", "to_timestamp", "make_date", "make_timestamp", "current_date",
    "today", "now", "current_timestamp", "get_current_timestamp", "to_days", "to_hours",
    "to_minutes", "to_seconds", "to_years", "to_months", "to_weeks", "to_milliseconds",
    "last_day", "dayname", "monthname", "isodow", "yearweek", "age",
    # nulls and conditionals
    "coalesce", "ifnull", "nullif", "if", "iff",
})

_NODE_CLASSES = frozenset({
    "COLUMN_REF", "CONSTANT", "PARAMETER", "COMPARISON", "CONJUNCTION", "OPERATOR",
    "FUNCTION", "CASE", "CAST", "BETWEEN", "COLLATE",
})
_OPERATOR_TYPES = frozenset({
    "OPERATOR_NOT", "OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL", "COMPARE_IN", "COMPARE_NOT_IN",
    "ARRAY_EXTRACT", "ARRAY_SLICE", "OPERATOR_COALESCE", "OPERATOR_NULLIF",
})


MEMORY_LIMIT_BYTES = 1024 ** 3
"""DuckDB's memory limit for one table version's filters (its operators and results; what an
expression builds per row is bounded by :mod:`.bounds` instead), raised by
:data:`MEMORY_PER_ROW_BYTES` for each row so that a filter matching every row of a large table
still fits its result. Nothing spills to disk: a filter over the limit fails with a FilterError."""
MEMORY_PER_ROW_BYTES = 32


def connect_sandboxed(rows: int = 0) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection that can read no file, reach no network, load no
    extension, write no temporary file and use at most :data:`MEMORY_LIMIT_BYTES` (plus
    :data:`MEMORY_PER_ROW_BYTES` per row of the ``rows`` it filters), with its configuration
    locked so a query cannot change any of that."""
    limit = MEMORY_LIMIT_BYTES + MEMORY_PER_ROW_BYTES * max(int(rows), 0)
    con = duckdb.connect(
        ":memory:",
        config={
            "enable_external_access": False,
            "autoinstall_known_extensions": False,
            "autoload_known_extensions": False,
            "threads": 1,
            "memory_limit": f"{limit // 2 ** 20}MiB",
            "temp_directory": "",  # no spilling: a filter never writes a file
        },
    )
    con.execute("SET enable_progress_bar = false")  # DuckDB would draw one on stdout after 2 s
    con.execute("SET lock_configuration = true")
    return con


_PATTERN_FUNCTIONS = {
    # name -> (any-run wildcard, single-character wildcard)
    "~~": ("%", "_"), "!~~": ("%", "_"), "~~*": ("%", "_"), "!~~*": ("%", "_"),
    "like_escape": ("%", "_"), "ilike_escape": ("%", "_"), "not_like_escape": ("%", "_"),
    "not_ilike_escape": ("%", "_"), "~~~": ("*", "?"), "!~~~": ("*", "?"), "glob": ("*", "?"),
}
MAX_PATTERN_RUNS = 2
"""DuckDB matches LIKE/GLOB patterns that mix single-character wildcards with several ``%`` runs
by backtracking, exponential in the number of runs: ``s LIKE '%_%_%b'`` takes 9 s on one
2,000-character value, ``'%_%_%_%b'`` minutes. Patterns without ``_`` take a linear path. A
pattern with a single-character wildcard may hold at most this many ``%`` runs; anything more
elaborate belongs in ``regexp_matches`` (RE2: linear time)."""


def check_pattern(pattern: object, function: str, where: str) -> None:
    """Refuse a LIKE/GLOB pattern whose matching could take exponential time."""
    if not isinstance(pattern, str):
        return
    many, one = _PATTERN_FUNCTIONS[function]
    if one not in pattern:
        return
    runs = sum(1 for i, c in enumerate(pattern) if c == many and (i == 0 or pattern[i - 1] != many))
    if runs > MAX_PATTERN_RUNS:
        raise FilterError(
            f"invalid filter {where!r}: the pattern {pattern!r} mixes {one!r} with {runs} {many!r} "
            f"wildcards, which DuckDB matches in exponential time; use at most {MAX_PATTERN_RUNS}, "
            f"or regexp_matches(column, '...')"
        )


def backtracks(pattern: object, function: str) -> bool:
    """Whether DuckDB matches ``pattern`` by backtracking in time quadratic in the value's length
    (a single-character wildcard with two runs: ``'%_%_b'``); :mod:`.bounds` then bounds the
    values' length. One run, or none, is matched in linear time."""
    if function not in _PATTERN_FUNCTIONS or not isinstance(pattern, str):
        return False
    many, one = _PATTERN_FUNCTIONS[function]
    runs = sum(1 for i, c in enumerate(pattern) if c == many and (i == 0 or pattern[i - 1] != many))
    return one in pattern and runs >= 2


class _Checker:
    def __init__(self, text: str, columns: Sequence[str], aliases: dict[str, str]) -> None:
        self.text = text
        self.columns = frozenset(columns)
        self.by_key: dict[str, list[str]] = {}  # column_key -> the columns with that key
        for c in columns:
            self.by_key.setdefault(column_key(c), []).append(c)
        self.aliases = aliases  # column -> the name DuckDB sees it by (colliding columns only)
        self.renames: list[tuple[int, str, str]] = []  # (byte offset in the SQL, name as written, alias)
        self.pattern_params: dict[int, str] = {}  # parameter position (1-based) -> function
        self.operands = 0

    def resolve(self, name: str) -> str:
        """The column a reference means: the one spelled exactly so, or else the only one whose
        name differs from it in ASCII case (as DuckDB resolves it)."""
        if name in self.columns:
            return name
        group = self.by_key.get(column_key(name), [])
        if len(group) == 1:
            return group[0]
        if not group:
            known = ", ".join(sorted(self.columns))
            raise self.fail(f"unknown column {name!r}; the table's columns are: {known}")
        raise self.fail(f"column {name!r} is ambiguous: the table has columns "
                        f"{', '.join(map(repr, group))}, which differ only in letter case; write "
                        f"the name exactly as one of them")

    def fail(self, why: str) -> FilterError:
        return FilterError(f"invalid filter {self.text!r}: {why}")

    def check_type(self, t: Any) -> None:
        if isinstance(t, dict):
            if t.get("id") == "UNBOUND":
                name = str((t.get("type_info") or {}).get("name", "")).lower()
                if name not in _TYPE_NAMES:
                    raise self.fail(f"unknown type {name!r}")
            for v in t.values():
                self.check_type(v)
        elif isinstance(t, list):
            for v in t:
                self.check_type(v)

    def walk(self, node: Any, depth: int = 0) -> None:
        if depth > MAX_DEPTH:
            raise self.fail(f"the expression nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, list):
            for child in node:
                self.walk(child, depth + 1)
            return
        if not isinstance(node, dict):
            return
        cls = node.get("class")
        if cls is None:
            # not an expression node (a value, a type, a modifier): look for expressions inside
            for key, value in node.items():
                if key in ("value", "type", "cast_type", "type_info", "catalog_name"):
                    continue
                self.walk(value, depth + 1)
            return
        if cls not in _NODE_CLASSES:
            what = {"SUBQUERY": "subqueries", "LAMBDA": "lambda functions", "WINDOW": "window functions",
                    "STAR": "'*'", "COLUMNS": "COLUMNS(...)"}.get(cls, f"{cls.lower()} expressions")
            raise self.fail(f"{what} are not allowed; a filter is a plain expression over the columns")
        if cls == "CONJUNCTION":
            self.operands += len(node.get("children") or ())
            if self.operands > MAX_OPERANDS:
                raise self.fail(f"it combines more than {MAX_OPERANDS:,} conditions with AND/OR; for "
                                f"a long list of values use \"column IN (...)\" or "
                                f"\"list_contains(?, column)\"")
        if cls == "COLUMN_REF":
            names = node.get("column_names", [])
            if len(names) != 1:
                raise self.fail(f"{'.'.join(names)!r} is not a column (qualified names and struct "
                                f"fields are not supported)")
            name = names[0]
            real = self.resolve(name)
            if real in self.aliases:
                location = node.get("query_location")
                if not isinstance(location, int) or location >= 2 ** 63:
                    raise self.fail(f"cannot locate the reference to column {name!r}")
                self.renames.append((location, name, self.aliases[real]))
            node["column_names"] = [real]  # the fast path's compiler looks columns up exactly
        elif cls == "CAST":
            self.check_type(node.get("cast_type"))
        elif cls == "OPERATOR" and node.get("type") not in _OPERATOR_TYPES:
            raise self.fail(f"operator {node.get('type')} is not allowed")
        elif cls == "FUNCTION":
            fname = str(node.get("function_name", "")).lower()
            qualified = node.get("schema") not in (None, "", "main")
            if qualified or node.get("catalog") not in (None, "", "system"):
                raise self.fail(f"qualified function names ({fname!r}) are not allowed")
            if fname not in ALLOWED_FUNCTIONS:
                raise self.fail(f"function {fname!r} is not allowed in a filter")
            if node.get("filter") is not None or node.get("distinct") or \
                    (node.get("order_bys") or {}).get("orders"):
                raise self.fail("aggregate clauses are not allowed in a filter")
            if fname in _PATTERN_FUNCTIONS:
                children = node.get("children") or []
                pattern = children[1] if len(children) > 1 else {}
                if pattern.get("class") == "CONSTANT":
                    check_pattern((pattern.get("value") or {}).get("value"), fname, self.text)
                elif pattern.get("class") == "PARAMETER" and str(pattern.get("identifier", "")).isdigit():
                    self.pattern_params[int(pattern["identifier"])] = fname
                else:
                    raise self.fail("a LIKE or GLOB pattern must be a constant or a ? parameter")
        for key, value in node.items():
            if key in ("class", "type", "alias", "query_location", "column_names", "function_name",
                       "value", "cast_type", "identifier", "schema", "catalog"):
                continue
            self.walk(value, depth + 1)


_TYPE_NAMES = frozenset({
    "text", "string", "varchar", "char", "bpchar", "int", "integer", "int4", "int8", "int2", "int1",
    "bigint", "smallint", "tinyint", "hugeint", "ubigint", "uinteger", "usmallint", "utinyint",
    "double", "float", "float4", "float8", "real", "boolean", "bool", "date", "timestamp",
    "timestamptz", "time", "interval", "decimal", "numeric", "long", "short",
})


def _has_comment(text: str) -> bool:
    """Whether ``text`` holds an SQL comment outside string literals and quoted names."""
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in ("'", '"'):
            j = text.find(c, i + 1)
            while j != -1 and j + 1 < n and text[j + 1] == c:  # doubled quote = escaped quote
                j = text.find(c, j + 2)
            if j == -1:
                return False  # unbalanced: the parser reports it
            i = j + 1
            continue
        if text.startswith("--", i) or text.startswith("/*", i):
            return True
        i += 1
    return False


def _cache_key(text: str, bound: Sequence[Any]) -> tuple[Any, ...] | None:
    """A hashable key for a filter and its bound parameters (None when a value is not
    hashable). Values are keyed with their type: ``1`` and ``True`` and ``1.0`` bind differently."""
    def freeze(v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return (type(v).__name__, tuple(freeze(x) for x in v))
        hash(v)
        return (type(v).__name__, v)

    try:
        return (text, tuple(freeze(v) for v in bound))
    except TypeError:
        return None


def parse_filter(text: str, columns: Iterable[str], con: duckdb.DuckDBPyConnection,
                 aliases: dict[str, str] | None = None) -> str:
    """Check ``text`` and return the SQL statement that evaluates it (with ``?`` parameters);
    ``aliases``: columns the view shows DuckDB under another name (see :class:`FilterEngine`)."""
    return _parse(text, columns, con, aliases).sql


@dataclass(frozen=True)
class _Parsed:
    sql: str  # the statement DuckDB runs
    pattern_params: dict[int, str]  # ? position (1-based) -> LIKE/GLOB function it feeds
    where: dict[str, Any]  # the checked parse tree of the expression
    n_params: int
    sized: bool  # whether parameter values can change what the filter builds or compares (bounds.py)

    @functools.cached_property
    def volatile(self) -> bool:
        """Whether the filter's answer can change while the data does not (it reads the clock)."""
        return _calls_any(self.where, VOLATILE_FUNCTIONS)


VOLATILE_FUNCTIONS = frozenset({"now", "today", "current_date", "current_timestamp",
                                "get_current_timestamp"})


def _calls_any(node: Any, names: frozenset[str]) -> bool:
    if isinstance(node, list):
        return any(_calls_any(c, names) for c in node)
    if not isinstance(node, dict):
        return False
    if node.get("class") == "FUNCTION" and str(node.get("function_name", "")).lower() in names:
        return True
    return any(_calls_any(v, names) for v in node.values())


def _count_params(node: Any) -> int:
    if isinstance(node, list):
        return max((_count_params(c) for c in node), default=0)
    if not isinstance(node, dict):
        return 0
    here = int(node["identifier"]) if node.get("class") == "PARAMETER" and \
        str(node.get("identifier", "")).isdigit() else 0
    return max(here, max((_count_params(v) for v in node.values()), default=0))


def _rename(sql: str, renames: list[tuple[int, str, str]], checker: _Checker) -> str:
    """``sql`` with each located column reference replaced by its alias (quoted)."""
    data = sql.encode("utf-8")  # DuckDB's query locations are byte offsets
    for location, written, alias in sorted(renames, reverse=True):
        quoted = ('"' + written.replace('"', '""') + '"').encode("utf-8")
        plain = written.encode("utf-8")
        if data.startswith(quoted, location):
            size = len(quoted)
        elif data.startswith(plain, location):
            size = len(plain)
        else:
            raise checker.fail(f"cannot locate the reference to column {written!r}")
        data = data[:location] + f'"{alias}"'.encode() + data[location + size:]
    return data.decode("utf-8")


def _parse(text: str, columns: Iterable[str], con: duckdb.DuckDBPyConnection,
           aliases: dict[str, str] | None = None) -> _Parsed:
    if not isinstance(text, str):
        raise FilterError(f"a filter must be a string, got {type(text).__name__}")
    if not text.strip():
        raise FilterError("the filter is empty; pass a boolean expression such as \"year > 2020\"")
    if len(text) > MAX_FILTER_CHARS:
        raise FilterError(f"the filter is {len(text):,} characters long; the limit is {MAX_FILTER_CHARS:,}")
    if "\x00" in text:
        raise FilterError("the filter contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:  # a lone surrogate: DuckDB's binding would raise RuntimeError
        raise FilterError(
            f"the filter is not valid Unicode text ({exc.reason} at position {exc.start})") from None
    if _has_comment(text):
        raise FilterError(f"invalid filter {text!r}: SQL comments are not allowed in a filter")
    sql = f"SELECT {ROW_COLUMN} FROM {VIEW} WHERE (\n{text}\n)"
    try:
        raw = con.execute("SELECT json_serialize_sql(?)", [sql]).fetchone()
    except duckdb.Error as exc:
        raise FilterError(f"invalid filter {text!r}: {exc}") from None
    tree: dict[str, Any] = json.loads(raw[0]) if raw else {"error": True, "error_message": "no parse"}
    if tree.get("error"):
        msg = str(tree.get("error_message", "syntax error")).replace(sql, text)
        raise FilterError(f"invalid filter {text!r}: {msg}")
    statements: list[dict[str, Any]] = list(tree.get("statements") or [])
    checker = _Checker(text, list(columns), aliases or {})
    if len(statements) != 1:
        raise checker.fail("it must be a single expression, not statements")
    node = statements[0].get("node", {})
    if node.get("type") != "SELECT_NODE":
        raise checker.fail("it must be a single expression (set operations are not allowed)")
    frm = node.get("from_table", {})
    select = node.get("select_list", [])
    if (frm.get("type") != "BASE_TABLE" or frm.get("table_name") != VIEW
            or len(select) != 1 or select[0].get("column_names") != [ROW_COLUMN]
            or node.get("group_expressions") or node.get("having") or node.get("qualify")
            or node.get("sample") or node.get("modifiers") or (node.get("cte_map") or {}).get("map")):
        raise checker.fail("it must be a single boolean expression over the table's columns")
    if (statements[0].get("named_param_map") or []) and any(
            not str(p.get("key", "")).isdigit() for p in statements[0]["named_param_map"]):
        raise checker.fail("named parameters are not supported; use ? placeholders")
    where = node.get("where_clause")
    checker.walk(where)
    if checker.renames:
        sql = _rename(sql, checker.renames, checker)
    n_params = _count_params(where)
    sized = n_params > 0 and _has_class(where, frozenset({"FUNCTION", "CAST"}))
    return _Parsed(sql, checker.pattern_params, where, n_params, sized)


def _has_class(node: Any, classes: frozenset[str]) -> bool:
    if isinstance(node, list):
        return any(_has_class(c, classes) for c in node)
    if not isinstance(node, dict):
        return False
    return node.get("class") in classes or any(_has_class(v, classes) for v in node.values())


class FilterEngine:
    """Evaluates filters over one table version's attributes (an Arrow table, zero-copy).

    A filter the :mod:`.predicates` fast path understands is answered from sorted column
    indexes built on first use; any other (or one whose parameter values need DuckDB's
    implicit casts) runs on the sandboxed DuckDB connection. Both give the same rows."""

    def __init__(self, attributes: pa.Table) -> None:
        self._columns = [c for c in attributes.column_names if c != ROW_COLUMN]
        # Columns whose names differ only in case (written before check_new_names refused
        # them): DuckDB would resolve both to the first, so it sees each under an alias.
        groups: dict[str, list[str]] = {}
        for c in self._columns:
            groups.setdefault(column_key(c), []).append(c)
        self._aliases = {c: f"__vecstore_col{i}" for i, c in enumerate(self._columns)
                         if len(groups[column_key(c)]) > 1}
        self._attributes = attributes
        self._view = attributes.rename_columns(
            [self._aliases.get(c, c) for c in attributes.column_names]) if self._aliases else attributes
        self._con: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        # the DuckDB statement running now, and the lock a timeout's timer takes to interrupt it
        # (never a later statement: the timer checks that its own is still the one running)
        self._running: object | None = None
        self._interrupt_lock = threading.Lock()
        self._checked: dict[str, tuple[_Parsed, Node | None]] = {}
        self._results: OrderedDict[tuple[Any, ...], npt.NDArray[np.int64]] = OrderedDict()
        self._cached_rows = 0
        self._cache_rows = max(RESULT_CACHE_ROWS, attributes.num_rows)
        self._predicates = Predicates(attributes, self._columns)
        self._variable = frozenset(
            f.name for f in attributes.schema if f.name != ROW_COLUMN and not _fixed_width(f.type))
        self._longest: dict[str, int] = {}

    def _longest_value(self, column: str) -> int:
        """The size in bytes of ``column``'s longest value in this version (measured once)."""
        size = self._longest.get(column)
        if size is None:
            size = self._longest[column] = longest_value(self._attributes.column(column))
        return size

    def _check_sizes(self, text: str, parsed: _Parsed, params: Sequence[Any] | None) -> None:
        SizeChecker(text, self._variable, self._longest_value, params, backtracks).check(parsed.where)

    def _connection(self) -> duckdb.DuckDBPyConnection:
        # Opened on first use, and again after close(): a reader thread may still hold this
        # engine when another thread, seeing a newer version, closes it.
        if self._con is None:
            con = connect_sandboxed(self._attributes.num_rows)
            con.register(VIEW, self._view)
            self._con = con
        return self._con

    def _parsed(self, text: str) -> tuple[_Parsed, Node | None]:
        if not isinstance(text, str):  # before the cache lookup: a list is not even hashable
            raise FilterError(f"a filter must be a string, got {type(text).__name__}")
        entry = self._checked.get(text)
        if entry is None:
            parsed = _parse(text, self._columns, self._connection(), self._aliases)
            self._check_sizes(text, parsed, None)  # parameters, unknown yet, count as empty
            entry = (parsed, self._predicates.compile(parsed.where))
            if len(self._checked) > 1024:
                self._checked.clear()
            self._checked[text] = entry
        return entry

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    def check(self, text: str) -> str:
        with self._lock:
            return self._parsed(text)[0].sql

    def compiled(self, text: str) -> bool:
        """Whether ``text`` is answered by the fast path (for its parameters' usual types)."""
        with self._lock:
            return self._parsed(text)[1] is not None

    def _prepare(self, text: str, params: Sequence[Any]) -> tuple[_Parsed, Node | None, list[Any]]:
        bound = bind_parameters(params)
        with self._lock:
            parsed, node = self._parsed(text)
            for position, function in parsed.pattern_params.items():
                if 0 < position <= len(bound):
                    check_pattern(bound[position - 1], function, text)
            if parsed.sized:
                self._check_sizes(text, parsed, bound)
        return parsed, node, bound

    def fast_rows(self, text: str, params: Sequence[Any]) -> npt.NDArray[np.int64] | None:
        """The rows the fast path finds (sorted), or None when it does not answer: the filter,
        or these parameter values, need DuckDB."""
        parsed, node, bound = self._prepare(text, params)
        return self._fast(parsed, node, bound)

    def _fast(self, parsed: _Parsed, node: Node | None, bound: list[Any]) -> npt.NDArray[np.int64] | None:
        if node is None or len(bound) != parsed.n_params:
            return None
        return self._predicates.rows(node, bound)

    def rows(self, text: str, params: Sequence[Any]) -> npt.NDArray[np.int64]:
        """Global row positions (sorted, read-only) of the rows for which the filter is true.

        Results are kept for the version's lifetime (at most :data:`RESULT_CACHE_ROWS` rows, or
        the table's row count, in all, the least recently used dropped first): applications
        repeat filters (a tenant, a category, a date window), and the version's rows never
        change. Filters that read the clock (``now()``, ``current_date``) are never kept. A
        repeated filter returns the very same array, so that what is derived from it (an
        index's allow bitmap) can be kept too."""
        return self.lookup(text, params)[0]

    def lookup(self, text: str, params: Sequence[Any]) -> tuple[npt.NDArray[np.int64], bool]:
        """:meth:`rows`, and whether they came from the cache (``explain()`` says so)."""
        parsed, node, bound = self._prepare(text, params)
        key = _cache_key(text, bound) if not parsed.volatile else None
        if key is not None:
            with self._lock:
                hit = self._results.get(key)
                if hit is not None:
                    self._results.move_to_end(key)
                    return hit, True
        rows = self._fast(parsed, node, bound)
        if rows is None:
            rows = self._duckdb(parsed, text, bound, params)
        if key is not None and rows.size <= self._cache_rows // 4:
            rows.flags.writeable = False
            with self._lock:
                self._results[key] = rows
                self._cached_rows += rows.size
                while self._cached_rows > self._cache_rows or len(self._results) > RESULT_CACHE_ENTRIES:
                    _, old = self._results.popitem(last=False)
                    self._cached_rows -= old.size
        return rows, False

    def duckdb_rows(self, text: str, params: Sequence[Any]) -> npt.NDArray[np.int64]:
        """The rows DuckDB finds (sorted), never the fast path: the reference the fast path is
        tested against."""
        parsed, _, bound = self._prepare(text, params)
        return self._duckdb(parsed, text, bound, params)

    def _duckdb(self, parsed: _Parsed, text: str, bound: list[Any], params: Sequence[Any]
                ) -> npt.NDArray[np.int64]:
        limit = _deadline.current()
        with self._lock:
            con = self._connection()
            timer = self._arm(con, limit, text)
            try:
                result = con.execute(parsed.sql, bound).fetchnumpy()
            except duckdb.InterruptException:
                if limit is None:
                    raise
                raise limit.error(f"the filter {text!r}, interrupted in DuckDB") from None
            except duckdb.OutOfMemoryException as exc:
                raise FilterError(
                    f"filter {text!r} needs more memory than filters may use "
                    f"({MEMORY_LIMIT_BYTES // 1024 ** 2:,} MiB + {MEMORY_PER_ROW_BYTES} bytes per row): "
                    f"{self._message(exc)}") from None
            except duckdb.Error as exc:
                raise FilterError(f"filter {text!r} failed: {self._message(exc)}") from None
            except (TypeError, ValueError, RuntimeError) as exc:  # RuntimeError: e.g. a lone surrogate
                raise FilterError(
                    f"filter {text!r}: cannot bind parameters {list(params)!r}: {exc}") from None
            finally:
                if timer is not None:
                    with self._interrupt_lock:
                        self._running = None
                    timer.cancel()
        rows = np.asarray(result[ROW_COLUMN], dtype=np.int64)
        rows.sort()
        return rows

    def _arm(self, con: duckdb.DuckDBPyConnection, limit: _deadline.Deadline | None, text: str
             ) -> threading.Timer | None:
        """Start a timer that interrupts the statement about to run when ``limit`` passes
        (called with ``self._lock`` held; None when there is no limit)."""
        if limit is None:
            return None
        limit.check(f"the filter {text!r}, before it ran")
        token = object()

        def interrupt() -> None:
            with self._interrupt_lock:
                if self._running is token:
                    con.interrupt()

        with self._interrupt_lock:
            self._running = token
        timer = threading.Timer(max(limit.remaining(), 0.0), interrupt)
        timer.daemon = True
        timer.start()
        return timer

    def _message(self, exc: Exception) -> str:
        """DuckDB's message in the table's own names."""
        msg = str(exc).replace(VIEW, "table").replace(ROW_COLUMN, "row")
        for column, alias in self._aliases.items():
            msg = msg.replace(alias, column)
        return msg

    def close(self) -> None:
        """Free the DuckDB connection; a later call (from a thread that still holds this
        engine) reopens it."""
        with self._lock:
            if self._con is not None:
                self._con.close()
                self._con = None


def _fixed_width(t: pa.DataType) -> bool:
    return (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_temporal(t) or pa.types.is_decimal(t) or pa.types.is_null(t))


def longest_value(column: pa.ChunkedArray) -> int:
    """An upper bound on the bytes of ``column``'s longest value: the longest string or binary
    value; for a list, its most elements times (its longest element + a 16-byte header); for
    other nested types, the whole column's buffers."""
    import pyarrow.compute as pc

    t = column.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_binary(t) \
            or pa.types.is_large_binary(t):
        if len(column) == 0:
            return 0
        longest = pc.max(pc.binary_length(column)).as_py()
        return int(longest or 0)
    if (pa.types.is_list(t) or pa.types.is_large_list(t)) and len(column):
        most = int(pc.max(pc.list_value_length(column)).as_py() or 0)
        values = pa.chunked_array([c.flatten() for c in column.chunks], t.value_type)
        element = 16 if _fixed_width(t.value_type) else longest_value(values) + 16
        return most * element
    return int(column.nbytes) if len(column) else 0
