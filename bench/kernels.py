"""Binary-code scan speed, single-threaded: Numba ``hamming_topk`` vs FAISS and memory bandwidth.

Measures, in one run and on one core:

* this machine's read bandwidth: NumPy summing a large uint64 array (larger than the last-level
  cache, so it comes from DRAM) and an array the size of the codes (which may sit in cache);
* ``vecstore._native.kernels.hamming_topk`` (fused scan + select), one query at a time, and
  ``hamming_topk_batch`` over all queries;
* FAISS ``IndexBinaryFlat.search`` on the same codes, all queries in one call;
* the NumPy twin ``reference.hamming_topk`` (on a few queries: it is slow);

then prints a markdown table. Random codes: the data does not change the speed of a full scan.
Each timing is the best of ``--repeats`` rounds, every round running each measurement once.

Usage::

    python -m bench kernels --n 200000 --dim 384 --queries 200
    python -m bench kernels --quick
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from bench.common import ScenarioParser, best_times, markdown_table, pin_threads, write_json

FAISS = "faiss IndexBinaryFlat.search"


def configure(parser: ScenarioParser) -> None:
    parser.add_sized("--n", type=int, full=200_000, quick=20_000, help="rows of codes")
    parser.add_argument("--dim", type=int, default=384, help="bits per code, a multiple of 64")
    parser.add_sized("--queries", type=int, full=200, quick=50, help="queries")
    parser.add_argument("--k", type=int, default=160)
    parser.add_sized("--repeats", type=int, full=5, quick=2, help="rounds; each timing is the best")
    parser.add_argument("--numpy-queries", type=int, default=10, help="queries for the NumPy twin")
    parser.add_sized("--dram-mib", type=int, full=1024, quick=256, help="array size for DRAM bandwidth")
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    """Time every scan over the same random codes; print the table."""
    if args.dim <= 0 or args.dim % 64:
        raise SystemExit(f"--dim must be a positive multiple of 64, got {args.dim}")
    pin_threads(args.threads)
    from vecstore._native import kernels, reference

    rng = np.random.default_rng(args.seed)
    words = args.dim // 64
    codes: npt.NDArray[np.uint64] = rng.integers(0, 2**64, size=(args.n, words), dtype=np.uint64)
    queries: npt.NDArray[np.uint64] = rng.integers(0, 2**64, size=(args.queries, words), dtype=np.uint64)
    scan_bytes = codes.nbytes

    dram_words = np.ones((args.dram_mib << 20) // 8, dtype=np.uint64)
    same_size_words = np.ones(max(scan_bytes // 8, 1), dtype=np.uint64)
    few = queries[: args.numpy_queries]

    def numba_loop() -> None:
        for query in queries:
            kernels.hamming_topk(codes, query, args.k)

    def numpy_loop() -> None:
        for query in few:
            reference.hamming_topk(codes, query, args.k)

    runs: dict[str, Callable[[], object]] = {
        "dram": dram_words.sum,
        "same size": same_size_words.sum,
        "numba hamming_topk (per query)": numba_loop,
        "numba hamming_topk_batch": lambda: kernels.hamming_topk_batch(codes, queries, args.k),
    }
    per_run_queries = {name: args.queries for name in runs}
    kernels.hamming_topk_batch(codes, queries[:1], args.k)  # compile, or load from the cache

    agree = None
    try:
        import faiss
    except ImportError:
        print("faiss is not installed (pip install 'vecstore[ann]'): skipping it")
    else:
        faiss.omp_set_num_threads(args.threads)
        index = faiss.IndexBinaryFlat(args.dim)
        index.add(codes.view(np.uint8))
        faiss_queries = queries.view(np.uint8)
        runs[FAISS] = lambda: index.search(faiss_queries, args.k)
        per_run_queries[FAISS] = args.queries
        faiss_dist, _ = index.search(faiss_queries[:5], args.k)
        numba_dist = kernels.hamming_topk_batch(codes, queries[:5], args.k)[1]
        agree = bool(np.array_equal(faiss_dist, numba_dist))
        print(f"top-{args.k} distances equal to FAISS's on 5 queries: {agree}")
    runs["numpy reference.hamming_topk"] = numpy_loop
    per_run_queries["numpy reference.hamming_topk"] = len(few)

    best = best_times(runs, args.repeats)
    dram = dram_words.nbytes / best.pop("dram")
    same_size = same_size_words.nbytes / best.pop("same size")
    per_query = {name: seconds / per_run_queries[name] for name, seconds in best.items()}

    print()
    print(
        f"{args.n:,} codes x {args.dim} bits ({scan_bytes / 1e6:.1f} MB), "
        f"{args.queries} queries, k={args.k}, {args.threads} thread(s), best of {args.repeats}"
    )
    print(f"read bandwidth, {args.dram_mib} MiB array (DRAM): {dram / 1e9:.2f} GB/s")
    print(f"read bandwidth, {scan_bytes / 1e6:.1f} MB array (as the codes): {same_size / 1e9:.2f} GB/s")
    print()
    rows = []
    for name, seconds in per_query.items():
        rate = scan_bytes / seconds
        vs_faiss = f"{seconds / per_query[FAISS]:.2f}" if FAISS in per_query else "n/a"
        rows.append([name, f"{seconds * 1e3:.3f}", f"{rate / 1e9:.2f}", f"{rate / dram:.2f}",
                     f"{rate / same_size:.2f}", vs_faiss])
    print(markdown_table(["method", "ms / query", "GB/s", "x DRAM bandwidth", "x same-size read",
                          "time vs FAISS"], rows))
    write_json(args.json, {"command": args.command, "dram_bytes_per_s": dram,
                           "same_size_bytes_per_s": same_size, "seconds_per_query": per_query,
                           "faiss_distances_agree": agree})
    return 0
