"""The immutable, chainable :class:`Query` (and :class:`BatchQuery`) that ``Table.search``
returns. A query only accumulates a :class:`~.spec.QuerySpec`; its source (the table) checks
filters and columns as they are given and runs the spec when results are asked for."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..config import check_timeout
from ..errors import InvalidArgumentError
from .fusion import make_fusion
from .rerank import DEFAULT_CANDIDATES
from .results import Hits, Plan, hits_to_lists
from .spec import GroupBy, QuerySpec, Rerank, SearchMode

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
    # and ``vector_names`` (the table's vector columns, which group_by refuses)

    def run(self, spec: QuerySpec) -> list[Hits]:
        """One :class:`Hits` per query vector of ``spec``."""

    def embed_query(self, text: str) -> np.ndarray | None:
        """The query vector of ``text`` (raises when the table has no embedder); None when the
        source embeds it itself where the query runs (a server)."""

    def resolve_reranker(self, reranker: Any) -> Any:
        """The reranker object for what ``Query.rerank`` was given (:mod:`.rerank` locally;
        a server resolves names itself)."""


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

    def timeout(self: Self, seconds: float | None) -> Self:
        """Stop the query with :class:`~vecstore.QueryTimeoutError` if it runs longer than
        ``seconds`` (None: no limit, whatever ``connect(..., query_timeout=)`` says). A filter
        running on DuckDB is interrupted; vecstore's own stages stop between them."""
        value = check_timeout(seconds)
        return _with(self, _spec=_with(self._spec, timeout=math.inf if value is None else value))

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
        """One ``[{"id", "score", <attributes>...}]`` per query, in the order of the queries
        (the attributes of all their hits read at once)."""
        return hits_to_lists(self.hits())

    def to_arrow(self) -> pa.Table:
        """All hits in one table, with a ``query`` column (the query's position) first."""
        tables = []
        for i, h in enumerate(self.hits()):
            t = h.to_arrow()
            tables.append(t.add_column(0, "query", pa.array(np.full(t.num_rows, i, dtype=np.int32))))
        return pa.concat_tables(tables) if tables else pa.table({"query": pa.array([], pa.int32())})


@dataclass(frozen=True, eq=False)
class Query(_Chain):
    """A query over a table: by vector, by keywords (BM25) or both (hybrid), see
    :meth:`vecstore.Table.search`. Every method returns a new Query; nothing runs until
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

    def fusion(self, kind: str, *, k: int | None = None, alpha: float | None = None,
               candidates: int | None = None) -> Query:
        """How a hybrid query fuses its vector and keyword rankings: ``"rrf"`` (reciprocal
        ranks, ``k=60``), ``"weighted"`` (min-max normalised scores, ``alpha`` the vector
        ranker's weight) or ``"zscore"`` (standardised scores, the default); ``candidates``:
        rows each ranker contributes (default ``max(100, 4 x limit)``). See
        :mod:`vecstore.query.fusion`."""
        if self._spec.mode is not SearchMode.HYBRID:
            raise InvalidArgumentError(
                f"fusion() merges the rankings of a hybrid search; this query's mode is "
                f"{self._spec.mode.value!r} (use tbl.search(text, mode=\"hybrid\"))")
        f = make_fusion(kind, k=k, alpha=alpha, candidates=candidates)
        return _with(self, _spec=_with(self._spec, fusion=f))

    def group_by(self, column: str, *, per_group: int = 1) -> Query:
        """Return the best ``per_group`` rows of each of the best ``limit`` groups of rows that
        share a value of ``column`` (e.g. ``"doc_id"``: one hit per document), best group
        first. A row whose value is null is a group of its own."""
        vectors = getattr(self._source, "vector_names", ("vector",))  # optional in the protocol
        if not isinstance(column, str) or column == "vector" or column in vectors:
            raise InvalidArgumentError(f"group_by takes the name of an attribute column, got {column!r}")
        self._source.check_columns((column,))
        if not isinstance(per_group, (int, np.integer)) or isinstance(per_group, bool) \
                or not 1 <= per_group <= MAX_K:
            raise InvalidArgumentError(f"per_group must be an integer in 1..{MAX_K}, got {per_group!r}")
        return _with(self, _spec=_with(self._spec, group_by=GroupBy(column, int(per_group))))

    def rerank(self, reranker: Any, *, candidates: int = DEFAULT_CANDIDATES,
               column: str | None = None) -> Query:
        """Re-score the best ``candidates`` rows with ``reranker`` and return them in its order
        (scores are the reranker's): a sentence-transformers ``CrossEncoder`` or the path of a
        local CrossEncoder directory, any callable ``(query, texts) -> scores``, or
        ``"feedback"`` (pseudo-relevance feedback with the table's vectors, no model). The
        text read is the keyword columns, or ``column``. See :mod:`vecstore.query.rerank`."""
        if (not isinstance(candidates, (int, np.integer)) or isinstance(candidates, bool)
                or not 1 <= candidates <= MAX_K):
            raise InvalidArgumentError(f"candidates must be an integer in 1..{MAX_K}, got {candidates!r}")
        if column is not None:
            self._source.check_columns((column,))
        resolved = self._source.resolve_reranker(reranker)
        spec = self._spec
        if getattr(resolved, "needs_vector", False) and spec.vectors is None:
            assert spec.text is not None
            vector = self._source.embed_query(spec.text)
            if vector is not None:
                spec = _with(spec, vectors=vector[None, :])
        return _with(self, _spec=_with(spec, rerank=Rerank(resolved, int(candidates), column)))


_PLAIN_SPEC = QuerySpec(vectors=None)


def vector_query(source: QuerySource, vectors: npt.NDArray[np.float32]) -> Query:
    """``Query(source, QuerySpec(vectors=vectors))`` (checked vectors, ``(1, dim)``), made
    without the frozen dataclasses' ``__init__``, which sets each field through
    ``object.__setattr__``: every search pays this."""
    spec = object.__new__(QuerySpec)
    spec.__dict__.update(_PLAIN_SPEC.__dict__)
    spec.__dict__["vectors"] = vectors
    query = object.__new__(Query)
    query.__dict__.update(_source=source, _spec=spec)
    return query

