"""Keyword and hybrid search, fusion, group_by and rerank over HTTP: the server and the remote
client give what the embedded API gives on the same store (ids and order equal, scores within
float32 rounding, the same plan), bad values are 400 with nothing written, and a reranker is
"feedback" or a CrossEncoder the operator allowed by name: never a path from the request, never
a callable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import assert_same_hits

import vecstore
from vecstore import InvalidArgumentError
from vecstore.remote import RemoteTable

from .harness import KEY, ThreadServer, request

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()


@pytest.fixture(scope="module")
def served(tmp_path_factory, server_model_dir):
    """A server allowed one CrossEncoder (``--reranker DIR``), over a table of chunk-like rows
    embedded with the tiny model; the local handle on the same table."""
    pytest.importorskip("sentence_transformers")
    from tiny_cross_encoder import build_tiny_cross_encoder

    from vecstore.server import ServerSettings

    base = tmp_path_factory.mktemp("modes")
    cross = build_tiny_cross_encoder(base / "tiny-cross", WORDS)
    store = base / "store"
    rng = np.random.default_rng(7)
    rows = []
    for d in range(25):
        for c in range(4):
            words = rng.choice(WORDS, size=int(rng.integers(3, 10)))
            rows.append({"id": f"d{d}#{c}", "doc_id": f"d{d}", "chunk_index": c, "text": " ".join(words),
                         "n": d * 4 + c, "rare": d in (3, 17)})
    local = vecstore.connect(store).create_table("chunks", embedder=str(server_model_dir))
    local.add(rows)
    vecstore.connect(store).create_table("plain", dim=2).add([{"id": "p", "vector": [1, 0], "text": "alpha"}])
    srv = ThreadServer(store, ServerSettings(api_key=KEY, rerankers=(str(cross),), warm=False)).start()
    remote = vecstore.connect(srv.url, api_key=KEY).open_table("chunks")
    yield srv, local, remote, cross
    srv.stop()


CHAINS = {
    "keyword": lambda t, q: t.search(q, mode="keyword"),
    "keyword, rare filter": lambda t, q: t.search(q, mode="keyword").where("rare AND n % ? <> 0", 3),
    "hybrid (default zscore)": lambda t, q: t.search(q, mode="hybrid"),
    "hybrid rrf k=5": lambda t, q: t.search(q, mode="hybrid").fusion("rrf", k=5),
    "hybrid weighted 0.8": lambda t, q: t.search(q, mode="hybrid").fusion("weighted", alpha=0.8),
    "hybrid zscore, 40 candidates": lambda t, q: t.search(q, mode="hybrid").fusion("zscore", candidates=40),
    "hybrid grouped": lambda t, q: t.search(q, mode="hybrid").group_by("doc_id").limit(6),
    "keyword 2 per group, select": lambda t, q: (
        t.search(q, mode="keyword").group_by("doc_id", per_group=2).select("doc_id").limit(4)),
    "vector grouped, filter": lambda t, q: t.search(q).where("n < ?", 60).group_by("doc_id"),
    "keyword + feedback": lambda t, q: t.search(q, mode="keyword").rerank("feedback", candidates=20),
    "hybrid + feedback": lambda t, q: t.search(q, mode="hybrid").rerank("feedback").limit(5),
    "vector + feedback, grouped": lambda t, q: t.search(q).rerank("feedback").group_by("doc_id"),
}


@pytest.mark.parametrize("chain", list(CHAINS))
def test_every_mode_gives_what_the_embedded_api_gives(served, chain):
    srv, local, remote, _ = served
    make = CHAINS[chain]
    found = 0
    for q in ("alpha gamma", "delta zeta zeta", "omicron"):
        want, got = make(local, q).hits(), make(remote, q).hits()
        found += len(want) > 0
        assert_same_hits(got, want)  # ids, order, attributes; scores within float32 rounding
        for field in ("mode", "strategy", "fusion", "group_by", "rerank", "matches", "k"):
            assert getattr(got.plan, field) == getattr(want.plan, field), field
        assert [r.name for r in got.plan.rankers] == [r.name for r in want.plan.rankers]
    assert found >= 2


def test_a_cross_encoder_the_server_allows_by_name(served):
    srv, local, remote, cross = served
    for mode in ("keyword", "hybrid", "vector"):
        want = local.search("alpha gamma", mode=mode).rerank(str(cross), candidates=15).limit(8).hits()
        got = remote.search("alpha gamma", mode=mode).rerank(cross.name, candidates=15).limit(8).hits()
        assert_same_hits(got, want, rtol=1e-4, atol=1e-5)
        assert got.plan.rerank == f"cross-encoder ({cross.name}) over the best 15"
    health = request(srv.url, "GET", "/healthz")[2]
    assert health["search_modes"] == ["vector", "keyword", "hybrid"]
    assert health["rerankers"] == ["feedback", cross.name]


def test_the_query_vector_may_come_with_the_text(served):
    """``vector=`` is sent with the text: the server embeds nothing, and the result is the one
    the embedded API gives for the same vector (and differs from the server's own embedding)."""
    _, local, remote, _ = served
    v = np.random.default_rng(1).normal(size=local.dim).astype(np.float32)
    for mode in ("vector", "hybrid"):
        want = local.search("alpha beta", mode=mode, vector=v).limit(7).hits()
        assert_same_hits(remote.search("alpha beta", mode=mode, vector=v).limit(7).hits(), want)
    own = remote.search("alpha beta").limit(7).hits()
    assert own.ids != local.search("alpha beta", vector=v).limit(7).hits().ids


def test_the_remote_client_refuses_what_cannot_cross_http(served):
    _, _, remote, cross = served
    assert isinstance(remote, RemoteTable)
    q = remote.search("alpha", mode="keyword")
    for reranker, what in ((lambda query, texts: [1.0] * len(texts), "function"), (object(), "object"),
                           (cross, "PosixPath"), ("", "str")):
        with pytest.raises(InvalidArgumentError, match=f"reranks on the server.*{what}"):
            q.rerank(reranker)
    with pytest.raises(InvalidArgumentError, match="fusion\\(\\) merges the rankings of a hybrid search"):
        remote.search("alpha").fusion("rrf")
    with pytest.raises(InvalidArgumentError, match="keyword search takes a text query"):
        remote.search(np.ones(remote.dim), mode="keyword")
    with pytest.raises(InvalidArgumentError, match="unknown search mode 'fuzzy'"):
        remote.search("alpha", mode="fuzzy")
    with pytest.raises(InvalidArgumentError, match="alpha must be a number in"):
        remote.search("alpha", mode="hybrid").fusion("weighted", alpha=3)
    # a name the server does not know: refused there, with the names it allows
    with pytest.raises(InvalidArgumentError, match=f"not one this server runs; use one of: 'feedback', "
                                                   f"'{cross.name}'"):
        q.rerank("ms-marco-MiniLM-L6-v2").to_list()


def _state(srv, name):
    info = request(srv.url, "GET", f"/tables/{name}", key=KEY)[2]
    files = sorted(p.name for p in (Path(srv.store) / name / "data").iterdir())
    return info["version"], info["rows"], files


BAD = [
    ({"text": "alpha", "mode": "fuzzy"}, "InvalidArgumentError", "unknown search mode 'fuzzy'"),
    ({"text": "alpha", "mode": 3}, "InvalidArgumentError", "mode"),
    ({"vector": [0.1] * 24, "mode": "keyword"}, "InvalidArgumentError", "takes a text query"),
    ({"text": "alpha", "fusion": {"kind": "rrf"}}, "InvalidArgumentError", "merges the rankings of a hybrid"),
    ({"text": "alpha", "mode": "hybrid", "fusion": {"kind": "max"}}, "InvalidArgumentError",
     "unknown fusion 'max'"),
    ({"text": "alpha", "mode": "hybrid", "fusion": {"kind": "rrf", "alpha": 0.5}}, "InvalidArgumentError",
     "'rrf' fuses ranks"),
    ({"text": "alpha", "mode": "hybrid", "fusion": {"kind": "weighted", "alpha": 1.5}},
     "InvalidArgumentError", "alpha must be a number in [0, 1]"),
    ({"text": "alpha", "mode": "hybrid", "fusion": {"kind": "rrf", "k": "60"}}, "InvalidArgumentError",
     "fusion.k"),
    ({"text": "alpha", "mode": "hybrid", "fusion": {"kind": "zscore", "candidates": 0}},
     "InvalidArgumentError", "candidates must be an integer"),
    ({"text": "alpha", "mode": "hybrid", "fusion": {"kind": "rrf", "weight": 1}}, "InvalidArgumentError",
     "fusion.weight: Extra inputs"),
    ({"text": "alpha", "group_by": "nope"}, "InvalidArgumentError", "unknown column 'nope'"),
    ({"text": "alpha", "group_by": "vector"}, "InvalidArgumentError", "name of an attribute column"),
    ({"text": "alpha", "group_by": "doc_id", "per_group": 0}, "InvalidArgumentError", "per_group"),
    ({"text": "alpha", "per_group": 2}, "InvalidArgumentError", "per_group goes with group_by"),
    ({"text": "alpha", "rerank": {"reranker": "/etc/passwd"}}, "InvalidArgumentError",
     "not one this server runs"),
    ({"text": "alpha", "rerank": {"reranker": "../tiny-cross"}}, "InvalidArgumentError",
     "not one this server runs"),
    ({"text": "alpha", "rerank": {"reranker": "feedback", "candidates": 0}}, "InvalidArgumentError",
     "candidates must be an integer"),
    ({"text": "alpha", "rerank": {"reranker": "feedback", "column": "nope"}}, "InvalidArgumentError",
     "unknown column"),
    ({"text": "alpha", "rerank": "feedback"}, "InvalidArgumentError", "rerank"),
    ({"text": "   ", "mode": "keyword"}, "InvalidArgumentError", "empty"),
    ({}, "InvalidArgumentError", "search takes 'text'"),
]


@pytest.mark.parametrize("body,type_,match", BAD, ids=range(len(BAD)))
def test_bad_search_values_are_400_and_write_nothing(served, body, type_, match):
    srv = served[0]
    before = _state(srv, "chunks")
    status, _, payload = request(srv.url, "POST", "/tables/chunks/search", body, key=KEY)
    assert status == 400, payload
    assert payload["error"]["type"] in type_.split("|"), payload
    assert match in payload["error"]["message"], payload
    assert _state(srv, "chunks") == before


def test_an_allowed_reranker_is_named_never_given_as_a_path(served):
    srv, _, _, cross = served
    for name in (str(cross), str(cross) + "/", f"{cross.parent}/../{cross.parent.name}/{cross.name}"):
        status, _, payload = request(srv.url, "POST", "/tables/chunks/search",
                                     {"text": "alpha", "rerank": {"reranker": name}}, key=KEY)
        assert status == 400 and "not one this server runs" in payload["error"]["message"], payload


def test_keyword_search_needs_no_embedder_and_hybrid_says_what_is_missing(served):
    srv = served[0]
    plain = vecstore.connect(srv.url, api_key=KEY).open_table("plain")
    assert plain.search("alpha", mode="keyword").to_list()[0]["id"] == "p"
    with pytest.raises(InvalidArgumentError, match="hybrid search embeds the query text, but this table "
                                                   "has no embedder"):
        plain.search("alpha", mode="hybrid").to_list()
    with pytest.raises(InvalidArgumentError, match="this table has no embedder"):
        plain.search("alpha", mode="keyword").rerank("feedback").to_list()
    assert plain.search("alpha", mode="hybrid", vector=[1, 0.1]).to_list()[0]["id"] == "p"


def test_highlight_names_the_words_that_match_the_query_terms(served):
    srv = served[0]
    db = vecstore.connect(srv.store)
    db.create_table("words", dim=2).add([
        {"id": "a", "vector": [1, 0], "text": "Batteries and the battery's CHARGING; charged."},
        {"id": "b", "vector": [0, 1], "text": "The runner runs; nothing else."},
    ])
    status, _, out = request(srv.url, "POST", "/tables/words/search",
                             {"text": "battery charge the runs", "mode": "keyword", "highlight": True},
                             key=KEY)
    assert status == 200, out
    assert out["highlight"]["terms"] == ["batteri", "charg", "run"]  # "the" is a stopword
    assert out["highlight"]["words"] == ["Batteries", "CHARGING", "battery", "charged", "runs"]
    status, _, out = request(srv.url, "POST", "/tables/words/search",
                             {"text": "battery", "mode": "keyword"}, key=KEY)
    assert "highlight" not in out  # only when asked for
