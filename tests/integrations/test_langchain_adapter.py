"""The LangChain adapter beyond LangChain's standard suite: metadata as columns, filters
compiled to bound SQL (checked against a Python model of their semantics), scores per metric,
MMR, search modes, the retriever, async paths, and how the table is created and reopened."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("langchain_core", reason="needs the langchain extra")

from langchain_core.documents import Document  # noqa: E402
from langchain_core.embeddings import Embeddings  # noqa: E402

import vecstore  # noqa: E402
from vecstore import FilterError, InvalidArgumentError, SchemaError  # noqa: E402
from vecstore.integrations._common import has_keyword_search  # noqa: E402
from vecstore.integrations.langchain import Fusion, VecstoreRetriever, VecstoreVectorStore  # noqa: E402

from .helpers import DIM, bag_of_words  # noqa: E402


class BagOfWords(Embeddings):
    def __init__(self) -> None:
        self.calls = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [bag_of_words(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return bag_of_words(text)


class AsyncOnly(BagOfWords):
    """Its sync methods fail: a store that reaches them from an async method is not async."""

    def embed_documents(self, texts):
        raise AssertionError("the sync embed_documents was called")

    def embed_query(self, text):
        raise AssertionError("the sync embed_query was called")

    async def aembed_documents(self, texts):
        return [bag_of_words(t) for t in texts]

    async def aembed_query(self, text):
        return bag_of_words(text)


class Fixed(Embeddings):
    """Given vectors for given texts (for exact score checks)."""

    def __init__(self, vectors: dict[str, list[float]]) -> None:
        self.vectors = vectors

    def embed_documents(self, texts):
        return [self.vectors[t] for t in texts]

    def embed_query(self, text):
        return self.vectors[text]


@pytest.fixture
def store(tmp_path):
    return VecstoreVectorStore(BagOfWords(), path=tmp_path / "store", table_name="docs")


# -- metadata -------------------------------------------------------------------------------------
def test_metadata_reads_back_exactly_and_keys_become_typed_columns(store):
    meta = {"id": 7, "year": 2021, "price": 2, "lang": None, "tags": ["a", "b"], "_private": "x",
            "text": "shadow", "Ünï": "ß", "flag": True, "np": np.float32(0.5)}
    store.add_texts(["hello"], [meta], ids=["d1"])
    store.add_texts(["world"], [{"price": 2.5, "year": 2020}], ids=["d2"])
    [doc] = store.get_by_ids(["d1"])
    expected = {**meta, "np": 0.5}
    assert doc.metadata == expected and type(doc.metadata["price"]) is int  # the JSON, not the column
    assert doc.page_content == "hello" and doc.id == "d1"
    schema = store.table.schema
    # numbers are DOUBLE columns (JSON has one kind of number), so 2 and then 2.5 both fit
    assert schema.field("year").type == "double" and schema.field("price").type == "double"
    assert schema.field("tags").type.value_type == "string"
    # names vecstore or the adapter keep go to metadata.<key>
    assert {"metadata.id", "metadata._private", "metadata.text"} <= set(schema.names)
    assert [d.id for d in store.similarity_search("x", k=5, filter={"id": 7})] == ["d1"]
    assert [d.id for d in store.similarity_search("x", k=5, filter={"_private": "x"})] == ["d1"]


@pytest.mark.parametrize("value, what", [
    ({"a": 1}, "dict"), (b"raw", "bytes"), ([[1, 2]], "list"),
    (__import__("datetime").date(2024, 1, 1), "date"), ({1, 2}, "set"),
])
def test_metadata_that_cannot_be_a_column_is_refused_and_nothing_is_written(store, value, what):
    store.add_texts(["first"], [{"k": 1}], ids=["ok"])
    version = store.table.version
    with pytest.raises(InvalidArgumentError, match=f"metadata key 'bad'.*{what}|{what}.*'bad'"):
        store.add_texts(["a", "b"], [{"k": 2}, {"bad": value}], ids=["x", "y"])
    assert store.table.version == version and len(store.table) == 1


def test_a_key_keeps_one_type_across_documents(store):
    store.add_texts(["a"], [{"n": 1, "big": 2**70}], ids=["a"])
    with pytest.raises(SchemaError, match="field 'n'.*metadata key is one typed column"):
        store.add_texts(["b"], [{"n": "one"}], ids=["b"])
    store.add_texts(["c"], [{"n": 2.5}], ids=["c"])
    assert len(store.table) == 2
    assert store.get_by_ids(["a"])[0].metadata == {"n": 1, "big": 2**70}  # exact in the JSON
    assert [d.id for d in store.similarity_search("x", k=5, filter={"n": {"$gt": 2}})] == ["c"]


def test_keys_differing_only_in_case_keep_the_first_as_a_column(store):
    store.add_texts(["a", "b"], [{"Author": "x"}, {"author": "y"}], ids=["a", "b"])
    assert [d.metadata for d in store.get_by_ids(["a", "b"])] == [{"Author": "x"}, {"author": "y"}]
    assert "Author" in store.table.schema.names and "author" not in store.table.schema.names
    assert [d.id for d in store.similarity_search("a", k=5, filter={"Author": "x"})] == ["a"]
    with pytest.raises(FilterError, match="differs only in letter case"):
        store.similarity_search("a", filter={"author": "y"})


# -- filters: a Python model of the semantics -----------------------------------------------------
def _field(v, cond):
    if not isinstance(cond, dict):
        cond = {"$eq": cond}
    return all(_op(v, op, x) for op, x in cond.items())


def _op(v, op, x):
    if op == "$not":
        return not _field(v, x)
    if op == "$exists":
        return (v is not None) == x
    if op in ("$eq", "$ne") and x is None:
        return (v is None) == (op == "$eq")
    if v is None:
        return op in ("$ne", "$nin")
    return {"$eq": lambda: v == x, "$ne": lambda: v != x, "$gt": lambda: v > x,
            "$gte": lambda: v >= x, "$lt": lambda: v < x, "$lte": lambda: v <= x,
            "$in": lambda: v in x, "$nin": lambda: v not in x,
            "$contains": lambda: x in v}[op]()


def model(meta, spec) -> bool:
    for key, cond in spec.items():
        if key == "$and":
            ok = all(model(meta, s) for s in cond)
        elif key == "$or":
            ok = any(model(meta, s) for s in cond)
        elif key == "$not":
            ok = not model(meta, cond)
        else:
            ok = _field(meta.get(key), cond)
        if not ok:
            return False
    return True


METAS = [
    {"id": i, "year": 2017 + i % 6, "lang": ["en", "fr", "de", None][i % 4],
     "price": [0.5, 1.5, 2, 3.25][i % 4], "flag": i % 3 == 0}
    | ({"tags": [["a"], ["a", "b"], [], ["c"]][i % 4]} if i % 5 else {})
    for i in range(16)
]
for _m in METAS[::7]:
    del _m["year"]

FILTERS = [
    {"year": 2021}, {"year": {"$ne": 2021}}, {"year": {"$gt": 2018, "$lte": 2021}},
    {"lang": {"$in": ["en", "fr"]}}, {"lang": {"$nin": ["en"]}}, {"tags": {"$contains": "a"}},
    {"$or": [{"year": {"$lt": 2019}}, {"lang": "de"}]}, {"$and": [{"flag": True}, {"price": {"$gte": 1.5}}]},
    {"$not": {"year": 2021}}, {"lang": {"$not": {"$in": ["en"]}}}, {"lang": None}, {"lang": {"$ne": None}},
    {"year": {"$exists": False}}, {"tags": {"$exists": True}}, {"nobody": 1}, {"nobody": {"$ne": 1}},
    {"nobody": {"$nin": [1, 2]}}, {"year": 2021, "lang": "en"}, {"id": {"$in": [1, 5, 9]}},
    {"$not": {"$or": [{"lang": "en"}, {"tags": {"$contains": "c"}}]}}, {"price": {"$in": []}},
    {"price": {"$nin": []}}, {"$or": []}, {"$and": []}, {"price": {"$lt": 2}, "flag": False},
    {"$and": [{"$or": [{"lang": "fr"}, {"lang": "de"}]}, {"$not": {"tags": {"$contains": "c"}}}]},
]


def _fill(store):
    store.add_texts([f"document {i}" for i in range(len(METAS))], METAS,
                    ids=[f"d{i}" for i in range(len(METAS))])
    return store


@pytest.fixture
def filled(store):
    return _fill(store)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A filled store for the tests that only read (built once: the suite runs on 2 cores)."""
    return _fill(VecstoreVectorStore(BagOfWords(), path=tmp_path_factory.mktemp("lc") / "store"))


@pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
def test_filters_select_what_the_model_selects(shared, spec):
    got = {d.id for d in shared.similarity_search("document", k=100, filter=spec)}
    want = {f"d{i}" for i, m in enumerate(METAS) if model(m, spec)}
    assert got == want


def test_filters_bind_their_values_and_quote_their_keys(store):
    store.add_texts(["a", "b"], [{'we"ird key': "x' OR '1'='1", "n": 1}, {'we"ird key': "y", "n": 2}],
                    ids=["a", "b"])
    hits = store.similarity_search("a", k=5, filter={'we"ird key': "x' OR '1'='1"})
    assert [d.id for d in hits] == ["a"]
    assert store.similarity_search("a", k=5, filter={'we"ird key': "' OR 1=1 --"}) == []


def test_like_and_ilike(filled):
    filled.add_texts(["t"], [{"title": "The Cat"}], ids=["t"])
    assert [d.id for d in filled.similarity_search("x", k=50, filter={"title": {"$like": "The%"}})] == ["t"]
    assert filled.similarity_search("x", k=50, filter={"title": {"$like": "the%"}}) == []
    assert [d.id for d in filled.similarity_search("x", k=50, filter={"title": {"$ilike": "%cat"}})] == ["t"]


@pytest.mark.parametrize("spec, message", [
    ({"year": {"$regex": "x"}}, "unknown operator '\\$regex'"),
    ({"$nor": []}, "unknown operator '\\$nor'"),
    ({"tags": ["a"]}, "a list is not a value"),
    ({"lang": {"$contains": "e"}}, "needs a list-valued key"),
    ({"tags": {"$gt": "a"}}, "holds lists"),
    ({"year": {"$in": 2021}}, "takes a list"),
    ({"year": {"$gt": None}}, "None is not a value"),
    ({"price": float("nan")}, "NaN"),
    ({"year": {"$exists": 1}}, "true or false"),
    ({"metadata.id": 1}, "kept only in each document's metadata JSON"),
    ({"$and": {"year": 1}}, "takes a list"),
    ({"year": {}}, "empty dict"),
    ({"year": {"$like": 1}}, "takes a string"),
    ({"year": {"$like": "20%"}}, "needs a string-valued key"),
])
def test_malformed_filters_are_refused_with_a_message(shared, spec, message):
    with pytest.raises(FilterError, match=message):
        shared.similarity_search("x", filter=spec)


