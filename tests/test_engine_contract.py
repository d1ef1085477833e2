"""One contract for every engine backend: streaming, limits, cancellation, close.

Each entry of ``BACKENDS`` builds one backend under test; every test below
runs once per entry. Adding a backend (the engine child process, say) is one
factory function and one line in ``BACKENDS``.

- ``llamacpp``: the real llama.cpp engine on the generated tiny GGUF model.
- ``process``: the same llama.cpp engine in its supervised child process.
- ``mlx``: the real mlx-lm, only where it is importable (macOS on Apple
  silicon) and ``SOLOIST_MLX_TEST_MODEL`` names a local MLX model folder.
- ``mlx-scripted``: the MLX engine's own worker, queue and cancellation on a
  scripted runtime standing in for mlx-lm, so that part runs everywhere.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from app.engine.errors import EngineError, ModelLoadError
from app.engine.interface import Engine
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.mlx_backend import (
    MLXEngine,
    MLXEngineClosedError,
    MLXStep,
    MLXUnavailableError,
    mlx_problem,
)
from app.engine.process.supervisor import ProcessConfig, ProcessEngine
from app.engine.types import (
    Chunk,
    FinishReason,
    GenerateRequest,
    Message,
    Priority,
    SamplingParams,
)

MLX_MODEL_ENV = "SOLOIST_MLX_TEST_MODEL"
PROMPT = (
    Message("system", "Be brief."),
    Message("user", "Tell me a long story about a lighthouse."),
)
WAIT_S = 60.0  # generous bounds: these check that things end, not how fast


@dataclass
class Backend:
    """An engine under test and the model paths to use with it."""

    engine: Engine
    model: str
    missing_model: str


# ------------------------------------------------------------------ backends


def llamacpp_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    model = request.getfixturevalue("tiny_model")
    engine = LlamaCppEngine(ContextConfig(n_ctx=512, n_batch=64))
    return Backend(engine, str(model), str(tmp_path / "absent.gguf"))


def process_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    model = request.getfixturevalue("tiny_model")
    config = ProcessConfig(engine=EngineConfig(context=ContextConfig(n_ctx=512, n_batch=64)))
    return Backend(ProcessEngine(config), str(model), str(tmp_path / "absent.gguf"))


def mlx_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    model = os.environ.get(MLX_MODEL_ENV, "")
    if importlib.util.find_spec("mlx_lm") is None or not model:
        pytest.skip(f"needs mlx-lm (macOS on Apple silicon) and {MLX_MODEL_ENV}=<MLX model folder>")
    return Backend(MLXEngine(), model, str(tmp_path / "absent-mlx-model"))


class ScriptedRuntime:
    """Stands in for mlx-lm: one word per step, a little time per token."""

    token_s = 0.001

    def __init__(self) -> None:
        self.loads: list[str] = []
        self.served: list[str] = []  # the last message of each request, in serving order

    def load(self, model_dir: str) -> Any:
        self.loads.append(model_dir)
        return model_dir

    def unload(self, loaded: Any) -> None:
        pass

    def stream(
        self, loaded: Any, messages: Sequence[Message], sampling: SamplingParams
    ) -> Iterator[MLXStep]:
        self.served.append(messages[-1].content)
        prompt_tokens = sum(len(m.content.split()) for m in messages)
        for n in range(1, sampling.max_tokens + 1):
            time.sleep(self.token_s)
            reason = "length" if n == sampling.max_tokens else None
            yield MLXStep(f"w{n} ", prompt_tokens, n, reason)


def mlx_scripted_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    model = tmp_path / "scripted-mlx-model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    return Backend(MLXEngine(ScriptedRuntime()), str(model), str(tmp_path / "absent-mlx-model"))


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "llamacpp": llamacpp_backend,
    "process": process_backend,
    "mlx": mlx_backend,
    "mlx-scripted": mlx_scripted_backend,
}


@pytest.fixture(params=list(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    built = BACKENDS[request.param](request, tmp_path)
    yield built
    built.engine.close()


def _request(model: str, max_tokens: int, **sampling: Any) -> GenerateRequest:
    params = SamplingParams(max_tokens=max_tokens, temperature=1.0, **sampling)
    return GenerateRequest(model_path=model, messages=PROMPT, sampling=params)


def _check_stream(chunks: list[Chunk], request_id: str) -> Chunk:
    """The shape every stream has; returns its final chunk."""
    assert chunks, "a stream yields at least its final chunk"
    assert [c.is_final for c in chunks] == [False] * (len(chunks) - 1) + [True]
    assert all(c.request_id == request_id for c in chunks)
    indexes = [c.index for c in chunks]
    assert indexes == sorted(set(indexes)), f"indexes must increase: {indexes}"
    final = chunks[-1]
    assert final.timings is not None
    assert final.timings.total_s >= final.timings.time_to_first_token_s >= 0
    return final


# ------------------------------------------------------------------ contract


def test_stream_ends_with_one_final_chunk_with_timings(backend: Backend) -> None:
    request = _request(backend.model, 12)

    chunks = list(backend.engine.generate(request))

    final = _check_stream(chunks, request.request_id)
    assert final.error is None
    assert final.timings is not None
    assert final.timings.prompt_tokens > 0
    assert 1 <= final.timings.completion_tokens <= 12
    assert "".join(c.text for c in chunks)


def test_max_tokens_is_honoured(backend: Backend) -> None:
    request = _request(backend.model, 8)

    final = _check_stream(list(backend.engine.generate(request)), request.request_id)

    assert final.finish_reason is FinishReason.LENGTH
    assert final.timings is not None
    assert final.timings.completion_tokens == 8


def test_cancel_from_another_thread(backend: Backend) -> None:
    request = _request(backend.model, 5000)
    first = threading.Event()
    chunks: list[Chunk] = []

    def consume() -> None:
        for chunk in backend.engine.generate(request):
            chunks.append(chunk)
            first.set()

    reader = threading.Thread(target=consume)
    reader.start()
    assert first.wait(WAIT_S)
    assert backend.engine.cancel(request.request_id)
    reader.join(WAIT_S)

    assert not reader.is_alive()
    final = _check_stream(chunks, request.request_id)
    assert final.finish_reason is FinishReason.CANCELLED
    assert final.timings is not None
    assert final.timings.completion_tokens < 5000
    assert backend.engine.cancel(request.request_id) is False  # finished: nothing to cancel


def test_cancel_of_an_unknown_request_is_false(backend: Backend) -> None:
    assert backend.engine.cancel("no-such-request") is False


def test_interleaved_requests_both_finish(backend: Backend) -> None:
    requests = [_request(backend.model, 6), _request(backend.model, 9)]
    streams = [backend.engine.generate(r) for r in requests]
    chunks: list[list[Chunk]] = [[], []]

    open_streams = {0, 1}
    while open_streams:
        for i in sorted(open_streams):
            chunk = next(streams[i])
            chunks[i].append(chunk)
            if chunk.is_final:
                open_streams.discard(i)

    for request, got, limit in zip(requests, chunks, (6, 9), strict=True):
        final = _check_stream(got, request.request_id)
        assert final.finish_reason is FinishReason.LENGTH
        assert final.timings is not None
        assert final.timings.completion_tokens == limit


def test_missing_model_raises_on_first_next(backend: Backend) -> None:
    stream = backend.engine.generate(_request(backend.missing_model, 4))

    with pytest.raises(ModelLoadError) as err:
        next(stream)
    assert str(err.value)  # one readable line
    # The engine keeps serving after the error.
    request = _request(backend.model, 3)
    assert _check_stream(list(backend.engine.generate(request)), request.request_id)


def test_close_is_idempotent(backend: Backend) -> None:
    request = _request(backend.model, 3)
    assert _check_stream(list(backend.engine.generate(request)), request.request_id)

    backend.engine.close()
    backend.engine.close()


# --------------------------------------------------- the MLX engine, here


@pytest.mark.skipif(
    sys.platform == "darwin" and platform.machine() == "arm64",
    reason="checks the refusal off Apple silicon",
)
def test_mlx_engine_refuses_to_start_off_apple_silicon() -> None:
    with pytest.raises(MLXUnavailableError, match="MLX needs macOS on Apple silicon"):
        MLXEngine()
    assert issubclass(MLXUnavailableError, EngineError)
    assert "mlx" not in sys.modules and "mlx_lm" not in sys.modules  # never even looked


@pytest.mark.parametrize(
    ("system", "machine", "has_mlx_lm", "problem"),
    [
        ("darwin", "arm64", True, None),
        ("darwin", "arm64", False, "mlx-lm"),
        ("darwin", "x86_64", True, "Apple silicon"),
        ("linux", "aarch64", True, "Apple silicon"),
        ("win32", "AMD64", True, "Apple silicon"),
    ],
)
def test_mlx_problem(system: str, machine: str, has_mlx_lm: bool, problem: str | None) -> None:
    found = mlx_problem(system, machine, has_mlx_lm)

    if problem is None:
        assert found is None
    else:
        assert found is not None and problem in found


@pytest.fixture
def scripted(tmp_path: Path) -> Iterator[tuple[MLXEngine, ScriptedRuntime, str]]:
    runtime = ScriptedRuntime()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    engine = MLXEngine(runtime)
    yield engine, runtime, str(model)
    engine.close()


def test_mlx_serves_waiting_requests_by_priority(
    scripted: tuple[MLXEngine, ScriptedRuntime, str],
) -> None:
    engine, runtime, model = scripted
    blocker = _request(model, 5000)
    blocking = engine.generate(blocker)
    assert not next(blocking).is_final  # the worker is busy with it now
    arrivals = [
        ("background", Priority.BACKGROUND),
        ("standard-1", Priority.STANDARD),
        ("interactive", Priority.INTERACTIVE),
        ("standard-2", Priority.STANDARD),
    ]
    streams = [
        engine.generate(
            GenerateRequest(
                model, (Message("user", name),), SamplingParams(max_tokens=2), priority=priority
            )
        )
        for name, priority in arrivals
    ]

    assert engine.cancel(blocker.request_id)
    list(blocking)
    for stream in streams:
        assert list(stream)[-1].finish_reason is FinishReason.LENGTH

    assert runtime.served[1:] == ["interactive", "standard-1", "standard-2", "background"]


def test_mlx_cancel_of_a_waiting_request_ends_it_at_once(
    scripted: tuple[MLXEngine, ScriptedRuntime, str],
) -> None:
    engine, _, model = scripted
    blocker = _request(model, 5000)
    blocking = engine.generate(blocker)
    next(blocking)
    waiting = _request(model, 5)
    stream = engine.generate(waiting)

    assert engine.cancel(waiting.request_id)
    chunks = list(stream)  # while the blocker still runs

    assert [c.finish_reason for c in chunks] == [FinishReason.CANCELLED]
    assert engine.cancel(blocker.request_id)
    assert list(blocking)[-1].finish_reason is FinishReason.CANCELLED


def test_mlx_keeps_one_model_loaded(
    scripted: tuple[MLXEngine, ScriptedRuntime, str], tmp_path: Path
) -> None:
    engine, runtime, model = scripted
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text("{}")

    for path in (model, model, str(other), model):
        list(engine.generate(_request(path, 2)))

    assert runtime.loads == [model, str(other), model]


def test_mlx_stop_strings_and_grammar(scripted: tuple[MLXEngine, ScriptedRuntime, str]) -> None:
    engine, _, model = scripted

    chunks = list(engine.generate(_request(model, 50, stop=("w4",))))
    assert chunks[-1].finish_reason is FinishReason.STOP
    assert "".join(c.text for c in chunks) == "w1 w2 w3 "

    with pytest.raises(EngineError, match="grammar"):
        next(engine.generate(_request(model, 5, grammar='root ::= "x"')))


def test_mlx_after_close(scripted: tuple[MLXEngine, ScriptedRuntime, str]) -> None:
    engine, _, model = scripted
    engine.close()

    with pytest.raises(MLXEngineClosedError):
        next(engine.generate(_request(model, 2)))
