"""Numba kernels: an HNSW graph searched over int8 codes (one query, or a batch in parallel).

The NumPy twin is ``graph_reference``; see it for the conventions (the graph's arrays, distances,
the ``allow`` bitmap, the result order). Importing this module imports Numba; compilation happens
on first call and is cached on disk.

The search is hnswlib's (``searchKnn`` then ``searchBaseLayerST``): a greedy descent through the
upper layers, then a beam of ``ef`` on layer 0 holding allowed nodes only, which keeps walking
while fewer than ``ef`` allowed nodes are held. A row's code is 1 byte per dimension where
hnswlib reads 4, so a search touches a quarter of the memory for the same graph.

Distances are integer dot products: the query arrives as int16 (the per-dimension scales folded
in, then quantised with one scale per query), each distance is an int16 x int8 -> int32 sum,
which LLVM turns into ``vpmovsxbw`` + ``vpmaddwd`` (checked with ``inspect_asm``, and by a test),
exact, so the twin finds the same distances bit for bit; on its own it was worth little (13 ns a
384-d distance against 15 ns in float32, rows in cache). What paid is prefetching: where a node is
expanded, its unvisited neighbours are gathered first, then their distances computed with the
codes of the row ``_AHEAD`` places further prefetched (every cache line of it), and the link list
of the next candidate prefetched too. On 64,000 rows (24 MB of codes) a query spent about 60% of
its time waiting on one row's misses after another; the prefetches took the kernel from 1.3x to
2.1x hnswlib's q/s at the same ef (synthetic vectors; the PyPI figures are in docs/benchmarks.md).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

if __name__ != "vecstore._native.graph":
    raise ImportError(
        f"import the graph kernels as vecstore._native.graph, not {__name__}: Numba's on-disk "
        "cache must see one module name (pip install -e . maps native/ to vecstore._native)"
    )

__all__ = ["fold_queries", "graph_search", "graph_search_batch", "graph_search_rows"]

_LINE = 64  # bytes per cache line: what one prefetch brings in
_AHEAD = 3  # rows prefetched ahead of the distance loop (3 and 6 measured alike; 12, or all at once, slower)


@intrinsic
def _prefetch(typingctx, arr, row, offset):  # type: ignore[no-untyped-def]
    """A hint to load the cache line holding byte ``offset`` of row ``row`` of the 2-D ``arr``
    (LLVM's ``llvm.prefetch``: read, keep in every cache level); no effect on results."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2 and isinstance(row, types.Integer)
            and isinstance(offset, types.Integer)):
        return None

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        aryty, rowty, offty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        r = context.cast(builder, args[1], rowty, types.intp)
        off = context.cast(builder, args[2], offty, types.intp)
        at = builder.add(builder.mul(r, builder.extract_value(ary.strides, 0)), off)
        ptr = builder.gep(builder.bitcast(ary.data, ir.IntType(8).as_pointer()), [at])
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return types.void(arr, row, offset), codegen


@njit(cache=True, nogil=True)
def fold_queries(queries: npt.NDArray[np.float32], scale: npt.NDArray[np.float64],
                 base: npt.NDArray[np.float64], inv_max: float
                 ) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """See the twin: one call where NumPy's dozen took 18 us a query."""
    m, d = queries.shape
    folded = np.empty((m, d), dtype=np.int16)
    qscales = np.empty(m, dtype=np.float32)
    consts = np.empty(m, dtype=np.float32)
    scaled = np.empty(d, dtype=np.float64)
    for i in range(m):
        top = 0.0
        const = 0.0
        for j in range(d):
            q = np.float64(queries[i, j])
            scaled[j] = q * scale[j]
            top = max(top, abs(scaled[j]))
            const += q * base[j]
        if top == 0.0:
            top = 1.0
        qscale = top * inv_max
        for j in range(d):
            folded[i, j] = np.int16(np.rint(scaled[j] / qscale))
        qscales[i] = qscale
        consts[i] = const
    return folded, qscales, consts


@njit(cache=True, nogil=True)
def _distance(query: npt.NDArray[np.int16], qscale: float, codes: npt.NDArray[np.int8],
              sqnorms: npt.NDArray[np.float32], const: float, node: int) -> float:
    """Lower is better: ``-(q . x)`` for inner product, ``|x|^2 - 2 q . x`` for L2 (``sqnorms``
    non-empty), ``q . x = qscale * (query . code) + const``. The int32 sum cannot overflow
    where ``|query| <= graph_reference.query_max(d)``; an int64 one, or one split
    in chunks, is not vectorised (measured: 25x slower)."""
    acc = np.int32(0)
    for j in range(codes.shape[1]):
        acc = np.int32(acc + np.int32(query[j]) * np.int32(codes[node, j]))
    dot = np.float32(acc) * np.float32(qscale) + np.float32(const)
    if sqnorms.shape[0] == 0:
        return -dot
    return sqnorms[node] - np.float32(2.0) * dot


