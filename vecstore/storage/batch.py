"""Turning what users pass to ``add``/``upsert`` into a validated batch, or a clear error.

Rows arrive as a list of dicts, a ``pyarrow.Table``/``RecordBatch`` or a ``pandas.DataFrame``.
Every check runs before anything is written, so a rejected batch leaves no trace. An error names
the row (its position and id) and the field.
"""

from __future__ import annotations

import re
import string
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..config import Metric, TableConfig
from ..errors import DuplicateIdError, InvalidArgumentError, SchemaError
from ..vectors import WRONG_TYPE_HINT, check_finite_in_range, real_array

RESERVED = frozenset({"id", "vector", "score"})
MAX_ID_BYTES = 1024
_BAD_NAME = re.compile(r"[\x00-\x1f]")


@dataclass(frozen=True, eq=False)
class Batch:
    ids: pa.Array  # string
    attributes: pa.Table  # columns in the order of ``schema``; missing ones are null
    vectors: npt.NDArray[np.float32]
    schema: pa.Schema  # the table's attribute schema after this batch (may have new columns)
    extra_vectors: Mapping[str, npt.NDArray[np.float32]] = field(default_factory=dict)
    """A multi-vector table's further vector columns, by name, each ``(len, dim)``."""

    def __len__(self) -> int:
        return len(self.ids)


def _describe(i: int, ids: Sequence[str | None]) -> str:
    rid = ids[i] if i < len(ids) else None
    return f"row {i}" + (f" (id {rid!r})" if rid is not None else "")


def _is_allowed_type(t: pa.DataType) -> bool:
    if (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)
            or pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_timestamp(t)
            or pa.types.is_date(t) or pa.types.is_null(t) or pa.types.is_decimal(t)):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _is_allowed_type(t.value_type) and not pa.types.is_list(t.value_type)
    return False


def _normalise_type(t: pa.DataType) -> pa.DataType:
    if pa.types.is_large_string(t):
        return pa.string()
    if pa.types.is_large_list(t):
        return pa.list_(_normalise_type(t.value_type))
    if pa.types.is_list(t):
        return pa.list_(_normalise_type(t.value_type))
    if pa.types.is_float16(t):
        return pa.float32()
    return t


def check_column_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise SchemaError(f"column names must be non-empty strings, got {name!r}")
    if name.startswith("_") or name in RESERVED - {"id", "vector"}:
        raise SchemaError(
            f"column name {name!r} is reserved (names starting with '_' and 'score' are used by "
            f"vecstore); rename the column"
        )
    if _BAD_NAME.search(name) or len(name) > 256 or not _is_utf8(name):
        raise SchemaError(f"column name {name!r} has control characters or lone surrogates, or is over "
                          f"256 characters")
    return name


_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)


def column_key(name: str) -> str:
    """``name`` as DuckDB matches identifiers: ASCII letters folded to lower case. (DuckDB folds
    no other letter: to it ``é`` and ``É`` are two names.)"""
    return name.translate(_ASCII_LOWER)


def check_new_names(new: Sequence[str], existing: Sequence[str]) -> None:
    """Refuse new attribute names that a filter could not tell apart from another column.

    A filter names columns the way DuckDB does, ignoring ASCII case, so a table cannot hold two
    columns (or a column and ``id`` or ``vector``) whose names differ only in case: ``cc`` and
    ``CC`` would be one column to a filter, and ``ID`` would shadow the row id. ``new``: names
    not yet in the table; ``existing``: the table's attribute columns (which may already hold
    such a pair, written before this check: they stay readable)."""
    taken: dict[str, str] = {}
    for name in ("id", "vector", *existing):
        taken.setdefault(column_key(name), name)
    seen: set[str] = set()
    for name in new:
        if name in seen:
            raise SchemaError(f"column {name!r} appears twice; give each column one name")
        seen.add(name)
        other = taken.get(column_key(name))
        if other is not None and other != name:
            what = f"the row's {other!r}" if other in ("id", "vector") else f"the column {other!r}"
            raise SchemaError(
                f"column name {name!r} differs from {what} only in letter case; filters match "
                f"column names ignoring case (as DuckDB does), so they could not tell the two "
                f"apart; rename {name!r}"
            )
        taken.setdefault(column_key(name), name)


