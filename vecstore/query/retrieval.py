"""Keyword and hybrid search, one hit per group, and reranking, for one query.

The executor hands every query that is not a plain vector search here, with the filter already
evaluated (``rows``: the sorted live rows that match it, or None without a filter). Every
ranker is restricted to those rows *before* it ranks, so a filter never empties a result that
enough matching rows could fill, and never lets a row outside it through:

- keyword: BM25 (:mod:`.keyword`) of every matching row that holds a query term;
- vector: the planner's vector search among the matching rows (scan or index, as for
  ``tbl.search(vector)``), asked for ``candidates`` rows;
- hybrid: both, fused (:mod:`.fusion`) over the union of their candidates.

``group_by(column)`` keeps the best ``per_group`` rows of each of the best ``k`` groups
(group-major: the best group's rows first). When the candidates hold fewer than ``k`` groups the
vector ranker is asked for four times as many, until ``k`` groups are found or every matching
row has been ranked; BM25 ranks every matching row at once. ``rerank`` re-scores the best
``candidates`` rows (with grouping: the best rows of the best groups) and orders them by its
scores.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from ..config import Combine
from ..errors import InvalidArgumentError
from ..storage.snapshot import Snapshot
from . import deadline
from .fusion import DEFAULT_FUSION, Ranking, candidates_for, describe, fuse
from .keyword import KeywordView
from .multivector import make_scorer
from .rerank import DEFAULT_CANDIDATES, Candidates
from .results import Hits, Plan, RankerPlan, Stage, Strategy
from .spec import QuerySpec, SearchMode

I64 = npt.NDArray[np.int64]
F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]


class Runner(Protocol):
    """What this module needs of the executor."""

    def keyword_view(self, snap: Snapshot) -> KeywordView: ...

    def search_vector(self, snap: Snapshot, query: F32, k: int, rows: I64 | None,
                      stages: list[Stage], oversample: int | None, exact: bool,
                      combine: Combine | None = None) -> tuple[I64, F32, Plan]: ...


class _Ranked:
    """An ordered list of candidate rows, and what produced it."""

    def __init__(self, rows: I64, scores: F64, exhausted: bool, stages: list[Stage],
                 rankers: tuple[RankerPlan, ...], vector_plan: Plan | None) -> None:
        self.rows, self.scores, self.exhausted = rows, scores, exhausted
        self.stages, self.rankers, self.vector_plan = stages, rankers, vector_plan


def best(rows: I64, scores: F64, n: int) -> tuple[I64, F64]:
    """The ``n`` best rows, best first; ties go to the lower row."""
    if n <= 0 or rows.size == 0:
        return rows[:0], scores[:0]
    if n < rows.size:
        threshold = -np.partition(-scores, n - 1)[n - 1]
        keep = np.flatnonzero(scores >= threshold)
        rows, scores = rows[keep], scores[keep]
    order = np.lexsort((rows, -scores))[:n]
    return rows[order], scores[order]


def dense_scores(snap: Snapshot, query: F32, rows: I64, combine: Combine | None = None) -> F64:
    """Exact vector scores of arbitrary global ``rows``, in their order (on a multi-vector
    table, its vectors' scores combined as ``combine`` says; None: the table's combination)."""
    out = np.empty(rows.size)
    if rows.size == 0:
        return out
    order = np.argsort(rows, kind="stable")
    scorer = make_scorer(snap, query, combine)
    values, at = np.empty(rows.size), 0
    for s, local in snap.split(rows[order]):
        values[at:at + local.size] = scorer.exact(s, local)
        at += local.size
    out[order] = values
    return out


def run_retrieval(ex: Runner, snap: Snapshot, spec: QuerySpec, rows: I64 | None,
                  filter_stages: list[Stage], columns: list[str]) -> Hits:
    """Answer a keyword, hybrid, grouped or reranked query (see the module docstring)."""
    k = spec.k
    group, rr = spec.group_by, spec.rerank
    per_group = group.per_group if group else 1
    pool = max(k, rr.candidates if rr else 0)  # rows wanted before the final cut
    groups_wanted = max(k, math.ceil(pool / per_group)) if group else 0
    depth = _first_depth(spec, pool, per_group)
    while True:
        deadline.check("ranking")
        ranked = _rank(ex, snap, spec, rows, depth)
        if group is None or k == 0:
            break
        t = time.perf_counter()
        keys = group_keys(snap, ranked.rows, group.column)
        found = len(dict.fromkeys(keys))
        ranked.stages.append(Stage(f"group by {group.column}", ranked.rows.size, found,
                                   time.perf_counter() - t))
        if found >= groups_wanted or ranked.exhausted:
            break
        depth *= 4
    out_rows, out_scores = ranked.rows, ranked.scores
    notes: list[str] = []
    if group is not None:  # the best rows of the groups wanted (k, or the reranker's pool)
        out_rows, out_scores = _grouped(out_rows, out_scores, keys, groups_wanted, per_group)
    elif rr is not None:
        out_rows, out_scores = out_rows[:pool], out_scores[:pool]
    if rr is not None and k > 0:
        deadline.check("reranking")
        out_rows, out_scores = _reranked(snap, spec, out_rows, out_scores, ranked.stages)
        if group is not None:
            keys = group_keys(snap, out_rows, group.column)
            out_rows, out_scores = _grouped(out_rows, out_scores, keys, k, per_group)
    if group is None:
        out_rows, out_scores = out_rows[:k], out_scores[:k]
    plan = _plan(snap, spec, rows, filter_stages, ranked, notes)
    return Hits(out_rows, out_scores.astype(np.float32), plan, columns, snap)


def _first_depth(spec: QuerySpec, pool: int, per_group: int) -> int:
    if spec.mode is SearchMode.HYBRID:
        base = candidates_for(spec.fusion or DEFAULT_FUSION, pool)
    else:
        base = pool
    return max(base, 4 * pool * per_group) if spec.group_by else base


def _rank(ex: Runner, snap: Snapshot, spec: QuerySpec, rows: I64 | None, depth: int) -> _Ranked:
    stages: list[Stage] = []
    if spec.mode is SearchMode.VECTOR:
        assert spec.vectors is not None
        found, found_scores, plan = ex.search_vector(snap, spec.vectors[0], depth, rows, [],
                                                     spec.oversample, spec.exact, spec.combine)
        stages.extend(plan.stages)
        return _Ranked(found, found_scores.astype(np.float64), found.size < depth, stages, (), plan)
    assert spec.text is not None
    view = ex.keyword_view(snap)
    kw = view.score(spec.text)
    total = kw.rows.size
    kw = kw.restricted(rows)
    stages.append(Stage("bm25", total, kw.rows.size, kw.seconds))
    kw_plan = RankerPlan("keyword (bm25)", kw.rows.size, kw.seconds,
                         f"{kw.describe()}; live rows {view.live_rows:,}, "
                         f"average length {view.avg_length:.1f} terms")
    if spec.mode is SearchMode.KEYWORD:
        t = time.perf_counter()
        ordered, scores = best(kw.rows, kw.scores, kw.rows.size if spec.group_by else depth)
        stages.append(Stage("top-k", kw.rows.size, ordered.size, time.perf_counter() - t))
        return _Ranked(ordered, scores, True, stages, (kw_plan,), None)
    assert spec.vectors is not None
    query = spec.vectors[0]
    fusion = spec.fusion or DEFAULT_FUSION
    t = time.perf_counter()
    found, vscores, vplan = ex.search_vector(snap, query, depth, rows, [], spec.oversample, spec.exact,
                                             spec.combine)
    vseconds = time.perf_counter() - t
    stages.append(Stage(f"vector ({vplan.strategy.value})", vplan.candidates, found.size, vseconds))
    v_plan = RankerPlan("vector", found.size, vseconds, f"{vplan.strategy.value} ({vplan.reason})", vplan)
    t = time.perf_counter()
    kw_rows, kw_scores = best(kw.rows, kw.scores, depth)
    fused_rows, fused = fuse(
        fusion,
        Ranking("vector", found, vscores.astype(np.float64),
                lambda r: dense_scores(snap, query, r, spec.combine)),
        Ranking("keyword", kw_rows, kw_scores, kw.score_of))
    stages.append(Stage(f"fusion ({fusion.kind})", found.size + kw_rows.size, fused_rows.size,
                        time.perf_counter() - t))
    kw_plan = replace(kw_plan, candidates=kw_rows.size)
    exhausted = found.size < depth and kw_rows.size == kw.rows.size
    return _Ranked(fused_rows, fused, exhausted, stages, (v_plan, kw_plan), vplan)


def group_keys(snap: Snapshot, rows: I64, column: str) -> list[Any]:
    """Each row's group: its value of ``column`` (lists as tuples); a null is a group of its own."""
    values = [r[column] for r in snap.rows_as_dicts(rows, [column])]
    return [("\x00null", int(r)) if v is None else tuple(v) if isinstance(v, list) else v
            for v, r in zip(values, rows.tolist(), strict=True)]


