"""An opened, immutable table version: its segments, live rows and arrays, ready to read.

Rows of a version are addressed by a *global row position*: segment 0's rows come first, then
segment 1's, and so on (deleted rows keep their position, they are just not live).
"""

from __future__ import annotations

import array
import bisect
import errno
import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import CorruptStoreError, NotFoundError
from .arrays import to_numpy
from .codes import Quantizer, binary_bytes
from .manifest import Manifest, latest_version, read_manifest, version_exists
from .pages import RowReader
from .postings import Postings, segment_postings
from .segments import INTERNAL_COLUMNS, Segment, open_segment, verify_file

I64 = npt.NDArray[np.int64]
_ATTEMPTS = 5


class Snapshot:
    """One table version, opened read-only. Safe to share between threads."""

    def __init__(self, table_dir: Path, manifest: Manifest, reuse: dict[str, Segment] | None = None,
                 verify: bool = True) -> None:
        self.table_dir = table_dir
        self.manifest = manifest
        dim = manifest.config.dim
        segments = []
        for entry in manifest.segments:
            key = f"{entry.data.path}|{entry.deletions.path if entry.deletions else ''}"
            seg = reuse.get(key) if reuse else None
            if seg is None:
                extra = {name: Quantizer.from_json(entry.extra_quantizers[name], dim)
                         for name in manifest.config.vectors[1:]} if manifest.config.multi else None
                seg = open_segment(table_dir, entry.data, entry.deletions,
                                   Quantizer.from_json(entry.quantizer, dim), entry.rows, verify, extra,
                                   lazy=True)
            segments.append(seg)
        # Checksums run in the background from here (vecstore.checksums): the first use of the
        # segments' bytes, through .segments, waits for them.
        self._segments: list[Segment] = segments
        self._ready = not any(s.check is not None for s in segments)
        sizes = np.array([s.rows for s in segments], dtype=np.int64)
        self.bases: I64 = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._attribute_tables: dict[tuple[int, tuple[str, ...]], pa.Table] = {}
        self._value_columns: dict[str, _Gather] = {}  # attribute column -> reader by global row
        self._columns: dict[str, VectorColumn] = {}
        self._row_readers: dict[tuple[tuple[str, ...], bool], _RowReader] = {}  # see rows_as_dicts

    @functools.cached_property
    def pages(self) -> RowReader:
        """Reads rows of the segments' files where they lie, when the table is too large to
        read through its memory map (:mod:`vecstore.storage.pages`)."""
        return RowReader([s.mapped for s in self._segments if s.mapped is not None])

    @property
    def segments(self) -> list[Segment]:
        """The opened segments, once every data file's checksum has passed (raises
        CorruptStoreError naming the file otherwise)."""
        if not self._ready:
            for seg in self._segments:
                seg.ready()
            self._ready = True
        return self._segments

    @classmethod
    def open(cls, table_dir: Path, version: int | None = None) -> Snapshot:
        """Open ``version`` of the table (its newest when None)."""
        if version is not None:
            return cls(table_dir, read_manifest(table_dir, version))
        return newest(table_dir, 0, None)

    def refreshed(self) -> Snapshot:
        """The newest published version: this snapshot when nothing newer exists, else a new
        one that reuses the segments the two versions share (two ``stat`` calls when unchanged)."""
        return newest(self.table_dir, self.version, self)

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def physical_rows(self) -> int:
        return int(self.bases[-1])

    @functools.cached_property
    def num_rows(self) -> int:
        """Live rows (the manifest sums its segments': asked several times per query)."""
        return self.manifest.rows

    def segment_keys(self) -> dict[str, Segment]:
        return {
            f"{e.data.path}|{e.deletions.path if e.deletions else ''}": s
            for e, s in zip(self.manifest.segments, self.segments, strict=True)
        }

    # -- per-segment arrays, computed once per version ---------------------------------------
    @functools.cached_property
    def binary(self) -> list[npt.NDArray[np.uint64]]:
        return [s.binary_codes() for s in self.segments]

    def _stacked(self, rows: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
        """One ``[dim]`` row per segment stacked into ``[segments, dim]`` of ``dtype``."""
        if not rows:
            return np.zeros((0, self.manifest.config.dim), dtype=dtype)
        return np.stack(rows).astype(dtype, copy=False)

    @functools.cached_property
    def binary_all(self) -> npt.NDArray[np.uint64]:
        """Every segment's sign codes in one array, indexed by global row: one kernel call
        scans them all (see :attr:`centers`). A copy (read-only) when there are several
        segments: 1/32 of the float32 vectors' size."""
        words = binary_bytes(self.manifest.config.dim) // 8
        return _by_global_row(self.binary, np.zeros((0, words), np.uint64))

    @functools.cached_property
    def centers(self) -> npt.NDArray[np.float32]:
        """The sign calibration of each segment, stacked: ``float32[segments, dim]``."""
        return self._stacked([s.quantizer.center for s in self.segments], np.float32)

    @functools.cached_property
    def int8(self) -> list[npt.NDArray[np.int8]]:
        return [s.int8_codes() for s in self.segments]

    @functools.cached_property
    def int8_all(self) -> npt.NDArray[np.int8]:
        """Every segment's int8 codes in one array, indexed by global row, so that one kernel
        call rescores candidates from all segments (each with its segment's row of
        :attr:`int8_scales`). A read-only copy when there are several segments (a quarter of
        the float32 vectors' size), the segment's own array when there is one."""
        return _by_global_row(self.int8, np.zeros((0, self.manifest.config.dim), np.int8))

    @functools.cached_property
    def int8_scales(self) -> npt.NDArray[np.float32]:
        """Each segment's int8 dequantization scale, stacked: ``float32[segments, dim]``."""
        return self._stacked([s.quantizer.scale for s in self.segments], np.float32)

    @functools.cached_property
    def int8_origins(self) -> npt.NDArray[np.float64]:
        """What int8 code 0 decodes to in each segment, stacked: ``float64[segments, dim]``
        (see :meth:`~.codes.Quantizer.query_int8`)."""
        # float32 arithmetic then widened, exactly as the quantizer folds one segment's
        return self._stacked([(128.0 * s.quantizer.scale + s.quantizer.offset).astype(np.float64)
                              for s in self.segments], np.float64)

    @functools.cached_property
    def norms_all(self) -> npt.NDArray[np.float32]:
        """Every segment's vector norms in one array, indexed by global row."""
        return _by_global_row(self.norms, np.zeros(0, np.float32), read_only=False)

    @functools.cached_property
    def vectors(self) -> list[npt.NDArray[np.float32]]:
        return [s.vectors() for s in self.segments]

    @functools.cached_property
    def vector_addresses(self) -> I64 | None:
        """Where each segment's float32 vectors start in memory, for a kernel that reads rows of
        every segment in one call (``float_scores_rows_segments``); the arrays stay referenced
        by :attr:`vectors` for this snapshot's lifetime. None when some segment's vectors are
        not one C-contiguous ``float32[rows, dim]`` array (then callers go segment by segment)."""
        dim = self.manifest.config.dim
        vectors = self.vectors
        if not all(v.dtype == np.float32 and v.ndim == 2 and v.shape[1] == dim
                   and v.flags.c_contiguous for v in vectors):
            return None
        return np.array([v.ctypes.data for v in vectors], dtype=np.int64)

    @functools.cached_property
    def vector_files(self) -> tuple[I64, I64] | None:
        """Where each segment's float32 vectors lie in its file: ``(descriptors, offsets)``, for
        the kernels that read the rows an index's candidates rescore with ``pread``
        (``float_scores_rows_files``), so that those reads leave nothing mapped in the process
        (:mod:`.pages`: a read through the map maps whole folios of the file, and a serving
        process's RSS grew by the whole vectors file). None when some segment's vectors are
        not one C-contiguous ``float32[rows, dim]`` array in a mapped file, or when the process
        is out of file descriptors (a descriptor a segment: the rows are then read through the
        map)."""
        if self.vector_addresses is None:
            return None
        try:
            return self.pages.files_of(self.vectors)
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                return None
            raise

    def vectors_unreadable(self) -> CorruptStoreError:
        """The error when a row's vector could not be read from its segment's file (shorter
        than its manifest says, or unreadable)."""
        files = ", ".join(str(m.table_dir / m.path) for m in self.pages.mappings)
        return CorruptStoreError(f"a float32 vector could not be read whole from the segment files "
                                 f"of version {self.version} ({files}): a file was truncated or "
                                 f"is unreadable; `vecstore check` reports which")

    @functools.cached_property
    def norms(self) -> list[npt.NDArray[np.float32]]:
        return [s.norms() for s in self.segments]

    @property
    def vector_names(self) -> tuple[str, ...]:
        """The table's vector columns (``("vector",)`` unless it keeps several per row)."""
        return self.manifest.config.vectors

    def column(self, name: str) -> VectorColumn:
        """Vector column ``name``'s arrays, per segment (built once per version)."""
        col = self._columns.get(name)
        if col is None:
            if name not in self.vector_names:
                raise KeyError(name)
            col = self._columns[name] = VectorColumn(self, name)
        return col

    @functools.cached_property
    def live_mask(self) -> npt.NDArray[np.bool_]:
        """Global boolean mask of live rows."""
        return np.concatenate([s.live_mask() for s in self.segments]) if self.segments \
            else np.zeros(0, dtype=bool)

    def postings(self, s: int) -> Postings:
        """Segment ``s``'s keyword postings for the version's keyword settings (loaded once per
        process and file; see :func:`~.postings.segment_postings`)."""
        entry = self.manifest.segments[s]
        return segment_postings(self.table_dir, entry.postings, entry.data.path,
                                self.segments[s].table, self.manifest.config.keyword)

    @property
    def has_deletions(self) -> bool:
        return any(s.deleted.size for s in self.segments)

    @functools.cached_property
    def live_rows(self) -> I64:
        return np.flatnonzero(self.live_mask).astype(np.int64)

    def split(self, rows: I64) -> list[tuple[int, I64]]:
        """Group global rows by segment: ``[(segment index, local offsets)]``, each group in the
        order of ``rows`` (sorted rows, the usual case, are cut at the segment boundaries with
        one binary search each)."""
        if rows.size == 0:
            return []
        if len(self.segments) == 1:
            return [(0, rows)]
        if rows.size > 1 and not bool((rows[1:] >= rows[:-1]).all()):
            seg_of = np.searchsorted(self.bases, rows, side="right") - 1
            return [(int(s), rows[seg_of == s] - self.bases[s]) for s in np.unique(seg_of)]
        cuts = np.searchsorted(rows, self.bases).tolist()
        out = []
        for s in range(len(self.segments)):
            a, b = cuts[s], cuts[s + 1]
            if b > a:
                out.append((s, rows[a:b] - self.bases[s]))
        return out

    def gather_vectors(self, rows: I64, name: str = "vector") -> npt.NDArray[np.float32]:
        """Float32 vectors (of vector column ``name``) of global ``rows``, in that order."""
        out = np.empty((rows.size, self.manifest.config.dim), dtype=np.float32)
        if rows.size == 0:
            return out
        source = self.vectors if name == "vector" else self.column(name).vectors
        seg_of = np.searchsorted(self.bases, rows, side="right") - 1
        for s in np.unique(seg_of):
            where = np.flatnonzero(seg_of == s)
            out[where] = source[s][rows[where] - self.bases[s]]
        return out

    def rows_where_in(self, column: str, values: Sequence[str]) -> I64:
        """Live global rows whose string ``column`` (``id``, ``doc_id``, ...) is in ``values``,
        sorted. Segments written before the column existed hold none."""
        if not values or not self.segments:
            return np.empty(0, dtype=np.int64)
        value_set = pa.array(list(values), type=pa.string())
        found = []
        for s, seg in enumerate(self.segments):
            if column not in seg.table.column_names:
                continue
            hit = pc.is_in(seg.table.column(column), value_set=value_set)
            local = np.flatnonzero(to_numpy(hit, fill=False))
            if seg.deleted.size and local.size:
                local = local[seg.live_mask()[local]]
            found.append(local.astype(np.int64) + self.bases[s])
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)

    # -- attributes ---------------------------------------------------------------------------
    def _segment_attributes(self, i: int, columns: list[str]) -> pa.Table:
        # cached: every query's result rows are taken from it (a few small column sets recur)
        key = (i, tuple(columns))
        table = self._attribute_tables.get(key)
        if table is None:
            table = self._build_segment_attributes(i, columns)
            if len(self._attribute_tables) >= 64:
                self._attribute_tables.clear()
            self._attribute_tables[key] = table
        return table

    def _build_segment_attributes(self, i: int, columns: list[str]) -> pa.Table:
        seg = self.segments[i].table
        schema = self.manifest.schema
        arrays = []
        for name in columns:
            if name == "id":
                arrays.append(seg.column("id"))
                continue
            target = schema.field(name).type
            if name in seg.column_names:
                col = seg.column(name)
                arrays.append(col if col.type == target else col.cast(target))
            else:  # a column added after this segment was written
                arrays.append(pa.chunked_array([pa.nulls(seg.num_rows, type=target)]))
        return pa.Table.from_arrays(arrays, names=columns)

    @functools.cached_property
    def default_columns(self) -> tuple[str, ...]:
        """What a query returns unless told otherwise: ``id`` and every attribute."""
        return tuple(dict.fromkeys(["id", *self.manifest.schema.names]))

    def attribute_names(self) -> list[str]:
        return ["id", *self.manifest.schema.names]

    def attribute_view(self, row_column: str) -> pa.Table:
        """All rows (deleted ones too) with ``id``, the attributes and their global position;
        zero-copy over the memory-mapped segments except for the position column."""
        names = self.attribute_names()
        parts = []
        for i in range(len(self.segments)):
            t = self._segment_attributes(i, names)
            pos = pa.array(np.arange(self.bases[i], self.bases[i + 1], dtype=np.int64))
            parts.append(t.append_column(row_column, pos))
        if not parts:
            fields = [pa.field("id", pa.string()), *self.manifest.schema, pa.field(row_column, pa.int64())]
            return pa.schema(fields).empty_table()
        return pa.concat_tables(parts)

    def _gatherer(self, name: str) -> _Gather:
        """Attribute column ``name`` of every segment as one reader by global row (built once
        per version and column: see :class:`_Gather`)."""
        col = self._value_columns.get(name)
        if col is None:
            arrays = []
            for s in range(len(self.segments)):
                arr = self._segment_attributes(s, [name]).column(0)
                arrays.append(arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks())
            type_ = self.manifest.schema.field(name).type if name != "id" else pa.string()
            if len(arrays) > 1 and int(self.bases[-1]) > CONCATENATED_ROWS:
                col = _BySegment([_gather_of([a], type_) for a in arrays], self.bases)
            else:
                col = _gather_of(arrays, type_)
            self._value_columns[name] = col
        return col

    def rows_as_dicts(self, rows: I64, columns: Sequence[str],
                      scores: npt.NDArray[np.float32] | None = None) -> list[dict[str, Any]]:
        """Rows at global positions ``rows`` as dicts (``id``, ``score`` when given, then the
        other ``columns``), the way a query's caller reads its few hits: one gather per column
        over the whole version, whatever the segments the rows come from; no table built."""
        key = (tuple(columns), scores is not None)
        reader = self._row_readers.get(key)
        if reader is None:
            reader = _RowReader(self, key[0], key[1])
            if len(self._row_readers) >= 64:  # a few column sets recur (.select)
                self._row_readers.clear()
            self._row_readers[key] = reader
        return reader.read(self, rows, scores)

    def take(self, rows: I64, columns: list[str]) -> pa.Table:
        """Rows at global positions ``rows`` (in that order), with ``columns``."""
        vector_names = self.vector_names
        columns = [c for c in columns if c not in INTERNAL_COLUMNS or c == "vector"]
        if rows.size == 0:
            fields = []
            for c in columns:
                if c == "id":
                    fields.append(pa.field("id", pa.string()))
                elif c in vector_names:
                    fields.append(pa.field(c, pa.list_(pa.float32(), self.manifest.config.dim)))
                else:
                    fields.append(self.manifest.schema.field(c))
            return pa.schema(fields).empty_table()
        attr_cols = [c for c in columns if c not in vector_names]
        wanted_vectors = [c for c in columns if c in vector_names]
        if len(self.segments) == 1:  # the common case after compaction: no regrouping
            idx = pa.array(rows)
            t = self._segment_attributes(0, attr_cols).take(idx)
            for c in wanted_vectors:
                t = t.append_column(c, self.segments[0].table.column(c).take(idx))
            return t.select(columns)
        seg_of = np.searchsorted(self.bases, rows, side="right") - 1
        order = np.argsort(seg_of, kind="stable")
        pieces = []
        for s in np.unique(seg_of):
            local = rows[seg_of == s] - self.bases[s]
            t = self._segment_attributes(int(s), attr_cols).take(pa.array(local))
            for c in wanted_vectors:
                t = t.append_column(c, self.segments[s].table.column(c).take(pa.array(local)))
            pieces.append(t)
        combined = pa.concat_tables(pieces).combine_chunks()
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return combined.take(pa.array(inverse)).select(columns)


