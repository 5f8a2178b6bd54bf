"""The immutable description of a query, as the builder accumulates it and the executor runs it."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import Combine
from ..errors import InvalidArgumentError


class SearchMode(str, enum.Enum):
    """What ranks the rows of a text query (``tbl.search(text, mode=...)``).

    - ``vector``: similarity of the query's embedding to the rows' vectors;
    - ``keyword``: BM25 over the table's keyword columns (no embedder, no model);
    - ``hybrid``: both, fused (:class:`Fusion`).
    """

    VECTOR = "vector"
    KEYWORD = "keyword"
    HYBRID = "hybrid"

    @classmethod
    def parse(cls, value: str | SearchMode) -> SearchMode:
        if isinstance(value, SearchMode):
            return value
        if isinstance(value, str):
            for m in cls:
                if m.value == value.strip().lower():
                    return m
        raise InvalidArgumentError(
            f"unknown search mode {value!r}; expected one of {', '.join(repr(m.value) for m in cls)}")


def search_inputs(query: Any, mode: str | SearchMode | None, vector: Any, config: Any
                  ) -> tuple[str | None, npt.NDArray[np.float32] | None, SearchMode]:
    """What ``search(query, mode=, vector=)`` asks, checked the same way for local and remote
    tables: ``(text, vector, mode)``. A vector query gives ``(None, vector, VECTOR)``; a text
    query its text, the ``vector=`` given (or None: to be embedded, or not needed in keyword
    mode) and its mode (``"vector"`` by default)."""
    from ..inputs import query_text, query_vector

    if not isinstance(query, str):
        if mode is not None and SearchMode.parse(mode) is not SearchMode.VECTOR:
            raise InvalidArgumentError(
                f"{SearchMode.parse(mode).value} search takes a text query, got a "
                f"{type(query).__name__}; pass the text, and its vector as vector=")
        if vector is not None:
            raise InvalidArgumentError("vector= goes with a text query; a vector query is the vector")
        return None, query_vector(query, config), SearchMode.VECTOR
    text = query_text(query)
    m = SearchMode.VECTOR if mode is None else SearchMode.parse(mode)
    return text, None if vector is None else query_vector(vector, config), m


@dataclass(frozen=True)
class Fusion:
    """How hybrid search merges its two rankings (see :mod:`.fusion`)."""

    kind: str = "zscore"
    k: int = 60  # rrf: the rank constant
    alpha: float = 0.5  # weighted: the vector ranker's weight (1 - alpha: the keyword ranker's)
    candidates: int | None = None  # rows each ranker contributes; None: max(100, 4 x limit)


@dataclass(frozen=True)
class GroupBy:
    """One hit (or ``per_group``) per distinct value of ``column``."""

    column: str
    per_group: int = 1


@dataclass(frozen=True, eq=False)
class Rerank:
    """A second ranking of the best ``candidates`` rows (see :mod:`.rerank`)."""

    reranker: Any  # a resolved reranker: .name and .score(query, rows, context) -> scores
    candidates: int = 50
    column: str | None = None  # the text the reranker reads; None: the keyword columns


@dataclass(frozen=True, eq=False)
class QuerySpec:
    """What to search for and how; built step by step by :class:`~vecstore.Query`."""

    vectors: npt.NDArray[np.float32] | None  # (n, dim): one row per query, validated; None: keyword
    where: str | None = None
    params: tuple[Any, ...] = ()
    k: int = 10
    oversample: int | None = None  # None: the planner's default (wider for filtered scans)
    exact: bool = False
    columns: tuple[str, ...] | None = None  # None: every attribute
    threads: int | None = None  # batch queries: threads to finish them on (None: every core)
    combine: Combine | None = None  # multi-vector tables: columns and combination (None: the table's)
    text: str | None = None  # the query text (keyword and hybrid modes; kept for reranking)
    mode: SearchMode = SearchMode.VECTOR
    fusion: Fusion | None = None  # hybrid: None is the default fusion
    group_by: GroupBy | None = None
    rerank: Rerank | None = None
    timeout: float | None = None  # seconds (inf: no limit); None: the database's query_timeout

    @property
    def plain_vector(self) -> bool:
        """Whether the vector path alone answers it (no keywords, grouping or reranking)."""
        return self.mode is SearchMode.VECTOR and self.group_by is None and self.rerank is None
