"""Commands that read a store: tables, info, search. STORE is a directory, or the URL of a
``vecstore serve`` server (``http://127.0.0.1:8000``), which answers without loading torch or
the model in this process."""

from __future__ import annotations

import json
from typing import Any

import click
import numpy as np

from .. import connect
from ..db import Database
from ..errors import InvalidArgumentError
from ..remote import RemoteTable
from . import cli, emit

plain_option = click.option("--plain", is_flag=True, help="Aligned text for people instead of JSON lines.")
key_option = click.option("--api-key", envvar="VECSTORE_API_KEY", default=None, show_envvar=True,
                          help="The server's API key, when STORE is a URL.")
store_argument = click.argument("store")


def _connect(store: str, api_key: str | None) -> Any:
    """A local store (which must exist: these commands only read, and never create a
    directory), or a server when STORE is a URL."""
    if store.lower().startswith(("http://", "https://")):
        return connect(store, api_key=api_key)
    return connect(store, create=False)


@cli.command()
@store_argument
@key_option
@plain_option
def tables(store: str, api_key: str | None, plain: bool) -> None:
    """List the tables in STORE (a directory or a server URL) with their row counts."""
    db = _connect(store, api_key)
    records = []
    for name in db.table_names():
        t = db.open_table(name)
        records.append({"table": name, "rows": len(t), "dim": t.dim, "metric": t.metric.value,
                        "version": t.version})
    emit(records, plain)


@cli.command()
@store_argument
@click.argument("table")
@key_option
@plain_option
def info(store: str, table: str, api_key: str | None, plain: bool) -> None:
    """Show a table's settings, columns and size, and (for a local store) how many documents
    it holds."""
    t = _connect(store, api_key).open_table(table)
    columns = t.info()["columns"] if isinstance(t, RemoteTable) else {f.name: str(f.type) for f in t.schema}
    record = {
        "table": table, "rows": len(t), "dim": t.dim, "metric": t.metric.value,
        "embedder": t.config.embedder, "version": t.version, "columns": columns,
    }
    if not isinstance(t, RemoteTable):  # the server has no documents route
        record["documents"] = t.documents().num_rows
    if plain:
        for key, value in record.items():
            click.echo(f"{key:>9}: {value}")
    else:
        emit([record], plain=False)


@cli.command()
@store_argument
@click.argument("table")
@plain_option
def documents(store: str, table: str, plain: bool) -> None:
    """List the documents of TABLE in STORE (a directory): id, source, chunks, content hash,
    when ingested."""
    emit(Database(store, create=False).open_table(table).list_documents(), plain)


@cli.command()
@store_argument
@click.argument("table")
@click.argument("query")
@click.option("-k", "--limit", "k", default=10, show_default=True, help="How many hits.")
@click.option("--where", default=None, help="SQL filter over the attributes, e.g. \"year > 2020\".")
@click.option("--vector", "as_vector", is_flag=True, help="QUERY is a JSON list of numbers.")
@click.option("--exact", is_flag=True, help="Score every match exactly (slow).")
@click.option("--explain", is_flag=True, help="Print the plan after the hits (to stderr).")
@key_option
@plain_option
def search(store: str, table: str, query: str, k: int, where: str | None, as_vector: bool,
           exact: bool, explain: bool, api_key: str | None, plain: bool) -> None:
    """Search TABLE of STORE for QUERY (a text, or a vector with --vector). With a server URL
    as STORE the warm server embeds the text: no model is loaded here."""
    t = _connect(store, api_key).open_table(table)
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
