"""What the LangChain and LlamaIndex adapters share, free of either framework.

- :class:`TableHandle`: the table behind an adapter, opened if it exists and created on the first
  write with the dimension of the first vectors.
- Metadata as typed columns: each top-level metadata key whose name can be a column becomes one
  (so filters run on vecstore's sorted indexes or DuckDB, with bound parameters); the adapters
  also keep each document's whole metadata as JSON so that it reads back exactly.
- Filters: a small expression tree (:class:`Cond`, :class:`Group`, :class:`Not`) that each
  adapter builds from its framework's filter syntax, compiled here to one SQL expression with
  ``?`` parameters. Column names are checked against the table and quoted; values are never
  pasted into the SQL.
- Search modes: :func:`start_query` is the one place where ``vector``, ``keyword`` and
  ``hybrid`` map to vecstore calls.

Filter semantics (both adapters, documented in docs/integrations.md): every condition is true or
false, never SQL's unknown. A document without the key (or with ``None``) fails every
comparison (``eq``, ``gt``, ``in``, ``contains``, ...) and passes the negative ones (``ne``,
``nin``); ``not`` is plain negation. This is what LlamaIndex's own in-memory store and MongoDB's
operators do.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import inspect
import json
import math
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import Metric
from ..db import Database, check_table_name
from ..errors import AlreadyExistsError, FilterError, InvalidArgumentError, NotFoundError, SchemaError
from ..inputs import check_column_name
from ..query.builder import Query
from ..storage.batch import column_key
from ..table import Table


# -- the table ----------------------------------------------------------------------------------
class TableHandle:
    """The vecstore table an adapter reads and writes.

    The table is opened when it exists; otherwise it is created by the first write, with the
    dimension of the vectors written and ``metric`` (cosine unless given). An existing table's
    metric is kept; asking for another one is an error rather than a silent change of scores.
    """

    def __init__(self, path: str | os.PathLike[str] | Database, table_name: str,
                 metric: str | Metric | None = None) -> None:
        self.db = path if isinstance(path, Database) else Database(path)
        self.name = check_table_name(table_name)
        self.requested_metric = None if metric is None else Metric.parse(metric)
        self._table: Table | None = None
        self._lock = threading.Lock()
        self.table()

    def __repr__(self) -> str:
        return f"TableHandle({str(self.db.path)!r}, {self.name!r})"

    def table(self) -> Table | None:
        """The table, or None while nothing has been written to it."""
        if self._table is None:
            try:
                tbl = self.db.open_table(self.name)
            except NotFoundError:
                return None
            self._check_metric(tbl)
            self._table = tbl
        return self._table

    @property
    def metric(self) -> Metric:
        tbl = self.table()
        if tbl is not None:
            return tbl.metric
        return self.requested_metric or Metric.COSINE

    def _check_metric(self, tbl: Table) -> None:
        if self.requested_metric is not None and tbl.metric is not self.requested_metric:
            raise InvalidArgumentError(
                f"table {self.name!r} in {self.db.path} compares vectors by {tbl.metric.value}, "
                f"not {self.requested_metric.value}; leave metric unset to use the table's, or "
                f"choose another table_name")

    def for_vectors(self, dim: int) -> Table:
        """The table, created for ``dim``-dimensional vectors if it does not exist yet."""
        tbl = self.table()
        if tbl is None:
            with self._lock:
                tbl = self.table()
                if tbl is None:
                    try:
                        tbl = self.db.create_table(self.name, dim=dim,
                                                   metric=self.requested_metric or Metric.COSINE)
                    except AlreadyExistsError:  # another writer created it meanwhile
                        tbl = self.db.open_table(self.name)
                        self._check_metric(tbl)
                    self._table = tbl
        if tbl.dim != dim:
            raise InvalidArgumentError(
                f"table {self.name!r} in {self.db.path} holds {tbl.dim}-dimensional vectors but "
                f"these are {dim}-dimensional; use the embedding model the table was made with, "
                f"or another table_name")
        return tbl


def vectors_of(values: Any, count: int, what: str) -> np.ndarray:
    """``count`` embeddings (a list of lists or an array) as one float32 matrix."""
    try:
        mat = np.asarray(values, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{what} returned something that is not vectors: {exc}") from None
    if mat.ndim != 2 or mat.shape[0] != count or mat.shape[1] == 0:
        raise InvalidArgumentError(f"{what} returned an array of shape {mat.shape} for {count} texts")
    return mat


def relevance_fn(metric: Metric) -> Any:
    """Map a vecstore score (higher is better) to [0, 1], so that all three metrics give
    ``(1 + cos) / 2`` for unit-length embeddings: cosine and dot ``(1 + s) / 2``; l2, whose
    score is ``-d**2`` with ``d**2 = 2 - 2 cos``, ``1 + s / 4``. Float rounding just outside
    [0, 1] is clamped; larger excursions (embeddings that are not unit-length, under dot or l2)
    are left for LangChain to warn about."""
    if metric is Metric.L2:
        return lambda s: _unit(1.0 + float(s) / 4.0)
    return lambda s: _unit((1.0 + float(s)) / 2.0)


def _unit(x: float) -> float:
    return min(max(x, 0.0), 1.0) if -1e-6 <= x <= 1.0 + 1e-6 else x


# -- metadata -----------------------------------------------------------------------------------
ESCAPE = "metadata."
"""Prefix of the column that holds a metadata key whose own name is taken: ``id`` goes to the
column ``metadata.id``, ``_source`` to ``metadata._source``."""


@dataclass(frozen=True)
class Layout:
    """An adapter's columns, and where each metadata key is stored.

    ``columns``: what the adapter stores besides ``id`` and ``vector`` (e.g. ``text`` and the
    metadata JSON); ``aliases``: filter keys that name one of them (LlamaIndex's ``ref_doc_id``
    names the ``doc_id`` column).

    A metadata key is stored in the column of the same name, except a key equal (ignoring ASCII
    case) to ``id``, ``vector``, ``score``, one of ``columns`` or ``aliases``, or starting with
    ``_`` (vecstore's own names): that key goes to the column ``metadata.<key>``. Keys that
    cannot be a column even so (control characters, over 247 characters, themselves starting
    with ``metadata.``) stay in the metadata JSON only, and filters on them are refused.
    """

    columns: tuple[str, ...]
    aliases: Mapping[str, str] = field(default_factory=dict)

    @property
    def reserved(self) -> frozenset[str]:
        """The column_keys a metadata key may not use as its column's name."""
        return frozenset(column_key(n) for n in ("id", "vector", "score", *self.columns, *self.aliases))

    def column_name(self, key: str) -> tuple[str | None, str]:
        """The column that holds metadata key ``key``, or None and why it has none."""
        if column_key(key).startswith(ESCAPE):
            return None, f"keys starting with {ESCAPE!r} are kept for the columns of taken names"
        name = key
        if column_key(key) in self.reserved or key.startswith("_"):
            name = ESCAPE + key
        try:
            check_column_name(name)
        except SchemaError as exc:
            return None, str(exc)
        return name, ""


def _scalar(value: Any) -> Any:
    """A numpy scalar as the Python value it holds; anything else unchanged."""
    return value.item() if isinstance(value, np.generic) else value


def _plain_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int, float))


