"""Measuring, on a table's own rows, how wide the scan's first stage must be.

The two-stage scan keeps ``k x oversample`` candidates by Hamming distance on the sign codes and
rescores them. How many are needed for a given recall depends on the data (how well signs of
centred coordinates rank its neighbours) and on the table's size, so a fixed oversample is right
for one table and wrong for the next. :func:`calibrate_scan` measures it: sample rows of the
table serve as queries (their own row and its near-duplicates excluded from both answers, as
the index calibration does: :class:`~vecstore.index.calibration.ExactTruth`; a table row often
has a twin that a user's query does not, and the twin is found at no effort), the exact top 10
is the truth, and the smallest oversample on a ~1.5x grid whose recall@10 reaches the target with
confidence (the lower bound of the per-query recalls,
:func:`~vecstore.index.calibration.recall_lower_bound`: the margin follows the sample) is kept,
unfiltered and inside filters keeping a tenth of the rows (a filtered scan ranks fewer,
weaker neighbours): a random one, and :data:`TOPICAL_FILTERS` of the rows nearest a row's vector
(a filter that follows the content, as a topic or a category does, leaves most queries'
neighbours far from them); the filtered oversample is the largest of them. ``create_index``
and ``optimize`` record the result in the table's version.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from ..config import Metric, PlannerSettings
from ..evaluation import tie_aware_recalls
from ..index.calibration import DUPLICATE_DEPTH, duplicate_counts, recall_lower_bound
from ..storage.manifest import ScanCalibration
from ..storage.snapshot import Snapshot
from .multivector import make_scorer
from .planner import SCAN_CALIBRATED_ROWS, SearchRequest
from .scan import scan
from .scoring import best_exact

OVERSAMPLE_GRID = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
UNREACHED = 4096
"""Recorded when no oversample on the grid reaches the target (sign codes rank this data
poorly): ``k x 4096`` candidates, which scans tables of up to 40,960 rows exactly."""
CALIBRATION_QUERIES = 200
TOPICAL_FILTERS = 8
"""Filters that follow the content (the rows nearest a random row's vector, a tenth of the
table each) the filtered oversample must hold under. Topics differ in how well sign codes rank
inside them, so one is not enough: on Reuters-21578 (21,077 stories) one such filter gave 16,
under which ``list_contains(topics, 'earn')`` got recall 0.910 and 'earn' AND a date 0.931;
eight gave 32 (0.965, 0.978)."""
MIN_ROWS = SCAN_CALIBRATED_ROWS
"""Below this many rows nothing is measured: the planner scans such a table exactly."""
MARGIN = 0.0
"""Kept for callers that add it to a target: the margin is statistical now (the lower
confidence bound of the measured recall must reach the target), so this is 0."""
K = 10
_CHUNK = 65_536
"""Rows per block of the near-duplicate pass (200 queries x 65,536 rows: ~50 MB of distances)."""


class _Running:
    """Each query's ``depth`` best columns so far by a score (higher is better), merged chunk by
    chunk of rows."""

    def __init__(self, queries: int, depth: int) -> None:
        self.depth = depth
        self.best = np.full((queries, depth), -np.inf, dtype=np.float32)
        self.rows = np.full((queries, depth), -1, dtype=np.int64)

    def merge(self, scores: npt.NDArray[np.float32], rows: npt.NDArray[np.int64]) -> None:
        merged_s = np.concatenate([self.best, scores], axis=1)
        merged_r = np.concatenate([self.rows, np.broadcast_to(rows, scores.shape)], axis=1)
        top = np.argpartition(-merged_s, self.depth - 1, axis=1)[:, :self.depth]
        self.best = np.take_along_axis(merged_s, top, axis=1)
        self.rows = np.take_along_axis(merged_r, top, axis=1)

    def ranked(self) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int64]]:
        """``(scores, rows)``, each query's best first (-1 rows: fewer rows than ``depth``)."""
        order = np.argsort(-self.best, axis=1, kind="stable")
        return np.take_along_axis(self.best, order, axis=1), np.take_along_axis(self.rows, order, axis=1)


