"""Index files on disk: atomic writes and a checksummed JSON sidecar verified before loading.

The C++ readers of FAISS and hnswlib trust their input: a truncated or altered file can crash the
process instead of raising. So every index writes, next to its data files, a sidecar
``<kind>.json`` recording the byte length and checksum (XXH3-64; CRC-32 in format 1) of each
file, and :func:`verify` checks them (and the sidecar itself) before a reader is given a path.
Any mismatch is a :class:`~vecstore.errors.CorruptStoreError` naming the file.

Writes go to a temporary name in the same directory, are fsynced and renamed into place; the
sidecar is written last, so an interrupted save leaves either the previous complete index or a
sidecar that does not match (and is reported as corrupt), never a half-written file that looks valid.

:func:`verify` opens the directory, the sidecar and every file without following a link and
accepts only regular files, so an index path cannot be bent to a file outside the store or to a
device. The sidecar has no checksum of its own, so the caller passes what it knows from
elsewhere (the table's dimension and metric, the manifest's row count) as ``expect``; a sidecar
that disagrees is refused before any backend reads the files with that geometry.
Known limit: the backends (NumPy, FAISS, hnswlib) then open the verified files again by name;
someone who can write the store *while* it is being read can still swap a file in between.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..checksums import WRITTEN, BackgroundCheck, Digest, checksum_check, checksum_pread, describe
from ..errors import CorruptStoreError

FORMAT_VERSION = 2
"""Version of the sidecar layout; bumped when a backend's file layout changes incompatibly.
2: files checksummed with XXH3-64 (``"xxh3"`` in a file's entry; format 1 has ``"crc32"``,
still read)."""
READ_FORMATS = {1: "crc32", 2: "xxh3"}
"""The sidecar formats this vecstore reads, with the checksum algorithm of their files."""

_CHUNK = 1 << 20
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_SIDECAR_LIMIT = 64 << 20


def checksum_of(path: Path) -> tuple[int, int]:
    """``(byte length, checksum)`` of a file (:data:`~vecstore.checksums.WRITTEN`), read in
    1 MiB chunks."""
    digest = Digest(WRITTEN)
    size = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.value()


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
    the checksums. ``directory`` is created if missing; its parent must exist (so saving into
    a dropped table's directory fails instead of bringing the directory back).
    """
    directory = Path(directory)
    directory.mkdir(exist_ok=True)
    files: dict[str, dict[str, int]] = {}
    for name, write in writers.items():
        final = directory / name
        with atomic_path(final) as tmp:
            write(tmp)
            size, checksum = checksum_of(tmp)
        files[name] = {"bytes": size, WRITTEN: checksum}
    sidecar = {"format": FORMAT_VERSION, **meta, "files": files}
    side_name = sidecar_name(kind)
    with atomic_path(directory / side_name) as tmp:
        tmp.write_text(json.dumps(sidecar, indent=1, sort_keys=True))
    _fsync_dir(directory)
    return [*writers, side_name]


def sidecar_name(kind: str) -> str:
    """File name of the checksum sidecar of an index of ``kind``."""
    return f"{kind}.json"


def _refused(path: Path, what: str, expected: str) -> CorruptStoreError:
    return CorruptStoreError(
        f"{path} is {what}, expected {expected}: vecstore does not follow links in an index "
        "directory nor read special files; remove it and rebuild the index"
    )


def _open_plain(path: Path, dir_fd: int | None, *, directory: bool) -> int:
    """Open ``path`` (its name relative to ``dir_fd``, or the whole path) without following a
    link; it must be a directory or a regular file as asked."""
    name = path.name if dir_fd is not None else str(path)
    flags = os.O_RDONLY | os.O_NOFOLLOW | _CLOEXEC | (os.O_DIRECTORY if directory else os.O_NONBLOCK)
    expected = "a directory" if directory else "a regular file"
    try:
        fd = os.open(name, flags, dir_fd=dir_fd)
    except FileNotFoundError:
        raise
    except OSError as exc:
        if exc.errno not in (errno.ELOOP, errno.EMLINK, errno.ENOTDIR):
            raise CorruptStoreError(f"index file {path} cannot be opened: {exc}") from exc
        link = stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
        raise _refused(path, "a symbolic link" if link else "of another file type", expected) from None
    mode = os.fstat(fd).st_mode
    if not (stat.S_ISDIR(mode) if directory else stat.S_ISREG(mode)):
        os.close(fd)
        raise _refused(path, "of another file type", expected)
    return fd


