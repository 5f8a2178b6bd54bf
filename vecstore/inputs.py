"""Everything users hand to vecstore, checked in one place: rows (dicts, Arrow, pandas) become a
validated :class:`~vecstore.storage.batch.Batch`; query vectors and query texts are checked
before a search runs. One error vocabulary: an :class:`~vecstore.InvalidArgumentError` (or its
:class:`~vecstore.SchemaError` subclass) that names the row, the field, the value and what was
expected.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import TableConfig
from .errors import InvalidArgumentError
from .storage.batch import (
    Batch,
    check_column_name,
    check_update_values,
    declared_schema,
    infer_dim,
    mapping_rows,
    prepare_batch,
    with_values,
)
from .vectors import MAX_NORM, MIN_NORM, check_finite_in_range, real_array

F32 = npt.NDArray[np.float32]


def query_vector(query: Any, config: TableConfig, label: str = "the query vector") -> F32:
    """One query vector of the table's dimension: real numbers (:func:`~vecstore.vectors.real_array`),
    finite, with a norm in the accepted range (not all zeros under cosine). A copy: the caller
    may reuse theirs."""
    vec = real_array(query, label)
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    return _checked_query(vec, config, label)


def _checked_query(vec: F32, config: TableConfig, label: str) -> F32:
    if vec.shape != (config.dim,):
        raise InvalidArgumentError(f"{label} has shape {vec.shape}, expected ({config.dim},)")
    out = np.array(vec, dtype=np.float32, order="C")
    # the common case in three NumPy calls (a query is checked on every search); anything
    # unusual goes through the full check, which says what is wrong
    wide = out.astype(np.float64)
    norm2 = float(np.dot(wide, wide))
    if not (MIN_NORM * MIN_NORM <= norm2 <= MAX_NORM * MAX_NORM):  # False for NaN too
        check_finite_in_range(out[None, :], config.metric, lambda _: label)
    return out


def query_matrix(queries: Any, config: TableConfig) -> F32:
    """Many query vectors (``(n, dim)``: an array, or a list of vectors), each checked like
    one; an error names the query that is wrong."""
    if isinstance(queries, (list, tuple)):
        rows = [real_array(v, f"query {i}") for i, v in enumerate(queries)]
        vectors = [_checked_query(v, config, f"query {i}") for i, v in enumerate(rows)]
    else:
        mat = real_array(queries, "the batch of queries")
        if mat.ndim != 2 or mat.shape[1] != config.dim:
            raise InvalidArgumentError(f"queries have shape {mat.shape}, expected (n, {config.dim})")
        out = np.array(mat, dtype=np.float32, order="C")  # a copy: the caller may reuse theirs
        norm2 = np.einsum("ij,ij->i", out, out, dtype=np.float64)
        if bool(((norm2 >= MIN_NORM * MIN_NORM) & (norm2 <= MAX_NORM * MAX_NORM)).all()):
            return out  # every query in range (and finite): checked at once
        vectors = [_checked_query(v, config, f"query {i}") for i, v in enumerate(mat)]
    return np.stack(vectors) if vectors else np.empty((0, config.dim), dtype=np.float32)


def rows_or_dim(dim: object, data: Any) -> tuple[int | None, Any]:
    """``create_table``'s ``(dim, data)``, with rows passed where ``dim`` goes taken as the data
    (``db.create_table("t", rows)``, the order LanceDB's users write): not a number, so not a
    dimension. Numbers are left for :class:`~vecstore.config.TableConfig` to check."""
    if dim is None or isinstance(dim, (int, float, np.integer, np.floating)):
        return dim, data  # type: ignore[return-value]
    if data is not None:
        raise InvalidArgumentError(f"dim must be a positive integer, got a {type(dim).__name__} "
                                   f"(and data= was given as well)")
    if isinstance(dim, (str, bytes)):
        raise InvalidArgumentError(f"dim must be a positive integer, got {dim!r:.60}")
    return None, dim


def check_version(version: object) -> int:
    """A table version number as given by a user: a positive integer (not a bool, a string or a
    float)."""
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)) \
            or version < 1:
        raise InvalidArgumentError(
            f"version must be a positive integer (one of table.versions()), got {version!r}")
    return int(version)


def query_text(text: str) -> str:
    """A query text: not empty."""
    if not text.strip():
        raise InvalidArgumentError("the query text is empty")
    return text


def retention_seconds(value: object, name: str = "older_than") -> float:
    """A retention period as given by a user: a ``datetime.timedelta`` or a number of seconds,
    finite and >= 0."""
    seconds = value.total_seconds() if isinstance(value, dt.timedelta) else value
    if isinstance(seconds, (bool, np.bool_)) \
            or not isinstance(seconds, (int, float, np.integer, np.floating)) \
            or not math.isfinite(seconds) or seconds < 0:
        raise InvalidArgumentError(
            f"{name} must be a datetime.timedelta or a number of seconds >= 0, got {value!r}; "
            f"e.g. {name}=timedelta(days=7), or {name}=0 to keep only the newest versions")
    return float(seconds)


__all__ = ["Batch", "check_column_name", "check_update_values", "check_version", "declared_schema",
           "infer_dim", "mapping_rows", "prepare_batch", "query_matrix", "query_text", "query_vector",
           "retention_seconds", "rows_or_dim", "with_values"]