def test_a_filter_on_an_empty_store_is_still_checked(store):
    assert store.similarity_search("x", filter={"year": 1}) == []
    with pytest.raises(FilterError):
        store.similarity_search("x", filter={"year": {"$bad": 1}})


# -- writes ---------------------------------------------------------------------------------------
def test_upsert_delete_by_ids_and_filter(filled):
    filled.add_texts(["new text"], [{"year": 1999}], ids=["d3"])
    [doc] = filled.get_by_ids(["d3"])
    assert doc.page_content == "new text" and doc.metadata == {"year": 1999}
    assert len(filled.table) == len(METAS)
    filled.delete(filter={"year": {"$lt": 2000}})
    assert filled.get_by_ids(["d3"]) == []
    filled.delete(["d1", "d2", "d4"], filter={"lang": "fr"})  # only those ids that match
    assert {d.id for d in filled.get_by_ids(["d1", "d2", "d4"])} == {"d2", "d4"}
    assert filled.delete([]) is True
    with pytest.raises(InvalidArgumentError, match="clear"):
        filled.delete()
    filled.clear()
    assert len(filled.table) == 0 and filled.similarity_search("x") == []


def test_batch_size_commits_each_batch(store):
    store.add_texts(["a", "b", "c"], ids=["a", "b", "c"], batch_size=2)
    assert store.table.version == 3 and store.embedding.calls == 2  # create, then two commits
    with pytest.raises(InvalidArgumentError, match="unexpected arguments"):
        store.add_texts(["d"], bogus=1)


def test_bad_add_arguments(store):
    with pytest.raises(InvalidArgumentError, match="2 metadatas for 1 texts"):
        store.add_texts(["a"], [{}, {}])
    with pytest.raises(InvalidArgumentError, match="2 ids for 1 texts"):
        store.add_texts(["a"], ids=["a", "b"])
    with pytest.raises(InvalidArgumentError, match="expected a str"):
        store.add_texts([1])
    assert store.table is None


