"""One error tree for everything vecstore raises.

Every error derives from :class:`VecstoreError`; each subclass also derives from the builtin
that matches it, so callers may catch either ``vecstore.InvalidArgumentError`` or ``ValueError``.
Errors raised by DuckDB, Arrow, FAISS and hnswlib are translated at the boundary where vecstore
calls them; a message says what was given, what was expected and how to fix it.
"""

from __future__ import annotations

from typing import Any


class VecstoreError(Exception):
    """Base class of every error vecstore raises on purpose."""


class InvalidArgumentError(VecstoreError, ValueError):
    """An argument, a row or a value is not acceptable (wrong dimension, NaN, bad type, ...)."""


class SchemaError(InvalidArgumentError):
    """A row or batch does not fit the table's schema (unknown type, incompatible column type)."""


class FilterError(InvalidArgumentError):
    """A ``where`` filter is malformed, refers to an unknown column, or is not a plain expression."""


class NotFoundError(VecstoreError, KeyError):
    """A table, version, index or id does not exist."""

    def __str__(self) -> str:  # KeyError quotes its argument; we want the plain message
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(VecstoreError, FileExistsError):
    """A table (or another named object) already exists."""


class DuplicateIdError(InvalidArgumentError):
    """``add`` was given an id that the table already holds, or the same id twice."""


class CorruptStoreError(VecstoreError, OSError):
    """A file of the store is truncated, altered or unreadable; its path is in the message."""


class ConcurrencyError(VecstoreError, TimeoutError):
    """A writer could not take the table's lock in time, or lost a race it could not retry."""


class QueryTimeoutError(VecstoreError, TimeoutError):
    """A query ran past its timeout (``Query.timeout``, ``connect(query_timeout=)`` or the
    server's ``--query-timeout``) and was stopped; it returned nothing and changed nothing."""


class ReadOnlyError(VecstoreError, PermissionError):
    """A write was attempted on a read-only view (a table checked out at an older version)."""


class AuthenticationError(VecstoreError, PermissionError):
    """A server refused the request's API key (missing or wrong): HTTP 401."""


class RemoteError(VecstoreError, ConnectionError):
    """A vecstore server could not be reached, or answered with something that is not vecstore's
    protocol (a proxy's error page, a dropped connection)."""


class MissingDependencyError(VecstoreError, ImportError):
    """An optional dependency is not installed; the message names the extra to install."""


class IngestInterrupted(KeyboardInterrupt):
    """An ingest stopped by an interrupt (Ctrl-C) after committing the documents it had
    finished; :attr:`report` says what was committed and how many documents remain. Running the
    same ingest again embeds only those. A ``KeyboardInterrupt`` and not a
    :class:`VecstoreError` on purpose: ``except Exception`` must not swallow a Ctrl-C."""

    def __init__(self, report: Any) -> None:
        super().__init__(f"interrupted: {getattr(report, 'documents', 0)} documents committed, "
                         f"{getattr(report, 'remaining', 0)} left to embed")
        self.report: Any = report
        """The :class:`~vecstore.IngestReport` of what was committed."""


def missing_extra(module: str, extra: str) -> MissingDependencyError:
    """Build the error raised when an optional module is absent."""
    return MissingDependencyError(
        f"this feature needs the optional module {module!r}; "
        f"install it with: pip install 'vecstore[{extra}]'"
    )


__all__ = [
    "AlreadyExistsError",
    "AuthenticationError",
    "ConcurrencyError",
    "CorruptStoreError",
    "DuplicateIdError",
    "FilterError",
    "IngestInterrupted",
    "InvalidArgumentError",
    "MissingDependencyError",
    "NotFoundError",
    "QueryTimeoutError",
    "ReadOnlyError",
    "RemoteError",
    "SchemaError",
    "VecstoreError",
    "missing_extra",
]
