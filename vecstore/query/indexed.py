"""Searching with an ANN index: labels mapped to rows, candidates rescored, fresh rows merged.

The index covers the rows of the segments that existed when it was built; rows added since
("fresh" rows) are scanned beside it, deleted or replaced rows are masked out, and every
candidate the index returns is rescored with the table's own float32 vectors, so scores are
exact and results from the index and the scan merge cleanly. When the index comes back with
fewer than ``min(k, matches)`` rows, the matches are scanned instead: an index never hides a
row that matches. :mod:`.planner` decides which search to run.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

from .._native import loader
from .._native.reference import METRICS
from ..config import Metric, PlannerSettings
from ..storage.manifest import IndexEntry
from ..storage.snapshot import Snapshot
from .multivector import make_scorer, scored_columns
from .planner import (
    BINARY_KINDS,
    IndexAttempt,
    SearchRequest,
    index_attempt,
    resolve_oversample,
    scan_instead_of_index,
)
from .results import Plan, Stage, Strategy
from .scan import scan
from .scoring import rescore_exact, scoring_queries, top_k

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
Answer = tuple[I64, F32, "Plan | Callable[[], Plan]"]

ALLOW_CACHE_ENTRIES = 8
"""Allow bitmaps an :class:`IndexView` keeps, one per filter result (a label flag each: 8 x 1 MB
on a 1M-row index). Users run one filter with many query vectors; the version's filter engine
hands back the same rows array for a repeated filter, and the bitmap derived from it is kept."""


ATTEMPT_CACHE_ENTRIES = 256
"""Index attempts an :class:`IndexView` keeps (by k, oversample and filter count)."""


@dataclass(frozen=True, eq=False)
class FilterMask:
    """What an index search needs from a filter's rows, derived once per filter result."""

    rows: I64  # the filter's rows: held, so that the cache key (its id) stays this array's
    allow: npt.NDArray[np.bool_] | None  # labels whose rows match (read-only); None: every live one
    allowed: int  # labels allowed
    fresh: I64  # matching rows the index does not cover (added since the build)
    cached: bool = False  # taken from the view's cache


