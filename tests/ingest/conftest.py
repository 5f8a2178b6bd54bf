"""Fixtures for the ingestion tests: a tiny sentence-transformers model built in code.

The model is a 2-layer BERT with random weights, a WordPiece vocabulary written out here, 8,192
positions, a Dense layer after pooling (so late chunking must apply the modules after Pooling,
not merely normalise) and query/document prompts. Building and saving it takes about 0.1 s and
needs no download.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from vecstore.ingest.embedders import SentenceTransformerEmbedder

TINY_WORDS = (
    "the a an of to and in is it that for on with as was at by be this are from or have not "
    "but they his her he she we you i one all their there been has were which will more when "
    "meeting project team design remote control battery button product market cost user "
    "interface budget discussion decision point agenda minutes report chapter section "
    "introduction summary result method data model search vector index query document text "
    "chunk token window embedding late naive context heading title paragraph sentence"
).split()


def build_tiny_model(
    path: Path,
    *,
    max_positions: int = 8192,
    hidden: int = 32,
    out_dim: int = 24,
    prompts: dict[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Write a tiny random SentenceTransformer (Transformer, Pooling, Dense, Normalize) to ``path``."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import (
        Dense,
        Normalize,
        Pooling,
        Transformer,
    )
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = [c for c in string.printable if not c.isspace()]
    pieces = ["##" + c for c in string.ascii_lowercase + string.digits]
    vocab_list = list(dict.fromkeys(specials + chars + pieces + TINY_WORDS))
    vocab = {tok: i for i, tok in enumerate(vocab_list)}

    backend = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=max_positions,
    )

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=max_positions,
    )
    bert = BertModel(config).eval()
    hf_dir = path / "hf"
    bert.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)

    transformer = Transformer(str(hf_dir), max_seq_length=max_positions)
    pooling = Pooling(hidden, "mean")
    dense = Dense(hidden, out_dim, activation_function=torch.nn.Tanh())
    model = SentenceTransformer(
        modules=[transformer, pooling, dense, Normalize()], prompts=prompts, device="cpu"
    )
    st_dir = path / "st"
    model.save(str(st_dir))
    return st_dir


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 8k-position model with query/document prompts and a Dense layer after pooling."""
    return build_tiny_model(
        tmp_path_factory.mktemp("tiny_model"),
        prompts={"query": "query: ", "document": "passage: "},
    )


@pytest.fixture(scope="session")
def short_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny model that reads at most 64 tokens, to exercise documents longer than a window."""
    return build_tiny_model(tmp_path_factory.mktemp("short_model"), max_positions=64, seed=1)


@pytest.fixture(scope="session")
def tiny_embedder(tiny_model_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(tiny_model_dir, device="cpu", batch_size=8)


@pytest.fixture(scope="session")
def short_embedder(short_model_dir: Path) -> SentenceTransformerEmbedder:
    return SentenceTransformerEmbedder(short_model_dir, device="cpu", batch_size=8)


def words_text(rng: np.random.Generator, n_words: int, *, paragraphs: int = 1) -> str:
    """Seeded prose-like text: sentences of vocabulary words, in paragraphs."""
    vocab = TINY_WORDS + ["x" * 3, "Zebra", "naïve", "café", "2024", "e.g.", "U.S."]
    paras = []
    per = max(1, n_words // paragraphs)
    for _ in range(paragraphs):
        words = [str(w) for w in rng.choice(vocab, size=per)]
        sentences, i = [], 0
        while i < len(words):
            k = int(rng.integers(3, 12))
            s = " ".join(words[i : i + k])
            sentences.append(s[:1].upper() + s[1:] + rng.choice([".", "!", "?", ","]))
            i += k
        paras.append(" ".join(sentences))
    return "\n\n".join(paras)


@pytest.fixture
def make_text() -> Callable[..., str]:
    """``make_text(rng, n_words, paragraphs=1)``: seeded prose-like text."""
    return words_text


@pytest.fixture
def seeded() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def build_model() -> Callable[..., Path]:
    """``build_model(path, **options)``: write another tiny model (see :func:`build_tiny_model`)."""
    return build_tiny_model
