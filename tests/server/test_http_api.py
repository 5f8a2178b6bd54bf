"""The JSON API over real HTTP on 127.0.0.1: auth, statuses and the error shape, every bad input
of docs/guarantees.md answered 4xx with nothing written, the body and row limits, the docs."""

from __future__ import annotations

import socket
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .harness import KEY, READ_KEY, request

DIM = 4


@pytest.fixture
def srv(live_server):
    return live_server


@pytest.fixture
def table(srv, request_name):
    """A fresh table of 4-d vectors with one row, named after the test."""
    call(srv, "DELETE", f"/tables/{request_name}", ok=(200, 404))
    call(srv, "POST", "/tables", {"name": request_name, "dim": DIM}, ok=(201,))
    call(
        srv,
        "POST",
        f"/tables/{request_name}/add",
        {"rows": [{"id": "a", "vector": [1, 2, 3, 4], "year": 2020, "lang": "en"}]},
    )
    return request_name


@pytest.fixture
def request_name(request):
    return "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name)[:60]


def call(srv, method, path, body=None, *, key=KEY, ok=(200,), **kw):
    status, headers, payload = request(srv.url, method, path, body, key=key, **kw)
    assert status in ok, (status, payload)
    return payload


def state(srv, name):
    """What a refused request must leave alone: the version, the rows and the files."""
    info = call(srv, "GET", f"/tables/{name}")
    files = sorted(p.name for p in (srv.store / name / "data").iterdir())
    return info["version"], info["rows"], files


def assert_error(srv, method, path, body, status, type_, match="", **kw):
    got, headers, payload = request(srv.url, method, path, body, **{"key": KEY, **kw})
    assert got == status, (got, payload)
    assert set(payload) == {"error"} and set(payload["error"]) == {"type", "message"}, payload
    assert payload["error"]["type"] == type_, payload
    assert match.lower() in payload["error"]["message"].lower(), payload
    return headers


