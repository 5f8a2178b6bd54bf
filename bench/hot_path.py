"""The hot path, the way users call it: vecstore against hnswlib and FAISS on one thread.

Measures, in one run (``python -m bench hot-path``; ``--quick`` for a small smoke run):

1. **Fixed cost per query** on a tiny table (1,000 rows): ``tbl.search(q).limit(10).to_list()``
   in microseconds, without and with an index.
2. **Unfiltered search at recall@10 >= 0.95**: ``create_index()`` with its defaults (and each
   graph kind by name), queried with ``.to_list()`` one at a time, against hnswlib (M=16,
   ef_construction=200) and FAISS HNSW (M=16) at the first ``ef`` of a grid that reaches 0.95 on
   these very queries (an oracle setting vecstore does not get: it uses the effort it measured
   on its own rows at build time).
3. **Rows that arrived in many writes**: the same rows added in calls of ``--add-batch`` rows
   against one call, with no index and with ``create_index()``, unfiltered and under filters of
   about 10% and 1%: the ratio of queries/s.
4. **Batch**: 1,000 queries at once on 2 threads (``search_batch(...).hits()``) against
   hnswlib's ``knn_query(num_threads=2)`` at its 0.95 ``ef``.
5. **Memory**: a fresh process (imports done) opens the table and answers 300 queries; the
   growth of its resident memory, anonymous and file-backed, against hnswlib's after
   ``load_index`` and the same queries.
6. **Cold open**: a fresh process (imports done) opens the table and answers one query, against
   hnswlib's ``load_index`` + one query (median of 5 runs, files in the page cache).

Filtered search against the peers with the match set handed to them is ``python -m bench ann``.
Recall is tie-aware (:mod:`vecstore.evaluation`) against the exact top 10 of the same vectors.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import (
    ScenarioParser,
    add_vector_options,
    arrow_rows,
    log,
    machine_line,
    markdown_table,
    pin_threads,
    thread_env,
    write_json,
)
from bench.data import load_vectors
from vecstore.evaluation import kth_best, tie_aware_recalls

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
K = 10
TARGET = 0.95
EF_GRID = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
GRAPH_KINDS = ("hnsw-int8", "hnsw", "hnsw-sq")


def configure(ap: ScenarioParser) -> None:
    add_vector_options(ap, n=(200_000, 20_000), queries=(500, 200))
    ap.add_argument("--add-batch", type=int, default=5_000, metavar="ROWS",
                    help="rows per tbl.add call of the many-writes table (default: %(default)s)")
    ap.add_argument("--kinds", default=",".join(GRAPH_KINDS),
                    help="index kinds measured by name beside create_index()'s default")
    ap.add_argument("--work", type=Path, default=None, help="directory for the stores (default: a temp dir)")


# --- helpers ----------------------------------------------------------------------------------


def _truth(base: F32, queries: F32, rows: I64 | None = None) -> tuple[F32, F32]:
    """Exact cosine scores of every query against ``base`` (unit vectors: dot products), and
    each query's k-th best among ``rows`` (every row when None)."""
    scores = queries @ base.T
    sub = scores if rows is None else scores[:, rows]
    return scores, kth_best(sub, K)


def _recall(scores: F32, kth: F32, found: list[I64]) -> float:
    got = [scores[i, np.unique(f[f >= 0])] for i, f in enumerate(found)]
    return float(np.mean(tie_aware_recalls(got, kth, K)))


def _per_query(fn: Any, n: int, budget_s: float = 20.0) -> tuple[list[Any], float]:
    """``fn(i)`` for queries in order until the budget is spent: results and queries/s (from
    the median latency, robust to a slow spell of this shared machine)."""
    out, lat = [], []
    for i in range(n):
        t = time.perf_counter()
        out.append(fn(i))
        lat.append(time.perf_counter() - t)
        if sum(lat) > budget_s and i >= 50:
            break
    return out, 1.0 / statistics.median(lat)


def _ids_to_rows(hits: list[dict[str, Any]]) -> I64:
    return np.array([int(h["id"]) for h in hits], dtype=np.int64)


