"""Versioned manifests: the one record of what a table version contains.

A table directory holds ``_versions/<version, 20 digits>.json``. A commit writes the next version
to a temporary name, fsyncs it and publishes it with ``link`` (which fails if another writer
published that version first), then fsyncs the directory. A manifest that is not published does
not exist for readers, so a crash mid-commit leaves the previous version in force.

A manifest is read as untrusted input even when its checksum matches (anyone can recompute a
CRC): every path it names must have the shape vecstore writes (``data/<32 hex>.arrow`` for
segment and tombstone files, ``indexes/<32 hex>`` for an index directory), so it stays inside
the table directory, and its counts must be consistent. Anything else is a
:class:`~vecstore.errors.CorruptStoreError` naming the manifest and the value.
"""

from __future__ import annotations

import base64
import json
import os
import re
import time
import zlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from time import time_ns as _wall_clock_ns  # the machine's clock, as file times use
from typing import Any

import pyarrow as pa

from ..checksums import ALGORITHMS
from ..config import TableConfig
from ..errors import CorruptStoreError, NotFoundError
from .files import open_in_table, read_in_table, write_bytes_atomic

FORMAT_VERSION = 3
"""Bumped whenever a change to the on-disk format means older readers cannot read new stores.

2: multi-vector tables (further vector columns, each with its own codes and calibration).
3: files checksummed with XXH3-64 (``"xxh3"`` in a file's entry, where format 1 and 2 have
``"crc32"``). A manifest is written with the lowest format that holds it: a table whose files
all carry CRC-32 still says 1 (2 if multi-vector), so earlier vecstore versions keep reading it,
and refuse a newer one instead of failing on a key they do not know."""

VERSIONS_DIR = "_versions"
DATA_DIR = "data"
_VERSION_RE = re.compile(r"^(\d{20})\.json$")
SEGMENT_PATH = re.compile(r"data/[0-9a-f]{32}\.arrow")
"""The only shape of a segment or tombstone path in a manifest (``fullmatch``)."""
INDEX_PATH = re.compile(r"indexes/[0-9a-f]{32}")
STAGING_DIR = "_staging"
"""Where segments written for a later commit wait (``_staging/<stage>/data/...``), inside the
table's directory so that publishing them is a rename on the same file system."""
STAGE_PATH = re.compile(r"_staging/[0-9a-f]{32}")
"""The only shape of an index directory path in a manifest (``fullmatch``)."""
_MANIFEST_LIMIT = 256 << 20  # a manifest lists files; one this large is not one of ours


@dataclass(frozen=True)
class FileRef:
    """A file of the table, relative to its directory, with what it must measure: its size and
    its ``checksum`` by ``algorithm`` (one of :data:`~vecstore.checksums.ALGORITHMS`)."""

    path: str
    bytes: int
    checksum: int
    algorithm: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "bytes": self.bytes, self.algorithm: self.checksum}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> FileRef:
        for algorithm in ALGORITHMS:
            if algorithm in d:
                return cls(path=str(d["path"]), bytes=int(d["bytes"]), checksum=int(d[algorithm]),
                           algorithm=algorithm)
        raise KeyError(f"a checksum ({' or '.join(ALGORITHMS)})")


