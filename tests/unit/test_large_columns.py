"""A large table's attribute columns are read segment by segment (no copy of the column by
global row, see ``vecstore.storage.snapshot.CONCATENATED_ROWS``) and give the same values,
every type, nulls, deleted rows and rows from several segments in one read."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pyarrow as pa

import vecstore
from vecstore.storage import snapshot

DIM = 8


def _batch(start: int, stop: int) -> pa.Table:
    n = stop - start
    rng = np.random.default_rng(start)
    return pa.table({
        "id": [f"r{i}" for i in range(start, stop)],
        "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(rng.standard_normal(n * DIM).astype(np.float32)), DIM),
        "n": pa.array(np.arange(start, stop, dtype=np.int64)),
        "x": pa.array(rng.random(n)),
        "flag": pa.array([i % 3 == 0 for i in range(start, stop)]),
        "note": pa.array([None if i % 5 == 0 else f"note {i}" for i in range(start, stop)]),
        "day": pa.array([dt.date(2020, 1, 1) + dt.timedelta(days=i) for i in range(start, stop)]),
        "tags": pa.array([[i, i + 1] if i % 4 else None for i in range(start, stop)],
                         type=pa.list_(pa.int64())),
    })


def test_columns_read_by_segment_equal_those_read_by_global_row(tmp_db: vecstore.Database,
                                                                monkeypatch) -> None:
    tbl = tmp_db.create_table("t", dim=DIM)
    for start, stop in ((0, 300), (300, 450), (450, 520)):  # shrinking: no merges
        tbl.add(_batch(start, stop))
    tbl.delete("n % 7 = 0")
    columns = ["id", "n", "x", "flag", "note", "day", "tags"]
    rows = np.random.default_rng(1).integers(0, 520, size=200).astype(np.int64)
    samples = [rows, np.sort(rows), np.array([5, 4], dtype=np.int64), rows[:0],
               np.array([460, 10, 310], dtype=np.int64)]  # one segment, none, three
    snap = tbl._current()
    assert len(snap.segments) == 3
    whole = [snap.rows_as_dicts(r, columns) for r in samples]
    monkeypatch.setattr(snapshot, "CONCATENATED_ROWS", 0)
    fresh = vecstore.connect(tmp_db.path).open_table("t")._current()  # its readers built anew
    assert isinstance(fresh._gatherer("note"), snapshot._BySegment)
    assert [fresh.rows_as_dicts(r, columns) for r in samples] == whole
    assert whole[2][0]["note"] is None and whole[2][1]["tags"] is None  # nulls kept


def test_lists_of_strings_read_the_same_once_coded(tmp_db: vecstore.Database) -> None:
    """A list-of-strings column drawn from a few values is coded after some reads
    (``_Lists.CODE_AFTER_TAKES``); its hits read the same before and after, as Arrow reads
    them: nulls inside a list and null lists, empty lists, rows of several segments, a read of
    many rows. A column of varied strings is left uncoded, and reads the same too."""
    words = ["crude", "earn", "grain", None, "ship", "trade"]
    tbl = tmp_db.create_table("t", dim=DIM)
    for start, stop in ((0, 300), (300, 450), (450, 520)):  # shrinking: no merges
        batch = _batch(start, stop)
        topics = [None if i % 11 == 0 else [] if i % 7 == 0 else
                  [words[(i + j) % len(words)] for j in range(1 + i % 3)] for i in range(start, stop)]
        unique = [[f"u{i}-{j}" for j in range(i % 3)] for i in range(start, stop)]
        tbl.add(batch.append_column("topics", pa.array(topics, type=pa.list_(pa.string())))
                .append_column("unique", pa.array(unique, type=pa.list_(pa.string()))))
    snap = tbl._current()
    assert len(snap.segments) == 3
    want_rows = pa.concat_tables([s.table.select(["topics", "unique"]) for s in snap.segments]).to_pylist()
    rng = np.random.default_rng(2)
    samples = [np.sort(rng.integers(0, 520, size=10)).astype(np.int64) for _ in range(60)]
    samples += [rng.integers(0, 520, size=200).astype(np.int64), np.array([460, 10, 310])]
    for rows in samples:
        got = snap.rows_as_dicts(rows, ["topics", "unique"])
        assert got == [want_rows[r] for r in rows.tolist()]
    topics, unique = snap._gatherer("topics"), snap._gatherer("unique")
    assert topics._words is not None and unique._words is None  # coded / too varied
    assert None in topics._words  # a null inside a list is a value of its own
    assert any(row["topics"] is None for row in want_rows)  # and null lists are there too
