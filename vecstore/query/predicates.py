"""A fast path for the common filters: comparisons, ranges, IN, prefixes, NULL tests and list
membership, combined with AND/OR/NOT, answered from sorted column indexes instead of DuckDB.

DuckDB evaluates a filter by scanning every row: 2-28 ms per query on 200,000 rows
(docs/benchmarks.md, "Filters"), more than the vector search it restricts. Most filters are a
few range predicates on one or two columns; with each column's values sorted once per table
version (``argsort``, kept for the version's lifetime), a range is two binary searches and its
rows a slice of the permutation: microseconds at 1% selectivity.

The filter's parse tree (already checked by :mod:`.filters`) is compiled when every node is one
this module understands *and* the column and value types are ones whose semantics it reproduces
exactly; anything else (functions, casts, arithmetic, a string compared with a number, ...) is
left to DuckDB, whole. Values are compared the way DuckDB's binder types them, not in the
column's type (:mod:`.sqltypes`: ``price = 0.1`` on a FLOAT column compares in FLOAT,
``n = 9007199254740993.0`` on a BIGINT exactly, ``n = ?`` with a Python float in DOUBLE).
Semantics follow SQL three-valued logic: each node gives the rows where it is true and the rows
where it is false; NULL is neither, so ``NOT (x > 5)`` keeps no row whose ``x`` is NULL. Strings
order by code point (= UTF-8 bytes), as in DuckDB. A float column that holds NaN is left to
DuckDB: DuckDB's own comparisons put NaN above every number, but those it pushes into its Arrow
scan are IEEE (NaN matches nothing), and only DuckDB can say which applies. The differential
test (tests/unit/test_predicates.py) checks the two paths agree on 10,000 generated edge-value
filters over data with NULLs, NaNs, infinities, signed zeros and duplicates.
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..storage.arrays import to_numpy
from .sqltypes import (
    Comparison,
    Typed,
    Unsupported,
    check_in_list,
    comparison,
    typed_constant,
    typed_parameter,
)

Mask = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


# --- columns ------------------------------------------------------------------------------------


class _Sorted:
    """The non-null values of one column in sorted order, with the row of each."""

    def __init__(self, keys: Any, perm: I64) -> None:
        self.keys = keys  # numpy array, or a pyarrow StringArray (binary-searched through _Keys)
        self.perm = perm
        self._search: Any = keys if isinstance(keys, np.ndarray) else _Keys(keys)

    def span(self, lo: Any, lo_incl: bool, hi: Any, hi_incl: bool,
             key: Callable[[Any], Any] | None = None) -> tuple[int, int]:
        """Positions [a, b) of the sorted keys within the bounds (None: unbounded); ``key``
        maps a key into the bounds' space (monotonic, so binary search still applies)."""
        n = len(self.perm)
        if key is None and isinstance(self._search, np.ndarray):
            a = 0 if lo is None else int(np.searchsorted(self._search, lo, "left" if lo_incl else "right"))
            b = n if hi is None else int(np.searchsorted(self._search, hi, "right" if hi_incl else "left"))
        else:
            left, right = bisect.bisect_left, bisect.bisect_right
            a = 0 if lo is None else (left if lo_incl else right)(self._search, lo, key=key)
            b = n if hi is None else (right if hi_incl else left)(self._search, hi, key=key)
        return a, max(a, b)


class _Keys:
    """Sequence view of a sorted pyarrow string array for :mod:`bisect` (a Python list of
    every string would cost ~60 bytes per row)."""

    def __init__(self, arr: pa.Array) -> None:
        self.arr = arr

    def __len__(self) -> int:
        return len(self.arr)

    def __getitem__(self, i: int) -> str:
        return self.arr[i].as_py()


