"""What a query returns: :class:`Hits` (rows, best first) and the :class:`Plan` that found them."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa


class Strategy(str, enum.Enum):
    """How the planner answered a query (``Plan.strategy``).

    - ``exact-scan``: every match scored with its float32 vector.
    - ``two-stage-scan``: the best ``k x oversample`` matches by Hamming distance on the sign
      codes, rescored with the int8 codes, the best of those with float32.
    - ``int8-scan``: the same starting from the int8 codes (tables of few dimensions).
    - ``index``: the ANN index searched without a filter; candidates rescored with float32.
    - ``index-then-filter``: the index searched unfiltered for ``k / selectivity`` candidates,
      filtered afterwards (a filter keeping most rows).
    - ``index-filtered``: the filter passed into the index search (an allow bitmap).
    - ``fresh-rows``: no indexed row matches; only rows added since the index was built.
    - ``keyword``: BM25 over the postings of the rows that match the filter (keyword mode).
    - ``hybrid``: a vector ranking and a keyword ranking, fused (``Plan.rankers``).
    """

    EXACT_SCAN = "exact-scan"
    TWO_STAGE_SCAN = "two-stage-scan"
    INT8_SCAN = "int8-scan"
    INDEX = "index"
    INDEX_THEN_FILTER = "index-then-filter"
    INDEX_FILTERED = "index-filtered"
    FRESH_ROWS = "fresh-rows"
    KEYWORD = "keyword"
    HYBRID = "hybrid"

    @property
    def uses_index(self) -> bool:
        return self in (Strategy.INDEX, Strategy.INDEX_THEN_FILTER, Strategy.INDEX_FILTERED)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Stage:
    """One step of a plan: how many rows went in and came out, and how long it took."""

    name: str
    rows_in: int
    rows_out: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.name:<22} {self.rows_in:>10,} -> {self.rows_out:>8,}   {self.seconds * 1e3:8.3f} ms"


@dataclass(frozen=True)
class RankerPlan:
    """One ranking a keyword or hybrid query ran: how many candidates it gave and what it did
    (the query terms with their document frequencies; the vector search's own plan)."""

    name: str
    candidates: int
    seconds: float
    detail: str
    plan: Plan | None = None

    def __str__(self) -> str:
        return (f"{self.name}: {self.candidates:,} candidates in {self.seconds * 1e3:.3f} ms; "
                f"{self.detail}")


@dataclass(frozen=True)
class Plan:
    """The strategy the planner chose for a query, why, and what each stage did.

    ``fallback_from`` is set when a first strategy (an index search) found fewer than
    ``min(k, matches)`` rows and the planner fell back to scanning the matches.
    """

    strategy: Strategy
    reason: str
    table_rows: int
    k: int
    oversample: int
    filter: str | None = None
    matches: int | None = None
    estimated_selectivity: float | None = None
    index: str | None = None
    stages: tuple[Stage, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)
    fallback_from: Strategy | None = None
    mode: str = "vector"
    rankers: tuple[RankerPlan, ...] = ()
    fusion: str | None = None
    group_by: str | None = None
    rerank: str | None = None

    @property
    def selectivity(self) -> float:
        """Fraction of the table's rows the filter kept (1.0 without a filter)."""
        if self.matches is None:
            return 1.0
        return self.matches / self.table_rows if self.table_rows else 0.0

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.stages)

    @property
    def candidates(self) -> int:
        """Rows examined by the first stage that scores vectors: the codes of every row a scan
        reads, or the candidates an index returned (a graph search does not count the nodes it
        visits)."""
        for s in self.stages:
            if s.name.startswith(("filter", "allow bitmap")):  # "... (cached)" too
                continue
            if self.index is not None and s.name.startswith(self.index):
                return s.rows_out
            return s.rows_in
        return 0

    def __str__(self) -> str:
        lines = [f"mode: {self.mode}", f"strategy: {self.strategy.value} ({self.reason})"]
        if self.fallback_from is not None:
            lines.append(f"fell back from: {self.fallback_from.value}")
        lines.append(f"table rows: {self.table_rows:,}")
        if self.filter is not None:
            est = "" if self.estimated_selectivity is None else \
                f" (estimated {self.estimated_selectivity:.4%})"
            lines.append(f"filter: {self.filter}")
            lines.append(f"matches: {self.matches:,} = selectivity {self.selectivity:.4%}{est}")
        if self.index:
            lines.append(f"index: {self.index}")
        lines.append(f"k: {self.k}, oversample: {self.oversample}")
        for r in self.rankers:
            lines.append(f"ranker {r}")
        if self.fusion is not None:
            lines.append(f"fusion: {self.fusion}")
        if self.group_by is not None:
            lines.append(f"group by: {self.group_by}")
        if self.rerank is not None:
            lines.append(f"rerank: {self.rerank}")
        lines.append("stages:")
        lines.extend(f"  {s}" for s in self.stages)
        lines.append(f"total: {self.seconds * 1e3:.3f} ms")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


