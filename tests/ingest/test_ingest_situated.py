"""Naive, context and late chunk embeddings, and their combinations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pytest

from vecstore.errors import InvalidArgumentError
from vecstore.ingest.chunking import Chunk, chunk_by_tokens, chunk_markdown
from vecstore.ingest.embedders import SentenceTransformerEmbedder, content_hash
from vecstore.ingest.situated import (
    ChunkedText,
    WindowOptions,
    _DocTokens,
    _late_windows,
    embed_chunked,
    embed_chunks,
    parse_mode,
)


class HashEmbedder:
    """A model-free embedder: a seeded unit vector per text. Records what it was asked."""

    model_id = "hash"
    dim = 8
    max_tokens = 40

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def _vec(self, text: str) -> npt.NDArray[np.float32]:
        rng = np.random.default_rng(int(content_hash(text)[:8], 16))
        v = rng.standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    def embed_documents(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        self.calls.append(list(texts))
        return np.stack([self._vec(t) for t in texts]) if texts else np.empty((0, 8), np.float32)

    def embed_queries(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        return self.embed_documents(texts)


def test_parse_mode() -> None:
    assert parse_mode("late") == ("late",)
    assert parse_mode(" Late + naive ") == ("late", "naive")
    assert parse_mode("naive+naive") == ("naive",)
    with pytest.raises(InvalidArgumentError, match="'late', 'context', 'naive'"):
        parse_mode("late+situated")
    with pytest.raises(InvalidArgumentError):
        parse_mode("")


def test_naive_is_each_chunk_alone(tiny_embedder: SentenceTransformerEmbedder, make_text, seeded) -> None:
    text = make_text(seeded, 200)
    chunks = chunk_by_tokens(text, tiny_embedder.token_offsets, chunk_tokens=40, overlap=5)
    got = embed_chunks(tiny_embedder, text, chunks, "naive")
    want = tiny_embedder.embed_documents([c.text for c in chunks])
    np.testing.assert_array_equal(got, want)


def test_late_in_one_window_pools_each_chunks_tokens(
    tiny_embedder: SentenceTransformerEmbedder, make_text, seeded
) -> None:
    text = make_text(seeded, 300)
    chunks = chunk_by_tokens(text, tiny_embedder.token_offsets, chunk_tokens=60, overlap=0)
    got = embed_chunks(tiny_embedder, text, chunks, "late", options=WindowOptions(titles=False))
    # by hand: the model reads the whole text once; each chunk pools the tokens in its span
    (tokens,) = tiny_embedder.token_embeddings([text])
    starts, ends = tokens.offsets[:, 0], tokens.offsets[:, 1]
    masks = np.stack([(starts >= 0) & (starts < c.char_end) & (ends > c.char_start) for c in chunks])
    np.testing.assert_allclose(got, tiny_embedder.pool_tokens(tokens, masks), atol=1e-5)
    naive = embed_chunks(tiny_embedder, text, chunks, "naive")
    assert not np.allclose(got, naive, atol=1e-3)  # the window's context changed the vectors
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)


def test_late_windows_never_exceed_the_model(
    short_embedder: SentenceTransformerEmbedder,
    make_text,
    seeded,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A 64-token model on a document of ~1,000 tokens: several overlapping windows, each
    within the model's max_seq_length, and every chunk pooled from exactly one of them."""
    text = make_text(seeded, 500, paragraphs=3)
    chunks = chunk_by_tokens(text, short_embedder.token_offsets, chunk_tokens=20, overlap=4)
    seen: list[tuple[list[str], list[list[tuple[int, int]]]]] = []
    real = short_embedder.embed_spans

    def spy(texts: list[str], spans: list[list[tuple[int, int]]]) -> list[np.ndarray]:
        seen.append((list(texts), [list(s) for s in spans]))
        return real(texts, spans)

    monkeypatch.setattr(short_embedder, "embed_spans", spy)
    vectors = embed_chunks(short_embedder, text, chunks, "late", title="A title")
    ((inputs, spans),) = seen
    assert len(inputs) > 10
    prompt_tokens = len(short_embedder.token_offsets(short_embedder.document_prompt))
    for window in inputs:
        n = len(short_embedder.token_offsets(window)) + prompt_tokens + 2
        assert n <= short_embedder.max_tokens == 64
        assert window.startswith("A title\n\n")
    assert sum(len(s) for s in spans) == len(chunks)
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_each_chunk_takes_the_window_where_it_is_most_central(
    short_embedder: SentenceTransformerEmbedder, make_text, seeded
) -> None:
    text = make_text(seeded, 400)
    offsets = short_embedder.token_offsets(text)
    chunks = chunk_by_tokens(text, lambda _t: offsets, chunk_tokens=12, overlap=0)
    doc = ChunkedText(text, chunks, None, offsets)
    toks = _DocTokens(doc, short_embedder)
    windows = _late_windows(0, doc, toks, short_embedder, WindowOptions(titles=False))
    assert len(windows) > 3
    assert sorted(k for w in windows for k in w.chunks) == list(range(len(chunks)))
    ranges = [toks.token_range(w.char_start, w.char_end) for w in windows]
    for w, (a, b) in zip(windows, ranges, strict=True):
        assert b - a <= short_embedder.window_budget()
        for k in w.chunks:
            t0, t1 = toks.token_range(chunks[k].char_start, chunks[k].char_end)
            assert a <= t0 and t1 <= b
            margin = min(t0 - a, b - t1)
            others = [min(t0 - x, y - t1) for x, y in ranges if x <= t0 and t1 <= y]
            assert margin == max(others)


