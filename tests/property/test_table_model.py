"""Hypothesis: a Table under add/upsert/delete/compact/reopen always agrees with a dict model,
and exact search always equals NumPy's exact top-k."""

from __future__ import annotations

import shutil
import tempfile

import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

import vecstore
from vecstore import DuplicateIdError

DIM = 6
ids = st.sampled_from([f"id{i}" for i in range(25)])
vec = st.lists(st.integers(-5, 5), min_size=DIM, max_size=DIM).filter(lambda v: any(v))
year = st.integers(1990, 2030)


def numpy_topk(model, q, k, where=None):
    items = [(i, v, y) for i, (v, y) in model.items() if where is None or where(y)]
    if not items:
        return []
    vecs = np.array([v for _, v, _ in items], dtype=np.float32)
    s = (vecs @ q) / (np.linalg.norm(vecs, axis=1) * np.linalg.norm(q))
    return sorted(((float(s[j]), items[j][0]) for j in range(len(items))), key=lambda t: -t[0])[:k]


class TableModel(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.db = vecstore.connect(self.dir)
        self.tbl = self.db.create_table("t", dim=DIM, schema=pa.schema({"year": pa.int64()}))
        self.model: dict[str, tuple[list[int], int]] = {}

    def teardown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    @rule(rows=st.lists(st.tuples(ids, vec, year), min_size=1, max_size=6, unique_by=lambda r: r[0]))
    def add(self, rows):
        batch = [{"id": i, "vector": v, "year": y} for i, v, y in rows]
        if any(i in self.model for i, _, _ in rows):
            try:
                self.tbl.add(batch)
            except DuplicateIdError:
                return
            raise AssertionError("add accepted an existing id")
        self.tbl.add(batch)
        for i, v, y in rows:
            self.model[i] = (v, y)

    @rule(rows=st.lists(st.tuples(ids, vec, year), min_size=1, max_size=6, unique_by=lambda r: r[0]))
    def upsert(self, rows):
        self.tbl.upsert([{"id": i, "vector": v, "year": y} for i, v, y in rows])
        for i, v, y in rows:
            self.model[i] = (v, y)

    @rule(victims=st.lists(ids, max_size=4))
    def delete_ids(self, victims):
        n = self.tbl.delete(ids=victims)
        assert n == len(set(victims) & set(self.model))
        for i in victims:
            self.model.pop(i, None)

    @rule(cut=year)
    def delete_where(self, cut):
        n = self.tbl.delete("year < ?", cut)
        gone = [i for i, (_, y) in self.model.items() if y < cut]
        assert n == len(gone)
        for i in gone:
            del self.model[i]

    @rule()
    def compact(self):
        self.tbl.compact()

    @rule()
    def reopen(self):
        self.db = vecstore.connect(self.dir)
        self.tbl = self.db.open_table("t")

    @rule(q=vec, k=st.integers(1, 30), cut=st.one_of(st.none(), year))
    def search_exact(self, q, k, cut):
        qv = np.array(q, dtype=np.float32)
        query = self.tbl.search(qv).limit(k).exact()
        if cut is not None:
            query = query.where("year >= ?", cut)
        hits = query.to_list()
        want = numpy_topk(self.model, qv, k, None if cut is None else (lambda y: y >= cut))
        assert len(hits) == len(want)
        np.testing.assert_allclose([h["score"] for h in hits], [s for s, _ in want], atol=1e-5)
        for h in hits:  # ids agree up to ties: each hit's exact score is the model's
            v, y = self.model[h["id"]]
            s = float(np.dot(v, qv) / (np.linalg.norm(v) * np.linalg.norm(qv)))
            assert abs(s - h["score"]) < 1e-5 and (cut is None or y >= cut)

    @invariant()
    def contents_agree(self):
        assert len(self.tbl) == len(self.model)
        rows = self.tbl.to_arrow(with_vectors=True).to_pylist()
        got = {r["id"]: (list(map(int, r["vector"])), r["year"]) for r in rows}
        assert got == self.model


TestTableModel = TableModel.TestCase
TestTableModel.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 300), st.integers(1, 40), st.integers(0, 2**31 - 1),
       st.sampled_from(["cosine", "dot", "l2"]))
def test_exact_equals_numpy_topk(n, k, seed, metric):
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as d:
        tbl = vecstore.connect(d).create_table("t", dim=12, metric=metric)
        x = rng.normal(size=(n, 12)).astype(np.float32)
        tbl.add([{"id": str(i), "vector": v} for i, v in enumerate(x)])
        q = rng.normal(size=12).astype(np.float32)
        if metric == "cosine":
            s = (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))
        elif metric == "dot":
            s = x @ q
        else:
            s = -((x - q) ** 2).sum(axis=1)
        want = np.sort(s)[::-1][:k]
        hits = tbl.search(q).limit(k).exact().hits()
        np.testing.assert_allclose(hits.scores, want, rtol=1e-4, atol=1e-4)
        # ids agree up to ties: each hit's score is NumPy's score of that row
        np.testing.assert_allclose([s[int(i)] for i in hits.ids], hits.scores, rtol=1e-4, atol=1e-4)
