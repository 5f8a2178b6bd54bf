"""What a query returns: :class:`Hits` (rows, best first) and the :class:`Plan` that found them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa


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
class Plan:
    """The strategy the planner chose for a query and what it did."""

    strategy: str
    table_rows: int
    k: int
    oversample: int
    filter: str | None = None
    matches: int | None = None
    estimated_selectivity: float | None = None
    index: str | None = None
    stages: tuple[Stage, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

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
            if s.name in ("filter", "allow bitmap"):
                continue
            if self.index is not None and s.name.startswith(self.index):
                return s.rows_out
            return s.rows_in
        return 0

    def __str__(self) -> str:
        lines = [f"strategy: {self.strategy}"]
        lines.append(f"table rows: {self.table_rows:,}")
        if self.filter is not None:
            est = "" if self.estimated_selectivity is None else \
                f" (estimated {self.estimated_selectivity:.4%})"
            lines.append(f"filter: {self.filter}")
            lines.append(f"matches: {self.matches:,} = selectivity {self.selectivity:.4%}{est}")
        if self.index:
            lines.append(f"index: {self.index}")
        lines.append(f"k: {self.k}, oversample: {self.oversample}")
        lines.append("stages:")
        lines.extend(f"  {s}" for s in self.stages)
        lines.append(f"total: {self.seconds * 1e3:.3f} ms")
        lines.extend(f"note: {n}" for n in self.notes)
        return "\n".join(lines)


class Hits:
    """The rows a query found, best first, with ``id``, ``score`` and the attributes."""

    def __init__(self, table: pa.Table, plan: Plan) -> None:
        self._table = table
        self.plan = plan

    def __len__(self) -> int:
        return self._table.num_rows

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.to_list())

    def __repr__(self) -> str:
        return f"Hits({len(self)} rows, strategy={self.plan.strategy!r})"

    @property
    def ids(self) -> list[str]:
        return self._table.column("id").to_pylist()

    @property
    def scores(self) -> npt.NDArray[np.float32]:
        return self._table.column("score").to_numpy()

    def to_arrow(self) -> pa.Table:
        return self._table

    def to_list(self) -> list[dict[str, Any]]:
        return self._table.to_pylist()

    def to_pandas(self) -> Any:
        return self._table.to_pandas()