def _is_utf8(text: str) -> bool:
    """Whether ``text`` can be stored (Arrow strings are UTF-8: a lone surrogate cannot be)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_empty_list_type(t: pa.DataType) -> bool:
    """list<null>: the type Arrow gives a column whose values so far are only empty lists."""
    return pa.types.is_list(t) and pa.types.is_null(t.value_type)


def declared_schema(schema: pa.Schema | None) -> pa.Schema:
    """The attribute schema a table is created with (``id`` and ``vector`` fields are skipped)."""
    if schema is None:
        return pa.schema([])
    if not isinstance(schema, pa.Schema):
        raise InvalidArgumentError(f"schema must be a pyarrow.Schema, got {type(schema).__name__}")
    fields = []
    for f in schema:
        if f.name in ("id", "vector"):
            continue
        check_column_name(f.name)
        t = _normalise_type(f.type)
        if not _is_allowed_type(t):
            raise SchemaError(f"column {f.name!r} has unsupported type {f.type}")
        fields.append(pa.field(f.name, t))
    check_new_names([f.name for f in fields], [])
    return pa.schema(fields)


def _check_unique_columns(table: pa.Table) -> pa.Table:
    names = table.column_names
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise SchemaError(f"the rows have column {dup!r} {names.count(dup)} times; give each "
                          f"column once (columns: {', '.join(map(repr, names))})")
    return table


def _to_table(rows: Any) -> tuple[pa.Table, list[dict[str, Any]] | None]:
    if isinstance(rows, pa.Table):
        return _check_unique_columns(rows), None
    if isinstance(rows, pa.RecordBatch):
        return _check_unique_columns(pa.Table.from_batches([rows])), None
    if type(rows).__name__ == "DataFrame" and hasattr(rows, "to_dict"):
        try:
            return pa.Table.from_pandas(rows, preserve_index=False), None
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise SchemaError(f"cannot convert the DataFrame to Arrow: {exc}") from exc
    if isinstance(rows, Mapping):
        rows = mapping_rows(rows)
    if not isinstance(rows, Sequence) or isinstance(rows, (str, bytes)):
        raise InvalidArgumentError(
            f"rows must be a list of dicts, a pyarrow.Table or a pandas.DataFrame, "
            f"got {type(rows).__name__}"
        )
    for i, r in enumerate(rows):
        if not isinstance(r, Mapping):
            raise InvalidArgumentError(f"row {i} is a {type(r).__name__}, expected a dict")
    return None, list(rows)


def mapping_rows(m: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows a dict stands for: its columns' rows when it holds columns (:func:`_is_columns`),
    else itself as one row."""
    return _column_rows(m) if _is_columns(m) else [dict(m)]


def _is_columns(m: Mapping[str, Any]) -> bool:
    """Whether a dict holds columns (``{"id": [...], "vector": matrix, ...}``, as LanceDB and
    ``pyarrow.Table.from_pydict`` take them) rather than one row: its ``vector`` is a matrix (a
    2-D array, or a list of vectors), or, without one (an embedder fills it in), its ``id`` is a
    list of ids."""
    v = m.get("vector")
    if v is None:
        return isinstance(m.get("id"), (list, tuple, np.ndarray))
    if isinstance(v, np.ndarray):
        return v.ndim == 2
    return isinstance(v, (list, tuple)) and len(v) > 0 and isinstance(v[0], (list, tuple, np.ndarray))


