"""Durable file primitives: write to a temporary name, fsync, rename; checksums."""

from __future__ import annotations

import os
import uuid
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


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


def crc32_file(path: Path) -> int:
    crc = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc
