"""Retrieval quality of vecstore's chunk embeddings (QMSum) and of whole abstracts (SciFact).

    python -m bench quality                      # 6 QMSum meetings, every variant, then SciFact
    python -m bench quality --all                # all 232 meetings (1,576 specific queries)
    python -m bench quality --quick              # 2 meetings, naive and late at 128 tokens, 400 abstracts
    python -m bench quality --skip-scifact --variants 128/naive,128/late --meetings 3

**QMSum** (``--data``/qmsum): meetings are ingested with ``Table.add_documents`` (default model,
token chunker) once per variant; every ``specific`` query is searched with ``.exact()`` both
restricted to its own meeting (``.where("doc_id = ?", meeting)``) and over all the meetings
ingested. A hit is relevant when its span ``[char_start, char_end)`` overlaps an evidence span
of the query's meeting.

- nDCG@10 (:func:`vecstore.evaluation.ndcg_from_gains`): binary gains, ``1 / log2(rank + 1)``;
  the ideal DCG assumes ``min(10, R)`` relevant hits, ``R`` being the number of chunks of the
  meeting (in that variant's chunking) that overlap an evidence span.
- recall@10: the fraction of the query's evidence spans that at least one of the top 10 hits
  overlaps (most queries have one span, so mostly "was the evidence found at all").
- MRR@10: the reciprocal rank of the first relevant hit (0 past rank 10).

Each variant is compared with naive chunking *of the same chunk size* by a paired bootstrap over
queries (:func:`vecstore.evaluation.paired_bootstrap`, ``--resamples``, seeded): the 95%
interval of the mean difference of nDCG@10.

**SciFact** (``--data``/scifact, BEIR test split = the queries of ``qrels.tsv`` with split
``test``, read with :func:`vecstore.evaluation.load_qrels`; nDCG@10 by
:func:`vecstore.evaluation.ndcg_at_k`): each abstract is one row whose text is ``title + " " +
text``, added to a table with ``embedder="default"`` and searched by the query text with
``.exact()``; beside it, the same model used directly (``SentenceTransformer.encode`` + an exact
NumPy scan). With ``--direct full`` (the default on a GPU) every abstract is encoded twice; with
``--direct sample`` (the default on a CPU, where an encoding pass of the 5,183 abstracts takes
minutes) a seeded sample is re-encoded directly and compared with the vectors vecstore stored,
and the direct scan then runs over the stored vectors with directly encoded queries.

Chunk tables are cached under ``$VECSTORE_BENCH_CACHE`` (default ``~/.cache/vecstore-bench``)
keyed by the variant, the meetings, the model and the source of ``vecstore/ingest``; ``--no-cache``
re-embeds. Prints a markdown section; ``--json PATH`` writes every per-query figure.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.feather as feather

from bench.common import ScenarioParser, pin_threads, torch_line, write_json
from bench.data import default_cache_dir, read_jsonl
from vecstore.evaluation import (
    load_qrels,
    load_queries,
    ndcg_at_k,
    ndcg_from_gains,
    paired_bootstrap,
    reciprocal_rank,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CACHE_FORMAT = 1
K = 10


# --------------------------------------------------------------------------- variants


@dataclass(frozen=True)
class Variant:
    """One way of chunking and embedding the meetings."""

    key: str
    """``"<chunk_tokens>/<name>"``, what ``--variants`` selects."""
    label: str
    chunking: str
    chunk_tokens: int
    overlap: int = 16
    window_tokens: int | None = None
    centred: bool = False
    title: bool = False
    """Give each meeting a ``title`` attribute (QMSum has none: ``"<domain> meeting"``)."""

    def window(self) -> Any:
        from vecstore.ingest import WindowOptions

        if self.window_tokens is None and not self.centred:
            return None  # the pipeline's default WindowOptions()
        return WindowOptions(window_tokens=self.window_tokens, centred=self.centred)

    def spec(self) -> dict[str, Any]:
        return {
            "chunking": self.chunking,
            "chunk_tokens": self.chunk_tokens,
            "overlap": self.overlap,
            "window_tokens": self.window_tokens,
            "centred": self.centred,
            "title": self.title,
        }


def all_variants() -> list[Variant]:
    out: list[Variant] = []
    for ct in (128, 256):
        out += [
            Variant(f"{ct}/naive", "naive", "naive", ct),
            Variant(f"{ct}/context", "context", "context", ct),
            Variant(f"{ct}/late", "late (sliding windows, stride 1/2)", "late", ct),
            Variant(f"{ct}/late+naive", "late+naive (mean)", "late+naive", ct),
        ]
        if ct == 128:
            out += [
                Variant(f"{ct}/late-c192", "late, centred 192-token window", "late", ct, 16, 192, True),
                Variant(f"{ct}/late-c254", "late, centred full window (254)", "late", ct, 16, None, True),
                Variant(f"{ct}/late-c254-title", "late, centred 254 + title", "late", ct, 16, None, True,
                        title=True),
                Variant(f"{ct}/context-title", "context + title", "context", ct, title=True),
            ]
    return out


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Meeting:
    id: str
    text: str
    domain: str
    split: str


@dataclass(frozen=True)
class QmsumQuery:
    id: str
    text: str
    meeting: str
    spans: tuple[tuple[int, int], ...]


def load_qmsum(
    data_dir: Path, n_meetings: int | None, types: Sequence[str], seed: int
) -> tuple[list[Meeting], list[QmsumQuery]]:
    """The meetings with the most queries of ``types`` (ties in a seeded order), and their queries."""
    root = data_dir / "qmsum"
    meetings = {
        d["id"]: Meeting(d["id"], d["text"], d.get("domain") or "", d.get("split") or "")
        for d in read_jsonl(root / "corpus.jsonl")
    }
    queries = [
        QmsumQuery(q["id"], q["text"], q["doc_id"], tuple((int(s), int(e)) for s, e in q["evidence_chars"]))
        for q in read_jsonl(root / "queries.jsonl")
        if q["type"] in types and q.get("evidence_chars")
    ]
    counts: dict[str, int] = {}
    for q in queries:
        counts[q.meeting] = counts.get(q.meeting, 0) + 1
    ids = sorted(counts)
    order = np.random.default_rng(seed).permutation(len(ids))
    ranked = sorted((ids[i] for i in order), key=lambda m: -counts[m])  # stable: ties stay shuffled
    chosen = ranked if n_meetings is None else ranked[:n_meetings]
    keep = set(chosen)
    return [meetings[m] for m in sorted(chosen)], [q for q in queries if q.meeting in keep]


# --------------------------------------------------------------------------- metrics


@dataclass
class QueryScores:
    ndcg: float
    recall: float
    rr: float


def score_hits(hits: Sequence[tuple[str, int, int]], q: QmsumQuery, n_relevant: int) -> QueryScores:
    """``hits``: ``(doc_id, char_start, char_end)`` best first. A hit is relevant when it is in the
    query's meeting and overlaps one of its evidence spans; recall counts the spans found."""
    gains: list[float] = []
    found: set[int] = set()
    for doc, start, end in hits[:K]:
        hit = [j for j, (s, e) in enumerate(q.spans) if start < e and s < end] if doc == q.meeting else []
        gains.append(1.0 if hit else 0.0)
        found.update(hit)
    return QueryScores(
        ndcg_from_gains(gains, [1.0] * n_relevant, K), len(found) / len(q.spans), reciprocal_rank(gains, K)
    )