class Column:
    """One attribute column as the predicates need it, built on first use."""

    def __init__(self, name: str, data: pa.ChunkedArray) -> None:
        self.name = name
        self.type = data.type
        self.data = data
        self.n = len(data)
        t = data.type
        if pa.types.is_integer(t) or t in (pa.float32(), pa.float64()):
            self.kind = "number"
        elif pa.types.is_string(t) or pa.types.is_large_string(t):
            self.kind = "string"
        elif pa.types.is_boolean(t):
            self.kind = "bool"
        elif pa.types.is_date32(t) or (pa.types.is_timestamp(t) and t.tz is None):
            self.kind = "time"
        elif (pa.types.is_list(t) or pa.types.is_large_list(t)) and (
                pa.types.is_integer(t.value_type) or pa.types.is_string(t.value_type)
                or pa.types.is_large_string(t.value_type)):
            self.kind = "list"
        else:
            self.kind = "other"
        self._valid: Mask | None = None
        self._values: npt.NDArray[Any] | None = None
        self._sorted: _Sorted | None = None
        self._flat: tuple[Any, I64] | None = None
        self._has_nan: bool | None = None
        self._has_negative_zero: bool | None = None

    @property
    def has_nan(self) -> bool:
        if self._has_nan is None:
            self._has_nan = pa.types.is_floating(self.type) and self.n > 0 and \
                bool(pc.any(pc.is_nan(self.data)).as_py())
        return self._has_nan

    @property
    def has_negative_zero(self) -> bool:
        if self._has_negative_zero is None:
            v = self.values
            self._has_negative_zero = bool(pa.types.is_floating(self.type) and
                                           np.any((v == 0) & np.signbit(v) & self.valid))
        return self._has_negative_zero

    @property
    def valid(self) -> Mask:
        if self._valid is None:
            if self.data.null_count == 0:
                self._valid = np.ones(self.n, dtype=bool)
            else:
                self._valid = to_numpy(pc.is_valid(self.data))
        return self._valid

    @property
    def values(self) -> npt.NDArray[Any]:
        """Numbers, booleans or times (as int64 ticks of the column's unit) as numpy; NULLs
        hold an arbitrary value (mask with ``valid``)."""
        if self._values is None:
            data = self.data
            if self.kind == "time":
                data = data.cast(pa.int32() if pa.types.is_date32(self.type) else pa.int64())
            fill: Any = False if self.kind == "bool" else 0
            if data.null_count:
                data = pc.fill_null(data, fill)
            self._values = to_numpy(data)
        return self._values

    def sorted(self) -> _Sorted:
        if self._sorted is None:
            if self.kind == "string":
                perm = to_numpy(pc.array_sort_indices(self.data, null_placement="at_end")).astype(np.int64)
                perm = perm[: self.n - self.data.null_count]
                keys = self.data.take(pa.array(perm)).combine_chunks()
                if isinstance(keys, pa.ChunkedArray):
                    keys = keys.chunk(0) if keys.num_chunks else pa.array([], self.type)
                self._sorted = _Sorted(keys, perm)
            else:
                rows = np.flatnonzero(self.valid).astype(np.int64)
                vals = self.values[rows]
                order = np.argsort(vals, kind="stable")
                self._sorted = _Sorted(vals[order], rows[order])
        return self._sorted

    def extremes(self) -> tuple[int, int] | None:
        """The smallest and largest non-null value of an integer-valued column (None: none)."""
        s = self.sorted()
        if not len(s.perm):
            return None
        return int(s.keys[0]), int(s.keys[-1])

    def comparison(self, values: Sequence[Typed]) -> Comparison:
        """How DuckDB compares this column with ``values`` (typed together, as in IN/BETWEEN)."""
        return comparison(self.type, values, self.extremes)

    def span(self, cmp: Comparison, lo: Typed | None, lo_incl: bool, hi: Typed | None,
             hi_incl: bool) -> tuple[int, int]:
        """Positions [a, b) of the sorted values within the bounds (None: unbounded), compared
        as ``cmp`` says."""
        s = self.sorted()
        lo_v = None if lo is None else cmp.convert(lo)
        hi_v = None if hi is None else cmp.convert(hi)
        if cmp.exact is None:
            return s.span(lo_v, lo_incl, hi_v, hi_incl, key=cmp.key)
        # rationals against integer keys: the bounds become the integers they admit, clipped to
        # the storage's range (a bound outside it would overflow numpy's search)
        vmin, vmax = cmp.exact
        lo_i = hi_i = None
        if lo_v is not None:
            first = math.ceil(lo_v) if lo_incl else math.floor(lo_v) + 1
            if first > vmax:
                return 0, 0
            lo_i = first if first > vmin else None
        if hi_v is not None:
            last = math.floor(hi_v) if hi_incl else math.ceil(hi_v) - 1
            if last < vmin:
                return 0, 0
            hi_i = last if last < vmax else None
        scalar = s.keys.dtype.type
        return s.span(None if lo_i is None else scalar(lo_i), True,
                      None if hi_i is None else scalar(hi_i), True)

    def flat(self) -> tuple[Any, I64]:
        """List columns: every element (numpy, or a pyarrow array for strings) and its row."""
        if self._flat is None:
            arr = self.data.combine_chunks() if self.data.num_chunks != 1 else self.data.chunk(0)
            if self.data.num_chunks == 0:
                arr = pa.array([], self.type)
            values = pc.list_flatten(arr)
            parents = to_numpy(pc.list_parent_indices(arr)).astype(np.int64)
            keep = to_numpy(pc.is_valid(values))
            if pa.types.is_integer(self.type.value_type):
                vals: Any = to_numpy(pc.fill_null(values, 0))[keep]
            else:
                vals = values.filter(pa.array(keep))
            self._flat = (vals, parents[keep])
        return self._flat


