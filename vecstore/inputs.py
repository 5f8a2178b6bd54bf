"""Everything users hand to vecstore, checked in one place: rows (dicts, Arrow, pandas) become a
validated :class:`~vecstore.storage.batch.Batch`; query vectors and query texts are checked
before a search runs. One error vocabulary: an :class:`~vecstore.InvalidArgumentError` (or its
:class:`~vecstore.SchemaError` subclass) that names the row, the field, the value and what was
expected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from .config import Metric, TableConfig
from .errors import InvalidArgumentError
from .storage.batch import Batch, check_column_name, declared_schema, prepare_batch

F32 = npt.NDArray[np.float32]


def query_vector(query: Any, config: TableConfig) -> F32:
    """One query vector of the table's dimension, finite (and not all zeros under cosine)."""
    try:
        vec = np.asarray(query, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"the query must be a vector of numbers: {exc}") from None
    if vec.ndim == 2 and vec.shape[0] == 1:
        vec = vec[0]
    if vec.shape != (config.dim,):
        raise InvalidArgumentError(f"the query vector has shape {vec.shape}, expected ({config.dim},)")
    if not np.isfinite(vec).all():
        raise InvalidArgumentError("the query vector contains NaN or infinity")
    if config.metric is Metric.COSINE and not vec.any():
        raise InvalidArgumentError("the query vector is all zeros; cosine similarity is undefined for it")
    return np.ascontiguousarray(vec)


def query_matrix(queries: Any, config: TableConfig) -> F32:
    """Many query vectors (a 2-D array of shape ``(n, dim)``), each checked like one."""
    try:
        mat = np.asarray(queries, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"queries must be a 2-D array of numbers: {exc}") from None
    if mat.ndim != 2 or mat.shape[1] != config.dim:
        raise InvalidArgumentError(f"queries have shape {mat.shape}, expected (n, {config.dim})")
    return np.stack([query_vector(v, config) for v in mat]) if len(mat) else mat


def query_text(text: str) -> str:
    """A query text: not empty."""
    if not text.strip():
        raise InvalidArgumentError("the query text is empty")
    return text


__all__ = ["Batch", "check_column_name", "declared_schema", "prepare_batch", "query_matrix",
           "query_text", "query_vector"]
