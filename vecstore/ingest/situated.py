"""Chunk embeddings that keep (or ignore) the meaning a chunk's surroundings give it.

Modes, named by the ``chunking=`` argument of the pipeline:

- ``"naive"``: each chunk embedded alone.
- ``"context"``: each chunk embedded together with its neighbouring text (a window centred on
  it) and, with ``titles=True``, the document's title and the chunk's heading path in front.
- ``"late"``: late chunking. The model reads a whole window of the document (never more than
  its own ``max_seq_length``); each chunk's vector is the pooling of the window's token
  embeddings over the chunk's own tokens, passed through the model's modules after Pooling
  (Dense layers, Normalize), so it lives in the same space as ``encode()``. A document longer
  than one window is covered by windows overlapping by half (``stride``), and each chunk takes
  its tokens from the window where it sits most centrally; ``centred=True`` instead gives every
  chunk a window centred on it.
- ``"late+naive"``, ``"context+naive"``, ...: the mean of the named modes' vectors (renormalised
  when they are unit vectors), to measure whether a chunk's own vector helps its situated one.
- ``"naive|late"``, ``"naive|context"``, ...: several vectors per chunk, kept side by side
  (``|``) in a multi-vector table: the first in ``vector``, each further one in
  ``vector_<mode>`` (``vector_late``); a query scores the chunk by the best of them (or as the
  table's ``combine`` says). Each part may itself be a mean (``"naive|late+context"``).

Nothing here decides which mode is best: ``bench/`` measures them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgumentError
from .chunking import Chunk, regex_token_offsets
from .embedders import Embedder, TokenEmbedder

MODES = ("late", "context", "naive")

Vectors = npt.NDArray[np.float32]


def parse_chunking(mode: str) -> tuple[tuple[str, ...], ...]:
    """The vectors a chunking mode makes per chunk, each the mean of some base modes:
    ``"naive|late+context"`` -> ``(("naive",), ("late", "context"))``."""
    if not isinstance(mode, str) or not mode.strip():
        raise InvalidArgumentError(f"chunking must be a string such as 'late', got {mode!r}")
    groups = tuple(parse_mode(part) for part in mode.split("|"))
    names = vector_columns_of(groups)
    if len(set(names)) != len(names) or len({frozenset(g) for g in groups}) != len(groups):
        raise InvalidArgumentError(f"chunking {mode!r} names the same vector twice")
    return groups


def vector_columns_of(groups: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """The table's vector columns for these groups: ``vector``, then ``vector_<mode>``."""
    return ("vector", *("vector_" + "_".join(g) for g in groups[1:]))


def vector_columns(mode: str) -> tuple[str, ...]:
    """The vector columns ``mode`` fills: ``"naive|late"`` -> ``("vector", "vector_late")``."""
    return vector_columns_of(parse_chunking(mode))


def parse_mode(mode: str) -> tuple[str, ...]:
    """``"late+naive"`` -> ``("late", "naive")``: the base modes of one vector, averaged; an
    unknown name raises an error listing the allowed ones."""
    if not isinstance(mode, str) or not mode.strip():
        raise InvalidArgumentError(f"chunking must be a string such as 'late', got {mode!r}")
    if "|" in mode:
        raise InvalidArgumentError(
            f"chunking {mode!r} makes several vectors per chunk; this function makes one "
            "(see parse_chunking / embed_chunked_columns)")
    parts = tuple(dict.fromkeys(p.strip().lower() for p in mode.split("+")))
    for part in parts:
        if part not in MODES:
            allowed = ", ".join(repr(m) for m in MODES)
            raise InvalidArgumentError(
                f"unknown chunking mode {part!r} in {mode!r}; expected one of {allowed}, "
                "several joined with '+' (their mean, e.g. 'late+naive') or with '|' (kept as "
                "separate vectors, e.g. 'naive|late')"
            )
    return parts


