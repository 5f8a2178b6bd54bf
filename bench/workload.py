"""What the side-by-side benchmark asks of every system: the data slice, the filters, the writes,
and the exact answers to compare with.

Everything here is computed once, in the parent process, and written to the work directory
(``setup.json`` + ``truth.npz``) so that every peer's child process gets the same queries, filters
and writes. Vectors come from the :mod:`bench.data` cache; nothing is embedded here.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.common import ADD_BATCH
from bench.data import exact_topk, load_vectors
from bench.peers import Clause, Filter, PeerOptions, month_int

K = 10
SEED = 0


@dataclass(frozen=True)
class Setup:
    """The run's parameters, shared by the parent and every child (``setup.json``)."""

    quick: bool
    data_dir: str
    n: int
    n_queries: int
    n_filter_queries: int
    n_probe: int
    """queries per kind in the writes scenario (updated rows, deleted rows, held-out)."""
    setting_seconds: float
    """a sweep setting runs queries until this much time has passed (at least ``min_queries``)."""
    filter_seconds: float
    min_queries: int
    min_filter_queries: int = 10
    update_fraction: float = 0.05
    delete_fraction: float = 0.05
    k: int = K
    filters: list[dict[str, Any]] = field(default_factory=list)
    synthetic: bool = False
    """seeded random vectors (with the PyPI rows' attributes and texts) instead of MiniLM's."""
    add_batch: int = ADD_BATCH
    query_path: str = "user"

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=1))

    @classmethod
    def load(cls, path: Path) -> Setup:
        return cls(**json.loads(path.read_text()))

    def peer_options(self) -> PeerOptions:
        return PeerOptions(add_batch=self.add_batch, query_path=self.query_path)

    def filter_objects(self) -> list[Filter]:
        return [
            Filter(f["label"], tuple(Clause(c["field"], c["op"], tuple(c["value"])) for c in f["clauses"]))
            for f in self.filters
        ]


SIZES: dict[str, tuple[Any, Any]] = {
    "n_filter_queries": (200, 50),
    "n_probe": (200, 50),
    "setting_seconds": (2.5, 1.0),
    "filter_seconds": (2.0, 1.0),
}
"""Parameters of a full run and of a --quick one."""


def make_setup(args: argparse.Namespace) -> Setup:
    """The setup of ``python -m bench side-by-side`` for its parsed options."""
    sized = {name: values[1 if args.quick else 0] for name, values in SIZES.items()}
    # a smoke run with few rows or queries: no more probes than rows deleted or queries held out
    sized["n_filter_queries"] = min(sized["n_filter_queries"], args.queries)
    sized["n_probe"] = max(1, min(sized["n_probe"], args.queries, int(0.05 * args.n)))
    return Setup(
        quick=args.quick,
        data_dir=str(args.data),
        n=args.n,
        n_queries=args.queries,
        min_queries=30,
        synthetic=args.synthetic,
        add_batch=args.add_batch,
        query_path=args.query_path,
        **sized,
    )


# -- data ------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Data:
    base: np.ndarray
    queries: np.ndarray
    attrs: pa.Table
    """``name``, ``month``, ``month_i``, ``download_rank``."""
    texts: list[str]


def load_data(setup: Setup) -> Data:
    """The first ``n`` rows of the seeded PyPI sample and ``n_queries`` held-out queries
    (:func:`bench.data.load_vectors`: the cached 200,000-row sample when it is there)."""
    sample = load_vectors(Path(setup.data_dir), setup.n, setup.n_queries, synthetic=setup.synthetic)
    a = sample.attrs
    assert a is not None
    months = a.column("month")
    attrs = pa.table(
        {
            "name": a.column("id"),
            "month": months,
            "month_i": pa.array([month_int(m) for m in months.to_pylist()], pa.int32()),
            "download_rank": a.column("download_rank"),
        }
    )
    return Data(
        base=sample.base,
        queries=sample.queries,
        attrs=attrs,
        texts=a.column("text").to_pylist(),
    )


# -- filters ---------------------------------------------------------------------------------


def _pct(x: float) -> str:
    return f"{x:.2%}" if x < 0.01 else f"{x:.1%}"


def _prefix_counts(names: list[str], max_len: int = 4) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in names:
        for i in range(1, min(max_len, len(name)) + 1):
            counts[name[:i]] = counts.get(name[:i], 0) + 1
    return counts


def _closest(counts: dict[str, int], want: float) -> str:
    return min(sorted(counts), key=lambda p: abs(math.log(max(counts[p], 1) / want)))


