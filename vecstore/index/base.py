"""The protocol every index backend implements, and the checks they share.

An index covers the float32 vectors of some rows, in order: its labels are positions
``0..n-1`` in that array, and the caller (the table) maps them back to rows. It knows nothing of
tables, storage or queries. Scores are higher-is-better, as in :class:`vecstore.config.Metric`:
cosine similarity, inner product, or *negative* squared L2 distance. Binary indexes, which only
propose candidates, score ``-hamming`` on sign codes.

Backends subclass :class:`IndexBase`, which validates the arguments of :meth:`IndexBase.search`,
clips ``k`` to what can be returned, pads the result with label ``-1`` and score ``-inf``, and
handles the checksummed files of :meth:`IndexBase.save` / :meth:`IndexBase.load`. A backend
provides ``_build``, ``_search``, ``_write``, ``_read``, ``memory_bytes`` and ``effort_for``.
"""

from __future__ import annotations

import dataclasses
import importlib
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import numpy.typing as npt

from ..config import Metric
from ..errors import CorruptStoreError, InvalidArgumentError, missing_extra
from ..vectors import out_of_range, range_message, row_norms
from . import _files

FloatMatrix = npt.NDArray[np.float32]
LabelMatrix = npt.NDArray[np.int64]
AllowBitmap = npt.NDArray[np.bool_]

P = TypeVar("P", bound="IndexParams")
I = TypeVar("I", bound="IndexBase")  # noqa: E741

PAD_LABEL = -1
PAD_SCORE = np.float32(-np.inf)


@dataclasses.dataclass(frozen=True)
class IndexParams:
    """Base of the per-backend build parameters: small frozen dataclasses, validated on creation.

    ``to_json`` / ``from_json`` round-trip them through the table's manifest. ``None`` fields
    mean "choose from the data" and are replaced by the chosen value in the ``params`` of a
    built index, so a loaded index reports what it was really built with.
    """

    @classmethod
    def from_json(cls: type[P], data: Mapping[str, Any] | P | None) -> P:
        """Parse a mapping (unknown keys are an error listing the known ones)."""
        if data is None:
            return cls()
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise InvalidArgumentError(
                f"index parameters must be a mapping, got {type(data).__name__}"
            )
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise InvalidArgumentError(
                f"unknown index parameter(s) {', '.join(map(repr, unknown))} for {cls.__name__}; "
                f"expected {', '.join(known) if known else 'none'}"
            )
        return cls(**data)

    def to_json(self) -> dict[str, Any]:
        """The parameters as a JSON-ready dict."""
        return dataclasses.asdict(self)


def check_int(
    name: str, value: Any, low: int, high: int | None = None, *, optional: bool = False
) -> None:
    """Raise :class:`InvalidArgumentError` unless ``value`` is an int in ``[low, high]``."""
    if value is None and optional:
        return
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    if ok and value >= low and (high is None or value <= high):
        return
    bound = f">= {low}" if high is None else f"in [{low}, {high}]"
    none = " or None" if optional else ""
    raise InvalidArgumentError(f"{name} must be an integer {bound}{none}, got {value!r}")


@dataclasses.dataclass(frozen=True)
class GraphParams(IndexParams):
    """Build parameters every HNSW graph has, whichever library builds it.

    Attributes:
        m: links per node (the base layer keeps ``2 m``). More links: better recall at a given
            ``ef``, more memory and slower builds.
        ef_construction: breadth of the search that picks each new node's links.
    """

    m: int = 16
    ef_construction: int = 200

    def __post_init__(self) -> None:
        check_int("m", self.m, 2, 512)
        check_int("ef_construction", self.ef_construction, 1, 1 << 16)


_BUILD_ON_GPU: ContextVar[bool] = ContextVar("vecstore_build_on_gpu", default=False)


def building_on_gpu() -> bool:
    """Whether the index build running in this context puts its GPU stages on CUDA devices
    (set by :meth:`IndexBase.build` from :meth:`IndexBase.resolve_gpu`)."""
    return _BUILD_ON_GPU.get()


@contextmanager
def build_device(on_gpu: bool) -> Iterator[None]:
    """Run a build with :func:`building_on_gpu` answering ``on_gpu``."""
    token = _BUILD_ON_GPU.set(on_gpu)
    try:
        yield
    finally:
        _BUILD_ON_GPU.reset(token)