def test_centred_late_windows(short_embedder: SentenceTransformerEmbedder, make_text, seeded) -> None:
    text = make_text(seeded, 300)
    chunks = chunk_by_tokens(text, short_embedder.token_offsets, chunk_tokens=16, overlap=0)
    doc = ChunkedText(text, chunks)
    toks = _DocTokens(doc, short_embedder)
    windows = _late_windows(0, doc, toks, short_embedder, WindowOptions(centred=True))
    assert len(windows) > len(chunks) // 2  # most chunks get a window of their own
    for w in windows:
        a, b = toks.token_range(w.char_start, w.char_end)
        assert b - a <= short_embedder.window_budget()
        for k in w.chunks:  # chunks share a window only where it is pinned to the text's edge
            c = chunks[k]
            assert w.char_start <= c.char_start and c.char_end <= w.char_end
            t0, t1 = toks.token_range(c.char_start, c.char_end)
            if len(w.chunks) == 1 and 0 < a and b < toks.n:
                assert abs((t0 - a) - (b - t1)) <= 6  # centred, up to snapping to whole words
            else:
                assert a == 0 or b == toks.n
    sliding = embed_chunks(short_embedder, text, chunks, "late")
    centred = embed_chunks(short_embedder, text, chunks, "late", options=WindowOptions(centred=True))
    assert sliding.shape == centred.shape


def test_context_embeds_the_chunk_with_its_surroundings() -> None:
    emb = HashEmbedder()
    md = "# Manual\n\n" + " ".join(f"word{i}" for i in range(60)) + "\n\n## Part two\n\nThe end."
    chunks = chunk_markdown(md, chunk_tokens=10)
    vectors = embed_chunks(emb, md, chunks, "context", title="Doc title")
    (inputs,) = emb.calls
    assert len(inputs) == len(chunks) == len(vectors)
    for text, c in zip(inputs, chunks, strict=True):
        assert c.text in text
        assert text.startswith(f"Doc title\n{c.context}\n\n")
        assert len(text) > len(c.text) + len("Doc title") + 3  # neighbours included
    np.testing.assert_allclose(vectors, emb.embed_documents(inputs))

    emb.calls.clear()
    embed_chunks(emb, md, chunks, "context", options=WindowOptions(titles=False))
    assert all(not t.startswith("Doc title") and not t.startswith("Manual\n") for t in emb.calls[0])


def test_combined_modes_average_and_renormalise(
    tiny_embedder: SentenceTransformerEmbedder, make_text, seeded
) -> None:
    text = make_text(seeded, 150)
    chunks = chunk_by_tokens(text, tiny_embedder.token_offsets, chunk_tokens=30, overlap=0)
    late = embed_chunks(tiny_embedder, text, chunks, "late")
    naive = embed_chunks(tiny_embedder, text, chunks, "naive")
    both = embed_chunks(tiny_embedder, text, chunks, "late+naive")
    mean = (late + naive) / 2
    np.testing.assert_allclose(both, mean / np.linalg.norm(mean, axis=1, keepdims=True), atol=1e-5)


def test_late_needs_token_embeddings() -> None:
    with pytest.raises(InvalidArgumentError, match="token embeddings"):
        embed_chunks(HashEmbedder(), "some text here", [Chunk(0, 0, 4, "some")], "late")


def test_chunks_must_match_the_text(tiny_embedder: SentenceTransformerEmbedder) -> None:
    with pytest.raises(InvalidArgumentError, match="does not match"):
        embed_chunks(tiny_embedder, "some text", [Chunk(0, 0, 4, "text")], "naive")


def test_batched_equals_one_by_one(tiny_embedder: SentenceTransformerEmbedder, make_text, seeded) -> None:
    texts = [make_text(seeded, n) for n in (30, 120, 70)]
    docs = [
        ChunkedText(t, chunk_by_tokens(t, tiny_embedder.token_offsets, chunk_tokens=25, overlap=5))
        for t in texts
    ]
    for mode in ("late", "context"):
        batched = embed_chunked(tiny_embedder, docs, mode)
        for doc, got in zip(docs, batched, strict=True):
            alone = embed_chunks(tiny_embedder, doc.text, doc.chunks, mode)
            np.testing.assert_allclose(got, alone, atol=1e-5)


def test_late_windows_hold_every_chunk_whole_even_when_chunks_fill_the_window(tiny_embedder) -> None:
    """Chunks nearly as long as the window fit in no sliding window; each then gets a window
    centred on it instead of being clipped (found by bench/quality.py at 256-token chunks)."""
    from vecstore.ingest.chunking import chunk_text
    from vecstore.ingest.situated import ChunkedText, WindowOptions, _DocTokens, _late_windows

    rng = np.random.default_rng(3)
    words = [f"w{int(i)}" for i in rng.integers(0, 50, 3000)]
    text = " ".join(words)
    budget = tiny_embedder.window_budget("")
    opts = WindowOptions(window_tokens=64)
    chunks = chunk_text(text, tiny_embedder.token_offsets, chunk_tokens=min(60, budget), overlap=0)
    doc = ChunkedText(text, chunks)
    windows = _late_windows(0, doc, _DocTokens(doc, tiny_embedder), tiny_embedder, opts)
    placed = sorted(k for w in windows for k in w.chunks)
    assert placed == list(range(len(chunks)))
    for w in windows:
        for k in w.chunks:
            assert w.char_start <= chunks[k].char_start and chunks[k].char_end <= w.char_end
