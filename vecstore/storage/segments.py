"""Immutable segment files in Arrow IPC format, memory-mapped for reading.

A segment holds, per row: ``id``, the attribute columns, ``vector`` (float32), ``_norm`` (the
vector's L2 norm), ``_i8`` (int8 codes) and ``_bin`` (sign bits). Columns are contiguous in the
file, so a scan of ``_bin`` touches only the pages of the codes; float32 vectors are read from the
page cache only for the few candidates that reach the last rescoring stage.

A segment is opened once, without following links (``files.open_in_table``), checked to be a
regular file of the recorded size and CRC through that descriptor, and memory-mapped through the
same descriptor (``/proc/self/fd``, on Linux): what is verified is what is read.
"""

from __future__ import annotations

import os
import threading
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..config import Metric, TableConfig
from ..errors import CorruptStoreError
from ..vectors import row_norms
from .arrays import to_numpy
from .codes import Quantizer, binary_bytes, normalize_rows
from .files import crc32_fd, make_subdir, open_in_table, write_atomic
from .manifest import DATA_DIR, FileRef, SegmentEntry

if TYPE_CHECKING:
    from .batch import Batch

INTERNAL_COLUMNS = ("vector", "_norm", "_i8", "_bin")
# where a process's open descriptors can be reopened by path (Linux); elsewhere the checked path
# is mapped by name
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else ""


def vector_columns_schema(dim: int) -> list[pa.Field]:
    return [
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("_norm", pa.float32(), nullable=False),
        pa.field("_i8", pa.list_(pa.int8(), dim), nullable=False),
        pa.field("_bin", pa.list_(pa.uint8(), binary_bytes(dim)), nullable=False),
    ]


def _fixed_list(flat: np.ndarray, width: int, value_type: pa.DataType) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=value_type), width)


def _write_ipc(table_dir: Path, subdir: str, table: pa.Table) -> FileRef:
    directory = make_subdir(table_dir, subdir)
    name = f"{uuid.uuid4().hex}.arrow"
    crc = 0

    def write(fh: object) -> None:
        nonlocal crc
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(table.num_rows, 1))
        buf = sink.getvalue()
        crc = zlib.crc32(memoryview(buf))
        fh.write(buf)  # type: ignore[attr-defined]

    final = directory / name
    write_atomic(final, write)
    return FileRef(path=f"{subdir}/{name}", bytes=final.stat().st_size, crc32=crc)


def write_segment(
    table_dir: Path,
    ids: pa.Array,
    attributes: pa.Table,
    vectors: npt.NDArray[np.float32],
    code_vectors: npt.NDArray[np.float32],
    quantizer: Quantizer,
) -> FileRef:
    """Write one segment. ``code_vectors`` are what the codes are computed from (the normalised
    vectors for cosine tables, the vectors themselves otherwise)."""
    n, dim = vectors.shape
    norms = row_norms(vectors).astype(np.float32)  # in float64: a float32 sum of squares overflows
    i8 = quantizer.encode_int8(code_vectors)
    bits = quantizer.encode_binary(code_vectors)
    columns = {"id": ids}
    for name in attributes.column_names:
        columns[name] = attributes.column(name)
    columns["vector"] = _fixed_list(vectors, dim, pa.float32())
    columns["_norm"] = pa.array(norms, type=pa.float32())
    columns["_i8"] = _fixed_list(i8, dim, pa.int8())
    columns["_bin"] = _fixed_list(bits, binary_bytes(dim), pa.uint8())
    table = pa.table(columns)
    assert table.num_rows == n
    return _write_ipc(table_dir, DATA_DIR, table)


def build_segment(table_dir: Path, config: TableConfig, batch: Batch,
                  previous_center: npt.NDArray[np.float32] | None) -> SegmentEntry:
    """Write ``batch`` as a new segment of the table in ``table_dir``, its codes calibrated on
    the batch (from ``previous_center``, the last segment's centre, when given), and return
    its manifest entry."""
    code_vectors = normalize_rows(batch.vectors) if config.metric is Metric.COSINE else batch.vectors
    quantizer = Quantizer.fit(code_vectors, previous_center=previous_center)
    ref = write_segment(table_dir, batch.ids, batch.attributes, batch.vectors, code_vectors, quantizer)
    return SegmentEntry(data=ref, rows=len(batch), quantizer=quantizer.to_json())


def write_deletions(table_dir: Path, offsets: npt.NDArray[np.int64]) -> FileRef:
    table = pa.table({"offset": pa.array(np.unique(offsets).astype(np.int64))})
    return _write_ipc(table_dir, DATA_DIR, table)


