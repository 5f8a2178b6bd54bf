"""``hnsw-int8``: an HNSW graph built by hnswlib, searched by vecstore's own kernel over int8 codes.

hnswlib builds the graph (its C++ build is fast and its graphs are good: on MiniLM vectors FAISS
HNSW needed three times the ``ef`` for the same recall, bench/ann_backends.py). The graph is then
read out of hnswlib's file into plain arrays, and each vector is kept as one int8 per dimension
(calibrated per dimension on the indexed vectors) instead of hnswlib's four-byte floats: 384-d
vectors take 384 + ~140 bytes of links instead of ~1,670, and a search reads a quarter of the
memory. The search (``vecstore._native.graph``, with a NumPy twin) is hnswlib's algorithm over
those codes; the planner rescores its candidates with the table's float32 vectors, which stay
on disk, so scores are exact.

Effort: ``ef`` (for k = 10 and 50) and the candidates to rescore per result (``rerank``) are
measured at build time on held-out rows of the table (searched before they join the graph), for
``target_recall``. Filters: an ``allow`` bitmap is followed as hnswlib follows it (only allowed
nodes are kept, the beam walks on while it holds fewer than ``ef`` of them), in compiled code,
so filtered searches run outside the GIL too. Batches run in parallel on every core (or on a
search's ``threads``).

Files: the graph's arrays as ``.npy`` (memory-mapped when loaded) and the checksum sidecar.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from .._native import loader
from .._native.graph_reference import query_max
from ..config import Metric
from ..errors import CorruptStoreError, InvalidArgumentError
from .base import (
    AllowBitmap,
    FloatMatrix,
    IndexBase,
    LabelMatrix,
    check_int,
)
from .calibration import (
    CALIBRATION_MARGIN,
    EF_GRID,
    calibrate_rerank_ef,
    measured_hnsw_effort,
)
from .hnswlib_index import HnswParams, build_graph, describe_effort

RERANKS = (1, 2, 4)
_NO_NODES = np.empty(0, dtype=np.bool_)  # a graph search's node filter: none
_ARRAYS = ("codes", "labels", "counts0", "links0", "up_start", "up_counts", "up_links", "scale",
           "offset", "sqnorms")


def graph_kernels(wait: bool = False) -> ModuleType:
    """The graph search kernels: Numba's once loaded, the NumPy twins until then (see
    ``vecstore._native.loader``; ``wait`` blocks until Numba's are loaded)."""
    return loader.get("graph", wait)


@dataclass(frozen=True)
class GraphInt8Params(HnswParams):
    """Build parameters of ``hnsw-int8``: those of the hnswlib graph it is built from
    (:class:`~vecstore.index.hnswlib_index.HnswParams`: ``m``, ``ef_construction``, ``seed``,
    ``target_recall``, and ``ef``/``ef50`` measured at build time when None), and

    Attributes:
        rerank: candidates rescored exactly per wanted result; None: measured with ``ef``.
    """

    rerank: int | None = None

    _MEASURED: ClassVar[tuple[str, ...]] = ("ef", "ef50", "rerank")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int("rerank", self.rerank, 1, 64, optional=True)


@dataclass(frozen=True, eq=False)
class Graph:
    """An HNSW graph over int8 codes, in the layout of ``vecstore._native.graph_reference``,
    its nodes in hnswlib's order; ``labels[node]`` is the node's label (its position among the
    vectors the index was built over)."""

    codes: npt.NDArray[np.int8]
    labels: npt.NDArray[np.int64]
    counts0: npt.NDArray[np.uint16]
    links0: npt.NDArray[np.int32]
    up_start: npt.NDArray[np.int64]
    up_counts: npt.NDArray[np.uint16]
    up_links: npt.NDArray[np.int32]
    scale: npt.NDArray[np.float32]
    offset: npt.NDArray[np.float32]
    sqnorms: npt.NDArray[np.float32]  # empty for inner product
    entry: int
    max_level: int

    def array(self, name: str) -> npt.NDArray[Any]:
        return getattr(self, name)

    @cached_property
    def _folding(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], float]:
        """What :meth:`fold` multiplies by, computed once: the scales, ``128 scale + offset``
        (a code of -128 stands for ``offset``) and ``1 / query_max``."""
        scale = self.scale.astype(np.float64)
        return scale, 128.0 * scale + self.offset.astype(np.float64), 1.0 / query_max(scale.shape[0])

    def fold(self, queries: FloatMatrix
             ) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        """Queries as the kernels take them: ``(folded, qscales, consts)`` with
        ``q . x = qscales[i] * (folded[i] . code) + consts[i]``, the per-dimension scales folded
        into each query and the result quantised to int16 with one scale per query (a relative
        error of about 2^-16 per dimension up to 512 dimensions, far below the codes' own 2^-9;
        ``graph_reference.query_max`` gives the bound that keeps the kernels' int32 sums exact)."""
        scale, base, inv_max = self._folding
        return graph_kernels().fold_queries(queries, scale, base, inv_max)


