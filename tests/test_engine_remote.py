"""RemoteEngine: against a real llama_cpp.server, and its logic on a MockTransport."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from servers import free_port, llama_cpp_server

from app.engine.errors import NotGGUFError
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.remote import (
    RemoteAuthError,
    RemoteEngine,
    RemoteProtocolError,
    RemoteRateLimitedError,
    RemoteServerError,
    RemoteUnavailableError,
)
from app.engine.routing import Backend, RoutePolicy, RoutingEngine, choose_backend
from app.engine.types import (
    Chunk,
    FinishReason,
    GenerateRequest,
    Message,
    Priority,
    SamplingParams,
)


def _request(max_tokens: int = 16) -> GenerateRequest:
    return GenerateRequest(
        model_path="tiny",
        messages=(Message("user", "Say something."),),
        sampling=SamplingParams(max_tokens=max_tokens, temperature=0.8),
    )


# -- a real server ---------------------------------------------------------
@pytest.fixture(scope="module")
def server_url(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with llama_cpp_server(tiny_model, tmp_path_factory.mktemp("remote")) as url:
        yield url


@pytest.fixture
def remote(server_url: str) -> Iterator[RemoteEngine]:
    engine = RemoteEngine(server_url, api_key="sk-test-secret", timeout_s=30)
    yield engine
    engine.close()


@pytest.mark.slow
def test_real_server_streams_until_length(remote: RemoteEngine) -> None:
    request = _request(max_tokens=16)
    chunks = list(remote.generate(request))
    text_chunks, final = chunks[:-1], chunks[-1]
    assert len(text_chunks) >= 2
    assert all(c.text and not c.is_final for c in text_chunks)
    assert [c.index for c in chunks] == list(range(len(chunks)))
    assert final.finish_reason is FinishReason.LENGTH
    assert final.request_id == request.request_id
    assert final.timings is not None
    assert final.timings.completion_tokens == len(text_chunks)
    assert 0 <= final.timings.time_to_first_token_s <= final.timings.total_s


@pytest.mark.slow
def test_real_server_lists_its_model(remote: RemoteEngine) -> None:
    models = remote.list_models()
    assert len(models) == 1
    assert models[0].endswith("tiny.gguf")


@pytest.mark.slow
def test_real_server_cancel_from_another_thread(remote: RemoteEngine) -> None:
    request = _request(max_tokens=300)
    stream = remote.generate(request)
    first = next(stream)
    assert first.text and not first.is_final
    results: list[bool] = []
    canceller = threading.Thread(target=lambda: results.append(remote.cancel(request.request_id)))
    canceller.start()
    canceller.join()
    rest = list(stream)
    assert results == [True]
    assert rest[-1].finish_reason is FinishReason.CANCELLED
    assert len(rest) == 1  # the flag is checked before the next event
    assert remote.cancel(request.request_id) is False  # no longer active
    # the server is still usable after the stream was closed
    again = list(remote.generate(_request(max_tokens=4)))
    assert again[-1].finish_reason is FinishReason.LENGTH


def test_wrong_port_is_unavailable_after_retries() -> None:
    delays: list[float] = []
    engine = RemoteEngine(f"http://127.0.0.1:{free_port()}", max_retries=1, sleep=delays.append)
    with pytest.raises(RemoteUnavailableError, match="could not be reached") as info:
        list(engine.generate(_request()))
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    assert len(delays) == 1
    engine.close()


# -- logic on a MockTransport ----------------------------------------------
def _sse(*events: object, done: bool = True) -> bytes:
    lines = [f"data: {json.dumps(e)}\n\n" for e in events]
    if done:
        lines.append("data: [DONE]\n\n")
    return "".join(lines).encode()


def _delta(text: str | None = None, finish: str | None = None) -> dict[str, object]:
    delta = {"content": text} if text is not None else {}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


_OK_STREAM = _sse(
    _delta("Hel"),
    _delta("lo"),
    _delta(finish="stop"),
    {"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}},
)


def _mock(
    handler: Callable[[httpx.Request], httpx.Response], **kwargs: object
) -> tuple[RemoteEngine, list[float]]:
    delays: list[float] = []
    engine = RemoteEngine(
        "http://remote.test",
        api_key="sk-very-secret",
        transport=httpx.MockTransport(handler),
        sleep=delays.append,
        **kwargs,  # type: ignore[arg-type]
    )
    return engine, delays


def test_mock_stream_sends_sampling_and_reads_usage() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=_OK_STREAM)

    engine, _ = _mock(handler, model="m1")
    request = GenerateRequest(
        model_path="x",
        messages=(Message("user", "hi"),),
        sampling=SamplingParams(temperature=0.2, top_p=0.9, max_tokens=5, seed=3, stop=("END",)),
    )
    chunks = list(engine.generate(request))
    assert "".join(c.text for c in chunks) == "Hello"
    assert chunks[-1].finish_reason is FinishReason.STOP
    assert chunks[-1].timings is not None
    assert (chunks[-1].timings.prompt_tokens, chunks[-1].timings.completion_tokens) == (7, 2)
    body = json.loads(seen[0].content)
    assert body["model"] == "m1" and body["stream"] is True
    assert body["messages"] == [{"role": "user", "content": "hi"}]
    assert (body["temperature"], body["top_p"], body["max_tokens"]) == (0.2, 0.9, 5)
    assert (body["seed"], body["stop"]) == (3, ["END"])
    assert seen[0].url.path == "/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-very-secret"


def test_429_twice_then_success_is_retried_with_growing_delays() -> None:
    answers = [httpx.Response(429), httpx.Response(429), httpx.Response(200, content=_OK_STREAM)]
    engine, delays = _mock(lambda request: answers.pop(0), max_retries=3)
    chunks = list(engine.generate(_request()))
    assert "".join(c.text for c in chunks) == "Hello"
    assert len(delays) == 2
    assert 0 < delays[0] < delays[1]
    assert answers == []


def test_429_every_time_gives_rate_limited_error() -> None:
    engine, delays = _mock(lambda request: httpx.Response(429), max_retries=2)
    with pytest.raises(RemoteRateLimitedError, match="429"):
        list(engine.generate(_request()))
    assert len(delays) == 2


def test_401_is_auth_error_without_retry() -> None:
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(401, json={"error": "bad key sk-very-secret"})

    engine, delays = _mock(handler)
    with pytest.raises(RemoteAuthError) as info:
        list(engine.generate(_request()))
    assert len(calls) == 1 and delays == []
    assert "sk-very-secret" not in str(info.value)
    assert "\n" not in str(info.value)


def test_error_after_first_token_is_not_retried() -> None:
    calls: list[httpx.Request] = []
    body = _sse(_delta("Hi"), {"error": {"code": 500, "message": "boom"}}, done=False)

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, content=body)

    engine, delays = _mock(handler)
    stream = engine.generate(_request())
    assert next(stream).text == "Hi"
    with pytest.raises(RemoteServerError):
        next(stream)
    assert len(calls) == 1 and delays == []


def test_connection_lost_after_first_token_is_not_retried() -> None:
    calls: list[httpx.Request] = []

    class Dropping(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield _sse(_delta("Hi"), done=False)
            raise httpx.ReadError("connection reset")

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, stream=Dropping())

    engine, delays = _mock(handler)
    chunks: list[Chunk] = []
    with pytest.raises(RemoteUnavailableError) as info:
        chunks.extend(engine.generate(_request()))
    assert [c.text for c in chunks] == ["Hi"]
    assert isinstance(info.value.__cause__, httpx.ReadError)
    assert len(calls) == 1 and delays == []


def test_500_before_first_token_is_retried() -> None:
    answers = [httpx.Response(503), httpx.Response(200, content=_OK_STREAM)]
    engine, delays = _mock(lambda request: answers.pop(0))
    chunks = list(engine.generate(_request()))
    assert chunks[-1].finish_reason is FinishReason.STOP
    assert len(delays) == 1


@pytest.mark.parametrize(
    "body",
    [
        b"data: {not json\n\n",
        b"data: [1, 2]\n\n",
        b'data: {"choices": 3}\n\n',
        b"garbage line\n\n",
        _sse(_delta("a"), done=False),  # ends with no finish reason and no [DONE]
    ],
)
def test_malformed_sse_is_protocol_error(body: bytes) -> None:
    engine, delays = _mock(lambda request: httpx.Response(200, content=body))
    with pytest.raises(RemoteProtocolError):
        list(engine.generate(_request()))
    assert delays == []


def test_cancel_between_events_ends_with_cancelled() -> None:
    engine, _ = _mock(lambda request: httpx.Response(200, content=_OK_STREAM))
    request = _request()
    stream = engine.generate(request)
    assert next(stream).text == "Hel"
    assert engine.cancel(request.request_id) is True
    rest = list(stream)
    assert [c.finish_reason for c in rest] == [FinishReason.CANCELLED]
    assert rest[0].timings is not None and rest[0].timings.completion_tokens == 1
    assert engine.cancel("unknown") is False


def test_list_models_and_embed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "a"}, {"id": "b"}]})
        texts = json.loads(request.content)["input"]
        data = [{"index": i, "embedding": [float(len(t)), 1.0]} for i, t in enumerate(texts)]
        return httpx.Response(200, json={"data": list(reversed(data))})

    engine, _ = _mock(handler)
    assert engine.list_models() == ["a", "b"]
    assert engine.embed(["x", "yyy"]) == [[1.0, 1.0], [3.0, 1.0]]


def test_repr_hides_the_key() -> None:
    engine, _ = _mock(lambda request: httpx.Response(200))
    text = repr(engine)
    assert "sk-very-secret" not in text
    assert "***" in text and "remote.test" in text


def test_logs_carry_no_key_or_text(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="soloist.engine.remote")
    answers = [httpx.Response(429), httpx.Response(200, content=_OK_STREAM)]
    engine, _ = _mock(lambda request: answers.pop(0))
    list(engine.generate(_request()))
    assert caplog.records, "expected some log records"
    assert "sk-very-secret" not in caplog.text
    assert "Say something" not in caplog.text and "Hel" not in caplog.text


# -- routing between the local engine and the remote endpoint ----------------
ROUTE_CASES = [
    # (priority, agent, policy, has_remote, expected)
    (Priority.INTERACTIVE, "a", RoutePolicy(), True, Backend.LOCAL),
    (Priority.BACKGROUND, "a", RoutePolicy(frozenset({Priority.BACKGROUND})), True, Backend.REMOTE),
    (Priority.INTERACTIVE, "a", RoutePolicy(frozenset({Priority.BACKGROUND})), True, Backend.LOCAL),
    (Priority.STANDARD, "crm", RoutePolicy(remote_agents=frozenset({"crm"})), True, Backend.REMOTE),
    (Priority.BACKGROUND, "a", RoutePolicy(frozenset({Priority.BACKGROUND})), False, Backend.LOCAL),
]


@pytest.mark.parametrize(("priority", "agent", "policy", "has_remote", "expected"), ROUTE_CASES)
def test_choose_backend(
    priority: Priority, agent: str, policy: RoutePolicy, has_remote: bool, expected: Backend
) -> None:
    request = GenerateRequest(
        model_path="m.gguf", messages=(Message("user", "x"),), priority=priority, agent_id=agent
    )
    assert choose_backend(request, policy, has_remote=has_remote) is expected


def _routed_request(model: str, priority: Priority = Priority.INTERACTIVE) -> GenerateRequest:
    return GenerateRequest(
        model_path=model,
        messages=(Message("user", "hello"),),
        sampling=SamplingParams(max_tokens=6),
        priority=priority,
    )


def test_a_background_class_routed_to_the_remote_server(server_url: str, tiny_model: Path) -> None:
    local = LlamaCppEngine(EngineConfig(context=ContextConfig(n_ctx=512), n_seq_max=1))
    router = RoutingEngine(
        local,
        RemoteEngine(server_url),
        RoutePolicy(remote_priorities=frozenset({Priority.BACKGROUND})),
    )
    try:
        chunks = list(router.generate(_routed_request(str(tiny_model), Priority.BACKGROUND)))
        assert chunks[-1].finish_reason is FinishReason.LENGTH
        assert local.loaded_models() == []  # it never touched the local engine
        list(router.generate(_routed_request(str(tiny_model))))
        assert local.loaded_models() == [str(tiny_model)]  # interactive stays local
    finally:
        router.close()


def test_a_local_model_that_cannot_load_degrades_to_the_remote_server(
    server_url: str, tmp_path: Path
) -> None:
    broken = tmp_path / "huge.gguf"
    broken.write_text("not a model at all")
    router = RoutingEngine(LlamaCppEngine(), RemoteEngine(server_url))
    try:
        chunks = list(router.generate(_routed_request(str(broken))))
    finally:
        router.close()
    assert chunks[-1].finish_reason is FinishReason.LENGTH
    assert [e.error for e in router.events] == ["NotGGUFError"]


def test_without_a_remote_the_local_error_reaches_the_caller(tmp_path: Path) -> None:
    broken = tmp_path / "huge.gguf"
    broken.write_text("not a model at all")
    router = RoutingEngine(LlamaCppEngine())
    try:
        with pytest.raises(NotGGUFError):
            list(router.generate(_routed_request(str(broken))))
    finally:
        router.close()
