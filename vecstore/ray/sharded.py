"""A table split into shards, each a vecstore table served by a Ray actor.

Rows go to the shard :func:`shard_of` their id (a stable hash: the same id always lands on the
same shard, whichever process routes it, so an upsert replaces the row where it lives). A search
is sent to every shard with ``k`` raised by an oversample factor, and the shards' hits merged by
score. For exact vector search the merge is exact: the best ``k`` rows of the union are among
the best ``k`` of each shard, and each row's score is computed from its own vector and the
query alone, so the result is what one table holding every row returns. With an index each shard
is approximate and oversampling buys back recall. Keyword and hybrid search are scored per shard
(BM25 statistics and score fusion see one shard's rows), so they are close to, not equal to, one
table's ranking.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import ray

from ..errors import InvalidArgumentError


def shard_of(row_id: str, shards: int) -> int:
    """The shard of ``row_id`` among ``shards``: the first 8 bytes of its BLAKE2b digest modulo
    the count (Python's ``hash`` of a string changes from one process to the next)."""
    digest = hashlib.blake2b(row_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little") % shards


class _Shard:
    """One shard: a vecstore table opened (or created) in this actor's process."""

    def __init__(self, path: str, table: str, create: dict[str, Any] | None) -> None:
        from ..db import Database

        db = Database(path)
        if create is not None and table not in db.table_names():
            self.tbl = db.create_table(table, exist_ok=True, **create)
        else:
            self.tbl = db.open_table(table)

    def add(self, rows: pa.Table, upsert: bool) -> int:
        if rows.num_rows:
            (self.tbl.upsert if upsert else self.tbl.add)(rows)
        return rows.num_rows

    def count(self, where: str | None, params: tuple[Any, ...]) -> int:
        return self.tbl.count(where, *params)

    def create_index(self, kind: str, params: dict[str, Any]) -> dict[str, Any]:
        if len(self.tbl) == 0:
            return {}
        return self.tbl.create_index(kind, progress=False, **params)

    def search(self, query: Any, vector: Any, mode: str | None, where: str | None,
               params: tuple[Any, ...], k: int, exact: bool, oversample: int | None,
               columns: tuple[str, ...] | None) -> list[dict[str, Any]]:
        if isinstance(query, str):
            q = self.tbl.search(query, mode=mode, vector=vector)
        else:
            q = self.tbl.search(query, mode=mode)
        q = q.limit(k)
        if where is not None:
            q = q.where(where, *params)
        if exact:
            q = q.exact()
        if oversample is not None:
            q = q.rescore(oversample)
        if columns is not None:
            q = q.select(*columns)
        return q.to_list()


def _as_table(rows: Any) -> pa.Table:
    if isinstance(rows, pa.RecordBatch):
        return pa.Table.from_batches([rows])
    if isinstance(rows, pa.Table):
        return rows
    if type(rows).__name__ == "DataFrame":
        return pa.Table.from_pandas(rows, preserve_index=False)
    if isinstance(rows, dict):
        rows = [rows]
    if isinstance(rows, (list, tuple)):
        return pa.Table.from_pylist([dict(r) for r in rows])
    raise InvalidArgumentError(f"rows are a list of dicts, a pyarrow.Table or a pandas.DataFrame, "
                               f"got {type(rows).__name__}")


class ShardedTable:
    """The table ``table`` split over the stores at ``paths`` (one shard each, in this order:
    the order decides where rows go, so always pass the same list), each served by a Ray actor.

    ``create``: create the shard tables that do not exist yet with these ``create_table``
    arguments (``dim``, ``metric``, ...); without it every shard must exist. ``oversample``:
    how many times ``limit`` each shard is asked for in approximate searches (exact searches
    need no more than ``limit``). Call :meth:`close` (or use ``with``) to stop the actors.

    >>> st = ShardedTable([f"shards/{i}" for i in range(4)], "docs", create={"dim": 384})  # doctest: +SKIP
    >>> st.search(vector, where="year > ?", params=(2020,), limit=10)  # doctest: +SKIP
    """

    def __init__(self, paths: Sequence[str | Path], table: str, *, create: dict[str, Any] | None = None,
                 oversample: float = 2.0, num_cpus: float = 0.5) -> None:
        if isinstance(paths, (str, Path)) or not paths:
            raise InvalidArgumentError(f"paths lists one store per shard, got {paths!r}")
        if not (isinstance(oversample, (int, float)) and oversample >= 1):
            raise InvalidArgumentError(f"oversample must be a number >= 1, got {oversample!r}")
        self.paths = [str(p) for p in paths]
        self.table = table
        self.oversample = float(oversample)
        actor: Any = ray.remote(num_cpus=num_cpus)(_Shard)
        self._actors: list[Any] = [actor.remote(p, table, create) for p in self.paths]
        ray.get([a.count.remote(None, ()) for a in self._actors])  # a missing shard fails here

    def __enter__(self) -> ShardedTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the shards' actors (the tables stay on disk)."""
        for a in self._actors:
            ray.kill(a)
        self._actors = []

    def __len__(self) -> int:
        return self.count()

    @property
    def shards(self) -> int:
        return len(self.paths)

    def count(self, where: str | None = None, *params: Any) -> int:
        """Rows in all shards (for which ``where`` is true)."""
        return sum(ray.get([a.count.remote(where, params) for a in self._actors]))

    def add(self, rows: Any, *, upsert: bool = False) -> list[str]:
        """Add rows (as ``Table.add`` takes them), each to the shard of its id; rows without an
        id get a random one first. ``upsert``: replace rows with the same ids. Returns the ids.
        Each shard commits its part on its own: the write is atomic per shard, not across them."""
        t = _as_table(rows)
        if "id" in t.column_names:
            ids = [str(i) if i is not None else uuid.uuid4().hex for i in t.column("id").to_pylist()]
            t = t.set_column(t.column_names.index("id"), "id", pa.array(ids, pa.string()))
        else:
            ids = [uuid.uuid4().hex for _ in range(t.num_rows)]
            t = t.add_column(0, "id", pa.array(ids, pa.string()))
        target = np.fromiter((shard_of(i, self.shards) for i in ids), dtype=np.int64, count=len(ids))
        pending = []
        for s, a in enumerate(self._actors):
            part = t.take(pa.array(np.flatnonzero(target == s)))
            pending.append(a.add.remote(part, upsert))
        ray.get(pending)
        return ids

    def create_index(self, kind: str = "hnsw-int8", **params: Any) -> None:
        """Build the index ``kind`` on every shard (in parallel)."""
        ray.get([a.create_index.remote(kind, params) for a in self._actors])

    def search(self, query: Any, *, where: str | None = None, params: Sequence[Any] = (),
               limit: int = 10, mode: str | None = None, vector: Any = None, exact: bool = False,
               rescore: int | None = None, select: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """The best ``limit`` rows of all shards for ``query`` (a vector, or a text with
        ``mode`` as in ``Table.search``), with ``where`` (bound ``params``) applied on every
        shard, best first, as ``Query.to_list()`` gives them. ``exact``: score every match with
        float32 vectors (the result then equals one table's); otherwise each shard is asked for
        ``ceil(limit * oversample)`` rows."""
        if isinstance(query, np.ndarray):
            query = query.astype(np.float32).tolist()
        if isinstance(vector, np.ndarray):
            vector = vector.astype(np.float32).tolist()
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            raise InvalidArgumentError(f"limit must be a non-negative integer, got {limit!r}")
        k = limit if exact else math.ceil(limit * self.oversample)
        parts = ray.get([a.search.remote(query, vector, mode, where, tuple(params), k, exact, rescore,
                                         None if select is None else tuple(select))
                         for a in self._actors])
        hits = [h for part in parts for h in part]
        # higher scores are better in every mode; ties go to the smaller id, the same on every run
        hits.sort(key=lambda h: (-h["score"], h["id"]))
        return hits[:limit]
