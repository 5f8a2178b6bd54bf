"""NumPy twins of the kernels in ``graph``: same names, signatures and results (the same
distances, the same nodes in the same order).

The graph, as ``vecstore.index.graph_int8`` stores it (``n`` nodes, ``d`` dimensions):

* ``codes``: ``int8[n, d]``, each node's vector quantised per dimension; ``query`` arrives as
  ``int16[d]``: multiplied by the per-dimension scales, then quantised with one scale
  ``qscale`` to at most :func:`query_max` in magnitude (so that an int32 sum of ``d`` products
  with codes cannot overflow); ``const`` is the rest of the dequantisation, so
  ``q . x = qscale * (query . codes[i]) + const``, the dot product summed exactly in integers
  and the rest in float32 (the kernels and the twins compute the same distances bit for bit).
* ``sqnorms``: ``float32[n]``, each vector's squared norm, for L2; empty for inner product.
  Distances are lower-is-better: ``-(q . x)`` (inner product) or ``|x|^2 - 2 q . x`` (L2, the
  squared distance less ``|q|^2``).
* layer 0: ``counts0`` (``uint16[n]``) neighbours of each node in ``links0`` (``int32[n, m0]``).
* upper layers: node ``i`` on layers ``1..L_i`` has its links for layer ``l`` in row
  ``up_start[i] + l - 1`` of ``up_links`` (``int32[t, m]``, ``up_counts[t]`` used), where
  ``up_start`` is ``int64[n + 1]`` and ``L_i = up_start[i + 1] - up_start[i]``.
* ``entry`` (a node on ``max_level``), ``max_level``, the beam width ``ef``.
* ``allow``: an empty array (every node allowed) or ``bool[n]``; only allowed nodes are
  returned, and the beam keeps walking while it holds fewer than ``ef`` of them (hnswlib's
  filtered search).
"""

from __future__ import annotations

import heapq

import numpy as np
import numpy.typing as npt

__all__ = ["fold_queries", "graph_search", "graph_search_batch", "graph_search_rows", "query_max"]


