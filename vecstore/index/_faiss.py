"""FAISS plumbing shared by the float (``faiss_hnsw``, ``faiss_ivf``) and binary (``faiss_binary``)
backends: importing FAISS, OpenMP threads, ``allow`` bitmaps as selectors, k-means samples, and
the base classes holding search, save and load of a FAISS index and of its two families.

FAISS is imported when an index is built or loaded, never when this module is imported.

Filtering: the ``allow`` bitmap becomes an ``IDSelectorBitmap`` (``np.packbits(allow,
bitorder="little")``) handed to the C++ search through ``SearchParameters``, so no Python runs
per visited vector. None of these backends guarantees ``min(k, allowed)`` results:

- HNSW (:class:`FaissHnswBase`) keeps disallowed nodes in its ``efSearch``-wide beam, so under a
  selective filter the beam may end with fewer than ``k`` allowed nodes. ``effort_for`` raises
  ef like ``1/selectivity`` (:func:`~vecstore.index.calibration.beam_effort`). Measured on
  200,000 MiniLM vectors under a uniform random 0.1% filter: recall@10 0.88 at ef 4,096, 0.96 at
  8,192, and at ef 20,000 one query in 200 still came back short; at 1%, 1.5% of queries were
  short at ef 768.
- IVF (:class:`FaissIvfBase`) scans ``nprobe`` lists; if those hold fewer than ``k`` allowed
  vectors the result is short. With ``effort >= nlist`` every list is scanned and the count is
  exact.

Threads: FAISS uses OpenMP's current setting (``faiss.omp_set_num_threads``), which is the
caller's to choose; ``threads=`` at build time applies to the build only and is restored after.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import numpy as np

from ..config import Metric
from ..errors import CorruptStoreError, missing_extra
from .base import (
    AllowBitmap,
    FloatMatrix,
    GraphParams,
    IndexBase,
    IndexParams,
    LabelMatrix,
    building_on_gpu,
    check_int,
    chunks,
    import_backend,
    params_error,
    progress_bar,
)
from .calibration import beam_effort, calibrate_effort, ivf_effort, nprobe_grid

F = TypeVar("F", bound="FaissIndexBase")
H = TypeVar("H", bound="FaissHnswBase")
V = TypeVar("V", bound="FaissIvfBase")


def faiss_module() -> Any:
    """Import FAISS, or raise MissingDependencyError naming the extra to install."""
    return import_backend("faiss")


@contextmanager
def omp_threads(threads: int | None) -> Iterator[None]:
    """Run with OpenMP capped at ``threads`` (restored afterwards); ``None`` changes nothing."""
    if threads is None:
        yield
        return
    faiss = faiss_module()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(threads)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def on_gpus(index: Any) -> Any:
    """A copy of a CPU ``index`` (a flat index, say) spread over every CUDA device FAISS sees."""
    return faiss_module().index_cpu_to_all_gpus(index)


@contextmanager
def gpu_clustering(ivf: Any, flat: Any) -> Iterator[None]:
    """While a build runs on GPUs (:func:`~vecstore.index.base.building_on_gpu`), the k-means
    of ``ivf.train`` assigns its points to centroids through ``flat`` (an empty flat index of
    the distance the k-means minimises) copied to the GPUs: that assignment is k-means' cost."""
    if not building_on_gpu():
        yield
        return
    ivf.clustering_index = on_gpus(flat)
    try:
        yield
    finally:
        ivf.clustering_index = None  # the GPU copy dies with this frame; the IVF must not point to it


@contextmanager
def gpu_quantizer(ivf: Any) -> Iterator[None]:
    """While a build runs on GPUs, rows added to the trained ``ivf`` find their list through a
    GPU copy of its coarse quantizer (the same centroids); the CPU quantizer, which the IVF owns
    and saves, is put back after."""
    if not building_on_gpu():
        yield
        return
    cpu = ivf.quantizer
    gpu = on_gpus(faiss_module().downcast_index(cpu))
    ivf.quantizer = gpu
    try:
        yield
    finally:
        ivf.quantizer = cpu


class Selector:
    """An ``IDSelectorBitmap`` over an ``allow`` bitmap, keeping its buffer alive with it."""

    def __init__(self, allow: AllowBitmap) -> None:
        faiss = faiss_module()
        self.bits = np.packbits(allow, bitorder="little")
        # The first argument is the bitmap's size in *bytes*: labels past it are not members.
        self.sel = faiss.IDSelectorBitmap(self.bits.shape[0], faiss.swig_ptr(self.bits))