# --------------------------------------------------------------------------- QMSum


def _source_hash() -> str:
    """Of vecstore's ingest code, so that a cache entry dies with the code that made it."""
    import vecstore

    root = Path(vecstore.__file__).parent
    h = hashlib.sha256()
    for p in sorted((root / "ingest").glob("*.py")):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _cache_path(cache_dir: Path, v: Variant, meetings: Sequence[Meeting], model_id: str) -> Path:
    h = hashlib.sha256()
    payload = {
        "format": CACHE_FORMAT,
        "variant": v.spec(),
        "meetings": [(m.id, hashlib.sha256(m.text.encode()).hexdigest()[:16]) for m in meetings],
        "model": model_id,
        "code": _source_hash(),
    }
    h.update(json.dumps(payload, sort_keys=True).encode())
    return cache_dir / f"qmsum-chunks-{v.key.replace('/', '_')}-{h.hexdigest()[:20]}.arrow"


def _documents(meetings: Sequence[Meeting], title: bool) -> list[dict[str, Any]]:
    docs = []
    for m in meetings:
        doc: dict[str, Any] = {"id": m.id, "text": m.text, "domain": m.domain, "split": m.split}
        if title:
            doc["title"] = f"{m.domain} meeting"
        docs.append(doc)
    return docs


