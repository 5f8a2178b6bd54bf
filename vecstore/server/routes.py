"""Every route of ``vecstore serve``: one request model and one handler per Python API method.

A handler receives the shared :class:`~.store.Store`, the table name from the path (or None)
and the validated request; it calls the public API and returns JSON-able data. Adding a method
to the server is a request model, a handler of a few lines and a :class:`Route` in ``ROUTES``.
Values are decoded and encoded by :mod:`vecstore.wire` (dates, decimals, NaN).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, WithJsonSchema

from .. import __version__
from ..errors import InvalidArgumentError
from ..table import Table
from ..wire import plan_to_json
from .errors import RequestTooLargeError
from .store import Store

SEARCH_MODES = ("vector",)


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


class GetRows(Body):
    ids: list[str]
    with_vectors: bool = False


class Documents(Body):
    documents: Any  # checked by Table.add_documents
    chunking: str = "context"
    chunker: str = "tokens"
    chunk_tokens: int = 128
    overlap: int = 16


class _QueryOptions(Filter):
    k: int = 10
    oversample: int | None = None
    exact: bool = False
    select: list[str] | None = None


class Search(_QueryOptions):
    vector: Vector | None = None
    text: str | None = None


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


def _refine(q: Any, r: _QueryOptions) -> Any:
    """The query chain of the Python API, one step per request field."""
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
            "search_modes": list(SEARCH_MODES),
            "limits": {"max_body_bytes": c.max_body_bytes, "max_rows": c.max_rows}}


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


def get_rows(c: Context, name: str, r: GetRows) -> Any:
    c.check_count(r.ids, "ids")
    return {"rows": c.store.table(name).get(r.ids, with_vectors=r.with_vectors)}


def add_documents(c: Context, name: str, r: Documents) -> Any:
    c.check_count(r.documents, "documents")
    report = c.store.table(name).add_documents(r.documents, chunking=r.chunking, chunker=r.chunker,
                                               chunk_tokens=r.chunk_tokens, overlap=r.overlap,
                                               progress=False)
    return dataclasses.asdict(report)


def search(c: Context, name: str, r: Search) -> Any:
    if (r.vector is None) == (r.text is None):
        raise InvalidArgumentError("search takes exactly one of 'vector' and 'text'")
    tbl = c.store.table(name)
    return _hits(_refine(tbl.search(r.vector if r.vector is not None else r.text), r).hits())


def search_batch(c: Context, name: str, r: SearchBatch) -> Any:
    if (r.vectors is None) == (r.texts is None):
        raise InvalidArgumentError("search_batch takes exactly one of 'vectors' and 'texts'")
    queries: list[Any] = r.vectors if r.vectors is not None else r.texts  # type: ignore[assignment]
    c.check_count(queries, "queries")
    tbl = c.store.table(name)
    if not queries:
        return {"results": []}
    return {"results": [_hits(h) for h in _refine(tbl.search_batch(queries), r).hits()]}


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
    Route("GET", f"{T}/rows", get_rows, "Table.get(ids, with_vectors=)", GetRows, from_query=True),
    Route("POST", f"{T}/rows", get_rows, "Table.get(ids, with_vectors=)", GetRows),
    Route("POST", f"{T}/documents", add_documents, "Table.add_documents(documents, ...)", Documents,
          write=True),
    Route("POST", f"{T}/search", search,
          "Table.search(vector or text).where().limit(k).rescore().exact().select().hits()", Search),
    Route("POST", f"{T}/search_batch", search_batch, "Table.search_batch(vectors or texts)...hits()",
          SearchBatch),
)

__all__ = ["ROUTES", "SEARCH_MODES", "Body", "Context", "Route", "table_info"]
