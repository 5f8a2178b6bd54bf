"""The remote client: ``vecstore.connect("http://host:port", api_key=...)`` returns a
:class:`RemoteDatabase` whose tables add, upsert, delete, get, count and search like local
ones (and update, add, list and delete documents), through a ``vecstore serve`` server, and
raise the same exception classes.

Searches return the same :class:`~vecstore.Query` (chained, immutable) and
:class:`~vecstore.Hits` / :class:`~vecstore.Plan` types as local tables. The query vector is
checked here, before anything is sent; a filter or a column name is checked by the server when
the query runs (``to_list()``, ``hits()``, ``explain()``), not at ``.where()``.

It needs nothing beyond vecstore's core dependencies (the standard library's ``http.client``,
one keep-alive connection per thread).
"""

from __future__ import annotations

import dataclasses
import math
import os
import urllib.parse
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from ..config import Metric, TableConfig
from ..documents import DOCUMENT_SCHEMA
from ..errors import InvalidArgumentError, NotFoundError, RemoteError
from ..inputs import mapping_rows, query_matrix, query_text, rows_or_dim
from ..query.builder import BatchQuery, Query
from ..query.results import Hits
from ..query.spec import QuerySpec, SearchMode, search_inputs
from ..table import DEFAULT_RETENTION, CleanupReport, IngestReport
from ..wire import plan_from_json
from .http import Transport

MAX_GET_URL = 4000  # longer id lists go in a POST body


class RemoteDatabase:
    """A store served by ``vecstore serve``. ``api_key`` defaults to ``$VECSTORE_API_KEY``.

    >>> db = vecstore.connect("http://127.0.0.1:8000", api_key="...")   # doctest: +SKIP
    >>> tbl = db.open_table("docs")                                      # doctest: +SKIP
    >>> tbl.search("what changed?").where("team = ?", "blue").limit(5).to_list()  # doctest: +SKIP
    """

    def __init__(self, url: str, *, api_key: str | None = None, timeout: float = 60.0) -> None:
        if api_key is None:
            api_key = os.environ.get("VECSTORE_API_KEY") or None
        self.url = url.rstrip("/")
        self._http = Transport(url, api_key, timeout)
        health = self._http.request("GET", "/healthz")
        if not isinstance(health, dict) or health.get("status") != "ok":
            raise RemoteError(f"{url} answered /healthz with {health!r:.200}; is it a vecstore server?")
        self.server_version: str = str(health.get("version"))
        limits = health.get("limits") or {}
        self._http.max_body_bytes = limits.get("max_body_bytes")

    def __repr__(self) -> str:
        return f"RemoteDatabase({self.url!r})"

    def __enter__(self) -> RemoteDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def table_names(self) -> list[str]:
        return list(self._http.request("GET", "/tables")["tables"])

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self.table_names()

    def create_table(self, name: str, dim: int | None = None, *, metric: str | Metric = "cosine",
                     embedder: str | None = None, exist_ok: bool = False, schema: Any = None,
                     data: Any = None) -> RemoteTable:
        """Like :meth:`vecstore.Database.create_table`; ``embedder`` is ``"default"`` or a model
        the server allows. ``schema`` and ``data`` are not sent over HTTP: add rows after."""
        dim, data = rows_or_dim(dim, data)
        if schema is not None or data is not None:
            raise InvalidArgumentError("a remote create_table takes no schema= or data=; create the "
                                       "table, then add() its rows")
        if embedder is not None and not isinstance(embedder, str):
            raise InvalidArgumentError("a remote table's embedder is a model name the server knows "
                                       "('default'), not an object")
        body = {"name": name, "dim": dim, "metric": metric.value if isinstance(metric, Metric) else metric,
                "embedder": embedder, "exist_ok": exist_ok}
        return RemoteTable(self, self._http.request("POST", "/tables", body))

    def open_table(self, name: str, *, version: int | None = None) -> RemoteTable:
        if version is not None:
            raise InvalidArgumentError("a remote table is read at its newest version; open the store "
                                       "locally to check out an older one")
        return RemoteTable(self, self._http.request("GET", _path(name)))

    def drop_table(self, name: str, *, missing_ok: bool = False) -> None:
        try:
            self._http.request("DELETE", _path(name))
        except NotFoundError:
            if not missing_ok:
                raise