@dataclass(frozen=True)
class WindowOptions:
    """How situated modes choose the text around a chunk.

    ``window_tokens``: document tokens per window; None means as many as the model reads at once
    for ``"late"``, and twice the chunk's own tokens for ``"context"`` (a chunk with a quarter
    window of text on each side), in both cases capped by the model's ``max_seq_length``.
    ``stride``: tokens between the starts of consecutive late windows (default: half a window, so
    the model reads each token of a long document about twice: late chunking then costs about
    twice naive chunking; a larger stride is cheaper and leaves chunks less centred).
    ``centred``: give each chunk a late window centred on it instead of sliding windows.
    ``titles``: put the document's title (and, where a window serves a single chunk, its
    heading path) in front of the window, outside any chunk's pooled tokens.
    """

    window_tokens: int | None = None
    stride: int | None = None
    centred: bool = False
    titles: bool = True

    def __post_init__(self) -> None:
        for name in ("window_tokens", "stride"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InvalidArgumentError(f"{name} must be a positive integer or None, got {value!r}")


@dataclass(frozen=True)
class ChunkedText:
    """A document's text, its chunks and what situates it: the input of :func:`embed_chunked`."""

    text: str
    chunks: Sequence[Chunk]
    title: str | None = None
    token_offsets: Sequence[tuple[int, int]] | None = None
    """The document's token spans, when the caller already has them (saves tokenizing again)."""


# --------------------------------------------------------------------------- windows


class _DocTokens:
    def __init__(self, doc: ChunkedText, embedder: Embedder) -> None:
        if doc.token_offsets is not None:
            offsets = doc.token_offsets
        elif isinstance(embedder, TokenEmbedder):
            offsets = embedder.token_offsets(doc.text)
        else:
            offsets = regex_token_offsets(doc.text)
        arr = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)
        arr = arr[arr[:, 1] > arr[:, 0]]
        self.text = doc.text
        self.starts = arr[:, 0]
        self.ends = arr[:, 1]
        self.n = len(arr)

    def token_range(self, char_start: int, char_end: int) -> tuple[int, int]:
        lo, hi = np.searchsorted(self.starts, [char_start, char_end], side="left")
        return int(lo), int(hi)

    def _mid_word_start(self, t: int) -> bool:
        start = int(self.starts[t])
        return start > 0 and not self.text[start - 1].isspace()

    def _mid_word_end(self, t: int) -> bool:
        end = int(self.ends[t])
        return end < len(self.text) and not self.text[end].isspace()

    def char_range(self, a: int, b: int, keep: tuple[int, int] | None = None) -> tuple[int, int]:
        """Characters of tokens ``[a, b)``, moved inwards to word boundaries where possible, and
        never excluding ``keep`` (a chunk's own span)."""
        if self.n == 0 or a >= b:
            return (0, len(self.text)) if keep is None else keep
        lo_limit = b - 1 if keep is None else min(b - 1, self.token_range(*keep)[0])
        a0 = a
        while a0 < lo_limit and self._mid_word_start(a0):
            a0 += 1
        if self._mid_word_start(a0):
            a0 = a  # no boundary found: cut inside the word
        hi_limit = a0 + 1 if keep is None else max(a0 + 1, self.token_range(*keep)[1])
        b0 = b
        while b0 > hi_limit and self._mid_word_end(b0 - 1):
            b0 -= 1
        if self._mid_word_end(b0 - 1):
            b0 = b
        start, end = int(self.starts[a0]), int(self.ends[b0 - 1])
        if keep is not None:
            start, end = min(start, keep[0]), max(end, keep[1])
        return start, end


def _centred(t0: int, t1: int, n: int, budget: int) -> tuple[int, int]:
    """A token window of ``budget`` tokens (fewer if the text is shorter) centred on [t0, t1)."""
    if t1 - t0 >= budget:
        return t0, t0 + budget
    extra = budget - (t1 - t0)
    a, b = t0 - extra // 2, t1 + (extra - extra // 2)
    if a < 0:
        a, b = 0, b - a
    if b > n:
        a, b = max(0, a - (b - n)), n
    return a, b


def _prefix(title: str | None, heading: str | None) -> str:
    parts = [p.strip() for p in (title, heading) if p and p.strip()]
    if len(parts) == 2 and parts[1].startswith(parts[0]):
        parts = parts[1:]  # a heading path that starts with the title says it already
    return "\n".join(parts) + "\n\n" if parts else ""


def _budget(embedder: Embedder, prefix: str, window_tokens: int | None) -> int:
    if isinstance(embedder, TokenEmbedder):
        budget = embedder.window_budget(prefix)
    else:
        # Without the model's tokenizer, word-level counts understate subword tokens: keep room.
        budget = int((embedder.max_tokens - 2) * 0.75) - len(regex_token_offsets(prefix))
    if window_tokens is not None:
        budget = min(budget, window_tokens)
    return max(1, budget)


@dataclass(frozen=True)
class _Window:
    doc: int
    prefix: str
    char_start: int
    char_end: int
    chunks: tuple[int, ...]

    @property
    def key(self) -> tuple[int, str, int, int]:
        return (self.doc, self.prefix, self.char_start, self.char_end)


