"""A table built by many writes answers like one built by a single write: the scan covers every
segment in one pass (each segment's sign codes against the query's bits under that segment's
calibration), exact search returns the compacted twin's ids in its order."""

from __future__ import annotations

import numpy as np
import pytest
from vecstore._native import loader, reference

import vecstore
from vecstore.query.scoring import Scorer, exact_top, segment_parts, top_k

DIM = 96
ROWS = 1200


def _rows(rng: np.random.Generator) -> list[dict]:
    vectors = rng.standard_normal((ROWS, DIM)).astype(np.float32)
    # a shift per write, so that every segment's calibration differs
    vectors += (np.arange(ROWS) // 250)[:, None].astype(np.float32) * 0.3
    return [{"id": f"r{i}", "vector": vectors[i], "cat": i % 7} for i in range(ROWS)]


@pytest.fixture
def tables(tmp_db: vecstore.Database, rng: np.random.Generator) -> tuple[vecstore.Table, vecstore.Table]:
    loader.compile_all()  # the Numba kernels, not their twins
    rows = _rows(rng)
    many = tmp_db.create_table("many", dim=DIM)
    for start, stop in ((0, 600), (600, 900), (900, 1100), (1100, 1200)):  # shrinking: no merges
        many.add(rows[start:stop])
    many.delete("cat = 3 AND id < 'r5'")
    one = tmp_db.create_table("one", dim=DIM)
    live = {h["id"] for h in many.search(np.ones(DIM, np.float32)).limit(ROWS).exact().to_list()}
    one.add([r for r in rows if r["id"] in live])
    assert len(many._current().segments) == 4
    return many, one


@pytest.mark.parametrize("where", [None, "cat < 5", "cat = 1"])
def test_exact_search_on_many_segments_matches_the_one_segment_twin(tables, rng, where) -> None:
    many, one = tables
    for q in rng.standard_normal((5, DIM)).astype(np.float32):
        results = []
        for tbl in (many, one):
            query = tbl.search(q).exact().limit(20)
            results.append((query.where(where) if where else query).to_list())
        assert [h["id"] for h in results[0]] == [h["id"] for h in results[1]]
        np.testing.assert_allclose([h["score"] for h in results[0]], [h["score"] for h in results[1]],
                                   rtol=1e-5, atol=1e-6)


def _oracle(snap, q: np.ndarray, rows: np.ndarray | None, k: int, n1: int) -> list[int]:
    """The two-stage scan as documented, stages 1 and 2 computed segment by segment (stage 1
    with the NumPy twin): the best n1 by (Hamming distance under the row's own segment
    calibration, row), then the best n2 of those by int8 score under that calibration."""
    scorer = Scorer(snap, q)
    cand, dist = [], []
    for s, local in segment_parts(snap, rows):
        local = np.arange(snap.segments[s].rows) if local is None else local
        bits = snap.segments[s].quantizer.encode_binary(scorer.q_codes[None, :])[0].view(np.uint64)
        dist.append(reference.hamming_distances_rows(snap.binary[s], local, bits))
        cand.append(local + snap.bases[s])
    all_rows, all_dist = np.concatenate(cand), np.concatenate(dist)
    rows1 = np.sort(all_rows[np.lexsort((all_rows, all_dist))[:n1]])
    n2 = min(rows1.size, max(4 * k, n1 // 4))
    # int8 stage segment by segment, each under its own calibration (not the one-call path)
    int8 = np.concatenate([scorer.int8(s, local) for s, local in snap.split(rows1)])
    keep = np.sort(rows1[top_k(int8, n2)])
    found, _, _ = exact_top(scorer, segment_parts(snap, keep), k)
    return found.tolist()


@pytest.mark.parametrize("where", [None, "cat < 5"])
def test_two_stage_scan_over_many_segments_is_the_documented_pipeline(tables, rng, where) -> None:
    many, _ = tables
    snap = many._current()
    for q in rng.standard_normal((5, DIM)).astype(np.float32):
        query = many.search(q).limit(10).rescore(8)
        hits = (query.where(where) if where else query).hits()
        assert hits.plan.strategy.value == "two-stage-scan"
        rows = None if where is None else many._executor.match_rows(snap, where, ())
        by_row = snap.rows_as_dicts(np.arange(snap.physical_rows), ["id"])
        assert hits.ids == [by_row[r]["id"] for r in _oracle(snap, q, rows, 10, 80)]