def ingest(
    db: Any, v: Variant, meetings: Sequence[Meeting], cache_dir: Path | None, batch: int
) -> tuple[Any, dict[str, Any]]:
    """A table holding the meetings chunked and embedded as ``v`` says."""
    name = "q_" + v.key.replace("/", "_").replace("+", "_")
    tbl = db.create_table(name, embedder="default")
    path = _cache_path(cache_dir, v, meetings, tbl.embedder.model_id) if cache_dir is not None else None
    info: dict[str, Any] = {"cached": False}
    if path is not None and path.is_file():
        t = time.perf_counter()
        tbl.add(feather.read_table(path))
        info.update(cached=True, seconds=time.perf_counter() - t, chunks=len(tbl))
        return tbl, info
    docs = _documents(meetings, v.title)
    t = time.perf_counter()
    chunks = 0
    for start in range(0, len(docs), batch):
        report = tbl.add_documents(
            docs[start : start + batch],
            chunking=v.chunking,
            chunk_tokens=v.chunk_tokens,
            overlap=v.overlap,
            window=v.window(),
            progress=False,
        )
        chunks += report.chunks
        done = min(start + batch, len(docs))
        elapsed = time.perf_counter() - t
        print(f"  {v.key}: {done}/{len(docs)} meetings, {chunks} chunks, {chunks / elapsed:.0f} chunks/s",
              file=sys.stderr, flush=True)
    info.update(seconds=time.perf_counter() - t, chunks=chunks)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        feather.write_feather(tbl.to_arrow(with_vectors=True), tmp)
        os.replace(tmp, path)
    return tbl, info


def relevant_counts(tbl: Any, queries: Sequence[QmsumQuery]) -> list[int]:
    """For each query, how many chunks of its meeting overlap one of its evidence spans."""
    chunks = tbl.to_arrow(["doc_id", "char_start", "char_end"])
    by_doc: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    doc = np.asarray(chunks.column("doc_id").to_pylist(), dtype=object)
    cs = chunks.column("char_start").to_numpy()
    ce = chunks.column("char_end").to_numpy()
    for d in set(doc.tolist()):
        sel = doc == d
        by_doc[d] = (cs[sel], ce[sel])
    out = []
    for q in queries:
        s, e = by_doc[q.meeting]
        hit = np.zeros(len(s), dtype=bool)
        for a, b in q.spans:
            hit |= (s < b) & (a < e)
        out.append(int(hit.sum()))
    return out


def evaluate(tbl: Any, queries: Sequence[QmsumQuery]) -> dict[str, list[float]]:
    n_rel = relevant_counts(tbl, queries)
    cols = ("doc_id", "char_start", "char_end")
    metrics = ("ndcg", "recall", "rr")
    out: dict[str, list[float]] = {f"{scope}_{m}": [] for scope in ("in", "all") for m in metrics}
    for q, r in zip(queries, n_rel, strict=True):
        base = tbl.search(q.text).exact().limit(K).select(*cols)
        for scope, query in (("in", base.where("doc_id = ?", q.meeting)), ("all", base)):
            hits = [(h["doc_id"], h["char_start"], h["char_end"]) for h in query.to_list()]
            s = score_hits(hits, q, r)
            out[f"{scope}_ndcg"].append(s.ndcg)
            out[f"{scope}_recall"].append(s.recall)
            out[f"{scope}_rr"].append(s.rr)
    out["n_relevant"] = [float(x) for x in n_rel]
    return out