def _by_global_row(arrays: list[npt.NDArray[Any]], empty: npt.NDArray[Any], *,
                   read_only: bool = True) -> npt.NDArray[Any]:
    """Per-segment ``arrays`` as one array indexed by global row: the segment's own array when
    there is one, else a copy (read-only unless told otherwise), ``empty`` when none."""
    if len(arrays) == 1:
        return arrays[0]
    if not arrays:
        return empty
    out = np.concatenate(arrays)
    if read_only:
        out.flags.writeable = False
    return out


class VectorColumn:
    """One vector column of a snapshot, per segment: float32 vectors, norms, int8 and sign codes
    and the calibration they were made with. ``snap.column("vector")`` reads the same arrays as
    ``snap.vectors`` and friends."""

    def __init__(self, snap: Snapshot, name: str) -> None:
        self.name = name
        self.quantizers = [seg.quantizer_of(name) for seg in snap.segments]
        if name == "vector":
            self.vectors, self.norms = snap.vectors, snap.norms
            self.int8, self.binary = snap.int8, snap.binary
            return
        arrays = [seg.column_arrays(name) for seg in snap.segments]
        self.vectors = [a[0] for a in arrays]
        self.norms = [a[1] for a in arrays]
        self.int8 = [a[2] for a in arrays]
        self.binary = [a[3] for a in arrays]


