"""Fusing two rankings (vector and keyword) into one.

Each ranker contributes its best ``candidates`` rows. The score-based fusions then complete the
scores: every row of the union gets its *exact* score from both rankers (a keyword candidate's
vector similarity is computed from its stored vector; a vector candidate's BM25 is read from the
postings, 0 when it holds no query term), so no row is fused with an invented score.

- ``rrf``: reciprocal rank fusion, ``sum 1 / (k + rank)`` over the rankings a row appears in
  (LanceDB's and Qdrant's default). Ranks only: a far weaker ranker pulls the fused list down as
  hard as the stronger one pushes it up.
- ``weighted``: each ranker's scores min-max normalised over the union, then
  ``alpha * vector + (1 - alpha) * keyword``.
- ``zscore``: each ranker's scores standardised over the union (``(s - mean) / std``), then
  weighted as above (``alpha`` 0.5: a plain sum). A ranker that separates a few rows from the
  rest gives them large z-scores; one whose scores are flat (it cannot tell the rows apart) gives
  small ones, so the fusion leans on whichever ranker is sure for this query.

``docs/benchmarks.md`` ("Keyword and hybrid retrieval") measures each on three sets; the default
(:data:`DEFAULT_FUSION`) is the one that stayed within 3% of the better single ranker on every
set and beat both where they are level.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..errors import InvalidArgumentError
from .spec import Fusion

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]

FUSIONS = ("zscore", "weighted", "rrf")
DEFAULT_FUSION = Fusion(kind="zscore")
MIN_CANDIDATES = 100
MAX_CANDIDATES = 100_000


def make_fusion(kind: str, *, k: int | None = None, alpha: float | None = None,
                candidates: int | None = None) -> Fusion:
    """A checked :class:`Fusion` (what ``Query.fusion`` accepts)."""
    key = kind.strip().lower() if isinstance(kind, str) else kind
    if key not in FUSIONS:
        raise InvalidArgumentError(
            f"unknown fusion {kind!r}; expected one of {', '.join(repr(f) for f in FUSIONS)}")
    if k is not None and key != "rrf":
        raise InvalidArgumentError(f"k= is the rank constant of 'rrf', not of {key!r}")
    if alpha is not None and key == "rrf":
        raise InvalidArgumentError("alpha= weighs scores; 'rrf' fuses ranks (use k=)")
    rrf_k = 60 if k is None else k
    if not isinstance(rrf_k, (int, np.integer)) or isinstance(rrf_k, bool) or rrf_k < 0:
        raise InvalidArgumentError(f"k must be a non-negative integer, got {k!r}")
    a = 0.5 if alpha is None else alpha
    if not isinstance(a, (int, float, np.floating)) or isinstance(a, bool) or not 0.0 <= float(a) <= 1.0:
        raise InvalidArgumentError(f"alpha must be a number in [0, 1] (the vector ranker's weight), "
                                   f"got {alpha!r}")
    if candidates is not None and (not isinstance(candidates, (int, np.integer)) or isinstance(
            candidates, bool) or not 1 <= candidates <= MAX_CANDIDATES):
        raise InvalidArgumentError(
            f"candidates must be an integer in 1..{MAX_CANDIDATES:,}, got {candidates!r}")
    return Fusion(kind=key, k=int(rrf_k), alpha=float(a),
                  candidates=None if candidates is None else int(candidates))


def candidates_for(fusion: Fusion, k: int) -> int:
    """Rows each ranker contributes for a query of limit ``k``."""
    return fusion.candidates if fusion.candidates is not None else max(MIN_CANDIDATES, 4 * k)


@dataclass(frozen=True, eq=False)
class Ranking:
    """One ranker's candidates, best first, and how to score any other row exactly."""

    name: str
    rows: I64
    scores: F64
    score_rows: Callable[[I64], F64]


def describe(fusion: Fusion) -> str:
    if fusion.kind == "rrf":
        return f"rrf (k={fusion.k})"
    return f"{fusion.kind} (alpha={fusion.alpha:g}: vector weight)"


def fuse(fusion: Fusion, vector: Ranking, keyword: Ranking) -> tuple[I64, F64]:
    """The union of both rankings' candidates, fused, best first (ties: lower row first)."""
    union = np.union1d(vector.rows, keyword.rows)
    if union.size == 0:
        return union, np.empty(0)
    if fusion.kind == "rrf":
        fused = _rrf_part(union, vector.rows, fusion.k) + _rrf_part(union, keyword.rows, fusion.k)
    else:
        v = _completed(union, vector)
        w = _completed(union, keyword)
        norm = _minmax if fusion.kind == "weighted" else _zscore
        fused = fusion.alpha * norm(v) + (1.0 - fusion.alpha) * norm(w)
    order = np.lexsort((union, -fused))
    return union[order], fused[order]


def _rrf_part(union: I64, ranked: I64, k: int) -> F64:
    out = np.zeros(union.size)
    if ranked.size:
        pos = np.searchsorted(union, ranked)  # every ranked row is in the union
        out[pos] = 1.0 / (k + np.arange(1, ranked.size + 1))
    return out


def _completed(union: I64, r: Ranking) -> F64:
    """``r``'s score for every row of ``union``: its own for its candidates, computed for the
    others."""
    out = np.empty(union.size)
    have = np.zeros(union.size, dtype=bool)
    if r.rows.size:
        pos = np.searchsorted(union, r.rows)
        out[pos] = r.scores
        have[pos] = True
    if not have.all():
        missing = np.flatnonzero(~have)
        out[missing] = r.score_rows(union[missing])
    return out


def _minmax(s: F64) -> F64:
    lo, hi = float(s.min()), float(s.max())
    return (s - lo) / (hi - lo) if hi > lo else np.zeros_like(s)


def _zscore(s: F64) -> F64:
    sd = float(s.std())
    return (s - s.mean()) / sd if sd > 0 else np.zeros_like(s)
