"""Ingestion: load documents, split them into chunks, embed the chunks.

Layers point downward: this package knows nothing of tables, storage or queries; the table calls
:func:`chunk_documents` and stores the rows it returns.

- :mod:`~vecstore.ingest.embedders`: the :class:`Embedder` protocol, the sentence-transformers
  embedder (``"default"`` is the bundled all-MiniLM-L6-v2) and :func:`get_embedder`.
- :mod:`~vecstore.ingest.chunking`: pure chunkers (tokens, sentences, Markdown).
- :mod:`~vecstore.ingest.situated`: naive, context and late chunk embeddings.
- :mod:`~vecstore.ingest.loaders`: files to documents, with every failure reported.
- :mod:`~vecstore.ingest.pipeline`: documents to chunk rows with vectors, as Arrow.
"""

from __future__ import annotations

from .chunking import Chunk, chunk_by_sentences, chunk_by_tokens, chunk_markdown, chunk_text
from .embedders import (
    DEFAULT_MODEL,
    Embedder,
    SentenceTransformerEmbedder,
    TokenEmbedder,
    content_hash,
    get_embedder,
)
from .loaders import LoadError, LoadResult, load_documents
from .pipeline import ChunkedDocuments, SkippedDocument, chunk_documents
from .situated import WindowOptions, embed_chunks

__all__ = [
    "DEFAULT_MODEL",
    "Chunk",
    "ChunkedDocuments",
    "Embedder",
    "LoadError",
    "LoadResult",
    "SentenceTransformerEmbedder",
    "SkippedDocument",
    "TokenEmbedder",
    "WindowOptions",
    "chunk_by_sentences",
    "chunk_by_tokens",
    "chunk_documents",
    "chunk_markdown",
    "chunk_text",
    "content_hash",
    "embed_chunks",
    "get_embedder",
    "load_documents",
]