class _RowReader:
    """How :meth:`Snapshot.rows_as_dicts` reads one set of columns: the column readers, looked
    up once, and a function building the rows' dicts from the columns' values. That function
    is generated for the column count (``lambda cols: [{k0: a0, k1: a1} for a0, a1 in
    zip(*cols)]``, the names bound as arguments, never pasted into the code): a dict display
    builds a row about twice as fast as ``dict(zip(names, values))``."""

    def __init__(self, snap: Snapshot, columns: tuple[str, ...], scored: bool) -> None:
        vector_names = snap.vector_names
        # a column's reader, or its name for a vector column (read through the snapshot, which
        # is not held here: the snapshot holds this reader)
        self.takes: list[Any] = [name if name in vector_names else snap._gatherer(name).take
                                 for name in columns]
        names = list(columns)
        self.score_at = -1
        if scored:
            self.score_at = 1 if names and names[0] == "id" else 0
            names.insert(self.score_at, "score")
        n = len(names)
        keys = ", ".join(f"k{i}" for i in range(n))
        values = "".join(f"a{i}, " for i in range(n))  # a tuple target, one column too
        items = ", ".join(f"k{i}: a{i}" for i in range(n))
        make = eval(f"lambda {keys}: lambda cols: [{{{items}}} for {values} in zip(*cols)]")  # noqa: S307
        self.build: Any = make(*names) if n else None

    def read(self, snap: Snapshot, rows: I64,
             scores: npt.NDArray[np.float32] | None) -> list[dict[str, Any]]:
        cols = [[v.tolist() for v in snap.gather_vectors(rows, take)] if type(take) is str
                else take(rows) for take in self.takes]
        if self.score_at >= 0:
            assert scores is not None
            cols.insert(self.score_at, (scores if scores.dtype == np.float32
                                        else scores.astype(np.float32)).tolist())
        return self.build(cols) if cols else []


