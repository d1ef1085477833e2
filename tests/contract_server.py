"""A tiny loopback HTTP(S) server that plays a hosted API for contract tests.

Each test registers route handlers (``server.route("POST", "/crm/v3/...",
handler)``) returning :class:`Reply`; every request is recorded (method,
path, query, headers, JSON body) so the test can assert the exact shapes we
send. One helper for HubSpot (REST) and Shopify (GraphQL). The server runs
in a thread on a free port of 127.0.0.1 and is shut down, its socket closed,
when the ``with`` block ends.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from keyring_service import MemoryKeyring


@dataclass(frozen=True)
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    query: Mapping[str, list[str]]
    headers: Mapping[str, str]  # lower-cased names
    body: Any  # parsed JSON, or None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    drop: bool = False  # close the connection without answering (a crash mid-request)


Handler = Callable[[Recorded], Reply]


class ContractServer:
    """Routes by method and a full-match regular expression on the path."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.requests: list[Recorded] = []
        self.errors: list[Exception] = []  # handler exceptions (asserted empty on exit)
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self._lock = threading.Lock()
        self._ssl_context = ssl_context
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def route(self, method: str, path_pattern: str, handler: Handler | Reply) -> None:
        fn = handler if callable(handler) else (lambda _req, r=handler: r)
        self._routes.append((method.upper(), re.compile(path_pattern), fn))

    def replies(self, method: str, path_pattern: str, *replies: Reply) -> None:
        """Answer successive requests with ``replies`` in turn (the last one repeats)."""
        queue = list(replies)

        def handler(_req: Recorded) -> Reply:
            return queue.pop(0) if len(queue) > 1 else queue[0]

        self.route(method, path_pattern, handler)

    @property
    def url(self) -> str:
        assert self._httpd is not None
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self._httpd.server_address[1]}"

    def matching(self, method: str, path_pattern: str) -> list[Recorded]:
        pattern = re.compile(path_pattern)
        with self._lock:
            return [r for r in self.requests if r.method == method and pattern.fullmatch(r.path)]

    def __enter__(self) -> ContractServer:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        if self._ssl_context is not None:
            self._httpd.socket = self._ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        assert self._httpd is not None and self._thread is not None
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
        if self.errors and exc_info[0] is None:
            raise AssertionError(f"contract server handler failed: {self.errors[0]!r}")

    def _dispatch(self, request: Recorded) -> Reply:
        with self._lock:
            self.requests.append(request)
        for method, pattern, handler in self._routes:
            if method == request.method and pattern.fullmatch(request.path):
                try:
                    return handler(request)
                except Exception as exc:  # a broken fake must fail the test, not hang it
                    self.errors.append(exc)
                    return Reply(500, {"message": "contract server handler failed"})
        return Reply(
            404, {"status": "error", "message": "no route", "category": "OBJECT_NOT_FOUND"}
        )

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: the test asserts on recorded requests instead."""

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                recorded = Recorded(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=json.loads(raw) if raw else None,
                )
                reply = server._dispatch(recorded)
                if reply.drop:
                    self.close_connection = True
                    return
                payload = b"" if reply.body is None else json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _handle  # noqa: N815

        return _Handler


def iter_bodies(requests: list[Recorded]) -> Iterator[Any]:
    for request in requests:
        yield request.body


# The name the store connector's tests still import; one class behind both.
DictKeyring = MemoryKeyring


class FakeClock:
    """A monotonic clock that only moves when something sleeps; records the sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds
