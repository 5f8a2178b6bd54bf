"""ANN index backends: one small protocol, one module per backend, a name -> class table.

This layer knows nothing of tables, storage or queries. An index covers the float32 vectors the
table hands it, in order; its labels are positions ``0..n-1`` in that array. Importing this
package imports neither FAISS nor hnswlib: a backend imports its library when it builds or loads.

>>> import numpy as np
>>> from vecstore.index import build_index
>>> vectors = np.random.default_rng(0).standard_normal((500, 16)).astype(np.float32)
>>> index = build_index("flat", vectors, "cosine")
>>> scores, labels = index.search(vectors[:2], k=3)
>>> labels[:, 0].tolist()
[0, 1]

Backends (``INDEX_KINDS``):

============== ============================================= ===================== ==============
kind           what                                          allow bitmap          min(k, allowed)
============== ============================================= ===================== ==============
flat           exact NumPy scan; fallback and test oracle     gathers allowed rows  guaranteed
hnsw           hnswlib graph                                 Python callback       usually [1]
hnsw-int8      hnswlib's graph over int8 codes, own kernel   compiled, in-graph    usually [1]
faiss-hnsw     FAISS IndexHNSWFlat                           IDSelectorBitmap      no [2]
hnsw-sq        FAISS IndexHNSWSQ (4-bit codes; rescored)     IDSelectorBitmap      no [2]
ivf            FAISS IndexIVFFlat                            IDSelectorBitmap      no [3]
ivf-pq         FAISS IndexIVFPQ (+ exact refine by default)  IDSelectorBitmap      no [3]
ivf-rabitq     FAISS IndexIVFRaBitQ (+ exact refine)         IDSelectorBitmap      no [3]
binary-hnsw    FAISS IndexBinaryHNSW on sign codes           IDSelectorBitmap      no [2]
binary-ivf     FAISS IndexBinaryIVF on sign codes            over-fetch + filter   no [3]
ivf-binary     k-means lists of centred sign codes, own      compiled, in-scan     no [3]
               Numba scan; candidates rescored (large tables)
============== ============================================= ===================== ==============

[1] hnswlib walks until it holds ``ef`` allowed labels, so it comes back short only when the
graph part reachable from the entry point holds fewer than ``k`` allowed (seen at 0.1%
selectivity on a few thousand rows). [2] the beam of ``ef`` nodes includes disallowed ones.
[3] only the ``nprobe`` probed lists are scanned; ``effort >= nlist`` makes it exact in count.
The planner checks the count and falls back to the exact scan.

Effort (``ef`` / ``nprobe``) defaults to ``index.effort_for(k, selectivity)``: the rules and the
measurements behind them are in :mod:`vecstore.index.calibration` and ``bench/ann_backends.py``.

Modules: ``base`` (the protocol, :class:`IndexBase`, shared checks), ``flat`` (exact, NumPy),
``hnswlib_index`` (``hnsw``), ``faiss_hnsw`` (``faiss-hnsw``, ``hnsw-sq``), ``faiss_ivf``
(``ivf``, ``ivf-pq``, ``ivf-rabitq``), ``faiss_binary`` (``binary-hnsw``, ``binary-ivf``),
``ivf_binary`` (``ivf-binary``: the one-box path for 10M-row tables, docs/scale.md), on
``_faiss`` (the FAISS plumbing they share); ``calibration`` (effort rules and build-time
measurement); ``_files`` (checksummed index files).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..config import Metric
from ..errors import InvalidArgumentError
from .base import IndexBase, IndexParams, VectorIndex


class _Registry(Mapping[str, type[IndexBase]]):
    """Backend name -> class, each backend module imported the first time its class is asked
    for (opening a table with one index kind loads that backend's module only)."""

    def __init__(self, where: dict[str, str]) -> None:
        self._where = where  # kind -> "module:Class"

    def __getitem__(self, kind: str) -> type[IndexBase]:
        module, name = self._where[kind].split(":")
        return getattr(importlib.import_module(f"{__name__}.{module}"), name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)


INDEX_KINDS: Mapping[str, type[IndexBase]] = _Registry({
    "flat": "flat:FlatIndex",
    "hnsw": "hnswlib_index:HnswIndex",
    "hnsw-int8": "graph_int8:GraphInt8Index",
    "faiss-hnsw": "faiss_hnsw:FaissHnswIndex",
    "hnsw-sq": "faiss_hnsw:HnswSqIndex",
    "ivf": "faiss_ivf:IvfFlatIndex",
    "ivf-pq": "faiss_ivf:IvfPqIndex",
    "ivf-rabitq": "faiss_ivf:IvfRabitqIndex",
    "binary-hnsw": "faiss_binary:BinaryHnswIndex",
    "binary-ivf": "faiss_binary:BinaryIvfIndex",
    "ivf-binary": "ivf_binary:IvfBinaryIndex",
})
"""Backend name -> class. A backend's module is imported when its class is first asked for, and
the module imports its library (FAISS, hnswlib) only when an index is built or loaded."""


def sign_codes(vectors: npt.ArrayLike) -> npt.NDArray[np.uint8]:
    """Sign codes of ``vectors`` as the binary backends compute them (see ``faiss_binary``)."""
    from .faiss_binary import sign_codes as codes

    return codes(np.asarray(vectors, dtype=np.float32))


def index_class(kind: str) -> type[IndexBase]:
    """The class registered under ``kind``; an unknown name lists the known ones."""
    try:
        return INDEX_KINDS[kind]
    except (KeyError, TypeError, AttributeError):
        allowed = ", ".join(repr(k) for k in INDEX_KINDS)
        raise InvalidArgumentError(f"unknown index kind {kind!r}; expected one of {allowed}") from None


def build_index(
    kind: str,
    vectors: npt.ArrayLike,
    metric: Metric | str,
    *,
    progress: bool = False,
    threads: int | None = None,
    sample_queries: npt.ArrayLike | None = None,
    gpu: bool | None = None,
    **params: Any,
) -> IndexBase:
    """Build a ``kind`` index over ``vectors`` (``[n, d]``) compared by ``metric``.

    Keyword arguments are the backend's parameters (see its ``*Params`` dataclass); an unknown
    one raises :class:`~vecstore.errors.InvalidArgumentError` listing the accepted ones.
    ``progress`` draws a tqdm bar on stderr; ``threads`` caps build threads (``None``: leave
    the library's setting alone); ``sample_queries`` are what the search effort is measured on
    (:meth:`~vecstore.index.base.IndexBase.check_sample_queries`); ``gpu`` whether the build's
    GPU stages run on CUDA devices (:meth:`~vecstore.index.base.IndexBase.resolve_gpu`).
    """
    cls = index_class(kind)
    return cls.build(vectors, metric, progress=progress, threads=threads,
                     sample_queries=sample_queries, gpu=gpu, **params)


def load_index(
    kind: str, directory: Path, params: Mapping[str, Any] | IndexParams | None = None,
    *, expect: Mapping[str, Any] | None = None,
) -> IndexBase:
    """Load a ``kind`` index saved into ``directory``, after verifying its files' checksums.

    ``params`` are those the caller recorded at build time (``index.params.to_json()``); they
    must agree with the files, and so must ``expect`` (e.g. ``{"dim": 384, "metric":
    "cosine", "count": n}``). Damaged files raise :class:`~vecstore.errors.CorruptStoreError`.
    """
    return index_class(kind).load(Path(directory), params, expect=expect)


__all__ = [
    "INDEX_KINDS",
    "IndexBase",
    "IndexParams",
    "VectorIndex",
    "build_index",
    "index_class",
    "load_index",
    "sign_codes",
]