@njit(cache=True, nogil=True)
def _prefetch_row(arr: npt.NDArray[np.generic], row: int) -> None:
    """Prefetch every cache line of row ``row`` of the 2-D ``arr``."""
    for off in range(0, arr.shape[1] * arr.itemsize, _LINE):
        _prefetch(arr, row, off)


@njit(cache=True, nogil=True)
def _push_min(heap_d: npt.NDArray[np.float32], heap_i: npt.NDArray[np.int64], size: int, d: float,
              node: int) -> None:
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if heap_d[parent] > d or (heap_d[parent] == d and heap_i[parent] > node):
            heap_d[pos] = heap_d[parent]
            heap_i[pos] = heap_i[parent]
            pos = parent
        else:
            break
    heap_d[pos] = d
    heap_i[pos] = node


@njit(cache=True, nogil=True)
def _pop_min(heap_d: npt.NDArray[np.float32], heap_i: npt.NDArray[np.int64], size: int) -> None:
    """Remove the root of a min-heap of ``size`` entries (the caller read it first)."""
    size -= 1
    if size == 0:
        return
    d, node = heap_d[size], heap_i[size]
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        other = child + 1
        if other < size and (heap_d[other] < heap_d[child]
                             or (heap_d[other] == heap_d[child] and heap_i[other] < heap_i[child])):
            child = other
        if heap_d[child] < d or (heap_d[child] == d and heap_i[child] < node):
            heap_d[pos] = heap_d[child]
            heap_i[pos] = heap_i[child]
            pos = child
        else:
            break
    heap_d[pos] = d
    heap_i[pos] = node


@njit(cache=True, nogil=True)
def _push_max(heap_d: npt.NDArray[np.float32], heap_i: npt.NDArray[np.int64], size: int, d: float,
              node: int) -> None:
    pos = size
    while pos > 0:
        parent = (pos - 1) >> 1
        if heap_d[parent] < d or (heap_d[parent] == d and heap_i[parent] < node):
            heap_d[pos] = heap_d[parent]
            heap_i[pos] = heap_i[parent]
            pos = parent
        else:
            break
    heap_d[pos] = d
    heap_i[pos] = node


@njit(cache=True, nogil=True)
def _sift_down_max(heap_d: npt.NDArray[np.float32], heap_i: npt.NDArray[np.int64], size: int,
                   d: float, node: int) -> None:
    """Put ``(d, node)`` at the root of a max-heap of ``size`` entries (the root's old entry
    dropped) and sift it down."""
    pos = 0
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        other = child + 1
        if other < size and (heap_d[other] > heap_d[child]
                             or (heap_d[other] == heap_d[child] and heap_i[other] > heap_i[child])):
            child = other
        if heap_d[child] > d or (heap_d[child] == d and heap_i[child] > node):
            heap_d[pos] = heap_d[child]
            heap_i[pos] = heap_i[child]
            pos = child
        else:
            break
    heap_d[pos] = d
    heap_i[pos] = node


@njit(cache=True, nogil=True)
def _pop_max(heap_d: npt.NDArray[np.float32], heap_i: npt.NDArray[np.int64], size: int) -> None:
    size -= 1
    if size > 0:
        _sift_down_max(heap_d, heap_i, size, heap_d[size], heap_i[size])


