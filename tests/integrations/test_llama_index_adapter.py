"""The LlamaIndex adapter against the real llama-index-core: every FilterOperator checked against
LlamaIndex's own in-memory filter semantics, nested AND/OR/NOT, nodes read back whole, delete by
ref_doc_id, get/delete nodes, clear, reopening, query modes, and VectorStoreIndex end to end."""

from __future__ import annotations

import pytest

pytest.importorskip("llama_index.core", reason="needs the llama-index extra")

from llama_index.core import Document, StorageContext, VectorStoreIndex  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from llama_index.core.schema import (  # noqa: E402
    IndexNode,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llama_index.core.vector_stores.utils import build_metadata_filter_fn  # noqa: E402

import vecstore  # noqa: E402
from vecstore import FilterError, InvalidArgumentError  # noqa: E402
from vecstore.integrations._common import has_keyword_search  # noqa: E402
from vecstore.integrations.llama_index import VecstoreVectorStore  # noqa: E402

from .helpers import DIM, bag_of_words  # noqa: E402


class BagOfWords(BaseEmbedding):
    """A deterministic local embedding model (texts sharing words are close)."""

    def _get_query_embedding(self, query: str) -> list[float]:
        return bag_of_words(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return bag_of_words(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return bag_of_words(text)


F, C = FilterOperator, FilterCondition

METAS = [
    {"year": 2017 + i % 6, "lang": ["en", "fr", "de", "", None][i % 5],
     "score": [0.5, 1.5, 2.0, 3.25][i % 4], "title": ["The Cat", "a dog", "CATALOG", "bird"][i % 4]}
    | ({"tags": [["a"], ["a", "b"], [], ["c", "b"]][i % 4]} if i % 5 else {})
    for i in range(20)
]
for _m in METAS[::7]:
    del _m["year"]


def _nodes():
    return [TextNode(id_=f"n{i}", text=f"node {i}", metadata=m, embedding=bag_of_words(f"node {i}"),
                     relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i % 3}")})
            for i, m in enumerate(METAS)]


@pytest.fixture
def store(tmp_path):
    return VecstoreVectorStore(path=tmp_path / "store", table_name="nodes")


@pytest.fixture
def filled(store):
    store.add(_nodes())
    return store


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A filled store for the tests that only read (built once: the suite runs on 2 cores)."""
    store = VecstoreVectorStore(path=tmp_path_factory.mktemp("li") / "store")
    store.add(_nodes())
    return store


def _ids(store, filters, **query) -> set[str]:
    q = VectorStoreQuery(query_embedding=bag_of_words("node"), similarity_top_k=100, filters=filters, **query)
    return set(store.query(q).ids)


def oracle(meta: dict, filters: MetadataFilters) -> bool:
    """LlamaIndex's in-memory semantics for each leaf; nesting combined the same way."""
    results = [oracle(meta, f) if isinstance(f, MetadataFilters)
               else build_metadata_filter_fn(lambda _: meta, MetadataFilters(filters=[f]))("x")
               for f in filters.filters]
    cond = filters.condition or C.AND
    return all(results) if cond is C.AND else any(results) if cond is C.OR else not any(results)


def _leaf(key, op, value=None):
    return MetadataFilter(key=key, operator=op, value=value)


LEAVES = [
    _leaf("year", F.EQ, 2019), _leaf("year", F.NE, 2019), _leaf("year", F.GT, 2019),
    _leaf("year", F.GTE, 2019), _leaf("year", F.LT, 2019), _leaf("year", F.LTE, 2019),
    _leaf("score", F.GT, 1.5), _leaf("score", F.IN, [0.5, 2.0]), _leaf("lang", F.IN, ["en", "de"]),
    _leaf("lang", F.NIN, ["en", "de"]), _leaf("year", F.NIN, [2017, 2018]), _leaf("lang", F.EQ, "fr"),
    _leaf("lang", F.NE, "fr"), _leaf("title", F.TEXT_MATCH, "Cat"),
    _leaf("title", F.TEXT_MATCH_INSENSITIVE, "cat"), _leaf("tags", F.CONTAINS, "b"),
    _leaf("tags", F.ANY, ["a", "c"]), _leaf("tags", F.ALL, ["a", "b"]), _leaf("tags", F.ANY, []),
    _leaf("tags", F.IS_EMPTY), _leaf("lang", F.IS_EMPTY), _leaf("year", F.IS_EMPTY),
    _leaf("nobody", F.EQ, 1), _leaf("nobody", F.NE, 1), _leaf("nobody", F.IS_EMPTY),
    _leaf("title", F.LT, "b"),
]


def test_every_filter_operator_is_tested():
    assert {leaf.operator for leaf in LEAVES} == set(FilterOperator)


@pytest.mark.parametrize("leaf", LEAVES, ids=[f"{f.key} {f.operator.name} {f.value}" for f in LEAVES])
def test_each_operator_selects_what_llama_index_selects(shared, leaf):
    flt = MetadataFilters(filters=[leaf])
    assert _ids(shared, flt) == {f"n{i}" for i, m in enumerate(METAS) if oracle(m, flt)}


GROUPS = [
    MetadataFilters(filters=[LEAVES[2], LEAVES[8]]),
    MetadataFilters(filters=[LEAVES[0], LEAVES[15]], condition=C.OR),
    MetadataFilters(filters=[LEAVES[11], LEAVES[15]], condition=C.NOT),
    MetadataFilters(filters=[LEAVES[6], MetadataFilters(filters=[LEAVES[4], LEAVES[13]], condition=C.OR)]),
    MetadataFilters(filters=[MetadataFilters(filters=[LEAVES[16], LEAVES[9]]),
                             MetadataFilters(filters=[LEAVES[1]], condition=C.NOT)], condition=C.OR),
    MetadataFilters(filters=[MetadataFilters(filters=[LEAVES[3], MetadataFilters(
        filters=[LEAVES[19], LEAVES[20]], condition=C.OR)], condition=C.NOT), LEAVES[7]]),
    MetadataFilters(filters=[MetadataFilters(filters=[], condition=C.OR), LEAVES[0]], condition=C.OR),
]


@pytest.mark.parametrize("flt", GROUPS, ids=[f"group{i}" for i in range(len(GROUPS))])
def test_nested_and_or_not_combine_like_llama_index(shared, flt):
    assert _ids(shared, flt) == {f"n{i}" for i, m in enumerate(METAS) if oracle(m, flt)}


def test_filters_on_the_reference_document_and_id_restrictions(shared):
    by_doc = {f"n{i}" for i in range(len(METAS)) if i % 3 == 1}
    for key in ("doc_id", "ref_doc_id", "document_id"):
        assert _ids(shared, MetadataFilters(filters=[_leaf(key, F.EQ, "doc1")])) == by_doc
    assert _ids(shared, None, doc_ids=["doc1"]) == by_doc
    assert _ids(shared, None, node_ids=["n1", "n2", "n5"]) == {"n1", "n2", "n5"}
    assert _ids(shared, MetadataFilters(filters=[LEAVES[0]]), doc_ids=["doc0", "doc2"]) == {
        f"n{i}" for i, m in enumerate(METAS) if i % 3 != 1 and m.get("year") == 2019}


@pytest.mark.parametrize("leaf, message", [
    (_leaf("title", F.CONTAINS, "C"), "needs a list-valued key.*TEXT_MATCH"),
    (_leaf("tags", F.EQ, "a"), "holds lists"),
    (_leaf("year", F.TEXT_MATCH, "20"), "needs a string-valued key"),
    (_leaf("year", F.IN, 2019), "takes a list"),
    (_leaf("metadata.year", F.EQ, 1), "kept only in each document's metadata JSON"),
])
def test_filters_that_do_not_fit_the_data_are_refused(shared, leaf, message):
    with pytest.raises(FilterError, match=message):
        shared.query(VectorStoreQuery(query_embedding=bag_of_words("x"),
                                      filters=MetadataFilters(filters=[leaf])))


# -- nodes ----------------------------------------------------------------------------------------
def test_nodes_read_back_whole_and_survive_reopening(tmp_path):
    text = TextNode(id_="t", text="hello world", metadata={"page": 3, "id": "meta-id", "_x": 1},
                    embedding=bag_of_words("hello world"), excluded_llm_metadata_keys=["page"],
                    start_char_idx=4, end_char_idx=15,
                    relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id="docA"),
                                   NodeRelationship.NEXT: RelatedNodeInfo(node_id="u")})
    index_node = IndexNode(id_="i", text="an index node", index_id="sub", embedding=bag_of_words("index"))
    store = VecstoreVectorStore(path=tmp_path, table_name="t")
    assert store.add([text, index_node]) == ["t", "i"]
    again = VecstoreVectorStore(path=tmp_path, table_name="t")
    got = again.get_nodes(node_ids=["i", "t", "missing"])
    assert [type(n).__name__ for n in got] == ["IndexNode", "TextNode"]
    want = text.model_dump(exclude={"embedding"})
    assert got[1].model_dump(exclude={"embedding"}) == want and got[1].hash == text.hash
    assert got[0].index_id == "sub" and got[0].text == "an index node"
    assert again.client.schema.field("page").type == "double"
    assert {"metadata.id", "metadata._x"} <= set(again.client.schema.names)
    assert _ids(again, MetadataFilters(filters=[_leaf("id", F.EQ, "meta-id")])) == {"t"}


def test_delete_by_ref_doc_id_get_and_delete_nodes_and_clear(filled):
    filled.delete("doc1")
    remaining = {n.node_id for n in filled.get_nodes()}
    assert remaining == {f"n{i}" for i in range(len(METAS)) if i % 3 != 1}
    year_2019 = MetadataFilters(filters=[_leaf("year", F.EQ, 2019)])
    assert {n.node_id for n in filled.get_nodes(filters=year_2019)} == {
        f"n{i}" for i in range(len(METAS)) if i % 3 != 1 and METAS[i].get("year") == 2019}
    lang_de = MetadataFilters(filters=[_leaf("lang", F.EQ, "de")])
    filled.delete_nodes(node_ids=["n0", "n2", "n3"], filters=lang_de)
    assert {n.node_id for n in filled.get_nodes(node_ids=["n0", "n2", "n3"])} == {"n0", "n3"}
    filled.delete_nodes(node_ids=["n0"])
    assert filled.get_nodes(node_ids=["n0"]) == []
    with pytest.raises(InvalidArgumentError, match="clear"):
        filled.delete_nodes()
    filled.clear()
    assert filled.get_nodes() == [] and len(filled.client) == 0
    assert filled.query(VectorStoreQuery(query_embedding=bag_of_words("x"))).ids == []


def test_adding_a_node_again_replaces_it(store):
    store.add([TextNode(id_="a", text="old", metadata={"v": 1}, embedding=bag_of_words("old"))])
    store.add([TextNode(id_="a", text="new", metadata={"w": "x"}, embedding=bag_of_words("new"))])
    [node] = store.get_nodes()
    assert node.text == "new" and node.metadata == {"w": "x"}


def test_bad_nodes_are_refused_before_anything_is_written(store):
    ok = TextNode(id_="ok", text="fine", embedding=bag_of_words("fine"))
    with pytest.raises(InvalidArgumentError, match="no embedding"):
        store.add([ok, TextNode(id_="x", text="no vector")])
    with pytest.raises(InvalidArgumentError, match="metadata key 'nested'.*dict"):
        store.add([ok, TextNode(id_="y", text="y", metadata={"nested": {"a": 1}}, embedding=[0.0] * DIM)])
    with pytest.raises(InvalidArgumentError, match="different lengths"):
        store.add([ok, TextNode(id_="z", text="z", embedding=[1.0, 0.0])])
    assert store.client is None
    store.add([ok])
    with pytest.raises(InvalidArgumentError, match="holds 32-dimensional vectors but these are 2"):
        store.add([TextNode(id_="z", text="z", embedding=[1.0, 0.0])])


def test_reads_nodes_of_a_table_written_without_the_adapter(tmp_path):
    tbl = vecstore.connect(tmp_path).create_table("native", dim=DIM)
    tbl.add([{"id": "c1", "vector": bag_of_words("red apple"), "text": "red apple", "doc_id": "d",
              "kind": "fruit"}])
    store = VecstoreVectorStore(path=tmp_path, table_name="native")
    [node] = store.query(VectorStoreQuery(query_embedding=bag_of_words("apple"), similarity_top_k=3)).nodes
    assert (node.node_id, node.text, node.ref_doc_id) == ("c1", "red apple", "d")
    assert node.metadata == {"kind": "fruit"}


# -- query modes ----------------------------------------------------------------------------------
def test_query_modes(filled):
    q = bag_of_words("node 3")
    res = filled.query(VectorStoreQuery(query_embedding=q, similarity_top_k=3))
    assert res.ids[0] == "n3" and res.similarities[0] == pytest.approx(1.0, abs=1e-6)
    assert res.similarities == sorted(res.similarities, reverse=True)
    with pytest.raises(InvalidArgumentError, match="SVM.*not supported; supported: DEFAULT"):
        filled.query(VectorStoreQuery(query_embedding=q, mode=VectorStoreQueryMode.SVM))
    with pytest.raises(InvalidArgumentError, match="needs query_embedding"):
        filled.query(VectorStoreQuery(query_str="node"))
    if not has_keyword_search(filled.client):
        for mode in (VectorStoreQueryMode.TEXT_SEARCH, VectorStoreQueryMode.HYBRID):
            with pytest.raises(InvalidArgumentError, match="needs vecstore with keyword search"):
                filled.query(VectorStoreQuery(query_embedding=q, query_str="node 3", mode=mode))
        return
    kw = filled.query(VectorStoreQuery(query_str="node 3", mode=VectorStoreQueryMode.TEXT_SEARCH))
    assert kw.ids[0] == "n3"
    hy = filled.query(VectorStoreQuery(query_embedding=q, query_str="node 3", alpha=0.5,
                                       mode=VectorStoreQueryMode.HYBRID))
    assert hy.ids[0] == "n3"


def test_mmr_prefers_diverse_nodes(tmp_path):
    store = VecstoreVectorStore(path=tmp_path)
    vecs = {"a": [0.9, 0.1, 0.0], "a2": [0.9, 0.1, 0.0001], "b": [0.7, 0.0, 0.7]}
    store.add([TextNode(id_=k, text=k, embedding=v) for k, v in vecs.items()])
    q = [1.0, 0.0, 0.0]
    assert store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=2)).ids == ["a", "a2"]
    for threshold, want in ((0.3, ["a", "b"]), (1.0, ["a", "a2"])):
        res = store.query(VectorStoreQuery(query_embedding=q, similarity_top_k=2, mmr_threshold=threshold,
                                           mode=VectorStoreQueryMode.MMR))
        assert res.ids == want and [n.node_id for n in res.nodes] == want


