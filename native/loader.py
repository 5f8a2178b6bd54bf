"""Which implementation of a kernel a caller gets: the Numba kernel once it is loaded, its NumPy
twin until then.

Importing Numba takes about a second, and loading a compiled kernel from Numba's on-disk cache
(compiling it, the first time, much longer) a fraction of one for each kernel. A process that
opens a table and answers one query should not wait for that, and a process that serves one
kind of query should not keep every kernel in memory: loading them all took ~125 MiB of a
process's RSS (~90 of it anonymous) beyond importing Numba (~60; 2026-12-02, this project's
machine). So :func:`get` never blocks: it returns the kernel module as a namespace whose
kernels are each the compiled one once *that kernel* is loaded, and its twin (same results up
to float32 rounding) until then; the first time a kernel is asked for, a background thread
imports Numba if needed and loads that kernel, every argument-type variant vecstore passes it
(the module's ``warm_up(only=name)``), so that no query loads one on its own thread.
:func:`get` with ``wait=True`` loads each kernel on the calling thread when it is first asked
for instead (batches, calibration, benchmarks); :func:`compile_all` loads every kernel.
``VECSTORE_KERNELS=numpy`` selects the twins for good (debugging, or where Numba cannot run).

Pairs: ``kernels`` / ``reference`` (scans, scoring, top-k) and ``graph`` / ``graph_reference``
(graph search).
"""

from __future__ import annotations

import importlib
import os
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

PACKAGE = __name__.rsplit(".", 1)[0]
TWINS = {"kernels": "reference", "graph": "graph_reference"}

_modules: dict[str, ModuleType] = {}  # the Numba modules imported
_failed: dict[str, BaseException] = {}
_loaded: set[tuple[str, str]] = set()  # (module, kernel) loaded with every variant
_requested: set[tuple[str, str]] = set()  # asked for without waiting: loaded by the worker
_given_up: set[tuple[str, str]] = set()  # asked for, failed to load: callers keep the twin
_lock = threading.Lock()  # the sets and the worker: held for microseconds, never while loading
_import_lock = threading.Lock()  # importing Numba's modules (about a second)
_kernel_locks: dict[tuple[str, str], threading.Lock] = {}  # loading one kernel's variants
_requests: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
_worker: threading.Thread | None = None


def _numpy_only() -> bool:
    return os.environ.get("VECSTORE_KERNELS", "").lower() == "numpy"


class Kernels:
    """A kernel module as its callers see it (:func:`get`): an attribute is the compiled kernel
    once it is loaded; until then each access finds no attribute here and ``__getattr__``
    answers (the twin, or with ``wait`` the kernel loaded now). Attributes that are not kernels
    (constants) are the Numba module's once loaded, the twin's before."""

    def __init__(self, name: str, wait: bool) -> None:
        self._name = name
        self._wait = wait

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return _resolve(self._name, attr, self._wait)

    def __repr__(self) -> str:
        return f"<vecstore kernels {self._name!r}{' (waiting)' if self._wait else ''}>"


_namespaces = {(name, wait): Kernels(name, wait) for name in TWINS for wait in (False, True)}


def _import(name: str) -> ModuleType:
    """The Numba module ``name``, imported on first use (ImportError, for good, if it fails)."""
    module = _modules.get(name)
    if module is not None:
        return module
    with _import_lock:
        module = _modules.get(name)
        if module is None:
            if name in _failed:
                raise ImportError(f"the Numba kernels could not be loaded: {_failed[name]}") \
                    from _failed[name]
            try:
                module = importlib.import_module(f"{PACKAGE}.{name}")
            except BaseException as exc:  # noqa: BLE001 - recorded; the twins keep working
                _failed[name] = exc
                raise ImportError(f"the Numba kernels could not be loaded: {exc}") from exc
            _modules[name] = module
    return module


def _publish(name: str, attr: str, value: Any) -> None:
    _loaded.add((name, attr))
    for wait in (False, True):
        setattr(_namespaces[(name, wait)], attr, value)


def _load(name: str, attr: str) -> Any:
    """Load ``name.attr`` with every variant vecstore passes it (once), publish it on the
    namespaces and return it."""
    module = _import(name)
    value = getattr(module, attr)
    if (name, attr) in _loaded:
        return value
    with _lock:
        kernel_lock = _kernel_locks.setdefault((name, attr), threading.Lock())
    with kernel_lock:
        if (name, attr) not in _loaded:
            if hasattr(value, "signatures"):  # a kernel; variants warm_up leaves out load on first call
                module.warm_up(only=attr)
            _publish(name, attr, value)
    return value


def _work() -> None:
    while True:
        name, attr = _requests.get()
        try:
            _load(name, attr)
        except BaseException:  # noqa: BLE001 - the module's failure is in _failed; the twin stays
            with _lock:
                _given_up.add((name, attr))


def _resolve(name: str, attr: str, wait: bool) -> Any:
    if not _numpy_only():
        if wait:
            return _load(name, attr)
        global _worker
        with _lock:
            if (name, attr) not in _requested and name not in _failed:
                _requested.add((name, attr))
                _requests.put((name, attr))
                if _worker is None:
                    _worker = threading.Thread(target=_work, name="vecstore-kernels", daemon=True)
                    _worker.start()
    return getattr(importlib.import_module(f"{PACKAGE}.{TWINS[name]}"), attr)


def _after_fork_in_child() -> None:
    # the worker thread did not come along: a request made in the child starts its own
    global _worker, _lock, _import_lock, _requests
    _worker = None
    _lock, _import_lock = threading.Lock(), threading.Lock()
    _kernel_locks.clear()
    _requested.intersection_update(_loaded)
    _given_up.clear()
    _requests = queue.SimpleQueue()


os.register_at_fork(after_in_child=_after_fork_in_child)


def get(name: str, wait: bool = False) -> Any:
    """The ``name`` kernel module: each kernel compiled once loaded, else its twin; with
    ``wait``, each kernel loaded on the calling thread when first asked for (ImportError where
    Numba cannot load). With ``VECSTORE_KERNELS=numpy``, the twin module itself."""
    if _numpy_only():
        return importlib.import_module(f"{PACKAGE}.{TWINS[name]}")
    return _namespaces[(name, wait)]


def compile_all() -> None:
    """Load every Numba kernel now, compiling what the on-disk cache lacks (about 90 s the first
    time on 2 cores, ~2 s after). ``make setup`` runs it (``python -m vecstore._native``), so
    that the first processes of a fresh checkout do not each compile the kernels beside their
    work; tests and benchmarks that must not run on the twins call it too."""
    for name in TWINS:
        module = _import(name)
        module.warm_up()
        with _lock:
            for attr in dir(module):
                value = getattr(module, attr)
                if hasattr(value, "signatures") and (name, attr) not in _loaded:
                    _publish(name, attr, value)


def settle(timeout: float = 60.0) -> bool:
    """Wait until every kernel asked for without waiting is loaded (or its module failed to
    load); whether that happened within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        with _lock:
            pending = {(n, a) for n, a in _requested - _loaded - _given_up if n not in _failed}
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)


def loaded() -> set[tuple[str, str]]:
    """The kernels loaded so far, as ``(module, kernel)``."""
    return set(_loaded)


@contextmanager
def parallel_threads(threads: int | None) -> Iterator[None]:
    """Numba's parallel kernels launched from the calling thread use at most ``threads``
    threads meanwhile (Numba's setting is per calling thread; restored afterwards). None, or
    Numba not loaded (the NumPy twins run on the calling thread): nothing changes."""
    if threads is None or not _modules:
        yield
        return
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)
