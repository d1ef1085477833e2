"""The local OpenAI-compatible API: a real server on the real engine, a real HTTP client."""

from __future__ import annotations

import base64
import json
import os
import queue
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app import cli_serve
from app.engine.errors import (
    EngineBusyError,
    EngineError,
    GenerationError,
    InvalidGrammarError,
    ModelNotFoundError,
)
from app.engine.interface import Engine
from app.engine.llama_adapter import ContextConfig
from app.engine.llamacpp import EngineConfig, LlamaCppEngine
from app.engine.openai_api import MAX_BODY_BYTES, OpenAIServer
from app.engine.remote import RemoteEngine, RemoteServerError
from app.engine.types import (
    Chunk,
    FinishReason,
    GenerateRequest,
    Message,
    Priority,
    SamplingParams,
)

TOKEN = "sk-soloist-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CHAT = "/v1/chat/completions"
HELLO = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


class RecordingEngine:
    """The real engine, with what the server asked of it recorded.

    ``pause_after`` holds a stream after that many chunks until ``resume`` is
    set, so a test can leave while the engine is still decoding.
    """

    def __init__(self, inner: Engine) -> None:
        self.inner = inner
        self.reset()

    def reset(self) -> None:
        self.requests: list[GenerateRequest] = []
        self.cancelled: list[str] = []
        self.ends: dict[str, FinishReason | None] = {}
        self.ended = threading.Event()
        self.pause_after: int | None = None
        self.paused = threading.Event()
        self.resume = threading.Event()

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        self.requests.append(request)
        return self._watch(request.request_id, self.inner.generate(request))

    def _watch(self, request_id: str, stream: Iterator[Chunk]) -> Iterator[Chunk]:
        for count, chunk in enumerate(stream, 1):
            if chunk.is_final:
                self.ends[request_id] = chunk.finish_reason
                self.ended.set()
            yield chunk
            if count == self.pause_after:
                self.paused.set()
                self.resume.wait(30)

    def cancel(self, request_id: str) -> bool:
        self.cancelled.append(request_id)
        return self.inner.cancel(request_id)

    def close(self) -> None:  # the module fixture closes the real engine
        pass


class FakeEmbedder:
    model_name = "fake-embed"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return [[float(len(text)), 1.0, -0.5] for text in texts]


class ScriptedEngine:
    """Yields the given chunks, then raises ``error`` (if any)."""

    def __init__(self, error: BaseException | None, texts: tuple[str, ...] = ()) -> None:
        self.error = error
        self.texts = texts

    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        for index, text in enumerate(self.texts):
            yield Chunk(request.request_id, index, text=text)
        if self.error is not None:
            raise self.error
        yield Chunk(request.request_id, len(self.texts), finish_reason=FinishReason.STOP)

    def cancel(self, request_id: str) -> bool:
        return False

    def close(self) -> None:
        pass


# -- fixtures ---------------------------------------------------------------
@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Iterator[LlamaCppEngine]:
    eng = LlamaCppEngine(EngineConfig(context=ContextConfig(n_ctx=2048), n_seq_max=2))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def recorder(engine: LlamaCppEngine) -> RecordingEngine:
    return RecordingEngine(engine)


@pytest.fixture(scope="module")
def api(recorder: RecordingEngine, tiny_model: Path) -> Iterator[OpenAIServer]:
    models = {"tiny": str(tiny_model)}
    with OpenAIServer(recorder, lambda: models, token=TOKEN, embedder=FakeEmbedder()) as server:
        yield server


@pytest.fixture
def rec(recorder: RecordingEngine) -> Iterator[RecordingEngine]:
    recorder.reset()
    yield recorder
    recorder.resume.set()  # never leave a handler thread waiting


@pytest.fixture
def client(api: OpenAIServer, rec: RecordingEngine) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, headers=AUTH, timeout=30) as http:
        yield http


def _chat(**fields: Any) -> dict[str, Any]:
    return {"model": "tiny", "messages": HELLO, "max_tokens": 8, **fields}


def _events(response: httpx.Response) -> list[str]:
    """The data of each SSE event; fails on any other non-empty line."""
    lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines), lines
    return [line[len("data: ") :] for line in lines]


def _wait_for(condition: Callable[[], bool], timeout_s: float = 30) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return False


def _error(response: httpx.Response) -> dict[str, Any]:
    body = response.json()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return dict(body["error"])