class _Gather:
    """One attribute column of a version, read by global row: ``take(rows)`` gives the
    values of those rows, in that order, as Python objects. The arrays here are the kinds a
    query's few hits are read from fastest (microseconds for ten rows, where an Arrow
    ``take`` costs tens); :func:`_gather_of` picks one."""

    def take(self, rows: I64) -> list[Any]:
        raise NotImplementedError


CONCATENATED_ROWS = 1 << 22
"""Rows up to which a column of several segments is read through arrays by global row (copies
of 1-10 bytes a row: ~40 MiB at 4M rows, read in microseconds); beyond, through each
segment's own reader (zero-copy), a few microseconds more a query. At 10M rows in 10 segments
the copies of ``id`` and one int64 attribute had taken 172 MiB of a query process's 1.9 GB."""


class _BySegment(_Gather):
    """A column of a large table read through each segment's own :class:`_Gather` (see
    :data:`CONCATENATED_ROWS`); ``bases[s]`` is segment ``s``'s first global row."""

    def __init__(self, parts: list[_Gather], bases: I64) -> None:
        self.parts = parts
        self.bases = bases

    def take(self, rows: I64) -> list[Any]:
        if rows.size == 0:
            return []
        seg = np.searchsorted(self.bases, rows, side="right") - 1
        first = int(seg[0])
        if bool((seg == first).all()):
            return self.parts[first].take(rows - self.bases[first])
        out: list[Any] = [None] * rows.size
        for s in np.unique(seg).tolist():
            at = np.flatnonzero(seg == s)
            for i, value in zip(at.tolist(), self.parts[s].take(rows[at] - self.bases[s]), strict=True):
                out[i] = value
        return out


