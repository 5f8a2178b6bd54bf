"""Exact two-stage search (no index) against a NumPy float32 scan, single thread, one run.

    python -m bench exact                      # 200,000 MiniLM vectors of PyPI summaries
    python -m bench exact --quick              # 20,000 rows, 200 queries
    python -m bench exact --synthetic --n 50000  # quick check on random vectors

Reports, in one run on this machine: recall@10 (tie-aware, :mod:`vecstore.evaluation`) and
queries/s of vecstore's binary -> int8 -> float32 search for oversample 1..64 against exact
float32, asked through ``--query-path`` (by default the user path,
``tbl.search(q).limit(k).rescore(oversample=o).to_list()``) on a table built by ``tbl.add``
calls of ``--add-batch`` rows; queries/s of a NumPy float32 scan; the Numba binary scan's
bytes/s over the sign codes of every row, as a fraction of the single-core read bandwidth
measured in the same run and against FAISS ``IndexBinaryFlat`` on the same codes; bytes per
vector. Prints a markdown report (append it to docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time

import numpy as np
import numpy.typing as npt

from bench.common import (
    QUERY_PATHS,
    ScenarioParser,
    add_in_batches,
    add_vecstore_options,
    add_vector_options,
    arrow_rows,
    best_times,
    machine_line,
    markdown_table,
    pin_threads,
    search_ids,
    timed,
    write_json,
)
from bench.data import exact_scores_of, exact_topk, load_vectors, memory_bandwidth_gbs
from vecstore.evaluation import tie_aware_recall

SCAN_K = 160
"""Candidates the timed binary scan keeps: k x the default oversample, as a search does."""


def configure(ap: ScenarioParser) -> None:
    add_vector_options(ap, n=(200_000, 20_000), queries=(1_000, 200))
    add_vecstore_options(ap)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--oversample", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--seed", type=int, default=0)


def sign_codes(x: npt.NDArray[np.float32], center: npt.NDArray[np.float32]) -> npt.NDArray[np.uint64]:
    """Sign bits of ``x - center`` as vecstore stores them: little-endian bit order, rows padded
    to whole uint64 words (what the Hamming kernels scan)."""
    bits = np.packbits(x > center, axis=1, bitorder="little")
    pad = -bits.shape[1] % 8
    if pad:
        bits = np.pad(bits, ((0, 0), (0, pad)))
    return np.ascontiguousarray(bits).view(np.uint64)


def run(args: argparse.Namespace) -> int:
    """Ingest, sweep the oversample, time the scans; print the markdown section."""
    pin_threads(args.threads)
    from vecstore._native import kernels, reference

    import vecstore

    k = args.k
    sample = load_vectors(args.data, args.n, args.queries, synthetic=args.synthetic, attrs=False,
                          seed=args.seed)
    base, queries = np.ascontiguousarray(sample.base), np.ascontiguousarray(sample.queries)
    n, dim = base.shape
    print(f"data: {sample.source}", file=sys.stderr)

    exact_scores, _ = exact_topk(base, queries, k)
    kth = exact_scores[:, k - 1]

    with tempfile.TemporaryDirectory() as tmp:
        tbl = vecstore.connect(tmp).create_table("bench", dim=dim)
        rows = arrow_rows({"id": np.arange(n).astype(str)}, base)
        _, ingest_s, _ = timed(lambda: add_in_batches(tbl, rows, args.add_batch))
        rss_after_add = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

        # warm up: compile kernels, fault in the pages
        for q in queries[:20]:
            tbl.search(q).limit(k).to_list()

        # NumPy float32 exact scan (the baseline)
        n_np = min(len(queries), 200)

        def numpy_scan() -> None:
            for q in queries[:n_np]:
                s = base @ q
                top = np.argpartition(-s, k)[:k]
                top[np.argsort(-s[top])]

        _, numpy_s, _ = timed(numpy_scan)
        numpy_qps = n_np / numpy_s

        sweep = []
        for o in args.oversample:
            found = []
            t = time.perf_counter()
            for q in queries:
                ids, _ = search_ids(tbl.search(q).limit(k).rescore(oversample=o), args.query_path)
                found.append(np.array(ids, dtype=np.int64))
            qps = len(queries) / (time.perf_counter() - t)
            rec = tie_aware_recall(exact_scores_of(base, queries, found), kth, k)
            sweep.append({"oversample": o, "recall": rec, "qps": qps})
            print(f"oversample {o:>3}: recall@{k} {rec:.4f}  {qps:,.0f} q/s", file=sys.stderr)

        # exact search through vecstore (float32 over every row)
        n_ex = min(len(queries), 100)
        _, exact_s, _ = timed(lambda: [tbl.search(q).limit(k).exact().to_list() for q in queries[:n_ex]])
        exact_qps = n_ex / exact_s

    # the binary scan alone over every row's code: Numba kernel vs NumPy twin vs FAISS
    center = base.mean(axis=0)
    codes = sign_codes(base, center)
    qbits = list(sign_codes(queries[:200], center))
    kernels.hamming_topk(codes, qbits[0], SCAN_K)  # compile, or load from the cache
    runs = {
        "numba": lambda: [kernels.hamming_topk(codes, b, SCAN_K) for b in qbits],
        "numpy": lambda: [reference.hamming_topk(codes, b, SCAN_K) for b in qbits[:20]],
    }
    per_run = {"numba": len(qbits), "numpy": min(20, len(qbits))}
    try:
        import faiss
    except ImportError:
        pass
    else:
        fidx = faiss.IndexBinaryFlat(codes.shape[1] * 64)
        fidx.add(codes.view(np.uint8))
        qb = np.stack(qbits).view(np.uint8)
        fidx.search(qb[:5], SCAN_K)
        runs["faiss"] = lambda: [fidx.search(qb[i : i + 1], SCAN_K) for i in range(len(qb))]
        per_run["faiss"] = len(qb)
    scan = {name: t / per_run[name] for name, t in best_times(runs, 3).items()}
    bandwidth = memory_bandwidth_gbs()
    rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    figures = {
        "source": sample.source, "command": args.command, "ingest_s": ingest_s, "numpy_qps": numpy_qps,
        "exact_qps": exact_qps, "sweep": sweep, "scan_s": scan, "bandwidth_gbs": bandwidth,
        "query_path": args.query_path, "add_batch": args.add_batch,
    }
    write_json(args.json, figures)
    print(report(figures, args, n, dim, codes.nbytes, codes.shape[1] * 8, rss_after_add, rss_end))
    return 0


def report(f: dict, args: argparse.Namespace, n: int, dim: int, scan_bytes: int, code_bytes: int,
           rss_after_add: int, rss_end: int) -> str:
    """The markdown section."""
    import vecstore

    k, numpy_qps = args.k, f["numpy_qps"]
    sweep = f["sweep"]
    default = next((r for r in sweep if r["oversample"] == vecstore.config.DEFAULT_OVERSAMPLE), None)
    best99 = next((r for r in sweep if r["recall"] >= 0.99), None)
    built = f"`tbl.add` calls of {args.add_batch:,} rows" if args.add_batch > 0 else "one `tbl.add` call"
    out = [f"### Exact two-stage search, {f['source']}\n"]
    out.append(f"Command: `{args.command}`; single thread; {machine_line()}; ingest by {built} "
               f"{f['ingest_s']:.1f} s ({n / f['ingest_s']:,.0f} rows/s); queries through "
               f"{QUERY_PATHS[args.query_path]}.\n")
    out.append(f"NumPy float32 exact scan: **{numpy_qps:,.1f} q/s** "
               f"({1e3 / numpy_qps:.1f} ms/query, {n * dim * 4 / 1e6:.0f} MB read per query). "
               f"vecstore `.exact()`: {f['exact_qps']:,.1f} q/s.\n")
    rows = []
    for r in sweep:
        o = r["oversample"]
        n1 = k * o
        n2 = min(n1, max(4 * k, n1 // 4))
        mark = " (default)" if default and o == default["oversample"] else ""
        rows.append([f"{o}{mark}", f"{n1} -> {n2} -> {k}", f"{r['recall']:.4f}", f"{r['qps']:,.0f}",
                     f"{r['qps'] / numpy_qps:.1f}x"])
    out.append(markdown_table(["oversample", "candidates (binary -> int8 -> float32)", f"recall@{k}", "q/s",
                               "x NumPy"], rows, align="rlrrr"))
    out.append("")
    scan_s, bandwidth = f["scan_s"]["numba"], f["bandwidth_gbs"]
    faiss_s = f["scan_s"].get("faiss")
    out.append(f"Binary scan ({n:,} codes x {code_bytes} bytes = {scan_bytes / 1e6:.1f} MB, "
               f"top-{SCAN_K}, best of 3): Numba {scan_s * 1e3:.3f} ms = "
               f"**{scan_bytes / scan_s / 1e9:.1f} GB/s**, "
               f"{scan_bytes / scan_s / 1e9 / bandwidth:.0%} of the {bandwidth:.1f} GB/s single-core read "
               f"bandwidth measured in this run; NumPy twin {f['scan_s']['numpy'] * 1e3:.2f} ms"
               + (f"; FAISS IndexBinaryFlat {faiss_s * 1e3:.3f} ms (Numba/FAISS time ratio "
                  f"{scan_s / faiss_s:.2f})." if faiss_s else "."))
    out.append("")
    out.append(f"Bytes per vector: {code_bytes} (binary code, read by every query) + {dim} (int8, read for "
               f"the k x oversample candidates) + 4 (norm) + {dim * 4} (float32, read for the last "
               f"max(4k, k x oversample / 4) candidates), all memory-mapped from the segment files; "
               f"peak RSS {rss_end / 1024:.0f} MiB (after ingest {rss_after_add / 1024:.0f} MiB).")
    if default:
        out.append(f"\nDefault oversample {default['oversample']}: recall {default['recall']:.4f} at "
                   f"{default['qps']:,.0f} q/s ({default['qps'] / numpy_qps:.1f}x NumPy).")
    if best99:
        out.append(f"First oversample reaching recall >= 0.99: {best99['oversample']} "
                   f"({best99['recall']:.4f}, {best99['qps']:,.0f} q/s, "
                   f"{best99['qps'] / numpy_qps:.1f}x NumPy).")
    return "\n".join(out)