def _column_rows(columns: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A dict of equally long columns as rows (validated as any rows are)."""
    lengths: dict[str, int] = {}
    for name, values in columns.items():
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise InvalidArgumentError(
                f"a dict of columns needs a list (or array) per column; {name!r} is a single "
                f"{type(values).__name__} value (a dict whose 'vector' is a matrix is read as columns)")
        lengths[name] = len(values)
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{name!r}: {n}" for name, n in lengths.items())
        raise InvalidArgumentError(f"the columns of a dict have different lengths ({counts})")
    n = next(iter(lengths.values()), 0)
    names = list(columns)
    values = [columns[name] for name in names]
    return [dict(zip(names, (col[i] for col in values), strict=True)) for i in range(n)]


def infer_dim(rows: Any, column: str = "vector") -> int | None:
    """The length of the first vector in ``rows`` (any form :meth:`Table.add` takes), or None
    when there is none to read: what ``create_table`` uses when no ``dim`` is given."""
    table, dict_rows = _to_table(rows)
    if dict_rows is not None:
        first = next((r.get(column) for r in dict_rows if r.get(column) is not None), None)
        return int(np.shape(first)[-1]) if first is not None and np.ndim(first) == 1 else None
    if column not in table.column_names:
        return None
    t = table.schema.field(column).type
    if pa.types.is_fixed_size_list(t):
        return int(t.list_size)
    col = table.column(column).drop_null()
    return len(col[0].as_py()) if len(col) and (pa.types.is_list(t) or pa.types.is_large_list(t)) else None


def _ids_from(values: list[Any], n: int) -> list[str]:
    out: list[str] = []
    seen: dict[str, int] = {}
    for i in range(n):
        v = values[i] if i < len(values) else None
        if v is None:
            v = uuid.uuid4().hex
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            v = str(int(v))
        elif not isinstance(v, str):
            raise InvalidArgumentError(f"row {i}: id must be a string (or an int), got {type(v).__name__}")
        if v == "":
            raise InvalidArgumentError(f"row {i}: id is an empty string")
        if not _is_utf8(v):
            raise InvalidArgumentError(f"row {i}: id {v!r} is not valid Unicode text (a lone surrogate)")
        if len(v.encode("utf-8")) > MAX_ID_BYTES:
            raise InvalidArgumentError(f"row {i}: id is longer than {MAX_ID_BYTES} bytes")
        if "\x00" in v:
            raise InvalidArgumentError(f"row {i}: id contains a NUL character")
        if v in seen:
            raise DuplicateIdError(f"row {i}: id {v!r} appears twice in the batch (first at row {seen[v]})")
        seen[v] = i
        out.append(v)
    return out


def _vectors_from_list(values: list[Any], ids: list[str], dim: int,
                       name: str = "vector") -> npt.NDArray[np.float32]:
    out = np.empty((len(values), dim), dtype=np.float32)
    for i, v in enumerate(values):
        if v is None:
            raise InvalidArgumentError(f"{_describe(i, ids)}: field {name!r} is missing")
        try:
            a = real_array(v, f"field {name!r}")
        except InvalidArgumentError as exc:  # the row's name, formatted only when needed
            raise InvalidArgumentError(f"{_describe(i, ids)}: {exc}") from None
        if a.shape != (dim,):
            raise InvalidArgumentError(
                f"{_describe(i, ids)}: field {name!r} has shape {a.shape}, expected ({dim},)"
            )
        out[i] = a
    return out


def _vectors_from_arrow(col: pa.ChunkedArray, ids: list[str], dim: int,
                        name: str = "vector") -> npt.NDArray[np.float32]:
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = arr.type
    if not (pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)):
        raise InvalidArgumentError(f"column {name!r} has type {t}, expected a list of floats")
    _check_arrow_value_type(arr, ids, name)
    if arr.null_count:
        i = int(np.flatnonzero(arr.is_null().to_numpy(zero_copy_only=False))[0])
        raise InvalidArgumentError(f"{_describe(i, ids)}: field {name!r} is missing")
    lengths = (
        np.full(len(arr), t.list_size) if pa.types.is_fixed_size_list(t)
        else pc.list_value_length(arr).to_numpy(zero_copy_only=False)
    )
    bad = np.flatnonzero(lengths != dim)
    if bad.size:
        i = int(bad[0])
        raise InvalidArgumentError(
            f"{_describe(i, ids)}: field {name!r} has {int(lengths[i])} values, expected {dim}"
        )
    flat = arr.flatten()
    if flat.null_count:
        raise InvalidArgumentError(f"column {name!r} contains null values inside a vector")
    with np.errstate(over="ignore"):  # float64 beyond float32: inf, refused by check_vectors
        values = flat.to_numpy(zero_copy_only=False).astype(np.float32)
    return values.reshape(len(arr), dim)


def _check_arrow_value_type(arr: pa.Array, ids: list[str], name: str = "vector") -> None:
    """Refuse an Arrow vector column whose items are not integers or floats (strings, booleans,
    timestamps, dates, decimals, ...), naming its first row: the type is the column's, so every
    row is wrong alike."""
    value_type = arr.type.value_type
    if pa.types.is_integer(value_type) or pa.types.is_floating(value_type):
        return
    valid = np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False))
    i = int(valid[0]) if valid.size else 0
    raise InvalidArgumentError(
        f"{_describe(i, ids)}: field {name!r} holds {value_type} values (Arrow type {arr.type}); "
        f"{WRONG_TYPE_HINT}"
    )


def check_vectors(vectors: npt.NDArray[np.float32], ids: Sequence[str], metric: Metric,
                  name: str = "vector") -> None:
    """Refuse the first row whose vector holds NaN or infinity, is all zeros under cosine, or
    has a norm outside the accepted range (see :mod:`vecstore.vectors`)."""
    check_finite_in_range(vectors, metric, lambda i: f"{_describe(i, ids)}: field {name!r}")


def _column_from_values(name: str, values: list[Any], ids: list[str],
                        target: pa.DataType | None) -> pa.Array:
    # Always infer, then cast safely in _conform: pa.array(values, type=int64) would silently
    # truncate 1.5 to 1.
    try:
        return pa.array(values)
    except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
        # Name the first row that does not convert alone, or whose type differs from the first
        # non-null value's type (e.g. a string in a column of ints).
        first_type = None
        for i, v in enumerate(values):
            try:
                t = pa.array([v]).type
            except (pa.ArrowException, TypeError, ValueError, OverflowError):
                raise SchemaError(
                    f"{_describe(i, ids)}: field {name!r} has value {v!r} of type "
                    f"{type(v).__name__}, which is not a supported attribute type"
                ) from None
            if pa.types.is_null(t):
                continue
            if first_type is None:
                first_type = t
            elif t != first_type and not (_numeric(t) and _numeric(first_type)):
                want = target if target is not None else first_type
                raise SchemaError(
                    f"{_describe(i, ids)}: field {name!r} has value {v!r} of type "
                    f"{type(v).__name__}, which does not fit the column's type {want}"
                ) from None
        raise SchemaError(f"field {name!r} mixes types that do not fit one column: {exc}") from None


def _castable(src: pa.DataType, dst: pa.DataType) -> bool:
    """Whether values of ``src`` may be stored in a ``dst`` column: the same kind of value, or
    integers into floats. Arrow would also turn 5 into '5'; a schema should not."""
    if pa.types.is_null(src) or src == dst:
        return True
    if pa.types.is_integer(dst):
        return pa.types.is_integer(src)
    if pa.types.is_floating(dst) or pa.types.is_decimal(dst):
        return _numeric(src) or pa.types.is_decimal(src)
    if pa.types.is_string(dst):
        return pa.types.is_string(src) or pa.types.is_large_string(src)
    if pa.types.is_timestamp(dst) or pa.types.is_date(dst):
        return pa.types.is_timestamp(src) or pa.types.is_date(src)
    if pa.types.is_list(dst):
        return (pa.types.is_list(src) or pa.types.is_large_list(src)) and _castable(
            src.value_type, dst.value_type)
    return False


def _numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t)


def _conform(name: str, arr: pa.Array, target: pa.DataType | None, ids: list[str]) -> pa.Array:
    """Cast ``arr`` to the column's existing type (safely), or check a new column's type."""
    t = _normalise_type(arr.type)
    if t != arr.type:
        arr = arr.cast(t)
    if target is None or pa.types.is_null(target):
        if not _is_allowed_type(arr.type):
            raise SchemaError(
                f"field {name!r} has type {arr.type}; supported are integers, floats, booleans, "
                f"strings, timestamps, dates and lists of those"
            )
        return arr
    if arr.type == target:
        return arr
    if pa.types.is_null(arr.type):
        return pa.nulls(len(arr), type=target)
    if _is_empty_list_type(target) and pa.types.is_list(arr.type) and _is_allowed_type(arr.type):
        return arr  # the first non-empty lists give the column its item type
    if not _castable(arr.type, target):
        valid = np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False))
        i = int(valid[0]) if valid.size else 0
        raise SchemaError(
            f"{_describe(i, ids)}: field {name!r} has value {arr[i].as_py()!r} of type {arr.type}, "
            f"which does not fit the column's type {target}"
        )
    try:
        return arr.cast(target, safe=True)
    except (pa.ArrowException, ValueError) as exc:
        for i in range(len(arr)):
            try:
                arr.slice(i, 1).cast(target, safe=True)
            except (pa.ArrowException, ValueError):
                raise SchemaError(
                    f"{_describe(i, ids)}: field {name!r} has value {arr[i].as_py()!r} of type "
                    f"{arr.type}, which does not fit the column's type {target}"
                ) from None
        raise SchemaError(f"field {name!r}: cannot store {arr.type} in a {target} column ({exc})") from None


def prepare_batch(rows: Any, config: TableConfig, schema: pa.Schema,
                  vectors: npt.NDArray[np.float32] | None = None) -> Batch:
    """Validate ``rows`` against the table and return them as a :class:`Batch`.

    ``vectors`` may be given separately (the embedder computed them); then rows need no
    ``vector`` field.
    """
    table, dict_rows = _to_table(rows)
    existing = {f.name: f.type for f in schema}
    special = {"id", *config.vectors}  # not attributes
    extra_names = config.vectors[1:]
    taken = [*existing, *extra_names]
    extra: dict[str, npt.NDArray[np.float32]] = {}
    columns: dict[str, pa.Array] = {}
    if dict_rows is not None:
        n = len(dict_rows)
        names: list[str] = []
        seen_names: set[str] = set()
        for r in dict_rows:
            for key in r:
                if key not in seen_names:
                    seen_names.add(key)
                    names.append(key)
        ids = _ids_from([r.get("id") for r in dict_rows], n)
        if vectors is None:
            if "vector" not in seen_names and n:
                raise InvalidArgumentError(f"{_describe(0, ids)}: field 'vector' is missing")
            vec = _vectors_from_list([r.get("vector") for r in dict_rows], ids, config.dim)
        else:
            vec = vectors
        for name in extra_names:
            if name not in seen_names and n:
                raise InvalidArgumentError(
                    f"{_describe(0, ids)}: field {name!r} is missing (the table keeps the vectors "
                    f"{', '.join(config.vectors)} in each row)")
            extra[name] = _vectors_from_list([r.get(name) for r in dict_rows], ids, config.dim, name)
        for name in names:
            if name not in special:
                check_column_name(name)
        check_new_names([m for m in names if m not in existing and m not in special], taken)
        for name in names:
            if name in special:
                continue
            arr = _column_from_values(name, [r.get(name) for r in dict_rows], ids, existing.get(name))
            columns[name] = _conform(name, arr, existing.get(name), ids)
    else:
        assert table is not None
        n = table.num_rows
        for name in table.column_names:
            if name not in special:
                check_column_name(name)
        if len(set(table.column_names)) < len(table.column_names):
            dup = next(m for m in table.column_names if table.column_names.count(m) > 1)
            raise SchemaError(f"column {dup!r} appears twice; give each column one name")
        check_new_names([m for m in table.column_names if m not in existing and m not in special],
                        taken)
        ids = _ids_from(table.column("id").to_pylist() if "id" in table.column_names else [], n)
        if vectors is None:
            if "vector" not in table.column_names:
                raise InvalidArgumentError("the table of rows has no 'vector' column")
            vec = _vectors_from_arrow(table.column("vector"), ids, config.dim)
        else:
            vec = vectors
        for name in extra_names:
            if name not in table.column_names:
                raise InvalidArgumentError(
                    f"the table of rows has no {name!r} column (the table keeps the vectors "
                    f"{', '.join(config.vectors)} in each row)")
            extra[name] = _vectors_from_arrow(table.column(name), ids, config.dim, name)
        for name in table.column_names:
            if name in special:
                continue
            col = table.column(name)
            arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
            if isinstance(arr, pa.ChunkedArray):
                arr = pa.concat_arrays(arr.chunks) if arr.num_chunks else pa.array([], arr.type)
            columns[name] = _conform(name, arr, existing.get(name), ids)
    if vec.shape != (n, config.dim):
        raise InvalidArgumentError(f"expected {n} vectors of dimension {config.dim}, got {vec.shape}")
    vec = np.ascontiguousarray(vec, dtype=np.float32)
    check_vectors(vec, ids, config.metric)
    for name, values in extra.items():
        extra[name] = np.ascontiguousarray(values, dtype=np.float32)
        check_vectors(extra[name], ids, config.metric, name)

    # The schema after this batch: existing columns keep their place; null-typed ones take the
    # first real type they see; new columns are appended (nullable).
    fields = []
    for f in schema:
        t = f.type
        new_t = columns[f.name].type if f.name in columns else None
        if new_t is not None and ((pa.types.is_null(t) and not pa.types.is_null(new_t))
                                  or (_is_empty_list_type(t) and not _is_empty_list_type(new_t))):
            t = new_t
        fields.append(pa.field(f.name, t))
    for name, arr in columns.items():
        if name not in existing:
            fields.append(pa.field(name, arr.type))
    new_schema = pa.schema(fields)
    attrs = {}
    for f in new_schema:
        if f.name in columns:
            arr = columns[f.name]
            attrs[f.name] = arr if arr.type == f.type else arr.cast(f.type)
        else:
            attrs[f.name] = pa.nulls(n, type=f.type)
    attributes = pa.table(attrs, schema=new_schema) if fields else pa.table({})
    return Batch(ids=pa.array(ids, type=pa.string()), attributes=attributes, vectors=vec, schema=new_schema,
                 extra_vectors=extra)


def check_update_values(values: Any, schema: pa.Schema) -> dict[str, pa.Array]:
    """The ``values`` of an update (``{column: value}``), each checked against its column as a
    row's value would be, as one-element arrays of the column's type.

    Only existing attribute columns can be set: ``id`` and ``vector`` cannot (a row's identity
    and its embedding are replaced by ``upsert``), and a name the table does not have is refused
    rather than added as a column that every other row would hold null in (a misspelt column
    would otherwise pass silently)."""
    if not isinstance(values, Mapping) or not values:
        raise InvalidArgumentError(
            f"update() takes a non-empty dict of column -> new value, got {values!r}")
    existing = {f.name: f.type for f in schema}
    out: dict[str, pa.Array] = {}
    for name, value in values.items():
        if name in ("id", "vector"):
            raise InvalidArgumentError(
                f"update() cannot change {name!r}: it sets attributes only; use upsert() to "
                f"replace whole rows, vectors included")
        if not isinstance(name, str) or name not in existing:
            raise SchemaError(
                f"update(): the table has no column {name!r}; its columns are: "
                f"{', '.join(sorted(existing)) or '(none)'}. update() changes existing columns "
                f"only; add or upsert rows that carry a new column to create it")
        try:
            out[name] = _conform(name, _column_from_values(name, [value], [], existing[name]),
                                 existing[name], [])
        except SchemaError:
            raise SchemaError(
                f"update(): the value {value!r} ({type(value).__name__}) does not fit column "
                f"{name!r} of type {existing[name]}") from None
    return out


def with_values(table: pa.Table, values: Mapping[str, pa.Array]) -> pa.Table:
    """``table`` with each column named in ``values`` set to that one value on every row."""
    n = table.num_rows
    for name, one in values.items():
        i = table.schema.get_field_index(name)
        table = table.set_column(i, name, pa.repeat(one[0], n) if n else one.slice(0, 0))
    return table
