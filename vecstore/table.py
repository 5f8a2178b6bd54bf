"""A table: rows with an id, a vector and attributes, stored as versioned Arrow segments.

:class:`Table` is the public API; it checks input (:mod:`vecstore.inputs`), writes through the
table's :class:`~vecstore.storage.writer.TableWriter` and runs queries on its
:class:`~vecstore.query.executor.Executor`.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import pyarrow as pa

from .config import Combine, KeywordConfig, Metric, PlannerSettings, TableConfig
from .documents import IngestReport
from .errors import CorruptStoreError, InvalidArgumentError, NotFoundError, ReadOnlyError, SchemaError
from .inputs import (
    check_update_values,
    check_version,
    prepare_batch,
    query_matrix,
    query_text,
    query_vector,
    retention_seconds,
    with_values,
)
from .query.builder import BatchQuery, Query, vector_query
from .query.deadline import deadline
from .query.executor import Executor
from .query.rerank import resolve_reranker
from .query.results import Hits
from .query.spec import QuerySpec, SearchMode, search_inputs
from .storage.cleanup import CleanupReport, cleanup_table, manifest_files
from .storage.files import make_subdir
from .storage.leases import Lease, take_lease
from .storage.locks import DEFAULT_TIMEOUT_S, directory_identity, dropped_error, high_water_mark
from .storage.manifest import (
    IndexEntry,
    VersionsWatch,
    check_not_rolled_back,
    latest_version,
    list_versions,
    missing_version_error,
    read_manifest,
    version_exists,
)
from .storage.snapshot import Snapshot, newest, verify_version
from .storage.writer import IndexOutdatedError, TableWriter

if TYPE_CHECKING:
    from .db import Database

_T = TypeVar("_T")
INDEX_ATTEMPTS = 4
"""Builds of one ``create_index`` call outdated by concurrent writes before the last one is
built holding the write lock (see :meth:`Table.create_index`)."""
DEFAULT_RETENTION = timedelta(days=7)
"""How long :meth:`Table.cleanup` and :meth:`Table.optimize` keep versions after they were
superseded, as LanceDB does: long enough for any read in progress and for ``checkout`` of last
week's versions."""


def check_keyword_columns(keyword: KeywordConfig, schema: pa.Schema) -> None:
    """Refuse keyword columns the table holds with a type other than string."""
    for name in keyword.columns:
        if name in schema.names:
            t = schema.field(name).type
            if not (pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_null(t)):
                raise SchemaError(f"keyword column {name!r} holds {t} values; keyword search "
                                  f"indexes string columns only")


class _Source:
    """What a :class:`~vecstore.Query` needs of its table (the QuerySource protocol)."""

    def __init__(self, table: Table) -> None:
        self._table = table

    def check_filter(self, where: str) -> None:
        t = self._table
        t._executor.check_filter(t._current(), where)

    def check_columns(self, columns: tuple[str, ...]) -> None:
        self._table._check_columns(columns)

    def parse_combine(self, value: Any) -> Combine:
        return Combine.parse(value, self._table._current().vector_names)

    @property
    def vector_names(self) -> tuple[str, ...]:
        return self._table._current().vector_names

    def run(self, spec: QuerySpec) -> list[Hits]:
        t = self._table
        seconds = t._db.query_timeout if spec.timeout is None else spec.timeout
        if seconds is None or seconds == math.inf:  # no deadline: no context to enter
            return t._read(lambda snap: t._executor.run(snap, spec))
        with deadline(seconds):
            return t._read(lambda snap: t._executor.run(snap, spec))

    def embed_query(self, text: str) -> np.ndarray:
        t = self._table
        return query_vector(t._need_embedder().embed_queries([text])[0], t.config)

    resolve_reranker = staticmethod(resolve_reranker)


