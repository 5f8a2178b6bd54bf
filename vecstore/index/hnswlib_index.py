"""``hnsw``: hnswlib's HNSW graph, with ``allow`` bitmaps through its filter callback.

Spaces: cosine is hnswlib's ``ip`` space on unit vectors, dot is ``ip``, L2 is ``l2``. hnswlib
reports ``1 - dot`` for ``ip`` and the squared distance for ``l2``; they are converted to
vecstore's higher-is-better scores (``1 - d`` and ``-d``).

Filtering: hnswlib keeps only allowed labels in its result heap and keeps walking the graph until
it holds ``ef`` of them, so its cost grows as the filter gets more selective, but it rarely misses
allowed rows. The callback is a Python call per visited node (the GIL is held), so filtered
searches run on one thread. When the graph part reachable from the entry point holds fewer than
``k`` allowed labels hnswlib refuses the whole batch; the affected queries are then retried one
by one for the largest ``k`` that succeeds, and the rest is padded. So ``exact_count`` is False:
under tiny filters a disconnected graph can hide rows, and the planner falls back to the exact scan.

Threads: ``threads`` (a build keyword, also the ``threads`` attribute) is passed to hnswlib for
building and unfiltered search; ``None`` means hnswlib's default, every core. A search's own
``threads`` (a batch's, ``search_batch(threads=)``) takes precedence for that search.

``ef`` is index-wide state in hnswlib, so a lock serialises ``set_ef`` + query.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..config import Metric
from ..errors import CorruptStoreError, InvalidArgumentError
from .base import (
    AllowBitmap,
    FloatMatrix,
    GraphParams,
    IndexBase,
    LabelMatrix,
    check_int,
    chunks,
    import_backend,
    progress_bar,
)
from .calibration import (
    EF_GRID,
    FILTER_QUERIES,
    FILTER_SELECTIVITIES,
    ExactTruth,
    check_filtered_ef,
    check_recall,
    filtered_hnsw_effort,
    held_out_rows,
    measured_hnsw_effort,
    near_duplicates,
    smallest_effort,
)

_FILE = "hnsw.bin"


def _hnswlib() -> Any:
    return import_backend("hnswlib")


@dataclass(frozen=True)
class HnswParams(GraphParams):
    """Build parameters of the hnswlib graph.

    Attributes:
        m: links per node (hnswlib ``M``; the base layer keeps ``2 m``). More links: better
            recall at a given ``ef``, more memory (``8 m`` bytes per vector) and slower builds.
        ef_construction: breadth of the search that picks each new node's links.
        seed: seed of hnswlib's level generator.
        target_recall: the recall@k the search effort is calibrated for.
        ef: unfiltered ``ef`` reaching ``target_recall`` at k = 10; None: measured at build time
            on held-out rows of the table (:func:`~vecstore.index.calibration.held_out_rows`),
            searched before they are added to the graph.
        ef50: the same at k = 50 (the planner interpolates between the two for other k).
        filtered_ef: ``[[selectivity, ef], ...]``: the ``ef`` reaching ``target_recall`` at
            k = 10 with a random filter of that selectivity passed into the search (the search
            the planner runs below ``postfilter_min_selectivity``), measured at build time on
            held-out rows (:data:`~vecstore.index.calibration.FILTER_SELECTIVITIES`); the
            planner interpolates it for a query's selectivity
            (:func:`~vecstore.index.calibration.filtered_hnsw_effort`). None: not measured
            (efforts given, or an index built before), the ``sqrt(selectivity)`` rule instead.
        measured_on: how many held-out rows ``ef`` and ``ef50`` were measured on at build time
            (0: the table was too small to measure, the search is exhaustive); None when the
            caller gave them. A rebuild (``optimize()``) measures the efforts again on the new
            rows, unless given.
        measured_with: ``"sample queries"`` when they were measured on the ``sample_queries``
            given to ``create_index()``; None: on held-out rows.
    """

    seed: int = 100
    target_recall: float = 0.95
    ef: int | None = None
    ef50: int | None = None
    filtered_ef: tuple[tuple[float, int], ...] | None = None
    measured_on: int | None = None
    measured_with: str | None = None

    # the efforts a build measures; a rebuild of a measured index measures them afresh
    _MEASURED: ClassVar[tuple[str, ...]] = ("ef", "ef50", "filtered_ef")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("seed", self.seed, 0)
        check_recall(self.target_recall)
        check_int("ef", self.ef, 1, 1 << 20, optional=True)
        check_int("ef50", self.ef50, 1, 1 << 20, optional=True)
        check_int("measured_on", self.measured_on, 0, optional=True)
        if self.measured_with not in (None, "sample queries"):
            raise InvalidArgumentError(f"measured_with must be None or 'sample queries', "
                                       f"got {self.measured_with!r}")
        # a manifest stores the pairs as JSON lists
        object.__setattr__(self, "filtered_ef", check_filtered_ef(self.filtered_ef))

    def to_measure(self: P) -> P:
        """These parameters with the efforts an earlier build measured cleared, so that a
        rebuild over other rows measures them again (efforts the caller gave are kept)."""
        if self.measured_on is None:
            return self
        cleared: dict[str, Any] = dict.fromkeys(self._MEASURED)
        return replace(self, measured_on=None, measured_with=None, **cleared)


def describe_effort(kind: str, params: HnswParams, k: int, selectivity: float, effort: int) -> str:
    """Where an HNSW search's ``ef`` comes from, for ``explain()``: measured at build time (on
    how many held-out rows, for which target), or given at ``create_index()``; then how it was
    scaled for ``k`` and the filter's selectivity."""
    if params.measured_on == 0:
        source = f"exhaustive (ef={params.ef}): the table had too few rows to measure at build time"
    elif params.measured_on is not None:
        source = (f"calibrated when the index was built (create_index / optimize): ef={params.ef} "
                  f"for k=10, {params.ef50} for k=50 reached recall {params.target_recall:g} "
                  f"(95% lower bound) on {params.measured_on:,} "
                  f"{params.measured_with or 'held-out rows'}")
    else:
        source = f"ef={params.ef} for k=10, {params.ef50} for k=50 set at create_index()"
    scaled = []
    if k != 10:
        scaled.append(f"k={k}")
    filtered = ""
    if selectivity < 1 and params.filtered_ef and params.ef and params.ef50:
        _, how = filtered_hnsw_effort(k, selectivity, 1 << 20, params.ef, params.ef50, params.filtered_ef)
        measured = ", ".join(f"{sel:.0%}: ef={ef}" for sel, ef in params.filtered_ef)
        filtered = (f"; filtered ef for selectivity {selectivity:.1%} {how}, from the efforts "
                    f"measured at build time under random filters passed into the search ({measured})")
    elif selectivity < 1:
        scaled.append(f"selectivity {selectivity:.1%} (x sqrt(selectivity): no filtered effort measured)")
    how = f"; scaled for {' and '.join(scaled)}" if scaled else ""
    return f"{kind} ef={effort}: {source}{filtered}{how}"