def _neighbourhoods(snap: Snapshot, rows: npt.NDArray[np.int64], queries: npt.NDArray[np.float32],
                    filters: list[npt.NDArray[np.int64] | None]
                    ) -> tuple[list[npt.NDArray[np.int64]], list[npt.NDArray[np.int64]]]:
    """One pass over the table's rows for the calibration queries (sample rows ``rows``, their
    vectors ``queries``): ``(excluded, candidates)``.

    ``excluded[i]``: the rows left out of query ``i``'s truth and answer: its own row, and its
    near-duplicates (:func:`~vecstore.index.calibration.duplicate_counts` over its
    :data:`~vecstore.index.calibration.DUPLICATE_DEPTH` nearest live rows, Euclidean distance
    whatever the metric: "near" means near in space). ``candidates[f]``: ``[queries, K +
    DUPLICATE_DEPTH + K]`` rows, each query's best live rows under ``filters[f]`` (None: every
    row) by the table's metric, for :func:`best_exact` to score as the scan does. One blocked
    pass, where an exact scan per query and filter read every vector 600 times (~10 minutes at
    10M rows)."""
    live = snap.live_mask
    metric = snap.manifest.config.metric
    depth = min(DUPLICATE_DEPTH, snap.num_rows - 1)
    masks = []
    for allowed in filters:
        mask = live.copy()
        if allowed is not None:
            mask[:] = False
            mask[allowed] = True
        masks.append(mask)
    q_sq = np.einsum("ij,ij->i", queries, queries)
    nearest = _Running(rows.size, depth)
    best = [_Running(rows.size, min(2 * K + DUPLICATE_DEPTH, snap.num_rows)) for _ in filters]
    start = 0
    for block, norms in zip(snap.vectors, snap.norms, strict=True):
        for lo in range(0, block.shape[0], _CHUNK):
            x = np.asarray(block[lo:lo + _CHUNK], dtype=np.float32)
            at = np.arange(start + lo, start + lo + x.shape[0])
            x_norm = np.asarray(norms[lo:lo + _CHUNK], dtype=np.float32)
            dots = queries @ x.T
            d2 = q_sq[:, None] + (x_norm * x_norm)[None, :] - 2 * dots
            d2[:, ~live[at]] = np.inf
            d2[at[None, :] == rows[:, None]] = np.inf  # not itself
            nearest.merge(-d2, at)
            score = dots
            if metric is Metric.COSINE:
                score = dots / np.where(x_norm > 0, x_norm, np.float32(1))[None, :]
            elif metric is Metric.L2:
                score = 2 * dots - (x_norm * x_norm)[None, :]
            for mask, running in zip(masks, best, strict=True):
                keep = mask[at]  # only the allowed columns: a filter keeps a tenth of the rows
                running.merge(np.ascontiguousarray(score[:, keep], dtype=np.float32), at[keep])
        start += block.shape[0]
    neg_d2, near = nearest.ranked()
    counts = duplicate_counts(np.sqrt(np.maximum(-neg_d2, 0)), K)
    excluded = [np.concatenate([[own], near[i, :c]]).astype(np.int64)
                for i, (own, c) in enumerate(zip(rows.tolist(), counts.tolist(), strict=True))]
    return excluded, [running.ranked()[1] for running in best]


def _recall(found: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], truth_rows: npt.NDArray[np.int64],
            truth_scores: npt.NDArray[np.float32], out: npt.NDArray[np.int64]) -> tuple[float, int]:
    """(hits, wanted) of one query: tie-aware (:mod:`vecstore.evaluation`), the rows ``out``
    excluded from both answers. The scan's scores are exact (its last stage is float32)."""
    drop = set(out.tolist())  # a few rows: a set, where np.isin costs ~50 us a call
    expected = truth_scores[[i for i, r in enumerate(truth_rows.tolist()) if r not in drop]][:K]
    if expected.size == 0:
        return 0.0, 0
    got = scores[[i for i, r in enumerate(found.tolist()) if r not in drop]][:expected.size]
    recall = tie_aware_recalls([got], [expected[-1]], expected.size)[0]
    return float(recall) * expected.size, int(expected.size)


