"""Stores written by format 1 (tests/fixtures/golden_v1: CRC-32 files) and format 3
(golden_v3: XXH3 files and an hnsw-int8 index) must stay readable by every later version of
vecstore, with the same content and the same search results."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import vecstore
from vecstore.errors import CorruptStoreError

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_golden import DIM, golden_rows  # noqa: E402


@pytest.mark.parametrize("version", [1, 3])
def test_golden_store_reads_back(tmp_path, version):
    store = tmp_path / "golden"
    shutil.copytree(FIXTURES / f"golden_v{version}", store)  # never write into the fixture itself
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
    if version >= 3:  # its index (sidecar format 2) loads and answers
        plan = tbl.search(q).limit(3).explain()
        assert plan.index == "hnsw-int8" and tbl.search(q).limit(1).to_list()[0]["id"] == "g3"
        assert tbl.verify()["files"] > 0
        return
    # and the old store accepts new writes: its files keep their CRC-32, the new ones carry
    # XXH3, and each is checked by its own algorithm
    tbl.add([{"id": "new", "vector": np.ones(DIM), "year": 2030}])
    assert len(tbl) == len(rows) + 2
    manifest = json.loads(sorted((store / "papers" / "_versions").glob("*.json"))[-1].read_text())
    data = [seg["data"] for seg in manifest["segments"]]
    assert manifest["format_version"] == 3
    assert any("crc32" in d for d in data) and "xxh3" in data[-1] and "crc32" not in data[-1]
    reopened = vecstore.connect(store).open_table("papers")
    assert reopened.verify()["files"] >= len(data)
    assert reopened.search(q).limit(1).to_list()[0]["id"] == "g3"
    # a damaged old file is still found by its CRC-32
    old = store / "papers" / next(d["path"] for d in data if "crc32" in d)
    raw = bytearray(old.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    old.write_bytes(bytes(raw))
    with pytest.raises(CorruptStoreError, match="crc32"):
        vecstore.connect(store).open_table("papers").verify()
