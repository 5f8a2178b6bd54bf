"""A table: rows with an id, a vector and attributes, stored as versioned Arrow segments."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from .config import DEFAULT_OVERSAMPLE, Metric, TableConfig
from .errors import (
    ConcurrencyError,
    CorruptStoreError,
    DuplicateIdError,
    InvalidArgumentError,
    NotFoundError,
    ReadOnlyError,
)
from .query.builder import BatchQuery, Query
from .query.filters import ROW_COLUMN, FilterEngine
from .query.planner import SearchRequest, batch_binary_candidates, search
from .query.results import Hits
from .storage.batch import Batch, prepare_batch
from .storage.files import make_subdir, open_in_table
from .storage.locks import (
    DEFAULT_TIMEOUT_S,
    directory_identity,
    dropped_error,
    high_water_mark,
    write_lock,
)
from .storage.manifest import (
    Manifest,
    SegmentEntry,
    latest_version,
    list_versions,
    read_manifest,
    write_manifest,
)
from .storage.segments import build_segment, write_deletions
from .storage.snapshot import Snapshot

if TYPE_CHECKING:
    from .db import Database

I64 = npt.NDArray[np.int64]


def check_version(version: object) -> int:
    """A table version number as given by a user: a positive integer (not a bool or a string)."""
    if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)) \
            or version < 1:
        raise InvalidArgumentError(
            f"version must be a positive integer (one of table.versions()), got {version!r}")
    return int(version)


def describe_versions(versions: Sequence[int]) -> str:
    if not versions:
        return "none"
    if list(versions) == list(range(versions[0], versions[-1] + 1)):
        return f"{versions[0]} to {versions[-1]}"
    return ", ".join(map(str, versions))


def check_not_rolled_back(table_dir: Path, newest: int, mark: int) -> None:
    """Refuse a table whose newest manifest is older than its high-water mark: a version that
    was committed has had its manifest deleted, and reading (or writing on top of) the older
    one would silently roll the table back and reuse that version number."""
    if mark > newest:
        raise CorruptStoreError(
            f"table {table_dir.name!r} committed version {mark} (the high-water mark in "
            f"{table_dir / '_lock'}), but its newest manifest on disk is version {newest}: "
            f"{table_dir / '_versions'}/{mark:020d}.json was deleted. Restore it from a backup; "
            f"older versions stay readable read-only with open_table(name, version=...)"
        )


def embed_missing(rows: Any, embedder: Any, dim: int) -> Any:
    """Rows without a ``vector`` get one from ``embedder``, made from their ``text``."""
    if type(rows).__name__ == "DataFrame" and hasattr(rows, "to_dict"):
        rows = pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, pa.RecordBatch):
        rows = pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        if "vector" in rows.column_names:
            return rows
        if "text" not in rows.column_names:
            raise InvalidArgumentError("rows need a 'vector' or a 'text' column to embed")
        texts = rows.column("text").to_pylist()
        Table._check_texts(texts)
        vectors = embedder.embed_documents(texts)
        col = pa.FixedSizeListArray.from_arrays(
            pa.array(np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1)), dim)
        return rows.append_column("vector", col)
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, (list, tuple)):
        return rows  # prepare_batch reports the bad type
    missing = [i for i, r in enumerate(rows) if isinstance(r, dict) and r.get("vector") is None]
    if not missing:
        return rows
    texts = [rows[i].get("text") for i in missing]
    Table._check_texts(texts, missing)
    vectors = embedder.embed_documents(texts)
    out = list(rows)
    for i, v in zip(missing, vectors, strict=True):
        out[i] = {**rows[i], "vector": v}
    return out


@dataclass(frozen=True)
class IngestReport:
    """What :meth:`Table.add_documents` did."""

    documents: int
    chunks: int
    skipped: tuple[tuple[str, str], ...]  # (doc_id, reason) of documents with nothing to embed
    seconds: float


class Table:
    """A table of a :class:`~vecstore.Database`. Get one with ``db.create_table`` or
    ``db.open_table``; it reads the newest committed version at every operation (or a fixed
    one, after ``checkout``)."""

    def __init__(self, db: Database, name: str, path: Path, version: int | None = None,
                 lock_timeout: float = DEFAULT_TIMEOUT_S, embedder: Any = None) -> None:
        self._db = db
        self.name = name
        self.path = path
        self._pinned = version is not None
        self._lock_timeout = lock_timeout
        self._guard = threading.Lock()
        # the directory this object reads and writes: a table dropped and created again under
        # the same name is another directory, and this object must not touch it
        self._dir_id = directory_identity(path)
        self._path_str = str(path)
        if version is None:
            mark = high_water_mark(path)  # before listing: see high_water_mark
            v = latest_version(path)
            if v == 0 or (mark > v and directory_identity(path) != self._dir_id):
                raise dropped_error(path)  # (the mark may be the dropped table's)
            check_not_rolled_back(path, v, mark)
            manifest = read_manifest(path, v)
        else:
            v = check_version(version)
            try:
                manifest = read_manifest(path, v)
            except NotFoundError:
                raise NotFoundError(
                    f"table {name!r} has no version {v} (its versions on disk: "
                    f"{describe_versions(list_versions(path))})") from None
        self._snap = Snapshot(path, manifest)
        self._filters: tuple[int, FilterEngine] | None = None
        self._embedder: Any = embedder
        self._index_cache: dict[str, Any] = {}  # index path -> loaded index
        self._views: tuple[int, Any] | None = None  # (version, IndexView) for the current index

    def __repr__(self) -> str:
        m = self._snap.manifest
        return (f"Table({self.name!r}, rows={m.rows}, dim={m.config.dim}, "
                f"metric={m.config.metric.value!r}, version={m.version})")

    # -- reading the current version ---------------------------------------------------------
    def _check_present(self) -> None:
        """Raise NotFoundError if the table was dropped (its directory is gone or replaced)."""
        try:
            st = os.stat(self._path_str, follow_symlinks=False)
        except FileNotFoundError:
            raise dropped_error(self.path) from None
        if (st.st_dev, st.st_ino) != self._dir_id:
            raise dropped_error(self.path)

    def _current(self) -> Snapshot:
        self._check_present()
        snap = self._snap
        if self._pinned:
            return snap
        v = latest_version(self.path, known=snap.version)
        if v == snap.version:
            return snap
        with self._guard:
            if self._snap.version < v:
                self._snap = Snapshot(self.path, read_manifest(self.path, v),
                                      reuse=self._snap.segment_keys())
            return self._snap

    def _filter_engine(self, snap: Snapshot) -> FilterEngine:
        with self._guard:
            cached = self._filters
            if cached is not None and cached[0] == snap.version:
                return cached[1]
            engine = FilterEngine(snap.attribute_view(ROW_COLUMN))
            if cached is not None:
                cached[1].close()
            self._filters = (snap.version, engine)
            return engine

    def _match_rows(self, snap: Snapshot, where: str, params: Sequence[Any]) -> I64:
        rows = self._filter_engine(snap).rows(where, params)
        return rows[snap.live_mask[rows]] if snap.has_deletions else rows

    def _check_filter(self, where: str) -> None:
        self._filter_engine(self._current()).check(where)

    def _check_columns(self, columns: Sequence[str]) -> None:
        known = set(self._current().attribute_names()) | {"vector"}
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
                          pa.field("vector", pa.list_(pa.float32(), snap.manifest.config.dim))])

    def __len__(self) -> int:
        return self._current().num_rows

    def count(self, where: str | None = None, *params: Any) -> int:
        """Number of rows, or of rows for which ``where`` is true."""
        snap = self._current()
        if where is None:
            return snap.num_rows
        return int(self._match_rows(snap, where, params).size)

    def versions(self) -> list[int]:
        """Every version of the table still on disk, oldest first."""
        self._check_present()
        return list_versions(self.path)

    def checkout(self, version: int) -> Table:
        """A read-only view of the table as it was at ``version`` (a positive integer, one of
        :meth:`versions`)."""
        version = check_version(version)
        self._check_present()
        return Table(self._db, self.name, self.path, version=version)

    def to_arrow(self, columns: Sequence[str] | None = None, *, with_vectors: bool = False) -> pa.Table:
        """Every live row (id, attributes, and the vectors when asked), in storage order."""
        snap = self._current()
        cols = list(columns) if columns is not None else snap.attribute_names()
        if with_vectors and "vector" not in cols:
            cols.append("vector")
        self._check_columns(cols)
        return snap.take(snap.live_rows, cols)

    def to_pandas(self, **kwargs: Any) -> Any:
        return self.to_arrow(**kwargs).to_pandas()

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[dict[str, Any]]:
        """The rows with these ids (missing ids are skipped), in the order given."""
        snap = self._current()
        rows = self._rows_of_ids(snap, [str(i) for i in ids])
        cols = snap.attribute_names() + (["vector"] if with_vectors else [])
        found = {r["id"]: r for r in snap.take(np.sort(rows), cols).to_pylist()}
        return [found[i] for i in map(str, ids) if i in found]

    # -- searching --------------------------------------------------------------------------
    def search(self, query: Any) -> Query:
        """Start a query for the rows nearest to ``query`` (a vector of the table's dimension)."""
        vec = self._query_vector(query)
        return Query(self, vec)

    @property
    def embedder(self) -> Any:
        """The table's embedder (loaded on first use), or None for a table of plain vectors."""
        if self._embedder is None and self.config.embedder is not None:
            from .ingest.embedders import get_embedder

            self._embedder = get_embedder(self.config.embedder)
        return self._embedder

    def _query_vector(self, query: Any) -> npt.NDArray[np.float32]:
        if isinstance(query, str):
            if self.embedder is None:
                raise InvalidArgumentError(
                    "this table has no embedder, so it cannot search by text; pass a vector, or "
                    "create the table with embedder=\"default\""
                )
            if not query.strip():
                raise InvalidArgumentError("the query text is empty")
            query = self.embedder.embed_queries([query])[0]
        try:
            vec = np.asarray(query, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"the query must be a vector of numbers: {exc}") from None
        if vec.ndim == 2 and vec.shape[0] == 1:
            vec = vec[0]
        if vec.shape != (self.dim,):
            raise InvalidArgumentError(f"the query vector has shape {vec.shape}, expected ({self.dim},)")
        if not np.isfinite(vec).all():
            raise InvalidArgumentError("the query vector contains NaN or infinity")
        if self.metric is Metric.COSINE and not vec.any():
            raise InvalidArgumentError("the query vector is all zeros; cosine similarity is undefined for it")
        return np.ascontiguousarray(vec)

    def search_batch(self, queries: Any, *, threads: int | None = None) -> BatchQuery:
        """Start a query for many vectors (a 2-D array) or texts at once, sharing one filter.
        Texts are embedded in one batch. Runs on ``threads`` threads (default: every core)."""
        if isinstance(queries, str):
            raise InvalidArgumentError("search_batch takes a list of queries; use search() for one")
        if isinstance(queries, (list, tuple)) and queries and all(isinstance(x, str) for x in queries):
            if self.embedder is None:
                raise InvalidArgumentError("this table has no embedder, so it cannot search by text")
            if any(not x.strip() for x in queries):
                raise InvalidArgumentError("a query text is empty")
            queries = self.embedder.embed_queries(list(queries))
        try:
            mat = np.asarray(queries, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"queries must be a 2-D array of numbers: {exc}") from None
        if mat.ndim != 2 or mat.shape[1] != self.dim:
            raise InvalidArgumentError(f"queries have shape {mat.shape}, expected (n, {self.dim})")
        vectors = [self._query_vector(v) for v in mat]
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InvalidArgumentError(f"threads must be a positive integer, got {threads!r}")
        return BatchQuery(self, vectors, _threads=threads)

    def _prepare(self, q: Any) -> tuple[Snapshot, I64 | None, float]:
        snap = self._current()
        rows = None
        filter_seconds = 0.0
        if q._where is not None:
            t = time.perf_counter()
            rows = self._match_rows(snap, q._where, q._params)
            filter_seconds = time.perf_counter() - t
        return snap, rows, filter_seconds

    def _run(self, q: Query) -> Hits:
        snap, rows, filter_seconds = self._prepare(q)
        return self._search_one(snap, q, q._vector, rows, filter_seconds)

    def _run_batch(self, q: BatchQuery) -> list[Hits]:
        snap, rows, filter_seconds = self._prepare(q)
        self._index_view(snap)  # load once, before the threads start
        if not q._vector:
            return []
        threads = q._threads or min(len(q._vector), os.cpu_count() or 1)
        cands: list[Any] = [None] * len(q._vector)
        prefetched: list[Any] = [None] * len(q._vector)
        seconds = 0.0
        view = self._index_view(snap)
        if view is not None:
            # the first index search of every query in one call: the index spreads it over
            # its threads (hnswlib, FAISS OpenMP) without the per-query Python in between
            from .query.indexed import search_indexed_batch

            prefetched = search_indexed_batch(
                snap, view, [self._request(q, v, rows, filter_seconds) for v in q._vector])
        elif rows is None and not q._exact:
            t = time.perf_counter()
            batch = batch_binary_candidates(snap, q._vector, q._k,
                                                q._oversample or DEFAULT_OVERSAMPLE)
            if batch is not None:
                cands, seconds = batch, (time.perf_counter() - t) / len(q._vector)

        def one(i: int) -> Hits:
            return self._search_one(snap, q, q._vector[i], rows, filter_seconds, cands[i], seconds,
                                    prefetched[i])

        if threads == 1 or len(q._vector) == 1:
            return [one(i) for i in range(len(q._vector))]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return list(pool.map(one, range(len(q._vector))))

    @staticmethod
    def _request(q: Any, vector: npt.NDArray[np.float32], rows: I64 | None, filter_seconds: float,
                 candidates: I64 | None = None, binary_seconds: float = 0.0) -> SearchRequest:
        return SearchRequest(query=vector, k=q._k, oversample=q._oversample or DEFAULT_OVERSAMPLE,
                             oversample_set=q._oversample is not None, exact=q._exact,
                             rows=rows, filter=q._where, filter_seconds=filter_seconds,
                             binary_candidates=candidates, binary_seconds=binary_seconds)

    def _search_one(self, snap: Snapshot, q: Any, vector: npt.NDArray[np.float32], rows: I64 | None,
                    filter_seconds: float, candidates: I64 | None = None,
                    binary_seconds: float = 0.0, prefetched: Any = None) -> Hits:
        req = self._request(q, vector, rows, filter_seconds, candidates, binary_seconds)
        view = self._index_view(snap)
        if view is not None:
            from .query.indexed import search_indexed

            found, scores, plan = search_indexed(snap, view, req, prefetched)
        else:
            found, scores, plan = search(snap, req)
        columns = ["id", *(q._columns if q._columns is not None else snap.manifest.schema.names)]
        columns = list(dict.fromkeys(columns))
        table = snap.take(found, columns)
        table = table.add_column(1, "score", pa.array(scores, type=pa.float32()))
        return Hits(table, plan)

    # -- indexes ----------------------------------------------------------------------------
    def list_indexes(self) -> list[dict[str, Any]]:
        """The table's vector index (at most one), as recorded in its manifest."""
        return [dict(e) for e in self._current().manifest.indexes]

    def _load_index(self, entry: dict[str, Any]) -> Any:
        path = str(entry["path"])  # indexes/<hex>: its shape was checked with the manifest
        index = self._index_cache.get(path)
        if index is None:
            from .index import INDEX_KINDS, load_index

            if entry["kind"] not in INDEX_KINDS:
                raise CorruptStoreError(
                    f"table {self.name!r} version {self._snap.version} names an index of unknown "
                    f"kind {entry['kind']!r}; rebuild it with create_index")
            try:  # no link on the way to the index directory (load_index checks the rest)
                os.close(open_in_table(self.path, path, directory=True))
            except FileNotFoundError:
                raise CorruptStoreError(f"index directory {self.path / path} is missing") from None
            config = self._snap.manifest.config
            # the sidecar has no checksum of its own: hold it to what the manifest says
            expect = {"dim": config.dim, "metric": config.metric.value, "count": entry["count"]}
            index = load_index(entry["kind"], self.path / path, entry["params"], expect=expect)
            self._index_cache[path] = index
        return index

    def _index_view(self, snap: Snapshot) -> Any:
        if not snap.manifest.indexes:
            return None
        cached = self._views
        if cached is not None and cached[0] == snap.version:
            return cached[1]
        from .query.indexed import IndexView

        entry = snap.manifest.indexes[0]
        view = IndexView.build(snap, self._load_index(entry), entry)
        self._views = (snap.version, view)
        return view

    def create_index(self, kind: str = "hnsw", *, progress: bool | None = None,
                     threads: int | None = None, **params: Any) -> dict[str, Any]:
        """Build an ANN index over the table's rows and record it in a new version.

        ``kind`` is one of ``vecstore.index.INDEX_KINDS`` (``"hnsw"``, ``"faiss-hnsw"``, ``"ivf"``,
        ``"ivf-pq"``, ``"binary-hnsw"``, ...); ``params`` are that backend's build parameters
        (e.g. ``m=16, ef_construction=200``). The index replaces any previous one. Rows added
        later are scanned beside the index until :meth:`optimize`; deleted rows never come back.
        The build runs without holding the write lock, so writers are not blocked meanwhile.
        """
        from .index import build_index

        if self._pinned:
            raise ReadOnlyError(f"table {self.name!r} is checked out at version {self._snap.version}")
        snap = self._current()
        if snap.physical_rows == 0:
            raise InvalidArgumentError(f"table {self.name!r} is empty: add rows before building an index")
        if progress is None:
            import sys

            progress = sys.stderr.isatty()
        vectors = np.concatenate(snap.vectors) if len(snap.vectors) > 1 else snap.vectors[0]
        index = build_index(kind, vectors, self.metric, progress=progress, threads=threads, **params)
        rel = f"indexes/{uuid.uuid4().hex}"
        try:  # never the table's own directory: if it is gone, the table was dropped
            make_subdir(self.path, "indexes")
            make_subdir(self.path, rel)
        except FileNotFoundError:
            self._check_present()
            raise
        index.save(self.path / rel)
        entry: dict[str, Any] = {
            "kind": kind, "params": index.params.to_json(), "path": rel, "count": len(index),
            "segments": [[e.data.path, e.rows] for e in snap.manifest.segments],
            "built_at_version": snap.version,
        }

        def change(latest: Snapshot) -> Manifest:
            present = {e.data.path for e in latest.manifest.segments}
            if not any(path in present for path, _ in entry["segments"]):
                raise ConcurrencyError(
                    f"table {self.name!r} was compacted while the index was being built; "
                    f"run create_index again")
            return latest.manifest.next("create_index", indexes=(entry,))

        self._commit("create_index", change)
        self._index_cache[rel] = index
        return dict(entry)

    def drop_index(self) -> bool:
        """Remove the table's index (a new version without it). Returns whether there was one."""
        def change(snap: Snapshot) -> Manifest | None:
            if not snap.manifest.indexes:
                return None
            return snap.manifest.next("drop_index", indexes=())

        before = self._snap.version
        return self._commit("drop_index", change).version != before

    def optimize(self, *, progress: bool | None = None) -> bool:
        """Compact the table and fold every row into its index (rebuilt with the same kind and
        parameters). Returns whether anything changed."""
        entry = self._current().manifest.indexes[0] if self._current().manifest.indexes else None
        changed = self.compact(rebuild_index=False)
        if entry is not None:
            view = self._index_view(self._current())
            if changed or view is None or view.fresh.size:
                self.create_index(entry["kind"], progress=progress,
                                  **{k: v for k, v in entry["params"].items() if v is not None})
                changed = True
        return changed

    # -- writing ----------------------------------------------------------------------------
    def _commit(self, operation: str, change: Callable[[Snapshot], Manifest | None]) -> Snapshot:
        """Build the next version with ``change`` from the newest one and publish it, under the
        table's write lock. The lock is taken on this object's own table directory
        (NotFoundError if it was dropped); the high-water mark refuses to build on a table
        whose newest manifest was deleted (its version number would be reused)."""
        if self._pinned:
            raise ReadOnlyError(f"table {self.name!r} is checked out at version "
                                f"{self._snap.version}; open the table again to write")
        with write_lock(self.path, self._lock_timeout, identity=self._dir_id) as lock:
            snap = self._current()
            check_not_rolled_back(self.path, snap.version, lock.high_water_mark())
            manifest = change(snap)
            if manifest is None:
                return snap
            write_manifest(self.path, manifest)
            lock.record(manifest.version)
            new = Snapshot(self.path, manifest, reuse=snap.segment_keys())
            with self._guard:
                self._snap = new
            return new

    def _new_segment(self, batch: Batch, previous_center: npt.NDArray[np.float32] | None) -> SegmentEntry:
        return build_segment(self.path, self.config, batch, previous_center)

    def _rows_of_ids(self, snap: Snapshot, ids: Sequence[str]) -> I64:
        """Global live rows whose id is in ``ids``."""
        if not ids or not snap.segments:
            return np.empty(0, dtype=np.int64)
        value_set = pa.array(list(ids), type=pa.string())
        found = []
        for s, seg in enumerate(snap.segments):
            hit = pc.is_in(seg.table.column("id"), value_set=value_set)
            local = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
            if seg.deleted.size and local.size:
                local = local[seg.live_mask()[local]]
            found.append(local.astype(np.int64) + snap.bases[s])
        return np.concatenate(found)

    def _rows_of_docs(self, snap: Snapshot, doc_ids: Sequence[str]) -> I64:
        """Global live rows whose ``doc_id`` is in ``doc_ids`` (chunks of those documents)."""
        if "doc_id" not in snap.manifest.schema.names or not snap.segments:
            return np.empty(0, dtype=np.int64)
        value_set = pa.array(list(doc_ids), type=pa.string())
        found = []
        for s, seg in enumerate(snap.segments):
            if "doc_id" not in seg.table.column_names:
                continue
            hit = pc.is_in(seg.table.column("doc_id"), value_set=value_set)
            local = np.flatnonzero(hit.to_numpy(zero_copy_only=False))
            if seg.deleted.size and local.size:
                local = local[seg.live_mask()[local]]
            found.append(local.astype(np.int64) + snap.bases[s])
        return np.concatenate(found) if found else np.empty(0, dtype=np.int64)

    def add_documents(self, docs: Any, *, chunking: str = "context", chunker: str = "tokens",
                      chunk_tokens: int = 128, overlap: int = 16, window: Any = None,
                      progress: bool | None = None) -> IngestReport:
        """Split whole documents into chunks, embed each chunk, and store one row per chunk.

        ``docs`` are dicts (``id``, ``text``, attributes), a pyarrow.Table or a DataFrame. Each
        chunk row has ``id`` (``"<doc_id>#<n>"``), ``doc_id``, ``chunk_index``, ``char_start``
        and ``char_end`` (its span in the document's text), ``text``, ``context`` and the
        document's attributes. A document already in the table is replaced whole, in the same
        commit. ``chunking`` is ``"context"`` (the default: it measured best on QMSum at 128-token
        chunks, see docs/benchmarks.md), ``"late"``, ``"naive"`` or a combination such as
        ``"late+naive"`` (see :mod:`vecstore.ingest.situated`).
        """
        if self.embedder is None:
            raise InvalidArgumentError(
                "add_documents needs a table with an embedder: db.create_table(name, embedder=\"default\")")
        from .ingest.pipeline import chunk_documents

        t = time.perf_counter()
        out = chunk_documents(docs, self.embedder, chunking=chunking, chunker=chunker,
                              chunk_tokens=chunk_tokens, overlap=overlap, window=window,
                              progress=progress)
        doc_ids = sorted(set(out.table.column("doc_id").to_pylist())) if out.table.num_rows else []
        if out.table.num_rows:
            self._write(out.table, replace_existing=True, replace_docs=doc_ids)
        return IngestReport(documents=out.n_documents, chunks=out.n_chunks,
                            skipped=tuple((s.doc_id, s.reason) for s in out.skipped),
                            seconds=time.perf_counter() - t)

    def _tombstone(self, snap: Snapshot, rows: I64) -> tuple[SegmentEntry, ...]:
        entries = list(snap.manifest.segments)
        for s, local in snap.split(np.unique(rows)):
            seg = snap.segments[s]
            deleted = np.union1d(seg.deleted, local).astype(np.int64)
            entry = entries[s]
            if deleted.size == entry.rows:
                entries[s] = None  # type: ignore[call-overload]
                continue
            ref = write_deletions(self.path, deleted)
            entries[s] = SegmentEntry(data=entry.data, rows=entry.rows, quantizer=entry.quantizer,
                                      deletions=ref, deleted=int(deleted.size))
        return tuple(e for e in entries if e is not None)

    def add(self, rows: Any) -> list[str]:
        """Add rows (a list of dicts, a pyarrow.Table or a pandas.DataFrame). Each row has a
        ``vector``, optionally an ``id`` (assigned when missing) and attributes. Ids must be
        new: use :meth:`upsert` to replace rows. Returns the ids, in row order. The whole batch
        is validated first; if any row is rejected nothing is written."""
        return self._write(rows, replace_existing=False)

    def upsert(self, rows: Any) -> list[str]:
        """Add rows, replacing any live rows with the same ids. Returns the ids."""
        return self._write(rows, replace_existing=True)

    def _embed_missing(self, rows: Any) -> Any:
        """Rows without a ``vector`` get one from the table's embedder, made from ``text``."""
        if self.config.embedder is None and self._embedder is None:
            return rows
        return embed_missing(rows, self.embedder, self.dim)

    @staticmethod
    def _check_texts(texts: Sequence[Any], positions: Sequence[int] | None = None) -> None:
        for j, t in enumerate(texts):
            i = positions[j] if positions is not None else j
            if not isinstance(t, str):
                raise InvalidArgumentError(
                    f"row {i}: no 'vector' and no 'text' string to embed (text is {type(t).__name__})")
            if not t.strip():
                raise InvalidArgumentError(f"row {i}: field 'text' is empty; there is nothing to embed")

    def _write(self, rows: Any, replace_existing: bool,
               vectors: npt.NDArray[np.float32] | None = None,
               replace_docs: Sequence[str] = ()) -> list[str]:
        out: list[str] = []
        if vectors is None:
            rows = self._embed_missing(rows)

        def change(snap: Snapshot) -> Manifest | None:
            batch = prepare_batch(rows, snap.manifest.config, snap.manifest.schema, vectors)
            ids = batch.ids.to_pylist()
            out.extend(ids)
            if len(batch) == 0:
                return None
            existing = self._rows_of_ids(snap, ids)
            if replace_docs:
                existing = np.union1d(existing, self._rows_of_docs(snap, replace_docs))
            segments = snap.manifest.segments
            if existing.size:
                if not replace_existing:
                    dup = snap.take(existing[:1], ["id"]).column("id")[0].as_py()
                    raise DuplicateIdError(
                        f"id {dup!r} is already in table {self.name!r} ({existing.size} of the "
                        f"batch's ids are); use upsert() to replace rows"
                    )
                segments = self._tombstone(snap, existing)
            previous = snap.segments[-1].quantizer.center if snap.segments else None
            entry = self._new_segment(batch, previous)
            return snap.manifest.next("upsert" if replace_existing else "add",
                                      segments=(*segments, entry), schema=batch.schema)

        self._commit("add", change)
        return out

    def delete(self, where: str | None = None, *params: Any, ids: Sequence[str] | None = None) -> int:
        """Delete the rows matching ``where`` (with bound ``params``) and/or with these ``ids``.
        Returns how many rows were deleted. Deleted rows are tombstoned until :meth:`compact`."""
        if where is None and ids is None:
            raise InvalidArgumentError("delete() needs where= or ids=; to delete every row use where='true'")
        if isinstance(ids, str):
            ids = [ids]
        deleted = 0

        def change(snap: Snapshot) -> Manifest | None:
            nonlocal deleted
            rows = []
            if where is not None:
                rows.append(self._match_rows(snap, where, params))
            if ids is not None:
                rows.append(self._rows_of_ids(snap, [str(i) for i in ids]))
            target = np.unique(np.concatenate(rows)) if rows else np.empty(0, np.int64)
            deleted = int(target.size)
            if deleted == 0:
                return None
            return snap.manifest.next("delete", segments=self._tombstone(snap, target))

        self._commit("delete", change)
        return deleted

    def compact(self, *, rebuild_index: bool = True) -> bool:
        """Rewrite the live rows into one segment, dropping tombstones and recalibrating the
        codes on all the data. An index over the old segments is rebuilt over the new one
        (``rebuild_index=False`` drops it instead). Older versions stay readable. Returns whether
        anything changed."""
        entry = self._current().manifest.indexes[0] if self._current().manifest.indexes else None

        def change(snap: Snapshot) -> Manifest | None:
            if len(snap.segments) <= 1 and not snap.has_deletions:
                return None
            if snap.num_rows == 0:
                return snap.manifest.next("compact", segments=(), indexes=())
            live = snap.live_rows
            attrs = snap.take(live, snap.attribute_names())
            vectors = snap.gather_vectors(live)
            batch = Batch(ids=attrs.column("id").combine_chunks(), attributes=attrs.drop(["id"]),
                          vectors=vectors, schema=snap.manifest.schema)
            new = self._new_segment(batch, None)  # calibrated afresh on all the data
            return snap.manifest.next("compact", segments=(new,), indexes=())

        before = self._snap.version
        changed = self._commit("compact", change).version != before
        if changed and entry is not None and rebuild_index and len(self) > 0:
            self.create_index(entry["kind"], progress=False,
                              **{k: v for k, v in entry["params"].items() if v is not None})
        return changed
