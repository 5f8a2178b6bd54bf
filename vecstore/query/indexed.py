"""Search with an ANN index: the planner's choice between scanning the matches, searching the
index inside the filter, and searching it unfiltered then filtering.

The index covers the rows of some segments (those that existed when it was built); rows added
since ("fresh" rows) are scanned beside it, deleted or replaced rows are masked out, and every
candidate an index returns is rescored with the table's own float32 vectors, so scores are exact
and results from the index and from the scan merge cleanly. Whatever the strategy, when fewer
than ``min(k, matches)`` rows come back the planner falls back to the exact scan of the matches:
an index never hides a row that matches.

Thresholds (see docs/benchmarks.md, "Filtered search", for the measurements that set them):

- ``SCAN_MAX_MATCHES``: at or below this many matches, the two-stage scan of the matches is
  cheaper than any index search (the scan reads 48 bytes of codes per match; a filtered graph
  search visits ever more disallowed nodes as the filter tightens, and the allow bitmap alone
  costs about 1 ms at 200,000 rows). Measured on 200,000 MiniLM vectors (docs/benchmarks.md,
  "Planner strategies, forced", search time only, filters answered by the sorted indexes): the
  scan ran 830 q/s at 100,001 matches (recall 0.968) against 335 for hnsw with the filter
  inside and 323 for hnsw then filter; 929 against 285 / 264 at 60,000; hnsw-sq likewise (840
  against 531 / 175 at 100,001). Unfiltered, over all 200,000 rows, the scan ran 503-858 q/s
  (two runs) against 695-824 for the hnsw index: the crossover lies between 100,000 and 200,000
  matches, and the bound is its middle. The scan's cost grows with the matches, the index's
  with the table, so the bound is a count of matches, not a fraction.
- Over a binary index (``binary-hnsw``, ``binary-ivf``) a filtered query always scans: the
  codes it would rank are the ones the scan reads, and the graph searched under a filter ran at
  0.1-0.7x the scan's speed at every selectivity measured, with lower recall.
- ``POSTFILTER_MIN_SELECTIVITY``: when the filter keeps at least this fraction of the indexed
  rows, searching the index unfiltered for ``k / selectivity`` candidates and filtering them is
  cheaper than passing the filter into the search.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import DEFAULT_OVERSAMPLE
from ..storage.snapshot import Snapshot
from .planner import SearchRequest, _exact_over, _Scorer, _top, search
from .results import Plan, Stage

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

SCAN_MAX_MATCHES = 150_000
POSTFILTER_MIN_SELECTIVITY = 0.5
MAX_WIDENINGS = 3

BINARY_KINDS = frozenset({"binary-hnsw", "binary-ivf"})
"""Indexes over sign codes: their candidates are ranked by Hamming distance, so they take
``k x oversample`` of them and rescore, like the scan's binary stage."""


@dataclass(frozen=True, eq=False)
class IndexView:
    """An index as seen from one table version."""

    index: Any  # vecstore.index.IndexBase
    kind: str
    label_rows: I64  # label -> global row in this version; -1 when deleted or gone
    covered: npt.NDArray[np.bool_]  # global rows the index covers (live or not)
    fresh: I64  # live global rows the index does not cover, sorted
    live_labels: int
    live_allow: npt.NDArray[np.bool_] | None  # labels still live; None when all are

    @classmethod
    def build(cls, snap: Snapshot, index: Any, entry: dict[str, Any]) -> IndexView:
        by_path = {e.data.path: s for s, e in enumerate(snap.manifest.segments)}
        count = int(entry["count"])
        label_rows = np.full(count, -1, dtype=np.int64)
        covered = np.zeros(snap.physical_rows, dtype=bool)
        offset = 0
        for path, rows in entry["segments"]:
            s = by_path.get(path)
            if s is not None:
                seg = snap.segments[s]
                base = int(snap.bases[s])
                block = np.arange(base, base + rows, dtype=np.int64)
                if seg.deleted.size:
                    block[seg.deleted] = -1
                label_rows[offset:offset + rows] = block
                covered[base:base + rows] = True
            offset += rows
        live = snap.live_mask
        fresh = np.flatnonzero(live & ~covered).astype(np.int64)
        valid = label_rows >= 0
        live_labels = int(np.count_nonzero(valid))
        return cls(index=index, kind=str(entry["kind"]), label_rows=label_rows, covered=covered,
                   fresh=fresh, live_labels=live_labels,
                   live_allow=None if live_labels == count else valid)


def _allow_for(view: IndexView, snap: Snapshot, rows: I64 | None) -> npt.NDArray[np.bool_] | None:
    if rows is None:
        return view.live_allow
    valid = view.label_rows >= 0
    mask = np.zeros(snap.physical_rows, dtype=bool)
    mask[rows] = True
    allow = np.zeros(len(view.label_rows), dtype=bool)
    allow[valid] = mask[view.label_rows[valid]]
    return allow


