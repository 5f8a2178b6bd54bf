"""LangChain: a vecstore table as a ``VectorStore``, and a retriever with vector, keyword and
hybrid search.

>>> import tempfile
>>> from langchain_core.documents import Document
>>> from langchain_core.embeddings import DeterministicFakeEmbedding
>>> from vecstore.integrations.langchain import VecstoreVectorStore
>>> store = VecstoreVectorStore(DeterministicFakeEmbedding(size=8), path=tempfile.mkdtemp())
>>> store.add_documents([Document("cats purr", metadata={"year": 2021, "lang": "en"}),
...                      Document("chats", metadata={"year": 2019, "lang": "fr"})], ids=["a", "b"])
['a', 'b']
>>> [d.id for d in store.similarity_search("cats purr", k=2, filter={"year": {"$gte": 2020}})]
['a']

Each document is one row of the table: ``id`` (the document id), ``vector`` (its embedding),
``text`` (``page_content``), ``metadata`` (the metadata as JSON, read back exactly) and one typed
column per metadata key, which filters use. See docs/integrations.md.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np

from ..db import Database
from ..errors import FilterError, InvalidArgumentError, SchemaError, missing_extra
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
    check_k,
    check_metadata,
    columns_for,
    compile_filter,
    explain_schema_error,
    metadata_json,
    relevance_fn,
    run_query,
    start_query,
    vectors_of,
)

try:
    from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.retrievers import BaseRetriever
    from langchain_core.runnables.config import run_in_executor
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
    from pydantic import ConfigDict
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without the extra
    raise missing_extra(exc.name or "langchain_core", "langchain") from exc

TEXT_COLUMN = "text"
METADATA_COLUMN = "metadata"
LAYOUT = Layout(columns=(TEXT_COLUMN, METADATA_COLUMN))

_OPERATORS = {
    "$eq": Op.EQ, "$ne": Op.NE, "$gt": Op.GT, "$gte": Op.GTE, "$lt": Op.LT, "$lte": Op.LTE,
    "$in": Op.IN, "$nin": Op.NIN, "$contains": Op.CONTAINS, "$like": Op.LIKE,
    "$ilike": Op.ILIKE, "$exists": Op.EXISTS,
}
_SPELL = {op: name for name, op in _OPERATORS.items()}


# -- filters ------------------------------------------------------------------------------------
def parse_filter(spec: Mapping[str, Any] | None) -> Expr | None:
    """A LangChain metadata filter (a dict) as a filter expression.

    ``{"year": 2021}`` is equality; ``{"year": {"$gte": 2020, "$lt": 2024}}`` joins its
    operators with AND; several keys are joined with AND; ``$and``/``$or`` take a list of
    filters and ``$not`` a filter (at the top, or inside a key: ``{"lang": {"$not": {"$in":
    [...]}}}``). Operators: ``$eq $ne $gt $gte $lt $lte $in $nin $contains $like $ilike
    $exists``.
    """
    if spec is None:
        return None
    if not isinstance(spec, Mapping):
        raise FilterError(f"a filter is a dict such as {{'year': 2021}}, got {type(spec).__name__}")
    if not spec:
        return None
    return _parse_doc(spec)


def _parse_doc(spec: Any, where: str = "filter") -> Expr:
    if not isinstance(spec, Mapping) or not spec:
        raise FilterError(f"{where} must be a non-empty dict of conditions, got {spec!r}")
    parts: list[Expr] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)):
                raise FilterError(f"{key} takes a list of filters, got {value!r}")
            parts.append(Group(tuple(_parse_doc(v, f"an item of {key}") for v in value),
                               any_of=key == "$or"))
        elif key == "$not":
            parts.append(Not(_parse_doc(value, "$not")))
        elif isinstance(key, str) and key.startswith("$"):
            raise FilterError(f"unknown operator {key!r} where a metadata key was expected; at the "
                              f"top of a filter use $and, $or, $not or a metadata key")
        else:
            parts.append(_parse_key(key, value))
    return parts[0] if len(parts) == 1 else Group(tuple(parts))


def _parse_key(key: str, value: Any) -> Expr:
    if isinstance(value, Mapping):
        if not value:
            raise FilterError(f"the conditions on {key!r} are an empty dict")
        parts: list[Expr] = []
        for op, operand in value.items():
            if op == "$not":
                parts.append(Not(_parse_key(key, operand)))
            elif op in _OPERATORS:
                parts.append(Cond(key, _OPERATORS[op], operand))
            else:
                raise FilterError(f"unknown operator {op!r} on {key!r}; use one of: "
                                  f"{', '.join([*_OPERATORS, '$not'])}")
        return parts[0] if len(parts) == 1 else Group(tuple(parts))
    if isinstance(value, (list, tuple)):
        raise FilterError(f"{key!r}: a list is not a value to compare with; use "
                          f"{{'$in': [...]}} for one of several values, {{'$contains': x}} for a "
                          f"list that holds x")
    return Cond(key, Op.EQ, value)


# -- rows -> documents --------------------------------------------------------------------------
def _document(row: Mapping[str, Any]) -> Document:
    return Document(id=row["id"], page_content=row.get(TEXT_COLUMN) or "", metadata=_metadata(row))


def _metadata(row: Mapping[str, Any]) -> dict[str, Any]:
    """The metadata JSON a row was written with, or, for a row written by other means (a table
    of ``vecstore ingest``), its non-null attribute columns."""
    raw = row.get(METADATA_COLUMN)
    if isinstance(raw, str):
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise InvalidArgumentError(
                f"row {row['id']!r}: its {METADATA_COLUMN!r} column is not JSON ({exc}); this "
                f"table was not written by the LangChain adapter") from None
        if isinstance(value, dict):
            return value
    skip = {"id", "score", "vector", TEXT_COLUMN, METADATA_COLUMN}
    return {k: v for k, v in row.items() if k not in skip and v is not None}


class VecstoreVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over one vecstore table.

    Parameters
    ----------
    embedding:
        The LangChain ``Embeddings`` that embeds documents and queries.
    path:
        The store's directory (created if missing), or a :class:`vecstore.Database`.
    table_name:
        The table; created on the first add with the embedding's dimension, or opened.
    metric:
        ``"cosine"`` (the default for a new table), ``"dot"`` or ``"l2"``; an existing table
        keeps its own, and asking for another is an error.
    search_mode:
        ``"vector"`` (default), ``"keyword"`` (BM25 over the text) or ``"hybrid"``; each search
        call may override it with ``search_mode=``.
    fusion:
        How hybrid search fuses its two rankings: None (vecstore's default), ``"rrf"``,
        ``"weighted"``, ``"zscore"`` or a :class:`Fusion` (``Fusion.weighted(alpha=0.7)``).

    Adding a document whose id exists replaces it (upsert). Scores returned by
    ``similarity_search_with_score`` are vecstore's, higher is better: cosine or dot
    similarity, ``-distance**2`` for l2.
    """

    _KNOWN_ADD_ARGS: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    def __init__(self, embedding: Embeddings, *, path: str | os.PathLike[str] | Database,
                 table_name: str = "langchain", metric: str | None = None,
                 search_mode: str | SearchMode = SearchMode.VECTOR,
                 fusion: Fusion | str | None = None) -> None:
        if not isinstance(embedding, Embeddings):
            raise InvalidArgumentError(
                f"embedding must be a langchain_core Embeddings, got {type(embedding).__name__}")
        self.embedding = embedding
        self.handle = TableHandle(path, table_name, metric)
        self.search_mode = SearchMode.parse(search_mode)
        self.fusion = Fusion.parse(fusion)

    def __repr__(self) -> str:
        return (f"VecstoreVectorStore({str(self.handle.db.path)!r}, table_name="
                f"{self.handle.name!r}, search_mode={self.search_mode.value!r})")

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    @property
    def table(self) -> Any:
        """The vecstore :class:`~vecstore.Table` (None until the first add)."""
        return self.handle.table()

    # -- writing --------------------------------------------------------------------------------
    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Embed ``texts`` and store them with their metadata; an id that exists is replaced.
        Returns the ids (generated for texts without one). ``batch_size=n`` embeds and commits
        ``n`` texts at a time (each batch is one atomic commit); by default the whole call is
        one commit."""
        text_list, metas, id_list, parts = self._check_add(texts, metadatas, ids, kwargs)
        out: list[str] = []
        for part in parts:
            vectors = self.embedding.embed_documents(text_list[part])
            out.extend(self._write(text_list[part], metas[part], id_list[part], vectors))
        return out

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None,
                         *, ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """:meth:`add_texts` with the embedding model's async API (the write runs in a thread)."""
        text_list, metas, id_list, parts = self._check_add(texts, metadatas, ids, kwargs)
        out: list[str] = []
        for part in parts:
            vectors = await self.embedding.aembed_documents(text_list[part])
            out.extend(await run_in_executor(None, self._write, text_list[part], metas[part],
                                             id_list[part], vectors))
        return out

    def _check_add(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None,
                   ids: Sequence[str | None] | None, kwargs: dict[str, Any]
                   ) -> tuple[list[str], list[dict[str, Any]], list[str | None], list[slice]]:
        """The texts, checked metadatas and ids, and the slices to embed and commit together."""
        unknown = set(kwargs) - self._KNOWN_ADD_ARGS
        if unknown:
            raise InvalidArgumentError(f"unexpected arguments {sorted(unknown)}; add_texts takes "
                                       f"texts, metadatas, ids and batch_size")
        batch_size = kwargs.get("batch_size")
        if batch_size is not None:
            batch_size = check_k(batch_size, "batch_size")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise InvalidArgumentError(f"text {i} is a {type(t).__name__}, expected a str")
        if metadatas is None:
            metas: list[Any] = [{}] * len(texts)
        else:
            metas = list(metadatas)
            if len(metas) != len(texts):
                raise InvalidArgumentError(f"got {len(metas)} metadatas for {len(texts)} texts")
        if ids is None:
            id_list: list[str | None] = [None] * len(texts)
        else:
            id_list = [None if i is None else str(i) for i in ids]
            if len(id_list) != len(texts):
                raise InvalidArgumentError(f"got {len(id_list)} ids for {len(texts)} texts")
        checked = [check_metadata(m, f"document {i}" + (f" (id {id_list[i]!r})" if id_list[i] else ""))
                   for i, m in enumerate(metas)]
        step = batch_size or max(len(texts), 1)
        return texts, checked, id_list, [slice(i, i + step) for i in range(0, len(texts), step)]

    def _write(self, texts: list[str], metadatas: list[dict[str, Any]], ids: list[str | None],
               vectors: Any) -> list[str]:
        if not texts:
            return []
        mat = vectors_of(vectors, len(texts), "the embedding model")
        tbl = self.handle.for_vectors(mat.shape[1])
        columns = columns_for(metadatas, tbl.schema, LAYOUT)
        rows = [{"id": i, "vector": v, TEXT_COLUMN: t, METADATA_COLUMN: metadata_json(m), **c}
                for i, v, t, m, c in zip(ids, mat, texts, metadatas, columns, strict=True)]
        try:
            return tbl.upsert(rows)
        except SchemaError as exc:
            raise explain_schema_error(exc) from None

    def delete(self, ids: list[str] | None = None, *, filter: Mapping[str, Any] | None = None,
               **kwargs: Any) -> bool:
        """Delete the documents with these ids, or matching ``filter``, or both (then a
        document is deleted when it has one of the ids and matches the filter). Ids that do not
        exist are ignored. Unlike LangChain's default, ``delete()`` with neither deletes nothing:
        it raises, so that a missing argument cannot empty the store; :meth:`clear` does."""
        if kwargs:
            raise InvalidArgumentError(f"unexpected arguments {sorted(kwargs)}; delete takes ids "
                                       f"and filter")
        if ids is None and not filter:
            raise InvalidArgumentError("delete() needs ids= or a non-empty filter=; clear() "
                                       "deletes every document")
        tbl = self.handle.table()
        if tbl is None:
            return True
        where, params = compile_filter(parse_filter(filter), tbl, LAYOUT, _SPELL)
        id_list = [str(i) for i in ids] if ids is not None else None
        if id_list is not None and not id_list:
            return True
        if where is None:
            tbl.delete(ids=id_list)
        elif id_list is None:
            tbl.delete(where, *params)
        else:
            tbl.delete(f"id IN ({', '.join('?' * len(id_list))}) AND ({where})", *id_list, *params)
        return True

    def clear(self) -> None:
        """Delete every document (the table and its earlier versions stay)."""
        tbl = self.handle.table()
        if tbl is not None and len(tbl):
            tbl.delete("true")

    # -- reading --------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents with these ids, in the order given; missing ids are skipped."""
        tbl = self.handle.table()
        if tbl is None or not ids:
            return []
        return [_document(r) for r in tbl.get([str(i) for i in ids])]

    # -- searching ------------------------------------------------------------------------------
    def _mode(self, search_mode: str | SearchMode | None) -> SearchMode:
        return self.search_mode if search_mode is None else SearchMode.parse(search_mode)

    def _search(self, text: str | None, vector: Any, k: int, filter: Mapping[str, Any] | None,
                mode: SearchMode, fusion: Fusion | str | None, with_vectors: bool = False
                ) -> list[dict[str, Any]]:
        k = check_k(k)
        tbl = self.handle.table()
        expr = parse_filter(filter)
        if tbl is None or len(tbl) == 0:
            compile_filter(expr, None, LAYOUT, _SPELL)  # a malformed filter still raises
            return []
        where = compile_filter(expr, tbl, LAYOUT, _SPELL)
        query = start_query(tbl, mode, text=text, vector=vector,
                            fusion=self.fusion if fusion is None else Fusion.parse(fusion))
        columns = None
        if with_vectors:
            columns = [n for n in tbl.schema.names if n != "id"]
        return run_query(query, k, where, columns)

    def _pairs(self, rows: list[dict[str, Any]]) -> list[tuple[Document, float]]:
        return [(_document(r), float(r["score"])) for r in rows]

    def similarity_search(self, query: str, k: int = 4, filter: Mapping[str, Any] | None = None,
                          **kwargs: Any) -> list[Document]:
        """The ``k`` documents that best match ``query`` (and ``filter``), best first.
        ``search_mode=`` and ``fusion=`` override the store's settings for this call."""
        return [d for d, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(self, query: str, k: int = 4,
                                     filter: Mapping[str, Any] | None = None, *,
                                     search_mode: str | SearchMode | None = None,
                                     fusion: Fusion | str | None = None
                                     ) -> list[tuple[Document, float]]:
        """``(document, score)`` pairs, best first. In vector mode the score is the similarity
        (higher is better: cosine, dot, or ``-distance**2`` for l2); in keyword mode the BM25
        score; in hybrid mode the fused score."""
        mode = self._mode(search_mode)
        vector = self.embedding.embed_query(query) if mode.needs_vector else None
        return self._pairs(self._search(query, vector, k, filter, mode, fusion))

    async def asimilarity_search_with_score(self, query: str, k: int = 4,
                                            filter: Mapping[str, Any] | None = None, *,
                                            search_mode: str | SearchMode | None = None,
                                            fusion: Fusion | str | None = None
                                            ) -> list[tuple[Document, float]]:
        mode = self._mode(search_mode)
        vector = await self.embedding.aembed_query(query) if mode.needs_vector else None
        rows = await run_in_executor(None, self._search, query, vector, k, filter, mode, fusion)
        return self._pairs(rows)

    async def asimilarity_search(self, query: str, k: int = 4,
                                 filter: Mapping[str, Any] | None = None, **kwargs: Any
                                 ) -> list[Document]:
        pairs = await self.asimilarity_search_with_score(query, k, filter, **kwargs)
        return [d for d, _ in pairs]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4,
                                    filter: Mapping[str, Any] | None = None, **kwargs: Any
                                    ) -> list[Document]:
        """The ``k`` documents nearest to ``embedding`` (vector search)."""
        pairs = self.similarity_search_with_score_by_vector(embedding, k, filter, **kwargs)
        return [d for d, _ in pairs]

    def similarity_search_with_score_by_vector(self, embedding: list[float], k: int = 4,
                                               filter: Mapping[str, Any] | None = None
                                               ) -> list[tuple[Document, float]]:
        return self._pairs(self._search(None, embedding, k, filter, SearchMode.VECTOR, None))

    def _select_relevance_score_fn(self) -> Any:
        """Scores to [0, 1] by the table's metric (see ``relevance_fn``)."""
        return relevance_fn(self.handle.metric)

    def _check_relevance_mode(self, kwargs: dict[str, Any]) -> None:
        if self._mode(kwargs.get("search_mode")) is not SearchMode.VECTOR:
            raise InvalidArgumentError(
                "relevance scores map vector similarities to [0, 1]; keyword and hybrid scores "
                "have no such scale: use similarity_search_with_score, or search_mode='vector'")

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any
                                                 ) -> list[tuple[Document, float]]:
        self._check_relevance_mode(kwargs)
        return super()._similarity_search_with_relevance_scores(query, k, **kwargs)

    async def _asimilarity_search_with_relevance_scores(self, query: str, k: int = 4, **kwargs: Any
                                                        ) -> list[tuple[Document, float]]:
        self._check_relevance_mode(kwargs)
        return await super()._asimilarity_search_with_relevance_scores(query, k, **kwargs)

    # -- maximal marginal relevance -------------------------------------------------------------
    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                      lambda_mult: float = 0.5, **kwargs: Any) -> list[Document]:
        """``k`` documents chosen among the ``fetch_k`` best matches (found in the store's search
        mode; ``filter=``, ``search_mode=`` and ``fusion=`` as for ``similarity_search``) for
        relevance to ``query`` and diversity among themselves (``lambda_mult``: 1 is relevance
        only, 0 diversity only)."""
        filter, mode, fusion = self._search_args(kwargs)
        vector = self.embedding.embed_query(query)
        rows = self._search(query, vector, max(check_k(fetch_k, "fetch_k"), check_k(k)), filter,
                            mode, fusion, with_vectors=True)
        return self._mmr(vector, rows, k, lambda_mult)

    async def amax_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                             lambda_mult: float = 0.5, **kwargs: Any
                                             ) -> list[Document]:
        filter, mode, fusion = self._search_args(kwargs)
        vector = await self.embedding.aembed_query(query)
        rows = await run_in_executor(None, self._search, query, vector,
                                     max(check_k(fetch_k, "fetch_k"), check_k(k)), filter, mode,
                                     fusion, True)
        return self._mmr(vector, rows, k, lambda_mult)

    def _search_args(self, kwargs: dict[str, Any]
                     ) -> tuple[Mapping[str, Any] | None, SearchMode, Fusion | str | None]:
        unknown = set(kwargs) - {"filter", "search_mode", "fusion"}
        if unknown:
            raise InvalidArgumentError(f"unexpected arguments {sorted(unknown)}; the search takes "
                                       f"filter, search_mode and fusion")
        return kwargs.get("filter"), self._mode(kwargs.get("search_mode")), kwargs.get("fusion")

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4,
                                                fetch_k: int = 20, lambda_mult: float = 0.5,
                                                filter: Mapping[str, Any] | None = None,
                                                **kwargs: Any) -> list[Document]:
        if kwargs:
            raise InvalidArgumentError(f"unexpected arguments {sorted(kwargs)}")
        rows = self._search(None, embedding, max(check_k(fetch_k, "fetch_k"), check_k(k)), filter,
                            SearchMode.VECTOR, None, with_vectors=True)
        return self._mmr(embedding, rows, k, lambda_mult)

    @staticmethod
    def _mmr(query: Any, rows: list[dict[str, Any]], k: int, lambda_mult: float) -> list[Document]:
        if not 0.0 <= float(lambda_mult) <= 1.0:
            raise InvalidArgumentError(f"lambda_mult must be in [0, 1], got {lambda_mult!r}")
        if not rows:
            return []
        vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32)
        chosen = maximal_marginal_relevance(np.asarray(query, dtype=np.float32), list(vectors),
                                            lambda_mult=float(lambda_mult), k=check_k(k))
        return [_document(rows[i]) for i in chosen]

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings,
                   metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None,
                   **kwargs: Any) -> VecstoreVectorStore:
        """A store at ``path=`` (required) holding ``texts``; other keyword arguments are the
        constructor's."""
        if "path" not in kwargs:
            raise InvalidArgumentError("from_texts needs path= (the store's directory)")
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


