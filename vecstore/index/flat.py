"""``flat``: exact search with NumPy, the fallback for tiny or very selective queries and the oracle
the conformance suite checks every other backend against.

Scores are computed in float32 by one matrix product per block of queries; ties at equal score
are broken by ascending label, so results are deterministic. Under an ``allow`` bitmap that keeps
less than half the labels only the allowed rows are gathered and scored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import Metric
from ..errors import CorruptStoreError
from .base import AllowBitmap, FloatMatrix, IndexBase, IndexParams, LabelMatrix

_BLOCK_BYTES = 64 << 20  # score matrix per block of queries: bounded memory, BLAS-sized work


@dataclass(frozen=True)
class FlatParams(IndexParams):
    """The flat index has no parameters."""


def exact_scores(metric: Metric, queries: FloatMatrix, vectors: FloatMatrix,
                 sq_norms: FloatMatrix | None) -> FloatMatrix:
    """``[q, n]`` higher-is-better scores (queries and vectors already unit length for cosine)."""
    s = queries @ vectors.T
    if metric is Metric.L2:
        # -(|q|^2 - 2 q.x + |x|^2), the negative squared distance.
        assert sq_norms is not None
        q2 = np.einsum("ij,ij->i", queries, queries)[:, None]
        s *= 2
        s -= q2
        s -= sq_norms[None, :]
    return s


def top_k(scores: FloatMatrix, k: int) -> tuple[FloatMatrix, np.ndarray]:
    """Per row, the ``k`` largest scores sorted descending, ties by ascending column."""
    n = scores.shape[1]
    if k < n:
        cols = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        # argpartition picks arbitrarily among ties at the k-th score: include every column tied
        # with it, so the tie-break below is by label and the result deterministic.
        kth = np.take_along_axis(scores, cols, axis=1).min(axis=1)
        tied = np.flatnonzero((scores >= kth[:, None]).sum(axis=1) > k)
        if tied.size:
            cols = cols.copy()
            for r in tied:
                cols[r] = _top_row(scores[r], k)
    else:
        cols = np.broadcast_to(np.arange(n), scores.shape)
    vals = np.take_along_axis(scores, cols, axis=1)
    order = np.lexsort((cols, -vals), axis=1)
    return np.take_along_axis(vals, order, axis=1), np.take_along_axis(cols, order, axis=1)


def _top_row(row: np.ndarray, k: int) -> np.ndarray:
    order = np.lexsort((np.arange(row.shape[0]), -row))
    return order[:k]


class FlatIndex(IndexBase):
    """Exact search over the vectors kept in memory (or memory-mapped after :meth:`load`)."""

    reads_damaged_files_safely = True  # a plain .npy array: header parsed, bytes mapped

    kind = "flat"
    params_type = FlatParams
    exact_count = True

    @property
    def exact_scores(self) -> bool:
        return True

    def __init__(self, vectors: FloatMatrix, metric: Metric, params: FlatParams | None = None):
        super().__init__(params or FlatParams(), metric, vectors.shape[1], vectors.shape[0])
        self._vectors = vectors
        self._sq_norms = (
            np.einsum("ij,ij->i", vectors, vectors) if metric is Metric.L2 else None
        )

    @classmethod
    def min_rows(cls) -> int:
        return 0

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: FlatParams,
               progress: bool, threads: int | None) -> FlatIndex:
        return cls(vectors, metric, params)

    @property
    def vectors(self) -> FloatMatrix:
        """The indexed vectors, read-only (unit length for cosine)."""
        view = self._vectors.view()
        view.flags.writeable = False
        return view

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int, *, threads: int | None = None) -> tuple[FloatMatrix, LabelMatrix]:
        vectors, norms, ids = self._vectors, self._sq_norms, None
        mask = None
        if allow is not None:
            if np.count_nonzero(allow) * 2 < allow.shape[0]:
                ids = np.flatnonzero(allow)
                vectors = self._vectors[ids]
                norms = None if norms is None else norms[ids]
            else:
                mask = ~allow
        n = vectors.shape[0]
        out_s = np.empty((queries.shape[0], k), dtype=np.float32)
        out_l = np.empty((queries.shape[0], k), dtype=np.int64)
        step = max(1, _BLOCK_BYTES // (4 * max(1, n)))
        for start in range(0, queries.shape[0], step):
            stop = start + step
            s = exact_scores(self.metric, queries[start:stop], vectors, norms)
            if mask is not None:
                s[:, mask] = -np.inf
            vals, cols = top_k(s, k)
            out_s[start:stop] = vals
            out_l[start:stop] = cols if ids is None else ids[cols]
        return out_s, out_l

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """Exact search has no effort knob: always 1."""
        return 1

    @property
    def memory_bytes(self) -> int:
        extra = 0 if self._sq_norms is None else self._sq_norms.nbytes
        if isinstance(self._vectors, np.memmap):
            return extra  # pages of a memory map are the OS's to keep or drop
        return int(self._vectors.nbytes) + extra

    def _writers(self) -> dict[str, Callable[[Path], None]]:
        def write(path: Path) -> None:
            with open(path, "wb") as f:
                np.save(f, self._vectors, allow_pickle=False)

        return {"flat.npy": write}

    @classmethod
    def _read(cls, directory: Path, params: FlatParams, metric: Metric, dim: int,
              count: int) -> FlatIndex:
        path = directory / "flat.npy"
        try:
            vectors = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise CorruptStoreError(f"index file {path} is unreadable ({exc})") from exc
        if vectors.dtype != np.float32 or vectors.shape != (count, dim):
            raise CorruptStoreError(
                f"index file {path} holds {vectors.dtype} {vectors.shape}, "
                f"expected float32 ({count}, {dim})"
            )
        return cls(vectors, metric, params)
