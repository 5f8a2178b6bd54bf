"""ANN backends side by side: build time, memory, recall@10 and QPS against ef, filtered and not.

Single-threaded (FAISS OpenMP and hnswlib both pinned to ``--threads``, default 1), on the
200,000 MiniLM vectors of ``bench.data.load_vectors``, or on seeded synthetic vectors with
``--synthetic``. It measures the index backends themselves (``vecstore.index.build_index`` and
``index.search``), not a query through a table. Recall is tie-aware
(:func:`vecstore.evaluation.tie_aware_recall`: a returned row counts when its exact score is >=
the exact k-th best score, less the tolerance) and, under a filter, against the exact *filtered*
top-k. Filters are seeded uniform random ``allow`` bitmaps of the given selectivities.

Two modes:

- default: for each backend (``--backends``, default ``hnsw,faiss-hnsw``) build at ``--m`` /
  ``--ef-construction``, then sweep ef unfiltered and at each selectivity; print per setting
  recall, QPS and the share of queries that got fewer than ``min(k, allowed)`` results, plus a
  summary row per selectivity: the first ef reaching recall 0.95 and the default
  (``index.effort_for``) result.
- ``--calibrate``: for every backend, the smallest effort (ef / nprobe) reaching recall >= 0.95
  per selectivity and k: the measurements the ``effort_for`` rules in vecstore.index come from.

Examples::

    python -m bench ann-backends                          # MiniLM 200k (needs the cache)
    python -m bench ann-backends --quick                  # 20,000 rows, 200 queries
    python -m bench ann-backends --synthetic --n 50000 --dim 128
    python -m bench ann-backends --synthetic --calibrate --backends all --n 20000 --dim 64
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.common import ScenarioParser, add_vector_options, pin_threads, rss_bytes, write_json
from bench.data import load_vectors
from vecstore.evaluation import DEFAULT_TIE_TOLERANCE, tie_aware_recall
from vecstore.index import INDEX_KINDS, build_index, load_index

FloatArray = npt.NDArray[np.float32]
IndexBase = Any
"""What ``vecstore.index.build_index`` returns. Typed loosely: bench uses only the public
``build_index`` / ``load_index`` / ``INDEX_KINDS`` of ``vecstore.index``, whose modules change."""
EF_GRID = [10, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 3072,
           4096, 6144, 8192, 12288, 16384]
TARGET = 0.95


@dataclass
class Row:
    """One measured setting."""

    backend: str
    selectivity: float
    effort: int
    recall: float
    qps: float
    short: float  # share of queries with fewer than min(k, allowed) results
    default: bool = False


class Truth:
    """Exact (filtered) top-k through the flat oracle and exact scores of any returned labels."""

    def __init__(self, base: FloatArray, queries: FloatArray, k: int, binary: bool = False) -> None:
        self.base, self.queries, self.k, self.binary = base, queries, k, binary
        self.oracle = build_index("flat", base, "dot")

    def kth(self, allow: np.ndarray | None, queries: FloatArray) -> np.ndarray:
        scores, _ = self.oracle.search(queries, self.k, allow=allow)
        return scores[:, self.k - 1]  # -inf when fewer than k are allowed: all returned count

    def recall(self, queries: FloatArray, labels: np.ndarray, kth: np.ndarray,
               allowed: int) -> float:
        """Mean tie-aware recall@k of ``labels`` (-1: none) over min(k, allowed)."""
        exact = np.einsum("qkd,qd->qk", self.base[np.maximum(labels, 0)], queries)
        found = np.where(labels >= 0, exact, -np.inf)
        return tie_aware_recall(found, kth, min(self.k, allowed))

    def for_binary(self) -> Truth:
        """The Hamming oracle: on +-1 sign vectors, dot = d - 2 hamming, so the exact dot
        top-k is the exact Hamming top-k."""
        signs = np.where(self.base > 0, 1.0, -1.0).astype(np.float32)
        return Truth(signs, np.where(self.queries > 0, 1.0, -1.0).astype(np.float32), self.k,
                     binary=True)

    def with_k(self, k: int) -> Truth:
        t = Truth.__new__(Truth)
        t.base, t.queries, t.k, t.oracle, t.binary = (self.base, self.queries, k, self.oracle,
                                                      self.binary)
        return t


def allow_bitmap(n: int, selectivity: float, seed: int) -> np.ndarray | None:
    if selectivity >= 1:
        return None
    rng = np.random.default_rng(seed)
    allow = np.zeros(n, dtype=bool)
    allow[rng.choice(n, max(1, round(n * selectivity)), replace=False)] = True
    return allow


def measure(index: IndexBase, truth: Truth, queries: FloatArray, kth: np.ndarray,
            allow: np.ndarray | None, effort: int | None) -> tuple[float, float, float, int]:
    """(recall, QPS, short share, effort used) for one batch search."""
    k = truth.k
    used = effort if effort is not None else index.effort_for(
        k, 1.0 if allow is None else float(allow.mean()))
    started = time.perf_counter()
    _, labels = index.search(queries, k, allow=allow, effort=effort)
    seconds = time.perf_counter() - started
    allowed = len(index) if allow is None else int(allow.sum())
    short = float(np.mean((labels >= 0).sum(1) < min(k, allowed)))
    if allow is not None:
        assert allow[labels[labels >= 0]].all(), f"{index.kind} returned a label not allowed"
    return truth.recall(truth_queries(truth, queries), labels, kth, allowed), \
        queries.shape[0] / seconds, short, used


def truth_queries(truth: Truth, queries: FloatArray) -> FloatArray:
    """Queries as the oracle sees them (signs for the Hamming oracle)."""
    if truth.binary:
        return np.where(queries > 0, 1.0, -1.0).astype(np.float32)
    return queries


def sweep(index: IndexBase, truth: Truth, selectivity: float, queries: FloatArray, seed: int,
          max_seconds: float, defaults_only: bool = False) -> list[Row]:
    """Effort grid from small to large until recall >= 0.99 or a setting gets too slow."""
    allow = allow_bitmap(len(index), selectivity, seed)
    kth = truth.kth(allow, truth_queries(truth, queries))
    index.search(queries[:50], truth.k, allow=allow)  # warm caches before timing the default
    rows: list[Row] = []
    recall, qps, short, used = measure(index, truth, queries, kth, allow, None)
    rows.append(Row(index.kind, selectivity, used, recall, qps, short, default=True))
    if defaults_only:
        return rows
    for ef in effort_grid(index):
        recall, qps, short, _ = measure(index, truth, queries, kth, allow, ef)
        rows.append(Row(index.kind, selectivity, ef, recall, qps, short))
        if recall >= 0.99 or queries.shape[0] / qps > max_seconds:
            break
    return rows


def effort_grid(index: IndexBase) -> list[int]:
    nlist = getattr(index, "nlist", None)
    if nlist is not None:  # IVF: nprobe from 1 to every list
        grid = sorted({1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512,
                       768, 1024, 1536, 2048, 4096, nlist})
        return [p for p in grid if p <= nlist]
    return [ef for ef in EF_GRID if ef <= max(10, len(index))]


def calibrate(index: IndexBase, truth: Truth, selectivity: float, queries: FloatArray,
              seed: int, k_values: Sequence[int]) -> dict[int, tuple[int | None, float]]:
    """Per k: the smallest effort on the grid reaching recall >= 0.95, and its QPS there."""
    allow = allow_bitmap(len(index), selectivity, seed)
    out: dict[int, tuple[int | None, float]] = {}
    for k in k_values:
        t = truth.with_k(k)
        kth = t.kth(allow, truth_queries(t, queries))
        found: tuple[int | None, float] = (None, 0.0)
        # Ascending scan (recall is not strictly monotone in effort, so no bisection); each
        # step costs about 1.5x the previous, so the scan costs ~3x the answer's own run.
        for effort in effort_grid(index):
            recall, qps, _, _ = measure(index, t, queries, kth, allow, effort)
            if recall >= TARGET:
                found = (effort, qps)
                break
        out[k] = found
    return out


def build(kind: str, base: FloatArray, args: argparse.Namespace,
          what: str) -> tuple[IndexBase, float, int]:
    """Build (or, with ``--index-dir``, load a previous build of) one backend.

    Returns the index, its build seconds and the RSS growth while building (0 when loaded).
    """
    params: dict[str, Any] = {}
    if kind in ("hnsw", "faiss-hnsw", "binary-hnsw"):
        params = {"m": args.m, "ef_construction": args.ef_construction}
    cache: Path | None = None
    if args.index_dir is not None:
        key = hashlib.sha256(json.dumps([kind, params, what]).encode()).hexdigest()[:12]
        cache = args.index_dir / f"{kind}-{key}"
        if (cache / "build.json").is_file():
            index = load_index(kind, cache, params)
            return index, json.loads((cache / "build.json").read_text())["seconds"], 0
    before = rss_bytes()
    started = time.perf_counter()
    index = build_index(kind, base, "cosine", progress=args.progress, threads=args.threads, **params)
    seconds = time.perf_counter() - started
    rss = rss_bytes() - before
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)  # save() makes only the leaf directory
        index.save(cache)
        (cache / "build.json").write_text(json.dumps({"seconds": seconds, "what": what}))
    return index, seconds, rss


def configure(parser: ScenarioParser) -> None:
    add_vector_options(parser, n=(200_000, 20_000), queries=(1_000, 200))
    parser.add_argument("--clusters", type=int, default=100,
                        help="--synthetic: Gaussian mixture centres (0: pure Gaussian)")
    parser.add_argument("--dim", type=int, default=384, help="--synthetic only")
    parser.add_sized("--filtered-queries", type=int, full=200, quick=50,
                     help="queries used under filters (hnswlib's callback is slow)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=200)
    parser.add_argument("--backends", default="hnsw,faiss-hnsw",
                        help=f"comma-separated, or 'all': {', '.join(INDEX_KINDS)}")
    parser.add_argument("--selectivities", default="1,0.5,0.1,0.01,0.001")
    parser.add_sized("--max-seconds", type=float, full=20.0, quick=5.0,
                     help="stop an ef sweep once one setting takes longer than this")
    parser.add_argument("--calibrate", action="store_true")
    parser.add_argument("--defaults-only", action="store_true",
                        help="measure only the default effort (index.effort_for) per selectivity")
    parser.add_argument("--calibrate-k", default="1,10,50")
    parser.add_argument("--progress", action="store_true")
    parser.add_argument("--index-dir", type=Path, default=None,
                        help="save built indexes here and reuse them on later runs")


def run(args: argparse.Namespace) -> int:
    """Build each backend, then sweep or calibrate its effort per selectivity; print as it goes."""
    pin_threads(args.threads)
    import faiss  # OpenMP may have started before pin_threads set its variable: set it here too

    faiss.omp_set_num_threads(args.threads)
    backends = [b for b in INDEX_KINDS if b != "flat"] if args.backends == "all" else \
        args.backends.split(",")
    selectivities = [float(s) for s in args.selectivities.split(",")]
    sample = load_vectors(args.data, args.n, args.queries, synthetic=args.synthetic, attrs=False,
                          seed=args.seed, dim=args.dim, clusters=args.clusters)
    base, queries = np.ascontiguousarray(sample.base), np.ascontiguousarray(sample.queries)
    what = sample.source
    truth = Truth(base, queries, args.k)
    binary_truth: Truth | None = None
    print(f"# {what}; {queries.shape[0]} queries ({args.filtered_queries} under filters); "
          f"k={args.k}; {args.threads} thread(s); recall tie-aware (tolerance {DEFAULT_TIE_TOLERANCE:g})",
          flush=True)
    results: list[dict[str, Any]] = []
    for kind in backends:
        index, seconds, rss = build(kind, base, args, what)
        loaded = " (loaded; build time from the first run)" if rss == 0 and args.index_dir else ""
        print(f"\n## {kind} {index.params}: build {seconds:.1f} s{loaded}, memory_bytes "
              f"{index.memory_bytes / 2**20:.1f} MiB ({index.memory_bytes / len(index):.0f} B/vector), "
              f"RSS +{rss / 2**20:.1f} MiB", flush=True)
        results.append({"backend": kind, "build_s": seconds, "memory_bytes": index.memory_bytes,
                        "rss_delta": rss, "params": index.params.to_json()})
        oracle = truth
        if kind.startswith("binary"):  # candidates by Hamming distance: judged against Hamming
            binary_truth = binary_truth or truth.for_binary()
            oracle = binary_truth
        for sel in selectivities:
            qs = queries if sel >= 1 else queries[: args.filtered_queries]
            if args.calibrate:
                k_values = [int(k) for k in args.calibrate_k.split(",")]
                found = calibrate(index, oracle, sel, qs, args.seed + 1, k_values)
                cells = "  ".join(
                    f"k={k}: {'-' if e is None else e} ({q:,.0f}/s)" for k, (e, q) in found.items())
                defaults = "  ".join(f"k={k}: {index.effort_for(k, sel)}" for k in k_values)
                print(f"sel {sel:<6} min effort for recall {TARGET}: {cells}   | default {defaults}",
                      flush=True)
                results.append({"backend": kind, "selectivity": sel,
                                "min_effort": {k: e for k, (e, _) in found.items()}})
                continue
            rows = sweep(index, oracle, sel, qs, args.seed + 1, args.max_seconds, args.defaults_only)
            for r in rows:
                tag = " (default)" if r.default else ""
                print(f"sel {sel:<6} ef {r.effort:>6}{tag:<10} recall {r.recall:.3f}  "
                      f"{r.qps:>9,.0f} q/s  short {r.short:.1%}", flush=True)
                results.append(asdict(r))
            if args.defaults_only:
                continue
            first = next((r for r in rows if not r.default and r.recall >= TARGET), None)
            summary = "never" if first is None else f"ef {first.effort}: {first.qps:,.0f} q/s"
            print(f"sel {sel:<6} -> first recall >= {TARGET}: {summary}", flush=True)
        del index
    write_json(args.json, results)
    return 0