# -- auth, models, routes ---------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ],
)
def test_missing_or_wrong_token_is_401(api: OpenAIServer, headers: dict[str, str]) -> None:
    response = httpx.get(f"{api.url}/v1/models", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert _error(response)["type"] == "authentication_error"
    assert TOKEN not in response.text


def test_a_chat_without_the_token_never_reaches_the_engine(
    api: OpenAIServer, rec: RecordingEngine
) -> None:
    with httpx.Client(base_url=api.url, headers={"Authorization": "Bearer nope"}) as http:
        assert http.post(CHAT, json=_chat()).status_code == 401
        assert http.post(CHAT, json=_chat()).status_code == 401  # same connection, body dropped
    assert rec.requests == []


def test_models_lists_the_chat_and_embedding_ids(client: httpx.Client) -> None:
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["tiny", "fake-embed"]
    assert all(m["object"] == "model" and isinstance(m["created"], int) for m in body["data"])


def test_unknown_path_is_404_and_wrong_method_405(client: httpx.Client) -> None:
    assert client.get("/v1/nothing").status_code == 404
    response = client.get(CHAT)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


# -- chat ---------------------------------------------------------------------
def test_whole_reply_has_text_and_usage(client: httpx.Client, rec: RecordingEngine) -> None:
    response = client.post(CHAT, json=_chat(max_tokens=12, seed=4))
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == "tiny"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"]
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > 5
    assert 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["id"] == f"chatcmpl-{rec.requests[0].request_id}"


def test_stream_is_well_formed_and_matches_the_greedy_whole_reply(
    client: httpx.Client, rec: RecordingEngine
) -> None:
    body = _chat(max_tokens=24, temperature=0, seed=9)
    whole = client.post(CHAT, json=body).json()
    streamed = {**body, "stream": True, "stream_options": {"include_usage": True}}
    with client.stream("POST", CHAT, json=streamed) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = _events(response)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    *text_chunks, last, usage = chunks
    assert last["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
    assert all(c["choices"][0]["finish_reason"] is None for c in text_chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in text_chunks)
    assert len(text_chunks) > 2  # streamed in pieces
    assert text == whole["choices"][0]["message"]["content"]
    assert usage["choices"] == [] and usage["usage"] == whole["usage"]
    assert rec.requests[1].sampling.temperature == 0.0


def test_stream_without_include_usage_has_no_usage_event(client: httpx.Client) -> None:
    with client.stream("POST", CHAT, json=_chat(stream=True)) as response:
        chunks = [json.loads(e) for e in _events(response)[:-1]]
    assert all("usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_sampling_fields_reach_the_engine(client: httpx.Client, rec: RecordingEngine) -> None:
    body = _chat(
        temperature=0.3, top_p=0.8, top_k=12, min_p=0.1, seed=77, stop=["END", "\n\n"],
        max_tokens=99, max_completion_tokens=5,
    )  # fmt: skip
    assert client.post(CHAT, json=body).status_code == 200
    sampling = rec.requests[0].sampling
    assert sampling == SamplingParams(
        temperature=0.3, top_p=0.8, top_k=12, min_p=0.1, seed=77, stop=("END", "\n\n"),
        max_tokens=5,
    )  # fmt: skip
    assert rec.requests[0].messages == (
        Message("system", "Be brief."),
        Message("user", "Hello there"),
    )


def test_model_may_be_left_out_when_only_one_is_served(
    client: httpx.Client, tiny_model: Path, rec: RecordingEngine
) -> None:
    body = _chat()
    del body["model"]
    response = client.post(CHAT, json=body)
    assert response.status_code == 200
    assert response.json()["model"] == "tiny"
    assert rec.requests[0].model_path == str(tiny_model)


def test_json_schema_makes_the_random_model_write_valid_json(client: httpx.Client) -> None:
    schema = {
        "type": "object",
        "properties": {
            "tool": {"type": "string", "enum": ["send_email", "create_event"]},
            "priority": {"type": "integer"},
        },
        "required": ["tool", "priority"],
    }
    response_format = {"type": "json_schema", "json_schema": {"name": "pick", "schema": schema}}
    body = _chat(max_tokens=200, temperature=0.8, response_format=response_format)
    choice = client.post(CHAT, json=body).json()["choices"][0]
    assert choice["finish_reason"] == "stop"  # the grammar ended it
    value = json.loads(choice["message"]["content"])
    assert value["tool"] in ("send_email", "create_event")
    assert isinstance(value["priority"], int)


def test_json_object_makes_a_json_object(client: httpx.Client, rec: RecordingEngine) -> None:
    body = _chat(max_tokens=300, seed=3, response_format={"type": "json_object"})
    choice = client.post(CHAT, json=body).json()["choices"][0]
    assert rec.requests[0].sampling.json_schema == '{"type": "object"}'
    if choice["finish_reason"] == "stop":  # a random model may run out of tokens first
        assert isinstance(json.loads(choice["message"]["content"]), dict)
    else:
        assert choice["message"]["content"].startswith("{")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, Priority.STANDARD),
        ("interactive", Priority.INTERACTIVE),
        ("Background", Priority.BACKGROUND),
    ],
)
def test_priority_and_agent_headers_reach_the_engine(
    client: httpx.Client, rec: RecordingEngine, header: str | None, expected: Priority
) -> None:
    headers = {"X-Soloist-Agent": "notes-app"}
    if header is not None:
        headers["X-Soloist-Priority"] = header
    assert client.post(CHAT, json=_chat(max_tokens=2), headers=headers).status_code == 200
    assert rec.requests[0].priority is expected
    assert rec.requests[0].agent_id == "notes-app"