@dataclass(frozen=True)
class SegmentEntry:
    """One immutable data segment, its calibration and its tombstones (deleted row offsets)."""

    data: FileRef
    rows: int
    quantizer: dict[str, str]
    deletions: FileRef | None = None
    deleted: int = 0
    merged_from: tuple[tuple[str, int, int], ...] = ()
    """Segments this one was merged from whose rows it holds unchanged and in order, as
    ``(data path, rows, offset here)``: an index built over them still finds its rows."""
    extra_quantizers: dict[str, dict[str, str]] = field(default_factory=dict)
    """The calibration of each further vector column of a multi-vector table, by name."""
    postings: FileRef | None = None
    """The segment's keyword postings (:mod:`.postings`); None when it was written before
    keyword search existed or holds none of the keyword columns."""

    @property
    def live_rows(self) -> int:
        return self.rows - self.deleted

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "data": self.data.to_json(),
            "rows": self.rows,
            "quantizer": self.quantizer,
            "deletions": self.deletions.to_json() if self.deletions else None,
            "deleted": self.deleted,
        }
        if self.merged_from:
            out["merged_from"] = [list(m) for m in self.merged_from]
        if self.extra_quantizers:
            out["extra_quantizers"] = {k: dict(v) for k, v in self.extra_quantizers.items()}
        if self.postings is not None:
            out["postings"] = self.postings.to_json()
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SegmentEntry:
        return cls(
            data=FileRef.from_json(d["data"]),
            rows=int(d["rows"]),
            quantizer=dict(d["quantizer"]),
            deletions=FileRef.from_json(d["deletions"]) if d.get("deletions") else None,
            deleted=int(d.get("deleted", 0)),
            merged_from=tuple((str(p), int(r), int(o)) for p, r, o in d.get("merged_from", ())),
            extra_quantizers={str(k): dict(v) for k, v in (d.get("extra_quantizers") or {}).items()},
            postings=FileRef.from_json(d["postings"]) if d.get("postings") else None,
        )


@dataclass(frozen=True)
class IndexEntry:
    """The table's ANN index as a version records it: which backend, its resolved parameters,
    where its files are, and which segments (and how many of their rows) it covers. Rows of
    segments written later are scanned beside it until it is rebuilt."""

    kind: str
    params: dict[str, Any]
    path: str  # directory relative to the table, ``indexes/<uuid>``
    count: int  # vectors in the index: the rows of ``segments``, in order
    segments: tuple[tuple[str, int], ...]  # (segment data path, rows) covered, in label order
    built_at_version: int
    vectors: tuple[str, ...] = ("vector",)
    """The vector columns indexed: labels hold every row's first vector, then every row's
    second, and so on (``count`` = rows x len(vectors)); several labels map to one row."""

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "params": dict(self.params),
            "path": self.path,
            "count": self.count,
            "segments": [[path, rows] for path, rows in self.segments],
            "built_at_version": self.built_at_version,
            **({"vectors": list(self.vectors)} if self.vectors != ("vector",) else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> IndexEntry:
        if not (isinstance(d, dict) and isinstance(d.get("kind"), str)
                and isinstance(d.get("params", {}), dict) and isinstance(d.get("path"), str)
                and _is_int(d.get("count")) and isinstance(d.get("segments"), list)
                and all(isinstance(s, list) and len(s) == 2 and isinstance(s[0], str)
                        and _is_int(s[1]) for s in d["segments"])):
            raise ValueError(f"index entry {d!r} is not a kind, params, path, count and "
                             f"a list of [segment path, rows]")
        return cls(
            kind=d["kind"],
            params=dict(d.get("params") or {}),
            path=d["path"],
            count=d["count"],
            segments=tuple((path, rows) for path, rows in d["segments"]),
            built_at_version=int(d.get("built_at_version", 0)),
            vectors=tuple(str(v) for v in d.get("vectors") or ("vector",)),
        )

    def build_params(self) -> dict[str, Any]:
        """The parameters to rebuild the same index with (those the build resolved included)."""
        return {k: v for k, v in self.params.items() if v is not None}


@dataclass(frozen=True)
class ScanCalibration:
    """The scan's oversample measured on a table version (see ``query/calibrate.py``): the
    smallest ``k x oversample`` binary candidates whose rescored top 10 reach ``target_recall``,
    without a filter and inside a random filter keeping a tenth of the rows."""

    oversample: int
    filtered_oversample: int
    target_recall: float
    rows: int  # live rows when measured
    version: int  # the version it was measured on

    def to_json(self) -> dict[str, Any]:
        return {"oversample": self.oversample, "filtered_oversample": self.filtered_oversample,
                "target_recall": self.target_recall, "rows": self.rows, "version": self.version}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ScanCalibration:
        return cls(oversample=int(d["oversample"]), filtered_oversample=int(d["filtered_oversample"]),
                   target_recall=float(d["target_recall"]), rows=int(d["rows"]),
                   version=int(d["version"]))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def schema_to_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode("ascii")


def schema_from_b64(s: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(s)))