def cuda_devices() -> int:
    """CUDA devices FAISS can use: -1 when the installed FAISS has no GPU support (faiss-cpu)
    or no FAISS is installed, else ``faiss.get_num_gpus()``."""
    try:
        faiss = importlib.import_module("faiss")
    except ImportError:
        return -1
    if not hasattr(faiss, "StandardGpuResources"):
        return -1
    return int(faiss.get_num_gpus())


@dataclasses.dataclass(frozen=True, eq=False)
class VectorBlocks:
    """Blocks of rows (a table's segments, memory-mapped) that together are the vectors to
    index, in order: what the table hands a backend whose ``builds_from_blocks`` is true, so
    that a 10M-row build does not first copy 15 GB of float32 vectors into one array."""

    blocks: tuple[npt.NDArray[np.float32], ...]


@runtime_checkable
class VectorIndex(Protocol):
    """What the planner and the table may rely on, whatever the backend."""

    kind: ClassVar[str]
    params: IndexParams
    metric: Metric
    dim: int

    def search(self, queries: npt.ArrayLike, k: int, *, allow: AllowBitmap | None = None,
               effort: int | None = None, threads: int | None = None
               ) -> tuple[FloatMatrix, LabelMatrix]: ...

    def effort_for(self, k: int, selectivity: float = 1.0) -> int: ...

    def save(self, directory: Path) -> list[str]: ...

    def __len__(self) -> int: ...

    @property
    def memory_bytes(self) -> int: ...


