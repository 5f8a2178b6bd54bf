"""Split a document's text into chunks whose character spans map back to the source exactly.

Three chunkers, all pure functions of ``(text, tokenize, chunk_tokens, overlap)``:

- :func:`chunk_by_tokens`: fixed size in tokens of the embedding model's own tokenizer, with
  overlap; chunks end at whitespace, so no word is cut (a single word longer than a whole chunk
  is the one exception: it is cut at token boundaries).
- :func:`chunk_by_sentences`: packs whole paragraphs, else whole sentences, up to ``chunk_tokens``.
- :func:`chunk_markdown`: splits at Markdown headings first and keeps each chunk's heading path
  (``"Guide > Install > Linux"``) as its :attr:`Chunk.context`.

Every chunker guarantees, for every chunk ``c`` of ``text``: ``text[c.char_start:c.char_end] ==
c.text``; chunks are in document order, start and end on non-whitespace, and together cover every
non-whitespace character of the text. A document that is empty or only whitespace has no chunks.

``tokenize`` maps a text to the character spans of its tokens (no special tokens), e.g.
``SentenceTransformerEmbedder.token_offsets``; :func:`regex_token_offsets` is a model-free
approximation.

>>> text = "One sentence here. Another one there.\\n\\nA second paragraph."
>>> [c.text for c in chunk_by_sentences(text, regex_token_offsets, chunk_tokens=8)]
['One sentence here. Another one there.', 'A second paragraph.']
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgumentError

Tokenize = Callable[[str], Sequence[tuple[int, int]]]
"""A function from a text to the ``(start, end)`` character spans of its tokens."""

CHUNKERS = ("tokens", "sentences", "markdown")


@dataclass(frozen=True)
class Chunk:
    """One chunk of a document: its position, its exact text and optional context.

    ``context`` is text that situates the chunk without being part of it, such as the Markdown
    heading path of the section it sits in.
    """

    index: int
    char_start: int
    char_end: int
    text: str
    context: str | None = None


_WORD = re.compile(r"\S+")
_REGEX_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)


def regex_token_offsets(text: str) -> list[tuple[int, int]]:
    """Approximate tokens as runs of word characters and single punctuation marks.

    Used when no model tokenizer is at hand; a subword tokenizer gives somewhat more tokens.
    """
    return [m.span() for m in _REGEX_TOKEN.finditer(text)]


# --------------------------------------------------------------------------- helpers


class _Tokens:
    """The token start positions of one document, for counting tokens in any character range."""

    def __init__(self, text: str, tokenize: Tokenize) -> None:
        spans = np.asarray(tokenize(text), dtype=np.int64).reshape(-1, 2)
        spans = spans[spans[:, 1] > spans[:, 0]]  # special or empty tokens count for nothing
        self.starts: npt.NDArray[np.int64] = np.sort(spans[:, 0])

    def count(self, start: int, end: int) -> int:
        """The number of tokens that start inside ``[start, end)``."""
        lo, hi = np.searchsorted(self.starts, [start, end], side="left")
        return int(hi - lo)

    def counts(self, spans: Sequence[tuple[int, int]]) -> list[int]:
        if not spans:
            return []
        arr = np.asarray(spans, dtype=np.int64)
        lo = np.searchsorted(self.starts, arr[:, 0], side="left")
        hi = np.searchsorted(self.starts, arr[:, 1], side="left")
        return [int(x) for x in hi - lo]

    def starts_in(self, start: int, end: int) -> npt.NDArray[np.int64]:
        lo, hi = np.searchsorted(self.starts, [start, end], side="left")
        return self.starts[lo:hi]


@dataclass(frozen=True)
class _Unit:
    """A piece that is never split further: a word, a sentence, a paragraph, or part of one."""

    start: int
    end: int
    tokens: int


def check_sizes(chunk_tokens: int, overlap: int) -> None:
    if not isinstance(chunk_tokens, int) or isinstance(chunk_tokens, bool) or chunk_tokens < 1:
        raise InvalidArgumentError(f"chunk_tokens must be a positive integer, got {chunk_tokens!r}")
    if not isinstance(overlap, int) or isinstance(overlap, bool) or overlap < 0:
        raise InvalidArgumentError(f"overlap must be a non-negative integer, got {overlap!r}")
    if overlap >= chunk_tokens:
        raise InvalidArgumentError(f"overlap ({overlap}) must be smaller than chunk_tokens ({chunk_tokens})")


def _word_units(text: str, lo: int, hi: int, toks: _Tokens, limit: int) -> list[_Unit]:
    """Whitespace-separated words of ``text[lo:hi]``; a word over ``limit`` tokens is cut."""
    spans = [m.span() for m in _WORD.finditer(text, lo, hi)]  # absolute positions
    units: list[_Unit] = []
    for (s, e), n in zip(spans, toks.counts(spans), strict=True):
        if n <= limit:
            units.append(_Unit(s, e, n))
            continue
        # A "word" longer than a chunk (a URL, base64, text without spaces): cut at token starts.
        inner = toks.starts_in(s, e)
        cuts = [s] + [int(x) for x in inner[limit::limit]] + [e]
        units.extend(_Unit(a, b, toks.count(a, b)) for a, b in pairwise(cuts) if a < b)
    return units


def _pack(units: Sequence[_Unit], chunk_tokens: int, overlap: int) -> list[tuple[int, int]]:
    """Greedily pack consecutive units into spans of at most ``chunk_tokens`` tokens.

    Each new span repeats the trailing units of the previous one worth at most ``overlap``
    tokens, and always moves forward by at least one unit.
    """
    spans: list[tuple[int, int]] = []
    i, n = 0, len(units)
    while i < n:
        j, total = i, 0
        while j < n and (j == i or total + units[j].tokens <= chunk_tokens):
            total += units[j].tokens
            j += 1
        spans.append((units[i].start, units[j - 1].end))
        if j >= n:
            break
        k, carried = j, 0
        while k - 1 > i and carried + units[k - 1].tokens <= overlap:
            k -= 1
            carried += units[k].tokens
        i = k
    return spans


_PARAGRAPH_BREAK = re.compile(r"\n[ \t\r\f\v]*\n\s*")
# A sentence ends at . ! ? (plus closing quotes/brackets) followed by whitespace and something
# that can start a sentence, or at a line break: transcripts and lists put one statement a line.
_SENTENCE_END = re.compile(r"""[.!?…]+["'”’)\]]*(?=\s+["'“‘(\[]?[A-Z0-9])|\n""")


def _paragraph_spans(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = lo
    for m in _PARAGRAPH_BREAK.finditer(text, lo, hi):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, hi))
    return [s for s in (_strip(text, a, b) for a, b in spans) if s is not None]


