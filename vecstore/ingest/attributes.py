"""Typed document attributes from text: ``--attr year=2021`` and ``--attr-from-path``.

A value written as text becomes the type it reads as: ``2021`` an int, ``2.5`` a float,
``true``/``false`` a bool, ``2021-03-04`` a date, ``2021-03-04T10:30:00`` (or with a space) a
datetime, anything else a string. ``name:type=value`` says the type (``str``, ``int``,
``float``, ``bool``, ``date``, ``datetime``), e.g. ``code:str=0042`` keeps the zeros.

>>> parse_attribute("year=2021"), parse_attribute("code:str=0042"), parse_attribute("on=true")
(('year', 2021), ('code', '0042'), ('on', True))
>>> pattern = PathPattern("{team}/{year}/*")
>>> pattern.match("blue/2021/notes.md")
{'team': 'blue', 'year': '2021'}
>>> type_columns([{"year": "2021"}, {"year": "2022"}, {}])
[{'year': 2021}, {'year': 2022}, {}]
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Sequence
from typing import Any

from ..errors import InvalidArgumentError

_INT = re.compile(r"[+-]?\d+")
_FLOAT = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("true", "yes"):
        return True
    if low in ("false", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean (true/false/yes/no)")


def _int(text: str) -> int:
    if not _INT.fullmatch(text.strip()):
        raise ValueError(f"{text!r} is not an integer")
    return int(text)


def _date(text: str) -> datetime.date:
    return datetime.date.fromisoformat(text.strip())


def _datetime(text: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(text.strip())


TYPES: dict[str, Callable[[str], Any]] = {
    "str": str, "int": _int, "float": float, "bool": _bool, "date": _date, "datetime": _datetime,
}
"""The explicit types of ``name:type=value``."""


def infer_value(text: str) -> Any:
    """``text`` as the value it reads as (see the module docstring)."""
    s = text.strip()
    if _INT.fullmatch(s) and not (len(s.lstrip("+-")) > 1 and s.lstrip("+-").startswith("0")):
        return int(s)  # "0042" stays a string: leading zeros are part of a code
    if _FLOAT.fullmatch(s) and any(c in s for c in ".eE"):
        return float(s)
    if s.lower() in ("true", "false"):
        return s.lower() == "true"
    try:
        if _DATE.fullmatch(s):
            return _date(s)
        if _DATETIME.fullmatch(s):
            return _datetime(s)
    except ValueError:
        pass  # "2021-13-45" is a string
    return text


def convert(text: str, type_name: str | None) -> Any:
    """``text`` converted to ``type_name`` (one of :data:`TYPES`), or inferred when None."""
    if type_name is None:
        return infer_value(text)
    conv = TYPES.get(type_name.strip().lower())
    if conv is None:
        raise InvalidArgumentError(
            f"unknown attribute type {type_name!r}; expected one of {', '.join(TYPES)}")
    try:
        return conv(text)
    except ValueError as exc:
        raise InvalidArgumentError(f"cannot read {text!r} as {type_name}: {exc}") from None


def parse_attribute(pair: str) -> tuple[str, Any]:
    """``"name=value"`` or ``"name:type=value"`` -> ``(name, typed value)``."""
    key, sep, value = pair.partition("=")
    name, colon, type_name = key.partition(":")
    name = name.strip()
    if not sep or not name:
        raise InvalidArgumentError(f"--attr takes name=value or name:type=value, got {pair!r}")
    return name, convert(value, type_name if colon else None)


_FIELD = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")


class PathPattern:
    """Attributes read from a document's path (relative to the root), e.g. ``{team}/{year}/*``:
    ``{name}`` (or ``{name:type}``) matches one path segment or part of one, ``*`` any text
    within a segment, ``**`` any number of segments. A pattern matches the start of the path
    (``{team}`` alone takes the first directory of every path) and the values are typed
    column by column (:func:`type_columns`) unless the field names its type."""

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or not pattern.strip():
            raise InvalidArgumentError("the path pattern is empty; e.g. '{team}/{year}/*'")
        self.pattern = pattern.strip().strip("/")
        self.types: dict[str, str | None] = {}
        out, pos = [], 0
        for m in _FIELD.finditer(self.pattern):
            out.append(self._glob(self.pattern[pos:m.start()]))
            name, type_name = m.group(1), m.group(2)
            if name in self.types:
                raise InvalidArgumentError(f"{{{name}}} appears twice in the path pattern {pattern!r}")
            if type_name is not None and type_name not in TYPES:
                raise InvalidArgumentError(
                    f"unknown type {type_name!r} in {{{name}:{type_name}}}; "
                    f"expected one of {', '.join(TYPES)}")
            self.types[name] = type_name
            out.append(f"(?P<{name}>[^/]+?)")
            pos = m.end()
        out.append(self._glob(self.pattern[pos:]))
        if not self.types:
            raise InvalidArgumentError(f"the path pattern {pattern!r} names no {{field}}; e.g. '{{team}}/*'")
        self.regex = re.compile("".join(out) + "(?=/|$)")

    @staticmethod
    def _glob(text: str) -> str:
        parts = re.split(r"(\*\*/?|\*)", text)
        return "".join(".*" if p.startswith("**") else "[^/]*" if p == "*" else re.escape(p) for p in parts)

    def match(self, path: str) -> dict[str, Any] | None:
        """The fields of ``path`` (typed where the pattern says so, else strings), or None."""
        m = self.regex.match(path)
        if m is None:
            return None
        return {k: (convert(v, self.types[k]) if self.types[k] else v) for k, v in m.groupdict().items()}


def type_columns(rows: Sequence[dict[str, Any]],
                 columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Type the string values of each column (of ``columns``, or all) together: a column whose
    every value reads as an int becomes ints, and so on for float, bool, date and datetime; a
    column with values of mixed kinds stays strings, so one document cannot change another's
    type."""
    names = list(columns) if columns is not None else sorted({k for r in rows for k in r})
    out = [dict(r) for r in rows]
    for name in names:
        values = [r[name] for r in out if isinstance(r.get(name), str)]
        if not values:
            continue
        typed = [infer_value(v) for v in values]
        kinds = {type(v) for v in typed}
        if len(kinds) == 1 and kinds != {str}:
            it = iter(typed)
            for r in out:
                if isinstance(r.get(name), str):
                    r[name] = next(it)
        elif kinds == {int, float}:
            for r in out:
                if isinstance(r.get(name), str):
                    r[name] = float(r[name])
    return out


__all__ = ["TYPES", "PathPattern", "convert", "infer_value", "parse_attribute", "type_columns"]
