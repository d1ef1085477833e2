"""An engine that runs on any OpenAI-compatible server, reached over HTTP.

Errors it raises, all known errors whose ``str()`` is one line a user can read::

    EngineError                     (app.engine.errors)
    └── RemoteError                 anything the remote server or the way to it reports
        ├── RemoteUnavailableError  no answer (connect error, timeout, 5xx) after retries
        ├── RemoteAuthError         the server refused the API key (401/403)
        ├── RemoteRateLimitedError  the server kept answering 429 after retries
        ├── RemoteProtocolError     the answer is not the expected SSE/JSON
        └── RemoteServerError       the server rejected the request (other 4xx) or
                                    reported an error in the middle of a stream

Retries (exponential backoff with jitter) happen only before the first token
of a reply was delivered; once text has reached the caller an error ends the
stream by raising. ``cancel`` may be called from any thread: it sets a flag
that the streaming thread checks between SSE events, and that thread then
closes the HTTP stream and ends with ``FinishReason.CANCELLED``.

Logs carry request ids, sizes, status codes and timings; never the API key
or the text of a message.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

from app.engine.errors import EngineError
from app.engine.types import Chunk, FinishReason, GenerateRequest, Timings

log = logging.getLogger("soloist.engine.remote")

_BACKOFF_BASE_S = 0.5
_BACKOFF_MAX_S = 20.0
_JITTER = 0.25  # up to +25 %: delays still grow strictly from one try to the next
_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH}


class RemoteError(EngineError):
    """Base of the errors of the remote engine."""


class RemoteUnavailableError(RemoteError):
    """The server could not be reached or kept failing (connect, timeout, 5xx)."""


class RemoteAuthError(RemoteError):
    """The server refused the API key (401 or 403)."""


class RemoteRateLimitedError(RemoteError):
    """The server kept answering 429 Too Many Requests."""


class RemoteProtocolError(RemoteError):
    """The server's answer is not valid SSE or JSON of the expected shape."""


class RemoteServerError(RemoteError):
    """The server rejected the request or reported an error mid-stream."""


