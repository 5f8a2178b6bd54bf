"""The hot path, the way users call it: vecstore against hnswlib and FAISS on one thread.

Measures, in one run (``python -m bench hot-path``; ``--quick`` for a small smoke run):

1. **Fixed cost per query** on a tiny table (1,000 rows): ``tbl.search(q).limit(10).to_list()``
   in microseconds, without and with an index, beside hnswlib's ``knn_query`` on the same rows
   for scale, taking turns in blocks once the versions-stamp margin after the commits has passed.
2. **Unfiltered search at recall@10 >= 0.95**: ``create_index()`` with its defaults (and each
   graph kind by name), queried with ``.to_list()`` one at a time, against hnswlib (M=16,
   ef_construction=200) and FAISS HNSW (M=16) at the first ``ef`` of a grid that reaches 0.95 on
   these very queries (an oracle setting vecstore does not get: it uses the effort it measured
   on its own rows at build time). All systems answer each query in turn, in a rotating order,
   and are compared by median latency.
3. **Rows that arrived in many writes**: the same rows added in calls of ``--add-batch`` rows
   against one call, with no index and with ``create_index()``, unfiltered and under filters of
   about 10% and 1%, then both after ``optimize()``: the ratio of queries/s, the two tables
   queried in turns (same query, alternating order) and compared by median latency.
4. **Batch**: 1,000 queries at once (``search_batch(q, threads=t).limit(10).hits()``) on the
   ``create_index()`` table of section 2 (built by many adds), against hnswlib's
   ``knn_query(num_threads=t)`` at its 0.95 ``ef``, on 1 and 2 threads; unfiltered, and with
   the ~10% filter ``bucket < 100`` (hnswlib handed the match set as its filter callback). A
   fresh process (its Numba pool sized for 2 threads) runs ``--batch-rounds`` rounds, each
   system once per round in alternating order, and reports medians: the ratio to hnswlib and
   each system's 1 -> 2 thread speed-up, with the load average before and after.
5. **Memory**: a fresh process (imports done) opens the table and answers 300 queries; the
   growth of its resident memory, anonymous and file-backed, against hnswlib's after
   ``load_index`` and the same queries.
6. **Cold open**: a fresh process (imports done) opens the table and answers one query, against
   hnswlib's ``load_index`` + one query (median of 5 runs, files in the page cache).

7. **Calibration at other targets**: ``create_index(target_recall=t)`` for t = 0.9, 0.95, 0.99 on
   the many-adds table: the ef it measured, the recall it gets on the held-out queries and its
   q/s, beside hnswlib at the first ef of the grid reaching t on these very queries.
8. **Filters of the data set**: ``.where(...)`` on the ``create_index()`` table (ranges chosen
   from the data's quantiles keeping ~50%, ~10%, ~1% and ~0.1%, each labelled with the share it
   really keeps; Reuters topics with ``list_contains``; a conjunction): recall and q/s, beside
   hnswlib's filter callback and NumPy exact, both handed the match set.

``--dataset reuters`` runs all of it on Reuters-21578 (:mod:`bench.reuters`: 21,577 news
stories, 500 held out as queries) instead of the PyPI sample.
Filtered search against the peers with the match set handed to them is ``python -m bench ann``.
Recall is tie-aware (:mod:`vecstore.evaluation`) against the exact top 10 of the same vectors.
"""

from __future__ import annotations

import argparse
import atexit
import json
import shutil
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
from vecstore.storage.manifest import STAMP_MARGIN_NS

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
K = 10
TARGET = 0.95
EF_GRID = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512]
GRAPH_KINDS = ("hnsw-int8", "hnsw", "hnsw-sq")
SECTIONS = ("fixed", "unfiltered", "targets", "filters", "writes", "batch", "memory")


def configure(ap: ScenarioParser) -> None:
    add_vector_options(ap, n=(200_000, 20_000), queries=(500, 200))
    ap.add_argument("--add-batch", type=int, default=5_000, metavar="ROWS",
                    help="rows per tbl.add call of the many-writes table (default: %(default)s)")
    ap.add_argument("--kinds", default=",".join(GRAPH_KINDS),
                    help="index kinds measured by name beside create_index()'s default")
    ap.add_argument("--work", type=Path, default=None, help="directory for the stores (default: a temp dir)")
    ap.add_argument("--dataset", choices=("pypi", "reuters"), default="pypi",
                    help="PyPI summaries (default) or Reuters-21578 stories (bench/reuters.py)")
    ap.add_argument("--targets", default="0.9,0.95,0.99",
                    help="target recalls create_index(target_recall=...) is checked at")
    ap.add_argument("--batch-rounds", type=int, default=9, metavar="N",
                    help="interleaved rounds of the batch section (default: %(default)s)")
    ap.add_argument("--derived-from", type=int, default=0, metavar="N",
                    help="PyPI only: embed (or take cached) N real vectors and derive --n rows from them "
                         "as bench/scale.py does (source row i mod N plus noise of norm --noise, "
                         "renormalised; attributes repeated alike): tables larger than the embedded "
                         "sample, e.g. the 200,000-row cold open (default: off)")
    ap.add_argument("--noise", type=float, default=0.3,
                    help="with --derived-from: the norm of the noise added to a source vector")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="the sections to run, comma-separated (default: all): " + ", ".join(SECTIONS)
                    + "; the tables and hnswlib of section 2 are built whatever is chosen")


