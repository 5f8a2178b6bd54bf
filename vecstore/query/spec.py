"""The immutable description of a query, as the builder accumulates it and the executor runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import Combine


@dataclass(frozen=True, eq=False)
class QuerySpec:
    """What to search for and how; built step by step by :class:`~vecstore.Query`."""

    vectors: npt.NDArray[np.float32]  # (n, dim): one row per query, validated
    where: str | None = None
    params: tuple[Any, ...] = ()
    k: int = 10
    oversample: int | None = None  # None: the planner's default (wider for filtered scans)
    exact: bool = False
    columns: tuple[str, ...] | None = None  # None: every attribute
    threads: int | None = None  # batch queries: threads to finish them on (None: every core)
    combine: Combine | None = None  # multi-vector tables: columns and combination (None: the table's)
