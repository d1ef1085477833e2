"""``ProcessEngine``: the engine in a child process, supervised by the office.

A crash inside llama.cpp (an abort on a bad model, a driver fault, the OOM
killer) ends the child, never the office. The supervisor thread:

- starts the child and authenticates the connection (see wire.py);
- pings it every ``heartbeat_interval_s``; a child that does not answer for
  ``heartbeat_timeout_s`` (or whose engine thread sits in one step for
  ``stall_timeout_s``) is killed;
- on a death records why (exit code, signal, the last lines it logged),
  restarts it with backoff, reloads the models that were resident, and
  sends each in-flight request again once if none of its text had reached
  the caller; a request that had (or that was already retried) fails with
  :class:`EngineRestartedError`. No request ever gets two final chunks;
- marks a model *broken* when the child crashed while loading it (a crash
  signal or an error exit, or twice killed while loading it), keeps it out of
  loading (also after the office restarts: the list is kept in a file) and
  sends its requests to their next fallback model;
- keeps the live state the Models page reads (requests.py): requests in flight per
  priority class, a metrics record per finished request, and the owner's pins.

Sessions come back by themselves: the child keeps each session's KV
snapshot on disk (``EngineConfig.snapshot_dir``), and the new child restores
from it on the session's next request.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Connection
from pathlib import Path
from typing import Any

import app
from app.engine.errors import (
    EngineError,
    EngineRestartedError,
    EngineUnavailableError,
    ModelBrokenError,
)
from app.engine.llamacpp import CONTROL_TIMEOUT_S, EngineConfig
from app.engine.metrics import MetricsRing
from app.engine.process import ENGINE_CHILD, wire
from app.engine.process.crashes import (
    CRASH_SIGNALS,
    BrokenModels,
    CrashRecord,
    crash_reason,
    signal_name,
)
from app.engine.process.requests import (
    Embeddings,
    InFlight,
    Pending,
    PendingEmbed,
    cancelled_chunk,
)
from app.engine.streams import drain
from app.engine.types import Chunk, GenerateRequest

log = logging.getLogger("soloist.engine.supervisor")
child_log = logging.getLogger("soloist.engine.child")


@dataclass(frozen=True, slots=True)
class ProcessConfig:
    """How the engine child is run and watched."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    heartbeat_interval_s: float = 0.5
    heartbeat_timeout_s: float = 5.0
    # One decode step this long means the engine thread is stuck (a hung driver).
    stall_timeout_s: float = 300.0
    start_timeout_s: float = 60.0
    # Wait before the n-th restart in a row; a child that finishes a request
    # or stays up ``healthy_after_s`` resets the count.
    backoff_s: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 5.0, 10.0)
    healthy_after_s: float = 30.0
    # Starts that fail in a row before waiting requests are failed.
    max_failed_starts: int = 4
    broken_models_file: Path | None = None  # None: remembered until the office exits
    log_lines: int = 40  # of the child's stderr kept for crash reports
    command: tuple[str, ...] | None = None  # default: this Python, -m app.engine.process.child
    env: Mapping[str, str] | None = None  # extra environment for the child


@dataclass
class _Child:
    generation: int
    popen: subprocess.Popen[bytes]
    conn: Connection
    folder: Path | None
    log_tail: deque[str]
    log_thread: threading.Thread
    started: float = field(default_factory=time.monotonic)
    send_lock: threading.Lock = field(default_factory=threading.Lock)
    last_pong: float = field(default_factory=time.monotonic)
    stalled_s: float = 0.0
    models: list[dict[str, Any]] = field(default_factory=list)
    loading: dict[str, float] = field(default_factory=dict)  # path -> when it began
    resident: list[str] = field(default_factory=list)
    lost: bool = False
    ping_seq: int = 0


class _StartFailedError(Exception):
    def __init__(self, record: CrashRecord) -> None:
        super().__init__(record.summary())
        self.record = record


