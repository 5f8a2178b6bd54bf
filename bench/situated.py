"""Situated chunk vectors on two kinds of long documents (QMSum meetings, COVID-QA papers) and
on short ones (SciFact abstracts): every chunking mode, single- and multi-vector, against naive.

    python -m bench situated          # 20 QMSum meetings, 49 COVID-QA papers, 600 SciFact abstracts
    python -m bench situated --quick              # 3 meetings, 8 papers, 120 abstracts
    python -m bench situated --datasets covidqa --variants naive,naive|late

Every variant goes through the public API: ``db.create_table(embedder=...)``,
``tbl.add_documents(docs, chunking=..., chunk_tokens=128, overlap=16)``, then
``tbl.search(query).exact()`` (``.combine(...)`` for the weighted variants), so the figures
measure the chunk vectors, not an approximate search. Multi-vector variants
(``"naive|late"``) keep both vectors per chunk and score a chunk by the max of its vectors'
scores, or the weighted sum the variant names.

**QMSum** (``specific`` queries, the N meetings with most queries, seeded) and **COVID-QA**
(``covidqa-dev``: 49 papers, 841 questions): a hit is relevant when its span overlaps an
evidence span of the query's document. *in*: the search restricted to the query's document
(``.where("doc_id = ?", doc)``); *all*: over every document ingested. nDCG@10 (binary gains,
ideal DCG over the chunks that overlap the evidence), recall@10 of the evidence spans, MRR@10
(:mod:`bench.quality`'s ``score_hits``). **SciFact** (BEIR test split, judged abstracts plus a
seeded sample of the others): abstracts (``title + text``) are chunked like the rest; the hits
of ``limit(50)`` collapse to their first chunk per abstract, judged by document (nDCG@10,
recall@10, MRR@10 from :mod:`vecstore.evaluation`).

Δ: the mean paired difference against naive chunking with its 95% paired-bootstrap interval
(:func:`vecstore.evaluation.paired_bootstrap`, queries resampled). The *rule* for a default: no
interval of Δ entirely below zero on either long-document set (every metric, both scopes), and
at least one entirely above zero. Then the cost of the second vector: disk, resident arrays,
index memory and query time of ``naive`` against the chosen multi-vector mode.

Embeddings are computed once per distinct model input and kept under the bench cache
(:mod:`bench.embed_cache`): a second run, or a mode that shares inputs with another, embeds
nothing.
"""

from __future__ import annotations

import argparse
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

from bench.common import ScenarioParser, log, pin_threads, torch_line, write_json
from bench.data import default_cache_dir, read_jsonl
from bench.quality import K, QmsumQuery, load_qmsum, load_scifact, relevant_counts, score_hits

os.environ.setdefault("HF_HUB_OFFLINE", "1")

LONG_SETS = ("qmsum", "covidqa")
METRICS = ("ndcg", "recall", "rr")
METRIC_NAMES = {"ndcg": "nDCG@10", "recall": "recall@10", "rr": "MRR@10"}


@dataclass(frozen=True)
class Variant:
    """A way of embedding chunks (``chunking``) and, for multi-vector tables, of scoring them."""

    key: str
    label: str
    chunking: str
    combine: Any = None  # None: the table's (max of its vectors)


VARIANTS = (
    Variant("naive", "naive", "naive"),
    Variant("context", "context", "context"),
    Variant("late", "late (254-token windows, stride 1/2)", "late"),
    Variant("late+naive", "late+naive (mean vector)", "late+naive"),
    Variant("context+naive", "context+naive (mean vector)", "context+naive"),
    Variant("naive|context", "max(naive, context) (2 vectors)", "naive|context"),
    Variant("naive|late", "max(naive, late) (2 vectors)", "naive|late"),
    Variant("naive|context|late", "max(naive, context, late) (3 vectors)", "naive|context|late"),
    Variant("0.75naive+0.25context", "0.75 naive + 0.25 context scores", "naive|context",
            {"vector": 0.75, "vector_context": 0.25}),
    Variant("0.75naive+0.25late", "0.75 naive + 0.25 late scores", "naive|late",
            {"vector": 0.75, "vector_late": 0.25}),
    Variant("0.5naive+0.5late", "0.5 naive + 0.5 late scores", "naive|late",
            {"vector": 0.5, "vector_late": 0.5}),
)


