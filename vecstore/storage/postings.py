"""Keyword postings: per segment, which rows hold each term, how often, and each row's length.

A segment's postings are written with it, in the same commit, to an immutable Arrow IPC file
named (with its size and checksum) by the segment's manifest entry, and memory-mapped to read. They
hold *counts only* (term frequencies and row lengths): BM25's document frequencies and average
length are computed at query time over the live rows of the whole table version, so deleting
rows or adding segments never leaves a statistic stale and nothing is ever rebuilt.

The file is one Arrow record of five arrays (a compressed-sparse-row layout):

- ``terms``: the segment's distinct terms, sorted by code point (``T``);
- ``offsets``: where each term's postings start in ``rows``/``tf`` (``T + 1``, int64);
- ``rows``: segment-local row offsets, ascending within a term (int32);
- ``tf``: how often the term occurs in that row (int32);
- ``lengths``: each row's number of terms (int32, one per row of the segment).

Its schema metadata names the analyzer (:attr:`vecstore.text.Analyzer.fingerprint`) and the
columns indexed; a file whose analyzer or columns differ from the table's is refused as corrupt.
Segments written before keyword search existed have no postings file: theirs are computed from
the segment's text on first use and kept in memory (:func:`segment_postings`).
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

from ..config import KeywordConfig
from ..errors import CorruptStoreError
from ..text import Analyzer
from .manifest import DATA_DIR, FileRef
from .segments import _open_ipc, _write_ipc

POSTINGS_FORMAT = 1
I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
_EMPTY = np.empty(0, dtype=np.int32)


class _Terms:
    """A sorted Arrow string array, searched by the big-endian integer of each term's first 8
    UTF-8 bytes (a NumPy ``searchsorted``), then term by term among the few sharing them.
    UTF-8 orders as code points do, and no term holds a NUL byte, so zero-padded prefixes sort
    as the terms do."""

    def __init__(self, arr: pa.StringArray) -> None:
        _, offsets, data = arr.buffers()
        n = len(arr)
        self.offsets = np.frombuffer(offsets, dtype=np.int32, count=arr.offset + n + 1)[arr.offset:] \
            if offsets is not None else np.zeros(1, dtype=np.int32)
        self.data = memoryview(data) if data is not None else memoryview(b"")
        raw = np.frombuffer(self.data, dtype=np.uint8) if len(self.data) else np.zeros(1, np.uint8)
        start, end = self.offsets[:-1].astype(np.int64), self.offsets[1:].astype(np.int64)
        prefix = np.zeros(n, dtype=np.uint64)
        for j in range(8):
            at = start + j
            byte = np.where(at < end, raw[np.minimum(at, raw.size - 1)], 0).astype(np.uint64)
            prefix |= byte << np.uint64(8 * (7 - j))
        self.prefix = prefix

    def find(self, terms: list[str]) -> list[int]:
        """Each term's position, or -1 (one ``searchsorted`` pair for all of them)."""
        keys = [t.encode("utf-8") for t in terms]
        heads = np.array([int.from_bytes(k[:8].ljust(8, b"\0"), "big") for k in keys], dtype=np.uint64)
        los = np.searchsorted(self.prefix, heads, side="left").tolist()
        his = np.searchsorted(self.prefix, heads, side="right").tolist()
        offsets, data = self.offsets, self.data
        out = []
        for key, lo, hi in zip(keys, los, his, strict=True):
            found = -1
            for i in range(lo, hi):  # usually one: terms rarely share their first 8 bytes
                if data[offsets[i]:offsets[i + 1]] == key:
                    found = i
                    break
            out.append(found)
        return out


@dataclass(frozen=True, eq=False)
class Postings:
    """One segment's postings (see the module docstring), memory-mapped or built in memory."""

    terms: pa.StringArray
    offsets: I64
    rows: I32
    tf: I32
    lengths: I32
    fingerprint: str
    columns: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "_lookup", _Terms(self.terms))

    @property
    def n_terms(self) -> int:
        return len(self.terms)

    def find(self, term: str) -> int:
        """The position of ``term`` among the segment's terms, or -1."""
        return self._lookup.find([term])[0]  # type: ignore[attr-defined]

    def lookup(self, terms: list[str]) -> list[tuple[I32, I32]]:
        """For each term, the segment-local rows holding it (ascending) and its frequency in
        each (empty arrays for a term the segment lacks)."""
        out = []
        offsets = self.offsets
        for i in self._lookup.find(terms):  # type: ignore[attr-defined]
            if i < 0:
                out.append((_EMPTY, _EMPTY))
            else:
                a, b = int(offsets[i]), int(offsets[i + 1])
                out.append((self.rows[a:b], self.tf[a:b]))
        return out