class RowSource(Protocol):
    """Where a query's hits read their attributes: the table version it ran on."""

    def take(self, rows: npt.NDArray[np.int64], columns: list[str]) -> pa.Table: ...

    def rows_as_dicts(self, rows: npt.NDArray[np.int64], columns: Sequence[str],
                      scores: npt.NDArray[np.float32] | None = None) -> list[dict[str, Any]]: ...


class Hits:
    """The rows a query found, best first, with ``id``, ``score`` and the attributes.

    Attributes are read only when asked for (``to_list``, ``to_arrow``, ...), and only for the
    rows found.
    """

    def __init__(self, rows: npt.NDArray[np.int64], scores: npt.NDArray[np.float32],
                 plan: Plan | Callable[[], Plan], columns: Sequence[str], source: RowSource) -> None:
        self._rows = rows
        self._scores = scores if scores.dtype == np.float32 else scores.astype(np.float32)
        self._columns = columns
        self._source = source
        self._table: pa.Table | None = None
        self._plan = plan

    @property
    def plan(self) -> Plan:
        """The plan that found these rows (described only when asked for)."""
        if not isinstance(self._plan, Plan):
            self._plan = self._plan()
        return self._plan

    def __len__(self) -> int:
        return int(self._rows.size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.to_list())

    def __repr__(self) -> str:
        return f"Hits({len(self)} rows, strategy={self.plan.strategy.value!r})"

    @property
    def ids(self) -> list[str]:
        if self._table is not None:
            return self._table.column("id").to_pylist()
        return [r["id"] for r in self._source.rows_as_dicts(self._rows, ["id"])]

    @property
    def scores(self) -> npt.NDArray[np.float32]:
        return self._scores

    def to_arrow(self) -> pa.Table:
        if self._table is None:
            table = self._source.take(self._rows, list(self._columns))
            self._table = table.add_column(1, "score", pa.array(self._scores, type=pa.float32()))
        return self._table

    def to_list(self) -> list[dict[str, Any]]:
        """``[{"id", "score", <attributes>...}]``, best first."""
        return self._source.rows_as_dicts(self._rows, self._columns, self._scores)

    def to_pandas(self) -> Any:
        return self.to_arrow().to_pandas()


def hits_to_lists(hits: Sequence[Hits]) -> list[list[dict[str, Any]]]:
    """``[h.to_list() for h in hits]``, with the attributes of every hit read in one gather
    when the hits come from one table version and ask for the same columns (a batch)."""
    if len(hits) < 2 or any(h._source is not hits[0]._source or h._columns != hits[0]._columns
                            or h._table is not None for h in hits):
        return [h.to_list() for h in hits]
    rows = np.concatenate([h._rows for h in hits])
    scores = np.concatenate([h._scores for h in hits])
    flat = hits[0]._source.rows_as_dicts(rows, hits[0]._columns, scores)
    out, at = [], 0
    for h in hits:
        n = int(h._rows.size)
        out.append(flat[at:at + n])
        at += n
    return out

