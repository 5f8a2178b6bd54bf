"""Comparing search results that come from two different code paths.

Two paths that compute the same score with different kernels (the Numba row-gather kernel with
reassociated sums, BLAS ``vectors @ q``, FAISS, a NumPy oracle) agree only up to float32 rounding,
and which way the last bits fall depends on the CPU and the BLAS build. Compare their results
with :func:`assert_same_hits`; keep ``==`` for results the same path must reproduce bit for bit
(the same call twice, a reopened store, stored vectors). See tests/README.md.
"""

from __future__ import annotations

from typing import Any

import numpy as np

RTOL = 1e-5
"""Default relative tolerance: float32 sums of a few hundred terms in another order."""
ATOL = 1e-6
"""Default absolute tolerance, for scores near zero (cosines of unrelated vectors)."""


def _normalise(hits: Any) -> tuple[list[Any], np.ndarray, dict[Any, dict[str, Any]] | None]:
    """(ids, float64 scores, {id: other fields} or None) from a Hits, a list of hit dicts, or an
    ``(ids, scores)`` pair."""
    if isinstance(hits, tuple) and len(hits) == 2:
        ids, scores = hits
        return list(ids), np.asarray(scores, dtype=np.float64).reshape(-1), None
    rows = hits.to_list() if hasattr(hits, "to_list") else list(hits)
    ids = [r["id"] for r in rows]
    scores = np.array([r["score"] for r in rows], dtype=np.float64)
    payload = {r["id"]: {key: v for key, v in r.items() if key != "score"} for r in rows}
    return ids, scores, payload


def assert_same_hits(got: Any, want: Any, *, rtol: float = RTOL, atol: float = ATOL) -> None:
    """``got`` and ``want`` are the same result, computed by two code paths.

    Each is a :class:`vecstore.Hits`, a list of hit dicts (``to_list()``) or an ``(ids, scores)``
    pair, best first. They agree when:

    * they have the same length, and no id twice;
    * scores agree position by position within ``rtol``/``atol``;
    * an id found by both has the same score (within tolerance) in both, and its other fields
      are equal exactly (they are stored values, not computed ones);
    * ids appear in the same order, except that rows whose scores tie within the tolerance may
      come in either order, and a row found by one side only must tie with the last score of the
      other (a tie at the cut-off of k may let either row in).
    """
    g_ids, g_scores, g_rows = _normalise(got)
    w_ids, w_scores, w_rows = _normalise(want)
    assert len(g_ids) == len(w_ids), f"{len(g_ids)} hits, expected {len(w_ids)}: {g_ids} vs {w_ids}"
    assert len(set(g_ids)) == len(g_ids), f"an id came back twice: {g_ids}"
    assert len(set(w_ids)) == len(w_ids), f"an id came back twice in the expected hits: {w_ids}"
    if not g_ids:
        return
    np.testing.assert_allclose(g_scores, w_scores, rtol=rtol, atol=atol,
                               err_msg=f"scores by position; ids {g_ids} vs {w_ids}")

    def tie(a: float, b: float) -> bool:
        return abs(a - b) <= atol + rtol * max(abs(a), abs(b))

    g_at = {i: p for p, i in enumerate(g_ids)}
    w_at = {i: p for p, i in enumerate(w_ids)}
    problems: list[str] = []
    for i, gp in g_at.items():
        wp = w_at.get(i)
        if wp is None:
            if not tie(g_scores[gp], w_scores[-1]):
                problems.append(f"{i!r} (score {g_scores[gp]:.9g}) is missing from the expected hits, "
                                f"whose last score is {w_scores[-1]:.9g}")
            continue
        if not tie(g_scores[gp], w_scores[wp]):
            problems.append(f"{i!r} scored {g_scores[gp]:.9g}, expected {w_scores[wp]:.9g}")
        elif gp != wp and not tie(w_scores[gp], w_scores[wp]):
            problems.append(f"{i!r} at place {gp}, expected at place {wp} (not a tie)")
        if g_rows is not None and w_rows is not None and g_rows[i] != w_rows[i]:
            problems.append(f"{i!r}: fields {g_rows[i]} != {w_rows[i]}")
    for i, wp in w_at.items():
        if i not in g_at and not tie(w_scores[wp], g_scores[-1]):
            problems.append(f"{i!r} (score {w_scores[wp]:.9g}) was not found; the last score found is "
                            f"{g_scores[-1]:.9g}")
    assert not problems, "\n".join([f"got {g_ids}", f"expected {w_ids}", *problems])

