"""Which implementation of a kernel module a caller gets: the Numba kernels once they are loaded,
their NumPy twins until then.

Importing Numba and loading compiled kernels from its on-disk cache takes about a second (and
compiling them, the first time, much longer). A process that opens a table and answers one
query should not wait for that: :func:`get` never blocks, it starts loading the Numba modules on
a background thread and hands out the NumPy twins (same results up to float32 rounding) until
they are ready. :func:`get` with ``wait=True`` blocks instead (benchmarks, tests of the kernels).
``VECSTORE_KERNELS=numpy`` selects the twins for good (debugging, or where Numba cannot run).

Pairs: ``kernels`` / ``reference`` (scans, scoring, top-k) and ``graph`` / ``graph_reference``
(graph search).
"""

from __future__ import annotations

import importlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

PACKAGE = __name__.rsplit(".", 1)[0]
TWINS = {"kernels": "reference", "graph": "graph_reference"}

_compiled: dict[str, ModuleType] = {}
_failed: dict[str, BaseException] = {}
_lock = threading.Lock()
_loading: threading.Thread | None = None


def _load_all() -> None:
    for name in TWINS:
        try:
            module = importlib.import_module(f"{PACKAGE}.{name}")
            module.warm_up()  # loads (or compiles) every kernel for the dtypes vecstore uses
        except BaseException as exc:  # noqa: BLE001 - recorded; the twins keep working
            _failed[name] = exc
        else:
            _compiled[name] = module


def start() -> None:
    """Start loading the Numba kernels in the background (once per process)."""
    global _loading
    if os.environ.get("VECSTORE_KERNELS", "").lower() == "numpy":
        return
    with _lock:
        if _loading is None:
            _loading = threading.Thread(target=_load_all, name="vecstore-kernels", daemon=True)
            _loading.start()


def get(name: str, wait: bool = False) -> ModuleType:
    """The ``name`` kernel module: compiled when loaded (or when ``wait``), else its twin."""
    module = _compiled.get(name)
    if module is not None:  # every query asks: answered without reading the environment
        return module  # (loaded only when VECSTORE_KERNELS was not "numpy" at the first get)
    twin = TWINS[name]
    if os.environ.get("VECSTORE_KERNELS", "").lower() == "numpy":
        return importlib.import_module(f"{PACKAGE}.{twin}")
    start()
    if wait and _loading is not None:
        _loading.join()
        module = _compiled.get(name)
        if module is not None:
            return module
        if name in _failed:
            raise ImportError(f"the Numba kernels could not be loaded: {_failed[name]}") from _failed[name]
    return importlib.import_module(f"{PACKAGE}.{twin}")


def compile_all() -> None:
    """Load every Numba kernel module now, compiling what the on-disk cache lacks (about 90 s
    the first time on 2 cores, ~2 s after). ``make setup`` runs it (``python -m
    vecstore._native``), so that the first processes of a fresh checkout do not each compile
    the kernels beside their work."""
    for name in TWINS:
        get(name, wait=True)
        if name not in _compiled:
            raise ImportError(f"the Numba kernels {name!r} could not be loaded: {_failed.get(name)}")


def ready() -> bool:
    """Whether every Numba kernel module is loaded."""
    return all(name in _compiled for name in TWINS)


@contextmanager
def parallel_threads(threads: int | None) -> Iterator[None]:
    """Numba's parallel kernels launched from the calling thread use at most ``threads``
    threads meanwhile (Numba's setting is per calling thread; restored afterwards). None, or
    Numba not loaded (the NumPy twins run on the calling thread): nothing changes."""
    if threads is None or not _compiled:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
