"""Hybrid search (fusions computed by hand), one hit per group, and reranking, in every mode,
with rare filters: results are never short when enough rows match and never hold a row outside
the filter."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from bm25_oracle import bm25_scores

import vecstore
from vecstore.query.fusion import make_fusion

DIM = 16
WORDS = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi".split()


class BagEmbedder:
    """A deterministic bag-of-hashed-words embedder: texts sharing words are similar."""

    model_id = "test-bag"
    dim = DIM
    max_tokens = 512

    def embed_documents(self, texts):
        out = np.full((len(texts), DIM), 0.05, dtype=np.float32)
        for i, t in enumerate(texts):
            for w in t.lower().split():
                out[i, hashlib.sha256(w.strip("?.,").encode()).digest()[0] % DIM] += 1.0
        return out

    embed_queries = embed_documents


def chunk_rows(rng, docs=30, chunks=5):
    out = []
    for d in range(docs):
        for c in range(chunks):
            words = rng.choice(WORDS, size=int(rng.integers(3, 12)))
            out.append({"id": f"d{d}#{c}", "doc_id": f"d{d}", "text": " ".join(words),
                        "n": d * chunks + c, "rare": d in (3, 17)})
    return out


@pytest.fixture
def tbl(tmp_db, rng):
    t = tmp_db.create_table("t", embedder=BagEmbedder())
    t.add(chunk_rows(rng))
    return t


def vector_scores(tbl, q: str) -> dict[str, float]:
    """Every row's exact cosine, as vecstore's own exact search computes it: rank-based fusions
    (RRF) depend on the order of near-ties, which float32 rounding decides, so the ranks come
    from the same arithmetic as the ranker's (that arithmetic is checked against NumPy
    elsewhere); a NumPy float64 check of the same scores, within a tolerance, is below."""
    qv = BagEmbedder().embed_queries([q])[0]
    hits = tbl.search(qv).exact().limit(len(tbl)).to_list()
    data = {r["id"]: r["vector"] for r in tbl.to_arrow(with_vectors=True).to_pylist()}
    for h in hits:
        v = np.asarray(data[h["id"]], dtype=np.float64)
        want = float(v @ qv / (np.linalg.norm(v) * np.linalg.norm(qv)))
        assert abs(h["score"] - want) < 1e-5, h
    return {h["id"]: h["score"] for h in hits}


def keyword_scores(tbl, q: str) -> dict[str, float]:
    return bm25_scores(tbl.to_arrow().to_pylist(), ["text"], "english", q)


def expected_fusion(tbl, q, kind, n_cand, alpha=0.5, rrf_k=60, allowed=None):
    """The fused ranking computed from the two rankers' exact scores, by hand."""
    vs, ks = vector_scores(tbl, q), keyword_scores(tbl, q)
    if allowed is not None:
        vs = {i: s for i, s in vs.items() if i in allowed}
        ks = {i: s for i, s in ks.items() if i in allowed}
    row = {r["id"]: i for i, r in enumerate(tbl.to_arrow(["id"]).to_pylist())}
    vtop = sorted(vs, key=lambda i: (-vs[i], row[i]))[:n_cand]
    ktop = sorted(ks, key=lambda i: (-ks[i], row[i]))[:n_cand]
    union = set(vtop) | set(ktop)
    if kind == "rrf":
        fused = {i: (1 / (rrf_k + vtop.index(i) + 1) if i in vtop else 0)
                 + (1 / (rrf_k + ktop.index(i) + 1) if i in ktop else 0) for i in union}
    else:
        v = {i: vs[i] for i in union}
        w = {i: ks.get(i, 0.0) for i in union}

        def norm(d):
            x = np.array(list(d.values()))
            if kind == "weighted":
                lo, hi = x.min(), x.max()
                return {i: (s - lo) / (hi - lo) if hi > lo else 0.0 for i, s in d.items()}
            return {i: (s - x.mean()) / x.std() if x.std() > 0 else 0.0 for i, s in d.items()}

        nv, nw = norm(v), norm(w)
        fused = {i: alpha * nv[i] + (1 - alpha) * nw[i] for i in union}
    return fused