def _grouped(rows: I64, scores: F64, keys: list[Any], n_groups: int, per_group: int
             ) -> tuple[I64, F64]:
    """The best ``per_group`` rows of each of the ``n_groups`` best groups, group-major."""
    members: dict[Any, list[int]] = {}
    for i, key in enumerate(keys):
        got = members.get(key)
        if got is None:
            if len(members) == n_groups:
                continue
            members[key] = [i]
        elif len(got) < per_group:
            got.append(i)
    pick = np.fromiter((i for m in members.values() for i in m), dtype=np.int64)
    return rows[pick], scores[pick]


def _texts(snap: Snapshot, rows: I64, column: str | None) -> list[str]:
    names = set(snap.manifest.schema.names)
    cols = [column] if column else [c for c in snap.manifest.config.keyword.columns if c in names]
    if not cols:
        raise InvalidArgumentError(
            "the reranker reads the rows' text, but the table holds none of its keyword columns "
            f"{list(snap.manifest.config.keyword.columns)}; pass rerank(..., column=...)")
    out = []
    for r in snap.rows_as_dicts(rows, cols):
        out.append("\n".join(str(r[c]) for c in cols if r[c] is not None))
    return out


def _reranked(snap: Snapshot, spec: QuerySpec, rows: I64, scores: F64, stages: list[Stage]
              ) -> tuple[I64, F64]:
    assert spec.rerank is not None
    t = time.perf_counter()
    query_vector = spec.vectors[0] if spec.vectors is not None else None
    c = Candidates(query=spec.text, query_vector=query_vector, rows=rows,
                   texts=lambda: _texts(snap, rows, spec.rerank.column if spec.rerank else None),
                   vectors=lambda: snap.gather_vectors(rows))
    new = spec.rerank.reranker.score(c) if rows.size else np.empty(0)
    order = np.lexsort((np.arange(rows.size), -new))  # ties keep the first ranking's order
    stages.append(Stage("rerank", rows.size, rows.size, time.perf_counter() - t))
    return rows[order], new[order]


