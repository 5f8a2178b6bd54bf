"""write_table / read_table on a local Ray session: one commit per write, nothing on failure."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa
import pytest

import vecstore

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")
vray = pytest.importorskip("vecstore.ray")

DIM = 8


def _rows(rng, n, start=0, dim=DIM):
    vecs = rng.standard_normal((n, dim)).astype(np.float32)
    return [{"id": f"r{start + i}", "vector": vecs[i], "n": start + i,
             "text": f"row number {start + i} of {'red' if i % 3 else 'blue'} things",
             "cat": ["a", "b", "c"][(start + i) % 3]} for i in range(n)]


def _files(table_dir):
    return sorted(p for p in os.listdir(table_dir / "data"))


def _referenced(tbl):
    snap = tbl._current()
    out = set()
    for e in snap.manifest.segments:
        for ref in (e.data, e.postings, e.deletions):
            if ref is not None:
                out.add(ref.path.split("/")[1])
    return out


def test_write_table_equals_add_and_adds_one_version(ray_session, tmp_path, rng):
    rows = _rows(rng, 600)
    db = vecstore.connect(tmp_path / "store")
    ref = db.create_table("ref", dim=DIM)
    ref.add(rows[:100])
    ref.add(rows[100:])
    tbl = db.create_table("t", dim=DIM)
    tbl.add(rows[:100])
    before = tbl.versions()
    ds = ray.data.from_items(rows[100:], override_num_blocks=5)
    version = vray.write_table(ds, tmp_path / "store", "t", rows_per_segment=100)
    assert tbl.versions() == before + [before[-1] + 1] == before + [version]
    assert len(tbl._current().manifest.segments) > 2  # several workers' segments, one commit
    got = tbl.to_arrow(with_vectors=True).sort_by("id")
    want = ref.to_arrow(with_vectors=True).sort_by("id")
    assert got.column_names == want.column_names
    assert got.drop(["vector"]).equals(want.drop(["vector"]))
    np.testing.assert_array_equal(np.stack(got.column("vector").to_numpy(zero_copy_only=False)),
                                  np.stack(want.column("vector").to_numpy(zero_copy_only=False)))
    q = rows[7]["vector"]
    for where in (None, "n > 300 AND cat = 'b'"):
        a, b = tbl.search(q).exact().limit(10), ref.search(q).exact().limit(10)
        if where:
            a, b = a.where(where), b.where(where)
        assert a.hits().ids == b.hits().ids
    assert [h["id"] for h in tbl.search("red", mode="keyword").limit(5).to_list()] == \
        [h["id"] for h in ref.search("red", mode="keyword").limit(5).to_list()]
    assert not (tbl.path / "_staging").exists() or not os.listdir(tbl.path / "_staging")
    assert set(_files(tbl.path)) == _referenced(tbl)


def test_worker_failure_commits_nothing(ray_session, tmp_path, rng):
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=DIM)
    tbl.add(_rows(rng, 50))
    before = (tbl.versions(), _files(tbl.path))
    rows = _rows(rng, 400, start=1000)

    def poison(batch):
        if "r1350" in list(batch["id"]):
            raise RuntimeError("worker died mid-write")
        return batch

    ds = ray.data.from_items(rows, override_num_blocks=4).map_batches(poison, batch_size=100)
    with pytest.raises(Exception, match="worker died mid-write"):
        vray.write_table(ds, tmp_path / "store", "t", rows_per_segment=100)
    assert (tbl.versions(), _files(tbl.path)) == before
    assert not os.listdir(tbl.path / "_staging")
    assert len(tbl) == 50
    tbl.add(_rows(rng, 5, start=5000))  # the store still takes writes
    assert len(tbl) == 55


def test_invalid_rows_commit_nothing(ray_session, tmp_path, rng):
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=DIM)
    tbl.add(_rows(rng, 20))
    rows = _rows(rng, 200, start=100)
    rows[150]["vector"] = rng.standard_normal(DIM + 1).astype(np.float32)
    with pytest.raises(vecstore.InvalidArgumentError, match=r"id 'r250'.*9 values, expected 8"):
        vray.write_table(ray.data.from_items(rows, override_num_blocks=2), tmp_path / "store", "t",
                         rows_per_segment=100)
    dup = _rows(rng, 30, start=0)  # ids r0..r29 are in the table already
    with pytest.raises(vecstore.DuplicateIdError, match="already in table"):
        vray.write_table(ray.data.from_items(dup), tmp_path / "store", "t")
    twice = _rows(rng, 10, start=700) + _rows(rng, 10, start=700)
    with pytest.raises(vecstore.DuplicateIdError, match="more than once"):
        vray.write_table(ray.data.from_items(twice, override_num_blocks=2), tmp_path / "store", "t",
                         rows_per_segment=10)  # the repeat in another segment: the commit sees it
    assert tbl.versions() == [1, 2] and len(tbl) == 20
    assert set(_files(tbl.path)) == _referenced(tbl)


def test_upsert_and_overwrite(ray_session, tmp_path, rng):
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=DIM)
    tbl.add(_rows(rng, 40))
    new = _rows(rng, 20, start=30)  # r30..r39 replaced, r40..r49 new
    vray.write_table(ray.data.from_items(new), tmp_path / "store", "t", mode="upsert")
    assert len(tbl) == 50
    assert tbl.get(["r35"])[0]["n"] == 35
    np.testing.assert_array_equal(tbl.get(["r35"], with_vectors=True)[0]["vector"], new[5]["vector"])
    vray.write_table(ray.data.from_items(_rows(rng, 7, start=900)), tmp_path / "store", "t",
                     mode="overwrite")
    assert sorted(tbl.to_arrow().column("id").to_pylist()) == [f"r{i}" for i in range(900, 907)]
    with pytest.raises(vecstore.InvalidArgumentError, match="mode must be one of"):
        vray.write_table(ray.data.from_items(new), tmp_path / "store", "t", mode="replace")


def test_read_table_with_filter(ray_session, tmp_path, rng):
    db = vecstore.connect(tmp_path / "store")
    tbl = db.create_table("t", dim=DIM)
    for start in range(0, 300, 100):
        tbl.add(_rows(rng, 100, start=start))
    tbl.delete("n < ?", 10)
    got = vray.read_table(tmp_path / "store", "t", ["n", "cat"], "cat = ? AND n >= ?", "b", 50)
    got = pa.Table.from_pandas(got.to_pandas(), preserve_index=False).sort_by("id")
    want = tbl.to_arrow(["id", "n", "cat"], where="cat = ? AND n >= ?", params=("b", 50)).sort_by("id")
    assert got.column("id").to_pylist() == want.column("id").to_pylist()
    assert got.column("n").to_pylist() == want.column("n").to_pylist()
    every = vray.read_table(tmp_path / "store", "t", ["vector"])
    assert every.count() == len(tbl) == 290
    with pytest.raises(vecstore.FilterError):
        vray.read_table(tmp_path / "store", "t", None, "no_such_column > 1")
