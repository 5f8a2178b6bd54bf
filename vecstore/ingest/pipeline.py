"""From whole documents to embedded chunk rows: validate, chunk, embed, and lay out as Arrow.

>>> from vecstore.ingest import chunk_documents
>>> docs = [{"id": "a", "text": "Long text ...", "year": 2024}]
>>> out = chunk_documents(docs, "default", chunking="context")
>>> out.table.column_names
['id', 'doc_id', 'chunk_index', 'char_start', 'char_end', 'text', 'context', 'year', 'vector']

Each output row is one chunk: ``id`` is ``"<doc_id>#<chunk_index>"``, ``char_start``/``char_end``
locate ``text`` in the document's text exactly, ``context`` is the chunk's heading path (Markdown
chunker) or null, and every attribute of the document is repeated on each of its chunks.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import DuplicateIdError, InvalidArgumentError, SchemaError
from ..storage.batch import check_new_names, column_key
from .chunking import Chunk, Tokenize, check_sizes, chunk_text, parse_chunker, regex_token_offsets
from .embedders import Embedder, TokenEmbedder, content_hash, get_embedder
from .situated import ChunkedText, WindowOptions, embed_chunked_columns, parse_chunking, vector_columns_of

if TYPE_CHECKING:
    import pandas as pd

CHUNK_COLUMNS = ("id", "doc_id", "chunk_index", "char_start", "char_end", "text", "context")
"""The columns every chunk row has, before the document's attributes and ``vector``."""

DEFAULT_CHUNKING = "naive|late"
"""How :func:`chunk_documents` and ``Table.add_documents`` embed chunks unless told otherwise:
two vectors per chunk, the chunk alone and its late-chunked vector, a hit scored by the better.
Chosen on two kinds of long documents, QMSum meetings and COVID-QA papers: never below naive
chunking on either (paired-bootstrap 95% intervals of nDCG@10, recall@10 and MRR@10, within a
document and across all), above it on both, and the best worst case of the modes that passed;
``"context"``, the default before, lost 0.08 MRR@10 to naive on the papers (docs/benchmarks.md,
"Situated chunk vectors on two kinds of long documents")."""

NO_TOKENS_CHUNKING = "naive"
"""The default for an embedder without token embeddings, which late chunking needs: of the
modes without ``late`` none met the rule above on both document sets."""


def default_chunking(embedder: Embedder) -> str:
    """The chunking mode used when none is given, for ``embedder``."""
    return DEFAULT_CHUNKING if isinstance(embedder, TokenEmbedder) else NO_TOKENS_CHUNKING

RESERVED_COLUMNS = frozenset(CHUNK_COLUMNS) | {"vector"}


@dataclass(frozen=True)
class SkippedDocument:
    """A document that produced no chunk, and why (empty text, duplicate text without an id)."""

    doc_id: str
    reason: str


@dataclass(frozen=True)
class ChunkedDocuments:
    """The result of :func:`chunk_documents`."""

    table: pa.Table
    """One row per chunk, vectors included."""
    skipped: tuple[SkippedDocument, ...]
    """Documents that were valid but had nothing to embed."""
    n_documents: int
    """Documents chunked and embedded."""
    seconds: float
    """Wall-clock time of the whole call."""

    @property
    def n_chunks(self) -> int:
        return int(self.table.num_rows)


# --------------------------------------------------------------------------- input validation