def read_hnswlib_graph(raw: bytes, vectors: FloatMatrix, metric: Metric) -> Graph:
    """The graph in an hnswlib (0.7/0.8) index file's bytes, with ``vectors`` (by label)
    quantised to int8; raises CorruptStoreError when the layout is not the expected one."""
    pos = 0

    def read(fmt: str) -> Any:
        nonlocal pos
        value = struct.unpack_from(fmt, raw, pos)[0]
        pos += struct.calcsize(fmt)
        return value

    try:
        read("<Q")  # offsetLevel0
        read("<Q")  # max_elements
        n, size, label_at, data_at = read("<Q"), read("<Q"), read("<Q"), read("<Q")
        max_level, entry = read("<i"), read("<I")
        max_m, max_m0 = read("<Q"), read("<Q")
        read("<Q")  # M
        read("<d")  # mult
        read("<Q")  # ef_construction
        dim = vectors.shape[1]
        if size != 4 + 4 * max_m0 + 4 * dim + 8 or label_at != data_at + 4 * dim:
            raise ValueError(f"level-0 records of {size} bytes, labels at {label_at}")
        level0 = np.frombuffer(raw, dtype=np.uint8, count=n * size, offset=pos).reshape(n, size)
        pos += n * size
        counts0 = level0[:, 0:2].copy().view(np.uint16).reshape(n)
        links0 = level0[:, 4:4 + 4 * max_m0].copy().view(np.int32)
        labels = level0[:, label_at:label_at + 8].copy().view(np.int64).reshape(n)
        per_level = 4 + 4 * max_m
        levels = np.zeros(n, dtype=np.int64)
        blocks = []
        for node in range(n):
            nbytes = read("<I")
            if nbytes:
                if nbytes % per_level:
                    raise ValueError(f"node {node}: {nbytes} bytes of upper links")
                levels[node] = nbytes // per_level
                blocks.append(np.frombuffer(raw, dtype=np.uint8, count=nbytes, offset=pos)
                              .reshape(-1, per_level))
                pos += nbytes
    except (struct.error, ValueError) as exc:
        raise CorruptStoreError(f"hnswlib's graph file has an unexpected layout ({exc})") from exc
    up_start = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(levels, out=up_start[1:])
    upper = np.concatenate(blocks) if blocks else np.zeros((0, per_level), dtype=np.uint8)
    up_counts = upper[:, 0:2].copy().view(np.uint16).reshape(-1)
    up_links = upper[:, 4:].copy().view(np.int32).reshape(-1, max_m)
    ordered = vectors[labels]
    lo = ordered.min(axis=0) if n else np.zeros(dim, np.float32)
    hi = ordered.max(axis=0) if n else np.zeros(dim, np.float32)
    scale = ((hi - lo) / 255.0).astype(np.float32)
    scale[scale <= 0] = 1.0
    codes = (np.clip(np.rint((ordered - lo) / scale), 0, 255) - 128).astype(np.int8)
    sqnorms = np.einsum("ij,ij->i", ordered, ordered, dtype=np.float64).astype(np.float32) \
        if metric is Metric.L2 else np.empty(0, np.float32)
    arrays: dict[str, Any] = {
        "codes": codes, "labels": labels, "counts0": counts0, "links0": np.ascontiguousarray(links0),
        "up_start": up_start, "up_counts": up_counts, "up_links": np.ascontiguousarray(up_links),
        "scale": scale, "offset": lo.astype(np.float32), "sqnorms": sqnorms}
    for a in arrays.values():
        a.flags.writeable = False  # as when loaded (memory-mapped): one compiled variant
    return Graph(entry=int(entry), max_level=int(max_level), **arrays)