def run_qmsum(args: argparse.Namespace, variants: Sequence[Variant], save: Any) -> dict[str, Any]:
    """Every variant's per-query figures; ``save(part)`` is called after each variant."""
    import vecstore
    from vecstore.ingest import get_embedder

    n = None if args.all else args.meetings
    meetings, queries = load_qmsum(args.data, n, args.types.split(","), args.seed)
    chars = sum(len(m.text) for m in meetings)
    print(f"QMSum: {len(meetings)} meetings ({chars:,} characters), {len(queries)} queries", file=sys.stderr)
    emb = get_embedder("default")
    emb.embed_queries([q.text for q in queries])  # fills the embedder's cache: searches reuse these
    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    part: dict[str, Any] = {
        "meetings": [m.id for m in meetings],
        "characters": chars,
        "queries": [q.id for q in queries],
        "query_meetings": [q.meeting for q in queries],
        "types": args.types,
        "per_query": {},
        "ingest": {},
    }
    workdir = Path(tempfile.mkdtemp(prefix="vecstore-quality-"))
    try:
        db = vecstore.connect(workdir)
        for v in variants:
            tbl, info = ingest(db, v, meetings, cache_dir, args.batch_meetings)
            t = time.perf_counter()
            scores = evaluate(tbl, queries)
            info["search_seconds"] = time.perf_counter() - t
            part["per_query"][v.key] = scores
            part["ingest"][v.key] = info
            print(f"  {v.key}: nDCG@10 in-meeting {np.mean(scores['in_ndcg']):.4f}, "
                  f"all {np.mean(scores['all_ndcg']):.4f}"
                  f" ({info['chunks']} chunks, ingest {info['seconds']:.0f} s"
                  f"{' from cache' if info['cached'] else ''}, search {info['search_seconds']:.0f} s)",
                  file=sys.stderr, flush=True)
            db.drop_table(tbl.name)
            save(part)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return part


def query_meetings(part: dict[str, Any]) -> list[str]:
    if "query_meetings" in part:
        return list(part["query_meetings"])
    return [q.rsplit("-", 1)[0] for q in part["queries"]]  # QMSum ids: "<meeting>-s<n>"


def confidence(
    part: dict[str, Any], resamples: int, seed: int, against: str = "naive"
) -> dict[str, dict[str, list[float]]]:
    """Paired bootstrap of each variant against ``against`` (a variant name) of the same chunk
    size: over queries for every metric, and over meetings (``*_by_meeting``) for nDCG@10."""
    out: dict[str, dict[str, list[float]]] = {}
    pq = part["per_query"]
    groups = query_meetings(part)
    for key in pq:
        base = f"{key.split('/')[0]}/{against}"
        if base not in pq or key == base:
            continue
        out[key] = {}
        for metric in ("in_ndcg", "all_ndcg", "in_rr", "all_rr", "in_recall", "all_recall"):
            a, b = pq[key][metric], pq[base][metric]
            c = paired_bootstrap(a, b, resamples=resamples, seed=seed)
            out[key][metric] = [c.delta, c.ci_low, c.ci_high]
            if metric.endswith("ndcg"):  # queries about one meeting are not independent
                c = paired_bootstrap(a, b, resamples=resamples, seed=seed, groups=groups)
                out[key][f"{metric}_by_meeting"] = [c.delta, c.ci_low, c.ci_high]
    return out


# --------------------------------------------------------------------------- SciFact


def load_scifact(data_dir: Path) -> tuple[list[str], list[str], dict[str, str], dict[str, dict[str, int]]]:
    """Abstract ids and ``title + " " + text``, the test queries and their judgements."""
    root = data_dir / "scifact"
    ids, texts = [], []
    for d in read_jsonl(root / "corpus.jsonl"):
        ids.append(str(d["id"]))
        texts.append(f"{d.get('title') or ''} {d['text']}".strip())
    qrels = load_qrels(root / "qrels.tsv", split="test")
    queries = {qid: text for qid, text in load_queries(root / "queries.jsonl").items() if qid in qrels}
    return ids, texts, queries, qrels


