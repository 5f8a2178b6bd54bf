"""What every scenario shares: its command line, threads, timing, memory, output, and the way
users call vecstore.

A scenario module (see :mod:`bench.cli`) builds on :class:`ScenarioParser`, which gives it the
options every scenario takes (``--data``, ``--quick``, ``--json``, ``--threads``), and on the
helpers below for what it measures. Nothing here imports vecstore, NumPy's heavy friends or a
model at import time: ``python -m bench --list`` imports no scenario at all, and a scenario
pays only for what it uses.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    import pyarrow as pa

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = (REPO_ROOT / ".." / "shared" / "data").resolve()

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMBA_NUM_THREADS",
    "LANCE_CPU_THREADS",
    "RAYON_NUM_THREADS",
    "BENCH_THREADS",
)
"""Environment variables that size the thread pools of the libraries the benchmarks load."""


class BenchError(Exception):
    """A benchmark cannot run as asked (missing data or cache, bad option); the CLI prints it."""


def log(msg: str) -> None:
    """A timestamped progress line on stderr (stdout carries the report)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --- the command line ---------------------------------------------------------------------------


class ScenarioParser(argparse.ArgumentParser):
    """The parser of one scenario, with the options every scenario takes.

    ``--data DIR`` (the shared data directory), ``--quick`` (the scenario's smallest run that
    still exercises every part), ``--json PATH`` (the figures as JSON too) and ``--threads N``
    (threads for the measured work; a scenario sets its default with ``set_defaults``).
    Options added with :meth:`add_sized` take their default from ``--quick``.
    """

    def __init__(self, prog: str, description: str | None) -> None:
        super().__init__(prog=prog, description=description,
                         formatter_class=argparse.RawDescriptionHelpFormatter)
        self._sized: dict[str, tuple[Any, Any]] = {}
        self.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, metavar="DIR",
                          help="the shared data directory (default: %(default)s)")
        self.add_argument("--quick", action="store_true",
                          help="the smallest run that exercises every part (quick defaults below)")
        self.add_argument("--json", type=Path, default=None, metavar="PATH",
                          help="also write the figures as JSON to PATH")
        self.add_argument("--threads", type=int, default=1, metavar="N",
                          help="threads for the measured work (default: %(default)s)")

    def add_sized(self, *flags: str, full: Any, quick: Any, help: str, **kwargs: Any) -> None:
        """An option whose default is ``full``, or ``quick`` under ``--quick``."""
        action = self.add_argument(*flags, default=None, help=f"{help} (default {full}; --quick {quick})",
                                   **kwargs)
        self._sized[action.dest] = (full, quick)

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        ns = super().parse_args(args, namespace)
        for dest, (full, quick) in self._sized.items():
            if getattr(ns, dest) is None:
                setattr(ns, dest, quick if ns.quick else full)
        if ns.threads < 1:
            self.error(f"--threads must be at least 1, got {ns.threads}")
        return ns


def add_vector_options(parser: ScenarioParser, *, n: tuple[int, int], queries: tuple[int, int]) -> None:
    """``--n``, ``--queries`` and ``--synthetic`` for scenarios on the PyPI vectors
    (:func:`bench.data.load_vectors`); ``n`` and ``queries`` are (full, quick) defaults."""
    parser.add_sized("--n", type=int, full=n[0], quick=n[1],
                     help="base vectors: the first N rows of the seeded PyPI sample")
    parser.add_sized("--queries", type=int, full=queries[0], quick=queries[1],
                     help="held-out query vectors")
    parser.add_argument("--synthetic", action="store_true",
                        help="seeded clustered random vectors instead of MiniLM embeddings (with the "
                             "PyPI rows' attributes where the scenario filters): runs without the "
                             "embedding cache, for smoke tests; recall and speed are not MiniLM's")


ADD_BATCH = 5_000
"""Rows per ``Table.add`` call where a benchmark builds a vecstore table: applications add a
few thousand rows at a time, so a table of N rows holds about N / 5,000 segments, as theirs would."""

QUERY_PATHS = {
    "user": "`tbl.search(q).where(...).limit(k).to_list()`",
    "hits": "`tbl.search(q).where(...).limit(k).select().hits()` (ids only, no attribute values)",
}
"""How a benchmark asks vecstore a query: the user path by default; ``hits`` is the lighter call
the earlier figures used."""


def add_vecstore_options(parser: ScenarioParser) -> None:
    """``--add-batch`` and ``--query-path``: how the vecstore table is built and asked."""
    parser.add_argument("--add-batch", type=int, default=ADD_BATCH, metavar="ROWS",
                        help="rows per tbl.add call when building vecstore tables; 0: one call with "
                             "every row (one segment, as the earlier figures) (default: %(default)s)")
    parser.add_argument("--query-path", choices=sorted(QUERY_PATHS), default="user",
                        help="user: " + QUERY_PATHS["user"] + "; hits: " + QUERY_PATHS["hits"]
                             + " (default: %(default)s)")


def add_in_batches(tbl: Any, rows: pa.Table, batch: int = ADD_BATCH) -> None:
    """``tbl.add(rows)`` in calls of ``batch`` rows (``batch <= 0``: one call)."""
    if batch <= 0:
        tbl.add(rows)
        return
    for start in range(0, rows.num_rows, batch):
        tbl.add(rows.slice(start, batch))


