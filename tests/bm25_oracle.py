"""BM25 rebuilt from scratch: the oracle keyword search is checked against.

It shares nothing with vecstore's keyword index but the analyzer (tested on its own in
tests/unit/test_text_analyzer.py): it takes the live rows of a version as plain dicts, counts
terms with a ``Counter`` and computes Lucene's BM25 with whole-table statistics, in Python.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from vecstore.text import Analyzer

K1 = 1.2
B = 0.75


def bm25_scores(rows: Iterable[Mapping[str, Any]], columns: Sequence[str], language: str,
                query: str) -> dict[str, float]:
    """Every row id holding a query term -> its BM25 score (rows: every live row)."""
    analyzer = Analyzer(language)
    docs: dict[str, Counter[str]] = {}
    lengths: dict[str, int] = {}
    for r in rows:
        terms: list[str] = []
        for c in columns:
            value = r.get(c)
            if isinstance(value, str) and value:
                terms.extend(analyzer.terms(value))
        docs[r["id"]] = Counter(terms)
        lengths[r["id"]] = len(terms)
    n = len(docs)
    if n == 0:
        return {}
    avgdl = sum(lengths.values()) / n or 1.0
    scores: dict[str, float] = {}
    for term, count in Counter(analyzer.terms(query)).items():
        holding = [d for d, tf in docs.items() if tf[term] > 0]
        df = len(holding)
        idf = math.log(1 + (n - df + 0.5) / (df + 0.5))
        for d in holding:
            tf = docs[d][term]
            norm = K1 * (1 - B + B * lengths[d] / avgdl)
            scores[d] = scores.get(d, 0.0) + count * idf * tf / (tf + norm)
    return scores


def ranking_problems(hits: Sequence[Mapping[str, Any]], want: Mapping[str, float], k: int,
                     allowed: Iterable[str] | None = None, rtol: float = 1e-4) -> list[str]:
    """Why ``hits`` (id, score; best first) is not a top ``k`` of ``want`` restricted to
    ``allowed`` ids (every id when None). Ties may be broken either way; scores are compared
    with a relative tolerance (two code paths never agree to the last bit)."""
    if allowed is not None:
        keep = set(allowed)
        want = {i: s for i, s in want.items() if i in keep}
    out = []
    expected = min(k, len(want))
    if len(hits) != expected:
        out.append(f"{len(hits)} hits, expected {expected}")
    tol = lambda s: rtol * max(1.0, abs(s))  # noqa: E731
    for h in hits:
        if h["id"] not in want:
            out.append(f"hit {h['id']!r} should not be there (no query term, filtered out or deleted)")
        elif abs(h["score"] - want[h["id"]]) > tol(want[h["id"]]):
            out.append(f"hit {h['id']!r} scored {h['score']}, the rebuild says {want[h['id']]}")
    scores = [h["score"] for h in hits]
    if any(a < b - tol(b) for a, b in zip(scores, scores[1:], strict=False)):
        out.append(f"scores are not in descending order: {scores}")
    if hits and len(hits) == expected:
        floor = min(scores)
        got = {h["id"] for h in hits}
        better = [i for i, s in want.items() if i not in got and s > floor + tol(floor)]
        if better:
            out.append(f"rows {sorted(better)[:5]} score above the last hit ({floor}) but are missing")
    return out
