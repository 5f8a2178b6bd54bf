"""Writing a Ray dataset into a vecstore table: workers write segments, the driver commits once.

The shape of lance-ray's sink: each write task turns its blocks into one segment (validated,
with its int8 and binary codes, keyword postings and checksums, by the same code that writes
``Table.add``'s segments) in a *stage* inside the table's directory, and returns the segment's
manifest entry; when every task has succeeded the driver moves the staged files into the table
and publishes one manifest naming them all (:meth:`TableWriter.publish`). A task that fails, or
a commit that is refused (a duplicate id, a column whose type conflicts), publishes nothing,
and the stage is removed: the table is left exactly as it was.

Workers need the table's directory on a file system they can see (one machine, or a shared
mount on a cluster).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data import Dataset
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from ..config import TableConfig
from ..db import Database
from ..errors import InvalidArgumentError
from ..storage.batch import prepare_batch
from ..storage.codes import Quantizer
from ..storage.writer import StagedSegment, open_stage, remove_stage, stage_segment

MODES = ("append", "upsert", "overwrite")
DEFAULT_ROWS_PER_SEGMENT = 50_000


def _open(path: str | Path, table: str) -> Any:
    db = Database(path)
    return db.open_table(table)


def arrow_rows(blocks: Iterable[Block]) -> pa.Table:
    """The rows of Ray blocks as one Arrow table, with a tensor-typed ``vector`` column (what
    Ray makes of NumPy vectors) turned into the fixed-size lists vecstore reads."""
    tables = [BlockAccessor.for_block(b).to_arrow() for b in blocks]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return pa.table({})
    rows = pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
    if "vector" in rows.column_names and isinstance(rows.schema.field("vector").type, pa.ExtensionType):
        col = rows.column("vector").combine_chunks()
        values = np.asarray(col.to_numpy(zero_copy_only=False))
        if values.dtype == object:  # vectors of several lengths: the row validation names them
            vectors: pa.Array = pa.array([np.asarray(v).reshape(-1).tolist() for v in values])
        else:
            values = values.reshape(len(rows), -1)
            vectors = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
        rows = rows.set_column(rows.column_names.index("vector"), "vector", vectors)
    return rows


class VecstoreDatasink(Datasink[list[StagedSegment]]):
    """A Ray Data sink into the table ``table`` of the store at ``path``; use it through
    :func:`write_table` (which also removes the stage when the write fails)."""

    def __init__(self, path: str | Path, table: str, *, mode: str = "append",
                 replace_docs: bool = False, rows_per_segment: int = DEFAULT_ROWS_PER_SEGMENT) -> None:
        if mode not in MODES:
            raise InvalidArgumentError(f"mode must be one of {', '.join(map(repr, MODES))}, got {mode!r}")
        if not isinstance(rows_per_segment, int) or rows_per_segment < 1:
            raise InvalidArgumentError(
                f"rows_per_segment must be a positive integer, got {rows_per_segment!r}")
        tbl = _open(path, table)
        snap = tbl._writable()
        self.store = Path(path)
        self.table_dir = Path(tbl.path)
        self.table_name = table
        self.mode = mode
        self.replace_docs = replace_docs
        self.rows_per_segment = rows_per_segment
        # what the workers validate against: the version read now (the commit checks the
        # segments again against the newest one, under the lock)
        self.config: TableConfig = snap.manifest.config
        self.schema: pa.Schema = pa.schema([]) if mode == "overwrite" else snap.manifest.schema
        last = snap.manifest.segments[-1] if snap.manifest.segments and mode != "overwrite" else None
        self.previous_center = (Quantizer.from_json(last.quantizer, self.config.dim).center
                                if last is not None else None)
        self.stage = open_stage(self.table_dir)
        self.version: int | None = None  # the version published, once the write completes

    @property
    def min_rows_per_write(self) -> int:
        return self.rows_per_segment

    def get_name(self) -> str:
        return "Vecstore"

    def write(self, blocks: Iterable[Block], ctx: Any) -> list[StagedSegment]:
        """On a worker: validate the task's rows and stage them as one segment."""
        rows = arrow_rows(blocks)
        if rows.num_rows == 0:
            return []
        if self.config.embedder is not None and (
                "vector" not in rows.column_names or rows.column("vector").null_count):
            from ..ingest.embedders import get_embedder
            from ..ingest.rows import embed_missing

            rows = embed_missing(rows, get_embedder(self.config.embedder))
        batch = prepare_batch(rows, self.config, self.schema)
        return [stage_segment(self.table_dir, self.stage, batch, self.config, self.previous_center)]

    def on_write_complete(self, write_result: WriteResult[list[StagedSegment]]) -> None:
        """On the driver: publish every staged segment in one commit."""
        staged = [s for ret in write_result.write_returns for s in ret]
        tbl = _open(self.store, self.table_name)
        snap = tbl._writer.publish(tbl._writable(), self.stage, staged, mode=self.mode,
                                   replace_docs=self.replace_docs)
        self.version = snap.version
        self.staged = staged
        remove_stage(self.table_dir, self.stage)
        tbl._calibrate(tbl._executor.calibration_due)  # as Table.add: grown to be measured again

    def on_write_failed(self, error: Exception) -> None:
        remove_stage(self.table_dir, self.stage)


def write_table(ds: Dataset, path: str | Path, table: str, *, mode: str = "append",
                rows_per_segment: int = DEFAULT_ROWS_PER_SEGMENT, concurrency: int | None = None) -> int:
    """Write the rows of the Ray dataset ``ds`` into the existing table ``table`` of the store
    at ``path``, in **one** commit; returns the new version.

    Rows are what ``Table.add`` takes (``id``, ``vector`` (or ``text`` when the table has an
    embedder) and attributes), validated on the workers against the table's schema; each write
    task writes at least ``rows_per_segment`` rows (or what is left) as one segment. ``mode``:
    ``"append"`` (an id already present, or twice in ``ds``, is a DuplicateIdError),
    ``"upsert"`` (rows with the same ids are replaced) or ``"overwrite"`` (the table holds
    exactly ``ds``'s rows afterwards; the index is dropped). If any task fails, or the commit
    is refused, nothing is published and the staged files are removed; the error is raised.

    The segments are published as written; ``tbl.compact()`` folds many into one and
    ``tbl.create_index()`` covers them. As after ``Table.add``, a table that the write brought
    to 5,000 rows, or grew by half since its scan was last measured, has the scan measured in a
    version of its own after that commit.
    """
    sink = VecstoreDatasink(path, table, mode=mode, rows_per_segment=rows_per_segment)
    return _run(ds, sink, concurrency)


def _run(ds: Dataset, sink: VecstoreDatasink, concurrency: int | None) -> int:
    try:
        ds.write_datasink(sink, concurrency=concurrency)
    finally:
        # Ray calls on_write_failed on a best-effort basis only; a stage is never left behind
        remove_stage(sink.table_dir, sink.stage)
    if sink.version is None:  # nothing to write: no task returned a segment
        return int(_open(sink.store, sink.table_name).version)
    return sink.version
