"""chunk_documents: validation, Arrow layout, the three input kinds, skipped documents."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from vecstore.errors import DuplicateIdError, InvalidArgumentError, SchemaError
from vecstore.ingest.embedders import SentenceTransformerEmbedder
from vecstore.ingest.pipeline import CHUNK_COLUMNS, chunk_documents


@pytest.fixture
def docs(make_text, seeded: np.random.Generator) -> list[dict[str, Any]]:
    return [
        {"id": "a", "text": make_text(seeded, 120, paragraphs=2), "year": 2020, "title": "Alpha"},
        {"id": "b", "text": make_text(seeded, 40), "year": 2021, "title": "Beta"},
        {"id": "c", "text": "   ", "year": 2022, "title": None},
    ]


def test_rows_columns_and_spans(
    tiny_embedder: SentenceTransformerEmbedder, docs: list[dict[str, Any]]
) -> None:
    out = chunk_documents(docs, tiny_embedder, chunk_tokens=40, overlap=8, progress=False)
    table = out.table
    # the default chunking "naive|late" keeps each chunk's plain and late-chunked vectors
    assert table.column_names == [*CHUNK_COLUMNS, "year", "title", "vector", "vector_late"]
    assert table.schema.field("chunk_index").type == pa.int32()
    assert table.schema.field("char_start").type == pa.int64()
    assert table.schema.field("vector").type == pa.list_(pa.float32(), tiny_embedder.dim)
    rows = table.to_pylist()
    texts = {d["id"]: d["text"] for d in docs}
    assert {r["doc_id"] for r in rows} == {"a", "b"}
    for r in rows:
        assert r["id"] == f"{r['doc_id']}#{r['chunk_index']}"
        assert texts[r["doc_id"]][r["char_start"] : r["char_end"]] == r["text"]
        assert r["year"] == (2020 if r["doc_id"] == "a" else 2021)
    assert [r["chunk_index"] for r in rows if r["doc_id"] == "a"] == list(
        range(sum(r["doc_id"] == "a" for r in rows))
    )
    assert out.n_documents == 2 and out.n_chunks == len(rows) > 3
    assert [(s.doc_id, s.reason) for s in out.skipped] == [("c", "empty text")]
    vectors = np.asarray(table.column("vector").to_pylist(), dtype=np.float32)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_dicts_table_and_dataframe_agree(
    tiny_embedder: SentenceTransformerEmbedder, docs: list[dict[str, Any]]
) -> None:
    kwargs: dict[str, Any] = dict(chunking="context", chunk_tokens=30, overlap=0, progress=False)
    from_dicts = chunk_documents(docs, tiny_embedder, **kwargs).table
    from_arrow = chunk_documents(pa.Table.from_pylist(docs), tiny_embedder, **kwargs).table
    from_pandas = chunk_documents(pd.DataFrame(docs), tiny_embedder, **kwargs).table
    assert from_arrow.equals(from_dicts)
    # pandas may widen types (large_string): the values are what must agree
    assert from_pandas.to_pydict() == from_dicts.to_pydict()


def test_naive_rows_hold_the_chunks_own_vectors(
    tiny_embedder: SentenceTransformerEmbedder, docs: list[dict[str, Any]]
) -> None:
    out = chunk_documents(docs, tiny_embedder, chunking="naive", chunk_tokens=30, progress=False)
    vectors = np.asarray(out.table.column("vector").to_pylist(), dtype=np.float32)
    want = tiny_embedder.embed_documents(out.table.column("text").to_pylist())
    np.testing.assert_allclose(vectors, want, atol=1e-6)


def test_markdown_chunker_fills_context(tiny_embedder: SentenceTransformerEmbedder) -> None:
    doc = {"id": "m", "text": "# Top\n\nIntro text.\n\n## Sub\n\nBody text here."}
    table = chunk_documents([doc], tiny_embedder, chunker="markdown", progress=False).table
    assert table.column("context").to_pylist() == ["Top", "Top > Sub"]


def test_attributes_of_any_document_are_kept(tiny_embedder: SentenceTransformerEmbedder) -> None:
    docs = [{"id": "a", "text": "one"}, {"id": "b", "text": "two", "tag": "x", "n": 2}]
    table = chunk_documents(docs, tiny_embedder, chunking="naive", progress=False).table
    assert table.select(["doc_id", "tag", "n"]).to_pylist() == [
        {"doc_id": "a", "tag": None, "n": None},
        {"doc_id": "b", "tag": "x", "n": 2},
    ]


def test_missing_ids_are_made_from_the_text(tiny_embedder: SentenceTransformerEmbedder) -> None:
    docs = [{"text": "same words"}, {"text": "same words"}, {"text": "other words", "id": 7}]
    out = chunk_documents(docs, tiny_embedder, chunking="naive", progress=False)
    doc_ids = out.table.column("doc_id").to_pylist()
    assert doc_ids[0].startswith("sha256:") and doc_ids[1] == "7"
    again = chunk_documents(docs[:1], tiny_embedder, chunking="naive", progress=False)
    assert again.table.column("doc_id").to_pylist() == doc_ids[:1]  # stable
    assert [s.reason for s in out.skipped] == ["same text as document 0"]


def test_oversized_chunks_are_lowered_to_the_window(
    short_embedder: SentenceTransformerEmbedder, make_text, seeded: np.random.Generator
) -> None:
    doc = {"id": "long", "text": make_text(seeded, 300)}
    out = chunk_documents([doc], short_embedder, chunk_tokens=500, overlap=100, progress=False)
    budget = short_embedder.window_budget()
    for text in out.table.column("text").to_pylist():
        assert len(short_embedder.token_offsets(text)) <= budget


def test_nothing_to_embed_gives_an_empty_table(tiny_embedder: SentenceTransformerEmbedder) -> None:
    out = chunk_documents([{"id": "x", "text": ""}, {"id": "y", "text": None}], tiny_embedder)
    assert out.n_chunks == 0 and out.n_documents == 0
    assert out.table.column_names == [*CHUNK_COLUMNS, "vector", "vector_late"]  # the default's
    assert [s.reason for s in out.skipped] == ["empty text", "no text"]
    assert chunk_documents([], tiny_embedder).n_chunks == 0


@pytest.mark.parametrize(
    ("docs", "error", "match"),
    [
        ([{"id": "a", "text": 3}], InvalidArgumentError, "expected str"),
        ([{"id": "", "text": "x"}], InvalidArgumentError, "non-empty string"),
        ([{"id": 1.5, "text": "x"}], InvalidArgumentError, "non-empty string"),
        ([{"id": "a"}], InvalidArgumentError, "has no 'text'"),
        ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], DuplicateIdError, "twice"),
        ([{"id": "a", "text": "x", "vector": [1.0]}], SchemaError, "clash"),
        ([{"id": "a", "text": "x", "Text": "y"}], SchemaError, r"\['Text'\] clash"),  # one column to a filter
        ([{"id": "a", "text": "x", "DOC_ID": "y"}], SchemaError, "clash"),
        ([{"id": "a", "text": "x", "lang": "en", "LANG": "de"}], SchemaError, "only in letter case"),
        ([{"id": "a", "text": "x", "n": 1}, {"id": "b", "text": "y", "n": "one"}], SchemaError, "type"),
        ({"id": "a", "text": "x"}, InvalidArgumentError, "wrap it in a list"),
        (["just a string"], InvalidArgumentError, "expected a dict"),
        (pa.table({"body": ["x"]}), SchemaError, "'text' column"),
    ],
)
def test_invalid_input_raises_before_embedding(
    tiny_embedder: SentenceTransformerEmbedder, docs: object, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        chunk_documents(docs, tiny_embedder, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunking": "smart"}, "'late', 'context', 'naive'"),
        ({"chunker": "pages"}, "'tokens', 'sentences', 'markdown'"),
        ({"chunk_tokens": 10, "overlap": 10}, "smaller than chunk_tokens"),
        ({"batch_chunks": 0}, "batch_chunks"),
    ],
)
def test_bad_options_list_what_is_allowed(
    tiny_embedder: SentenceTransformerEmbedder, kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        chunk_documents([{"id": "a", "text": "x"}], tiny_embedder, **kwargs)  # type: ignore[arg-type]


def test_progress_goes_to_stderr_only_when_asked(
    tiny_embedder: SentenceTransformerEmbedder,
    docs: list[dict[str, Any]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    chunk_documents(docs, tiny_embedder, chunking="naive", progress=False)
    assert capsys.readouterr() == ("", "")
    chunk_documents(docs, tiny_embedder, chunking="naive", progress=True)
    captured = capsys.readouterr()
    assert captured.out == "" and "embedding (naive)" in captured.err and "chunk/s" in captured.err


def test_progress_moves_with_each_slice_of_model_inputs(tiny_embedder: SentenceTransformerEmbedder) -> None:
    """The bar over chunks advances as each slice of ``batch_size`` inputs is embedded, not
    once per group: the embedder is called slice by slice and every call is reported."""
    from vecstore.ingest.pipeline import _Metered

    calls: list[int] = []
    reported: list[int] = []
    inner = tiny_embedder

    class Counting:
        model_id, dim, max_tokens = inner.model_id, inner.dim, inner.max_tokens

        def embed_documents(self, texts):
            calls.append(len(texts))
            return inner.embed_documents(texts)

        embed_queries = embed_documents

    metered = _Metered(Counting(), 8, reported.append)
    out = metered.embed_documents([f"text {i}" for i in range(20)])
    assert out.shape == (20, inner.dim) and calls == [8, 8, 4] and reported == [8, 8, 4]
    np.testing.assert_array_equal(out, inner.embed_documents([f"text {i}" for i in range(20)]))


def test_groups_leave_no_small_remainder(tiny_embedder: SentenceTransformerEmbedder, make_text,
                                         seeded: np.random.Generator) -> None:
    """Each group is embedded (and padded) on its own, so a remainder of less than half a group
    joins the group before it; every other group has at least ``batch_chunks`` chunks."""
    from vecstore.ingest.pipeline import ChunkPlan, prepare_documents

    docs = [{"id": f"d{i}", "text": make_text(seeded, 50 + 10 * i)} for i in range(10)]
    plan = ChunkPlan(prepare_documents(docs), tiny_embedder, chunking="naive", chunk_tokens=24,
                     overlap=4, progress=False)
    counts = [len(cd.chunks) for _, cd in plan.docs]
    assert len(counts) == 10 and min(counts) >= 2
    first_nine = sum(counts[:9])  # the last document alone would be a group of < half this
    groups = list(plan.embed(batch_chunks=first_nine, progress=False))
    assert [(g.n_documents, g.table.num_rows) for g in groups] == [(10, sum(counts))]
    total = sum(counts)
    for size in (1, 3, counts[0] + 1, total // 3, total // 2, total - 1, total + 1):
        groups = list(plan.embed(batch_chunks=size, progress=False))
        sizes = [g.table.num_rows for g in groups]
        assert sum(g.n_documents for g in groups) == 10 and sum(sizes) == sum(counts)
        assert all(n >= size for n in sizes[:-1])
        assert len(sizes) == 1 or 2 * sizes[-1] >= size, (size, sizes)