def _as_doc_table(docs: Any) -> tuple[list[Any], list[Any], pa.Table]:
    """``(ids, texts, attributes)`` of any accepted input; values are validated later."""
    if isinstance(docs, pa.RecordBatch):
        docs = pa.Table.from_batches([docs])
    if not isinstance(docs, pa.Table) and type(docs).__name__ == "DataFrame":
        try:
            docs = pa.Table.from_pandas(docs, preserve_index=False)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise SchemaError(f"cannot convert the DataFrame to Arrow: {exc}") from exc
    if isinstance(docs, pa.Table):
        if "text" not in docs.column_names:
            raise SchemaError(f"documents need a 'text' column; got columns {docs.column_names}")
        n = docs.num_rows
        ids = docs.column("id").to_pylist() if "id" in docs.column_names else [None] * n
        texts = docs.column("text").to_pylist()
        attrs = docs.drop_columns([c for c in ("id", "text") if c in docs.column_names])
        return ids, texts, attrs
    if isinstance(docs, (str, bytes, Mapping)):
        raise InvalidArgumentError(
            "expected an iterable of documents (dicts with 'id' and 'text'), a pyarrow.Table or "
            f"a pandas.DataFrame, got a single {type(docs).__name__}; wrap it in a list"
        )
    if not isinstance(docs, Iterable):
        raise InvalidArgumentError(
            "expected an iterable of documents, a pyarrow.Table or a pandas.DataFrame, "
            f"got {type(docs).__name__}"
        )
    ids, texts, rows = [], [], []
    for i, doc in enumerate(docs):
        if not isinstance(doc, Mapping):
            raise InvalidArgumentError(
                f"document {i} is a {type(doc).__name__}; expected a dict with 'id' and 'text'"
            )
        if "text" not in doc:
            raise InvalidArgumentError(
                f"document {i} (id {doc.get('id')!r}) has no 'text'; keys: {sorted(doc)}"
            )
        ids.append(doc.get("id"))
        texts.append(doc["text"])
        rows.append({k: v for k, v in doc.items() if k not in ("id", "text")})
    columns: dict[str, pa.Array] = {}
    for key in dict.fromkeys(k for row in rows for k in row):
        if not isinstance(key, str):
            raise SchemaError(f"attribute names must be strings, got {key!r}")
        try:
            columns[key] = pa.array([row.get(key) for row in rows])
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise SchemaError(
                f"attribute {key!r} does not have one type in every document ({exc}); "
                "give it the same type everywhere"
            ) from exc
    return ids, texts, pa.table(columns)


def _validate(
    ids: list[Any], texts: list[Any], attrs: pa.Table
) -> tuple[list[str], list[int], list[SkippedDocument]]:
    """Document ids (generated where missing), the indexes of documents to embed, and the
    documents skipped."""
    # names are matched ignoring ASCII case, as filters (DuckDB) match them: 'Text' would be
    # one column with the chunk's 'text' to a filter
    reserved = sorted(n for n in attrs.column_names if column_key(n) in RESERVED_COLUMNS)
    if reserved:
        raise SchemaError(
            f"document attribute(s) {reserved} clash with chunk columns (names are matched "
            f"ignoring case); rename them (reserved: {sorted(RESERVED_COLUMNS)})"
        )
    check_new_names(attrs.column_names, [])
    out_ids: list[str] = []
    keep: list[int] = []
    skipped: list[SkippedDocument] = []
    seen: dict[str, int] = {}
    for i, (doc_id, text) in enumerate(zip(ids, texts, strict=True)):
        if text is not None and not isinstance(text, str):
            raise InvalidArgumentError(
                f"document {i} (id {doc_id!r}): 'text' is a {type(text).__name__}, expected str"
            )
        generated = doc_id is None
        if generated:
            doc_id = "sha256:" + content_hash(text or "")[:16]
        elif isinstance(doc_id, int) and not isinstance(doc_id, bool):
            doc_id = str(doc_id)
        elif not isinstance(doc_id, str) or not doc_id.strip():
            raise InvalidArgumentError(
                f"document {i}: 'id' must be a non-empty string, got {doc_id!r}; "
                "leave it out to have one made from the text's hash"
            )
        out_ids.append(doc_id)
        if doc_id in seen:
            if generated:
                skipped.append(SkippedDocument(doc_id, f"same text as document {seen[doc_id]}"))
                continue
            raise DuplicateIdError(f"document id {doc_id!r} appears twice (documents {seen[doc_id]} and {i})")
        seen[doc_id] = i
        if text is None or not text.strip():
            skipped.append(SkippedDocument(doc_id, "no text" if text is None else "empty text"))
            continue
        keep.append(i)
    return out_ids, keep, skipped


