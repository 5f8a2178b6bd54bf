"""The side-by-side report: vecstore against LanceDB, Chroma, DuckDB VSS, FAISS and hnswlib.

    python -m bench side-by-side            # 200,000 MiniLM vectors of PyPI summaries, 1,000 queries
    python -m bench side-by-side --quick    # the first 20,000 rows, 200 queries, coarser sweeps
    python -m bench side-by-side --quick --n 2000 --queries 50 --peers vecstore hnswlib --no-doc
    python -m bench side-by-side --report-only ~/.cache/vecstore-bench/side-by-side-full/results.json

Every peer runs behind one adapter (``bench/peers/``) in its own child processes (build; serve;
batch; text ingest), on the same vectors, filters, writes and queries, in the same run. The
report is written as the "Side by side" section of ``docs/benchmarks.md`` (replacing an older
one, leaving the other sections alone), with plots under ``docs/img/``. The raw results are kept
as JSON in the work directory (``--work``, outside git; ``--json`` copies them).

Scenarios: recall@10-vs-QPS sweeps, unfiltered; filters at ~50/10/1/0.1% selectivity and a
conjunction; build time, disk, peak RSS, cold open + first query; text ingest with embedding;
search after 10% updates and deletes; batch throughput on all cores. vecstore is built with
``tbl.add`` calls of ``--add-batch`` rows and asked through ``--query-path`` (by default the
user path, ``tbl.search(q).where(...).limit(k).to_list()``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import (
    REPO_ROOT,
    ScenarioParser,
    add_vecstore_options,
    add_vector_options,
    log,
    machine,
    package_versions,
    thread_env,
)
from bench.data import default_cache_dir
from bench.peers import PEERS, TEXT_PEERS
from vecstore.evaluation import DEFAULT_TIE_TOLERANCE

REPO = REPO_ROOT
TIMEOUTS = {"build": 1800, "serve": 1500, "memory": 600, "batch": 600, "writes": 900, "ingest": 900}
INGEST_ROUNDS = 3  # 1 with --quick
QUICK_TIMEOUTS = {"build": 300, "serve": 300, "memory": 120, "batch": 120, "writes": 180, "ingest": 300}


def child_env(threads: int) -> dict[str, str]:
    """The environment of a child: every thread pool at ``threads``, offline, quiet."""
    env = thread_env(threads)
    env.update(
        {
            "TOKENIZERS_PARALLELISM": "false",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "ANONYMIZED_TELEMETRY": "False",
            "RUST_LOG": "error",
            "LANCE_LOG": "error",
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


VERSIONS = (
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
)


def configure(ap: ScenarioParser) -> None:
    add_vector_options(ap, n=(200_000, 20_000), queries=(1_000, 200))
    add_vecstore_options(ap)
    ap.set_defaults(threads=2)
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


def run(args: argparse.Namespace) -> int:
    """Build, serve, batch, writes and ingest phases of every peer in child processes; the report."""
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

    setup = make_setup(args)
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

    results: dict[str, Any] = {
        "meta": {
            "command": args.command,
            "mode": mode,
            "tie_tolerance": DEFAULT_TIE_TOLERANCE,
            "threads": args.threads,
            "setup": setup.__dict__,
            "machine": {**machine(), "versions": package_versions(VERSIONS)},
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
        entry["build"] = run_child("build", name, work, args.threads, timeouts["build"])
        if "error" not in entry["build"]:
            entry["serve"] = run_child("serve", name, work, 1, timeouts["serve"])
            if "op_knob" in entry["serve"]:
                knob = entry["serve"]["op_knob"]
                entry["memory"] = run_child("memory", name, work, 1, timeouts["memory"], {"knob": knob})
                if "batch" not in args.skip:
                    entry["batch"] = run_child(
                        "batch", name, work, args.threads, timeouts["batch"],
                        {"knob": knob, "threads": args.threads},
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
                runs[name].append(run_child("ingest", name, work, args.threads, timeouts["ingest"]))
        for name, rs in runs.items():
            good = sorted((x for x in rs if "docs_per_s" in x), key=lambda x: x["docs_per_s"])
            entry = dict(good[len(good) // 2]) if good else dict(rs[0])
            entry["runs_docs_per_s"] = [x.get("docs_per_s") for x in rs]
            results["ingest"][name] = entry
        results_path.write_text(json.dumps(results, indent=1))

    results["meta"]["load_after"] = os.getloadavg()
    results["meta"]["duration_s"] = time.time() - started
    results_path.write_text(json.dumps(results, indent=1))
    if args.json is not None:
        shutil.copyfile(results_path, args.json)
    log(f"done in {results['meta']['duration_s'] / 60:.1f} min; results in {results_path}")
    if not args.keep_stores:
        shutil.rmtree(work / "stores", ignore_errors=True)
    img = args.img if not args.no_doc else work / "img"
    return report.publish(results, args.doc, img, write=not args.no_doc)

