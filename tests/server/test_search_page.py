"""The search page at ``/`` and the API page at ``/docs`` in a real headless Chromium (Debian's
``chromium``, driven by playwright; ``make test`` installs it when apt is there). Nothing the
pages load may come from outside the server."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

import vecstore

from .harness import KEY, ThreadServer

CHROMIUM = os.environ.get("VECSTORE_CHROMIUM", "/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

DOCS = [
    {
        "id": "meeting-1",
        "team": "blue",
        "text": "The design team met about the remote control. " * 5
        + "\n\n"
        + "Battery cost and the button interface were the decision points of the meeting. " * 4
        + "\n\n"
        + "The project budget was the last point on the agenda. " * 5,
    },
    {"id": "meeting-2", "team": "red", "text": "The market report and the user interface summary. " * 8},
    {
        "id": "hostile",
        "team": "red",
        "text": '<img src=x onerror="window.__pwned=1"> <script>window.__pwned=2</script> battery ' * 6,
    },
]


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(
            f"NO BROWSER: {CHROMIUM} is missing, so the search page is NOT tested; install it "
            f"with `apt-get install -y chromium` (make test does when apt is available)"
        )
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is part of the dev extra")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory, server_model_dir):
    from vecstore.server import ServerSettings

    store = tmp_path_factory.mktemp("page") / "store"
    db = vecstore.connect(store)
    tbl = db.create_table("meetings", embedder=str(server_model_dir))
    tbl.add_documents(DOCS, chunking="naive", chunk_tokens=24, overlap=4)
    db.create_table("plain", dim=2).add([{"id": "p", "vector": [1, 0]}])
    srv = ThreadServer(store, ServerSettings(api_key=KEY)).start()
    yield srv, tbl
    srv.stop()


@pytest.fixture
def page(browser, page_server):
    srv, _ = page_server
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    pg = context.new_page()
    foreign: list[str] = []
    pg.on(
        "request",
        lambda r: None if r.url.startswith(srv.url) or r.url.startswith("data:") else foreign.append(r.url),
    )
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not foreign, f"the page loaded something from outside the server: {foreign}"
    assert not errors, f"JavaScript errors: {errors}"


def wait_until(pg, check, what: str, timeout_s: float = 30) -> None:
    """Poll ``check()`` (wait_for_function would need 'unsafe-eval', which the page's CSP refuses)."""
    for _ in range(int(timeout_s / 0.05)):
        if check():
            return
        pg.wait_for_timeout(50)
    raise AssertionError(f"timed out waiting for {what}")


def open_with_key(pg, url):
    pg.goto(url + "/")
    pg.wait_for_selector("#error:not([hidden])")  # no key yet: the server says 401
    assert "AuthenticationError (401)" in pg.inner_text("#error")
    pg.fill("#key", KEY)
    pg.dispatch_event("#key", "change")
    wait_until(pg, lambda: len(pg.query_selector_all("#table option")) == 2, "the table list")


def test_search_page_shows_hits_with_their_source_span_and_the_plan(page, page_server):
    srv, tbl = page_server
    open_with_key(page, srv.url)
    page.select_option("#table", "meetings")
    wait_until(page, lambda: "rows" in page.inner_text("#table-info"), "the table's size")
    page.fill("#query", "battery and button cost")
    page.fill("#where", "team = 'blue'")
    page.fill("#k", "3")
    page.click("#go")
    page.wait_for_selector("#hits li")
    want = tbl.search("battery and button cost").where("team = 'blue'").limit(3).to_list()
    items = page.query_selector_all("#hits li")
    assert len(items) == len(want) == 3
    doc = DOCS[0]["text"]
    for li, h in zip(items, want, strict=True):
        assert li.query_selector(".hit-head code").inner_text() == h["id"]
        mark = li.query_selector("mark")
        assert mark.text_content() == h["text"] == doc[h["char_start"] : h["char_end"]]
        assert f"[{h['char_start']}:{h['char_end']}]" in li.inner_text()
        context = [c.text_content() for c in li.query_selector_all(".context")]
        if h["chunk_index"] > 0:  # the document text before the chunk, exactly
            assert context and doc[: h["char_start"]].endswith(context[0].lstrip("…"))
        strong = [e.text_content().lower() for e in li.query_selector_all("mark strong")]
        words = [
            w
            for w in ("battery", "button", "cost")  # "and" is a stop word; whole words only
            if re.search(rf"(?<![^\W_]){w}(?![^\W_])", h["text"].lower())
        ]
        assert sorted(set(strong)) == sorted(words)  # the query's words stand out
    assert page.inner_text("#plan-strategy") in ("exact-scan", "int8-scan", "two-stage-scan")
    assert "team = 'blue'" in page.text_content("#plan") and "selectivity" in page.text_content("#plan")
    if os.environ.get("VECSTORE_SCREENSHOT"):
        page.screenshot(path=os.environ["VECSTORE_SCREENSHOT"], full_page=True)


def test_search_page_shows_errors_and_never_runs_stored_text(page, page_server):
    srv, _ = page_server
    open_with_key(page, srv.url)
    page.select_option("#table", "meetings")
    page.fill("#query", "battery")
    page.fill("#where", "nope > 1")
    page.click("#go")
    page.wait_for_selector("#error:not([hidden])")
    assert "FilterError (400)" in page.inner_text("#error") and "unknown column 'nope'" in page.inner_text(
        "#error"
    )
    page.fill("#where", "doc_id = 'hostile'")
    page.click("#go")
    page.wait_for_selector("#hits li")
    assert "<script>" in page.inner_text("#hits") and "onerror" in page.inner_text("#hits")
    assert page.evaluate("window.__pwned") is None and not page.query_selector("#hits img, #hits script")
    # a table of plain vectors: the query is a JSON vector
    page.select_option("#table", "plain")
    page.fill("#where", "")
    page.fill("#query", "[1, 0.5]")
    page.click("#go")
    wait_until(page, lambda: len(page.query_selector_all("#hits li")) == 1, "one hit")
    assert page.inner_text("#hits li code") == "p" and page.is_hidden("#error")


def test_api_page_renders_from_local_files(page, page_server):
    srv, _ = page_server
    page.goto(srv.url + "/docs")
    page.wait_for_selector(".opblock", timeout=30_000)
    paths = page.eval_on_selector_all(".opblock-summary-path", "els => els.map(e => e.textContent)")
    assert "/tables/{name}/search" in " ".join(paths).replace("\u200b", "") and len(paths) >= 14
