"""The table's writer lock: an advisory ``flock`` on ``_lock``, taken with a timeout.

Readers never take it; they read published manifests. Writers serialise on it, so two writers
(threads or processes) cannot both build on the same version, and ``drop_table`` takes it too,
so a table is never dropped in the middle of a commit. The holder writes its pid and host into
``_lock.owner`` so a timeout can say who holds the lock.

``flock`` is not fair: a writer committing in a loop releases and retakes ``_lock`` within
microseconds, and a waiter that polls could wait for ever (a ``drop_table`` against a busy writer
timed out that way). So a writer first takes ``_lock.queue``, then ``_lock``, then lets go of the
queue: the writer that just committed has to line up behind whoever waits already.

The lock file lives inside the table directory, which ``drop_table`` renames away: a writer that
was waiting on the flock of a dropped table's ``_lock`` gets it once the drop is done, so on
acquiring the lock it checks that the directory it locked is still the table's (same inode at
the same path) and raises :class:`~vecstore.errors.NotFoundError` if not; it never writes into
the renamed directory. Lock files are opened relative to the table directory with
``O_NOFOLLOW`` and must be plain files with one link, so a planted link cannot make a commit
create or overwrite a file elsewhere.

``_lock`` also holds the table's *high-water mark*: the newest version a commit published, as
20 digits. It is written after the manifest is durable, so a manifest older than the mark that
is missing was deleted afterwards (see :func:`high_water_mark`).
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import stat
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConcurrencyError, CorruptStoreError, NotFoundError
from .files import open_in_table, refused

DEFAULT_TIMEOUT_S = 30.0
LOCK_FILE = "_lock"
OWNER_FILE = "_lock.owner"
QUEUE_FILE = "_lock.queue"

_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
# O_NONBLOCK: a FIFO planted as a lock file must not block the open
_LOCK_FLAGS = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_OWNER_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC
_MARK = re.compile(rb"(\d{20})\n")
_OWNER_BYTES = 256

_local_locks: dict[str, threading.Lock] = {}
_local_guard = threading.Lock()


def _thread_lock(path: Path) -> threading.Lock:
    with _local_guard:
        return _local_locks.setdefault(str(path.resolve()), threading.Lock())


def dropped_error(table_dir: Path) -> NotFoundError:
    """The error for a table whose directory is gone or is now another table's."""
    return NotFoundError(
        f"table {table_dir.name!r} was dropped: its directory {table_dir} is gone or now holds a "
        f"new table of that name; open or create it again"
    )


def directory_identity(table_dir: Path) -> tuple[int, int]:
    """``(device, inode)`` of a table directory, which must be a real directory (not a link)."""
    try:
        st = os.stat(table_dir, follow_symlinks=False)
    except FileNotFoundError:
        raise dropped_error(table_dir) from None
    if not stat.S_ISDIR(st.st_mode):
        raise refused(table_dir, "not a directory" if not stat.S_ISLNK(st.st_mode)
                      else "a symbolic link", "a table directory")
    return st.st_dev, st.st_ino


def _open_plain(dir_fd: int, table_dir: Path, name: str, flags: int) -> int:
    """Open a lock file relative to the table directory, refusing links, directories, special
    files and files with other hard links (a write to those would land somewhere else)."""
    path = table_dir / name
    try:
        fd = os.open(name, flags, 0o644, dir_fd=dir_fd)
    except IsADirectoryError:
        raise refused(path, "a directory", "a regular file") from None
    except OSError as exc:
        try:
            mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
        except OSError:
            raise exc from None
        if stat.S_ISLNK(mode) or not stat.S_ISREG(mode):
            raise refused(path, "a symbolic link" if stat.S_ISLNK(mode) else "not a regular file",
                          "a regular file") from None
        raise
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        what = f"a file with {st.st_nlink} hard links" if stat.S_ISREG(st.st_mode) else "not a regular file"
        raise refused(path, what, "a regular file with one link")
    return fd


@dataclass(frozen=True)
class HeldLock:
    """The write lock of one table, held: what a commit may do with it."""

    table_dir: Path
    fd: int  # the open ``_lock`` file

    def high_water_mark(self) -> int:
        """The newest version a commit published (0 when never recorded)."""
        return _parse_mark(os.pread(self.fd, 64, 0))

    def record(self, version: int) -> None:
        """Record ``version`` as published. Not fsynced: a mark lost in a power cut is only
        lower, and a lower mark can never report a committed version as missing."""
        os.pwrite(self.fd, f"{version:020d}\n".encode("ascii"), 0)


def _parse_mark(raw: bytes) -> int:
    m = _MARK.match(raw)
    return int(m.group(1)) if m else 0


