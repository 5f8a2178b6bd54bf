"""The FastAPI app: auth, limits, errors, the routes of :mod:`.routes`, the search page, /docs.

Every route runs the same way (:func:`_endpoint`): check the key (before the body is read),
read the body (the size limit is enforced as it arrives), then, on a worker thread, parse the
JSON, validate it against the route's request model, call the handler and encode the result.
Reads and writes run on separate thread limits, so writers waiting for a table's lock never
take the threads that readers need.
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, get_origin

import anyio
import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, Response
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from ..errors import AuthenticationError, ReadOnlyError, VecstoreError
from ..wire import dumps, loads
from . import ServerSettings
from .errors import error_body, headers_for, status_of, type_name
from .routes import ROUTES, Context, Route
from .store import Store

log = logging.getLogger("vecstore.server")
STATIC = Path(__file__).parent / "static"
JSON = "application/json"
PAGE_HEADERS = {
    # the page loads only its own files; nothing external, nothing inline
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _error(status: int, type_: str, message: str) -> Response:
    return Response(dumps(error_body(type_, message)), status_code=status, media_type=JSON,
                    headers=headers_for(status))


def _validation_message(exc: ValidationError | RequestValidationError) -> str:
    parts = []
    errors = list(exc.errors())
    if any(e.get("type") != "is_instance_of" for e in errors):  # the $f32 branch of a vector
        errors = [e for e in errors if e.get("type") != "is_instance_of"]
    for e in errors[:5]:
        # field path without pydantic's union branch names ("vector.list[float].0" -> "vector.0")
        loc = ".".join(str(x) for x in e.get("loc", ()) if x != "body" and "[" not in str(x)) or "body"
        got = e.get("input")
        shown = "" if isinstance(got, (dict, list)) else f" (got {got!r:.60})"
        parts.append(f"{loc}: {e.get('msg', 'invalid')}{shown}")
    more = len(errors) - 5
    return "invalid request: " + "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def error_response(exc: Exception) -> Response:
    if isinstance(exc, VecstoreError):
        return _error(status_of(exc), type_name(exc), str(exc))
    if isinstance(exc, ValidationError):
        return _error(400, "InvalidArgumentError", _validation_message(exc))
    log.exception("internal error")
    return _error(500, "VecstoreError", f"internal error ({type(exc).__name__}): {exc}")


class _TooLarge(Exception):
    pass


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes with 413: at once when Content-Length says
    so (nothing of the body is read), else as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                declared = -1
            if declared < 0:
                await _error(400, "InvalidArgumentError", "bad Content-Length header")(scope, receive, send)
                return
            if declared > self.limit:
                await self._refuse(declared, scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(received, scope, receive, send)

    async def _refuse(self, size: int, scope: Scope, receive: Receive, send: Send) -> None:
        msg = (f"the request body ({size:,} bytes or more) is over this server's limit of "
               f"{self.limit:,} bytes; send fewer rows per request, or start the server with a "
               f"larger --max-body-mb")
        await _error(413, "InvalidArgumentError", msg)(scope, receive, send)


class _State:
    """What the endpoints share: the store, the settings and the two thread limits."""

    def __init__(self, store: Store, settings: ServerSettings) -> None:
        self.store = store
        self.settings = settings
        self.context = Context(store=store, max_rows=settings.max_rows,
                               max_body_bytes=settings.max_body_bytes)
        self.keys = [(k.encode("utf-8"), write) for k, write in
                     ((settings.api_key, True), (settings.read_only_key, False)) if k is not None]
        self.readers: anyio.CapacityLimiter | None = None
        self.writers: anyio.CapacityLimiter | None = None

    def may_write(self, request: Request) -> bool:
        """Whether the request's key may write; AuthenticationError without a valid key. Every
        key is compared (in constant time) whatever matched."""
        if not self.keys:
            return True
        header = dict(request.scope["headers"]).get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        token = token.strip()
        if scheme.lower() != b"bearer" or not token:
            raise AuthenticationError("this server needs an API key: send the header "
                                      "'Authorization: Bearer KEY'")
        matches = [write for key, write in self.keys if hmac.compare_digest(token, key)]
        if not matches:
            raise AuthenticationError("the API key is not valid for this server")
        return matches[0]


def _query_fields(request: Request, route: Route) -> dict[str, Any]:
    """A GET route's request model from the query string: list fields repeat (``?ids=a&ids=b``),
    ``true``/``false`` are booleans."""
    assert route.body is not None
    out: dict[str, Any] = {}
    for key in request.query_params:
        values = request.query_params.getlist(key)
        field = route.body.model_fields.get(key)
        if field is not None and get_origin(field.annotation) is list:
            out[key] = values
        elif len(values) == 1 and values[0] in ("true", "false"):
            out[key] = values[0] == "true"
        else:
            out[key] = values[0] if len(values) == 1 else values
    return out


def _run(state: _State, route: Route, name: str | None, raw: bytes | None,
         fields: dict[str, Any] | None) -> bytes:
    """Parse and validate the request, call the handler, encode the answer (on a worker thread)."""
    request = None
    if route.body is not None:
        if raw is not None:
            if not raw.strip():
                raise RequestValidationError([{"loc": ("body",), "msg": "the body is empty; send a JSON "
                                               "object", "input": None}])
            data = loads(raw)
        else:
            data = fields
        if not isinstance(data, dict):
            raise RequestValidationError([{"loc": ("body",), "msg": "the body must be a JSON object",
                                           "input": type(data).__name__}])
        request = route.body.model_validate(data)
    return dumps(route.handler(state.context, name, request))


def _endpoint(state: _State, route: Route) -> Any:
    async def endpoint(request: Request) -> Response:
        try:
            if not route.public:
                if not state.may_write(request) and route.write:
                    raise ReadOnlyError("this API key may only read; writes need the read-write key")
            raw = await request.body() if route.body is not None and not route.from_query else None
            fields = _query_fields(request, route) if route.from_query else None
            limiter = state.writers if route.write else state.readers
            payload = await anyio.to_thread.run_sync(
                _run, state, route, request.path_params.get("name"), raw, fields, limiter=limiter)
            return Response(payload, status_code=route.status, media_type=JSON)
        except ClientDisconnect:
            raise
        except _TooLarge:
            raise
        except RequestValidationError as exc:
            return _error(400, "InvalidArgumentError", _validation_message(exc))
        except Exception as exc:
            return error_response(exc)

    endpoint.__name__ = f"{route.method.lower()}_{route.handler.__name__}"
    return endpoint


def _openapi_extra(route: Route) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    params = []
    if "{name}" in route.path:
        params.append({"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                       "description": "the table"})
    if route.body is not None and route.from_query:
        for fname, f in route.body.model_fields.items():
            schema = {"type": "array", "items": {"type": "string"}} if get_origin(f.annotation) is list \
                else {"type": "boolean"}
            params.append({"name": fname, "in": "query", "required": f.is_required(), "schema": schema})
    elif route.body is not None:
        extra["requestBody"] = {"required": True, "content": {JSON: {
            "schema": route.body.model_json_schema(ref_template="#/components/schemas/{model}")}}}
    if params:
        extra["parameters"] = params
    if not route.public:
        extra["security"] = [{"bearer": []}]
    return extra


def build_app(store_path: str | os.PathLike[str], settings: ServerSettings) -> FastAPI:
    store = Store(store_path, settings.models, settings.rerankers, settings.query_timeout)
    state = _State(store, settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.readers = anyio.CapacityLimiter(settings.read_threads)
        state.writers = anyio.CapacityLimiter(settings.write_threads)
        if settings.warm:
            threading.Thread(target=store.warm, name="vecstore-warm", daemon=True).start()
        yield

    app = FastAPI(title="vecstore", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, description="The vecstore Python API over HTTP. See docs/server.md.")
    app.openapi_version = "3.0.3"  # the bundled Swagger UI (4.x) reads 3.0 documents
    app.state.vecstore = state
    for route in ROUTES:
        app.add_api_route(route.path, _endpoint(state, route), methods=[route.method],
                          summary=f"{route.method} {route.path}", description=f"Calls `{route.api}`.",
                          openapi_extra=_openapi_extra(route), status_code=route.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        kind = "NotFoundError" if exc.status_code == 404 else "InvalidArgumentError" \
            if exc.status_code < 500 else "VecstoreError"
        message = f"no route {request.method} {request.url.path}" if exc.status_code in (404, 405) \
            else str(exc.detail)
        return _error(exc.status_code, kind, message)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        return _error(400, "InvalidArgumentError", _validation_message(exc))

    _page_and_docs(app)
    _add_security_scheme(app)
    app.add_middleware(BodyLimit, limit=settings.max_body_bytes)
    return app


def _page_and_docs(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    async def page() -> Response:
        return FileResponse(STATIC / "index.html", headers=PAGE_HEADERS)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        swagger_ui_path = None
    if swagger_ui_path is not None:
        app.mount("/docs-assets", StaticFiles(directory=swagger_ui_path), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        if swagger_ui_path is None:
            return HTMLResponse("<p>The API description is at <a href='/openapi.json'>/openapi.json</a>; "
                                "install swagger-ui-bundle (part of vecstore[server]) for this page.</p>")
        return get_swagger_ui_html(openapi_url="/openapi.json", title="vecstore API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon-32x32.png")


def _add_security_scheme(app: FastAPI) -> None:
    plain = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = plain()
            schema.setdefault("components", {})["securitySchemes"] = {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "the server's API key (or its read-only key)"}}
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["BodyLimit", "build_app", "error_response"]