def _sentence_spans(text: str, lo: int, hi: int) -> list[tuple[int, int]]:
    spans: list[tuple[int, int]] = []
    pos = lo
    for m in _SENTENCE_END.finditer(text, lo, hi):
        spans.append((pos, m.end()))
        pos = m.end()
    spans.append((pos, hi))
    return [s for s in (_strip(text, a, b) for a, b in spans) if s is not None]


def _strip(text: str, start: int, end: int) -> tuple[int, int] | None:
    """``(start, end)`` narrowed to exclude surrounding whitespace; None when nothing is left."""
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return (start, end) if start < end else None


def _sentence_pack(
    text: str, lo: int, hi: int, toks: _Tokens, chunk_tokens: int, overlap: int
) -> list[tuple[int, int]]:
    """Spans of ``text[lo:hi]`` made of whole paragraphs or whole sentences where they fit."""
    # A paragraph that fits goes in whole; a chunk that is at least half full is closed rather
    # than split a paragraph; otherwise the paragraph is broken into sentences (and a sentence
    # longer than a chunk into words).
    chunks: list[list[_Unit]] = []
    current: list[_Unit] = []
    used = 0
    fresh = False  # whether `current` holds a unit not already in an earlier chunk

    def close() -> None:
        nonlocal current, used, fresh
        chunks.append(current)
        carry: list[_Unit] = []
        carried = 0
        for unit in reversed(current[1:]):  # never carry a whole chunk: always move forward
            if carried + unit.tokens > overlap:
                break
            carry.insert(0, unit)
            carried += unit.tokens
        current, used, fresh = carry, carried, False

    def add(unit: _Unit) -> None:
        nonlocal used, fresh
        if used + unit.tokens > chunk_tokens:
            if fresh:
                close()
            while current and used + unit.tokens > chunk_tokens:  # drop carry that won't fit
                used -= current.pop(0).tokens
        current.append(unit)
        used += unit.tokens
        fresh = True

    for p_start, p_end in _paragraph_spans(text, lo, hi):
        p_tokens = toks.count(p_start, p_end)
        if used + p_tokens <= chunk_tokens:
            add(_Unit(p_start, p_end, p_tokens))
            continue
        if p_tokens <= chunk_tokens and used >= chunk_tokens // 2:
            add(_Unit(p_start, p_end, p_tokens))  # closes the current chunk first
            continue
        for s_start, s_end in _sentence_spans(text, p_start, p_end):
            s_tokens = toks.count(s_start, s_end)
            if s_tokens <= chunk_tokens:
                add(_Unit(s_start, s_end, s_tokens))
                continue
            words = _word_units(text, s_start, s_end, toks, chunk_tokens)
            for a, b in _pack(words, chunk_tokens, overlap):
                add(_Unit(a, b, toks.count(a, b)))
    if fresh:
        chunks.append(current)
    return [(units[0].start, units[-1].end) for units in chunks]


