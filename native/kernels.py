"""Numba kernels: Hamming scan with fused top-k, int8/float row scoring, top-k over scores.

Each function has a NumPy twin of the same name and signature in ``reference``, which defines what
it computes; see that module for the shared conventions (array layout, ``rows``, ``k``, ties).
Importing this module imports Numba; compilation happens on first call and is cached on disk.

How the Hamming top-k stays at memory speed: distances are small integers in ``[0, 64 * w]``, so
instead of materialising all ``n`` distances and sorting them, one pass computes each distance and
admits a row only if it can still be in the top k. A histogram of admitted distances gives the
admission bound: once ``k`` admitted rows have distance ``<= L``, later rows need a distance below
``L`` (rows come in position order, so an equal distance loses the tie). The bound falls fast: on
rows in random order about ``k * (1 + ln(n / k))`` rows are ever written (some 1,300 of 200,000 for
k=160), and the hot loop is a popcount and one well-predicted compare per row. A counting sort over
the histogram then emits the result in (distance, position) order with no comparison sort at all.
"""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import numpy.typing as npt
from numba import njit, prange, types
from numba.extending import intrinsic

# Numba's on-disk cache (native/__pycache__) is keyed by file, not by module name, yet each entry
# records the module name it was compiled under. Importing this file as `native.kernels` as well
# would write entries that later fail to load as `vecstore._native.kernels` ("No module named
# 'native'"), so only the shipped name is allowed.
if __name__ != "vecstore._native.kernels":
    raise ImportError(
        f"import the kernels as vecstore._native.kernels, not {__name__}: Numba's on-disk cache "
        "must see one module name (pip install -e . maps native/ to vecstore._native)"
    )

__all__ = [
    "float_scores_rows",
    "float_scores_rows_files",
    "float_scores_rows_segments",
    "hamming_distances",
    "hamming_distances_rows",
    "hamming_topk",
    "hamming_topk_batch",
    "hamming_topk_batch_ranges",
    "hamming_topk_ranges",
    "hamming_topk_rows",
    "hamming_topk_rows_ranges",
    "hamming_topk_spans",
    "hamming_topk_spans_allowed",
    "int8_scores_rows",
    "int8_scores_rows_ranges",
    "int8_scores_rows_segments",
    "read_rows",
    "rescore_labels_batch",
    "sign_scores_rows",
    "topk_scores",
]

# SWAR popcount constants. Typed as uint64 so Numba keeps the arithmetic in unsigned integers
# (mixing uint64 with a Python int would promote to float64). LLVM recognises the pattern below
# and emits a single `popcnt` instruction.
_M1 = np.uint64(0x5555555555555555)
_M2 = np.uint64(0x3333333333333333)
_M4 = np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)
_S1 = np.uint64(1)
_S2 = np.uint64(2)
_S4 = np.uint64(4)
_S56 = np.uint64(56)

# Float reductions may be reordered (and multiply-adds fused) so the dot-product loops vectorise;
# NaN and infinity semantics are kept.
_VECTORISE_SUMS = {"reassoc", "contract", "nsz"}

# hamming_topk_batch: bytes of codes per chunk (well inside a core's L2) and queries per group
# (their scan state, ~7 KB each at k=160 and 384 bits, stays in cache alongside the chunk).
_CHUNK_BYTES = 256 * 1024
_QUERY_GROUP = 32


@njit(cache=True, nogil=True)
def _popcount64(x: np.uint64) -> np.uint64:
    """Number of set bits in a 64-bit word."""
    x = x - ((x >> _S1) & _M1)
    x = (x & _M2) + ((x >> _S2) & _M2)
    x = (x + (x >> _S4)) & _M4
    return (x * _H01) >> _S56


@njit(cache=True, nogil=True)
def _distance(codes: npt.NDArray[np.uint64], row: int, query: npt.NDArray[np.uint64]) -> np.int64:
    """Hamming distance between ``codes[row]`` and ``query``."""
    acc = np.uint64(0)
    for j in range(codes.shape[1]):
        acc += _popcount64(codes[row, j] ^ query[j])
    return np.int64(acc)


@njit(cache=True, nogil=True)
def _check_width(codes: npt.NDArray[np.generic], query: npt.NDArray[np.generic]) -> None:
    """Raise ValueError unless the query has one entry per column of ``codes``."""
    if query.shape[0] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")


@njit(cache=True, nogil=True)
def hamming_distances(codes: npt.NDArray[np.uint64], query: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
    """Hamming distance from ``query`` (``uint64[w]``) to every row of ``codes`` (``uint64[n, w]``).

    Returns ``int32[n]``: the number of differing bits per row.
    """
    _check_width(codes, query)
    n = codes.shape[0]
    out = np.empty(n, dtype=np.int32)
    for i in range(n):
        out[i] = _distance(codes, i, query)
    return out


@njit(cache=True, nogil=True)
def hamming_distances_rows(
    codes: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64], query: npt.NDArray[np.uint64]
) -> npt.NDArray[np.int32]:
    """Hamming distance from ``query`` to ``codes[rows[i]]`` for each i; returns ``int32[m]``."""
    _check_width(codes, query)
    m = rows.shape[0]
    out = np.empty(m, dtype=np.int32)
    for i in range(m):
        out[i] = _distance(codes, rows[i], query)
    return out


@njit(cache=True, nogil=True)
def _is_non_decreasing(rows: npt.NDArray[np.int64]) -> bool:
    """Whether ``rows`` is sorted ascending (duplicates allowed)."""
    for i in range(1, rows.shape[0]):
        if rows[i] < rows[i - 1]:
            return False
    return True


@njit(cache=True, nogil=True)
def _new_state(max_distance: int) -> npt.NDArray[np.int64]:
    """Scan state ``[candidates held, bound, below]`` before any row (see ``_scan_range``)."""
    state = np.empty(3, dtype=np.int64)
    state[0] = 0
    state[1] = max_distance + 1
    state[2] = 0
    return state


@njit(cache=True, nogil=True)
def _compact(
    cand_ids: npt.NDArray[np.int64],
    cand_dist: npt.NDArray[np.int32],
    n_cand: int,
    hist: npt.NDArray[np.int64],
    bound: int,
    below: int,
    kk: int,
) -> int:
    """Keep only the ``kk`` candidates that can still win (in id order); rebuild ``hist``.

    Those are every candidate below the bound (``below`` < kk of them) and the first
    ``kk - below`` at the bound. Only valid when rows arrive in id order. Returns how many were
    kept: kk, since a full buffer (>= 2 * kk admitted) means at least kk lie at or below the bound.
    """
    hist[:] = 0
    at_bound = kk - below
    kept = 0
    for t in range(n_cand):
        d = cand_dist[t]
        if d < bound or (d == bound and at_bound > 0):
            if d == bound:
                at_bound -= 1
            cand_ids[kept] = cand_ids[t]
            cand_dist[kept] = d
            hist[d] += 1
            kept += 1
    return kept