def test_agent_defaults_to_api(client: httpx.Client, rec: RecordingEngine) -> None:
    assert client.post(CHAT, json=_chat(max_tokens=2)).status_code == 200
    assert rec.requests[0].agent_id == "api"


@pytest.mark.parametrize("headers", [{"X-Soloist-Priority": "urgent"}, {"X-Soloist-Agent": "a b"}])
def test_invalid_soloist_headers_are_400(
    client: httpx.Client, rec: RecordingEngine, headers: dict[str, str]
) -> None:
    response = client.post(CHAT, json=_chat(), headers=headers)
    assert response.status_code == 400
    assert _error(response)["param"] == next(iter(headers))
    assert rec.requests == []


# -- leaving early ------------------------------------------------------------
def test_client_leaving_mid_stream_cancels_the_request(
    api: OpenAIServer, rec: RecordingEngine
) -> None:
    rec.pause_after = 3
    body = _chat(max_tokens=1900, temperature=1.0, stream=True)
    with (
        httpx.Client(base_url=api.url, headers=AUTH, timeout=30) as http,
        http.stream("POST", CHAT, json=body) as response,
    ):
        assert response.status_code == 200
        assert rec.paused.wait(30)
    # the response was closed unread, so its connection is gone; let the server go on
    rec.resume.set()
    request_id = rec.requests[0].request_id
    assert rec.ended.wait(30)
    assert rec.cancelled == [request_id]
    assert rec.ends[request_id] is FinishReason.CANCELLED


def test_client_timing_out_on_a_whole_reply_cancels_it(
    api: OpenAIServer, rec: RecordingEngine
) -> None:
    rec.pause_after = 2
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{api.url}{CHAT}", json=_chat(max_tokens=1900, temperature=1.0), headers=AUTH,
            timeout=httpx.Timeout(30, read=0.5),
        )  # fmt: skip
    assert rec.paused.wait(30)  # the client left while the server still had more to say
    rec.resume.set()
    assert rec.ended.wait(30)
    assert rec.cancelled == [rec.requests[0].request_id]
    assert rec.ends[rec.requests[0].request_id] is FinishReason.CANCELLED


# -- bad requests ---------------------------------------------------------------
BAD_BODIES: list[tuple[dict[str, Any], str | None]] = [
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, "messages"),
    (_chat(temperature="hot"), "temperature"),
    (_chat(temperature=True), "temperature"),
    (_chat(max_tokens=0), "max_tokens"),
    (_chat(top_k=1.5), "top_k"),
    (_chat(stop=3), "stop"),
    (_chat(n=2), "n"),
    (_chat(stream="yes"), "stream"),
    (_chat(tools=[{"type": "function"}]), "tools"),
    (_chat(response_format={"type": "json_schema", "json_schema": {}}), "response_format"),
    (_chat(response_format={"type": "xml"}), "response_format"),
]


@pytest.mark.parametrize(("body", "param"), BAD_BODIES)
def test_invalid_fields_are_400(
    client: httpx.Client, rec: RecordingEngine, body: dict[str, Any], param: str | None
) -> None:
    response = client.post(CHAT, json=body)
    assert response.status_code == 400
    error = _error(response)
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert rec.requests == []