class _Numbers(_Gather):
    """Numbers or booleans without nulls: one NumPy array by global row (zero-copy over a
    single segment; a copy of the column, 1-8 bytes a row, over several)."""

    def __init__(self, values: npt.NDArray[Any]) -> None:
        self.values = values

    def take(self, rows: I64) -> list[Any]:
        return self.values[rows].tolist()


class _Strings(_Gather):
    """Strings read value by value from the segments' Arrow buffers, which stay where they
    are (memory-mapped): by global row, the segment (``seg``) and the value's byte range in
    that segment's data (``starts``, ``ends``), 9-10 bytes a row."""

    def __init__(self, arrays: list[pa.StringArray]) -> None:
        self.data = [memoryview(a.buffers()[2] or b"") for a in arrays]
        offsets = [np.frombuffer(a.buffers()[1], dtype=np.int32, count=len(a) + 1) for a in arrays]
        if len(arrays) == 1:  # zero-copy views of the one segment's offsets
            self.starts, self.ends = offsets[0][:-1], offsets[0][1:]
            self.seg: npt.NDArray[np.int16] | None = None
        else:
            self.starts = np.concatenate([o[:-1] for o in offsets])
            self.ends = np.concatenate([o[1:] for o in offsets])
            self.seg = np.concatenate([np.full(len(a), i, dtype=np.int16)
                                       for i, a in enumerate(arrays)])
        nulls = any(a.null_count for a in arrays)
        self.valid = np.concatenate([to_numpy(a.is_valid()) for a in arrays]) if nulls else None

    def take(self, rows: I64) -> list[Any]:
        starts, ends = self.starts[rows].tolist(), self.ends[rows].tolist()
        if self.seg is None:
            data = self.data[0]
            out: list[Any] = [str(data[a:b], "utf-8") for a, b in zip(starts, ends, strict=True)]
        else:
            datas = self.data
            out = [str(datas[s][a:b], "utf-8")
                   for s, a, b in zip(self.seg[rows].tolist(), starts, ends, strict=True)]
        if self.valid is not None:
            for i, ok in enumerate(self.valid[rows].tolist()):
                if not ok:
                    out[i] = None
        return out