# --------------------------------------------------------------------------- data


@dataclass
class DataSet:
    name: str
    docs: list[dict[str, Any]]
    queries: list[QmsumQuery]  # span sets; SciFact: spans empty, judged by ``qrels``
    qrels: dict[str, dict[str, int]] | None = None
    note: str = ""


def covidqa_set(data: Path, n_papers: int | None) -> DataSet:
    root = data / "covidqa-dev"
    docs = [{"id": str(d["id"]), "text": d["text"]} for d in read_jsonl(root / "corpus.jsonl")]
    docs.sort(key=lambda d: d["id"])
    if n_papers is not None:
        docs = docs[:n_papers]
    keep = {d["id"] for d in docs}
    queries = [QmsumQuery(str(q["id"]), q["text"], str(q["doc_id"]),
                          tuple((int(s), int(e)) for s, e in q["evidence_chars"]))
               for q in read_jsonl(root / "queries.jsonl")
               if str(q["doc_id"]) in keep and q["evidence_chars"]]
    chars = sum(len(d["text"]) for d in docs)
    return DataSet("covidqa", docs, queries,
                   note=f"{len(docs)} papers ({chars:,} characters), {len(queries)} questions")


def qmsum_set(data: Path, n_meetings: int, seed: int) -> DataSet:
    meetings, queries = load_qmsum(data, n_meetings, ["specific"], seed)
    docs = [{"id": m.id, "text": m.text} for m in meetings]
    chars = sum(len(m.text) for m in meetings)
    return DataSet("qmsum", docs, list(queries),
                   note=f"{len(meetings)} meetings ({chars:,} characters; the {len(meetings)} with the "
                        f"most `specific` queries, ties in seed-{seed} order), {len(queries)} queries")


def scifact_docs(data: Path, n_abstracts: int | None, seed: int) -> tuple[list[dict[str, Any]], Any]:
    """SciFact abstracts as documents (every judged one plus a seeded sample of the others, N
    in all) and the test queries and judgements."""
    ids, texts, queries, qrels = load_scifact(data)
    if n_abstracts is not None and n_abstracts < len(ids):
        judged = {d for rels in qrels.values() for d in rels}
        others = [i for i, d in enumerate(ids) if d not in judged]
        n_more = max(0, n_abstracts - (len(ids) - len(others)))
        rng = np.random.default_rng(seed)
        pick = set(rng.choice(others, min(n_more, len(others)), replace=False).tolist())
        keep = [i for i, d in enumerate(ids) if d in judged or i in pick]
        ids, texts = [ids[i] for i in keep], [texts[i] for i in keep]
    return [{"id": i, "text": t} for i, t in zip(ids, texts, strict=True)], (queries, qrels)


def scifact_set(data: Path, n_abstracts: int | None, seed: int) -> DataSet:
    docs, (queries, qrels) = scifact_docs(data, n_abstracts, seed)
    qs = [QmsumQuery(q, queries[q], "", ()) for q in sorted(queries, key=int)]
    return DataSet("scifact", docs, qs, qrels=qrels,
                   note=f"{len(docs):,} abstracts (every judged one plus a seeded sample), "
                        f"{len(qs)} test claims")


# --------------------------------------------------------------------------- measuring


