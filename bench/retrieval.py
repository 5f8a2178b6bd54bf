"""Keyword, vector and hybrid retrieval quality (nDCG@10) through vecstore, beside bm25s and tantivy.

    python -m bench.retrieval                          # LIMIT-style, SciFact, QMSum (40 meetings)
    python -m bench.retrieval --sets limit,scifact     # a subset
    python -m bench.retrieval --json out.json --markdown out.md

Sets (``bench/retrieval_data.py``; vectors from all-MiniLM-L6-v2, embedded once and cached under
``$VECSTORE_BENCH_CACHE``, default ``~/.cache/vecstore-bench``; run ``python -m
bench.retrieval_data`` first, it takes 30-60 minutes on two loaded cores):

- **LIMIT-style**: 46 people, each document listing what the person likes; 1,000 queries "Who
  likes X?", each with exactly two relevant documents (Weller et al., 2025), generated here;
- **SciFact** (BEIR, test split: 5,183 abstracts, 300 claims, graded qrels); rows hold
  ``title`` and ``text``, the keyword index covers both (as BEIR's BM25 does);
- **QMSum**: the 40 meetings with the most specific queries, chunked by ``add_documents``'s
  defaults (128-token chunks, 16 overlap, "context" embeddings); a chunk is relevant when it
  overlaps the query's evidence span.

Every figure comes from the public API: ``tbl.search(text, mode=..., vector=qvec)``, with
``.fusion(...)`` and ``.rerank("feedback")``, ``limit(10)``. Beside it: bm25s 0.3.16
(``method="lucene"``, same k1/b) on the same text, once with vecstore's analyzer's terms (same
analyzer settings) and once with bm25s's own tokenizer (English stopwords, PyStemmer); tantivy
0.27 (its ``en_stem`` analyzer with English stopwords). Metrics are computed here (nDCG@10 with
graded gains and the ideal DCG over every judged document; paired bootstrap over queries) until
``vecstore.evaluation`` lands.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.retrieval_data import (
    DEFAULT_DATA_DIR,
    RetrievalSet,
    default_cache_dir,
    load_limit,
    load_qmsum,
    load_scifact,
)

K = 10
FUSIONS: list[tuple[str, dict[str, Any]]] = [
    ("rrf", {"k": 60}), ("rrf", {"k": 2}), ("weighted", {"alpha": 0.5}), ("zscore", {"alpha": 0.5}),
]


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
                if name == "scifact":
                    entry["write_cost"] = {**write_cost(s, workdir, args.write_batch),
                                           **tantivy_write_cost(s, workdir, args.write_batch)}
                    print(f"  write cost: {entry['write_cost']}", file=sys.stderr)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        results["sets"][s.name] = entry
        columns += [c for c in runs if c not in columns]
        for label in ("hybrid (default)", *[c for c in runs if c.startswith("hybrid ")]):
            if label in runs:
                print(f"  {compare(entry, label)}", file=sys.stderr)
    results["columns"] = columns
    print(summary(results))
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
