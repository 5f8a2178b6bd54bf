"""Keyword, vector and hybrid retrieval quality (nDCG@10) through vecstore, beside bm25s and tantivy.

    python -m bench.retrieval --prepare                # embed the sets once (30-60 min on 2 loaded cores)
    python -m bench.retrieval                          # LIMIT-style, SciFact, QMSum (40 meetings)
    python -m bench.retrieval --sets limit,scifact     # a subset
    python -m bench.retrieval --json out.json          # every per-query figure

The figures are in docs/benchmarks.md, "Keyword and hybrid retrieval". Sets (vectors from
all-MiniLM-L6-v2, the default model, embedded once and cached under ``$VECSTORE_BENCH_CACHE``,
default ``~/.cache/vecstore-bench``, keyed by the model and a hash of every text embedded):

- **LIMIT-style**: 46 people, each document listing what the person likes; 1,000 queries "Who
  likes X?", each with exactly two relevant documents, covering 1,000 of the 1,035 pairs of
  documents (after Weller et al., 2025, "On the theoretical limitations of embedding-based
  retrieval"), generated here (:func:`load_limit`);
- **SciFact** (BEIR, test split: 5,183 abstracts, 300 claims, graded qrels); rows hold
  ``title`` and ``text``, the keyword index covers both (as BEIR's BM25 does);
- **QMSum**: the 40 meetings with the most specific queries (5,658 chunks, 473 queries; all 232
  meetings would take hours to embed here), chunked as ``add_documents`` does by default
  (128-token chunks, 16 overlap, "context" embeddings); a chunk is relevant when it overlaps
  the query's evidence span; every query searches all 40 meetings.

Every vecstore figure comes from the public API: ``tbl.search(text, mode=..., vector=qvec)``,
with ``.fusion(...)`` and ``.rerank("feedback")``, ``.limit(10)``; the vector ranker runs
``.exact()``. Beside it: bm25s 0.3.16 (``method="lucene"``, the same k1 and b) on the same
text, once with vecstore's analyzer's terms (same analyzer settings) and once with bm25s's own
tokenizer (English stopwords, PyStemmer); tantivy 0.27 (English stopwords, Snowball). Also:
keyword queries/s of each (best of three alternating rounds), BM25 after deletions against a
rebuild, and the cost of writing SciFact in 100-row commits. Metrics are computed here
(nDCG@10 with graded gains and the ideal DCG over every judged document; paired bootstrap over
queries) until ``vecstore.evaluation`` lands.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.feather as feather

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()
K = 10
FUSIONS: list[tuple[str, dict[str, Any]]] = [
    ("rrf", {"k": 60}), ("rrf", {"k": 2}), ("weighted", {"alpha": 0.5}), ("zscore", {"alpha": 0.5}),
]


# --------------------------------------------------------------------------- data


F32 = npt.NDArray[np.float32]


def default_cache_dir() -> Path:
    return Path(os.environ.get("VECSTORE_BENCH_CACHE", "~/.cache/vecstore-bench")).expanduser()


@dataclass
class RetrievalSet:
    """One evaluation set: rows to store, queries, and per-query relevance."""

    name: str
    rows: pa.Table  # id, text (+ title, doc_id, char_start, char_end ...), vector
    query_ids: list[str]
    query_texts: list[str]
    query_vectors: F32
    qrels: list[dict[str, int]]  # per query: row id -> gain (SciFact, LIMIT)
    ideal: list[list[int]] = field(default_factory=list)  # per query: ideal gains (QMSum)
    relevant: Any = None  # QMSum: per query a function (row dict) -> gain
    meta: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- embedding cache


def _hash_texts(parts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:16]


def cached_vectors(kind: str, texts: Sequence[str], key: str, cache_dir: Path, what: str) -> F32:
    """``texts`` embedded with the default model (``kind``: "documents" or "queries"), cached."""
    from vecstore.ingest import get_embedder

    path = cache_dir / f"retrieval-{what}-{kind}-{_hash_texts([key, kind, *texts])}.npy"
    if path.is_file():
        return np.load(path, mmap_mode="r")
    emb = get_embedder("default")
    t = time.perf_counter()
    out = np.empty((len(texts), emb.dim), dtype=np.float32)
    step = 256
    for i in range(0, len(texts), step):
        part = list(texts[i:i + step])
        out[i:i + len(part)] = (emb.embed_documents(part) if kind == "documents"
                                else emb.embed_queries(part))
        done = i + len(part)
        rate = done / (time.perf_counter() - t)
        print(f"  {what} {kind}: {done}/{len(texts)} ({rate:.0f}/s)", file=sys.stderr, flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.save(fh, out)
    os.replace(tmp, path)
    meta = path.with_suffix(".json")
    meta.write_text(json.dumps({"texts": len(texts), "seconds": time.perf_counter() - t,
                                "model": emb.model_id}))
    return out


# --------------------------------------------------------------------------- SciFact


def load_scifact(data_dir: Path, cache_dir: Path) -> RetrievalSet:
    """BEIR SciFact, test split: each abstract one row (``title`` and ``text`` columns; the
    vector embeds ``title + " " + text``), the 300 test claims as queries, graded qrels."""
    root = data_dir / "scifact"
    ids, titles, texts = [], [], []
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            ids.append(str(d["id"]))
            titles.append(d.get("title") or "")
            texts.append(d["text"])
    qrels: dict[str, dict[str, int]] = {}
    with open(root / "qrels.tsv", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line in f:
            row = dict(zip(header, line.rstrip("\n").split("\t"), strict=False))
            if row.get("split", "test") != "test":
                continue
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {}
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if str(q["id"]) in qrels:
                queries[str(q["id"])] = q["text"]
    qids = sorted(queries, key=int)
    joined = [f"{t} {x}".strip() for t, x in zip(titles, texts, strict=True)]
    vecs = cached_vectors("documents", joined, "scifact", cache_dir, "scifact")
    qvecs = cached_vectors("queries", [queries[q] for q in qids], "scifact", cache_dir, "scifact")
    rows = pa.table({"id": ids, "title": titles, "text": texts,
                     "vector": _fixed(np.asarray(vecs))})
    return RetrievalSet("SciFact", rows, qids, [queries[q] for q in qids], np.asarray(qvecs),
                        [qrels[q] for q in qids], meta={"rows": len(ids), "queries": len(qids)})


def _fixed(vecs: F32) -> pa.FixedSizeListArray:
    return pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(vecs).reshape(-1)),
                                             vecs.shape[1])


# --------------------------------------------------------------------------- QMSum


def qmsum_meetings(data_dir: Path, n_meetings: int, seed: int) -> tuple[list[dict[str, Any]],
                                                                        list[dict[str, Any]]]:
    """The ``n_meetings`` meetings with the most specific queries (ties in a seeded order), and
    those queries (with their evidence spans)."""
    root = data_dir / "qmsum"
    meetings = {}
    with open(root / "corpus.jsonl", encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            meetings[d["id"]] = d
    queries = []
    with open(root / "queries.jsonl", encoding="utf-8") as f:
        for line in f:
            q = json.loads(line)
            if q["type"] == "specific" and q.get("evidence_chars"):
                queries.append(q)
    counts: dict[str, int] = {}
    for q in queries:
        counts[q["doc_id"]] = counts.get(q["doc_id"], 0) + 1
    names = sorted(counts)
    order = np.random.default_rng(seed).permutation(len(names))
    ranked = sorted((names[i] for i in order), key=lambda m: -counts[m])
    keep = set(ranked[:n_meetings])
    return [meetings[m] for m in sorted(keep)], [q for q in queries if q["doc_id"] in keep]


def load_qmsum(data_dir: Path, cache_dir: Path, n_meetings: int, seed: int = 0) -> RetrievalSet:
    """A QMSum subset chunked as ``add_documents`` does by default (128-token chunks, 16 overlap,
    "context" embeddings); a chunk is relevant to a query when its span overlaps an evidence
    span of the query's meeting (binary gains; the ideal DCG counts those chunks)."""
    from vecstore.ingest import chunk_documents, get_embedder

    meetings, queries = qmsum_meetings(data_dir, n_meetings, seed)
    key = _hash_texts(["qmsum-context-128-16", *(m["id"] for m in meetings),
                       *(m["text"] for m in meetings)])
    path = cache_dir / f"retrieval-qmsum-{n_meetings}-{key}.arrow"
    if path.is_file():
        table = feather.read_table(path)
    else:
        emb = get_embedder("default")
        t = time.perf_counter()
        parts = []
        for i, m in enumerate(meetings):
            out = chunk_documents([{"id": m["id"], "text": m["text"], "domain": m.get("domain") or ""}],
                                  emb, chunking="context", chunk_tokens=128, overlap=16, progress=False)
            parts.append(out.table.drop_columns(["context"]))
            print(f"  qmsum: {i + 1}/{len(meetings)} meetings, {sum(p.num_rows for p in parts)} chunks, "
                  f"{time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        table = pa.concat_tables(parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        feather.write_feather(table, tmp)
        os.replace(tmp, path)
    qtexts = [q["text"] for q in queries]
    qvecs = cached_vectors("queries", qtexts, "qmsum", cache_dir, "qmsum")
    doc = np.asarray(table.column("doc_id").to_pylist(), dtype=object)
    cs = table.column("char_start").to_numpy()
    ce = table.column("char_end").to_numpy()
    ids = table.column("id").to_pylist()
    qrels = []
    for q in queries:
        rel = np.zeros(len(ids), dtype=bool)
        sel = doc == q["doc_id"]
        for a, b in q["evidence_chars"]:
            rel |= sel & (cs < int(b)) & (int(a) < ce)
        qrels.append({ids[i]: 1 for i in np.flatnonzero(rel)})
    keep = [i for i, r in enumerate(qrels) if r]
    return RetrievalSet("QMSum", table, [queries[i]["id"] for i in keep], [qtexts[i] for i in keep],
                        np.asarray(qvecs)[keep], [qrels[i] for i in keep],
                        meta={"meetings": len(meetings), "rows": table.num_rows, "queries": len(keep)})


# --------------------------------------------------------------------------- LIMIT-style


FIRST = ("Ada Bela Cyra Dario Elif Farah Gideon Hana Ivo Jonas Kaia Lior Mara Nils Ona Pavel Quinn "
         "Rhea Soren Tova Ugo Vera Wren Xena Yara Zeno Alba Boris Cleo Dmitri Esme Felix Greta Hugo "
         "Inez Jasper Kira Lena Milo Nora Otto Pia Rafe Sina Teo Uma").split()
LAST = ("Durben Ashcroft Vell Morrow Quill Brandt Okafor Lindqvist Serrano Halloway Petrov Nakamura "
        "Fairleigh Castellan Ibsen Moreau Abara Kessler Thorne Valdez Whitcombe Yilmaz Zorin Bellamy "
        "Corwin Delacroix Eriksen Fontaine Garrick Hayashi Ingram Jovanovic Kowalski Lachance "
        "Montague Novak Oyelaran Pemberton Radcliffe Salazar Tanaka Underhill Vasquez Winslow "
        "Xiong Yardley").split()


def limit_attributes(n: int, seed: int) -> list[str]:
    """``n`` distinct things to like: lower-case words of 5-12 letters from the Reuters corpus,
    no two with the same English stem, so each query names one term that exactly its two
    documents hold."""
    rng = np.random.default_rng(seed)
    path = DEFAULT_DATA_DIR / "reuters21578" / "corpus.jsonl"
    words: set[str] = set()
    with open(path, encoding="utf-8") as f:
        for i, line in enumerate(f):
            for w in json.loads(line)["text"].split():
                if w.isalpha() and w.islower() and 5 <= len(w) <= 12:
                    words.add(w)
            if i > 4000:
                break
    from vecstore.text import Analyzer

    analyzer = Analyzer("english")
    by_stem: dict[str, str] = {}
    for w in sorted(words):
        terms = analyzer.terms(w)
        if len(terms) == 1:
            by_stem.setdefault(terms[0], w)
    pool = sorted(by_stem.values())
    pick = rng.choice(len(pool), size=n, replace=False)
    return [pool[i] for i in pick]


def load_limit(cache_dir: Path, n_docs: int = 46, n_queries: int = 1000, seed: int = 0) -> RetrievalSet:
    """A LIMIT-style set (Weller et al., 2025, "On the theoretical limitations of embedding-based
    retrieval"): ``n_docs`` people, each document listing what the person likes; every query
    "Who likes X?" has exactly two relevant documents, and the queries cover ``n_queries``
    distinct pairs of documents (46 documents: 1,035 pairs), so a retriever must be able to
    return any pair in its top 2."""
    rng = np.random.default_rng(seed)
    names = [f"{FIRST[i % len(FIRST)]} {LAST[(i * 7) % len(LAST)]}" for i in range(n_docs)]
    pairs = [(a, b) for a in range(n_docs) for b in range(a + 1, n_docs)]
    chosen = [pairs[i] for i in np.sort(rng.choice(len(pairs), size=n_queries, replace=False))]
    attrs = limit_attributes(n_queries, seed)
    likes: list[list[str]] = [[] for _ in range(n_docs)]
    for (a, b), x in zip(chosen, attrs, strict=True):
        likes[a].append(x)
        likes[b].append(x)
    texts = []
    for i in range(n_docs):
        order = rng.permutation(len(likes[i]))
        items = [likes[i][j].capitalize() for j in order]
        texts.append(f"{names[i]} likes {', '.join(items[:-1])} and {items[-1]}.")
    ids = [f"p{i}" for i in range(n_docs)]
    qtexts = [f"Who likes {x.capitalize()}?" for x in attrs]
    vecs = cached_vectors("documents", texts, "limit", cache_dir, "limit")
    qvecs = cached_vectors("queries", qtexts, "limit", cache_dir, "limit")
    rows = pa.table({"id": ids, "text": texts, "vector": _fixed(np.asarray(vecs))})
    qrels = [{ids[a]: 1, ids[b]: 1} for a, b in chosen]
    return RetrievalSet("LIMIT-style", rows, [f"q{i}" for i in range(n_queries)], qtexts,
                        np.asarray(qvecs), qrels, meta={"rows": n_docs, "queries": n_queries})


# --------------------------------------------------------------------------- metrics


def ndcg(ranked: Sequence[str], gains: dict[str, int], k: int = K) -> float:
    """nDCG@k with graded gains; the ideal DCG takes every judged document's gain."""
    dcg = sum(gains.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((g for g in gains.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def bootstrap(diff: Sequence[float], resamples: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of paired differences and its 95% percentile interval (resampling queries)."""
    d = np.asarray(diff, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, d.size, size=(resamples, d.size))].mean(axis=1)
    return float(d.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


# --------------------------------------------------------------------------- vecstore


def keyword_columns(s: RetrievalSet) -> list[str]:
    return ["title", "text"] if "title" in s.rows.column_names else ["text"]


def build_table(db: Any, s: RetrievalSet) -> tuple[Any, float]:
    tbl = db.create_table(s.name.lower().replace("-", "_"), dim=s.query_vectors.shape[1],
                          keyword_columns=keyword_columns(s))
    t = time.perf_counter()
    tbl.add(s.rows)
    return tbl, time.perf_counter() - t


def run_queries(s: RetrievalSet, search: Callable[[int], list[str]]) -> tuple[list[float], float]:
    t = time.perf_counter()
    ranked = [search(i) for i in range(len(s.query_texts))]
    seconds = time.perf_counter() - t
    return [ndcg(r, g) for r, g in zip(ranked, s.qrels, strict=True)], seconds


def vecstore_runs(tbl: Any, s: RetrievalSet, rerank: bool) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}

    def q(i: int, mode: str) -> Any:
        return tbl.search(s.query_texts[i], mode=mode, vector=s.query_vectors[i]).limit(K).select("id")

    variants: list[tuple[str, Callable[[int], Any]]] = [
        ("vector", lambda i: q(i, "vector").exact()),
        ("keyword", lambda i: q(i, "keyword")),
        ("hybrid (default)", lambda i: q(i, "hybrid").exact()),
    ]
    for kind, params in FUSIONS:
        label = f"hybrid {kind} " + ", ".join(f"{k}={v}" for k, v in params.items())
        variants.append((label, lambda i, kind=kind, params=params:
                         q(i, "hybrid").exact().fusion(kind, **params)))
    if rerank:
        variants += [
            ("vector + feedback rerank", lambda i: q(i, "vector").exact().rerank("feedback")),
            ("hybrid (default) + feedback rerank", lambda i: q(i, "hybrid").exact().rerank("feedback")),
        ]
    for label, make in variants:
        scores, seconds = run_queries(s, lambda i, make=make: make(i).hits().ids)
        out[label] = {"ndcg": scores, "qps": len(scores) / seconds}
        print(f"  {s.name}: {label:<40} nDCG@10 {np.mean(scores):.4f}  {len(scores) / seconds:8.1f} q/s",
              file=sys.stderr, flush=True)
    return out


# --------------------------------------------------------------------------- peers


def texts_of(s: RetrievalSet) -> list[str]:
    cols = keyword_columns(s)
    parts = [s.rows.column(c).to_pylist() for c in cols]
    return [" ".join(p for p in row if p) for row in zip(*parts, strict=True)]


def bm25s_runs(s: RetrievalSet) -> dict[str, dict[str, Any]]:
    """bm25s on the same text: with vecstore's analyzer's terms, and with its own tokenizer."""
    import bm25s
    import Stemmer

    from vecstore.query.keyword import K1, B
    from vecstore.text import Analyzer

    ids = s.rows.column("id").to_pylist()
    docs = texts_of(s)
    out: dict[str, dict[str, Any]] = {}
    analyzer = Analyzer("english")
    own = dict(stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)
    for label, corpus_tokens, query_tokens in (
        ("bm25s, vecstore's analyzer", [analyzer.terms(d) for d in docs],
         [analyzer.terms(q) for q in s.query_texts]),
        ("bm25s, its own tokenizer", None, None),
    ):
        t = time.perf_counter()
        model = bm25s.BM25(method="lucene", k1=K1, b=B)
        if corpus_tokens is None:
            model.index(bm25s.tokenize(docs, **own), show_progress=False)
            index_seconds = time.perf_counter() - t
            t = time.perf_counter()
            qtok = [bm25s.tokenize([q], **own) for q in s.query_texts]
        else:
            model.index(corpus_tokens, show_progress=False)
            index_seconds = time.perf_counter() - t
            t = time.perf_counter()
            qtok = [[query_tokens[i]] for i in range(len(query_tokens))]
        ranked = []
        for tok in qtok:
            try:
                res, _ = model.retrieve(tok, k=min(K, len(ids)), show_progress=False, n_threads=1)
                ranked.append([ids[j] for j in res[0]])
            except ValueError:  # a query with no known term
                ranked.append([])
        seconds = time.perf_counter() - t
        scores = [ndcg(r, g) for r, g in zip(ranked, s.qrels, strict=True)]
        out[label] = {"ndcg": scores, "qps": len(scores) / seconds, "index_seconds": index_seconds}
        print(f"  {s.name}: {label:<40} nDCG@10 {np.mean(scores):.4f}  {len(scores) / seconds:8.1f} q/s",
              file=sys.stderr, flush=True)
    return out


def keyword_speed(s: RetrievalSet, tbl: Any, workdir: Path, rounds: int = 3) -> dict[str, float]:
    """Keyword queries per second, one query at a time on one thread, each timing its whole
    path (query analysis, search, the ten ids): vecstore, bm25s with vecstore's analyzer and
    with its own tokenizer, tantivy. The best of ``rounds`` alternating runs, so a busy machine
    penalises none of them more than the others."""
    import bm25s
    import Stemmer
    import tantivy

    from vecstore.query.keyword import K1, B
    from vecstore.text import Analyzer

    ids = s.rows.column("id").to_pylist()
    docs = texts_of(s)
    analyzer = Analyzer("english")
    own = dict(stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)
    ours = bm25s.BM25(method="lucene", k1=K1, b=B)
    ours.index([analyzer.terms(d) for d in docs], show_progress=False)
    theirs = bm25s.BM25(method="lucene", k1=K1, b=B)
    theirs.index(bm25s.tokenize(docs, **own), show_progress=False)
    path = workdir / "tantivy-speed"
    path.mkdir()
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("body", stored=False, tokenizer_name="en_stem")
    index = tantivy.Index(builder.build(), path=str(path))
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    for i, text in zip(ids, docs, strict=True):
        writer.add_document(tantivy.Document(id=i, body=text))
    writer.commit()
    writer.wait_merging_threads()
    index.reload()
    searcher = index.searcher()
    k = min(K, len(ids))

    def bm25s_query(model: Any, tokens: Any) -> list[str]:
        try:
            res, _ = model.retrieve(tokens, k=k, show_progress=False, n_threads=1)
        except ValueError:  # no known term
            return []
        return [ids[j] for j in res[0]]

    def tantivy_query(q: str) -> list[str]:
        query, _ = index.parse_query_lenient(q, ["body"])
        return [searcher.doc(addr)["id"][0] for _, addr in searcher.search(query, k).hits]

    runs: dict[str, Callable[[str], list[str]]] = {
        "vecstore": lambda q: tbl.search(q, mode="keyword").limit(K).select("id").hits().ids,
        "bm25s, vecstore's analyzer": lambda q: bm25s_query(ours, [analyzer.terms(q)]),
        "bm25s, its own tokenizer": lambda q: bm25s_query(theirs, bm25s.tokenize([q], **own)),
        "tantivy": tantivy_query,
    }
    best: dict[str, float] = {}
    for _ in range(rounds):
        for label, run in runs.items():
            t = time.perf_counter()
            for q in s.query_texts:
                run(q)
            best[label] = max(best.get(label, 0.0), len(s.query_texts) / (time.perf_counter() - t))
    print(f"  {s.name}: keyword queries/s {', '.join(f'{k} {v:,.0f}' for k, v in best.items())}",
          file=sys.stderr, flush=True)
    return best


def tantivy_run(s: RetrievalSet, workdir: Path) -> dict[str, Any]:
    """tantivy with an English stemming analyzer (lowercase, English stopwords, Snowball)."""
    import tantivy

    from vecstore.text.stopwords import STOPWORDS

    analyzer = (tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.simple())
                .filter(tantivy.Filter.lowercase())
                .filter(tantivy.Filter.custom_stopword(STOPWORDS["english"].split()))
                .filter(tantivy.Filter.stemmer("english")).build())
    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("body", stored=False, tokenizer_name="vs_en")
    schema = builder.build()
    path = workdir / "tantivy"
    path.mkdir()
    ids = s.rows.column("id").to_pylist()
    t = time.perf_counter()
    index = tantivy.Index(schema, path=str(path))
    index.register_tokenizer("vs_en", analyzer)
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    for i, text in zip(ids, texts_of(s), strict=True):
        writer.add_document(tantivy.Document(id=i, body=text))
    writer.commit()
    writer.wait_merging_threads()
    index_seconds = time.perf_counter() - t
    index.reload()
    searcher = index.searcher()
    t = time.perf_counter()
    ranked = []
    for qtext in s.query_texts:
        query, _errors = index.parse_query_lenient(qtext, ["body"])
        hits = searcher.search(query, K).hits
        ranked.append([searcher.doc(addr)["id"][0] for _, addr in hits])
    seconds = time.perf_counter() - t
    scores = [ndcg(r, g) for r, g in zip(ranked, s.qrels, strict=True)]
    print(f"  {s.name}: {'tantivy':<40} nDCG@10 {np.mean(scores):.4f}  {len(scores) / seconds:8.1f} q/s",
          file=sys.stderr, flush=True)
    return {"ndcg": scores, "qps": len(scores) / seconds, "index_seconds": index_seconds,
            "disk_bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file())}


def statistics_after_deletes(workdir: Path) -> dict[str, float]:
    """BM25 after deleting rows, against BM25 rebuilt from the rows left: 100 rows, 50 holding
    "kiwi", 44 of those deleted. vecstore counts the live rows; tantivy keeps counting deleted
    documents in its statistics until a merge rewrites their segment."""
    import tantivy

    import vecstore

    rows = [{"id": f"d{i}", "vector": [1.0, 0.0], "text": "kiwi apple" if i < 50 else "apple banana"}
            for i in range(100)]
    gone = [f"d{i}" for i in range(1, 45)]
    left = [r for r in rows if r["id"] not in set(gone)]
    out: dict[str, float] = {}

    def vs(name: str, data: list[dict[str, Any]], delete: list[str]) -> float:
        tbl = vecstore.connect(workdir / "stats").create_table(name, dim=2, data=data)
        if delete:
            tbl.delete(ids=delete)
        return float(tbl.search("kiwi", mode="keyword").limit(1).hits().scores[0])

    def tv(name: str, data: list[dict[str, Any]], delete: list[str]) -> float:
        b = tantivy.SchemaBuilder()
        b.add_text_field("id", stored=True, tokenizer_name="raw")
        b.add_text_field("body", tokenizer_name="en_stem")
        (workdir / name).mkdir()
        index = tantivy.Index(b.build(), path=str(workdir / name))
        w = index.writer(heap_size=20_000_000, num_threads=1)
        for r in data:
            w.add_document(tantivy.Document(id=r["id"], body=r["text"]))
        w.commit()
        for i in delete:
            w.delete_documents_by_term("id", i)
        w.commit()
        w.wait_merging_threads()
        index.reload()
        return float(index.searcher().search(index.parse_query("kiwi", ["body"]), 1).hits[0][0])

    out["vecstore after deletes"] = vs("a", rows, gone)
    out["vecstore rebuilt"] = vs("b", left, [])
    out["tantivy after deletes"] = tv("ta", rows, gone)
    out["tantivy rebuilt"] = tv("tb", left, [])
    print(f"  BM25 of 'kiwi' after deletes vs rebuilt: {out}", file=sys.stderr, flush=True)
    return out


def write_cost(s: RetrievalSet, workdir: Path, batch: int, rounds: int = 3) -> dict[str, float]:
    """Seconds to add the set in batches of ``batch`` rows (each a commit, with the writer's
    segment merges), with the keyword index on its text and with keyword columns the rows do
    not hold (no postings: what a table of vectors alone costs); wall-clock and CPU time (this
    process's: the part other processes on a loaded machine do not inflate), the best of
    ``rounds`` alternating runs."""
    import vecstore

    out: dict[str, float] = {}
    for r in range(rounds):
        for label, columns in (("with postings", keyword_columns(s)), ("without", ["absent"])):
            path = workdir / f"writes-{label}-{r}"
            if True:
                tbl = vecstore.connect(path).create_table("t", dim=s.query_vectors.shape[1],
                                                           keyword_columns=columns)
                wall, cpu = time.perf_counter(), time.process_time()
                for start in range(0, s.rows.num_rows, batch):
                    tbl.add(s.rows.slice(start, batch))
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            out[f"{label}: wall s"] = min(out.get(f"{label}: wall s", math.inf), wall)
            out[f"{label}: cpu s"] = min(out.get(f"{label}: cpu s", math.inf), cpu)
            segments = tbl._current().manifest.segments  # the final version's files
            out[f"{label}: bytes"] = sum(e.data.bytes + (e.postings.bytes if e.postings else 0)
                                         for e in segments)
            out[f"{label}: postings bytes"] = sum(e.postings.bytes for e in segments if e.postings)
            shutil.rmtree(path, ignore_errors=True)
    return out


def tantivy_write_cost(s: RetrievalSet, workdir: Path, batch: int) -> dict[str, float]:
    """tantivy committing the same batches (one commit per batch, like vecstore's adds)."""
    import tantivy

    builder = tantivy.SchemaBuilder()
    builder.add_text_field("id", stored=True, tokenizer_name="raw")
    builder.add_text_field("body", stored=False, tokenizer_name="en_stem")
    path = workdir / "tantivy-writes"
    path.mkdir()
    index = tantivy.Index(builder.build(), path=str(path))
    writer = index.writer(heap_size=64_000_000, num_threads=1)
    ids, texts = s.rows.column("id").to_pylist(), texts_of(s)
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(ids), batch):
        for i, text in zip(ids[start:start + batch], texts[start:start + batch], strict=True):
            writer.add_document(tantivy.Document(id=i, body=text))
        writer.commit()
    writer.wait_merging_threads()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"tantivy: wall s": wall, "tantivy: cpu s": cpu,
            "tantivy: bytes": sum(f.stat().st_size for f in path.rglob("*") if f.is_file())}


# --------------------------------------------------------------------------- report


def summary(results: dict[str, Any]) -> str:
    lines = ["| set | rows | queries | " + " | ".join(results["columns"]) + " |",
             "|---|---|---|" + "---|" * len(results["columns"])]
    for name, r in results["sets"].items():
        cells = []
        for c in results["columns"]:
            v = r["runs"].get(c)
            cells.append("" if v is None else f"{np.mean(v['ndcg']):.3f}")
        lines.append(f"| {name} | {r['meta']['rows']:,} | {len(r['queries'])} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare(r: dict[str, Any], label: str) -> str:
    """``label`` against the better of vector and keyword on this set: paired bootstrap."""
    v, kw = np.mean(r["runs"]["vector"]["ndcg"]), np.mean(r["runs"]["keyword"]["ndcg"])
    better = "vector" if v >= kw else "keyword"
    a = np.asarray(r["runs"][label]["ndcg"])
    b = np.asarray(r["runs"][better]["ndcg"])
    mean, lo, hi = bootstrap(a - b)
    rel = (a.mean() / b.mean() - 1) * 100 if b.mean() else float("nan")
    return (f"{label} - {better}: {mean:+.4f} nDCG ({rel:+.1f}%), 95% CI {lo:+.4f}..{hi:+.4f}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--sets", default="limit,scifact,qmsum")
    p.add_argument("--qmsum-meetings", type=int, default=40)
    p.add_argument("--no-peers", action="store_true", help="skip bm25s and tantivy")
    p.add_argument("--no-rerank", action="store_true", help="skip the feedback reranker")
    p.add_argument("--write-batch", type=int, default=100, help="rows per add() in the write-cost run")
    p.add_argument("--json", type=Path, default=None)
    p.add_argument("--prepare", action="store_true",
                   help="only embed the sets into the cache (the slow part; run it first, in the background)")
    args = p.parse_args(argv)
    cache = args.cache or default_cache_dir()
    import vecstore

    results: dict[str, Any] = {"sets": {}, "environment": f"{platform.platform()}, {os.cpu_count()} CPUs, "
                               f"Python {platform.python_version()}"}
    columns: list[str] = []
    for name in args.sets.split(","):
        if name == "limit":
            s = load_limit(cache)
        elif name == "scifact":
            s = load_scifact(args.data, cache)
        elif name == "qmsum":
            s = load_qmsum(args.data, cache, args.qmsum_meetings)
        else:
            raise SystemExit(f"unknown set {name!r}; expected limit, scifact or qmsum")
        print(f"{s.name}: {s.meta}", file=sys.stderr, flush=True)
        if args.prepare:
            continue
        workdir = Path(tempfile.mkdtemp(prefix="vecstore-retrieval-"))
        try:
            db = vecstore.connect(workdir / "store")
            tbl, add_seconds = build_table(db, s)
            runs = vecstore_runs(tbl, s, rerank=not args.no_rerank)
            entry: dict[str, Any] = {"meta": s.meta, "queries": s.query_ids, "add_seconds": add_seconds,
                                     "runs": runs}
            if not args.no_peers:
                runs.update(bm25s_runs(s))
                runs["tantivy"] = tantivy_run(s, workdir)
                entry["keyword_qps"] = keyword_speed(s, tbl, workdir)
                if name == "scifact":
                    entry["statistics_after_deletes"] = statistics_after_deletes(workdir)
                    entry["write_cost"] = {**write_cost(s, workdir, args.write_batch),
                                           **tantivy_write_cost(s, workdir, args.write_batch)}
                    print(f"  write cost: {entry['write_cost']}", file=sys.stderr)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        results["sets"][s.name] = entry
        columns += [c for c in runs if c not in columns]
        for label in dict.fromkeys(c for c in runs if c.startswith("hybrid ")):
            if label in runs:
                print(f"  {compare(entry, label)}", file=sys.stderr)
    if args.prepare:
        return 0
    results["columns"] = columns
    print(summary(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