def smallest_holding(grid: list[int], holds: Callable[[int], bool], first: bool = False) -> int:
    """The smallest value of the ascending ``grid`` that ``holds`` (recall grows with the
    oversample, so what holds at one width holds at every wider one): by bisection, 4 trials of
    the 15 widths where trying them in turn took up to 15 (``first``: ``grid[0]`` is tried first,
    the likely answer). :data:`UNREACHED` when none holds."""
    lo, hi = 0, len(grid)  # the answer's position lies in [lo, hi]; hi = len(grid): none holds
    if first and grid:
        if holds(grid[0]):
            return grid[0]
        lo = 1
    while lo < hi:
        mid = (lo + hi) // 2
        if holds(grid[mid]):
            hi = mid
        else:
            lo = mid + 1
    return grid[lo] if lo < len(grid) else UNREACHED


def calibrate_scan(snap: Snapshot, settings: PlannerSettings, target: float = 0.95,
                   seed: int = 0) -> ScanCalibration | None:
    """The scan's oversample for ``target`` recall@10 on ``snap`` (None: too small a table, or
    too few dimensions for sign codes, where the planner's defaults hold)."""
    n = snap.num_rows
    if n < MIN_ROWS or snap.manifest.config.dim < settings.min_binary_dim:
        return None
    rng = np.random.default_rng(seed)
    live = snap.live_rows
    queries = np.sort(rng.choice(live, min(CALIBRATION_QUERIES, live.size), replace=False))
    vectors = snap.gather_vectors(queries)
    size = max(live.size // 10, 2 * K * 4)
    subset = np.sort(rng.choice(live, size, replace=False))
    # A real filter follows the content (a topic, a category): its rows sit together in the
    # space, away from most queries. The rows nearest a random row's vector stand for one;
    # several, since topics differ in how hard they are.
    filters: list[npt.NDArray[np.int64] | None] = [None, subset]
    centres = snap.gather_vectors(np.sort(rng.choice(live, min(TOPICAL_FILTERS, live.size), replace=False)))
    near = np.concatenate([snap.vectors[s] @ centres.T for s in range(len(snap.segments))])[live]
    for column in near.T:  # one pass over the vectors for every centre
        filters.append(np.sort(live[np.argpartition(-column, size - 1)[:size]]))
    out, candidates = _neighbourhoods(snap, queries, vectors, filters)
    results: list[int] = []
    for rows, cands in zip(filters, candidates, strict=True):
        # the truth holds room for the excluded rows (own and near-duplicates), scored as the
        # scan scores (a few rows beyond, in case its arithmetic orders a tie differently)
        base = [SearchRequest(query=v, k=K + out[i].size, oversample=1, oversample_set=True,
                              exact=True, rows=rows) for i, v in enumerate(vectors)]
        if len(snap.vector_names) > 1:  # a row's best over several vectors: the scan's own
            truth = [scan(snap, r, settings)[:2] for r in base]
        else:
            truth = []
            for i, r in enumerate(base):
                found = np.sort(cands[i, :r.k + K])
                truth.append(best_exact(make_scorer(snap, r.query, None), found[found >= 0], r.k))

        def holds(oversample: int, base: list[SearchRequest] = base,
                  truth: list[tuple[np.ndarray, np.ndarray]] = truth) -> bool:
            recalls = []
            for i, r in enumerate(base):
                # K answers left after the exclusions, from K x oversample candidates: what a
                # user's k=10 query with this oversample ranks
                k = K + out[i].size
                found, scores, _ = scan(snap, replace(r, k=k, exact=False,
                                                      oversample=max(1, -(-K * oversample // k))),
                                        settings)
                h, w = _recall(found, scores, truth[i][0], truth[i][1], out[i])
                if w:
                    recalls.append(h / w)
            return bool(recalls) and recall_lower_bound(recalls) >= min(1.0, target + MARGIN)

        # only the largest width counts (the filtered one is the maximum over every filter), so
        # a filter is tried from the widest measured so far: one pass when that one holds
        floor = max(results, default=0)
        results.append(smallest_holding([o for o in OVERSAMPLE_GRID if o >= floor], holds,
                                        first=floor > 0))
    return ScanCalibration(oversample=results[0], filtered_oversample=max(results),
                           target_recall=target, rows=n, version=snap.version)
