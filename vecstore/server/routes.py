"""Every route of ``vecstore serve``: one request model and one handler per Python API method.

A handler receives the shared :class:`~.store.Store`, the table name from the path (or None)
and the validated request; it calls the public API and returns JSON-able data. Adding a method
to the server is a request model, a handler of a few lines and a :class:`Route` in ``ROUTES``.
Values are decoded and encoded by :mod:`vecstore.wire` (dates, decimals, NaN).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, WithJsonSchema

from .. import __version__
from ..errors import InvalidArgumentError
from ..table import DEFAULT_RETENTION, Table
from ..text import Analyzer
from ..wire import plan_to_json
from .errors import RequestTooLargeError
from .store import Store

SEARCH_MODES = ("vector", "keyword", "hybrid")
_WORD = re.compile(r"\w+")


class Body(BaseModel):
    """Request bodies are strict: no unknown fields, no strings where numbers belong."""

    model_config = ConfigDict(strict=True, extra="forbid", arbitrary_types_allowed=True)


# a vector: a JSON list of numbers, or a float32 array sent as {"$f32": base64} (vecstore.wire)
F32 = Annotated[np.ndarray, WithJsonSchema({"type": "object", "description": '{"$f32": base64 of the '
                                            'little-endian float32 values}', "required": ["$f32"]})]
Vector = list[float] | F32


class CreateTable(Body):
    name: str
    dim: int | None = None
    metric: str = "cosine"
    embedder: str | None = None
    exist_ok: bool = False


class Rows(Body):
    rows: Any  # checked by Table.add/upsert, with their messages (row, field, value)


class Filter(Body):
    where: str | None = None
    params: list[Any] = []


class Delete(Filter):
    ids: list[str] | None = None


class Cleanup(Body):
    older_than: float = DEFAULT_RETENTION.total_seconds()  # seconds
    keep_last: int = 1


class GetRows(Body):
    ids: list[str]
    with_vectors: bool = False


class Documents(Body):
    documents: Any  # checked by Table.add_documents
    chunking: str | None = None  # None: the table's default (Table.add_documents)
    chunker: str = "tokens"
    chunk_tokens: int = 128
    overlap: int = 16
    # WindowOptions' fields (window_tokens, stride, centred, titles), checked by add_documents
    window: dict[str, Any] | None = None
    prune: bool = False
    keep: list[str] = []
    commit_every: float = 5.0


class Update(Filter):
    values: Any  # checked by Table.update, with its messages (column, value)
    ids: list[str] | None = None


class DocumentIds(Body):
    doc_ids: list[str]


class _QueryOptions(Filter):
    k: int = 10
    oversample: int | None = None
    exact: bool = False
    select: list[str] | None = None
    timeout: float | None = None  # seconds; the server's --query-timeout still applies if sooner


class FusionOptions(Body):
    """``Query.fusion(kind, k=, alpha=, candidates=)``."""

    kind: str
    k: int | None = None
    alpha: float | None = None
    candidates: int | None = None


class RerankOptions(Body):
    """``Query.rerank(reranker, candidates=, column=)``: ``"feedback"`` or the name of a
    CrossEncoder directory the server was started with (``--reranker DIR``), never a path."""

    reranker: str
    candidates: int = 50
    column: str | None = None


class Search(_QueryOptions):
    vector: Vector | None = None
    text: str | None = None
    mode: str | None = None
    fusion: FusionOptions | None = None
    group_by: str | None = None
    per_group: int | None = None
    rerank: RerankOptions | None = None
    highlight: bool = False  # the words of the hits' text that match the query's terms


class SearchBatch(_QueryOptions):
    vectors: list[Vector] | None = None
    texts: list[str] | None = None


@dataclass(frozen=True)
class Context:
    """What a handler may use besides its request."""

    store: Store
    max_rows: int
    max_body_bytes: int

    def check_count(self, items: Any, what: str) -> None:
        n = len(items) if isinstance(items, list) else 0
        if n > self.max_rows:
            raise RequestTooLargeError(f"{n:,} {what} in one request; this server takes at most "
                                       f"{self.max_rows:,} (split the request, or start the server "
                                       f"with a larger --max-rows)")


# -- formatting -------------------------------------------------------------------------------
def table_info(tbl: Table) -> dict[str, Any]:
    return {"name": tbl.name, "rows": len(tbl), "dim": tbl.dim, "metric": tbl.metric.value,
            "embedder": tbl.config.embedder, "version": tbl.version,
            "columns": {f.name: str(f.type) for f in tbl.schema}, "indexes": tbl.list_indexes()}


def _refine(q: Any, r: _QueryOptions, c: Context) -> Any:
    """The query chain of the Python API, one step per request field. A request's ``timeout``
    only shortens the server's (``--query-timeout``, the store's default)."""
    if r.timeout is not None:
        most = c.store.db.query_timeout
        q = q.timeout(r.timeout if most is None or not r.timeout > most else most)
    if r.where is not None:
        q = q.where(r.where, *r.params)
    q = q.limit(r.k)
    if r.oversample is not None:
        q = q.rescore(r.oversample)
    if r.exact:
        q = q.exact()
    if r.select is not None:
        q = q.select(*r.select)
    return q


def _hits(hits: Any) -> dict[str, Any]:
    rows = hits.to_list()
    columns = list(rows[0]) if rows else hits.to_arrow().column_names  # names even with no hits
    return {"hits": rows, "columns": columns, "plan": plan_to_json(hits.plan)}


# -- handlers -----------------------------------------------------------------------------------
def healthz(c: Context, name: None, r: None) -> Any:
    return {"status": "ok", "version": __version__, "models": c.store.warm_state,
            "search_modes": list(SEARCH_MODES), "rerankers": c.store.reranker_names,
            "limits": {"max_body_bytes": c.max_body_bytes, "max_rows": c.max_rows,
                       "query_timeout": c.store.db.query_timeout}}


def list_tables(c: Context, name: None, r: None) -> Any:
    return {"tables": c.store.db.table_names()}


def create_table(c: Context, name: None, r: CreateTable) -> Any:
    tbl = c.store.create_table(r.name, dim=r.dim, metric=r.metric, embedder=r.embedder,
                               exist_ok=r.exist_ok)
    return table_info(tbl)


def info(c: Context, name: str, r: None) -> Any:
    return table_info(c.store.table(name))


def drop_table(c: Context, name: str, r: None) -> Any:
    c.store.drop_table(name)
    return {"dropped": name}


def count_all(c: Context, name: str, r: None) -> Any:
    return {"count": len(c.store.table(name))}


def count(c: Context, name: str, r: Filter) -> Any:
    if r.where is None:
        return {"count": len(c.store.table(name))}
    return {"count": c.store.table(name).count(r.where, *r.params)}


def add(c: Context, name: str, r: Rows) -> Any:
    c.check_count(r.rows, "rows")
    return {"ids": c.store.table(name).add(r.rows)}


def upsert(c: Context, name: str, r: Rows) -> Any:
    c.check_count(r.rows, "rows")
    return {"ids": c.store.table(name).upsert(r.rows)}


def delete(c: Context, name: str, r: Delete) -> Any:
    c.check_count(r.ids, "ids")
    return {"deleted": c.store.table(name).delete(r.where, *r.params, ids=r.ids)}


def cleanup(c: Context, name: str, r: Cleanup) -> Any:
    return c.store.table(name).cleanup(r.older_than, keep_last=r.keep_last).to_json()


def get_rows(c: Context, name: str, r: GetRows) -> Any:
    c.check_count(r.ids, "ids")
    return {"rows": c.store.table(name).get(r.ids, with_vectors=r.with_vectors)}


def update(c: Context, name: str, r: Update) -> Any:
    c.check_count(r.ids, "ids")
    return {"updated": c.store.table(name).update(r.values, r.where, *r.params, ids=r.ids)}


def add_documents(c: Context, name: str, r: Documents) -> Any:
    c.check_count(r.documents, "documents")
    c.check_count(r.keep, "keep entries")
    report = c.store.table(name).add_documents(r.documents, chunking=r.chunking, chunker=r.chunker,
                                               chunk_tokens=r.chunk_tokens, overlap=r.overlap,
                                               window=r.window, progress=False, prune=r.prune,
                                               keep=r.keep, commit_every=r.commit_every)
    return dataclasses.asdict(report)


def list_documents(c: Context, name: str, r: None) -> Any:
    return {"documents": c.store.table(name).list_documents()}


def delete_documents(c: Context, name: str, r: DocumentIds) -> Any:
    c.check_count(r.doc_ids, "doc_ids")
    return {"deleted": c.store.table(name).delete_documents(r.doc_ids)}


def search(c: Context, name: str, r: Search) -> Any:
    tbl = c.store.table(name)
    if r.text is not None:
        q = tbl.search(r.text, mode=r.mode, vector=r.vector)
    elif r.vector is not None:
        q = tbl.search(r.vector, mode=r.mode)
    else:
        raise InvalidArgumentError("search takes 'text' (and, optionally, 'vector': its embedding) "
                                   "or 'vector'")
    if r.fusion is not None:
        q = q.fusion(r.fusion.kind, k=r.fusion.k, alpha=r.fusion.alpha, candidates=r.fusion.candidates)
    if r.group_by is not None:
        q = q.group_by(r.group_by, per_group=1 if r.per_group is None else r.per_group)
    elif r.per_group is not None:
        raise InvalidArgumentError("per_group goes with group_by (the best rows of each group)")
    q = _refine(q, r, c)
    if r.rerank is not None:
        q = q.rerank(c.store.reranker(r.rerank.reranker), candidates=r.rerank.candidates,
                     column=r.rerank.column)
    hits = q.hits()
    out = _hits(hits)
    if r.highlight and r.text is not None:
        out["highlight"] = highlight(tbl, r.text, out["hits"])
    return out


@functools.cache
def _analyzer(language: str) -> Analyzer:
    return Analyzer(language)  # thread-safe; one per language for the server's life


def highlight(tbl: Table, text: str, hits: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The query's terms (as keyword search analyzes them) and the words of the hits' keyword
    columns that analyze to one of them, as they are written (``"Batteries"`` for the query
    ``"battery"``): what the search page marks."""
    analyzer = _analyzer(tbl.keyword_config.language)
    terms = set(analyzer.terms(text))
    seen: dict[str, bool] = {}
    for h in hits:
        for column in tbl.keyword_config.columns:
            value = h.get(column)
            if isinstance(value, str):
                for word in _WORD.findall(value):
                    if word not in seen:
                        found = analyzer.terms(word)
                        seen[word] = len(found) == 1 and found[0] in terms
    return {"terms": sorted(terms), "words": sorted(w for w, hit in seen.items() if hit)}