def run_scifact(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    import vecstore
    from vecstore.ingest import SentenceTransformerEmbedder, get_embedder

    ids, texts, queries, qrels = load_scifact(args.data)
    if args.scifact_abstracts is not None and args.scifact_abstracts < len(ids):
        # a quick check: every judged abstract plus a seeded sample of the others
        judged = {d for rels in qrels.values() for d in rels}
        others = [i for i, d in enumerate(ids) if d not in judged]
        n_more = max(0, args.scifact_abstracts - (len(ids) - len(others)))
        pick = set(np.random.default_rng(args.seed).choice(others, min(n_more, len(others)), replace=False))
        keep = [i for i, d in enumerate(ids) if d in judged or i in pick]
        ids, texts = [ids[i] for i in keep], [texts[i] for i in keep]
    qids = sorted(queries, key=int)
    qtexts = [queries[q] for q in qids]
    direct_mode = args.direct or ("full" if torch.cuda.is_available() else "sample")
    print(f"SciFact: {len(ids)} abstracts, {len(qids)} test queries, direct={direct_mode}", file=sys.stderr)
    emb = get_embedder("default")
    if not isinstance(emb, SentenceTransformerEmbedder):
        raise SystemExit(f"expected the default sentence-transformers embedder, got {emb!r}")
    model = emb.model  # the same SentenceTransformer vecstore loaded: the direct path calls it bare
    out: dict[str, Any] = {"abstracts": len(ids), "queries": len(qids), "direct": direct_mode}
    workdir = Path(tempfile.mkdtemp(prefix="vecstore-scifact-"))
    try:
        db = vecstore.connect(workdir)
        tbl = db.create_table("scifact", embedder="default")
        t = time.perf_counter()
        tbl.add([{"id": i, "text": x} for i, x in zip(ids, texts, strict=True)])
        out["vecstore_add_seconds"] = time.perf_counter() - t
        t = time.perf_counter()
        vs_ranked = [tbl.search(q).exact().limit(K).select("id").hits().ids for q in qtexts]
        out["vecstore_search_seconds"] = time.perf_counter() - t
        stored = tbl.to_arrow(["id"], with_vectors=True)
        row_of = {d: r for r, d in enumerate(stored.column("id").to_pylist())}
        stored_vecs = np.asarray(stored.column("vector").combine_chunks().flatten().to_numpy(), np.float32)
        stored_vecs = stored_vecs.reshape(-1, tbl.dim)[[row_of[d] for d in ids]]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    def encode(batch: Sequence[str]) -> np.ndarray:
        return np.asarray(model.encode(list(batch), batch_size=32, convert_to_numpy=True,
                                       show_progress_bar=False), dtype=np.float32)

    t = time.perf_counter()
    if direct_mode == "full":
        doc_vecs = encode(texts)
        compared = np.arange(len(texts))
    else:
        rng = np.random.default_rng(args.seed)
        compared = np.sort(rng.choice(len(texts), min(args.direct_sample, len(texts)), replace=False))
        doc_vecs = stored_vecs
        sample_vecs = encode([texts[i] for i in compared])
    out["direct_encode_seconds"] = time.perf_counter() - t
    fresh = doc_vecs[compared] if direct_mode == "full" else sample_vecs
    diff = np.abs(fresh - stored_vecs[compared])
    cos = (fresh * stored_vecs[compared]).sum(1) / (
        np.linalg.norm(fresh, axis=1) * np.linalg.norm(stored_vecs[compared], axis=1))
    out["vectors_compared"] = int(len(compared))
    out["max_abs_diff"] = float(diff.max())
    out["min_cosine"] = float(cos.min())
    qvecs = encode(qtexts)
    scores = qvecs @ doc_vecs.T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :K]
    direct_ranked = [[ids[j] for j in row] for row in top]
    vs = [ndcg_at_k(r, qrels[q], K) for r, q in zip(vs_ranked, qids, strict=True)]
    direct = [ndcg_at_k(r, qrels[q], K) for r, q in zip(direct_ranked, qids, strict=True)]
    out["ndcg_vecstore"] = float(np.mean(vs))
    out["ndcg_direct"] = float(np.mean(direct))
    out["same_top10"] = float(np.mean([a == b for a, b in zip(vs_ranked, direct_ranked, strict=True)]))
    out["per_query"] = {"vecstore": vs, "direct": direct}
    return out


# --------------------------------------------------------------------------- report


def _ci(t: Sequence[float]) -> str:
    mean, lo, hi = t
    return f"{mean:+.4f} ({lo:+.4f}..{hi:+.4f})"


