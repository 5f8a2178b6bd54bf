"""What a merge costs in memory, and how an add's latency behaves over a long run of adds, for two
checkouts of vecstore side by side (say main's and a branch's): the code under test is whatever
``vecstore`` each repository holds, imported in a fresh process per measurement.

1. **Merge.** A table of segments of 2^(k-1), 2^(k-2), ..., 2^13 rows of 384-d vectors derived
   from the real MiniLM PyPI vectors (as ``bench/scale.py`` derives them) is built once; each
   measurement copies it (segment files hard-linked: they are immutable) and adds 8,192 rows in
   a fresh process, which carries the writer's binary counter: every segment is merged into one
   of 2^k rows. Measured in that process: the add's wall time, the peak resident memory
   (``VmHWM``), and the peaks of anonymous and file-backed resident memory sampled every 10 ms
   (``RssAnon``, ``RssFile``: file pages are the page cache's, clean and reclaimable; anonymous
   memory is what the OOM killer counts). The repositories alternate: A, B, A, B, ...
2. **Adds.** One fresh process per repository, each adding ``--adds`` batches of ``--add-rows``
   rows to its own new table; the two processes take turns (one add each, A then B), so they
   see the same load. Each add's wall time and the rows it wrote (the new segment's rows:
   the batch plus whatever it merged) are recorded.

``python -m bench.merge_memory --store DIR --repos /work/main . [--merge-log2 20] [--rounds 2]
[--adds 96 --add-rows 8192] [--cap-mib 128]`` (``--cap-mib`` sets the merge cap of a repository
that has one, ``vecstore.storage.writer.MAX_MERGED_SEGMENT_BYTES``, so the cap shows within a
short run; main has none). Not collected by pytest; prints JSON lines and a summary.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import DEFAULT_DATA_DIR, log

DIM = 384
SOURCE_ROWS = 64_000
TAIL_ROWS = 8192
_ENV = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}  # imports compile once, not every run

_SAMPLER = r"""
import threading, time
PEAK = {"RssAnon": 0, "RssFile": 0}
def _sample(stop):
    while not stop.is_set():
        with open("/proc/self/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in PEAK:
                    PEAK[key] = max(PEAK[key], int(line.split()[1]) * 1024)
        time.sleep(0.01)
def status(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return -1
"""

_MERGE_CHILD = _SAMPLER + r"""
import json, sys
repo, store, tail = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, repo)
import numpy as np, pyarrow as pa
import vecstore
assert vecstore.__file__.startswith(repo), vecstore.__file__
x = np.load(tail)
rows = pa.table({"id": [f"tail{i}" for i in range(len(x))], "category": pa.array(np.arange(len(x)) % 10),
                 "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])})
tbl = vecstore.connect(store).open_table("t")
before = [e.rows for e in tbl._current().manifest.segments]
hwm_before = status("VmHWM")
stop = threading.Event(); th = threading.Thread(target=_sample, args=(stop,), daemon=True); th.start()
t = time.perf_counter()
tbl.add(rows)
wall = time.perf_counter() - t
stop.set(); th.join()
after = [e.rows for e in tbl._current().manifest.segments]
print(json.dumps({"repo": repo, "wall_s": wall, "segments_before": before, "segments_after": after,
                  "VmHWM_before": hwm_before, "VmHWM": status("VmHWM"),
                  "peak_RssAnon": PEAK["RssAnon"], "peak_RssFile": PEAK["RssFile"]}))
"""

_ADDS_CHILD = r"""
import json, sys, time
repo, store, source, add_rows, adds, cap = sys.argv[1:7]
sys.path.insert(0, repo)
import numpy as np, pyarrow as pa
import vecstore
from vecstore.storage import writer
assert vecstore.__file__.startswith(repo), vecstore.__file__
if int(cap) and hasattr(writer, "MAX_MERGED_SEGMENT_BYTES"):
    writer.MAX_MERGED_SEGMENT_BYTES = int(cap) << 20
src = np.load(source)
add_rows, adds = int(add_rows), int(adds)
tbl = vecstore.connect(store).create_table("t", dim=src.shape[1])
for b in range(adds):
    sys.stdin.readline()  # the parent's turn signal
    start = b * add_rows
    rng = np.random.default_rng([0, b])
    x = src[np.arange(start, start + add_rows) % len(src)].astype(np.float32)
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(0.3 / np.sqrt(x.shape[1]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rows = pa.table({"id": [f"v{i}" for i in range(start, start + add_rows)],
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), x.shape[1])})
    old = {e.data.path for e in tbl._current().manifest.segments}
    t = time.perf_counter()
    tbl.add(rows)
    wall = time.perf_counter() - t
    tbl.cleanup(older_than=0)
    segs = tbl._current().manifest.segments
    wrote = sum(e.rows for e in segs if e.data.path not in old)
    print(json.dumps({"add": b, "wall_s": wall, "rows_written": wrote, "segments": len(segs),
                      "rows": len(tbl)}), flush=True)
"""


def _derived(source: np.ndarray, start: int, stop: int, rng: np.random.Generator) -> np.ndarray:
    x = source[np.arange(start, stop) % len(source)].astype(np.float32)
    x += rng.standard_normal(x.shape, dtype=np.float32) * np.float32(0.3 / np.sqrt(x.shape[1]))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def build_base(root: Path, source: np.ndarray, log2: int) -> Path:
    """The table whose next add of 8,192 rows merges everything into 2^``log2`` rows (built
    once with the running checkout, which then merges nothing: each add is half the last)."""
    import pyarrow as pa

    import vecstore

    base = root / "base"
    if (root / "base.done").exists():
        return base
    shutil.rmtree(base, ignore_errors=True)
    tbl = vecstore.connect(base).create_table("t", dim=DIM)
    start = 0
    for k in range(log2 - 1, 12, -1):
        x = _derived(source, start, start + (1 << k), np.random.default_rng([1, k]))
        tbl.add(pa.table({"id": [f"v{i}" for i in range(start, start + len(x))],
                          "category": pa.array(np.arange(len(x)) % 10),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM)}))
        start += len(x)
        log(f"  base: {start:,} rows, {len(tbl)} rows in the table")
    (root / "base.done").write_text(str(start))
    return base


def _copy(base: Path, dest: Path) -> None:
    """``base`` copied to ``dest``, its segment files hard-linked (immutable)."""
    shutil.rmtree(dest, ignore_errors=True)

    def link_or_copy(src: str, dst: str) -> str:
        if f"{os.sep}data{os.sep}" in src:
            os.link(src, dst)
            return dst
        return shutil.copy2(src, dst)

    shutil.copytree(base, dest, copy_function=link_or_copy)


def merges(args: argparse.Namespace, root: Path, source: np.ndarray) -> list[dict[str, Any]]:
    base = build_base(root, source, args.merge_log2)
    tail = root / "tail.npy"
    np.save(tail, _derived(source, 10_000_000, 10_000_000 + TAIL_ROWS, np.random.default_rng(2)))
    out = []
    for r in range(args.rounds):
        for repo in args.repos:
            work = root / "merge_run"
            _copy(base, work)
            proc = subprocess.run([sys.executable, "-c", _MERGE_CHILD, str(repo), str(work), str(tail)],
                                  capture_output=True, text=True, env=_ENV)
            shutil.rmtree(work, ignore_errors=True)
            if proc.returncode:
                res = {"repo": str(repo), "error": proc.returncode, "stderr": proc.stderr[-2000:]}
            else:
                res = json.loads(proc.stdout.strip().splitlines()[-1])
            res["round"] = r
            print(json.dumps(res), flush=True)
            out.append(res)
    return out


def adds(args: argparse.Namespace, root: Path, source: np.ndarray) -> dict[str, list[dict[str, Any]]]:
    src = root / "source.npy"
    np.save(src, source)
    procs = {}
    for i, repo in enumerate(args.repos):
        store = root / f"adds_{i}"
        shutil.rmtree(store, ignore_errors=True)
        procs[str(repo)] = subprocess.Popen(
            [sys.executable, "-c", _ADDS_CHILD, str(repo), str(store), str(src), str(args.add_rows),
             str(args.adds), str(args.cap_mib)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            env=_ENV)
    results: dict[str, list[dict[str, Any]]] = {r: [] for r in procs}
    for _ in range(args.adds):
        for repo, proc in procs.items():  # one add each in turn: the same load for both
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            res = json.loads(line)
            res["repo"] = repo
            print(json.dumps(res), flush=True)
            results[repo].append(res)
    for proc in procs.values():
        proc.wait()
    for i in range(len(args.repos)):
        shutil.rmtree(root / f"adds_{i}", ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--repos", type=Path, nargs="+", required=True)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--merge-log2", type=int, default=20, help="the merged segment holds 2^this rows")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--adds", type=int, default=0, help="adds in the latency run (0: skip it)")
    ap.add_argument("--add-rows", type=int, default=8192)
    ap.add_argument("--cap-mib", type=int, default=0)
    ap.add_argument("--skip-merge", action="store_true")
    args = ap.parse_args(argv)
    args.repos = [p.resolve() for p in args.repos]
    from bench.data import load_vectors

    source = np.array(load_vectors(args.data, SOURCE_ROWS, 1, attrs=False).base, dtype=np.float32)
    args.store.mkdir(parents=True, exist_ok=True)
    if not args.skip_merge:
        res = merges(args, args.store, source)
        for repo in args.repos:
            mine = [r for r in res if r["repo"] == str(repo) and "error" not in r]
            if mine:
                med = {k: statistics.median(r[k] for r in mine)
                       for k in ("wall_s", "VmHWM", "peak_RssAnon", "peak_RssFile")}
                log(f"merge {repo}: {len(mine)} runs, median add {med['wall_s']:.1f} s, VmHWM "
                    f"{med['VmHWM'] / 2**30:.2f} GiB, peak anon {med['peak_RssAnon'] / 2**30:.2f} GiB, "
                    f"peak file {med['peak_RssFile'] / 2**30:.2f} GiB")
    if args.adds:
        t = time.perf_counter()
        res2 = adds(args, args.store, source)
        for repo, rows in res2.items():
            third = max(1, len(rows) // 3)
            parts = [rows[:third], rows[third:2 * third], rows[2 * third:]]
            desc = "; ".join(
                f"adds {p[0]['add']}-{p[-1]['add']}: median "
                f"{statistics.median(r['wall_s'] for r in p):.2f} s, "
                f"max {max(r['wall_s'] for r in p):.2f} s, "
                f"max rows written {max(r['rows_written'] for r in p):,}"
                for p in parts if p)
            log(f"adds {repo}: {desc}")
        log(f"latency run {time.perf_counter() - t:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