def test_healthz_needs_no_key_and_every_other_route_does(srv, table):
    status, _, health = request(srv.url, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and "vector" in health["search_modes"]
    for method, path, body in [
        ("GET", "/tables", None),
        ("GET", f"/tables/{table}", None),
        ("POST", f"/tables/{table}/search", {"vector": [1, 0, 0, 0]}),
        ("GET", f"/tables/{table}/rows?ids=a", None),
    ]:
        headers = assert_error(srv, method, path, body, 401, "AuthenticationError", "API key", key=None)
        assert headers["www-authenticate"].startswith("Bearer")
        assert_error(srv, method, path, body, 401, "AuthenticationError", "not valid", key="wrong")
        assert_error(srv, method, path, body, 401, "AuthenticationError", "not valid", key=KEY + "x")
        assert_error(
            srv,
            method,
            path,
            body,
            401,
            "AuthenticationError",
            key=None,
            headers={"Authorization": f"Basic {KEY}"},
        )
        assert request(srv.url, method, path, body, key=READ_KEY)[0] == 200  # reads with either key


def test_refused_writes_write_nothing(srv, table):
    before = state(srv, table)
    row = {"rows": [{"id": "b", "vector": [1, 0, 0, 0]}]}
    assert_error(srv, "POST", f"/tables/{table}/add", row, 401, "AuthenticationError", key=None)
    assert_error(srv, "POST", f"/tables/{table}/add", row, 401, "AuthenticationError", key="nope")
    for method, path, body in [
        ("POST", f"/tables/{table}/add", row),
        ("POST", f"/tables/{table}/upsert", row),
        ("POST", f"/tables/{table}/delete", {"ids": ["a"]}),
        ("POST", f"/tables/{table}/update", {"values": {"year": 1}, "ids": ["a"]}),
        ("POST", f"/tables/{table}/delete_documents", {"doc_ids": ["a"]}),
        ("DELETE", f"/tables/{table}", None),
        ("POST", "/tables", {"name": table + "_new", "dim": 2}),
    ]:
        assert_error(srv, method, path, body, 403, "ReadOnlyError", "only read", key=READ_KEY)
    assert state(srv, table) == before
    assert table + "_new" not in call(srv, "GET", "/tables")["tables"]


def test_round_trip_of_every_route(srv, table):
    t = f"/tables/{table}"
    assert table in call(srv, "GET", "/tables")["tables"]
    info = call(srv, "GET", t)
    assert info["dim"] == DIM and info["metric"] == "cosine" and info["rows"] == 1
    assert info["columns"]["year"] == "int64" and info["embedder"] is None
    rows = [
        {
            "id": "b",
            "vector": [0, 1, 0, 0],
            "year": 2021,
            "lang": "de",
            "when": {"$datetime": "2024-01-31T12:00:00"},
        },
        {"id": "c", "vector": [0, 0, 1, 0], "year": 2022, "lang": "en"},
    ]
    assert call(srv, "POST", f"{t}/add", {"rows": rows}) == {"ids": ["b", "c"]}
    assert call(srv, "GET", f"{t}/count") == {"count": 3}
    assert call(srv, "POST", f"{t}/count", {"where": "year >= ? AND lang = ?", "params": [2021, "en"]}) == {
        "count": 1
    }
    got = call(srv, "GET", f"{t}/rows?ids=c&ids=b&ids=missing")["rows"]
    assert [r["id"] for r in got] == ["c", "b"] and got[1]["when"] == {"$datetime": "2024-01-31T12:00:00"}
    assert (
        len(call(srv, "POST", f"{t}/rows", {"ids": ["a"], "with_vectors": True})["rows"][0]["vector"]) == DIM
    )
    res = call(
        srv,
        "POST",
        f"{t}/search",
        {"vector": [0, 1, 0.1, 0], "k": 2, "where": "year > ?", "params": [2020], "select": ["lang"]},
    )
    assert [h["id"] for h in res["hits"]] == ["b", "c"] and set(res["hits"][0]) == {"id", "score", "lang"}
    assert (
        res["plan"]["strategy"] in ("exact-scan", "int8-scan", "two-stage-scan")
        and res["plan"]["matches"] == 2
    )
    batch = call(srv, "POST", f"{t}/search_batch", {"vectors": [[1, 0, 0, 0], [0, 0, 1, 0]], "k": 1})
    assert [r["hits"][0]["id"] for r in batch["results"]] == ["a", "c"]
    assert call(srv, "POST", f"{t}/upsert", {"rows": [{"id": "c", "vector": [1, 1, 1, 1]}]}) == {"ids": ["c"]}
    assert call(srv, "POST", f"{t}/rows", {"ids": ["c"]})["rows"][0]["year"] is None  # replaced whole
    assert call(srv, "POST", f"{t}/delete", {"where": "lang = ?", "params": ["de"], "ids": ["c"]}) == {
        "deleted": 2
    }
    assert call(srv, "GET", f"{t}/count") == {"count": 1}
    when = {"$datetime": "2024-02-29T06:00:00"}
    assert call(srv, "POST", f"{t}/update", {"values": {"lang": "fr", "when": when}, "where": "year < ?",
                                              "params": [2021]}) == {"updated": 1}
    assert call(srv, "POST", f"{t}/rows", {"ids": ["a"], "with_vectors": True})["rows"] == [
        {"id": "a", "vector": [1, 2, 3, 4], "year": 2020, "lang": "fr", "when": when}]
    assert call(srv, "GET", f"{t}/documents") == {"documents": []}  # rows of add() are no documents
    assert call(srv, "POST", f"{t}/delete_documents", {"doc_ids": ["a"]}) == {"deleted": 0}
    assert call(srv, "GET", f"{t}/count") == {"count": 1}
    assert call(srv, "DELETE", t) == {"dropped": table}
    assert_error(srv, "GET", t, None, 404, "NotFoundError", "does not exist")


BAD_ADDS = [
    # (rows, status, error type, part of the message): docs/guarantees.md section 5
    ([{"id": "x", "vector": [1, 2, 3]}], 400, "InvalidArgumentError", "shape"),
    ([{"id": "x", "vector": [1, 2, {"$float": "nan"}, 4]}], 400, "InvalidArgumentError", "NaN"),
    ([{"id": "x", "vector": [1, 2, {"$float": "inf"}, 4]}], 400, "InvalidArgumentError", "NaN or inf"),
    ([{"id": "x", "vector": [0, 0, 0, 0]}], 400, "InvalidArgumentError", "zeros"),
    ([{"id": "x", "vector": [1, 2, 3, 4], "year": "soon"}], 400, "SchemaError", "year"),
    ([{"id": "x", "vector": [1, 2, 3, 4], "lang": 5}], 400, "SchemaError", "lang"),
    ([{"id": "x", "vector": [1, 2, 3, 4], "_x": 1}], 400, "SchemaError", "reserved"),
    ([{"id": "x", "vector": [1, 2, 3, 4], "score": 1}], 400, "SchemaError", "reserved"),
    ([{"id": "x", "vector": [1, 2, 3, 4], "YEAR": 1}], 400, "SchemaError", "year"),
    ([{"id": "", "vector": [1, 2, 3, 4]}], 400, "InvalidArgumentError", "empty"),
    ([{"id": "x"}], 400, "InvalidArgumentError", "vector"),
    ([{"id": "x", "vector": "abcd"}], 400, "InvalidArgumentError", "vector"),
    ([{"id": "x", "vector": [1, 2, 3, 4], "nested": {"a": 1}}], 400, "SchemaError", "nested"),
    ([{"id": "x", "text": "no embedder here"}], 400, "InvalidArgumentError", "vector"),
    ([{"id": "a", "vector": [1, 2, 3, 4]}], 409, "DuplicateIdError", "upsert"),
    (
        [{"id": "y", "vector": [1, 2, 3, 4]}, {"id": "y", "vector": [1, 2, 3, 4]}],
        409,
        "DuplicateIdError",
        "twice",
    ),
    ("not rows", 400, "InvalidArgumentError", "list of dicts"),
    ([1, 2], 400, "InvalidArgumentError", ""),
    (
        [{"id": "x", "vector": [1, 2, 3, 4], "when": {"$datetime": "yesterday"}}],
        400,
        "InvalidArgumentError",
        "$datetime",
    ),
]


@pytest.mark.parametrize("rows,status,type_,match", BAD_ADDS, ids=range(len(BAD_ADDS)))
def test_bad_rows_are_refused_and_nothing_is_written(srv, table, rows, status, type_, match):
    before = state(srv, table)
    good = {"id": "ok", "vector": [4, 3, 2, 1]}
    batch = [good, *rows] if isinstance(rows, list) else rows
    for route in ("add", "upsert"):
        if route == "upsert" and type_ == "DuplicateIdError" and "twice" not in match:
            continue  # upsert replaces an existing id: not an error
        assert_error(srv, "POST", f"/tables/{table}/{route}", {"rows": batch}, status, type_, match)
        assert state(srv, table) == before


BAD_REQUESTS = [
    # (route, body, status, error type, part of the message)
    ("search", {"vector": [1, 2, 3]}, 400, "InvalidArgumentError", "shape"),
    ("search", {"vector": [1, 2, 3, {"$float": "nan"}]}, 400, "InvalidArgumentError", "NaN"),
    ("search", {"vector": [1, 0, 0, 0], "where": "yeer > 3"}, 400, "FilterError", "unknown column 'yeer'"),
    ("search", {"vector": [1, 0, 0, 0], "where": "year >"}, 400, "FilterError", ""),
    (
        "search",
        {"vector": [1, 0, 0, 0], "where": "read_csv('/etc/passwd') IS NOT NULL"},
        400,
        "FilterError",
        "",
    ),
    ("search", {"vector": [1, 0, 0, 0], "where": "(SELECT 1) = 1"}, 400, "FilterError", ""),
    ("search", {"vector": [1, 0, 0, 0], "where": "1=1; DROP TABLE x"}, 400, "FilterError", ""),
    ("search", {"vector": [1, 0, 0, 0], "where": "year > ?", "params": []}, 400, "FilterError", ""),
    ("search", {"vector": [1, 0, 0, 0], "select": ["nope"]}, 400, "InvalidArgumentError", "unknown column"),
    ("search", {"vector": [1, 0, 0, 0], "k": -1}, 400, "InvalidArgumentError", "limit"),
    ("search", {"vector": [1, 0, 0, 0], "k": 10**9}, 400, "InvalidArgumentError", "limit"),
    (
        "search",
        {"vector": [1, 0, 0, 0], "k": "5"},
        400,
        "InvalidArgumentError",
        "k: input should be a valid integer",
    ),
    ("search", {"vector": [1, 0, 0, 0], "k": True}, 400, "InvalidArgumentError", "k"),
    ("search", {"vector": [1, 0, 0, 0], "k": 5.0}, 400, "InvalidArgumentError", "k"),
    ("search", {"vector": ["1", 0, 0, 0]}, 400, "InvalidArgumentError", "vector.0"),
    ("search", {"vector": [1, 0, 0, 0], "oversample": 0}, 400, "InvalidArgumentError", "oversample"),
    ("search", {"vector": [1, 0, 0, 0], "filter": "year > 1"}, 400, "InvalidArgumentError", "filter: extra"),
    ("search", {"text": "no embedder"}, 400, "InvalidArgumentError", "embedder"),
    ("search", {}, 400, "InvalidArgumentError", "search takes 'text'"),
    ("search", {"vector": [1, 0, 0, 0], "mode": "keyword"}, 400, "InvalidArgumentError",
     "takes a text query"),
    ("search_batch", {"vectors": [[1, 0, 0]]}, 400, "InvalidArgumentError", "shape"),
    ("count", {"where": "nope = 1"}, 400, "FilterError", "unknown column"),
    ("count", {"where": 5}, 400, "InvalidArgumentError", "where"),
    ("delete", {}, 400, "InvalidArgumentError", "needs where= or ids="),
    ("delete", {"where": "yeer = 1"}, 400, "FilterError", "unknown column"),
    ("delete", {"ids": "a"}, 400, "InvalidArgumentError", "ids"),
    ("delete", {"ids": [1]}, 400, "InvalidArgumentError", "ids.0"),
    ("add", {}, 400, "InvalidArgumentError", "rows: field required"),
    (
        "documents",
        {"documents": [{"id": "d", "text": "x"}], "chunk_tokens": "9"},
        400,
        "InvalidArgumentError",
        "chunk_tokens",
    ),
    (
        "add",
        {"rows": [{"id": "x", "vector": [1, 2, 3, 4]}], "extra": 1},
        400,
        "InvalidArgumentError",
        "extra",
    ),
    ("rows", {"ids": "a"}, 400, "InvalidArgumentError", "ids"),
    ("documents", {"documents": [{"id": "d", "text": "x"}]}, 400, "InvalidArgumentError", "embedder"),
    ("documents", {"documents": [], "prune": "yes"}, 400, "InvalidArgumentError", "prune"),
    ("documents", {"documents": [], "window": [48]}, 400, "InvalidArgumentError", "window"),
    ("documents", {"documents": [], "keep": "a"}, 400, "InvalidArgumentError", "keep"),
    ("update", {}, 400, "InvalidArgumentError", "values: field required"),
    ("update", {"values": {"year": 2030}}, 400, "InvalidArgumentError", "needs where= or ids="),
    ("update", {"values": {"yeer": 1}, "where": "true"}, 400, "SchemaError", "no column 'yeer'"),
    ("update", {"values": {"year": "soon"}, "ids": ["a"]}, 400, "SchemaError", "'soon'"),
    ("update", {"values": {"year": {"$date": "2020-01-01"}}, "ids": ["a"]}, 400, "SchemaError", "year"),
    ("update", {"values": [1], "ids": ["a"]}, 400, "InvalidArgumentError", "dict of column"),
    ("update", {"values": {}, "ids": ["a"]}, 400, "InvalidArgumentError", "non-empty dict"),
    ("update", {"values": {"vector": [1, 2, 3, 4]}, "ids": ["a"]}, 400, "InvalidArgumentError",
     "cannot change 'vector'"),
    ("update", {"values": {"id": "b"}, "ids": ["a"]}, 400, "InvalidArgumentError", "cannot change 'id'"),
    ("update", {"values": {"year": 1}, "where": "yeer = 1"}, 400, "FilterError", "unknown column"),
    ("update", {"values": {"year": 1}, "ids": "a"}, 400, "InvalidArgumentError", "ids"),
    ("update", {"values": {"year": 1}, "ids": ["a"], "extra": 1}, 400, "InvalidArgumentError", "extra"),
    ("delete_documents", {}, 400, "InvalidArgumentError", "doc_ids: field required"),
    ("delete_documents", {"doc_ids": "a"}, 400, "InvalidArgumentError", "doc_ids"),
    ("delete_documents", {"doc_ids": [1]}, 400, "InvalidArgumentError", "doc_ids.0"),
]


@pytest.mark.parametrize("route,body,status,type_,match", BAD_REQUESTS, ids=range(len(BAD_REQUESTS)))
def test_bad_requests_are_4xx_and_write_nothing(srv, table, route, body, status, type_, match):
    before = state(srv, table)
    assert_error(srv, "POST", f"/tables/{table}/{route}", body, status, type_, match)
    assert state(srv, table) == before


@pytest.mark.parametrize(
    "raw,match",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"rows": [{"id": "x", "vector": [1, 2, 3, 4]}]', "invalid JSON"),
        (b'{"rows": [{"id": "x", "vector": [1, 2, NaN, 4]}]}', "NaN is not a JSON value"),
        (b'{"rows": [{"id": "x", "vector": [1, 2, Infinity, 4]}]}', "Infinity"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b"[]", "JSON object"),
        (b'"rows"', "JSON object"),
        (b"null", "JSON object"),
        (b"[" * 100_000, "invalid JSON"),
        (
            '{"rows": [{"id": "\ud800", "vector": [1, 2, 3, 4]}]}'.encode("utf-8", "surrogatepass"),
            "not UTF-8",
        ),
    ],
)
def test_malformed_bodies_are_400_and_write_nothing(srv, table, raw, match):
    before = state(srv, table)
    assert_error(srv, "POST", f"/tables/{table}/add", raw, 400, "InvalidArgumentError", match)
    assert state(srv, table) == before


