"""LlamaIndex: a vecstore table as a vector store (``BasePydanticVectorStore``).

>>> import tempfile
>>> from llama_index.core.schema import TextNode
>>> from llama_index.core.vector_stores.types import (
...     FilterOperator, MetadataFilter, MetadataFilters, VectorStoreQuery)
>>> from vecstore.integrations.llama_index import VecstoreVectorStore
>>> store = VecstoreVectorStore(path=tempfile.mkdtemp())
>>> store.add([TextNode(id_="a", text="cats purr", embedding=[1.0, 0.0], metadata={"year": 2021}),
...            TextNode(id_="b", text="dogs bark", embedding=[0.9, 0.1], metadata={"year": 2019})])
['a', 'b']
>>> flt = MetadataFilters(filters=[MetadataFilter(key="year", operator=FilterOperator.LT, value=2020)])
>>> store.query(VectorStoreQuery(query_embedding=[1.0, 0.0], similarity_top_k=2, filters=flt)).ids
['b']

Each node is one row: ``id`` (the node id), ``vector`` (its embedding), ``text`` (its content),
``doc_id`` (its ``ref_doc_id``: ``delete(ref_doc_id)`` is one filter), ``node_json`` and
``node_type`` (the node without its text and embedding, to rebuild it) and one typed column per
metadata key, which filters use. See docs/integrations.md.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InvalidArgumentError, SchemaError, missing_extra
from ._common import (
    Cond,
    Expr,
    Fusion,
    Group,
    Layout,
    Not,
    Op,
    SearchMode,
    TableHandle,
    and_sql,
    check_k,
    check_metadata,
    columns_for,
    compile_filter,
    explain_schema_error,
    in_sql,
    run_query,
    start_query,
)

try:
    from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
    from llama_index.core.schema import BaseNode, MetadataMode, NodeRelationship, RelatedNodeInfo, TextNode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        FilterOperator,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict
    from pydantic import PrivateAttr
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise missing_extra(exc.name or "llama_index.core", "llama-index") from exc

TEXT_COLUMN = "text"
DOC_ID_COLUMN = "doc_id"
NODE_JSON_COLUMN = "node_json"
NODE_TYPE_COLUMN = "node_type"
LAYOUT = Layout(columns=(TEXT_COLUMN, DOC_ID_COLUMN, NODE_JSON_COLUMN, NODE_TYPE_COLUMN),
                # LlamaIndex stores filter on the reference document under these three names
                aliases={"doc_id": DOC_ID_COLUMN, "ref_doc_id": DOC_ID_COLUMN,
                         "document_id": DOC_ID_COLUMN})

# Every FilterOperator of the installed llama-index-core that has an Op of the same name (all of
# them in 0.14: EQ NE GT GTE LT LTE IN NIN ANY ALL TEXT_MATCH TEXT_MATCH_INSENSITIVE CONTAINS
# IS_EMPTY); an operator added later is refused by name until it is mapped.
_OPERATORS: dict[FilterOperator, Op] = {
    fo: Op[fo.name] for fo in FilterOperator if fo.name in Op.__members__}
_SPELL = {op: f"FilterOperator.{fo.name}" for fo, op in _OPERATORS.items()}

MODES = {
    VectorStoreQueryMode.DEFAULT: SearchMode.VECTOR,
    VectorStoreQueryMode.TEXT_SEARCH: SearchMode.KEYWORD,
    VectorStoreQueryMode.HYBRID: SearchMode.HYBRID,
}
"""LlamaIndex query modes and the vecstore search each one runs (MMR: vector search, then
maximal marginal relevance over the candidates)."""

MMR_PREFETCH = 4
"""MMR picks its ``k`` nodes among the best ``max(20, MMR_PREFETCH * k)`` vector matches."""


# -- filters ------------------------------------------------------------------------------------
def parse_filters(filters: MetadataFilters | None) -> Expr | None:
    """LlamaIndex ``MetadataFilters`` (nested, with AND/OR/NOT) as a filter expression. NOT
    means "none of the filters matches", as in LlamaIndex's own in-memory store."""
    if filters is None:
        return None
    if not isinstance(filters, MetadataFilters):
        raise InvalidArgumentError(f"filters must be MetadataFilters, got {type(filters).__name__}")
    if not filters.filters:
        return None
    return _group(filters)