def pick_filters(attrs: pa.Table) -> list[Filter]:
    """Filters near 50 / 10 / 1 / 0.1 % selectivity on month ranges, download rank and name
    prefixes, plus a conjunction, calibrated on ``attrs`` so that the quick run (20,000 rows)
    gets the same selectivities as the full one."""
    n = attrs.num_rows
    months = np.sort(np.asarray(attrs.column("month").to_pylist(), dtype=object))
    ranks = np.sort(attrs.column("download_rank").drop_null().to_numpy())
    names = attrs.column("name").to_pylist()
    prefixes = _prefix_counts(names)

    def month_window(center: float, width: float) -> tuple[str, str]:
        lo = months[int(max(0.0, center - width / 2) * (n - 1))]
        hi = months[int(min(1.0, center + width / 2) * (n - 1))]
        return str(lo), str(hi)

    m50 = str(months[int(0.5 * n)])
    out: list[tuple[str, tuple[Clause, ...]]] = [
        ("month >= {v}", (Clause("month", "ge", (m50,)),)),
        ("month in {v}", (Clause("month", "between", month_window(0.3, 0.1)),)),
        ("name prefix {v}", (Clause("name", "prefix", (_closest(prefixes, 0.1 * n),)),)),
        (
            "download_rank <= {v}",
            (Clause("download_rank", "le", (int(ranks[max(0, round(0.01 * n) - 1)]),)),),
        ),
        ("month in {v}", (Clause("month", "between", month_window(0.05, 0.01)),)),
        ("name prefix {v}", (Clause("name", "prefix", (_closest(prefixes, 0.01 * n),)),)),
        (
            "download_rank <= {v}",
            (Clause("download_rank", "le", (int(ranks[max(0, round(0.001 * n) - 1)]),)),),
        ),
        ("name prefix {v}", (Clause("name", "prefix", (_closest(prefixes, 0.001 * n),)),)),
    ]
    # conjunction: the newer half AND a prefix, about 1% in all
    newer = np.asarray(
        pc.fill_null(pc.greater_equal(attrs.column("month"), m50), False).to_numpy(zero_copy_only=False),
        dtype=bool,
    )
    conj_counts = _prefix_counts([nm for nm, keep in zip(names, newer, strict=True) if keep], max_len=3)
    p = _closest(conj_counts, 0.01 * n)
    out.append(
        ("month >= {m} AND name prefix {p}", (Clause("month", "ge", (m50,)), Clause("name", "prefix", (p,))))
    )

    filters = []
    for template, clauses in out:
        v = [x if isinstance(x, int) else f"'{x}'" for x in clauses[0].value]
        shown = f"{v[0]}" if len(v) == 1 else f"{v[0]}..{v[1]}"
        label = template.format(v=shown, m=f"'{m50}'", p=f"'{p}'")
        flt = Filter(label, clauses)
        sel = float(flt.mask(attrs).mean())
        filters.append(Filter(f"{label} ({_pct(sel)})", clauses))
    return filters


def filters_json(filters: list[Filter]) -> list[dict[str, Any]]:
    return [{"label": f.label, "clauses": [asdict(c) for c in f.clauses]} for f in filters]


# -- writes ----------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Writes:
    """10% of the rows change: ``updated`` get ``new_vectors`` (attributes unchanged), ``deleted``
    go away. ``probes`` are the queries asked afterwards: the new vector of an updated row (it
    must come back), the old vector of a deleted row (it must not), and held-out queries."""

    updated: np.ndarray
    new_vectors: np.ndarray
    deleted: np.ndarray
    probes: np.ndarray
    probe_kind: np.ndarray  # 0 updated-row probe, 1 deleted-row probe, 2 held-out query
    probe_row: np.ndarray  # the updated / deleted row a probe is about (-1 for held-out)


def plan_writes(setup: Setup, data: Data) -> Writes:
    rng = np.random.default_rng(SEED + 1)
    n = setup.n
    perm = rng.permutation(n)
    n_upd, n_del = int(setup.update_fraction * n), int(setup.delete_fraction * n)
    updated = np.sort(perm[:n_upd])
    deleted = np.sort(perm[n_upd : n_upd + n_del])
    # the new vector lies half-way to another row's: an edited summary, not a copy of another row
    partner = rng.integers(0, n, n_upd)
    mixed = 0.5 * np.asarray(data.base[updated], dtype=np.float32) + 0.5 * np.asarray(data.base[partner])
    new_vectors = (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)
    p = setup.n_probe
    pu = rng.choice(n_upd, p, replace=False)
    pd = rng.choice(deleted, p, replace=False)
    probes = np.concatenate([new_vectors[pu], np.asarray(data.base[pd]), np.asarray(data.queries[:p])])
    kind = np.repeat(np.arange(3), p)
    row = np.concatenate([updated[pu], pd, np.full(p, -1)])
    return Writes(updated, new_vectors, deleted, probes.astype(np.float32), kind, row)


def vectors_after(data: Data, writes: Writes) -> tuple[np.ndarray, np.ndarray]:
    """The table after the writes: ``(vectors, live)``; deleted rows keep a slot, marked dead."""
    base = np.array(data.base, dtype=np.float32)
    base[writes.updated] = writes.new_vectors
    live = np.ones(len(base), dtype=bool)
    live[writes.deleted] = False
    return base, live


# -- exact answers ---------------------------------------------------------------------------


def kth_scores(base: np.ndarray, queries: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """The exact k-th best score of each query over ``base[rows]`` (all rows when None); -inf when
    fewer than k rows."""
    sub = base if rows is None else base[rows]
    if len(sub) == 0:
        return np.full(len(queries), -np.inf, dtype=np.float32)
    scores, _ = exact_topk(sub, queries, k)
    kk = min(k, len(sub))
    return scores[:, kk - 1].astype(np.float32)


def compute_truth(setup: Setup, data: Data, filters: list[Filter]) -> dict[str, np.ndarray]:
    k = setup.k
    truth: dict[str, np.ndarray] = {"kth": kth_scores(data.base, data.queries, k)}
    fq = data.queries[: setup.n_filter_queries]
    filt_kth, matches = [], []
    for flt in filters:
        rows = np.flatnonzero(flt.mask(data.attrs))
        matches.append(len(rows))
        filt_kth.append(kth_scores(data.base, fq, k, rows))
    truth["filter_kth"] = np.stack(filt_kth)
    truth["filter_matches"] = np.array(matches)
    writes = plan_writes(setup, data)
    after, live = vectors_after(data, writes)
    truth["probe_kth"] = kth_scores(after, writes.probes, k, np.flatnonzero(live))
    return truth
