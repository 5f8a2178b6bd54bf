"""The remote client against a real server: the same results as the embedded API on the same
store, the same exception classes, values that survive JSON, text and documents embedded by
the server, connections the server closed, the CLI pointed at a URL."""

from __future__ import annotations

import datetime as dt
import http.server
import json
import math
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import numpy as np
import pytest
from click.testing import CliRunner

import vecstore
from vecstore import (
    AuthenticationError,
    FilterError,
    IngestReport,
    InvalidArgumentError,
    NotFoundError,
    Plan,
    ReadOnlyError,
    RemoteError,
)
from vecstore.remote import RemoteDatabase, RemoteTable

from .harness import KEY, READ_KEY, ThreadServer, free_port


def fresh(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def remote(live_server) -> RemoteDatabase:
    db = vecstore.connect(live_server.url, api_key=KEY)
    assert isinstance(db, RemoteDatabase)
    return db


@pytest.fixture
def local(live_server) -> vecstore.Database:
    """The server's store, opened directly by this process (a second handle on the same files)."""
    return vecstore.connect(live_server.store)


def test_errors_come_back_as_the_same_classes(live_server, remote, monkeypatch):
    name = fresh()
    tbl = remote.create_table(name, dim=2)
    assert isinstance(tbl, RemoteTable) and tbl.dim == 2 and tbl.metric.value == "cosine"
    with pytest.raises(AuthenticationError) as err:
        vecstore.connect(live_server.url).table_names()  # /healthz needs no key; the rest does
    assert isinstance(err.value, PermissionError)
    with pytest.raises(AuthenticationError):
        vecstore.connect(live_server.url, api_key="wrong").open_table(name)
    monkeypatch.setenv("VECSTORE_API_KEY", READ_KEY)
    reader = vecstore.connect(live_server.url)  # the key from the environment
    assert name in reader.table_names()
    with pytest.raises(ReadOnlyError) as ro:
        reader.open_table(name).add([{"id": "a", "vector": [1, 0]}])
    assert isinstance(ro.value, PermissionError) and len(tbl) == 0
    with pytest.raises(NotFoundError) as nf:
        remote.open_table("no_such_table")
    assert isinstance(nf.value, KeyError) and "no_such_table" in str(nf.value)
    with pytest.raises(FilterError, match="unknown column 'nope'"):
        tbl.count("nope > 1")
    with pytest.raises(InvalidArgumentError, match="shape"):
        tbl.search([1, 2, 3])  # checked before anything is sent, as locally
    remote.drop_table(name)
    with pytest.raises(NotFoundError):
        remote.drop_table(name)
    remote.drop_table(name, missing_ok=True)


def test_unreachable_or_foreign_servers_raise_remote_error():
    with pytest.raises(RemoteError) as err:
        vecstore.connect(f"http://127.0.0.1:{free_port()}")
    assert isinstance(err.value, ConnectionError)

    class NotVecstore(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"<html>proxy error</html>"
            self.send_response(502)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    httpd = http.server.HTTPServer(("127.0.0.1", 0), NotVecstore)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RemoteError, match="502.*not a vecstore error"):
            vecstore.connect(f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
    for bad in ("ftp://x", "http://", "http://h:1/?q=1"):
        with pytest.raises(InvalidArgumentError):
            RemoteDatabase(bad)


def rows_for(rng, n, dim, start=0):
    langs = ["en", "de", "fr"]
    return [
        {
            "id": f"r{i}",
            "vector": rng.normal(size=dim).astype(np.float32),
            "year": 1990 + i % 35,
            "lang": langs[i % 3],
            "when": dt.datetime(2020, 1, 1) + dt.timedelta(hours=i),
            "tags": ["a", "b"] if i % 5 == 0 else ["c"],
        }
        for i in range(start, start + n)
    ]


def test_results_equal_the_embedded_api(local, remote, rng):
    """The same store searched locally and through the server: ids and order equal, scores
    within float32 rounding, attributes equal (timestamps come back as datetimes), same plan."""
    name = fresh()
    ltbl = local.create_table(name, dim=32)
    ltbl.add(rows_for(rng, 3000, 32))
    rtbl = remote.open_table(name)
    assert len(rtbl) == len(ltbl) == 3000 and rtbl.version == ltbl.version
    chains = [
        lambda q: q.limit(10),
        lambda q: q.where("year >= ? AND lang = ?", 2010, "en").limit(20),
        lambda q: (
            q.where("list_contains(tags, 'a') OR \"when\" < ?", dt.datetime(2020, 1, 3)).limit(15).exact()
        ),
        lambda q: q.rescore(oversample=64).limit(5).select("lang", "when"),
        lambda q: q.where("year = 1990").limit(1000),
        lambda q: q.where("lang = 'none'").limit(5),
    ]
    for _ in range(4):
        v = rng.normal(size=32).astype(np.float32)
        for chain in chains:
            want, got = chain(ltbl.search(v)).hits(), chain(rtbl.search(v)).hits()
            assert got.ids == want.ids
            np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=1e-6)
            strip = [{k: x for k, x in h.items() if k != "score"} for h in want.to_list()]
            assert [{k: x for k, x in h.items() if k != "score"} for h in got.to_list()] == strip
            assert got.to_arrow().column_names == want.to_arrow().column_names
            assert got.plan.strategy == want.plan.strategy and got.plan.matches == want.plan.matches
    explain = rtbl.search(v).where("year > 2000").limit(3).explain()
    assert isinstance(explain, Plan) and "selectivity" in str(explain)
    assert rtbl.count("lang = ?", "de") == ltbl.count("lang = ?", "de")
    ids = [f"r{i}" for i in (7, 3, 2999, 123456)]
    assert rtbl.get(ids, with_vectors=True) == ltbl.get(ids, with_vectors=True)
    many = [f"r{i}" for i in range(2000)]  # too long for a URL: sent as a POST body
    assert rtbl.get(many) == ltbl.get(many)
    queries = rng.normal(size=(6, 32)).astype(np.float32)
    assert [h.ids for h in rtbl.search_batch(queries).where("year < 2000").limit(4).hits()] == [
        h.ids for h in ltbl.search_batch(queries).where("year < 2000").limit(4).hits()
    ]
    # writes through either handle are seen by the other
    rtbl.upsert([{"id": "r7", "vector": v, "year": 3000}])
    assert ltbl.search(v).limit(1).to_list()[0]["year"] == 3000
    assert rtbl.delete("year = ?", 3000) == 1 and len(ltbl) == 2999


def test_values_survive_the_wire(local, remote):
    """Dates, aware timestamps, decimals, NaN and infinite attributes, big integers, unicode and
    lists come back from the server as the embedded API returns them."""
    name_r, name_l = fresh("r"), fresh("l")
    rtbl, ltbl = remote.create_table(name_r, dim=3), local.create_table(name_l, dim=3)
    utc = dt.timezone.utc
    rows = [
        {
            "id": "a",
            "vector": np.array([1, 2, 3], np.float32),
            "d": dt.date(2024, 2, 29),
            "ts": dt.datetime(2024, 1, 31, 12, 0, 0, 123456),
            "tz": dt.datetime(2024, 1, 1, tzinfo=utc),
            "price": Decimal("12.50"),
            "x": float("nan"),
            "big": 2**62,
            "ok": True,
            "s": 'naïve ☃ 𝄞 \u0000 "quoted"',
            "tags": ["x", "y"],
            "nums": [1, 2, 3],
        },
        {
            "id": "b",
            "vector": [0.5, float(np.float32(0.1)), 3],
            "d": None,
            "ts": None,
            "tz": None,
            "price": Decimal("-0.01"),
            "x": float("inf"),
            "big": -(2**62),
            "ok": False,
            "s": "",
            "tags": [],
            "nums": None,
        },
    ]
    assert rtbl.add(rows) == ltbl.add(rows) == ["a", "b"]

    def same(x, y):
        if isinstance(x, float) and isinstance(y, float) and math.isnan(x):
            return math.isnan(y)
        if isinstance(x, list) and isinstance(y, list):
            return len(x) == len(y) and all(same(a, b) for a, b in zip(x, y, strict=True))
        return type(x) is type(y) and x == y

    got, want = rtbl.get(["a", "b"], with_vectors=True), ltbl.get(["a", "b"], with_vectors=True)
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for key in w:
            assert same(g[key], w[key]), (key, g[key], w[key])
    assert rtbl.count("x IS NOT NULL AND isnan(x)") == 1
    assert rtbl.count('"ts" > ?', dt.datetime(2024, 1, 31)) == 1
    assert rtbl.count("price > ?", Decimal("0")) == 1
    with pytest.raises(InvalidArgumentError, match="NaN"):
        rtbl.add([{"id": "c", "vector": [1, float("nan"), 3]}])  # refused by the server, as locally
    columns = {"id": ["c", "d"], "vector": np.eye(3, dtype=np.float32)[:2], "nums": [[4], None]}
    assert rtbl.add(columns) == ltbl.add(columns) == ["c", "d"]  # a dict of columns, as locally
    assert rtbl.get(["c", "d"], with_vectors=True) == ltbl.get(["c", "d"], with_vectors=True)
    with pytest.raises(InvalidArgumentError, match="NaN"):
        rtbl.search([1, float("nan"), 3])


def test_text_and_documents_are_embedded_by_the_server(live_server, local, remote, server_model_dir):
    name = fresh()
    ltbl = local.create_table(name, embedder=str(server_model_dir))
    rtbl = remote.open_table(name)
    assert rtbl.config.embedder == str(server_model_dir.resolve())
    assert rtbl.add(
        [
            {"id": "a", "text": "the remote control has a big battery"},
            {"id": "b", "text": "the budget meeting minutes", "team": "red"},
        ]
    ) == ["a", "b"]
    doc = (
        "The design team met about the remote control. " * 6
        + "\n\n"
        + "Battery cost and the button interface were the decision points. " * 6
    )
    report = rtbl.add_documents(
        [{"id": "doc1", "text": doc, "team": "blue"}], chunking="naive", chunk_tokens=32, overlap=4
    )
    assert isinstance(report, IngestReport) and report.documents == 1 and report.chunks >= 2
    hits = rtbl.search("battery button cost").where("team = ?", "blue").limit(3).to_list()
    assert 1 <= len(hits) <= 3
    for h in hits:
        assert h["doc_id"] == "doc1" and doc[h["char_start"] : h["char_end"]] == h["text"]
    assert [h["id"] for h in hits] == [
        h["id"] for h in ltbl.search("battery button cost").where("team = ?", "blue").limit(3).to_list()
    ]
    texts = ["battery", "budget minutes", "design team remote"]
    assert [h.ids for h in rtbl.search_batch(texts).limit(2).hits()] == [
        h.ids for h in ltbl.search_batch(texts).limit(2).hits()
    ]

    # the model is shared by concurrent requests
    want = [h["id"] for h in ltbl.search("remote battery").limit(5).to_list()]

    def one(i: int) -> list[str]:
        db = vecstore.connect(live_server.url, api_key=KEY)
        return [h["id"] for h in db.open_table(name).search("remote battery").limit(5).to_list()]

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(one, range(16))) == [want] * 16

    with pytest.raises(InvalidArgumentError, match="empty"):
        rtbl.add([{"id": "e", "text": "  "}])
    with pytest.raises(InvalidArgumentError, match="not one this server loads"):
        remote.create_table(fresh(), embedder=str(server_model_dir))  # not allowed by --model
    with pytest.raises(InvalidArgumentError, match="not an object"):
        remote.create_table(fresh(), embedder=object())
    with pytest.raises(InvalidArgumentError, match="takes no schema= or data="):  # rows in dim's place
        remote.create_table(fresh(), [{"id": "r", "text": "rows are added after"}])