@dataclass(frozen=True, eq=False)
class IndexView:
    """An index as seen from one table version: which global row each label is, which rows it
    covers, and which live rows it does not (added since the build)."""

    index: Any
    kind: str
    label_rows: I64  # label -> global row, -1 when the row was deleted or is gone
    covered: npt.NDArray[np.bool_]  # global rows the index covers (live or not)
    fresh: I64  # live global rows the index does not cover, sorted
    live_labels: int
    live_allow: npt.NDArray[np.bool_] | None  # labels still live; None when all are
    attempts: dict[tuple[Any, ...], Any] = field(default_factory=dict)  # see attempt()
    vectors: tuple[str, ...] = ("vector",)  # the vector columns indexed, one block of labels each
    masks: OrderedDict[int, FilterMask] = field(default_factory=OrderedDict)  # by id(rows)
    masks_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def per_row(self) -> int:
        """Labels per row: one per vector column indexed."""
        return len(self.vectors)

    @property
    def whole(self) -> bool:
        """Whether the index's candidates alone answer an unfiltered query (as they are where
        its scores are exact, else rescored): every label is live, no row was added since the
        build, and each row has one label."""
        return self.live_allow is None and self.fresh.size == 0 and len(self.vectors) == 1

    def exact_for(self, index: Any) -> bool:
        """Whether the index's scores are the rows' scores: exact, and one vector per row (a
        row with several is rescored by its combination)."""
        return bool(index.exact_scores) and len(self.vectors) == 1

    @classmethod
    def build(cls, snap: Snapshot, index: Any, entry: IndexEntry) -> IndexView:
        # where each segment the index was built over sits now: a segment of this version, or
        # a range of one that a merge wrote (rows kept unchanged and in order)
        where: dict[str, tuple[int, int]] = {}
        for s, e in enumerate(snap.manifest.segments):
            where[e.data.path] = (s, 0)
            for path, _, at in e.merged_from:
                where.setdefault(path, (s, at))
        per_row = len(entry.vectors)
        label_rows = np.full(entry.count // per_row, -1, dtype=np.int64)
        covered = np.zeros(snap.physical_rows, dtype=bool)
        offset = 0
        for path, rows in entry.segments:
            found = where.get(path)
            if found is not None:
                s, at = found
                seg = snap.segments[s]
                base = int(snap.bases[s]) + at
                block = np.arange(base, base + rows, dtype=np.int64)
                dead = seg.deleted[(seg.deleted >= at) & (seg.deleted < at + rows)] - at
                block[dead] = -1
                label_rows[offset:offset + rows] = block
                covered[base:base + rows] = True
            offset += rows
        fresh = np.flatnonzero(snap.live_mask & ~covered).astype(np.int64)
        if per_row > 1:  # labels of a multi-vector index: every row's first vector, then second...
            label_rows = np.tile(label_rows, per_row)
        valid = label_rows >= 0
        live_labels = int(np.count_nonzero(valid))
        return cls(index=index, kind=entry.kind, label_rows=label_rows, covered=covered,
                   fresh=fresh, live_labels=live_labels,
                   live_allow=None if live_labels == entry.count else valid,
                   vectors=entry.vectors)

    def attempt(self, req: SearchRequest, covered_matches: int, masked: bool,
                settings: PlannerSettings) -> IndexAttempt:
        """:func:`~.planner.index_attempt` for ``req`` on this index, kept for the view's (the
        version's) lifetime: a pure function of the request's k, oversample and filter count,
        which users repeat query after query (the effort lookup costs more than the search's
        own Python)."""
        key = (req.k, req.oversample, req.oversample_set, req.rows is not None, covered_matches,
               masked, id(settings))  # (the executor's settings, which it holds: id is enough)
        att = self.attempts.get(key)
        if att is None:
            att = index_attempt(self.index, self.kind, req, covered_matches, len(self.label_rows),
                                masked, settings, self.per_row)
            if len(self.attempts) >= ATTEMPT_CACHE_ENTRIES:
                self.attempts.clear()
            self.attempts[key] = att
        return att

    def allow_for(self, snap: Snapshot, rows: I64 | None) -> npt.NDArray[np.bool_] | None:
        """The labels whose rows are in ``rows`` (every live label when None)."""
        return self.mask_for(snap, rows).allow

    def mask_for(self, snap: Snapshot, rows: I64 | None) -> FilterMask:
        """The allow bitmap, its count and the fresh rows for the filter result ``rows``
        (every live row when None). Kept for the view's (the version's) lifetime, the last
        :data:`ALLOW_CACHE_ENTRIES` filter results, when ``rows`` is read-only (the filter
        engine's cached results are): the array itself is the key, so a repeated filter costs
        no full-size allocation; a commit makes a new version and a new view."""
        if rows is None:
            return FilterMask(np.empty(0, np.int64), self.live_allow, self.live_labels, self.fresh)
        keep = not rows.flags.writeable
        if keep:
            with self.masks_lock:
                hit = self.masks.get(id(rows))
                if hit is not None and hit.rows is rows:
                    self.masks.move_to_end(id(rows))
                    return hit  # kept as it is returned from the cache (cached=True)
        # the labels' rows that are in ``rows``: a row mask read through the labels, two
        # linear passes (a sorted lookup of every label cost 389 ms at 10M rows, 1M matches)
        valid = self.label_rows >= 0
        allow = np.zeros(len(self.label_rows), dtype=bool)
        if rows.size:
            in_rows = np.zeros(int(snap.bases[-1]), dtype=bool)  # every global row, live or not
            in_rows[rows] = True
            allow[valid] = in_rows[self.label_rows[valid]]
        allow.flags.writeable = False
        mask = FilterMask(rows, allow, int(np.count_nonzero(allow)), rows[~self.covered[rows]])
        if keep:
            with self.masks_lock:
                self.masks[id(rows)] = replace(mask, cached=True)
                while len(self.masks) > ALLOW_CACHE_ENTRIES:
                    self.masks.popitem(last=False)
        return mask


@dataclass(frozen=True, eq=False)
class Prefetched:
    """A request's first index search, done for a whole batch by :func:`search_index_batch`."""

    labels: I64  # the index's labels for this query (-1: none)
    scores: F32  # their scores (exact when the index's scores are)
    seconds: float  # the batch search's time per query
    mask: FilterMask  # the batch's allow bitmap, shared (built once)


def index_queries(index: Any, queries: F32) -> F32:
    """Checked query vectors as the index searches them: ``[q, dim]``, unit length under
    cosine (the index holds unit vectors). One query or many, the same arithmetic (a batch
    returns what each query alone would): the vectors the rescoring scores with
    (:func:`~.scoring.scoring_queries`), so that a search that rescores normalises once."""
    q = queries if queries.ndim == 2 else queries.reshape(-1, queries.shape[-1])
    if index.metric is Metric.COSINE:
        return scoring_queries(Metric.COSINE, q)[0]
    if not q.flags.c_contiguous or q.dtype != np.float32:
        q = np.ascontiguousarray(q, dtype=np.float32)
    return q


@dataclass(frozen=True, eq=False)
class BatchStart:
    """The first index search of a batch: per request, either its answer (when the search
    found enough live rows, its scores exact or rescored for the whole batch: no per-query work
    left) or what :func:`search_index` continues from (None: the request does not start with
    the index)."""

    answers: list[Answer | None]
    prefetched: list[Prefetched | None]
    scans: bool = False  # the planner scans the matches instead (search_index will, per request)


def _quick_attempt(snap: Snapshot, view: IndexView, query: F32, k: int, oversample: int | None,
                   settings: PlannerSettings) -> tuple[IndexAttempt, int]:
    """The planner's first index search for an unfiltered ``k``-query and the oversample its
    candidates are rescored with: chosen once per (k, oversample) and version, then kept."""
    key = (k, oversample)
    att = view.attempts.get(key)
    if att is None:
        req = SearchRequest(query=query, k=k,
                            oversample=resolve_oversample(oversample, False, settings,
                                                          snap.manifest.scan, snap.num_rows, k),
                            oversample_set=oversample is not None, exact=False, rows=None)
        att = view.attempts[key] = (index_attempt(view.index, view.kind, req, view.live_labels,
                                                  len(view.label_rows), False, settings), req.oversample)
    return att


def search_index_quick(snap: Snapshot, view: IndexView, query: F32, k: int, oversample: int | None,
                       settings: PlannerSettings) -> tuple[I64, F32, Callable[[], Plan]] | None:
    """An unfiltered query (``.rescore(oversample)`` when not None) answered by a
    :attr:`IndexView.whole` index alone: one search, its labels mapped to rows (and where the
    index's scores are not exact, its candidates rescored in one kernel call, as
    :func:`search_index` rescores them), the plan described only when asked for. None when
    the index came back short, or would be widened (the caller runs :func:`search_index`),
    or where its candidates are rescored otherwise (int8 first, or vectors read from disk)."""
    rescoring = None if view.index.exact_scores else _batch_rescoring(snap, view, settings, wait=False)
    if rescoring is None and not view.index.exact_scores:
        return None
    att, used_oversample = _quick_attempt(snap, view, query, k, oversample, settings)
    count = len(view.label_rows)
    t = time.perf_counter()
    if rescoring is not None:
        # the index's metric is the table's (checked when it is loaded): one normalisation
        units, norm2 = scoring_queries(snap.manifest.config.metric, query.reshape(1, -1))
        labels = view.index.candidate_labels(units, att.want, att.effort)
        seconds = time.perf_counter() - t
        return _rescored_quick(snap, view, rescoring, att, used_oversample, k, units, norm2,
                               labels, seconds)
    scores, labels = view.index.search_prepared(index_queries(view.index, query), att.want, None,
                                                count, att.effort)
    seconds = time.perf_counter() - t
    labels, scores = labels[0], scores[0]
    if labels[-1] < 0:  # misses are padded at the end
        keep = labels >= 0
        labels, scores = labels[keep], scores[keep]
    found = int(labels.size)
    if found < min(k, snap.num_rows):
        return None
    if found > k:
        labels, scores = labels[:k], scores[:k]
    rows = view.label_rows[labels]

    def plan() -> Plan:
        return Plan(strategy=att.strategy, reason=att.reason, table_rows=snap.num_rows, k=k,
                    oversample=used_oversample, index=view.kind,
                    stages=(Stage(f"{view.kind} ef={att.effort}", count, found, seconds),))

    return rows, scores, plan


def _rescored_quick(snap: Snapshot, view: IndexView, rescoring: tuple[Any, int, I64, I64],
                    att: IndexAttempt, used_oversample: int, k: int, units: F32,
                    norm2: npt.NDArray[np.float64], labels: I64, seconds: float
                    ) -> tuple[I64, F32, Callable[[], Plan]] | None:
    """:func:`search_index_quick`'s answer from an index whose candidates are rescored: what
    :func:`search_index` finds from the same search (None where it would widen the search, or
    fall back to the scan)."""
    kern, metric, where, fds = rescoring
    t = time.perf_counter()
    rows, scores, kept, scored = kern.rescore_labels_batch(
        labels, view.label_rows, NO_ALLOW, units, norm2, where, fds, snap.bases, snap.norms_all,
        metric, k)
    rescore_seconds = time.perf_counter() - t
    count = len(view.label_rows)
    n_kept, n_scored = int(kept[0]), int(scored[0])
    if n_scored < 0:
        raise snap.vectors_unreadable()
    found = min(k, n_scored)
    if found < min(k, snap.num_rows) or (n_kept < att.n_cand and att.want < count):
        return None

    def plan() -> Plan:
        return Plan(strategy=att.strategy, reason=att.reason, table_rows=snap.num_rows, k=k,
                    oversample=used_oversample, index=view.kind,
                    stages=(Stage(f"{view.kind} ef={att.effort}", count, n_kept, seconds),
                            Stage("float32 rescore", n_scored, found, rescore_seconds)))

    return rows[0, :found], scores[0, :found], plan


BATCH_PARTS_PER_THREAD = 4
"""A batch's first index search is split into this many parts per thread, each searched on one
thread and its labels mapped to rows by that thread: while one part holds the GIL to map its
labels, the other threads' searches go on outside it."""


def search_index_batch(snap: Snapshot, view: IndexView, req: SearchRequest, vectors: F32,
                       settings: PlannerSettings, stages: Sequence[Stage] = (),
                       threads: int | None = None, pool: Executor | None = None) -> BatchStart:
    """The first index search of the queries ``vectors`` (``[n, dim]``), each a request like
    ``req`` but for its vector (one filter, one k, one oversample). With a ``pool`` of
    ``threads`` threads the queries are split into parts (:data:`BATCH_PARTS_PER_THREAD` per
    thread), each searched on one thread and finished by it; without one (or when the index's
    filtered search holds the GIL, or its batch search is one parallel kernel) all of them go to
    the index in one call, which spreads them over at most ``threads`` threads (None: its
    default). Where no row is missing from the index, the answers are taken from those searches
    for every query of a part at once: as they are where the index's scores are exact
    (vectorised, no per-query Python), else rescored exactly by one kernel call per part
    (:func:`_batch_rescoring`), each plan described only when asked for. A query left short
    (its filter kept too few candidates) goes on in :func:`search_index` from its search."""
    n_queries = len(vectors)
    none: list[Any] = [None] * n_queries
    if not n_queries:
        return BatchStart([], [])
    n_match = snap.num_rows if req.rows is None else int(req.rows.size)
    if view.live_labels == 0 or scan_instead_of_index(view.kind, req, n_match, settings,
                                                       snap.num_rows):
        return BatchStart(none, list(none), scans=True)
    if view.per_row > 1 or req.combine is not None:
        return BatchStart(none, list(none))
    t = time.perf_counter()
    fm = view.mask_for(snap, req.rows)
    allow, m_cov = fm.allow, fm.allowed
    if m_cov == 0:
        return BatchStart(none, list(none))
    count = len(view.label_rows)
    bitmap = Stage("allow bitmap (cached)" if fm.cached else "allow bitmap", count, m_cov,
                   time.perf_counter() - t)
    att = view.attempt(req, m_cov, allow is not None, settings)
    index = view.index
    search_allow = allow if att.filter_inside else None
    parts = 1
    if (pool is not None and threads is not None and threads > 1
            and not (search_allow is not None and index.filter_holds_gil)):
        parts = min(n_queries, threads * BATCH_PARTS_PER_THREAD)
    answering = index.exact_scores and not fm.fresh.size
    rescoring = None if answering or fm.fresh.size else _batch_rescoring(snap, view, settings)
    k = req.k
    need = min(k, n_match)
    name = f"{view.kind} filtered ef={att.effort}" if att.filter_inside else f"{view.kind} ef={att.effort}"
    note = ("first stage searched for the whole batch in one call" if parts == 1 else
            f"first stage searched for the whole batch in {parts} parts on {threads} threads")

    def part(lo: int, hi: int) -> tuple[list[Any], list[Prefetched | None]]:
        t = time.perf_counter()
        if rescoring is not None:  # the index's metric is the table's: one normalisation
            queries, norm2 = scoring_queries(snap.manifest.config.metric, vectors[lo:hi])
        else:
            queries, norm2 = index_queries(index, vectors[lo:hi]), None
        scores, labels = index.search_prepared(
            queries, att.want, search_allow, m_cov if att.filter_inside else count, att.effort,
            threads=1 if parts > 1 else threads)
        seconds = (time.perf_counter() - t) / (hi - lo)
        if norm2 is not None:
            return rescored(queries, norm2, labels, scores, seconds)
        if not answering:
            return [None] * (hi - lo), [Prefetched(row, sc, seconds, fm)
                                        for row, sc in zip(labels, scores, strict=True)]
        # every query of the part at once: labels -> rows, misses and rows outside the filter
        # dropped, the first k left (the index sorts by score)
        rows = np.where(labels >= 0, view.label_rows[np.maximum(labels, 0)], -1)
        ok = rows >= 0
        if allow is not None and not att.filter_inside:
            ok &= allow[np.maximum(labels, 0)]
        order = np.argsort(~ok, axis=1, kind="stable")[:, :k]
        take_rows = np.take_along_axis(rows, order, axis=1)
        take_scores = np.take_along_axis(scores, order, axis=1).astype(np.float32, copy=False)
        found = np.take_along_axis(ok, order, axis=1).sum(axis=1).tolist()
        plan = Plan(strategy=att.strategy, reason=att.reason, table_rows=snap.num_rows, k=k,
                    oversample=req.oversample, filter=req.filter,
                    matches=None if req.rows is None else n_match, index=view.kind,
                    stages=(*stages, bitmap, Stage(name, m_cov, k, seconds)), notes=(note,))
        answers: list[Answer | None] = []
        prefetched: list[Prefetched | None] = []
        for i, n in enumerate(found):
            if n >= need:
                answers.append((take_rows[i, :n], take_scores[i, :n], plan))
                prefetched.append(None)
            else:  # search_index goes on from this search (widening it, or scanning)
                answers.append(None)
                prefetched.append(Prefetched(labels[i], scores[i], seconds, fm))
        return answers, prefetched

    def rescored(units: F32, norm2: npt.NDArray[np.float64], labels: I64, scores: F32,
                 seconds: float) -> tuple[list[Any], list[Prefetched | None]]:
        # every query of the part rescored in one kernel call (outside the GIL), as
        # search_index would rescore it alone: the same candidates, the same arithmetic
        assert rescoring is not None
        t = time.perf_counter()
        kern, metric, where, fds = rescoring
        rows, exact, kept, scored = kern.rescore_labels_batch(
            labels, view.label_rows, allow if allow is not None else NO_ALLOW, units, norm2,
            where, fds, snap.bases, snap.norms_all, metric, k)
        if bool((scored < 0).any()):
            raise snap.vectors_unreadable()
        rescore_seconds = (time.perf_counter() - t) / len(units)
        found = np.minimum(scored, k)
        # a post-filtered search that kept fewer than n_cand labels is widened by search_index
        ok = (found >= need) & (att.filter_inside or att.want >= count or kept >= att.n_cand)

        def described(i: int) -> Plan:
            return Plan(strategy=att.strategy, reason=att.reason, table_rows=snap.num_rows, k=k,
                        oversample=req.oversample, filter=req.filter,
                        matches=None if req.rows is None else n_match, index=view.kind,
                        stages=(*stages, bitmap, Stage(name, m_cov, int(kept[i]), seconds),
                                Stage("float32 rescore (batch kernel)", int(scored[i]),
                                      int(found[i]), rescore_seconds)),
                        notes=(note,))

        answers: list[Answer | None] = []
        prefetched: list[Prefetched | None] = []
        for i, (good, n) in enumerate(zip(ok.tolist(), found.tolist(), strict=True)):
            if good:
                answers.append((rows[i, :n], exact[i, :n], partial(described, i)))
                prefetched.append(None)
            else:
                answers.append(None)
                prefetched.append(Prefetched(labels[i], scores[i], seconds, fm))
        return answers, prefetched

    cuts = np.linspace(0, n_queries, parts + 1).astype(np.int64).tolist()
    if pool is None or parts == 1:
        done = [part(0, n_queries)]
    else:
        done = list(pool.map(part, cuts[:-1], cuts[1:]))
    return BatchStart([a for answers, _ in done for a in answers],
                      [p for _, prefetched in done for p in prefetched])


NO_ALLOW = np.zeros(0, dtype=np.bool_)
"""The rescoring kernel's ``allow`` when every live label is allowed (it then reads the labels'
rows)."""

IN_MEMORY = np.zeros(0, dtype=np.int64)
"""The rescoring kernel's ``fds`` when it reads the rows through memory at their addresses."""


def rescores_from_files(snap: Snapshot, settings: PlannerSettings) -> bool:
    """Whether an index's candidates are rescored with their float32 rows read by ``pread``
    (:attr:`~.Snapshot.vector_files`), not through the memory map: where the table's vectors
    take more than ``settings.mapped_rescore_bytes`` (every table, by default)."""
    return snap.physical_rows * snap.manifest.config.dim * 4 > settings.mapped_rescore_bytes


def _batch_rescoring(snap: Snapshot, view: IndexView, settings: PlannerSettings, wait: bool = True
                     ) -> tuple[Any, int, I64, I64] | None:
    """The kernel module, metric code and where the segments' vectors are (their files'
    descriptors and offsets where :func:`rescores_from_files`: rows read by ``pread``, so that
    a serving process keeps in memory what its index needs and not the vectors file; else
    their addresses) with which :func:`search_index_batch` and
    :func:`search_index_quick` rescore candidates in one call (``rescore_labels_batch``); or
    None where a query's own rescoring is not that arithmetic: an index rescored int8 first, a
    multi-vector table, or vectors not one float32 array per segment. ``wait``: for the Numba
    kernels (a batch; one query takes the NumPy twins until they are loaded, as its own
    rescoring does)."""
    if (view.kind in BINARY_KINDS or view.index.int8_first or snap.manifest.config.multi
            or snap.vector_addresses is None or not snap.segments):
        return None
    files = snap.vector_files if rescores_from_files(snap, settings) else None
    if files is not None:
        fds, where = files
    elif snap.pages.on_disk:
        return None
    else:  # read through the map, or vectors in memory (not in a mapped file)
        fds, where = IN_MEMORY, snap.vector_addresses
    return (loader.get("kernels", wait=wait), METRICS.index(snap.manifest.config.metric.value),
            where, fds)


def search_index(snap: Snapshot, view: IndexView, req: SearchRequest, settings: PlannerSettings,
                 stages: list[Stage], prefetched: Prefetched | None = None
                 ) -> tuple[I64, F32, Plan | Callable[[], Plan]]:
    """Answer ``req`` using ``view``'s index for the rows it covers (or by a scan, when the
    planner says so); ``stages`` already done (the filter) are kept in front. The plan, or
    where the index answered, a function describing it when asked for (``explain()``)."""
    k = req.k
    n_match = snap.num_rows if req.rows is None else int(req.rows.size)
    why = scan_instead_of_index(view.kind, req, n_match, settings, snap.num_rows)
    if why is None and view.live_labels == 0:
        why = "no live row in the index"
    if why is None and req.combine is not None and set(req.combine.columns) != set(view.vectors):
        why = (f"the index covers the vector columns {', '.join(view.vectors)}; this query scores "
               f"{', '.join(scored_columns(snap, req.combine))}")
    if why is not None:
        # decided before the allow bitmap is built: the scan does not need it
        rows, scores, plan = scan(snap, req, settings, stages)
        return rows, scores, lambda: replace(plan, reason=f"{plan.reason}; {why}", index=view.kind)

    stages = list(stages)
    t = time.perf_counter()
    fm = prefetched.mask if prefetched is not None else view.mask_for(snap, req.rows)
    allow, m_cov, fresh = fm.allow, fm.allowed, fm.fresh
    count = len(view.label_rows)
    stages.append(Stage("allow bitmap (cached)" if fm.cached else "allow bitmap", count, m_cov,
                        time.perf_counter() - t))

    notes: list[str] = []
    cand, cand_scores = np.empty(0, dtype=np.int64), None
    att: IndexAttempt | None = None  # its reason: a string built only when the plan is asked for
    if m_cov > 0:
        att = view.attempt(req, m_cov, allow is not None, settings)
        strategy = att.strategy
        cand, cand_scores = _candidates(view, req, att, allow, m_cov, prefetched, stages, notes,
                                        settings)
    else:
        strategy = Strategy.FRESH_ROWS

    if cand_scores is not None:  # the index's scores are exact: its best k are the answer
        order = top_k(cand_scores, k)
        found, scores = cand[order], cand_scores[order]
    else:
        found, scores = _rescore(make_scorer(snap, req.query, req.combine), cand, k,
                                 view.kind in BINARY_KINDS or view.index.int8_first, stages,
                                 rescores_from_files(snap, settings))
    if fresh.size:
        fresh_req = SearchRequest(query=req.query, k=k, oversample=req.oversample,
                                  oversample_set=req.oversample_set, exact=False, rows=fresh,
                                  combine=req.combine)
        t = time.perf_counter()
        f_rows, f_scores, _ = scan(snap, fresh_req, settings)
        stages.append(Stage("fresh rows (scan)", int(fresh.size), f_rows.size, time.perf_counter() - t))
        rows = np.concatenate([found, f_rows])
        all_scores = np.concatenate([scores, f_scores]).astype(np.float32)
        order = top_k(all_scores, k)
        found, scores = rows[order], all_scores[order]
        notes.append(f"{fresh.size:,} rows added since the index was built were scanned")

    if found.size < min(k, n_match):
        notes.append(f"the index returned {found.size} < min(k, matches) = {min(k, n_match)}: "
                     f"fell back to the scan")
        rows, sc, plan = scan(snap, req, settings)
        return rows, sc, replace(plan, stages=(*stages, *plan.stages), notes=tuple(notes),
                                 index=view.kind, fallback_from=strategy)

    def described() -> Plan:
        return Plan(strategy=strategy,
                    reason="no indexed row matches the filter" if att is None else att.reason,
                    stages=tuple(stages), notes=tuple(notes), table_rows=snap.num_rows, k=k,
                    oversample=req.oversample, filter=req.filter,
                    matches=None if req.rows is None else n_match, index=view.kind)

    return found, scores, described


def _candidates(view: IndexView, req: SearchRequest, att: Any, allow: npt.NDArray[np.bool_] | None,
                m_cov: int, prefetched: Prefetched | None, stages: list[Stage], notes: list[str],
                settings: PlannerSettings) -> tuple[I64, F32 | None]:
    """Global rows the index proposes for ``req`` (widening a post-filtered search that came
    back short), and their scores when the index's scores are exact (else None)."""
    count = len(view.label_rows)
    index = view.index
    q = None if prefetched is not None else index_queries(index, req.query)
    if att.filter_inside:
        t = time.perf_counter()
        if prefetched is not None:
            raw, raw_scores, seconds = prefetched.labels, prefetched.scores, prefetched.seconds
        else:
            sc, lab = index.search_prepared(q, att.n_cand, allow, m_cov, att.effort)
            raw, raw_scores, seconds = lab[0], sc[0], time.perf_counter() - t
        labels, label_scores = _found(raw, raw_scores)
        stages.append(Stage(f"{view.kind} filtered ef={att.effort}", m_cov, labels.size, seconds))
    else:
        want, effort = att.want, att.effort
        for _ in range(settings.max_widenings + 1):
            t = time.perf_counter()
            if prefetched is not None:
                raw, raw_scores, seconds = prefetched.labels, prefetched.scores, prefetched.seconds
                prefetched = None
            else:
                if q is None:
                    q = index_queries(index, req.query)
                sc, lab = index.search_prepared(q, want, None, count, effort)
                raw, raw_scores, seconds = lab[0], sc[0], time.perf_counter() - t
            labels, label_scores = _found(raw, raw_scores)
            live = allow[labels] if allow is not None else view.label_rows[labels] >= 0
            labels, label_scores = labels[live], label_scores[live]
            stages.append(Stage(f"{view.kind} ef={effort}", m_cov, labels.size, seconds))
            if labels.size >= att.n_cand or want >= count:
                break
            notes.append(f"post-filter kept {labels.size} < {att.n_cand}: widened")
            want = min(count, want * 4)
            effort = index.effort_for(want, 1.0)
    # every label left is live: an allow bitmap flags live labels only, and without one the
    # dead labels were dropped above
    return view.label_rows[labels], (label_scores.astype(np.float32, copy=False)
                                     if view.exact_for(index) else None)


def _found(labels: I64, scores: F32) -> tuple[I64, F32]:
    """The labels an index search found and their scores (misses are padded at the end)."""
    if labels.size and labels[-1] < 0:
        keep = labels >= 0
        return labels[keep], scores[keep]
    return labels, scores


def _rescore(scorer: Any, rows: I64, k: int, int8_first: bool, stages: list[Stage],
             from_files: bool) -> tuple[I64, F32]:
    if rows.size == 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    rows = np.unique(rows)
    if int8_first and rows.size > 4 * k:
        t = time.perf_counter()
        keep = np.sort(rows[top_k(scorer.int8_rows(rows), max(4 * k, rows.size // 4))])
        stages.append(Stage("int8 rescore", rows.size, keep.size, time.perf_counter() - t))
        rows = keep
    t = time.perf_counter()
    found, scores = rescore_exact(scorer, rows, k, from_files)
    stages.append(Stage("float32 rescore", rows.size, found.size, time.perf_counter() - t))
    return found, scores
