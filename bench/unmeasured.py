"""The default search of tables that were never indexed or optimized, as tests and small apps
use them: recall@10 and latency at the planner's defaults against the fixed scan width those
tables used to get (``.rescore(16)``), one thread, in one run.

    python -m bench unmeasured --data /work/shared/data          # PyPI rows and random rows
    python -m bench unmeasured --data /work/shared/data --quick  # 1,000 and 3,000 rows only

For each data set (the PyPI MiniLM vectors, and random Gaussian rows of the same dimension: the
case sign codes rank worst) and each size, a table is built by ``tbl.add`` calls of 1,000 rows
and queried with ``tbl.search(q).limit(10).to_list()``, default and with ``.rescore(16)``, the
two taking turns in blocks of 10 queries (so a slow spell of this shared machine hits both).
Recall is tie-aware against exact float32 (:mod:`vecstore.evaluation`); the report also gives
the plan the default chose and the time the adds took (an add that brings a table to 5,000 rows,
or grows it by half, measures the scan's width: ``Table.add``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

from bench.common import (
    ScenarioParser,
    add_in_batches,
    arrow_rows,
    machine_line,
    markdown_table,
    pin_threads,
    write_json,
)
from bench.data import exact_scores_of, exact_topk, load_vectors
from vecstore.evaluation import tie_aware_recall

K = 10
BLOCK = 10


def configure(ap: ScenarioParser) -> None:
    ap.add_sized("--sizes", full="1000,3000,20000", quick="1000,3000", help="table sizes, comma-separated")
    ap.add_sized("--queries", type=int, full=300, quick=100, help="held-out query vectors")
    ap.add_argument("--add-batch", type=int, default=1_000, help="rows per tbl.add call")
    ap.add_argument("--seed", type=int, default=0)


def _measure(tbl: Any, base: np.ndarray, queries: np.ndarray) -> dict[str, Any]:
    """Recall@10 and median latency of the default search and of ``.rescore(16)``, in turns."""
    calls = {"default": lambda q: tbl.search(q).limit(K).to_list(),
             "rescore(16)": lambda q: tbl.search(q).limit(K).rescore(16).to_list()}
    for q in queries[:20]:  # warm up: kernels loaded, pages read
        for call in calls.values():
            call(q)
    found: dict[str, list[np.ndarray]] = {name: [np.empty(0, np.int64)] * len(queries) for name in calls}
    lat: dict[str, list[float]] = {name: [] for name in calls}
    for turn, start in enumerate(range(0, len(queries), BLOCK)):
        names = list(calls) if turn % 2 == 0 else list(calls)[::-1]
        for name in names:
            for i in range(start, min(len(queries), start + BLOCK)):
                t = time.perf_counter()
                hits = calls[name](queries[i])
                lat[name].append(time.perf_counter() - t)
                found[name][i] = np.array([int(h["id"]) for h in hits], dtype=np.int64)
    kth = exact_topk(base, queries, K)[0][:, K - 1]
    plan = tbl.search(queries[0]).limit(K).explain()
    return {name: {"recall": tie_aware_recall(exact_scores_of(base, queries, found[name]), kth, K),
                   "median_us": statistics.median(lat[name]) * 1e6} for name in calls} | {
        "plan": f"{plan.strategy.value}, oversample {plan.oversample}",
        "scan": None if tbl._current().manifest.scan is None else tbl._current().manifest.scan.oversample}


def run(args: argparse.Namespace) -> int:
    pin_threads(args.threads)
    from vecstore._native import loader

    import vecstore

    loader.compile_all()
    sizes = [int(x) for x in args.sizes.split(",")]
    biggest = max(sizes)
    pypi = load_vectors(args.data, biggest, args.queries, attrs=False, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    dim = pypi.base.shape[1]
    noise = rng.standard_normal((biggest + args.queries, dim)).astype(np.float32)
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)  # unit rows: the truth's dot is the cosine
    sets = {"PyPI MiniLM": (np.ascontiguousarray(pypi.base), np.ascontiguousarray(pypi.queries)),
            "random Gaussian": (noise[:biggest], noise[biggest:])}
    R: dict[str, Any] = {"machine": machine_line(), "command": "python -m bench " + " ".join(sys.argv[1:]),
                         "results": []}
    for name, (base_all, queries) in sets.items():
        for n in sizes:
            base = base_all[:n]
            with tempfile.TemporaryDirectory() as tmp:
                tbl = vecstore.connect(tmp).create_table("t", dim=dim)
                t = time.perf_counter()
                add_in_batches(tbl, arrow_rows({"id": np.arange(n).astype(str)}, base), args.add_batch)
                add_s = time.perf_counter() - t
                time.sleep(2.1)  # past the versions-stamp margin, as a table read later is
                r = {"data": name, "rows": n, "add_s": add_s, **_measure(tbl, base, queries)}
            R["results"].append(r)
            print(r, file=sys.stderr)
    rows = [[r["data"], f"{r['rows']:,}", r["plan"], f"{r['default']['recall']:.3f}",
             f"{r['default']['median_us']:.0f}", f"{r['rescore(16)']['recall']:.3f}",
             f"{r['rescore(16)']['median_us']:.0f}", f"{r['add_s']:.1f}"] for r in R["results"]]
    print(f"### Tables never indexed or optimized ({args.queries} queries; {R['machine']})\n")
    print(f"`{R['command']}`; tables built by `add` calls of {args.add_batch:,} rows, queried with "
          f"`search(q).limit(10).to_list()`, one thread.\n")
    print(markdown_table(["data", "rows", "default plan", "recall@10", "median µs", "rescore(16) recall",
                          "rescore(16) µs", "adds s"], rows))
    write_json(args.json, R)
    return 0
