"""A local OpenAI-compatible HTTP API in front of any :class:`Engine`.

Other desktop tools reach the same scheduled engine as the app, so their
requests queue, batch and yield to the user's own chat like any agent's::

    GET  /v1/models             the chat models and the embedding model
    POST /v1/chat/completions   a chat reply, whole or streamed (SSE)
    POST /v1/embeddings         vectors from the embedder (501 without one); there
                                is one embedder, so any ``model`` name gets it

Every request needs ``Authorization: Bearer <token>``. Two headers of our
own: ``X-Soloist-Priority: interactive|standard|background`` (default
standard) picks the priority class, ``X-Soloist-Agent`` the agent id the
metrics show. Errors have OpenAI's shape, ``{"error": {"message", "type",
"param", "code"}}``::

    400  invalid JSON or field, prompt too long (code context_length_exceeded)
    401  missing or wrong token (with WWW-Authenticate: Bearer)
    404  unknown path or model          413  body over the size limit
    429  the engine refused the request for now (with Retry-After)
    501  no embedder                    503  the model cannot be loaded
    500  anything else (logged; no traceback in the body)

The server binds to loopback only and is built on the standard library
(``http.server``, HTTP/1.1, streams with chunked encoding). When a client
goes away mid-reply the request is cancelled, so the engine stops decoding.
Logs carry request ids, sizes, status codes and timings; never the token or
the text of a message.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import ipaddress
import itertools
import json
import logging
import secrets
import socket
import socketserver
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol, cast

from app.engine.errors import (
    EngineBusyError,
    EngineError,
    InvalidGrammarError,
    ModelLoadError,
    PromptTooLongError,
)
from app.engine.interface import Engine
from app.engine.types import Chunk, FinishReason, GenerateRequest, Message, Priority, SamplingParams

log = logging.getLogger("soloist.engine.api")

MAX_BODY_BYTES = 8 * 2**20
DEFAULT_MAX_TOKENS = 2048  # when the caller sets none; the engine also stops at the context end
PRIORITY_HEADER = "X-Soloist-Priority"
AGENT_HEADER = "X-Soloist-Agent"
DEFAULT_AGENT = "api"
RETRY_AFTER_S = 2
_DISCARD_LIMIT = 64 * 2**20  # bodies up to this are read and dropped to keep the connection
_POLL_S = 0.25  # how often the accept loop looks for close(); close waits up to this
_IDLE_TIMEOUT_S = 120  # a keep-alive connection with no request for this long is closed
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
_FINISH: dict[FinishReason | None, str] = {FinishReason.STOP: "stop", FinishReason.LENGTH: "length"}
_AGENT_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-")


class Embedder(Protocol):
    """Turns texts into vectors; ``model_name`` is the id the API lists for it."""

    @property
    def model_name(self) -> str: ...

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class ApiError(Exception):
    """An HTTP error answer in OpenAI's shape; ``message`` is one readable line."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        kind: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.kind = kind
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        }


class _ClientGoneError(Exception):
    """The client closed the connection before the reply was written."""


_INTERNAL = ApiError(500, "Internal server error; see the Soloist log.", kind="server_error")