@njit(cache=True, nogil=True)
def graph_search(
    query: npt.NDArray[np.int16], qscale: float, const: float, codes: npt.NDArray[np.int8],
    sqnorms: npt.NDArray[np.float32], counts0: npt.NDArray[np.uint16], links0: npt.NDArray[np.int32],
    up_start: npt.NDArray[np.int64], up_counts: npt.NDArray[np.uint16], up_links: npt.NDArray[np.int32],
    entry: int, max_level: int, ef: int, allow: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The best ``ef`` (or fewer) allowed nodes for ``query``: ``(nodes, distances)``, nearest
    first. ``allow`` is empty (every node allowed) or one flag per node."""
    n = codes.shape[0]
    out_i = np.empty(0, dtype=np.int64)
    out_d = np.empty(0, dtype=np.float32)
    if n == 0 or ef <= 0:
        return out_i, out_d
    filtered = allow.shape[0] > 0
    cur = entry
    cur_d = _distance(query, qscale, codes, sqnorms, const, cur)
    for level in range(max_level, 0, -1):
        changed = True
        while changed:
            changed = False
            slot = up_start[cur] + level - 1
            for t in range(up_counts[slot]):
                _prefetch_row(codes, up_links[slot, t])
            for t in range(up_counts[slot]):
                node = up_links[slot, t]
                d = _distance(query, qscale, codes, sqnorms, const, node)
                if d < cur_d:
                    cur_d = d
                    cur = node
                    changed = True

    visited = np.zeros((n + 7) >> 3, dtype=np.uint8)
    fresh = np.empty(links0.shape[1], dtype=np.int64)
    cap = max(16, ef * 4)
    cand_d = np.empty(cap, dtype=np.float32)
    cand_i = np.empty(cap, dtype=np.int64)
    res_d = np.empty(ef, dtype=np.float32)
    res_i = np.empty(ef, dtype=np.int64)
    n_cand = 0
    n_res = 0
    bound = np.float32(np.inf)
    if not filtered or allow[cur]:
        _push_max(res_d, res_i, n_res, cur_d, cur)
        n_res += 1
        bound = cur_d
    _push_min(cand_d, cand_i, n_cand, cur_d, cur)
    n_cand += 1
    visited[cur >> 3] |= np.uint8(1 << (cur & 7))
    while n_cand > 0:
        d0, node0 = cand_d[0], cand_i[0]
        if d0 > bound and (n_res == ef or not filtered):
            break
        _pop_min(cand_d, cand_i, n_cand)
        n_cand -= 1
        # the unvisited neighbours first, their codes (and the next candidate's links) fetched
        # while the loop goes on; then their distances
        n_fresh = 0
        for t in range(counts0[node0]):
            node = np.int64(links0[node0, t])
            bit = np.uint8(1 << (node & 7))
            if visited[node >> 3] & bit:
                continue
            visited[node >> 3] |= bit
            fresh[n_fresh] = node
            n_fresh += 1
            if n_fresh <= _AHEAD:
                _prefetch_row(codes, node)
        if n_cand > 0:
            _prefetch_row(links0, cand_i[0])
        for t in range(n_fresh):
            node = fresh[t]
            if t + _AHEAD < n_fresh:
                _prefetch_row(codes, fresh[t + _AHEAD])
            d = _distance(query, qscale, codes, sqnorms, const, node)
            if n_res < ef or d < bound:
                if n_cand == cand_d.shape[0]:  # grow the candidate heap
                    grown_d = np.empty(2 * n_cand, dtype=np.float32)
                    grown_i = np.empty(2 * n_cand, dtype=np.int64)
                    grown_d[:n_cand] = cand_d
                    grown_i[:n_cand] = cand_i
                    cand_d, cand_i = grown_d, grown_i
                _push_min(cand_d, cand_i, n_cand, d, node)
                n_cand += 1
                if not filtered or allow[node]:
                    if n_res < ef:
                        _push_max(res_d, res_i, n_res, d, node)
                        n_res += 1
                    else:  # d < bound: it replaces the farthest (one sift, not a push and a pop)
                        _sift_down_max(res_d, res_i, n_res, d, node)
                if n_res > 0:
                    bound = res_d[0]
    # drain the max-heap: farthest first into the last free slot, so the output is nearest first
    out_i = np.empty(n_res, dtype=np.int64)
    out_d = np.empty(n_res, dtype=np.float32)
    for size in range(n_res, 0, -1):
        out_i[size - 1] = res_i[0]
        out_d[size - 1] = res_d[0]
        _pop_max(res_d, res_i, size)
    return out_i, out_d


@njit(cache=True, nogil=True)
def _search_into(q: int, queries: npt.NDArray[np.int16], qscales: npt.NDArray[np.float32],
                 consts: npt.NDArray[np.float32], codes: npt.NDArray[np.int8],
                 sqnorms: npt.NDArray[np.float32], counts0: npt.NDArray[np.uint16],
                 links0: npt.NDArray[np.int32], up_start: npt.NDArray[np.int64],
                 up_counts: npt.NDArray[np.uint16], up_links: npt.NDArray[np.int32], entry: int,
                 max_level: int, ef: int, allow: npt.NDArray[np.bool_], out_i: npt.NDArray[np.int64],
                 out_d: npt.NDArray[np.float32]) -> None:
    """Query ``q``'s best ``out_i.shape[1]`` into row ``q`` of ``out_i`` / ``out_d``."""
    ids, dist = graph_search(queries[q], qscales[q], consts[q], codes, sqnorms, counts0, links0,
                             up_start, up_counts, up_links, entry, max_level, ef, allow)
    w = min(out_i.shape[1], ids.shape[0])
    out_i[q, :w] = ids[:w]
    out_d[q, :w] = dist[:w]


@njit(cache=True, nogil=True)
def graph_search_rows(
    queries: npt.NDArray[np.int16], qscales: npt.NDArray[np.float32], consts: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int8], sqnorms: npt.NDArray[np.float32], counts0: npt.NDArray[np.uint16],
    links0: npt.NDArray[np.int32], up_start: npt.NDArray[np.int64], up_counts: npt.NDArray[np.uint16],
    up_links: npt.NDArray[np.int32], entry: int, max_level: int, ef: int, k: int,
    allow: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """:func:`graph_search_batch` on the calling thread alone, the GIL released: a batch split
    over the caller's threads calls it from each (parts taken as threads free up). Concurrent
    calls of the parallel kernel abort the process under Numba's workqueue threading layer, and
    its fixed split of the queries stalls on a busy core (2 threads gave 0.69x one thread on
    PyPI 64k with a second process on one of the two cores)."""
    m = queries.shape[0]
    out_i = np.full((m, k), -1, dtype=np.int64)
    out_d = np.full((m, k), np.inf, dtype=np.float32)
    for q in range(m):
        _search_into(q, queries, qscales, consts, codes, sqnorms, counts0, links0, up_start,
                     up_counts, up_links, entry, max_level, ef, allow, out_i, out_d)
    return out_i, out_d


@njit(cache=True, parallel=True)
def graph_search_batch(
    queries: npt.NDArray[np.int16], qscales: npt.NDArray[np.float32], consts: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int8], sqnorms: npt.NDArray[np.float32], counts0: npt.NDArray[np.uint16],
    links0: npt.NDArray[np.int32], up_start: npt.NDArray[np.int64], up_counts: npt.NDArray[np.uint16],
    up_links: npt.NDArray[np.int32], entry: int, max_level: int, ef: int, k: int,
    allow: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """:func:`graph_search` for every row of ``queries`` (``qscales[i]`` and ``consts[i]`` its
    scale and offset), on all cores; the best ``k`` per query, padded with node ``-1`` and
    distance ``+inf``."""
    m = queries.shape[0]
    out_i = np.full((m, k), -1, dtype=np.int64)
    out_d = np.full((m, k), np.inf, dtype=np.float32)
    for q in prange(m):
        _search_into(q, queries, qscales, consts, codes, sqnorms, counts0, links0, up_start,
                     up_counts, up_links, entry, max_level, ef, allow, out_i, out_d)
    return out_i, out_d


def warm_up(only: str | None = None) -> None:
    """Load (or compile) the kernels for the argument types vecstore passes (a graph's arrays
    read-only: memory-mapped, or frozen after a build); ``only``: the kernel of that name alone
    (see ``kernels.warm_up``)."""
    def w(kernel: Callable[..., object], *args: object) -> None:
        if only is None or kernel.__name__ == only:
            kernel(*args)

    def frozen(a: np.ndarray) -> np.ndarray:
        a.flags.writeable = False
        return a

    codes = frozen(np.zeros((2, 4), dtype=np.int8))
    counts0 = frozen(np.zeros(2, dtype=np.uint16))
    links0 = frozen(np.zeros((2, 2), dtype=np.int32))
    up_start = frozen(np.zeros(3, dtype=np.int64))
    up_counts = frozen(np.zeros(0, dtype=np.uint16))
    up_links = frozen(np.zeros((0, 2), dtype=np.int32))
    w(fold_queries, np.zeros((1, 4), dtype=np.float32), np.ones(4), np.zeros(4), 1.0)
    for sqnorms in (frozen(np.zeros(0, dtype=np.float32)), frozen(np.zeros(2, dtype=np.float32))):
        for allow in (np.zeros(0, dtype=np.bool_), np.ones(2, dtype=np.bool_)):
            w(graph_search, np.zeros(4, dtype=np.int16), 1.0, 0.0, codes, sqnorms, counts0, links0,
                         up_start, up_counts, up_links, 0, 0, 2, allow)
            for batch in (graph_search_batch, graph_search_rows):
                w(batch, np.zeros((2, 4), dtype=np.int16), np.ones(2, dtype=np.float32),
                      np.zeros(2, dtype=np.float32), codes, sqnorms, counts0, links0, up_start,
                      up_counts, up_links, 0, 0, 2, 1, allow)
