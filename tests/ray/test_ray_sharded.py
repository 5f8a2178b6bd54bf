"""ShardedTable over 4 shards against one table holding every row."""

from __future__ import annotations

import numpy as np
import pytest

import vecstore

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray")
vray = pytest.importorskip("vecstore.ray")

DIM = 16
N = 2000


def _rows(rng, n):
    vecs = rng.standard_normal((n, DIM)).astype(np.float32)
    return [{"id": f"doc-{i}", "vector": vecs[i], "n": i, "cat": ["a", "b", "c", "d"][i % 4],
             "text": f"item {i} {'alpha' if i % 5 == 0 else 'beta'}"} for i in range(n)]


# each ShardedTable starts 4 actors (~10 s on two busy cores): l2 runs with the slow tests
@pytest.mark.parametrize("metric", ["cosine", pytest.param("l2", marks=pytest.mark.slow)])
def test_sharded_exact_equals_one_table(ray_session, tmp_path, rng, metric):
    rows = _rows(rng, N)
    one = vecstore.connect(tmp_path / "one").create_table("t", dim=DIM, metric=metric)
    one.add(rows)
    paths = [tmp_path / f"shard{i}" for i in range(4)]
    with vray.ShardedTable(paths, "t", create={"dim": DIM, "metric": metric}) as st:
        st.add(rows[:1200])
        st.add(rows[1200:])
        assert st.count() == N and st.count("cat = ?", "b") == one.count("cat = ?", "b")
        sizes = [len(vecstore.connect(p).open_table("t")) for p in paths]
        assert sum(sizes) == N and min(sizes) > N // 8  # every shard holds a share
        for s, p in enumerate(paths):
            ids = vecstore.connect(p).open_table("t").to_arrow(["id"]).column("id").to_pylist()
            assert all(vray.shard_of(i, 4) == s for i in ids)
        queries = rng.standard_normal((8, DIM)).astype(np.float32)
        for q in queries:
            for where, params in ((None, ()), ("cat IN (?, ?) AND n > ?", ("a", "c", 300)),
                                  ("n < ?", (40,))):
                got = st.search(q, where=where, params=params, limit=10, exact=True)
                want = one.search(q).exact().limit(10)
                if where:
                    want = want.where(where, *params)
                want = want.to_list()
                assert [h["id"] for h in got] == [h["id"] for h in want]
                np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in want],
                                           rtol=1e-5, atol=1e-5)
                assert [h["n"] for h in got] == [h["n"] for h in want]
        # an upsert goes to the shard that holds the id: replaced, not duplicated
        st.add([{**r, "n": -1} for r in rows[:30]], upsert=True)
        assert st.count() == N and st.count("n = ?", -1) == 30
        with pytest.raises(vecstore.DuplicateIdError):
            st.add(rows[:1])


@pytest.mark.slow  # 4 actors building hnsw indexes: ~20 s on two busy cores
def test_sharded_recall_with_indexes(ray_session, tmp_path, rng):
    rows = _rows(rng, N)
    one = vecstore.connect(tmp_path / "one").create_table("t", dim=DIM)
    one.add(rows)
    paths = [tmp_path / f"shard{i}" for i in range(4)]
    with vray.ShardedTable(paths, "t", create={"dim": DIM}) as st:
        st.add(rows)
        st.create_index("hnsw", m=16, ef_construction=100)
        assert all(vecstore.connect(p).open_table("t").list_indexes() for p in paths)
        queries = rng.standard_normal((30, DIM)).astype(np.float32)
        found = total = 0
        for q in queries:
            truth = set(one.search(q).exact().limit(10).hits().ids)
            got = {h["id"] for h in st.search(q, limit=10)}
            found += len(truth & got)
            total += 10
        assert found / total >= 0.95


def test_sharded_table_checks_its_arguments(ray_session, tmp_path):
    with pytest.raises(vecstore.InvalidArgumentError, match="one store per shard"):
        vray.ShardedTable(str(tmp_path), "t")
    with pytest.raises(vecstore.InvalidArgumentError, match="oversample"):
        vray.ShardedTable([tmp_path / "a"], "t", oversample=0.5)