class GraphInt8Index(IndexBase):
    """An HNSW graph over int8 codes, searched in vecstore's compiled kernel (see the module)."""

    reads_damaged_files_safely = True  # plain .npy arrays: headers parsed, bytes mapped, nothing followed

    kind = "hnsw-int8"
    calibrates_on_queries = True
    params_type = GraphInt8Params
    params: GraphInt8Params
    exact_count = False

    def __init__(self, graph: Graph, params: GraphInt8Params, metric: Metric, dim: int) -> None:
        super().__init__(params, metric, dim, int(graph.labels.shape[0]))
        self.graph = graph

    @classmethod
    def _space(cls, metric: Metric) -> str:
        return "l2" if metric is Metric.L2 else "ip"

    @classmethod
    def _build(cls, vectors: FloatMatrix, metric: Metric, params: GraphInt8Params,
               progress: bool, threads: int | None,
               queries: FloatMatrix | None = None) -> GraphInt8Index:
        params = params.to_measure()

        def calibrate(graph: Any, rest: np.ndarray, q: FloatMatrix, held: bool) -> GraphInt8Params:
            graph_kernels(wait=True)  # calibration runs hundreds of searches
            partial = cls(_read(graph, vectors, metric), params, metric, vectors.shape[1])
            return partial._calibrated(vectors, rest, q, drop_duplicates=held)

        measure = params.ef is None or params.ef50 is None or params.rerank is None
        graph, params = build_graph(cls.kind, vectors, metric, params, progress, threads,
                                    measure=measure, calibrate=calibrate, queries=queries)
        return cls(_read(graph, vectors, metric), params, metric, vectors.shape[1])

    def _calibrated(self, vectors: FloatMatrix, indexed_rows: npt.NDArray[np.int64],
                    queries: FloatMatrix, drop_duplicates: bool = True) -> GraphInt8Params:
        """``ef``, ``ef50`` and ``rerank`` (those left None) measured with held-out ``queries``
        against the graph over ``indexed_rows`` (whose labels are table positions)."""
        indexed = vectors[indexed_rows]
        target = min(1.0, self.params.target_recall + CALIBRATION_MARGIN)

        def search(q: FloatMatrix, want: int, ef: int) -> LabelMatrix:
            labels = self._search(q, want, None, ef)[1]
            return np.where(labels >= 0, np.searchsorted(indexed_rows, labels), -1)

        found: dict[str, Any] = {}
        if self.params.ef is None or self.params.rerank is None:
            reranks = RERANKS if self.params.rerank is None else (self.params.rerank,)
            grid = EF_GRID if self.params.ef is None else [self.params.ef]
            # refined between the grid's 1.5x steps, as hnsw's ef is: the calibrated ef moved
            # by a whole step between builds, 48 or 64 (hnswlib reached 0.95 at 48)
            found["ef"], found["rerank"] = calibrate_rerank_ef(search, queries, indexed, self.metric,
                                                               reranks, grid, k=10, target=target,
                                                               drop_duplicates=drop_duplicates,
                                                               refine=True)
        rerank = found.get("rerank", self.params.rerank or 1)
        if self.params.ef50 is None:
            # from the least ef that yields the candidates (refining may land below the next step)
            grid50 = [50 * rerank] + [ef for ef in EF_GRID if ef > 50 * rerank]
            found["ef50"], _ = calibrate_rerank_ef(search, queries, indexed, self.metric, (rerank,),
                                                   grid50, k=50, target=target,
                                                   drop_duplicates=drop_duplicates, refine=True)
        if found:
            found["measured_on"] = queries.shape[0]
            found["measured_with"] = None if drop_duplicates else "sample queries"
        return replace(self.params, **found)

    # --- searching --------------------------------------------------------------------------

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int, *, threads: int | None = None) -> tuple[FloatMatrix, LabelMatrix]:
        g = self.graph
        folded, qscales, consts = g.fold(queries)
        node_allow = allow[g.labels] if allow is not None else np.empty(0, dtype=np.bool_)
        kern = graph_kernels(wait=queries.shape[0] > 1)  # a batch waits for the compiled kernels
        ef = max(effort, k)
        if queries.shape[0] == 1:
            nodes, dist = kern.graph_search(folded[0], float(qscales[0]), float(consts[0]), g.codes,
                                            g.sqnorms, g.counts0, g.links0, g.up_start, g.up_counts,
                                            g.up_links, g.entry, g.max_level, ef, node_allow)
            labels, dist = g.labels[nodes[None, :k]], dist[None, :k]  # every node found
        else:
            args = (folded, qscales, consts, g.codes, g.sqnorms, g.counts0, g.links0, g.up_start,
                    g.up_counts, g.up_links, g.entry, g.max_level, ef, k, node_allow)
            if threads == 1:  # a part of a batch split over the caller's threads
                nodes, dist = kern.graph_search_rows(*args)
            else:
                with loader.parallel_threads(threads):
                    nodes, dist = kern.graph_search_batch(*args)
            labels = np.where(nodes >= 0, g.labels[np.maximum(nodes, 0)], -1)
        if self.metric is Metric.L2:
            scores = -(dist + np.einsum("ij,ij->i", queries, queries)[:, None])
        else:
            scores = -dist  # a batch's padding: distance +inf, score -inf
        if labels.shape[1] < k:
            pad = k - labels.shape[1]
            labels = np.pad(labels, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return scores, labels

    def candidate_labels(self, query: FloatMatrix, k: int, effort: int) -> LabelMatrix:
        """:meth:`_search`'s labels for one unfiltered query, without its scores or padding (the
        graph's nodes found, at most ``k``): one fold and one graph search."""
        g = self.graph
        folded, qscales, consts = g.fold(query)
        nodes, _ = graph_kernels().graph_search(
            folded[0], float(qscales[0]), float(consts[0]), g.codes, g.sqnorms, g.counts0, g.links0,
            g.up_start, g.up_counts, g.up_links, g.entry, g.max_level, max(effort, k), _NO_NODES)
        return g.labels[nodes[None, :k]]

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``ef`` for ``k`` candidates under a filter of this selectivity. The planner asks for
        ``candidates_for(results) = results x rerank`` candidates, and the build measured ``ef``
        and ``ef50`` for exactly those (10 and 50 results, ``rerank`` candidates each, rescored),
        so ``k`` candidates get the ef measured for ``k / rerank`` results, scaled as hnswlib's
        filtered search needs (:func:`~vecstore.index.calibration.hnsw_effort`), and at least
        ``k``. (Reading ``k`` as results, as before, gave ef 87 where 64 was measured: PyPI
        64,000 rows, rerank 2, k = 10.)"""
        check_int("k", k, 1)
        results = self._results_for(k)
        return max(k, measured_hnsw_effort(results, selectivity, self._count, self.params.ef,
                                           self.params.ef50))

    def _results_for(self, candidates: int) -> int:
        return max(1, -(-candidates // (self.params.rerank or 2)))

    def effort_source(self, k: int, selectivity: float = 1.0) -> str:
        """Where :meth:`effort_for`'s ``ef`` comes from (``explain()`` shows it)."""
        return (describe_effort(self.kind, self.params, self._results_for(k), selectivity,
                                self.effort_for(k, selectivity))
                + f"; {k} candidates for rerank {self.params.rerank or 2}")

    def candidates_for(self, k: int) -> int:
        """``k x rerank`` candidates, rescored exactly by the planner (rerank measured at build)."""
        return k * (self.params.rerank or 2)

    @property
    def memory_bytes(self) -> int:
        g = self.graph
        return int(sum(g.array(name).nbytes for name in _ARRAYS))

    # --- files ------------------------------------------------------------------------------

    def _writers(self) -> dict[str, Callable[[Path], None]]:
        def writer(name: str) -> Callable[[Path], None]:
            def write(path: Path) -> None:
                with open(path, "wb") as f:
                    np.save(f, np.ascontiguousarray(self.graph.array(name)), allow_pickle=False)
            return write

        writers = {f"{name}.npy": writer(name) for name in _ARRAYS}

        def write_meta(path: Path) -> None:
            path.write_text(f'{{"entry": {self.graph.entry}, "max_level": {self.graph.max_level}}}')

        writers["graph.json"] = write_meta
        return writers

    @classmethod
    def _read(cls, directory: Path, params: GraphInt8Params, metric: Metric, dim: int,
              count: int) -> GraphInt8Index:
        import json

        arrays: dict[str, Any] = {}
        for name in _ARRAYS:
            path = directory / f"{name}.npy"
            try:
                # a plain (read-only) array over the map: np.memmap's subclass costs every
                # index and every kernel call (5 us of Numba's argument typing a search)
                arrays[name] = np.asarray(np.load(path, mmap_mode="r", allow_pickle=False))
            except (OSError, ValueError) as exc:
                raise CorruptStoreError(f"index file {path} is unreadable ({exc})") from exc
        try:
            meta = json.loads((directory / "graph.json").read_text())
            entry, max_level = int(meta["entry"]), int(meta["max_level"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise CorruptStoreError(f"index file {directory / 'graph.json'} is unreadable ({exc})") from exc
        graph = Graph(entry=entry, max_level=max_level, **arrays)
        n = graph.labels.shape[0]
        if (graph.codes.shape != (count, dim) or graph.codes.dtype != np.int8 or n != count
                or graph.links0.shape[0] != n or graph.up_start.shape != (n + 1,)
                or not (0 <= entry < max(n, 1))):
            raise CorruptStoreError(f"index files in {directory} do not describe a graph of "
                                    f"{count} {dim}-d vectors")
        return cls(graph, params, metric, dim)


def _read(graph: Any, vectors: FloatMatrix, metric: Metric) -> Graph:
    """The graph an hnswlib index holds, read from the file it saves."""
    with tempfile.TemporaryDirectory(prefix="vecstore-graph-") as tmp:
        path = Path(tmp) / "graph.bin"
        graph.save_index(str(path))
        raw = path.read_bytes()
    if not raw:
        raise InvalidArgumentError("hnswlib saved an empty graph")
    return read_hnswlib_graph(raw, vectors, metric)
