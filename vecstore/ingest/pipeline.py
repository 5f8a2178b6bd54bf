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

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from ..errors import DuplicateIdError, InvalidArgumentError, SchemaError
from ..storage.batch import check_new_names, column_key
from .chunking import Chunk, Tokenize, check_sizes, chunk_text, parse_chunker, regex_token_offsets
from .embedders import Embedder, TokenEmbedder, content_hash, get_embedder
from .situated import (
    ChunkedText,
    WindowOptions,
    embed_chunked_columns,
    late_windows_of,
    parse_chunking,
    vector_columns_of,
)

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


DOCUMENT_COLUMNS = ("content_hash", "ingested_at")
"""What a table stores beside each chunk to keep track of its document (``Table.documents``):
the :func:`document_hash` it was embedded from and when it was committed."""

RESERVED_COLUMNS = frozenset(CHUNK_COLUMNS) | frozenset(DOCUMENT_COLUMNS) | {"vector"}


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


@dataclass(frozen=True)
class PreparedDocuments:
    """Documents validated and laid out, before any model is loaded (:func:`prepare_documents`)."""

    ids: list[str]
    """Every document's id (made from its text's hash where it had none)."""
    texts: list[Any]
    attributes: pa.Table
    """One row per document: its attributes (everything but ``id`` and ``text``)."""
    keep: list[int]
    """Positions of the documents that have text to embed."""
    skipped: tuple[SkippedDocument, ...]

    def attribute_dict(self, i: int) -> dict[str, Any]:
        """Document ``i``'s attributes as Python values."""
        return self.attributes.slice(i, 1).to_pylist()[0] if self.attributes.num_columns else {}


def prepare_documents(docs: Iterable[Mapping[str, Any]] | pa.Table | pd.DataFrame) -> PreparedDocuments:
    """Validate ``docs`` (see :func:`chunk_documents`) without loading a model: a missing or
    non-string ``text``, a bad or duplicate ``id`` or an attribute named like a chunk column
    raises here."""
    ids, texts, attrs = _as_doc_table(docs)
    doc_ids, keep, skipped = _validate(ids, texts, attrs)
    return PreparedDocuments(doc_ids, texts, attrs, keep, tuple(skipped))


def document_hash(text: str, attributes: Mapping[str, Any], settings: str) -> str:
    """SHA-256 (hex) of everything that decides a document's chunk rows: its text, its
    attributes and ``settings`` (the model and chunking options). Equal hashes: the rows an
    ingest would write equal the stored ones, so the document need not be embedded again."""
    canonical = json.dumps({"text": text, "attributes": attributes, "settings": settings},
                           sort_keys=True, ensure_ascii=False, default=_json_default)
    return content_hash(canonical)