def ingest(db: Any, emb: Any, ds: DataSet, chunking: str, batch: int) -> tuple[Any, float]:
    name = f"{ds.name}_{chunking}".replace("|", "_I_").replace("+", "_P_")
    tbl = db.create_table(name, embedder=emb)
    t = time.perf_counter()
    for start in range(0, len(ds.docs), batch):
        tbl.add_documents(ds.docs[start:start + batch], chunking=chunking, chunk_tokens=128,
                          overlap=16, progress=False)
        emb.flush()
        log(f"  {ds.name} {chunking}: {min(start + batch, len(ds.docs))}/{len(ds.docs)} docs, "
            f"{len(tbl)} chunks (cache: {emb.hits} hits, {emb.misses} embedded)")
    return tbl, time.perf_counter() - t


def evaluate_spans(tbl: Any, queries: Sequence[QmsumQuery], combine: Any) -> dict[str, list[float]]:
    n_rel = relevant_counts(tbl, queries)
    cols = ("doc_id", "char_start", "char_end")
    out: dict[str, list[float]] = {f"{s}_{m}": [] for s in ("in", "all") for m in METRICS}
    for q, r in zip(queries, n_rel, strict=True):
        base = tbl.search(q.text).exact().limit(K).select(*cols)
        if combine is not None:
            base = base.combine(combine)
        for scope, query in (("in", base.where("doc_id = ?", q.meeting)), ("all", base)):
            s = score_hits([(h["doc_id"], h["char_start"], h["char_end"]) for h in query.to_list()], q, r)
            out[f"{scope}_ndcg"].append(s.ndcg)
            out[f"{scope}_recall"].append(s.recall)
            out[f"{scope}_rr"].append(s.rr)
    return out


def evaluate_docs(tbl: Any, queries: Sequence[QmsumQuery], qrels: dict[str, dict[str, int]],
                  combine: Any) -> dict[str, list[float]]:
    from vecstore.evaluation import mrr_at_k, ndcg_at_k, recall_at_k

    out: dict[str, list[float]] = {f"all_{m}": [] for m in METRICS}
    for q in queries:
        query = tbl.search(q.text).exact().limit(5 * K).select("doc_id")
        if combine is not None:
            query = query.combine(combine)
        ranked = list(dict.fromkeys(h["doc_id"] for h in query.to_list()))[:K]
        rel = qrels[q.id]
        out["all_ndcg"].append(ndcg_at_k(ranked, rel, K))
        out["all_recall"].append(recall_at_k(ranked, rel, K))
        out["all_rr"].append(mrr_at_k(ranked, rel, K))
    return out


def run_set(db: Any, emb: Any, ds: DataSet, variants: Sequence[Variant], batch: int) -> dict[str, Any]:
    emb.embed_queries([q.text for q in ds.queries])
    emb.flush()
    part: dict[str, Any] = {"note": ds.note, "queries": [q.id for q in ds.queries],
                            "groups": [q.meeting for q in ds.queries], "per_query": {}, "tables": {}}
    tables: dict[str, Any] = {}
    for v in variants:
        if v.chunking not in tables:
            tbl, seconds = ingest(db, emb, ds, v.chunking, batch)
            tables[v.chunking] = tbl
            part["tables"][v.chunking] = {"chunks": len(tbl), "seconds": seconds,
                                          "vectors": list(tbl.config.vectors)}
        tbl = tables[v.chunking]
        t = time.perf_counter()
        if ds.qrels is None:
            scores = evaluate_spans(tbl, ds.queries, v.combine)
        else:
            scores = evaluate_docs(tbl, ds.queries, ds.qrels, v.combine)
        part["per_query"][v.key] = scores
        summary = ", ".join(f"{k} {np.mean(x):.4f}" for k, x in scores.items())
        log(f"  {ds.name} {v.key}: {summary} (search {time.perf_counter() - t:.0f} s)")
    part["_tables"] = tables
    return part


# --------------------------------------------------------------------------- cost


