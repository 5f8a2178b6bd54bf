"""Exact two-stage search (no index) against a NumPy float32 scan, single thread, one run.

    python -m bench.exact                      # 200,000 MiniLM vectors of PyPI summaries
    python -m bench.exact --synthetic --n 50000  # quick check on random vectors

Reports, in one run on this machine: recall@10 (tie-aware) and queries/s of vecstore's
binary -> int8 -> float32 search for oversample 1..64 against exact float32; queries/s of a NumPy
float32 scan; the Numba binary scan's bytes/s as a fraction of the single-core read bandwidth
measured in the same run, and against FAISS ``IndexBinaryFlat`` on the same codes; bytes per
vector. Prints a markdown report (append it to docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

from bench.data import DEFAULT_DATA_DIR, exact_scores_of, exact_topk, load_pypi  # noqa: E402
from bench.data import memory_bandwidth_gbs, tie_aware_recall  # noqa: E402


def synthetic(n: int, n_queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(64, dim)).astype(np.float32)
    x = centers[rng.integers(0, 64, n + n_queries)] + 0.7 * rng.normal(size=(n + n_queries, dim))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return x[:n], x[n:]


def timed(fn, reps: int) -> float:
    t = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t) / reps


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--queries", type=int, default=1_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--oversample", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    ap.add_argument("--synthetic", action="store_true", help="random clustered vectors instead")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import numba
    from threadpoolctl import threadpool_limits

    import vecstore
    from vecstore._native import kernels, reference

    numba.set_num_threads(1)
    threadpool_limits(1)
    k = args.k

    if args.synthetic:
        base, queries = synthetic(args.n, args.queries, 384, args.seed)
        source = f"synthetic clustered, {args.n:,} x 384"
    else:
        sample = load_pypi(args.data, n_base=args.n, n_queries=args.queries, seed=args.seed)
        base, queries = np.ascontiguousarray(sample.base), np.ascontiguousarray(sample.queries)
        source = f"{args.n:,} all-MiniLM-L6-v2 vectors of PyPI summaries (seed {args.seed})"
    n, dim = base.shape
    print(f"data: {source}; {len(queries):,} queries", file=sys.stderr)

    exact_scores, exact_ids = exact_topk(base, queries, k)
    kth = exact_scores[:, k - 1]

    with tempfile.TemporaryDirectory() as tmp:
        tbl = vecstore.connect(tmp).create_table("bench", dim=dim)
        t = time.perf_counter()
        tbl.add(_arrow_rows(base))
        ingest_s = time.perf_counter() - t
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

        numpy_qps = n_np / timed(numpy_scan, 1)

        rows = []
        for os_ in args.oversample:
            found = []
            t = time.perf_counter()
            for q in queries:
                hits = tbl.search(q).limit(k).rescore(oversample=os_).hits()
                found.append(np.array(hits.ids, dtype=np.int64))
            qps = len(queries) / (time.perf_counter() - t)
            rec = tie_aware_recall(exact_scores_of(base, queries, found), kth, k)
            rows.append((os_, rec, qps))
            print(f"oversample {os_:>3}: recall@{k} {rec:.4f}  {qps:,.0f} q/s", file=sys.stderr)

        # exact search through vecstore (float32 over every row)
        n_ex = min(len(queries), 100)
        t = time.perf_counter()
        for q in queries[:n_ex]:
            tbl.search(q).limit(k).exact().to_list()
        exact_qps = n_ex / (time.perf_counter() - t)

        # the binary scan alone: Numba kernel vs NumPy twin vs FAISS IndexBinaryFlat, same codes
        snap = tbl._current()
        codes = snap.binary[0]
        qbits = [snap.segments[0].quantizer.encode_binary(
            (q / np.linalg.norm(q))[None, :].astype(np.float32))[0].view(np.uint64) for q in queries[:200]]
        kscan = 160
        kernels.hamming_topk(codes, qbits[0], kscan)
        scan_s = timed(lambda: [kernels.hamming_topk(codes, b, kscan) for b in qbits], 3) / len(qbits)
        ref_s = timed(lambda: [reference.hamming_topk(codes, b, kscan) for b in qbits[:20]], 1) / 20
        faiss_s = None
        try:
            import faiss

            faiss.omp_set_num_threads(1)
            fidx = faiss.IndexBinaryFlat(codes.shape[1] * 64)
            fidx.add(codes.view(np.uint8))
            qb = np.stack(qbits).view(np.uint8)
            fidx.search(qb[:5], kscan)
            faiss_s = timed(lambda: [fidx.search(qb[i:i + 1], kscan) for i in range(len(qb))], 3) / len(qb)
        except ImportError:
            pass
        bandwidth = memory_bandwidth_gbs()
        scan_bytes = codes.nbytes
        rss_end = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    default = next((r for r in rows if r[0] == vecstore.config.DEFAULT_OVERSAMPLE), None)
    best99 = next((r for r in rows if r[1] >= 0.99), None)
    out = []
    out.append(f"### Exact two-stage search, {source}\n")
    out.append(f"Command: `python -m bench.exact{' --synthetic' if args.synthetic else ''} --n {args.n} "
               f"--queries {args.queries}`; single thread; {platform.processor() or platform.machine()}, "
               f"{os.cpu_count()} cores; ingest {ingest_s:.1f} s ({n / ingest_s:,.0f} rows/s).\n")
    out.append(f"NumPy float32 exact scan: **{numpy_qps:,.1f} q/s** "
               f"({1e3 / numpy_qps:.1f} ms/query, {base.nbytes / 1e6:.0f} MB read per query). "
               f"vecstore `.exact()`: {exact_qps:,.1f} q/s.\n")
    out.append(f"| oversample | candidates (binary -> int8 -> float32) | recall@{k} | q/s | x NumPy |")
    out.append("|---:|---|---:|---:|---:|")
    for os_, rec, qps in rows:
        n1 = k * os_
        n2 = min(n1, max(4 * k, n1 // 4))
        mark = " (default)" if default and os_ == default[0] else ""
        out.append(f"| {os_}{mark} | {n1} -> {n2} -> {k} | {rec:.4f} | {qps:,.0f} | {qps / numpy_qps:.1f}x |")
    out.append("")
    out.append(f"Binary scan ({n:,} codes x {codes.shape[1] * 8} bytes = {scan_bytes / 1e6:.1f} MB, top-{kscan}): "
               f"Numba {scan_s * 1e3:.3f} ms = **{scan_bytes / scan_s / 1e9:.1f} GB/s**, "
               f"{scan_bytes / scan_s / 1e9 / bandwidth:.0%} of the {bandwidth:.1f} GB/s single-core read "
               f"bandwidth measured in this run; NumPy twin {ref_s * 1e3:.2f} ms"
               + (f"; FAISS IndexBinaryFlat {faiss_s * 1e3:.3f} ms (Numba/FAISS time ratio "
                  f"{scan_s / faiss_s:.2f})." if faiss_s else "."))
    out.append("")
    per_vec_scan = codes.shape[1] * 8
    out.append(f"Bytes per vector: {per_vec_scan} (binary code, read by every query) + {dim} (int8, read for "
               f"the k x oversample candidates) + 4 (norm) + {dim * 4} (float32, read for the last "
               f"max(4k, k x oversample / 4) candidates), all memory-mapped from the segment file; "
               f"peak RSS {rss_end / 1024:.0f} MiB (after ingest {rss_after_add / 1024:.0f} MiB).")
    if default:
        out.append(f"\nDefault oversample {default[0]}: recall {default[1]:.4f} at {default[2]:,.0f} q/s "
                   f"({default[2] / numpy_qps:.1f}x NumPy).")
    if best99:
        out.append(f"First oversample reaching recall >= 0.99: {best99[0]} ({best99[1]:.4f}, "
                   f"{best99[2]:,.0f} q/s, {best99[2] / numpy_qps:.1f}x NumPy).")
    print("\n".join(out))
    return 0


def _arrow_rows(base: np.ndarray):
    import pyarrow as pa

    n, dim = base.shape
    return pa.table({
        "id": pa.array(np.arange(n).astype(str)),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(base.reshape(-1)), dim),
    })


if __name__ == "__main__":
    sys.exit(main())
