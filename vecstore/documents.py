"""Documents in a table: the chunk rows of one document handled as a unit, and ingestion that
keeps a table in sync with its sources.

Each chunk row that :meth:`Table.add_documents <vecstore.Table.add_documents>` writes carries
its document's ``doc_id``, ``content_hash`` (:func:`~vecstore.ingest.pipeline.document_hash`:
the text, the attributes, the model and the chunking options) and ``ingested_at`` (when it was
committed, UTC). An ingest:

1. validates the documents and hashes them, without loading the model;
2. skips every document whose stored hash is the same (nothing would change); when none is
   left the model is never loaded;
3. cuts the others into chunks (the model's tokenizer), then embeds them in groups of whole
   documents, committing the finished ones at least every ``commit_every`` seconds, each
   commit replacing those documents' old chunks. An interrupt (Ctrl-C, ``KeyboardInterrupt``)
   commits what is finished and raises :class:`~vecstore.errors.IngestInterrupted`; after a
   crash the committed documents stay. Either way the same call run again embeds only what is
   missing;
4. with ``prune``, deletes the documents of the table that were not given (a sync), except
   those named in ``keep`` (e.g. files that could not be read this time).

This module coordinates the table and the ingest layer, as ``table.py`` does; it is imported
by the table, and by the two ingest commands (``vecstore ingest`` and :mod:`vecstore.ray`) for
:func:`open_or_create_table`.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import IngestInterrupted, InvalidArgumentError
from .storage.snapshot import Snapshot

if TYPE_CHECKING:
    from .ingest.situated import WindowOptions
    from .table import Table

GROUP_CHUNKS = 512
"""About how many chunks are embedded between two chances to commit (documents are never split
between groups). The inputs of a group are embedded longest first, so the larger the group the
less padding: 200 SciFact abstracts in `context` mode pad to 8.7% more tokens than one sorted
encode of all inputs in groups of 128 chunks, 3.7% in groups of 256 (bench/sync.py). A
remainder under half a group joins the last group (ChunkPlan.embed). An interrupt loses at most
the group being embedded; the progress bar moves within a group."""

DOCUMENT_SCHEMA = pa.schema([
    pa.field("doc_id", pa.string()),
    pa.field("source", pa.string()),
    pa.field("chunks", pa.int64()),
    pa.field("content_hash", pa.string()),
    pa.field("ingested_at", pa.timestamp("us")),
])
"""What :meth:`Table.documents <vecstore.Table.documents>` returns, one row per document."""


@dataclass(frozen=True)
class IngestReport:
    """What :meth:`Table.add_documents <vecstore.Table.add_documents>` did."""

    documents: int
    """Documents embedded and committed."""
    chunks: int
    """Chunk rows committed."""
    skipped: tuple[tuple[str, str], ...]
    """``(doc_id, reason)`` of documents with nothing to embed (empty text, duplicate text)."""
    seconds: float
    unchanged: int = 0
    """Documents whose stored content hash was the same: not embedded again."""
    pruned: int = 0
    """Documents deleted because they were not given (``prune=True``)."""
    commits: int = 0
    """Versions committed (the documents in groups, then the prune)."""
    remaining: int = 0
    """Documents left to embed when an interrupt stopped the ingest."""


# --------------------------------------------------------------------------- reading


def _live_columns(snap: Snapshot, columns: Sequence[str]) -> pa.Table:
    """The live rows' ``columns`` that the table has (missing ones are null strings)."""
    names = set(snap.attribute_names())
    present = [c for c in columns if c in names]
    t = snap.take(snap.live_rows, present) if present else pa.table({})
    n = snap.num_rows
    cols = {c: (t.column(c) if c in present else pa.nulls(n, pa.string())) for c in columns}
    return pa.table(cols)


def documents_table(snap: Snapshot) -> pa.Table:
    """One row per document of ``snap`` (:data:`DOCUMENT_SCHEMA`), sorted by ``doc_id``.
    Rows that belong to no document (added with ``add``) are not counted."""
    if "doc_id" not in snap.manifest.schema.names:
        return DOCUMENT_SCHEMA.empty_table()
    t = _live_columns(snap, ["doc_id", "source", "content_hash", "ingested_at"])
    t = t.filter(pc.is_valid(t.column("doc_id")))
    if t.num_rows == 0:
        return DOCUMENT_SCHEMA.empty_table()
    casts = {"source": pa.string(), "content_hash": pa.string(), "ingested_at": pa.timestamp("us")}
    t = pa.table({c: (t.column(c).cast(casts[c]) if c in casts and t.column(c).type != casts[c]
                      else t.column(c)) for c in t.column_names})
    agg = t.group_by("doc_id").aggregate([
        ("doc_id", "count"), ("source", "min"), ("content_hash", "min"), ("ingested_at", "max")])
    out = pa.table({
        "doc_id": agg.column("doc_id"),
        "source": agg.column("source_min"),
        "chunks": agg.column("doc_id_count").cast(pa.int64()),
        "content_hash": agg.column("content_hash_min"),
        "ingested_at": agg.column("ingested_at_max"),
    }, schema=DOCUMENT_SCHEMA)
    return out.sort_by("doc_id")


