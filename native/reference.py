"""NumPy twins of the kernels in ``kernels``: same names, signatures and results.

These are the readable definitions of what each kernel computes and the oracle the tests compare
the Numba code against. They are also a fallback where Numba cannot run. Integer results (Hamming
distances, positions) agree exactly with ``kernels``; float scores agree up to float32 rounding,
because the two sides add the terms in different orders.

Conventions shared with ``kernels``:

* All arrays are C-contiguous. Binary codes are ``uint64[n, w]`` (``w`` words of 64 bits per row).
* ``rows`` holds int64 positions into the first axis of the code array, each in ``[0, n)``; the
  kernels do not check this (the NumPy twins raise ``IndexError``, the Numba ones read garbage).
* ``k`` must be ``>= 0``; a result holds ``min(k, number of candidates)`` entries.
* Ties are broken by position (or by row value for the ``_rows`` variants), lower first, so results
  are deterministic and the twins agree entry for entry.
"""

from __future__ import annotations

import ctypes
import os

import numpy as np
import numpy.typing as npt

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

# Bits set in each byte value, for NumPy versions without np.bitwise_count (added in 2.0).
_BYTE_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.uint8)


def _popcount_rows(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
    """Number of set bits in each row of a ``uint64[n, w]`` array."""
    if hasattr(np, "bitwise_count"):
        counts = np.bitwise_count(words).sum(axis=1, dtype=np.int32)
    else:  # pragma: no cover - NumPy < 2.0
        as_bytes = words.view(np.uint8).reshape(words.shape[0], -1)
        counts = _BYTE_POPCOUNT[as_bytes].sum(axis=1, dtype=np.int32)
    return np.asarray(counts, dtype=np.int32)


def _check_k(k: int) -> None:
    if k < 0:
        raise ValueError("k must be >= 0")


def _check_width(codes: npt.NDArray[np.generic], query: npt.NDArray[np.generic]) -> None:
    """Raise ValueError unless the query has one entry per column of ``codes``."""
    if query.shape[0] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")


def hamming_distances(codes: npt.NDArray[np.uint64], query: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
    """Hamming distance from ``query`` (``uint64[w]``) to every row of ``codes`` (``uint64[n, w]``).

    Returns ``int32[n]``: the number of differing bits per row.
    """
    _check_width(codes, query)
    return _popcount_rows(codes ^ query)


def hamming_distances_rows(
    codes: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64], query: npt.NDArray[np.uint64]
) -> npt.NDArray[np.int32]:
    """Hamming distance from ``query`` to ``codes[rows[i]]`` for each i; returns ``int32[m]``."""
    _check_width(codes, query)
    return _popcount_rows(codes[rows] ^ query)


def hamming_topk(
    codes: npt.NDArray[np.uint64], query: npt.NDArray[np.uint64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The ``min(k, n)`` rows of ``codes`` nearest to ``query`` in Hamming distance.

    Returns ``(positions int64[k'], distances int32[k'])`` sorted by (distance, position).
    """
    _check_k(k)
    distances = hamming_distances(codes, query)
    order = np.argsort(distances, kind="stable")[:k].astype(np.int64)
    return order, distances[order]


def hamming_topk_rows(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64],
    query: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The ``min(k, m)`` entries of ``rows`` whose codes are nearest to ``query``.

    Returns ``(row values int64[k'], distances int32[k'])`` sorted by (distance, row value);
    ``rows`` need not be sorted.
    """
    _check_k(k)
    distances = hamming_distances_rows(codes, rows, query)
    order = np.lexsort((rows, distances))[:k]
    return rows[order].astype(np.int64), distances[order]


def _check_ranges(count: int, cuts: npt.NDArray[np.int64], codes: npt.NDArray[np.uint64],
                  queries: npt.NDArray[np.uint64]) -> None:
    if queries.shape[1] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    if (cuts.shape[0] != queries.shape[0] + 1 or cuts[0] != 0 or cuts[-1] != count
            or np.any(np.diff(cuts) < 0)):
        raise ValueError("cuts must be non-decreasing, one more than queries, from 0 to the count")


def _range_distances(codes: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64] | None,
                     cuts: npt.NDArray[np.int64], queries: npt.NDArray[np.uint64]) -> npt.NDArray[np.int32]:
    count = codes.shape[0] if rows is None else rows.shape[0]
    distances = np.empty(count, dtype=np.int32)
    for s in range(queries.shape[0]):
        a, b = int(cuts[s]), int(cuts[s + 1])
        part = codes[a:b] if rows is None else codes[rows[a:b]]
        distances[a:b] = _popcount_rows(part ^ queries[s])
    return distances


def hamming_topk_ranges(
    codes: npt.NDArray[np.uint64], cuts: npt.NDArray[np.int64], queries: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """The ``min(k, n)`` rows of ``codes`` nearest in Hamming distance, rows
    ``cuts[s]:cuts[s + 1]`` measured against ``queries[s]`` (``uint64[s, w]``: the segments of
    a table version, each with its own sign calibration; ``cuts`` runs from 0 to ``n``).

    Returns ``(positions int64[k'], distances int32[k'])`` sorted by (distance, position).
    """
    _check_k(k)
    _check_ranges(codes.shape[0], cuts, codes, queries)
    distances = _range_distances(codes, None, cuts, queries)
    order = np.argsort(distances, kind="stable")[:k].astype(np.int64)
    return order, distances[order]


def hamming_topk_rows_ranges(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64],
    cuts: npt.NDArray[np.int64],
    queries: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_rows`` where entries ``cuts[s]:cuts[s + 1]`` of ``rows`` are measured
    against ``queries[s]`` (``cuts`` runs from 0 to ``len(rows)``).

    Returns ``(row values int64[k'], distances int32[k'])`` sorted by (distance, row value).
    """
    _check_k(k)
    _check_ranges(rows.shape[0], cuts, codes, queries)
    distances = _range_distances(codes, rows, cuts, queries)
    order = np.lexsort((rows, distances))[:k]
    return rows[order].astype(np.int64), distances[order]


def hamming_topk_batch(
    codes: npt.NDArray[np.uint64], queries: npt.NDArray[np.uint64], k: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk`` for each row of ``queries`` (``uint64[q, w]``).

    Returns ``(positions int64[q, k'], distances int32[q, k'])`` with ``k' = min(k, n)``.
    """
    _check_k(k)
    if queries.shape[1] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    kk = min(k, codes.shape[0])
    positions = np.empty((queries.shape[0], kk), dtype=np.int64)
    distances = np.empty((queries.shape[0], kk), dtype=np.int32)
    for qi in range(queries.shape[0]):
        positions[qi], distances[qi] = hamming_topk(codes, queries[qi], k)
    return positions, distances


def hamming_topk_batch_ranges(
    codes: npt.NDArray[np.uint64],
    rows: npt.NDArray[np.int64] | None,
    cuts: npt.NDArray[np.int64],
    queries: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_rows_ranges`` for each query of a batch: ``queries`` is
    ``uint64[q, s, w]``, entries ``cuts[s]:cuts[s + 1]`` of ``rows`` (sorted ascending; every
    row of ``codes`` when None) are measured against ``queries[i, s]``.

    Returns ``(row values int64[q, k'], distances int32[q, k'])`` with ``k' = min(k, m)``.
    """
    _check_k(k)
    if queries.shape[2] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    m = codes.shape[0] if rows is None else rows.shape[0]
    if (cuts.shape[0] != queries.shape[1] + 1 or cuts[0] != 0 or cuts[-1] != m
            or np.any(np.diff(cuts) < 0)):
        raise ValueError("cuts must be non-decreasing, one more than segments, from 0 to the count")
    if rows is not None and np.any(np.diff(rows) < 0):
        raise ValueError("rows must be sorted ascending")
    kk = min(k, m)
    ids = np.empty((queries.shape[0], kk), dtype=np.int64)
    distances = np.empty((queries.shape[0], kk), dtype=np.int32)
    for qi in range(queries.shape[0]):
        if rows is None:
            ids[qi], distances[qi] = hamming_topk_ranges(codes, cuts, queries[qi], k)
        else:
            ids[qi], distances[qi] = hamming_topk_rows_ranges(codes, rows, cuts, queries[qi], k)
    return ids, distances


def _span_rows(starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64], n: int) -> npt.NDArray[np.int64]:
    """The positions ``starts[s]:stops[s]`` of every span, in order; the spans must be ascending,
    not overlapping and within ``n``."""
    ok = bool(np.all(stops >= starts) and np.all(starts >= 0) and np.all(stops <= n)
              and np.all(starts[1:] >= stops[:-1]))
    if not ok:
        raise ValueError("spans must be ascending, not overlapping, within the codes")
    spans = zip(starts.tolist(), stops.tolist(), strict=True)
    return np.concatenate([np.arange(a, b, dtype=np.int64) for a, b in spans] or [np.empty(0, np.int64)])


def hamming_topk_spans(
    codes: npt.NDArray[np.uint64], starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64],
    query: npt.NDArray[np.uint64], k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_rows`` over the positions ``starts[s]:stops[s]`` of every span ``s``
    (ascending, not overlapping). Returns ``(positions int64[k'], distances int32[k'])``
    sorted by (distance, position)."""
    rows = _span_rows(starts, stops, codes.shape[0])
    return hamming_topk_rows(codes, rows, query, k)


def hamming_topk_spans_allowed(
    codes: npt.NDArray[np.uint64], starts: npt.NDArray[np.int64], stops: npt.NDArray[np.int64],
    labels: npt.NDArray[np.integer], allow: npt.NDArray[np.bool_], query: npt.NDArray[np.uint64],
    k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int32]]:
    """``hamming_topk_spans`` over the positions ``p`` of the spans with ``allow[labels[p]]``."""
    if labels.shape[0] != codes.shape[0]:
        raise ValueError("labels must have one entry per code")
    rows = _span_rows(starts, stops, codes.shape[0])
    return hamming_topk_rows(codes, rows[allow[labels[rows]]], query, k)


def read_rows(fd: int, base: int, row_bytes: int, rows: npt.NDArray[np.int64],
              out: npt.NDArray[np.uint8]) -> int:
    """Rows ``rows`` of a file's fixed-width table at offset ``base`` (``row_bytes``
    each) into ``out`` (``uint8[len(rows) * row_bytes]``), a run of consecutive rows in one
    ``os.preadv`` each (any order; ascending rows make fewer runs). Returns how many leading
    rows were read whole."""
    n = rows.shape[0]
    if out.shape[0] != n * row_bytes:
        raise ValueError("out must hold len(rows) * row_bytes bytes")
    if n == 0:
        return 0
    dest = memoryview(out)  # type: ignore[arg-type]
    cuts = np.flatnonzero(np.diff(rows) != 1) + 1
    starts = np.concatenate([[0], cuts]).tolist()
    stops = np.concatenate([cuts, [n]]).tolist()
    for a, b, r in zip(starts, stops, rows[starts].tolist(), strict=True):
        want = (b - a) * row_bytes
        try:
            got = os.preadv(fd, [dest[a * row_bytes:b * row_bytes]], base + r * row_bytes)
        except OSError:
            return a
        if got != want:
            return a
    return n


def sign_scores_rows(
    codes: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64], table: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``sum_b table[b, byte b of codes[rows[i]]]`` for each i, in float32; returns
    ``float32[m]``: the query's inner product with each sign code read as 0/1 bits."""
    words = codes.shape[1]
    if table.shape != (8 * words, 256):
        raise ValueError("table must be float32[8 * words, 256]")
    code_bytes = np.ascontiguousarray(codes[rows]).view(np.uint8).reshape(rows.shape[0], 8 * words)
    return table[np.arange(8 * words), code_bytes].sum(axis=1, dtype=np.float32)


def int8_scores_rows(
    codes: npt.NDArray[np.int8], rows: npt.NDArray[np.int64], qscaled: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """``sum_j qscaled[j] * codes[rows[i], j]`` for each i, in float32; returns ``float32[m]``.

    ``qscaled`` is the query already multiplied by the per-dimension dequantization scale, so this
    is the inner product of the query with each dequantized vector (up to a per-query offset).
    """
    _check_width(codes, qscaled)
    return np.asarray(codes[rows].astype(np.float32) @ qscaled, dtype=np.float32)


def int8_scores_rows_ranges(
    codes: npt.NDArray[np.int8], rows: npt.NDArray[np.int64], cuts: npt.NDArray[np.int64],
    qscaled: npt.NDArray[np.float32], consts: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """``int8_scores_rows`` where entries ``cuts[s]:cuts[s + 1]`` of ``rows`` are scored with
    ``qscaled[s]`` (``float32[s, dim]``: the segments of a table version, each with its own
    dequantization scale) plus ``consts[s]`` (``cuts`` runs from 0 to ``len(rows)``); returns
    ``float32[len(rows)]``."""
    if qscaled.shape[1] != codes.shape[1]:
        raise ValueError("query length must equal the number of columns of codes")
    if (cuts.shape[0] != qscaled.shape[0] + 1 or consts.shape[0] != qscaled.shape[0]
            or cuts[0] != 0 or cuts[-1] != rows.shape[0]
            or np.any(np.diff(cuts) < 0)):
        raise ValueError("cuts must be non-decreasing, one more than queries, from 0 to the count")
    out = np.empty(rows.shape[0], dtype=np.float32)
    for s in range(qscaled.shape[0]):
        a, b = int(cuts[s]), int(cuts[s + 1])
        out[a:b] = codes[rows[a:b]].astype(np.float32) @ qscaled[s] + consts[s]
    return out


def float_scores_rows(
    vectors: npt.NDArray[np.float32], rows: npt.NDArray[np.int64], query: npt.NDArray[np.float32]
) -> npt.NDArray[np.float32]:
    """Inner product of ``query`` with ``vectors[rows[i]]`` for each i; returns ``float32[m]``."""
    _check_width(vectors, query)
    return np.asarray(vectors[rows] @ query, dtype=np.float32)


def _unique(values: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``np.unique(values)`` for integers, by a sort: NumPy 2's ``unique`` imports ``numpy.ma``
    (20-40 ms) on its first call, which a fresh process's first query would pay here."""
    out = np.sort(values)
    return out[np.concatenate(([True], out[1:] != out[:-1]))] if out.size else out


def _segments_of(bases: npt.NDArray[np.int64], rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """The segment of each global row (``bases[s] <= row < bases[s + 1]``)."""
    if rows.size and (rows.min() < 0 or rows.max() >= bases[-1]):
        raise IndexError("row out of range of the segments")
    return np.searchsorted(bases, rows, side="right") - 1


def int8_scores_rows_segments(
    codes: npt.NDArray[np.int8], rows: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    query: npt.NDArray[np.float32], scales: npt.NDArray[np.float32],
    origins: npt.NDArray[np.float64],
) -> npt.NDArray[np.float32]:
    """Inner products of ``query`` with the decoded int8 codes of global ``rows`` (any order)
    of a table version whose segment ``s`` holds rows ``bases[s]:bases[s + 1]`` of ``codes`` and
    decodes code ``c`` of dimension ``j`` to ``origins[s, j] + scales[s, j] * c``: for a row of
    segment ``s``, ``(query * scales[s]) . codes[row] + origins[s] . query`` (the offset in
    float64); returns ``float32[len(rows)]``."""
    n_seg, dim = bases.shape[0] - 1, codes.shape[1]
    if (query.shape[0] != dim or scales.shape != (n_seg, dim) or origins.shape != (n_seg, dim)):
        raise ValueError("query, scales and origins must have one entry per column of codes, "
                         "scales and origins one row per segment")
    qscaled = (query * scales).astype(np.float32)
    consts = (origins @ query.astype(np.float64)).astype(np.float32)
    seg = _segments_of(bases, rows)
    dots = np.einsum("ij,ij->i", codes[rows].astype(np.float32), qscaled[seg], dtype=np.float32)
    return np.asarray(dots + consts[seg], dtype=np.float32)


def float_scores_rows_segments(
    addresses: npt.NDArray[np.int64], bases: npt.NDArray[np.int64], rows: npt.NDArray[np.int64],
    query: npt.NDArray[np.float32],
) -> npt.NDArray[np.float32]:
    """Inner product of ``query`` with the float32 vector of each global row in ``rows`` (any
    order): segment ``s`` holds rows ``bases[s]:bases[s + 1]`` as a C-contiguous
    ``float32[bases[s + 1] - bases[s], len(query)]`` array at memory address ``addresses[s]``
    (kept alive by the caller); returns ``float32[len(rows)]``."""
    if addresses.shape[0] != bases.shape[0] - 1:
        raise ValueError("addresses must have one entry per segment (one fewer than bases)")
    dim = query.shape[0]
    seg = _segments_of(bases, rows)
    out = np.empty(rows.shape[0], dtype=np.float32)
    for s in _unique(seg).tolist():
        count = int(bases[s + 1] - bases[s])
        pointer = ctypes.cast(int(addresses[s]), ctypes.POINTER(ctypes.c_float))
        vectors = np.ctypeslib.as_array(pointer, shape=(count, dim))
        at = np.flatnonzero(seg == s)
        out[at] = vectors[rows[at] - bases[s]] @ query
    return out


def float_scores_rows_files(
    fds: npt.NDArray[np.int64], offsets: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    rows: npt.NDArray[np.int64], query: npt.NDArray[np.float32], out: npt.NDArray[np.float32],
) -> int:
    """:func:`float_scores_rows_segments` with segment ``s``'s vectors read from the file open
    as ``fds[s]`` (from byte ``offsets[s]``), a row per ``os.pread``; scores into ``out``.
    Returns how many leading rows were read whole."""
    if offsets.shape[0] != bases.shape[0] - 1 or fds.shape[0] != offsets.shape[0]:
        raise ValueError("fds and offsets must have one entry per segment (one fewer than bases)")
    if out.shape[0] != rows.shape[0]:
        raise ValueError("out must hold one score per row")
    row_bytes = query.shape[0] * 4
    seg = _segments_of(bases, rows)
    for i, (row, s) in enumerate(zip(rows.tolist(), seg.tolist(), strict=True)):
        try:
            data = os.pread(int(fds[s]), row_bytes, int(offsets[s]) + (row - int(bases[s])) * row_bytes)
        except OSError:
            return i
        if len(data) != row_bytes:
            return i
        out[i] = np.frombuffer(data, dtype=np.float32) @ query
    return int(rows.shape[0])


def topk_scores(scores: npt.NDArray[np.float32], k: int) -> npt.NDArray[np.int64]:
    """Indices of the ``min(k, m)`` largest ``scores``, best first.

    Equal scores rank by lower index first; NaN ranks below every number (-inf included).
    """
    _check_k(k)
    # Negating keeps NaN as NaN, which argsort places last; "stable" keeps ties in index order.
    return np.argsort(-scores, kind="stable")[:k].astype(np.int64)


def two_stage_cosine_batch(
    codes: npt.NDArray[np.int8], candidates: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    queries: npt.NDArray[np.float32], scales: npt.NDArray[np.float32],
    origins: npt.NDArray[np.float64], addresses: npt.NDArray[np.int64],
    norms: npt.NDArray[np.float32], n2: int, k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The int8 and float32 stages of the two-stage cosine scan for every row of ``queries``
    (unit length) over its sorted candidate rows ``candidates[q]``: the ``n2`` best by int8
    score, sorted, then the ``k`` best of those by exact score over the rows' norms (floored at
    ``MIN_NORM``). Returns ``(rows int64[q, k'], scores float32[q, k'])``, best first."""
    m, per_query = candidates.shape
    keep_n = min(n2, per_query)
    kk = min(k, keep_n)
    out_rows = np.empty((m, kk), dtype=np.int64)
    out_scores = np.empty((m, kk), dtype=np.float32)
    floor = np.float32(2.0 ** -60)
    for q in range(m):
        rows1 = candidates[q]
        approx = int8_scores_rows_segments(codes, rows1, bases, queries[q], scales, origins)
        keep = np.sort(rows1[topk_scores(approx, keep_n)])
        dots = float_scores_rows_segments(addresses, bases, keep, queries[q])
        exact = (dots / np.maximum(norms[keep], floor)).astype(np.float32)
        order = topk_scores(exact, kk)
        out_rows[q], out_scores[q] = keep[order], exact[order]
    return out_rows, out_scores


def sign_bits_segments(query: npt.NDArray[np.float32], centers: npt.NDArray[np.float32],
                       words: int) -> npt.NDArray[np.uint64]:
    """``query``'s sign code under each segment's calibration, ``uint64[segments, words]``."""
    if query.shape[0] != centers.shape[1] or words * 64 < centers.shape[1]:
        raise ValueError("query must have one entry per column of centers, words enough bits")
    packed = np.packbits(query[None, :] > centers, axis=1, bitorder="little")
    packed = np.pad(packed, ((0, 0), (0, 8 * words - packed.shape[1])))
    return np.ascontiguousarray(packed).view(np.uint64)


def two_stage_cosine_scan(
    query: npt.NDArray[np.float32], centers: npt.NDArray[np.float32],
    binary: npt.NDArray[np.uint64], rows: npt.NDArray[np.int64], every_row: bool,
    codes: npt.NDArray[np.int8], bases: npt.NDArray[np.int64], scales: npt.NDArray[np.float32],
    origins: npt.NDArray[np.float64], addresses: npt.NDArray[np.int64],
    norms: npt.NDArray[np.float32], n1: int, n2: int, k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The whole two-stage cosine scan of one unit-length ``query``: sign codes, the ``n1``
    Hamming-nearest rows (all, or the sorted ``rows``), then :func:`two_stage_cosine_batch`'s
    int8 and float32 stages. Returns ``(rows int64[k'], scores float32[k'])``, best first."""
    bits = sign_bits_segments(query, centers, binary.shape[1])
    if every_row:
        cand, _ = hamming_topk_ranges(binary, bases, bits, n1)
    else:
        cand, _ = hamming_topk_rows_ranges(binary, rows, np.searchsorted(rows, bases), bits, n1)
    rows1 = np.sort(cand)
    if rows1.size == 0:
        return np.empty(0, dtype=np.int64), np.empty(0, dtype=np.float32)
    found, scores = two_stage_cosine_batch(codes, rows1[None, :], bases, query[None, :], scales,
                                           origins, addresses, norms, n2, k)
    return found[0], scores[0]


METRICS = ("cosine", "dot", "l2")
"""The metrics :func:`rescore_labels_batch` scores by: its ``metric`` is a position here."""


def rescore_labels_batch(
    labels: npt.NDArray[np.int64], label_rows: npt.NDArray[np.int64], allow: npt.NDArray[np.bool_],
    queries: npt.NDArray[np.float32], q_norm2: npt.NDArray[np.float64],
    addresses: npt.NDArray[np.int64], fds: npt.NDArray[np.int64], bases: npt.NDArray[np.int64],
    norms: npt.NDArray[np.float32], metric: int, k: int,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32], npt.NDArray[np.int64],
           npt.NDArray[np.int64]]:
    """The exact rescoring of an index's candidates for every row of ``queries``: query ``q``'s
    labels ``labels[q]`` (-1: none) kept where ``allow[label]`` (which flags only labels whose
    row is not -1; with an empty ``allow``: where ``label_rows[label] >= 0``), mapped to global
    rows by ``label_rows``, deduplicated and sorted, scored exactly with ``queries[q]`` (its
    rows read from memory at ``addresses``, or with ``fds`` not empty from those files at the
    offsets ``addresses``: :func:`float_scores_rows_files`) by the
    metric ``METRICS[metric]`` (cosine: the inner product over the row's norm floored at
    ``MIN_NORM``, the query being unit length; dot: the inner product; l2: ``2 dot - norm^2 -
    q_norm2[q]``), the ``k`` best kept (ties: lower row first). Returns ``(rows int64[q, k],
    scores float32[q, k], kept int64[q], scored int64[q])``: rows best first, padded with -1
    (scores with -inf) beyond ``min(k, scored[q])``; ``kept[q]`` labels passed the filter,
    ``scored[q]`` distinct rows were scored (-1 where a file read came short: the queries
    after it are not scored)."""
    m = labels.shape[0]
    out_rows = np.full((m, k), -1, dtype=np.int64)
    out_scores = np.full((m, k), -np.inf, dtype=np.float32)
    kept = np.zeros(m, dtype=np.int64)
    scored = np.zeros(m, dtype=np.int64)
    floor = np.float32(2.0 ** -60)
    for q in range(m):
        found = labels[q][labels[q] >= 0]
        found = found[allow[found]] if allow.size else found[label_rows[found] >= 0]
        kept[q] = found.size
        rows = _unique(label_rows[found])
        scored[q] = rows.size
        if fds.size:
            dots = np.empty(rows.size, dtype=np.float32)
            if float_scores_rows_files(fds, addresses, bases, rows, queries[q], dots) < rows.size:
                scored[q] = -1
                return out_rows, out_scores, kept, scored
        else:
            dots = float_scores_rows_segments(addresses, bases, rows, queries[q])
        if METRICS[metric] == "cosine":
            exact = dots / np.maximum(norms[rows], floor)
        elif METRICS[metric] == "l2":
            exact = 2 * dots - norms[rows] * norms[rows] - np.float32(q_norm2[q])
        else:
            exact = dots
        order = topk_scores(exact.astype(np.float32), k)
        out_rows[q, :order.size] = rows[order]
        out_scores[q, :order.size] = exact[order]
    return out_rows, out_scores, kept, scored


def warm_up(only: str | None = None) -> None:  # noqa: ARG001 - the interface of the Numba modules
    """Nothing to load: the twins are plain NumPy (here for the same interface as the Numba
    modules)."""
