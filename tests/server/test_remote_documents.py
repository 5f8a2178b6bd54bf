"""The document API through a real server: ``update``, ``documents``, ``add_documents`` (with
``prune``, ``keep`` and ``window``) and ``delete_documents`` of the remote client give what the
embedded API gives on a twin table, raise the same exception classes with the same messages,
and a refused request writes nothing."""

from __future__ import annotations

import datetime as dt
import uuid

import numpy as np
import pyarrow as pa
import pytest

import vecstore
from vecstore import FilterError, InvalidArgumentError, SchemaError
from vecstore.remote import RemoteDatabase

from .harness import KEY


def fresh(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def remote(live_server) -> RemoteDatabase:
    return vecstore.connect(live_server.url, api_key=KEY)


@pytest.fixture
def local(live_server) -> vecstore.Database:
    """The server's store, opened directly by this process."""
    return vecstore.connect(live_server.store)


def vectors(tbl) -> dict[str, bytes]:
    a = tbl.to_arrow(["id"], with_vectors=True)
    vec = np.asarray(a.column("vector").to_pylist(), dtype=np.float32)
    return {i: v.tobytes() for i, v in zip(a.column("id").to_pylist(), vec, strict=True)}


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


def test_update_over_http_is_the_embedded_update(local, remote, tmp_path, rng):
    name = fresh()
    rtbl = remote.create_table(name, dim=8)
    twin = vecstore.connect(tmp_path / "twin").create_table(name, dim=8)
    rows = [{"id": f"r{i}", "vector": rng.normal(size=8).astype(np.float32), "year": 2000 + i % 4,
             "tag": f"t{i % 3}", "when": dt.datetime(2024, 1, 1, 12) + dt.timedelta(hours=i)}
            for i in range(40)]
    rtbl.add(rows)
    twin.add(rows)
    served = local.open_table(name)
    before = vectors(served)
    ids = [f"r{i}" for i in range(40)]
    when = dt.datetime(2025, 6, 1, 8, 30, 15, 250000)
    for args, kwargs in [(({"tag": "new", "when": when}, "year = ?", 2001), {}),
                         (({"year": 1999},), {"ids": ["r3", "r4", "nope"]}),
                         (({"tag": None}, "year > ? AND tag = ?", 2001, "t2"), {"ids": "r0"}),
                         (({"year": 3000}, "year = 12345"), {})]:
        got, want = rtbl.update(*args, **kwargs), twin.update(*args, **kwargs)
        assert isinstance(got, int) and got == want
    assert rtbl.version == twin.version  # one commit per update, as embedded
    assert by_id(rtbl.get(ids)) == by_id(twin.get(ids))
    assert rtbl.count("tag = 'new'") == 10 and rtbl.get(["r1"])[0]["when"] == when
    assert vectors(served) == before  # every vector bit for bit

    # the same exception classes and messages; nothing written
    version = rtbl.version
    for args, kwargs, cls in [(({"yeer": 1}, "true"), {}, SchemaError),
                              (({"year": "soon"},), {"ids": ["r1"]}, SchemaError),
                              (({"vector": [1.0] * 8},), {"ids": ["r1"]}, InvalidArgumentError),
                              (({"id": "x"},), {"ids": ["r1"]}, InvalidArgumentError),
                              (({},), {"ids": ["r1"]}, InvalidArgumentError),
                              (([1],), {"ids": ["r1"]}, InvalidArgumentError),
                              (({"year": 1}, "yeer = 1"), {}, FilterError),
                              (({"year": 1},), {}, InvalidArgumentError)]:
        with pytest.raises(cls) as embedded:
            twin.update(*args, **kwargs)
        with pytest.raises(cls) as over_http:
            rtbl.update(*args, **kwargs)
        assert type(over_http.value) is type(embedded.value)
        assert str(over_http.value) == str(embedded.value)
    assert rtbl.version == version and by_id(rtbl.get(ids)) == by_id(twin.get(ids))


DOC = ("The design team met about the remote control and its battery. " * 5 + "\n\n"
       + "The budget of the project was the second point; the meeting ended late. " * 5)


def test_documents_over_http_are_the_embedded_documents(local, remote, tmp_path, server_model_dir):
    name = fresh()
    served = local.create_table(name, embedder=str(server_model_dir))
    rtbl = remote.open_table(name)
    twin = vecstore.connect(tmp_path / "twin").create_table(name, embedder=str(server_model_dir))
    docs = [{"id": f"d{i}", "text": DOC[i * 7:], "source": f"files/d{i}.txt", "team": "blue"}
            for i in range(4)]
    opts = dict(chunking="context", chunk_tokens=24, overlap=4, window={"window_tokens": 48})
    assert rtbl.documents().num_rows == 0 and rtbl.list_documents() == []
    got, want = rtbl.add_documents(docs, **opts), twin.add_documents(docs, progress=False, **opts)
    assert (got.documents, got.chunks, got.unchanged, got.pruned, got.remaining) == \
        (want.documents, want.chunks, want.unchanged, want.pruned, want.remaining) == \
        (4, want.chunks, 0, 0, 0)
    rdocs, tdocs = rtbl.documents(), twin.documents()
    assert rdocs.schema == tdocs.schema and rdocs.num_rows == 4
    for column in ("doc_id", "source", "chunks", "content_hash"):
        assert rdocs.column(column) == tdocs.column(column), column
    assert rdocs.column("ingested_at").to_pylist() == served.documents().column("ingested_at").to_pylist()
    assert rtbl.list_documents() == served.list_documents()

    # unchanged skipped; a sync prunes the documents not given, except those kept
    again = rtbl.add_documents(docs[:2], prune=True, keep=["files/d3.txt"], **opts)
    assert (again.documents, again.unchanged, again.pruned, again.commits) == (0, 2, 1, 1)
    assert [d["doc_id"] for d in rtbl.list_documents()] == ["d0", "d1", "d3"]

    version = rtbl.version
    assert rtbl.delete_documents(["d1", "nope"]) == 1 and rtbl.version == version + 1
    assert rtbl.delete_documents("d0") == 1 and rtbl.delete_documents(["nope"]) == 0
    assert [d["doc_id"] for d in rtbl.list_documents()] == ["d3"]
    assert rtbl.count("doc_id IN ('d0', 'd1')") == 0 and len(rtbl) == rdocs.column("chunks")[3].as_py()

    # refusals: the same classes and messages as embedded, nothing written
    version = rtbl.version
    for kwargs in [dict(window={"window_tokens": 0}), dict(window={"width": 3}), dict(commit_every=-1.5),
                   dict(chunking="sideways")]:
        with pytest.raises(InvalidArgumentError) as embedded:
            twin.add_documents(docs, progress=False, **{**opts, **kwargs})
        with pytest.raises(InvalidArgumentError) as over_http:
            rtbl.add_documents(docs, **{**opts, **kwargs})
        assert type(over_http.value) is type(embedded.value)
        assert str(over_http.value) == str(embedded.value)
    assert rtbl.version == version
    assert isinstance(rtbl.documents(), pa.Table)