def _stored(snap: Snapshot) -> tuple[dict[str, str | None], dict[str, str | None]]:
    """``(doc_id -> content hash, doc_id -> source)`` of the documents in ``snap``."""
    docs = documents_table(snap)
    ids = docs.column("doc_id").to_pylist()
    return (dict(zip(ids, docs.column("content_hash").to_pylist(), strict=True)),
            dict(zip(ids, docs.column("source").to_pylist(), strict=True)))


# --------------------------------------------------------------------------- writing


def open_or_create_table(store: str | os.PathLike[str], table: str, model: str | None) -> Table:
    """The table of the store directory ``store`` that an ingest writes documents into: opened
    when it exists (refused when it has no embedder, or was built with another model than
    ``model``), else created with ``model``'s embedder (``"default"`` when None). When another
    process creates it at the same moment, one creates it and the other opens it. The model is
    not loaded (its id is resolved from the name)."""
    from .db import Database  # db imports table, which imports this module lazily

    db = Database(store)  # a directory: an ingest never writes to a server
    if table not in db.table_names():
        return db.create_table(table, embedder=model or "default", exist_ok=True)
    tbl = db.open_table(table)
    if tbl.config.embedder is None:
        raise InvalidArgumentError(
            f"table {table!r} has no embedder (it holds plain vectors); ingest into a new table")
    if model is not None:
        from .ingest.embedders import resolve_spec

        if resolve_spec(model).model_id != tbl.config.embedder:
            raise InvalidArgumentError(
                f"table {table!r} was built with model {tbl.config.embedder!r}, not {model!r}; "
                f"leave out the model to use the table's, or ingest into a new table")
    return tbl


def delete_documents(table: Table, doc_ids: Iterable[str]) -> int:
    """Delete every chunk of the documents ``doc_ids`` in one commit; returns how many of
    those documents the table held."""
    if isinstance(doc_ids, str):
        doc_ids = [doc_ids]
    wanted = [str(d) for d in doc_ids]
    found = 0

    def select(snap: Snapshot) -> Any:
        nonlocal found
        rows = snap.rows_where_in("doc_id", wanted)
        found = len(set(snap.take(rows, ["doc_id"]).column("doc_id").to_pylist())) if rows.size else 0
        return rows

    if not wanted:
        return 0
    snap, _ = table._writer.delete_rows(table._writable(), select)
    table._set(snap)
    return found


def ingest_settings(model_id: str, chunking: str, chunker: str, chunk_tokens: int, overlap: int,
                    window: WindowOptions | None) -> str:
    """The options that decide a document's chunk rows besides its text and attributes."""
    w = window
    win = "" if w is None else f"{w.window_tokens}/{w.stride}/{w.centred}/{w.titles}"
    return f"model={model_id}|chunking={chunking}|chunker={chunker}|tokens={chunk_tokens}|" \
           f"overlap={overlap}|window={win}"


def _announce(show: bool, message: str) -> None:
    if show:
        print(message, file=sys.stderr, flush=True)


def window_options(window: Any) -> WindowOptions | None:
    """``window`` as :class:`~vecstore.ingest.situated.WindowOptions`: None, the options
    themselves, or a mapping of their fields (what a server request carries)."""
    from .ingest.situated import WindowOptions

    if window is None or isinstance(window, WindowOptions):
        return window
    if isinstance(window, Mapping):
        fields = set(WindowOptions.__dataclass_fields__)
        unknown = sorted(set(map(str, window)) - fields)
        if unknown:
            raise InvalidArgumentError(f"unknown window option(s) {unknown}; the options are "
                                       f"{sorted(fields)}")
        return WindowOptions(**{str(k): v for k, v in window.items()})
    raise InvalidArgumentError(f"window must be a WindowOptions or a dict of its fields, got "
                               f"{type(window).__name__}")