def _make_scan_range(width: int) -> Callable[..., None]:
    """Build ``_scan_range`` for codes of ``width`` words per row (0: any width).

    The width is a closure constant, which Numba compiles as a literal, so LLVM unrolls the word
    loop into straight-line popcounts. That pays for narrow codes, where the generic loop spends a
    vector/scalar dispatch and a horizontal sum on every row (measured: batch scans ~13% faster at
    4 and 6 words); from 8 words up the generic loop, which LLVM vectorises, is faster (~7% at 8
    words, ~25% at 12). Numba's cache key includes the closure's contents, so each build is cached.
    """

    @njit(cache=True, nogil=True)
    def scan_range(
        codes: npt.NDArray[np.uint64],
        rows: npt.NDArray[np.int64] | None,
        start: int,
        stop: int,
        query: npt.NDArray[np.uint64],
        kk: int,
        in_id_order: bool,
        hist: npt.NDArray[np.int64],
        cand_ids: npt.NDArray[np.int64],
        cand_dist: npt.NDArray[np.int32],
        state: npt.NDArray[np.int64],
    ) -> None:
        words = width if width > 0 else codes.shape[1]
        n_cand, bound, below = state[0], state[1], state[2]
        slack = 0 if in_id_order else 1
        admit_below = bound + slack
        capacity = cand_ids.shape[0]
        for i in range(start, stop):
            row = i if rows is None else rows[i]
            acc = np.uint64(0)
            for j in range(words):
                acc += _popcount64(codes[row, j] ^ query[j])
            d = np.int64(acc)
            if d < admit_below:
                if n_cand == capacity:  # only reachable in id order, with capacity >= 2 * kk
                    n_cand = _compact(cand_ids, cand_dist, n_cand, hist, bound, below, kk)
                cand_ids[n_cand] = row
                cand_dist[n_cand] = d
                n_cand += 1
                hist[d] += 1
                if d < bound:
                    below += 1
                    while below >= kk:
                        bound -= 1
                        below -= hist[bound]
                    admit_below = bound + slack
        state[0], state[1], state[2] = n_cand, bound, below

    return scan_range


_scan_range_w4 = _make_scan_range(4)  # 256-bit codes
_scan_range_w6 = _make_scan_range(6)  # 384-bit codes: 384-d embeddings, the engine's default
_scan_range_any = _make_scan_range(0)


@njit(cache=True, nogil=True)
def _scan_range(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64] | None,
    start: int,
    stop: int,
    query: npt.NDArray[np.uint64],
    kk: int,
    in_id_order: bool,
    hist: npt.NDArray[np.int64],
    cand_ids: npt.NDArray[np.int64],
    cand_dist: npt.NDArray[np.int32],
    state: npt.NDArray[np.int64],
) -> None:
    """Admit the rows ``start:stop`` (of ``codes``, or of ``codes[rows]``) that can still be top-kk.

    Ids are positions when ``rows`` is None (Numba compiles that case separately, so the branch
    costs nothing) and row values otherwise. ``state`` carries ``[n_cand, bound, below]`` from one
    range to the next, with the invariant: bound == min{L : #admitted with distance <= L >= kk}
    (max distance + 1 until kk rows are admitted) and below == #admitted with distance < bound.
    Rows must arrive in id order for an equal distance to lose the tie; when they do not
    (``in_id_order`` False: unsorted ``rows``), rows at the bound are admitted too, and the
    candidate buffers must hold every row. Dispatches to a build for the code width.
    """
    args = (codes, rows, start, stop, query, kk, in_id_order, hist, cand_ids, cand_dist, state)
    words = codes.shape[1]
    if words == 6:
        _scan_range_w6(*args)
    elif words == 4:
        _scan_range_w4(*args)
    else:
        _scan_range_any(*args)


@njit(cache=True, nogil=True)
def _emit(
    cand_ids: npt.NDArray[np.int64],
    cand_dist: npt.NDArray[np.int32],
    hist: npt.NDArray[np.int64],
    state: npt.NDArray[np.int64],
    in_id_order: bool,
    out_ids: npt.NDArray[np.int64],
    out_dist: npt.NDArray[np.int32],
) -> None:
    """Write the best ``len(out_ids)`` candidates in (distance, id) order: a counting sort.

    Distances below the bound all fit (below < kk); the bound's bucket gets the remaining
    kk - below slots, taken in id order.
    """
    kk = out_ids.shape[0]
    n_cand, bound = state[0], state[1]
    order = np.arange(n_cand)
    if not in_id_order:
        order = order[np.argsort(cand_ids[:n_cand], kind="mergesort")]
    next_slot = np.empty(bound + 1, dtype=np.int64)
    filled = 0
    for level in range(bound + 1):
        next_slot[level] = filled
        filled += hist[level]
    for t in order:
        d = cand_dist[t]
        if d <= bound:
            slot = next_slot[d]
            if slot < kk:
                out_ids[slot] = cand_ids[t]
                out_dist[slot] = d
                next_slot[d] = slot + 1


@njit(cache=True, nogil=True)
def _topk_one(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64] | None,
    query: npt.NDArray[np.uint64],
    out_ids: npt.NDArray[np.int64],
    out_dist: npt.NDArray[np.int32],
) -> None:
    """Fill ``out_ids``/``out_dist`` (length kk >= 1) with the nearest of all rows or of ``rows``."""
    kk = out_ids.shape[0]
    count = codes.shape[0] if rows is None else rows.shape[0]
    in_id_order = rows is None or _is_non_decreasing(rows)
    # In id order the buffers are compacted when full, so 2 * kk slots suffice.
    capacity = min(count, 2 * kk) if in_id_order else count
    max_distance = 64 * codes.shape[1]
    hist = np.zeros(max_distance + 2, dtype=np.int64)
    cand_ids = np.empty(capacity, dtype=np.int64)
    cand_dist = np.empty(capacity, dtype=np.int32)
    state = _new_state(max_distance)
    _scan_range(codes, rows, 0, count, query, kk, in_id_order, hist, cand_ids, cand_dist, state)
    _emit(cand_ids, cand_dist, hist, state, in_id_order, out_ids, out_dist)


