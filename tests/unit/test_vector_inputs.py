"""What a vector may hold (issue 10, items 6 and 11): real numbers only, with a norm float32
arithmetic can score. Rows (dicts, Arrow, pandas) and queries (``search``, ``search_batch``) are
checked alike; a refusal names the row or query and the field, and commits nothing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from vecstore import InvalidArgumentError

# The accepted range of a vector's L2 norm (vecstore.vectors.MIN_NORM / MAX_NORM, spelled out
# so these tests also run, and fail, on code without that module).
MIN_NORM, MAX_NORM = 2.0 ** -60, 2.0 ** 60

METRICS = ["cosine", "dot", "l2"]
GOOD = {"id": "b", "vector": [1.0, 2.0, 3.0, 4.0]}


def _refused(tbl, batch, pattern):
    version, count = tbl.version, len(tbl)
    with pytest.raises(InvalidArgumentError, match=pattern):
        tbl.add(batch)
    assert tbl.version == version and len(tbl) == count


# --- item 6: extreme finite vectors ------------------------------------------------------------

EXTREME = [
    [1e-35] * 4,  # cosine scored it 4e-5 against itself
    [3e38] * 4,  # cosine NaN, dot inf
    [1e19] * 4,  # norm 2e19: its squared norm overflows float32
    [1e-20] * 4,  # norm 2e-20: its squared norm is below float32's normal range
    [0.0, 0.0, 0.0, 2.0 ** 61],
    [0.0, 2.0 ** -61, 0.0, 0.0],
]


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("vector", EXTREME, ids=lambda v: f"{max(np.abs(v)):g}")
def test_rows_with_a_norm_outside_the_accepted_range_are_refused(tmp_db, metric, vector):
    tbl = tmp_db.create_table("t", dim=4, metric=metric)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0]}])
    _refused(tbl, [GOOD, {"id": "c", "vector": vector}],
             r"row 1 \(id 'c'\): field 'vector' has L2 norm .* outside the accepted range "
             r"\[8\.67e-19, 1\.15e\+18\]")
    arrow = pa.table({"id": ["b", "c"], "vector": pa.array([GOOD["vector"], vector],
                                                            pa.list_(pa.float32(), 4))})
    _refused(tbl, arrow, r"row 1 \(id 'c'\).*accepted range")


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("vector", EXTREME, ids=lambda v: f"{max(np.abs(v)):g}")
def test_queries_with_a_norm_outside_the_accepted_range_are_refused(tmp_db, metric, vector):
    tbl = tmp_db.create_table("t", dim=4, metric=metric)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0]}])
    with pytest.raises(InvalidArgumentError, match=r"the query vector has L2 norm .*accepted range"):
        tbl.search(vector)
    with pytest.raises(InvalidArgumentError, match=r"query 1 has L2 norm .*accepted range"):
        tbl.search_batch([[1, 2, 3, 4], vector])


def test_the_range_bounds_are_inclusive_and_zero_is_kept_for_dot_and_l2(tmp_db):
    for metric in METRICS:
        tbl = tmp_db.create_table(metric, dim=2, metric=metric)
        tbl.add([{"id": "lo", "vector": [MIN_NORM, 0]}, {"id": "hi", "vector": [0, MAX_NORM]}])
        assert len(tbl.search([MAX_NORM, 0]).limit(2).to_list()) == 2
        assert len(tbl.search([0, MIN_NORM]).limit(2).to_list()) == 2
        if metric == "cosine":
            _refused(tbl, [{"id": "z", "vector": [0, 0]}], "all zeros")
        else:
            tbl.add([{"id": "z", "vector": [0, 0]}])  # exactly zero: no rounding, scores exact
            assert tbl.search([0, 0]).limit(1).to_list()[0]["score"] == 0


def _edge_vectors(rng, n, dim):
    """Random directions with norms spread log-uniformly over the whole accepted range, and a
    few rows at its very ends."""
    x = rng.normal(size=(n, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    exps = rng.uniform(-59.9, 59.9, size=n)
    exps[:4] = [-59.99, -59.99, 59.99, 59.99]
    return (x * (2.0 ** exps)[:, None]).astype(np.float32)


def _truth(metric, vectors, q):
    v, q = vectors.astype(np.float64), q.astype(np.float64)
    if metric == "cosine":
        return (v @ q) / (np.linalg.norm(v, axis=1) * np.linalg.norm(q))
    if metric == "dot":
        return v @ q
    return -((v - q) ** 2).sum(axis=1)


def _scale(metric, vectors, q):
    """The magnitude float32 rounding errors are relative to, per row."""
    nv = np.linalg.norm(vectors.astype(np.float64), axis=1)
    nq = float(np.linalg.norm(q.astype(np.float64)))
    if metric == "cosine":
        return np.ones_like(nv)
    if metric == "dot":
        return nv * nq
    return (nv + nq) ** 2


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("index", [None, "flat", "hnsw", "faiss-hnsw", "hnsw-sq", "ivf", "ivf-pq",
                                   "ivf-rabitq", "binary-hnsw", "binary-ivf"])
def test_vectors_across_the_whole_range_score_finite_and_correct(tmp_db, rng, metric, index):
    if index not in (None, "flat", "hnsw"):
        pytest.importorskip("faiss")
    dim, n, k = 64, 600, 5
    vectors = _edge_vectors(rng, n, dim)
    tbl = tmp_db.create_table("t", dim=dim, metric=metric)
    tbl.add([{"id": f"r{i}", "vector": v} for i, v in enumerate(vectors)])
    if index is not None:
        tbl.create_index(index, progress=False)
    picks = [0, 1, 2, 3, *rng.choice(np.arange(4, n), 6, replace=False)]
    for i in picks:
        for factor in (2.0 ** -40, 1.0, 2.0 ** 40):
            q = vectors[i] * np.float32(factor)
            if not MIN_NORM <= np.linalg.norm(q.astype(np.float64)) <= MAX_NORM:
                continue
            truth = _truth(metric, vectors, q)
            scale = _scale(metric, vectors, q)
            best_rows = np.argsort(-truth, kind="stable")[:k]
            for exact in (False, True):
                hits = tbl.search(q).limit(k).exact(exact).to_list()
                rows = np.array([int(h["id"][1:]) for h in hits])
                got = np.array([h["score"] for h in hits], dtype=np.float64)
                assert np.isfinite(got).all(), (i, factor, got)
                # each score is its row's true score, up to float32 rounding of that magnitude
                np.testing.assert_array_less(np.abs(got - truth[rows]), 1e-4 * scale[rows] + 1e-30)
                if exact:
                    # the exact scan finds the true best scores (ties make the ids ambiguous)
                    tol = 1e-4 * np.maximum(scale[rows], scale[best_rows]) + 1e-30
                    np.testing.assert_array_less(np.abs(got - truth[best_rows]), tol)
            if metric == "cosine":
                top = tbl.search(q).limit(1).to_list()[0]
                assert top["id"] == f"r{i}" and abs(top["score"] - 1.0) < 1e-5, (i, factor, top)


# --- item 11: vectors of the wrong type --------------------------------------------------------

BAD_VALUES = [
    (["1", "2", "3", "4"], "str"),
    ([True, False, True, False], "bool"),
    ([1.0, 2.0, 3.0, True], "bool"),
    ([1, 2, "3", 4], "str"),
    ([dt.datetime(2020, 1, d) for d in range(1, 5)], "datetime"),
    ([Decimal("1"), Decimal("2"), Decimal("3"), Decimal("4")], "Decimal"),
    ([1 + 0j, 2, 3, 4], "complex"),
    ([None, 1, 2, 3], "None"),
    (np.array(["1", "2", "3", "4"]), "str"),
    (np.array([True, False, True, False]), "bool"),
    (np.array(["2020-01-01"] * 4, dtype="datetime64[D]"), "datetime64"),
    (np.array([1, 2, 3, 4], dtype="timedelta64[s]"), "timedelta64"),
    (np.array([1, 2, 3, 4], dtype=np.complex64), "complex"),
    (np.array([1.0, 2.0, "x", 4.0], dtype=object), "str"),
    ("1234", "str"),
    (b"1234", "bytes"),
]


@pytest.mark.parametrize("value,kind", BAD_VALUES, ids=lambda v: repr(v)[:30])
def test_dict_rows_with_vectors_of_the_wrong_type_are_refused(tmp_db, value, kind):
    tbl = tmp_db.create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0]}])
    _refused(tbl, [GOOD, {"id": "c", "vector": value}],
             rf"row 1 \(id 'c'\): field 'vector' holds {kind}.*real numbers")


ARROW_BAD = [
    (pa.list_(pa.string()), [["1", "2", "3", "4"]] * 2, "string"),
    (pa.list_(pa.bool_()), [[True, False, True, False]] * 2, "bool"),
    (pa.list_(pa.timestamp("s")), [[dt.datetime(2020, 1, 1)] * 4] * 2, "timestamp"),
    (pa.list_(pa.date32()), [[dt.date(2020, 1, 1)] * 4] * 2, "date32"),
    (pa.list_(pa.decimal128(5, 2)), [[Decimal("1.5")] * 4] * 2, "decimal128"),
    (pa.list_(pa.binary(), 4), [[b"a"] * 4] * 2, "binary"),
    (pa.large_list(pa.large_string()), [["1"] * 4] * 2, "large_string"),
]


@pytest.mark.parametrize("type_,values,kind", ARROW_BAD, ids=lambda v: str(v)[:30])
def test_arrow_rows_with_vectors_of_the_wrong_type_are_refused(tmp_db, type_, values, kind):
    tbl = tmp_db.create_table("t", dim=4)
    batch = pa.table({"id": ["b", "c"], "vector": pa.array(values, type_)})
    _refused(tbl, batch, rf"row 0 \(id 'b'\): field 'vector' holds {kind}.*real numbers")


def test_pandas_rows_with_vectors_of_the_wrong_type_are_refused(tmp_db):
    pd = pytest.importorskip("pandas")
    tbl = tmp_db.create_table("t", dim=4)
    for values, kind in [([["1", "2", "3", "4"]] * 2, "string"),
                         ([np.array([True, False, True, False])] * 2, "bool"),
                         ([[dt.datetime(2020, 1, 1)] * 4] * 2, "timestamp")]:
        df = pd.DataFrame({"id": ["b", "c"], "vector": values})
        _refused(tbl, df, rf"row 0 \(id 'b'\): field 'vector' holds {kind}")


def test_every_real_number_type_is_accepted_and_stored_as_float32(tmp_db):
    pd = pytest.importorskip("pandas")
    tbl = tmp_db.create_table("t", dim=4)
    want = [1.0, 2.0, 3.0, 4.0]
    dict_values = [
        [1, 2, 3, 4], (1.0, 2.0, 3.0, 4.0), [np.float32(1), np.int64(2), np.uint8(3), 4.0],
        [np.float16(1), np.float64(2), np.int8(3), np.int32(4)],
        *(np.array(want, dtype=d) for d in ("float16", "float32", "float64", "int8", "uint16",
                                              "int64", "longdouble")),
        np.array(want, dtype=object), np.array(want)[None, :][0],
    ]
    tbl.add([{"id": f"d{i}", "vector": v} for i, v in enumerate(dict_values)])
    for j, t in enumerate([pa.float16(), pa.float32(), pa.float64(), pa.int8(), pa.uint32(),
                           pa.int64()]):
        values = pa.array([np.array(want, dtype=t.to_pandas_dtype())], pa.list_(t))
        tbl.add(pa.table({"id": [f"a{j}"], "vector": values}))
        tbl.add(pa.table({"id": [f"f{j}"], "vector": pa.array(
            [np.array(want, dtype=t.to_pandas_dtype())], pa.list_(t, 4))}))
    tbl.add(pd.DataFrame({"id": ["p0", "p1"], "vector": [np.array(want), [1, 2, 3, 4]]}))
    stored = tbl.to_arrow(with_vectors=True)
    assert stored.num_rows == len(dict_values) + 12 + 2
    assert all(v == want for v in stored.column("vector").to_pylist())


@pytest.mark.parametrize("value,kind", BAD_VALUES, ids=lambda v: repr(v)[:30])
def test_queries_of_the_wrong_type_are_refused(tmp_db, value, kind):
    tbl = tmp_db.create_table("t", dim=4)
    tbl.add([{"id": "a", "vector": [1, 0, 0, 0]}])
    if isinstance(value, str):
        with pytest.raises(InvalidArgumentError, match="embedder"):  # a text query
            tbl.search(value)
    else:
        with pytest.raises(InvalidArgumentError, match=rf"the query vector holds {kind}.*real numbers"):
            tbl.search(value)
    with pytest.raises(InvalidArgumentError, match=rf"query 1 holds {kind}.*real numbers"):
        tbl.search_batch([[1, 2, 3, 4], value])


def test_batches_of_queries_of_the_wrong_type_are_refused(tmp_db):
    tbl = tmp_db.create_table("t", dim=2)
    tbl.add([{"id": "a", "vector": [1, 0]}])
    for value, kind in [(np.array([[True, False], [False, True]]), "bool"),
                        (np.array([["1", "2"]]), "str"),
                        (np.zeros((1, 2), dtype="datetime64[s]"), "datetime64")]:
        with pytest.raises(InvalidArgumentError, match=rf"the batch of queries holds {kind}.*real numbers"):
            tbl.search_batch(value)
    hits = tbl.search_batch([np.array([1, 0], dtype=np.int8), (np.float16(0.5), 0)]).to_list()
    assert [h[0]["id"] for h in hits] == ["a", "a"]
    with pytest.raises(InvalidArgumentError, match="query 1 has shape"):
        tbl.search_batch([[1, 0], [1, 0, 0]])
