"""The table's writer lock: an advisory ``flock`` on ``_lock``, taken with a timeout.

Readers never take it; they read published manifests. Writers serialise on it, so two writers
(threads or processes) cannot both build on the same version. The holder writes its pid and
host into ``_lock.owner`` so a timeout can say who holds the lock.
"""

from __future__ import annotations

import fcntl
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import ConcurrencyError

DEFAULT_TIMEOUT_S = 30.0

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _local_guard:
        return _local_locks.setdefault(str(path.resolve()), threading.Lock())


@contextmanager
def write_lock(table_dir: Path, timeout: float = DEFAULT_TIMEOUT_S) -> Iterator[None]:
    path = table_dir / "_lock"
    owner = table_dir / "_lock.owner"
    tlock = _thread_lock(path)
    deadline = time.monotonic() + timeout
    if not tlock.acquire(timeout=max(timeout, 0.0)):
        raise ConcurrencyError(
            f"timed out after {timeout:g}s waiting for the write lock of {table_dir} "
            f"(held by another thread of this process)"
        )
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            delay = 0.001
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        try:
                            holder = owner.read_text().strip()
                        except OSError:
                            holder = "unknown"
                        raise ConcurrencyError(
                            f"timed out after {timeout:g}s waiting for the write lock of "
                            f"{table_dir}; held by {holder}"
                        ) from None
                    time.sleep(delay)
                    delay = min(delay * 2, 0.05)
            try:
                owner.write_text(f"pid {os.getpid()} on {socket.gethostname()}\n")
            except OSError:
                pass  # the owner note is a courtesy for error messages, never required
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
    finally:
        tlock.release()
