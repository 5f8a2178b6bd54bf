"""The document pipeline on Ray Data: load, chunk and embed in an actor pool, write in one commit.

It gives the rows ``vecstore ingest`` gives (the same loaders, the same
:func:`~vecstore.ingest.pipeline.chunk_documents` per document, the same upsert of whole
documents), with the chunking and embedding spread over ``concurrency`` actors, each loading
the model once (on a GPU each when ``num_gpus`` is set), and the rows written by
:func:`~vecstore.ray.write_table`'s sink: one new table version.
"""

from __future__ import annotations

import datetime
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray.data

from ..documents import open_or_create_table
from ..errors import InvalidArgumentError
from ..ingest.loaders import DEFAULT_MAX_FILE_BYTES, load_documents
from .sink import DEFAULT_ROWS_PER_SEGMENT, VecstoreDatasink, _run


@dataclass(frozen=True)
class RayIngestReport:
    """What :func:`ingest` did."""

    documents: int
    chunks: int
    files_skipped: tuple[tuple[str, str], ...]  # (path, reason) of files that could not be read
    documents_skipped: tuple[str, ...]  # ids of documents that gave no chunk (nothing to embed)
    version: int
    seconds: float


class _ChunkEmbed:
    """A Ray Data actor: loads the embedding model once, then chunks and embeds batches of
    documents (pickled dicts, as the loaders make them: attribute types vary by file)."""

    def __init__(self, model: str, options: dict[str, Any]) -> None:
        from ..ingest.embedders import get_embedder

        self.embedder = get_embedder(model)
        self.options = options

    def __call__(self, batch: pa.Table) -> pa.Table:
        from ..ingest.pipeline import chunk_documents

        docs = [pickle.loads(b) for b in batch.column("doc").to_pylist()]
        out = chunk_documents(docs, self.embedder, progress=False, **self.options)
        return out.table


def _stamp(batch: pa.Table, hashes: dict[str, str], now: np.datetime64) -> pa.Table:
    """``batch`` of chunk rows with their document's ``content_hash`` and ``ingested_at``."""
    doc_ids = batch.column("doc_id").to_pylist()
    batch = batch.append_column("content_hash", pa.array([hashes[d] for d in doc_ids], pa.string()))
    return batch.append_column("ingested_at", pa.array(np.full(len(doc_ids), now)))


def ingest(paths: str | Path | Sequence[str | Path], path: str | Path, table: str, *,
           model: str | None = None, chunking: str | None = None, chunker: str = "tokens",
           chunk_tokens: int = 128, overlap: int = 16, attributes: dict[str, Any] | None = None,
           text_column: str = "text", id_column: str = "id",
           max_file_bytes: int = DEFAULT_MAX_FILE_BYTES, concurrency: int = 2,
           docs_per_batch: int = 16, num_gpus: float = 0,
           rows_per_segment: int = DEFAULT_ROWS_PER_SEGMENT, root: str | Path | None = None,
           encoding: str | None = None,
           attributes_from_path: str | None = None) -> RayIngestReport:
    """Load ``paths`` (files, directories, globs), chunk and embed them on Ray into ``table``
    of the store at ``path`` (created with ``model``'s embedder when missing), as
    ``vecstore ingest`` does: the same options, the same rows, documents already in the table
    replaced whole. ``concurrency`` actors embed (each loads the model once;
    ``num_gpus``: GPUs per actor), ``docs_per_batch`` documents at a time. Everything is
    published in one commit. ``chunking`` None is the library's default (as for
    ``Table.add_documents``). Call ``ray.init(...)`` first to use a cluster; otherwise Ray
    starts a local one."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    if not isinstance(concurrency, int) or concurrency < 1:
        raise InvalidArgumentError(f"concurrency must be a positive integer, got {concurrency!r}")
    if not isinstance(docs_per_batch, int) or docs_per_batch < 1:
        raise InvalidArgumentError(f"docs_per_batch must be a positive integer, got {docs_per_batch!r}")
    t = time.perf_counter()
    loaded = load_documents(list(paths), text_column=text_column, id_column=id_column,
                            attributes=attributes or None, max_file_bytes=max_file_bytes, root=root,
                            encoding=encoding, attributes_from_path=attributes_from_path)
    if not loaded.documents:
        raise InvalidArgumentError(f"no documents to ingest from {' '.join(map(str, paths))} "
                                   f"({len(loaded.errors)} files skipped)")
    from ..ingest.chunking import check_sizes, parse_chunker
    from ..ingest.situated import parse_mode

    parse_chunker(chunker)
    check_sizes(chunk_tokens, overlap)
    if chunking is not None:
        parse_mode(chunking)  # bad options fail here, before any table is made or actor starts
    tbl = open_or_create_table(path, table, model)
    chunking = tbl._documents_chunking(chunking)  # the library's default; the table's columns
    options = {"chunking": chunking, "chunker": chunker, "chunk_tokens": chunk_tokens, "overlap": overlap}
    docs = ray.data.from_items([{"doc": pickle.dumps(d)} for d in loaded.documents],
                               override_num_blocks=max(1, -(-len(loaded.documents) // docs_per_batch)))
    chunks = docs.map_batches(_ChunkEmbed, fn_constructor_args=(tbl.config.embedder, options),
                              batch_size=docs_per_batch, batch_format="pyarrow",
                              concurrency=concurrency, num_gpus=num_gpus or None)
    # Each chunk carries its document's content hash, as `vecstore ingest` stores it, so that a
    # later incremental ingest (Ray or not) skips the documents that did not change.
    from ..documents import ingest_settings
    from ..ingest.pipeline import document_hash, prepare_documents

    prepared = prepare_documents(loaded.documents)
    settings = ingest_settings(tbl._model_id(), chunking, chunker, chunk_tokens, overlap, None)
    hashes = {prepared.ids[i]: document_hash(prepared.texts[i], prepared.attribute_dict(i), settings)
              for i in prepared.keep}
    now = np.datetime64(datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None), "us")
    chunks = chunks.map_batches(_stamp, fn_args=(hashes, now), batch_format="pyarrow")  # type: ignore[arg-type]
    sink = VecstoreDatasink(path, table, mode="upsert", replace_docs=True,
                            rows_per_segment=rows_per_segment)
    version = _run(chunks, sink, None)
    written = {d for s in getattr(sink, "staged", []) if s.doc_ids is not None for d in s.doc_ids.to_pylist()}
    skipped = tuple(sorted(str(d.get("id")) for d in loaded.documents
                           if d.get("id") is not None and str(d.get("id")) not in written))
    chunks_n = sum(len(s.ids) for s in getattr(sink, "staged", []))
    return RayIngestReport(documents=len(loaded.documents) - len(skipped), chunks=chunks_n,
                           files_skipped=tuple((str(e.path), e.reason) for e in loaded.errors),
                           documents_skipped=skipped, version=version,
                           seconds=time.perf_counter() - t)
