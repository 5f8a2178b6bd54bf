"""An on-disk table's rows are read where they lie (vecstore.storage.pages): the rescoring
stages read int8 codes and float32 vectors with preadv, so the process's resident memory does
not grow towards the size of the files, and every answer stays what it was."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import sys

import numpy as np
import pyarrow as pa
import pytest
from vecstore._native import loader

import vecstore
from vecstore import PlannerSettings
from vecstore.errors import CorruptStoreError
from vecstore.query.scoring import Scorer
from vecstore.storage import pages

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="madvise and /proc/self/smaps are Linux's")

DIM = 128


def _resident(mappings: tuple[pages.FileMapping, ...]) -> int:
    """Bytes of the given mappings resident in this process (from /proc/self/smaps)."""
    starts = {m.address for m in mappings}
    total, current = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=1)[0]
            if "-" in head and not head.endswith(":"):
                current = int(head.split("-")[0], 16) in starts
            elif current and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


def _unmap_pages(mappings: tuple[pages.FileMapping, ...]) -> None:
    """Drop the mappings' pages from this process (MADV_DONTNEED: a read-only file mapping
    reads them again from the page cache)."""
    madvise = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True).madvise
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    for m in mappings:
        assert madvise(m.address, m.length, 4) == 0


def _table(path, n: int, rng: np.random.Generator) -> vecstore.Table:
    tbl = vecstore.connect(path).create_table("t", dim=DIM)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    for start in range(0, n, n // 4):  # several adds
        part = x[start:start + n // 4]
        tbl.add(pa.table({"id": [f"r{i}" for i in range(start, start + len(part))],
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(part.ravel()), DIM)}))
    return tbl


def test_gathered_rows_equal_the_mapped_rows_and_map_nothing(tmp_path) -> None:
    tbl = _table(tmp_path, 8_000, np.random.default_rng(0))
    snap = tbl._current()
    reader = snap.pages
    rows = np.array([0, 1, 2, 7, 100, 101, 4_000, 7_999], dtype=np.int64)  # runs and singles
    expected = {name: [arr[rows[rows < len(arr)]].copy() for arr in arrays]
                for name, arrays in (("vectors", snap.vectors), ("int8", snap.int8))}
    _unmap_pages(reader.mappings)
    for name, arrays in (("vectors", snap.vectors), ("int8", snap.int8)):
        for arr, want in zip(arrays, expected[name], strict=True):
            np.testing.assert_array_equal(reader.gather(arr, rows[rows < len(arr)]), want)
    assert _resident(reader.mappings) == 0
    copy = snap.vectors[0].copy()  # not in a mapped file: indexed in memory
    np.testing.assert_array_equal(reader.gather(copy, rows[:3]), copy[rows[:3]])


def test_a_replaced_file_is_refused(tmp_path) -> None:
    tbl = _table(tmp_path, 2_000, np.random.default_rng(1))
    snap = tbl._current()
    mapping = snap.pages.mappings[0]
    path = mapping.table_dir / mapping.path
    data = path.read_bytes()
    os.replace(path, path.with_suffix(".old"))
    path.write_bytes(data)  # the same bytes in a new file
    with pytest.raises(CorruptStoreError, match="replaced"):
        snap.pages.gather(snap.vectors[0], np.arange(3))


def test_an_on_disk_index_reads_its_rows_without_mapping_them(tmp_path, monkeypatch) -> None:
    rng = np.random.default_rng(2)
    tbl = _table(tmp_path, 16_000, rng)
    tbl.create_index("ivf-binary", nlist=32, nprobe=8, rerank=16)
    queries = rng.standard_normal((60, DIM)).astype(np.float32)
    mapped = [[h["id"] for h in tbl.search(q).limit(10).to_list()] for q in queries]
    monkeypatch.setattr(pages, "ON_DISK_BYTES", 1 << 20)
    tbl = vecstore.connect(tmp_path).open_table("t")  # a new snapshot: on disk now
    snap = tbl._current()
    assert snap.pages.on_disk
    read = [[h["id"] for h in tbl.search(q).limit(10).to_list()] for q in queries[:1]]
    _unmap_pages(snap.pages.mappings)
    read += [[h["id"] for h in tbl.search(q).limit(10).to_list()] for q in queries[1:]]
    assert read == mapped
    vector_bytes = sum(v.nbytes for v in snap.vectors)
    resident = _resident(snap.pages.mappings)
    # a mapped read of 40 random rows a query maps most of the vector column in 60 queries
    assert resident < vector_bytes // 10, f"{resident:,} bytes resident"


def test_an_index_rescores_rows_read_from_the_files_of_any_table(tmp_path) -> None:
    """However small the table, an index's candidates are rescored with their float32 rows read
    from the segments' files (``Snapshot.vector_files``): single queries and a batch answered
    by the index leave none of the vectors mapped in the process, and find the rows and scores
    that reads through the memory map find (``PlannerSettings.mapped_rescore_bytes``), which
    map them. (A scan maps the rows it scans: a filter this table's planner scans is compared,
    not measured.)"""
    loader.compile_all()  # the kernels answer every query (the twins round differently)
    rng = np.random.default_rng(3)
    n = 12_000
    tbl = vecstore.connect(tmp_path).create_table("t", dim=DIM)
    x = rng.standard_normal((n, DIM)).astype(np.float32)
    for start in range(0, n, 3_000):
        tbl.add(pa.table({"id": [f"r{i}" for i in range(start, start + 3_000)],
                          "bucket": np.arange(start, start + 3_000) % 10,
                          "vector": pa.FixedSizeListArray.from_arrays(
                              pa.array(x[start:start + 3_000].ravel()), DIM)}))
    tbl.create_index()
    queries = rng.standard_normal((40, DIM)).astype(np.float32)

    def answers(table: vecstore.Table, filtered: bool = True) -> list[list[tuple[str, float]]]:
        out = [[(h["id"], h["score"]) for h in table.search(q).limit(10).to_list()] for q in queries]
        out += [[(h["id"], h["score"]) for h in hits]
                for hits in table.search_batch(queries).limit(10).to_list()]
        if filtered:
            out += [[(h["id"], h["score"]) for h in
                     table.search(q).where("bucket < 6").limit(10).to_list()] for q in queries]
        return out

    # a table this small reads the rows through the memory map when told to
    mapping = vecstore.connect(tmp_path, planner=PlannerSettings(mapped_rescore_bytes=n * DIM * 4))
    mapped_tbl = mapping.open_table("t")
    mapped_snap = mapped_tbl._current()
    answers(mapped_tbl)
    _unmap_pages(mapped_snap.pages.mappings)
    mapped = answers(mapped_tbl)
    vector_bytes = sum(v.nbytes for v in mapped_snap.vectors)
    assert _resident(mapped_snap.pages.mappings) > vector_bytes // 2  # what the default avoids
    tbl = vecstore.connect(tmp_path).open_table("t")
    snap = tbl._current()
    assert not snap.pages.on_disk and snap.vector_files is not None
    assert tbl.search(queries[0]).limit(10).explain().index  # answered by the index
    read = answers(tbl)
    _unmap_pages(snap.pages.mappings)
    assert answers(tbl, filtered=False) == read[:2 * len(queries)]
    resident = _resident(snap.pages.mappings)
    assert resident < vector_bytes // 10, f"{resident:,} of {vector_bytes:,} bytes resident"
    assert [[i for i, _ in hits] for hits in read] == [[i for i, _ in hits] for hits in mapped]
    np.testing.assert_allclose([s for hits in read for _, s in hits],
                               [s for hits in mapped for _, s in hits], rtol=1e-6)


def test_a_vector_the_file_no_longer_holds_is_a_corrupt_store_error(tmp_path) -> None:
    """Where a rescored row cannot be read whole from its file (here: each segment's vectors
    pointed at an empty file), single and batch queries raise CorruptStoreError rather than
    answer from what was read, as does the rescoring of a filtered query through the index
    (``exact_rows(from_files=True)``; this table's planner scans its filters)."""
    rng = np.random.default_rng(4)
    tbl = _table(tmp_path / "store", 4_000, rng)
    tbl.create_index()
    snap = tbl._current()
    fds, offsets = snap.vector_files
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    fd = os.open(empty, os.O_RDONLY)
    try:
        snap.__dict__["vector_files"] = (np.full(fds.size, fd, dtype=np.int64), offsets)
        q = rng.standard_normal(DIM).astype(np.float32)
        for run in (lambda: tbl.search(q).limit(10).to_list(),
                    lambda: Scorer(snap, q).exact_rows(np.arange(5, dtype=np.int64), from_files=True),
                    lambda: tbl.search_batch(np.stack([q, q])).limit(10).to_list()):
            with pytest.raises(CorruptStoreError, match="could not be read whole"):
                run()
    finally:
        os.close(fd)


def test_out_of_descriptors_the_rows_are_read_through_the_map(tmp_path, monkeypatch) -> None:
    """A process out of file descriptors (a descriptor per segment file is opened for the
    reads) still answers: its index rescores through the memory map, the same rows."""
    rng = np.random.default_rng(5)
    tbl = _table(tmp_path, 4_000, rng)
    tbl.create_index()
    q = rng.standard_normal(DIM).astype(np.float32)
    want = [h["id"] for h in tbl.search(q).limit(10).to_list()]

    def out_of_descriptors(*args, **kwargs):
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(pages, "open_in_table", out_of_descriptors)
    fresh = vecstore.connect(tmp_path).open_table("t")
    assert [h["id"] for h in fresh.search(q).limit(10).to_list()] == want
    assert fresh._current().vector_files is None