def markdown(payload: dict[str, Any], resamples: int, seed: int) -> str:
    """The markdown section for a run's payload (see ``--json``)."""
    lines = ["### Retrieval quality: QMSum chunk embeddings and SciFact abstracts", ""]
    runs = zip(payload["commands"], payload["environments"], strict=True)
    lines += [f"Command: `{c}`; {e}." for c, e in runs]
    lines.append("")
    q = payload.get("qmsum")
    if q is not None:
        labels = {v.key: v for v in all_variants()}
        order = [v.key for v in all_variants() if v.key in q["per_query"]]
        ci = confidence(q, resamples, seed)
        lines += [
            f"QMSum: {len(q['meetings'])} meetings ({q['characters']:,} characters), {len(q['queries']):,} "
            f"`{q['types']}` queries; all-MiniLM-L6-v2 (256-token input), token chunker, overlap 16, "
            "`.exact()` search, k = 10. *In*: `.where(\"doc_id = ?\", meeting)`; *all*: "
            "unrestricted over the meetings ingested. Δ: mean paired difference of nDCG@10 against "
            f"naive chunking of the same size, with the 95% paired-bootstrap interval ({resamples:,} "
            f"resamples over queries, seed {seed}).",
            "",
            "| chunk tokens | variant | chunks | nDCG@10 in | Δ vs naive (95% CI) | recall@10 in | "
            "MRR@10 in | nDCG@10 all | Δ vs naive (95% CI) | recall@10 all | ingest s |",
            "|---:|---|---:|---:|---|---:|---:|---:|---|---:|---:|",
        ]
        for key in order:
            v, info = labels[key], q["ingest"][key]
            m = {name: float(np.mean(values)) for name, values in q["per_query"][key].items()}
            d_in = _ci(ci[key]["in_ndcg"]) if key in ci else "—"
            d_all = _ci(ci[key]["all_ndcg"]) if key in ci else "—"
            secs = f"{info['seconds']:.0f}" + (" (cache)" if info["cached"] else "")
            lines.append(
                f"| {v.chunk_tokens} | {v.label} | {info['chunks']:,} | {m['in_ndcg']:.4f} | {d_in} | "
                f"{m['in_recall']:.4f} | {m['in_rr']:.4f} | {m['all_ndcg']:.4f} | "
                f"{d_all} | {m['all_recall']:.4f} | {secs} |"
            )
        vs_late = confidence(q, resamples, seed, against="late")
        lines += [
            "",
            "The same variants: other paired differences against naive of the same size (95% intervals "
            "over queries; *by meeting*: resampling whole meetings instead), and nDCG@10 against the "
            "pipeline's default `chunking=\"late\"` of the same size.",
            "",
            "| chunk tokens | variant | Δ nDCG@10 in, by meeting | Δ MRR@10 in | Δ recall@10 in | "
            "Δ MRR@10 all | Δ nDCG@10 in vs late | Δ nDCG@10 all vs late |",
            "|---:|---|---|---|---|---|---|---|",
        ]
        for key in order:
            if key not in ci and key not in vs_late:
                continue
            c, d = ci.get(key), vs_late.get(key)
            cells = [_ci(c[m]) if c else "—" for m in ("in_ndcg_by_meeting", "in_rr", "in_recall", "all_rr")]
            cells += [_ci(d[m]) if d else "—" for m in ("in_ndcg", "all_ndcg")]
            lines.append(f"| {labels[key].chunk_tokens} | {labels[key].label} | " + " | ".join(cells) + " |")
        lines += [
            "",
            _best(q, ci, vs_late, "in_ndcg", "in-meeting"),
            _best(q, ci, vs_late, "all_ndcg", "unrestricted"),
            "",
        ]
    s = payload.get("scifact")
    if s is not None:
        lines += [
            f"SciFact (BEIR test split, {s['queries']} queries, {s['abstracts']:,} abstracts as "
            "`title + \" \" + text`), nDCG@10:",
            "",
            "| path | nDCG@10 |",
            "|---|---:|",
            f"| vecstore: `tbl.add` text rows, `tbl.search(text).exact()` | {s['ndcg_vecstore']:.4f} |",
            f"| sentence-transformers `encode` + exact NumPy scan | {s['ndcg_direct']:.4f} |",
            f"| difference (points) | {100 * (s['ndcg_vecstore'] - s['ndcg_direct']):+.2f} |",
            "",
            f"Identical top-10 lists for {100 * s['same_top10']:.1f}% of queries. Vectors stored by "
            f"vecstore vs `encode` ({s['vectors_compared']:,} abstracts, direct={s['direct']}): max abs "
            f"difference {s['max_abs_diff']:.2e}, min cosine {s['min_cosine']:.7f}. vecstore add (embedding "
            f"included) {s['vecstore_add_seconds']:.0f} s; direct encode {s['direct_encode_seconds']:.0f} s.",
            "",
        ]
    return "\n".join(lines)


