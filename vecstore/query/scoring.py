"""Scoring one query against a table version: sign bits, int8 and float32 scores, top-k.

Used by the scan (:mod:`.scan`) and by the index strategies (:mod:`.indexed`), which rescore
an index's candidates with the same functions so that results from both merge cleanly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from .._native import loader
from ..config import Metric
from ..storage.codes import binary_bytes
from ..storage.snapshot import Snapshot
from ..vectors import MIN_NORM

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

def kernels() -> ModuleType:
    """The scan kernels: Numba's once loaded, the NumPy twins until then (loading starts in the
    background on first use; see ``vecstore._native.loader``)."""
    return loader.get("kernels")


class Scorer:
    """Per-metric scoring of one query against a snapshot; scores are higher-is-better
    (cosine similarity, inner product, negative squared L2 distance).

    Queries and rows have norms in the range of :mod:`vecstore.vectors`, which keeps every
    float32 sum finite here: cosine scores a unit-length query and divides by the row's norm (so
    neither a tiny nor a huge query leaves float32's normal range), and the int8 stage scores
    the unit-length query and scales by the query's norm afterwards (so the sums stay near the
    row's norm, however wide the segment's calibration ranges add up to)."""

    def __init__(self, snap: Snapshot, query: F32, column: str = "vector") -> None:
        self.snap = snap
        # a multi-vector table's further column: its own arrays and calibration (None: "vector")
        self.col = None if column == "vector" else snap.column(column)
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
        """The query's sign code under segment ``s``'s calibration."""
        if s not in self._bits:
            qz = self.snap.segments[s].quantizer if self.col is None else self.col.quantizers[s]
            self._bits[s] = qz.encode_binary(self.q_codes[None, :])[0].view(np.uint64)
        return self._bits[s]

    def all_bits(self) -> npt.NDArray[np.uint64]:
        """The query's sign code under each segment's calibration, ``uint64[segments, words]``
        (the primary vector column), in one pass: what :attr:`Snapshot.binary_all` is scanned
        with."""
        snap = self.snap
        bits = np.packbits(self.q_codes[None, :] > snap.centers, axis=1, bitorder="little")
        width = binary_bytes(snap.manifest.config.dim)
        if bits.shape[1] < width:
            bits = np.pad(bits, ((0, 0), (0, width - bits.shape[1])))
        return np.ascontiguousarray(bits).view(np.uint64)

    def binary(self, s: int) -> npt.NDArray[np.uint64]:
        """Segment ``s``'s sign codes of the scored vector column."""
        return self.snap.binary[s] if self.col is None else self.col.binary[s]

    def int8(self, s: int, local: I64) -> F32:
        """Approximate scores of segment ``s``'s rows ``local`` from their int8 codes."""
        col = self.col
        qz = self.snap.segments[s].quantizer if col is None else col.quantizers[s]
        qscaled, const = qz.query_int8(self.q_unit)
        codes = self.snap.int8[s] if col is None else col.int8[s]
        if self.snap.pages.on_disk:  # the rows read from the file, not through its map
            codes, local = self.snap.pages.gather(codes, local), np.arange(local.size)
        unit_dots = kernels().int8_scores_rows(codes, local, qscaled) + np.float32(const)
        if self.metric is Metric.COSINE:
            return unit_dots.astype(np.float32, copy=False)
        dots = unit_dots * np.float32(self.q_norm)
        if self.metric is Metric.L2:
            norms = (self.snap.norms[s] if col is None else col.norms[s])[local]
            return (2.0 * dots - norms * norms - self.q_norm2).astype(np.float32)
        return dots.astype(np.float32, copy=False)

    def int8_rows(self, rows: I64) -> F32:
        """int8 scores of global ``rows`` (any order), in that order."""
        # one call, less Python than int8(); not for a table read from disk (int8_all would
        # copy all its codes into memory)
        if self.col is None and not self.snap.pages.on_disk:
            return self._int8_all_segments(rows)
        if len(self.snap.segments) == 1:
            return self.int8(0, rows)
        return self._per_segment(rows, self.int8)

    def _per_segment(self, rows: I64, score: Callable[[int, I64], F32]) -> F32:
        """``score(segment, local rows)`` of global ``rows`` (any order), in that order."""
        out = np.empty(rows.size, dtype=np.float32)
        offset = 0
        for s, local in self.snap.split(rows):
            out[offset:offset + local.size] = score(s, local)
            offset += local.size
        if not _non_decreasing(rows):  # split grouped them by segment: back to rows' order
            order = np.argsort(np.searchsorted(self.snap.bases, rows, side="right"), kind="stable")
            unsorted = np.empty_like(out)
            unsorted[order] = out
            out = unsorted
        return out

    def _int8_all_segments(self, rows: I64) -> F32:
        """:meth:`int8_rows` over every segment (one or many) in one kernel call, which folds each
        segment's calibration into the query itself and finds each row's segment: no
        per-segment Python, no per-query setup here (that setup cost ~11 of ~33 µs for 320
        rows over three segments)."""
        snap = self.snap
        unit_dots = kernels().int8_scores_rows_segments(snap.int8_all, rows, snap.bases, self.q_unit,
                                                        snap.int8_scales, snap.int8_origins)
        if self.metric is Metric.COSINE:
            return unit_dots
        dots = unit_dots * np.float32(self.q_norm)
        if self.metric is Metric.L2:
            norms = snap.norms_all[rows]
            return (2.0 * dots - norms * norms - self.q_norm2).astype(np.float32)
        return dots

    def exact_rows(self, rows: I64, from_files: bool = False) -> F32:
        """Exact float32 scores of global ``rows`` (any order), in that order: one row-gather
        kernel call over every segment (their vectors stay where they are, memory-mapped; with
        ``from_files``, an index's few candidates, read from the segments' files with
        ``pread``: :attr:`~.Snapshot.vector_files`), the metric's arithmetic once over all of
        them. Scores agree with :meth:`exact`'s up to float32 rounding (the kernels add in their
        own order), and bit for bit between the two reads; exact search (``.exact()``) keeps
        :meth:`exact`."""
        snap = self.snap
        q = self.q_unit if self.metric is Metric.COSINE else self.q_raw
        kern = kernels()
        addresses = snap.vector_addresses
        files = snap.vector_files if from_files and addresses is not None else None
        if files is not None:
            dots = np.empty(rows.size, dtype=np.float32)
            if kern.float_scores_rows_files(files[0], files[1], snap.bases, rows, q, dots) < rows.size:
                raise snap.vectors_unreadable()
        elif addresses is not None and not snap.pages.on_disk:
            dots = kern.float_scores_rows_segments(addresses, snap.bases, rows, q)
        else:  # a segment's vectors not one C-contiguous float32 array, or read from disk

            def segment_dots(s: int, local: I64) -> F32:
                vectors = snap.vectors[s]
                if snap.pages.on_disk:  # the rows read from the file, not through its map
                    vectors, local = snap.pages.gather(vectors, local), np.arange(local.size)
                return kern.float_scores_rows(vectors, local, q)

            dots = self._per_segment(rows, segment_dots)
        norms = snap.norms_all[rows]
        if self.metric is Metric.COSINE:
            return (dots / np.maximum(norms, np.float32(MIN_NORM))).astype(np.float32)
        if self.metric is Metric.L2:
            return (2.0 * dots - norms * norms - self.q_norm2).astype(np.float32)
        return dots

    def exact(self, s: int, local: I64 | None) -> F32:
        """Exact float32 scores of segment ``s``'s rows ``local`` (all rows when None)."""
        col = self.col
        vectors = self.snap.vectors[s] if col is None else col.vectors[s]
        all_norms = self.snap.norms[s] if col is None else col.norms[s]
        q = self.q_unit if self.metric is Metric.COSINE else self.q_raw
        if local is None:
            dots = vectors @ q
            norms = all_norms
        else:
            norms = all_norms[local]
            if self.snap.pages.on_disk:  # the rows read from the file, not through its map
                vectors, local = self.snap.pages.gather(vectors, local), np.arange(local.size)
            dots = kernels().float_scores_rows(vectors, local, q)
        if self.metric is Metric.COSINE:
            # Stored norms are >= MIN_NORM; the floor only keeps a store written before that
            # check (a tiny row whose float32 norm underflowed to 0) from dividing by zero.
            return (dots / np.maximum(norms, np.float32(MIN_NORM))).astype(np.float32)
        if self.metric is Metric.L2:
            return (2.0 * dots - norms * norms - self.q_norm2).astype(np.float32)
        return dots.astype(np.float32, copy=False)


