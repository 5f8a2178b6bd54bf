"""Vector codes: per-dimension int8 scalar quantization and 1-bit sign codes.

Each segment is calibrated on its own data (the range of every dimension), so its int8 codes
never clip; the calibration is stored in the manifest next to the segment. Binary codes are the
signs of ``x - center``: centring on the data's mean makes the bits informative for embeddings
whose dimensions are not zero-mean. Binary codes are padded to whole 64-bit words so the Hamming
kernels can read them as ``uint64``.
"""

from __future__ import annotations

import base64
import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..vectors import row_norms

F32 = npt.NDArray[np.float32]

MIN_ROWS_FOR_CENTER = 256
"""Below this many rows a segment's mean is too noisy to centre the sign codes on; the
table's previous centre (or zero) is used instead."""


def binary_bytes(dim: int) -> int:
    """Bytes of one binary code: one bit per dimension, padded to whole 64-bit words."""
    return ((dim + 63) // 64) * 8


def _f32_to_b64(a: F32) -> str:
    return base64.b64encode(np.ascontiguousarray(a, dtype="<f4").tobytes()).decode("ascii")


def _b64_to_f32(s: str, dim: int) -> F32:
    a = np.frombuffer(base64.b64decode(s), dtype="<f4")
    if a.shape != (dim,):
        raise ValueError(f"calibration vector has {a.size} values, expected {dim}")
    return a.astype(np.float32)


def normalize_rows(x: F32) -> F32:
    """Rows scaled to unit length (zero rows stay zero). Norms are computed in float64 (in
    float32 the sum of squares overflows above ~1.8e19 and underflows below ~1e-19); every norm
    in the accepted range of :mod:`vecstore.vectors` is then a normal float32."""
    norms = row_norms(x).astype(np.float32)[:, None]
    norms[norms == 0] = 1
    return np.asarray(x / norms, dtype=np.float32)


@dataclass(frozen=True, eq=False)
class Quantizer:
    """Calibration of one segment: ``x ~ (code + 128) * scale + offset``; bits are ``x > center``."""

    offset: F32
    scale: F32
    center: F32

    @property
    def dim(self) -> int:
        return int(self.offset.shape[0])

    @classmethod
    def fit(cls, x: F32, previous_center: F32 | None = None) -> Quantizer:
        """Calibrate on ``x`` (rows already normalised for cosine tables)."""
        if x.ndim != 2 or x.shape[0] == 0:
            raise ValueError("cannot calibrate on an empty batch")
        fit = QuantizerFit(x.shape[1])
        fit.update(x)
        return fit.result(previous_center)

    def encode_int8(self, x: F32) -> npt.NDArray[np.int8]:
        q = np.rint((x - self.offset) / self.scale)
        np.clip(q, 0, 255, out=q)
        return (q - 128).astype(np.int8)

    def decode_int8(self, codes: npt.NDArray[np.int8]) -> F32:
        return ((codes.astype(np.float32) + 128.0) * self.scale + self.offset).astype(np.float32)

    def encode_binary(self, x: F32) -> npt.NDArray[np.uint8]:
        """Sign bits of ``x - center``, little-endian bit order, padded to whole uint64 words."""
        bits = np.packbits(x > self.center, axis=1, bitorder="little")
        width = binary_bytes(x.shape[1])
        if bits.shape[1] < width:
            bits = np.pad(bits, ((0, 0), (0, width - bits.shape[1])))
        return np.ascontiguousarray(bits)

    def query_int8(self, q: F32) -> tuple[F32, float]:
        """Fold the calibration into the query: ``q . decode(c) == qscaled . c + const``."""
        qscaled = (q * self.scale).astype(np.float32)
        const = float(np.dot(q.astype(np.float64), self._code_origin))
        return qscaled, const

    @functools.cached_property
    def _code_origin(self) -> npt.NDArray[np.float64]:
        # what code 0 decodes to, in float64: computed once per segment, not per query
        return (128.0 * self.scale + self.offset).astype(np.float64)

    def to_json(self) -> dict[str, str]:
        return {
            "offset": _f32_to_b64(self.offset),
            "scale": _f32_to_b64(self.scale),
            "center": _f32_to_b64(self.center),
        }

    @classmethod
    def from_json(cls, data: dict[str, str], dim: int) -> Quantizer:
        return cls(
            offset=_b64_to_f32(data["offset"], dim),
            scale=_b64_to_f32(data["scale"], dim),
            center=_b64_to_f32(data["center"], dim),
        )


class QuantizerFit:
    """:meth:`Quantizer.fit` over rows given a block at a time, so that a merge calibrates a
    segment larger than memory: the range of every dimension and the float64 sum for the
    centre are all it keeps. Blocks summed one after another give the centre of one
    ``fit`` up to float64 rounding (the sum is associated differently)."""

    def __init__(self, dim: int) -> None:
        self.lo = np.full(dim, np.inf, dtype=np.float32)
        self.hi = np.full(dim, -np.inf, dtype=np.float32)
        self.total = np.zeros(dim, dtype=np.float64)
        self.rows = 0

    def update(self, x: F32) -> None:
        """Take in the rows ``x`` (``(n, dim)``, normalised for cosine tables)."""
        if x.shape[0] == 0:
            return
        np.minimum(self.lo, x.min(axis=0), out=self.lo)
        np.maximum(self.hi, x.max(axis=0), out=self.hi)
        self.total += x.sum(axis=0, dtype=np.float64)
        self.rows += x.shape[0]

    def result(self, previous_center: F32 | None = None) -> Quantizer:
        """The calibration of every row taken in; ``previous_center`` centres the sign codes
        when fewer than :data:`MIN_ROWS_FOR_CENTER` rows were."""
        if self.rows == 0:
            raise ValueError("cannot calibrate on an empty batch")
        lo = self.lo.copy()
        scale = ((self.hi - lo) / np.float32(255.0)).astype(np.float32)
        # A constant dimension: any positive scale decodes it exactly (code 0 -> offset).
        scale[scale <= 0] = np.float32(1.0)
        if self.rows >= MIN_ROWS_FOR_CENTER:
            center = (self.total / self.rows).astype(np.float32)
        elif previous_center is not None:
            center = previous_center.astype(np.float32)
        else:
            center = np.zeros(self.lo.shape[0], dtype=np.float32)
        return Quantizer(offset=lo, scale=scale, center=center)
