"""Chunkers: exact spans, coverage, sizes, word boundaries, Markdown sections."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vecstore.errors import InvalidArgumentError
from vecstore.ingest.chunking import (
    Chunk,
    chunk_by_sentences,
    chunk_by_tokens,
    chunk_markdown,
    chunk_text,
    markdown_sections,
    parse_chunker,
    regex_token_offsets,
)
from vecstore.ingest.embedders import SentenceTransformerEmbedder

CHUNKERS = ("tokens", "sentences", "markdown")


def n_tokens(text: str, chunk: Chunk, tokenize: Callable[[str], list[tuple[int, int]]]) -> int:
    return sum(1 for s, e in tokenize(text) if e > s and chunk.char_start <= s < chunk.char_end)


def check_invariants(text: str, chunks: list[Chunk]) -> None:
    """Exact spans, in order, trimmed, indexed 0..n-1, covering all non-whitespace."""
    covered = np.zeros(len(text), dtype=bool)
    last_start = -1
    for i, c in enumerate(chunks):
        assert c.index == i
        assert text[c.char_start : c.char_end] == c.text
        assert c.text and c.text == c.text.strip()
        assert c.char_start > last_start, "chunks must be in document order"
        last_start = c.char_start
        covered[c.char_start : c.char_end] = True
    missed = [i for i, ch in enumerate(text) if not ch.isspace() and not covered[i]]
    assert not missed, f"non-whitespace characters outside every chunk: {missed[:10]}"


@pytest.mark.parametrize("chunker", CHUNKERS)
@pytest.mark.parametrize("text", ["", "   ", "\n\n\t \n"])
def test_empty_documents_have_no_chunks(chunker: str, text: str) -> None:
    assert chunk_text(text, chunker=chunker) == []


@pytest.mark.parametrize("chunker", CHUNKERS)
def test_invariants_on_prose(chunker: str, seeded: np.random.Generator, make_text) -> None:
    text = make_text(seeded, 900, paragraphs=7)
    chunks = chunk_text(text, chunker=chunker, chunk_tokens=40, overlap=8)
    assert len(chunks) > 5
    check_invariants(text, chunks)
    for c in chunks:
        assert n_tokens(text, c, regex_token_offsets) <= 40


@settings(max_examples=60, deadline=None)
@given(
    text=st.lists(
        st.sampled_from(list("ab cd.\n!?#éZ9\t") + ["\n\n", "# ", "```", "==\n", "\u200b"]),
        max_size=150,
    ).map("".join),
    size=st.integers(1, 12),
    data=st.data(),
)
def test_invariants_hold_for_any_text(text: str, size: int, data: st.DataObject) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    for chunker in CHUNKERS:
        for tokenize in (regex_token_offsets, pair_tokens):
            chunks = chunk_text(text, tokenize, chunker=chunker, chunk_tokens=size, overlap=overlap)
            check_invariants(text, chunks)
            if not text.strip():
                assert chunks == []


def pair_tokens(text: str) -> list[tuple[int, int]]:
    """A subword-like tokenizer: every two characters of a word are a token."""
    return [(i, min(i + 2, m.end())) for m in re.finditer(r"\S+", text) for i in range(m.start(), m.end(), 2)]


def test_token_chunks_use_the_model_tokenizer(
    tiny_embedder: SentenceTransformerEmbedder, seeded: np.random.Generator, make_text
) -> None:
    text = make_text(seeded, 600, paragraphs=3)
    tokenize = tiny_embedder.token_offsets
    chunks = chunk_by_tokens(text, tokenize, chunk_tokens=50, overlap=10)
    check_invariants(text, chunks)
    sizes = [n_tokens(text, c, tokenize) for c in chunks]
    assert max(sizes) <= 50
    assert min(sizes[:-1]) >= 40  # greedy packing fills chunks up to a word's worth of tokens
    # subword tokens: the model's count is larger than a word count
    assert sum(sizes) > len(text.split())


def test_token_chunks_never_cut_words(seeded: np.random.Generator, make_text) -> None:
    text = make_text(seeded, 400)
    for c in chunk_by_tokens(text, chunk_tokens=17, overlap=5):
        assert c.char_start == 0 or text[c.char_start - 1].isspace()
        assert c.char_end == len(text) or text[c.char_end].isspace()


def test_token_chunk_overlap() -> None:
    text = " ".join(f"w{i}" for i in range(100))
    chunks = chunk_by_tokens(text, str_tokens, chunk_tokens=10, overlap=3)
    for a, b in zip(chunks, chunks[1:], strict=False):
        shared = set(a.text.split()) & set(b.text.split())
        assert len(shared) == 3
    no_overlap = chunk_by_tokens(text, str_tokens, chunk_tokens=10, overlap=0)
    assert [len(c.text.split()) for c in no_overlap] == [10] * 10


def str_tokens(text: str) -> list[tuple[int, int]]:
    return [m.span() for m in re.finditer(r"\S+", text)]


def test_a_word_longer_than_a_chunk_is_cut_at_tokens() -> None:
    text = "short " + "x" * 50 + " tail"
    chunks = chunk_by_tokens(
        text, lambda t: [(i, i + 1) for i, ch in enumerate(t) if ch != " "], chunk_tokens=8, overlap=0
    )
    check_invariants(text, chunks)
    assert all(len(c.text.replace(" ", "")) <= 8 for c in chunks)


def test_sentence_chunks_keep_paragraphs_and_sentences_whole() -> None:
    para1 = "The first paragraph has two sentences. It ends here."
    para2 = "Second paragraph! It is short."
    para3 = "Third one talks a lot. " * 6
    text = f"{para1}\n\n{para2}\n\n{para3.strip()}"
    chunks = chunk_by_sentences(text, chunk_tokens=20)
    check_invariants(text, chunks)
    assert chunks[0].text == f"{para1}\n\n{para2}"
    for c in chunks[1:]:
        assert c.text.endswith(".")  # whole sentences
        assert len(regex_token_offsets(c.text)) <= 20


def test_sentence_overlap_repeats_whole_sentences() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(12))
    chunks = chunk_by_sentences(text, chunk_tokens=12, overlap=6)
    check_invariants(text, chunks)
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.char_start < a.char_end  # overlapping
        assert text[b.char_start : a.char_end].endswith(".")


def test_markdown_sections_and_heading_paths() -> None:
    md = (
        "Preamble text.\n\n"
        "# Guide\n\nIntro paragraph.\n\n"
        "## Install\n\nRun the installer.\n\n"
        "```bash\n# not a heading\npip install vecstore\n```\n\n"
        "### Linux\n\nUse apt.\n\n"
        "## Usage\n\nCall connect().\n\n"
        "Setext Title\n============\n\nUnder setext.\n"
    )
    chunks = chunk_markdown(md, chunk_tokens=64)
    check_invariants(md, chunks)
    contexts = [c.context for c in chunks]
    assert contexts == [
        None,
        "Guide",
        "Guide > Install",
        "Guide > Install > Linux",
        "Guide > Usage",
        "Setext Title",
    ]
    assert "# not a heading" in chunks[2].text  # fenced code is not split at '#'
    assert chunks[3].text.startswith("### Linux")


def test_markdown_heading_only_sections_merge_forward() -> None:
    md = "# Report\n## Summary\nAll good.\n# Empty end"
    sections = markdown_sections(md)
    assert [md[s:e] for s, e, _ in sections] == ["# Report\n## Summary\nAll good.", "# Empty end"]
    assert [p for _, _, p in sections] == ["Report > Summary", "Empty end"]


def test_markdown_long_section_is_packed_by_sentences(seeded: np.random.Generator, make_text) -> None:
    body = make_text(seeded, 300, paragraphs=4)
    md = f"# Title\n\n{body}\n\n## Next\n\nDone."
    chunks = chunk_markdown(md, chunk_tokens=30)
    check_invariants(md, chunks)
    assert {c.context for c in chunks} == {"Title", "Title > Next"}
    assert all(len(regex_token_offsets(c.text)) <= 30 for c in chunks)


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (10, 10), (10, -1), (True, 0), (5.0, 1)])
def test_bad_sizes_raise(size: object, overlap: object) -> None:
    with pytest.raises(InvalidArgumentError):
        chunk_by_tokens("some text", chunk_tokens=size, overlap=overlap)  # type: ignore[arg-type]


def test_unknown_chunker_lists_the_allowed_ones() -> None:
    assert parse_chunker(" Markdown ") == "markdown"
    with pytest.raises(InvalidArgumentError, match="'tokens', 'sentences', 'markdown'"):
        parse_chunker("paragraphs")
