"""vecstore on Ray: write and read tables from Ray Data, ingest documents on a cluster, and
serve a table split into shards by Ray actors.

Needs the ``ray`` extra (``pip install 'vecstore[ray]'``); ``import vecstore`` never imports
Ray, only ``import vecstore.ray`` does.

- :func:`write_table`: a Ray Data sink; workers write segments, the driver publishes them all in
  one commit (one new table version; a failed write publishes nothing).
- :func:`read_table`: a Ray Data source over a table version's segments, filtered by vecstore's
  own filter engine.
- :func:`ingest`: the document pipeline (load, chunk, embed in an actor pool, write) on Ray Data.
- :class:`ShardedTable`: shards (each a vecstore table) served by Ray actors; rows routed by a
  stable hash of their id; searches scattered to every shard and merged.
"""

from __future__ import annotations

from ..errors import missing_extra

try:
    import ray as _ray  # noqa: F401
    import ray.data as _ray_data  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised where ray is absent
    raise missing_extra("ray", "ray") from exc

from .ingest import RayIngestReport, ingest
from .sharded import ShardedTable, shard_of
from .sink import VecstoreDatasink, write_table
from .source import VecstoreDatasource, read_table

__all__ = [
    "RayIngestReport",
    "ShardedTable",
    "VecstoreDatasink",
    "VecstoreDatasource",
    "ingest",
    "read_table",
    "shard_of",
    "write_table",
]