def check_metadata(metadata: Any, where: str) -> dict[str, Any]:
    """``metadata`` as a dict of values vecstore can keep in typed columns, or an error.

    Allowed values: ``str``, ``int``, ``float``, ``bool``, ``None`` and lists (or
    tuples, 1-D arrays) of those; numpy scalars become Python values. A nested dict, a list of
    lists, a date or any other object is refused: flatten it into several keys or store
    ``json.dumps(value)`` (or an ISO string for a date) yourself.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InvalidArgumentError(f"{where}: metadata must be a dict, got {type(metadata).__name__}")
    out: dict[str, Any] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise InvalidArgumentError(f"{where}: metadata keys must be strings, got {key!r}")
        value = _scalar(value)
        if isinstance(value, np.ndarray) and value.ndim == 1:
            value = value.tolist()
        if isinstance(value, (list, tuple)):
            items = [_scalar(v) for v in value]
            if not all(_plain_scalar(v) for v in items):
                bad = next(v for v in items if not _plain_scalar(v))
                raise InvalidArgumentError(
                    f"{where}: metadata key {key!r} holds a list with a {type(bad).__name__} "
                    f"({bad!r}); lists may hold only str, int, float, bool and None")
            value = items
        elif not _plain_scalar(value):
            raise InvalidArgumentError(
                f"{where}: metadata key {key!r} has a value of type {type(value).__name__} "
                f"({value!r}); vecstore keeps metadata as typed columns: str, int, float, bool, "
                f"None or a list of those. Flatten a dict into several keys, or store "
                f"json.dumps(value) (an ISO string for a date) instead")
        out[key] = value
    return out


def metadata_json(metadata: Mapping[str, Any]) -> str:
    return json.dumps(metadata, ensure_ascii=False, separators=(",", ":"))


def columns_for(metadatas: Sequence[Mapping[str, Any]], schema: pa.Schema | None,
                layout: Layout) -> list[dict[str, Any]]:
    """The column values of each document's metadata (checked with :func:`check_metadata`).

    Each key goes to the column :meth:`Layout.column_name` gives, unless that column's name
    differs only in ASCII case from another column's (the table's, or an earlier key's): filters
    could not tell the two apart, so such a key stays in the metadata JSON only.

    Numbers go to DOUBLE columns (JSON has one kind of number: a key holding 1 in one document
    and 1.5 in the next is one column), except into a column that exists with an integer type.
    The metadata JSON keeps each value exactly."""
    types = {f.name: f.type for f in schema} if schema is not None else {}
    taken = {column_key(n): n for n in types}
    decided: dict[str, str | None] = {}
    out = []
    for metadata in metadatas:
        cols = {}
        for key, value in metadata.items():
            if key not in decided:
                name, _ = layout.column_name(key)
                if name is not None and taken.setdefault(column_key(name), name) != name:
                    name = None
                decided[key] = name
            col = decided[key]
            if col is not None:
                cols[col] = value if _keeps_ints(types.get(col)) else _floats(value)
        out.append(cols)
    return out


def _keeps_ints(t: pa.DataType | None) -> bool:
    if t is not None and (pa.types.is_list(t) or pa.types.is_large_list(t)):
        t = t.value_type
    return t is not None and pa.types.is_integer(t)


def _floats(value: Any) -> Any:
    """``value`` with its integers (not booleans) as floats."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value