def search_batch(c: Context, name: str, r: SearchBatch) -> Any:
    if (r.vectors is None) == (r.texts is None):
        raise InvalidArgumentError("search_batch takes exactly one of 'vectors' and 'texts'")
    queries: list[Any] = r.vectors if r.vectors is not None else r.texts  # type: ignore[assignment]
    c.check_count(queries, "queries")
    tbl = c.store.table(name)
    if not queries:
        return {"results": []}
    return {"results": [_hits(h) for h in _refine(tbl.search_batch(queries), r, c).hits()]}


# -- the table ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Callable[[Context, Any, Any], Any]
    api: str  # the Python API it calls, for the OpenAPI page
    body: type[Body] | None = None  # the request model (from the JSON body, or the query string)
    write: bool = False  # refused with the read-only key
    status: int = 200
    public: bool = False  # no key needed
    from_query: bool = False  # GET: the model's fields come from the query string


T = "/tables/{name}"
ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", healthz, "(liveness, version, model warm-up)", public=True),
    Route("GET", "/tables", list_tables, "Database.table_names()"),
    Route("POST", "/tables", create_table, "Database.create_table()", CreateTable, write=True, status=201),
    Route("GET", T, info, "Table: rows, dim, metric, embedder, version, columns, indexes"),
    Route("DELETE", T, drop_table, "Database.drop_table()", write=True),
    Route("GET", f"{T}/count", count_all, "len(Table)"),
    Route("POST", f"{T}/count", count, "Table.count(where, *params)", Filter),
    Route("POST", f"{T}/add", add, "Table.add(rows)", Rows, write=True),
    Route("POST", f"{T}/upsert", upsert, "Table.upsert(rows)", Rows, write=True),
    Route("POST", f"{T}/delete", delete, "Table.delete(where, *params, ids=)", Delete, write=True),
    Route("POST", f"{T}/cleanup", cleanup, "Table.cleanup(older_than=, keep_last=)", Cleanup,
          write=True),
    Route("GET", f"{T}/rows", get_rows, "Table.get(ids, with_vectors=)", GetRows, from_query=True),
    Route("POST", f"{T}/rows", get_rows, "Table.get(ids, with_vectors=)", GetRows),
    Route("POST", f"{T}/update", update, "Table.update(values, where, *params, ids=)", Update,
          write=True),
    Route("GET", f"{T}/documents", list_documents, "Table.list_documents()"),
    Route("POST", f"{T}/documents", add_documents, "Table.add_documents(documents, ...)", Documents,
          write=True),
    Route("POST", f"{T}/delete_documents", delete_documents, "Table.delete_documents(doc_ids)",
          DocumentIds, write=True),
    Route("POST", f"{T}/search", search,
          "Table.search(text or vector, mode=, vector=).fusion().group_by().where().limit(k)"
          ".rescore().exact().select().rerank().hits()", Search),
    Route("POST", f"{T}/search_batch", search_batch, "Table.search_batch(vectors or texts)...hits()",
          SearchBatch),
)

__all__ = ["ROUTES", "SEARCH_MODES", "Body", "Context", "Route", "table_info"]
