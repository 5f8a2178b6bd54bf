"""Real servers for the tests: uvicorn in a thread of the test process (cheap, one per session),
or ``vecstore serve`` in a subprocess (for SIGKILL and for clients that do not share its GIL),
on a free port of 127.0.0.1, and a raw HTTP helper that shows status, headers and body."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

KEY = "test-key"
READ_KEY = "read-only-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThreadServer:
    """``create_app(store, settings)`` served by uvicorn in a daemon thread."""

    def __init__(self, store: Path, settings: Any, keep_alive_s: int = 30) -> None:
        import uvicorn

        from vecstore.server import create_app

        self.store = store
        self.settings = settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(store, settings)
        self._server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                     log_level="warning",
                                                     timeout_keep_alive=keep_alive_s))
        self._thread = threading.Thread(target=self._server.run, name="test-server", daemon=True)

    def start(self) -> ThreadServer:
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)


class ProcessServer:
    """``python -m vecstore serve STORE`` in a subprocess, its output in ``log``."""

    def __init__(self, store: Path, log: Path, *args: str, env: dict[str, str] | None = None,
                 port: int | None = None) -> None:
        self.store = store
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._args = [sys.executable, "-m", "vecstore", "serve", str(store), "--port", str(self.port),
                      "--log-level", "warning", *args]
        self._env = {**os.environ, **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120.0) -> ProcessServer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(self._args, stdout=out, stderr=subprocess.STDOUT, env=self._env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vecstore serve exited with {self.proc.returncode}: "
                                   f"{self.log.read_text(errors='replace')[-2000:]}")
            try:
                if request(self.url, "GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"vecstore serve did not answer in {timeout:.0f} s")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def request(url: str, method: str, path: str, body: Any = None, *, key: str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60.0) -> tuple[int, dict[str, str], Any]:
    """One request on a new connection: (status, headers, decoded JSON or the raw bytes).
    ``body`` is JSON-encoded unless it is bytes (sent as is)."""
    host, port = url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        h = dict(headers or {})
        if key is not None:
            h["Authorization"] = f"Bearer {key}"
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        if data is not None:
            h.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        try:
            is_json = hdrs.get("content-type", "").startswith("application/json")
            payload: Any = json.loads(raw) if is_json else raw
        except ValueError:
            payload = raw
        return resp.status, hdrs, payload
    finally:
        conn.close()