def _bad(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def error_for(exc: EngineError) -> ApiError:
    """The HTTP answer for an engine error (its text is already user-readable)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, EngineBusyError):
        return ApiError(
            429,
            text,
            kind="rate_limit_error",
            code="engine_busy",
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )
    if isinstance(exc, PromptTooLongError):
        return ApiError(400, text, param="messages", code="context_length_exceeded")
    if isinstance(exc, InvalidGrammarError):
        return ApiError(400, text, param="response_format", code="invalid_response_format")
    if isinstance(exc, ModelLoadError):
        return ApiError(503, text, kind="unavailable_error", code="model_unavailable")
    return ApiError(500, text, kind="server_error")


def loopback_host(host: str) -> str:
    """The address to bind for ``host``; ValueError unless it is a loopback address."""
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        address = None
    if address is None or not address.is_loopback:
        raise ValueError(
            f"The API only listens on this computer (127.0.0.1, ::1 or localhost), not {host!r}."
        )
    return str(address)


def parse_priority(value: str | None) -> Priority:
    """The priority class a header asks for; standard when absent."""
    if value is None or not value.strip():
        return Priority.STANDARD
    try:
        return Priority[value.strip().upper()]
    except KeyError:
        raise _bad(
            f"{PRIORITY_HEADER} must be interactive, standard or background.", PRIORITY_HEADER
        ) from None


def parse_agent(value: str | None) -> str:
    """The agent id a header names; ``api`` when absent."""
    if value is None or not value.strip():
        return DEFAULT_AGENT
    agent = value.strip()
    if len(agent) > 64 or not set(agent) <= _AGENT_CHARS:
        raise _bad(f"{AGENT_HEADER} must be up to 64 letters, digits or ._:-", AGENT_HEADER)
    return agent


# -- request bodies -----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChatCall:
    """A parsed chat completion request."""

    model_id: str
    request: GenerateRequest
    stream: bool = False
    include_usage: bool = False
    created: int = field(default_factory=lambda: int(time.time()))

    @property
    def completion_id(self) -> str:
        return f"chatcmpl-{self.request.request_id}"


def resolve_model(requested: Any, models: Mapping[str, str]) -> tuple[str, str]:
    """(id, path) of the model a request names; the only one when it names none."""
    if requested is None or requested == "":
        if len(models) == 1:
            return next(iter(models.items()))
        raise _bad("Name a model: more than one is served (see /v1/models).", "model")
    if not isinstance(requested, str):
        raise _bad("model must be a string.", "model")
    path = models.get(requested)
    if path is None:
        raise ApiError(
            404,
            f"The model {requested!r} does not exist here; see /v1/models.",
            kind="not_found_error",
            param="model",
            code="model_not_found",
        )
    return requested, path


def parse_chat(
    body: dict[str, Any],
    models: Mapping[str, str],
    *,
    priority: Priority = Priority.STANDARD,
    agent_id: str = DEFAULT_AGENT,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> ChatCall:
    """Check a /v1/chat/completions body and turn it into a :class:`ChatCall`."""
    _refuse_unsupported(body)
    model_id, path = resolve_model(body.get("model"), models)
    stream = _flag(body, "stream")
    options = body.get("stream_options") or {}
    if not isinstance(options, dict):
        raise _bad("stream_options must be an object.", "stream_options")
    request = GenerateRequest(
        model_path=path,
        messages=parse_messages(body.get("messages")),
        sampling=sampling_from(body, default_max_tokens),
        priority=priority,
        agent_id=agent_id,
    )
    return ChatCall(model_id, request, stream, stream and _flag(options, "include_usage"))


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key in ("tools", "functions"):
        if body.get(key):
            raise _bad(f"{key} are not supported by this server.", key)
    if body.get("n") not in (None, 1):
        raise _bad("Only n=1 is supported.", "n")
    if body.get("logprobs"):
        raise _bad("logprobs are not supported by this server.", "logprobs")


def parse_messages(value: Any) -> tuple[Message, ...]:
    """The chat messages of a request body."""
    if not isinstance(value, list) or not value:
        raise _bad("messages must be a non-empty list.", "messages")
    messages = []
    for item in value:
        if not isinstance(item, dict):
            raise _bad("Each message must be an object.", "messages")
        role = item.get("role")
        mapped = _ROLES.get(role) if isinstance(role, str) else None
        if mapped is None:
            raise _bad("A message role must be system, developer, user or assistant.", "messages")
        messages.append(Message(mapped, _content_text(item.get("content"), mapped)))
    return tuple(messages)


def _content_text(content: Any, role: str) -> str:
    if isinstance(content, str):
        return content
    if content is None and role == "assistant":
        return ""
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise _bad("Only text content parts are supported.", "messages")
            text = part.get("text")
            if not isinstance(text, str):
                raise _bad("A text content part needs a string text.", "messages")
            texts.append(text)
        return "".join(texts)
    raise _bad("A message content must be a string or a list of text parts.", "messages")


def sampling_from(body: dict[str, Any], default_max_tokens: int) -> SamplingParams:
    """OpenAI's sampling fields (and llama.cpp's top_k, min_p) as SamplingParams."""
    changes: dict[str, Any] = {}
    for key, low, high in (("temperature", 0, 5), ("top_p", 0, 1), ("min_p", 0, 1)):
        value = _number(body, key, low, high)
        if value is not None:
            changes[key] = value
    penalty = _number(body, "repeat_penalty", 0, 10)
    if penalty is not None:
        changes["repeat_penalty"] = penalty
    top_k = _integer(body, "top_k", 0, 2**31 - 1)
    if top_k is not None:
        changes["top_k"] = top_k
    seed = _integer(body, "seed", -(2**63), 2**64 - 1)
    # Without a seed each call differs, as with OpenAI (our default seed is fixed).
    changes["seed"] = secrets.randbits(32) if seed is None else seed
    max_tokens = _integer(body, "max_completion_tokens", 1, 2**31 - 1)
    if max_tokens is None:
        max_tokens = _integer(body, "max_tokens", 1, 2**31 - 1)
    changes["max_tokens"] = max_tokens or default_max_tokens
    changes["stop"] = _stops(body.get("stop"))
    changes["json_schema"] = json_schema_from(body.get("response_format"))
    return replace(SamplingParams(), **changes)


def json_schema_from(value: Any) -> str | None:
    """The JSON schema text a ``response_format`` asks for; None for plain text."""
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return json.dumps({"type": "object"})
    if kind == "json_schema":
        spec = value.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise _bad("response_format.json_schema.schema must be an object.", "response_format")
        return json.dumps(schema)
    raise _bad("response_format.type must be text, json_object or json_schema.", "response_format")


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    stops = [value] if isinstance(value, str) else value
    if (
        not isinstance(stops, list)
        or len(stops) > 16
        or not all(isinstance(s, str) and s for s in stops)
    ):
        raise _bad("stop must be a string or a list of up to 16 non-empty strings.", "stop")
    return tuple(stops)


def _number(body: dict[str, Any], key: str, low: float, high: float) -> float | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise _bad(f"{key} must be a number from {low} to {high}.", key)
    return float(value)


def _integer(body: dict[str, Any], key: str, low: int, high: int) -> int | None:
    value = body.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{key} must be a whole number from {low} to {high}.", key)
    return value


def _flag(body: dict[str, Any], key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise _bad(f"{key} must be true or false.", key)
    return value


def parse_embedding_input(value: Any) -> list[str]:
    """The texts of an /v1/embeddings ``input``: a string or a list of strings."""
    if isinstance(value, str):
        return [value]
    if (
        isinstance(value, list)
        and 0 < len(value) <= 2048
        and all(isinstance(text, str) for text in value)
    ):
        return list(value)
    raise _bad("input must be a string or a list of up to 2048 strings.", "input")


# -- response bodies ----------------------------------------------------------
def _usage(final: Chunk | None) -> dict[str, int]:
    timings = final.timings if final is not None else None
    prompt = timings.prompt_tokens if timings is not None else 0
    completion = timings.completion_tokens if timings is not None else 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def completion_body(call: ChatCall, text: str, final: Chunk) -> dict[str, Any]:
    """The whole-reply answer (``object: chat.completion``)."""
    return {
        "id": call.completion_id,
        "object": "chat.completion",
        "created": call.created,
        "model": call.model_id,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": _FINISH.get(final.finish_reason, "stop"),
                "logprobs": None,
            }
        ],
        "usage": _usage(final),
    }


def chunk_body(call: ChatCall, delta: dict[str, str], finish: str | None = None) -> dict[str, Any]:
    """One streamed event (``object: chat.completion.chunk``)."""
    return {
        "id": call.completion_id,
        "object": "chat.completion.chunk",
        "created": call.created,
        "model": call.model_id,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }


def usage_body(call: ChatCall, final: Chunk) -> dict[str, Any]:
    """The usage-only event sent last when ``stream_options.include_usage`` is set."""
    return {**chunk_body(call, {}), "choices": [], "usage": _usage(final)}


def _end_error(final: Chunk | None) -> ApiError:
    """The error a stream that did not end with stop or length means."""
    if final is not None and final.finish_reason is FinishReason.CANCELLED:
        return ApiError(
            503, "The request was cancelled (the engine is stopping).", kind="unavailable_error"
        )
    if final is not None and final.error:
        return ApiError(500, final.error, kind="server_error")
    return ApiError(500, "The engine ended the reply without finishing it.", kind="server_error")


def embeddings_body(vectors: list[list[float]], model: str, encoding: str) -> dict[str, Any]:
    data = []
    for index, vector in enumerate(vectors):
        floats = [float(x) for x in vector]
        packed = struct.pack(f"<{len(floats)}f", *floats)
        embedding: Any = base64.b64encode(packed).decode() if encoding == "base64" else floats
        data.append({"object": "embedding", "index": index, "embedding": embedding})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": 0, "total_tokens": 0},  # the embedder does not count
    }


# -- the server ---------------------------------------------------------------
@dataclass
class _Context:
    """What the request handlers share."""

    engine: Engine
    models: Callable[[], Mapping[str, str]]
    embedder: Embedder | None
    token: bytes
    default_max_tokens: int
    max_body_bytes: int
    started: int = field(default_factory=lambda: int(time.time()))
    lock: threading.Lock = field(default_factory=threading.Lock)
    active: set[str] = field(default_factory=set)  # request ids being generated

    def authorized(self, header: str | None) -> bool:
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self.token)


class _HttpServer(ThreadingHTTPServer):
    """One daemon thread per connection, tracked so that ``close`` can end them."""

    daemon_threads = True
    block_on_close = False  # close() joins the connection threads itself, with a timeout
    allow_reuse_address = sys.platform != "win32"  # on Windows it lets others share the port

    def __init__(self, address: tuple[str, int], ctx: _Context) -> None:
        self.ctx = ctx
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._conn_lock = threading.Lock()
        self.connections: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # skip HTTPServer's reverse DNS lookup
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address),
            name="soloist-api-conn",
            daemon=True,
        )
        with self._conn_lock:
            self.connections[thread] = request
        thread.start()

    def _serve_connection(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self.connections.pop(threading.current_thread(), None)

    def open_connections(self) -> dict[threading.Thread, socket.socket]:
        with self._conn_lock:
            return dict(self.connections)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("a connection failed", exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # each SSE event goes out at once
    server_version = "Soloist"
    sys_version = ""
    timeout = _IDLE_TIMEOUT_S

    @property
    def ctx(self) -> _Context:
        return cast(_HttpServer, self.server).ctx

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("http: " + format, *args)  # request lines and statuses; no headers

    # -- dispatch ----------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        started = time.perf_counter()
        self._body_read = False
        self._chunked = True
        path = self.path.split("?", 1)[0].rstrip("/")
        status = 200
        try:
            self._route(method, path)
        except ApiError as err:
            status = err.status
            self._send_error(err)
        except _ClientGoneError:
            status = 499
            self.close_connection = True
        except Exception:
            status = 500
            log.exception("%s %s failed", method, path)
            self._send_error(_INTERNAL)
        log.info("%s %s -> %d in %.3f s", method, path, status, time.perf_counter() - started)

    def _route(self, method: str, path: str) -> None:
        if not self.ctx.authorized(self.headers.get("Authorization")):
            raise ApiError(
                401,
                "Missing or wrong API token; send Authorization: Bearer <token>.",
                kind="authentication_error",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        routes: dict[str, tuple[str, Callable[[], None]]] = {
            "/v1/models": ("GET", self._list_models),
            "/v1/chat/completions": ("POST", self._chat),
            "/v1/embeddings": ("POST", self._embeddings),
        }
        if path not in routes:
            raise ApiError(404, f"No such endpoint: {path}", kind="not_found_error")
        allowed, handler = routes[path]
        if method != allowed:
            raise ApiError(405, f"{path} takes {allowed}.", headers={"Allow": allowed})
        handler()

    # -- endpoints -----------------------------------------------------------
    def _list_models(self) -> None:
        ids = list(self.ctx.models())
        if self.ctx.embedder is not None:
            ids.append(self.ctx.embedder.model_name)
        data = [
            {"id": i, "object": "model", "created": self.ctx.started, "owned_by": "soloist"}
            for i in ids
        ]
        self._send_json(200, {"object": "list", "data": data})

    def _chat(self) -> None:
        call = parse_chat(
            self._read_json(),
            self.ctx.models(),
            priority=parse_priority(self.headers.get(PRIORITY_HEADER)),
            agent_id=parse_agent(self.headers.get(AGENT_HEADER)),
            default_max_tokens=self.ctx.default_max_tokens,
        )
        request_id = call.request.request_id
        log.info(
            "chat %s: model %s, %d messages, priority %s, agent %s, stream %s",
            request_id,
            call.model_id,
            len(call.request.messages),
            call.request.priority.name.lower(),
            call.request.agent_id,
            call.stream,
        )
        with self.ctx.lock:
            self.ctx.active.add(request_id)
        try:
            self._generate(call)
        finally:
            with self.ctx.lock:
                self.ctx.active.discard(request_id)

    def _generate(self, call: ChatCall) -> None:
        stream = self.ctx.engine.generate(call.request)
        try:
            first = next(stream, None)  # errors before the first token become statuses
        except EngineError as exc:
            raise error_for(exc) from exc
        chunks = stream if first is None else itertools.chain([first], stream)
        try:
            if call.stream:
                self._stream_reply(call, chunks)
            else:
                self._whole_reply(call, chunks)
        except _ClientGoneError:
            self._cancel(call.request.request_id, chunks)
            raise

    def _whole_reply(self, call: ChatCall, chunks: Iterator[Chunk]) -> None:
        parts: list[str] = []
        final: Chunk | None = None
        try:
            for chunk in chunks:
                self._check_client()
                parts.append(chunk.text)
                if chunk.is_final:
                    final = chunk
                    break
        except EngineError as exc:
            raise error_for(exc) from exc
        if final is None or final.finish_reason not in _FINISH:
            raise _end_error(final)
        self._log_finish(call, final)
        self._send_json(200, completion_body(call, "".join(parts), final))

    def _stream_reply(self, call: ChatCall, chunks: Iterator[Chunk]) -> None:
        self._chunked = self.request_version != "HTTP/1.0"  # 1.0: the body ends at close
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        if self._chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self._send_event(chunk_body(call, {"role": "assistant", "content": ""}))
        final: Chunk | None = None
        try:
            for chunk in chunks:
                self._check_client()
                if chunk.text:
                    self._send_event(chunk_body(call, {"content": chunk.text}))
                if chunk.is_final:
                    final = chunk
                    break
        except EngineError as exc:
            self._end_stream_with(call, error_for(exc))
            return
        except Exception:  # a bug: the headers are out, so it ends the stream
            log.exception("chat %s: failed mid-stream", call.request.request_id)
            self._end_stream_with(call, _INTERNAL)
            return
        if final is None or final.finish_reason not in _FINISH:
            self._end_stream_with(call, _end_error(final))
            return
        self._send_event(chunk_body(call, {}, _FINISH[final.finish_reason]))
        if call.include_usage:
            self._send_event(usage_body(call, final))
        self._send_chunk(b"data: [DONE]\n\n")
        self._send_chunk(b"")  # the end of the chunked body
        self._log_finish(call, final)

    def _end_stream_with(self, call: ChatCall, error: ApiError) -> None:
        """Headers are out: the error goes as the last event (as llama.cpp's server does)."""
        log.warning("chat %s: failed mid-stream (%d)", call.request.request_id, error.status)
        self._send_event(error.body())
        self._send_chunk(b"")

    def _embeddings(self) -> None:
        body = self._read_json()
        embedder = self.ctx.embedder
        if embedder is None:
            raise ApiError(501, "No embedding model is served here.", kind="not_supported_error")
        encoding = body.get("encoding_format") or "float"
        if encoding not in ("float", "base64"):
            raise _bad("encoding_format must be float or base64.", "encoding_format")
        texts = parse_embedding_input(body.get("input"))
        try:
            vectors = embedder.embed(texts)
        except EngineError as exc:
            raise error_for(exc) from exc
        if len(vectors) != len(texts):
            raise ApiError(
                500, "The embedder returned the wrong number of vectors.", kind="server_error"
            )
        log.info("embeddings: %d texts, dim %d", len(texts), len(vectors[0]) if vectors else 0)
        self._send_json(200, embeddings_body(vectors, embedder.model_name, encoding))

    # -- helpers -------------------------------------------------------------
    def _cancel(self, request_id: str, chunks: Iterator[Chunk]) -> None:
        """Stop the engine for a client that left, then read the stream to its end."""
        self.ctx.engine.cancel(request_id)
        reason = "no final chunk"
        try:
            for chunk in chunks:
                if chunk.is_final:
                    reason = str(chunk.finish_reason)
                    break
        except EngineError as exc:
            reason = type(exc).__name__
        log.info("chat %s: client left; cancelled (%s)", request_id, reason)

    def _log_finish(self, call: ChatCall, final: Chunk) -> None:
        usage = _usage(final)
        log.info(
            "chat %s: %s, %d prompt + %d completion tokens",
            call.request.request_id,
            final.finish_reason,
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )

    def _check_client(self) -> None:
        """Raise _ClientGoneError when the client has closed its end of the connection."""
        sock = self.connection
        timeout = sock.gettimeout()
        sock.settimeout(0)  # a peek that does not wait (select() fails past fd 1024)
        try:
            data = sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            return  # nothing sent: still there
        except OSError as exc:
            raise _ClientGoneError from exc
        finally:
            sock.settimeout(timeout)
        if not data:
            raise _ClientGoneError

    def _read_json(self) -> dict[str, Any]:
        length = self._content_length()
        if length > self.ctx.max_body_bytes:
            raise ApiError(
                413, f"The body is over {self.ctx.max_body_bytes} bytes.", code="body_too_large"
            )
        raw = self.rfile.read(length)
        self._body_read = True
        if len(raw) < length:
            raise _ClientGoneError
        try:
            body = json.loads(raw)
        except (ValueError, RecursionError):
            raise _bad("The body is not valid JSON.") from None
        if not isinstance(body, dict):
            raise _bad("The body must be a JSON object.")
        return body

    def _content_length(self) -> int:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            raise ApiError(411, "Send the body with a Content-Length.", code="length_required")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if length < 0:
            self.close_connection = True
            raise _bad("Content-Length is not a number.")
        return length

    def _drop_unread_body(self) -> None:
        """Read and drop a body not used (small enough), or close after the answer."""
        if self._body_read or self.close_connection:
            return
        try:
            length = self._content_length()
        except ApiError:
            return
        if length > _DISCARD_LIMIT:
            self.close_connection = True
            return
        while length > 0:
            piece = self.rfile.read(min(length, 2**16))
            if not piece:
                raise _ClientGoneError
            length -= len(piece)
        self._body_read = True

    def _send_error(self, err: ApiError) -> None:
        try:
            self._drop_unread_body()
            self._send_json(err.status, err.body(), err.headers)
        except _ClientGoneError:
            self.close_connection = True

    def _send_json(
        self, status: int, payload: dict[str, Any], headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload, allow_nan=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(data)
        except OSError as exc:
            raise _ClientGoneError from exc

    def _send_event(self, payload: dict[str, Any]) -> None:
        self._send_chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")

    def _send_chunk(self, data: bytes) -> None:
        """One piece of the streamed body; with chunked encoding an empty one ends it."""
        if self._chunked:
            data = b"%X\r\n%s\r\n" % (len(data), data)
        try:
            if data:
                self.wfile.write(data)
        except OSError as exc:
            raise _ClientGoneError from exc


class OpenAIServer:
    """Serves an engine over a local OpenAI-compatible HTTP API.

    The socket is bound when the object is made (``port=0`` picks a free
    port, see :attr:`port`); :meth:`start` serves it in a daemon thread. The
    engine is not closed here: its owner closes it after this server.
    """

    def __init__(
        self,
        engine: Engine,
        models: Callable[[], Mapping[str, str]],
        *,
        token: str,
        embedder: Embedder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        default_max_tokens: int = DEFAULT_MAX_TOKENS,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        if not token:
            raise ValueError("The API needs a token.")
        ctx = _Context(engine, models, embedder, token.encode(), default_max_tokens, max_body_bytes)
        self._httpd = _HttpServer((loopback_host(host), port), ctx)
        self._thread: threading.Thread | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"OpenAIServer(url={self.url!r}, token=***)"

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """The base URL, without ``/v1`` (``http://127.0.0.1:8765``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        if self._closed:
            raise RuntimeError("The API server was closed.")
        if self._thread is not None:
            return
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            args=(_POLL_S,),
            name="soloist-api",
            daemon=True,
        )
        self._thread.start()
        log.info("API listening on %s", self.url)

    def close(self, timeout_s: float = 10.0) -> None:
        """Stop accepting, cancel replies in progress, end the connections, wait."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
        ctx = self._httpd.ctx
        with ctx.lock:
            active = list(ctx.active)
        for request_id in active:
            ctx.engine.cancel(request_id)
        connections = self._httpd.open_connections()
        for conn in connections.values():
            with contextlib.suppress(OSError):  # already closed by its thread
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for thread in connections:
            thread.join(max(0.0, deadline - time.monotonic()))
        self._httpd.server_close()
        log.info("API closed (%d requests cancelled)", len(active))

    def __enter__(self) -> OpenAIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
