"""``hnsw-int8``'s graph search against hnswlib on the same graph, one query at a time, one thread.

Measures, in one run (``python -m bench graph-kernel``; ``--quick`` for a smoke run):

1. **Raw kernel**: hnswlib builds a graph (M=16, ef_construction=200, seed 100); vecstore reads
   it out of hnswlib's file (``read_hnswlib_graph``, as ``create_index("hnsw-int8")`` does), so
   both search the very same graph. At each ``--efs`` value, ``graph_search`` on the graph's
   arrays (queries folded beforehand) and hnswlib's ``knn_query(num_threads=1)`` answer each
   query in turn, in alternating order; q/s from the median latency, recall@10 of the top 10
   each returns (the kernel's ranked by int8 distances, not rescored).
2. **End to end**: two tables of the same rows (added ``--add-batch`` rows per call), one with
   ``create_index("hnsw-int8")``, one with ``create_index()`` (the default), queried with
   ``tbl.search(q).limit(10).to_list()`` in turns with hnswlib's ``knn_query`` at the ef the
   default index measured at build time; q/s from the median latency, recall@10.

Recall is tie-aware (:mod:`vecstore.evaluation`) against the exact float32 top 10. Every figure
is printed with the load average at the start and end of its section: the machine is shared.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import (
    ScenarioParser,
    add_vector_options,
    arrow_rows,
    log,
    markdown_table,
    pin_threads,
    write_json,
)
from bench.data import load_vectors
from vecstore.evaluation import kth_best, tie_aware_recalls

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
K = 10


def configure(ap: ScenarioParser) -> None:
    add_vector_options(ap, n=(64_000, 5_000), queries=(500, 100))
    ap.add_argument("--efs", default="32,64,96", help="the ef values of section 1 (default: %(default)s)")
    ap.add_argument("--add-batch", type=int, default=5_000, metavar="ROWS",
                    help="rows per tbl.add call of the tables of section 2 (default: %(default)s)")
    ap.add_argument("--sections", default="kernel,table",
                    help="kernel, table or both (default: %(default)s)")
    ap.add_sized("--budget", type=float, full=30.0, quick=5.0,
                 help="seconds of timed queries per measurement, at most (every query runs at least once)")


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def _turns(systems: dict[str, Callable[[int], Any]], n: int, budget_s: float
           ) -> dict[str, tuple[list[Any], float]]:
    """Each ``systems[label](i)`` for queries ``0..n-1``, the systems taking turns query by
    query in a rotating order: results and q/s from the median latency. Queries are repeated
    from the first until every system has run for ``budget_s`` in all or each query once."""
    labels = list(systems)
    out: dict[str, list[Any]] = {x: [] for x in labels}
    lat: dict[str, list[float]] = {x: [] for x in labels}
    spent, i = 0.0, 0
    while i < n or spent < budget_s * len(labels):
        shift = i % len(labels)
        for label in labels[shift:] + labels[:shift]:
            t = time.perf_counter()
            res = systems[label](i % n)
            lat[label].append(time.perf_counter() - t)
            spent += lat[label][-1]
            if i < n:
                out[label].append(res)
        i += 1
        if i >= 20 * n:
            break
    return {x: (out[x], 1.0 / statistics.median(lat[x])) for x in labels}


def _recall(scores: F32, kth: F32, found: list[I64]) -> float:
    got = [scores[i, np.unique(f[f >= 0])] for i, f in enumerate(found)]
    return float(np.mean(tie_aware_recalls(got, kth, K)))


def _kernel_section(base: F32, queries: F32, scores: F32, kth: F32, efs: list[int],
                    budget: float) -> list[dict[str, Any]]:
    import hnswlib
    from vecstore._native import loader

    from vecstore.config import Metric
    from vecstore.index.graph_int8 import read_hnswlib_graph

    kern = loader.get("graph", wait=True)
    hn = hnswlib.Index(space="ip", dim=base.shape[1])
    hn.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    t = time.perf_counter()
    hn.add_items(base, np.arange(len(base)), num_threads=2)
    log(f"hnswlib graph built in {time.perf_counter() - t:.1f} s")
    with tempfile.TemporaryDirectory(prefix="vecstore-graph-bench-") as tmp:
        path = Path(tmp) / "graph.bin"
        hn.save_index(str(path))
        g = read_hnswlib_graph(path.read_bytes(), base, Metric.COSINE)
    folded, qscales, consts = g.fold(queries)
    none = np.empty(0, dtype=np.bool_)
    rows = []
    for ef in efs:
        hn.set_ef(ef)

        def ours(i: int, ef: int = ef) -> I64:
            nodes, _ = kern.graph_search(folded[i], float(qscales[i]), float(consts[i]), g.codes,
                                         g.sqnorms, g.counts0, g.links0, g.up_start, g.up_counts,
                                         g.up_links, g.entry, g.max_level, ef, none)
            return g.labels[nodes[:K]]

        def theirs(i: int) -> I64:
            return hn.knn_query(queries[i], k=K, num_threads=1)[0][0].astype(np.int64)

        load0 = _load()
        res = _turns({"graph_search": ours, "hnswlib": theirs}, len(queries), budget)
        row = {"ef": ef, "load": f"{load0} -> {_load()}"}
        for label, (found, qps) in res.items():
            row[f"{label} q/s"] = qps
            row[f"{label} recall"] = _recall(scores, kth, found)
        row["ratio"] = row["graph_search q/s"] / row["hnswlib q/s"]
        log(f"ef={ef}: {row}")
        rows.append(row)
    return rows


def _table_section(base: F32, queries: F32, scores: F32, kth: F32, add_batch: int,
                   budget: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="vecstore-graph-tables-") as work:
        return _tables_in(Path(work), base, queries, scores, kth, add_batch, budget)


def _tables_in(work: Path, base: F32, queries: F32, scores: F32, kth: F32, add_batch: int,
               budget: float) -> dict[str, Any]:
    import hnswlib

    import vecstore

    db = vecstore.connect(work)
    tables = {}
    for label, kind in (("hnsw-int8", "hnsw-int8"), ("default", None)):
        tbl = db.create_table(label, dim=base.shape[1])
        rows = arrow_rows({"id": [str(i) for i in range(len(base))]}, base)
        step = add_batch if add_batch > 0 else len(base)
        for start in range(0, len(base), step):
            tbl.add(rows.slice(start, step))
        t = time.perf_counter()
        if kind is None:
            tbl.create_index()
        else:
            tbl.create_index(kind)
        log(f"{label}: index built in {time.perf_counter() - t:.1f} s: {tbl.list_indexes()}")
        tables[label] = tbl
    ef = int(tables["default"].list_indexes()[0]["params"]["ef"])
    hn = hnswlib.Index(space="ip", dim=base.shape[1])
    hn.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    hn.add_items(base, np.arange(len(base)), num_threads=2)
    hn.set_ef(ef)

    def user(tbl: Any) -> Callable[[int], I64]:
        return lambda i: np.array([int(h["id"]) for h in tbl.search(queries[i]).limit(K).to_list()],
                                  dtype=np.int64)

    systems = {label: user(tbl) for label, tbl in tables.items()}
    systems[f"hnswlib ef={ef}"] = lambda i: hn.knn_query(queries[i], k=K,
                                                         num_threads=1)[0][0].astype(np.int64)
    for label in tables:  # the first query of each table loads what it maps
        systems[label](0)
    load0 = _load()
    res = _turns(systems, len(queries), budget)
    out: dict[str, Any] = {"load": f"{load0} -> {_load()}",
                           "params": {label: t.list_indexes()[0]["params"] for label, t in tables.items()}}
    for label, (found, qps) in res.items():
        out[label] = {"q/s": qps, "recall": _recall(scores, kth, found)}
    log(f"end to end: {out}")
    return out


def run(args: argparse.Namespace) -> int:
    pin_threads(1)
    sample = load_vectors(args.data, args.n, args.queries, synthetic=args.synthetic)
    base = np.ascontiguousarray(sample.base, dtype=np.float32)
    queries = np.ascontiguousarray(sample.queries, dtype=np.float32)
    log(f"{len(base):,} x {base.shape[1]} ({sample.source}); {len(queries)} queries; load {_load()}")
    scores = queries @ base.T
    kth = kth_best(scores, K)
    sections = {x for x in args.sections.split(",") if x}
    result: dict[str, Any] = {"n": len(base), "queries": len(queries), "source": sample.source,
                              "command": args.command}
    if "kernel" in sections:
        rows = _kernel_section(base, queries, scores, kth, [int(x) for x in args.efs.split(",")],
                               args.budget)
        result["kernel"] = rows
        print(f"\nRaw kernel vs hnswlib on the same graph ({len(base):,} x {base.shape[1]}, "
              f"{sample.source}, {len(queries)} queries, one thread): `{args.command}`\n")
        print(markdown_table(
            ["ef", "graph_search q/s", "recall@10", "hnswlib q/s", "recall@10", "ratio", "load 1/5 min"],
            [[r["ef"], f"{r['graph_search q/s']:,.0f}", f"{r['graph_search recall']:.3f}",
              f"{r['hnswlib q/s']:,.0f}", f"{r['hnswlib recall']:.3f}", f"{r['ratio']:.2f}x", r["load"]]
             for r in rows]))
    if "table" in sections:
        e2e = _table_section(base, queries, scores, kth, args.add_batch, args.budget)
        result["table"] = e2e
        print(f"\nEnd to end, `tbl.search(q).limit(10).to_list()` ({len(base):,} rows, "
              f"load {e2e['load']}):\n")
        labels = [x for x in e2e if x not in ("load", "params")]
        ref = e2e["default"]["q/s"]
        print(markdown_table(["system", "q/s", "recall@10", "vs default"],
                             [[x, f"{e2e[x]['q/s']:,.0f}", f"{e2e[x]['recall']:.3f}",
                               f"{e2e[x]['q/s'] / ref:.2f}x"] for x in labels]))
        print(f"\nparams: {e2e['params']}")
    write_json(args.json, result)
    return 0