def verify(directory: Path, kind: str, expect: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read the sidecar of a ``kind`` index in ``directory`` and check every file it lists.

    Returns the sidecar's contents. Raises :class:`CorruptStoreError` naming the offending file
    when the directory, the sidecar or a file is a link or not of its type, when the sidecar is
    missing or unreadable, was written for another kind or by a newer vecstore, disagrees with
    ``expect`` (e.g. ``{"dim": 384, "metric": "cosine", "count": 1000}``, what the caller knows
    from elsewhere), or when a data file is missing, has another length or another checksum.
    """
    meta, checks = verify_started(directory, kind, expect, lazy=False)
    return meta


def verify_started(directory: Path, kind: str, expect: Mapping[str, Any] | None = None, *,
                   lazy: bool = True) -> tuple[dict[str, Any], list[BackgroundCheck]]:
    """:func:`verify` with the data files' checksums (``lazy``) left running on the checker
    thread: the returned checks must all be waited for before the index is used. The sidecar,
    the files' types and sizes are checked before this returns."""
    directory = Path(directory)
    side = directory / sidecar_name(kind)
    try:
        dir_fd = _open_plain(directory, None, directory=True)
    except FileNotFoundError:
        raise CorruptStoreError(f"index directory {directory} is missing; rebuild the index") from None
    try:
        return _verify_in(dir_fd, directory, side, kind, expect, lazy)
    finally:
        os.close(dir_fd)


def _mismatch(path: Path, algorithm: str, expected: int) -> Callable[[int], CorruptStoreError]:
    return lambda value: CorruptStoreError(
        f"index file {path} fails its checksum (got {describe(algorithm, value)}, expected "
        f"{describe(algorithm, expected)}): it was altered; rebuild the index"
    )


def _verify_in(dir_fd: int, directory: Path, side: Path, kind: str,
               expect: Mapping[str, Any] | None,
               lazy: bool) -> tuple[dict[str, Any], list[BackgroundCheck]]:
    try:
        fd = _open_plain(side, dir_fd, directory=False)
    except FileNotFoundError:
        raise CorruptStoreError(
            f"index sidecar {side} is missing: the {kind!r} index in {directory} was not saved "
            "completely; rebuild it"
        ) from None
    try:
        size = os.fstat(fd).st_size
        if size > _SIDECAR_LIMIT:
            raise CorruptStoreError(f"index sidecar {side} is too large to be a sidecar; rebuild the index")
        meta = json.loads(os.pread(fd, size, 0).decode("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CorruptStoreError(f"index sidecar {side} is unreadable ({exc}); rebuild the index") from exc
    finally:
        os.close(fd)
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise CorruptStoreError(f"index sidecar {side} has no 'files' table; rebuild the index")
    algorithm = READ_FORMATS.get(meta.get("format"))  # type: ignore[arg-type]
    if algorithm is None:
        raise CorruptStoreError(
            f"index sidecar {side} has format {meta.get('format')!r}, this vecstore reads formats "
            f"{', '.join(map(str, READ_FORMATS))}; rebuild the index or upgrade vecstore"
        )
    if meta.get("kind") != kind:
        raise CorruptStoreError(
            f"index sidecar {side} describes a {meta.get('kind')!r} index, expected {kind!r}"
        )
    for key, wanted in (expect or {}).items():
        if meta.get(key) != wanted:
            raise CorruptStoreError(
                f"index sidecar {side} says {key} = {meta.get(key)!r}, but the table records "
                f"{wanted!r}: the sidecar was altered or belongs to another index; rebuild the index"
            )
    checks: list[BackgroundCheck] = []
    for name, expected in meta["files"].items():
        path = directory / name
        if (
            not isinstance(expected, dict)
            or not isinstance(expected.get("bytes"), int)
            or not isinstance(expected.get(algorithm), int)
            or isinstance(expected.get(algorithm), bool)
            or not isinstance(name, str)
            or name in ("", ".", "..")
            or Path(name).name != name
        ):
            raise CorruptStoreError(f"index sidecar {side} has a bad entry for {name!r}")
        try:
            fd = _open_plain(path, dir_fd, directory=False)
        except FileNotFoundError:
            raise CorruptStoreError(f"index file {path} is missing (listed in {side})") from None
        try:
            size = os.fstat(fd).st_size
            if size != expected.get("bytes"):
                raise CorruptStoreError(
                    f"index file {path} has {size} bytes, expected {expected.get('bytes')}: "
                    "it is truncated or was overwritten; rebuild the index"
                )
            if lazy:
                checks.append(checksum_check(fd, algorithm, expected[algorithm],
                                             _mismatch(path, algorithm, expected[algorithm])))
            else:
                value = checksum_pread(fd, algorithm)
                if value != expected[algorithm]:
                    raise _mismatch(path, algorithm, expected[algorithm])(value)
        finally:
            os.close(fd)
    return meta, checks
