"""Reading a vecstore table version as a Ray dataset: one read task per group of segments.

The version is pinned when :func:`read_table` is called (segments are immutable, so every task
reads that version whatever is committed meanwhile). A task opens only its own segments, as a
snapshot of that part of the manifest, and applies the filter with vecstore's own filter engine
(the sorted-index fast path or the sandboxed DuckDB), so a filter means on Ray exactly what it
means in ``Table.to_arrow(where=...)``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import ray.data
from ray.data.block import Block, BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from ..db import Database
from ..errors import InvalidArgumentError
from ..query.executor import Executor
from ..storage.manifest import Manifest, SegmentEntry
from ..storage.snapshot import Snapshot


def _groups(segments: Sequence[SegmentEntry], n: int) -> list[list[SegmentEntry]]:
    """``segments`` in at most ``n`` contiguous groups of about equal live rows."""
    n = max(1, min(n, len(segments)))
    total = sum(e.live_rows for e in segments) or 1
    groups: list[list[SegmentEntry]] = [[]]
    done = 0
    for e in segments:
        # start a new group once this one holds its share (and groups are left to fill)
        if groups[-1] and done >= total * len(groups) / n and len(groups) < n:
            groups.append([])
        groups[-1].append(e)
        done += e.live_rows
    return groups


def _read(table_dir: Path, manifest: Manifest, columns: list[str], where: str | None,
          params: tuple[Any, ...]) -> Iterable[Block]:
    snap = Snapshot(table_dir, manifest)
    if where is None:
        rows = snap.live_rows
    else:
        rows = Executor(table_dir).match_rows(snap, where, params)
    yield snap.take(rows, columns)


class VecstoreDatasource(Datasource):
    """A Ray Data source over one version of a vecstore table; use it through :func:`read_table`."""

    def __init__(self, path: str | Path, table: str, columns: Sequence[str] | None = None,
                 where: str | None = None, params: Sequence[Any] = (), version: int | None = None) -> None:
        super().__init__()
        tbl = Database(path).open_table(table, version=version)
        snap = tbl._current()
        cols = list(columns) if columns is not None else snap.attribute_names()
        if isinstance(columns, str):
            raise InvalidArgumentError(f"columns takes a list of names, got the string {columns!r}")
        if "id" not in cols:
            cols.insert(0, "id")
        tbl._check_columns(cols)
        if where is not None:
            tbl._executor.check_filter(snap, where)  # a bad filter fails here, not in a task
        elif params:
            raise InvalidArgumentError("read_table() got filter parameters without a where filter")
        self.table_dir = Path(tbl.path)
        self.manifest = snap.manifest
        self.columns = cols
        self.where = where
        self.params = tuple(params)

    def estimate_inmemory_data_size(self) -> int | None:
        return sum(e.data.bytes for e in self.manifest.segments)

    def get_read_tasks(self, parallelism: int, per_task_row_limit: int | None = None,
                       data_context: Any = None) -> list[ReadTask]:
        tasks = []
        for group in _groups(self.manifest.segments, parallelism):
            part = replace(self.manifest, segments=tuple(group), indexes=())
            rows = sum(e.live_rows for e in group)
            meta = BlockMetadata(num_rows=rows if self.where is None else None,
                                 size_bytes=sum(e.data.bytes for e in group),
                                 input_files=None, exec_stats=None)
            args = (self.table_dir, part, self.columns, self.where, self.params)
            tasks.append(ReadTask(functools.partial(_read, *args), meta,
                                  per_task_row_limit=per_task_row_limit))
        return tasks

    def get_name(self) -> str:
        return "Vecstore"


def read_table(path: str | Path, table: str, columns: Sequence[str] | None = None,
               where: str | None = None, *params: Any, version: int | None = None) -> ray.data.Dataset:
    """The live rows of the table ``table`` of the store at ``path`` as a Ray dataset: ``id``
    and ``columns`` (default: every attribute; ``"vector"`` adds the vectors), only the rows for
    which ``where`` is true (``?`` bound to ``params``), read from the newest version (or
    ``version``) by one task per group of segments.

    >>> ds = read_table("store", "docs", ["year"], "year >= ?", 2020)  # doctest: +SKIP
    """
    source = VecstoreDatasource(path, table, columns, where, params, version=version)
    if not source.manifest.segments:
        empty = Snapshot(source.table_dir, source.manifest).take(
            Snapshot(source.table_dir, source.manifest).live_rows, source.columns)
        return ray.data.from_arrow(empty)
    return ray.data.read_datasource(source)
