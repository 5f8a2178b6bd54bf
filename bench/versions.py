"""The cost of one small write as a table's history grows, and what cleanup gives back.

    python -m bench versions                     # 2,000 single-row adds over 1,000 rows
    python -m bench versions --quick             # 300 adds
    python -m bench versions --delete-every 10   # a delete by id after every 10th add too

A table of ``--rows`` seeded rows (``--dim``) takes ``--adds`` single-row ``Table.add`` calls,
each a new version; every call is timed (wall and CPU of this process). The report compares
the median over ``--window`` adds starting at the 10th with the median over the last
``--window`` adds: the ratio last / 10th is what "the cost of a small add is flat" promises
(issue 17: within 20% from the 10th to the 2,000th version). It also gives the segments and
manifest size of the newest version, the table's bytes on disk before and after
``cleanup(older_than=0)``, and the bytes of a fresh table holding the same rows (written once,
with the same index, if any).

Medians over windows, because the machine is shared: one add can wait on the scheduler. The
CPU time is reported beside the wall time for the same reason.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import ScenarioParser, log, machine_line, markdown_table, write_json


def configure(ap: ScenarioParser) -> None:
    ap.add_sized("--adds", type=int, full=2000, quick=300, help="single-row adds, one version each")
    ap.add_argument("--rows", type=int, default=1000, help="rows in the table before the adds")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--window", type=int, default=50, help="adds per median (at the 10th, at the end)")
    ap.add_argument("--delete-every", type=int, default=0,
                    help="also delete one row by id after every N-th add (0: never)")
    ap.add_argument("--index", default=None, help="build this index kind after the seed rows")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", action="store_true", help="keep the temporary store")


def du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def run(args: argparse.Namespace) -> int:
    """Time every add; print the markdown section."""
    import vecstore

    if args.adds < 10 + 2 * args.window:
        raise SystemExit(f"--adds {args.adds} is too few for two windows of {args.window} from the "
                         f"10th add; use at least {10 + 2 * args.window}")
    rng = np.random.default_rng(args.seed)
    root = Path(tempfile.mkdtemp(prefix="bench-versions-"))
    try:
        tbl = vecstore.connect(root / "a").create_table("t", dim=args.dim)
        seed_rows = [{"id": f"s{i}", "vector": v, "n": i}
                     for i, v in enumerate(rng.normal(size=(args.rows, args.dim)).astype(np.float32))]
        tbl.add(seed_rows)
        if args.index:
            tbl.create_index(args.index, progress=False)
        first_version = tbl.version
        vectors = rng.normal(size=(args.adds, args.dim)).astype(np.float32)
        wall: list[float] = []
        cpu: list[float] = []
        t0 = time.perf_counter()
        for i in range(args.adds):
            row = [{"id": f"a{i}", "vector": vectors[i], "n": args.rows + i}]
            w, c = time.perf_counter(), time.process_time()
            tbl.add(row)
            wall.append(time.perf_counter() - w)
            cpu.append(time.process_time() - c)
            if args.delete_every and (i + 1) % args.delete_every == 0:
                tbl.delete(ids=[f"s{i}"])
            if (i + 1) % 250 == 0:
                log(f"{i + 1} adds, version {tbl.version}, {time.perf_counter() - t0:.0f} s")
        total = time.perf_counter() - t0
        from vecstore.storage.manifest import manifest_path, read_manifest

        segments = len(read_manifest(tbl.path, tbl.version).segments)
        manifest_bytes = manifest_path(tbl.path, tbl.version).stat().st_size
        grown = du(tbl.path)
        versions_before = len(tbl.versions())
        report = tbl.cleanup(older_than=0)
        cleaned = du(tbl.path)
        fresh = vecstore.connect(root / "b").create_table(
            "t", dim=args.dim, data=tbl.to_arrow(with_vectors=True))
        if args.index:
            fresh.create_index(args.index, progress=False)
        base = du(fresh.path)
        tbl.optimize(progress=False, cleanup_older_than=0)
        optimized = du(tbl.path)

        def window(values: list[float], start: int) -> float:
            return statistics.median(values[start:start + args.window])

        early, late = 9, args.adds - args.window  # the 10th add is index 9
        figures: dict[str, Any] = {
            "adds": args.adds, "rows": args.rows, "dim": args.dim, "window": args.window,
            "delete_every": args.delete_every, "index": args.index,
            "first_version": first_version, "last_version": tbl.version,
            "wall_ms_at_10th": 1e3 * window(wall, early), "wall_ms_at_end": 1e3 * window(wall, late),
            "cpu_ms_at_10th": 1e3 * window(cpu, early), "cpu_ms_at_end": 1e3 * window(cpu, late),
            "total_s": total, "segments": segments, "manifest_bytes": manifest_bytes,
            "versions_before_cleanup": versions_before, "bytes_before_cleanup": grown,
            "bytes_after_cleanup": cleaned, "bytes_after_optimize": optimized,
            "bytes_fresh": base, "cleanup": report.to_json(),
        }
        figures["wall_ratio"] = figures["wall_ms_at_end"] / figures["wall_ms_at_10th"]
        figures["cpu_ratio"] = figures["cpu_ms_at_end"] / figures["cpu_ms_at_10th"]
        print(section(args, figures))
        write_json(args.json, figures)
    finally:
        if args.keep:
            print(f"(store kept in {root})")
        else:
            shutil.rmtree(root, ignore_errors=True)
    return 0


def section(args: argparse.Namespace, f: dict[str, Any]) -> str:
    w = args.window
    rows = [
        ["one add, wall (median ms)", f"{f['wall_ms_at_10th']:.2f}", f"{f['wall_ms_at_end']:.2f}",
         f"{f['wall_ratio']:.2f}"],
        ["one add, CPU (median ms)", f"{f['cpu_ms_at_10th']:.2f}", f"{f['cpu_ms_at_end']:.2f}",
         f"{f['cpu_ratio']:.2f}"],
    ]
    disk = [
        ["after the adds", f"{f['bytes_before_cleanup']:,}", f"{f['versions_before_cleanup']:,} versions"],
        ["after cleanup(older_than=0)", f"{f['bytes_after_cleanup']:,}",
         f"{f['cleanup']['files_removed']:,} files removed"],
        ["after optimize(cleanup_older_than=0)", f"{f['bytes_after_optimize']:,}", "one segment"],
        ["a fresh table with the same rows", f"{f['bytes_fresh']:,}", ""],
    ]
    return "\n".join([
        f"### Small writes across {f['adds']:,} versions ({f['rows']:,} rows, dim {f['dim']}"
        f"{', a delete every ' + str(f['delete_every']) + ' adds' if f['delete_every'] else ''}"
        f"{', index ' + f['index'] if f['index'] else ''})",
        "",
        f"Command: `{args.command}`.",
        "",
        markdown_table(["", f"adds 10-{9 + w}", f"adds {f['adds'] - w + 1}-{f['adds']}", "ratio"], rows),
        "",
        f"Newest version: {f['segments']} segments, a {f['manifest_bytes']:,}-byte manifest; "
        f"{f['total_s']:.0f} s for every add.",
        "",
        markdown_table(["table on disk", "bytes", ""], disk),
        "",
        machine_line(),
    ])


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit("run it as `python -m bench versions`")