@pytest.mark.parametrize("content", [b"{not json", b"[1, 2]", b"\xff\xfe\x00"])
def test_a_body_that_is_not_a_json_object_is_400(client: httpx.Client, content: bytes) -> None:
    response = client.post(CHAT, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert "JSON" in _error(response)["message"]
    assert client.get("/v1/models").status_code == 200  # the connection is still usable


def test_unknown_model_is_404(client: httpx.Client, rec: RecordingEngine) -> None:
    response = client.post(CHAT, json=_chat(model="gpt-9"))
    assert response.status_code == 404
    error = _error(response)
    assert error["code"] == "model_not_found"
    assert "gpt-9" in error["message"]
    assert rec.requests == []


def test_body_over_the_limit_is_413(client: httpx.Client, rec: RecordingEngine) -> None:
    content = b" " * (MAX_BODY_BYTES + 1)
    response = client.post(CHAT, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert _error(response)["code"] == "body_too_large"
    assert client.get("/v1/models").status_code == 200
    assert rec.requests == []


def test_prompt_longer_than_the_context_is_400(client: httpx.Client) -> None:
    long_text = "many words here " * 1000  # byte tokens: far over 2048
    response = client.post(CHAT, json=_chat(messages=[{"role": "user", "content": long_text}]))
    assert response.status_code == 400
    assert _error(response)["code"] == "context_length_exceeded"


# -- engine errors, on a scripted engine ----------------------------------------
@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (EngineBusyError("The queue is full."), 429, "engine_busy"),
        (ModelNotFoundError("There is no model file at x.gguf."), 503, "model_unavailable"),
        (InvalidGrammarError("The grammar is not valid GBNF."), 400, "invalid_response_format"),
        (GenerationError("llama.cpp failed."), 500, None),
        (RuntimeError("secret internals"), 500, None),
    ],
)
def test_engine_errors_map_to_statuses(error: BaseException, status: int, code: str | None) -> None:
    with (
        OpenAIServer(ScriptedEngine(error), lambda: {"m": "m.gguf"}, token=TOKEN) as server,
        httpx.Client(base_url=server.url, headers=AUTH) as http,
    ):
        response = http.post(CHAT, json=_chat(model="m"))
    assert response.status_code == status
    body = _error(response)
    assert body["code"] == code
    if isinstance(error, EngineError):
        assert body["message"] == str(error)  # a known error: its text is for the user
    else:
        assert "secret internals" not in response.text
        assert "Traceback" not in response.text
    if status == 429:
        assert int(response.headers["Retry-After"]) > 0


def test_a_bug_mid_stream_ends_it_with_a_plain_error_event() -> None:
    engine = ScriptedEngine(RuntimeError("secret internals"), texts=("Hel",))
    with (
        OpenAIServer(engine, lambda: {"m": "m.gguf"}, token=TOKEN) as server,
        httpx.Client(base_url=server.url, headers=AUTH) as http,
        http.stream("POST", CHAT, json=_chat(model="m", stream=True)) as response,
    ):
        events = _events(response)
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "Hel"
    error = json.loads(events[-1])["error"]
    assert error["type"] == "server_error"
    assert "secret" not in error["message"]


def test_an_error_mid_stream_ends_it_with_an_error_event() -> None:
    engine = ScriptedEngine(GenerationError("llama.cpp failed."), texts=("Hel", "lo"))
    with (
        OpenAIServer(engine, lambda: {"m": "m.gguf"}, token=TOKEN) as server,
        httpx.Client(base_url=server.url, headers=AUTH) as http,
    ):
        with http.stream("POST", CHAT, json=_chat(model="m", stream=True)) as response:
            events = _events(response)
        assert "[DONE]" not in events
        assert json.loads(events[-1])["error"]["message"] == "llama.cpp failed."
        remote = RemoteEngine(server.url, api_key=TOKEN, max_retries=0)
        request = GenerateRequest(model_path="m", messages=(Message("user", "hi"),))
        chunks: list[Chunk] = []
        with pytest.raises(RemoteServerError):
            chunks.extend(remote.generate(request))
        remote.close()
    assert "".join(c.text for c in chunks) == "Hello"


