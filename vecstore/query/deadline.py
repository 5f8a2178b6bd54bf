"""Per-query timeouts: the deadline of the query running in this thread, and where it is checked.

``Query.timeout(seconds)`` (or ``connect(..., query_timeout=)``, the server's ``--query-timeout``)
sets a deadline for one query. It is enforced in two ways:

- DuckDB is interrupted (``interrupt()``, from a timer thread) when the deadline passes during
  a filter; it notices between vectors of 2,048 rows, which :mod:`.bounds` keeps short by
  refusing filters whose per-row cost is unbounded;
- vecstore's own stages (filter, index or scan, keyword ranking, each widening round of
  ``group_by``, reranking) check the deadline between them.

Either way the query raises :class:`~vecstore.QueryTimeoutError` and returns nothing. The
deadline lives in a context variable so that the layers between the table and the filter need
not pass it along; threads a query starts receive it explicitly (:func:`current`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from ..errors import QueryTimeoutError


@dataclass(frozen=True)
class Deadline:
    """The moment (``time.monotonic()``) a query must have finished by."""

    at: float
    seconds: float

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def check(self, stage: str) -> None:
        """Raise :class:`~vecstore.QueryTimeoutError` if the deadline has passed."""
        if time.monotonic() >= self.at:
            raise self.error(stage)

    def error(self, stage: str) -> QueryTimeoutError:
        return QueryTimeoutError(
            f"the query ran past its timeout of {self.seconds:g} s (stopped at {stage}); "
            f"narrow the query (a more selective filter, a smaller limit) or allow more time "
            f"with .timeout(seconds), or .timeout(None) for no limit")


_current: ContextVar[Deadline | None] = ContextVar("vecstore_deadline", default=None)


@contextmanager
def deadline(seconds: float | None) -> Iterator[Deadline | None]:
    """Run the block under a deadline ``seconds`` from now (None: no limit). A deadline set by
    an enclosing block stays in force if it is sooner."""
    outer = _current.get()
    if seconds is None or math.isinf(seconds):
        yield outer
        return
    mine = Deadline(time.monotonic() + seconds, seconds)
    if outer is not None and outer.at <= mine.at:
        mine = outer
    token = _current.set(mine)
    try:
        yield mine
    finally:
        _current.reset(token)


def current() -> Deadline | None:
    """The deadline of the query running in this thread (None: no limit)."""
    return _current.get()


def check(stage: str) -> None:
    """Raise :class:`~vecstore.QueryTimeoutError` if this thread's query ran past its deadline."""
    d = _current.get()
    if d is not None:
        d.check(stage)