def ingest(table: Table, docs: Any, *, chunking: str, chunker: str, chunk_tokens: int, overlap: int,
           window: WindowOptions | Mapping[str, Any] | None, progress: bool | None, prune: bool,
           keep: Collection[str], commit_every: float, batch_chunks: int | None = None) -> IngestReport:
    """What :meth:`Table.add_documents <vecstore.Table.add_documents>` does (see the module's
    docstring)."""
    from .ingest.pipeline import ChunkPlan, document_hash, prepare_documents
    from .ingest.situated import parse_chunking

    started = time.perf_counter()
    if not isinstance(commit_every, (int, float)) or isinstance(commit_every, bool) or not commit_every >= 0:
        raise InvalidArgumentError(f"commit_every must be a number of seconds >= 0, got {commit_every!r}")
    if isinstance(keep, str):
        keep = [keep]
    parse_chunking(chunking)
    window = window_options(window)
    model_id = table._model_id()
    prepared = prepare_documents(docs)
    settings = ingest_settings(model_id, chunking, chunker, chunk_tokens, overlap, window)
    hashes = {prepared.ids[i]: document_hash(prepared.texts[i], prepared.attribute_dict(i), settings)
              for i in prepared.keep}
    stored, sources = _stored(table._writable())
    todo = [i for i in prepared.keep if stored.get(prepared.ids[i]) != hashes[prepared.ids[i]]]
    show = progress if progress is not None else sys.stderr.isatty()
    skipped = tuple((s.doc_id, s.reason) for s in prepared.skipped)
    report = IngestReport(documents=0, chunks=0, skipped=skipped, seconds=0.0,
                          unchanged=len(prepared.keep) - len(todo))
    if todo:
        report = _embed_and_commit(table, prepared, todo, hashes, report, show=show, progress=progress,
                                   plan=lambda emb: ChunkPlan(
                                       prepared, emb, chunking=chunking, chunker=chunker,
                                       chunk_tokens=chunk_tokens, overlap=overlap, window=window,
                                       indices=todo, progress=progress),
                                   commit_every=float(commit_every),
                                   batch_chunks=batch_chunks or GROUP_CHUNKS,
                                   started=started)
    if prune:
        given = set(prepared.ids)
        protect = set(map(str, keep))
        stale = sorted(d for d in stored if d not in given and d not in protect
                       and sources.get(d) not in protect)
        if stale:
            pruned = delete_documents(table, stale)
            report = replace(report, pruned=pruned, commits=report.commits + 1)
    return replace(report, seconds=time.perf_counter() - started)


def _embed_and_commit(table: Table, prepared: Any, todo: list[int], hashes: dict[str, str],
                      report: IngestReport, *, show: bool, progress: bool | None, plan: Any,
                      commit_every: float, batch_chunks: int, started: float) -> IngestReport:
    """Embed the documents ``todo`` group by group, committing the finished ones at least every
    ``commit_every`` seconds; on an interrupt commit what is finished and raise
    :class:`IngestInterrupted`."""
    pending: list[pa.Table] = []
    done = {"documents": 0, "chunks": 0, "commits": 0}
    in_pending = {"documents": 0}

    def commit() -> None:
        if not pending:
            return
        rows = pa.concat_tables(pending, promote_options="permissive")
        doc_ids = rows.column("doc_id").to_pylist()
        now = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
        rows = rows.append_column("content_hash", pa.array([hashes[d] for d in doc_ids], pa.string()))
        rows = rows.append_column("ingested_at", pa.array(np.full(len(doc_ids), np.datetime64(now, "us"))))
        table._write(rows, replace=True, replace_docs=sorted(set(doc_ids)))
        done["documents"] += in_pending["documents"]
        done["chunks"] += rows.num_rows
        done["commits"] += 1
        pending.clear()
        in_pending["documents"] = 0

    def current() -> IngestReport:
        return replace(report, documents=done["documents"], chunks=done["chunks"], commits=done["commits"],
                       remaining=len(todo) - done["documents"], seconds=time.perf_counter() - started)

    try:
        if table._embedder is None:
            _announce(show, f"loading the embedding model {table._model_id()} ...")
            t = time.perf_counter()
            embedder = table.embedder
            _announce(show, f"model loaded in {time.perf_counter() - t:.1f} s")
        else:
            embedder = table.embedder
        chunk_plan = plan(embedder)
        _announce(show, f"{len(todo)} documents to embed ({chunk_plan.total_chunks} chunks); "
                        f"{report.unchanged} unchanged")
        last = time.perf_counter()
        for group in chunk_plan.embed(batch_chunks=batch_chunks, progress=progress):
            pending.append(group.table)
            in_pending["documents"] += group.n_documents
            if time.perf_counter() - last >= commit_every:
                commit()
                last = time.perf_counter()
        commit()
    except KeyboardInterrupt:
        commit()  # the documents finished before the interrupt; the one being embedded is not
        raise IngestInterrupted(current()) from None
    return current()


__all__ = ["DOCUMENT_SCHEMA", "IngestReport", "delete_documents", "documents_table", "ingest",
           "ingest_settings", "open_or_create_table"]
