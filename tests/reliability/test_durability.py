"""Durability: a write that returned is on disk. Every file a commit publishes was fsynced under a
temporary name before it was renamed (or linked) into place, its directory was fsynced after, and
the manifest, the commit point, is published only once the data files it names are durable.

``os.fsync``, ``os.replace``, ``os.rename``, ``os.link`` and ``os.mkdir`` are wrapped to record,
in order, which path each call touched (an fsynced descriptor's path is read from /proc).
A table is created in a hidden directory that is renamed into place: what happened inside it
is recorded under its final path, and the rename is the event that creates the table directory.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import vecstore

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/fd")


@dataclass(frozen=True)
class Event:
    op: str  # fsync, replace, rename, link, mkdir
    path: str  # what was fsynced or created
    source: str = ""  # for replace/rename/link: the temporary file


class Recorder:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[Event] = []
        self.moves: list[tuple[int, str, str]] = []  # (event index, directory, moved to)
        fsync, replace, rename, link, mkdir = os.fsync, os.replace, os.rename, os.link, os.mkdir

        def rec_fsync(fd: int) -> None:
            self.events.append(Event("fsync", os.readlink(f"/proc/self/fd/{fd}")))
            fsync(fd)

        def moving(op: str, real):  # type: ignore[no-untyped-def]
            def wrapper(src, dst, *args, **kwargs):  # type: ignore[no-untyped-def]
                real(src, dst, *args, **kwargs)
                self.events.append(Event(op, os.path.realpath(dst), os.path.realpath(src)))
                if os.path.isdir(dst) and op != "link":
                    self.moves.append((len(self.events) - 1, os.path.realpath(src),
                                       os.path.realpath(dst)))
            return wrapper

        def rec_mkdir(path, *args, **kwargs):  # type: ignore[no-untyped-def]
            mkdir(path, *args, **kwargs)
            self.events.append(Event("mkdir", os.path.realpath(path)))

        monkeypatch.setattr(os, "fsync", rec_fsync)
        monkeypatch.setattr(os, "replace", moving("replace", replace))
        monkeypatch.setattr(os, "rename", moving("rename", rename))
        monkeypatch.setattr(os, "link", moving("link", link))
        monkeypatch.setattr(os, "mkdir", rec_mkdir)

    def index(self, op: str, path: str) -> list[int]:
        return [i for i, e in enumerate(self.events) if e.op == op and e.path == path]

    def resolve_moves(self) -> None:
        """Record what happened in a directory before it was renamed under its final path; the
        rename (not the directory's mkdir under its temporary name) is what created it."""
        def moved(path: str, src: str, dst: str) -> str:
            return dst + path[len(src):] if path == src or path.startswith(src + os.sep) else path

        for at, src, dst in self.moves:
            events = []
            for i, e in enumerate(self.events):
                if i < at and e.op != "fsync" and e.path == src:
                    # what made it under its temporary name; the placeholder keeps indexes valid
                    e = Event("fsync", "")
                elif i <= at:
                    e = Event(e.op, moved(e.path, src, dst), moved(e.source, src, dst))
                events.append(e)
            self.events = events
        self.moves = []


def tree(root: Path) -> set[str]:
    """Every file and directory under root except the lock files (they hold no data)."""
    return {os.path.realpath(p) for p in root.rglob("*") if not p.name.startswith("_lock")}


def check_durable(rec: Recorder, new: set[str]) -> dict[str, int]:
    """Each new entry: a file was fsynced under its temporary name before being moved into
    place; every new entry's directory was fsynced after the entry appeared. Returns the index
    of the event that published each entry."""
    rec.resolve_moves()
    published: dict[str, int] = {}
    problems = []
    for path in sorted(new):
        made = [i for i, e in enumerate(rec.events) if e.op != "fsync" and e.path == path]
        if len(made) != 1:
            problems.append(f"{path}: not created by exactly one rename/link/mkdir ({len(made)})")
            continue
        i = made[0]
        published[path] = i
        event = rec.events[i]
        if event.op != "mkdir":
            synced = rec.index("fsync", event.source)
            if not synced or min(synced) > i:
                problems.append(f"{path}: {event.op} into place before its temporary file was fsynced")
        parent = os.path.dirname(path)
        if not any(j > i for j in rec.index("fsync", parent)):
            problems.append(f"{path}: its directory {parent} was not fsynced after it appeared")
    assert problems == [], "\n".join(problems)
    return published


def rows(rng: np.random.Generator, ids: range) -> list[dict[str, object]]:
    return [{"id": f"r{i}", "vector": rng.normal(size=8), "n": i} for i in ids]


def table_with_data(tmp_path: Path, rng: np.random.Generator) -> vecstore.Table:
    tbl = vecstore.connect(tmp_path / "store").create_table("t", dim=8)
    tbl.add(rows(rng, range(0, 50)))
    tbl.add(rows(rng, range(50, 100)))
    return tbl


WRITES = {
    "add": lambda tbl, rng: tbl.add(rows(rng, range(100, 120))),
    "upsert": lambda tbl, rng: tbl.upsert(rows(rng, range(90, 110))),  # new segment + tombstones
    "delete": lambda tbl, rng: tbl.delete("n < ?", 10),
    "compact": lambda tbl, rng: (tbl.delete(ids=["r1"]), tbl.compact()),
}


@pytest.mark.parametrize("write", WRITES)
def test_a_returned_write_is_on_disk(tmp_path, rng, monkeypatch, write):
    tbl = table_with_data(tmp_path, rng)
    before = tree(tbl.path)
    version = tbl.version
    rec = Recorder(monkeypatch)
    WRITES[write](tbl, rng)
    monkeypatch.undo()
    after = tree(tbl.path)
    assert before <= after, "a write removed files"
    new = after - before
    assert not [p for p in new if ".tmp-" in p], "temporary files were left behind"
    published = check_durable(rec, new)

    versions_dir = os.path.realpath(tbl.path / "_versions")
    data_dir = os.path.realpath(tbl.path / "data")
    manifests = sorted(p for p in new if os.path.dirname(p) == versions_dir)
    data_files = sorted(p for p in new if os.path.dirname(p) == data_dir)
    assert [Path(m).name for m in manifests] == [f"{v:020d}.json"
                                                 for v in range(version + 1, tbl.version + 1)]
    assert data_files, "the write created no data file"
    assert all(p.endswith(".arrow") for p in data_files) and len(new) == len(manifests) + len(data_files)
    referenced: set[str] = set()
    for m in manifests:
        # The commit point: a manifest is published (by link, which cannot overwrite another
        # writer's version) only after the new data files it names and their directory are durable.
        commit = published[m]
        assert rec.events[commit].op == "link"
        mine = {os.path.realpath(tbl.path / ref["path"])
                for seg in json.loads(Path(m).read_text())["segments"]
                for ref in (seg["data"], seg["deletions"]) if ref} & set(data_files)
        for f in mine:
            assert published[f] < commit, f"{m} was published before the data file {f}"
            assert any(published[f] < j < commit for j in rec.index("fsync", data_dir)), \
                f"{m} was published before the data directory was fsynced after {f}"
        assert any(j > commit for j in rec.index("fsync", versions_dir))
        referenced |= mine
    assert referenced == set(data_files), "a data file no manifest names"

@pytest.mark.parametrize("data", [None, "rows"])
def test_create_table_publishes_a_durable_table(tmp_path, monkeypatch, data):
    db = vecstore.connect(tmp_path / "store")
    rec = Recorder(monkeypatch)
    db.create_table("t", dim=4, data=[{"id": "a", "vector": [1, 2, 3, 4]}] if data else None)
    monkeypatch.undo()
    store = os.path.realpath(tmp_path / "store")
    table = os.path.join(store, "t")
    # the table appears whole: its directory is renamed into place once everything in it
    # (manifest, data files, their directories) is durable, then the store is fsynced
    (appeared,) = [i for i, e in enumerate(rec.events) if e.path == table]
    assert rec.events[appeared].op == "rename"
    staging = rec.events[appeared].source
    assert os.path.dirname(staging) == store and os.path.basename(staging).startswith(".creating-")
    assert max(rec.index("fsync", store)) > appeared
    assert any(i < appeared for i in rec.index("fsync", staging))
    published = check_durable(rec, tree(tmp_path / "store"))
    manifest = os.path.join(table, "_versions", f"{1:020d}.json")
    assert rec.events[published[manifest]].op == "link"
    assert all(i < appeared for p, i in published.items() if p != table)
    assert vecstore.connect(tmp_path / "store").open_table("t").versions() == [1]


@pytest.mark.parametrize("step", ["create_table", "first add"])
def test_new_directories_are_fsynced_in_their_parent(tmp_path, monkeypatch, step):
    db = vecstore.connect(tmp_path / "store")
    tbl = None if step == "create_table" else db.create_table("t", dim=4)
    before = tree(tmp_path / "store")
    rec = Recorder(monkeypatch)
    if tbl is None:
        db.create_table("t", dim=4)
    else:
        tbl.add([{"id": "a", "vector": [1, 2, 3, 4]}])
    monkeypatch.undo()
    check_durable(rec, tree(tmp_path / "store") - before)