def assert_matches(hits, fused, k):
    assert len(hits) == min(k, len(fused))
    for h in hits:
        assert abs(h["score"] - fused[h["id"]]) < 1e-4 * max(1, abs(fused[h["id"]])), h
    floor = min(h["score"] for h in hits)
    got = {h["id"] for h in hits}
    assert not [i for i, s in fused.items() if i not in got and s > floor + 1e-4], "a better row is missing"


@pytest.mark.parametrize("kind,kw", [("rrf", {}), ("rrf", {"k": 2}), ("weighted", {"alpha": 0.3}),
                                     ("zscore", {}), ("zscore", {"alpha": 0.8})])
def test_fusions_compute_what_they_say(tbl, kind, kw):
    for q in ("alpha beta", "theta kappa mu", "pi"):
        hits = tbl.search(q, mode="hybrid").fusion(kind, candidates=20, **kw).limit(8).select("id").to_list()
        fused = expected_fusion(tbl, q, kind, 20, alpha=kw.get("alpha", 0.5), rrf_k=kw.get("k", 60))
        assert_matches(hits, fused, 8)


def test_the_default_fusion_is_named_in_the_plan(tbl):
    plan = tbl.search("alpha beta", mode="hybrid").limit(5).explain()
    assert plan.mode == "hybrid" and plan.strategy is vecstore.Strategy.HYBRID
    assert plan.fusion is not None and plan.fusion.startswith(make_fusion("zscore").kind)
    assert [r.name for r in plan.rankers] == ["vector", "keyword (bm25)"]
    assert plan.rankers[0].plan is not None and plan.rankers[0].candidates == 100
    text = str(plan)
    assert "mode: hybrid" in text and "ranker vector" in text and "fusion: zscore" in text


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_a_rare_filter_is_never_short_and_never_leaks(tbl, mode):
    rare = {r["id"] for r in tbl.to_arrow().to_pylist() if r["rare"]}
    for q in ("alpha", "beta gamma delta", "omicron pi"):
        hits = tbl.search(q, mode=mode).where("rare").limit(8).to_list()
        assert {h["id"] for h in hits} <= rare
        holding = {i for i in keyword_scores(tbl, q) if i in rare}
        assert len(hits) == (min(8, len(holding)) if mode == "keyword" else 8)
    one = tbl.search("alpha", mode=mode).where("n = ?", 7).limit(8).to_list()
    assert [h["id"] for h in one] in (["d1#2"], [] if mode == "keyword" else ["d1#2"])
    if mode == "hybrid":
        fused = expected_fusion(tbl, "beta gamma", "zscore", 100, allowed=rare)
        assert_matches(tbl.search("beta gamma", mode=mode).where("rare").limit(8).to_list(), fused, 8)


def test_fusion_arguments_are_checked(tbl):
    q = tbl.search("alpha", mode="hybrid")
    with pytest.raises(vecstore.InvalidArgumentError, match="unknown fusion 'max'.*'rrf'"):
        q.fusion("max")
    with pytest.raises(vecstore.InvalidArgumentError, match="alpha must be a number in"):
        q.fusion("weighted", alpha=1.5)
    with pytest.raises(vecstore.InvalidArgumentError, match="rank constant of 'rrf'"):
        q.fusion("weighted", k=3)
    with pytest.raises(vecstore.InvalidArgumentError, match="'rrf' fuses ranks"):
        q.fusion("rrf", alpha=0.2)
    with pytest.raises(vecstore.InvalidArgumentError, match="candidates must be"):
        q.fusion("rrf", candidates=0)
    with pytest.raises(vecstore.InvalidArgumentError, match="mode is 'keyword'"):
        tbl.search("alpha", mode="keyword").fusion("rrf")
    assert q.fusion("RRF")._spec.fusion.kind == "rrf"  # the chain is immutable:
    assert q._spec.fusion is None


