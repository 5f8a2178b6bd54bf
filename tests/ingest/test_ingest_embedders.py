"""The sentence-transformers embedder on a tiny model built in code."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vecstore.errors import InvalidArgumentError, NotFoundError
from vecstore.ingest.embedders import (
    Embedder,
    SentenceTransformerEmbedder,
    TokenEmbedder,
    content_hash,
    get_embedder,
)

TEXTS = [
    "The meeting discussed the remote control design.",
    "Battery cost was the main point of the agenda.",
    "short",
]


def test_shape_dtype_and_protocols(tiny_embedder: SentenceTransformerEmbedder) -> None:
    assert isinstance(tiny_embedder, Embedder)
    assert isinstance(tiny_embedder, TokenEmbedder)
    assert tiny_embedder.dim == 24  # the Dense layer after pooling sets the dimension
    assert tiny_embedder.max_tokens == 8192
    assert tiny_embedder.normalized
    out = tiny_embedder.embed_documents(TEXTS)
    assert out.shape == (3, 24) and out.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert tiny_embedder.embed_documents([]).shape == (0, 24)


def test_uses_the_models_own_prompts(tiny_embedder: SentenceTransformerEmbedder) -> None:
    model = tiny_embedder.model
    assert tiny_embedder.query_prompt == "query: "
    assert tiny_embedder.document_prompt == "passage: "
    docs = tiny_embedder.embed_documents(TEXTS)
    queries = tiny_embedder.embed_queries(TEXTS)
    np.testing.assert_allclose(docs, model.encode(TEXTS, prompt="passage: "), atol=1e-6)
    np.testing.assert_allclose(queries, model.encode(TEXTS, prompt="query: "), atol=1e-6)
    assert not np.allclose(docs, queries)


def test_a_passage_prompt_is_the_document_prompt(tmp_path: Path, build_model) -> None:
    emb = SentenceTransformerEmbedder(build_model(tmp_path, prompts={"passage": "p: "}), device="cpu")
    assert (emb.query_prompt, emb.document_prompt) == ("", "p: ")
    np.testing.assert_allclose(emb.embed_documents(TEXTS), emb.model.encode(TEXTS, prompt="p: "), atol=1e-6)


def test_content_hash_cache_skips_unchanged_text(
    tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    emb = SentenceTransformerEmbedder(tiny_model_dir, device="cpu", cache_size=4)
    seen: list[list[str]] = []
    encode = emb._encode

    def spy(texts: list[str], prompt: str) -> np.ndarray:
        seen.append(list(texts))
        return encode(texts, prompt)

    monkeypatch.setattr(emb, "_encode", spy)
    first = emb.embed_documents(["a", "b", "a"])
    assert seen == [["a", "b"]]  # duplicates in one call are embedded once
    again = emb.embed_documents(["b", "c", "a"])
    assert seen[-1] == ["c"]
    np.testing.assert_array_equal(again[[0, 2]], first[[1, 0]])
    emb.embed_queries(["a"])  # another prompt: another key
    assert seen[-1] == ["a"]
    emb.embed_documents(["d", "e", "f", "g"])
    assert emb.cache_len == 4  # bounded


def test_content_hash_is_sha256_hex() -> None:
    assert content_hash("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    assert content_hash("abc") != content_hash("abd")


def test_token_offsets_map_back_to_the_text(tiny_embedder: SentenceTransformerEmbedder) -> None:
    text = "Hello, naïve world!  Meeting  minutes."
    offsets = tiny_embedder.token_offsets(text)
    assert offsets and all(0 <= s < e <= len(text) for s, e in offsets)
    assert "".join(text[s:e] for s, e in offsets) == "".join(text.split())
    assert tiny_embedder.token_offsets("") == []
    # the budget leaves room for the special tokens, the document prompt and a prefix
    budget = tiny_embedder.window_budget()
    assert budget == 8192 - 2 - len(tiny_embedder.token_offsets("passage: "))
    assert tiny_embedder.window_budget("A title") < budget


@pytest.mark.parametrize("n_words", [8, 1500])
def test_pooling_the_whole_window_equals_encode(
    tiny_embedder: SentenceTransformerEmbedder, make_text, seeded: np.random.Generator, n_words: int
) -> None:
    """Late chunking's building block: pooling every token of a window, then the modules after
    Pooling (here Dense + Normalize), is exactly what encode() does, long windows included."""
    text = make_text(seeded, n_words)
    (tokens,) = tiny_embedder.token_embeddings([text])
    assert len(tokens.vectors) <= tiny_embedder.max_tokens
    if n_words > 1000:
        assert len(tokens.vectors) > 2000  # a long window: positions far past 512 are used
    pooled = tiny_embedder.pool_tokens(tokens, np.ones((1, len(tokens.vectors)), dtype=bool))
    np.testing.assert_allclose(pooled, tiny_embedder.model.encode_document([text]), atol=1e-5)
    # token offsets: prompt and special tokens are outside the text
    inside = tokens.offsets[:, 0] >= 0
    assert inside.sum() == len(tiny_embedder.token_offsets(text))


def test_embed_spans_pools_each_spans_own_tokens(tiny_embedder: SentenceTransformerEmbedder) -> None:
    text = TEXTS[0] + " " + TEXTS[1]
    cut = len(TEXTS[0])
    spans = [(0, cut), (cut + 1, len(text))]
    (vectors,) = tiny_embedder.embed_spans([text], [spans])
    (tokens,) = tiny_embedder.token_embeddings([text])
    starts, ends = tokens.offsets[:, 0], tokens.offsets[:, 1]
    masks = np.stack([(starts >= 0) & (starts < e) & (ends > s) for s, e in spans])
    np.testing.assert_allclose(vectors, tiny_embedder.pool_tokens(tokens, masks), atol=1e-6)
    assert not np.allclose(vectors[0], vectors[1])
    # a span with no token at all falls back to embedding its text alone
    (fallback,) = tiny_embedder.embed_spans(["ab \u200b cd"], [[(3, 4)]])
    np.testing.assert_allclose(fallback[0], tiny_embedder.embed_documents(["\u200b"])[0], atol=1e-6)


def test_late_pooling_refuses_cls_models(tiny_model_dir: Path) -> None:
    emb = SentenceTransformerEmbedder(tiny_model_dir, device="cpu")
    emb._pooling.pooling_mode = "cls"  # type: ignore[union-attr]
    with pytest.raises(InvalidArgumentError, match="'cls'.*chunking='context'"):
        emb.embed_spans(["some text"], [[(0, 4)]])


def test_get_embedder_caches_models_and_passes_embedders_through(tiny_model_dir: Path) -> None:
    first = get_embedder(str(tiny_model_dir))
    assert get_embedder(tiny_model_dir) is first
    assert get_embedder(first) is first
    assert first.model_id == str(tiny_model_dir.resolve())


@pytest.mark.parametrize("spec", ["", "   ", 42, None])
def test_get_embedder_rejects_bad_specs(spec: object) -> None:
    with pytest.raises(InvalidArgumentError):
        get_embedder(spec)  # type: ignore[arg-type]


def test_a_missing_model_is_not_found(tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="cannot load the embedding model"):
        SentenceTransformerEmbedder(tmp_path / "no-such-model")


def test_single_string_is_rejected(tiny_embedder: SentenceTransformerEmbedder) -> None:
    with pytest.raises(InvalidArgumentError, match="wrap it in a list"):
        tiny_embedder.embed_documents("just one")