def auto_nlist(n: int) -> int:
    """Default number of IVF lists: ``4 sqrt(n)``, but at least 39 training points per list.

    39 points per centroid is where FAISS stops warning about k-means; 4 sqrt(n) is the usual
    rule of thumb (200,000 vectors -> 1,789 lists of ~112 vectors).
    """
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def check_ivf_params(nlist: int | None, nprobe: int | None) -> None:
    """Validate the ``nlist`` and ``nprobe`` build parameters every IVF kind has (``None``:
    chosen at build time)."""
    check_int("nlist", nlist, 1, 1 << 20, optional=True)
    check_int("nprobe", nprobe, 1, 1 << 20, optional=True)


def training_sample(vectors: np.ndarray, nlist: int, per_list: int = 64) -> np.ndarray:
    """A seeded sample of ``per_list * nlist`` rows for k-means (all rows when there are fewer)."""
    size = per_list * nlist
    if vectors.shape[0] <= size:
        return vectors
    rows = np.sort(np.random.default_rng(1234).choice(vectors.shape[0], size, replace=False))
    return np.ascontiguousarray(vectors[rows])


class FaissIndexBase(IndexBase):
    """Shared search, save and load of a FAISS index.

    A subclass says how queries reach the index (:meth:`_encode`: floats, or sign codes for a
    binary index), how distances become scores and which ``SearchParameters`` carry the effort
    (:meth:`_search_params`).
    """

    exact_count = False
    binary: ClassVar[bool] = False
    """Whether the FAISS index is an ``IndexBinary`` (sign codes), with its own file functions
    and file suffix (``.faissbin`` rather than ``.faiss``)."""

    def __init__(self, index: Any, params: IndexParams, metric: Metric, dim: int) -> None:
        super().__init__(params, metric, dim, int(index.ntotal))
        self._index = index

    @classmethod
    def file_name(cls) -> str:
        return f"{cls.kind}.faissbin" if cls.binary else f"{cls.kind}.faiss"

    @staticmethod
    def faiss_metric(metric: Metric) -> int:
        faiss = faiss_module()
        return faiss.METRIC_L2 if metric is Metric.L2 else faiss.METRIC_INNER_PRODUCT

    @property
    def vector_bytes(self) -> int:
        """Bytes of one vector as the index stores it at full precision (float32)."""
        return self.dim * 4

    @classmethod
    def _encode(cls, vectors: FloatMatrix) -> np.ndarray:
        """What FAISS is given for these vectors, when adding and when searching."""
        return vectors

    def _to_scores(self, dist: np.ndarray, labels: np.ndarray) -> FloatMatrix:
        if self.metric is Metric.L2:
            return np.negative(dist, dtype=np.float32)
        return np.asarray(dist, dtype=np.float32)

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        """FAISS SearchParameters carrying effort and the selector, first in the list; the
        rest are objects they point to, which must stay alive during the search."""
        raise NotImplementedError

    def _search(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                effort: int, *, threads: int | None = None) -> tuple[FloatMatrix, LabelMatrix]:
        selector = Selector(allow) if allow is not None else None
        params = self._search_params(effort, k, selector.sel if selector else None)
        with omp_threads(threads):
            dist, labels = self._index.search(self._encode(queries), k, params=params[0])
        del params, selector  # the C++ search held raw pointers into these until now
        return self._to_scores(dist, labels), labels.astype(np.int64, copy=False)

    @classmethod
    def _add_chunks(cls, index: Any, data: np.ndarray, progress: bool) -> None:
        with progress_bar(data.shape[0], f"building {cls.kind}", progress) as bar:
            for start, stop in chunks(data.shape[0]):
                index.add(data[start:stop])
                bar.update(stop - start)

    @classmethod
    def _train(cls, index: Any, sample: np.ndarray, progress: bool) -> None:
        with progress_bar(sample.shape[0], f"training {cls.kind}", progress) as bar:
            index.train(sample)
            bar.update(sample.shape[0])

    # --- files ----------------------------------------------------------------------------

    @classmethod
    def _stored_dim(cls, dim: int) -> int:
        """The ``d`` FAISS records for an index over ``dim``-dimensional vectors."""
        return dim

    def _writers(self) -> dict[str, Callable[[Path], None]]:
        faiss = faiss_module()
        write = faiss.write_index_binary if self.binary else faiss.write_index
        return {self.file_name(): lambda path: write(self._index, str(path))}

    @classmethod
    def _read(cls: type[F], directory: Path, params: Any, metric: Metric, dim: int,
              count: int) -> F:
        faiss = faiss_module()
        read = faiss.read_index_binary if cls.binary else faiss.read_index
        path = directory / cls.file_name()
        try:
            index = read(str(path))
        except (RuntimeError, MemoryError) as exc:
            raise CorruptStoreError(f"index file {path} is unreadable by FAISS ({exc})") from exc
        if index.d != cls._stored_dim(dim):
            raise CorruptStoreError(
                f"index file {path} has dimension {index.d}, expected {cls._stored_dim(dim)}"
            )
        return cls(index, params, metric, dim)


