"""The engine child: ``python -m app.engine.process.child ADDRESS``.

Reads the auth key and its configuration from stdin (two lines of JSON),
listens on ADDRESS for the one office that started it, runs a
:class:`LlamaCppEngine` and streams every request's chunks back. It exits
when the office says so, when the connection drops, or when the office
process is gone (stdin reaches end of file; on Linux the kernel also sends
SIGKILL through ``PR_SET_PDEATHSIG``), so it never outlives the app.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from multiprocessing import AuthenticationError
from multiprocessing.connection import Connection, Listener
from typing import TYPE_CHECKING, Any

from app.engine.errors import EngineError
from app.engine.llamacpp import LlamaCppEngine
from app.engine.process import wire

if TYPE_CHECKING:
    from app.engine.embeddings import Embedder

log = logging.getLogger("soloist.engine.child")


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this process when the process that started it exits."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):
        log.warning("PR_SET_PDEATHSIG unavailable; relying on stdin to notice the office exit")


def _watch_stdin() -> None:
    """End this process when the office's end of stdin closes (it exited or crashed)."""
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    os._exit(0)


class Child:
    """One engine serving one office connection."""

    def __init__(self, conn: Connection, config: dict[str, Any]) -> None:
        self.conn = conn
        self._send_lock = threading.Lock()
        engine_config = wire.config_from_dict(config)
        engine_config = type(engine_config)(
            **{**_fields(engine_config), "on_model_event": self._model_event}
        )
        self.engine = LlamaCppEngine(engine_config)
        # One worker: embedding models load once and batches run in order,
        # off the connection's reader thread.
        self._embed_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embed")
        # Unload and pin wait for the engine thread: off the reader, one at a
        # time, so a pin and its unpin arrive in the order they were sent.
        self._residency_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="residency")
        self._embedders: dict[str, Embedder] = {}

    def send(self, message: dict[str, Any]) -> None:
        data = wire.dumps(message)
        with self._send_lock:
            self.conn.send_bytes(data)

    def send_with_residency(self, message: dict[str, Any]) -> None:
        """Send ``message`` with the residency now, taken under the send lock.

        So residency snapshots (pongs, ``done`` replies) reach the office in
        the order they were taken: an older one never overwrites a newer one.
        """
        with self._send_lock:
            message["models"] = self.engine.residency()
            self.conn.send_bytes(wire.dumps(message))

    def _model_event(self, what: str, path: str, detail: str) -> None:
        # Sent before llama.cpp touches the file: if the load kills this
        # process, the office already knows which model did it.
        self.send({"t": "model", "what": what, "path": path, "detail": detail})

    def serve(self) -> None:
        self.send({"t": "ready", "pid": os.getpid()})
        while True:
            try:
                message = wire.loads(self.conn.recv_bytes())
            except (EOFError, OSError):
                return  # the office went away
            kind = message["t"]
            if kind == "generate":
                request = wire.request_from_dict(message["request"])
                threading.Thread(
                    target=self._stream,
                    args=(request,),
                    name=f"stream-{request.request_id[:8]}",
                    daemon=True,
                ).start()
            elif kind == "cancel":
                self.engine.cancel(message["id"])
            elif kind == "embed":
                self._embed_pool.submit(
                    self._embed, message["id"], message["texts"], message.get("model")
                )
            elif kind == "preload":
                self.engine.preload(message["path"])
            elif kind in ("unload", "pin", "unpin"):
                self._residency_pool.submit(self._residency, kind, message["id"], message["path"])
            elif kind == "ping":
                self.send_with_residency(
                    {
                        "t": "pong",
                        "seq": message.get("seq", 0),
                        "stalled_s": self.engine.stalled_s(),
                    }
                )
            elif kind == "shutdown":
                return
            else:
                log.warning("unknown message %r ignored", kind)

    def _stream(self, request: Any) -> None:
        try:
            for chunk in self.engine.generate(request):
                self.send(wire.chunk_to_dict(chunk))
        except EngineError as exc:
            self._send_quietly(wire.error_to_dict(request.request_id, exc))
        except (EOFError, OSError):
            self.engine.cancel(request.request_id)  # nobody to read it any more
        except Exception as exc:
            log.exception("request %s failed", request.request_id)
            self._send_quietly(wire.error_to_dict(request.request_id, exc))

    def _embed(self, request_id: str, texts: list[str], model: str | None) -> None:
        from app.engine.embeddings import DEFAULT_EMBEDDING_MODEL, SentenceTransformerEmbedder

        name = model or DEFAULT_EMBEDDING_MODEL
        try:
            embedder = self._embedders.get(name)
            if embedder is None:
                embedder = self._embedders[name] = SentenceTransformerEmbedder(name)
            data, dim = wire.vectors_to_text(embedder.embed(list(texts)))
            self._send_quietly(
                {
                    "t": "embedded",
                    "id": request_id,
                    "model": embedder.model_name,
                    "dim": dim or embedder.dimension,
                    "vectors": data,
                }
            )
        except EngineError as exc:
            self._send_quietly(wire.error_to_dict(request_id, exc))
        except Exception as exc:
            log.exception("embedding %s failed", request_id)
            self._send_quietly(wire.error_to_dict(request_id, exc))

    def _residency(self, action: str, message_id: str, path: str) -> None:
        """Unload, pin or unpin; the reply (``done`` or ``error``) carries the residency."""
        reply: dict[str, Any] = {"t": "done", "id": message_id}
        try:
            getattr(self.engine, action)(path)
        except EngineError as exc:
            reply = wire.error_to_dict(message_id, exc)
        except Exception as exc:
            log.exception("%s %s failed", action, os.path.basename(path))
            reply = wire.error_to_dict(message_id, exc)
        with contextlib.suppress(EOFError, OSError):
            self.send_with_residency(reply)

    def _send_quietly(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(EOFError, OSError):
            self.send(message)

    def close(self) -> None:
        self._embed_pool.shutdown(wait=False, cancel_futures=True)
        self._residency_pool.shutdown(wait=False, cancel_futures=True)
        self.engine.close()
        self.conn.close()


def _fields(config: Any) -> dict[str, Any]:
    import dataclasses

    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}


def _accept(listener: Listener) -> Connection:
    """The office's connection; a client without the key is turned away (a few times)."""
    for _ in range(5):
        try:
            return listener.accept()
        except AuthenticationError:
            log.warning("a connection without the engine key was refused")
    raise SystemExit("too many unauthenticated connections")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m app.engine.process.child ADDRESS", file=sys.stderr)
        return 2
    address = args[0]
    started = time.perf_counter()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    _die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the office's to handle
    key = bytes.fromhex(sys.stdin.buffer.readline().decode().strip())
    config = json.loads(sys.stdin.buffer.readline())
    threading.Thread(target=_watch_stdin, name="stdin-watch", daemon=True).start()
    with Listener(address, wire.FAMILY, authkey=key) as listener:
        conn = _accept(listener)
    child = Child(conn, config)
    log.info(
        "engine process %d ready in %.0f ms", os.getpid(), (time.perf_counter() - started) * 1e3
    )
    try:
        child.serve()
    finally:
        child.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