def backoff_delay(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry ``attempt`` (0-based): doubling, with jitter."""
    base = min(_BACKOFF_BASE_S * 2.0**attempt, _BACKOFF_MAX_S)
    return base * (1 + _JITTER * rng.random())


class _RetryableError(Exception):
    """Internal: a failure before the first token that another try may fix."""

    def __init__(self, error: RemoteError, cause: BaseException | None = None) -> None:
        super().__init__(str(error))
        self.error = error
        self.cause = cause


@dataclass
class _StreamState:
    """What one streamed reply has produced so far."""

    request_id: str
    started: float
    index: int = 0
    text_chunks: int = 0
    first_token_at: float | None = None
    finish: FinishReason | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None


class RemoteEngine:
    """The :class:`app.engine.interface.Engine` of an OpenAI-compatible server."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        timeout_s: float = 60,
        max_retries: int = 3,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self._api_key = api_key
        self._max_retries = max(0, max_retries)
        self._sleep = sleep
        self._clock = clock
        self._rng = rng or random.Random()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout_s),
            transport=transport,
        )
        self._lock = threading.Lock()
        self._active: dict[str, threading.Event] = {}

    def __repr__(self) -> str:
        key = "***" if self._api_key else None
        return f"RemoteEngine(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    # -- Engine protocol -------------------------------------------------
    def generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        return self._generate(request)

    def cancel(self, request_id: str) -> bool:
        with self._lock:
            flag = self._active.get(request_id)
        if flag is None:
            return False
        flag.set()
        log.info("request %s: cancel asked", request_id)
        return True

    def close(self) -> None:
        with self._lock:
            flags = list(self._active.values())
        for flag in flags:
            flag.set()
        self._client.close()

    # -- other endpoints -------------------------------------------------
    def list_models(self) -> list[str]:
        """Ids of the models the server offers (GET /v1/models)."""
        data = self._call_json("GET", "/v1/models", None)
        try:
            return [str(item["id"]) for item in data["data"]]
        except (KeyError, TypeError) as exc:
            raise RemoteProtocolError(_protocol_text(self.base_url, "model list")) from exc

    def embed(self, texts: list[str]) -> list[list[float]]:
        """One embedding vector per text (POST /v1/embeddings), in order."""
        body: dict[str, Any] = {"input": texts}
        if self.model:
            body["model"] = self.model
        data = self._call_json("POST", "/v1/embeddings", body)
        try:
            items = sorted(data["data"], key=lambda item: int(item["index"]))
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (KeyError, TypeError, ValueError) as exc:
            raise RemoteProtocolError(_protocol_text(self.base_url, "embeddings")) from exc
        if len(vectors) != len(texts):
            raise RemoteProtocolError(_protocol_text(self.base_url, "embeddings"))
        log.debug("embedded %d texts, dim %d", len(texts), len(vectors[0]) if vectors else 0)
        return vectors

    # -- streaming -------------------------------------------------------
    def _generate(self, request: GenerateRequest) -> Iterator[Chunk]:
        flag = threading.Event()
        with self._lock:
            self._active[request.request_id] = flag
        state = _StreamState(request.request_id, self._clock())
        try:
            for attempt in range(self._max_retries + 1):
                try:
                    yield from self._attempt(request, state, flag)
                    return
                except _RetryableError as failure:
                    if attempt == self._max_retries:
                        raise failure.error from failure.cause
                    self._wait_before_retry(attempt, flag, request.request_id, failure.error)
        finally:
            with self._lock:
                self._active.pop(request.request_id, None)

    def _attempt(
        self, request: GenerateRequest, state: _StreamState, flag: threading.Event
    ) -> Iterator[Chunk]:
        if flag.is_set():
            yield self._final(state, FinishReason.CANCELLED)
            return
        http_request = self._client.build_request(
            "POST", "/v1/chat/completions", json=self._chat_body(request)
        )
        try:
            response = self._client.send(http_request, stream=True)
        except httpx.TransportError as exc:
            raise _RetryableError(_unavailable(self.base_url, exc), exc) from exc
        try:
            self._check_status(response)
            yield from self._read_events(response, state, flag)
        finally:
            response.close()  # also when cancelled or abandoned: the server stops

    def _read_events(
        self, response: httpx.Response, state: _StreamState, flag: threading.Event
    ) -> Iterator[Chunk]:
        lines = response.iter_lines()
        while True:
            if flag.is_set():
                log.info("request %s: cancelled after %d chunks", state.request_id, state.index)
                yield self._final(state, FinishReason.CANCELLED)
                return
            try:
                line = next(lines, None)
            except httpx.TransportError as exc:
                error = _unavailable(self.base_url, exc)
                if state.first_token_at is None:
                    raise _RetryableError(error, exc) from exc
                raise error from exc
            if line is None or line.strip() == "data: [DONE]":
                break
            chunk = self._parse_line(line, state)
            if chunk is not None:
                yield chunk
        if state.finish is None:
            raise RemoteProtocolError(
                f"The server at {self.base_url} ended the reply early. Try again."
            )
        yield self._final(state, state.finish)

    def _parse_line(self, line: str, state: _StreamState) -> Chunk | None:
        """One SSE line; a text chunk when it carries text."""
        if not line.strip() or line.startswith((":", "event:", "id:", "retry:")):
            return None
        if not line.startswith("data:"):
            raise RemoteProtocolError(_protocol_text(self.base_url, "reply stream"))
        try:
            event = json.loads(line[5:])
        except ValueError as exc:
            raise RemoteProtocolError(_protocol_text(self.base_url, "reply stream")) from exc
        if not isinstance(event, dict):
            raise RemoteProtocolError(_protocol_text(self.base_url, "reply stream"))
        if "error" in event:
            raise RemoteServerError(
                f"The server at {self.base_url} failed while writing the reply. Try again."
            )
        _read_usage(event, state)
        return self._text_chunk(event, state)

    def _text_chunk(self, event: dict[str, Any], state: _StreamState) -> Chunk | None:
        choices = event.get("choices")
        if not isinstance(choices, list):
            raise RemoteProtocolError(_protocol_text(self.base_url, "reply stream"))
        if not choices:  # the usage-only event at the end
            return None
        choice = choices[0]
        if not isinstance(choice, dict) or not isinstance(choice.get("delta", {}), dict):
            raise RemoteProtocolError(_protocol_text(self.base_url, "reply stream"))
        reason = choice.get("finish_reason")
        if reason:
            state.finish = _FINISH.get(str(reason), FinishReason.STOP)
        text = choice.get("delta", {}).get("content")
        if not isinstance(text, str) or not text:
            return None
        if state.first_token_at is None:
            state.first_token_at = self._clock()
        state.text_chunks += 1
        state.index += 1
        return Chunk(state.request_id, state.index - 1, text=text)

    def _final(self, state: _StreamState, reason: FinishReason) -> Chunk:
        now = self._clock()
        first = state.first_token_at if state.first_token_at is not None else now
        timings = Timings(
            prompt_tokens=state.prompt_tokens or 0,
            completion_tokens=(
                state.completion_tokens
                if state.completion_tokens is not None
                else state.text_chunks
            ),
            time_to_first_token_s=first - state.started,
            total_s=now - state.started,
        )
        log.info(
            "request %s: %s, %d chunks, %.3f s",
            state.request_id,
            reason.value,
            state.text_chunks,
            timings.total_s,
        )
        return Chunk(state.request_id, state.index, finish_reason=reason, timings=timings)

    def _chat_body(self, request: GenerateRequest) -> dict[str, Any]:
        sampling = request.sampling
        body: dict[str, Any] = {
            "model": self.model or request.model_path,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": sampling.seed,
        }
        if sampling.stop:
            body["stop"] = list(sampling.stop)
        log.debug(
            "request %s: %d messages, max_tokens %d",
            request.request_id,
            len(request.messages),
            sampling.max_tokens,
        )
        return body

    # -- plain calls, status and retries ---------------------------------
    def _call_json(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        flag = threading.Event()  # plain calls cannot be cancelled
        for attempt in range(self._max_retries + 1):
            try:
                return self._call_once(method, path, body)
            except _RetryableError as failure:
                if attempt == self._max_retries:
                    raise failure.error from failure.cause
                self._wait_before_retry(attempt, flag, path, failure.error)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call_once(self, method: str, path: str, body: dict[str, Any] | None) -> Any:
        try:
            response = self._client.request(method, path, json=body)
        except httpx.TransportError as exc:
            raise _RetryableError(_unavailable(self.base_url, exc), exc) from exc
        self._check_status(response)
        try:
            return response.json()
        except ValueError as exc:
            raise RemoteProtocolError(_protocol_text(self.base_url, path)) from exc

    def _check_status(self, response: httpx.Response) -> None:
        """Raise the error a non-2xx status means; retryable ones wrapped."""
        status = response.status_code
        if status < 400:
            return
        response.read()  # free the connection; the body is not kept or logged
        where = self.base_url
        if status in (401, 403):
            raise RemoteAuthError(
                f"The server at {where} refused the API key ({status}). "
                "Check the key in the settings."
            )
        if status == 429:
            raise _RetryableError(
                RemoteRateLimitedError(
                    f"The server at {where} is rate-limiting requests (429). Wait and try again."
                )
            )
        if status >= 500:
            raise _RetryableError(
                RemoteUnavailableError(f"The server at {where} failed ({status}). Try again later.")
            )
        raise RemoteServerError(
            f"The server at {where} rejected the request ({status}). "
            "Check the model name and settings."
        )

    def _wait_before_retry(
        self, attempt: int, flag: threading.Event, what: str, error: RemoteError
    ) -> None:
        delay = backoff_delay(attempt, self._rng)
        log.info(
            "%s: try %d failed (%s), retrying in %.2f s",
            what,
            attempt + 1,
            type(error).__name__,
            delay,
        )
        if self._sleep is not None:
            self._sleep(delay)
        else:
            flag.wait(delay)  # a cancel cuts the wait short


def _read_usage(event: dict[str, Any], state: _StreamState) -> None:
    usage = event.get("usage")
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int):
            state.prompt_tokens = prompt
        if isinstance(completion, int):
            state.completion_tokens = completion


def _unavailable(where: str, exc: httpx.TransportError) -> RemoteUnavailableError:
    what = "timed out" if isinstance(exc, httpx.TimeoutException) else "could not be reached"
    return RemoteUnavailableError(
        f"The server at {where} {what}. Check that it is running and the address is right."
    )


def _protocol_text(where: str, what: str) -> str:
    return (
        f"The server at {where} sent a {what} that could not be read. "
        "Check that it is an OpenAI-compatible server."
    )
