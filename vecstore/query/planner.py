"""Choosing and running a search strategy over one table version.

Without an index, a query scans every live row that passes the filter, in two stages:

1. **binary**: Hamming distance between the query's sign bits and every candidate's code picks
   the best ``k x oversample`` candidates (per segment, then merged);
2. **int8**: those are rescored with the int8 codes (the calibration folded into the query), and
   the best ``max(4k, k x oversample / 4)`` kept;
3. **float32**: the survivors are rescored exactly and the best ``k`` returned.

When the matches are no more than ``k x oversample`` the binary and int8 stages would only add
error, so the matches are scored exactly. ``exact=True`` scores every match with float32 (BLAS
for an unfiltered scan): the oracle the approximate paths are measured against.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import Metric
from ..storage.snapshot import Snapshot
from ..vectors import MIN_NORM
from .results import Plan, Stage

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

_kernels: ModuleType | None = None

MIN_BINARY_DIM = 64
"""Below this many dimensions sign codes hold too few bits to rank candidates (distances fall
in 0..dim, so most rows tie); such tables start from the int8 codes instead."""


def kernels() -> ModuleType:
    """The Numba kernels, imported on first use (``VECSTORE_KERNELS=numpy`` selects the NumPy
    twins, e.g. to debug or where Numba cannot compile)."""
    global _kernels
    if _kernels is None:
        if os.environ.get("VECSTORE_KERNELS", "").lower() == "numpy":
            from .._native import reference as mod
        else:
            from .._native import kernels as mod
        _kernels = mod
    return _kernels


@dataclass(frozen=True)
class SearchRequest:
    query: F32  # (dim,) float32, as given
    k: int
    oversample: int
    exact: bool
    rows: I64 | None  # global live rows that pass the filter; None = every live row
    filter: str | None = None
    filter_seconds: float = 0.0
    binary_candidates: I64 | None = None  # stage 1 already done (by a batch scan): global rows
    binary_seconds: float = 0.0
    oversample_set: bool = True  # False: the caller left it to the planner


FILTERED_OVERSAMPLE = 32
"""A filtered scan takes ``k x 32`` binary candidates instead of the default ``k x 16`` (unless
the caller chose an oversample). The best rows inside a filter are usually less similar to the
query than the best of the whole table, and sign codes rank weak neighbours less reliably.
Measured (docs/benchmarks.md, "Planner strategies, forced", 200,000 MiniLM vectors): month
filters keeping 2%, 10%, 20% and 50% gave recall@10 0.947 / 0.950 / 0.951 / 0.949 at 16 and
0.986 / 0.978 / 0.985 / 0.970 at 32, at 0.88-1.29x the speed (noise of one run); unfiltered,
16 already gives 0.959."""


def batch_binary_candidates(snap: Snapshot, queries: list[F32], k: int, oversample: int) -> list[I64] | None:
    """Stage 1 for many queries in one parallel, cache-blocked scan (``hamming_topk_batch``),
    when it applies: one segment, no tombstones, dimensions enough for sign codes."""
    if (len(snap.segments) != 1 or snap.has_deletions or snap.manifest.config.dim < MIN_BINARY_DIM
            or snap.num_rows <= k * oversample or k == 0):
        return None
    bits = np.stack([_Scorer(snap, q).bits(0) for q in queries])
    idx, _ = kernels().hamming_topk_batch(snap.binary[0], np.ascontiguousarray(bits), k * oversample)
    return [np.sort(row) for row in idx]


class _Scorer:
    """Per-metric scoring of one query against a snapshot.

    Queries and rows have norms in the range of :mod:`vecstore.vectors`, which keeps every
    float32 sum below finite here: cosine scores a unit-length query and divides by the row's
    norm (so neither a tiny nor a huge query leaves float32's normal range), and the int8 stage
    scores the unit-length query and scales by the query's norm afterwards (so the sums stay near
    the row's norm, however wide the segment's calibration ranges add up to)."""

    def __init__(self, snap: Snapshot, query: F32) -> None:
        self.snap = snap
        self.metric = snap.manifest.config.metric
        q = np.ascontiguousarray(query, dtype=np.float32)
        self.q_raw = q
        q64 = q.astype(np.float64)
        self.q_norm2 = float(np.dot(q64, q64))
        self.q_norm = float(np.sqrt(self.q_norm2))
        self.q_unit = (q64 / self.q_norm).astype(np.float32) if self.q_norm > 0 else q
        self.q_codes = self.q_unit if self.metric is Metric.COSINE else q
        self._bits: dict[int, npt.NDArray[np.uint64]] = {}

    def bits(self, s: int) -> npt.NDArray[np.uint64]:
        if s not in self._bits:
            qz = self.snap.segments[s].quantizer
            self._bits[s] = qz.encode_binary(self.q_codes[None, :])[0].view(np.uint64)
        return self._bits[s]

    def int8(self, s: int, local: I64) -> F32:
        qz = self.snap.segments[s].quantizer
        qscaled, const = qz.query_int8(self.q_unit)
        unit_dots = kernels().int8_scores_rows(self.snap.int8[s], local, qscaled) + np.float32(const)
        if self.metric is Metric.COSINE:
            return unit_dots.astype(np.float32, copy=False)
        dots = unit_dots * np.float32(self.q_norm)
        if self.metric is Metric.L2:
            norms = self.snap.norms[s][local]
            return (2.0 * dots - norms * norms - self.q_norm2).astype(np.float32)
        return dots.astype(np.float32, copy=False)

    def exact(self, s: int, local: I64 | None) -> F32:
        vectors = self.snap.vectors[s]
        q = self.q_unit if self.metric is Metric.COSINE else self.q_raw
        if local is None:
            dots = vectors @ q
            norms = self.snap.norms[s]
        else:
            dots = kernels().float_scores_rows(vectors, local, q)
            norms = self.snap.norms[s][local]
        if self.metric is Metric.COSINE:
            # Stored norms are >= MIN_NORM; the floor only keeps a store written before that
            # check (a tiny row whose float32 norm underflowed to 0) from dividing by zero.
            return (dots / np.maximum(norms, np.float32(MIN_NORM))).astype(np.float32)
        if self.metric is Metric.L2:
            return (2.0 * dots - norms * norms - self.q_norm2).astype(np.float32)
        return dots.astype(np.float32, copy=False)


def _per_segment(snap: Snapshot, rows: I64 | None) -> list[tuple[int, I64 | None]]:
    """(segment, local rows or None for 'all rows of the segment') for the rows to scan."""
    if rows is None:
        out: list[tuple[int, I64 | None]] = []
        for s, seg in enumerate(snap.segments):
            if seg.deleted.size == 0:
                out.append((s, None))
            elif seg.deleted.size < seg.rows:
                out.append((s, np.flatnonzero(seg.live_mask()).astype(np.int64)))
        return out
    return list(snap.split(rows))


def _top(scores: F32, k: int) -> I64:
    return kernels().topk_scores(np.ascontiguousarray(scores, dtype=np.float32), k)


def _exact_over(scorer: _Scorer, parts: list[tuple[int, I64 | None]], k: int) -> tuple[I64, F32, int]:
    snap = scorer.snap
    all_rows, all_scores = [], []
    scanned = 0
    for s, local in parts:
        sc = scorer.exact(s, local)
        rows = (np.arange(snap.segments[s].rows, dtype=np.int64) if local is None else local) + snap.bases[s]
        if local is None:
            scanned += snap.segments[s].rows
        else:
            scanned += local.size
        # keep each segment's best k only: the global best k are among them
        if sc.size > k:
            keep = _top(sc, k)
            rows, sc = rows[keep], sc[keep]
        all_rows.append(rows)
        all_scores.append(sc)
    if not all_rows:
        return np.empty(0, np.int64), np.empty(0, np.float32), 0
    rows = np.concatenate(all_rows)
    scores = np.concatenate(all_scores).astype(np.float32)
    order = _top(scores, k)
    return rows[order], scores[order], scanned


def search(snap: Snapshot, req: SearchRequest) -> tuple[I64, F32, Plan]:
    """Run one vector query; returns global rows, scores (best first) and the plan."""
    k = req.k
    stages: list[Stage] = []
    if req.filter is not None:
        stages.append(Stage("filter", snap.num_rows, int(req.rows.size) if req.rows is not None else 0,
                            req.filter_seconds))
    n_match = snap.num_rows if req.rows is None else int(req.rows.size)
    plan_args: dict[str, Any] = dict(
        table_rows=snap.num_rows, k=k, oversample=req.oversample, filter=req.filter,
                     matches=None if req.rows is None else n_match,
                     estimated_selectivity=None)
    if not req.oversample_set and req.rows is not None:
        req = replace(req, oversample=max(req.oversample, FILTERED_OVERSAMPLE))
        plan_args["oversample"] = req.oversample
    scorer = _Scorer(snap, req.query)
    parts = _per_segment(snap, req.rows)
    n1 = k * req.oversample

    if req.exact or n_match <= n1 or k == 0:
        t = time.perf_counter()
        rows, scores, scanned = _exact_over(scorer, parts, k)
        stages.append(Stage("float32 (exact)", scanned, rows.size, time.perf_counter() - t))
        why = "exact requested" if req.exact else "matches <= k x oversample"
        return rows, scores, Plan(strategy="exact-scan", stages=tuple(stages), notes=(why,), **plan_args)

    if snap.manifest.config.dim < MIN_BINARY_DIM:
        # Stage 1 on the int8 codes of every match, then float32.
        t = time.perf_counter()
        rows1 = np.concatenate([
            (np.arange(snap.segments[s].rows, dtype=np.int64) if local is None else local) + snap.bases[s]
            for s, local in parts])
        scores1 = np.empty(rows1.size, dtype=np.float32)
        offset = 0
        for s, local in snap.split(rows1):
            scores1[offset:offset + local.size] = scorer.int8(s, local)
            offset += local.size
        keep = np.sort(rows1[_top(scores1, n1)])
        stages.append(Stage("int8 scan", n_match, keep.size, time.perf_counter() - t))
        t = time.perf_counter()
        rows3, scores3, _ = _exact_over(scorer, list(snap.split(keep)), k)
        stages.append(Stage("float32 rescore", keep.size, rows3.size, time.perf_counter() - t))
        return rows3, scores3, Plan(strategy="int8-scan", stages=tuple(stages), **plan_args)

    if req.binary_candidates is not None and req.rows is None:
        rows1 = req.binary_candidates
        stages.append(Stage("binary (batch scan)", n_match, rows1.size, req.binary_seconds))
        return _rescore_two_stage(snap, scorer, rows1, k, n1, stages, plan_args)

    # Stage 1: binary codes, per segment, merged by (distance, row).
    t = time.perf_counter()
    kern = kernels()
    cand_rows, cand_dist = [], []
    for s, seg_rows in parts:
        codes = snap.binary[s]
        if seg_rows is None:
            idx, dist = kern.hamming_topk(codes, scorer.bits(s), n1)
        else:
            idx, dist = kern.hamming_topk_rows(codes, seg_rows, scorer.bits(s), n1)
        cand_rows.append(idx + snap.bases[s])
        cand_dist.append(dist)
    rows1 = np.concatenate(cand_rows)
    dist1 = np.concatenate(cand_dist)
    if rows1.size > n1:
        order = np.lexsort((rows1, dist1))[:n1]
        rows1 = rows1[order]
    rows1 = np.sort(rows1)
    stages.append(Stage("binary (hamming)", n_match, rows1.size, time.perf_counter() - t))
    return _rescore_two_stage(snap, scorer, rows1, k, n1, stages, plan_args)


def _rescore_two_stage(snap: Snapshot, scorer: _Scorer, rows1: I64, k: int, n1: int,
                       stages: list[Stage], plan_args: dict) -> tuple[I64, F32, Plan]:
    # Stage 2: int8 rescoring.
    t = time.perf_counter()
    n2 = min(rows1.size, max(4 * k, n1 // 4))
    scores2 = np.empty(rows1.size, dtype=np.float32)
    offset = 0
    for s, local in snap.split(rows1):
        scores2[offset:offset + local.size] = scorer.int8(s, local)
        offset += local.size
    keep = _top(scores2, n2)
    rows2 = np.sort(rows1[keep])
    stages.append(Stage("int8 rescore", rows1.size, rows2.size, time.perf_counter() - t))

    # Stage 3: float32 rescoring.
    t = time.perf_counter()
    rows3, scores3, _ = _exact_over(scorer, list(snap.split(rows2)), k)
    stages.append(Stage("float32 rescore", rows2.size, rows3.size, time.perf_counter() - t))
    return rows3, scores3, Plan(strategy="two-stage-scan", stages=tuple(stages), **plan_args)
