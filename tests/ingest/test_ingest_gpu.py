"""On a CUDA device: the embedder picks it, and late pooling there matches encode() and the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vecstore.ingest.chunking import chunk_by_tokens
from vecstore.ingest.embedders import SentenceTransformerEmbedder
from vecstore.ingest.situated import embed_chunks

pytestmark = pytest.mark.gpu


def test_late_chunking_on_cuda_matches_cpu(
    tiny_model_dir: Path, tiny_embedder: SentenceTransformerEmbedder, make_text, seeded
) -> None:
    gpu = SentenceTransformerEmbedder(tiny_model_dir)  # no device given: CUDA when present
    assert gpu.device.startswith("cuda")
    text = make_text(seeded, 1200, paragraphs=4)
    (tokens,) = gpu.token_embeddings([text])
    pooled = gpu.pool_tokens(tokens, np.ones((1, len(tokens.vectors)), dtype=bool))
    np.testing.assert_allclose(pooled, gpu.model.encode_document([text]), atol=1e-5)

    chunks = chunk_by_tokens(text, gpu.token_offsets, chunk_tokens=64, overlap=8)
    for mode in ("late", "context", "naive", "late+naive"):
        on_gpu = embed_chunks(gpu, text, chunks, mode)
        on_cpu = embed_chunks(tiny_embedder, text, chunks, mode)
        np.testing.assert_allclose(on_gpu, on_cpu, atol=1e-4)
