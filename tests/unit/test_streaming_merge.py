"""Merges and compactions write their segment a block of rows at a time (vecstore/storage/merge.py)
and a merge never rewrites more than the size cap: the merged segment holds exactly the rows a
single write of them would, its codes are its own calibration's, keyword search ranks as on the
unmerged rows, and the merge's own memory does not grow with the rows merged."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pyarrow as pa
import pytest

from vecstore.storage import merge, writer
from vecstore.storage.codes import Quantizer, normalize_rows
from vecstore.storage.segments import write_segment
from vecstore.storage.writer import merge_count

WORDS = ("apple", "kiwi", "mango", "pear", "plum", "fig", "lime", "date")


def _rows(x, start, stop, rng):
    return [{"id": f"r{j}", "vector": x[j], "n": j, "cat": j % 5,
             "text": " ".join(rng.choice(WORDS, size=int(rng.integers(1, 6))))}
            for j in range(start, stop)]


def _segments(tbl):
    snap = tbl._current()
    return snap.manifest.segments, snap.segments


def _check_codes(tbl):
    """Every segment's codes are its calibration's encoding of its stored vectors."""
    for seg in _segments(tbl)[1]:
        codes = normalize_rows(seg.vectors())
        assert np.array_equal(seg.int8_codes(), seg.quantizer.encode_int8(codes))
        assert np.array_equal(seg.binary_codes(), seg.quantizer.encode_binary(codes).view(np.uint64))


def test_merged_segment_equals_one_write_of_its_rows(tmp_db, rng, monkeypatch):
    # blocks of 64 rows: every source is cut into several, and its last block is a partial one
    monkeypatch.setattr(merge, "BLOCK_ROWS", 64)
    x = rng.standard_normal((1500, 16)).astype(np.float32)
    texts = np.random.default_rng(7)
    rows = _rows(x, 0, 1500, texts)
    many = tmp_db.create_table("many", dim=16)
    for i in range(0, 1500, 300):  # merges at the 2nd and 4th add (a binary counter)
        many.add(rows[i:i + 300])
    many.delete(ids=[f"r{j}" for j in range(0, 1500, 7)])
    many.add([{"id": "late", "vector": x[0], "n": -1, "cat": 0, "text": "kiwi"}])
    one = tmp_db.create_table("one", dim=16)
    live = [r for r in rows if r["n"] % 7] + [
        {"id": "late", "vector": x[0], "n": -1, "cat": 0, "text": "kiwi"}]
    one.add(live)
    many.compact()
    (entry,), (seg,) = _segments(many)
    (_, ), (ref,) = _segments(one)
    assert entry.rows == len(live) and entry.deleted == 0
    a = many.to_arrow(with_vectors=True).sort_by("n")
    b = one.to_arrow(with_vectors=True).sort_by("n")
    assert a.equals(b)  # ids, attributes and float32 vectors: the same bytes
    order_a = np.argsort(pa.array(seg.table.column("n")).to_numpy())
    order_b = np.argsort(pa.array(ref.table.column("n")).to_numpy())
    assert np.array_equal(seg.norms()[order_a], ref.norms()[order_b])  # copied, not recomputed
    # calibrated on all the rows as one write is (the centre summed block by block: rounding)
    want = Quantizer.fit(normalize_rows(ref.vectors()))
    np.testing.assert_array_equal(seg.quantizer.offset, want.offset)
    np.testing.assert_array_equal(seg.quantizer.scale, want.scale)
    np.testing.assert_allclose(seg.quantizer.center, want.center, rtol=1e-5, atol=1e-7)
    _check_codes(many)
    for word in ("kiwi", "mango pear", "fig"):
        got = many.search(word, mode="keyword").limit(20).to_list()
        exp = one.search(word, mode="keyword").limit(20).to_list()
        assert [h["id"] for h in got] == [h["id"] for h in exp]
        np.testing.assert_allclose([h["score"] for h in got], [h["score"] for h in exp], rtol=1e-5)
    for q in x[1:30:3]:
        assert many.search(q).limit(10).hits().ids == one.search(q).limit(10).hits().ids
        assert many.search(q).where("cat = 2").limit(5).hits().ids == \
            one.search(q).where("cat = 2").limit(5).hits().ids


def test_a_merge_by_add_keeps_rows_codes_and_keyword_results(tmp_db, rng, monkeypatch):
    monkeypatch.setattr(merge, "BLOCK_ROWS", 100)
    x = rng.standard_normal((1000, 16)).astype(np.float32)
    rows = _rows(x, 0, 1000, np.random.default_rng(3))
    many = tmp_db.create_table("many", dim=16)
    many.add(rows[:500])
    many.delete(ids=["r3", "r250", "r499"])
    many.add(rows[500:1000])  # merged with the first 500, the deleted rows dropped
    ((entry,), _) = _segments(many)
    assert entry.rows == 997 and entry.deleted == 0
    one = tmp_db.create_table("one", dim=16)
    one.add([r for r in rows if r["id"] not in ("r3", "r250", "r499")])
    assert many.to_arrow(with_vectors=True).sort_by("n").equals(
        one.to_arrow(with_vectors=True).sort_by("n"))
    _check_codes(many)
    for word in ("plum", "date lime"):
        assert [h["id"] for h in many.search(word, mode="keyword").limit(50).to_list()] == \
            [h["id"] for h in one.search(word, mode="keyword").limit(50).to_list()]


@pytest.mark.parametrize("sizes, limit, expected", [
    ([5, 5], 10, 2), ([5, 5], 9, 1), ([20, 10, 5, 5], 20, 3), ([20, 10, 5, 5], 40, 4),
    ([100, 100, 50, 50], 100, 2), ([1000, 1], 100, 1), ([40, 60], 50, 1),
])
def test_merge_count_stops_at_the_limit(sizes, limit, expected):
    assert merge_count(sizes, limit) == expected


def test_adds_never_rewrite_a_segment_at_the_cap(tmp_db, rng, monkeypatch):
    # a cap of 300 rows of this table's size (the real one is 2 GiB, ~1M rows of 384-d vectors)
    row = writer.segment_row_bytes(tmp_db.create_table("probe", dim=8)._current().manifest.config)
    monkeypatch.setattr(writer, "MAX_MERGED_SEGMENT_BYTES", 300 * row, raising=False)
    x = rng.standard_normal((2000, 8)).astype(np.float32)
    tbl = tmp_db.create_table("t", dim=8)
    seen: dict[str, int] = {}  # segment file -> the add that wrote it
    rewritten = []
    for i in range(40):
        before = {e.data.path for e in _segments(tbl)[0]}
        tbl.add([{"id": str(j), "vector": x[j]} for j in range(i * 50, i * 50 + 50)])
        entries = _segments(tbl)[0]
        new = [e for e in entries if e.data.path not in before]
        assert len(new) == 1
        rewritten.append(new[0].rows)
        assert all(e.rows <= 300 for e in entries)
        for e in entries:
            seen.setdefault(e.data.path, i)
    assert max(rewritten) <= 300  # no add rewrote more than the cap, however large the table
    full = [e for e in _segments(tbl)[0] if e.rows > 150]
    assert len(full) >= 6  # the table grows by segments of about the cap, left alone
    assert len(tbl) == 2000
    assert tbl.search(x[1234]).limit(1).hits().ids == ["1234"]


def test_a_merge_holds_a_block_not_the_merged_vectors(tmp_db, rng, monkeypatch):
    # NumPy reports its allocations to tracemalloc: a merge that gathered the merged rows'
    # vectors (as merges did) peaks above their size; one that streams holds a few blocks
    monkeypatch.setattr(merge, "BLOCK_ROWS", 256)
    dim, sizes = 128, (8192, 4096, 2048, 1024, 512, 512)
    x = rng.standard_normal((sum(sizes), dim)).astype(np.float32)
    tbl = tmp_db.create_table("t", dim=dim)
    start = 0
    for size in sizes:
        rows = pa.table({"id": [str(j) for j in range(start, start + size)],
                         "vector": list(x[start:start + size])})
        start += size
        if size == sizes[-1] and len(_segments(tbl)[0]) == len(sizes) - 1:
            tracemalloc.start()
            try:
                tbl.add(rows)  # a binary counter's carry: merges every segment with these rows
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
        else:
            tbl.add(rows)
    assert len(_segments(tbl)[0]) == 1 and len(tbl) == sum(sizes)
    merged_bytes = sum(sizes) * dim * 4
    assert peak < merged_bytes / 2, f"peak {peak:,} B for {merged_bytes:,} B of merged vectors"


def test_a_merged_file_is_the_file_one_write_makes_with_its_calibration(tmp_db, rng, monkeypatch):
    # the columns come from memory-mapped temporary files, written block by block; the bytes
    # are those of the in-memory writer given the same rows and calibration
    monkeypatch.setattr(merge, "BLOCK_ROWS", 100)
    x = rng.standard_normal((700, 16)).astype(np.float32)
    tbl = tmp_db.create_table("t", dim=16)
    rows = [{"id": f"r{j}", "vector": x[j], "n": j, "text": "a b" if j % 3 else None}
            for j in range(700)]
    tbl.add(rows[:350])
    tbl.add(rows[350:])
    (entry,), (seg,) = _segments(tbl)
    table_dir = tbl._current().table_dir
    ref = write_segment(table_dir, seg.table.column("id").combine_chunks(),
                        seg.table.select(["n", "text"]), seg.vectors().copy(),
                        normalize_rows(seg.vectors()), seg.quantizer)
    assert (table_dir / entry.data.path).read_bytes() == (table_dir / ref.path).read_bytes()