def _table(db: Any, name: str, base: F32, attrs: Any, batch: int) -> Any:
    import pyarrow as pa

    tbl = db.create_table(name, dim=base.shape[1])
    cols = {"id": pa.array([str(i) for i in range(len(base))]),
            "bucket": pa.array(np.arange(len(base)) % 1000, pa.int32())}
    if attrs is not None:
        cols["month"] = attrs.column("month")
    rows = arrow_rows(cols, base)
    step = batch if batch > 0 else len(base)
    for start in range(0, len(base), step):
        tbl.add(rows.slice(start, step))
    return tbl


def _hnswlib(base: F32, threads: int = 2) -> Any:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    index.add_items(base, np.arange(len(base)), num_threads=threads)
    return index


def _first_ef(search: Any, scores: F32, kth: F32, n: int) -> tuple[int, float]:
    """The first ef of the grid reaching the target on these queries (an oracle), its recall."""
    for ef in EF_GRID:
        r = _recall(scores[:n], kth[:n], [search(i, ef) for i in range(n)])
        if r >= TARGET:
            return ef, r
    return EF_GRID[-1], r


# --- children (memory, cold open) -------------------------------------------------------------

CHILD = r"""
import json, sys, time
import numpy as np
from bench.common import memory_status
mode, path, name, qpath, nq = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
queries = np.load(qpath)
if mode == "vecstore":
    import vecstore
else:
    import hnswlib
before = memory_status()
t = time.perf_counter()
if mode == "vecstore":
    tbl = vecstore.connect(path).open_table(name)
    first = tbl.search(queries[0]).limit(10).to_list()
else:
    meta = json.loads(open(path + ".json").read())
    index = hnswlib.Index(space="ip", dim=queries.shape[1])
    index.load_index(path, max_elements=meta["n"])
    index.set_ef(meta["ef"])
    first = index.knn_query(queries[0], k=10)
cold = time.perf_counter() - t
for q in queries[1:nq]:
    if mode == "vecstore":
        tbl.search(q).limit(10).to_list()
    else:
        index.knn_query(q, k=10)
after = memory_status()
print(json.dumps({"cold_s": cold, "before": before, "after": after}))
"""


