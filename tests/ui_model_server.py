"""A model file served on 127.0.0.1 for the UI's download tests, with a pause to cancel in.

The server honours ``Range`` (so a resume is a real 206), and can hold the
body after ``pause_after`` bytes until ``release`` is set: a test cancels
while the download is provably half-way, then lets it go on.
"""

from __future__ import annotations

import hashlib
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from app.engine.catalog import RecommendedModel


@dataclass
class Served:
    body: bytes
    pause_after: int | None = None
    release: threading.Event = field(default_factory=threading.Event)
    ranges: list[str] = field(default_factory=list)  # the Range header of each request

    @property
    def etag(self) -> str:
        return f'"{hashlib.sha256(self.body).hexdigest()[:16]}"'


class _Handler(http.server.BaseHTTPRequestHandler):
    served: ClassVar[Served]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        s = self.served
        asked = self.headers.get("Range", "")
        s.ranges.append(asked)
        start = int(asked.removeprefix("bytes=").split("-")[0]) if asked else 0
        body = s.body[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(s.body) - 1}/{len(s.body)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", s.etag)
        self.end_headers()
        try:
            if s.pause_after is not None and not start:
                self.wfile.write(body[: s.pause_after])
                self.wfile.flush()
                s.release.wait(10)
                body = body[s.pause_after :]
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass


@contextmanager
def serve(body: bytes, pause_after: int | None = None) -> Iterator[tuple[Served, str]]:
    """Serve ``body``; yields the switches and its URL."""
    state = Served(body, pause_after)
    handler = type("Handler", (_Handler,), {"served": state})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state, f"http://127.0.0.1:{server.server_address[1]}/tiny-test.gguf"
    finally:
        state.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def curated_for(body: bytes, name: str = "Tiny Test") -> RecommendedModel:
    """A recommended model entry whose file is ``body``."""
    return RecommendedModel(
        name=name,
        repo="test/tiny",
        filename="tiny-test.gguf",
        size_bytes=len(body),
        sha256=hashlib.sha256(body).hexdigest(),
        licence="MIT",
        parameters="1M",
        quantisation="F32",
        context_length=256,
        notes="A random-weight test model.",
    )
