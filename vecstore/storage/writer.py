"""The only code that commits a table version.

Every write goes through :class:`TableWriter`: creating a table (version 1, with its first rows
if any), adding and replacing rows, deleting, compacting, recording or dropping an index. A
commit takes the table's write lock, reads the newest version under it, writes the new immutable
files (segments, tombstones) and publishes the next manifest (a temporary file, fsynced, then
published with ``link``, which fails if another writer published that version first). A crash at
any point leaves the previous version in force; files a crash leaves behind are named by no
manifest and never read.

What to write is decided by callbacks that run under the lock on the newest snapshot (``prepare``
validates rows against the schema of that version, ``select`` picks rows to delete), so the
storage layer needs nothing from the layers above it.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from ..config import KeywordConfig, TableConfig
from ..errors import (
    ConcurrencyError,
    CorruptStoreError,
    DuplicateIdError,
    InvalidArgumentError,
    NotFoundError,
    SchemaError,
)
from .batch import Batch, check_new_names
from .codes import binary_bytes
from .files import fsync_dir, make_subdir, open_in_table
from .leases import Lease, take_lease
from .locks import write_lock
from .manifest import (
    DATA_DIR,
    STAGING_DIR,
    VERSIONS_DIR,
    FileRef,
    IndexEntry,
    Manifest,
    ScanCalibration,
    SegmentEntry,
    check_not_rolled_back,
    write_manifest,
)
from .merge import MergeSource, write_merged_segment
from .postings import Postings, build_postings, keyword_texts, merge_postings, write_postings
from .segments import Segment, build_segment, write_deletions
from .snapshot import Snapshot

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
Change = Callable[[Snapshot], Manifest | None]


class IndexOutdatedError(ConcurrencyError):
    """An index built without the lock covers no live row any more (see ``set_index``)."""


MAX_MERGED_SEGMENT_BYTES = 2 << 30
"""The most a merge writes: segments are merged only while the result stays under this many
bytes (about 1.05M rows of 384-d vectors), so no add rewrites more than this, however large
the table: past it a table grows by segments of about this size, left alone by later adds."""


def segment_row_bytes(config: TableConfig) -> int:
    """About how many bytes a row takes in a segment: each vector column's float32 values,
    norm, int8 and sign codes, and ~64 bytes for the id and attributes (a guess: they vary)."""
    dim = config.dim
    return len(config.vectors) * (4 * dim + 4 + dim + binary_bytes(dim)) + 64


def merge_limit_rows(config: TableConfig) -> int:
    """The most rows a merge writes into one segment (:data:`MAX_MERGED_SEGMENT_BYTES`)."""
    return max(1, MAX_MERGED_SEGMENT_BYTES // segment_row_bytes(config))


def merge_count(sizes: Sequence[int], limit: int | None = None) -> int:
    """How many trailing segments (the newest included) a write merges into one: the newest
    absorbs the one before it while that one holds no more rows than the run so far and the
    run stays within ``limit`` rows (None: no limit).

    Segment sizes then fall at least by half from oldest to newest (a binary counter), so a
    table built by many small writes keeps ``log2(rows / write)`` segments and each row is
    rewritten about that many times; a small write never rewrites a large segment. 13 writes of
    5,000 rows leave segments of 40,000, 20,000 and 5,000 rows. Scans, filters and index views
    then cost about what they cost on one segment (docs/benchmarks.md, "Rows arrived in many
    writes"). With a ``limit`` the counter stops there: segments of about ``limit`` rows are
    never rewritten by an add, a row is rewritten at most ``log2(limit / write)`` times, and
    no single add rewrites more than ``limit`` rows (its latency does not grow with the table);
    the table keeps ``rows / limit`` such segments plus the counter's ``log2``."""
    n, run = 1, sizes[-1] if sizes else 0
    while n < len(sizes) and sizes[-n - 1] <= run and (limit is None or run + sizes[-n - 1] <= limit):
        run += sizes[-n - 1]
        n += 1
    return n


@dataclass
class _Part:
    """A segment of the version being built: its entry and, for segments of the base snapshot,
    its position there and its tombstones after this write's deletions."""

    entry: SegmentEntry
    index: int
    deleted: I64


def new_segment(table_dir: Path, batch: Batch, config: TableConfig,
                previous_center: npt.NDArray[np.float32] | None,
                previous_extra: Mapping[str, F32] | None = None,
                postings: Postings | None = None) -> SegmentEntry:
    """Write ``batch`` as a new segment file, its codes calibrated on its own rows (each vector
    column of a multi-vector table on its own vectors, from ``previous_extra``'s centres), and
    its keyword postings beside it (``postings``: already made from the rows' segments, else
    analyzed from the batch)."""
    entry = build_segment(table_dir, config, batch, previous_center, previous_extra)
    return replace(entry, postings=keyword_postings(table_dir, batch.attributes, config.keyword, postings))


def _centers(seg: Segment | None) -> tuple[F32 | None, dict[str, F32]]:
    """The sign-code centres of a segment's vector columns (what a small next segment reuses)."""
    if seg is None:
        return None, {}
    return seg.quantizer.center, {k: q.center for k, q in seg.extra_quantizers.items()}


def keyword_postings(table_dir: Path, attributes: pa.Table, keyword: KeywordConfig,
                     postings: Postings | None = None) -> FileRef | None:
    """Write the keyword postings of a segment's ``attributes`` (None: it holds none of the
    keyword columns, so it has no terms); ``postings`` when they are made already."""
    if not keyword_texts(attributes, keyword):
        return None
    if postings is None:
        postings = build_postings(attributes, keyword)
    return write_postings(table_dir, postings)


_STAGE_LEASES: dict[tuple[str, str], Lease] = {}
"""The leases on the stages this process opened: a cleanup never removes a stage in use."""


@dataclass(frozen=True)
class StagedSegment:
    """A segment written by :func:`stage_segment` and not yet published: its manifest entry
    (paths relative to the stage, the same as they will be in the table), the attribute schema
    its rows were validated to, its ids (checked for duplicates when it is published) and the
    distinct values of its ``doc_id`` column, if it has one (for ``replace_docs``)."""

    entry: SegmentEntry
    schema: pa.Schema
    ids: pa.Array
    doc_ids: pa.Array | None = None


def stage_dir(table_dir: Path, stage: str) -> Path:
    """The directory of the stage named ``stage`` (a hex token) inside ``table_dir``."""
    if not stage or any(c not in "0123456789abcdef" for c in stage):
        raise InvalidArgumentError(f"a stage name is a hex token, got {stage!r}")
    return table_dir / STAGING_DIR / stage


def open_stage(table_dir: Path) -> str:
    """Create an empty stage in ``table_dir`` (which must exist) and return its name. The stage
    is leased (:mod:`.leases`) until :func:`remove_stage`, before its directory exists, so a
    cleanup never takes it for the leftover of a killed write (which it removes: the lease of a
    dead process is free)."""
    stage = uuid.uuid4().hex
    lease = take_lease(table_dir, [f"{STAGING_DIR}/{stage}"], "staged write")
    if lease is not None:
        _STAGE_LEASES[(str(table_dir), stage)] = lease
    make_subdir(table_dir, STAGING_DIR)
    make_subdir(table_dir, f"{STAGING_DIR}/{stage}")
    return stage


def stage_segment(table_dir: Path, stage: str, batch: Batch, config: TableConfig,
                  previous_center: npt.NDArray[np.float32] | None) -> StagedSegment:
    """Write ``batch`` (validated by ``prepare_batch``) as a segment with its codes and keyword
    postings, checksummed, into the stage, without committing anything: the files are the
    ones :func:`new_segment` writes, and :meth:`TableWriter.publish` moves them into the table.
    Any process that sees the table's directory can stage (a Ray worker, say)."""
    directory = stage_dir(table_dir, stage)
    if not directory.is_dir():
        raise NotFoundError(f"stage {stage!r} of table {table_dir} is gone (the write was abandoned "
                            f"or already published)")
    entry = new_segment(directory, batch, config, previous_center)
    docs = None
    if "doc_id" in batch.attributes.column_names:
        col = batch.attributes.column("doc_id").combine_chunks().drop_null()
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            docs = col.cast(pa.string()).unique()
    return StagedSegment(entry=entry, schema=batch.schema, ids=batch.ids, doc_ids=docs)


def remove_stage(table_dir: Path, stage: str) -> None:
    """Remove a stage and whatever is left in it (published files were moved out), and give
    up its lease when this process holds it."""
    shutil.rmtree(stage_dir(table_dir, stage), ignore_errors=True)
    lease = _STAGE_LEASES.pop((str(table_dir), stage), None)
    if lease is not None:
        lease.release()


NEW_PREFIX = ".new-"  # a creation's directory before its creator holds its lock (microseconds)
CREATING_PREFIX = ".creating-"  # a creation's directory while its creator holds its lock
DROPPED_PREFIX = ".dropped-"
STALE_NEW_S = 60.0
"""A ``.new-*`` directory is locked microseconds after it is made: one this old whose lock is
free was left by a crash (the age rule covers the instant between mkdir and taking the lock)."""


def create_table_dir(store: Path, path: Path, config: TableConfig, schema: pa.Schema,
                     batch: Batch | None, lock_timeout: float) -> bool:
    """Create a table: version 1 (holding ``batch``'s rows, if any) is built in a hidden
    directory under its own write lock and renamed to ``path``, so the table appears whole or
    not at all, and of several processes creating it at once exactly one wins. Only this
    function creates a table's directory; commits never do (a table whose directory is gone was
    dropped). Returns False when ``path`` was taken first."""
    key = uuid.uuid4().hex
    new = store / f"{NEW_PREFIX}{key}"
    staging = store / f"{CREATING_PREFIX}{path.name}-{key}"
    os.mkdir(new)
    published = False
    try:
        # the lock is held from before the directory is named .creating-* until it is renamed
        # into place: a concurrent connect never takes a live creation for a leftover
        with write_lock(new, lock_timeout) as lock:
            os.rename(new, staging)
            make_subdir(staging, VERSIONS_DIR)
            segments: tuple[SegmentEntry, ...] = ()
            if batch is not None and len(batch):
                segments = (new_segment(staging, batch, config, None),)
                schema = batch.schema
            write_manifest(staging, Manifest(version=1, config=config, schema=schema,
                                             segments=segments))
            lock.record(1)
            fsync_dir(staging)
            try:
                os.rename(staging, path)  # fails when a (non-empty) table is already there
            except OSError as exc:
                if isinstance(exc, (FileExistsError, NotADirectoryError, IsADirectoryError)) \
                        or exc.errno == errno.ENOTEMPTY:
                    return False
                raise
            published = True
            fsync_dir(store)
        return True
    finally:
        if not published:
            for leftover in (new, staging):
                shutil.rmtree(leftover, ignore_errors=True)


def drop_table_dir(store: Path, path: Path, lock_timeout: float) -> None:
    """Drop a table: under its write lock (no commit is cut in half) the directory is renamed
    away (the table disappears atomically), then removed. Writers and readers still holding it
    get NotFoundError on their next operation (they check the directory's identity)."""
    trash = None
    try:
        with write_lock(path, lock_timeout):
            trash = store / f"{DROPPED_PREFIX}{path.name}-{uuid.uuid4().hex}"
            os.rename(path, trash)
            fsync_dir(store)
    finally:
        if trash is not None:
            shutil.rmtree(trash, ignore_errors=True)


def remove_leftovers(store: Path) -> None:
    """Remove what interrupted drops and creations left in ``store``: ``.dropped-*``
    directories, ``.creating-*`` ones whose creator is gone (its lock is free: a live creator
    holds it until the directory is renamed into place), ``.new-*`` ones a minute old whose
    lock is free."""
    for entry in os.scandir(store):
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.startswith(DROPPED_PREFIX):
            shutil.rmtree(entry.path, ignore_errors=True)
        elif entry.name.startswith(CREATING_PREFIX):
            _remove_abandoned_creation(store, Path(entry.path))
        elif entry.name.startswith(NEW_PREFIX):
            try:
                age = time.time() - entry.stat(follow_symlinks=False).st_mtime
            except FileNotFoundError:
                continue
            if age > STALE_NEW_S:
                _remove_abandoned_creation(store, Path(entry.path))


def _remove_abandoned_creation(store: Path, staging: Path) -> None:
    try:
        with write_lock(staging, timeout=0):
            trash = store / f"{DROPPED_PREFIX}{uuid.uuid4().hex}"
            os.rename(staging, trash)
    except (NotFoundError, TimeoutError, CorruptStoreError, OSError):
        return  # its creator is alive, it is already gone, or it is not ours to judge
    shutil.rmtree(trash, ignore_errors=True)


class TableWriter:
    """Commits new versions of one table. Thread-safe and process-safe through the table's
    write lock; readers never take it."""

    def __init__(self, table_dir: Path, name: str, lock_timeout: float,
                 identity: tuple[int, int]) -> None:
        self.table_dir = table_dir
        self.name = name
        self.lock_timeout = lock_timeout
        self.identity = identity  # the directory this writer commits to (not a recreated one)

    # -- the commit ---------------------------------------------------------------------------
    def commit(self, base: Snapshot, change: Change) -> Snapshot:
        """Under the lock: bring ``base`` up to the newest version, let ``change`` build the
        next manifest from it (None: nothing to do), publish it. Returns the snapshot now in
        force (``base``'s newest version when nothing changed)."""
        with write_lock(self.table_dir, self.lock_timeout, identity=self.identity) as lock:
            snap = base.refreshed()
            # a newest manifest deleted after it was published must not be built over: its
            # version number would be published twice
            check_not_rolled_back(self.table_dir, snap.version, lock.high_water_mark())
            manifest = change(snap)
            if manifest is None:
                return snap
            write_manifest(self.table_dir, manifest)
            lock.record(manifest.version)
            return Snapshot(self.table_dir, manifest, reuse=snap.segment_keys())

    # -- building blocks ------------------------------------------------------------------------
    def _segment(self, snap: Snapshot, batch: Batch) -> SegmentEntry:
        return new_segment(self.table_dir, batch, snap.manifest.config,
                           *_centers(snap.segments[-1] if snap.segments else None))

    def _tombstone(self, snap: Snapshot, rows: I64) -> list[_Part]:
        """The segments of ``snap`` with ``rows`` (global) deleted; a segment left with no live
        row is dropped."""
        parts = [_Part(e, s, snap.segments[s].deleted) for s, e in enumerate(snap.manifest.segments)]
        for s, local in snap.split(np.unique(rows)):
            deleted = np.union1d(snap.segments[s].deleted, local).astype(np.int64)
            entry = snap.manifest.segments[s]
            if deleted.size == entry.rows:
                parts[s].deleted = np.arange(entry.rows, dtype=np.int64)
                continue
            ref = write_deletions(self.table_dir, deleted)
            parts[s] = _Part(replace(entry, deletions=ref, deleted=int(deleted.size)), s, deleted)
        return [p for p in parts if p.deleted.size < p.entry.rows]

    def _append(self, snap: Snapshot, parts: list[_Part], batch: Batch) -> tuple[SegmentEntry, ...]:
        """``parts`` followed by ``batch`` as a new segment, merged with the trailing segments
        :func:`merge_count` picks (in the same commit)."""
        n = merge_count([p.entry.rows for p in parts] + [len(batch)],
                        merge_limit_rows(snap.manifest.config)) - 1
        if n == 0:
            return (*(p.entry for p in parts), self._segment(snap, batch))
        keep, sources = parts[:-n], parts[-n:]
        indexed = {path for e in snap.manifest.indexes for path, _ in e.segments}
        covered = {p.entry.data.path for p in sources} | {
            m[0] for p in sources for m in p.entry.merged_from}
        # rows an index covers keep their place (and their tombstones), so its labels still
        # find them; otherwise deleted rows are dropped here
        preserve = bool(indexed & covered)
        deleted: list[I64] = []
        merged_from: list[tuple[str, int, int]] = []
        keyword = snap.manifest.config.keyword
        pieces: list[tuple[Postings, I64]] = []  # the merged rows' postings, reused
        merging: list[MergeSource] = []
        offset = 0
        for p in sources:
            rows = np.arange(p.entry.rows, dtype=np.int64)
            if preserve:
                deleted.append(p.deleted + offset)
                merged_from.extend((path, r, o + offset) for path, r, o in p.entry.merged_from
                                   if path in indexed)
                if p.entry.data.path in indexed:
                    merged_from.append((p.entry.data.path, p.entry.rows, offset))
            else:
                rows = np.setdiff1d(rows, p.deleted, assume_unique=True)
            pieces.append((snap.postings(p.index), rows))
            merging.append(MergeSource(snap.segments[p.index], rows))
            offset += rows.size
        pieces.append((build_postings(batch.attributes, keyword, rows=len(batch)),
                       np.arange(len(batch), dtype=np.int64)))
        entry = self._merged(snap, merging, batch, batch.schema, pieces,
                             *_centers(snap.segments[keep[-1].index] if keep else None))
        dead = np.concatenate(deleted) if deleted else np.empty(0, np.int64)
        if dead.size:
            entry = replace(entry, deletions=write_deletions(self.table_dir, dead), deleted=int(dead.size))
        if merged_from:
            entry = replace(entry, merged_from=tuple(merged_from))
        return (*(p.entry for p in keep), entry)

    def _merged(self, snap: Snapshot, sources: Sequence[MergeSource], batch: Batch | None,
                schema: pa.Schema, pieces: Sequence[tuple[Postings, I64]],
                previous_center: F32 | None = None,
                previous_extra: Mapping[str, F32] | None = None) -> SegmentEntry:
        """One new segment of the ``sources``' rows then ``batch``'s, written a block at a time
        (:mod:`.merge`), with the keyword postings merged from ``pieces`` (theirs, reused)."""
        entry, attributes = write_merged_segment(self.table_dir, snap.manifest.config, sources,
                                                 batch, schema, previous_center, previous_extra)
        postings = merge_postings(pieces) if pieces else None
        return replace(entry, postings=keyword_postings(
            self.table_dir, attributes, snap.manifest.config.keyword, postings))

    # -- operations -----------------------------------------------------------------------------
    def write_rows(self, base: Snapshot, prepare: Callable[[Snapshot], Batch], *, replace: bool,
                   replace_docs: Sequence[str] = ()) -> tuple[Snapshot, list[str]]:
        """Add the rows ``prepare`` validates against the newest version. With ``replace``,
        live rows with the same ids (and the chunks of ``replace_docs``) are deleted in the same
        commit; without it an existing id is a :class:`DuplicateIdError`. Returns the new
        snapshot and the ids written."""
        ids: list[str] = []

        def change(snap: Snapshot) -> Manifest | None:
            batch = prepare(snap)
            ids[:] = batch.ids.to_pylist()
            if len(batch) == 0:
                return None
            existing = snap.rows_where_in("id", ids)
            if replace_docs:
                existing = np.union1d(existing, snap.rows_where_in("doc_id", list(replace_docs)))
            if existing.size and not replace:
                dup = snap.take(existing[:1], ["id"]).column("id")[0].as_py()
                raise DuplicateIdError(
                    f"id {dup!r} is already in table {self.name!r} ({existing.size} of the "
                    f"batch's ids are); use upsert() to replace rows")
            parts = self._tombstone(snap, existing)
            return snap.manifest.next("upsert" if replace else "add",
                                      segments=self._append(snap, parts, batch), schema=batch.schema)

        return self.commit(base, change), ids

    def publish(self, base: Snapshot, stage: str, staged: Sequence[StagedSegment], *,
                mode: str = "append", replace_docs: bool = False) -> Snapshot:
        """Publish segments written by :func:`stage_segment` into ``stage`` in one commit.

        ``mode``: ``"append"`` (an id already in the table, or twice among the segments, is a
        :class:`DuplicateIdError`), ``"upsert"`` (live rows with the same ids are deleted in
        the same commit; with ``replace_docs``, so are all the chunks of the segments'
        ``doc_id`` values, as :meth:`Table.add_documents` does) or ``"overwrite"`` (the
        segments replace every row; the index is dropped). The segments' schemas are merged
        with the table's as one ``add`` would (new columns are added; a column whose type
        differs is a :class:`SchemaError`). Nothing is published unless every check passes;
        the stage is not removed here (the caller removes it, whatever happened).
        Segments are published as written (no merge): ``compact()`` folds them."""
        if mode not in ("append", "upsert", "overwrite"):
            raise InvalidArgumentError(f"mode must be 'append', 'upsert' or 'overwrite', got {mode!r}")
        directory = stage_dir(self.table_dir, stage)

        def change(snap: Snapshot) -> Manifest | None:
            if not staged:
                return None
            base_schema = pa.schema([]) if mode == "overwrite" else snap.manifest.schema
            schema = _merge_schemas(base_schema, [s.schema for s in staged], self.name)
            ids = pa.chunked_array([s.ids for s in staged], type=pa.string()).combine_chunks()
            n_unique = len(ids.unique())
            if n_unique != len(ids):
                counts = ids.value_counts()
                dup = next(c["values"] for c in counts.to_pylist() if c["counts"] > 1)
                raise DuplicateIdError(f"id {dup!r} appears more than once among the rows written "
                                       f"({len(ids) - n_unique} repeats); give each row its own id")
            id_list = ids.to_pylist()
            if mode == "overwrite":
                parts: list[_Part] = []
            else:
                existing = snap.rows_where_in("id", id_list)
                if replace_docs:
                    docs = pa.chunked_array([pa.array([], pa.string())] + [
                        s.doc_ids for s in staged if s.doc_ids is not None]).unique().to_pylist()
                    existing = np.union1d(existing, snap.rows_where_in("doc_id", docs))
                if existing.size and mode == "append":
                    dup = snap.take(existing[:1], ["id"]).column("id")[0].as_py()
                    raise DuplicateIdError(
                        f"id {dup!r} is already in table {self.name!r} ({existing.size} of the "
                        f"rows written are); write with mode='upsert' to replace rows")
                parts = self._tombstone(snap, existing)
            make_subdir(self.table_dir, DATA_DIR)
            for s in staged:  # same relative paths in the stage and in the table
                for ref in (s.entry.data, s.entry.postings):
                    if ref is not None:
                        os.rename(directory / ref.path, self.table_dir / ref.path)
            fsync_dir(self.table_dir / DATA_DIR)
            segments = (*(p.entry for p in parts), *(s.entry for s in staged))
            changes: dict[str, object] = {"segments": segments, "schema": schema}
            if mode == "overwrite":
                changes["indexes"] = ()
            return snap.manifest.next("write_" + mode, **changes)

        return self.commit(base, change)

    def delete_rows(self, base: Snapshot, select: Callable[[Snapshot], I64]) -> tuple[Snapshot, int]:
        """Delete the live rows ``select`` picks in the newest version. Returns the new
        snapshot and how many rows were deleted."""
        deleted = 0

        def change(snap: Snapshot) -> Manifest | None:
            nonlocal deleted
            target = np.unique(select(snap))
            deleted = int(target.size)
            if deleted == 0:
                return None
            return snap.manifest.next(
                "delete", segments=tuple(p.entry for p in self._tombstone(snap, target)))

        return self.commit(base, change), deleted

    def update_rows(self, base: Snapshot, select: Callable[[Snapshot], I64],
                    rewrite: Callable[[Snapshot, pa.Table, npt.NDArray[np.float32]], Batch]
                    ) -> tuple[Snapshot, int]:
        """Rewrite the live rows ``select`` picks in the newest version, in one commit.

        ``rewrite`` gets those rows' ``id`` and attributes (one Arrow table in the version's
        schema) and their float32 vectors exactly as stored, and returns the validated batch
        that replaces them. The batch is written by the path added rows take (:meth:`_append`,
        so a segment carries whatever any segment carries) and the old rows are tombstoned.
        Returns the new snapshot and how many rows were rewritten."""
        updated = 0

        def change(snap: Snapshot) -> Manifest | None:
            nonlocal updated
            rows = np.unique(select(snap))
            updated = int(rows.size)
            if updated == 0:
                return None
            batch = rewrite(snap, snap.take(rows, snap.attribute_names()), snap.gather_vectors(rows))
            if len(batch) != updated:
                raise AssertionError(f"update rewrote {updated} rows into {len(batch)}")
            parts = self._tombstone(snap, rows)
            return snap.manifest.next("update", segments=self._append(snap, parts, batch),
                                      schema=batch.schema)

        return self.commit(base, change), updated

    def compact(self, base: Snapshot) -> Snapshot:
        """Rewrite the live rows into one segment, calibrated afresh on all of them, dropping
        tombstones; the index (which covered the old segments) is dropped."""

        def change(snap: Snapshot) -> Manifest | None:
            if len(snap.segments) <= 1 and not snap.has_deletions:
                return None
            if snap.num_rows == 0:
                return snap.manifest.next("compact", segments=(), indexes=())
            # a block at a time from the memory-mapped segments, like a merge
            sources, pieces = [], []
            for s, seg in enumerate(snap.segments):
                live = np.flatnonzero(seg.live_mask()).astype(np.int64)
                if live.size:
                    sources.append(MergeSource(seg, live))
                    pieces.append((snap.postings(s), live))
            entry = self._merged(snap, sources, None, snap.manifest.schema, pieces)
            return snap.manifest.next("compact", segments=(entry,), indexes=())

        return self.commit(base, change)

    def set_index(self, base: Snapshot, entry: IndexEntry,
                  scan: ScanCalibration | None = None) -> Snapshot:
        """Record ``entry`` (files already written) as the table's index, with the scan's
        calibration measured beside it. :class:`IndexOutdatedError` when none of the segments
        it was built over is still in the table: every row it covers was replaced, deleted or
        compacted away meanwhile, and it would serve no live row."""

        def change(snap: Snapshot) -> Manifest | None:
            present = {e.data.path for e in snap.manifest.segments} | {
                m[0] for e in snap.manifest.segments for m in e.merged_from}
            if not any(path in present for path, _ in entry.segments):
                raise IndexOutdatedError(
                    f"every row of table {self.name!r} that the index was built over (version "
                    f"{entry.built_at_version}) was replaced, deleted or compacted away while it "
                    f"was being built; run create_index again")
            try:  # removed meanwhile (by hand, or by a cleanup that did not see its lease)
                os.close(open_in_table(self.table_dir, entry.path, directory=True))
            except FileNotFoundError:
                raise ConcurrencyError(f"the files of the index being built ({entry.path}) were "
                                       f"removed before it was recorded; run create_index again") from None
            return snap.manifest.next("create_index", indexes=(entry,),
                                      scan=scan if scan is not None else snap.manifest.scan)

        return self.commit(base, change)

    def build_index_locked(self, base: Snapshot,
                           build: Callable[[Snapshot], tuple[IndexEntry, ScanCalibration | None]]
                           ) -> Snapshot:
        """Build (``build``, on the newest version) and record an index while holding the write
        lock, so that no write can outdate it: the last resort of a ``create_index`` whose
        builds kept being outdated by concurrent writes."""

        def change(snap: Snapshot) -> Manifest | None:
            entry, scan = build(snap)
            return snap.manifest.next("create_index", indexes=(entry,),
                                      scan=scan if scan is not None else snap.manifest.scan)

        return self.commit(base, change)

    def set_calibration(self, base: Snapshot, scan: ScanCalibration) -> Snapshot:
        """Record the scan's calibration measured on ``base``'s version."""

        def change(snap: Snapshot) -> Manifest | None:
            return snap.manifest.next("calibrate", scan=scan)

        return self.commit(base, change)

    def set_vectors(self, base: Snapshot, config: TableConfig) -> Snapshot:
        """Give a table that holds no live row other vector columns (``config``): its empty
        segments and its index are dropped in the same version. Refused (ValueError) when a
        row was added meanwhile."""

        def change(snap: Snapshot) -> Manifest | None:
            if snap.manifest.config == config:
                return None
            if snap.num_rows:
                raise InvalidArgumentError(
                    f"table {self.name!r} holds {snap.num_rows} rows with the vector columns "
                    f"{list(snap.vector_names)}; its vector columns can change only while it is empty")
            return snap.manifest.next("set_vectors", config=config, segments=(), indexes=(), scan=None)

        return self.commit(base, change)

    def set_keyword(self, base: Snapshot, keyword: KeywordConfig) -> Snapshot:
        """A new version whose keyword index covers ``keyword`` (columns, language): every
        segment's postings are rewritten for it in this one commit (the data files stay)."""

        def change(snap: Snapshot) -> Manifest | None:
            if snap.manifest.config.keyword == keyword:
                return None
            entries = []
            for entry, seg in zip(snap.manifest.segments, snap.segments, strict=True):
                attrs = seg.table.select([c for c in keyword.columns if c in seg.table.column_names])
                entries.append(replace(entry, postings=keyword_postings(self.table_dir, attrs, keyword)))
            return snap.manifest.next("set_keyword", segments=tuple(entries),
                                      config=replace(snap.manifest.config, keyword=keyword))

        return self.commit(base, change)

    def drop_index(self, base: Snapshot) -> Snapshot:
        """A new version without an index (the same snapshot when there was none)."""

        def change(snap: Snapshot) -> Manifest | None:
            if not snap.manifest.indexes:
                return None
            return snap.manifest.next("drop_index", indexes=())

        return self.commit(base, change)



def _merge_schemas(base: pa.Schema, schemas: Sequence[pa.Schema], name: str) -> pa.Schema:
    """``base`` with the columns of ``schemas`` added (in order of appearance); a column that is
    all null so far takes the first concrete type; two concrete types that differ are refused."""
    fields = {f.name: f for f in base}
    for schema in schemas:
        for f in schema:
            have = fields.get(f.name)
            if have is None or pa.types.is_null(have.type):
                if have is None:
                    check_new_names([f.name], list(fields))
                fields[f.name] = f
            elif not pa.types.is_null(f.type) and f.type != have.type:
                raise SchemaError(f"column {f.name!r} of table {name!r} holds {have.type}, but some "
                                  f"rows written give it {f.type}; cast the column to one type")
    return pa.schema(list(fields.values()))