def _make_chunks(
    text: str, spans: Sequence[tuple[int, int]], contexts: Sequence[str | None] | None = None
) -> list[Chunk]:
    return [
        Chunk(i, s, e, text[s:e], contexts[i] if contexts is not None else None)
        for i, (s, e) in enumerate(spans)
    ]


# --------------------------------------------------------------------------- chunkers


def chunk_by_tokens(
    text: str,
    tokenize: Tokenize = regex_token_offsets,
    *,
    chunk_tokens: int = 128,
    overlap: int = 16,
) -> list[Chunk]:
    """Fixed-size chunks of at most ``chunk_tokens`` tokens, consecutive chunks sharing up to
    ``overlap`` tokens, cut only at whitespace.

    >>> [c.text for c in chunk_by_tokens("a b c d e", chunk_tokens=3, overlap=1)]
    ['a b c', 'c d e']
    """
    check_sizes(chunk_tokens, overlap)
    toks = _Tokens(text, tokenize)
    spans = _pack(_word_units(text, 0, len(text), toks, chunk_tokens), chunk_tokens, overlap)
    return _make_chunks(text, spans)


def chunk_by_sentences(
    text: str,
    tokenize: Tokenize = regex_token_offsets,
    *,
    chunk_tokens: int = 128,
    overlap: int = 0,
) -> list[Chunk]:
    """Chunks of whole paragraphs or whole sentences, at most ``chunk_tokens`` tokens each.

    A sentence longer than a chunk is cut at whitespace. ``overlap`` repeats the last whole
    sentences of a chunk, worth at most that many tokens, at the start of the next.
    """
    check_sizes(chunk_tokens, overlap)
    toks = _Tokens(text, tokenize)
    return _make_chunks(text, _sentence_pack(text, 0, len(text), toks, chunk_tokens, overlap))


_FENCE = re.compile(r"^ {0,3}(```|~~~)")
_ATX = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")


