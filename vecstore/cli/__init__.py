"""The ``vecstore`` command line: thin wrappers over the public API.

Output is JSON lines by default (one object per line, for programs) and aligned text with
``--plain`` (for people). A :class:`~vecstore.VecstoreError` becomes a one-line message on stderr
and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import click

from ..errors import VecstoreError

F = TypeVar("F", bound=Callable[..., Any])


def _jsonable(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def emit(records: Iterable[dict[str, Any]], plain: bool, columns: list[str] | None = None) -> None:
    """Write records as JSON lines, or as an aligned text table with ``plain``."""
    records = list(records)
    if not plain:
        for r in records:
            click.echo(json.dumps(_jsonable(r), ensure_ascii=False))
        return
    if not records:
        click.echo("(no rows)")
        return
    cols = columns or list(records[0])
    cells = [[_short(r.get(c)) for c in cols] for r in records]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    click.echo("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for row in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _short(value: Any, width: int = 80) -> str:
    if isinstance(value, float):
        text = f"{value:.4f}"
    else:
        text = str(_jsonable(value)).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except VecstoreError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="vecstore")
def cli() -> None:
    """vecstore: embedded vector search with filters and built-in embedding."""


def main() -> None:
    cli(prog_name="vecstore")


from . import commands, ingest, serve  # noqa: E402,F401  (registers the commands on `cli`)