def _path(name: object, action: str = "") -> str:
    if not isinstance(name, str):
        raise InvalidArgumentError(f"a table name is a string, got {name!r}")
    return f"/tables/{urllib.parse.quote(name, safe='')}" + (f"/{action}" if action else "")


def _rows(rows: Any) -> Any:
    """Rows as JSON can carry them: Arrow tables and DataFrames become lists of dicts."""
    if type(rows).__name__ == "DataFrame" and hasattr(rows, "to_dict"):
        rows = pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, (pa.Table, pa.RecordBatch)):
        return rows.to_pylist()
    if isinstance(rows, Mapping):
        return mapping_rows(rows)  # one row, or a dict of columns
    return list(rows) if isinstance(rows, tuple) else rows


class RemoteTable:
    """A table of a :class:`RemoteDatabase`: the methods of :class:`vecstore.Table` that make
    sense over HTTP, with the same arguments, results and exceptions."""

    def __init__(self, db: RemoteDatabase, info: dict[str, Any]) -> None:
        self._db = db
        self._http = db._http
        self.name: str = info["name"]
        self.config = TableConfig(dim=int(info["dim"]), metric=Metric.parse(info["metric"]),
                                  embedder=info.get("embedder"))

    def __repr__(self) -> str:
        return (f"RemoteTable({self.name!r}, dim={self.dim}, metric={self.metric.value!r}, "
                f"url={self._db.url!r})")

    def _call(self, method: str, action: str = "", body: Any = None, query: Any = None) -> Any:
        return self._http.request(method, _path(self.name, action), body, query)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def metric(self) -> Metric:
        return self.config.metric

    def info(self) -> dict[str, Any]:
        """rows, dim, metric, embedder, version, columns (name -> Arrow type) and indexes."""
        return dict(self._call("GET"))

    @property
    def version(self) -> int:
        return int(self.info()["version"])

    def __len__(self) -> int:
        return int(self._call("GET", "count")["count"])

    def count(self, where: str | None = None, *params: Any) -> int:
        return int(self._call("POST", "count", {"where": where, "params": list(params)})["count"])

    def add(self, rows: Any) -> list[str]:
        return list(self._call("POST", "add", {"rows": _rows(rows)})["ids"])

    def upsert(self, rows: Any) -> list[str]:
        return list(self._call("POST", "upsert", {"rows": _rows(rows)})["ids"])

    def delete(self, where: str | None = None, *params: Any, ids: Sequence[str] | None = None) -> int:
        if isinstance(ids, str):
            ids = [ids]
        body = {"where": where, "params": list(params),
                "ids": None if ids is None else [str(i) for i in ids]}
        return int(self._call("POST", "delete", body)["deleted"])

    def cleanup(self, older_than: Any = DEFAULT_RETENTION, *, keep_last: int = 1) -> CleanupReport:
        """Remove old versions on the server (see :meth:`vecstore.Table.cleanup`)."""
        seconds = older_than.total_seconds() if isinstance(older_than, timedelta) else older_than
        return CleanupReport(**self._call("POST", "cleanup", {"older_than": seconds,
                                                              "keep_last": keep_last}))

    def get(self, ids: Sequence[str], *, with_vectors: bool = False) -> list[dict[str, Any]]:
        id_list = [str(i) for i in ids]
        query = {"ids": id_list, "with_vectors": "true" if with_vectors else "false"}
        if id_list and len(urllib.parse.urlencode(query, doseq=True)) <= MAX_GET_URL:
            return list(self._call("GET", "rows", query=query)["rows"])
        return list(self._call("POST", "rows", {"ids": id_list, "with_vectors": with_vectors})["rows"])

    def update(self, values: Mapping[str, Any], where: str | None = None, *params: Any,
               ids: Sequence[str] | None = None) -> int:
        """Set the attributes in ``values`` on the rows matching ``where`` and/or ``ids``, every
        other column untouched, in one commit (see :meth:`vecstore.Table.update`). Returns how
        many rows were updated."""
        if isinstance(ids, str):
            ids = [ids]
        # the server checks the values (Table.update), so its messages are the embedded API's
        body = {"values": dict(values) if isinstance(values, Mapping) else values, "where": where,
                "params": list(params), "ids": None if ids is None else [str(i) for i in ids]}
        return int(self._call("POST", "update", body)["updated"])

    def add_documents(self, docs: Any, *, chunking: str | None = None, chunker: str = "tokens",
                      chunk_tokens: int = 128, overlap: int = 16, window: Any = None,
                      progress: bool | None = None, prune: bool = False,
                      keep: Collection[str] = (), commit_every: float = 5.0) -> IngestReport:
        """Chunk, embed and store documents on the server, incrementally (see
        :meth:`vecstore.Table.add_documents`). ``window`` is a ``WindowOptions`` or a dict of its
        fields. ``progress`` is accepted for the same signature: the server shows no bar."""
        if isinstance(keep, str):
            keep = [keep]
        if dataclasses.is_dataclass(window) and not isinstance(window, type):
            window = dataclasses.asdict(window)
        body = {"documents": _rows(docs), "chunking": chunking, "chunker": chunker,
                "chunk_tokens": chunk_tokens, "overlap": overlap, "window": window, "prune": prune,
                "keep": [str(k) for k in keep], "commit_every": commit_every}
        r = self._call("POST", "documents", body)
        return IngestReport(documents=int(r["documents"]), chunks=int(r["chunks"]),
                            skipped=tuple((str(d), str(why)) for d, why in r["skipped"]),
                            seconds=float(r["seconds"]), unchanged=int(r["unchanged"]),
                            pruned=int(r["pruned"]), commits=int(r["commits"]),
                            remaining=int(r["remaining"]))

    def documents(self) -> pa.Table:
        """One row per document (see :meth:`vecstore.Table.documents`): ``doc_id``, ``source``,
        ``chunks``, ``content_hash`` and ``ingested_at`` (UTC), sorted by ``doc_id``."""
        return pa.Table.from_pylist(self.list_documents(), schema=DOCUMENT_SCHEMA)

    def list_documents(self) -> list[dict[str, Any]]:
        """:meth:`documents` as a list of dicts."""
        return list(self._call("GET", "documents")["documents"])

    def delete_documents(self, doc_ids: Sequence[str]) -> int:
        """Delete every chunk of these documents in one commit. Returns how many of them the
        table held."""
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        return int(self._call("POST", "delete_documents", {"doc_ids": [str(d) for d in doc_ids]})["deleted"])

    def search(self, query: Any, *, mode: str | None = None, vector: Any = None) -> Query:
        """A query by ``query`` (a vector, or a text the server embeds or analyzes), as
        :meth:`vecstore.Table.search`: ``mode`` ``"vector"``, ``"keyword"`` or ``"hybrid"``,
        ``vector=`` the text's embedding when you make it yourself. ``.fusion()``,
        ``.group_by()`` and ``.rerank()`` are sent with the query; ``rerank`` takes
        ``"feedback"`` or the name of a CrossEncoder the server allows."""
        text, vec, m = search_inputs(query, mode, vector, self.config)
        payload: dict[str, Any] = {}
        if text is not None:
            payload["text"] = text
        if vec is not None:
            payload["vector"] = vec
        spec = QuerySpec(vectors=None if vec is None else vec[None, :], text=text, mode=m)
        return Query(_RemoteSource(self, payload, batch=False), spec)

    def search_batch(self, queries: Any, *, threads: int | None = None) -> BatchQuery:
        """Many queries with one filter, in one request (``threads`` is the server's business)."""
        if isinstance(queries, str):
            raise InvalidArgumentError("search_batch takes a list of queries; use search() for one")
        if isinstance(queries, (list, tuple)) and queries and all(isinstance(x, str) for x in queries):
            payload: dict[str, Any] = {"texts": [query_text(x) for x in queries]}
            n = len(queries)
        else:
            mat = query_matrix(queries, self.config)
            payload, n = {"vectors": mat}, len(mat)
        placeholder = np.zeros((n, self.dim), dtype=np.float32)
        return BatchQuery(_RemoteSource(self, payload, batch=True), QuerySpec(vectors=placeholder))


