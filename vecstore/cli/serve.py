"""``vecstore serve``: the store over HTTP (see docs/server.md)."""

from __future__ import annotations

import ipaddress

import click

from . import cli


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


@cli.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 exposes the server to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--api-key", envvar="VECSTORE_API_KEY", show_envvar=True, default=None,
              help="Key every request but /healthz must send as 'Authorization: Bearer KEY'. "
              "Prefer the environment variable: arguments show in `ps`.")
@click.option("--read-only-key", envvar="VECSTORE_READ_ONLY_KEY", show_envvar=True, default=None,
              help="A second key that may only read (writes answer 403).")
@click.option("--max-body-mb", default=32, show_default=True, type=click.IntRange(1, 4096),
              help="Larger request bodies are refused with 413.")
@click.option("--max-rows", default=10_000, show_default=True, type=click.IntRange(1),
              help="The most rows, ids, documents or queries in one request (413 beyond).")
@click.option("--query-timeout", default=30.0, show_default=True, type=click.FloatRange(0),
              help="Seconds a search or count may run before it is stopped and answered 504 "
              "(0: no limit).")
@click.option("--model", "models", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A model directory clients may name as a new table's embedder, besides "
              "'default' (repeatable).")
@click.option("--reranker", "rerankers", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="A sentence-transformers CrossEncoder directory a search may name, by the "
              "directory's name, as its rerank (besides 'feedback'; repeatable).")
@click.option("--warm/--no-warm", default=True, show_default=True,
              help="Load the tables' embedding models at startup instead of on first use.")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(store: str, host: str, port: int, api_key: str | None, read_only_key: str | None,
          max_body_mb: int, max_rows: int, query_timeout: float, models: tuple[str, ...],
          rerankers: tuple[str, ...], warm: bool, log_level: str) -> None:
    """Serve STORE over HTTP: the JSON API (OpenAPI at /docs), a search page at /, and the
    embedding model kept warm. Needs the server extra: pip install 'vecstore[server]'."""
    from ..server import ServerSettings
    from ..server import serve as run

    settings = ServerSettings(api_key=api_key or None, read_only_key=read_only_key or None,
                              max_body_bytes=max_body_mb * 1024 * 1024, max_rows=max_rows,
                              warm=warm, models=models, rerankers=rerankers,
                              query_timeout=query_timeout or None)
    if settings.api_key is None and not _is_loopback(host):
        click.echo(f"warning: serving {host} without an API key: anyone who can reach it may read "
                   f"and write the store (set VECSTORE_API_KEY)", err=True)
    run(store, host=host, port=port, settings=settings, log_level=log_level)
