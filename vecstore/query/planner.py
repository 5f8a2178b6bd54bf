"""The planner's decisions: which strategy answers a query, and with how much effort.

Pure functions of counts (rows, matches, k) and :class:`~vecstore.config.PlannerSettings`; the
executor (:mod:`.executor`) runs what they choose with :mod:`.scan` and :mod:`.indexed`.

Without an index, a query scans the matches: exactly when they are few (no more than ``k x
oversample``, the oversample measured on the table or, on a small table never measured, one
that covers every row), else in two stages (sign codes, then int8, then float32; int8 first
for tables of few dimensions). With an index, a filtered query still scans its matches when they are at most
``scan_max_matches`` (the scan's cost grows with the matches, an index's with the table), or,
for a filter keeping at least ``postfilter_min_selectivity`` of the indexed rows (which the
index answers by filtering an unfiltered search, about the cost of an unfiltered query), at most
``postfilter_scan_max_matches``; and always over an index of sign codes (the codes it would
rank are those the scan reads). Otherwise
the index is searched: unfiltered; unfiltered for ``k / selectivity`` candidates filtered
afterwards, when the filter keeps at least ``postfilter_min_selectivity`` of the indexed rows;
or with the filter passed into the search. Whatever the index returns is rescored exactly, and
when it comes back with fewer than ``min(k, matches)`` rows the matches are scanned instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..config import Combine, PlannerSettings
from ..storage.manifest import ScanCalibration
from .results import Strategy

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]

BINARY_KINDS = frozenset({"binary-hnsw", "binary-ivf"})
"""Indexes over sign codes: their candidates are ranked by Hamming distance, so they take
``k x oversample`` of them and rescore, like the scan's binary stage."""


@dataclass(frozen=True, eq=False)
class SearchRequest:
    """One query vector as the strategies see it."""

    query: F32  # (dim,) float32, as given
    k: int
    oversample: int  # resolved: the caller's, or the planner's default for this request
    oversample_set: bool  # whether the caller chose it (.rescore)
    exact: bool
    rows: I64 | None  # sorted global live rows that pass the filter; None = every live row
    filter: str | None = None
    filter_seconds: float = 0.0
    binary_candidates: I64 | None = None  # stage 1 already done by a batch scan: global rows
    binary_seconds: float = 0.0
    combine: Combine | None = None  # how a multi-vector row is scored; None: the table's way

    @property
    def filtered(self) -> bool:
        return self.rows is not None


SCAN_CALIBRATED_ROWS = 5_000
"""Tables from this many rows measure their scan's oversample (:mod:`.calibrate`): when an
index is built, on ``optimize()``, and when writes have brought them to it or grown them by
:data:`SCAN_REMEASURE_GROWTH`."""
SCAN_REMEASURE_GROWTH = 1.5
"""A write that leaves a table with more than this times the rows its scan was measured on
measures it again (until then the measured width grows with the rows: :func:`resolve_oversample`).
On 20,000 random 384-d rows the width measured on 15,000 found 0.925 of the true top 10."""
SCAN_AUTO_MEASURE_MAX_ROWS = 1_000_000
"""Writes measure the scan's width up to this many rows (a measurement's cost grows with the
table: ~4 s at 64,000 rows here); beyond, ``create_index()`` and ``optimize()`` measure it, and
until they do the last width grows with the rows."""