@njit(cache=True, nogil=True)
def hamming_topk(
    codes: npt.NDArray[np.uint64], query: npt.NDArray[np.uint64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The ``min(k, n)`` rows of ``codes`` nearest to ``query`` in Hamming distance.

    Returns ``(positions int64[k'], distances int32[k'])`` sorted by (distance, position).
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    _check_width(codes, query)
    kk = min(k, codes.shape[0])
    ids = np.empty(kk, dtype=np.int64)
    dist = np.empty(kk, dtype=np.int32)
    if kk > 0:
        _topk_one(codes, None, query, ids, dist)
    return ids, dist


@njit(cache=True, nogil=True)
def hamming_topk_rows(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64],
    query: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The ``min(k, m)`` entries of ``rows`` whose codes are nearest to ``query``.

    Returns ``(row values int64[k'], distances int32[k'])`` sorted by (distance, row value);
    ``rows`` need not be sorted (sorted is faster when many distances tie).
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    _check_width(codes, query)
    kk = min(k, rows.shape[0])
    ids = np.empty(kk, dtype=np.int64)
    dist = np.empty(kk, dtype=np.int32)
    if kk > 0:
        _topk_one(codes, rows, query, ids, dist)
    return ids, dist


@njit(cache=True, nogil=True)
def _topk_ranges(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64] | None,
    cuts: npt.NDArray[np.int64],
    queries: npt.NDArray[np.uint64],
    out_ids: npt.NDArray[np.int64],
    out_dist: npt.NDArray[np.int32],
) -> None:
    """``_topk_one`` over consecutive ranges ``cuts[s]:cuts[s + 1]`` (of ``codes``, or of
    ``rows``; they cover it), each scored against its own ``queries[s]``, in one pass: the
    admission bound found in one range carries into the next."""
    kk = out_ids.shape[0]
    count = codes.shape[0] if rows is None else rows.shape[0]
    in_id_order = rows is None or _is_non_decreasing(rows)
    capacity = min(count, 2 * kk) if in_id_order else count
    max_distance = 64 * codes.shape[1]
    hist = np.zeros(max_distance + 2, dtype=np.int64)
    cand_ids = np.empty(capacity, dtype=np.int64)
    cand_dist = np.empty(capacity, dtype=np.int32)
    state = _new_state(max_distance)
    for s in range(queries.shape[0]):
        if cuts[s + 1] > cuts[s]:
            _scan_range(codes, rows, cuts[s], cuts[s + 1], queries[s], kk, in_id_order, hist,
                        cand_ids, cand_dist, state)
    _emit(cand_ids, cand_dist, hist, state, in_id_order, out_ids, out_dist)


@njit(cache=True, nogil=True)
def _check_ranges(count: int, cuts: npt.NDArray[np.int64], codes: npt.NDArray[np.uint64],
                  queries: npt.NDArray[np.uint64]) -> None:
    if queries.shape[1] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    ok = cuts.shape[0] == queries.shape[0] + 1 and cuts[0] == 0 and cuts[-1] == count
    for s in range(1, cuts.shape[0]):
        ok = ok and cuts[s] >= cuts[s - 1]
    if not ok:
        raise ValueError("cuts must be non-decreasing, one more than queries, from 0 to the count")


@njit(cache=True, nogil=True)
def hamming_topk_spans(
    codes: npt.NDArray[np.uint64], starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64],
    query: npt.NDArray[np.uint64], k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_rows`` over the positions ``starts[s]:stops[s]`` of every span ``s``
    (ascending, not overlapping: an index's probed lists), without building that row array
    (half a million positions, 4 MB, at 10M rows and 256 lists: allocating and filling it took
    longer than the scan).

    Returns ``(positions int64[k'], distances int32[k'])`` sorted by (distance, position).
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    _check_width(codes, query)
    total = _spans_total(starts, stops, codes.shape[0])
    kk = min(k, total)
    ids = np.empty(kk, dtype=np.int64)
    dist = np.empty(kk, dtype=np.int32)
    if kk == 0:
        return ids, dist
    max_distance = 64 * codes.shape[1]
    hist = np.zeros(max_distance + 2, dtype=np.int64)
    capacity = min(total, 2 * kk)  # positions come in order: compacted when full
    cand_ids = np.empty(capacity, dtype=np.int64)
    cand_dist = np.empty(capacity, dtype=np.int32)
    state = _new_state(max_distance)
    for s in range(starts.shape[0]):
        if stops[s] > starts[s]:
            _scan_range(codes, None, starts[s], stops[s], query, kk, True, hist, cand_ids,
                        cand_dist, state)
    _emit(cand_ids, cand_dist, hist, state, True, ids, dist)
    return ids, dist


@njit(cache=True, nogil=True)
def _spans_total(starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64], n: int) -> int:
    """Positions in the spans, which must be ascending, not overlapping and within ``n``."""
    total = 0
    for s in range(starts.shape[0]):
        if stops[s] < starts[s] or starts[s] < 0 or stops[s] > n or (s > 0 and starts[s] < stops[s - 1]):
            raise ValueError("spans must be ascending, not overlapping, within the codes")
        total += stops[s] - starts[s]
    return total


@njit(cache=True, nogil=True)
def hamming_topk_spans_allowed(
    codes: npt.NDArray[np.uint64], starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64],
    labels: npt.NDArray[np.integer], allow: npt.NDArray[np.bool_], query: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_spans`` over the positions ``p`` of the spans whose label the filter
    allows (``allow[labels[p]]``): the allowed positions gathered in one pass into one buffer,
    then scanned (NumPy's arange, repeat, gather and mask made five arrays of the probed
    positions: 36 ms of a 39 ms query at 10M rows under a 10% filter)."""
    if k < 0:
        raise ValueError("k must be >= 0")
    _check_width(codes, query)
    if labels.shape[0] != codes.shape[0]:
        raise ValueError("labels must have one entry per code")
    total = _spans_total(starts, stops, codes.shape[0])
    rows = np.empty(total, dtype=np.int64)
    m = 0
    for s in range(starts.shape[0]):
        for p in range(starts[s], stops[s]):
            if allow[labels[p]]:
                rows[m] = p
                m += 1
    return hamming_topk_rows(codes, rows[:m], query, k)


@njit(cache=True, nogil=True)
def hamming_topk_ranges(
    codes: npt.NDArray[np.uint64], cuts: npt.NDArray[np.int64], queries: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The ``min(k, n)`` rows of ``codes`` nearest in Hamming distance, rows
    ``cuts[s]:cuts[s + 1]`` measured against ``queries[s]`` (``uint64[s, w]``: the segments of
    a table version, each with its own sign calibration).

    Returns ``(positions int64[k'], distances int32[k'])`` sorted by (distance, position).
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    _check_ranges(codes.shape[0], cuts, codes, queries)
    kk = min(k, codes.shape[0])
    ids = np.empty(kk, dtype=np.int64)
    dist = np.empty(kk, dtype=np.int32)
    if kk > 0:
        _topk_ranges(codes, None, cuts, queries, ids, dist)
    return ids, dist


@njit(cache=True, nogil=True)
def hamming_topk_rows_ranges(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64],
    cuts: npt.NDArray[np.int64],
    queries: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_rows`` where entries ``cuts[s]:cuts[s + 1]`` of ``rows`` are measured
    against ``queries[s]``.

    Returns ``(row values int64[k'], distances int32[k'])`` sorted by (distance, row value).
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    _check_ranges(rows.shape[0], cuts, codes, queries)
    kk = min(k, rows.shape[0])
    ids = np.empty(kk, dtype=np.int64)
    dist = np.empty(kk, dtype=np.int32)
    if kk > 0:
        _topk_ranges(codes, rows, cuts, queries, ids, dist)
    return ids, dist


@njit(cache=True, parallel=True)
def hamming_topk_batch(
    codes: npt.NDArray[np.uint64], queries: npt.NDArray[np.uint64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk`` for each row of ``queries`` (``uint64[q, w]``).

    Returns ``(positions int64[q, k'], distances int32[q, k'])`` with ``k' = min(k, n)``.
    Queries go in groups of ``_QUERY_GROUP``, the groups in parallel; within a group every query
    scans one cache-sized chunk of codes before the group moves on, so the codes are read from
    memory once per group rather than once per query.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    if queries.shape[1] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    n, words = codes.shape
    nq = queries.shape[0]
    kk = min(k, n)
    ids = np.empty((nq, kk), dtype=np.int64)
    dist = np.empty((nq, kk), dtype=np.int32)
    if kk == 0 or nq == 0:
        return ids, dist
    max_distance = 64 * words
    capacity = min(n, 2 * kk)
    chunk = max(1, _CHUNK_BYTES // max(1, 8 * words))
    n_groups = (nq + _QUERY_GROUP - 1) // _QUERY_GROUP
    for g in prange(n_groups):
        q0 = g * _QUERY_GROUP
        size = min(_QUERY_GROUP, nq - q0)
        hist = np.zeros((size, max_distance + 2), dtype=np.int64)
        cand_ids = np.empty((size, capacity), dtype=np.int64)
        cand_dist = np.empty((size, capacity), dtype=np.int32)
        state = np.empty((size, 3), dtype=np.int64)
        for j in range(size):
            state[j] = _new_state(max_distance)
        for start in range(0, n, chunk):
            stop = min(start + chunk, n)
            for j in range(size):
                _scan_range(
                    codes, None, start, stop, queries[q0 + j], kk, True,
                    hist[j], cand_ids[j], cand_dist[j], state[j],
                )  # fmt: skip
        for j in range(size):
            _emit(cand_ids[j], cand_dist[j], hist[j], state[j], True, ids[q0 + j], dist[q0 + j])
    return ids, dist


@njit(cache=True, parallel=True)
def hamming_topk_batch_ranges(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64] | None,
    cuts: npt.NDArray[np.int64],
    queries: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_rows_ranges`` for each query of a batch: ``queries`` is
    ``uint64[q, s, w]``, entries ``cuts[s]:cuts[s + 1]`` of ``rows`` (of every row of ``codes``
    when None, as ``hamming_topk_ranges``) are measured against ``queries[i, s]`` (query
    ``i``'s bits under segment ``s``'s calibration).

    Returns ``(row values int64[q, k'], distances int32[q, k'])`` with ``k' = min(k, m)``, each
    query's sorted by (distance, row value); ``rows`` must be sorted (ascending). Queries go in
    groups of ``_QUERY_GROUP``, the groups in parallel; within a group every query scans one
    cache-sized chunk of rows before the group moves on (as ``hamming_topk_batch``).
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    if queries.shape[2] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    m = codes.shape[0] if rows is None else rows.shape[0]
    ok = cuts.shape[0] == queries.shape[1] + 1 and cuts[0] == 0 and cuts[-1] == m
    for s in range(1, cuts.shape[0]):
        ok = ok and cuts[s] >= cuts[s - 1]
    if not ok:
        raise ValueError("cuts must be non-decreasing, one more than segments, from 0 to the count")
    if rows is not None and not _is_non_decreasing(rows):
        raise ValueError("rows must be sorted ascending")
    words = codes.shape[1]
    nq = queries.shape[0]
    kk = min(k, m)
    ids = np.empty((nq, kk), dtype=np.int64)
    dist = np.empty((nq, kk), dtype=np.int32)
    if kk == 0 or nq == 0:
        return ids, dist
    max_distance = 64 * words
    capacity = min(m, 2 * kk)
    chunk = max(1, _CHUNK_BYTES // max(1, 8 * words))
    n_groups = (nq + _QUERY_GROUP - 1) // _QUERY_GROUP
    for g in prange(n_groups):
        q0 = g * _QUERY_GROUP
        size = min(_QUERY_GROUP, nq - q0)
        hist = np.zeros((size, max_distance + 2), dtype=np.int64)
        cand_ids = np.empty((size, capacity), dtype=np.int64)
        cand_dist = np.empty((size, capacity), dtype=np.int32)
        state = np.empty((size, 3), dtype=np.int64)
        for j in range(size):
            state[j] = _new_state(max_distance)
        for s in range(cuts.shape[0] - 1):
            for start in range(cuts[s], cuts[s + 1], chunk):
                stop = min(start + chunk, cuts[s + 1])
                for j in range(size):
                    _scan_range(
                        codes, rows, start, stop, queries[q0 + j, s], kk, True,
                        hist[j], cand_ids[j], cand_dist[j], state[j],
                    )  # fmt: skip
        for j in range(size):
            _emit(cand_ids[j], cand_dist[j], hist[j], state[j], True, ids[q0 + j], dist[q0 + j])
    return ids, dist


# ssize_t pread(int fd, void *buf, size_t count, off_t offset), from the C library the process
# has loaded (a symbol, not an address: the compiled kernel stays cacheable)
_pread = types.ExternalFunction("pread", types.intp(types.intc, types.voidptr, types.uintp, types.int64))


@njit(cache=True, nogil=True)
def read_rows(fd: int, base: int, row_bytes: int, rows: npt.NDArray[np.int64],
              out: npt.NDArray[np.uint8]) -> int:
    """Rows ``rows`` of a file's fixed-width table at offset ``base`` (``row_bytes``
    each) into ``out`` (``uint8[len(rows) * row_bytes]``), a run of consecutive rows in one
    ``pread`` each (any order; ascending rows make fewer runs). Returns how many leading rows
    were read whole (``len(rows)``, or where a read came short or failed). One system call per
    run from compiled code: ~1 us, where Python's ``os.preadv`` loop adds ~1 us of its own a
    call (docs/scale.md)."""
    n = rows.shape[0]
    if out.shape[0] != n * row_bytes:
        raise ValueError("out must hold len(rows) * row_bytes bytes")
    i = 0
    while i < n:
        j = i + 1
        while j < n and rows[j] == rows[j - 1] + 1:
            j += 1
        want = (j - i) * row_bytes
        if _pread(fd, out[i * row_bytes:].ctypes, want, base + rows[i] * row_bytes) != want:
            return i
        i = j
    return n


@njit(cache=True, nogil=True)
def sign_scores_rows(
    codes: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64], table: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``sum_b table[b, byte b of codes[rows[i]]]`` for each i, in float32; returns
    ``float32[m]``.

    ``table`` is ``float32[8 w, 256]``: row ``b`` gives, for each value of a code's byte ``b``
    (bits ``8 b .. 8 b + 7``, little-endian), the sum of the query's values at the set bits
    (``vecstore.index.ivf_binary.sign_score_table``). The result is the query's inner product with each sign
    code read as 0/1 bits: an *asymmetric* distance (a float query against 1-bit codes).
    """
    words = codes.shape[1]
    if table.shape[0] != 8 * words or table.shape[1] != 256:
        raise ValueError("table must be float32[8 * words, 256]")
    m = rows.shape[0]
    out = np.empty(m, dtype=np.float32)
    for i in range(m):
        row = rows[i]
        acc = np.float32(0.0)
        for j in range(words):
            word = codes[row, j]
            for b in range(8):
                acc += table[8 * j + b, np.intp((word >> np.uint64(8 * b)) & np.uint64(0xFF))]
        out[i] = acc
    return out