# --- helpers ----------------------------------------------------------------------------------


def _truth(base: F32, queries: F32, rows: I64 | None = None) -> tuple[F32, F32]:
    """Exact cosine scores of every query against ``base`` (unit vectors: dot products), and
    each query's k-th best among ``rows`` (every row when None)."""
    scores = queries @ base.T
    sub = scores if rows is None else scores[:, rows]
    return scores, kth_best(sub, K)


def _recall(scores: F32, kth: F32, found: list[I64]) -> float:
    """Mean recall@K of the queries answered (a system out of time budget answers the first
    ``len(found)`` queries only)."""
    got = [scores[i, np.unique(f[f >= 0])] for i, f in enumerate(found)]
    return float(np.mean(tie_aware_recalls(got, kth[:len(got)], K)))


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


BLOCK = 10
"""Queries a system answers in a row in :func:`_round_robin` before the next takes its turn."""


def _round_robin(systems: dict[str, Any], n: int,
                 budget_s: float = 60.0) -> dict[str, tuple[list[Any], float]]:
    """Each ``systems[label](i)`` over queries ``0..n-1``: the systems take turns in a
    rotating order, each answering a block of :data:`BLOCK` queries in a row. Their results
    and queries/s (from the median latency).

    Blocks, not single queries, so that each system is measured the way it serves, with its
    own data in the caches: right after one query of hnswlib's filter callback (tens of ms of
    Python calls over the graph), a 0.1% filter's query took 542 us in vecstore against 70 us
    in a row, and NumPy's 5 us took 123 us (64,000 PyPI rows, ``bucket < 1``).
    Turns still alternate every block, so a slow spell of this shared machine hits all of
    them alike."""
    labels = list(systems)
    out: dict[str, list[Any]] = {x: [] for x in labels}
    lat: dict[str, list[float]] = {x: [] for x in labels}
    spent = 0.0
    for b, start in enumerate(range(0, n, BLOCK)):
        shift = b % len(labels)
        for label in labels[shift:] + labels[:shift]:
            for i in range(start, min(n, start + BLOCK)):
                t = time.perf_counter()
                out[label].append(systems[label](i))
                lat[label].append(time.perf_counter() - t)
                spent += lat[label][-1]
        if spent > budget_s and start + BLOCK >= 100:
            break
    return {x: (out[x], 1.0 / statistics.median(lat[x])) for x in labels}


def _interleaved(tables: tuple[Any, ...], flt: Any, queries: F32,
                 budget_s: float = 20.0) -> list[float]:
    """Queries/s of each table (from its median latency) over the same queries, the tables
    taking turns query by query and in alternating order."""
    lat: list[list[float]] = [[] for _ in tables]
    spent = 0.0
    for i in range(len(queries)):
        order = range(len(tables)) if i % 2 else reversed(range(len(tables)))
        for j in order:
            query = tables[j].search(queries[i]).limit(K)
            t = time.perf_counter()
            (query.where(*flt) if flt else query).to_list()
            lat[j].append(time.perf_counter() - t)
            spent += lat[j][-1]
        if spent > budget_s and i >= 50:
            break
    return [1.0 / statistics.median(x) for x in lat]


def _ids_to_rows(hits: list[dict[str, Any]]) -> I64:
    return np.array([int(h["id"]) for h in hits], dtype=np.int64)


def _table(db: Any, name: str, base: F32, attrs: Any, batch: int) -> Any:
    import pyarrow as pa

    tbl = db.create_table(name, dim=base.shape[1])
    cols = {"id": pa.array([str(i) for i in range(len(base))]),
            "bucket": pa.array(np.arange(len(base)) % 1000, pa.int32())}
    for name in ("month", "date", "topics"):
        if attrs is not None and name in attrs.column_names:
            cols[name] = attrs.column(name)
    rows = arrow_rows(cols, base)
    step = batch if batch > 0 else len(base)
    for start in range(0, len(base), step):
        tbl.add(rows.slice(start, step))
    return tbl


