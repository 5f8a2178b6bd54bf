"""Commands that read a store: tables, info, search, eval. STORE is a directory, or the URL of
a ``vecstore serve`` server (``http://127.0.0.1:8000``), which answers without loading torch or
the model in this process."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

from .. import connect
from ..db import Database
from ..errors import CorruptStoreError, InvalidArgumentError, NotFoundError
from ..remote import RemoteTable
from . import cli, emit

plain_option = click.option("--plain", is_flag=True, help="Aligned text for people instead of JSON lines.")
key_option = click.option("--api-key", envvar="VECSTORE_API_KEY", default=None, show_envvar=True,
                          help="The server's API key, when STORE is a URL.")
store_argument = click.argument("store")

F = TypeVar("F", bound=Callable[..., Any])
MODES = ("vector", "keyword", "hybrid")
FUSIONS = ("zscore", "rrf", "weighted")


def ranking_options(f: F) -> F:
    """The options of ``search`` and ``eval`` that choose how rows are ranked (``Query.fusion``
    and ``Query.rerank``); :func:`refinement` applies them."""
    options = [
        click.option("--fusion", type=click.Choice(FUSIONS), default=None,
                     help="How hybrid search fuses its rankings (default: zscore)."),
        click.option("--rrf-k", type=click.IntRange(0), default=None,
                     help="The rank constant of --fusion rrf (default 60)."),
        click.option("--alpha", type=click.FloatRange(0, 1), default=None,
                     help="The vector ranker's weight for --fusion weighted (default 0.5)."),
        click.option("--rerank", "reranker", default=None, metavar="RERANKER",
                     help="Re-score the best candidates: 'feedback', a local CrossEncoder directory, "
                     "or (STORE a URL) the name of a CrossEncoder the server allows."),
        click.option("--rerank-candidates", type=click.IntRange(1), default=50, show_default=True,
                     help="How many of the best rows --rerank re-scores."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def refinement(mode: str, fusion: str | None, rrf_k: int | None, alpha: float | None,
               reranker: str | None, rerank_candidates: int) -> Callable[[Any], Any]:
    """``query -> query`` with the ranking options applied; the fusion options only to a
    hybrid query (``eval --compare`` runs other modes with the same options)."""
    if fusion is None and (rrf_k is not None or alpha is not None):
        raise InvalidArgumentError("--rrf-k and --alpha go with --fusion rrf or --fusion weighted")

    def refine(q: Any) -> Any:
        if fusion is not None and mode == "hybrid":
            q = q.fusion(fusion, k=rrf_k, alpha=alpha)
        if reranker is not None:
            q = q.rerank(reranker, candidates=rerank_candidates)
        return q

    return refine


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
@click.option("--mode", type=click.Choice(MODES), default="vector", show_default=True,
              help="Rank by embedding (vector), by BM25 over the text (keyword), or both fused "
              "(hybrid).")
@ranking_options
@click.option("--group-by", default=None, metavar="COLUMN",
              help="The best rows of each value of COLUMN (e.g. doc_id: one hit per document).")
@click.option("--per-group", type=click.IntRange(1), default=None,
              help="Rows per group with --group-by (default 1).")
@click.option("--exact", is_flag=True, help="Score every match exactly (slow).")
@click.option("--explain", is_flag=True, help="Print the plan after the hits (to stderr).")
@key_option
@plain_option
def search(store: str, table: str, query: str, k: int, where: str | None, as_vector: bool, mode: str,
           fusion: str | None, rrf_k: int | None, alpha: float | None, reranker: str | None,
           rerank_candidates: int, group_by: str | None, per_group: int | None, exact: bool,
           explain: bool, api_key: str | None, plain: bool) -> None:
    """Search TABLE of STORE for QUERY (a text, or a vector with --vector) by vector, keyword
    or hybrid --mode. With a server URL as STORE the warm server embeds the text and runs the
    reranker: no model is loaded here."""
    if fusion is not None and mode != "hybrid":
        raise InvalidArgumentError(f"--fusion merges the rankings of --mode hybrid, not of --mode {mode}")
    if per_group is not None and group_by is None:
        raise InvalidArgumentError("--per-group goes with --group-by (the best rows of each group)")
    refine = refinement(mode, fusion, rrf_k, alpha, reranker, rerank_candidates)
    t = _connect(store, api_key).open_table(table)
    q: object = query
    if as_vector:
        try:
            q = np.asarray(json.loads(query), dtype=np.float32)
        except (ValueError, TypeError) as exc:
            raise InvalidArgumentError(f"--vector: QUERY is not a JSON list of numbers ({exc})") from None
    builder = t.search(q, mode=mode).limit(k)
    if where:
        builder = builder.where(where)
    if group_by is not None:
        builder = builder.group_by(group_by, per_group=per_group or 1)
    if exact:
        builder = builder.exact()
    hits = refine(builder).hits()
    cols = [c for c in hits.to_arrow().column_names if c != "vector"]
    emit(hits.to_arrow().select(cols).to_pylist(), plain, columns=cols)
    if explain:
        click.echo(str(hits.plan), err=True)


@cli.command()
@store_argument
@click.argument("table", required=False)
@plain_option
def check(store: str, table: str | None, plain: bool) -> None:
    """Read every file of TABLE's current version (of every table when TABLE is omitted) and
    check it against its recorded size and checksum. Exit status 1 names the damaged files."""
    if not Path(store).is_dir():  # a check never creates a store
        raise NotFoundError(f"no store at {store}: not a directory")
    db = Database(store)
    names = [table] if table else db.table_names()
    records, failed = [], []
    for name in names:
        try:
            report = db.open_table(name).verify()
        except CorruptStoreError as exc:
            failed.append(f"{name}: {exc}")
            records.append({"table": name, "ok": False, "error": str(exc)})
            continue
        records.append({"table": name, "ok": True, **report})
    emit(records, plain)
    if failed:
        raise CorruptStoreError(f"{len(failed)} of {len(names)} table(s) damaged")
