"""``vecstore cleanup``: remove old versions and the files only they used (``Table.cleanup``)."""

from __future__ import annotations

import re
from typing import Any

import click

from ..errors import InvalidArgumentError
from . import cli, emit
from .commands import _connect, key_option, plain_option, store_argument

_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*", re.IGNORECASE)


def parse_duration(text: str) -> float:
    """Seconds in ``"0"``, ``"90"``, ``"90s"``, ``"30m"``, ``"12h"``, ``"7d"``, ``"2w"``."""
    m = _DURATION.fullmatch(text)
    if m is None:
        raise InvalidArgumentError(f"--older-than: {text!r} is not a duration; use e.g. 0, 90s, 30m, "
                                   f"12h, 7d or 2w")
    return float(m.group(1)) * _UNITS[m.group(2).lower()]


@cli.command()
@store_argument
@click.argument("table", required=False)
@click.option("--older-than", default="7d", show_default=True,
              help="Keep versions superseded less than this long ago (0, 90s, 30m, 12h, 7d, 2w).")
@click.option("--keep-last", default=1, show_default=True, type=click.IntRange(1),
              help="Keep at least this many of the newest versions.")
@key_option
@plain_option
def cleanup(store: str, table: str | None, older_than: str, keep_last: int, api_key: str | None,
            plain: bool) -> None:
    """Remove old versions of TABLE (every table when omitted) and the files only they used,
    with what crashes left behind. Versions checked out by a running process, and index builds
    in progress, keep their files."""
    seconds = parse_duration(older_than)
    db = _connect(store, api_key)
    names = [table] if table is not None else db.table_names()
    records: list[dict[str, Any]] = []
    for name in names:
        report = db.open_table(name).cleanup(older_than=seconds, keep_last=keep_last)
        records.append(report if isinstance(report, dict) else report.to_json())
    emit(records, plain)