class ProcessEngine:
    """An :class:`~app.engine.interface.Engine` whose llama.cpp runs in a child process."""

    def __init__(self, config: ProcessConfig | None = None) -> None:
        self._config = config or ProcessConfig()
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self.metrics = MetricsRing()  # a RequestRecord per request, from the chunks delivered
        self._pending = InFlight(self.metrics)
        self._embeds = self._pending.embeds
        self._controls = self._pending.controls
        self._pinned: set[str] = set(self._config.engine.pinned)  # sent to every new child
        self._child: _Child | None = None
        self._generation = 0
        self._closing = False
        self._wake = threading.Event()  # a new request, a death, or close
        self._closed = threading.Event()
        self._wanted: list[str] = []  # models to reload after a restart
        self._strikes: dict[str, int] = {}  # kills while loading, per model
        self._broken = BrokenModels(self._config.broken_models_file)
        self._failed_starts = 0
        self._streak = 0  # restarts in a row without a healthy child between
        self.crashes: deque[CrashRecord] = deque(maxlen=64)
        self.restarts = 0
        self.last_restart_s: float | None = None  # from the death to the new child's ready
        self.events: deque[str] = deque(maxlen=256)  # degradations, for the UI
        self.load_seconds: dict[str, float] = {}  # the last load time of each model
        self._thread = threading.Thread(
            target=self._supervise, name="soloist-engine-supervisor", daemon=True
        )
        self._thread.start()

    # -- the Engine interface --------------------------------------------
    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        pending = Pending(request)
        with self._lock:
            closing = self._closing
            if not closing:
                self._pending.add(pending)
            child = self._child
        if closing:
            pending.out.put(EngineUnavailableError("The engine is shutting down."))
        else:
            self._dispatch(pending, child)
            if child is None:
                self._wake.set()  # a supervisor resting after failed starts tries again
        return self._drain(pending)

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is None:
                return False
            pending.cancelled = True
            child = self._child
            live = child is not None and pending.generation == child.generation
            end = cancelled_chunk(pending)
            if not live:  # not sent yet (the child is restarting): end it here
                self._pending.settle(pending, end)
        if live and child is not None:
            self._send(child, {"t": "cancel", "id": request_id})
        else:
            pending.out.put(end)
        return True

    def embed(
        self, texts: list[str], model: str | None = None, timeout_s: float = 600
    ) -> Embeddings:
        """Embed ``texts`` in the child (sentence-transformers loads there, not here).

        Embedding is idempotent, so a request the child died on is sent again
        once to the restarted child.
        """
        request_id = uuid.uuid4().hex
        pending = PendingEmbed({"t": "embed", "id": request_id, "texts": texts, "model": model})
        with self._lock:
            if self._closing:
                raise EngineUnavailableError("The engine is shutting down.")
            self._embeds[request_id] = pending
            child = self._child
        self._dispatch_embed(pending, child)
        try:
            item = pending.out.get(timeout=timeout_s)
        except queue.Empty:
            raise EngineUnavailableError(
                f"The engine did not embed {len(texts)} texts in {timeout_s:.0f} s."
            ) from None
        finally:
            with self._lock:
                self._embeds.pop(request_id, None)
        if isinstance(item, BaseException):
            raise item
        return item

    def embedder(self, model: str | None = None) -> ChildEmbedder:
        """An :class:`~app.engine.embeddings.Embedder` that runs in the child."""
        return ChildEmbedder(self, model)

    def _dispatch_embed(self, pending: PendingEmbed, child: _Child | None) -> None:
        with self._lock:
            if child is None or child.lost or pending.generation == child.generation:
                return
            if self._embeds.get(pending.message["id"]) is not pending:
                return
            pending.generation = child.generation
            pending.attempts += 1
        self._send(child, pending.message)

    def close(self) -> None:
        with self._lock:
            if self._closing:
                return
            self._closing = True
            child = self._child
            self._pending.close()
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=10)
        if child is not None:
            self._stop_child(child)

    # -- what the UI and the tests read ----------------------------------
    @property
    def pid(self) -> int | None:
        child = self._child
        return None if child is None else child.popen.pid

    def wait_ready(self, timeout: float = 60.0) -> int:
        """Block until a child is up; its pid."""
        deadline = time.monotonic() + timeout
        with self._ready:
            while self._child is None:
                left = deadline - time.monotonic()
                if left <= 0 or self._closing:
                    raise EngineUnavailableError("The engine process did not start in time.")
                self._ready.wait(left)
            return self._child.popen.pid

    def residency(self) -> list[dict[str, Any]]:
        child = self._child
        return [] if child is None else list(child.models)

    def memory_in_use(self) -> int:
        return sum(int(m.get("memory_bytes", 0)) for m in self.residency())

    def loaded_models(self) -> list[str]:
        child = self._child
        return [] if child is None else list(child.resident)

    def preload(self, path: str) -> None:
        with self._lock:
            if path not in self._wanted:
                self._wanted.append(path)
            child = self._child
        if child is not None:
            self._send(child, {"t": "preload", "path": path})

    @property
    def keep_alive_s(self) -> float:
        return self._config.engine.keep_alive_s

    def queue_by_priority(self) -> dict[str, int]:
        """Requests in flight (queued, running, or waiting for a restart) per priority class."""
        with self._lock:
            return self._pending.queue_by_priority()

    def unload(self, path: str) -> None:
        """Unload ``path`` now (and after restarts); ModelInUseError while requests use it."""
        with self._lock:
            if path in self._wanted and self._child is None:
                self._wanted.remove(path)  # nothing is loaded: just do not reload it
        self._residency("unload", path)

    def pin(self, path: str) -> None:
        """Keep ``path`` loaded once it is: never unloaded for keep-alive or for room."""
        self._residency("pin", path)

    def unpin(self, path: str) -> None:
        """Let ``path`` go again; it unloads after its keep-alive from now."""
        self._residency("unpin", path)

    def _residency(self, action: str, path: str) -> None:
        """Carry out ``action`` in the child and wait; no child: the next one gets the pins."""
        with self._lock:
            if action != "unload":
                (self._pinned.add if action == "pin" else self._pinned.discard)(path)
            child = self._child
            if child is None:
                return
            request_id, control = self._pending.open_control(child.generation)
        self._send(child, {"t": action, "id": request_id, "path": path})
        try:
            control.wait(CONTROL_TIMEOUT_S + 5)
        except EngineRestartedError:
            if action == "unload":
                raise  # else: the pins are sent to the new child as it starts
        finally:
            with self._lock:
                self._controls.pop(request_id, None)

    def broken_models(self) -> dict[str, str]:
        """Model path -> why it is kept out of loading."""
        return self._broken.reasons()

    def forget_broken(self, path: str) -> bool:
        """Let a model load again (the owner replaced the file or wants to retry)."""
        self._strikes.pop(path, None)
        return self._broken.forget(path)

    # -- caller side -------------------------------------------------------
    def _drain(self, pending: Pending) -> Iterator[Chunk]:
        request_id = pending.request.request_id

        def forget() -> None:  # still in flight here: the caller stopped reading
            with self._lock:
                self._pending.settle(pending, cancelled_chunk(pending))

        return drain(pending.out, abandon=lambda: self.cancel(request_id), finish=forget)

    def _dispatch(self, pending: Pending, child: _Child | None) -> None:
        """Send ``pending`` to ``child`` unless it is already there (or no child is up)."""
        try:
            request = self._without_broken(pending.request)
        except ModelBrokenError as exc:
            with self._lock:
                self._pending.settle(pending, exc)
            pending.out.put(exc)
            return
        with self._lock:
            if child is None or child.lost or pending.generation == child.generation:
                return
            if not self._pending.holds(pending):
                return  # finished or cancelled meanwhile
            pending.request = request
            pending.generation = child.generation
            pending.attempts += 1
        self._send(child, {"t": "generate", "request": wire.request_to_dict(request)})

    def _without_broken(self, request: GenerateRequest) -> GenerateRequest:
        broken = self._broken.reasons()
        chain = [request.model_path, *request.fallback_models]
        allowed = [path for path in chain if path not in broken]
        if not allowed:
            name = Path(request.model_path).name
            raise ModelBrokenError(
                f"{name} crashed the engine when it was loaded ({broken[request.model_path]}); "
                "it is kept out of loading. Choose another model, or replace the file."
            )
        if allowed[0] == request.model_path:
            return request
        self.events.append(f"{request.request_id}: {Path(request.model_path).name} is broken")
        return dataclasses.replace(
            request, model_path=allowed[0], fallback_models=tuple(allowed[1:])
        )

    # -- the connection ----------------------------------------------------
    def _send(self, child: _Child, message: dict[str, Any]) -> None:
        data = wire.dumps(message)
        try:
            with child.send_lock:
                child.conn.send_bytes(data)
        except (OSError, ValueError):
            # The reader or the supervisor notices the death and recovers.
            log.debug("send to engine process %d failed", child.popen.pid)

    def _read(self, child: _Child) -> None:
        while True:
            try:
                message = wire.loads(child.conn.recv_bytes())
            except (EOFError, OSError):
                break
            except ValueError:
                log.error("engine process %d sent a malformed message", child.popen.pid)
                break
            self._handle(child, message)
        self._lost(child, "exited")

    def _handle(self, child: _Child, message: dict[str, Any]) -> None:
        kind = message["t"]
        if kind == "chunk":
            self._deliver(child, message["id"], wire.chunk_from_dict(message))
        elif kind == "done" or message.get("id") in self._controls:
            self._answer(child, message)
        elif kind == "error" and message["id"] in self._embeds:
            self._deliver_embed(child, message["id"], wire.error_from_dict(message))
        elif kind == "error":
            self._deliver(child, message["id"], wire.error_from_dict(message))
        elif kind == "embedded":
            dim = int(message["dim"])
            vectors = wire.vectors_from_text(message["vectors"], dim)
            self._deliver_embed(child, message["id"], Embeddings(message["model"], dim, vectors))
        elif kind == "pong":
            child.last_pong = time.monotonic()
            child.stalled_s = float(message.get("stalled_s", 0.0))
            child.models = list(message.get("models", []))
        elif kind == "model":
            self._model_event(child, message["what"], message["path"], message.get("detail", ""))

    def _deliver(self, child: _Child, request_id: str, item: Chunk | EngineError) -> None:
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is None or pending.generation != child.generation or child.lost:
                return  # a stale message from a child that is gone
            final = not isinstance(item, Chunk) or item.is_final
            if final:
                self._pending.settle(pending, item)
                self._streak = 0  # this child serves: a later death is no crash loop
            else:
                pending.delivered += 1
        pending.out.put(item)

    def _answer(self, child: _Child, message: dict[str, Any]) -> None:
        """A residency action's ``done`` or ``error``, with the residency after it."""
        child.models = list(message.get("models", child.models))
        with self._lock:
            if not child.lost:
                self._pending.answer_control(child.generation, message)

    def _deliver_embed(
        self, child: _Child, request_id: str, item: Embeddings | EngineError
    ) -> None:
        with self._lock:
            pending = self._embeds.get(request_id)
            if pending is None or pending.generation != child.generation or child.lost:
                return
        pending.out.put(item)

    def _model_event(self, child: _Child, what: str, path: str, detail: str) -> None:
        with self._lock:
            if what == "loading":
                child.loading[path] = time.monotonic()
                return
            began = child.loading.pop(path, None)
            if what == "loaded":
                if began is not None:
                    self.load_seconds[path] = time.monotonic() - began
                self._strikes.pop(path, None)
                if path not in child.resident:
                    child.resident.append(path)
                if path not in self._wanted:
                    self._wanted.append(path)
            elif what == "unloaded":
                if path in child.resident:
                    child.resident.remove(path)
                if path in self._wanted:
                    self._wanted.remove(path)
            elif what == "failed":
                log.info("model %s failed to load: %s", Path(path).name, detail)

    # -- supervision -------------------------------------------------------
    def _supervise(self) -> None:
        cfg = self._config
        while not self._closing:
            child = self._child
            if child is None:
                self._start_with_backoff()
                continue
            self._wake.wait(cfg.heartbeat_interval_s)
            self._wake.clear()
            if self._closing:
                return
            self._check(child)

    def _check(self, child: _Child) -> None:
        cfg = self._config
        if child.popen.poll() is not None:
            self._lost(child, "exited")
            return
        now = time.monotonic()
        silent = now - child.last_pong
        # _lost marks the child before it kills it, so the reader's "exited"
        # (it sees the socket close) does not replace the real reason.
        if silent > cfg.heartbeat_timeout_s:
            self._lost(child, f"stopped answering heartbeats for {silent:.1f} s")
        elif child.stalled_s > cfg.stall_timeout_s:
            self._lost(child, f"was stuck in one decode step for {child.stalled_s:.0f} s")
        else:
            if now - child.started > cfg.healthy_after_s:
                self._streak = 0
            child.ping_seq += 1
            self._send(child, {"t": "ping", "seq": child.ping_seq})

    def _start_with_backoff(self) -> None:
        cfg = self._config
        steps = cfg.backoff_s
        delay = steps[min(self._streak - 1, len(steps) - 1)] if self._streak else 0.0
        if self._failed_starts >= cfg.max_failed_starts:
            # Give up on the waiting requests; try again when a new one comes.
            self._fail_waiting(self.crashes[-1] if self.crashes else None)
            self._wake.wait()
            self._wake.clear()
            self._failed_starts = 0
            return
        if delay:
            self._closed.wait(delay)
        if self._closing:
            return
        try:
            child = self._start()
        except _StartFailedError as exc:
            self._failed_starts += 1
            self._streak += 1
            self.crashes.append(exc.record)
            log.error("%s while starting; last lines: %s", exc, exc.record.last_log_lines[-3:])
            return
        self._failed_starts = 0
        self._adopt(child)

    def _start(self) -> _Child:
        cfg = self._config
        address, folder = wire.new_address()
        key = os.urandom(32)
        command = cfg.command or default_command()
        env = dict(os.environ)
        root = str(Path(app.__file__).resolve().parents[1])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
        env.setdefault("GGML_NO_BACKTRACE", "1")  # the assert line is the useful part
        env.update(cfg.env or {})
        popen = subprocess.Popen(
            [*command, address],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env,
        )
        tail: deque[str] = deque(maxlen=cfg.log_lines)
        log_thread = threading.Thread(
            target=_read_log, args=(popen, tail), name=f"engine-log-{popen.pid}", daemon=True
        )
        log_thread.start()
        assert popen.stdin is not None
        try:
            popen.stdin.write(key.hex().encode() + b"\n")
            popen.stdin.write(json.dumps(wire.config_to_dict(cfg.engine)).encode() + b"\n")
            popen.stdin.flush()  # stdin stays open: its end tells the child we are gone
            conn = self._connect(popen, address, key)
        except (_StartTimeoutError, OSError, EOFError, AuthenticationError) as exc:
            _terminate(popen)
            log_thread.join(timeout=2)
            _remove(folder)
            raise _StartFailedError(
                CrashRecord(
                    at=time.time(),
                    pid=popen.pid,
                    reason=f"failed to start ({type(exc).__name__})",
                    exit_code=popen.returncode,
                    signal=signal_name(popen.returncode),
                    last_log_lines=tuple(tail),
                )
            ) from exc
        self._generation += 1
        return _Child(self._generation, popen, conn, folder, tail, log_thread)

    def _connect(self, popen: subprocess.Popen[bytes], address: str, key: bytes) -> Connection:
        deadline = time.monotonic() + self._config.start_timeout_s
        while True:
            if popen.poll() is not None:
                raise _StartTimeoutError("the engine process exited while starting")
            try:
                conn = Client(address, wire.FAMILY, authkey=key)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise _StartTimeoutError("the engine process did not listen in time") from None
                time.sleep(0.01)
        while not conn.poll(0.05):
            if popen.poll() is not None or time.monotonic() > deadline:
                conn.close()
                raise _StartTimeoutError("the engine process did not get ready")
        ready = wire.loads(conn.recv_bytes())
        if ready["t"] != "ready":
            conn.close()
            raise _StartTimeoutError(f"unexpected first message {ready['t']!r}")
        return conn

    def _adopt(self, child: _Child) -> None:
        """Make ``child`` the engine: reload models, send the waiting requests."""
        lost_at = self._lost_at
        threading.Thread(
            target=self._read, args=(child,), name=f"engine-read-{child.popen.pid}", daemon=True
        ).start()
        broken = self._broken.reasons()
        with self._ready:
            self._child = child
            wanted = [p for p in self._wanted if p not in broken]
            pinned = sorted(self._pinned)
            waiting = list(self._pending.values())
            embeds = list(self._embeds.values())
            self._ready.notify_all()
        for path in pinned:  # before the preloads: a pinned model is never evicted for them
            self._send(child, {"t": "pin", "id": uuid.uuid4().hex, "path": path})
        for path in wanted:
            self._send(child, {"t": "preload", "path": path})
        for pending in waiting:
            self._dispatch(pending, child)
        for embed in embeds:
            self._dispatch_embed(embed, child)
        if lost_at is not None:
            self.last_restart_s = time.monotonic() - lost_at
            self.restarts += 1
            self._lost_at = None
            log.warning(
                "engine process restarted as %d in %.2f s; %d requests sent again",
                child.popen.pid,
                self.last_restart_s,
                len(waiting),
            )

    _lost_at: float | None = None

    def _lost(self, child: _Child, reason: str) -> None:
        """``child`` is gone: record why, settle its requests, let the supervisor restart."""
        with self._lock:
            if child.lost:
                return
            child.lost = True
            if self._child is child:
                self._child = None
            loading = set(child.loading)
        self._lost_at = time.monotonic()
        self._kill(child)
        child.log_thread.join(timeout=2)  # the pipe ends with the process: read it all
        _close_quietly(child)
        code = child.popen.returncode
        sig = signal_name(code)
        broken = self._judge_models(loading, code, reason, tuple(child.log_tail))
        with self._lock:
            retried, failed = self._pending.child_lost(child.generation, reason)
        record = CrashRecord(
            at=time.time(),
            pid=child.popen.pid,
            reason=reason,
            exit_code=code,
            signal=sig,
            last_log_lines=tuple(child.log_tail),
            retried=retried,
            failed=failed,
            broken_model=broken,
        )
        self.crashes.append(record)
        self._streak += 1
        if not self._closing:
            log.error(
                "%s; %d requests to retry, %d failed; last lines: %s",
                record.summary(),
                retried,
                failed,
                list(child.log_tail)[-3:],
            )
        self._wake.set()

    def _judge_models(
        self, loading: set[str], code: int | None, reason: str, tail: tuple[str, ...]
    ) -> str | None:
        """Mark a model broken when the child died loading it; the path, if one was."""
        crashed = code is not None and (code > 0 or -code in CRASH_SIGNALS)
        broken = None
        for path in loading:
            strikes = self._strikes.get(path, 0) + 1
            self._strikes[path] = strikes
            if crashed or strikes >= 2:
                why = crash_reason(code, reason, tail)
                self._broken.add(path, why)
                log.error("model %s marked broken: %s", Path(path).name, why)
                broken = path
        return broken

    def _fail_waiting(self, record: CrashRecord | None) -> None:
        why = record.summary() if record else "the engine process could not be started"
        with self._lock:
            self._pending.fail_waiting(why)

    def _kill(self, child: _Child) -> None:
        if child.popen.poll() is None:
            child.popen.kill()
        try:
            child.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.error("engine process %d did not die after SIGKILL", child.popen.pid)

    def _stop_child(self, child: _Child) -> None:
        """Orderly: ask it to finish, then wait, then kill."""
        with self._lock:
            child.lost = True
            self._child = None
        self._send(child, {"t": "shutdown"})
        try:
            child.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            log.warning("engine process %d did not stop; killing it", child.popen.pid)
            self._kill(child)
        child.log_thread.join(timeout=2)
        _close_quietly(child)


