"""Load test of ``vecstore serve`` beside the embedded API, in the same run.

    python -m bench.server_load                        # 2 clients x 10 s per scenario
    python -m bench.server_load --clients 4 --seconds 30 --rows 100000 --json out.json
    python -m bench.server_load --no-text --cli        # skip the model; time the CLI cold vs warm

It builds a store in a temporary directory (``--rows`` random ``--dim``-d vectors with an integer
attribute; and, unless ``--no-text``, the bundled QMSum sample ingested with the default model),
starts ``vecstore serve`` on 127.0.0.1 in a subprocess and waits until its model is warm. Each
scenario then runs for ``--seconds``:

- through the server: ``--clients`` client processes (one keep-alive connection each, the
  stdlib remote client), each sending queries back to back;
- embedded: ``--clients`` threads of this process sharing one Table (and one model).

Scenarios: vector top-10, vector top-10 with a 10% filter, text top-10 (embedding included:
every query text is new, so the embedder's cache of seen texts never answers).
Reported per scenario: queries, q/s, p50 and p99 latency as each client measured it. ``--cli``
also times ``vecstore search`` from a shell: on the store directory (loads torch and the model:
the cold cost every CLI call pays) and on the server's URL.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

QUESTIONS = [
    "What did the team decide about the remote control's buttons?",
    "How should schools be funded?",
    "speech recognition features and noise",
    "Who is responsible for the budget?",
    "What are the risks of the new design?",
    "When is the next meeting?",
    "What did the marketing expert report about users?",
    "How much does the battery cost?",
    "Which features do young people want?",
    "What was said about teachers' pay?",
]


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_store(path: Path, rows: int, dim: int, text: bool) -> None:
    import vecstore

    db = vecstore.connect(path)
    rng = np.random.default_rng(0)
    tbl = db.create_table("vectors", dim=dim)
    for start in range(0, rows, 20_000):
        n = min(20_000, rows - start)
        vecs = rng.normal(size=(n, dim)).astype(np.float32)
        tbl.add([{"id": str(start + i), "vector": vecs[i], "bucket": (start + i) % 100} for i in range(n)])
    tbl.compact()
    if text:
        from vecstore.ingest.loaders import load_documents

        sample = resources.files("vecstore") / "demo_data" / "qmsum_sample.jsonl"
        with resources.as_file(sample) as p:
            docs = load_documents([Path(p)]).documents
        db.create_table("meetings", embedder="default").add_documents(docs, chunking="naive", progress=False)


def start_server(store: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    from vecstore.remote.http import Transport

    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vecstore",
                "serve",
                str(store),
                "--port",
                str(port),
                "--log-level",
                "warning",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    http = Transport(f"http://127.0.0.1:{port}")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"vecstore serve exited: {log.read_text()[-2000:]}")
        try:
            if http.request("GET", "/healthz")["models"] == "ready":
                return proc
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("the server did not get ready in 300 s")


def _queries(kind: str, dim: int, seed: int) -> list[Any]:
    if kind == "text":  # every text different: the embedder caches texts it has seen
        return [f"{QUESTIONS[j % len(QUESTIONS)]} (asked by client {seed}, #{j})" for j in range(20_000)]
    return list(np.random.default_rng(seed).normal(size=(500, dim)).astype(np.float32))


def _run_for(seconds: float, search: Callable[[Any], Any], queries: list[Any]) -> list[float]:
    latencies = []
    end = time.perf_counter() + seconds
    i = 0
    while time.perf_counter() < end:
        t = time.perf_counter()
        search(queries[i % len(queries)])
        latencies.append(time.perf_counter() - t)
        i += 1
    return latencies


def _search_fn(tbl: Any, scenario: str) -> Callable[[Any], Any]:
    if scenario == "vector, 10% filter":
        return lambda q: tbl.search(q).where("bucket < ?", 10).limit(10).to_list()
    return lambda q: tbl.search(q).limit(10).to_list()


def _http_client(url: str, scenario: str, table: str, dim: int, seconds: float, seed: int) -> list[float]:
    import vecstore

    tbl = vecstore.connect(url).open_table(table)
    search = _search_fn(tbl, scenario)
    queries = _queries("text" if table == "meetings" else "vector", dim, seed)
    search(queries[0])  # the connection is open before the clock starts
    return _run_for(seconds, search, queries)


def _summary(
    name: str, mode: str, clients: int, seconds: float, per_client: list[list[float]]
) -> dict[str, Any]:
    lat = np.concatenate([np.asarray(x) for x in per_client]) * 1e3
    return {
        "scenario": name,
        "via": mode,
        "clients": clients,
        "queries": int(lat.size),
        "qps": round(lat.size / seconds, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 2),
        "p99_ms": round(float(np.percentile(lat, 99)), 2),
    }


def run_http(url: str, scenario: str, table: str, dim: int, clients: int, seconds: float) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    with ctx.Pool(clients) as pool:
        per_client = pool.starmap(
            _http_client, [(url, scenario, table, dim, seconds, s) for s in range(clients)]
        )
    return _summary(scenario, "HTTP (vecstore serve)", clients, seconds, per_client)


def run_embedded(tbl: Any, scenario: str, dim: int, clients: int, seconds: float) -> dict[str, Any]:
    search = _search_fn(tbl, scenario)
    kind = "text" if tbl.config.embedder else "vector"
    per_client: list[list[float]] = [[] for _ in range(clients)]
    search(_queries(kind, dim, 0)[0])  # warm: first use loads the model / compiles kernels

    def work(i: int) -> None:
        per_client[i] = _run_for(seconds, search, _queries(kind, dim, i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return _summary(scenario, "embedded (threads)", clients, seconds, per_client)


def time_cli(args: list[str], repeat: int = 3) -> float:
    walls = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vecstore", *args], check=True, capture_output=True)
        walls.append(time.perf_counter() - t)
    return round(float(np.median(walls)), 2)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(prog="python -m bench.server_load", description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=2, help="client processes (HTTP) / threads (embedded)")
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each scenario")
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--no-text", action="store_true", help="skip the text scenarios (no model)")
    ap.add_argument(
        "--cli", action="store_true", help="also time `vecstore search` on the directory and the URL"
    )
    ap.add_argument("--store", type=Path, default=None, help="build the store here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.rows < 1:
        ap.error("--clients, --seconds and --rows must be positive")

    import vecstore

    work = Path(tempfile.mkdtemp(prefix="vecstore-load-"))
    store = args.store or work / "store"
    text = not args.no_text
    t = time.perf_counter()
    if not (store / "vectors").exists():
        build_store(store, args.rows, args.dim, text)
    print(f"store built in {time.perf_counter() - t:.1f} s: {store}", file=sys.stderr)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = start_server(store, port, work / "server.log")
    results = []
    try:
        scenarios = [("vector", "vectors"), ("vector, 10% filter", "vectors")]
        if text:
            scenarios.append(("text", "meetings"))
        for scenario, table in scenarios:  # HTTP first: this process has not loaded the model yet
            results.append(run_http(url, scenario, table, args.dim, args.clients, args.seconds))
            print(results[-1], file=sys.stderr)
        cli = {}
        if args.cli and text:
            cli["search on the directory (cold: loads torch + model)"] = time_cli(
                ["search", str(store), "meetings", QUESTIONS[0], "-k", "3"]
            )
            cli["search on the server URL"] = time_cli(["search", url, "meetings", QUESTIONS[0], "-k", "3"])
        db = vecstore.connect(store)
        for scenario, table in scenarios:
            results.append(run_embedded(db.open_table(table), scenario, args.dim, args.clients, args.seconds))
            print(results[-1], file=sys.stderr)
    finally:
        server.terminate()
        server.wait(timeout=60)
    report = {
        "rows": args.rows,
        "dim": args.dim,
        "clients": args.clients,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "results": results,
        "cli_s": cli,
    }
    print(format_table(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


def format_table(report: dict[str, Any]) -> str:
    lines = [
        "| scenario | via | clients | queries | q/s | p50 ms | p99 ms |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(report["results"], key=lambda r: (r["scenario"], r["via"])):
        lines.append(
            f"| {r['scenario']} | {r['via']} | {r['clients']} | {r['queries']:,} | {r['qps']:,} | "
            f"{r['p50_ms']} | {r['p99_ms']} |"
        )
    for what, secs in report.get("cli_s", {}).items():
        lines.append(f"\n`vecstore {what}`: {secs} s (median of 3)")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
