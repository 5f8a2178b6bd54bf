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
    # add measured it when the table reached 5,000 rows (6,000: two adds of 3,000), and again
    # past 1.5 times that (11,900 rows after the last add); optimize measures it on every row
    assert easy._current().manifest.scan.rows == 11900
    easy.optimize()
    hard.optimize()
    e, h = easy._current().manifest.scan, hard._current().manifest.scan
    assert e is not None and h is not None and e.rows == 11900
    assert e.oversample < h.oversample
    assert easy.search(clustered[0]).limit(10).explain().oversample == e.oversample
    # held-out queries (not rows of the table) reach the target with the measured width
    assert _recall(easy, clustered[11900:11960]) >= 0.93
    assert _recall(hard, noise[11900:11960]) >= 0.93


def test_small_tables_are_not_measured_and_scan_every_row(tmp_db, rng):
    tbl = _table(tmp_db, "small", rng.normal(size=(3000, 96)).astype(np.float32))
    assert tbl.optimize() is False or tbl._current().manifest.scan is None
    plan = tbl.search(rng.normal(size=96)).limit(10).explain()
    assert plan.strategy is vecstore.Strategy.EXACT_SCAN and plan.oversample == 300
    staged_settings = vecstore.PlannerSettings(exact_scan_rows=0)
    staged = vecstore.connect(tmp_db.path, planner=staged_settings).open_table("small")
    assert staged.search(rng.normal(size=96)).limit(10).explain().oversample == 16


def test_the_filtered_oversample_holds_under_several_topics(tmp_db, rng, monkeypatch):
    # Topics differ in how well sign codes rank inside them (Reuters' 'earn' needed twice what
    # one topic-like filter measured), so the filtered width is measured under several
    # content-following filters, each the tenth of the rows nearest a row, and is the largest.
    from vecstore.query import calibrate

    centers = rng.normal(size=(50, 96)).astype(np.float32)
    x = (centers[rng.integers(0, 50, 8000)] + 0.5 * rng.normal(size=(8000, 96))).astype(np.float32)
    tbl = _table(tmp_db, "topics", x)
    seen: list = []
    neighbourhoods = calibrate._neighbourhoods

    def spy_neighbourhoods(snap, rows, queries, filters):
        seen.extend(filters)
        return neighbourhoods(snap, rows, queries, filters)

    monkeypatch.setattr(calibrate, "_neighbourhoods", spy_neighbourhoods)
    tbl.optimize()
    cal = tbl._current().manifest.scan
    topical = seen[2:]
    assert seen[0] is None and len(topical) == calibrate.TOPICAL_FILTERS >= 4
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    for rows in topical:  # each is the tenth of the table nearest some direction
        assert rows.size == 800
        inside, outside = unit[rows], np.delete(unit, rows, axis=0)
        direction = inside.mean(axis=0)
        assert np.median(inside @ direction) > np.percentile(outside @ direction, 95)
    assert len({tuple(r[:20]) for r in topical}) == len(topical)  # different topics
    assert cal.filtered_oversample >= cal.oversample
    assert cal.filtered_oversample in (*calibrate.OVERSAMPLE_GRID, calibrate.UNREACHED)
