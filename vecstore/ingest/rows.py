"""Rows that arrive without a vector get one from the table's embedder, made from ``text``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import InvalidArgumentError
from .embedders import Embedder


def check_texts(texts: Sequence[Any], positions: Sequence[int] | None = None) -> None:
    """Every text to embed is a non-empty string; an error names the row."""
    for j, t in enumerate(texts):
        i = positions[j] if positions is not None else j
        if not isinstance(t, str):
            raise InvalidArgumentError(
                f"row {i}: no 'vector' and no 'text' string to embed (text is {type(t).__name__})")
        if not t.strip():
            raise InvalidArgumentError(f"row {i}: field 'text' is empty; there is nothing to embed")


def embed_missing(rows: Any, embedder: Embedder, vectors: Sequence[str] = ("vector",)) -> Any:
    """``rows`` with a ``vector`` for each row that has none, embedded from its ``text``.

    Rows are a list of dicts, a dict, a ``pyarrow.Table``/``RecordBatch`` or a pandas DataFrame
    (converted to Arrow); anything else is returned unchanged for the row validation to report.
    ``vectors``: the table's vector columns. In a multi-vector table a row embedded from its
    text alone gets that vector in each column: a text with no surroundings is its own context.
    """
    extra = tuple(vectors[1:])
    if type(rows).__name__ == "DataFrame" and hasattr(rows, "to_dict"):
        rows = pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        if "vector" in rows.column_names:
            return rows
        if "text" not in rows.column_names:
            raise InvalidArgumentError("rows need a 'vector' or a 'text' column to embed")
        texts = rows.column("text").to_pylist()
        check_texts(texts)
        values = np.ascontiguousarray(embedder.embed_documents(texts), dtype=np.float32)
        col = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), embedder.dim)
        rows = rows.append_column("vector", col)
        for name in extra:
            if name not in rows.column_names:
                rows = rows.append_column(name, col)
        return rows
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, (list, tuple)):
        return rows
    missing = [i for i, r in enumerate(rows) if isinstance(r, dict) and r.get("vector") is None]
    if not missing:
        return rows
    texts = [rows[i].get("text") for i in missing]
    check_texts(texts, missing)
    embedded = embedder.embed_documents(texts)
    out = list(rows)
    for i, v in zip(missing, embedded, strict=True):
        out[i] = {**{name: v for name in extra}, **rows[i], "vector": v}
    return out
