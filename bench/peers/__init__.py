"""One adapter per system in the side-by-side benchmark (``python -m bench``).

A peer stores 384-d unit vectors with four attributes and answers top-k queries, optionally under
a :class:`Filter`. Row ``i`` of the benchmark data has id ``i`` in every system, so results are
compared as arrays of row numbers. Adding a system is one file with a :class:`Peer` subclass and
one line in :data:`PEERS`.

A peer is built in one process, then opened again from its directory in a fresh process to be
searched (cold open, memory). Raw libraries (hnswlib, FAISS) keep no attributes, so their adapters
keep the attribute columns in Arrow and compute the allowed rows with ``pyarrow.compute``, the way
an application built on them would.
"""

from __future__ import annotations

import importlib
import os
import shutil
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from bench.common import ADD_BATCH

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
Knob = Any
"""A setting of a peer's speed/recall knob (an int, a tuple, or None for a peer without one)."""

PEERS: dict[str, str] = {
    "vecstore": "bench.peers.vecstore_peer:VecstorePeer",
    "vecstore-default": "bench.peers.vecstore_peer:VecstoreDefaultPeer",
    "vecstore-hnsw": "bench.peers.vecstore_peer:VecstoreHnswPeer",
    "vecstore-hnsw-sq": "bench.peers.vecstore_peer:VecstoreHnswSqPeer",
    "vecstore-binary-hnsw": "bench.peers.vecstore_peer:VecstoreBinaryHnswPeer",
    "lancedb-ivf-pq": "bench.peers.lancedb_peer:LanceIvfPqPeer",
    "lancedb-ivf-hnsw-sq": "bench.peers.lancedb_peer:LanceHnswSqPeer",
    "chroma": "bench.peers.chroma_peer:ChromaPeer",
    "faiss-hnsw": "bench.peers.faiss_peer:FaissHnswPeer",
    "hnswlib": "bench.peers.hnswlib_peer:HnswlibPeer",
    "duckdb-vss": "bench.peers.duckdb_vss_peer:DuckdbVssPeer",
}
"""Peer name -> ``module:class``; modules are imported only when the peer runs."""

EF_GRID: list[Knob] = [16, 32, 64, 128, 256, 512]
"""The ef values the HNSW peers sweep (the same for each, so that their curves compare)."""
EF_GRID_QUICK: list[Knob] = [16, 64, 256]

TEXT_PEERS = ("vecstore", "lancedb-ivf-pq", "chroma")
"""Peers that embed text themselves (scenario 4)."""


def peer_class(name: str) -> type[Peer]:
    """The class registered under ``name``; an unknown name lists the known ones."""
    try:
        module, cls = PEERS[name].split(":")
    except KeyError:
        raise ValueError(f"unknown peer {name!r}; expected one of {', '.join(PEERS)}") from None
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


# -- filters ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Clause:
    """One condition on an attribute: ``op`` is ``ge``, ``le``, ``between`` or ``prefix``.

    ``field`` is ``month`` (values 'YYYY-MM'), ``download_rank`` (int, null past 15,000) or
    ``name`` (the package name).
    """

    field: str
    op: str
    value: tuple[Any, ...]


@dataclass(frozen=True)
class Filter:
    """A conjunction of clauses, translated by each peer into its own filter language."""

    label: str
    clauses: tuple[Clause, ...]

    def sql(self, placeholders: bool = True) -> tuple[str, list[Any]]:
        """A SQL boolean expression (DuckDB / DataFusion dialect) and its parameters.

        With ``placeholders=False`` the values are inlined as literals (for engines without
        bound parameters in filters); values come from the benchmark, never from users.
        """
        parts: list[str] = []
        params: list[Any] = []

        def lit(v: Any) -> str:
            if placeholders:
                params.append(v)
                return "?"
            return str(int(v)) if isinstance(v, (int, np.integer)) else "'" + str(v).replace("'", "''") + "'"

        for c in self.clauses:
            if c.op == "ge":
                parts.append(f"{c.field} >= {lit(c.value[0])}")
            elif c.op == "le":
                parts.append(f"{c.field} <= {lit(c.value[0])}")
            elif c.op == "between":
                parts.append(f"{c.field} BETWEEN {lit(c.value[0])} AND {lit(c.value[1])}")
            elif c.op == "prefix":
                parts.append(f"starts_with({c.field}, {lit(c.value[0])})")
            else:
                raise ValueError(f"unknown op {c.op!r}")
        return " AND ".join(parts), params

    def mask(self, attrs: pa.Table) -> npt.NDArray[np.bool_]:
        """The rows of ``attrs`` (columns ``name``, ``month``, ``download_rank``) that match."""
        out: Any = None
        for c in self.clauses:
            col = attrs.column(c.field)
            if c.op == "ge":
                m = pc.greater_equal(col, c.value[0])
            elif c.op == "le":
                m = pc.less_equal(col, c.value[0])
            elif c.op == "between":
                m = pc.and_(pc.greater_equal(col, c.value[0]), pc.less_equal(col, c.value[1]))
            elif c.op == "prefix":
                m = pc.starts_with(col, c.value[0])
            else:
                raise ValueError(f"unknown op {c.op!r}")
            out = m if out is None else pc.and_(out, m)
        return np.asarray(pc.fill_null(out, False).to_numpy(zero_copy_only=False), dtype=bool)