def _derived_sample(args: argparse.Namespace) -> Any:
    """``args.n`` rows derived from ``args.derived_from`` real ones (see ``--derived-from``),
    with the real held-out queries."""
    from bench.data import VectorSample
    from bench.scale import derived_batch

    real = load_vectors(args.data, args.derived_from, args.queries)
    rng = np.random.default_rng(0)
    base = derived_batch(np.asarray(real.base, dtype=np.float32), 0, args.n, args.noise, rng)
    attrs = (None if real.attrs is None
             else real.attrs.take(np.arange(args.n) % real.attrs.num_rows))
    return VectorSample(base, real.queries, attrs,
                        f"{args.n:,} rows derived from {real.source} (noise {args.noise:g})")


def _hnswlib(base: F32, threads: int = 2) -> Any:
    import hnswlib

    index = hnswlib.Index(space="ip", dim=base.shape[1])
    index.init_index(max_elements=len(base), M=16, ef_construction=200, random_seed=100)
    index.add_items(base, np.arange(len(base)), num_threads=threads)
    return index


def _hn_filtered(hn: Any, query: F32, allow: Any) -> I64:
    """hnswlib's filtered search; it refuses a query whose reachable graph holds fewer than k
    allowed labels: then no result (counted as misses)."""
    try:
        return hn.knn_query(query, k=K, num_threads=1, filter=allow)[0][0]
    except RuntimeError:
        return np.empty(0, dtype=np.int64)


def _index_mib(tbl: Any) -> float:
    """Size of the table's index files on disk (what serving maps or loads), in MiB."""
    root = Path(tbl.path) / "indexes"
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20


def _first_ef(search: Any, scores: F32, kth: F32, n: int) -> tuple[int, float]:
    """The first ef of the grid reaching the target on these queries (an oracle), its recall."""
    for ef in EF_GRID:
        r = _recall(scores[:n], kth[:n], [search(i, ef) for i in range(n)])
        if r >= TARGET:
            return ef, r
    return EF_GRID[-1], r


SHARES = (0.5, 0.1, 0.01, 0.001)
"""The selectivities section 8 asks for; each filter is labelled with the share it really keeps."""


def _cut(values: npt.NDArray[Any], share: float) -> Any:
    """The value ``v`` for which ``values >= v`` keeps about ``share`` of the rows (a quantile of
    the data itself, so the selectivity is right on any data set up to ties)."""
    order = np.sort(values)
    return order[min(len(order) - 1, int(len(order) * (1 - share)))]


def _closest(candidates: list[tuple[str, npt.NDArray[np.bool_]]], share: float
             ) -> tuple[str, npt.NDArray[np.bool_]]:
    """The first candidate filter keeping within 1.5x of ``share``, else the nearest (by ratio):
    a column of few distinct values (months) cannot cut at every share, so the next stands in."""
    def off(c: tuple[str, npt.NDArray[np.bool_]]) -> float:
        return float(abs(np.log(max(float(c[1].mean()), 1e-9) / share)))

    return next((c for c in candidates if off(c) <= np.log(1.5)), min(candidates, key=off))


def _dataset_filters(dataset: str, attrs: Any) -> dict[str, tuple[str, npt.NDArray[np.bool_]]]:
    """The data set's filters: label -> (SQL for ``.where``, the mask of base rows it keeps).

    For each share of :data:`SHARES`, a range chosen from the data's own quantiles: on Reuters
    the date (ending at the latest story); on PyPI the month, or, where the months' ties put
    every month range more than 1.5x from the share (the last full month alone keeps 8.8% of
    the sample), ``bucket < b`` (``bucket`` is the row number mod 1,000: exact on any data set;
    ``download_rank`` is null on 98% of the rows). Then a conjunction (the ~50% range AND
    ``bucket < 200``) and on Reuters a topic (``list_contains``) and topic AND date. Each label
    carries the selectivity the filter really has on these rows."""
    if attrs is None:
        return {}
    out: dict[str, tuple[str, npt.NDArray[np.bool_]]] = {}
    n = attrs.num_rows
    bucket = np.arange(n) % 1000

    def add(what: str, sql: str, mask: npt.NDArray[np.bool_]) -> None:
        out[f"{what} keeps {mask.mean():.2%}"] = (sql, mask)

    if dataset == "reuters":
        dates = np.asarray(attrs.column("date").to_numpy(zero_copy_only=False), dtype="datetime64[s]")
        for share in SHARES:
            cut = _cut(dates, share)
            text = str(cut).replace("T", " ")
            add(f"date ~{share:.1%}", f"date >= TIMESTAMP '{text}'", dates >= cut)
        topics = attrs.column("topics").to_pylist()
        has = np.array(["crude" in (t or []) for t in topics])
        add("topic 'crude'", "list_contains(topics, 'crude')", has)
        cut = _cut(dates, 0.5)
        text = str(cut).replace("T", " ")
        add("topic 'earn' AND date ~50%",
            f"list_contains(topics, 'earn') AND date >= TIMESTAMP '{text}'",
            np.array(["earn" in (t or []) for t in topics]) & (dates >= cut))
        return out
    months = np.asarray(attrs.column("month").to_pylist(), dtype=object).astype(str)
    for share in SHARES:
        cut = _cut(months, share)
        candidates = [(f"month >= '{cut}'", months >= cut)]
        candidates.append((f"bucket < {max(1, round(share * 1000))}", bucket < max(1, round(share * 1000))))
        sql, mask = _closest(candidates, share)
        add(f"~{share:.1%}", sql, mask)
    cut = _cut(months, 0.5)
    add("~50% AND bucket < 200", f"month >= '{cut}' AND bucket < 200", (months >= cut) & (bucket < 200))
    return out