def markdown_sections(text: str) -> list[tuple[int, int, str | None]]:
    """``(start, end, heading_path)`` for each section of a Markdown text, in order.

    A section runs from its heading line to the next heading (fenced code blocks are not
    searched for headings). The heading path joins the titles of the enclosing headings with
    ``" > "``; text before the first heading has no path. A section holding nothing but its
    heading is merged into the section after it.
    """
    lines = text.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))
    heads: list[tuple[int, int, int, str]] = []  # (start, end of heading, level, title)
    in_fence: str | None = None
    for i, line in enumerate(lines):
        bare = line.rstrip("\r\n")
        fence = _FENCE.match(line)
        if fence:
            marker = fence.group(1)
            in_fence = None if in_fence == marker else (in_fence or marker)
            continue
        if in_fence:
            continue
        atx = _ATX.match(bare)
        if atx:
            title = (atx.group(2) or "").strip()
            heads.append((offsets[i], offsets[i + 1], len(atx.group(1)), title))
            continue
        setext = _SETEXT.match(bare)
        if setext and i > 0 and lines[i - 1].strip():
            prev = lines[i - 1]
            prev_is_heading = bool(heads) and heads[-1][0] == offsets[i - 1]
            if not prev_is_heading and not _FENCE.match(prev):
                level = 1 if setext.group(1)[0] == "=" else 2
                heads.append((offsets[i - 1], offsets[i + 1], level, prev.strip()))
    paths: list[str | None] = [None]
    stack: list[tuple[int, str]] = []
    for _, _, level, title in heads:
        while stack and stack[-1][0] >= level:
            stack.pop()
        stack.append((level, title))
        paths.append(" > ".join(t for _, t in stack if t) or None)
    bounds = [0] + [h[0] for h in heads] + [len(text)]
    head_ends = [0] + [h[1] for h in heads]
    sections: list[tuple[int, int, str | None]] = []
    pending: int | None = None  # start of heading-only sections waiting for the next section
    for k, (a, b) in enumerate(pairwise(bounds)):
        span = _strip(text, a, b)
        if span is None:
            continue
        start = span[0] if pending is None else pending
        if k > 0 and not text[head_ends[k] : b].strip():
            pending = start
            continue
        sections.append((start, span[1], paths[k]))
        pending = None
    if pending is not None:  # the document ends with headings only
        end = _strip(text, pending, len(text))
        sections.append((pending, end[1] if end else len(text), paths[-1]))
    return sections


def chunk_markdown(
    text: str,
    tokenize: Tokenize = regex_token_offsets,
    *,
    chunk_tokens: int = 128,
    overlap: int = 0,
) -> list[Chunk]:
    """Chunks that never straddle a Markdown heading, each carrying its heading path as context.

    Within a section, paragraphs and sentences are packed as in :func:`chunk_by_sentences`.

    >>> md = "# Guide\\nIntro.\\n## Install\\nRun pip."
    >>> [(c.text, c.context) for c in chunk_markdown(md)]
    [('# Guide\\nIntro.', 'Guide'), ('## Install\\nRun pip.', 'Guide > Install')]
    """
    check_sizes(chunk_tokens, overlap)
    toks = _Tokens(text, tokenize)
    spans: list[tuple[int, int]] = []
    contexts: list[str | None] = []
    for start, end, path in markdown_sections(text):
        for span in _sentence_pack(text, start, end, toks, chunk_tokens, overlap):
            spans.append(span)
            contexts.append(path)
    return _make_chunks(text, spans, contexts)


def chunk_text(
    text: str,
    tokenize: Tokenize = regex_token_offsets,
    *,
    chunker: str = "tokens",
    chunk_tokens: int = 128,
    overlap: int = 16,
) -> list[Chunk]:
    """Dispatch to the chunker named ``chunker``: one of ``"tokens"``, ``"sentences"``,
    ``"markdown"``."""
    name = parse_chunker(chunker)
    if name == "tokens":
        return chunk_by_tokens(text, tokenize, chunk_tokens=chunk_tokens, overlap=overlap)
    if name == "sentences":
        return chunk_by_sentences(text, tokenize, chunk_tokens=chunk_tokens, overlap=overlap)
    return chunk_markdown(text, tokenize, chunk_tokens=chunk_tokens, overlap=overlap)


def parse_chunker(chunker: str) -> str:
    """Normalise a chunker name; an unknown one raises an error listing the allowed names."""
    key = chunker.strip().lower() if isinstance(chunker, str) else chunker
    aliases = {"token": "tokens", "fixed": "tokens", "sentence": "sentences", "md": "markdown"}
    key = aliases.get(key, key)
    if key not in CHUNKERS:
        allowed = ", ".join(repr(c) for c in CHUNKERS)
        raise InvalidArgumentError(f"unknown chunker {chunker!r}; expected one of {allowed}")
    return str(key)


__all__ = [
    "CHUNKERS",
    "Chunk",
    "Tokenize",
    "chunk_by_sentences",
    "chunk_by_tokens",
    "chunk_markdown",
    "chunk_text",
    "markdown_sections",
    "parse_chunker",
    "regex_token_offsets",
]