@njit(cache=True, nogil=True, fastmath=_VECTORISE_SUMS)
def int8_scores_rows(
    codes: npt.NDArray[np.int8], rows: npt.NDArray[np.int64], qscaled: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``sum_j qscaled[j] * codes[rows[i], j]`` for each i, in float32; returns ``float32[m]``.

    ``qscaled`` is the query already multiplied by the per-dimension dequantization scale, so this
    is the inner product of the query with each dequantized vector (up to a per-query offset).
    """
    _check_width(codes, qscaled)
    m = rows.shape[0]
    dim = qscaled.shape[0]
    out = np.empty(m, dtype=np.float32)
    for i in range(m):
        row = rows[i]
        acc = np.float32(0.0)
        for j in range(dim):
            acc += qscaled[j] * np.float32(codes[row, j])
        out[i] = acc
    return out


@njit(cache=True, nogil=True, fastmath=_VECTORISE_SUMS)
def int8_scores_rows_ranges(
    codes: npt.NDArray[np.int8], rows: npt.NDArray[np.int64], cuts: npt.NDArray[np.int64],
    qscaled: npt.NDArray[np.float32], consts: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """``int8_scores_rows`` where entries ``cuts[s]:cuts[s + 1]`` of ``rows`` are scored with
    ``qscaled[s]`` (``float32[s, dim]``: the segments of a table version, each with its own
    dequantization scale) plus ``consts[s]``, in one call; returns ``float32[len(rows)]``."""
    if qscaled.shape[1] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    ok = (cuts.shape[0] == qscaled.shape[0] + 1 and consts.shape[0] == qscaled.shape[0]
          and cuts[0] == 0 and cuts[-1] == rows.shape[0])
    for s in range(1, cuts.shape[0]):
        ok = ok and cuts[s] >= cuts[s - 1]
    if not ok:
        raise ValueError("cuts must be non-decreasing, one more than queries, from 0 to the count")
    dim = codes.shape[1]
    out = np.empty(rows.shape[0], dtype=np.float32)
    for s in range(qscaled.shape[0]):
        q = qscaled[s]
        const = consts[s]
        for i in range(cuts[s], cuts[s + 1]):
            row = rows[i]
            acc = np.float32(0.0)
            for j in range(dim):
                acc += q[j] * np.float32(codes[row, j])
            out[i] = acc + const
    return out


@njit(cache=True, nogil=True, fastmath=_VECTORISE_SUMS)
def float_scores_rows(
    vectors: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], query: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Inner product of ``query`` with ``vectors[rows[i]]`` for each i; returns ``float32[m]``."""
    _check_width(vectors, query)
    m = rows.shape[0]
    dim = query.shape[0]
    out = np.empty(m, dtype=np.float32)
    for i in range(m):
        row = rows[i]
        acc = np.float32(0.0)
        for j in range(dim):
            acc += query[j] * vectors[row, j]
        out[i] = acc
    return out


@njit(cache=True, nogil=True)
def _segment_of(bases: npt.NDArray[np.int64], row: int, hint: int) -> int:
    """The segment holding global ``row`` (``bases[s] <= row < bases[s + 1]``): ``hint`` when
    it does (sorted rows stay in one segment for a while), else a binary search."""
    if bases[hint] <= row < bases[hint + 1]:
        return hint
    if row < 0 or row >= bases[bases.shape[0] - 1]:
        raise IndexError("row out of range of the segments")
    return np.searchsorted(bases, row, side="right") - 1


@njit(cache=True, nogil=True, fastmath=_VECTORISE_SUMS)
def int8_scores_rows_segments(
    codes: npt.NDArray[np.int8], rows: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    query: npt.NDArray[np.float32], scales: npt.NDArray[np.float32],
    origins: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """Inner products of ``query`` with the decoded int8 codes of global ``rows`` (any order)
    of a table version whose segment ``s`` holds rows ``bases[s]:bases[s + 1]`` of ``codes`` and
    decodes code ``c`` of dimension ``j`` to ``origins[s, j] + scales[s, j] * c``: for a row of
    segment ``s``, ``sum_j (query * scales[s])[j] * codes[row, j] + origins[s] . query`` (the
    fold in float32, the offset summed in float64, as
    :meth:`vecstore.storage.codes.Quantizer.query_int8` folds one segment). One call for every
    segment, no per-segment setup in the caller; returns ``float32[len(rows)]``."""
    n_seg = bases.shape[0] - 1
    dim = codes.shape[1]
    if (query.shape[0] != dim or scales.shape[0] != n_seg or origins.shape[0] != n_seg
            or scales.shape[1] != dim or origins.shape[1] != dim):
        raise ValueError("query, scales and origins must have one entry per column of codes, "
                         "scales and origins one row per segment")
    qscaled = np.empty((n_seg, dim), dtype=np.float32)
    consts = np.empty(n_seg, dtype=np.float32)
    for s in range(n_seg):
        c = 0.0
        for j in range(dim):
            qscaled[s, j] = query[j] * scales[s, j]
            c += origins[s, j] * np.float64(query[j])
        consts[s] = np.float32(c)
    out = np.empty(rows.shape[0], dtype=np.float32)
    s = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        s = _segment_of(bases, row, s)
        acc = np.float32(0.0)
        for j in range(dim):
            acc += qscaled[s, j] * np.float32(codes[row, j])
        out[i] = acc + consts[s]
    return out


@intrinsic
def _float32_pointer(typingctx, address):  # type: ignore[no-untyped-def]
    """``address`` (an int64) as a ``float32*``, for :func:`numba.carray`."""
    sig = types.CPointer(types.float32)(types.int64)

    def codegen(context, builder, signature, args):  # type: ignore[no-untyped-def]
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return sig, codegen


@njit(cache=True, nogil=True, fastmath=_VECTORISE_SUMS)
def float_scores_rows_segments(
    addresses: npt.NDArray[np.int64], bases: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
    query: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Inner product of ``query`` with the float32 vector of each global row in ``rows`` (any
    order), over segments that stay where they are: segment ``s`` holds rows ``bases[s]:bases[s
    + 1]`` as a C-contiguous ``float32[bases[s + 1] - bases[s], len(query)]`` array starting at
    memory address ``addresses[s]`` (the caller keeps those arrays alive for the call). One call
    for every segment, where ``float_scores_rows`` needs one per segment; returns
    ``float32[len(rows)]``."""
    if addresses.shape[0] != bases.shape[0] - 1:
        raise ValueError("addresses must have one entry per segment (one fewer than bases)")
    dim = query.shape[0]
    out = np.empty(rows.shape[0], dtype=np.float32)
    s = 0
    for i in range(rows.shape[0]):
        row = rows[i]
        s = _segment_of(bases, row, s)
        vectors = numba.carray(_float32_pointer(addresses[s]), (bases[s + 1] - bases[s], dim))
        local = row - bases[s]
        acc = np.float32(0.0)
        for j in range(dim):
            acc += query[j] * vectors[local, j]
        out[i] = acc
    return out


@njit(cache=True, nogil=True)
def _read_segment_rows(fds: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64],
                       bases: npt.NDArray[np.int64], rows: npt.NDArray[np.int64], dim: int
                       ) -> tuple[npt.NDArray[np.float32], int]:
    """The float32 vectors of global ``rows`` read from the segments' files (segment ``s``'s
    ``float32[bases[s + 1] - bases[s], dim]`` in the file open as ``fds[s]`` from byte
    ``offsets[s]``), one ``pread`` a row, into ``float32[len(rows), dim]``; and how many
    leading rows were read whole."""
    if offsets.shape[0] != bases.shape[0] - 1 or fds.shape[0] != offsets.shape[0]:
        raise ValueError("fds and offsets must have one entry per segment (one fewer than bases)")
    n = rows.shape[0]
    row_bytes = dim * 4
    flat = np.empty(n * dim, dtype=np.float32)
    s = 0
    for i in range(n):
        row = rows[i]
        s = _segment_of(bases, row, s)
        at = offsets[s] + (row - bases[s]) * row_bytes
        if _pread(np.intc(fds[s]), flat[i * dim:].ctypes, row_bytes, at) != row_bytes:
            return flat.reshape((n, dim)), i
    return flat.reshape((n, dim)), n


@njit(cache=True, nogil=True)
def float_scores_rows_files(
    fds: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64], query: npt.NDArray[np.float32], out: npt.NDArray[np.float32],
) -> int:
    """:func:`float_scores_rows_segments` with each row read from its segment's file rather
    than through a memory map: segment ``s``'s vectors lie in the file open as ``fds[s]`` from
    byte ``offsets[s]``, a C-contiguous ``float32[bases[s + 1] - bases[s], len(query)]``. One
    ``pread`` a row (~1 us from the page cache), and nothing of the file stays mapped in the
    process (vecstore.storage.pages); the rows read are scored by
    :func:`float_scores_rows_segments` itself (the same sums, bit for bit). Scores go to
    ``out`` (``float32[len(rows)]``); returns how many leading rows were read whole
    (``len(rows)``, or where a read came short or failed: ``out`` is then not written)."""
    if out.shape[0] != rows.shape[0]:
        raise ValueError("out must hold one score per row")
    n = rows.shape[0]
    block, read = _read_segment_rows(fds, offsets, bases, rows, query.shape[0])
    if read < n:
        return read
    where = np.empty(1, dtype=np.int64)
    where[0] = block.ctypes.data
    out[:] = float_scores_rows_segments(where, np.array([0, n], dtype=np.int64),
                                        np.arange(n, dtype=np.int64), query)
    # ``block`` used after the call, so that it is freed after it (the call reads it through
    # its address; see rescore_labels_batch)
    return block.shape[0]


@njit(cache=True, nogil=True)
def _ranks_before(score_a: float, idx_a: int, score_b: float, idx_b: int) -> bool:
    """Whether (score_a, idx_a) comes first: higher score, NaN last, equal scores by lower index."""
    if score_a > score_b:
        return True
    if score_a < score_b:
        return False
    if score_a == score_b:
        return idx_a < idx_b
    if score_a != score_a:  # a is NaN: it only beats another NaN with a higher index
        return score_b != score_b and idx_a < idx_b
    return True  # b is NaN, a is not


@njit(cache=True, nogil=True)
def _sift_down(heap: npt.NDArray[np.int64], size: int, scores: npt.NDArray[np.float32]) -> None:
    """Restore the heap property from the root; the root holds the worst-ranked index."""
    pos = 0
    item = heap[0]
    while True:
        child = 2 * pos + 1
        if child >= size:
            break
        other = child + 1
        if other < size and _ranks_before(scores[heap[child]], heap[child], scores[heap[other]], heap[other]):
            child = other
        if not _ranks_before(scores[item], item, scores[heap[child]], heap[child]):
            break
        heap[pos] = heap[child]
        pos = child
    heap[pos] = item


@njit(cache=True, nogil=True)
def _sift_up(heap: npt.NDArray[np.int64], pos: int, scores: npt.NDArray[np.float32]) -> None:
    """Move ``heap[pos]`` up while it ranks worse than its parent."""
    item = heap[pos]
    while pos > 0:
        parent = (pos - 1) // 2
        if not _ranks_before(scores[heap[parent]], heap[parent], scores[item], item):
            break
        heap[pos] = heap[parent]
        pos = parent
    heap[pos] = item


_PARTITION_K = 256
"""Results from which :func:`topk_scores` partitions rather than keeps a heap (measured: at 40
of 5,120 the heap took 11 us, a partition 41; at 1,280 of 5,120 about even; at 1,600 of 12,800
the heap 465 us, a partition 101)."""


@njit(cache=True, nogil=True)
def _topk_by_partition(scores: npt.NDArray[np.float32], kk: int) -> npt.NDArray[np.int64]:
    """:func:`topk_scores` for ``0 < kk < m`` and no NaN: every score above the kk-th best,
    then those equal to it in index order until kk, sorted by (score, index)."""
    m = scores.shape[0]
    neg = np.empty(m, dtype=np.float32)
    for i in range(m):
        neg[i] = -scores[i]
    kth = np.partition(neg, kk - 1)[kk - 1]
    ties = kk
    for i in range(m):
        if neg[i] < kth:
            ties -= 1
    picked = np.empty(kk, dtype=np.int64)
    c = 0
    for i in range(m):
        if neg[i] < kth or (neg[i] == kth and ties > 0):
            if neg[i] == kth:
                ties -= 1
            picked[c] = i
            c += 1
    order = np.argsort(neg[picked], kind="mergesort")  # stable: ties keep index order
    return picked[order]


@njit(cache=True, nogil=True)
def topk_scores(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Indices of the ``min(k, m)`` largest ``scores``, best first.

    Equal scores rank by lower index first; NaN ranks below every number (-inf included).
    A bounded heap keeps the k' best seen so far: O(m log k'), and O(m) when most scores are
    rejected by one comparison against the current worst. From :data:`_PARTITION_K` results
    on (a planner's int8 stage keeping a quarter of thousands) a partition finds the k'-th
    score and a sort orders the k' at or above it: 1,600 of 12,800 in ~0.1 ms, where the heap
    took ~0.45 ms.
    """
    if k < 0:
        raise ValueError("k must be >= 0")
    m = scores.shape[0]
    kk = min(k, m)
    if kk >= _PARTITION_K and kk < m and not np.isnan(scores).any():
        return _topk_by_partition(scores, kk)
    heap = np.empty(kk, dtype=np.int64)
    if kk == 0:
        return heap
    for i in range(kk):
        heap[i] = i
        _sift_up(heap, i, scores)
    for i in range(kk, m):
        # Scanning in index order, a later equal score never displaces an earlier one.
        if _ranks_before(scores[i], i, scores[heap[0]], heap[0]):
            heap[0] = i
            _sift_down(heap, kk, scores)
    # Pop the worst into the last free slot until the heap is empty: best first.
    out = np.empty(kk, dtype=np.int64)
    for size in range(kk, 0, -1):
        out[size - 1] = heap[0]
        heap[0] = heap[size - 1]
        _sift_down(heap, size - 1, scores)
    return out


_MIN_NORM32 = np.float32(2.0 ** -60)  # vecstore.vectors.MIN_NORM: the floor of a stored row's norm


@njit(cache=True, nogil=True, parallel=True)
def two_stage_cosine_batch(
    codes: npt.NDArray[np.int8], candidates: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32], scales: npt.NDArray[np.float32],
    origins: npt.NDArray[np.float64], addresses: npt.NDArray[np.int64],
    norms: npt.NDArray[np.float32], n2: int, k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The int8 and float32 stages of the two-stage cosine scan for every row of ``queries``
    (unit length) over its sorted candidate rows ``candidates[q]``, the queries in parallel:
    the ``n2`` best candidates by :func:`int8_scores_rows_segments` (:func:`topk_scores`'s
    order), sorted, then the ``k`` best of those by :func:`float_scores_rows_segments` over the
    rows' norms (floored at ``MIN_NORM``). Returns ``(rows int64[q, k'], scores float32[q, k'])``
    best first, ``k' = min(k, n2, candidates per query)``."""
    m, per_query = candidates.shape[0], candidates.shape[1]
    keep_n = min(n2, per_query)
    kk = min(k, keep_n)
    out_rows = np.empty((m, kk), dtype=np.int64)
    out_scores = np.empty((m, kk), dtype=np.float32)
    for q in prange(m):
        rows1 = candidates[q]
        approx = int8_scores_rows_segments(codes, rows1, bases, queries[q], scales, origins)
        keep = np.sort(rows1[topk_scores(approx, keep_n)])
        dots = float_scores_rows_segments(addresses, bases, keep, queries[q])
        exact = np.empty(keep.shape[0], dtype=np.float32)
        for i in range(keep.shape[0]):
            exact[i] = dots[i] / max(norms[keep[i]], _MIN_NORM32)
        order = topk_scores(exact, kk)
        for i in range(kk):
            out_rows[q, i] = keep[order[i]]
            out_scores[q, i] = exact[order[i]]
    return out_rows, out_scores


@njit(cache=True, nogil=True)
def sign_bits_segments(query: npt.NDArray[np.float32], centers: npt.NDArray[np.float32],
                       words: int) -> npt.NDArray[np.uint64]:
    """``query``'s sign code under each segment's calibration, ``uint64[segments, words]``: bit
    ``j`` (word ``j // 64``, bit ``j % 64``) set where ``query[j] > centers[s, j]``, the bits past
    the dimensions zero (``np.packbits(query > centers, bitorder="little")`` viewed as uint64)."""
    n_seg, dim = centers.shape
    if query.shape[0] != dim or words * 64 < dim:
        raise ValueError("query must have one entry per column of centers, words enough bits")
    bits = np.zeros((n_seg, words), dtype=np.uint64)
    for s in range(n_seg):
        for j in range(dim):
            if query[j] > centers[s, j]:
                bits[s, j >> 6] |= np.uint64(1) << np.uint64(j & 63)
    return bits


@njit(cache=True, nogil=True)
def two_stage_cosine_scan(
    query: npt.NDArray[np.float32], centers: npt.NDArray[np.float32],
    binary: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64], every_row: bool,
    codes: npt.NDArray[np.int8], bases: npt.NDArray[np.int64], scales: npt.NDArray[np.float32],
    origins: npt.NDArray[np.float64], addresses: npt.NDArray[np.int64],
    norms: npt.NDArray[np.float32], n1: int, n2: int, k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The whole two-stage cosine scan of one unit-length ``query`` in one call: its sign code
    under each segment's calibration (:func:`sign_bits_segments`), the ``n1`` rows nearest in
    Hamming distance among every row (``every_row``) or the sorted global ``rows``
    (:func:`hamming_topk_ranges` / :func:`hamming_topk_rows_ranges`, each segment against its
    own code), sorted; then :func:`two_stage_cosine_batch`'s stages for that one query: the
    ``min(n2, n1')`` best by int8 score, sorted, and the ``k`` best of those by exact score.
    Returns ``(rows int64[k'], scores float32[k'])``, best first."""
    bits = sign_bits_segments(query, centers, binary.shape[1])
    if every_row:
        cand, _ = hamming_topk_ranges(binary, bases, bits, n1)
    else:
        cand, _ = hamming_topk_rows_ranges(binary, rows, np.searchsorted(rows, bases), bits, n1)
    rows1 = np.sort(cand)
    keep_n = min(n2, rows1.shape[0])
    approx = int8_scores_rows_segments(codes, rows1, bases, query, scales, origins)
    keep = np.sort(rows1[topk_scores(approx, keep_n)])
    dots = float_scores_rows_segments(addresses, bases, keep, query)
    exact = np.empty(keep.shape[0], dtype=np.float32)
    for i in range(keep.shape[0]):
        exact[i] = dots[i] / max(norms[keep[i]], _MIN_NORM32)
    order = topk_scores(exact, min(k, keep_n))
    return keep[order], exact[order]


@njit(cache=True, nogil=True)
def rescore_labels_batch(
    labels: npt.NDArray[np.int64], label_rows: npt.NDArray[np.int64], allow: npt.NDArray[np.bool_],
    queries: npt.NDArray[np.float32], q_norm2: npt.NDArray[np.float64],
    addresses: npt.NDArray[np.int64], fds: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    norms: npt.NDArray[np.float32], metric: int, k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64],
           npt.NDArray[np.int64]]:
    """The exact rescoring of an index's candidates for every row of ``queries``, one query
    after another on the calling thread (outside the GIL: a batch split over the caller's
    threads runs one call per part at once, which a parallel kernel must not). Query ``q``'s
    labels ``labels[q]`` (-1: none) are kept where ``allow[label]`` (which flags only labels
    whose row is not -1; with an empty ``allow``: where ``label_rows[label] >= 0``), mapped to
    global rows by ``label_rows``, deduplicated and sorted, scored by
    :func:`float_scores_rows_segments` with ``queries[q]`` (with ``fds`` not empty, the rows
    first read from the files open as ``fds``, ``addresses`` being the segments' offsets in
    them, as :func:`float_scores_rows_files` reads them) and turned into the metric's score
    (``metric`` as in ``reference.METRICS``: cosine divides by the row's norm floored at
    ``MIN_NORM``, the query being unit length; dot keeps the inner product; l2 is ``2 dot -
    norm^2 - q_norm2[q]``, in float32), and the ``k`` best kept in :func:`topk_scores`'s order.
    Returns ``(rows int64[q, k], scores float32[q, k], kept int64[q], scored int64[q])``: rows
    best first, padded with -1 (scores with -inf) beyond ``min(k, scored[q])``; ``kept[q]``
    labels passed the filter, ``scored[q]`` distinct rows were scored (-1 where a file read
    came short: the queries after it are not scored)."""
    m, width = labels.shape[0], labels.shape[1]
    out_rows = np.full((m, k), -1, dtype=np.int64)
    out_scores = np.full((m, k), -np.inf, dtype=np.float32)
    kept = np.zeros(m, dtype=np.int64)
    scored = np.zeros(m, dtype=np.int64)
    masked = allow.shape[0] > 0
    buffer = np.empty(width, dtype=np.int64)
    from_files = fds.shape[0] > 0
    block_at = np.empty(1, dtype=np.int64)  # where a query's rows read from the files lie
    block_bases = np.zeros(2, dtype=np.int64)
    no_block = np.empty((0, queries.shape[1]), dtype=np.float32)
    for q in range(m):
        n = 0
        for j in range(width):
            label = labels[q, j]
            if label < 0:
                continue
            if masked:
                if not allow[label]:
                    continue
            elif label_rows[label] < 0:
                continue
            buffer[n] = label_rows[label]
            n += 1
        kept[q] = n
        rows = np.unique(buffer[:n])
        scored[q] = rows.shape[0]
        # one call of the scoring kernel for both sources: rows read from the files are scored
        # by the same instructions as rows read from memory (bit for bit)
        src, src_bases, src_rows = addresses, bases, rows
        block = no_block
        if from_files:
            block, read = _read_segment_rows(fds, addresses, bases, rows, queries.shape[1])
            if read < rows.shape[0]:
                scored[q] = -1
                return out_rows, out_scores, kept, scored
            block_at[0] = block.ctypes.data
            block_bases[1] = rows.shape[0]
            src, src_bases, src_rows = block_at, block_bases, np.arange(rows.shape[0])
        dots = float_scores_rows_segments(src, src_bases, src_rows, queries[q])
        if block.shape[0] != (rows.shape[0] if from_files else 0):
            # never true: ``block`` used after the call, so that it is freed after it (Numba
            # frees an array after its last use, and the call reads it through its address:
            # freed before, another thread's allocation overwrote the rows)
            raise AssertionError("rows read")
        exact = np.empty(rows.shape[0], dtype=np.float32)
        for i in range(rows.shape[0]):
            if metric == 0:
                exact[i] = dots[i] / max(norms[rows[i]], _MIN_NORM32)
            elif metric == 2:
                norm = norms[rows[i]]
                exact[i] = (np.float32(2.0) * dots[i] - norm * norm) - np.float32(q_norm2[q])
            else:
                exact[i] = dots[i]
        order = topk_scores(exact, k)
        for i in range(order.shape[0]):
            out_rows[q, i] = rows[order[i]]
            out_scores[q, i] = exact[order[i]]
    return out_rows, out_scores, kept, scored


def warm_up(only: str | None = None) -> None:
    """Load (or compile) every kernel for the argument types vecstore passes: codes, vectors and
    norms memory-mapped (read-only), row lists read-only (cached filter results) or not.
    ``only``: the kernel of that name alone (the loader loads a kernel when it is first asked
    for, so that a process keeps in memory only the kernels its queries run)."""
    def w(kernel: Callable[..., object], *args: object) -> None:
        if only is None or kernel.__name__ == only:
            kernel(*args)

    codes = np.zeros((4, 6), dtype=np.uint64)
    codes.flags.writeable = False
    query = np.zeros(6, dtype=np.uint64)
    int8 = np.zeros((4, 8), dtype=np.int8)
    int8.flags.writeable = False
    vectors = np.zeros((4, 8), dtype=np.float32)
    vectors.flags.writeable = False
    q = np.zeros(8, dtype=np.float32)
    for writeable in (True, False):
        rows = np.arange(2, dtype=np.int64)
        rows.flags.writeable = writeable
        w(hamming_topk_rows, codes, rows, query, 1)
        w(hamming_topk_rows_ranges, codes, rows, np.array([0, 1, 2], dtype=np.int64),
                                 np.zeros((2, 6), dtype=np.uint64), 1)
        w(int8_scores_rows, int8, rows, q)
        w(int8_scores_rows_ranges, int8, rows, np.array([0, 1, 2], dtype=np.int64),
                                np.zeros((2, 8), dtype=np.float32), np.zeros(2, dtype=np.float32))
        w(float_scores_rows, vectors, rows, q)
    w(hamming_topk, codes, query, 1)
    w(hamming_topk_ranges, codes, np.array([0, 2, 4], dtype=np.int64), np.zeros((2, 6), dtype=np.uint64), 1)
    w(hamming_topk_batch, codes, np.zeros((2, 6), dtype=np.uint64), 1)
    bases = np.array([0, 2, 4], dtype=np.int64)
    for writeable in (True, False):
        rows = np.arange(3, dtype=np.int64)
        rows.flags.writeable = writeable
        w(hamming_topk_batch_ranges, codes, rows, np.array([0, 2, 3], dtype=np.int64),
                                  np.zeros((2, 2, 6), dtype=np.uint64), 1)
        w(int8_scores_rows_segments, int8, rows, bases, q, np.ones((2, 8), dtype=np.float32),
                                  np.zeros((2, 8), dtype=np.float64))
        w(float_scores_rows_segments, np.array([vectors.ctypes.data, vectors[2:].ctypes.data],
                                            dtype=np.int64), bases, rows, q)
    w(hamming_topk_batch_ranges, codes, None, bases, np.zeros((2, 2, 6), dtype=np.uint64), 1)
    w(topk_scores, np.zeros(4, dtype=np.float32), 1)
    w(sign_scores_rows, codes, np.arange(2, dtype=np.int64), np.zeros((48, 256), dtype=np.float32))
    w(hamming_topk_spans, codes, np.array([0, 2], dtype=np.int64), np.array([1, 4], dtype=np.int64),
                       query, 1)
    for label_type in (np.int32, np.int64):  # an ivf-binary index's labels (read-only, as loaded)
        labels = np.arange(4, dtype=label_type)
        labels.flags.writeable = False
        for allow_writeable in (True, False):  # the view's live labels; a filter's
            allow = np.ones(4, dtype=np.bool_)
            allow.flags.writeable = allow_writeable
            w(hamming_topk_spans_allowed, codes, np.array([0, 2], dtype=np.int64),
                                       np.array([1, 4], dtype=np.int64), labels, allow, query, 1)
    w(read_rows, -1, 0, 1, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.uint8))
    w(float_scores_rows_files, np.full(2, -1, dtype=np.int64), np.zeros(2, dtype=np.int64), bases,
      np.zeros(0, dtype=np.int64), np.zeros(8, dtype=np.float32), np.zeros(0, dtype=np.float32))
    for writeable in (True, False):
        cand = np.array([[0, 1], [2, 3]], dtype=np.int64)
        cand.flags.writeable = writeable
        for norms_writeable in (True, False):  # several segments' norms; one segment's own
            norms = np.ones(4, dtype=np.float32)
            norms.flags.writeable = norms_writeable
            w(two_stage_cosine_batch, int8, cand, bases, np.zeros((2, 8), dtype=np.float32),
                                   np.ones((2, 8), dtype=np.float32), np.zeros((2, 8), dtype=np.float64),
                                   np.array([vectors.ctypes.data, vectors[2:].ctypes.data], dtype=np.int64),
                                   norms, 2, 1)
    w(sign_bits_segments, q, np.zeros((2, 8), dtype=np.float32), 1)
    addresses = np.array([vectors.ctypes.data, vectors[2:].ctypes.data], dtype=np.int64)
    binary = np.zeros((4, 1), dtype=np.uint64)  # 8 dimensions: one word
    binary.flags.writeable = False
    for rows_writeable in (True, False):  # every row / live rows; a filter's rows
        rows = np.arange(3, dtype=np.int64)
        rows.flags.writeable = rows_writeable
        for norms_writeable in (True, False):  # several segments' norms; one segment's own
            norms = np.ones(4, dtype=np.float32)
            norms.flags.writeable = norms_writeable
            w(two_stage_cosine_scan, q, np.zeros((2, 8), dtype=np.float32), binary, rows, False,
                                  int8, bases, np.ones((2, 8), dtype=np.float32),
                                  np.zeros((2, 8), dtype=np.float64), addresses, norms, 2, 2, 1)
    filter_allow = np.ones(4, dtype=np.bool_)
    filter_allow.flags.writeable = False  # a filter's (read-only); a view's live labels are not
    for allow in (np.zeros(0, dtype=np.bool_), np.ones(4, dtype=np.bool_), filter_allow):
        for norms_writeable in (True, False):  # several segments' norms; one segment's own
            norms = np.ones(4, dtype=np.float32)
            norms.flags.writeable = norms_writeable
            w(rescore_labels_batch, np.array([[0, -1]], dtype=np.int64), np.arange(4, dtype=np.int64), allow,
                                 np.zeros((1, 8), dtype=np.float32), np.zeros(1, dtype=np.float64),
                                 np.array([vectors.ctypes.data, vectors[2:].ctypes.data], dtype=np.int64),
                                 np.zeros(0, dtype=np.int64), bases, norms, 0, 1)