def _late_windows(
    d: int, doc: ChunkedText, toks: _DocTokens, embedder: Embedder, opts: WindowOptions
) -> list[_Window]:
    title = doc.title if opts.titles else None
    if opts.centred:
        merged: dict[tuple[int, str, int, int], list[int]] = {}
        for k, c in enumerate(doc.chunks):
            prefix = _prefix(title, c.context if opts.titles else None)
            budget = _budget(embedder, prefix, opts.window_tokens)
            t0, t1 = toks.token_range(c.char_start, c.char_end)
            a, b = _centred(t0, t1, toks.n, budget)
            start, end = toks.char_range(a, b, keep=(c.char_start, c.char_end))
            merged.setdefault((d, prefix, start, end), []).append(k)
        return [_Window(d, p, s, e, tuple(ks)) for (_, p, s, e), ks in merged.items()]

    prefix = _prefix(title, None)
    budget = _budget(embedder, prefix, opts.window_tokens)
    n = toks.n
    if n <= budget:
        ranges = [(0, n)]
    else:
        stride = opts.stride or max(1, budget // 2)
        ranges = [(a, a + budget) for a in range(0, n - budget, stride)] + [(n - budget, n)]
    spans = [toks.char_range(a, b) for a, b in ranges]
    if n == 0:
        spans = [(0, len(doc.text))]
    tok_spans = [toks.token_range(s, e) for s, e in spans]
    members: list[list[int]] = [[] for _ in spans]
    own: list[_Window] = []
    for k, c in enumerate(doc.chunks):
        t0, t1 = toks.token_range(c.char_start, c.char_end)
        best, best_score = 0, (-1, -(10**12))
        for w, (a, b) in enumerate(tok_spans):
            inside = a <= t0 and t1 <= b
            # whole chunks first, then the most central one; else the one that holds most of it
            score = (1, min(t0 - a, b - t1)) if inside else (0, min(b, t1) - max(a, t0))
            if score > best_score:
                best, best_score = w, score
        if best_score[0] == 1:
            members[best].append(k)
        else:
            # No sliding window holds the chunk whole (chunks nearly as long as the window):
            # give it a window centred on it, so it pools all of its own tokens.
            a, b = _centred(t0, t1, n, budget)
            start, end = toks.char_range(a, b, keep=(c.char_start, c.char_end))
            own.append(_Window(d, prefix, start, end, (k,)))
    shared = [_Window(d, prefix, s, e, tuple(ks)) for (s, e), ks in zip(spans, members, strict=True) if ks]
    return shared + own


# --------------------------------------------------------------------------- modes


def _naive(embedder: Embedder, docs: Sequence[ChunkedText]) -> list[Vectors]:
    texts = [c.text for doc in docs for c in doc.chunks]
    return _split(embedder.embed_documents(texts), docs, embedder.dim)


def _context(
    embedder: Embedder, docs: Sequence[ChunkedText], toks: Sequence[_DocTokens], opts: WindowOptions
) -> list[Vectors]:
    return _split(embedder.embed_documents(_context_inputs(embedder, docs, toks, opts)), docs, embedder.dim)


def _context_inputs(
    embedder: Embedder, docs: Sequence[ChunkedText], toks: Sequence[_DocTokens], opts: WindowOptions
) -> list[str]:
    inputs: list[str] = []
    for doc, tk in zip(docs, toks, strict=True):
        title = doc.title if opts.titles else None
        for c in doc.chunks:
            prefix = _prefix(title, c.context if opts.titles else None)
            t0, t1 = tk.token_range(c.char_start, c.char_end)
            window = opts.window_tokens if opts.window_tokens is not None else 2 * max(1, t1 - t0)
            a, b = _centred(t0, t1, tk.n, _budget(embedder, prefix, window))
            start, end = tk.char_range(a, b, keep=(c.char_start, c.char_end))
            inputs.append(prefix + doc.text[start:end])
    return inputs


def _late(
    embedder: Embedder, docs: Sequence[ChunkedText], toks: Sequence[_DocTokens], opts: WindowOptions
) -> list[Vectors]:
    if not isinstance(embedder, TokenEmbedder):
        raise InvalidArgumentError(
            f"late chunking needs the model's token embeddings, which {type(embedder).__name__} "
            "does not expose; use chunking='context' or 'naive', or a sentence-transformers model"
        )
    windows = [w for d, doc in enumerate(docs) for w in _late_windows(d, doc, toks[d], embedder, opts)]
    inputs: list[str] = []
    spans: list[list[tuple[int, int]]] = []
    for w in windows:
        # chunk spans in the window's input: shifted past the prefix, clipped to the window
        shift = len(w.prefix) - w.char_start
        chunks = [docs[w.doc].chunks[k] for k in w.chunks]
        inputs.append(w.prefix + docs[w.doc].text[w.char_start : w.char_end])
        spans.append(
            [(max(c.char_start, w.char_start) + shift, min(c.char_end, w.char_end) + shift) for c in chunks]
        )
    out = [np.zeros((len(doc.chunks), embedder.dim), np.float32) for doc in docs]
    for w, vectors in zip(windows, embedder.embed_spans(inputs, spans), strict=True):
        out[w.doc][list(w.chunks)] = vectors
    return out


def _split(flat: Vectors, docs: Sequence[ChunkedText], dim: int) -> list[Vectors]:
    out, pos = [], 0
    for doc in docs:
        out.append(np.asarray(flat[pos : pos + len(doc.chunks)], dtype=np.float32).reshape(-1, dim))
        pos += len(doc.chunks)
    return out


def _combine(parts: Sequence[Vectors]) -> Vectors:
    if len(parts) == 1:
        return parts[0]
    mean: Vectors = np.stack(parts).astype(np.float32).mean(axis=0)
    unit = all(np.allclose(np.linalg.norm(p, axis=1), 1.0, atol=1e-3) for p in parts if len(p))
    if unit and len(mean):
        mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return mean.astype(np.float32, copy=False)


def late_windows_of(docs: Sequence[ChunkedText], embedder: Embedder,
                    options: WindowOptions | None = None) -> list[_Window]:
    """The windows late chunking reads for ``docs`` (one model input each)."""
    opts = options or WindowOptions()
    toks = [_DocTokens(doc, embedder) for doc in docs]
    return [w for d, doc in enumerate(docs) for w in _late_windows(d, doc, toks[d], embedder, opts)]


def model_inputs(embedder: Embedder, docs: Sequence[ChunkedText], mode: str = "context",
                 options: WindowOptions | None = None) -> list[str]:
    """The texts a mode hands the model for ``docs`` (chunks for naive, windows around them
    for context, the late windows for late; every mode's, for a combination): what a bare
    ``model.encode`` must embed to do the same work, e.g. to measure the pipeline's overhead."""
    opts = options or WindowOptions()
    toks = [_DocTokens(doc, embedder) for doc in docs]
    out: list[str] = []
    for m in dict.fromkeys(x for g in parse_chunking(mode) for x in g):  # each base mode once
        if m == "naive":
            out.extend(c.text for doc in docs for c in doc.chunks)
        elif m == "context":
            out.extend(_context_inputs(embedder, docs, toks, opts))
        else:
            out.extend(w.prefix + docs[w.doc].text[w.char_start:w.char_end]
                       for w in late_windows_of(docs, embedder, opts))
    return out


def embed_chunked(
    embedder: Embedder,
    docs: Sequence[ChunkedText],
    mode: str = "late",
    options: WindowOptions | None = None,
) -> list[Vectors]:
    """Embed the chunks of many documents at once (batched across documents): one
    ``(len(doc.chunks), embedder.dim)`` float32 array per document, in order."""
    return [cols[0] for cols in embed_chunked_columns(embedder, docs, (parse_mode(mode),), options)]


def embed_chunked_columns(
    embedder: Embedder,
    docs: Sequence[ChunkedText],
    mode: str | Sequence[Sequence[str]] = "naive|late",
    options: WindowOptions | None = None,
) -> list[list[Vectors]]:
    """Like :func:`embed_chunked` for a mode that makes several vectors per chunk
    (``"naive|late"``): per document, one ``(len(doc.chunks), dim)`` array per vector column
    (:func:`vector_columns`). Each base mode runs once, whatever the groups share."""
    groups = parse_chunking(mode) if isinstance(mode, str) else tuple(
        (g,) if isinstance(g, str) else tuple(g) for g in mode)
    opts = options or WindowOptions()
    modes = tuple(dict.fromkeys(m for g in groups for m in g))
    toks = [_DocTokens(doc, embedder) for doc in docs] if set(modes) - {"naive"} else []
    per_mode: dict[str, list[Vectors]] = {}
    for m in modes:
        if m == "naive":
            per_mode[m] = _naive(embedder, docs)
        elif m == "context":
            per_mode[m] = _context(embedder, docs, toks, opts)
        else:
            per_mode[m] = _late(embedder, docs, toks, opts)
    return [[_combine([per_mode[m][d] for m in g]) for g in groups] for d in range(len(docs))]


def embed_chunks(
    embedder: Embedder,
    text: str,
    chunks: Sequence[Chunk],
    mode: str = "late",
    *,
    title: str | None = None,
    options: WindowOptions | None = None,
) -> Vectors:
    """Embed the chunks of one document: a ``(len(chunks), embedder.dim)`` float32 array.

    ``mode`` is ``"late"``, ``"context"``, ``"naive"`` or a combination such as
    ``"late+naive"``; see the module documentation.
    """
    for c in chunks:
        if text[c.char_start : c.char_end] != c.text:
            raise InvalidArgumentError(
                f"chunk {c.index} does not match the text at [{c.char_start}:{c.char_end}]"
            )
    return embed_chunked(embedder, [ChunkedText(text, chunks, title)], mode, options)[0]


__all__ = [
    "MODES",
    "ChunkedText",
    "WindowOptions",
    "embed_chunked",
    "embed_chunked_columns",
    "embed_chunks",
    "parse_chunking",
    "parse_mode",
    "vector_columns",
]