def scoring_queries(metric: Metric, queries: F32) -> tuple[F32, npt.NDArray[np.float64]]:
    """What :meth:`Scorer.exact_rows` scores each row of ``queries`` (``[n, dim]``) with (the
    unit-length query under cosine, the query itself otherwise) and its squared norm, computed
    as each query's :class:`Scorer` computes them, bit for bit, so that a batch's rescoring
    ranks as each query's own does (the squared norm by ``np.dot`` per query: ``einsum`` over
    the batch may round differently)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    q64 = q.astype(np.float64)
    if q.shape[0] == 1:  # one query (the usual case), in a few microseconds less
        n2 = float(np.dot(q64[0], q64[0]))
        if metric is not Metric.COSINE:
            return q, np.array([n2])
        q64 /= math.sqrt(n2) if n2 > 0 else 1.0
        return q64.astype(np.float32), np.array([n2])
    norm2 = np.array([np.dot(row, row) for row in q64], dtype=np.float64)
    if metric is not Metric.COSINE:
        return q, norm2
    norm = np.sqrt(norm2)
    norm[norm == 0] = 1.0  # a zero query stays as it is, as in the Scorer
    q64 /= norm[:, None]
    return q64.astype(np.float32), norm2


def _non_decreasing(rows: I64) -> bool:
    return rows.size < 2 or bool((rows[1:] >= rows[:-1]).all())


def top_k(scores: F32, k: int) -> I64:
    """Positions of the ``k`` best scores, best first (ties: lower position first; NaN last):
    the kernel's bounded heap, 2-5 us for ten of up to 1,024 scores where NumPy's stable sort
    of them took 3-18 us."""
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if not scores.flags.writeable:  # the argument type warm_up loads
        scores = scores.copy()
    return kernels().topk_scores(scores, k)


Parts = list[tuple[int, "I64 | None"]]


def segment_parts(snap: Snapshot, rows: I64 | None) -> Parts:
    """(segment, local rows or None for 'every row of the segment') covering ``rows`` (every
    live row when None)."""
    if rows is None:
        out: Parts = []
        for s, seg in enumerate(snap.segments):
            if seg.deleted.size == 0:
                out.append((s, None))
            elif seg.deleted.size < seg.rows:
                out.append((s, np.flatnonzero(seg.live_mask()).astype(np.int64)))
        return out
    return list(snap.split(rows))


def exact_top(scorer: Any, parts: Parts, k: int) -> tuple[I64, F32, int]:
    """The ``k`` best of ``parts`` by exact score: (global rows, scores, rows scored)."""
    snap = scorer.snap
    chosen = [(s, cand) for s, cand in parts if cand is not None]
    if chosen and len(chosen) == len(parts):
        # rescoring candidates (few rows): every segment's scores into one array, one top-k
        total = sum(cand.size for _, cand in chosen)
        rows = np.empty(total, dtype=np.int64)
        scores = np.empty(total, dtype=np.float32)
        at = 0
        for s, cand in chosen:
            scores[at:at + cand.size] = scorer.exact(s, cand)
            rows[at:at + cand.size] = cand + snap.bases[s]
            at += cand.size
        order = top_k(scores, k)
        return rows[order], scores[order], total
    all_rows, all_scores = [], []
    scanned = 0
    for s, local in parts:
        sc = scorer.exact(s, local)
        rows = (np.arange(snap.segments[s].rows, dtype=np.int64) if local is None else local) + snap.bases[s]
        scanned += snap.segments[s].rows if local is None else local.size
        # keep each segment's best k only: the global best k are among them
        if sc.size > k:
            keep = top_k(sc, k)
            rows, sc = rows[keep], sc[keep]
        all_rows.append(rows)
        all_scores.append(sc)
    if not all_rows:
        return np.empty(0, np.int64), np.empty(0, np.float32), 0
    rows = np.concatenate(all_rows)
    scores = np.concatenate(all_scores).astype(np.float32)
    order = top_k(scores, k)
    return rows[order], scores[order], scanned


def best_exact(scorer: Any, rows: I64, k: int, from_files: bool = False) -> tuple[I64, F32]:
    """The ``k`` best of sorted global ``rows`` by exact score (ties: lower row first): one
    score array over every segment for a plain query (one segment or many: the same path, so
    that a table's segment count does not change its cost; ``from_files``: see
    :meth:`Scorer.exact_rows`), segment by segment otherwise."""
    if isinstance(scorer, Scorer) and scorer.col is None and scorer.snap.segments:
        scores = scorer.exact_rows(rows, from_files)
        order = top_k(scores, k)
        return rows[order], scores[order]
    found, scores, _ = exact_top(scorer, segment_parts(scorer.snap, rows), k)
    return found, scores


def rescore_exact(scorer: Any, rows: I64, k: int, from_files: bool = False) -> tuple[I64, F32]:
    """The ``k`` best of global ``rows`` by exact score (``from_files``: an index's candidates,
    see :meth:`Scorer.exact_rows`)."""
    return best_exact(scorer, np.sort(rows), k, from_files)