class Table:
    """A table of a :class:`~vecstore.Database`. Get one with ``db.create_table`` or
    ``db.open_table``; it reads the newest committed version at every operation (or a fixed
    one, after ``checkout``).

    >>> import vecstore, tempfile
    >>> tbl = vecstore.connect(tempfile.mkdtemp()).create_table("t", dim=2)
    >>> tbl.add([{"id": "a", "vector": [1, 0], "n": 1}, {"id": "b", "vector": [0, 1], "n": 2}])
    ['a', 'b']
    >>> tbl.delete("n > ?", 1), len(tbl), tbl.version
    (1, 1, 3)
    """

    def __init__(self, db: Database, name: str, path: Path, version: int | None = None,
                 lock_timeout: float = DEFAULT_TIMEOUT_S, embedder: Any = None,
                 planner: PlannerSettings | None = None) -> None:
        self._db = db
        self.name = name
        self.path = path
        self._pinned = version is not None
        self._guard = threading.Lock()
        # the directory this object reads and writes: a table dropped and created again under
        # the same name is another directory, and this object must not touch it
        self._dir_id = directory_identity(path)
        self._path_str = str(path)
        self._watch = VersionsWatch(path)  # see _current
        self._lease: Lease | None = None  # a checkout's claim on its version's files
        self._snap = self._open(version)
        self._embedder: Any = embedder
        self._writer = TableWriter(path, name, lock_timeout, self._dir_id)
        self._executor = Executor(path, planner)

    def __repr__(self) -> str:
        m = self._snap.manifest
        return (f"Table({self.name!r}, rows={m.rows}, dim={m.config.dim}, "
                f"metric={m.config.metric.value!r}, version={m.version})")

    def _open(self, version: int | None) -> Snapshot:
        path = self.path
        if version is None:
            mark = high_water_mark(path)  # before listing: see storage.locks.high_water_mark
            v = latest_version(path)
            if v == 0 or (mark > v and directory_identity(path) != self._dir_id):
                raise dropped_error(path)  # (the mark may be the dropped table's)
            check_not_rolled_back(path, v, mark)
            return newest(path, v, None)
        v = check_version(version)
        try:
            manifest = read_manifest(path, v)
        except NotFoundError:
            raise missing_version_error(self.path, self.name, v) from None
        # Lease the version's files before opening them, then check that its manifest is still
        # there: a cleanup that removed it either saw the lease (and keeps the files) or removed
        # the manifest first (and the version is gone). See storage/cleanup.py.
        self._lease = take_lease(path, manifest_files(manifest), f"checkout of version {v}")
        if not version_exists(path, v):
            if self._lease is not None:
                self._lease.release()
            raise missing_version_error(self.path, self.name, v)
        return Snapshot(path, manifest)

    # -- the version read now -----------------------------------------------------------------
    def _check_present(self) -> None:
        """NotFoundError if the table was dropped (its directory is gone, or is another
        table's now): one ``stat`` per operation."""
        try:
            st = os.stat(self._path_str, follow_symlinks=False)
        except FileNotFoundError:
            raise dropped_error(self.path) from None
        if (st.st_dev, st.st_ino) != self._dir_id:
            raise dropped_error(self.path)

    def _current(self) -> Snapshot:
        """The version read now: the newest committed (by any process) before, or the checkout."""
        if self._pinned:
            self._check_present()
            return self._snap
        unchanged = self._watch.unchanged()  # one stat while nothing was committed
        if unchanged is not None:
            return unchanged
        stamp = self._watch.stamp()  # before the probe: it vouches for no later state
        self._check_present()
        snap = self._snap.refreshed()
        if snap is not self._snap:
            self._set(snap)
        self._watch.record(stamp, snap)
        return snap

    def _set(self, snap: Snapshot) -> None:
        with self._guard:
            if snap.version > self._snap.version:
                self._snap = snap

    def _read(self, read: Callable[[Snapshot], _T]) -> _T:
        """``read`` on the version read now. If it fails and that version is no longer on disk
        (a cleanup with an ``older_than`` shorter than the read removed its files meanwhile),
        it runs again on the newest version; a failure on a version still there is raised."""
        snap = self._current()
        try:
            return read(snap)
        except (CorruptStoreError, NotFoundError):
            if self._pinned or version_exists(self.path, snap.version):
                raise
        return read(self._current())

    def _writable(self) -> Snapshot:
        if self._pinned:
            raise ReadOnlyError(f"table {self.name!r} is checked out at version "
                                f"{self._snap.version}; open the table again to write")
        return self._current()

    def _check_columns(self, columns: Sequence[str]) -> None:
        snap = self._current()
        known = set(snap.attribute_names()) | set(snap.vector_names)
        for c in columns:
            if c not in known:
                raise InvalidArgumentError(
                    f"unknown column {c!r}; the table's columns are: {', '.join(sorted(known))}")

    @property
    def version(self) -> int:
        """The table version this object reads now."""
        return self._current().version

    @property
    def config(self) -> TableConfig:
        return self._snap.manifest.config

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def metric(self) -> Metric:
        return self.config.metric

    @property
    def schema(self) -> pa.Schema:
        """``id``, the attribute columns and ``vector``, with their Arrow types."""
        snap = self._current()
        return pa.schema([pa.field("id", pa.string()), *snap.manifest.schema,
                          *(pa.field(v, pa.list_(pa.float32(), snap.manifest.config.dim))
                            for v in snap.vector_names)])

    def __len__(self) -> int:
        return self._current().num_rows

    def count(self, where: str | None = None, *params: Any) -> int:
        """Number of rows, or of rows for which ``where`` is true."""
        if where is None:
            return self._current().num_rows
        with deadline(self._db.query_timeout):
            return self._read(lambda snap: int(self._executor.match_rows(snap, where, params).size))

    def versions(self) -> list[int]:
        """Every version of the table still on disk, oldest first."""
        self._check_present()
        return list_versions(self.path)

    def checkout(self, version: int) -> Table:
        """A read-only view of the table as it was at ``version`` (a positive integer, one of
        :meth:`versions`)."""
        version = check_version(version)
        self._check_present()
        return Table(self._db, self.name, self.path, version=version,
                     planner=self._executor.settings)

    def verify(self) -> dict[str, Any]:
        """Read every file of the current version in full (segments, tombstones, keyword
        postings, index files) and check each against its recorded size and checksum, whatever
        this process checked before. Opening a table checks only sizes and headers; checksums
        run in the background and the first use of a file waits for them (docs/guarantees.md).

        Returns ``{"version", "files", "bytes"}``. Raises CorruptStoreError listing every
        damaged or missing file.
        """
        from .index._files import verify as verify_index_files

        snap = self._current()
        files, size, problems = verify_version(self.path, snap.manifest)
        config = snap.manifest.config
        for entry in snap.manifest.indexes:
            expect = {"dim": config.dim, "metric": config.metric.value, "count": entry.count}
            try:
                meta = verify_index_files(self.path / entry.path, entry.kind, expect)
            except CorruptStoreError as exc:
                problems.append(str(exc))
                continue
            files += len(meta["files"])
            size += sum(int(f["bytes"]) for f in meta["files"].values())
        if problems:
            raise CorruptStoreError(
                f"version {snap.version} of table {self.name!r} has {len(problems)} damaged "
                "file(s): " + "; ".join(problems))
        return {"version": snap.version, "files": files, "bytes": size}

    # -- reading rows ---------------------------------------------------------------------------
    def to_arrow(self, columns: Sequence[str] | None = None, *, with_vectors: bool = False,
                 where: str | None = None, params: Sequence[Any] = ()) -> pa.Table:
        """Every live row (id, attributes, and the vectors when asked), in storage order; with
        ``where``, only the rows for which that filter is true (``?`` bound to ``params``)."""
        snap = self._current()
        cols = list(columns) if columns is not None else snap.attribute_names()
        if with_vectors:
            cols += [v for v in snap.vector_names if v not in cols]
        self._check_columns(cols)
        if where is None:
            if params:
                raise InvalidArgumentError("to_arrow() got params= without where=")
            return snap.take(snap.live_rows, cols)
        return snap.take(self._executor.match_rows(snap, where, tuple(params)), cols)

    def to_pandas(self, **kwargs: Any) -> Any:
        return self.to_arrow(**kwargs).to_pandas()

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[dict[str, Any]]:
        """The rows with these ids (missing ids are skipped), in the order given."""
        snap = self._current()
        rows = snap.rows_where_in("id", [str(i) for i in ids])
        cols = snap.attribute_names() + (list(snap.vector_names) if with_vectors else [])
        found = {r["id"]: r for r in snap.take(np.sort(rows), cols).to_pylist()}
        return [found[i] for i in map(str, ids) if i in found]

    # -- searching ------------------------------------------------------------------------------
    @property
    def embedder(self) -> Any:
        """The table's embedder (loaded on first use), or None for a table of plain vectors."""
        if self._embedder is None and self.config.embedder is not None:
            from .ingest.embedders import get_embedder

            self._embedder = get_embedder(self.config.embedder)
        return self._embedder

    def _need_embedder(self) -> Any:
        if self.embedder is None:
            raise InvalidArgumentError(
                "this table has no embedder, so it cannot search by text; pass a vector, or "
                "create the table with embedder=\"default\"")
        return self.embedder

    def search(self, query: Any, *, mode: str | None = None, vector: Any = None) -> Query:
        """Start a query: by ``query``, a vector of the table's dimension, or a text.

        A text is searched in one of three modes:

        - ``"vector"``: its embedding (the table's embedder) against the rows' vectors;
        - ``"keyword"``: BM25 over the table's keyword columns (``text`` unless the table was
          created with other ``keyword_columns``); needs no embedder and loads no model;
        - ``"hybrid"``: both rankings fused (``.fusion(...)``; the default is measured in
          docs/benchmarks.md, "Keyword and hybrid retrieval").

        ``mode`` defaults to ``"vector"``. ``vector``: the query's vector, when you embed
        queries yourself (vector and hybrid modes then need no embedder). The text is only
        ever analyzed into terms or embedded, never run as SQL. Every mode takes
        ``.where()``, ``.limit()``, ``.select()``, ``.group_by()``, ``.rerank()`` and
        ``.explain()``; the filter applies before ranking.

        >>> import vecstore, tempfile
        >>> tbl = vecstore.connect(tempfile.mkdtemp()).create_table("t", dim=2)
        >>> _ = tbl.add([{"id": "a", "vector": [1, 0], "text": "red apples"},
        ...              {"id": "b", "vector": [0, 1], "text": "green pears"}])
        >>> [h["id"] for h in tbl.search("apple", mode="keyword").to_list()]
        ['a']
        """
        if (mode is None and vector is None and type(query) is np.ndarray
                and query.dtype == np.float32):  # the common call, checked in two NumPy calls
            return vector_query(_Source(self), query_vector(query, self.config)[None, :])
        text, vec, m = search_inputs(query, mode, vector, self.config)
        if text is None:
            assert vec is not None
            return Query(_Source(self), QuerySpec(vectors=vec[None, :]))
        if vec is None and m is not SearchMode.KEYWORD:
            if self.embedder is None:
                raise InvalidArgumentError(
                    f"{m.value} search embeds the query text, but this table has no embedder: search "
                    f"with mode=\"keyword\" (BM25, no model), pass the query's vector as vector=, or "
                    f"create the table with embedder=\"default\"")
            vec = query_vector(self.embedder.embed_queries([text])[0], self.config)
        return Query(_Source(self), QuerySpec(vectors=None if vec is None else vec[None, :], text=text,
                                             mode=m))

    def search_batch(self, queries: Any, *, threads: int | None = None) -> BatchQuery:
        """Start a query for many vectors (a 2-D array) or texts at once, sharing one filter.
        Texts are embedded in one batch. Runs on ``threads`` threads (default: every core)."""
        if isinstance(queries, str):
            raise InvalidArgumentError("search_batch takes a list of queries; use search() for one")
        if isinstance(queries, (list, tuple)) and queries and all(isinstance(x, str) for x in queries):
            texts = [query_text(x) for x in queries]
            queries = self._need_embedder().embed_queries(texts)
        if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)
                                    or threads < 1):
            raise InvalidArgumentError(f"threads must be a positive integer, got {threads!r}")
        return BatchQuery(_Source(self), QuerySpec(vectors=query_matrix(queries, self.config),
                                                  threads=threads))

    # -- writing --------------------------------------------------------------------------------
    def add(self, rows: Any) -> list[str]:
        """Add rows (a list of dicts, a pyarrow.Table or a pandas.DataFrame). Each row has a
        ``vector`` (or a ``text`` when the table has an embedder), optionally an ``id``
        (assigned when missing) and attributes. Ids must be new: use :meth:`upsert` to replace
        rows. Returns the ids, in row order. The whole batch is validated first; if any row is
        rejected nothing is written. An add that brings the table to 5,000 rows, or grows it by
        half since, then measures the scan's width on its rows (as ``optimize()`` does), recorded in a
        version of its own: seconds at 64,000 rows."""
        return self._write(rows, replace=False)

    def upsert(self, rows: Any) -> list[str]:
        """Add rows, replacing whole any live rows with the same ids (every column: attributes
        missing from the new row become null, and the vector is the new row's). Returns the ids.
        To change some attributes of rows and keep the rest, use :meth:`update`."""
        return self._write(rows, replace=True)

    def _write(self, rows: Any, replace: bool, replace_docs: Sequence[str] = ()) -> list[str]:
        base = self._writable()
        if self.config.embedder is not None or self._embedder is not None:
            from .ingest.rows import embed_missing

            rows = embed_missing(rows, self.embedder, self.config.vectors)
        snap, ids = self._writer.write_rows(
            base, lambda s: prepare_batch(rows, s.manifest.config, s.manifest.schema),
            replace=replace, replace_docs=replace_docs)
        self._set(snap)
        # once writes bring the table to the size where its scan is measured, or grow it by
        # half since: measured and recorded as a version of its own (seconds at 64,000 rows)
        self._calibrate(self._executor.calibration_due)
        return ids

    def _calibrate(self, due: Callable[[Snapshot], bool]) -> bool:
        """Measure the scan's oversample on the newest version when ``due`` says so, and record
        it; whether it was recorded."""
        snap = self._current()
        if not due(snap) or (measured := self._executor.calibrate(snap)) is None:
            return False
        self._set(self._writer.set_calibration(snap, measured))
        return True

    def delete(self, where: str | None = None, *params: Any, ids: Sequence[str] | None = None) -> int:
        """Delete the rows matching ``where`` (with bound ``params``) and/or with these ``ids``.
        Returns how many rows were deleted. Deleted rows are tombstoned until :meth:`compact`."""
        if where is None and ids is None:
            raise InvalidArgumentError("delete() needs where= or ids=; to delete every row use where='true'")
        snap, deleted = self._writer.delete_rows(self._writable(), self._selector(where, params, ids))
        self._set(snap)
        return deleted

    def update(self, values: Mapping[str, Any], where: str | None = None, *params: Any,
               ids: Sequence[str] | None = None) -> int:
        """Set the attributes named in ``values`` on the rows matching ``where`` (with bound
        ``params``) and/or with these ``ids``; every other column, the vector included, stays
        exactly as it was. One commit; returns how many rows were updated.

        >>> import vecstore, tempfile
        >>> tbl = vecstore.connect(tempfile.mkdtemp()).create_table("t", dim=2)
        >>> tbl.add([{"id": "a", "vector": [1, 0], "year": 2020, "tag": "x"}])
        ['a']
        >>> tbl.update({"year": 2021}, "tag = ?", "x"), tbl.get(["a"])
        (1, [{'id': 'a', 'year': 2021, 'tag': 'x'}])

        Values are checked against their columns like a row's (``year="2021"`` is refused from
        an integer column). ``id`` and ``vector`` cannot be set, nor a column the table does not
        have (a misspelt name would otherwise add a column), nor, in a table with an embedder,
        ``text``, which its vector was made from: :meth:`upsert` replaces (and re-embeds) whole
        rows. The rows are rewritten into a new segment (tombstoning the old ones), so an update
        of many rows costs about what adding them did.
        """
        if where is None and ids is None:
            raise InvalidArgumentError("update() needs where= or ids=; to update every row use where='true'")
        base = self._writable()
        if "text" in values and (self.config.embedder is not None or self._embedder is not None):
            raise InvalidArgumentError(
                "update() cannot change 'text' in a table with an embedder: the row's vector was "
                "embedded from it; use upsert() (or add_documents) to replace and re-embed the row")
        check_update_values(values, base.manifest.schema)  # clear errors before taking the lock
        select = self._selector(where, params, ids)

        def rewrite(snap: Snapshot, current: pa.Table, vectors: Any) -> Any:
            new = with_values(current, check_update_values(values, snap.manifest.schema))
            return prepare_batch(new, snap.manifest.config, snap.manifest.schema, vectors=vectors)

        snap, updated = self._writer.update_rows(base, select, rewrite)
        self._set(snap)
        return updated

    def _selector(self, where: str | None, params: Sequence[Any], ids: Sequence[str] | None) -> Any:
        """The rows ``where`` and/or ``ids`` pick in a snapshot (the callback a write runs under
        the lock)."""
        id_list = [ids] if isinstance(ids, str) else None if ids is None else [str(i) for i in ids]

        def select(snap: Snapshot) -> Any:
            parts = []
            if where is not None:
                parts.append(self._executor.match_rows(snap, where, params))
            if id_list is not None:
                parts.append(snap.rows_where_in("id", id_list))
            return np.concatenate(parts) if parts else np.empty(0, np.int64)

        return select

    def compact(self, *, rebuild_index: bool = True) -> bool:
        """Rewrite the live rows into one segment, dropping tombstones and recalibrating the
        codes on all the data. An index over the old segments is rebuilt over the new one
        (``rebuild_index=False`` drops it instead). Older versions stay readable. Returns whether
        anything changed."""
        base = self._writable()
        entry = base.manifest.indexes[0] if base.manifest.indexes else None
        snap = self._writer.compact(base)
        self._set(snap)
        changed = snap.version != base.version
        if changed and entry is not None and rebuild_index and snap.num_rows > 0:
            self.create_index(entry.kind, progress=False, **entry.build_params())
        return changed

    # -- keyword index ----------------------------------------------------------------------------
    @property
    def keyword_config(self) -> KeywordConfig:
        """What keyword search covers: the columns indexed and the analyzer's language."""
        return self._current().manifest.config.keyword

    def set_keyword_columns(self, columns: Sequence[str], *, language: str | None = None) -> bool:
        """Index ``columns`` (string columns, as one field) for keyword search, analyzed for
        ``language`` (default: the current one), replacing the current keyword settings. The
        existing rows are indexed in the same commit that records the new settings, so every
        version answers keyword queries with settings and postings that belong together.
        Returns whether anything changed."""
        base = self._writable()
        if isinstance(columns, str):
            columns = [columns]
        keyword = KeywordConfig(columns=tuple(columns),
                                language=language if language is not None else self.keyword_config.language)
        check_keyword_columns(keyword, base.manifest.schema)
        snap = self._writer.set_keyword(base, keyword)
        self._set(snap)
        return snap.version != base.version

    # -- indexes --------------------------------------------------------------------------------
    def list_indexes(self) -> list[dict[str, Any]]:
        """The table's vector index (at most one), as recorded in its manifest."""
        return [e.to_json() for e in self._current().manifest.indexes]

    def create_index(self, kind: str = "hnsw-int8", *, progress: bool | None = None,
                     threads: int | None = None, sample_queries: Any = None, gpu: bool | None = None,
                     **params: Any) -> dict[str, Any]:
        """Build an ANN index over the table's rows and record it in a new version.

        ``kind`` is one of ``vecstore.index.INDEX_KINDS`` (``"hnsw"``, ``"faiss-hnsw"``, ``"ivf"``, ...);
        ``params`` are that backend's build parameters (e.g. ``m=16, ef_construction=200``). The index
        replaces any previous one. Rows added later are scanned beside it until :meth:`optimize`; deleted
        rows never come back. The build runs without the write lock, so writers are not blocked. If every
        row it was built over is replaced, deleted or compacted away before it is recorded (an index
        covering no live row would be useless), it is built again on the newest version; after
        :data:`INDEX_ATTEMPTS` such races the last build holds the lock. The effort for ``target_recall``
        is measured on held-out rows or ``sample_queries``. ``gpu`` puts the k-means and list assignment
        of IVF kinds on CUDA devices (:meth:`vecstore.index.base.IndexBase.resolve_gpu`)."""
        snap = self._writable()
        if snap.physical_rows == 0:
            raise InvalidArgumentError(f"table {self.name!r} is empty: add rows before building an index")
        if progress is None:
            progress = sys.stderr.isatty()
        options = dict(params, progress=progress, threads=threads, sample_queries=sample_queries, gpu=gpu)
        for _ in range(INDEX_ATTEMPTS - 1):
            entry, index, lease = self._build_index(snap, kind, options)
            try:
                self._set(self._writer.set_index(snap, entry, self._executor.calibrate(snap)))
                break
            except IndexOutdatedError:
                snap = self._writable()
            finally:
                if lease is not None:
                    lease.release()  # recorded (the manifest names it now), or left to cleanup
        else:
            built: list[Any] = []

            def build(locked: Snapshot) -> tuple[IndexEntry, Any]:
                if locked.physical_rows == 0:
                    raise InvalidArgumentError(f"table {self.name!r} is empty: add rows before "
                                               f"building an index")
                entry, index, _ = self._build_index(locked, kind, options)
                built.append(index)  # noqa: B023 (called once, by this iteration's commit)
                return entry, self._executor.calibrate(locked)

            self._set(self._writer.build_index_locked(snap, build))
            entry, index = IndexEntry.from_json(self.list_indexes()[0]), built[0]
        self._executor.remember_index(entry, index)
        return entry.to_json()

    def _build_index(self, snap: Snapshot, kind: str,
                     options: dict[str, Any]) -> tuple[IndexEntry, Any, Lease | None]:
        """Build an index over ``snap``'s rows (``options``: build_index's keywords) and save it in a new
        ``indexes/<uuid>``, leased (storage/leases.py): a cleanup must not take it for a crash's leftover."""
        from .index import build_index, index_class
        from .index.base import VectorBlocks

        # a multi-vector table's index holds every vector of every row: one block of labels per vector column
        blocks = [v for name in snap.vector_names for v in snap.column(name).vectors]
        vectors: Any = blocks[0]
        if len(blocks) > 1:  # a backend that reads blocks a chunk at a time needs no copy of them
            vectors = VectorBlocks(tuple(blocks)) if index_class(kind).builds_from_blocks \
                else np.concatenate(blocks)
        index = build_index(kind, vectors, self.metric, **options)
        rel = f"indexes/{uuid.uuid4().hex}"
        try:  # never the table's own directory: if it is gone, the table was dropped
            make_subdir(self.path, "indexes")
            lease = take_lease(self.path, [rel], "index build")
            make_subdir(self.path, rel)
        except FileNotFoundError:
            self._check_present()
            raise
        index.save(self.path / rel)
        entry = IndexEntry(kind=kind, params=index.params.to_json(), path=rel, count=len(index),
                           segments=tuple((e.data.path, e.rows) for e in snap.manifest.segments),
                           built_at_version=snap.version, vectors=snap.vector_names)
        return entry, index, lease

    def drop_index(self) -> bool:
        """Remove the table's index (a new version without it). Returns whether there was one."""
        base = self._writable()
        snap = self._writer.drop_index(base)
        self._set(snap)
        return snap.version != base.version

    def optimize(self, *, progress: bool | None = None,
                 cleanup_older_than: timedelta | float | None = DEFAULT_RETENTION) -> bool:
        """Compact the table, fold every row into its index (rebuilt with the same kind and
        parameters; an index that is damaged or missing is rebuilt too), then remove versions
        superseded more than ``cleanup_older_than`` ago (7 days; None: remove nothing) and the
        files only they used (:meth:`cleanup`). Returns whether the table's content or index
        changed."""
        if cleanup_older_than is not None:
            retention_seconds(cleanup_older_than, "cleanup_older_than")  # refused before any work
        changed = self._optimize(progress)
        if cleanup_older_than is not None:
            self.cleanup(cleanup_older_than)
        return changed

    def _optimize(self, progress: bool | None) -> bool:
        base = self._writable()
        entry = base.manifest.indexes[0] if base.manifest.indexes else None
        changed = self.compact(rebuild_index=False)
        if entry is not None:
            view = self._executor.index_view(self._current())
            if changed or view is None or view.fresh.size:
                self.create_index(entry.kind, progress=progress, **entry.build_params())
                return True
        return self._calibrate(lambda s: changed or s.manifest.scan is None
                               or s.manifest.scan.rows != s.num_rows) or changed

    # -- old versions ---------------------------------------------------------------------------
    def cleanup(self, older_than: timedelta | float = DEFAULT_RETENTION, *,
                keep_last: int = 1) -> CleanupReport:
        """Remove old versions and the files that only they used; reclaim the space of rows
        that were deleted, replaced or compacted away, and of files a crash left behind.

        Kept: the newest ``keep_last`` versions (at least the newest), every version superseded
        less than ``older_than`` ago (a ``timedelta`` or seconds; default 7 days), and the files
        of versions that a live process has checked out (``checkout``) or is building an index
        for. ``checkout(v)`` of a removed version raises NotFoundError saying so.
        ``older_than=0`` keeps only what those rules and readers in progress need: a query
        that started on a version removed under it runs again on the newest.

        >>> import vecstore, tempfile
        >>> tbl = vecstore.connect(tempfile.mkdtemp()).create_table("t", dim=2)
        >>> for i in range(3):
        ...     _ = tbl.add([{"id": str(i), "vector": [1, i]}])
        >>> r = tbl.cleanup(older_than=0)
        >>> r.versions_removed, tbl.versions(), len(tbl)
        (3, [4], 3)
        """
        seconds = retention_seconds(older_than)
        self._writable()
        report = cleanup_table(self.path, self.name, self._writer.lock_timeout, self._dir_id,
                               seconds, keep_last)
        self._current()
        return report

    # -- documents ------------------------------------------------------------------------------
    def _model_id(self) -> str:
        """The id of the model that embeds for this table, without loading it."""
        if self._embedder is not None:
            return str(self._embedder.model_id)
        if self.config.embedder is None:
            raise InvalidArgumentError(
                "add_documents needs a table with an embedder: db.create_table(name, embedder=\"default\")")
        return self.config.embedder

    def add_documents(self, docs: Any, *, chunking: str | None = None, chunker: str = "tokens",
                      chunk_tokens: int = 128, overlap: int = 16, window: Any = None,
                      progress: bool | None = None, prune: bool = False,
                      keep: Collection[str] = (), commit_every: float = 5.0) -> IngestReport:
        """Split whole documents into chunks, embed each chunk, and store one row per chunk;
        incrementally: a document whose text, attributes and chunking options are those stored
        is skipped (when all are, the model is not even loaded).

        ``docs`` are dicts (``id``, ``text``, attributes), a pyarrow.Table or a DataFrame. Each
        chunk row has ``id`` (``"<doc_id>#<n>"``), ``doc_id``, ``chunk_index``, ``char_start``
        and ``char_end`` (its span in the document's text), ``text``, ``context``, the
        document's attributes, ``content_hash`` and ``ingested_at``. A changed document is
        replaced whole, in the commit that adds its new chunks. ``chunking`` is ``"naive"``,
        ``"context"``, ``"late"``, a mean such as ``"late+naive"``, or several vectors per chunk
        such as ``"naive|late"`` (see :mod:`vecstore.ingest.situated`); None: the default,
        ``"naive|late"`` (each chunk keeps its own and its late-chunked vector, a hit scores the
        better; ``"naive"`` for an embedder without token embeddings), chosen on QMSum meetings
        and COVID-QA papers (docs/benchmarks.md). A mode with several vectors needs a table with
        those vector columns (``vector``, ``vector_late``, ...): an empty table is given them; a
        table holding rows of other columns is refused. ``window`` chooses the text around a
        chunk in those modes: :class:`~vecstore.ingest.situated.WindowOptions` or a dict of its
        fields.

        Finished documents are committed at least every ``commit_every`` seconds, so a crash or
        an interrupt keeps them and the same call run again resumes; Ctrl-C commits what is
        finished and raises :class:`~vecstore.errors.IngestInterrupted` (its ``report`` says
        what was committed). ``prune=True`` then deletes the table's documents that are not in
        ``docs`` (a sync), except those whose id or ``source`` is in ``keep``. ``progress`` shows
        the model loading and a bar over chunks (rate, ETA) on stderr; None: on a terminal.
        """
        from .documents import ingest

        self._writable()
        self._model_id()  # refuses a table without an embedder before anything else
        mode = self._documents_chunking(chunking)
        return ingest(self, docs, chunking=mode, chunker=chunker, chunk_tokens=chunk_tokens,
                      overlap=overlap, window=window, progress=progress, prune=prune, keep=keep,
                      commit_every=commit_every)

    def documents(self) -> pa.Table:
        """One row per document in the table: ``doc_id``, ``source``, ``chunks`` (live chunk
        rows), ``content_hash`` and ``ingested_at`` (UTC), sorted by ``doc_id``. Rows added
        without a document (``add``) are not listed. :meth:`list_documents` gives dicts."""
        from .documents import documents_table

        return documents_table(self._current())

    def list_documents(self) -> list[dict[str, Any]]:
        """:meth:`documents` as a list of dicts."""
        return self.documents().to_pylist()

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete every chunk of these documents (by ``doc_id``) in one commit. Returns how many
        of them the table held."""
        from .documents import delete_documents

        return delete_documents(self, doc_ids)

    def _documents_chunking(self, chunking: str | None) -> str:
        """The chunking mode documents are added with (None: the default for the table's
        embedder), after giving an empty table the vector columns it fills (refused when the
        table holds rows of other vector columns). Shared by add_documents and vecstore.ray."""
        from .ingest.pipeline import DEFAULT_CHUNKING, default_chunking
        from .ingest.situated import vector_columns

        if self._embedder is None and self.config.embedder is None:
            raise InvalidArgumentError(
                "adding documents needs a table with an embedder: "
                "db.create_table(name, embedder=\"default\")")
        if chunking is not None:
            mode = chunking
        elif self._embedder is not None:
            mode = default_chunking(self._embedder)
        else:  # a model the config names is a sentence-transformers model: it has token
            mode = DEFAULT_CHUNKING  # embeddings, and is not loaded just to find that out
        needed = vector_columns(mode)
        base = self._writable()
        if base.vector_names != needed:
            if chunking is None and base.num_rows:
                raise InvalidArgumentError(
                    f"the default chunking {mode!r} stores the vector columns {list(needed)}, but "
                    f"table {self.name!r} holds rows with {list(base.vector_names)} (made with "
                    f"another chunking: the default was 'context' before it became 'naive|late'); "
                    f"pass chunking= with the mode its rows were made with")
            self._set_vectors(base, needed, mode)
        return mode

    def _set_vectors(self, base: Snapshot, needed: tuple[str, ...], mode: str) -> None:
        """Give an empty table the vector columns chunking ``mode`` fills."""
        if base.num_rows:
            raise InvalidArgumentError(
                f"chunking {mode!r} stores the vector columns {list(needed)}, but table "
                f"{self.name!r} holds rows with {list(base.vector_names)}; use a chunking that "
                f"fills those, or a new table")
        from dataclasses import replace

        config = replace(base.manifest.config, vectors=needed, combine=None)
        self._set(self._writer.set_vectors(base, config))
