"""An opened, immutable table version: its segments, live rows and arrays, ready to read.

Rows of a version are addressed by a *global row position*: segment 0's rows come first, then
segment 1's, and so on (deleted rows keep their position, they are just not live).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .arrays import to_numpy
from .codes import Quantizer
from .manifest import Manifest, latest_version, read_manifest
from .postings import Postings, segment_postings
from .segments import INTERNAL_COLUMNS, Segment, open_segment

I64 = npt.NDArray[np.int64]


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
                seg = open_segment(table_dir, entry.data, entry.deletions,
                                   Quantizer.from_json(entry.quantizer, dim), entry.rows, verify)
            segments.append(seg)
        self.segments: list[Segment] = segments
        sizes = np.array([s.rows for s in segments], dtype=np.int64)
        self.bases: I64 = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self._attribute_tables: dict[tuple[int, tuple[str, ...]], pa.Table] = {}
        self._value_columns: dict[tuple[int, str], Any] = {}

    @classmethod
    def open(cls, table_dir: Path, version: int | None = None) -> Snapshot:
        """Open ``version`` of the table (its newest when None)."""
        v = latest_version(table_dir) if version is None else version
        return cls(table_dir, read_manifest(table_dir, v))

    def refreshed(self) -> Snapshot:
        """The newest published version: this snapshot when nothing newer exists, else a new
        one that reuses the segments the two versions share (one ``stat`` when unchanged)."""
        v = latest_version(self.table_dir, known=self.version)
        if v == self.version:
            return self
        return Snapshot(self.table_dir, read_manifest(self.table_dir, v), reuse=self.segment_keys())

    @property
    def version(self) -> int:
        return self.manifest.version

    @property
    def physical_rows(self) -> int:
        return int(self.bases[-1])

    @property
    def num_rows(self) -> int:
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

    @functools.cached_property
    def int8(self) -> list[npt.NDArray[np.int8]]:
        return [s.int8_codes() for s in self.segments]

    @functools.cached_property
    def vectors(self) -> list[npt.NDArray[np.float32]]:
        return [s.vectors() for s in self.segments]

    @functools.cached_property
    def norms(self) -> list[npt.NDArray[np.float32]]:
        return [s.norms() for s in self.segments]

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

    def gather_vectors(self, rows: I64) -> npt.NDArray[np.float32]:
        """Float32 vectors of global ``rows``, in that order."""
        out = np.empty((rows.size, self.manifest.config.dim), dtype=np.float32)
        if rows.size == 0:
            return out
        seg_of = np.searchsorted(self.bases, rows, side="right") - 1
        for s in np.unique(seg_of):
            where = np.flatnonzero(seg_of == s)
            out[where] = self.vectors[s][rows[where] - self.bases[s]]
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

    def _values(self, s: int, name: str) -> Any:
        """Segment ``s``'s column ``name`` as the table's schema types it: a NumPy array for
        numbers and booleans without nulls (zero-copy), else an Arrow array."""
        key = (s, name)
        col = self._value_columns.get(key)
        if col is None:
            arr = self._segment_attributes(s, [name]).column(0)
            arr = arr.chunk(0) if arr.num_chunks == 1 else arr.combine_chunks()
            t = arr.type
            if arr.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t)
                                        or pa.types.is_boolean(t)):
                col = to_numpy(arr)
            elif pa.types.is_string(t) and arr.offset == 0:
                col = _Strings(arr)
            else:
                col = arr
            self._value_columns[key] = col
        return col

    def rows_as_dicts(self, rows: I64, columns: Sequence[str],
                      scores: npt.NDArray[np.float32] | None = None) -> list[dict[str, Any]]:
        """Rows at global positions ``rows`` as dicts (``id``, ``score`` when given, then the
        other ``columns``), the way a query's caller reads its few hits: one small gather per
        column, no table built."""
        n = rows.size
        values: dict[str, list[Any]] = {c: [None] * n for c in columns if c != "vector"}
        if "vector" in columns:
            values["vector"] = [v.tolist() for v in self.gather_vectors(rows)]
        for s, positions, local in self._by_segment(rows):
            for name in columns:
                if name == "vector":
                    continue
                col = self._values(s, name)
                if isinstance(col, np.ndarray):
                    got = col[local].tolist()
                elif isinstance(col, _Strings):
                    got = col.take(local)
                else:
                    got = col.take(pa.array(local)).to_pylist()
                out = values[name]
                for i, v in zip(positions.tolist(), got, strict=True):
                    out[i] = v
        names = [c for c in columns if c in values]
        if scores is not None:
            names.insert(1 if names and names[0] == "id" else 0, "score")
            values["score"] = np.asarray(scores, dtype=np.float32).tolist()
        cols = [values[c] for c in names]
        return [dict(zip(names, row, strict=True)) for row in zip(*cols, strict=True)]

    def _by_segment(self, rows: I64) -> list[tuple[int, I64, I64]]:
        """(segment, positions in ``rows``, local rows) for each segment ``rows`` touch."""
        if rows.size == 0:
            return []
        if len(self.segments) == 1:
            return [(0, np.arange(rows.size), rows)]
        seg_of = np.searchsorted(self.bases, rows, side="right") - 1
        if rows.size <= 64:  # a query's hits: grouped in Python, cheaper than NumPy passes
            groups: dict[int, list[int]] = {}
            for i, s in enumerate(seg_of.tolist()):
                groups.setdefault(s, []).append(i)
            out = []
            for s, positions in groups.items():
                where = np.array(positions, dtype=np.int64)
                out.append((s, where, rows[where] - self.bases[s]))
            return out
        out = []
        for s in np.unique(seg_of):
            where = np.flatnonzero(seg_of == s)
            out.append((int(s), where, rows[where] - self.bases[s]))
        return out

    def take(self, rows: I64, columns: list[str]) -> pa.Table:
        """Rows at global positions ``rows`` (in that order), with ``columns``."""
        columns = [c for c in columns if c not in INTERNAL_COLUMNS or c == "vector"]
        if rows.size == 0:
            fields = []
            for c in columns:
                if c == "id":
                    fields.append(pa.field("id", pa.string()))
                elif c == "vector":
                    fields.append(pa.field("vector", pa.list_(pa.float32(), self.manifest.config.dim)))
                else:
                    fields.append(self.manifest.schema.field(c))
            return pa.schema(fields).empty_table()
        attr_cols = [c for c in columns if c != "vector"]
        if len(self.segments) == 1:  # the common case after compaction: no regrouping
            idx = pa.array(rows)
            t = self._segment_attributes(0, attr_cols).take(idx)
            if "vector" in columns:
                t = t.append_column("vector", self.segments[0].table.column("vector").take(idx))
            return t.select(columns)
        seg_of = np.searchsorted(self.bases, rows, side="right") - 1
        order = np.argsort(seg_of, kind="stable")
        pieces = []
        for s in np.unique(seg_of):
            local = rows[seg_of == s] - self.bases[s]
            t = self._segment_attributes(int(s), attr_cols).take(pa.array(local))
            if "vector" in columns:
                t = t.append_column("vector", self.segments[s].table.column("vector").take(pa.array(local)))
            pieces.append(t)
        combined = pa.concat_tables(pieces).combine_chunks()
        inverse = np.empty_like(order)
        inverse[order] = np.arange(order.size)
        return combined.take(pa.array(inverse)).select(columns)


class _Strings:
    """A string column read value by value from its Arrow buffers (zero-copy): a few hits
    decode in microseconds, where an Arrow ``take`` costs tens."""

    def __init__(self, arr: pa.StringArray) -> None:
        validity, offsets, data = arr.buffers()
        n = len(arr)
        self.offsets = np.frombuffer(offsets, dtype=np.int32, count=n + 1)
        self.data = memoryview(data) if data is not None else memoryview(b"")
        self.valid = None if arr.null_count == 0 else \
            to_numpy(arr.is_valid())

    def take(self, rows: I64) -> list[str | None]:
        data = self.data
        starts, ends = self.offsets[rows].tolist(), self.offsets[rows + 1].tolist()
        out: list[str | None] = [str(data[a:b], "utf-8") for a, b in zip(starts, ends, strict=True)]
        if self.valid is not None:
            for i, ok in enumerate(self.valid[rows].tolist()):
                if not ok:
                    out[i] = None
        return out