def resolve_oversample(oversample: int | None, filtered: bool, settings: PlannerSettings,
                       calibration: ScanCalibration | None = None, rows: int = 0, k: int = 0) -> int:
    """The caller's oversample; else the one measured on this table (``calibration``), grown in
    proportion to the rows added since it was measured (the candidates a query needs grow with
    the rows competing for them: linearly where sign codes rank worst); else, on a table under
    ``settings.exact_scan_rows`` rows, one that scans all ``rows`` for ``k`` hits (exact); else
    the planner's default (wider for a filtered scan)."""
    if oversample is not None:
        return oversample
    default = max(settings.oversample, settings.filtered_oversample) if filtered else settings.oversample
    if calibration is None:
        if 0 < k and rows < settings.exact_scan_rows:
            return max(default, -(-rows // k))
        return default
    measured = calibration.filtered_oversample if filtered else calibration.oversample
    if rows <= calibration.rows or calibration.rows <= 0:
        return measured
    return -(-measured * rows // calibration.rows)


def scan_strategy(req: SearchRequest, n_match: int, dim: int,
                  settings: PlannerSettings) -> tuple[Strategy, str]:
    """How to scan ``n_match`` matching rows."""
    if req.exact:
        return Strategy.EXACT_SCAN, "exact requested"
    if req.k == 0:
        return Strategy.EXACT_SCAN, "k = 0"
    n1 = req.k * req.oversample
    if n_match <= n1:
        return Strategy.EXACT_SCAN, f"{n_match:,} matches <= k x oversample = {n1:,}"
    if dim < settings.min_binary_dim:
        return Strategy.INT8_SCAN, f"{dim} dimensions < {settings.min_binary_dim}: sign codes too short"
    return Strategy.TWO_STAGE_SCAN, f"{n_match:,} matches > k x oversample = {n1:,}"


def scan_instead_of_index(kind: str, req: SearchRequest, n_match: int,
                          settings: PlannerSettings, rows: int | None = None) -> str | None:
    """Why a request scans its matches rather than searching the index (None: it does not).
    ``rows``: the table's live rows (for the filter's share of them; None: the broad-filter
    rule, ``postfilter_scan_max_matches``, is not applied)."""
    if req.exact:
        return "exact requested"
    if req.k == 0:
        return "k = 0"
    if not req.filtered:
        return None
    broad = (rows is not None and rows > 0 and kind not in BINARY_KINDS
             and n_match / rows >= settings.postfilter_min_selectivity)
    if broad and n_match > settings.postfilter_scan_max_matches:
        return None  # filtered after an unfiltered search: cheaper than scanning this many
    if n_match <= settings.scan_max_matches:
        also = (f"postfilter_scan_max_matches = {settings.postfilter_scan_max_matches:,} (a filter "
                f"this broad) and " if broad else "")
        return f"{n_match:,} matches <= {also}scan_max_matches = {settings.scan_max_matches:,}"
    if kind in BINARY_KINDS:
        return "filtered query over an index of sign codes"
    return None


class _Index(Protocol):
    def candidates_for(self, k: int) -> int: ...

    def effort_for(self, k: int, selectivity: float = 1.0) -> int: ...


@dataclass(frozen=True)
class IndexAttempt:
    """The first index search for a request: what to ask the index for."""

    strategy: Strategy
    why: str
    n_cand: int  # candidates wanted after filtering
    want: int  # labels asked of the index
    effort: int
    filter_inside: bool  # the allow bitmap is passed into the search
    index: Any = None  # described in the reason: where its effort came from
    selectivity: float = 1.0  # the one the effort was scaled for

    @property
    def reason(self) -> str:
        """Why this strategy, and where the effort came from (the index's ``effort_source``)."""
        source = getattr(self.index, "effort_source", None)
        if source is None:
            return self.why
        return f"{self.why}; {source(self.want if self.selectivity >= 1 else self.n_cand, self.selectivity)}"


def index_attempt(index: _Index, kind: str, req: SearchRequest, covered_matches: int,
                  indexed: int, masked: bool, settings: PlannerSettings,
                  per_row: int = 1) -> IndexAttempt:
    """The index search for ``req`` when ``covered_matches`` of the ``indexed`` labels may be
    returned; ``masked``: some labels may not (a filter, or rows deleted since the build).
    ``per_row``: labels per row (a multi-vector index: a row's vectors may all come back, so
    ``per_row`` times the candidates are taken, then collapsed to rows)."""
    k = req.k * per_row
    selectivity = covered_matches / indexed if indexed else 0.0
    # float indexes: their candidates are rescored exactly, so a few beyond k suffice (more for
    # quantized scores: candidates_for); a caller's larger .rescore(oversample) widens them (and
    # the effort that finds them) in proportion
    widen = max(1, req.oversample // settings.oversample) if req.oversample_set else 1
    n_cand = k * req.oversample if kind in BINARY_KINDS else index.candidates_for(k) * widen
    n_cand = max(1, min(n_cand, covered_matches))
    if not masked:
        return IndexAttempt(Strategy.INDEX, "no filter", n_cand, n_cand,
                            index.effort_for(n_cand, 1.0), False, index)
    if selectivity >= settings.postfilter_min_selectivity:
        want = min(indexed, math.ceil(n_cand / selectivity * 1.2) + k)
        strategy = Strategy.INDEX_THEN_FILTER if req.filtered else Strategy.INDEX
        what = "the filter keeps" if req.filtered else "no filter; live rows are"
        return IndexAttempt(
            strategy, f"{what} {selectivity:.1%} of the indexed rows >= postfilter_min_selectivity "
                      f"{settings.postfilter_min_selectivity:.0%}: filtered after the search",
            n_cand, want, index.effort_for(want, 1.0), False, index)
    return IndexAttempt(
        Strategy.INDEX_FILTERED,
        f"the filter keeps {selectivity:.1%} of the indexed rows < postfilter_min_selectivity "
        f"{settings.postfilter_min_selectivity:.0%}: passed into the search",
        n_cand, n_cand, index.effort_for(n_cand, selectivity), True, index, selectivity)