class _RemoteSource:
    """The QuerySource of a remote query: runs its spec as one request."""

    def __init__(self, table: RemoteTable, payload: dict[str, Any], batch: bool) -> None:
        self._table = table
        self._payload = payload
        self._batch = batch

    def check_filter(self, where: str) -> None:
        """Checked by the server when the query runs."""

    def check_columns(self, columns: tuple[str, ...]) -> None:
        """Checked by the server when the query runs."""

    def embed_query(self, text: str) -> None:
        """The server embeds query texts."""
        return None

    def resolve_reranker(self, reranker: Any) -> RemoteReranker:
        """A reranker the server runs, named: ``"feedback"`` or a CrossEncoder it allows."""
        if isinstance(reranker, str) and reranker.strip():
            name = reranker.strip()
            if name.lower() in ("feedback", "prf"):
                return RemoteReranker("feedback", needs_vector=True)
            return RemoteReranker(name)
        raise InvalidArgumentError(
            f"a remote table reranks on the server: pass \"feedback\" or the name of a CrossEncoder "
            f"directory the server allows (vecstore serve --reranker DIR); a "
            f"{type(reranker).__name__} (a callable, a model object or a local path) runs only in "
            f"this process: open the store locally to use it")

    def run(self, spec: QuerySpec) -> list[Hits]:
        body = {**self._payload, **spec_fields(spec)}
        if not self._batch:
            return [_hits(self._table._call("POST", "search", body))]
        if spec.vectors is None or len(spec.vectors) == 0:
            return []
        return [_hits(r) for r in self._table._call("POST", "search_batch", body)["results"]]


