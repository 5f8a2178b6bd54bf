"""How much time and memory one row of a filter may cost, checked before DuckDB runs it.

The allow-list of :mod:`.filters` says *what* a filter may call; this module bounds *how much*
it may make DuckDB do per row, because neither of DuckDB's own limits covers it:

- DuckDB's ``memory_limit`` bounds its operators (hash tables, results), not the strings and
  lists an expression builds: ``concat(s, s, ... x10000)`` on 2,000 short rows takes 1.2 GB with
  a 300 MB limit. An expression is evaluated 2,048 rows (one vector) at a time, so what it
  builds per row is multiplied by 2,048.
- ``interrupt()`` is seen between vectors only: one ``levenshtein`` call on two 1 MB values
  never returns to look at it, and 2,048 calls on 2,000-character values take a minute.

So each filter's parse tree is sized: every value it builds gets an upper bound in bytes, as
``copies`` of each column's value plus constant bytes (and the bound parameters' sizes once they
are known). The column's longest value in the table version is measured only when a bound
needs it (once per version and column). A filter is refused (:class:`~vecstore.FilterError`
naming the function, the sizes and the limit) when

- a per-row quadratic function (edit distances, Jaro) or a LIKE pattern that backtracks (a
  single-character wildcard between two ``%`` runs) could cost more than
  :data:`MAX_CELLS_PER_ROW` steps on one row;
- the values it builds for one row could exceed :data:`MAX_BUILT_BYTES_PER_ROW` *and* it copies
  some column's value more than :data:`MAX_COPIES` times (a bounded number of copies of the
  row's own values is fine however long they are: memory then grows with the data, not with
  the filter), or its constants and parameters alone exceed the byte limit;
- a function or CASE takes more than :data:`MAX_ARGUMENTS` arguments (DuckDB's binder takes
  gigabytes on ``list_value`` with 10,000 arguments, even on 4 rows).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import FilterError

MAX_CELLS_PER_ROW = 100_000
"""Steps one row of a quadratic function may take: ``len(a) * len(b)`` for edit distances,
``len(s) ** 2`` for a backtracking LIKE pattern. Measured on DuckDB 1.5.5: 7-8 ns a step for
``levenshtein``, 15 for ``damerau_levenshtein``, so a 2,048-row vector at the limit takes 1.5-3 s
and a timeout (:meth:`vecstore.Query.timeout`) stops the query within that."""

MAX_BUILT_BYTES_PER_ROW = 64 * 1024
"""Bytes of strings and lists a filter may build for one row from constants, parameters and
many copies of columns: 128 MiB for a 2,048-row vector."""

MAX_COPIES = 16
"""How many copies of one column's value a filter may build per row, however long the value:
memory then stays within this many times the data of the rows being read."""

MAX_ARGUMENTS = 256
"""Arguments of one function call, or WHEN clauses of one CASE. ``IN (...)`` lists are bounded
by the filter's length (:data:`~.filters.MAX_FILTER_CHARS`) and run as a hash lookup."""

QUADRATIC_FUNCTIONS = frozenset({
    "levenshtein", "editdist3", "damerau_levenshtein", "jaro_similarity", "jaro_winkler_similarity",
})
"""Functions whose cost per row is the product of their two operands' sizes. (``jaccard``,
``hamming`` and ``mismatches`` are linear: 3,000-character values take microseconds.)"""

_FIXED = 16  # bytes a number, date or boolean takes (its text is at most 64 more, see CAST)

# name -> how the size of the result follows from its arguments' sizes
_SUM = frozenset({"||", "concat", "list_value", "array_value", "list_concat", "array_concat",
                  "list_cat", "array_cat"})
_FIRST = {  # result <= factor x the first argument (Unicode case mapping and NFC grow UTF-8)
    "lower": 2, "upper": 2, "lcase": 2, "ucase": 2, "nfc_normalize": 3, "strip_accents": 1,
    "trim": 1, "ltrim": 1, "rtrim": 1, "reverse": 1, "split_part": 1, "list_distinct": 1,
    "list_unique": 1, "list_sort": 1, "list_intersect": 1, "list_slice": 1, "array_slice": 1,
    "string_split": 17,  # a 16-byte string header for every piece, up to one per byte
}
_TRUNCATE = {"substring": 2, "substr": 2, "left": 1, "right": 1}  # name -> position of the length
_PICK = frozenset({"coalesce", "ifnull", "nullif", "if", "iff", "greatest", "least", "list_extract",
                   "array_extract", "list_element"})  # the result is one of the arguments
_CONSTANT_SIZE = {"md5": 32, "chr": 4}


