"""``vecstore serve``: the Python API over HTTP, as a thin layer (FastAPI on uvicorn).

Routes parse and check a request, call the public API of one store (one
:class:`~vecstore.Database`, one shared :class:`~vecstore.Table` per table) off the event loop,
and format the result; errors map to HTTP statuses in :mod:`vecstore.server.errors`. The
routes are listed in :mod:`vecstore.server.routes`, one request model and one handler each.
FastAPI and uvicorn are imported only here, when a server is made (``pip install
'vecstore[server]'``). The client is :mod:`vecstore.remote` (``vecstore.connect("http://...")``).

>>> from vecstore.server import ServerSettings
>>> ServerSettings(api_key="s3cret").max_body_bytes
33554432
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import check_timeout
from ..errors import InvalidArgumentError, missing_extra

DEFAULT_MAX_BODY_BYTES = 32 * 1024 * 1024
DEFAULT_MAX_ROWS = 10_000
DEFAULT_QUERY_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServerSettings:
    """How a server runs. Keys are compared in constant time; ``None`` turns auth off.

    - ``api_key``: the key for every route (reads and writes).
    - ``read_only_key``: a second key that may only read (writes answer 403).
    - ``max_body_bytes``: larger request bodies are refused with 413 before they are read.
    - ``max_rows``: the most rows, ids, documents or queries one request may carry (413 beyond).
    - ``warm``: load the embedding model of every table that has one at startup (in the
      background; ``/healthz`` says when it is ready) instead of on the first request.
    - ``models``: model directories that ``POST /tables`` may name as ``embedder`` besides
      ``"default"`` (a remote client cannot make the server load any other path).
    - ``rerankers``: sentence-transformers CrossEncoder directories that a search may name, by
      the directory's name, as its ``rerank`` (besides ``"feedback"``, which needs no model);
      a request never names a path.
    - ``read_threads`` / ``write_threads``: threads that run reads and writes (writers beyond
      ``write_threads`` wait without holding a thread, so reads always find one).
    - ``query_timeout``: seconds a search or count may run (None: no limit); a query past it is
      stopped and answered 504 (``QueryTimeoutError``). A request may ask for less, never more.
    """

    api_key: str | None = None
    read_only_key: str | None = None
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_rows: int = DEFAULT_MAX_ROWS
    warm: bool = True
    models: tuple[str, ...] = field(default_factory=tuple)
    rerankers: tuple[str, ...] = field(default_factory=tuple)
    read_threads: int = 32
    write_threads: int = 8
    query_timeout: float | None = DEFAULT_QUERY_TIMEOUT_S

    def __post_init__(self) -> None:
        for name in ("api_key", "read_only_key"):
            key = getattr(self, name)
            if key is not None and (not isinstance(key, str) or not key.strip() or not key.isprintable()):
                raise InvalidArgumentError(f"{name} must be a non-empty printable string")
        if self.api_key is None and self.read_only_key is not None:
            raise InvalidArgumentError("a read-only key needs an api_key too (otherwise anyone may write)")
        if self.api_key is not None and self.api_key == self.read_only_key:
            raise InvalidArgumentError("api_key and read_only_key must differ")
        for name in ("max_body_bytes", "max_rows", "read_threads", "write_threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidArgumentError(f"{name} must be a positive integer, got {value!r}")
        object.__setattr__(self, "query_timeout", check_timeout(self.query_timeout, "query_timeout"))
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        object.__setattr__(self, "rerankers", tuple(str(m) for m in self.rerankers))
        names = [Path(m).name for m in self.rerankers]
        for name in names:
            if not name or name.lower() in ("feedback", "prf") or names.count(name) > 1:
                raise InvalidArgumentError(
                    f"reranker directories are named by their last component, which must be unique "
                    f"and not 'feedback': got {list(self.rerankers)!r}")


def create_app(store: str | os.PathLike[str], settings: ServerSettings | None = None) -> Any:
    """The ASGI app (a ``fastapi.FastAPI``) serving the store at ``store``."""
    try:
        from .app import build_app
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("fastapi", "starlette", "pydantic", "anyio"):
            raise missing_extra(exc.name, "server") from None
        raise
    return build_app(store, settings or ServerSettings())


def serve(store: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 8000,
          settings: ServerSettings | None = None, log_level: str = "info") -> None:
    """Serve ``store`` on ``host:port`` until interrupted (Ctrl-C or SIGTERM)."""
    try:
        import uvicorn
    except ModuleNotFoundError:
        raise missing_extra("uvicorn", "server") from None
    app = create_app(store, settings)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=30,
                server_header=False)


__all__ = ["DEFAULT_MAX_BODY_BYTES", "DEFAULT_MAX_ROWS", "DEFAULT_QUERY_TIMEOUT_S", "ServerSettings",
           "create_app", "serve"]