# --------------------------------------------------------------------------- the pipeline


def _tokenizer_for(embedder: Embedder) -> Tokenize:
    if isinstance(embedder, TokenEmbedder):
        return embedder.token_offsets
    return regex_token_offsets


def _given(offsets: Sequence[tuple[int, int]]) -> Tokenize:
    """A tokenizer that returns offsets already computed (the document is tokenized once)."""

    def tokenize(_text: str) -> Sequence[tuple[int, int]]:
        return offsets

    return tokenize


def _chunk_budget(embedder: Embedder) -> int:
    if isinstance(embedder, TokenEmbedder):
        return embedder.window_budget()
    return max(1, embedder.max_tokens - 2)


def chunk_documents(
    docs: Iterable[Mapping[str, Any]] | pa.Table | pd.DataFrame,
    embedder: Embedder | str = "default",
    *,
    chunking: str | None = None,
    chunker: str = "tokens",
    chunk_tokens: int = 128,
    overlap: int = 16,
    window: WindowOptions | None = None,
    progress: bool | None = None,
    batch_chunks: int = 512,
) -> ChunkedDocuments:
    """Chunk whole documents and embed every chunk: one Arrow row per chunk.

    Parameters
    ----------
    docs:
        Dicts with ``id`` (a non-empty string; made from the text's hash when absent), ``text``
        and any attributes; or a pyarrow.Table / pandas.DataFrame with those columns.
    embedder:
        An :class:`~vecstore.ingest.embedders.Embedder`, or a model spec for
        :func:`~vecstore.ingest.embedders.get_embedder` (``"default"``: all-MiniLM-L6-v2).
    chunking:
        How chunks are embedded: ``"late"``, ``"context"``, ``"naive"``, a mean of several such
        as ``"late+naive"``, or several vectors per chunk such as ``"naive|late"`` (columns
        ``vector`` and ``vector_late``; see :mod:`vecstore.ingest.situated`). None:
        :func:`default_chunking` (``"naive|late"``; ``"naive"`` for an embedder without
        token embeddings).
    chunker:
        ``"tokens"`` (fixed size with overlap, cut at whitespace), ``"sentences"`` (whole
        paragraphs and sentences) or ``"markdown"`` (split at headings; heading path as context).
    chunk_tokens, overlap:
        Chunk size and overlap in the model's tokens. ``chunk_tokens`` is lowered to what the
        model reads in one input when it is larger.
    window:
        Window settings for the situated modes.
    progress:
        Show a progress bar with throughput on stderr; None shows it only on a terminal.
    batch_chunks:
        Roughly how many chunks to embed per step (documents are never split between steps).

    Documents with no text (empty, whitespace or null) are not embedded; they are listed in
    :attr:`ChunkedDocuments.skipped`. Invalid input (a missing or non-string ``text``, a bad or
    duplicate ``id``, an attribute named like a chunk column) raises before anything is embedded.
    """
    started = time.perf_counter()
    if chunking is None:
        chunking = default_chunking(get_embedder(embedder))
    groups = parse_chunking(chunking)
    modes = {m for g in groups for m in g}
    chunker = parse_chunker(chunker)
    check_sizes(chunk_tokens, overlap)
    if not isinstance(batch_chunks, int) or batch_chunks < 1:
        raise InvalidArgumentError(f"batch_chunks must be a positive integer, got {batch_chunks!r}")
    ids, texts, attrs = _as_doc_table(docs)
    doc_ids, keep, skipped = _validate(ids, texts, attrs)
    names = vector_columns_of(groups)
    clash = sorted(n for n in attrs.column_names if column_key(n) in {column_key(v) for v in names})
    if clash:
        raise SchemaError(f"document attribute(s) {clash} clash with the chunks' vector columns "
                          f"{list(names)}; rename them")
    model = get_embedder(embedder)
    if "late" in modes and not isinstance(model, TokenEmbedder):
        raise InvalidArgumentError(
            f"late chunking needs token embeddings, which {type(model).__name__} does not "
            "expose; use chunking='context' or 'naive'"
        )
    size = min(chunk_tokens, _chunk_budget(model))
    over = min(overlap, size - 1)
    tokenize = _tokenizer_for(model)
    options = window or WindowOptions()
    titles = attrs.column("title").to_pylist() if "title" in attrs.column_names else None

    from tqdm.auto import tqdm

    doc_rows: list[int] = []
    chunks_out: list[Chunk] = []
    vectors_out: list[list[np.ndarray]] = []
    bar = tqdm(
        total=len(keep),
        unit="doc",
        desc=f"embedding ({chunking})",
        disable=(not progress) if progress is not None else None,
        leave=False,
    )
    try:
        group: list[tuple[int, ChunkedText]] = []
        n_group = 0

        def flush() -> None:
            nonlocal n_group
            if not group:
                return
            vectors = embed_chunked_columns(model, [cd for _, cd in group], groups, options)
            for (i, cd), vecs in zip(group, vectors, strict=True):
                doc_rows.extend([i] * len(cd.chunks))
                chunks_out.extend(cd.chunks)
                vectors_out.append(vecs)
            bar.update(len(group))
            elapsed = max(time.perf_counter() - started, 1e-9)
            bar.set_postfix(chunks=len(chunks_out), chunks_s=f"{len(chunks_out) / elapsed:.0f}")
            group.clear()
            n_group = 0

        for i in keep:
            text = texts[i]
            offsets = tokenize(text)
            chunks = chunk_text(text, _given(offsets), chunker=chunker, chunk_tokens=size, overlap=over)
            title = titles[i] if titles is not None and isinstance(titles[i], str) else None
            group.append((i, ChunkedText(text, chunks, title, offsets)))
            n_group += len(chunks)
            if n_group >= batch_chunks:
                flush()
        flush()
    finally:
        bar.close()

    table = _to_arrow(doc_ids, doc_rows, chunks_out, vectors_out, attrs, model.dim, names)
    return ChunkedDocuments(
        table=table,
        skipped=tuple(skipped),
        n_documents=len(keep),
        seconds=time.perf_counter() - started,
    )


def _to_arrow(
    doc_ids: Sequence[str],
    doc_rows: Sequence[int],
    chunks: Sequence[Chunk],
    vectors: Sequence[Sequence[np.ndarray]],
    attrs: pa.Table,
    dim: int,
    names: Sequence[str] = ("vector",),
) -> pa.Table:
    doc_id_col = [doc_ids[r] for r in doc_rows]
    columns: dict[str, pa.Array] = {
        "id": pa.array([f"{d}#{c.index}" for d, c in zip(doc_id_col, chunks, strict=True)], pa.string()),
        "doc_id": pa.array(doc_id_col, pa.string()),
        "chunk_index": pa.array([c.index for c in chunks], pa.int32()),
        "char_start": pa.array([c.char_start for c in chunks], pa.int64()),
        "char_end": pa.array([c.char_end for c in chunks], pa.int64()),
        "text": pa.array([c.text for c in chunks], pa.string()),
        "context": pa.array([c.context for c in chunks], pa.string()),
    }
    taken = attrs.take(pa.array(doc_rows, pa.int64())) if attrs.num_columns else None
    if taken is not None:
        for name in taken.column_names:
            columns[name] = taken.column(name).combine_chunks()
    for j, name in enumerate(names):
        flat = (np.concatenate([v[j] for v in vectors]).astype(np.float32, copy=False) if vectors
                else np.empty((0, dim), np.float32))
        columns[name] = pa.FixedSizeListArray.from_arrays(pa.array(flat.reshape(-1)), dim)
    return pa.table(columns)


__all__ = [
    "CHUNK_COLUMNS",
    "DEFAULT_CHUNKING",
    "NO_TOKENS_CHUNKING",
    "ChunkedDocuments",
    "SkippedDocument",
    "chunk_documents",
    "default_chunking",
]
