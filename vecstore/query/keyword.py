"""Keyword ranking: BM25 over a table version's postings, with whole-table live statistics.

Each segment stores its own postings (term frequencies and row lengths, see
:mod:`vecstore.storage.postings`); the statistics BM25 needs beyond them are computed here, for
the version the query reads:

- ``N``: the live rows of the whole table (every segment, tombstones excluded);
- ``df(t)``: the live rows holding term ``t``, counted over every segment's postings;
- ``avgdl``: the mean length (in terms) of the live rows.

So a query scores exactly as BM25 over the version's live rows rebuilt from scratch would,
whatever segments, merges and deletions produced the version. The scoring is Lucene's BM25
(Lucene >= 8, and bm25s's ``method="lucene"``)::

    idf(t) = ln(1 + (N - df + 0.5) / (df + 0.5))
    score(d) = sum over query terms t (with repeats) of idf(t) * tf / (tf + k1 * (1 - b + b * dl / avgdl))

with ``k1 = 1.2`` and ``b = 0.75`` (Lucene's and Elasticsearch's defaults).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..storage.postings import Postings
from ..storage.snapshot import Snapshot
from ..text import Analyzer

K1 = 1.2
B = 0.75

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


@dataclass(frozen=True)
class TermStat:
    """One query term as BM25 saw it: how often the query holds it, and its live rows."""

    term: str
    query_count: int
    df: int
    idf: float


@dataclass(frozen=True, eq=False)
class Scored:
    """Every live row holding at least one query term, ascending, with its BM25 score."""

    rows: I64
    scores: F64
    terms: tuple[TermStat, ...]
    seconds: float

    def score_of(self, rows: I64) -> F64:
        """BM25 scores of arbitrary global ``rows`` (0 for rows holding no query term)."""
        out = np.zeros(rows.size, dtype=np.float64)
        if self.rows.size and rows.size:
            pos = np.minimum(np.searchsorted(self.rows, rows), self.rows.size - 1)
            hit = self.rows[pos] == rows
            out[hit] = self.scores[pos[hit]]
        return out

    def restricted(self, allowed: I64 | None) -> Scored:
        """Only the rows among ``allowed`` (sorted global rows; None keeps every row)."""
        if allowed is None:
            return self
        if allowed.size == 0 or self.rows.size == 0:
            return Scored(self.rows[:0], self.scores[:0], self.terms, self.seconds)
        pos = np.minimum(np.searchsorted(allowed, self.rows), allowed.size - 1)
        keep = allowed[pos] == self.rows
        return Scored(self.rows[keep], self.scores[keep], self.terms, self.seconds)

    def describe(self) -> str:
        parts = [f"{t.term}(df={t.df:,}{'' if t.query_count == 1 else f', x{t.query_count}'})"
                 for t in self.terms]
        return "terms: " + (" ".join(parts) if parts else "(none)")


class KeywordView:
    """A table version's postings and live-row statistics, built once per version."""

    def __init__(self, snap: Snapshot) -> None:
        self.snap = snap
        self.analyzer = Analyzer(snap.manifest.config.keyword.language)
        self.postings: list[Postings] = [snap.postings(s) for s in range(len(snap.segments))]
        self.lengths = np.concatenate([p.lengths for p in self.postings]) if self.postings \
            else np.zeros(0, dtype=np.int32)
        self.live_rows = snap.num_rows
        total = int(self.lengths[snap.live_mask].sum(dtype=np.int64)) if snap.has_deletions \
            else int(self.lengths.sum(dtype=np.int64))
        self.total_length = total
        self.avg_length = total / self.live_rows if self.live_rows else 0.0

    def query_terms(self, text: str) -> Counter[str]:
        """The query's terms, analyzed as the stored text was, with their counts."""
        return Counter(self.analyzer.terms(text))

    def score(self, text: str) -> Scored:
        """BM25 of every live row holding a term of ``text``."""
        t = time.perf_counter()
        snap = self.snap
        counts = self.query_terms(text)
        terms = list(counts)
        rows_parts: list[I64] = []
        tf_parts: list[npt.NDArray[np.int32]] = []
        term_parts: list[I64] = []
        for s, p in enumerate(self.postings if terms else ()):
            for j, (local, tf) in enumerate(p.lookup(terms)):
                if local.size:
                    rows_parts.append(local.astype(np.int64) + snap.bases[s])
                    tf_parts.append(tf)
                    term_parts.append(np.full(local.size, j, dtype=np.int64))
        if not rows_parts:
            empty = np.empty(0, dtype=np.int64)
            stats = tuple(TermStat(w, counts[w], 0, 0.0) for w in terms)
            return Scored(empty, np.empty(0), stats, time.perf_counter() - t)
        rows = np.concatenate(rows_parts)
        tf = np.concatenate(tf_parts).astype(np.float64)
        term = np.concatenate(term_parts)
        if snap.has_deletions:
            live = snap.live_mask[rows]
            rows, tf, term = rows[live], tf[live], term[live]
        n = self.live_rows
        df = np.bincount(term, minlength=len(terms))
        idf = np.log1p((n - df + 0.5) / (df + 0.5))
        weight = idf * np.array([counts[w] for w in terms], dtype=np.float64)
        avgdl = self.avg_length if self.avg_length > 0 else 1.0
        contrib = weight[term] * tf / (tf + K1 * (1.0 - B + B * self.lengths[rows] / avgdl))
        scored: I64
        scores: F64
        if len(terms) == 1:  # one term: its rows are distinct and ascending already
            scored, scores = rows, contrib
        elif snap.physical_rows <= 16 * rows.size:  # dense: one pass over the table's rows
            dense = np.bincount(rows, weights=contrib, minlength=snap.physical_rows).astype(
                np.float64, copy=False)
            scored = np.flatnonzero(dense).astype(np.int64)  # every posting adds a score > 0
            scores = dense[scored]
        else:
            scored, inverse = np.unique(rows, return_inverse=True)
            scores = np.bincount(inverse, weights=contrib, minlength=scored.size).astype(np.float64)
        stats = tuple(TermStat(w, counts[w], int(df[j]), float(idf[j]) if df[j] else 0.0)
                      for j, w in enumerate(terms))
        return Scored(scored, scores, stats, time.perf_counter() - t)