def query_max(dim: int) -> int:
    """The largest magnitude of a query's int16 entries for ``dim`` dimensions: 32,767 up to
    512 dimensions, then less, so that ``dim`` products with int8 codes (at most 128 in
    magnitude) sum within an int32 (15 bits at 1,024 dimensions, 12 at 8,192)."""
    return max(1, min(32767, (2**31 - 1) // (128 * max(dim, 1))))


def fold_queries(queries: npt.NDArray[np.float32], scale: npt.NDArray[np.float64],
                 base: npt.NDArray[np.float64], inv_max: float
                 ) -> tuple[npt.NDArray[np.int16], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Queries as :func:`graph_search` takes them: ``(folded, qscales, consts)``, each query
    times the per-dimension ``scale``, quantised to int16 with the scale ``max |q * scale| x
    inv_max`` (``inv_max = 1 / query_max(d)``; 1 for a zero query), and ``consts = q . base``
    (``base = 128 scale + offset``), so that ``q . x = qscales[i] (folded[i] . code) + consts[i]``.
    The kernel's twin gives the same ints and scales; ``consts`` agree to float32 rounding
    (the sums are formed in another order)."""
    scaled = queries * scale
    top = np.abs(scaled).max(axis=1)
    top[top == 0] = 1.0  # a zero query (after scaling): any scale folds it to zeros
    qscales = top * inv_max
    folded = np.rint(scaled / qscales[:, None]).astype(np.int16)
    return folded, qscales.astype(np.float32), (queries @ base).astype(np.float32)


def _distances(query: npt.NDArray[np.int16], qscale: float, codes: npt.NDArray[np.int8],
               sqnorms: npt.NDArray[np.float32], const: float,
               nodes: npt.NDArray[np.int64]) -> npt.NDArray[np.float32]:
    # integer dot products, exact in float64 (|sum| < 2^31, see query_max)
    sums = codes[nodes].astype(np.float64) @ query.astype(np.float64)
    dots = sums.astype(np.float32) * np.float32(qscale) + np.float32(const)
    if sqnorms.shape[0] == 0:
        return (-dots).astype(np.float32)
    return (sqnorms[nodes] - np.float32(2.0) * dots).astype(np.float32)


def graph_search(
    query: npt.NDArray[np.int16], qscale: float, const: float, codes: npt.NDArray[np.int8],
    sqnorms: npt.NDArray[np.float32], counts0: npt.NDArray[np.uint16], links0: npt.NDArray[np.int32],
    up_start: npt.NDArray[np.int64], up_counts: npt.NDArray[np.uint16], up_links: npt.NDArray[np.int32],
    entry: int, max_level: int, ef: int, allow: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """The best ``ef`` (or fewer) allowed nodes for ``query``: ``(nodes, distances)``, nearest first."""
    n = codes.shape[0]
    if n == 0 or ef <= 0:
        return np.empty(0, np.int64), np.empty(0, np.float32)
    filtered = allow.shape[0] > 0
    cur = int(entry)
    cur_d = float(_distances(query, qscale, codes, sqnorms, const, np.array([cur]))[0])
    for level in range(max_level, 0, -1):
        changed = True
        while changed:
            changed = False
            slot = int(up_start[cur]) + level - 1
            nodes = up_links[slot, : int(up_counts[slot])].astype(np.int64)
            dists = _distances(query, qscale, codes, sqnorms, const, nodes)
            for node, d in zip(nodes.tolist(), dists.tolist(), strict=True):
                if d < cur_d:
                    cur_d, cur, changed = d, node, True

    visited = np.zeros(n, dtype=bool)
    candidates: list[tuple[float, int]] = [(cur_d, cur)]
    results: list[tuple[float, int]] = []  # max-heap as (-d, -node)
    bound = np.inf
    if not filtered or allow[cur]:
        results.append((-cur_d, -cur))
        bound = cur_d
    visited[cur] = True
    while candidates:
        d0, node0 = candidates[0]
        if d0 > bound and (len(results) == ef or not filtered):
            break
        heapq.heappop(candidates)
        nodes = links0[node0, : int(counts0[node0])].astype(np.int64)
        fresh = nodes[~visited[nodes]]
        visited[fresh] = True
        for node, d in zip(fresh.tolist(), _distances(query, qscale, codes, sqnorms, const, fresh).tolist(),
                           strict=True):
            if len(results) < ef or d < bound:
                heapq.heappush(candidates, (d, node))
                if not filtered or allow[node]:
                    heapq.heappush(results, (-d, -node))
                    if len(results) > ef:
                        heapq.heappop(results)
                if results:
                    bound = -results[0][0]
    ordered = sorted((-nd, -nn) for nd, nn in results)
    return (np.array([node for _, node in ordered], dtype=np.int64),
            np.array([d for d, _ in ordered], dtype=np.float32))


def graph_search_batch(
    queries: npt.NDArray[np.int16], qscales: npt.NDArray[np.float32], consts: npt.NDArray[np.float32],
    codes: npt.NDArray[np.int8], sqnorms: npt.NDArray[np.float32], counts0: npt.NDArray[np.uint16],
    links0: npt.NDArray[np.int32], up_start: npt.NDArray[np.int64], up_counts: npt.NDArray[np.uint16],
    up_links: npt.NDArray[np.int32], entry: int, max_level: int, ef: int, k: int,
    allow: npt.NDArray[np.bool_],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """:func:`graph_search` for every row of ``queries`` (``qscales[i]`` and ``consts[i]`` its
    scale and offset): the best ``k`` per query, padded with node ``-1`` and distance ``+inf``."""
    m = queries.shape[0]
    out_i = np.full((m, k), -1, dtype=np.int64)
    out_d = np.full((m, k), np.inf, dtype=np.float32)
    for q in range(m):
        ids, dist = graph_search(queries[q], float(qscales[q]), float(consts[q]), codes, sqnorms,
                                 counts0, links0, up_start, up_counts, up_links, entry, max_level,
                                 ef, allow)
        w = min(k, ids.shape[0])
        out_i[q, :w] = ids[:w]
        out_d[q, :w] = dist[:w]
    return out_i, out_d


graph_search_rows = graph_search_batch
"""The kernel's one-thread batch (``graph.graph_search_rows``): the twin is one thread anyway."""


def warm_up(only: str | None = None) -> None:  # noqa: ARG001 - the interface of the Numba modules
    """Nothing to load: the twins are plain NumPy (here for the same interface as the Numba
    modules)."""
