"""What a vector may hold, checked the same way for rows, queries and indexes.

**Types.** A vector holds real numbers only: Python ``int`` and ``float``, NumPy integer and
floating scalars and arrays (float16/32/64, longdouble, int8..uint64), Arrow integer and floating
lists (``list``, ``large_list`` or ``fixed_size_list``). Strings, booleans, dates, timestamps,
durations, complex numbers, ``None`` and :class:`decimal.Decimal` are refused: NumPy would turn
``"1"`` into 1.0 and ``True`` into 1.0, drop an imaginary part, or read a date as its integer
count of days, so a vector of the wrong thing would be stored as a plausible vector of numbers.
A ``Decimal`` is refused too rather than silently rounded to float32; convert it with ``float()``.
Every value is stored as float32.

**Range.** A stored (or query) vector's L2 norm must lie in ``[MIN_NORM, MAX_NORM] = [2^-60,
2^60]`` (about ``[8.67e-19, 1.15e18]``), or be exactly 0 (for ``dot`` and ``l2``; ``cosine``
refuses all-zero vectors). The scores are computed in float32, so the bound comes from what
float32 arithmetic can hold (its largest value is just under ``2^128``, its smallest normal
value ``2^-126``); with both norms at most ``2^60``:

* dot products, including every partial sum a kernel or BLAS forms, are at most
  ``|x| |q| <= 2^120`` (Cauchy-Schwarz);
* ``l2`` scores ``2 x.q - |x|^2 - |q|^2`` (the scan) and squared distances ``|x - q|^2`` (hnswlib,
  FAISS) are at most ``4 x 2^120 = 2^122``;
* the int8 stage scores a unit-length query and scales by ``|q|`` afterwards, so its sums stay
  near ``|x|`` even where the per-dimension calibration ranges of a segment add up to far more
  than one row's norm;
* squared norms are at least ``2^-120``, inside float32's normal range, so a vector's length and
  a dot product with it keep float32's relative precision instead of underflowing to
  subnormals or zero (cosine divides by these norms).

That leaves a factor of 64 between the largest score and float32's overflow. Norms are computed
in float64 (:func:`row_norms`), so the check itself cannot overflow or underflow. Real embeddings
have norms between about 0.01 and 1,000; the range is far wider than any model produces.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from .config import Metric
from .errors import InvalidArgumentError

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

MIN_NORM = 2.0 ** -60
"""The smallest L2 norm a nonzero vector may have (about 8.67e-19)."""

MAX_NORM = 2.0 ** 60
"""The largest L2 norm a vector may have (about 1.15e18)."""

_REAL_TYPES = (int, float, np.integer, np.floating)
_NOT_REAL_TYPES = (bool, np.bool_)  # bool is an int subclass; it is refused all the same
_REAL_KINDS = "iuf"  # NumPy dtype kinds: signed and unsigned integers, floating
_KIND_NAMES = {"b": "bool", "U": "str", "S": "bytes", "M": "datetime64", "m": "timedelta64",
               "c": "complex", "V": "void (structured)", "O": "object"}
_CHUNK_VALUES = 1 << 22  # values row_norms converts to float64 at once (32 MiB, bounded memory)

WRONG_TYPE_HINT = ("a vector holds real numbers only (int or float; NumPy or Arrow integer and "
                   "floating types), not strings, booleans, dates, durations, decimals or "
                   "complex numbers; convert the values to float")


def _is_real_type(t: type) -> bool:
    return issubclass(t, _REAL_TYPES) and not issubclass(t, _NOT_REAL_TYPES)


def _type_name(value: Any) -> str:
    return "None" if value is None else type(value).__name__


def _wrong_type(label: str, what: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"{label} holds {what}; {WRONG_TYPE_HINT}")


def _numeric_array(value: Any, label: str) -> np.ndarray:
    """``value`` as a NumPy array of an integer or floating dtype, or an error naming what it
    holds instead."""
    if isinstance(value, (str, bytes)):
        raise _wrong_type(label, f"{type(value).__name__} values such as {value!r:.40}")
    try:
        arr = np.asarray(value)  # dtype inferred: it shows strings, bools, dates, objects
    except (TypeError, ValueError, OverflowError) as exc:  # ragged nesting, odd objects
        raise InvalidArgumentError(f"{label} is not an array of numbers ({exc})") from None
    if arr.dtype.kind == "O":  # None, Decimal, datetime, int beyond int64, ... among the items
        return _checked_items(arr.tolist() if arr.ndim else [arr.item()], label)
    if arr.dtype.kind not in _REAL_KINDS:
        if isinstance(value, (list, tuple)):
            _checked_items(value, label)  # names the first wrong item: "such as '1'"
        name = _KIND_NAMES.get(arr.dtype.kind, str(arr.dtype))
        raise _wrong_type(label, f"{name} values (NumPy dtype {arr.dtype})")
    # NumPy reads [1.5, True] as [1.5, 1.0]: a bool among numbers leaves no trace in the dtype,
    # only a value of 0 or 1. Lists holding such a value get the exact item-by-item check; the
    # rest (nearly every embedding) skip it, which halves the cost of a list row.
    if isinstance(value, (list, tuple)) and ((arr == 0) | (arr == 1)).any():
        _checked_items(value, label)
    return arr


def _checked_items(items: list[Any] | tuple[Any, ...], label: str) -> np.ndarray:
    """The items (numbers, or nested lists of them) as float32, after checking the type of each
    one: only int and float (and NumPy's integer and floating scalars) pass."""
    types = set(map(type, items))
    if types and all(issubclass(t, (list, tuple, np.ndarray)) for t in types):
        parts = [_numeric_array(v, label) for v in items]
        if len({p.shape for p in parts}) > 1:
            raise InvalidArgumentError(f"{label} is ragged: its rows have different lengths")
        return np.stack(parts)
    bad = [t for t in types if not _is_real_type(t)]
    if bad:
        example = next(v for v in items if type(v) in bad)
        raise _wrong_type(label, f"{_type_name(example)} values such as {example!r:.40}")
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused by the finite check
            return np.asarray(items, dtype=np.float32)
    except OverflowError:  # a Python int beyond float64's range
        raise InvalidArgumentError(
            f"{label} holds an integer too large for a float32; scale the vector down") from None


def real_array(value: Any, label: str) -> F32:
    """``value`` (a list, tuple, NumPy array or anything NumPy can read, nested for a matrix)
    as float32, after checking it holds real numbers only. The shape is the caller's to check.

    ``label`` names the value in errors (``"row 3 (id 'x'): field 'vector'"``, ``"query 2"``).
    Raises :class:`InvalidArgumentError` for strings, booleans, dates, complex numbers, ``None``,
    decimals and ragged nesting; values beyond float32's range become infinity (refused by the
    finiteness check that follows).

    >>> real_array([1, 2.5], "the query vector")
    array([1. , 2.5], dtype=float32)
    >>> real_array(["1", "2"], "the query vector")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    vecstore.errors.InvalidArgumentError: the query vector holds str values such as '1'; ...
    """
    if isinstance(value, np.ndarray) and value.dtype == np.float32:
        return value
    arr = _numeric_array(value, label)
    if arr.dtype == np.float32:
        return arr
    with np.errstate(over="ignore"):
        return arr.astype(np.float32)


def row_norms(x: npt.NDArray[np.floating]) -> F64:
    """L2 norm of each row of a 2-D array, computed in float64 (a float32 sum of squares
    overflows for components above ~1.8e19 and underflows below ~1e-19)."""
    out = np.empty(x.shape[0], dtype=np.float64)
    step = max(1, _CHUNK_VALUES // max(1, x.shape[1]))
    for start in range(0, x.shape[0], step):
        part = x[start:start + step]
        out[start:start + part.shape[0]] = np.sqrt(
            np.einsum("ij,ij->i", part, part, dtype=np.float64))
    return out


def out_of_range(norms: F64) -> npt.NDArray[np.bool_]:
    """Which norms lie outside the accepted range (0 counts as inside; cosine checks zero
    vectors separately)."""
    return (norms > MAX_NORM) | ((norms < MIN_NORM) & (norms != 0))


def range_message(label: str, norm: float) -> str:
    """The error for a vector whose norm is outside the accepted range."""
    fix = ("scale it down" if norm > MAX_NORM else "scale it up")
    return (f"{label} has L2 norm {norm:.3g}, outside the accepted range "
            f"[{MIN_NORM:.3g}, {MAX_NORM:.3g}] (or exactly 0 for the dot and l2 metrics): "
            f"float32 scores of such a vector would overflow or lose their precision; {fix} "
            f"(for cosine, normalising it to length 1 changes nothing)")


def check_finite_in_range(vectors: F32, metric: Metric | None,
                          label_of: Callable[[int], str]) -> None:
    """Raise :class:`InvalidArgumentError` for the first row of ``vectors`` (2-D float32) that
    holds NaN or infinity, is all zeros under cosine, or has a norm outside the accepted range.
    ``label_of(i)`` names row ``i`` in the message; ``metric`` None skips the zero check."""
    if not len(vectors):
        return
    finite = np.isfinite(vectors).all(axis=1)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidArgumentError(f"{label_of(i)} contains NaN or infinity")
    norms = row_norms(vectors)
    if metric is Metric.COSINE and not norms.all():
        i = int(np.flatnonzero(norms == 0)[0])
        raise InvalidArgumentError(
            f"{label_of(i)} is all zeros; cosine similarity is undefined for it")
    bad = out_of_range(norms)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidArgumentError(range_message(label_of(i), float(norms[i])))


__all__ = ["MAX_NORM", "MIN_NORM", "check_finite_in_range", "out_of_range", "range_message",
           "real_array", "row_norms"]