def explain_schema_error(exc: SchemaError) -> SchemaError:
    """vecstore's message about a row that does not fit a column, told for metadata."""
    return SchemaError(f"{exc}. Each metadata key is one typed column: its values must keep one "
                       f"type across documents (integers may go into a float column, not the "
                       f"reverse; a string never goes into a number column)")


# -- filters ------------------------------------------------------------------------------------
class Op(enum.Enum):
    """The filter operators both adapters compile (each maps its framework's names to these)."""

    EQ = "eq"
    NE = "ne"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    IN = "in"
    NIN = "nin"
    CONTAINS = "contains"  # a list column holds the value
    ANY = "any"  # a list column holds at least one of the values
    ALL = "all"  # a list column holds every one of the values
    TEXT_MATCH = "text_match"  # a string column contains the value as a substring
    TEXT_MATCH_INSENSITIVE = "text_match_insensitive"
    IS_EMPTY = "is_empty"  # missing, null, '' or []
    EXISTS = "exists"  # value True: the key is present and not null; False: missing or null
    LIKE = "like"
    ILIKE = "ilike"


_COMPARE = {Op.EQ: "=", Op.NE: "<>", Op.GT: ">", Op.GTE: ">=", Op.LT: "<", Op.LTE: "<="}
_LIST_OPS = (Op.IN, Op.NIN, Op.ANY, Op.ALL)
_ON_LISTS = (Op.CONTAINS, Op.ANY, Op.ALL)
_ON_STRINGS = (Op.TEXT_MATCH, Op.TEXT_MATCH_INSENSITIVE, Op.LIKE, Op.ILIKE)
MAX_OR_TERMS = 256
"""ANY over more values than this uses list_has_any (DuckDB) instead of an OR of list_contains
(the sorted-index fast path), which keeps filters under the sandbox's operand limit."""