class ChildEmbedder:
    """The Embedder protocol over :meth:`ProcessEngine.embed`."""

    def __init__(self, engine: ProcessEngine, model: str | None = None) -> None:
        from app.engine.embeddings import DEFAULT_EMBEDDING_MODEL

        self._engine = engine
        self._model = model
        self.model_name = model or DEFAULT_EMBEDDING_MODEL
        self._dimension: int | None = None

    @property
    def dimension(self) -> int:
        """Read from the model's files (no load), else asked of the child."""
        if self._dimension is None:
            from app.engine.embeddings import read_dimension, resolve_model_dir

            self._dimension = read_dimension(resolve_model_dir(self.model_name))
            if self._dimension is None:
                self._dimension = self._engine.embed([""], self._model).dimension
        return self._dimension

    def embed(self, texts: list[str]) -> list[list[float]]:
        result = self._engine.embed(texts, self._model)
        self.model_name, self._dimension = result.model, result.dimension
        return result.vectors


def default_command() -> tuple[str, ...]:
    """How to start the child: ``python -m ...``, or the bundle's own executable."""
    if getattr(sys, "frozen", False):
        return (sys.executable, ENGINE_CHILD)
    return (sys.executable, "-m", "app.engine.process.child")


class _StartTimeoutError(Exception):
    pass


def _read_log(popen: subprocess.Popen[bytes], tail: deque[str]) -> None:
    assert popen.stderr is not None
    with popen.stderr:
        for raw in popen.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                tail.append(line)
                child_log.info("[%d] %s", popen.pid, line)


def _terminate(popen: subprocess.Popen[bytes]) -> None:
    if popen.poll() is None:
        popen.kill()
    with contextlib.suppress(subprocess.TimeoutExpired):
        popen.wait(timeout=10)
    if popen.stdin is not None:
        with contextlib.suppress(OSError):
            popen.stdin.close()


def _close_quietly(child: _Child) -> None:
    child.conn.close()
    if child.popen.stdin is not None:
        with contextlib.suppress(OSError):
            child.popen.stdin.close()
    _remove(child.folder)


def _remove(folder: Path | None) -> None:
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