P = TypeVar("P", bound="HnswParams")


def build_graph(kind: str, vectors: FloatMatrix, metric: Metric, params: P, progress: bool,
                threads: int | None, *, measure: bool,
                calibrate: Callable[[Any, np.ndarray, FloatMatrix, bool], P],
                queries: FloatMatrix | None = None) -> tuple[Any, P]:
    """An hnswlib graph over ``vectors`` (labels = row positions) and its parameters.

    With ``measure``, a random tenth of the rows (at most 1,000, :func:`held_out_rows`) is held
    out, with their near-duplicates (:func:`near_duplicates`; fewer rows when they and their
    copies would exceed a tenth of the table): the graph is built over the rest,
    ``calibrate(graph, rest, vectors[held], True)`` measures the search effort with the
    held-out rows as queries (a row already in the graph, or its twin, would find its own
    neighbour list, far easier than a new query; ``True``: their near-duplicates leave their
    truth) and returns the parameters, then the rows held out join the graph. With ``queries``
    (a sample of real ones) nothing is held out: ``calibrate(graph, rows, queries, False)`` on
    the whole graph. Effort left unmeasured (too few rows) becomes exhaustive: ``ef = n``,
    ``measured_on = 0``.
    """
    n, d = vectors.shape
    graph = _hnswlib().Index(space="l2" if metric is Metric.L2 else "ip", dim=d)
    graph.init_index(max_elements=n, M=params.m, ef_construction=params.ef_construction,
                     random_seed=params.seed)
    held = held_out_rows(n) if measure and queries is None else np.empty(0, np.int64)
    # the held-out rows' near-duplicates wait too (added last): calibration queries must not
    # find a twin in the graph, which a user's query rarely has; together at most a tenth of
    # the rows, so that the graph measured is the table's
    held, dups = near_duplicates(metric, vectors, held, budget=max(held.size, n // 10))
    late = np.union1d(held, dups)
    rest = np.setdiff1d(np.arange(n, dtype=np.int64), late, assume_unique=True)
    with progress_bar(n, f"building {kind}", progress) as bar:
        for start, stop in chunks(rest.size):
            rows = rest[start:stop]
            graph.add_items(vectors[rows], rows, num_threads=threads or -1)
            bar.update(stop - start)
        if held.size:
            params = calibrate(graph, rest, vectors[held], True)
            graph.add_items(vectors[late], late, num_threads=threads or -1)
            bar.update(late.size)
    if measure and queries is not None:
        params = calibrate(graph, rest, queries, False)
    exhaustive = {"ef": max(n, 10), "ef50": max(n, 50), "rerank": 1}
    missing = {name: value for name, value in exhaustive.items()
               if hasattr(params, name) and getattr(params, name) is None}
    if missing and params.measured_on is None:
        missing["measured_on"] = 0  # not given: a rebuild over more rows measures them
    return graph, replace(params, **missing)


class HnswIndex(IndexBase):
    """An hnswlib graph over the vectors (which it stores at full precision)."""

    reads_damaged_files_safely = True  # hnswlib checks the file's size against every link list before reading

    kind = "hnsw"
    params_type = HnswParams
    params: HnswParams
    exact_count = False
    calibrates_on_queries = True
    pads_misses = True  # knn_query gives k labels or raises; the per-query retry pads the rest
    filter_holds_gil = True  # the filter is a Python callback

    @property
    def exact_scores(self) -> bool:
        return True

    def __init__(self, index: Any, params: HnswParams, metric: Metric, dim: int, count: int,
                 threads: int | None = None) -> None:
        super().__init__(params, metric, dim, count)
        self._index = index
        self.threads = threads
        # hnswlib keeps one ef per index: searches wanting the same ef run together (knn_query
        # releases the GIL), one wanting another ef waits until they are done
        self._ef_cond = threading.Condition()
        self._ef = -1
        self._ef_users = 0
        self._ef_waiting = 0  # searches waiting for another ef (notified only when there are)
        # the last read-only allow bitmap searched and its callback (a filter repeated with
        # many query vectors); holding the array keeps its identity from being reused
        self._last_filter: tuple[np.ndarray, Callable[[int], Any]] | None = None

    @classmethod
    def _space(cls, metric: Metric) -> str:
        return "l2" if metric is Metric.L2 else "ip"

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: HnswParams,
               progress: bool, threads: int | None, queries: FloatMatrix | None = None) -> HnswIndex:
        params = params.to_measure()

        def calibrate(graph: Any, rest: np.ndarray, q: FloatMatrix, held: bool) -> HnswParams:
            index = cls(graph, params, metric, vectors.shape[1], rest.size, threads)
            index._calibrate(vectors[rest], rest, q, drop_duplicates=held)
            return index.params

        graph, params = build_graph(cls.kind, vectors, metric, params, progress, threads,
                                    measure=params.ef is None or params.ef50 is None, calibrate=calibrate,
                                    queries=queries)
        return cls(graph, params, metric, vectors.shape[1], vectors.shape[0], threads)

    def _calibrate(self, indexed: FloatMatrix, labels: np.ndarray, queries: FloatMatrix,
                   drop_duplicates: bool = True) -> None:
        """Fill ``ef`` and ``ef50`` (those left None) with the smallest ef (a 1.5x grid, refined
        between its last two steps) whose candidates for k = 10 (and 50), rescored exactly,
        reach ``target_recall`` with confidence on the held-out ``queries``, their
        near-duplicates left out (:func:`~vecstore.index.calibration.smallest_effort`)."""
        target = self.params.target_recall
        found: dict[str, Any] = {}
        for k, name in ((10, "ef"), (50, "ef50")):
            if getattr(self.params, name) is not None:
                continue
            truth = ExactTruth(self.metric, queries, indexed, k, drop_duplicates=drop_duplicates)
            fetch = min(self.candidates_for(truth.k), indexed.shape[0])

            def search(q: FloatMatrix, k_asked: int, ef: int, truth: ExactTruth = truth) -> LabelMatrix:
                # the candidates a query for k gets, plus room for the labels judged out
                want = min(self.candidates_for(truth.k) + k_asked - truth.k, indexed.shape[0])
                labels_found = self._search(q, want, None, max(ef, want))[1]
                # the graph's labels are table rows; the truth is over the indexed rows only
                return np.where(labels_found >= 0, np.searchsorted(labels, labels_found), -1)

            grid = [ef for ef in EF_GRID if ef >= fetch] or [EF_GRID[-1]]
            found[name] = smallest_effort(search, queries, truth, grid, target, rescored=True,
                                          refine=True) \
                or max(grid[-1], indexed.shape[0] // 4)
        if found:
            found["measured_on"] = queries.shape[0]
            found["measured_with"] = None if drop_duplicates else "sample queries"
        if self.params.filtered_ef is None:
            found["filtered_ef"] = self._calibrate_filtered(indexed, labels, queries[:FILTER_QUERIES],
                                                            drop_duplicates)
        self.params = replace(self.params, **found)

    def _calibrate_filtered(self, indexed: FloatMatrix, labels: np.ndarray, queries: FloatMatrix,
                            drop_duplicates: bool = True) -> tuple[tuple[float, int], ...] | None:
        """``(selectivity, ef)`` for k = 10 under seeded random filters of each of
        :data:`~vecstore.index.calibration.FILTER_SELECTIVITIES`, passed into the search as the
        planner passes them: the smallest ef (refined like the unfiltered one) whose answers
        reach ``target_recall`` with confidence against the exact top 10 *of the allowed rows*.
        A selectivity keeping fewer than 100 rows (the planner scans those) or whose ef is not
        found on the grid is left out; None when none is measured (the sqrt rule then)."""
        n = indexed.shape[0]
        rng = np.random.default_rng(7)
        curve: list[tuple[float, int]] = []
        allow = np.zeros(int(labels.max()) + 1, dtype=bool)
        for sel in FILTER_SELECTIVITIES:
            m = round(sel * n)
            if m < 100 or queries.shape[0] == 0:
                continue
            chosen = np.sort(rng.choice(n, m, replace=False))
            allowed_labels = labels[chosen]  # sorted: labels and chosen are
            allow[:] = False
            allow[allowed_labels] = True
            truth = ExactTruth(self.metric, queries, indexed[chosen], 10,
                               drop_duplicates=drop_duplicates)

            def search(q: FloatMatrix, k_asked: int, ef: int,
                       allowed_labels: np.ndarray = allowed_labels) -> LabelMatrix:
                found = self._search(q, min(k_asked, allowed_labels.size), allow, max(ef, k_asked))[1]
                return np.where(found >= 0, np.searchsorted(allowed_labels, found), -1)

            grid = [10, *(ef for ef in EF_GRID if ef > 10)]
            ef = smallest_effort(search, queries, truth, grid, self.params.target_recall,
                                 rescored=True, refine=True)
            if ef is not None:
                curve.append((sel, ef))
        return tuple(curve) or None

    def _to_scores(self, dist: np.ndarray) -> FloatMatrix:
        if self.metric is Metric.L2:
            return np.negative(dist, dtype=np.float32)
        return np.subtract(np.float32(1), dist, dtype=np.float32)

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int, *, threads: int | None = None) -> tuple[FloatMatrix, LabelMatrix]:
        flt: Callable[[int], Any] | None = None
        # one query runs on the calling thread: hnswlib starts its threads on every call
        # otherwise, which costs several times the search itself (~150 µs against ~15 µs)
        threads = 1 if queries.shape[0] == 1 else threads or self.threads or -1
        if allow is not None:
            # bytes.__getitem__ is the cheapest Python callable answering "is label i allowed"
            # (hnswlib 0.8 takes no bitmap: it calls back per visited node, the GIL held). A
            # read-only bitmap (the planner's, kept per filter) is copied to bytes once.
            last = self._last_filter
            if last is not None and last[0] is allow:
                flt = last[1]
            else:
                flt = allow.view(np.uint8).tobytes().__getitem__
                if not allow.flags.writeable:
                    self._last_filter = (allow, flt)
            threads = 1
        ef = max(effort, k)
        cond = self._ef_cond
        with cond:  # the ef this search needs, held (no context manager: every query passes here)
            if self._ef_users and self._ef != ef:
                self._ef_waiting += 1
                while self._ef_users and self._ef != ef:
                    cond.wait()
                self._ef_waiting -= 1
            if self._ef != ef:
                self._index.set_ef(ef)
                self._ef = ef
            self._ef_users += 1
        try:
            try:
                labels, dist = self._index.knn_query(queries, k=k, num_threads=threads,
                                                     filter=flt)
                return self._to_scores(dist), labels.astype(np.int64)
            except RuntimeError:
                # Some query found fewer than k labels (disconnected part of the graph under a
                # tiny filter); hnswlib then fails the batch. Redo each query on its own.
                out_s = np.full((queries.shape[0], k), -np.inf, dtype=np.float32)
                out_l = np.full((queries.shape[0], k), -1, dtype=np.int64)
                for i in range(queries.shape[0]):
                    s, lab = self._search_one(queries[i : i + 1], k, flt)
                    out_s[i, : s.shape[0]] = s
                    out_l[i, : lab.shape[0]] = lab
                return out_s, out_l
        finally:
            with cond:
                self._ef_users -= 1
                if not self._ef_users and self._ef_waiting:
                    cond.notify_all()

    def _search_one(self, query: FloatMatrix, k: int,
                    flt: Callable[[int], Any] | None) -> tuple[FloatMatrix, LabelMatrix]:
        """The most results hnswlib will give for one query: binary search on ``k``."""
        best: tuple[FloatMatrix, LabelMatrix] = (np.empty(0, np.float32), np.empty(0, np.int64))
        low, high = 1, k
        while low <= high:
            mid = (low + high) // 2
            try:
                labels, dist = self._index.knn_query(query, k=mid, num_threads=1, filter=flt)
            except RuntimeError:
                high = mid - 1
            else:
                best = (self._to_scores(dist)[0], labels[0].astype(np.int64))
                low = mid + 1
        return best

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``ef`` for recall@k >= ``target_recall`` under a filter of this selectivity: the ef
        measured at build time for this k (:func:`~vecstore.index.calibration.ef_for_k`);
        under a filter, interpolated from the efforts measured under random filters
        (:func:`~vecstore.index.calibration.filtered_hnsw_effort`), or, when those were not
        measured, scaled by :func:`~vecstore.index.calibration.hnsw_effort`."""
        check_int("k", k, 1)
        p = self.params
        if selectivity < 1 and p.filtered_ef and p.ef and p.ef50:
            return filtered_hnsw_effort(k, selectivity, self._count, p.ef, p.ef50, p.filtered_ef)[0]
        return measured_hnsw_effort(k, selectivity, self._count, p.ef, p.ef50)

    def effort_source(self, k: int, selectivity: float = 1.0) -> str:
        """Where :meth:`effort_for`'s ``ef`` comes from (``explain()`` shows it)."""
        return describe_effort(self.kind, self.params, k, selectivity, self.effort_for(k, selectivity))

    @property
    def memory_bytes(self) -> int:
        m = self.params.m
        n = self._count
        # base layer: vector + (2m links + count) + label; upper layers: ~n/(m-1) nodes... each
        # with m links + count per level; hnswlib also keeps a visited list of 2 bytes per node.
        per_node = self.dim * 4 + (2 * m + 1) * 4 + 8 + 8 + 2
        upper = n / max(1, m - 1) * (m + 1) * 4 if m > 1 else 0
        return int(n * per_node + upper)

    def _writers(self) -> dict[str, Callable[[Path], None]]:
        return {_FILE: lambda path: self._index.save_index(str(path))}

    @classmethod
    def _read(cls, directory: Path, params: HnswParams, metric: Metric, dim: int,
              count: int) -> HnswIndex:
        hnswlib = _hnswlib()
        path = directory / _FILE
        index = hnswlib.Index(space=cls._space(metric), dim=dim)
        try:
            index.load_index(str(path), max_elements=count)
        except (RuntimeError, ValueError, MemoryError) as exc:
            raise CorruptStoreError(f"index file {path} is unreadable by hnswlib ({exc})") from exc
        return cls(index, params, metric, dim, int(index.get_current_count()))