# --- children (memory, cold open) -------------------------------------------------------------

CHILD = r"""
import json, sys, time
import numpy as np
from bench.common import memory_status
mode, path, name, qpath, nq = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
queries = np.load(qpath)
if mode == "vecstore":
    import vecstore
    import vecstore.index, vecstore.index.hnswlib_index, vecstore.query.executor, hnswlib  # imports done
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
# a serving process after its first moments: vecstore's compiled kernels load on a background
# thread as queries first ask for them (taking the NumPy twins meanwhile), so the first
# queries' RSS is not the one it keeps; wait for them, then the same queries again
if mode == "vecstore":
    from vecstore._native import loader
    loader.settle()  # the kernels the queries asked for (a kernel loads when first asked for)
for q in queries[:nq]:
    if mode == "vecstore":
        tbl.search(q).limit(10).to_list()
    else:
        index.knn_query(q, k=10)
settled = memory_status()
print(json.dumps({"cold_s": cold, "before": before, "after": after, "settled": settled}))
"""


BATCH_CHILD = r"""
import json, os, statistics, sys, time
import numpy as np
import hnswlib, vecstore
from vecstore._native import loader
store, name, hpath, qpath, ef, rounds, where, mpath = sys.argv[1:9]
batch = np.load(qpath)
loader.compile_all()
tbl = vecstore.connect(store).open_table(name)
hn = hnswlib.Index(space="ip", dim=batch.shape[1])
hn.load_index(hpath)
hn.set_ef(int(ef))
allow = np.load(mpath).tobytes().__getitem__ if where else None
runs = {}
for t in (1, 2):
    q = tbl.search_batch(batch, threads=t).limit(10)
    runs[f"vecstore {t}"] = (q.where(where) if where else q).hits
    runs[f"hnswlib {t}"] = lambda t=t: hn.knn_query(batch, k=10, num_threads=t, filter=allow)
seconds = {x: [] for x in runs}
for run in runs.values():
    run()  # warm
load = [os.getloadavg()[0]]
for r in range(int(rounds)):
    for x in (list(runs) if r % 2 == 0 else list(runs)[::-1]):
        t0 = time.perf_counter()
        runs[x]()
        seconds[x].append(time.perf_counter() - t0)
load.append(os.getloadavg()[0])
print(json.dumps({"qps": {x: len(batch) / statistics.median(v) for x, v in seconds.items()},
                  "load": load}))
"""


