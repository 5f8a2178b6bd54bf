"""Immutable segment files in Arrow IPC format, memory-mapped for reading.

A segment holds, per row: ``id``, the attribute columns, ``vector`` (float32), ``_norm`` (the
vector's L2 norm), ``_i8`` (int8 codes) and ``_bin`` (sign bits). A multi-vector table's segments
hold each further vector column ``vector_<x>`` the same way, with its own ``_norm:vector_<x>``,
``_i8:vector_<x>`` and ``_bin:vector_<x>`` (and its own calibration in the manifest). Columns
are contiguous in the file, so a scan of ``_bin`` touches only the pages of the codes; float32
vectors are read from the page cache only for the few candidates that reach the last rescoring
stage.

A segment is opened once, without following links (``files.open_in_table``), checked to be a
regular file of the recorded size and checksum through that descriptor, and memory-mapped through the
same descriptor (``/proc/self/fd``, on Linux): what is verified is what is read.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..checksums import (
    WRITTEN,
    BackgroundCheck,
    Digest,
    checksum_check,
    checksum_of_fd,
    checksum_pread,
    describe,
)
from ..config import Metric, TableConfig
from ..errors import CorruptStoreError
from ..vectors import row_norms
from .arrays import to_numpy
from .codes import Quantizer, binary_bytes, normalize_rows
from .files import make_subdir, open_in_table, write_atomic
from .manifest import DATA_DIR, FileRef, SegmentEntry
from .pages import FileMapping

if TYPE_CHECKING:
    from .batch import Batch

INTERNAL_COLUMNS = ("vector", "_norm", "_i8", "_bin")
# where a process's open descriptors can be reopened by path (Linux); elsewhere the checked path
# is mapped by name
_FD_DIR = "/proc/self/fd" if os.path.isdir("/proc/self/fd") else ""


def code_columns(name: str) -> tuple[str, str, str, str]:
    """The columns of vector column ``name`` in a segment: vectors, norms, int8, sign bits."""
    if name == "vector":
        return INTERNAL_COLUMNS
    return (name, f"_norm:{name}", f"_i8:{name}", f"_bin:{name}")


@dataclass(frozen=True, eq=False)
class ExtraVectors:
    """A further vector column of a segment being written: its vectors, what its codes are
    computed from, and its calibration."""

    vectors: npt.NDArray[np.float32]
    code_vectors: npt.NDArray[np.float32]
    quantizer: Quantizer


def vector_columns_schema(dim: int) -> list[pa.Field]:
    return [
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("_norm", pa.float32(), nullable=False),
        pa.field("_i8", pa.list_(pa.int8(), dim), nullable=False),
        pa.field("_bin", pa.list_(pa.uint8(), binary_bytes(dim)), nullable=False),
    ]


def _fixed_list(flat: np.ndarray, width: int, value_type: pa.DataType) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1), type=value_type), width)


_verified: set[tuple[str, int, int, str, int]] = set()
_verified_lock = threading.Lock()


class _ChecksumSink:
    """A write-only file for Arrow's IPC writer that passes the bytes on to ``fh`` and keeps
    their checksum (:data:`~vecstore.checksums.WRITTEN`) and count."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.digest = Digest(WRITTEN)
        self.written = 0
        self.closed = False

    def write(self, data: bytes | memoryview | pa.Buffer) -> int:
        view = memoryview(data)
        self.digest.update(view)
        self.fh.write(view)
        self.written += view.nbytes
        return view.nbytes

    def tell(self) -> int:
        return self.written

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:  # the file is the caller's to close (and fsync)
        self.closed = True


