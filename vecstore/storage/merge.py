"""Writing one segment from the rows of several, a block of rows at a time.

A merge (the writer's merge policy, and ``compact``) used to gather every merged row's vectors,
attributes and codes into memory and write the segment from there: a 4M-row merge of 384-d
vectors held ~8 GB twice over and was killed by the kernel on a 24 GB machine. Here the vector
columns never are in memory whole:

1. **Calibrate.** One pass over the kept rows' vectors (read from the memory-mapped source
   segments :data:`BLOCK_ROWS` at a time) gives each vector column's range and mean
   (:class:`~.codes.QuantizerFit`): the calibration :meth:`Quantizer.fit` gives on all the rows
   at once, the centre up to float64 rounding.
2. **Stream the columns.** A second pass writes, block by block, each vector column's float32
   values and norms (copied from the sources: the same bytes), its int8 and sign codes (encoded
   with the new calibration: a segment has one calibration, so the sources' codes, made with
   theirs, cannot be copied) into unnamed temporary files beside the segments.
3. **Write the segment.** The temporary files are memory-mapped and written as the segment's
   single record batch by Arrow's own IPC writer (the file a reader expects, byte for byte what
   writing the same columns from memory gives), checksummed on the way; their pages are the
   page cache's (clean, reclaimable), not the process's anonymous memory.

What a merge does hold whole: the ids and attribute columns of the merged rows (tens of bytes a
row against ~2 kB for 384-d vectors and codes: 1-2% of the segment) and the merged keyword
postings (:func:`~.postings.merge_postings`: ~16 bytes per posting, only for tables with
keyword columns), both of which Arrow and the postings format need as one array each.
A crash at any point leaves no file behind but the partial segment, named by no manifest
(``cleanup`` removes it): the temporary files have no name.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..config import Metric, TableConfig
from ..vectors import row_norms
from .batch import Batch
from .codes import Quantizer, QuantizerFit, binary_bytes, normalize_rows
from .files import make_subdir
from .manifest import DATA_DIR, SegmentEntry
from .segments import Segment, _write_ipc, code_columns

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

BLOCK_ROWS = 16_384
"""Rows read, encoded and written at a time: 16,384 rows of 384-d float32 vectors are 24 MiB,
and encoding a block makes a few temporaries of that size: about what a merge holds at once
beside the ids and attributes (see the module's docstring)."""


@dataclass(frozen=True)
class MergeSource:
    """Rows of an existing segment that go into the merged one: ``rows`` are sorted local
    offsets (every row, when an index still needs the deleted ones in place)."""

    segment: Segment
    rows: I64


def merged_attributes(sources: Sequence[MergeSource], batch: Batch | None,
                      schema: pa.Schema) -> tuple[pa.Array, pa.Table]:
    """The ids and attributes of the merged rows, in order, in the layout of ``schema``."""
    ids: list[pa.Array] = []
    attrs: list[pa.Table] = []
    for src in sources:
        idx = pa.array(src.rows)
        ids.append(src.segment.table.column("id").take(idx))
        attrs.append(conform(src.segment.table, schema, idx))
    if batch is not None:
        ids.append(batch.ids)
        attrs.append(batch.attributes)
    id_array = pa.chunked_array(ids, type=pa.string()).combine_chunks()
    table = pa.concat_tables(attrs).combine_chunks() if attrs else pa.table({})
    return id_array, table


def conform(table: pa.Table, schema: pa.Schema, rows: pa.Array) -> pa.Table:
    """``rows`` of a segment's attributes in the layout of ``schema`` (a newer schema: columns
    added since are null, columns that were all null take their type)."""
    columns = []
    for f in schema:
        if f.name in table.column_names:
            col = table.column(f.name).take(rows)
            columns.append(col if col.type == f.type else col.cast(f.type))
        else:
            columns.append(pa.nulls(len(rows), type=f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def _blocks(sources: Sequence[MergeSource], batch: Batch | None, name: str
            ) -> Iterator[tuple[F32, F32 | None]]:
    """Vector column ``name`` of the merged rows in order, :data:`BLOCK_ROWS` at a time:
    ``(vectors, norms)``, the norms as stored in the sources (None for the batch's rows)."""
    for src in sources:
        vectors, norms, _, _ = src.segment.column_arrays(name)
        rows = src.rows
        for start in range(0, rows.size, BLOCK_ROWS):
            part = rows[start:start + BLOCK_ROWS]
            a, b = int(part[0]), int(part[-1]) + 1
            if b - a == part.size:  # a run of consecutive rows: a view of the map
                yield vectors[a:b], norms[a:b]
            else:
                yield vectors[part], norms[part]
    if batch is not None:
        values = batch.vectors if name == "vector" else batch.extra_vectors[name]
        for start in range(0, len(batch), BLOCK_ROWS):
            yield values[start:start + BLOCK_ROWS], None


def _code_vectors(x: F32, metric: Metric) -> F32:
    return normalize_rows(x) if metric is Metric.COSINE else np.asarray(x, dtype=np.float32)


def calibrate(sources: Sequence[MergeSource], batch: Batch | None, name: str, metric: Metric,
              dim: int, previous_center: F32 | None) -> Quantizer:
    """The calibration of vector column ``name`` over every merged row (first pass)."""
    fit = QuantizerFit(dim)
    for x, _ in _blocks(sources, batch, name):
        fit.update(_code_vectors(x, metric))
    return fit.result(previous_center)


def _write(fh: BinaryIO, a: np.ndarray) -> None:
    fh.write(np.ascontiguousarray(a).data.cast("B"))


def _mapped(fh: BinaryIO, value_type: pa.DataType, count: int) -> pa.Array:
    """The ``count`` values a temporary file holds, as an Arrow array over its memory map."""
    fh.flush()
    size = os.fstat(fh.fileno()).st_size
    if size == 0:
        return pa.array([], type=value_type)
    buf = pa.py_buffer(mmap.mmap(fh.fileno(), size, access=mmap.ACCESS_READ))
    return pa.Array.from_buffers(value_type, count, [None, buf])


def write_merged_segment(table_dir: Path, config: TableConfig, sources: Sequence[MergeSource],
                         batch: Batch | None, schema: pa.Schema,
                         previous_center: F32 | None = None,
                         previous_extra: Mapping[str, F32] | None = None) -> tuple[SegmentEntry, pa.Table]:
    """Write the rows of ``sources`` followed by ``batch``'s as one segment file (no postings:
    the caller merges them) and return its entry and the merged rows' attributes (for the
    postings). Each vector column is calibrated afresh on its merged rows, as a new segment of
    those rows would be (``previous_center`` / ``previous_extra``: the sign-code centres used
    when they are too few to centre on)."""
    ids, attributes = merged_attributes(sources, batch, schema)
    n, dim = len(ids), config.dim
    width = binary_bytes(dim)
    columns: dict[str, pa.Array] = {"id": ids}
    for name in attributes.column_names:
        columns[name] = attributes.column(name)
    quantizers: dict[str, Quantizer] = {}
    data_dir = make_subdir(table_dir, DATA_DIR)  # the temporary files live on the table's disk
    temps: list[BinaryIO] = []
    try:
        for name in config.vectors:
            previous = previous_center if name == "vector" else (previous_extra or {}).get(name)
            q = quantizers[name] = calibrate(sources, batch, name, config.metric, dim, previous)
            # unnamed (O_TMPFILE) where the system allows; elsewhere named as write_atomic names
            # its temporary files, which cleanup removes should a crash leave one behind
            files = [tempfile.TemporaryFile(dir=data_dir, prefix=f".tmp-{uuid.uuid4().hex}-",
                                            suffix=".merge") for _ in range(4)]
            temps.extend(files)
            f_vec, f_norm, f_i8, f_bin = files
            for x, norms in _blocks(sources, batch, name):
                codes = _code_vectors(x, config.metric)
                _write(f_vec, x)
                # the stored norms are the same bytes a new segment would compute (float64
                # norm, then float32), so they are copied; the batch's are computed
                _write(f_norm, norms if norms is not None else row_norms(x).astype(np.float32))
                _write(f_i8, q.encode_int8(codes))
                _write(f_bin, q.encode_binary(codes))
            col, norm, i8, bits = code_columns(name)
            columns[col] = pa.FixedSizeListArray.from_arrays(_mapped(f_vec, pa.float32(), n * dim), dim)
            columns[norm] = _mapped(f_norm, pa.float32(), n)
            columns[i8] = pa.FixedSizeListArray.from_arrays(_mapped(f_i8, pa.int8(), n * dim), dim)
            columns[bits] = pa.FixedSizeListArray.from_arrays(
                _mapped(f_bin, pa.uint8(), n * width), width)
        table = pa.table(columns)
        ref = _write_ipc(table_dir, DATA_DIR, table)
        del table, columns  # unmaps the temporary files (they have no name: closing frees them)
    finally:
        for fh in temps:
            fh.close()
    q = quantizers["vector"]
    entry = SegmentEntry(data=ref, rows=n, quantizer=q.to_json(),
                         extra_quantizers={k: v.to_json() for k, v in quantizers.items()
                                           if k != "vector"})
    return entry, attributes