class _Temporal(_Numbers):
    """Dates and timestamps (seconds, milliseconds or microseconds, no time zone): one
    ``datetime64`` array by global row (nulls are NaT), whose ``tolist()`` gives the
    ``datetime.date`` / ``datetime.datetime`` values (``None`` for NaT) Arrow's ``to_pylist``
    gives, in about a microsecond for ten rows where an Arrow ``take`` and conversion costs
    twenty or more."""

    def __init__(self, arrays: list[pa.Array]) -> None:
        views = [_datetime64(a) for a in arrays]
        super().__init__(views[0] if len(views) == 1 else np.concatenate(views))


def _datetime64(arr: pa.Array) -> npt.NDArray[np.datetime64]:
    """``arr`` (date32, or a timestamp without zone) as ``datetime64``, nulls as NaT: read from
    its buffers (``Array.to_numpy`` would import pandas for temporal types, half a second on a
    cold process's first query); zero-copy for timestamps without nulls."""
    date = pa.types.is_date32(arr.type)
    raw = np.frombuffer(arr.buffers()[1], dtype=np.int32 if date else np.int64,
                        count=len(arr), offset=arr.offset * (4 if date else 8))
    values = raw.astype("datetime64[D]") if date else raw.view(f"datetime64[{arr.type.unit}]")
    if arr.null_count:
        values = values.copy()
        values[~to_numpy(arr.is_valid())] = np.datetime64("NaT")
    return values