def _plan(snap: Snapshot, spec: QuerySpec, rows: I64 | None, filter_stages: list[Stage],
          ranked: _Ranked, notes: list[str]) -> Plan:
    extra: dict[str, Any] = dict(
        mode=spec.mode.value, rankers=ranked.rankers,
        group_by=None if spec.group_by is None else
        f"{spec.group_by.column} (per group {spec.group_by.per_group})",
        rerank=None if spec.rerank is None else
        f"{spec.rerank.reranker.name} over the best {spec.rerank.candidates}")
    stages = tuple(filter_stages) + tuple(ranked.stages)
    matches = None if rows is None else int(rows.size)
    if spec.mode is SearchMode.VECTOR and ranked.vector_plan is not None:
        p = ranked.vector_plan
        return replace(p, stages=stages, k=spec.k, filter=spec.where, matches=matches,
                       notes=p.notes + tuple(notes), **extra)
    if spec.mode is SearchMode.KEYWORD:
        return Plan(strategy=Strategy.KEYWORD, reason="BM25 over the postings, statistics of the "
                    "table's live rows", table_rows=snap.num_rows, k=spec.k, oversample=0,
                    filter=spec.where, matches=matches, stages=stages, notes=tuple(notes), **extra)
    fusion = spec.fusion or DEFAULT_FUSION
    return Plan(strategy=Strategy.HYBRID, reason=f"vector and keyword rankings fused by "
                f"{describe(fusion)}", table_rows=snap.num_rows, k=spec.k,
                oversample=ranked.vector_plan.oversample if ranked.vector_plan else 0,
                filter=spec.where, matches=matches, stages=stages, notes=tuple(notes),
                fusion=describe(fusion), **extra)


__all__ = ["DEFAULT_CANDIDATES", "Runner", "best", "dense_scores", "group_keys", "run_retrieval"]