class FaissHnswBase(FaissIndexBase):
    """An HNSW graph in FAISS (float, scalar-quantized or binary): build, ``efSearch``, memory.

    A subclass creates the index (:meth:`_new_graph`) and may say how many allowed nodes the
    beam should hold per wanted result (``beam_per_result``, see
    :func:`~vecstore.index.calibration.beam_effort`).
    """

    params: GraphParams
    beam_per_result: ClassVar[float] = 2.0

    @classmethod
    def _new_graph(cls, dim: int, metric: Metric, params: Any) -> Any:
        """A new FAISS HNSW index over ``dim``-dimensional vectors (``m`` set, nothing added)."""
        raise NotImplementedError

    @classmethod
    def _empty_graph(cls, dim: int, metric: Metric, params: GraphParams) -> Any:
        index = cls._new_graph(dim, metric, params)
        index.hnsw.efConstruction = params.ef_construction
        return index

    @classmethod
    def _build(cls: type[H], vectors: FloatMatrix, metric: Metric, params: Any,
               progress: bool, threads: int | None) -> H:
        index = cls._empty_graph(vectors.shape[1], metric, params)
        with omp_threads(threads):
            cls._add_chunks(index, cls._encode(vectors), progress)
        return cls(index, params, metric, vectors.shape[1])

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        faiss = faiss_module()
        p = faiss.SearchParametersHNSW()
        p.efSearch = max(effort, k)
        if sel is not None:
            p.sel = sel
        return [p]

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``ef`` for recall@k >= 0.95: :func:`~vecstore.index.calibration.beam_effort`."""
        check_int("k", k, 1)
        return beam_effort(k, selectivity, self._count, per_result=self.beam_per_result)

    def _node_bytes(self) -> int:
        """Bytes of one node's vector (or code) beside the graph."""
        return self.vector_bytes

    @property
    def memory_bytes(self) -> int:
        h = self._index.hnsw
        return int(self._count * self._node_bytes() + h.neighbors.size() * 4
                   + h.levels.size() * 4 + h.offsets.size() * 8)