_verified: set[tuple[str, int, int, int]] = set()
_verified_lock = threading.Lock()


def verify_checksum(fd: int, path: Path, ref: FileRef) -> None:
    """Check an open file's crc32 against the manifest, once per process per (file, size,
    mtime).

    The file is read with plain reads, not through the memory map, so verifying leaves the
    bytes in the page cache rather than in this process's resident memory.
    """
    st = os.fstat(fd)
    key = (str(path), st.st_size, st.st_mtime_ns, ref.crc32)
    if key in _verified:
        return
    crc = crc32_fd(fd)
    if crc != ref.crc32:
        raise CorruptStoreError(
            f"file {path} fails its checksum (crc32 {crc:#010x}, the manifest recorded "
            f"{ref.crc32:#010x}): the file was altered or damaged"
        )
    with _verified_lock:
        _verified.add(key)


def _open_ipc(table_dir: Path, ref: FileRef, verify: bool) -> pa.Table:
    path = table_dir / ref.path
    try:
        fd = open_in_table(table_dir, ref.path)  # no links, a regular file
    except FileNotFoundError:
        raise CorruptStoreError(f"file {path} is missing (referenced by the manifest)") from None
    try:
        size = os.fstat(fd).st_size
        if size != ref.bytes:
            raise CorruptStoreError(
                f"file {path} has {size} bytes, the manifest recorded {ref.bytes}: truncated or replaced"
            )
        if verify:
            verify_checksum(fd, path, ref)
        try:
            # Map the very file that was checked: /proc/self/fd/N reopens the open descriptor's
            # file, whatever is at the path now. (Python's mmap would keep a descriptor per
            # segment open; Arrow's map keeps none once the table is read: the mapped region
            # lives as long as a column refers to it.)
            source = pa.memory_map(f"{_FD_DIR}/{fd}" if _FD_DIR else str(path), "r")
            table = pa.ipc.open_file(source).read_all()
            table.validate(full=verify)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptStoreError(f"file {path} is not a readable Arrow file: {exc}") from exc
    finally:
        os.close(fd)
    return table


@dataclass(frozen=True, eq=False)
class Segment:
    """An opened segment: the Arrow table (memory-mapped) and NumPy views of its vector columns."""

    table: pa.Table
    quantizer: Quantizer
    deleted: npt.NDArray[np.int64]  # sorted row offsets that are tombstoned

    @property
    def rows(self) -> int:
        return self.table.num_rows

    def _flat(self, name: str, dtype: type, width: int) -> np.ndarray:
        col = self.table.column(name)
        arr = col.chunk(0) if col.num_chunks == 1 else pa.concat_arrays(col.chunks)
        values = to_numpy(arr.flatten())
        return np.ascontiguousarray(values.astype(dtype, copy=False)).reshape(len(arr), width)

    def vectors(self) -> npt.NDArray[np.float32]:
        return self._flat("vector", np.float32, self.quantizer.dim)

    def norms(self) -> npt.NDArray[np.float32]:
        return to_numpy(self.table.column("_norm"))

    def int8_codes(self) -> npt.NDArray[np.int8]:
        return self._flat("_i8", np.int8, self.quantizer.dim)

    def binary_codes(self) -> npt.NDArray[np.uint64]:
        width = binary_bytes(self.quantizer.dim)
        return self._flat("_bin", np.uint8, width).view(np.uint64)

    def live_mask(self) -> npt.NDArray[np.bool_]:
        mask = np.ones(self.rows, dtype=bool)
        mask[self.deleted] = False
        return mask


def open_segment(table_dir: Path, data: FileRef, deletions: FileRef | None,
                 quantizer: Quantizer, rows: int, verify: bool = True) -> Segment:
    table = _open_ipc(table_dir, data, verify)
    if table.num_rows != rows:
        raise CorruptStoreError(
            f"file {table_dir / data.path} has {table.num_rows} rows, the manifest recorded {rows}"
        )
    if deletions is None:
        deleted = np.empty(0, dtype=np.int64)
    else:
        dt = _open_ipc(table_dir, deletions, verify)
        deleted = to_numpy(dt.column("offset")).astype(np.int64)
        if deleted.size and (deleted[0] < 0 or deleted[-1] >= rows):
            raise CorruptStoreError(f"file {table_dir / deletions.path} has offsets out of range")
    return Segment(table=table, quantizer=quantizer, deleted=deleted)
