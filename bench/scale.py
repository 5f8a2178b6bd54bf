"""Scale: one box at the largest size this machine holds, and ingestion on Ray against one process.

Two measurements (docs/scale.md reads them):

1. **One box.** ``--n`` vectors derived from real all-MiniLM-L6-v2 vectors of PyPI summaries (the
   64,000-row cached sample, :func:`bench.data.load_vectors`): row ``i`` is source row
   ``i mod 64,000`` plus Gaussian noise of norm about ``--noise`` (per coordinate
   ``noise / sqrt(384)``), renormalised, so every source vector has ``n / 64,000`` noisy copies
   spread around it (cosine about ``1 / sqrt(1 + noise^2)`` to their source) and the corpus keeps
   MiniLM's geometry. Each row has ``category``, uniform in 0..9. The queries are the sample's
   held-out real queries (not derived). Rows are added ``--batch`` at a time through
   ``Table.add`` (timed: the build), each batch followed by ``Table.cleanup(older_than=0)`` so
   the writer's merges leave no superseded segments; the build resumes where an interrupted run
   in the same ``--store`` stopped (``--build-only`` stops after the rows: for a long build in
   the background). Then the ``--index`` (default ``ivf-binary``; ``none``: the scan only) is
   built (timed) and fresh processes pinned to one thread, alternating between the version
   before the index (the scan path: binary codes of every row, int8 then float32 rescoring from
   the memory-mapped segments) and the one with it, ``--rounds`` of each, open the table and run
   every query one at a time, unfiltered and with ``category = 3`` (10% of rows). Recall@10 is
   against the exact float32 top 10 computed while building. RSS is each query process's peak
   (VmHWM) and its resident memory at the end, split into anonymous and file-backed pages;
   figures are medians over the rounds. ``--real``: the rows are the first ``--n`` real vectors
   of the PyPI sample themselves (no derived copies, no noise; at most the 822,679 summaries
   less the queries), to check recall on real data at the largest size embedded.
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
from vecstore._native import loader
for name in ("kernels", "graph"):  # timed queries never run the NumPy twins
    loader.get(name, wait=True)
store, table, queries_path, version = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
oversample = int(sys.argv[5])  # 0: the planner's choice
queries = np.load(queries_path)
t = time.perf_counter()
tbl = vecstore.connect(store).open_table(table)
if version >= 0:  # an older version: the one without the index (the scan path)
    tbl = tbl.checkout(version)
open_s = time.perf_counter() - t
tbl.search(queries[0]).limit(10).to_list()  # first query: compiles kernels, maps segments
out = {"open_s": open_s}
for name, where in (("unfiltered", None), ("filtered", ("category = ?", 3))):
    ids, scores, lat = [], [], []
    for q in queries:
        s = time.perf_counter()
        query = tbl.search(q).limit(10)
        if oversample:
            query = query.rescore(oversample)
        if where:
            query = query.where(*where)
        hits = query.to_list()  # the way users call it
        lat.append(time.perf_counter() - s)
        ids.append([hit["id"] for hit in hits])
        scores.append([hit["score"] for hit in hits])
    out[name] = {"ids": ids, "scores": scores, **latency_stats(lat)}
out["plan"] = str(tbl.search(queries[0]).limit(10).explain())
out["plan_filtered"] = str(tbl.search(queries[0]).limit(10).where("category = ?", 3).explain())
out["rss"] = {k: proc_status_kib(k) * 1024 for k in ("VmHWM", "VmRSS", "RssAnon", "RssFile")}
print(json.dumps(out))
"""


