"""Rerankers: a second, costlier ranking of a query's best candidates.

``Query.rerank(reranker, candidates=n)`` accepts:

- a sentence-transformers ``CrossEncoder``, or the path of a local CrossEncoder model directory
  (loaded with ``CrossEncoder(path)``; nothing is downloaded): it reads each (query, row text)
  pair and scores it;
- any callable ``(query, texts) -> scores`` (one number per text, higher is better);
- ``"feedback"``: training-free pseudo-relevance feedback with the table's own vectors, in the
  spirit of E²Rank (Liu et al., 2025): the query vector is moved toward the mean of its best
  ``depth`` candidates' vectors (``q' = q/|q| + weight * mean(d/|d|)``) and every candidate is
  re-scored by cosine similarity to ``q'``. It reads no text and runs no model, only the stored
  vectors (a keyword query's text is embedded once, for its vector).

A row's text is its keyword columns joined by newlines (or the ``column=`` given).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgumentError, missing_extra

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

DEFAULT_CANDIDATES = 50


@dataclass(frozen=True, eq=False)
class Candidates:
    """What a reranker may read about a query's candidates (best first)."""

    query: str | None
    query_vector: F32 | None
    rows: I64
    texts: Callable[[], list[str]]
    vectors: Callable[[], F32]


class CrossEncoderReranker:
    """Scores (query, text) pairs with a sentence-transformers CrossEncoder."""

    def __init__(self, model: Any, batch_size: int = 32) -> None:
        self.model = model
        self.batch_size = batch_size
        path = getattr(model, "_vecstore_path", None)
        self.name = f"cross-encoder ({path})" if path else "cross-encoder"

    @classmethod
    def load(cls, path: str | Path) -> CrossEncoderReranker:
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise InvalidArgumentError(
                f"no model directory at {str(path)!r}: rerank() takes a local CrossEncoder model "
                f"directory (nothing is downloaded), a CrossEncoder, a callable "
                f"(query, texts) -> scores, or \"feedback\"")
        try:
            from sentence_transformers import CrossEncoder
        except ImportError as exc:
            raise missing_extra("sentence_transformers", "embed") from exc
        try:
            model = CrossEncoder(str(directory), device="cpu", local_files_only=True)
        except Exception as exc:  # the library raises OSError, ValueError, ... for a bad directory
            raise InvalidArgumentError(f"cannot load a CrossEncoder from {str(path)!r}: {exc}") from exc
        model._vecstore_path = str(directory)
        return cls(model)

    def score(self, c: Candidates) -> F64:
        if c.query is None:
            raise InvalidArgumentError("a cross-encoder reranks text queries; this query has no text")
        texts = c.texts()
        if not texts:
            return np.empty(0)
        out = self.model.predict([(c.query, t) for t in texts], batch_size=self.batch_size,
                                 show_progress_bar=False, convert_to_numpy=True)
        return _checked(np.asarray(out, dtype=np.float64).reshape(len(texts), -1)[:, -1], len(texts),
                        self.name)


class FunctionReranker:
    """Any callable ``(query, texts) -> scores``."""

    def __init__(self, fn: Callable[[str, list[str]], Sequence[float]]) -> None:
        self.fn = fn
        self.name = f"function {getattr(fn, '__name__', type(fn).__name__)}"

    def score(self, c: Candidates) -> F64:
        texts = c.texts()
        try:
            got = np.asarray(self.fn(c.query or "", texts), dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError(f"the reranker {self.name} did not return numbers: {exc}") from None
        return _checked(got.reshape(-1) if got.ndim else got, len(texts), self.name)


class FeedbackReranker:
    """Pseudo-relevance feedback with the stored vectors (see the module docstring)."""

    needs_vector = True

    def __init__(self, depth: int = 3, weight: float = 1.0) -> None:
        if not isinstance(depth, int) or isinstance(depth, bool) or depth < 1:
            raise InvalidArgumentError(f"feedback depth must be a positive integer, got {depth!r}")
        if not isinstance(weight, (int, float)) or isinstance(weight, bool) or not (
                math.isfinite(weight) and weight >= 0):
            raise InvalidArgumentError(f"feedback weight must be a number >= 0, got {weight!r}")
        self.depth = depth
        self.weight = float(weight)
        self.name = f"feedback (depth={depth}, weight={self.weight:g})"

    def score(self, c: Candidates) -> F64:
        if c.query_vector is None:
            raise InvalidArgumentError("feedback reranking needs the query's vector: search a table "
                                       "with an embedder, or pass vector=")
        vecs = np.asarray(c.vectors(), dtype=np.float64)
        if vecs.shape[0] == 0:
            return np.empty(0)
        units = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-30)
        q = np.asarray(c.query_vector, dtype=np.float64)
        q = q / max(float(np.linalg.norm(q)), 1e-30)
        q2 = q + self.weight * units[: self.depth].mean(axis=0)
        q2 /= max(float(np.linalg.norm(q2)), 1e-30)
        return units @ q2


def _checked(scores: F64, n: int, name: str) -> F64:
    if scores.shape != (n,):
        raise InvalidArgumentError(f"the reranker {name} returned {scores.size} scores for {n} texts")
    if not np.isfinite(scores).all():
        raise InvalidArgumentError(f"the reranker {name} returned NaN or infinite scores")
    return scores


def resolve_reranker(reranker: Any) -> Any:
    """The reranker object for what ``Query.rerank`` was given."""
    if isinstance(reranker, str) and reranker.strip().lower() in ("feedback", "prf"):
        return FeedbackReranker()
    if isinstance(reranker, (str, Path)):
        return CrossEncoderReranker.load(reranker)
    if isinstance(reranker, (CrossEncoderReranker, FunctionReranker, FeedbackReranker)):
        return reranker
    if hasattr(reranker, "predict") and hasattr(reranker, "tokenizer"):  # a CrossEncoder
        return CrossEncoderReranker(reranker)
    if callable(reranker):
        return FunctionReranker(reranker)
    raise InvalidArgumentError(
        f"cannot rerank with {type(reranker).__name__}: pass a CrossEncoder, the path of a local "
        f"CrossEncoder directory, a callable (query, texts) -> scores, or \"feedback\"")