def best_per_group(scores: dict[str, float], groups: dict[str, str], k: int, per_group: int = 1):
    order = sorted(scores, key=lambda i: -scores[i])
    out: dict[str, list[str]] = {}
    for i in order:
        g = groups[i]
        if g not in out and len(out) == k:
            continue
        if len(out.setdefault(g, [])) < per_group:
            out[g].append(i)
    return out


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_group_by_returns_one_hit_per_document(tbl, mode):
    groups = {r["id"]: r["doc_id"] for r in tbl.to_arrow().to_pylist()}
    for q in ("alpha beta", "kappa"):
        hits = tbl.search(q, mode=mode).group_by("doc_id").limit(10).to_list()
        docs = [h["doc_id"] for h in hits]
        assert len(docs) == len(set(docs))
        n_docs = len({groups[i] for i in keyword_scores(tbl, q)})
        assert len(hits) == (10 if mode != "keyword" else min(10, n_docs))
        if mode != "hybrid":  # the exact answer: each document's best row, best document first
            scores = vector_scores(tbl, q) if mode == "vector" else keyword_scores(tbl, q)
            want = best_per_group(scores, groups, 10)
            assert all(scores[h["id"]] >= scores[want[h["doc_id"]][0]] - 1e-5 for h in hits)
            assert set(docs) == set(want) or min(h["score"] for h in hits) <= min(
                scores[v[0]] for v in want.values()) + 1e-5
        two = tbl.search(q, mode=mode).group_by("doc_id", per_group=2).limit(4).to_list()
        seen = [h["doc_id"] for h in two]
        assert len(set(seen)) <= 4 and all(seen.count(d) <= 2 for d in seen)
        assert seen == sorted(seen, key=seen.index)  # group-major: a group's rows together
        rare = tbl.search(q, mode=mode).where("rare").group_by("doc_id").limit(10).to_list()
        assert {h["doc_id"] for h in rare} <= {"d3", "d17"}
        assert len(rare) == (2 if mode != "keyword" else len(rare))


def test_group_by_widens_until_enough_groups(tmp_db):
    """One document holds the 400 best rows: the first candidates are all its chunks, so the
    grouping must ask the vector ranker for more until it finds k documents."""
    tbl = tmp_db.create_table("t", embedder=BagEmbedder())
    rows = [{"id": f"big#{i}", "doc_id": "big", "text": "alpha alpha alpha", "vector": None}
            for i in range(400)]
    rows += [{"id": f"d{i}#0", "doc_id": f"d{i}", "text": f"alpha {WORDS[i % 16]} {WORDS[(i * 3) % 16]}"}
             for i in range(12)]
    tbl.add([{k: v for k, v in r.items() if v is not None} for r in rows])
    for mode in ("vector", "keyword", "hybrid"):
        hits = tbl.search("alpha", mode=mode).group_by("doc_id").limit(8).to_list()
        assert len(hits) == 8 and len({h["doc_id"] for h in hits}) == 8, mode
        assert hits[0]["doc_id"] == "big", mode
        plan = tbl.search("alpha", mode=mode).group_by("doc_id").limit(8).explain()
        assert plan.group_by == "doc_id (per group 1)"


def test_group_by_checks_its_column(tbl):
    with pytest.raises(vecstore.InvalidArgumentError, match="unknown column 'nope'"):
        tbl.search("alpha").group_by("nope")
    with pytest.raises(vecstore.InvalidArgumentError, match="per_group"):
        tbl.search("alpha").group_by("doc_id", per_group=0)