def _write_ipc(table_dir: Path, subdir: str, table: pa.Table) -> FileRef:
    directory = make_subdir(table_dir, subdir)
    name = f"{uuid.uuid4().hex}.arrow"
    checksum = 0

    def write(fh: BinaryIO) -> None:
        nonlocal checksum
        # Straight to the file, checksummed on the way: the writer hands over the column
        # buffers themselves (no copy), so writing a segment never holds a second copy of it
        # in memory (a merge's columns are memory-mapped: see .merge)
        sink = _ChecksumSink(fh)
        with pa.ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table, max_chunksize=max(table.num_rows, 1))
        checksum = sink.digest.value()

    final = directory / name
    write_atomic(final, write)
    st = final.stat()
    ref = FileRef(path=f"{subdir}/{name}", bytes=st.st_size, checksum=checksum, algorithm=WRITTEN)
    with _verified_lock:  # its checksum came from the very bytes written: no need to read them back
        _verified.add(_verify_key_of(table_dir / ref.path, st, ref))
    return ref


def write_segment(
    table_dir: Path,
    ids: pa.Array,
    attributes: pa.Table,
    vectors: npt.NDArray[np.float32],
    code_vectors: npt.NDArray[np.float32],
    quantizer: Quantizer,
    extra: Mapping[str, ExtraVectors] | None = None,
) -> FileRef:
    """Write one segment. ``code_vectors`` are what the codes are computed from (the normalised
    vectors for cosine tables, the vectors themselves otherwise); ``extra``: a multi-vector
    table's further vector columns, each with its own codes."""
    n, dim = vectors.shape
    columns = {"id": ids}
    for name in attributes.column_names:
        columns[name] = attributes.column(name)
    every = {"vector": ExtraVectors(vectors, code_vectors, quantizer), **(extra or {})}
    for name, ev in every.items():
        # norms in float64: a float32 sum of squares overflows
        norms = row_norms(ev.vectors).astype(np.float32)
        col, norm, i8, bits = code_columns(name)
        columns[col] = _fixed_list(ev.vectors, dim, pa.float32())
        columns[norm] = pa.array(norms, type=pa.float32())
        columns[i8] = _fixed_list(ev.quantizer.encode_int8(ev.code_vectors), dim, pa.int8())
        columns[bits] = _fixed_list(ev.quantizer.encode_binary(ev.code_vectors), binary_bytes(dim),
                                    pa.uint8())
    table = pa.table(columns)
    assert table.num_rows == n
    return _write_ipc(table_dir, DATA_DIR, table)


def build_segment(table_dir: Path, config: TableConfig, batch: Batch,
                  previous_center: npt.NDArray[np.float32] | None,
                  previous_extra: Mapping[str, npt.NDArray[np.float32]] | None = None) -> SegmentEntry:
    """Write ``batch`` as a new segment of the table in ``table_dir``, its codes calibrated on
    the batch (from ``previous_center``, the last segment's centre, when given), and return
    its manifest entry. Each further vector column of a multi-vector table is calibrated on its
    own vectors (from its centre in ``previous_extra``)."""
    code_vectors = normalize_rows(batch.vectors) if config.metric is Metric.COSINE else batch.vectors
    quantizer = Quantizer.fit(code_vectors, previous_center=previous_center)
    extra: dict[str, ExtraVectors] = {}
    for name in config.vectors[1:]:
        values = batch.extra_vectors[name]
        codes = normalize_rows(values) if config.metric is Metric.COSINE else values
        extra[name] = ExtraVectors(values, codes, Quantizer.fit(
            codes, previous_center=(previous_extra or {}).get(name)))
    ref = write_segment(table_dir, batch.ids, batch.attributes, batch.vectors, code_vectors, quantizer,
                        extra)
    return SegmentEntry(data=ref, rows=len(batch), quantizer=quantizer.to_json(),
                        extra_quantizers={k: v.quantizer.to_json() for k, v in extra.items()})


def write_deletions(table_dir: Path, offsets: npt.NDArray[np.int64]) -> FileRef:
    table = pa.table({"offset": pa.array(np.unique(offsets).astype(np.int64))})
    return _write_ipc(table_dir, DATA_DIR, table)




def _mismatch(path: Path, ref: FileRef) -> Callable[[int], CorruptStoreError]:
    return lambda value: CorruptStoreError(
        f"file {path} fails its checksum ({describe(ref.algorithm, value)}, the manifest "
        f"recorded {describe(ref.algorithm, ref.checksum)}): the file was altered or damaged"
    )