class _Arrow(_Gather):
    """Any other column (nulls, lists, structs, ...): the segments' arrays (zero-copy). A few
    rows are read value by value from their own segment (an Arrow ``take`` over a chunked
    array costs tens of microseconds whatever the count); many with one ``take``."""

    SCALAR_ROWS = 32  # beyond this many rows one take is cheaper than value-by-value reads

    def __init__(self, arrays: list[pa.Array], type_: pa.DataType) -> None:
        self.arrays = arrays
        self.starts: list[int] = np.cumsum([0] + [len(a) for a in arrays[:-1]]).tolist()
        self.values = pa.chunked_array(arrays, type=type_)

    def take(self, rows: I64) -> list[Any]:
        if rows.size > self.SCALAR_ROWS:
            return self.values.take(pa.array(rows)).to_pylist()
        if len(self.arrays) == 1:
            one = self.arrays[0]
            return [one[r].as_py() for r in rows.tolist()]
        # a bisection per row in Python: for a few rows cheaper than NumPy's calls (the hits of
        # a table of several segments read as fast as a one-segment table's)
        arrays, starts = self.arrays, self.starts
        out = []
        for r in rows.tolist():
            s = bisect.bisect_right(starts, r) - 1
            out.append(arrays[s][r - starts[s]].as_py())
        return out


