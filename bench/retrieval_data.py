"""Data for ``bench/retrieval.py``: SciFact, a QMSum subset chunked, and a LIMIT-style set, each
with vectors from the default model (all-MiniLM-L6-v2) embedded once and cached.

Embedding is the expensive part on a small CPU (SciFact's 5,183 abstracts take 15-25 minutes on
two loaded cores), so vectors are written to ``$VECSTORE_BENCH_CACHE`` (default
``~/.cache/vecstore-bench``) under a key made of the model id, the set and a hash of every text
embedded; later runs read them in milliseconds. ``python -m bench.retrieval_data`` builds the
caches (run it in the background first).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
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
CACHE_FORMAT = 1

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


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    p.add_argument("--cache", type=Path, default=None)
    p.add_argument("--sets", default="limit,scifact,qmsum")
    p.add_argument("--qmsum-meetings", type=int, default=40)
    args = p.parse_args(argv)
    cache = args.cache or default_cache_dir()
    for name in args.sets.split(","):
        t = time.perf_counter()
        if name == "scifact":
            s = load_scifact(args.data, cache)
        elif name == "qmsum":
            s = load_qmsum(args.data, cache, args.qmsum_meetings)
        elif name == "limit":
            s = load_limit(cache)
        else:
            raise SystemExit(f"unknown set {name!r}")
        print(f"{s.name}: {s.meta} ({time.perf_counter() - t:.0f} s)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
