"""Scanning a table version's matching rows for one query.

1. **binary**: Hamming distance between the query's sign bits and every match's code picks
   the best ``k x oversample`` candidates (every segment in one kernel call, each against the
   query's bits under its own calibration);
2. **int8**: those are rescored with the int8 codes (the calibration folded into the query), and
   the best ``max(4k, k x oversample / 4)`` kept;
3. **float32**: the survivors are rescored exactly and the best ``k`` returned.

For one cosine query over vectors in memory the three stages run in one kernel call
(``two_stage_cosine_scan``), which finds what they find one kernel at a time.

When the matches are no more than ``k x oversample`` the binary and int8 stages would only add
error, so the matches are scored exactly; tables of few dimensions start from the int8 codes.
``exact=True`` scores every match with float32 (BLAS for an unfiltered scan): the oracle the
approximate paths are measured against. :mod:`.planner` chooses which.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .._native import loader
from ..config import Metric, PlannerSettings
from ..storage.codes import binary_bytes
from ..storage.snapshot import Snapshot
from ..vectors import MIN_NORM
from .multivector import MultiScorer, make_scorer
from .planner import SearchRequest, resolve_oversample, scan_strategy
from .results import Plan, Stage, Strategy
from .scoring import Scorer, best_exact, exact_top, kernels, scoring_queries, segment_parts, top_k

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]


def batch_binary_candidates(snap: Snapshot, queries: F32, k: int, oversample: int,
                            settings: PlannerSettings, rows: I64 | None = None
                            ) -> tuple[I64, F32] | None:
    """Stage 1 for many queries sharing one filter result ``rows`` (every live row when None)
    in one parallel, cache-blocked scan, when the scan would take it (dimensions enough for
    sign codes, more matches than candidates): ``hamming_topk_batch`` over a one-segment table
    without tombstones, else ``hamming_topk_batch_ranges`` over every segment at once, each
    segment's rows against the queries' bits under its own calibration. The candidates are the
    ones each query's own scan would pick: ``int64[queries, candidates]``, each row sorted;
    with the queries ``[n, dim]`` as each one's scan codes them (``Scorer.q_codes``, bit for
    bit: :func:`~.scoring.scoring_queries`, ``float32[queries, dim]``)."""
    n_match = snap.num_rows if rows is None else int(rows.size)
    if (snap.manifest.config.dim < settings.min_binary_dim or n_match <= k * oversample
            or k == 0 or not len(queries)):
        return None
    kern = loader.get("kernels", wait=True)  # a batch waits for the compiled kernels
    qs = scoring_queries(snap.manifest.config.metric, queries)[0]  # no Scorer per query
    if rows is None and len(snap.segments) == 1 and not snap.has_deletions:
        bits = snap.segments[0].quantizer.encode_binary(qs).view(np.uint64)  # Scorer.bits(0)'s
        idx, _ = kern.hamming_topk_batch(snap.binary[0], bits, k * oversample)
        return np.sort(idx, axis=1), qs
    if rows is None and snap.has_deletions:
        rows = snap.live_rows
    # each query's bits under each segment's calibration: [queries, segments, words]
    packed = np.packbits(qs[:, None, :] > snap.centers[None, :, :], axis=2, bitorder="little")
    width = binary_bytes(snap.manifest.config.dim)
    if packed.shape[2] < width:
        packed = np.pad(packed, ((0, 0), (0, 0), (0, width - packed.shape[2])))
    all_bits = np.ascontiguousarray(packed).view(np.uint64)
    cuts = snap.bases if rows is None else np.searchsorted(rows, snap.bases)
    idx, _ = kern.hamming_topk_batch_ranges(snap.binary_all, rows, cuts, all_bits, k * oversample)
    return np.sort(idx, axis=1), qs


def batch_two_stage(snap: Snapshot, units: F32, candidates: I64, k: int,
                    oversample: int) -> tuple[I64, F32] | None:
    """The int8 and float32 stages of the two-stage scan for a batch of unit-length queries
    ``units`` over their :func:`batch_binary_candidates`, all in one parallel kernel call
    (``two_stage_cosine_batch``, outside the GIL): the rows and scores each query's own scan
    finds (``int64[q, k']``, ``float32[q, k']``). None where that kernel does not apply: a
    metric other than cosine, or a table read from disk or whose vectors are not one array
    per segment (each query is then finished on its own)."""
    addresses = snap.vector_addresses
    if (snap.manifest.config.metric is not Metric.COSINE or addresses is None
            or snap.pages.on_disk or snap.manifest.config.multi):
        return None
    kern = loader.get("kernels", wait=True)
    n1 = k * oversample
    n2 = max(4 * k, n1 // 4)  # as _int8_stage keeps
    return kern.two_stage_cosine_batch(snap.int8_all, candidates, snap.bases, units, snap.int8_scales,
                                       snap.int8_origins, addresses, snap.norms_all, n2, k)


_NO_ROWS = np.empty(0, dtype=np.int64)
ONE_CALL_STAGE = "binary -> int8 -> float32 (one kernel call)"
"""The stage a two-stage scan run in one kernel call reports (its three stages, timed as one)."""


def _one_call_scan(snap: Snapshot, units: F32, rows: I64 | None, k: int, n1: int,
                   addresses: I64 | None) -> tuple[I64, F32, float] | None:
    """The two-stage cosine scan of one unit-length query over ``rows`` (sorted global rows;
    every live row when None) in one kernel call (``two_stage_cosine_scan``): its rows and
    scores, best first, and the seconds it took. None where that kernel does not apply: a
    metric other than cosine, vectors read from disk or not one array per segment
    (``addresses`` None), several vector columns."""
    cfg = snap.manifest.config
    if cfg.metric is not Metric.COSINE or addresses is None or snap.pages.on_disk or cfg.multi:
        return None
    every_row = rows is None and not snap.has_deletions
    if rows is None and not every_row:
        rows = snap.live_rows
    t = time.perf_counter()
    found, scores = kernels().two_stage_cosine_scan(
        units, snap.centers, snap.binary_all, _NO_ROWS if rows is None else rows, every_row,
        snap.int8_all, snap.bases, snap.int8_scales, snap.int8_origins, addresses, snap.norms_all,
        n1, max(4 * k, n1 // 4), k)  # as _int8_stage keeps
    return found, scores, time.perf_counter() - t


def scan_quick(snap: Snapshot, query: F32, k: int, oversample: int | None,
               settings: PlannerSettings) -> tuple[I64, F32, Callable[[], Plan]] | None:
    """An unfiltered query (``.rescore(oversample)`` when not None) on a table without an index,
    answered as :func:`scan` answers it, without its request, scorer or plan objects (the plan
    is described only when asked for): the two-stage scan in one kernel call, or, where the rows
    are no more than ``k x oversample`` (a small table: :func:`~.planner.resolve_oversample`),
    every row scored exactly. None where these do not apply (a metric other than cosine, vectors
    read from disk or not one array per segment, several vector columns, too few dimensions for
    sign codes, an exact scan of no rows or with deleted rows)."""
    cfg = snap.manifest.config
    if cfg.metric is not Metric.COSINE or cfg.dim < settings.min_binary_dim or k < 1:
        return None
    used = resolve_oversample(oversample, False, settings, snap.manifest.scan, snap.num_rows, k)
    n_match, n1 = snap.num_rows, k * used
    exact = n_match <= n1
    if exact and (n_match == 0 or snap.has_deletions or snap.pages.on_disk or cfg.multi):
        return None
    units = scoring_queries(cfg.metric, query.reshape(1, -1))[0][0]
    fused = (_exact_quick(snap, units, k) if exact
             else _one_call_scan(snap, units, None, k, n1, snap.vector_addresses))
    if fused is None:
        return None
    rows, scores, seconds = fused
    # as scan_strategy and scan describe them
    sign, stage = ("<=", "float32 (exact)") if exact else (">", ONE_CALL_STAGE)

    def plan() -> Plan:
        return Plan(strategy=Strategy.EXACT_SCAN if exact else Strategy.TWO_STAGE_SCAN,
                    table_rows=snap.num_rows, k=k, oversample=used,
                    reason=f"{n_match:,} matches {sign} k x oversample = {n1:,}",
                    stages=(Stage(stage, n_match, int(rows.size), seconds),))

    return rows, scores, plan


def _exact_quick(snap: Snapshot, units: F32, k: int) -> tuple[I64, F32, float]:
    """Every row of a cosine table without deletions scored exactly (each segment's rows by
    one BLAS product, as :meth:`~.scoring.Scorer.exact` scores them), and the best ``k``."""
    t = time.perf_counter()
    scores = np.concatenate([(vectors @ units) / np.maximum(norms, np.float32(MIN_NORM))
                             for vectors, norms in zip(snap.vectors, snap.norms, strict=True)]
                            ).astype(np.float32, copy=False)
    rows = top_k(scores, k)
    return rows, scores[rows], time.perf_counter() - t


def scan(snap: Snapshot, req: SearchRequest, settings: PlannerSettings,
         stages: list[Stage] | None = None) -> tuple[I64, F32, Plan]:
    """Answer ``req`` by scanning its matches; returns global rows, scores (best first) and
    the plan. ``stages`` already done (the filter) are kept in front."""
    k = req.k
    stages = list(stages or ())
    n_match = snap.num_rows if req.rows is None else int(req.rows.size)
    strategy, reason = scan_strategy(req, n_match, snap.manifest.config.dim, settings)
    plan_args: dict[str, Any] = dict(
        strategy=strategy, reason=reason, table_rows=snap.num_rows, k=k, oversample=req.oversample,
        filter=req.filter, matches=None if req.rows is None else n_match)
    scorer = make_scorer(snap, req.query, req.combine)
    n1 = k * req.oversample

    if strategy is Strategy.EXACT_SCAN:
        t = time.perf_counter()
        if req.rows is not None and not req.exact:
            # a few matches (at most k x oversample): the float32 stage's one call over every
            # segment; .exact() keeps exact_top's per-segment arithmetic (its scores, bit for bit)
            rows, scores = best_exact(scorer, req.rows, k)
            scanned = int(req.rows.size)
        else:
            rows, scores, scanned = exact_top(scorer, segment_parts(snap, req.rows), k)
        stages.append(Stage("float32 (exact)", scanned, rows.size, time.perf_counter() - t))
        return rows, scores, Plan(stages=tuple(stages), **plan_args)

    if strategy is Strategy.INT8_SCAN:
        t = time.perf_counter()
        rows1 = req.rows if req.rows is not None else (
            snap.live_rows if snap.has_deletions else np.arange(snap.num_rows, dtype=np.int64))
        keep = np.sort(rows1[top_k(scorer.int8_rows(rows1), n1)])
        stages.append(Stage("int8 scan", n_match, keep.size, time.perf_counter() - t))
        return _float_stage(scorer, keep, k, stages, plan_args)

    if req.binary_candidates is not None:
        stages.append(Stage("binary (batch scan)", n_match, req.binary_candidates.size,
                            req.binary_seconds))
        return _int8_stage(scorer, req.binary_candidates, k, n1, stages, plan_args)

    if isinstance(scorer, MultiScorer):  # several vectors per row: each column's best, united
        t = time.perf_counter()
        rows1 = scorer.binary_candidates(segment_parts(snap, req.rows), n1)
        stages.append(Stage(f"binary (hamming) x{len(scorer.scorers)}", n_match, rows1.size,
                            time.perf_counter() - t))
        return _int8_stage(scorer, rows1, k, n1, stages, plan_args)

    if isinstance(scorer, Scorer) and scorer.col is None:
        # the common case: the three stages in one kernel call
        fused = _one_call_scan(snap, scorer.q_codes, req.rows, k, n1, snap.vector_addresses)
        if fused is not None:
            stages.append(Stage(ONE_CALL_STAGE, n_match, int(fused[0].size), fused[2]))
            return fused[0], fused[1], Plan(stages=tuple(stages), **plan_args)

    t = time.perf_counter()
    kern = kernels()
    if scorer.col is None and len(snap.segments) > 1:
        # Stage 1 over every segment in one kernel call, each segment's rows against the
        # query's bits under its own calibration: no per-segment restart, no merge
        rows1 = np.sort(_binary_all_segments(snap, scorer, req.rows, n1, kern))
        stages.append(Stage("binary (hamming)", n_match, rows1.size, time.perf_counter() - t))
        return _int8_stage(scorer, rows1, k, n1, stages, plan_args)

    # Stage 1: binary codes, per segment, merged by (distance, row).
    # (the rows are split by segment here only: the multi-segment path above never splits them)
    cand_rows, cand_dist = [], []
    for s, seg_rows in segment_parts(snap, req.rows):
        codes = scorer.binary(s)
        if seg_rows is None:
            idx, dist = kern.hamming_topk(codes, scorer.bits(s), n1)
        else:
            idx, dist = kern.hamming_topk_rows(codes, seg_rows, scorer.bits(s), n1)
        cand_rows.append(idx + snap.bases[s])
        cand_dist.append(dist)
    if len(cand_rows) == 1:  # one segment: its candidates are the answer
        rows1 = np.sort(cand_rows[0])
    else:
        rows1 = np.concatenate(cand_rows)
        dist1 = np.concatenate(cand_dist)
        if rows1.size > n1:
            rows1 = rows1[np.lexsort((rows1, dist1))[:n1]]
        rows1 = np.sort(rows1)
    stages.append(Stage("binary (hamming)", n_match, rows1.size, time.perf_counter() - t))
    return _int8_stage(scorer, rows1, k, n1, stages, plan_args)


def _binary_all_segments(snap: Snapshot, scorer: Scorer, rows: I64 | None, n1: int,
                         kern: Any) -> I64:
    """The best ``n1`` of ``rows`` (every live row when None) by Hamming distance, over all
    segments at once: global rows in (distance, row) order."""
    if rows is None and snap.has_deletions:
        rows = snap.live_rows
    bits = scorer.all_bits()
    if rows is None:
        idx, _ = kern.hamming_topk_ranges(snap.binary_all, snap.bases, bits, n1)
    else:
        cuts = np.searchsorted(rows, snap.bases)
        idx, _ = kern.hamming_topk_rows_ranges(snap.binary_all, rows, cuts, bits, n1)
    return idx


def _int8_stage(scorer: Scorer | MultiScorer, rows1: I64, k: int, n1: int, stages: list[Stage],
                plan_args: dict[str, Any]) -> tuple[I64, F32, Plan]:
    t = time.perf_counter()
    n2 = min(rows1.size, max(4 * k, n1 // 4))
    keep = np.sort(rows1[top_k(scorer.int8_rows(rows1), n2)])
    stages.append(Stage("int8 rescore", rows1.size, keep.size, time.perf_counter() - t))
    return _float_stage(scorer, keep, k, stages, plan_args)


def _float_stage(scorer: Scorer | MultiScorer, rows: I64, k: int, stages: list[Stage],
                 plan_args: dict[str, Any]) -> tuple[I64, F32, Plan]:
    t = time.perf_counter()
    found, scores = best_exact(scorer, rows, k)
    stages.append(Stage("float32 rescore", rows.size, found.size, time.perf_counter() - t))
    return found, scores, Plan(stages=tuple(stages), **plan_args)