class RemoteReranker:
    """The name of a reranker the server runs (what ``Query.rerank`` holds for a remote query)."""

    def __init__(self, name: str, needs_vector: bool = False) -> None:
        self.name = name
        self.needs_vector = needs_vector  # feedback: the server embeds the text when needed

    def score(self, candidates: Any) -> Any:
        raise InvalidArgumentError(f"the reranker {self.name!r} runs on the server, not here")


def spec_fields(spec: QuerySpec) -> dict[str, Any]:
    """The request fields of a query's settings: one line per setting of the Query chain."""
    if spec.combine is not None:
        raise InvalidArgumentError("using()/combine() are not available over HTTP yet; a remote "
                                   "query scores rows by their table's own combination")
    out: dict[str, Any] = {"k": spec.k, "exact": spec.exact}
    if spec.mode is not SearchMode.VECTOR:
        out["mode"] = spec.mode.value
    if spec.where is not None:
        out["where"], out["params"] = spec.where, list(spec.params)
    if spec.oversample is not None:
        out["oversample"] = spec.oversample
    if spec.columns is not None:
        out["select"] = list(spec.columns)
    if (f := spec.fusion) is not None:
        out["fusion"] = {"kind": f.kind, **({"k": f.k} if f.kind == "rrf" else {"alpha": f.alpha}),
                         **({} if f.candidates is None else {"candidates": f.candidates})}
    if (g := spec.group_by) is not None:
        out["group_by"], out["per_group"] = g.column, g.per_group
    if (r := spec.rerank) is not None:
        out["rerank"] = {"reranker": r.reranker.name, "candidates": r.candidates, "column": r.column}
    if spec.timeout is not None and math.isfinite(spec.timeout):
        out["timeout"] = spec.timeout
    return out


class _Received:
    """The RowSource of hits that arrived as JSON: rows 0..n-1 of the list."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self._rows = rows

    def rows_as_dicts(self, rows: Any, columns: Sequence[str], scores: Any = None) -> list[dict[str, Any]]:
        picked = [self._rows[i] for i in np.asarray(rows).tolist()]
        if scores is not None:
            return [dict(r) for r in picked]
        return [{c: r.get(c) for c in columns} for r in picked]

    def take(self, rows: Any, columns: list[str]) -> pa.Table:
        picked = [{c: r.get(c) for c in columns} for r in
                  (self._rows[i] for i in np.asarray(rows).tolist())]
        if not picked:
            return pa.table({c: pa.array([], pa.string() if c == "id" else pa.null()) for c in columns})
        return pa.Table.from_pylist(picked)


def _hits(d: dict[str, Any]) -> Hits:
    rows = d["hits"]
    columns = [c for c in d.get("columns") or (rows[0] if rows else ["id"]) if c != "score"]
    scores = np.asarray([r["score"] for r in rows], dtype=np.float32)
    return Hits(np.arange(len(rows), dtype=np.int64), scores, plan_from_json(d["plan"]), columns,
                _Received(rows))


__all__ = ["RemoteDatabase", "RemoteTable"]
