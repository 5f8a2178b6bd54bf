"""Leases: a live process's claim on some files of a table, which cleanup never removes.

A lease is a small file ``_leases/<uuid>.lease`` listing table paths (segment, tombstone and
postings files, index directories). Its holder keeps an exclusive ``flock`` on it for as long
as it needs those files; :func:`held_paths` (run by cleanup under the table's write lock)
treats a lease whose lock it can take as left by a dead process and removes it. Liveness is
the kernel's flock, not a pid, so a reused pid or a process killed with SIGKILL cannot keep a
lease alive or make a live one look dead.

Two kinds of holders take one:

- a table checked out at an older version (``tbl.checkout(v)``): the files of that version,
  so that cleanup may remove the version's manifest (``checkout(v)`` elsewhere then says the
  version was removed) while this reader keeps reading its rows, postings and index;
- an index build (``create_index``): its ``indexes/<uuid>`` directory, which no manifest names
  until the build commits.

A lease is written whole under a temporary name, locked, then renamed into place, and never
changed: cleanup never reads half a lease, and never sees a lease before it is locked.

``flock`` belongs to the open file description, which ``fork`` shares: a child forked while
a lease is held keeps it alive until the child exits too (conservative: files are kept longer).
The descriptor is close-on-exec, so a program started with ``exec`` holds nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import stat
import time
import uuid
import weakref
from collections.abc import Iterable
from pathlib import Path

from ..errors import CorruptStoreError
from .files import make_subdir, open_in_table
from .manifest import INDEX_PATH, SEGMENT_PATH, STAGE_PATH

LEASES_DIR = "_leases"
SUFFIX = ".lease"
TMP_PREFIX = ".tmp-"
STALE_TMP_S = 60.0
"""A lease's temporary file lives microseconds; one this old was left by a crash."""
_LIMIT = 4 << 20
_ATTEMPTS = 3
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Lease:
    """A held claim on ``paths`` of the table in ``table_dir``; :meth:`release` (or garbage
    collection of the object, or the end of the process) gives it up."""

    def __init__(self, table_dir: Path, paths: Iterable[str], what: str) -> None:
        self.table_dir = table_dir
        self.paths = tuple(sorted(set(paths)))
        directory = make_subdir(table_dir, LEASES_DIR)
        dir_fd = open_in_table(table_dir, LEASES_DIR, directory=True)
        try:
            for attempt in range(_ATTEMPTS):
                try:
                    self.name, fd = self._create(dir_fd, what)
                    break
                except (BlockingIOError, FileNotFoundError):
                    # a cleanup took our temporary file for a dead writer's in the instant
                    # between its creation and its lock: again, under a new name
                    if attempt == _ATTEMPTS - 1:
                        raise
        finally:
            os.close(dir_fd)
        self._path = directory / self.name
        # the file goes when the lease is released or its holder is collected; the lock goes
        # with the descriptor in any case (a crash leaves a file that cleanup removes)
        self._finalizer = weakref.finalize(self, _release, str(self._path), fd, os.getpid())

    def _create(self, dir_fd: int, what: str) -> tuple[str, int]:
        """Write this lease under a new name, its lock held: ``(name, descriptor)``."""
        name = f"{uuid.uuid4().hex}{SUFFIX}"
        tmp = f"{TMP_PREFIX}{name}"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | _CLOEXEC, 0o644,
                     dir_fd=dir_fd)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by a cleanup only (see above)
            body = json.dumps({"pid": os.getpid(), "what": what, "paths": list(self.paths)})
            os.write(fd, body.encode("utf-8"))
            os.rename(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            os.close(fd)
            try:
                os.unlink(tmp, dir_fd=dir_fd)
            except OSError:
                pass
            raise
        return name, fd

    def release(self) -> None:
        self._finalizer()

    @property
    def held(self) -> bool:
        return self._finalizer.alive


def _release(path: str, fd: int, owner: int) -> None:
    if os.getpid() == owner:  # a forked child only drops its copy of the descriptor
        try:
            os.unlink(path)  # first, so cleanup never takes a released lease's lock for a dead one
        except OSError:
            pass
    try:
        os.close(fd)
    except OSError:
        pass


def take_lease(table_dir: Path, paths: Iterable[str], what: str) -> Lease | None:
    """A lease on ``paths``, or None where the store cannot be written (a read-only file
    system or directory: cleanup cannot run there either)."""
    try:
        return Lease(table_dir, paths, what)
    except PermissionError:
        return None
    except OSError as exc:
        if exc.errno in (30, 13):  # EROFS, EACCES
            return None
        raise


def held_paths(table_dir: Path) -> tuple[set[str], int]:
    """The paths named by live leases, and how many leases were live. Leases left by dead
    processes (their lock is free) and stale temporary files are removed. A lease that
    names a path of another shape than vecstore writes is refused (CorruptStoreError)."""
    try:
        dir_fd = open_in_table(table_dir, LEASES_DIR, directory=True)
    except FileNotFoundError:
        return set(), 0
    paths: set[str] = set()
    live = 0
    try:
        for name in os.listdir(dir_fd):
            if name.startswith(TMP_PREFIX):
                _remove_stale_tmp(dir_fd, name)
                continue
            if not name.endswith(SUFFIX):
                continue
            held = _read_if_held(dir_fd, table_dir, name)
            if held is not None:
                live += 1
                paths.update(held)
    finally:
        os.close(dir_fd)
    return paths, live


def _remove_stale_tmp(dir_fd: int, name: str) -> None:
    """Remove a lease's temporary file whose writer is gone: its lock is free (a live writer
    holds it from the instant after it creates the file until the rename), or it is older than
    :data:`STALE_TMP_S`. A writer caught in that instant tries again under a new name."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    except OSError:  # not a regular file we can open: by its age only
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
            if time.time() - st.st_mtime > STALE_TMP_S:
                os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)  # its writer is alive
        return
    try:
        os.unlink(name, dir_fd=dir_fd)
    except FileNotFoundError:
        pass
    finally:
        os.close(fd)


def _read_if_held(dir_fd: int, table_dir: Path, name: str) -> list[str] | None:
    """The paths of lease ``name`` if its holder is alive; else remove it and return None."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None  # released meanwhile
    except OSError as exc:
        raise CorruptStoreError(f"lease {table_dir / LEASES_DIR / name} cannot be opened "
                                f"({exc.strerror}); it must be a regular file, not a link") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise CorruptStoreError(f"lease {table_dir / LEASES_DIR / name} is not a regular file")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return _parse(os.pread(fd, _LIMIT, 0), table_dir / LEASES_DIR / name)
        try:  # its holder is gone (or released it just now)
            os.unlink(name, dir_fd=dir_fd)
        except FileNotFoundError:
            pass
        return None
    finally:
        os.close(fd)


def _parse(raw: bytes, path: Path) -> list[str]:
    try:
        body = json.loads(raw)
        paths = body["paths"]
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise ValueError("paths is not a list of strings")
    except (ValueError, KeyError, TypeError) as exc:
        raise CorruptStoreError(f"lease {path} is unreadable ({exc}); a live process holds it, so "
                                f"cleanup cannot tell which files it needs") from None
    for p in paths:
        if not (SEGMENT_PATH.fullmatch(p) or INDEX_PATH.fullmatch(p) or STAGE_PATH.fullmatch(p)):
            raise CorruptStoreError(f"lease {path} names {p!r}, not a file vecstore writes")
    return paths