def test_empty_documents_are_reported_not_stored(local, remote, server_model_dir):
    name = fresh()
    local.create_table(name, embedder=str(server_model_dir))
    rtbl = remote.open_table(name)
    report = rtbl.add_documents([{"id": "e", "text": "   "}, {"id": "ok", "text": "the meeting minutes"}])
    assert report.documents == 1 and report.skipped == (("e", "empty text"),) and len(rtbl) == report.chunks
    with pytest.raises(InvalidArgumentError):
        rtbl.add_documents([{"id": "x"}])  # no text at all
    assert rtbl.count("doc_id = 'x'") == 0


def test_connections_the_server_closed_are_replaced(tmp_path):
    from vecstore.server import ServerSettings

    srv = ThreadServer(tmp_path / "store", ServerSettings(), keep_alive_s=1).start()
    try:
        db = vecstore.connect(srv.url)
        tbl = db.create_table("t", dim=2)
        for i in range(3):
            time.sleep(1.3)  # the server has closed the idle keep-alive connection by now
            assert tbl.add([{"id": str(i), "vector": [1, i]}]) == [str(i)]
        assert len(tbl) == 3
    finally:
        srv.stop()


def test_bodies_over_the_servers_limit_are_refused_before_sending(tmp_path):
    from vecstore.server import ServerSettings

    srv = ThreadServer(tmp_path / "store", ServerSettings(max_body_bytes=64 * 1024)).start()
    try:
        tbl = vecstore.connect(srv.url).create_table("t", dim=64)
        rows = [{"id": str(i), "vector": np.ones(64, np.float32) / (i + 1)} for i in range(200)]
        with pytest.raises(InvalidArgumentError, match="limit of 65,536 bytes"):
            tbl.add(rows)
        assert len(tbl) == 0
        assert len(tbl.add(rows[:20])) == 20
    finally:
        srv.stop()


def test_the_cli_reads_a_server(live_server, local):
    from vecstore.cli import cli

    name = fresh()
    local.create_table(name, dim=2).add(
        [{"id": "a", "vector": [1, 0], "n": 1}, {"id": "b", "vector": [0, 1], "n": 2}]
    )
    runner = CliRunner()
    out = runner.invoke(
        cli,
        [
            "search",
            live_server.url,
            name,
            "[1, 0.2]",
            "--vector",
            "--api-key",
            KEY,
            "--where",
            "n >= 1",
            "-k",
            "2",
        ],
    )
    assert out.exit_code == 0, out.output
    assert [json.loads(x)["id"] for x in out.stdout.splitlines()] == ["a", "b"]
    out = runner.invoke(cli, ["info", live_server.url, name], env={"VECSTORE_API_KEY": KEY})
    assert out.exit_code == 0 and json.loads(out.stdout)["columns"]["n"] == "int64"
    out = runner.invoke(cli, ["tables", live_server.url, "--api-key", "wrong"])
    assert out.exit_code == 1 and out.stderr.startswith("error: ") and "not valid" in out.stderr
