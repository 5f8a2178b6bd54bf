"""The side-by-side report: vecstore against LanceDB, Chroma, DuckDB VSS, FAISS and hnswlib.

    python -m bench              # 200,000 MiniLM vectors of PyPI summaries, 1,000 queries (< 60 min)
    python -m bench --quick      # the first 20,000 rows, 200 queries, coarser sweeps (< 10 min)
    python -m bench --report-only ~/.cache/vecstore-bench/side-by-side-full/results.json

Every peer runs behind one adapter (``bench/peers/``) in its own child processes (build; serve;
batch; text ingest), on the same vectors, filters, writes and queries, in the same run. The
report is written as the "Side by side" section of ``docs/benchmarks.md`` (replacing an older
one, leaving the other sections alone), with plots under ``docs/img/``. The raw results are kept
as JSON in the work directory (``--work``, outside git).

Scenarios: recall@10-vs-QPS sweeps, unfiltered; filters at ~50/10/1/0.1% selectivity and a
conjunction; build time, disk, peak RSS, cold open + first query; text ingest with embedding;
search after 10% updates and deletes; batch throughput on all cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.data import DEFAULT_DATA_DIR, default_cache_dir
from bench.peers import PEERS, TEXT_PEERS

REPO = Path(__file__).resolve().parents[1]
TIMEOUTS = {"build": 1800, "serve": 1500, "memory": 600, "batch": 600, "writes": 900, "ingest": 900}
INGEST_ROUNDS = 3  # 1 with --quick
QUICK_TIMEOUTS = {"build": 300, "serve": 300, "memory": 120, "batch": 120, "writes": 180, "ingest": 300}


def child_env(threads: int) -> dict[str, str]:
    env = dict(os.environ)
    for var in (
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "NUMBA_NUM_THREADS",
        "LANCE_CPU_THREADS",
        "RAYON_NUM_THREADS",
        "BENCH_THREADS",
    ):
        env[var] = str(threads)
    env.update(
        {
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
            "RUST_LOG": "error",
            "LANCE_LOG": "error",
            "PYTHONPATH": str(REPO) + os.pathsep + env.get("PYTHONPATH", ""),
        }
    )
    return env


def run_child(
    phase: str, peer: str, work: Path, threads: int, timeout: int, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = work / f"{peer}.{phase}.json"
    out.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.runner", phase, peer, str(work)]
    if extra:
        cmd.append(json.dumps(extra))
    log(f"{peer}: {phase} ({threads} thread{'s' if threads > 1 else ''})")
    t = time.perf_counter()
    try:
        proc = subprocess.run(cmd, env=child_env(threads), timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "wall_s": time.perf_counter() - t}
    wall = time.perf_counter() - t
    if not out.exists():
        return {"error": f"child exited with status {proc.returncode} and no result", "wall_s": wall}
    result: dict[str, Any] = json.loads(out.read_text())
    result["wall_s"] = wall
    return result


def machine() -> dict[str, Any]:
    cpu = "unknown CPU"
    mem = 0
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            mem = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        pass
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for dist in (
        "vecstore",
        "lancedb",
        "chromadb",
        "duckdb",
        "duckdb-extension-vss",
        "faiss-cpu",
        "hnswlib",
        "numpy",
        "pyarrow",
        "sentence-transformers",
        "torch",
    ):
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = "not installed"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
    }


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="20,000 rows, 200 queries, coarse sweeps")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="shared data directory")
    ap.add_argument(
        "--peers",
        nargs="+",
        default=list(PEERS),
        choices=list(PEERS),
        metavar="PEER",
        help=f"systems to run (default: all): {', '.join(PEERS)}",
    )
    ap.add_argument(
        "--skip", nargs="*", default=[], choices=["ingest", "batch", "writes"], help="scenarios to leave out"
    )
    ap.add_argument(
        "--work",
        type=Path,
        default=None,
        help="work directory for stores and results (default: under the bench cache)",
    )
    ap.add_argument("--doc", type=Path, default=REPO / "docs" / "benchmarks.md")
    ap.add_argument("--img", type=Path, default=REPO / "docs" / "img")
    ap.add_argument("--no-doc", action="store_true", help="print the report instead of writing the doc")
    ap.add_argument(
        "--report-only",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="render the report from an earlier run's results.json",
    )
    ap.add_argument("--keep-stores", action="store_true", help="keep the peers' stores after the run")
    args = ap.parse_args(argv)

    from bench import report

    if args.report_only is not None:
        results = json.loads(args.report_only.read_text())
        img = args.img if not args.no_doc else args.report_only.parent / "img"
        return report.publish(results, args.doc, img, write=not args.no_doc)

    from threadpoolctl import threadpool_limits

    from bench.workload import compute_truth, filters_json, load_data, make_setup, pick_filters

    started = time.time()
    mode = "quick" if args.quick else "full"
    work = args.work or default_cache_dir() / f"side-by-side-{mode}"
    if work.exists():
        shutil.rmtree(work)
    (work / "stores").mkdir(parents=True)

    setup = make_setup(args.quick, args.data)
    log(f"{mode} run: {setup.n:,} rows, {setup.n_queries} queries; work directory {work}")
    data = load_data(setup)
    filters = pick_filters(data.attrs)
    setup = type(setup)(**{**setup.__dict__, "filters": filters_json(filters)})
    setup.save(work / "setup.json")
    t = time.perf_counter()
    with threadpool_limits(os.cpu_count() or 1):
        import numpy as np

        np.savez(work / "truth.npz", **compute_truth(setup, data, filters))
    log(f"exact answers in {time.perf_counter() - t:.1f} s")
    del data

    cmd = "python -m bench" + (" --quick" if args.quick else "")
    if set(args.peers) != set(PEERS):
        cmd += " --peers " + " ".join(args.peers)
    results: dict[str, Any] = {
        "meta": {
            "command": cmd,
            "mode": mode,
            "setup": setup.__dict__,
            "machine": machine(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
            "load_before": os.getloadavg(),
        },
        "peers": {},
        "ingest": {},
    }
    timeouts = QUICK_TIMEOUTS if args.quick else TIMEOUTS
    results_path = work / "results.json"
    for name in args.peers:
        from bench.peers import peer_class

        cls = peer_class(name)
        entry: dict[str, Any] = {
            "config": cls.config,
            "knob_name": cls.knob_name,
            "filter_note": cls.filter_note,
        }
        entry["build"] = run_child("build", name, work, 2, timeouts["build"])
        if "error" not in entry["build"]:
            entry["serve"] = run_child("serve", name, work, 1, timeouts["serve"])
            if "op_knob" in entry["serve"]:
                knob = entry["serve"]["op_knob"]
                entry["memory"] = run_child("memory", name, work, 1, timeouts["memory"], {"knob": knob})
                if "batch" not in args.skip:
                    entry["batch"] = run_child(
                        "batch", name, work, 2, timeouts["batch"], {"knob": knob, "threads": 2}
                    )
                if "writes" not in args.skip:
                    entry["writes"] = run_child("writes", name, work, 1, timeouts["writes"], {"knob": knob})
        results["peers"][name] = entry
        results_path.write_text(json.dumps(results, indent=1))
        if not args.keep_stores:
            shutil.rmtree(work / "stores" / name, ignore_errors=True)

    if "ingest" not in args.skip:
        # the machine is shared and its speed drifts: rounds in rotated order, and the median run
        systems = ["sentence-transformers", *[p for p in TEXT_PEERS if p in args.peers or p == "vecstore"]]
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in systems}
        for r in range(1 if args.quick else INGEST_ROUNDS):
            for name in systems[r % len(systems) :] + systems[: r % len(systems)]:
                runs[name].append(run_child("ingest", name, work, 2, timeouts["ingest"]))
        for name, rs in runs.items():
            good = sorted((x for x in rs if "docs_per_s" in x), key=lambda x: x["docs_per_s"])
            entry = dict(good[len(good) // 2]) if good else dict(rs[0])
            entry["runs_docs_per_s"] = [x.get("docs_per_s") for x in rs]
            results["ingest"][name] = entry
        results_path.write_text(json.dumps(results, indent=1))

    results["meta"]["load_after"] = os.getloadavg()
    results["meta"]["duration_s"] = time.time() - started
    results_path.write_text(json.dumps(results, indent=1))
    log(f"done in {results['meta']['duration_s'] / 60:.1f} min; results in {results_path}")
    if not args.keep_stores:
        shutil.rmtree(work / "stores", ignore_errors=True)
    img = args.img if not args.no_doc else work / "img"
    return report.publish(results, args.doc, img, write=not args.no_doc)


if __name__ == "__main__":
    sys.exit(main())