def test_tables_routes_refuse_bad_names_and_settings(srv):
    for body, status, type_, match in [
        ({"name": "../x", "dim": 2}, 400, "InvalidArgumentError", "invalid table name"),
        ({"name": "a\x00b", "dim": 2}, 400, "InvalidArgumentError", "invalid table name"),
        ({"name": "ok_name", "dim": 0}, 400, "InvalidArgumentError", "dim"),
        ({"name": "ok_name", "dim": 2, "metric": "hamming"}, 400, "InvalidArgumentError", "metric"),
        ({"name": "ok_name"}, 400, "InvalidArgumentError", "dim"),
        ({"name": "ok_name", "embedder": "/etc"}, 400, "InvalidArgumentError", "not one this server loads"),
        ({"name": 5, "dim": 2}, 400, "InvalidArgumentError", "name"),
    ]:
        assert_error(srv, "POST", "/tables", body, status, type_, match)
    assert "ok_name" not in call(srv, "GET", "/tables")["tables"]
    call(srv, "POST", "/tables", {"name": "twice", "dim": 2, "exist_ok": True}, ok=(201,))
    assert_error(srv, "POST", "/tables", {"name": "twice", "dim": 2}, 409, "AlreadyExistsError", "exists")
    assert call(srv, "POST", "/tables", {"name": "twice", "dim": 2, "exist_ok": True}, ok=(201,))["dim"] == 2
    assert_error(
        srv,
        "POST",
        "/tables",
        {"name": "twice", "dim": 3, "exist_ok": True},
        409,
        "AlreadyExistsError",
        "other settings",
    )
    for path in ("/tables/..%2Fx", "/tables/%2E%2E", "/tables/nope", "/tables/nope/count"):
        got, _, payload = request(srv.url, "GET", path, key=KEY)
        assert got in (400, 404) and payload["error"]["type"] in ("InvalidArgumentError", "NotFoundError")
    assert_error(srv, "GET", "/no/such/route", None, 404, "NotFoundError", "no route")
    assert_error(srv, "PUT", "/tables", None, 405, "InvalidArgumentError", "no route")
    assert_error(
        srv, "POST", "/tables/nope/search", {"vector": [1, 0]}, 404, "NotFoundError", "does not exist"
    )
    call(srv, "DELETE", "/tables/twice")