def measure_cost(db: Any, single: Any, multi: Any, queries: Sequence[str], seed: int) -> dict[str, Any]:
    """Disk, resident bytes per row, index memory and query time: ``single`` (one vector per
    chunk) against ``multi`` (the same chunks with two), unfiltered, k = 10."""
    from vecstore.evaluation import tie_aware_recall

    def disk(tbl: Any) -> int:
        data = tbl.path / "data"
        return sum(p.stat().st_size for p in data.glob("*.arrow"))

    qvecs = single.embedder.embed_queries(list(queries))
    out: dict[str, Any] = {"queries": len(qvecs), "rows": len(single)}
    for label, tbl in (("single", single), ("multi", multi)):
        tbl.compact()
        snap_cols = len(tbl.config.vectors)
        entry: dict[str, Any] = {"vectors": snap_cols, "disk_bytes": disk(tbl)}
        dim = tbl.dim
        entry["resident_bytes_per_row"] = snap_cols * (4 * dim + 4 + dim + ((dim + 63) // 64) * 8)
        for mode in ("scan", "hnsw"):
            if mode == "hnsw":
                tbl.create_index("hnsw", progress=False)
                index = tbl._executor.index_view(tbl._current()).index
                entry["hnsw_memory_bytes"] = int(index.memory_bytes)
            for q in qvecs[:20]:  # warm up
                tbl.search(q).limit(K).hits()
            lat, found, kth = [], [], []
            for q in qvecs:
                t = time.perf_counter()
                hits = tbl.search(q).limit(K).hits()
                lat.append(time.perf_counter() - t)
                exact = tbl.search(q).exact().limit(K).hits()
                found.append(hits.scores)
                kth.append(exact.scores[-1])
            entry[f"{mode}_ms_p50"] = float(np.median(lat) * 1e3)
            entry[f"{mode}_ms_mean"] = float(np.mean(lat) * 1e3)
            entry[f"{mode}_recall"] = float(tie_aware_recall(found, kth, K))
        out[label] = entry
    return out


# --------------------------------------------------------------------------- report


def _ci(c: Sequence[float]) -> str:
    return f"{c[0]:+.3f} ({c[1]:+.3f}..{c[2]:+.3f})"


def confidence(part: dict[str, Any], resamples: int, seed: int) -> dict[str, dict[str, list[float]]]:
    from vecstore.evaluation import paired_bootstrap

    pq = part["per_query"]
    out: dict[str, dict[str, list[float]]] = {}
    if "naive" not in pq:
        return out
    for key, scores in pq.items():
        if key == "naive":
            continue
        out[key] = {}
        for metric, values in scores.items():
            c = paired_bootstrap(values, pq["naive"][metric], resamples=resamples, seed=seed)
            out[key][metric] = [c.delta, c.ci_low, c.ci_high]
    return out


def verdict(payload: dict[str, Any], resamples: int, seed: int) -> dict[str, dict[str, Any]]:
    """Per variant: whether it is never worse than naive on a long-document set (no CI below
    zero) and better somewhere (a CI above zero)."""
    out: dict[str, dict[str, Any]] = {}
    sets = [payload["sets"][s] for s in LONG_SETS if s in payload["sets"]]
    if not sets:
        return out
    cis = [confidence(p, resamples, seed) for p in sets]
    for key in cis[0]:
        worse, better, means = [], [], []
        for name, ci in zip([s for s in LONG_SETS if s in payload["sets"]], cis, strict=True):
            for metric, c in ci.get(key, {}).items():
                if c[2] < 0:
                    worse.append(f"{name} {metric}")
                if c[1] > 0:
                    better.append(f"{name} {metric}")
            means.append(float(np.mean([c[0] for c in ci.get(key, {}).values()])))
        # the worst set's mean Δ over its metrics and scopes: how a mode does where it does worst
        out[key] = {"worse": worse, "better": better, "passes": not worse and bool(better),
                    "worst_set_mean_delta": min(means)}
    return out


def chosen(v: dict[str, dict[str, Any]]) -> str | None:
    """Of the modes that meet the rule, the one whose worst long-document set gains most."""
    passing = {k: r["worst_set_mean_delta"] for k, r in v.items() if r["passes"]}
    return max(passing, key=passing.__getitem__) if passing else None


def markdown(payload: dict[str, Any], resamples: int, seed: int) -> str:
    labels = {v.key: v.label for v in VARIANTS}
    lines = ["### Situated chunk vectors on two kinds of long documents, and short ones", "",
             f"Command: `{payload['command']}`; {payload['environment']}.", "",
             "all-MiniLM-L6-v2, token chunker, 128-token chunks, overlap 16, `add_documents` then "
             "`.exact()` search, k = 10. Δ: mean paired difference against naive, 95% paired-bootstrap "
             f"interval ({resamples:,} resamples over queries, seed {seed}). **Bold**: the interval "
             "excludes zero.", ""]
    for name, part in payload["sets"].items():
        ci = confidence(part, resamples, seed)
        scopes = ("in", "all") if name != "scifact" else ("all",)
        for scope in scopes:
            where = {"in": "within the query's document", "all": "across every document"}[scope]
            lines += [f"**{name}**, {part['note']}; search {where}:", "",
                      "| chunk vectors | chunks | nDCG@10 | Δ nDCG@10 | recall@10 | Δ recall@10 | MRR@10 "
                      "| Δ MRR@10 |",
                      "|---|---:|---:|---|---:|---|---:|---|"]
            for key, scores in part["per_query"].items():
                v = next(x for x in VARIANTS if x.key == key)
                cells = [labels[key], f"{part['tables'][v.chunking]['chunks']:,}"]
                for m in METRICS:
                    cells.append(f"{np.mean(scores[f'{scope}_{m}']):.3f}")
                    c = ci.get(key, {}).get(f"{scope}_{m}")
                    text = "—" if c is None else _ci(c)
                    cells.append(f"**{text}**" if c is not None and (c[1] > 0 or c[2] < 0) else text)
                lines.append("| " + " | ".join(cells) + " |")
            lines.append("")
    v = verdict(payload, resamples, seed)
    if v:
        lines += ["The rule for the default (never below naive on QMSum or COVID-QA: no interval "
                  "entirely below zero on any metric or scope; above it somewhere); *worst set*: the "
                  "smaller of the two sets' mean Δ over their metrics and scopes:", "",
                  "| chunk vectors | below naive | above naive | passes | worst set, mean Δ |",
                  "|---|---|---|---|---:|"]
        for key, r in v.items():
            lines.append(f"| {labels[key]} | {', '.join(r['worse']) or '—'} | "
                         f"{', '.join(r['better']) or '—'} | {'yes' if r['passes'] else 'no'} | "
                         f"{r['worst_set_mean_delta']:+.4f} |")
        pick = chosen(v)
        lines += ["", f"Of the modes that pass, the best worst set: **{labels[pick]}**." if pick else
                  "No mode passes: the default stays naive.", ""]
    cost = payload.get("cost")
    if cost:
        s, m = cost["single"], cost["multi"]
        lines += [f"What the second vector costs ({cost['table']}: {cost['rows']:,} chunks, "
                  f"`naive` against `{cost['multi_chunking']}`, {cost['queries']} queries, one thread, "
                  "after `compact()`):", "",
                  "| | naive (1 vector) | 2 vectors | ratio |", "|---|---:|---:|---:|"]
        rows = [("segment files on disk, bytes", "disk_bytes", "{:,.0f}"),
                ("resident vectors + codes per row, bytes", "resident_bytes_per_row", "{:,.0f}"),
                ("hnsw index memory, bytes", "hnsw_memory_bytes", "{:,.0f}"),
                ("scan (binary -> int8 -> float32), ms p50", "scan_ms_p50", "{:.3f}"),
                ("scan recall@10 vs exact", "scan_recall", "{:.3f}"),
                ("hnsw, ms p50", "hnsw_ms_p50", "{:.3f}"),
                ("hnsw recall@10 vs exact", "hnsw_recall", "{:.3f}")]
        for label, key, fmt in rows:
            ratio = m[key] / s[key] if s[key] else float("nan")
            lines.append(f"| {label} | {fmt.format(s[key])} | {fmt.format(m[key])} | {ratio:.2f} |")
        lines.append("")
    return "\n".join(lines)


# --------------------------------------------------------------------------- the scenario


def configure(ap: ScenarioParser) -> None:
    ap.add_argument("--datasets", default="qmsum,covidqa,scifact", help="comma-separated")
    ap.add_argument("--variants", default="all", help="comma-separated keys (see --list-variants), or all")
    ap.add_argument("--list-variants", action="store_true")
    ap.add_sized("--meetings", type=int, full=20, quick=3, help="QMSum meetings (most queries first)")
    ap.add_sized("--papers", type=int, full=None, quick=8, help="COVID-QA papers (default: all 49)")
    ap.add_sized("--abstracts", type=int, full=600, quick=120,
                 help="SciFact abstracts: every judged one plus a seeded sample, N in all")
    ap.add_sized("--resamples", type=int, full=2000, quick=500, help="bootstrap resamples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-docs", type=int, default=10, help="documents per add_documents call")
    ap.add_argument("--cost", default="naive|late", help="the multi-vector chunking whose cost is measured "
                    "against naive (on COVID-QA), or 'none'")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--report", type=Path, default=None, metavar="JSON",
                    help="run nothing: print the report of a --json file")
    ap.set_defaults(threads=os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    if args.list_variants:
        for v in VARIANTS:
            print(f"{v.key:24} {v.label}")
        return 0
    if args.report:
        print(markdown(json.loads(args.report.read_text()), args.resamples, args.seed))
        return 0
    variants = list(VARIANTS)
    if args.variants != "all":
        wanted = [w.strip() for w in args.variants.split(",") if w.strip()]
        unknown = sorted(set(wanted) - {v.key for v in VARIANTS})
        if unknown:
            raise SystemExit(f"unknown variant(s) {unknown}; --list-variants shows them")
        variants = [v for v in VARIANTS if v.key in wanted]
    pin_threads(args.threads)
    import vecstore
    from bench.embed_cache import CachedEmbedder
    from vecstore.ingest import get_embedder

    emb = CachedEmbedder(get_embedder("default"), args.cache_dir or default_cache_dir())
    log(f"embedding cache: {len(emb):,} entries")
    started = time.perf_counter()
    payload: dict[str, Any] = {"command": args.command, "environment": torch_line(), "sets": {}}
    makers = {"qmsum": lambda: qmsum_set(args.data, args.meetings, args.seed),
              "covidqa": lambda: covidqa_set(args.data, args.papers),
              "scifact": lambda: scifact_set(args.data, args.abstracts, args.seed)}
    workdir = Path(tempfile.mkdtemp(prefix="vecstore-situated-"))
    try:
        db = vecstore.connect(workdir)
        for name in [d.strip() for d in args.datasets.split(",") if d.strip()]:
            ds = makers[name]()
            log(f"{name}: {ds.note}")
            part = run_set(db, emb, ds, variants, args.batch_docs)
            tables = part.pop("_tables")
            payload["sets"][name] = part
            if name == "covidqa" and args.cost != "none" and "naive" in tables and args.cost in tables:
                cost = measure_cost(db, tables["naive"], tables[args.cost],
                                    [q.text for q in ds.queries[:200]], args.seed)
                payload["cost"] = {**cost, "table": name, "multi_chunking": args.cost}
            for tbl in tables.values():
                db.drop_table(tbl.name)
            write_json(args.json, payload)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        emb.flush()
    payload["environment"] += f"; whole run {time.perf_counter() - started:.0f} s"
    write_json(args.json, payload)
    print(markdown(payload, args.resamples, args.seed))
    print(json.dumps({"verdict": verdict(payload, args.resamples, args.seed)}, indent=1), file=sys.stderr)
    return 0