class IndexBase(ABC):
    """Shared behaviour of the backends; see the module docstring.

    Attributes:
        kind: the registry name of the backend.
        params: the resolved build parameters (a frozen dataclass).
        metric: how the indexed vectors are compared.
        dim: their dimension.
        exact_count: whether, given enough effort, ``search`` always returns
            ``min(k, n, allowed)`` results. Graph backends may find fewer under very
            selective ``allow`` bitmaps (see each backend); the planner then falls back.
    """

    # Whether the backend's reader refuses damaged files with an error rather than crashing or
    # trusting them (it checks sizes and offsets; the index is never searched before the
    # checksums passed): then the files' checksums run while it reads. FAISS's readers are not
    # known to be safe on damaged bytes, so they read only verified files.
    reads_damaged_files_safely: ClassVar[bool] = False

    kind: ClassVar[str]
    params_type: ClassVar[type[IndexParams]]
    exact_count: ClassVar[bool] = False
    # Whether build() accepts VectorBlocks (reading them a chunk at a time) besides a matrix.
    builds_from_blocks: ClassVar[bool] = False
    # Whether the planner ranks this index's candidates by their int8 codes before reading the
    # float32 vectors of the best quarter: for indexes that propose hundreds of coarse (Hamming)
    # candidates per result, whose float32 rows would otherwise all be read.
    int8_first: ClassVar[bool] = False
    # Whether _search itself gives label -1 with score -inf wherever it found fewer than k:
    # search_prepared then does not look for such labels (every query would pay it).
    pads_misses: ClassVar[bool] = False
    # Whether the build measures its search effort on ``sample_queries`` when given (its
    # ``_build`` takes ``queries=``) instead of on held-out rows of the table.
    calibrates_on_queries: ClassVar[bool] = False
    # Whether a search with an allow bitmap holds the GIL (hnswlib calls a Python function per
    # visited node): such a search is not split over threads, which would only contend for it.
    filter_holds_gil: ClassVar[bool] = False
    # Whether the build has stages that faiss-gpu runs on CUDA devices (k-means, the assignment
    # of rows to lists): see :meth:`resolve_gpu` and :func:`building_on_gpu`.
    gpu_build: ClassVar[bool] = False

    def __init__(self, params: IndexParams, metric: Metric, dim: int, count: int) -> None:
        self.params = params
        self.metric = metric
        self.dim = dim
        self._count = count

    # --- building -------------------------------------------------------------------------

    @classmethod
    def build(
        cls: type[I],
        vectors: npt.ArrayLike,
        metric: Metric | str = Metric.COSINE,
        *,
        progress: bool = False,
        threads: int | None = None,
        sample_queries: npt.ArrayLike | None = None,
        gpu: bool | None = None,
        **params: Any,
    ) -> I:
        """Build an index over ``vectors`` (``[n, d]``, finite); other keywords are parameters.

        ``progress`` shows a tqdm bar on stderr. ``threads`` caps the threads the build uses;
        ``None`` leaves the library's own setting alone (hnswlib: every core; FAISS: OpenMP's
        current ``omp_get_max_threads()``, which the caller may have set). ``sample_queries``
        (``[q, d]``, a sample of the queries the table will serve) are what the search effort is
        measured on, instead of held-out rows (:meth:`check_sample_queries`). ``gpu``: whether
        the stages faiss-gpu has run on CUDA devices (:meth:`resolve_gpu`).
        """
        metric = Metric.parse(metric)
        check_int("threads", threads, 1, optional=True)
        on_gpu = cls.resolve_gpu(gpu)
        parsed = cls.params_type.from_json(params)
        data = as_matrix(vectors, "vectors")
        queries = cls.check_sample_queries(sample_queries, data.shape[1], metric)
        if cls.min_rows() > data.shape[0]:
            raise InvalidArgumentError(
                f"a {cls.kind!r} index needs at least {cls.min_rows()} vectors, got "
                f"{data.shape[0]}; use the 'flat' index for so few rows"
            )
        if metric is Metric.COSINE:
            data = normalized(data)
        extra = {} if queries is None else {"queries": queries}
        with build_device(on_gpu):
            return cls._build(data, metric, parsed, progress, threads, **extra)

    @classmethod
    def resolve_gpu(cls, gpu: bool | None) -> bool:
        """Whether a build asked for with ``gpu`` runs its GPU stages (``gpu_build``) on CUDA.

        ``None`` (the default): on every CUDA device FAISS sees, when this kind has such stages
        and faiss-gpu is installed; on the CPU otherwise. ``True`` insists (an error names what is
        missing: a kind with GPU stages, faiss-gpu, a device), ``False`` keeps the build on the
        CPU. The GPU changes how fast the build runs, not what it builds: the same k-means and
        the same nearest-centroid assignment, in other floating-point order.
        """
        if gpu is not None and not isinstance(gpu, bool):
            raise InvalidArgumentError(f"gpu must be True, False or None, got {gpu!r}")
        if gpu is False or (gpu is None and not cls.gpu_build):
            return False
        if not cls.gpu_build:
            from . import INDEX_KINDS, index_class

            kinds = ", ".join(repr(k) for k in INDEX_KINDS if index_class(k).gpu_build)
            raise InvalidArgumentError(f"a {cls.kind!r} index has no GPU build stage; the kinds "
                                       f"whose builds use a GPU: {kinds}")
        devices = cuda_devices()
        if gpu is None:
            return devices > 0
        if devices < 0:
            raise missing_extra("faiss with GPU support (faiss-gpu-cu12)", "gpu")
        if devices == 0:
            raise InvalidArgumentError("gpu=True, but FAISS sees no CUDA device")
        return True

    @classmethod
    def check_sample_queries(cls, queries: npt.ArrayLike | None, dim: int,
                             metric: Metric) -> FloatMatrix | None:
        """Validated ``sample_queries`` (unit length for cosine), or None.

        Held-out rows stand for queries only as far as queries look like rows: where the table
        holds many copies of its rows, or the queries come from elsewhere (questions against
        passages), a sample of real queries measures the effort they need. Kinds that measure no
        effort at build time refuse them."""
        if queries is None:
            return None
        if not cls.calibrates_on_queries:
            from . import INDEX_KINDS, index_class

            kinds = ", ".join(repr(k) for k in INDEX_KINDS if index_class(k).calibrates_on_queries)
            raise InvalidArgumentError(f"a {cls.kind!r} index does not measure its search effort "
                                       f"on sample_queries; the kinds that do: {kinds}")
        q = as_matrix(queries, "sample_queries")
        if q.shape[1] != dim or q.shape[0] < 2:
            raise InvalidArgumentError(f"sample_queries must be [q >= 2, {dim}], got {list(q.shape)}")
        return normalized(q) if metric is Metric.COSINE else q

    @classmethod
    def min_rows(cls) -> int:
        """The fewest vectors this backend can be built on."""
        return 1

    @classmethod
    @abstractmethod
    def _build(
        cls: type[I],
        vectors: FloatMatrix,
        metric: Metric,
        params: Any,
        progress: bool,
        threads: int | None,
    ) -> I:
        """Build from validated vectors (already unit length for cosine)."""

    # --- searching ------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} kind={self.kind!r} n={self._count} dim={self.dim} "
            f"metric={self.metric.value!r} params={self.params}>"
        )

    def search(
        self,
        queries: npt.ArrayLike,
        k: int,
        *,
        allow: AllowBitmap | None = None,
        effort: int | None = None,
        threads: int | None = None,
    ) -> tuple[FloatMatrix, LabelMatrix]:
        """The ``k`` best labels per query: ``(scores [q, k] float32, labels [q, k] int64)``.

        Rows are sorted by descending score. When fewer than ``k`` are found (``k`` above
        ``len(self)`` or the number allowed, or an approximate search that came up short) the
        rest is padded with label ``-1`` and score ``-inf``.

        Args:
            queries: ``[q, d]`` (or one ``[d]`` vector, treated as ``[1, d]``).
            k: results per query, >= 1.
            allow: optional boolean bitmap over labels ``0..n-1``; only labels where it is
                true are returned.
            effort: the backend's search breadth (HNSW ``ef``, IVF ``nprobe``). ``None`` uses
                :meth:`effort_for` with ``k`` and the bitmap's selectivity.
            threads: the most threads a search of several queries may use (hnswlib's
                ``num_threads``, FAISS's OpenMP threads, Numba's parallel kernels); None: the
                library's default (hnswlib and Numba: every core). Backends searching on the
                calling thread alone (``flat``, ``ivf-binary``) have nothing to cap.
        """
        q = self.prepare_queries(queries)
        check_int("k", k, 1)
        check_int("effort", effort, 1, optional=True)
        check_int("threads", threads, 1, optional=True)
        allowed = self._count
        if allow is not None:
            allow = np.asarray(allow)
            if allow.dtype != np.bool_ or allow.shape != (self._count,):
                raise InvalidArgumentError(
                    f"allow must be a boolean array of shape ({self._count},), one flag per "
                    f"label, got {allow.dtype} {allow.shape}"
                )
            allowed = int(np.count_nonzero(allow))
        return self.search_prepared(q, int(k), allow, allowed, effort, threads=threads)

    def search_prepared(self, queries: FloatMatrix, k: int, allow: AllowBitmap | None,
                        allowed: int, effort: int | None, *, threads: int | None = None
                        ) -> tuple[FloatMatrix, LabelMatrix]:
        """:meth:`search` without its checks, for a caller that has made them: ``queries``
        from :meth:`prepare_queries`, ``k >= 1``, ``allow`` a boolean bitmap over the labels
        (or None) of which ``allowed`` are true, ``threads`` None or >= 1."""
        if allow is not None and allowed == self._count:
            allow = None
        k_eff = min(k, allowed)
        if k_eff == 0 or queries.shape[0] == 0:
            return (np.full((queries.shape[0], k), PAD_SCORE, dtype=np.float32),
                    np.full((queries.shape[0], k), PAD_LABEL, dtype=np.int64))
        if effort is None:
            effort = self.effort_for(k, allowed / self._count)
        s, lab = self._search(queries, k_eff, allow, int(effort), threads=threads)
        if s.shape[1] < k:
            pad = k - s.shape[1]
            s = np.pad(s, ((0, 0), (0, pad)), constant_values=PAD_SCORE)
            lab = np.pad(lab, ((0, 0), (0, pad)), constant_values=PAD_LABEL)
        elif s.shape[1] > k:
            s, lab = s[:, :k], lab[:, :k]
        if not self.pads_misses:
            missing = lab < 0
            if missing.any():
                s = np.where(missing, PAD_SCORE, s).astype(np.float32, copy=False)
        return s, lab

    def candidate_labels(self, query: FloatMatrix, k: int, effort: int) -> LabelMatrix:
        """The labels of :meth:`search_prepared` for one prepared, unfiltered query (``[1, dim]``):
        ``[1, <= k]``, -1 where the index found fewer. A backend may answer it leaner, as the
        planner's unfiltered query path needs nothing else."""
        return self.search_prepared(query, k, None, self._count, effort)[1]

    def prepare_queries(self, queries: npt.ArrayLike) -> FloatMatrix:
        """Validate queries as a ``[q, dim]`` float32 matrix (unit length for cosine)."""
        q = np.asarray(queries)
        if q.ndim == 1:
            q = q.reshape(1, -1)
        q = as_matrix(q, "queries")
        if q.shape[1] != self.dim:
            raise InvalidArgumentError(
                f"queries have dimension {q.shape[1]}, the index has {self.dim}"
            )
        return normalized(q) if self.metric is Metric.COSINE else q

    @abstractmethod
    def _search(
        self, queries: FloatMatrix, k: int, allow: AllowBitmap | None, effort: int, *,
        threads: int | None = None,
    ) -> tuple[FloatMatrix, LabelMatrix]:
        """Search validated queries for ``k <= min(n, allowed)`` results on at most ``threads``
        threads (None: the library's default); ``-1`` marks a miss."""

    @abstractmethod
    def effort_for(self, k: int, selectivity: float = 1.0) -> int:
        """The effort (ef / nprobe) that reaches recall@k >= 0.95 at this filter selectivity.

        ``selectivity`` is the fraction of labels the ``allow`` bitmap keeps, in ``(0, 1]``.
        """

    def effort_source(self, k: int, selectivity: float = 1.0) -> str:
        """Where :meth:`effort_for`'s effort comes from, for ``explain()``: backends that
        measure it at build time say so; the others follow their rule."""
        return (f"{self.kind} effort={self.effort_for(k, selectivity)}: the backend's rule for "
                f"k={k} and selectivity {selectivity:.1%} (vecstore.index.calibration)")

    @property
    def exact_scores(self) -> bool:
        """Whether the scores :meth:`search` returns are the exact metric scores (float
        vectors, or quantized candidates refined exactly), so that the planner need not
        rescore the candidates."""
        return False

    def candidates_for(self, k: int) -> int:
        """How many candidates the planner takes from this index to rescore exactly for ``k``
        results: a few beyond ``k`` for indexes with exact (or refined) scores; backends with
        quantized scores take more."""
        return k if self.exact_scores else max(k, min(2 * k, k + 10))

    @property
    @abstractmethod
    def memory_bytes(self) -> int:
        """Best estimate of the bytes this index keeps resident."""

    # --- files ----------------------------------------------------------------------------

    def save(self, directory: Path) -> list[str]:
        """Write the index into ``directory`` (atomically, with a checksum sidecar). The
        directory is created if missing; its parent must exist.

        Returns the names of the files written, the sidecar ``<kind>.json`` last.
        """
        meta = {
            "kind": self.kind,
            "metric": self.metric.value,
            "dim": self.dim,
            "count": self._count,
            "params": self.params.to_json(),
        }
        return _files.write_index_files(Path(directory), self.kind, self._writers(), meta)

    @classmethod
    def load(
        cls: type[I], directory: Path, params: IndexParams | Mapping[str, Any] | None = None,
        *, expect: Mapping[str, Any] | None = None,
    ) -> I:
        """Load an index saved by :meth:`save`, after checking every file's length and checksum.

        ``params``, when given (what the table's manifest recorded), must match the
        parameters in the sidecar; so must ``expect`` (sidecar fields such as ``dim``,
        ``metric``, ``count`` that the caller knows from elsewhere), checked before the backend
        reads a byte. Raises :class:`~vecstore.errors.CorruptStoreError` naming the file when
        anything does not match or the backend cannot read it.
        """
        directory = Path(directory)
        # The files' checksums run on the checker thread while the backend reads them (the two
        # take about as long); the index is returned only once they passed.
        meta, checks = _files.verify_started(directory, cls.kind, expect)
        if not cls.reads_damaged_files_safely:
            for check in checks:
                check.wait()
        try:
            index = cls._load_checked(directory, meta, params)
        except CorruptStoreError:
            for check in checks:  # a failed checksum explains an unreadable file best
                check.wait()
            raise
        for check in checks:
            check.wait()
        return index

    @classmethod
    def _load_checked(cls: type[I], directory: Path, meta: dict[str, Any],
                      params: IndexParams | Mapping[str, Any] | None) -> I:
        side = directory / _files.sidecar_name(cls.kind)
        try:
            stored = cls.params_type.from_json(meta.get("params") or {})
            metric = Metric.parse(meta["metric"])
            dim, count = int(meta["dim"]), int(meta["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStoreError(f"index sidecar {side} is malformed ({exc})") from exc
        if params is not None:
            wanted = cls.params_type.from_json(params)
            # Compare the fields the caller named (all of them for a params object); a field
            # left to "auto" (None) matches whatever the build chose.
            named = set(params) if isinstance(params, Mapping) else {
                f.name for f in dataclasses.fields(wanted)}
            diff = {
                name: (getattr(wanted, name), getattr(stored, name))
                for name in sorted(named)
                if getattr(wanted, name) is not None
                and getattr(wanted, name) != getattr(stored, name)
            }
            if diff:
                raise CorruptStoreError(
                    f"index files in {directory} were built with other parameters than the "
                    f"manifest records (field: manifest, files): {diff}; rebuild the index"
                )
        index = cls._read(directory, stored, metric, dim, count)
        if len(index) != count:
            raise CorruptStoreError(
                f"index in {directory} holds {len(index)} vectors, its sidecar {side} says {count}"
            )
        return index

    @abstractmethod
    def _writers(self) -> dict[str, Callable[[Path], None]]:
        """File name -> function writing that file at a given (temporary) path."""

    @classmethod
    @abstractmethod
    def _read(cls: type[I], directory: Path, params: Any, metric: Metric, dim: int, count: int) -> I:
        """Read verified files; translate the backend's errors into CorruptStoreError."""


# --- helpers shared by the backends -----------------------------------------------------------


def as_matrix(values: npt.ArrayLike, name: str) -> FloatMatrix:
    """``values`` as a C-contiguous float32 ``[n, d]`` matrix of finite numbers."""
    try:
        arr = np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"{name} must be a 2-D array of numbers ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] == 0 or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise InvalidArgumentError(
            f"{name} must be a 2-D numeric array [n, d] with d >= 1, got {arr.dtype} {arr.shape}"
        )
    with np.errstate(over="ignore"):  # beyond float32: inf, refused just below
        arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise InvalidArgumentError(f"{name} contain NaN or infinite values; remove or fix them")
    # hnswlib and FAISS score in float32 too: the same range as table rows (vecstore.vectors)
    norms = row_norms(arr)
    bad = out_of_range(norms)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArgumentError(range_message(f"{name}: row {i}", float(norms[i])))
    return arr


def normalized(x: FloatMatrix) -> FloatMatrix:
    """Rows scaled to unit L2 norm (zero rows stay zero) for cosine via inner product; norms
    are computed in float64, so no float32 sum of squares overflows or underflows."""
    norms = row_norms(x).astype(np.float32)[:, None]
    norms[norms == 0] = 1
    return np.ascontiguousarray(x / norms, dtype=np.float32)


class _NoBar:
    """What :func:`progress_bar` returns when disabled: tqdm's interface, doing nothing."""

    def __enter__(self) -> _NoBar:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(total: int, desc: str, enabled: bool) -> Any:
    """A tqdm bar on stderr, or a bar that does nothing when disabled. A disabled tqdm still
    takes tqdm's lock, a semaphore shared with forked processes: one killed while holding it
    would block every bar in its parent, so none is made unless it is shown."""
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="vec", file=sys.stderr, mininterval=0.5, leave=False)


def chunks(n: int, size: int | None = None) -> list[tuple[int, int]]:
    """Consecutive ``(start, stop)`` ranges covering ``0..n``, about 1% of ``n`` each (so a
    progress bar moves) but at least 1,000 rows, so per-call overhead stays negligible."""
    size = size or max(1000, -(-n // 100))
    return [(s, min(n, s + size)) for s in range(0, n, size)]


def params_error(kind: str, name: str, value: Any, expected: str) -> InvalidArgumentError:
    """A uniform message for a bad backend parameter."""
    return InvalidArgumentError(f"{kind} index: {name}={value!r} is invalid; expected {expected}")


def import_backend(module: str, extra: str = "ann") -> Any:
    """Import a backend's optional library (FAISS, hnswlib) when an index is built or loaded.

    Raises :class:`~vecstore.errors.MissingDependencyError` naming the extra to install when it
    is absent, so importing :mod:`vecstore.index` never needs it.
    """
    try:
        return importlib.import_module(module)
    except ImportError:
        raise missing_extra(module, extra) from None
