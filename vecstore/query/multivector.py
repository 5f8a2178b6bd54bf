"""Scoring rows that keep several vectors: one query against each vector column, combined.

A multi-vector table (``create_table(..., vectors=["vector", "vector_late"])``) stores each
further vector column like ``vector``, with its own norms, int8 and sign codes calibrated per
segment. A row's score is a combination of its vectors' scores (:class:`~vecstore.config.Combine`):
their maximum (the default: a row is as near as its nearest vector), or a weighted sum.

:class:`MultiScorer` has :class:`~.scoring.Scorer`'s interface (int8 and exact scores of rows),
so the scan's stages, an index's rescoring and the exact top-k run on it unchanged; the scan's
first stage takes the best rows by Hamming distance of *each* column and rescores their union
(:meth:`MultiScorer.binary_candidates`). :func:`make_scorer` hands a request the plain
:class:`~.scoring.Scorer` whenever it scores one column, so single-vector tables take exactly
the path they took before.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ..config import Combine
from ..storage.snapshot import Snapshot
from .scoring import Parts, Scorer, kernels

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


class MultiScorer:
    """One query against several vector columns of a snapshot; a row's score combines its
    columns' scores as ``combine`` says."""

    def __init__(self, snap: Snapshot, query: F32, combine: Combine) -> None:
        self.snap = snap
        self.combine = combine
        self.scorers = [Scorer(snap, query, c) for c in combine.columns]
        self.weights = np.asarray(combine.weights, dtype=np.float32) if combine.mode == "sum" else None

    def _combined(self, parts: list[F32]) -> F32:
        if self.weights is None:
            out = parts[0].astype(np.float32, copy=True)
            for p in parts[1:]:
                np.maximum(out, p, out=out)
            return out
        total = np.zeros_like(parts[0], dtype=np.float32)
        for w, p in zip(self.weights, parts, strict=True):
            total += w * p
        return total

    def int8(self, s: int, local: I64) -> F32:
        return self._combined([sc.int8(s, local) for sc in self.scorers])

    def int8_rows(self, rows: I64) -> F32:
        return self._combined([sc.int8_rows(rows) for sc in self.scorers])

    def exact(self, s: int, local: I64 | None) -> F32:
        return self._combined([sc.exact(s, local) for sc in self.scorers])

    def binary_candidates(self, parts: Parts, n1: int) -> I64:
        """Stage 1 of the scan: each column's best ``n1`` rows by Hamming distance (per segment,
        then merged), united. A row near the query by any of its vectors is a candidate."""
        snap = self.snap
        kern = kernels()
        found = []
        for sc in self.scorers:
            cand_rows, cand_dist = [], []
            for s, seg_rows in parts:
                codes = sc.binary(s)
                if seg_rows is None:
                    idx, dist = kern.hamming_topk(codes, sc.bits(s), n1)
                else:
                    idx, dist = kern.hamming_topk_rows(codes, seg_rows, sc.bits(s), n1)
                cand_rows.append(idx + snap.bases[s])
                cand_dist.append(dist)
            rows = np.concatenate(cand_rows)
            dist = np.concatenate(cand_dist)
            if rows.size > n1:
                rows = rows[np.lexsort((rows, dist))[:n1]]
            found.append(rows)
        return np.unique(np.concatenate(found)).astype(np.int64)


def make_scorer(snap: Snapshot, query: F32, combine: Combine | None) -> Scorer | MultiScorer:
    """The scorer of a request: the table's combination when ``combine`` is None; a plain
    :class:`Scorer` when one column is scored (every single-vector table)."""
    if combine is None:
        config = snap.manifest.config
        if not config.multi:
            return Scorer(snap, query)
        combine = config.combine
        assert combine is not None
    single = combine.single
    if single is not None:
        return Scorer(snap, query, single)
    return MultiScorer(snap, query, combine)


def scored_columns(snap: Snapshot, combine: Combine | None) -> tuple[str, ...]:
    """The vector columns a request scores."""
    if combine is None:
        config = snap.manifest.config
        return config.vectors if config.combine is None else config.combine.columns
    return combine.columns


def plain(snap: Snapshot, combine: Combine | None) -> bool:
    """Whether a request scores the ``vector`` column alone, as on a single-vector table."""
    if combine is None:
        return not snap.manifest.config.multi
    return combine.single == "vector"