def configure(ap: ScenarioParser) -> None:
    ap.add_sized("--n", type=int, full=1_000_000, quick=100_000, help="rows of the one-box table")
    ap.add_sized("--queries", type=int, full=200, quick=50, help="held-out real queries")
    ap.add_argument("--noise", type=float, default=0.3, help="norm of the noise added to a source vector")
    ap.add_argument("--batch", type=int, default=100_000, help="rows per Table.add")
    ap.add_argument("--index", default="ivf-binary",
                    help="index built after the rows ('none': the scan path only)")
    ap.add_argument("--index-params", type=json.loads, default={},
                    help='the index\'s build parameters as JSON, e.g. \'{"nprobe": 256, "rerank": 64}\' '
                         "(default: measured at build time)")
    ap.add_argument("--oversample", type=int, default=0,
                    help="every query's .rescore(N), on both paths (default: the planner's choice)")
    ap.add_argument("--sweep", action="store_true",
                    help="after the index build, its recall over a grid of nprobe x rerank on the "
                         "*next* --queries real queries (disjoint from those evaluated), exact rescoring")
    ap.add_argument("--sample-queries", type=int, default=0,
                    help="create_index(sample_queries=...): the effort measured on the *next* N real "
                         "queries (disjoint from those evaluated) instead of held-out rows")
    ap.add_argument("--gpu", choices=("auto", "on", "off"), default="auto",
                    help="create_index(gpu=...): the IVF kinds' k-means and list assignment on CUDA "
                         "devices through faiss-gpu (auto: when FAISS sees one)")
    ap.add_argument("--rebuild-index", action="store_true",
                    help="build the index again even when the --store holds one of this kind")
    ap.add_argument("--rounds", type=int, default=2,
                    help="query processes per variant (scan, index), alternated")
    ap.add_argument("--real", action="store_true",
                    help="the rows are the sample's first --n real vectors, not derived ones")
    ap.add_argument("--skip-scan", action="store_true",
                    help="query the index only, not the version before it (a 10M-row scan takes "
                         "~1 s a query)")
    ap.add_argument("--build-only", action="store_true",
                    help="add the rows (resuming a --store) and stop: for a long build in the background")
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


