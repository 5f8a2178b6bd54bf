"""The JSON that ``vecstore serve`` and the remote client exchange, encoded and decoded in one place.

JSON has no dates, decimals or non-finite numbers, so those travel as one-key objects::

    {"$datetime": "2024-01-31T12:00:00"}   datetime (ISO 8601, with its offset when aware)
    {"$date": "2024-01-31"}                date
    {"$decimal": "12.50"}                  Decimal
    {"$float": "nan"}                      float NaN, "inf" or "-inf"
    {"$f32": "AACAPwAAAEA="}               a float32 vector: base64 of its little-endian bytes

Everything else is plain JSON. A vector may always be sent as a plain list of numbers; the
Python client sends NumPy float32 vectors as ``$f32`` (exact, and far cheaper to encode and
parse than hundreds of decimal numbers); answers carry vectors as lists. Any client may send
these forms (a JavaScript program sends ``{"$datetime": d.toISOString().slice(0, -1)}``); the
server decodes them before the Python API sees the request, and encodes results the same way.
Plans are serialised here too, so both ends read and write one format.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import math
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np

from .errors import InvalidArgumentError
from .query.results import Plan, Stage, Strategy

_FLOATS = {"nan": math.nan, "inf": math.inf, "-inf": -math.inf}


def _tag_float(x: float) -> dict[str, str]:
    return {"$float": "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")}


def _default(value: Any) -> Any:
    """What ``json.dumps`` cannot encode by itself."""
    if isinstance(value, dt.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"$date": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if isinstance(value, np.ndarray):
        if value.dtype == np.float32 and value.ndim == 1:
            return {"$f32": base64.b64encode(value.astype("<f4", copy=False).tobytes()).decode("ascii")}
        if value.dtype == np.float32 and value.ndim == 2:
            return list(value)
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            return [_tag_float(x) if not math.isfinite(x) else x for x in value.tolist()]
        return value.tolist()
    if isinstance(value, np.generic):
        item = value.item()
        if isinstance(item, float) and not math.isfinite(item):
            return _tag_float(item)
        return item
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    if isinstance(value, (bytes, bytearray)):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if hasattr(value, "isoformat"):  # pandas.Timestamp and the like
        return {"$datetime": value.isoformat()}
    raise InvalidArgumentError(f"cannot send a value of type {type(value).__name__} as JSON: {value!r:.80}")


def _finite(value: Any) -> Any:
    """``value`` with its non-finite floats tagged (the slow path, taken only when there are some)."""
    if isinstance(value, float) and not math.isfinite(value):
        return _tag_float(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any) -> bytes:
    """``value`` as UTF-8 JSON, with dates, decimals, NumPy values and NaN in the forms above."""
    try:
        text = json.dumps(value, default=_default, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    except ValueError as exc:
        if "Out of range float" not in str(exc):
            raise
        text = json.dumps(_finite(value), default=_default, allow_nan=False, ensure_ascii=False,
                          separators=(",", ":"))
    return text.encode("utf-8", "surrogatepass")


def _decode_tag(obj: dict[str, Any]) -> Any:
    if len(obj) != 1:
        return obj
    key, value = next(iter(obj.items()))
    if not key.startswith("$"):
        return obj
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{{{key!r}: ...}} takes a string, got {value!r:.80}")
    try:
        if key == "$datetime":
            return dt.datetime.fromisoformat(value)
        if key == "$date":
            return dt.date.fromisoformat(value)
        if key == "$decimal":
            return Decimal(value)
        if key == "$float":
            return _FLOATS[value]
        if key == "$bytes":
            return base64.b64decode(value, validate=True)
        if key == "$f32":
            raw = base64.b64decode(value, validate=True)
            if len(raw) % 4:
                raise ValueError(f"{len(raw)} bytes is not a whole number of float32 values")
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
    except (ValueError, KeyError, InvalidOperation, binascii.Error) as exc:
        raise InvalidArgumentError(f"bad {key} value {value!r:.80}: {exc}") from None
    return obj  # an ordinary one-key object whose key starts with "$"


def _refuse_constant(name: str) -> Any:
    raise InvalidArgumentError(f"invalid JSON: {name} is not a JSON value; send {{\"$float\": \"nan\"}} "
                               f"(or \"inf\", \"-inf\") for a non-finite number")


def loads(data: bytes | str) -> Any:
    """Parse UTF-8 JSON, decoding the tagged forms; anything else raises InvalidArgumentError."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError(f"the body is not UTF-8: {exc}") from None
    try:
        return json.loads(data, object_hook=_decode_tag, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise InvalidArgumentError(f"invalid JSON: {exc}") from None
    except RecursionError:
        raise InvalidArgumentError("invalid JSON: nested too deeply") from None


# -- plans and reports --------------------------------------------------------------------------
def plan_to_json(plan: Plan) -> dict[str, Any]:
    """A :class:`~vecstore.Plan` as JSON, with ``text`` (its printed form) for people."""
    return {
        "strategy": plan.strategy.value, "reason": plan.reason, "table_rows": plan.table_rows,
        "k": plan.k, "oversample": plan.oversample, "filter": plan.filter, "matches": plan.matches,
        "estimated_selectivity": plan.estimated_selectivity, "selectivity": plan.selectivity,
        "index": plan.index, "candidates": plan.candidates, "seconds": plan.seconds,
        "stages": [{"name": s.name, "rows_in": s.rows_in, "rows_out": s.rows_out, "seconds": s.seconds}
                   for s in plan.stages],
        "notes": list(plan.notes),
        "fallback_from": plan.fallback_from.value if plan.fallback_from is not None else None,
        "text": str(plan),
    }


def plan_from_json(d: dict[str, Any]) -> Plan:
    """The :class:`~vecstore.Plan` that :func:`plan_to_json` wrote."""
    return Plan(
        strategy=Strategy(d["strategy"]), reason=d["reason"], table_rows=d["table_rows"], k=d["k"],
        oversample=d["oversample"], filter=d.get("filter"), matches=d.get("matches"),
        estimated_selectivity=d.get("estimated_selectivity"), index=d.get("index"),
        stages=tuple(Stage(s["name"], s["rows_in"], s["rows_out"], s["seconds"]) for s in d["stages"]),
        notes=tuple(d.get("notes", ())),
        fallback_from=Strategy(d["fallback_from"]) if d.get("fallback_from") else None,
    )


__all__ = ["dumps", "loads", "plan_from_json", "plan_to_json"]