def search_ids(query: Any, path: str) -> tuple[list[str], Any]:
    """Run a vecstore ``Query`` as ``path`` of :data:`QUERY_PATHS` says; the ids found, best
    first, and the plan. ``user`` runs ``.hits().to_list()``, which is what ``.to_list()`` does."""
    if path == "user":
        hits = query.hits()
        return [row["id"] for row in hits.to_list()], hits.plan
    if path == "hits":
        hits = query.select().hits()
        return list(hits.ids), hits.plan
    raise BenchError(f"unknown query path {path!r}; expected one of {', '.join(QUERY_PATHS)}")


def vector_column(vectors: npt.ArrayLike) -> pa.FixedSizeListArray:
    """``[n, dim]`` float32 vectors as an Arrow fixed-size-list column."""
    import pyarrow as pa

    v = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])


def arrow_rows(columns: Mapping[str, Any], vectors: npt.ArrayLike, vector_name: str = "vector") -> pa.Table:
    """An Arrow table of ``columns`` (Arrow arrays or lists) plus the vectors as ``vector_name``."""
    import pyarrow as pa

    return pa.table({**columns, vector_name: vector_column(vectors)})


# --- threads --------------------------------------------------------------------------------------


def thread_env(threads: int, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """An environment for a child process whose thread pools all have ``threads`` threads, and
    from which ``bench`` imports."""
    env = dict(os.environ if base is None else base)
    env.update({var: str(threads) for var in THREAD_VARS})
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def pin_threads(threads: int) -> None:
    """Size this process's thread pools (BLAS/OpenMP, Numba, FAISS, torch) to ``threads``.

    Libraries imported later read the environment variables set here (Numba sizes its pool
    from ``NUMBA_NUM_THREADS`` at import, OpenMP from ``OMP_NUM_THREADS``); the ones already
    loaded are set through their API.
    """
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # only BLAS is left as it is
        pass
    else:
        threadpool_limits(threads)
    if "numba" in sys.modules:
        numba = sys.modules["numba"]
        numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    if "faiss" in sys.modules:
        sys.modules["faiss"].omp_set_num_threads(threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(threads)


# --- timing ---------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Run ``fn()``: its result, the wall seconds and the CPU seconds of this process."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def best_times(runs: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Shortest wall time of each run over ``rounds`` rounds, in seconds.

    Every round runs each measurement once, so a burst of load from other processes on a shared
    machine slows all of them alike instead of skewing one ratio; the minimum is the run least
    disturbed.
    """
    best = dict.fromkeys(runs, float("inf"))
    for _ in range(rounds):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def latency_stats(latencies: Iterable[float]) -> dict[str, float]:
    """Queries timed one at a time: q/s as 1 / median latency (robust to a slow spell of the
    shared machine) and as count / total, p50 and p95 in milliseconds."""
    a = np.asarray(list(latencies), dtype=np.float64)
    if a.size == 0:
        return {"n": 0, "qps": float("nan"), "qps_mean": float("nan"), "p50_ms": float("nan"),
                "p95_ms": float("nan")}
    return {
        "n": int(a.size),
        "qps": float(1.0 / np.median(a)),
        "qps_mean": float(a.size / a.sum()),
        "p50_ms": float(np.median(a) * 1e3),
        "p95_ms": float(np.percentile(a, 95) * 1e3),
    }


# --- memory ---------------------------------------------------------------------------------------


def proc_status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (``VmHWM``: peak RSS; ``VmRSS``: current RSS;
    ``RssAnon``, ``RssFile``); -1 where there is no such file or field (not Linux)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def rss_bytes() -> int:
    """Resident set size of this process in bytes (0 where unknown)."""
    return max(0, proc_status_kib("VmRSS")) * 1024


def memory_status() -> dict[str, int]:
    """``VmRSS``, ``RssAnon`` and ``RssFile`` of this process, in bytes."""
    return {key: max(0, proc_status_kib(key)) * 1024 for key in ("VmRSS", "RssAnon", "RssFile")}


# --- output ---------------------------------------------------------------------------------------


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A markdown table; ``align`` has one letter per column, ``l`` or ``r`` (default: the first
    column left, the others right)."""
    align = align or "l" + "r" * (len(header) - 1)
    if len(align) != len(header):
        raise ValueError(f"align {align!r} has {len(align)} letters for {len(header)} columns")
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(rule) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for NumPy values, paths and dataclasses."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def write_json(path: Path | None, obj: Any, default: Callable[[Any], Any] = json_default) -> None:
    """Write ``obj`` as JSON to ``path`` (nothing when ``path`` is None), through a temporary
    file so that a reader never sees half of it."""
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=default))
    os.replace(tmp, path)


def machine() -> dict[str, Any]:
    """The CPU, cores, memory, Python and platform of this machine."""
    cpu, mem_kib = platform.processor() or platform.machine(), 0
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        with open("/proc/meminfo") as f:
            mem_kib = int(next(line.split()[1] for line in f if line.startswith("MemTotal")))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "mem_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def machine_line() -> str:
    """A few words for a report: architecture and cores."""
    return f"{platform.machine()}, {os.cpu_count()} cores"


def torch_line() -> str:
    """The device and torch threads the embedding model runs with."""
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"CPU, {os.cpu_count()} cores"
    threads = torch.get_num_threads()
    return f"{platform.machine()}, {device}, torch {torch.__version__}, {threads} torch threads"


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed version of each distribution, or ``"not installed"``."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out
