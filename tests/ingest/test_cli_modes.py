"""``vecstore search --mode/--fusion/--group-by/--rerank`` and ``vecstore eval`` end to end: the
command line gives what the library gives, on a store directory and on a server URL
(``vecstore serve --reranker DIR`` in a real subprocess), and says what is wrong in one line."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from click.testing import CliRunner

import vecstore
from vecstore.cli import cli
from vecstore.evaluation import evaluate_table, load_qrels, load_queries

WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa".split()


def run(*args, ok=(0,)):
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code in ok, (result.exit_code, result.output, result.exception)
    return result


def lines(result):
    return [json.loads(x) for x in result.stdout.splitlines() if x.strip()]


def chunk_rows(seed: int = 3) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"id": f"d{d}#{c}", "doc_id": f"d{d}", "n": 4 * d + c,
             "text": " ".join(rng.choice(WORDS, size=int(rng.integers(2, 8))))}
            for d in range(12) for c in range(3)]


@pytest.fixture(scope="module")
def store(tmp_path_factory, tiny_model_dir):
    path = tmp_path_factory.mktemp("cli_modes") / "store"
    vecstore.connect(path).create_table("chunks", embedder=str(tiny_model_dir)).add(chunk_rows())
    return path


CHAINS = [  # CLI arguments, and the same query in the library
    ((), lambda t, q: t.search(q)),
    (("--mode", "keyword"), lambda t, q: t.search(q, mode="keyword")),
    (("--mode", "hybrid"), lambda t, q: t.search(q, mode="hybrid")),
    (("--mode", "hybrid", "--fusion", "rrf", "--rrf-k", "5"),
     lambda t, q: t.search(q, mode="hybrid").fusion("rrf", k=5)),
    (("--mode", "hybrid", "--fusion", "weighted", "--alpha", "0.8"),
     lambda t, q: t.search(q, mode="hybrid").fusion("weighted", alpha=0.8)),
    (("--mode", "keyword", "--group-by", "doc_id", "--per-group", "2", "--where", "n > 3"),
     lambda t, q: t.search(q, mode="keyword").where("n > 3").group_by("doc_id", per_group=2)),
    (("--mode", "hybrid", "--rerank", "feedback", "--rerank-candidates", "12"),
     lambda t, q: t.search(q, mode="hybrid").rerank("feedback", candidates=12)),
]


@pytest.mark.parametrize("args,chain", CHAINS, ids=[" ".join(a) or "vector" for a, _ in CHAINS])
def test_search_modes_give_what_the_library_gives(store, args, chain):
    tbl = vecstore.connect(store).open_table("chunks")
    for q in ("alpha gamma", "zeta"):
        want = chain(tbl, q).limit(5).to_list()
        got = lines(run("search", store, "chunks", q, "-k", 5, *args))
        assert [h["id"] for h in got] == [h["id"] for h in want]
        assert np.allclose([h["score"] for h in got], [h["score"] for h in want], rtol=1e-4, atol=1e-5)
    mode = args[args.index("--mode") + 1] if "--mode" in args else "vector"
    explained = run("search", store, "chunks", "alpha", "--plain", "--explain", *args)
    assert explained.stderr.startswith(f"mode: {mode}\n")


def test_search_with_a_local_cross_encoder_directory(store, tmp_path):
    pytest.importorskip("sentence_transformers")
    from tiny_cross_encoder import build_tiny_cross_encoder

    cross = build_tiny_cross_encoder(tmp_path / "cross", WORDS)
    tbl = vecstore.connect(store).open_table("chunks")
    want = tbl.search("beta eta", mode="keyword").rerank(str(cross), candidates=10).limit(4).to_list()
    got = lines(run("search", store, "chunks", "beta eta", "--mode", "keyword", "--rerank", cross,
                    "--rerank-candidates", 10, "-k", 4))
    assert [h["id"] for h in got] == [h["id"] for h in want]


def test_bad_search_options_are_one_line_errors(store):
    for args, message in [
        (("--mode", "fuzzy"), "'fuzzy' is not one of 'vector', 'keyword', 'hybrid'"),
        (("--fusion", "rrf"), "--fusion merges the rankings of --mode hybrid, not of --mode vector"),
        (("--mode", "hybrid", "--rrf-k", "5"), "--rrf-k and --alpha go with --fusion"),
        (("--mode", "hybrid", "--fusion", "rrf", "--alpha", "0.3"), "'rrf' fuses ranks"),
        (("--per-group", "2"), "--per-group goes with --group-by"),
        (("--group-by", "nope"), "unknown column 'nope'"),
        (("--rerank", "/no/such/dir"), "/no/such/dir"),
        (("--mode", "keyword", "--vector"), "keyword search takes a text query"),
    ]:
        query = "[1, 2]" if "--vector" in args else "alpha"
        r = run("search", store, "chunks", query, *args, ok=(1, 2))
        assert message in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.output


def write_beir(tmp_path, queries: dict[str, str], qrels: dict[str, dict[str, int]]):
    qpath, rpath = tmp_path / "queries.jsonl", tmp_path / "qrels.tsv"
    qpath.write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    rpath.write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"{q}\t{d}\t{g}\n" for q, rels in qrels.items() for d, g in rels.items()))
    return qpath, rpath


@pytest.fixture(scope="module")
def beir(store, tmp_path_factory):
    """Judgements made from the keyword ranking of each word, so every mode finds some."""
    tbl = vecstore.connect(store).open_table("chunks")
    queries, qrels = {}, {}
    for i, w in enumerate(WORDS):
        queries[f"q{i}"] = w
        qrels[f"q{i}"] = {h["doc_id"]: 1 for h in tbl.search(w, mode="keyword").limit(3).to_list()}
    queries["unjudged"] = "alpha"
    return write_beir(tmp_path_factory.mktemp("beir"), queries, qrels)


def test_eval_prints_what_evaluate_table_computes(store, beir):
    qpath, rpath = beir
    tbl = vecstore.connect(store).open_table("chunks")
    for mode in ("keyword", "hybrid"):
        want = evaluate_table(tbl, load_queries(qpath), load_qrels(rpath), mode=mode, k=5).summary()
        (got,) = lines(run("eval", store, "chunks", "--queries", qpath, "--qrels", rpath, "--mode", mode,
                           "-k", 5))
        assert got == {"mode": mode, **{k: pytest.approx(v, abs=1e-6) for k, v in want.items()}}
        assert got["queries"] == len(WORDS)
    (rrf,) = lines(run("eval", store, "chunks", "--queries", qpath, "--qrels", rpath, "--mode", "hybrid",
                       "--fusion", "rrf", "--rrf-k", 0))
    want = evaluate_table(tbl, load_queries(qpath), load_qrels(rpath), mode="hybrid",
                          refine=lambda q: q.fusion("rrf", k=0)).summary()
    assert rrf["ndcg@10"] == pytest.approx(want["ndcg@10"], abs=1e-6)


def test_eval_compare_gives_each_mode_against_the_first(store, beir):
    qpath, rpath = beir
    out = lines(run("eval", store, "chunks", "--queries", qpath, "--qrels", rpath,
                    "--compare", "keyword,vector,hybrid", "--resamples", 500))
    assert [r["mode"] for r in out] == ["keyword", "vector", "hybrid"]
    assert "vs" not in out[0]
    assert out[0]["ndcg@10"] == pytest.approx(1.0)  # the judgements are keyword's own top 3
    for r in out[1:]:
        assert r["vs"] == "keyword"
        for metric in ("ndcg", "recall", "mrr"):
            delta, (lo, hi) = r[f"{metric}@10 delta"], r[f"{metric}@10 ci95"]
            assert delta == pytest.approx(r[f"{metric}@10"] - out[0][f"{metric}@10"], abs=1e-5)
            assert lo <= delta + 1e-9 and delta <= hi + 1e-9
    assert out[1]["ndcg@10 delta"] < 0  # a random tiny model does not rank like BM25
    plain = run("eval", store, "chunks", "--queries", qpath, "--qrels", rpath, "--compare", "keyword,vector",
                "--resamples", 200, "--plain").stdout.splitlines()
    assert plain[0].split()[:3] == ["mode", "ndcg@10", "Δndcg"]
    assert plain[1].startswith("keyword") and plain[2].startswith("vector")


def test_eval_errors_are_one_line_messages(store, beir, tmp_path):
    qpath, rpath = beir
    other_q, other_r = write_beir(tmp_path, {"x": "alpha"}, {"y": {"d1": 1}})
    for args, message in [
        (("--compare", "vector"), "two or more distinct modes"),
        (("--compare", "vector,fuzzy"), "two or more distinct modes"),
        (("--fusion", "rrf"), "add hybrid to the modes"),
        (("--id-column", "nope"), "id column 'nope' is not a column"),
        (("--split", "test"), "no 'split' column"),
    ]:
        r = run("eval", store, "chunks", "--queries", qpath, "--qrels", rpath, *args, ok=(1,))
        assert message in r.stderr, (args, r.stderr)
    r = run("eval", store, "chunks", "--queries", other_q, "--qrels", other_r, ok=(1,))
    assert "no query of" in r.stderr and "belong together" in r.stderr
    r = run("eval", store, "chunks", "--queries", tmp_path / "missing.jsonl", "--qrels", rpath, ok=(1,))
    assert "is not a file" in r.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX processes")
def test_search_and_eval_through_vecstore_serve_with_a_reranker(store, beir, tmp_path):
    """``vecstore serve --reranker DIR`` in a subprocess: the CLI's search and eval against its
    URL give what the library gives on the directory, the reranker named by the directory's
    name (the server loads it; this process loads no model for keyword search)."""
    pytest.importorskip("fastapi")
    pytest.importorskip("sentence_transformers")
    from server.harness import ProcessServer, request
    from tiny_cross_encoder import build_tiny_cross_encoder

    cross = build_tiny_cross_encoder(tmp_path / "tiny-cross", WORDS)
    srv = ProcessServer(store, tmp_path / "server.log", "--reranker", str(cross), "--no-warm").start()
    try:
        assert request(srv.url, "GET", "/healthz")[2]["rerankers"] == ["feedback", "tiny-cross"]
        tbl = vecstore.connect(store).open_table("chunks")
        want = tbl.search("gamma", mode="keyword").group_by("doc_id").rerank(str(cross), candidates=8)
        got = lines(run("search", srv.url, "chunks", "gamma", "--mode", "keyword", "--group-by", "doc_id",
                        "--rerank", "tiny-cross", "--rerank-candidates", 8))
        assert [h["id"] for h in got] == [h["id"] for h in want.to_list()]
        r = run("search", srv.url, "chunks", "gamma", "--rerank", str(cross), ok=(1,))
        assert "not one this server runs" in r.stderr
        qpath, rpath = beir
        for args in (("--mode", "hybrid"), ("--mode", "keyword", "--rerank", "feedback")):
            local = lines(run("eval", store, "chunks", "--queries", qpath, "--qrels", rpath, *args))
            remote = lines(run("eval", srv.url, "chunks", "--queries", qpath, "--qrels", rpath, *args))
            assert remote == [{k: pytest.approx(v, abs=1e-5) if isinstance(v, float) else v
                               for k, v in local[0].items()}]
    finally:
        srv.stop()