@dataclass(frozen=True)
class Cond:
    """``key op value``: one condition on a metadata key."""

    key: str
    op: Op
    value: Any = None


@dataclass(frozen=True)
class Group:
    """Conditions joined by AND (``any_of=False``) or OR. An empty AND is true, an empty OR false."""

    parts: tuple[Expr, ...]
    any_of: bool = False


@dataclass(frozen=True)
class Not:
    part: Expr


Expr = Cond | Group | Not


def quote(name: str) -> str:
    """``name`` as a quoted SQL identifier."""
    return '"' + name.replace('"', '""') + '"'


_PARAM_TYPES = (str, bool, int, float, decimal.Decimal, dt.date, dt.datetime)


class FilterCompiler:
    """Compiles an :data:`Expr` to ``(sql, params)`` against a table's columns.

    ``spell`` maps each :class:`Op` to the name the user wrote (``$gt``, ``GT``) for messages.
    """

    def __init__(self, schema: pa.Schema | None, layout: Layout, spell: Mapping[Op, str]) -> None:
        self.types = {f.name: f.type for f in schema} if schema is not None else {}
        self.by_key = {column_key(n): n for n in self.types}
        self.layout = layout
        self.spell = spell
        self.params: list[Any] = []

    def compile(self, expr: Expr) -> tuple[str, list[Any]]:
        self.params = []
        sql = self._expr(expr)
        return sql, self.params

    def _expr(self, expr: Expr) -> str:
        if isinstance(expr, Cond):
            return self._cond(expr)
        if isinstance(expr, Not):
            return f"NOT ({self._expr(expr.part)})"
        if isinstance(expr, Group):
            if not expr.parts:
                return "false" if expr.any_of else "true"
            parts = [self._expr(p) for p in expr.parts]
            if len(parts) == 1:
                return parts[0]
            return "(" + (" OR " if expr.any_of else " AND ").join(parts) + ")"
        raise FilterError(f"not a filter expression: {expr!r}")  # pragma: no cover - adapters build these

    # -- columns ---------------------------------------------------------------------------------
    def column(self, key: str) -> str | None:
        """The column ``key`` names, or None when no row of the table has that key."""
        if not isinstance(key, str) or not key:
            raise FilterError(f"a filter key must be a non-empty string, got {key!r}")
        target = self.layout.aliases.get(key)
        if target is not None:
            return target if target in self.types else None
        name, why = self.layout.column_name(key)
        if name is None:
            raise FilterError(f"cannot filter on metadata key {key!r}: it is kept only in each "
                              f"document's metadata JSON, which filters do not read ({why})")
        if name in self.types:
            return name
        other = self.by_key.get(column_key(name))
        if other is not None:
            raise FilterError(
                f"cannot filter on metadata key {key!r}: its column name {name!r} differs only in "
                f"letter case from the column {other!r}, which filters could not tell apart, so "
                f"the key is kept only in each document's metadata JSON; rename it")
        return None

    # -- one condition ---------------------------------------------------------------------------
    def _cond(self, c: Cond) -> str:
        name = self.spell.get(c.op, c.op.value)
        value = self._value(c, name)
        col = self.column(c.key)
        if col is None:  # no row has the key: every row is "missing"
            return "true" if self._missing_passes(c.op, value) else "false"
        t = self.types[col]
        q = quote(col)
        is_list = pa.types.is_list(t) or pa.types.is_large_list(t)
        if c.op in _ON_LISTS and not is_list and not pa.types.is_null(t):
            raise FilterError(f"{name} needs a list-valued key; {c.key!r} holds {t} values"
                              + ("; for substrings use " + self.spell[Op.TEXT_MATCH]
                                 if pa.types.is_string(t) and Op.TEXT_MATCH in self.spell else ""))
        if c.op not in _ON_LISTS and c.op not in (Op.IS_EMPTY, Op.EXISTS) and is_list:
            hint = ", ".join(self.spell[o] for o in _ON_LISTS if o in self.spell)
            raise FilterError(f"{name} compares single values, but {c.key!r} holds lists ({t}); "
                              f"use {hint}")
        if c.op in _ON_STRINGS and not (pa.types.is_string(t) or pa.types.is_null(t)):
            raise FilterError(f"{name} needs a string-valued key; {c.key!r} holds {t} values")
        present = f"{q} IS NOT NULL"
        if c.op is Op.EXISTS:
            return present if value else f"{q} IS NULL"
        if c.op is Op.IS_EMPTY:
            if pa.types.is_string(t):
                return f"({q} IS NULL OR {q} = '')"
            if is_list:
                return f"({q} IS NULL OR len({q}) = 0)"
            return f"{q} IS NULL"
        if c.op in (Op.EQ, Op.NE) and value is None:
            return f"{q} IS NULL" if c.op is Op.EQ else present
        if c.op is Op.NE:
            return f"({q} IS NULL OR {q} <> {self._param(value)})"
        if c.op in _COMPARE:
            return f"({present} AND {q} {_COMPARE[c.op]} {self._param(value)})"
        if c.op is Op.IN:
            if not value:
                return "false"
            return f"({present} AND {q} IN ({', '.join(self._param(v) for v in value)}))"
        if c.op is Op.NIN:
            if not value:
                return "true"
            return f"({q} IS NULL OR {q} NOT IN ({', '.join(self._param(v) for v in value)}))"
        if c.op is Op.CONTAINS:
            return f"({present} AND list_contains({q}, {self._param(value)}))"
        if c.op is Op.ANY:
            if not value:
                return "false"
            if len(value) > MAX_OR_TERMS:
                return f"({present} AND list_has_any({q}, [{', '.join(self._param(v) for v in value)}]))"
            terms = " OR ".join(f"list_contains({q}, {self._param(v)})" for v in value)
            return f"({present} AND ({terms}))"
        if c.op is Op.ALL:
            if not value:
                return present
            if len(value) > MAX_OR_TERMS:
                return f"({present} AND list_has_all({q}, [{', '.join(self._param(v) for v in value)}]))"
            terms = " AND ".join(f"list_contains({q}, {self._param(v)})" for v in value)
            return f"({present} AND {terms})"
        if c.op is Op.TEXT_MATCH:
            return f"({present} AND contains({q}, {self._param(value)}))"
        if c.op is Op.TEXT_MATCH_INSENSITIVE:
            return f"({present} AND contains(lower({q}), lower({self._param(value)})))"
        if c.op is Op.LIKE:
            return f"({present} AND {q} LIKE {self._param(value)})"
        if c.op is Op.ILIKE:
            return f"({present} AND {q} ILIKE {self._param(value)})"
        raise FilterError(f"operator {name} is not supported")  # pragma: no cover - Op is closed

    @staticmethod
    def _missing_passes(op: Op, value: Any) -> bool:
        """Whether a document without the key satisfies ``op value``."""
        if op in (Op.EQ, Op.NE) and value is None:
            return op is Op.EQ
        if op is Op.EXISTS:
            return not value
        return op in (Op.NE, Op.NIN, Op.IS_EMPTY)

    def _param(self, value: Any) -> str:
        self.params.append(value)
        return "?"

    def _value(self, c: Cond, name: str) -> Any:
        """The condition's value, checked for its operator (numpy scalars become Python)."""
        value = c.value
        if c.op is Op.IS_EMPTY:
            return None
        if c.op is Op.EXISTS:
            if not isinstance(value, (bool, np.bool_)):
                raise FilterError(f"{name} takes true or false, got {value!r}")
            return bool(value)
        if c.op in _LIST_OPS:
            if isinstance(value, np.ndarray):
                value = value.tolist()
            if not isinstance(value, (list, tuple)):
                raise FilterError(f"{name} on {c.key!r} takes a list of values, got {value!r}")
            items = [_scalar(v) for v in value]
            for v in items:
                self._check_scalar(v, c, name)
            return items
        value = _scalar(value)
        if value is None and c.op in (Op.EQ, Op.NE):
            return None
        self._check_scalar(value, c, name)
        if c.op in _ON_STRINGS and not isinstance(value, str):
            raise FilterError(f"{name} on {c.key!r} takes a string, got {value!r}")
        return value

    @staticmethod
    def _check_scalar(value: Any, c: Cond, name: str) -> None:
        if value is None:
            raise FilterError(f"{name} on {c.key!r}: None is not a value to compare with (a "
                              f"missing key never equals anything); test for it with the "
                              f"existence operators")
        if not isinstance(value, _PARAM_TYPES):
            raise FilterError(f"{name} on {c.key!r} takes str, int, float, bool, date or datetime "
                              f"values, got {type(value).__name__} {value!r}")
        if isinstance(value, float) and math.isnan(value):
            raise FilterError(f"{name} on {c.key!r}: NaN compares equal to nothing")


