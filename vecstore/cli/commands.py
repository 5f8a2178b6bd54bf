"""Commands that read a store: tables, info, search, and the demo."""

from __future__ import annotations

import json

import click
import numpy as np

from .. import connect
from ..errors import InvalidArgumentError
from . import cli, emit

plain_option = click.option("--plain", is_flag=True, help="Aligned text for people instead of JSON lines.")


@cli.command()
@click.argument("store", type=click.Path(file_okay=False))
@plain_option
def tables(store: str, plain: bool) -> None:
    """List the tables in STORE with their row counts."""
    db = connect(store, create=False)
    records = []
    for name in db.table_names():
        t = db.open_table(name)
        records.append({"table": name, "rows": len(t), "dim": t.dim, "metric": t.metric.value,
                        "version": t.version})
    emit(records, plain)


@cli.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("table")
@plain_option
def info(store: str, table: str, plain: bool) -> None:
    """Show a table's settings, columns and size, and how many documents it holds."""
    t = connect(store, create=False).open_table(table)
    record = {
        "table": table, "rows": len(t), "dim": t.dim, "metric": t.metric.value,
        "embedder": t.config.embedder, "version": t.version,
        "columns": {f.name: str(f.type) for f in t.schema},
        "documents": t.documents().num_rows,
    }
    if plain:
        for key, value in record.items():
            click.echo(f"{key:>9}: {value}")
    else:
        emit([record], plain=False)


@cli.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("table")
@plain_option
def documents(store: str, table: str, plain: bool) -> None:
    """List the documents of TABLE: id, source, chunks, content hash, when ingested."""
    emit(connect(store, create=False).open_table(table).list_documents(), plain)


@cli.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("table")
@click.argument("query")
@click.option("-k", "--limit", "k", default=10, show_default=True, help="How many hits.")
@click.option("--where", default=None, help="SQL filter over the attributes, e.g. \"year > 2020\".")
@click.option("--vector", "as_vector", is_flag=True, help="QUERY is a JSON list of numbers.")
@click.option("--exact", is_flag=True, help="Score every match exactly (slow).")
@click.option("--explain", is_flag=True, help="Print the plan after the hits (to stderr).")
@plain_option
def search(store: str, table: str, query: str, k: int, where: str | None, as_vector: bool,
           exact: bool, explain: bool, plain: bool) -> None:
    """Search TABLE for QUERY (a text, or a vector with --vector)."""
    t = connect(store, create=False).open_table(table)
    q: object = query
    if as_vector:
        try:
            q = np.asarray(json.loads(query), dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(f"--vector: QUERY is not a JSON list of numbers ({exc})") from None
    builder = t.search(q).limit(k)
    if where:
        builder = builder.where(where)
    if exact:
        builder = builder.exact()
    hits = builder.hits()
    cols = [c for c in hits.to_arrow().column_names if c != "vector"]
    emit(hits.to_arrow().select(cols).to_pylist(), plain, columns=cols)
    if explain:
        click.echo(str(hits.plan), err=True)