def test_two_models_need_a_name_and_no_embedder_is_501(tiny_model: Path) -> None:
    models = {"a": str(tiny_model), "b": str(tiny_model)}
    with (
        OpenAIServer(ScriptedEngine(None), lambda: models, token=TOKEN) as server,
        httpx.Client(base_url=server.url, headers=AUTH) as http,
    ):
        assert [m["id"] for m in http.get("/v1/models").json()["data"]] == ["a", "b"]
        unnamed = http.post(CHAT, json={"messages": HELLO})
        assert unnamed.status_code == 400 and _error(unnamed)["param"] == "model"
        embeddings = http.post("/v1/embeddings", json={"input": "x"})
        assert embeddings.status_code == 501
        assert _error(embeddings)["type"] == "not_supported_error"


# -- embeddings -----------------------------------------------------------------
def test_embeddings_in_openai_shape(client: httpx.Client) -> None:
    body = client.post("/v1/embeddings", json={"input": ["a", "bbb"], "model": "fake-embed"}).json()
    assert body["object"] == "list" and body["model"] == "fake-embed"
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(d["object"] == "embedding" for d in body["data"])
    assert [d["embedding"] for d in body["data"]] == [[1.0, 1.0, -0.5], [3.0, 1.0, -0.5]]
    single = client.post("/v1/embeddings", json={"input": "four"}).json()
    assert single["data"][0]["embedding"] == [4.0, 1.0, -0.5]
    # one embedder: a tool's habitual model name still gets it, and is told which
    other = client.post("/v1/embeddings", json={"input": "x", "model": "text-embedding-3"})
    assert other.json()["model"] == "fake-embed"


def test_embeddings_as_base64(client: httpx.Client) -> None:
    body = client.post("/v1/embeddings", json={"input": "xy", "encoding_format": "base64"}).json()
    raw = base64.b64decode(body["data"][0]["embedding"])
    assert struct.unpack("<3f", raw) == (2.0, 1.0, -0.5)


@pytest.mark.parametrize(
    ("body", "status"),
    [({"input": 3}, 400), ({"input": []}, 400), ({"input": [1, 2]}, 400)],
)
def test_bad_embedding_requests(client: httpx.Client, body: dict[str, Any], status: int) -> None:
    response = client.post("/v1/embeddings", json=body)
    assert response.status_code == status
    _error(response)


# -- binding --------------------------------------------------------------------
@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "example.com", "::", ""])
def test_non_loopback_host_is_refused(host: str) -> None:
    with pytest.raises(ValueError, match="only listens on this computer"):
        OpenAIServer(ScriptedEngine(None), dict, token=TOKEN, host=host)


def test_a_token_is_required() -> None:
    with pytest.raises(ValueError, match="token"):
        OpenAIServer(ScriptedEngine(None), dict, token="")


def _ipv6_loopback_works() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "::1"])
def test_loopback_hosts_are_served(host: str) -> None:
    if host == "::1" and not _ipv6_loopback_works():
        pytest.skip("no IPv6 loopback here")
    with OpenAIServer(ScriptedEngine(None), lambda: {"m": "m"}, token=TOKEN, host=host) as server:
        assert server.port > 0
        assert str(server.port) in server.url
        assert TOKEN not in repr(server)
        response = httpx.get(f"{server.url}/v1/models", headers=AUTH)
    assert response.json()["data"][0]["id"] == "m"


def test_close_is_idempotent_and_frees_the_port() -> None:
    server = OpenAIServer(ScriptedEngine(None), dict, token=TOKEN)
    server.start()
    port = server.port
    server.close()
    server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/v1/models", headers=AUTH)


# -- our own client against our own server --------------------------------------
def test_remote_engine_round_trip(api: OpenAIServer, rec: RecordingEngine) -> None:
    remote = RemoteEngine(api.url, api_key=TOKEN, model="tiny", timeout_s=30)
    try:
        assert remote.list_models() == ["tiny", "fake-embed"]
        assert remote.embed(["a", "bbb"]) == [[1.0, 1.0, -0.5], [3.0, 1.0, -0.5]]
        request = GenerateRequest(
            model_path="ignored", messages=(Message("user", "hi"),),
            sampling=SamplingParams(max_tokens=10, seed=5),
        )  # fmt: skip
        chunks = list(remote.generate(request))
    finally:
        remote.close()
    final = chunks[-1]
    assert final.finish_reason in (FinishReason.STOP, FinishReason.LENGTH)
    assert "".join(c.text for c in chunks)
    assert final.timings is not None
    assert final.timings.prompt_tokens > 0  # read from the server's usage event
    assert 1 <= final.timings.completion_tokens <= 10
    served = rec.requests[0]
    assert served.sampling.seed == 5 and served.sampling.max_tokens == 10
    assert served.priority is Priority.STANDARD