def month_int(month: str) -> int:
    """'2024-11' -> 202411 (for engines that compare only numbers); '' (7 rows) -> 0, which
    orders like the empty string does in SQL."""
    return int(month[:4]) * 100 + int(month[5:7]) if month else 0


# -- the adapter -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PeerOptions:
    """How the run asks a peer to work where the benchmark chooses (only vecstore reads these:
    the other systems are configured as their documentation recommends)."""

    add_batch: int = ADD_BATCH
    """Rows per insert call when building the store (0: all at once)."""
    query_path: str = "user"
    """vecstore: which call answers a query (:data:`bench.common.QUERY_PATHS`)."""


class Peer(ABC):
    """A system under test, stored under ``path``.

    Lifecycle: ``build(vectors, attrs)`` in one process, ``close()``; later ``open()`` in a new
    process, ``set_knob`` / ``search`` / ``search_batch`` / ``upsert`` / ``delete``, ``close()``.

    ``attrs`` is an Arrow table with ``name`` (str), ``month`` ('YYYY-MM'), ``month_i`` (int
    YYYYMM) and ``download_rank`` (int32, nullable), row ``i`` describing vector ``i``.
    """

    name: ClassVar[str]
    knob_name: ClassVar[str] = "-"
    knob_grid: ClassVar[list[Knob]] = [None]
    knob_grid_quick: ClassVar[list[Knob] | None] = None
    config: ClassVar[str] = ""
    """One line: how the peer is configured (index type and parameters)."""
    filter_note: ClassVar[str] = ""
    """How the peer filters (for the report)."""

    def __init__(self, path: Path, threads: int = 1, options: PeerOptions | None = None) -> None:
        self.path = Path(path)
        self.threads = threads
        self.options = options or PeerOptions()
        self.knob: Knob = None
        self.notes: list[str] = []

    # building and opening
    @abstractmethod
    def build(self, vectors: F32, attrs: pa.Table) -> dict[str, float]:
        """Create the store from scratch; return timings, e.g. ``{"insert_s": .., "index_s": ..}``."""

    @abstractmethod
    def open(self) -> None:
        """Open the store built under ``self.path`` (in a new process)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release files and threads."""

    # searching
    def set_knob(self, knob: Knob) -> None:
        self.knob = knob

    def supports(self, flt: Filter) -> str | None:
        """``None`` when the peer can run ``flt`` natively, else why not."""
        return None

    @abstractmethod
    def search(self, query: F32, k: int, flt: Filter | None = None) -> I64:
        """Row numbers of the best ``k`` rows (fewer when the system returns fewer)."""

    def search_batch(self, queries: F32, k: int, threads: int) -> list[I64] | None:
        """All ``queries`` through the system's batch API on ``threads`` threads, or ``None``
        when it has none."""
        return None

    # writing
    @abstractmethod
    def upsert(self, rows: I64, vectors: F32, attrs: pa.Table) -> None:
        """Replace the vectors (and attributes) of existing ``rows``."""

    @abstractmethod
    def delete(self, rows: I64) -> None:
        """Delete ``rows``."""

    # text (scenario 4); only peers listed in TEXT_PEERS implement it
    def ingest_texts(self, ids: list[str], texts: list[str], model_path: str, batch: int) -> None:
        raise NotImplementedError(f"{self.name} does not embed text itself")

    def search_text(self, text: str, k: int) -> list[str]:
        raise NotImplementedError(f"{self.name} does not embed text itself")

    # sizes
    def disk_bytes(self) -> int:
        return dir_bytes(self.path)


# -- helpers ---------------------------------------------------------------------------------


def dir_bytes(path: Path) -> int:
    """Bytes of the regular files under ``path`` (apparent size, links not followed)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            p = os.path.join(root, f)
            if not os.path.islink(p):
                total += os.path.getsize(p)
    return total


def reset_dir(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)


def attr_columns(attrs: pa.Table) -> dict[str, pa.ChunkedArray]:
    """The attribute columns every store keeps: ``name``, ``month``, ``download_rank``."""
    return {name: attrs.column(name) for name in ("name", "month", "download_rank")}


def as_rows(values: Any) -> I64:
    """Ids as returned by a system (ints or numeric strings) -> int64 row numbers."""
    if isinstance(values, np.ndarray):
        return values.astype(np.int64, copy=False)
    return np.array([int(v) for v in values], dtype=np.int64)
