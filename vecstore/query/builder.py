"""The immutable, chainable :class:`Query` (and :class:`BatchQuery`) that ``Table.search``
returns. A query only accumulates a :class:`~.spec.QuerySpec`; its source (the table) checks
filters and columns as they are given and runs the spec when results are asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import pyarrow as pa

from ..errors import InvalidArgumentError
from .results import Hits, Plan
from .spec import QuerySpec

MAX_K = 100_000
MAX_OVERSAMPLE = 4096
Self = TypeVar("Self", bound="_Chain")


def _with(obj: Any, **changes: Any) -> Any:
    """A copy of the frozen dataclass ``obj`` with ``changes`` (what ``dataclasses.replace``
    does, without re-running ``__init__``: every query step pays it)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    new.__dict__.update(changes)
    return new


class QuerySource(Protocol):
    """What a query needs from the table it searches."""

    def check_filter(self, where: str) -> None:
        """Raise :class:`~vecstore.FilterError` unless ``where`` is a valid filter."""

    def check_columns(self, columns: tuple[str, ...]) -> None:
        """Raise :class:`~vecstore.InvalidArgumentError` for an unknown column."""

    # optional: ``parse_combine(value) -> Combine`` (tables with vector columns to choose from)

    def run(self, spec: QuerySpec) -> list[Hits]:
        """One :class:`Hits` per query vector of ``spec``."""


@dataclass(frozen=True, eq=False)
class _Chain:
    """What single and batch queries share: filter, limit, rescoring, columns."""

    _source: QuerySource
    _spec: QuerySpec

    def where(self: Self, sql: str, *params: Any) -> Self:
        """Keep only rows for which the SQL expression ``sql`` is true. ``?`` placeholders are
        bound to ``params`` (never pasted into the SQL). Calling ``where`` again replaces the
        filter; combine conditions with AND inside one expression."""
        self._source.check_filter(sql)
        return _with(self, _spec=_with(self._spec, where=sql, params=tuple(params)))

    def limit(self: Self, k: int) -> Self:
        """Return at most ``k`` rows (default 10)."""
        if type(k) is not int and (not isinstance(k, (int, np.integer)) or isinstance(k, bool)) \
                or k < 0 or k > MAX_K:
            raise InvalidArgumentError(f"limit must be an integer in 0..{MAX_K}, got {k!r}")
        return _with(self, _spec=_with(self._spec, k=int(k)))

    def rescore(self: Self, oversample: int = 16) -> Self:
        """Take ``k x oversample`` candidates from the binary codes (or ``oversample / 16`` times
        more from an index) before rescoring them. Higher is slower and never lowers recall."""
        if (not isinstance(oversample, (int, np.integer)) or isinstance(oversample, bool)
                or not 1 <= oversample <= MAX_OVERSAMPLE):
            raise InvalidArgumentError(
                f"oversample must be an integer in 1..{MAX_OVERSAMPLE}, got {oversample!r}")
        return _with(self, _spec=_with(self._spec, oversample=int(oversample)))

    def exact(self: Self, exact: bool = True) -> Self:
        """Score every matching row with float32 vectors (slow, exact: the oracle)."""
        return _with(self, _spec=_with(self._spec, exact=bool(exact)))

    def using(self: Self, *columns: str) -> Self:
        """Score by these vector columns only (a multi-vector table; the best of them when
        several), e.g. ``.using("vector_late")``; ``.using("vector")`` on any table is a plain
        search of its primary vector."""
        if len(columns) == 1 and isinstance(columns[0], (list, tuple)):
            columns = tuple(columns[0])
        if not columns:
            raise InvalidArgumentError("using() needs at least one vector column")
        return self.combine(columns[0] if len(columns) == 1 else list(columns))

    def combine(self: Self, how: Any) -> Self:
        """How a row that keeps several vectors is scored: ``"max"`` (its best vector), a
        column or list of columns (the best of those), or ``{column: weight}`` (the weighted
        sum of their scores, e.g. ``{"vector": 0.75, "vector_context": 0.25}``). The table's
        own combination is used unless a query says otherwise."""
        parse = getattr(self._source, "parse_combine", None)
        if parse is None:
            raise InvalidArgumentError("using()/combine() are not available on this table (a remote one)")
        return _with(self, _spec=_with(self._spec, combine=parse(how)))

    def select(self: Self, *columns: str) -> Self:
        """Return only these columns besides ``id`` and ``score`` (``"vector"`` adds the vector)."""
        if len(columns) == 1 and isinstance(columns[0], (list, tuple)):
            columns = tuple(columns[0])
        self._source.check_columns(tuple(columns))
        return _with(self, _spec=_with(self._spec, columns=tuple(columns)))


@dataclass(frozen=True, eq=False)
class BatchQuery(_Chain):
    """Many query vectors at once, with one filter: the filter is evaluated once and the
    queries run on a pool of threads (the kernels and the index libraries release the GIL).

    >>> import vecstore, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> tbl = vecstore.connect(tmp.name).create_table("t", dim=2)
    >>> _ = tbl.add([{"id": "a", "vector": [1, 0]}, {"id": "b", "vector": [0, 1]}])
    >>> [[h["id"] for h in hits] for hits in tbl.search_batch([[1, 0], [0, 1]]).limit(1).to_list()]
    [['a'], ['b']]
    >>> tmp.cleanup()
    """

    def hits(self) -> list[Hits]:
        """One :class:`Hits` per query, in the order of the queries."""
        return self._source.run(self._spec)

    def to_list(self) -> list[list[dict[str, Any]]]:
        return [h.to_list() for h in self.hits()]

    def to_arrow(self) -> pa.Table:
        """All hits in one table, with a ``query`` column (the query's position) first."""
        tables = []
        for i, h in enumerate(self.hits()):
            t = h.to_arrow()
            tables.append(t.add_column(0, "query", pa.array(np.full(t.num_rows, i, dtype=np.int32))))
        return pa.concat_tables(tables) if tables else pa.table({"query": pa.array([], pa.int32())})


@dataclass(frozen=True, eq=False)
class Query(_Chain):
    """A vector query over a table. Every method returns a new Query; nothing runs until
    ``to_list()``, ``to_arrow()``, ``to_pandas()``, ``hits()`` or ``explain()``.

    >>> import vecstore, tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> db = vecstore.connect(tmp.name)
    >>> tbl = db.create_table("t", dim=2)
    >>> _ = tbl.add([{"id": "a", "vector": [1, 0], "n": 1}, {"id": "b", "vector": [0, 1], "n": 2}])
    >>> [h["id"] for h in tbl.search([1, 0.1]).where("n >= ?", 1).limit(1).to_list()]
    ['a']
    >>> tmp.cleanup()
    """

    def hits(self) -> Hits:
        """Run the query: the rows found, best first, and the plan that found them."""
        return self._source.run(self._spec)[0]

    def to_list(self) -> list[dict[str, Any]]:
        """``[{"id", "score", <attributes>...}]``, best first."""
        return self.hits().to_list()

    def to_arrow(self) -> pa.Table:
        return self.hits().to_arrow()

    def to_pandas(self) -> Any:
        return self.hits().to_pandas()

    def explain(self) -> Plan:
        """Run the query and return the plan it used (print it for a readable report)."""
        return self.hits().plan