class VecstoreRetriever(BaseRetriever):
    """A retriever over a :class:`VecstoreVectorStore` with the search mode as a setting:
    ``VecstoreRetriever(vectorstore=store, k=5, search_mode="hybrid", fusion="rrf")``.

    ``invoke(query, k=..., filter=..., search_mode=..., fusion=...)`` overrides the settings for
    one call. (``store.as_retriever()`` also works: LangChain's retriever with similarity, MMR
    and score-threshold search; ``search_kwargs`` may hold ``filter`` and ``search_mode``.)
    """

    vectorstore: VecstoreVectorStore
    k: int = 4
    filter: dict[str, Any] | None = None
    search_mode: str | None = None
    fusion: Fusion | str | None = None

    model_config = ConfigDict(arbitrary_types_allowed=True)

    def _args(self, k: int | None, filter: Mapping[str, Any] | None, search_mode: str | None,
              fusion: Fusion | str | None) -> dict[str, Any]:
        return {"k": self.k if k is None else k,
                "filter": self.filter if filter is None else filter,
                "search_mode": self.search_mode if search_mode is None else search_mode,
                "fusion": self.fusion if fusion is None else fusion}

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun,
                                k: int | None = None, filter: Mapping[str, Any] | None = None,
                                search_mode: str | None = None, fusion: Fusion | str | None = None
                                ) -> list[Document]:
        return self.vectorstore.similarity_search(query, **self._args(k, filter, search_mode, fusion))

    async def _aget_relevant_documents(self, query: str, *,
                                       run_manager: AsyncCallbackManagerForRetrieverRun,
                                       k: int | None = None, filter: Mapping[str, Any] | None = None,
                                       search_mode: str | None = None,
                                       fusion: Fusion | str | None = None) -> list[Document]:
        return await self.vectorstore.asimilarity_search(
            query, **self._args(k, filter, search_mode, fusion))


__all__ = ["Fusion", "SearchMode", "VecstoreRetriever", "VecstoreVectorStore", "parse_filter"]
