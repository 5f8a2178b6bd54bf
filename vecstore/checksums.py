"""Checksums of whole files, computed off the calling thread when the caller can wait for them
later.

Opening a table used to read every byte of every segment and index file before answering
anything: CRC-32 at ~1-3 GB/s is a third of a second per 500 MB, paid on every cold open. Now
the cheap checks (existence, file type, size, Arrow footer and schema, index sidecar) run at open
and the checksums run on a background thread while the caller goes on (typically loading an ANN
index, which takes as long); whoever first uses a file's bytes waits for its check first
(:meth:`BackgroundCheck.wait`). A damaged file is therefore still refused before its contents
are used, just not before the table object exists.

New files are checksummed with XXH3-64 (:data:`WRITTEN`): 11 GB/s against CRC-32's 2.1 GB/s on
the same mapped files of a 200,000-row table (its first query waited 170 ms for CRC-32). Files
written before carry CRC-32 and are checked with it: a file's algorithm is recorded beside its
checksum (:data:`ALGORITHMS`).

The checksum maps the file :data:`WINDOW` bytes at a time and hands each map to the hash in one
call: both hashes release the GIL for the whole computation, so a window proceeds even while
the calling thread holds the GIL in a long C++ call (hnswlib's ``load_index`` does; a file larger
than a window may wait for that call between windows). Each map is private to the check and
closed before the next, so the process's resident memory grows by one window at most: one map
of the whole file put a 1M-row table's 1.9 GB segment into the peak RSS of its first query
(VmHWM 2,232 MB, against 363 MB right after).
"""

from __future__ import annotations

import mmap
import os
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import xxhash

from .errors import CorruptStoreError

ALGORITHMS = {"xxh3": 0xFFFF_FFFF_FFFF_FFFF, "crc32": 0xFFFF_FFFF}
"""The checksums a file may carry, with their largest value: XXH3-64 for files written now,
CRC-32 for those written before it (still read and checked)."""

WRITTEN = "xxh3"
"""The algorithm of the checksums written for new files."""


class Digest:
    """A running checksum by ``algorithm`` (one of :data:`ALGORITHMS`): :meth:`update` with
    the bytes in order, :meth:`value` for the checksum of all of them."""

    __slots__ = ("algorithm", "_crc", "_xxh")

    def __init__(self, algorithm: str = WRITTEN) -> None:
        if algorithm not in ALGORITHMS:
            raise ValueError(f"unknown checksum algorithm {algorithm!r}")
        self.algorithm = algorithm
        self._crc = 0
        self._xxh = xxhash.xxh3_64() if algorithm == "xxh3" else None

    def update(self, data: Any) -> None:
        if self._xxh is not None:
            self._xxh.update(data)
        else:
            self._crc = zlib.crc32(data, self._crc)

    def value(self) -> int:
        return self._xxh.intdigest() if self._xxh is not None else self._crc


def describe(algorithm: str, value: int) -> str:
    """``value`` as messages show a checksum of ``algorithm``: ``xxh3 0x...``."""
    width = 16 if algorithm == "xxh3" else 8
    return f"{algorithm} {value:#0{width + 2}x}"


def checksum_pread(fd: int, algorithm: str, chunk: int = 1 << 20) -> int:
    """The ``algorithm`` checksum of an open file from its start, read with plain reads (not
    through a map: the bytes stay in the page cache, out of this process's resident memory)."""
    digest = Digest(algorithm)
    offset = 0
    while data := os.pread(fd, chunk, offset):
        digest.update(data)
        offset += len(data)
    return digest.value()

_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            # One thread: checks are bound by memory bandwidth and the other core is the
            # caller's; a second checker would only compete with it.
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vecstore-verify")
        return _executor


def _forget_pool() -> None:  # a forked child has no worker thread: start a new pool if needed
    global _executor
    _executor = None


os.register_at_fork(after_in_child=_forget_pool)


WINDOW = 256 << 20
"""Bytes of a file mapped at a time by a checksum (a multiple of the mapping granularity)."""


def _windows(fd: int, size: int, algorithm: str) -> int:
    """The ``algorithm`` checksum of the first ``size`` bytes of ``fd``: one GIL-free call per
    :data:`WINDOW`-byte private map, each closed before the next."""
    digest = Digest(algorithm)
    for start in range(0, size, WINDOW):
        with mmap.mmap(fd, min(WINDOW, size - start), prot=mmap.PROT_READ, offset=start) as part:
            digest.update(part)
    return digest.value()


def checksum_of_fd(fd: int, algorithm: str) -> int:
    """The ``algorithm`` checksum of the open file ``fd`` from its start (:func:`_windows`)."""
    return _windows(fd, os.fstat(fd).st_size, algorithm)


class BackgroundCheck:
    """``check`` (a function that raises when the check fails) running on the checker thread;
    :meth:`wait` returns once it passed and raises its error otherwise, on every call.

    ``check`` must own what it reads (e.g. a duplicated descriptor or a map it closes), since
    the caller's descriptors may be closed before it runs.
    """

    __slots__ = ("_check", "_future", "_pid")

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check
        self._pid = os.getpid()
        self._future: Future[None] = _pool().submit(check)

    def done(self) -> bool:
        return self._future.done()

    def wait(self) -> None:
        if os.getpid() != self._pid and not self._future.done():
            # Forked while the check ran: the thread that would finish it does not exist here.
            self._check()
            return
        self._future.result()


def checksum_check(fd: int, algorithm: str, expected: int, on_mismatch: Callable[[int], Exception],
                   on_success: Callable[[], None] | None = None) -> BackgroundCheck:
    """A :class:`BackgroundCheck` that the file open as ``fd`` has the ``algorithm`` checksum
    ``expected``. The check reads a duplicate of ``fd`` (closed when it ends), so the caller may
    close ``fd`` at once. ``on_mismatch(value)`` builds the error to raise; ``on_success`` runs
    once the check passed."""
    size = os.fstat(fd).st_size
    own = os.dup(fd)
    closed = [False]

    def check() -> None:
        if closed[0]:
            # Only in a child forked while the parent's check was finishing: its outcome is
            # unknown here. Refuse rather than guess.
            raise CorruptStoreError(
                "a checksum begun before this process was forked did not finish here; open the "
                "table again in this process")
        try:
            crc = _windows(own, size, algorithm)
        finally:
            closed[0] = True
            os.close(own)
        if crc != expected:
            raise on_mismatch(crc)
        if on_success is not None:
            on_success()

    return BackgroundCheck(check)