@dataclass
class Size:
    """An upper bound on a value's size in bytes: ``copies[c]`` times column ``c``'s longest
    value, plus ``extra`` bytes (constants, parameters, fixed-size values)."""

    copies: dict[str, int] = field(default_factory=dict)
    extra: int = 0

    def plus(self, other: Size, times: int = 1) -> Size:
        copies = dict(self.copies)
        for c, n in other.copies.items():
            copies[c] = copies.get(c, 0) + n * times
        return Size(copies, self.extra + other.extra * times)

    def scaled(self, times: int, extra: int = 0) -> Size:
        return Size({c: n * times for c, n in self.copies.items()}, self.extra * times + extra)

    def bytes(self, longest: Callable[[str], int]) -> int:
        return sum(n * longest(c) for c, n in self.copies.items()) + self.extra


def value_size(value: Any) -> int:
    """The bytes a constant or bound parameter holds (strings, lists of them, fixed values)."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value.encode("utf-8", "surrogatepass"))
    if isinstance(value, (bytes, bytearray)):
        return len(value)
    if isinstance(value, (list, tuple)):
        return sum(value_size(v) + _FIXED for v in value)
    return _FIXED


class SizeChecker:
    """Sizes one checked parse tree (see the module's docstring). ``variable``: the columns
    whose values vary in size (strings, lists, ...); ``longest(c)``: the longest value of such a
    column in bytes, measured on demand; ``params``: the bound parameters (None at check time,
    before they are known: they count as empty then)."""

    def __init__(self, text: str, variable: frozenset[str], longest: Callable[[str], int],
                 params: Sequence[Any] | None, backtracks: Callable[[Any, str], bool]) -> None:
        self.text = text
        self.variable = variable
        self.longest = longest
        self.params = params
        self.backtracks = backtracks  # (pattern, function) -> whether matching it is quadratic
        self.built = Size()

    def fail(self, why: str) -> FilterError:
        return FilterError(f"invalid filter {self.text!r}: {why}")

    def check(self, where: Any) -> None:
        """Raise :class:`~vecstore.FilterError` when the filter is over one of the bounds."""
        self.size(where)
        built = self.built
        worst = max(built.copies.values(), default=0)
        if worst <= MAX_COPIES and built.extra <= MAX_BUILT_BYTES_PER_ROW:
            return  # a bounded multiple of the row's own data: no need to measure anything
        total = built.bytes(self.longest)
        if total <= MAX_BUILT_BYTES_PER_ROW:
            return  # many copies, but of short values
        parts = [f"column {c!r} {n} times, its longest value {self.longest(c):,} bytes"
                 for c, n in sorted(built.copies.items(), key=lambda kv: -kv[1])[:3]]
        if built.extra:
            parts.append(f"{built.extra:,} bytes of constants and parameters")
        raise self.fail(
            f"it builds up to {total:,} bytes of strings or lists per row ({'; '.join(parts)}); "
            f"the limit is {MAX_BUILT_BYTES_PER_ROW:,} bytes per row, or at most {MAX_COPIES} copies "
            f"of a column's value with {MAX_BUILT_BYTES_PER_ROW:,} bytes of constants: compare the "
            f"columns one by one instead of concatenating them (DuckDB evaluates a filter 2,048 rows "
            f"at a time, and its memory limit does not cover these values)")

    def _param(self, node: dict[str, Any]) -> int:
        ident = str(node.get("identifier", ""))
        if self.params is None or not ident.isdigit() or not 0 < int(ident) <= len(self.params):
            return 0
        return value_size(self.params[int(ident) - 1])

    def _value(self, node: Any) -> Any:
        """The value of a constant or (once known) a parameter, else None."""
        if not isinstance(node, dict):
            return None
        if node.get("class") == "CONSTANT":
            return (node.get("value") or {}).get("value")
        ident = str(node.get("identifier", ""))
        if node.get("class") == "PARAMETER" and self.params is not None and ident.isdigit() \
                and 0 < int(ident) <= len(self.params):
            return self.params[int(ident) - 1]
        return None

    def _build(self, size: Size) -> Size:
        self.built = self.built.plus(size)
        return size

    def size(self, node: Any) -> Size:
        """An upper bound on the size of ``node``'s value; adds what it builds to ``built``."""
        if isinstance(node, list):
            total = Size()
            for child in node:
                total = total.plus(self.size(child))
            return total
        if not isinstance(node, dict):
            return Size()
        cls = node.get("class")
        if cls == "COLUMN_REF":
            name = node["column_names"][0]
            return Size({name: 1}) if name in self.variable else Size(extra=_FIXED)
        if cls == "CONSTANT":
            return Size(extra=value_size((node.get("value") or {}).get("value")))
        if cls == "PARAMETER":
            return Size(extra=self._param(node))
        if cls == "CAST":
            child = self.size(node.get("child"))
            return self._build(child.scaled(2, 64))  # a number's or list's text: 2 x its bytes + 64
        if cls == "COLLATE":
            return self.size(node.get("child"))
        if cls == "CASE":
            checks = node.get("case_checks") or []
            if len(checks) > MAX_ARGUMENTS:
                raise self.fail(f"a CASE has {len(checks):,} WHEN clauses; the limit is "
                                f"{MAX_ARGUMENTS}: use a column IN (...) list or a lookup of fewer values")
            out = self.size(node.get("else_expr"))
            for check in checks:
                self.size(check.get("when_expr"))
                out = out.plus(self.size(check.get("then_expr")))
            return out  # one of the branches, not a new value
        if cls == "OPERATOR":
            children = node.get("children") or []
            kind = node.get("type")
            if kind not in ("COMPARE_IN", "COMPARE_NOT_IN") and len(children) > MAX_ARGUMENTS:
                raise self.fail(f"{kind} has {len(children):,} operands; the limit is {MAX_ARGUMENTS}")
            sizes = [self.size(c) for c in children]
            if kind == "ARRAY_EXTRACT" and sizes:
                return sizes[0]
            if kind == "ARRAY_SLICE" and sizes:
                return self._build(sizes[0])
            if kind in ("OPERATOR_COALESCE", "OPERATOR_NULLIF"):
                total = Size()
                for s in sizes:
                    total = total.plus(s)
                return total
            return Size(extra=_FIXED)
        if cls == "FUNCTION":
            return self._function(node)
        # comparisons, AND/OR, BETWEEN: a boolean; their operands may still build values
        for key, value in node.items():
            if key not in ("class", "type", "alias", "query_location"):
                self.size(value)
        return Size(extra=_FIXED)

    def _function(self, node: dict[str, Any]) -> Size:
        name = str(node.get("function_name", "")).lower()
        children = node.get("children") or []
        if len(children) > MAX_ARGUMENTS:
            raise self.fail(f"{name}() has {len(children):,} arguments; the limit is {MAX_ARGUMENTS}: "
                            f"for a long list of values use \"column IN (...)\" or "
                            f"\"list_contains(?, column)\" with the list as a parameter")
        sizes = [self.size(c) for c in children]
        if name in QUADRATIC_FUNCTIONS and len(sizes) >= 2:
            a, b = sizes[0].bytes(self.longest), sizes[1].bytes(self.longest)
            if a * b > MAX_CELLS_PER_ROW:
                raise self.fail(
                    f"{name}() compares values of up to {a:,} and {b:,} bytes, {a * b:,} steps per row; "
                    f"the limit is {MAX_CELLS_PER_ROW:,} (DuckDB cannot stop one call once it "
                    f"started): compare shorter values, e.g. {name}(left(column, 200), 'text')")
            return Size(extra=_FIXED)
        n = sizes[0].bytes(self.longest) if len(children) >= 2 and \
            self.backtracks(self._value(children[1]), name) else 0
        if n * n > MAX_CELLS_PER_ROW:
            raise self.fail(
                f"the pattern mixes a single-character wildcard with two wildcard runs, which DuckDB "
                f"matches in time quadratic in the value's length, and the values are up to {n:,} "
                f"bytes long ({n * n:,} steps per row; the limit is {MAX_CELLS_PER_ROW:,}): use one "
                f"'%' run, or regexp_matches(column, '...') (linear time)")
        if name in _SUM:
            total = Size(extra=_FIXED * len(sizes) if name in ("list_value", "array_value") else 0)
            for s in sizes:
                total = total.plus(s)
            return self._build(total)
        if name == "concat_ws" and sizes:
            total = sizes[0].scaled(max(len(sizes) - 2, 0))
            for s in sizes[1:]:
                total = total.plus(s)
            return self._build(total)
        if name in _FIRST and sizes:
            return self._build(sizes[0].scaled(_FIRST[name]))
        if name in _TRUNCATE and sizes:
            length = self._value(children[_TRUNCATE[name]]) if len(children) > _TRUNCATE[name] else None
            if isinstance(length, int) and not isinstance(length, bool) and (
                    0 <= length <= 256 or 0 <= length * 4 < sizes[0].bytes(self.longest)):
                return self._build(Size(extra=length * 4))  # n characters: at most 4n UTF-8 bytes
            return self._build(sizes[0])
        if name in _PICK:
            total = Size()
            for s in sizes:
                total = total.plus(s)
            return total
        if name == "strftime" and len(sizes) >= 2:
            return self._build(sizes[1].scaled(32, 64))  # each %-code writes at most ~32 bytes
        if name in _CONSTANT_SIZE:
            return Size(extra=_CONSTANT_SIZE[name])
        return Size(extra=_FIXED)  # numbers and booleans (length, strpos, contains, ...)