def _json_default(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return f"{type(value).__name__}:{value.isoformat()}"
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    if hasattr(value, "tolist"):
        return value.tolist()
    return repr(value)


class _Metered:
    """An embedder that embeds in slices of ``step`` inputs and reports each slice, so a
    progress bar moves while a group of chunks is embedded (the inner embedder batches each
    slice as it would the whole)."""

    def __init__(self, inner: Embedder, step: int, report: Callable[[int], None]) -> None:
        self.inner, self.step, self.report = inner, step, report
        self.model_id, self.dim, self.max_tokens = inner.model_id, inner.dim, inner.max_tokens

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        # longest first, as sentence-transformers orders one call's texts: slices then pad
        # about as little as one call over all of them would
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        out = np.empty((len(texts), self.dim), np.float32)
        for k in range(0, len(order), self.step):
            part = order[k:k + self.step]
            out[part] = self.inner.embed_documents([texts[i] for i in part])
            self.report(len(part))
        return out

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.inner.embed_queries(texts)


class _MeteredTokens(_Metered):
    inner: TokenEmbedder

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        return self.inner.token_offsets(text)

    def window_budget(self, prefix: str = "") -> int:
        return self.inner.window_budget(prefix)

    def embed_spans(self, texts: Sequence[str],
                    spans: Sequence[Sequence[tuple[int, int]]]) -> list[np.ndarray]:
        out: list[np.ndarray] = []
        for k in range(0, len(texts), self.step):
            out.extend(self.inner.embed_spans(texts[k:k + self.step], spans[k:k + self.step]))
            self.report(len(texts[k:k + self.step]))
        return out


class ChunkPlan:
    """The chunks of some prepared documents, cut with the embedder's own tokenizer, to be
    embedded group by group (:meth:`embed`). Cutting every document first gives the number of
    chunks, so progress is shown over chunks with a rate and an ETA."""

    def __init__(self, prepared: PreparedDocuments, embedder: Embedder, *, chunking: str | None = None,
                 chunker: str = "tokens", chunk_tokens: int = 128, overlap: int = 16,
                 window: WindowOptions | None = None, indices: Sequence[int] | None = None,
                 progress: bool | None = None) -> None:
        if chunking is None:
            chunking = default_chunking(embedder)
        self.groups = parse_chunking(chunking)  # one group of base modes per vector column
        self.modes = tuple(dict.fromkeys(m for g in self.groups for m in g))
        self.names = vector_columns_of(self.groups)
        self.chunking = chunking
        clash = sorted(n for n in prepared.attributes.column_names
                       if column_key(n) in {column_key(v) for v in self.names})
        if clash:
            raise SchemaError(f"document attribute(s) {clash} clash with the chunks' vector columns "
                              f"{list(self.names)}; rename them")
        chunker = parse_chunker(chunker)
        check_sizes(chunk_tokens, overlap)
        if "late" in self.modes and not isinstance(embedder, TokenEmbedder):
            raise InvalidArgumentError(
                f"late chunking needs token embeddings, which {type(embedder).__name__} does not "
                "expose; use chunking='context' or 'naive'"
            )
        self.prepared = prepared
        self.embedder = embedder
        self.options = window or WindowOptions()
        size = min(chunk_tokens, _chunk_budget(embedder))
        over = min(overlap, size - 1)
        tokenize = _tokenizer_for(embedder)
        attrs = prepared.attributes
        titles = attrs.column("title").to_pylist() if "title" in attrs.column_names else None
        from tqdm.auto import tqdm

        todo = list(prepared.keep if indices is None else indices)
        self.docs: list[tuple[int, ChunkedText]] = []
        for i in tqdm(todo, unit="doc", desc="chunking", leave=False, disable=_disabled(progress)):
            text = prepared.texts[i]
            offsets = tokenize(text)
            chunks = chunk_text(text, _given(offsets), chunker=chunker, chunk_tokens=size, overlap=over)
            title = titles[i] if titles is not None and isinstance(titles[i], str) else None
            self.docs.append((i, ChunkedText(text, chunks, title, offsets)))
        self.total_chunks = sum(len(cd.chunks) for _, cd in self.docs)

    def embed(self, *, batch_chunks: int = 128, progress: bool | None = None) -> Iterator[ChunkedDocuments]:
        """Embed the chunks, about ``batch_chunks`` at a time (a document is never split between
        groups): one :class:`ChunkedDocuments` per group, its documents complete. A remainder of
        less than half a group joins the group before it: each group's inputs are padded
        together, so a small last group would cost extra padding for no gain (200 SciFact
        abstracts in `context` mode, 694 chunks: 2.4% more padded tokens in groups of 512 and
        182 than in one group; bench/sync.py)."""
        if not isinstance(batch_chunks, int) or batch_chunks < 1:
            raise InvalidArgumentError(f"batch_chunks must be a positive integer, got {batch_chunks!r}")
        bar = _ChunkBar(self.total_chunks, f"embedding ({self.chunking})", progress)
        model: Embedder = self.embedder
        step = max(1, int(getattr(model, "batch_size", 32)))
        inputs_done = [0]
        metered = (_MeteredTokens if isinstance(model, TokenEmbedder) else _Metered)(
            model, step, lambda n: inputs_done.__setitem__(0, inputs_done[0] + n))
        # chunks from each document to the end, to see whether the rest would be a small group
        after = np.cumsum([len(cd.chunks) for _, cd in self.docs][::-1])[::-1].tolist() + [0]
        try:
            group: list[tuple[int, ChunkedText]] = []
            for k, item in enumerate(self.docs):
                group.append(item)
                n = sum(len(cd.chunks) for _, cd in group)
                rest = after[k + 1]
                if (n >= batch_chunks and 2 * rest >= batch_chunks) or k == len(self.docs) - 1:
                    started = time.perf_counter()
                    inputs_done[0] = 0
                    bar.begin_group(n, self._inputs(group), inputs_done)
                    vectors = embed_chunked_columns(metered, [cd for _, cd in group], self.groups,
                                                    self.options)
                    bar.end_group()
                    yield ChunkedDocuments(
                        table=_to_arrow(self.prepared.ids, [i for i, cd in group for _ in cd.chunks],
                                        [c for _, cd in group for c in cd.chunks], vectors,
                                        self.prepared.attributes, model.dim, self.names),
                        skipped=(), n_documents=len(group), seconds=time.perf_counter() - started)
                    group = []
        finally:
            bar.close()

    def _inputs(self, group: Sequence[tuple[int, ChunkedText]]) -> int:
        """How many model inputs embedding ``group`` takes (windows for late, chunks otherwise):
        the progress bar's unit of work inside a group."""
        n = 0
        for m in self.modes:
            if m == "late":
                n += len(late_windows_of([cd for _, cd in group], self.embedder, self.options))
            else:
                n += sum(len(cd.chunks) for _, cd in group)
        return max(n, 1)


def _disabled(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None shows the bar only on a terminal."""
    return None if progress is None else not progress


class _ChunkBar:
    """A bar over chunks with rate and ETA, moved as each slice of model inputs finishes and
    redrawn every second by a small thread, so it never sits still while the model works."""

    def __init__(self, total: int, desc: str, progress: bool | None) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="chunk", desc=desc, leave=False, disable=_disabled(progress),
                        smoothing=0.1, mininterval=0.25)
        self.shown = 0.0
        self._group = (0, 1, [0])
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if not self.bar.disable:
            self._thread = threading.Thread(target=self._tick, name="vecstore-progress", daemon=True)
            self._thread.start()

    def begin_group(self, chunks: int, inputs: int, done: list[int]) -> None:
        self._base = self.bar.n
        self._group = (chunks, inputs, done)

    def _advance(self) -> None:
        chunks, inputs, done = self._group
        target = self._base + int(chunks * min(done[0], inputs) / inputs)
        if target > self.bar.n:
            self.bar.update(target - self.bar.n)

    def end_group(self) -> None:
        chunks, _, _ = self._group
        self._group = (0, 1, [0])
        if self._base + chunks > self.bar.n:
            self.bar.update(self._base + chunks - self.bar.n)

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            if self._group[0]:
                self._advance()
            self.bar.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.bar.close()


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
        Show a progress bar over chunks (rate, ETA) on stderr; None shows it only on a terminal.
    batch_chunks:
        Roughly how many chunks to embed per step (documents are never split between steps).

    Documents with no text (empty, whitespace or null) are not embedded; they are listed in
    :attr:`ChunkedDocuments.skipped`. Invalid input (a missing or non-string ``text``, a bad or
    duplicate ``id``, an attribute named like a chunk column) raises before anything is embedded.
    """
    started = time.perf_counter()
    if chunking is None:
        chunking = default_chunking(get_embedder(embedder))
    parse_chunking(chunking)
    parse_chunker(chunker)
    check_sizes(chunk_tokens, overlap)
    if not isinstance(batch_chunks, int) or batch_chunks < 1:
        raise InvalidArgumentError(f"batch_chunks must be a positive integer, got {batch_chunks!r}")
    prepared = prepare_documents(docs)
    model = get_embedder(embedder)
    plan = ChunkPlan(prepared, model, chunking=chunking, chunker=chunker, chunk_tokens=chunk_tokens,
                     overlap=overlap, window=window, progress=progress)
    groups = [g.table for g in plan.embed(batch_chunks=batch_chunks, progress=progress)]
    table = pa.concat_tables(groups) if groups else _to_arrow(prepared.ids, [], [], [], prepared.attributes,
                                                             model.dim, plan.names)
    return ChunkedDocuments(table=table, skipped=prepared.skipped, n_documents=len(prepared.keep),
                            seconds=time.perf_counter() - started)


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
    "DOCUMENT_COLUMNS",
    "ChunkPlan",
    "ChunkedDocuments",
    "PreparedDocuments",
    "SkippedDocument",
    "chunk_documents",
    "default_chunking",
    "document_hash",
    "prepare_documents",
]