# -- end to end -----------------------------------------------------------------------------------
DOCS = [
    Document(id_="cats", text="Cats purr and sleep in the sun.", metadata={"topic": "pets", "year": 2021}),
    Document(id_="dogs", text="Dogs bark at the mail carrier.", metadata={"topic": "pets", "year": 2019}),
    Document(id_="cars", text="Cars need fuel and oil.", metadata={"topic": "machines", "year": 2021}),
]


def test_vector_store_index_end_to_end(tmp_path):
    store = VecstoreVectorStore(path=tmp_path, table_name="rag")
    index = VectorStoreIndex.from_documents(
        DOCS, storage_context=StorageContext.from_defaults(vector_store=store), embed_model=BagOfWords())
    hits = index.as_retriever(similarity_top_k=1).retrieve("do cats sleep")
    assert [h.node.ref_doc_id for h in hits] == ["cats"] and hits[0].node.text == DOCS[0].text
    pets_2019 = MetadataFilters(filters=[_leaf("topic", F.EQ, "pets"), _leaf("year", F.LT, 2020)])
    hits = index.as_retriever(similarity_top_k=3, filters=pets_2019).retrieve("cats")
    assert [h.node.ref_doc_id for h in hits] == ["dogs"]
    index.delete_ref_doc("cats")
    hits = index.as_retriever(similarity_top_k=3).retrieve("do cats sleep")
    assert "cats" not in {h.node.ref_doc_id for h in hits} and len(hits) == 2
    # a later process: the same directory, no docstore needed
    reopened = VectorStoreIndex.from_vector_store(VecstoreVectorStore(path=tmp_path, table_name="rag"),
                                                  embed_model=BagOfWords())
    assert reopened.as_retriever(similarity_top_k=1).retrieve("cars fuel")[0].node.ref_doc_id == "cars"


async def test_async_methods(store):
    nodes = _nodes()[:4]
    assert await store.async_add(nodes) == ["n0", "n1", "n2", "n3"]
    res = await store.aquery(VectorStoreQuery(query_embedding=bag_of_words("node 2"), similarity_top_k=1))
    assert res.ids == ["n2"]
    assert [n.node_id for n in await store.aget_nodes(node_ids=["n1"])] == ["n1"]
    await store.adelete("doc0")
    await store.adelete_nodes(node_ids=["n1"])
    assert [n.node_id for n in await store.aget_nodes()] == ["n2"]
    await store.aclear()
    assert await store.aget_nodes() == []
