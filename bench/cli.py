"""``python -m bench <scenario> [options]``: the one entry point of vecstore's benchmarks.

``python -m bench --list`` lists the scenarios; ``python -m bench <scenario> --help`` shows a
scenario's options. A scenario is a module with two functions::

    def configure(parser: bench.common.ScenarioParser) -> None: ...   # its own options
    def run(args: argparse.Namespace) -> int: ...                     # measure, print markdown

and one line in :data:`SCENARIOS`. The module is imported only when its scenario runs, so a
missing optional library (LanceDB, Chroma, torch) stops only the scenarios that need it.
"""

from __future__ import annotations

import importlib
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Scenario:
    """One benchmark: its subcommand, module, what it measures and how long it runs here."""

    name: str
    module: str
    summary: str
    runtime: str
    """Typical wall time on the project's shared 2-core machine (measured at load average 8-15,
    "est." where not measured since this entry point): the full run; ``--quick``."""


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("side-by-side", "bench.side_by_side",
             "vecstore vs LanceDB, Chroma, DuckDB VSS, FAISS, hnswlib: recall/QPS, filters, build, "
             "memory, writes, text ingest; writes docs/benchmarks.md", "29 min; 2,000-row smoke 10 min"),
    Scenario("ann", "bench.ann",
             "vecstore's filtered planner and ANN indexes vs hnswlib, FAISS, DuckDB + NumPy, one thread",
             "14 min; --quick 3.5 min"),
    Scenario("hot-path", "bench.hot_path",
             "the query path as users call it: fixed cost, unfiltered vs hnswlib/FAISS, many adds vs one, "
             "batch, memory and cold open in fresh processes", "30 min; --quick 3 min"),
    Scenario("graph-kernel", "bench.graph_kernel",
             "hnsw-int8's graph search vs hnswlib on the same graph (raw kernel, then tbl.search "
             "end to end against create_index()), one thread", "5.5 min; --quick 15 s"),
    Scenario("ann-backends", "bench.ann_backends",
             "each ANN index backend: build, memory, recall@10 and QPS against ef (--calibrate: effort_for)",
             "20-40 min (est.); --quick 2 min"),
    Scenario("exact", "bench.exact",
             "vecstore's exact two-stage scan (binary -> int8 -> float32) vs a NumPy scan and FAISS",
             "2-4 min (est.); --quick 15 s"),
    Scenario("kernels", "bench.kernels",
             "the Numba Hamming scan vs FAISS IndexBinaryFlat and the memory bandwidth, one thread",
             "15 s; --quick 5 s"),
    Scenario("quality", "bench.quality",
             "retrieval quality: QMSum chunking variants (nDCG/recall/MRR@10, bootstrap CIs), SciFact",
             "30-60 min; --quick 11-14 min"),
    Scenario("situated", "bench.situated",
             "chunk vectors on QMSum, COVID-QA and SciFact: naive, context, late, means and multi-vector "
             "(max, weighted) against naive with bootstrap CIs; the cost of a second vector",
             "70-100 min uncached, 10 min cached; --quick 5 min (est.)"),
    Scenario("ingest", "bench.ingest",
             "Table.add_documents throughput vs a bare model.encode of the same chunks",
             "25 min; --quick 2.5 min"),
    Scenario("scale", "bench.scale",
             "one box at --n rows derived from real MiniLM vectors (build, disk, RSS, 1-thread q/s, "
             "recall@10, filtered and not); Ray ingestion on 2 workers vs one process",
             "est. 25 min at 1M rows; --quick 5 min"),
    Scenario("versions", "bench.versions",
             "one small add from the 10th to the 2,000th version; disk after cleanup vs a fresh table",
             "est. 3-6 min; --quick 1 min"),
    Scenario("sync", "bench.sync",
             "re-ingesting a folder (unchanged, one file changed, pruned) vs the first ingest and a bare "
             "encode; torch vs ONNX vs ONNX int8 tokens/s and SciFact nDCG@10",
             "est. 45-60 min (all of SciFact twice); --quick 10 min"),
    Scenario("data", "bench.data",
             "build or check the cached PyPI vectors the vector scenarios read",
             "2 s cached; 12-20 min to embed 201,000"),
    Scenario("unmeasured", "bench.unmeasured",
             "the default search of tables never indexed or optimized (1,000-20,000 rows, PyPI and "
             "random rows): recall@10 and latency against the fixed width .rescore(16)",
             "est. 3 min; --quick 1 min"),
    Scenario("reuters", "bench.reuters",
             "build or check the cached Reuters-21578 vectors (hot-path --dataset reuters)",
             "2 s cached; 10-20 min to embed 21,577 stories"),
)
"""Every scenario, in the order ``--list`` shows them."""


def scenario(name: str) -> Scenario:
    """The scenario called ``name``; an unknown name lists the known ones."""
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"unknown scenario {name!r}; expected one of: {', '.join(s.name for s in SCENARIOS)}")


def listing() -> str:
    """The scenarios, a line each: name, summary, typical run time."""
    width = max(len(s.name) for s in SCENARIOS)
    lines = ["scenarios (python -m bench <scenario> --help for options; times on 2 shared cores):"]
    lines += [f"  {s.name:<{width}}  {s.summary} [{s.runtime}]" for s in SCENARIOS]
    return "\n".join(lines)


USAGE = "usage: python -m bench <scenario> [options]   |   python -m bench --list"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenario named by the first argument with the rest as its options."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "--list", "list"):
        print(USAGE + "\n\n" + listing())
        return 0 if args else 2
    try:
        chosen = scenario(args[0])
    except KeyError as exc:
        print(f"{USAGE}\nerror: {exc.args[0]}", file=sys.stderr)
        return 2

    from bench.common import BenchError, ScenarioParser

    module = importlib.import_module(chosen.module)
    parser = ScenarioParser(prog=f"python -m bench {chosen.name}", description=module.__doc__)
    module.configure(parser)
    ns = parser.parse_args(args[1:])
    ns.scenario = chosen.name
    ns.command = " ".join(["python -m bench", chosen.name, *map(shlex.quote, args[1:])])
    try:
        return int(module.run(ns))
    except BenchError as exc:
        print(f"python -m bench {chosen.name}: error: {exc}", file=sys.stderr)
        return 2
