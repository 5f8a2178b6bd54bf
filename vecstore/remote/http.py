"""HTTP for the remote client: the standard library's ``http.client``, one keep-alive connection
per thread, and the server's errors raised again as the vecstore exceptions they name."""

from __future__ import annotations

import http.client
import select
import socket
import threading
import time
import urllib.parse
from typing import Any

from .. import errors as E
from ..wire import dumps, loads

# A connection idle longer than this is replaced before use: servers close idle keep-alive
# connections (uvicorn after 5 s by default), and a request sent just as the server closes one
# would fail in a way that cannot be retried safely.
MAX_IDLE_S = 4.0
_RAISES: dict[str, type[E.VecstoreError]] = {
    name: cls for name in E.__all__
    if isinstance(cls := getattr(E, name), type) and issubclass(cls, E.VecstoreError)
}
_SEND_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)


class Transport:
    """Requests to one server, with its API key, from any number of threads."""

    def __init__(self, url: str, api_key: str | None = None, timeout: float = 60.0) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise E.InvalidArgumentError(f"not a server URL: {url!r}; expected http://host:port")
        if parts.query or parts.fragment:
            raise E.InvalidArgumentError(f"the server URL {url!r} must not have a query or fragment")
        if api_key is not None and (not isinstance(api_key, str) or not api_key.isprintable()):
            raise E.InvalidArgumentError("api_key must be a printable string")
        if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout <= 0:
            raise E.InvalidArgumentError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        self._key = api_key
        self._timeout = float(timeout)
        self._local = threading.local()
        self.max_body_bytes: int | None = None  # the server's limit, once known (from /healthz)

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection, and whether it was used before."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and (time.monotonic() - self._local.used > MAX_IDLE_S or _dropped(conn)):
            conn.close()
            conn = None
        if conn is not None:
            return conn, True
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = cls(self._host, self._port, timeout=self._timeout)
        conn.connect()
        # http.client writes the headers and the body separately: without TCP_NODELAY the body
        # waits for the server's delayed ACK of the headers (milliseconds on every request)
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._local.conn = conn
        return conn, False

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None) -> Any:
        """Send one request and return its decoded JSON answer, or raise the error it names."""
        target = self._prefix + path
        if query:
            target += "?" + urllib.parse.urlencode(query, doseq=True)
        data = dumps(body) if body is not None else None
        if data is not None and self.max_body_bytes is not None and len(data) > self.max_body_bytes:
            raise E.InvalidArgumentError(
                f"the request body ({len(data):,} bytes) is over the server's limit of "
                f"{self.max_body_bytes:,} bytes; send fewer rows per request")
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._key is not None:
            headers["Authorization"] = f"Bearer {self._key}"
        for attempt in (0, 1):
            reused = False
            try:
                conn, reused = self._connection()
                status, payload = self._exchange(conn, method, target, data, headers)
            except _Retry as exc:
                self.close()
                if reused and attempt == 0:
                    continue  # the server had closed the idle connection; nothing was processed
                raise E.RemoteError(f"{method} {self.url}{path} failed: {exc.__cause__}") from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise E.RemoteError(f"{method} {self.url}{path} failed: {type(exc).__name__}: "
                                    f"{exc}") from None
            self._local.used = time.monotonic()
            return _answer(status, payload, f"{method} {self.url}{path}")
        raise AssertionError("unreachable")

    def _exchange(self, conn: http.client.HTTPConnection, method: str, target: str,
                  data: bytes | None, headers: dict[str, str]) -> tuple[int, bytes]:
        try:
            conn.request(method, target, body=data, headers=headers)
        except _SEND_ERRORS as exc:
            # The server may have answered before reading everything (413: body too large):
            # read that answer if there is one.
            try:
                resp = conn.getresponse()
            except (OSError, http.client.HTTPException):
                raise _Retry from exc
            payload = resp.read()
            self.close()
            return resp.status, payload
        try:
            resp = conn.getresponse()
        except http.client.RemoteDisconnected as exc:
            if method == "GET":
                raise _Retry from exc  # a read is safe to send again
            raise
        payload = resp.read()
        if resp.will_close:
            self.close()
        return resp.status, payload


def _dropped(conn: http.client.HTTPConnection) -> bool:
    """Whether the server closed this idle connection: its socket reads (EOF) without waiting."""
    sock = conn.sock
    if sock is None:
        return False
    try:
        return bool(select.select([sock], [], [], 0)[0])
    except (OSError, ValueError):
        return True


class _Retry(Exception):
    pass


def _answer(status: int, payload: bytes, what: str) -> Any:
    if 200 <= status < 300:
        return loads(payload)
    try:
        err = loads(payload)["error"]
        kind, message = str(err["type"]), str(err["message"])
    except (E.VecstoreError, KeyError, TypeError):
        text = payload[:200].decode("utf-8", "replace")
        raise E.RemoteError(f"{what}: HTTP {status} that is not a vecstore error: {text!r}") from None
    raise _RAISES.get(kind, E.VecstoreError)(message)


__all__ = ["MAX_IDLE_S", "Transport"]
