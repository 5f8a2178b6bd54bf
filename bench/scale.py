"""Scale: one box at the largest size this machine holds, and ingestion on Ray against one process.

Two measurements (docs/scale.md reads them):

1. **One box.** ``--n`` vectors derived from real all-MiniLM-L6-v2 vectors of PyPI summaries (the
   64,000-row cached sample, :func:`bench.data.load_vectors`): row ``i`` is source row
   ``i mod 64,000`` plus Gaussian noise of norm about ``--noise`` (per coordinate
   ``noise / sqrt(384)``), renormalised, so every source vector has ``n / 64,000`` noisy copies
   spread around it (cosine about ``1 / sqrt(1 + noise^2)`` to their source) and the corpus keeps
   MiniLM's geometry. Each row has ``category``, uniform in 0..9. The queries are the sample's
   held-out real queries (not derived). Rows are added ``--batch`` at a time through
   ``Table.add`` (timed: the build), the store's size is read from disk, and then a fresh process
   pinned to one thread opens the table and runs every query one at a time, unfiltered and with
   ``category = 3`` (10% of rows), through the default query path (binary codes in RAM, int8
   then float32 rescoring from the memory-mapped segments; no ANN index is built: see
   docs/scale.md). Recall@10 is against the exact float32 top 10 computed while building.
   RSS is that process's peak (VmHWM) and its resident memory at the end, split into anonymous
   and file-backed pages.
2. **Ray ingestion.** ``--meetings`` QMSum transcripts written as a folder of .txt files, ingested
   with the default model by ``python -m vecstore ingest`` and by ``python -m vecstore ingest
   --ray --ray-workers 2`` (a local Ray started by the command), each in a fresh process, timed
   end to end (start-up and model loading included: what a user waits for).

``python -m bench scale`` (``--quick``: 100,000 rows, 2 meetings).
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO_ROOT, ScenarioParser, log, machine_line, markdown_table, thread_env, write_json

SOURCE_ROWS = 64_000
DIM = 384
FILTER = ("category = ?", 3)

_QUERY_CHILD = r"""
import json, sys, time
import numpy as np
from bench.common import pin_threads, proc_status_kib, latency_stats
pin_threads(1)
import vecstore
store, table, queries_path = sys.argv[1], sys.argv[2], sys.argv[3]
queries = np.load(queries_path)
t = time.perf_counter()
tbl = vecstore.connect(store).open_table(table)
open_s = time.perf_counter() - t
tbl.search(queries[0]).limit(10).to_list()  # first query: compiles kernels, maps segments
out = {"open_s": open_s}
for name, where in (("unfiltered", None), ("filtered", ("category = ?", 3))):
    ids, lat = [], []
    for q in queries:
        s = time.perf_counter()
        query = tbl.search(q).limit(10)
        if where:
            query = query.where(*where)
        ids.append(query.hits().ids)
        lat.append(time.perf_counter() - s)
    out[name] = {"ids": ids, **latency_stats(lat)}