# -- the table ------------------------------------------------------------------------------------
def test_the_table_is_created_with_the_embedding_dimension_and_reopened(tmp_path):
    store = VecstoreVectorStore.from_texts(["a", "b"], BagOfWords(), ids=["a", "b"], path=tmp_path,
                                           table_name="t", metric="dot")
    assert store.table.dim == DIM and store.table.metric.value == "dot"
    again = VecstoreVectorStore(BagOfWords(), path=tmp_path, table_name="t")
    assert [d.id for d in again.similarity_search("a", k=1)] == ["a"]
    with pytest.raises(InvalidArgumentError, match="compares vectors by dot, not l2"):
        VecstoreVectorStore(BagOfWords(), path=tmp_path, table_name="t", metric="l2")
    other = VecstoreVectorStore(Fixed({"c": [1.0, 0.0]}), path=tmp_path, table_name="t")
    with pytest.raises(InvalidArgumentError, match="holds 32-dimensional vectors but these are 2"):
        other.add_texts(["c"])
    with pytest.raises(InvalidArgumentError, match="path="):
        VecstoreVectorStore.from_texts(["a"], BagOfWords())


def test_reads_a_table_written_without_the_adapter(tmp_path):
    db = vecstore.connect(tmp_path)
    tbl = db.create_table("native", dim=DIM)
    tbl.add([{"id": "n1", "vector": bag_of_words("red apple"), "text": "red apple", "kind": "fruit"},
             {"id": "n2", "vector": bag_of_words("blue car"), "text": "blue car", "kind": None}])
    store = VecstoreVectorStore(BagOfWords(), path=db, table_name="native")
    docs = store.similarity_search("red apple", k=2)
    assert docs[0] == Document(id="n1", page_content="red apple", metadata={"kind": "fruit"})
    assert docs[1].metadata == {}
    assert [d.id for d in store.similarity_search("x", k=2, filter={"kind": "fruit"})] == ["n1"]


# -- scores ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["cosine", "dot", "l2"])
def test_scores_are_vecstores_and_relevance_maps_them_to_0_1(tmp_path, metric):
    vecs = {"q": [0.6, 0.8, 0.0], "a": [0.6, 0.8, 0.0], "b": [0.0, 0.6, 0.8], "c": [-0.6, -0.8, 0.0]}
    store = VecstoreVectorStore(Fixed(vecs), path=tmp_path, metric=metric)
    store.add_texts(["a", "b", "c"], ids=["a", "b", "c"])
    got = store.similarity_search_with_score("q", k=3)
    q = np.array(vecs["q"])
    expect = {t: (float(q @ vecs[t]) if metric != "l2" else -float(np.sum((q - vecs[t]) ** 2)))
              for t in "abc"}
    assert [d.id for d, _ in got] == ["a", "b", "c"]
    for doc, score in got:
        assert score == pytest.approx(expect[doc.id], abs=1e-6)
    rel = dict((d.id, s) for d, s in store.similarity_search_with_relevance_scores("q", k=3))
    assert rel["a"] == pytest.approx(1.0, abs=1e-6) and rel["c"] == pytest.approx(0.0, abs=1e-6)
    assert rel["b"] == pytest.approx((1 + 0.48) / 2, abs=1e-6)  # (1 + cos) / 2 for every metric
    kept = store.as_retriever(search_type="similarity_score_threshold",
                              search_kwargs={"score_threshold": 0.5, "k": 3}).invoke("q")
    assert [d.id for d in kept] == ["a", "b"]


def test_maximal_marginal_relevance_prefers_diverse_documents(tmp_path):
    vecs = {"q": [1.0, 0.0, 0.0], "a": [0.9, 0.1, 0.0], "a2": [0.9, 0.1, 0.0001], "b": [0.7, 0.0, 0.7]}
    store = VecstoreVectorStore(Fixed(vecs), path=tmp_path)
    store.add_texts(["a", "a2", "b"], ids=["a", "a2", "b"])
    assert [d.id for d in store.similarity_search("q", k=2)] == ["a", "a2"]
    assert [d.id for d in store.max_marginal_relevance_search("q", k=2, lambda_mult=0.3)] == ["a", "b"]
    assert [d.id for d in store.max_marginal_relevance_search("q", k=2, lambda_mult=1.0)] == ["a", "a2"]
    by_vec = store.max_marginal_relevance_search_by_vector(vecs["q"], k=2, fetch_k=3, lambda_mult=0.3)
    assert [d.id for d in by_vec] == ["a", "b"]
    mmr = store.as_retriever(search_type="mmr", search_kwargs={"k": 2, "lambda_mult": 0.3}).invoke("q")
    assert [d.id for d in mmr] == ["a", "b"]
    assert [d.id for d in store.similarity_search_by_vector(vecs["b"], k=1)] == ["b"]