def compile_filter(expr: Expr | None, table: Table | None, layout: Layout,
                   spell: Mapping[Op, str]) -> tuple[str | None, list[Any]]:
    """``expr`` as ``(sql, params)`` for ``table`` (None: no filter)."""
    if expr is None:
        return None, []
    schema = table.schema if table is not None else None
    return FilterCompiler(schema, layout, spell).compile(expr)


def and_sql(*parts: tuple[str | None, list[Any]]) -> tuple[str | None, list[Any]]:
    """Several ``(sql, params)`` filters joined by AND (None parts skipped)."""
    sqls = [p[0] for p in parts if p[0] is not None]
    params = [v for p in parts if p[0] is not None for v in p[1]]
    if not sqls:
        return None, []
    return (sqls[0] if len(sqls) == 1 else " AND ".join(f"({s})" for s in sqls)), params


def in_sql(column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
    """``column IN (?, ...)`` over string values (``false`` for none)."""
    values = [str(v) for v in values]
    if not values:
        return "false", []
    return f"{quote(column)} IN ({', '.join('?' * len(values))})", values


# -- search modes -------------------------------------------------------------------------------
class SearchMode(str, enum.Enum):
    """How a text query is matched: by its embedding, by BM25 over the ``text`` column, or both
    fused."""

    VECTOR = "vector"
    KEYWORD = "keyword"
    HYBRID = "hybrid"

    @classmethod
    def parse(cls, value: str | SearchMode) -> SearchMode:
        if isinstance(value, SearchMode):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            raise InvalidArgumentError(
                f"unknown search mode {value!r}; use one of: {', '.join(m.value for m in cls)}") from None

    @property
    def needs_vector(self) -> bool:
        return self is not SearchMode.KEYWORD

    @property
    def needs_text(self) -> bool:
        return self is not SearchMode.VECTOR


FUSIONS = ("rrf", "weighted", "zscore")


@dataclass(frozen=True)
class Fusion:
    """How hybrid search merges its keyword and vector rankings (vecstore's ``Query.fusion``).

    ``Fusion.rrf(k=60)``: reciprocal rank fusion, ``sum(1 / (k + rank))``.
    ``Fusion.weighted(alpha=0.5)``: ``alpha * vector score + (1 - alpha) * keyword score`` after
    each is min-max normalised; ``alpha=1`` is vector search alone, ``0`` keyword search alone (as
    LlamaIndex's ``VectorStoreQuery.alpha``).
    ``Fusion("zscore")``: standardised scores. No Fusion at all (None) is vecstore's default.
    ``k`` and ``alpha`` left None are vecstore's defaults.
    """

    method: str
    k: int | None = None
    alpha: float | None = None

    def __post_init__(self) -> None:
        if self.method not in FUSIONS:
            raise InvalidArgumentError(f"unknown fusion {self.method!r}; use one of: {', '.join(FUSIONS)}")
        if self.k is not None and (not isinstance(self.k, int) or isinstance(self.k, bool) or self.k < 1):
            raise InvalidArgumentError(f"rrf k must be a positive integer, got {self.k!r}")
        if self.alpha is not None and (not isinstance(self.alpha, (int, float))
                                       or isinstance(self.alpha, bool)
                                       or not 0.0 <= float(self.alpha) <= 1.0):
            raise InvalidArgumentError(f"alpha must be a number in [0, 1], got {self.alpha!r}")

    @classmethod
    def rrf(cls, k: int = 60) -> Fusion:
        return cls("rrf", k=k)

    @classmethod
    def weighted(cls, alpha: float = 0.5) -> Fusion:
        return cls("weighted", alpha=alpha)

    @classmethod
    def parse(cls, value: Fusion | str | None) -> Fusion | None:
        """A Fusion, from a Fusion, a method name, or None (vecstore's default)."""
        if value is None or isinstance(value, Fusion):
            return value
        if isinstance(value, str):
            return cls(value.lower())
        raise InvalidArgumentError(f"fusion must be one of {', '.join(FUSIONS)}, a Fusion or None, "
                                   f"got {value!r}")


def has_keyword_search(table: Table) -> bool:
    """Whether this vecstore's ``Table.search`` takes ``mode=`` (keyword and hybrid search)."""
    return "mode" in inspect.signature(type(table).search).parameters


def start_query(table: Table, mode: SearchMode, *, text: str | None, vector: Any,
                fusion: Fusion | None) -> Query:
    """The vecstore query for one search in ``mode``: the one place where modes map to calls.

    ``text`` is the query text (keyword and hybrid), ``vector`` its embedding (vector and
    hybrid), made by the framework's embedding model.
    """
    if mode is SearchMode.VECTOR:
        if vector is None:
            raise InvalidArgumentError("vector search needs a query embedding")
        return table.search(vector)
    if not has_keyword_search(table):
        raise InvalidArgumentError(
            f"search mode {mode.value!r} needs vecstore with keyword search "
            f"(Table.search(text, mode='keyword' | 'hybrid')), which this version of vecstore "
            f"does not have; use search mode 'vector'")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgumentError(f"{mode.value} search needs a non-empty query text")
    search: Any = table.search  # typed loosely: mode= exists only where has_keyword_search says so
    query: Any
    if mode is SearchMode.KEYWORD:
        query = search(text, mode="keyword")
        return query
    if vector is None:
        raise InvalidArgumentError("hybrid search needs a query embedding as well as the text")
    query = search(text, mode="hybrid", vector=vector)
    if fusion is None:
        return query
    options = {name: value for name, value in (("k", fusion.k), ("alpha", fusion.alpha))
               if value is not None}
    return query.fusion(fusion.method, **options)


def run_query(query: Query, k: int, where: tuple[str | None, list[Any]],
              columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run ``query`` for ``k`` rows under the filter ``where``; rows best first as dicts."""
    sql, params = where
    if sql is not None:
        query = query.where(sql, *params)
    if columns is not None:
        query = query.select(*columns)
    return query.limit(k).to_list()


def check_k(k: Any, name: str = "k") -> int:
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise InvalidArgumentError(f"{name} must be a positive integer, got {k!r}")
    return int(k)
