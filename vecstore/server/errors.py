"""vecstore's errors as HTTP statuses, in one place.

A response for an error has the status below and the body ``{"error": {"type", "message"}}``
where ``type`` is the name of a public vecstore exception class (the remote client raises that
class again). The most specific class in an exception's MRO decides its status.
"""

from __future__ import annotations

from typing import Any

from .. import errors as E

STATUSES: dict[type[E.VecstoreError], int] = {
    E.InvalidArgumentError: 400,  # bad input, SchemaError and FilterError included
    E.DuplicateIdError: 409,  # add() of an id the table holds (or twice in one batch): use upsert
    E.AlreadyExistsError: 409,  # create a table that exists (exist_ok=false)
    E.AuthenticationError: 401,  # no key, or a wrong one
    E.ReadOnlyError: 403,  # a write with the read-only key, or on a checked-out version
    E.NotFoundError: 404,  # a missing table (or route)
    E.ConcurrencyError: 503,  # the table's write lock timed out: retry later (Retry-After)
    E.QueryTimeoutError: 504,  # a query ran past its timeout (the server's, or the request's)
    E.MissingDependencyError: 501,  # the server lacks an optional module (named in the message)
    E.CorruptStoreError: 500,  # a file of the store is damaged: the operator must look
    E.VecstoreError: 500,
}


class RequestTooLargeError(E.InvalidArgumentError):
    """The body or the number of rows in it is over the server's limit: HTTP 413."""


STATUSES[RequestTooLargeError] = 413
PUBLIC = frozenset(E.__all__) - {"missing_extra"}


def status_of(exc: E.VecstoreError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUSES:
            return STATUSES[cls]
    return 500


def type_name(exc: BaseException) -> str:
    """The public vecstore class a client should raise for ``exc``."""
    for cls in type(exc).__mro__:
        if cls.__name__ in PUBLIC and cls.__module__ == E.__name__:
            return cls.__name__
    return "VecstoreError"


def error_body(type_: str, message: str) -> dict[str, Any]:
    return {"error": {"type": type_, "message": message}}


def headers_for(status: int) -> dict[str, str]:
    if status == 401:
        return {"WWW-Authenticate": 'Bearer realm="vecstore"'}
    if status == 503:
        return {"Retry-After": "1"}
    if status == 413:
        return {"Connection": "close"}  # the rest of the body was not read: the connection ends
    return {}


__all__ = ["RequestTooLargeError", "STATUSES", "error_body", "headers_for", "status_of", "type_name"]
