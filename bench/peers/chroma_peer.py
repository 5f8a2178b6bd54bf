"""Chroma (embedded ``PersistentClient``), configured as its docs describe: collection
``configuration={"hnsw": {"space": "cosine", ...}}`` with the default ``max_neighbors=16`` and
``ef_construction=100``; query-time ``ef_search`` changed with ``collection.modify``, which takes
effect only when the collection's index is loaded again (found here: in the same process the old
ef stays), so the adapter reopens the client after each change.

Filters: ``where`` on metadata. Chroma compares only numbers with ``$gte``/``$lte``, so the month
is stored as an int (``month_i`` = YYYYMM); ``download_rank`` is left out of a row's metadata when
it is null (Chroma metadata has no null). Metadata has no prefix operator, so the package name is
stored as the document and a prefix filter is ``where_document={"$regex": "^prefix"}``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from . import F32, I64, Filter, Knob, Peer, as_rows, month_int, reset_dir

_COLLECTION = "bench"


def _client(path: Any) -> Any:
    import chromadb
    from chromadb.config import Settings

    return chromadb.PersistentClient(path=str(path), settings=Settings(anonymized_telemetry=False))


def _metadatas(attrs: pa.Table) -> list[dict[str, Any]]:
    out = []
    for month, rank in zip(
        attrs.column("month").to_pylist(), attrs.column("download_rank").to_pylist(), strict=True
    ):
        md: dict[str, Any] = {"month_i": month_int(month)}
        if rank is not None:
            md["download_rank"] = int(rank)
        out.append(md)
    return out


def translate(flt: Filter) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``(where, where_document)`` for a :class:`Filter`."""
    where: list[dict[str, Any]] = []
    docs: list[dict[str, Any]] = []
    for c in flt.clauses:
        field = "month_i" if c.field == "month" else c.field
        conv = month_int if c.field == "month" else int
        if c.op == "prefix":
            docs.append({"$regex": "^" + re.escape(str(c.value[0]))})
        elif c.op == "ge":
            where.append({field: {"$gte": conv(c.value[0])}})
        elif c.op == "le":
            where.append({field: {"$lte": conv(c.value[0])}})
        elif c.op == "between":
            where += [{field: {"$gte": conv(c.value[0])}}, {field: {"$lte": conv(c.value[1])}}]
    w = None if not where else where[0] if len(where) == 1 else {"$and": where}
    d = None if not docs else docs[0] if len(docs) == 1 else {"$and": docs}
    return w, d


class ChromaPeer(Peer):
    name = "chroma"
    knob_name = "ef_search"
    knob_grid: ClassVar[list[Knob]] = [16, 32, 64, 100, 200, 400]
    knob_grid_quick: ClassVar[list[Knob] | None] = [16, 100, 400]
    config = '`PersistentClient`, `configuration={"hnsw": {"space": "cosine"}}` (M=16, ef_construction=100)'
    filter_note = (
        "`where` on numeric metadata; name prefix as `where_document` `$regex` (no metadata prefix op)"
    )

    def build(self, vectors: F32, attrs: pa.Table) -> dict[str, float]:
        import time

        reset_dir(self.path)
        t = time.perf_counter()
        self.client = _client(self.path)
        self.col = self.client.create_collection(
            _COLLECTION,
            embedding_function=None,
            configuration={"hnsw": {"space": "cosine", "num_threads": self.threads}},
        )
        self._add(np.arange(len(vectors)), vectors, attrs, upsert=False)
        return {"insert_and_index_s": time.perf_counter() - t}

    def _add(self, rows: I64, vectors: F32, attrs: pa.Table, upsert: bool) -> None:
        step = min(self.client.get_max_batch_size(), 5000)
        mds = _metadatas(attrs)
        names = attrs.column("name").to_pylist()
        fn = self.col.upsert if upsert else self.col.add
        for s in range(0, len(rows), step):
            fn(
                ids=[str(int(r)) for r in rows[s : s + step]],
                embeddings=np.ascontiguousarray(vectors[s : s + step]),
                metadatas=mds[s : s + step],
                documents=names[s : s + step],
            )

    def open(self) -> None:
        self.client = _client(self.path)
        self.col = self.client.get_collection(_COLLECTION, embedding_function=None)

    def set_knob(self, knob: Knob) -> None:
        # A changed ef_search (or num_threads) takes effect only when the index is loaded again:
        # modify() persists it, and a new client after clearing Chroma's system cache reloads it.
        from chromadb.api.client import SharedSystemClient

        self.knob = knob
        current = (self.col.configuration or {}).get("hnsw") or {}
        if current.get("ef_search") == int(knob) and current.get("num_threads") == self.threads:
            return  # already loaded with these settings
        self.col.modify(configuration={"hnsw": {"ef_search": int(knob), "num_threads": self.threads}})
        SharedSystemClient.clear_system_cache()
        self.open()

    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        where, where_doc = translate(flt) if flt is not None else (None, None)
        res = self.col.query(
            query_embeddings=[query], n_results=k, where=where, where_document=where_doc, include=[]
        )
        return as_rows(res["ids"][0])

    def search_batch(self, queries: F32, k: int, threads: int) -> list[I64] | None:
        # num_threads was set to this process's thread count by set_knob
        res = self.col.query(query_embeddings=list(queries), n_results=k, include=[])
        return [as_rows(ids) for ids in res["ids"]]

    def upsert(self, rows: I64, vectors: F32, attrs: pa.Table) -> None:
        self._add(rows, vectors, attrs, upsert=True)

    def delete(self, rows: I64) -> None:
        ids = [str(int(r)) for r in rows]
        for s in range(0, len(ids), 5000):
            self.col.delete(ids=ids[s : s + 5000])

    # text
    def ingest_texts(self, ids: list[str], texts: list[str], model_path: str, batch: int) -> None:
        from chromadb.utils.embedding_functions import SentenceTransformerEmbeddingFunction

        reset_dir(self.path)
        self.client = _client(self.path)
        fn = SentenceTransformerEmbeddingFunction(
            model_name=model_path, device="cpu", normalize_embeddings=True
        )
        self.col = self.client.create_collection(
            "docs", embedding_function=fn, configuration={"hnsw": {"space": "cosine"}}
        )
        for s in range(0, len(texts), batch):
            self.col.add(ids=ids[s : s + batch], documents=texts[s : s + batch])

    def search_text(self, text: str, k: int) -> list[str]:
        return list(self.col.query(query_texts=[text], n_results=k, include=[])["ids"][0])