def high_water_mark(table_dir: Path) -> int:
    """The newest version a commit of this table published, read without taking the lock
    (0 when the table predates the mark or never recorded one).

    Read the mark *before* listing the versions: a mark is written only after its manifest is
    published, so every manifest up to a mark read earlier is visible to a later listing, and a
    listing that stops below the mark means a published manifest was deleted.
    """
    try:
        fd = open_in_table(table_dir, LOCK_FILE)
    except FileNotFoundError:
        return 0
    try:
        return _parse_mark(os.pread(fd, 64, 0))
    finally:
        os.close(fd)


def _holder(dir_fd: int) -> str:
    """The owner note, for an error message (read without following a link)."""
    try:
        fd = os.open(OWNER_FILE, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC,
                     dir_fd=dir_fd)
    except OSError:
        return "unknown"
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return "unknown"
        return os.read(fd, _OWNER_BYTES).decode("utf-8", "replace").strip() or "unknown"
    finally:
        os.close(fd)


def _write_owner(dir_fd: int, table_dir: Path) -> None:
    try:
        fd = _open_plain(dir_fd, table_dir, OWNER_FILE, _OWNER_FLAGS)
    except CorruptStoreError:
        raise
    except OSError:
        return  # the owner note is a courtesy for error messages, never required
    note = f"pid {os.getpid()} on {socket.gethostname()}"[:_OWNER_BYTES - 1]
    try:
        # overwritten in place at a fixed width, never truncated: truncating a file that holds
        # data makes ext4 flush it (auto_da_alloc), which cost ~3 ms per commit
        os.pwrite(fd, (note.ljust(_OWNER_BYTES - 1) + "\n").encode(), 0)
    except OSError:
        pass
    finally:
        os.close(fd)


def _still_in_place(table_dir: Path, dir_fd: int, lock_fd: int) -> bool:
    """Whether the locked ``_lock`` is still the one at ``table_dir/_lock``. Raises
    NotFoundError when the directory itself is gone or replaced (the table was dropped)."""
    here = os.fstat(dir_fd)
    if directory_identity(table_dir) != (here.st_dev, here.st_ino):
        raise dropped_error(table_dir)
    try:
        at_path = os.stat(LOCK_FILE, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(lock_fd)
    return (at_path.st_dev, at_path.st_ino) == (held.st_dev, held.st_ino)


def _acquire(dir_fd: int, table_dir: Path, deadline: float, timeout: float) -> int:
    """Take ``_lock`` through the queue; return its descriptor, locked."""
    queue = _open_plain(dir_fd, table_dir, QUEUE_FILE, _LOCK_FLAGS)
    try:
        _flock(queue, deadline, timeout, table_dir, dir_fd)
        fd = _open_plain(dir_fd, table_dir, LOCK_FILE, _LOCK_FLAGS)
        try:
            _flock(fd, deadline, timeout, table_dir, dir_fd)
        except BaseException:
            os.close(fd)
            raise
        return fd
    finally:
        os.close(queue)  # lets the next waiter line up


def _flock(fd: int, deadline: float, timeout: float, table_dir: Path, dir_fd: int) -> None:
    delay = 0.001
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise ConcurrencyError(
                    f"timed out after {timeout:g}s waiting for the write lock of {table_dir}; "
                    f"held by {_holder(dir_fd)}"
                ) from None
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


@contextmanager
def write_lock(table_dir: Path, timeout: float = DEFAULT_TIMEOUT_S,
               identity: tuple[int, int] | None = None) -> Iterator[HeldLock]:
    """Hold the write lock of the table in ``table_dir`` (waiting up to ``timeout`` seconds).

    Raises :class:`ConcurrencyError` on timeout, :class:`NotFoundError` when the table was
    dropped (before or while waiting; or, with ``identity``, when the directory now at
    ``table_dir`` is not the one of that ``(device, inode)``), :class:`CorruptStoreError` when
    a lock file is a link, a directory or a special file.
    """
    tlock = _thread_lock(table_dir)
    deadline = time.monotonic() + timeout
    if not tlock.acquire(timeout=max(timeout, 0.0)):
        raise ConcurrencyError(
            f"timed out after {timeout:g}s waiting for the write lock of {table_dir} "
            f"(held by another thread of this process)"
        )
    try:
        while True:
            try:
                dir_fd = open_in_table(table_dir, "", directory=True)
            except FileNotFoundError:
                raise dropped_error(table_dir) from None
            try:
                here = os.fstat(dir_fd)
                if identity is not None and (here.st_dev, here.st_ino) != identity:
                    raise dropped_error(table_dir)
                fd = _acquire(dir_fd, table_dir, deadline, timeout)
                try:
                    if not _still_in_place(table_dir, dir_fd, fd):
                        continue  # someone replaced _lock while we waited: lock the new one
                    _write_owner(dir_fd, table_dir)
                    try:
                        yield HeldLock(table_dir, fd)
                    finally:
                        fcntl.flock(fd, fcntl.LOCK_UN)
                    return
                finally:
                    os.close(fd)  # closing also releases a flock taken on a replaced file
            finally:
                os.close(dir_fd)
    finally:
        tlock.release()
