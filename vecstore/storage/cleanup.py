"""Removing old versions and the files no kept version needs.

Every commit publishes a new manifest and leaves the previous version readable, so without
cleanup a table only grows. :func:`cleanup_table` keeps

- the newest version, and the ``keep_last`` newest versions;
- every version that stopped being the newest less than ``older_than`` seconds ago (a read that
  started on it may still be running in another process);

removes the manifests of the other versions, then every file of the table that no kept version
names and no live lease holds (:mod:`.leases`: checked-out versions, index builds in progress):
segment, tombstone and postings files, index directories, temporary files, and what a crash
left behind. A file no kept version names that was modified less than ``older_than`` ago is kept
too: it may belong to a write in progress outside the lock.

Everything happens under the table's write lock, so no commit is half written meanwhile. The
order makes a crash at any point harmless:

1. the manifests of removed versions are unlinked, oldest first (the versions on disk stay one
   contiguous range ending at the newest, which readers' forward probing relies on), and
   ``_versions`` is fsynced: no later power cut brings back a manifest whose files are gone;
2. the table's files are listed, *then* the leases read: a reader that leased an old version's
   files before step 1 removed its manifest is seen here (see ``Table.checkout``), and an index
   build leases its directory before creating it;
3. the unneeded files are removed. A kill in the middle leaves only files no version names,
   which the next cleanup removes.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidArgumentError, NotFoundError
from .files import fsync_dir, open_in_table
from .leases import held_paths
from .locks import write_lock
from .manifest import (
    DATA_DIR,
    STAGING_DIR,
    VERSIONS_DIR,
    Manifest,
    check_not_rolled_back,
    list_versions,
    manifest_path,
    read_manifest,
)

INDEXES_DIR = "indexes"
_DATA_FILE = re.compile(r"[0-9a-f]{32}\.arrow")
_INDEX_DIR = re.compile(r"[0-9a-f]{32}")
_TMP_FILE = re.compile(r"\.tmp-[0-9a-f]{32}-.+")  # files.write_atomic's temporary names
_INDEX_TMP = re.compile(r"\..+\.[0-9a-f]{8}\.tmp")  # index/_files.atomic_path's


@dataclass(frozen=True)
class CleanupReport:
    """What :meth:`~vecstore.Table.cleanup` removed and kept."""

    table: str
    versions_removed: int
    versions_kept: int
    oldest_kept: int
    newest: int
    files_removed: int  # segment, tombstone, postings and temporary files, index directories
    bytes_freed: int  # manifests included
    kept_held: int  # files no kept version names, held by a live reader or index build
    kept_recent: int  # files no kept version names, modified less than older_than ago

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def manifest_files(manifest: Manifest) -> set[str]:
    """Every table path a version needs: its segments, tombstones, postings, index directory."""
    out: set[str] = set()
    for seg in manifest.segments:
        out.add(seg.data.path)
        if seg.deletions is not None:
            out.add(seg.deletions.path)
        if seg.postings is not None:
            out.add(seg.postings.path)
    out.update(e.path for e in manifest.indexes)
    return out


def check_retention(older_than: float, keep_last: int) -> None:
    if keep_last is True or keep_last is False or not isinstance(keep_last, int) or keep_last < 1:
        raise InvalidArgumentError(
            f"keep_last must be a positive integer (the newest version is always kept), got {keep_last!r}")
    if not older_than >= 0:
        raise InvalidArgumentError(f"older_than must be >= 0 seconds, got {older_than!r}")


def cleanup_table(table_dir: Path, name: str, lock_timeout: float, identity: tuple[int, int],
                  older_than: float, keep_last: int = 1) -> CleanupReport:
    """Remove the versions of the table in ``table_dir`` that are not kept (see the module
    docstring) and every file no kept version needs. ``older_than`` is in seconds."""
    check_retention(older_than, keep_last)
    with write_lock(table_dir, lock_timeout, identity=identity) as lock:
        cutoff = time.time() - older_than
        versions = list_versions(table_dir)
        if not versions:
            raise NotFoundError(f"table {name!r} has no version in {table_dir}")
        check_not_rolled_back(table_dir, versions[-1], lock.high_water_mark())
        kept = [read_manifest(table_dir, versions[-1])]
        for v in reversed(versions[:-1]):
            # v stopped being the newest when its successor (the last one kept) was committed
            if len(kept) >= keep_last and kept[-1].created_at <= cutoff:
                break
            kept.append(read_manifest(table_dir, v))
        removed = versions[:len(versions) - len(kept)]
        manifest_bytes = 0
        for v in removed:  # oldest first: the versions left are one contiguous range
            manifest_bytes += _remove(manifest_path(table_dir, v))
        freed = _remove_old(table_dir, VERSIONS_DIR, _TMP_FILE, cutoff)
        if removed or freed[0]:
            fsync_dir(table_dir / VERSIONS_DIR)

        needed: set[str] = set()
        for m in kept:
            needed |= manifest_files(m)
        candidates = _unneeded(table_dir, needed)
        held, _ = held_paths(table_dir)  # after the listing: see the module docstring
        files = bytes_ = kept_held = kept_recent = 0
        for rel, mtime in candidates:
            top = "/".join(rel.split("/")[:2])
            if top in held:
                kept_held += 1
            elif mtime > cutoff:
                kept_recent += 1
            else:
                bytes_ += _remove(table_dir / rel)
                files += 1
        return CleanupReport(table=name, versions_removed=len(removed), versions_kept=len(kept),
                             oldest_kept=kept[-1].version, newest=kept[0].version,
                             files_removed=files + freed[0],
                             bytes_freed=manifest_bytes + bytes_ + freed[1],
                             kept_held=kept_held, kept_recent=kept_recent)


def _entries(table_dir: Path, sub: str) -> list[tuple[str, os.stat_result]]:
    """``(name, lstat)`` of the entries of a table subdirectory ([] when it does not exist)."""
    try:
        fd = open_in_table(table_dir, sub, directory=True)  # refuses a link
    except FileNotFoundError:
        return []
    try:
        out = []
        for n in os.listdir(fd):
            try:
                out.append((n, os.stat(n, dir_fd=fd, follow_symlinks=False)))
            except FileNotFoundError:
                pass
        return out
    finally:
        os.close(fd)


def _unneeded(table_dir: Path, needed: set[str]) -> list[tuple[str, float]]:
    """Table paths (relative) that no kept version names, with their modification times:
    files and temporary files in ``data/``, index directories, temporary files left inside
    kept index directories, stages of staged writes (``_staging/<stage>``: a live writer leases
    its stage; one no lease holds was left by a killed writer). Names vecstore never writes are
    left alone."""
    out = []
    for n, st in _entries(table_dir, DATA_DIR):
        rel = f"{DATA_DIR}/{n}"
        if (_DATA_FILE.fullmatch(n) and rel not in needed) or _TMP_FILE.fullmatch(n):
            out.append((rel, st.st_mtime))
    for n, st in _entries(table_dir, INDEXES_DIR):
        rel = f"{INDEXES_DIR}/{n}"
        if not _INDEX_DIR.fullmatch(n):
            continue
        if rel not in needed:
            out.append((rel, st.st_mtime))
        elif stat.S_ISDIR(st.st_mode):
            out.extend((f"{rel}/{f}", s.st_mtime) for f, s in _entries(table_dir, rel)
                       if _INDEX_TMP.fullmatch(f))
    for n, st in _entries(table_dir, STAGING_DIR):
        if _INDEX_DIR.fullmatch(n):  # a stage's name: 32 hex digits, like an index's
            out.append((f"{STAGING_DIR}/{n}", st.st_mtime))
    return out


def _remove_old(table_dir: Path, sub: str, pattern: re.Pattern[str], cutoff: float) -> tuple[int, int]:
    """Remove files of ``sub`` matching ``pattern`` modified before ``cutoff``: (count, bytes)."""
    files = bytes_ = 0
    for n, st in _entries(table_dir, sub):
        if pattern.fullmatch(n) and st.st_mtime <= cutoff:
            bytes_ += _remove(table_dir / sub / n)
            files += 1
    return files, bytes_


def _remove(path: Path) -> int:
    """Remove a file, a link (not what it points to) or a directory tree; its size in bytes."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return 0
    if stat.S_ISDIR(st.st_mode):
        size = 0
        for root, _, names in os.walk(path):
            for n in names:
                try:
                    size += os.stat(os.path.join(root, n), follow_symlinks=False).st_size
                except OSError:
                    pass
        shutil.rmtree(path, ignore_errors=True)
        return size
    try:
        os.unlink(path)
    except FileNotFoundError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0