def _group(filters: MetadataFilters) -> Expr:
    parts = tuple(_group(f) if isinstance(f, MetadataFilters) else _leaf(f) for f in filters.filters)
    condition = filters.condition or FilterCondition.AND
    if condition is FilterCondition.AND:
        return Group(parts)
    if condition is FilterCondition.OR:
        return Group(parts, any_of=True)
    if condition is FilterCondition.NOT:
        return Not(Group(parts, any_of=True))
    raise InvalidArgumentError(f"unknown filter condition {condition!r}")  # pragma: no cover


def _leaf(f: MetadataFilter) -> Expr:
    op = _OPERATORS.get(f.operator)
    if op is None:
        raise InvalidArgumentError(
            f"filter operator {f.operator!r} is not supported; supported: "
            f"{', '.join(o.name for o in _OPERATORS)}")
    return Cond(f.key, op, f.value)


# -- nodes <-> rows -----------------------------------------------------------------------------
def _row(node: BaseNode, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """The row for ``node`` (without metadata columns) and its checked metadata."""
    if not isinstance(node, BaseNode):
        raise InvalidArgumentError(f"node {index} is a {type(node).__name__}, expected a LlamaIndex node")
    if node.embedding is None:
        raise InvalidArgumentError(
            f"node {index} (id {node.node_id!r}) has no embedding; embed nodes before adding them "
            f"(VectorStoreIndex does this with its embed_model)")
    metadata = check_metadata(node.metadata, f"node {index} (id {node.node_id!r})")
    saved = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
    row = {"id": node.node_id, "vector": node.embedding,
           TEXT_COLUMN: node.get_content(metadata_mode=MetadataMode.NONE),
           DOC_ID_COLUMN: node.ref_doc_id, NODE_JSON_COLUMN: saved["_node_content"],
           NODE_TYPE_COLUMN: saved["_node_type"]}
    return row, metadata


def _node(row: dict[str, Any]) -> BaseNode:
    """The node a row holds; a row written by other means (``vecstore ingest``) becomes a
    ``TextNode`` whose metadata are its non-null attribute columns."""
    text = row.get(TEXT_COLUMN) or ""
    if row.get(NODE_JSON_COLUMN):
        return metadata_dict_to_node({"_node_content": row[NODE_JSON_COLUMN],
                                      "_node_type": row.get(NODE_TYPE_COLUMN)}, text=text)
    skip = {"id", "score", "vector", *LAYOUT.columns}
    relationships = {}
    if row.get(DOC_ID_COLUMN):
        relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=row[DOC_ID_COLUMN])
    return TextNode(id_=row["id"], text=text, relationships=relationships,
                    metadata={k: v for k, v in row.items() if k not in skip and v is not None})


class VecstoreVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over one vecstore table.

    ``VecstoreVectorStore(path="./store", table_name="llama_index")``: the table is opened if it
    exists, else created by the first ``add`` with the nodes' embedding dimension and ``metric``
    (``"cosine"`` by default; an existing table keeps its own). Nodes keep their text, metadata
    and relationships; adding a node whose id exists replaces it. Query modes: ``DEFAULT``
    (vector), ``TEXT_SEARCH`` (keyword, BM25), ``HYBRID`` (``alpha`` set: weighted fusion, 1 =
    vector only; unset: vecstore's default fusion) and ``MMR``. Similarities are vecstore's scores,
    higher is better (cosine, dot, ``-distance**2`` for l2).
    """

    stores_text: bool = True
    is_embedding_query: bool = True
    path: str
    table_name: str = "llama_index"
    metric: str | None = None

    _handle: TableHandle = PrivateAttr()

    def __init__(self, path: str | os.PathLike[str], table_name: str = "llama_index",
                 metric: str | None = None, **kwargs: Any) -> None:
        super().__init__(path=os.fspath(path), table_name=table_name,  # type: ignore[call-arg]
                         metric=metric, **kwargs)
        self._handle = TableHandle(self.path, table_name, metric)

    @classmethod
    def class_name(cls) -> str:
        return "VecstoreVectorStore"

    @property
    def client(self) -> Any:
        """The vecstore :class:`~vecstore.Table` (None until the first add)."""
        return self._handle.table()

    # -- writing --------------------------------------------------------------------------------
    def add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        """Store ``nodes`` (each with its embedding) in one commit; returns their ids."""
        if kwargs:
            raise InvalidArgumentError(f"unexpected arguments {sorted(kwargs)}")
        if not nodes:
            return []
        pairs = [_row(n, i) for i, n in enumerate(nodes)]
        dims = {len(row["vector"]) for row, _ in pairs}
        if len(dims) != 1:
            raise InvalidArgumentError(f"the nodes' embeddings have different lengths: {sorted(dims)}")
        tbl = self._handle.for_vectors(dims.pop())
        columns = columns_for([m for _, m in pairs], tbl.schema, LAYOUT)
        rows = [{**row, **cols} for (row, _), cols in zip(pairs, columns, strict=True)]
        try:
            return tbl.upsert(rows)
        except SchemaError as exc:
            raise explain_schema_error(exc) from None

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the document ``ref_doc_id``."""
        if delete_kwargs:
            raise InvalidArgumentError(f"unexpected arguments {sorted(delete_kwargs)}")
        tbl = self._handle.table()
        if tbl is not None and DOC_ID_COLUMN in tbl.schema.names:
            tbl.delete(f"{DOC_ID_COLUMN} = ?", str(ref_doc_id))

    def delete_nodes(self, node_ids: list[str] | None = None,
                     filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        """Delete the nodes with these ids that match ``filters`` (either may be left out, not
        both: :meth:`clear` deletes every node)."""
        if delete_kwargs:
            raise InvalidArgumentError(f"unexpected arguments {sorted(delete_kwargs)}")
        expr = parse_filters(filters)
        if node_ids is None and expr is None:
            raise InvalidArgumentError("delete_nodes() needs node_ids= or filters=; clear() "
                                       "deletes every node")
        tbl = self._handle.table()
        if tbl is None:
            return
        sql, params = self._where(tbl, expr, node_ids=node_ids)
        assert sql is not None
        tbl.delete(sql, *params)

    def clear(self) -> None:
        """Delete every node (the table and its earlier versions stay)."""
        tbl = self._handle.table()
        if tbl is not None and len(tbl):
            tbl.delete("true")

    # -- reading --------------------------------------------------------------------------------
    @staticmethod
    def _where(tbl: Any, expr: Expr | None, *, node_ids: Sequence[str] | None = None,
               doc_ids: Sequence[str] | None = None) -> tuple[str | None, list[Any]]:
        parts = [compile_filter(expr, tbl, LAYOUT, _SPELL)]
        if node_ids is not None:
            parts.append(in_sql("id", node_ids))
        if doc_ids is not None:
            parts.append(in_sql(DOC_ID_COLUMN, doc_ids) if DOC_ID_COLUMN in tbl.schema.names
                         else ("false", []))
        return and_sql(*parts)

    def get_nodes(self, node_ids: list[str] | None = None,
                  filters: MetadataFilters | None = None) -> list[BaseNode]:
        """The nodes with these ids (in that order) and/or matching ``filters``; every node
        when both are None."""
        tbl = self._handle.table()
        expr = parse_filters(filters)
        if tbl is None:
            compile_filter(expr, None, LAYOUT, _SPELL)
            return []
        sql, params = self._where(tbl, expr, node_ids=node_ids)
        rows = tbl.to_arrow(where=sql, params=params).to_pylist()
        if node_ids is not None:
            order = {nid: i for i, nid in enumerate(dict.fromkeys(map(str, node_ids)))}
            rows.sort(key=lambda r: order[r["id"]])
        return [_node(r) for r in rows]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Run ``query``: its mode, ``similarity_top_k`` (``hybrid_top_k`` for hybrid when
        set), ``filters``, ``doc_ids`` and ``node_ids`` (non-empty lists restrict the nodes
        searched; an empty list restricts nothing, as LlamaIndex's retriever expects)."""
        if kwargs:
            raise InvalidArgumentError(f"unexpected arguments {sorted(kwargs)}")
        k = check_k(query.similarity_top_k, "similarity_top_k")
        expr = parse_filters(query.filters)
        mmr = query.mode == VectorStoreQueryMode.MMR
        mode = SearchMode.VECTOR if mmr else MODES.get(query.mode)
        if mode is None:
            raise InvalidArgumentError(
                f"query mode {query.mode!r} is not supported; supported: "
                f"{', '.join(m.name for m in [*MODES, VectorStoreQueryMode.MMR])}")
        if mode.needs_vector and query.query_embedding is None:
            raise InvalidArgumentError(f"a {query.mode.name} query needs query_embedding")
        if mode is SearchMode.HYBRID and query.hybrid_top_k is not None:
            k = check_k(query.hybrid_top_k, "hybrid_top_k")
        tbl = self._handle.table()
        if tbl is None or len(tbl) == 0:
            compile_filter(expr, None, LAYOUT, _SPELL)
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        # An empty list restricts nothing: VectorStoreIndex.as_retriever() passes node_ids=[]
        # (its own node list, empty when the store keeps the text), as do other callers.
        where = self._where(tbl, expr, node_ids=query.node_ids or None,
                            doc_ids=query.doc_ids or None)
        fusion = None if query.alpha is None else Fusion.weighted(query.alpha)
        search = start_query(tbl, mode, text=query.query_str, vector=query.query_embedding,
                             fusion=fusion)
        if not mmr:
            rows = run_query(search, k, where)
            return VectorStoreQueryResult(nodes=[_node(r) for r in rows],
                                          similarities=[float(r["score"]) for r in rows],
                                          ids=[r["id"] for r in rows])
        rows = run_query(search, max(20, MMR_PREFETCH * k), where,
                         [n for n in tbl.schema.names if n != "id"])
        assert query.query_embedding is not None  # checked above: MMR runs a vector search
        scores, ids = get_top_k_mmr_embeddings(
            list(query.query_embedding), [list(np.asarray(r["vector"], dtype=float)) for r in rows],
            similarity_top_k=k, embedding_ids=list(range(len(rows))),
            mmr_threshold=query.mmr_threshold)
        chosen = [rows[i] for i in ids]
        return VectorStoreQueryResult(nodes=[_node(r) for r in chosen],
                                      similarities=[float(s) for s in scores],
                                      ids=[r["id"] for r in chosen])

    # -- async: the same work in a thread, so an event loop is not blocked by disk or search ------
    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        return await asyncio.to_thread(self.add, nodes, **kwargs)

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    async def adelete_nodes(self, node_ids: list[str] | None = None,
                            filters: MetadataFilters | None = None, **delete_kwargs: Any) -> None:
        await asyncio.to_thread(self.delete_nodes, node_ids, filters, **delete_kwargs)

    async def aclear(self) -> None:
        await asyncio.to_thread(self.clear)

    async def aget_nodes(self, node_ids: list[str] | None = None,
                         filters: MetadataFilters | None = None) -> list[BaseNode]:
        return await asyncio.to_thread(self.get_nodes, node_ids, filters)

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        return await asyncio.to_thread(self.query, query, **kwargs)


__all__ = ["MODES", "VecstoreVectorStore", "parse_filters"]