def _verify_key_of(path: Path, st: os.stat_result, ref: FileRef) -> tuple[str, int, int, str, int]:
    return (str(path), st.st_size, st.st_mtime_ns, ref.algorithm, ref.checksum)


def _verify_key(fd: int, path: Path, ref: FileRef) -> tuple[str, int, int, str, int]:
    return _verify_key_of(path, os.fstat(fd), ref)


def verify_checksum(fd: int, path: Path, ref: FileRef) -> None:
    """Check an open file's checksum against the manifest, once per process per (file, size,
    mtime).

    The file is read with plain reads, not through the table's memory map, so verifying leaves
    the bytes in the page cache rather than in this process's resident memory.
    """
    key = _verify_key(fd, path, ref)
    if key in _verified:
        return
    value = checksum_pread(fd, ref.algorithm)
    if value != ref.checksum:
        raise _mismatch(path, ref)(value)
    with _verified_lock:
        _verified.add(key)


def _check_later(fd: int, path: Path, ref: FileRef, table: pa.Table) -> BackgroundCheck | None:
    """The checksum of ``fd`` and the full validation of ``table`` (read from it) started on
    the checker thread; None when this process already verified the file. See
    :mod:`vecstore.checksums`."""
    key = _verify_key(fd, path, ref)
    if key in _verified:
        return None

    def passed() -> None:
        try:
            table.validate(full=True)
        except (pa.ArrowException, ValueError) as exc:
            raise CorruptStoreError(f"file {path} is not a readable Arrow file: {exc}") from exc
        with _verified_lock:
            _verified.add(key)

    return checksum_check(fd, ref.algorithm, ref.checksum, _mismatch(path, ref), passed)


def _open_ipc(table_dir: Path, ref: FileRef, verify: bool) -> pa.Table:
    """Open an Arrow file of the table after checking its size and checksum (``verify``)."""
    return _open_ipc_checked(table_dir, ref, verify, lazy=False)[0]


def _open_ipc_checked(table_dir: Path, ref: FileRef, verify: bool,
                      lazy: bool) -> tuple[pa.Table, BackgroundCheck | None, FileMapping | None]:
    """Open an Arrow file of the table. Its existence, type, size, footer and schema are
    checked now; its checksum (``verify``) now, or with ``lazy`` on the checker thread, the
    returned check to be waited for before any of the file's bytes are used. Also returns the
    file's mapping (:mod:`vecstore.storage.pages`)."""
    path = table_dir / ref.path
    try:
        fd = open_in_table(table_dir, ref.path)  # no links, a regular file
    except FileNotFoundError:
        raise CorruptStoreError(f"file {path} is missing (referenced by the manifest)") from None
    check = None
    try:
        size = os.fstat(fd).st_size
        if size != ref.bytes:
            raise CorruptStoreError(
                f"file {path} has {size} bytes, the manifest recorded {ref.bytes}: truncated or replaced"
            )
        if verify and not lazy:
            verify_checksum(fd, path, ref)
        try:
            # Map the very file that was checked: /proc/self/fd/N reopens the open descriptor's
            # file, whatever is at the path now. (Python's mmap would keep a descriptor per
            # segment open; Arrow's map keeps none once the table is read: the mapped region
            # lives as long as a column refers to it.) Reading the table reads the footer and
            # schema only; the buffers' bounds are validated against the file's size.
            source = pa.memory_map(f"{_FD_DIR}/{fd}" if _FD_DIR else str(path), "r")
            # the mapping's first byte: a zero-copy buffer read at offset 0
            st = os.fstat(fd)
            mapped = FileMapping(source.read_buffer(1).address, size, table_dir, ref.path,
                                 st.st_dev, st.st_ino) if size else None
            source.seek(0)
            table = pa.ipc.open_file(source).read_all()
            table.validate(full=verify and not lazy)
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise CorruptStoreError(f"file {path} is not a readable Arrow file: {exc}") from exc
        if verify and lazy:
            check = _check_later(fd, path, ref, table)
    finally:
        os.close(fd)
    return table, check, mapped


