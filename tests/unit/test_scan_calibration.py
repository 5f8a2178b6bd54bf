"""The scan's oversample is measured on each table (create_index, optimize) instead of taken
from one data set: clustered embeddings need fewer candidates than isotropic noise, and the
measured width reaches the target recall on queries it was not measured on."""

from __future__ import annotations

import numpy as np

import vecstore


def _recall(tbl, queries, k=10):
    hits = 0
    for q in queries:
        got = tbl.search(q).limit(k).hits()
        exact = tbl.search(q).limit(k).exact().hits()
        kth = exact.scores[k - 1]
        hits += int(np.count_nonzero(got.scores >= kth - 1e-5))
    return hits / (k * len(queries))


def _table(db, name, x):
    tbl = db.create_table(name, dim=x.shape[1])
    for start in range(0, len(x), 3000):
        tbl.add([{"id": str(j), "vector": x[j]} for j in range(start, min(len(x), start + 3000))])
    return tbl


def test_the_measured_oversample_follows_the_data_and_reaches_the_target(tmp_db, rng):
    centers = rng.normal(size=(50, 96)).astype(np.float32)
    clustered = (centers[rng.integers(0, 50, 12000)] + 0.5 * rng.normal(size=(12000, 96))).astype(np.float32)
    noise = rng.normal(size=(12000, 96)).astype(np.float32)
    easy, hard = _table(tmp_db, "easy", clustered[:11900]), _table(tmp_db, "hard", noise[:11900])
    assert easy._current().manifest.scan is None
    easy.optimize()
    hard.optimize()
    e, h = easy._current().manifest.scan, hard._current().manifest.scan
    assert e is not None and h is not None and e.rows == 11900
    assert e.oversample < h.oversample
    assert easy.search(clustered[0]).limit(10).explain().oversample == e.oversample
    # held-out queries (not rows of the table) reach the target with the measured width
    assert _recall(easy, clustered[11900:11960]) >= 0.93
    assert _recall(hard, noise[11900:11960]) >= 0.93


def test_small_tables_keep_the_defaults(tmp_db, rng):
    tbl = _table(tmp_db, "small", rng.normal(size=(3000, 96)).astype(np.float32))
    assert tbl.optimize() is False or tbl._current().manifest.scan is None
    plan = tbl.search(rng.normal(size=96)).limit(10).explain()
    assert plan.oversample == vecstore.PlannerSettings().oversample