def _rescore(scorer: _Scorer, snap: Snapshot, rows: I64, k: int, int8_first: bool,
             stages: list[Stage]) -> tuple[I64, F32]:
    rows = np.unique(rows)
    if int8_first and rows.size > 4 * k:
        t = time.perf_counter()
        scores = np.empty(rows.size, dtype=np.float32)
        offset = 0
        for s, local in snap.split(rows):
            scores[offset:offset + local.size] = scorer.int8(s, local)
            offset += local.size
        keep = np.sort(rows[_top(scores, max(4 * k, rows.size // 4))])
        stages.append(Stage("int8 rescore", rows.size, keep.size, time.perf_counter() - t))
        rows = keep
    t = time.perf_counter()
    found, scores, _ = _exact_over(scorer, list(snap.split(rows)), k)
    stages.append(Stage("float32 rescore", rows.size, found.size, time.perf_counter() - t))
    return found, scores


@dataclass(frozen=True)
class _Attempt:
    """The planner's first index search for a request: what to ask the index for."""

    strategy: str
    n_cand: int  # candidates wanted after filtering
    want: int  # labels asked of the index
    effort: int
    filter_inside: bool  # allow passed into the search (else: filtered afterwards, if at all)


def _attempt(view: IndexView, req: SearchRequest, m_cov: int, filtered: bool) -> _Attempt:
    k = req.k
    count = len(view.label_rows)
    selectivity = m_cov / count if count else 0.0
    # float indexes: their candidates are rescored exactly, so a few beyond k suffice (more for
    # quantized scores: candidates_for); a caller's larger .rescore(oversample) widens them (and
    # the ef that finds them) in proportion
    widen = max(1, req.oversample // DEFAULT_OVERSAMPLE) if req.oversample_set else 1
    binary = view.kind in BINARY_KINDS
    n_cand = k * req.oversample if binary else view.index.candidates_for(k) * widen
    n_cand = max(1, min(n_cand, m_cov))
    if not filtered or selectivity >= POSTFILTER_MIN_SELECTIVITY:
        want = n_cand if not filtered else min(count, math.ceil(n_cand / selectivity * 1.2) + k)
        return _Attempt("index, then filter" if filtered else "index", n_cand, want,
                        view.index.effort_for(want, 1.0), False)
    return _Attempt("index with filter inside", n_cand, n_cand,
                    view.index.effort_for(n_cand, selectivity), True)


def _scan_instead(view: IndexView, req: SearchRequest, n_match: int) -> str | None:
    """Why a filtered request scans its matches rather than searching the index (None: it
    does not)."""
    if req.rows is None:
        return None
    if n_match <= SCAN_MAX_MATCHES:
        return f"{n_match:,} matches <= {SCAN_MAX_MATCHES:,}"
    if view.kind in BINARY_KINDS:
        return "filtered, binary index"
    return None


@dataclass(frozen=True, eq=False)
class Prefetched:
    """A request's first index search, done for a whole batch by :func:`search_indexed_batch`."""

    labels: npt.NDArray[np.int64]  # the index's labels for this query (-1: none)
    seconds: float  # the batch search's time per query
    allow: npt.NDArray[np.bool_] | None  # the batch's allow bitmap, shared (built once)


def search_indexed_batch(snap: Snapshot, view: IndexView, reqs: list[SearchRequest]
                         ) -> list[Prefetched | None]:
    """The first index search of many requests sharing one filter, as one call to the index
    (which spreads the queries over its threads); one entry per request for
    :func:`search_indexed`'s ``prefetched`` (None: the request does not use the index)."""
    if not reqs:
        return []
    req = reqs[0]
    n_match = snap.num_rows if req.rows is None else int(req.rows.size)
    if (req.exact or req.k == 0 or view.live_labels == 0 or _scan_instead(view, req, n_match)
            or any(r.oversample != req.oversample or r.k != req.k for r in reqs)):
        return [None] * len(reqs)
    allow = _allow_for(view, snap, req.rows)
    m_cov = view.live_labels if allow is None else int(np.count_nonzero(allow))
    if m_cov == 0:
        return [None] * len(reqs)
    att = _attempt(view, req, m_cov, allow is not None)
    t = time.perf_counter()
    queries = np.stack([r.query for r in reqs])
    _, labels = view.index.search(queries, att.want, allow=allow if att.filter_inside else None,
                                  effort=att.effort)
    seconds = (time.perf_counter() - t) / len(reqs)
    return [Prefetched(row, seconds, allow) for row in labels]


def search_indexed(snap: Snapshot, view: IndexView, req: SearchRequest,
                   prefetched: Prefetched | None = None) -> tuple[I64, F32, Plan]:
    """Answer ``req`` using ``view``'s index for the rows it covers; ``prefetched``: its first
    index search and allow bitmap, done for a whole batch."""
    k = req.k
    n_match = snap.num_rows if req.rows is None else int(req.rows.size)
    if req.exact or k == 0 or view.live_labels == 0:
        return search(snap, req)

    stages: list[Stage] = []
    if req.filter is not None:
        stages.append(Stage("filter", snap.num_rows, n_match, req.filter_seconds))
    binary = view.kind in BINARY_KINDS
    why = _scan_instead(view, req, n_match)
    if why is not None:
        # decided before the allow bitmap is built: the scan does not need it
        rows, scores, plan = search(snap, req)
        return rows, scores, Plan(
            strategy=f"scan ({why})", stages=plan.stages,
            notes=plan.notes, table_rows=snap.num_rows, k=k, oversample=plan.oversample,
            filter=req.filter, matches=n_match, index=view.kind)
    t = time.perf_counter()
    allow = prefetched.allow if prefetched is not None else _allow_for(view, snap, req.rows)
    m_cov = view.live_labels if allow is None else int(np.count_nonzero(allow))
    if req.rows is None:
        fresh = view.fresh
    else:
        fresh = req.rows[~view.covered[req.rows]] if req.rows.size else req.rows
    count = len(view.label_rows)
    plan_args: dict[str, Any] = dict(
        table_rows=snap.num_rows, k=k, oversample=req.oversample, filter=req.filter,
        matches=None if req.rows is None else n_match, estimated_selectivity=None, index=view.kind)
    stages.append(Stage("allow bitmap", count, m_cov, time.perf_counter() - t))

    scorer = _Scorer(snap, req.query)
    q = req.query[None, :]
    notes: list[str] = []
    cand = np.empty(0, dtype=np.int64)
    if m_cov > 0:
        att = _attempt(view, req, m_cov, allow is not None)
        strategy, n_cand, want, effort = att.strategy, att.n_cand, att.want, att.effort
        if not att.filter_inside:
            for _ in range(MAX_WIDENINGS + 1):
                t = time.perf_counter()
                if prefetched is not None:
                    raw, seconds = prefetched.labels, prefetched.seconds
                    prefetched = None
                else:
                    raw = view.index.search(q, want, effort=effort)[1][0]
                    seconds = time.perf_counter() - t
                labels = raw[raw >= 0]
                if allow is not None:
                    labels = labels[allow[labels]]
                else:
                    labels = labels[view.label_rows[labels] >= 0]
                stages.append(Stage(f"{view.kind} ef={effort}", m_cov, labels.size, seconds))
                if labels.size >= n_cand or want >= count:
                    break
                notes.append(f"post-filter kept {labels.size} < {n_cand}: widened")
                want = min(count, want * 4)
                effort = view.index.effort_for(want, 1.0)
        else:
            t = time.perf_counter()
            if prefetched is not None:
                raw, seconds = prefetched.labels, prefetched.seconds
            else:
                raw = view.index.search(q, n_cand, allow=allow, effort=effort)[1][0]
                seconds = time.perf_counter() - t
            labels = raw[raw >= 0]
            stages.append(Stage(f"{view.kind} filtered ef={effort}", m_cov, labels.size, seconds))
        cand = view.label_rows[labels]
        cand = cand[cand >= 0]
    else:
        strategy = "fresh rows only"

    found, scores = _rescore(scorer, snap, cand, k, binary, stages) if cand.size else (
        np.empty(0, np.int64), np.empty(0, np.float32))
    if fresh.size:
        fresh_req = SearchRequest(query=req.query, k=k, oversample=req.oversample, exact=False,
                                  rows=fresh)
        t = time.perf_counter()
        f_rows, f_scores, _ = search(snap, fresh_req)
        stages.append(Stage("fresh rows (scan)", int(fresh.size), f_rows.size, time.perf_counter() - t))
        rows = np.concatenate([found, f_rows])
        all_scores = np.concatenate([scores, f_scores]).astype(np.float32)
        order = _top(all_scores, k)
        found, scores = rows[order], all_scores[order]
        notes.append(f"{fresh.size:,} rows added since the index was built were scanned")

    if found.size < min(k, n_match):
        notes.append(f"the index returned {found.size} < min(k, matches) = {min(k, n_match)}: "
                     f"fell back to the scan")
        rows, sc, plan = search(snap, req)
        return rows, sc, Plan(strategy=f"{strategy} -> scan fallback", stages=(*stages, *plan.stages),
                              notes=tuple(notes), **plan_args)
    return found, scores, Plan(strategy=strategy, stages=tuple(stages), notes=tuple(notes), **plan_args)
