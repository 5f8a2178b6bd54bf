"""A store written by format 1 (tests/fixtures/golden_v1) must stay readable by every later
version of vecstore, with the same content and the same search results."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

import vecstore

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_golden import DIM, golden_rows  # noqa: E402


def test_golden_v1_reads_back(tmp_path):
    store = tmp_path / "golden"
    shutil.copytree(FIXTURES / "golden_v1", store)  # never write into the fixture itself
    db = vecstore.connect(store)
    assert db.table_names() == ["l2", "papers"]
    tbl = db.open_table("papers")
    rows = {r["id"]: r for r in golden_rows()}
    rows["g5"] = {**rows["g5"], "year": 1999}
    del rows["g7"], rows["g8"]
    got = {r["id"]: r for r in tbl.to_arrow(with_vectors=True).to_pylist()}
    assert set(got) == set(rows) | {"extra"}
    for i, want in rows.items():
        g = got[i]
        assert g["vector"] == want["vector"], i  # float32 values, stored and read back
        for key in ("year", "flag", "lang", "tags", "when"):
            assert g[key] == want[key], (i, key)
        assert g["score_f"] == want["score_f"] and g["note"] is None, i
    assert got["extra"]["note"] == "added later"
    q = np.asarray(rows["g3"]["vector"], dtype=np.float32)
    hits = tbl.search(q).where("lang = ?", "en").limit(3).to_list()
    assert hits[0]["id"] == "g3" and abs(hits[0]["score"] - 1.0) < 1e-5
    assert tbl.count("list_contains(tags, 't1')") == sum(1 for r in rows.values() if "t1" in r["tags"])
    l2 = db.open_table("l2")
    assert l2.metric.value == "l2"
    assert l2.search([3.2, 0, 0, 1]).limit(2).exact().hits().ids == ["3", "4"]
    # and the old store accepts new writes
    tbl.add([{"id": "new", "vector": np.ones(DIM), "year": 2030}])
    assert len(tbl) == len(rows) + 2
