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
unfiltered and inside two filters keeping a tenth of the rows (a filtered scan ranks fewer,
weaker neighbours): a random one, and the rows nearest one row's vector (a filter that follows
the content, as a topic or a category does, leaves most queries' neighbours far from them);
the filtered oversample is the larger of the two. ``create_index`` and ``optimize`` record the
result in the table's version.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import numpy.typing as npt

from ..config import PlannerSettings
from ..evaluation import tie_aware_recalls
from ..index.calibration import DUPLICATE_DEPTH, duplicate_counts, recall_lower_bound
from ..storage.manifest import ScanCalibration
from ..storage.snapshot import Snapshot
from .planner import SearchRequest
from .scan import scan

OVERSAMPLE_GRID = (2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)
UNREACHED = 4096
"""Recorded when no oversample on the grid reaches the target (sign codes rank this data
poorly): ``k x 4096`` candidates, which scans tables of up to 40,960 rows exactly."""
CALIBRATION_QUERIES = 200
MIN_ROWS = 5_000
"""Below this many rows a scan costs microseconds whatever its width; nothing is measured."""
MARGIN = 0.0
"""Kept for callers that add it to a target: the margin is statistical now (the lower
confidence bound of the measured recall must reach the target), so this is 0."""
K = 10
_CHUNK = 65_536
"""Rows per block of the near-duplicate pass (200 queries x 65,536 rows: ~50 MB of distances)."""


def _excluded(snap: Snapshot, rows: npt.NDArray[np.int64],
              queries: npt.NDArray[np.float32]) -> list[npt.NDArray[np.int64]]:
    """The rows left out of each calibration query's truth and answer: its own row, and its
    near-duplicates (:func:`~vecstore.index.calibration.duplicate_counts` over its
    :data:`~vecstore.index.calibration.DUPLICATE_DEPTH` nearest live rows, Euclidean distance
    whatever the metric: "near" means near in space), found in one pass over the segments."""
    live = snap.live_mask
    depth = min(DUPLICATE_DEPTH, snap.num_rows - 1)
    q_sq = np.einsum("ij,ij->i", queries, queries)
    dist = np.full((rows.size, depth), np.inf, dtype=np.float32)
    near = np.full((rows.size, depth), -1, dtype=np.int64)
    start = 0
    for block in snap.vectors:
        for lo in range(0, block.shape[0], _CHUNK):
            x = np.asarray(block[lo:lo + _CHUNK], dtype=np.float32)
            at = np.arange(start + lo, start + lo + x.shape[0])
            d2 = q_sq[:, None] + np.einsum("ij,ij->i", x, x)[None, :] - 2 * (queries @ x.T)
            d2[:, ~live[at]] = np.inf
            d2[at[None, :] == rows[:, None]] = np.inf  # not itself
            merged_d = np.concatenate([dist, d2], axis=1)
            merged_r = np.concatenate([near, np.broadcast_to(at, d2.shape)], axis=1)
            top = np.argpartition(merged_d, depth - 1, axis=1)[:, :depth]
            dist = np.take_along_axis(merged_d, top, axis=1)
            near = np.take_along_axis(merged_r, top, axis=1)
        start += block.shape[0]
    order = np.argsort(dist, axis=1, kind="stable")
    counts = duplicate_counts(np.sqrt(np.maximum(np.take_along_axis(dist, order, axis=1), 0)), K)
    near = np.take_along_axis(near, order, axis=1)
    return [np.concatenate([[own], near[i, :c]]).astype(np.int64)
            for i, (own, c) in enumerate(zip(rows.tolist(), counts.tolist(), strict=True))]


def _recall(found: npt.NDArray[np.int64], scores: npt.NDArray[np.float32], truth_rows: npt.NDArray[np.int64],
            truth_scores: npt.NDArray[np.float32], out: npt.NDArray[np.int64]) -> tuple[float, int]:
    """(hits, wanted) of one query: tie-aware (:mod:`vecstore.evaluation`), the rows ``out``
    excluded from both answers. The scan's scores are exact (its last stage is float32)."""
    expected = truth_scores[~np.isin(truth_rows, out)][:K]
    if expected.size == 0:
        return 0.0, 0
    got = scores[~np.isin(found, out)][:expected.size]
    recall = tie_aware_recalls([got], [expected[-1]], expected.size)[0]
    return float(recall) * expected.size, int(expected.size)


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
    # space, away from most queries. The rows nearest a random row's vector stand for one.
    centre = snap.gather_vectors(np.array([rng.choice(live)]))[0]
    near = np.concatenate([snap.vectors[s] @ centre for s in range(len(snap.segments))])[live]
    topical = np.sort(live[np.argpartition(-near, size - 1)[:size]])
    out = _excluded(snap, queries, vectors)
    results = []
    for rows in (None, subset, topical):
        # the truth holds room for the excluded rows (own and near-duplicates)
        base = [SearchRequest(query=v, k=K + out[i].size, oversample=1, oversample_set=True,
                              exact=True, rows=rows) for i, v in enumerate(vectors)]
        truth = [scan(snap, r, settings)[:2] for r in base]
        chosen = UNREACHED
        for oversample in OVERSAMPLE_GRID:
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
            if recalls and recall_lower_bound(recalls) >= min(1.0, target + MARGIN):
                chosen = oversample
                break
        results.append(chosen)
    return ScanCalibration(oversample=results[0], filtered_oversample=max(results),
                           target_recall=target, rows=n, version=snap.version)