def _disk(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def build_rows(args: argparse.Namespace, root: Path, source: np.ndarray,
               queries: np.ndarray) -> dict[str, Any]:
    """Add the derived rows batch by batch, resuming where a previous run in ``root`` stopped.

    Batch ``b`` is drawn from a generator seeded with ``(seed, b)``, so a resumed build adds
    the same rows. After each batch the running exact top 10 (unfiltered and filtered) and the
    progress are saved beside the store, and versions older than the newest are removed
    (``Table.cleanup(older_than=0)``): the writer's merges would otherwise keep every
    superseded segment on disk (4.6 kB/row at 1M instead of ~2 kB).
    """
    import pyarrow as pa

    import vecstore
    from bench.common import vector_column

    state_path = root / "build_state.json"
    truth_path = root / "truth.npz"
    db = vecstore.connect(root / "one_box")
    state: dict[str, Any] = {"rows": 0, "build_s": 0.0, "cleanup_s": 0.0, "truth_s": 0.0}
    truth, truth_f = TopK(len(queries), 10), TopK(len(queries), 10)
    if state_path.exists():
        state = json.loads(state_path.read_text())
        saved = np.load(truth_path)
        truth.scores, truth.rows = saved["scores"], saved["rows"]
        truth_f.scores, truth_f.rows = saved["scores_f"], saved["rows_f"]
        tbl = db.open_table("t")
        if len(tbl) != state["rows"]:
            raise RuntimeError(f"{root}: the table holds {len(tbl):,} rows, the saved state "
                               f"{state['rows']:,}; remove the store to start again")
        log(f"  resuming at {state['rows']:,} rows")
    else:
        tbl = db.create_table("t", dim=DIM)
    for start in range(state["rows"], args.n, args.batch):
        stop = min(args.n, start + args.batch)
        rng = np.random.default_rng([args.seed, start // args.batch])
        x = derived_batch(source, start, stop, 0.0 if args.real else args.noise, rng)
        category = rng.integers(0, 10, stop - start)
        rows = pa.table({"id": pa.array([f"v{i}" for i in range(start, stop)]),
                         "category": pa.array(category, pa.int64()), "vector": vector_column(x)})
        t = time.perf_counter()
        tbl.add(rows)
        state["build_s"] += time.perf_counter() - t
        t = time.perf_counter()
        tbl.cleanup(older_than=0)
        state["cleanup_s"] += time.perf_counter() - t
        t = time.perf_counter()
        scores = queries @ x.T
        truth.update(scores, np.arange(start, stop))
        keep = np.flatnonzero(category == FILTER[1])
        truth_f.update(scores[:, keep], keep + start)
        state["truth_s"] += time.perf_counter() - t
        state["rows"] = stop
        np.savez(truth_path, scores=truth.scores, rows=truth.rows, scores_f=truth_f.scores,
                 rows_f=truth_f.rows)
        state_path.write_text(json.dumps(state))
        del rows, x, scores
        log(f"  {stop:,} rows: add {state['build_s']:.0f} s, cleanup {state['cleanup_s']:.0f} s, "
            f"disk {_disk(root / 'one_box') / 2**30:.1f} GiB")
    state["truth"] = truth
    state["truth_f"] = truth_f
    state["table"] = tbl
    return state


SWEEP_RERANKS = (16, 32, 64, 128)
SWEEP_NPROBES = (32, 64, 128, 256, 512)


def sweep(args: argparse.Namespace, root: Path) -> list[dict[str, Any]]:
    """Recall@10 of the table's built ``ivf-binary`` over :data:`SWEEP_NPROBES` x
    :data:`SWEEP_RERANKS`, its ``k x rerank`` candidates rescored exactly, on the sample's real
    queries ``queries..2 queries`` (tuning queries: the evaluated ones are the first
    ``queries``), to choose ``--index-params`` without looking at the evaluated queries."""
    import vecstore
    from bench.data import load_vectors
    from vecstore.index import load_index

    sample = load_vectors(args.data, SOURCE_ROWS, 2 * args.queries, attrs=False, seed=args.seed)
    tune = np.array(sample.queries[args.queries:], dtype=np.float32)  # a copy: normalised in place
    tune /= np.linalg.norm(tune, axis=1, keepdims=True)
    tbl = vecstore.connect(root / "one_box").open_table("t")
    snap = tbl._current()
    entry = tbl.list_indexes()[0]
    index = load_index(entry["kind"], root / "one_box" / "t" / entry["path"])
    blocks = snap.vectors
    starts = np.cumsum([0, *(len(b) for b in blocks)])
    best = np.full((len(tune), 10), -np.inf, dtype=np.float32)
    for block in blocks:  # rows are unit length (cosine table)
        for s0 in range(0, len(block), 262_144):
            scores = tune @ np.asarray(block[s0:s0 + 262_144]).T
            best = -np.partition(-np.concatenate([best, scores], axis=1), 9, axis=1)[:, :10]
    kth = best.min(axis=1)

    def rows(labels: np.ndarray) -> np.ndarray:
        which = np.searchsorted(starts, labels, side="right") - 1
        out = np.empty((labels.size, DIM), dtype=np.float32)
        for b in np.unique(which):
            at = np.flatnonzero(which == b)
            out[at] = blocks[b][labels[at] - starts[b]]
        return out

    out = []
    for rerank in SWEEP_RERANKS:
        for nprobe in SWEEP_NPROBES:
            _, cand = index.search(tune, 10 * rerank, effort=nprobe)
            found = [np.sort(rows(np.sort(c[c >= 0])) @ tune[i])[::-1][:10] for i, c in enumerate(cand)]
            recall = float(np.mean([np.sum(f >= kth[i] - 1e-5) / 10 for i, f in enumerate(found)]))
            out.append({"rerank": rerank, "nprobe": nprobe, "recall_at_10": recall})
            log(f"  sweep rerank {rerank} nprobe {nprobe}: recall {recall:.3f}")
    return out


def _query_child(root: Path, qpath: Path, version: int, oversample: int) -> dict[str, Any]:
    child = subprocess.run([sys.executable, "-c", _QUERY_CHILD, str(root / "one_box"), "t", str(qpath),
                            str(version), str(oversample)], env=thread_env(1), cwd=REPO_ROOT,
                           capture_output=True, text=True)
    if child.returncode != 0:
        raise RuntimeError(f"query process failed ({child.returncode}): {child.stderr[-3000:]}")
    return json.loads(child.stdout.strip().splitlines()[-1])


def one_box(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from bench.data import load_vectors

    sample = load_vectors(args.data, args.n if args.real else SOURCE_ROWS,
                          args.queries + args.sample_queries, attrs=False, seed=args.seed)
    source = np.asarray(sample.base)
    queries = np.ascontiguousarray(sample.queries[:args.queries], dtype=np.float32)
    tune = np.array(sample.queries[args.queries:], dtype=np.float32) if args.sample_queries else None
    state = build_rows(args, root, source, queries)
    result: dict[str, Any] = {"n": args.n, "noise": 0.0 if args.real else args.noise, "source": sample.source,
                              "build_s": state["build_s"], "cleanup_s": state["cleanup_s"],
                              "rows_per_s": args.n / state["build_s"], "truth_s": state["truth_s"]}
    if args.build_only:
        return result
    tbl, truth, truth_f = state["table"], state["truth"], state["truth_f"]
    existing = tbl.list_indexes()
    if not existing:  # (with an index, the version before it is the scan path's: kept)
        tbl.cleanup(older_than=0)
    result["segments"] = len(tbl._current().manifest.segments)
    result["disk_bytes"] = _disk(root / "one_box")
    result["bytes_per_row"] = result["disk_bytes"] / args.n
    scan_version = tbl.version
    variants: list[tuple[str, int]] = [("scan", scan_version)]
    if args.index != "none":
        if existing:  # the version before the first index built here is the scan path's
            saved = json.loads((root / "build_state.json").read_text())
            scan_version = int(saved.get("scan_version", scan_version))
        if existing and existing[0]["kind"] == args.index and not args.rebuild_index:
            log(f"  {args.index} index already built")
            result["index_entry"] = existing[0]
            if "index_build_s" in saved:
                result["index_build_s"] = saved["index_build_s"]
        else:
            t = time.perf_counter()
            from vecstore.index import index_class

            gpu = {"auto": None, "on": True, "off": False}[args.gpu]
            entry = tbl.create_index(args.index, progress=False, sample_queries=tune, gpu=gpu,
                                     **args.index_params)
            result["index_build_s"] = time.perf_counter() - t
            result["index_build_gpu"] = index_class(args.index).resolve_gpu(gpu)
            result["index_entry"] = entry
            state_file = root / "build_state.json"
            saved = json.loads(state_file.read_text())
            saved.update(scan_version=scan_version, index_build_s=result["index_build_s"])
            state_file.write_text(json.dumps(saved))
            log(f"  {args.index} built in {result['index_build_s']:.0f} s: {entry['params']}")
        result["index_bytes"] = _disk(root / "one_box" / "t" / "indexes") if (
            root / "one_box" / "t" / "indexes").exists() else None
        variants = [("scan", scan_version), ("index", -1)]
    if args.skip_scan and len(variants) > 1:
        variants = variants[1:]
        if args.sweep:
            result["sweep"] = sweep(args, root)
    qpath = root / "queries.npy"
    np.save(qpath, queries)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name, _ in variants}
    for r in range(args.rounds):
        for name, version in variants:  # alternated: the machine's load hits both alike
            t = time.perf_counter()
            out = _query_child(root, qpath, version, args.oversample)
            log(f"  round {r + 1} {name}: {time.perf_counter() - t:.0f} s, "
                f"{out['unfiltered']['qps']:.1f} / {out['filtered']['qps']:.1f} q/s")
            for where, top in (("unfiltered", truth), ("filtered", truth_f)):
                found, found_scores = out[where].pop("ids"), out[where].pop("scores")
                want = [{f"v{row}" for row in rows if row >= 0} for rows in top.rows]
                out[where]["recall_at_10"] = float(np.mean(
                    [len(set(f) & w) / len(w) for f, w in zip(found, want, strict=True)]))
                # tie-aware: a hit scoring at least the exact 10th best is a right answer
                # (real corpora hold identical texts: any of the tied rows is), its score the
                # exact float32 one the path rescored with
                out[where]["tie_aware_recall_at_10"] = float(np.mean(
                    [np.sum(np.asarray(fs, dtype=np.float32) >= kth - 1e-5) / 10
                     for fs, kth in zip(found_scores, top.scores.min(axis=1), strict=True)]))
            runs[name].append(out)
    for name, outs in runs.items():
        if not outs:  # --rounds 0: the build (and --sweep) only
            continue
        summary: dict[str, Any] = {"runs": outs, "plan": outs[-1]["plan"],
                                   "plan_filtered": outs[-1]["plan_filtered"]}
        for where in ("unfiltered", "filtered"):
            summary[where] = {key: float(np.median([o[where][key] for o in outs]))
                              for key in ("qps", "p50_ms", "p95_ms", "recall_at_10",
                                          "tie_aware_recall_at_10")}
        summary["rss"] = {key: float(np.median([o["rss"][key] for o in outs]))
                          for key in outs[0]["rss"]}
        summary["open_s"] = float(np.median([o["open_s"] for o in outs]))
        result[name] = summary
    return result


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
            log(f"one box: {args.n:,} {'real' if args.real else 'derived'} rows")
            result["one_box"] = one_box(args, root)
        if not args.skip_ray:
            log(f"ray ingestion: {args.meetings} meetings")
            result["ray_ingest"] = ray_ingest(args, root)
    finally:
        if args.store is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"## Scale\n\nCommand: `{args.command}`; {result['machine']}.\n")
    if "one_box" in result and ("scan" in result["one_box"] or "index" in result["one_box"]):
        b = result["one_box"]
        print(f"{b['n']:,} rows ({b['source']}; noise {b['noise']}); add {b['build_s']:.0f} s "
              f"({b['rows_per_s']:,.0f} rows/s) + cleanup {b['cleanup_s']:.0f} s, {b['segments']} "
              f"segments; disk {b['disk_bytes'] / 2**20:,.0f} MiB ({b['bytes_per_row']:,.0f} B/row)"
              + (f"; {b['index_entry']['kind']} built in {b.get('index_build_s', float('nan')):.0f} s, "
                 f"{b['index_bytes'] / 2**20:,.0f} MiB on disk, params {b['index_entry']['params']}"
                 if "index_entry" in b else "") + ".\n")
        names = [n for n in ("scan", "index") if n in b]
        rows = []
        for name in names:
            for where in ("unfiltered", "filtered"):
                v = b[name][where]
                rows.append([name, where, f"{v['qps']:.1f}", f"{v['p50_ms']:.1f}", f"{v['p95_ms']:.1f}",
                             f"{v['recall_at_10']:.3f}", f"{v['tie_aware_recall_at_10']:.3f}"])
        print(markdown_table(["path", "query (1 thread)", "q/s (1/median)", "p50 ms", "p95 ms",
                              "recall@10 (ids)", "recall@10 (tie-aware)"], rows))
        print(f"\nMedians over {len(b[names[0]]['runs'])} query processes per path, alternated.\n")
        for name in names:
            r = b[name]["rss"]
            print(f"- {name}: RSS peak {r['VmHWM'] / 2**20:,.0f} MiB; at the end {r['VmRSS'] / 2**20:,.0f} "
                  f"MiB ({r['RssAnon'] / 2**20:,.0f} MiB anonymous, {r['RssFile'] / 2**20:,.0f} MiB "
                  f"file pages); open {b[name]['open_s']:.2f} s.\n  Plan: {b[name]['plan']}\n"
                  f"  Filtered plan: {b[name]['plan_filtered']}")
        print()
    if "ray_ingest" in result:
        g = result["ray_ingest"]
        print(f"Ray ingestion: {g['documents']} QMSum meetings ({g['characters']:,} characters), "
              f"default model, end to end in a fresh process.\n")
        print(markdown_table(["run", "wall s", "chunks", "chunks/s"],
                             [[k, f"{g[k]['wall_s']:.1f}", g[k]["chunks"], f"{g[k]['chunks_per_s_wall']:.1f}"]
                              for k in ("one process", "ray, 2 workers")]))
    write_json(args.json, result)
    return 0
