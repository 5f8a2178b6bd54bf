"""Ingest throughput: ``Table.add_documents`` against a bare ``model.encode`` of the same chunks.

    python -m bench ingest                       # 10 QMSum meetings (seeded), naive and late, 3 rounds
    python -m bench ingest --meetings 80         # steadier figures where encoding is fast (a GPU)
    python -m bench ingest --quick               # 2 meetings, naive only, 1 round

The bare baseline is what a user would write without vecstore: ``SentenceTransformer.encode``
(batch 32, the same model object) over the chunk texts that the pipeline makes (the same token
chunker, sizes and overlap; checked after the run). The pipeline is the whole call:
``Table.add_documents`` into a fresh table, i.e. validation, tokenizing, chunking, embedding,
building the Arrow rows and committing them to disk. The embedder's content-hash cache is off
(``cache_size=0``), so every run embeds everything.

Each round times the bare encode and the pipeline back to back for every mode, the encode first
in even rounds and second in odd ones, so that drift in the machine's load hits both; the
report gives medians over rounds and the median of the per-round ratios pipeline / encode.
``"late"`` reads each token about twice (windows overlapping by half) by design, so its ratio
measures that choice as well as the pipeline's overhead; ``"naive"`` embeds exactly the texts
the bare encode does, so its ratio is the pipeline's own cost.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ScenarioParser, markdown_table, pin_threads, torch_line, write_json
from bench.data import read_jsonl

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_meetings(data_dir: Path, n: int | None, seed: int) -> list[dict[str, Any]]:
    """``n`` QMSum meetings drawn with ``np.random.default_rng(seed)`` (all of them when None)."""
    docs = [{"id": d["id"], "text": d["text"], "domain": d.get("domain") or ""}
            for d in read_jsonl(data_dir / "qmsum" / "corpus.jsonl")]
    docs.sort(key=lambda d: d["id"])
    if n is not None and n < len(docs):
        pick = np.sort(np.random.default_rng(seed).choice(len(docs), n, replace=False))
        docs = [docs[i] for i in pick]
    return docs


def configure(ap: ScenarioParser) -> None:
    ap.add_sized("--meetings", type=int, full=10, quick=2, help="QMSum meetings, drawn with --seed")
    ap.add_argument("--all", action="store_true", help="every meeting (232)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_sized("--repeats", type=int, full=3, quick=1, help="rounds (each times encode and every mode)")
    ap.add_sized("--modes", full="naive,late", quick="naive", help="chunking modes, comma-separated")
    ap.add_argument("--chunk-tokens", type=int, default=128)
    ap.add_argument("--overlap", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.set_defaults(threads=os.cpu_count() or 1)


def run(args: argparse.Namespace) -> int:
    """Time the bare encode and the pipeline in alternating rounds; print the markdown section."""
    command = args.command
    pin_threads(args.threads)
    import vecstore
    from vecstore.ingest import SentenceTransformerEmbedder, chunk_text

    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    docs = load_meetings(args.data, None if args.all else args.meetings, args.seed)
    emb = SentenceTransformerEmbedder("default", batch_size=args.batch_size, cache_size=0)
    model = emb.model

    t = time.perf_counter()
    size = min(args.chunk_tokens, emb.window_budget())
    over = min(args.overlap, size - 1)
    texts = [
        c.text
        for d in docs
        for c in chunk_text(d["text"], emb.token_offsets, chunker="tokens", chunk_tokens=size, overlap=over)
    ]
    chunk_seconds = time.perf_counter() - t
    n_chars = sum(len(d["text"]) for d in docs)
    print(f"{len(docs)} meetings, {n_chars:,} characters, {len(texts):,} chunks of <= {size} tokens "
          f"(tokenize + chunk {chunk_seconds:.1f} s)", file=sys.stderr, flush=True)

    def encode() -> float:
        t = time.perf_counter()
        model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True, show_progress_bar=False)
        return time.perf_counter() - t

    workdir = Path(tempfile.mkdtemp(prefix="vecstore-ingest-"))
    db = vecstore.connect(workdir)
    runs = 0
    stored_texts: dict[str, list[str]] = {}

    def pipeline(mode: str) -> float:
        nonlocal runs
        runs += 1
        tbl = db.create_table(f"t{runs}", embedder=emb)
        t = time.perf_counter()
        report = tbl.add_documents(docs, chunking=mode, chunk_tokens=args.chunk_tokens,
                                   overlap=args.overlap, progress=False)
        seconds = time.perf_counter() - t
        if report.chunks != len(texts):
            raise SystemExit(f"{mode}: the pipeline made {report.chunks} chunks, the chunker {len(texts)}")
        stored_texts[mode] = tbl.to_arrow(["text"]).column("text").to_pylist()
        db.drop_table(tbl.name)
        return seconds

    model.encode(texts[:64], batch_size=args.batch_size, show_progress_bar=False)  # warm-up
    enc: dict[str, list[float]] = {m: [] for m in modes}
    pipe: dict[str, list[float]] = {m: [] for m in modes}
    try:
        for r in range(args.repeats):
            for mode in modes:
                if r % 2 == 0:
                    enc[mode].append(encode())
                    pipe[mode].append(pipeline(mode))
                else:
                    pipe[mode].append(pipeline(mode))
                    enc[mode].append(encode())
                e, p = enc[mode][-1], pipe[mode][-1]
                print(f"  round {r + 1}, {mode}: encode {e:.1f} s, pipeline {p:.1f} s ({p / e:.3f}x)",
                      file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for mode, got in stored_texts.items():
        if sorted(got) != sorted(texts):
            raise SystemExit(f"{mode}: the pipeline's chunk texts differ from the bare chunker's")

    env = torch_line()
    lines = [
        "### Ingest throughput: `Table.add_documents` vs bare `model.encode`",
        "",
        f"Command: `{command}`; {env}.",
        "",
        f"{len(docs)} QMSum meetings (seed {args.seed}), {n_chars:,} characters, {len(texts):,} chunks of "
        f"<= {size} tokens with overlap {over}; all-MiniLM-L6-v2, batch {args.batch_size}; medians of "
        f"{args.repeats} round(s), encode and pipeline alternating first. Tokenizing and chunking alone "
        f"took {chunk_seconds:.1f} s.",
        "",
    ]
    summary: dict[str, Any] = {}
    rows = []
    for mode in modes:
        p, e = statistics.median(pipe[mode]), statistics.median(enc[mode])
        ratio = statistics.median(a / b for a, b in zip(pipe[mode], enc[mode], strict=True))
        summary[mode] = {"pipeline_s": pipe[mode], "encode_s": enc[mode], "ratio_median": ratio}
        rows.append([mode, f"{p:.1f}", f"{len(docs) / p:.2f}", f"{len(texts) / p:.1f}", f"{e:.1f}",
                     f"{len(texts) / e:.1f}", f"{ratio:.3f}"])
    lines.append(markdown_table(["chunking", "pipeline s", "docs/s", "chunks/s", "bare encode s",
                                 "encode chunks/s", "pipeline / encode"], rows))
    lines.append("")
    report = "\n".join(lines)
    print(report)
    write_json(args.json, {
        "command": command, "environment": env, "meetings": [d["id"] for d in docs],
        "chunks": len(texts), "chunk_seconds": chunk_seconds, "modes": summary, "markdown": report,
    })
    return 0