def _child(mode: str, path: str, name: str, qpath: str, nq: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, path, name, qpath, str(nq)],
                         capture_output=True, text=True, env=thread_env(1), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import vecstore

    pin_threads(1)
    sample = load_vectors(args.data, args.n, args.queries, synthetic=args.synthetic)
    base = np.ascontiguousarray(sample.base, dtype=np.float32)
    queries = np.ascontiguousarray(sample.queries, dtype=np.float32)
    nq = len(queries)
    work = Path(args.work or tempfile.mkdtemp(prefix="vecstore-hot-"))
    log(f"{len(base):,} x {base.shape[1]} ({sample.source}); {nq} queries; stores in {work}")
    kinds = [k for k in args.kinds.split(",") if k]
    R: dict[str, Any] = {"n": len(base), "queries": nq, "source": sample.source,
                         "machine": machine_line(), "command": args.command}
    scores, kth = _truth(base, queries)
    # warm the compiled kernels once, so that no measurement pays their load
    from vecstore._native import loader

    loader.get("kernels", wait=True), loader.get("graph", wait=True)

    # 1. fixed cost on a tiny table
    db = vecstore.connect(work / "tiny")
    tiny = _table(db, "tiny", base[:1000], None, 0)
    fixed = {}
    _, q = _per_query(lambda i: tiny.search(queries[i % nq]).limit(K).to_list(), 2000, 5.0)
    fixed["scan"] = 1e6 / q
    tiny.create_index()
    _, q = _per_query(lambda i: tiny.search(queries[i % nq]).limit(K).to_list(), 2000, 5.0)
    fixed["create_index()"] = 1e6 / q
    R["fixed_us"] = fixed
    log(f"fixed cost on 1,000 rows: {fixed}")

    # 2. unfiltered at recall >= 0.95 (tables built by many adds, the way users build them)
    db = vecstore.connect(work / "main")
    results: dict[str, dict[str, Any]] = {}
    tables: dict[str, Any] = {}
    for kind in ["default", *kinds]:
        t0 = time.perf_counter()
        tbl = _table(db, f"t_{kind.replace('-', '_')}", base, sample.attrs, args.add_batch)
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        entry = tbl.create_index() if kind == "default" else tbl.create_index(kind)
        build_s = time.perf_counter() - t0
        found, qps = _per_query(
            lambda i, tbl=tbl: _ids_to_rows(tbl.search(queries[i]).limit(K).to_list()), nq)
        results[entry["kind"] + (" (create_index())" if kind == "default" else "")] = {
            "qps": qps, "recall": _recall(scores, kth, found), "build_s": build_s, "add_s": add_s,
            "params": entry["params"]}
        tables[kind] = tbl
        recall = results[list(results)[-1]]["recall"]
        log(f"{kind}: {qps:,.0f} q/s recall {recall:.3f}, build {build_s:.0f} s")
    default_kind = tables["default"].list_indexes()[0]["kind"]

    hn = _hnswlib(base)
    ef, rec = _first_ef(lambda i, ef: (hn.set_ef(ef), hn.knn_query(queries[i], k=K)[0][0])[1],
                        scores, kth, nq)
    hn.set_ef(ef)
    found, qps = _per_query(lambda i: hn.knn_query(queries[i], k=K, num_threads=1)[0][0], nq)
    results[f"hnswlib ef={ef}"] = {"qps": qps, "recall": _recall(scores, kth, found)}
    hn_ef = ef
    try:
        import faiss

        faiss.omp_set_num_threads(1)
        fh = faiss.IndexHNSWFlat(base.shape[1], 16, faiss.METRIC_INNER_PRODUCT)
        fh.hnsw.efConstruction = 200
        fh.add(base)

        def fsearch(i: int, ef: int) -> I64:
            p = faiss.SearchParametersHNSW()
            p.efSearch = ef
            return fh.search(queries[i : i + 1], K, params=p)[1][0]

        ef, _ = _first_ef(fsearch, scores, kth, nq)
        found, qps = _per_query(lambda i: fsearch(i, ef), nq)
        results[f"FAISS HNSW ef={ef}"] = {"qps": qps, "recall": _recall(scores, kth, found)}
    except ImportError:
        log("FAISS is not installed: skipped")
    R["unfiltered"] = results

    # 3. many writes against one
    one = _table(db, "one", base, sample.attrs, 0)
    many = tables["default"]
    filters = {"none": None, "~10%": ("bucket < ?", 100), "~1%": ("bucket < ?", 10)}
    seg: dict[str, Any] = {"segments_many": len(many._current().manifest.segments)}
    for label, tbls in (("no index", (one, _table(db, "many_plain", base, sample.attrs, args.add_batch))),
                        ("create_index()", (one, many))):
        if label == "create_index()":
            one.create_index()
        for fname, flt in filters.items():
            qps_pair = []
            for tbl in tbls:
                def ask(i: int, tbl: Any = tbl, flt: Any = flt) -> None:
                    query = tbl.search(queries[i]).limit(K)
                    (query.where(*flt) if flt else query).to_list()

                qps_pair.append(_per_query(ask, nq, 10.0)[1])
            seg[f"{label}, filter {fname}"] = {"one_add_qps": qps_pair[0], "many_adds_qps": qps_pair[1],
                                               "ratio": qps_pair[1] / qps_pair[0]}
    R["segments"] = seg
    log(f"many adds vs one: {seg}")

    # 4. batch, 2 threads
    pin_threads(2)
    batch = np.concatenate([queries] * (-(-1000 // nq)))[:1000]
    bq = many.search_batch(batch, threads=2).limit(K)
    bq.hits()
    t0 = time.perf_counter()
    for _ in range(3):
        bq.hits()
    v_batch = 3000 / (time.perf_counter() - t0)
    hn.set_ef(hn_ef)
    hn.knn_query(batch, k=K, num_threads=2)
    t0 = time.perf_counter()
    for _ in range(3):
        hn.knn_query(batch, k=K, num_threads=2)
    h_batch = 3000 / (time.perf_counter() - t0)
    R["batch"] = {"vecstore_qps": v_batch, "hnswlib_qps": h_batch, "ratio": v_batch / h_batch}
    pin_threads(1)
    log(f"batch: {R['batch']}")

    # 5, 6. memory and cold open in fresh processes
    qpath = str(work / "queries.npy")
    np.save(qpath, queries)
    hpath = str(work / "hnswlib.bin")
    hn.save_index(hpath)
    Path(hpath + ".json").write_text(json.dumps({"n": len(base), "ef": hn_ef}))
    store = str(work / "main")
    name = many.name
    for path in Path(store).rglob("*"):  # into the page cache
        if path.is_file():
            path.read_bytes()
    Path(hpath).read_bytes()
    runs: dict[str, list[dict[str, Any]]] = {"vecstore": [], "hnswlib": []}
    for _ in range(5):
        runs["vecstore"].append(_child("vecstore", store, name, qpath, min(300, nq)))
        runs["hnswlib"].append(_child("hnswlib", hpath, "", qpath, min(300, nq)))
    mem = {}
    for mode, rs in runs.items():
        growth = {key: statistics.median(r["after"][key] - r["before"][key] for r in rs)
                  for key in ("VmRSS", "RssAnon", "RssFile")}
        mem[mode] = {"cold_ms": statistics.median(r["cold_s"] for r in rs) * 1e3, **growth}
    R["memory"] = mem
    log(f"memory and cold open: {mem}")

    print(report(R, default_kind))
    write_json(args.json, R)
    return 0


def report(R: dict[str, Any], default_kind: str) -> str:
    n = R["n"]
    L = [f"### Hot path ({n:,} vectors, {R['queries']} queries; {R['source']}; {R['machine']})", "",
         f"`{R['command']}`; one thread unless stated; vecstore tables built by `add` calls of a few "
         f"thousand rows and queried with `.to_list()`; `create_index()` builds `{default_kind}`.", ""]
    L.append("**Fixed cost per query** on 1,000 rows, `search(q).limit(10).to_list()`: "
             + ", ".join(f"{k} {v:.0f} µs" for k, v in R["fixed_us"].items()) + ".")
    L.append("")
    rows = []
    hn = next(v for k, v in R["unfiltered"].items() if k.startswith("hnswlib"))
    for name, r in R["unfiltered"].items():
        rows.append([name, f"{r['qps']:,.0f}", f"{r['recall']:.3f}", f"{r['qps'] / hn['qps']:.2f}x",
                     f"{r.get('build_s', float('nan')):.0f}"])
    L.append(markdown_table(["unfiltered, k=10", "q/s", "recall@10", "vs hnswlib", "build s"], rows))
    L.append("")
    seg = R["segments"]
    L.append(f"**Many writes vs one** ({seg['segments_many']} segments after the adds):")
    L.append("")
    L.append(markdown_table(["strategy", "one add q/s", "many adds q/s", "ratio"],
                            [[k, f"{v['one_add_qps']:,.0f}", f"{v['many_adds_qps']:,.0f}",
                              f"{v['ratio']:.2f}"]
                             for k, v in seg.items() if isinstance(v, dict)]))
    L.append("")
    b = R["batch"]
    L.append(f"**Batch** of 1,000 queries on 2 threads: vecstore {b['vecstore_qps']:,.0f} q/s, hnswlib "
             f"{b['hnswlib_qps']:,.0f} q/s: {b['ratio']:.2f}x.")
    L.append("")
    m = R["memory"]
    L.append(markdown_table(
        ["fresh process", "open + first query ms", "RSS growth MiB", "anonymous MiB", "file-backed MiB"],
        [[k, f"{v['cold_ms']:.0f}", f"{v['VmRSS'] / 2**20:.0f}", f"{v['RssAnon'] / 2**20:.0f}",
          f"{v['RssFile'] / 2**20:.0f}"] for k, v in m.items()]))
    ratio = m["vecstore"]["VmRSS"] / max(1, m["hnswlib"]["VmRSS"])
    L.append("")
    L.append(f"RSS growth {ratio:.2f}x hnswlib's; cold open + first query "
             f"{m['vecstore']['cold_ms'] / m['hnswlib']['cold_ms']:.2f}x hnswlib's.")
    return "\n".join(L)


if __name__ == "__main__":
    raise SystemExit("run it as: python -m bench hot-path [options]")