def test_remote_engine_cancel_reaches_the_local_engine(
    api: OpenAIServer, rec: RecordingEngine
) -> None:
    rec.pause_after = 2
    remote = RemoteEngine(api.url, api_key=TOKEN, model="tiny", timeout_s=30)
    request = GenerateRequest(
        model_path="tiny", messages=(Message("user", "go on"),),
        sampling=SamplingParams(max_tokens=1900, temperature=1.0),
    )  # fmt: skip
    try:
        stream = remote.generate(request)
        assert next(stream).text
        assert remote.cancel(request.request_id)
        assert [c.finish_reason for c in stream] == [FinishReason.CANCELLED]
    finally:
        remote.close()
    rec.resume.set()
    served_id = rec.requests[0].request_id
    assert rec.ended.wait(30)
    assert rec.cancelled == [served_id]
    assert rec.ends[served_id] is FinishReason.CANCELLED


def test_logs_carry_no_token_or_text(
    client: httpx.Client, caplog: pytest.LogCaptureFixture, rec: RecordingEngine
) -> None:
    caplog.set_level("DEBUG", logger="soloist")
    body = _chat(messages=[{"role": "user", "content": "purple elephant plans"}], stream=True)
    with client.stream("POST", CHAT, json=body) as response:
        reply = "".join(_events(response))
    client.get("/v1/models", headers={"Authorization": "Bearer wrong-token-xyz"})
    assert rec.requests[0].request_id in caplog.text
    assert "purple elephant" not in caplog.text
    assert TOKEN not in caplog.text and "wrong-token-xyz" not in caplog.text
    assert reply  # the reply text went to the client, not the log


# -- soloist serve ----------------------------------------------------------------
def test_model_ids_are_file_stems(tmp_path: Path) -> None:
    first, second = tmp_path / "qwen.gguf", tmp_path / "sub" / "qwen.gguf"
    second.parent.mkdir()
    first.write_bytes(b"x")
    second.write_bytes(b"x")
    assert cli_serve.model_ids([str(first)]) == {"qwen": str(first.resolve())}
    with pytest.raises(ValueError, match="Two models"):
        cli_serve.model_ids([str(first), str(second)])
    with pytest.raises(ValueError, match="no model file"):
        cli_serve.model_ids([str(tmp_path / "missing.gguf")])


def test_token_comes_from_file_then_env_then_is_generated(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    env = {cli_serve.TOKEN_ENV: "from-env"}
    assert cli_serve.read_token(str(token_file), env) == ("from-file", False)
    assert cli_serve.read_token(None, env) == ("from-env", False)
    token, generated = cli_serve.read_token(None, {})
    assert generated and len(token) >= 32
    assert cli_serve.read_token(None, {})[0] != token
    token_file.write_text("  \n")
    with pytest.raises(ValueError, match="empty"):
        cli_serve.read_token(str(token_file), {})


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM is POSIX")
def test_soloist_serve_answers_then_stops_on_sigterm(tiny_model: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != cli_serve.TOKEN_ENV}
    cmd = [sys.executable, "-m", "app.cli_serve", "serve", "--model", str(tiny_model),
           "--port", "0", "--ctx", "512"]  # fmt: skip
    with subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env) as proc:
        assert proc.stderr is not None
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in proc.stderr], daemon=True)  # type: ignore[union-attr]
        reader.start()
        try:
            url = re.search(r"serving tiny at (\S+)/v1", lines.get(timeout=60))
            token = re.search(r"API token \(shown once\): (\S+)", lines.get(timeout=10))
            assert url is not None and token is not None
            headers = {"Authorization": f"Bearer {token.group(1)}"}
            models = httpx.get(f"{url.group(1)}/v1/models", headers=headers, timeout=10)
            assert [m["id"] for m in models.json()["data"]] == ["tiny"]
            assert httpx.get(f"{url.group(1)}/v1/models", timeout=10).status_code == 401
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(timeout=10)
    rest = []
    while not lines.empty():
        rest.append(lines.get())
    assert any("stopped" in line for line in rest)
