"""Chunking modes that keep several vectors per chunk (``"naive|late"``), through the pipeline
and ``Table.add_documents``, and the default chunking mode."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore
from vecstore.errors import InvalidArgumentError
from vecstore.ingest import chunk_documents
from vecstore.ingest.embedders import SentenceTransformerEmbedder
from vecstore.ingest.pipeline import DEFAULT_CHUNKING
from vecstore.ingest.situated import parse_chunking, vector_columns


def _docs(make_text, seeded, n=3):
    return [{"id": f"d{i}", "text": make_text(seeded, 140 + 40 * i), "team": "blue"} for i in range(n)]


def _vectors(table, name="vector"):
    return np.stack(table.column(name).to_numpy(zero_copy_only=False)).astype(np.float32)


def test_modes_name_their_vector_columns() -> None:
    assert parse_chunking("naive|late") == (("naive",), ("late",))
    assert parse_chunking("late+naive") == (("late", "naive"),)
    assert vector_columns("naive|late") == ("vector", "vector_late")
    assert vector_columns("naive|late+context") == ("vector", "vector_late_context")
    assert vector_columns("context") == ("vector",)
    with pytest.raises(InvalidArgumentError, match="same vector twice"):
        parse_chunking("naive|naive")
    with pytest.raises(InvalidArgumentError, match="'\\|' \\(kept as separate vectors"):
        parse_chunking("naive|latest")


def test_pipeline_keeps_each_modes_vector(tiny_embedder: SentenceTransformerEmbedder, make_text,
                                          seeded) -> None:
    docs = _docs(make_text, seeded)
    both = chunk_documents(docs, tiny_embedder, chunking="naive|late", chunk_tokens=24, overlap=4).table
    naive = chunk_documents(docs, tiny_embedder, chunking="naive", chunk_tokens=24, overlap=4).table
    late = chunk_documents(docs, tiny_embedder, chunking="late", chunk_tokens=24, overlap=4).table
    assert both.column_names[-2:] == ["vector", "vector_late"]
    assert both.column("id").to_pylist() == naive.column("id").to_pylist()
    np.testing.assert_allclose(_vectors(both), _vectors(naive), atol=1e-6)
    np.testing.assert_allclose(_vectors(both, "vector_late"), _vectors(late), atol=1e-6)
    assert not np.allclose(_vectors(both), _vectors(both, "vector_late"), atol=1e-3)


def test_add_documents_stores_both_and_scores_by_the_best(
    tmp_path, tiny_embedder: SentenceTransformerEmbedder, make_text, seeded
) -> None:
    docs = _docs(make_text, seeded)
    tbl = vecstore.connect(tmp_path).create_table("docs", embedder=tiny_embedder)
    report = tbl.add_documents(docs, chunking="naive|late", chunk_tokens=24, overlap=4)
    assert tbl.config.vectors == ("vector", "vector_late") and len(tbl) == report.chunks
    query = "the meeting decided on the battery"
    best = tbl.search(query).limit(len(tbl)).exact().hits()
    per = {name: dict(zip(h.ids, h.scores, strict=True)) for name in ("vector", "vector_late")
           for h in [tbl.search(query).using(name).limit(len(tbl)).exact().hits()]}
    for rid, score in zip(best.ids, best.scores, strict=True):
        assert score == pytest.approx(max(per["vector"][rid], per["vector_late"][rid]), abs=1e-6)
    # re-adding an unchanged document is skipped; a changed one replaces its chunks, both vectors
    again = tbl.add_documents(docs[:1], chunking="naive|late", chunk_tokens=24, overlap=4)
    assert len(tbl) == report.chunks and again.chunks == 0 and again.unchanged == 1
    doc_id = docs[0]["id"]
    before = tbl.count("doc_id = ?", doc_id)
    changed = dict(docs[0], text=docs[0]["text"] + " A last sentence about the battery.")
    again = tbl.add_documents([changed], chunking="naive|late", chunk_tokens=24, overlap=4)
    assert again.chunks > 0 and len(tbl) == report.chunks - before + again.chunks
    assert tbl.count("doc_id = ?", doc_id) == again.chunks
    # a table of two vectors per chunk refuses a mode that makes one, and the reverse
    with pytest.raises(InvalidArgumentError, match="holds rows with \\['vector', 'vector_late'\\]"):
        tbl.add_documents(docs[:1], chunking="naive")
    plain = vecstore.connect(tmp_path).create_table("plain", embedder=tiny_embedder)
    plain.add_documents(docs[:1], chunking="late", chunk_tokens=24, overlap=4)
    with pytest.raises(InvalidArgumentError, match="stores the vector columns"):
        plain.add_documents(docs[:1], chunking="naive|late")
    assert plain.config.vectors == ("vector",)


def test_the_default_chunking(tmp_path, tiny_embedder: SentenceTransformerEmbedder, make_text,
                              seeded) -> None:
    """``add_documents`` without ``chunking`` stores what ``DEFAULT_CHUNKING`` makes."""
    docs = _docs(make_text, seeded, 2)
    tbl = vecstore.connect(tmp_path).create_table("docs", embedder=tiny_embedder)
    tbl.add_documents(docs, chunk_tokens=24, overlap=4)
    want = chunk_documents(docs, tiny_embedder, chunking=DEFAULT_CHUNKING, chunk_tokens=24, overlap=4).table
    assert tbl.config.vectors == vector_columns(DEFAULT_CHUNKING)
    got = tbl.to_arrow(with_vectors=True)
    for name in tbl.config.vectors:
        np.testing.assert_allclose(_vectors(got, name), _vectors(want, name), atol=1e-6)


def test_the_default_on_a_table_made_another_way(
    tmp_path, tiny_embedder: SentenceTransformerEmbedder, make_text, seeded
) -> None:
    """A table whose rows were made with one vector (e.g. ``"context"``, the default before)
    is not silently given another layout: the error says to pass ``chunking=``."""
    docs = _docs(make_text, seeded, 2)
    tbl = vecstore.connect(tmp_path).create_table("docs", embedder=tiny_embedder)
    tbl.add_documents(docs[:1], chunking="context", chunk_tokens=24, overlap=4)
    with pytest.raises(InvalidArgumentError, match="pass chunking= with the mode its rows were made with"):
        tbl.add_documents(docs[1:], chunk_tokens=24, overlap=4)
    tbl.add_documents(docs[1:], chunking="context", chunk_tokens=24, overlap=4)
    assert tbl.config.vectors == ("vector",)


def test_the_default_without_token_embeddings_is_naive() -> None:
    from vecstore.ingest.pipeline import NO_TOKENS_CHUNKING, default_chunking

    class Plain:
        model_id, dim, max_tokens = "plain", 4, 32

        def embed_documents(self, texts):
            return np.ones((len(texts), 4), np.float32)

        embed_queries = embed_documents

    assert default_chunking(Plain()) == NO_TOKENS_CHUNKING == "naive"
    out = chunk_documents([{"id": "a", "text": "one two three four"}], Plain(), chunk_tokens=2, overlap=0)
    assert out.table.column_names[-1] == "vector" and "vector_late" not in out.table.column_names