@dataclass(frozen=True, eq=False)
class Segment:
    """An opened segment: the Arrow table (memory-mapped) and NumPy views of its vector columns."""

    table: pa.Table
    quantizer: Quantizer
    deleted: npt.NDArray[np.int64]  # sorted row offsets that are tombstoned
    extra_quantizers: Mapping[str, Quantizer] = field(default_factory=dict)
    """The calibration of each further vector column (multi-vector tables)."""
    # the data file's checksum, still running: wait() before the table's buffers are read
    check: BackgroundCheck | None = None
    mapped: FileMapping | None = None
    """Where and which file the data file is memory-mapped from (storage.pages reads its rows
    with preadv)."""

    def ready(self) -> Segment:
        """This segment once its data file's checksum passed (raises CorruptStoreError if not)."""
        if self.check is not None:
            self.check.wait()
        return self

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

    def quantizer_of(self, name: str) -> Quantizer:
        return self.quantizer if name == "vector" else self.extra_quantizers[name]

    def column_arrays(self, name: str) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32],
                                                npt.NDArray[np.int8], npt.NDArray[np.uint64]]:
        """Vector column ``name``'s vectors, norms, int8 codes and sign codes."""
        col, norm, i8, bits = code_columns(name)
        dim = self.quantizer.dim
        return (self._flat(col, np.float32, dim), to_numpy(self.table.column(norm)),
                self._flat(i8, np.int8, dim),
                self._flat(bits, np.uint8, binary_bytes(dim)).view(np.uint64))

    def live_mask(self) -> npt.NDArray[np.bool_]:
        mask = np.ones(self.rows, dtype=bool)
        mask[self.deleted] = False
        return mask


def open_segment(table_dir: Path, data: FileRef, deletions: FileRef | None,
                 quantizer: Quantizer, rows: int, verify: bool = True,
                 extra_quantizers: Mapping[str, Quantizer] | None = None,
                 lazy: bool = False) -> Segment:
    """Open a segment and its tombstones. With ``lazy`` the data file's checksum runs in the
    background (see :meth:`Segment.ready`); the small tombstone file is always checked now."""
    table, check, mapped = _open_ipc_checked(table_dir, data, verify, lazy)
    if table.num_rows != rows:
        raise CorruptStoreError(
            f"file {table_dir / data.path} has {table.num_rows} rows, the manifest recorded {rows}"
        )
    for name in extra_quantizers or {}:
        missing = [c for c in code_columns(name) if c not in table.column_names]
        if missing:
            raise CorruptStoreError(
                f"file {table_dir / data.path} lacks the columns {missing} of vector column "
                f"{name!r} that the manifest records")
    if deletions is None:
        deleted = np.empty(0, dtype=np.int64)
    else:
        dt = _open_ipc(table_dir, deletions, verify)
        deleted = to_numpy(dt.column("offset")).astype(np.int64)
        if deleted.size and (deleted[0] < 0 or deleted[-1] >= rows):
            raise CorruptStoreError(f"file {table_dir / deletions.path} has offsets out of range")
    return Segment(table=table, quantizer=quantizer, deleted=deleted,
                   extra_quantizers=dict(extra_quantizers or {}), check=check, mapped=mapped)


def verify_file(table_dir: Path, ref: FileRef) -> None:
    """Read the table's file ``ref`` in full now and check its size and checksum against the
    manifest, whatever this process checked before (for ``Table.verify`` and ``vecstore
    check``). Raises CorruptStoreError naming the file."""
    path = table_dir / ref.path
    try:
        fd = open_in_table(table_dir, ref.path)
    except FileNotFoundError:
        raise CorruptStoreError(f"file {path} is missing (referenced by the manifest)") from None
    try:
        size = os.fstat(fd).st_size
        if size != ref.bytes:
            raise CorruptStoreError(
                f"file {path} has {size} bytes, the manifest recorded {ref.bytes}: truncated or replaced"
            )
        value = checksum_of_fd(fd, ref.algorithm)
    finally:
        os.close(fd)
    if value != ref.checksum:
        raise _mismatch(path, ref)(value)