def keyword_texts(attributes: pa.Table, config: KeywordConfig) -> list[pa.Array]:
    """The columns of ``attributes`` the keyword index reads: those of ``config.columns`` that
    are present and hold strings (any other type holds no words)."""
    out = []
    for name in config.columns:
        if name in attributes.column_names:
            col = attributes.column(name)
            if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
                out.append(col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col)
    return out


def build_postings(attributes: pa.Table, config: KeywordConfig, analyzer: Analyzer | None = None,
                   rows: int | None = None) -> Postings:
    """Analyze the keyword columns of ``attributes`` (one row per segment row; ``rows`` of them
    when given: a table of no columns counts no rows) into postings.

    Only the splitting runs per text in Python; dropping stopwords, counting and mapping words
    to terms are vectorised, and each distinct word is stemmed once."""
    analyzer = analyzer or Analyzer(config.language)
    n = attributes.num_rows if rows is None else rows
    flat: list[str] = []
    owners: list[I64] = []
    for col in keyword_texts(attributes, config):
        split = [analyzer.split(t) if t else [] for t in col.to_pylist()]
        owners.append(np.repeat(np.arange(n, dtype=np.int64),
                                np.fromiter(map(len, split), dtype=np.int64, count=n)))
        flat.extend(itertools.chain.from_iterable(split))
    words = pa.array(flat, type=pa.string())
    owner = np.concatenate(owners) if owners else np.empty(0, dtype=np.int64)
    if analyzer.stopwords and len(words):
        keep = pc.invert(pc.is_in(words, value_set=pa.array(sorted(analyzer.stopwords), pa.string())))
        words, owner = words.filter(keep), owner[keep.to_numpy(zero_copy_only=False)]
    vocab = pc.unique(words)
    stems = analyzer.stem(vocab.to_pylist())  # each distinct word once
    terms = sorted(set(stems))
    term_id = {t: i for i, t in enumerate(terms)}
    vocab_term = np.array([term_id[s] for s in stems], dtype=np.int64)
    flat_term = vocab_term[pc.index_in(words, value_set=vocab).to_numpy(zero_copy_only=False)] \
        if len(words) else np.empty(0, dtype=np.int64)
    lengths = np.bincount(owner, minlength=n)
    keys, tf = np.unique(flat_term * max(n, 1) + owner, return_counts=True)  # sorted by (term, row)
    term_of = keys // max(n, 1)
    offsets = np.zeros(len(terms) + 1, dtype=np.int64)
    np.cumsum(np.bincount(term_of, minlength=len(terms)), out=offsets[1:])
    return Postings(terms=pa.array(terms, type=pa.string()), offsets=offsets,
                    rows=(keys % max(n, 1)).astype(np.int32), tf=tf.astype(np.int32),
                    lengths=lengths.astype(np.int32), fingerprint=analyzer.fingerprint,
                    columns=config.columns)


def merge_postings(pieces: Sequence[tuple[Postings, I64]]) -> Postings:
    """The postings of a segment made of the rows ``kept`` (sorted local rows) of each piece's
    segment, in order: what :func:`build_postings` would make from those rows' text, without
    analyzing it again (a merge or a compaction reuses the postings it has)."""
    first = pieces[0][0]
    for p, _ in pieces:
        if p.fingerprint != first.fingerprint or p.columns != first.columns:
            raise ValueError("cannot merge postings of different keyword settings")
    words = pc.unique(pa.concat_arrays([p.terms.cast(pa.string()) for p, _ in pieces]))
    terms = words.take(pc.sort_indices(words))  # binary order: UTF-8 bytes, i.e. code points
    term_parts, row_parts, tf_parts, lengths = [], [], [], []
    offset = 0
    for p, kept in pieces:
        new_row = np.full(len(p.lengths), -1, dtype=np.int64)
        new_row[kept] = offset + np.arange(kept.size, dtype=np.int64)
        global_id = pc.index_in(p.terms, value_set=terms).to_numpy(zero_copy_only=False)
        term_of = np.repeat(global_id.astype(np.int64), np.diff(p.offsets))
        rows = new_row[p.rows]
        keep = rows >= 0
        term_parts.append(term_of[keep])
        row_parts.append(rows[keep])
        tf_parts.append(p.tf[keep])
        lengths.append(p.lengths[kept])
        offset += kept.size
    term_of = np.concatenate(term_parts)
    rows = np.concatenate(row_parts)
    order = np.lexsort((rows, term_of))
    term_of, rows, tf = term_of[order], rows[order], np.concatenate(tf_parts)[order]
    counts = np.bincount(term_of, minlength=len(terms))
    present = counts > 0  # a term whose every row was dropped goes
    offsets = np.zeros(int(present.sum()) + 1, dtype=np.int64)
    np.cumsum(counts[present], out=offsets[1:])
    return Postings(terms=terms.filter(pa.array(present)), offsets=offsets,
                    rows=rows.astype(np.int32), tf=tf.astype(np.int32),
                    lengths=np.concatenate(lengths).astype(np.int32) if lengths else _EMPTY,
                    fingerprint=first.fingerprint, columns=first.columns)