def _best(q: dict[str, Any], ci: dict[str, Any], vs_late: dict[str, Any], metric: str, what: str) -> str:
    """The best variant overall and at each chunk size (sizes are not comparable by nDCG: the
    ideal DCG counts chunks, and larger chunks overlap the evidence more easily)."""
    means = {key: float(np.mean(pq[metric])) for key, pq in q["per_query"].items()}
    parts = []
    for size in sorted({k.split("/")[0] for k in means}, key=int):
        at = {k: m for k, m in means.items() if k.split("/")[0] == size}
        key = max(at, key=at.__getitem__)
        text = f"{size} tokens: `{key}` ({at[key]:.4f}"
        if key in ci:
            text += f"; vs naive {_ci(ci[key][metric])}"
        if key in vs_late:
            text += f"; vs late {_ci(vs_late[key][metric])}"
        parts.append(text + ")")
    return f"Best {what} nDCG@10 at " + "; at ".join(parts) + "."


def merge(payloads: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One payload from several runs over the same meetings and queries (e.g. variants split
    across processes)."""
    out: dict[str, Any] = {"commands": [], "environments": []}
    for p in payloads:
        out["commands"] += p["commands"]
        out["environments"] += p["environments"]
        if "scifact" in p:
            out["scifact"] = p["scifact"]
        q = p.get("qmsum")
        if q is None:
            continue
        if "qmsum" not in out:
            out["qmsum"] = {**q, "per_query": dict(q["per_query"]), "ingest": dict(q["ingest"])}
            continue
        if q["queries"] != out["qmsum"]["queries"]:
            raise SystemExit("cannot merge runs over different meetings or queries")
        out["qmsum"]["per_query"].update(q["per_query"])
        out["qmsum"]["ingest"].update(q["ingest"])
    return out


def configure(ap: ScenarioParser) -> None:
    ap.add_sized("--meetings", type=int, full=6, quick=2, help="the N meetings with the most queries")
    ap.add_argument("--all", action="store_true", help="every meeting (232)")
    ap.add_argument("--types", default="specific", help="query types, comma-separated (specific,topic)")
    ap.add_sized("--variants", full="all", quick="128/naive,128/late",
                 help="comma-separated keys (--list-variants), or all")
    ap.add_argument("--list-variants", action="store_true")
    ap.add_sized("--resamples", type=int, full=2000, quick=1000, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-meetings", type=int, default=25, help="meetings per add_documents call")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--no-cache", action="store_true")
    ap.add_argument("--skip-qmsum", action="store_true")
    ap.add_argument("--skip-scifact", action="store_true")
    ap.add_argument("--direct", choices=("full", "sample"), default=None,
                    help="SciFact direct path: re-encode every abstract or a sample (default: full on a GPU)")
    ap.add_sized("--direct-sample", type=int, full=256, quick=64,
                 help="--direct sample: abstracts encoded again and compared with the stored vectors")
    ap.add_sized("--scifact-abstracts", type=int, full=None, quick=400,
                 help="the judged abstracts plus a sample of others, N in all (default: every abstract)")
    ap.add_argument("--report", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: merge these --json files and print their report")
    ap.set_defaults(threads=os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    """Every QMSum variant, then SciFact; the markdown section (``--json``: every per-query figure)."""
    variants = all_variants()
    if args.list_variants:
        for v in variants:
            print(f"{v.key:22} {v.label}")
        return 0
    if args.report:
        merged = merge([json.loads(p.read_text()) for p in args.report])
        print(markdown(merged, args.resamples, args.seed))
        return 0
    if args.variants != "all":
        wanted = [w.strip() for w in args.variants.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {v.key for v in variants})
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; --list-variants shows them")
        variants = [v for v in variants if v.key in wanted]
    pin_threads(args.threads)
    started = time.perf_counter()
    payload: dict[str, Any] = {"commands": [args.command], "environments": [torch_line()]}

    def save(part: dict[str, Any] | None = None, name: str = "qmsum") -> None:
        if part is not None:
            payload[name] = part
        write_json(args.json, payload)

    if not args.skip_qmsum:
        run_qmsum(args, variants, save)
    if not args.skip_scifact:
        save(run_scifact(args), "scifact")
    payload["environments"][0] += f"; whole run {time.perf_counter() - started:.0f} s"
    save()
    print(markdown(payload, args.resamples, args.seed))
    return 0
