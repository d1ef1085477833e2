"""The engine in a supervised child process: real processes, real llama.cpp, real signals."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing import AuthenticationError
from multiprocessing.connection import Client, Listener
from pathlib import Path

import pytest

from app.engine.errors import (
    EngineRestartedError,
    EngineUnavailableError,
    InvalidGrammarError,
    ModelBrokenError,
    ModelNotFoundError,
)
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.process import wire
from app.engine.process.supervisor import ProcessConfig, ProcessEngine
from app.engine.types import (
    Chunk,
    FinishReason,
    GenerateRequest,
    Message,
    Priority,
    SamplingParams,
)

pytestmark = pytest.mark.slow

CONTEXT = ContextConfig(n_ctx=2048, n_batch=128)


@pytest.fixture
def make_engine(tmp_path: Path) -> Iterator[Callable[..., ProcessEngine]]:
    made: list[ProcessEngine] = []

    def make(**overrides: object) -> ProcessEngine:
        engine_config = EngineConfig(
            context=CONTEXT, snapshot_dir=tmp_path / "kv", swap_dir=tmp_path / "swap"
        )
        options: dict[str, object] = {
            "engine": engine_config,
            "heartbeat_interval_s": 0.2,
            # as in the app: a busy CI machine must not look like a hung child
            "heartbeat_timeout_s": 5.0,
            "broken_models_file": tmp_path / "broken.json",
        }
        options.update(overrides)
        engine = ProcessEngine(ProcessConfig(**options))  # type: ignore[arg-type]
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def _request(model: Path, text: str = "hello", **kwargs: object) -> GenerateRequest:
    sampling = {"max_tokens": 24, "temperature": 0.0}
    session = kwargs.pop("session_id", "")
    fallback = kwargs.pop("fallback_models", ())
    sampling.update(kwargs)
    return GenerateRequest(
        model_path=str(model),
        messages=(Message("system", "Be brief."), Message("user", text)),
        sampling=SamplingParams(**sampling),  # type: ignore[arg-type]
        session_id=str(session),
        fallback_models=tuple(fallback),  # type: ignore[arg-type]
    )


def _alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, dead but not yet reaped, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@dataclass
class Stream:
    """One request read on a thread of its own, as the UI reads them."""

    chunks: list[Chunk] = field(default_factory=list)
    error: BaseException | None = None
    first: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    @classmethod
    def start(cls, engine: ProcessEngine, request: GenerateRequest) -> Stream:
        stream = cls()
        chunks = engine.generate(request)

        def read() -> None:
            try:
                for chunk in chunks:
                    stream.chunks.append(chunk)
                    stream.first.set()
            except BaseException as exc:
                stream.error = exc
            finally:
                stream.first.set()

        stream.thread = threading.Thread(target=read, daemon=True)
        stream.thread.start()
        return stream

    def join(self, timeout: float = 60.0) -> None:
        assert self.thread is not None
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "a stream hung"

    @property
    def completed(self) -> bool:
        finals = [c for c in self.chunks if c.is_final]
        return self.error is None and len(finals) == 1 and self.chunks[-1].is_final

    def check_well_formed(self) -> None:
        """One answer at most: indexes rise, at most one final chunk, and it is last."""
        indexes = [c.index for c in self.chunks]
        assert indexes == sorted(set(indexes)), indexes
        finals = [c for c in self.chunks if c.is_final]
        assert len(finals) <= 1
        if finals:
            assert self.chunks[-1] is finals[0]
            assert self.error is None


# ---------------------------------------------------------------- basics
def test_same_stream_as_in_process(make_engine: Callable[..., ProcessEngine], tiny_model: Path):
    request = _request(tiny_model, "the same words", max_tokens=32)
    local = LlamaCppEngine(EngineConfig(context=CONTEXT))
    try:
        expected = list(local.generate(request))
    finally:
        local.close()
    engine = make_engine()
    got = list(engine.generate(request))
    assert "".join(c.text for c in got) == "".join(c.text for c in expected)
    assert [c.index for c in got] == [c.index for c in expected]
    assert got[-1].finish_reason == expected[-1].finish_reason
    assert got[-1].timings is not None
    assert got[-1].timings.completion_tokens == 32


def test_errors_keep_their_type_across_the_boundary(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path, tmp_path: Path
):
    engine = make_engine()
    with pytest.raises(ModelNotFoundError, match=r"nothing\.gguf"):
        next(iter(engine.generate(_request(tmp_path / "nothing.gguf"))))
    with pytest.raises(InvalidGrammarError):
        next(iter(engine.generate(_request(tiny_model, grammar="root ::= ("))))
    # and the engine keeps serving
    assert list(engine.generate(_request(tiny_model)))[-1].is_final


def test_cancel_reaches_the_child(make_engine: Callable[..., ProcessEngine], tiny_model: Path):
    engine = make_engine()
    request = _request(tiny_model, max_tokens=4000)
    stream = Stream.start(engine, request)
    assert stream.first.wait(30)
    assert engine.cancel(request.request_id)
    stream.join()
    assert stream.chunks[-1].finish_reason is FinishReason.CANCELLED
    assert not engine.cancel(request.request_id)  # finished: nothing to cancel


def test_priority_and_json_schema_travel(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path
):
    engine = make_engine()
    schema = json.dumps(
        {
            "type": "object",
            "properties": {"tool": {"type": "string", "enum": ["search", "send"]}},
            "required": ["tool"],
        }
    )
    request = GenerateRequest(
        model_path=str(tiny_model),
        messages=(Message("user", "call a tool"),),
        sampling=SamplingParams(max_tokens=64, json_schema=schema, temperature=0.0),
        priority=Priority.BACKGROUND,
    )
    text = "".join(c.text for c in engine.generate(request))
    assert json.loads(text)["tool"] in ("search", "send")


def test_the_socket_is_private_and_authenticated(tmp_path: Path):
    """Only a client holding the key gets in; the child then stops listening."""
    address, folder = wire.new_address()
    assert folder is not None
    assert (folder.stat().st_mode & 0o777) == 0o700
    key = os.urandom(32)
    with Listener(address, wire.FAMILY, authkey=key) as listener:
        result: list[object] = []

        def accept() -> None:
            try:
                result.append(listener.accept())
            except AuthenticationError as exc:
                result.append(exc)

        thread = threading.Thread(target=accept)
        thread.start()
        with pytest.raises(AuthenticationError):
            Client(address, wire.FAMILY, authkey=b"wrong key")
        thread.join(10)
        assert isinstance(result[0], AuthenticationError)
    assert not Path(address).exists()  # closing the listener removes the socket
    folder.rmdir()


def test_wire_round_trip_of_requests_and_errors(tiny_model: Path):
    request = _request(tiny_model, "x", stop=("\n",), session_id="s", fallback_models=("b",))
    assert wire.request_from_dict(json.loads(wire.dumps(wire.request_to_dict(request)))) == request
    err = wire.error_from_dict(wire.error_to_dict("r", ModelBrokenError("bad file")))
    assert type(err) is ModelBrokenError and str(err) == "bad file"
    internal = wire.error_from_dict(wire.error_to_dict("r", KeyError("secret detail")))
    assert "secret" not in str(internal)
    config = EngineConfig(context=CONTEXT, snapshot_dir=Path("/x/kv"), pinned=("a",))
    assert wire.config_from_dict(json.loads(json.dumps(wire.config_to_dict(config)))) == config


# ---------------------------------------------------------------- faults
def test_sigkill_during_decode_twenty_times(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path, tmp_path: Path
):
    """The office survives; every request completes or fails typed; sessions come back."""
    engine = make_engine()
    engine.wait_ready()
    snapshots = tmp_path / "kv"

    def snapshot_count() -> int:
        return len(list(snapshots.rglob("*.solokv"))) if snapshots.exists() else 0

    history: dict[str, list[Message]] = {"agent-a": [], "agent-b": []}

    def session_turn(session: str, turn: int) -> Chunk:
        msgs = history[session] + [Message("user", f"turn {turn} for {session}, go on")]
        before = snapshot_count()
        request = GenerateRequest(
            model_path=str(tiny_model),
            messages=(Message("system", "You are an agent."), *msgs),
            sampling=SamplingParams(max_tokens=12, temperature=0.0),
            session_id=session,
            agent_id=session,
        )
        chunks = list(engine.generate(request))
        history[session] = [*msgs, Message("assistant", "".join(c.text for c in chunks))]
        # The snapshot is written on a background thread: wait for it, so the
        # kill below tests a restore, not a lost write.
        assert _wait_for(lambda: snapshot_count() > before, 10), "no snapshot written"
        return chunks[-1]

    session_turn("agent-a", 0)
    session_turn("agent-b", 0)
    completed = restarted = 0
    pids = {engine.pid}
    for i in range(20):
        long = Stream.start(engine, _request(tiny_model, f"long {i}", max_tokens=5000))
        assert long.first.wait(30)
        quick = Stream.start(engine, _request(tiny_model, f"quick {i}", max_tokens=8))
        pid = engine.pid
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        for stream in (long, quick):
            stream.join()
            stream.check_well_formed()
            if stream.completed:
                completed += 1
            else:
                assert isinstance(stream.error, EngineRestartedError), stream.error
                restarted += 1
        # The long one had text out when it died: it cannot be retried.
        assert isinstance(long.error, EngineRestartedError)
        # The session's next turn runs on the new child from its snapshot.
        final = session_turn("agent-a" if i % 2 else "agent-b", i + 1)
        assert final.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
        assert final.timings is not None
        assert final.timings.cached_tokens > 0, f"round {i}: session not restored"
        pids.add(engine.pid)
    assert engine.restarts == 20
    assert len(pids) == 21  # a new process each time
    assert restarted >= 20 and completed >= 1  # the quick ones were retried
    assert all(c.signal == "SIGKILL" for c in engine.crashes)
    assert sum(c.retried for c in engine.crashes) == completed
    assert engine.broken_models() == {}  # kills during decode blame no model


def test_model_that_crashes_the_child_is_marked_broken(
    make_engine: Callable[..., ProcessEngine],
    tiny_model: Path,
    crashing_model: Path,
    tmp_path: Path,
):
    engine = make_engine()
    first_pid = engine.wait_ready()
    request = _request(crashing_model, fallback_models=(str(tiny_model),))
    chunks = list(engine.generate(request))  # crashes the child, then runs on the fallback
    assert chunks[-1].finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    crash = engine.crashes[-1]
    assert crash.signal == "SIGABRT"
    assert crash.broken_model == str(crashing_model)
    assert any("GGML_ASSERT" in line for line in crash.last_log_lines)
    reason = engine.broken_models()[str(crashing_model)]
    assert "SIGABRT" in reason and "GGML_ASSERT" in reason
    assert engine.wait_ready() != first_pid
    # Kept out of loading: no second crash, a typed error at once.
    with pytest.raises(ModelBrokenError, match=r"crash\.gguf"):
        next(iter(engine.generate(_request(crashing_model))))
    assert len(engine.crashes) == 1
    # Remembered by the next office too, until the file changes.
    engine.close()
    again = make_engine()
    with pytest.raises(ModelBrokenError):
        next(iter(again.generate(_request(crashing_model))))
    assert str(crashing_model) in json.loads((tmp_path / "broken.json").read_text())
    assert again.forget_broken(str(crashing_model))
    assert again.broken_models() == {}


def test_a_hung_child_is_killed_and_restarted(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path
):
    engine = make_engine(heartbeat_timeout_s=1.0)
    pid = engine.wait_ready()
    os.kill(pid, signal.SIGSTOP)  # alive, but answers nothing
    stopped_at = time.monotonic()
    request = _request(tiny_model, "sent to the hung child", max_tokens=8)
    chunks = list(engine.generate(request))  # sent again to the new child
    assert chunks[-1].finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
    took = time.monotonic() - stopped_at
    # A bound, not a speed goal: 1 s of silence, then a kill and a restart.
    assert took < 30, f"hang noticed only after {took:.1f} s"
    crash = engine.crashes[-1]
    assert "heartbeats" in crash.reason
    assert crash.retried == 1
    assert not _wait_for(lambda: _alive(pid), 0) or not _alive(pid)
    assert engine.pid not in (None, pid)


def test_a_child_that_cannot_start_fails_requests_clearly(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path
):
    fails = (
        sys.executable,
        "-c",
        "import sys; print('no engine here', file=sys.stderr); sys.exit(3)",
    )
    engine = make_engine(command=fails, backoff_s=(0.0, 0.05), max_failed_starts=2)
    with pytest.raises(EngineUnavailableError, match="exit code 3"):
        next(iter(engine.generate(_request(tiny_model))))
    assert engine.crashes[-1].exit_code == 3
    assert "no engine here" in engine.crashes[-1].last_log_lines


def test_close_stops_the_child_in_order(
    make_engine: Callable[..., ProcessEngine], tiny_model: Path
):
    engine = make_engine()
    pid = engine.wait_ready()
    assert list(engine.generate(_request(tiny_model)))[-1].is_final
    engine.close()
    assert not _alive(pid)
    assert engine.crashes == type(engine.crashes)(maxlen=64)  # an orderly stop is no crash
    with pytest.raises(EngineUnavailableError):
        next(iter(engine.generate(_request(tiny_model))))


ORPHAN_SCRIPT = """
import sys, time
from app.engine.process.supervisor import ProcessEngine
engine = ProcessEngine()
print(engine.wait_ready(), flush=True)
time.sleep(600)
"""


def test_no_orphan_when_the_office_is_killed(tmp_path: Path):
    office = subprocess.Popen(
        [sys.executable, "-c", ORPHAN_SCRIPT],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert office.stdout is not None
        child_pid = int(office.stdout.readline())
        assert _alive(child_pid)
        office.kill()  # SIGKILL: no clean-up code runs in the office
        office.wait(10)
        assert _wait_for(lambda: not _alive(child_pid), 10), "engine child outlived the office"
    finally:
        if office.poll() is None:
            office.kill()
            office.wait()
        if office.stdout is not None:
            office.stdout.close()


def test_embeddings_run_in_the_child_and_survive_a_restart(
    make_engine: Callable[..., ProcessEngine], caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="soloist.engine.child")
    engine = make_engine()
    texts = ["invoice for the wedding cake", "bill for the bridal cake", "flour delivery late"]
    result = engine.embed(texts)
    assert result.model == "all-MiniLM-L6-v2"
    assert result.dimension == 384
    assert len(result.vectors) == 3 and all(len(v) == 384 for v in result.vectors)
    a, b, c = result.vectors
    dot = lambda x, y: sum(p * q for p, q in zip(x, y, strict=True))  # noqa: E731
    assert dot(a, b) > dot(a, c)  # normalised: the cosine similarity
    child_lines = [r.getMessage() for r in caplog.records if r.name == "soloist.engine.child"]
    assert any("loaded embedding model" in line for line in child_lines)  # there, not here
    pid = engine.wait_ready()
    os.kill(pid, signal.SIGKILL)
    again = engine.embed(texts[:1])  # sent to the restarted child
    assert again.vectors[0] == pytest.approx(a, abs=1e-5)
    with pytest.raises(ModelNotFoundError):
        engine.embed(["x"], model="no-such-embedding-model")


def test_an_error_class_unknown_here_arrives_as_its_nearest_base():
    class OnlyInTheChildError(ModelNotFoundError):
        pass

    message = json.loads(wire.dumps(wire.error_to_dict("r", OnlyInTheChildError("gone"))))
    message["type"] = "NotLoadedHereError"
    message["bases"][0] = "NotLoadedHereError"
    err = wire.error_from_dict(message)
    assert type(err) is ModelNotFoundError and str(err) == "gone"