class FaissIvfBase(FaissIndexBase):
    """An IVF index in FAISS (float or binary): build, ``nprobe``, measured effort, memory.

    A subclass creates the index over its coarse quantizer (:meth:`_new_ivf`) and may resolve
    more parameters (:meth:`_resolve`) or wrap the index (:meth:`_wrap`, a refine step).
    """

    params: Any  # a dataclass with ``nlist`` and ``nprobe``
    ivf_per_result: ClassVar[float] = 8.0
    """Allowed vectors the probed lists should hold per wanted result (see
    :func:`~vecstore.index.calibration.ivf_effort`)."""
    requires: ClassVar[tuple[str, str] | None] = None
    """``(FAISS class, requirement)`` for a kind that needs a newer FAISS than the ``ann``
    extra's minimum; checked first when building."""
    gpu_build = True  # k-means (and, for float vectors, the assignment to lists) on CUDA devices
    gpu_assigns: ClassVar[bool] = True
    """Whether, building on GPUs, rows are assigned to lists through a GPU copy of the quantizer
    (faiss-gpu copies float flat indexes; a binary one stays on the CPU)."""

    @classmethod
    def _build(cls: type[V], vectors: FloatMatrix, metric: Metric, params: Any,
               progress: bool, threads: int | None) -> V:
        if cls.requires and not hasattr(faiss_module(), cls.requires[0]):
            raise missing_extra(f"{cls.requires[1]} ({cls.requires[0]})", "ann")
        n, d = vectors.shape
        nlist = params.nlist or auto_nlist(n)
        if nlist > n:
            raise params_error(cls.kind, "nlist", nlist, f"at most the number of vectors ({n})")
        params = cls._resolve(replace(params, nlist=nlist), n, d)
        quantizer = cls._quantizer(d, metric)
        ivf = cls._new_ivf(quantizer, d, metric, params)
        ivf.own_fields = True  # the IVF index frees its quantizer; Python must not as well
        quantizer.this.disown()
        index = cls._wrap(ivf, params)
        data = cls._encode(vectors)
        with omp_threads(threads):
            with gpu_clustering(ivf, cls._clustering_flat(ivf, metric)):
                cls._train(index, training_sample(data, nlist), progress)
            if cls.gpu_assigns:
                with gpu_quantizer(ivf):
                    cls._add_chunks(index, data, progress)
            else:
                cls._add_chunks(index, data, progress)
        built = cls(index, params, metric, d)
        built._with_measured_nprobe(vectors)
        return built

    @classmethod
    def _resolve(cls, params: Any, n: int, d: int) -> Any:
        """``params`` with fields left to "auto" (None) chosen for ``n`` vectors of ``d``."""
        return params

    @classmethod
    def _quantizer(cls, dim: int, metric: Metric) -> Any:
        """The coarse quantizer: exact search over the list centroids."""
        return faiss_module().IndexFlat(dim, cls.faiss_metric(metric))

    @classmethod
    def _clustering_flat(cls, ivf: Any, metric: Metric) -> Any:
        """An empty flat index of the distance ``ivf``'s k-means minimises (on GPUs it does the
        k-means assignment: :func:`gpu_clustering`)."""
        return faiss_module().IndexFlat(ivf.d, ivf.metric_type)

    @classmethod
    def _new_ivf(cls, quantizer: Any, dim: int, metric: Metric, params: Any) -> Any:
        """A new, untrained FAISS IVF index over ``quantizer``."""
        raise NotImplementedError

    @classmethod
    def _wrap(cls, ivf: Any, params: Any) -> Any:
        """The index searched and saved: ``ivf`` itself, or a wrapper around it."""
        return ivf

    @property
    def nlist(self) -> int:
        return int(self._ivf().nlist)

    def _ivf(self) -> Any:
        faiss = faiss_module()
        return faiss.downcast_index(faiss.extract_index_ivf(self._index))

    def _ivf_params(self, effort: int, sel: Any) -> Any:
        faiss = faiss_module()
        p = faiss.SearchParametersIVF()
        p.nprobe = min(effort, self.nlist)
        if sel is not None:
            p.sel = sel
        return p

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        return [self._ivf_params(effort, sel)]

    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """``nprobe`` for recall@k >= 0.95 under a filter of this selectivity: see
        :func:`~vecstore.index.calibration.ivf_effort`; the unfiltered ``nprobe`` was measured
        at build time."""
        check_int("k", k, 1)
        return ivf_effort(k, selectivity, self._count, self.nlist, self.params.nprobe,
                          per_result=self.ivf_per_result)

    def _truth_space(self, vectors: FloatMatrix) -> tuple[Metric, FloatMatrix | None]:
        """The metric and vectors (None: ``vectors``) whose exact ranks judge this index."""
        return self.metric, None

    def _with_measured_nprobe(self, vectors: FloatMatrix) -> None:
        """Fill ``params.nprobe`` (when None) with the unfiltered nprobe reaching recall@10 >=
        0.95 on sample rows used as queries (:func:`~vecstore.index.calibration.calibrate_effort`)."""
        if self.params.nprobe is not None:
            return

        def search(q: FloatMatrix, k: int, effort: int) -> LabelMatrix:
            return self._search(q, k, None, effort)[1]

        metric, truth_vectors = self._truth_space(vectors)
        measured = calibrate_effort(search, vectors, metric, nprobe_grid(self.nlist),
                                    truth_vectors=truth_vectors)
        self.params = replace(self.params, nprobe=measured)

    @property
    def memory_bytes(self) -> int:
        ivf = self._ivf()
        lists = int(ivf.ntotal) * (int(ivf.code_size) + 8)  # codes + int64 ids
        quantizer = int(ivf.nlist) * self.vector_bytes
        return lists + quantizer + self._extra_bytes()

    def _extra_bytes(self) -> int:
        return 0