# --- values ------------------------------------------------------------------------------------

Value = Callable[[Sequence[Any]], Typed]  # params -> the value, typed as DuckDB types it


def _is_utf8(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


_BOOLEAN_TEXT = {"t": True, "true": True, "f": False, "false": False}


def _value_of(node: dict[str, Any]) -> Value:
    cls = node.get("class")
    if cls == "CONSTANT":
        v = typed_constant(node.get("value") or {})
        return lambda params: v
    if cls == "PARAMETER" and str(node.get("identifier", "")).isdigit():
        i = int(node["identifier"]) - 1
        return lambda params: typed_parameter(params[i])
    if cls == "CAST" and (node.get("cast_type") or {}).get("id") == "BOOLEAN":
        # how the parser spells TRUE and FALSE: CAST('t' AS BOOLEAN)
        child = typed_constant((node.get("child") or {}).get("value") or {}) \
            if (node.get("child") or {}).get("class") == "CONSTANT" else None
        if child is not None and child.kind == "varchar" and child.value in _BOOLEAN_TEXT:
            b = Typed("bool", _BOOLEAN_TEXT[child.value], literal=True)
            return lambda params: b
    raise Unsupported(f"value {cls}")


# --- nodes -------------------------------------------------------------------------------------


class Node:
    def true(self, params: Sequence[Any]) -> Mask:
        """Rows where the expression is true."""
        raise NotImplementedError

    def false(self, params: Sequence[Any]) -> Mask:
        """Rows where it is false (not NULL)."""
        raise NotImplementedError

    def rows(self, params: Sequence[Any]) -> I64:
        """Sorted rows where it is true."""
        return np.flatnonzero(self.true(params)).astype(np.int64, copy=False)


class _All(Node):
    """Rows where a constant condition holds: all or none (NULL: neither)."""

    def __init__(self, n: int, value: Value) -> None:
        self.n, self.value = n, value

    def _is(self, params: Sequence[Any], want: bool) -> Mask:
        v = self.value(params)
        if v.kind == "null":
            return np.zeros(self.n, dtype=bool)
        if v.kind != "bool":
            raise Unsupported("not a boolean")
        return np.full(self.n, bool(v.value) == want)

    def true(self, params: Sequence[Any]) -> Mask:
        return self._is(params, True)

    def false(self, params: Sequence[Any]) -> Mask:
        return self._is(params, False)


def _mask(n: int, rows: I64) -> Mask:
    m = np.zeros(n, dtype=bool)
    m[rows] = True
    return m


class _Range(Node):
    """``lo <(=) col <(=) hi`` (either bound optional), from the column's sorted index."""

    def __init__(self, col: Column, lo: Value | None, lo_incl: bool, hi: Value | None, hi_incl: bool) -> None:
        self.col, self.lo, self.lo_incl, self.hi, self.hi_incl = col, lo, lo_incl, hi, hi_incl

    def _span(self, params: Sequence[Any]) -> tuple[int, int] | None:
        """Positions of the sorted values inside the range; None when a bound is NULL (then the
        comparison is NULL for every row)."""
        lo = None if self.lo is None else self.lo(params)
        hi = None if self.hi is None else self.hi(params)
        bounds = [v for v in (lo, hi) if v is not None]
        if any(v.kind == "null" for v in bounds):
            return None
        cmp = self.col.comparison(bounds)
        return self.col.span(cmp, lo, self.lo_incl, hi, self.hi_incl)

    def true(self, params: Sequence[Any]) -> Mask:
        span = self._span(params)
        if span is None:
            return np.zeros(self.col.n, dtype=bool)
        return _mask(self.col.n, self.col.sorted().perm[span[0]:span[1]])

    def rows(self, params: Sequence[Any]) -> I64:
        span = self._span(params)
        if span is None:
            return np.empty(0, dtype=np.int64)
        a, b = span
        if (b - a) * 5 > self.col.n:  # many rows: a bitmap pass beats sorting them (measured: 50k of 200k)
            return super().rows(params)
        return np.sort(self.col.sorted().perm[a:b])

    def false(self, params: Sequence[Any]) -> Mask:
        span = self._span(params)
        if span is None:
            return np.zeros(self.col.n, dtype=bool)
        return self.col.valid & ~_mask(self.col.n, self.col.sorted().perm[span[0]:span[1]])


class _NotEqual(Node):
    def __init__(self, eq: _Range) -> None:
        self.eq = eq

    def true(self, params: Sequence[Any]) -> Mask:
        return self.eq.false(params)

    def false(self, params: Sequence[Any]) -> Mask:
        return self.eq.true(params)


class _Between(Node):
    """``x BETWEEN lo AND hi``: one range, the three typed together; a NULL bound makes it NULL
    wherever the other holds."""

    def __init__(self, col: Column, lo: Value, hi: Value) -> None:
        self.both = _Range(col, lo, True, hi, True)
        self.halves = _And([_Range(col, lo, True, None, False), _Range(col, None, False, hi, True)])
        self.lo, self.hi = lo, hi

    def _node(self, params: Sequence[Any]) -> Node:
        null = self.lo(params).kind == "null" or self.hi(params).kind == "null"
        return self.halves if null else self.both

    def true(self, params: Sequence[Any]) -> Mask:
        return self._node(params).true(params)

    def false(self, params: Sequence[Any]) -> Mask:
        return self._node(params).false(params)

    def rows(self, params: Sequence[Any]) -> I64:
        return self._node(params).rows(params)


class _In(Node):
    """``col IN (v1, v2, ...)``, the values typed together; a NULL in the list turns every miss
    from false to NULL."""

    def __init__(self, col: Column, values: list[Value]) -> None:
        self.col = col
        self.values = values

    def _hits(self, params: Sequence[Any]) -> tuple[Mask, bool]:
        out = np.zeros(self.col.n, dtype=bool)
        values = [value(params) for value in self.values]
        present = [v for v in values if v.kind != "null"]
        if present:
            cmp = self.col.comparison(present)
            check_in_list(self.col.type, cmp, present, lambda: self.col.has_negative_zero)
            perm = self.col.sorted().perm
            for v in present:
                a, b = self.col.span(cmp, v, True, v, True)
                out[perm[a:b]] = True
        return out, len(present) < len(values)

    def true(self, params: Sequence[Any]) -> Mask:
        return self._hits(params)[0]

    def false(self, params: Sequence[Any]) -> Mask:
        hits, has_null = self._hits(params)
        if has_null:
            return np.zeros(self.col.n, dtype=bool)
        return self.col.valid & ~hits


class _Prefix(Node):
    """``starts_with(col, p)``, ``prefix(col, p)``, ``col LIKE 'p%'``: one range of the sorted
    strings, from ``p`` to the first string that no longer starts with it."""

    def __init__(self, col: Column, prefix: Value, like: bool = False) -> None:
        self.col, self.prefix, self.like = col, prefix, like

    def _p(self, params: Sequence[Any]) -> str | None:
        v = self.prefix(params)
        if v.kind == "null":
            return None
        p = v.value
        if v.kind != "varchar" or not _is_utf8(p):
            raise Unsupported("prefix is not a string")
        if self.like:
            body = p[:-1] if p.endswith("%") else p
            if not p.endswith("%") or any(c in body for c in "%_\\"):
                raise Unsupported("general LIKE pattern")
            return body
        return p

    def true(self, params: Sequence[Any]) -> Mask:
        p = self._p(params)
        if p is None:
            return np.zeros(self.col.n, dtype=bool)
        s = self.col.sorted()
        if p == "":
            return self.col.valid.copy()
        a, _ = s.span(p, True, None, False)
        # the strings starting with p are those in [p, p') where p' is p with its last character
        # bumped (dropping trailing characters that cannot be bumped)
        stem = p
        while stem and ord(stem[-1]) == 0x10FFFF:
            stem = stem[:-1]
        if stem:
            _, b = s.span(None, False, stem[:-1] + chr(ord(stem[-1]) + 1), False)
        else:
            b = len(s.perm)
        return _mask(self.col.n, s.perm[a:b])

    def false(self, params: Sequence[Any]) -> Mask:
        if self._p(params) is None:
            return np.zeros(self.col.n, dtype=bool)
        return self.col.valid & ~self.true(params)


class _IsNull(Node):
    def __init__(self, col: Column, negate: bool) -> None:
        self.col, self.negate = col, negate

    def true(self, params: Sequence[Any]) -> Mask:
        return self.col.valid.copy() if self.negate else ~self.col.valid

    def false(self, params: Sequence[Any]) -> Mask:
        return ~self.col.valid if self.negate else self.col.valid.copy()


class _BoolColumn(Node):
    def __init__(self, col: Column) -> None:
        self.col = col

    def true(self, params: Sequence[Any]) -> Mask:
        return self.col.valid & self.col.values.astype(bool)

    def false(self, params: Sequence[Any]) -> Mask:
        return self.col.valid & ~self.col.values.astype(bool)


class _ListContains(Node):
    """``list_contains(col, v)``: true where some element equals v; NULL lists and NULL v are
    NULL, NULL elements never match."""

    def __init__(self, col: Column, value: Value) -> None:
        self.col, self.value = col, value

    def true(self, params: Sequence[Any]) -> Mask:
        v = self.value(params)
        if v.kind == "null":
            return np.zeros(self.col.n, dtype=bool)
        vals, parents = self.col.flat()
        if isinstance(vals, np.ndarray):
            if v.kind != "int":  # DuckDB casts the list to the value's type (DECIMAL, DOUBLE, ...)
                raise Unsupported("list element is not an integer")
            info = np.iinfo(vals.dtype)
            if not info.min <= v.value <= info.max:  # the list cast to a wider type: no element equals it
                return np.zeros(self.col.n, dtype=bool)
            hit = vals == vals.dtype.type(v.value)
        else:
            if v.kind != "varchar" or not _is_utf8(v.value):
                raise Unsupported("list element is not a string")
            hit = to_numpy(pc.equal(vals, v.value), fill=False)
        return _mask(self.col.n, parents[hit])

    def false(self, params: Sequence[Any]) -> Mask:
        if self.value(params).kind == "null":
            return np.zeros(self.col.n, dtype=bool)
        return self.col.valid & ~self.true(params)


class _And(Node):
    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def true(self, params: Sequence[Any]) -> Mask:
        out = self.children[0].true(params)
        for c in self.children[1:]:
            out &= c.true(params)
        return out

    def false(self, params: Sequence[Any]) -> Mask:
        out = self.children[0].false(params)
        for c in self.children[1:]:
            out |= c.false(params)
        return out


class _Or(Node):
    def __init__(self, children: list[Node]) -> None:
        self.children = children

    def true(self, params: Sequence[Any]) -> Mask:
        return self._fold(params, True)

    def false(self, params: Sequence[Any]) -> Mask:
        return self._fold(params, False)

    def _fold(self, params: Sequence[Any], truth: bool) -> Mask:
        first, *rest = self.children
        out = first.true(params) if truth else first.false(params)
        for c in rest:
            if truth:
                out |= c.true(params)
            else:
                out &= c.false(params)
        return out


class _Not(Node):
    def __init__(self, child: Node) -> None:
        self.child = child

    def true(self, params: Sequence[Any]) -> Mask:
        return self.child.false(params)

    def false(self, params: Sequence[Any]) -> Mask:
        return self.child.true(params)


# --- compiling ---------------------------------------------------------------------------------

_FLIP = {"COMPARE_LESSTHAN": "COMPARE_GREATERTHAN", "COMPARE_GREATERTHAN": "COMPARE_LESSTHAN",
         "COMPARE_LESSTHANOREQUALTO": "COMPARE_GREATERTHANOREQUALTO",
         "COMPARE_GREATERTHANOREQUALTO": "COMPARE_LESSTHANOREQUALTO",
         "COMPARE_EQUAL": "COMPARE_EQUAL", "COMPARE_NOTEQUAL": "COMPARE_NOTEQUAL"}


_ANY_KIND = ("number", "string", "bool", "time", "list", "other")


class Compiler:
    def __init__(self, columns: dict[str, Column]) -> None:
        # exact names: the checker (filters._Checker) has already resolved each reference to
        # the one column it means
        self.columns = columns
        self.n = next(iter(columns.values())).n if columns else 0

    def column(self, node: dict[str, Any], kinds: tuple[str, ...]) -> Column:
        if node.get("class") != "COLUMN_REF":
            raise Unsupported("not a column")
        col = self.columns[node["column_names"][0]]
        if col.kind not in kinds:
            raise Unsupported(f"column type {col.type}")
        if col.has_nan and kinds != _ANY_KIND:
            # DuckDB itself is inconsistent here: NaN sorts above every number in its own
            # comparisons, but a comparison it pushes into the Arrow scan is IEEE (NaN matches
            # nothing). Such columns keep DuckDB's behaviour exactly, by running on DuckDB.
            raise Unsupported("NaN in the column")
        return col

    def compile(self, node: dict[str, Any]) -> Node:
        cls, typ = node.get("class"), node.get("type")
        if cls == "CONJUNCTION":
            operands = [self.compile(c) for c in node.get("children") or []]
            if not operands:
                raise Unsupported("empty conjunction")
            return _And(operands) if typ == "CONJUNCTION_AND" else _Or(operands)
        if cls == "OPERATOR":
            children = node.get("children") or []
            if typ == "OPERATOR_NOT" and len(children) == 1:
                return _Not(self.compile(children[0]))
            if typ in ("OPERATOR_IS_NULL", "OPERATOR_IS_NOT_NULL") and len(children) == 1:
                col = self.column(children[0], _ANY_KIND)
                return _IsNull(col, negate=typ == "OPERATOR_IS_NOT_NULL")
            if typ in ("COMPARE_IN", "COMPARE_NOT_IN") and len(children) >= 2:
                col = self.column(children[0], ("number", "string", "time", "bool"))
                node_in = _In(col, [_value_of(c) for c in children[1:]])
                return node_in if typ == "COMPARE_IN" else _Not(node_in)
            raise Unsupported(str(typ))
        if cls == "COMPARISON":
            left, right = node.get("left") or {}, node.get("right") or {}
            if left.get("class") != "COLUMN_REF":
                left, right, typ = right, left, _FLIP.get(str(typ), "")
            col = self.column(left, ("number", "string", "time", "bool"))
            v = _value_of(right)
            if typ == "COMPARE_EQUAL":
                return _Range(col, v, True, v, True)
            if typ == "COMPARE_NOTEQUAL":
                return _NotEqual(_Range(col, v, True, v, True))
            if typ == "COMPARE_GREATERTHAN":
                return _Range(col, v, False, None, False)
            if typ == "COMPARE_GREATERTHANOREQUALTO":
                return _Range(col, v, True, None, False)
            if typ == "COMPARE_LESSTHAN":
                return _Range(col, None, False, v, False)
            if typ == "COMPARE_LESSTHANOREQUALTO":
                return _Range(col, None, False, v, True)
            raise Unsupported(str(typ))
        if cls == "BETWEEN":
            col = self.column(node.get("input") or {}, ("number", "string", "time"))
            return _Between(col, _value_of(node.get("lower") or {}), _value_of(node.get("upper") or {}))
        if cls == "FUNCTION":
            name = str(node.get("function_name", "")).lower()
            children = node.get("children") or []
            if len(children) != 2:
                raise Unsupported(name)
            if name in ("starts_with", "prefix"):
                return _Prefix(self.column(children[0], ("string",)), _value_of(children[1]))
            if name in ("~~", "!~~"):
                like = _Prefix(self.column(children[0], ("string",)), _value_of(children[1]), like=True)
                return like if name == "~~" else _Not(like)
            if name in ("list_contains", "list_has", "array_contains", "array_has"):
                return _ListContains(self.column(children[0], ("list",)), _value_of(children[1]))
            raise Unsupported(name)
        if cls == "COLUMN_REF":
            return _BoolColumn(self.column(node, ("bool",)))
        if cls in ("CONSTANT", "PARAMETER", "CAST"):
            return _All(self.n, _value_of(node))
        raise Unsupported(str(cls))


class Predicates:
    """Compiled filters over one table version's attributes; thread-safe."""

    def __init__(self, attributes: pa.Table, names: list[str]) -> None:
        self._attributes = attributes
        self._names = names
        self._columns: dict[str, Column] = {}
        self._lock = threading.Lock()

    def _column(self, name: str) -> Column:
        col = self._columns.get(name)
        if col is None:
            col = self._columns[name] = Column(name, self._attributes.column(name))
        return col

    def compile(self, where: dict[str, Any] | None) -> Node | None:
        """The compiled tree, or None when DuckDB must evaluate this filter."""
        if where is None:
            return None
        try:
            return Compiler({n: self._column(n) for n in self._names}).compile(where)
        except (Unsupported, KeyError):
            return None

    def rows(self, node: Node, params: Sequence[Any]) -> I64 | None:
        """Sorted rows where ``node`` is true; None when these parameter values need DuckDB."""
        try:
            with self._lock:  # sorted indexes are built on first use
                return node.rows(params)
        except (Unsupported, IndexError, OverflowError, ValueError):
            return None
