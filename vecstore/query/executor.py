"""The query executor: one immutable :class:`~.spec.QuerySpec` against one table version.

It owns what queries share across calls, each keyed by the table version it belongs to: the
filter engine (with its sorted column indexes), the loaded ANN index and its view of the
version's rows. For a batch it evaluates the filter once, chooses the first stage for all queries
together (one parallel Hamming scan, or the index searched in parts, one part per thread at a
time, each part's labels mapped to rows and rescored by its thread in one kernel call), and
finishes each query left on the same pool of threads (the Numba kernels and the index libraries
release the GIL).
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from .._native import loader
from ..config import Combine, PlannerSettings
from ..errors import CorruptStoreError, InvalidArgumentError
from ..storage.files import open_in_table
from ..storage.manifest import IndexEntry, ScanCalibration
from ..storage.snapshot import Snapshot
from . import deadline
from .calibrate import calibrate_scan
from .filters import ROW_COLUMN, FilterEngine
from .indexed import (
    IndexView,
    Prefetched,
    search_index,
    search_index_batch,
    search_index_quick,
)
from .keyword import KeywordView
from .multivector import plain
from .planner import (
    SCAN_AUTO_MEASURE_MAX_ROWS,
    SCAN_CALIBRATED_ROWS,
    SCAN_REMEASURE_GROWTH,
    SearchRequest,
    resolve_oversample,
    scan_instead_of_index,
    scan_strategy,
)
from .results import Hits, Plan, Stage, Strategy
from .retrieval import run_retrieval
from .scan import batch_binary_candidates, batch_two_stage, scan, scan_quick
from .spec import QuerySpec

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]

LIVE_KEPT = 8
"""Filter results whose live subset (on a table with deletions) an executor keeps per version."""


class Executor:
    """Runs queries over the versions of one table (thread-safe)."""

    def __init__(self, table_dir: Path, settings: PlannerSettings | None = None) -> None:
        self.table_dir = table_dir
        self.settings = settings or PlannerSettings()
        self._guard = threading.Lock()
        self._filters: tuple[int, FilterEngine] | None = None
        self._indexes: dict[str, Any] = {}  # index path -> loaded index
        self._views: tuple[int, IndexView | None] | None = None
        self._broken: set[str] = set()  # index paths found damaged in this process
        self._keyword: tuple[int, KeywordView] | None = None
        self._live_kept: tuple[int, dict[int, tuple[I64, I64]]] = (-1, {})  # see _live

    # -- filters ------------------------------------------------------------------------------
    def filter_engine(self, snap: Snapshot) -> FilterEngine:
        """The filter engine over ``snap``'s attributes (built once per version)."""
        with self._guard:
            cached = self._filters
            if cached is not None and cached[0] == snap.version:
                return cached[1]
            engine = FilterEngine(snap.attribute_view(ROW_COLUMN))
            if cached is not None:
                cached[1].close()
            self._filters = (snap.version, engine)
            return engine

    def check_filter(self, snap: Snapshot, where: str) -> None:
        """Raise :class:`~vecstore.FilterError` unless ``where`` is a valid filter for ``snap``."""
        self.filter_engine(snap).check(where)

    def match_rows(self, snap: Snapshot, where: str, params: Sequence[Any]) -> I64:
        """Sorted global live rows for which ``where`` is true."""
        return self.match(snap, where, params)[0]

    def match(self, snap: Snapshot, where: str, params: Sequence[Any]) -> tuple[I64, bool]:
        """:meth:`match_rows`, and whether the filter's rows came from this version's cache."""
        rows, cached = self.filter_engine(snap).lookup(where, params)
        deadline.check("the filter")  # a query's (a write has none)
        return (self._live(snap, rows) if snap.has_deletions else rows), cached

    def _live(self, snap: Snapshot, rows: I64) -> I64:
        """``rows`` less the deleted ones. For a result the filter engine keeps (read-only) the
        live subset is kept as well, so that a repeated filter hands the index search the same
        (read-only) array and its allow bitmap comes from the view's cache, not rebuilt."""
        if rows.flags.writeable:
            return rows[snap.live_mask[rows]]
        with self._guard:
            if self._live_kept[0] != snap.version:
                self._live_kept = (snap.version, {})
            kept = self._live_kept[1]
            hit = kept.get(id(rows))
            if hit is not None and hit[0] is rows:  # the key array is held: its id is not reused
                return hit[1]
        live = rows[snap.live_mask[rows]]
        live.flags.writeable = False
        with self._guard:
            kept[id(rows)] = (rows, live)
            while len(kept) > LIVE_KEPT:
                del kept[next(iter(kept))]
        return live

    # -- indexes ------------------------------------------------------------------------------
    def remember_index(self, entry: IndexEntry, index: Any) -> None:
        """Keep an index just built for ``entry`` so the next query need not load it."""
        with self._guard:
            self._indexes[entry.path] = index

    def _load(self, snap: Snapshot, entry: IndexEntry) -> Any:
        index = self._indexes.get(entry.path)
        if index is None:
            from ..index import INDEX_KINDS, load_index

            if entry.kind not in INDEX_KINDS:
                raise CorruptStoreError(
                    f"version {snap.version} of the table in {self.table_dir} names an index of "
                    f"unknown kind {entry.kind!r}; rebuild it with create_index")
            try:  # no link on the way to the index directory (load_index checks the rest)
                os.close(open_in_table(self.table_dir, entry.path, directory=True))
            except FileNotFoundError:
                raise CorruptStoreError(
                    f"index directory {self.table_dir / entry.path} is missing") from None
            config = snap.manifest.config
            # the sidecar has no checksum of its own: hold it to what the manifest says
            expect = {"dim": config.dim, "metric": config.metric.value, "count": entry.count}
            index = load_index(entry.kind, self.table_dir / entry.path, entry.params, expect=expect)
            self._indexes = {entry.path: index}  # only the current version's index stays loaded
        return index

    def index_view(self, snap: Snapshot) -> IndexView | None:
        """``snap``'s index and how its labels map to the version's rows (None: no index)."""
        cached = self._views  # read without the lock first: every query asks
        if cached is not None and cached[0] == snap.version:
            return cached[1]
        with self._guard:
            cached = self._views
            if cached is not None and cached[0] == snap.version:
                return cached[1]
            view = None
            if snap.manifest.indexes:
                entry = snap.manifest.indexes[0]
                index = self._load_or_report(snap, entry)
                view = None if index is None else IndexView.build(snap, index, entry)
            self._views = (snap.version, view)
            return view

    def _load_or_report(self, snap: Snapshot, entry: IndexEntry) -> Any:
        """The version's index, or None when its files are damaged, missing or links. The index
        is derived data: queries then scan (the answers the index would approximate, at the
        scan's cost), a warning names the damage once per index and process, ``optimize()``
        rebuilds it, and ``tbl.verify()`` / ``vecstore check`` still fail on it. Damaged
        segments are never skipped like this: they hold the data."""
        if entry.path in self._broken:
            return None
        try:
            return self._load(snap, entry)
        except CorruptStoreError as exc:
            self._broken.add(entry.path)
            warnings.warn(f"{exc}. Searching without the index until it is rebuilt: tbl.optimize() "
                          "or tbl.create_index()", RuntimeWarning, stacklevel=2)
            return None

    def calibrate(self, snap: Snapshot, target: float = 0.95) -> ScanCalibration | None:
        """Measure the scan's oversample on ``snap`` (see :mod:`.calibrate`)."""
        return calibrate_scan(snap, self.settings, target)

    def calibration_due(self, snap: Snapshot) -> bool:
        """Whether a write has left ``snap``'s scan to be measured (again): at least
        :data:`~.planner.SCAN_CALIBRATED_ROWS` rows (and at most
        :data:`~.planner.SCAN_AUTO_MEASURE_MAX_ROWS`) and none measured, or more than
        :data:`~.planner.SCAN_REMEASURE_GROWTH` times the rows measured on."""
        measured = snap.manifest.scan
        return (SCAN_CALIBRATED_ROWS <= snap.num_rows <= SCAN_AUTO_MEASURE_MAX_ROWS
                and snap.manifest.config.dim >= self.settings.min_binary_dim
                and (measured is None or snap.num_rows > SCAN_REMEASURE_GROWTH * measured.rows))

    def keyword_view(self, snap: Snapshot) -> KeywordView:
        """``snap``'s keyword postings and live-row statistics (built once per version)."""
        with self._guard:
            cached = self._keyword
            if cached is not None and cached[0] == snap.version:
                return cached[1]
        view = KeywordView(snap)  # outside the lock: may read postings files
        with self._guard:
            self._keyword = (snap.version, view)
        return view

    # -- running ------------------------------------------------------------------------------
    def search_vector(self, snap: Snapshot, query: F32, k: int, rows: I64 | None,
                      stages: list[Stage], oversample: int | None, exact: bool,
                      combine: Combine | None = None) -> tuple[I64, F32, Plan]:
        """One vector query's best ``k`` among ``rows`` (every live row when None), by the
        strategy the planner picks: the vector ranker of keyword-aware queries. ``combine``:
        the vector columns scored on a multi-vector table (None: the table's combination)."""
        req = SearchRequest(query=query, k=k,
                            oversample=resolve_oversample(oversample, rows is not None, self.settings,
                                                          snap.manifest.scan, snap.num_rows, k),
                            oversample_set=oversample is not None, exact=exact, rows=rows,
                            combine=combine)
        view = self.index_view(snap)
        if view is not None:
            found, scores, plan = search_index(snap, view, req, self.settings, stages)
            return found, scores, plan if isinstance(plan, Plan) else plan()
        return scan(snap, req, self.settings, stages)

    def run(self, snap: Snapshot, spec: QuerySpec) -> list[Hits]:
        """One :class:`Hits` per query vector of ``spec``, in order."""
        if spec.columns is not None:
            known = set(snap.attribute_names()) | set(snap.vector_names)
            unknown = [c for c in spec.columns if c not in known]
            if unknown:
                raise InvalidArgumentError(
                    f"unknown column {unknown[0]!r}; the table's columns are: {', '.join(sorted(known))}")
        if (spec.plain_vector and spec.where is None and spec.vectors is not None
                and len(spec.vectors) == 1 and not spec.exact and spec.k > 0 and spec.combine is None):
            # the common query, kept lean: one index search (or, without an index, the scan in
            # one kernel call), no per-query objects but Hits
            view, query = self.index_view(snap), spec.vectors[0]
            quick = (scan_quick(snap, query, spec.k, spec.oversample, self.settings) if view is None
                     else search_index_quick(snap, view, query, spec.k, spec.oversample, self.settings)
                     if view.whole else None)
            if quick is not None:
                shown = (snap.default_columns if spec.columns is None
                         else list(dict.fromkeys(["id", *spec.columns])))
                return [Hits(quick[0], quick[1], quick[2], shown, snap)]
        rows, filter_stages = None, []
        if spec.where is not None:
            t = time.perf_counter()
            rows, cached = self.match(snap, spec.where, spec.params)
            filter_stages = [Stage("filter (cached)" if cached else "filter", snap.num_rows,
                                   int(rows.size), time.perf_counter() - t)]
        if not spec.plain_vector:  # keyword, hybrid, grouped or reranked: one query, the filter first
            columns = list(dict.fromkeys(["id", *(spec.columns if spec.columns is not None
                                                  else snap.manifest.schema.names)]))
            return [run_retrieval(self, snap, spec, rows, filter_stages, columns)]
        assert spec.vectors is not None
        oversample = resolve_oversample(spec.oversample, rows is not None, self.settings,
                                        snap.manifest.scan, snap.num_rows, spec.k)
        if len(spec.vectors) == 0:
            return []
        # what every query's request holds but its vector; a query's own request is made only
        # where the batch's first stage did not answer it
        common: dict[str, Any] = dict(
            k=spec.k, oversample=oversample, oversample_set=spec.oversample is not None,
            exact=spec.exact, rows=rows, filter=spec.where,
            filter_seconds=filter_stages[0].seconds if filter_stages else 0.0, combine=spec.combine)
        view = None if spec.exact else self.index_view(snap)  # exact search never needs the index
        n = len(spec.vectors)
        # os.cpu_count() costs ~12 us in this VM: a single query (n = 1) needs no pool
        threads = spec.threads or (min(n, os.cpu_count() or 1) if n > 1 else 1)
        with ExitStack() as stack:
            pool = (stack.enter_context(ThreadPoolExecutor(max_workers=threads))
                    if threads > 1 and n > 1 else None)
            return self._finish(snap, spec, common, view, filter_stages, threads, pool)

    def _two_stage_batch(self, snap: Snapshot, view: IndexView | None, common: dict[str, Any],
                         first: tuple[I64, F32], filter_stages: list[Stage], binary_seconds: float,
                         threads: int | None) -> list[Any] | None:
        """Every query's answer from its batch binary candidates ``first`` by the scan's int8
        and float32 stages in one parallel kernel call (:func:`~.scan.batch_two_stage`), with
        the plan each query's own scan (beside the index, when there is one) describes; None
        where that kernel does not apply or the planner would not run these stages."""
        candidates, units = first
        req = SearchRequest(query=units[0], **common)
        n_match = snap.num_rows if req.rows is None else int(req.rows.size)
        strategy, reason = scan_strategy(req, n_match, snap.manifest.config.dim, self.settings)
        if strategy is not Strategy.TWO_STAGE_SCAN:
            return None
        t = time.perf_counter()
        with loader.parallel_threads(threads):
            found = batch_two_stage(snap, units, candidates, req.k, req.oversample)
        if found is None:
            return None
        rows, scores = found
        seconds = (time.perf_counter() - t) / len(units)
        n1 = candidates.shape[1]
        plan = Plan(strategy=strategy, reason=reason, table_rows=snap.num_rows, k=req.k,
                    oversample=req.oversample, filter=req.filter,
                    matches=None if req.rows is None else n_match,
                    stages=(*filter_stages, Stage("binary (batch scan)", n_match, n1, binary_seconds),
                            Stage("int8 + float32 rescore (batch kernel)", n1, rows.shape[1], seconds)))
        if view is not None:  # as search_index describes the scan it runs instead of the index
            why = (scan_instead_of_index(view.kind, req, n_match, self.settings, snap.num_rows)
                   or "no live row in the index")
            plan = replace(plan, reason=f"{plan.reason}; {why}", index=view.kind)
        return [(rows[i], scores[i], plan) for i in range(len(units))]

    def _finish(self, snap: Snapshot, spec: QuerySpec, common: dict[str, Any],
                view: IndexView | None, filter_stages: list[Stage], threads: int,
                pool: ThreadPoolExecutor | None) -> list[Hits]:
        """The vector queries of ``spec`` (each a :class:`SearchRequest` of its vector and
        ``common``): the first stage for all of them together (one index search, split over the
        ``pool``; or, where they scan their matches, with an index or without, one batch Hamming
        scan), then each query finished on the pool."""
        assert spec.vectors is not None
        vectors = spec.vectors
        n = len(vectors)
        prefetched: list[Prefetched | None] = [None] * n
        answers: list[Any] = [None] * n
        candidates: list[I64] | None = None
        binary_seconds = 0.0
        if n > 1:
            scans = True
            if view is not None:
                start = search_index_batch(snap, view, SearchRequest(query=vectors[0], **common),
                                           vectors, self.settings, filter_stages, threads, pool)
                answers, prefetched, scans = start.answers, start.prefetched, start.scans
            if scans and not spec.exact and plain(snap, spec.combine):
                t = time.perf_counter()
                with loader.parallel_threads(spec.threads):
                    first = batch_binary_candidates(snap, vectors, spec.k,
                                                    common["oversample"], self.settings,
                                                    common["rows"])
                binary_seconds = (time.perf_counter() - t) / n
                if first is not None:
                    candidates = list(first[0])
                    if spec.combine is None:
                        answers = self._two_stage_batch(snap, view, common, first, filter_stages,
                                                        binary_seconds, spec.threads) or answers
        shown: Sequence[str] = (snap.default_columns if spec.columns is None
                                else list(dict.fromkeys(["id", *spec.columns])))

        limit = deadline.current()  # the pool's threads do not inherit it

        def one(i: int) -> Hits:
            if limit is not None:
                limit.check(f"query {i + 1} of {n}")
            if answers[i] is not None:
                found, scores, plan = answers[i]
                return Hits(found, scores, plan, shown, snap)
            req = (SearchRequest(query=vectors[i], **common) if candidates is None else
                   SearchRequest(query=vectors[i], binary_candidates=candidates[i],
                                 binary_seconds=binary_seconds, **common))
            if view is not None:
                found, scores, plan = search_index(snap, view, req, self.settings, filter_stages,
                                                   prefetched[i])
            else:
                found, scores, plan = scan(snap, req, self.settings, filter_stages)
            return Hits(found, scores, plan, shown, snap)

        if pool is None or all(a is not None for a in answers):
            return [one(i) for i in range(n)]
        # a few runs of queries per thread, not a task per query: a query's finish (rescoring a
        # few dozen rows) costs tens of microseconds, as much as a task's handoff between threads
        # (1,000 hnsw-int8 queries on 2 threads: 7,083 q/s against 8,661 on one)
        bounds = np.linspace(0, n, min(n, 4 * max(threads, 1)) + 1).astype(int)
        runs = pool.map(lambda b: [one(i) for i in range(bounds[b], bounds[b + 1])], range(len(bounds) - 1))
        return [hits for run in runs for hits in run]