@dataclass(frozen=True)
class Manifest:
    """Everything a table version is: settings, attribute schema, segments, indexes."""

    version: int
    config: TableConfig
    schema: pa.Schema  # attribute columns only (not id, not vectors)
    segments: tuple[SegmentEntry, ...] = ()
    indexes: tuple[IndexEntry, ...] = ()
    scan: ScanCalibration | None = None
    created_at: float = field(default_factory=time.time)
    operation: str = "create"

    @property
    def rows(self) -> int:
        return sum(s.live_rows for s in self.segments)

    def next(self, operation: str, **changes: Any) -> Manifest:
        return replace(self, version=self.version + 1, created_at=time.time(),
                       operation=operation, **changes)

    @property
    def format_version(self) -> int:
        """The lowest format that holds this manifest (see :data:`FORMAT_VERSION`)."""
        if any(ref.algorithm != "crc32" for seg in self.segments
               for ref in (seg.data, seg.deletions, seg.postings) if ref is not None):
            return 3
        return 2 if self.config.multi else 1

    def to_json(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "version": self.version,
            "created_at": self.created_at,
            "operation": self.operation,
            "config": self.config.to_json(),
            "schema": schema_to_b64(self.schema),
            "columns": {f.name: str(f.type) for f in self.schema},  # for people reading the file
            "segments": [s.to_json() for s in self.segments],
            "indexes": [e.to_json() for e in self.indexes],
            **({"scan_calibration": self.scan.to_json()} if self.scan is not None else {}),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Manifest:
        fmt = int(d.get("format_version", -1))
        if fmt > FORMAT_VERSION:
            raise CorruptStoreError(
                f"the table was written with storage format {fmt}, newer than this vecstore "
                f"supports ({FORMAT_VERSION}); upgrade vecstore to read it"
            )
        return cls(
            version=int(d["version"]),
            config=TableConfig.from_json(d["config"]),
            schema=schema_from_b64(d["schema"]),
            segments=tuple(SegmentEntry.from_json(s) for s in d["segments"]),
            indexes=tuple(IndexEntry.from_json(e) for e in d.get("indexes", ())),
            scan=ScanCalibration.from_json(d["scan_calibration"]) if d.get("scan_calibration") else None,
            created_at=float(d.get("created_at", 0.0)),
            operation=str(d.get("operation", "")),
        )


def _checksum(body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return f"crc32:{zlib.crc32(canonical):08x}"


def manifest_path(table_dir: Path, version: int) -> Path:
    return table_dir / VERSIONS_DIR / f"{version:020d}.json"


def list_versions(table_dir: Path) -> list[int]:
    """Published versions, oldest first; [] when there is no table at ``table_dir``. A table
    directory or ``_versions`` that is a link or not a directory is a CorruptStoreError."""
    try:
        fd = open_in_table(table_dir, VERSIONS_DIR, directory=True)
    except FileNotFoundError:
        return []
    try:
        names = os.listdir(fd)
    finally:
        os.close(fd)
    return sorted(int(m.group(1)) for n in names if (m := _VERSION_RE.match(n)))



def missing_version_error(table_dir: Path, name: str, v: int) -> NotFoundError:
    """The error for version ``v`` of table ``name``, which is not on disk: the versions that
    are, and whether cleanup removed it."""
    have = list_versions(table_dir)
    listed = f"{have[0]} to {have[-1]}" if have == list(range(have[0], have[-1] + 1)) \
        else ", ".join(map(str, have)) if have else "none"
    if have and v < have[0]:
        return NotFoundError(f"version {v} of table {name!r} was removed by cleanup() (its "
                             f"versions on disk: {listed}); keep versions longer with "
                             f"cleanup(older_than=..., keep_last=...)")
    return NotFoundError(f"table {name!r} has no version {v} (its versions on disk: {listed})")


def latest_version(table_dir: Path, known: int = 0) -> int:
    """The newest published version. With ``known`` > 0, probe forward from it (one stat per
    step) instead of listing the directory: versions only ever grow, and cleanup removes them
    oldest first, so the versions on disk are one contiguous range ending at the newest. When
    ``known`` itself is gone (cleanup removed it), the directory is listed."""
    if known > 0:
        # A hot path (every read checks it): plain strings and one stat per step.
        prefix = f"{table_dir}{os.sep}{VERSIONS_DIR}{os.sep}"
        v = known
        while os.path.exists(f"{prefix}{v + 1:020d}.json"):
            v += 1
        if v > known or os.path.exists(f"{prefix}{known:020d}.json"):
            return v
    versions = list_versions(table_dir)
    return versions[-1] if versions else 0


STAMP_MARGIN_NS = 2_000_000_000
"""How old (in ns, by the clock of this machine) the versions directory's mtime must be when
it is read for :func:`versions_stamp` to vouch for it: more than the coarsest timestamp step of
the file systems a table may live on (a few ms on ext4/xfs/tmpfs, 1-2 s on some others)."""


class VersionsWatch:
    """Whether a table's versions directory is as it was when a version was found newest: one
    ``stat`` per read while the table does not change, where :func:`latest_version` costs two
    or more. Publishing or removing a version adds, renames or deletes an entry there, which
    sets the directory's mtime to the time of that change; a drop leaves the path naming
    another directory, or none. The state is vouched for only once the mtime is
    :data:`STAMP_MARGIN_NS` old (a change within the same timestamp step could leave it as it
    was): until then every read probes the versions."""

    def __init__(self, table_dir: Path) -> None:
        self._path = os.path.join(str(table_dir), VERSIONS_DIR)
        self._seen: tuple[tuple[int, int, int], Any] | None = None  # (stamp, what was newest)

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self._path)
        except OSError:
            return None
        return (st.st_dev, st.st_ino, st.st_mtime_ns)

    def unchanged(self) -> Any:
        """What :meth:`record` was given, if the directory has not changed since; else None."""
        seen = self._seen
        if seen is not None and self._stat() == seen[0]:
            return seen[1]
        return None

    def stamp(self) -> tuple[int, int, int] | None:
        """The directory's state now, to :meth:`record` with what a probe that starts after
        this call finds newest; None when it is too recent to vouch for."""
        now = self._stat()
        return None if now is None or _wall_clock_ns() - now[2] < STAMP_MARGIN_NS else now

    def record(self, stamp: tuple[int, int, int] | None, newest: Any) -> None:
        self._seen = None if stamp is None else (stamp, newest)


def version_exists(table_dir: Path, version: int) -> bool:
    """Whether version ``version``'s manifest is on disk (cleanup removes old ones)."""
    return os.path.exists(manifest_path(table_dir, version))


def read_manifest(table_dir: Path, version: int) -> Manifest:
    path = manifest_path(table_dir, version)
    try:
        raw = read_in_table(table_dir, f"{VERSIONS_DIR}/{path.name}", limit=_MANIFEST_LIMIT)
    except FileNotFoundError:
        raise NotFoundError(f"table version {version} does not exist ({path})") from None
    try:
        data = json.loads(raw)
        if isinstance(data, dict) and int(data.get("format_version", 0)) > FORMAT_VERSION:
            Manifest.from_json(data)  # raises the "newer format" error, whatever else changed
        stored = data.pop("checksum", None)
        if stored != _checksum(data):
            raise CorruptStoreError(
                f"manifest {path} fails its checksum: the file was altered or damaged; older "
                f"versions stay readable with open_table(name, version=...)"
            )
        manifest = Manifest.from_json(data)
    except CorruptStoreError:
        raise
    except Exception as exc:  # truncated JSON, missing keys, bad base64, bad schema bytes
        raise CorruptStoreError(f"manifest {path} is unreadable: {exc}") from exc
    if manifest.version != version:
        raise CorruptStoreError(f"manifest {path} claims version {manifest.version}")
    check_entries(manifest, path)
    return manifest


def check_entries(manifest: Manifest, path: Path) -> None:
    """Refuse a manifest whose files could lie outside the table or whose counts disagree.

    Paths must have exactly the shape vecstore writes, which keeps them inside the table's
    ``data/`` or ``indexes/`` directory (no ``..``, no absolute path, no other directory); the
    reader then opens them without following links (see ``files.open_in_table``).
    """
    def bad(what: str, value: object, expected: str) -> CorruptStoreError:
        return CorruptStoreError(
            f"manifest {path} has {what} {value!r}, expected {expected}; the manifest was "
            f"altered (its checksum was recomputed): older versions stay readable with "
            f"open_table(name, version=...)"
        )

    def count(what: str, value: object, low: int = 0, high: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < low \
                or (high is not None and value > high):
            raise bad(what, value, f"an integer in [{low}, {high if high is not None else 'inf'}]")
        return value

    rows_of: dict[str, int] = {}
    for i, seg in enumerate(manifest.segments):
        for ref in (seg.data, seg.deletions):
            if ref is None:
                continue
            if not SEGMENT_PATH.fullmatch(ref.path):
                raise bad(f"segment {i} file path", ref.path, "'data/<32 hex digits>.arrow'")
            count(f"segment {i} byte count", ref.bytes)
            count(f"segment {i} {ref.algorithm}", ref.checksum, 0, ALGORITHMS[ref.algorithm])
        rows = count(f"segment {i} row count", seg.rows)
        count(f"segment {i} deleted count", seg.deleted, 0, rows)
        rows_of[seg.data.path] = rows
        for src, src_rows, at in seg.merged_from:  # where its sources' rows sit in it
            if not SEGMENT_PATH.fullmatch(src):
                raise bad(f"segment {i} merged-from path", src, "'data/<32 hex digits>.arrow'")
            count(f"segment {i} merged-from offset", at, 0, rows - count(
                f"segment {i} merged-from row count", src_rows, 0, rows))
    for i, entry in enumerate(manifest.indexes):
        if not INDEX_PATH.fullmatch(entry.path):
            raise bad(f"index {i} path", entry.path, "'indexes/<32 hex digits>'")
        total = count(f"index {i} count", entry.count)
        seen = 0
        for seg_path, rows in entry.segments:
            if not SEGMENT_PATH.fullmatch(seg_path):
                raise bad(f"index {i} segment", seg_path, "data/<32 hex digits>.arrow")
            count(f"index {i} segment row count", rows)
            if seg_path in rows_of and rows_of[seg_path] != rows:
                raise bad(f"index {i} segment {seg_path} row count", rows,
                          f"{rows_of[seg_path]} as the segment entry says")
            seen += rows
        per_row = len(entry.vectors)  # a multi-vector table's index holds each row's every vector
        if seen * per_row != total:
            raise bad(f"index {i} count", total,
                      f"{seen * per_row}, the sum of its segments' rows" + (
                          f" x {per_row} vectors" if per_row > 1 else ""))


def check_not_rolled_back(table_dir: Path, newest: int, mark: int) -> None:
    """Refuse a table whose newest manifest is older than its high-water mark (see
    ``locks.high_water_mark``): a version that was committed has had its manifest deleted, and
    reading (or writing on top of) the older one would silently roll the table back and publish
    that version number twice."""
    if mark > newest:
        raise CorruptStoreError(
            f"table {table_dir.name!r} committed version {mark} (the high-water mark in "
            f"{table_dir / '_lock'}), but its newest manifest on disk is version {newest}: "
            f"{table_dir / VERSIONS_DIR}/{mark:020d}.json was deleted. Restore it from a backup; "
            f"older versions stay readable read-only with open_table(name, version=...)")


def write_manifest(table_dir: Path, manifest: Manifest) -> None:
    """Publish ``manifest``; raises FileExistsError if that version was published already.

    ``_versions`` must exist (table creation makes it): a commit never creates a table's
    directories, so a writer of a dropped table cannot bring it back.
    """
    try:
        os.close(open_in_table(table_dir, VERSIONS_DIR, directory=True))  # refuses a link
    except FileNotFoundError:
        raise NotFoundError(
            f"table {table_dir.name!r} was dropped: {table_dir / VERSIONS_DIR} is gone"
        ) from None
    body = manifest.to_json()
    body["checksum"] = _checksum(body)
    data = json.dumps(body, indent=1, sort_keys=True).encode("utf-8")
    write_bytes_atomic(manifest_path(table_dir, manifest.version), data, exclusive=True)