def _batch_child(store: str, name: str, hpath: str, qpath: str, ef: int, rounds: int,
                 where: str = "", mpath: str = "") -> dict[str, Any]:
    """The batch section's interleaved rounds in a fresh process whose thread pools (Numba's
    among them, sized at its import) have 2 threads."""
    out = subprocess.run([sys.executable, "-c", BATCH_CHILD, store, name, hpath, qpath, str(ef),
                          str(rounds), where, mpath],
                         capture_output=True, text=True, env=thread_env(2), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _child(mode: str, path: str, name: str, qpath: str, nq: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CHILD, mode, path, name, qpath, str(nq)],
                         capture_output=True, text=True, env=thread_env(1), check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import vecstore

    pin_threads(1)
    if args.dataset == "reuters":
        from bench.reuters import load_reuters

        sample = load_reuters(args.data, None if args.n >= 21_077 else args.n, args.queries)
    elif args.derived_from and args.derived_from < args.n:
        sample = _derived_sample(args)
    else:
        sample = load_vectors(args.data, args.n, args.queries, synthetic=args.synthetic)
    base = np.ascontiguousarray(sample.base, dtype=np.float32)
    queries = np.ascontiguousarray(sample.queries, dtype=np.float32)
    nq = len(queries)
    work = Path(args.work or tempfile.mkdtemp(prefix="vecstore-hot-"))
    if not args.work:  # its stores take ~0.4-1.7 GB a run: not left behind in the temp directory
        atexit.register(shutil.rmtree, work, True)
    log(f"{len(base):,} x {base.shape[1]} ({sample.source}); {nq} queries; stores in {work}"
        + ("" if args.work else " (removed at exit)"))
    kinds = [k for k in args.kinds.split(",") if k]
    sections = {x for x in args.sections.split(",") if x}
    if sections - set(SECTIONS):
        raise SystemExit(f"unknown --sections {', '.join(sorted(sections - set(SECTIONS)))}; "
                         f"expected some of {', '.join(SECTIONS)}")
    R: dict[str, Any] = {"n": len(base), "queries": nq, "source": sample.source, "dataset": args.dataset,
                         "machine": machine_line(), "command": args.command}
    scores, kth = _truth(base, queries)
    # warm the compiled kernels once, so that no measurement pays their load
    from vecstore._native import loader

    loader.compile_all()

    if "fixed" in sections:
        # 1. fixed cost on a tiny table
        db = vecstore.connect(work / "tiny")
        tiny = _table(db, "tiny", base[:1000], None, 0)
        indexed = _table(db, "tiny_indexed", base[:1000], None, 0)
        indexed.create_index()
        # the floor a Python call into a C++ index has on the same rows, for scale
        small = _hnswlib(np.ascontiguousarray(base[:1000]), threads=1)
        small.set_ef(64)
        # each table as it serves: for STAMP_MARGIN_NS after a commit a read probes for newer
        # versions (see the writes section), which is not the query's own cost
        time.sleep(STAMP_MARGIN_NS / 1e9 + 0.1)
        timed = _round_robin({
            "scan": lambda i: tiny.search(queries[i % nq]).limit(K).to_list(),
            "create_index()": lambda i: indexed.search(queries[i % nq]).limit(K).to_list(),
            "hnswlib knn_query (ef 64)": lambda i: small.knn_query(queries[i % nq], k=K),
        }, 3000, 15.0)
        fixed = {label: 1e6 / q for label, (_, q) in timed.items()}
        R["fixed_us"] = fixed
        log(f"fixed cost on 1,000 rows: {fixed}")

    # 2. unfiltered at recall >= 0.95 (tables built by many adds, the way users build them).
    # Everything is built first, then every system answers each query in turn (rotating order),
    # so that a slow spell of this shared machine hits all of them alike.
    db = vecstore.connect(work / "main")
    results: dict[str, dict[str, Any]] = {}
    tables: dict[str, Any] = {}
    systems: dict[str, Any] = {}
    for kind in ["default", *kinds]:
        t0 = time.perf_counter()
        tbl = _table(db, f"t_{kind.replace('-', '_')}", base, sample.attrs, args.add_batch)
        add_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        entry = tbl.create_index() if kind == "default" else tbl.create_index(kind)
        build_s = time.perf_counter() - t0
        label = entry["kind"] + (" (create_index())" if kind == "default" else "")
        results[label] = {"build_s": build_s, "add_s": add_s, "params": entry["params"],
                          "index_mib": _index_mib(tbl)}
        systems[label] = lambda i, tbl=tbl: _ids_to_rows(tbl.search(queries[i]).limit(K).to_list())
        tables[kind] = tbl
        log(f"{kind}: built in {build_s:.0f} s")
    default_kind = tables["default"].list_indexes()[0]["kind"]

    hn = _hnswlib(base)
    ef, rec = _first_ef(lambda i, ef: (hn.set_ef(ef), hn.knn_query(queries[i], k=K)[0][0])[1],
                        scores, kth, nq)
    hn.set_ef(ef)
    hn_ef = ef
    hn_label = f"hnswlib ef={ef}"
    results[hn_label] = {}
    systems[hn_label] = lambda i: hn.knn_query(queries[i], k=K, num_threads=1)[0][0]
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

        f_ef, _ = _first_ef(fsearch, scores, kth, nq)
        results[f"FAISS HNSW ef={f_ef}"] = {}
        systems[f"FAISS HNSW ef={f_ef}"] = lambda i: fsearch(i, f_ef)
    except ImportError:
        log("FAISS is not installed: skipped")
    if "unfiltered" in sections:
        for label, (found, qps) in _round_robin(systems, nq).items():
            results[label].update(qps=qps, recall=_recall(scores, kth, found))
            log(f"{label}: {qps:,.0f} q/s recall {results[label]['recall']:.3f}")
    R["unfiltered"] = results

    if "targets" in sections:
        # 7. calibration at other targets: a table of its own, built by many adds; hnswlib gets the
        # first ef reaching each target on these very queries (an oracle)
        cal_tbl = _table(db, "t_targets", base, sample.attrs, args.add_batch)
        hn_search = lambda i, ef: (hn.set_ef(ef), hn.knn_query(queries[i], k=K)[0][0])[1]  # noqa: E731
        targets: dict[str, Any] = {}
        for target in [float(t) for t in args.targets.split(",") if t]:
            t0 = time.perf_counter()
            entry = cal_tbl.create_index(target_recall=target)
            build_s = time.perf_counter() - t0
            h_ef = EF_GRID[-1]
            for grid_ef in EF_GRID:
                if _recall(scores, kth, [hn_search(i, grid_ef) for i in range(nq)]) >= target:
                    h_ef = grid_ef
                    break
            pair = _round_robin({
                "vecstore": lambda i: _ids_to_rows(cal_tbl.search(queries[i]).limit(K).to_list()),
                "hnswlib": lambda i, h_ef=h_ef: (hn.set_ef(h_ef),
                                                 hn.knn_query(queries[i], k=K, num_threads=1)[0][0])[1],
            }, nq, budget_s=30.0)
            targets[f"{target:g}"] = {
                "ef": entry["params"]["ef"], "measured_on": entry["params"].get("measured_on"),
                "build_s": build_s,
                "recall": _recall(scores, kth, pair["vecstore"][0]), "qps": pair["vecstore"][1],
                "hnswlib_ef": h_ef, "hnswlib_recall": _recall(scores, kth, pair["hnswlib"][0]),
                "hnswlib_qps": pair["hnswlib"][1]}
            log(f"target {target}: {targets[f'{target:g}']}")
        hn.set_ef(hn_ef)
        R["targets"] = targets

    if "filters" in sections:
        # 8. the data set's filters on the create_index() table, against hnswlib's filter callback
        # and NumPy exact, both handed the match set
        filt: dict[str, Any] = {}
        dtbl = tables["default"]
        for fname, (sql, mask) in _dataset_filters(args.dataset, sample.attrs).items():
            rows = np.flatnonzero(mask)
            if rows.size < K:
                continue
            _, fkth = scores, kth_best(scores[:, rows], K)
            allow = mask.tobytes().__getitem__
            sub = base[rows]
            systems_f = {
                "vecstore": lambda i, sql=sql: _ids_to_rows(
                    dtbl.search(queries[i]).where(sql).limit(K).to_list()),
                "hnswlib": lambda i, allow=allow: _hn_filtered(hn, queries[i], allow),
                "numpy": lambda i, sub=sub, rows=rows: rows[
                    np.argpartition(-(sub @ queries[i]), K - 1)[:K]],
                # the match set's row numbers handed over, their vectors gathered per query
                "numpy_gather": lambda i, rows=rows: rows[
                    np.argpartition(-(base[rows] @ queries[i]), K - 1)[:K]],
            }
            res = _round_robin(systems_f, nq, budget_s=20.0)
            filt[fname] = {"sql": sql, "selectivity": float(mask.mean()),
                           **{f"{x}_qps": res[x][1] for x in res},
                           **{f"{x}_recall": _recall(scores, fkth, res[x][0]) for x in res}}
            log(f"filter {fname}: {filt[fname]}")
        R["filtered"] = filt

    if "batch" in sections:
        # 4. batch of 1,000 on 1 and 2 threads, before section 3 optimizes the create_index()
        # table: users' batches run on the table their adds built
        dtbl = tables["default"]
        batch = np.concatenate([queries] * (-(-1000 // nq)))[:1000]
        qpath, hpath, mpath = (str(work / "batch.npy"), str(work / "batch-hnswlib.bin"),
                               str(work / "batch-allow.npy"))
        np.save(qpath, batch)
        hn.save_index(hpath)
        np.save(mpath, np.arange(len(base)) % 1000 < 100)  # the rows of bucket < 100
        b: dict[str, Any] = {"hnswlib_ef": hn_ef, "vecstore_ef": dtbl.list_indexes()[0]["params"]["ef"],
                             "rounds": args.batch_rounds}
        hits = dtbl.search_batch(queries, threads=2).limit(K).hits()
        found = [np.array(h.ids, dtype=np.int64) for h in hits]
        b["recall"] = _recall(scores, kth, found)
        hn.set_ef(hn_ef)
        b["hnswlib_recall"] = _recall(scores, kth, list(hn.knn_query(queries, k=K, num_threads=2)[0]))
        b["unfiltered"] = _batch_child(str(work / "main"), dtbl.name, hpath, qpath, hn_ef,
                                       args.batch_rounds)
        b["filtered"] = _batch_child(str(work / "main"), dtbl.name, hpath, qpath, hn_ef,
                                     args.batch_rounds, "bucket < 100", mpath)
        R["batch"] = b
        log(f"batch: {b}")

    if "writes" in sections:
        # 3. many writes against one: the two tables answer the same query back to back, in
        # alternating order, so that a slow spell of this shared machine hits both alike
        one = _table(db, "one", base, sample.attrs, 0)
        many = tables["default"]
        many_plain = _table(db, "many_plain", base, sample.attrs, args.add_batch)
        filters = {"none": None, "~10%": ("bucket < ?", 100), "~1%": ("bucket < ?", 10)}
        seg: dict[str, Any] = {"segments_many": len(many._current().manifest.segments)}

        def compare(label: str, pair: tuple[Any, Any]) -> None:
            # Both tables in the state they serve in: for STAMP_MARGIN_NS after a commit, a read
            # probes the versions directory for newer versions (13 us against 4 us per read in
            # this VM), and the table written last paid that through the whole comparison (~1
            # s): the 13-adds table, built second, compared at 0.83-0.88 without an index.
            time.sleep(STAMP_MARGIN_NS / 1e9 + 0.1)
            for fname, flt in filters.items():
                qps_pair = _interleaved(pair, flt, queries)
                # each table's index is calibrated on its own (its ef differs by the held-out
                # rows and the graph drawn), which moves the unfiltered ratio beside segments
                efs = [((t.list_indexes() or [{}])[0].get("params") or {}).get("ef") for t in pair]
                seg[f"{label}, filter {fname}"] = {"one_add_qps": qps_pair[0], "many_adds_qps": qps_pair[1],
                                                   "ratio": qps_pair[1] / qps_pair[0], "ef": efs}

        compare("no index", (one, many_plain))
        one.create_index()
        compare("create_index()", (one, many))
        one_plain = _table(db, "one_plain", base, sample.attrs, 0)
        for tbl in (one, many, one_plain, many_plain):
            tbl.optimize()
        compare("no index, after optimize()", (one_plain, many_plain))
        compare("create_index(), after optimize()", (one, many))
        R["segments"] = seg
        log(f"many adds vs one: {seg}")

    if "memory" in sections:
        # 5, 6. memory and cold open in fresh processes
        qpath = str(work / "queries.npy")
        np.save(qpath, queries)
        hpath = str(work / "hnswlib.bin")
        hn.save_index(hpath)
        Path(hpath + ".json").write_text(json.dumps({"n": len(base), "ef": hn_ef}))
        store = str(work / "main")
        name = tables["default"].name
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
            settled = {key: statistics.median(r["settled"][key] - r["before"][key] for r in rs)
                       for key in ("VmRSS", "RssAnon", "RssFile")}
            mem[mode] = {"cold_ms": statistics.median(r["cold_s"] for r in rs) * 1e3, **growth,
                         "settled": settled}
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
    if "fixed_us" in R:
        L.append("**Fixed cost per query** on 1,000 rows, `search(q).limit(10).to_list()`: "
                 + ", ".join(f"{k} {v:.0f} µs" for k, v in R["fixed_us"].items()) + ".")
        L.append("")
    rows = []
    hn = next(v for k, v in R["unfiltered"].items() if k.startswith("hnswlib"))
    for name, r in R["unfiltered"].items():
        if "qps" not in r:  # the section was not run
            continue
        p = r.get("params") or {}
        rows.append([name, str(p.get("ef", "")), f"{r['qps']:,.0f}", f"{r['recall']:.3f}",
                     f"{r['qps'] / hn['qps']:.2f}x", f"{r['build_s']:.0f}" if "build_s" in r else "",
                     f"{r['index_mib']:.0f}" if "index_mib" in r else ""])
    if rows:
        L.append(markdown_table(["unfiltered, k=10", "ef", "q/s", "recall@10", "vs hnswlib", "build s",
                                 "index MiB"], rows))
        L.append("")
    if R.get("targets"):
        L.append("**Calibration at other targets** (`create_index(target_recall=t)`, many-adds table; "
                 "hnswlib at the first ef reaching t on these queries):")
        L.append("")
        L.append(markdown_table(
            ["target", "ef (measured on)", "recall@10", "q/s", "hnswlib ef", "hnswlib recall", "hnswlib q/s",
             "vs hnswlib"],
            [[t, f"{v['ef']} ({v['measured_on']})", f"{v['recall']:.3f}", f"{v['qps']:,.0f}",
              str(v["hnswlib_ef"]), f"{v['hnswlib_recall']:.3f}", f"{v['hnswlib_qps']:,.0f}",
              f"{v['qps'] / v['hnswlib_qps']:.2f}x"] for t, v in R["targets"].items()]))
        L.append("")
    if R.get("filtered"):
        L.append("**Filters** (`create_index()` table, `.where(sql).limit(10).to_list()`; hnswlib "
                 f"(ef={next(iter(k for k in R['unfiltered'] if k.startswith('hnswlib'))).split('=')[1]}, "
                 "filter callback) and NumPy exact handed the match set: its vectors gathered "
                 "before timing, or its row numbers with the vectors gathered per query):")
        L.append("")
        L.append(markdown_table(
            ["filter", "keeps", "vecstore q/s", "recall", "hnswlib q/s", "recall", "NumPy exact q/s",
             "NumPy gathering q/s"],
            [[f"{k} (`{v['sql']}`)", f"{v['selectivity']:.1%}", f"{v['vecstore_qps']:,.0f}",
              f"{v['vecstore_recall']:.3f}", f"{v['hnswlib_qps']:,.0f}", f"{v['hnswlib_recall']:.3f}",
              f"{v['numpy_qps']:,.0f}", f"{v['numpy_gather_qps']:,.0f}" if "numpy_gather_qps" in v else ""]
             for k, v in R["filtered"].items()]))
        L.append("")
    if "segments" in R:
        seg = R["segments"]
        L.append(f"**Many writes vs one** ({seg['segments_many']} segments after the adds):")
        L.append("")
        L.append(markdown_table(["strategy", "one add q/s", "many adds q/s", "ratio", "ef one / many"],
                                [[k, f"{v['one_add_qps']:,.0f}", f"{v['many_adds_qps']:,.0f}",
                                  f"{v['ratio']:.2f}",
                                  " / ".join(str(e) for e in v["ef"]) if any(v.get("ef") or []) else ""]
                                 for k, v in seg.items() if isinstance(v, dict)]))
        L.append("")
    if "batch" in R:
        b = R["batch"]
        L.append(f"**Batch** of 1,000 queries (`search_batch(q, threads=t).limit(10).hits()`, the "
                 f"`create_index()` table, ef={b['vecstore_ef']}, recall@10 {b['recall']:.3f}; hnswlib "
                 f"`knn_query(num_threads=t)` at ef={b['hnswlib_ef']}, recall@10 "
                 f"{b['hnswlib_recall']:.3f}); medians of {b['rounds']} interleaved rounds in a fresh "
                 f"process:")
        L.append("")
        rows = []
        for label, part in (("unfiltered", b["unfiltered"]), ("`bucket < 100` (10%)", b["filtered"])):
            q = part["qps"]
            for system in ("vecstore", "hnswlib"):
                one, two = q[f"{system} 1"], q[f"{system} 2"]
                rows.append([label, system, f"{one:,.0f}", f"{two:,.0f}", f"{two / one:.2f}x",
                             f"{two / q['hnswlib 2']:.2f}x",
                             " -> ".join(f"{x:.2f}" for x in part["load"])])
        L.append(markdown_table(["batch", "system", "1 thread q/s", "2 threads q/s", "1 -> 2 threads",
                                 "vs hnswlib, 2 threads", "load average"], rows))
        L.append("")
    if "memory" in R:
        m = R["memory"]
        def mib(v: dict[str, Any]) -> list[str]:
            return [f"{v[key] / 2**20:.0f}" for key in ("VmRSS", "RssAnon", "RssFile")]

        rows = []
        for k, v in m.items():
            rows.append([k, f"{v['cold_ms']:.0f}", "after the first queries", *mib(v)])
            if "settled" in v:  # runs before 2026-12-02 measured only the first point
                rows.append([k, "", "kernels loaded, the queries again", *mib(v["settled"])])
        L.append(markdown_table(["fresh process", "open + first query ms", "RSS growth measured",
                                 "RSS growth MiB", "anonymous MiB", "file-backed MiB"], rows))
        ratio = m["vecstore"]["VmRSS"] / max(1, m["hnswlib"]["VmRSS"])
        L.append("")
        L.append(f"RSS growth {ratio:.2f}x hnswlib's after the first queries"
                 + (f", {m['vecstore']['settled']['VmRSS'] / max(1, m['hnswlib']['settled']['VmRSS']):.2f}x "
                    "once vecstore's kernels are loaded" if "settled" in m["vecstore"] else "")
                 + f"; cold open + first query {m['vecstore']['cold_ms'] / m['hnswlib']['cold_ms']:.2f}x "
                 "hnswlib's.")
    return "\n".join(L)


if __name__ == "__main__":
    raise SystemExit("run it as: python -m bench hot-path [options]")