def test_too_many_rows_is_413(live_server, tmp_path):
    from vecstore.server import ServerSettings

    from .harness import ThreadServer

    srv = ThreadServer(tmp_path / "store", ServerSettings(max_rows=3)).start()
    try:
        call(srv, "POST", "/tables", {"name": "t", "dim": 2}, key=None, ok=(201,))
        rows = [{"id": str(i), "vector": [1, i]} for i in range(4)]
        headers = assert_error(
            srv, "POST", "/tables/t/add", {"rows": rows}, 413, "InvalidArgumentError", "at most 3", key=None
        )
        assert headers.get("connection") == "close"
        assert_error(
            srv,
            "POST",
            "/tables/t/rows",
            {"ids": list("abcd")},
            413,
            "InvalidArgumentError",
            "4 ids",
            key=None,
        )
        assert call(srv, "POST", "/tables/t/add", {"rows": rows[:3]}, key=None)["ids"] == ["0", "1", "2"]
    finally:
        srv.stop()


def test_a_50_mb_body_is_refused_before_it_is_read(srv, table):
    """The 413 arrives after the headers alone: the server never waits for (or buffers) the
    body. Then the same with the body streamed without a Content-Length (chunked)."""
    before = state(srv, table)
    size = 50 * 1024 * 1024
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(
            (
                f"POST /tables/{table}/add HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
            ).encode()
        )
        head = _read_response(s)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert b"over this server's limit" in head and b"connection: close" in head.lower()

    chunk = b"[" + b"1," * (1024 * 1024 // 2)
    sent = 0
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as s:
        s.sendall(
            (
                f"POST /tables/{table}/add HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
                f"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        try:
            while sent < size:
                s.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed: it stopped reading
        head = _read_response(s)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    assert sent < size, "the server read the whole 50 MB before refusing it"
    assert state(srv, table) == before


def _read_response(s: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 30
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        try:
            part = s.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not part or time.monotonic() > deadline:
            break
        data += part
    return data


def test_openapi_and_docs_are_served_locally(srv):
    status, _, spec = request(srv.url, "GET", "/openapi.json")
    assert status == 200 and spec["openapi"].startswith("3.0")
    assert {"/tables", "/tables/{name}/search", "/tables/{name}/add", "/healthz", "/tables/{name}/update",
            "/tables/{name}/documents", "/tables/{name}/delete_documents"} <= set(spec["paths"])
    assert set(spec["paths"]["/tables/{name}/documents"]) == {"get", "post"}
    update = spec["paths"]["/tables/{name}/update"]["post"]["requestBody"]["content"]["application/json"]
    assert {"values", "where", "params", "ids"} <= set(update["schema"]["properties"])
    search = spec["paths"]["/tables/{name}/search"]["post"]
    assert "vector" in search["requestBody"]["content"]["application/json"]["schema"]["properties"]
    assert search["security"] == [{"bearer": []}]
    status, _, html = request(srv.url, "GET", "/docs")
    assert (
        status == 200
        and b"/docs-assets/swagger-ui-bundle.js" in html
        and b"http" not in html.split(b"<body>")[1]
    )
    assert request(srv.url, "GET", "/docs-assets/swagger-ui-bundle.js")[0] == 200


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)
FIELDS = [
    "rows",
    "ids",
    "where",
    "params",
    "vector",
    "text",
    "k",
    "select",
    "exact",
    "oversample",
    "documents",
    "name",
    "dim",
    "metric",
    "with_vectors",
    "vectors",
    "texts",
    "chunking",
    "mode",
    "fusion",
    "group_by",
    "per_group",
    "rerank",
    "highlight",
    "$datetime",
    "$float",
    "older_than",
    "keep_last",
    "values",
    "doc_ids",
    "window",
    "prune",
    "keep",
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(
        ["add", "upsert", "delete", "search", "search_batch", "count", "rows", "documents", "cleanup",
         "update", "delete_documents"]
    ),
    body=st.dictionaries(st.sampled_from(FIELDS), JSON, max_size=4) | JSON,
)
def test_random_bodies_never_get_a_5xx(srv, table, route, body):
    status, _, payload = request(srv.url, "POST", f"/tables/{table}/{route}", body, key=KEY)
    assert status < 500, (status, payload)
    if status >= 400:
        assert set(payload["error"]) == {"type", "message"}
