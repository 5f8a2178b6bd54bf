"""Keeping a store in sync, and the CPU embedding backends.

    python -m bench sync                     # 200 documents; backends on all of SciFact (long)
    python -m bench sync --quick             # 40 documents; backends on 300 abstracts
    python -m bench sync --skip-quality      # no SciFact nDCG (the slow part)

**Sync.** A folder of ``--docs`` SciFact abstracts (one ``.txt`` file each, seeded choice) is
ingested the way users do it, ``load_documents(folder)`` then ``tbl.add_documents(...)``, with the
default model already loaded (its load time is reported apart): the first ingest; the same
folder again, unchanged (nothing embedded: the model is not loaded); with one file changed;
with one file deleted and ``prune=True``. Each is timed in-process and through the CLI (a fresh
``vecstore ingest`` process: Python start and imports included). The first ingest is compared
with a bare ``model.encode`` of the texts the chunking mode hands the model
(:func:`vecstore.ingest.situated.model_inputs`: for ``context``, each chunk's window), for the
default backend and torch (``--ingest-backends``), in interleaved rounds.

**Backends.** Tokens per second of all-MiniLM-L6-v2 through torch, ONNX Runtime (float32) and
ONNX Runtime with int8 weights, on the same abstracts, in alternating rounds; the cosine between
each backend's vectors and torch's; and SciFact nDCG@10 (test split, exact search) of each.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ScenarioParser, log, markdown_table, pin_threads, torch_line, write_json
from bench.data import read_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def configure(ap: ScenarioParser) -> None:
    ap.add_sized("--docs", type=int, full=200, quick=40, help="documents in the synced folder")
    ap.add_sized("--rounds", type=int, full=3, quick=1, help="rounds of first ingest vs bare encode")
    ap.add_sized("--backend-texts", type=int, full=600, quick=150, help="abstracts timed per backend")
    ap.add_sized("--scifact", type=int, full=0, quick=300,
                 help="abstracts in the SciFact nDCG corpus (0: all 5,183)")
    ap.add_argument("--chunking", default="context")
    ap.add_argument("--ingest-backends", default="default,torch",
                    help="comma-separated backends of the default model whose first ingest is timed "
                    "against their bare encode: default (onnx-int8 on a CPU), torch, onnx, onnx-int8")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-quality", action="store_true", help="leave out SciFact nDCG@10")
    ap.add_argument("--skip-cli", action="store_true", help="leave out the CLI timings")
    ap.add_argument("--skip-backends", action="store_true", help="leave out the backends part")
    ap.add_sized("--adds", type=int, full=1200, quick=200,
                 help="one-row adds timed in a row (do frequent commits slow the later ones?)")
    ap.add_argument("--only-adds", action="store_true", help="only the series of one-row adds")
    ap.set_defaults(threads=os.cpu_count() or 1)


def _abstracts(data: Path) -> list[dict[str, Any]]:
    out = []
    for d in read_jsonl(data / "scifact" / "corpus.jsonl"):
        text = (str(d.get("title") or "") + "\n\n" + str(d["text"])).strip()
        out.append({"id": str(d["id"]), "text": text})
    return out


def _write_folder(folder: Path, docs: list[dict[str, Any]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for d in docs:
        (folder / f"{d['id']}.txt").write_text(d["text"], encoding="utf-8")


def _cli(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "vecstore", *args], check=True, capture_output=True)
    return time.perf_counter() - t


def sync_section(args: argparse.Namespace,
                 corpus: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    import vecstore
    from vecstore.ingest import SentenceTransformerEmbedder, load_documents
    from vecstore.ingest.pipeline import ChunkPlan, prepare_documents
    from vecstore.ingest.situated import model_inputs

    rng = np.random.default_rng(args.seed)
    docs = [corpus[i] for i in sorted(rng.choice(len(corpus), args.docs, replace=False))]
    work = Path(tempfile.mkdtemp(prefix="vecstore-sync-"))
    folder = work / "docs"
    _write_folder(folder, docs)
    backends = [b.strip() for b in args.ingest_backends.split(",") if b.strip()]
    embs: dict[str, Any] = {}
    load_s: dict[str, float] = {}
    for b in backends:
        t = time.perf_counter()
        # every run embeds everything: no content-hash cache
        embs[b] = SentenceTransformerEmbedder("default" if b == "default" else f"default@{b}", cache_size=0)
        load_s[b] = time.perf_counter() - t
        log(f"{b}: model {embs[b].model_id} loaded in {load_s[b]:.1f} s")
    emb = embs[backends[0]]  # the re-ingests run with the first backend
    loaded = load_documents(folder)
    prepared = prepare_documents(loaded.documents)
    plan = ChunkPlan(prepared, emb, chunking=args.chunking, progress=False)
    inputs = model_inputs(emb, [cd for _, cd in plan.docs], args.chunking)
    for b in backends:
        embs[b].model.encode(inputs[:32], batch_size=32, show_progress_bar=False)  # warm-up
    first: dict[str, list[float]] = {b: [] for b in backends}
    bare: dict[str, list[float]] = {b: [] for b in backends}
    out: dict[str, Any] = {"model": {b: embs[b].model_id for b in backends}, "model_load_s": load_s,
                           "chunks": plan.total_chunks, "model_inputs": len(inputs)}

    def ingest_first(b: str) -> float:
        store = work / f"store-{b}"
        shutil.rmtree(store, ignore_errors=True)
        tbl = vecstore.connect(store).create_table("t", embedder=embs[b])
        t = time.perf_counter()
        tbl.add_documents(load_documents(folder).documents, chunking=args.chunking, progress=False)
        return time.perf_counter() - t

    def encode(b: str) -> float:
        t = time.perf_counter()
        embs[b].model.encode(inputs, batch_size=32, show_progress_bar=False)
        return time.perf_counter() - t

    try:
        # interleaved: the backends take turns, and within each turn the encode and the ingest
        # swap places, so both see the same load on this shared machine
        for r in range(args.rounds):
            for j, b in enumerate(backends if r % 2 == 0 else backends[::-1]):
                if (r + j) % 2 == 0:
                    e = encode(b)
                    f = ingest_first(b)
                else:
                    f = ingest_first(b)
                    e = encode(b)
                bare[b].append(e)
                first[b].append(f)
                log(f"round {r + 1}, {b}: first ingest {f:.1f} s, bare encode {e:.1f} s ({f / e:.3f}x)")
        shutil.move(str(work / f"store-{backends[0]}"), str(work / "store"))

        db = vecstore.connect(work / "store")

        def again(**kw: Any) -> tuple[float, Any]:
            tbl = db.open_table("t", embedder=emb)
            t = time.perf_counter()
            rep = tbl.add_documents(load_documents(folder).documents, chunking=args.chunking,
                                    progress=False, **kw)
            return time.perf_counter() - t, rep

        unchanged_s, rep_u = again()
        changed = folder / f"{docs[0]['id']}.txt"
        changed.write_text(changed.read_text() + "\n\nOne more sentence at the end.", encoding="utf-8")
        changed_s, rep_c = again()
        (folder / f"{docs[1]['id']}.txt").unlink()
        pruned_s, rep_p = again(prune=True)
        if (rep_u.documents, rep_c.documents, rep_p.pruned) != (0, 1, 1):
            raise SystemExit(f"unexpected reports: {rep_u}, {rep_c}, {rep_p}")
        out.update(first_s=first, bare_s=bare, unchanged_s=unchanged_s, changed_s=changed_s,
                   pruned_s=pruned_s)
        if not args.skip_cli:
            store = str(work / "cli-store")
            cli = ["ingest", store, "t", str(folder), "--chunking", args.chunking, "--no-progress"]
            out["cli_first_s"] = _cli(cli)
            out["cli_unchanged_s"] = _cli(cli)
            changed.write_text(changed.read_text() + " And another.", encoding="utf-8")
            out["cli_changed_s"] = _cli(cli)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    def row(label: str, s: float, of: float, note: str) -> list[str]:
        return [label, f"{s:.3f}", f"{s / of:.4f}", note]

    rows = []
    for b in backends:
        fb, eb = statistics.median(first[b]), statistics.median(bare[b])
        ratios = [x / y for x, y in zip(first[b], bare[b], strict=True)]
        out.setdefault("ratio", {})[b] = statistics.median(ratios)
        rows.append(row(f"first ingest (in-process), {b}", fb, fb,
                        f"{statistics.median(ratios):.3f} x bare encode ({eb:.2f} s); rounds: "
                        + ", ".join(f"{x:.3f}" for x in ratios)))
    f = statistics.median(first[backends[0]])
    rows += [row("again, unchanged", out["unchanged_s"], f, "target < 0.05"),
             row("again, one file changed", out["changed_s"], f, "target < 0.10"),
             row("again, one file deleted, prune", out["pruned_s"], f, "")]
    if "cli_first_s" in out:
        c = out["cli_first_s"]
        rows += [row("CLI first ingest (new process, model load)", c, c, ""),
                 row("CLI again, unchanged", out["cli_unchanged_s"], c, "Python start + imports"),
                 row("CLI again, one file changed", out["cli_changed_s"], c, "+ model load")]
    models = ", ".join(f"{b}: `{embs[b].model_id}` (loaded in {load_s[b]:.1f} s)" for b in backends)
    lines = [
        f"{args.docs} SciFact abstracts as .txt files (seed {args.seed}), {plan.total_chunks} chunks, "
        f"`{args.chunking}` chunking ({len(inputs)} model inputs); models {models}, before the "
        f"timings; first ingest and bare encode of each backend in {args.rounds} interleaved round(s) "
        f"(the backends take turns, encode and ingest swap places each turn), medians; the re-ingests "
        f"with `{emb.model_id}`, relative to its first ingest.",
        "",
        markdown_table(["run", "seconds", "of first ingest", "note"], rows),
        "",
    ]
    return lines, out


def _scifact(args: argparse.Namespace, corpus: list[dict[str, Any]]) -> tuple[list[str], dict, dict]:
    from vecstore.evaluation import load_qrels, load_queries

    qrels = load_qrels(args.data / "scifact" / "qrels.tsv", split="test")
    queries = {q: t for q, t in load_queries(args.data / "scifact" / "queries.jsonl").items() if q in qrels}
    docs = corpus
    if args.scifact:
        judged = {d for rel in qrels.values() for d in rel}
        rng = np.random.default_rng(args.seed)
        rest = [d for d in corpus if d["id"] not in judged]
        pick = rng.choice(len(rest), max(0, args.scifact - len(judged)), replace=False)
        docs = [d for d in corpus if d["id"] in judged] + [rest[i] for i in sorted(pick)]
    return [d["id"] for d in docs], {d["id"]: d["text"] for d in docs}, queries


def backends_section(args: argparse.Namespace,
                     corpus: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any]]:
    from vecstore.evaluation import evaluate_rankings, load_qrels
    from vecstore.ingest.embedders import SentenceTransformerEmbedder

    names = ["torch", "onnx", "onnx-int8"]
    embs = {b: SentenceTransformerEmbedder("all-MiniLM-L6-v2", backend=b, cache_size=0) for b in names}
    rng = np.random.default_rng(args.seed + 1)
    texts = [corpus[i]["text"] for i in rng.choice(len(corpus), args.backend_texts, replace=False)]
    tok = embs["torch"].tokenizer
    limit = embs["torch"].max_tokens
    n_tokens = sum(min(limit, len(tok(t, truncation=False, verbose=False)["input_ids"])) for t in texts)
    times: dict[str, list[float]] = {b: [] for b in names}
    vecs: dict[str, np.ndarray] = {}
    for b in names:
        embs[b].embed_documents(texts[:32])
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for b in order:
            t = time.perf_counter()
            vecs[b] = embs[b].embed_documents(texts)
            times[b].append(time.perf_counter() - t)
            log(f"round {r + 1}, {b}: {n_tokens / times[b][-1]:.0f} tokens/s")
    out: dict[str, Any] = {"texts": len(texts), "tokens": n_tokens, "seconds": times}
    base = vecs["torch"]
    rows = []
    ndcg: dict[str, float] = {}
    if not args.skip_quality:
        ids, text_of, queries = _scifact(args, corpus)
        qrels = load_qrels(args.data / "scifact" / "qrels.tsv", split="test")
        qids = list(queries)
        for b in ["torch", "onnx-int8"]:
            t = time.perf_counter()
            d = embs[b].embed_documents([text_of[i] for i in ids])
            q = embs[b].embed_queries([queries[x] for x in qids])
            scores = q @ d.T
            top = np.argsort(-scores, axis=1)[:, :10]
            run = {qid: [ids[j] for j in top[k]] for k, qid in enumerate(qids)}
            ndcg[b] = evaluate_rankings(run, qrels, k=10).mean("ndcg")
            log(f"SciFact {b}: nDCG@10 {ndcg[b]:.4f} ({len(ids)} abstracts, "
                f"{time.perf_counter() - t:.0f} s)")
        out["scifact_ndcg10"] = ndcg
        out["scifact_abstracts"] = len(ids)
    for b in names:
        s = statistics.median(times[b])
        cos = (vecs[b] * base).sum(1) / (np.linalg.norm(vecs[b], axis=1) * np.linalg.norm(base, axis=1))
        speed = statistics.median(times["torch"][i] / times[b][i] for i in range(len(times[b])))
        rows.append([b, f"{n_tokens / s:,.0f}", f"{speed:.2f}", f"{cos.min():.5f}", f"{cos.mean():.5f}",
                     f"{ndcg[b]:.4f}" if b in ndcg else "="])
        out.setdefault("cosine", {})[b] = {"min": float(cos.min()), "mean": float(cos.mean())}
    lines = [
        f"all-MiniLM-L6-v2 on {len(texts)} SciFact abstracts ({n_tokens:,} tokens, truncated at {limit}), "
        f"batch 32, medians of {args.rounds} alternating round(s); nDCG@10 on the SciFact test split "
        f"({out.get('scifact_abstracts', 0) or 'not measured'} abstracts, exact search; "
        f"`=`: not measured, same vectors as torch).",
        "",
        markdown_table(["backend", "tokens/s", "speed-up vs torch", "cosine to torch, min", "mean",
                        "SciFact nDCG@10"], rows),
        "",
    ]
    return lines, out


def adds_section(args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    """``--adds`` one-row adds (384-d vector, text, year) into one table, each its own commit:
    the median latency of each sixth of the series, so a cost growing with the versions shows."""
    import vecstore

    rng = np.random.default_rng(args.seed)
    work = Path(tempfile.mkdtemp(prefix="vecstore-adds-"))
    try:
        tbl = vecstore.connect(work).create_table("t", dim=384)
        ms: list[float] = []
        for i in range(args.adds):
            row = {"id": f"r{i}", "vector": rng.normal(size=384).astype(np.float32),
                   "text": f"row {i}", "year": i}
            t = time.perf_counter()
            tbl.add([row])
            ms.append(1000 * (time.perf_counter() - t))
        versions, segments = len(tbl.versions()), len(tbl._current().manifest.segments)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    step = max(1, args.adds // 6)
    rows = [[f"{a + 1}-{min(a + step, args.adds)}", f"{statistics.median(ms[a:a + step]):.1f}"]
            for a in range(0, args.adds, step)]
    lines = [f"{args.adds} one-row adds into one table, one commit each ({versions} versions, "
             f"{segments} segments at the end: small segments are merged as they come):", "",
             markdown_table(["adds", "median ms per add"], rows), ""]
    return lines, {"ms": ms, "versions": versions, "segments": segments}


def run(args: argparse.Namespace) -> int:
    pin_threads(args.threads)
    corpus = _abstracts(args.data)
    lines = ["### Sync: re-ingesting a folder, and the CPU backends", "",
             f"Command: `{args.command}`; {torch_line()}.", ""]
    results: dict[str, Any] = {"command": args.command}
    if args.only_adds:
        part, results["adds"] = adds_section(args)
        lines += part
        args.skip_backends = True
    else:
        part, results["sync"] = sync_section(args, corpus)
        lines += part
    if not args.skip_backends:
        part, results["backends"] = backends_section(args, corpus)
        lines += part
    report = "\n".join(lines)
    print(report)
    results["markdown"] = report
    write_json(args.json, results)
    return 0
