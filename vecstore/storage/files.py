"""Durable file primitives (write to a temporary name, fsync, rename; checksums) and opening a
table's files without ever following a link out of it.

A table's files are opened component by component from the table directory down with
``O_NOFOLLOW`` (:func:`open_in_table`): a symbolic link anywhere from the table directory to the
file, or a file that is not a regular file (a directory, a FIFO, a device), is refused with a
:class:`~vecstore.errors.CorruptStoreError` naming it, so a planted link can neither make vecstore
read a file outside the store nor hang it on ``/dev/zero`` or a FIFO. The store's own directory
and the path above it may be links (that is the user's choice of where the store lives).
"""

from __future__ import annotations

import errno
import functools
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from ..errors import CorruptStoreError

_CHUNK = 1 << 20
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | _CLOEXEC
# O_NONBLOCK: opening a FIFO for reading must not wait for a writer; it does nothing to files
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | _CLOEXEC


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"),
                       (stat.S_ISREG, "a regular file"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def refused(path: Path | str, what: str, expected: str) -> CorruptStoreError:
    """The error for a table entry of the wrong type (a link, a directory for a file, ...)."""
    return CorruptStoreError(
        f"{path} is {what}, expected {expected}: vecstore never follows links inside a table "
        f"(they could lead out of the store) nor reads special files; the store was altered, "
        f"remove or restore this entry"
    )


def _open_component(parent: int | None, target: str, shown: Callable[[], Path],
                    directory: bool) -> int:
    """Open one component (``target`` relative to ``parent``, or a whole path when ``parent``
    is None) without following a link; a link or a wrong type is a CorruptStoreError naming
    ``shown()`` (built only then: this runs for every file a reader opens)."""
    try:
        return os.open(target, _DIR_FLAGS if directory else _FILE_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
            raise
        try:
            mode = os.stat(target, dir_fd=parent, follow_symlinks=False).st_mode
        except FileNotFoundError:
            raise exc from None
        if exc.errno == errno.ENOTDIR and not stat.S_ISLNK(mode) and not directory:
            raise  # a component above was replaced meanwhile; the caller's errors apply
        expected = "a directory" if directory else "a regular file"
        raise refused(shown(), _kind(mode), expected) from None


def open_in_table(table_dir: Path, rel: str, *, directory: bool = False) -> int:
    """A read-only descriptor of ``rel`` (``/``-separated, relative) inside ``table_dir``.

    No component from ``table_dir`` itself down to ``rel`` may be a symbolic link, the
    intermediate ones must be directories and the last one a regular file (or a directory when
    ``directory``). Anything else raises :class:`CorruptStoreError` naming the entry;
    ``FileNotFoundError`` passes through for the caller to word.
    """
    parts = [p for p in rel.split("/") if p] if rel else []
    fd = _open_component(None, str(table_dir), lambda: table_dir, directory=True)
    try:
        for i, name in enumerate(parts):
            last = i == len(parts) - 1
            child = _open_component(fd, name, functools.partial(table_dir.joinpath, *parts[:i + 1]),
                                    directory=directory or not last)
            os.close(fd)
            fd = child
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)):
            # e.g. a directory opened where a file was expected
            raise refused(table_dir.joinpath(*parts), _kind(mode),
                          "a directory" if directory else "a regular file")
        return fd
    except BaseException:
        os.close(fd)
        raise


def read_in_table(table_dir: Path, rel: str, limit: int = 1 << 30) -> bytes:
    """The whole of a (small) regular file inside the table, opened as :func:`open_in_table`
    does. A file over ``limit`` bytes is refused rather than read into memory."""
    fd = open_in_table(table_dir, rel)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise CorruptStoreError(f"{table_dir / rel} has {size} bytes, more than {limit} allowed")
        chunks = []
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def make_subdir(table_dir: Path, rel: str) -> Path:
    """Create the directory ``rel`` inside an *existing* table directory (its parent must exist:
    a table's own directory is made only by table creation, so a dropped table is never brought
    back by a writer); fsync its parent when it is new. An existing entry must be a real
    directory, not a link."""
    path = table_dir / rel
    try:
        os.mkdir(path)
    except FileExistsError:
        os.close(open_in_table(table_dir, rel, directory=True))  # refuses a link or a file
        return path
    fsync_dir(path.parent)
    return path


def fsync_dir(directory: Path) -> None:
    """Flush a directory entry (a rename or a new file) to disk."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def ensure_dir(directory: Path) -> None:
    """Create ``directory`` (and missing parents) durably: each new entry's parent is fsynced,
    so a power loss cannot take away a directory whose files were already made durable."""
    if directory.is_dir():
        return
    missing = []
    d = directory
    while not d.exists():
        missing.append(d)
        d = d.parent
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            pass
        fsync_dir(d.parent)


def temp_path(final: Path) -> Path:
    return final.with_name(f".tmp-{uuid.uuid4().hex}-{final.name}")


def write_atomic(final: Path, write: Callable[[BinaryIO], None], *, exclusive: bool = False) -> None:
    """Write ``final`` through a temporary file that is fsynced and then renamed into place.

    With ``exclusive=True`` the file is published with ``link`` instead of ``rename``, which fails
    with ``FileExistsError`` when ``final`` already exists: two writers can never both publish it.
    """
    tmp = temp_path(final)
    try:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if exclusive:
            os.link(tmp, final)
            os.unlink(tmp)
        else:
            os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(final.parent)


def write_bytes_atomic(final: Path, data: bytes, *, exclusive: bool = False) -> None:
    write_atomic(final, lambda fh: fh.write(data), exclusive=exclusive)  # type: ignore[arg-type]