out["plan"] = str(tbl.search(queries[0]).limit(10).explain())
out["rss"] = {k: proc_status_kib(k) * 1024 for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile")}
print(json.dumps(out))
"""


def configure(ap: ScenarioParser) -> None:
    ap.add_sized("--n", type=int, full=1_000_000, quick=100_000, help="rows of the one-box table")
    ap.add_sized("--queries", type=int, full=200, quick=50, help="held-out real queries")
    ap.add_argument("--noise", type=float, default=0.3, help="norm of the noise added to a source vector")
    ap.add_argument("--batch", type=int, default=100_000, help="rows per Table.add")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", type=Path, default=None,
                    help="where the stores are built (default: a temporary directory, removed)")
    ap.add_sized("--meetings", type=int, full=8, quick=2, help="QMSum transcripts for the Ray ingestion")
    ap.add_argument("--skip-one-box", action="store_true")
    ap.add_argument("--skip-ray", action="store_true")


def derived_batch(source: np.ndarray, start: int, stop: int, noise: float,
                  rng: np.random.Generator) -> np.ndarray:
    """Rows ``start..stop`` of the derived corpus: source row ``i mod len(source)`` plus
    Gaussian noise of expected norm ``noise``, renormalised."""
    x = source[np.arange(start, stop) % len(source)].astype(np.float32)
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(noise / math.sqrt(x.shape[1]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


class TopK:
    """The running exact top ``k`` (scores and global row numbers) of each query."""

    def __init__(self, n_queries: int, k: int) -> None:
        self.k = k
        self.scores = np.full((n_queries, k), -np.inf, dtype=np.float32)
        self.rows = np.full((n_queries, k), -1, dtype=np.int64)

    def update(self, scores: np.ndarray, rows: np.ndarray) -> None:
        k = min(self.k, scores.shape[1])
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([self.scores, np.take_along_axis(scores, part, 1)], axis=1)
        cand_r = np.concatenate([self.rows, rows[part]], axis=1)
        best = np.argsort(-cand_s, axis=1, kind="stable")[:, :self.k]
        self.scores = np.take_along_axis(cand_s, best, 1)
        self.rows = np.take_along_axis(cand_r, best, 1)


def one_box(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import pyarrow as pa

    import vecstore
    from bench.common import vector_column
    from bench.data import load_vectors

    sample = load_vectors(args.data, SOURCE_ROWS, args.queries, attrs=False, seed=args.seed)
    source, queries = np.asarray(sample.base), np.ascontiguousarray(sample.queries, dtype=np.float32)
    rng = np.random.default_rng(args.seed)
    truth, truth_f = TopK(len(queries), 10), TopK(len(queries), 10)
    tbl = vecstore.connect(root / "one_box").create_table("t", dim=DIM)
    build = truth_s = 0.0
    for start in range(0, args.n, args.batch):
        stop = min(args.n, start + args.batch)
        x = derived_batch(source, start, stop, args.noise, rng)
        category = rng.integers(0, 10, stop - start)
        rows = pa.table({"id": pa.array([f"v{i}" for i in range(start, stop)]),
                         "category": pa.array(category, pa.int64()), "vector": vector_column(x)})
        t = time.perf_counter()
        tbl.add(rows)
        build += time.perf_counter() - t
        t = time.perf_counter()
        scores = queries @ x.T
        truth.update(scores, np.arange(start, stop))
        keep = np.flatnonzero(category == FILTER[1])
        truth_f.update(scores[:, keep], keep + start)
        truth_s += time.perf_counter() - t
        log(f"  {stop:,} rows: build {build:.0f} s")
    segments = len(tbl._current().manifest.segments)
    disk = sum(p.stat().st_size for p in (root / "one_box").rglob("*") if p.is_file())
    qpath = root / "queries.npy"
    np.save(qpath, queries)
    env = thread_env(1)
    t = time.perf_counter()
    child = subprocess.run([sys.executable, "-c", _QUERY_CHILD, str(root / "one_box"), "t", str(qpath)],
                           env=env, cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    log(f"  queries in a fresh process: {time.perf_counter() - t:.0f} s")
    out = json.loads(child.stdout.strip().splitlines()[-1])
    for name, top in (("unfiltered", truth), ("filtered", truth_f)):
        found = out[name].pop("ids")
        want = [{f"v{r}" for r in row if r >= 0} for row in top.rows]
        recalls = [len(set(f) & w) / len(w) for f, w in zip(found, want, strict=True)]
        out[name]["recall_at_10"] = float(np.mean(recalls))
    return {"n": args.n, "noise": args.noise, "source": sample.source, "build_s": build,
            "rows_per_s": args.n / build, "segments": segments, "disk_bytes": disk,
            "bytes_per_row": disk / args.n, "truth_s": truth_s, **out}


def ray_ingest(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from bench.ingest import load_meetings

    docs = load_meetings(args.data, args.meetings, args.seed)
    folder = root / "meetings"
    folder.mkdir()
    for d in docs:
        (folder / f"{d['id']}.txt").write_text(d["text"])
    chars = sum(len(d["text"]) for d in docs)
    env = thread_env(2)
    out: dict[str, Any] = {"documents": len(docs), "characters": chars}
    for name, extra in (("one process", []), ("ray, 2 workers", ["--ray", "--ray-workers", "2"])):
        t = time.perf_counter()
        store = root / name.replace(" ", "_").replace(",", "")
        proc = subprocess.run([sys.executable, "-m", "vecstore", "ingest", str(store), "docs", str(folder),
                               *extra], env=env, cwd=REPO_ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if proc.returncode != 0:
            raise RuntimeError(f"{name} ingest failed ({proc.returncode}): {proc.stderr[-2000:]}")
        record = json.loads(proc.stdout.strip().splitlines()[-1])
        out[name] = {"wall_s": wall, "chunks": record["chunks"], "chunks_per_s_wall": record["chunks"] / wall,
                     "reported_s": record["seconds"]}
        log(f"  {name}: {wall:.0f} s, {record['chunks']} chunks")
    return out


def run(args: argparse.Namespace) -> int:
    root = Path(tempfile.mkdtemp(prefix="vecstore-scale-")) if args.store is None else args.store
    root.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"machine": machine_line()}
    try:
        if not args.skip_one_box:
            log(f"one box: {args.n:,} derived rows")
            result["one_box"] = one_box(args, root)
        if not args.skip_ray:
            log(f"ray ingestion: {args.meetings} meetings")
            result["ray_ingest"] = ray_ingest(args, root)
    finally:
        if args.store is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"## Scale\n\nCommand: `{args.command}`; {result['machine']}.\n")
    if "one_box" in result:
        b = result["one_box"]
        print(f"{b['n']:,} rows ({b['source']}; noise {b['noise']}); build {b['build_s']:.0f} s "
              f"({b['rows_per_s']:,.0f} rows/s, {b['segments']} segments); "
              f"disk {b['disk_bytes'] / 2**20:,.0f} MiB "
              f"({b['bytes_per_row']:,.0f} B/row); open {b['open_s']:.2f} s.\n")
        print(markdown_table(["query (1 thread)", "q/s (1/median)", "p50 ms", "p95 ms", "recall@10"],
                             [[name, f"{b[name]['qps']:.1f}", f"{b[name]['p50_ms']:.1f}",
                               f"{b[name]['p95_ms']:.1f}", f"{b[name]['recall_at_10']:.3f}"]
                              for name in ("unfiltered", "filtered")]))
        r = b["rss"]
        print(f"\nRSS of the query process: peak {r['VmHWM'] / 2**20:,.0f} MiB; at the end "
              f"{r['VmRSS'] / 2**20:,.0f} MiB ({r['RssAnon'] / 2**20:,.0f} MiB anonymous, "
              f"{r['RssFile'] / 2**20:,.0f} MiB file pages).\n\nPlan: {b['plan']}\n")
    if "ray_ingest" in result:
        g = result["ray_ingest"]
        print(f"Ray ingestion: {g['documents']} QMSum meetings ({g['characters']:,} characters), "
              f"default model, end to end in a fresh process.\n")
        print(markdown_table(["run", "wall s", "chunks", "chunks/s"],
                             [[k, f"{g[k]['wall_s']:.1f}", g[k]["chunks"], f"{g[k]['chunks_per_s_wall']:.1f}"]
                              for k in ("one process", "ray, 2 workers")]))
    write_json(args.json, result)
    return 0