class _Lists(_Gather):
    """Lists (``list<...>`` or ``large_list<...>``): by global row, the range of the row's
    values among every segment's list values (``starts``, ``ends``), and those values read by
    the gatherer of their own type, for all the hits' lists in one call (an Arrow ``as_py`` per
    hit costs several microseconds a list).

    Lists of strings drawn from a few distinct values (tags, topics, places) are coded once a
    column has been read :data:`CODE_AFTER_TAKES` times (a first query pays nothing): each
    value's position among the distinct strings (``codes``, 4 bytes a value) and those strings
    as Python objects (``words``), so that a hit's list is a few lookups (ten rows of Reuters'
    ``topics``: ~15 -> ~4 µs)."""

    CODE_AFTER_TAKES = 32
    DISTINCT_SHARE = 0.25  # coded when the distinct strings are at most this share of the values

    def __init__(self, arrays: list[pa.Array], type_: pa.DataType) -> None:
        children = [a.values for a in arrays]  # offsets below index into the unsliced values
        if len(arrays) == 1:  # zero-copy views of the one segment's offsets
            offsets = to_numpy(arrays[0].offsets)
            self.starts, self.ends = offsets[:-1], offsets[1:]
        else:  # 4 bytes a row each while the values' positions fit
            sizes = [len(c) for c in children]
            wide = np.int64 if sum(sizes) >= 2**31 else np.int32
            bases = np.cumsum([0, *sizes[:-1]], dtype=np.int64)
            shifted = [to_numpy(a.offsets).astype(np.int64) + b for a, b in zip(arrays, bases, strict=True)]
            self.starts = np.concatenate([o[:-1] for o in shifted]).astype(wide)
            self.ends = np.concatenate([o[1:] for o in shifted]).astype(wide)
        nulls = any(a.null_count for a in arrays)
        self.valid = np.concatenate([to_numpy(a.is_valid()) for a in arrays]) if nulls else None
        self.values = _gather_of(children, type_.value_type)
        self._uncoded: list[pa.Array] | None = children if pa.types.is_string(type_.value_type) else None
        self._takes = 0
        self._codes: array.array[int] | None = None
        self._words: list[str | None] | None = None

    SMALL = 64  # up to this many rows plain Python lays the ranges out faster than NumPy's calls

    def _code(self) -> None:
        """Code the values (see the class docstring), or give up where they are too varied."""
        children, self._uncoded = self._uncoded, None
        if children is None:  # another thread is coding them
            return
        values = pa.chunked_array(children, type=pa.string())
        distinct = pc.unique(values)
        if len(distinct) > self.DISTINCT_SHARE * len(values):
            return
        at = pc.index_in(values, value_set=distinct)  # a null value finds the null among them
        if at.null_count:
            return
        codes = array.array("i")
        for chunk in at.chunks:
            codes.frombytes(np.ascontiguousarray(to_numpy(chunk), dtype=np.int32).tobytes())
        self._codes = codes
        self._words = distinct.to_pylist()

    def take(self, rows: I64) -> list[Any]:
        if self._uncoded is not None:
            self._takes += 1
            if self._takes >= self.CODE_AFTER_TAKES:
                self._code()
        words, codes = self._words, self._codes
        if words is not None and codes is not None and rows.size <= self.SMALL:
            out: list[Any] = [[words[c] for c in codes[a:b]]
                              for a, b in zip(self.starts[rows].tolist(), self.ends[rows].tolist(),
                                              strict=True)]
        elif rows.size <= self.SMALL:
            starts, ends = self.starts[rows].tolist(), self.ends[rows].tolist()
            flat = self.values.take(np.array([x for a, b in zip(starts, ends, strict=True)
                                              for x in range(a, b)], dtype=np.int64))
            out = []
            at = 0
            for a, b in zip(starts, ends, strict=True):
                out.append(flat[at:at + b - a])
                at += b - a
        else:
            first, last = self.starts[rows], self.ends[rows]
            lengths = last - first
            ends_at = np.cumsum(lengths)
            # the values' positions: each row's range, laid end to end
            flat = self.values.take(np.arange(int(ends_at[-1]), dtype=np.int64)
                                    + np.repeat(first - (ends_at - lengths), lengths))
            bounds = [0, *ends_at.tolist()]
            out = [flat[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]
        if self.valid is not None:
            for i, ok in enumerate(self.valid[rows].tolist()):
                if not ok:
                    out[i] = None
        return out


_FIRST_DAY, _PAST_LAST_DAY = np.datetime64("0001-01-01"), np.datetime64("10000-01-01")


def _temporal(type_: pa.DataType) -> bool:
    """Whether NumPy's ``datetime64`` of ``type_`` converts to the Python values Arrow gives."""
    if pa.types.is_date32(type_):
        return True
    return (pa.types.is_timestamp(type_) and type_.tz is None
            and type_.unit in ("s", "ms", "us"))  # ns: NumPy gives ints, Arrow datetimes


_MAX_STRING_SEGMENTS = 32_000  # segment numbers of _Strings are int16


def _gather_of(arrays: list[pa.Array], type_: pa.DataType) -> _Gather:
    """The fastest :class:`_Gather` for a column whose segments hold ``arrays`` (of the
    table's type ``type_``)."""
    if pa.types.is_integer(type_) or pa.types.is_floating(type_) or pa.types.is_boolean(type_):
        if not any(a.null_count for a in arrays):
            if len(arrays) == 1:
                return _Numbers(to_numpy(arrays[0]))
            return _Numbers(np.concatenate([to_numpy(a) for a in arrays]) if arrays
                            else np.zeros(0, dtype=type_.to_pandas_dtype()))
    if (pa.types.is_string(type_) and arrays and len(arrays) <= _MAX_STRING_SEGMENTS
            and all(a.offset == 0 for a in arrays)):
        return _Strings(arrays)
    if (pa.types.is_list(type_) or pa.types.is_large_list(type_)) and arrays:
        return _Lists(arrays, type_)
    if _temporal(type_) and arrays:
        gather = _Temporal(arrays)
        values = gather.values[~np.isnat(gather.values)]
        # beyond datetime's years 1-9999 NumPy gives ints where Arrow raises: Arrow decides
        if not values.size or (values.min() >= _FIRST_DAY and values.max() < _PAST_LAST_DAY):
            return gather
    return _Arrow(arrays, type_)


def verify_version(table_dir: Path, manifest: Manifest) -> tuple[int, int, list[str]]:
    """Read every data, tombstone and postings file of ``manifest``'s version in full and check
    it against the manifest. Returns (files checked, bytes read, problems found)."""
    files = size = 0
    problems: list[str] = []
    for entry in manifest.segments:
        for ref in (entry.data, entry.deletions, entry.postings):
            if ref is None:
                continue
            files += 1
            size += ref.bytes
            try:
                verify_file(table_dir, ref)
            except CorruptStoreError as exc:
                problems.append(str(exc))
    return files, size, problems


def newest(table_dir: Path, known: int, current: Snapshot | None) -> Snapshot:
    """The newest version of the table (``current`` when that is still it). A version found
    newest can be superseded by a commit and removed by a cleanup before its files are opened
    (only with a cleanup ``older_than`` shorter than that moment): then the newest is looked up
    again. A failure on a version still on disk is real and raised."""
    for attempt in range(_ATTEMPTS):
        v = latest_version(table_dir, known=known)
        if current is not None and v <= current.version:
            # (older: current's manifest was deleted by hand, not by cleanup, which never
            # removes the newest: stay on it, so that no version number is published twice)
            return current
        try:
            return Snapshot(table_dir, read_manifest(table_dir, v),
                            reuse=current.segment_keys() if current is not None else None)
        except (NotFoundError, CorruptStoreError):
            if attempt == _ATTEMPTS - 1 or v == 0 or version_exists(table_dir, v):
                raise
        known = 0  # list the directory again
    raise AssertionError("unreachable")