def write_postings(table_dir: Path, postings: Postings) -> FileRef:
    """Write ``postings`` as an immutable file beside the segments (temp name, fsync, rename)."""
    def one(values: pa.Array) -> pa.ListArray:
        return pa.ListArray.from_arrays(pa.array([0, len(values)], type=pa.int32()), values)

    table = pa.table({
        "terms": one(postings.terms),
        "offsets": one(pa.array(postings.offsets, type=pa.int64())),
        "rows": one(pa.array(postings.rows, type=pa.int32())),
        "tf": one(pa.array(postings.tf, type=pa.int32())),
        "lengths": one(pa.array(postings.lengths, type=pa.int32())),
    })
    table = table.replace_schema_metadata({
        "vecstore.postings": str(POSTINGS_FORMAT),
        "vecstore.analyzer": postings.fingerprint,
        "vecstore.columns": json.dumps(list(postings.columns)),
    })
    return _write_ipc(table_dir, DATA_DIR, table)


def open_postings(table_dir: Path, ref: FileRef, rows: int, verify: bool = True) -> Postings:
    """Memory-map a postings file, checking it against the manifest (size, checksum, rows)."""
    table = _open_ipc(table_dir, ref, verify)
    path = table_dir / ref.path
    meta = table.schema.metadata or {}
    try:
        fmt = int(meta[b"vecstore.postings"])
        fingerprint = meta[b"vecstore.analyzer"].decode()
        columns = tuple(json.loads(meta[b"vecstore.columns"]))
        if fmt > POSTINGS_FORMAT:
            raise CorruptStoreError(f"postings file {path} has format {fmt}, newer than this "
                                    f"vecstore reads ({POSTINGS_FORMAT}); upgrade vecstore")
        arrays = [table.column(c).chunk(0).values for c in ("terms", "offsets", "rows", "tf", "lengths")]
    except CorruptStoreError:
        raise
    except (KeyError, ValueError, IndexError, pa.ArrowException) as exc:
        raise CorruptStoreError(f"postings file {path} is not a postings file: {exc}") from exc
    terms, offsets, prow, tf, lengths = arrays
    out = Postings(terms=terms, offsets=offsets.to_numpy(), rows=prow.to_numpy(), tf=tf.to_numpy(),
                   lengths=lengths.to_numpy(), fingerprint=fingerprint, columns=columns)
    if (len(out.lengths) != rows or len(out.offsets) != out.n_terms + 1
            or len(out.rows) != len(out.tf) or int(out.offsets[-1]) != len(out.rows)):
        raise CorruptStoreError(f"postings file {path} does not fit its segment of {rows} rows")
    return out


_cache: OrderedDict[tuple[str, ...], Postings] = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_ENTRIES = 1024


def segment_postings(table_dir: Path, ref: FileRef | None, data_path: str, segment: pa.Table,
                     config: KeywordConfig, verify: bool = True) -> Postings:
    """A segment's postings for ``config``: its postings file, or, for a segment written before
    keyword search (no file), postings built from its text and kept in memory. Cached per
    process (files are immutable, so the key is their path)."""
    analyzer_id = Analyzer.fingerprint_for(config.language)
    if ref is not None:
        key: tuple[str, ...] = (str(table_dir), ref.path, ref.algorithm, str(ref.checksum))
    else:
        key = (str(table_dir), data_path, analyzer_id, *config.columns)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
            return found
    if ref is not None:
        postings = open_postings(table_dir, ref, segment.num_rows, verify)
        if postings.fingerprint != analyzer_id or postings.columns != config.columns:
            raise CorruptStoreError(
                f"postings file {table_dir / ref.path} indexes {list(postings.columns)} with "
                f"{postings.fingerprint}; the table's manifest says {list(config.columns)} with "
                f"{analyzer_id}")
    else:
        postings = build_postings(segment, config)
    with _cache_lock:
        _cache[key] = postings
        while len(_cache) > _CACHE_ENTRIES:
            _cache.popitem(last=False)
    return postings
