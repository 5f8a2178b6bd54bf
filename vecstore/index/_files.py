"""Index files on disk: atomic writes and a checksummed JSON sidecar verified before loading.

The C++ readers of FAISS and hnswlib trust their input: a truncated or altered file can crash the
process instead of raising. So every index writes, next to its data files, a sidecar
``<kind>.json`` recording the byte length and CRC-32 of each file, and :func:`verify` checks
them (and the sidecar itself) before a reader is given a path. Any mismatch is a
:class:`~vecstore.errors.CorruptStoreError` naming the file.

Writes go to a temporary name in the same directory, are fsynced and renamed into place; the
sidecar is written last, so an interrupted save leaves either the previous complete index or a
sidecar that does not match (and is reported as corrupt), never a half-written file that looks valid.
"""

from __future__ import annotations

import json
import os
import secrets
import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import CorruptStoreError

FORMAT_VERSION = 1
"""Version of the sidecar layout; bumped when a backend's file layout changes incompatibly."""

_CHUNK = 1 << 20


def crc32_of(path: Path) -> tuple[int, int]:
    """``(byte length, CRC-32)`` of a file, read in 1 MiB chunks."""
    crc = 0
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
            size += len(chunk)
    return size, crc


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_path(final: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; on success fsync it and rename it over ``final``.

    The writer (NumPy, FAISS, hnswlib) writes to the yielded path by name; on an exception the
    temporary file is removed and ``final`` is left untouched.
    """
    tmp = final.with_name(f".{final.name}.{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_index_files(
    directory: Path,
    kind: str,
    writers: Mapping[str, Callable[[Path], None]],
    meta: Mapping[str, Any],
) -> list[str]:
    """Write each data file with its writer, then the sidecar; return all file names written.

    ``writers`` maps a file name (inside ``directory``) to a function writing that file at the
    path it is given. ``meta`` (kind, metric, dim, count, params) goes into the sidecar beside
    the checksums.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files: dict[str, dict[str, int]] = {}
    for name, write in writers.items():
        final = directory / name
        with atomic_path(final) as tmp:
            write(tmp)
            size, crc = crc32_of(tmp)
        files[name] = {"bytes": size, "crc32": crc}
    sidecar = {"format": FORMAT_VERSION, **meta, "files": files}
    side_name = sidecar_name(kind)
    with atomic_path(directory / side_name) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1, sort_keys=True))
    _fsync_dir(directory)
    return [*writers, side_name]


def sidecar_name(kind: str) -> str:
    """File name of the checksum sidecar of an index of ``kind``."""
    return f"{kind}.json"


def verify(directory: Path, kind: str) -> dict[str, Any]:
    """Read the sidecar of a ``kind`` index in ``directory`` and check every file it lists.

    Returns the sidecar's contents. Raises :class:`CorruptStoreError` naming the offending file
    when the sidecar is missing or unreadable, was written for another kind or by a newer
    vecstore, or when a data file is missing, has another length or another checksum.
    """
    directory = Path(directory)
    side = directory / sidecar_name(kind)
    try:
        meta = json.loads(side.read_text())
    except FileNotFoundError:
        raise CorruptStoreError(
            f"index sidecar {side} is missing: the {kind!r} index in {directory} was not saved "
            "completely; rebuild it"
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStoreError(f"index sidecar {side} is unreadable ({exc}); rebuild the index") from exc
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise CorruptStoreError(f"index sidecar {side} has no 'files' table; rebuild the index")
    if meta.get("format") != FORMAT_VERSION:
        raise CorruptStoreError(
            f"index sidecar {side} has format {meta.get('format')!r}, this vecstore reads format "
            f"{FORMAT_VERSION}; rebuild the index or upgrade vecstore"
        )
    if meta.get("kind") != kind:
        raise CorruptStoreError(
            f"index sidecar {side} describes a {meta.get('kind')!r} index, expected {kind!r}"
        )
    for name, expected in meta["files"].items():
        path = directory / name
        if (
            not isinstance(expected, dict)
            or not isinstance(expected.get("bytes"), int)
            or not isinstance(expected.get("crc32"), int)
            or Path(name).name != name
        ):
            raise CorruptStoreError(f"index sidecar {side} has a bad entry for {name!r}")
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            raise CorruptStoreError(f"index file {path} is missing (listed in {side})") from None
        if size != expected.get("bytes"):
            raise CorruptStoreError(
                f"index file {path} has {size} bytes, expected {expected.get('bytes')}: "
                "it is truncated or was overwritten; rebuild the index"
            )
        _, crc = crc32_of(path)
        if crc != expected.get("crc32"):
            raise CorruptStoreError(
                f"index file {path} fails its CRC-32 check (got {crc:#010x}, expected "
                f"{expected['crc32']:#010x}): it was altered; rebuild the index"
            )
    return meta