@pytest.mark.parametrize("mode", ["vector", "keyword", "hybrid"])
def test_rerank_with_a_callable(tbl, mode):
    seen: list[list[str]] = []

    def by_length(query, texts):
        seen.append(list(texts))
        return [len(t) + (100 if query.split()[0] in t else 0) for t in texts]

    hits = tbl.search("kappa", mode=mode).rerank(by_length, candidates=12).where("n < 100").limit(5).to_list()
    first = tbl.search("kappa", mode=mode).where("n < 100").limit(12).to_list()
    assert len(seen) == 1 and len(seen[0]) == min(12, len(first))
    assert [t for t in seen[0]] == [h["text"] for h in first]  # the best 12, in the first ranking's order
    want = sorted(first, key=lambda h: -(len(h["text"]) + (100 if "kappa" in h["text"] else 0)))[:5]
    assert [h["score"] for h in hits] == [len(h["text"]) + (100 if "kappa" in h["text"] else 0) for h in want]
    assert all(h["n"] < 100 for h in hits)
    grouped = tbl.search("kappa", mode=mode).rerank(by_length, candidates=6).group_by("doc_id").limit(9)
    grouped = grouped.to_list()
    assert len({h["doc_id"] for h in grouped}) == len(grouped) == (9 if mode != "keyword" else len(grouped))


def test_rerank_refuses_what_it_cannot_use(tbl, tmp_path):
    # a path made missing here: some machines have a /nonexistent (a home directory for daemons)
    missing = str(tmp_path / "nonexistent")
    with pytest.raises(vecstore.InvalidArgumentError, match=f"no model directory at '{missing}'"):
        tbl.search("alpha").rerank(missing)
    with pytest.raises(vecstore.InvalidArgumentError, match="cannot rerank with int"):
        tbl.search("alpha").rerank(3)
    with pytest.raises(vecstore.InvalidArgumentError, match="returned 1 scores for 5 texts"):
        tbl.search("alpha").rerank(lambda q, t: [1.0], candidates=5).limit(3).to_list()
    with pytest.raises(vecstore.InvalidArgumentError, match="NaN"):
        tbl.search("alpha").rerank(lambda q, t: [math.nan] * len(t)).to_list()
    with pytest.raises(vecstore.InvalidArgumentError, match="candidates must be"):
        tbl.search("alpha").rerank(lambda q, t: t, candidates=0)


def test_feedback_rerank_moves_the_query_toward_its_best_rows(tbl):
    q = "alpha beta"
    first = tbl.search(q).limit(20).to_list()
    hits = tbl.search(q).rerank("feedback", candidates=20).limit(20).explain()
    got = tbl.search(q).rerank("feedback", candidates=20).limit(20).to_list()
    vecs = {r["id"]: np.asarray(r["vector"], dtype=np.float64)
            for r in tbl.to_arrow(with_vectors=True).to_pylist()}
    units = {i: v / np.linalg.norm(v) for i, v in vecs.items()}
    qv = BagEmbedder().embed_queries([q])[0].astype(np.float64)
    q2 = qv / np.linalg.norm(qv) + np.mean([units[h["id"]] for h in first[:3]], axis=0)
    q2 /= np.linalg.norm(q2)
    assert {h["id"] for h in got} == {h["id"] for h in first}  # the same candidates, reordered
    for h in got:
        assert abs(h["score"] - units[h["id"]] @ q2) < 1e-5
    assert [h["score"] for h in got] == sorted((h["score"] for h in got), reverse=True)
    assert "feedback" in str(hits) and hits.rerank.startswith("feedback")
    # keyword mode embeds the text once for the feedback's query vector
    kw = tbl.search(q, mode="keyword").rerank("feedback").limit(5).to_list()
    assert len(kw) == 5


def test_a_tiny_cross_encoder_from_a_local_directory(tbl, tmp_path):
    pytest.importorskip("sentence_transformers")
    from sentence_transformers import CrossEncoder
    from tiny_cross_encoder import build_tiny_cross_encoder

    path = build_tiny_cross_encoder(tmp_path / "cross", WORDS)
    hits = tbl.search("alpha gamma", mode="keyword").rerank(str(path), candidates=10).limit(10).to_list()
    model = CrossEncoder(str(path), device="cpu")
    want = model.predict([("alpha gamma", h["text"]) for h in hits])
    np.testing.assert_allclose([h["score"] for h in hits], np.sort(np.ravel(want))[::-1],
                               rtol=1e-4, atol=1e-5)
    assert "cross-encoder" in tbl.search("alpha").rerank(str(path)).explain().rerank
