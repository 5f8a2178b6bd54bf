"""How DuckDB types a filter's values and compares them with a column, reproduced for the fast
path (:mod:`.predicates`), and the one place where filter parameters become the Python values
DuckDB binds.

The fast path answers ``column <op> value`` from the column's sorted values. To give exactly
DuckDB's rows it must compare the way DuckDB does, and DuckDB does not compare in the column's
type: its binder gives each literal and parameter a type, picks a common type for the comparison
and casts one side or both (measured on DuckDB 1.5.5 with ``EXPLAIN``; see docs/guarantees.md,
"How comparisons are typed"):

- literals: ``1`` is an integer literal (it takes the column's integer or float type), ``0.1``
  a DECIMAL(2,1), ``1e-1`` a DOUBLE, ``'x'`` a string literal (cast to the column's type);
- parameters: a Python ``int`` is INTEGER, BIGINT, UBIGINT or HUGEINT by size, ``float`` DOUBLE,
  ``Decimal`` DECIMAL, ``str`` like a string literal, ``date`` DATE, ``datetime`` TIMESTAMP;
- a FLOAT column against integers and decimals is compared in FLOAT (``price = 0.1`` matches
  the row that stored ``np.float32(0.1)``), against a DOUBLE in DOUBLE (the column widened);
- an integer column against a decimal is compared exactly (DECIMAL, unless the width would
  pass 38 digits), against a DOUBLE in DOUBLE: an int64 beyond 2^53 is rounded first;
- ``IN`` lists and ``BETWEEN`` take one common type over the column and all their values;
- a string cast to a TIMESTAMP_S column rounds sub-second digits.

Whatever this module cannot reproduce exactly raises :class:`Unsupported`, and the filter runs on
DuckDB instead: exactness over speed.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pyarrow as pa

from ..errors import FilterError


class Unsupported(Exception):
    """The filter (or this call's parameter values) needs DuckDB."""


# --- parameters --------------------------------------------------------------------------------


def bind_parameter(value: Any) -> Any:
    """The Python value DuckDB should bind for one filter parameter.

    DuckDB's Python client refuses numpy scalars (except ``float64``) and pyarrow scalars, so
    they become the Python value they hold: ``np.int64(5)`` is ``5``, ``np.float32(0.1)`` is the
    float32 value exactly (0.100000001490116..., which is not 0.1: it matches a float32 column
    that stored ``np.float32(0.1)``, not a float64 column that stored 0.1), a numpy array or a
    pyarrow list is a list; ``NaT`` is NULL. A ``Decimal`` with a positive exponent
    (``Decimal('1E+2')``) becomes the same number with exponent 0, because DuckDB binds ``1E+2``
    as 1.00 (and ``1.5E+37`` as 0.000000000000000047...); past 38 digits it becomes the float
    DuckDB would bind. A time with sub-microsecond digits (``datetime64[ns]``, a pyarrow or pandas
    timestamp) is refused: DuckDB would drop them, or bind a ``datetime64[ns]`` as an INTEGER.
    Anything else is left for DuckDB to accept or refuse.
    """
    if type(value).__name__ in ("NaTType", "NAType"):  # pandas' missing values, without importing it
        return None
    if isinstance(value, dt.datetime) and type(value) is not dt.datetime:  # e.g. pandas.Timestamp
        if getattr(value, "nanosecond", 0):
            raise FilterError(f"filter parameter {value!r} has sub-microsecond digits, which DuckDB "
                              f"would drop; pass it as a string such as '2020-01-01 00:00:00.123456789'")
        return dt.datetime.combine(value.date(), value.timetz())
    if value is None or isinstance(value, (bool, int, float, str, bytes, dt.date, dt.time, dt.timedelta)):
        return value
    if isinstance(value, decimal.Decimal):
        _, digits, exponent = value.as_tuple()
        if value.is_finite() and isinstance(exponent, int) and exponent > 0:
            if len(digits) + exponent > 38:  # DuckDB's DOUBLE (and no 10**huge integer here)
                return float(value)
            return decimal.Decimal(int(value))
        return value
    if isinstance(value, np.generic):
        return _numpy_scalar(value)
    if isinstance(value, np.ndarray):
        return bind_parameter(value[()]) if value.ndim == 0 else [bind_parameter(v) for v in value]
    if isinstance(value, pa.Scalar):
        try:
            return bind_parameter(value.as_py())
        except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
            raise FilterError(f"filter parameter {value!r} ({value.type}) has no Python value "
                              f"DuckDB can bind ({exc}); pass a str, int, float, date or datetime") from None
    if isinstance(value, list):
        return [bind_parameter(v) for v in value]
    if isinstance(value, tuple):
        return tuple(bind_parameter(v) for v in value)
    return value


def _numpy_scalar(v: np.generic) -> Any:
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        f = float(v)
        if isinstance(v, np.longdouble) and np.longdouble(f) != v and not math.isnan(f):
            raise FilterError(f"filter parameter {v!r} (numpy.longdouble) has no exact float64 value; "
                              f"pass a float")
        return f
    if isinstance(v, np.str_):
        return str(v)
    if isinstance(v, np.bytes_):
        return bytes(v)
    if isinstance(v, np.datetime64):
        if np.isnat(v):
            return None
        unit = np.datetime_data(v.dtype)[0]
        if unit in ("Y", "M", "W", "D"):
            day = v.astype("datetime64[D]").item()
            if not isinstance(day, dt.date):  # outside date's years 1-9999
                raise FilterError(f"filter parameter {v!r} is outside the years 1-9999")
            return day
        us = v.astype("datetime64[us]")
        if us.astype(v.dtype) != v:
            raise FilterError(f"filter parameter {v!r} has sub-microsecond digits, which a Python "
                              f"datetime cannot hold; pass it as a string such as "
                              f"'2020-01-01 00:00:00.123456789'")
        out = us.item()
        if not isinstance(out, dt.datetime):  # outside datetime's years 1-9999
            raise FilterError(f"filter parameter {v!r} is outside the years 1-9999")
        return out
    if isinstance(v, np.timedelta64):
        us = v.astype("timedelta64[us]")
        if np.isnat(v):
            return None
        if us.astype(v.dtype) != v or not isinstance(us.item(), dt.timedelta):
            raise FilterError(f"filter parameter {v!r} is not a whole number of microseconds")
        return us.item()
    raise FilterError(f"filter parameter {v!r} of type numpy.{type(v).__name__} is not supported; "
                      f"pass a bool, int, float, str, date or datetime")


def bind_parameters(params: Sequence[Any]) -> list[Any]:
    """:func:`bind_parameter` over a call's parameters."""
    return [bind_parameter(p) for p in params]


# --- typed values ------------------------------------------------------------------------------

# DuckDB's integer types by the widths its DECIMAL rules give them
INTEGER_WIDTH = {"INTEGER": 10, "BIGINT": 19, "UBIGINT": 20, "HUGEINT": 38}
_INT_LIMITS = {"INTEGER": (-2 ** 31, 2 ** 31 - 1), "BIGINT": (-2 ** 63, 2 ** 63 - 1),
               "UBIGINT": (0, 2 ** 64 - 1), "HUGEINT": (-2 ** 127, 2 ** 127 - 1)}


@dataclass(frozen=True, slots=True)
class Typed:
    """A value as DuckDB's binder sees it.

    ``kind`` is ``null``, ``int`` (value: int; width: of its DuckDB type), ``decimal`` (value:
    the unscaled int; width, scale), ``double`` (float), ``varchar`` (str: a string literal or a
    ``str`` parameter, both cast to the column's type), ``bool``, ``date`` (value: days since
    1970-01-01) or ``timestamp`` (value: microseconds since 1970-01-01, no time zone)."""

    kind: str
    value: Any = None
    width: int = 0
    scale: int = 0
    literal: bool = False

    @property
    def exact(self) -> Fraction | int:
        """An int or decimal's exact value."""
        if self.kind == "decimal":
            return Fraction(self.value, 10 ** self.scale)
        return int(self.value)


NULL = Typed("null")
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_DATE = dt.date(1970, 1, 1)


def typed_constant(value: dict[str, Any]) -> Typed:
    """A CONSTANT node's value (``node["value"]`` of ``json_serialize_sql``), typed."""
    if value.get("is_null"):
        return NULL
    tid = (value.get("type") or {}).get("id")
    v = value.get("value")
    if isinstance(v, dict) and set(v) == {"upper", "lower"}:  # a 128-bit integer, in two halves
        v = int(v["upper"]) * 2 ** 64 + int(v["lower"])
    if tid in INTEGER_WIDTH:
        if isinstance(v, int) and not isinstance(v, bool):
            return Typed("int", v, INTEGER_WIDTH[tid], literal=True)
    elif tid == "DOUBLE" and isinstance(v, (int, float)) and not isinstance(v, bool):
        return Typed("double", float(v), literal=True)
    elif tid == "DECIMAL" and isinstance(v, int) and not isinstance(v, bool):
        info = (value.get("type") or {}).get("type_info") or {}
        return Typed("decimal", v, int(info.get("width", 38)), int(info.get("scale", 0)), literal=True)
    elif tid == "VARCHAR" and isinstance(v, str):
        return Typed("varchar", v, literal=True)
    elif tid == "BOOLEAN" and isinstance(v, bool):
        return Typed("bool", v, literal=True)
    raise Unsupported(f"constant of type {tid}")


def typed_parameter(v: Any) -> Typed:
    """A parameter's value (after :func:`bind_parameter`) as DuckDB's Python client types it."""
    if v is None:
        return NULL
    if isinstance(v, bool):
        return Typed("bool", v)
    if isinstance(v, int):
        for name in ("INTEGER", "BIGINT", "UBIGINT", "HUGEINT"):
            lo, hi = _INT_LIMITS[name]
            if lo <= v <= hi:
                return Typed("int", v, INTEGER_WIDTH[name])
        raise Unsupported("integer beyond HUGEINT")
    if isinstance(v, float):
        return Typed("double", v)
    if isinstance(v, decimal.Decimal):
        if not v.is_finite():
            raise Unsupported("non-finite Decimal")  # DuckDB binds it as a FLOAT
        sign, digits, exponent = v.as_tuple()
        if not isinstance(exponent, int) or len(digits) + exponent > 38:
            raise Unsupported("Decimal beyond 38 digits")  # a DOUBLE to DuckDB
        scale = max(0, -exponent)
        unscaled = int("".join(map(str, digits)) or "0") * 10 ** max(0, exponent)
        # An upper bound of the width DuckDB gives it (it counts a leading zero sometimes): the
        # rules below only ever fall back to DuckDB when the width is near a limit.
        width = max(len(digits) + max(0, exponent), scale) + 1
        return Typed("decimal", -unscaled if sign else unscaled, width, scale)
    if isinstance(v, str):
        try:
            v.encode("utf-8")
        except UnicodeEncodeError:
            raise Unsupported("a lone surrogate") from None  # DuckDB refuses to bind it
        return Typed("varchar", v)
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            raise Unsupported("TIMESTAMP WITH TIME ZONE parameter")
        return Typed("timestamp", (v - _EPOCH) // dt.timedelta(microseconds=1))
    if isinstance(v, dt.date):
        return Typed("date", (v - _EPOCH_DATE).days)
    raise Unsupported(f"parameter of type {type(v).__name__}")


# --- DuckDB's casts ----------------------------------------------------------------------------


def decimal_to_float(unscaled: int, scale: int, single: bool) -> float:
    """DuckDB's cast of a DECIMAL (stored in at most 64 bits) to FLOAT or DOUBLE
    (``TryCastDecimalToFloatingPoint``): ``unscaled / 10^scale`` in the target type while the
    unscaled value converts exactly, else ``quotient + remainder / 10^scale``, which is not always
    correctly rounded. Checked against DuckDB on 8,000 random decimals."""
    ftype: Any = np.float32 if single else np.float64
    limit = 2 ** 24 if single else 2 ** 53
    p = ftype(float(10 ** scale))
    with np.errstate(all="ignore"):
        if abs(unscaled) <= limit or scale == 0:
            return float(ftype(np.int64(unscaled)) / p)
        power = 10 ** scale
        q = abs(unscaled) // power * (1 if unscaled >= 0 else -1)  # C division: toward zero
        return float(ftype(np.int64(q)) + ftype(np.int64(unscaled - q * power)) / p)


def _to_double(v: Typed) -> float:
    if v.kind == "double":
        if math.isnan(v.value):
            raise Unsupported("NaN")  # NaN's order differs between DuckDB and its Arrow scan
        return float(v.value)
    if v.kind == "int":
        if not -2 ** 63 <= v.value < 2 ** 63:
            raise Unsupported("HUGEINT to DOUBLE")  # DuckDB converts it in two rounded halves
        return float(v.value)  # correctly rounded, like C++'s static_cast
    if v.kind == "decimal":
        return decimal_to_float(*_decimal_for_cast(v, single=False), single=False)
    raise Unsupported(f"{v.kind} against a number")


def _to_float32(v: Typed) -> np.float32:
    if v.kind == "int":
        if not -2 ** 63 <= v.value < 2 ** 63:
            raise Unsupported("HUGEINT to FLOAT")
        return np.float32(np.int64(v.value))  # one rounding, like static_cast<float>(int64_t)
    if v.kind == "decimal":
        return np.float32(decimal_to_float(*_decimal_for_cast(v, single=True), single=True))
    raise Unsupported(f"{v.kind} against a FLOAT column")


def _decimal_for_cast(v: Typed, single: bool) -> tuple[int, int]:
    if v.width > 18:
        raise Unsupported("DECIMAL wider than 18 digits")  # stored as HUGEINT: another formula
    if not v.literal and not (abs(v.value) <= (2 ** 24 if single else 2 ** 53)
                              and v.scale <= (10 if single else 22)):
        # a Decimal parameter's exact DuckDB representation (trailing zeros, width) is not
        # known here; in this range the cast is one correctly rounded division, whatever it is
        raise Unsupported("Decimal parameter outside the exactly divided range")
    return v.value, v.scale


# --- comparisons -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """How DuckDB compares one column with some values, over the column's sorted keys.

    ``convert`` gives a value in the comparison's space. With ``exact``, that space is the
    rational numbers in the column's own units (integers, or ticks of a date or timestamp),
    whose comparison with the keys needs no rounding; ``exact`` is the range of the column's
    integer storage. Else ``key`` maps a sorted key into the comparison's space (None: the keys
    are already in it; a monotonic map, so the keys stay sorted)."""

    convert: Callable[[Typed], Any]
    key: Callable[[Any], Any] | None = None
    exact: tuple[int, int] | None = None


_INTEGER_WIDTHS = {pa.int8(): 3, pa.int16(): 5, pa.int32(): 10, pa.int64(): 19,
                   pa.uint8(): 3, pa.uint16(): 5, pa.uint32(): 10, pa.uint64(): 20}
_TICKS_NS = {"s": 10 ** 9, "ms": 10 ** 6, "us": 10 ** 3, "ns": 1}
_DAY_NS = 86_400 * 10 ** 9
_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_TIMESTAMP = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?)?")


def comparison(column_type: pa.DataType, values: Sequence[Typed],
               extremes: Callable[[], tuple[int, int] | None]) -> Comparison:
    """How DuckDB compares a column of ``column_type`` with ``values`` (the one value of a
    comparison, or all values of an IN list or BETWEEN: DuckDB types them together).
    ``extremes``: the column's smallest and largest key (None: no values). Unsupported when the
    fast path cannot reproduce it exactly."""
    vals = [v for v in values if v.kind != "null"]
    t = column_type
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        if any(v.kind != "varchar" for v in vals):
            raise Unsupported("a string column against a non-string")  # DuckDB casts the column
        return Comparison(lambda v: v.value)
    if pa.types.is_boolean(t):
        if any(v.kind != "bool" for v in vals):
            raise Unsupported("a boolean column against a non-boolean")
        return Comparison(lambda v: bool(v.value))
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        return _numeric(t, vals)
    if pa.types.is_date32(t) or (pa.types.is_timestamp(t) and t.tz is None):
        return _temporal(t, vals, extremes)
    raise Unsupported(f"column type {t}")


def _numeric(t: pa.DataType, vals: list[Typed]) -> Comparison:
    kinds = {v.kind for v in vals}
    if not kinds <= {"int", "decimal", "double"}:
        raise Unsupported("a number column against a non-number")  # DuckDB casts the string
    if pa.types.is_integer(t):
        if "double" in kinds:  # the column cast to DOUBLE: int64 beyond 2^53 rounds
            return Comparison(_to_double, key=float)
        if "decimal" in kinds:
            scale = max(v.scale for v in vals)
            over = max([_INTEGER_WIDTHS[t]] + [v.width - v.scale for v in vals])
            if over + scale > 38:
                raise Unsupported("DECIMAL wider than 38 digits")  # DuckDB caps it; it may overflow
        info = np.iinfo(t.to_pandas_dtype())
        return Comparison(lambda v: v.exact, exact=(int(info.min), int(info.max)))
    if t == pa.float32():
        if "double" in kinds:  # the column widened to DOUBLE (exact)
            return Comparison(_to_double, key=float)
        return Comparison(_to_float32)  # integer and decimal values cast to FLOAT
    if t == pa.float64():
        return Comparison(lambda v: np.float64(_to_double(v)))
    raise Unsupported(f"column type {t}")


def _temporal(t: pa.DataType, vals: list[Typed], extremes: Callable[[], tuple[int, int] | None]
              ) -> Comparison:
    # Every cast DuckDB makes here is exact (a date or a timestamp to a finer unit; a string to
    # the column's unit, accepted only when it is exact there), so the comparison is one of exact
    # instants: values become nanoseconds, then rationals in the column's ticks.
    date = pa.types.is_date32(t)
    tick = _DAY_NS if date else _TICKS_NS[t.unit]

    def convert(v: Typed) -> Fraction:
        if v.kind == "date":
            ns = v.value * _DAY_NS
        elif v.kind == "timestamp":
            ns = v.value * 1000
        elif v.kind == "varchar":
            ns = _parse_time(v.value, date)
            if ns % tick:  # DuckDB would round it to the column's unit
                raise Unsupported("a time string finer than the column's unit")
        else:
            raise Unsupported(f"a date/time column against {v.kind}")
        return Fraction(ns, tick)

    for v in vals:
        ticks = convert(v)  # Unsupported now rather than halfway through a query
        if not -2 ** 63 < ticks < 2 ** 63 - 1:  # e.g. year 1 as TIMESTAMP_NS: DuckDB raises
            raise Unsupported("a value outside the column type's range")
    if tick > 1000 and any(v.kind == "timestamp" for v in vals):
        # DuckDB casts the column to TIMESTAMP (microseconds), and raises if a value overflows
        ext = extremes()
        if ext is not None and max(abs(ext[0]), abs(ext[1])) * (tick // 1000) >= 2 ** 63 - 1:
            raise Unsupported("the column's values overflow a TIMESTAMP")
    lo, hi = (-2 ** 31, 2 ** 31 - 1) if date else (-2 ** 63, 2 ** 63 - 1)
    return Comparison(convert, exact=(lo, hi))


def _parse_time(text: str, date_only: bool) -> int:
    """Nanoseconds since 1970 of a strict ISO date (``YYYY-MM-DD``) or, unless ``date_only``,
    timestamp (``YYYY-MM-DD[ HH:MM:SS[.fffffffff]]``); Unsupported for any other text (DuckDB's
    parser accepts more, and rounds or refuses in its own way)."""
    m = (_DATE if date_only else _TIMESTAMP).fullmatch(text)
    if m is None:
        raise Unsupported("not a strict ISO date or timestamp")
    parts = m.groups()
    try:
        day = dt.date(int(parts[0]), int(parts[1]), int(parts[2]))
        clock = dt.time(int(parts[3]), int(parts[4]), int(parts[5])) if len(parts) > 3 and parts[3] \
            else dt.time()
    except ValueError:
        raise Unsupported("not a valid date or time") from None
    frac = parts[6] if len(parts) > 6 and parts[6] else ""
    seconds = (day - _EPOCH_DATE).days * 86_400 + clock.hour * 3600 + clock.minute * 60 + clock.second
    return seconds * 10 ** 9 + int(frac.ljust(9, "0") or "0")


def check_in_list(column_type: pa.DataType, cmp: Comparison, values: Sequence[Typed],
                  has_negative_zero: Callable[[], bool]) -> None:
    """Unsupported for an IN list of two or more values that DuckDB 1.5.5 answers differently
    from its own ``=``: it pushes such a list into its Arrow scan as a set of values, where

    - in a float column, -0.0 and 0.0 are different values (``x IN (0, 1)`` misses -0.0),
    - in a TIMESTAMP_NS column, a value with sub-microsecond digits matches nothing, and
    - in a UBIGINT column, a value above 2^63 - 1 raises an OverflowError.

    Those lists run on DuckDB, so that the answer (or the error) stays DuckDB's."""
    if len(values) < 2:
        return  # DuckDB rewrites a one-value IN into '='
    if pa.types.is_floating(column_type):
        for v in values:
            x = cmp.convert(v)
            if x == 0 and (np.signbit(x) or has_negative_zero()):
                raise Unsupported("IN list with a signed zero")
    elif column_type == pa.uint64():
        if any(v.kind == "int" and 2 ** 63 <= v.value < 2 ** 64 for v in values):
            raise Unsupported("IN list with UBIGINT values above 2^63 - 1")
    elif pa.types.is_timestamp(column_type) and column_type.unit == "ns":
        if any(cmp.convert(v) % 1000 for v in values):
            raise Unsupported("IN list with sub-microsecond timestamps")
