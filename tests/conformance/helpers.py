"""Data sets, independent exact scores and tie-aware recall for the conformance suite."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from vecstore import evaluation
from vecstore.index import INDEX_KINDS

ANN_KINDS = [k for k in INDEX_KINDS if k != "flat"]
FLOAT_KINDS = [k for k in ANN_KINDS if not k.startswith("binary")]
BINARY_KINDS = [k for k in ANN_KINDS if k.startswith("binary")]
RESCORED_KINDS = ["hnsw-sq", "hnsw-int8", "ivf-binary"]
"""Float indexes whose scores are quantized estimates: the planner takes ``candidates_for(k)``
of their candidates and rescores them exactly, and so are they judged."""
SIGN_SCORED_KINDS = ["ivf-binary"]
"""Rescored kinds whose own scores are sign scores (the query's inner product with each row's
centred sign code read as 0/1 bits), not estimates of the metric's values."""
K = 10


@dataclass(frozen=True)
class Data:
    """Base vectors and queries (drawn from the same distribution, not from the base)."""

    name: str
    base: npt.NDArray[np.float32]
    queries: npt.NDArray[np.float32]


def _make(name: str) -> Data:
    rng = np.random.default_rng({"random": 11, "clustered": 22}[name])
    if name == "random":  # Gaussian noise: the hard case for IVF and quantizers
        n, d = 3000, 32
        x = rng.standard_normal((n + 100, d)).astype(np.float32)
    else:  # 30 Gaussian clusters of unequal spread, closer to real embeddings
        n, d = 3000, 48
        centres = rng.standard_normal((30, d)).astype(np.float32) * 2.0
        spread = rng.uniform(0.5, 1.5, 30).astype(np.float32)
        which = rng.integers(0, 30, n + 100)
        x = centres[which] + rng.standard_normal((n + 100, d)).astype(np.float32) * spread[which, None]
    return Data(name, np.ascontiguousarray(x[:n]), np.ascontiguousarray(x[n:]))


DATA = {name: _make(name) for name in ("random", "clustered")}


def exact_scores(index_metric: str, queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``[q, n]`` exact higher-is-better scores, computed independently of vecstore (float64)."""
    q = queries.astype(np.float64)
    x = base.astype(np.float64)
    if index_metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
        return q @ x.T
    if index_metric == "dot":
        return q @ x.T
    return -((q * q).sum(1)[:, None] - 2 * q @ x.T + (x * x).sum(1)[None, :])


def hamming_scores(queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """``-hamming`` between sign codes (bit = value > 0), exact."""
    qb = queries > 0
    xb = base > 0
    return -(qb[:, None, :] != xb[None, :, :]).sum(axis=2).astype(np.float64)


def tie_aware_recall(
    truth: np.ndarray, labels: np.ndarray, k: int, allow: np.ndarray | None = None
) -> float:
    """Mean recall@k of ``labels`` (-1: none) against the exact scores ``truth`` ``[q, n]``, by
    :func:`vecstore.evaluation.tie_aware_recall`; a label outside ``allow`` is a miss and the
    denominator is min(k, allowed)."""
    want = min(k, truth.shape[1] if allow is None else int(allow.sum()))
    if want == 0:
        return 1.0
    scores = truth if allow is None else np.where(allow[None, :], truth, -np.inf)
    found = np.where(labels >= 0, np.take_along_axis(scores, np.maximum(labels, 0), axis=1), -np.inf)
    return evaluation.tie_aware_recall(found, evaluation.kth_best(truth, k, allow=allow), want)


def random_allow(n: int, selectivity: float, seed: int) -> np.ndarray:
    """A seeded uniform random bitmap keeping ``round(n * selectivity)`` labels (at least 1)."""
    rng = np.random.default_rng(seed)
    allow = np.zeros(n, dtype=bool)
    allow[rng.choice(n, max(1, round(n * selectivity)), replace=False)] = True
    return allow