# -- modes, retriever, async ----------------------------------------------------------------------
def test_search_modes_are_checked(filled):
    with pytest.raises(InvalidArgumentError, match="unknown search mode 'fuzzy'; use one of: vector"):
        filled.similarity_search("x", search_mode="fuzzy")
    with pytest.raises(InvalidArgumentError, match="unknown fusion 'max'; use one of: rrf, weighted"):
        filled.similarity_search("x", search_mode="hybrid", fusion="max")
    with pytest.raises(InvalidArgumentError, match="alpha must be a number in"):
        Fusion.weighted(alpha=1.5)
    with pytest.raises(InvalidArgumentError, match="relevance scores"):
        filled.similarity_search_with_relevance_scores("x", search_mode="keyword")


def test_keyword_and_hybrid_modes(filled):
    """Without keyword search in vecstore the modes say what is missing; with it they run."""
    if not has_keyword_search(filled.table):
        for mode in ("keyword", "hybrid"):
            with pytest.raises(InvalidArgumentError, match="needs vecstore with keyword search"):
                filled.similarity_search("document 3", search_mode=mode)
        return
    filled.add_texts(["zebra crossing"], ids=["z"])
    assert filled.similarity_search("zebra", k=1, search_mode="keyword")[0].id == "z"
    assert filled.similarity_search("zebra", k=1, search_mode="hybrid")[0].id == "z"
    for fusion in ("rrf", "weighted", "zscore", Fusion.rrf(k=10), Fusion.weighted(alpha=0.2)):
        assert filled.similarity_search("zebra", k=1, search_mode="hybrid", fusion=fusion)[0].id == "z"
    store = VecstoreVectorStore(BagOfWords(), path=filled.handle.db, table_name="docs",
                                search_mode="keyword")
    assert VecstoreRetriever(vectorstore=store, k=1).invoke("zebra")[0].id == "z"


def test_retriever_settings_and_per_call_overrides(filled):
    retriever = VecstoreRetriever(vectorstore=filled, k=3, filter={"lang": "en"})
    docs = retriever.invoke("document 4")
    assert len(docs) == 3 and all(d.metadata["lang"] == "en" for d in docs)
    assert docs[0].id == "d4"
    assert len(retriever.invoke("document 4", k=1)) == 1
    assert {d.metadata["lang"] for d in retriever.invoke("x", k=16, filter={"lang": "fr"})} == {"fr"}
    via_store = filled.as_retriever(search_kwargs={"k": 2, "filter": {"lang": "de"}}).invoke("document 10")
    assert via_store[0].id == "d10" and len(via_store) == 2
    assert {d.metadata["lang"] for d in via_store} == {"de"}


async def test_async_paths_use_the_embeddings_async_api(tmp_path):
    store = VecstoreVectorStore(AsyncOnly(), path=tmp_path)
    ids = await store.aadd_texts(["alpha beta", "gamma"], [{"n": 1}, {"n": 2}], ids=["a", "g"])
    assert ids == ["a", "g"]
    assert [d.id for d in await store.asimilarity_search("alpha", k=1)] == ["a"]
    pairs = await store.asimilarity_search_with_score("gamma", k=2, filter={"n": 2})
    assert [d.id for d, _ in pairs] == ["g"] and pairs[0][1] == pytest.approx(1.0, abs=1e-6)
    mmr = await store.amax_marginal_relevance_search("alpha", k=1)
    assert [d.id for d in mmr] == ["a"]
    retriever = VecstoreRetriever(vectorstore=store, k=1)
    assert [d.id for d in await retriever.ainvoke("gamma")] == ["g"]
    await store.adelete(["a"])
    assert await store.aget_by_ids(["a", "g"]) == [Document(id="g", page_content="gamma", metadata={"n": 2})]
