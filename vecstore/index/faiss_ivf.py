"""FAISS inverted-file indexes over float vectors: ``ivf`` (``IndexIVFFlat``), ``ivf-pq``
(``IndexIVFPQ``) and ``ivf-rabitq`` (``IndexIVFRaBitQ``), the last two refined with exact scores
by default.

The build, the ``nprobe`` measured at build time, filtering (an ``IDSelectorBitmap``; only the
probed lists are scanned, so a selective filter may return fewer than ``k`` unless ``effort >=
nlist``), save and load are :class:`~vecstore.index._faiss.FaissIvfBase`'s; this module says
which FAISS index each kind builds and how its codes are refined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ..config import Metric
from ._faiss import FaissIvfBase, check_ivf_params, faiss_module
from .base import IndexParams, check_int, params_error


@dataclass(frozen=True)
class IvfParams(IndexParams):
    """Build parameters of ``IndexIVFFlat``.

    Attributes:
        nlist: number of inverted lists (k-means centroids); ``None``:
            :func:`~vecstore.index._faiss.auto_nlist`.
        nprobe: lists probed for k = 10 without a filter, the anchor of :meth:`effort_for`.
            ``None``: measured at build time, the smallest reaching recall@10 >= 0.95 with 200
            sample rows as queries.
    """

    nlist: int | None = None
    nprobe: int | None = None

    def __post_init__(self) -> None:
        check_ivf_params(self.nlist, self.nprobe)


class IvfFlatIndex(FaissIvfBase):
    """FAISS ``IndexIVFFlat``: k-means lists of full-precision vectors."""

    kind = "ivf"
    params_type = IvfParams
    params: IvfParams

    @property
    def exact_scores(self) -> bool:
        return True

    @classmethod
    def _new_ivf(cls, quantizer: Any, dim: int, metric: Metric, params: IvfParams) -> Any:
        return faiss_module().IndexIVFFlat(quantizer, dim, params.nlist, cls.faiss_metric(metric))


def _check_refine(kind: str, refine: bool, refine_factor: int) -> None:
    if not isinstance(refine, bool):
        raise params_error(kind, "refine", refine, "True or False")
    check_int("refine_factor", refine_factor, 1, 1024)


class _RefinedIvf(FaissIvfBase):
    """An IVF index, possibly wrapped in ``IndexRefineFlat``."""

    params: IvfPqParams | IvfRabitqParams

    @property
    def exact_scores(self) -> bool:
        return bool(self.params.refine)

    def _search_params(self, effort: int, k: int, sel: Any) -> list[Any]:
        base = self._ivf_params(effort, sel)
        if not self.params.refine:
            return [base]
        faiss = faiss_module()
        # The selector must sit in the *base* parameters: IndexRefine ignores a top-level sel
        # (and would return disallowed labels).
        p = faiss.IndexRefineSearchParameters()
        # Re-rank refine_factor * max(k, 10) candidates: with k = 1 and 4 candidates the
        # quantization error alone loses the true neighbour too often.
        factor = self.params.refine_factor * max(k, 10) / k
        p.k_factor = float(factor)
        p.base_index_params = base
        return [p, base]

    def _extra_bytes(self) -> int:
        return self._count * self.dim * 4 if self.params.refine else 0

    @classmethod
    def _wrap(cls, ivf: Any, params: IvfPqParams | IvfRabitqParams) -> Any:
        if not params.refine:
            return ivf
        faiss = faiss_module()
        refined = faiss.IndexRefineFlat(ivf)
        refined.own_fields = True
        ivf.this.disown()
        return refined


@dataclass(frozen=True)
class IvfPqParams(IndexParams):
    """Build parameters of ``IndexIVFPQ`` (optionally refined with exact distances).

    Attributes:
        nlist, nprobe: as for :class:`IvfParams`.
        pq_m: sub-quantizers (bytes per vector at 8 bits); must divide the dimension.
            ``None``: the largest divisor of ``d`` not above ``d / 4`` (384 -> 96).
        pq_bits: bits per sub-quantizer code, 1..12. ``None``: 8, fewer when there are too
            few vectors to train 256 centroids (``floor(log2(n / 39))``).
        refine: keep the float vectors too and re-rank ``refine_factor * k`` PQ candidates
            with exact scores. Without it scores are PQ estimates, for a caller that rescores.
        refine_factor: ``refine`` re-ranks ``refine_factor * max(k, 10)`` candidates. With
            10, recall@10 at nprobe = nlist is 0.98 on 20,000 64-d Gaussian vectors (4: 0.87)
            and 1.0 on clustered ones.
    """

    nlist: int | None = None
    nprobe: int | None = None
    pq_m: int | None = None
    pq_bits: int | None = None
    refine: bool = True
    refine_factor: int = 10

    def __post_init__(self) -> None:
        check_ivf_params(self.nlist, self.nprobe)
        check_int("pq_m", self.pq_m, 1, 4096, optional=True)
        check_int("pq_bits", self.pq_bits, 1, 12, optional=True)
        _check_refine("ivf-pq", self.refine, self.refine_factor)


def _auto_pq_m(d: int) -> int:
    return max(m for m in range(1, max(1, d // 4) + 1) if d % m == 0)


class IvfPqIndex(_RefinedIvf):
    """FAISS ``IndexIVFPQ`` (residual product quantization), refined by default."""

    kind = "ivf-pq"
    params_type = IvfPqParams
    params: IvfPqParams

    @classmethod
    def min_rows(cls) -> int:
        return 100

    @classmethod
    def _resolve(cls, params: IvfPqParams, n: int, d: int) -> IvfPqParams:
        pq_m = params.pq_m or _auto_pq_m(d)
        if d % pq_m:
            divisors = [m for m in range(1, d + 1) if d % m == 0]
            raise params_error(cls.kind, "pq_m", pq_m, f"a divisor of the dimension {d}: {divisors}")
        pq_bits = params.pq_bits or max(1, min(8, int(math.log2(max(2, n / 39)))))
        if 2**pq_bits > n:
            raise params_error(cls.kind, "pq_bits", pq_bits,
                               f"at most log2(n) = {int(math.log2(n))} for {n} vectors")
        return replace(params, pq_m=pq_m, pq_bits=pq_bits)

    @classmethod
    def _new_ivf(cls, quantizer: Any, dim: int, metric: Metric, params: IvfPqParams) -> Any:
        return faiss_module().IndexIVFPQ(quantizer, dim, params.nlist, params.pq_m,
                                         params.pq_bits, cls.faiss_metric(metric))

    def _extra_bytes(self) -> int:
        pq = self._ivf().pq
        return super()._extra_bytes() + int(pq.centroids.size()) * 4


@dataclass(frozen=True)
class IvfRabitqParams(IndexParams):
    """Build parameters of ``IndexIVFRaBitQ`` (FAISS >= 1.11; multi-bit codes in 1.13+).

    Attributes:
        nlist, nprobe: as for :class:`IvfParams`.
        bits: bits per dimension of the RaBitQ code, 1..9. The default 4 keeps recall@10 >=
            0.99 after refining on Gaussian noise, where 1 bit reaches 0.26 (0.79 re-ranking
            50 candidates per result); on clustered vectors 1 bit with ``refine_factor`` 10
            suffices (20,000 64-d vectors, bench/ann_backends.py).
        query_bits: bits the query is quantized to when comparing (FAISS ``qb``; 0 = float).
        refine: keep float vectors and re-rank ``refine_factor * k`` candidates exactly.
        refine_factor: ``refine`` re-ranks ``refine_factor * max(k, 10)`` candidates.
    """

    nlist: int | None = None
    nprobe: int | None = None
    bits: int = 4
    query_bits: int = 8
    refine: bool = True
    refine_factor: int = 4

    def __post_init__(self) -> None:
        check_ivf_params(self.nlist, self.nprobe)
        check_int("bits", self.bits, 1, 9)
        check_int("query_bits", self.query_bits, 0, 8)
        _check_refine("ivf-rabitq", self.refine, self.refine_factor)


class IvfRabitqIndex(_RefinedIvf):
    """FAISS ``IndexIVFRaBitQ``: about ``bits`` bit(s) per dimension, refined by default."""

    kind = "ivf-rabitq"
    params_type = IvfRabitqParams
    params: IvfRabitqParams

    requires = ("IndexIVFRaBitQ", "faiss>=1.11")

    @classmethod
    def _new_ivf(cls, quantizer: Any, dim: int, metric: Metric, params: IvfRabitqParams) -> Any:
        faiss = faiss_module()
        ivf = faiss.IndexIVFRaBitQ(quantizer, dim, params.nlist, cls.faiss_metric(metric), True,
                                   params.bits)
        ivf.qb = params.query_bits
        return ivf

    def _ivf_params(self, effort: int, sel: Any) -> Any:
        faiss = faiss_module()
        p = faiss.IVFRaBitQSearchParameters()
        p.nprobe = min(effort, self.nlist)
        p.qb = self.params.query_bits
        if sel is not None:
            p.sel = sel
        return p
